//! VRAM proxy used by the planner: the total number of conv output elements of the network at
//! batch size 1, built without deep supervision (§6.3, dynamic-network-architectures
//! `compute_conv_feature_map_size`). Integer floor division by the strides throughout.

/// Which network the estimate is for.
#[derive(Clone, Debug, PartialEq)]
pub enum EstimateArch<'a> {
    /// `PlainConvUNet`: `n_conv_per_stage` convs per encoder stage.
    PlainConv {
        /// Convs per encoder stage.
        n_conv_per_stage: &'a [i64],
    },
    /// `ResidualEncoderUNet` (BasicBlockD): stem conv, then `n_blocks_per_stage` blocks.
    ResidualEncoder {
        /// Residual blocks per encoder stage.
        n_blocks_per_stage: &'a [i64],
    },
}

fn prod(v: &[i64]) -> i64 {
    v.iter().product()
}

fn div(size: &[i64], stride: &[i64]) -> Vec<i64> {
    size.iter().zip(stride).map(|(a, b)| a / b).collect()
}

/// `net.compute_conv_feature_map_size(patch_size)` for PlainConvUNet / ResidualEncoderUNet.
///
/// `num_classes` is `len(dataset.json["labels"])` (background and `ignore` included).
pub fn estimate_conv_feature_map_size(
    patch_size: &[usize],
    features_per_stage: &[i64],
    strides: &[Vec<i64>],
    arch: &EstimateArch,
    n_conv_per_stage_decoder: &[i64],
    num_classes: usize,
) -> i64 {
    let n = strides.len();
    let patch: Vec<i64> = patch_size.iter().map(|&p| p as i64).collect();
    let mut total: i64 = 0;
    // Encoder.
    let mut size = patch.clone();
    match arch {
        EstimateArch::PlainConv { n_conv_per_stage } => {
            for s in 0..n {
                let after = div(&size, &strides[s]);
                total += n_conv_per_stage[s] * features_per_stage[s] * prod(&after);
                size = after;
            }
        }
        EstimateArch::ResidualEncoder { n_blocks_per_stage } => {
            // Stem: one conv with features[0] channels, stride 1.
            total += features_per_stage[0] * prod(&patch);
            let mut in_ch = features_per_stage[0];
            for s in 0..n {
                let c = features_per_stage[s];
                let after = div(&size, &strides[s]);
                // First block: conv1 + conv2 (+ projection when channels or size change).
                total += 2 * c * prod(&after);
                if in_ch != c || after != size {
                    total += c * prod(&after);
                }
                // Remaining blocks keep channels and size.
                total += (n_blocks_per_stage[s] - 1).max(0) * 2 * c * prod(&after);
                in_ch = c;
                size = after;
            }
        }
    }
    // Decoder: skip sizes after strides[0..n-1].
    let mut skips = Vec::with_capacity(n.saturating_sub(1));
    let mut size = patch;
    for st in strides.iter().take(n.saturating_sub(1)) {
        size = div(&size, st);
        skips.push(size.clone());
    }
    for (s, &n_conv) in n_conv_per_stage_decoder.iter().enumerate().take(n.saturating_sub(1)) {
        let level = n - 2 - s;
        let c = features_per_stage[level];
        let p = prod(&skips[level]);
        total += n_conv * c * p; // conv blocks
        total += c * p; // transposed conv output
        if s == n - 2 {
            total += num_classes as i64 * p; // segmentation head (deep supervision off)
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hippocampus_plain_estimate() {
        // §5.6 A: 19,174,400 for [40,56,40], 4 stages, 3 classes.
        let strides = vec![vec![1, 1, 1], vec![2, 2, 2], vec![2, 2, 2], vec![2, 2, 2]];
        let e = estimate_conv_feature_map_size(
            &[40, 56, 40],
            &[32, 64, 128, 256],
            &strides,
            &EstimateArch::PlainConv { n_conv_per_stage: &[2, 2, 2, 2] },
            &[2, 2, 2],
            3,
        );
        assert_eq!(e, 19_174_400);
    }

    #[test]
    fn resenc_reference_value_from_the_source() {
        // The ResEnc planner source quotes 558319104 for this network at 128^3 (3 classes).
        let strides: Vec<Vec<i64>> =
            std::iter::once(vec![1, 1, 1]).chain(std::iter::repeat_n(vec![2, 2, 2], 5)).collect();
        let e = estimate_conv_feature_map_size(
            &[128, 128, 128],
            &[32, 64, 128, 256, 320, 320],
            &strides,
            &EstimateArch::ResidualEncoder { n_blocks_per_stage: &[1, 3, 4, 6, 6, 6] },
            &[1, 1, 1, 1, 1],
            3,
        );
        // That figure was computed *with* deep supervision (heads at every decoder stage):
        // add the 4 extra heads to compare.
        let extra: i64 = [64i64, 32, 16, 8].iter().map(|s| 3 * s * s * s).sum();
        assert_eq!(e + extra, 558_319_104);
        // 2D: 129793792 for 512^2, 7 stages, features up to 512.
        let strides: Vec<Vec<i64>> = std::iter::once(vec![1, 1]).chain(std::iter::repeat_n(vec![2, 2], 6)).collect();
        let e = estimate_conv_feature_map_size(
            &[512, 512],
            &[32, 64, 128, 256, 512, 512, 512],
            &strides,
            &EstimateArch::ResidualEncoder { n_blocks_per_stage: &[1, 3, 4, 6, 6, 6, 6] },
            &[1, 1, 1, 1, 1, 1],
            3,
        );
        let extra: i64 = [256i64, 128, 64, 32, 16].iter().map(|s| 3 * s * s).sum();
        assert_eq!(e + extra, 129_793_792);
    }

    #[test]
    fn anisotropic_values_from_dynamic_network_architectures() {
        // Printed by dynamic-network-architectures 0.4.4 (deep_supervision=False) for the
        // Prostate-like 7-stage topology at [20,320,256], 3 classes.
        let strides = vec![
            vec![1, 1, 1],
            vec![1, 2, 2],
            vec![1, 2, 2],
            vec![2, 2, 2],
            vec![2, 2, 2],
            vec![1, 2, 2],
            vec![1, 2, 2],
        ];
        let f = [32, 64, 128, 256, 320, 320, 320];
        let plain = estimate_conv_feature_map_size(
            &[20, 320, 256],
            &f,
            &strides,
            &EstimateArch::PlainConv { n_conv_per_stage: &[2; 7] },
            &[2; 6],
            3,
        );
        assert_eq!(plain, 483_315_200);
        let res = estimate_conv_feature_map_size(
            &[20, 320, 256],
            &f,
            &strides,
            &EstimateArch::ResidualEncoder { n_blocks_per_stage: &[1, 3, 4, 6, 6, 6, 6] },
            &[1; 6],
            3,
        );
        assert_eq!(res, 706_336_000);
    }
}

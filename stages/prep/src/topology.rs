//! Network topology from spacing and patch size: nnU-Net's `get_pool_and_conv_props`
//! (§5.4 step 2, `experiment_planning/experiment_planners/network_topology.py`).
//!
//! Sizes are `f64` on purpose: nnU-Net feeds the initial patch (clipped to a possibly
//! fractional median shape) through this routine as floats, and `pad_shape` truncates.

/// Result of [`get_pool_and_conv_props`].
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// Poolings per axis.
    pub num_pool_per_axis: Vec<u32>,
    /// Strides per stage; stage 0 is all ones. `n_stages = strides.len()`.
    pub strides: Vec<Vec<i64>>,
    /// Conv kernel per stage (the bottleneck's all-3 kernel included).
    pub kernel_sizes: Vec<Vec<i64>>,
    /// Patch padded up to a multiple of `must_be_divisible_by`.
    pub patch_size: Vec<usize>,
    /// `2^num_pool_per_axis`.
    pub must_be_divisible_by: Vec<usize>,
}

impl Topology {
    /// Number of stages (`len(strides)`).
    pub fn n_stages(&self) -> usize {
        self.strides.len()
    }
}

/// nnU-Net's `pad_shape`: the next multiple of `m` strictly above `s` unless `s` is already a
/// multiple (float arithmetic, then truncation to int, exactly as numpy does it).
pub fn pad_shape(shape: &[f64], must_be_divisible_by: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .zip(must_be_divisible_by)
        .map(|(&s, &m)| {
            let m = m as f64;
            let r = s % m;
            let mut v = s + m - r;
            if r == 0.0 {
                v -= m;
            }
            v as usize
        })
        .collect()
}

/// nnU-Net v2 `get_pool_and_conv_props(spacing, patch_size, min_feature_map_size, max_numpool)`.
pub fn get_pool_and_conv_props(
    spacing: &[f64],
    patch_size: &[f64],
    min_feature_map_size: usize,
    max_numpool: u32,
) -> Topology {
    let dim = spacing.len();
    let mut current_spacing = spacing.to_vec();
    let mut current_size = patch_size.to_vec();
    let mut strides = vec![vec![1i64; dim]];
    let mut kernels: Vec<Vec<i64>> = Vec::new();
    let mut num_pool = vec![0u32; dim];
    let mut kernel = vec![1i64; dim];
    let min_fm = min_feature_map_size as f64;
    loop {
        // Axes that can still be pooled without going below the minimal feature map size.
        let valid: Vec<usize> = (0..dim).filter(|&i| current_size[i] >= 2.0 * min_fm).collect();
        if valid.is_empty() {
            break;
        }
        let min_sp_valid = valid.iter().map(|&i| current_spacing[i]).fold(f64::INFINITY, f64::min);
        let valid: Vec<usize> = valid
            .into_iter()
            .filter(|&i| current_spacing[i] / min_sp_valid < 2.0)
            .filter(|&i| num_pool[i] < max_numpool)
            .collect();
        if valid.len() == 1 && current_size[valid[0]] < 3.0 * min_fm {
            break;
        }
        if valid.is_empty() {
            break;
        }
        // Kernels become 3 (permanently) once the axis is within a factor 2 of the finest axis.
        let min_sp_all = current_spacing.iter().cloned().fold(f64::INFINITY, f64::min);
        for d in 0..dim {
            if kernel[d] != 3 && current_spacing[d] / min_sp_all < 2.0 {
                kernel[d] = 3;
            }
        }
        let mut pool = vec![1i64; dim];
        for &v in &valid {
            pool[v] = 2;
            num_pool[v] += 1;
            current_spacing[v] *= 2.0;
            current_size[v] = (current_size[v] / 2.0).ceil();
        }
        strides.push(pool);
        kernels.push(kernel.clone());
    }
    let must_be_divisible_by: Vec<usize> = num_pool.iter().map(|&p| 1usize << p).collect();
    let patch = pad_shape(patch_size, &must_be_divisible_by);
    kernels.push(vec![3; dim]);
    Topology { num_pool_per_axis: num_pool, strides, kernel_sizes: kernels, patch_size: patch, must_be_divisible_by }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_shape_rules() {
        assert_eq!(pad_shape(&[40.0, 35.5, 56.0, 1.0], &[8, 8, 8, 1]), vec![40, 40, 56, 1]);
        assert_eq!(pad_shape(&[35.5], &[1]), vec![36]);
        assert_eq!(pad_shape(&[33.0], &[16]), vec![48]);
    }

    #[test]
    fn isotropic_hippocampus_patch() {
        let t = get_pool_and_conv_props(&[1.0, 1.0, 1.0], &[36.0, 50.0, 35.0], 4, 999_999);
        assert_eq!(t.patch_size, vec![40, 56, 40]);
        assert_eq!(t.n_stages(), 4);
        assert_eq!(t.strides[1], vec![2, 2, 2]);
        assert!(t.kernel_sizes.iter().all(|k| k == &vec![3, 3, 3]));
        assert_eq!(t.must_be_divisible_by, vec![8, 8, 8]);
    }

    #[test]
    fn anisotropic_prostate_topology() {
        let t = get_pool_and_conv_props(&[3.6, 0.625, 0.625], &[20.0, 320.0, 256.0], 4, 999_999);
        assert_eq!(
            t.strides,
            vec![
                vec![1, 1, 1],
                vec![1, 2, 2],
                vec![1, 2, 2],
                vec![2, 2, 2],
                vec![2, 2, 2],
                vec![1, 2, 2],
                vec![1, 2, 2]
            ]
        );
        assert_eq!(t.kernel_sizes[0], vec![1, 3, 3]);
        assert_eq!(t.kernel_sizes[1], vec![1, 3, 3]);
        assert_eq!(t.kernel_sizes[2], vec![3, 3, 3]);
        assert_eq!(t.patch_size, vec![20, 320, 256]);
    }
}

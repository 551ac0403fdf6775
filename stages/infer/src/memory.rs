//! What predicting one case costs in resident memory, and the settings that keep it within a
//! budget (`pipeline predict --memory SIZE`).
//!
//! The phases of a case and the image-sized arrays each holds (bytes; `N` raw voxels, `P`
//! preprocessed voxels, `C` channels, `K` classes):
//!
//! - preprocessing: the raw channels and, while transposing and cropping, up to two more
//!   copies (`3·C·N·4`), then the resampled channels (`C·P·4`) and the spline passes'
//!   intermediates (`2·C·P·4`);
//! - sliding window: the input (`C·P·4`), `K` logit accumulators and one weight map
//!   (`(K+1)·P·4`), and the network's activations for one forward pass, dominated by the
//!   full-resolution feature maps (see [`activation_bytes`]);
//! - export: the logits (`K·P·4`), the segmentation (`N·2`), one slab per class, and
//!   post-processing's copies of the segmentation (`3·N·2`).
//!
//! The estimate is added to what the process holds before the case (libtorch, the networks'
//! weights), read from `/proc/self/statm`. A case whose estimate exceeds the budget is refused
//! before any work; the sliding-window batch is the largest that fits (nnU-Net's batch of one
//! tile when nothing more does).

use crate::error::{InferError, Result};
use nnunet_prep::plans::Architecture;

/// Full-resolution feature maps alive at the peak of one forward pass, per tile: during the
/// first decoder convolution the concatenated input (2 maps) and its output (1), plus
/// oneDNN's reordered copies of input and output (about 2 more). Measured on 3D PlainConvUNets
/// with libtorch 2.11 on the CPU (see bench/RESULTS.md, big-CT predict) in NCDHW; one 3D tile
/// now runs channels-last without the reorders (nnunet_net::blocks::to_channels_last), so the
/// estimate errs on the safe side there.
const PEAK_MAPS: f64 = 5.5;
/// The lower-resolution levels' maps held meanwhile (skips of level 1 and below): about
/// F1·P/8 + F2·P/64 + ... relative to F0·P, with features doubling per level.
const DEEPER_LEVELS: f64 = 0.35;

/// Bytes of one forward pass of `batch` tiles of `patch` through the network of `arch`
/// (the full-resolution feature maps dominate, see [`PEAK_MAPS`]).
pub fn activation_bytes(arch: &Architecture, patch: &[usize], batch: usize) -> u64 {
    let f0 = arch.arch_kwargs.features_per_stage.first().copied().unwrap_or(32).max(1) as f64;
    let p: f64 = patch.iter().map(|&v| v as f64).product();
    (PEAK_MAPS * (1.0 + DEEPER_LEVELS) * f0 * p * 4.0) as u64 * batch.max(1) as u64
}

/// The sizes that decide a case's memory.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseSize {
    pub channels: usize,
    /// Voxels of the raw image (per channel).
    pub raw_voxels: usize,
    /// Voxels after resampling to the configuration's spacing (per channel).
    pub preprocessed_voxels: usize,
    pub classes: usize,
}

/// Estimated bytes per phase, on top of what the process holds before the case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CaseMemory {
    pub preprocessing: u64,
    pub sliding_window: u64,
    pub export: u64,
}

impl CaseMemory {
    pub fn estimate(size: &CaseSize, activations: u64) -> CaseMemory {
        let (c, n, p, k) =
            (size.channels as u64, size.raw_voxels as u64, size.preprocessed_voxels as u64, size.classes as u64);
        let export_slab = k * (1u64 << 22) * 4;
        CaseMemory {
            preprocessing: 3 * c * n * 4 + 3 * c * p * 4,
            sliding_window: c * p * 4 + (k + 1) * p * 4 + activations,
            export: k * p * 4 + n * 2 + export_slab + 3 * n * 2,
        }
    }

    /// The largest phase.
    pub fn peak(&self) -> u64 {
        self.preprocessing.max(self.sliding_window).max(self.export)
    }
}

/// A memory budget in bytes for a whole prediction process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget(pub u64);

/// The sliding-window batch chosen for a case, and the estimate behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BatchChoice {
    pub tiles_per_batch: usize,
    pub estimate: CaseMemory,
    /// Bytes the process held before the case.
    pub baseline: u64,
}

impl MemoryBudget {
    /// The largest batch up to `wanted` tiles whose estimate fits, or an error naming the
    /// case, the need and the budget when even one tile does not.
    pub fn choose_batch(
        &self,
        case: &str,
        size: &CaseSize,
        arch: &Architecture,
        patch: &[usize],
        wanted: usize,
    ) -> Result<BatchChoice> {
        let baseline = current_rss_bytes().unwrap_or(0);
        let mut b = wanted.max(1);
        loop {
            let est = CaseMemory::estimate(size, activation_bytes(arch, patch, b));
            if baseline + est.peak() <= self.0 {
                return Ok(BatchChoice { tiles_per_batch: b, estimate: est, baseline });
            }
            if b == 1 {
                return Err(InferError::Invalid(format!(
                    "case {case}: predicting needs about {} (process {} + preprocessing {} / sliding window {} / \
                     export {} at the peak), more than the memory budget of {}; raise --memory",
                    fmt_bytes(baseline + est.peak()),
                    fmt_bytes(baseline),
                    fmt_bytes(est.preprocessing),
                    fmt_bytes(est.sliding_window),
                    fmt_bytes(est.export),
                    fmt_bytes(self.0)
                )));
            }
            b /= 2;
        }
    }
}

/// The sizes of a raw case predicted with `config` (the crop is not known before
/// preprocessing; the raw extent bounds it).
pub fn case_size(
    images: &nnunet_io::dataset::CaseImages,
    plans: &nnunet_prep::plans::Plans,
    config: &nnunet_prep::plans::ResolvedConfiguration,
    classes: usize,
) -> Result<CaseSize> {
    let first = images.channels.first().ok_or_else(|| InferError::Invalid("case has no image channels".into()))?;
    let tf = plans.transpose_forward3();
    let shape = nnunet_io::volume::permute(first.shape, tf);
    let spacing = nnunet_io::volume::permute(images.spacing, tf);
    let target = nnunet_prep::preprocess::target_spacing(config, spacing)?;
    let pre = nnunet_prep::resample::compute_new_shape(shape, spacing, target);
    Ok(CaseSize {
        channels: images.channels.len(),
        raw_voxels: first.data.len(),
        preprocessed_voxels: pre.iter().product(),
        classes,
    })
}

/// Resident bytes of this process now (`/proc/self/statm`), `None` where unavailable.
pub fn current_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A debug event with the resident and peak bytes now (`-l debug`: memory per phase of a case).
pub fn trace_rss(phase: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let mb = |b: Option<u64>| b.map_or(-1, |b| (b >> 20) as i64);
        tracing::debug!(phase, rss_mb = mb(current_rss_bytes()), peak_mb = mb(peak_rss_bytes()), "memory");
    }
}

/// Peak resident bytes of this process so far (`VmHWM` in `/proc/self/status`).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `1.5 GB`-style rendering.
pub fn fmt_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MB", b as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(f0: i64) -> Architecture {
        serde_json::from_value(serde_json::json!({
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 2, "features_per_stage": [f0, 2 * f0], "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [2, 2],
                "n_conv_per_stage_decoder": [2], "conv_bias": true, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-5, "affine": true}, "dropout_op": null, "dropout_op_kwargs": null,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]
        }))
        .unwrap()
    }

    #[test]
    fn batch_shrinks_to_fit_and_refuses_below_one_tile() {
        let size = CaseSize { channels: 1, raw_voxels: 1 << 20, preprocessed_voxels: 1 << 20, classes: 3 };
        let a = arch(32);
        let p = [64, 64, 64];
        let one = activation_bytes(&a, &p, 1);
        assert_eq!(activation_bytes(&a, &p, 4), 4 * one);
        let base = current_rss_bytes().unwrap_or(0);
        let need = |b: usize| base + CaseMemory::estimate(&size, activation_bytes(&a, &p, b)).peak();
        // Room for two tiles (plus half a tile of slack for the process growing) but not four.
        let b = MemoryBudget(need(2) + one / 2).choose_batch("c", &size, &a, &p, 4).unwrap();
        assert_eq!(b.tiles_per_batch, 2, "{b:?}");
        assert_eq!(MemoryBudget(need(4) + one / 2).choose_batch("c", &size, &a, &p, 4).unwrap().tiles_per_batch, 4);
        let e = MemoryBudget(1 << 20).choose_batch("case_7", &size, &a, &p, 4).unwrap_err().to_string();
        assert!(e.contains("case_7") && e.contains("--memory"), "{e}");
    }

    #[test]
    fn phases_scale_with_the_sizes() {
        let small =
            CaseMemory::estimate(&CaseSize { channels: 1, raw_voxels: 1000, preprocessed_voxels: 1000, classes: 2 }, 0);
        let big = CaseMemory::estimate(
            &CaseSize { channels: 2, raw_voxels: 1 << 26, preprocessed_voxels: 1 << 24, classes: 2 },
            0,
        );
        assert!(big.preprocessing > 100 * small.preprocessing);
        assert!(big.peak() >= big.export && big.peak() >= big.sliding_window);
        assert_eq!(fmt_bytes(3 << 29), "1.50 GB");
    }
}

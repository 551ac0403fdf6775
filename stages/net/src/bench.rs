//! Timing helpers for the benchmark CLI: single-threaded batch production (crop + full
//! augmentation, like the peer's `nnunet_da.py` with `nnUNet_n_proc_DA=0`) and one training
//! step (forward, deep-supervised DC+CE, backward, clip, SGD; like `nnunet_step.py`).

use crate::augment::AugmentConfig;
use crate::error::{NetError, Result};
use crate::loader::{batch_seed, BatchSpec, Stream};
use crate::loss::{DeepSupervisionLoss, LabelMode, SegLoss};
use crate::optim::{clip_grad_norm, Optimizer};
use crate::sampler::{MemoryCase, PatchSampler, PatchSource};
use crate::trainer::TrainOptions;
use crate::unet::{build_network_seeded, cap_features, count_parameters};
use nnunet_io::rng::Rng;
use nnunet_prep::plans::ResolvedConfiguration;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Kind, Tensor};

/// Result of [`time_augmentation`].
#[derive(Clone, Debug, Serialize)]
pub struct AugmentBench {
    pub batches: usize,
    pub batch_size: usize,
    pub data_shape: Vec<i64>,
    pub seconds_per_batch: f64,
    pub voxels_per_second: f64,
}

/// Times `n_batches` training batches of `cfg` produced on the calling thread only (patch read
/// from the cases, full augmentation chain, DS targets), after one warm-up batch.
pub fn time_augmentation(
    cases: Vec<Arc<dyn PatchSource>>,
    cfg: &ResolvedConfiguration,
    batch_size: Option<usize>,
    n_batches: usize,
    seed: u64,
) -> Result<AugmentBench> {
    if cases.is_empty() {
        return Err(NetError::Invalid("no cases to sample from".into()));
    }
    let aug = AugmentConfig::from_configuration(cfg, true, true);
    let bs = batch_size.unwrap_or(cfg.batch_size).max(1);
    let sampler = PatchSampler {
        batch_size: bs,
        oversample_foreground: 0.33,
        initial_patch_size: aug.initial_patch_size,
        final_patch_size: aug.patch_size,
        has_ignore: false,
    };
    let spec = BatchSpec { cases, sampler, augment: aug };
    spec.make_batch_serial(batch_seed(seed, Stream::Train, 0, usize::MAX), 0)?;
    let t = Instant::now();
    let mut shape = vec![];
    for i in 0..n_batches.max(1) {
        let b = spec.make_batch_serial(batch_seed(seed, Stream::Train, 0, i), i)?;
        shape = b.data_shape;
    }
    let dt = t.elapsed().as_secs_f64() / n_batches.max(1) as f64;
    let vox: i64 = shape.iter().product();
    Ok(AugmentBench {
        batches: n_batches.max(1),
        batch_size: bs,
        data_shape: shape,
        seconds_per_batch: dt,
        voxels_per_second: vox as f64 / dt,
    })
}

/// Result of [`time_train_step`].
#[derive(Clone, Debug, Serialize)]
pub struct StepBench {
    pub steps: usize,
    pub batch_size: usize,
    pub parameters: i64,
    pub seconds_per_step: f64,
    pub first_step_seconds: f64,
}

/// Times full training steps of `cfg`'s network on random data (after one warm-up step) with
/// `opts`' device, threads, network options, loss and precision.
pub fn time_train_step(
    cfg: &ResolvedConfiguration,
    in_channels: usize,
    num_classes: usize,
    batch_size: usize,
    steps: usize,
    opts: &TrainOptions,
) -> Result<StepBench> {
    tch::set_num_threads(opts.torch_threads.max(1) as i32);
    if opts.device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let arch = cap_features(&cfg.architecture, opts.features_cap);
    let vs = nn::VarStore::new(opts.device);
    let mut net =
        build_network_seeded(&vs.root(), &arch, in_channels as i64, num_classes as i64, &opts.net, opts.seed)?;
    if opts.device.is_cuda() && opts.mixed_precision {
        net.set_compute_kind(Some(Kind::BFloat16));
    }
    let aug = AugmentConfig::from_configuration(cfg, false, opts.net.deep_supervision);
    let mode = LabelMode::Labels { num_classes: num_classes as i64, ignore: None };
    let loss = DeepSupervisionLoss::new(SegLoss::new(opts.loss, mode, cfg.batch_dice), aug.ds_scales.len());
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = Optimizer::new(opts.optimizer, opts.momentum, opts.weight_decay);
    let spatial = |s: [usize; 3]| -> Vec<i64> {
        if aug.is_2d {
            vec![s[1] as i64, s[2] as i64]
        } else {
            s.iter().map(|&v| v as i64).collect()
        }
    };
    let mut xs = vec![batch_size as i64, in_channels as i64];
    xs.extend(spatial(aug.patch_size));
    let x = Tensor::randn(xs.as_slice(), (Kind::Float, opts.device));
    let targets: Vec<Tensor> = aug
        .target_shapes()
        .into_iter()
        .map(|s| {
            let mut sh = vec![batch_size as i64];
            sh.extend(spatial(s));
            Tensor::randint(num_classes as i64, sh.as_slice(), (Kind::Int64, opts.device))
        })
        .collect();
    let lr = opts.initial_lr.unwrap_or_else(|| opts.optimizer.default_lr());
    let mut step = || -> f64 {
        let t = Instant::now();
        Optimizer::zero_grad(&params);
        let outs = net.forward_t(&x, true);
        let l = loss.forward(&outs, &targets);
        l.backward();
        clip_grad_norm(&params, opts.grad_clip);
        opt.step(&params, lr);
        let _ = l.double_value(&[]); // sync
        t.elapsed().as_secs_f64()
    };
    let first = step();
    let mut total = 0.0;
    for _ in 0..steps.max(1) {
        total += step();
    }
    Ok(StepBench {
        steps: steps.max(1),
        batch_size,
        parameters: count_parameters(&vs),
        seconds_per_step: total / steps.max(1) as f64,
        first_step_seconds: first,
    })
}

/// Synthetic cases for benchmarks without a store: `n` volumes of `shape` with a smooth
/// intensity field and an ellipsoid foreground (labels 1 and 2).
pub fn synthetic_cases(n: usize, shape: [usize; 3], channels: usize, seed: u64) -> Vec<Arc<dyn PatchSource>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|k| {
            let c: [f64; 3] = std::array::from_fn(|d| shape[d] as f64 * rng.uniform(0.35, 0.65));
            let r: [f64; 3] = std::array::from_fn(|d| shape[d] as f64 * rng.uniform(0.12, 0.25));
            let vox = shape.iter().product::<usize>();
            let mut seg = Vec::with_capacity(vox);
            let mut data = vec![0.0f32; vox * channels];
            for z in 0..shape[0] {
                for y in 0..shape[1] {
                    for x in 0..shape[2] {
                        let p = [z, y, x];
                        let d: f64 = (0..3).map(|i| ((p[i] as f64 - c[i]) / r[i]).powi(2)).sum();
                        seg.push(if d < 0.4 {
                            2
                        } else if d < 1.0 {
                            1
                        } else {
                            0
                        });
                        let i = (z * shape[1] + y) * shape[2] + x;
                        for ch in 0..channels {
                            data[ch * vox + i] = (-(d as f32)).exp() + 0.1 * ((i * (ch + 7)) % 13) as f32 / 13.0;
                        }
                    }
                }
            }
            Arc::new(MemoryCase::new(&format!("synthetic_{k}"), data, seg, channels, shape)) as Arc<dyn PatchSource>
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_run() {
        let cfg = crate::trainer::tests_support::config(&[8, 8, 8], 2);
        let cases = synthetic_cases(2, [10, 12, 12], 1, 0);
        let b = time_augmentation(cases, &cfg, None, 2, 0).unwrap();
        assert_eq!(b.data_shape, vec![2, 1, 8, 8, 8]);
        let opts = TrainOptions { torch_threads: 1, ..TrainOptions::default() };
        let s = time_train_step(&cfg, 1, 3, 2, 1, &opts).unwrap();
        assert!(s.seconds_per_step > 0.0 && s.parameters > 0);
    }
}

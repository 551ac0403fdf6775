//! The fold trainer (§7): per epoch the learning-rate schedule, `iterations_per_epoch`
//! training steps (zero grad, forward, deep-supervised loss, backward, clip 12, step), then
//! `val_iterations` validation batches (loss and the global pseudo Dice with its EMA).
//!
//! Writes into `out_dir`: `log.json` (every [`EpochRecord`]), `progress.svg`,
//! `checkpoint_best` (whenever the EMA improves), `checkpoint_latest` (every `save_every`
//! epochs, at a stop and at the end; resumable: weights, optimizer state with momentum
//! buffers, schedule, records) and `checkpoint_final`. A run finding `checkpoint_latest`
//! resumes at the next epoch. Batches are a function of `(seed, epoch, iteration)`, so a resumed
//! run sees the data an uninterrupted one would have seen.

use crate::augment::AugmentConfig;
use crate::checkpoint::{self, read_json, write_atomic, write_json, write_weights, CheckpointMeta};
use crate::error::{NetError, Result};
use crate::loader::{batch_seed, worker_pool, BatchLoader, BatchSpec, Stream};
pub use crate::loss::LossKind;
use crate::loss::{DeepSupervisionLoss, LabelMode, SegLoss};
use crate::metrics::{nanmean, DiceCounts};
pub use crate::optim::OptimizerKind;
use crate::optim::{clip_grad_norm, Optimizer};
use crate::sampler::{open_store_cases, CaseCache, PatchSampler, PatchSource, DEFAULT_CASE_CACHE_BYTES};
use crate::schedule::{poly_lr, PlateauSchedule};
use crate::unet::{build_network_seeded, cap_features, count_parameters, NetOptions, UNet};
use nnunet_io::labels::Labels;
use nnunet_prep::plans::{Plans, ResolvedConfiguration};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Training options (defaults: nnU-Net v2's trainer).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: usize,
    pub iterations_per_epoch: usize,
    pub val_iterations: usize,
    /// Overrides the plans' batch size.
    pub batch_size: Option<usize>,
    /// `None`: the optimizer's default (1e-2 SGD, 3e-4 Adam).
    pub initial_lr: Option<f64>,
    pub weight_decay: f64,
    pub momentum: f64,
    pub optimizer: OptimizerKind,
    pub grad_clip: f64,
    pub loss: LossKind,
    pub net: NetOptions,
    pub augment: bool,
    pub oversample_foreground: f64,
    /// Augmentation worker threads.
    pub workers: usize,
    pub seed: u64,
    pub device: Device,
    /// `checkpoint_latest` every this many epochs.
    pub save_every: usize,
    /// Caps the features per stage.
    pub features_cap: Option<i64>,
    /// bf16 convolutions on CUDA (ignored on the CPU).
    pub mixed_precision: bool,
    /// libtorch intra-op threads.
    pub torch_threads: usize,
    /// Memory budget for keeping decoded store cases in memory (0: always partial reads).
    pub case_cache_bytes: usize,
    /// Cascade stage: foreground labels the previous stage's segmentation (read from the
    /// cases, [`crate::sampler::CascadeCase`]) is one-hot encoded over as extra input channels.
    pub cascade_labels: Vec<i16>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 1000,
            iterations_per_epoch: 250,
            val_iterations: 50,
            batch_size: None,
            initial_lr: None,
            weight_decay: 3e-5,
            momentum: 0.99,
            optimizer: OptimizerKind::SgdNesterov,
            grad_clip: 12.0,
            loss: LossKind::DiceCe,
            net: NetOptions::default(),
            augment: true,
            oversample_foreground: 0.33,
            workers: 1,
            seed: 0,
            device: Device::Cpu,
            save_every: 10,
            features_cap: None,
            mixed_precision: true,
            torch_threads: 1,
            case_cache_bytes: DEFAULT_CASE_CACHE_BYTES,
            cascade_labels: Vec::new(),
        }
    }
}

mod nan_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

mod nan_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn serialize<S: Serializer>(v: &[(String, f64)], s: S) -> Result<S::Ok, S::Error> {
        let o: Vec<(&str, Option<f64>)> = v.iter().map(|(k, x)| (k.as_str(), x.is_finite().then_some(*x))).collect();
        o.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, f64)>, D::Error> {
        let o = Vec::<(String, Option<f64>)>::deserialize(d)?;
        Ok(o.into_iter().map(|(k, x)| (k, x.unwrap_or(f64::NAN))).collect())
    }
}

/// One epoch's numbers (NaN is written as `null`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    #[serde(with = "nan_f64")]
    pub train_loss: f64,
    #[serde(with = "nan_f64")]
    pub val_loss: f64,
    /// Global (patch-based) Dice per foreground class or region: `(name, dice)`.
    #[serde(with = "nan_pairs")]
    pub pseudo_dice: Vec<(String, f64)>,
    #[serde(with = "nan_f64")]
    pub mean_fg_dice: f64,
    #[serde(with = "nan_f64")]
    pub ema_fg_dice: f64,
    pub lr: f64,
    pub epoch_seconds: f64,
    /// Seconds the trainer waited for batches.
    pub data_wait_seconds: f64,
}

/// What a training run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub epochs_completed: usize,
    /// Training reached its end (all epochs, or the plateau stop).
    pub finished: bool,
    /// Stopped by the plateau rule (Adam/original schedule).
    pub stopped_early: bool,
    /// Stopped because the epoch callback asked to.
    pub cancelled: bool,
    pub resumed_from: Option<usize>,
    #[serde(with = "nan_f64")]
    pub best_ema_fg_dice: f64,
    pub best_epoch: Option<usize>,
    pub last: Option<EpochRecord>,
    pub parameters: i64,
    pub batch_size: usize,
    pub patch_size: Vec<usize>,
    pub initial_patch_size: Vec<usize>,
    pub seconds: f64,
}

/// Resumable state stored in `checkpoint_latest/state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    next_epoch: usize,
    seed: u64,
    #[serde(default)]
    best_ema: Option<f64>,
    #[serde(default)]
    best_epoch: Option<usize>,
    #[serde(default)]
    plateau: Option<PlateauSchedule>,
    #[serde(default)]
    stopped_early: bool,
    records: Vec<EpochRecord>,
}

/// Names of the pseudo-Dice entries: foreground labels (label mode) or regions, in order.
pub fn class_names(labels: &Labels, mode: &LabelMode) -> Vec<String> {
    match mode {
        LabelMode::Labels { num_classes, .. } => (1..*num_classes)
            .map(|l| labels.name_of(l as i32).map_or_else(|| format!("label_{l}"), str::to_string))
            .collect(),
        LabelMode::Regions { regions, .. } => {
            let named: Vec<String> = labels
                .entries
                .iter()
                .filter(|(_, d)| {
                    let v = d.values();
                    !v.is_empty() && v != [0]
                })
                .map(|(n, _)| n.clone())
                .collect();
            (0..regions.len()).map(|i| named.get(i).cloned().unwrap_or_else(|| format!("region_{i}"))).collect()
        }
    }
}

/// Trains one fold from the preprocessed store `store` (one sub-group per case id).
///
/// `on_epoch` gets all records after every epoch; returning `Ok(false)` stops training (the
/// state is checkpointed first). See [`train_fold_sources`].
#[allow(clippy::too_many_arguments)]
pub fn train_fold<E: std::fmt::Display, F: FnMut(&[EpochRecord]) -> std::result::Result<bool, E>>(
    opts: &TrainOptions,
    _plans: &Plans,
    cfg: &ResolvedConfiguration,
    labels: &Labels,
    store: &Path,
    train_ids: &[String],
    val_ids: &[String],
    out_dir: &Path,
    on_epoch: &mut F,
) -> Result<TrainOutcome> {
    let cache = (opts.case_cache_bytes > 0).then(|| CaseCache::new(opts.case_cache_bytes));
    let train = open_store_cases(store, train_ids, cache.clone())?;
    let val = open_store_cases(store, val_ids, cache)?;
    let mode = LabelMode::from_labels(labels);
    let names = class_names(labels, &mode);
    train_fold_sources(opts, cfg, mode, names, train, val, out_dir, on_epoch)
}

/// Network, optimizer and everything the epochs share.
struct Run {
    vs: nn::VarStore,
    net: UNet,
    params: Vec<(String, Tensor)>,
    opt: Optimizer,
    loss: DeepSupervisionLoss,
    meta: CheckpointMeta,
}

impl Run {
    fn save(&self, dir: &Path, epoch: usize, state: Option<&TrainState>) -> Result<()> {
        let meta = CheckpointMeta { epoch, ..self.meta.clone() };
        write_atomic(dir, |tmp| {
            write_weights(tmp, &self.vs, &meta)?;
            if let Some(st) = state {
                self.opt.save(tmp)?;
                write_json(&tmp.join(checkpoint::STATE), st)?;
            }
            Ok(())
        })
    }
}

/// [`train_fold`] on explicit case sources (in-memory or store cases).
#[allow(clippy::too_many_arguments)]
pub fn train_fold_sources<E: std::fmt::Display, F: FnMut(&[EpochRecord]) -> std::result::Result<bool, E>>(
    opts: &TrainOptions,
    cfg: &ResolvedConfiguration,
    mode: LabelMode,
    names: Vec<String>,
    train: Vec<Arc<dyn PatchSource>>,
    val: Vec<Arc<dyn PatchSource>>,
    out_dir: &Path,
    on_epoch: &mut F,
) -> Result<TrainOutcome> {
    let t_start = Instant::now();
    let first = train.first().ok_or_else(|| NetError::Invalid("the fold has no training cases".into()))?;
    let in_channels = first.num_channels();
    if let Some(c) = train.iter().chain(&val).find(|c| c.num_channels() != in_channels) {
        return Err(NetError::Invalid(format!(
            "case {} has {} channels, expected {in_channels}",
            c.id(),
            c.num_channels()
        )));
    }
    let val = if val.is_empty() { train.clone() } else { val };
    std::fs::create_dir_all(out_dir).map_err(|e| crate::error::io_err(out_dir, e))?;
    tch::set_num_threads(opts.torch_threads.max(1) as i32);
    let cuda = opts.device.is_cuda();
    if cuda {
        tch::Cuda::cudnn_set_benchmark(true);
    }

    // Data.
    let aug = AugmentConfig::from_configuration(cfg, opts.augment, opts.net.deep_supervision)
        .with_cascade(opts.cascade_labels.clone());
    // The network also sees the one-hot previous-stage channels of a cascade stage.
    let in_channels = aug.network_channels(in_channels);
    let bs = opts.batch_size.unwrap_or(cfg.batch_size).max(1);
    let sampler = |a: &AugmentConfig| PatchSampler {
        batch_size: bs,
        oversample_foreground: opts.oversample_foreground,
        initial_patch_size: a.initial_patch_size,
        final_patch_size: a.patch_size,
        has_ignore: mode.ignore().is_some(),
    };
    let val_aug = aug.validation();
    let train_spec = Arc::new(BatchSpec { cases: train, sampler: sampler(&aug), augment: aug.clone() });
    let val_spec = Arc::new(BatchSpec { cases: val, sampler: sampler(&val_aug), augment: val_aug });
    let pool = worker_pool(opts.workers)?;
    let prefetch = opts.workers.max(2);

    // Network and optimizer.
    let arch = cap_features(&cfg.architecture, opts.features_cap);
    let vs = nn::VarStore::new(opts.device);
    let num_outputs = mode.num_outputs();
    let mut net = build_network_seeded(&vs.root(), &arch, in_channels as i64, num_outputs, &opts.net, opts.seed)?;
    if cuda && opts.mixed_precision {
        net.set_compute_kind(Some(Kind::BFloat16));
    }
    let params: Vec<(String, Tensor)> = {
        let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let lr0 = opts.initial_lr.unwrap_or_else(|| opts.optimizer.default_lr());
    let opt = Optimizer::new(opts.optimizer, opts.momentum, opts.weight_decay);
    let loss = DeepSupervisionLoss::new(SegLoss::new(opts.loss, mode.clone(), cfg.batch_dice), aug.ds_scales.len());
    let meta = CheckpointMeta {
        configuration: cfg.name.clone(),
        in_channels,
        num_classes: num_outputs as usize,
        net_options: NetOptions { deep_supervision: false, ..opts.net },
        inference_allowed_mirroring_axes: aug.inference_mirror_axes(),
        epoch: 0,
        features_cap: opts.features_cap,
        architecture: Some(arch.clone()),
    };
    let parameters = count_parameters(&vs);
    let mut run = Run { vs, net, params, opt, loss, meta };

    // Resume.
    let latest = out_dir.join(checkpoint::LATEST);
    checkpoint::recover(&latest)?;
    let mut state = TrainState {
        next_epoch: 0,
        seed: opts.seed,
        best_ema: None,
        best_epoch: None,
        plateau: None,
        stopped_early: false,
        records: vec![],
    };
    let mut resumed_from = None;
    if latest.is_dir() {
        let st: TrainState = read_json(&latest.join(checkpoint::STATE))?;
        if st.seed != opts.seed {
            return Err(NetError::Checkpoint {
                path: latest,
                msg: format!("was trained with seed {}, this run uses {}", st.seed, opts.seed),
            });
        }
        let w = latest.join(checkpoint::WEIGHTS);
        run.vs
            .load(&w)
            .map_err(|e| NetError::Checkpoint { path: latest.clone(), msg: format!("{}: {e}", checkpoint::WEIGHTS) })?;
        run.opt.load(&latest, opts.device)?;
        resumed_from = Some(st.next_epoch);
        state = st;
    } else if let Some(done) = finished_run(out_dir, opts.epochs) {
        // Training already completed (its resumable checkpoint was removed afterwards).
        state = done;
        resumed_from = Some(state.next_epoch);
    }
    if opts.optimizer == OptimizerKind::AdamPlateau && state.plateau.is_none() {
        state.plateau = Some(PlateauSchedule::new(lr0));
    }

    let mut cancelled = false;
    let start_epoch = state.next_epoch;
    let mut epoch = start_epoch;
    while epoch < opts.epochs && !state.stopped_early {
        let t_epoch = Instant::now();
        let lr = match (&state.plateau, opts.optimizer) {
            (Some(p), OptimizerKind::AdamPlateau) => p.lr,
            _ => poly_lr(lr0, epoch, opts.epochs, 0.9),
        };
        // Training.
        let seeds = (0..opts.iterations_per_epoch).map(|i| batch_seed(opts.seed, Stream::Train, epoch, i)).collect();
        let mut loader = BatchLoader::start(pool.clone(), train_spec.clone(), seeds, prefetch);
        let mut train_losses = Vec::with_capacity(opts.iterations_per_epoch);
        while let Some(b) = loader.next_batch() {
            let b = b?;
            let x = b.data_tensor(opts.device);
            let targets = b.target_tensors(opts.device);
            Optimizer::zero_grad(&run.params);
            let outs = run.net.forward_t(&x, true);
            let l = run.loss.forward(&outs, &targets);
            l.backward();
            clip_grad_norm(&run.params, opts.grad_clip);
            run.opt.step(&run.params, lr);
            train_losses.push(l.double_value(&[]));
        }
        let mut wait = loader.wait_seconds();
        drop(loader);
        // Validation.
        let seeds = (0..opts.val_iterations).map(|i| batch_seed(opts.seed, Stream::Validation, epoch, i)).collect();
        let mut loader = BatchLoader::start(pool.clone(), val_spec.clone(), seeds, prefetch);
        let mut val_losses = Vec::new();
        let mut counts = DiceCounts::new(names.len());
        while let Some(b) = loader.next_batch() {
            let b = b?;
            let x = b.data_tensor(opts.device);
            let targets = b.target_tensors(opts.device);
            tch::no_grad(|| {
                let outs = run.net.forward_t(&x, false);
                val_losses.push(run.loss.forward(&outs, &targets).double_value(&[]));
                counts.add(&outs[0], &targets[0], &mode);
            });
        }
        wait += loader.wait_seconds();
        drop(loader);
        let dice = counts.dice();
        let mean_fg = nanmean(&dice);
        let ema = match state.records.last() {
            Some(r) => 0.9 * r.ema_fg_dice + 0.1 * mean_fg,
            None => mean_fg,
        };
        let rec = EpochRecord {
            epoch,
            train_loss: mean(&train_losses),
            val_loss: mean(&val_losses),
            pseudo_dice: names.iter().cloned().zip(dice).collect(),
            mean_fg_dice: mean_fg,
            ema_fg_dice: ema,
            lr,
            epoch_seconds: t_epoch.elapsed().as_secs_f64(),
            data_wait_seconds: wait,
        };
        let train_loss = rec.train_loss;
        state.records.push(rec);
        epoch += 1;
        state.next_epoch = epoch;
        if let Some(p) = &mut state.plateau {
            if !p.end_epoch(epoch - 1, train_loss) {
                state.stopped_early = true;
            }
        }
        // §7.2: checkpoint_best whenever the EMA improves.
        if state.best_ema.is_none_or(|b| b.is_nan() && !ema.is_nan() || ema > b) {
            state.best_ema = Some(ema);
            state.best_epoch = Some(epoch - 1);
            run.save(&out_dir.join(checkpoint::BEST), epoch - 1, None)?;
        }
        write_json(&out_dir.join("log.json"), &state.records)?;
        crate::plot::write_progress(&out_dir.join("progress.svg"), &state.records)?;
        let keep_going = on_epoch(&state.records).map_err(|e| NetError::Callback(e.to_string()))?;
        let last = epoch >= opts.epochs || state.stopped_early;
        if !keep_going || last || epoch.is_multiple_of(opts.save_every.max(1)) {
            run.save(&latest, epoch - 1, Some(&state))?;
        }
        if !keep_going && !last {
            cancelled = true;
            break;
        }
    }
    let finished = !cancelled && (epoch >= opts.epochs || state.stopped_early);
    let has_final = out_dir.join(checkpoint::FINAL).join(checkpoint::WEIGHTS).is_file();
    if finished && (epoch > start_epoch || !has_final) {
        run.save(&out_dir.join(checkpoint::FINAL), epoch.saturating_sub(1), None)?;
        // Record completion next to the final weights for re-runs without checkpoint_latest.
        write_json(&out_dir.join("training_state.json"), &state)?;
    }
    Ok(TrainOutcome {
        epochs_completed: epoch,
        finished,
        stopped_early: state.stopped_early,
        cancelled,
        resumed_from,
        best_ema_fg_dice: state.best_ema.unwrap_or(f64::NAN),
        best_epoch: state.best_epoch,
        last: state.records.last().cloned(),
        parameters,
        batch_size: bs,
        patch_size: cfg.patch_size.clone(),
        initial_patch_size: if aug.is_2d {
            aug.initial_patch_size[1..].to_vec()
        } else {
            aug.initial_patch_size.to_vec()
        },
        seconds: t_start.elapsed().as_secs_f64(),
    })
}

/// A completed run's state, when `checkpoint_final` and `training_state.json` say all
/// `epochs` are done.
fn finished_run(out_dir: &Path, epochs: usize) -> Option<TrainState> {
    let st: TrainState = read_json(&out_dir.join("training_state.json")).ok()?;
    let meta = checkpoint::read_meta(&out_dir.join(checkpoint::FINAL)).ok()?;
    (meta.epoch + 1 == st.next_epoch && (st.next_epoch >= epochs || st.stopped_early)).then_some(st)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use nnunet_prep::plans::{ResamplingKwargs, ResolvedConfiguration};

    /// A small plain U-Net configuration (features 4, 8, 16; strides 1, 2, 2).
    pub fn config(patch: &[usize], bs: usize) -> ResolvedConfiguration {
        let nd = patch.len();
        let strides: Vec<Vec<i64>> = (0..3).map(|s| vec![if s == 0 { 1 } else { 2 }; nd]).collect();
        let arch = crate::unet::tests::arch(&[4, 8, 16], &vec![vec![3; nd]; 3], &strides, false);
        let rk = ResamplingKwargs { is_seg: false, order: 3, order_z: 0, force_separate_z: None };
        ResolvedConfiguration {
            name: "3d_fullres".into(),
            data_identifier: "t".into(),
            batch_size: bs,
            patch_size: patch.to_vec(),
            median_image_size_in_voxels: vec![16.0; nd],
            spacing: vec![1.0; nd],
            normalization_schemes: vec!["ZScoreNormalization".into()],
            use_mask_for_norm: vec![false],
            resampling_data: rk.clone(),
            resampling_seg: rk.clone(),
            resampling_probabilities: rk,
            architecture: arch,
            batch_dice: false,
            previous_stage: None,
            next_stage: None,
        }
    }
}

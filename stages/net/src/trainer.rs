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
use nnunet_prep::plans::ResolvedConfiguration;
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
    /// Initial weights (fine-tuning, nnU-Net's `-pretrained_weights`); a resumed run keeps
    /// its checkpoint's.
    pub pretrained: Option<std::sync::Arc<crate::nnunet_checkpoint::Pretrained>>,
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
            pretrained: None,
        }
    }
}

/// One epoch's numbers (NaN is written as `null`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    #[serde(with = "nnunet_io::fsio::nan_as_null")]
    pub train_loss: f64,
    #[serde(with = "nnunet_io::fsio::nan_as_null")]
    pub val_loss: f64,
    /// Global (patch-based) Dice per foreground class or region: `(name, dice)`.
    #[serde(with = "nnunet_io::fsio::nan_as_null::pairs")]
    pub pseudo_dice: Vec<(String, f64)>,
    #[serde(with = "nnunet_io::fsio::nan_as_null")]
    pub mean_fg_dice: f64,
    #[serde(with = "nnunet_io::fsio::nan_as_null")]
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
    #[serde(with = "nnunet_io::fsio::nan_as_null")]
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

/// The cases of one fold and how their labels are scored.
pub struct FoldCases {
    /// How label maps become training targets (labels or regions, ignore label).
    pub mode: LabelMode,
    /// Names of the pseudo-Dice entries ([`class_names`]).
    pub names: Vec<String>,
    pub train: Vec<Arc<dyn PatchSource>>,
    /// Validation cases; empty: validate on the training cases (fold `all`).
    pub val: Vec<Arc<dyn PatchSource>>,
}

impl FoldCases {
    /// The fold's cases in the preprocessed store `store` (one sub-group per case id), sharing
    /// one decoded-case cache of `case_cache_bytes` (0: partial reads only).
    pub fn from_store(
        store: &Path,
        labels: &Labels,
        train_ids: &[String],
        val_ids: &[String],
        case_cache_bytes: usize,
    ) -> Result<FoldCases> {
        let cache = (case_cache_bytes > 0).then(|| CaseCache::new(case_cache_bytes));
        let train = open_store_cases(store, train_ids, cache.clone())?;
        let val = open_store_cases(store, val_ids, cache)?;
        let mode = LabelMode::from_labels(labels);
        let names = class_names(labels, &mode);
        Ok(FoldCases { mode, names, train, val })
    }

    /// The input channel count all cases share.
    fn in_channels(&self) -> Result<usize> {
        let first = self.train.first().ok_or_else(|| NetError::Invalid("the fold has no training cases".into()))?;
        let channels = first.num_channels();
        if let Some(c) = self.train.iter().chain(&self.val).find(|c| c.num_channels() != channels) {
            return Err(NetError::Invalid(format!(
                "case {} has {} channels, expected {channels}",
                c.id(),
                c.num_channels()
            )));
        }
        Ok(channels)
    }
}

/// Trains one fold, writing into `out_dir` (see the module comment), resuming from
/// `checkpoint_latest` when there is one.
///
/// `on_epoch` gets all records after every epoch; returning `Ok(false)` stops training (the
/// state is checkpointed first). The phases are [`Trainer`]'s: setup, resume, then per epoch
/// train, validate and end of epoch.
pub fn train_fold<E: std::fmt::Display, F: FnMut(&[EpochRecord]) -> std::result::Result<bool, E>>(
    opts: &TrainOptions,
    cfg: &ResolvedConfiguration,
    cases: FoldCases,
    out_dir: &Path,
    on_epoch: &mut F,
) -> Result<TrainOutcome> {
    let t_start = Instant::now();
    let mut trainer = Trainer::setup(opts, cfg, cases, out_dir)?;
    let (mut state, resumed_from) = trainer.resume()?;
    let start_epoch = state.next_epoch;
    let mut cancelled = false;
    while state.next_epoch < opts.epochs && !state.stopped_early {
        let t_epoch = Instant::now();
        let epoch = state.next_epoch;
        let lr = trainer.learning_rate(&state, epoch);
        let train = trainer.train_epoch(epoch, lr)?;
        let val = trainer.validate(epoch)?;
        let record = trainer.epoch_record(&state, epoch, lr, &train, val, t_epoch);
        if trainer.end_epoch(&mut state, record, on_epoch)? == EpochEnd::Cancelled {
            cancelled = true;
            break;
        }
    }
    let finished = !cancelled && (state.next_epoch >= opts.epochs || state.stopped_early);
    if finished {
        trainer.finish(&state, state.next_epoch > start_epoch)?;
    }
    Ok(trainer.outcome(&state, finished, cancelled, resumed_from, t_start))
}

/// The batch streams of one fold: a worker pool and what train and validation batches are
/// drawn from.
struct Batches {
    pool: Arc<rayon::ThreadPool>,
    train: Arc<BatchSpec>,
    val: Arc<BatchSpec>,
    prefetch: usize,
}

impl Batches {
    fn new(opts: &TrainOptions, aug: &AugmentConfig, batch_size: usize, cases: FoldCases) -> Result<Batches> {
        let has_ignore = cases.mode.ignore().is_some();
        let sampler = |a: &AugmentConfig| PatchSampler {
            batch_size,
            oversample_foreground: opts.oversample_foreground,
            initial_patch_size: a.initial_patch_size,
            final_patch_size: a.patch_size,
            has_ignore,
        };
        let val_cases = if cases.val.is_empty() { cases.train.clone() } else { cases.val };
        let val_aug = aug.validation();
        Ok(Batches {
            pool: worker_pool(opts.workers)?,
            train: Arc::new(BatchSpec { cases: cases.train, sampler: sampler(aug), augment: aug.clone() }),
            val: Arc::new(BatchSpec { cases: val_cases, sampler: sampler(&val_aug), augment: val_aug }),
            prefetch: opts.workers.max(2),
        })
    }

    /// The loader of `count` batches of `stream` in `epoch` (a function of the seed only).
    fn loader(&self, seed: u64, stream: Stream, epoch: usize, count: usize) -> BatchLoader {
        let spec = match stream {
            Stream::Train => self.train.clone(),
            Stream::Validation => self.val.clone(),
        };
        let seeds = (0..count).map(|i| batch_seed(seed, stream, epoch, i)).collect();
        BatchLoader::start(self.pool.clone(), spec, seeds, self.prefetch)
    }
}

/// Network, optimizer and loss: what the epochs update, and how it is checkpointed.
struct Model {
    vs: nn::VarStore,
    net: UNet,
    /// Trainable parameters, sorted by name (the optimizer's order).
    params: Vec<(String, Tensor)>,
    opt: Optimizer,
    loss: DeepSupervisionLoss,
    meta: CheckpointMeta,
}

impl Model {
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

/// Mean training loss and data wait of one epoch's training steps.
struct TrainStats {
    loss: f64,
    wait_seconds: f64,
}

/// One epoch's validation: mean loss, pseudo Dice per entry, data wait.
struct Validation {
    loss: f64,
    dice: Vec<f64>,
    wait_seconds: f64,
}

/// How an epoch ended.
#[derive(Debug, PartialEq, Eq)]
enum EpochEnd {
    Continue,
    /// The callback asked to stop before the last epoch.
    Cancelled,
}

/// One fold's training, phase by phase (in the spirit of burn's `TrainStep` /
/// `InferenceStep`): [`Trainer::setup`], [`Trainer::resume`], then per epoch
/// [`Trainer::train_epoch`], [`Trainer::validate`], [`Trainer::end_epoch`], and
/// [`Trainer::finish`].
struct Trainer<'a> {
    opts: &'a TrainOptions,
    cfg: &'a ResolvedConfiguration,
    out_dir: &'a Path,
    mode: LabelMode,
    names: Vec<String>,
    batches: Batches,
    model: Model,
    aug: AugmentConfig,
    batch_size: usize,
    lr0: f64,
    parameters: i64,
}

impl<'a> Trainer<'a> {
    /// Checks the cases, builds the batch streams, the network (seeded), optimizer and loss.
    fn setup(
        opts: &'a TrainOptions,
        cfg: &'a ResolvedConfiguration,
        cases: FoldCases,
        out_dir: &'a Path,
    ) -> Result<Trainer<'a>> {
        let in_channels = cases.in_channels()?;
        std::fs::create_dir_all(out_dir).map_err(|e| crate::error::io_err(out_dir, e))?;
        tch::set_num_threads(opts.torch_threads.max(1) as i32);
        let cuda = opts.device.is_cuda();
        if cuda {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let aug = AugmentConfig::from_configuration(cfg, opts.augment, opts.net.deep_supervision)
            .with_cascade(opts.cascade_labels.clone());
        // The network also sees the one-hot previous-stage channels of a cascade stage.
        let in_channels = aug.network_channels(in_channels);
        let batch_size = opts.batch_size.unwrap_or(cfg.batch_size).max(1);
        let (mode, names) = (cases.mode.clone(), cases.names.clone());
        let batches = Batches::new(opts, &aug, batch_size, cases)?;

        let arch = cap_features(&cfg.architecture, opts.features_cap);
        let vs = nn::VarStore::new(opts.device);
        let num_outputs = mode.num_outputs();
        let mut net = build_network_seeded(&vs.root(), &arch, in_channels as i64, num_outputs, &opts.net, opts.seed)?;
        if cuda && opts.mixed_precision {
            net.set_compute_kind(Some(Kind::BFloat16));
        }
        if let Some(p) = &opts.pretrained {
            p.apply(&vs)?;
        }
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let opt = Optimizer::new(opts.optimizer, opts.momentum, opts.weight_decay);
        let loss = DeepSupervisionLoss::new(SegLoss::new(opts.loss, mode.clone(), cfg.batch_dice), aug.ds_scales.len());
        let meta = CheckpointMeta {
            configuration: cfg.name.clone(),
            in_channels,
            num_classes: num_outputs as usize,
            net_options: NetOptions { deep_supervision: false, ..opts.net },
            inference_allowed_mirroring_axes: Some(aug.inference_mirror_axes()),
            epoch: 0,
            features_cap: opts.features_cap,
            architecture: Some(arch),
        };
        let parameters = count_parameters(&vs);
        Ok(Trainer {
            opts,
            cfg,
            out_dir,
            mode,
            names,
            batches,
            model: Model { vs, net, params, opt, loss, meta },
            aug,
            batch_size,
            lr0: opts.initial_lr.unwrap_or_else(|| opts.optimizer.default_lr()),
            parameters,
        })
    }

    /// The state to continue from: `checkpoint_latest` (weights, optimizer, records), a run
    /// already finished, or a fresh start. Also returns the epoch resumed at.
    fn resume(&mut self) -> Result<(TrainState, Option<usize>)> {
        let opts = self.opts;
        let latest = self.out_dir.join(checkpoint::LATEST);
        checkpoint::recover(&latest)?;
        let (mut state, resumed_from) = if latest.is_dir() {
            let st: TrainState = read_json(&latest.join(checkpoint::STATE))?;
            if st.seed != opts.seed {
                return Err(NetError::Checkpoint {
                    path: latest,
                    msg: format!("was trained with seed {}, this run uses {}", st.seed, opts.seed),
                });
            }
            let w = latest.join(checkpoint::WEIGHTS);
            self.model.vs.load(&w).map_err(|e| NetError::Checkpoint {
                path: latest.clone(),
                msg: format!("{}: {e}", checkpoint::WEIGHTS),
            })?;
            self.model.opt.load(&latest, opts.device)?;
            let at = st.next_epoch;
            (st, Some(at))
        } else if let Some(done) = finished_run(self.out_dir, opts.epochs) {
            // Training already completed (its resumable checkpoint was removed afterwards).
            let at = done.next_epoch;
            (done, Some(at))
        } else {
            (TrainState::fresh(opts.seed), None)
        };
        if opts.optimizer == OptimizerKind::AdamPlateau && state.plateau.is_none() {
            state.plateau = Some(PlateauSchedule::new(self.lr0));
        }
        Ok((state, resumed_from))
    }

    /// The learning rate of `epoch`: the plateau schedule's (Adam) or poly decay.
    fn learning_rate(&self, state: &TrainState, epoch: usize) -> f64 {
        match (&state.plateau, self.opts.optimizer) {
            (Some(p), OptimizerKind::AdamPlateau) => p.lr,
            _ => poly_lr(self.lr0, epoch, self.opts.epochs, 0.9),
        }
    }

    /// `iterations_per_epoch` steps: zero grad, forward, deep-supervised loss, backward, clip,
    /// optimizer step.
    fn train_epoch(&mut self, epoch: usize, lr: f64) -> Result<TrainStats> {
        let opts = self.opts;
        let mut loader = self.batches.loader(opts.seed, Stream::Train, epoch, opts.iterations_per_epoch);
        let mut losses = Vec::with_capacity(opts.iterations_per_epoch);
        let m = &mut self.model;
        while let Some(b) = loader.next_batch() {
            let b = b?;
            let x = b.data_tensor(opts.device);
            let targets = b.target_tensors(opts.device);
            Optimizer::zero_grad(&m.params);
            let outs = m.net.forward_t(&x, true);
            let l = m.loss.forward(&outs, &targets);
            l.backward();
            clip_grad_norm(&m.params, opts.grad_clip);
            m.opt.step(&m.params, lr);
            losses.push(l.double_value(&[]));
        }
        Ok(TrainStats { loss: mean(&losses), wait_seconds: loader.wait_seconds() })
    }

    /// `val_iterations` batches without gradients: loss and the global pseudo Dice.
    fn validate(&mut self, epoch: usize) -> Result<Validation> {
        let opts = self.opts;
        let mut loader = self.batches.loader(opts.seed, Stream::Validation, epoch, opts.val_iterations);
        let mut losses = Vec::new();
        let mut counts = DiceCounts::new(self.names.len());
        let m = &self.model;
        while let Some(b) = loader.next_batch() {
            let b = b?;
            let x = b.data_tensor(opts.device);
            let targets = b.target_tensors(opts.device);
            tch::no_grad(|| {
                let outs = m.net.forward_t(&x, false);
                losses.push(m.loss.forward(&outs, &targets).double_value(&[]));
                counts.add(&outs[0], &targets[0], &self.mode);
            });
        }
        Ok(Validation { loss: mean(&losses), dice: counts.dice(), wait_seconds: loader.wait_seconds() })
    }

    /// The epoch's record, with the pseudo-Dice EMA continued from the previous record.
    fn epoch_record(
        &self,
        state: &TrainState,
        epoch: usize,
        lr: f64,
        train: &TrainStats,
        val: Validation,
        started: Instant,
    ) -> EpochRecord {
        let mean_fg = nanmean(&val.dice);
        let ema = match state.records.last() {
            Some(r) => 0.9 * r.ema_fg_dice + 0.1 * mean_fg,
            None => mean_fg,
        };
        EpochRecord {
            epoch,
            train_loss: train.loss,
            val_loss: val.loss,
            pseudo_dice: self.names.iter().cloned().zip(val.dice).collect(),
            mean_fg_dice: mean_fg,
            ema_fg_dice: ema,
            lr,
            epoch_seconds: started.elapsed().as_secs_f64(),
            data_wait_seconds: train.wait_seconds + val.wait_seconds,
        }
    }

    /// Records the epoch: plateau rule, `checkpoint_best` when the EMA improves (§7.2),
    /// `log.json` and `progress.svg`, the callback, `checkpoint_latest` when due.
    fn end_epoch<E: std::fmt::Display, F: FnMut(&[EpochRecord]) -> std::result::Result<bool, E>>(
        &mut self,
        state: &mut TrainState,
        record: EpochRecord,
        on_epoch: &mut F,
    ) -> Result<EpochEnd> {
        let (epoch, train_loss, ema) = (record.epoch, record.train_loss, record.ema_fg_dice);
        state.records.push(record);
        state.next_epoch = epoch + 1;
        if let Some(p) = &mut state.plateau {
            if !p.end_epoch(epoch, train_loss) {
                state.stopped_early = true;
            }
        }
        if state.best_ema.is_none_or(|b| b.is_nan() && !ema.is_nan() || ema > b) {
            state.best_ema = Some(ema);
            state.best_epoch = Some(epoch);
            self.model.save(&self.out_dir.join(checkpoint::BEST), epoch, None)?;
        }
        write_json(&self.out_dir.join("log.json"), &state.records)?;
        crate::plot::write_progress(&self.out_dir.join("progress.svg"), &state.records)?;
        let keep_going = on_epoch(&state.records).map_err(|e| NetError::Callback(e.to_string()))?;
        let last = state.next_epoch >= self.opts.epochs || state.stopped_early;
        if !keep_going || last || state.next_epoch.is_multiple_of(self.opts.save_every.max(1)) {
            self.model.save(&self.out_dir.join(checkpoint::LATEST), epoch, Some(state))?;
        }
        Ok(if !keep_going && !last { EpochEnd::Cancelled } else { EpochEnd::Continue })
    }

    /// Writes `checkpoint_final` (when this call trained, or it is missing) and
    /// `training_state.json`, which marks the run complete for re-runs without
    /// `checkpoint_latest`.
    fn finish(&self, state: &TrainState, trained: bool) -> Result<()> {
        let has_final = self.out_dir.join(checkpoint::FINAL).join(checkpoint::WEIGHTS).is_file();
        if trained || !has_final {
            self.model.save(&self.out_dir.join(checkpoint::FINAL), state.next_epoch.saturating_sub(1), None)?;
            write_json(&self.out_dir.join("training_state.json"), state)?;
        }
        Ok(())
    }

    fn outcome(
        &self,
        state: &TrainState,
        finished: bool,
        cancelled: bool,
        resumed_from: Option<usize>,
        started: Instant,
    ) -> TrainOutcome {
        let aug = &self.aug;
        TrainOutcome {
            epochs_completed: state.next_epoch,
            finished,
            stopped_early: state.stopped_early,
            cancelled,
            resumed_from,
            best_ema_fg_dice: state.best_ema.unwrap_or(f64::NAN),
            best_epoch: state.best_epoch,
            last: state.records.last().cloned(),
            parameters: self.parameters,
            batch_size: self.batch_size,
            patch_size: self.cfg.patch_size.clone(),
            initial_patch_size: if aug.is_2d {
                aug.initial_patch_size[1..].to_vec()
            } else {
                aug.initial_patch_size.to_vec()
            },
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

impl TrainState {
    fn fresh(seed: u64) -> TrainState {
        TrainState {
            next_epoch: 0,
            seed,
            best_ema: None,
            best_epoch: None,
            plateau: None,
            stopped_early: false,
            records: vec![],
        }
    }
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

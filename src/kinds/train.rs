//! `train-fold`: trains one configuration on one cross-validation fold (§6–§8), then predicts
//! the fold's validation cases at full resolution and scores them against the original labels
//! (§7.3). Runs in a persistent work directory, so a killed run resumes from its latest
//! checkpoint. The declaration lives here; the libtorch body is `pipeline-torch`'s `train.rs`.

use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kind::{value_str, ExecEnv, Reads, Resources, RunCtx, StageKind, UnitView};
use crate::params::{ParamSpec, ParamType, NON_NEG_FLOAT, NON_NEG_INT, POSITIVE_INT};
use nnunet_io::dataset::Dataset;

pub struct TrainFold;

/// The configuration whose preprocessed data a cascade stage trains on (nnU-Net's
/// `3d_cascade_fullres` inherits `3d_fullres`, §5.5); `None` for other configurations.
pub fn cascade_data_configuration(cfg: &str) -> Option<&'static str> {
    (cfg == nnunet_prep::planner::CONFIG_3D_CASCADE).then_some(nnunet_prep::planner::CONFIG_3D_FULLRES)
}

/// The configuration a cascade stage takes its previous-stage segmentations from (§5.5:
/// `3d_cascade_fullres.previous_stage = 3d_lowres`); `None` for other configurations. The plans
/// name it too (checked when the unit runs); the graph is built before the plans exist.
pub fn cascade_previous_configuration(cfg: &str) -> Option<&'static str> {
    (cfg == nnunet_prep::planner::CONFIG_3D_CASCADE).then_some(nnunet_prep::planner::CONFIG_3D_LOWRES)
}

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "epochs",
        ty: POSITIVE_INT,
        default: "1000",
        changes_output: true,
        help: "epochs (nnU-Net: 1000)",
    },
    ParamSpec {
        name: "iterations_per_epoch",
        ty: POSITIVE_INT,
        default: "250",
        changes_output: true,
        help: "training iterations per epoch (nnU-Net: 250)",
    },
    ParamSpec {
        name: "val_iterations",
        ty: POSITIVE_INT,
        default: "50",
        changes_output: true,
        help: "validation iterations per epoch for the pseudo Dice (nnU-Net: 50)",
    },
    ParamSpec {
        name: "batch_size",
        ty: NON_NEG_INT,
        default: "0",
        changes_output: true,
        help: "batch size; 0 = the plans' batch size",
    },
    ParamSpec {
        name: "features_cap",
        ty: NON_NEG_INT,
        default: "0",
        changes_output: true,
        help: "cap on features per stage; 0 = the plans' (320 in 3D, 512 in 2D)",
    },
    ParamSpec {
        name: "optimizer",
        ty: ParamType::Str { choices: &["sgd", "adam"] },
        default: "\"sgd\"",
        changes_output: true,
        help: "sgd: v2 default (Nesterov 0.99, lr 1e-2, poly 0.9); adam: the original paper's (3e-4, plateau x0.2)",
    },
    ParamSpec {
        name: "initial_lr",
        ty: NON_NEG_FLOAT,
        default: "0.0",
        changes_output: true,
        help: "initial learning rate; 0 = the optimizer's default (1e-2 sgd, 3e-4 adam)",
    },
    ParamSpec { name: "weight_decay", ty: NON_NEG_FLOAT, default: "3e-5", changes_output: true, help: "weight decay" },
    ParamSpec {
        name: "grad_clip",
        ty: NON_NEG_FLOAT,
        default: "12.0",
        changes_output: true,
        help: "gradient L2-norm clip",
    },
    ParamSpec {
        name: "loss",
        ty: ParamType::Str { choices: &["dice+ce", "ce", "dice"] },
        default: "\"dice+ce\"",
        changes_output: true,
        help: "loss (ablation axis)",
    },
    ParamSpec {
        name: "norm",
        ty: ParamType::Str { choices: &["instance", "batch", "none"] },
        default: "\"instance\"",
        changes_output: true,
        help: "normalization layers (ablation axis)",
    },
    ParamSpec {
        name: "nonlin",
        ty: ParamType::Str { choices: &["leaky_relu", "relu"] },
        default: "\"leaky_relu\"",
        changes_output: true,
        help: "nonlinearity (ablation axis)",
    },
    ParamSpec {
        name: "augment",
        ty: ParamType::Bool,
        default: "true",
        changes_output: true,
        help: "data augmentation on/off (ablation axis)",
    },
    ParamSpec {
        name: "deep_supervision",
        ty: ParamType::Bool,
        default: "true",
        changes_output: true,
        help: "deep supervision",
    },
    ParamSpec {
        name: "oversample",
        ty: ParamType::Float { min: 0.0, max: 1.0 },
        default: "0.33",
        changes_output: true,
        help: "fraction of samples forced to contain foreground",
    },
    ParamSpec {
        name: "workers",
        ty: NON_NEG_INT,
        default: "0",
        changes_output: false,
        help: "augmentation worker threads; 0 = all cores but one (at least 1)",
    },
    ParamSpec {
        name: "seed",
        ty: NON_NEG_INT,
        default: "0",
        changes_output: true,
        help: "seed of initialisation, sampling and augmentation",
    },
    ParamSpec {
        name: "save_every",
        ty: POSITIVE_INT,
        default: "10",
        changes_output: false,
        help: "write the resumable checkpoint_latest every N epochs",
    },
    ParamSpec {
        name: "mixed_precision",
        ty: ParamType::Bool,
        default: "true",
        changes_output: true,
        help: "bf16 autocast on CUDA (ignored on the CPU)",
    },
    ParamSpec {
        name: "validate",
        ty: ParamType::Bool,
        default: "true",
        changes_output: true,
        help: "predict and score the fold's validation cases after training",
    },
    ParamSpec {
        name: "pretrained",
        ty: ParamType::OptStr,
        default: "null",
        changes_output: true,
        help: "initial weights (fine-tuning, like nnU-Net's -pretrained_weights): an nnU-Net checkpoint .pth, one of \
               our checkpoint folders or a bundle .tar; absolute or relative to the working directory. Weights \
               whose name and shape match are loaded, segmentation heads of another label count start fresh",
    },
    ParamSpec {
        name: "validation_tta",
        ty: ParamType::Bool,
        default: "true",
        changes_output: true,
        help: "mirroring at validation (nnU-Net: on)",
    },
];

/// The `pretrained` param as a path (relative paths resolved against the working directory).
pub fn pretrained_path(params: &serde_json::Value) -> Option<PathBuf> {
    let p = params.get("pretrained")?.as_str().filter(|p| !p.is_empty())?;
    Some(std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p)))
}

/// The files whose content the `pretrained` weights are: the file itself, or a checkpoint
/// folder's weights and meta.
fn pretrained_files(unit: &UnitView) -> Vec<PathBuf> {
    match pretrained_path(unit.params) {
        Some(p) if p.is_dir() => vec![p.join("model.safetensors"), p.join("meta.json")],
        Some(p) => vec![p],
        None => vec![],
    }
}

impl StageKind for TrainFold {
    fn name(&self) -> &'static str {
        super::TRAIN_FOLD
    }
    fn version(&self) -> u32 {
        // 5: without augmentation (augment: false) the checkpoint allows no mirroring at
        //    inference and the final validation predicts without it (nnU-Net's NoDA trainer)
        // 4: stages with a next stage (3d_lowres) keep predicted_next_stage/ for the cascade
        // 3: validation outputs in the dataset's format (NIfTI-1, no foreign header extensions)
        // 2: batches drawn from the pipeline's one RNG stream derivation (nnunet_io::rng), and
        // progress.svg drawn with nnunet-chart
        5
    }
    fn about(&self) -> &'static str {
        "train one configuration on one fold, then validate at full resolution (§6-§8, §7.3)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn axes(&self) -> &'static [&'static str] {
        &["configuration", "fold"]
    }
    fn requires(&self) -> &'static [&'static str] {
        &[super::RESAMPLE, super::PLAN]
    }
    fn reads(&self, kind: &str, _unit: &UnitView) -> Reads {
        match kind {
            super::PLAN => Reads::Files(vec!["plans.json".into(), "splits_final.json".into(), "labels.json".into()]),
            _ => Reads::All,
        }
    }
    fn upstream_coords(&self, kind: &str, unit: &UnitView) -> BTreeMap<String, Value> {
        let mut c = unit.coords.clone();
        if kind == super::RESAMPLE {
            if let Some(v) = c.get_mut("configuration") {
                if let Some(data) = cascade_data_configuration(&value_str(v)) {
                    *v = Value::String(data.into());
                }
            }
        }
        c
    }
    fn reads_sibling(&self, unit: &UnitView, sibling: &UnitView) -> Option<Reads> {
        // §7.3, §9.5: the cascade trains on the previous stage's cross-validation predictions,
        // so each of its folds reads every fold of that stage (same other coordinates).
        let prev = cascade_previous_configuration(&unit.coord_str("configuration")?)?;
        let same_rest = unit
            .coords
            .iter()
            .filter(|(k, _)| k.as_str() != "configuration" && k.as_str() != "fold")
            .all(|(k, v)| sibling.coords.get(k) == Some(v));
        (sibling.coord_str("configuration").as_deref() == Some(prev) && same_rest).then_some(Reads::All)
    }
    fn raw_inputs(&self, unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        // Validation exports with each case's image header and scores against its label file.
        let mut files: Vec<PathBuf> = ds.cases.iter().flat_map(|c| c.files()).collect();
        // The initial weights' content is part of the key.
        files.extend(pretrained_files(unit));
        files
    }
    fn resources(&self, unit: &UnitView, env: &ExecEnv) -> Resources {
        let workers = unit.params.get("workers").and_then(|w| w.as_u64()).unwrap_or(0) as usize;
        let workers = if workers == 0 { env.cpus.saturating_sub(1).max(1) } else { workers };
        Resources { cpus: workers + 1, gpu: crate::torch::may_use_gpu(&env.device) }
    }
    fn resumable(&self) -> bool {
        true
    }
    fn summary_line(&self, out: &Path) -> Option<String> {
        training_summary(&out.join("training.json"))
    }
    fn torch(&self) -> bool {
        true
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        crate::torch::run_unit(self.name(), ctx)
    }
}

/// `20 epochs, pseudo-Dice 0.842 (best EMA 0.851)` from a fold's `training.json`.
fn training_summary(path: &Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let epochs = v["epochs_completed"].as_u64()?;
    let dice = v["last"]["mean_fg_dice"].as_f64();
    let ema = v["best_ema_fg_dice"].as_f64();
    let mut s = format!("{epochs} epoch{}", if epochs == 1 { "" } else { "s" });
    if let Some(d) = dice {
        s.push_str(&format!(", pseudo-Dice {d:.3}"));
    }
    if let Some(e) = ema {
        s.push_str(&format!(" (best EMA {e:.3})"));
    }
    Some(s)
}

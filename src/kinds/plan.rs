//! `plan`: nnU-Net v2's ExperimentPlanner on the fingerprint (§5), the cross-validation split,
//! and the narrow views of the plans that preprocessing depends on:
//!
//! - `plans.json` — nnU-Net's field names, diffable against nnU-Net's own.
//! - `normalization.json` — what per-case normalization reads (transpose, schemes, mask flags,
//!   intensity properties of CT channels only), so a new case that moves the global foreground
//!   statistics does not re-normalize z-scored data.
//! - `preprocess_CFG.json` — what resampling reads for one configuration (spacing, patch for
//!   chunking, resampling kwargs), with architecture and batch size blanked, so a planner or
//!   batch-size change does not re-preprocess (nnU-Net #2878).
//! - `labels.json` — the label definitions alone (what class-location sampling reads).
//! - `splits_final.json`, `dataset.json`, `dataset_fingerprint.json`.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{read_json, write_json};
use crate::kind::{Reads, RunCtx, StageKind, UnitView};
use crate::params::{ParamSpec, ParamType, NON_NEG_FLOAT, NON_NEG_INT, POSITIVE_INT, STR};
use nnunet_io::dataset::Dataset;
use nnunet_prep::fingerprint::DatasetFingerprint;
use nnunet_prep::planner::{plan_experiment, DatasetInfo, PlannerKind, PlannerOptions};
use nnunet_prep::plans::{ArchKwargs, Architecture, Plans};

pub struct Plan;

static STR_T: ParamType = STR;
const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "gpu_memory_gb",
        ty: NON_NEG_FLOAT,
        default: "8.0",
        changes_output: true,
        help: "GPU memory target of the planner (nnU-Net -gpu_memory_target)",
    },
    ParamSpec {
        name: "planner",
        ty: ParamType::Str { choices: &["default", "resenc_m", "resenc_l", "resenc_xl"] },
        default: "\"default\"",
        changes_output: true,
        help: "default (PlainConvUNet) or a residual-encoder preset",
    },
    ParamSpec {
        name: "configurations",
        ty: ParamType::List(&STR_T),
        default: "[\"2d\", \"3d_fullres\", \"3d_lowres\"]",
        changes_output: true,
        help: "configurations to plan (those that apply to the data are kept)",
    },
    ParamSpec {
        name: "target_spacing",
        ty: ParamType::OptFloats,
        default: "null",
        changes_output: true,
        help: "override of the 3d_fullres target spacing (z, y, x as in the data)",
    },
    ParamSpec {
        name: "patch_size_3d",
        ty: ParamType::OptFloats,
        default: "null",
        changes_output: true,
        help: "override of the 3d_fullres patch size",
    },
    ParamSpec {
        name: "patch_size_2d",
        ty: ParamType::OptFloats,
        default: "null",
        changes_output: true,
        help: "override of the 2d patch size",
    },
    ParamSpec {
        name: "plans_name",
        ty: ParamType::OptStr,
        default: "null",
        changes_output: true,
        help:
            "plans identifier (data_identifier prefix); null = the planner's (nnUNetPlans, nnUNetResEncUNetMPlans, ...)",
    },
    ParamSpec {
        name: "split_seed",
        ty: NON_NEG_INT,
        default: "12345",
        changes_output: true,
        help: "KFold seed; 12345 reproduces nnU-Net's splits_final.json",
    },
    ParamSpec {
        name: "num_folds",
        ty: POSITIVE_INT,
        default: "5",
        changes_output: true,
        help: "number of cross-validation folds",
    },
];

impl StageKind for Plan {
    fn name(&self) -> &'static str {
        super::PLAN
    }
    fn version(&self) -> u32 {
        // 2: dataset.json keeps the dataset's file_ending (it was always .nii.gz)
        2
    }
    fn about(&self) -> &'static str {
        "nnU-Net v2 experiment planning: spacing, patch, topology, batch size, normalization (§5)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn requires(&self) -> &'static [&'static str] {
        &[super::FINGERPRINT]
    }
    fn reads(&self, _kind: &str, _unit: &UnitView) -> Reads {
        Reads::Files(vec!["dataset_fingerprint.json".into()])
    }
    fn raw_inputs(&self, _unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        let mut v = vec![ds.root.join("dataset.json")];
        let splits = ds.root.join("splits_final.json");
        if splits.is_file() {
            v.push(splits);
        }
        v
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        let fp_dir = ctx.input(super::FINGERPRINT)?;
        let fp: DatasetFingerprint = read_json(&fp_dir.join("dataset_fingerprint.json"))?;
        let ds = ctx.dataset;
        let info = DatasetInfo {
            name: ds.name.clone(),
            channel_names: ds.channel_names.clone(),
            num_labels_in_json: ds.labels.num_labels_in_json(),
            num_training: ds.cases.len(),
        };
        let opts = planner_options(ctx)?;
        let plans = plan_experiment(&fp, &info, &opts).context("planning")?;
        write_json(&ctx.out.join("plans.json"), &plans)?;
        write_json(&ctx.out.join("dataset.json"), &ds.to_v2_dataset_json())?;
        write_json(
            &ctx.out.join("labels.json"),
            &json!({"labels": ds.labels.to_v2_json(), "regions_class_order": ds.labels.regions_class_order}),
        )?;
        write_json(&ctx.out.join("dataset_fingerprint.json"), &fp)?;
        write_json(&ctx.out.join("normalization.json"), &normalization_view(&plans)?)?;
        for name in plans.configurations.keys() {
            let c = plans.configuration(name)?;
            if c.previous_stage.is_some() {
                // The cascade stage shares its parent's data (same data_identifier).
                continue;
            }
            write_json(&ctx.out.join(format!("preprocess_{name}.json")), &preprocess_view(&plans, name)?)?;
        }
        // Cross-validation split: the dataset's own splits_final.json if present, else KFold.
        let ids: Vec<String> = ds.cases.iter().map(|c| c.id.clone()).collect();
        let user = ds.root.join("splits_final.json");
        let splits = if user.is_file() {
            let s = nnunet_prep::split::read_splits(&user).with_context(|| format!("reading {}", user.display()))?;
            nnunet_prep::split::check_splits(&s, &ids)
                .with_context(|| format!("{} does not match the dataset", user.display()))?;
            s
        } else {
            let k = ctx.param_i64("num_folds")? as usize;
            if ids.len() < k {
                bail!("{} training cases cannot be split into {k} folds; set plan.num_folds lower", ids.len());
            }
            nnunet_prep::split::kfold_splits(&ids, k, ctx.param_i64("split_seed")? as u64)
        };
        nnunet_prep::split::write_splits(&ctx.out.join("splits_final.json"), &splits)?;
        Ok(())
    }
}

fn planner_options(ctx: &RunCtx) -> Result<PlannerOptions> {
    let mut o = PlannerOptions::default();
    o.gpu_memory_gb = ctx.param_f64("gpu_memory_gb")?;
    o.planner = match ctx.param_str("planner")?.as_str() {
        "default" => PlannerKind::Default,
        "resenc_m" => PlannerKind::ResEncM,
        "resenc_l" => PlannerKind::ResEncL,
        "resenc_xl" => PlannerKind::ResEncXL,
        other => bail!("unknown planner {other}"),
    };
    o.configurations = ctx
        .param("configurations")?
        .as_array()
        .ok_or_else(|| anyhow!("configurations must be a list"))?
        .iter()
        .map(crate::kind::value_str)
        .collect();
    let floats = |v: &Value| -> Option<Vec<f64>> { v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()) };
    if let Some(t) = floats(ctx.param("target_spacing")?) {
        if t.len() != 3 || t.iter().any(|x| *x <= 0.0) {
            bail!("plan.target_spacing must be three positive numbers, got {t:?}");
        }
        o.target_spacing_override = Some([t[0], t[1], t[2]]);
    }
    let ints = |name: &str, n: usize| -> Result<Option<Vec<usize>>> {
        match floats(ctx.param(name)?) {
            None => Ok(None),
            Some(v) if v.len() == n && v.iter().all(|x| *x >= 1.0 && x.fract() == 0.0) => {
                Ok(Some(v.iter().map(|x| *x as usize).collect()))
            }
            Some(v) => bail!("plan.{name} must be {n} positive integers, got {v:?}"),
        }
    };
    let mut patches = BTreeMap::new();
    if let Some(p) = ints("patch_size_3d", 3)? {
        patches.insert("3d_fullres".to_string(), p);
    }
    if let Some(p) = ints("patch_size_2d", 2)? {
        patches.insert("2d".to_string(), p);
    }
    o.patch_size_override = (!patches.is_empty()).then_some(patches);
    o.plans_name = ctx.param("plans_name")?.as_str().map(str::to_string);
    Ok(o)
}

/// The part of the plans that per-case normalization reads, as a reduced plans document.
pub fn normalization_view(plans: &Plans) -> Result<Value> {
    let first = plans
        .configurations
        .keys()
        .find(|k| plans.configurations[*k].normalization_schemes.is_some())
        .ok_or_else(|| anyhow!("plans have no configuration with normalization schemes"))?;
    let c = plans.configuration(first)?;
    let ct: BTreeMap<String, Value> = c
        .normalization_schemes
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_str() == "CTNormalization")
        .filter_map(|(i, _)| {
            plans.foreground_intensity_properties_per_channel.get(&i.to_string()).map(|p| (i.to_string(), json!(p)))
        })
        .collect();
    Ok(json!({
        "dataset_name": plans.dataset_name,
        "plans_name": plans.plans_name,
        "original_median_spacing_after_transp": [],
        "original_median_shape_after_transp": [],
        "image_reader_writer": plans.image_reader_writer,
        "transpose_forward": plans.transpose_forward,
        "transpose_backward": plans.transpose_backward,
        "configurations": { first.clone(): {
            "normalization_schemes": c.normalization_schemes,
            "use_mask_for_norm": c.use_mask_for_norm,
        }},
        "experiment_planner_used": plans.experiment_planner_used,
        "label_manager": plans.label_manager,
        "foreground_intensity_properties_per_channel": ct,
    }))
}

/// The part of the plans that resampling one configuration reads, as a reduced plans document.
pub fn preprocess_view(plans: &Plans, name: &str) -> Result<Value> {
    let mut reduced = plans.clone();
    reduced.original_median_spacing_after_transp.clear();
    reduced.original_median_shape_after_transp.clear();
    reduced.experiment_planner_used = String::new();
    reduced.foreground_intensity_properties_per_channel.clear();
    let mut c = plans.configurations.get(name).cloned().ok_or_else(|| anyhow!("no configuration {name}"))?;
    // Resolve inheritance into a standalone entry, then blank what resampling never reads.
    let r = plans.configuration(name)?;
    let ndim = r.patch_size.len();
    c.inherits_from = None;
    c.data_identifier = Some(r.data_identifier);
    c.patch_size = Some(r.patch_size);
    c.spacing = Some(r.spacing);
    c.median_image_size_in_voxels = Some(vec![]);
    c.normalization_schemes = Some(r.normalization_schemes);
    c.use_mask_for_norm = Some(r.use_mask_for_norm);
    c.resampling_fn_data_kwargs = Some(r.resampling_data);
    c.resampling_fn_seg_kwargs = Some(r.resampling_seg);
    c.resampling_fn_probabilities_kwargs = Some(r.resampling_probabilities);
    c.batch_size = Some(0);
    c.batch_dice = Some(false);
    c.next_stage = None;
    c.previous_stage = None;
    c.architecture = Some(placeholder_architecture(ndim));
    reduced.configurations = BTreeMap::from([(name.to_string(), c)]);
    Ok(serde_json::to_value(&reduced)?)
}

fn placeholder_architecture(ndim: usize) -> Architecture {
    Architecture {
        network_class_name: "none (not read by preprocessing)".into(),
        arch_kwargs: ArchKwargs {
            n_stages: 0,
            features_per_stage: vec![],
            conv_op: String::new(),
            kernel_sizes: vec![vec![1; ndim]],
            strides: vec![],
            n_conv_per_stage: None,
            n_blocks_per_stage: None,
            n_conv_per_stage_decoder: vec![],
            conv_bias: false,
            norm_op: String::new(),
            norm_op_kwargs: Value::Null,
            dropout_op: None,
            dropout_op_kwargs: None,
            nonlin: String::new(),
            nonlin_kwargs: Value::Null,
        },
        kw_requires_import: vec![],
    }
}

/// Reads the `labels.json` written by the plan stage.
pub fn read_labels(plan_dir: &std::path::Path) -> Result<nnunet_io::labels::Labels> {
    let v: Value = read_json(&plan_dir.join("labels.json"))?;
    nnunet_io::labels::Labels::from_v2_json(&v["labels"], v.get("regions_class_order").filter(|r| !r.is_null()))
        .map_err(|e| anyhow!("{}: {e}", plan_dir.join("labels.json").display()))
}

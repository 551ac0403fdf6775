//! `predict`: segments a folder of the dataset (`imagesTs` by default) with the chosen
//! configuration(s), all trained folds and the post-processing decision (§9, §10).

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use std::path::{Component, Path, PathBuf};

use super::write_json;
use crate::kind::{value_str, ExecEnv, Reads, Resources, RunCtx, StageKind, UnitView};
use crate::model::{discover_cases, predict_cases, Model, ModelConfiguration, PredictOptions};
use crate::params::{ParamSpec, ParamType, STR};
use nnunet_io::dataset::{Case, Dataset};

pub struct Predict;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "images",
        ty: STR,
        default: "\"imagesTs\"",
        help: "folder of images to segment, relative to the dataset root",
    },
    ParamSpec { name: "tta", ty: ParamType::Bool, default: "true", help: "mirroring test-time augmentation" },
    ParamSpec { name: "save_probabilities", ty: ParamType::Bool, default: "false", help: "also write CASE.probs.zarr" },
];

/// A folder named in a param, checked to stay inside the dataset folder.
pub fn dataset_subdir(ds: &Dataset, rel: &str, what: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        bail!("{what} '{rel}' must be a folder inside the dataset {}", ds.root.display());
    }
    Ok(ds.root.join(p))
}

fn input_cases(ds: &Dataset, images: &str) -> Result<Vec<Case>> {
    if images == "imagesTs" {
        return Ok(ds.test_cases.iter().map(|c| Case { label: None, ..c.clone() }).collect());
    }
    let dir = dataset_subdir(ds, images, "images")?;
    discover_cases(&dir, &ds.file_ending, ds.channel_names.len())
}

impl StageKind for Predict {
    fn name(&self) -> &'static str {
        "predict"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "segment new images with the chosen model, all folds, post-processing (§9)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn requires(&self) -> &'static [&'static str] {
        &["postprocess", "ensemble-select", "train-fold", "plan"]
    }
    fn reads(&self, kind: &str, _unit: &UnitView) -> Reads {
        match kind {
            "plan" => Reads::Files(vec!["plans.json".into(), "dataset.json".into()]),
            "postprocess" => Reads::Files(vec!["postprocessing.json".into()]),
            "ensemble-select" => Reads::Files(vec!["chosen.json".into()]),
            _ => Reads::All,
        }
    }
    fn raw_inputs(&self, unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        let images = unit.params.get("images").map(value_str).unwrap_or_else(|| "imagesTs".into());
        input_cases(ds, &images).map(|cs| cs.iter().flat_map(|c| c.files()).collect()).unwrap_or_default()
    }
    fn resources(&self, _unit: &UnitView, env: &ExecEnv) -> Resources {
        Resources {
            cpus: env.cpus.max(1),
            gpu: env.device.starts_with("cuda") || (env.device == "auto" && crate::device::cuda_available()),
        }
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        let plan = ctx.input("plan")?;
        let select = ctx.input("ensemble-select")?;
        let chosen: serde_json::Value = super::read_json(&select.join("chosen.json"))?;
        let members: Vec<String> = chosen["members"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m.as_str().map(String::from)).collect())
            .ok_or_else(|| anyhow!("{}: no members", select.join("chosen.json").display()))?;
        let mut configurations: Vec<ModelConfiguration> = Vec::new();
        for i in ctx.inputs_of("train-fold") {
            let cfg = i.coords.get("configuration").map(value_str).unwrap_or_default();
            let fold = i.coords.get("fold").map(value_str).unwrap_or_default();
            let dir = i.dir.join(nnunet_net::checkpoint::FINAL);
            match configurations.iter_mut().find(|c| c.name == cfg) {
                Some(c) => c.folds.push((fold, dir)),
                None => configurations.push(ModelConfiguration { name: cfg, folds: vec![(fold, dir)] }),
            }
        }
        let pp = ctx.input("postprocess")?.join("postprocessing.json");
        let model =
            Model::new(plan.join("plans.json"), plan.join("dataset.json"), Some(pp), members, configurations, chosen)?;
        let images = ctx.param_str("images")?;
        let cases = input_cases(ctx.dataset, &images)?;
        if cases.is_empty() {
            bail!("predict: no images in {}/{images}", ctx.dataset.root.display());
        }
        let opts = PredictOptions {
            tta: ctx.param_bool("tta")?,
            device: crate::device::parse_device(&ctx.env.device)?,
            save_probabilities: ctx.param_bool("save_probabilities")?,
            postprocessing: true,
        };
        let t0 = std::time::Instant::now();
        let timings = predict_cases(&model, &cases, &ctx.out, &opts, ctx.progress, &|| ctx.cancelled())?;
        write_json(
            &ctx.out.join("prediction.json"),
            &json!({
                "model": model.describe(),
                "members": model.members,
                "cases": timings,
                "seconds": t0.elapsed().as_secs_f64(),
                "tta": opts.tta,
                "device": crate::device::device_name(opts.device),
            }),
        )
    }
}

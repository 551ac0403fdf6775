//! The trained model of a run folder: `runs/NAME/run.json` (the engine's record of the run)
//! names the plan, selection, training and post-processing artifacts a [`Model`] is made of.
//! The model itself and prediction with it are `nnunet_infer::model`'s.

use anyhow::{bail, Context, Result};
use nnunet_infer::model::{Model, ModelConfiguration};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The model of a run folder (`runs/NAME`): the chosen configuration(s) of its
/// `ensemble-select` stage, the folds its `train-fold` stage trained, the decision of its
/// `postprocess` stage (if it has one).
pub fn from_run(run_dir: &Path) -> Result<Model> {
    let run_json: Value = engine::kinds::read_json(&run_dir.join("run.json"))
        .with_context(|| format!("{} is not a run folder (run `pipeline run` first)", run_dir.display()))?;
    let units = run_json["units"].as_array().cloned().unwrap_or_default();
    let view = |kind: &str| -> Vec<(Value, PathBuf)> {
        units
            .iter()
            .filter(|u| u["kind"] == kind && u.get("view").is_some_and(|v| v.is_string()))
            .filter(|u| u["outcome"] == "built" || u["outcome"] == "cached")
            .map(|u| (u["coords"].clone(), run_dir.join(u["view"].as_str().unwrap_or_default())))
            .collect()
    };
    let one = |kind: &str| -> Result<PathBuf> {
        let v = view(kind);
        match v.as_slice() {
            [(_, p)] => Ok(p.clone()),
            [] => bail!("run {} has no completed '{kind}' stage", run_dir.display()),
            _ => bail!("run {} has several '{kind}' stages", run_dir.display()),
        }
    };
    let plan = one(engine::kinds::PLAN)?;
    let select = one(engine::kinds::ENSEMBLE_SELECT)?;
    let chosen: Value = engine::kinds::read_json(&select.join("chosen.json"))?;
    let members: Vec<String> = chosen["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let mut by_cfg: BTreeMap<String, Vec<(String, PathBuf)>> = BTreeMap::new();
    for (coords, dir) in view(engine::kinds::TRAIN_FOLD) {
        let cfg =
            coords["configuration"].as_str().map(String::from).unwrap_or_else(|| coords["configuration"].to_string());
        let fold = match &coords["fold"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        by_cfg.entry(cfg).or_default().push((fold, dir.join(nnunet_net::checkpoint::FINAL)));
    }
    let configurations = by_cfg.into_iter().map(|(name, folds)| ModelConfiguration::new(name, folds)).collect();
    let pp = view(engine::kinds::POSTPROCESS).into_iter().next().map(|(_, p)| p.join("postprocessing.json"));
    Ok(Model::new(plan.join("plans.json"), plan.join("dataset.json"), pp, members, configurations, chosen)?)
}

//! nnU-Net v2 results as models: a model folder `Trainer__Plans__Configuration/` (`plans.json`,
//! `dataset.json`, `fold_N/checkpoint_final.pth` or `checkpoint_best.pth`), several of them
//! (an ensemble: probabilities averaged like `nnUNetv2_ensemble`), or a dataset's results folder
//! holding `inference_information.json` (what `nnUNetv2_find_best_configuration` chose: the
//! model(s), the folds and `postprocessing.pkl`).
//!
//! Each folder becomes one member of a [`Model`] with its own plans; the configuration is the
//! checkpoint's `init_args['configuration']` (what `nnUNetv2_predict` uses), the folds every
//! `fold_*` holding the checkpoint (nnU-Net's `auto_detect_available_folds`).

use crate::error::{InferError, Result};
use crate::model::{ConfigurationSource, Model, ModelConfiguration};
use nnunet_prep::plans::Plans;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const INFERENCE_INFORMATION: &str = "inference_information.json";

fn bad(path: &Path, msg: impl Into<String>) -> InferError {
    InferError::Checkpoint { path: path.to_path_buf(), msg: msg.into() }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(path, format!("invalid JSON: {e}")))
}

/// Whether `dir` is an nnU-Net model folder or a results folder with `inference_information.json`.
pub fn is_nnunet_folder(dir: &Path) -> bool {
    dir.is_dir()
        && ((dir.join("plans.json").is_file() && dir.join("dataset.json").is_file())
            || dir.join(INFERENCE_INFORMATION).is_file())
}

/// Which checkpoint of each fold: `final` (`checkpoint_final.pth`) or `best`.
pub fn checkpoint_file(which: &str) -> Result<String> {
    match which {
        "final" => Ok("checkpoint_final.pth".into()),
        "best" => Ok("checkpoint_best.pth".into()),
        other if other.ends_with(".pth") && !other.contains('/') => Ok(other.into()),
        other => Err(InferError::Invalid(format!(
            "--checkpoint {other}: expected final, best or a file name ending in .pth"
        ))),
    }
}

/// The folds of a model folder that have `checkpoint`, in numeric order (`all` last).
pub fn available_folds(dir: &Path, checkpoint: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut folds = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| bad(dir, e.to_string()))? {
        let e = e.map_err(|e| bad(dir, e.to_string()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(f) = name.strip_prefix("fold_") {
            let ck = e.path().join(checkpoint);
            if ck.is_file() {
                folds.push((f.to_string(), ck));
            }
        }
    }
    folds.sort_by_key(|(f, _)| (f.parse::<u64>().unwrap_or(u64::MAX), f.clone()));
    if folds.is_empty() {
        return Err(bad(dir, format!("no fold_*/{checkpoint} (train a fold, or choose --checkpoint best/final)")));
    }
    Ok(folds)
}

/// One model folder as a member: (member name, configuration source, folds).
fn member(dir: &Path, checkpoint: &str, folds: Option<&[String]>) -> Result<(ModelConfiguration, PathBuf, PathBuf)> {
    let plans_json = dir.join("plans.json");
    let dataset_json = dir.join("dataset.json");
    for p in [&plans_json, &dataset_json] {
        if !p.is_file() {
            return Err(bad(dir, format!("is not an nnU-Net model folder: {} is missing", p.display())));
        }
    }
    let plans: Plans = serde_json::from_value(read_json(&plans_json)?)
        .map_err(|e| bad(&plans_json, format!("not nnU-Net v2 plans: {e}")))?;
    let mut all = available_folds(dir, checkpoint)?;
    if let Some(want) = folds {
        for f in want {
            if !all.iter().any(|(g, _)| g == f) {
                return Err(bad(dir, format!("fold {f} has no {checkpoint}")));
            }
        }
        all.retain(|(g, _)| want.contains(g));
    }
    let info = nnunet_net::nnunet_checkpoint::read_info(&all[0].1).map_err(|e| InferError::Invalid(e.to_string()))?;
    let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let configuration = match info.configuration {
        Some(c) => c,
        None => dir_name.rsplit("__").next().unwrap_or_default().to_string(),
    };
    let resolved = plans.configuration(&configuration).map_err(|e| bad(&plans_json, e.to_string()))?;
    if resolved.previous_stage.is_some() {
        return Err(bad(
            dir,
            format!("{configuration} is a cascade stage; predicting nnU-Net cascades from model folders is not supported yet"),
        ));
    }
    let name = if dir_name.is_empty() { configuration.clone() } else { dir_name };
    let source = ConfigurationSource { plans, configuration };
    Ok((ModelConfiguration { name, folds: all, source: Some(Box::new(source)) }, plans_json, dataset_json))
}

/// The path of `recorded` (an absolute path written on another machine) inside `results`: the
/// part after the component named like `results`' own folder.
fn relocate(recorded: &Path, results: &Path) -> Option<PathBuf> {
    if recorded.is_file() {
        return Some(recorded.to_path_buf());
    }
    let name = results.file_name()?;
    let comps: Vec<_> = recorded.components().collect();
    let i = comps.iter().rposition(|c| c.as_os_str() == name)?;
    let p = comps[i + 1..].iter().fold(results.to_path_buf(), |acc, c| acc.join(c.as_os_str()));
    p.is_file().then_some(p)
}

/// A model from nnU-Net folders (see the module doc). `folds`: `None` = every fold found (or
/// those of `inference_information.json`); `postprocessing`: a `postprocessing.pkl` (or our
/// JSON) applied to the result.
pub fn model_from_nnunet(
    dirs: &[PathBuf],
    checkpoint: &str,
    folds: Option<&[String]>,
    postprocessing: Option<PathBuf>,
) -> Result<Model> {
    let mut dirs = dirs.to_vec();
    let mut folds: Option<Vec<String>> = folds.map(|f| f.to_vec());
    let mut pp = postprocessing;
    let mut info = json!({"source": "nnU-Net v2 model folder(s)"});
    if let [one] = dirs.as_slice() {
        if one.join(INFERENCE_INFORMATION).is_file() && !one.join("plans.json").is_file() {
            let root = one.clone();
            let ii_path = root.join(INFERENCE_INFORMATION);
            let ii = read_json(&ii_path)?;
            let best = &ii["best_model_or_ensemble"];
            let sel = best["selected_model_or_models"]
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad(&ii_path, "no best_model_or_ensemble.selected_model_or_models"))?;
            dirs = sel
                .iter()
                .map(|m| {
                    let part = |k: &str| {
                        m[k].as_str()
                            .map(String::from)
                            .ok_or_else(|| bad(&ii_path, format!("a selected model has no '{k}'")))
                    };
                    Ok(root.join(format!(
                        "{}__{}__{}",
                        part("trainer")?,
                        part("plans_identifier")?,
                        part("configuration")?
                    )))
                })
                .collect::<Result<_>>()?;
            if folds.is_none() {
                folds = ii["folds"]
                    .as_array()
                    .map(|a| a.iter().map(|f| f.as_str().map(String::from).unwrap_or_else(|| f.to_string())).collect());
            }
            if pp.is_none() {
                if let Some(f) = best["postprocessing_file"].as_str() {
                    pp = Some(relocate(Path::new(f), &root).ok_or_else(|| {
                        bad(&ii_path, format!("postprocessing_file {f} is neither there nor under {}", root.display()))
                    })?);
                }
            }
            info = json!({"source": ii_path, "folds": folds});
        }
    }
    if dirs.is_empty() || dirs.len() > 2 {
        return Err(InferError::Invalid(format!(
            "an nnU-Net model is one model folder or an ensemble of two, not {}",
            dirs.len()
        )));
    }
    let mut configurations = Vec::new();
    let mut files = None;
    for d in &dirs {
        let (c, plans_json, dataset_json) = member(d, checkpoint, folds.as_deref())?;
        if configurations.iter().any(|o: &ModelConfiguration| o.name == c.name) {
            return Err(bad(d, "is given twice"));
        }
        files.get_or_insert((plans_json, dataset_json));
        configurations.push(c);
    }
    let (plans_json, dataset_json) = files.ok_or_else(|| InferError::Invalid("no model folder".into()))?;
    let members = configurations.iter().map(|c| c.name.clone()).collect();
    info["members"] = json!(dirs);
    Model::new(plans_json, dataset_json, pp, members, configurations, info)
}

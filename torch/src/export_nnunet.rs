//! `pipeline export RUN --format nnunet -o DIR`: the run's model as nnU-Net v2 model folder(s)
//! that `nnUNetv2_predict_from_modelfolder` (and `nnUNetv2_predict` under `nnUNet_results`)
//! loads: `plans.json` (the configuration's architecture as trained: features cap, norm,
//! nonlinearity), `dataset.json`, `fold_N/checkpoint_final.pth` (trainer `nnUNetTrainer`).
//! One member: DIR is the model folder. An ensemble: DIR holds one folder per member
//! (`nnUNetTrainer__PLANS__CONFIG`) and `inference_information.json`. The post-processing
//! decision is written as nnU-Net's `postprocessing.pkl`.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use nnunet_eval::classes::LabelOrRegion;
use nnunet_eval::postprocess::{PostprocessingDecision, NNUNET_KEEP_LARGEST};
use nnunet_infer::model::Model;
use nnunet_io::pickle::Value as Py;
use nnunet_net::nnunet_checkpoint::{write_checkpoint, CheckpointExport};
use nnunet_net::unet::{Nonlin, Norm};

pub const TRAINER: &str = "nnUNetTrainer";

/// The plans' architecture entry rewritten to what a checkpoint was trained with.
fn architecture_json(meta: &nnunet_net::checkpoint::CheckpointMeta, base: &Value, nd: usize) -> Result<Value> {
    let mut arch = match &meta.architecture {
        Some(a) => serde_json::to_value(a)?,
        None => base.clone(),
    };
    let kw = arch.get_mut("arch_kwargs").ok_or_else(|| anyhow!("architecture without arch_kwargs"))?;
    let dim = if nd == 2 { "2d" } else { "3d" };
    match meta.net_options.norm {
        Norm::Instance => {
            kw["norm_op"] = json!(format!("torch.nn.modules.instancenorm.InstanceNorm{dim}"));
            kw["norm_op_kwargs"] = json!({"eps": 1e-5, "affine": true});
        }
        Norm::Batch => {
            kw["norm_op"] = json!(format!("torch.nn.modules.batchnorm.BatchNorm{dim}"));
            kw["norm_op_kwargs"] = json!({"eps": 1e-5, "affine": true});
        }
        Norm::None => bail!("networks without normalization cannot be exported to nnU-Net (its plans need a norm_op)"),
    }
    kw["nonlin"] = json!(match meta.net_options.nonlin {
        Nonlin::LeakyRelu => "torch.nn.LeakyReLU",
        Nonlin::Relu => "torch.nn.ReLU",
    });
    kw["nonlin_kwargs"] = json!({"inplace": true});
    kw["dropout_op"] = Value::Null;
    kw["dropout_op_kwargs"] = Value::Null;
    Ok(arch)
}

/// `postprocessing.pkl` as `determine_postprocessing` pickles it.
pub fn postprocessing_pickle(d: &PostprocessingDecision) -> Vec<u8> {
    let lr = |l: &LabelOrRegion| match l {
        LabelOrRegion::Label(v) => Py::Int(*v as i64),
        LabelOrRegion::Region(r) => Py::Tuple(r.iter().map(|&v| Py::Int(v as i64)).collect()),
    };
    let fns = d.steps.iter().map(|_| Py::Global(NNUNET_KEEP_LARGEST.into())).collect();
    let kwargs = d
        .steps
        .iter()
        .map(|s| {
            let v = match s.labels_or_regions.as_slice() {
                [one] => lr(one),
                many => Py::List(many.iter().map(lr).collect()),
            };
            Py::dict(vec![(Py::str("labels_or_regions"), v)])
        })
        .collect();
    nnunet_io::pickle::write(&Py::Tuple(vec![Py::List(fns), Py::List(kwargs)]))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Writes one member's model folder; returns the folds written.
fn export_member(model: &Model, cfg: &str, dir: &Path, plans: &Value, dataset: &Value) -> Result<Vec<String>> {
    let (_, resolved) = model.resolve(cfg)?;
    if resolved.previous_stage.is_some() {
        bail!("{cfg} is a cascade stage; exporting cascades to nnU-Net folders is not supported");
    }
    let c = model
        .configurations
        .iter()
        .find(|c| c.name == cfg)
        .ok_or_else(|| anyhow!("configuration {cfg} has no trained folds"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut plans = plans.clone();
    let mut written = Vec::new();
    let nd = resolved.patch_size.len();
    let mut exports = Vec::new();
    for (fold, ck) in &c.folds {
        let (vs, _net, meta) = nnunet_net::checkpoint::load_network(ck, &resolved.architecture, tch::Device::Cpu)
            .with_context(|| format!("checkpoint {}", ck.display()))?;
        let arch = architecture_json(&meta, &plans["configurations"][cfg]["architecture"], nd)?;
        // Every fold must share the architecture nnU-Net will build from plans.json.
        let slot = &mut plans["configurations"][cfg]["architecture"];
        if exports.is_empty() {
            *slot = arch;
        } else if *slot != arch {
            bail!("fold {fold} of {cfg} was trained with another architecture than fold {}", c.folds[0].0);
        }
        exports.push((fold.clone(), vs, meta));
    }
    for (fold, vs, meta) in &exports {
        let ex = CheckpointExport {
            plans: plans.clone(),
            configuration: cfg.to_string(),
            fold: fold.clone(),
            dataset_json: dataset.clone(),
            trainer_name: TRAINER.into(),
            // Absent in meta.json: every spatial axis of the configuration, as we predict.
            inference_allowed_mirroring_axes: meta
                .inference_allowed_mirroring_axes
                .clone()
                .unwrap_or_else(|| (0..nd).collect()),
            current_epoch: meta.epoch as i64 + 1,
        };
        let p = dir.join(format!("fold_{fold}")).join("checkpoint_final.pth");
        write_checkpoint(&p, vs, meta.net_options.norm, &ex).with_context(|| format!("writing {}", p.display()))?;
        written.push(fold.clone());
    }
    write_file(&dir.join("plans.json"), serde_json::to_string_pretty(&plans)?.as_bytes())?;
    write_file(&dir.join("dataset.json"), serde_json::to_string_pretty(dataset)?.as_bytes())?;
    Ok(written)
}

/// Exports `model` to `out` (see the module doc); returns the model folders written.
pub fn export(model: &Model, out: &Path) -> Result<Vec<PathBuf>> {
    if out.is_file() {
        bail!("{} is a file; --format nnunet writes a folder", out.display());
    }
    let plans: Value = engine::kinds::read_json(&model.plans_json)?;
    let dataset: Value = engine::kinds::read_json(&model.dataset_json)?;
    let plans_name = plans["plans_name"].as_str().unwrap_or("nnUNetPlans").to_string();
    let ensemble = model.members.len() > 1;
    let mut folders = Vec::new();
    let mut folds = Vec::new();
    for m in &model.members {
        let dir = if ensemble { out.join(format!("{TRAINER}__{plans_name}__{m}")) } else { out.to_path_buf() };
        folds = export_member(model, m, &dir, &plans, &dataset)?;
        folders.push(dir);
    }
    let pp = model.postprocessing.clone().unwrap_or_else(PostprocessingDecision::none);
    write_file(&out.join("postprocessing.pkl"), &postprocessing_pickle(&pp))?;
    if ensemble {
        let selected: Vec<Value> = model
            .members
            .iter()
            .map(|m| json!({"configuration": m, "trainer": TRAINER, "plans_identifier": plans_name}))
            .collect();
        let ii = json!({
            "folds": folds.iter().map(|f| f.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(f))).collect::<Vec<_>>(),
            "dataset_name_or_id": plans["dataset_name"],
            "best_model_or_ensemble": {
                "postprocessing_file": out.join("postprocessing.pkl"),
                "some_plans_file": folders[0].join("plans.json"),
                "selected_model_or_models": selected,
            },
            "exported_by": "nnunet-rs pipeline export --format nnunet",
        });
        write_file(
            &out.join(nnunet_infer::nnunet_folder::INFERENCE_INFORMATION),
            serde_json::to_string_pretty(&ii)?.as_bytes(),
        )?;
    }
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postprocessing_pickle_reads_back() {
        let mut d = PostprocessingDecision::none();
        d.steps.push(nnunet_eval::postprocess::PostprocessingStep::keep_largest(vec![
            LabelOrRegion::Label(1),
            LabelOrRegion::Label(2),
        ]));
        d.steps
            .push(nnunet_eval::postprocess::PostprocessingStep::keep_largest(vec![LabelOrRegion::Region(vec![1, 2])]));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("postprocessing.pkl");
        write_file(&p, &postprocessing_pickle(&d)).unwrap();
        assert_eq!(PostprocessingDecision::read(&p).unwrap().steps, d.steps);
    }
}

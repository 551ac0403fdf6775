//! `ensemble-select`: nnU-Net's find_best_configuration (§10.1). Every trained configuration's
//! merged cross-validation predictions are scored against the original labels, every pair
//! ensemble (averaged probabilities) too, and the best foreground-mean Dice wins.

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::write_json;
use crate::kind::{value_str, Reads, RunCtx, StageKind, UnitView};
use crate::params::ParamSpec;
use nnunet_eval::ensemble::{candidate_pairs, ensemble_name, ensemble_segmentation, select_best, Candidate};
use nnunet_eval::folder::evaluate_pair;
use nnunet_eval::segmentation::SegmentationMode;
use nnunet_eval::summary::{CaseResult, Summary};
use nnunet_io::dataset::Dataset;

pub struct EnsembleSelect;

static STR_T: crate::params::ParamType = crate::params::STR;
const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "ensembles",
        ty: crate::params::ParamType::Bool,
        default: "true",
        help: "also score every pair of configurations as an ensemble (nnU-Net --disable_ensembling = false)",
    },
    ParamSpec {
        name: "configurations",
        ty: crate::params::ParamType::List(&STR_T),
        default: "[\"2d\", \"3d_fullres\", \"3d_lowres\", \"3d_cascade_fullres\"]",
        help: "configurations to choose among (nnU-Net -c); trained ones not listed are ignored",
    },
];

/// Probabilities of a validation case, written by `train-fold` next to its segmentation.
use nnunet_eval::folder::PROBS_SUFFIX;

impl StageKind for EnsembleSelect {
    fn name(&self) -> &'static str {
        "ensemble-select"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "score configurations and pair ensembles on the merged cross-validation, pick the best (§10.1)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn requires(&self) -> &'static [&'static str] {
        &["train-fold", "plan"]
    }
    fn reads(&self, kind: &str, _unit: &UnitView) -> Reads {
        match kind {
            "plan" => Reads::Files(vec!["labels.json".into()]),
            _ => Reads::All,
        }
    }
    fn raw_inputs(&self, _unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        ds.cases.iter().filter_map(|c| c.label.clone()).collect()
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        let labels = super::plan::read_labels(ctx.input("plan")?)?;
        let classes = nnunet_eval::classes::from_labels(&labels);
        // configuration -> fold -> validation dir
        let mut by_cfg: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
        for i in ctx.inputs_of("train-fold") {
            let cfg = i
                .coords
                .get("configuration")
                .map(value_str)
                .ok_or_else(|| anyhow!("train unit without configuration"))?;
            let fold = i.coords.get("fold").map(value_str).unwrap_or_default();
            let v = i.dir.join("validation");
            if !v.is_dir() {
                bail!("{} has no validation predictions; set the training stage's `validate: true` to select among configurations", i.dir.display());
            }
            by_cfg.entry(cfg).or_default().insert(fold, v);
        }
        // Candidates: the listed configurations that were trained (nnU-Net skips the others).
        let allowed: Vec<String> = ctx
            .param("configurations")?
            .as_array()
            .ok_or_else(|| anyhow!("ensemble-select.configurations must be a list"))?
            .iter()
            .map(value_str)
            .collect();
        let trained: Vec<String> = by_cfg.keys().cloned().collect();
        by_cfg.retain(|c, _| allowed.contains(c));
        if by_cfg.is_empty() {
            bail!(
                "none of the configurations to choose among ({}) was trained (trained: {})",
                allowed.join(", "),
                trained.join(", ")
            );
        }
        let folds: Vec<String> = by_cfg.values().next().map(|f| f.keys().cloned().collect()).unwrap_or_default();
        // Case -> (config -> prediction path)
        let mut preds: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
        for (cfg, fold_dirs) in &by_cfg {
            for dir in fold_dirs.values() {
                for name in nnunet_eval::folder::list_segmentations(dir, ".nii.gz")? {
                    let id = name.trim_end_matches(".nii.gz").to_string();
                    if preds.entry(id.clone()).or_default().insert(cfg.clone(), dir.join(&name)).is_some() {
                        bail!("case {id} is validated in two folds of {cfg}: the folds overlap");
                    }
                }
            }
        }
        let reference = |id: &str| -> Result<PathBuf> {
            ctx.dataset
                .case(id)
                .and_then(|c| c.label.clone())
                .ok_or_else(|| anyhow!("validation case {id} has no label in the dataset"))
        };
        let mut candidates = Vec::new();
        let mut cv_sources: Vec<BTreeMap<String, PathBuf>> = Vec::new();
        for cfg in by_cfg.keys() {
            let cases: Vec<(String, PathBuf)> =
                preds.iter().filter_map(|(id, m)| m.get(cfg).map(|p| (id.clone(), p.clone()))).collect();
            (ctx.progress)(0, 1, &format!("scoring {cfg}"));
            let results: Vec<CaseResult> = cases
                .par_iter()
                .map(|(id, p)| Ok(evaluate_pair(&reference(id)?, p, &classes, labels.ignore)?))
                .collect::<Result<_>>()?;
            candidates.push(Candidate {
                name: cfg.clone(),
                members: vec![cfg.clone()],
                summary: Summary::from_cases(classes.clone(), results),
            });
            cv_sources.push(cases.into_iter().collect());
        }
        let cfgs: Vec<String> = by_cfg.keys().cloned().collect();
        if ctx.param_bool("ensembles")? {
            let mode = SegmentationMode::of_labels(&labels);
            let num_foreground = labels.foreground_labels().len();
            let fold_nums: Vec<usize> = folds.iter().filter_map(|f| f.parse().ok()).collect();
            for (a, b) in candidate_pairs(cfgs.len()) {
                let name = ensemble_name(&cfgs[a], &cfgs[b], &fold_nums);
                (ctx.progress)(0, 1, &format!("scoring {name}"));
                let dir = ctx.out.join("ensembles").join(&name);
                std::fs::create_dir_all(&dir)?;
                let cases: Vec<(String, PathBuf, PathBuf)> = preds
                    .iter()
                    .filter_map(|(id, m)| Some((id.clone(), m.get(&cfgs[a])?.clone(), m.get(&cfgs[b])?.clone())))
                    .collect();
                let results: Vec<(CaseResult, (String, PathBuf))> = cases
                    .par_iter()
                    .map(|(id, pa, pb)| {
                        let out = dir.join(format!("{id}.nii.gz"));
                        ensemble_case(pa, pb, &mode, num_foreground, &out)?;
                        Ok((evaluate_pair(&reference(id)?, &out, &classes, labels.ignore)?, (id.clone(), out)))
                    })
                    .collect::<Result<_>>()?;
                let (res, srcs): (Vec<CaseResult>, Vec<(String, PathBuf)>) = results.into_iter().unzip();
                candidates.push(Candidate {
                    name,
                    members: vec![cfgs[a].clone(), cfgs[b].clone()],
                    summary: Summary::from_cases(classes.clone(), res),
                });
                cv_sources.push(srcs.into_iter().collect());
            }
        }
        let sel = select_best(&candidates)?;
        for c in &candidates {
            c.summary.write_json(&ctx.out.join(format!("summary_{}.json", c.name)))?;
        }
        let ranking: Vec<serde_json::Value> = sel
            .ranking
            .iter()
            .map(|r| {
                json!({
                    "rank": r.rank,
                    "name": r.name,
                    "members": r.members,
                    "foreground_dice": nan_as_null(r.foreground_dice),
                    "dice": r.class_dice.iter().map(|(k, v)| (k.clone(), nan_as_null(*v))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        write_json(&ctx.out.join("ranking.json"), &ranking)?;
        sel.to_table().write_parquet(&ctx.out.join("ranking.parquet"))?;
        let best = &candidates[sel.best];
        write_json(
            &ctx.out.join("chosen.json"),
            &json!({"name": best.name, "members": best.members, "folds": folds, "foreground_dice": nan_as_null(best.summary.foreground_dice())}),
        )?;
        // The winner's merged cross-validation predictions, for post-processing.
        let cv = ctx.out.join("cv_predictions");
        std::fs::create_dir_all(&cv)?;
        for (id, src) in &cv_sources[sel.best] {
            crate::fsutil::link_or_copy(src, &cv.join(format!("{id}.nii.gz")))
                .with_context(|| format!("collecting the prediction of {id}"))?;
        }
        Ok(())
    }
}

fn nan_as_null(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// Averages the stored probabilities of two predictions of one case and writes the label map.
fn ensemble_case(a: &Path, b: &Path, mode: &SegmentationMode, num_foreground: usize, out: &Path) -> Result<()> {
    let probs = |p: &Path| -> Result<(Vec<f32>, Vec<usize>)> {
        let z = PathBuf::from(p.to_string_lossy().replace(".nii.gz", PROBS_SUFFIX));
        let arr = nnunet_io::zarr::ZarrArray::open(&z)
            .with_context(|| format!("probabilities of {} (train with validate: true)", p.display()))?;
        Ok((arr.read_all::<f32>()?, arr.shape.clone()))
    };
    let (pa, sa) = probs(a)?;
    let (pb, sb) = probs(b)?;
    if sa != sb || sa.len() != 4 {
        bail!("probabilities of {} and {} have different shapes {sa:?} / {sb:?}", a.display(), b.display());
    }
    let (_, seg) = ensemble_segmentation(&[&pa, &pb], sa[0], [sa[1], sa[2], sa[3]], mode)?;
    let header = nnunet_io::nifti::read_header(a)?;
    Ok(nnunet_eval::segmentation::write_segmentation(out, &seg, &header, num_foreground)?)
}

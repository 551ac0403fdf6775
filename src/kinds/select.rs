//! `ensemble-select`: nnU-Net's find_best_configuration (§10.1), `nnunet_eval::crossval`'s
//! [`select_configuration`] over the `train-fold` units' validation folders. Writes the ranking
//! (`ranking.json`, `ranking.parquet`, `summary_NAME.json`), `chosen.json`, the pair ensembles'
//! label maps and the winner's merged predictions (`cv_predictions/`).

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{PLAN, TRAIN_FOLD};
use crate::kind::{value_str, Reads, RunCtx, StageKind, UnitView};
use crate::params::ParamSpec;
use nnunet_eval::crossval::{select_configuration, CrossValidation, SelectInputs, SEG_ENDING};
use nnunet_io::dataset::Dataset;

pub struct EnsembleSelect;

static STR_T: crate::params::ParamType = crate::params::STR;
const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "ensembles",
        ty: crate::params::ParamType::Bool,
        default: "true",
        changes_output: true,
        help: "also score every pair of configurations as an ensemble (nnU-Net --disable_ensembling = false)",
    },
    ParamSpec {
        name: "configurations",
        ty: crate::params::ParamType::List(&STR_T),
        default: "[\"2d\", \"3d_fullres\", \"3d_lowres\", \"3d_cascade_fullres\"]",
        changes_output: true,
        help: "configurations to choose among (nnU-Net -c); trained ones not listed are ignored",
    },
];

impl StageKind for EnsembleSelect {
    fn name(&self) -> &'static str {
        super::ENSEMBLE_SELECT
    }
    fn version(&self) -> u32 {
        // 2: ensemble outputs in the dataset's format
        2
    }
    fn about(&self) -> &'static str {
        "score configurations and pair ensembles on the merged cross-validation, pick the best (§10.1)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn requires(&self) -> &'static [&'static str] {
        &[super::TRAIN_FOLD, super::PLAN]
    }
    fn reads(&self, kind: &str, _unit: &UnitView) -> Reads {
        match kind {
            super::PLAN => Reads::Files(vec!["labels.json".into()]),
            _ => Reads::All,
        }
    }
    fn raw_inputs(&self, _unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        ds.cases.iter().filter_map(|c| c.label.clone()).collect()
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        let labels = super::plan::read_labels(ctx.input(PLAN)?)?;
        // configuration -> fold -> validation folder
        let mut by_cfg: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
        for i in ctx.inputs_of(TRAIN_FOLD) {
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
        let cv = CrossValidation::merge(&by_cfg)?;
        let reference = |id: &str| ctx.dataset.case(id).and_then(|c| c.label.clone());
        let ensembles = ctx.out.join("ensembles");
        let progress = |what: &str| (ctx.progress)(0, 1, what);
        let inputs = SelectInputs {
            labels: &labels,
            reference: &reference,
            ensembles_dir: ctx.param_bool("ensembles")?.then_some(ensembles.as_path()),
            progress: &progress,
        };
        let selection = select_configuration(&cv, &inputs)?;
        selection.write(&ctx.out)?;
        // The winner's merged cross-validation predictions, for post-processing.
        let cv_dir = ctx.out.join("cv_predictions");
        std::fs::create_dir_all(&cv_dir)?;
        for (id, src) in selection.best_predictions() {
            crate::fsutil::link_or_copy(src, &cv_dir.join(format!("{id}{SEG_ENDING}")))
                .with_context(|| format!("collecting the prediction of {id}"))?;
        }
        Ok(())
    }
}

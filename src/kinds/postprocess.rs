//! `postprocess`: nnU-Net's connected-component post-processing decision (§10.2) on the chosen
//! model's cross-validation predictions, and `evaluate`: scores of a prediction folder against
//! reference labels in the dataset (§11).

use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;

use crate::kind::{Reads, RunCtx, StageKind, UnitView};
use crate::params::{ParamSpec, STR};
use nnunet_eval::folder::{check_same_geometry, read_segmentation};
use nnunet_eval::postprocess::{determine_postprocessing, CasePair};
use nnunet_io::dataset::Dataset;

pub struct Postprocess;

impl StageKind for Postprocess {
    fn name(&self) -> &'static str {
        super::POSTPROCESS
    }
    fn version(&self) -> u32 {
        // 2: outputs in the input's format (NIfTI-1, no foreign header extensions)
        2
    }
    fn about(&self) -> &'static str {
        "keep-largest-component steps kept only when they improve cross-validation Dice (§10.2)"
    }
    fn requires(&self) -> &'static [&'static str] {
        &[super::ENSEMBLE_SELECT, super::PLAN]
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
        let labels = super::plan::read_labels(ctx.input(super::PLAN)?)?;
        let classes = nnunet_eval::classes::from_labels(&labels);
        let cv = ctx.input(super::ENSEMBLE_SELECT)?.join("cv_predictions");
        let mut pairs = Vec::new();
        let mut headers = Vec::new();
        let names = nnunet_eval::folder::list_segmentations(&cv, ".nii.gz")?;
        for (i, name) in names.iter().enumerate() {
            (ctx.progress)(i as u64, names.len() as u64, "reading cross-validation predictions");
            let id = name.trim_end_matches(".nii.gz");
            let case =
                ctx.dataset.case(id).ok_or_else(|| anyhow!("prediction {name} has no case {id} in the dataset"))?;
            let ref_path = case.label.clone().ok_or_else(|| anyhow!("case {id} has no label file"))?;
            let (r, rh) = read_segmentation(&ref_path)?;
            let (p, ph) = read_segmentation(&cv.join(name))?;
            check_same_geometry(&ref_path, &rh, &cv.join(name), &ph)?;
            pairs.push(CasePair { name: name.clone(), prediction: p, reference: r });
            headers.push(ph);
        }
        let fg = labels.foreground_labels();
        let progress = |d: usize, t: usize| (ctx.progress)(d as u64, t as u64, "trying post-processing steps");
        let outcome = determine_postprocessing(&pairs, &classes, &fg, labels.ignore, &progress)
            .context("determining post-processing")?;
        outcome.decision.write(&ctx.out.join("postprocessing.json"))?;
        outcome.baseline.write_json(&ctx.out.join("summary_before.json"))?;
        outcome.postprocessed.write_json(&ctx.out.join("summary_after.json"))?;
        outcome.postprocessed.per_case_table().write_parquet(&ctx.out.join("metrics_after.parquet"))?;
        let dir = ctx.out.join("cv_predictions");
        std::fs::create_dir_all(&dir)?;
        for ((pair, seg), header) in pairs.iter().zip(&outcome.segmentations).zip(&headers) {
            nnunet_eval::segmentation::write_segmentation(&dir.join(&pair.name), seg, header, fg.len())?;
        }
        Ok(())
    }
}

pub struct Evaluate;

const EVAL_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "labels",
    ty: STR,
    default: "\"labelsTs\"",
    changes_output: true,
    help: "folder of reference labels, relative to the dataset root",
}];

impl StageKind for Evaluate {
    fn name(&self) -> &'static str {
        super::EVALUATE
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "Dice, IoU, TP/FP/FN/TN of predictions against reference labels, nnU-Net's summary.json (§11)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        EVAL_PARAMS
    }
    fn requires(&self) -> &'static [&'static str] {
        &[super::PREDICT, super::PLAN]
    }
    fn reads(&self, kind: &str, _unit: &UnitView) -> Reads {
        match kind {
            super::PLAN => Reads::Files(vec!["labels.json".into()]),
            _ => Reads::All,
        }
    }
    fn raw_inputs(&self, unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        let dir = ds.root.join(crate::kind::value_str(unit.params.get("labels").unwrap_or(&serde_json::Value::Null)));
        // With each file's detached data file or sidecar (.mhd/.nhdr/.tif).
        super::list_files(&dir, &ds.file_ending).iter().flat_map(|p| nnunet_io::image::image_files(p)).collect()
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        let labels = super::plan::read_labels(ctx.input(super::PLAN)?)?;
        let classes = nnunet_eval::classes::from_labels(&labels);
        let ref_dir = super::predict::dataset_subdir(ctx.dataset, &ctx.param_str("labels")?, "labels")?;
        if !ref_dir.is_dir() {
            return Err(anyhow!("evaluate: reference folder {} does not exist", ref_dir.display()));
        }
        let pred_dir = ctx.input(super::PREDICT)?;
        let progress = |d: usize, t: usize| (ctx.progress)(d as u64, t as u64, "scoring");
        let s = nnunet_eval::folder::evaluate_folder_with(
            &ref_dir,
            pred_dir,
            &classes,
            labels.ignore,
            &ctx.dataset.file_ending,
            &progress,
        )?;
        s.write_json(&ctx.out.join("summary.json"))?;
        s.per_case_table().write_parquet(&ctx.out.join("metrics.parquet"))?;
        Ok(())
    }
}

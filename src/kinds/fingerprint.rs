//! `fingerprint`: per case, crop to nonzero and collect spacing, shapes and foreground
//! intensities; then aggregate into nnU-Net's `dataset_fingerprint.json` (§2).

use anyhow::{Context, Result};
use std::path::PathBuf;

use super::{read_json, write_json};
use crate::kind::{Fanout, RunCtx, StageKind, UnitView};
use crate::params::{ParamSpec, NON_NEG_INT};
use nnunet_io::dataset::{Case, Dataset};
use nnunet_prep::fingerprint::{aggregate, CaseFingerprint};

pub struct Fingerprint;

const PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "fingerprint_seed",
    ty: NON_NEG_INT,
    default: "1234",
    changes_output: true,
    help: "seed of the foreground intensity sampling (nnU-Net: RandomState(1234))",
}];

impl StageKind for Fingerprint {
    fn name(&self) -> &'static str {
        super::FINGERPRINT
    }
    fn version(&self) -> u32 {
        // 2: foreground samples drawn as an exact multinomial (different draws from the same seed)
        // 3: NaN/inf voxels read as 0 and counted (non_finite_voxels); spacing in mm per xyzt_units
        3
    }
    fn about(&self) -> &'static str {
        "crop to nonzero, spacing and shape statistics, foreground intensity properties (nnU-Net §2)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn fanout(&self) -> Fanout {
        Fanout::PerCase { aggregate: true }
    }
    fn raw_inputs(&self, unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        match unit.case {
            Some(id) => ds.cases.iter().find(|c| c.id == id).map(|c| c.files()).unwrap_or_default(),
            None => Vec::new(),
        }
    }
    /// Cases about to be fingerprinted are verified like nnU-Net's verify_dataset_integrity.
    /// Dataset-wide checks need every case (numTraining, label consistency), so the whole
    /// dataset is verified whenever any case is about to be fingerprinted.
    fn preflight(&self, ds: &Dataset, cases: &[&Case]) -> Result<()> {
        if cases.is_empty() {
            return Ok(());
        }
        let report = nnunet_io::verify::verify_dataset(ds, &|_, _| {});
        if report.problems.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = report.problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::bail!(
            "dataset {} failed verification ({} problem(s)); nothing was written:\n{}",
            ds.root.display(),
            lines.len(),
            lines.join("\n")
        )
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        match ctx.case {
            Some(case) => {
                let _memory = ctx.env.memory.reserve(super::case_peak_bytes(case), ctx.cancel)?;
                let images = case.read_images().with_context(|| format!("case {}", case.id))?;
                let (label, _) = case.read_label().with_context(|| format!("case {}", case.id))?;
                let mut fp = CaseFingerprint::compute(&images.channels, &label, images.spacing)
                    .with_context(|| format!("fingerprint of case {}", case.id))?;
                if images.non_finite > 0 {
                    tracing::warn!("case {}: {} NaN/inf voxel(s) read as 0", case.id, images.non_finite);
                }
                fp.non_finite_voxels = images.non_finite as u64;
                write_json(&ctx.out.join("case.json"), &fp)
            }
            None => {
                let mut cases: Vec<(String, CaseFingerprint)> = Vec::with_capacity(ctx.case_outputs.len());
                for (i, (id, dir)) in ctx.case_outputs.iter().enumerate() {
                    (ctx.progress)(i as u64, ctx.case_outputs.len() as u64, "reading case fingerprints");
                    cases.push((id.clone(), read_json(&dir.join("case.json"))?));
                }
                cases.sort_by(|a, b| a.0.cmp(&b.0));
                let fps: Vec<CaseFingerprint> = cases.iter().map(|c| c.1.clone()).collect();
                let seed = ctx.param_i64("fingerprint_seed")? as u64;
                let fp = aggregate(&fps, seed).context("aggregating the dataset fingerprint")?;
                write_json(&ctx.out.join("dataset_fingerprint.json"), &fp)?;
                let ids: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
                let t = nnunet_prep::fingerprint::case_table(&ids, &fps);
                t.write_parquet(&ctx.out.join("cases.parquet"))?;
                Ok(())
            }
        }
    }
}

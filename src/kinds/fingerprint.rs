//! `fingerprint`: per case, crop to nonzero and collect spacing, shapes and foreground
//! intensities; then aggregate into nnU-Net's `dataset_fingerprint.json` (§2).

use anyhow::{Context, Result};
use std::path::PathBuf;

use super::{read_json, write_json};
use crate::kind::{Fanout, RunCtx, StageKind, UnitView};
use crate::params::{ParamSpec, NON_NEG};
use nnunet_io::dataset::Dataset;
use nnunet_io::table::{Column, Table};
use nnunet_prep::fingerprint::{aggregate, CaseFingerprint};

pub struct Fingerprint;

const PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "fingerprint_seed",
    ty: NON_NEG,
    default: "1234",
    help: "seed of the foreground intensity sampling (nnU-Net: RandomState(1234))",
}];

impl StageKind for Fingerprint {
    fn name(&self) -> &'static str {
        "fingerprint"
    }
    fn version(&self) -> u32 {
        // 2: foreground samples drawn as an exact multinomial (different draws from the same seed)
        2
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
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        match ctx.case {
            Some(case) => {
                let _memory = ctx.env.memory.reserve(super::case_peak_bytes(case), ctx.cancel)?;
                let images = case.read_images().with_context(|| format!("case {}", case.id))?;
                let (label, _) = case.read_label().with_context(|| format!("case {}", case.id))?;
                let fp = CaseFingerprint::compute(&images.channels, &label, images.spacing)
                    .with_context(|| format!("fingerprint of case {}", case.id))?;
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
                let col = |f: &dyn Fn(&CaseFingerprint) -> f64| Column::F64(fps.iter().map(f).collect());
                let t = Table::new()
                    .with("case", Column::Str(cases.iter().map(|c| c.0.clone()).collect()))
                    .with("spacing_0", col(&|c| c.spacing[0]))
                    .with("spacing_1", col(&|c| c.spacing[1]))
                    .with("spacing_2", col(&|c| c.spacing[2]))
                    .with("shape_before_crop_0", col(&|c| c.shape_before_crop[0] as f64))
                    .with("shape_before_crop_1", col(&|c| c.shape_before_crop[1] as f64))
                    .with("shape_before_crop_2", col(&|c| c.shape_before_crop[2] as f64))
                    .with("shape_after_crop_0", col(&|c| c.shape_after_crop[0] as f64))
                    .with("shape_after_crop_1", col(&|c| c.shape_after_crop[1] as f64))
                    .with("shape_after_crop_2", col(&|c| c.shape_after_crop[2] as f64))
                    .with("relative_size_after_crop", col(&|c| c.relative_size_after_crop));
                t.write_parquet(&ctx.out.join("cases.parquet"))?;
                Ok(())
            }
        }
    }
}

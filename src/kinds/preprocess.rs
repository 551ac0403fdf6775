//! `normalize` and `resample`: nnU-Net's per-case preprocessing (§4.1), split in two so that the
//! normalized crop is shared by every configuration.
//!
//! - `normalize` (per case): transpose, crop to nonzero, normalize. Keyed on the plan's
//!   `normalization.json` only.
//! - `resample` (per configuration × case, then an aggregate): resample data and labels to the
//!   configuration's spacing, sample class locations, write the case as a Zarr v3 group; the
//!   aggregate assembles one Zarr store per configuration from the cases (hard links).

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::read_json;
use crate::fsutil::link_tree;
use crate::kind::{Fanout, Reads, Resources, RunCtx, StageKind, UnitView};
use crate::params::{ParamSpec, NON_NEG_INT};
use nnunet_io::dataset::Dataset;
use nnunet_io::table::{Column, Table};
use nnunet_prep::class_locations::ClassSpec;
use nnunet_prep::plans::Plans;
use nnunet_prep::preprocess::{normalize_case, ResampleCaseOptions};
use nnunet_prep::{store, stream};

pub struct Normalize;

impl StageKind for Normalize {
    fn name(&self) -> &'static str {
        super::NORMALIZE
    }
    fn version(&self) -> u32 {
        // 2: raw (uncompressed) chunks, flat chunk keys
        // 3: every image format; NaN/inf read as 0; spacing in mm per NIfTI xyzt_units
        // 4: zarrs store: arrays CASE and CASE_seg, one shard file each, crc32c per chunk
        4
    }
    fn about(&self) -> &'static str {
        "per case: transpose, crop to nonzero, intensity normalization (§3, §4.1)"
    }
    fn fanout(&self) -> Fanout {
        Fanout::PerCase { aggregate: false }
    }
    fn requires(&self) -> &'static [&'static str] {
        &[super::PLAN]
    }
    fn reads(&self, _kind: &str, _unit: &UnitView) -> Reads {
        Reads::Files(vec!["normalization.json".into()])
    }
    fn raw_inputs(&self, unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        unit.case.and_then(|id| ds.cases.iter().find(|c| c.id == id)).map(|c| c.files()).unwrap_or_default()
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        let case = ctx.case()?;
        let plans: Plans = read_json(&ctx.input(super::PLAN)?.join("normalization.json"))?;
        let _memory = ctx.env.memory.reserve(super::case_peak_bytes(case), ctx.cancel)?;
        let images = case.read_images().with_context(|| format!("case {}", case.id))?;
        let (label, _) = case.read_label().with_context(|| format!("case {}", case.id))?;
        let n = normalize_case(images.channels, Some(label), images.spacing, &plans)
            .with_context(|| format!("normalizing case {}", case.id))?;
        store::write_normalized(&ctx.out.join(&case.id), &n)
            .with_context(|| format!("writing the normalized case {}", case.id))?;
        Ok(())
    }
}

pub struct Resample;

const RESAMPLE_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "locations_seed",
    ty: NON_NEG_INT,
    default: "1234",
    changes_output: true,
    help: "seed of the class-location sampling for foreground oversampling (nnU-Net: 1234)",
}];

impl StageKind for Resample {
    fn name(&self) -> &'static str {
        super::RESAMPLE
    }
    fn version(&self) -> u32 {
        // 2: flat chunk keys, one chunk per array for small cases
        // 3: zarrs store: arrays CASE and CASE_seg (one shard file each, crc32c per chunk), class
        //    locations in the case's attributes: 4 files per case
        3
    }
    fn about(&self) -> &'static str {
        "per configuration and case: resample to the target spacing, class locations, Zarr v3 store (§4)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        RESAMPLE_PARAMS
    }
    fn axes(&self) -> &'static [&'static str] {
        &["configuration"]
    }
    fn fanout(&self) -> Fanout {
        Fanout::PerCase { aggregate: true }
    }
    fn canonical_item(&self, coords: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
        // 3d_cascade_fullres trains on 3d_fullres's data (same data_identifier, §5.5).
        let mut c = coords.clone();
        if let Some(v) = c.get_mut("configuration") {
            if let Some(data) = super::train::cascade_data_configuration(&crate::kind::value_str(v)) {
                *v = Value::String(data.into());
            }
        }
        c
    }
    fn requires(&self) -> &'static [&'static str] {
        &[super::PLAN, super::NORMALIZE]
    }
    fn reads(&self, kind: &str, unit: &UnitView) -> Reads {
        match kind {
            super::PLAN => Reads::Files(vec![
                format!("preprocess_{}.json", unit.coord_str("configuration").unwrap_or_default()),
                "labels.json".into(),
            ]),
            _ => Reads::All,
        }
    }
    fn resources(&self, _unit: &UnitView, _env: &crate::kind::ExecEnv) -> Resources {
        Resources::ONE_CPU
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        let cfg_name = ctx.coord("configuration")?;
        let plans: Plans = read_json(&ctx.input(super::PLAN)?.join(format!("preprocess_{cfg_name}.json")))
            .with_context(|| format!("the plan has no configuration '{cfg_name}' to preprocess"))?;
        let cfg = plans.configuration(&cfg_name)?;
        match ctx.case {
            Some(case) => {
                let src = ctx.input(super::NORMALIZE)?.join(&case.id);
                let what = format!("the normalized case {}", case.id);
                let input = store::NormalizedReader::open(&src).map_err(|e| super::read_error(e, &what, &src))?;
                let seed = ctx.param_i64("locations_seed")? as u64;
                let labels = super::plan::read_labels(ctx.input(super::PLAN)?)?;
                let opts = ResampleCaseOptions { classes: class_spec(&labels), ..Default::default() };
                let need = stream::resample_peak_bytes(&input, &cfg)?;
                let _memory = ctx.env.memory.reserve(need, ctx.cancel)?;
                stream::resample_case_streamed(&input, &cfg, &opts, seed, &ctx.out.join(&case.id))
                    .map_err(|e| super::read_error(e, &what, &src))
                    .with_context(|| format!("resampling case {} for {cfg_name}", case.id))?;
                Ok(())
            }
            None => {
                // One store per configuration: root group + arrays ID and ID_seg per case (hard links).
                let root = ctx.out.join(format!("{}.zarr", cfg.data_identifier));
                let all: Vec<String> = ctx.case_outputs.iter().map(|(id, _)| id.clone()).collect();
                let clash = store::colliding_ids(&all);
                if !clash.is_empty() {
                    anyhow::bail!(
                        "case ids {clash:?} clash with the segmentation arrays of cases {:?} in one store; rename those cases",
                        clash.iter().map(|c| c.trim_end_matches("_seg")).collect::<Vec<_>>()
                    );
                }
                let mut ids = Vec::new();
                let mut shapes: Vec<[usize; 3]> = Vec::new();
                for (i, (id, dir)) in ctx.case_outputs.iter().enumerate() {
                    (ctx.progress)(i as u64, ctx.case_outputs.len() as u64, "assembling the store");
                    for src in store::case_arrays(&dir.join(id)) {
                        let name = src.file_name().map(|n| n.to_os_string()).unwrap_or_default();
                        link_tree(&src, &root.join(name))?;
                    }
                    let cs = store::CaseStore::open(&root.join(id)).with_context(|| format!("case {id}"))?;
                    shapes.push(cs.shape());
                    ids.push(id.clone());
                }
                nnunet_io::zarr::write_group(
                    &root,
                    json!({"configuration": cfg_name, "data_identifier": cfg.data_identifier, "cases": ids, "spacing": cfg.spacing, "patch_size": cfg.patch_size}),
                )?;
                let t = Table::new()
                    .with("case", Column::Str(ids))
                    .with("shape_0", Column::I64(shapes.iter().map(|s| s[0] as i64).collect()))
                    .with("shape_1", Column::I64(shapes.iter().map(|s| s[1] as i64).collect()))
                    .with("shape_2", Column::I64(shapes.iter().map(|s| s[2] as i64).collect()));
                t.write_parquet(&ctx.out.join("cases.parquet"))?;
                Ok(())
            }
        }
    }
}

/// nnU-Net's LabelManager classes for foreground sampling: labels, or regions, plus the ignore key.
fn class_spec(labels: &nnunet_io::labels::Labels) -> ClassSpec {
    let all: Vec<i16> = labels.all_labels().iter().map(|&l| l as i16).collect();
    let regions: Option<Vec<Vec<i16>>> = labels
        .has_regions()
        .then(|| labels.foreground_regions().iter().map(|r| r.iter().map(|&l| l as i16).collect()).collect());
    ClassSpec::from_labels(&all, regions.as_deref(), labels.ignore.map(|i| i as i16))
}

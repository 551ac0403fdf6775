//! Sweeps: several variants of one pipeline (`variants:` entries × `--set a,b` values) that
//! share a cache and, wherever their units are the same, the units themselves.
//!
//! - [`unit_signatures`]: what a unit's key will be made of, known before anything runs (kind,
//!   version, params, coordinates, case, raw files, and its upstream units' signatures).
//!   Two variants whose unit has the same signature build it once; `pipeline status` on a sweep
//!   shows this as the "shared" column before hours are spent.
//! - [`write_manifest`]: `OUTPUTS/NAME/sweep.json`, the list of variants a sweep run made, which
//!   `pipeline report OUTPUTS/NAME` turns into one comparison page.

use anyhow::Result;
use serde_json::json;
use std::path::{Path, PathBuf};

use crate::config::{value_text, PipelineSpec};
use crate::dag::Dag;
use crate::fsutil::write_atomic;
use crate::kind::Reads;

/// One signature per unit (hex), in unit order. Equal signatures in two variants' graphs mean
/// equal keys once the upstream units are built (the converse fails only when an upstream
/// unit's output happens to be byte-identical across variants: early cutoff shares even more).
pub fn unit_signatures(dag: &Dag) -> Vec<String> {
    let mut sig: Vec<String> = vec![String::new(); dag.units.len()];
    for u in dag.unit_order() {
        let unit = &dag.units[u];
        let mut deps: Vec<serde_json::Value> = unit
            .deps
            .iter()
            .map(|d| {
                let reads = match &d.reads {
                    Reads::All => json!("*"),
                    Reads::Files(f) => json!(f),
                };
                json!([sig[d.unit], reads])
            })
            .collect();
        deps.sort_by_key(|d| d.to_string());
        let v = json!({
            "kind": unit.kind.name(),
            "version": unit.kind.version(),
            "params": crate::params::canonical(&unit.params),
            "coords": unit.coords,
            "case": unit.case,
            "aggregate": unit.aggregate,
            "raw": unit.raw,
            "deps": deps,
        });
        sig[u] = blake3::hash(v.to_string().as_bytes()).to_hex().to_string();
    }
    sig
}

/// The sweep's folder: `OUTPUTS/NAME`, where every variant's run folder is.
pub fn sweep_dir(spec: &PipelineSpec) -> PathBuf {
    spec.outputs.join(&spec.name)
}

/// Writes `OUTPUTS/NAME/sweep.json`: the sweep's variants in order (the first is the baseline
/// of comparisons), each with its label, run folder (relative to the sweep folder), named
/// variant and every override applied.
pub fn write_manifest(variants: &[PipelineSpec]) -> Result<Option<PathBuf>> {
    let Some(first) = variants.first() else { return Ok(None) };
    if !first.in_sweep {
        return Ok(None);
    }
    let dir = sweep_dir(first);
    std::fs::create_dir_all(&dir)?;
    let list: Vec<serde_json::Value> = variants
        .iter()
        .map(|v| {
            json!({
                "label": v.variant_label(),
                "run": v.variant_label(),
                "variant": v.variant_name,
                "swept": v.variant.iter().map(|(k, x)| json!({"key": k, "value": value_text(x)})).collect::<Vec<_>>(),
                "overrides": v.overrides.iter().map(|(k, x)| json!({"key": k, "value": value_text(x)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({
        "sweep": first.name,
        "pipeline": first.file,
        "baseline": first.variant_label(),
        "variants": list,
    });
    let path = dir.join("sweep.json");
    write_atomic(&path, &serde_json::to_vec_pretty(&doc)?)?;
    Ok(Some(path))
}

/// Whether `dir` is a sweep folder (has `sweep.json`).
pub fn is_sweep_dir(dir: &Path) -> bool {
    dir.join("sweep.json").is_file()
}

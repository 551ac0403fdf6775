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
    let path = dir.join("sweep.json");
    let list = merge_with_earlier(&path, &dir, list);
    let baseline = list.first().and_then(|v| v["label"].as_str()).unwrap_or_default().to_string();
    let doc = json!({
        "sweep": first.name,
        "pipeline": first.file,
        "baseline": baseline,
        "variants": list,
    });
    write_atomic(&path, &serde_json::to_vec_pretty(&doc)?)?;
    Ok(Some(path))
}

/// The variants of this run merged into those an earlier run of the sweep recorded: a run of
/// some variants only (`--variant NAME`) replaces their entries and keeps the others whose run
/// folders still exist, in the earlier order (so the baseline stays first); new ones follow.
fn merge_with_earlier(path: &Path, dir: &Path, new: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let earlier: Vec<serde_json::Value> = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|d| d["variants"].as_array().cloned())
        .unwrap_or_default();
    let label = |v: &serde_json::Value| v["label"].as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for e in &earlier {
        match new.iter().find(|n| label(n) == label(e)) {
            Some(n) => out.push(n.clone()),
            None if e["run"].as_str().is_some_and(|r| !r.is_empty() && dir.join(r).is_dir()) => out.push(e.clone()),
            None => {}
        }
    }
    for n in new {
        if !out.iter().any(|o| label(o) == label(&n)) {
            out.push(n);
        }
    }
    out
}

/// Whether `dir` is a sweep folder (has `sweep.json`).
pub fn is_sweep_dir(dir: &Path) -> bool {
    dir.join("sweep.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str) -> serde_json::Value {
        json!({"label": label, "run": label, "overrides": []})
    }

    #[test]
    fn a_run_of_one_variant_keeps_the_others_of_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        for v in ["default", "relu", "gone"] {
            if v != "gone" {
                std::fs::create_dir_all(dir.path().join(v)).unwrap();
            }
        }
        let earlier = json!({"variants": [entry("default"), entry("relu"), entry("gone")]});
        std::fs::write(&path, serde_json::to_vec(&earlier).unwrap()).unwrap();
        let mut relu = entry("relu");
        relu["overrides"] = json!([{"key": "train.nonlin", "value": "relu"}]);
        let merged = merge_with_earlier(&path, dir.path(), vec![relu.clone(), entry("new")]);
        let labels: Vec<&str> = merged.iter().map(|v| v["label"].as_str().unwrap()).collect();
        // the baseline stays first, relu is replaced in place, a variant without its folder is dropped
        assert_eq!(labels, ["default", "relu", "new"]);
        assert_eq!(merged[1], relu);
        // no earlier manifest: the run's own list
        let none = merge_with_earlier(&dir.path().join("absent.json"), dir.path(), vec![entry("a")]);
        assert_eq!(none, vec![entry("a")]);
    }
}

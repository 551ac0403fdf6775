//! Time per stage: build times from the cache manifests of the run's units (per-case units
//! included), and the wall time each unit took in this run (`run.json`).
//!
//! A unit's manifest is `CACHE/artifacts/KIND/KEY[0..2]/KEY/manifest.json`. The cache root is
//! `run.json`'s `cache`, or else found by following a view link (`runs/NAME/STAGE` ->
//! `CACHE/artifacts/KIND/KE/KEY/out`).

use crate::run::RunFolder;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Timing of one stage.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StageTiming {
    pub stage: String,
    pub units: usize,
    pub built: usize,
    pub cached: usize,
    /// Failed or skipped in this run.
    pub failed: usize,
    pub skipped: usize,
    /// Sum of `duration_s` over the units' manifests: what building the stage cost, whether it
    /// was built in this run or earlier.
    pub build_seconds: f64,
    /// Units whose manifest was found.
    pub manifests: usize,
    /// Sum of the units' `seconds` in `run.json` (cache hits take ~0).
    pub run_seconds: f64,
    /// Earliest `started` of the manifests (RFC 3339).
    pub first_started: Option<String>,
}

/// Finds the cache root of a run.
pub fn cache_root(run: &RunFolder) -> Option<PathBuf> {
    if let Some(c) = run.info.cache.as_deref().filter(|c| !c.is_empty()) {
        let p = PathBuf::from(c);
        let candidates = if p.is_absolute() { vec![p] } else { vec![run.dir.join(&p), p] };
        if let Some(found) = candidates.into_iter().find(|p| p.join("artifacts").is_dir()) {
            return Some(found);
        }
    }
    // Follow a view link: CACHE/artifacts/KIND/KE/KEY/out.
    let mut stack = vec![(run.dir.clone(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            let is_link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            if is_link {
                if let Ok(target) = std::fs::canonicalize(&p) {
                    let root = target.ancestors().nth(5).map(Path::to_path_buf);
                    let ok = target.file_name().is_some_and(|n| n == "out")
                        && target.ancestors().nth(4).and_then(Path::file_name).is_some_and(|n| n == "artifacts");
                    if let (true, Some(root)) = (ok, root) {
                        return Some(root);
                    }
                }
            } else if p.is_dir() && depth < 3 {
                stack.push((p, depth + 1));
            }
        }
    }
    None
}

/// `duration_s` and `started` of a manifest.
fn read_manifest(p: &Path) -> Option<(f64, Option<String>)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    let d = v.get("duration_s").and_then(Value::as_f64)?;
    Some((d, v.get("started").and_then(Value::as_str).map(str::to_string)))
}

/// Per-stage timings in the order stages first appear in `run.json`, and a note when manifests
/// could not be found.
pub fn stage_timings(run: &RunFolder) -> (Vec<StageTiming>, Vec<String>) {
    let cache = cache_root(run);
    let kinds: Vec<String> = cache
        .as_ref()
        .and_then(|c| std::fs::read_dir(c.join("artifacts")).ok())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<String, StageTiming> = BTreeMap::new();
    let mut missing = 0usize;
    for u in &run.info.units {
        if u.outcome == "notselected" {
            continue;
        }
        if !by.contains_key(&u.stage) {
            order.push(u.stage.clone());
        }
        let t =
            by.entry(u.stage.clone()).or_insert_with(|| StageTiming { stage: u.stage.clone(), ..Default::default() });
        t.units += 1;
        match u.outcome.as_str() {
            "built" => t.built += 1,
            "cached" => t.cached += 1,
            "failed" => t.failed += 1,
            "skipped" => t.skipped += 1,
            _ => {}
        }
        if u.seconds.is_finite() {
            t.run_seconds += u.seconds;
        }
        let (Some(key), Some(cache)) = (u.key.as_deref(), cache.as_ref()) else {
            if u.key.is_some() {
                missing += 1;
            }
            continue;
        };
        let Some(ke) = key.get(..2) else { continue };
        let path_for = |kind: &str| cache.join("artifacts").join(kind).join(ke).join(key).join("manifest.json");
        let found = match u.kind.as_deref() {
            Some(k) => read_manifest(&path_for(k)),
            None => kinds.iter().find_map(|k| read_manifest(&path_for(k))),
        };
        match found {
            Some((d, started)) => {
                t.manifests += 1;
                if d.is_finite() {
                    t.build_seconds += d;
                }
                if let Some(s) = started {
                    if t.first_started.as_ref().is_none_or(|f| &s < f) {
                        t.first_started = Some(s);
                    }
                }
            }
            None => missing += 1,
        }
    }
    let mut notes = Vec::new();
    if cache.is_none() && run.info.units.iter().any(|u| u.key.is_some()) {
        notes.push("the cache folder of this run was not found (run.json has no usable \"cache\" and no view link leads into one): build times are not available".to_string());
    } else if missing > 0 {
        notes.push(format!("{missing} unit(s) have no manifest in the cache (collected by `pipeline gc`?): their build time is not counted"));
    }
    (order.into_iter().filter_map(|s| by.remove(&s)).collect(), notes)
}

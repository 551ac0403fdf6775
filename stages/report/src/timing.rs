//! Time per stage, from `run.json` alone: the engine records for every unit the seconds it took
//! in this run and, for a unit with an artifact, how long building that artifact took and when
//! (`build_seconds`, `built_at`), also when it was taken from the cache. The report never reads
//! the cache.

use crate::run::RunFolder;
use std::collections::BTreeMap;

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
    /// Sum of the units' `build_seconds`: what building the stage cost, whether it was built
    /// in this run or earlier.
    pub build_seconds: f64,
    /// Units with a recorded build time.
    pub manifests: usize,
    /// Sum of the units' `seconds` in `run.json` (cache hits take ~0).
    pub run_seconds: f64,
    /// Earliest `built_at` of the units (RFC 3339).
    pub first_started: Option<String>,
}

/// Per-stage timings in the order stages first appear in `run.json`, and a note when units with
/// an artifact have no build time (a `run.json` written before build times were recorded).
pub fn stage_timings(run: &RunFolder) -> (Vec<StageTiming>, Vec<String>) {
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
        match u.build_seconds {
            Some(d) => {
                t.manifests += 1;
                if d.is_finite() {
                    t.build_seconds += d;
                }
                if let Some(s) = &u.built_at {
                    if t.first_started.as_ref().is_none_or(|f| s < f) {
                        t.first_started = Some(s.clone());
                    }
                }
            }
            None if u.key.is_some() => missing += 1,
            None => {}
        }
    }
    let mut notes = Vec::new();
    if missing > 0 {
        notes.push(format!(
            "{missing} unit(s) have no build time in run.json (written by an older pipeline; run `pipeline run` again to record them)"
        ));
    }
    (order.into_iter().filter_map(|s| by.remove(&s)).collect(), notes)
}

//! `pipeline status` on a sweep: every variant's units side by side, and which units the
//! variants share (built once for all of them), before anything runs.

use anyhow::Result;
use indexmap::IndexMap;
use serde_json::json;

use super::{open_cache, open_session, print_json};
use crate::cli::StatusArgs;
use crate::config::PipelineSpec;
use crate::session::UnitState;
use crate::sweep::unit_signatures;

/// One unit id across the variants: its state and signature in each (None: not in that variant).
struct Row {
    unit: String,
    stage: String,
    is_case: bool,
    cells: Vec<Option<(&'static str, String)>>,
}

impl Row {
    /// Groups of variant indices that share this unit (equal signatures).
    fn groups(&self) -> Vec<Vec<usize>> {
        let mut by_sig: IndexMap<&str, Vec<usize>> = IndexMap::new();
        for (i, c) in self.cells.iter().enumerate() {
            if let Some((_, sig)) = c {
                by_sig.entry(sig.as_str()).or_default().push(i);
            }
        }
        by_sig.into_values().collect()
    }
}

fn state_word(s: &UnitState) -> &'static str {
    match s {
        UnitState::Fresh { .. } => "fresh",
        UnitState::Missing { .. } => "missing",
        UnitState::Blocked => "to build",
    }
}

/// `pipeline status` on a sweep: every variant's units settled against the cache, then one
/// table of stages x variants with what is shared, as text or JSON.
///
/// Long (~110 lines): one pass builds the table for both outputs; the text layout is the
/// second half.
pub fn status(a: &StatusArgs, variants: Vec<PipelineSpec>) -> Result<()> {
    let (cache, stat) = open_cache(&variants[0])?;
    let labels: Vec<String> = variants.iter().map(|v| v.variant_label()).collect();
    let sweep = variants[0].name.clone();
    let n = variants.len();
    let mut rows: IndexMap<String, Row> = IndexMap::new();
    let mut stage_order: Vec<String> = Vec::new();
    for (vi, spec) in variants.into_iter().enumerate() {
        let session = open_session(spec, &cache, &stat, None)?;
        let states = session.evaluate()?;
        let sigs = unit_signatures(&session.dag);
        for &si in &session.dag.order {
            let name = &session.dag.stages[si].name;
            if !stage_order.contains(name) {
                stage_order.push(name.clone());
            }
        }
        for u in session.dag.unit_order() {
            let unit = &session.dag.units[u];
            let id = unit.id.to_string();
            let row = rows.entry(id.clone()).or_insert_with(|| Row {
                unit: id,
                stage: unit.id.stage.clone(),
                is_case: unit.case.is_some(),
                cells: vec![None; n],
            });
            row.cells[vi] = Some((state_word(&states[u]), sigs[u].clone()));
        }
    }
    stat.save()?;
    let distinct: usize = rows.values().map(|r| r.groups().len()).sum();
    let per_variant: usize = rows.values().map(|r| r.cells.iter().filter(|c| c.is_some()).count()).sum();
    let shared_all = rows.values().filter(|r| r.groups().len() == 1 && r.cells.iter().all(|c| c.is_some())).count();
    if a.json {
        let units: Vec<serde_json::Value> = rows
            .values()
            .map(|r| {
                let status: serde_json::Map<String, serde_json::Value> = r
                    .cells
                    .iter()
                    .zip(&labels)
                    .filter_map(|(c, l)| c.as_ref().map(|(s, _)| (l.clone(), json!(s))))
                    .collect();
                let groups: Vec<Vec<&String>> =
                    r.groups().into_iter().map(|g| g.into_iter().map(|i| &labels[i]).collect()).collect();
                json!({"unit": r.unit, "stage": r.stage, "case": r.is_case, "status": status, "shared_by": groups})
            })
            .collect();
        return print_json(&json!({
            "sweep": sweep,
            "variants": labels,
            "units_per_variant": per_variant,
            "distinct_units": distinct,
            "shared_by_all": shared_all,
            "units": units,
        }));
    }
    println!(
        "sweep {sweep}: {n} variants; {per_variant} units in all, {distinct} distinct (built once each), \
         {shared_all} shared by every variant"
    );
    let width = labels.iter().map(|l| l.len()).max().unwrap_or(8).clamp(8, 28);
    print!("{:<14} {:>6}  {:<12}", "stage", "units", "shared");
    for l in &labels {
        print!(" {:<width$}", truncate(l, width));
    }
    println!();
    for stage in &stage_order {
        let mine: Vec<&Row> = rows.values().filter(|r| &r.stage == stage).collect();
        if mine.is_empty() {
            continue;
        }
        let all = mine.iter().filter(|r| r.groups().len() == 1).count();
        let none = mine.iter().filter(|r| r.groups().len() == r.cells.iter().filter(|c| c.is_some()).count()).count();
        let shared = if all == mine.len() {
            "all".to_string()
        } else if none == mine.len() {
            "none".to_string()
        } else {
            format!("{all} of {}", mine.len())
        };
        print!("{:<14} {:>6}  {:<12}", stage, mine.len(), shared);
        for vi in 0..n {
            let states: Vec<&str> = mine.iter().filter_map(|r| r.cells[vi].as_ref().map(|c| c.0)).collect();
            let fresh = states.iter().filter(|s| **s == "fresh").count();
            let cell = if states.is_empty() {
                "-".to_string()
            } else if fresh == states.len() {
                "fresh".to_string()
            } else if fresh == 0 {
                "to build".to_string()
            } else {
                format!("{fresh}/{} fresh", states.len())
            };
            print!(" {:<width$}", cell);
        }
        println!();
        if a.why {
            for r in mine.iter().filter(|r| !r.is_case && r.groups().len() > 1) {
                let groups: Vec<String> = r
                    .groups()
                    .into_iter()
                    .map(|g| g.into_iter().map(|i| labels[i].as_str()).collect::<Vec<_>>().join(" = "))
                    .collect();
                println!("  {}: {} distinct: {}", r.unit, groups.len(), groups.join(" | "));
            }
        }
    }
    Ok(())
}

fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

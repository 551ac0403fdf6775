//! The run at a glance: `run.json`, which stages exist, failures.

use super::Ctx;
use crate::doc::{Block, Cell, Section, Table};
use crate::fmt;

/// Stage kinds of the nnU-Net pipeline, in order, with what they contribute to the report.
const STAGES: &[(&str, &str)] = &[
    ("fingerprint", "dataset fingerprint"),
    ("plan", "plans, labels, folds"),
    ("train-fold", "training curves, validation metrics"),
    ("ensemble-select", "ranking, chosen model"),
    ("postprocess", "post-processing decision, final CV predictions"),
    ("predict", "test-set predictions"),
    ("evaluate", "test-set scores"),
];

pub fn build(ctx: &mut Ctx) -> Section {
    let mut sec = Section::new("overview", "Overview");
    let i = &ctx.run.info;
    let mut facts =
        vec![("Run".to_string(), i.run.clone()), ("Run folder".to_string(), ctx.run.dir.display().to_string())];
    if let Some(p) = &i.pipeline {
        facts.push(("Pipeline".into(), p.clone()));
    }
    if let Some(d) = &i.dataset {
        facts.push(("Dataset".into(), d.clone()));
    }
    if !i.variant.is_empty() {
        let v: Vec<String> =
            i.variant.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect();
        facts.push(("Variant".into(), v.join(", ")));
    }
    facts.push(("Run time".into(), fmt::duration(i.seconds)));
    facts.push((
        "Units".into(),
        format!("{} built, {} cached, {} failed, {} skipped", i.built, i.cached, i.failed, i.skipped),
    ));
    sec.push(Block::Facts(facts));
    let mut t =
        Table::new("overview-stages", "Stages", vec!["stage".into(), "folder".into(), "status".into(), "shows".into()]);
    for (kind, what) in STAGES {
        let dir = ctx.run.stage_dir(kind);
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let failed = i.units.iter().any(|u| u.stage == name && u.outcome == "failed");
        let status = match (dir.exists(), failed) {
            (_, true) => "failed",
            (true, false) => "present",
            (false, false) => "missing",
        };
        t.rows.push(vec![Cell::text(*kind), Cell::text(format!("{name}/")), Cell::text(status), Cell::text(*what)]);
    }
    sec.push(Block::Table(t));
    let failures: Vec<String> = i
        .units
        .iter()
        .filter(|u| u.outcome == "failed")
        .map(|u| format!("{}: {}", u.unit, u.error.clone().unwrap_or_else(|| "failed".into())))
        .collect();
    for f in failures.iter().take(10) {
        sec.problem(format!("unit {f}"));
    }
    if failures.len() > 10 {
        sec.info(format!("… and {} more failed units (see run.json)", failures.len() - 10));
    }
    sec
}

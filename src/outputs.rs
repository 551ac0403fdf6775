//! The outputs view: stable, human-readable paths into the cache.
//!
//! ```text
//! runs/NAME/plan/                             -> cache/artifacts/plan/../KEY/out
//! runs/NAME/train/configuration=2d/fold=0/    -> ...
//! runs/NAME/run.json                          what the last run did, unit by unit
//! ```
//! Per-case units are not linked one by one; their aggregate is. Links are relative, so a
//! project folder can be moved as a whole.

use anyhow::{Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

use crate::cache::Manifest;
use crate::fsutil::{relative_to, replace_symlink, write_atomic};
use crate::kind::value_str;
use crate::runner::RunReport;
use crate::session::Session;

/// The run folder of a session.
pub fn run_dir(session: &Session) -> PathBuf {
    session.spec.outputs.join(&session.run_name)
}

/// View path of a unit inside the run folder (`train/configuration=2d/fold=0`).
pub fn view_path(session: &Session, u: usize) -> PathBuf {
    let unit = &session.dag.units[u];
    let mut p = PathBuf::from(&unit.id.stage);
    for (k, v) in &unit.coords {
        p.push(format!("{k}={}", value_str(v)));
    }
    p
}

/// Links every complete non-case unit and writes `run.json`.
pub fn publish(session: &Session, report: &RunReport) -> Result<PathBuf> {
    // The run's artifacts reach the disk before run.json names them (see cache.rs).
    session.cache.sync().context("syncing the cache")?;
    let dir = run_dir(session);
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    for (u, m) in report.manifests.iter().enumerate() {
        let Some(m) = m else { continue };
        if session.dag.units[u].case.is_some() {
            continue;
        }
        link(session, &dir, u, m)?;
    }
    let v = json!({
        "run": session.run_name,
        "pipeline": session.spec.file,
        "dataset": session.spec.dataset.value,
        "cache": session.spec.cache,
        "variant": session.spec.variant.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "variant_name": session.spec.variant_name,
        "overrides": session.spec.overrides.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "seconds": report.seconds,
        "built": report.built, "cached": report.cached, "failed": report.failed, "skipped": report.skipped,
        "units": report.units,
    });
    write_atomic(&dir.join("run.json"), &serde_json::to_vec_pretty(&v)?)?;
    Ok(dir)
}

fn link(session: &Session, run_dir: &Path, u: usize, m: &Manifest) -> Result<()> {
    let link = run_dir.join(view_path(session, u));
    let target = session.out_dir(m);
    let rel = relative_to(&target, link.parent().unwrap_or(run_dir));
    if std::fs::read_link(&link).ok().as_deref() == Some(rel.as_path()) {
        return Ok(());
    }
    replace_symlink(&rel, &link)
}

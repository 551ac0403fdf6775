//! `predict`, `export`, `report`.
use crate::cli::{ExportArgs, PredictArgs, ReportArgs};
use anyhow::{bail, Result};

pub fn predict(_a: PredictArgs) -> Result<()> {
    bail!("predict: not wired yet")
}
pub fn export(_a: ExportArgs) -> Result<()> {
    bail!("export: not wired yet")
}
pub fn report(_a: ReportArgs) -> Result<()> {
    bail!("report: not wired yet")
}

pub fn bench_augment(_run: &std::path::Path, _cfg: &str, _batches: usize, _json: bool) -> Result<()> {
    bail!("bench augment: not wired yet")
}
pub fn bench_step(_run: &std::path::Path, _cfg: &str, _bs: usize, _steps: usize, _json: bool) -> Result<()> {
    bail!("bench step: not wired yet")
}

//! Reports of finished pipeline runs: a self-contained HTML page (`report.html`) and the same
//! tables and figures as Markdown (`report.md` + `images/`), read from a run folder
//! (`runs/NAME/`, its stage views symlinked into the cache).
//!
//! The report shows what the run has and says what it lacks: dataset fingerprint, plans,
//! training curves, cross-validation Dice per configuration, fold, case and class, the
//! ensemble selection and post-processing decisions, test-set scores, example slices with
//! reference and predicted contours, and the time per stage. Every number is read from the
//! run's Parquet and JSON files; numeric HTML cells carry the exact value in `data-v`.
//!
//! - [`write_report`] writes the report and returns a [`ReportSummary`];
//!   [`text_summary`] renders that for a terminal.
//! - [`sweep`]: the comparison page of a sweep's variants (`pipeline report SWEEP_DIR`,
//!   `pipeline compare RUN...`).
//! - [`doc`] is the renderer-neutral document, [`html`] and [`markdown`] render it,
//!   [`svg`] (`nnunet-chart`) draws the charts, [`png`] the slices.
//!
//! Domain crate: reads files only; no engine imports.

pub mod cases;
pub mod doc;
pub mod error;
#[doc(hidden)]
pub mod fixture;
pub mod html;
pub mod markdown;
pub mod png;
pub mod run;
pub mod sections;
pub mod summary;
pub mod sweep;
pub mod timing;

/// Charts and number formatting come from `nnunet-chart` (shared with the trainer's curves).
pub use nnunet_chart as svg;
pub use nnunet_chart::fmt;

pub use error::{ReportError, Result};
pub use summary::{text_summary, ChosenModel, CvScore, PlansBrief, PostprocessingBrief, ReportSummary, TestBrief};

use doc::{Document, FigureContent};
use error::io_err;
use run::RunFolder;
use std::collections::HashSet;
use std::path::Path;

/// Builds the report document of a run folder (nothing is written).
pub fn build_document(run_dir: &Path) -> Result<(Document, ReportSummary)> {
    let run = RunFolder::open(run_dir)?;
    let mut ctx = sections::Ctx::new(&run);
    let mut secs = vec![
        sections::fingerprint::build(&mut ctx),
        sections::plans::build(&mut ctx),
        sections::training::build(&mut ctx),
    ];
    let (cv, cvs) = sections::cv::build(&mut ctx);
    secs.push(cv);
    secs.push(sections::selection::build(&mut ctx));
    secs.push(sections::postprocess::build(&mut ctx));
    secs.push(sections::test_set::build(&mut ctx));
    secs.push(sections::examples::build(&mut ctx, &cvs));
    secs.push(sections::timings::build(&mut ctx));
    let mut overview = sections::overview::build(&mut ctx);
    if !ctx.summary.missing.is_empty() {
        overview.missing(format!("{} (their sections say what is absent)", ctx.summary.missing.join(", ")));
    }
    if !ctx.summary.problems.is_empty() {
        overview.problem(format!(
            "{} file(s) could not be read; see the notes in the sections",
            ctx.summary.problems.len()
        ));
    }
    secs.insert(0, overview);
    let mut subtitle = Vec::new();
    if let Some(d) = &run.info.dataset {
        subtitle.push(format!("dataset {d}"));
    }
    if let Some(p) = &run.info.pipeline {
        subtitle.push(format!("pipeline {p}"));
    }
    let mut document =
        Document { title: format!("nnU-Net run {}", run.info.run), subtitle: subtitle.join(" · "), sections: secs };
    unique_figure_names(&mut document);
    Ok((document, ctx.summary))
}

/// Makes figure file names unique (`a.svg`, `a-2.svg`, ...).
fn unique_figure_names(d: &mut Document) {
    let mut seen = HashSet::new();
    for s in &mut d.sections {
        for b in &mut s.blocks {
            if let doc::Block::Figures(fs) = b {
                for f in fs {
                    if !seen.insert(f.file.clone()) {
                        let (stem, ext) = f
                            .file
                            .rsplit_once('.')
                            .map_or((f.file.clone(), String::new()), |(a, b)| (a.to_string(), format!(".{b}")));
                        let mut k = 2;
                        while !seen.insert(format!("{stem}-{k}{ext}")) {
                            k += 1;
                        }
                        f.file = format!("{stem}-{k}{ext}");
                    }
                }
            }
        }
    }
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    nnunet_io::fsio::write_atomic(path, bytes).map_err(io_err(path))
}

/// Writes `out_dir/report.html`, `out_dir/report.md` and `out_dir/images/*` for the run in
/// `run_dir`, and returns what it found. Fails only when `run.json` is missing or unreadable,
/// or the report cannot be written; absent or malformed stage files are reported in the page.
pub fn write_report(run_dir: &Path, out_dir: &Path) -> Result<ReportSummary> {
    let (document, mut summary) = build_document(run_dir)?;
    let w = write_document(&document, out_dir)?;
    summary.html = w.html;
    summary.markdown = w.markdown;
    summary.images = w.images;
    summary.figures = w.figures;
    Ok(summary)
}

/// Where [`write_document`] put a document.
pub struct Written {
    pub html: std::path::PathBuf,
    pub markdown: std::path::PathBuf,
    pub images: std::path::PathBuf,
    pub figures: usize,
}

/// Renders `document` to `out_dir/report.html`, `out_dir/report.md` and `out_dir/images/*`
/// (figures of an earlier report in that folder that this one no longer has are removed).
pub fn write_document(document: &Document, out_dir: &Path) -> Result<Written> {
    let images = out_dir.join("images");
    std::fs::create_dir_all(&images).map_err(io_err(&images))?;
    let mut written = HashSet::new();
    for f in document.figures() {
        let bytes = match &f.content {
            FigureContent::Svg(s) => s.as_bytes(),
            FigureContent::Png(p) => p.as_slice(),
        };
        write_file(&images.join(&f.file), bytes)?;
        written.insert(f.file.clone());
    }
    if let Ok(rd) = std::fs::read_dir(&images) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.ends_with(".svg") || name.ends_with(".png")) && !written.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let md = out_dir.join("report.md");
    let html = out_dir.join("report.html");
    write_file(&md, markdown::render(document).as_bytes())?;
    write_file(&html, html::render(document).as_bytes())?;
    Ok(Written { html, markdown: md, images, figures: written.len() })
}

#[cfg(test)]
mod tests;

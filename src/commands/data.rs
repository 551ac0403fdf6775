//! `synth`, `verify`, `evaluate`, `report`.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use std::path::Path;

use super::print_json;
use crate::cli::{EvaluateArgs, SynthArgs, VerifyArgs};
use nnunet_eval::classes::LabelOrRegion;

fn triple(s: &str, what: &str) -> Result<[f64; 3]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("--{what} {s}: expected three numbers z,y,x"))?;
    match v.as_slice() {
        [a, b, c] if v.iter().all(|x| *x > 0.0 && x.is_finite()) => Ok([*a, *b, *c]),
        _ => bail!("--{what} {s}: expected three positive numbers z,y,x"),
    }
}

pub fn synth(a: SynthArgs) -> Result<()> {
    use nnunet_io::synth::{generate, Modality, SynthOptions};
    let mut o = SynthOptions::default();
    o.cases = a.cases;
    o.test_cases = a.test_cases;
    o.modality = match a.modality.to_ascii_uppercase().as_str() {
        "CT" => Modality::Ct,
        "MR" | "MRI" => Modality::Mr,
        other => bail!("--modality {other}: expected CT or MR"),
    };
    o.channels = a.channels;
    o.labels = a.labels;
    o.spacing = triple(&a.spacing, "spacing")?;
    if let Some(s) = &a.shape {
        let t = triple(s, "shape")?;
        o.shape = [t[0] as usize, t[1] as usize, t[2] as usize];
    }
    o.spacing_jitter = a.spacing_jitter;
    o.lesion_scale = a.lesion_scale;
    o.seed = a.seed;
    if let Some(n) = &a.name {
        o.name = n.clone();
    }
    let f = a.format.trim_start_matches('.').to_ascii_lowercase();
    o.file_ending = format!(".{f}");
    if nnunet_io::image::ImageFormat::from_ending(&o.file_ending).is_none() {
        bail!("--format {}: expected one of {}", a.format, nnunet_io::image::supported_endings_text());
    }
    generate(&a.out, &o).with_context(|| format!("writing the synthetic dataset to {}", a.out.display()))?;
    eprintln!("synth: wrote {} training and {} test case(s) to {}", o.cases, o.test_cases, a.out.display());
    Ok(())
}

pub fn verify(a: VerifyArgs) -> Result<()> {
    let ds = nnunet_io::dataset::open_dataset(&a.dataset)?;
    let pb = indicatif::ProgressBar::new((ds.cases.len() + ds.test_cases.len()) as u64);
    if a.json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = nnunet_io::verify::verify_dataset(&ds, &|done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    });
    pb.finish_and_clear();
    if a.json {
        print_json(&json!({
            "dataset": ds.root,
            "cases_checked": report.cases_checked,
            "problems": report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "warnings": report.warnings.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        }))?;
    } else {
        print!("{report}");
    }
    if !report.is_ok() {
        bail!("{}: {} problem(s) found", ds.root.display(), report.problems.len());
    }
    Ok(())
}

/// Labels (or regions) to score: --labels, else the dataset.json's, else every value found in
/// the references.
fn evaluation_classes(a: &EvaluateArgs) -> Result<(Vec<LabelOrRegion>, Option<i32>, String)> {
    let mut ignore = a.ignore;
    let mut ending = ".nii.gz".to_string();
    if !a.labels.is_empty() {
        return Ok((nnunet_eval::classes::labels(&a.labels), ignore, ending));
    }
    if let Some(dj) = &a.dataset_json {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dj).with_context(|| format!("cannot read {}", dj.display()))?)
                .with_context(|| format!("cannot parse {}", dj.display()))?;
        let labels = match v.get("labels") {
            Some(l) if l.as_object().is_some_and(|m| m.keys().any(|k| k.parse::<i64>().is_err())) => {
                nnunet_io::labels::Labels::from_v2_json(l, v.get("regions_class_order"))
                    .map_err(|e| anyhow!("{}: {e}", dj.display()))?
            }
            Some(l) => nnunet_io::labels::Labels::from_msd_json(l).map_err(|e| anyhow!("{}: {e}", dj.display()))?,
            None => bail!("{}: no `labels`", dj.display()),
        };
        if let Some(fe) = v.get("file_ending").and_then(|f| f.as_str()) {
            ending = fe.to_string();
        }
        ignore = ignore.or(labels.ignore);
        return Ok((nnunet_eval::classes::from_labels(&labels), ignore, ending));
    }
    // Every label value present in the references.
    let mut found = std::collections::BTreeSet::new();
    for name in nnunet_eval::folder::list_segmentations(&a.reference, &ending)? {
        let (v, _) = nnunet_eval::folder::read_segmentation(&a.reference.join(&name))?;
        found.extend(v.data.iter().copied().filter(|&x| x > 0).map(i32::from));
    }
    if let Some(i) = ignore {
        found.remove(&i);
    }
    let values: Vec<i32> = found.into_iter().collect();
    if values.is_empty() {
        bail!("no foreground label found in {}; pass --labels", a.reference.display());
    }
    Ok((nnunet_eval::classes::labels(&values), ignore, ending))
}

pub fn evaluate(a: EvaluateArgs) -> Result<()> {
    let (classes, ignore, ending) = evaluation_classes(&a)?;
    let summary = nnunet_eval::folder::evaluate_folder(&a.reference, &a.prediction, &classes, ignore, &ending)?;
    let out = match &a.output {
        Some(o) => o.clone(),
        None => {
            // Never write into a cache artifact (runs/NAME/STAGE links into cache/artifacts).
            let canon = std::fs::canonicalize(&a.prediction).unwrap_or_else(|_| a.prediction.clone());
            if canon.parent().is_some_and(|p| p.join("manifest.json").is_file()) {
                bail!(
                    "{} is a cached pipeline artifact and stays read-only; pass -o FILE for summary.json",
                    a.prediction.display()
                );
            }
            a.prediction.join("summary.json")
        }
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    summary.write_json(&out)?;
    let parquet = out.with_extension("parquet");
    summary.per_case_table().write_parquet(&parquet)?;
    if a.json {
        // nnU-Net's summary.json text (NaN as NaN), as written.
        println!("{}", summary.to_json_string());
        return Ok(());
    }
    print_summary(&summary, Path::new(&out));
    Ok(())
}

pub fn print_summary(s: &nnunet_eval::summary::Summary, out: &Path) {
    println!("{} case(s); case-averaged:", s.metric_per_case.len());
    println!("  {:<12} {:>8} {:>8}", "label", "Dice", "IoU");
    for (c, m) in s.classes.iter().zip(&s.mean) {
        println!("  {:<12} {:>8.4} {:>8.4}", c.key(), m.dice, m.iou);
    }
    println!("  {:<12} {:>8.4} {:>8.4}", "foreground", s.foreground_mean.dice, s.foreground_mean.iou);
    println!("summary: {}", out.display());
}

/// `pipeline report [RUN] [-o DIR]`.
pub fn report(a: crate::cli::ReportArgs) -> Result<()> {
    let run = super::resolve_run_dir(a.run.as_deref())?;
    let out = a.output.clone().unwrap_or_else(|| run.join("report"));
    if crate::sweep::is_sweep_dir(&run) {
        let input = nnunet_report::sweep::SweepInput::from_sweep_dir(&run)
            .with_context(|| format!("sweep {}", run.display()))?;
        let rows = nnunet_report::sweep::write_comparison(&input, &out)
            .with_context(|| format!("comparison of {}", run.display()))?;
        print_comparison(&rows, &out);
        return Ok(());
    }
    let summary = nnunet_report::write_report(&run, &out).with_context(|| format!("report of {}", run.display()))?;
    if a.json {
        return super::print_json(&summary);
    }
    print!("{}", nnunet_report::text_summary(&summary));
    Ok(())
}

/// `pipeline compare RUN... -o DIR`.
pub fn compare(a: crate::cli::CompareArgs) -> Result<()> {
    for r in &a.runs {
        if !r.join("run.json").is_file() {
            bail!("{} is not a run folder (no run.json)", r.display());
        }
    }
    let input = nnunet_report::sweep::SweepInput::from_runs(&a.runs)?;
    let rows = nnunet_report::sweep::write_comparison(&input, &a.output)?;
    print_comparison(&rows, &a.output);
    Ok(())
}

fn print_comparison(rows: &[nnunet_report::sweep::ComparisonRow], out: &std::path::Path) {
    for r in rows {
        let delta = match &r.vs_baseline {
            Some(d) => format!("  Δ {:+.4} [{:+.4}, {:+.4}] p={:.3}", d.mean, d.ci95[0], d.ci95[1], d.wilcoxon_p),
            None => "  (baseline)".to_string(),
        };
        println!("{:<28} {:<12} Dice {:.4}{delta}", r.variant, r.configuration, r.dice_mean);
    }
    println!("comparison: {}", out.join("report.html").display());
}

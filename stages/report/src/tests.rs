//! End-to-end tests of the report on a fake run (see [`crate::fixture`]): every number shown
//! is compared with the run's Parquet and JSON files.

use crate::fixture::{self, html_table, markdown_table, FakeRun};
use crate::{text_summary, write_report, ReportError};
use nnunet_eval::summary::Summary;
use nnunet_io::table::Table;
use std::collections::BTreeMap;
use std::path::Path;

struct Report {
    md: String,
    html: String,
    summary: crate::ReportSummary,
}

fn fake() -> (tempfile::TempDir, FakeRun) {
    let dir = tempfile::tempdir().unwrap();
    let run = fixture::build(dir.path()).unwrap();
    (dir, run)
}

fn report(run: &FakeRun) -> Report {
    let out = run.root.join("report");
    let summary = write_report(&run.run_dir, &out).unwrap();
    Report {
        md: std::fs::read_to_string(out.join("report.md")).unwrap(),
        html: std::fs::read_to_string(out.join("report.html")).unwrap(),
        summary,
    }
}

/// Both renderings of table `id`: Markdown text cells and HTML cells with exact values.
fn tables(r: &Report, id: &str) -> (Vec<Vec<String>>, Vec<Vec<fixture::HtmlCell>>) {
    let md = markdown_table(&r.md, id).unwrap_or_else(|| panic!("no markdown table {id}"));
    let html = html_table(&r.html, id).unwrap_or_else(|| panic!("no html table {id}"));
    assert_eq!(md.len(), html.len(), "table {id}: markdown and html row counts");
    for (m, h) in md.iter().zip(&html) {
        let texts: Vec<&str> = h.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(m, &texts, "table {id}: markdown and html show the same cells");
    }
    (md, html)
}

/// The shown text is the value rounded to the shown decimals, the exact value is `want`.
#[track_caller]
fn check(cell: &fixture::HtmlCell, want: f64) {
    if want.is_nan() {
        assert_eq!(cell.text, "NaN");
        assert!(cell.value.is_some_and(f64::is_nan), "{cell:?}");
        return;
    }
    assert_eq!(cell.value, Some(want), "exact value of {cell:?}");
    let decimals = cell.text.split_once('.').map_or(0, |(_, d)| d.len());
    let shown: f64 = cell.text.parse().unwrap_or_else(|_| panic!("not a number: {}", cell.text));
    assert!((shown - want).abs() <= 0.5 * 10f64.powi(-(decimals as i32)) + 1e-12, "{} vs {want}", cell.text);
}

fn parquet(p: &Path) -> Table {
    Table::read_parquet(p).unwrap()
}

/// `(case, class) -> Dice` of a metrics.parquet.
fn dice_by_case(t: &Table) -> BTreeMap<(String, String), f64> {
    let case = t.str("case").unwrap();
    let class = t.str("class").unwrap();
    let dice = t.f64("Dice").unwrap();
    case.iter()
        .zip(class)
        .zip(dice)
        .map(|((c, k), d)| ((c.trim_end_matches(".nii.gz").to_string(), k.clone()), *d))
        .collect()
}

/// nanmean written out independently of the crate.
fn nanmean(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if f.is_empty() {
        f64::NAN
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}

#[test]
fn every_number_matches_the_run_files() {
    let (_tmp, run) = fake();
    let r = report(&run);
    let view = |p: &str| run.run_dir.join(p);
    assert!(r.summary.problems.is_empty(), "{:?}", r.summary.problems);
    assert!(r.summary.missing.is_empty(), "{:?}", r.summary.missing);

    // Fingerprint cases.
    let fp = parquet(&view("fingerprint/cases.parquet"));
    let (_, h) = tables(&r, "fingerprint-cases");
    assert_eq!(h.len(), fp.nrows());
    for (i, row) in h.iter().enumerate() {
        assert_eq!(row[0].text, fp.str("case").unwrap()[i]);
        for a in 0..3 {
            check(&row[1 + a], fp.f64(&format!("spacing_{a}")).unwrap()[i]);
        }
        let shape: Vec<f64> = row[5].text.split(" × ").map(|s| s.parse().unwrap()).collect();
        let want: Vec<f64> = (0..3).map(|a| fp.f64(&format!("shape_after_crop_{a}")).unwrap()[i]).collect();
        assert_eq!(shape, want);
        check(&row[6], fp.f64("relative_size_after_crop").unwrap()[i]);
    }

    // Training: the last epoch of every fold.
    for cfg in &run.configurations {
        let (_, h) = tables(&r, &format!("training-{cfg}"));
        assert_eq!(h.len(), 2);
        for row in &h {
            let log = parquet(&view(&format!("train/configuration={cfg}/fold={}/log.parquet", row[0].text)));
            let last = |c: &str| *log.f64(c).unwrap().last().unwrap();
            check(&row[1], log.nrows() as f64);
            check(&row[2], last("train_loss"));
            check(&row[3], last("val_loss"));
            check(&row[4], last("mean_fg_dice"));
            check(&row[5], last("ema_fg_dice"));
            let ema = log.f64("ema_fg_dice").unwrap();
            check(&row[6], ema.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        }
    }

    // Cross-validation: per case equals metrics.parquet; per configuration equals the nnU-Net
    // merged summary the select stage wrote and an independent nanmean.
    let (_, conf) = tables(&r, "cv-configurations");
    assert_eq!(conf.len(), run.configurations.len());
    for (row, cfg) in conf.iter().zip(&run.configurations) {
        assert_eq!(&row[0].text, cfg);
        let mut per_case = BTreeMap::new();
        for f in 0..2 {
            let t = parquet(&view(&format!("train/configuration={cfg}/fold={f}/validation/metrics.parquet")));
            for ((c, k), d) in dice_by_case(&t) {
                per_case.insert((c, k, f.to_string()), d);
            }
        }
        let (_, cases) = tables(&r, &format!("cv-cases-{cfg}"));
        assert_eq!(cases.len(), 6);
        for cr in &cases {
            for (j, k) in ["1", "2"].iter().enumerate() {
                check(&cr[2 + j], per_case[&(cr[0].text.clone(), k.to_string(), cr[1].text.clone())]);
            }
        }
        let merged = Summary::read_json(&view(&format!("select/summary_{cfg}.json"))).unwrap();
        for (j, k) in ["1", "2"].iter().enumerate() {
            let v: Vec<f64> = per_case.iter().filter(|(key, _)| key.1 == *k).map(|(_, d)| *d).collect();
            assert!((nanmean(&v) - merged.mean[j].dice).abs() < 1e-12);
            check(&row[3 + j], merged.mean[j].dice);
        }
        check(&row[5], merged.foreground_dice());
        let s = r.summary.cv_configurations.iter().find(|s| &s.name == cfg).unwrap();
        assert_eq!(s.foreground_dice.to_bits(), merged.foreground_dice().to_bits());
    }

    // Selection: ranking.parquet.
    let rk = parquet(&view("select/ranking.parquet"));
    let (_, h) = tables(&r, "selection-ranking");
    assert_eq!(h.len(), rk.nrows());
    for (i, row) in h.iter().enumerate() {
        assert_eq!(row[1].text, rk.str("name").unwrap()[i]);
        check(&row[3], rk.f64("foreground_dice").unwrap()[i]);
        check(&row[4], rk.f64("dice_1").unwrap()[i]);
        check(&row[5], rk.f64("dice_2").unwrap()[i]);
    }
    let chosen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(view("select/chosen.json")).unwrap()).unwrap();
    assert_eq!(r.summary.chosen.as_ref().unwrap().name, chosen["name"].as_str().unwrap());
    assert_eq!(r.summary.ranking[0].name, rk.str("name").unwrap()[0]);

    // Post-processing.
    let d = nnunet_eval::PostprocessingDecision::read(&view("postprocess/postprocessing.json")).unwrap();
    let (_, h) = tables(&r, "postprocessing-trials");
    assert_eq!(h.len(), d.trials.len());
    for (row, t) in h.iter().zip(&d.trials) {
        assert_eq!(row[3].text, if t.accepted { "yes" } else { "no" });
        check(&row[4], t.before.foreground_mean);
        check(&row[5], t.after.foreground_mean);
    }
    assert!(!d.steps.is_empty(), "the fixture's stray blobs should be removed");
    let (_, h) = tables(&r, "postprocessing-classes");
    for row in &h {
        let k = row[0].text.split(' ').next().unwrap();
        check(&row[1], d.dice_before.per_class[k]);
        check(&row[2], d.dice_after.per_class[k]);
    }
    let pp = r.summary.postprocessing.as_ref().unwrap();
    assert_eq!((pp.dice_before, pp.dice_after), (d.dice_before.foreground_mean, d.dice_after.foreground_mean));

    // Test set.
    let s = Summary::read_json(&view("evaluate/summary.json")).unwrap();
    let (_, h) = tables(&r, "test-summary");
    assert_eq!(h.len(), s.classes.len() + 1);
    for (row, m) in h.iter().zip(s.mean.iter().chain([&s.foreground_mean])) {
        check(&row[1], m.dice);
        check(&row[2], m.iou);
        check(&row[3], m.tp);
    }
    let t = dice_by_case(&parquet(&view("evaluate/metrics.parquet")));
    let (_, h) = tables(&r, "test-cases");
    assert_eq!(h.len(), 2);
    for row in &h {
        check(&row[1], t[&(row[0].text.clone(), "1".to_string())]);
        check(&row[2], t[&(row[0].text.clone(), "2".to_string())]);
    }
    assert_eq!(r.summary.test.as_ref().unwrap().foreground_dice.to_bits(), s.foreground_dice().to_bits());
    assert_eq!(r.summary.num_predictions, 2);

    // Timings: the sum of the manifests' duration_s per stage.
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(view("run.json")).unwrap()).unwrap();
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for u in info["units"].as_array().unwrap() {
        let key = u["key"].as_str().unwrap();
        let m = run
            .cache
            .join("artifacts")
            .join(u["kind"].as_str().unwrap())
            .join(&key[..2])
            .join(key)
            .join("manifest.json");
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
        *want.entry(u["stage"].as_str().unwrap().to_string()).or_default() += m["duration_s"].as_f64().unwrap();
    }
    let (_, h) = tables(&r, "timings");
    assert_eq!(h.len(), want.len() + 1);
    for row in &h[..want.len()] {
        check(&row[6], want[&row[0].text]);
    }
    check(&h[0][1], 6.0 + 1.0); // fingerprint: six case units and the aggregate
}

#[test]
fn figures_and_page_are_self_contained() {
    let (_tmp, run) = fake();
    let r = report(&run);
    let images = &r.summary.images;
    let refs: Vec<&str> =
        r.md.match_indices("](images/").map(|(i, _)| &r.md[i + 9..]).map(|s| &s[..s.find(')').unwrap()]).collect();
    assert_eq!(refs.len(), r.summary.figures);
    assert!(refs.len() >= 10, "{refs:?}");
    for f in &refs {
        let bytes = std::fs::read(images.join(f)).unwrap();
        if f.ends_with(".png") {
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
            // Inlined as a data URI with the same bytes.
            assert!(r.html.contains(&crate::html::base64(&bytes)));
        } else {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
            assert!(r.html.contains(&svg), "{f} is inlined");
        }
    }
    let pngs = refs.iter().filter(|f| f.ends_with(".png")).count();
    assert!((1..=3).contains(&pngs), "{pngs} example slices");
    for bad in ["<script", "<link", "src=\"http", "href=\"http", "url("] {
        assert!(!r.html.contains(bad), "page contains {bad}");
    }
    // The same report twice is byte-identical.
    let again = write_report(&run.run_dir, &run.root.join("report2")).unwrap();
    assert_eq!(std::fs::read(again.html).unwrap(), r.html.as_bytes());
    // text summary
    let text = text_summary(&r.summary);
    let chosen = r.summary.chosen.as_ref().unwrap();
    assert!(text.contains(&format!("Chosen: {}", chosen.name)), "{text}");
    assert!(text.contains(&crate::fmt::score(chosen.foreground_dice)), "{text}");
    assert!(text.contains("Post-processing: keep the largest component"), "{text}");
}

#[test]
fn partial_run_says_what_is_missing() {
    let (_tmp, run) = fake();
    for s in ["select", "postprocess", "predict", "evaluate"] {
        std::fs::remove_file(run.run_dir.join(s)).unwrap();
    }
    let r = report(&run);
    assert_eq!(r.summary.missing, ["select", "postprocess", "predict", "evaluate"]);
    assert!(r.summary.problems.is_empty(), "{:?}", r.summary.problems);
    assert!(r.summary.chosen.is_none() && r.summary.ranking.is_empty());
    assert!(r.html.contains("Not in this run: the ensemble-select stage"));
    assert!(r.md.contains("**Not in this run:** the predict stage"));
    // Examples fall back to the validation predictions.
    assert!(r.md.contains("](images/example_"), "no example slices");
    let text = text_summary(&r.summary);
    assert!(text.contains("merged over folds") && text.contains("Not in this run: select"), "{text}");

    // Only run.json: still a report.
    for s in ["fingerprint", "plan", "train"] {
        let p = run.run_dir.join(s);
        if p.is_symlink() {
            std::fs::remove_file(p).unwrap()
        } else {
            std::fs::remove_dir_all(p).unwrap()
        }
    }
    let r = report(&run);
    assert_eq!(r.summary.missing, ["fingerprint", "plan", "train", "select", "postprocess", "predict", "evaluate"]);
}

#[test]
fn malformed_files_are_reported_not_fatal() {
    let (_tmp, run) = fake();
    let v = |p: &str| run.run_dir.join(p);
    std::fs::write(v("plan/plans.json"), "{\"dataset_name\": ").unwrap();
    std::fs::write(v("train/configuration=2d/fold=1/log.parquet"), b"not parquet").unwrap();
    std::fs::write(v("select/ranking.parquet"), b"PAR1").unwrap();
    std::fs::write(v("postprocess/postprocessing.json"), "[]").unwrap();
    std::fs::write(v("evaluate/summary.json"), "{}").unwrap();
    std::fs::write(v("fingerprint/dataset_fingerprint.json"), "{\"spacings\": 3}").unwrap();
    let r = report(&run);
    let p = r.summary.problems.join("\n");
    for f in [
        "plan/plans.json",
        "fold=1/log.parquet",
        "select/ranking.parquet",
        "postprocess/postprocessing.json",
        "evaluate/summary.json",
    ] {
        assert!(p.contains(f), "{f} not reported in:\n{p}");
    }
    assert!(r.html.contains("Problem: plan/plans.json"));
    // What is readable is still there: fold 0's row, the ranking from ranking.json.
    let (_, h) = tables(&r, "training-2d");
    assert_eq!(h.len(), 1);
    assert_eq!(r.summary.ranking.len(), 3);
}

#[test]
fn run_json_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let e = write_report(dir.path(), &dir.path().join("out")).unwrap_err();
    assert!(matches!(e, ReportError::NoRunJson(_)), "{e}");
    assert!(e.to_string().contains("run.json"));
    std::fs::write(dir.path().join("run.json"), "nope").unwrap();
    let e = write_report(dir.path(), &dir.path().join("out")).unwrap_err();
    assert!(e.to_string().contains("invalid JSON"), "{e}");
}

#[test]
fn timings_come_from_run_json_alone() {
    let (_tmp, run) = fake();
    let with = crate::timing::stage_timings(&crate::run::RunFolder::open(&run.run_dir).unwrap()).0;
    assert!(with.iter().all(|s| s.manifests == s.units && s.build_seconds > 0.0));
    // The cache is not read: without it, the same timings.
    std::fs::remove_dir_all(&run.cache).unwrap();
    let (without, notes) = crate::timing::stage_timings(&crate::run::RunFolder::open(&run.run_dir).unwrap());
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(with, without);
    // A run.json without build times says so.
    let p = run.run_dir.join("run.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    for u in v["units"].as_array_mut().unwrap() {
        u.as_object_mut().unwrap().remove("build_seconds");
    }
    std::fs::write(&p, v.to_string()).unwrap();
    let (old, notes) = crate::timing::stage_timings(&crate::run::RunFolder::open(&run.run_dir).unwrap());
    assert!(old.iter().all(|s| s.manifests == 0) && notes[0].contains("no build time"), "{notes:?}");
}

/// Every stage file replaced by garbage (or emptied): still a report, every file named.
#[test]
fn garbage_everywhere_never_panics() {
    for garbage in [&b"\x00\xffgarbage{["[..], &b""[..]] {
        let (_tmp, run) = fake();
        let mut stack = vec![run.run_dir.clone()];
        let mut n = 0;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()) {
                let name = e.file_name().unwrap().to_string_lossy().into_owned();
                if e.is_dir() {
                    stack.push(e);
                } else if name != "run.json" && [".json", ".parquet", ".nii.gz"].iter().any(|x| name.ends_with(x)) {
                    std::fs::write(&e, garbage).unwrap();
                    n += 1;
                }
            }
        }
        assert!(n > 40, "{n} files replaced");
        let r = report(&run);
        assert!(r.summary.problems.len() >= 10, "{:?}", r.summary.problems);
        assert!(r.summary.cv_configurations.is_empty() && r.summary.chosen.is_none() && r.summary.test.is_none());
        assert!(r.html.contains("Problem: "));
    }
}

//! End to end through the CLI: the whole pipeline to post-processing and prediction on a
//! synthetic dataset, then `pipeline export` and `pipeline predict --model` in a fresh folder,
//! which must reproduce the run's own predictions; bundles that are tampered with, truncated or
//! escape their folder are refused with a clear error.

mod common;

use common::{files, Pipe, Project};

/// All stages, two configurations, two folds, tiny networks.
fn full() -> String {
    Pipe {
        name: "m",
        configurations: "[2d, 3d_fullres]",
        folds: "[0, 1]",
        train: &[("epochs", "2"), ("iterations_per_epoch", "3")],
        downstream: true,
        ..Pipe::DEFAULT
    }
    .text()
}

/// `pipeline report` on a real run's folder: every section there, nothing missing or
/// unreadable, a build time for every stage (from run.json).
fn report_has_every_section(p: &Project, run: &str) {
    let out = p.cmd(&["report", run, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["missing"], serde_json::json!([]), "sections without data: {s}");
    assert_eq!(s["problems"], serde_json::json!([]), "unreadable files: {s}");
    for k in ["plans", "chosen", "postprocessing", "test"] {
        assert!(s[k].is_object(), "no {k} in {s}");
    }
    assert!(!s["cv_configurations"].as_array().unwrap().is_empty() && s["figures"].as_u64().unwrap() > 5, "{s}");
    let timed: Vec<&str> = s["stage_seconds"].as_array().unwrap().iter().map(|t| t[0].as_str().unwrap()).collect();
    let stages =
        ["fingerprint", "plan", "normalize", "resample", "train", "select", "postprocess", "predict", "evaluate"];
    assert_eq!(timed, stages, "build times per stage");
    let md = std::fs::read_to_string(p.path().join(run).join("report/report.md")).unwrap();
    for title in [
        "Overview",
        "Dataset fingerprint",
        "Plans",
        "Training",
        "Cross-validation",
        "Model selection",
        "Post-processing",
        "Test set",
        "Example slices",
        "Timings",
    ] {
        assert!(md.contains(&format!("\n## {title}\n")), "no section {title}");
    }
    assert!(!md.contains("**Not in this run:**") && !md.contains("**Problem:**"), "{md}");
    assert!(p.path().join(run).join("report/report.html").is_file());
}

#[test]
fn run_export_and_predict_with_the_bundle_elsewhere() {
    let p = Project::new(6, &full());
    p.synth(6, 2);
    let r = p.run(&[]);
    assert_eq!(r[0]["failed"], 0);
    let run = p.path().join("runs/m");
    // Every stage produced its artifact.
    for f in [
        "select/chosen.json",
        "select/ranking.parquet",
        "postprocess/postprocessing.json",
        "evaluate/summary.json",
        "predict/prediction.json",
        "train/configuration=2d/fold=0/validation/summary.json",
        "train/configuration=3d_fullres/fold=1/log.parquet",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let ranking: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("select/ranking.json")).unwrap()).unwrap();
    assert_eq!(ranking.as_array().unwrap().len(), 3, "2 configurations + 1 pair ensemble: {ranking}");
    let preds = files(&run.join("predict"), ".nii.gz");
    assert_eq!(preds.len(), 2, "{preds:?}");
    report_has_every_section(&p, "runs/m");

    // Export, then predict from the bundle in an unrelated folder.
    let bundle = p.path().join("model.tar");
    let out = p.cmd(&["export", "runs/m", "-o", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("model.tar");
    std::fs::copy(&bundle, &moved).unwrap();
    let images = p.path().join("data/ds/imagesTs");
    let pred_dir = elsewhere.path().join("pred");
    let out = std::process::Command::new(common::bin())
        .args([
            "predict",
            "-i",
            images.to_str().unwrap(),
            "-o",
            pred_dir.to_str().unwrap(),
            "--model",
            "model.tar",
            "--json",
        ])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(files(&pred_dir, ".nii.gz"), preds);
    for f in &preds {
        let a = std::fs::read(run.join("predict").join(f)).unwrap();
        let b = std::fs::read(pred_dir.join(f)).unwrap();
        assert!(a == b, "{f}: the bundle's prediction differs from the run's");
    }
    // Nothing but the predictions is left behind (the extracted bundle is removed).
    let left: Vec<String> =
        std::fs::read_dir(&pred_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    assert_eq!(left.len(), 2, "{left:?}");

    // `pipeline evaluate` on the run's predictions gives the evaluate stage's numbers.
    let out = p.cmd(&["evaluate", "data/ds/labelsTs", "runs/m/predict"]);
    assert!(!out.status.success(), "evaluate wrote into a cache artifact");
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    let out = p.cmd(&["evaluate", "data/ds/labelsTs", "runs/m/predict", "--json", "-o", "eval/summary.json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stage: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("evaluate/summary.json")).unwrap()).unwrap();
    assert_eq!(cli["foreground_mean"], stage["foreground_mean"]);

    // A tampered bundle is refused, naming the file.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let pos = bytes.windows(5).position(|w| w == b"\"spac").expect("plans text in the archive");
    bytes[pos + 1] = b'S';
    let bad = p.path().join("tampered.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let out = p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "bad_out", "--model", "tampered.tar"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tampered") || err.contains("does not match"), "{err}");
    // A truncated one too.
    std::fs::write(p.path().join("short.tar"), &std::fs::read(&bundle).unwrap()[..3000]).unwrap();
    let out = p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "bad_out2", "--model", "short.tar"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("short.tar"), "{}", String::from_utf8_lossy(&out.stderr));
    // Missing channel: a second-channel file name without its case's channel 0.
    let lonely = p.path().join("lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    let src = files(&images, ".nii.gz")[0].clone();
    std::fs::copy(images.join(&src), lonely.join("x_0001.nii.gz")).unwrap();
    let out = p.cmd(&["predict", "-i", "lonely", "-o", "bad_out3", "--run", "runs/m"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("case x") && err.contains("channel"), "{err}");
}

//! End to end through the CLI: a sweep of named variants (`variants:`) crossed with fixed
//! `--set` overrides — `pipeline status` shows the shared units before anything runs, the
//! variants' folders are named by what varies and grouped under the sweep's folder, and
//! `pipeline report` on the sweep writes one comparison whose table agrees with each variant's
//! own `summary.json`.

mod common;

use common::{Pipe, Project};
use serde_json::Value;

fn read(p: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[test]
fn two_variants_status_run_and_comparison() {
    let pipe = Pipe { name: "abl", configurations: "[2d]", ..Pipe::DEFAULT }.text()
        + "variants:\n  baseline: {}\n  ce_loss: {train.loss: ce}\n";
    let p = Project::new(4, &pipe);
    let fixed = ["--set", "train.iterations_per_epoch=3", "--set", "train.epochs=2"];

    // Before running: every preprocessing unit shared, training per variant.
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(&fixed);
    let out = p.cmd(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["variants"], serde_json::json!(["baseline", "ce_loss"]));
    for u in st["units"].as_array().unwrap() {
        let groups = u["shared_by"].as_array().unwrap().len();
        let want = if u["stage"] == "train" { 2 } else { 1 };
        assert_eq!(groups, want, "{u}");
    }
    let text = p.cmd(&["status", "--set", "train.epochs=2"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("2 variants") && text.contains("shared"), "{text}");

    let reports = p.run(&fixed);
    assert_eq!(reports.len(), 2);
    let sweep = p.path().join("runs/abl");
    for v in ["baseline", "ce_loss"] {
        let run = read(&sweep.join(v).join("run.json"));
        assert_eq!(run["variant_name"], v);
        // Fixed --set overrides apply to both variants but do not name them.
        let ov: Vec<String> = run["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| format!("{}={}", o["key"].as_str().unwrap(), o["value"]))
            .collect();
        assert!(ov.contains(&"train.epochs=2".to_string()), "{ov:?}");
    }
    let manifest = read(&sweep.join("sweep.json"));
    assert_eq!(manifest["baseline"], "baseline");

    let out = p.cmd(&["report", "runs/abl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cmp = read(&sweep.join("report/comparison.json"));
    let rows = cmp["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let v = row["variant"].as_str().unwrap();
        let summary = read(&sweep.join(v).join("train/configuration=2d/fold=0/validation/summary.json"));
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9,
            (a, b) => a == b, // null (NaN) on both sides
        };
        let want = summary["foreground_mean"]["Dice"].as_f64();
        assert!(close(row["dice_mean"].as_f64(), want), "{v}: {row} vs {want:?}");
        for (k, d) in row["dice_per_class"].as_array().unwrap().iter().map(|e| (e[0].clone(), e[1].clone())) {
            let k = k.as_str().unwrap();
            assert!(close(d.as_f64(), summary["mean"][k]["Dice"].as_f64()), "{v} class {k}");
        }
    }
    assert!(rows[0]["vs_baseline"].is_null());
    assert_eq!(rows[1]["vs_baseline"]["paired_cases"], rows[1]["cases"]);
    let html = std::fs::read_to_string(sweep.join("report/report.html")).unwrap();
    assert!(html.contains("sweep-table") && html.contains("Learning curves") && html.contains("Shared units"));
    // The same page from the two run folders given one by one.
    let out = p.cmd(&["compare", "runs/abl/baseline", "runs/abl/ce_loss", "-o", "cmp"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = read(&p.path().join("cmp/comparison.json"));
    assert_eq!(again["rows"][1]["dice_mean"], rows[1]["dice_mean"]);
}

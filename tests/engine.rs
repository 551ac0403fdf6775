//! End-to-end tests of the engine through the CLI: caching, invalidation, sweeps, crash safety,
//! concurrency and bad input.

mod common;

use common::{artifacts, pipeline, preprocess_only, stage_of, units_with, Pipe, Project};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stages(units: &[String]) -> BTreeSet<String> {
    units.iter().map(|u| stage_of(u).to_string()).collect()
}

#[test]
fn second_run_recomputes_nothing_and_param_change_recomputes_only_training() {
    let p = Project::new(5, &pipeline());
    let r1 = p.run(&[]);
    assert_eq!(r1[0]["failed"], 0);
    assert!(r1[0]["built"].as_u64().unwrap() > 10);
    let r2 = p.run(&[]);
    assert_eq!(r2[0]["built"], 0, "second run built: {:?}", units_with(&r2[0], "built"));
    assert_eq!(r2[0]["cached"], r1[0]["built"]);

    // The outputs view links to the artifacts.
    assert!(p.path().join("runs/t/plan/plans.json").is_file());
    assert!(p.path().join("runs/t/train/configuration=3d_fullres/fold=0").exists());

    // A training param: only training recomputes.
    let r3 = p.run(&["--set", "train.iterations_per_epoch=3"]);
    let built = units_with(&r3[0], "built");
    assert_eq!(stages(&built), BTreeSet::from(["train".to_string()]), "built: {built:?}");

    // status --why names the changed param.
    let out = p.cmd(&["status", "--why", "--set", "train.iterations_per_epoch=4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("param iterations_per_epoch: 3 -> 4"), "status --why:\n{text}");

    // Params that do not change the output (worker threads, checkpoint cadence) are not in the
    // key: changing them leaves training fresh, and a run builds nothing.
    let same = ["--set", "train.iterations_per_epoch=3", "--set", "train.workers=2", "--set", "train.save_every=3"];
    let out = p.cmd(&[&["status", "--why"][..], &same[..]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let train = text.lines().find(|l| l.starts_with("train ")).unwrap_or_default();
    assert_eq!(train.split_whitespace().collect::<Vec<_>>(), ["train", "1", "fresh"], "status --why:\n{text}");
    assert!(!text.contains("workers") && !text.contains("save_every"), "status --why:\n{text}");
    let r4 = p.run(&same);
    assert_eq!(r4[0]["built"], 0, "built: {:?}", units_with(&r4[0], "built"));

    // Piped (stderr is not a terminal), a run prints one line per finished stage, as cargo
    // does, and a training fold's line carries its epochs and pseudo-Dice.
    let out = p.cmd(&["run", "-j", "2", "--set", "train.iterations_per_epoch=5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().map(str::trim_start).collect();
    assert!(lines.contains(&"Finished fingerprint: 6 cached"), "{err}");
    assert!(
        lines.iter().any(|l| l.starts_with("Finished train: 1 built in ") && l.contains("(1 epoch, pseudo-Dice ")),
        "{err}"
    );
}

#[test]
fn adding_a_case_recomputes_only_that_case_and_aggregates() {
    // Preprocessing only (the train stage is irrelevant here).
    // MR (z-score needs no dataset statistics) and one spacing for all cases, so the plan's
    // normalization and target spacing stay the same when a case is added. With CT data every
    // case would legitimately renormalize: the foreground intensity statistics change. The seed
    // is one whose sixth case leaves the median cropped shape, hence the patch size, unchanged
    // (with seed 11 it moves the median from 20 to 20.5 slices and the patch from 20 to 24).
    let p = Project::new(5, &preprocess_only());
    let mr = ["--modality", "MR", "--spacing-jitter", "0", "--seed", "2"];
    p.synth_with(5, 0, &mr);
    p.run(&[]);
    // Add a sixth case: same generator, next seed's case, renamed.
    let ds = p.path().join("data/ds");
    let extra = p.path().join("extra");
    let out = p.cmd(&[
        "synth",
        "extra",
        "--cases",
        "6",
        "--shape",
        "8,28,28",
        "--spacing",
        "3.0,1.0,1.0",
        "--seed",
        "2",
        "--modality",
        "MR",
        "--spacing-jitter",
        "0",
    ]);
    assert!(out.status.success());
    let newest = std::fs::read_dir(extra.join("labelsTr"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .max()
        .unwrap();
    let id = newest.trim_end_matches(".nii.gz").to_string();
    for e in std::fs::read_dir(extra.join("imagesTr")).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with(&format!("{id}_")) {
            std::fs::copy(e.path(), ds.join("imagesTr").join(&n)).unwrap();
        }
    }
    std::fs::copy(extra.join("labelsTr").join(&newest), ds.join("labelsTr").join(&newest)).unwrap();
    let mut dj: serde_json::Value = serde_json::from_slice(&std::fs::read(ds.join("dataset.json")).unwrap()).unwrap();
    dj["numTraining"] = serde_json::json!(6);
    std::fs::write(ds.join("dataset.json"), serde_json::to_vec_pretty(&dj).unwrap()).unwrap();

    let r = p.run(&[]);
    let built = units_with(&r[0], "built");
    for u in &built {
        let per_case = u.contains("case=");
        assert!(!per_case || u.contains(&format!("case={id}")), "an old case was recomputed: {u} (built: {built:?})");
    }
    assert!(built.iter().any(|u| u.contains(&format!("case={id}"))), "the new case was not processed: {built:?}");
    assert!(built.iter().any(|u| u == "fingerprint"), "fingerprint aggregate not rebuilt: {built:?}");
    assert!(built.iter().any(|u| u.starts_with("resample[") && !u.contains("case=")), "store not rebuilt: {built:?}");
}

#[test]
fn sweep_shares_preprocessing() {
    let p = Project::new(4, &pipeline());
    let reports = p.run(&["--set", "train.seed=1,2"]);
    assert_eq!(reports.len(), 2);
    let built0 = units_with(&reports[0], "built");
    let built1 = units_with(&reports[1], "built");
    assert!(built0.iter().any(|u| u.starts_with("resample")));
    assert_eq!(stages(&built1), BTreeSet::from(["train".to_string()]), "second variant rebuilt: {built1:?}");
    // Variants are grouped under the sweep's folder and named by what varies.
    assert!(p.path().join("runs/t/train.seed=1/run.json").is_file());
    assert!(p.path().join("runs/t/train.seed=2/run.json").is_file());
    assert!(p.path().join("runs/t/sweep.json").is_file());
}

#[test]
fn kill_during_run_then_rerun_gives_the_same_artifacts() {
    // Reference: an uninterrupted run.
    let pre = preprocess_only();
    let a = Project::new(6, &pre);
    a.run(&[]);
    let want = artifacts(&a.path().join("cache"));

    let b = Project::new(6, &pre);
    let mut child = b.spawn(&["run", "-j", "1"], Stdio::null(), Stdio::null());
    // Kill -9 once some (not all) preprocessing artifacts exist.
    let t0 = Instant::now();
    loop {
        let n = artifacts(&b.path().join("cache")).len();
        if n >= 4 || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let partial = artifacts(&b.path().join("cache"));
    assert!(partial.len() < want.len(), "the run finished before it could be killed");
    // Every artifact present after the kill is complete (manifest parses, keys match).
    for x in &partial {
        assert!(want.contains(x), "artifact after kill differs from the reference: {x:?}");
    }
    b.run(&[]);
    assert_eq!(artifacts(&b.path().join("cache")), want);
    // No leftovers in tmp after the rerun.
    assert_eq!(std::fs::read_dir(b.path().join("cache/tmp")).unwrap().count(), 0);
}

#[test]
fn concurrent_runs_do_not_corrupt_the_cache() {
    let pre = preprocess_only();
    let p = Project::new(5, &pre);
    // Cases big enough that the first run still holds the lock when the second starts.
    p.synth_with(10, 0, &["--shape", "24,96,96"]);
    let spawn = || p.spawn(&["run", "--json", "-j", "1"], Stdio::piped(), Stdio::piped());
    let c1 = spawn();
    let c2 = spawn();
    let o1 = c1.wait_with_output().unwrap();
    let o2 = c2.wait_with_output().unwrap();
    assert!(o1.status.success(), "{}", String::from_utf8_lossy(&o1.stderr));
    assert!(o2.status.success(), "{}", String::from_utf8_lossy(&o2.stderr));
    let r1: serde_json::Value = serde_json::from_slice(&o1.stdout).unwrap();
    let r2: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
    // One of them did the work; the other waited for the lock and found everything cached.
    let built = r1[0]["built"].as_u64().unwrap() + r2[0]["built"].as_u64().unwrap();
    let total = r1[0]["units"].as_array().unwrap().len() as u64;
    assert_eq!(built, total, "units were built twice or not at all");
    let waited = String::from_utf8_lossy(&o1.stderr).contains("waiting for another")
        || String::from_utf8_lossy(&o2.stderr).contains("waiting for another");
    assert!(waited, "neither run reported waiting for the lock");

    // While another process holds the lock (this test, until it lets go), --no-wait refuses
    // clearly and a plain run waits; it goes ahead once the lock is released.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p.path().join("cache/LOCK"))
        .unwrap();
    lock.lock().unwrap();
    let refused = p.cmd(&["run", "--no-wait"]);
    assert!(!refused.status.success(), "--no-wait ran while the lock was held");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds the cache lock"));
    let mut waiter = p.spawn(&["run", "--json"], Stdio::piped(), Stdio::piped());
    std::thread::sleep(Duration::from_millis(500));
    assert!(waiter.try_wait().unwrap().is_none(), "the run did not wait for the lock");
    drop(lock);
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting for another"));
}

#[test]
fn unknown_keys_and_bad_values_report_line_and_column() {
    let p = Project::new(2, &pipeline().replace("      epochs: 1", "      epochz: 1"));
    let out = p.cmd(&["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 28") && err.contains("epochz") && err.contains("did you mean 'epochs'"), "{err}");
    std::fs::write(p.path().join("pipeline.yaml"), pipeline().replace("      batch_size: 2", "      batch_size: -3"))
        .unwrap();
    let out = p.cmd(&["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batch_size") && err.contains("line 31"), "{err}");
    std::fs::write(p.path().join("pipeline.yaml"), pipeline().replace("uses: plan", "uses: plna")).unwrap();
    let out = p.cmd(&["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown stage kind 'plna'") && err.contains("did you mean 'plan'"), "{err}");
    std::fs::write(p.path().join("pipeline.yaml"), pipeline().replace("stages:", "stagez:")).unwrap();
    let out = p.cmd(&["run"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stagez"));
    // Nothing was written for any of these.
    assert!(!p.path().join("cache/artifacts").exists() || artifacts(&p.path().join("cache")).is_empty());
}

#[test]
fn dag_status_show_and_gc() {
    let p = Project::new(3, &pipeline());
    let dot = p.cmd(&["dag", "--dot"]);
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert!(dot.contains("\"plan\" -> \"normalize\""), "{dot}");
    let st = p.cmd(&["status"]);
    assert!(String::from_utf8_lossy(&st.stdout).contains("3 missing"));
    p.run(&["--until", "plan"]);
    let show = p.cmd(&["show", "plan", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v[0]["status"], "fresh");
    assert!(v[0]["manifest"]["files"]["plans.json"].is_object());
    // A param change makes the old plan unreachable: gc removes exactly it.
    p.run(&["--until", "plan", "--set", "plan.gpu_memory_gb=11"]);
    let n_before = artifacts(&p.path().join("cache")).len();
    let gc = p.cmd(&["gc", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(artifacts(&p.path().join("cache")).len(), n_before - 1);
}

#[test]
fn killed_training_resumes_from_its_latest_checkpoint() {
    let text = Pipe {
        train: &[("epochs", "12"), ("iterations_per_epoch", "3"), ("validate", "false"), ("save_every", "1")],
        ..Pipe::DEFAULT
    }
    .text();
    let p = Project::new(4, &text);
    let mut child = p.spawn(&["run", "-j", "2"], Stdio::null(), Stdio::null());
    // Wait for a resumable checkpoint of epoch >= 2 in the training work folder, then kill -9.
    let t0 = Instant::now();
    let mut killed_at = None;
    while t0.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let work = p.path().join("cache/work");
        for w in std::fs::read_dir(&work).into_iter().flatten().flatten() {
            let meta = w.path().join("out/checkpoint_latest/meta.json");
            if let Ok(bytes) = std::fs::read(&meta) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    if v["epoch"].as_u64().is_some_and(|e| e >= 2) {
                        killed_at = v["epoch"].as_u64();
                    }
                }
            }
        }
        if killed_at.is_some() {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    let killed_at = killed_at.expect("training finished before a checkpoint could be seen");
    let r = p.run(&[]);
    assert_eq!(r[0]["failed"], 0);
    let attempts: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path().join("runs/t/train/configuration=3d_fullres/fold=0/attempts.json")).unwrap(),
    )
    .unwrap();
    let a = attempts.as_array().unwrap();
    assert_eq!(a.len(), 2, "{attempts}");
    assert_eq!(a[0]["start_epoch"], 0);
    let resumed = a[1]["start_epoch"].as_u64().unwrap();
    assert!(resumed >= killed_at, "resumed at epoch {resumed}, a checkpoint of epoch {killed_at} existed");
    // The log covers every epoch once.
    let log: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path().join("runs/t/train/configuration=3d_fullres/fold=0/log.json")).unwrap(),
    )
    .unwrap();
    let epochs: Vec<u64> = log.as_array().unwrap().iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, (0..12).collect::<Vec<u64>>());
}

/// libtorch's CUDA part is not linked but loaded at run time (pipeline-torch's device.rs): in a
/// fresh process (`pipeline` hands `device` over to `pipeline-torch`) it must load from the
/// torch wheel and register CUDA with libtorch.
#[test]
fn cuda_backend_loads_at_run_time() {
    let out = Command::new(common::bin()).args(["device", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if v["cuda_backend_loaded"] != true {
        eprintln!("SKIP: this libtorch has no loadable CUDA backend: {}", v["cuda_backend_error"]);
        return;
    }
    assert_eq!(v["cuda_registered"], true, "{v}");
    if v["cuda_available"] == false {
        assert_eq!(v["auto"], "cpu", "{v}");
    }
}

/// The engine binary does not link libtorch (src/torch.rs); `pipeline-torch`, next to it, does.
/// A libtorch command hands over to it, and without it the error names the missing file.
#[test]
fn engine_binary_does_not_link_libtorch_and_hands_over() {
    let has = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let engine = std::fs::read(common::bin()).unwrap();
    let torch_bin = common::bin().with_file_name("pipeline-torch");
    let torch = std::fs::read(&torch_bin).unwrap_or_else(|e| panic!("{}: {e}", torch_bin.display()));
    assert!(!has(&engine, b"libtorch_cpu.so"), "the engine binary links libtorch");
    assert!(has(&torch, b"libtorch_cpu.so"), "pipeline-torch does not link libtorch");

    // Alone in a folder, the engine still runs its own commands and names what is missing.
    let d = tempfile::tempdir().unwrap();
    let lone = d.path().join("pipeline");
    std::fs::copy(common::bin(), &lone).unwrap();
    let out = Command::new(&lone).args(["--version"]).output().unwrap();
    assert!(out.status.success());
    let out = Command::new(&lone).args(["device", "--json"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pipeline-torch") && err.contains("missing"), "{err}");
}

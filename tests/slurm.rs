//! The Slurm executor against a real single-node cluster (started by `scripts/slurm-up.sh`,
//! which `.ci/run` runs). Each test prints SKIP and passes when no cluster answers, except under
//! `CI=true`, where it fails.

mod common;

use common::{artifacts, preprocess_only, Pipe, Project};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether a cluster answers; without one a test skips, except under `CI=true`, where it fails.
fn cluster_up() -> bool {
    let ok = Command::new("sinfo").arg("-h").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        nnunet_io::testing::skip("no Slurm cluster answers `sinfo` (run scripts/slurm-up.sh as root)");
    }
    ok
}

/// Slurm jobs must see the cache: keep test projects off node-local /tmp.
fn project(cases: usize, pipeline: &str) -> Project {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    let p = Project { dir };
    p.synth(cases, 0);
    std::fs::write(p.path().join("pipeline.yaml"), pipeline).unwrap();
    p
}

fn pipe() -> String {
    Pipe {
        name: "s",
        top: "slurm:\n  partition: debug\n  poll_seconds: 0.5\n  per_kind:\n    train-fold:\n      partition: gpu\n",
        folds: "[0, 1]",
        train: &[("epochs", "2"), ("validate", "false"), ("save_every", "1")],
        ..Pipe::DEFAULT
    }
    .text()
}

fn slurm_run(p: &Project, extra: &[&str]) -> (bool, Vec<Value>, String) {
    let mut args = vec!["run", "--executor", "slurm", "--json"];
    args.extend_from_slice(extra);
    let out = p.cmd(&args);
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out.status.success(), v, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn slurm_runs_the_pipeline_like_local_and_reruns_nothing() {
    if !cluster_up() {
        return;
    }
    let p = project(4, &pipe());
    let (ok, subs, err) = slurm_run(&p, &[]);
    assert!(ok, "slurm run failed: {err}");
    let jobs = subs[0]["jobs"].as_array().unwrap();
    // Training items are separate jobs (one per fold) on the gpu partition.
    let train_jobs: Vec<&Value> = jobs.iter().filter(|j| j["stage"] == "train").collect();
    assert_eq!(train_jobs.len(), 2, "{jobs:?}");
    // Per-case preprocessing ran as arrays.
    assert!(jobs.iter().any(|j| j["stage"] == "normalize" && j["units"].as_array().unwrap().len() == 4));

    // Same keys and same data artifacts bit-for-bit as the local executor.
    let q = project(4, &pipe());
    q.run(&[]);
    let mine = artifacts(&p.path().join("cache"));
    let local = artifacts(&q.path().join("cache"));
    let keys =
        |v: &[(String, String, String)]| v.iter().map(|(k, key, _)| (k.clone(), key.clone())).collect::<Vec<_>>();
    assert_eq!(keys(&mine), keys(&local), "different keys between slurm and local");
    for ((k, key, d1), (_, _, d2)) in mine.iter().zip(&local) {
        if k != "train-fold" {
            assert_eq!(d1, d2, "{k} {key}: slurm and local artifacts differ");
        }
    }
    // The outputs view exists, and run.json is a local run's: `pipeline report` names every
    // stage with its build time.
    assert!(p.path().join("runs/s/plan/plans.json").is_file());
    let out = p.cmd(&["report", "runs/s", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let timed: Vec<&str> = s["stage_seconds"].as_array().unwrap().iter().map(|t| t[0].as_str().unwrap()).collect();
    assert_eq!(timed, ["fingerprint", "plan", "normalize", "resample", "train"], "{s}");

    // A rerun submits nothing.
    let (ok, subs, err) = slurm_run(&p, &[]);
    assert!(ok, "{err}");
    assert_eq!(subs[0]["jobs"].as_array().unwrap().len(), 0);
}

#[test]
fn cancelled_training_job_resumes_and_failures_cancel_dependants() {
    if !cluster_up() {
        return;
    }
    let p = project(4, &pipe().replace("epochs: 2", "epochs: 40").replace("folds: [0, 1]", "folds: [0]"));
    // Submit detached, wait for the training job to write a checkpoint, then cancel it.
    let (ok, subs, err) = slurm_run(&p, &["--detach"]);
    assert!(ok, "{err}");
    let train_id = subs[0]["jobs"].as_array().unwrap().iter().find(|j| j["stage"] == "train").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let work = p.path().join("cache/work");
    let t0 = Instant::now();
    let latest = loop {
        let found = std::fs::read_dir(&work)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("out/checkpoint_latest"))
            .find(|c| c.is_dir());
        if let Some(f) = found {
            break f;
        }
        assert!(t0.elapsed() < Duration::from_secs(240), "training never wrote checkpoint_latest");
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = Command::new("scancel").arg(&train_id).output().unwrap();
    assert!(out.status.success());
    // Wait until Slurm lets go of it.
    let t0 = Instant::now();
    while Command::new("squeue").args(["-h", "-j", &train_id]).output().map(|o| !o.stdout.is_empty()).unwrap_or(false) {
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(200));
    }
    let meta: Value = serde_json::from_slice(&std::fs::read(latest.join("meta.json")).unwrap()).unwrap();
    let epoch_at_cancel = meta["epoch"].as_u64().unwrap();
    assert!(epoch_at_cancel < 40);
    let (ok, _, err) = slurm_run(&p, &[]);
    assert!(ok, "{err}");
    let hist: Value = serde_json::from_slice(
        &std::fs::read(p.path().join("runs/s/train/configuration=3d_fullres/fold=0/attempts.json")).unwrap(),
    )
    .unwrap();
    let starts: Vec<u64> = hist.as_array().unwrap().iter().map(|a| a["start_epoch"].as_u64().unwrap()).collect();
    assert!(starts.len() >= 2 && *starts.last().unwrap() > 0, "training did not resume: {hist}");

    // A failing job: its dependants are cancelled, and the error names the job and its log.
    let f = project(3, &pipe().replace("num_folds: 2", "num_folds: 9"));
    let (ok, _, err) = slurm_run(&f, &[]);
    assert!(!ok);
    assert!(err.contains("job") && err.contains("plan") && err.contains("log"), "{err}");
    assert!(err.contains("dependants were cancelled"), "{err}");
}

#[test]
fn misconfiguration_is_reported_before_submitting() {
    if !cluster_up() {
        return;
    }
    let p = project(2, &pipe().replace("partition: debug", "partition: nosuchpart"));
    let (ok, _, err) = slurm_run(&p, &[]);
    assert!(!ok);
    assert!(err.contains("unknown Slurm partition 'nosuchpart'"), "{err}");
    assert!(!p.path().join("cache/slurm").exists(), "something was submitted");

    let q = project(2, &pipe());
    let out = Command::new(common::bin())
        .args(["run", "--executor", "slurm"])
        .current_dir(q.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`sbatch` is not on PATH"));

    let r = project(2, &pipe().replace("cache: cache", "cache: /tmp/nnunet-slurm-test-cache"));
    let (ok, _, err) = slurm_run(&r, &[]);
    assert!(!ok);
    assert!(err.contains("node-local"), "{err}");
}

/// Stand-ins for the Slurm client tools in `dir`, first on PATH: `sbatch` runs the job script at
/// once (each array task in order) and prints job ids 101, 102, ...; with a file `empty_at`
/// holding N, the N-th call prints nothing instead. `squeue`/`scontrol` know no jobs (all
/// finished), `scancel` logs its arguments to `scancel.log`.
fn fake_slurm(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let tools = [
        (
            "sbatch",
            r#"d="$(dirname "$0")"; n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 )); echo $n > "$d/count"
echo "$@" >> "$d/sbatch.log"
if [ "$(cat "$d/empty_at" 2>/dev/null)" = "$n" ]; then exit 0; fi
script="${@: -1}"; last=0
for a in "$@"; do case "$a" in --array=0-*) last="${a#--array=0-}";; esac; done
for i in $(seq 0 "$last"); do SLURM_ARRAY_TASK_ID=$i bash "$script" >> "$d/jobs.out" 2>&1 || exit 1; done
echo $((100 + n))"#,
        ),
        ("squeue", "exit 0"),
        ("scontrol", "exit 0"),
        ("scancel", r#"echo "$@" >> "$(dirname "$0")/scancel.log""#),
        ("sinfo", "printf 'debug\\ngpu\\n'"),
    ];
    for (name, body) in tools {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/usr/bin/env bash\nset -u\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

fn fake_slurm_run(p: &Project, path: &str, extra: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .args([&["run", "--executor", "slurm"][..], extra].concat())
        .current_dir(p.path())
        .env("PATH", path)
        .output()
        .unwrap()
}

/// Without a cluster: a Slurm run publishes run.json like a local run (units, outcomes, build
/// times), and `pipeline report` reads it.
#[test]
fn slurm_run_publishes_run_json_and_report_reads_it() {
    let p = project(3, &preprocess_only());
    let path = fake_slurm(&p.path().join("fakebin"));
    let out = fake_slurm_run(&p, &path, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: Value = serde_json::from_slice(&std::fs::read(p.path().join("runs/t/run.json")).unwrap()).unwrap();
    let units = run["units"].as_array().unwrap();
    assert_eq!(units.len(), 3 + 1 + 1 + 3 + 3 + 1, "{run}");
    assert!(units.iter().all(|u| u["outcome"] == "built" && u["build_seconds"].as_f64().is_some()), "{run}");
    assert_eq!(run["built"], units.len());
    let out = p.cmd(&["report", "runs/t", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let timed: Vec<&str> = s["stage_seconds"].as_array().unwrap().iter().map(|t| t[0].as_str().unwrap()).collect();
    assert_eq!(timed, ["fingerprint", "plan", "normalize", "resample"]);
    assert_eq!(s["problems"], serde_json::json!([]), "{s}");
    // Everything cached: nothing submitted, run.json says cached.
    let out = fake_slurm_run(&p, &path, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: Value = serde_json::from_slice(&std::fs::read(p.path().join("runs/t/run.json")).unwrap()).unwrap();
    assert_eq!((run["built"].as_u64(), run["cached"].as_u64()), (Some(0), Some(12)), "{run}");
}

/// sbatch printing no job id is a failed submission: the jobs already queued are cancelled.
#[test]
fn an_empty_job_id_cancels_what_was_queued() {
    let p = project(2, &preprocess_only());
    let bin = p.path().join("fakebin");
    let path = fake_slurm(&bin);
    std::fs::write(bin.join("empty_at"), "3").unwrap();
    let out = fake_slurm_run(&p, &path, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sbatch printed no job id") && err.contains("submitting plan"), "{err}");
    assert!(err.contains("2 job(s) already queued were cancelled"), "{err}");
    assert_eq!(std::fs::read_to_string(bin.join("scancel.log")).unwrap().trim(), "101 102");
}

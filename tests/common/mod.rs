//! Helpers for the end-to-end tests: a scratch project with a synthetic dataset and a pipeline
//! file, and a way to run the `pipeline` binary and read its JSON report.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pipeline"))
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

/// The test pipeline: tiny synthetic CT data, tiny networks, a couple of iterations. `top` goes
/// after `device:` (e.g. a `slurm:` block), `train` overrides or extends the train stage's
/// `with:` keys, and `downstream` adds ensemble-select, postprocess, predict and evaluate.
pub struct Pipe<'a> {
    pub name: &'a str,
    pub top: &'a str,
    pub configurations: &'a str,
    pub folds: &'a str,
    pub train: &'a [(&'a str, &'a str)],
    pub downstream: bool,
}

impl Pipe<'_> {
    pub const DEFAULT: Pipe<'static> =
        Pipe { name: "t", top: "", configurations: "[3d_fullres]", folds: "[0]", train: &[], downstream: false };

    pub fn text(&self) -> String {
        let mut with: Vec<(&str, &str)> = vec![
            ("epochs", "1"),
            ("iterations_per_epoch", "2"),
            ("val_iterations", "1"),
            ("batch_size", "2"),
            ("features_cap", "8"),
            ("workers", "1"),
        ];
        for &(k, v) in self.train {
            match with.iter_mut().find(|(key, _)| *key == k) {
                Some(e) => e.1 = v,
                None => with.push((k, v)),
            }
        }
        let mut s = format!(
            "name: {}\ndataset: data/ds\ncache: cache\noutputs: runs\ndevice: cpu\n{}params:\n  seed: 0\n  \
             configurations: {}\n  folds: {}\nstages:\n  fingerprint:\n    uses: fingerprint\n  plan:\n    \
             uses: plan\n    needs: [fingerprint]\n    with:\n      num_folds: 2\n  normalize:\n    uses: normalize\n    \
             needs: [plan]\n  resample:\n    uses: resample\n    needs: [normalize]\n  train:\n    uses: train-fold\n    \
             needs: [resample]\n    with:\n",
            self.name, self.top, self.configurations, self.folds
        );
        for (k, v) in with {
            s += &format!("      {k}: {v}\n");
        }
        if self.downstream {
            s +=
                "  select:\n    uses: ensemble-select\n    needs: [train]\n  postprocess:\n    uses: postprocess\n    \
                  needs: [select]\n  predict:\n    uses: predict\n    needs: [postprocess]\n  evaluate:\n    \
                  uses: evaluate\n    needs: [predict]\n";
        }
        s
    }
}

/// The default small pipeline (preprocessing and one training fold, no validation export).
pub fn pipeline() -> String {
    Pipe { train: &[("validate", "false")], ..Pipe::DEFAULT }.text()
}

/// [`pipeline`] without training: preprocessing stages only (and no training params).
pub fn preprocess_only() -> String {
    let p = pipeline();
    let pre = &p[..p.find("  train:").expect("train stage")];
    pre.replace("  seed: 0\n", "").replace("  folds: [0]\n", "")
}

impl Project {
    /// A project with `cases` synthetic cases (seeded) and the given pipeline text.
    pub fn new(cases: usize, pipeline: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Project { dir };
        p.synth(cases, 0);
        std::fs::write(p.path().join("pipeline.yaml"), pipeline).expect("write pipeline");
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn synth(&self, cases: usize, test_cases: usize) {
        self.synth_with(cases, test_cases, &[]);
    }

    /// Regenerates `data/ds` with extra `pipeline synth` flags.
    pub fn synth_with(&self, cases: usize, test_cases: usize, extra: &[&str]) {
        let _ = std::fs::remove_dir_all(self.path().join("data/ds"));
        let (cases, test_cases) = (cases.to_string(), test_cases.to_string());
        let mut args = vec![
            "synth",
            "data/ds",
            "--cases",
            &cases,
            "--test-cases",
            &test_cases,
            "--shape",
            "8,28,28",
            "--spacing",
            "3.0,1.0,1.0",
            "--seed",
            "11",
        ];
        // Flags given in `extra` replace the defaults above.
        for flag in ["--shape", "--spacing", "--seed"] {
            if extra.contains(&flag) {
                if let Some(i) = args.iter().position(|a| *a == flag) {
                    args.drain(i..i + 2);
                }
            }
        }
        args.extend_from_slice(extra);
        let out = self.cmd(&args);
        assert!(out.status.success(), "synth failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts `pipeline ARGS` in the project without waiting (for kill and concurrency tests).
    pub fn spawn(&self, args: &[&str], stdout: Stdio, stderr: Stdio) -> Child {
        Command::new(bin()).args(args).current_dir(self.path()).stdout(stdout).stderr(stderr).spawn().expect("spawn")
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .current_dir(self.path())
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run pipeline")
    }

    /// `pipeline run --json` with extra args; returns the reports (one per variant).
    pub fn run(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["run", "--json", "-j", "2"];
        args.extend_from_slice(extra);
        let out = self.cmd(&args);
        assert!(
            out.status.success(),
            "pipeline run {:?} failed:\nstderr:\n{}\nstdout:\n{}",
            extra,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).expect("json report")
    }
}

/// Units of a report with the given outcome, as "unit" strings.
pub fn units_with(report: &Value, outcome: &str) -> Vec<String> {
    report["units"]
        .as_array()
        .expect("units")
        .iter()
        .filter(|u| u["outcome"] == outcome)
        .map(|u| u["unit"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Stage name of a unit string (`train[...]` -> `train`).
pub fn stage_of(unit: &str) -> &str {
    unit.split('[').next().unwrap_or(unit)
}

/// Every committed artifact under a cache: (kind, key, digest).
pub fn artifacts(cache: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let root = cache.join("artifacts");
    let Ok(kinds) = std::fs::read_dir(&root) else { return out };
    for k in kinds.flatten() {
        for pre in std::fs::read_dir(k.path()).into_iter().flatten().flatten() {
            for a in std::fs::read_dir(pre.path()).into_iter().flatten().flatten() {
                let m: Value =
                    serde_json::from_slice(&std::fs::read(a.path().join("manifest.json")).expect("manifest"))
                        .expect("json");
                out.push((
                    k.file_name().to_string_lossy().to_string(),
                    m["key"].as_str().unwrap_or("").to_string(),
                    m["digest"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Sorted names of the files in `dir` ending in `ending`.
pub fn files(dir: &Path, ending: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(ending))
        .collect();
    v.sort();
    v
}

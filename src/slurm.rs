//! The Slurm executor: the same unit graph, run as cluster jobs against a shared cache.
//!
//! Every stale unit becomes a job that runs `pipeline exec-unit` (the same code path as the
//! local executor, so keys and artifacts are identical); per-case units of one stage item form a
//! job array; edges become `--dependency=afterok` with `--kill-on-invalid-dep=yes`, so the
//! dependants of a failed job are cancelled instead of pending forever. Keys of downstream units
//! are computed inside their jobs, once upstream artifacts exist (early cutoff still applies).
//! Training jobs resume from their persistent work dir when resubmitted after a cancel.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::config::{PipelineSpec, SlurmKindSettings, SlurmSettings};
use crate::fsutil::write_atomic;
use crate::kind::Fanout;
use crate::session::{Session, UnitState};

/// One submitted job (or array).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub name: String,
    /// Units this job builds (one, or one per array task in task order).
    pub units: Vec<String>,
    pub stage: String,
    pub log: String,
    pub depends_on: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Submission {
    pub run: String,
    pub pipeline: PathBuf,
    pub submitted: String,
    pub jobs: Vec<Job>,
}

fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file())
}

fn run_cmd(cmd: &mut Command) -> Result<String> {
    let dbg = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {dbg}"))?;
    if !out.status.success() {
        bail!("{dbg} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Resolved sbatch settings for a stage kind.
fn settings_for(s: &SlurmSettings, kind: &str) -> SlurmKindSettings {
    let k = s.per_kind.get(kind).cloned().unwrap_or_default();
    SlurmKindSettings {
        partition: k.partition.or_else(|| s.partition.clone()),
        account: k.account.or_else(|| s.account.clone()),
        time: k.time.or_else(|| s.time.clone()),
        mem: k.mem.or_else(|| s.mem.clone()),
        cpus: k.cpus,
        gpus: k.gpus,
        extra: s.extra.iter().chain(k.extra.iter()).cloned().collect(),
    }
}

/// Checks everything that can be checked before submitting anything.
pub fn preflight(spec: &PipelineSpec, cache_root: &Path) -> Result<()> {
    for c in ["sbatch", "squeue", "scontrol", "scancel"] {
        if which(c).is_none() {
            bail!("executor slurm: `{c}` is not on PATH; install the Slurm client tools or use `executor: local`");
        }
    }
    let parts = run_cmd(Command::new("sinfo").args(["-h", "-o", "%R"])).unwrap_or_default();
    let known: Vec<&str> = parts.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut wanted: Vec<(String, String)> = Vec::new();
    if let Some(p) = &spec.slurm.partition {
        wanted.push(("slurm.partition".into(), p.clone()));
    }
    for (k, v) in &spec.slurm.per_kind {
        if let Some(p) = &v.partition {
            wanted.push((format!("slurm.per_kind.{k}.partition"), p.clone()));
        }
        if crate::kinds::by_name(k).is_none() {
            bail!("{}: slurm.per_kind.{k}: there is no stage kind '{k}'", spec.file.display());
        }
    }
    for (what, p) in wanted {
        if !known.contains(&p.as_str()) {
            bail!(
                "{}: {what}: unknown Slurm partition '{p}' (cluster partitions: {})",
                spec.file.display(),
                known.join(", ")
            );
        }
    }
    // The cache must be on a filesystem every job can write: not node-local scratch.
    let c = cache_root.to_string_lossy();
    for local in ["/tmp", "/var/tmp", "/dev/shm", "/run"] {
        if c == local || c.starts_with(&format!("{local}/")) {
            bail!(
                "{}: cache {} is on node-local storage ({local}); Slurm jobs on other nodes cannot see it. Put `cache:` on a shared filesystem",
                spec.file.display(),
                cache_root.display()
            );
        }
    }
    let probe = cache_root.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"ok").with_context(|| format!("cache {} is not writable", cache_root.display()))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// Submits every unit that is not fresh. Returns the submission (empty when all is cached).
pub fn submit(session: &Session, until: Option<&str>, exe: &Path) -> Result<Submission> {
    let dag = &session.dag;
    let states = session.evaluate()?;
    let n = dag.units.len();
    let mut selected = vec![true; n];
    if let Some(s) = until {
        selected = dag.closure_of_stage(dag.stage_index(s)?);
    }
    let stale: Vec<bool> = (0..n).map(|u| selected[u] && !matches!(states[u], UnitState::Fresh { .. })).collect();
    let dir = session.cache.root.join("slurm").join(&session.run_name);
    std::fs::create_dir_all(dir.join("logs"))?;
    let mut sub = Submission {
        run: session.run_name.clone(),
        pipeline: std::fs::canonicalize(&session.spec.file)?,
        submitted: crate::cache::now_rfc3339(),
        jobs: Vec::new(),
    };
    // Group: per-case units of one stage item → one array job; others → one job each.
    let mut job_of_unit: HashMap<usize, String> = HashMap::new();
    for &si in &dag.order {
        let st = &dag.stages[si];
        // Groups in the stage's unit order (units reading a sibling come after it), so a job's
        // `afterok` dependencies are always submitted before it.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for &u in &st.units {
            if !stale[u] {
                continue;
            }
            let unit = &dag.units[u];
            let g = if unit.case.is_some() && matches!(unit.kind.fanout(), Fanout::PerCase { .. }) {
                format!("{:?}", unit.id.coords)
            } else {
                unit.id.to_string()
            };
            match groups.iter_mut().find(|(k, _)| *k == g) {
                Some((_, v)) => v.push(u),
                None => groups.push((g, vec![u])),
            }
        }
        for (_, units) in groups {
            let first = &dag.units[units[0]];
            let kind = first.kind.name();
            let set = settings_for(&session.spec.slurm, kind);
            let res = first.kind.resources(&first.view(), &session.env);
            let mut deps: Vec<String> = units
                .iter()
                .flat_map(|&u| dag.units[u].deps.iter().filter_map(|d| job_of_unit.get(&d.unit).cloned()))
                .collect();
            deps.sort();
            deps.dedup();
            let name = format!("nn-{}", first.id.stage);
            let ids: Vec<String> = units.iter().map(|&u| dag.units[u].id.to_string()).collect();
            let script = dir.join(format!(
                "{}-{}.sh",
                first.id.stage,
                blake3::hash(ids.join("\n").as_bytes()).to_hex().get(..12).unwrap_or("x")
            ));
            let log = dir.join("logs").join(if ids.len() > 1 { "%x-%A_%a.out" } else { "%x-%j.out" });
            let mut body = String::from("#!/usr/bin/env bash\nset -euo pipefail\n");
            body.push_str(&format!(
                "UNITS=(\n{}\n)\n",
                ids.iter().map(|i| format!("  '{}'", i.replace('\'', "'\\''"))).collect::<Vec<_>>().join("\n")
            ));
            body.push_str("IDX=${SLURM_ARRAY_TASK_ID:-0}\n");
            let sets: String =
                session.spec.sets.iter().map(|s| format!(" --set '{}'", s.replace('\'', "'\\''"))).collect();
            body.push_str(&format!(
                "cd '{}'\nexec '{}' exec-unit -f '{}'{sets} --run '{}' --unit \"${{UNITS[$IDX]}}\"\n",
                std::env::current_dir()?.display(),
                exe.display(),
                sub.pipeline.display(),
                session.run_name
            ));
            write_atomic(&script, body.as_bytes())?;
            let mut cmd = Command::new("sbatch");
            cmd.arg("--parsable").arg(format!("--job-name={name}")).arg(format!("--output={}", log.display()));
            if ids.len() > 1 {
                cmd.arg(format!("--array=0-{}", ids.len() - 1));
            }
            let cpus = set.cpus.unwrap_or(res.cpus.max(1));
            cmd.arg(format!("--cpus-per-task={cpus}"));
            let gpus = set.gpus.unwrap_or(usize::from(res.gpu));
            if gpus > 0 {
                cmd.arg(format!("--gres=gpu:{gpus}"));
            }
            if let Some(p) = &set.partition {
                cmd.arg(format!("--partition={p}"));
            }
            if let Some(a) = &set.account {
                cmd.arg(format!("--account={a}"));
            }
            if let Some(t) = &set.time {
                cmd.arg(format!("--time={t}"));
            }
            if let Some(m) = &set.mem {
                cmd.arg(format!("--mem={m}"));
            }
            if !deps.is_empty() {
                cmd.arg(format!("--dependency=afterok:{}", deps.join(":"))).arg("--kill-on-invalid-dep=yes");
            }
            cmd.args(&set.extra);
            cmd.arg(&script);
            let out = match run_cmd(&mut cmd) {
                Ok(o) => o,
                Err(e) => {
                    // Do not leave half a DAG queued.
                    let ids: Vec<String> = sub.jobs.iter().map(|j| j.id.clone()).collect();
                    if !ids.is_empty() {
                        let _ = Command::new("scancel").args(&ids).status();
                    }
                    return Err(e.context(format!("submitting {}", first.id)));
                }
            };
            let id = out.trim().split(';').next().unwrap_or("").to_string();
            if id.is_empty() {
                bail!("sbatch printed no job id for {}", first.id);
            }
            for &u in &units {
                job_of_unit.insert(u, id.clone());
            }
            sub.jobs.push(Job {
                id: id.clone(),
                name,
                units: ids,
                stage: first.id.stage.clone(),
                log: log
                    .display()
                    .to_string()
                    .replace("%x", &format!("nn-{}", first.id.stage))
                    .replace("%j", &id)
                    .replace("%A", &id),
                depends_on: deps,
            });
        }
    }
    write_atomic(&dir.join("jobs.json"), &serde_json::to_vec_pretty(&sub)?)?;
    Ok(sub)
}

/// State of one job (or array task) as Slurm reports it; None when Slurm forgot it.
fn job_states(ids: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return out;
    }
    if let Ok(s) = run_cmd(Command::new("squeue").args(["-h", "-o", "%i %T", "-j", &ids.join(",")])) {
        for l in s.lines() {
            let mut it = l.split_whitespace();
            if let (Some(i), Some(st)) = (it.next(), it.next()) {
                out.insert(i.to_string(), st.to_string());
            }
        }
    }
    for id in ids {
        if out.keys().any(|k| k == id || k.starts_with(&format!("{id}_"))) {
            continue;
        }
        if let Ok(s) = run_cmd(Command::new("scontrol").args(["show", "job", "-o", id])) {
            for l in s.lines() {
                let jid = l.split_whitespace().find_map(|f| f.strip_prefix("JobId=")).unwrap_or(id);
                let task = l.split_whitespace().find_map(|f| f.strip_prefix("ArrayTaskId="));
                let st = l.split_whitespace().find_map(|f| f.strip_prefix("JobState=")).unwrap_or("UNKNOWN");
                let key = match task {
                    Some(t) => format!("{id}_{t}"),
                    None => jid.to_string(),
                };
                out.insert(key, st.to_string());
            }
        }
    }
    out
}

const TERMINAL_BAD: [&str; 7] =
    ["FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL"];

/// Waits for the submitted jobs, printing a live view; fails naming the failed jobs and logs.
pub fn wait(sub: &Submission, poll: Duration, progress: bool) -> Result<()> {
    let ids: Vec<String> = sub.jobs.iter().map(|j| j.id.clone()).collect();
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        let states = job_states(&ids);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut failed: Vec<(&Job, String)> = Vec::new();
        let mut active = 0;
        for j in &sub.jobs {
            let mine: Vec<&String> = states
                .iter()
                .filter(|(k, _)| *k == &j.id || k.starts_with(&format!("{}_", j.id)))
                .map(|(_, v)| v)
                .collect();
            if mine.is_empty() {
                *counts.entry("done").or_default() += 1;
                continue;
            }
            let st = if let Some(bad) = mine.iter().find(|s| TERMINAL_BAD.iter().any(|b| s.starts_with(b))) {
                failed.push((j, bad.to_string()));
                "failed"
            } else if mine.iter().all(|s| s.as_str() == "COMPLETED") {
                "done"
            } else if mine.iter().any(|s| s.as_str() == "RUNNING" || s.as_str() == "COMPLETING") {
                active += 1;
                "running"
            } else {
                active += 1;
                "pending"
            };
            *counts.entry(st).or_default() += 1;
        }
        let line: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let line = format!("slurm {}: {} jobs: {}", sub.run, sub.jobs.len(), line.join(", "));
        if progress && line != last {
            eprintln!("[{:>5.0}s] {line}", t0.elapsed().as_secs_f64());
            last = line;
        }
        if !failed.is_empty() {
            // Cancel whatever still waits on them (afterok would never fire).
            let pending: Vec<String> =
                sub.jobs.iter().filter(|j| !failed.iter().any(|(f, _)| f.id == j.id)).map(|j| j.id.clone()).collect();
            let still: Vec<String> = pending
                .into_iter()
                .filter(|id| states.keys().any(|k| k == id || k.starts_with(&format!("{id}_"))))
                .collect();
            if !still.is_empty() {
                let _ = Command::new("scancel").args(&still).status();
            }
            let msgs: Vec<String> = failed
                .iter()
                .map(|(j, st)| format!("  job {} ({}) {st}: {}; log {}", j.id, j.stage, j.units.join(", "), j.log))
                .collect();
            bail!("{} Slurm job(s) failed; their dependants were cancelled:\n{}", failed.len(), msgs.join("\n"));
        }
        if active == 0 {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}

pub fn load_submission(cache_root: &Path, run: &str) -> Result<Submission> {
    let p = cache_root.join("slurm").join(run).join("jobs.json");
    let b = std::fs::read(&p).map_err(|_| anyhow!("no Slurm submission recorded for run {run} ({})", p.display()))?;
    Ok(serde_json::from_slice(&b)?)
}

/// Cancels the jobs of the run's last submission that are still queued or running.
pub fn cancel(cache_root: &Path, run: &str) -> Result<Vec<String>> {
    let sub = load_submission(cache_root, run)?;
    let ids: Vec<String> = sub.jobs.iter().map(|j| j.id.clone()).collect();
    let states = job_states(&ids);
    let live: Vec<String> =
        ids.into_iter().filter(|id| states.keys().any(|k| k == id || k.starts_with(&format!("{id}_")))).collect();
    if !live.is_empty() {
        run_cmd(Command::new("scancel").args(&live))?;
    }
    Ok(live)
}

/// Job states of a run's last submission, per unit (for `pipeline status`).
pub fn unit_job_states(cache_root: &Path, run: &str) -> HashMap<String, (String, String)> {
    let mut out = HashMap::new();
    let Ok(sub) = load_submission(cache_root, run) else { return out };
    let ids: Vec<String> = sub.jobs.iter().map(|j| j.id.clone()).collect();
    let states = job_states(&ids);
    for j in &sub.jobs {
        for (i, u) in j.units.iter().enumerate() {
            let key = if j.units.len() > 1 { format!("{}_{i}", j.id) } else { j.id.clone() };
            let st = states.get(&key).or_else(|| states.get(&j.id)).cloned().unwrap_or_else(|| "FINISHED".into());
            out.insert(u.clone(), (key, st));
        }
    }
    out
}

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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::config::{PipelineSpec, SlurmKindSettings, SlurmSettings};
use crate::fsutil::write_atomic;
use crate::kind::{Fanout, Resources};
use crate::runner::{report, Outcome, RunReport};
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

/// How units are grouped into jobs within a stage. Arrays sort before single jobs: an
/// aggregate unit (single) depends on its stage's case units (an array), which must be
/// submitted first so the dependency can name their job.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum JobGroup {
    /// The per-case units of one stage item (its coordinates): one job array.
    Array(Vec<(String, String)>),
    /// Any other unit: one job.
    Single(crate::dag::UnitId),
}

/// The stale units of each job, in submission order (stages in dependency order; within a
/// stage, arrays first).
fn group_jobs(dag: &crate::dag::Dag, stale: &[bool]) -> Vec<Vec<usize>> {
    let mut jobs = Vec::new();
    for &si in &dag.order {
        // Groups in the stage's unit order (units reading a sibling come after it), so a job's
        // `afterok` dependencies are always submitted before it.
        let mut groups: Vec<(JobGroup, Vec<usize>)> = Vec::new();
        for &u in dag.stages[si].units.iter().filter(|&&u| stale[u]) {
            let unit = &dag.units[u];
            let g = if unit.case.is_some() && matches!(unit.kind.fanout(), Fanout::PerCase { .. }) {
                JobGroup::Array(unit.id.coords.clone())
            } else {
                JobGroup::Single(unit.id.clone())
            };
            match groups.iter_mut().find(|(k, _)| *k == g) {
                Some((_, v)) => v.push(u),
                None => groups.push((g, vec![u])),
            }
        }
        jobs.extend(groups.into_iter().map(|(_, v)| v));
    }
    jobs
}

/// How a job's script runs its units: `cd WORKDIR && exec EXE exec-unit -f PIPELINE [--set
/// S]... --run RUN --unit UNIT`.
#[derive(Clone, Debug)]
pub struct ExecLine {
    pub workdir: PathBuf,
    pub exe: PathBuf,
    pub pipeline: PathBuf,
    pub sets: Vec<String>,
    /// `--variant NAME` of a named variant (`variants:` in pipeline.yaml).
    pub variant: Option<String>,
    pub run: String,
}

/// Everything [`render_job`] needs about one job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// The stage (job name `nn-STAGE`).
    pub stage: String,
    /// Unit ids, one per array task (one unit: a plain job).
    pub units: Vec<String>,
    pub settings: SlurmKindSettings,
    /// What the kind asks for (used where `settings` leaves CPUs or GPUs open).
    pub resources: Resources,
    /// Job ids this job waits for (`afterok`).
    pub depends_on: Vec<String>,
    pub script: PathBuf,
    pub log_dir: PathBuf,
    pub exec: ExecLine,
}

/// A job ready for sbatch: the script's text and sbatch's arguments (the script path last).
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedJob {
    pub script: String,
    pub argv: Vec<String>,
    /// The `--output` pattern (`%x`, `%j`, `%A`, `%a` filled in by Slurm).
    pub log: PathBuf,
}

/// A shell word in single quotes (`'` becomes `'\''`): safe for any path or value.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Renders one job: pure, no files, no commands (tested on its own).
pub fn render_job(job: &JobSpec) -> RenderedJob {
    let array = job.units.len() > 1;
    let log = job.log_dir.join(if array { "%x-%A_%a.out" } else { "%x-%j.out" });
    let mut script = String::from("#!/usr/bin/env bash\nset -euo pipefail\n");
    script.push_str("UNITS=(\n");
    for u in &job.units {
        script.push_str(&format!("  {}\n", sh_quote(u)));
    }
    script.push_str(")\nIDX=${SLURM_ARRAY_TASK_ID:-0}\n");
    let e = &job.exec;
    let mut sets: String = e.sets.iter().map(|s| format!(" --set {}", sh_quote(s))).collect();
    if let Some(v) = &e.variant {
        sets.push_str(&format!(" --variant {}", sh_quote(v)));
    }
    script.push_str(&format!(
        "cd {}\nexec {} exec-unit -f {}{sets} --run {} --unit \"${{UNITS[$IDX]}}\"\n",
        sh_quote(&e.workdir.to_string_lossy()),
        sh_quote(&e.exe.to_string_lossy()),
        sh_quote(&e.pipeline.to_string_lossy()),
        sh_quote(&e.run),
    ));
    let set = &job.settings;
    let mut argv =
        vec!["--parsable".to_string(), format!("--job-name=nn-{}", job.stage), format!("--output={}", log.display())];
    if array {
        argv.push(format!("--array=0-{}", job.units.len() - 1));
    }
    argv.push(format!("--cpus-per-task={}", set.cpus.unwrap_or(job.resources.cpus.max(1))));
    let gpus = set.gpus.unwrap_or(usize::from(job.resources.gpu));
    if gpus > 0 {
        argv.push(format!("--gres=gpu:{gpus}"));
    }
    for (flag, v) in [("partition", &set.partition), ("account", &set.account), ("time", &set.time), ("mem", &set.mem)]
    {
        if let Some(v) = v {
            argv.push(format!("--{flag}={v}"));
        }
    }
    if !job.depends_on.is_empty() {
        argv.push(format!("--dependency=afterok:{}", job.depends_on.join(":")));
        argv.push("--kill-on-invalid-dep=yes".into());
    }
    argv.extend(set.extra.iter().cloned());
    argv.push(job.script.display().to_string());
    RenderedJob { script, argv, log }
}

/// The job id in `sbatch --parsable`'s output (`ID` or `ID;CLUSTER`), if any.
pub fn parse_job_id(out: &str) -> Option<String> {
    let id = out.trim().split(';').next().unwrap_or("").trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// Submits every unit that is not fresh. Returns the submission (empty when all is cached).
/// When a submission fails (sbatch fails or prints no job id), the jobs already queued are
/// cancelled: never half a graph left in the queue.
pub fn submit(session: &Session, until: Option<&str>, exe: &Path) -> Result<Submission> {
    let dag = &session.dag;
    let states = session.evaluate()?;
    let n = dag.units.len();
    let selected = match until {
        Some(s) => dag.closure_of_stage(dag.stage_index(s)?),
        None => vec![true; n],
    };
    let stale: Vec<bool> = (0..n).map(|u| selected[u] && !matches!(states[u], UnitState::Fresh { .. })).collect();
    let dir = session.cache.root.join("slurm").join(&session.run_name);
    std::fs::create_dir_all(dir.join("logs"))?;
    let mut sub = Submission {
        run: session.run_name.clone(),
        pipeline: std::fs::canonicalize(&session.spec.file)?,
        submitted: crate::cache::now_rfc3339(),
        jobs: Vec::new(),
    };
    let exec = ExecLine {
        workdir: std::env::current_dir()?,
        exe: exe.to_path_buf(),
        pipeline: sub.pipeline.clone(),
        sets: session.spec.sets.clone(),
        variant: session.spec.variant_name.clone(),
        run: session.run_name.clone(),
    };
    let mut job_of_unit: HashMap<usize, String> = HashMap::new();
    for units in group_jobs(dag, &stale) {
        let spec = job_spec(session, &units, &stale, &job_of_unit, &dir, &exec)?;
        let rendered = render_job(&spec);
        let first = &dag.units[units[0]].id;
        let id = write_and_sbatch(&spec, &rendered).map_err(|e| {
            cancel_jobs(&sub.jobs);
            e.context(format!("submitting {first}; the {} job(s) already queued were cancelled", sub.jobs.len()))
        })?;
        for &u in &units {
            job_of_unit.insert(u, id.clone());
        }
        let log = rendered.log.display().to_string();
        sub.jobs.push(Job {
            log: log.replace("%x", &format!("nn-{}", spec.stage)).replace("%j", &id).replace("%A", &id),
            id,
            name: format!("nn-{}", spec.stage),
            units: spec.units,
            stage: spec.stage,
            depends_on: spec.depends_on,
        });
    }
    write_atomic(&dir.join("jobs.json"), &serde_json::to_vec_pretty(&sub)?)?;
    Ok(sub)
}

/// The [`JobSpec`] of the job building `units` (one job or one array).
fn job_spec(
    session: &Session,
    units: &[usize],
    stale: &[bool],
    job_of_unit: &HashMap<usize, String>,
    dir: &Path,
    exec: &ExecLine,
) -> Result<JobSpec> {
    let dag = &session.dag;
    let first = &dag.units[units[0]];
    let mut depends_on = Vec::new();
    for &u in units {
        for d in &dag.units[u].deps {
            match job_of_unit.get(&d.unit) {
                Some(j) => depends_on.push(j.clone()),
                // A stale upstream unit is always submitted first (group_jobs' order).
                None if stale[d.unit] => bail!("{}: upstream {} has no job yet", dag.units[u].id, dag.units[d.unit].id),
                None => {}
            }
        }
    }
    depends_on.sort();
    depends_on.dedup();
    let ids: Vec<String> = units.iter().map(|&u| dag.units[u].id.to_string()).collect();
    let digest = blake3::hash(ids.join("\n").as_bytes()).to_hex();
    Ok(JobSpec {
        stage: first.id.stage.clone(),
        script: dir.join(format!("{}-{}.sh", first.id.stage, &digest.as_str()[..12])),
        units: ids,
        settings: settings_for(&session.spec.slurm, first.kind.name()),
        resources: first.kind.resources(&first.view(), &session.env),
        depends_on,
        log_dir: dir.join("logs"),
        exec: exec.clone(),
    })
}

/// Writes the job's script and submits it; returns the job id.
fn write_and_sbatch(spec: &JobSpec, job: &RenderedJob) -> Result<String> {
    write_atomic(&spec.script, job.script.as_bytes())?;
    let out = run_cmd(Command::new("sbatch").args(&job.argv))?;
    parse_job_id(&out).ok_or_else(|| anyhow!("sbatch printed no job id (output: {:?})", out.trim()))
}

/// The run report of a submission once its jobs ended, the same as a local run's (so
/// `run.json` and `pipeline report` read alike): selected units the jobs built are `built`
/// (with the build time from their manifest), other fresh ones `cached`, selected units without
/// an artifact `failed`, units outside `--until`'s closure not selected.
pub fn run_report(session: &Session, sub: &Submission, until: Option<&str>, seconds: f64) -> Result<RunReport> {
    let dag = &session.dag;
    let states = session.evaluate()?;
    let selected = match until {
        Some(s) => dag.closure_of_stage(dag.stage_index(s)?),
        None => vec![true; dag.units.len()],
    };
    let submitted: HashSet<&str> = sub.jobs.iter().flat_map(|j| j.units.iter().map(String::as_str)).collect();
    let units = dag
        .unit_order()
        .into_iter()
        .map(|u| match (&states[u], selected[u]) {
            (_, false) => report(session, u, Outcome::NotSelected, None, None, 0.0),
            (UnitState::Fresh { manifest, .. }, true) => {
                if submitted.contains(dag.units[u].id.to_string().as_str()) {
                    report(session, u, Outcome::Built, Some(manifest), None, manifest.duration_s)
                } else {
                    report(session, u, Outcome::Cached, Some(manifest), None, 0.0)
                }
            }
            (_, true) => {
                let msg = "its Slurm job did not produce the artifact (failed, cancelled, or waiting on one that did)";
                report(session, u, Outcome::Failed, None, Some(msg.into()), 0.0)
            }
        })
        .collect();
    let manifests = states
        .into_iter()
        .map(|s| match s {
            UnitState::Fresh { manifest, .. } => Some(*manifest),
            _ => None,
        })
        .collect();
    Ok(RunReport::new(session.run_name.clone(), units, seconds, manifests))
}

/// Best-effort `scancel` of submitted jobs.
fn cancel_jobs(jobs: &[Job]) {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    if !ids.is_empty() {
        let _ = Command::new("scancel").args(&ids).status();
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    fn job(units: &[&str], deps: &[&str]) -> JobSpec {
        JobSpec {
            stage: "train".into(),
            units: units.iter().map(|u| u.to_string()).collect(),
            settings: SlurmKindSettings::default(),
            resources: Resources { cpus: 3, gpu: true },
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            script: PathBuf::from("/c/slurm/r/train-x.sh"),
            log_dir: PathBuf::from("/c/slurm/r/logs"),
            exec: ExecLine {
                workdir: PathBuf::from("/p"),
                exe: PathBuf::from("/bin/pipeline"),
                pipeline: PathBuf::from("/p/pipeline.yaml"),
                sets: vec![],
                variant: None,
                run: "r".into(),
            },
        }
    }

    #[test]
    fn one_unit_is_a_plain_job_with_the_kinds_resources() {
        let r = render_job(&job(&["train[configuration=2d,fold=0]"], &[]));
        assert_eq!(
            r.argv,
            [
                "--parsable",
                "--job-name=nn-train",
                "--output=/c/slurm/r/logs/%x-%j.out",
                "--cpus-per-task=3",
                "--gres=gpu:1",
                "/c/slurm/r/train-x.sh"
            ]
        );
        assert!(r.script.contains("UNITS=(\n  'train[configuration=2d,fold=0]'\n)\n"), "{}", r.script);
        assert!(r.script.ends_with(
            "cd '/p'\nexec '/bin/pipeline' exec-unit -f '/p/pipeline.yaml' --run 'r' --unit \"${UNITS[$IDX]}\"\n"
        ));
    }

    #[test]
    fn arrays_dependencies_and_settings() {
        let mut j = job(&["n[case=a]", "n[case=b]", "n[case=c]"], &["11", "12"]);
        j.settings = SlurmKindSettings {
            partition: Some("gpu".into()),
            account: Some("lab".into()),
            time: Some("1:00:00".into()),
            mem: Some("8G".into()),
            cpus: Some(8),
            gpus: Some(0),
            extra: vec!["--qos=high".into()],
        };
        let r = render_job(&j);
        assert_eq!(
            r.argv,
            [
                "--parsable",
                "--job-name=nn-train",
                "--output=/c/slurm/r/logs/%x-%A_%a.out",
                "--array=0-2",
                "--cpus-per-task=8",
                "--partition=gpu",
                "--account=lab",
                "--time=1:00:00",
                "--mem=8G",
                "--dependency=afterok:11:12",
                "--kill-on-invalid-dep=yes",
                "--qos=high",
                "/c/slurm/r/train-x.sh"
            ]
        );
        assert_eq!(r.log, PathBuf::from("/c/slurm/r/logs/%x-%A_%a.out"));
    }

    /// The script, run by bash with a stand-in for the binary, passes every word through
    /// unchanged: quotes, spaces and `$` in paths, sets and unit ids.
    #[test]
    fn the_script_quotes_every_word() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("it's a $HOME");
        std::fs::create_dir_all(&work).unwrap();
        let exe = dir.path().join("fake pipeline");
        std::fs::write(&exe, "#!/usr/bin/env bash\nprintf '<%s>' \"$PWD\" \"$@\"\n").unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut j = job(&["s[case=x'1]", "s[case=$(y)]"], &[]);
        j.exec = ExecLine {
            workdir: work.clone(),
            exe,
            pipeline: work.join("p'q.yaml"),
            sets: vec!["train.norm=it's".into()],
            variant: Some("v'1".into()),
            run: "r+a=b c".into(),
        };
        let script = dir.path().join("job.sh");
        std::fs::write(&script, render_job(&j).script).unwrap();
        let out = std::process::Command::new("bash").arg(&script).env("SLURM_ARRAY_TASK_ID", "1").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let want = format!(
            "<{}><exec-unit><-f><{}><--set><train.norm=it's><--variant><v'1><--run><r+a=b c><--unit><s[case=$(y)]>",
            work.display(),
            work.join("p'q.yaml").display()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }

    #[test]
    fn job_ids_from_sbatch_output() {
        assert_eq!(parse_job_id("123\n"), Some("123".into()));
        assert_eq!(parse_job_id("123;cluster\n"), Some("123".into()));
        assert_eq!(parse_job_id("\n"), None);
        assert_eq!(parse_job_id(";cluster"), None);
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn jobs_group_case_units_into_arrays_submitted_before_their_aggregate() {
        let dir = tempfile::tempdir().unwrap();
        let ds = testutil::dataset(dir.path(), 3);
        let spec = testutil::pipeline(
            dir.path(),
            "  configurations: [2d, 3d_fullres]",
            "  fingerprint:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [fingerprint]\n  \
             norm:\n    uses: normalize\n    needs: [plan]\n  res:\n    uses: resample\n    needs: [norm]\n",
        );
        let dag = crate::dag::build(&spec, &ds).unwrap();
        let all = vec![true; dag.units.len()];
        let names = |jobs: Vec<Vec<usize>>| -> Vec<Vec<String>> {
            jobs.into_iter().map(|j| j.into_iter().map(|u| dag.units[u].id.to_string()).collect()).collect()
        };
        let jobs = names(group_jobs(&dag, &all));
        let case = |s: &str| (0..3).map(|i| format!("{s}case=case_00{i}]")).collect::<Vec<_>>();
        assert_eq!(
            jobs,
            vec![
                case("fingerprint["),
                vec!["fingerprint".to_string()],
                vec!["plan".to_string()],
                case("norm["),
                case("res[configuration=2d,"),
                case("res[configuration=3d_fullres,"),
                vec!["res[configuration=2d]".to_string()],
                vec!["res[configuration=3d_fullres]".to_string()],
            ]
        );
        // Only stale units are submitted.
        let mut stale = vec![false; dag.units.len()];
        stale[dag.units.iter().position(|u| u.id.to_string() == "plan").unwrap()] = true;
        assert_eq!(names(group_jobs(&dag, &stale)), vec![vec!["plan".to_string()]]);
    }
}

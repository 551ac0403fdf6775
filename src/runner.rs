//! `pipeline run` on this machine: walk the unit graph in dependency order, compute each key
//! once its upstream is known, take cache hits, and execute the rest on scoped threads within a
//! CPU budget (one trainer per GPU at a time). The bookkeeping is [`crate::scheduler`]'s; this
//! module binds it to the session (keys, cache, refs), the worker threads and the progress
//! view ([`crate::progress`]).

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use crate::cache::{now_rfc3339, Manifest};
use crate::kind::{Fanout, Input, RunCtx};
use crate::progress::RunProgress;
use crate::scheduler::{Decision, Graph, Need, Scheduler, Settled};
use crate::session::Session;

/// Set by SIGINT/SIGTERM: running units stop at their next check, nothing new starts.
pub static CANCEL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    CANCEL.store(true, Ordering::SeqCst);
}

/// Installs the cancel handler (a second signal kills the process as usual).
pub fn install_signal_handlers() {
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub jobs: usize,
    pub until: Option<String>,
    pub only: Option<String>,
    pub force: Vec<String>,
    pub progress: bool,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Cached,
    Built,
    Failed,
    Skipped,
    NotSelected,
}

#[derive(Clone, Debug, Serialize)]
pub struct UnitReport {
    pub unit: String,
    pub stage: String,
    /// The stage kind (`train-fold`, ...).
    pub kind: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub coords: BTreeMap<String, serde_json::Value>,
    /// Path of the unit's output under the run folder (`train/configuration=2d/fold=0`);
    /// absent for per-case units, which are not linked one by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds the unit took in this run (a cache hit takes ~0).
    pub seconds: f64,
    /// When the unit started, in seconds since the run started (0 for units not built).
    #[serde(default)]
    pub started_s: f64,
    /// Seconds building its artifact took (the manifest's `duration_s`), whether it was built
    /// in this run or an earlier one; absent when the unit has no artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_seconds: Option<f64>,
    /// When its artifact was built (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub built_at: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run: String,
    pub units: Vec<UnitReport>,
    pub built: usize,
    pub cached: usize,
    pub failed: usize,
    pub skipped: usize,
    pub seconds: f64,
    /// Manifests of every unit that is complete after the run (for the outputs view).
    #[serde(skip)]
    pub manifests: Vec<Option<Manifest>>,
}

/// Which units a run considers: `--until` keeps a stage and its upstream closure; `--only` runs
/// one stage and requires its upstream to be cached; `--force` rebuilds stages.
pub struct Selection {
    pub selected: Vec<bool>,
    /// Units that must already be cached (`--only`'s upstream).
    pub cache_only: Vec<bool>,
    /// Stage indices to rebuild.
    pub forced: HashSet<usize>,
}

impl Selection {
    pub fn of(dag: &crate::dag::Dag, opts: &RunOptions) -> Result<Selection> {
        let n = dag.units.len();
        let mut selected = vec![true; n];
        let mut cache_only = vec![false; n];
        if let Some(s) = &opts.until {
            selected = dag.closure_of_stage(dag.stage_index(s)?);
        }
        if let Some(s) = &opts.only {
            let si = dag.stage_index(s)?;
            let closure = dag.closure_of_stage(si);
            for u in 0..n {
                selected[u] = selected[u] && closure[u];
                cache_only[u] = closure[u] && dag.units[u].stage != si;
            }
        }
        let mut forced: HashSet<usize> = HashSet::new();
        for s in &opts.force {
            forced.insert(dag.stage_index(s)?);
        }
        Ok(Selection { selected, cache_only, forced })
    }
}

/// Whether a run of `session` with `opts` would build a unit of a libtorch kind (one that is
/// selected, not `--only`'s cached upstream, and not already cached or forced).
pub fn builds_torch_unit(session: &Session, opts: &RunOptions) -> Result<bool> {
    let dag = &session.dag;
    let sel = Selection::of(dag, opts)?;
    let torch = |u: usize| sel.selected[u] && !sel.cache_only[u] && dag.units[u].kind.torch();
    if !(0..dag.units.len()).any(torch) {
        return Ok(false);
    }
    let states = session.evaluate()?;
    Ok((0..dag.units.len()).any(|u| {
        torch(u)
            && (sel.forced.contains(&dag.units[u].stage)
                || !matches!(states[u], crate::session::UnitState::Fresh { .. }))
    }))
}

/// Executes one unit: lock, re-check the cache, build in a staging dir, commit.
///
/// Long (~80 lines): the crash-safety sequence reads best in one piece (each step assumes the
/// previous one held).
pub fn execute_unit(
    session: &Session,
    u: usize,
    manifests: &[Option<Manifest>],
    force: bool,
    progress: &(dyn Fn(u64, u64, &str) + Sync),
) -> Result<(Manifest, bool)> {
    let unit = &session.dag.units[u];
    let comps = session.components(u, manifests)?;
    let key = comps.key();
    let kind = unit.kind;
    let _lock = session.cache.lock_unit(&key)?;
    if !force {
        if let Some(m) = session.cache.lookup(kind.name(), &key) {
            return Ok((m, false));
        }
    }
    let resumable = kind.resumable();
    let st = session.cache.begin(kind.name(), &key, resumable)?;
    let mut inputs = Vec::new();
    let mut case_outputs = Vec::new();
    for d in &unit.deps {
        let up = &session.dag.units[d.unit];
        let m = manifests[d.unit].as_ref().ok_or_else(|| anyhow!("{}: upstream {} missing", unit.id, up.id))?;
        let dir = session.out_dir(m);
        // An aggregate's own case units are its case outputs; other units of the same stage a
        // unit reads (a cascade's previous stage) are inputs like any upstream artifact.
        if up.stage == unit.stage && unit.aggregate {
            case_outputs.push((up.case.clone().unwrap_or_default(), dir));
        } else {
            inputs.push(Input {
                kind: up.kind.name().to_string(),
                stage: up.id.stage.clone(),
                coords: up.coords.clone(),
                case: up.case.clone(),
                dir,
            });
        }
    }
    let case = match &unit.case {
        Some(id) => Some(
            session
                .dataset
                .cases
                .iter()
                .find(|c| &c.id == id)
                .ok_or_else(|| anyhow!("case {id} vanished from the dataset"))?,
        ),
        None => None,
    };
    let ctx = RunCtx {
        out: st.out.clone(),
        stage: unit.id.stage.clone(),
        params: unit.params.clone(),
        coords: unit.coords.clone(),
        case,
        dataset: &session.dataset,
        inputs,
        case_outputs,
        env: session.env.clone(),
        progress,
        cancel: &CANCEL,
    };
    let started = now_rfc3339();
    let t0 = Instant::now();
    let result = kind.run(&ctx);
    nnunet_io::memory::release_freed_memory();
    match result {
        Ok(()) => {
            if CANCEL.load(Ordering::Relaxed) {
                session.cache.abort(st, resumable);
                bail!("{}: cancelled", unit.id);
            }
            let m =
                session.cache.commit(st, &unit.id.to_string(), comps, started, t0.elapsed().as_secs_f64(), force)?;
            Ok((m, true))
        }
        Err(e) => {
            session.cache.abort(st, resumable);
            Err(e.context(format!("{} failed", unit.id)))
        }
    }
}

/// A unit's name on its own progress line; empty for case units and aggregates.
fn progress_label(unit: &crate::dag::Unit) -> String {
    if crate::progress::is_single(unit) {
        unit.id.to_string()
    } else {
        String::new()
    }
}

/// What a worker sends back: the unit, its result, seconds it took, when it started (seconds
/// since the run started).
type Finished = (usize, Result<(Manifest, bool)>, f64, f64);

/// Runs the session's pipeline locally: preflight, then rounds of the scheduler's steps
/// (settle, launch, wait for one unit to finish) until nothing runs.
pub fn run_local(session: &Session, opts: &RunOptions) -> Result<RunReport> {
    let t_start = Instant::now();
    let dag = &session.dag;
    let sel = Selection::of(dag, opts)?;
    let progress = RunProgress::new(dag, &sel.selected, opts.progress);
    preflight(session, &sel)?;
    let _flusher = crate::fsutil::Flusher::start(&session.cache.root, std::time::Duration::from_millis(250));
    let mut run = LocalRun::new(session, &sel, opts);
    let (tx, rx) = mpsc::channel::<Finished>();
    std::thread::scope(|scope| -> Result<()> {
        loop {
            run.settle(&progress)?;
            for u in run.sched.launch(CANCEL.load(Ordering::Relaxed)) {
                run.spawn(scope, u, &progress, tx.clone(), t_start);
            }
            if run.sched.running() == 0 {
                let left = run.sched.not_started();
                if CANCEL.load(Ordering::Relaxed) && left > 0 {
                    bail!("cancelled: {left} unit(s) not started");
                }
                return Ok(());
            }
            let done = rx.recv().map_err(|_| anyhow!("worker channel closed"))?;
            run.finished(done, &progress);
        }
    })?;
    progress.finish();
    Ok(run.into_report(t_start))
}

/// Preflight: the kinds check the raw inputs of units about to be built before anything is
/// written (dataset verification), for units whose keys are known now (no upstream).
fn preflight(session: &Session, sel: &Selection) -> Result<()> {
    let dag = &session.dag;
    let no_manifests = vec![None; dag.units.len()];
    let mut by_kind: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for u in dag.unit_order() {
        let unit = &dag.units[u];
        if sel.selected[u] && unit.deps.is_empty() && !sel.cache_only[u] {
            let key = session.components(u, &no_manifests)?.key();
            if sel.forced.contains(&unit.stage) || session.cache.lookup(unit.kind.name(), &key).is_none() {
                by_kind.entry(unit.kind.name()).or_default().push(u);
            }
        }
    }
    for units in by_kind.values() {
        let kind = dag.units[units[0]].kind;
        let cases: Vec<&nnunet_io::dataset::Case> = units
            .iter()
            .filter_map(|&u| dag.units[u].case.as_ref())
            .filter_map(|id| session.dataset.case(id))
            .collect();
        kind.preflight(&session.dataset, &cases)?;
    }
    Ok(())
}

/// A local run in progress: the scheduler, the manifests known so far, each unit's report.
struct LocalRun<'s, 'c> {
    session: &'s Session<'c>,
    sel: &'s Selection,
    only: Option<String>,
    sched: Scheduler,
    manifests: Vec<Option<Manifest>>,
    reports: Vec<Option<UnitReport>>,
}

impl<'s, 'c> LocalRun<'s, 'c> {
    fn new(session: &'s Session<'c>, sel: &'s Selection, opts: &RunOptions) -> Self {
        let dag = &session.dag;
        let n = dag.units.len();
        let graph = Graph {
            deps: dag.units.iter().map(|u| u.deps.iter().map(|d| d.unit).collect()).collect(),
            order: dag.unit_order(),
            considered: (0..n).map(|u| sel.selected[u] || sel.cache_only[u]).collect(),
            needs: dag
                .units
                .iter()
                .map(|u| {
                    let r = u.kind.resources(&u.view(), &session.env);
                    Need { cpus: r.cpus, gpu: r.gpu }
                })
                .collect(),
        };
        LocalRun {
            session,
            sel,
            only: opts.only.clone(),
            sched: Scheduler::new(graph, opts.jobs),
            manifests: vec![None; n],
            reports: vec![None; n],
        }
    }

    /// Step 1: settles what can be settled without running (skips, cache hits), recording
    /// each unit's ref and report.
    fn settle(&mut self, progress: &RunProgress) -> Result<()> {
        let (session, sel) = (self.session, self.sel);
        let manifests = &mut self.manifests;
        let only = self.only.as_deref();
        let settled = self.sched.settle(|u| {
            let unit = &session.dag.units[u];
            let comps = session.components(u, manifests)?;
            let key = comps.key();
            session.cache.write_ref(&session.run_name, &unit.id.to_string(), &comps, &key)?;
            let force = sel.forced.contains(&unit.stage) && sel.selected[u] && !sel.cache_only[u];
            match session.cache.lookup(unit.kind.name(), &key) {
                Some(m) if !force => {
                    manifests[u] = Some(m);
                    Ok(Decision::Cached)
                }
                _ if sel.cache_only[u] => bail!(
                    "--only {}: upstream unit {} is not built for the current inputs; run without --only (or with --until) first",
                    only.unwrap_or(""),
                    unit.id
                ),
                _ => Ok(Decision::Build),
            }
        })?;
        for s in settled {
            let (u, rep) = match s {
                Settled::Skipped(u) => {
                    (u, report(session, u, Outcome::Skipped, None, Some("an upstream unit failed".into()), 0.0))
                }
                Settled::Cached(u) => (u, report(session, u, Outcome::Cached, self.manifests[u].as_ref(), None, 0.0)),
            };
            if sel.selected[u] {
                let unit = &session.dag.units[u];
                progress.unit_settled(unit.stage, rep.outcome, &progress_label(unit), 0.0, None);
                self.reports[u] = Some(rep);
            }
        }
        Ok(())
    }

    /// Step 2 (per started unit): builds it on a scoped thread with a snapshot of its
    /// upstream manifests; the result comes back on `tx`.
    fn spawn<'scope>(
        &self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        u: usize,
        progress: &RunProgress,
        tx: mpsc::Sender<Finished>,
        t_start: Instant,
    ) where
        's: 'scope,
    {
        let session = self.session;
        let unit = &session.dag.units[u];
        let mut snapshot: Vec<Option<Manifest>> = vec![None; self.manifests.len()];
        for d in &unit.deps {
            snapshot[d.unit] = self.manifests[d.unit].clone();
        }
        let force = self.sel.forced.contains(&unit.stage);
        let per_case = matches!(unit.kind.fanout(), Fanout::PerCase { .. }) && unit.case.is_some();
        let reporter = progress.unit_reporter(unit.stage, if per_case { String::new() } else { unit.id.to_string() });
        progress.unit_started(unit.stage);
        scope.spawn(move || {
            let t0 = Instant::now();
            let started = t0.duration_since(t_start).as_secs_f64();
            // A panic inside a unit must not leave the scheduler waiting for a result forever:
            // it becomes the unit's error.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                execute_unit(session, u, &snapshot, force, &reporter)
            }))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(anyhow!("{} panicked: {msg}", session.dag.units[u].id))
            });
            let _ = tx.send((u, r, t0.elapsed().as_secs_f64(), started));
        });
    }

    /// Step 3: a unit finished; records its manifest or error.
    fn finished(&mut self, (u, result, secs, started): Finished, progress: &RunProgress) {
        let session = self.session;
        self.sched.finished(u, result.is_ok());
        let unit = &session.dag.units[u];
        let (rep, detail) = match result {
            Ok((m, built)) => {
                let outcome = if built { Outcome::Built } else { Outcome::Cached };
                let mut rep = report(session, u, outcome, Some(&m), None, secs);
                rep.started_s = started;
                let out = session.cache.artifact_dir(unit.kind.name(), &m.key).join("out");
                let detail = if built { unit.kind.summary_line(&out) } else { None };
                self.manifests[u] = Some(m);
                (rep, detail)
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress.error(&msg);
                (report(session, u, Outcome::Failed, None, Some(msg), secs), None)
            }
        };
        progress.unit_settled(unit.stage, rep.outcome, &progress_label(unit), secs, detail);
        self.reports[u] = Some(rep);
    }

    fn into_report(self, t_start: Instant) -> RunReport {
        let session = self.session;
        let units = session
            .dag
            .unit_order()
            .into_iter()
            .map(|u| {
                self.reports[u].clone().unwrap_or_else(|| report(session, u, Outcome::NotSelected, None, None, 0.0))
            })
            .collect();
        RunReport::new(session.run_name.clone(), units, t_start.elapsed().as_secs_f64(), self.manifests)
    }
}

impl RunReport {
    /// A report with its counts taken from `units`.
    pub fn new(run: String, units: Vec<UnitReport>, seconds: f64, manifests: Vec<Option<Manifest>>) -> RunReport {
        let count = |o: Outcome| units.iter().filter(|r| r.outcome == o).count();
        RunReport {
            run,
            built: count(Outcome::Built),
            cached: count(Outcome::Cached),
            failed: count(Outcome::Failed),
            skipped: count(Outcome::Skipped),
            seconds,
            units,
            manifests,
        }
    }
}

/// The report of unit `u`; with the unit's manifest, its key and build time.
pub fn report(
    session: &Session,
    u: usize,
    outcome: Outcome,
    manifest: Option<&Manifest>,
    error: Option<String>,
    seconds: f64,
) -> UnitReport {
    let unit = &session.dag.units[u];
    let view =
        (!unit.is_case_unit()).then(|| crate::outputs::view_path(session, u).to_string_lossy().replace('\\', "/"));
    UnitReport {
        unit: unit.id.to_string(),
        stage: unit.id.stage.clone(),
        kind: unit.kind.name().to_string(),
        coords: unit.coords.clone(),
        view,
        outcome,
        key: manifest.map(|m| m.key.clone()),
        error,
        seconds,
        started_s: 0.0,
        build_seconds: manifest.map(|m| m.duration_s),
        built_at: manifest.map(|m| m.started.clone()),
    }
}

/// Fails with the collected unit errors, if any.
pub fn check(report: &RunReport) -> Result<()> {
    if report.failed == 0 {
        return Ok(());
    }
    let msgs: Vec<String> = report
        .units
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| format!("  {}: {}", r.unit, r.error.clone().unwrap_or_default()))
        .collect();
    Err(anyhow!("{} unit(s) failed ({} skipped downstream):\n{}", report.failed, report.skipped, msgs.join("\n")))
        .context(format!("run {}", report.run))
}

//! `pipeline run` on this machine: walk the unit graph in dependency order, compute each key
//! once its upstream is known, take cache hits, and execute the rest on a thread pool within a
//! CPU budget (one trainer per GPU at a time).

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use crate::cache::{now_rfc3339, Manifest};
use crate::kind::{Fanout, Input, RunCtx};
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

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
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
    pub seconds: f64,
    /// When the unit started, in seconds since the run started (0 for units not built).
    #[serde(default)]
    pub started_s: f64,
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

#[derive(Clone)]
enum State {
    Waiting,
    Queued,
    Running,
    Done,
    Failed,
    Skipped,
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
    match kind.run(&ctx) {
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

/// Runs the session's pipeline locally.
pub fn run_local(session: &Session, opts: &RunOptions) -> Result<RunReport> {
    let t_start = Instant::now();
    let dag = &session.dag;
    let n = dag.units.len();
    let order = dag.unit_order();

    let Selection { selected, cache_only, forced } = Selection::of(dag, opts)?;

    let mut manifests: Vec<Option<Manifest>> = vec![None; n];
    let mut state = vec![State::Waiting; n];
    let mut reports: Vec<Option<UnitReport>> = vec![None; n];
    let jobs = opts.jobs.max(1);

    // Progress: one bar per stage.
    let mp = MultiProgress::with_draw_target(if opts.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>14.bold} [{bar:24}] {pos:>4}/{len:4} {elapsed:>4} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: BTreeMap<usize, ProgressBar> = BTreeMap::new();
    for &si in &dag.order {
        let cnt = dag.stages[si].units.iter().filter(|&&u| selected[u]).count();
        if cnt == 0 {
            continue;
        }
        let pb = mp.add(ProgressBar::new(cnt as u64));
        pb.set_style(style.clone());
        pb.set_prefix(dag.stages[si].name.clone());
        bars.insert(si, pb);
    }

    // Preflight: let kinds check raw inputs of units about to be built before anything is
    // written (dataset verification), for units whose keys are known now.
    let mut pre: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &u in &order {
        let unit = &dag.units[u];
        if selected[u] && unit.deps.is_empty() && !cache_only[u] {
            let key = session.components(u, &manifests)?.key();
            if forced.contains(&unit.stage) || session.cache.lookup(unit.kind.name(), &key).is_none() {
                pre.entry(unit.kind.name()).or_default().push(u);
            }
        }
    }
    for (kname, us) in &pre {
        let kind = dag.units[us[0]].kind;
        let cases: Vec<&nnunet_io::dataset::Case> = us
            .iter()
            .filter_map(|&u| dag.units[u].case.as_ref())
            .filter_map(|id| session.dataset.cases.iter().find(|c| &c.id == id))
            .collect();
        crate::kinds::preflight(kname, kind, &session.dataset, &cases)?;
    }

    let _flusher = crate::fsutil::Flusher::start(&session.cache.root, std::time::Duration::from_millis(250));
    let (tx, rx) = mpsc::channel::<(usize, Result<(Manifest, bool)>, f64, f64)>();
    let mut running = 0usize;
    let mut cpus_used = 0usize;
    let mut gpu_busy = false;
    let mut res_of: Vec<(usize, bool)> = vec![(1, false); n];

    let mut queue: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    std::thread::scope(|scope| -> Result<()> {
        loop {
            // Resolve every waiting unit whose upstream is settled.
            let mut changed = true;
            while changed {
                changed = false;
                for &u in &order {
                    if !matches!(state[u], State::Waiting) || !(selected[u] || cache_only[u]) {
                        continue;
                    }
                    let unit = &dag.units[u];
                    if unit.deps.iter().any(|d| matches!(state[d.unit], State::Failed | State::Skipped)) {
                        state[u] = State::Skipped;
                        reports[u] = Some(report(
                            session,
                            u,
                            Outcome::Skipped,
                            None,
                            Some("an upstream unit failed".into()),
                            0.0,
                        ));
                        if let Some(b) = bars.get(&unit.stage) {
                            b.inc(1);
                        }
                        changed = true;
                        continue;
                    }
                    if !unit.deps.iter().all(|d| matches!(state[d.unit], State::Done)) {
                        continue;
                    }
                    let comps = session.components(u, &manifests)?;
                    let key = comps.key();
                    let force = forced.contains(&unit.stage) && selected[u] && !cache_only[u];
                    session.cache.write_ref(&session.run_name, &unit.id.to_string(), &comps, &key)?;
                    match session.cache.lookup(unit.kind.name(), &key) {
                        Some(m) if !force => {
                            manifests[u] = Some(m);
                            state[u] = State::Done;
                            if selected[u] {
                                reports[u] = Some(report(session, u, Outcome::Cached, Some(key), None, 0.0));
                                if let Some(b) = bars.get(&unit.stage) {
                                    b.inc(1);
                                }
                            }
                            changed = true;
                        }
                        _ if cache_only[u] => {
                            bail!(
                                "--only {}: upstream unit {} is not built for the current inputs; run without --only (or with --until) first",
                                opts.only.as_deref().unwrap_or(""),
                                unit.id
                            );
                        }
                        _ => {
                            state[u] = State::Queued;
                            queue.push_back(u);
                        }
                    }
                }
            }
            // Launch queued units, in order, while they fit the budget.
            let mut deferred = std::collections::VecDeque::new();
            while let Some(u) = queue.pop_front() {
                let unit = &dag.units[u];
                let r = unit.kind.resources(&unit.view(), &session.env);
                let need = r.cpus.clamp(1, jobs);
                let fits = running == 0 || (cpus_used + need <= jobs && !(r.gpu && gpu_busy));
                if CANCEL.load(Ordering::Relaxed) {
                    break;
                }
                if !fits {
                    deferred.push_back(u);
                    if cpus_used >= jobs {
                        break;
                    }
                    continue;
                }
                state[u] = State::Running;
                running += 1;
                cpus_used += need;
                gpu_busy |= r.gpu;
                res_of[u] = (need, r.gpu);
                let tx = tx.clone();
                let snapshot: Vec<Option<Manifest>> = unit.deps.iter().fold(vec![None; n], |mut v, d| {
                    v[d.unit] = manifests[d.unit].clone();
                    v
                });
                let force = forced.contains(&unit.stage);
                let bar = bars.get(&unit.stage).cloned();
                let label = if matches!(unit.kind.fanout(), Fanout::PerCase { .. }) && unit.case.is_some() {
                    String::new()
                } else {
                    unit.id.to_string()
                };
                scope.spawn(move || {
                    let t0 = Instant::now();
                    let started = t0.duration_since(t_start).as_secs_f64();
                    let progress = move |pos: u64, len: u64, msg: &str| {
                        if let Some(b) = &bar {
                            if !label.is_empty() {
                                b.set_message(format!("{label} {pos}/{len} {msg}"));
                            }
                        }
                    };
                    let r = execute_unit(session, u, &snapshot, force, &progress);
                    let _ = tx.send((u, r, t0.elapsed().as_secs_f64(), started));
                });
            }
            deferred.extend(queue.drain(..));
            queue = deferred;
            if running == 0 {
                if !queue.is_empty() && CANCEL.load(Ordering::Relaxed) {
                    bail!("cancelled: {} unit(s) not started", queue.len());
                }
                break;
            }
            let (u, r, secs, started) = rx.recv().map_err(|_| anyhow!("worker channel closed"))?;
            running -= 1;
            cpus_used -= res_of[u].0;
            if res_of[u].1 {
                gpu_busy = false;
            }
            let unit = &dag.units[u];
            if let Some(b) = bars.get(&unit.stage) {
                b.inc(1);
            }
            match r {
                Ok((m, built)) => {
                    let key = m.key.clone();
                    manifests[u] = Some(m);
                    state[u] = State::Done;
                    let mut rep =
                        report(session, u, if built { Outcome::Built } else { Outcome::Cached }, Some(key), None, secs);
                    rep.started_s = started;
                    reports[u] = Some(rep);
                }
                Err(e) => {
                    state[u] = State::Failed;
                    let msg = format!("{e:#}");
                    mp.suspend(|| eprintln!("error: {msg}"));
                    reports[u] = Some(report(session, u, Outcome::Failed, None, Some(msg), secs));
                }
            }
        }
        Ok(())
    })?;
    for b in bars.values() {
        b.finish();
    }

    let units: Vec<UnitReport> = order
        .iter()
        .map(|&u| reports[u].clone().unwrap_or_else(|| report(session, u, Outcome::NotSelected, None, None, 0.0)))
        .collect();
    let count = |o: Outcome| units.iter().filter(|r| r.outcome == o).count();
    Ok(RunReport {
        run: session.run_name.clone(),
        built: count(Outcome::Built),
        cached: count(Outcome::Cached),
        failed: count(Outcome::Failed),
        skipped: count(Outcome::Skipped),
        seconds: t_start.elapsed().as_secs_f64(),
        units,
        manifests,
    })
}

fn report(
    session: &Session,
    u: usize,
    outcome: Outcome,
    key: Option<String>,
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
        key,
        error,
        seconds,
        started_s: 0.0,
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

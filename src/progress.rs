//! What a local run shows while it runs. On a terminal: one progress bar per stage (units
//! settled out of the stage's selected units) with the message of the unit working in it, and
//! errors printed above the bars. When stderr is not a terminal (piped, CI logs): plain lines,
//! the way cargo prints them — one per finished stage, and one per finished unit of stages with
//! several non-case units (training folds, with the kind's summary: time, pseudo-Dice). The
//! scheduler reports through [`RunProgress`] only.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use crate::dag::Dag;
use crate::runner::Outcome;

pub struct RunProgress {
    mp: MultiProgress,
    /// One bar per stage index with selected units.
    bars: BTreeMap<usize, ProgressBar>,
    /// Plain lines instead of bars (stderr is not a terminal).
    lines: Option<Mutex<BTreeMap<usize, StageTally>>>,
}

/// What a stage has settled so far (plain-line mode).
struct StageTally {
    name: String,
    total: usize,
    /// Non-case units of the stage: each finished one gets its own line when there are several.
    single_units: usize,
    built: usize,
    cached: usize,
    failed: usize,
    skipped: usize,
    first: Option<Instant>,
}

impl StageTally {
    fn settled(&self) -> usize {
        self.built + self.cached + self.failed + self.skipped
    }

    /// `fingerprint: 1 built (3.2 s)`, `resample: 120 cached`, ...
    fn line(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in
            [(self.built, "built"), (self.cached, "cached"), (self.failed, "failed"), (self.skipped, "skipped")]
        {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let secs = self.first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
        let time = if self.built + self.failed > 0 { format!(" in {}", fmt_secs(secs)) } else { String::new() };
        format!("{}: {}{time}", self.name, parts.join(", "))
    }
}

fn fmt_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// A unit printed on its own line: not one case of a per-case stage nor its aggregate.
pub fn is_single(unit: &crate::dag::Unit) -> bool {
    !unit.is_case_unit() && !unit.aggregate
}

/// `    Finished msg` with the verb right-aligned like cargo's.
fn status_line(verb: &str, msg: &str) -> String {
    format!("{verb:>12} {msg}")
}

impl RunProgress {
    /// Bars for the stages of `dag` (in dependency order) with `selected` units; drawn on
    /// stderr when `visible`.
    pub fn new(dag: &Dag, selected: &[bool], visible: bool) -> RunProgress {
        RunProgress::with_lines(dag, selected, visible, visible && !std::io::stderr().is_terminal())
    }

    /// As [`RunProgress::new`], with plain lines (`lines`) instead of bars chosen by the caller.
    pub fn with_lines(dag: &Dag, selected: &[bool], visible: bool, lines: bool) -> RunProgress {
        let visible = visible && !lines;
        let mp = MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style =
            ProgressStyle::with_template("{prefix:>14.bold} [{bar:24}] {pos:>4}/{len:4} {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let mut bars = BTreeMap::new();
        for &si in &dag.order {
            let count = dag.stages[si].units.iter().filter(|&&u| selected[u]).count();
            if count == 0 {
                continue;
            }
            let pb = mp.add(ProgressBar::new(count as u64));
            pb.set_style(style.clone());
            pb.set_prefix(dag.stages[si].name.clone());
            bars.insert(si, pb);
        }
        let lines = lines.then(|| {
            let mut tallies = BTreeMap::new();
            for &si in &dag.order {
                let sel: Vec<usize> = dag.stages[si].units.iter().copied().filter(|&u| selected[u]).collect();
                if sel.is_empty() {
                    continue;
                }
                let single_units = sel.iter().filter(|&&u| is_single(&dag.units[u])).count();
                tallies.insert(
                    si,
                    StageTally {
                        name: dag.stages[si].name.clone(),
                        total: sel.len(),
                        single_units,
                        built: 0,
                        cached: 0,
                        failed: 0,
                        skipped: 0,
                        first: None,
                    },
                );
            }
            Mutex::new(tallies)
        });
        RunProgress { mp, bars, lines }
    }

    /// A unit of stage `stage` started (plain lines time a stage from its first unit).
    pub fn unit_started(&self, stage: usize) {
        if let Some(l) = &self.lines {
            if let Some(t) = l.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&stage) {
                t.first.get_or_insert_with(Instant::now);
            }
        }
    }

    /// A unit of stage `stage` is settled (built, cached, failed or skipped). `label`, `secs`
    /// and `detail` (the kind's one-line summary of its output) are printed in plain-line mode
    /// for a built or failed unit of a stage with several non-case units; `label` is empty
    /// for the others ([`is_single`]).
    pub fn unit_settled(&self, stage: usize, outcome: Outcome, label: &str, secs: f64, detail: Option<String>) {
        if let Some(b) = self.bars.get(&stage) {
            b.inc(1);
        }
        let Some(l) = &self.lines else { return };
        let mut tallies = l.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = tallies.get_mut(&stage) else { return };
        match outcome {
            Outcome::Built => t.built += 1,
            Outcome::Cached => t.cached += 1,
            Outcome::Failed => t.failed += 1,
            Outcome::Skipped | Outcome::NotSelected => t.skipped += 1,
        }
        let mut out = Vec::new();
        let per_unit = t.single_units > 1 && !label.is_empty();
        let mut detail = detail;
        if per_unit && matches!(outcome, Outcome::Built | Outcome::Failed) {
            let verb = if outcome == Outcome::Built { "Built" } else { "Failed" };
            let d = detail.take().map(|d| format!(", {d}")).unwrap_or_default();
            out.push(status_line(verb, &format!("{label} in {}{d}", fmt_secs(secs))));
        }
        if t.settled() == t.total {
            let verb = if t.failed > 0 { "Failed" } else { "Finished" };
            // A one-unit stage: its summary goes on the stage's line.
            let d = detail.filter(|_| t.total == 1).map(|d| format!(" ({d})")).unwrap_or_default();
            out.push(status_line(verb, &format!("{}{d}", t.line())));
        }
        drop(tallies);
        for line in out {
            eprintln!("{line}");
        }
    }

    /// The progress callback of a running unit: `label` (empty for per-case units, which
    /// would flood the line) and the unit's own `pos/len msg`.
    pub fn unit_reporter(&self, stage: usize, label: String) -> impl Fn(u64, u64, &str) + Sync + Send + 'static {
        let bar = self.bars.get(&stage).cloned();
        move |pos: u64, len: u64, msg: &str| {
            if let (Some(b), false) = (&bar, label.is_empty()) {
                b.set_message(format!("{label} {pos}/{len} {msg}"));
            }
        }
    }

    /// Prints an error above the bars.
    pub fn error(&self, msg: &str) {
        self.mp.suspend(|| eprintln!("error: {msg}"));
    }

    /// The run ended: bars stay as they are.
    pub fn finish(&self) {
        for b in self.bars.values() {
            b.finish();
        }
    }
}

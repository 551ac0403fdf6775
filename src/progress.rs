//! What a local run shows while it runs: one progress bar per stage (units settled out of the
//! stage's selected units) with the message of the unit working in it, and errors printed
//! above the bars. The scheduler reports through [`RunProgress`] only, so another rendering
//! (plain lines when stderr is not a terminal, machine-readable events) is a change here.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;

use crate::dag::Dag;

pub struct RunProgress {
    mp: MultiProgress,
    /// One bar per stage index with selected units.
    bars: BTreeMap<usize, ProgressBar>,
}

impl RunProgress {
    /// Bars for the stages of `dag` (in dependency order) with `selected` units; drawn on
    /// stderr when `visible`.
    pub fn new(dag: &Dag, selected: &[bool], visible: bool) -> RunProgress {
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
        RunProgress { mp, bars }
    }

    /// A unit of stage `stage` is settled (built, cached, failed or skipped).
    pub fn unit_settled(&self, stage: usize) {
        if let Some(b) = self.bars.get(&stage) {
            b.inc(1);
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

//! The local executor's bookkeeping, free of I/O so it can be tested on its own: which units
//! wait, which are queued, which run, and whether a queued unit fits the CPU budget (one unit
//! holding the GPU at a time).
//!
//! [`crate::runner::run_local`] drives it in three named steps per round:
//! 1. [`Scheduler::settle`]: every waiting unit whose upstream is settled is skipped (an
//!    upstream failed), taken from the cache, or queued (the caller decides which);
//! 2. [`Scheduler::launch`]: queued units start, in order, while they fit the budget;
//! 3. [`Scheduler::finished`]: a running unit ended; its resources are returned.
//!
//! The run ends when nothing runs after a launch step; units still queued then were not
//! started because the run was cancelled ([`Scheduler::not_started`]).

use anyhow::Result;
use std::collections::VecDeque;

/// Where a unit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitState {
    Waiting,
    Queued,
    Running,
    Done,
    Failed,
    Skipped,
}

/// What the caller decided for a unit whose upstream is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Its artifact exists: done without running.
    Cached,
    /// It must be built: queue it.
    Build,
}

/// A unit settled without running (for reports and progress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// An upstream unit failed or was skipped.
    Skipped(usize),
    /// Taken from the cache.
    Cached(usize),
}

/// What one unit needs while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub cpus: usize,
    pub gpu: bool,
}

/// The unit graph as the scheduler sees it.
pub struct Graph {
    /// Upstream units of each unit.
    pub deps: Vec<Vec<usize>>,
    /// A topological order (every unit after its upstream units).
    pub order: Vec<usize>,
    /// Units the run considers (selected, or required to be cached); others stay waiting.
    pub considered: Vec<bool>,
    /// What each unit needs while it runs.
    pub needs: Vec<Need>,
}

pub struct Scheduler {
    graph: Graph,
    state: Vec<UnitState>,
    queue: VecDeque<usize>,
    /// CPU budget (`--jobs`).
    jobs: usize,
    running: usize,
    cpus_used: usize,
    gpu_busy: bool,
}

impl Scheduler {
    pub fn new(graph: Graph, jobs: usize) -> Scheduler {
        let n = graph.deps.len();
        debug_assert!(graph
            .order
            .iter()
            .enumerate()
            .all(|(i, &u)| graph.deps[u].iter().all(|d| graph.order[..i].contains(d))));
        Scheduler {
            graph,
            state: vec![UnitState::Waiting; n],
            queue: VecDeque::new(),
            jobs: jobs.max(1),
            running: 0,
            cpus_used: 0,
            gpu_busy: false,
        }
    }

    pub fn state(&self, u: usize) -> UnitState {
        self.state[u]
    }

    /// Units running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Step 1. Settles every considered waiting unit whose upstream is settled: skipped when an
    /// upstream unit failed or was skipped; else, once all upstream units are done, `decide(u)`
    /// says whether it is cached (done now) or must be built (queued). One pass in topological
    /// order reaches the fixed point: a unit settled here is seen by its dependants later in
    /// the same pass.
    pub fn settle(&mut self, mut decide: impl FnMut(usize) -> Result<Decision>) -> Result<Vec<Settled>> {
        let mut settled = Vec::new();
        for i in 0..self.graph.order.len() {
            let u = self.graph.order[i];
            if self.state[u] != UnitState::Waiting || !self.graph.considered[u] {
                continue;
            }
            let deps = &self.graph.deps[u];
            if deps.iter().any(|&d| matches!(self.state[d], UnitState::Failed | UnitState::Skipped)) {
                self.state[u] = UnitState::Skipped;
                settled.push(Settled::Skipped(u));
                continue;
            }
            if !deps.iter().all(|&d| self.state[d] == UnitState::Done) {
                continue;
            }
            match decide(u)? {
                Decision::Cached => {
                    self.state[u] = UnitState::Done;
                    settled.push(Settled::Cached(u));
                }
                Decision::Build => {
                    self.state[u] = UnitState::Queued;
                    self.queue.push_back(u);
                }
            }
        }
        Ok(settled)
    }

    /// Step 2. Starts queued units, in queue order, while they fit: a unit needing more CPUs
    /// than are free (or the GPU while it is held) waits, and later, smaller units may pass it.
    /// When nothing runs, the first queued unit starts whatever it needs. Nothing starts once
    /// the run is `cancelled`; the queue is kept, so [`Scheduler::not_started`] counts it.
    pub fn launch(&mut self, cancelled: bool) -> Vec<usize> {
        let mut started = Vec::new();
        if cancelled {
            return started;
        }
        let mut deferred = VecDeque::new();
        while let Some(u) = self.queue.pop_front() {
            let need = self.need(u);
            let fits = self.running == 0 || (self.cpus_used + need.cpus <= self.jobs && !(need.gpu && self.gpu_busy));
            if !fits {
                deferred.push_back(u);
                if self.cpus_used >= self.jobs {
                    break;
                }
                continue;
            }
            self.state[u] = UnitState::Running;
            self.running += 1;
            self.cpus_used += need.cpus;
            self.gpu_busy |= need.gpu;
            started.push(u);
        }
        deferred.extend(self.queue.drain(..));
        self.queue = deferred;
        started
    }

    /// Step 3. A running unit ended (built or taken from the cache by its worker: `ok`; or
    /// failed); its CPUs and GPU are free again.
    pub fn finished(&mut self, u: usize, ok: bool) {
        debug_assert_eq!(self.state[u], UnitState::Running);
        let need = self.need(u);
        self.running -= 1;
        self.cpus_used -= need.cpus;
        if need.gpu {
            self.gpu_busy = false;
        }
        self.state[u] = if ok { UnitState::Done } else { UnitState::Failed };
    }

    /// Considered units that never started: queued, or waiting on upstream units that did
    /// not finish (after a cancel).
    pub fn not_started(&self) -> usize {
        (0..self.state.len())
            .filter(|&u| self.graph.considered[u] && matches!(self.state[u], UnitState::Queued | UnitState::Waiting))
            .count()
    }

    /// The CPUs a unit takes from the budget: at least one, at most the whole budget.
    fn need(&self, u: usize) -> Need {
        let n = self.graph.needs[u];
        Need { cpus: n.cpus.clamp(1, self.jobs), gpu: n.gpu }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: Need = Need { cpus: 1, gpu: false };

    fn graph(deps: &[&[usize]], needs: &[Need]) -> Graph {
        let n = deps.len();
        Graph {
            deps: deps.iter().map(|d| d.to_vec()).collect(),
            order: (0..n).collect(),
            considered: vec![true; n],
            needs: needs.to_vec(),
        }
    }

    fn build_all(_: usize) -> Result<Decision> {
        Ok(Decision::Build)
    }

    /// Drives a scheduler to the end: every started unit finishes at once with `ok(u)`.
    /// Returns the launch rounds.
    fn drive(s: &mut Scheduler, ok: impl Fn(usize) -> bool) -> Vec<Vec<usize>> {
        let mut rounds = Vec::new();
        loop {
            s.settle(build_all).unwrap();
            let started = s.launch(false);
            if s.running() == 0 {
                return rounds;
            }
            for &u in &started {
                s.finished(u, ok(u));
            }
            rounds.push(started);
        }
    }

    #[test]
    fn settles_in_dependency_order_and_skips_below_a_failure() {
        // 0 -> 1 -> 2, 0 -> 3; 1 fails.
        let mut s = Scheduler::new(graph(&[&[], &[0], &[1], &[0]], &[CPU; 4]), 4);
        let rounds = drive(&mut s, |u| u != 1);
        assert_eq!(rounds, vec![vec![0], vec![1, 3]]);
        assert_eq!(s.state(2), UnitState::Skipped);
        assert_eq!((s.state(1), s.state(3)), (UnitState::Failed, UnitState::Done));
        assert_eq!(s.not_started(), 0);
    }

    #[test]
    fn cached_units_settle_in_one_pass_down_the_graph() {
        let mut s = Scheduler::new(graph(&[&[], &[0], &[1], &[2]], &[CPU; 4]), 2);
        let settled = s.settle(|u| Ok(if u < 3 { Decision::Cached } else { Decision::Build })).unwrap();
        assert_eq!(settled, vec![Settled::Cached(0), Settled::Cached(1), Settled::Cached(2)]);
        assert_eq!(s.launch(false), vec![3]);
    }

    #[test]
    fn budget_lets_small_units_pass_a_big_one_and_holds_the_gpu_once() {
        let big = Need { cpus: 4, gpu: false };
        let gpu = Need { cpus: 1, gpu: true };
        // 0 (1 cpu) runs; 1 needs all 4 -> waits; 2 fits; 3 and 4 want the GPU: one at a time.
        let mut s = Scheduler::new(graph(&[&[], &[], &[], &[], &[]], &[CPU, big, CPU, gpu, gpu]), 4);
        s.settle(build_all).unwrap();
        assert_eq!(s.launch(false), vec![0, 2, 3]);
        s.finished(3, true);
        // The GPU is free again, but only 2 CPUs are: 1 still waits, 4 starts.
        assert_eq!(s.launch(false), vec![4]);
        for u in [0, 2, 4] {
            s.finished(u, true);
        }
        assert_eq!(s.launch(false), vec![1]);
    }

    #[test]
    fn a_unit_wider_than_the_budget_runs_alone() {
        let wide = Need { cpus: 16, gpu: false };
        let mut s = Scheduler::new(graph(&[&[], &[]], &[wide, CPU]), 2);
        s.settle(build_all).unwrap();
        assert_eq!(s.launch(false), vec![0], "clamped to the budget, it fills it");
        s.finished(0, true);
        assert_eq!(s.launch(false), vec![1]);
    }

    #[test]
    fn cancel_keeps_the_queue_and_counts_every_unit_not_started() {
        // Two independent roots and a dependant of each; budget 1.
        let mut s = Scheduler::new(graph(&[&[], &[], &[0], &[1]], &[CPU; 4]), 1);
        s.settle(build_all).unwrap();
        assert_eq!(s.launch(false), vec![0]);
        // Cancelled while 0 runs: the queued root 1 is neither started nor lost.
        assert!(s.launch(true).is_empty());
        s.finished(0, true);
        s.settle(build_all).unwrap();
        assert!(s.launch(true).is_empty());
        assert_eq!(s.running(), 0);
        assert_eq!(s.not_started(), 3, "1 and 2 queued, 3 waiting on 1");
        assert_eq!(s.state(1), UnitState::Queued);
    }

    #[test]
    fn cancel_on_the_last_queued_unit_still_reports_it() {
        let mut s = Scheduler::new(graph(&[&[]], &[CPU]), 1);
        s.settle(build_all).unwrap();
        assert!(s.launch(true).is_empty());
        assert_eq!((s.running(), s.not_started()), (0, 1));
    }

    #[test]
    fn units_not_considered_are_left_alone() {
        let mut g = graph(&[&[], &[0]], &[CPU; 2]);
        g.considered[1] = false;
        let mut s = Scheduler::new(g, 2);
        assert_eq!(drive(&mut s, |_| true), vec![vec![0]]);
        assert_eq!((s.state(1), s.not_started()), (UnitState::Waiting, 0));
    }
}

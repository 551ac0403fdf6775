//! The contract between the engine and a stage kind (`fingerprint`, `plan`, `train-fold`, ...).
//!
//! A kind is a thin adapter: it declares what it reads (params, upstream kinds and which of their
//! files, raw dataset files) and how it fans out; its `run` calls the domain crates and writes
//! into `ctx.out`. It never sees keys, locks or the cache layout.

use anyhow::{anyhow, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::params::ParamSpec;
use nnunet_io::dataset::{Case, Dataset};

/// How a stage item splits into units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fanout {
    /// One unit per item.
    Single,
    /// One unit per training case; with `aggregate`, one more unit that sees all case outputs.
    PerCase { aggregate: bool },
}

/// Which files of an upstream artifact a unit reads. Only those enter its key, so a change to
/// another file of the upstream artifact does not invalidate it (fine-grained early cutoff).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reads {
    /// The whole artifact (its output digest).
    All,
    /// These files (relative to the artifact's `out/`).
    Files(Vec<String>),
}

/// What a unit needs to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    pub cpus: usize,
    pub gpu: bool,
}

impl Resources {
    pub const ONE_CPU: Resources = Resources { cpus: 1, gpu: false };
}

/// A read-only view of a unit, given to a kind's planning hooks.
#[derive(Clone, Debug)]
pub struct UnitView<'a> {
    pub stage: &'a str,
    pub coords: &'a BTreeMap<String, Value>,
    pub case: Option<&'a str>,
    pub params: &'a Value,
}

impl UnitView<'_> {
    pub fn coord_str(&self, axis: &str) -> Option<String> {
        self.coords.get(axis).map(value_str)
    }
}

/// Renders a coordinate value as text (`2d`, `0`).
pub fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One stage kind. Implementations live in `src/kinds/`.
pub trait StageKind: Send + Sync {
    fn name(&self) -> &'static str;
    /// Bump when the implementation changes its outputs: every key of this kind changes.
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    fn params(&self) -> &'static [ParamSpec] {
        &[]
    }
    /// `foreach` axes this kind understands (e.g. `configuration`, `fold`).
    fn axes(&self) -> &'static [&'static str] {
        &[]
    }
    fn fanout(&self) -> Fanout {
        Fanout::Single
    }
    /// Upstream kinds this kind reads; they are found among the stage's `needs` (transitively).
    fn requires(&self) -> &'static [&'static str] {
        &[]
    }
    /// Which files of an upstream artifact of `kind` this unit reads.
    fn reads(&self, _kind: &str, _unit: &UnitView) -> Reads {
        Reads::All
    }
    /// The item a `foreach` item stands for (default: itself). Items mapping to the same
    /// canonical item make one unit: `resample` maps `3d_cascade_fullres` to `3d_fullres`,
    /// whose preprocessed data the cascade trains on.
    fn canonical_item(&self, coords: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
        coords.clone()
    }
    /// The coordinates this unit matches upstream units of `kind` with (default: its own).
    fn upstream_coords(&self, _kind: &str, unit: &UnitView) -> BTreeMap<String, Value> {
        unit.coords.clone()
    }
    /// Whether this unit reads another unit of its own stage, and what of it (default: no).
    /// A cascade's full-resolution stage reads every fold of its low-resolution stage.
    fn reads_sibling(&self, _unit: &UnitView, _sibling: &UnitView) -> Option<Reads> {
        None
    }
    /// Raw dataset files this unit reads (content-hashed into its key).
    fn raw_inputs(&self, _unit: &UnitView, _ds: &Dataset) -> Vec<PathBuf> {
        Vec::new()
    }
    fn resources(&self, _unit: &UnitView, _env: &ExecEnv) -> Resources {
        Resources::ONE_CPU
    }
    /// Resumable kinds run in a persistent work directory (`cache/work/KEY`) that survives a
    /// kill, so a rerun with the same key continues where it stopped (training checkpoints).
    fn resumable(&self) -> bool {
        false
    }
    /// Kinds whose `run` needs libtorch (`pipeline-torch`); the engine binary hands a run over
    /// before it would build one of their units.
    fn torch(&self) -> bool {
        false
    }
    /// One line about a built unit's output (`out`), printed when a run's progress is plain
    /// lines (e.g. a training fold's pseudo-Dice); None: nothing to add.
    fn summary_line(&self, _out: &Path) -> Option<String> {
        None
    }
    /// Checks the raw inputs of the units about to be built (`cases`: their cases, for a
    /// per-case kind) before anything of the run is written; e.g. `fingerprint` verifies the
    /// dataset. Called once per kind per run, for units whose keys are known at the start.
    fn preflight(&self, _ds: &Dataset, _cases: &[&Case]) -> Result<()> {
        Ok(())
    }
    /// Produces the artifact in `ctx.out`.
    fn run(&self, ctx: &RunCtx) -> Result<()>;
}

/// Machine facts given to kinds.
#[derive(Clone, Debug)]
pub struct ExecEnv {
    pub cpus: usize,
    pub device: String,
    /// The run's memory budget: units holding large buffers reserve their peak from it.
    pub memory: std::sync::Arc<crate::memory::MemoryBudget>,
}

/// An upstream artifact made available to a running unit.
#[derive(Clone, Debug)]
pub struct Input {
    pub kind: String,
    pub stage: String,
    pub coords: BTreeMap<String, Value>,
    pub case: Option<String>,
    /// The artifact's `out/` directory.
    pub dir: PathBuf,
}

/// Everything a running unit may use.
pub struct RunCtx<'a> {
    pub out: PathBuf,
    pub stage: String,
    pub params: Value,
    pub coords: BTreeMap<String, Value>,
    pub case: Option<&'a Case>,
    pub dataset: &'a Dataset,
    pub inputs: Vec<Input>,
    /// For an aggregate unit: the outputs of this stage's own case units (case id, dir).
    pub case_outputs: Vec<(String, PathBuf)>,
    pub env: ExecEnv,
    pub progress: &'a (dyn Fn(u64, u64, &str) + Sync),
    pub cancel: &'a AtomicBool,
}

impl RunCtx<'_> {
    pub fn param(&self, name: &str) -> Result<&Value> {
        self.params.get(name).ok_or_else(|| anyhow!("stage {}: parameter '{name}' is not declared", self.stage))
    }
    pub fn param_i64(&self, name: &str) -> Result<i64> {
        self.param(name)?.as_i64().ok_or_else(|| anyhow!("stage {}: parameter '{name}' is not an integer", self.stage))
    }
    pub fn param_f64(&self, name: &str) -> Result<f64> {
        self.param(name)?.as_f64().ok_or_else(|| anyhow!("stage {}: parameter '{name}' is not a number", self.stage))
    }
    pub fn param_bool(&self, name: &str) -> Result<bool> {
        self.param(name)?.as_bool().ok_or_else(|| anyhow!("stage {}: parameter '{name}' is not a boolean", self.stage))
    }
    pub fn param_str(&self, name: &str) -> Result<String> {
        Ok(value_str(self.param(name)?))
    }
    pub fn coord(&self, axis: &str) -> Result<String> {
        self.coords.get(axis).map(value_str).ok_or_else(|| anyhow!("stage {}: no '{axis}' coordinate", self.stage))
    }
    pub fn case(&self) -> Result<&Case> {
        self.case.ok_or_else(|| anyhow!("stage {}: not a per-case unit", self.stage))
    }
    /// The unique upstream artifact of `kind` (for a per-case unit, the one of the same case if
    /// the upstream is per-case).
    pub fn input(&self, kind: &str) -> Result<&Path> {
        let mut it = self.inputs.iter().filter(|i| i.kind == kind);
        let first = it.next().ok_or_else(|| anyhow!("stage {}: no upstream '{kind}' artifact", self.stage))?;
        if it.next().is_some() {
            return Err(anyhow!("stage {}: several upstream '{kind}' artifacts; expected one", self.stage));
        }
        Ok(&first.dir)
    }
    /// All upstream artifacts of `kind`.
    pub fn inputs_of(&self, kind: &str) -> Vec<&Input> {
        self.inputs.iter().filter(|i| i.kind == kind).collect()
    }
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    pub fn check_cancel(&self) -> Result<()> {
        if self.cancelled() {
            Err(anyhow!("cancelled"))
        } else {
            Ok(())
        }
    }
}

//! A `Session` ties a pipeline variant to its dataset, unit graph and cache, and computes unit
//! keys from upstream manifests. It is what `run`, `status`, `show` and the cluster job entry
//! point share.

use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cache::{Cache, Manifest};
use crate::config::{variant_label, PipelineSpec};
use crate::dag::{self, Dag};
use crate::key::KeyComponents;
use crate::kind::{ExecEnv, Reads, StageKind};
use crate::statcache::StatCache;
use nnunet_io::dataset::{open_dataset, Dataset};
use serde_json::Value;

pub struct Session<'a> {
    pub spec: PipelineSpec,
    pub dataset: Dataset,
    pub dag: Dag,
    pub cache: &'a Cache,
    pub stat: &'a StatCache,
    /// Run name for the outputs view and refs (`name` or `name+k=v` for sweep variants).
    pub run_name: String,
    pub env: ExecEnv,
}

/// The evaluated state of one unit.
#[derive(Clone, Debug)]
pub enum UnitState {
    /// Its key is known and the artifact exists.
    Fresh { key: String, manifest: Box<Manifest> },
    /// Its key is known and no artifact exists for it.
    Missing { key: String, components: Box<KeyComponents> },
    /// Some upstream unit is not fresh, so its key is not known yet.
    Blocked,
}

impl<'a> Session<'a> {
    pub fn open(spec: PipelineSpec, cache: &'a Cache, stat: &'a StatCache, env: ExecEnv) -> Result<Session<'a>> {
        let dataset = open_dataset(&spec.dataset.value)
            .with_context(|| format!("dataset {} (from {})", spec.dataset.value.display(), spec.file.display()))?;
        let dag = dag::build(&spec, &dataset)?;
        let run_name = if spec.variant.is_empty() {
            spec.name.clone()
        } else {
            format!("{}+{}", spec.name, variant_label(&spec.variant))
        };
        Ok(Session { spec, dataset, dag, cache, stat, run_name, env })
    }

    /// Path of a raw file as recorded in keys: relative to the dataset root when inside it.
    fn raw_label(&self, p: &Path) -> String {
        let root = std::fs::canonicalize(&self.dataset.root).unwrap_or_else(|_| self.dataset.root.clone());
        let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        abs.strip_prefix(&root)
            .map(|r| r.to_string_lossy().to_string())
            .unwrap_or_else(|_| abs.to_string_lossy().to_string())
    }

    /// Key components of unit `u` given the manifests of its dependencies.
    pub fn components(&self, u: usize, manifests: &[Option<Manifest>]) -> Result<KeyComponents> {
        let unit = &self.dag.units[u];
        let mut inputs = BTreeMap::new();
        for d in &unit.deps {
            let m = manifests[d.unit]
                .as_ref()
                .ok_or_else(|| anyhow!("{}: upstream {} is not built", unit.id, self.dag.units[d.unit].id))?;
            let up = self.dag.units[d.unit].id.to_string();
            match &d.reads {
                Reads::All => {
                    inputs.insert(up, m.digest.clone());
                }
                Reads::Files(files) => {
                    for f in files {
                        let h = m.file_hash(f).ok_or_else(|| {
                            anyhow!(
                                "{}: upstream {} has no output file '{f}' (it has: {})",
                                unit.id,
                                up,
                                m.files.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        })?;
                        inputs.insert(format!("{up}:{f}"), h.to_string());
                    }
                }
            }
        }
        let hashes = self.stat.hash_all(&unit.raw).with_context(|| format!("hashing the raw inputs of {}", unit.id))?;
        let raw = unit.raw.iter().zip(hashes).map(|(p, h)| (self.raw_label(p), h)).collect();
        Ok(KeyComponents {
            kind: unit.kind.name().to_string(),
            version: unit.kind.version(),
            params: key_params(unit.kind, &unit.params),
            coords: unit.coords.clone(),
            case: unit.case.clone(),
            aggregate: unit.aggregate,
            inputs,
            raw,
        })
    }

    /// Evaluates every unit (in dependency order) without running anything.
    pub fn evaluate(&self) -> Result<Vec<UnitState>> {
        let n = self.dag.units.len();
        let mut manifests: Vec<Option<Manifest>> = vec![None; n];
        let mut states = vec![UnitState::Blocked; n];
        for u in self.dag.unit_order() {
            let unit = &self.dag.units[u];
            if unit.deps.iter().any(|d| manifests[d.unit].is_none()) {
                continue;
            }
            let comps = self.components(u, &manifests)?;
            let key = comps.key();
            match self.cache.lookup(unit.kind.name(), &key) {
                Some(m) => {
                    manifests[u] = Some(m.clone());
                    states[u] = UnitState::Fresh { key, manifest: Box::new(m) };
                }
                None => states[u] = UnitState::Missing { key, components: Box::new(comps) },
            }
        }
        Ok(states)
    }

    /// The artifact `out/` dir of a manifest.
    pub fn out_dir(&self, m: &Manifest) -> PathBuf {
        self.cache.artifact_dir(&m.components.kind, &m.key).join("out")
    }
}

/// The params that enter a unit's key: all declared params except those that do not change
/// the output ([`crate::params::ParamSpec::changes_output`]).
fn key_params(kind: &dyn StageKind, params: &Value) -> Value {
    match params {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| kind.params().iter().find(|p| p.name == k.as_str()).is_none_or(|p| p.changes_output))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

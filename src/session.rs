//! A `Session` ties a pipeline variant to its dataset, unit graph and cache, and computes unit
//! keys from upstream manifests. It is what `run`, `status`, `show` and the cluster job entry
//! point share.

use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cache::{Cache, Manifest};
use crate::config::PipelineSpec;
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
    /// Run name for the outputs view and refs (`name`, or `name/LABEL` for a sweep's variants).
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
        let run_name = spec.run_name();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use serde_json::json;

    const STAGES: &str = "  fingerprint:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [fingerprint]\n";

    fn env() -> ExecEnv {
        ExecEnv {
            cpus: 1,
            device: "cpu".into(),
            memory: std::sync::Arc::new(crate::memory::MemoryBudget::new(1 << 30)),
        }
    }

    #[test]
    fn params_that_do_not_change_the_output_stay_out_of_the_key() {
        let train = crate::kinds::by_name(crate::kinds::TRAIN_FOLD).unwrap();
        let p = |workers: i64, save_every: i64, epochs: i64| json!({"workers": workers, "save_every": save_every, "epochs": epochs});
        assert_eq!(key_params(train, &p(0, 10, 5)), key_params(train, &p(4, 1, 5)));
        assert_eq!(key_params(train, &p(0, 10, 5)), json!({"epochs": 5}));
        assert_ne!(key_params(train, &p(0, 10, 5)), key_params(train, &p(0, 10, 6)));
        // Every kind keeps all of its params unless one says otherwise.
        let plan = crate::kinds::by_name(crate::kinds::PLAN).unwrap();
        assert_eq!(key_params(plan, &json!({"num_folds": 5})), json!({"num_folds": 5}));
    }

    #[test]
    fn evaluate_follows_the_cache_and_raw_inputs() {
        let dir = tempfile::tempdir().unwrap();
        testutil::dataset(dir.path(), 2);
        let spec = testutil::pipeline(dir.path(), "", STAGES);
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let stat = StatCache::load(&dir.path().join("stat.json"));
        let s = Session::open(spec, &cache, &stat, env()).unwrap();
        assert_eq!(s.run_name, "t");
        let ids: Vec<String> = s.dag.units.iter().map(|u| u.id.to_string()).collect();
        assert_eq!(ids, ["fingerprint[case=case_000]", "fingerprint[case=case_001]", "fingerprint", "plan"]);
        let states = s.evaluate().unwrap();
        let key0 = match &states[0] {
            UnitState::Missing { key, components } => {
                assert_eq!(components.raw.len(), 2, "image and label of the case");
                key.clone()
            }
            other => panic!("{other:?}"),
        };
        assert!(matches!(states[2], UnitState::Blocked) && matches!(states[3], UnitState::Blocked));
        // Build both case units (empty artifacts): the aggregate's key is then known.
        let no_manifests = vec![None; 4];
        for u in 0..2 {
            let comps = s.components(u, &no_manifests).unwrap();
            let key = comps.key();
            let st = cache.begin("fingerprint", &key, false).unwrap();
            std::fs::write(st.out.join("case.json"), format!("{{\"case\": {u}}}")).unwrap();
            cache.commit(st, &s.dag.units[u].id.to_string(), comps, "t0".into(), 0.5, false).unwrap();
        }
        let states = s.evaluate().unwrap();
        assert!(matches!(&states[0], UnitState::Fresh { key, .. } if *key == key0));
        assert!(matches!(states[2], UnitState::Missing { .. }));
        assert!(matches!(states[3], UnitState::Blocked));
        // A changed raw file changes its case unit's key (stat stamps differ: new size).
        std::fs::write(dir.path().join("ds/labelsTr/case_000.nii.gz"), b"changed").unwrap();
        let stat2 = StatCache::load(&dir.path().join("stat2.json"));
        let s2 = Session::open(s.spec.clone(), &cache, &stat2, env()).unwrap();
        let states = s2.evaluate().unwrap();
        assert!(matches!(&states[0], UnitState::Missing { key, .. } if *key != key0));
        assert!(matches!(states[1], UnitState::Fresh { .. }));
    }

    #[test]
    fn components_name_a_missing_upstream_and_file() {
        let dir = tempfile::tempdir().unwrap();
        testutil::dataset(dir.path(), 1);
        let spec = testutil::pipeline(dir.path(), "", STAGES);
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let stat = StatCache::load(&dir.path().join("stat.json"));
        let s = Session::open(spec, &cache, &stat, env()).unwrap();
        // plan (unit 2) reads fingerprint's dataset_fingerprint.json.
        let e = s.components(2, &[None, None, None]).unwrap_err().to_string();
        assert!(e.contains("plan: upstream fingerprint is not built"), "{e}");
        let comps = s.components(0, &[None, None, None]).unwrap();
        let key = comps.key();
        let st = cache.begin("fingerprint", &key, false).unwrap();
        std::fs::write(st.out.join("other.json"), b"{}").unwrap();
        let m = cache.commit(st, "fingerprint", comps, "t0".into(), 0.1, false).unwrap();
        let e = s.components(2, &[None, Some(m), None]).unwrap_err().to_string();
        assert!(e.contains("has no output file 'dataset_fingerprint.json' (it has: other.json)"), "{e}");
    }
}

//! Unit keys: blake3 over the canonical JSON of everything a unit's output depends on.
//!
//! Components: stage kind and implementation version, the declared params (canonical),
//! coordinates and case, the *output hashes* of the upstream files it reads (so an upstream
//! recompute that reproduces the same bytes leaves this key unchanged: early cutoff), and the
//! content hashes of the raw dataset files it reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

const KEY_CONTEXT: &str = "nnunet-rs 2026-11 pipeline unit key v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyComponents {
    pub kind: String,
    pub version: u32,
    pub params: Value,
    pub coords: BTreeMap<String, Value>,
    pub case: Option<String>,
    pub aggregate: bool,
    /// Upstream input label (`unit` or `unit:file`) -> content hash.
    pub inputs: BTreeMap<String, String>,
    /// Raw file path relative to the dataset root -> content hash.
    pub raw: BTreeMap<String, String>,
}

impl KeyComponents {
    pub fn key(&self) -> String {
        let canon = crate::params::canonical(&serde_json::to_value(self).expect("serialisable"));
        let bytes = serde_json::to_vec(&canon).expect("serialisable");
        let k = blake3::derive_key(KEY_CONTEXT, &bytes);
        hex(&k)
    }

    /// What differs between an earlier key's components and these, in words.
    pub fn diff(&self, old: &KeyComponents) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != old.kind {
            out.push(format!("kind changed: {} -> {}", old.kind, self.kind));
        }
        if self.version != old.version {
            out.push(format!("implementation version of {} changed: {} -> {}", self.kind, old.version, self.version));
        }
        if let (Value::Object(a), Value::Object(b)) = (&old.params, &self.params) {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) if x != y => out.push(format!("param {k}: {x} -> {y}")),
                    (None, Some(y)) => out.push(format!("param {k} added: {y}")),
                    (Some(x), None) => out.push(format!("param {k} removed (was {x})")),
                    _ => {}
                }
            }
        } else if self.params != old.params {
            out.push("params changed".into());
        }
        if self.coords != old.coords {
            out.push("coordinates changed".into());
        }
        diff_maps("input", &old.inputs, &self.inputs, &mut out);
        diff_maps("raw file", &old.raw, &self.raw, &mut out);
        out
    }
}

fn diff_maps(what: &str, old: &BTreeMap<String, String>, new: &BTreeMap<String, String>, out: &mut Vec<String>) {
    const MAX: usize = 8;
    let mut lines = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            Some(o) if o != v => lines.push(format!("{what} {k} changed")),
            None => lines.push(format!("{what} {k} added")),
            _ => {}
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            lines.push(format!("{what} {k} removed"));
        }
    }
    let n = lines.len();
    out.extend(lines.into_iter().take(MAX));
    if n > MAX {
        out.push(format!("... and {} more {what} changes", n - MAX));
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn comps() -> KeyComponents {
        KeyComponents {
            kind: "plan".into(),
            version: 1,
            params: json!({"gpu_memory_gb": 8.0, "planner": "default"}),
            coords: BTreeMap::new(),
            case: None,
            aggregate: false,
            inputs: BTreeMap::from([("fingerprint".into(), "aa".into())]),
            raw: BTreeMap::from([("dataset.json".into(), "bb".into())]),
        }
    }

    #[test]
    fn key_is_stable_and_sensitive() {
        let a = comps();
        assert_eq!(a.key(), comps().key());
        assert_eq!(a.key().len(), 64);
        let mut b = comps();
        b.params = json!({"planner": "default", "gpu_memory_gb": 8.0}); // key order irrelevant
        assert_eq!(a.key(), b.key());
        b.params = json!({"planner": "default", "gpu_memory_gb": 16.0});
        assert_ne!(a.key(), b.key());
        let d = b.diff(&a);
        assert_eq!(d, vec!["param gpu_memory_gb: 8.0 -> 16.0"]);
        let mut c = comps();
        c.inputs.insert("fingerprint".into(), "cc".into());
        assert_ne!(a.key(), c.key());
        assert_eq!(c.diff(&a), vec!["input fingerprint changed"]);
    }
}

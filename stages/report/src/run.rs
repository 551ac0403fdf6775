//! The run folder: `run.json` and lenient readers for the stage files under it.
//!
//! Stage folders are found by stage *kind* through `run.json` (a pipeline may name its stages
//! differently), falling back to the default names (`fingerprint`, `plan`, `train`, `select`,
//! `postprocess`, `predict`, `evaluate`). Every reader returns `Ok(None)` for a missing file
//! and `Err(message naming the file)` for one that cannot be read; nothing panics.

use crate::error::{ReportError, Result};
use nnunet_eval::summary::Summary;
use nnunet_io::table::Table;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One unit of `run.json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnitInfo {
    pub unit: String,
    pub stage: String,
    pub kind: Option<String>,
    /// built | cached | failed | skipped | notselected
    pub outcome: String,
    pub key: Option<String>,
    pub error: Option<String>,
    /// Seconds the unit took in this run.
    pub seconds: f64,
    /// Seconds building its artifact took, in this run or an earlier one.
    pub build_seconds: Option<f64>,
    /// When its artifact was built (RFC 3339).
    pub built_at: Option<String>,
}

/// `run.json`, read leniently (absent fields are empty).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunInfo {
    pub run: String,
    pub pipeline: Option<String>,
    pub dataset: Option<String>,
    pub cache: Option<String>,
    pub variant: Vec<(String, String)>,
    /// Every override that made this run (`variants:` entry and `--set`), `KEY=VALUE`.
    pub overrides: Vec<(String, String)>,
    pub seconds: f64,
    pub built: u64,
    pub cached: u64,
    pub failed: u64,
    pub skipped: u64,
    pub units: Vec<UnitInfo>,
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl RunInfo {
    pub fn parse(v: &Value) -> std::result::Result<RunInfo, String> {
        let o = v.as_object().ok_or("the top level must be an object")?;
        let s = |k: &str| o.get(k).filter(|x| !x.is_null()).map(value_text);
        let n = |k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
        let pairs = |v: Option<&Value>| -> Vec<(String, String)> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_object)
                        .map(|m| {
                            (
                                m.get("key").map(value_text).unwrap_or_default(),
                                m.get("value").map(value_text).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let overrides = pairs(o.get("overrides"));
        let variant = match o.get("variant") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|e| match e {
                    Value::Object(m) if m.contains_key("key") => (
                        m.get("key").map(value_text).unwrap_or_default(),
                        m.get("value").map(value_text).unwrap_or_default(),
                    ),
                    other => (value_text(other), String::new()),
                })
                .collect(),
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), value_text(v))).collect(),
            Some(Value::String(s)) if !s.is_empty() => vec![(s.clone(), String::new())],
            _ => Vec::new(),
        };
        let units = o
            .get("units")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_object)
                    .map(|u| {
                        let us = |k: &str| u.get(k).filter(|x| !x.is_null()).map(value_text);
                        UnitInfo {
                            unit: us("unit").unwrap_or_default(),
                            stage: us("stage").unwrap_or_default(),
                            kind: us("kind"),
                            outcome: us("outcome").unwrap_or_default().to_lowercase(),
                            key: us("key").filter(|k| !k.is_empty()),
                            error: us("error"),
                            seconds: u.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
                            build_seconds: u.get("build_seconds").and_then(Value::as_f64),
                            built_at: us("built_at"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(RunInfo {
            run: s("run").unwrap_or_default(),
            pipeline: s("pipeline"),
            dataset: s("dataset"),
            cache: s("cache"),
            variant,
            overrides,
            seconds: o.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
            built: n("built"),
            cached: n("cached"),
            failed: n("failed"),
            skipped: n("skipped"),
            units,
        })
    }
}

/// An opened run folder.
#[derive(Clone, Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
    pub info: RunInfo,
}

/// Default stage names of the default `pipeline.yaml`, by kind.
const DEFAULT_STAGE: &[(&str, &str)] = &[
    ("fingerprint", "fingerprint"),
    ("plan", "plan"),
    ("train-fold", "train"),
    ("ensemble-select", "select"),
    ("postprocess", "postprocess"),
    ("predict", "predict"),
    ("evaluate", "evaluate"),
];

impl RunFolder {
    /// Opens `dir`; fails only when `run.json` is missing or not a JSON object.
    pub fn open(dir: &Path) -> Result<RunFolder> {
        let path = dir.join("run.json");
        if !path.is_file() {
            return Err(ReportError::NoRunJson(dir.to_path_buf()));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Io { path: path.clone(), source })?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ReportError::RunJson { path: path.clone(), msg: format!("invalid JSON: {e}") })?;
        let mut info = RunInfo::parse(&v).map_err(|msg| ReportError::RunJson { path: path.clone(), msg })?;
        if info.run.is_empty() {
            info.run = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        }
        Ok(RunFolder { dir: dir.to_path_buf(), info })
    }

    /// The view folder of the stage of `kind` (it may not exist).
    pub fn stage_dir(&self, kind: &str) -> PathBuf {
        let by_kind = self.info.units.iter().find(|u| u.kind.as_deref() == Some(kind)).map(|u| u.stage.clone());
        let name = by_kind.unwrap_or_else(|| {
            DEFAULT_STAGE.iter().find(|(k, _)| *k == kind).map_or(kind.to_string(), |(_, s)| s.to_string())
        });
        self.dir.join(name)
    }

    /// A path relative to the run folder, for messages.
    pub fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.dir).unwrap_or(p).display().to_string()
    }

    pub fn json(&self, p: &Path) -> std::result::Result<Option<Value>, String> {
        read_json(p).map_err(|m| format!("{}: {m}", self.rel(p)))
    }

    pub fn table(&self, p: &Path) -> std::result::Result<Option<Table>, String> {
        if !p.is_file() {
            return Ok(None);
        }
        // TableError names the absolute path; report it relative to the run.
        Table::read_parquet(p).map(Some).map_err(|e| match e {
            nnunet_io::table::TableError::File { msg, .. } => format!("{}: {msg}", self.rel(p)),
            other => format!("{}: {other}", self.rel(p)),
        })
    }

    pub fn summary(&self, p: &Path) -> std::result::Result<Option<Summary>, String> {
        if !p.is_file() {
            return Ok(None);
        }
        Summary::read_json(p).map(Some).map_err(|e| format!("{}: {}", self.rel(p), strip_path(&e.to_string(), p)))
    }
}

/// Drops a leading "PATH: " from an error message that already names the file.
fn strip_path(msg: &str, p: &Path) -> String {
    let prefix = format!("{}: ", p.display());
    msg.strip_prefix(&prefix).unwrap_or(msg).to_string()
}

/// Reads a JSON file: `Ok(None)` when it does not exist. nnU-Net writes `NaN`/`Infinity`
/// tokens; they are read as null.
pub fn read_json(p: &Path) -> std::result::Result<Option<Value>, String> {
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(p).map_err(|e| e.to_string())?;
    match serde_json::from_str(&text) {
        Ok(v) => Ok(Some(v)),
        Err(first) => {
            let cleaned = replace_nan_tokens(&text);
            serde_json::from_str(&cleaned).map(Some).map_err(|_| format!("invalid JSON: {first}"))
        }
    }
}

/// Replaces bare `NaN`, `Infinity`, `-Infinity` outside strings with `null`.
fn replace_nan_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escape = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escape {
                escape = false;
            } else if c == '\\' {
                escape = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push_str("null");
            rest = &rest[t.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `Value` -> f64, null/absent/non-number as NaN.
pub fn num(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// Sub-folders `prefix=VALUE` of `dir`, as `(VALUE, path)`, sorted numerically where possible.
pub fn axis_dirs(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = name.strip_prefix(prefix)?.strip_prefix('=')?.to_string();
            e.path().is_dir().then_some((v, e.path()))
        })
        .collect();
    out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    out
}

/// Numbers before text, numbers by value (`0, 1, 2, 10, all`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

/// Segmentation files (`*.nii.gz`, `*.nii`) of a folder, sorted, as `(case id, path)`.
pub fn segmentations(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let id = name.strip_suffix(".nii.gz").or_else(|| name.strip_suffix(".nii"))?.to_string();
            e.path().is_file().then_some((id, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// A case id from a file name or path (`/x/case_001.nii.gz` -> `case_001`).
pub fn case_id(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.strip_suffix(".nii.gz").or_else(|| base.strip_suffix(".nii")).unwrap_or(base).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_tokens_outside_strings_only() {
        let t = r#"{"a": NaN, "b": "NaN", "c": [-Infinity, 1.5], "d": "x\"NaN"}"#;
        let v: Value = serde_json::from_str(&replace_nan_tokens(t)).unwrap();
        assert!(v["a"].is_null());
        assert_eq!(v["b"], "NaN");
        assert!(v["c"][0].is_null());
        assert_eq!(v["d"], "x\"NaN");
    }

    #[test]
    fn run_json_is_lenient() {
        let v: Value = serde_json::from_str(
            r#"{"run": "r", "variant": [{"key": "train.epochs", "value": 5}], "units": [{"unit": "plan", "stage": "plan", "outcome": "Built", "seconds": 1.5}]}"#,
        )
        .unwrap();
        let r = RunInfo::parse(&v).unwrap();
        assert_eq!(r.variant, vec![("train.epochs".to_string(), "5".to_string())]);
        assert_eq!(r.units[0].outcome, "built");
        assert_eq!(r.units[0].key, None);
        assert!(RunInfo::parse(&Value::from(3)).is_err());
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["10", "all", "2", "0"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["0", "2", "10", "all"]);
        assert_eq!(case_id("/p/synth_001.nii.gz"), "synth_001");
    }
}

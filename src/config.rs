//! The `pipeline.yaml` model: parsing with line/column errors, `--set` overrides and sweeps.
//!
//! Parsing is two-phase: serde-saphyr turns the file into [`RawPipeline`] (unknown keys are
//! rejected there, with a source snippet), then [`crate::dag`] checks kinds, edges and params
//! against the stage registry, reporting the line and column kept in each `Spanned` value.

use anyhow::{anyhow, bail, Context, Result};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

use crate::params::{parse_scalar, split_sweep};

/// A value with the place it was written (line, column; 0 for values from the command line).
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub value: T,
    pub line: u64,
    pub column: u64,
}

impl<T> Located<T> {
    pub fn cli(value: T) -> Self {
        Self { value, line: 0, column: 0 }
    }
    fn from_spanned(s: Spanned<T>) -> Self {
        Self { line: s.referenced.line(), column: s.referenced.column(), value: s.value }
    }
    /// "line L, column C" or "--set" for command-line values.
    pub fn at(&self) -> String {
        if self.line == 0 {
            "--set".to_string()
        } else {
            format!("line {}, column {}", self.line, self.column)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    name: Option<String>,
    dataset: Spanned<String>,
    #[serde(default)]
    cache: Option<String>,
    #[serde(default)]
    outputs: Option<String>,
    #[serde(default)]
    executor: Option<Spanned<String>>,
    #[serde(default)]
    device: Option<Spanned<String>>,
    #[serde(default)]
    jobs: Option<Spanned<usize>>,
    /// Memory budget of a run, e.g. `8G` (see `memory.rs`).
    #[serde(default)]
    memory: Option<Spanned<String>>,
    #[serde(default)]
    params: IndexMap<String, Spanned<Value>>,
    #[serde(default)]
    slurm: Option<SlurmSettings>,
    stages: IndexMap<String, RawStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    uses: Spanned<String>,
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    #[serde(default, rename = "with")]
    with_: IndexMap<String, Spanned<Value>>,
    #[serde(default)]
    foreach: IndexMap<String, Spanned<Value>>,
}

/// Slurm executor settings (per stage kind overrides in `per_kind`).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub mem: Option<String>,
    #[serde(default)]
    pub extra: Vec<String>,
    #[serde(default)]
    pub per_kind: IndexMap<String, SlurmKindSettings>,
    /// Seconds between polls of squeue while waiting.
    #[serde(default)]
    pub poll_seconds: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmKindSettings {
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub mem: Option<String>,
    #[serde(default)]
    pub cpus: Option<usize>,
    #[serde(default)]
    pub gpus: Option<usize>,
    #[serde(default)]
    pub extra: Vec<String>,
}

/// One stage as written in the file (after `--set`).
#[derive(Clone, Debug)]
pub struct StageSpec {
    pub name: String,
    pub uses: Located<String>,
    pub needs: Vec<Located<String>>,
    pub with: IndexMap<String, Located<Value>>,
    pub foreach: IndexMap<String, Located<Value>>,
}

/// The whole pipeline file, resolved against its directory, with overrides applied.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    pub file: PathBuf,
    pub name: String,
    pub dataset: Located<PathBuf>,
    pub cache: PathBuf,
    pub outputs: PathBuf,
    pub executor: Located<String>,
    pub device: Located<String>,
    pub jobs: Option<usize>,
    /// Memory budget (`memory:`, `--set memory=`, `run --memory`), e.g. `8G`; None: the default.
    pub memory: Option<Located<String>>,
    pub params: IndexMap<String, Located<Value>>,
    pub slurm: SlurmSettings,
    pub stages: Vec<StageSpec>,
    /// The `--set` assignments that produced this variant (empty for the base pipeline).
    pub variant: Vec<(String, Value)>,
    /// Every `--set` applied, as `KEY=VALUE` text (to re-create this variant in cluster jobs).
    pub sets: Vec<String>,
}

impl PipelineSpec {
    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Reads and parses `file`. Relative paths in it are relative to the file's directory.
pub fn load(file: &Path) -> Result<PipelineSpec> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read pipeline file {}", file.display()))?;
    parse(&text, file)
}

pub fn parse(text: &str, file: &Path) -> Result<PipelineSpec> {
    let raw: RawPipeline = serde_saphyr::from_str(text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let resolve = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            base.join(p)
        }
    };
    let name =
        raw.name.clone().unwrap_or_else(|| file.file_stem().and_then(|s| s.to_str()).unwrap_or("pipeline").to_string());
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("{}: name '{name}' must be a plain folder name", file.display());
    }
    let dataset = Located::from_spanned(raw.dataset);
    let stages = raw
        .stages
        .into_iter()
        .map(|(name, s)| StageSpec {
            name,
            uses: Located::from_spanned(s.uses),
            needs: s.needs.into_iter().map(Located::from_spanned).collect(),
            with: s.with_.into_iter().map(|(k, v)| (k, Located::from_spanned(v))).collect(),
            foreach: s.foreach.into_iter().map(|(k, v)| (k, Located::from_spanned(v))).collect(),
        })
        .collect();
    Ok(PipelineSpec {
        file: file.to_path_buf(),
        name,
        dataset: Located { value: resolve(&dataset.value), line: dataset.line, column: dataset.column },
        cache: resolve(raw.cache.as_deref().unwrap_or("cache")),
        outputs: resolve(raw.outputs.as_deref().unwrap_or("runs")),
        executor: raw.executor.map(Located::from_spanned).unwrap_or_else(|| Located::cli("local".into())),
        device: raw.device.map(Located::from_spanned).unwrap_or_else(|| Located::cli("auto".into())),
        jobs: raw.jobs.map(|j| j.value),
        memory: raw.memory.map(Located::from_spanned),
        params: raw.params.into_iter().map(|(k, v)| (k, Located::from_spanned(v))).collect(),
        slurm: raw.slurm.unwrap_or_default(),
        stages,
        variant: Vec::new(),
        sets: Vec::new(),
    })
}

/// One `--set KEY=VALUE` assignment, VALUE possibly a sweep `a,b`.
#[derive(Clone, Debug)]
pub struct SetArg {
    pub key: String,
    pub values: Vec<Value>,
}

pub fn parse_set(arg: &str) -> Result<SetArg> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {arg}: expected KEY=VALUE (e.g. train.epochs=5 or seed=1)"))?;
    let key = k.trim().to_string();
    if key.is_empty() {
        bail!("--set {arg}: empty key");
    }
    let values = split_sweep(v).iter().map(|s| parse_scalar(s.trim())).collect();
    Ok(SetArg { key, values })
}

/// Expands `--set` assignments into the cartesian product of variants.
pub fn expand_sweeps(base: &PipelineSpec, sets: &[SetArg]) -> Result<Vec<PipelineSpec>> {
    let mut variants: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for s in sets {
        let mut next = Vec::new();
        for v in &variants {
            for val in &s.values {
                let mut w = v.clone();
                w.push((s.key.clone(), val.clone()));
                next.push(w);
            }
        }
        variants = next;
    }
    let sweeping = sets.iter().any(|s| s.values.len() > 1);
    variants
        .into_iter()
        .map(|assign| {
            let mut spec = base.clone();
            for (k, v) in &assign {
                apply_set(&mut spec, k, v.clone())?;
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                spec.sets.push(format!("{k}={text}"));
            }
            if sweeping {
                spec.variant = assign;
            }
            Ok(spec)
        })
        .collect()
}

/// Applies one override: `STAGE.PARAM`, `params.NAME` / `NAME` (global), or a top-level key
/// (`device`, `executor`, `jobs`, `memory`, `name`).
pub fn apply_set(spec: &mut PipelineSpec, key: &str, value: Value) -> Result<()> {
    let as_str = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match key {
        "device" => spec.device = Located::cli(as_str(&value)),
        "executor" => spec.executor = Located::cli(as_str(&value)),
        "memory" => spec.memory = Some(Located::cli(as_str(&value))),
        "name" => spec.name = as_str(&value),
        "jobs" => {
            spec.jobs = Some(value.as_u64().ok_or_else(|| anyhow!("--set jobs: expected a positive integer"))? as usize)
        }
        _ => {
            if let Some(name) = key.strip_prefix("params.") {
                spec.params.insert(name.to_string(), Located::cli(value));
            } else if let Some((stage, param)) = key.split_once('.') {
                let names: Vec<String> = spec.stages.iter().map(|s| s.name.clone()).collect();
                let st = spec.stages.iter_mut().find(|s| s.name == stage).ok_or_else(|| {
                    let hint = crate::params::suggest(stage, names.iter().map(String::as_str))
                        .map(|s| format!(" (did you mean '{s}'?)"))
                        .unwrap_or_default();
                    anyhow!("--set {key}: there is no stage '{stage}'{hint}; stages: {}", names.join(", "))
                })?;
                if let Some(axis) = param.strip_prefix("foreach.") {
                    st.foreach.insert(axis.to_string(), Located::cli(value));
                } else {
                    st.with.insert(param.to_string(), Located::cli(value));
                }
            } else {
                spec.params.insert(key.to_string(), Located::cli(value));
            }
        }
    }
    Ok(())
}

/// A short, path-safe label of a variant (`train.norm=batch+seed=2`).
pub fn variant_label(assign: &[(String, Value)]) -> String {
    assign
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let v: String =
                v.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("+")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const YAML: &str = "\
name: demo
dataset: data/x
params:
  seed: 3
stages:
  fingerprint:
    uses: fingerprint
  plan:
    uses: plan
    needs: [fingerprint]
    with:
      gpu_memory_gb: 8
";

    #[test]
    fn parses_and_resolves_paths() {
        let s = parse(YAML, Path::new("/tmp/p/pipeline.yaml")).unwrap();
        assert_eq!(s.name, "demo");
        assert_eq!(s.dataset.value, PathBuf::from("/tmp/p/data/x"));
        assert_eq!(s.cache, PathBuf::from("/tmp/p/cache"));
        assert_eq!(s.stages.len(), 2);
        assert_eq!(s.stages[1].needs[0].value, "fingerprint");
        assert_eq!(s.stages[1].with["gpu_memory_gb"].line, 12);
    }

    #[test]
    fn unknown_key_has_line_and_column() {
        let bad = YAML.replace("    with:", "    wiht:");
        let e = parse(&bad, Path::new("p.yaml")).unwrap_err().to_string();
        assert!(e.contains("wiht"), "{e}");
        assert!(e.contains("11"), "no line number in: {e}");
    }

    #[test]
    fn sweeps_expand_cartesian() {
        let s = parse(YAML, Path::new("p.yaml")).unwrap();
        let sets = vec![parse_set("plan.gpu_memory_gb=8,16").unwrap(), parse_set("seed=1,2").unwrap()];
        let v = expand_sweeps(&s, &sets).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3].stage("plan").unwrap().with["gpu_memory_gb"].value, json!(16));
        assert_eq!(v[3].params["seed"].value, json!(2));
        assert_eq!(variant_label(&v[3].variant), "plan.gpu_memory_gb=16+seed=2");
        assert!(parse_set("nokey").is_err());
        let e = expand_sweeps(&s, &[parse_set("plam.x=1").unwrap()]).unwrap_err().to_string();
        assert!(e.contains("did you mean 'plan'"), "{e}");
    }
}

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
    /// Named variants: `NAME: {KEY: VALUE, ...}` (the same keys as `--set`); the first is the
    /// baseline of the sweep report.
    #[serde(default)]
    variants: IndexMap<String, Option<IndexMap<String, Spanned<Value>>>>,
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
    /// The named variants declared under `variants:` (name, overrides), in file order.
    pub variants: Vec<NamedVariant>,
    /// What makes this variant differ from the other variants of its sweep: the `--set`
    /// assignments that sweep (`a,b`), in order (empty for a single pipeline).
    pub variant: Vec<(String, Value)>,
    /// The `variants:` entry this spec was made from, if any.
    pub variant_name: Option<String>,
    /// Every override applied, `KEY=VALUE`: the named variant's, then every `--set` (swept or
    /// not). Shown in reports.
    pub overrides: Vec<(String, Value)>,
    /// The `--set` assignments applied, as `KEY=VALUE` text (with `variant_name`, re-creates
    /// this variant in cluster jobs).
    pub sets: Vec<String>,
    /// Whether this spec is one variant of several (a sweep): its run folder is then
    /// `OUTPUTS/NAME/LABEL` (see [`PipelineSpec::run_name`]).
    pub in_sweep: bool,
}

/// One entry of `variants:`.
#[derive(Clone, Debug)]
pub struct NamedVariant {
    pub name: String,
    pub overrides: Vec<(String, Located<Value>)>,
}

impl PipelineSpec {
    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The label of this variant within its sweep: the `variants:` name, then the swept
    /// `--set` values (`batch_norm+train.seed=2`); empty for a single pipeline.
    pub fn variant_label(&self) -> String {
        let mut parts: Vec<String> = self.variant_name.iter().cloned().collect();
        let swept = variant_label(&self.variant);
        if !swept.is_empty() {
            parts.push(swept);
        }
        parts.join("+")
    }

    /// The run name: the pipeline's `name`, or `NAME/LABEL` for a variant of a sweep, so every
    /// variant's run folder sits under the sweep's folder `OUTPUTS/NAME/`.
    pub fn run_name(&self) -> String {
        let label = self.variant_label();
        if self.in_sweep && !label.is_empty() {
            format!("{}/{label}", self.name)
        } else {
            self.name.clone()
        }
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
    let mut variants = Vec::new();
    for (vname, overrides) in raw.variants {
        if vname.is_empty() || !vname.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            bail!("{}: variants: name '{vname}' must be a plain name (letters, digits, '.', '_', '-')", file.display());
        }
        let overrides = overrides.unwrap_or_default().into_iter().map(|(k, v)| (k, Located::from_spanned(v))).collect();
        variants.push(NamedVariant { name: vname, overrides });
    }
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
        variants,
        variant: Vec::new(),
        variant_name: None,
        overrides: Vec::new(),
        sets: Vec::new(),
        in_sweep: false,
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

/// Expands the pipeline into its variants: each `variants:` entry (or the pipeline itself when
/// it declares none) × the cartesian product of the `--set` values. `only` picks one named
/// variant (`--variant NAME`). Every variant gets every `--set`; only what differs between
/// variants (the variant name, the swept `--set` values) names it.
pub fn expand_variants(base: &PipelineSpec, sets: &[SetArg], only: Option<&str>) -> Result<Vec<PipelineSpec>> {
    let named: Vec<Option<&NamedVariant>> = match only {
        Some(name) => {
            let v = base.variants.iter().find(|v| v.name == name).ok_or_else(|| {
                let names: Vec<&str> = base.variants.iter().map(|v| v.name.as_str()).collect();
                if names.is_empty() {
                    anyhow!("--variant {name}: {} declares no variants:", base.file.display())
                } else {
                    anyhow!("--variant {name}: no such variant in {}; it has {}", base.file.display(), names.join(", "))
                }
            })?;
            vec![Some(v)]
        }
        None if base.variants.is_empty() => vec![None],
        None => base.variants.iter().map(Some).collect(),
    };
    let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for s in sets {
        let mut next = Vec::new();
        for v in &combos {
            for val in &s.values {
                let mut w = v.clone();
                w.push((s.key.clone(), val.clone()));
                next.push(w);
            }
        }
        combos = next;
    }
    let swept: Vec<&str> = sets.iter().filter(|s| s.values.len() > 1).map(|s| s.key.as_str()).collect();
    // A variant picked out of several declared ones keeps its folder in the sweep's.
    let in_sweep = named.len() * combos.len() > 1 || base.variants.len() > 1;
    let mut out = Vec::with_capacity(named.len() * combos.len());
    for nv in &named {
        for assign in &combos {
            let mut spec = base.clone();
            if let Some(nv) = nv {
                for (k, v) in &nv.overrides {
                    apply_set(&mut spec, k, v.value.clone())
                        .with_context(|| format!("{}: variant {} ({})", base.file.display(), nv.name, v.at()))?;
                    spec.overrides.push((k.clone(), v.value.clone()));
                }
                spec.variant_name = Some(nv.name.clone());
            }
            for (k, v) in assign {
                apply_set(&mut spec, k, v.clone())?;
                spec.sets.push(format!("{k}={}", value_text(v)));
                spec.overrides.push((k.clone(), v.clone()));
            }
            spec.variant = assign.iter().filter(|(k, _)| swept.contains(&k.as_str())).cloned().collect();
            spec.in_sweep = in_sweep;
            out.push(spec);
        }
    }
    Ok(out)
}

/// A JSON value as `--set` text (strings without quotes).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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
        let v = expand_variants(&s, &sets, None).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3].stage("plan").unwrap().with["gpu_memory_gb"].value, json!(16));
        assert_eq!(v[3].params["seed"].value, json!(2));
        assert_eq!(v[3].variant_label(), "plan.gpu_memory_gb=16+seed=2");
        assert_eq!(v[3].run_name(), "demo/plan.gpu_memory_gb=16+seed=2");
        assert!(parse_set("nokey").is_err());
        let e = expand_variants(&s, &[parse_set("plam.x=1").unwrap()], None).unwrap_err().to_string();
        assert!(e.contains("did you mean 'plan'"), "{e}");
    }

    #[test]
    fn fixed_sets_apply_to_every_variant_but_do_not_name_it() {
        let s = parse(YAML, Path::new("p.yaml")).unwrap();
        let sets: Vec<SetArg> =
            ["plan.x=1", "seed=7", "plan.gpu_memory_gb=8,16"].iter().map(|a| parse_set(a).unwrap()).collect();
        let v = expand_variants(&s, &sets, None).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].params["seed"].value, json!(7));
        assert_eq!(v[1].run_name(), "demo/plan.gpu_memory_gb=16");
        assert_eq!(v[1].sets, vec!["plan.x=1", "seed=7", "plan.gpu_memory_gb=16"]);
        assert_eq!(v[1].overrides.len(), 3);
        // No sweep: one variant, named after the pipeline alone.
        let one = expand_variants(&s, &sets[..2], None).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].run_name(), "demo");
        assert!(!one[0].in_sweep);
    }

    #[test]
    fn named_variants_one_at_a_time() {
        let yaml = format!(
            "{YAML}variants:\n  baseline:\n  big: {{plan.gpu_memory_gb: 16}}\n  seeded: {{seed: 5, plan.gpu_memory_gb: 4}}\n"
        );
        let s = parse(&yaml, Path::new("p.yaml")).unwrap();
        assert_eq!(s.variants.len(), 3);
        let v = expand_variants(&s, &[parse_set("seed=1").unwrap()], None).unwrap();
        assert_eq!(v.iter().map(|x| x.run_name()).collect::<Vec<_>>(), ["demo/baseline", "demo/big", "demo/seeded"]);
        assert_eq!(v[0].stage("plan").unwrap().with["gpu_memory_gb"].value, json!(8));
        assert_eq!(v[1].stage("plan").unwrap().with["gpu_memory_gb"].value, json!(16));
        // --set comes after the variant's own overrides.
        assert_eq!(v[2].params["seed"].value, json!(1));
        assert_eq!(v[2].stage("plan").unwrap().with["gpu_memory_gb"].value, json!(4));
        // A named variant crossed with a sweep.
        let x = expand_variants(&s, &[parse_set("seed=1,2").unwrap()], None).unwrap();
        assert_eq!(x.len(), 6);
        assert_eq!(x[5].run_name(), "demo/seeded+seed=2");
        // --variant picks one: a single run, in the sweep's folder all the same.
        let one = expand_variants(&s, &[], Some("big")).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].variant_name.as_deref(), Some("big"));
        assert_eq!(one[0].run_name(), "demo/big");
        let e = expand_variants(&s, &[], Some("nope")).unwrap_err().to_string();
        assert!(e.contains("baseline, big, seeded"), "{e}");
        let bad = format!("{YAML}variants:\n  x: {{plam.gpu_memory_gb: 1}}\n");
        let e = format!("{:#}", expand_variants(&parse(&bad, Path::new("p.yaml")).unwrap(), &[], None).unwrap_err());
        assert!(e.contains("variant x") && e.contains("line"), "{e}");
        let bad = format!("{YAML}variants:\n  a/b: {{}}\n");
        assert!(parse(&bad, Path::new("p.yaml")).is_err());
    }
}

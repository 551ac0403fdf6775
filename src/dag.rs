//! From a [`PipelineSpec`] to the unit graph: stages are checked against the kind registry,
//! `foreach` axes expand into items, per-case kinds fan out into one unit per case (plus an
//! aggregate), and each unit gets its dependencies on upstream units.
//!
//! Dependency rule: a unit of stage S depends, for every kind S requires, on the nearest stage T
//! of that kind among S's `needs` (transitively), on those of T's units whose coordinates agree
//! with S's on shared axes; a per-case unit depends on the same case's unit of a per-case T.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;

use crate::config::{Located, PipelineSpec};
use crate::kind::{value_str, Fanout, Reads, StageKind, UnitView};
use crate::kinds::registry;
use crate::params::{normalize, suggest};
use nnunet_io::dataset::Dataset;

/// Identity of a unit: stage, coordinates, and case (per-case units) — stable across runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId {
    pub stage: String,
    pub coords: Vec<(String, String)>,
    pub case: Option<String>,
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.stage)?;
        if !self.coords.is_empty() || self.case.is_some() {
            let mut parts: Vec<String> = self.coords.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if let Some(c) = &self.case {
                parts.push(format!("case={c}"));
            }
            write!(f, "[{}]", parts.join(","))?;
        }
        Ok(())
    }
}

/// A dependency edge of a unit.
#[derive(Clone, Debug)]
pub struct Dep {
    pub unit: usize,
    pub reads: Reads,
}

pub struct Unit {
    pub id: UnitId,
    pub stage: usize,
    pub kind: &'static dyn StageKind,
    pub params: Value,
    pub coords: BTreeMap<String, Value>,
    pub case: Option<String>,
    /// An aggregate unit of a per-case stage (sees all of its own case units).
    pub aggregate: bool,
    pub deps: Vec<Dep>,
    pub raw: Vec<PathBuf>,
}

impl Unit {
    pub fn view(&self) -> UnitView<'_> {
        UnitView { stage: &self.id.stage, coords: &self.coords, case: self.case.as_deref(), params: &self.params }
    }
    pub fn is_case_unit(&self) -> bool {
        self.case.is_some()
    }
}

pub struct StageNode {
    pub name: String,
    pub kind: &'static dyn StageKind,
    /// Indices of the stages named in `needs`.
    pub needs: Vec<usize>,
    /// Stage index providing each required kind.
    pub providers: Vec<(String, usize)>,
    pub units: Vec<usize>,
}

pub struct Dag {
    pub stages: Vec<StageNode>,
    pub units: Vec<Unit>,
    /// Stage indices in dependency order.
    pub order: Vec<usize>,
}

fn located_err<T>(file: &str, at: &Located<T>, msg: String) -> anyhow::Error {
    if at.line == 0 {
        anyhow!("{msg} (from --set)")
    } else {
        anyhow!("{file}: {}: {msg}", at.at())
    }
}

/// Checks the spec against the registry and builds the unit graph, in four phases: the
/// stages ([`stage_nodes`]: kinds and `needs`, in dependency order), the global params
/// ([`check_global_params`]), the providers of each stage's required kinds
/// ([`resolve_providers`]), and the units with their dependencies ([`expand_units`]).
pub fn build(spec: &PipelineSpec, ds: &Dataset) -> Result<Dag> {
    let file = spec.file.display().to_string();
    let mut stages = stage_nodes(&file, spec)?;
    let order = topo_order(&stages)?;
    check_global_params(&file, spec, &stages)?;
    resolve_providers(&file, spec, &mut stages)?;
    let units = expand_units(&file, spec, ds, &mut stages, &order)?;
    Ok(Dag { stages, units, order })
}

/// Phase 1: one node per stage, its kind looked up in the registry and its `needs` resolved to
/// stage indices (unknown kinds and stages get a suggestion).
fn stage_nodes(file: &str, spec: &PipelineSpec) -> Result<Vec<StageNode>> {
    let reg = registry();
    let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
    let mut stages = Vec::new();
    for s in &spec.stages {
        let kind = crate::kinds::by_name(&s.uses.value).ok_or_else(|| {
            let hint = suggest(&s.uses.value, reg.iter().map(|k| k.name()))
                .map(|h| format!(" (did you mean '{h}'?)"))
                .unwrap_or_default();
            let all: Vec<&str> = reg.iter().map(|k| k.name()).collect();
            located_err(
                file,
                &s.uses,
                format!(
                    "stage '{}': unknown stage kind '{}'{hint}; known kinds: {}",
                    s.name,
                    s.uses.value,
                    all.join(", ")
                ),
            )
        })?;
        let mut needs = Vec::new();
        for n in &s.needs {
            let i = names.iter().position(|x| *x == n.value).ok_or_else(|| {
                let hint = suggest(&n.value, names.iter().copied())
                    .map(|h| format!(" (did you mean '{h}'?)"))
                    .unwrap_or_default();
                located_err(file, n, format!("stage '{}' needs '{}', which is not a stage{hint}", s.name, n.value))
            })?;
            if names[i] == s.name {
                return Err(located_err(file, n, format!("stage '{}' needs itself", s.name)));
            }
            needs.push(i);
        }
        stages.push(StageNode { name: s.name.clone(), kind, needs, providers: Vec::new(), units: Vec::new() });
    }
    Ok(stages)
}

/// Phase 2: a global param must be read by some stage (typo protection) or feed a `foreach`
/// axis (`folds` for `fold`).
fn check_global_params(file: &str, spec: &PipelineSpec, stages: &[StageNode]) -> Result<()> {
    for (k, v) in &spec.params {
        let used = stages.iter().any(|st| {
            st.kind.params().iter().any(|p| p.name == k) || st.kind.axes().iter().any(|a| format!("{a}s") == *k)
        });
        if !used {
            let all = stages.iter().flat_map(|st| st.kind.params().iter().map(|p| p.name));
            let hint = suggest(k, all).map(|h| format!(" (did you mean '{h}'?)")).unwrap_or_default();
            return Err(located_err(file, v, format!("params.{k} is not read by any stage{hint}")));
        }
    }
    Ok(())
}

/// Phase 3: for every kind a stage requires, the stage providing it: the nearest stage of that
/// kind among its `needs`, breadth-first; none or several at the same distance is an error.
fn resolve_providers(file: &str, spec: &PipelineSpec, stages: &mut [StageNode]) -> Result<()> {
    for si in 0..stages.len() {
        let mut providers = Vec::new();
        for &req in stages[si].kind.requires() {
            let nearest = nearest_of_kind(stages, si, req);
            match nearest.as_slice() {
                [one] => providers.push((req.to_string(), *one)),
                [] => {
                    return Err(located_err(
                        file,
                        &spec.stages[si].uses,
                        format!(
                            "stage '{}' ({}) reads a '{req}' artifact, but no stage using '{req}' is among its needs (directly or transitively)",
                            stages[si].name,
                            stages[si].kind.name()
                        ),
                    ))
                }
                many => bail!(
                    "{file}: stage '{}' can read '{req}' from several stages at the same distance ({}); name one in its needs",
                    stages[si].name,
                    many.iter().map(|&i| stages[i].name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        stages[si].providers = providers;
    }
    Ok(())
}

/// Stages of kind `kind` among stage `si`'s needs (transitively) at the smallest distance.
fn nearest_of_kind(stages: &[StageNode], si: usize, kind: &str) -> Vec<usize> {
    let mut seen = vec![false; stages.len()];
    let mut queue: VecDeque<(usize, usize)> = stages[si].needs.iter().map(|&n| (n, 1)).collect();
    let mut found: Vec<(usize, usize)> = Vec::new();
    while let Some((n, d)) = queue.pop_front() {
        if seen[n] {
            continue;
        }
        seen[n] = true;
        if stages[n].kind.name() == kind {
            found.push((n, d));
            continue;
        }
        queue.extend(stages[n].needs.iter().map(|&m| (m, d + 1)));
    }
    let best = found.iter().map(|f| f.1).min();
    found.into_iter().filter(|f| Some(f.1) == best).map(|f| f.0).collect()
}

/// Phase 4: the units of every stage (in dependency order), with their params, raw inputs and
/// dependencies on upstream units.
fn expand_units(
    file: &str,
    spec: &PipelineSpec,
    ds: &Dataset,
    stages: &mut [StageNode],
    order: &[usize],
) -> Result<Vec<Unit>> {
    let mut units: Vec<Unit> = Vec::new();
    for &si in order {
        let params = resolve_params(file, spec, si)?;
        let kind = stages[si].kind;
        // Items the kind treats as the same (its canonical form) make one unit.
        let mut items: Vec<BTreeMap<String, Value>> = Vec::new();
        for it in expand_items(file, spec, si, kind)? {
            let c = kind.canonical_item(&it);
            if !items.contains(&c) {
                items.push(c);
            }
        }
        let ids = stage_units(&spec.stages[si].name, si, kind, &params, items, ds, &mut units);
        for &u in &ids {
            let mut deps = upstream_deps(file, stages, &units, u)?;
            // Units of the same stage it reads (a cascade stage reads its previous stage).
            for &o in &ids {
                if o != u {
                    if let Some(reads) = kind.reads_sibling(&units[u].view(), &units[o].view()) {
                        deps.push(Dep { unit: o, reads });
                    }
                }
            }
            units[u].deps.extend(deps);
            units[u].raw = kind.raw_inputs(&units[u].view(), ds);
        }
        stages[si].units = order_within_stage(&units, ids)?;
    }
    Ok(units)
}

/// Creates the units of one stage: one per item, or per item one per case (and an aggregate
/// that depends on them) for a per-case kind. Returns their indices.
fn stage_units(
    name: &str,
    si: usize,
    kind: &'static dyn StageKind,
    params: &Value,
    items: Vec<BTreeMap<String, Value>>,
    ds: &Dataset,
    units: &mut Vec<Unit>,
) -> Vec<usize> {
    let mut ids = Vec::new();
    for coords in items {
        let cvec: Vec<(String, String)> = coords.iter().map(|(k, v)| (k.clone(), value_str(v))).collect();
        let make = |case: Option<String>, aggregate: bool, units: &mut Vec<Unit>| {
            units.push(Unit {
                id: UnitId { stage: name.to_string(), coords: cvec.clone(), case: case.clone() },
                stage: si,
                kind,
                params: params.clone(),
                coords: coords.clone(),
                case,
                aggregate,
                deps: Vec::new(),
                raw: Vec::new(),
            });
            units.len() - 1
        };
        match kind.fanout() {
            Fanout::Single => ids.push(make(None, false, units)),
            Fanout::PerCase { aggregate } => {
                let case_units: Vec<usize> = ds.cases.iter().map(|c| make(Some(c.id.clone()), false, units)).collect();
                ids.extend(&case_units);
                if aggregate {
                    let a = make(None, true, units);
                    units[a].deps = case_units.iter().map(|&u| Dep { unit: u, reads: Reads::All }).collect();
                    ids.push(a);
                }
            }
        }
    }
    ids
}

/// Dependencies of unit `u` on the units of its stage's providers: those whose coordinates
/// agree on shared axes; of a per-case provider, the same case's unit (for a per-case unit),
/// else its aggregate, else all its case units.
fn upstream_deps(file: &str, stages: &[StageNode], units: &[Unit], u: usize) -> Result<Vec<Dep>> {
    let unit = &units[u];
    let kind = stages[unit.stage].kind;
    let mut deps = Vec::new();
    for (req, ti) in &stages[unit.stage].providers {
        let t = &stages[*ti];
        let reads = kind.reads(req, &unit.view());
        // The coordinates it reads the provider at (a cascade stage reads its data stage's store).
        let mine = kind.upstream_coords(req, &unit.view());
        let matching = t.units.iter().copied().filter(|&tu| coords_agree(&units[tu].coords, &mine));
        let chosen: Vec<usize> = match (t.kind.fanout(), &unit.case) {
            (Fanout::Single, _) => matching.collect(),
            (Fanout::PerCase { .. }, Some(case)) => {
                matching.filter(|&tu| units[tu].case.as_ref() == Some(case)).collect()
            }
            (Fanout::PerCase { aggregate: true }, None) => matching.filter(|&tu| units[tu].aggregate).collect(),
            (Fanout::PerCase { aggregate: false }, None) => matching.filter(|&tu| units[tu].case.is_some()).collect(),
        };
        if chosen.is_empty() {
            bail!(
                "{file}: {} reads '{req}' from stage '{}', but none of its items matches {:?}",
                unit.id,
                t.name,
                unit.id.coords
            );
        }
        deps.extend(chosen.into_iter().map(|unit| Dep { unit, reads: reads.clone() }));
    }
    Ok(deps)
}

/// A stage's units with every unit after the units of the same stage it reads (stable
/// otherwise), so that evaluation, local scheduling and Slurm submission in stage order see
/// dependencies first.
fn order_within_stage(units: &[Unit], ids: Vec<usize>) -> Result<Vec<usize>> {
    let mut placed = vec![false; units.len()];
    let mut out: Vec<usize> = Vec::with_capacity(ids.len());
    let mut left = ids;
    while !left.is_empty() {
        let (ready, rest): (Vec<usize>, Vec<usize>) = left
            .iter()
            .partition(|&&u| units[u].deps.iter().all(|d| units[d.unit].stage != units[u].stage || placed[d.unit]));
        if ready.is_empty() {
            bail!("the units of stage '{}' read each other in a cycle", units[rest[0]].id.stage);
        }
        for &u in &ready {
            placed[u] = true;
        }
        out.extend(ready);
        left = rest;
    }
    Ok(out)
}

fn coords_agree(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> bool {
    a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

fn topo_order(stages: &[StageNode]) -> Result<Vec<usize>> {
    let n = stages.len();
    let mut state = vec![0u8; n]; // 0 new, 1 on stack, 2 done
    let mut order = Vec::with_capacity(n);
    fn visit(
        i: usize,
        st: &[StageNode],
        state: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> Result<()> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let cyc: Vec<&str> =
                    path[start..].iter().chain(std::iter::once(&i)).map(|&p| st[p].name.as_str()).collect();
                bail!("the stages form a cycle: {}", cyc.join(" -> "));
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for &d in &st[i].needs {
            visit(d, st, state, order, path)?;
        }
        path.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..n {
        visit(i, stages, &mut state, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

/// Declared params of stage `si`: `with:` over global `params:` over the kind's default.
fn resolve_params(file: &str, spec: &PipelineSpec, si: usize) -> Result<Value> {
    let s = &spec.stages[si];
    let kind = crate::kinds::by_name(&s.uses.value).expect("checked kind");
    let declared = kind.params();
    for (k, v) in &s.with {
        if !declared.iter().any(|p| p.name == k) {
            let hint = suggest(k, declared.iter().map(|p| p.name))
                .map(|h| format!(" (did you mean '{h}'?)"))
                .unwrap_or_default();
            let known: Vec<&str> = declared.iter().map(|p| p.name).collect();
            return Err(located_err(
                file,
                v,
                format!(
                    "stage '{}': '{k}' is not a parameter of {}{hint}; its parameters: {}",
                    s.name,
                    kind.name(),
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            ));
        }
    }
    let mut out = serde_json::Map::new();
    for p in declared {
        let v = match s.with.get(p.name).or_else(|| spec.params.get(p.name)) {
            Some(at) => normalize(&p.ty, &at.value)
                .map_err(|e| located_err(file, at, format!("stage '{}': parameter '{}': {e}", s.name, p.name)))?,
            None => p.default_value().map_err(|e| anyhow!("stage '{}' ({}): {e}", s.name, kind.name()))?,
        };
        out.insert(p.name.to_string(), v);
    }
    Ok(crate::params::canonical(&Value::Object(out)))
}

/// The cartesian product of the stage's `foreach` axes, in the kind's axis order.
fn expand_items(
    file: &str,
    spec: &PipelineSpec,
    si: usize,
    kind: &dyn StageKind,
) -> Result<Vec<BTreeMap<String, Value>>> {
    let s = &spec.stages[si];
    for (axis, v) in &s.foreach {
        if !kind.axes().contains(&axis.as_str()) {
            return Err(located_err(
                file,
                v,
                format!(
                    "stage '{}': {} has no foreach axis '{axis}' (axes: {})",
                    s.name,
                    kind.name(),
                    if kind.axes().is_empty() { "none".into() } else { kind.axes().join(", ") }
                ),
            ));
        }
    }
    let mut items: Vec<BTreeMap<String, Value>> = vec![BTreeMap::new()];
    for &axis in kind.axes() {
        let plural = format!("{axis}s");
        let (value, at) = match s.foreach.get(axis) {
            Some(v) => (v.value.clone(), Some(v)),
            None => match spec.params.get(&plural) {
                Some(v) => (v.value.clone(), Some(v)),
                None => bail!(
                    "{file}: stage '{}' ({}) needs `foreach: {{{axis}: [...]}}` or a global `params.{plural}` list",
                    s.name,
                    kind.name()
                ),
            },
        };
        // `${params.NAME}` refers to a global param.
        let value = match &value {
            Value::String(r) if r.starts_with("${") && r.ends_with('}') => {
                let name = r[2..r.len() - 1].trim().trim_start_matches("params.");
                spec.params.get(name).map(|v| v.value.clone()).ok_or_else(|| {
                    let at = at.expect("from file");
                    located_err(file, at, format!("stage '{}': {r} refers to an unknown global param", s.name))
                })?
            }
            other => other.clone(),
        };
        let values = match value {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        if values.is_empty() {
            let at = at.expect("from file or params");
            return Err(located_err(file, at, format!("stage '{}': foreach axis '{axis}' is empty", s.name)));
        }
        for v in &values {
            if !matches!(v, Value::String(_) | Value::Number(_)) {
                let at = at.expect("from file or params");
                return Err(located_err(
                    file,
                    at,
                    format!("stage '{}': foreach '{axis}' values must be strings or numbers", s.name),
                ));
            }
        }
        items = items
            .into_iter()
            .flat_map(|it| {
                values.iter().map(move |v| {
                    let mut m = it.clone();
                    m.insert(axis.to_string(), v.clone());
                    m
                })
            })
            .collect();
    }
    Ok(items)
}

impl Dag {
    /// Units of `stage` and all their transitive dependencies (for `--until`).
    pub fn closure_of_stage(&self, stage: usize) -> Vec<bool> {
        let mut keep = vec![false; self.units.len()];
        let mut stack: Vec<usize> = self.stages[stage].units.clone();
        while let Some(u) = stack.pop() {
            if !keep[u] {
                keep[u] = true;
                stack.extend(self.units[u].deps.iter().map(|d| d.unit));
            }
        }
        keep
    }

    pub fn stage_index(&self, name: &str) -> Result<usize> {
        self.stages.iter().position(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
            let hint =
                suggest(name, names.iter().copied()).map(|h| format!(" (did you mean '{h}'?)")).unwrap_or_default();
            anyhow!("no stage '{name}'{hint}; stages: {}", names.join(", "))
        })
    }

    /// Units in an order where every dependency comes first.
    pub fn unit_order(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.units.len());
        for &s in &self.order {
            // Case units before the aggregate that reads them (creation order guarantees it).
            out.extend(self.stages[s].units.iter().copied());
        }
        out
    }

    /// Graphviz DOT of the stage graph (units per stage in the label).
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph pipeline {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
        for st in &self.stages {
            s.push_str(&format!(
                "  \"{}\" [label=\"{}\\n({}, {} units)\"];\n",
                st.name,
                st.name,
                st.kind.name(),
                st.units.len()
            ));
        }
        for st in &self.stages {
            for &n in &st.needs {
                s.push_str(&format!("  \"{}\" -> \"{}\";\n", self.stages[n].name, st.name));
            }
        }
        s.push_str("}\n");
        s
    }

    /// A text rendering of the stage graph.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for &i in &self.order {
            let st = &self.stages[i];
            let needs: Vec<&str> = st.needs.iter().map(|&n| self.stages[n].name.as_str()).collect();
            let reads: Vec<String> =
                st.providers.iter().map(|(k, p)| format!("{k} <- {}", self.stages[*p].name)).collect();
            s.push_str(&format!(
                "{:<14} uses {:<16} units {:>5}   needs [{}]   reads [{}]\n",
                st.name,
                st.kind.name(),
                st.units.len(),
                needs.join(", "),
                reads.join(", ")
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    /// A table-driven case: `params:` and `stages:` YAML and the number of dataset cases in;
    /// the unit ids (creation order) and edges (`UNIT <- DEP[:FILES]`, ...) out.
    struct Case {
        name: &'static str,
        cases: usize,
        params: &'static str,
        stages: &'static str,
        units: &'static [&'static str],
        edges: &'static [&'static str],
    }

    const PRE: &str = "  fingerprint:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [fingerprint]\n";

    fn build_yaml(cases: usize, params: &str, stages: &str) -> Result<Dag> {
        let dir = tempfile::tempdir().unwrap();
        let ds = testutil::dataset(dir.path(), cases);
        let spec = testutil::pipeline(dir.path(), params, stages);
        build(&spec, &ds)
    }

    fn edges(dag: &Dag) -> Vec<String> {
        dag.units
            .iter()
            .filter(|u| !u.deps.is_empty())
            .map(|u| {
                let deps: Vec<String> = u
                    .deps
                    .iter()
                    .map(|d| match &d.reads {
                        Reads::All => dag.units[d.unit].id.to_string(),
                        Reads::Files(f) => format!("{}:{}", dag.units[d.unit].id, f.join("+")),
                    })
                    .collect();
                format!("{} <- {}", u.id, deps.join(", "))
            })
            .collect()
    }

    #[test]
    fn yaml_in_units_and_edges_out() {
        let table = [
            Case {
                name: "per-case fan-out with an aggregate, then a single unit",
                cases: 2,
                params: "",
                stages: PRE,
                units: &["fingerprint[case=case_000]", "fingerprint[case=case_001]", "fingerprint", "plan"],
                edges: &[
                    "fingerprint <- fingerprint[case=case_000], fingerprint[case=case_001]",
                    "plan <- fingerprint:dataset_fingerprint.json",
                ],
            },
            Case {
                name: "per-case reads the same case; a configuration axis from a global param",
                cases: 2,
                params: "  configurations: [2d]",
                stages: "  fingerprint:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [fingerprint]\n  \
                         norm:\n    uses: normalize\n    needs: [plan]\n  res:\n    uses: resample\n    needs: [norm]\n",
                units: &[
                    "fingerprint[case=case_000]",
                    "fingerprint[case=case_001]",
                    "fingerprint",
                    "plan",
                    "norm[case=case_000]",
                    "norm[case=case_001]",
                    "res[configuration=2d,case=case_000]",
                    "res[configuration=2d,case=case_001]",
                    "res[configuration=2d]",
                ],
                edges: &[
                    "fingerprint <- fingerprint[case=case_000], fingerprint[case=case_001]",
                    "plan <- fingerprint:dataset_fingerprint.json",
                    "norm[case=case_000] <- plan:normalization.json",
                    "norm[case=case_001] <- plan:normalization.json",
                    "res[configuration=2d,case=case_000] <- plan:preprocess_2d.json+labels.json, norm[case=case_000]",
                    "res[configuration=2d,case=case_001] <- plan:preprocess_2d.json+labels.json, norm[case=case_001]",
                    "res[configuration=2d] <- res[configuration=2d,case=case_000], res[configuration=2d,case=case_001], \
                     plan:preprocess_2d.json+labels.json, norm[case=case_000], norm[case=case_001]",
                ],
            },
            Case {
                name: "foreach axes cross; coordinates agree on shared axes only",
                cases: 1,
                params: "  configurations: [2d, 3d_fullres]",
                stages: "  fingerprint:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [fingerprint]\n  \
                         norm:\n    uses: normalize\n    needs: [plan]\n  res:\n    uses: resample\n    needs: [norm]\n  \
                         train:\n    uses: train-fold\n    needs: [res]\n    foreach:\n      configuration: 3d_fullres\n      \
                         fold: [0, all]\n",
                units: &[
                    "fingerprint[case=case_000]",
                    "fingerprint",
                    "plan",
                    "norm[case=case_000]",
                    "res[configuration=2d,case=case_000]",
                    "res[configuration=2d]",
                    "res[configuration=3d_fullres,case=case_000]",
                    "res[configuration=3d_fullres]",
                    "train[configuration=3d_fullres,fold=0]",
                    "train[configuration=3d_fullres,fold=all]",
                ],
                edges: &[
                    "fingerprint <- fingerprint[case=case_000]",
                    "plan <- fingerprint:dataset_fingerprint.json",
                    "norm[case=case_000] <- plan:normalization.json",
                    "res[configuration=2d,case=case_000] <- plan:preprocess_2d.json+labels.json, norm[case=case_000]",
                    "res[configuration=2d] <- res[configuration=2d,case=case_000], plan:preprocess_2d.json+labels.json, \
                     norm[case=case_000]",
                    "res[configuration=3d_fullres,case=case_000] <- plan:preprocess_3d_fullres.json+labels.json, \
                     norm[case=case_000]",
                    "res[configuration=3d_fullres] <- res[configuration=3d_fullres,case=case_000], \
                     plan:preprocess_3d_fullres.json+labels.json, norm[case=case_000]",
                    "train[configuration=3d_fullres,fold=0] <- res[configuration=3d_fullres], \
                     plan:plans.json+splits_final.json+labels.json",
                    "train[configuration=3d_fullres,fold=all] <- res[configuration=3d_fullres], \
                     plan:plans.json+splits_final.json+labels.json",
                ],
            },
            Case {
                name: "the nearest provider wins: two plans, the second reads the first's fingerprint",
                cases: 1,
                params: "",
                stages: "  fingerprint:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [fingerprint]\n  \
                         plan16:\n    uses: plan\n    needs: [plan]\n    with:\n      gpu_memory_gb: 16\n  \
                         norm:\n    uses: normalize\n    needs: [plan16]\n",
                units: &["fingerprint[case=case_000]", "fingerprint", "plan", "plan16", "norm[case=case_000]"],
                edges: &[
                    "fingerprint <- fingerprint[case=case_000]",
                    "plan <- fingerprint:dataset_fingerprint.json",
                    "plan16 <- fingerprint:dataset_fingerprint.json",
                    "norm[case=case_000] <- plan16:normalization.json",
                ],
            },
        ];
        for c in table {
            let dag = build_yaml(c.cases, c.params, c.stages).unwrap_or_else(|e| panic!("{}: {e:#}", c.name));
            let units: Vec<String> = dag.units.iter().map(|u| u.id.to_string()).collect();
            assert_eq!(units, c.units, "{}", c.name);
            let want: Vec<String> =
                c.edges.iter().map(|e| e.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
            assert_eq!(edges(&dag), want, "{}", c.name);
            // Every dependency comes first in the unit order.
            let order = dag.unit_order();
            let pos = |u: usize| order.iter().position(|&x| x == u).unwrap();
            assert!(dag.units.iter().enumerate().all(|(u, unit)| unit.deps.iter().all(|d| pos(d.unit) < pos(u))));
        }
    }

    #[test]
    fn each_phase_reports_what_is_wrong() {
        let table: &[(&str, &str, &str, &str)] = &[
            ("phase 1: unknown kind", "", "  fp:\n    uses: fingerprnt\n", "did you mean 'fingerprint'?"),
            ("phase 1: unknown need", "", "  fingerprint:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [fingerprnt]\n", "not a stage (did you mean 'fingerprint'?)"),
            ("phase 1: cycle", "", "  a:\n    uses: plan\n    needs: [b]\n  b:\n    uses: plan\n    needs: [a]\n", "cycle: a -> b -> a"),
            ("phase 2: unused global param", "  epochz: 3", PRE, "params.epochz is not read by any stage"),
            ("phase 3: no provider", "", "  plan:\n    uses: plan\n", "reads a 'fingerprint' artifact, but no stage"),
            (
                "phase 3: two providers at one distance",
                "",
                "  f1:\n    uses: fingerprint\n  f2:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [f1, f2]\n",
                "several stages at the same distance (f1, f2)",
            ),
            ("phase 4: bad param", "", "  fingerprint:\n    uses: fingerprint\n    with:\n      fingerprint_seed: -1\n", "out of range"),
            ("phase 4: missing axis", "", "  fingerprint:\n    uses: fingerprint\n  plan:\n    uses: plan\n    needs: [fingerprint]\n  norm:\n    uses: normalize\n    needs: [plan]\n  res:\n    uses: resample\n    needs: [norm]\n", "needs `foreach: {configuration: [...]}`"),
        ];
        for (name, params, stages, want) in table {
            let e = format!("{:#}", build_yaml(1, params, stages).err().unwrap_or_else(|| panic!("{name}: built")));
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}

//! From a [`PipelineSpec`] to the unit graph: stages are checked against the kind registry,
//! `foreach` axes expand into items, per-case kinds fan out into one unit per case (plus an
//! aggregate), and each unit gets its dependencies on upstream units.
//!
//! Dependency rule: a unit of stage S depends, for every kind S requires, on the nearest stage T
//! of that kind among S's `needs` (transitively), on those of T's units whose coordinates agree
//! with S's on shared axes; a per-case unit depends on the same case's unit of a per-case T.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
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

/// Checks the spec against the registry and builds the unit graph.
pub fn build(spec: &PipelineSpec, ds: &Dataset) -> Result<Dag> {
    let file = spec.file.display().to_string();
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
                &file,
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
                located_err(&file, n, format!("stage '{}' needs '{}', which is not a stage{hint}", s.name, n.value))
            })?;
            if names[i] == s.name {
                return Err(located_err(&file, n, format!("stage '{}' needs itself", s.name)));
            }
            needs.push(i);
        }
        stages.push(StageNode { name: s.name.clone(), kind, needs, providers: Vec::new(), units: Vec::new() });
    }
    let order = topo_order(&stages)?;

    // Global params must be read by some stage (typo protection) or feed a foreach axis.
    for (k, v) in &spec.params {
        let used = stages.iter().any(|st| {
            st.kind.params().iter().any(|p| p.name == k) || st.kind.axes().iter().any(|a| format!("{a}s") == *k)
        });
        if !used {
            let all = stages.iter().flat_map(|st| st.kind.params().iter().map(|p| p.name));
            let hint = suggest(k, all).map(|h| format!(" (did you mean '{h}'?)")).unwrap_or_default();
            return Err(located_err(&file, v, format!("params.{k} is not read by any stage{hint}")));
        }
    }

    // Providers of required kinds: nearest ancestor by breadth-first search over `needs`.
    for si in 0..stages.len() {
        let mut providers = Vec::new();
        for &req in stages[si].kind.requires() {
            let mut seen = vec![false; stages.len()];
            let mut q: VecDeque<(usize, usize)> = stages[si].needs.iter().map(|&n| (n, 1)).collect();
            let mut found: Vec<(usize, usize)> = Vec::new();
            while let Some((n, d)) = q.pop_front() {
                if seen[n] {
                    continue;
                }
                seen[n] = true;
                if stages[n].kind.name() == req {
                    found.push((n, d));
                    continue;
                }
                q.extend(stages[n].needs.iter().map(|&m| (m, d + 1)));
            }
            let best = found.iter().map(|f| f.1).min();
            let nearest: Vec<usize> = found.iter().filter(|f| Some(f.1) == best).map(|f| f.0).collect();
            match nearest.as_slice() {
                [one] => providers.push((req.to_string(), *one)),
                [] => {
                    let spec_stage = &spec.stages[si];
                    return Err(located_err(
                        &file,
                        &spec_stage.uses,
                        format!(
                            "stage '{}' ({}) reads a '{req}' artifact, but no stage using '{req}' is among its needs (directly or transitively)",
                            stages[si].name,
                            stages[si].kind.name()
                        ),
                    ));
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

    let mut units: Vec<Unit> = Vec::new();
    let mut by_id: HashMap<UnitId, usize> = HashMap::new();
    for &si in &order {
        let sspec = &spec.stages[si];
        let kind = stages[si].kind;
        let params = resolve_params(&file, spec, si)?;
        let mut items: Vec<BTreeMap<String, Value>> = Vec::new();
        for it in expand_items(&file, spec, si, kind)? {
            let c = kind.canonical_item(&it);
            if !items.contains(&c) {
                items.push(c);
            }
        }
        let mut ids = Vec::new();
        for coords in items {
            let cvec: Vec<(String, String)> = coords.iter().map(|(k, v)| (k.clone(), value_str(v))).collect();
            let mut make = |case: Option<String>, aggregate: bool, units: &mut Vec<Unit>| {
                let id = UnitId { stage: sspec.name.clone(), coords: cvec.clone(), case: case.clone() };
                let u = Unit {
                    id: id.clone(),
                    stage: si,
                    kind,
                    params: params.clone(),
                    coords: coords.clone(),
                    case,
                    aggregate,
                    deps: Vec::new(),
                    raw: Vec::new(),
                };
                units.push(u);
                by_id.insert(id, units.len() - 1);
                units.len() - 1
            };
            match kind.fanout() {
                Fanout::Single => ids.push(make(None, false, &mut units)),
                Fanout::PerCase { aggregate } => {
                    let case_units: Vec<usize> =
                        ds.cases.iter().map(|c| make(Some(c.id.clone()), false, &mut units)).collect();
                    ids.extend(&case_units);
                    if aggregate {
                        let a = make(None, true, &mut units);
                        units[a].deps = case_units.iter().map(|&u| Dep { unit: u, reads: Reads::All }).collect();
                        ids.push(a);
                    }
                }
            }
        }
        // Upstream dependencies.
        for &u in &ids {
            let mut deps = Vec::new();
            for (req, ti) in &stages[si].providers {
                let t = &stages[*ti];
                let view = units[u].view();
                let reads = kind.reads(req, &view);
                let mine = kind.upstream_coords(req, &view);
                let matching: Vec<usize> =
                    t.units.iter().copied().filter(|&tu| coords_agree(&units[tu].coords, &mine)).collect();
                let per_case = matches!(t.kind.fanout(), Fanout::PerCase { .. });
                let chosen: Vec<usize> = if !per_case {
                    matching
                } else if let Some(case) = &units[u].case {
                    matching.into_iter().filter(|&tu| units[tu].case.as_ref() == Some(case)).collect()
                } else if matches!(t.kind.fanout(), Fanout::PerCase { aggregate: true }) {
                    matching.into_iter().filter(|&tu| units[tu].aggregate).collect()
                } else {
                    matching.into_iter().filter(|&tu| units[tu].case.is_some()).collect()
                };
                if chosen.is_empty() {
                    bail!(
                        "{file}: {} reads '{req}' from stage '{}', but none of its items matches {:?}",
                        units[u].id,
                        t.name,
                        units[u].id.coords
                    );
                }
                deps.extend(chosen.into_iter().map(|unit| Dep { unit, reads: reads.clone() }));
            }
            // Units of the same stage it reads (a cascade stage reads its previous stage).
            for &o in &ids {
                if o != u {
                    if let Some(reads) = kind.reads_sibling(&units[u].view(), &units[o].view()) {
                        deps.push(Dep { unit: o, reads });
                    }
                }
            }
            let raw = kind.raw_inputs(&units[u].view(), ds);
            units[u].deps.extend(deps);
            units[u].raw = raw;
        }
        stages[si].units = order_within_stage(&units, ids)?;
    }
    let _ = by_id;
    Ok(Dag { stages, units, order })
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
        let (raw, at) = match s.with.get(p.name).or_else(|| spec.params.get(p.name)) {
            Some(v) => (v.value.clone(), Some(v)),
            None => (p.default_value(), None),
        };
        let v = normalize(&p.ty, &raw).map_err(|e| match at {
            Some(at) => located_err(file, at, format!("stage '{}': parameter '{}': {e}", s.name, p.name)),
            None => anyhow!("stage '{}': default of '{}' is invalid: {e}", s.name, p.name),
        })?;
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

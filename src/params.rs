//! Declared stage parameters: types, defaults, validation and canonical form.
//!
//! A stage kind declares the params it reads ([`ParamSpec`]); only those enter its cache key, so
//! an unrelated edit to `pipeline.yaml` never invalidates it. Values are JSON values normalised
//! by their declared type (an `int` is an i64, a `float` always an f64, so `1` and `1.0` hash the
//! same for a float param).

use serde_json::{Map, Value};
use std::fmt;

/// The type of a declared parameter.
#[derive(Clone, Debug)]
pub enum ParamType {
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    /// A string; if `choices` is non-empty the value must be one of them.
    Str {
        choices: &'static [&'static str],
    },
    /// A list whose elements have the given type.
    List(&'static ParamType),
    /// A string or null (paths, optional overrides).
    OptStr,
    /// A list of floats or null (e.g. a target-spacing override).
    OptFloats,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamType::Int { min, max } => write!(f, "an integer in [{min}, {max}]"),
            ParamType::Float { min, max } => write!(f, "a number in [{min}, {max}]"),
            ParamType::Bool => write!(f, "true or false"),
            ParamType::Str { choices } if choices.is_empty() => write!(f, "a string"),
            ParamType::Str { choices } => write!(f, "one of {}", choices.join(", ")),
            ParamType::List(t) => write!(f, "a list of {t}"),
            ParamType::OptStr => write!(f, "a string or null"),
            ParamType::OptFloats => write!(f, "a list of numbers or null"),
        }
    }
}

/// One declared parameter of a stage kind.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    /// Default as a JSON literal (parsed on use; every registered default is checked by a test).
    pub default: &'static str,
    /// False for a param that tunes how a unit runs (worker threads, checkpoint cadence) but
    /// not what it produces: it is kept out of the unit's key, so changing it rebuilds nothing.
    pub changes_output: bool,
    pub help: &'static str,
}

impl ParamSpec {
    /// The default, parsed and checked against the param's type.
    pub fn default_value(&self) -> Result<Value, String> {
        let v: Value = serde_json::from_str(self.default)
            .map_err(|e| format!("default {} of '{}' is not JSON: {e}", self.default, self.name))?;
        normalize(&self.ty, &v).map_err(|e| format!("default {} of '{}': {e}", self.default, self.name))
    }
}

/// Any integer.
pub const INT: ParamType = ParamType::Int { min: i64::MIN, max: i64::MAX };
/// An integer >= 0.
pub const NON_NEG_INT: ParamType = ParamType::Int { min: 0, max: i64::MAX };
/// An integer >= 1.
pub const POSITIVE_INT: ParamType = ParamType::Int { min: 1, max: i64::MAX };
/// Any finite number.
pub const FLOAT: ParamType = ParamType::Float { min: f64::MIN, max: f64::MAX };
/// A finite number >= 0.
pub const NON_NEG_FLOAT: ParamType = ParamType::Float { min: 0.0, max: f64::MAX };
pub const STR: ParamType = ParamType::Str { choices: &[] };

/// Checks `v` against `ty` and returns it in canonical form, or a message saying what is wrong.
pub fn normalize(ty: &ParamType, v: &Value) -> Result<Value, String> {
    let bad = || format!("expected {ty}, got {}", short(v));
    match ty {
        ParamType::Int { min, max } => {
            let i = match v {
                Value::Number(n) => {
                    n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
                }
                _ => None,
            }
            .ok_or_else(bad)?;
            if i < *min || i > *max {
                return Err(format!("{i} is out of range: expected {ty}"));
            }
            Ok(Value::from(i))
        }
        ParamType::Float { min, max } => {
            let f = v.as_f64().ok_or_else(bad)?;
            if !f.is_finite() || f < *min || f > *max {
                return Err(format!("{f} is out of range: expected {ty}"));
            }
            Ok(Value::from(f))
        }
        ParamType::Bool => v.as_bool().map(Value::from).ok_or_else(bad),
        ParamType::Str { choices } => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(bad()),
            };
            if !choices.is_empty() && !choices.contains(&s.as_str()) {
                return Err(format!("'{s}' is not allowed: expected {ty}"));
            }
            Ok(Value::String(s))
        }
        ParamType::List(elem) => {
            let items: Vec<Value> = match v {
                Value::Array(a) => a.clone(),
                // A scalar is a one-element list (`--set folds=0`).
                Value::Null => return Err(bad()),
                other => vec![other.clone()],
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                out.push(normalize(elem, it).map_err(|e| format!("item {i}: {e}"))?);
            }
            Ok(Value::Array(out))
        }
        ParamType::OptStr => match v {
            Value::Null => Ok(Value::Null),
            Value::String(_) => Ok(v.clone()),
            _ => Err(bad()),
        },
        ParamType::OptFloats => match v {
            Value::Null => Ok(Value::Null),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_f64().filter(|f| f.is_finite()).map(Value::from).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            _ => Err(bad()),
        },
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..57])
    } else {
        s
    }
}

/// Recursively sorts object keys so that equal values serialise to equal bytes.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Parses a `--set` value or a YAML scalar: YAML syntax, so `5`, `0.1`, `true`, `[2d, 3d_fullres]`
/// and `null` have their types and anything else is a string.
pub fn parse_scalar(s: &str) -> Value {
    match serde_saphyr::from_str::<Value>(s) {
        Ok(Value::Null) if !matches!(s.trim(), "null" | "~" | "") => Value::String(s.to_string()),
        Ok(v) => v,
        Err(_) => Value::String(s.to_string()),
    }
}

/// Splits a `--set` value into sweep values at top-level commas (`a,b` sweeps; `[a,b]` is one list).
pub fn split_sweep(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out.push(cur);
    out
}

/// Levenshtein-based suggestion for a misspelt name.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .into_iter()
        .map(|c| (dist(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalize_types() {
        assert_eq!(normalize(&FLOAT, &json!(1)).unwrap(), json!(1.0));
        assert_eq!(normalize(&INT, &json!(3.0)).unwrap(), json!(3));
        assert!(normalize(&INT, &json!(3.5)).is_err());
        assert!(normalize(&POSITIVE_INT, &json!(0)).is_err());
        assert!(normalize(&NON_NEG_FLOAT, &json!(0)).is_ok() && normalize(&NON_NEG_FLOAT, &json!(-0.1)).is_err());
        let choice = ParamType::Str { choices: &["a", "b"] };
        assert!(normalize(&choice, &json!("c")).unwrap_err().contains("one of a, b"));
        static S: ParamType = STR;
        assert_eq!(normalize(&ParamType::List(&S), &json!("2d")).unwrap(), json!(["2d"]));
        assert_eq!(normalize(&ParamType::List(&S), &json!(["2d", "3d_fullres"])).unwrap(), json!(["2d", "3d_fullres"]));
    }

    #[test]
    fn every_default_of_every_registered_kind_parses() {
        for kind in crate::kinds::registry() {
            for p in kind.params() {
                let v = p.default_value().unwrap_or_else(|e| panic!("kind {}: {e}", kind.name()));
                // Null only where the type allows it on purpose (optional values).
                if v.is_null() {
                    assert!(
                        matches!(p.ty, ParamType::OptStr | ParamType::OptFloats),
                        "kind {}: default of '{}' is null",
                        kind.name(),
                        p.name
                    );
                }
            }
        }
        let bad = ParamSpec { name: "x", ty: POSITIVE_INT, default: "0", changes_output: true, help: "" };
        assert!(bad.default_value().unwrap_err().contains("out of range"));
        let typo = ParamSpec { name: "x", ty: STR, default: "adam", changes_output: true, help: "" };
        assert!(typo.default_value().unwrap_err().contains("not JSON"));
    }

    #[test]
    fn canonical_sorts_keys() {
        let a = canonical(&json!({"b": 1, "a": {"d": 2, "c": 3}}));
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"a":{"c":3,"d":2},"b":1}"#);
    }

    #[test]
    fn sweep_split_and_scalars() {
        assert_eq!(split_sweep("1,2"), vec!["1", "2"]);
        assert_eq!(split_sweep("[2d,3d_fullres]"), vec!["[2d,3d_fullres]"]);
        assert_eq!(parse_scalar("5"), json!(5));
        assert_eq!(parse_scalar("0.5"), json!(0.5));
        assert_eq!(parse_scalar("true"), json!(true));
        assert_eq!(parse_scalar("batch"), json!("batch"));
        assert_eq!(parse_scalar("[2d, 3d_fullres]"), json!(["2d", "3d_fullres"]));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("epochz", ["epochs", "seed"]), Some("epochs"));
        assert_eq!(suggest("zzz", ["epochs", "seed"]), None);
    }
}

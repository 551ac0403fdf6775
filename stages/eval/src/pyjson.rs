//! JSON exactly as Python's `json.dump(obj, f, sort_keys=True, indent=4)` writes it (what
//! nnU-Net's `save_json` does, reference §11): `NaN` / `Infinity` for non-finite floats,
//! floats in `repr` form (`1.0`, `0.0001`, `1e-05`, `1e+16`), ints without a fraction,
//! `ensure_ascii` escaping, `", "`-free separators with newlines and 4-space indents.
//!
//! [`parse_lenient`] reads such text back (NaN / ±Infinity become `null`).

use std::fmt::Write;

/// A JSON value as Python's `json` module sees it (int and float are distinct).
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    /// Insertion order is kept unless the writer sorts keys.
    Dict(Vec<(String, PyValue)>),
}

impl From<f64> for PyValue {
    fn from(v: f64) -> Self {
        PyValue::Float(v)
    }
}
impl From<i64> for PyValue {
    fn from(v: i64) -> Self {
        PyValue::Int(v)
    }
}
impl From<u64> for PyValue {
    fn from(v: u64) -> Self {
        PyValue::Int(v as i64)
    }
}
impl From<&str> for PyValue {
    fn from(v: &str) -> Self {
        PyValue::Str(v.to_string())
    }
}
impl From<String> for PyValue {
    fn from(v: String) -> Self {
        PyValue::Str(v)
    }
}

/// Python's `float.__repr__` (shortest round-trip digits; exponent form when the decimal
/// exponent is < -4 or >= 16), plus `json`'s `NaN` / `Infinity` / `-Infinity`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits, like Python's repr.
    let s = format!("{:e}", x.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let n = digits.len() as i32;
    let decpt = exp + 1;
    let mut out = String::new();
    if x < 0.0 {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-decpt) as usize));
        out.push_str(&digits);
    } else if decpt >= n {
        out.push_str(&digits);
        out.push_str(&"0".repeat((decpt - n) as usize));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

/// `json.dumps` string quoting with `ensure_ascii=True`.
pub fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `json.dumps(v, indent=indent, sort_keys=sort_keys)`; `indent = None` gives the compact
/// one-line form with `", "` and `": "` separators, as Python does.
pub fn dumps(v: &PyValue, indent: Option<usize>, sort_keys: bool) -> String {
    let mut out = String::new();
    write_value(v, indent, sort_keys, 0, &mut out);
    out
}

fn newline(indent: Option<usize>, level: usize, out: &mut String) {
    if let Some(i) = indent {
        out.push('\n');
        out.push_str(&" ".repeat(i * level));
    }
}

fn write_value(v: &PyValue, indent: Option<usize>, sort_keys: bool, level: usize, out: &mut String) {
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        PyValue::Null => out.push_str("null"),
        PyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        PyValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        PyValue::Float(f) => out.push_str(&float_repr(*f)),
        PyValue::Str(s) => quote(s, out),
        PyValue::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(indent, level + 1, out);
                write_value(it, indent, sort_keys, level + 1, out);
            }
            newline(indent, level, out);
            out.push(']');
        }
        PyValue::Dict(items) => {
            if items.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut refs: Vec<&(String, PyValue)> = items.iter().collect();
            if sort_keys {
                // Python compares str by code point; UTF-8 byte order is the same order.
                refs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (k, it)) in refs.into_iter().map(|p| (&p.0, &p.1)).enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(indent, level + 1, out);
                quote(k, out);
                out.push_str(": ");
                write_value(it, indent, sort_keys, level + 1, out);
            }
            newline(indent, level, out);
            out.push('}');
        }
    }
}

/// Parses JSON that may contain Python's `NaN`, `Infinity` and `-Infinity` tokens (outside
/// strings); they become `null`.
pub fn parse_lenient(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_str = false;
    let mut last = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
            i += 1;
            continue;
        }
        let rest = &b[i..];
        let tok = [&b"NaN"[..], b"-Infinity", b"Infinity"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = tok {
            out.push_str(&text[last..i]);
            out.push_str("null");
            i += t.len();
            last = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[last..]);
    serde_json::from_str(&out)
}

/// A JSON number or `null` (NaN) as f64.
pub fn as_f64_or_nan(v: Option<&serde_json::Value>) -> Option<f64> {
    match v? {
        serde_json::Value::Null => Some(f64::NAN),
        x => x.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.25, "123.25"),
            (0.8571428571428571, "0.8571428571428571"),
            (-2.5, "-2.5"),
            (1e100, "1e+100"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
        ];
        for (x, s) in cases {
            assert_eq!(float_repr(x), s, "{x}");
        }
        // round trip for many values
        for k in 1..2000 {
            let x = (k as f64).powf(1.7) / 977.0;
            assert_eq!(float_repr(x).parse::<f64>().unwrap(), x);
        }
    }

    #[test]
    fn dumps_like_python_indent_4() {
        let v = PyValue::Dict(vec![
            ("b".into(), PyValue::List(vec![PyValue::Int(1), PyValue::Float(f64::NAN)])),
            ("a".into(), PyValue::Dict(vec![])),
            ("c".into(), PyValue::Str("é\"x".into())),
        ]);
        let s = dumps(&v, Some(4), true);
        assert_eq!(
            s,
            "{\n    \"a\": {},\n    \"b\": [\n        1,\n        NaN\n    ],\n    \"c\": \"\\u00e9\\\"x\"\n}"
        );
        assert_eq!(dumps(&v, None, false), "{\"b\": [1, NaN], \"a\": {}, \"c\": \"\\u00e9\\\"x\"}");
    }

    #[test]
    fn lenient_parse_handles_nan_outside_strings() {
        let v = parse_lenient("{\"NaN\": NaN, \"x\": [-Infinity, 1.5, \"a\\\"NaN\"]}").unwrap();
        assert!(v["NaN"].is_null());
        assert!(v["x"][0].is_null());
        assert_eq!(v["x"][2], "a\"NaN");
        assert!(as_f64_or_nan(v.get("NaN")).unwrap().is_nan());
    }
}

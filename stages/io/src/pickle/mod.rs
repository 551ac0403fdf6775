//! The subset of Python's pickle that `torch.save` writes for nnU-Net checkpoints and that
//! nnU-Net writes for `postprocessing.pkl`: a reader that never executes anything and a writer.
//!
//! Written by hand on purpose: `serde-pickle` refuses torch's persistent ids (`BINPERSID`) and
//! the `GLOBAL … REDUCE` calls that rebuild tensors, and the general-purpose parsers accept any
//! global. Here the reader ([`read`]) is a small opcode interpreter that builds a value tree
//! and only knows a whitelist of globals, each interpreted by Rust code:
//!
//! - `collections.OrderedDict()` → [`Value::Dict`] (ordered),
//! - `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` with a `('storage', torch.XStorage,
//!   key, location, numel)` persistent id → [`Value::Tensor`] (a reference, checked later
//!   against the archive by [`crate::pth`]),
//! - `numpy.dtype`, `numpy.core.multiarray.scalar`, `numpy.core.multiarray._reconstruct` +
//!   `numpy.ndarray` (also `numpy._core.…`) → numbers and [`Value::Array`],
//! - `_codecs.encode(str, 'latin1')` → bytes, `torch.device(...)` → its string,
//!   `builtins.set` / `frozenset` → a list.
//!
//! Any other global is refused naming it, unless the caller lists it as a plain reference
//! ([`ReadOptions::references`]: e.g. nnU-Net's post-processing function), which becomes
//! [`Value::Global`] and may never be called. Every count, size and depth is bounded.

mod read;
mod write;

pub use read::{read, ReadOptions};
pub use write::write;

/// Element types of tensors and arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// From torch's legacy storage class name (`FloatStorage`, ...).
    pub fn from_torch_storage(name: &str) -> Option<DType> {
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    pub fn torch_storage(self) -> &'static str {
        match self {
            DType::F64 => "DoubleStorage",
            DType::F32 => "FloatStorage",
            DType::F16 => "HalfStorage",
            DType::BF16 => "BFloat16Storage",
            DType::I64 => "LongStorage",
            DType::I32 => "IntStorage",
            DType::I16 => "ShortStorage",
            DType::I8 => "CharStorage",
            DType::U8 => "ByteStorage",
            DType::Bool => "BoolStorage",
        }
    }

    /// From a numpy type code without byte order (`f8`, `i4`, `b1`, ...).
    pub fn from_numpy(code: &str) -> Option<DType> {
        Some(match code {
            "f8" => DType::F64,
            "f4" => DType::F32,
            "f2" => DType::F16,
            "i8" => DType::I64,
            "i4" => DType::I32,
            "i2" => DType::I16,
            "i1" => DType::I8,
            "u1" => DType::U8,
            "b1" => DType::Bool,
            _ => return None,
        })
    }

    /// Decodes one little-endian element as f64.
    pub fn decode_f64(self, b: &[u8]) -> f64 {
        let a = |n: usize| -> [u8; 8] {
            let mut x = [0u8; 8];
            x[..n].copy_from_slice(&b[..n]);
            x
        };
        match self {
            DType::F64 => f64::from_le_bytes(a(8)),
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            DType::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64,
            DType::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64,
            DType::I64 => i64::from_le_bytes(a(8)) as f64,
            DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            DType::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            DType::I8 => b[0] as i8 as f64,
            DType::U8 => b[0] as f64,
            DType::Bool => (b[0] != 0) as u8 as f64,
        }
    }
}

/// IEEE binary16 → f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f32;
    match exp {
        0 => sign * man * 2f32.powi(-24),
        0x1f if man == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        _ => sign * (1.0 + man / 1024.0) * 2f32.powi(exp - 15),
    }
}

/// A tensor in a torch checkpoint: a view into one storage of the archive (`data/KEY`).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage's key (file `data/KEY` in the archive).
    pub storage: String,
    pub dtype: DType,
    /// Elements the storage holds (from the persistent id).
    pub storage_numel: usize,
    /// Offset into the storage, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

impl TensorRef {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// One past the largest element index this view touches (0 for an empty tensor).
    pub fn extent(&self) -> Option<usize> {
        if self.numel() == 0 {
            return Some(0);
        }
        let mut last = self.offset;
        for (s, st) in self.shape.iter().zip(&self.stride) {
            last = last.checked_add((s - 1).checked_mul(*st)?)?;
        }
        last.checked_add(1)
    }

    /// Row-major contiguous strides of `shape`.
    pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
        let mut st = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            st[i] = st[i + 1] * shape[i + 1];
        }
        st
    }
}

/// A numpy array from a pickle (`numpy.core.multiarray._reconstruct`), C order, raw bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Little-endian element bytes, C order.
    pub data: Vec<u8>,
}

impl NdArray {
    pub fn to_f64(&self) -> Vec<f64> {
        self.data.chunks_exact(self.dtype.size()).map(|c| self.dtype.decode_f64(c)).collect()
    }
}

/// A pickled value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// A dict (insertion order); `ordered` marks a `collections.OrderedDict`.
    Dict {
        items: Vec<(Value, Value)>,
        ordered: bool,
    },
    Tensor(TensorRef),
    Array(NdArray),
    /// A reference to a global the caller allowed (`module.name`); never called.
    Global(String),
}

impl Value {
    pub fn dict(items: Vec<(Value, Value)>) -> Value {
        Value::Dict { items, ordered: false }
    }
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }
    /// The value of a string key of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict { items, .. } => {
                items.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|x| &x.1)
            }
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
    /// Items of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict { items, .. } => Some(items),
            _ => None,
        }
    }
    /// A short name of the variant for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict { .. } => "dict",
            Value::Tensor(_) => "tensor",
            Value::Array(_) => "ndarray",
            Value::Global(_) => "global",
        }
    }

    /// JSON form (tuples as arrays, arrays as nested lists, dict keys as strings); tensors,
    /// bytes and globals have none.
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        use serde_json::Value as J;
        Ok(match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::List(v) | Value::Tuple(v) => J::Array(v.iter().map(|x| x.to_json()).collect::<Result<_, _>>()?),
            Value::Dict { items, .. } => {
                let mut m = serde_json::Map::new();
                for (k, v) in items {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        other => return Err(format!("a dict key of type {} has no JSON form", other.type_name())),
                    };
                    m.insert(key, v.to_json()?);
                }
                J::Object(m)
            }
            Value::Array(a) => {
                let flat: Vec<J> = a
                    .to_f64()
                    .into_iter()
                    .map(|x| {
                        if a.dtype == DType::Bool {
                            J::Bool(x != 0.0)
                        } else if matches!(a.dtype, DType::F64 | DType::F32 | DType::F16 | DType::BF16) {
                            serde_json::Number::from_f64(x).map(J::Number).unwrap_or(J::Null)
                        } else {
                            J::from(x as i64)
                        }
                    })
                    .collect();
                nest(flat, &a.shape)
            }
            Value::Bytes(_) | Value::Tensor(_) | Value::Global(_) => {
                return Err(format!("a {} has no JSON form", self.type_name()))
            }
        })
    }

    /// From JSON (objects → dicts, arrays → lists).
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::None,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::dict(o.iter().map(|(k, v)| (Value::str(k.clone()), Value::from_json(v))).collect()),
        }
    }
}

fn nest(flat: Vec<serde_json::Value>, shape: &[usize]) -> serde_json::Value {
    if shape.len() <= 1 {
        return if shape.is_empty() {
            flat.into_iter().next().unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Array(flat)
        };
    }
    let inner: usize = shape[1..].iter().product();
    if inner == 0 {
        return serde_json::Value::Array(vec![serde_json::Value::Array(vec![]); shape[0]]);
    }
    let mut out = Vec::with_capacity(shape[0]);
    let mut it = flat.into_iter();
    for _ in 0..shape[0] {
        let chunk: Vec<_> = it.by_ref().take(inner).collect();
        out.push(nest(chunk, &shape[1..]));
    }
    serde_json::Value::Array(out)
}

/// A pickle that cannot be read: the byte offset and the problem.
#[derive(Debug, thiserror::Error)]
#[error("pickle, at byte {offset}: {msg}")]
pub struct PickleError {
    pub offset: usize,
    pub msg: String,
}

#[cfg(test)]
mod tests;

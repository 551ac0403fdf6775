//! The pickle reader: an opcode interpreter over an arena of nodes (so memoised containers that
//! are filled after their `PUT` are shared, as in Python), materialised into a [`Value`] tree at
//! `STOP` with bounded depth and size. Nothing is ever executed: every global is either
//! interpreted by Rust code here or refused.

use super::{DType, NdArray, PickleError, TensorRef, Value};
use std::collections::HashMap;

/// What the reader accepts beyond the built-in whitelist.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Globals (`module.name`) allowed as plain references (never called).
    pub references: Vec<String>,
    /// Most nodes the materialised tree may have (shared values count each time).
    pub max_nodes: usize,
    /// Deepest nesting of containers.
    pub max_depth: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { references: vec![], max_nodes: 20_000_000, max_depth: 256 }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Leaf(Value),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Dict {
        items: Vec<(usize, usize)>,
        ordered: bool,
    },
    /// A whitelisted global, before it is called.
    Global(String),
    /// A persistent id (torch storage), before `_rebuild_tensor_v2` uses it.
    Storage {
        key: String,
        dtype: DType,
        numel: usize,
    },
    /// `numpy.dtype(code)`, byte order set by `BUILD`.
    NpDtype {
        code: String,
        order: char,
    },
    /// `numpy.core.multiarray._reconstruct(...)`, filled by `BUILD`.
    NpPending,
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Node(usize),
    Mark,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Slot>,
    memo: HashMap<u64, usize>,
    opts: &'a ReadOptions,
}

const NUMPY_MODULES: [&str; 2] = ["numpy.core.multiarray", "numpy._core.multiarray"];

/// Globals the reader interprets (called through `REDUCE`/`NEWOBJ`, or used as persistent-id
/// storage types).
fn known_global(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("collections", "OrderedDict")
            | ("torch._utils", "_rebuild_tensor_v2")
            | ("torch._utils", "_rebuild_parameter")
            | ("torch", "device")
            | ("_codecs", "encode")
            | ("builtins" | "__builtin__", "set" | "frozenset")
            | ("numpy", "dtype" | "ndarray")
    ) || (module == "torch" && DType::from_torch_storage(name).is_some())
        || (NUMPY_MODULES.contains(&module) && matches!(name, "scalar" | "_reconstruct"))
}

/// Parses a pickle (protocols 0–5, the opcodes `torch.save` and `pickle.dump` emit for plain
/// data) into a value tree.
pub fn read(data: &[u8], opts: &ReadOptions) -> Result<Value, PickleError> {
    let mut r = Reader { data, pos: 0, op_pos: 0, nodes: vec![], stack: vec![], memo: HashMap::new(), opts };
    let root = r.run()?;
    let mut budget = opts.max_nodes;
    r.materialize(root, 0, &mut budget)
}

impl<'a> Reader<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError { offset: self.op_pos, msg: msg.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(e) => {
                let s = &self.data[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => self.err(format!("truncated: needs {n} more bytes, {} left", self.data.len() - self.pos)),
        }
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => self.err("truncated: a text argument has no end of line"),
        }
    }
    fn len_arg(&mut self, n: u64) -> Result<usize, PickleError> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return self.err(format!("truncated or oversized: declares {n} bytes, {left} left"));
        }
        Ok(n as usize)
    }
    fn utf8(&self, b: &[u8]) -> Result<String, PickleError> {
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.err("a string is not valid UTF-8"),
        }
    }

    fn push(&mut self, n: Node) -> Result<(), PickleError> {
        if self.nodes.len() >= self.opts.max_nodes {
            return self.err(format!("more than {} values", self.opts.max_nodes));
        }
        self.nodes.push(n);
        self.stack.push(Slot::Node(self.nodes.len() - 1));
        Ok(())
    }
    fn leaf(&mut self, v: Value) -> Result<(), PickleError> {
        self.push(Node::Leaf(v))
    }
    fn pop(&mut self) -> Result<usize, PickleError> {
        match self.stack.pop() {
            Some(Slot::Node(i)) => Ok(i),
            Some(Slot::Mark) => self.err("a value was expected, found a mark"),
            None => self.err("stack underflow"),
        }
    }
    fn top(&self) -> Result<usize, PickleError> {
        match self.stack.last() {
            Some(Slot::Node(i)) => Ok(*i),
            _ => self.err("a value was expected on the stack"),
        }
    }
    /// Pops everything down to the last mark (exclusive), in push order.
    fn pop_mark(&mut self) -> Result<Vec<usize>, PickleError> {
        let Some(m) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return self.err("no mark on the stack");
        };
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        items
            .into_iter()
            .map(|s| match s {
                Slot::Node(i) => Ok(i),
                Slot::Mark => unreachable!("the last mark was at m"),
            })
            .collect()
    }
    fn memo_put(&mut self, k: u64) -> Result<(), PickleError> {
        let t = self.top()?;
        if self.memo.len() >= self.opts.max_nodes {
            return self.err("memo too large");
        }
        self.memo.insert(k, t);
        Ok(())
    }
    fn memo_get(&mut self, k: u64) -> Result<(), PickleError> {
        match self.memo.get(&k) {
            Some(&i) => {
                self.stack.push(Slot::Node(i));
                Ok(())
            }
            None => self.err(format!("memo key {k} was never stored")),
        }
    }

    fn leaf_of(&self, i: usize) -> Option<&Value> {
        match &self.nodes[i] {
            Node::Leaf(v) => Some(v),
            _ => None,
        }
    }
    fn int_of(&self, i: usize, what: &str) -> Result<i64, PickleError> {
        match self.leaf_of(i) {
            Some(Value::Int(v)) => Ok(*v),
            Some(Value::Bool(b)) => Ok(*b as i64),
            _ => self.err(format!("{what} must be an integer")),
        }
    }
    fn usize_of(&self, i: usize, what: &str) -> Result<usize, PickleError> {
        let v = self.int_of(i, what)?;
        usize::try_from(v).or_else(|_| self.err(format!("{what} is negative ({v})")))
    }
    fn str_of(&self, i: usize, what: &str) -> Result<String, PickleError> {
        match self.leaf_of(i) {
            Some(Value::Str(s)) => Ok(s.clone()),
            _ => self.err(format!("{what} must be a string")),
        }
    }
    fn seq_of(&self, i: usize, what: &str) -> Result<Vec<usize>, PickleError> {
        match &self.nodes[i] {
            Node::Tuple(v) | Node::List(v) => Ok(v.clone()),
            _ => self.err(format!("{what} must be a tuple")),
        }
    }
    fn usizes_of(&self, i: usize, what: &str) -> Result<Vec<usize>, PickleError> {
        self.seq_of(i, what)?.into_iter().map(|j| self.usize_of(j, what)).collect()
    }

    fn global(&mut self, module: String, name: String) -> Result<(), PickleError> {
        let full = format!("{module}.{name}");
        if known_global(&module, &name) {
            self.push(Node::Global(full))
        } else if self.opts.references.contains(&full) {
            self.leaf(Value::Global(full))
        } else {
            self.err(format!("refuses the global {full}: not plain checkpoint data (nothing is executed)"))
        }
    }

    /// `REDUCE` / `NEWOBJ`: calls one of the interpreted globals.
    ///
    /// Long (~100 lines): one arm per whitelisted global, each checking its arguments; kept
    /// together so the interpreted set reads as one list.
    fn call(&mut self, func: usize, args: usize) -> Result<(), PickleError> {
        let name = match &self.nodes[func] {
            Node::Global(g) => g.clone(),
            Node::Leaf(Value::Global(g)) => return self.err(format!("refuses to call {g}")),
            _ => return self.err("REDUCE on something that is not a known global"),
        };
        let a = self.seq_of(args, &format!("the arguments of {name}"))?;
        let short = name.rsplit('.').next().unwrap_or("").to_string();
        match name.as_str() {
            "collections.OrderedDict" => {
                if !a.is_empty() {
                    return self.err("OrderedDict with arguments is not supported");
                }
                self.push(Node::Dict { items: vec![], ordered: true })
            }
            "torch._utils._rebuild_tensor_v2" => {
                if a.len() < 4 {
                    return self.err("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
                }
                let Node::Storage { key, dtype, numel } = self.nodes[a[0]].clone() else {
                    return self.err("_rebuild_tensor_v2: the first argument is not a torch storage");
                };
                let offset = self.usize_of(a[1], "a tensor's storage offset")?;
                let shape = self.usizes_of(a[2], "a tensor's size")?;
                let stride = self.usizes_of(a[3], "a tensor's stride")?;
                if shape.len() != stride.len() || shape.len() > 16 {
                    return self.err(format!("a tensor has size {shape:?} and stride {stride:?}"));
                }
                let t = TensorRef { storage: key, dtype, storage_numel: numel, offset, shape, stride };
                match t.extent() {
                    Some(e) if e <= numel => self.leaf(Value::Tensor(t)),
                    _ => self.err(format!(
                        "a tensor of size {:?} (offset {}, stride {:?}) reaches past its storage of {numel} elements",
                        t.shape, t.offset, t.stride
                    )),
                }
            }
            "torch._utils._rebuild_parameter" => match a.first().and_then(|&i| self.leaf_of(i)) {
                Some(Value::Tensor(t)) => {
                    let t = t.clone();
                    self.leaf(Value::Tensor(t))
                }
                _ => self.err("_rebuild_parameter needs a tensor"),
            },
            "torch.device" => {
                let s = a.iter().map(|&i| self.materialize_leafish(i)).collect::<Vec<_>>().join(":");
                self.leaf(Value::Str(s))
            }
            "_codecs.encode" => {
                let s = match a.first() {
                    Some(&i) => self.str_of(i, "_codecs.encode's text")?,
                    None => return self.err("_codecs.encode needs a string"),
                };
                // Protocol 2 writes bytes as latin-1 text: every char is one byte.
                let mut b = Vec::with_capacity(s.len());
                for c in s.chars() {
                    match u8::try_from(c as u32) {
                        Ok(x) => b.push(x),
                        Err(_) => return self.err("_codecs.encode: not latin-1 text"),
                    }
                }
                self.leaf(Value::Bytes(b))
            }
            "builtins.set" | "builtins.frozenset" | "__builtin__.set" | "__builtin__.frozenset" => {
                let items = match a.first() {
                    Some(&i) => self.seq_of(i, "a set's items")?,
                    None => vec![],
                };
                self.push(Node::List(items))
            }
            "numpy.dtype" => {
                let code = match a.first() {
                    Some(&i) => self.str_of(i, "numpy.dtype's code")?,
                    None => return self.err("numpy.dtype needs a type code"),
                };
                self.push(Node::NpDtype { code, order: '<' })
            }
            _ if NUMPY_MODULES.iter().any(|m| name.starts_with(m)) && short == "_reconstruct" => {
                self.push(Node::NpPending)
            }
            _ if NUMPY_MODULES.iter().any(|m| name.starts_with(m)) && short == "scalar" => {
                if a.len() != 2 {
                    return self.err("numpy scalar needs (dtype, bytes)");
                }
                let dt = self.np_dtype(a[0])?;
                let bytes = match self.leaf_of(a[1]) {
                    Some(Value::Bytes(b)) => b.clone(),
                    _ => return self.err("numpy scalar: the data is not bytes"),
                };
                if bytes.len() != dt.size() {
                    return self.err(format!("numpy scalar: {} bytes for a {dt:?}", bytes.len()));
                }
                let x = dt.decode_f64(&bytes);
                let v = match dt {
                    DType::F64 | DType::F32 | DType::F16 | DType::BF16 => Value::Float(x),
                    DType::Bool => Value::Bool(x != 0.0),
                    DType::I64 => Value::Int(i64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]))),
                    _ => Value::Int(x as i64),
                };
                self.leaf(v)
            }
            other => self.err(format!("{other} cannot be called here")),
        }
    }

    fn materialize_leafish(&self, i: usize) -> String {
        match self.leaf_of(i) {
            Some(Value::Str(s)) => s.clone(),
            Some(Value::Int(v)) => v.to_string(),
            _ => String::new(),
        }
    }

    fn np_dtype(&self, i: usize) -> Result<DType, PickleError> {
        match &self.nodes[i] {
            Node::NpDtype { code, order } => {
                if *order == '>' {
                    return self.err(format!("big-endian numpy dtype {code} is not supported"));
                }
                DType::from_numpy(code).map_or_else(|| self.err(format!("numpy dtype {code} is not supported")), Ok)
            }
            _ => self.err("expected a numpy dtype"),
        }
    }

    /// `BUILD`: state for dicts (ignored attributes), dtypes (byte order), arrays (contents).
    fn build(&mut self, obj: usize, state: usize) -> Result<(), PickleError> {
        match self.nodes[obj].clone() {
            Node::Dict { .. } | Node::Leaf(Value::Tensor(_)) => Ok(()),
            Node::NpDtype { code, .. } => {
                let st = self.seq_of(state, "a numpy dtype's state")?;
                let order = match st.get(1).and_then(|&i| self.leaf_of(i)) {
                    Some(Value::Str(s)) => s.chars().next().unwrap_or('<'),
                    _ => '<',
                };
                self.nodes[obj] = Node::NpDtype { code, order };
                Ok(())
            }
            Node::NpPending => {
                // (version, shape, dtype, is_fortran, raw data)
                let st = self.seq_of(state, "a numpy array's state")?;
                if st.len() != 5 {
                    return self.err("a numpy array's state must have 5 entries");
                }
                let shape = self.usizes_of(st[1], "a numpy array's shape")?;
                let dtype = self.np_dtype(st[2])?;
                if self.int_of(st[3], "is_fortran")? != 0 && shape.len() > 1 {
                    return self.err("Fortran-ordered numpy arrays are not supported");
                }
                let data = match self.leaf_of(st[4]) {
                    Some(Value::Bytes(b)) => b.clone(),
                    _ => return self.err("a numpy array's data must be bytes (object arrays are refused)"),
                };
                let n = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
                if n.and_then(|n| n.checked_mul(dtype.size())) != Some(data.len()) {
                    return self.err(format!("a numpy array of shape {shape:?} has {} data bytes", data.len()));
                }
                self.nodes[obj] = Node::Leaf(Value::Array(NdArray { dtype, shape, data }));
                Ok(())
            }
            _ => self.err("BUILD on an object this reader does not know"),
        }
    }

    fn persistent(&mut self, pid: usize) -> Result<(), PickleError> {
        let t = self.seq_of(pid, "a persistent id")?;
        if t.len() != 5 || self.str_of(t[0], "a persistent id's tag").ok().as_deref() != Some("storage") {
            return self.err("a persistent id is not ('storage', type, key, location, numel)");
        }
        let dtype = match &self.nodes[t[1]] {
            Node::Global(g) => g.strip_prefix("torch.").and_then(DType::from_torch_storage),
            _ => None,
        };
        let Some(dtype) = dtype else { return self.err("a storage's type is not a torch typed storage") };
        let key = self.str_of(t[2], "a storage key")?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return self.err(format!("storage key {key:?} is not a plain name"));
        }
        let numel = self.usize_of(t[4], "a storage's size")?;
        self.push(Node::Storage { key, dtype, numel })
    }

    /// Runs opcodes until `STOP`; returns the root node.
    ///
    /// Long (~245 lines) on purpose: one `match` arm per accepted opcode, the whole whitelist in
    /// one place to audit (anything not matched is refused).
    fn run(&mut self) -> Result<usize, PickleError> {
        loop {
            self.op_pos = self.pos;
            let op = match self.take(1) {
                Ok(b) => b[0],
                Err(_) => return self.err("truncated: no STOP opcode"),
            };
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return self.err(format!("pickle protocol {p} is not supported"));
                    }
                }
                0x95 => {
                    self.u64()?;
                } // FRAME: a length hint
                b'.' => {
                    let root = self.pop()?;
                    return Ok(root);
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop().map_or_else(|| self.err("POP on an empty stack"), |_| Ok(()))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(Slot::Node(t));
                }
                b'N' => self.leaf(Value::None)?,
                0x88 => self.leaf(Value::Bool(true))?,
                0x89 => self.leaf(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.leaf(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.leaf(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.leaf(Value::Int(v as i64))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as u64 } else { self.u32()? as u64 };
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?;
                    self.leaf(Value::Int(long_le(b).map_or_else(|| self.err("an integer beyond 64 bits"), Ok)?))?
                }
                b'I' | b'L' => {
                    let l = self.line()?;
                    let s = String::from_utf8_lossy(l).trim_end_matches('L').to_string();
                    let v = match s.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(s.parse().map_or_else(|_| self.err(format!("bad integer {s:?}")), Ok)?),
                    };
                    self.leaf(v)?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.leaf(Value::Float(f64::from_be_bytes(a)))?
                }
                b'F' => {
                    let l = self.line()?;
                    let s = String::from_utf8_lossy(l).to_string();
                    self.leaf(Value::Float(
                        s.trim().parse().map_or_else(|_| self.err(format!("bad float {s:?}")), Ok)?,
                    ))?
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as u64,
                        0x8c => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.leaf(Value::Str(s))?
                }
                b'V' => {
                    let l = self.line()?;
                    let s = self.utf8(l)?;
                    if s.contains('\\') {
                        return self.err("escaped raw-unicode strings are not supported");
                    }
                    self.leaf(Value::Str(s))?
                }
                b'U' | b'T' | b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'U' | b'C' => self.u8()? as u64,
                        b'T' | b'B' => self.u32()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?.to_vec();
                    // Python 2 strings (U, T) are text in practice; bytes stay bytes.
                    let v = if matches!(op, b'U' | b'T') {
                        Value::Str(String::from_utf8_lossy(&b).into_owned())
                    } else {
                        Value::Bytes(b)
                    };
                    self.leaf(v)?
                }
                b'}' => self.push(Node::Dict { items: vec![], ordered: false })?,
                b']' => self.push(Node::List(vec![]))?,
                b')' => self.push(Node::Tuple(vec![]))?,
                0x8f => self.push(Node::List(vec![]))?, // EMPTY_SET
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?
                } // FROZENSET
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items))?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return self.err("DICT with an odd number of items");
                    }
                    let pairs = items.chunks(2).map(|c| (c[0], c[1])).collect();
                    self.push(Node::Dict { items: pairs, ordered: false })?
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    match &mut self.nodes[l] {
                        Node::List(items) => items.push(v),
                        _ => return self.err("APPEND to something that is not a list"),
                    }
                }
                b'e' | 0x90 => {
                    let vs = self.pop_mark()?;
                    let l = self.top()?;
                    match &mut self.nodes[l] {
                        Node::List(items) => items.extend(vs),
                        _ => return self.err("APPENDS/ADDITEMS to something that is not a list or set"),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    match &mut self.nodes[d] {
                        Node::Dict { items, .. } => items.push((k, v)),
                        _ => return self.err("SETITEM on something that is not a dict"),
                    }
                }
                b'u' => {
                    let kv = self.pop_mark()?;
                    if kv.len() % 2 != 0 {
                        return self.err("SETITEMS with an odd number of items");
                    }
                    let d = self.top()?;
                    match &mut self.nodes[d] {
                        Node::Dict { items, .. } => items.extend(kv.chunks(2).map(|c| (c[0], c[1]))),
                        _ => return self.err("SETITEMS on something that is not a dict"),
                    }
                }
                b'p' => {
                    let l = self.line()?;
                    let k = String::from_utf8_lossy(l).parse().map_or_else(|_| self.err("bad PUT key"), Ok)?;
                    self.memo_put(k)?
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?
                }
                b'g' => {
                    let l = self.line()?;
                    let k = String::from_utf8_lossy(l).parse().map_or_else(|_| self.err("bad GET key"), Ok)?;
                    self.memo_get(k)?
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.memo_get(k)?
                }
                b'c' => {
                    let m = self.line()?;
                    let n = self.line()?;
                    let (m, n) = (self.utf8(m)?, self.utf8(n)?);
                    self.global(m, n)?
                }
                0x93 => {
                    let n = self.pop()?;
                    let m = self.pop()?;
                    let (m, n) = (self.str_of(m, "STACK_GLOBAL's module")?, self.str_of(n, "STACK_GLOBAL's name")?);
                    self.global(m, n)?
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.call(func, args)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    self.build(obj, state)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.persistent(pid)?
                }
                other => {
                    return self.err(format!(
                        "opcode 0x{other:02x} is not supported (not plain checkpoint data: {})",
                        opcode_name(other)
                    ))
                }
            }
        }
    }

    fn materialize(&self, i: usize, depth: usize, budget: &mut usize) -> Result<Value, PickleError> {
        if depth > self.opts.max_depth {
            return Err(PickleError {
                offset: self.data.len(),
                msg: format!("nesting deeper than {} (or a cycle)", self.opts.max_depth),
            });
        }
        if *budget == 0 {
            return Err(PickleError {
                offset: self.data.len(),
                msg: format!("more than {} values once shared values are expanded", self.opts.max_nodes),
            });
        }
        *budget -= 1;
        let seq = |v: &[usize], budget: &mut usize| -> Result<Vec<Value>, PickleError> {
            v.iter().map(|&j| self.materialize(j, depth + 1, budget)).collect()
        };
        Ok(match &self.nodes[i] {
            Node::Leaf(v) => v.clone(),
            Node::List(v) => Value::List(seq(v, budget)?),
            Node::Tuple(v) => Value::Tuple(seq(v, budget)?),
            Node::Dict { items, ordered } => Value::Dict {
                items: items
                    .iter()
                    .map(|&(k, v)| {
                        Ok((self.materialize(k, depth + 1, budget)?, self.materialize(v, depth + 1, budget)?))
                    })
                    .collect::<Result<_, PickleError>>()?,
                ordered: *ordered,
            },
            Node::Global(g) => Value::Global(g.clone()),
            Node::NpDtype { code, .. } => Value::Str(code.clone()),
            Node::Storage { .. } | Node::NpPending => {
                return Err(PickleError {
                    offset: self.data.len(),
                    msg: "an unfinished object (storage or array) is part of the result".into(),
                })
            }
        })
    }
}

/// Two's-complement little-endian integer (LONG1/LONG4) in at most 64 bits.
fn long_le(b: &[u8]) -> Option<i64> {
    if b.is_empty() {
        return Some(0);
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let mut a = if neg { [0xffu8; 8] } else { [0u8; 8] };
    if b.len() > 8 {
        // Wider encodings are fine when the extra bytes are only sign extension.
        let fill = if neg { 0xff } else { 0 };
        if b[8..].iter().any(|&x| x != fill) || ((b[7] & 0x80 != 0) != neg) {
            return None;
        }
        a.copy_from_slice(&b[..8]);
    } else {
        a[..b.len()].copy_from_slice(b);
    }
    Some(i64::from_le_bytes(a))
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'i' => "INST calls a class",
        b'o' => "OBJ calls a class",
        0x92 => "NEWOBJ_EX",
        b'P' => "PERSID (text persistent id)",
        0x82..=0x84 => "EXT (extension registry)",
        0x96..=0x98 => "out-of-band buffers",
        _ => "unknown opcode",
    }
}

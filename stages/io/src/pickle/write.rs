//! The pickle writer: protocol 2, as `torch.save` writes it, for the same value subset the
//! reader accepts. Tensors become `torch._utils._rebuild_tensor_v2` calls over
//! `('storage', torch.XStorage, key, 'cpu', numel)` persistent ids, ordered dicts
//! `collections.OrderedDict` calls; `torch.load(..., weights_only=True)` accepts both.

use super::{NdArray, TensorRef, Value};

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn op(&mut self, b: u8) {
        self.out.push(b);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.op(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.op(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.op(b'\n');
    }
    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.op(b'K');
            self.op(v as u8);
        } else if (0..65536).contains(&v) {
            self.op(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.op(b'J');
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.op(0x8a);
            self.op(8);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn str(&mut self, s: &str) {
        self.op(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        // Protocol 2 has no bytes opcode for Python 3: `_codecs.encode(latin-1 text, 'latin1')`.
        self.global("_codecs", "encode");
        let text: String = b.iter().map(|&c| c as char).collect();
        self.str(&text);
        self.str("latin1");
        self.op(0x86);
        self.op(b'R');
    }
    fn tuple(&mut self, items: &[Value]) {
        match items.len() {
            0 => self.op(b')'),
            1..=3 => {
                items.iter().for_each(|v| self.value(v));
                self.op(0x84 + items.len() as u8);
            }
            _ => {
                self.op(b'(');
                items.iter().for_each(|v| self.value(v));
                self.op(b't');
            }
        }
    }
    fn usizes(&mut self, v: &[usize]) {
        let items: Vec<Value> = v.iter().map(|&x| Value::Int(x as i64)).collect();
        self.tuple(&items);
    }
    fn tensor(&mut self, t: &TensorRef) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(b'(');
        // persistent id
        self.op(b'(');
        self.str("storage");
        self.global("torch", t.dtype.torch_storage());
        self.str(&t.storage);
        self.str("cpu");
        self.int(t.storage_numel as i64);
        self.op(b't');
        self.op(b'Q');
        self.int(t.offset as i64);
        self.usizes(&t.shape);
        self.usizes(&t.stride);
        self.op(0x89);
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
        self.op(b't');
        self.op(b'R');
    }
    fn array(&mut self, a: &NdArray) {
        // numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b') + BUILD state.
        self.global("numpy.core.multiarray", "_reconstruct");
        self.global("numpy", "ndarray");
        self.tuple(&[Value::Int(0)]);
        self.bytes(b"b");
        self.op(0x87);
        self.op(b'R');
        self.op(b'(');
        self.int(1);
        self.usizes(&a.shape);
        self.global("numpy", "dtype");
        let code = match a.dtype {
            super::DType::F64 => "f8",
            super::DType::F32 => "f4",
            super::DType::F16 => "f2",
            super::DType::I64 => "i8",
            super::DType::I32 => "i4",
            super::DType::I16 => "i2",
            super::DType::I8 => "i1",
            super::DType::U8 | super::DType::BF16 => "u1",
            super::DType::Bool => "b1",
        };
        self.str(code);
        self.op(0x89);
        self.op(0x88);
        self.op(0x87);
        self.op(b'R');
        self.op(b'(');
        self.int(3);
        self.str(if a.dtype.size() > 1 { "<" } else { "|" });
        self.op(b'N');
        self.op(b'N');
        self.op(b'N');
        self.int(-1);
        self.int(-1);
        self.int(0);
        self.op(b't');
        self.op(b'b');
        self.op(0x89);
        self.bytes(&a.data);
        self.op(b't');
        self.op(b'b');
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::None => self.op(b'N'),
            Value::Bool(true) => self.op(0x88),
            Value::Bool(false) => self.op(0x89),
            Value::Int(i) => self.int(*i),
            Value::Float(f) => {
                self.op(b'G');
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => self.str(s),
            Value::Bytes(b) => self.bytes(b),
            Value::Tuple(items) => self.tuple(items),
            Value::List(items) => {
                self.op(b']');
                for chunk in items.chunks(1000) {
                    self.op(b'(');
                    chunk.iter().for_each(|x| self.value(x));
                    self.op(b'e');
                }
            }
            Value::Dict { items, ordered } => {
                if *ordered {
                    self.global("collections", "OrderedDict");
                    self.op(b')');
                    self.op(b'R');
                } else {
                    self.op(b'}');
                }
                for chunk in items.chunks(1000) {
                    self.op(b'(');
                    for (k, x) in chunk {
                        self.value(k);
                        self.value(x);
                    }
                    self.op(b'u');
                }
            }
            Value::Tensor(t) => self.tensor(t),
            Value::Array(a) => self.array(a),
            Value::Global(g) => {
                let (m, n) = g.rsplit_once('.').unwrap_or(("builtins", g.as_str()));
                self.global(m, n);
            }
        }
    }
}

/// Pickles `v` (protocol 2, no memo: values are written as trees).
pub fn write(v: &Value) -> Vec<u8> {
    let mut w = Writer { out: vec![0x80, 2] };
    w.value(v);
    w.op(b'.');
    w.out
}

//! PyTorch checkpoint files (`torch.save`, the zip format of torch ≥ 1.6): a zip archive with
//! one top-level folder holding `data.pkl` (the pickled object, see [`crate::pickle`]),
//! `data/KEY` (the raw little-endian bytes of each storage), `byteorder` and `version`.
//!
//! [`PthArchive::open`] reads and checks the pickle; tensors are read on demand
//! ([`PthArchive::tensor_f32`]) and every storage is checked against its declared size, every
//! view against its storage. Nothing in the file is executed. [`write_pth`] writes the same
//! format (what `torch.load`, also with `weights_only=True`, reads).

use crate::pickle::{self, DType, ReadOptions, TensorRef, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// A checkpoint that cannot be read or written: the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct PthError {
    pub path: PathBuf,
    pub msg: String,
}

/// Largest `data.pkl` accepted (checkpoints hold weights in storages, not in the pickle).
pub const MAX_PICKLE_BYTES: u64 = 512 << 20;
/// Largest single storage accepted.
pub const MAX_STORAGE_BYTES: u64 = 16 << 30;

/// An opened `.pth` file: its pickled root value and access to its storages.
pub struct PthArchive {
    path: PathBuf,
    zip: zip::ZipArchive<BufReader<File>>,
    prefix: String,
    pub root: Value,
    storages: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for PthArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PthArchive").field("path", &self.path).field("prefix", &self.prefix).finish()
    }
}

fn read_entry(
    zip: &mut zip::ZipArchive<BufReader<File>>,
    name: &str,
    limit: u64,
    path: &Path,
) -> Result<Vec<u8>, PthError> {
    let bad = |msg: String| PthError { path: path.to_path_buf(), msg };
    let entry = zip.by_name(name).map_err(|e| bad(format!("{name}: {e}")))?;
    let declared = entry.size();
    if declared > limit {
        return Err(bad(format!("{name} declares {declared} bytes, more than the {limit} accepted")));
    }
    let mut buf = Vec::with_capacity(declared as usize);
    // `take` guards against an entry that inflates past its declared size.
    entry.take(declared + 1).read_to_end(&mut buf).map_err(|e| bad(format!("{name}: {e} (truncated or corrupt)")))?;
    if buf.len() as u64 != declared {
        return Err(bad(format!("{name} holds {} bytes, its header says {declared}", buf.len())));
    }
    Ok(buf)
}

impl PthArchive {
    /// Opens a checkpoint and parses its pickle (`references`: extra globals allowed as plain
    /// names, see [`ReadOptions`]).
    pub fn open(path: &Path) -> Result<PthArchive, PthError> {
        Self::open_with(path, &ReadOptions::default())
    }

    pub fn open_with(path: &Path, opts: &ReadOptions) -> Result<PthArchive, PthError> {
        let bad = |msg: String| PthError { path: path.to_path_buf(), msg };
        let mut f = File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut magic = [0u8; 4];
        let n = f.read(&mut magic).map_err(|e| bad(e.to_string()))?;
        if n < 4 {
            return Err(bad("is empty or truncated (not a torch checkpoint)".into()));
        }
        if magic[0] == 0x80 {
            return Err(bad(
                "is a legacy (torch < 1.6) checkpoint; re-save it with a recent torch (torch.save writes zip files)"
                    .into(),
            ));
        }
        if &magic != b"PK\x03\x04" {
            return Err(bad("is not a torch checkpoint (not a zip archive)".into()));
        }
        drop(f);
        let f = File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut zip = zip::ZipArchive::new(BufReader::new(f))
            .map_err(|e| bad(format!("is not a readable zip archive (truncated or corrupt): {e}")))?;
        let pkl = zip
            .file_names()
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .map(String::from)
            .next()
            .ok_or_else(|| bad("has no data.pkl (not a torch checkpoint)".into()))?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        if let Ok(bo) = read_entry(&mut zip, &format!("{prefix}byteorder"), 16, path) {
            if bo != b"little" {
                return Err(bad(format!("byte order {:?} is not supported", String::from_utf8_lossy(&bo))));
            }
        }
        let data = read_entry(&mut zip, &pkl, MAX_PICKLE_BYTES, path)?;
        let root = pickle::read(&data, opts).map_err(|e| bad(format!("{pkl}: {e}")))?;
        Ok(PthArchive { path: path.to_path_buf(), zip, prefix, root, storages: HashMap::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn storage(&mut self, t: &TensorRef) -> Result<&[u8], PthError> {
        if !self.storages.contains_key(&t.storage) {
            let name = format!("{}data/{}", self.prefix, t.storage);
            let want = (t.storage_numel as u64).checked_mul(t.dtype.size() as u64).filter(|&b| b <= MAX_STORAGE_BYTES);
            let Some(want) = want else {
                return Err(PthError {
                    path: self.path.clone(),
                    msg: format!("storage {} declares {} elements (oversized)", t.storage, t.storage_numel),
                });
            };
            let bytes = read_entry(&mut self.zip, &name, want, &self.path)?;
            if bytes.len() as u64 != want {
                return Err(PthError {
                    path: self.path.clone(),
                    msg: format!(
                        "{name} holds {} bytes; the checkpoint declares {} {:?} elements ({want} bytes)",
                        bytes.len(),
                        t.storage_numel,
                        t.dtype
                    ),
                });
            }
            self.storages.insert(t.storage.clone(), bytes);
        }
        Ok(&self.storages[&t.storage])
    }

    /// The tensor's elements as f32, C order (any stride; floats and integers are converted).
    pub fn tensor_f32(&mut self, t: &TensorRef) -> Result<Vec<f32>, PthError> {
        if t.extent().is_none_or(|e| e > t.storage_numel) {
            return Err(PthError {
                path: self.path.clone(),
                msg: format!("a tensor of size {:?} reaches past its storage {}", t.shape, t.storage),
            });
        }
        let es = t.dtype.size();
        let dtype = t.dtype;
        let bytes = self.storage(t)?;
        let n = t.numel();
        let mut out = Vec::with_capacity(n);
        let contiguous = TensorRef::contiguous_strides(&t.shape) == t.stride;
        if contiguous && dtype == DType::F32 {
            let b = &bytes[t.offset * 4..(t.offset + n) * 4];
            out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            return Ok(out);
        }
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..n {
            let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            out.push(dtype.decode_f64(&bytes[off * es..(off + 1) * es]) as f32);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(out)
    }
}

/// One storage to write: its key (`data/KEY`), element type and little-endian bytes.
#[derive(Clone, Debug)]
pub struct StorageData {
    pub key: String,
    pub dtype: DType,
    pub bytes: Vec<u8>,
}

/// A contiguous f32 tensor stored alone in storage `key`: its storage and its reference.
pub fn f32_tensor(key: &str, shape: &[usize], data: &[f32]) -> (StorageData, TensorRef) {
    let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    let t = TensorRef {
        storage: key.to_string(),
        dtype: DType::F32,
        storage_numel: data.len(),
        offset: 0,
        shape: shape.to_vec(),
        stride: TensorRef::contiguous_strides(shape),
    };
    (StorageData { key: key.to_string(), dtype: DType::F32, bytes }, t)
}

/// Writes a checkpoint (`archive/data.pkl`, `archive/data/KEY`, ...) through a temporary file
/// renamed into place. Every tensor in `root` must refer to one of `storages`.
pub fn write_pth(path: &Path, root: &Value, storages: &[StorageData]) -> Result<(), PthError> {
    let bad = |msg: String| PthError { path: path.to_path_buf(), msg };
    let tmp = path.with_extension("pth.partial");
    let result = (|| -> Result<(), PthError> {
        let f = File::create(&tmp).map_err(|e| bad(e.to_string()))?;
        let mut z = zip::ZipWriter::new(std::io::BufWriter::new(f));
        let opts = |large: bool| {
            zip::write::FileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(large)
                .last_modified_time(zip::DateTime::default())
        };
        let mut put = |name: &str, data: &[u8]| -> Result<(), PthError> {
            z.start_file(format!("archive/{name}"), opts(data.len() as u64 >= u32::MAX as u64))
                .map_err(|e| bad(e.to_string()))?;
            z.write_all(data).map_err(|e| bad(e.to_string()))
        };
        put("data.pkl", &pickle::write(root))?;
        put("byteorder", b"little")?;
        for s in storages {
            put(&format!("data/{}", s.key), &s.bytes)?;
        }
        put("version", b"3\n")?;
        put(".data/serialization_id", b"0000000000000000000000000000000000000000")?;
        let w = z.finish().map_err(|e| bad(e.to_string()))?;
        let f = w.into_inner().map_err(|e| bad(e.to_string()))?;
        f.sync_all().map_err(|e| bad(e.to_string()))
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|e| bad(e.to_string())),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let (s0, t0) = f32_tensor("0", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let (s1, t1) = f32_tensor("1", &[3], &[7.0, 8.0, 9.0]);
        let mut tt = t0.clone();
        tt.shape = vec![3, 2];
        tt.stride = vec![1, 3];
        let root = Value::dict(vec![
            (
                Value::str("network_weights"),
                Value::Dict {
                    items: vec![
                        (Value::str("a.weight"), Value::Tensor(t0)),
                        (Value::str("a.bias"), Value::Tensor(t1)),
                        (Value::str("a_t"), Value::Tensor(tt)),
                    ],
                    ordered: true,
                },
            ),
            (Value::str("trainer_name"), Value::str("nnUNetTrainer")),
        ]);
        let p = dir.join("c.pth");
        write_pth(&p, &root, &[s0, s1]).unwrap();
        p
    }

    #[test]
    fn write_then_read_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let mut a = PthArchive::open(&p).unwrap();
        assert_eq!(a.root.get("trainer_name").and_then(|v| v.as_str()), Some("nnUNetTrainer"));
        let w = a.root.get("network_weights").unwrap().clone();
        let get = |k: &str| match w.get(k) {
            Some(Value::Tensor(t)) => t.clone(),
            _ => panic!("{k}"),
        };
        assert_eq!(a.tensor_f32(&get("a.weight")).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(a.tensor_f32(&get("a.bias")).unwrap(), vec![7.0, 8.0, 9.0]);
        // A transposed view of the same storage.
        assert_eq!(a.tensor_f32(&get("a_t")).unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn refuses_truncated_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let bytes = std::fs::read(&p).unwrap();
        for cut in [0, 3, 100, bytes.len() / 2, bytes.len() - 10] {
            let q = dir.path().join(format!("cut{cut}.pth"));
            std::fs::write(&q, &bytes[..cut]).unwrap();
            let e = PthArchive::open(&q).and_then(|mut a| {
                let w = a.root.get("network_weights").cloned();
                if let Some(Value::Tensor(t)) = w.as_ref().and_then(|w| w.get("a.weight")) {
                    a.tensor_f32(t)?;
                }
                Ok(())
            });
            let e = e.expect_err(&format!("cut at {cut}"));
            assert!(e.path == q && !e.msg.is_empty());
        }
        let q = dir.path().join("legacy.pth");
        std::fs::write(&q, b"\x80\x02\x8a\x0alegacy").unwrap();
        assert!(PthArchive::open(&q).unwrap_err().msg.contains("legacy"));
        let q = dir.path().join("text.pth");
        std::fs::write(&q, b"hello world").unwrap();
        assert!(PthArchive::open(&q).unwrap_err().msg.contains("not a torch checkpoint"));
    }

    #[test]
    fn refuses_storage_size_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        // The pickle declares 6 elements; the storage holds 5.
        let (mut s0, t0) = f32_tensor("0", &[2, 3], &[1.0; 6]);
        s0.bytes.truncate(20);
        let root = Value::dict(vec![(Value::str("w"), Value::Tensor(t0.clone()))]);
        let p = dir.path().join("bad.pth");
        write_pth(&p, &root, &[s0]).unwrap();
        let mut a = PthArchive::open(&p).unwrap();
        let e = a.tensor_f32(&t0).unwrap_err();
        assert!(e.msg.contains("holds 20 bytes"), "{e}");
        // A storage that is missing from the archive.
        let (_s, t) = f32_tensor("7", &[1], &[0.0]);
        assert!(a.tensor_f32(&t).unwrap_err().msg.contains("data/7"));
    }
}

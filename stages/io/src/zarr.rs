//! A minimal Zarr v3 implementation: groups with attributes and N-d arrays on the local
//! filesystem, with a regular chunk grid, the default `/` chunk-key encoding, and the codec
//! chain `bytes(little) -> zstd`. Stores written here open with zarr-python 3 and zarrs.
//!
//! Reading a region touches only the chunks that overlap it (partial reads); parts of the
//! region outside the array come back as a caller-chosen pad value, which is how the
//! training sampler pads data with 0 and labels with -1.

use rayon::prelude::*;
use serde_json::{json, Value};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ZarrError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: invalid Zarr metadata: {msg}")]
    Metadata { path: PathBuf, msg: String },
    #[error("{path}: array has data type {found}, expected {expected}")]
    DataType { path: PathBuf, found: String, expected: &'static str },
    #[error("{path}: chunk is corrupt: {msg}")]
    Chunk { path: PathBuf, msg: String },
    #[error("{0}")]
    Shape(String),
}

type Result<T> = std::result::Result<T, ZarrError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ZarrError + '_ {
    move |source| ZarrError::Io { path: path.to_path_buf(), source }
}

/// Element types this store can hold.
pub trait Element: Copy + Send + Sync + Default + 'static {
    const DTYPE: &'static str;
    const SIZE: usize;
    fn write_le(self, out: &mut Vec<u8>);
    fn read_le(b: &[u8]) -> Self;
    fn fill_json(self) -> Value;
}

macro_rules! element {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            const DTYPE: &'static str = $name;
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline]
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn read_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("element width"))
            }
            fn fill_json(self) -> Value {
                json!(self)
            }
        }
    };
}
element!(u8, "uint8");
element!(i8, "int8");
element!(u16, "uint16");
element!(i16, "int16");
element!(u32, "uint32");
element!(i32, "int32");
element!(i64, "int64");
element!(f64, "float64");

impl Element for f32 {
    const DTYPE: &'static str = "float32";
    const SIZE: usize = 4;
    #[inline]
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline]
    fn read_le(b: &[u8]) -> Self {
        f32::from_le_bytes(b.try_into().expect("element width"))
    }
    fn fill_json(self) -> Value {
        if self.is_nan() {
            json!("NaN")
        } else {
            json!(self)
        }
    }
}

thread_local! {
    /// One zstd context per thread and level, reused across chunks (creating one per chunk
    /// showed up in profiles of small arrays).
    static ZSTD_C: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn zstd_compress(bytes: &[u8], level: i32) -> io::Result<Vec<u8>> {
    ZSTD_C.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, z) = c.as_mut().expect("compressor set above");
        z.compress(bytes)
    })
}

fn zstd_decompress(raw: &[u8], capacity: usize) -> io::Result<Vec<u8>> {
    ZSTD_D.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("decompressor set above").decompress(raw, capacity)
    })
}

fn write_json_atomic(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("json");
    fs::write(path, text).map_err(io_err(path))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| ZarrError::Metadata { path: path.to_path_buf(), msg: e.to_string() })
}

/// Creates (or overwrites the metadata of) a group at `dir` with the given attributes.
pub fn write_group(dir: &Path, attributes: Value) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let meta = json!({"zarr_format": 3, "node_type": "group", "attributes": attributes});
    write_json_atomic(&dir.join("zarr.json"), &meta)
}

/// Reads the attributes of the group (or array) at `dir`.
pub fn read_attributes(dir: &Path) -> Result<Value> {
    let p = dir.join("zarr.json");
    let meta = read_json(&p)?;
    if meta.get("zarr_format") != Some(&json!(3)) {
        return Err(ZarrError::Metadata { path: p, msg: "zarr_format is not 3".into() });
    }
    Ok(meta.get("attributes").cloned().unwrap_or_else(|| json!({})))
}

/// An N-d array in a Zarr v3 store.
#[derive(Clone, Debug)]
pub struct ZarrArray {
    pub dir: PathBuf,
    pub shape: Vec<usize>,
    pub chunks: Vec<usize>,
    pub dtype: String,
    zstd: bool,
    /// Chunk key separator: `.` (`c.0.1.0`, what we write: one file per chunk and no folder
    /// per index level) or `/` (`c/0/1/0`, read for stores written by other tools).
    sep: char,
}

/// Options for writing an array.
#[derive(Clone, Debug)]
pub struct WriteOptions<'a> {
    pub chunks: &'a [usize],
    pub dimension_names: Option<&'a [&'a str]>,
    /// zstd level, or `None` for raw chunks (intermediates read once, where compressing
    /// costs more than the bytes it saves).
    pub zstd_level: Option<i32>,
    pub attributes: Value,
}

impl ZarrArray {
    /// Writes a whole array at `dir` (metadata and every chunk; chunks are encoded in parallel).
    pub fn write<T: Element>(dir: &Path, shape: &[usize], data: &[T], opts: &WriteOptions) -> Result<ZarrArray> {
        let n: usize = shape.iter().product();
        if n != data.len() || opts.chunks.len() != shape.len() || opts.chunks.contains(&0) {
            return Err(ZarrError::Shape(format!(
                "{}: data of {} elements does not fit shape {:?} / chunks {:?}",
                dir.display(),
                data.len(),
                shape,
                opts.chunks
            )));
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut meta = json!({
            "zarr_format": 3,
            "node_type": "array",
            "shape": shape,
            "data_type": T::DTYPE,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": opts.chunks}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "."}},
            "fill_value": T::default().fill_json(),
            "codecs": match opts.zstd_level {
                Some(level) => json!([
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "zstd", "configuration": {"level": level, "checksum": false}}
                ]),
                None => json!([{"name": "bytes", "configuration": {"endian": "little"}}]),
            },
            "attributes": opts.attributes,
        });
        if let Some(names) = opts.dimension_names {
            meta["dimension_names"] = json!(names);
        }
        write_json_atomic(&dir.join("zarr.json"), &meta)?;
        let arr = ZarrArray {
            dir: dir.to_path_buf(),
            shape: shape.to_vec(),
            chunks: opts.chunks.to_vec(),
            dtype: T::DTYPE.to_string(),
            zstd: opts.zstd_level.is_some(),
            sep: '.',
        };
        let grid = arr.grid();
        let all: Vec<Vec<usize>> = grid_indices(&grid);
        let write_chunk = |ci: &Vec<usize>| -> Result<()> {
            let chunk = arr.extract_chunk(data, ci);
            let mut bytes = Vec::with_capacity(chunk.len() * T::SIZE);
            for v in chunk {
                v.write_le(&mut bytes);
            }
            let enc = match opts.zstd_level {
                Some(level) => zstd_compress(&bytes, level)
                    .map_err(|e| ZarrError::Chunk { path: arr.chunk_path(ci), msg: e.to_string() })?,
                None => bytes,
            };
            let p = arr.chunk_path(ci);
            fs::write(&p, enc).map_err(io_err(&p))
        };
        // Small arrays (a few chunks, the common case for one preprocessed case) stay on this
        // thread: callers already run one case per worker, and rayon's wake-ups cost more.
        if n < (1 << 20) {
            all.iter().try_for_each(write_chunk)?;
        } else {
            all.par_iter().try_for_each(write_chunk)?;
        }
        Ok(arr)
    }

    /// Opens an existing array and checks its metadata.
    pub fn open(dir: &Path) -> Result<ZarrArray> {
        let p = dir.join("zarr.json");
        let meta = read_json(&p)?;
        let bad = |msg: &str| ZarrError::Metadata { path: p.clone(), msg: msg.to_string() };
        if meta.get("node_type") != Some(&json!("array")) {
            return Err(bad("node_type is not 'array'"));
        }
        let usizes = |v: Option<&Value>| -> Option<Vec<usize>> {
            v?.as_array()?.iter().map(|x| x.as_u64().map(|u| u as usize)).collect()
        };
        let shape = usizes(meta.get("shape")).ok_or_else(|| bad("missing shape"))?;
        let chunks = usizes(meta.pointer("/chunk_grid/configuration/chunk_shape"))
            .ok_or_else(|| bad("missing regular chunk_shape"))?;
        if chunks.len() != shape.len() || chunks.contains(&0) {
            return Err(bad("chunk_shape does not match shape"));
        }
        let sep = meta.pointer("/chunk_key_encoding/configuration/separator").and_then(|v| v.as_str());
        let sep = match (meta.pointer("/chunk_key_encoding/name").and_then(|v| v.as_str()), sep.unwrap_or("/")) {
            (Some("default"), "/") => '/',
            (Some("default"), ".") => '.',
            _ => return Err(bad("only the default chunk key encoding ('/' or '.') is supported")),
        };
        let dtype = meta.get("data_type").and_then(|v| v.as_str()).ok_or_else(|| bad("missing data_type"))?;
        let codecs = meta.get("codecs").and_then(|v| v.as_array()).ok_or_else(|| bad("missing codecs"))?;
        let mut zstd = false;
        for c in codecs {
            match c.get("name").and_then(|v| v.as_str()) {
                Some("bytes") => {
                    let endian = c.pointer("/configuration/endian").and_then(|v| v.as_str());
                    if endian.unwrap_or("little") != "little" {
                        return Err(bad("only little-endian bytes codec is supported"));
                    }
                }
                Some("zstd") => zstd = true,
                other => return Err(bad(&format!("unsupported codec {other:?}"))),
            }
        }
        Ok(ZarrArray { dir: dir.to_path_buf(), shape, chunks, dtype: dtype.to_string(), zstd, sep })
    }

    fn grid(&self) -> Vec<usize> {
        self.shape.iter().zip(&self.chunks).map(|(s, c)| s.div_ceil(*c)).collect()
    }

    fn chunk_path(&self, ci: &[usize]) -> PathBuf {
        if self.sep == '/' {
            let mut p = self.dir.join("c");
            for i in ci {
                p.push(i.to_string());
            }
            return p;
        }
        let mut key = String::from("c");
        for i in ci {
            key.push('.');
            key.push_str(&i.to_string());
        }
        self.dir.join(key)
    }

    /// Copies chunk `ci` out of the full array (edge chunks padded with the default value).
    fn extract_chunk<T: Element>(&self, data: &[T], ci: &[usize]) -> Vec<T> {
        let nd = self.shape.len();
        let cn: usize = self.chunks.iter().product();
        let mut out = vec![T::default(); cn];
        let lo: Vec<usize> = ci.iter().zip(&self.chunks).map(|(i, c)| i * c).collect();
        let ext: Vec<usize> = (0..nd).map(|d| self.chunks[d].min(self.shape[d] - lo[d])).collect();
        let a_strides = strides(&self.shape);
        let c_strides = strides(&self.chunks);
        for_each_row(&ext, |idx| {
            let a0: usize = (0..nd).map(|d| (lo[d] + idx[d]) * a_strides[d]).sum();
            let c0: usize = (0..nd).map(|d| idx[d] * c_strides[d]).sum();
            let w = ext[nd - 1];
            out[c0..c0 + w].copy_from_slice(&data[a0..a0 + w]);
        });
        out
    }

    fn read_chunk<T: Element>(&self, ci: &[usize]) -> Result<Option<Vec<T>>> {
        let p = self.chunk_path(ci);
        let raw = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ZarrError::Io { path: p, source: e }),
        };
        let cn: usize = self.chunks.iter().product();
        let bytes = if self.zstd {
            zstd_decompress(&raw, cn * T::SIZE).map_err(|e| ZarrError::Chunk { path: p.clone(), msg: e.to_string() })?
        } else {
            raw
        };
        if bytes.len() != cn * T::SIZE {
            return Err(ZarrError::Chunk { path: p, msg: format!("{} bytes, expected {}", bytes.len(), cn * T::SIZE) });
        }
        Ok(Some(bytes.chunks_exact(T::SIZE).map(T::read_le).collect()))
    }

    fn check_dtype<T: Element>(&self) -> Result<()> {
        if self.dtype != T::DTYPE {
            return Err(ZarrError::DataType { path: self.dir.clone(), found: self.dtype.clone(), expected: T::DTYPE });
        }
        Ok(())
    }

    /// Reads the whole array.
    pub fn read_all<T: Element>(&self) -> Result<Vec<T>> {
        let start = vec![0i64; self.shape.len()];
        self.read_region(&start, &self.shape.clone(), T::default())
    }

    /// Reads the box starting at `start` (may be negative or run past the end) of extent `size`.
    /// Elements outside the array are `pad`. Only overlapping chunks are read.
    pub fn read_region<T: Element>(&self, start: &[i64], size: &[usize], pad: T) -> Result<Vec<T>> {
        self.check_dtype::<T>()?;
        let nd = self.shape.len();
        if start.len() != nd || size.len() != nd {
            return Err(ZarrError::Shape(format!(
                "{}: region of rank {} for an array of rank {nd}",
                self.dir.display(),
                start.len()
            )));
        }
        let n: usize = size.iter().product();
        let mut out = vec![pad; n];
        // Overlap of the region with the array, in array coordinates.
        let mut lo = vec![0usize; nd];
        let mut hi = vec![0usize; nd];
        for d in 0..nd {
            let a = start[d].max(0);
            let b = (start[d] + size[d] as i64).min(self.shape[d] as i64);
            if b <= a {
                return Ok(out);
            }
            lo[d] = a as usize;
            hi[d] = b as usize;
        }
        let c_lo: Vec<usize> = (0..nd).map(|d| lo[d] / self.chunks[d]).collect();
        let c_hi: Vec<usize> = (0..nd).map(|d| (hi[d] - 1) / self.chunks[d] + 1).collect();
        let c_ext: Vec<usize> = (0..nd).map(|d| c_hi[d] - c_lo[d]).collect();
        let o_strides = strides(size);
        let k_strides = strides(&self.chunks);
        for rel in grid_indices(&c_ext) {
            let ci: Vec<usize> = (0..nd).map(|d| c_lo[d] + rel[d]).collect();
            let chunk = self.read_chunk::<T>(&ci)?;
            // Intersection of this chunk with [lo, hi).
            let k0: Vec<usize> = (0..nd).map(|d| (ci[d] * self.chunks[d]).max(lo[d])).collect();
            let k1: Vec<usize> = (0..nd).map(|d| ((ci[d] + 1) * self.chunks[d]).min(hi[d])).collect();
            let ext: Vec<usize> = (0..nd).map(|d| k1[d] - k0[d]).collect();
            let w = ext[nd - 1];
            for_each_row(&ext, |idx| {
                let o0: usize = (0..nd).map(|d| ((k0[d] + idx[d]) as i64 - start[d]) as usize * o_strides[d]).sum();
                match &chunk {
                    Some(c) => {
                        let c0: usize = (0..nd).map(|d| (k0[d] + idx[d] - ci[d] * self.chunks[d]) * k_strides[d]).sum();
                        out[o0..o0 + w].copy_from_slice(&c[c0..c0 + w]);
                    }
                    None => out[o0..o0 + w].fill(T::default()),
                }
            });
        }
        Ok(out)
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// All multi-indices of a grid, in C order.
fn grid_indices(ext: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = ext.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; ext.len()];
    for _ in 0..n {
        out.push(idx.clone());
        for d in (0..ext.len()).rev() {
            idx[d] += 1;
            if idx[d] < ext[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// Calls `f` with the index of the first element of every row (last axis index 0).
fn for_each_row(ext: &[usize], mut f: impl FnMut(&[usize])) {
    let nd = ext.len();
    if ext.contains(&0) {
        return;
    }
    let mut outer = ext.to_vec();
    outer[nd - 1] = 1;
    for idx in grid_indices(&outer) {
        f(&idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(chunks: &[usize]) -> WriteOptions<'_> {
        WriteOptions { chunks, dimension_names: None, zstd_level: Some(3), attributes: json!({}) }
    }

    #[test]
    fn roundtrip_and_regions() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [2usize, 5, 7, 9];
        let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32).collect();
        let a = ZarrArray::write(&dir.path().join("a"), &shape, &data, &opts(&[1, 2, 3, 4])).unwrap();
        let b = ZarrArray::open(&a.dir).unwrap();
        assert_eq!(b.read_all::<f32>().unwrap(), data);
        // A region overlapping the border on both sides.
        let start = [0i64, -2, 3, 6];
        let size = [2usize, 4, 6, 5];
        let r = b.read_region::<f32>(&start, &size, -7.0).unwrap();
        let st = strides(&shape);
        let os = strides(&size);
        for idx in grid_indices(&size) {
            let src: Vec<i64> = (0..4).map(|d| start[d] + idx[d] as i64).collect();
            let inside = (0..4).all(|d| src[d] >= 0 && (src[d] as usize) < shape[d]);
            let want = if inside { data[(0..4).map(|d| src[d] as usize * st[d]).sum::<usize>()] } else { -7.0 };
            let o: usize = (0..4).map(|d| idx[d] * os[d]).sum();
            assert_eq!(r[o], want, "at {idx:?}");
        }
    }

    #[test]
    fn wrong_dtype_and_corrupt_chunk_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = ZarrArray::write(&dir.path().join("s"), &[4, 4], &[3i16; 16], &opts(&[2, 2])).unwrap();
        assert!(matches!(a.read_all::<f32>(), Err(ZarrError::DataType { .. })));
        std::fs::write(dir.path().join("s/c.1.1"), b"garbage").unwrap();
        let e = a.read_all::<i16>().unwrap_err();
        assert!(e.to_string().contains("c.1.1"), "{e}");
    }

    /// We write flat `c.i.j` keys; stores with nested `c/i/j` keys (zarr-python's default) read too.
    #[test]
    fn nested_chunk_keys_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<i16> = (0..20).collect();
        let a = ZarrArray::write(&dir.path().join("n"), &[4, 5], &data, &opts(&[2, 3])).unwrap();
        assert!(a.dir.join("c.1.1").is_file());
        for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            std::fs::create_dir_all(a.dir.join(format!("c/{i}"))).unwrap();
            std::fs::rename(a.dir.join(format!("c.{i}.{j}")), a.dir.join(format!("c/{i}/{j}"))).unwrap();
        }
        let meta = std::fs::read_to_string(a.dir.join("zarr.json")).unwrap();
        let meta = meta.replace(r#""separator": ".""#, r#""separator": "/""#);
        std::fs::write(a.dir.join("zarr.json"), meta).unwrap();
        assert_eq!(ZarrArray::open(&a.dir).unwrap().read_all::<i16>().unwrap(), data);
    }

    #[test]
    fn group_attributes() {
        let dir = tempfile::tempdir().unwrap();
        write_group(dir.path(), json!({"spacing": [1.0, 2.0, 3.0]})).unwrap();
        assert_eq!(read_attributes(dir.path()).unwrap()["spacing"][1], json!(2.0));
    }
}

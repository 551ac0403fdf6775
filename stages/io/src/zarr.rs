//! Zarr v3 arrays and groups on the local filesystem, on the `zarrs` crate.
//!
//! What this module adds to zarrs: one array per directory (each array is the root node of its
//! own filesystem store, so callers only deal in paths), the project's codec chain, region reads
//! padded outside the array, streaming writes, and errors that name the file.
//!
//! - **Checksums:** every chunk is `bytes -> [zstd] -> crc32c`, and a sharded array's index is
//!   crc32c-checked too: a damaged byte is a read error ([`ZarrError::Checksum`]), never silent
//!   wrong data. Chunks in that chain are decoded here ([`ZarrArray::read_region`]), not by
//!   zarrs: zarrs 0.23 verifies a crc32c only when it decodes a whole chunk, and its partial
//!   decoders (every read that does not cover whole chunks: each patch, each slab, and a whole
//!   array whose shape is not a multiple of its inner chunks) strip the checksum unverified.
//!   Arrays in other codec chains (written by other tools) are read through zarrs. For ours the
//!   shard index is read here too (`bytes -> crc32c` at the end of the shard, verified):
//!   zarrs' `retrieve_encoded_subchunk` does not recognise the index's empty-chunk marker.
//! - **Sharding** ([`WriteOptions::shard`]): the whole array is one shard file (`c.0.0.0`), the
//!   `chunks` of the options are its inner chunks (the read granularity). Region reads decode
//!   only the inner chunks they overlap; the shard index is read once per opened array.
//! - **Chunk keys** use the `.` separator (`c.0.1`): one file per chunk, no folder per index level
//!   (stores written with `/` keys, zarr-python's default, read as well).
//! - **Streaming writes:** [`ZarrArray::create`] writes the metadata, then
//!   [`ZarrArray::write_region`] stores regions that cover whole inner chunks, in any order; for
//!   a sharded array zarrs' partial encoder appends their encoded chunks to the shard and
//!   rewrites the index behind them, so a case is written slab by slab without ever being whole
//!   in memory, and the finished shard holds each chunk once.
//! - **Concurrency:** region reads decode on the calling thread (`concurrent_target` 1): the
//!   training sampler reads patches from many rayon workers at once and must not fan out again.
//!   Whole-array reads and writes use zarrs' default (the rayon pool).

use serde_json::{json, Map, Value};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zarrs::array::codec::{Crc32cCodec, ZstdCodec};
use zarrs::array::{
    data_type, Array, ArrayBuilder, ArrayError, ArrayMetadata, ArrayShardedExt, ArrayShardedReadableExt,
    ArrayShardedReadableExtCache, ArraySubset, BytesToBytesCodecTraits, ChunkKeySeparator, CodecError, CodecOptions,
    DataType, FillValue,
};
mod store;
use store::LocalStore;

#[derive(Debug, thiserror::Error)]
pub enum ZarrError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: invalid Zarr metadata: {msg}")]
    Metadata { path: PathBuf, msg: String },
    #[error("{path}: array has data type {found}, expected {expected}")]
    DataType { path: PathBuf, found: String, expected: &'static str },
    #[error("{path}: checksum mismatch: the stored chunk data is damaged")]
    Checksum { path: PathBuf },
    #[error("{path}: chunk is corrupt: {msg}")]
    Chunk { path: PathBuf, msg: String },
    #[error("{0}")]
    Shape(String),
}

type Result<T> = std::result::Result<T, ZarrError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ZarrError + '_ {
    move |source| ZarrError::Io { path: path.to_path_buf(), source }
}

fn is_checksum(e: &ArrayError) -> bool {
    matches!(e, ArrayError::CodecError(CodecError::InvalidChecksum)) || e.to_string().contains("checksum is invalid")
}

/// A zarrs error while reading or writing the array at `dir` (a checksum failure names the
/// damaged shard / chunk file when there is a single one).
fn array_err(dir: &Path, e: ArrayError) -> ZarrError {
    if is_checksum(&e) {
        let chunks: Vec<PathBuf> = fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.file_name() != Some("zarr.json".as_ref())).collect())
            .unwrap_or_default();
        let path = if chunks.len() == 1 { chunks[0].clone() } else { dir.to_path_buf() };
        return ZarrError::Checksum { path };
    }
    ZarrError::Chunk { path: dir.to_path_buf(), msg: e.to_string() }
}

/// Element types this store can hold.
pub trait Element:
    zarrs::array::Element + zarrs::array::ElementOwned + bytemuck::Pod + Copy + Send + Sync + Default + PartialEq + 'static
{
    /// The Zarr v3 data type name.
    const DTYPE: &'static str;
    fn data_type() -> DataType;
    fn fill_value(self) -> FillValue;
}

macro_rules! element {
    ($t:ty, $name:literal, $dt:ident) => {
        impl Element for $t {
            const DTYPE: &'static str = $name;
            fn data_type() -> DataType {
                data_type::$dt()
            }
            fn fill_value(self) -> FillValue {
                FillValue::from(self)
            }
        }
    };
}
element!(u8, "uint8", uint8);
element!(i8, "int8", int8);
element!(u16, "uint16", uint16);
element!(i16, "int16", int16);
element!(u32, "uint32", uint32);
element!(i32, "int32", int32);
element!(i64, "int64", int64);
element!(f32, "float32", float32);
element!(f64, "float64", float64);

/// The store of one node: the filesystem below `dir`, the node being its root.
fn store_at(dir: &Path) -> Result<Arc<LocalStore>> {
    LocalStore::new(dir).map(Arc::new).map_err(|msg| ZarrError::Metadata { path: dir.to_path_buf(), msg })
}

/// Creates (or overwrites the metadata of) a group at `dir` with the given attributes.
pub fn write_group(dir: &Path, attributes: Value) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let attrs = match attributes {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(ZarrError::Shape(format!("{}: group attributes must be an object, got {other}", dir.display())))
        }
    };
    let group = zarrs::group::GroupBuilder::new()
        .attributes(attrs)
        .build(store_at(dir)?, "/")
        .map_err(|e| ZarrError::Metadata { path: dir.join("zarr.json"), msg: e.to_string() })?;
    group.store_metadata().map_err(|e| ZarrError::Metadata { path: dir.join("zarr.json"), msg: e.to_string() })
}

/// Reads the attributes of the group or array at `dir` (its `zarr.json`).
pub fn read_attributes(dir: &Path) -> Result<Value> {
    let p = dir.join("zarr.json");
    let text = fs::read_to_string(&p).map_err(io_err(&p))?;
    let meta: Value =
        serde_json::from_str(&text).map_err(|e| ZarrError::Metadata { path: p.clone(), msg: e.to_string() })?;
    if meta.get("zarr_format") != Some(&json!(3)) {
        return Err(ZarrError::Metadata { path: p, msg: "zarr_format is not 3".into() });
    }
    Ok(meta.get("attributes").cloned().unwrap_or_else(|| json!({})))
}

/// Options for writing an array.
#[derive(Clone, Debug)]
pub struct WriteOptions<'a> {
    /// Chunk shape; with `shard`, the inner chunks of the one shard.
    pub chunks: &'a [usize],
    /// One shard file for the whole array (inner chunks `chunks`) instead of a file per chunk.
    pub shard: bool,
    pub dimension_names: Option<&'a [&'a str]>,
    /// zstd level, or `None` for uncompressed chunks (intermediates read once, where
    /// compressing costs more than the bytes it saves). Chunks carry a crc32c either way.
    pub zstd_level: Option<i32>,
    pub attributes: Value,
}

/// An N-d array in a Zarr v3 store.
#[derive(Clone)]
pub struct ZarrArray {
    pub dir: PathBuf,
    pub shape: Vec<usize>,
    /// Read granularity: the inner chunk shape of a sharded array, else the chunk shape.
    pub chunks: Vec<usize>,
    pub dtype: String,
    array: Arc<Array<LocalStore>>,
    /// Shard indexes already read (sharded arrays only).
    shards: Option<Arc<ArrayShardedReadableExtCache>>,
    /// The chunks' codec chain when it is this module's own (decoded and verified here).
    own: Option<OwnChain>,
    /// The outer chunk (shard) shape: the file a chunk lives in.
    outer: Vec<usize>,
    /// Shard indexes read by [`ZarrArray::read_chunk`] (own chain, sharded), by shard.
    indexes: Arc<std::sync::Mutex<std::collections::HashMap<Vec<u64>, Arc<ShardIndex>>>>,
}

/// The project's chunk codec chain, `bytes(little) -> [zstd] -> crc32c`; `sharded`: inside
/// shards whose index (`bytes -> crc32c`) is at the end.
#[derive(Clone, Copy, Debug)]
struct OwnChain {
    zstd: bool,
    sharded: bool,
}

/// A shard's index: `(offset, size)` of every inner chunk (C order), `u64::MAX` twice for a
/// chunk never written; `None` for a shard file that does not exist (all fill value).
#[derive(Debug)]
struct ShardIndex {
    entries: Option<Vec<[u64; 2]>>,
}

const EMPTY_CHUNK: u64 = u64::MAX;

impl OwnChain {
    /// The chain of the (inner) chunks in `meta` (array metadata as JSON), when it is ours and
    /// the array is one plain grid or exclusively sharded.
    fn of(meta: &Value) -> Option<OwnChain> {
        let codecs = meta.get("codecs")?.as_array()?;
        let names_of = |list: &Vec<Value>| -> Option<Vec<String>> {
            list.iter().map(|c| c.get("name").and_then(Value::as_str).map(str::to_string)).collect()
        };
        let (inner, sharded) = match codecs.as_slice() {
            [one] if one.get("name")?.as_str()? == "sharding_indexed" => {
                let conf = one.get("configuration")?;
                let at_end = conf.get("index_location").and_then(Value::as_str).is_none_or(|l| l == "end");
                let index = names_of(conf.get("index_codecs")?.as_array()?)?;
                if !at_end || index != ["bytes", "crc32c"] {
                    return None;
                }
                (conf.get("codecs")?.as_array()?, true)
            }
            _ => (codecs, false),
        };
        let names: Vec<&str> = inner.iter().map(|c| c.get("name").and_then(Value::as_str)).collect::<Option<_>>()?;
        let endian = inner.first()?.get("configuration").and_then(|c| c.get("endian")).and_then(Value::as_str);
        if endian.is_some_and(|e| e != "little") || cfg!(target_endian = "big") {
            return None;
        }
        match names.as_slice() {
            ["bytes", "crc32c"] => Some(OwnChain { zstd: false, sharded }),
            ["bytes", "zstd", "crc32c"] => Some(OwnChain { zstd: true, sharded }),
            _ => None,
        }
    }

    /// Decodes one chunk of `len` elements, verifying its crc32c; `file` names the shard or
    /// chunk file in errors.
    fn decode<T: Element>(self, encoded: &[u8], len: usize, file: &Path) -> Result<Vec<T>> {
        let corrupt = |msg: String| ZarrError::Chunk { path: file.to_path_buf(), msg };
        let body_len = encoded.len().checked_sub(4).ok_or_else(|| corrupt("shorter than its checksum".into()))?;
        let (body, tail) = encoded.split_at(body_len);
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        if crc32c::crc32c(body) != stored {
            return Err(ZarrError::Checksum { path: file.to_path_buf() });
        }
        let mut out = vec![T::default(); len];
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
        let want = dst.len();
        let got = if self.zstd {
            zstd::bulk::decompress_to_buffer(body, dst).map_err(|e| corrupt(format!("zstd: {e}")))?
        } else if body.len() == want {
            dst.copy_from_slice(body);
            want
        } else {
            body.len()
        };
        if got != want {
            return Err(corrupt(format!("decodes to {got} bytes, expected {want}")));
        }
        Ok(out)
    }
}

impl std::fmt::Debug for ZarrArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrArray")
            .field("dir", &self.dir)
            .field("shape", &self.shape)
            .field("chunks", &self.chunks)
            .field("dtype", &self.dtype)
            .field("sharded", &self.shards.is_some())
            .finish()
    }
}

fn to_u64(v: &[usize]) -> Vec<u64> {
    v.iter().map(|&x| x as u64).collect()
}

fn region_options() -> CodecOptions {
    CodecOptions::default().with_concurrent_target(1)
}

impl ZarrArray {
    fn wrap(dir: &Path, array: Array<LocalStore>) -> Result<ZarrArray> {
        let bad = |msg: String| ZarrError::Metadata { path: dir.join("zarr.json"), msg };
        let shape: Vec<usize> = array.shape().iter().map(|&s| s as usize).collect();
        let dtype = match array.metadata() {
            ArrayMetadata::V3(m) => m.data_type.name().to_string(),
            ArrayMetadata::V2(_) => return Err(bad("a Zarr v2 array (expected v3)".into())),
        };
        let chunks: Vec<usize> = match array.effective_subchunk_shape() {
            Some(s) => s.iter().map(|c| c.get() as usize).collect(),
            None => {
                let origin = vec![0u64; shape.len()];
                let c = array.chunk_shape(&origin).map_err(|e| bad(e.to_string()))?;
                c.iter().map(|c| c.get() as usize).collect()
            }
        };
        let shards = array.is_sharded().then(|| Arc::new(ArrayShardedReadableExtCache::new(&array)));
        let meta = serde_json::to_value(array.metadata()).map_err(|e| bad(e.to_string()))?;
        let exclusive = shards.as_ref().is_none_or(|c| c.array_is_exclusively_sharded());
        let own = OwnChain::of(&meta).filter(|_| exclusive);
        let outer = array
            .chunk_shape(&vec![0u64; shape.len()])
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(|c| c.get() as usize)
            .collect();
        Ok(ZarrArray {
            dir: dir.to_path_buf(),
            shape,
            chunks,
            dtype,
            array: Arc::new(array),
            shards,
            own,
            outer,
            indexes: Default::default(),
        })
    }

    /// Writes the metadata of a new array at `dir` (replacing any array there); its chunks
    /// follow with [`ZarrArray::write_region`].
    pub fn create<T: Element>(dir: &Path, shape: &[usize], opts: &WriteOptions) -> Result<ZarrArray> {
        if opts.chunks.len() != shape.len() || opts.chunks.contains(&0) {
            return Err(ZarrError::Shape(format!(
                "{}: chunks {:?} do not fit shape {shape:?}",
                dir.display(),
                opts.chunks
            )));
        }
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut codecs: Vec<Arc<dyn BytesToBytesCodecTraits>> = Vec::new();
        if let Some(level) = opts.zstd_level {
            codecs.push(Arc::new(ZstdCodec::new(level, false)));
        }
        codecs.push(Arc::new(Crc32cCodec::new()));
        let chunks = to_u64(opts.chunks);
        // A shard must be a whole number of inner chunks: round the array shape up.
        let grid: Vec<u64> = if opts.shard {
            shape.iter().zip(opts.chunks).map(|(&s, &c)| (s.max(1).div_ceil(c) * c) as u64).collect()
        } else {
            chunks.clone()
        };
        let mut b = ArrayBuilder::new(to_u64(shape), grid, T::data_type(), T::default().fill_value());
        b.bytes_to_bytes_codecs(codecs).chunk_key_encoding_default_separator(ChunkKeySeparator::Dot);
        if opts.shard {
            b.subchunk_shape(chunks);
        }
        if let Some(names) = opts.dimension_names {
            b.dimension_names(Some(names.iter().map(|s| s.to_string())));
        }
        if let Value::Object(m) = &opts.attributes {
            b.attributes(m.clone());
        }
        let meta_err = |e: String| ZarrError::Metadata { path: dir.join("zarr.json"), msg: e };
        let array = b.build(store_at(dir)?, "/").map_err(|e| meta_err(e.to_string()))?;
        array.store_metadata().map_err(|e| meta_err(e.to_string()))?;
        Self::wrap(dir, array)
    }

    /// Writes a whole array at `dir` (metadata and every chunk).
    pub fn write<T: Element>(dir: &Path, shape: &[usize], data: &[T], opts: &WriteOptions) -> Result<ZarrArray> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(ZarrError::Shape(format!(
                "{}: data of {} elements does not fit shape {shape:?}",
                dir.display(),
                data.len()
            )));
        }
        let arr = Self::create::<T>(dir, shape, opts)?;
        arr.write_region(&vec![0; shape.len()], shape, data)?;
        Ok(arr)
    }

    /// Stores `data` (C order, extent `size`) at `start`. For a sharded array, regions should
    /// cover whole inner chunks (or end at the array's edge) and each chunk should be written
    /// once: a chunk written partly is read back, merged and appended again.
    pub fn write_region<T: Element>(&self, start: &[usize], size: &[usize], data: &[T]) -> Result<()> {
        self.check_dtype::<T>()?;
        let nd = self.shape.len();
        let n: usize = size.iter().product();
        if start.len() != nd || size.len() != nd || n != data.len() {
            return Err(ZarrError::Shape(format!(
                "{}: region {start:?} + {size:?} ({} values) for an array of shape {:?}",
                self.dir.display(),
                data.len(),
                self.shape
            )));
        }
        if (0..nd).any(|d| start[d] + size[d] > self.shape[d]) {
            return Err(ZarrError::Shape(format!(
                "{}: region {start:?} + {size:?} runs past the array shape {:?}",
                self.dir.display(),
                self.shape
            )));
        }
        if n == 0 {
            return Ok(());
        }
        let ranges: Vec<std::ops::Range<u64>> = (0..nd).map(|d| start[d] as u64..(start[d] + size[d]) as u64).collect();
        let opts = CodecOptions::default().with_experimental_partial_encoding(self.shards.is_some());
        self.array
            .store_array_subset_opt(&ArraySubset::new_with_ranges(&ranges), data, &opts)
            .map_err(|e| array_err(&self.dir, e))?;
        if let Some(c) = &self.shards {
            c.clear();
        }
        self.indexes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(())
    }

    /// Opens an existing array and checks its metadata.
    pub fn open(dir: &Path) -> Result<ZarrArray> {
        let p = dir.join("zarr.json");
        if !p.is_file() {
            return Err(ZarrError::Io {
                path: p,
                source: io::Error::new(io::ErrorKind::NotFound, "no Zarr array here"),
            });
        }
        let array =
            Array::open(store_at(dir)?, "/").map_err(|e| ZarrError::Metadata { path: p, msg: e.to_string() })?;
        Self::wrap(dir, array)
    }

    /// Whether the array is one shard file.
    pub fn is_sharded(&self) -> bool {
        self.shards.is_some()
    }

    /// The user attributes of the array.
    pub fn attributes(&self) -> &Map<String, Value> {
        self.array.attributes()
    }

    fn check_dtype<T: Element>(&self) -> Result<()> {
        if self.dtype != T::DTYPE {
            return Err(ZarrError::DataType { path: self.dir.clone(), found: self.dtype.clone(), expected: T::DTYPE });
        }
        Ok(())
    }

    /// Reads the whole array.
    pub fn read_all<T: Element>(&self) -> Result<Vec<T>> {
        self.check_dtype::<T>()?;
        if self.own.is_some() {
            let fill = self.fill::<T>();
            return self.read_region(&vec![0; self.shape.len()], &self.shape, fill);
        }
        let sub = ArraySubset::new_with_shape(to_u64(&self.shape));
        self.array
            .retrieve_array_subset_opt::<Vec<T>>(&sub, &CodecOptions::default())
            .map_err(|e| array_err(&self.dir, e))
    }

    /// Reads the box starting at `start` (may be negative or run past the end) of extent `size`.
    /// Elements outside the array are `pad`. Only the (inner) chunks overlapping it are decoded.
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
        // Overlap of the region with the array, in array coordinates.
        let mut lo = vec![0usize; nd];
        let mut hi = vec![0usize; nd];
        for d in 0..nd {
            let a = start[d].max(0);
            let b = (start[d] + size[d] as i64).min(self.shape[d] as i64);
            if b <= a {
                return Ok(vec![pad; n]);
            }
            lo[d] = a as usize;
            hi[d] = b as usize;
        }
        if let Some(chain) = self.own {
            return self.read_own(chain, start, size, &lo, &hi, pad);
        }
        let ranges: Vec<std::ops::Range<u64>> = (0..nd).map(|d| lo[d] as u64..hi[d] as u64).collect();
        let sub = ArraySubset::new_with_ranges(&ranges);
        let opts = region_options();
        let inner: Vec<T> = match &self.shards {
            Some(cache) => self.array.retrieve_array_subset_sharded_opt(cache, &sub, &opts),
            None => self.array.retrieve_array_subset_opt(&sub, &opts),
        }
        .map_err(|e| array_err(&self.dir, e))?;
        let ext: Vec<usize> = (0..nd).map(|d| hi[d] - lo[d]).collect();
        if ext == size {
            return Ok(inner);
        }
        let mut out = vec![pad; n];
        let o_strides = strides(size);
        let i_strides = strides(&ext);
        let w = ext[nd - 1];
        for_each_row(&ext, |idx| {
            let o0: usize = (0..nd).map(|d| ((lo[d] + idx[d]) as i64 - start[d]) as usize * o_strides[d]).sum();
            let i0: usize = (0..nd).map(|d| idx[d] * i_strides[d]).sum();
            out[o0..o0 + w].copy_from_slice(&inner[i0..i0 + w]);
        });
        Ok(out)
    }
}

impl ZarrArray {
    /// The array's fill value as `T` (the default when it does not fit).
    fn fill<T: Element>(&self) -> T {
        let b = self.array.fill_value().as_ne_bytes();
        if b.len() == std::mem::size_of::<T>() {
            bytemuck::pod_read_unaligned(b)
        } else {
            T::default()
        }
    }

    /// [`ZarrArray::read_region`] of an array in the project's chain: every (inner) chunk
    /// overlapping `[lo, hi)` is read whole, its crc32c verified, decoded, and its overlap
    /// copied out; chunks never written are the fill value.
    fn read_own<T: Element>(
        &self,
        chain: OwnChain,
        start: &[i64],
        size: &[usize],
        lo: &[usize],
        hi: &[usize],
        pad: T,
    ) -> Result<Vec<T>> {
        let nd = self.shape.len();
        let ch = &self.chunks;
        let len: usize = ch.iter().product();
        let c_lo: Vec<usize> = (0..nd).map(|d| lo[d] / ch[d]).collect();
        let c_ext: Vec<usize> = (0..nd).map(|d| (hi[d] - 1) / ch[d] + 1 - c_lo[d]).collect();
        let mut out = vec![pad; size.iter().product()];
        let (o_strides, c_strides) = (strides(size), strides(ch));
        let mut result = Ok(());
        for_each_index(&c_ext, |rel| {
            if result.is_err() {
                return;
            }
            let idx: Vec<usize> = (0..nd).map(|d| c_lo[d] + rel[d]).collect();
            let chunk = match self.read_chunk::<T>(chain, &idx, len) {
                Ok(c) => c,
                Err(e) => {
                    result = Err(e);
                    return;
                }
            };
            let o_lo: Vec<usize> = (0..nd).map(|d| lo[d].max(idx[d] * ch[d])).collect();
            let o_ext: Vec<usize> = (0..nd).map(|d| hi[d].min((idx[d] + 1) * ch[d]) - o_lo[d]).collect();
            let w = o_ext[nd - 1];
            for_each_row(&o_ext, |r| {
                let src: usize = (0..nd).map(|d| (o_lo[d] + r[d] - idx[d] * ch[d]) * c_strides[d]).sum();
                let dst: usize = (0..nd).map(|d| ((o_lo[d] + r[d]) as i64 - start[d]) as usize * o_strides[d]).sum();
                match &chunk {
                    Some(c) => out[dst..dst + w].copy_from_slice(&c[src..src + w]),
                    None => out[dst..dst + w].fill(self.fill::<T>()),
                }
            });
        });
        result.map(|_| out)
    }

    /// The (inner) chunk at `idx`, decoded and verified; None when it was never written.
    fn read_chunk<T: Element>(&self, chain: OwnChain, idx: &[usize], len: usize) -> Result<Option<Vec<T>>> {
        // The file holding the chunk: its shard, or the chunk itself.
        let outer: Vec<u64> = (0..idx.len()).map(|d| (idx[d] * self.chunks[d] / self.outer[d]) as u64).collect();
        let file = self.dir.join(self.array.chunk_key(&outer).as_str());
        let encoded = if chain.sharded {
            let index = self.shard_index(&outer, &file)?;
            let Some(entries) = &index.entries else { return Ok(None) };
            // The chunk's position within its shard, C order.
            let mut at = 0usize;
            for d in 0..idx.len() {
                let per = self.outer[d] / self.chunks[d];
                at = at * per + idx[d] % per;
            }
            let [offset, size] = entries[at];
            if offset == EMPTY_CHUNK && size == EMPTY_CHUNK {
                return Ok(None);
            }
            read_at(&file, offset, size)?
        } else {
            match fs::read(&file) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(ZarrError::Io { path: file, source: e }),
            }
        };
        chain.decode(&encoded, len, &file).map(Some)
    }

    /// The index of the shard at `outer` (file `file`), read and verified once per array.
    fn shard_index(&self, outer: &[u64], file: &Path) -> Result<Arc<ShardIndex>> {
        if let Some(i) = self.indexes.lock().unwrap_or_else(|e| e.into_inner()).get(outer) {
            return Ok(i.clone());
        }
        let n: usize = (0..self.outer.len()).map(|d| self.outer[d] / self.chunks[d]).product();
        let index = match fs::metadata(file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => ShardIndex { entries: None },
            Err(e) => return Err(ZarrError::Io { path: file.to_path_buf(), source: e }),
            Ok(m) => {
                let need = (n * 16 + 4) as u64;
                if m.len() < need {
                    return Err(ZarrError::Chunk {
                        path: file.to_path_buf(),
                        msg: format!("{} bytes, shorter than its index of {need}", m.len()),
                    });
                }
                let raw = read_at(file, m.len() - need, need)?;
                let (body, tail) = raw.split_at(n * 16);
                if crc32c::crc32c(body) != u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) {
                    return Err(ZarrError::Checksum { path: file.to_path_buf() });
                }
                let data_end = m.len() - need;
                let entries: Vec<[u64; 2]> = body
                    .chunks_exact(16)
                    .map(|e| {
                        let v = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
                        [v(&e[..8]), v(&e[8..])]
                    })
                    .collect();
                let bad = entries.iter().any(|&[o, s]| {
                    !(o == EMPTY_CHUNK && s == EMPTY_CHUNK) && o.checked_add(s).is_none_or(|end| end > data_end)
                });
                if bad {
                    return Err(ZarrError::Chunk {
                        path: file.to_path_buf(),
                        msg: "the shard index points past the chunk data".into(),
                    });
                }
                ShardIndex { entries: Some(entries) }
            }
        };
        let index = Arc::new(index);
        self.indexes.lock().unwrap_or_else(|e| e.into_inner()).insert(outer.to_vec(), index.clone());
        Ok(index)
    }
}

/// `size` bytes of `file` from `offset`.
fn read_at(file: &Path, offset: u64, size: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(file).map_err(io_err(file))?;
    let mut buf = vec![0u8; size as usize];
    f.read_exact_at(&mut buf, offset).map_err(io_err(file))?;
    Ok(buf)
}

/// Calls `f` with every index of the box `ext` (C order).
fn for_each_index(ext: &[usize], mut f: impl FnMut(&[usize])) {
    let nd = ext.len();
    for_each_row(ext, |r| {
        let mut i = r.to_vec();
        for x in 0..ext[nd - 1] {
            i[nd - 1] = x;
            f(&i);
        }
    });
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Calls `f` with the index of the first element of every row (last axis index 0), C order.
fn for_each_row(ext: &[usize], mut f: impl FnMut(&[usize])) {
    let nd = ext.len();
    if ext.contains(&0) {
        return;
    }
    let rows: usize = ext[..nd - 1].iter().product();
    let mut idx = vec![0usize; nd];
    for _ in 0..rows {
        f(&idx);
        for d in (0..nd - 1).rev() {
            idx[d] += 1;
            if idx[d] < ext[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(chunks: &[usize], shard: bool) -> WriteOptions<'_> {
        WriteOptions { chunks, shard, dimension_names: None, zstd_level: Some(3), attributes: json!({"a": 1}) }
    }

    fn all_indices(ext: &[usize]) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for_each_row(ext, |r| {
            for x in 0..ext[ext.len() - 1] {
                let mut i = r.to_vec();
                i[ext.len() - 1] = x;
                out.push(i);
            }
        });
        out
    }

    #[test]
    fn roundtrip_and_regions() {
        for shard in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let shape = [2usize, 5, 7, 9];
            let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32).collect();
            let a = ZarrArray::write(&dir.path().join("a"), &shape, &data, &opts(&[1, 2, 3, 4], shard)).unwrap();
            let b = ZarrArray::open(&a.dir).unwrap();
            assert_eq!(b.is_sharded(), shard);
            assert_eq!(b.chunks, vec![1, 2, 3, 4]);
            assert_eq!(b.attributes()["a"], json!(1));
            assert_eq!(b.read_all::<f32>().unwrap(), data);
            let files = fs::read_dir(&a.dir).unwrap().count();
            if shard {
                assert_eq!(files, 2, "zarr.json + one shard");
            }
            // A region overlapping the border on both sides.
            let start = [0i64, -2, 3, 6];
            let size = [2usize, 4, 6, 5];
            let r = b.read_region::<f32>(&start, &size, -7.0).unwrap();
            let st = strides(&shape);
            let os = strides(&size);
            for idx in all_indices(&size) {
                let src: Vec<i64> = (0..4).map(|d| start[d] + idx[d] as i64).collect();
                let inside = (0..4).all(|d| src[d] >= 0 && (src[d] as usize) < shape[d]);
                let want = if inside { data[(0..4).map(|d| src[d] as usize * st[d]).sum::<usize>()] } else { -7.0 };
                let o: usize = (0..4).map(|d| idx[d] * os[d]).sum();
                assert_eq!(r[o], want, "at {idx:?}");
            }
            // Entirely outside: all pad.
            assert_eq!(b.read_region::<f32>(&[0, 9, 0, 0], &[1, 1, 1, 2], 3.0).unwrap(), vec![3.0; 2]);
        }
    }

    /// Slab-wise writes of a sharded array (whole inner chunks along z) read back whole, and the
    /// shard holds every chunk once (no garbage left by the appends).
    #[test]
    fn streamed_shard_is_compact() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [7usize, 6, 5];
        let data: Vec<i16> = (0..210).map(|i| (i * 7 % 23) as i16 - 3).collect();
        let o = WriteOptions { zstd_level: None, ..opts(&[2, 3, 5], true) };
        let whole = ZarrArray::write(&dir.path().join("w"), &shape, &data, &o).unwrap();
        let a = ZarrArray::create::<i16>(&dir.path().join("s"), &shape, &o).unwrap();
        for z0 in (0..7).step_by(2) {
            let z1 = (z0 + 2).min(7);
            a.write_region(&[z0, 0, 0], &[z1 - z0, 6, 5], &data[z0 * 30..z1 * 30]).unwrap();
        }
        assert_eq!(ZarrArray::open(&a.dir).unwrap().read_all::<i16>().unwrap(), data);
        let size = |d: &Path| fs::metadata(d.join("c.0.0.0")).unwrap().len();
        assert_eq!(size(&a.dir), size(&whole.dir));
    }

    #[test]
    fn wrong_dtype_and_damaged_chunks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = ZarrArray::write(&dir.path().join("s"), &[4, 4], &[3i16; 16], &opts(&[2, 2], false)).unwrap();
        assert!(matches!(a.read_all::<f32>(), Err(ZarrError::DataType { .. })));
        std::fs::write(dir.path().join("s/c.1.1"), b"garbage").unwrap();
        let e = a.read_all::<i16>().unwrap_err();
        assert!(e.to_string().contains("/s"), "{e}");
        // One flipped byte in a shard (same size): a checksum error naming the shard file.
        let data: Vec<f32> = (0..64).map(|i| i as f32 * 0.25).collect();
        let s = ZarrArray::write(&dir.path().join("sh"), &[4, 4, 4], &data, &opts(&[2, 2, 2], true)).unwrap();
        let shard = s.dir.join("c.0.0.0");
        let mut bytes = fs::read(&shard).unwrap();
        bytes[5] ^= 0x10;
        fs::write(&shard, &bytes).unwrap();
        let e = ZarrArray::open(&s.dir).unwrap().read_all::<f32>().unwrap_err();
        assert!(matches!(e, ZarrError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("c.0.0.0"), "{e}");
        // A shape that is no multiple of the inner chunks and a region read covering part of
        // the damaged chunk (zarrs' partial decoders would not verify it): still an error.
        for zstd_level in [None, Some(1)] {
            let data: Vec<f32> = (0..5 * 4 * 4).map(|i| i as f32).collect();
            let o = WriteOptions { zstd_level, ..opts(&[2, 2, 2], true) };
            let s = ZarrArray::write(&dir.path().join("edge"), &[5, 4, 4], &data, &o).unwrap();
            let shard = s.dir.join("c.0.0.0");
            let mut bytes = fs::read(&shard).unwrap();
            let at = bytes.len() / 3;
            bytes[at] ^= 0x01;
            fs::write(&shard, &bytes).unwrap();
            let a = ZarrArray::open(&s.dir).unwrap();
            let mut failed = 0;
            for z in 0..5 {
                if let Err(e) = a.read_region::<f32>(&[z, 0, 0], &[1, 3, 3], 0.0) {
                    assert!(matches!(e, ZarrError::Checksum { .. } | ZarrError::Chunk { .. }), "{e}");
                    assert!(e.to_string().contains("c.0.0.0"), "{e}");
                    failed += 1;
                }
            }
            assert!(failed >= 1, "some slice reads the damaged chunk ({zstd_level:?})");
            assert!(a.read_all::<f32>().is_err());
        }
    }

    /// Chunks equal to the fill value are not stored (zarrs): they read as the fill value,
    /// whole and in regions, sharded or not.
    #[test]
    fn empty_chunks_read_as_fill() {
        for shard in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let data: Vec<i16> = (0..5 * 4 * 4).map(|i| if i < 40 { 0 } else { (i % 7) as i16 }).collect();
            let a = ZarrArray::write(&dir.path().join("e"), &[5, 4, 4], &data, &opts(&[2, 2, 2], shard)).unwrap();
            let a = ZarrArray::open(&a.dir).unwrap();
            assert_eq!(a.read_all::<i16>().unwrap(), data);
            let r = a.read_region::<i16>(&[-1, 1, 1], &[3, 2, 2], 9).unwrap();
            assert_eq!(&r[..4], &[9; 4]);
            assert_eq!(&r[4..], &[0; 8]);
        }
    }

    /// Stores written by other tools with `/` chunk keys (zarr-python's default) read too.
    #[test]
    fn nested_chunk_keys_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<i16> = (0..20).collect();
        let a = ZarrArray::write(&dir.path().join("n"), &[4, 5], &data, &opts(&[2, 3], false)).unwrap();
        assert!(a.dir.join("c.1.1").is_file());
        for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            std::fs::create_dir_all(a.dir.join(format!("c/{i}"))).unwrap();
            std::fs::rename(a.dir.join(format!("c.{i}.{j}")), a.dir.join(format!("c/{i}/{j}"))).unwrap();
        }
        let meta = std::fs::read_to_string(a.dir.join("zarr.json")).unwrap();
        let meta = meta.replace(r#""separator": ".""#, r#""separator": "/""#);
        assert!(meta.contains(r#""separator": "/""#));
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

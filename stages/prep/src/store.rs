//! On-disk case stores (Zarr v3 via `nnunet_io::zarr`: one shard file per array, crc32c on
//! every chunk).
//!
//! A store is a directory (a Zarr group) holding two arrays per case `ID`, like nnU-Net's
//! `ID.b2nd` / `ID_seg.b2nd` / `ID.pkl`:
//! - `ID`: f32 `[C, Z, Y, X]`, the image channels; its attributes carry the case properties
//!   (nnU-Net's names), `has_label`, `format` and, for preprocessed cases, `target_spacing`,
//!   `seg_dtype` and the sampled `class_locations`;
//! - `ID_seg`: int8 (int16 when a label exceeds 127) `[1, Z, Y, X]`, always read back as i16.
//!
//! That is four files per case (two `zarr.json`, two shards). A "case path" in this module is
//! the path of the `ID` array; the segmentation is its sibling `ID_seg`.
//!
//! Class locations (`[0, z, y, x]` rows, C order) are stored per class as the differences of
//! their linear indices into `[Z, Y, X]`: `{"key", "count", "linear_deltas"}`, decoded with
//! `numpy.unravel_index(numpy.cumsum(linear_deltas), (Z, Y, X))`. A few thousand locations per
//! class, a few bytes each: small enough for the metadata, and no third array (file) per case.
//!
//! Preprocessed inner chunks follow the configuration's patch size (about half a patch per
//! spatial axis; one slice for 2d configurations) so a random training patch decodes few
//! chunks. Normalized cases (an intermediate read once, slab by slab, by `resample`) are
//! uncompressed, in slabs of [`NORMALIZED_SLAB`] slices.

use crate::class_locations::{ClassKey, ClassLocations};
use crate::error::{PrepError, Result};
use crate::preprocess::{CaseProperties, NormalizedCase, PreprocessedCase};
use nnunet_io::volume::numel;
use nnunet_io::zarr::{read_attributes, write_group, WriteOptions, ZarrArray};
use nnunet_io::Volume;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// `format` attribute of a normalized case.
pub const FORMAT_NORMALIZED: &str = "nnunet-rs/normalized-case/v2";
/// `format` attribute of a preprocessed case.
pub const FORMAT_PREPROCESSED: &str = "nnunet-rs/preprocessed-case/v2";
/// `format` attribute of a dataset store's root group.
pub const FORMAT_DATASET: &str = "nnunet-rs/case-store/v2";
/// zstd level of the image data: 1. On normalized Hippocampus data (`zstd -b1 -e3`): level 1
/// x2.05 at 307 MB/s, level 2 x2.46 at 280 MB/s, level 3 x2.55 at 224 MB/s. At CT size the
/// compression was a sixth of the whole resampling's CPU time at level 3: the faster level
/// wins, the files are a fifth larger.
const ZSTD_LEVEL_DATA: i32 = 1;
/// zstd level of the label maps (small and very compressible: the better ratio is cheap).
const ZSTD_LEVEL_SEG: i32 = 3;
/// Slices per inner chunk of a normalized case (the slab `resample` reads at a time).
pub const NORMALIZED_SLAB: usize = 8;
const DIMS: [&str; 4] = ["c", "z", "y", "x"];

fn store_err(path: &Path, msg: impl Into<String>) -> PrepError {
    PrepError::Store { path: path.to_path_buf(), msg: msg.into() }
}

/// The segmentation array beside the case array `case` (`ID` -> `ID_seg`).
pub fn seg_path(case: &Path) -> PathBuf {
    let name = case.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    case.with_file_name(format!("{name}_seg"))
}

/// Smallest inner chunk (elements) worth its own index entry, crc and compression frame;
/// smaller chunks are grown.
pub const MIN_CHUNK_ELEMENTS: usize = 32_768;

/// Spatial inner-chunk shape for a preprocessed case: ~patch/2 per axis (2d: one slice), so
/// that a random patch touches few chunks; chunks below [`MIN_CHUNK_ELEMENTS`] are grown (2d: in
/// plane, then more slices; 3d: the axis covering the smallest fraction of the image) up to the
/// image shape, so a small case is one chunk per array.
pub fn chunk_shape_for_patch(shape: [usize; 3], patch_size: &[usize]) -> [usize; 3] {
    let half = |p: usize| ((p as f64 / 2.0).round_ties_even() as usize).max(1);
    let c = match patch_size {
        [y, x] => [1, half(*y), half(*x)],
        [z, y, x] => [half(*z), half(*y), half(*x)],
        _ => [64, 64, 64],
    };
    let mut c = [c[0].min(shape[0]).max(1), c[1].min(shape[1]).max(1), c[2].min(shape[2]).max(1)];
    let axes = if patch_size.len() == 2 { 1..3 } else { 0..3 };
    while c.iter().product::<usize>() < MIN_CHUNK_ELEMENTS {
        let least_covered = |axes: std::ops::Range<usize>| {
            axes.filter(|&d| c[d] < shape[d])
                .min_by(|&a, &b| (c[a] as f64 / shape[a] as f64).total_cmp(&(c[b] as f64 / shape[b] as f64)))
        };
        let Some(a) = least_covered(axes.clone()).or_else(|| least_covered(0..3)) else { break };
        c[a] = (c[a] * 2).min(shape[a]);
    }
    c
}

fn data_options(chunk: [usize; 3], zstd_level: Option<i32>, chunks: &mut [usize; 4]) -> WriteOptions<'_> {
    *chunks = [1, chunk[0], chunk[1], chunk[2]];
    let chunks: &[usize] = chunks;
    WriteOptions { chunks, shard: true, dimension_names: Some(&DIMS), zstd_level, attributes: json!({}) }
}

/// nnU-Net stores the segmentation as int8, or int16 if any label > 127 (§4.1 step 8).
pub fn seg_dtype_for(seg: &[i16]) -> &'static str {
    if seg.iter().all(|&v| (-128..=127).contains(&v)) {
        "int8"
    } else {
        "int16"
    }
}

/// Writes the segmentation beside the case array, in slabs of whole inner chunks (bounded
/// encoder buffers); int8 when every value fits.
fn write_seg(case: &Path, seg: &Volume<i16>, chunk: [usize; 3], zstd_level: Option<i32>) -> Result<&'static str> {
    let mut c = [0; 4];
    let opts = data_options(chunk, zstd_level, &mut c);
    let [z, y, x] = seg.shape;
    let dtype = seg_dtype_for(&seg.data);
    let step = chunk[0].max(1) * NORMALIZED_SLAB.div_ceil(chunk[0].max(1));
    if dtype == "int8" {
        let arr = ZarrArray::create::<i8>(&seg_path(case), &[1, z, y, x], &opts)?;
        for z0 in (0..z).step_by(step) {
            let z1 = (z0 + step).min(z);
            let d: Vec<i8> = seg.data[z0 * y * x..z1 * y * x].iter().map(|&v| v as i8).collect();
            arr.write_region(&[0, z0, 0, 0], &[1, z1 - z0, y, x], &d)?;
        }
    } else {
        let arr = ZarrArray::create::<i16>(&seg_path(case), &[1, z, y, x], &opts)?;
        for z0 in (0..z).step_by(step) {
            let z1 = (z0 + step).min(z);
            arr.write_region(&[0, z0, 0, 0], &[1, z1 - z0, y, x], &seg.data[z0 * y * x..z1 * y * x])?;
        }
    }
    Ok(dtype)
}

fn read_seg_region(arr: &ZarrArray, start: &[i64], size: &[usize]) -> Result<Vec<i16>> {
    Ok(match arr.dtype.as_str() {
        "int8" => arr.read_region::<i8>(start, size, -1)?.into_iter().map(i16::from).collect(),
        "int16" => arr.read_region::<i16>(start, size, -1)?,
        other => return Err(store_err(&arr.dir, format!("seg has data type {other}, expected int8/int16"))),
    })
}

/// Replaces the attributes of the array at `dir` (its `zarr.json`, rewritten atomically).
fn set_attributes(dir: &Path, attrs: Value) -> Result<()> {
    let p = dir.join("zarr.json");
    let text = fs::read_to_string(&p).map_err(|e| store_err(&p, e.to_string()))?;
    let mut meta: Value = serde_json::from_str(&text).map_err(|e| store_err(&p, e.to_string()))?;
    meta["attributes"] = attrs;
    let tmp = dir.join(".zarr.json.tmp");
    let body = serde_json::to_vec_pretty(&meta).map_err(|e| store_err(&p, e.to_string()))?;
    fs::write(&tmp, body).map_err(|e| store_err(&tmp, e.to_string()))?;
    fs::rename(&tmp, &p).map_err(|e| store_err(&p, e.to_string()))
}

fn case_attributes(dir: &Path, props: &CaseProperties, has_label: bool, format: &str) -> Result<Value> {
    let mut attrs = serde_json::to_value(props).map_err(|e| store_err(dir, e.to_string()))?;
    attrs["has_label"] = json!(has_label);
    attrs["format"] = json!(format);
    Ok(attrs)
}

/// Writes a [`NormalizedCase`] at the case path `case` (arrays `case` and `case`_seg).
pub fn write_normalized(case: &Path, n: &NormalizedCase) -> Result<()> {
    let shape = n.seg.shape;
    let chunk = [shape[0].clamp(1, NORMALIZED_SLAB), shape[1].max(1), shape[2].max(1)];
    let mut c = [0; 4];
    // An intermediate read once by `resample`: uncompressed chunks (compressing cost more than it saved).
    let data = ZarrArray::create::<f32>(
        case,
        &[n.data.len(), shape[0], shape[1], shape[2]],
        &data_options(chunk, None, &mut c),
    )?;
    let plane = shape[1] * shape[2];
    for (ci, ch) in n.data.iter().enumerate() {
        // Slab by slab (whole inner chunks): the encoder holds one slab, not a second case.
        for z0 in (0..shape[0]).step_by(chunk[0]) {
            let z1 = (z0 + chunk[0]).min(shape[0]);
            data.write_region(&[ci, z0, 0, 0], &[1, z1 - z0, shape[1], shape[2]], &ch.data[z0 * plane..z1 * plane])?;
        }
    }
    write_seg(case, &n.seg, chunk, None)?;
    set_attributes(case, case_attributes(case, &n.properties, n.has_label, FORMAT_NORMALIZED)?)
}

fn properties_from(dir: &Path, attrs: &Value) -> Result<CaseProperties> {
    serde_json::from_value(attrs.clone()).map_err(|e| store_err(dir, format!("case properties: {e}")))
}

/// A normalized case opened for slab reads (what `resample` streams through).
pub struct NormalizedReader {
    data: ZarrArray,
    seg: ZarrArray,
    pub properties: CaseProperties,
    pub has_label: bool,
}

impl NormalizedReader {
    /// Opens the normalized case at the case path `case`.
    pub fn open(case: &Path) -> Result<Self> {
        let data = ZarrArray::open(case)?;
        let attrs = Value::Object(data.attributes().clone());
        if attrs.get("format").and_then(|v| v.as_str()) != Some(FORMAT_NORMALIZED) {
            return Err(store_err(case, "not a normalized case"));
        }
        let seg = ZarrArray::open(&seg_path(case))?;
        if data.shape.len() != 4 || seg.shape.len() != 4 || data.shape[1..] != seg.shape[1..] || seg.shape[0] != 1 {
            return Err(store_err(case, format!("data {:?} and seg {:?} do not match", data.shape, seg.shape)));
        }
        Ok(Self {
            properties: properties_from(case, &attrs)?,
            has_label: attrs.get("has_label").and_then(|v| v.as_bool()).unwrap_or(false),
            data,
            seg,
        })
    }
    /// Spatial shape `[Z, Y, X]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.data.shape[1], self.data.shape[2], self.data.shape[3]]
    }
    pub fn num_channels(&self) -> usize {
        self.data.shape[0]
    }
    /// Channel `c`, slices `[z0, z1)`.
    pub fn read_channel_slab(&self, c: usize, z0: usize, z1: usize) -> Result<Volume<f32>> {
        let [_, y, x] = self.shape();
        let d = self.data.read_region::<f32>(&[c as i64, z0 as i64, 0, 0], &[1, z1 - z0, y, x], 0.0)?;
        Ok(Volume { shape: [z1 - z0, y, x], data: d })
    }
    /// Segmentation slices `[z0, z1)`.
    pub fn read_seg_slab(&self, z0: usize, z1: usize) -> Result<Volume<i16>> {
        let [_, y, x] = self.shape();
        let d = read_seg_region(&self.seg, &[0, z0 as i64, 0, 0], &[1, z1 - z0, y, x])?;
        Ok(Volume { shape: [z1 - z0, y, x], data: d })
    }
}

/// Reads a [`NormalizedCase`] written by [`write_normalized`] (whole, into memory).
pub fn read_normalized(case: &Path) -> Result<NormalizedCase> {
    let r = NormalizedReader::open(case)?;
    let z = r.shape()[0];
    let data = (0..r.num_channels()).map(|c| r.read_channel_slab(c, 0, z)).collect::<Result<Vec<_>>>()?;
    let seg = r.read_seg_slab(0, z)?;
    Ok(NormalizedCase { data, seg, has_label: r.has_label, properties: r.properties })
}

/// Class locations as metadata: per class the deltas of the linear indices (module docs).
fn encode_locations(case: &Path, locs: &ClassLocations, shape: [usize; 3]) -> Result<Value> {
    let mut out = Vec::with_capacity(locs.classes.len());
    for (key, rows) in &locs.classes {
        let mut prev = 0i64;
        let mut deltas = Vec::with_capacity(rows.len());
        for r in rows {
            if r[0] != 0 || r[1..].iter().zip(shape).any(|(&v, s)| v < 0 || v as usize >= s) {
                return Err(store_err(case, format!("class location {r:?} outside the case of shape {shape:?}")));
            }
            let lin = (r[1] as i64 * shape[1] as i64 + r[2] as i64) * shape[2] as i64 + r[3] as i64;
            deltas.push(lin - prev);
            prev = lin;
        }
        out.push(json!({"key": key, "count": rows.len(), "linear_deltas": deltas}));
    }
    Ok(Value::Array(out))
}

fn decode_locations(case: &Path, v: Option<&Value>, shape: [usize; 3]) -> Result<ClassLocations> {
    let bad = |m: String| store_err(case, format!("class_locations: {m}"));
    let entries = match v {
        None | Some(Value::Null) => return Ok(ClassLocations::default()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(bad(format!("expected a list, got {other}"))),
    };
    let n = numel(shape) as i64;
    let mut classes = Vec::with_capacity(entries.len());
    for e in entries {
        let key: ClassKey =
            serde_json::from_value(e.get("key").cloned().unwrap_or(Value::Null)).map_err(|err| bad(err.to_string()))?;
        let deltas = e
            .get("linear_deltas")
            .and_then(|d| d.as_array())
            .ok_or_else(|| bad(format!("{key:?}: no linear_deltas")))?;
        let mut lin = 0i64;
        let mut rows = Vec::with_capacity(deltas.len());
        for d in deltas {
            lin += d.as_i64().ok_or_else(|| bad(format!("{key:?}: {d} is not an integer")))?;
            if !(0..n).contains(&lin) {
                return Err(bad(format!("{key:?}: location {lin} outside the case of shape {shape:?}")));
            }
            let (z, rem) = (lin / (shape[1] * shape[2]) as i64, lin % (shape[1] * shape[2]) as i64);
            rows.push([0, z as i32, (rem / shape[2] as i64) as i32, (rem % shape[2] as i64) as i32]);
        }
        if e.get("count").and_then(|c| c.as_u64()) != Some(rows.len() as u64) {
            return Err(bad(format!("{key:?}: count does not match the stored locations")));
        }
        classes.push((key, rows));
    }
    Ok(ClassLocations { classes })
}

/// Writes a preprocessed case slab by slab: [`CaseWriter::write_data`] for the channels (regions
/// aligned to [`CaseWriter::chunk`]), then [`CaseWriter::finish`] with the segmentation.
pub struct CaseWriter {
    case: PathBuf,
    data: ZarrArray,
    chunk: [usize; 3],
}

impl CaseWriter {
    /// Creates the data array `[channels, shape]` of a preprocessed case at the case path `case`,
    /// inner chunks from `patch_size`.
    pub fn create(case: &Path, channels: usize, shape: [usize; 3], patch_size: &[usize]) -> Result<Self> {
        let chunk = chunk_shape_for_patch(shape, patch_size);
        let mut c = [0; 4];
        let data = ZarrArray::create::<f32>(
            case,
            &[channels, shape[0], shape[1], shape[2]],
            &data_options(chunk, Some(ZSTD_LEVEL_DATA), &mut c),
        )?;
        Ok(Self { case: case.to_path_buf(), data, chunk })
    }
    /// Spatial inner-chunk shape: streamed regions should start and end on multiples of it (or
    /// at the edge of the case).
    pub fn chunk(&self) -> [usize; 3] {
        self.chunk
    }
    /// Stores channel `c` over `[lo, lo + size)`.
    pub fn write_data(&self, c: usize, lo: [usize; 3], size: [usize; 3], data: &[f32]) -> Result<()> {
        self.data.write_region(&[c, lo[0], lo[1], lo[2]], &[1, size[0], size[1], size[2]], data)?;
        Ok(())
    }
    /// Writes the segmentation and the attributes (properties, class locations).
    pub fn finish(
        self,
        seg: &Volume<i16>,
        has_label: bool,
        properties: &CaseProperties,
        target_spacing: [f64; 3],
        class_locations: &ClassLocations,
    ) -> Result<()> {
        let shape = [self.data.shape[1], self.data.shape[2], self.data.shape[3]];
        if seg.shape != shape {
            return Err(store_err(&self.case, format!("seg of shape {:?} for data of shape {shape:?}", seg.shape)));
        }
        let seg_dtype = write_seg(&self.case, seg, self.chunk, Some(ZSTD_LEVEL_SEG))?;
        let mut attrs = case_attributes(&self.case, properties, has_label, FORMAT_PREPROCESSED)?;
        attrs["target_spacing"] = json!(target_spacing);
        attrs["seg_dtype"] = json!(seg_dtype);
        attrs["class_locations"] = encode_locations(&self.case, class_locations, shape)?;
        set_attributes(&self.case, attrs)
    }
}

/// Writes a [`PreprocessedCase`] at the case path `case`, chunked for `patch_size`.
pub fn write_preprocessed(case: &Path, p: &PreprocessedCase, patch_size: &[usize]) -> Result<()> {
    let shape = p.seg.shape;
    let w = CaseWriter::create(case, p.data.len(), shape, patch_size)?;
    let (cz, plane) = (w.chunk()[0], shape[1] * shape[2]);
    for (c, ch) in p.data.iter().enumerate() {
        for z0 in (0..shape[0]).step_by(cz) {
            let z1 = (z0 + cz).min(shape[0]);
            w.write_data(c, [z0, 0, 0], [z1 - z0, shape[1], shape[2]], &ch.data[z0 * plane..z1 * plane])?;
        }
    }
    w.finish(&p.seg, p.has_label, &p.properties, p.target_spacing, &p.class_locations)
}

/// A preprocessed case opened for random patch reads.
#[derive(Clone, Debug)]
pub struct CaseStore {
    dir: PathBuf,
    data: ZarrArray,
    seg: ZarrArray,
    attrs: Value,
    properties: CaseProperties,
}

impl CaseStore {
    /// Opens the case at the case path `case` (written by [`write_preprocessed`]).
    pub fn open(case: &Path) -> Result<Self> {
        let data = ZarrArray::open(case)?;
        let attrs = Value::Object(data.attributes().clone());
        if attrs.get("format").and_then(|v| v.as_str()) != Some(FORMAT_PREPROCESSED) {
            return Err(store_err(case, "not a preprocessed case"));
        }
        let seg = ZarrArray::open(&seg_path(case))?;
        if data.shape.len() != 4 || seg.shape.len() != 4 || data.shape[1..] != seg.shape[1..] {
            return Err(store_err(case, format!("data {:?} and seg {:?} do not match", data.shape, seg.shape)));
        }
        let properties = properties_from(case, &attrs)?;
        Ok(Self { dir: case.to_path_buf(), data, seg, attrs, properties })
    }

    /// The case path (the data array).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Spatial shape `[Z, Y, X]` (preprocessed, transposed).
    pub fn shape(&self) -> [usize; 3] {
        [self.data.shape[1], self.data.shape[2], self.data.shape[3]]
    }
    /// Number of image channels.
    pub fn num_channels(&self) -> usize {
        self.data.shape[0]
    }
    /// Case properties (nnU-Net names).
    pub fn properties(&self) -> &CaseProperties {
        &self.properties
    }
    /// Whether the seg is a real label map (training case).
    pub fn has_label(&self) -> bool {
        self.attrs.get("has_label").and_then(|v| v.as_bool()).unwrap_or(false)
    }
    /// Spacing of the stored arrays.
    pub fn target_spacing(&self) -> Option<[f64; 3]> {
        serde_json::from_value(self.attrs.get("target_spacing")?.clone()).ok()
    }
    /// The case attributes as stored.
    pub fn attributes(&self) -> &Value {
        &self.attrs
    }

    /// Reads the box `[lo, lo + size)`; outside the array data is padded with 0 and seg with −1
    /// (§8.1). Returns `(data [C, size...], seg [size...])`.
    pub fn read_patch(&self, lo: [i64; 3], size: [usize; 3]) -> Result<(Vec<f32>, Vec<i16>)> {
        let c = self.num_channels();
        let data = self.data.read_region::<f32>(&[0, lo[0], lo[1], lo[2]], &[c, size[0], size[1], size[2]], 0.0)?;
        let seg = read_seg_region(&self.seg, &[0, lo[0], lo[1], lo[2]], &[1, size[0], size[1], size[2]])?;
        Ok((data, seg))
    }

    /// All channels.
    pub fn read_data(&self) -> Result<Vec<Volume<f32>>> {
        let s = self.shape();
        let all = self.data.read_all::<f32>()?;
        let n = numel(s);
        Ok(all
            .chunks_exact(n.max(1))
            .take(self.num_channels())
            .map(|c| Volume { shape: s, data: c.to_vec() })
            .collect())
    }
    /// The whole segmentation.
    pub fn read_seg(&self) -> Result<Volume<i16>> {
        let s = self.shape();
        let d = read_seg_region(&self.seg, &[0, 0, 0, 0], &[1, s[0], s[1], s[2]])?;
        Ok(Volume { shape: s, data: d })
    }

    /// The sampled foreground locations.
    pub fn class_locations(&self) -> Result<ClassLocations> {
        decode_locations(&self.dir, self.attrs.get("class_locations"), self.shape())
    }
}

/// Creates (or re-marks) a dataset store directory with a root group (`cases` lists the ids).
pub fn create_dataset_store(dir: &Path, attributes: Value) -> Result<()> {
    let mut attrs = if attributes.is_object() { attributes } else { json!({}) };
    attrs["format"] = json!(FORMAT_DATASET);
    write_group(dir, attrs)?;
    Ok(())
}

/// Case ids of a dataset store, sorted: the root group's `cases` when present, else every
/// array `ID` with an `ID_seg` beside it.
pub fn open_dataset_store(dir: &Path) -> Result<Vec<String>> {
    let attrs = read_attributes(dir)?;
    if let Some(cases) = attrs.get("cases").and_then(|c| c.as_array()) {
        let mut ids: Vec<String> = cases.iter().filter_map(|c| c.as_str().map(str::to_string)).collect();
        ids.sort();
        return Ok(ids);
    }
    let mut names = std::collections::BTreeSet::new();
    for e in fs::read_dir(dir).map_err(|e| store_err(dir, e.to_string()))? {
        let e = e.map_err(|e| store_err(dir, e.to_string()))?;
        if e.path().join("zarr.json").is_file() {
            names.insert(e.file_name().to_string_lossy().to_string());
        }
    }
    Ok(names.iter().filter(|n| names.contains(&format!("{n}_seg"))).cloned().collect())
}

/// Case ids that would collide in one store (`ID` beside another case's `ID_seg`).
pub fn colliding_ids(ids: &[String]) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    ids.iter().filter(|id| id.strip_suffix("_seg").is_some_and(|base| set.contains(base))).cloned().collect()
}

/// The files of one case in a store (for linking a case into a dataset store).
pub fn case_arrays(case: &Path) -> [PathBuf; 2] {
    [case.to_path_buf(), seg_path(case)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class_locations::ClassKey;
    use crate::crop::BBox;

    fn case(seg_max: i16) -> PreprocessedCase {
        let shape = [5usize, 7, 9];
        let n = numel(shape);
        let data =
            (0..2).map(|c| Volume { shape, data: (0..n).map(|i| (i + 1000 * c) as f32 * 0.5).collect() }).collect();
        let seg = Volume { shape, data: (0..n).map(|i| ((i % 4) as i16 - 1).min(seg_max)).collect() };
        let mut seg = seg;
        seg.data[3] = seg_max;
        PreprocessedCase {
            data,
            seg,
            has_label: true,
            properties: CaseProperties {
                spacing: [1.0, 2.0, 3.0],
                spacing_transposed: [3.0, 1.0, 2.0],
                shape_before_cropping: [6, 8, 10],
                bbox_used_for_cropping: BBox([[0, 5], [1, 8], [1, 10]]),
                shape_after_cropping_and_before_resampling: [5, 7, 9],
            },
            target_spacing: [3.0, 1.0, 2.0],
            class_locations: ClassLocations {
                classes: vec![
                    (ClassKey::Label(1), vec![[0, 1, 2, 3], [0, 4, 6, 8]]),
                    (ClassKey::Label(2), vec![]),
                    (ClassKey::Region(vec![1, 2]), vec![[0, 0, 0, 1]]),
                ],
            },
        }
    }

    #[test]
    fn preprocessed_roundtrip_and_patches() {
        let dir = tempfile::tempdir().unwrap();
        create_dataset_store(dir.path(), json!({"configuration": "3d_fullres"})).unwrap();
        for (id, max) in [("case_a", 2i16), ("case_b", 300)] {
            let c = case(max);
            write_preprocessed(&dir.path().join(id), &c, &[4, 6, 6]).unwrap();
            let s = CaseStore::open(&dir.path().join(id)).unwrap();
            assert_eq!(s.shape(), [5, 7, 9]);
            assert_eq!(s.num_channels(), 2);
            assert_eq!(s.properties(), &c.properties);
            assert_eq!(s.target_spacing(), Some([3.0, 1.0, 2.0]));
            assert!(s.has_label());
            assert_eq!(s.class_locations().unwrap(), c.class_locations);
            assert_eq!(s.read_seg().unwrap(), c.seg);
            assert_eq!(s.read_data().unwrap(), c.data);
            let expect_dtype = if max > 127 { "int16" } else { "int8" };
            assert_eq!(s.attributes()["seg_dtype"], json!(expect_dtype));
            // Patch overlapping the border: data padded with 0, seg with -1.
            let (d, g) = s.read_patch([-1, 5, 7], [3, 4, 4]).unwrap();
            assert_eq!(d.len(), 2 * 48);
            assert_eq!(g.len(), 48);
            for a in 0..3i64 {
                for b in 0..4i64 {
                    for cc in 0..4i64 {
                        let (z, y, x) = (a - 1, b + 5, cc + 7);
                        let o = ((a * 4 + b) * 4 + cc) as usize;
                        let inside = (0..5).contains(&z) && (0..7).contains(&y) && (0..9).contains(&x);
                        if inside {
                            let (z, y, x) = (z as usize, y as usize, x as usize);
                            assert_eq!(g[o], c.seg.get(z, y, x));
                            assert_eq!(d[48 + o], c.data[1].get(z, y, x));
                        } else {
                            assert_eq!(g[o], -1);
                            assert_eq!(d[o], 0.0);
                        }
                    }
                }
            }
        }
        // Four files per case: two zarr.json, two shards.
        let files = walkdir(dir.path());
        assert_eq!(files.iter().filter(|p| p.to_string_lossy().contains("case_a")).count(), 4, "{files:?}");
        assert_eq!(open_dataset_store(dir.path()).unwrap(), vec!["case_a", "case_b"]);
        assert!(CaseStore::open(&dir.path().join("missing")).is_err());
        assert_eq!(colliding_ids(&["a".into(), "a_seg".into(), "b_seg".into()]), vec!["a_seg".to_string()]);
    }

    fn walkdir(d: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(d).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walkdir(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn streamed_writes_equal_whole_writes() {
        let dir = tempfile::tempdir().unwrap();
        let c = case(2);
        let w = CaseWriter::create(&dir.path().join("s"), 2, [5, 7, 9], &[4, 6, 6]).unwrap();
        let k = w.chunk();
        for ch in 0..2 {
            for z0 in (0..5).step_by(k[0]) {
                let z1 = (z0 + k[0]).min(5);
                w.write_data(ch, [z0, 0, 0], [z1 - z0, 7, 9], &c.data[ch].data[z0 * 63..z1 * 63]).unwrap();
            }
        }
        w.finish(&c.seg, true, &c.properties, c.target_spacing, &c.class_locations).unwrap();
        let s = CaseStore::open(&dir.path().join("s")).unwrap();
        assert_eq!(s.read_data().unwrap(), c.data);
        assert_eq!(s.read_seg().unwrap(), c.seg);
    }

    #[test]
    fn bad_class_locations_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = case(2);
        c.class_locations.classes[0].1.push([0, 9, 0, 0]);
        assert!(write_preprocessed(&dir.path().join("x"), &c, &[4, 6, 6]).is_err());
        let v = json!([{"key": 1, "count": 2, "linear_deltas": [3, 400]}]);
        assert!(decode_locations(dir.path(), Some(&v), [5, 7, 9]).is_err());
    }

    #[test]
    fn normalized_roundtrip_and_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let c = case(2);
        let n = NormalizedCase {
            data: c.data.clone(),
            seg: c.seg.clone(),
            has_label: true,
            properties: c.properties.clone(),
        };
        write_normalized(&dir.path().join("n"), &n).unwrap();
        assert_eq!(read_normalized(&dir.path().join("n")).unwrap(), n);
        let r = NormalizedReader::open(&dir.path().join("n")).unwrap();
        assert_eq!(r.read_seg_slab(2, 4).unwrap().data, c.seg.data[2 * 63..4 * 63].to_vec());
        assert_eq!(r.read_channel_slab(1, 1, 2).unwrap().data, c.data[1].data[63..126].to_vec());
        // A normalized case is not a preprocessed case.
        assert!(CaseStore::open(&dir.path().join("n")).is_err());
        assert_eq!(chunk_shape_for_patch([300, 600, 600], &[80, 160, 160]), [40, 80, 80]);
        assert_eq!(chunk_shape_for_patch([300, 600, 600], &[512, 512]), [1, 256, 256]);
        assert_eq!(chunk_shape_for_patch([3, 10, 10], &[40, 56, 40]), [3, 10, 10]);
        // Small chunks grow: 2d in plane first, 3d along the least covered axis.
        let c2 = chunk_shape_for_patch([36, 50, 35], &[56, 40]);
        assert!(c2.iter().product::<usize>() >= MIN_CHUNK_ELEMENTS && c2[1] == 50 && c2[2] == 35, "{c2:?}");
        let c3 = chunk_shape_for_patch([36, 50, 35], &[40, 56, 40]);
        assert!(c3.iter().product::<usize>() >= MIN_CHUNK_ELEMENTS || c3 == [36, 50, 35], "{c3:?}");
    }
}

//! On-disk case stores (Zarr v3, via `nnunet_io::zarr`).
//!
//! A case is a group directory:
//! - `data`: f32 `[C, Z, Y, X]`, channel chunk 1;
//! - `seg`: int8 (or int16 when a label exceeds 127) `[1, Z, Y, X]`, always read back as i16;
//! - `class_locations` (preprocessed cases): int32 `[N, 4]` rows `[0, z, y, x]`;
//! - group attributes: the case properties with nnU-Net's names, `has_label`,
//!   `class_locations` as `[{"key", "offset", "count"}]` (rows of the array), `format`.
//!
//! Preprocessed chunks follow the configuration's patch size (about half a patch per spatial
//! axis; one slice for 2d configurations) so a random training patch touches few chunks.
//! A dataset store is a directory with a root group `zarr.json` and one sub-group per case.

use crate::class_locations::{ClassKey, ClassLocations};
use crate::error::{PrepError, Result};
use crate::preprocess::{CaseProperties, NormalizedCase, PreprocessedCase};
use nnunet_io::volume::numel;
use nnunet_io::zarr::{read_attributes, write_group, WriteOptions, ZarrArray};
use nnunet_io::Volume;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// `format` attribute of a normalized case group.
pub const FORMAT_NORMALIZED: &str = "nnunet-rs/normalized-case/v1";
/// `format` attribute of a preprocessed case group.
pub const FORMAT_PREPROCESSED: &str = "nnunet-rs/preprocessed-case/v1";
/// `format` attribute of a dataset store's root group.
pub const FORMAT_DATASET: &str = "nnunet-rs/case-store/v1";
/// zstd level 3. On normalized Hippocampus data (`zstd -b1 -e3`): level 1 x2.05 at 307 MB/s,
/// level 2 x2.46 at 280 MB/s, level 3 x2.55 at 224 MB/s; level 2 did not shorten the whole
/// preprocessing measurably (2.2 s either way), so the smaller files win.
const ZSTD_LEVEL: i32 = 3;

fn store_err(path: &Path, msg: impl Into<String>) -> PrepError {
    PrepError::Store { path: path.to_path_buf(), msg: msg.into() }
}

/// Smallest chunk (elements) worth a file of its own; smaller chunks are grown (§4.1 step 9
/// keeps blosc2 chunks between a block and 6 MiB for the same reason).
pub const MIN_CHUNK_ELEMENTS: usize = 131_072;

/// Spatial chunk shape for a preprocessed case: ~patch/2 per axis (2d: one slice), so that a
/// random patch touches few chunks; chunks below [`MIN_CHUNK_ELEMENTS`] are grown (2d: more
/// slices, then in plane; 3d: the axis covering the smallest fraction of the image) up to the
/// image shape, so a small case is one file per array.
pub fn chunk_shape_for_patch(shape: [usize; 3], patch_size: &[usize]) -> [usize; 3] {
    let half = |p: usize| ((p as f64 / 2.0).round_ties_even() as usize).max(1);
    let c = match patch_size {
        [y, x] => [1, half(*y), half(*x)],
        [z, y, x] => [half(*z), half(*y), half(*x)],
        _ => [64, 64, 64],
    };
    let mut c = [c[0].min(shape[0]).max(1), c[1].min(shape[1]).max(1), c[2].min(shape[2]).max(1)];
    let is_2d = patch_size.len() == 2;
    while c.iter().product::<usize>() < MIN_CHUNK_ELEMENTS {
        let least_covered = |axes: std::ops::Range<usize>| {
            axes.filter(|&d| c[d] < shape[d])
                .min_by(|&a, &b| (c[a] as f64 / shape[a] as f64).total_cmp(&(c[b] as f64 / shape[b] as f64)))
        };
        // 2d: more slices first, then in plane; 3d: the least covered axis.
        let axis = if is_2d && c[0] < shape[0] { Some(0) } else { least_covered(0..3) };
        let Some(a) = axis else { break };
        c[a] = (c[a] * 2).min(shape[a]);
    }
    c
}

fn concat(channels: &[Volume<f32>]) -> Vec<f32> {
    let mut out = Vec::with_capacity(channels.iter().map(|c| c.len()).sum());
    for c in channels {
        out.extend_from_slice(&c.data);
    }
    out
}

fn write_data(dir: &Path, channels: &[Volume<f32>], chunk: [usize; 3], zstd_level: Option<i32>) -> Result<()> {
    let shape = channels.first().map_or([0; 3], |c| c.shape);
    let opts = WriteOptions {
        chunks: &[1, chunk[0], chunk[1], chunk[2]],
        dimension_names: Some(&["c", "z", "y", "x"]),
        zstd_level,
        attributes: json!({}),
    };
    ZarrArray::write(&dir.join("data"), &[channels.len(), shape[0], shape[1], shape[2]], &concat(channels), &opts)?;
    Ok(())
}

fn write_seg(dir: &Path, seg: &Volume<i16>, chunk: [usize; 3], zstd_level: Option<i32>) -> Result<&'static str> {
    let opts = WriteOptions {
        chunks: &[1, chunk[0], chunk[1], chunk[2]],
        dimension_names: Some(&["c", "z", "y", "x"]),
        zstd_level,
        attributes: json!({}),
    };
    let shape = [1, seg.shape[0], seg.shape[1], seg.shape[2]];
    if seg.data.iter().all(|&v| (-128..=127).contains(&v)) {
        let d: Vec<i8> = seg.data.iter().map(|&v| v as i8).collect();
        ZarrArray::write(&dir.join("seg"), &shape, &d, &opts)?;
        Ok("int8")
    } else {
        ZarrArray::write(&dir.join("seg"), &shape, &seg.data, &opts)?;
        Ok("int16")
    }
}

fn read_seg_region(arr: &ZarrArray, start: &[i64], size: &[usize]) -> Result<Vec<i16>> {
    Ok(match arr.dtype.as_str() {
        "int8" => arr.read_region::<i8>(start, size, -1)?.into_iter().map(i16::from).collect(),
        "int16" => arr.read_region::<i16>(start, size, -1)?,
        other => return Err(store_err(&arr.dir, format!("seg has data type {other}, expected int8/int16"))),
    })
}

/// Writes a [`NormalizedCase`] as a Zarr group at `dir`.
pub fn write_normalized(dir: &Path, case: &NormalizedCase) -> Result<()> {
    let shape = case.seg.shape;
    let chunk = [shape[0].clamp(1, 16), shape[1].max(1), shape[2].max(1)];
    // An intermediate read once by `resample`: raw chunks (compressing it cost more than it saved).
    write_data(dir, &case.data, chunk, None)?;
    write_seg(dir, &case.seg, chunk, None)?;
    let mut attrs = serde_json::to_value(&case.properties).map_err(|e| store_err(dir, e.to_string()))?;
    attrs["has_label"] = json!(case.has_label);
    attrs["format"] = json!(FORMAT_NORMALIZED);
    write_group(dir, attrs)?;
    Ok(())
}

fn read_channels(dir: &Path) -> Result<(Vec<Volume<f32>>, [usize; 3])> {
    let arr = ZarrArray::open(&dir.join("data"))?;
    if arr.shape.len() != 4 {
        return Err(store_err(&arr.dir, format!("data has shape {:?}, expected [C,Z,Y,X]", arr.shape)));
    }
    let s = [arr.shape[1], arr.shape[2], arr.shape[3]];
    let all = arr.read_all::<f32>()?;
    let n = numel(s);
    Ok(((0..arr.shape[0]).map(|c| Volume { shape: s, data: all[c * n..(c + 1) * n].to_vec() }).collect(), s))
}

fn read_full_seg(dir: &Path, shape: [usize; 3]) -> Result<Volume<i16>> {
    let arr = ZarrArray::open(&dir.join("seg"))?;
    if arr.shape != [1, shape[0], shape[1], shape[2]] {
        return Err(store_err(&arr.dir, format!("seg has shape {:?}, data has {shape:?}", arr.shape)));
    }
    let d = read_seg_region(&arr, &[0, 0, 0, 0], &arr.shape.clone())?;
    Ok(Volume { shape, data: d })
}

fn properties_from(dir: &Path, attrs: &Value) -> Result<CaseProperties> {
    serde_json::from_value(attrs.clone()).map_err(|e| store_err(dir, format!("case properties: {e}")))
}

/// Reads a [`NormalizedCase`] written by [`write_normalized`].
pub fn read_normalized(dir: &Path) -> Result<NormalizedCase> {
    let attrs = read_attributes(dir)?;
    if attrs.get("format").and_then(|v| v.as_str()) != Some(FORMAT_NORMALIZED) {
        return Err(store_err(dir, "not a normalized case group"));
    }
    let (data, shape) = read_channels(dir)?;
    let seg = read_full_seg(dir, shape)?;
    Ok(NormalizedCase {
        data,
        seg,
        has_label: attrs.get("has_label").and_then(|v| v.as_bool()).unwrap_or(false),
        properties: properties_from(dir, &attrs)?,
    })
}

/// Writes a [`PreprocessedCase`] as a Zarr group at `dir`, chunked for `patch_size`.
pub fn write_preprocessed(dir: &Path, case: &PreprocessedCase, patch_size: &[usize]) -> Result<()> {
    let chunk = chunk_shape_for_patch(case.seg.shape, patch_size);
    write_data(dir, &case.data, chunk, Some(ZSTD_LEVEL))?;
    let seg_dtype = write_seg(dir, &case.seg, chunk, Some(ZSTD_LEVEL))?;
    let mut rows: Vec<i32> = Vec::with_capacity(case.class_locations.total() * 4);
    let mut index = Vec::new();
    for (key, locs) in &case.class_locations.classes {
        index.push(json!({"key": key, "offset": rows.len() / 4, "count": locs.len()}));
        for l in locs {
            rows.extend_from_slice(l);
        }
    }
    let n = rows.len() / 4;
    let opts = WriteOptions {
        chunks: &[n.clamp(1, 65_536), 4],
        dimension_names: None,
        zstd_level: Some(ZSTD_LEVEL),
        attributes: json!({}),
    };
    ZarrArray::write(&dir.join("class_locations"), &[n, 4], &rows, &opts)?;
    let mut attrs = serde_json::to_value(&case.properties).map_err(|e| store_err(dir, e.to_string()))?;
    attrs["has_label"] = json!(case.has_label);
    attrs["target_spacing"] = json!(case.target_spacing);
    attrs["seg_dtype"] = json!(seg_dtype);
    attrs["class_locations"] = Value::Array(index);
    attrs["format"] = json!(FORMAT_PREPROCESSED);
    write_group(dir, attrs)?;
    Ok(())
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
    /// Opens a case group written by [`write_preprocessed`].
    pub fn open(dir: &Path) -> Result<Self> {
        let attrs = read_attributes(dir)?;
        if attrs.get("format").and_then(|v| v.as_str()) != Some(FORMAT_PREPROCESSED) {
            return Err(store_err(dir, "not a preprocessed case group"));
        }
        let data = ZarrArray::open(&dir.join("data"))?;
        let seg = ZarrArray::open(&dir.join("seg"))?;
        if data.shape.len() != 4 || seg.shape.len() != 4 || data.shape[1..] != seg.shape[1..] {
            return Err(store_err(dir, format!("data {:?} and seg {:?} do not match", data.shape, seg.shape)));
        }
        let properties = properties_from(dir, &attrs)?;
        Ok(Self { dir: dir.to_path_buf(), data, seg, attrs, properties })
    }

    /// The case directory.
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
    /// The group attributes as stored.
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
        Ok(read_channels(&self.dir)?.0)
    }
    /// The whole segmentation.
    pub fn read_seg(&self) -> Result<Volume<i16>> {
        read_full_seg(&self.dir, self.shape())
    }

    /// The sampled foreground locations.
    pub fn class_locations(&self) -> Result<ClassLocations> {
        let arr = ZarrArray::open(&self.dir.join("class_locations"))?;
        let rows = arr.read_all::<i32>()?;
        let index = self.attrs.get("class_locations").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        let mut classes = Vec::with_capacity(index.len());
        for e in index {
            let key: ClassKey = serde_json::from_value(e.get("key").cloned().unwrap_or(Value::Null))
                .map_err(|err| store_err(&self.dir, format!("class_locations key: {err}")))?;
            let off = e.get("offset").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
            let cnt = e.get("count").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
            if (off + cnt) * 4 > rows.len() {
                return Err(store_err(&self.dir, format!("class_locations entry {key:?} out of range")));
            }
            let locs = rows[off * 4..(off + cnt) * 4].chunks_exact(4).map(|r| [r[0], r[1], r[2], r[3]]).collect();
            classes.push((key, locs));
        }
        Ok(ClassLocations { classes })
    }
}

/// Creates (or re-marks) a dataset store directory with a root group.
pub fn create_dataset_store(dir: &Path, attributes: Value) -> Result<()> {
    let mut attrs = if attributes.is_object() { attributes } else { json!({}) };
    attrs["format"] = json!(FORMAT_DATASET);
    write_group(dir, attrs)?;
    Ok(())
}

/// Case ids (sub-groups) of a dataset store, sorted.
pub fn open_dataset_store(dir: &Path) -> Result<Vec<String>> {
    read_attributes(dir)?;
    let mut ids = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| store_err(dir, e.to_string()))?;
    for e in entries {
        let e = e.map_err(|e| store_err(dir, e.to_string()))?;
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        let meta = p.join("zarr.json");
        let Ok(text) = fs::read_to_string(&meta) else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
        if v.get("node_type").and_then(|x| x.as_str()) == Some("group") {
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                ids.push(name.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
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
        assert_eq!(open_dataset_store(dir.path()).unwrap(), vec!["case_a", "case_b"]);
        assert!(CaseStore::open(&dir.path().join("missing")).is_err());
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
        write_normalized(dir.path(), &n).unwrap();
        assert_eq!(read_normalized(dir.path()).unwrap(), n);
        // A normalized group is not a preprocessed case.
        assert!(CaseStore::open(dir.path()).is_err());
        assert_eq!(chunk_shape_for_patch([300, 600, 600], &[80, 160, 160]), [40, 80, 80]);
        assert_eq!(chunk_shape_for_patch([300, 600, 600], &[512, 512]), [2, 256, 256]);
        assert_eq!(chunk_shape_for_patch([3, 10, 10], &[40, 56, 40]), [3, 10, 10]);
        // Small chunks grow: 2d by slices, 3d along the least covered axis.
        assert_eq!(chunk_shape_for_patch([36, 50, 35], &[56, 40]), [36, 50, 35]);
        let c = chunk_shape_for_patch([36, 50, 35], &[40, 56, 40]);
        assert!(c.iter().product::<usize>() >= MIN_CHUNK_ELEMENTS || c == [36, 50, 35], "{c:?}");
    }
}

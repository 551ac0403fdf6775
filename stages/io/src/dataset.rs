//! Dataset readers for the nnU-Net v2 raw layout and the MSD layout (reference §1), with
//! automatic detection.
//!
//! - **nnU-Net v2**: `dataset.json` with `channel_names`, `labels` (name -> int, regions,
//!   `ignore`), `numTraining`, `file_ending`; cases from `imagesTr/CASE_CCCC{ending}` and
//!   `labelsTr/CASE{ending}`, or from the `dataset` key (paths relative to the folder,
//!   environment variables expanded). Optional `imagesTs/` (+ `labelsTs/`).
//! - **MSD**: `modality` (index -> name), `labels` (index -> name), `training: [{image,
//!   label}]`, one (possibly 4D, t = channel) NIfTI per case.
//!
//! Hidden files (`.*`, including macOS `._*`) are skipped and case ids are sorted. Paths
//! declared in dataset.json may lie outside the dataset folder (nnU-Net accepts absolute paths,
//! `../` and symlinked folders; they are raw inputs like any other), but a case id, used as a
//! path component of every output, must be one safe file-name component.
//!
//! Images are read through [`crate::image`] (NIfTI, MetaImage, NRRD, PNG/BMP, TIFF), chosen by
//! `file_ending` (and `overwrite_image_reader_writer`, checked). NaN/inf voxels of images are
//! replaced by 0 and counted ([`CaseImages::non_finite`]); they never fail a run.
//!
//! Opening is lenient about the *content* (missing files, stray names): those are reported,
//! one by one, by [`crate::verify::verify_dataset`].

mod paths;
mod scan;

pub use paths::{display_rel, expand_vars, lexically_inside, normalize};
pub(crate) use scan::{list_files, split_channel_suffix};

use crate::image::{self, read_image, ImageError, ImageFormat, ImageHeader, LoadedImage};
use crate::labels::{Labels, LabelsError};
use crate::volume::Volume;
use paths::{resolve_declared, Resolved};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// File endings this crate can read.
pub use crate::image::SUPPORTED_FILE_ENDINGS;

/// The folder layout of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// nnU-Net v2 raw (`DatasetXXX_Name`).
    NnUNetV2,
    /// Medical Segmentation Decathlon (`TaskXX_Name`).
    Msd,
}

/// A dataset folder, opened.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The dataset folder (canonical, absolute).
    pub root: PathBuf,
    /// The folder name, e.g. `Dataset004_Hippocampus` or `Task04_Hippocampus`.
    pub name: String,
    pub layout: Layout,
    /// Channel names in channel order (they select the normalisation, reference §3).
    pub channel_names: Vec<String>,
    pub labels: Labels,
    /// One of [`SUPPORTED_FILE_ENDINGS`], e.g. `.nii.gz`, `.mha`, `.png`.
    pub file_ending: String,
    /// `numTraining` from dataset.json.
    pub num_training_declared: usize,
    /// Training cases, sorted by id.
    pub cases: Vec<Case>,
    /// Test cases (`imagesTs`, MSD `test`), sorted by id; labels only where `labelsTs` has one.
    pub test_cases: Vec<Case>,
}

/// One case: its channel files and its label file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub id: String,
    /// One entry per channel, in channel order. Files may be missing on disk (see verify).
    pub images: Vec<ImageRef>,
    /// The label file (`None` for test cases without labels).
    pub label: Option<PathBuf>,
}

/// Where one channel of a case is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub path: PathBuf,
    /// The volume index inside a 4D file (MSD multi-modal); `None` for a 3D file.
    pub channel_in_file: Option<usize>,
}

/// The images of a case, ready for preprocessing.
#[derive(Clone, Debug)]
pub struct CaseImages {
    /// One volume `[z, y, x]` per channel, scl scaling applied, NaN/inf replaced by 0.
    pub channels: Vec<Volume<f32>>,
    /// Spacing `[z, y, x]` in mm (of channel 0), as nnU-Net uses it.
    pub spacing: [f64; 3],
    /// The header of channel 0's file, to write outputs in its format and geometry.
    pub header: ImageHeader,
    /// NaN/inf voxels found (over all channels) and replaced by 0.
    pub non_finite: usize,
}

/// Why a dataset could not be opened or a case not read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: no dataset.json; expected an nnU-Net v2 raw dataset or an MSD task folder")]
    NoDatasetJson(PathBuf),
    #[error("{path}: invalid JSON: {msg}")]
    Json { path: PathBuf, msg: String },
    #[error("{path}: \"{key}\": {msg}")]
    Key { path: PathBuf, key: String, msg: String },
    #[error("{path}: {source}")]
    Labels { path: PathBuf, source: LabelsError },
    #[error("{json}: {msg}")]
    FileEnding { json: PathBuf, msg: String },
    #[error("{json}: \"dataset\" entry \"{id}\": {msg}")]
    CaseId { json: PathBuf, id: String, msg: String },
    #[error("case {case}: {source}")]
    Read { case: String, source: ImageError },
    #[error("case {case}: {msg}")]
    Case { case: String, msg: String },
}

type Result<T> = std::result::Result<T, DatasetError>;

/// Opens a dataset folder (nnU-Net v2 raw or MSD, detected from dataset.json).
pub fn open_dataset(root: &Path) -> Result<Dataset> {
    let root = root.canonicalize().map_err(|source| DatasetError::Io { path: root.to_path_buf(), source })?;
    let json_path = root.join("dataset.json");
    if !json_path.is_file() {
        return Err(DatasetError::NoDatasetJson(root));
    }
    let json = read_json(&json_path)?;
    let obj = json
        .as_object()
        .ok_or_else(|| DatasetError::Json { path: json_path.clone(), msg: "the top level must be an object".into() })?;
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ctx = Ctx { root: &root, json: &json_path };
    let mut ds = match detect_layout(obj) {
        Layout::NnUNetV2 => open_v2(&ctx, obj, name)?,
        Layout::Msd => open_msd(&ctx, obj, name)?,
    };
    ds.cases.sort_by(|a, b| a.id.cmp(&b.id));
    ds.test_cases.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(ds)
}

/// MSD when the file has a `training` list and none of the v2-only keys.
fn detect_layout(obj: &Map<String, Value>) -> Layout {
    let v2 = ["channel_names", "file_ending", "dataset"].iter().any(|k| obj.contains_key(*k));
    if !v2 && (obj.contains_key("training") || obj.contains_key("modality")) {
        Layout::Msd
    } else {
        Layout::NnUNetV2
    }
}

/// Whether one file of this format may hold several channels (an RGB(A) picture): then a
/// case's channel files are the ones present, and their channels are concatenated in order
/// (NaturalImage2DIO's `vstack`).
pub fn multi_channel_files(format: ImageFormat) -> bool {
    matches!(format, ImageFormat::Natural2D | ImageFormat::Tiff)
}

/// Checks that a case id is one safe path component (it names every output of the case): not
/// empty, no `/`, `\`, NUL or control characters, not `.`-prefixed (hidden, `..`).
pub fn check_case_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("the case id is empty".into());
    }
    if id.starts_with('.') {
        return Err("a case id must not start with '.'".into());
    }
    if let Some(c) = id.chars().find(|c| matches!(c, '/' | '\\' | '\0') || c.is_control()) {
        return Err(format!("a case id must be one file-name component, it contains {c:?}"));
    }
    Ok(())
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| DatasetError::Json { path: path.to_path_buf(), msg: e.to_string() })
}

/// Shared context while opening.
pub(crate) struct Ctx<'a> {
    pub root: &'a Path,
    pub json: &'a Path,
}

impl Ctx<'_> {
    pub fn key_err(&self, key: &str, msg: impl Into<String>) -> DatasetError {
        DatasetError::Key { path: self.json.to_path_buf(), key: key.to_string(), msg: msg.into() }
    }

    /// Resolves a path declared in dataset.json: relative to the dataset folder, variables
    /// expanded. Paths outside the folder are accepted, as nnU-Net accepts them (issue 14).
    /// Symlinks are kept as written (the case id comes from the declared name).
    pub fn declared(&self, _key: &str, raw: &str) -> Result<PathBuf> {
        match resolve_declared(self.root, raw) {
            Resolved::Inside(p) => Ok(p),
            Resolved::Escapes(_) => {
                let expanded = expand_vars(raw);
                let p = Path::new(&expanded);
                Ok(normalize(&if p.is_absolute() { p.to_path_buf() } else { self.root.join(p) }))
            }
        }
    }
}

/// Channel names from `{"0": "CT", "1": "T2"}`; keys must be 0..n-1.
fn parse_channels(ctx: &Ctx, key: &str, v: &Value) -> Result<Vec<String>> {
    let obj = v.as_object().ok_or_else(|| ctx.key_err(key, "expected an object {\"0\": \"name\", ...}"))?;
    let mut by_index = BTreeMap::new();
    for (k, name) in obj {
        let i: usize =
            k.trim().parse().map_err(|_| ctx.key_err(key, format!("channel key \"{k}\" is not an index")))?;
        let name = match name {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        by_index.insert(i, name);
    }
    if by_index.is_empty() {
        return Err(ctx.key_err(key, "no channels"));
    }
    if by_index.keys().enumerate().any(|(pos, &i)| pos != i) {
        return Err(ctx.key_err(key, format!("channel indices must be 0..{}", by_index.len() - 1)));
    }
    Ok(by_index.into_values().collect())
}

fn parse_count(ctx: &Ctx, obj: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
            .map(|n| Some(n as usize))
            .ok_or_else(|| ctx.key_err(key, format!("expected a non-negative integer, found {v}"))),
    }
}

fn open_v2(ctx: &Ctx, obj: &Map<String, Value>, name: String) -> Result<Dataset> {
    let channels = match (obj.get("channel_names"), obj.get("modality")) {
        (Some(v), _) => parse_channels(ctx, "channel_names", v)?,
        (None, Some(v)) => parse_channels(ctx, "modality", v)?, // legacy v1 key (reference §1.2)
        (None, None) => return Err(ctx.key_err("channel_names", "missing")),
    };
    let labels_v = obj.get("labels").ok_or_else(|| ctx.key_err("labels", "missing"))?;
    let labels = Labels::from_v2_json(labels_v, obj.get("regions_class_order"))
        .map_err(|source| DatasetError::Labels { path: ctx.json.to_path_buf(), source })?;
    let file_ending = obj
        .get("file_ending")
        .ok_or_else(|| ctx.key_err("file_ending", "missing"))?
        .as_str()
        .ok_or_else(|| ctx.key_err("file_ending", "expected a string such as \".nii.gz\""))?
        .to_string();
    let reader = obj.get("overwrite_image_reader_writer").and_then(Value::as_str);
    let format = image::check_reader(&file_ending, reader)
        .map_err(|msg| DatasetError::FileEnding { json: ctx.json.to_path_buf(), msg })?;
    let multi = multi_channel_files(format);
    let num_training = parse_count(ctx, obj, "numTraining")?.ok_or_else(|| ctx.key_err("numTraining", "missing"))?;
    let cases = match obj.get("dataset") {
        Some(d) => scan::cases_from_dataset_key(ctx, d)?,
        None => scan::scan_v2(ctx.root, "imagesTr", "labelsTr", &file_ending, channels.len(), true, multi)?,
    };
    let test_cases = scan::scan_v2(ctx.root, "imagesTs", "labelsTs", &file_ending, channels.len(), false, multi)?;
    Ok(Dataset {
        root: ctx.root.to_path_buf(),
        name,
        layout: Layout::NnUNetV2,
        channel_names: channels,
        labels,
        file_ending,
        num_training_declared: num_training,
        cases,
        test_cases,
    })
}

fn open_msd(ctx: &Ctx, obj: &Map<String, Value>, name: String) -> Result<Dataset> {
    let channels =
        parse_channels(ctx, "modality", obj.get("modality").ok_or_else(|| ctx.key_err("modality", "missing"))?)?;
    let labels_v = obj.get("labels").ok_or_else(|| ctx.key_err("labels", "missing"))?;
    let labels = Labels::from_msd_json(labels_v)
        .map_err(|source| DatasetError::Labels { path: ctx.json.to_path_buf(), source })?;
    let cases = match obj.get("training") {
        Some(t) => scan::msd_list(ctx, "training", t, channels.len(), true)?,
        None => scan::scan_msd(ctx.root, "imagesTr", "labelsTr", channels.len(), true)?,
    };
    let test_cases = match obj.get("test") {
        Some(t) if t.as_array().is_some_and(|a| !a.is_empty()) => {
            scan::msd_list(ctx, "test", t, channels.len(), false)?
        }
        _ => scan::scan_msd(ctx.root, "imagesTs", "labelsTs", channels.len(), false)?,
    };
    let num_training = parse_count(ctx, obj, "numTraining")?.unwrap_or(cases.len());
    Ok(Dataset {
        root: ctx.root.to_path_buf(),
        name,
        layout: Layout::Msd,
        channel_names: channels,
        labels,
        file_ending: ".nii.gz".to_string(),
        num_training_declared: num_training,
        cases,
        test_cases,
    })
}

impl Dataset {
    /// Number of input channels.
    pub fn num_channels(&self) -> usize {
        self.channel_names.len()
    }

    /// The training case with this id.
    pub fn case(&self, id: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// The nnU-Net v2 dataset.json describing this dataset, as nnU-Net's MSD converter writes
    /// it (reference §1.4): `modality` becomes `channel_names`, labels become name -> int,
    /// `training`/`test` are dropped, `file_ending` is added. Free-form keys of the original
    /// dataset.json (description, licence, ...) are carried over when it is still readable.
    pub fn to_v2_dataset_json(&self) -> Value {
        let mut m = Map::new();
        if let Ok(Value::Object(orig)) = read_json(&self.root.join("dataset.json")) {
            const DROP: [&str; 8] = [
                "training",
                "test",
                "modality",
                "channel_names",
                "labels",
                "numTraining",
                "file_ending",
                "regions_class_order",
            ];
            for (k, v) in orig {
                if !DROP.contains(&k.as_str()) && k != "dataset" {
                    m.insert(k, v);
                }
            }
        }
        let channels: Map<String, Value> =
            self.channel_names.iter().enumerate().map(|(i, n)| (i.to_string(), Value::from(n.clone()))).collect();
        m.insert("channel_names".into(), Value::Object(channels));
        m.insert("labels".into(), self.labels.to_v2_json());
        if let Some(o) = &self.labels.regions_class_order {
            m.insert("regions_class_order".into(), Value::from(o.clone()));
        }
        m.insert("numTraining".into(), Value::from(self.cases.len()));
        m.insert("file_ending".into(), Value::from(self.file_ending.clone()));
        Value::Object(m)
    }
}

impl Case {
    /// Reads every channel (scaling applied, NaN/inf replaced by 0 and counted). A file
    /// shared by several channels (4D NIfTI) is read once; a file holding several channels
    /// without a channel index (an RGB picture) gives them all, in order. Fails when a file is
    /// unreadable or the channels differ in shape; spacing and orientation differences are
    /// left to [`crate::verify::verify_dataset`].
    ///
    /// A 2D file becomes `[1, y, x]` with nnU-Net's pseudo z spacing `999 * max(spacing)`
    /// (SimpleITKIO, NaturalImage2DIO, reference §1.3).
    pub fn read_images(&self) -> Result<CaseImages> {
        if self.images.is_empty() {
            return Err(DatasetError::Case { case: self.id.clone(), msg: "no image files".into() });
        }
        let read_err = |source| DatasetError::Read { case: self.id.clone(), source };
        let mut channels: Vec<Volume<f32>> = Vec::with_capacity(self.images.len());
        let mut first: Option<ImageHeader> = None;
        let mut last: Option<LoadedImage> = None;
        for r in &self.images {
            let img = match last.take() {
                Some(img) if img.path == r.path => img,
                _ => read_image(&r.path).map_err(read_err)?,
            };
            let vols = match r.channel_in_file {
                Some(i) => vec![img.channel_f32(i).map_err(read_err)?],
                None => img.to_f32_channels().map_err(read_err)?,
            };
            for vol in vols {
                if let Some(c0) = channels.first() {
                    if c0.shape != vol.shape {
                        return Err(DatasetError::Case {
                            case: self.id.clone(),
                            msg: format!(
                                "channel {} ({}) has shape {:?}, channel 0 has {:?}",
                                channels.len(),
                                r.path.display(),
                                vol.shape,
                                c0.shape
                            ),
                        });
                    }
                }
                channels.push(vol);
            }
            first.get_or_insert_with(|| img.header.clone());
            last = Some(img);
        }
        let header = first.ok_or_else(|| DatasetError::Case { case: self.id.clone(), msg: "no image files".into() })?;
        let non_finite = replace_non_finite(&mut channels);
        Ok(CaseImages { channels, spacing: header.nnunet_spacing(), header, non_finite })
    }

    /// Reads the label map and its header. Fails when the case has no label, the file is
    /// unreadable, or a value is not an integer in the int16 range (NaN included: a label
    /// with NaN is refused, as nnU-Net refuses it).
    pub fn read_label(&self) -> Result<(Volume<i16>, ImageHeader)> {
        let path = self
            .label
            .as_ref()
            .ok_or_else(|| DatasetError::Case { case: self.id.clone(), msg: "has no label".into() })?;
        let read_err = |source| DatasetError::Read { case: self.id.clone(), source };
        let img = read_image(path).map_err(read_err)?;
        let vol = img.to_label_volume().map_err(read_err)?;
        Ok((vol, img.header))
    }

    /// Every raw file of the case (channel files, then the label, each with its detached data
    /// file or sidecar), without duplicates.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::with_capacity(self.images.len() + 1);
        for p in self.images.iter().map(|r| &r.path).chain(self.label.as_ref()) {
            for f in image::image_files(p) {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
        out
    }
}

/// Replaces NaN/inf voxels by 0 (issue 14: one rule for non-finite voxels: never fail a run
/// for them, never let them reach normalisation) and returns how many there were.
pub fn replace_non_finite(channels: &mut [Volume<f32>]) -> usize {
    let mut n = 0;
    for c in channels {
        for v in c.data.iter_mut().filter(|v| !v.is_finite()) {
            *v = 0.0;
            n += 1;
        }
    }
    n
}

/// Spacing `[z, y, x]` as nnU-Net's SimpleITKIO reports it: the file spacing for 3D, and
/// `[999 * max(y, x), y, x]` for a 2D file (reference §1.3).
pub fn nnunet_spacing(h: &crate::nifti::NiftiHeader) -> [f64; 3] {
    let s = h.spacing_zyx();
    if h.ndim() < 3 {
        [999.0 * s[1].max(s[2]), s[1], s[2]]
    } else {
        s
    }
}

#[cfg(test)]
mod tests;

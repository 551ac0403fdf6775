//! Building the case lists: scanning `imagesTr`-style folders, the v2 `dataset` key, and
//! the MSD `training` / `test` lists.

use super::paths::is_hidden;
use super::{Case, Ctx, DatasetError, ImageRef, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Non-hidden file names (files or symlinks to files) in `dir`, sorted; empty when `dir`
/// does not exist.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let rd = std::fs::read_dir(dir).map_err(|source| DatasetError::Io { path: dir.to_path_buf(), source })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| DatasetError::Io { path: dir.to_path_buf(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_hidden(&name) {
            continue;
        }
        // Follow symlinks: a linked-in file counts, a directory does not.
        if std::fs::metadata(entry.path()).map(|m| m.is_file()).unwrap_or(false) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Splits `CASE_0001` into `("CASE", 1)`; `None` without a 4-digit channel suffix.
pub(crate) fn split_channel_suffix(stem: &str) -> Option<(&str, usize)> {
    let n = stem.len();
    if n < 6 || !stem.is_char_boundary(n - 5) {
        return None;
    }
    let (id, suffix) = stem.split_at(n - 5);
    let digits = suffix.strip_prefix('_')?;
    if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Some((id, digits.parse().ok()?))
    } else {
        None
    }
}

/// nnU-Net v2 folder scan: case ids from `images_dir/CASE_CCCC{ending}` (files without a
/// channel suffix are skipped here and reported by verify). Each case lists the expected
/// channel files `0..n_channels` (missing ones included) and, for training, the expected
/// label; for test cases a label only when `labels_dir` has it.
///
/// With `multi` (formats whose files may hold several channels, e.g. RGB pictures) a case
/// lists the channel files present, in channel order; their channels are counted on reading.
pub(crate) fn scan_v2(
    root: &Path,
    images_dir: &str,
    labels_dir: &str,
    ending: &str,
    n_channels: usize,
    training: bool,
    multi: bool,
) -> Result<Vec<Case>> {
    let img_dir = root.join(images_dir);
    let lab_dir = root.join(labels_dir);
    let mut ids: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for name in list_files(&img_dir)? {
        if let Some(stem) = name.strip_suffix(ending) {
            if let Some((id, c)) = split_channel_suffix(stem) {
                ids.entry(id.to_string()).or_default().push(c);
            }
        }
    }
    Ok(ids
        .into_iter()
        .map(|(id, present)| {
            let chans: Vec<usize> = if multi { present } else { (0..n_channels).collect() };
            let images = chans
                .into_iter()
                .map(|c| ImageRef { path: img_dir.join(format!("{id}_{c:04}{ending}")), channel_in_file: None })
                .collect();
            let label = lab_dir.join(format!("{id}{ending}"));
            let label = (training || label.is_file()).then_some(label);
            Case { id, images, label }
        })
        .collect())
}

/// The v2 `dataset` key: `{"CASE": {"images": [...], "label": "..."}}`.
pub(crate) fn cases_from_dataset_key(ctx: &Ctx, d: &Value) -> Result<Vec<Case>> {
    let obj = d.as_object().ok_or_else(|| ctx.key_err("dataset", "expected an object of cases"))?;
    let mut cases = Vec::with_capacity(obj.len());
    for (id, entry) in obj {
        // A case id names outputs (cache folders, predictions): refuse anything but one safe
        // path component before anything is written.
        super::check_case_id(id).map_err(|msg| DatasetError::CaseId {
            json: ctx.json.to_path_buf(),
            id: id.clone(),
            msg,
        })?;
        let key = |k: &str| format!("dataset.{id}.{k}");
        let images = entry
            .get("images")
            .and_then(Value::as_array)
            .ok_or_else(|| ctx.key_err(&key("images"), "expected a list of image paths"))?;
        let mut refs = Vec::with_capacity(images.len());
        for (i, p) in images.iter().enumerate() {
            let k = format!("{}[{i}]", key("images"));
            let raw = p.as_str().ok_or_else(|| ctx.key_err(&k, "expected a path string"))?;
            refs.push(ImageRef { path: ctx.declared(&k, raw)?, channel_in_file: None });
        }
        let label = match entry.get("label") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let raw = v.as_str().ok_or_else(|| ctx.key_err(&key("label"), "expected a path string"))?;
                Some(ctx.declared(&key("label"), raw)?)
            }
        };
        cases.push(Case { id: id.clone(), images: refs, label });
    }
    Ok(cases)
}

/// The case id of an MSD file name (`la_003.nii.gz` -> `la_003`).
fn msd_id(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for ending in [".nii.gz", ".nii"] {
        if let Some(stem) = name.strip_suffix(ending) {
            return stem.to_string();
        }
    }
    name
}

/// The image refs of an MSD case file. With several modalities the channels are volumes of
/// one 4D file; for nnU-Net v1-style task folders, whose json lists `CASE.nii.gz` but whose
/// imagesTr holds `CASE_0000.nii.gz`..., the per-channel files are used instead.
fn msd_images(image: &Path, n_channels: usize) -> Vec<ImageRef> {
    if !image.exists() {
        let id = msd_id(image);
        if let Some(dir) = image.parent() {
            let split: Vec<PathBuf> = (0..n_channels).map(|c| dir.join(format!("{id}_{c:04}.nii.gz"))).collect();
            if split[0].is_file() {
                return split.into_iter().map(|path| ImageRef { path, channel_in_file: None }).collect();
            }
        }
    }
    if n_channels == 1 {
        vec![ImageRef { path: image.to_path_buf(), channel_in_file: None }]
    } else {
        (0..n_channels).map(|c| ImageRef { path: image.to_path_buf(), channel_in_file: Some(c) }).collect()
    }
}

/// An MSD `training` list (`[{"image": ..., "label": ...}]`) or `test` list (`["path", ...]`
/// or objects with an `image`).
pub(crate) fn msd_list(ctx: &Ctx, key: &str, list: &Value, n_channels: usize, training: bool) -> Result<Vec<Case>> {
    let arr = list.as_array().ok_or_else(|| ctx.key_err(key, "expected a list"))?;
    let mut cases: Vec<Case> = Vec::with_capacity(arr.len());
    let mut seen = BTreeMap::new();
    for (i, e) in arr.iter().enumerate() {
        let (image_raw, label_raw) = match e {
            Value::String(s) => (s.as_str(), None),
            Value::Object(o) => (
                o.get("image")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ctx.key_err(&format!("{key}[{i}].image"), "expected a path string"))?,
                o.get("label").and_then(Value::as_str),
            ),
            _ => return Err(ctx.key_err(&format!("{key}[{i}]"), "expected {\"image\": ..., \"label\": ...} or a path")),
        };
        let image = ctx.declared(&format!("{key}[{i}].image"), image_raw)?;
        let label = match label_raw {
            Some(l) => Some(ctx.declared(&format!("{key}[{i}].label"), l)?),
            None if training => {
                return Err(ctx.key_err(&format!("{key}[{i}].label"), "missing (every training case needs a label)"))
            }
            None => None,
        };
        let id = msd_id(&image);
        if let Some(first) = seen.insert(id.clone(), i) {
            return Err(ctx.key_err(&format!("{key}[{i}]"), format!("case {id} is already listed at {key}[{first}]")));
        }
        cases.push(Case { id, images: msd_images(&image, n_channels), label });
    }
    Ok(cases)
}

/// MSD folder scan (when dataset.json has no list): every non-hidden `.nii.gz`/`.nii` file,
/// skipping names starting with `_` as nnU-Net's MSD converter does (reference §1.4).
pub(crate) fn scan_msd(
    root: &Path,
    images_dir: &str,
    labels_dir: &str,
    n_channels: usize,
    training: bool,
) -> Result<Vec<Case>> {
    let img_dir = root.join(images_dir);
    let lab_dir = root.join(labels_dir);
    let mut cases = Vec::new();
    for name in list_files(&img_dir)? {
        if name.starts_with('_') || !(name.ends_with(".nii.gz") || name.ends_with(".nii")) {
            continue;
        }
        let image = img_dir.join(&name);
        let label = lab_dir.join(&name);
        let label = (training || label.is_file()).then_some(label);
        cases.push(Case { id: msd_id(&image), images: msd_images(&image, n_channels), label });
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_suffix() {
        assert_eq!(split_channel_suffix("case_001_0000"), Some(("case_001", 0)));
        assert_eq!(split_channel_suffix("x_0012"), Some(("x", 12)));
        assert_eq!(split_channel_suffix("case_001"), None);
        assert_eq!(split_channel_suffix("_0000"), None);
        assert_eq!(split_channel_suffix("abc_00a0"), None);
        assert_eq!(split_channel_suffix("ünï_0000"), Some(("ünï", 0)));
        assert_eq!(split_channel_suffix("é0000"), None);
    }
}

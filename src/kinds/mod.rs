//! Stage kinds: thin adapters from the engine to the domain crates, one file per kind.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

use crate::kind::StageKind;

mod fingerprint;
pub mod plan;
mod postprocess;
pub mod predict;
mod preprocess;
pub mod select;
pub mod train;

// Kind names (what a stage's `uses:` says): one constant per kind, used wherever code refers
// to a kind (requirements, inputs, the libtorch hand-over).
pub const FINGERPRINT: &str = "fingerprint";
pub const PLAN: &str = "plan";
pub const NORMALIZE: &str = "normalize";
pub const RESAMPLE: &str = "resample";
pub const TRAIN_FOLD: &str = "train-fold";
pub const ENSEMBLE_SELECT: &str = "ensemble-select";
pub const POSTPROCESS: &str = "postprocess";
pub const PREDICT: &str = "predict";
pub const EVALUATE: &str = "evaluate";

/// Every built-in stage kind.
pub fn registry() -> &'static [&'static dyn StageKind] {
    &[
        &fingerprint::Fingerprint,
        &plan::Plan,
        &preprocess::Normalize,
        &preprocess::Resample,
        &train::TrainFold,
        &select::EnsembleSelect,
        &postprocess::Postprocess,
        &predict::Predict,
        &postprocess::Evaluate,
    ]
}

/// The built-in stage kind named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn StageKind> {
    registry().iter().copied().find(|k| k.name() == name)
}

/// An error reading an upstream artifact at `dir`: names the artifact (`KIND/KEY`) and, when
/// its stored data failed a checksum, says how to get it rebuilt.
pub fn read_error(e: impl Into<anyhow::Error>, what: &str, dir: &Path) -> anyhow::Error {
    let e: anyhow::Error = e.into();
    let parts: Vec<String> = dir.components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
    let artifact = parts
        .iter()
        .rposition(|p| p == "artifacts")
        .filter(|&i| i + 3 < parts.len())
        .map(|i| format!(" (cache artifact {}/{})", parts[i + 1], parts[i + 3]))
        .unwrap_or_default();
    let damaged = format!("{e:#}").contains("checksum mismatch");
    let hint = if damaged {
        "; the cached data is damaged: `pipeline fsck` evicts damaged artifacts and the next run rebuilds them"
    } else {
        ""
    };
    e.context(format!("reading {what}{artifact}{hint}"))
}

/// Peak bytes of reading and cropping a raw case (fingerprint, normalize; the memory budget's
/// estimate): its channels as f32, the label, the raw data being decoded, the nonzero mask and
/// its hole filling. The voxel count
/// comes from the NIfTI headers; other formats are guessed from the file sizes.
pub(crate) fn case_peak_bytes(case: &nnunet_io::dataset::Case) -> u64 {
    let files = case.files();
    let voxels: u64 = files
        .iter()
        .map(|p| match nnunet_io::nifti::read_header(p) {
            Ok(h) => (h.shape_zyx().iter().product::<usize>() * h.num_volumes().max(1)) as u64,
            Err(_) => std::fs::metadata(p).map(|m| m.len() * 4).unwrap_or(0),
        })
        .max()
        .unwrap_or(0);
    let channels = case.images.len().max(1) as u64;
    voxels * (channels * 4 + 2 + 2 + 4 + 2) + (24 << 20)
}

/// Reads a JSON file (`nnunet_io::fsio::read_json`; the error names the file).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    nnunet_io::fsio::read_json(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes pretty JSON atomically (`nnunet_io::fsio::write_json`; parent folders are created).
pub fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<()> {
    nnunet_io::fsio::write_json(path, v).with_context(|| format!("cannot write {}", path.display()))
}

/// Files in `dir` whose name ends with `ending` (hidden files skipped), sorted; empty if the
/// folder does not exist.
pub fn list_files(dir: &Path, ending: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(ending) && !n.starts_with('.')))
        .collect();
    v.sort();
    v
}

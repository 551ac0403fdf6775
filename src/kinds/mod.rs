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

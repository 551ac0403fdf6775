//! Stage kinds: thin adapters from the engine to the domain crates, one file per kind.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

use crate::kind::StageKind;
use nnunet_io::dataset::{Case, Dataset};

mod fingerprint;
pub mod plan;
mod postprocess;
pub mod predict;
mod preprocess;
pub mod select;
pub mod train;

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

/// Checks the raw inputs of units of `kind` about to be built, before anything is written:
/// cases about to be fingerprinted are verified like nnU-Net's verify_dataset_integrity.
pub fn preflight(kind_name: &str, _kind: &dyn StageKind, ds: &Dataset, cases: &[&Case]) -> Result<()> {
    if kind_name != "fingerprint" || cases.is_empty() {
        return Ok(());
    }
    // Dataset-wide checks need every case (numTraining, label consistency), so the whole
    // dataset is verified whenever any case is about to be fingerprinted.
    let report = nnunet_io::verify::verify_dataset(ds, &|_, _| {});
    if report.problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = report.problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::bail!(
        "dataset {} failed verification ({} problem(s)); nothing was written:\n{}",
        ds.root.display(),
        lines.len(),
        lines.join("\n")
    )
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

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("cannot parse {}", path.display()))
}

pub fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    let bytes = serde_json::to_vec_pretty(v)?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
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

//! Folder evaluation (reference §11): every prediction in `pred_dir` ending in `file_ending`
//! is matched by file name to `ref_dir` and scored; references without a prediction are
//! skipped (nnU-Net's `chill`), a prediction without a reference is an error.

use crate::classes::LabelOrRegion;
use crate::error::{EvalError, Result};
use crate::metrics::case_metrics;
use crate::summary::{CaseResult, Summary};
use nnunet_io::nifti::{read_nifti, NiftiHeader};
use nnunet_io::Volume;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Suffix of the folder holding a case's stored class probabilities (a Zarr array `[C, Z, Y,
/// X]`) beside its segmentation `CASE{file_ending}`: `CASE.probs.zarr`.
pub const PROBS_SUFFIX: &str = ".probs.zarr";

/// Sorted file names in `dir` ending in `ending` (regular files; names starting with `.`,
/// e.g. macOS `._x.nii.gz` or temporary files, are skipped).
pub fn list_segmentations(dir: &Path, ending: &str) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|source| EvalError::Io { path: dir.to_path_buf(), source })?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|source| EvalError::Io { path: dir.to_path_buf(), source })?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(ending) {
            continue;
        }
        if e.path().is_file() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a segmentation as an i16 label map with its header (reduced to 3D).
pub fn read_segmentation(path: &Path) -> Result<(Volume<i16>, NiftiHeader)> {
    let img = read_nifti(path)?;
    let vol = img.to_label_volume()?;
    Ok((vol, img.header.to_3d()))
}

/// Checks that a prediction lies on the reference's voxel grid: same shape, spacing and
/// affine (within what float32 header storage allows).
pub fn check_same_geometry(reference: &Path, rh: &NiftiHeader, prediction: &Path, ph: &NiftiHeader) -> Result<()> {
    let fail = |detail: String| {
        Err(EvalError::Geometry { reference: reference.to_path_buf(), prediction: prediction.to_path_buf(), detail })
    };
    if rh.shape_zyx() != ph.shape_zyx() {
        return fail(format!("shape (z, y, x) {:?} vs {:?}", rh.shape_zyx(), ph.shape_zyx()));
    }
    let (rs, ps) = (rh.spacing_zyx(), ph.spacing_zyx());
    if rs.iter().zip(&ps).any(|(a, b)| (a - b).abs() > 1e-4 * a.abs().max(b.abs()).max(1e-3)) {
        return fail(format!("spacing (z, y, x) {rs:?} vs {ps:?}"));
    }
    let (ra, pa) = (rh.affine(), ph.affine());
    for i in 0..3 {
        for j in 0..4 {
            let (a, b) = (ra[i][j], pa[i][j]);
            if (a - b).abs() > 1e-3 + 1e-4 * a.abs().max(b.abs()) {
                return fail(format!("affine row {i} {:?} vs {:?}", ra[i], pa[i]));
            }
        }
    }
    Ok(())
}

/// Evaluates one prediction file against its reference file.
pub fn evaluate_pair(
    reference: &Path,
    prediction: &Path,
    classes: &[LabelOrRegion],
    ignore: Option<i32>,
) -> Result<CaseResult> {
    let (r, rh) = read_segmentation(reference)?;
    let (p, ph) = read_segmentation(prediction)?;
    check_same_geometry(reference, &rh, prediction, &ph)?;
    Ok(CaseResult {
        prediction_file: prediction.to_string_lossy().into_owned(),
        reference_file: reference.to_string_lossy().into_owned(),
        metrics: case_metrics(&r.data, &p.data, classes, ignore),
    })
}

/// Pairs each prediction in `pred_dir` with the reference of the same name.
pub fn match_files(ref_dir: &Path, pred_dir: &Path, file_ending: &str) -> Result<Vec<(PathBuf, PathBuf)>> {
    let preds = list_segmentations(pred_dir, file_ending)?;
    if preds.is_empty() {
        return Err(EvalError::NoPredictions { dir: pred_dir.to_path_buf(), ending: file_ending.to_string() });
    }
    preds
        .into_iter()
        .map(|name| {
            let r = ref_dir.join(&name);
            let p = pred_dir.join(&name);
            if !r.is_file() {
                return Err(EvalError::MissingReference { prediction: p, reference: r });
            }
            Ok((r, p))
        })
        .collect()
}

/// `compute_metrics_on_folder` (§11) with `chill=True`: see [`evaluate_folder_with`].
pub fn evaluate_folder(
    ref_dir: &Path,
    pred_dir: &Path,
    classes: &[LabelOrRegion],
    ignore: Option<i32>,
    file_ending: &str,
) -> Result<Summary> {
    evaluate_folder_with(ref_dir, pred_dir, classes, ignore, file_ending, &|_, _| {})
}

/// Evaluates every prediction of `pred_dir` (sorted by name) in parallel over cases.
/// `progress(done, total)` is called after each case.
pub fn evaluate_folder_with(
    ref_dir: &Path,
    pred_dir: &Path,
    classes: &[LabelOrRegion],
    ignore: Option<i32>,
    file_ending: &str,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Summary> {
    if classes.is_empty() {
        return Err(EvalError::Invalid("no labels or regions to evaluate".into()));
    }
    let pairs = match_files(ref_dir, pred_dir, file_ending)?;
    let done = AtomicUsize::new(0);
    let total = pairs.len();
    let cases: Vec<CaseResult> = pairs
        .par_iter()
        .map(|(r, p)| {
            let res = evaluate_pair(r, p, classes, ignore);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            res
        })
        .collect::<Result<_>>()?;
    Ok(Summary::from_cases(classes.to_vec(), cases))
}

/// Writes bytes to `path` through a temporary sibling file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    nnunet_io::fsio::write_atomic(path, bytes).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })
}

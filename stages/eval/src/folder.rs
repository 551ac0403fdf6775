//! Folder evaluation (reference §11): every prediction in `pred_dir` ending in `file_ending`
//! is matched by file name to `ref_dir` and scored; references without a prediction are
//! skipped (nnU-Net's `chill`), a prediction without a reference is an error.

use crate::classes::LabelOrRegion;
use crate::error::{EvalError, Result};
use crate::metrics::case_metrics;
use crate::summary::{CaseResult, Summary};
use nnunet_io::image::{read_image, ImageHeader};
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

/// Reads a segmentation (any supported format) as an i16 label map with its header.
pub fn read_segmentation(path: &Path) -> Result<(Volume<i16>, ImageHeader)> {
    let img = read_image(path)?;
    let vol = img.to_label_volume()?;
    Ok((vol, img.header))
}

/// Checks that a prediction lies on the reference's voxel grid: same shape, spacing, origin
/// and direction (ITK geometry; within what float32 header storage allows).
pub fn check_same_geometry(reference: &Path, rh: &ImageHeader, prediction: &Path, ph: &ImageHeader) -> Result<()> {
    let fail = |detail: String| {
        Err(EvalError::Geometry { reference: reference.to_path_buf(), prediction: prediction.to_path_buf(), detail })
    };
    let (rg, pg) = (&rh.geometry, &ph.geometry);
    if rg.shape != pg.shape {
        return fail(format!("shape (z, y, x) {:?} vs {:?}", rg.shape, pg.shape));
    }
    let (rs, ps) = (rg.spacing, pg.spacing);
    if rs.iter().zip(&ps).any(|(a, b)| (a - b).abs() > 1e-4 * a.abs().max(b.abs()).max(1e-3)) {
        return fail(format!("spacing (x, y, z) {rs:?} vs {ps:?}"));
    }
    let close = |a: f64, b: f64, abs: f64| (a - b).abs() <= abs + 1e-4 * a.abs().max(b.abs());
    if rg.origin.iter().zip(&pg.origin).any(|(a, b)| !close(*a, *b, 1e-3)) {
        return fail(format!("origin (x, y, z) {:?} vs {:?}", rg.origin, pg.origin));
    }
    if rg.direction.concat().iter().zip(pg.direction.concat()).any(|(a, b)| !close(*a, b, 1e-4)) {
        return fail(format!("direction {:?} vs {:?}", rg.direction, pg.direction));
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

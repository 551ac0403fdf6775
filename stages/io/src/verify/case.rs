//! The checks of one case.

use super::{rel_file, Problem, ProblemKind};
use crate::dataset::{lexically_inside, nnunet_spacing, Case, Dataset};
use crate::nifti::{read_nifti, Affine, NiftiImage};
use std::path::{Path, PathBuf};

/// What checking one case found.
pub(crate) struct Outcome {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// Spatial dimensionality (2 or 3) of the case's first readable image.
    pub ndim: Option<usize>,
}

/// Geometry of one file, compared across the files of a case.
struct Geom {
    /// The channel the file was read for.
    channel: usize,
    ndim: usize,
    shape: [usize; 3],
    spacing: [f64; 3],
    affine: Affine,
}

impl Geom {
    fn of(img: &NiftiImage, channel: usize) -> Geom {
        Geom {
            channel,
            ndim: img.header.ndim().min(3),
            shape: img.shape_zyx(),
            spacing: nnunet_spacing(&img.header),
            affine: img.header.affine(),
        }
    }
}

/// numpy `allclose` defaults: |a - b| <= 1e-8 + 1e-5 * |b|, what nnU-Net's
/// `verify_dataset_integrity` uses for spacing, origin and direction (reference §1.1).
fn allclose(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
}

struct Checker<'a> {
    ds: &'a Dataset,
    case: &'a Case,
    out: Outcome,
}

impl Checker<'_> {
    fn problem(&mut self, file: &Path, kind: ProblemKind) {
        self.out.problems.push(Problem { case: Some(self.case.id.clone()), file: rel_file(self.ds, file), kind });
    }

    fn warning(&mut self, file: &Path, kind: ProblemKind) {
        self.out.warnings.push(Problem { case: Some(self.case.id.clone()), file: rel_file(self.ds, file), kind });
    }

    /// Reads a file, reporting it missing, outside the folder or unreadable.
    fn read(&mut self, path: &Path, missing: ProblemKind) -> Option<NiftiImage> {
        if !lexically_inside(&self.ds.root, path) {
            self.problem(path, ProblemKind::PathEscapes);
            return None;
        }
        if !path.exists() {
            self.problem(path, missing);
            return None;
        }
        match read_nifti(path) {
            Ok(img) => Some(img),
            Err(e) => {
                self.problem(path, ProblemKind::Unreadable { reason: e.kind.to_string() });
                None
            }
        }
    }

    /// Compares a file's geometry with the case's reference (`what` names the reference);
    /// reports the first difference (dimensionality, then shape, then spacing).
    fn compare(&mut self, path: &Path, reference: &Geom, what: &str, g: &Geom) {
        let what = what.to_string();
        if g.ndim != reference.ndim {
            self.problem(
                path,
                ProblemKind::DimensionMismatch { reference: what, expected: reference.ndim, found: g.ndim },
            );
            return;
        }
        if g.shape != reference.shape {
            self.problem(
                path,
                ProblemKind::ShapeMismatch { reference: what, expected: reference.shape, found: g.shape },
            );
            return;
        }
        if !allclose(&g.spacing, &reference.spacing) {
            self.problem(
                path,
                ProblemKind::SpacingMismatch { reference: what, expected: reference.spacing, found: g.spacing },
            );
            return;
        }
        let flat = |a: &Affine| a[..3].iter().flatten().copied().collect::<Vec<f64>>();
        if !allclose(&flat(&g.affine), &flat(&reference.affine)) {
            self.warning(path, ProblemKind::OrientationMismatch { reference: what });
        }
    }

    fn images(&mut self) -> Option<Geom> {
        let n = self.ds.num_channels();
        if self.case.images.len() != n {
            let first = self.case.images.first().map(|r| r.path.clone()).unwrap_or_default();
            self.problem(&first, ProblemKind::ChannelCount { found: self.case.images.len(), expected: n });
        }
        let mut reference: Option<Geom> = None;
        let mut seen: Vec<PathBuf> = Vec::new();
        for (c, r) in self.case.images.iter().enumerate() {
            if seen.contains(&r.path) {
                continue; // another channel of a 4D file already checked
            }
            seen.push(r.path.clone());
            let Some(img) = self.read(&r.path, ProblemKind::MissingChannelFile { channel: c }) else { continue };
            // Channels this file must provide.
            let uses: Vec<Option<usize>> =
                self.case.images.iter().filter(|o| o.path == r.path).map(|o| o.channel_in_file).collect();
            let volumes = img.num_volumes();
            let expected = if uses.iter().any(Option::is_some) { uses.len() } else { 1 };
            if volumes != expected {
                self.problem(&r.path, ProblemKind::VolumeCount { volumes, expected });
            }
            match img.to_f32_channels() {
                Ok(chans) => {
                    let mut count = 0;
                    let mut first = None;
                    for ch in &chans {
                        for (i, v) in ch.data.iter().enumerate() {
                            if !v.is_finite() {
                                count += 1;
                                first.get_or_insert(crate::nifti::position(i, ch.shape));
                            }
                        }
                    }
                    if let Some(first) = first {
                        self.problem(&r.path, ProblemKind::NonFinite { what: "image", count, first });
                    }
                }
                Err(e) => self.problem(&r.path, ProblemKind::Unreadable { reason: e.kind.to_string() }),
            }
            let g = Geom::of(&img, c);
            match &reference {
                None => reference = Some(g),
                Some(rf) => self.compare(&r.path, rf, &format!("channel {}", rf.channel), &g),
            }
        }
        reference
    }

    fn label(&mut self, reference: Option<&Geom>) {
        let Some(path) = self.case.label.clone() else { return };
        let Some(img) = self.read(&path, ProblemKind::MissingLabelFile) else { return };
        if img.num_volumes() != 1 {
            self.problem(&path, ProblemKind::VolumeCount { volumes: img.num_volumes(), expected: 1 });
        }
        let lv = img.label_values();
        if let Some(first) = lv.first_non_finite {
            self.problem(&path, ProblemKind::NonFinite { what: "label", count: lv.non_finite, first });
        }
        if let Some((value, first)) = lv.first_non_integer {
            self.problem(&path, ProblemKind::NonIntegerLabel { value, count: lv.non_integer, first });
        }
        let declared = self.ds.labels.allowed_values();
        for v in lv.values {
            if !declared.iter().any(|&d| d as i64 == v) {
                self.problem(&path, ProblemKind::UndeclaredLabel { value: v, declared: declared.clone() });
            }
        }
        if let Some(rf) = reference {
            self.compare(&path, rf, "the image", &Geom::of(&img, 0));
        }
    }
}

/// Runs every per-case check. Files are read one at a time.
pub(crate) fn check_case(ds: &Dataset, case: &Case) -> Outcome {
    let mut ch = Checker { ds, case, out: Outcome { problems: Vec::new(), warnings: Vec::new(), ndim: None } };
    let reference = ch.images();
    ch.out.ndim = reference.as_ref().map(|g| g.ndim);
    ch.label(reference.as_ref());
    ch.out
}

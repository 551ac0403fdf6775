//! The checks of one case.

use super::{rel_file, Problem, ProblemKind};
use crate::dataset::{Case, Dataset};
use crate::image::{read_image, Geometry, LoadedImage};
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
    /// ITK geometry (origin and direction as SimpleITK reads them: for NIfTI the qform unless
    /// `sform_code` is 1, issue 14 item 6).
    geometry: Geometry,
}

impl Geom {
    fn of(img: &LoadedImage, channel: usize) -> Geom {
        Geom {
            channel,
            ndim: img.header.ndim(),
            shape: img.shape_zyx(),
            spacing: img.header.nnunet_spacing(),
            geometry: img.header.geometry.clone(),
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

    /// Reads a file, reporting it missing or unreadable. Files outside the dataset folder
    /// are read like any other (nnU-Net accepts them).
    fn read(&mut self, path: &Path, missing: ProblemKind) -> Option<LoadedImage> {
        if !path.exists() {
            self.problem(path, missing);
            return None;
        }
        match read_image(path) {
            Ok(img) => Some(img),
            Err(e) => {
                self.problem(path, ProblemKind::Unreadable { reason: e.reason() });
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
        if !g.geometry.same_orientation(&reference.geometry) {
            self.warning(path, ProblemKind::OrientationMismatch { reference: what });
        }
    }

    fn images(&mut self) -> Option<Geom> {
        let n = self.ds.num_channels();
        let multi = crate::image::ImageFormat::from_ending(&self.ds.file_ending)
            .is_some_and(crate::dataset::multi_channel_files);
        if self.case.images.len() != n && !multi {
            let first = self.case.images.first().map(|r| r.path.clone()).unwrap_or_default();
            self.problem(&first, ProblemKind::ChannelCount { found: self.case.images.len(), expected: n });
        }
        let mut reference: Option<Geom> = None;
        let mut seen: Vec<PathBuf> = Vec::new();
        // Channels the files provide (pictures may hold several each).
        let mut provided = 0usize;
        let mut all_read = true;
        for (c, r) in self.case.images.iter().enumerate() {
            if seen.contains(&r.path) {
                continue; // another channel of a 4D file already checked
            }
            seen.push(r.path.clone());
            let Some(img) = self.read(&r.path, ProblemKind::MissingChannelFile { channel: c }) else {
                all_read = false;
                continue;
            };
            // Channels this file must provide.
            let uses: Vec<Option<usize>> =
                self.case.images.iter().filter(|o| o.path == r.path).map(|o| o.channel_in_file).collect();
            let volumes = img.num_channels();
            provided += volumes;
            if uses.iter().any(Option::is_some) && volumes != uses.len() {
                self.problem(&r.path, ProblemKind::VolumeCount { volumes, expected: uses.len() });
            } else if !multi && uses.iter().all(Option::is_none) && volumes != 1 {
                self.problem(&r.path, ProblemKind::VolumeCount { volumes, expected: 1 });
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
                    // Issue 14: NaN/inf image voxels are replaced by 0 when read; reported, not refused.
                    if let Some(first) = first {
                        self.warning(&r.path, ProblemKind::NonFinite { what: "image", count, first });
                    }
                }
                Err(e) => self.problem(&r.path, ProblemKind::Unreadable { reason: e.reason() }),
            }
            let g = Geom::of(&img, c);
            match &reference {
                None => reference = Some(g),
                Some(rf) => self.compare(&r.path, rf, &format!("channel {}", rf.channel), &g),
            }
        }
        if multi && all_read && provided != n {
            let first = self.case.images.first().map(|r| r.path.clone()).unwrap_or_default();
            self.problem(&first, ProblemKind::ChannelCount { found: provided, expected: n });
        }
        reference
    }

    fn label(&mut self, reference: Option<&Geom>) {
        let Some(path) = self.case.label.clone() else { return };
        let Some(img) = self.read(&path, ProblemKind::MissingLabelFile) else { return };
        if img.num_channels() != 1 {
            self.problem(&path, ProblemKind::VolumeCount { volumes: img.num_channels(), expected: 1 });
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

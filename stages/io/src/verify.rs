//! nnU-Net's `verify_dataset_integrity` (reference §1.1, §1.2), reporting every problem
//! separately and naming the case and file.
//!
//! Checked, per dataset: the labels dictionary (background 0, consecutive, ignore = max + 1,
//! regions need `regions_class_order`), `numTraining` against the cases found, stray files
//! in `imagesTr`/`imagesTs` (no channel suffix, channel beyond those declared), and a mix of
//! 2D and 3D cases. Per case: missing channel or label files, unreadable or truncated files,
//! channel counts of 4D files and pictures, NaN/inf voxels in labels (in images they are a
//! warning: they are read as 0), non-integer or undeclared label values, and geometry (dimensionality,
//! shape, spacing with numpy's `allclose` tolerance) between channels and between image and
//! label. Origin/direction differences are warnings, as in nnU-Net.
//!
//! Cases run in parallel (rayon), each worker reading one case at a time.

mod case;

use crate::dataset::{display_rel, Dataset, Layout};
use crate::labels::LabelIssue;
use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One problem (or warning) found by [`verify_dataset`].
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The case concerned; `None` for dataset-wide problems.
    pub case: Option<String>,
    /// The file concerned, relative to the dataset folder when inside it.
    pub file: Option<PathBuf>,
    pub kind: ProblemKind,
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq)]
pub enum ProblemKind {
    /// The `labels` dictionary breaks a rule.
    Labels(LabelIssue),
    /// `numTraining` differs from the training cases found.
    NumTrainingMismatch { declared: usize, found: usize },
    /// No training case was found.
    NoTrainingCases,
    /// An image file without the `_CCCC` channel suffix.
    FileWithoutChannelSuffix,
    /// An image file for a channel index dataset.json does not declare.
    UnexpectedChannelFile { channel: usize, declared: usize },
    /// A label file without images.
    LabelWithoutImages,
    /// A case lists a different number of channel files than dataset.json declares.
    ChannelCount { found: usize, expected: usize },
    /// The file of channel `channel` does not exist.
    MissingChannelFile { channel: usize },
    /// The label file does not exist.
    MissingLabelFile,
    /// The file cannot be read (I/O, truncated, corrupt gzip, invalid header, ...).
    Unreadable { reason: String },
    /// A 4D file's number of volumes does not match the channels that use it (or a label
    /// file holds several volumes).
    VolumeCount { volumes: usize, expected: usize },
    /// NaN or infinite voxels.
    NonFinite { what: &'static str, count: usize, first: [usize; 3] },
    /// Label values that are not integers.
    NonIntegerLabel { value: f64, count: usize, first: [usize; 3] },
    /// A label value that dataset.json does not declare.
    UndeclaredLabel { value: i64, declared: Vec<i32> },
    /// 2D vs 3D between files of a case.
    DimensionMismatch { reference: String, expected: usize, found: usize },
    /// Shape `[z, y, x]` differs from the reference file of the case.
    ShapeMismatch { reference: String, expected: [usize; 3], found: [usize; 3] },
    /// Spacing `[z, y, x]` differs from the reference file of the case (beyond allclose).
    SpacingMismatch { reference: String, expected: [f64; 3], found: [f64; 3] },
    /// Some cases are 2D and others 3D.
    MixedDimensionality { two_d: usize, three_d: usize },
    /// Warning: origin or direction differ from the reference file (nnU-Net only warns).
    OrientationMismatch { reference: String },
}

fn join<T: fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProblemKind::*;
        match self {
            Labels(issue) => write!(f, "{issue}"),
            NumTrainingMismatch { declared, found } => {
                write!(f, "numTraining is {declared} but {found} training cases were found")
            }
            NoTrainingCases => write!(f, "no training cases were found"),
            FileWithoutChannelSuffix => {
                write!(f, "image file name lacks the _XXXX channel suffix (expected CASE_0000<file_ending>)")
            }
            UnexpectedChannelFile { channel, declared } => write!(
                f,
                "channel {channel} is not declared (dataset.json has {declared} channel{})",
                if *declared == 1 { "" } else { "s" }
            ),
            LabelWithoutImages => write!(f, "label file has no matching image files"),
            ChannelCount { found, expected } => {
                write!(f, "case has {found} channel file(s) but dataset.json declares {expected} channel(s)")
            }
            MissingChannelFile { channel } => write!(f, "channel {channel} file is missing"),
            MissingLabelFile => write!(f, "label file is missing"),
            Unreadable { reason } => write!(f, "unreadable: {reason}"),
            VolumeCount { volumes, expected } => {
                write!(f, "file holds {volumes} volume(s) along t, expected {expected}")
            }
            NonFinite { what, count, first } => write!(
                f,
                "{what} has {count} NaN/inf voxel(s) (first at z={}, y={}, x={}){}",
                first[0],
                first[1],
                first[2],
                if *what == "image" { "; they are read as 0" } else { "" }
            ),
            NonIntegerLabel { value, count, first } => write!(
                f,
                "label has {count} non-integer value(s), e.g. {value} at z={}, y={}, x={}",
                first[0], first[1], first[2]
            ),
            UndeclaredLabel { value, declared } => {
                write!(f, "label value {value} is not declared in dataset.json (declared: {})", join(declared))
            }
            DimensionMismatch { reference, expected, found } => {
                write!(f, "file is {found}D but {reference} is {expected}D")
            }
            ShapeMismatch { reference, expected, found } => {
                write!(f, "shape {found:?} (z, y, x) differs from {reference} {expected:?}")
            }
            SpacingMismatch { reference, expected, found } => write!(
                f,
                "spacing [{}] (z, y, x) differs from {reference} [{}]",
                join(&found.map(fmt_num)),
                join(&expected.map(fmt_num))
            ),
            MixedDimensionality { two_d, three_d } => {
                write!(f, "the dataset mixes {two_d} 2D case(s) and {three_d} 3D case(s)")
            }
            OrientationMismatch { reference } => {
                write!(f, "origin/direction differ from {reference} (warning only, as in nnU-Net)")
            }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.case {
            write!(f, "{c}: ")?;
        }
        if let Some(p) = &self.file {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "{}", self.kind)
    }
}

/// The outcome of [`verify_dataset`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerifyReport {
    /// Everything nnU-Net would refuse, dataset-wide problems first, then by case.
    pub problems: Vec<Problem>,
    /// Things nnU-Net only warns about (orientation differences, label files without images).
    pub warnings: Vec<Problem>,
    /// Cases checked (training and test).
    pub cases_checked: usize,
}

impl VerifyReport {
    /// Whether no problem was found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} case(s) checked: {} problem(s), {} warning(s)",
            self.cases_checked,
            self.problems.len(),
            self.warnings.len()
        )?;
        for p in &self.problems {
            writeln!(f, "error: {p}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Checks a dataset as nnU-Net's `verify_dataset_integrity` does, reporting every problem.
/// `progress(done, total)` is called after each case (from worker threads).
pub fn verify_dataset(ds: &Dataset, progress: &(dyn Fn(usize, usize) + Sync)) -> VerifyReport {
    let mut report = VerifyReport::default();
    let json = PathBuf::from("dataset.json");
    let ds_problem = |kind: ProblemKind| Problem { case: None, file: Some(json.clone()), kind };
    for issue in ds.labels.issues() {
        report.problems.push(ds_problem(ProblemKind::Labels(issue)));
    }
    if ds.num_training_declared != ds.cases.len() {
        report.problems.push(ds_problem(ProblemKind::NumTrainingMismatch {
            declared: ds.num_training_declared,
            found: ds.cases.len(),
        }));
    }
    if ds.cases.is_empty() {
        report.problems.push(Problem { case: None, file: None, kind: ProblemKind::NoTrainingCases });
    }
    if ds.layout == Layout::NnUNetV2 && !uses_dataset_key(&ds.root) {
        stray_files(ds, "imagesTr", "labelsTr", &ds.cases, &mut report);
        stray_files(ds, "imagesTs", "labelsTs", &ds.test_cases, &mut report);
    }

    let all: Vec<_> = ds.cases.iter().chain(&ds.test_cases).collect();
    let total = all.len();
    let done = AtomicUsize::new(0);
    let outcomes: Vec<case::Outcome> = all
        .par_iter()
        .with_max_len(1)
        .map(|c| {
            let o = case::check_case(ds, c);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            o
        })
        .collect();
    let (mut two_d, mut three_d) = (0, 0);
    for o in outcomes {
        match o.ndim {
            Some(2) => two_d += 1,
            Some(_) => three_d += 1,
            None => {}
        }
        report.problems.extend(o.problems);
        report.warnings.extend(o.warnings);
    }
    if two_d > 0 && three_d > 0 {
        report.problems.push(Problem {
            case: None,
            file: None,
            kind: ProblemKind::MixedDimensionality { two_d, three_d },
        });
    }
    report.cases_checked = total;
    report
}

/// Whether dataset.json lists its cases under the `dataset` key (then the folders are not
/// scanned, and unlisted files there are not an error).
fn uses_dataset_key(root: &Path) -> bool {
    crate::dataset::read_json(&root.join("dataset.json")).is_ok_and(|j| j.get("dataset").is_some())
}

/// Files in an nnU-Net v2 images folder that the case scan skipped, and labels without images.
fn stray_files(ds: &Dataset, images: &str, labels: &str, cases: &[crate::dataset::Case], report: &mut VerifyReport) {
    let ending = ds.file_ending.as_str();
    let rel = |dir: &str, name: &str| Some(PathBuf::from(dir).join(name));
    if let Ok(names) = crate::dataset::list_files(&ds.root.join(images)) {
        for name in names {
            let Some(stem) = name.strip_suffix(ending) else { continue };
            match crate::dataset::split_channel_suffix(stem) {
                None => report.problems.push(Problem {
                    case: None,
                    file: rel(images, &name),
                    kind: ProblemKind::FileWithoutChannelSuffix,
                }),
                Some((id, ch)) if ch >= ds.num_channels() => report.problems.push(Problem {
                    case: Some(id.to_string()),
                    file: rel(images, &name),
                    kind: ProblemKind::UnexpectedChannelFile { channel: ch, declared: ds.num_channels() },
                }),
                Some(_) => {}
            }
        }
    }
    if let Ok(names) = crate::dataset::list_files(&ds.root.join(labels)) {
        for name in names {
            let Some(id) = name.strip_suffix(ending) else { continue };
            if !cases.iter().any(|c| c.id == id) {
                report.warnings.push(Problem {
                    case: Some(id.to_string()),
                    file: rel(labels, &name),
                    kind: ProblemKind::LabelWithoutImages,
                });
            }
        }
    }
}

/// `path` for messages: relative to the dataset folder.
pub(crate) fn rel_file(ds: &Dataset, path: &Path) -> Option<PathBuf> {
    Some(display_rel(&ds.root, path))
}

#[cfg(test)]
mod tests;

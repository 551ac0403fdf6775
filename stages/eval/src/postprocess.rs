//! nnU-Net's postprocessing search (reference §10.2, `determine_postprocessing`):
//!
//! 1. Whole foreground: merge all foreground labels into one mask and keep its largest
//!    component(s). Accept iff `foreground_mean` Dice **strictly** increases and no class'
//!    mean Dice decreases.
//! 2. Only with more than one label/region: for each label or region in order, starting from
//!    the current best output, keep that class' largest component(s). Accept iff that class'
//!    mean Dice strictly increases.
//!
//! NaN compares false everywhere, as in Python: a NaN score never improves and never blocks.

use crate::classes::LabelOrRegion;
use crate::components::{keep_largest_component, Connectivity};
use crate::error::{EvalError, Result};
use crate::folder::{check_same_geometry, list_segmentations, read_segmentation};
use crate::metrics::case_metrics;
use crate::summary::{CaseResult, Summary};
use nnunet_io::Volume;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Version of the decision JSON written by [`PostprocessingDecision::to_json`].
pub const DECISION_FORMAT_VERSION: u32 = 1;

/// One accepted operation: `remove_all_but_largest_component_from_segmentation` on the union
/// of `labels_or_regions` (voxels of the mask outside the kept components become 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PostprocessingStep {
    /// nnU-Net's function name, kept for readers of the JSON.
    pub function: String,
    pub labels_or_regions: Vec<LabelOrRegion>,
}

impl PostprocessingStep {
    pub fn keep_largest(labels_or_regions: Vec<LabelOrRegion>) -> Self {
        PostprocessingStep { function: "remove_all_but_largest_component_from_segmentation".into(), labels_or_regions }
    }
}

/// Dice scores at one point of the search (NaN is written as `null`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiceScores {
    #[serde(with = "nnunet_io::fsio::nan_as_null")]
    pub foreground_mean: f64,
    /// Mean Dice per class, keyed like `summary.json`.
    #[serde(with = "nnunet_io::fsio::nan_as_null::map")]
    pub per_class: BTreeMap<String, f64>,
}

impl DiceScores {
    pub fn of(s: &Summary) -> DiceScores {
        DiceScores {
            foreground_mean: s.foreground_mean.dice,
            per_class: s.classes.iter().zip(&s.mean).map(|(c, m)| (c.key(), m.dice)).collect(),
        }
    }
}

/// One candidate step that was tried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// `"whole_foreground"` or `"per_class"`.
    pub kind: String,
    pub step: PostprocessingStep,
    pub accepted: bool,
    pub before: DiceScores,
    pub after: DiceScores,
}

/// The result of the search: the accepted steps in order, and the scores before and after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PostprocessingDecision {
    pub format_version: u32,
    /// Accepted steps, applied in this order by [`apply_postprocessing`].
    pub steps: Vec<PostprocessingStep>,
    pub dice_before: DiceScores,
    pub dice_after: DiceScores,
    /// Every step tried, accepted or not.
    pub trials: Vec<Trial>,
}

impl PostprocessingDecision {
    /// No postprocessing.
    pub fn none() -> Self {
        let empty = DiceScores { foreground_mean: f64::NAN, per_class: BTreeMap::new() };
        PostprocessingDecision {
            format_version: DECISION_FORMAT_VERSION,
            steps: vec![],
            dice_before: empty.clone(),
            dice_after: empty,
            trials: vec![],
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("decision serializes")
    }

    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let d: PostprocessingDecision = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if d.format_version != DECISION_FORMAT_VERSION {
            return Err(format!("format_version {} (this build reads {DECISION_FORMAT_VERSION})", d.format_version));
        }
        Ok(d)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::folder::write_atomic(path, self.to_json().as_bytes())
    }

    /// Reads our JSON decision, or nnU-Net's `postprocessing.pkl` (by its extension).
    pub fn read(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "pkl") {
            return Self::read_nnunet_pickle(path);
        }
        let text =
            std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
        Self::from_json(&text).map_err(|msg| EvalError::DecisionFormat { path: path.to_path_buf(), msg })
    }
}

/// nnU-Net's post-processing function, the only one `determine_postprocessing` chooses.
pub const NNUNET_KEEP_LARGEST: &str =
    "nnunetv2.postprocessing.remove_connected_components.remove_all_but_largest_component_from_segmentation";

impl PostprocessingDecision {
    /// nnU-Net's `postprocessing.pkl`: the pickled tuple `(pp_fns, pp_fn_kwargs)` of
    /// `determine_postprocessing`. Read with the safe pickle subset (nothing is executed); the
    /// functions must be `remove_all_but_largest_component_from_segmentation`, the kwargs
    /// `{'labels_or_regions': int | tuple | list of those}` (a list is a union).
    pub fn read_nnunet_pickle(path: &Path) -> Result<Self> {
        use nnunet_io::pickle::{read, ReadOptions, Value};
        let bad = |msg: String| EvalError::DecisionFormat { path: path.to_path_buf(), msg };
        let bytes = std::fs::read(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
        let opts = ReadOptions { references: vec![NNUNET_KEEP_LARGEST.into()], ..ReadOptions::default() };
        let v = read(&bytes, &opts).map_err(|e| bad(e.to_string()))?;
        let pair = v
            .as_seq()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| bad("expected the tuple (pp_fns, pp_fn_kwargs)".into()))?;
        let (fns, kwargs) = match (pair[0].as_seq(), pair[1].as_seq()) {
            (Some(f), Some(k)) if f.len() == k.len() => (f, k),
            _ => return Err(bad("pp_fns and pp_fn_kwargs must be lists of the same length".into())),
        };
        let int = |x: &Value| x.as_i64().and_then(|i| i32::try_from(i).ok());
        let one = |x: &Value| -> Option<LabelOrRegion> {
            match x {
                Value::Tuple(r) => r.iter().map(int).collect::<Option<Vec<_>>>().map(LabelOrRegion::Region),
                _ => int(x).map(LabelOrRegion::Label),
            }
        };
        let mut d = PostprocessingDecision::none();
        for (f, kw) in fns.iter().zip(kwargs) {
            match f {
                Value::Global(g) if g == NNUNET_KEEP_LARGEST => {}
                other => return Err(bad(format!("post-processing function {other:?} is not supported"))),
            }
            let lr = kw.get("labels_or_regions").ok_or_else(|| bad("a step has no 'labels_or_regions'".into()))?;
            let items = match lr {
                Value::List(l) => l.iter().map(one).collect::<Option<Vec<_>>>(),
                x => one(x).map(|o| vec![o]),
            }
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("labels_or_regions {lr:?} is not a label, a region or a list of them")))?;
            d.steps.push(PostprocessingStep::keep_largest(items));
        }
        Ok(d)
    }
}

/// `remove_all_but_largest_component_from_segmentation`: the union mask of
/// `labels_or_regions` keeps its largest component(s); the rest of the mask becomes
/// `background`.
pub fn remove_all_but_largest_component(
    seg: &Volume<i16>,
    labels_or_regions: &[LabelOrRegion],
    background: i16,
) -> Volume<i16> {
    let mask = seg.map(|v| labels_or_regions.iter().any(|c| c.contains(v as i32)));
    let keep = keep_largest_component(&mask, Connectivity::Full);
    let mut out = seg.clone();
    for ((o, &m), &k) in out.data.iter_mut().zip(&mask.data).zip(&keep.data) {
        if m && !k {
            *o = background;
        }
    }
    out
}

/// Applies the accepted steps in order.
pub fn apply_postprocessing(seg: &Volume<i16>, decision: &PostprocessingDecision) -> Volume<i16> {
    let mut cur = seg.clone();
    for s in &decision.steps {
        cur = remove_all_but_largest_component(&cur, &s.labels_or_regions, 0);
    }
    cur
}

/// A prediction and its reference, already on the same grid.
#[derive(Clone, Debug)]
pub struct CasePair {
    pub name: String,
    pub prediction: Volume<i16>,
    pub reference: Volume<i16>,
}

/// What [`determine_postprocessing`] returns.
#[derive(Clone, Debug)]
pub struct PostprocessingOutcome {
    pub decision: PostprocessingDecision,
    /// Summary of the input predictions.
    pub baseline: Summary,
    /// Summary of the postprocessed predictions.
    pub postprocessed: Summary,
    /// The postprocessed predictions, in input order.
    pub segmentations: Vec<Volume<i16>>,
}

fn summarize(cases: &[CasePair], segs: &[Volume<i16>], classes: &[LabelOrRegion], ignore: Option<i32>) -> Summary {
    let results: Vec<CaseResult> = cases
        .par_iter()
        .zip(segs.par_iter())
        .map(|(c, s)| CaseResult {
            prediction_file: c.name.clone(),
            reference_file: c.name.clone(),
            metrics: case_metrics(&c.reference.data, &s.data, classes, ignore),
        })
        .collect();
    Summary::from_cases(classes.to_vec(), results)
}

/// Runs the search of §10.2 on in-memory cases.
///
/// - `classes`: what is evaluated (foreground labels, or regions for region-based datasets);
/// - `foreground_labels`: the labels merged in step 1 (nnU-Net uses the labels even for
///   region-based datasets);
/// - `progress(step_done, steps_total)` after each tried step.
///
/// Long (~90 lines) on purpose: it follows nnU-Net's `determine_postprocessing` (baseline,
/// whole-foreground trial, per-class trials, decision) in one readable sequence.
pub fn determine_postprocessing(
    cases: &[CasePair],
    classes: &[LabelOrRegion],
    foreground_labels: &[i32],
    ignore: Option<i32>,
    progress: &dyn Fn(usize, usize),
) -> Result<PostprocessingOutcome> {
    if classes.is_empty() {
        return Err(EvalError::Invalid("no labels or regions to evaluate".into()));
    }
    if cases.is_empty() {
        return Err(EvalError::Invalid("no cases to determine postprocessing on".into()));
    }
    if let Some(c) = cases.iter().find(|c| c.prediction.shape != c.reference.shape) {
        return Err(EvalError::Invalid(format!(
            "case {}: prediction shape {:?} differs from reference shape {:?}",
            c.name, c.prediction.shape, c.reference.shape
        )));
    }
    let total = 1 + if classes.len() > 1 { classes.len() } else { 0 };
    let mut done = 0;
    let mut trials = Vec::new();
    let mut steps = Vec::new();

    let input: Vec<Volume<i16>> = cases.iter().map(|c| c.prediction.clone()).collect();
    let baseline = summarize(cases, &input, classes, ignore);

    // Step 1: whole foreground.
    let step = PostprocessingStep::keep_largest(foreground_labels.iter().map(|&l| LabelOrRegion::Label(l)).collect());
    let pp: Vec<Volume<i16>> =
        input.par_iter().map(|s| remove_all_but_largest_component(s, &step.labels_or_regions, 0)).collect();
    let pp_summary = summarize(cases, &pp, classes, ignore);
    let mut accept = pp_summary.foreground_mean.dice > baseline.foreground_mean.dice;
    if accept {
        // No class may get worse (NaN comparisons are false and never block).
        accept = !classes.iter().any(|c| match (pp_summary.mean_of(c), baseline.mean_of(c)) {
            (Some(a), Some(b)) => a.dice < b.dice,
            _ => false,
        });
    }
    trials.push(Trial {
        kind: "whole_foreground".into(),
        step: step.clone(),
        accepted: accept,
        before: DiceScores::of(&baseline),
        after: DiceScores::of(&pp_summary),
    });
    let (mut current, mut current_summary) = if accept {
        steps.push(step);
        (pp, pp_summary)
    } else {
        (input, baseline.clone())
    };
    done += 1;
    progress(done, total);

    // Step 2: per label or region, only with more than one.
    if classes.len() > 1 {
        for c in classes {
            let step = PostprocessingStep::keep_largest(vec![c.clone()]);
            let pp: Vec<Volume<i16>> =
                current.par_iter().map(|s| remove_all_but_largest_component(s, &step.labels_or_regions, 0)).collect();
            let pp_summary = summarize(cases, &pp, classes, ignore);
            let before = current_summary.mean_of(c).map_or(f64::NAN, |m| m.dice);
            let after = pp_summary.mean_of(c).map_or(f64::NAN, |m| m.dice);
            let accept = after > before;
            trials.push(Trial {
                kind: "per_class".into(),
                step: step.clone(),
                accepted: accept,
                before: DiceScores::of(&current_summary),
                after: DiceScores::of(&pp_summary),
            });
            if accept {
                steps.push(step);
                current = pp;
                current_summary = pp_summary;
            }
            done += 1;
            progress(done, total);
        }
    }

    let decision = PostprocessingDecision {
        format_version: DECISION_FORMAT_VERSION,
        steps,
        dice_before: DiceScores::of(&baseline),
        dice_after: DiceScores::of(&current_summary),
        trials,
    };
    Ok(PostprocessingOutcome { decision, baseline, postprocessed: current_summary, segmentations: current })
}

/// Reads every prediction of `pred_dir` and its reference from `ref_dir` (matched by name,
/// geometry checked) and runs [`determine_postprocessing`].
pub fn determine_postprocessing_folder(
    pred_dir: &Path,
    ref_dir: &Path,
    classes: &[LabelOrRegion],
    foreground_labels: &[i32],
    ignore: Option<i32>,
    file_ending: &str,
    progress: &dyn Fn(usize, usize),
) -> Result<PostprocessingOutcome> {
    let pairs = crate::folder::match_files(ref_dir, pred_dir, file_ending)?;
    let cases: Vec<CasePair> = pairs
        .par_iter()
        .map(|(r, p)| {
            let (rv, rh) = read_segmentation(r)?;
            let (pv, ph) = read_segmentation(p)?;
            check_same_geometry(r, &rh, p, &ph)?;
            Ok(CasePair { name: p.to_string_lossy().into_owned(), prediction: pv, reference: rv })
        })
        .collect::<Result<_>>()?;
    determine_postprocessing(&cases, classes, foreground_labels, ignore, progress)
}

/// Applies a decision to every segmentation of `in_dir` ending in `file_ending`, writing
/// files of the same name to `out_dir` in each input's format and geometry (u8 when every
/// value fits, else u16).
pub fn apply_postprocessing_folder(
    in_dir: &Path,
    out_dir: &Path,
    decision: &PostprocessingDecision,
    file_ending: &str,
) -> Result<usize> {
    let names = list_segmentations(in_dir, file_ending)?;
    std::fs::create_dir_all(out_dir).map_err(|source| EvalError::Io { path: out_dir.to_path_buf(), source })?;
    names.par_iter().try_for_each(|n| -> Result<()> {
        let (seg, header) = read_segmentation(&in_dir.join(n))?;
        let out = apply_postprocessing(&seg, decision);
        let path = out_dir.join(n);
        let wide = !out.data.iter().all(|&v| (0..=255).contains(&v));
        nnunet_io::image::write_segmentation(&path, &header, &out, wide)?;
        Ok(())
    })?;
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::labels;

    /// 1 x 8 x 8 slices; `blobs` = (label, y0, x0, h, w) rectangles.
    fn seg(blobs: &[(i16, usize, usize, usize, usize)]) -> Volume<i16> {
        let mut v = Volume::filled([1, 8, 8], 0i16);
        for &(l, y0, x0, h, w) in blobs {
            for y in y0..y0 + h {
                for x in x0..x0 + w {
                    v.set(0, y, x, l);
                }
            }
        }
        v
    }

    #[test]
    fn removes_spurious_small_blobs() {
        // Truth: one 3x3 object of label 1. Prediction adds a far-away 1-voxel blob.
        let reference = seg(&[(1, 1, 1, 3, 3)]);
        let cases: Vec<CasePair> = (0..3)
            .map(|i| CasePair {
                name: format!("c{i}"),
                prediction: seg(&[(1, 1, 1, 3, 3), (1, 6, 6 - i, 1, 1)]),
                reference: reference.clone(),
            })
            .collect();
        let out = determine_postprocessing(&cases, &labels(&[1]), &[1], None, &|_, _| {}).unwrap();
        assert_eq!(out.decision.steps.len(), 1);
        assert_eq!(out.decision.trials.len(), 1, "single class: no per-class step");
        // before: 2*9/(18+1) per case; after: 1.0
        assert!((out.decision.dice_before.foreground_mean - 18.0 / 19.0).abs() < 1e-12);
        assert_eq!(out.decision.dice_after.foreground_mean, 1.0);
        assert_eq!(out.segmentations[0], reference);
        // The decision round-trips and applies the same way.
        let d = PostprocessingDecision::from_json(&out.decision.to_json()).unwrap();
        assert_eq!(apply_postprocessing(&cases[1].prediction, &d), reference);
    }

    #[test]
    fn rejects_when_true_objects_have_two_components() {
        // Truth and prediction both have two separate components of label 1 of different size.
        let two = seg(&[(1, 0, 0, 3, 3), (1, 5, 5, 2, 2)]);
        let cases = vec![CasePair { name: "a".into(), prediction: two.clone(), reference: two.clone() }];
        let out = determine_postprocessing(&cases, &labels(&[1]), &[1], None, &|_, _| {}).unwrap();
        assert!(out.decision.steps.is_empty());
        assert!(!out.decision.trials[0].accepted);
        assert_eq!(out.decision.dice_after.foreground_mean, 1.0);
        assert_eq!(out.segmentations[0], two);
    }

    #[test]
    fn whole_foreground_rejected_when_a_class_gets_worse_per_class_accepted() {
        // Label 1 is one object; label 2 has a true object disconnected from label 1 plus a
        // spurious voxel. Whole-foreground keep-largest deletes label 2's true object (class 2
        // gets worse) -> rejected. Per class: label 2 keep-largest removes the spurious voxel.
        let reference = seg(&[(1, 0, 0, 4, 4), (2, 6, 0, 2, 3)]);
        let prediction = seg(&[(1, 0, 0, 4, 4), (2, 6, 0, 2, 3), (2, 0, 7, 1, 1)]);
        let cases = vec![CasePair { name: "a".into(), prediction, reference: reference.clone() }];
        let out = determine_postprocessing(&cases, &labels(&[1, 2]), &[1, 2], None, &|_, _| {}).unwrap();
        let t = &out.decision.trials;
        assert_eq!(t.len(), 3);
        assert!(!t[0].accepted, "whole foreground hurts class 2");
        assert!(!t[1].accepted, "label 1 is already one component");
        assert!(t[2].accepted);
        assert_eq!(out.decision.steps, vec![PostprocessingStep::keep_largest(vec![LabelOrRegion::Label(2)])]);
        assert_eq!(out.segmentations[0], reference);
        assert_eq!(out.decision.dice_after.per_class["2"], 1.0);
    }

    #[test]
    fn ties_are_kept() {
        let s = seg(&[(1, 0, 0, 2, 2), (1, 5, 5, 2, 2), (1, 0, 6, 1, 1)]);
        let r = remove_all_but_largest_component(&s, &labels(&[1]), 0);
        assert_eq!(r, seg(&[(1, 0, 0, 2, 2), (1, 5, 5, 2, 2)]));
    }
}

#[cfg(test)]
mod nnunet_pickle_tests {
    use super::*;

    #[test]
    fn reads_nnunet_postprocessing_pkl() {
        // Pickled by nnU-Net's own save_pickle (stages/net/tests/fixtures/nnunet/README.md).
        let p = Path::new(&nnunet_io::testing::manifest_dir()).join("../net/tests/fixtures/nnunet/postprocessing.pkl");
        let d = PostprocessingDecision::read(&p).unwrap();
        assert_eq!(
            d.steps,
            vec![
                PostprocessingStep::keep_largest(vec![LabelOrRegion::Label(1), LabelOrRegion::Label(2)]),
                PostprocessingStep::keep_largest(vec![LabelOrRegion::Label(2)]),
            ]
        );
    }

    #[test]
    fn refuses_other_functions_and_code() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("postprocessing.pkl");
        // (os.system, ...) is refused before anything could run.
        std::fs::write(&p, b"\x80\x02cos\nsystem\n]\x86.").unwrap();
        let e = PostprocessingDecision::read(&p).unwrap_err().to_string();
        assert!(e.contains("os.system") && e.contains("postprocessing.pkl"), "{e}");
    }
}

//! Choosing among trained configurations on their cross-validation (reference §10.1,
//! `find_best_configuration`): the validation predictions of every fold of a configuration are
//! merged into one set covering each case once, scored against the original labels; every pair
//! of configurations is also scored as an ensemble (averaged probabilities, written as label
//! maps); the best `foreground_mean` Dice wins ([`select_best`]).
//!
//! Writes nothing but the ensemble label maps; [`CvSelection::write`] writes the ranking files.

use crate::classes::from_labels;
use crate::ensemble::{candidate_pairs, ensemble_name, ensemble_segmentation, select_best, Candidate, Selection};
use crate::error::{EvalError, Result};
use crate::folder::{evaluate_pair, list_segmentations, PROBS_SUFFIX};
use crate::segmentation::{write_segmentation, SegmentationMode};
use crate::summary::{CaseResult, Summary};
use nnunet_io::fsio::nan_as_null;
use nnunet_io::labels::Labels;
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File ending of the segmentations in a validation folder.
pub const SEG_ENDING: &str = ".nii.gz";

/// The merged cross-validation predictions of several configurations.
#[derive(Clone, Debug)]
pub struct CrossValidation {
    /// Configuration names, sorted.
    pub configurations: Vec<String>,
    /// Fold names of the first configuration, sorted (`0`..`4`, or `all`).
    pub folds: Vec<String>,
    /// case id -> configuration -> its validation segmentation.
    predictions: BTreeMap<String, BTreeMap<String, PathBuf>>,
}

impl CrossValidation {
    /// Merges `configuration -> fold -> validation folder`; fails when two folds of one
    /// configuration validate the same case.
    pub fn merge(by_configuration: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> Result<CrossValidation> {
        let mut predictions: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
        for (cfg, fold_dirs) in by_configuration {
            for dir in fold_dirs.values() {
                for name in list_segmentations(dir, SEG_ENDING)? {
                    let id = name.trim_end_matches(SEG_ENDING).to_string();
                    if predictions.entry(id.clone()).or_default().insert(cfg.clone(), dir.join(&name)).is_some() {
                        return Err(EvalError::Invalid(format!(
                            "case {id} is validated in two folds of {cfg}: the folds overlap"
                        )));
                    }
                }
            }
        }
        Ok(CrossValidation {
            configurations: by_configuration.keys().cloned().collect(),
            folds: by_configuration.values().next().map(|f| f.keys().cloned().collect()).unwrap_or_default(),
            predictions,
        })
    }

    /// `(case, prediction)` of every case `cfg` validated.
    pub fn cases_of(&self, cfg: &str) -> Vec<(String, PathBuf)> {
        self.predictions.iter().filter_map(|(id, m)| Some((id.clone(), m.get(cfg)?.clone()))).collect()
    }

    /// `(case, prediction of a, prediction of b)` of every case both validated.
    fn pairs_of(&self, a: &str, b: &str) -> Vec<(String, PathBuf, PathBuf)> {
        self.predictions.iter().filter_map(|(id, m)| Some((id.clone(), m.get(a)?.clone(), m.get(b)?.clone()))).collect()
    }
}

/// The outcome: every candidate (single configurations first, then pair ensembles), the
/// ranking, and for each candidate its merged predictions (case -> file).
pub struct CvSelection {
    pub candidates: Vec<Candidate>,
    pub selection: Selection,
    pub predictions: Vec<BTreeMap<String, PathBuf>>,
    pub folds: Vec<String>,
}

/// What [`select_configuration`] scores against and where ensembles go.
pub struct SelectInputs<'a> {
    pub labels: &'a Labels,
    /// The reference segmentation of a case (None: the case has no label).
    pub reference: &'a (dyn Fn(&str) -> Option<PathBuf> + Sync),
    /// Where pair ensembles are written (`DIR/NAME/CASE.nii.gz`); None: no ensembles.
    pub ensembles_dir: Option<&'a Path>,
    /// Called with what is being scored.
    pub progress: &'a dyn Fn(&str),
}

/// Scores every configuration and (with `ensembles_dir`) every pair ensemble, and ranks them.
pub fn select_configuration(cv: &CrossValidation, inputs: &SelectInputs) -> Result<CvSelection> {
    let classes = from_labels(inputs.labels);
    let ignore = inputs.labels.ignore;
    let reference = |id: &str| -> Result<PathBuf> {
        (inputs.reference)(id)
            .ok_or_else(|| EvalError::Invalid(format!("validation case {id} has no label in the dataset")))
    };
    let score = |pairs: &[(String, PathBuf)]| -> Result<Summary> {
        let results: Vec<CaseResult> = pairs
            .par_iter()
            .map(|(id, p)| evaluate_pair(&reference(id)?, p, &classes, ignore))
            .collect::<Result<_>>()?;
        Ok(Summary::from_cases(classes.clone(), results))
    };
    let mut candidates = Vec::new();
    let mut predictions = Vec::new();
    for cfg in &cv.configurations {
        (inputs.progress)(&format!("scoring {cfg}"));
        let cases = cv.cases_of(cfg);
        candidates.push(Candidate { name: cfg.clone(), members: vec![cfg.clone()], summary: score(&cases)? });
        predictions.push(cases.into_iter().collect());
    }
    if let Some(root) = inputs.ensembles_dir {
        let fold_nums: Vec<usize> = cv.folds.iter().filter_map(|f| f.parse().ok()).collect();
        let cfgs = &cv.configurations;
        for (a, b) in candidate_pairs(cfgs.len()) {
            let name = ensemble_name(&cfgs[a], &cfgs[b], &fold_nums);
            (inputs.progress)(&format!("scoring {name}"));
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).map_err(|source| EvalError::Io { path: dir.clone(), source })?;
            let written: Vec<(String, PathBuf)> = cv
                .pairs_of(&cfgs[a], &cfgs[b])
                .par_iter()
                .map(|(id, pa, pb)| {
                    let out = dir.join(format!("{id}{SEG_ENDING}"));
                    ensemble_pair(pa, pb, inputs.labels, &out)?;
                    Ok((id.clone(), out))
                })
                .collect::<Result<_>>()?;
            candidates.push(Candidate {
                name,
                members: vec![cfgs[a].clone(), cfgs[b].clone()],
                summary: score(&written)?,
            });
            predictions.push(written.into_iter().collect());
        }
    }
    let selection = select_best(&candidates)?;
    Ok(CvSelection { candidates, selection, predictions, folds: cv.folds.clone() })
}

impl CvSelection {
    /// The winning candidate.
    pub fn best(&self) -> &Candidate {
        &self.candidates[self.selection.best]
    }

    /// The winner's merged predictions (case -> file).
    pub fn best_predictions(&self) -> &BTreeMap<String, PathBuf> {
        &self.predictions[self.selection.best]
    }

    /// Writes `summary_NAME.json` per candidate, `ranking.json`, `ranking.parquet` and
    /// `chosen.json` (`name`, `members`, `folds`, `foreground_dice`) into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        for c in &self.candidates {
            c.summary.write_json(&out.join(format!("summary_{}.json", c.name)))?;
        }
        let ranking: Vec<serde_json::Value> = self
            .selection
            .ranking
            .iter()
            .map(|r| {
                json!({
                    "rank": r.rank,
                    "name": r.name,
                    "members": r.members,
                    "foreground_dice": nan_as_null::value(r.foreground_dice),
                    "dice": r.class_dice.iter().map(|(k, v)| (k.clone(), nan_as_null::value(*v))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        write_json(&out.join("ranking.json"), &ranking)?;
        self.selection.to_table().write_parquet(&out.join("ranking.parquet"))?;
        let best = self.best();
        write_json(
            &out.join("chosen.json"),
            &json!({"name": best.name, "members": best.members, "folds": self.folds, "foreground_dice": nan_as_null::value(best.summary.foreground_dice())}),
        )
    }
}

fn write_json<T: serde::Serialize + ?Sized>(path: &Path, v: &T) -> Result<()> {
    nnunet_io::fsio::write_json(path, v).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })
}

/// The probabilities stored beside a validation segmentation (`CASE.probs.zarr`).
pub fn probabilities_path(segmentation: &Path) -> PathBuf {
    let s = segmentation.to_string_lossy();
    PathBuf::from(format!("{}{PROBS_SUFFIX}", s.strip_suffix(SEG_ENDING).unwrap_or(&s)))
}

/// Averages the stored probabilities of two predictions of one case and writes the label map.
fn ensemble_pair(a: &Path, b: &Path, labels: &Labels, out: &Path) -> Result<()> {
    let probs = |p: &Path| -> Result<(Vec<f32>, Vec<usize>)> {
        let z = probabilities_path(p);
        let bad = |e: &dyn std::fmt::Display| {
            EvalError::Invalid(format!(
                "probabilities of {} ({}): {e} (train with validate: true)",
                p.display(),
                z.display()
            ))
        };
        let arr = nnunet_io::zarr::ZarrArray::open(&z).map_err(|e| bad(&e))?;
        Ok((arr.read_all::<f32>().map_err(|e| bad(&e))?, arr.shape.clone()))
    };
    let (pa, sa) = probs(a)?;
    let (pb, sb) = probs(b)?;
    if sa != sb || sa.len() != 4 {
        return Err(EvalError::Invalid(format!(
            "probabilities of {} and {} have different shapes {sa:?} / {sb:?}",
            a.display(),
            b.display()
        )));
    }
    let mode = SegmentationMode::of_labels(labels);
    let (_, seg) = ensemble_segmentation(&[&pa, &pb], sa[0], [sa[1], sa[2], sa[3]], &mode)?;
    let header = nnunet_io::image::read_header(a)?;
    write_segmentation(out, &seg, &header, labels.foreground_labels().len())
}

//! Model selection (reference §10.1, `find_best_configuration`): every single configuration
//! and every unordered pair (ensemble) is scored by its cross-validation `foreground_mean`
//! Dice; the maximum wins, ties going to the earlier candidate (single configurations are
//! listed before ensembles). Plus the probability averaging used to build pair ensembles.

use crate::error::{EvalError, Result};
use crate::segmentation::{scores_to_segmentation, ScoreKind, SegmentationMode};
use crate::summary::Summary;
use nnunet_io::table::{Column, Table};
use nnunet_io::Volume;
use serde::{Deserialize, Serialize};

/// A model or ensemble to rank.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// e.g. `nnUNetTrainer__nnUNetPlans__3d_fullres` or `ensemble___A___B___0_1_2_3_4`.
    pub name: String,
    /// The configurations it is made of (one, or two for a pair ensemble).
    pub members: Vec<String>,
    /// Its cross-validation summary (all CV cases re-scored together).
    pub summary: Summary,
}

/// One row of the ranking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankRow {
    pub rank: usize,
    pub name: String,
    pub members: Vec<String>,
    pub is_ensemble: bool,
    /// `foreground_mean.Dice` (NaN ranks last).
    pub foreground_dice: f64,
    /// Mean Dice per class key.
    pub class_dice: Vec<(String, f64)>,
}

/// The ranking and the winner.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Best first; equal scores keep the candidates' input order.
    pub ranking: Vec<RankRow>,
    /// Index into the input candidates of the winner.
    pub best: usize,
}

impl Selection {
    pub fn best_row(&self) -> &RankRow {
        &self.ranking[0]
    }

    /// The ranking as a table: `rank`, `name`, `members` (`+`-joined), `is_ensemble`,
    /// `foreground_dice`, and one `dice_<key>` column per class.
    pub fn to_table(&self) -> Table {
        let mut t = Table::new()
            .with("rank", Column::I64(self.ranking.iter().map(|r| r.rank as i64).collect()))
            .with("name", Column::Str(self.ranking.iter().map(|r| r.name.clone()).collect()))
            .with("members", Column::Str(self.ranking.iter().map(|r| r.members.join("+")).collect()))
            .with("is_ensemble", Column::Bool(self.ranking.iter().map(|r| r.is_ensemble).collect()))
            .with("foreground_dice", Column::F64(self.ranking.iter().map(|r| r.foreground_dice).collect()));
        if let Some(first) = self.ranking.first() {
            for (i, (key, _)) in first.class_dice.iter().enumerate() {
                let col = self
                    .ranking
                    .iter()
                    .map(|r| r.class_dice.get(i).filter(|(k, _)| k == key).map_or(f64::NAN, |(_, v)| *v))
                    .collect();
                t = t.with(&format!("dice_{key}"), Column::F64(col));
            }
        }
        t
    }
}

/// nnU-Net's ensemble folder name: `ensemble___{A}___{B}___{folds joined by _}`.
pub fn ensemble_name(a: &str, b: &str, folds: &[usize]) -> String {
    let f: Vec<String> = folds.iter().map(|f| f.to_string()).collect();
    format!("ensemble___{a}___{b}___{}", f.join("_"))
}

/// Every unordered pair `(i, j)`, `i < j`, in nnU-Net's loop order.
pub fn candidate_pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect()
}

/// Ranks candidates by `foreground_mean` Dice and picks the maximum (§10.1). NaN scores rank
/// last (nnU-Net would crash on them). Ties keep the input order, so list single
/// configurations before ensembles.
pub fn select_best(candidates: &[Candidate]) -> Result<Selection> {
    if candidates.is_empty() {
        return Err(EvalError::Invalid("no candidates to select from".into()));
    }
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    let score = |i: usize| {
        let d = candidates[i].summary.foreground_dice();
        if d.is_nan() {
            f64::NEG_INFINITY
        } else {
            d
        }
    };
    // Stable sort, descending.
    order.sort_by(|&a, &b| score(b).partial_cmp(&score(a)).unwrap_or(std::cmp::Ordering::Equal));
    let ranking = order
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let c = &candidates[i];
            RankRow {
                rank: rank + 1,
                name: c.name.clone(),
                members: c.members.clone(),
                is_ensemble: c.members.len() > 1,
                foreground_dice: c.summary.foreground_dice(),
                class_dice: c.summary.classes.iter().zip(&c.summary.mean).map(|(k, m)| (k.key(), m.dice)).collect(),
            }
        })
        .collect();
    Ok(Selection { ranking, best: order[0] })
}

/// Element-wise mean of equally shaped probability arrays (`average_probabilities`:
/// accumulated in f32 in input order, then divided by the count).
pub fn average_probabilities(inputs: &[&[f32]]) -> Result<Vec<f32>> {
    let first = inputs.first().ok_or_else(|| EvalError::Invalid("no probabilities to average".into()))?;
    if let Some((i, p)) = inputs.iter().enumerate().find(|(_, p)| p.len() != first.len()) {
        return Err(EvalError::Invalid(format!(
            "probability array {i} has {} values, array 0 has {}",
            p.len(),
            first.len()
        )));
    }
    let mut avg = first.to_vec();
    for p in &inputs[1..] {
        for (a, &v) in avg.iter_mut().zip(p.iter()) {
            *a += v;
        }
    }
    let n = inputs.len() as f32;
    avg.iter_mut().for_each(|a| *a /= n);
    Ok(avg)
}

/// Averages the probabilities of the ensemble members and converts them to a label map
/// (argmax, or region thresholding at 0.5 in `regions_class_order`), as `merge_files` does.
pub fn ensemble_segmentation(
    inputs: &[&[f32]],
    num_channels: usize,
    shape: [usize; 3],
    mode: &SegmentationMode,
) -> Result<(Vec<f32>, Volume<i16>)> {
    let avg = average_probabilities(inputs)?;
    let seg = scores_to_segmentation(&avg, num_channels, shape, mode, ScoreKind::Probabilities)?;
    Ok((avg, seg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::labels;
    use crate::metrics::Metrics;
    use crate::summary::CaseResult;

    fn summary(dice_per_class: &[(u64, u64, u64)]) -> Summary {
        let m: Vec<Metrics> =
            dice_per_class.iter().map(|&(tp, fp, fn_)| Metrics::from_counts(tp, fp, fn_, 5)).collect();
        Summary::from_cases(
            labels(&(1..=m.len() as i32).collect::<Vec<_>>()),
            vec![CaseResult { prediction_file: "a".into(), reference_file: "a".into(), metrics: m }],
        )
    }

    #[test]
    fn picks_max_with_ties_to_first_and_nan_last() {
        let c = |name: &str, members: &[&str], s| Candidate {
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            summary: s,
        };
        let cands = vec![
            c("2d", &["2d"], summary(&[(1, 1, 0), (1, 0, 0)])), // (2/3 + 1)/2
            c("3d", &["3d"], summary(&[(1, 0, 0), (1, 1, 0)])), // same score: tie
            c("nan", &["x"], summary(&[(0, 0, 0), (1, 0, 0)])), // NaN
            c(&ensemble_name("2d", "3d", &[0, 1]), &["2d", "3d"], summary(&[(1, 1, 0), (2, 1, 0)])),
        ];
        let s = select_best(&cands).unwrap();
        assert_eq!(s.best, 0, "tie goes to the first candidate");
        assert_eq!(
            s.ranking.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["2d", "3d", "ensemble___2d___3d___0_1", "nan"]
        );
        assert_eq!(s.ranking[0].rank, 1);
        let t = s.to_table();
        assert_eq!(t.nrows(), 4);
        assert!(t.f64("dice_1").is_ok());
        assert_eq!(candidate_pairs(3), vec![(0, 1), (0, 2), (1, 2)]);
    }

    #[test]
    fn averaging_and_argmax() {
        let a = [0.8f32, 0.3, 0.2, 0.7];
        let b = [0.2f32, 0.5, 0.8, 0.5];
        let (avg, seg) = ensemble_segmentation(&[&a, &b], 2, [1, 1, 2], &SegmentationMode::Labels).unwrap();
        for (x, y) in avg.iter().zip([0.5f32, 0.4, 0.5, 0.6]) {
            assert!((x - y).abs() < 1e-6);
        }
        assert_eq!(seg.data, vec![0, 1]); // voxel 0 ties 0.5/0.5 -> background
        assert!(average_probabilities(&[&a, &b[..3]]).is_err());
    }
}

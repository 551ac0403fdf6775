//! Per-case metrics (reference §11, `compute_metrics`): TP, FP, FN, TN on boolean masks of
//! each label or region, ignore-label voxels excluded, Dice / IoU NaN when `TP+FP+FN == 0`.
//!
//! One pass over the voxels builds a histogram of (reference, prediction) value pairs; every
//! class' counts are sums over that histogram, so the cost does not grow with the number of
//! classes or region sizes.

use crate::classes::LabelOrRegion;
use std::collections::HashMap;

/// Metrics of one class in one case, nnU-Net's names in `summary.json`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// `2TP / (2TP + FP + FN)`, NaN when `TP + FP + FN == 0`.
    pub dice: f64,
    /// `TP / (TP + FP + FN)`, NaN when `TP + FP + FN == 0`.
    pub iou: f64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    /// `TP + FP`.
    pub n_pred: u64,
    /// `TP + FN`.
    pub n_ref: u64,
}

impl Metrics {
    /// Metrics from the four counts (§11 empty handling: NaN Dice/IoU for empty-empty).
    pub fn from_counts(tp: u64, fp: u64, fn_: u64, tn: u64) -> Metrics {
        let (dice, iou) = if tp + fp + fn_ == 0 {
            (f64::NAN, f64::NAN)
        } else {
            let (t, p, n) = (tp as f64, fp as f64, fn_ as f64);
            (2.0 * t / (2.0 * t + p + n), t / (t + p + n))
        };
        Metrics { dice, iou, tp, fp, fn_, tn, n_pred: tp + fp, n_ref: tp + fn_ }
    }
}

/// Counts of `(reference value, prediction value)` pairs over the voxels not ignored.
#[derive(Clone, Debug, Default)]
pub struct PairHistogram {
    pub pairs: Vec<(i32, i32, u64)>,
}

impl PairHistogram {
    /// Builds the histogram; voxels whose reference equals `ignore` are skipped (§11).
    /// `reference` and `prediction` must have the same length (checked by the caller).
    pub fn build(reference: &[i16], prediction: &[i16], ignore: Option<i32>) -> PairHistogram {
        debug_assert_eq!(reference.len(), prediction.len());
        let range = |v: &[i16]| v.iter().fold((i16::MAX, i16::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let (rlo, rhi) = range(reference);
        let (plo, phi) = range(prediction);
        if reference.is_empty() {
            return PairHistogram::default();
        }
        let rn = (rhi as i32 - rlo as i32 + 1) as usize;
        let pn = (phi as i32 - plo as i32 + 1) as usize;
        let ign = ignore.and_then(|i| i16::try_from(i).ok());
        let mut pairs = Vec::new();
        if rn * pn <= 1 << 16 {
            let mut h = vec![0u64; rn * pn];
            let (rlo, plo) = (rlo as i32, plo as i32);
            match ign {
                Some(ig) => {
                    for (&r, &p) in reference.iter().zip(prediction) {
                        if r != ig {
                            h[(r as i32 - rlo) as usize * pn + (p as i32 - plo) as usize] += 1;
                        }
                    }
                }
                None => {
                    for (&r, &p) in reference.iter().zip(prediction) {
                        h[(r as i32 - rlo) as usize * pn + (p as i32 - plo) as usize] += 1;
                    }
                }
            }
            for (i, &c) in h.iter().enumerate() {
                if c > 0 {
                    pairs.push(((i / pn) as i32 + rlo, (i % pn) as i32 + plo, c));
                }
            }
        } else {
            let mut m: HashMap<(i16, i16), u64> = HashMap::new();
            for (&r, &p) in reference.iter().zip(prediction) {
                if Some(r) != ign {
                    *m.entry((r, p)).or_default() += 1;
                }
            }
            pairs.extend(m.into_iter().map(|((r, p), c)| (r as i32, p as i32, c)));
            pairs.sort_unstable();
        }
        PairHistogram { pairs }
    }

    /// TP, FP, FN, TN of one class.
    pub fn counts(&self, class: &LabelOrRegion) -> (u64, u64, u64, u64) {
        let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
        for &(r, p, c) in &self.pairs {
            match (class.contains(r), class.contains(p)) {
                (true, true) => tp += c,
                (false, true) => fp += c,
                (true, false) => fn_ += c,
                (false, false) => tn += c,
            }
        }
        (tp, fp, fn_, tn)
    }

    /// Metrics of every class, in order.
    pub fn metrics(&self, classes: &[LabelOrRegion]) -> Vec<Metrics> {
        classes
            .iter()
            .map(|c| {
                let (tp, fp, fn_, tn) = self.counts(c);
                Metrics::from_counts(tp, fp, fn_, tn)
            })
            .collect()
    }
}

/// Metrics of every class for one case. The slices must have equal length.
pub fn case_metrics(
    reference: &[i16],
    prediction: &[i16],
    classes: &[LabelOrRegion],
    ignore: Option<i32>,
) -> Vec<Metrics> {
    PairHistogram::build(reference, prediction, ignore).metrics(classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::labels;

    #[test]
    fn hand_computed_counts() {
        // ref:  0 1 1 2 2 0
        // pred: 0 1 2 2 0 1
        let r = [0, 1, 1, 2, 2, 0];
        let p = [0, 1, 2, 2, 0, 1];
        let m = case_metrics(&r, &p, &labels(&[1, 2]), None);
        // label 1: TP=1 (i1), FP=1 (i5), FN=1 (i2), TN=3
        assert_eq!((m[0].tp, m[0].fp, m[0].fn_, m[0].tn), (1, 1, 1, 3));
        assert_eq!(m[0].dice, 2.0 / 4.0);
        assert_eq!(m[0].iou, 1.0 / 3.0);
        assert_eq!((m[0].n_pred, m[0].n_ref), (2, 2));
        // label 2: TP=1 (i3), FP=1 (i2), FN=1 (i4), TN=3
        assert_eq!((m[1].tp, m[1].fp, m[1].fn_, m[1].tn), (1, 1, 1, 3));
        // region (1, 2): ref mask 0 1 1 1 1 0, pred mask 0 1 1 1 0 1 -> TP 3, FP 1, FN 1, TN 1
        let m = case_metrics(&r, &p, &[LabelOrRegion::Region(vec![1, 2])], None);
        assert_eq!((m[0].tp, m[0].fp, m[0].fn_, m[0].tn), (3, 1, 1, 1));
        assert_eq!(m[0].dice, 6.0 / 8.0);
    }

    #[test]
    fn empty_empty_is_nan_and_fp_on_empty_is_zero() {
        let r = [0i16; 5];
        let m = case_metrics(&r, &[0; 5], &labels(&[1]), None);
        assert!(m[0].dice.is_nan() && m[0].iou.is_nan());
        assert_eq!(m[0].tn, 5);
        let m = case_metrics(&r, &[0, 1, 0, 0, 0], &labels(&[1]), None);
        assert_eq!(m[0].dice, 0.0);
        assert_eq!(m[0].fp, 1);
    }

    #[test]
    fn ignore_label_voxels_are_excluded() {
        // ignore = 3: voxels 2 and 3 are dropped from every count, TN included.
        let r = [1, 1, 3, 3, 0];
        let p = [1, 0, 1, 0, 1];
        let m = case_metrics(&r, &p, &labels(&[1]), Some(3));
        assert_eq!((m[0].tp, m[0].fp, m[0].fn_, m[0].tn), (1, 1, 1, 0));
        let m = case_metrics(&r, &p, &labels(&[1]), None);
        assert_eq!((m[0].tp, m[0].fp, m[0].fn_, m[0].tn), (1, 2, 1, 1));
    }

    #[test]
    fn sparse_values_use_the_map_path() {
        let r = [-30000i16, 30000, 1, 1];
        let p = [30000i16, 30000, 1, -30000];
        let m = case_metrics(&r, &p, &labels(&[1, 30000]), None);
        assert_eq!((m[0].tp, m[0].fp, m[0].fn_, m[0].tn), (1, 0, 1, 2));
        assert_eq!((m[1].tp, m[1].fp, m[1].fn_, m[1].tn), (1, 1, 0, 2));
    }
}

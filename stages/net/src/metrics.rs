//! The validation pseudo Dice (§7.2): TP/FP/FN summed over all validation patches and voxels
//! per foreground class (argmax of the highest-resolution output) or region (sigmoid > 0.5),
//! ignore-label voxels excluded; `dice = 2TP / (2TP + FP + FN)`, NaN when the class never
//! occurs nor is predicted; the mean is a nanmean.

use crate::loss::LabelMode;
use tch::{Device, Kind, Tensor};

/// Global TP/FP/FN per foreground class or region.
#[derive(Clone, Debug, PartialEq)]
pub struct DiceCounts {
    pub tp: Vec<f64>,
    pub fp: Vec<f64>,
    pub fn_: Vec<f64>,
}

impl DiceCounts {
    pub fn new(n: usize) -> DiceCounts {
        DiceCounts { tp: vec![0.0; n], fp: vec![0.0; n], fn_: vec![0.0; n] }
    }

    /// Adds one batch: `out` logits `[B, C, ...]`, `target` label map `[B, ...]`.
    pub fn add(&mut self, out: &Tensor, target: &Tensor, mode: &LabelMode) {
        let nd = out.dim() as i64;
        let axes: Vec<i64> = std::iter::once(0).chain(2..nd).collect();
        let pred = match mode {
            LabelMode::Labels { num_classes, .. } => {
                let mut perm = vec![0i64, nd - 1];
                perm.extend(1..nd - 1);
                out.argmax(1, false).one_hot(*num_classes).permute(perm.as_slice()).to_kind(Kind::Float)
            }
            LabelMode::Regions { .. } => out.gt(0.0).to_kind(Kind::Float),
        };
        let gt = mode.one_hot(target);
        let (pred, gt) = match mode.mask(target) {
            Some(m) => (pred * &m, gt * m),
            None => (pred, gt),
        };
        let sum = |t: Tensor| -> Vec<f64> {
            Vec::<f64>::try_from(&t.sum_dim_intlist(axes.as_slice(), false, Kind::Double).to_device(Device::Cpu))
                .unwrap_or_default()
        };
        let both = &pred * &gt;
        let tp = sum(both.shallow_clone());
        let fp = sum(&pred - &both);
        let fn_ = sum(&gt - &both);
        // Plain labels: background (channel 0) is not counted.
        let skip = usize::from(!mode.is_regions());
        for k in 0..self.tp.len() {
            self.tp[k] += tp.get(k + skip).copied().unwrap_or(0.0);
            self.fp[k] += fp.get(k + skip).copied().unwrap_or(0.0);
            self.fn_[k] += fn_.get(k + skip).copied().unwrap_or(0.0);
        }
    }

    /// Dice per class (NaN for 0/0).
    pub fn dice(&self) -> Vec<f64> {
        (0..self.tp.len()).map(|k| 2.0 * self.tp[k] / (2.0 * self.tp[k] + self.fp[k] + self.fn_[k])).collect()
    }
}

/// Mean of the non-NaN values (NaN if none).
pub fn nanmean(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if f.is_empty() {
        f64::NAN
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits_for(pred: &[i64], c: i64) -> Tensor {
        // One-hot logits [1, C, N] (×10) from a predicted label per voxel.
        let t = Tensor::from_slice(pred).reshape([1, pred.len() as i64]);
        t.one_hot(c).permute([0, 2, 1]).to_kind(Kind::Float) * 10.0
    }

    #[test]
    fn labels_with_ignore() {
        let mode = LabelMode::Labels { num_classes: 3, ignore: Some(3) };
        let mut d = DiceCounts::new(2);
        // pred:   1 1 2 0 2 1
        // target: 1 0 2 2 3 3   (last two ignored)
        let out = logits_for(&[1, 1, 2, 0, 2, 1], 3);
        let tgt = Tensor::from_slice(&[1i64, 0, 2, 2, 3, 3]).reshape([1, 6]);
        d.add(&out, &tgt, &mode);
        assert_eq!(d.tp, vec![1.0, 1.0]);
        assert_eq!(d.fp, vec![1.0, 0.0]);
        assert_eq!(d.fn_, vec![0.0, 1.0]);
        let dice = d.dice();
        assert!((dice[0] - 2.0 / 3.0).abs() < 1e-12 && (dice[1] - 2.0 / 3.0).abs() < 1e-12);
        // A second batch accumulates globally.
        d.add(&out, &tgt, &mode);
        assert_eq!(d.tp, vec![2.0, 2.0]);
        assert!(nanmean(&[f64::NAN, 0.5, 1.0]) == 0.75 && nanmean(&[f64::NAN]).is_nan());
        assert!(DiceCounts::new(1).dice()[0].is_nan());
    }

    #[test]
    fn regions() {
        let mode = LabelMode::Regions { regions: vec![vec![1, 2], vec![2]], ignore: None };
        let mut d = DiceCounts::new(2);
        // Logits > 0 predict the region. Voxels: target labels 0, 1, 2.
        let out = Tensor::from_slice(&[1.0f32, 1.0, -1.0, -1.0, -1.0, 1.0]).reshape([1, 2, 3]);
        let tgt = Tensor::from_slice(&[0i64, 1, 2]).reshape([1, 3]);
        d.add(&out, &tgt, &mode);
        // Region {1,2}: pred [1,1,0], gt [0,1,1] -> tp 1, fp 1, fn 1. Region {2}: pred [0,0,1], gt [0,0,1].
        assert_eq!(d.tp, vec![1.0, 1.0]);
        assert_eq!(d.fp, vec![1.0, 0.0]);
        assert_eq!(d.fn_, vec![1.0, 0.0]);
    }
}

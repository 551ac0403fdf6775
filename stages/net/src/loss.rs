//! Segmentation losses (§7.1).
//!
//! - Plain labels: `DC_and_CE_loss` = CE (weight 1) + memory-efficient soft Dice on the softmax
//!   (weight 1, `do_bg = False`, smooth 1e-5, `batch_dice` from the plans). The Dice term is
//!   `−mean(dc)`, so loss values are negative.
//! - Regions: `DC_and_BCE_loss` = BCEWithLogits + soft Dice on the sigmoid (`do_bg = True`).
//! - Ignore label: CE with `ignore_index`, Dice masked, and the CE term skipped when a batch has
//!   no annotated voxel; regions: BCE and Dice masked.
//! - Deep supervision: weights `1/2^i`, the lowest resolution's set to 0, normalised to sum 1.
//!   The targets per scale are computed in the data pipeline (nearest-exact, §8.2 step 15).
//!
//! Targets are label maps `[B, *spatial]` (i64, or any integer kind), one per output.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// §7.1 soft Dice smoothing.
pub const DICE_SMOOTH: f64 = 1e-5;

/// Which terms the loss has (ablation axis; nnU-Net's DiceLoss / CELoss trainer variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// CE (or BCE for regions) + soft Dice, weights 1 and 1 (nnU-Net default).
    #[default]
    DiceCe,
    /// CE (BCE) only.
    Ce,
    /// Soft Dice only.
    Dice,
}

/// How the target label map maps to the network's output channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelMode {
    /// Softmax over `num_classes` channels (background included); `ignore` is the label value
    /// excluded from the loss (nnU-Net: max label + 1).
    Labels { num_classes: i64, ignore: Option<i64> },
    /// One sigmoid channel per region (a region = union of label values).
    Regions { regions: Vec<Vec<i64>>, ignore: Option<i64> },
}

impl LabelMode {
    /// From a dataset's labels: regions when any entry is a multi-label region.
    pub fn from_labels(labels: &nnunet_io::labels::Labels) -> LabelMode {
        let ignore = labels.ignore.map(i64::from);
        if labels.has_regions() {
            let regions =
                labels.foreground_regions().into_iter().map(|r| r.into_iter().map(i64::from).collect()).collect();
            LabelMode::Regions { regions, ignore }
        } else {
            LabelMode::Labels { num_classes: labels.num_segmentation_heads() as i64, ignore }
        }
    }
    /// Number of network output channels.
    pub fn num_outputs(&self) -> i64 {
        match self {
            LabelMode::Labels { num_classes, .. } => *num_classes,
            LabelMode::Regions { regions, .. } => regions.len() as i64,
        }
    }
    pub fn ignore(&self) -> Option<i64> {
        match self {
            LabelMode::Labels { ignore, .. } | LabelMode::Regions { ignore, .. } => *ignore,
        }
    }
    pub fn is_regions(&self) -> bool {
        matches!(self, LabelMode::Regions { .. })
    }

    /// Binary target channels `[B, R, *spatial]` (f32) of a label map, for region mode; for
    /// label mode the one-hot `[B, C, *spatial]` (ignored voxels mapped to background).
    pub fn one_hot(&self, target: &Tensor) -> Tensor {
        let t = target.to_kind(Kind::Int64);
        match self {
            LabelMode::Labels { num_classes, ignore } => {
                let t = match ignore {
                    Some(i) => t.where_scalarother(&t.ne(*i), 0),
                    None => t,
                };
                let nd = t.dim() as i64;
                let mut perm = vec![0i64, nd];
                perm.extend(1..nd);
                t.clamp(0, num_classes - 1).one_hot(*num_classes).permute(perm.as_slice()).to_kind(Kind::Float)
            }
            LabelMode::Regions { regions, .. } => {
                let chans: Vec<Tensor> = regions
                    .iter()
                    .map(|r| {
                        let vals = Tensor::from_slice(r).to_device(t.device());
                        Tensor::isin(&t, &vals, false, false).to_kind(Kind::Float)
                    })
                    .collect();
                Tensor::stack(&chans, 1)
            }
        }
    }

    /// Annotated-voxel mask `[B, 1, *spatial]` (f32), `None` without an ignore label.
    pub fn mask(&self, target: &Tensor) -> Option<Tensor> {
        self.ignore().map(|i| target.ne(i).unsqueeze(1).to_kind(Kind::Float))
    }
}

/// nnU-Net's `MemoryEfficientSoftDiceLoss` on probabilities `x` `[B, C, ...]` against the
/// one-hot `y` (same shape), optionally masked `[B, 1, ...]`. Returns `−mean(dc)`.
pub fn soft_dice(x: &Tensor, y: &Tensor, mask: Option<&Tensor>, do_bg: bool, batch_dice: bool, smooth: f64) -> Tensor {
    let c = x.size()[1];
    let (x, y) = if do_bg || c == 1 {
        (x.shallow_clone(), y.shallow_clone())
    } else {
        (x.narrow(1, 1, c - 1), y.narrow(1, 1, c - 1))
    };
    let axes: Vec<i64> = (2..x.dim() as i64).collect();
    let (intersect, sum_pred, sum_gt) = match mask {
        None => (
            (&x * &y).sum_dim_intlist(axes.as_slice(), false, Kind::Float),
            x.sum_dim_intlist(axes.as_slice(), false, Kind::Float),
            y.sum_dim_intlist(axes.as_slice(), false, Kind::Float),
        ),
        Some(m) => (
            (&x * &y * m).sum_dim_intlist(axes.as_slice(), false, Kind::Float),
            (&x * m).sum_dim_intlist(axes.as_slice(), false, Kind::Float),
            (&y * m).sum_dim_intlist(axes.as_slice(), false, Kind::Float),
        ),
    };
    let (intersect, sum_pred, sum_gt) = if batch_dice {
        (
            intersect.sum_dim_intlist(0, false, Kind::Float),
            sum_pred.sum_dim_intlist(0, false, Kind::Float),
            sum_gt.sum_dim_intlist(0, false, Kind::Float),
        )
    } else {
        (intersect, sum_pred, sum_gt)
    };
    let dc = (intersect * 2.0 + smooth) / (sum_gt + sum_pred + smooth).clamp_min(1e-8);
    -dc.mean(Kind::Float)
}

/// The loss of one output against one target label map.
#[derive(Clone, Debug)]
pub struct SegLoss {
    pub kind: LossKind,
    pub mode: LabelMode,
    pub batch_dice: bool,
    pub smooth: f64,
}

impl SegLoss {
    pub fn new(kind: LossKind, mode: LabelMode, batch_dice: bool) -> SegLoss {
        SegLoss { kind, mode, batch_dice, smooth: DICE_SMOOTH }
    }

    /// `logits` `[B, C, *spatial]`, `target` `[B, *spatial]` (integer label map).
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Tensor {
        let logits = if logits.kind() != Kind::Float { logits.to_kind(Kind::Float) } else { logits.shallow_clone() };
        let target = target.to_kind(Kind::Int64);
        let use_dice = self.kind != LossKind::Ce;
        let use_ce = self.kind != LossKind::Dice;
        let mask = self.mode.mask(&target);
        match &self.mode {
            LabelMode::Labels { ignore, .. } => {
                let mut total: Option<Tensor> = None;
                if use_dice {
                    let probs = logits.softmax(1, Kind::Float);
                    let y = self.mode.one_hot(&target);
                    total = Some(soft_dice(&probs, &y, mask.as_ref(), false, self.batch_dice, self.smooth));
                }
                if use_ce {
                    // §7.1: the CE term is skipped when a batch has no annotated voxel.
                    let annotated = match (ignore, &mask) {
                        (Some(_), Some(m)) => m.sum(Kind::Float).double_value(&[]) > 0.0,
                        _ => true,
                    };
                    if annotated {
                        let ce = logits.cross_entropy_loss(
                            &target,
                            None::<&Tensor>,
                            Reduction::Mean,
                            ignore.unwrap_or(-100),
                            0.0,
                        );
                        total = Some(match total {
                            Some(t) => t + ce,
                            None => ce,
                        });
                    }
                }
                total.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, logits.device())))
            }
            LabelMode::Regions { .. } => {
                let y = self.mode.one_hot(&target);
                let mut total: Option<Tensor> = None;
                if use_dice {
                    let probs = logits.sigmoid();
                    total = Some(soft_dice(&probs, &y, mask.as_ref(), true, self.batch_dice, self.smooth));
                }
                if use_ce {
                    let bce = match &mask {
                        Some(m) => {
                            let l = logits.binary_cross_entropy_with_logits(
                                &y,
                                None::<&Tensor>,
                                None::<&Tensor>,
                                Reduction::None,
                            );
                            // nnU-Net divides the channel-summed masked BCE by the annotated voxel count.
                            (l * m).sum(Kind::Float) / m.sum(Kind::Float).clamp_min(1e-8)
                        }
                        None => logits.binary_cross_entropy_with_logits(
                            &y,
                            None::<&Tensor>,
                            None::<&Tensor>,
                            Reduction::Mean,
                        ),
                    };
                    total = Some(match total {
                        Some(t) => t + bce,
                        None => bce,
                    });
                }
                total.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, logits.device())))
            }
        }
    }
}

/// §7.1 deep-supervision weights for `n` outputs: `1/2^i`, the last set to 0, normalised.
/// One output gets weight 1.
pub fn deep_supervision_weights(n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![1.0; n];
    }
    let mut w: Vec<f64> = (0..n).map(|i| 1.0 / 2f64.powi(i as i32)).collect();
    w[n - 1] = 0.0;
    let s: f64 = w.iter().sum();
    w.iter().map(|x| x / s).collect()
}

/// Weighted sum of [`SegLoss`] over the deep-supervision outputs (terms with weight 0 skipped).
#[derive(Clone, Debug)]
pub struct DeepSupervisionLoss {
    pub loss: SegLoss,
    pub weights: Vec<f64>,
}

impl DeepSupervisionLoss {
    pub fn new(loss: SegLoss, n_outputs: usize) -> Self {
        DeepSupervisionLoss { loss, weights: deep_supervision_weights(n_outputs) }
    }

    /// `outputs[i]` against `targets[i]` (same order: highest resolution first).
    pub fn forward(&self, outputs: &[Tensor], targets: &[Tensor]) -> Tensor {
        let mut total: Option<Tensor> = None;
        for ((o, t), &w) in outputs.iter().zip(targets).zip(&self.weights) {
            if w == 0.0 {
                continue;
            }
            let l = self.loss.forward(o, t) * w;
            total = Some(match total {
                Some(x) => x + l,
                None => l,
            });
        }
        total.unwrap_or_else(|| {
            Tensor::zeros([], (Kind::Float, outputs.first().map_or(tch::Device::Cpu, |o| o.device())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).reshape(shape)
    }
    fn lab(v: &[i64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).reshape(shape)
    }
    fn val(x: &Tensor) -> f64 {
        x.double_value(&[])
    }

    #[test]
    fn dice_ce_hand_computed() {
        // Uniform logits: p = 0.5 everywhere. Target [0, 1]: fg Dice = (2*0.5 + s) / (1 + 1 + s),
        // CE = ln 2.
        let logits = t(&[0.0; 4], &[1, 2, 2]);
        let target = lab(&[0, 1], &[1, 2]);
        let l = SegLoss::new(LossKind::DiceCe, LabelMode::Labels { num_classes: 2, ignore: None }, false);
        let dc = (1.0 + 1e-5) / (2.0 + 1e-5);
        let expect = -dc + std::f64::consts::LN_2;
        assert!((val(&l.forward(&logits, &target)) - expect).abs() < 1e-6);
        let l = SegLoss::new(LossKind::Dice, LabelMode::Labels { num_classes: 2, ignore: None }, false);
        assert!((val(&l.forward(&logits, &target)) + dc).abs() < 1e-6);
        let l = SegLoss::new(LossKind::Ce, LabelMode::Labels { num_classes: 2, ignore: None }, false);
        assert!((val(&l.forward(&logits, &target)) - std::f64::consts::LN_2).abs() < 1e-6);
    }

    #[test]
    fn dice_with_confident_logits_and_batch_dice() {
        // Two samples, 3 classes, 2 voxels each; logits strongly favour class 1 everywhere.
        let mut v = vec![];
        for _ in 0..2 {
            v.extend_from_slice(&[-20.0f32, -20.0, 20.0, 20.0, -20.0, -20.0]);
        }
        let logits = t(&v, &[2, 3, 2]);
        // Sample 0 target [1, 1]; sample 1 target [1, 2].
        let target = lab(&[1, 1, 1, 2], &[2, 2]);
        let mode = LabelMode::Labels { num_classes: 3, ignore: None };
        let s = 1e-5;
        // Per sample: class 1: s0 I=2, P=2, G=2 -> (4+s)/(4+s)=1; class 2: I=0,P=0,G=0 -> s/s = 1.
        // s1: class1 I=1, P=2, G=1 -> (2+s)/(3+s); class2 I=0, P=0, G=1 -> s/(1+s).
        let per = (1.0 + 1.0 + (2.0 + s) / (3.0 + s) + s / (1.0 + s)) / 4.0;
        let l = SegLoss::new(LossKind::Dice, mode.clone(), false);
        assert!((val(&l.forward(&logits, &target)) + per).abs() < 1e-5);
        // Batch dice: class1 I=3, P=4, G=3 -> (6+s)/(7+s); class2: I=0, P=0, G=1 -> s/(1+s).
        let batch = ((6.0 + s) / (7.0 + s) + s / (1.0 + s)) / 2.0;
        let l = SegLoss::new(LossKind::Dice, mode, true);
        assert!((val(&l.forward(&logits, &target)) + batch).abs() < 1e-5);
    }

    #[test]
    fn ignore_label_masks_dice_and_ce() {
        let logits = t(&[0.0; 4], &[1, 2, 2]);
        let mode = LabelMode::Labels { num_classes: 2, ignore: Some(2) };
        let l = SegLoss::new(LossKind::DiceCe, mode.clone(), false);
        // Voxel 1 ignored: fg Dice I=0, P=0.5 (voxel 0 only), G=0 -> s/(0.5+s); CE over voxel 0.
        let target = lab(&[0, 2], &[1, 2]);
        let expect = -(1e-5 / (0.5 + 1e-5)) + std::f64::consts::LN_2;
        assert!((val(&l.forward(&logits, &target)) - expect).abs() < 1e-6);
        // Nothing annotated: CE skipped, Dice = s/s = 1 -> loss -1.
        let target = lab(&[2, 2], &[1, 2]);
        assert!((val(&l.forward(&logits, &target)) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn regions_bce_and_dice() {
        // One region {1, 2}, logits 0 -> sigmoid 0.5; target [0, 2]: region map [0, 1].
        let logits = t(&[0.0, 0.0], &[1, 1, 2]);
        let target = lab(&[0, 2], &[1, 2]);
        let mode = LabelMode::Regions { regions: vec![vec![1, 2]], ignore: None };
        let l = SegLoss::new(LossKind::DiceCe, mode, false);
        let dc = (1.0 + 1e-5) / (2.0 + 1e-5);
        assert!((val(&l.forward(&logits, &target)) - (-dc + std::f64::consts::LN_2)).abs() < 1e-6);
        // With ignore label 3 on voxel 0: Dice over voxel 1 only: (1+s)/(1+0.5+s); BCE ln 2.
        let mode = LabelMode::Regions { regions: vec![vec![1, 2]], ignore: Some(3) };
        let l = SegLoss::new(LossKind::DiceCe, mode, false);
        let target = lab(&[3, 2], &[1, 2]);
        let dc = (1.0 + 1e-5) / (1.5 + 1e-5);
        assert!((val(&l.forward(&logits, &target)) - (-dc + std::f64::consts::LN_2)).abs() < 1e-6);
    }

    #[test]
    fn deep_supervision_weights_match_reference() {
        let w = deep_supervision_weights(5);
        let expect = [0.5333333, 0.2666667, 0.1333333, 0.0666667, 0.0];
        for (a, b) in w.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
        assert_eq!(deep_supervision_weights(1), vec![1.0]);
        // The wrapper: weights applied per output, weight 0 skipped.
        let logits = t(&[0.0; 4], &[1, 2, 2]);
        let target = lab(&[0, 1], &[1, 2]);
        let l = SegLoss::new(LossKind::Ce, LabelMode::Labels { num_classes: 2, ignore: None }, false);
        let ds = DeepSupervisionLoss::new(l, 3);
        let big = t(&[100.0, -100.0, -100.0, 100.0], &[1, 2, 2]); // wrong everywhere: huge CE
        let v = val(&ds.forward(
            &[logits.shallow_clone(), logits.shallow_clone(), big],
            &[target.shallow_clone(), target.shallow_clone(), target],
        ));
        assert!((v - std::f64::consts::LN_2).abs() < 1e-6, "{v}");
    }

    #[test]
    fn gradient_flows() {
        let logits = Tensor::randn([2, 3, 4, 4, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let target = Tensor::randint(3, [2, 4, 4, 4], (Kind::Int64, Device::Cpu));
        let l = SegLoss::new(LossKind::DiceCe, LabelMode::Labels { num_classes: 3, ignore: None }, true);
        let v = l.forward(&logits, &target);
        v.backward();
        assert!(logits.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}

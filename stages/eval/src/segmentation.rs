//! From per-class scores to a label map (`LabelManager.convert_probabilities_to_segmentation`,
//! reference §9.4 step 2): argmax for plain labels, `p > 0.5` painted in
//! `regions_class_order` for regions.

use crate::error::{EvalError, Result};
use nnunet_io::image::ImageHeader;
use nnunet_io::volume::numel;
use nnunet_io::Volume;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How channels map to labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegmentationMode {
    /// Channel `c` is label `c` (background included); argmax.
    Labels,
    /// Channel `i` is region `i`; where its probability is > 0.5 the label
    /// `regions_class_order[i]` is painted, later regions over earlier ones.
    Regions { regions_class_order: Vec<i32> },
}

impl SegmentationMode {
    /// The mode of a dataset's labels: regions (sigmoid, painted in `regions_class_order`)
    /// when the labels define regions, plain labels (softmax argmax) otherwise.
    pub fn of_labels(labels: &nnunet_io::labels::Labels) -> SegmentationMode {
        match (&labels.regions_class_order, labels.has_regions()) {
            (Some(order), true) => SegmentationMode::Regions { regions_class_order: order.clone() },
            _ => SegmentationMode::Labels,
        }
    }
}

/// Whether the scores are logits or already probabilities (softmax / sigmoid applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreKind {
    Logits,
    Probabilities,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Converts `[C, Z, Y, X]` scores (C-order, channel slowest) to a label map. Argmax ties go
/// to the lowest channel, like numpy.
pub fn scores_to_segmentation(
    scores: &[f32],
    num_channels: usize,
    shape: [usize; 3],
    mode: &SegmentationMode,
    kind: ScoreKind,
) -> Result<Volume<i16>> {
    let n = numel(shape);
    if scores.len() != n * num_channels || num_channels == 0 {
        return Err(EvalError::Invalid(format!(
            "scores hold {} values, expected {num_channels} channels of {shape:?}",
            scores.len()
        )));
    }
    let mut out = vec![0i16; n];
    match mode {
        SegmentationMode::Labels => {
            if num_channels > i16::MAX as usize {
                return Err(EvalError::Invalid(format!("{num_channels} classes do not fit int16 labels")));
            }
            let mut best: Vec<f32> = scores[..n].to_vec();
            for c in 1..num_channels {
                let ch = &scores[c * n..(c + 1) * n];
                for ((b, o), &v) in best.iter_mut().zip(out.iter_mut()).zip(ch) {
                    // `>`: ties keep the earlier channel; NaN never wins (numpy would pick it).
                    if v > *b {
                        *b = v;
                        *o = c as i16;
                    }
                }
            }
        }
        SegmentationMode::Regions { regions_class_order } => {
            if regions_class_order.len() != num_channels {
                return Err(EvalError::Invalid(format!(
                    "{num_channels} region channels but regions_class_order has {} entries",
                    regions_class_order.len()
                )));
            }
            for (i, &label) in regions_class_order.iter().enumerate() {
                let label = i16::try_from(label)
                    .map_err(|_| EvalError::Invalid(format!("region label {label} does not fit int16")))?;
                let ch = &scores[i * n..(i + 1) * n];
                for (o, &v) in out.iter_mut().zip(ch) {
                    let p = if kind == ScoreKind::Logits { sigmoid(v) } else { v };
                    if p > 0.5 {
                        *o = label;
                    }
                }
            }
        }
    }
    Ok(Volume { shape, data: out })
}

/// Softmax over channels (labels) or sigmoid per channel (regions), in place on `[C, ...]`.
pub fn apply_inference_nonlinearity(scores: &mut [f32], num_channels: usize, mode: &SegmentationMode) {
    if num_channels == 0 {
        return;
    }
    let n = scores.len() / num_channels;
    match mode {
        SegmentationMode::Regions { .. } => scores.iter_mut().for_each(|v| *v = sigmoid(*v)),
        SegmentationMode::Labels => {
            for i in 0..n {
                let mut m = f32::NEG_INFINITY;
                for c in 0..num_channels {
                    m = m.max(scores[c * n + i]);
                }
                let mut s = 0.0f32;
                for c in 0..num_channels {
                    let e = (scores[c * n + i] - m).exp();
                    scores[c * n + i] = e;
                    s += e;
                }
                for c in 0..num_channels {
                    scores[c * n + i] /= s;
                }
            }
        }
    }
}

/// nnU-Net writes uint8 with fewer than 255 foreground labels, else uint16 (§9.4 step 4).
pub fn needs_u16(num_foreground_labels: usize) -> bool {
    num_foreground_labels >= 255
}

/// Step 5: writes a segmentation in the format the file name says (the input's
/// `file_ending`) with the geometry of `template` (the input image's header): same shape,
/// spacing, origin and direction. Fails when the shapes differ. Written atomically.
pub fn write_segmentation(
    path: &Path,
    seg: &Volume<i16>,
    template: &ImageHeader,
    num_foreground_labels: usize,
) -> Result<()> {
    if template.shape_zyx() != seg.shape {
        return Err(EvalError::Invalid(format!(
            "{}: segmentation of shape {:?} does not match the input image's shape {:?}",
            path.display(),
            seg.shape,
            template.shape_zyx()
        )));
    }
    Ok(nnunet_io::image::write_segmentation(path, template, seg, needs_u16(num_foreground_labels))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_and_regions() {
        // 2 voxels, 3 channels
        let s = [0.1, 0.5, 0.7, 0.2, 0.2, 0.3];
        let seg =
            scores_to_segmentation(&s, 3, [1, 1, 2], &SegmentationMode::Labels, ScoreKind::Probabilities).unwrap();
        assert_eq!(seg.data, vec![1, 0]); // voxel 1: tie 0.5 vs 0.2 vs 0.3 -> channel 0
        let mode = SegmentationMode::Regions { regions_class_order: vec![1, 2, 3] };
        let p = [0.9, 0.9, 0.6, 0.2, 0.4, 0.7];
        let seg = scores_to_segmentation(&p, 3, [1, 1, 2], &mode, ScoreKind::Probabilities).unwrap();
        assert_eq!(seg.data, vec![2, 3]);
        // logits: sigmoid(0) = 0.5 is not > 0.5
        let l = [0.0, 1.0];
        let seg = scores_to_segmentation(
            &l,
            1,
            [1, 1, 2],
            &SegmentationMode::Regions { regions_class_order: vec![4] },
            ScoreKind::Logits,
        )
        .unwrap();
        assert_eq!(seg.data, vec![0, 4]);
        assert!(scores_to_segmentation(&l, 2, [1, 1, 2], &mode, ScoreKind::Logits).is_err());
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut s = [1.0, -2.0, 3.0, 0.5];
        apply_inference_nonlinearity(&mut s, 2, &SegmentationMode::Labels);
        assert!((s[0] + s[2] - 1.0).abs() < 1e-6 && (s[1] + s[3] - 1.0).abs() < 1e-6);
        assert!(s[2] > s[0]);
    }
}

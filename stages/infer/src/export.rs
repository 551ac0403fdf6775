//! Export of a prediction to the original image (reference §9.4,
//! `convert_predicted_logits_to_segmentation_with_correct_shape`):
//!
//! 1. resample the logits with the probabilities resampler (order 1, separate-z when
//!    anisotropic; 2d configurations prefix the case's own slice spacing) from the
//!    configuration spacing to the original spacing, shape `shape_after_cropping`;
//! 2. argmax (labels) or sigmoid > 0.5 painted in `regions_class_order` (regions);
//! 3. insert into a zero array of `shape_before_cropping` at the crop box;
//! 4. `transpose_backward`;
//! 5. write with the input image's header (u8, or u16 with ≥ 255 foreground labels);
//! 6. optionally probabilities (softmax / sigmoid after resampling, background = 1 outside the
//!    crop box for labels), stored as an f32 Zarr array `[C, Z, Y, X]`.

use crate::error::{InferError, Result};
use nnunet_eval::segmentation::{apply_inference_nonlinearity, scores_to_segmentation, ScoreKind, SegmentationMode};
pub use nnunet_eval::segmentation::{needs_u16, write_segmentation};
use nnunet_io::volume::numel;
use nnunet_io::zarr::{WriteOptions, ZarrArray};
use nnunet_io::Volume;
use nnunet_prep::plans::{Plans, ResolvedConfiguration};
use nnunet_prep::preprocess::{target_spacing, CaseProperties};
use nnunet_prep::resample::resample_probabilities;
use std::path::Path;
use tch::{Kind, Tensor};

/// Per-channel scores `[C, Z, Y, X]` in C order (channel slowest): logits or probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    pub num_channels: usize,
    pub shape: [usize; 3],
    pub data: Vec<f32>,
}

/// Probabilities share the layout of [`Logits`].
pub type Probabilities = Logits;

impl Logits {
    pub fn new(num_channels: usize, shape: [usize; 3], data: Vec<f32>) -> Result<Logits> {
        if data.len() != num_channels * numel(shape) {
            return Err(InferError::Invalid(format!(
                "{} values do not make {num_channels} channels of {shape:?}",
                data.len()
            )));
        }
        Ok(Logits { num_channels, shape, data })
    }

    /// Copies a `[C, Z, Y, X]` tensor (any device / float kind) to the host.
    pub fn from_tensor(t: &Tensor) -> Result<Logits> {
        let s = t.size();
        if s.len() != 4 || s.iter().any(|&v| v < 0) {
            return Err(InferError::Invalid(format!("expected a [C, Z, Y, X] tensor, got {s:?}")));
        }
        let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let n = t.numel();
        let mut data = vec![0f32; n];
        t.f_copy_data(&mut data, n)?;
        Logits::new(s[0] as usize, [s[1] as usize, s[2] as usize, s[3] as usize], data)
    }

    pub fn channel(&self, c: usize) -> &[f32] {
        let n = numel(self.shape);
        &self.data[c * n..(c + 1) * n]
    }
}

/// The spacing the logits are at and the spacing to go back to (§9.4 step 1): the
/// configuration's spacing (2d: the case's slice spacing first) → the case's transposed spacing.
pub fn export_spacings(props: &CaseProperties, config: &ResolvedConfiguration) -> Result<([f64; 3], [f64; 3])> {
    Ok((target_spacing(config, props.spacing_transposed)?, props.spacing_transposed))
}

/// Step 1: logits at the configuration spacing → `shape_after_cropping_and_before_resampling`.
pub fn resample_logits_to_original(
    logits: &Logits,
    props: &CaseProperties,
    config: &ResolvedConfiguration,
) -> Result<Logits> {
    let (current, original) = export_spacings(props, config)?;
    let new_shape = props.shape_after_cropping_and_before_resampling;
    if logits.shape == new_shape {
        return Ok(logits.clone());
    }
    let data = resample_probabilities(
        &logits.data,
        logits.num_channels,
        logits.shape,
        new_shape,
        current,
        original,
        &config.resampling_probabilities,
    )?;
    Logits::new(logits.num_channels, new_shape, data)
}

/// Step 3: inserts a cropped volume into `shape_before_cropping` (filled with `fill`) at the
/// crop box.
pub fn revert_cropping<T: Copy>(vol: &Volume<T>, props: &CaseProperties, fill: T) -> Result<Volume<T>> {
    let bbox = &props.bbox_used_for_cropping;
    if vol.shape != bbox.shape() {
        return Err(InferError::Invalid(format!(
            "prediction of shape {:?} does not fit the crop box {:?}",
            vol.shape, bbox.0
        )));
    }
    let before = props.shape_before_cropping;
    if (0..3).any(|d| bbox.hi()[d] > before[d]) {
        return Err(InferError::Invalid(format!("crop box {:?} exceeds shape {before:?}", bbox.0)));
    }
    let mut out = Volume::filled(before, fill);
    out.paste(vol, bbox.lo());
    Ok(out)
}

/// Output of [`export_prediction`], in the original image's axis order and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    pub segmentation: Volume<i16>,
    /// Softmax / sigmoid probabilities `[C, Z, Y, X]`, when asked for.
    pub probabilities: Option<Probabilities>,
}

/// Steps 1–4 (and 6 without writing): logits at preprocessed resolution → segmentation (and
/// probabilities) on the original voxel grid.
pub fn export_prediction(
    logits: &Logits,
    props: &CaseProperties,
    plans: &Plans,
    config: &ResolvedConfiguration,
    mode: &SegmentationMode,
    save_probabilities: bool,
) -> Result<Exported> {
    let tb = plans.transpose_backward3();
    let resampled = resample_logits_to_original(logits, props, config)?;
    let shape = resampled.shape;
    let (seg, probabilities) = if save_probabilities {
        let mut p = resampled;
        apply_inference_nonlinearity(&mut p.data, p.num_channels, mode);
        let seg = scores_to_segmentation(&p.data, p.num_channels, shape, mode, ScoreKind::Probabilities)?;
        // Background probability 1 outside the crop box for labels, 0 everywhere for regions.
        let labels_mode = matches!(mode, SegmentationMode::Labels);
        let mut out = Vec::with_capacity(p.num_channels * numel(props.shape_before_cropping));
        let mut full_shape = props.shape_before_cropping;
        for c in 0..p.num_channels {
            let fill = if labels_mode && c == 0 { 1.0 } else { 0.0 };
            let v = revert_cropping(&Volume { shape, data: p.channel(c).to_vec() }, props, fill)?.transpose(tb);
            full_shape = v.shape;
            out.extend_from_slice(&v.data);
        }
        (seg, Some(Logits::new(p.num_channels, full_shape, out)?))
    } else {
        (scores_to_segmentation(&resampled.data, resampled.num_channels, shape, mode, ScoreKind::Logits)?, None)
    };
    let segmentation = revert_cropping(&seg, props, 0i16)?.transpose(tb);
    Ok(Exported { segmentation, probabilities })
}

/// Logits → segmentation at another shape (`resample_and_save`, §7.3: a 3d_lowres validation
/// case resampled to the 3d_fullres preprocessed shape for the cascade). nnU-Net passes the
/// lowres configuration's spacing as both the current and the target spacing, so only that
/// spacing decides separate-z; pass it twice to reproduce this.
pub fn resample_logits_to_segmentation(
    logits: &Logits,
    target_shape: [usize; 3],
    current_spacing: [f64; 3],
    target_spacing: [f64; 3],
    kwargs: &nnunet_prep::plans::ResamplingKwargs,
    mode: &SegmentationMode,
) -> Result<Volume<i16>> {
    let data = if logits.shape == target_shape {
        logits.data.clone()
    } else {
        resample_probabilities(
            &logits.data,
            logits.num_channels,
            logits.shape,
            target_shape,
            current_spacing,
            target_spacing,
            kwargs,
        )?
    };
    Ok(scores_to_segmentation(&data, logits.num_channels, target_shape, mode, ScoreKind::Logits)?)
}

/// Step 6: stores probabilities as an f32 Zarr array `[C, Z, Y, X]` at `dir` (one chunk per
/// channel and up to 64×128×128 voxels, all in one shard file), with `attributes` in its metadata.
pub fn write_probabilities(dir: &Path, probs: &Probabilities, attributes: serde_json::Value) -> Result<()> {
    let [z, y, x] = probs.shape;
    let shape = [probs.num_channels, z, y, x];
    let chunks = [1, z.clamp(1, 64), y.clamp(1, 128), x.clamp(1, 128)];
    let opts = WriteOptions {
        chunks: &chunks,
        shard: true,
        dimension_names: Some(&["c", "z", "y", "x"]),
        zstd_level: Some(3),
        attributes,
    };
    ZarrArray::write(dir, &shape, &probs.data, &opts)?;
    Ok(())
}

/// Reads probabilities written by [`write_probabilities`].
pub fn read_probabilities(dir: &Path) -> Result<Probabilities> {
    let a = ZarrArray::open(dir)?;
    if a.shape.len() != 4 {
        return Err(InferError::Invalid(format!(
            "{}: expected a [C, Z, Y, X] array, got shape {:?}",
            dir.display(),
            a.shape
        )));
    }
    let data = a.read_all::<f32>()?;
    Logits::new(a.shape[0], [a.shape[1], a.shape[2], a.shape[3]], data)
}

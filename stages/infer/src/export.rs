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
use nnunet_io::volume::{numel, permute};
use nnunet_io::zarr::{WriteOptions, ZarrArray};
use nnunet_io::Volume;
use nnunet_prep::plans::{Plans, ResolvedConfiguration};
use nnunet_prep::preprocess::{target_spacing, CaseProperties};
use nnunet_prep::resample::{resample_probabilities, ChannelResampler};
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

/// Output voxels per slab of [`export_segmentation`] (times the number of classes, in f32: 16 MB
/// per class).
const EXPORT_SLAB_VOXELS: usize = 1 << 22;

/// Resamples `logits` to `target` (the probabilities resampler, `current` → `new` spacing) and
/// turns them into labels a slab of output planes at a time: every class is resampled into a
/// `[K, slab]` buffer ([`ChannelResampler`]) and converted there; `put(z0, labels)` receives
/// each slab. Returns `false`, having called nothing, for settings the slab resampler does not
/// cover (order 3, a separate-z axis other than the first). The labels equal those of the
/// whole-volume path (same resampled values, same argmax / region rule).
fn segment_slabs(
    logits: &Logits,
    target: [usize; 3],
    current: [f64; 3],
    new: [f64; 3],
    kwargs: &nnunet_prep::plans::ResamplingKwargs,
    mode: &SegmentationMode,
    put: &mut dyn FnMut(usize, &Volume<i16>),
) -> Result<bool> {
    let k = logits.num_channels;
    let mut resamplers = Vec::with_capacity(k);
    for c in 0..k {
        match ChannelResampler::new(logits.channel(c), logits.shape, target, current, new, kwargs)? {
            Some(r) => resamplers.push(r),
            None => return Ok(false),
        }
    }
    let plane = target[1] * target[2];
    let rows = (EXPORT_SLAB_VOXELS / plane.max(1)).clamp(1, target[0].max(1));
    let mut buf = vec![0f32; k * rows * plane];
    let mut z0 = 0;
    while z0 < target[0] {
        let z1 = (z0 + rows).min(target[0]);
        let n = (z1 - z0) * plane;
        for (c, r) in resamplers.iter().enumerate() {
            r.planes(z0, z1, &mut buf[c * n..(c + 1) * n])?;
        }
        let seg = scores_to_segmentation(&buf[..k * n], k, [z1 - z0, target[1], target[2]], mode, ScoreKind::Logits)?;
        put(z0, &seg);
        z0 = z1;
    }
    Ok(true)
}

/// Steps 1–4 for the segmentation alone, streamed ([`segment_slabs`]): labels go straight into
/// the un-cropped, back-transposed volume. Peak memory is the logits, the segmentation and one
/// slab per class, never an image-sized f32 array per class. The labels equal
/// [`export_prediction`]'s; settings the slab resampler does not cover take its path.
pub fn export_segmentation(
    logits: &Logits,
    props: &CaseProperties,
    plans: &Plans,
    config: &ResolvedConfiguration,
    mode: &SegmentationMode,
) -> Result<Volume<i16>> {
    let (current, original) = export_spacings(props, config)?;
    let target = props.shape_after_cropping_and_before_resampling;
    let bbox = &props.bbox_used_for_cropping;
    let before = props.shape_before_cropping;
    if bbox.shape() != target || (0..3).any(|d| bbox.hi()[d] > before[d]) {
        return Err(InferError::Invalid(format!(
            "crop box {:?} does not fit the cropped shape {target:?} inside {before:?}",
            bbox.0
        )));
    }
    let tb = plans.transpose_backward3();
    let final_shape = permute(before, tb);
    let final_strides = [final_shape[1] * final_shape[2], final_shape[2], 1];
    // Output axis i is transposed axis tb[i]: a step along transposed axis tb[i] moves by
    // final_strides[i].
    let mut step = [0usize; 3];
    for i in 0..3 {
        step[tb[i]] = final_strides[i];
    }
    let mut out = vec![0i16; numel(final_shape)];
    let lo = bbox.lo();
    let (ny, nx) = (target[1], target[2]);
    let done =
        segment_slabs(logits, target, current, original, &config.resampling_probabilities, mode, &mut |z0, seg| {
            for (i, &v) in seg.data.iter().enumerate() {
                let (z, y, x) = (z0 + i / (ny * nx), (i / nx) % ny, i % nx);
                out[(lo[0] + z) * step[0] + (lo[1] + y) * step[1] + (lo[2] + x) * step[2]] = v;
            }
        })?;
    if !done {
        return export_prediction(logits, props, plans, config, mode, false).map(|e| e.segmentation);
    }
    Ok(Volume { shape: final_shape, data: out })
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
    let mut out = vec![0i16; numel(target_shape)];
    let plane = target_shape[1] * target_shape[2];
    let streamed =
        segment_slabs(logits, target_shape, current_spacing, target_spacing, kwargs, mode, &mut |z0, seg| {
            out[z0 * plane..z0 * plane + seg.data.len()].copy_from_slice(&seg.data);
        })?;
    if streamed {
        return Ok(Volume { shape: target_shape, data: out });
    }
    drop(out);
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

/// Where a 3d_lowres fold keeps its validation cases' segmentations for the next stage
/// (nnU-Net's `predicted_next_stage/<next>/<case>`, §7.3): `fold_dir/predicted_next_stage/NEXT/CASE.zarr`.
pub fn next_stage_path(fold_dir: &Path, next_stage: &str, case: &str) -> std::path::PathBuf {
    fold_dir.join("predicted_next_stage").join(next_stage).join(format!("{case}.zarr"))
}

/// Writes a label map (on a preprocessed grid) as an int16 Zarr array `[Z, Y, X]`.
pub fn write_label_array(dir: &Path, seg: &Volume<i16>, attributes: serde_json::Value) -> Result<()> {
    let [z, y, x] = seg.shape;
    let chunks = [z.clamp(1, 64), y.clamp(1, 256), x.clamp(1, 256)];
    let opts = WriteOptions {
        chunks: &chunks,
        shard: true,
        dimension_names: Some(&["z", "y", "x"]),
        zstd_level: Some(3),
        attributes,
    };
    ZarrArray::write(dir, &seg.shape, &seg.data, &opts)?;
    Ok(())
}

/// Reads a label map written by [`write_label_array`].
pub fn read_label_array(dir: &Path) -> Result<Volume<i16>> {
    let a = ZarrArray::open(dir)?;
    if a.shape.len() != 3 {
        return Err(InferError::Invalid(format!(
            "{}: expected a [Z, Y, X] array, got shape {:?}",
            dir.display(),
            a.shape
        )));
    }
    let data = a.read_all::<i16>()?;
    Volume::from_vec([a.shape[0], a.shape[1], a.shape[2]], data)
        .ok_or_else(|| InferError::Invalid(format!("{}: the data does not fill shape {:?}", dir.display(), a.shape)))
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

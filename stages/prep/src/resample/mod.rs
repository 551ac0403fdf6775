//! Resampling of images, segmentations and probabilities (§4.2, §4.3,
//! `preprocessing/resampling/default_resampling.py`).
//!
//! - [`resample_data`]: per channel, skimage `resize` (order 3 for images, 1 for probabilities)
//!   or, for anisotropic spacings, the separate-z path (in-plane per slice, then nearest along
//!   the low-resolution axis with the align-corners=False map).
//! - [`resample_seg`]: one-hot linear per label ([`SegResampleMode`]), or the separate-z path.
//! - [`compute_new_shape`]: `round(old_spacing / new_spacing * old_shape)`, half to even.
//!
//! Storage is f32 (nnU-Net converts to f64 first, §4.3); arithmetic is f64 per output value.

mod seg;
mod slab;
mod zoom;

pub(crate) use seg::{nearest_rows, one_hot_linear_rows, rows_reach};
pub use seg::{resize_segmentation, unique_labels, SegResampleMode};
pub use slab::ChannelResampler;
pub use zoom::resize;
pub(crate) use zoom::{min_max, spline3_cols, spline3_unclipped};

use crate::error::{PrepError, Result};
use crate::plans::ResamplingKwargs;
use nnunet_io::volume::{invert_perm, numel};
use nnunet_io::Volume;
use rayon::prelude::*;

/// `ANISO_THRESHOLD` (§4.3).
pub const ANISO_THRESHOLD: f64 = 3.0;

/// Target shape for a spacing change: `round(old_spacing[i] / new_spacing[i] * old_shape[i])`
/// with Python's half-to-even rounding (§4.1 step 4, §16).
pub fn compute_new_shape(shape: [usize; 3], spacing: [f64; 3], target: [f64; 3]) -> [usize; 3] {
    let mut out = [0usize; 3];
    for d in 0..3 {
        let v = (spacing[d] / target[d] * shape[d] as f64).round_ties_even();
        out[d] = if v.is_finite() && v > 0.0 { v as usize } else { 0 };
    }
    out
}

/// `get_do_separate_z`: `max(spacing) / min(spacing) > 3`.
pub fn is_anisotropic(spacing: [f64; 3]) -> bool {
    let max = spacing.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let min = spacing.iter().cloned().fold(f64::INFINITY, f64::min);
    max / min > ANISO_THRESHOLD
}

/// `get_lowres_axis`: axes whose spacing equals the maximum.
fn lowres_axes(spacing: [f64; 3]) -> Vec<usize> {
    let max = spacing.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (0..3).filter(|&d| max / spacing[d] == 1.0).collect()
}

/// `determine_do_sep_z_and_axis`: the low-resolution axis to resample separately, or `None`.
///
/// With `force_separate_z = None`: the current spacing decides if anisotropic, else the target
/// spacing; when 2 or 3 axes tie for the maximum spacing separate-z is disabled.
pub fn separate_z_axis(
    force_separate_z: Option<bool>,
    current_spacing: [f64; 3],
    new_spacing: [f64; 3],
) -> Option<usize> {
    let axes = match force_separate_z {
        Some(true) => lowres_axes(current_spacing),
        Some(false) => return None,
        None => {
            if is_anisotropic(current_spacing) {
                lowres_axes(current_spacing)
            } else if is_anisotropic(new_spacing) {
                lowres_axes(new_spacing)
            } else {
                return None;
            }
        }
    };
    (axes.len() == 1).then(|| axes[0])
}

/// Nearest (order 0) or linear (order 1) resampling along `axis` only, with the
/// align-corners=False map `src = (dst + 0.5) * in/out - 0.5` and mode 'nearest'
/// (`map_coordinates` on the in-plane-resized stack, §4.3 separate-z step 2).
fn resample_axis_map<T: Copy + Send + Sync + Default>(
    vol: &Volume<T>,
    axis: usize,
    n_out: usize,
    order: u32,
    blend: impl Fn(T, T, f64, f64) -> T + Sync,
) -> Volume<T> {
    let mut out_shape = vol.shape;
    out_shape[axis] = n_out;
    if n_out == vol.shape[axis] {
        return vol.clone();
    }
    let n_in = vol.shape[axis];
    let taps = axis_map_taps(n_in, n_out, order);
    let outer: usize = vol.shape[..axis].iter().product();
    let inner: usize = vol.shape[axis + 1..].iter().product();
    let mut data = vec![T::default(); numel(out_shape)];
    data.par_chunks_mut((n_out * inner).max(1)).enumerate().for_each(|(o, block)| {
        for (j, &(i0, i1, w0, w1)) in taps.iter().enumerate() {
            let a = &vol.data[(o * n_in + i0) * inner..(o * n_in + i0 + 1) * inner];
            let b = &vol.data[(o * n_in + i1) * inner..(o * n_in + i1 + 1) * inner];
            for ((d, &x), &y) in block[j * inner..(j + 1) * inner].iter_mut().zip(a).zip(b) {
                *d = blend(x, y, w0, w1);
            }
        }
    });
    let _ = outer;
    Volume { shape: out_shape, data }
}

/// The two taps and weights of every output index of [`resample_axis_map`]:
/// `src = (dst + 0.5) * in/out - 0.5`, nearest (order 0) or linear, clamped to the input.
pub(crate) fn axis_map_taps(n_in: usize, n_out: usize, order: u32) -> Vec<(usize, usize, f64, f64)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|j| {
            let cc = scale * (j as f64 + 0.5) - 0.5;
            let clamp = |i: i64| i.clamp(0, n_in as i64 - 1) as usize;
            if order == 0 {
                let i = clamp((cc + 0.5).floor() as i64);
                (i, i, 1.0, 0.0)
            } else {
                let f = cc.floor();
                let w0 = 1.0 - (cc - f);
                (clamp(f as i64), clamp(f as i64 + 1), w0, 1.0 - w0)
            }
        })
        .collect()
}

/// Moves `axis` to the front (slices become contiguous). Returns the permutation used.
fn axis_first<T: Copy>(v: &Volume<T>, axis: usize) -> (Volume<T>, [usize; 3]) {
    let rest: Vec<usize> = (0..3).filter(|&d| d != axis).collect();
    let perm = [axis, rest[0], rest[1]];
    (v.transpose(perm), perm)
}

/// Applies `f` to every slice along axis 0 (each `[1, a, b]` -> `[1, c, d]`), in parallel.
fn per_slice<T: Copy + Send + Sync + Default>(
    v: &Volume<T>,
    out_inplane: [usize; 2],
    f: impl Fn(&Volume<T>) -> Volume<T> + Sync,
) -> Volume<T> {
    let [n, a, b] = v.shape;
    let plane_out = out_inplane[0] * out_inplane[1];
    let mut data = vec![T::default(); n * plane_out];
    data.par_chunks_mut(plane_out.max(1)).enumerate().for_each(|(s, dst)| {
        let slice = Volume { shape: [1, a, b], data: v.data[s * a * b..(s + 1) * a * b].to_vec() };
        let r = f(&slice);
        dst.copy_from_slice(&r.data);
    });
    Volume { shape: [n, out_inplane[0], out_inplane[1]], data }
}

pub(crate) fn check_kwargs(kwargs: &ResamplingKwargs) -> Result<()> {
    if kwargs.order_z > 1 {
        return Err(PrepError::Unsupported(format!("order_z {} (only 0 and 1 are implemented)", kwargs.order_z)));
    }
    if !kwargs.is_seg && !matches!(kwargs.order, 0 | 1 | 3) {
        return Err(PrepError::Unsupported(format!("data resampling order {}", kwargs.order)));
    }
    Ok(())
}

/// `resample_data_or_seg_to_shape(data, new_shape, current_spacing, new_spacing, **kwargs)` for
/// image channels (`is_seg = false`). Spacings are in the volumes' axis order.
pub fn resample_data(
    channels: &[Volume<f32>],
    new_shape: [usize; 3],
    current_spacing: [f64; 3],
    new_spacing: [f64; 3],
    kwargs: &ResamplingKwargs,
) -> Result<Vec<Volume<f32>>> {
    check_kwargs(kwargs)?;
    let axis = separate_z_axis(kwargs.force_separate_z, current_spacing, new_spacing);
    channels
        .iter()
        .map(|c| {
            if c.shape == new_shape {
                return Ok(c.clone());
            }
            Ok(match axis {
                None => resize(c, new_shape, kwargs.order),
                Some(ax) => {
                    let (t, perm) = axis_first(c, ax);
                    let tgt = [new_shape[perm[0]], new_shape[perm[1]], new_shape[perm[2]]];
                    let inplane = per_slice(&t, [tgt[1], tgt[2]], |s| resize(s, [1, tgt[1], tgt[2]], kwargs.order));
                    let z = resample_axis_map(&inplane, 0, tgt[0], kwargs.order_z, |x, y, w0, w1| {
                        (x as f64 * w0 + y as f64 * w1) as f32
                    });
                    z.transpose(invert_perm(perm))
                }
            })
        })
        .collect()
}

/// `resample_data_or_seg_to_shape(..., is_seg=True)` for a label map (values incl. −1).
pub fn resample_seg(
    seg: &Volume<i16>,
    new_shape: [usize; 3],
    current_spacing: [f64; 3],
    new_spacing: [f64; 3],
    kwargs: &ResamplingKwargs,
    mode: SegResampleMode,
) -> Result<Volume<i16>> {
    check_kwargs(kwargs)?;
    if seg.shape == new_shape {
        return Ok(seg.clone());
    }
    let axis = separate_z_axis(kwargs.force_separate_z, current_spacing, new_spacing);
    Ok(match axis {
        None => resize_segmentation(seg, new_shape, kwargs.order, mode),
        Some(ax) => {
            let (t, perm) = axis_first(seg, ax);
            let tgt = [new_shape[perm[0]], new_shape[perm[1]], new_shape[perm[2]]];
            let inplane =
                per_slice(&t, [tgt[1], tgt[2]], |s| resize_segmentation(s, [1, tgt[1], tgt[2]], kwargs.order, mode));
            let z = if kwargs.order_z == 0 {
                resample_axis_map(&inplane, 0, tgt[0], 0, |x, _, _, _| x)
            } else {
                seg_axis_linear(&inplane, tgt[0])
            };
            z.transpose(invert_perm(perm))
        }
    })
}

/// Separate-z with `order_z = 1` for labels: per label, linear along the axis and
/// `round(value) > 0.5` (nnU-Net's rule), ascending label order.
fn seg_axis_linear(v: &Volume<i16>, n_out: usize) -> Volume<i16> {
    let labels = unique_labels(&v.data);
    let mut out_shape = v.shape;
    out_shape[0] = n_out;
    let mut out = Volume { shape: out_shape, data: vec![0i16; numel(out_shape)] };
    for l in labels {
        let ind = v.map(|x| if x == l { 1.0f32 } else { 0.0 });
        let r = resample_axis_map(&ind, 0, n_out, 1, |x, y, w0, w1| (x as f64 * w0 + y as f64 * w1) as f32);
        for (o, &s) in out.data.iter_mut().zip(&r.data) {
            if (s as f64).round_ties_even() > 0.5 {
                *o = l;
            }
        }
    }
    out
}

/// Resamples multi-channel probabilities / logits (`resampling_fn_probabilities`, order 1 by
/// default) stored as one C-order buffer `[C, Z, Y, X]`.
pub fn resample_probabilities(
    data: &[f32],
    num_channels: usize,
    shape: [usize; 3],
    new_shape: [usize; 3],
    current_spacing: [f64; 3],
    new_spacing: [f64; 3],
    kwargs: &ResamplingKwargs,
) -> Result<Vec<f32>> {
    let n = numel(shape);
    if data.len() != n * num_channels {
        return Err(PrepError::Shape(format!(
            "probabilities buffer of {} values is not {num_channels} x {shape:?}",
            data.len()
        )));
    }
    let channels: Vec<Volume<f32>> =
        (0..num_channels).map(|c| Volume { shape, data: data[c * n..(c + 1) * n].to_vec() }).collect();
    let out = resample_data(&channels, new_shape, current_spacing, new_spacing, kwargs)?;
    Ok(out.into_iter().flat_map(|v| v.data).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_shape_rounds_half_to_even() {
        assert_eq!(compute_new_shape([10, 5, 3], [1.0, 1.0, 1.0], [4.0, 2.0, 2.0]), [2, 2, 2]);
        assert_eq!(compute_new_shape([36, 50, 35], [1.0; 3], [1.0; 3]), [36, 50, 35]);
        assert_eq!(compute_new_shape([7, 7, 7], [1.0; 3], [2.0; 3]), [4, 4, 4]);
    }

    #[test]
    fn separate_z_rules() {
        assert_eq!(separate_z_axis(None, [3.6, 0.6, 0.6], [1.0, 1.0, 1.0]), Some(0));
        assert_eq!(separate_z_axis(None, [1.0, 1.0, 1.0], [0.6, 3.6, 0.6]), Some(1));
        assert_eq!(separate_z_axis(None, [1.0, 1.0, 1.0], [1.0, 2.0, 1.0]), None);
        // Ties for the max disable separate-z.
        assert_eq!(separate_z_axis(None, [0.24, 1.25, 1.25], [1.0; 3]), None);
        assert_eq!(separate_z_axis(Some(false), [5.0, 1.0, 1.0], [1.0; 3]), None);
        assert_eq!(separate_z_axis(Some(true), [1.0, 1.0, 2.0], [1.0; 3]), Some(2));
        // Exactly 3 is not anisotropic (strictly greater).
        assert!(!is_anisotropic([3.0, 1.0, 1.0]));
    }

    #[test]
    fn separate_z_uses_nearest_along_z() {
        // z: 2 -> 4 slices, in-plane unchanged: nearest copies slices [0, 0, 1, 1].
        let v = Volume::from_vec([2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let kw = ResamplingKwargs { is_seg: false, order: 3, order_z: 0, force_separate_z: None };
        let r = resample_data(&[v], [4, 1, 2], [4.0, 1.0, 1.0], [2.0, 1.0, 1.0], &kw).unwrap();
        assert_eq!(r[0].data, vec![1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
    }

    #[test]
    fn probabilities_shape_checked() {
        let kw = ResamplingKwargs { is_seg: false, order: 1, order_z: 0, force_separate_z: None };
        assert!(resample_probabilities(&[0.0; 5], 2, [1, 1, 2], [1, 1, 4], [1.0; 3], [1.0; 3], &kw).is_err());
        let r = resample_probabilities(&[0.0, 1.0, 1.0, 0.0], 2, [1, 1, 2], [1, 1, 4], [1.0; 3], [0.5, 1.0, 1.0], &kw)
            .unwrap();
        assert_eq!(r, vec![0.0, 0.25, 0.75, 1.0, 1.0, 0.75, 0.25, 0.0]);
    }
}

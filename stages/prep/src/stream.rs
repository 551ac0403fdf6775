//! Step 2 of preprocessing (§4.1 steps 4, 6–8) streamed: a case goes from the normalized store to
//! the preprocessed store slab by slab, so its memory is a few slabs plus what a pass cannot do
//! without, never a few copies of the whole volume. The arithmetic is that of
//! [`crate::preprocess::resample_case_with`] (same taps, weights and decision rules; order-3
//! passes may run in a different axis order, which changes f32 rounding only).
//!
//! Image channels, one at a time:
//! - same shape: copied slab by slab;
//! - separate-z along axis 0 (anisotropic spacing), or order 3 with the slice count unchanged (2d
//!   configurations): output slabs are made from the input slices their z taps reach, resized in
//!   plane (separate-z: per slice, clipped per slice like nnU-Net's per-slice `resize`; otherwise
//!   the in-plane spline passes, clipped to the channel's range once);
//! - order 3 in 3D: the in-plane passes run per input slab into one intermediate volume of
//!   `Z_in x Y_out x X_out` (the z pass needs whole columns), then the z pass runs per block of
//!   output rows and each block is written as it is done;
//! - anything else (separate-z along another axis, orders 0/1 in 3D): the whole channel.
//!
//! The segmentation is resampled slab by slab into one output label volume (i16, which class
//! location sampling needs whole), then written with the case's attributes.

use crate::class_locations::{sample_class_locations, ClassLocations};
use crate::error::{PrepError, Result};
use crate::plans::{ResamplingKwargs, ResolvedConfiguration};
use crate::preprocess::{target_spacing, ResampleCaseOptions};
use crate::resample::{
    axis_map_taps, check_kwargs, compute_new_shape, min_max, nearest_rows, one_hot_linear_rows, resample_data,
    resample_seg, resize, resize_segmentation, rows_reach, separate_z_axis, spline3_cols, spline3_unclipped,
    unique_labels,
};
use crate::store::{chunk_shape_for_patch, CaseWriter, NormalizedReader, NORMALIZED_SLAB};
use nnunet_io::volume::numel;
use nnunet_io::Volume;
use rayon::prelude::*;
use std::path::Path;

/// Output slices per slab of the per-slice paths (rounded up to whole inner chunks).
const MIN_SLAB: usize = 8;

/// How a channel or the segmentation is resampled.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path3 {
    Copy,
    /// In-plane per slice, then the z taps; `separate`: nnU-Net's separate-z (per-slice resize
    /// with its own clipping), else in-plane spline passes clipped to the channel's range.
    PerSlice {
        separate: bool,
    },
    /// Order 3 in all axes: in-plane per slab into an intermediate, then the z pass.
    Volume3d,
    /// Orders 0/1 (segmentation) in 3D: output rows from the input slices their taps reach.
    Rows,
    /// The whole volume at once.
    Whole,
}

fn data_route(in_shape: [usize; 3], out_shape: [usize; 3], axis: Option<usize>, kw: &ResamplingKwargs) -> Path3 {
    match axis {
        _ if in_shape == out_shape => Path3::Copy,
        Some(0) => Path3::PerSlice { separate: true },
        Some(_) => Path3::Whole,
        None if kw.order == 3 && in_shape[0] == out_shape[0] => Path3::PerSlice { separate: false },
        None if kw.order == 3 => Path3::Volume3d,
        None => Path3::Whole,
    }
}

fn seg_route(in_shape: [usize; 3], out_shape: [usize; 3], axis: Option<usize>, kw: &ResamplingKwargs) -> Path3 {
    match axis {
        _ if in_shape == out_shape => Path3::Copy,
        Some(0) => Path3::PerSlice { separate: true },
        Some(_) => Path3::Whole,
        None if kw.order <= 1 => Path3::Rows,
        None => Path3::Whole,
    }
}

/// What a case resamples to.
struct Geometry {
    in_shape: [usize; 3],
    out_shape: [usize; 3],
    current: [f64; 3],
    target: [f64; 3],
}

fn geometry(input: &NormalizedReader, config: &ResolvedConfiguration) -> Result<Geometry> {
    let current = input.properties.spacing_transposed;
    let target = target_spacing(config, current)?;
    let in_shape = input.shape();
    if in_shape != input.properties.shape_after_cropping_and_before_resampling {
        return Err(PrepError::Shape(format!(
            "normalized case of shape {in_shape:?}, its properties say {:?}",
            input.properties.shape_after_cropping_and_before_resampling
        )));
    }
    let out_shape = compute_new_shape(in_shape, current, target);
    if numel(out_shape) == 0 {
        return Err(PrepError::Shape(format!(
            "resampling {in_shape:?} from spacing {current:?} to {target:?} gives an empty shape {out_shape:?}"
        )));
    }
    Ok(Geometry { in_shape, out_shape, current, target })
}

/// Output slices per slab: whole inner chunks along z, at least [`MIN_SLAB`].
fn slab_len(chunk_z: usize) -> usize {
    chunk_z * MIN_SLAB.div_ceil(chunk_z.max(1))
}

/// Peak bytes [`resample_case_streamed`] holds for this case (the memory budget's estimate):
/// the buffers of its largest step plus the output label volume and a fixed overhead.
pub fn resample_peak_bytes(input: &NormalizedReader, config: &ResolvedConfiguration) -> Result<u64> {
    let g = geometry(input, config)?;
    let [zi, yi, xi] = g.in_shape;
    let [zo, yo, xo] = g.out_shape;
    let chunk = chunk_shape_for_patch(g.out_shape, &config.patch_size);
    let axis = separate_z_axis(config.resampling_data.force_separate_z, g.current, g.target);
    let slab = slab_len(chunk[0]);
    // Input slab decoded (and its zarr chunks), in-plane results, output slab and its encoded chunks.
    let per_slice = (slab.max(NORMALIZED_SLAB) * yi * xi * 4 * 2 + slab * yo * xo * 4 * 3) as u64;
    let data = match data_route(g.in_shape, g.out_shape, axis, &config.resampling_data) {
        Path3::Copy | Path3::PerSlice { .. } | Path3::Rows => per_slice,
        Path3::Volume3d => (zi * yo * xo * 4 + zo * chunk[1] * xo * 4 * 3 + NORMALIZED_SLAB * yi * xi * 8) as u64,
        Path3::Whole => (zi * yi * xi * 4 + zo * yo * xo * 4) as u64 * 3,
    };
    // The output labels (i16), their int8 copy and encoded chunks, class-location sampling.
    let seg = (zo * yo * xo * 4) as u64 + per_slice / 2;
    let seg_whole = if seg_route(g.in_shape, g.out_shape, axis, &config.resampling_seg) == Path3::Whole {
        (zi * yi * xi * 2) as u64 * 2
    } else {
        0
    };
    Ok(data.max(seg_whole) + seg + (24 << 20))
}

/// Resamples the normalized case `input` to `config` and writes it as a preprocessed case at the
/// case path `out` (§4.1 steps 4, 6, 7, 8), slab by slab. Returns the output shape.
pub fn resample_case_streamed(
    input: &NormalizedReader,
    config: &ResolvedConfiguration,
    opts: &ResampleCaseOptions,
    seed: u64,
    out: &Path,
) -> Result<[usize; 3]> {
    check_kwargs(&config.resampling_data)?;
    check_kwargs(&config.resampling_seg)?;
    let g = geometry(input, config)?;
    let writer = CaseWriter::create(out, input.num_channels(), g.out_shape, &config.patch_size)?;
    let kw = &config.resampling_data;
    let axis = separate_z_axis(kw.force_separate_z, g.current, g.target);
    for c in 0..input.num_channels() {
        match data_route(g.in_shape, g.out_shape, axis, kw) {
            Path3::Copy => copy_channel(input, c, &writer)?,
            Path3::PerSlice { separate } => per_slice_channel(input, c, &g, kw, separate, &writer)?,
            Path3::Volume3d => volume3d_channel(input, c, &g, &writer)?,
            Path3::Whole | Path3::Rows => {
                let whole = input.read_channel_slab(c, 0, g.in_shape[0])?;
                let r = resample_data(&[whole], g.out_shape, g.current, g.target, kw)?;
                writer.write_data(c, [0; 3], g.out_shape, &r[0].data)?;
            }
        }
    }
    let seg = resample_seg_streamed(input, &g, &config.resampling_seg, opts)?;
    let class_locations =
        if input.has_label { sample_class_locations(&seg, &opts.classes, seed) } else { ClassLocations::default() };
    writer.finish(&seg, input.has_label, &input.properties, g.target, &class_locations)?;
    Ok(g.out_shape)
}

fn copy_channel(input: &NormalizedReader, c: usize, w: &CaseWriter) -> Result<()> {
    let [z, y, x] = input.shape();
    let step = slab_len(w.chunk()[0]);
    for z0 in (0..z).step_by(step) {
        let z1 = (z0 + step).min(z);
        let s = input.read_channel_slab(c, z0, z1)?;
        w.write_data(c, [z0, 0, 0], [z1 - z0, y, x], &s.data)?;
    }
    Ok(())
}

/// Min and max of a channel, read slab by slab (the clipping range of a streamed resize).
fn channel_range(input: &NormalizedReader, c: usize) -> Result<(f32, f32)> {
    let z = input.shape()[0];
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for z0 in (0..z).step_by(NORMALIZED_SLAB) {
        let s = input.read_channel_slab(c, z0, (z0 + NORMALIZED_SLAB).min(z))?;
        let (a, b) = min_max(&s.data);
        lo = lo.min(a);
        hi = hi.max(b);
    }
    Ok((lo, hi))
}

fn per_slice_channel(
    input: &NormalizedReader,
    c: usize,
    g: &Geometry,
    kw: &ResamplingKwargs,
    separate: bool,
    w: &CaseWriter,
) -> Result<()> {
    let [zi, _, _] = g.in_shape;
    let [zo, yo, xo] = g.out_shape;
    let plane = yo * xo;
    // Separate-z maps slices with order_z; otherwise the slice count is unchanged.
    let taps = if separate { axis_map_taps(zi, zo, kw.order_z) } else { axis_map_taps(zi, zi, 0) };
    let range = if separate { None } else { Some(channel_range(input, c)?) };
    let step = slab_len(w.chunk()[0]);
    for j0 in (0..zo).step_by(step) {
        let j1 = (j0 + step).min(zo);
        let mut need: Vec<usize> = taps[j0..j1].iter().flat_map(|t| [t.0, t.1]).collect();
        need.sort_unstable();
        need.dedup();
        let (lo, hi) = (need[0], need[need.len() - 1] + 1);
        let slab = input.read_channel_slab(c, lo, hi)?;
        let [_, yi, xi] = slab.shape;
        let resized: Vec<Vec<f32>> = if separate {
            need.par_iter()
                .map(|&i| {
                    let s = Volume {
                        shape: [1, yi, xi],
                        data: slab.data[(i - lo) * yi * xi..(i - lo + 1) * yi * xi].to_vec(),
                    };
                    resize(&s, [1, yo, xo], kw.order).data
                })
                .collect()
        } else {
            // Unchanged slice count: `need` is the contiguous range [lo, hi).
            let r = spline3_unclipped(&slab, [hi - lo, yo, xo], &[1, 2]);
            r.data.chunks_exact(plane).map(<[f32]>::to_vec).collect()
        };
        let at = |i: usize| &resized[need.binary_search(&i).expect("needed slice")];
        let mut out = vec![0f32; (j1 - j0) * plane];
        for (j, dst) in (j0..j1).zip(out.chunks_exact_mut(plane)) {
            let (i0, i1, w0, w1) = taps[j];
            let (a, b) = (at(i0), at(i1));
            if i0 == i1 || w1 == 0.0 {
                dst.copy_from_slice(a);
            } else {
                for ((d, &x), &y) in dst.iter_mut().zip(a.iter()).zip(b.iter()) {
                    *d = (x as f64 * w0 + y as f64 * w1) as f32;
                }
            }
        }
        if let Some((lo, hi)) = range {
            out.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
        }
        w.write_data(c, [j0, 0, 0], [j1 - j0, yo, xo], &out)?;
    }
    Ok(())
}

fn volume3d_channel(input: &NormalizedReader, c: usize, g: &Geometry, w: &CaseWriter) -> Result<()> {
    let [zi, _, _] = g.in_shape;
    let [zo, yo, xo] = g.out_shape;
    let plane = yo * xo;
    // In-plane passes per input slab into [Z_in, Y_out, X_out].
    let mut mid = vec![0f32; zi * plane];
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for z0 in (0..zi).step_by(NORMALIZED_SLAB) {
        let z1 = (z0 + NORMALIZED_SLAB).min(zi);
        let slab = input.read_channel_slab(c, z0, z1)?;
        let (a, b) = min_max(&slab.data);
        (lo, hi) = (lo.min(a), hi.max(b));
        let r = spline3_unclipped(&slab, [z1 - z0, yo, xo], &[1, 2]);
        mid[z0 * plane..z1 * plane].copy_from_slice(&r.data);
    }
    // The z pass per block of output rows (whole inner chunks along y), written as done.
    let step = w.chunk()[1];
    for y0 in (0..yo).step_by(step) {
        let y1 = (y0 + step).min(yo);
        let mut block = spline3_cols(&mid, zi, plane, zo, y0 * xo, (y1 - y0) * xo);
        block.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
        w.write_data(c, [0, y0, 0], [zo, y1 - y0, xo], &block)?;
    }
    Ok(())
}

/// The output label volume, resampled slab by slab.
fn resample_seg_streamed(
    input: &NormalizedReader,
    g: &Geometry,
    kw: &ResamplingKwargs,
    opts: &ResampleCaseOptions,
) -> Result<Volume<i16>> {
    let [zi, _, _] = g.in_shape;
    let [zo, yo, xo] = g.out_shape;
    let plane = yo * xo;
    let axis = separate_z_axis(kw.force_separate_z, g.current, g.target);
    let path = seg_route(g.in_shape, g.out_shape, axis, kw);
    if path == Path3::Whole {
        let whole = input.read_seg_slab(0, zi)?;
        return resample_seg(&whole, g.out_shape, g.current, g.target, kw, opts.seg_mode);
    }
    let mut out = vec![0i16; zo * plane];
    let step = MIN_SLAB.max(NORMALIZED_SLAB);
    for j0 in (0..zo).step_by(step) {
        let j1 = (j0 + step).min(zo);
        let dst = &mut out[j0 * plane..j1 * plane];
        match path {
            Path3::Copy => dst.copy_from_slice(&input.read_seg_slab(j0, j1)?.data),
            Path3::Rows => {
                let reach = rows_reach(zi, zo, kw.order, j0..j1);
                let slab = input.read_seg_slab(reach.start, reach.end)?;
                let rows = if kw.order == 0 {
                    nearest_rows(&slab, reach.start, g.in_shape, g.out_shape, j0..j1)
                } else {
                    one_hot_linear_rows(&slab, reach.start, g.in_shape, g.out_shape, j0..j1, opts.seg_mode)
                };
                dst.copy_from_slice(&rows);
            }
            Path3::PerSlice { .. } => separate_z_seg_rows(input, g, kw, opts, j0..j1, dst)?,
            Path3::Volume3d | Path3::Whole => {
                return Err(PrepError::Unsupported(format!("segmentation route {path:?}")));
            }
        }
    }
    Ok(Volume { shape: g.out_shape, data: out })
}

/// Separate-z label rows: in-plane per slice (order `kw.order`), then nearest (`order_z` 0) or
/// per-label linear with `round(v) > 0.5`, ascending labels, later labels win (`order_z` 1).
fn separate_z_seg_rows(
    input: &NormalizedReader,
    g: &Geometry,
    kw: &ResamplingKwargs,
    opts: &ResampleCaseOptions,
    rows: std::ops::Range<usize>,
    dst: &mut [i16],
) -> Result<()> {
    let [zi, _, _] = g.in_shape;
    let [zo, yo, xo] = g.out_shape;
    let plane = yo * xo;
    let taps = axis_map_taps(zi, zo, kw.order_z);
    let mut need: Vec<usize> = taps[rows.clone()].iter().flat_map(|t| [t.0, t.1]).collect();
    need.sort_unstable();
    need.dedup();
    let (lo, hi) = (need[0], need[need.len() - 1] + 1);
    let slab = input.read_seg_slab(lo, hi)?;
    let [_, yi, xi] = slab.shape;
    let resized: Vec<Vec<i16>> = need
        .par_iter()
        .map(|&i| {
            let s = Volume { shape: [1, yi, xi], data: slab.data[(i - lo) * yi * xi..(i - lo + 1) * yi * xi].to_vec() };
            resize_segmentation(&s, [1, yo, xo], kw.order, opts.seg_mode).data
        })
        .collect();
    let at = |i: usize| &resized[need.binary_search(&i).expect("needed slice")];
    for (j, d) in rows.zip(dst.chunks_exact_mut(plane)) {
        let (i0, i1, w0, w1) = taps[j];
        if kw.order_z == 0 || i0 == i1 {
            d.copy_from_slice(at(i0));
            continue;
        }
        let (a, b) = (at(i0), at(i1));
        let mut labels = unique_labels(a);
        labels.extend(unique_labels(b));
        labels.sort_unstable();
        labels.dedup();
        d.fill(0);
        for l in labels {
            for ((o, &x), &y) in d.iter_mut().zip(a.iter()).zip(b.iter()) {
                let ind = |v: i16| if v == l { 1.0f32 } else { 0.0 };
                let s = (ind(x) as f64 * w0 + ind(y) as f64 * w1) as f32;
                if (s as f64).round_ties_even() > 0.5 {
                    *o = l;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class_locations::ClassSpec;
    use crate::crop::BBox;
    use crate::plans::ResamplingKwargs;
    use crate::preprocess::{CaseProperties, NormalizedCase};
    use crate::store::{write_normalized, CaseStore};

    fn normalized(shape: [usize; 3], spacing: [f64; 3]) -> NormalizedCase {
        let n = numel(shape);
        let data = (0..2)
            .map(|c| Volume {
                shape,
                data: (0..n)
                    .map(|i| (((i * 7919 + c * 13) % 997) as f32 / 97.0).sin() * 3.0 + (i % 17) as f32 * 0.1)
                    .collect(),
            })
            .collect();
        let seg = Volume {
            shape,
            data: (0..n)
                .map(|i| {
                    let (z, y, x) = (i / (shape[1] * shape[2]), (i / shape[2]) % shape[1], i % shape[2]);
                    if x < 2 {
                        -1
                    } else if (y + z) % 7 < 3 && x > 4 {
                        1
                    } else if y > shape[1] / 2 && x % 5 == 0 {
                        2
                    } else {
                        0
                    }
                })
                .collect(),
        };
        NormalizedCase {
            data,
            seg,
            has_label: true,
            properties: CaseProperties {
                spacing,
                spacing_transposed: spacing,
                shape_before_cropping: shape,
                bbox_used_for_cropping: BBox([[0, shape[0]], [0, shape[1]], [0, shape[2]]]),
                shape_after_cropping_and_before_resampling: shape,
            },
        }
    }

    /// A planned 3d_fullres configuration with the spacing, patch and `order_z` under test.
    fn config(spacing: Vec<f64>, patch: Vec<usize>, order_z: u32) -> ResolvedConfiguration {
        use crate::fingerprint::DatasetFingerprint;
        use crate::planner::{plan_experiment, DatasetInfo, PlannerOptions};
        use crate::plans::IntensityProperties;
        let p = IntensityProperties {
            max: 10.0,
            mean: 1.0,
            median: 1.0,
            min: -10.0,
            percentile_00_5: -5.0,
            percentile_99_5: 5.0,
            std: 2.0,
        };
        let fp = DatasetFingerprint {
            spacings: vec![[1.0; 3]; 4],
            shapes_after_crop: vec![[20, 20, 20]; 4],
            foreground_intensity_properties_per_channel: [("0".to_string(), p.clone()), ("1".to_string(), p)]
                .into_iter()
                .collect(),
            median_relative_size_after_cropping: 1.0,
        };
        let ds = DatasetInfo {
            name: "T".into(),
            channel_names: vec!["CT".into(), "CT".into()],
            num_labels_in_json: 3,
            num_training: 4,
        };
        let plans = plan_experiment(&fp, &ds, &PlannerOptions::default()).unwrap();
        let mut c = plans.configuration("3d_fullres").unwrap();
        c.spacing = spacing;
        c.patch_size = patch;
        c.resampling_data = ResamplingKwargs { is_seg: false, order: 3, order_z, force_separate_z: None };
        c.resampling_seg = ResamplingKwargs { is_seg: true, order: 1, order_z, force_separate_z: None };
        c
    }

    /// Streamed output equals the in-memory resampling (data within f32 rounding of a different
    /// pass order, labels exactly) on every path: 3D spline, unchanged slices (2d), separate-z
    /// with nearest and linear z, same shape.
    #[test]
    fn streamed_equals_in_memory() {
        let cases = [
            ([11usize, 23, 19], [1.5, 0.8, 0.9], config(vec![1.1, 0.9, 0.7], vec![8, 12, 12], 0)),
            ([11, 23, 19], [1.5, 0.8, 0.9], config(vec![0.6, 0.7], vec![12, 12], 0)),
            ([9, 21, 17], [4.0, 0.8, 0.8], config(vec![2.5, 1.0, 0.6], vec![6, 12, 12], 0)),
            ([9, 21, 17], [4.0, 0.8, 0.8], config(vec![2.5, 1.0, 0.6], vec![6, 12, 12], 1)),
            ([9, 21, 17], [1.0, 1.0, 1.0], config(vec![1.0, 1.0, 1.0], vec![6, 12, 12], 0)),
        ];
        for (shape, spacing, cfg) in cases {
            let dir = tempfile::tempdir().unwrap();
            let n = normalized(shape, spacing);
            write_normalized(&dir.path().join("n"), &n).unwrap();
            let input = NormalizedReader::open(&dir.path().join("n")).unwrap();
            let opts = ResampleCaseOptions { classes: ClassSpec::Auto, ..Default::default() };
            // What `resample_case_with` computes, in memory.
            let tgt = target_spacing(&cfg, spacing).unwrap();
            let new_shape = compute_new_shape(shape, spacing, tgt);
            let want_data = resample_data(&n.data, new_shape, spacing, tgt, &cfg.resampling_data).unwrap();
            let want_seg = resample_seg(&n.seg, new_shape, spacing, tgt, &cfg.resampling_seg, opts.seg_mode).unwrap();
            let want_locations = sample_class_locations(&want_seg, &opts.classes, 7);
            let shape_out = resample_case_streamed(&input, &cfg, &opts, 7, &dir.path().join("p")).unwrap();
            assert_eq!(shape_out, new_shape);
            let got = CaseStore::open(&dir.path().join("p")).unwrap();
            assert_eq!(got.read_seg().unwrap(), want_seg, "{shape:?} {:?}", cfg.spacing);
            for (a, b) in got.read_data().unwrap().iter().zip(&want_data) {
                let d = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(d < 1e-4, "{shape:?} {:?}: max difference {d}", cfg.spacing);
            }
            assert_eq!(got.class_locations().unwrap(), want_locations);
            assert!(resample_peak_bytes(&input, &cfg).unwrap() > 0);
        }
    }
}

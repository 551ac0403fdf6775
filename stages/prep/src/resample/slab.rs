//! [`resample_data`](super::resample_data) of one channel, evaluated slab by slab along axis 0.
//!
//! Exporting a prediction resamples every logit channel to the original image grid
//! (§9.4 step 1); done whole, that is one image-sized f32 array per class, the memory
//! blow-up nnU-Net has at CT size (its issue #2912). The probabilities resampler is order 1
//! (or 0), where every output voxel depends on at most two input positions per axis, so the
//! output can be produced a few planes at a time from the (smaller) input. The values are the
//! same bits as the whole-volume functions: the same taps and the same per-voxel arithmetic
//! ([`super::zoom::direct_plane`], [`super::axis_map_taps`]) and the same clipping range
//! (the whole channel's, or each in-plane slice's on the separate-z path).
//!
//! Covered: direct order 0/1 resizing, and the separate-z path when the separate axis is
//! axis 0 (the transposed low-resolution axis, the usual case). Other settings (order 3,
//! another separate axis) report `None` from [`ChannelResampler::new`]; callers then resample
//! the channel whole.

use super::zoom::{axis_taps, direct_plane, min_max, resize, Taps};
use super::{axis_map_taps, check_kwargs, separate_z_axis};
use crate::error::{PrepError, Result};
use crate::plans::ResamplingKwargs;
use nnunet_io::volume::numel;
use nnunet_io::Volume;
use rayon::prelude::*;

enum Plan {
    /// Same shape: the output is the input.
    Copy,
    /// `resize(order 0/1)`: per-axis taps, output clipped to the channel's range (order 1).
    Direct { taps: Vec<Vec<Taps>>, clip: Option<(f32, f32)> },
    /// Separate-z along axis 0: every needed input plane resized in-plane (clipped to its own
    /// range), then blended along axis 0 with `(src0, src1, w0, w1)` per output plane.
    SeparateZ { order: u32, zmap: Vec<(usize, usize, f64, f64)> },
}

/// One channel `[Z, Y, X]` and how to produce its resampled planes.
pub struct ChannelResampler<'a> {
    data: &'a [f32],
    in_shape: [usize; 3],
    out_shape: [usize; 3],
    plan: Plan,
}

impl<'a> ChannelResampler<'a> {
    /// The resampler of `resample_data(&[channel], new_shape, current, new, kwargs)`, or `None`
    /// when this setting is not evaluated by slabs (order 3, a separate axis other than 0).
    pub fn new(
        data: &'a [f32],
        in_shape: [usize; 3],
        out_shape: [usize; 3],
        current_spacing: [f64; 3],
        new_spacing: [f64; 3],
        kwargs: &ResamplingKwargs,
    ) -> Result<Option<ChannelResampler<'a>>> {
        check_kwargs(kwargs)?;
        if data.len() != numel(in_shape) {
            return Err(PrepError::Shape(format!("a channel of {} values is not {in_shape:?}", data.len())));
        }
        let plan = if in_shape == out_shape {
            Plan::Copy
        } else if numel(in_shape) == 0 || numel(out_shape) == 0 || kwargs.order > 1 {
            return Ok(None);
        } else {
            match separate_z_axis(kwargs.force_separate_z, current_spacing, new_spacing) {
                None => Plan::Direct {
                    taps: (0..3).map(|d| axis_taps(in_shape[d], out_shape[d], kwargs.order)).collect(),
                    clip: (kwargs.order > 0).then(|| min_max(data)),
                },
                Some(0) => Plan::SeparateZ {
                    order: kwargs.order,
                    zmap: if in_shape[0] == out_shape[0] {
                        (0..in_shape[0]).map(|i| (i, i, 1.0, 0.0)).collect()
                    } else {
                        axis_map_taps(in_shape[0], out_shape[0], kwargs.order_z)
                    },
                },
                Some(_) => return Ok(None),
            }
        };
        Ok(Some(ChannelResampler { data, in_shape, out_shape, plan }))
    }

    pub fn out_shape(&self) -> [usize; 3] {
        self.out_shape
    }

    /// Writes output planes `[z0, z1)` into `out` (`(z1 − z0) × Y × X` values).
    pub fn planes(&self, z0: usize, z1: usize, out: &mut [f32]) -> Result<()> {
        let plane = self.out_shape[1] * self.out_shape[2];
        if z0 > z1 || z1 > self.out_shape[0] || out.len() != (z1 - z0) * plane {
            return Err(PrepError::Shape(format!(
                "planes {z0}..{z1} of {:?} do not fit a buffer of {}",
                self.out_shape,
                out.len()
            )));
        }
        if plane == 0 {
            return Ok(());
        }
        match &self.plan {
            Plan::Copy => out.copy_from_slice(&self.data[z0 * plane..z1 * plane]),
            Plan::Direct { taps, clip } => {
                out.par_chunks_mut(plane).enumerate().for_each(|(i, o)| {
                    direct_plane(self.data, self.in_shape, taps, z0 + i, o);
                    if let Some((lo, hi)) = clip {
                        o.iter_mut().for_each(|v| *v = v.clamp(*lo, *hi));
                    }
                });
            }
            Plan::SeparateZ { order, zmap } => {
                let rows = &zmap[z0..z1];
                let first = rows.iter().map(|r| r.0.min(r.1)).min().unwrap_or(0);
                let last = rows.iter().map(|r| r.0.max(r.1)).max().unwrap_or(0);
                let [_, a, b] = self.in_shape;
                let [_, c, d] = self.out_shape;
                // The in-plane resized input planes this slab reads, as the whole-volume path
                // computes them (`resize` of each [1, Y, X] plane).
                let resized: Vec<Vec<f32>> = (first..=last)
                    .into_par_iter()
                    .map(|s| {
                        let p = Volume { shape: [1, a, b], data: self.data[s * a * b..(s + 1) * a * b].to_vec() };
                        resize(&p, [1, c, d], *order).data
                    })
                    .collect();
                out.par_chunks_mut(plane).zip(rows).for_each(|(o, &(i0, i1, w0, w1))| {
                    let (x, y) = (&resized[i0 - first], &resized[i1 - first]);
                    for ((v, &p), &q) in o.iter_mut().zip(x).zip(y) {
                        *v = (p as f64 * w0 + q as f64 * w1) as f32;
                    }
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::resample_data;
    use super::*;

    fn ramp(shape: [usize; 3], seed: usize) -> Volume<f32> {
        Volume::from_vec(shape, (0..numel(shape)).map(|i| (((i * 37 + seed) % 23) as f32 - 9.0) * 0.37).collect())
            .unwrap()
    }

    /// Slab by slab (slabs of 1, 3 and all planes) equals the whole-volume resampler bit for bit.
    fn check(shape: [usize; 3], out: [usize; 3], cur: [f64; 3], new: [f64; 3], kw: &ResamplingKwargs) {
        let v = ramp(shape, 5);
        let whole = resample_data(std::slice::from_ref(&v), out, cur, new, kw).unwrap().remove(0);
        let r = ChannelResampler::new(&v.data, shape, out, cur, new, kw).unwrap().expect("slab plan");
        let plane = out[1] * out[2];
        for slab in [1, 3, out[0]] {
            let mut got = vec![0f32; numel(out)];
            let mut z = 0;
            while z < out[0] {
                let z1 = (z + slab).min(out[0]);
                r.planes(z, z1, &mut got[z * plane..z1 * plane]).unwrap();
                z = z1;
            }
            assert!(
                got.iter().zip(&whole.data).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{shape:?} -> {out:?}, slabs of {slab}"
            );
        }
    }

    #[test]
    fn slabs_equal_the_whole_volume() {
        let lin = ResamplingKwargs { is_seg: false, order: 1, order_z: 0, force_separate_z: None };
        // isotropic: direct trilinear, up and down
        check([7, 9, 6], [11, 5, 8], [1.0; 3], [1.0; 3], &lin);
        // anisotropic along axis 0: separate-z, nearest along z
        check([5, 8, 7], [9, 12, 10], [5.0, 1.0, 1.0], [2.5, 0.7, 0.7], &lin);
        // separate-z, linear along z, and z unchanged
        let lin_z = ResamplingKwargs { order_z: 1, ..lin.clone() };
        check([5, 8, 7], [8, 6, 9], [5.0, 1.0, 1.0], [3.0, 1.3, 0.8], &lin_z);
        check([6, 8, 7], [6, 13, 4], [5.0, 1.0, 1.0], [5.0, 0.6, 1.7], &lin);
        // nearest
        let near = ResamplingKwargs { order: 0, ..lin.clone() };
        check([7, 9, 6], [4, 13, 6], [1.0; 3], [1.0; 3], &near);
        // same shape: a copy
        check([3, 4, 5], [3, 4, 5], [1.0; 3], [1.0; 3], &lin);
    }

    #[test]
    fn unsupported_settings_and_bad_slabs() {
        let v = ramp([4, 4, 4], 0);
        let cubic = ResamplingKwargs { is_seg: false, order: 3, order_z: 0, force_separate_z: None };
        assert!(ChannelResampler::new(&v.data, [4; 3], [5; 3], [1.0; 3], [1.0; 3], &cubic).unwrap().is_none());
        let lin = ResamplingKwargs { order: 1, ..cubic.clone() };
        // anisotropic along axis 2: not evaluated by slabs
        assert!(ChannelResampler::new(&v.data, [4; 3], [5; 3], [1.0, 1.0, 5.0], [1.0; 3], &lin).unwrap().is_none());
        let r = ChannelResampler::new(&v.data, [4; 3], [5; 3], [1.0; 3], [1.0; 3], &lin).unwrap().unwrap();
        assert!(r.planes(0, 2, &mut [0f32; 10]).is_err());
        assert!(r.planes(4, 6, &mut [0f32; 50]).is_err());
        assert!(ChannelResampler::new(&v.data[1..], [4; 3], [5; 3], [1.0; 3], [1.0; 3], &lin).is_err());
    }
}

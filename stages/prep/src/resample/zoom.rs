//! `skimage.transform.resize(order, mode='edge', anti_aliasing=False, clip=True)`, which is
//! `scipy.ndimage.zoom(grid_mode=True, mode='nearest')` followed by clipping to the input range
//! (§4.3, §16 "Resampling exactness").
//!
//! - Coordinates: `in = (out + 0.5) * n_in / n_out - 0.5` (evaluated in scipy's operation order).
//! - Order 3: the volume is edge-padded by 12 voxels per side (scipy's `_prepad_for_spline_filter`
//!   for 'nearest'), B-spline prefiltered with mirror boundary conditions, and evaluated with the
//!   cubic B-spline weights. Prefilter and evaluation are separable, so they run axis by axis
//!   (f64 arithmetic per line, f32 storage between passes; an axis whose size does not change is
//!   left untouched, which equals scipy up to rounding).
//! - Orders 0 and 1: evaluated directly as the tensor product scipy computes
//!   (`((v*w0)*w1)*w2`, taps in C order, out-of-range taps clamped), bit-identical in f64.
//!
//! Volumes are 3D; 2D images are volumes with a leading axis of size 1.

use nnunet_io::volume::numel;
use nnunet_io::Volume;
use rayon::prelude::*;

/// scipy's pre-padding for spline filtering in 'nearest' mode.
const NPAD: usize = 12;
/// Cubic B-spline pole `sqrt(3) - 2`.
const POLE3: f64 = -0.267_949_192_431_122_7;

/// Input coordinate of output index `j` (scipy `NI_ZoomShift`, grid_mode).
#[inline]
pub(crate) fn grid_coord(j: usize, zoom: f64) -> f64 {
    let mut cc = j as f64;
    cc += 0.5;
    cc *= zoom;
    cc -= 0.5;
    cc
}

/// Interpolation taps of one output index along one axis: `(input index, weight)`.
pub(crate) type Taps = Vec<(usize, f64)>;

/// Per-output-index taps for order 0 or 1 along an axis of `n_in` -> `n_out` (indices clamped,
/// i.e. mode 'nearest'). An unchanged axis gets a single tap of weight 1.
pub(crate) fn axis_taps(n_in: usize, n_out: usize, order: u32) -> Vec<Taps> {
    if n_in == n_out {
        return (0..n_out).map(|j| vec![(j, 1.0)]).collect();
    }
    let zoom = n_in as f64 / n_out as f64;
    let clamp = |i: i64| i.clamp(0, n_in as i64 - 1) as usize;
    (0..n_out)
        .map(|j| {
            let cc = grid_coord(j, zoom);
            if order == 0 {
                vec![(clamp((cc + 0.5).floor() as i64), 1.0)]
            } else {
                let f = cc.floor();
                let x = cc - f;
                let w0 = 1.0 - x;
                let w1 = 1.0 - w0;
                let s = f as i64;
                vec![(clamp(s), w0), (clamp(s + 1), w1)]
            }
        })
        .collect()
}

/// Nearest-neighbour source index along an axis (order 0).
pub(crate) fn nearest_index(n_in: usize, n_out: usize) -> Vec<usize> {
    axis_taps(n_in, n_out, 0).into_iter().map(|t| t[0].0).collect()
}

pub(crate) fn min_max(data: &[f32]) -> (f32, f32) {
    data.par_iter()
        .fold(|| (f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        .reduce(|| (f32::INFINITY, f32::NEG_INFINITY), |a, b| (a.0.min(b.0), a.1.max(b.1)))
}

/// Resizes one volume like skimage `resize(order, mode='edge', anti_aliasing=False, clip=True)`.
/// Supported orders: 0, 1, 3.
pub fn resize(vol: &Volume<f32>, out_shape: [usize; 3], order: u32) -> Volume<f32> {
    if vol.shape == out_shape {
        return vol.clone();
    }
    if numel(out_shape) == 0 || vol.is_empty() {
        return Volume { shape: out_shape, data: vec![0.0; numel(out_shape)] };
    }
    let mut out = match order {
        0 | 1 => resize_direct(vol, out_shape, order),
        _ => resize_spline3(vol, out_shape),
    };
    if order > 0 {
        let (lo, hi) = min_max(&vol.data);
        out.data.par_iter_mut().for_each(|v| *v = v.clamp(lo, hi));
    }
    out
}

/// Orders 0/1: direct tensor-product evaluation, exactly as scipy accumulates it.
fn resize_direct(vol: &Volume<f32>, out_shape: [usize; 3], order: u32) -> Volume<f32> {
    let taps: Vec<Vec<Taps>> = (0..3).map(|d| axis_taps(vol.shape[d], out_shape[d], order)).collect();
    let plane = out_shape[1] * out_shape[2];
    let mut data = vec![0.0f32; numel(out_shape)];
    data.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, out)| direct_plane(&vol.data, vol.shape, &taps, i, out));
    Volume { shape: out_shape, data }
}

/// Output plane `i` (axis 0) of [`resize_direct`] with per-axis `taps`, into `out`
/// (`[out Y, out X]`); also what [`crate::resample::ChannelResampler`] evaluates slab by slab.
pub(crate) fn direct_plane(data: &[f32], shape: [usize; 3], taps: &[Vec<Taps>], i: usize, out: &mut [f32]) {
    let [_, s1, s2] = shape;
    let width = taps[2].len().max(1);
    for (j, row) in out.chunks_mut(width).enumerate() {
        for (k, o) in row.iter_mut().enumerate() {
            let mut t = 0.0f64;
            for &(a, wa) in &taps[0][i] {
                for &(b, wb) in &taps[1][j] {
                    let base = (a * s1 + b) * s2;
                    for &(c, wc) in &taps[2][k] {
                        t += data[base + c] as f64 * wa * wb * wc;
                    }
                }
            }
            *o = t as f32;
        }
    }
}

/// Order 3: separable prefilter + evaluation, one axis at a time.
fn resize_spline3(vol: &Volume<f32>, out_shape: [usize; 3]) -> Volume<f32> {
    spline3_unclipped(vol, out_shape, &[0, 1, 2])
}

/// The order-3 passes of [`resize`] along those of `axes` whose size changes, without the final
/// clipping (a streamed resize runs the in-plane passes per slab and clips once at the end).
pub(crate) fn spline3_unclipped(vol: &Volume<f32>, out_shape: [usize; 3], axes: &[usize]) -> Volume<f32> {
    // Process the most shrinking axes first (least work); the result is order independent.
    let mut axes: Vec<usize> = axes.iter().copied().filter(|&d| vol.shape[d] != out_shape[d]).collect();
    axes.sort_by(|&a, &b| {
        let ra = out_shape[a] as f64 / vol.shape[a] as f64;
        let rb = out_shape[b] as f64 / vol.shape[b] as f64;
        ra.total_cmp(&rb)
    });
    let mut shape = vol.shape;
    let mut cur: Option<Vec<f32>> = None;
    for &ax in &axes {
        let src: &[f32] = cur.as_deref().unwrap_or(&vol.data);
        let outer: usize = shape[..ax].iter().product();
        let inner: usize = shape[ax + 1..].iter().product();
        let next = spline3_axis(src, outer, shape[ax], inner, out_shape[ax]);
        shape[ax] = out_shape[ax];
        cur = Some(next);
    }
    Volume { shape, data: cur.unwrap_or_else(|| vol.data.clone()) }
}

/// Cubic B-spline weights of scipy's `get_spline_interpolation_weights` (order 3).
#[inline]
fn cubic_weights(cc: f64) -> (i64, [f64; 4]) {
    let f = cc.floor();
    let x = cc - f;
    let y = x;
    let z = 1.0 - x;
    let w1 = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
    let w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
    let w0 = z * z * z / 6.0;
    let mut w3 = 1.0;
    w3 -= w0;
    w3 -= w1;
    w3 -= w2;
    (f as i64 - 1, [w0, w1, w2, w3])
}

/// Mirror-boundary cubic B-spline prefilter of `cols` interleaved lines of length `len`
/// (`buf[r * cols + c]`), scipy's `apply_filter` with `_init_causal_mirror` /
/// `_init_anticausal_mirror`.
fn prefilter_mirror(buf: &mut [f64], len: usize, cols: usize) {
    if len < 2 {
        return;
    }
    let z = POLE3;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    for v in buf.iter_mut() {
        *v *= gain;
    }
    let z_n_1 = z.powf((len - 1) as f64);
    let denom = 1.0 - z_n_1 * z_n_1;
    for c in 0..cols {
        let at = |r: usize| r * cols + c;
        let mut c0 = buf[at(0)] + z_n_1 * buf[at(len - 1)];
        let mut z_i = z;
        for i in 1..len - 1 {
            c0 += z_i * (buf[at(i)] + z_n_1 * buf[at(len - 1 - i)]);
            z_i *= z;
            // scipy sums all n terms; past |z|^i < 1e-22 they no longer change a double's
            // leading 17 digits (f32 storage keeps 7), and they cost as much as the filter.
            if z_i.abs() < 1e-22 {
                break;
            }
        }
        buf[at(0)] = c0 / denom;
    }
    for r in 1..len {
        let (prev, cur) = buf.split_at_mut(r * cols);
        let prev = &prev[(r - 1) * cols..];
        for (v, p) in cur[..cols].iter_mut().zip(prev) {
            *v += z * p;
        }
    }
    for c in 0..cols {
        let a = buf[(len - 2) * cols + c];
        let b = buf[(len - 1) * cols + c];
        buf[(len - 1) * cols + c] = (z * a + b) * z / (z * z - 1.0);
    }
    for r in (0..len - 1).rev() {
        let (cur, next) = buf.split_at_mut((r + 1) * cols);
        let cur = &mut cur[r * cols..];
        for (v, n) in cur.iter_mut().zip(&next[..cols]) {
            *v = z * (n - *v);
        }
    }
}

/// Column chunk width for the interleaved line buffers.
const COLS: usize = 64;

/// One order-3 pass along an axis of `n` -> `m` samples of a `[outer, n, inner]` array.
struct Spline3Pass {
    n: usize,
    inner: usize,
    len: usize,
    weights: Vec<(usize, [f64; 4])>,
}

impl Spline3Pass {
    fn new(n: usize, inner: usize, m: usize) -> Self {
        let zoom = n as f64 / m as f64;
        let len = n + 2 * NPAD;
        let weights = (0..m)
            .map(|j| {
                let (s, w) = cubic_weights(grid_coord(j, zoom) + NPAD as f64);
                (s.clamp(0, len as i64 - 4) as usize, w)
            })
            .collect();
        Spline3Pass { n, inner, len, weights }
    }

    /// Lines `[o0, o0 + g)` of an `[outer, n]` array (`inner == 1`: each line is a row), written
    /// as rows of `m` into `dst`. The rows are interleaved in `buf` so the recursive prefilter
    /// runs across `g` lines at once instead of one scalar line at a time.
    fn rows(&self, src: &[f32], o0: usize, g: usize, buf: &mut Vec<f64>, dst: &mut [f32]) {
        let (n, len) = (self.n, self.len);
        buf.clear();
        buf.resize(len * g, 0.0);
        for l in 0..g {
            let row = &src[(o0 + l) * n..(o0 + l + 1) * n];
            for r in 0..len {
                buf[r * g + l] = row[r.saturating_sub(NPAD).min(n - 1)] as f64;
            }
        }
        prefilter_mirror(buf, len, g);
        let m = self.weights.len();
        for (j, (s, wt)) in self.weights.iter().enumerate() {
            for l in 0..g {
                let t = buf[s * g + l] * wt[0]
                    + buf[(s + 1) * g + l] * wt[1]
                    + buf[(s + 2) * g + l] * wt[2]
                    + buf[(s + 3) * g + l] * wt[3];
                dst[l * m + j] = t as f32;
            }
        }
    }

    /// Columns `[c0, c0 + w)` of block `o` of `src`, written as `[m, w]` into `dst` (row stride `ds`).
    #[allow(clippy::too_many_arguments)]
    fn block(&self, src: &[f32], o: usize, c0: usize, w: usize, buf: &mut Vec<f64>, dst: &mut [f32], ds: usize) {
        let (n, inner, len) = (self.n, self.inner, self.len);
        buf.clear();
        buf.resize(len * w, 0.0);
        let src_row = |r: usize| &src[(o * n + r) * inner + c0..(o * n + r) * inner + c0 + w];
        for r in 0..len {
            let sr = r.saturating_sub(NPAD).min(n - 1);
            let row = src_row(sr);
            for (b, &v) in buf[r * w..(r + 1) * w].iter_mut().zip(row) {
                *b = v as f64;
            }
        }
        prefilter_mirror(buf, len, w);
        for (j, (s, wt)) in self.weights.iter().enumerate() {
            let out = &mut dst[j * ds..j * ds + w];
            for (c, o) in out.iter_mut().enumerate() {
                let t = buf[s * w + c] * wt[0]
                    + buf[(s + 1) * w + c] * wt[1]
                    + buf[(s + 2) * w + c] * wt[2]
                    + buf[(s + 3) * w + c] * wt[3];
                *o = t as f32;
            }
        }
    }
}

/// The order-3 pass along axis 0 of `src` (`[n, inner]`, one block) for the columns
/// `[c0, c0 + w)` only: `[m, w]`. Streamed resizes run the last pass in column blocks.
pub(crate) fn spline3_cols(src: &[f32], n: usize, inner: usize, m: usize, c0: usize, w: usize) -> Vec<f32> {
    let pass = Spline3Pass::new(n, inner, m);
    let mut out = vec![0.0f32; m * w];
    let starts: Vec<usize> = (0..w).step_by(COLS).collect();
    let parts: Vec<(usize, usize, Vec<f32>)> = starts
        .par_iter()
        .map_init(Vec::new, |buf, &k| {
            let cw = COLS.min(w - k);
            let mut tmp = vec![0.0f32; m * cw];
            pass.block(src, 0, c0 + k, cw, buf, &mut tmp, cw);
            (k, cw, tmp)
        })
        .collect();
    for (k, cw, tmp) in parts {
        for j in 0..m {
            out[j * w + k..j * w + k + cw].copy_from_slice(&tmp[j * cw..(j + 1) * cw]);
        }
    }
    out
}

/// One order-3 pass: `[outer, n, inner]` -> `[outer, m, inner]`.
pub(crate) fn spline3_axis(src: &[f32], outer: usize, n: usize, inner: usize, m: usize) -> Vec<f32> {
    let pass = Spline3Pass::new(n, inner, m);
    let block = |o: usize, c0: usize, w: usize, buf: &mut Vec<f64>, dst: &mut [f32], ds: usize| {
        pass.block(src, o, c0, w, buf, dst, ds)
    };
    let mut out = vec![0.0f32; outer * m * inner];
    let threads = rayon::current_num_threads().max(1);
    if inner == 1 {
        // The last axis: rows, [`COLS`] of them per interleaved buffer.
        out.par_chunks_mut(m * COLS).enumerate().for_each_init(Vec::new, |buf, (gi, dst)| {
            let g = dst.len() / m;
            pass.rows(src, gi * COLS, g, buf, dst);
        });
    } else if outer >= 2 * threads || inner <= COLS {
        // Parallel over blocks; each block is contiguous in the output.
        let per = (65_536 / (m * inner).max(1)).max(1);
        out.par_chunks_mut((m * inner * per).max(1)).enumerate().for_each(|(g, chunk)| {
            let mut buf = Vec::new();
            let mut tmp = vec![0.0f32; m * COLS.min(inner)];
            for (bi, dst) in chunk.chunks_mut(m * inner).enumerate() {
                let o = g * per + bi;
                let mut c0 = 0;
                while c0 < inner {
                    let w = COLS.min(inner - c0);
                    if w == inner {
                        block(o, 0, w, &mut buf, dst, inner);
                    } else {
                        block(o, c0, w, &mut buf, &mut tmp, w);
                        for j in 0..m {
                            dst[j * inner + c0..j * inner + c0 + w].copy_from_slice(&tmp[j * w..(j + 1) * w]);
                        }
                    }
                    c0 += w;
                }
            }
        });
    } else {
        // Few blocks (the slowest axis): parallel over column chunks, then scatter.
        for o in 0..outer {
            let starts: Vec<usize> = (0..inner).step_by(COLS).collect();
            let parts: Vec<(usize, usize, Vec<f32>)> = starts
                .par_iter()
                .map_init(Vec::new, |buf, &c0| {
                    let w = COLS.min(inner - c0);
                    let mut tmp = vec![0.0f32; m * w];
                    block(o, c0, w, buf, &mut tmp, w);
                    (c0, w, tmp)
                })
                .collect();
            let dst = &mut out[o * m * inner..(o + 1) * m * inner];
            for (c0, w, tmp) in parts {
                for j in 0..m {
                    dst[j * inner + c0..j * inner + c0 + w].copy_from_slice(&tmp[j * w..(j + 1) * w]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: [usize; 3]) -> Volume<f32> {
        Volume::from_vec(shape, (0..numel(shape)).map(|i| ((i * 37) % 11) as f32 - 3.0).collect()).unwrap()
    }

    #[test]
    fn identity_and_constant() {
        let v = ramp([3, 4, 5]);
        assert_eq!(resize(&v, [3, 4, 5], 3), v);
        let c = Volume::filled([4, 5, 6], 2.5f32);
        for order in [0, 1, 3] {
            let r = resize(&c, [7, 3, 9], order);
            assert!(r.data.iter().all(|&x| (x - 2.5).abs() < 1e-6), "order {order}");
        }
    }

    #[test]
    fn linear_upsample_by_two_is_exact() {
        // 1D [0, 1] -> 4 samples at -0.25, 0.25, 0.75, 1.25 → clamped edge: [0, .25, .75, 1].
        let v = Volume::from_vec([1, 1, 2], vec![0.0f32, 1.0]).unwrap();
        let r = resize(&v, [1, 1, 4], 1);
        assert_eq!(r.data, vec![0.0, 0.25, 0.75, 1.0]);
        let n = resize(&v, [1, 1, 4], 0);
        assert_eq!(n.data, vec![0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn cubic_reproduces_linear_ramps_inside_and_clips() {
        // B-splines of order 3 reproduce linear functions away from the (edge-padded) border.
        let n = 40;
        let v = Volume::from_vec([1, 1, n], (0..n).map(|i| i as f32).collect()).unwrap();
        let m = 80;
        let r = resize(&v, [1, 1, m], 3);
        for j in 20..60 {
            let x = (j as f64 + 0.5) * n as f64 / m as f64 - 0.5;
            assert!((r.data[j] as f64 - x).abs() < 1e-4, "{j}: {} vs {x}", r.data[j]);
        }
        assert!(r.data.iter().all(|&x| (0.0..=(n - 1) as f32).contains(&x)));
    }

    #[test]
    fn spline_paths_agree_between_axes() {
        // Resizing along each axis of a transposed volume gives the transposed result.
        let v = ramp([5, 6, 7]);
        let r = resize(&v, [9, 4, 7], 3);
        let vt = v.transpose([2, 1, 0]);
        let rt = resize(&vt, [7, 4, 9], 3).transpose([2, 1, 0]);
        for (a, b) in r.data.iter().zip(&rt.data) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}

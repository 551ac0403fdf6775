//! torch `interpolate` equivalents on dense `[Z, Y, X]` buffers: `nearest-exact` (any type) and
//! (tri)linear with `align_corners = False`, used by the low-resolution simulation (§8.2 step 7)
//! and the deep-supervision targets (step 15).

/// `numel` of a shape.
pub fn numel(s: [usize; 3]) -> usize {
    s[0] * s[1] * s[2]
}

/// torch's `nearest_neighbor_exact_compute_source_index`: `min(floor((dst + 0.5) · in/out), in − 1)`,
/// with the scale in f32 as torch computes it.
pub fn nearest_exact_index(dst: usize, n_in: usize, n_out: usize) -> usize {
    let scale = n_in as f32 / n_out as f32;
    (((dst as f32 + 0.5) * scale).floor() as usize).min(n_in - 1)
}

/// `interpolate(x, out, mode='nearest-exact')` of a `[Z, Y, X]` volume.
pub fn nearest_exact<T: Copy>(src: &[T], s: [usize; 3], o: [usize; 3]) -> Vec<T> {
    if s == o {
        return src.to_vec();
    }
    let iz: Vec<usize> = (0..o[0]).map(|d| nearest_exact_index(d, s[0], o[0])).collect();
    let iy: Vec<usize> = (0..o[1]).map(|d| nearest_exact_index(d, s[1], o[1])).collect();
    let ix: Vec<usize> = (0..o[2]).map(|d| nearest_exact_index(d, s[2], o[2])).collect();
    let mut out = Vec::with_capacity(numel(o));
    for &z in &iz {
        for &y in &iy {
            let row = &src[(z * s[1] + y) * s[2]..];
            out.extend(ix.iter().map(|&x| row[x]));
        }
    }
    out
}

/// Source indices and weights of linear interpolation along one axis (torch's
/// `area_pixel_compute_source_index`, `align_corners = False`, negative sources clamped to 0).
pub fn linear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_in as f32 / n_out as f32;
    (0..n_out)
        .map(|d| {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(n_in - 1);
            let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// `interpolate(x, out, mode='trilinear', align_corners=False)` of a `[Z, Y, X]` volume,
/// separably (x, then y, then z). Axes whose size does not change are copied.
pub fn linear(src: &[f32], s: [usize; 3], o: [usize; 3]) -> Vec<f32> {
    // Along x.
    let mut a = if s[2] == o[2] {
        src.to_vec()
    } else {
        let taps = linear_taps(s[2], o[2]);
        let mut out = Vec::with_capacity(s[0] * s[1] * o[2]);
        for row in src.chunks_exact(s[2]) {
            out.extend(taps.iter().map(|&(i0, i1, l)| row[i0] * (1.0 - l) + row[i1] * l));
        }
        out
    };
    // Along y.
    if s[1] != o[1] {
        let taps = linear_taps(s[1], o[1]);
        let w = o[2];
        let mut out = vec![0.0f32; s[0] * o[1] * w];
        for z in 0..s[0] {
            let plane = &a[z * s[1] * w..(z + 1) * s[1] * w];
            for (y, &(i0, i1, l)) in taps.iter().enumerate() {
                let dst = &mut out[(z * o[1] + y) * w..(z * o[1] + y + 1) * w];
                let r0 = &plane[i0 * w..(i0 + 1) * w];
                let r1 = &plane[i1 * w..(i1 + 1) * w];
                for ((d, &p), &q) in dst.iter_mut().zip(r0).zip(r1) {
                    *d = p * (1.0 - l) + q * l;
                }
            }
        }
        a = out;
    }
    // Along z.
    if s[0] != o[0] {
        let taps = linear_taps(s[0], o[0]);
        let pl = o[1] * o[2];
        let mut out = vec![0.0f32; o[0] * pl];
        for (z, &(i0, i1, l)) in taps.iter().enumerate() {
            let dst = &mut out[z * pl..(z + 1) * pl];
            let p0 = &a[i0 * pl..(i0 + 1) * pl];
            let p1 = &a[i1 * pl..(i1 + 1) * pl];
            for ((d, &p), &q) in dst.iter_mut().zip(p0).zip(p1) {
                *d = p * (1.0 - l) + q * l;
            }
        }
        a = out;
    }
    a
}

/// `round(shape × scale)` per axis, Python rounding (half to even) (§8.2 steps 7 and 15).
pub fn scaled_shape(s: [usize; 3], scale: [f64; 3]) -> [usize; 3] {
    let r = |d: usize| ((s[d] as f64 * scale[d]).round_ties_even() as usize).max(1);
    [r(0), r(1), r(2)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_exact_matches_torch_indices() {
        // torch: interpolate(arange(5), size=2, mode='nearest-exact') -> [1, 3];
        // size 3 from 7 -> floor((d+.5)*7/3) = [1, 3, 5].
        assert_eq!(nearest_exact(&[0, 1, 2, 3, 4], [1, 1, 5], [1, 1, 2]), vec![1, 3]);
        assert_eq!(nearest_exact(&[0, 1, 2, 3, 4, 5, 6], [1, 1, 7], [1, 1, 3]), vec![1, 3, 5]);
        // 2x downsampling picks odd indices on every axis.
        let v: Vec<i16> = (0..64).collect();
        let d = nearest_exact(&v, [4, 4, 4], [2, 2, 2]);
        assert_eq!(d, vec![21, 23, 29, 31, 53, 55, 61, 63]);
    }

    #[test]
    fn linear_matches_torch() {
        // torch: interpolate([[0., 10.]], size=4, mode='linear', align_corners=False)
        //   -> [0, 2.5, 7.5, 10].
        assert_eq!(linear(&[0.0, 10.0], [1, 1, 2], [1, 1, 4]), vec![0.0, 2.5, 7.5, 10.0]);
        // Separable trilinear of a linear ramp in z stays a ramp inside.
        let src: Vec<f32> = (0..2).flat_map(|z| std::iter::repeat_n(z as f32, 4)).collect();
        let up = linear(&src, [2, 2, 2], [4, 2, 2]);
        assert_eq!(&up[..4], &[0.0; 4]);
        assert_eq!(&up[4..8], &[0.25; 4]);
        assert_eq!(&up[12..16], &[1.0; 4]);
        assert_eq!(scaled_shape([40, 56, 40], [0.5, 0.5, 0.5]), [20, 28, 20]);
        assert_eq!(scaled_shape([5, 5, 5], [0.5, 0.5, 0.5]), [2, 2, 2]); // 2.5 -> 2 (half to even)
    }
}

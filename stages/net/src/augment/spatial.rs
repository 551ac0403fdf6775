//! The spatial transform (§8.2 step 1): rotation and scaling about the patch centre, sampled
//! from the enlarged crop into the final patch, in pure Rust.
//!
//! Geometry (batchgeneratorsv2 `SpatialTransform`, `random_crop=False`, align_corners False):
//! output voxel `o` reads input position `A · (o − c_out) + c_in`, `c = (n − 1) / 2`, with
//! `A = Rz·Ry·Rx·S` acting on `(axis0, axis1, axis2)` vectors. Images: trilinear, zero padding.
//! Labels: per-label linear interpolation of the one-hot (outside the input = label −1), argmax;
//! scores are compared at f16 precision (×1000) like the peer, and ties go to the nearest
//! neighbour's label when it is among the tied ones, else to the lowest label. With no rotation
//! and no scaling: a pure integer centre crop (start `floor(S/2) − P//2`).

/// Rotation angles per axis (radians) and scale factors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub m: [[f64; 3]; 3],
}

impl Affine {
    pub const IDENTITY: Affine = Affine { m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] };

    /// `Rz·Ry·Rx·S` of batchgeneratorsv2's `create_affine_matrix_3d(angles, scales)`.
    pub fn from_angles_scales(a: [f64; 3], s: [f64; 3]) -> Affine {
        let (c0, s0) = (a[0].cos(), a[0].sin());
        let (c1, s1) = (a[1].cos(), a[1].sin());
        let (c2, s2) = (a[2].cos(), a[2].sin());
        let rx = [[1.0, 0.0, 0.0], [0.0, c0, -s0], [0.0, s0, c0]];
        let ry = [[c1, 0.0, s1], [0.0, 1.0, 0.0], [-s1, 0.0, c1]];
        let rz = [[c2, -s2, 0.0], [s2, c2, 0.0], [0.0, 0.0, 1.0]];
        let sm = [[s[0], 0.0, 0.0], [0.0, s[1], 0.0], [0.0, 0.0, s[2]]];
        Affine { m: mul(&mul(&mul(&rz, &ry), &rx), &sm) }
    }
}

fn mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// Integer centre crop of `[C, S]` data and `[S]` seg into `P` (pads data 0, seg −1).
pub fn center_crop(data: &[f32], seg: &[i16], c: usize, s: [usize; 3], p: [usize; 3]) -> (Vec<f32>, Vec<i16>) {
    let start: [i64; 3] = std::array::from_fn(|d| (s[d] / 2) as i64 - (p[d] / 2) as i64);
    crop_box(data, seg, c, s, start, p)
}

/// Crop `[start, start + p)` of `[C, S]` data and `[S]` seg (outside: data 0, seg −1).
pub fn crop_box(
    data: &[f32],
    seg: &[i16],
    c: usize,
    s: [usize; 3],
    start: [i64; 3],
    p: [usize; 3],
) -> (Vec<f32>, Vec<i16>) {
    let n_in = s[0] * s[1] * s[2];
    let n_out = p[0] * p[1] * p[2];
    let mut od = vec![0.0f32; c * n_out];
    let mut os = vec![-1i16; n_out];
    // Valid x range of each output row.
    let x0 = (-start[2]).clamp(0, p[2] as i64) as usize;
    let x1 = (s[2] as i64 - start[2]).clamp(x0 as i64, p[2] as i64) as usize;
    for z in 0..p[0] {
        let iz = start[0] + z as i64;
        if iz < 0 || iz >= s[0] as i64 {
            continue;
        }
        for y in 0..p[1] {
            let iy = start[1] + y as i64;
            if iy < 0 || iy >= s[1] as i64 || x0 >= x1 {
                continue;
            }
            let src = (iz as usize * s[1] + iy as usize) * s[2] + (start[2] + x0 as i64) as usize;
            let dst = (z * p[1] + y) * p[2] + x0;
            let len = x1 - x0;
            os[dst..dst + len].copy_from_slice(&seg[src..src + len]);
            for ch in 0..c {
                od[ch * n_out + dst..ch * n_out + dst + len]
                    .copy_from_slice(&data[ch * n_in + src..ch * n_in + src + len]);
            }
        }
    }
    (od, os)
}

/// `floor` as an integer without a libm call (the default x86-64 target has no SSE4.1 round).
#[inline(always)]
fn floor_i64(x: f64) -> i64 {
    let i = x as i64;
    if (i as f64) > x {
        i - 1
    } else {
        i
    }
}

/// Rounds an f32 to f16 precision (round to nearest even; normal range), as the peer's f16
/// label scores.
#[inline]
fn to_f16_precision(x: f32) -> f32 {
    if x < 6.103_515_6e-5 {
        return x;
    }
    let b = x.to_bits();
    let lsb = (b >> 13) & 1;
    f32::from_bits((b + 0x0FFF + lsb) & !0x1FFF)
}

/// Samples `[C, S]` data and `[S]` seg through `affine` into `[C, P]` / `[P]`.
///
/// One function (~110 lines) on purpose: the hot loop of augmentation, with the coordinate
/// transform, bounds handling and both interpolations inlined per output row.
pub fn warp(
    data: &[f32],
    seg: &[i16],
    c: usize,
    s: [usize; 3],
    p: [usize; 3],
    affine: &Affine,
) -> (Vec<f32>, Vec<i16>) {
    let n_in = s[0] * s[1] * s[2];
    let n_out = p[0] * p[1] * p[2];
    assert!(data.len() >= c * n_in && seg.len() >= n_in, "warp: buffers smaller than the shape");
    let mut od = vec![0.0f32; c * n_out];
    let mut os = vec![0i16; n_out];
    let m = &affine.m;
    let c_in: [f64; 3] = std::array::from_fn(|d| (s[d] as f64 - 1.0) / 2.0);
    let c_out: [f64; 3] = std::array::from_fn(|d| (p[d] as f64 - 1.0) / 2.0);
    let (sz, sy, sx) = (s[0] as i64, s[1] as i64, s[2] as i64);
    let (st_z, st_y) = (s[1] * s[2], s[2]);
    let col_x = [m[0][2], m[1][2], m[2][2]];
    let mut labels = [0i16; 8];
    let mut weights = [0f32; 8];
    for z in 0..p[0] {
        let dz = z as f64 - c_out[0];
        for y in 0..p[1] {
            let dy = y as f64 - c_out[1];
            let dx0 = -c_out[2];
            let base: [f64; 3] = std::array::from_fn(|d| m[d][0] * dz + m[d][1] * dy + m[d][2] * dx0 + c_in[d]);
            let row = (z * p[1] + y) * p[2];
            for x in 0..p[2] {
                let xf = x as f64;
                let pz = base[0] + col_x[0] * xf;
                let py = base[1] + col_x[1] * xf;
                let px = base[2] + col_x[2] * xf;
                let (iz, iy, ix) = (floor_i64(pz), floor_i64(py), floor_i64(px));
                let (tz, ty, tx) = ((pz - iz as f64) as f32, (py - iy as f64) as f32, (px - ix as f64) as f32);
                let o = row + x;
                // Corner weights in the order (dz, dy, dx) = 000, 001, 010, 011, 100, ...
                let (uz, uy, ux) = (1.0 - tz, 1.0 - ty, 1.0 - tx);
                let (zy00, zy01, zy10, zy11) = (uz * uy, uz * ty, tz * uy, tz * ty);
                let w = [zy00 * ux, zy00 * tx, zy01 * ux, zy01 * tx, zy10 * ux, zy10 * tx, zy11 * ux, zy11 * tx];
                let inside = iz >= 0 && iy >= 0 && ix >= 0 && iz + 1 < sz && iy + 1 < sy && ix + 1 < sx;
                if inside {
                    let b = iz as usize * st_z + iy as usize * st_y + ix as usize;
                    let offs = [
                        b,
                        b + 1,
                        b + st_y,
                        b + st_y + 1,
                        b + st_z,
                        b + st_z + 1,
                        b + st_z + st_y,
                        b + st_z + st_y + 1,
                    ];
                    // SAFETY: `inside` guarantees every corner index is < n_in (the largest is
                    // b + st_z + st_y + 1 with iz + 1 < sz, iy + 1 < sy, ix + 1 < sx), and
                    // `data` holds `c` channels of n_in values (checked at the top).
                    unsafe {
                        for ch in 0..c {
                            let d = data.get_unchecked(ch * n_in..(ch + 1) * n_in);
                            let mut acc = 0.0f32;
                            for k in 0..8 {
                                acc += w[k] * *d.get_unchecked(offs[k]);
                            }
                            *od.get_unchecked_mut(ch * n_out + o) = acc;
                        }
                        for k in 0..8 {
                            labels[k] = *seg.get_unchecked(offs[k]);
                        }
                    }
                    let l0 = labels[0];
                    if labels.iter().all(|&l| l == l0) {
                        os[o] = l0;
                        continue;
                    }
                    weights = w;
                } else {
                    // Corners outside the input: data 0, label −1.
                    let mut any_in = false;
                    for k in 0..8 {
                        let cz = iz + (k as i64 >> 2);
                        let cy = iy + ((k as i64 >> 1) & 1);
                        let cx = ix + (k as i64 & 1);
                        if cz >= 0 && cy >= 0 && cx >= 0 && cz < sz && cy < sy && cx < sx {
                            let q = cz as usize * st_z + cy as usize * st_y + cx as usize;
                            labels[k] = seg[q];
                            any_in = true;
                            for ch in 0..c {
                                od[ch * n_out + o] += w[k] * data[ch * n_in + q];
                            }
                        } else {
                            labels[k] = -1;
                        }
                        weights[k] = w[k];
                    }
                    if !any_in {
                        os[o] = -1;
                        continue;
                    }
                }
                // Nearest neighbour (grid_sample 'nearest': round half to even), only for ties.
                let nn = || {
                    let rz = pz.round_ties_even() as i64 - iz;
                    let ry = py.round_ties_even() as i64 - iy;
                    let rx = px.round_ties_even() as i64 - ix;
                    labels[((rz << 2) | (ry << 1) | rx) as usize]
                };
                os[o] = argmax_label(&labels, &weights, nn);
            }
        }
    }
    (od, os)
}

/// Argmax over the summed weights per distinct label (f16-precision scores ×1000); ties go to
/// the nearest neighbour's label `nn()` when it is tied, else to the lowest tied label.
#[inline]
fn argmax_label(labels: &[i16; 8], weights: &[f32; 8], nn: impl FnOnce() -> i16) -> i16 {
    // Fast path: exactly two distinct labels (the usual boundary voxel).
    let l0 = labels[0];
    let mut l1 = l0;
    let (mut s0, mut s1) = (0.0f32, 0.0f32);
    let mut two = true;
    for k in 0..8 {
        let l = labels[k];
        if l == l0 {
            s0 += weights[k];
        } else if l1 == l0 || l == l1 {
            l1 = l;
            s1 += weights[k];
        } else {
            two = false;
            break;
        }
    }
    if two {
        let (a, b) = (to_f16_precision(s0 * 1000.0), to_f16_precision(s1 * 1000.0));
        if a != b || l1 == l0 {
            return if a > b || l1 == l0 { l0 } else { l1 };
        }
        let nn = nn();
        return if nn == l0 || nn == l1 { nn } else { l0.min(l1) };
    }
    let mut uniq = [0i16; 8];
    let mut score = [0f32; 8];
    let mut n = 0;
    for k in 0..8 {
        if let Some(j) = uniq[..n].iter().position(|&u| u == labels[k]) {
            score[j] += weights[k];
        } else {
            uniq[n] = labels[k];
            score[n] = weights[k];
            n += 1;
        }
    }
    let mut best = f32::NEG_INFINITY;
    for s in score[..n].iter_mut() {
        *s = to_f16_precision(*s * 1000.0);
        best = best.max(*s);
    }
    let mut winner = i16::MAX;
    let mut tied = 0;
    for j in 0..n {
        if score[j] == best {
            winner = winner.min(uniq[j]);
            tied += 1;
        }
    }
    if tied > 1 {
        let nn = nn();
        if uniq[..n].iter().zip(&score[..n]).any(|(&u, &sc)| u == nn && sc == best) {
            return nn;
        }
    }
    winner
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::FRAC_PI_2;

    fn pattern(s: [usize; 3]) -> Vec<f32> {
        (0..s[0] * s[1] * s[2]).map(|i| i as f32).collect()
    }

    #[test]
    fn identity_warp_equals_center_crop_when_offset_integer() {
        // S − P even on every axis: c_in − c_out is an integer, so sampling is exact.
        let s = [8, 10, 12];
        let p = [4, 6, 8];
        let d = pattern(s);
        let g: Vec<i16> = (0..d.len()).map(|i| (i % 3) as i16).collect();
        let (wd, wg) = warp(&d, &g, 1, s, p, &Affine::from_angles_scales([0.0; 3], [1.0; 3]));
        let (cd, cg) = center_crop(&d, &g, 1, s, p);
        assert_eq!(wd, cd);
        assert_eq!(wg, cg);
    }

    #[test]
    fn rotation_by_90_degrees_permutes_axes() {
        // Rotation about axis 0 by 90° (Rx) on a cube: out[z, y, x] = in[z, c + (x − c), c − (y − c)]
        // since A·(dz, dy, dx) = (dz, −dx, dy).
        let s = [4, 5, 5];
        let d = pattern(s);
        let g: Vec<i16> = (0..d.len()).map(|i| (i % 7) as i16).collect();
        let (wd, wg) = warp(&d, &g, 1, s, s, &Affine::from_angles_scales([FRAC_PI_2, 0.0, 0.0], [1.0; 3]));
        for z in 0..4 {
            for y in 0..5 {
                for x in 0..5 {
                    let (iy, ix) = (4 - x, y);
                    let src = (z * 5 + iy) * 5 + ix;
                    let o = (z * 5 + y) * 5 + x;
                    assert!((wd[o] - d[src]).abs() < 1e-3, "{z} {y} {x}: {} vs {}", wd[o], d[src]);
                    assert_eq!(wg[o], g[src]);
                }
            }
        }
    }

    #[test]
    fn scaling_zooms_out_and_pads() {
        // Scale 2 about the centre: output covers twice the extent; outside -> 0 / −1.
        let s = [1, 1, 8];
        let d: Vec<f32> = vec![1.0; 8];
        let g: Vec<i16> = vec![2; 8];
        let (wd, wg) = warp(&d, &g, 1, s, s, &Affine::from_angles_scales([0.0; 3], [1.0, 1.0, 2.0]));
        // x = 0 -> input −3.5 (outside), x = 3 -> 2.5 (inside).
        assert_eq!(wd[0], 0.0);
        assert_eq!(wg[0], -1);
        assert_eq!(wd[3], 1.0);
        assert_eq!(wg[3], 2);
        // x = 1 -> input -1.5: corners -2, -1 both outside.
        assert_eq!(wg[1], -1);
        // x = 2 -> input 0.5: inside.
        assert_eq!(wg[2], 2);
    }

    #[test]
    fn labels_stay_in_label_set() {
        let s = [10, 12, 14];
        let n = s[0] * s[1] * s[2];
        let d = vec![0.0f32; n];
        let g: Vec<i16> = (0..n).map(|i| [0, 1, 5][(i * 7919 / 13) % 3]).collect();
        let (_, wg) = warp(&d, &g, 1, s, [6, 8, 8], &Affine::from_angles_scales([0.3, -0.2, 0.5], [0.8; 3]));
        assert!(wg.iter().all(|v| [0, 1, 5].contains(v)), "{:?}", wg.iter().find(|v| ![0, 1, 5].contains(*v)));
    }

    #[test]
    fn crop_pads_outside() {
        let s = [2, 2, 2];
        let d = pattern(s);
        let g = vec![1i16; 8];
        let (cd, cg) = crop_box(&d, &g, 1, s, [-1, 0, 1], [2, 2, 2]);
        assert_eq!(cd, vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 3.0, 0.0]);
        assert_eq!(cg, vec![-1, -1, -1, -1, 1, -1, 1, -1]);
        assert_eq!(to_f16_precision(1000.0 * 0.5), 500.0);
        assert_eq!(to_f16_precision(500.1), 500.0);
    }

    #[test]
    fn tie_goes_to_nearest_neighbour() {
        // Sample exactly between label 3 (x=0) and label 1 (x=1) with the nearest neighbour
        // (half-to-even -> x=0) being 3: tie -> 3.
        let labels = [3, 1, 3, 1, 3, 1, 3, 1];
        let w = [0.125f32; 8];
        assert_eq!(argmax_label(&labels, &w, || 3), 3);
        assert_eq!(argmax_label(&labels, &w, || 7), 1);
        // No tie: the larger score wins whatever the nearest neighbour.
        let w2 = [0.2f32, 0.05, 0.2, 0.05, 0.2, 0.05, 0.2, 0.05];
        assert_eq!(argmax_label(&labels, &w2, || 1), 3);
    }

    /// Parity with the peer's `SpatialTransform` (fixture from `tests/fixtures/gen_spatial_fixture.py`).
    #[test]
    fn matches_batchgeneratorsv2_spatial_transform() {
        let cases: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../tests/fixtures/spatial_fixture.json")).unwrap();
        for case in cases {
            let u = |k: &str| -> Vec<usize> {
                case[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
            };
            let f = |k: &str| -> Vec<f64> { case[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
            let (shape, patch, angles) = (u("shape"), u("patch"), f("angles"));
            let scale = case["scale"].as_f64().unwrap();
            let to3 = |v: &[usize]| if v.len() == 2 { [1, v[0], v[1]] } else { [v[0], v[1], v[2]] };
            let (s, p) = (to3(&shape), to3(&patch));
            let affine = if shape.len() == 2 {
                // The 2D transform rotates by the last angle.
                Affine::from_angles_scales([angles[1], 0.0, 0.0], [1.0, scale, scale])
            } else {
                Affine::from_angles_scales([angles[0], angles[1], angles[2]], [scale; 3])
            };
            let img: Vec<f32> = f("image").iter().map(|&v| v as f32).collect();
            let seg: Vec<i16> = case["seg"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i16).collect();
            let (od, os) = warp(&img, &seg, 1, s, p, &affine);
            let want = f("out_image");
            let want_seg: Vec<i16> =
                case["out_seg"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i16).collect();
            let max_err = od.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(max_err < 1e-4, "{shape:?} {angles:?}: image max error {max_err}");
            let mismatches = os.iter().zip(&want_seg).filter(|(a, b)| a != b).count();
            assert_eq!(mismatches, 0, "{shape:?} {angles:?}: {mismatches} label mismatches");
        }
    }
}

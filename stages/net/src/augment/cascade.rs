//! The cascade's previous-stage segmentation as network input (§8.2 row 13, batchgeneratorsv2's
//! `MoveSegAsOneHotToDataTransform`, `ApplyRandomBinaryOperatorTransform`,
//! `RemoveRandomConnectedComponentFromOneHotEncodingTransform`):
//!
//! - one-hot over the foreground labels, one channel per label (background and −1 are 0);
//! - training only, with probability 0.4: channels in random order, each with p 0.5, get a
//!   random dilation / erosion / closing / opening by a ball (2D: disk) of radius U(1, 8); what
//!   a channel gains is removed from the others;
//! - training only, with probability 0.2: channels in random order, each with p 0.5, lose one
//!   random connected component (26-connected) smaller than 15% of the patch.
//!
//! Morphology by a ball of radius r is computed through the exact squared Euclidean distance
//! transform (Felzenszwalb & Huttenlocher): a voxel is in the dilation iff some foreground
//! voxel lies within r, which is the dilation by the integer-offset ball `|o|² ≤ r²` in time
//! linear in the patch, whatever r. (skimage's `ball(r)` for a non-integer r samples
//! `int(2r + 1)` points between −r and r; the integer ball is the same shape for integer radii.)
//! Written here because no maintained crate offers an N-d EDT on plain buffers. Erosion keeps
//! nnU-Net's border rule: outside the patch counts as neither, so nothing erodes from the edge.

use crate::augment::resample::numel;
use nnunet_eval::components::{label_components, Connectivity};
use nnunet_io::rng::Rng;
use nnunet_io::Volume;

/// Probabilities and ranges of the cascade augmentations (nnU-Net's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct CascadeAugment {
    pub binary_op: f64,
    pub binary_op_per_label: f64,
    pub strel_radius: (f64, f64),
    pub remove_component: f64,
    pub remove_component_per_label: f64,
    /// Components covering this fraction of the patch or more are never removed.
    pub remove_component_max_fraction: f64,
}

impl Default for CascadeAugment {
    fn default() -> Self {
        CascadeAugment {
            binary_op: 0.4,
            binary_op_per_label: 0.5,
            strel_radius: (1.0, 8.0),
            remove_component: 0.2,
            remove_component_per_label: 0.5,
            remove_component_max_fraction: 0.15,
        }
    }
}

/// One binary mask per label, `[L, Z, Y, X]` as `f32` 0/1 channels.
pub fn one_hot(prev: &[i16], labels: &[i16]) -> Vec<f32> {
    let mut out = Vec::with_capacity(labels.len() * prev.len());
    for &l in labels {
        out.extend(prev.iter().map(|&v| if v == l { 1.0f32 } else { 0.0 }));
    }
    out
}

/// The training-time perturbations of the one-hot channels (`channels` = labels × patch).
pub fn augment_one_hot(
    channels: &mut [f32],
    n_labels: usize,
    shape: [usize; 3],
    in_plane: bool,
    p: &CascadeAugment,
    rng: &mut Rng,
) {
    let n = numel(shape);
    if n_labels == 0 || channels.len() != n_labels * n {
        return;
    }
    if rng.next_f64() < p.binary_op {
        let mut order: Vec<usize> = (0..n_labels).collect();
        rng.shuffle(&mut order);
        let chosen: Vec<usize> = order.into_iter().filter(|_| rng.next_f64() < p.binary_op_per_label).collect();
        let ops: Vec<(usize, f64)> =
            chosen.iter().map(|_| (rng.below(4) as usize, rng.uniform(p.strel_radius.0, p.strel_radius.1))).collect();
        for (&c, &(op, r)) in chosen.iter().zip(&ops) {
            let before: Vec<bool> = channels[c * n..(c + 1) * n].iter().map(|&v| v != 0.0).collect();
            let after = match op {
                0 => dilate(&before, shape, r, in_plane),
                1 => erode(&before, shape, r, in_plane),
                2 => erode(&dilate(&before, shape, r, in_plane), shape, r, in_plane),
                _ => dilate(&erode(&before, shape, r, in_plane), shape, r, in_plane),
            };
            for other in (0..n_labels).filter(|&o| o != c) {
                for (i, v) in channels[other * n..(other + 1) * n].iter_mut().enumerate() {
                    if after[i] && !before[i] {
                        *v = 0.0;
                    }
                }
            }
            for (v, &a) in channels[c * n..(c + 1) * n].iter_mut().zip(&after) {
                *v = if a { 1.0 } else { 0.0 };
            }
        }
    }
    if rng.next_f64() < p.remove_component {
        let mut order: Vec<usize> = (0..n_labels).collect();
        rng.shuffle(&mut order);
        let chosen: Vec<usize> = order.into_iter().filter(|_| rng.next_f64() < p.remove_component_per_label).collect();
        for c in chosen {
            let ch = &mut channels[c * n..(c + 1) * n];
            let mask = Volume { shape, data: ch.iter().map(|&v| v != 0.0).collect::<Vec<bool>>() };
            if !mask.data.iter().any(|&b| b) {
                continue;
            }
            let comps = label_components(&mask, Connectivity::Full);
            let limit = p.remove_component_max_fraction * n as f64;
            let valid: Vec<u32> = comps
                .sizes
                .iter()
                .enumerate()
                .filter(|(_, &s)| (s as f64) < limit)
                .map(|(i, _)| i as u32 + 1)
                .collect();
            if valid.is_empty() {
                continue;
            }
            let pick = valid[rng.below(valid.len() as u64) as usize];
            for (v, &l) in ch.iter_mut().zip(&comps.labels.data) {
                if l == pick {
                    *v = 0.0;
                }
            }
        }
    }
}

/// Dilation of `mask` by the ball (disk when `in_plane`) of radius `r`.
pub fn dilate(mask: &[bool], shape: [usize; 3], r: f64, in_plane: bool) -> Vec<bool> {
    let d2 = squared_distance_to(mask, shape, in_plane);
    d2.iter().map(|&d| d <= r * r).collect()
}

/// Erosion: the complement of the dilation of the complement (outside the patch is neither).
pub fn erode(mask: &[bool], shape: [usize; 3], r: f64, in_plane: bool) -> Vec<bool> {
    let inv: Vec<bool> = mask.iter().map(|&b| !b).collect();
    dilate(&inv, shape, r, in_plane).into_iter().map(|b| !b).collect()
}

/// Stands for "no foreground on this line yet" (finite, so the envelope arithmetic stays finite).
const FAR: f64 = 1e20;

/// Squared Euclidean distance of every voxel to the nearest `true` voxel (`>= FAR` when there
/// is none), over all three axes or, `in_plane`, over y and x only.
fn squared_distance_to(mask: &[bool], shape: [usize; 3], in_plane: bool) -> Vec<f64> {
    let mut d: Vec<f64> = mask.iter().map(|&b| if b { 0.0 } else { FAR }).collect();
    let [nz, ny, nx] = shape;
    let axes: &[usize] = if in_plane { &[2, 1] } else { &[2, 1, 0] };
    let mut line = Vec::new();
    let mut out = Vec::new();
    for &axis in axes {
        let (len, stride) = match axis {
            0 => (nz, ny * nx),
            1 => (ny, nx),
            _ => (nx, 1),
        };
        if len < 2 {
            continue;
        }
        // Every line along `axis`: start offsets of all voxels whose coordinate on it is 0.
        let starts: Vec<usize> = (0..nz * ny * nx).filter(|&i| (i / stride) % len == 0).collect();
        for s in starts {
            line.clear();
            line.extend((0..len).map(|k| d[s + k * stride]));
            out.resize(len, 0.0);
            envelope_1d(&line, &mut out);
            for (k, &v) in out.iter().enumerate() {
                d[s + k * stride] = v;
            }
        }
    }
    d
}

/// `out[q] = min_p (q − p)² + f[p]`, the lower envelope of parabolas (Felzenszwalb &
/// Huttenlocher 2012), O(n).
fn envelope_1d(f: &[f64], out: &mut [f64]) {
    let n = f.len();
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0usize;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    let cross = |q: usize, p: usize| -> f64 {
        let (qf, pf) = (q as f64, p as f64);
        ((f[q] + qf * qf) - (f[p] + pf * pf)) / (2.0 * (qf - pf))
    };
    for q in 1..n {
        let mut s = cross(q, v[k]);
        while s <= z[k] {
            k -= 1;
            s = cross(q, v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let dq = q as f64 - v[k] as f64;
        *o = dq * dq + f[v[k]];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dilation by brute force over the integer ball.
    fn brute_dilate(mask: &[bool], s: [usize; 3], r: f64, in_plane: bool) -> Vec<bool> {
        let idx = |z: usize, y: usize, x: usize| (z * s[1] + y) * s[2] + x;
        let mut out = vec![false; mask.len()];
        for z in 0..s[0] {
            for y in 0..s[1] {
                for x in 0..s[2] {
                    'search: for qz in 0..s[0] {
                        if in_plane && qz != z {
                            continue;
                        }
                        for qy in 0..s[1] {
                            for qx in 0..s[2] {
                                let d2 = (z as f64 - qz as f64).powi(2)
                                    + (y as f64 - qy as f64).powi(2)
                                    + (x as f64 - qx as f64).powi(2);
                                if mask[idx(qz, qy, qx)] && d2 <= r * r {
                                    out[idx(z, y, x)] = true;
                                    break 'search;
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn dilation_equals_the_ball_by_brute_force() {
        let s = [6, 9, 8];
        let mut rng = Rng::new(5);
        for trial in 0..6 {
            let mask: Vec<bool> = (0..numel(s)).map(|_| rng.next_f64() < 0.04).collect();
            for r in [1.0, 1.5, 2.7] {
                for in_plane in [false, true] {
                    assert_eq!(
                        dilate(&mask, s, r, in_plane),
                        brute_dilate(&mask, s, r, in_plane),
                        "{trial} {r} {in_plane}"
                    );
                }
            }
        }
        // No foreground at all: nothing to dilate.
        assert!(dilate(&vec![false; numel(s)], s, 3.0, false).iter().all(|&b| !b));
    }

    #[test]
    fn erosion_shrinks_and_keeps_the_border_rule() {
        let s = [1, 7, 7];
        let full = vec![true; 49];
        // Everything foreground: outside the patch is not background, nothing erodes.
        assert_eq!(erode(&full, s, 2.0, true), full);
        let mut sq = vec![false; 49];
        for y in 1..6 {
            for x in 1..6 {
                sq[y * 7 + x] = true;
            }
        }
        let e = erode(&sq, s, 1.0, true);
        assert_eq!(e.iter().filter(|&&b| b).count(), 9, "5x5 square eroded by a disk of 1 is 3x3");
    }

    #[test]
    fn one_hot_and_perturbations_keep_channels_binary_and_exclusive() {
        let s = [8, 12, 12];
        let n = numel(s);
        let prev: Vec<i16> = (0..n).map(|i| [0, 1, 2, -1][(i / 37) % 4]).collect();
        let mut ch = one_hot(&prev, &[1, 2]);
        assert_eq!(ch.len(), 2 * n);
        assert!(ch[..n].iter().zip(&prev).all(|(&v, &p)| (v == 1.0) == (p == 1)));
        let always = CascadeAugment {
            binary_op: 1.0,
            binary_op_per_label: 1.0,
            remove_component: 1.0,
            remove_component_per_label: 1.0,
            ..Default::default()
        };
        let mut rng = Rng::new(9);
        for _ in 0..5 {
            augment_one_hot(&mut ch, 2, s, false, &always, &mut rng);
            assert!(ch.iter().all(|&v| v == 0.0 || v == 1.0));
            assert!((0..n).all(|i| ch[i] + ch[n + i] <= 1.0), "a voxel gained by one label is removed from the other");
        }
    }
}

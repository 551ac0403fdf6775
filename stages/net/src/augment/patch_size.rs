//! Patch-size rules of the trainer's augmentation setup (§8.1, §8.2,
//! `configure_rotation_dummyDA_mirroring_and_inital_patch_size`, `get_patch_size`).

use std::f64::consts::PI;

/// §8.2: a 3D configuration uses dummy-2D augmentation when `max(patch) / patch[0] > 3`.
pub const ANISO_THRESHOLD: f64 = 3.0;

/// Degrees to radians.
pub fn deg(d: f64) -> f64 {
    d / 360.0 * 2.0 * PI
}

/// §8.2 rotation range (max |angle|, radians) and dummy-2D flag of a patch size:
/// 2D: ±180°, or ±15° if `max/min > 1.5`; 3D: ±30°, dummy-2D (±180° in-plane) if anisotropic.
pub fn rotation_and_dummy_2d(patch: &[usize]) -> (f64, bool) {
    let max = patch.iter().copied().max().unwrap_or(1) as f64;
    let min = patch.iter().copied().min().unwrap_or(1).max(1) as f64;
    if patch.len() == 2 {
        (if max / min > 1.5 { deg(15.0) } else { deg(180.0) }, false)
    } else {
        let dummy = max / patch.first().copied().unwrap_or(1).max(1) as f64 > ANISO_THRESHOLD;
        (if dummy { deg(180.0) } else { deg(30.0) }, dummy)
    }
}

/// Row vector `c` times the rotation matrices of batchgenerators' `rotate_coords_3d`
/// (`identity · Rx · Ry · Rz`).
fn rotate3(c: [f64; 3], ax: f64, ay: f64, az: f64) -> [f64; 3] {
    let rx = [[1.0, 0.0, 0.0], [0.0, ax.cos(), -ax.sin()], [0.0, ax.sin(), ax.cos()]];
    let ry = [[ay.cos(), 0.0, ay.sin()], [0.0, 1.0, 0.0], [-ay.sin(), 0.0, ay.cos()]];
    let rz = [[az.cos(), -az.sin(), 0.0], [az.sin(), az.cos(), 0.0], [0.0, 0.0, 1.0]];
    let m = matmul(&matmul(&rx, &ry), &rz);
    let mut out = [0.0; 3];
    for (j, o) in out.iter_mut().enumerate() {
        *o = (0..3).map(|i| c[i] * m[i][j]).sum();
    }
    out
}

fn matmul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// nnU-Net's `get_patch_size(final_patch, rot_x, rot_y, rot_z, scale_range)` (§8.1): rotate
/// the extent vector about each axis separately by the maximum angle (capped at 90°), take
/// the per-axis max |component| with the original extent, divide by `min(scale_range)`,
/// truncate. 2D uses `rot_x` only.
pub fn get_patch_size(final_patch: &[usize], rot_x: f64, rot_y: f64, rot_z: f64, scale_min: f64) -> Vec<usize> {
    let cap = deg(90.0);
    let (rx, ry, rz) = (rot_x.abs().min(cap), rot_y.abs().min(cap), rot_z.abs().min(cap));
    let c: Vec<f64> = final_patch.iter().map(|&p| p as f64).collect();
    let mut shape = c.clone();
    if c.len() == 3 {
        let v = [c[0], c[1], c[2]];
        for r in [rotate3(v, rx, 0.0, 0.0), rotate3(v, 0.0, ry, 0.0), rotate3(v, 0.0, 0.0, rz)] {
            for d in 0..3 {
                shape[d] = shape[d].max(r[d].abs());
            }
        }
    } else if c.len() == 2 {
        // rotate_coords_2d: row vector times [[cos, -sin], [sin, cos]].
        let r = [c[0] * rx.cos() + c[1] * rx.sin(), -c[0] * rx.sin() + c[1] * rx.cos()];
        for d in 0..2 {
            shape[d] = shape[d].max(r[d].abs());
        }
    }
    // astype(int) truncates.
    shape.iter().map(|s| (s / scale_min) as usize).collect()
}

/// §8.1: the enlarged patch the loader crops for a final patch (scale range (0.85, 1.25) as in
/// nnU-Net, even though the real scaling is 0.7–1.4); dummy-2D keeps axis 0.
pub fn initial_patch_size(patch: &[usize]) -> Vec<usize> {
    let (rot, dummy) = rotation_and_dummy_2d(patch);
    let mut p = get_patch_size(patch, rot, rot, rot, 0.85);
    if dummy {
        p[0] = patch[0];
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_examples() {
        // Values from the peer (nnU-Net 2.8.1 `get_patch_size`). §8.1 quotes [64, 80, 73] for
        // [40, 56, 40]; the peer (and the arithmetic: 56·sin30 + 40·cos30 = 62.6 on axis 0)
        // gives [73, 80, 64].
        assert_eq!(initial_patch_size(&[40, 56, 40]), vec![73, 80, 64]);
        assert_eq!(initial_patch_size(&[24, 40, 33]), vec![47, 60, 47]);
        assert_eq!(get_patch_size(&[64, 32], deg(15.0), deg(15.0), deg(15.0), 0.85), vec![82, 37]);
        assert_eq!(initial_patch_size(&[128, 128, 128]), vec![205, 205, 205]);
        assert_eq!(initial_patch_size(&[20, 320, 256]), vec![20, 376, 376]);
        assert_eq!(rotation_and_dummy_2d(&[20, 320, 256]), (deg(180.0), true));
        assert_eq!(rotation_and_dummy_2d(&[40, 56, 40]), (deg(30.0), false));
        // 2D [56, 40]: aspect 1.4 -> ±180° -> capped 90°: [56, 56] / 0.85 = 65.9 -> 65.
        assert_eq!(initial_patch_size(&[56, 40]), vec![65, 65]);
        // 2D aspect > 1.5 -> ±15°.
        assert_eq!(rotation_and_dummy_2d(&[64, 32]).0, deg(15.0));
    }
}

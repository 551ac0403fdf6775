//! Building blocks of the synthetic images: smooth value noise, deformed ellipsoids, and a
//! separable Gaussian blur.

use crate::rng::Rng;
use crate::volume::Volume;

/// Smooth random field on `[0, 1]^3`: random values on a coarse lattice, interpolated with
/// a smoothstep fade (value noise). Range about `[-1, 1]`.
pub struct SmoothNoise {
    cells: [usize; 3],
    values: Vec<f32>,
}

impl SmoothNoise {
    /// A field with `cells` lattice cells per axis (more cells, finer detail).
    pub fn new(rng: &mut Rng, cells: [usize; 3]) -> SmoothNoise {
        let cells = cells.map(|c| c.max(1));
        let n = (cells[0] + 1) * (cells[1] + 1) * (cells[2] + 1);
        SmoothNoise { cells, values: (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect() }
    }

    /// The field at normalised coordinates `u` (each clamped to `[0, 1]`).
    pub fn at(&self, u: [f64; 3]) -> f64 {
        let mut i = [0usize; 3];
        let mut t = [0f64; 3];
        for a in 0..3 {
            let x = u[a].clamp(0.0, 1.0) * self.cells[a] as f64;
            let fl = x.floor().min(self.cells[a] as f64 - 1.0).max(0.0);
            i[a] = fl as usize;
            let f = x - fl;
            t[a] = f * f * (3.0 - 2.0 * f);
        }
        let (ny, nx) = (self.cells[1] + 1, self.cells[2] + 1);
        let v = |dz: usize, dy: usize, dx: usize| self.values[((i[0] + dz) * ny + i[1] + dy) * nx + i[2] + dx] as f64;
        let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
        let c00 = lerp(v(0, 0, 0), v(0, 0, 1), t[2]);
        let c01 = lerp(v(0, 1, 0), v(0, 1, 1), t[2]);
        let c10 = lerp(v(1, 0, 0), v(1, 0, 1), t[2]);
        let c11 = lerp(v(1, 1, 0), v(1, 1, 1), t[2]);
        lerp(lerp(c00, c01, t[1]), lerp(c10, c11, t[1]), t[0])
    }
}

/// An ellipsoid (physical mm, axis order z, y, x) whose surface is pushed in and out by a
/// smooth noise field: an organ-like blob.
pub struct Blob {
    pub center: [f64; 3],
    pub radii: [f64; 3],
    /// Relative surface displacement (0.2 = up to ±20 % of the radius).
    pub amp: f64,
    pub noise: SmoothNoise,
}

impl Blob {
    /// The normalised radius of point `p` (mm): < 1 inside the undeformed ellipsoid.
    pub fn radius(&self, p: [f64; 3]) -> f64 {
        p.iter().zip(&self.center).zip(&self.radii).map(|((p, c), r)| ((p - c) / r).powi(2)).sum::<f64>().sqrt()
    }

    /// The deformed radius at `p` (`u` = the same point in normalised volume coordinates):
    /// the point is inside when this is < 1.
    pub fn deformed(&self, p: [f64; 3], u: [f64; 3]) -> f64 {
        let r = self.radius(p);
        if r > 1.0 + self.amp + 0.5 {
            return r; // far outside: skip the noise lookup
        }
        r / (1.0 + self.amp * self.noise.at(u))
    }
}

/// Separable Gaussian blur with per-axis sigma in voxels; edges are clamped.
pub fn gaussian_blur(v: &Volume<f32>, sigma: [f64; 3]) -> Volume<f32> {
    let mut cur = v.clone();
    for (axis, &s) in sigma.iter().enumerate() {
        if s <= 0.0 || cur.shape[axis] < 2 {
            continue;
        }
        let radius = (3.0 * s).ceil() as isize;
        let mut k: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * s * s)).exp() as f32).collect();
        let sum: f32 = k.iter().sum();
        k.iter_mut().for_each(|w| *w /= sum);
        let shape = cur.shape;
        let stride = [shape[1] * shape[2], shape[2], 1][axis];
        let n = shape[axis] as isize;
        let mut out = vec![0f32; cur.data.len()];
        for (idx, o) in out.iter_mut().enumerate() {
            let pos = ((idx / stride) % shape[axis]) as isize;
            let base = idx as isize - pos * stride as isize;
            let mut acc = 0f32;
            for (j, w) in k.iter().enumerate() {
                let q = (pos + j as isize - radius).clamp(0, n - 1);
                acc += w * cur.data[(base + q * stride as isize) as usize];
            }
            *o = acc;
        }
        cur.data = out;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_smooth_and_bounded() {
        let mut r = Rng::new(1);
        let n = SmoothNoise::new(&mut r, [3, 3, 3]);
        let mut prev = n.at([0.5, 0.5, 0.0]);
        for i in 1..=100 {
            let v = n.at([0.5, 0.5, i as f64 / 100.0]);
            assert!((-1.0..=1.0).contains(&v));
            assert!((v - prev).abs() < 0.15, "jump {prev} -> {v}");
            prev = v;
        }
        assert_eq!(n.at([2.0, -1.0, 0.5]), n.at([1.0, 0.0, 0.5]));
    }

    #[test]
    fn blur_preserves_mean_and_smooths_a_step() {
        let mut v = Volume::filled([4, 4, 10], 0f32);
        for z in 0..4 {
            for y in 0..4 {
                for x in 5..10 {
                    v.set(z, y, x, 100.0);
                }
            }
        }
        let b = gaussian_blur(&v, [0.0, 0.0, 1.0]);
        assert!(b.get(0, 0, 4) > 10.0 && b.get(0, 0, 4) < 50.0);
        assert!(b.get(0, 0, 0) < 1e-3 && (b.get(0, 0, 9) - 100.0).abs() < 1e-3);
        let mean = |v: &Volume<f32>| v.data.iter().sum::<f32>() / v.len() as f32;
        assert!((mean(&b) - mean(&v)).abs() < 1e-3);
    }
}

//! Intensity transforms of the training chain (§8.2 steps 3–9) on one channel `[Z, Y, X]`.

use super::resample::{linear, nearest_exact, scaled_shape};
use nnunet_io::rng::Rng;

/// Adds `N(0, σ)` noise (§8.2 step 3). Normals by Box–Muller, both outputs used.
pub fn add_gaussian_noise(x: &mut [f32], sigma: f64, rng: &mut Rng) {
    let s = sigma as f32;
    let mut chunks = x.chunks_exact_mut(2);
    for pair in &mut chunks {
        let (a, b) = normal_pair(rng);
        pair[0] += a * s;
        pair[1] += b * s;
    }
    for v in chunks.into_remainder() {
        *v += normal_pair(rng).0 * s;
    }
}

/// Two standard normals from one 64-bit draw (two 32-bit uniforms, Box–Muller in f32).
#[inline]
fn normal_pair(rng: &mut Rng) -> (f32, f32) {
    let b = rng.next_u64();
    let u1 = ((b >> 40) as f32 + 1.0) * (1.0 / 16_777_216.0); // (0, 1]
    let u2 = ((b & 0xFF_FFFF) as f32) * (1.0 / 16_777_216.0);
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// batchgeneratorsv2 `_round_to_nearest_odd`.
fn round_to_nearest_odd(n: f64) -> usize {
    let r = n.round_ties_even();
    let ri = r as i64;
    if ri % 2 == 1 {
        ri as usize
    } else if n - r >= 0.0 {
        (ri + 1) as usize
    } else {
        (ri - 1) as usize
    }
}

/// Normalised 1D Gaussian kernel of size `nearest_odd(6σ + 0.5)` (§8.2 step 4, truncate 6).
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let k = round_to_nearest_odd(sigma * 6.0 + 0.5).max(1);
    let half = (k as f64 - 1.0) * 0.5;
    let pdf: Vec<f64> = (0..k).map(|i| (-0.5 * ((i as f64 - half) / sigma).powi(2)).exp()).collect();
    let s: f64 = pdf.iter().sum();
    pdf.iter().map(|v| (v / s) as f32).collect()
}

/// torch's `reflect` padding index (edge not repeated), for any offset.
#[inline]
fn reflect(i: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - m;
    }
    m as usize
}

/// Convolves `x` (`[Z, Y, X]`) with `kernel` along `axis`, reflect padding; returns a new buffer.
pub fn blur_axis(x: &[f32], s: [usize; 3], axis: usize, kernel: &[f32]) -> Vec<f32> {
    let h = (kernel.len() / 2) as i64;
    let mut out = vec![0.0f32; x.len()];
    match axis {
        0 => {
            let pl = s[1] * s[2];
            for z in 0..s[0] {
                let dst = &mut out[z * pl..(z + 1) * pl];
                for (k, &w) in kernel.iter().enumerate() {
                    let iz = reflect(z as i64 + k as i64 - h, s[0] as i64);
                    for (d, &v) in dst.iter_mut().zip(&x[iz * pl..(iz + 1) * pl]) {
                        *d += w * v;
                    }
                }
            }
        }
        1 => {
            let w_ = s[2];
            for z in 0..s[0] {
                let plane = &x[z * s[1] * w_..(z + 1) * s[1] * w_];
                for y in 0..s[1] {
                    let dst = &mut out[(z * s[1] + y) * w_..(z * s[1] + y + 1) * w_];
                    for (k, &w) in kernel.iter().enumerate() {
                        let iy = reflect(y as i64 + k as i64 - h, s[1] as i64);
                        for (d, &v) in dst.iter_mut().zip(&plane[iy * w_..(iy + 1) * w_]) {
                            *d += w * v;
                        }
                    }
                }
            }
        }
        _ => {
            let n = s[2];
            let mut padded = vec![0.0f32; n + 2 * h as usize];
            for (row, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
                for (i, p) in padded.iter_mut().enumerate() {
                    *p = row[reflect(i as i64 - h, n as i64)];
                }
                for (i, d) in dst.iter_mut().enumerate() {
                    let win = &padded[i..i + kernel.len()];
                    *d = win.iter().zip(kernel).map(|(a, b)| a * b).sum();
                }
            }
        }
    }
    out
}

/// Separable Gaussian blur with one σ per axis (`None`: axis not blurred).
pub fn gaussian_blur(x: &mut Vec<f32>, s: [usize; 3], sigmas: [Option<f64>; 3]) {
    for (axis, sg) in sigmas.iter().enumerate() {
        if let Some(sg) = sg {
            let k = gaussian_kernel(*sg);
            *x = blur_axis(x, s, axis, &k);
        }
    }
}

/// `BGContrast(range)`: with p 0.5 (and `lo < 1`) U(lo, 1), else U(max(lo, 1), hi).
pub fn bg_contrast(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    if rng.next_f64() < 0.5 && lo < 1.0 {
        rng.uniform(lo, 1.0)
    } else {
        rng.uniform(lo.max(1.0), hi)
    }
}

/// Mean, min, max (f64 accumulation).
fn stats(x: &[f32]) -> (f64, f32, f32) {
    let mut sum = 0.0f64;
    let (mut mn, mut mx) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in x {
        sum += v as f64;
        mn = mn.min(v);
        mx = mx.max(v);
    }
    (sum / x.len().max(1) as f64, mn, mx)
}

fn mean_std(x: &[f32]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Multiplies by `m` (§8.2 step 5).
pub fn brightness(x: &mut [f32], m: f64) {
    let m = m as f32;
    x.iter_mut().for_each(|v| *v *= m);
}

/// `(x − mean)·f + mean`, clipped to the original range (§8.2 step 6, preserve_range).
pub fn contrast(x: &mut [f32], f: f64) {
    let (mean, mn, mx) = stats(x);
    let (mean, f) = (mean as f32, f as f32);
    x.iter_mut().for_each(|v| *v = ((*v - mean) * f + mean).clamp(mn, mx));
}

/// Downsample with nearest-exact to `round(shape × zoom)`, upsample back (tri)linearly
/// (§8.2 step 7). `zoom[d] = 1` leaves an axis alone.
pub fn simulate_low_resolution(x: &mut Vec<f32>, s: [usize; 3], zoom: [f64; 3]) {
    let small = scaled_shape(s, zoom);
    if small == s {
        return;
    }
    let down = nearest_exact(x, s, small);
    *x = linear(&down, small, s);
}

/// Gamma with retained mean/std (§8.2 steps 8, 9); `invert` applies it to `−x`.
pub fn gamma(x: &mut [f32], g: f64, invert: bool) {
    const EPS: f64 = 1e-7;
    if invert {
        x.iter_mut().for_each(|v| *v = -*v);
    }
    let (mean, std) = mean_std(x);
    let (_, mn, mx) = stats(x);
    let rnge = (mx - mn) as f64;
    let denom = rnge.max(EPS);
    // f32 like the peer (torch float tensors).
    let (mn32, inv, g32, r32) = (mn, (1.0 / denom) as f32, g as f32, rnge as f32);
    x.iter_mut().for_each(|v| *v = ((*v - mn32) * inv).max(0.0).powf(g32) * r32 + mn32);
    let (mean_here, std_here) = mean_std(x);
    let scale = std / std_here.max(EPS);
    x.iter_mut().for_each(|v| *v = ((*v as f64 - mean_here) * scale + mean) as f32);
    if invert {
        x.iter_mut().for_each(|v| *v = -*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37) % 101) as f32 / 10.0).collect()
    }

    #[test]
    fn noise_changes_std_as_expected() {
        let mut x = vec![0.0f32; 200_000];
        add_gaussian_noise(&mut x, 0.05, &mut Rng::new(3));
        let (m, s) = mean_std(&x);
        assert!(m.abs() < 1e-3 && (s - 0.05).abs() < 1e-3, "{m} {s}");
        // Independent noise: var(x + n) = var(x) + σ².
        let mut y = ramp(200_000);
        let (_, s0) = mean_std(&y);
        add_gaussian_noise(&mut y, 0.5, &mut Rng::new(4));
        let (_, s1) = mean_std(&y);
        assert!((s1 * s1 - (s0 * s0 + 0.25)).abs() < 0.05, "{s0} {s1}");
    }

    #[test]
    fn kernel_sizes_and_blur() {
        assert_eq!(gaussian_kernel(0.5).len(), 3); // 3.5 -> 4 (even, below) -> 3
        assert_eq!(gaussian_kernel(1.0).len(), 7); // 6.5 -> 6 (even, above) -> 7
        assert!((gaussian_kernel(0.8).iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Blur preserves a constant and the mean of a periodic-free ramp stays close.
        let s = [4, 5, 6];
        let mut c = vec![2.5f32; 120];
        gaussian_blur(&mut c, s, [Some(0.7), Some(1.0), Some(0.5)]);
        assert!(c.iter().all(|v| (v - 2.5).abs() < 1e-5));
        // A delta spreads by the kernel along x only.
        let mut d = vec![0.0f32; 120];
        d[(2 * 5 + 2) * 6 + 3] = 1.0;
        let k = gaussian_kernel(1.0);
        let out = blur_axis(&d, s, 2, &k);
        for x in 0..6i64 {
            // Taps landing on the delta, reflection included (torch 'reflect').
            let expect: f32 = (0..7i64).filter(|&j| reflect(x + j - 3, 6) == 3).map(|j| k[j as usize]).sum();
            assert!((out[(2 * 5 + 2) * 6 + x as usize] - expect).abs() < 1e-6, "{x}");
        }
        assert!((out[(2 * 5 + 2) * 6 + 5] - (k[1] + k[5])).abs() < 1e-6);
        assert_eq!(reflect(-1, 5), 1);
        assert_eq!(reflect(5, 5), 3);
        assert_eq!(reflect(-3, 2), 1);
    }

    #[test]
    fn gamma_retains_mean_and_std() {
        for inv in [false, true] {
            let mut x = ramp(5000);
            let (m0, s0) = mean_std(&x);
            gamma(&mut x, 1.4, inv);
            let (m1, s1) = mean_std(&x);
            assert!((m0 - m1).abs() < 1e-3 && (s0 - s1).abs() < 1e-3, "{m0} {m1} {s0} {s1}");
        }
        // γ = 1 is the identity.
        let mut x = ramp(100);
        let y = x.clone();
        gamma(&mut x, 1.0, false);
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-4));
    }

    #[test]
    fn contrast_preserves_range_and_brightness_scales() {
        let mut x = ramp(1000);
        let (m, mn, mx) = stats(&x);
        contrast(&mut x, 1.25);
        let (_, mn2, mx2) = stats(&x);
        assert!(mn2 >= mn && mx2 <= mx);
        let mut y = ramp(1000);
        contrast(&mut y, 0.75);
        let (m2, _, _) = stats(&y);
        assert!((m - m2).abs() < 1e-3);
        let mut z = vec![2.0f32; 4];
        brightness(&mut z, 1.1);
        assert!(z.iter().all(|v| (v - 2.2).abs() < 1e-6));
        let mut r = Rng::new(1);
        for _ in 0..100 {
            let f = bg_contrast(&mut r, 0.75, 1.25);
            assert!((0.75..=1.25).contains(&f));
        }
    }

    #[test]
    fn low_resolution_keeps_constants_and_blurs_steps() {
        let s = [4, 8, 8];
        let mut c = vec![1.5f32; 256];
        simulate_low_resolution(&mut c, s, [1.0, 0.5, 0.5]);
        assert!(c.iter().all(|v| (v - 1.5).abs() < 1e-6));
        let mut x: Vec<f32> = (0..256).map(|i| (i % 8) as f32).collect();
        let orig = x.clone();
        simulate_low_resolution(&mut x, s, [1.0, 0.5, 0.5]);
        assert_ne!(x, orig);
        // Zoom 1 on every axis: unchanged.
        let mut y = orig.clone();
        simulate_low_resolution(&mut y, s, [1.0, 1.0, 1.0]);
        assert_eq!(y, orig);
    }
}

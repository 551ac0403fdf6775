//! Intensity normalization (§3, `preprocessing/normalization/default_normalization_schemes.py`).
//!
//! Output is f32; statistics are accumulated in f64 (nnU-Net accumulates in f32). A constant
//! channel never produces NaN: its deviation from the (exact) mean is 0, divided by 1e-8.

use crate::error::{PrepError, Result};
use crate::plans::IntensityProperties;
use nnunet_io::Volume;
use rayon::prelude::*;

/// eps of every scheme for a float32 target (§3).
pub const EPS: f64 = 1e-8;

/// The normalization schemes nnU-Net ships (class names as written in the plans).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `CTNormalization`: clip to the global foreground p0.5/p99.5, global mean/std.
    CT,
    /// `ZScoreNormalization`: per image (optionally inside the nonzero mask).
    ZScore,
    /// `NoNormalization`.
    NoNorm,
    /// `RescaleTo01Normalization`: per image min/max.
    RescaleTo01,
    /// `RGBTo01Normalization`: x / 255.
    RgbTo01,
}

impl Scheme {
    /// Parses the plans' class name (`CTNormalization`, `ZScoreNormalization`, ...).
    pub fn from_class_name(name: &str) -> Result<Self> {
        Ok(match name {
            "CTNormalization" => Scheme::CT,
            "ZScoreNormalization" => Scheme::ZScore,
            "NoNormalization" => Scheme::NoNorm,
            "RescaleTo01Normalization" => Scheme::RescaleTo01,
            "RGBTo01Normalization" => Scheme::RgbTo01,
            other => return Err(PrepError::Plans(format!("unknown normalization scheme '{other}'"))),
        })
    }
}

/// Mean and population std over the selected voxels (two passes, f64). `None` if none selected.
fn mean_std(data: &[f32], select: impl Fn(usize) -> bool + Sync) -> Option<(f64, f64)> {
    let (sum, n) = data
        .par_iter()
        .enumerate()
        .filter(|(i, _)| select(*i))
        .fold(|| (0.0f64, 0usize), |(s, n), (_, &v)| (s + v as f64, n + 1))
        .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if n == 0 {
        return None;
    }
    let mean = sum / n as f64;
    let ss: f64 = data
        .par_iter()
        .enumerate()
        .filter(|(i, _)| select(*i))
        .map(|(_, &v)| {
            let d = v as f64 - mean;
            d * d
        })
        .sum();
    Some((mean, (ss / n as f64).sqrt()))
}

/// Normalizes one channel in place.
///
/// `seg` is the cropped label with −1 outside the nonzero mask; it is only used by ZScore with
/// `use_mask_for_norm` (statistics and normalization restricted to `seg >= 0`; outside voxels
/// keep their value, which is 0 by construction of the mask).
pub fn normalize_channel(
    img: &mut Volume<f32>,
    seg: Option<&Volume<i16>>,
    scheme: Scheme,
    use_mask_for_norm: bool,
    props: Option<&IntensityProperties>,
) -> Result<()> {
    match scheme {
        Scheme::NoNorm => {}
        Scheme::ZScore => {
            if use_mask_for_norm {
                let seg = seg
                    .ok_or_else(|| PrepError::Normalization("use_mask_for_norm needs the nonzero mask (seg)".into()))?;
                if seg.shape != img.shape {
                    return Err(PrepError::Shape(format!("mask {:?} vs image {:?}", seg.shape, img.shape)));
                }
                let m = &seg.data;
                if let Some((mean, std)) = mean_std(&img.data, |i| m[i] >= 0) {
                    let d = std.max(EPS);
                    img.data.par_iter_mut().zip(m.par_iter()).for_each(|(v, &s)| {
                        if s >= 0 {
                            *v = ((*v as f64 - mean) / d) as f32;
                        }
                    });
                }
            } else if let Some((mean, std)) = mean_std(&img.data, |_| true) {
                let d = std.max(EPS);
                img.data.par_iter_mut().for_each(|v| *v = ((*v as f64 - mean) / d) as f32);
            }
        }
        Scheme::CT => {
            let p = props.ok_or_else(|| {
                PrepError::Normalization("CTNormalization needs the fingerprint's intensity properties".into())
            })?;
            // nnU-Net clips the float32 image with the bounds cast to float32.
            let (lo, hi) = (p.percentile_00_5 as f32, p.percentile_99_5 as f32);
            let mean = p.mean;
            let d = p.std.max(EPS);
            img.data.par_iter_mut().for_each(|v| {
                let c = if *v < lo {
                    lo
                } else if *v > hi {
                    hi
                } else {
                    *v
                };
                *v = ((c as f64 - mean) / d) as f32;
            });
        }
        Scheme::RescaleTo01 => {
            let (lo, hi) = img
                .data
                .par_iter()
                .fold(|| (f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)))
                .reduce(|| (f32::INFINITY, f32::NEG_INFINITY), |x, y| (x.0.min(y.0), x.1.max(y.1)));
            if lo.is_finite() {
                let d = (hi as f64 - lo as f64).max(EPS);
                img.data.par_iter_mut().for_each(|v| *v = ((*v as f64 - lo as f64) / d) as f32);
            }
        }
        Scheme::RgbTo01 => {
            if let Some(bad) = img.data.iter().find(|&&v| !(0.0..=255.0).contains(&v)) {
                return Err(PrepError::Normalization(format!("rgb_to_0_1 expects values in [0, 255], found {bad}")));
            }
            img.data.par_iter_mut().for_each(|v| *v = (*v as f64 / 255.0) as f32);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(data: Vec<f32>) -> Volume<f32> {
        Volume::from_vec([1, 1, data.len()], data).unwrap()
    }

    #[test]
    fn zscore_plain_and_masked() {
        let mut a = v(vec![1.0, 2.0, 3.0, 4.0]);
        normalize_channel(&mut a, None, Scheme::ZScore, false, None).unwrap();
        let s = (1.25f64).sqrt();
        assert!((a.data[0] as f64 - (-1.5 / s)).abs() < 1e-6);
        let mean: f32 = a.data.iter().sum();
        assert!(mean.abs() < 1e-6);

        let mut b = v(vec![0.0, 2.0, 4.0, 0.0]);
        let seg = Volume::from_vec([1, 1, 4], vec![-1i16, 0, 1, -1]).unwrap();
        normalize_channel(&mut b, Some(&seg), Scheme::ZScore, true, None).unwrap();
        assert_eq!(b.data, vec![0.0, -1.0, 1.0, 0.0]);
    }

    #[test]
    fn constant_channel_has_no_nan() {
        for scheme in [Scheme::ZScore, Scheme::RescaleTo01] {
            let mut a = v(vec![1234.5; 7]);
            normalize_channel(&mut a, None, scheme, false, None).unwrap();
            assert!(a.data.iter().all(|x| *x == 0.0), "{scheme:?}: {:?}", a.data);
        }
        // Masked z-score with an empty mask leaves the image unchanged.
        let mut a = v(vec![0.0; 3]);
        let seg = Volume::filled([1, 1, 3], -1i16);
        normalize_channel(&mut a, Some(&seg), Scheme::ZScore, true, None).unwrap();
        assert_eq!(a.data, vec![0.0; 3]);
    }

    #[test]
    fn ct_rescale_rgb_nonorm() {
        let p = IntensityProperties {
            max: 0.0,
            mean: 10.0,
            median: 0.0,
            min: 0.0,
            percentile_00_5: -100.0,
            percentile_99_5: 100.0,
            std: 5.0,
        };
        let mut a = v(vec![-1000.0, 10.0, 20.0, 500.0]);
        normalize_channel(&mut a, None, Scheme::CT, false, Some(&p)).unwrap();
        assert_eq!(a.data, vec![-22.0, 0.0, 2.0, 18.0]);
        assert!(normalize_channel(&mut a, None, Scheme::CT, false, None).is_err());

        let mut r = v(vec![2.0, 4.0, 6.0]);
        normalize_channel(&mut r, None, Scheme::RescaleTo01, false, None).unwrap();
        assert_eq!(r.data, vec![0.0, 0.5, 1.0]);

        let mut g = v(vec![0.0, 51.0, 255.0]);
        normalize_channel(&mut g, None, Scheme::RgbTo01, false, None).unwrap();
        assert_eq!(g.data, vec![0.0, 0.2, 1.0]);
        let mut bad = v(vec![300.0]);
        assert!(normalize_channel(&mut bad, None, Scheme::RgbTo01, false, None).is_err());

        let mut n = v(vec![3.5, -2.0]);
        normalize_channel(&mut n, None, Scheme::NoNorm, false, None).unwrap();
        assert_eq!(n.data, vec![3.5, -2.0]);
        assert_eq!(Scheme::from_class_name("CTNormalization").unwrap(), Scheme::CT);
        assert!(Scheme::from_class_name("Foo").is_err());
    }
}

//! Dataset fingerprint (§2, `fingerprint_extractor.py`).
//!
//! Split in two so that the engine can cache per case:
//! - [`CaseFingerprint::compute`] runs per case: crop to nonzero, record spacing and shapes, and
//!   keep the *exact* foreground intensity distribution as sorted distinct values with counts
//!   ([`ValueCounts`]; compact: a CT case has a few thousand distinct values).
//! - [`aggregate`] reproduces nnU-Net's statistics: per case draw `N_case = int(1e8 // n_cases)`
//!   voxels with replacement from the foreground (counts per distinct value through an alias
//!   table, seeded per case and channel), then compute mean, median, population std, min, max
//!   and the 0.5 / 99.5 percentiles (numpy linear interpolation) of the concatenation — exactly,
//!   on the weighted multiset, without ever materialising the 1e8 samples.
//!
//! nnU-Net crashes when no case has foreground; here every statistic is then 0 (no NaN).

use crate::crop::{bbox_of_mask, check_case_shapes, fill_holes, nonzero_mask};
use crate::error::{PrepError, Result};
use crate::plans::IntensityProperties;
use crate::stats;
use nnunet_io::rng::{derive_seed, Rng};
use nnunet_io::volume::numel;
use nnunet_io::Volume;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Total number of foreground samples over the dataset (nnU-Net's `10e7`, §2 step 3).
pub const NUM_FOREGROUND_SAMPLES: f64 = 1e8;

/// Sorted distinct values with their multiplicities (an exact, compact multiset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueCounts {
    /// Distinct values, ascending.
    pub values: Vec<f32>,
    /// Multiplicity of each value.
    pub counts: Vec<u64>,
}

impl ValueCounts {
    /// Builds the multiset of `values` (−0.0 is counted as 0.0). NaN must have been rejected.
    pub fn from_values(mut values: Vec<f32>) -> Self {
        for v in &mut values {
            if *v == 0.0 {
                *v = 0.0;
            }
        }
        values.sort_unstable_by(|a, b| a.total_cmp(b));
        let mut out = ValueCounts::default();
        for v in values {
            match out.values.last() {
                Some(&last) if last == v => *out.counts.last_mut().expect("parallel vecs") += 1,
                _ => {
                    out.values.push(v);
                    out.counts.push(1);
                }
            }
        }
        out
    }

    /// Number of elements (with multiplicity).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// No values at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// What one training case contributes to the dataset fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseFingerprint {
    /// Spacing in the reader's axis order (z, y, x for NIfTI through SimpleITK conventions).
    pub spacing: [f64; 3],
    /// Image shape (reader order).
    pub shape_before_crop: [usize; 3],
    /// Shape of the nonzero crop.
    pub shape_after_crop: [usize; 3],
    /// `prod(shape_after_crop) / prod(shape_before_crop)`.
    pub relative_size_after_crop: f64,
    /// Per channel: intensities of the foreground voxels (label > 0 after cropping).
    pub fg_values: Vec<ValueCounts>,
    /// NaN/inf image voxels that were read as 0 (set by the caller that read the case).
    #[serde(default)]
    pub non_finite_voxels: u64,
}

impl CaseFingerprint {
    /// Fingerprints one case: `channels` and `label` in reader axis order, `spacing` likewise.
    pub fn compute(channels: &[Volume<f32>], label: &Volume<i16>, spacing: [f64; 3]) -> Result<Self> {
        for (i, c) in channels.iter().enumerate() {
            if c.data.iter().any(|v| v.is_nan()) {
                return Err(PrepError::NaN(format!("image channel {i}")));
            }
        }
        // The crop box only: the foreground values are read in place (`crop_to_nonzero` would
        // copy every channel; label values > 0 are never masked to -1).
        let shape_before = check_case_shapes(channels, Some(label))?;
        let bbox = bbox_of_mask(&fill_holes(&nonzero_mask(channels)));
        let (lo, hi) = (bbox.lo(), bbox.hi());
        let [_, s1, s2] = shape_before;
        let fg_values = channels
            .iter()
            .map(|c| {
                let mut v = Vec::new();
                for z in lo[0]..hi[0] {
                    for y in lo[1]..hi[1] {
                        let row = (z * s1 + y) * s2;
                        for x in lo[2]..hi[2] {
                            if label.data[row + x] > 0 {
                                v.push(c.data[row + x]);
                            }
                        }
                    }
                }
                ValueCounts::from_values(v)
            })
            .collect();
        let shape_after = bbox.shape();
        let rel = numel(shape_after) as f64 / numel(shape_before) as f64;
        Ok(CaseFingerprint {
            spacing,
            shape_before_crop: shape_before,
            shape_after_crop: shape_after,
            relative_size_after_crop: rel,
            fg_values,
            non_finite_voxels: 0,
        })
    }
}

/// nnU-Net's `dataset_fingerprint.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetFingerprint {
    /// Per case, reader axis order.
    pub spacings: Vec<[f64; 3]>,
    /// Per case, reader axis order.
    pub shapes_after_crop: Vec<[usize; 3]>,
    /// Keyed by channel index as a string ("0", "1", ...).
    pub foreground_intensity_properties_per_channel: BTreeMap<String, IntensityProperties>,
    /// Median over cases of `prod(shape_after_crop) / prod(shape_before_crop)`.
    pub median_relative_size_after_cropping: f64,
}

impl DatasetFingerprint {
    /// Number of image channels.
    pub fn num_channels(&self) -> usize {
        self.foreground_intensity_properties_per_channel.len()
    }
}

/// `int(10e7 // num_cases)`: samples drawn per case and channel.
pub fn samples_per_case(num_cases: usize) -> u64 {
    samples_per_case_of(NUM_FOREGROUND_SAMPLES, num_cases)
}

fn samples_per_case_of(total: f64, num_cases: usize) -> u64 {
    if num_cases == 0 {
        return 0;
    }
    (total / num_cases as f64).floor() as u64
}

/// Order-preserving map of an f32 (no NaN) to u32.
#[inline]
fn key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline]
fn from_key(k: u32) -> f32 {
    if k & 0x8000_0000 != 0 {
        f32::from_bits(k & 0x7FFF_FFFF)
    } else {
        f32::from_bits(!k)
    }
}

/// The sampled multiset of one case and channel: multiplicities aligned with the case's values.
struct Sampled<'a> {
    values: &'a [f32],
    /// Prefix sums of the sampled counts, length `values.len() + 1`.
    cum: Vec<u64>,
}

impl Sampled<'_> {
    fn total(&self) -> u64 {
        *self.cum.last().unwrap_or(&0)
    }
    /// Number of samples with value <= the value of key `k`.
    fn count_le(&self, k: u32) -> u64 {
        let pos = self.values.partition_point(|&v| key(v) <= k);
        self.cum[pos]
    }
}

/// Draws `n` samples with replacement from the case's foreground values (nnU-Net's
/// `rng.choice(foreground, n, replace=True)`) as multiplicities per distinct value: an exact
/// multinomial draw by conditional binomials, O(distinct values) instead of O(n) random
/// accesses (the dataset total is 1e8 samples).
fn draw_samples<'a>(vc: &'a ValueCounts, n: u64, seed: u64) -> Option<Sampled<'a>> {
    let total: u64 = vc.counts.iter().sum();
    if total == 0 {
        return None;
    }
    let mut rng = Rng::new(seed);
    let mut cum = Vec::with_capacity(vc.counts.len() + 1);
    cum.push(0u64);
    let (mut n_rem, mut w_rem, mut acc) = (n, total, 0u64);
    for &w in &vc.counts {
        let c = if n_rem == 0 || w == 0 {
            0
        } else if w >= w_rem {
            n_rem
        } else {
            rng.binomial(n_rem, w as f64 / w_rem as f64)
        };
        n_rem -= c;
        w_rem -= w;
        acc += c;
        cum.push(acc);
    }
    Some(Sampled { values: &vc.values, cum })
}

/// Exact statistics of the union of sampled multisets (§2 "Saved").
fn multiset_stats(parts: &[Sampled]) -> IntensityProperties {
    let n: u64 = parts.iter().map(|p| p.total()).sum();
    if n == 0 {
        return IntensityProperties {
            max: 0.0,
            mean: 0.0,
            median: 0.0,
            min: 0.0,
            percentile_00_5: 0.0,
            percentile_99_5: 0.0,
            std: 0.0,
        };
    }
    let weighted = |f: &dyn Fn(f64) -> f64| -> f64 {
        parts
            .iter()
            .map(|p| {
                p.values.iter().zip(p.cum.windows(2)).map(|(&v, w)| (w[1] - w[0]) as f64 * f(v as f64)).sum::<f64>()
            })
            .sum::<f64>()
    };
    let mean = weighted(&|v| v) / n as f64;
    let var = weighted(&|v| (v - mean) * (v - mean)) / n as f64;
    let kth = |k: u64| -> f64 {
        // Smallest key K with count(<= K) > k.
        let (mut lo, mut hi) = (0u32, u32::MAX);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let c: u64 = parts.iter().map(|p| p.count_le(mid)).sum();
            if c > k {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        from_key(lo) as f64
    };
    IntensityProperties {
        max: kth(n - 1),
        mean,
        median: stats::percentile_by(n, 50.0, kth),
        min: kth(0),
        percentile_00_5: stats::percentile_by(n, 0.5, kth),
        percentile_99_5: stats::percentile_by(n, 99.5, kth),
        std: var.max(0.0).sqrt(),
    }
}

/// Aggregates per-case fingerprints into nnU-Net's dataset fingerprint.
///
/// Sampling is deterministic given `seed` (stream per case index and channel) and runs in
/// parallel over cases. `num_channels` is taken from the first case; every case must agree.
pub fn aggregate(cases: &[CaseFingerprint], seed: u64) -> Result<DatasetFingerprint> {
    aggregate_with_total(cases, seed, NUM_FOREGROUND_SAMPLES)
}

/// [`aggregate`] with a different total sample budget than nnU-Net's 1e8 (`int(total // n)`
/// per case).
pub fn aggregate_with_total(cases: &[CaseFingerprint], seed: u64, total_samples: f64) -> Result<DatasetFingerprint> {
    let num_channels = cases.first().map_or(0, |c| c.fg_values.len());
    if let Some((i, c)) = cases.iter().enumerate().find(|(_, c)| c.fg_values.len() != num_channels) {
        return Err(PrepError::Shape(format!(
            "case {i} has {} channels, case 0 has {num_channels}",
            c.fg_values.len()
        )));
    }
    let n_case = samples_per_case_of(total_samples, cases.len());
    let mut props = BTreeMap::new();
    for ch in 0..num_channels {
        let parts: Vec<Sampled> = cases
            .par_iter()
            .enumerate()
            .filter_map(|(i, c)| draw_samples(&c.fg_values[ch], n_case, derive_seed(seed, &[i as u64, ch as u64])))
            .collect();
        props.insert(ch.to_string(), multiset_stats(&parts));
    }
    let rel: Vec<f64> = cases.iter().map(|c| c.relative_size_after_crop).collect();
    Ok(DatasetFingerprint {
        spacings: cases.iter().map(|c| c.spacing).collect(),
        shapes_after_crop: cases.iter().map(|c| c.shape_after_crop).collect(),
        foreground_intensity_properties_per_channel: props,
        median_relative_size_after_cropping: if rel.is_empty() { 0.0 } else { stats::median(&rel) },
    })
}

/// The per-case table of a fingerprint (`cases.parquet`): spacing, shape before and after
/// cropping, relative size after cropping, one row per case id.
pub fn case_table(ids: &[String], fps: &[CaseFingerprint]) -> nnunet_io::table::Table {
    use nnunet_io::table::{Column, Table};
    let col = |f: &dyn Fn(&CaseFingerprint) -> f64| Column::F64(fps.iter().map(f).collect());
    Table::new()
        .with("case", Column::Str(ids.to_vec()))
        .with("spacing_0", col(&|c| c.spacing[0]))
        .with("spacing_1", col(&|c| c.spacing[1]))
        .with("spacing_2", col(&|c| c.spacing[2]))
        .with("shape_before_crop_0", col(&|c| c.shape_before_crop[0] as f64))
        .with("shape_before_crop_1", col(&|c| c.shape_before_crop[1] as f64))
        .with("shape_before_crop_2", col(&|c| c.shape_before_crop[2] as f64))
        .with("shape_after_crop_0", col(&|c| c.shape_after_crop[0] as f64))
        .with("shape_after_crop_1", col(&|c| c.shape_after_crop[1] as f64))
        .with("shape_after_crop_2", col(&|c| c.shape_after_crop[2] as f64))
        .with("relative_size_after_crop", col(&|c| c.relative_size_after_crop))
        .with("non_finite_voxels", Column::I64(fps.iter().map(|c| c.non_finite_voxels as i64).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(pairs: &[(f32, u64)]) -> ValueCounts {
        ValueCounts { values: pairs.iter().map(|p| p.0).collect(), counts: pairs.iter().map(|p| p.1).collect() }
    }

    /// Reference: materialise the multiset and use the plain numpy-style functions.
    fn brute(parts: &[Sampled]) -> IntensityProperties {
        let mut all = Vec::new();
        for p in parts {
            for (i, &v) in p.values.iter().enumerate() {
                for _ in 0..(p.cum[i + 1] - p.cum[i]) {
                    all.push(v as f64);
                }
            }
        }
        let n = all.len() as f64;
        let mean = all.iter().sum::<f64>() / n;
        let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        IntensityProperties {
            max: all.iter().cloned().fold(f64::MIN, f64::max),
            mean,
            median: stats::median(&all),
            min: all.iter().cloned().fold(f64::MAX, f64::min),
            percentile_00_5: stats::percentile(&all, 0.5),
            percentile_99_5: stats::percentile(&all, 99.5),
            std,
        }
    }

    /// The multinomial draw: counts sum to n, follow the weights, and are deterministic.
    #[test]
    fn draws_follow_the_weights() {
        let v = vc(&[(0.0, 1), (1.0, 2), (2.0, 7), (3.0, 0), (4.0, 10)]);
        let n = 2_000_000u64;
        let s = draw_samples(&v, n, 9).unwrap();
        assert_eq!(s.total(), n);
        let counts: Vec<u64> = s.cum.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(counts[3], 0, "zero weight never drawn");
        for (c, w) in counts.iter().zip([1.0, 2.0, 7.0, 0.0, 10.0]) {
            let (e, sd) = (n as f64 * w / 20.0, (n as f64 * w / 20.0 * (1.0 - w / 20.0)).sqrt());
            assert!((*c as f64 - e).abs() <= 5.0 * sd + 1e-9, "{counts:?}");
        }
        assert_eq!(draw_samples(&v, n, 9).unwrap().cum, s.cum);
        assert_ne!(draw_samples(&v, n, 10).unwrap().cum, s.cum);
    }

    #[test]
    fn value_counts_are_sorted_distinct() {
        let v = ValueCounts::from_values(vec![3.0, -1.0, 3.0, -0.0, 0.0, 2.5]);
        assert_eq!(v.values, vec![-1.0, 0.0, 2.5, 3.0]);
        assert_eq!(v.counts, vec![1, 2, 1, 2]);
        assert_eq!(v.total(), 6);
    }

    #[test]
    fn weighted_stats_equal_materialised_stats() {
        let a = vc(&[(-5.5, 1), (0.0, 2), (1.0, 3), (7.25, 1)]);
        let b = vc(&[(-1e6, 4), (3.0, 1), (1e6, 2)]);
        let parts = vec![draw_samples(&a, 997, 1).unwrap(), draw_samples(&b, 1013, 2).unwrap()];
        let got = multiset_stats(&parts);
        let want = brute(&parts);
        for (g, w, name) in [
            (got.mean, want.mean, "mean"),
            (got.std, want.std, "std"),
            (got.median, want.median, "median"),
            (got.min, want.min, "min"),
            (got.max, want.max, "max"),
            (got.percentile_00_5, want.percentile_00_5, "p0.5"),
            (got.percentile_99_5, want.percentile_99_5, "p99.5"),
        ] {
            assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{name}: {g} vs {w}");
        }
    }

    #[test]
    fn key_order_roundtrip() {
        let vals = [-3.5f32, -0.0001, 0.0, 1e-30, 2.0, f32::MAX, f32::MIN];
        for &v in &vals {
            assert_eq!(from_key(key(v)), v);
        }
        let mut s = vals.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        assert!(s.windows(2).all(|w| key(w[0]) < key(w[1])));
    }

    fn case(values: &[f32], label: &[i16]) -> CaseFingerprint {
        let s = [1usize, 1, values.len()];
        let img = Volume::from_vec(s, values.to_vec()).unwrap();
        let lab = Volume::from_vec(s, label.to_vec()).unwrap();
        CaseFingerprint::compute(&[img], &lab, [1.0, 2.0, 3.0]).unwrap()
    }

    #[test]
    fn aggregate_is_deterministic_and_handles_empty() {
        let c1 = case(&[0.0, 1.0, 2.0, 3.0, 0.0], &[0, 1, 1, 2, 0]);
        let c2 = case(&[5.0, 5.0, 6.0], &[0, 0, 0]); // no foreground
        assert_eq!(c1.shape_after_crop, [1, 1, 3]);
        assert!((c1.relative_size_after_crop - 0.6).abs() < 1e-12);
        assert_eq!(c1.fg_values[0].values, vec![1.0, 2.0, 3.0]);
        let a = aggregate_with_total(&[c1.clone(), c2.clone()], 42, 2e6).unwrap();
        let b = aggregate_with_total(&[c1.clone(), c2.clone()], 42, 2e6).unwrap();
        assert_eq!(samples_per_case(260), 384_615);
        assert_eq!(a, b);
        let p = &a.foreground_intensity_properties_per_channel["0"];
        assert_eq!(p.min, 1.0);
        assert_eq!(p.max, 3.0);
        assert!((p.mean - 2.0).abs() < 0.01, "{}", p.mean);
        assert_eq!(a.spacings, vec![[1.0, 2.0, 3.0]; 2]);
        assert!((a.median_relative_size_after_cropping - 0.8).abs() < 1e-12);
        // All cases without foreground: zeros, no NaN.
        let e = aggregate(&[c2], 1).unwrap();
        let p = &e.foreground_intensity_properties_per_channel["0"];
        assert_eq!((p.mean, p.std, p.percentile_99_5), (0.0, 0.0, 0.0));
        // JSON uses nnU-Net's field names.
        let j = serde_json::to_value(&a).unwrap();
        assert!(j["foreground_intensity_properties_per_channel"]["0"]["percentile_00_5"].is_number());
        assert!(j["median_relative_size_after_cropping"].is_number());
        assert_eq!(j["shapes_after_crop"][0], serde_json::json!([1, 1, 3]));
    }

    #[test]
    fn nan_is_rejected() {
        let s = [1usize, 1, 2];
        let img = Volume::from_vec(s, vec![f32::NAN, 1.0]).unwrap();
        let lab = Volume::from_vec(s, vec![1i16, 1]).unwrap();
        assert!(CaseFingerprint::compute(&[img], &lab, [1.0; 3]).is_err());
    }
}

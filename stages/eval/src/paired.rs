//! Paired comparison of two models' per-case scores (an ablation variant against its
//! baseline on the same validation cases): mean difference, a seeded percentile bootstrap
//! confidence interval, and the two-sided Wilcoxon signed-rank test.
//!
//! The Wilcoxon p-value is exact (the distribution of the signed-rank statistic enumerated by
//! dynamic programming over doubled ranks, so ties with average ranks stay exact) up to 200
//! non-zero differences and normal-approximated with tie and continuity correction beyond;
//! zero differences are dropped (`zero_method="wilcox"`, scipy's default).

use nnunet_io::rng::Rng;

/// The comparison of `b` against `a` over paired cases: statistics of `b - a`.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedDifference {
    /// Cases with a finite score on both sides.
    pub n: usize,
    /// Mean of `b - a`.
    pub mean: f64,
    /// 95% percentile-bootstrap interval of the mean (NaN for fewer than 2 cases).
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided Wilcoxon signed-rank p-value (1 when every difference is 0, NaN without cases).
    pub wilcoxon_p: f64,
    /// Cases where `b` is better / worse than `a`.
    pub better: usize,
    pub worse: usize,
}

/// Bootstrap resamples used by [`paired_difference`].
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Compares paired scores (`a[i]` and `b[i]` belong to the same case). Pairs with a non-finite
/// side are left out. `seed` makes the bootstrap reproducible.
pub fn paired_difference(a: &[f64], b: &[f64], seed: u64) -> PairedDifference {
    let d: Vec<f64> = a.iter().zip(b).filter(|(x, y)| x.is_finite() && y.is_finite()).map(|(x, y)| y - x).collect();
    let n = d.len();
    if n == 0 {
        return PairedDifference {
            n,
            mean: f64::NAN,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            wilcoxon_p: f64::NAN,
            better: 0,
            worse: 0,
        };
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let (ci_low, ci_high) = bootstrap_ci(&d, seed);
    PairedDifference {
        n,
        mean,
        ci_low,
        ci_high,
        wilcoxon_p: wilcoxon_signed_rank_p(&d),
        better: d.iter().filter(|&&x| x > 0.0).count(),
        worse: d.iter().filter(|&&x| x < 0.0).count(),
    }
}

/// 2.5th and 97.5th percentiles (linear interpolation) of the resampled means.
fn bootstrap_ci(d: &[f64], seed: u64) -> (f64, f64) {
    if d.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = Rng::new(seed);
    let n = d.len();
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| d[rng.below(n as u64) as usize]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    (percentile(&means, 2.5), percentile(&means, 97.5))
}

/// numpy's default (linear) percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Average ranks (1-based) of `v`, ties sharing the mean of their positions.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Largest number of non-zero differences for which the exact distribution is enumerated.
const EXACT_MAX: usize = 200;

/// Two-sided p-value of the Wilcoxon signed-rank test of the differences `d` against 0.
pub fn wilcoxon_signed_rank_p(d: &[f64]) -> f64 {
    let nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0 && x.is_finite()).collect();
    let n = nz.len();
    if n == 0 {
        return if d.is_empty() { f64::NAN } else { 1.0 };
    }
    let abs: Vec<f64> = nz.iter().map(|x| x.abs()).collect();
    let ranks = average_ranks(&abs);
    // Doubled ranks are integers even with ties (averages of integers are halves).
    let r2: Vec<usize> = ranks.iter().map(|r| (r * 2.0).round() as usize).collect();
    let w_plus2: usize = r2.iter().zip(&nz).filter(|(_, x)| **x > 0.0).map(|(r, _)| r).sum();
    let total2: usize = r2.iter().sum();
    if n <= EXACT_MAX {
        // counts[s]: sign assignments whose positive doubled-rank sum is s (as f64: 2^200 fits).
        let mut counts = vec![0.0f64; total2 + 1];
        counts[0] = 1.0;
        for &r in &r2 {
            for s in (r..=total2).rev() {
                counts[s] += counts[s - r];
            }
        }
        let all: f64 = counts.iter().sum();
        // Two-sided: the probability of a statistic at least as far from the centre.
        let centre2 = total2 as f64 / 2.0;
        let dist = (w_plus2 as f64 - centre2).abs();
        let tail: f64 =
            counts.iter().enumerate().filter(|(s, _)| (*s as f64 - centre2).abs() >= dist - 1e-9).map(|(_, c)| c).sum();
        return (tail / all).min(1.0);
    }
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let mut ties = 0.0;
    let mut sorted = abs.clone();
    sorted.sort_by(f64::total_cmp);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - ties / 48.0;
    let w = w_plus2 as f64 / 2.0;
    let z = ((w - mean).abs() - 0.5).max(0.0) / var.sqrt();
    (2.0 * normal_sf(z)).min(1.0)
}

/// Upper tail of the standard normal distribution, `P(Z > z)`.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilcoxon_matches_scipy() {
        // scipy.stats.wilcoxon(d).pvalue (exact, two-sided) for these differences.
        let d = [0.1, -0.05, 0.2, 0.15, 0.3, -0.02, 0.12, 0.08];
        // W+ = 33 of 36 (ranks of |d|: 0.02->1, 0.05->2, 0.08->3, 0.1->4, 0.12->5, 0.15->6, 0.2->7, 0.3->8; W- = 3).
        // P(W+ >= 33) = P(W+ <= 3) = 5/256 (subsets of {1..8} with sum <= 3: {}, {1}, {2}, {3}, {1,2}).
        let p = wilcoxon_signed_rank_p(&d);
        assert!((p - 2.0 * 5.0 / 256.0).abs() < 1e-12, "{p}");
        // All positive, n = 5: p = 2/32.
        assert!((wilcoxon_signed_rank_p(&[1.0, 2.0, 3.0, 4.0, 5.0]) - 0.0625).abs() < 1e-12);
        // Zeros are dropped; no non-zero difference: no evidence at all.
        assert_eq!(wilcoxon_signed_rank_p(&[0.0, 0.0]), 1.0);
        assert!(wilcoxon_signed_rank_p(&[]).is_nan());
        // Symmetric differences: p = 1.
        assert!((wilcoxon_signed_rank_p(&[1.0, -1.0, 2.0, -2.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn wilcoxon_ties_and_normal_approximation_agree_with_exact_at_large_n() {
        // 240 differences (normal path) vs the first 200 (exact path) of the same pattern:
        // both tiny for a strong shift, both large for none.
        let shift: Vec<f64> = (0..240).map(|i| ((i % 7) as f64 - 1.5) / 10.0).collect();
        assert!(wilcoxon_signed_rank_p(&shift) < 1e-6);
        assert!(wilcoxon_signed_rank_p(&shift[..200]) < 1e-6);
        let none: Vec<f64> = (0..240).map(|i| if i % 2 == 0 { 0.1 } else { -0.1 }).collect();
        assert!(wilcoxon_signed_rank_p(&none) > 0.9);
        assert!(wilcoxon_signed_rank_p(&none[..200]) > 0.9);
    }

    #[test]
    fn paired_difference_is_b_minus_a_and_reproducible() {
        let a = [0.8, 0.7, f64::NAN, 0.9, 0.6];
        let b = [0.85, 0.72, 0.5, 0.88, 0.7];
        let p = paired_difference(&a, &b, 7);
        assert_eq!(p.n, 4);
        assert!((p.mean - (0.05 + 0.02 - 0.02 + 0.1) / 4.0).abs() < 1e-12);
        assert_eq!((p.better, p.worse), (3, 1));
        assert!(p.ci_low <= p.mean && p.mean <= p.ci_high);
        assert_eq!(p, paired_difference(&a, &b, 7));
        let none = paired_difference(&[f64::NAN], &[1.0], 1);
        assert_eq!(none.n, 0);
        assert!(none.mean.is_nan());
    }

    #[test]
    fn erfc_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-7);
        assert!((normal_sf(1.959_963_985) - 0.025).abs() < 1e-7);
    }
}

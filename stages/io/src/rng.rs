//! The pipeline's one PRNG: xoshiro256** seeded through SplitMix64, with independent streams
//! derived by [`derive_seed`] (per case, per channel, per sample).
//!
//! Deterministic on every platform (no dependence on the standard library's hashers or the
//! OS), so "same seed, same result" holds across machines. nnU-Net uses numpy's
//! `RandomState(1234)`; bit-compatibility with MT19937 is not a goal (reference §16 "RNG").
//! Not for cryptography. Besides uniform, normal and shuffles: sampling without replacement
//! (Floyd) and exact binomial draws (the fingerprint's multinomial sampling).

/// One SplitMix64 step: advances `state` and returns the next output. Also a good 64-bit
/// mixing function for deriving independent seeds (`splitmix64(&mut (seed ^ index))`).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derives an independent stream seed from a base seed and a path of indices (e.g.
/// `derive_seed(seed, &[case_index, channel])`): each part is mixed in by a SplitMix64 step.
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut s = seed ^ 0x6A09_E667_F3BC_C908;
    let mut h = splitmix64(&mut s);
    for &p in parts {
        let mut t = h ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h = splitmix64(&mut t);
    }
    h
}

/// xoshiro256** generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose state is filled from `seed` by SplitMix64 (any seed, 0 included).
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for v in &mut s {
            *v = splitmix64(&mut sm);
        }
        Rng { s }
    }

    /// An independent generator for stream `index` of `seed` (e.g. one per case), so that
    /// streams do not depend on the order in which they are used: `Rng::new(derive_seed(seed,
    /// &[index]))`.
    pub fn derive(seed: u64, index: u64) -> Rng {
        Rng::new(derive_seed(seed, &[index]))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in `[0, n)` (`n > 0`; returns 0 for `n == 0`), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift with rejection.
        loop {
            let x = self.next_u64();
            let m = (x as u128) * (n as u128);
            let low = m as u64;
            if low >= n || low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Standard normal deviate (Box-Muller; one of the pair is discarded for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// `k` distinct integers from `[0, n)` (uniform without replacement), sorted ascending.
    /// Robert Floyd's algorithm: O(k) draws; `k` is clamped to `n`.
    pub fn sample_without_replacement(&mut self, n: u64, k: u64) -> Vec<u64> {
        let k = k.min(n);
        if k == n {
            return (0..n).collect();
        }
        let mut chosen = std::collections::HashSet::with_capacity(k as usize * 2);
        for j in (n - k)..n {
            let t = self.below(j + 1);
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
        let mut v: Vec<u64> = chosen.into_iter().collect();
        v.sort_unstable();
        v
    }
}

/// `ln(k!)`: a table below 256, Stirling's series above (error < 1e-17 relative there).
fn ln_factorial(k: u64) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = vec![0.0f64; 256];
        for i in 1..256 {
            t[i] = t[i - 1] + (i as f64).ln();
        }
        t
    });
    if k < 256 {
        return t[k as usize];
    }
    let x = k as f64 + 1.0;
    let x2 = x * x;
    (x - 0.5) * x.ln() - x + 0.918_938_533_204_672_8 + 1.0 / (12.0 * x) - 1.0 / (360.0 * x * x2)
        + 1.0 / (1260.0 * x * x2 * x2)
}

impl Rng {
    /// One draw from Binomial(n, p): exact inversion, searching outward from the mode
    /// (expected O(sqrt(n p (1 - p))) steps).
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let q = 1.0 - p;
        let m = (((n + 1) as f64 * p).floor() as u64).min(n);
        let ln_pm =
            ln_factorial(n) - ln_factorial(m) - ln_factorial(n - m) + m as f64 * p.ln() + (n - m) as f64 * (-p).ln_1p();
        let pm = ln_pm.exp();
        let mut u = self.next_f64();
        if u < pm {
            return m;
        }
        u -= pm;
        let r = p / q;
        let (mut lo, mut p_lo, mut hi, mut p_hi) = (m, pm, m, pm);
        loop {
            if lo > 0 {
                p_lo *= lo as f64 / ((n - lo + 1) as f64 * r);
                lo -= 1;
                if u < p_lo {
                    return lo;
                }
                u -= p_lo;
            }
            if hi < n {
                p_hi *= (n - hi) as f64 * r / (hi + 1) as f64;
                hi += 1;
                if u < p_hi {
                    return hi;
                }
                u -= p_hi;
            }
            // Both tails exhausted (or underflowed): what is left of u is rounding.
            if (lo == 0 || p_lo == 0.0) && (hi == n || p_hi == 0.0) {
                return m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_sensitive() {
        let a: Vec<u64> = (0..5).scan(Rng::new(42), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..5).scan(Rng::new(42), |r, _| Some(r.next_u64())).collect();
        let c: Vec<u64> = (0..5).scan(Rng::new(43), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(Rng::derive(1, 0), Rng::derive(1, 1));
    }

    #[test]
    fn splitmix_reference_value() {
        // First output of SplitMix64 seeded with 0 (reference implementation by S. Vigna).
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn distributions_are_sane() {
        let mut r = Rng::new(7);
        let n = 20000;
        let mut counts = [0usize; 5];
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            counts[r.below(5) as usize] += 1;
            let x = r.normal();
            sum += x;
            sq += x * x;
            let u = r.uniform(2.0, 3.0);
            assert!((2.0..3.0).contains(&u));
        }
        for c in counts {
            assert!((c as f64 - n as f64 / 5.0).abs() < 0.05 * n as f64, "{counts:?}");
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(v, s);
    }

    #[test]
    fn floyd_is_distinct_sorted_and_in_range() {
        let mut r = Rng::new(3);
        let v = r.sample_without_replacement(100, 37);
        assert_eq!(v.len(), 37);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert!(v.iter().all(|&x| x < 100));
        assert_eq!(r.sample_without_replacement(5, 9), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn binomial_moments_and_edges() {
        let mut r = Rng::new(5);
        for &(n, p) in &[(10u64, 0.3f64), (384_615, 0.0003), (384_615, 0.5), (1000, 0.999), (3, 1e-9)] {
            let k = 20_000;
            let xs: Vec<f64> = (0..k).map(|_| r.binomial(n, p) as f64).collect();
            let mean = xs.iter().sum::<f64>() / k as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
            let (em, ev) = (n as f64 * p, n as f64 * p * (1.0 - p));
            assert!((mean - em).abs() <= 5.0 * (ev / k as f64).sqrt() + 1e-9, "n {n} p {p}: mean {mean} vs {em}");
            assert!((var - ev).abs() <= 0.1 * ev + 1e-3, "n {n} p {p}: var {var} vs {ev}");
            assert!(xs.iter().all(|&x| x <= n as f64));
        }
        assert_eq!(r.binomial(0, 0.5), 0);
        assert_eq!(r.binomial(7, 0.0), 0);
        assert_eq!(r.binomial(7, 1.0), 7);
        // ln(k!) is continuous across the table/series boundary.
        let d = ln_factorial(256) - ln_factorial(255);
        assert!((d - 256f64.ln()).abs() < 1e-9, "{d}");
    }

    #[test]
    fn derive_is_derive_seed_of_one_part() {
        assert_eq!(Rng::derive(9, 4), Rng::new(derive_seed(9, &[4])));
        assert_ne!(derive_seed(1, &[0, 0]), derive_seed(1, &[0, 1]));
        assert_ne!(derive_seed(1, &[0]), derive_seed(1, &[0, 0]));
    }
}

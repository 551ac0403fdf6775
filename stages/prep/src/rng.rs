//! Small, explicit, seedable random number generation (no global state).
//!
//! nnU-Net uses numpy's `RandomState(1234)`; bit-compatibility with MT19937 is not a goal
//! (§16 "RNG"): every random choice here takes an explicit seed and the same seed gives the
//! same result on every platform.

/// SplitMix64: used to expand seeds (and to derive per-case / per-channel streams).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Generator with the given state.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// Next output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Derives an independent stream seed from a base seed and a list of indices
/// (e.g. `derive_seed(seed, &[case_index, channel])`).
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut s = SplitMix64::new(seed ^ 0x6A09_E667_F3BC_C908);
    let mut h = s.next_u64();
    for &p in parts {
        let mut t = SplitMix64::new(h ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        h = t.next_u64();
    }
    h
}

/// xoshiro256**: the generator used for all sampling in this crate.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Generator seeded through SplitMix64.
    pub fn new(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        let mut s = [0u64; 4];
        for v in &mut s {
            *v = sm.next_u64();
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Self { s }
    }

    /// Next 64 random bits.
    #[inline]
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
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[0, n)` (Lemire's nearly-divisionless method, unbiased). `n > 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = (self.next_u64() as u128) * (n as u128);
        let mut lo = m as u64;
        if lo < n {
            let t = n.wrapping_neg() % n;
            while lo < t {
                m = (self.next_u64() as u128) * (n as u128);
                lo = m as u64;
            }
        }
        (m >> 64) as u64
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

/// Walker/Vose alias table: O(1) draws from a discrete distribution given by weights.
#[derive(Clone, Debug)]
pub struct AliasTable {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// Builds the table; returns `None` when the total weight is zero or there are no weights.
    pub fn new(weights: &[u64]) -> Option<Self> {
        let n = weights.len();
        let total: u128 = weights.iter().map(|&w| w as u128).sum();
        if n == 0 || total == 0 {
            return None;
        }
        let mut prob: Vec<f64> = weights.iter().map(|&w| (w as u128 * n as u128) as f64 / total as f64).collect();
        let mut alias = vec![0u32; n];
        let mut small = Vec::new();
        let mut large = Vec::new();
        for (i, &p) in prob.iter().enumerate() {
            if p < 1.0 {
                small.push(i);
            } else {
                large.push(i);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s] = l as u32;
            prob[l] = (prob[l] + prob[s]) - 1.0;
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Numerical leftovers have probability one.
        for i in large.into_iter().chain(small) {
            prob[i] = 1.0;
        }
        Some(Self { prob, alias })
    }

    /// Draws one index.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let i = rng.below(self.prob.len() as u64) as usize;
        if rng.next_f64() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(8);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(derive_seed(1, &[0, 0]), derive_seed(1, &[0, 1]));
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
    fn alias_table_matches_weights() {
        let w = [1u64, 0, 3, 6];
        let t = AliasTable::new(&w).unwrap();
        let mut r = Rng::new(11);
        let mut counts = [0u64; 4];
        let n = 200_000;
        for _ in 0..n {
            counts[t.sample(&mut r)] += 1;
        }
        assert_eq!(counts[1], 0);
        for (i, &wi) in w.iter().enumerate() {
            let expect = wi as f64 / 10.0;
            let got = counts[i] as f64 / n as f64;
            assert!((got - expect).abs() < 0.01, "bin {i}: {got} vs {expect}");
        }
        assert!(AliasTable::new(&[0, 0]).is_none());
    }
}

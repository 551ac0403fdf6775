//! Cross-validation splits (§7.4): nnU-Net's `splits_final.json` and sklearn's
//! `KFold(n_splits, shuffle=True, random_state=seed)` on the sorted case ids, reproduced exactly
//! (numpy's MT19937 and the legacy `RandomState.shuffle`), so seed 12345 gives nnU-Net's folds.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// One fold: training and validation case ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Mismatch(String),
}

/// numpy's MT19937 with the legacy integer seeding (`RandomState(seed)`).
pub struct Mt19937 {
    mt: [u32; 624],
    idx: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { mt, idx: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.idx = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_interval(max)`: uniform in `[0, max]` by masked rejection.
    pub fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// numpy's legacy `RandomState.shuffle` of a 1-D array.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.interval(i as u32) as usize;
            v.swap(i, j);
        }
    }
}

/// `KFold(k, shuffle=True, random_state=seed)` on the sorted ids; train and val lists sorted.
pub fn kfold_splits(ids: &[String], k: usize, seed: u64) -> Vec<Split> {
    let mut sorted = ids.to_vec();
    sorted.sort();
    let n = sorted.len();
    let k = k.max(1);
    let mut idx: Vec<usize> = (0..n).collect();
    Mt19937::new(seed as u32).shuffle(&mut idx);
    let mut out = Vec::with_capacity(k);
    let mut start = 0;
    for f in 0..k {
        let size = n / k + usize::from(f < n % k);
        let mut in_val = vec![false; n];
        for &i in &idx[start..start + size] {
            in_val[i] = true;
        }
        start += size;
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (i, id) in sorted.iter().enumerate() {
            if in_val[i] {
                val.push(id.clone())
            } else {
                train.push(id.clone())
            }
        }
        out.push(Split { train, val });
    }
    out
}

pub fn read_splits(path: &Path) -> Result<Vec<Split>, SplitError> {
    let err = |msg: String| SplitError::File { path: path.display().to_string(), msg };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not a splits_final.json list of {{train, val}}: {e}")))
}

pub fn write_splits(path: &Path, splits: &[Split]) -> Result<(), SplitError> {
    let text = serde_json::to_string_pretty(splits).expect("serialisable");
    std::fs::write(path, text).map_err(|e| SplitError::File { path: path.display().to_string(), msg: e.to_string() })
}

/// Checks that every split only names known cases, never puts a case in train and val, and
/// that the validation sets cover every case exactly once.
pub fn check_splits(splits: &[Split], ids: &[String]) -> Result<(), SplitError> {
    use std::collections::{BTreeMap, BTreeSet};
    if splits.is_empty() {
        return Err(SplitError::Mismatch("the split has no folds".into()));
    }
    let known: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (f, s) in splits.iter().enumerate() {
        for id in s.train.iter().chain(&s.val) {
            if !known.contains(id.as_str()) {
                return Err(SplitError::Mismatch(format!("fold {f} names case '{id}', which is not in the dataset")));
            }
        }
        let tr: BTreeSet<&str> = s.train.iter().map(String::as_str).collect();
        if let Some(id) = s.val.iter().find(|v| tr.contains(v.as_str())) {
            return Err(SplitError::Mismatch(format!("fold {f} has case '{id}' in both train and val")));
        }
        for id in &s.val {
            *seen.entry(id.as_str()).or_default() += 1;
        }
    }
    if let Some(id) = known.iter().find(|id| !seen.contains_key(**id)) {
        return Err(SplitError::Mismatch(format!("case '{id}' is in no validation set")));
    }
    if let Some((id, n)) = seen.iter().find(|(_, n)| **n > 1) {
        return Err(SplitError::Mismatch(format!("case '{id}' is validated in {n} folds")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_permutation_and_raw_output() {
        // numpy: RandomState(12345).permutation(10) == [0, 7, 3, 9, 6, 4, 1, 8, 5, 2]
        let mut v: Vec<usize> = (0..10).collect();
        Mt19937::new(12345).shuffle(&mut v);
        assert_eq!(v, [0, 7, 3, 9, 6, 4, 1, 8, 5, 2]);
        // numpy: a = arange(260); RandomState(12345).shuffle(a); a[:5] == [227, 181, 57, 203, 216]
        let mut a: Vec<usize> = (0..260).collect();
        Mt19937::new(12345).shuffle(&mut a);
        assert_eq!(&a[..5], &[227, 181, 57, 203, 216]);
    }

    #[test]
    fn kfold_matches_sklearn() {
        // sklearn KFold(5, shuffle=True, random_state=12345) on hippocampus_001..260 (first
        // validation ids of each fold).
        let ids: Vec<String> = (1..=260).map(|i| format!("hippocampus_{i:03}")).collect();
        let s = kfold_splits(&ids, 5, 12345);
        let firsts: Vec<&str> = s.iter().map(|f| f.val[0].as_str()).collect();
        assert_eq!(
            firsts,
            ["hippocampus_010", "hippocampus_002", "hippocampus_003", "hippocampus_001", "hippocampus_006"]
        );
        assert_eq!(&s[1].val[..3], &["hippocampus_002", "hippocampus_015", "hippocampus_016"]);
        assert_eq!(s.iter().map(|f| f.val.len()).sum::<usize>(), 260);
        check_splits(&s, &ids).unwrap();
        // Uneven: 7 cases, seed 3 -> [[c4, c6], [c3, c5], [c1], [c0], [c2]].
        let ids: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
        let v: Vec<Vec<String>> = kfold_splits(&ids, 5, 3).into_iter().map(|f| f.val).collect();
        assert_eq!(v, [vec!["c4", "c6"], vec!["c3", "c5"], vec!["c1"], vec!["c0"], vec!["c2"]]);
    }

    #[test]
    fn roundtrip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
        let s = kfold_splits(&ids, 3, 1);
        let p = dir.path().join("splits_final.json");
        write_splits(&p, &s).unwrap();
        assert_eq!(read_splits(&p).unwrap(), s);
        let mut bad = s.clone();
        bad[0].val.push("zz".into());
        assert!(check_splits(&bad, &ids).unwrap_err().to_string().contains("zz"));
        let mut dup = s.clone();
        dup[1].val.push(s[0].val[0].clone());
        assert!(check_splits(&dup, &ids).is_err());
        std::fs::write(&p, "{").unwrap();
        assert!(read_splits(&p).is_err());
    }

    /// Parity with numpy / sklearn (fixture from `tests/fixtures/gen_split_fixture.py`).
    #[test]
    fn matches_numpy_and_sklearn_fixture() {
        let v: serde_json::Value = serde_json::from_str(include_str!("../tests/fixtures/split_fixture.json")).unwrap();
        let want: Vec<usize> = serde_json::from_value(v["permutation_12345_260"].clone()).unwrap();
        let mut a: Vec<usize> = (0..260).collect();
        Mt19937::new(12345).shuffle(&mut a);
        assert_eq!(a, want);
        for case in v["kfold"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let seed = case["seed"].as_u64().unwrap();
            let ids: Vec<String> = (0..n).map(|i| format!("case_{i:03}")).collect();
            let want: Vec<Split> = serde_json::from_value(case["splits"].clone()).unwrap();
            assert_eq!(kfold_splits(&ids, 5, seed), want, "n {n} seed {seed}");
        }
    }
}

//! Foreground class locations for oversampling (§4.1 step 7, `_sample_foreground_locations`).
//!
//! Per foreground label or region with `n` voxels, `k = max(min(10000, n), ceil(1% of n))`
//! voxels are drawn uniformly without replacement (seeded; nnU-Net uses `RandomState(1234)`).
//! Coordinates are stored as `[0, z, y, x]` (channel index in column 0, like nnU-Net), in the
//! preprocessed (transposed, cropped, resampled) array, sorted in C order.

use nnunet_io::rng::{derive_seed, Rng};
use nnunet_io::Volume;
use serde::{Deserialize, Serialize};

/// §4.1 step 7: at most this many locations per class (unless 1% is more).
pub const MIN_NUM_SAMPLES: u64 = 10_000;
/// §4.1 step 7: at least this fraction of a class's voxels.
pub const MIN_PERCENT_COVERAGE: f64 = 0.01;

/// A class: one label, or a region (set of labels; also used for the ignore-label key).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassKey {
    /// One label value (serialized as a number).
    Label(i16),
    /// A set of label values (serialized as a list).
    Region(Vec<i16>),
}

impl ClassKey {
    /// The label values of the class.
    pub fn labels(&self) -> Vec<i16> {
        match self {
            ClassKey::Label(l) => vec![*l],
            ClassKey::Region(r) => r.clone(),
        }
    }
}

/// Which classes to collect locations for.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum ClassSpec {
    /// Every distinct label > 0 present in the segmentation (plain label datasets without an
    /// ignore label; absent labels would only get empty lists in nnU-Net).
    #[default]
    Auto,
    /// Explicit classes, in nnU-Net's key order.
    Classes(Vec<ClassKey>),
}

impl ClassSpec {
    /// nnU-Net's `LabelManager` rule: foreground labels (or regions), plus the key
    /// `[-1] + all_labels` when an ignore label exists.
    pub fn from_labels(all_labels: &[i16], regions: Option<&[Vec<i16>]>, ignore_label: Option<i16>) -> Self {
        let mut classes: Vec<ClassKey> = match regions {
            Some(rs) => rs
                .iter()
                .filter(|r| !(r.is_empty() || r.iter().all(|&l| l == 0)))
                .map(|r| if r.len() == 1 { ClassKey::Label(r[0]) } else { ClassKey::Region(r.clone()) })
                .collect(),
            None => all_labels.iter().filter(|&&l| l != 0).map(|&l| ClassKey::Label(l)).collect(),
        };
        if ignore_label.is_some() {
            let mut r = vec![-1i16];
            r.extend(all_labels.iter().copied().filter(|&l| Some(l) != ignore_label));
            classes.push(ClassKey::Region(r));
        }
        ClassSpec::Classes(classes)
    }

    fn resolve(&self, seg: &Volume<i16>) -> Vec<ClassKey> {
        match self {
            ClassSpec::Classes(c) => c.clone(),
            ClassSpec::Auto => {
                crate::resample::unique_labels(&seg.data).into_iter().filter(|&l| l > 0).map(ClassKey::Label).collect()
            }
        }
    }
}

/// Sampled locations per class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassLocations {
    /// `(class, [0, z, y, x] rows)` in key order.
    pub classes: Vec<(ClassKey, Vec<[i32; 4]>)>,
}

impl ClassLocations {
    /// Number of stored locations over all classes.
    pub fn total(&self) -> usize {
        self.classes.iter().map(|c| c.1.len()).sum()
    }
    /// Locations of one class.
    pub fn get(&self, key: &ClassKey) -> Option<&[[i32; 4]]> {
        self.classes.iter().find(|c| &c.0 == key).map(|c| c.1.as_slice())
    }
}

/// Number of locations drawn for a class of `n` voxels.
pub fn num_samples(n: u64) -> u64 {
    let k = n.min(MIN_NUM_SAMPLES);
    k.max((n as f64 * MIN_PERCENT_COVERAGE).ceil() as u64).min(n)
}

/// Samples class locations from a (resampled) segmentation.
pub fn sample_class_locations(seg: &Volume<i16>, spec: &ClassSpec, seed: u64) -> ClassLocations {
    let keys = spec.resolve(seg);
    // label -> classes containing it, as ranges into `members`.
    let mut table = vec![(0u32, 0u32); 65536];
    let mut members: Vec<u32> = Vec::new();
    {
        let mut per_label: std::collections::BTreeMap<i16, Vec<u32>> = Default::default();
        for (ci, k) in keys.iter().enumerate() {
            for l in k.labels() {
                let e = per_label.entry(l).or_default();
                if !e.contains(&(ci as u32)) {
                    e.push(ci as u32);
                }
            }
        }
        for (l, cs) in per_label {
            table[(l as i32 + 32768) as usize] = (members.len() as u32, cs.len() as u32);
            members.extend(cs);
        }
    }
    let classes_of = |l: i16| {
        let (s, n) = table[(l as i32 + 32768) as usize];
        &members[s as usize..(s + n) as usize]
    };
    let mut counts = vec![0u64; keys.len()];
    for &l in &seg.data {
        for &c in classes_of(l) {
            counts[c as usize] += 1;
        }
    }
    let picks: Vec<Vec<u64>> = counts
        .iter()
        .enumerate()
        .map(|(ci, &n)| Rng::new(derive_seed(seed, &[ci as u64])).sample_without_replacement(n, num_samples(n)))
        .collect();
    let mut out: Vec<Vec<[i32; 4]>> = picks.iter().map(|p| Vec::with_capacity(p.len())).collect();
    let mut rank = vec![0u64; keys.len()];
    let mut next = vec![0usize; keys.len()];
    let [_, s1, s2] = seg.shape;
    for (i, &l) in seg.data.iter().enumerate() {
        for &c in classes_of(l) {
            let c = c as usize;
            if next[c] < picks[c].len() && picks[c][next[c]] == rank[c] {
                out[c].push([0, (i / (s1 * s2)) as i32, ((i / s2) % s1) as i32, (i % s2) as i32]);
                next[c] += 1;
            }
            rank[c] += 1;
        }
    }
    ClassLocations { classes: keys.into_iter().zip(out).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_counts_rule() {
        assert_eq!(num_samples(0), 0);
        assert_eq!(num_samples(500), 500);
        assert_eq!(num_samples(20_000), 10_000);
        assert_eq!(num_samples(2_000_000), 20_000);
        assert_eq!(num_samples(2_000_001), 20_001);
    }

    #[test]
    fn locations_are_correct_distinct_and_seeded() {
        let shape = [4usize, 30, 100];
        let data: Vec<i16> = (0..4 * 30 * 100)
            .map(|i| {
                if i % 7 == 0 {
                    2
                } else if i % 3 == 0 {
                    1
                } else {
                    0
                }
            })
            .collect();
        let seg = Volume::from_vec(shape, data).unwrap();
        let a = sample_class_locations(&seg, &ClassSpec::Auto, 5);
        let b = sample_class_locations(&seg, &ClassSpec::Auto, 5);
        assert_eq!(a, b);
        assert_eq!(a.classes.len(), 2);
        for (k, locs) in &a.classes {
            let ClassKey::Label(l) = k else { panic!() };
            let n = seg.data.iter().filter(|&&v| v == *l).count() as u64;
            assert_eq!(locs.len() as u64, num_samples(n));
            for p in locs {
                assert_eq!(seg.get(p[1] as usize, p[2] as usize, p[3] as usize), *l);
            }
            let mut d = locs.clone();
            d.dedup();
            assert_eq!(d.len(), locs.len());
        }
        // Regions and the ignore key.
        let spec = ClassSpec::from_labels(&[0, 1, 2], Some(&[vec![1, 2], vec![2]]), None);
        let r = sample_class_locations(&seg, &spec, 1);
        let n12 = seg.data.iter().filter(|&&v| v > 0).count() as u64;
        assert_eq!(r.classes[0].1.len() as u64, num_samples(n12));
        assert_eq!(r.classes[1].0, ClassKey::Label(2));
        let spec = ClassSpec::from_labels(&[0, 1, 2, 3], None, Some(3));
        let ClassSpec::Classes(c) = &spec else { panic!() };
        assert_eq!(c.last().unwrap(), &ClassKey::Region(vec![-1, 0, 1, 2]));
        // Background-only segmentation: no classes (Auto) / empty lists.
        let empty = Volume::filled([2, 2, 2], 0i16);
        assert_eq!(sample_class_locations(&empty, &ClassSpec::Auto, 0).total(), 0);
        let s = ClassSpec::from_labels(&[0, 1], None, None);
        let e = sample_class_locations(&empty, &s, 0);
        assert_eq!(e.classes, vec![(ClassKey::Label(1), vec![])]);
    }
}

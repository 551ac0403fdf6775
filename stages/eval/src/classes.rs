//! What is evaluated: a label (`1`) or a region (`(1, 2)`, the union of its labels), keyed
//! exactly as nnU-Net keys them in `summary.json` (`str(int)` / `str(tuple)`, reference §11).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// One evaluated class: a plain label or a region (union of labels).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelOrRegion {
    Label(i32),
    /// A region; nnU-Net keeps a one-element list as the tuple `(3,)`.
    Region(Vec<i32>),
}

impl LabelOrRegion {
    /// The `summary.json` key: `"1"` for a label, `"(1, 2)"` / `"(3,)"` for a region
    /// (Python's `str(int)` / `str(tuple)`, §11).
    pub fn key(&self) -> String {
        match self {
            LabelOrRegion::Label(l) => l.to_string(),
            LabelOrRegion::Region(r) if r.len() == 1 => format!("({},)", r[0]),
            LabelOrRegion::Region(r) => {
                format!("({})", r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "))
            }
        }
    }

    /// Parses a key written by [`LabelOrRegion::key`] (nnU-Net's `key_to_label_or_region`).
    pub fn parse_key(key: &str) -> Option<LabelOrRegion> {
        let k = key.trim();
        if let Ok(v) = k.parse::<i32>() {
            return Some(LabelOrRegion::Label(v));
        }
        let inner = k.strip_prefix('(')?.strip_suffix(')')?;
        let vals: Option<Vec<i32>> =
            inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect();
        let vals = vals?;
        (!vals.is_empty()).then_some(LabelOrRegion::Region(vals))
    }

    /// The label values covered.
    pub fn values(&self) -> Vec<i32> {
        match self {
            LabelOrRegion::Label(l) => vec![*l],
            LabelOrRegion::Region(r) => r.clone(),
        }
    }

    /// Whether a voxel with label `v` belongs to this class' mask.
    #[inline]
    pub fn contains(&self, v: i32) -> bool {
        match self {
            LabelOrRegion::Label(l) => *l == v,
            LabelOrRegion::Region(r) => r.contains(&v),
        }
    }

    /// nnU-Net skips key `0` (and only that; a region is never skipped) in `foreground_mean`.
    pub fn is_background(&self) -> bool {
        matches!(self, LabelOrRegion::Label(0))
    }
}

impl fmt::Display for LabelOrRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Serialized as an integer (label) or a list of integers (region), as nnU-Net's
/// `postprocessing.json` writes kwargs.
impl Serialize for LabelOrRegion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LabelOrRegion::Label(l) => s.serialize_i32(*l),
            LabelOrRegion::Region(r) => r.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for LabelOrRegion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(i32),
            Many(Vec<i32>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::One(l) => LabelOrRegion::Label(l),
            Raw::Many(r) => LabelOrRegion::Region(r),
        })
    }
}

/// Plain labels as classes (`labels_to_list_of_regions` is not applied: keys stay `"1"`).
pub fn labels(values: &[i32]) -> Vec<LabelOrRegion> {
    values.iter().map(|&v| LabelOrRegion::Label(v)).collect()
}

/// What nnU-Net evaluates for a dataset (§11, `LabelManager`): the foreground regions when any
/// `labels` entry is a list of more than one value, else the foreground labels (sorted).
///
/// `entries` are the dataset.json `labels` values in JSON order (ignore excluded): a single
/// value is a label, a list a region.
pub fn classes_from_label_entries(entries: &[Vec<i32>], is_list: &[bool]) -> Vec<LabelOrRegion> {
    let has_regions = entries.iter().any(|e| e.len() > 1);
    if has_regions {
        entries
            .iter()
            .zip(is_list)
            .filter(|(e, _)| !(e.iter().all(|&v| v == 0)))
            .map(|(e, &list)| if list { LabelOrRegion::Region(e.clone()) } else { LabelOrRegion::Label(e[0]) })
            .collect()
    } else {
        let mut v: Vec<i32> = entries.iter().flatten().copied().filter(|&v| v != 0).collect();
        v.sort_unstable();
        v.dedup();
        labels(&v)
    }
}

/// [`classes_from_label_entries`] for a dataset's parsed `labels` (ignore excluded).
pub fn from_labels(l: &nnunet_io::labels::Labels) -> Vec<LabelOrRegion> {
    use nnunet_io::labels::LabelDef;
    let entries: Vec<Vec<i32>> = l.entries.iter().map(|(_, d)| d.values()).collect();
    let is_list: Vec<bool> = l.entries.iter().map(|(_, d)| matches!(d, LabelDef::Region(_))).collect();
    classes_from_label_entries(&entries, &is_list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_python_str() {
        assert_eq!(LabelOrRegion::Label(3).key(), "3");
        assert_eq!(LabelOrRegion::Region(vec![1, 2, 3]).key(), "(1, 2, 3)");
        assert_eq!(LabelOrRegion::Region(vec![2]).key(), "(2,)");
        for c in [LabelOrRegion::Label(-1), LabelOrRegion::Region(vec![1, 2]), LabelOrRegion::Region(vec![7])] {
            assert_eq!(LabelOrRegion::parse_key(&c.key()), Some(c));
        }
        assert_eq!(LabelOrRegion::parse_key("x"), None);
    }

    #[test]
    fn regions_detected_like_label_manager() {
        let c = classes_from_label_entries(&[vec![0], vec![1, 2, 3], vec![2, 3], vec![3]], &[false, true, true, false]);
        assert_eq!(
            c,
            vec![LabelOrRegion::Region(vec![1, 2, 3]), LabelOrRegion::Region(vec![2, 3]), LabelOrRegion::Label(3)]
        );
        let c = classes_from_label_entries(&[vec![0], vec![2], vec![1]], &[false, false, false]);
        assert_eq!(c, labels(&[1, 2]));
        let l = nnunet_io::labels::Labels::from_v2_json(
            &serde_json::json!({"background": 0, "whole": [1, 2], "core": [2], "ignore": 3}),
            Some(&serde_json::json!([1, 2])),
        )
        .unwrap();
        assert_eq!(from_labels(&l), vec![LabelOrRegion::Region(vec![1, 2]), LabelOrRegion::Region(vec![2])]);
    }

    #[test]
    fn serde_as_int_or_list() {
        let s = serde_json::to_string(&vec![LabelOrRegion::Label(1), LabelOrRegion::Region(vec![1, 2])]).unwrap();
        assert_eq!(s, "[1,[1,2]]");
        let back: Vec<LabelOrRegion> = serde_json::from_str(&s).unwrap();
        assert_eq!(back[1], LabelOrRegion::Region(vec![1, 2]));
    }
}

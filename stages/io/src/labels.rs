//! The `labels` of a dataset: plain labels, region-based labels, and the ignore label
//! (reference §1.2), with nnU-Net's `LabelManager` arithmetic.

use serde_json::{Map, Value};
use std::fmt;

/// One entry of the `labels` dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelDef {
    /// `"name": 3`
    Label(i32),
    /// `"name": [1, 2, 3]`, a region (union of label values).
    Region(Vec<i32>),
}

impl LabelDef {
    /// The label values this entry covers.
    pub fn values(&self) -> Vec<i32> {
        match self {
            LabelDef::Label(v) => vec![*v],
            LabelDef::Region(r) => r.clone(),
        }
    }
}

/// The labels of a dataset, in the order of the JSON dictionary (the order matters for
/// regions, reference §1.2: never sorted).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Labels {
    /// `(name, definition)` in JSON order, the `ignore` entry excluded.
    pub entries: Vec<(String, LabelDef)>,
    /// The value of the `"ignore"` entry, if any.
    pub ignore: Option<i32>,
    /// Top-level `regions_class_order` of a region-based dataset.
    pub regions_class_order: Option<Vec<i32>>,
}

/// A `labels` dictionary that cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelsError {
    #[error("\"labels\" must be an object")]
    NotAnObject,
    #[error("label \"{name}\": {msg}")]
    BadValue { name: String, msg: String },
    #[error("label name \"{0}\" appears twice")]
    DuplicateName(String),
    #[error("\"regions_class_order\": {0}")]
    BadRegionsClassOrder(String),
}

/// A semantic problem of a readable `labels` dictionary (what nnU-Net's
/// `verify_dataset_integrity` rejects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelIssue {
    /// No entry has the value 0.
    NoBackground,
    /// The entry named "background" is not 0.
    BackgroundNotZero(Vec<i32>),
    /// The sorted labels (ignore included) do not step by 1 from 0.
    NotConsecutive(Vec<i32>),
    /// The ignore label is not max(label) + 1.
    IgnoreNotMaxPlusOne { ignore: i32, max: i32 },
    /// Regions are used but `regions_class_order` is missing.
    RegionsWithoutClassOrder,
    /// `regions_class_order` does not have one entry per region.
    RegionsClassOrderLength { regions: usize, order: usize },
    /// `regions_class_order` given for a dataset without regions.
    ClassOrderWithoutRegions,
}

fn join(v: &[i32]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for LabelIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelIssue::NoBackground => write!(f, "labels have no background (value 0); add \"background\": 0"),
            LabelIssue::BackgroundNotZero(v) => write!(f, "label \"background\" is {}, it must be 0", join(v)),
            LabelIssue::NotConsecutive(v) => {
                write!(f, "labels must be consecutive integers starting at 0 (0, 1, 2, ...), found {}", join(v))
            }
            LabelIssue::IgnoreNotMaxPlusOne { ignore, max } => {
                write!(f, "ignore label {ignore} must be the largest label plus one ({})", max + 1)
            }
            LabelIssue::RegionsWithoutClassOrder => {
                write!(f, "labels define regions but dataset.json has no \"regions_class_order\"")
            }
            LabelIssue::RegionsClassOrderLength { regions, order } => {
                write!(f, "\"regions_class_order\" has {order} entries but there are {regions} regions")
            }
            LabelIssue::ClassOrderWithoutRegions => {
                write!(f, "\"regions_class_order\" is given but no label is a region")
            }
        }
    }
}

/// Reads a JSON number that must be an integer (`1` or `1.0`) fitting i32.
fn int_value(v: &Value) -> Option<i32> {
    if let Some(i) = v.as_i64() {
        return i32::try_from(i).ok();
    }
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f >= i32::MIN as f64 && f <= i32::MAX as f64).then_some(f as i32)
}

impl Labels {
    /// Parses nnU-Net v2 labels (`name -> int | [int, ...]`, plus `"ignore": K`) and the
    /// optional top-level `regions_class_order`.
    pub fn from_v2_json(labels: &Value, regions_class_order: Option<&Value>) -> Result<Labels, LabelsError> {
        let obj = labels.as_object().ok_or(LabelsError::NotAnObject)?;
        let mut out = Labels::default();
        for (name, v) in obj {
            let bad = |msg: &str| LabelsError::BadValue { name: name.clone(), msg: msg.to_string() };
            if name == "ignore" {
                out.ignore = Some(int_value(v).ok_or_else(|| bad("the ignore label must be an integer"))?);
                continue;
            }
            let def = match v {
                Value::Array(a) => {
                    let r: Option<Vec<i32>> = a.iter().map(int_value).collect();
                    let r = r.ok_or_else(|| bad("a region must be a list of integers"))?;
                    if r.is_empty() {
                        return Err(bad("a region must not be empty"));
                    }
                    LabelDef::Region(r)
                }
                _ => LabelDef::Label(int_value(v).ok_or_else(|| bad("expected an integer or a list of integers"))?),
            };
            out.entries.push((name.clone(), def));
        }
        if let Some(order) = regions_class_order {
            let a = order.as_array().ok_or_else(|| LabelsError::BadRegionsClassOrder("expected a list".into()))?;
            let r: Option<Vec<i32>> = a.iter().map(int_value).collect();
            out.regions_class_order =
                Some(r.ok_or_else(|| LabelsError::BadRegionsClassOrder("expected a list of integers".into()))?);
        }
        Ok(out)
    }

    /// Parses MSD labels (`"0": "background", "1": "PZ"`, int -> name), inverted to
    /// name -> int in JSON order, as nnU-Net's MSD converter does (reference §1.4).
    pub fn from_msd_json(labels: &Value) -> Result<Labels, LabelsError> {
        let obj = labels.as_object().ok_or(LabelsError::NotAnObject)?;
        let mut out = Labels::default();
        for (k, v) in obj {
            let value: i32 = k.trim().parse().map_err(|_| LabelsError::BadValue {
                name: k.clone(),
                msg: "MSD label keys must be integers (\"0\": \"background\")".into(),
            })?;
            let name = v.as_str().ok_or_else(|| LabelsError::BadValue {
                name: k.clone(),
                msg: "MSD label values must be names".into(),
            })?;
            if out.entries.iter().any(|(n, _)| n == name) {
                return Err(LabelsError::DuplicateName(name.to_string()));
            }
            out.entries.push((name.to_string(), LabelDef::Label(value)));
        }
        Ok(out)
    }

    /// Plain labels `background, label_1, ..., label_n` with values `0..=n`.
    pub fn plain(names: &[&str]) -> Labels {
        Labels {
            entries: names.iter().enumerate().map(|(i, n)| (n.to_string(), LabelDef::Label(i as i32))).collect(),
            ..Labels::default()
        }
    }

    /// Whether any entry is a region of more than one label (nnU-Net's rule: a one-element
    /// list is still a plain label).
    pub fn has_regions(&self) -> bool {
        self.entries.iter().any(|(_, d)| matches!(d, LabelDef::Region(r) if r.len() > 1))
    }

    /// Every label value, sorted and unique, background included, ignore excluded
    /// (`LabelManager.all_labels`).
    pub fn all_labels(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.entries.iter().flat_map(|(_, d)| d.values()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The non-zero labels of [`Labels::all_labels`].
    pub fn foreground_labels(&self) -> Vec<i32> {
        self.all_labels().into_iter().filter(|&l| l != 0).collect()
    }

    /// The regions to predict, in JSON order, background and ignore skipped. Without
    /// regions, each foreground label `l` is the region `[l]`.
    pub fn foreground_regions(&self) -> Vec<Vec<i32>> {
        if !self.has_regions() {
            return self.foreground_labels().into_iter().map(|l| vec![l]).collect();
        }
        self.entries.iter().map(|(_, d)| d.values()).filter(|v| !v.is_empty() && v.as_slice() != [0]).collect()
    }

    /// Output channels of the network: the number of classes (background included) for
    /// plain labels, the number of regions for region-based training.
    pub fn num_segmentation_heads(&self) -> usize {
        if self.has_regions() {
            self.foreground_regions().len()
        } else {
            self.all_labels().len()
        }
    }

    /// Entries of the JSON `labels` dictionary, background and ignore included (what
    /// nnU-Net passes as `num_classes` to its VRAM estimate, reference §6.3).
    pub fn num_labels_in_json(&self) -> usize {
        self.entries.len() + usize::from(self.ignore.is_some())
    }

    /// Every value that may appear in a label file: all labels plus the ignore label.
    pub fn allowed_values(&self) -> Vec<i32> {
        let mut v = self.all_labels();
        if let Some(i) = self.ignore {
            v.push(i);
            v.sort_unstable();
            v.dedup();
        }
        v
    }

    /// The name of a plain label value (first entry with exactly that value).
    pub fn name_of(&self, value: i32) -> Option<&str> {
        self.entries.iter().find(|(_, d)| *d == LabelDef::Label(value)).map(|(n, _)| n.as_str())
    }

    /// The nnU-Net v2 `labels` dictionary (name -> int or list, `"ignore"` last), for the
    /// dataset.json of outputs.
    pub fn to_v2_json(&self) -> Value {
        let mut m = Map::new();
        for (name, d) in &self.entries {
            let v = match d {
                LabelDef::Label(l) => Value::from(*l),
                LabelDef::Region(r) => Value::from(r.clone()),
            };
            m.insert(name.clone(), v);
        }
        if let Some(i) = self.ignore {
            m.insert("ignore".into(), Value::from(i));
        }
        Value::Object(m)
    }

    /// The semantic problems nnU-Net's dataset verification reports (reference §1.1, §1.2):
    /// background must be 0, labels (ignore included) consecutive from 0, ignore =
    /// max + 1, and regions need a `regions_class_order` with one entry per region.
    pub fn issues(&self) -> Vec<LabelIssue> {
        let mut out = Vec::new();
        let all = self.all_labels();
        let bg: Vec<i32> =
            self.entries.iter().filter(|(n, _)| n == "background").flat_map(|(_, d)| d.values()).collect();
        if !bg.is_empty() && bg != [0] {
            out.push(LabelIssue::BackgroundNotZero(bg));
        } else if !all.contains(&0) {
            out.push(LabelIssue::NoBackground);
        }
        let expected = self.allowed_values();
        if expected.first() != Some(&0) || expected.windows(2).any(|w| w[1] - w[0] != 1) {
            out.push(LabelIssue::NotConsecutive(expected));
        }
        if let (Some(ignore), Some(&max)) = (self.ignore, all.last()) {
            if ignore != max + 1 {
                out.push(LabelIssue::IgnoreNotMaxPlusOne { ignore, max });
            }
        }
        match (self.has_regions(), &self.regions_class_order) {
            (true, None) => out.push(LabelIssue::RegionsWithoutClassOrder),
            (true, Some(o)) if o.len() != self.foreground_regions().len() => out
                .push(LabelIssue::RegionsClassOrderLength { regions: self.foreground_regions().len(), order: o.len() }),
            (false, Some(_)) => out.push(LabelIssue::ClassOrderWithoutRegions),
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_v2_labels() {
        let l = Labels::from_v2_json(&json!({"background": 0, "liver": 1, "tumor": 2}), None).unwrap();
        assert!(!l.has_regions());
        assert_eq!(l.all_labels(), vec![0, 1, 2]);
        assert_eq!(l.foreground_labels(), vec![1, 2]);
        assert_eq!(l.foreground_regions(), vec![vec![1], vec![2]]);
        assert_eq!(l.num_segmentation_heads(), 3);
        assert_eq!(l.num_labels_in_json(), 3);
        assert!(l.issues().is_empty());
        assert_eq!(l.to_v2_json(), json!({"background": 0, "liver": 1, "tumor": 2}));
        assert_eq!(l.name_of(2), Some("tumor"));
    }

    #[test]
    fn regions_brats_style_keep_json_order() {
        let j = json!({"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing": 3});
        let l = Labels::from_v2_json(&j, Some(&json!([1, 2, 3]))).unwrap();
        assert!(l.has_regions());
        assert_eq!(l.all_labels(), vec![0, 1, 2, 3]);
        assert_eq!(l.foreground_regions(), vec![vec![1, 2, 3], vec![2, 3], vec![3]]);
        assert_eq!(l.num_segmentation_heads(), 3);
        assert!(l.issues().is_empty(), "{:?}", l.issues());
        assert_eq!(l.to_v2_json(), j);
        // Without regions_class_order: an issue.
        let l2 = Labels::from_v2_json(&j, None).unwrap();
        assert_eq!(l2.issues(), vec![LabelIssue::RegionsWithoutClassOrder]);
        let l3 = Labels::from_v2_json(&j, Some(&json!([1, 2]))).unwrap();
        assert_eq!(l3.issues(), vec![LabelIssue::RegionsClassOrderLength { regions: 3, order: 2 }]);
    }

    #[test]
    fn ignore_label_rules() {
        let l = Labels::from_v2_json(&json!({"background": 0, "a": 1, "ignore": 2}), None).unwrap();
        assert_eq!(l.ignore, Some(2));
        assert_eq!(l.all_labels(), vec![0, 1]);
        assert_eq!(l.allowed_values(), vec![0, 1, 2]);
        assert_eq!(l.num_labels_in_json(), 3);
        assert_eq!(l.num_segmentation_heads(), 2);
        assert!(l.issues().is_empty());
        assert_eq!(l.to_v2_json(), json!({"background": 0, "a": 1, "ignore": 2}));
        let bad = Labels::from_v2_json(&json!({"background": 0, "a": 1, "ignore": 5}), None).unwrap();
        let issues = bad.issues();
        assert!(issues.contains(&LabelIssue::IgnoreNotMaxPlusOne { ignore: 5, max: 1 }), "{issues:?}");
        assert!(issues.iter().any(|i| matches!(i, LabelIssue::NotConsecutive(_))));
    }

    #[test]
    fn semantic_issues() {
        let l = Labels::from_v2_json(&json!({"background": 1, "a": 2}), None).unwrap();
        assert_eq!(l.issues()[0], LabelIssue::BackgroundNotZero(vec![1]));
        let l = Labels::from_v2_json(&json!({"bg": 0, "a": 1, "b": 3}), None).unwrap();
        let i = l.issues();
        assert_eq!(i, vec![LabelIssue::NotConsecutive(vec![0, 1, 3])]);
        assert!(i[0].to_string().contains("0, 1, 3"));
        let l = Labels::from_v2_json(&json!({"a": 1, "b": 2}), None).unwrap();
        assert!(l.issues().contains(&LabelIssue::NoBackground));
        let l = Labels::from_v2_json(&json!({"background": 0, "a": 1}), Some(&json!([1]))).unwrap();
        assert_eq!(l.issues(), vec![LabelIssue::ClassOrderWithoutRegions]);
    }

    #[test]
    fn msd_labels_are_inverted_in_order() {
        let l = Labels::from_msd_json(&json!({"0": "background", "1": "Anterior", "2": "Posterior"})).unwrap();
        assert_eq!(l, Labels::plain(&["background", "Anterior", "Posterior"]));
        assert!(Labels::from_msd_json(&json!({"x": "background"})).is_err());
        assert!(Labels::from_msd_json(&json!({"0": 1})).is_err());
        assert_eq!(
            Labels::from_msd_json(&json!({"0": "a", "1": "a"})).unwrap_err(),
            LabelsError::DuplicateName("a".into())
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        assert!(Labels::from_v2_json(&json!([0, 1]), None).is_err());
        let e = Labels::from_v2_json(&json!({"background": 0, "a": "one"}), None).unwrap_err();
        assert!(e.to_string().contains("\"a\""), "{e}");
        assert!(Labels::from_v2_json(&json!({"background": 0, "a": 1.5}), None).is_err());
        assert!(Labels::from_v2_json(&json!({"background": 0, "a": []}), None).is_err());
        assert!(Labels::from_v2_json(&json!({"background": 0.0, "a": 1}), Some(&json!("x"))).is_err());
        assert_eq!(Labels::from_v2_json(&json!({"background": 0.0, "a": 1}), None).unwrap().all_labels(), vec![0, 1]);
    }
}

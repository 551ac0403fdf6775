//! Case-averaged summary and `summary.json` (reference §11, `compute_metrics_on_folder`):
//! per class the `nanmean` over cases of every metric, `foreground_mean` the plain mean over
//! the class means with key `0` skipped (so a class that is NaN everywhere makes it NaN).

use crate::classes::LabelOrRegion;
use crate::error::EvalError;
use crate::metrics::Metrics;
use crate::pyjson::{as_f64_or_nan, dumps, parse_lenient, PyValue};
use nnunet_io::table::{Column, Table};
use std::path::Path;

/// Metrics of one case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    pub prediction_file: String,
    pub reference_file: String,
    /// One entry per class of [`Summary::classes`], same order.
    pub metrics: Vec<Metrics>,
}

/// Mean metrics (floats: nnU-Net writes `np.nanmean` results, e.g. `"TP": 120.0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanMetrics {
    pub dice: f64,
    pub iou: f64,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
    pub tn: f64,
    pub n_pred: f64,
    pub n_ref: f64,
}

/// The metric names as written in `summary.json`.
pub const METRIC_NAMES: [&str; 8] = ["Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref"];

impl MeanMetrics {
    fn get(&self, name: &str) -> f64 {
        match name {
            "Dice" => self.dice,
            "IoU" => self.iou,
            "FP" => self.fp,
            "TP" => self.tp,
            "FN" => self.fn_,
            "TN" => self.tn,
            "n_pred" => self.n_pred,
            _ => self.n_ref,
        }
    }
    fn set(&mut self, name: &str, v: f64) {
        match name {
            "Dice" => self.dice = v,
            "IoU" => self.iou = v,
            "FP" => self.fp = v,
            "TP" => self.tp = v,
            "FN" => self.fn_ = v,
            "TN" => self.tn = v,
            "n_pred" => self.n_pred = v,
            _ => self.n_ref = v,
        }
    }
    fn nan() -> MeanMetrics {
        MeanMetrics {
            dice: f64::NAN,
            iou: f64::NAN,
            tp: f64::NAN,
            fp: f64::NAN,
            fn_: f64::NAN,
            tn: f64::NAN,
            n_pred: f64::NAN,
            n_ref: f64::NAN,
        }
    }
    fn to_py(self) -> PyValue {
        PyValue::Dict(METRIC_NAMES.iter().map(|n| (n.to_string(), PyValue::Float(self.get(n)))).collect())
    }
}

fn metrics_value(m: &Metrics, name: &str) -> f64 {
    match name {
        "Dice" => m.dice,
        "IoU" => m.iou,
        "FP" => m.fp as f64,
        "TP" => m.tp as f64,
        "FN" => m.fn_ as f64,
        "TN" => m.tn as f64,
        "n_pred" => m.n_pred as f64,
        _ => m.n_ref as f64,
    }
}

fn metrics_to_py(m: &Metrics) -> PyValue {
    PyValue::Dict(vec![
        ("Dice".into(), PyValue::Float(m.dice)),
        ("IoU".into(), PyValue::Float(m.iou)),
        ("FP".into(), PyValue::Int(m.fp as i64)),
        ("TP".into(), PyValue::Int(m.tp as i64)),
        ("FN".into(), PyValue::Int(m.fn_ as i64)),
        ("TN".into(), PyValue::Int(m.tn as i64)),
        ("n_pred".into(), PyValue::Int(m.n_pred as i64)),
        ("n_ref".into(), PyValue::Int(m.n_ref as i64)),
    ])
}

/// `np.sum` of float64: numpy's pairwise summation (8-way unrolled blocks of at most 128,
/// halves otherwise), so means agree with nnU-Net's to the last bit.
pub fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut r = 0.0;
        for &x in a {
            r += x;
        }
        r
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// `np.nanmean`: NaNs replaced by 0, summed with [`numpy_sum`], divided by the number of
/// non-NaN values; NaN when there are none.
pub fn nanmean(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut n = 0usize;
    let v: Vec<f64> = values
        .into_iter()
        .map(|x| {
            if x.is_nan() {
                0.0
            } else {
                n += 1;
                x
            }
        })
        .collect();
    if n == 0 {
        f64::NAN
    } else {
        numpy_sum(&v) / n as f64
    }
}

/// `np.mean`: NaN propagates; NaN for an empty list.
pub fn plain_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        numpy_sum(values) / values.len() as f64
    }
}

/// The evaluation of a set of predictions (nnU-Net's `summary.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub classes: Vec<LabelOrRegion>,
    pub metric_per_case: Vec<CaseResult>,
    /// Case-averaged metrics per class, same order as `classes`.
    pub mean: Vec<MeanMetrics>,
    pub foreground_mean: MeanMetrics,
}

impl Summary {
    /// Averages per-case metrics (§11): `nanmean` over cases per class and metric, then the
    /// plain mean over classes other than label 0.
    pub fn from_cases(classes: Vec<LabelOrRegion>, metric_per_case: Vec<CaseResult>) -> Summary {
        let mut mean = vec![MeanMetrics::nan(); classes.len()];
        for (k, m) in mean.iter_mut().enumerate() {
            for name in METRIC_NAMES {
                m.set(
                    name,
                    nanmean(metric_per_case.iter().filter_map(|c| c.metrics.get(k)).map(|x| metrics_value(x, name))),
                );
            }
        }
        let mut foreground_mean = MeanMetrics::nan();
        for name in METRIC_NAMES {
            let vals: Vec<f64> =
                classes.iter().zip(&mean).filter(|(c, _)| !c.is_background()).map(|(_, m)| m.get(name)).collect();
            foreground_mean.set(name, plain_mean(&vals));
        }
        Summary { classes, metric_per_case, mean, foreground_mean }
    }

    /// Several summaries over disjoint cases (e.g. the validation folds) re-scored together,
    /// as `accumulate_cv_results` does (§10.1): per-case metrics concatenated in order, means
    /// recomputed. All parts must evaluate the same classes.
    pub fn merge(parts: &[Summary]) -> Result<Summary, EvalError> {
        let first = parts.first().ok_or_else(|| EvalError::Invalid("no summaries to merge".into()))?;
        let mut cases = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if p.classes != first.classes {
                return Err(EvalError::Invalid(format!(
                    "summary {i} evaluates {:?}, summary 0 evaluates {:?}",
                    p.classes.iter().map(|c| c.key()).collect::<Vec<_>>(),
                    first.classes.iter().map(|c| c.key()).collect::<Vec<_>>()
                )));
            }
            cases.extend(p.metric_per_case.iter().cloned());
        }
        Ok(Summary::from_cases(first.classes.clone(), cases))
    }

    /// Mean metrics of one class.
    pub fn mean_of(&self, class: &LabelOrRegion) -> Option<&MeanMetrics> {
        self.classes.iter().position(|c| c == class).map(|i| &self.mean[i])
    }

    /// The score nnU-Net ranks models by: `foreground_mean["Dice"]` (§10.1).
    pub fn foreground_dice(&self) -> f64 {
        self.foreground_mean.dice
    }

    /// The document nnU-Net writes (`save_summary_json`).
    pub fn to_pyvalue(&self) -> PyValue {
        let per_case = self
            .metric_per_case
            .iter()
            .map(|c| {
                let metrics = self.classes.iter().zip(&c.metrics).map(|(k, m)| (k.key(), metrics_to_py(m))).collect();
                PyValue::Dict(vec![
                    ("metrics".into(), PyValue::Dict(metrics)),
                    ("prediction_file".into(), PyValue::Str(c.prediction_file.clone())),
                    ("reference_file".into(), PyValue::Str(c.reference_file.clone())),
                ])
            })
            .collect();
        let mean = self.classes.iter().zip(&self.mean).map(|(k, m)| (k.key(), m.to_py())).collect();
        PyValue::Dict(vec![
            ("foreground_mean".into(), self.foreground_mean.to_py()),
            ("mean".into(), PyValue::Dict(mean)),
            ("metric_per_case".into(), PyValue::List(per_case)),
        ])
    }

    /// `summary.json` text, byte-compatible with nnU-Net's `save_json(sort_keys=True, indent=4)`.
    pub fn to_json_string(&self) -> String {
        dumps(&self.to_pyvalue(), Some(4), true)
    }

    /// Writes `summary.json` (through a temporary file, then renamed).
    pub fn write_json(&self, path: &Path) -> Result<(), EvalError> {
        crate::folder::write_atomic(path, self.to_json_string().as_bytes())
    }

    /// Reads a `summary.json` written by nnU-Net or by [`Summary::write_json`]. Classes come
    /// in the file's (sorted key) order.
    pub fn from_json_str(text: &str) -> Result<Summary, String> {
        let v = parse_lenient(text).map_err(|e| e.to_string())?;
        let mean_obj = v.get("mean").and_then(|m| m.as_object()).ok_or("no \"mean\" object")?;
        let mut classes = Vec::new();
        let mut mean = Vec::new();
        let read_mean = |o: &serde_json::Value, what: &str| -> Result<MeanMetrics, String> {
            let mut m = MeanMetrics::nan();
            for n in METRIC_NAMES {
                let x = as_f64_or_nan(o.get(n)).ok_or_else(|| format!("{what}: metric \"{n}\" missing"))?;
                m.set(n, x);
            }
            Ok(m)
        };
        for (k, o) in mean_obj {
            classes.push(LabelOrRegion::parse_key(k).ok_or_else(|| format!("bad class key \"{k}\""))?);
            mean.push(read_mean(o, &format!("mean[{k}]"))?);
        }
        let foreground_mean = read_mean(v.get("foreground_mean").ok_or("no \"foreground_mean\"")?, "foreground_mean")?;
        let mut metric_per_case = Vec::new();
        for (i, c) in
            v.get("metric_per_case").and_then(|m| m.as_array()).ok_or("no \"metric_per_case\" list")?.iter().enumerate()
        {
            let s = |key: &str| c.get(key).and_then(|x| x.as_str()).unwrap_or_default().to_string();
            let mo = c.get("metrics").and_then(|m| m.as_object()).ok_or_else(|| format!("case {i}: no metrics"))?;
            let mut metrics = Vec::with_capacity(classes.len());
            for k in &classes {
                let o = mo.get(&k.key()).ok_or_else(|| format!("case {i}: class {k} missing"))?;
                let f =
                    |n: &str| as_f64_or_nan(o.get(n)).ok_or_else(|| format!("case {i}, class {k}: \"{n}\" missing"));
                let u = |n: &str| f(n).map(|x| if x.is_finite() && x >= 0.0 { x as u64 } else { 0 });
                metrics.push(Metrics {
                    dice: f("Dice")?,
                    iou: f("IoU")?,
                    tp: u("TP")?,
                    fp: u("FP")?,
                    fn_: u("FN")?,
                    tn: u("TN")?,
                    n_pred: u("n_pred")?,
                    n_ref: u("n_ref")?,
                });
            }
            metric_per_case.push(CaseResult {
                prediction_file: s("prediction_file"),
                reference_file: s("reference_file"),
                metrics,
            });
        }
        Ok(Summary { classes, metric_per_case, mean, foreground_mean })
    }

    /// Reads a `summary.json` file.
    pub fn read_json(path: &Path) -> Result<Summary, EvalError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
        Summary::from_json_str(&text).map_err(|msg| EvalError::SummaryFormat { path: path.to_path_buf(), msg })
    }

    /// One row per (case, class): `case` (prediction file name), `prediction_file`,
    /// `reference_file`, `class` (the summary key), `Dice`, `IoU` (f64, NaN for empty-empty),
    /// `TP`, `FP`, `FN`, `TN`, `n_pred`, `n_ref` (i64). For Parquet.
    pub fn per_case_table(&self) -> Table {
        let n = self.metric_per_case.len() * self.classes.len();
        let mut case = Vec::with_capacity(n);
        let mut pf = Vec::with_capacity(n);
        let mut rf = Vec::with_capacity(n);
        let mut class = Vec::with_capacity(n);
        let (mut dice, mut iou) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut ints: [Vec<i64>; 6] = Default::default();
        for c in &self.metric_per_case {
            let name = Path::new(&c.prediction_file)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| c.prediction_file.clone());
            for (k, m) in self.classes.iter().zip(&c.metrics) {
                case.push(name.clone());
                pf.push(c.prediction_file.clone());
                rf.push(c.reference_file.clone());
                class.push(k.key());
                dice.push(m.dice);
                iou.push(m.iou);
                for (col, v) in ints.iter_mut().zip([m.tp, m.fp, m.fn_, m.tn, m.n_pred, m.n_ref]) {
                    col.push(v as i64);
                }
            }
        }
        let [tp, fp, fn_, tn, n_pred, n_ref] = ints;
        Table::new()
            .with("case", Column::Str(case))
            .with("prediction_file", Column::Str(pf))
            .with("reference_file", Column::Str(rf))
            .with("class", Column::Str(class))
            .with("Dice", Column::F64(dice))
            .with("IoU", Column::F64(iou))
            .with("TP", Column::I64(tp))
            .with("FP", Column::I64(fp))
            .with("FN", Column::I64(fn_))
            .with("TN", Column::I64(tn))
            .with("n_pred", Column::I64(n_pred))
            .with("n_ref", Column::I64(n_ref))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::labels;

    fn case(name: &str, m: Vec<Metrics>) -> CaseResult {
        CaseResult { prediction_file: format!("/p/{name}"), reference_file: format!("/r/{name}"), metrics: m }
    }

    #[test]
    fn nanmean_per_class_and_mean_over_foreground() {
        let a = Metrics::from_counts(1, 1, 0, 10); // dice 2/3
        let b = Metrics::from_counts(0, 0, 0, 12); // NaN
        let c = Metrics::from_counts(3, 0, 1, 8); // dice 6/7
        let s = Summary::from_cases(labels(&[0, 1, 2]), vec![case("x", vec![a, a, b]), case("y", vec![a, c, b])]);
        assert_eq!(s.mean[1].dice, (2.0 / 3.0 + 6.0 / 7.0) / 2.0);
        assert_eq!(s.mean[1].tp, 2.0);
        // class 2 is NaN in every case -> mean NaN -> foreground_mean Dice NaN, TN not NaN.
        assert!(s.mean[2].dice.is_nan());
        assert!(s.foreground_mean.dice.is_nan());
        assert_eq!(s.foreground_mean.tn, (s.mean[1].tn + s.mean[2].tn) / 2.0);
        // label 0 is skipped in foreground_mean
        let s2 = Summary::from_cases(labels(&[0, 1]), vec![case("x", vec![b, a])]);
        assert_eq!(s2.foreground_mean.dice, 2.0 / 3.0);
    }

    #[test]
    fn numpy_pairwise_sum_bits() {
        // numpy: np.sum(np.array([1.0 / (k + 3) for k in range(n)])) for n = 300 and 37
        // (a naive left-to-right sum gives ...856 and ...746).
        let v = |n: usize| (0..n).map(|k| 1.0 / (k as f64 + 3.0)).collect::<Vec<f64>>();
        assert_eq!(numpy_sum(&v(300)), 4.789297397713862);
        assert_eq!(numpy_sum(&v(37)), 2.7535430389363755);
        assert_eq!(numpy_sum(&v(5)), v(5).iter().sum::<f64>());
    }

    #[test]
    fn json_roundtrip_and_shape() {
        let a = Metrics::from_counts(1, 1, 0, 10);
        let b = Metrics::from_counts(0, 0, 0, 12);
        let classes = vec![LabelOrRegion::Label(1), LabelOrRegion::Region(vec![1, 2])];
        let s = Summary::from_cases(classes, vec![case("x.nii.gz", vec![a, b])]);
        let text = s.to_json_string();
        assert!(text.starts_with("{\n    \"foreground_mean\": {\n        \"Dice\": NaN,"), "{text}");
        assert!(text.contains("\"(1, 2)\": {"));
        assert!(text.contains("\"TP\": 1,"));
        assert!(text.contains("\"TP\": 1.0,"));
        let back = Summary::from_json_str(&text).unwrap();
        assert_eq!(back.to_json_string(), text);
        let t = s.per_case_table();
        assert_eq!(t.nrows(), 2);
        let m = Summary::merge(&[s.clone(), s.clone()]).unwrap();
        assert_eq!(m.metric_per_case.len(), 2);
        assert_eq!(m.mean[0].dice, s.mean[0].dice);
        let other = Summary::from_cases(labels(&[1]), vec![]);
        assert!(Summary::merge(&[s.clone(), other]).is_err());
        assert_eq!(t.str("case").unwrap()[0], "x.nii.gz");
    }
}

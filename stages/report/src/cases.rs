//! Per-case Dice tables: rows of `metrics.parquet` (one row per case and class, written by
//! `Summary::per_case_table`) pivoted to one row per case, and their means computed the way
//! nnU-Net's `summary.json` does (reference §11: `nanmean` over cases per class, then the plain
//! mean over the classes other than `0`).

use nnunet_eval::summary::{nanmean, plain_mean, Summary};
use nnunet_io::table::{Column, Table};

/// A numeric column as f64 (i64 columns converted).
pub fn f64_column(t: &Table, name: &str) -> Option<Vec<f64>> {
    match t.column(name)? {
        Column::F64(v) => Some(v.clone()),
        Column::I64(v) => Some(v.iter().map(|&x| x as f64).collect()),
        _ => None,
    }
}

/// One case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseRow {
    pub case: String,
    /// Where it comes from (the fold for cross-validation), may be empty.
    pub group: String,
    /// Dice per class of [`CaseDice::classes`] (NaN where the file has none).
    pub dice: Vec<f64>,
}

/// Per-case Dice of a set of predictions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaseDice {
    /// Class keys as in `summary.json` (`"1"`, `"(1, 2)"`), in file order.
    pub classes: Vec<String>,
    pub rows: Vec<CaseRow>,
}

impl CaseDice {
    /// From a `metrics.parquet` table (`case`, `class`, `Dice`).
    pub fn from_metrics(t: &Table, group: &str) -> Result<CaseDice, String> {
        let case = t.str("case").map_err(|e| e.to_string())?;
        let class = t.str("class").map_err(|e| e.to_string())?;
        let dice = t.f64("Dice").map_err(|e| e.to_string())?;
        let mut out = CaseDice::default();
        for ((c, k), d) in case.iter().zip(class).zip(dice) {
            let ki = out.class_index(k);
            let id = crate::run::case_id(c);
            let ri = match out.rows.iter().position(|r| r.case == id && r.group == group) {
                Some(i) => i,
                None => {
                    out.rows.push(CaseRow { case: id, group: group.to_string(), dice: Vec::new() });
                    out.rows.len() - 1
                }
            };
            let row = &mut out.rows[ri];
            if row.dice.len() <= ki {
                row.dice.resize(ki + 1, f64::NAN);
            }
            row.dice[ki] = *d;
        }
        out.pad();
        Ok(out)
    }

    /// From a `summary.json`'s `metric_per_case`.
    pub fn from_summary(s: &Summary, group: &str) -> CaseDice {
        CaseDice {
            classes: s.classes.iter().map(|c| c.key()).collect(),
            rows: s
                .metric_per_case
                .iter()
                .map(|c| CaseRow {
                    case: crate::run::case_id(&c.prediction_file),
                    group: group.to_string(),
                    dice: c.metrics.iter().map(|m| m.dice).collect(),
                })
                .collect(),
        }
    }

    fn class_index(&mut self, k: &str) -> usize {
        match self.classes.iter().position(|c| c == k) {
            Some(i) => i,
            None => {
                self.classes.push(k.to_string());
                self.classes.len() - 1
            }
        }
    }

    fn pad(&mut self) {
        let n = self.classes.len();
        for r in &mut self.rows {
            r.dice.resize(n, f64::NAN);
        }
    }

    /// Appends the rows of `other` (classes are matched by key).
    pub fn append(&mut self, other: CaseDice) {
        let idx: Vec<usize> = other.classes.iter().map(|k| self.class_index(k)).collect();
        self.pad();
        for r in other.rows {
            let mut dice = vec![f64::NAN; self.classes.len()];
            for (i, d) in idx.iter().zip(r.dice) {
                dice[*i] = d;
            }
            self.rows.push(CaseRow { case: r.case, group: r.group, dice });
        }
    }

    /// `nanmean` over cases, per class.
    pub fn class_means(&self) -> Vec<f64> {
        (0..self.classes.len())
            .map(|k| nanmean(self.rows.iter().map(|r| r.dice.get(k).copied().unwrap_or(f64::NAN))))
            .collect()
    }

    /// The plain mean of the class means, class `0` excluded (`foreground_mean["Dice"]`).
    pub fn foreground_mean(&self) -> f64 {
        let m = self.class_means();
        let fg: Vec<f64> = self.classes.iter().zip(&m).filter(|(k, _)| k.as_str() != "0").map(|(_, v)| *v).collect();
        plain_mean(&fg)
    }

    /// Foreground classes of one case, `nanmean`ed (used to order cases, not an nnU-Net number).
    pub fn case_score(&self, row: &CaseRow) -> f64 {
        nanmean(self.classes.iter().zip(&row.dice).filter(|(k, _)| k.as_str() != "0").map(|(_, d)| *d))
    }

    /// The rows of one group.
    pub fn group(&self, g: &str) -> CaseDice {
        CaseDice { classes: self.classes.clone(), rows: self.rows.iter().filter(|r| r.group == g).cloned().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pivot_and_means() {
        let t = Table::new()
            .with("case", Column::Str(vec!["a.nii.gz".into(), "a.nii.gz".into(), "b.nii.gz".into(), "b.nii.gz".into()]))
            .with("class", Column::Str(vec!["1".into(), "2".into(), "1".into(), "2".into()]))
            .with("Dice", Column::F64(vec![0.5, f64::NAN, 0.7, 0.2]));
        let c = CaseDice::from_metrics(&t, "0").unwrap();
        assert_eq!(c.classes, ["1", "2"]);
        assert_eq!(c.rows.len(), 2);
        assert_eq!(c.rows[0].case, "a");
        assert_eq!(c.class_means(), vec![(0.5 + 0.7) / 2.0, 0.2]);
        assert_eq!(c.foreground_mean(), ((0.5 + 0.7) / 2.0 + 0.2) / 2.0);
        let mut all = c.clone();
        all.append(CaseDice {
            classes: vec!["2".into()],
            rows: vec![CaseRow { case: "c".into(), group: "1".into(), dice: vec![1.0] }],
        });
        assert!(all.rows[2].dice[0].is_nan());
        assert_eq!(all.group("1").rows.len(), 1);
    }
}

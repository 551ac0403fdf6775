//! One builder per report section. Each reads what it needs from the run folder, turns it into
//! [`crate::doc`] blocks, records its key numbers in the [`ReportSummary`], and notes what is
//! missing or unreadable instead of failing.

pub mod cv;
pub mod examples;
pub mod fingerprint;
pub mod overview;
pub mod plans;
pub mod postprocess;
pub mod selection;
pub mod test_set;
pub mod timings;
pub mod training;

use crate::cases::CaseDice;
use crate::doc::{Cell, Figure, FigureContent, Section, Table};
use crate::run::RunFolder;
use crate::summary::ReportSummary;
use crate::svg::{colour, BarChart, BarGroup};
use std::collections::BTreeMap;

/// Tables longer than this are folded in the HTML page.
pub const FOLD_ROWS: usize = 12;

/// What the section builders share.
pub struct Ctx<'a> {
    pub run: &'a RunFolder,
    pub summary: ReportSummary,
    /// Label/region key -> name (from `plan/dataset.json`).
    pub label_names: BTreeMap<String, String>,
}

impl<'a> Ctx<'a> {
    pub fn new(run: &'a RunFolder) -> Ctx<'a> {
        let mut summary = ReportSummary {
            run: run.info.run.clone(),
            run_dir: run.dir.clone(),
            dataset: run.info.dataset.clone(),
            run_seconds: run.info.seconds,
            ..Default::default()
        };
        let label_names = label_names(run, &mut summary);
        Ctx { run, summary, label_names }
    }

    /// A file that exists but cannot be read: shown in the section and listed in the summary.
    pub fn problem(&mut self, sec: &mut Section, msg: String) {
        sec.problem(msg.clone());
        self.summary.problems.push(msg);
    }

    /// A stage the run does not have.
    pub fn missing(&mut self, sec: &mut Section, stage: &str, msg: String) {
        sec.missing(msg);
        if !self.summary.missing.iter().any(|m| m == stage) {
            self.summary.missing.push(stage.to_string());
        }
    }

    /// `Dice 1 (liver)` for a class key.
    pub fn class_header(&self, key: &str) -> String {
        match self.label_names.get(key) {
            Some(n) => format!("Dice {key} ({n})"),
            None => format!("Dice {key}"),
        }
    }
}

/// Label names from `plan/dataset.json` (`labels`: name -> int or list of ints).
fn label_names(run: &RunFolder, summary: &mut ReportSummary) -> BTreeMap<String, String> {
    let p = run.stage_dir("plan").join("dataset.json");
    let mut out = BTreeMap::new();
    match run.json(&p) {
        Ok(Some(v)) => {
            if let Some(m) = v.get("labels").and_then(|l| l.as_object()) {
                for (name, val) in m {
                    let key = match val {
                        serde_json::Value::Number(n) => n.as_i64().map(|i| i.to_string()),
                        serde_json::Value::Array(a) if a.len() == 1 => a[0].as_i64().map(|i| format!("({i},)")),
                        serde_json::Value::Array(a) => {
                            let v: Option<Vec<String>> = a.iter().map(|x| x.as_i64().map(|i| i.to_string())).collect();
                            v.map(|v| format!("({})", v.join(", ")))
                        }
                        _ => None,
                    };
                    if let Some(k) = key {
                        out.insert(k, name.clone());
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => summary.problems.push(e),
    }
    out
}

/// One row per case: case, optional group column, Dice per class.
pub fn case_table(ctx: &Ctx, id: &str, caption: &str, cd: &CaseDice, group_header: Option<&str>) -> Table {
    let mut headers = vec!["case".to_string()];
    if let Some(g) = group_header {
        headers.push(g.to_string());
    }
    headers.extend(cd.classes.iter().map(|k| ctx.class_header(k)));
    let mut t = Table::new(id, caption, headers);
    for r in &cd.rows {
        let mut row = vec![Cell::text(&r.case)];
        if group_header.is_some() {
            row.push(Cell::text(&r.group));
        }
        row.extend(r.dice.iter().map(|d| Cell::num(*d, crate::fmt::score)));
        t.rows.push(row);
    }
    t.folded = t.rows.len() > FOLD_ROWS;
    t
}

/// Grouped bars: one category per case, one bar per class.
pub fn case_chart(ctx: &Ctx, file: &str, title: &str, caption: &str, cd: &CaseDice) -> Figure {
    let chart = BarChart {
        title: title.to_string(),
        y_label: "Dice".into(),
        categories: cd
            .rows
            .iter()
            .map(|r| if r.group.is_empty() { r.case.clone() } else { format!("{} (f{})", r.case, r.group) })
            .collect(),
        groups: cd
            .classes
            .iter()
            .enumerate()
            .map(|(k, key)| BarGroup {
                name: ctx.class_header(key).trim_start_matches("Dice ").to_string(),
                colour: colour(k),
                values: cd.rows.iter().map(|r| r.dice.get(k).copied().unwrap_or(f64::NAN)).collect(),
            })
            .collect(),
        y_range: Some((0.0, 1.0)),
        value_labels: None,
    };
    let w = chart.width_for(560);
    Figure { file: file.to_string(), caption: caption.to_string(), content: FigureContent::Svg(chart.to_svg(w, 300)) }
}

//! Test set: `predict/CASE.nii.gz` and the scores of `evaluate/` (`summary.json`,
//! `metrics.parquet`).

use super::{case_chart, case_table, Ctx};
use crate::cases::CaseDice;
use crate::doc::{Block, Cell, Section, Table};
use crate::fmt;
use crate::summary::TestBrief;

/// The section (~80 lines: summary, per-class table, per-case table and chart, in page order).
pub fn build(ctx: &mut Ctx) -> Section {
    let mut sec = Section::new("test-set", "Test set");
    let pdir = ctx.run.stage_dir("predict");
    if pdir.is_dir() {
        let n = crate::run::segmentations(&pdir).len();
        sec.push(Block::Facts(vec![("Predictions".into(), format!("{} ({n} files)", pdir.display()))]));
        ctx.summary.predictions = Some(pdir.clone());
        ctx.summary.num_predictions = n;
    } else {
        ctx.missing(&mut sec, "predict", "the predict stage (no test-set predictions)".into());
    }
    let edir = ctx.run.stage_dir("evaluate");
    if !edir.is_dir() {
        ctx.missing(&mut sec, "evaluate", "the evaluate stage (no test-set scores)".into());
        return sec;
    }
    let sp = edir.join("summary.json");
    let summary = match ctx.run.summary(&sp) {
        Ok(s) => s,
        Err(e) => {
            ctx.problem(&mut sec, e);
            None
        }
    };
    if let Some(s) = &summary {
        let mut t = Table::new(
            "test-summary",
            "Test-set mean metrics per class (summary.json)",
            ["class", "Dice", "IoU", "TP", "FP", "FN", "n_ref", "n_pred"].iter().map(|s| s.to_string()).collect(),
        );
        let row = |name: String, m: &nnunet_eval::summary::MeanMetrics| {
            vec![
                Cell::text(name),
                Cell::num(m.dice, fmt::score),
                Cell::num(m.iou, fmt::score),
                Cell::num(m.tp, fmt::trimmed),
                Cell::num(m.fp, fmt::trimmed),
                Cell::num(m.fn_, fmt::trimmed),
                Cell::num(m.n_ref, fmt::trimmed),
                Cell::num(m.n_pred, fmt::trimmed),
            ]
        };
        for (c, m) in s.classes.iter().zip(&s.mean) {
            t.rows.push(row(ctx.class_header(&c.key()).trim_start_matches("Dice ").to_string(), m));
        }
        t.rows.push(row("foreground mean".into(), &s.foreground_mean));
        sec.push(Block::Table(t));
        ctx.summary.test = Some(TestBrief {
            cases: s.metric_per_case.len(),
            foreground_dice: s.foreground_dice(),
            per_class: s.classes.iter().zip(&s.mean).map(|(c, m)| (c.key(), m.dice)).collect(),
        });
    } else if !sp.exists() {
        sec.missing("evaluate/summary.json");
    }
    let mp = edir.join("metrics.parquet");
    let cases = match ctx.run.table(&mp) {
        Ok(Some(t)) => match CaseDice::from_metrics(&t, "") {
            Ok(c) => Some(c),
            Err(e) => {
                ctx.problem(&mut sec, format!("{}: {e}", ctx.run.rel(&mp)));
                None
            }
        },
        Ok(None) => summary.as_ref().map(|s| CaseDice::from_summary(s, "")),
        Err(e) => {
            ctx.problem(&mut sec, e);
            None
        }
    };
    if let Some(cd) = cases {
        sec.push(Block::Table(case_table(ctx, "test-cases", "Test-set Dice per case", &cd, None)));
        sec.push(Block::Figures(vec![case_chart(
            ctx,
            "test_cases.svg",
            "Test set: Dice per case",
            "Dice of every test case and class",
            &cd,
        )]));
    }
    sec
}

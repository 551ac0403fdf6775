//! Post-processing decision (`postprocess/postprocessing.json`, nnU-Net §10.2) and the
//! final cross-validation predictions of the chosen model.

use super::{case_table, Ctx};
use crate::cases::CaseDice;
use crate::doc::{Block, Cell, Section, Table};
use crate::fmt;
use crate::summary::PostprocessingBrief;
use nnunet_eval::postprocess::{PostprocessingDecision, PostprocessingStep};

/// `keep the largest component of 1, 2` (what the step does, in words).
pub fn describe(step: &PostprocessingStep, whole_foreground: bool) -> String {
    let what = step.labels_or_regions.iter().map(|c| c.key()).collect::<Vec<_>>().join(", ");
    if whole_foreground {
        format!("keep the largest component of the whole foreground ({what})")
    } else {
        format!("keep the largest component of {what}")
    }
}

/// The section (~110 lines, kept whole: decision, trials table and chart read the one
/// `postprocessing.json` in the order the page shows them).
pub fn build(ctx: &mut Ctx) -> Section {
    let mut sec = Section::new("postprocessing", "Post-processing");
    let dir = ctx.run.stage_dir("postprocess");
    if !dir.exists() {
        ctx.missing(&mut sec, "postprocess", "the postprocess stage (no postprocess/ folder)".into());
        return sec;
    }
    let p = dir.join("postprocessing.json");
    let decision = if p.is_file() {
        match PostprocessingDecision::read(&p) {
            Ok(d) => Some(d),
            Err(e) => {
                let msg = e.to_string();
                let prefix = format!("{}: ", p.display());
                ctx.problem(&mut sec, format!("{}: {}", ctx.run.rel(&p), msg.strip_prefix(&prefix).unwrap_or(&msg)));
                None
            }
        }
    } else {
        sec.missing("postprocess/postprocessing.json");
        None
    };
    if let Some(d) = &decision {
        let whole = |s: &PostprocessingStep| {
            d.trials.iter().any(|t| t.accepted && t.kind == "whole_foreground" && &t.step == s)
        };
        let steps: Vec<String> = d.steps.iter().map(|s| describe(s, whole(s))).collect();
        let decided = if steps.is_empty() {
            "none: no step improved the cross-validation Dice".to_string()
        } else {
            steps.join("; then ")
        };
        sec.push(Block::Facts(vec![
            ("Decision".into(), decided),
            ("Foreground Dice before".into(), fmt::score(d.dice_before.foreground_mean)),
            ("Foreground Dice after".into(), fmt::score(d.dice_after.foreground_mean)),
            ("Steps tried".into(), d.trials.len().to_string()),
        ]));
        let mut t = Table::new(
            "postprocessing-trials",
            "Every step tried (accepted iff the Dice strictly improves)",
            ["#", "kind", "labels or regions", "accepted", "foreground Dice before", "foreground Dice after"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        for (i, tr) in d.trials.iter().enumerate() {
            t.rows.push(vec![
                Cell::int(i as i64 + 1),
                Cell::text(tr.kind.replace('_', " ")),
                Cell::text(tr.step.labels_or_regions.iter().map(|c| c.key()).collect::<Vec<_>>().join(", ")),
                Cell::text(if tr.accepted { "yes" } else { "no" }),
                Cell::num(tr.before.foreground_mean, fmt::score),
                Cell::num(tr.after.foreground_mean, fmt::score),
            ]);
        }
        sec.push(Block::Table(t));
        let mut headers = vec!["class".to_string(), "Dice before".to_string(), "Dice after".to_string()];
        headers.push("change".into());
        let mut ct = Table::new("postprocessing-classes", "Mean Dice per class before and after", headers);
        for (k, before) in &d.dice_before.per_class {
            let after = d.dice_after.per_class.get(k).copied().unwrap_or(f64::NAN);
            ct.rows.push(vec![
                Cell::text(ctx.class_header(k).trim_start_matches("Dice ")),
                Cell::num(*before, fmt::score),
                Cell::num(after, fmt::score),
                Cell::num(after - before, fmt::score),
            ]);
        }
        sec.push(Block::Table(ct));
        ctx.summary.postprocessing = Some(PostprocessingBrief {
            steps,
            dice_before: d.dice_before.foreground_mean,
            dice_after: d.dice_after.foreground_mean,
            trials: d.trials.len(),
        });
    }
    let mp = dir.join("metrics_after.parquet");
    let after = match ctx.run.table(&mp) {
        Ok(Some(t)) => CaseDice::from_metrics(&t, "").map_err(|e| format!("{}: {e}", ctx.run.rel(&mp))).map(Some),
        Ok(None) => match ctx.run.summary(&dir.join("summary_after.json")) {
            Ok(s) => Ok(s.map(|s| CaseDice::from_summary(&s, ""))),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match after {
        Ok(Some(cd)) => {
            let t = case_table(
                ctx,
                "postprocessing-cases",
                "Cross-validation Dice per case after post-processing",
                &cd,
                None,
            );
            sec.push(Block::Table(t));
        }
        Ok(None) => {}
        Err(e) => ctx.problem(&mut sec, e),
    }
    let cv = dir.join("cv_predictions");
    if cv.is_dir() {
        let n = crate::run::segmentations(&cv).len();
        sec.push(Block::Facts(vec![(
            "Final cross-validation predictions".into(),
            format!("{} ({n} files)", cv.display()),
        )]));
        ctx.summary.cv_predictions = Some(cv);
    }
    sec
}

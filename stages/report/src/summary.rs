//! What the report found, for the CLI: [`ReportSummary`] and its short terminal rendering
//! [`text_summary`].

use serde::Serialize;
use std::path::PathBuf;

/// A configuration as planned.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PlannedConfiguration {
    pub name: String,
    pub patch_size: Vec<usize>,
    pub batch_size: usize,
    pub spacing: Vec<f64>,
}

/// The plans of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PlansBrief {
    pub dataset_name: String,
    pub plans_name: String,
    pub configurations: Vec<PlannedConfiguration>,
}

/// A cross-validation score of a configuration or ensemble.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CvScore {
    /// Configuration or ensemble name.
    pub name: String,
    pub members: Vec<String>,
    /// `foreground_mean` Dice (NaN when undefined).
    pub foreground_dice: f64,
    /// Mean Dice per class key.
    pub per_class: Vec<(String, f64)>,
    /// Cases scored (0 when unknown).
    pub cases: usize,
}

/// The model chosen by the `ensemble-select` stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChosenModel {
    pub name: String,
    pub members: Vec<String>,
    pub folds: Vec<String>,
    pub foreground_dice: f64,
}

/// The post-processing decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PostprocessingBrief {
    /// Accepted steps, e.g. `keep the largest component of 1, 2`.
    pub steps: Vec<String>,
    pub dice_before: f64,
    pub dice_after: f64,
    pub trials: usize,
}

/// Test-set scores (`evaluate` stage).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TestBrief {
    pub cases: usize,
    pub foreground_dice: f64,
    pub per_class: Vec<(String, f64)>,
}

/// What [`crate::write_report`] found and printed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReportSummary {
    pub run: String,
    pub run_dir: PathBuf,
    pub dataset: Option<String>,
    /// `report.html`, `report.md` and the `images/` folder written.
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub images: PathBuf,
    /// Figures written to `images/`.
    pub figures: usize,
    pub plans: Option<PlansBrief>,
    /// Cross-validation Dice merged over folds, per configuration (from the training folds'
    /// validation metrics).
    pub cv_configurations: Vec<CvScore>,
    /// The `ensemble-select` ranking (configurations and ensembles), best first.
    pub ranking: Vec<CvScore>,
    pub chosen: Option<ChosenModel>,
    pub postprocessing: Option<PostprocessingBrief>,
    pub test: Option<TestBrief>,
    /// Final cross-validation predictions (after post-processing) and test-set predictions.
    pub cv_predictions: Option<PathBuf>,
    pub predictions: Option<PathBuf>,
    pub num_predictions: usize,
    /// Build seconds per stage (from `run.json`).
    pub stage_seconds: Vec<(String, f64)>,
    /// Wall time of the run (`run.json`).
    pub run_seconds: f64,
    /// Stages the run does not have (e.g. `predict` after `--until postprocess`).
    pub missing: Vec<String>,
    /// Files that exist but could not be read.
    pub problems: Vec<String>,
}

/// A class whose mean Dice is below this is reported as not learned.
pub const NOT_LEARNED_DICE: f64 = 0.1;

/// The classes of `per_class` with a finite mean Dice below [`NOT_LEARNED_DICE`].
pub fn not_learned(per_class: &[(String, f64)]) -> Vec<&str> {
    per_class.iter().filter(|(_, v)| v.is_finite() && *v < NOT_LEARNED_DICE).map(|(k, _)| k.as_str()).collect()
}

fn classes_line(per_class: &[(String, f64)]) -> String {
    per_class.iter().map(|(k, v)| format!("{k}: {}", crate::fmt::score(*v))).collect::<Vec<_>>().join(", ")
}

/// A short terminal report: plans, CV Dice per configuration and ensemble, the chosen model,
/// the post-processing decision, test scores, where predictions and the report are.
///
/// Long (~95 lines): one paragraph per part of the summary, in the order printed.
pub fn text_summary(s: &ReportSummary) -> String {
    let mut o = String::new();
    o.push_str(&format!("Run {}", s.run));
    if let Some(d) = &s.dataset {
        o.push_str(&format!(" (dataset {d})"));
    }
    o.push('\n');
    match &s.plans {
        Some(p) => {
            o.push_str(&format!("Plans: {} for {}\n", p.plans_name, p.dataset_name));
            for c in &p.configurations {
                o.push_str(&format!(
                    "  {:<14} patch {}, batch {}, spacing {}\n",
                    c.name,
                    crate::fmt::ivector(&c.patch_size),
                    c.batch_size,
                    crate::fmt::vector(&c.spacing)
                ));
            }
        }
        None => o.push_str("Plans: none\n"),
    }
    let scores = if s.ranking.is_empty() { &s.cv_configurations } else { &s.ranking };
    if !scores.is_empty() {
        let what = if s.ranking.is_empty() { "merged over folds" } else { "ranking" };
        o.push_str(&format!("Cross-validation Dice ({what}):\n"));
        let w = scores.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).min(48);
        for c in scores {
            let mark = if s.chosen.as_ref().is_some_and(|ch| ch.name == c.name) { " *" } else { "" };
            o.push_str(&format!(
                "  {:<w$}  {}  ({}){mark}\n",
                c.name,
                crate::fmt::score(c.foreground_dice),
                classes_line(&c.per_class)
            ));
        }
    }
    if let Some(c) = &s.chosen {
        o.push_str(&format!(
            "Chosen: {} ({}; folds {}), CV Dice {}\n",
            c.name,
            c.members.join(" + "),
            c.folds.join(", "),
            crate::fmt::score(c.foreground_dice)
        ));
    }
    // The model the user gets (the chosen one, else the best CV score): say which labels it
    // has not learned, so a near-0 Dice is never read past.
    let model = s
        .chosen
        .as_ref()
        .and_then(|c| scores.iter().find(|x| x.name == c.name))
        .or_else(|| scores.iter().max_by(|a, b| a.foreground_dice.total_cmp(&b.foreground_dice)));
    if let Some(m) = model {
        let bad = not_learned(&m.per_class);
        if !bad.is_empty() {
            o.push_str(&format!(
                "Not learned: label(s) {} (CV Dice below {NOT_LEARNED_DICE} with {}): train longer or check the labels\n",
                bad.join(", "),
                m.name
            ));
        }
    }
    if let Some(p) = &s.postprocessing {
        if p.steps.is_empty() {
            o.push_str(&format!(
                "Post-processing: none kept ({} tried), CV Dice {}\n",
                p.trials,
                crate::fmt::score(p.dice_before)
            ));
        } else {
            o.push_str(&format!(
                "Post-processing: {}; CV Dice {} -> {}\n",
                p.steps.join("; "),
                crate::fmt::score(p.dice_before),
                crate::fmt::score(p.dice_after)
            ));
        }
    }
    if let Some(t) = &s.test {
        o.push_str(&format!(
            "Test set: Dice {} on {} cases ({})\n",
            crate::fmt::score(t.foreground_dice),
            t.cases,
            classes_line(&t.per_class)
        ));
    }
    if let Some(p) = &s.cv_predictions {
        o.push_str(&format!("CV predictions: {}\n", p.display()));
    }
    if let Some(p) = &s.predictions {
        o.push_str(&format!("Predictions: {} ({} files)\n", p.display(), s.num_predictions));
    }
    if !s.stage_seconds.is_empty() {
        let parts: Vec<String> =
            s.stage_seconds.iter().map(|(st, sec)| format!("{st} {}", crate::fmt::duration(*sec))).collect();
        o.push_str(&format!("Build time: {}\n", parts.join(", ")));
    }
    if !s.missing.is_empty() {
        o.push_str(&format!("Not in this run: {}\n", s.missing.join(", ")));
    }
    if !s.problems.is_empty() {
        o.push_str(&format!("Unreadable files: {} (see the report)\n", s.problems.len()));
    }
    o.push_str(&format!(
        "Report: {} and {} ({} figures in {})\n",
        s.html.display(),
        s.markdown.display(),
        s.figures,
        s.images.display()
    ));
    o
}

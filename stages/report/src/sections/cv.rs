//! Cross-validation metrics of every configuration: the per-case rows of each fold's
//! `validation/metrics.parquet` (or `validation/summary.json` when the table is absent), merged
//! over folds the way nnU-Net scores a configuration (all CV cases together, §11).

use super::{case_chart, case_table, Ctx};
use crate::cases::CaseDice;
use crate::doc::{slug, Block, Cell, Section, Table};
use crate::fmt;
use crate::run::axis_dirs;
use crate::summary::CvScore;

/// Per-case Dice of one configuration, all folds (group = fold).
pub struct ConfigCv {
    pub name: String,
    pub folds: Vec<String>,
    pub cases: CaseDice,
}

/// Reads the validation metrics of every configuration and fold.
pub fn read(ctx: &mut Ctx, sec: &mut Section) -> Vec<ConfigCv> {
    let dir = ctx.run.stage_dir("train-fold");
    let mut out = Vec::new();
    for (cfg, cdir) in axis_dirs(&dir, "configuration") {
        let mut cv = ConfigCv { name: cfg.clone(), folds: Vec::new(), cases: CaseDice::default() };
        for (fold, fdir) in axis_dirs(&cdir, "fold") {
            let v = fdir.join("validation");
            let mp = v.join("metrics.parquet");
            let sp = v.join("summary.json");
            let from_table = match ctx.run.table(&mp) {
                Ok(Some(t)) => match CaseDice::from_metrics(&t, &fold) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        ctx.problem(sec, format!("{}: {e}", ctx.run.rel(&mp)));
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    ctx.problem(sec, e);
                    None
                }
            };
            let summary = match ctx.run.summary(&sp) {
                Ok(s) => s,
                Err(e) => {
                    ctx.problem(sec, e);
                    None
                }
            };
            let cases = match (from_table, &summary) {
                (Some(c), Some(s)) => {
                    // Both exist: they must tell the same story.
                    let (a, b) = (c.foreground_mean(), s.foreground_dice());
                    if !(a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12) {
                        ctx.problem(
                            sec,
                            format!(
                                "{}: foreground Dice {} differs from {} computed from metrics.parquet",
                                ctx.run.rel(&sp),
                                fmt::score(b),
                                fmt::score(a)
                            ),
                        );
                    }
                    c
                }
                (Some(c), None) => c,
                (None, Some(s)) => CaseDice::from_summary(s, &fold),
                (None, None) => {
                    if v.exists() || fdir.join("log.parquet").exists() {
                        sec.missing(format!("{}: no validation metrics for {cfg} fold {fold}", ctx.run.rel(&v)));
                    }
                    continue;
                }
            };
            cv.folds.push(fold);
            cv.cases.append(cases);
        }
        if !cv.folds.is_empty() {
            out.push(cv);
        }
    }
    out
}

/// Mean Dice per class and foreground mean, as a score.
pub fn score_of(name: &str, members: Vec<String>, cd: &CaseDice) -> CvScore {
    CvScore {
        name: name.to_string(),
        members,
        foreground_dice: cd.foreground_mean(),
        per_class: cd.classes.iter().cloned().zip(cd.class_means()).collect(),
        cases: cd.rows.len(),
    }
}

pub fn build(ctx: &mut Ctx) -> (Section, Vec<ConfigCv>) {
    let mut sec = Section::new("cross-validation", "Cross-validation");
    let cvs = read(ctx, &mut sec);
    if cvs.is_empty() {
        ctx.missing(&mut sec, "train", "validation metrics (train/configuration=*/fold=*/validation/)".into());
        return (sec, cvs);
    }
    sec.push(Block::Para(
        "Per configuration, every fold's validation cases scored together (nnU-Net's cross-validation score): \
         the mean over cases of each class' Dice (NaN cases skipped), and the foreground mean over classes."
            .into(),
    ));
    let mut classes: Vec<String> = Vec::new();
    for c in &cvs {
        for k in &c.cases.classes {
            if !classes.contains(k) {
                classes.push(k.clone());
            }
        }
    }
    let mut headers = vec!["configuration".to_string(), "folds".to_string(), "cases".to_string()];
    headers.extend(classes.iter().map(|k| ctx.class_header(k)));
    headers.push("foreground Dice".into());
    let mut t = Table::new("cv-configurations", "Cross-validation Dice per configuration", headers);
    for c in &cvs {
        let s = score_of(&c.name, vec![c.name.clone()], &c.cases);
        let mut row = vec![Cell::text(&c.name), Cell::int(c.folds.len() as i64), Cell::int(c.cases.rows.len() as i64)];
        for k in &classes {
            let v = s.per_class.iter().find(|(kk, _)| kk == k).map_or(f64::NAN, |x| x.1);
            row.push(Cell::num(v, fmt::score));
        }
        row.push(Cell::num(s.foreground_dice, fmt::score));
        t.rows.push(row);
        ctx.summary.cv_configurations.push(s);
    }
    sec.push(Block::Table(t));
    for s in &ctx.summary.cv_configurations {
        for k in crate::summary::not_learned(&s.per_class) {
            let dice = s.per_class.iter().find(|(kk, _)| kk == k).map_or(f64::NAN, |x| x.1);
            sec.warning(format!(
                "{}: {} is not learned (CV Dice {} < {}): train longer, or check the label",
                s.name,
                ctx.class_header(k).trim_start_matches("Dice "),
                fmt::score(dice),
                crate::summary::NOT_LEARNED_DICE
            ));
        }
    }
    for c in &cvs {
        sec.push(Block::Heading(format!("Configuration {}", c.name)));
        let mut headers = vec!["fold".to_string(), "cases".to_string()];
        headers.extend(c.cases.classes.iter().map(|k| ctx.class_header(k)));
        headers.push("foreground Dice".into());
        let mut ft =
            Table::new(&format!("cv-folds-{}", slug(&c.name)), format!("{}: mean Dice per fold", c.name), headers);
        for f in &c.folds {
            let g = c.cases.group(f);
            let mut row = vec![Cell::text(f), Cell::int(g.rows.len() as i64)];
            row.extend(g.class_means().into_iter().map(|v| Cell::num(v, fmt::score)));
            row.push(Cell::num(g.foreground_mean(), fmt::score));
            ft.rows.push(row);
        }
        sec.push(Block::Table(ft));
        let id = format!("cv-cases-{}", slug(&c.name));
        sec.push(Block::Table(case_table(ctx, &id, &format!("{}: Dice per case", c.name), &c.cases, Some("fold"))));
        let fig = case_chart(
            ctx,
            &format!("cv_{}_cases.svg", slug(&c.name)),
            &format!("{}: cross-validation Dice per case", c.name),
            &format!("{}: Dice of every validation case and class (fold in brackets)", c.name),
            &c.cases,
        );
        sec.push(Block::Figures(vec![fig]));
    }
    (sec, cvs)
}

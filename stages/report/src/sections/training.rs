//! Training curves: `train/configuration=CFG/fold=F/log.parquet` (one row per epoch).

use super::Ctx;
use crate::cases::f64_column;
use crate::doc::{slug, Block, Cell, Figure, FigureContent, Section, Table};
use crate::fmt;
use crate::run::axis_dirs;
use crate::svg::{colour, LineChart, Series};
use nnunet_io::table::Table as Parquet;

/// The epoch log of one fold, as read.
pub struct EpochLog {
    pub epoch: Vec<f64>,
    pub train_loss: Vec<f64>,
    pub val_loss: Vec<f64>,
    pub mean_fg_dice: Vec<f64>,
    pub ema_fg_dice: Vec<f64>,
    pub lr: Vec<f64>,
    pub epoch_seconds: Vec<f64>,
    pub data_wait_seconds: Vec<f64>,
    /// `dice_KEY` columns: (KEY, values).
    pub class_dice: Vec<(String, Vec<f64>)>,
}

impl EpochLog {
    pub fn from_table(t: &Parquet) -> Result<EpochLog, String> {
        let req = |n: &str| f64_column(t, n).ok_or_else(|| format!("column '{n}' missing or not numeric"));
        let opt = |n: &str| f64_column(t, n).unwrap_or_else(|| vec![f64::NAN; t.nrows()]);
        Ok(EpochLog {
            epoch: req("epoch")?,
            train_loss: req("train_loss")?,
            val_loss: opt("val_loss"),
            mean_fg_dice: opt("mean_fg_dice"),
            ema_fg_dice: opt("ema_fg_dice"),
            lr: opt("lr"),
            epoch_seconds: opt("epoch_seconds"),
            data_wait_seconds: opt("data_wait_seconds"),
            class_dice: t
                .names
                .iter()
                .filter_map(|n| Some((n.strip_prefix("dice_")?.to_string(), f64_column(t, n)?)))
                .collect(),
        })
    }

    fn series(&self, name: &str, v: &[f64], i: usize, dashed: bool) -> Series {
        Series {
            name: name.to_string(),
            points: self.epoch.iter().zip(v).map(|(e, y)| (*e, *y)).collect(),
            colour: colour(i),
            dashed,
        }
    }
}

fn last(v: &[f64]) -> f64 {
    v.last().copied().unwrap_or(f64::NAN)
}

fn mean(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        f64::NAN
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}

/// The largest finite value and its index (first on ties).
pub fn best(v: &[f64]) -> Option<(usize, f64)> {
    v.iter().enumerate().filter(|(_, x)| x.is_finite()).fold(None, |acc, (i, &x)| match acc {
        Some((_, b)) if b >= x => acc,
        _ => Some((i, x)),
    })
}

fn svg_figure(file: String, caption: String, chart: &LineChart, w: usize, h: usize) -> Figure {
    Figure { file, caption, content: FigureContent::Svg(chart.to_svg(w, h)) }
}

pub fn build(ctx: &mut Ctx) -> Section {
    let mut sec = Section::new("training", "Training");
    let dir = ctx.run.stage_dir("train-fold");
    let configs = axis_dirs(&dir, "configuration");
    if configs.is_empty() {
        ctx.missing(&mut sec, "train", "the training stage (no train/configuration=*/fold=* folders)".into());
        return sec;
    }
    for (cfg, cdir) in configs {
        configuration(ctx, &mut sec, &cfg, &cdir);
    }
    sec
}

/// One configuration: a table with the last epoch of each fold, an EMA chart over folds, and
/// loss and Dice charts per fold.
fn configuration(ctx: &mut Ctx, sec: &mut Section, cfg: &str, cdir: &std::path::Path) {
    sec.push(Block::Heading(format!("Configuration {cfg}")));
    let headers = [
        "fold",
        "epochs",
        "train loss",
        "val loss",
        "pseudo Dice",
        "EMA Dice",
        "best EMA Dice",
        "best epoch",
        "final lr",
        "mean epoch (s)",
        "mean data wait (s)",
    ];
    let mut t = Table::new(
        &format!("training-{}", slug(cfg)),
        format!("{cfg}: last epoch of each fold"),
        headers.iter().map(|s| s.to_string()).collect(),
    );
    let mut figs: Vec<Vec<Figure>> = Vec::new();
    let mut ema_series = Vec::new();
    let folds = axis_dirs(cdir, "fold");
    if folds.is_empty() {
        sec.missing(format!("train/configuration={cfg}: no fold folders"));
    }
    for (k, (fold, fdir)) in folds.iter().enumerate() {
        let Some(log) = fold_log(ctx, sec, fold, &fdir.join("log.parquet")) else { continue };
        t.rows.push(last_epoch_row(fold, &log));
        figs.push(fold_figures(ctx, cfg, fold, &log));
        ema_series.push(Series {
            name: format!("fold {fold}"),
            points: log.epoch.iter().zip(&log.ema_fg_dice).map(|(e, y)| (*e, *y)).collect(),
            colour: colour(k),
            dashed: false,
        });
    }
    if !t.rows.is_empty() {
        sec.push(Block::Table(t));
    }
    if ema_series.len() > 1 {
        let chart = LineChart {
            title: format!("{cfg}: EMA pseudo Dice per fold"),
            x_label: "epoch".into(),
            y_label: "EMA Dice".into(),
            series: ema_series,
            y_range: Some((0.0, 1.0)),
        };
        figs.insert(
            0,
            vec![svg_figure(
                format!("train_{}_ema.svg", slug(cfg)),
                format!("{cfg}: EMA pseudo Dice of every fold"),
                &chart,
                560,
                300,
            )],
        );
    }
    for row in figs {
        sec.push(Block::Figures(row));
    }
}

/// A fold's epoch log; a missing or unreadable one is noted in the section.
fn fold_log(ctx: &mut Ctx, sec: &mut Section, fold: &str, p: &std::path::Path) -> Option<EpochLog> {
    match ctx.run.table(p) {
        Ok(Some(t)) => match EpochLog::from_table(&t) {
            Ok(l) => Some(l),
            Err(e) => {
                ctx.problem(sec, format!("{}: {e}", ctx.run.rel(p)));
                None
            }
        },
        Ok(None) => {
            sec.missing(format!("{} (fold {fold} has no epoch log)", ctx.run.rel(p)));
            None
        }
        Err(e) => {
            ctx.problem(sec, e);
            None
        }
    }
}

/// The table row of a fold: its last epoch and its best EMA.
fn last_epoch_row(fold: &str, log: &EpochLog) -> Vec<Cell> {
    let (best_i, best_v) = best(&log.ema_fg_dice).unwrap_or((usize::MAX, f64::NAN));
    let best_epoch = log.epoch.get(best_i).copied().unwrap_or(f64::NAN);
    vec![
        Cell::text(fold),
        Cell::int(log.epoch.len() as i64),
        Cell::num(last(&log.train_loss), fmt::loss),
        Cell::num(last(&log.val_loss), fmt::loss),
        Cell::num(last(&log.mean_fg_dice), fmt::score),
        Cell::num(last(&log.ema_fg_dice), fmt::score),
        Cell::num(best_v, fmt::score),
        Cell::num(best_epoch, fmt::trimmed),
        Cell::num(last(&log.lr), fmt::sci),
        Cell::num(mean(&log.epoch_seconds), fmt::seconds),
        Cell::num(mean(&log.data_wait_seconds), fmt::seconds),
    ]
}

/// One row of figures per fold: loss and Dice side by side.
fn fold_figures(ctx: &Ctx, cfg: &str, fold: &str, log: &EpochLog) -> Vec<Figure> {
    let base = format!("train_{}_fold{}", slug(cfg), slug(fold));
    let loss = LineChart {
        title: format!("{cfg} fold {fold}: loss"),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        series: vec![log.series("train", &log.train_loss, 1, false), log.series("val", &log.val_loss, 0, false)],
        y_range: None,
    };
    let mut ds =
        vec![log.series("pseudo Dice", &log.mean_fg_dice, 2, false), log.series("EMA", &log.ema_fg_dice, 5, false)];
    for (i, (key, v)) in log.class_dice.iter().enumerate() {
        ds.push(log.series(&ctx.class_header(key), v, i, true));
    }
    let dice = LineChart {
        title: format!("{cfg} fold {fold}: pseudo Dice"),
        x_label: "epoch".into(),
        y_label: "Dice".into(),
        series: ds,
        y_range: Some((0.0, 1.0)),
    };
    vec![
        svg_figure(
            format!("{base}_loss.svg"),
            format!("{cfg}, fold {fold}: training and validation loss per epoch"),
            &loss,
            560,
            300,
        ),
        svg_figure(
            format!("{base}_dice.svg"),
            format!("{cfg}, fold {fold}: pseudo Dice of the validation patches (mean, EMA, per class dashed)"),
            &dice,
            560,
            300,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_is_first_maximum() {
        assert_eq!(best(&[0.1, f64::NAN, 0.5, 0.5, 0.2]), Some((2, 0.5)));
        assert_eq!(best(&[f64::NAN]), None);
    }
}

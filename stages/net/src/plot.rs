//! The training curve (nnU-Net's `progress.png`, as SVG): losses, pseudo Dice with its EMA,
//! epoch time and learning rate per epoch, drawn with `nnunet-chart` like the run report's
//! figures.

use crate::error::{io_err, Result};
use crate::trainer::EpochRecord;
use nnunet_chart::{colour, stack, LineChart, Series};
use std::path::Path;

const WIDTH: usize = 900;
const PANEL_HEIGHT: usize = 275;

fn series(name: &str, colour_index: usize, records: &[EpochRecord], f: &dyn Fn(&EpochRecord) -> f64) -> Series {
    Series {
        name: name.into(),
        points: records.iter().map(|r| (r.epoch as f64, f(r))).collect(),
        colour: colour(colour_index),
        dashed: false,
    }
}

fn panel(title: &str, y_label: &str, series: Vec<Series>, y_range: Option<(f64, f64)>) -> String {
    let chart = LineChart { title: title.into(), x_label: "epoch".into(), y_label: y_label.into(), series, y_range };
    chart.to_svg(WIDTH, PANEL_HEIGHT)
}

/// The four panels of the curve as one SVG document.
pub fn progress_svg(records: &[EpochRecord]) -> String {
    let mut dice = vec![
        series("pseudo dice (mean fg)", 2, records, &|r| r.mean_fg_dice),
        Series { dashed: true, ..series("pseudo dice EMA", 1, records, &|r| r.ema_fg_dice) },
    ];
    let names: Vec<String> =
        records.first().map(|r| r.pseudo_dice.iter().map(|d| d.0.clone()).collect()).unwrap_or_default();
    if names.len() > 1 {
        for (k, n) in names.iter().enumerate().take(8) {
            dice.push(series(n, k + 3, records, &|r| r.pseudo_dice.get(k).map_or(f64::NAN, |d| d.1)));
        }
    }
    let panels = [
        panel(
            "loss",
            "loss",
            vec![series("train", 0, records, &|r| r.train_loss), series("val", 3, records, &|r| r.val_loss)],
            None,
        ),
        panel("pseudo dice", "Dice", dice, Some((0.0, 1.0))),
        panel(
            "epoch time (s) / data wait (s)",
            "seconds",
            vec![
                series("epoch", 4, records, &|r| r.epoch_seconds),
                series("data wait", 5, records, &|r| r.data_wait_seconds),
            ],
            None,
        ),
        panel("learning rate", "lr", vec![series("lr", 0, records, &|r| r.lr)], None),
    ];
    stack(&panels, WIDTH, PANEL_HEIGHT)
}

/// Writes `path` (SVG) from the epoch records, atomically.
pub fn write_progress(path: &Path, records: &[EpochRecord]) -> Result<()> {
    nnunet_io::fsio::write_atomic(path, progress_svg(records).as_bytes()).map_err(|e| io_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<EpochRecord> = (0..5)
            .map(|e| EpochRecord {
                epoch: e,
                train_loss: 1.0 - e as f64 * 0.1,
                val_loss: 0.9 - e as f64 * 0.1,
                pseudo_dice: vec![("a".into(), 0.1 * e as f64), ("b".into(), f64::NAN)],
                mean_fg_dice: 0.1 * e as f64,
                ema_fg_dice: 0.05 * e as f64,
                lr: 0.01,
                epoch_seconds: 2.0,
                data_wait_seconds: 0.1,
            })
            .collect();
        let p = dir.path().join("progress.svg");
        write_progress(&p, &recs).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("pseudo dice") && svg.contains("polyline"));
    }
}

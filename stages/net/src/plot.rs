//! The training curve (nnU-Net's `progress.png`, as SVG): losses, pseudo Dice with its EMA,
//! epoch time and learning rate per epoch.

use crate::error::{io_err, Result};
use crate::trainer::EpochRecord;
use plotters::prelude::*;
use std::path::Path;

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    x_max: f64,
    series: &[Series],
) -> Result<(), String> {
    let (lo, hi) = range(series.iter().flat_map(|s| s.2.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..x_max.max(1.0), lo..hi)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("epoch").draw().map_err(|e| e.to_string())?;
    for (name, color, pts) in series {
        let c = *color;
        let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Writes `path` (SVG) from the epoch records.
pub fn write_progress(path: &Path, records: &[EpochRecord]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let draw = || -> Result<(), String> {
        let root = SVGBackend::new(&tmp, (900, 1100)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((4, 1));
        let x_max = records.last().map_or(1.0, |r| r.epoch as f64 + 1.0);
        let pts = |f: &dyn Fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
            records.iter().map(|r| (r.epoch as f64, f(r))).collect()
        };
        panel(
            &areas[0],
            "loss",
            x_max,
            &[("train", PALETTE[0], pts(&|r| r.train_loss)), ("val", PALETTE[3], pts(&|r| r.val_loss))],
        )?;
        let mut dice: Vec<Series> = vec![
            ("pseudo dice (mean fg)", PALETTE[2], pts(&|r| r.mean_fg_dice)),
            ("pseudo dice EMA", PALETTE[1], pts(&|r| r.ema_fg_dice)),
        ];
        let names: Vec<String> =
            records.first().map(|r| r.pseudo_dice.iter().map(|d| d.0.clone()).collect()).unwrap_or_default();
        if names.len() > 1 {
            for (k, n) in names.iter().enumerate().take(8) {
                let color = PALETTE[(k + 3) % PALETTE.len()];
                dice.push((n.as_str(), color, pts(&|r| r.pseudo_dice.get(k).map_or(f64::NAN, |d| d.1))));
            }
        }
        panel(&areas[1], "pseudo dice", x_max, &dice)?;
        panel(
            &areas[2],
            "epoch time (s) / data wait (s)",
            x_max,
            &[
                ("epoch", PALETTE[4], pts(&|r| r.epoch_seconds)),
                ("data wait", PALETTE[5], pts(&|r| r.data_wait_seconds)),
            ],
        )?;
        panel(&areas[3], "learning rate", x_max, &[("lr", PALETTE[0], pts(&|r| r.lr))])?;
        root.present().map_err(|e| e.to_string())?;
        Ok(())
    };
    // Write next to the target and rename, so a reader never sees a half-written file.
    draw().map_err(|e| io_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
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

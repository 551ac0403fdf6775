//! Dataset fingerprint: `fingerprint/dataset_fingerprint.json` (nnU-Net field names) and the
//! per-case `fingerprint/cases.parquet`.

use super::{Ctx, FOLD_ROWS};
use crate::cases::f64_column;
use crate::doc::{Block, Cell, Section, Table};
use crate::fmt;
use crate::run::num;
use serde_json::Value;

/// Median (mean of the two middle values for an even count), NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn per_axis(rows: &[Value]) -> Vec<Vec<f64>> {
    let mut axes = vec![Vec::new(); 3];
    for r in rows {
        if let Some(a) = r.as_array() {
            for (i, x) in a.iter().take(3).enumerate() {
                axes[i].push(num(Some(x)));
            }
        }
    }
    axes
}

/// The section (~95 lines, kept whole: facts, intensity table and spacing chart are built from
/// the one fingerprint in the order the page shows them).
pub fn build(ctx: &mut Ctx) -> Section {
    let mut sec = Section::new("fingerprint", "Dataset fingerprint");
    let dir = ctx.run.stage_dir("fingerprint");
    let fp_path = dir.join("dataset_fingerprint.json");
    let fp = match ctx.run.json(&fp_path) {
        Ok(v) => v,
        Err(e) => {
            ctx.problem(&mut sec, e);
            None
        }
    };
    let cases_path = dir.join("cases.parquet");
    let cases = match ctx.run.table(&cases_path) {
        Ok(t) => t,
        Err(e) => {
            ctx.problem(&mut sec, e);
            None
        }
    };
    if fp.is_none() && cases.is_none() {
        if !dir.exists() {
            ctx.missing(&mut sec, "fingerprint", "the fingerprint stage (no fingerprint/ folder)".into());
        } else {
            ctx.missing(
                &mut sec,
                "fingerprint",
                "fingerprint/dataset_fingerprint.json and fingerprint/cases.parquet".into(),
            );
        }
        return sec;
    }
    if let Some(fp) = &fp {
        let empty = Vec::new();
        let spacings = fp.get("spacings").and_then(Value::as_array).unwrap_or(&empty);
        let shapes = fp.get("shapes_after_crop").and_then(Value::as_array).unwrap_or(&empty);
        let sp = per_axis(spacings);
        let sh = per_axis(shapes);
        let med = |axes: &[Vec<f64>]| fmt::vector(&axes.iter().map(|a| median(a)).collect::<Vec<_>>());
        let range = |a: &[f64]| {
            let lo = a.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{}–{}", fmt::trimmed(lo), fmt::trimmed(hi))
        };
        let props = fp.get("foreground_intensity_properties_per_channel").and_then(Value::as_object);
        let mut facts = vec![
            ("Cases".to_string(), spacings.len().to_string()),
            ("Channels".to_string(), props.map_or(0, |p| p.len()).to_string()),
            ("Median spacing (mm)".to_string(), med(&sp)),
        ];
        if !spacings.is_empty() {
            facts.push((
                "Spacing range per axis (mm)".into(),
                sp.iter().map(|a| range(a)).collect::<Vec<_>>().join(", "),
            ));
        }
        facts.push(("Median shape after cropping".to_string(), med(&sh)));
        facts.push((
            "Median relative size after cropping".to_string(),
            fmt::score(num(fp.get("median_relative_size_after_cropping"))),
        ));
        sec.push(Block::Facts(facts));
        if let Some(props) = props {
            let names = channel_names(ctx);
            const KEYS: [(&str, &str); 7] = [
                ("mean", "mean"),
                ("median", "median"),
                ("std", "std"),
                ("min", "min"),
                ("max", "max"),
                ("percentile_00_5", "p0.5"),
                ("percentile_99_5", "p99.5"),
            ];
            let mut headers = vec!["channel".to_string(), "name".to_string()];
            headers.extend(KEYS.iter().map(|k| k.1.to_string()));
            let mut t = Table::new("fingerprint-intensities", "Foreground intensities per channel", headers);
            for (ch, p) in props {
                let mut row = vec![Cell::text(ch), Cell::text(names.get(ch).cloned().unwrap_or_default())];
                row.extend(KEYS.iter().map(|k| Cell::num(num(p.get(k.0)), fmt::trimmed)));
                t.rows.push(row);
            }
            sec.push(Block::Table(t));
        }
    } else {
        sec.missing("fingerprint/dataset_fingerprint.json");
    }
    match &cases {
        Some(t) => match cases_table(t) {
            Ok(table) => sec.push(Block::Table(table)),
            Err(e) => ctx.problem(&mut sec, format!("{}: {e}", ctx.run.rel(&cases_path))),
        },
        None => sec.missing("fingerprint/cases.parquet (per-case spacing and shapes)"),
    }
    sec
}

fn cases_table(t: &nnunet_io::table::Table) -> Result<Table, String> {
    let case = t.str("case").map_err(|e| e.to_string())?;
    let col = |n: &str| f64_column(t, n).ok_or_else(|| format!("column '{n}' missing or not numeric"));
    let mut cols = Vec::new();
    for n in [
        "spacing_0",
        "spacing_1",
        "spacing_2",
        "shape_before_crop_0",
        "shape_before_crop_1",
        "shape_before_crop_2",
        "shape_after_crop_0",
        "shape_after_crop_1",
        "shape_after_crop_2",
        "relative_size_after_crop",
    ] {
        cols.push(col(n)?);
    }
    let headers = [
        "case",
        "spacing 0",
        "spacing 1",
        "spacing 2",
        "shape before crop",
        "shape after crop",
        "relative size after crop",
    ];
    let mut out = Table::new("fingerprint-cases", "Per case", headers.iter().map(|s| s.to_string()).collect());
    for (i, c) in case.iter().enumerate() {
        let v = |k: usize| cols[k].get(i).copied().unwrap_or(f64::NAN);
        let shape = |a: usize| fmt::vector(&[v(a), v(a + 1), v(a + 2)]);
        out.rows.push(vec![
            Cell::text(c),
            Cell::num(v(0), fmt::trimmed),
            Cell::num(v(1), fmt::trimmed),
            Cell::num(v(2), fmt::trimmed),
            Cell::text(shape(3)),
            Cell::text(shape(6)),
            Cell::num(v(9), fmt::score),
        ]);
    }
    out.folded = out.rows.len() > FOLD_ROWS;
    Ok(out)
}

/// Channel index -> name from `plan/dataset.json` (`channel_names`, or MSD `modality`).
fn channel_names(ctx: &Ctx) -> std::collections::BTreeMap<String, String> {
    let p = ctx.run.stage_dir("plan").join("dataset.json");
    let v = ctx.run.json(&p).ok().flatten();
    let m = v.as_ref().and_then(|v| v.get("channel_names").or_else(|| v.get("modality"))).and_then(Value::as_object);
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

//! The comparison page of a sweep: several run folders of one pipeline (an ablation's
//! variants), one page. Read only from the run folders' files, like the run report.
//!
//! - the table: every variant's overrides, CV Dice per class and mean, the difference of its
//!   per-case Dice to the baseline's on the same validation cases (mean, 95% bootstrap
//!   interval, Wilcoxon signed-rank p), cases better/worse, and its training time;
//! - the learning curves of all variants on shared axes;
//! - which units the variants shared (equal keys in their `run.json`).
//!
//! The first variant is the baseline (the first `variants:` entry, or the first run given to
//! `pipeline compare`). Besides `report.html` / `report.md`, `comparison.json` holds the table's
//! numbers for scripts.

use crate::doc::{Block, Cell, Document, Figure, FigureContent, Section, Table};
use crate::error::{ReportError, Result};
use crate::fmt;
use crate::run::{axis_dirs, RunFolder};
use crate::sections::cv::{read as read_cv, ConfigCv};
use crate::sections::training::EpochLog;
use crate::sections::Ctx;
use crate::svg::{colour, LineChart, Series};
use nnunet_eval::paired::{paired_difference, PairedDifference};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Seed of the bootstrap intervals (fixed: the same runs give the same page).
const BOOTSTRAP_SEED: u64 = 12345;

/// One variant to compare.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantRef {
    pub label: String,
    pub run_dir: PathBuf,
    /// `KEY=VALUE` overrides that made it (empty for the plain pipeline).
    pub overrides: Vec<(String, String)>,
}

/// What to compare: the variants (first = baseline) and a title.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepInput {
    pub title: String,
    pub variants: Vec<VariantRef>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(|e| (text(&e["key"]), text(&e["value"]))).collect())
        .unwrap_or_default()
}

impl SweepInput {
    /// From a sweep folder's `sweep.json` (written by `pipeline run` for a sweep).
    pub fn from_sweep_dir(dir: &Path) -> Result<SweepInput> {
        let path = dir.join("sweep.json");
        let v = crate::run::read_json(&path)
            .map_err(|msg| ReportError::RunJson { path: path.clone(), msg })?
            .ok_or_else(|| ReportError::RunJson { path: path.clone(), msg: "missing".into() })?;
        let list = v["variants"]
            .as_array()
            .ok_or_else(|| ReportError::RunJson { path: path.clone(), msg: "\"variants\" must be a list".into() })?;
        let mut variants = Vec::new();
        for e in list {
            let run = text(&e["run"]);
            if run.is_empty() || run.contains("..") || Path::new(&run).is_absolute() {
                return Err(ReportError::RunJson { path: path.clone(), msg: format!("bad variant folder '{run}'") });
            }
            variants.push(VariantRef {
                label: text(&e["label"]),
                run_dir: dir.join(&run),
                overrides: pairs(e.get("overrides")),
            });
        }
        let name = text(&v["sweep"]);
        Ok(SweepInput { title: format!("Sweep {name}"), variants })
    }

    /// From run folders given one by one (`pipeline compare RUN...`): labels and overrides from
    /// their `run.json`.
    pub fn from_runs(dirs: &[PathBuf]) -> Result<SweepInput> {
        let mut variants = Vec::new();
        for d in dirs {
            let run = RunFolder::open(d)?;
            let label =
                run.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| run.info.run.clone());
            variants.push(VariantRef { label, run_dir: d.clone(), overrides: run.info.overrides.clone() });
        }
        Ok(SweepInput { title: "Comparison".into(), variants })
    }
}

/// What one variant's run folder gave.
struct VariantData {
    r: VariantRef,
    run: Option<RunFolder>,
    cv: Vec<ConfigCv>,
    /// Epoch logs per configuration (one per fold).
    logs: BTreeMap<String, Vec<EpochLog>>,
    train_seconds: f64,
    label_names: BTreeMap<String, String>,
    notes: Vec<String>,
}

fn load(r: &VariantRef) -> VariantData {
    let mut d = VariantData {
        r: r.clone(),
        run: None,
        cv: Vec::new(),
        logs: BTreeMap::new(),
        train_seconds: 0.0,
        label_names: BTreeMap::new(),
        notes: Vec::new(),
    };
    let run = match RunFolder::open(&r.run_dir) {
        Ok(run) => run,
        Err(e) => {
            d.notes.push(format!("{}: {e}", r.label));
            return d;
        }
    };
    {
        let mut ctx = Ctx::new(&run);
        let mut scratch = Section::new("x", "x");
        d.cv = read_cv(&mut ctx, &mut scratch);
        d.notes.extend(ctx.summary.problems.iter().map(|p| format!("{}: {p}", r.label)));
        d.label_names = ctx.label_names.clone();
    }
    for (cfg, cdir) in axis_dirs(&run.stage_dir("train-fold"), "configuration") {
        for (_fold, fdir) in axis_dirs(&cdir, "fold") {
            let p = fdir.join("log.parquet");
            match run.table(&p) {
                Ok(Some(t)) => match EpochLog::from_table(&t) {
                    Ok(log) => {
                        d.train_seconds += log.epoch_seconds.iter().filter(|x| x.is_finite()).sum::<f64>();
                        d.logs.entry(cfg.clone()).or_default().push(log);
                    }
                    Err(e) => d.notes.push(format!("{}: {}: {e}", r.label, run.rel(&p))),
                },
                Ok(None) => {}
                Err(e) => d.notes.push(format!("{}: {e}", r.label)),
            }
        }
    }
    d.run = Some(run);
    d
}

/// One row of the comparison: a variant's configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ComparisonRow {
    pub variant: String,
    pub configuration: String,
    pub overrides: Vec<(String, String)>,
    pub folds: Vec<String>,
    pub cases: usize,
    /// Mean Dice per class key, then the foreground mean.
    pub dice_per_class: Vec<(String, f64)>,
    pub dice_mean: f64,
    /// Against the baseline's same configuration (None for the baseline itself or when it
    /// has no such configuration).
    pub vs_baseline: Option<Difference>,
    pub train_seconds: f64,
}

/// [`PairedDifference`] as written to `comparison.json`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Difference {
    pub paired_cases: usize,
    pub mean: f64,
    pub ci95: [f64; 2],
    pub wilcoxon_p: f64,
    pub better: usize,
    pub worse: usize,
}

impl From<PairedDifference> for Difference {
    fn from(p: PairedDifference) -> Self {
        Difference {
            paired_cases: p.n,
            mean: p.mean,
            ci95: [p.ci_low, p.ci_high],
            wilcoxon_p: p.wilcoxon_p,
            better: p.better,
            worse: p.worse,
        }
    }
}

/// Per-case foreground-mean Dice keyed by case id.
fn case_scores(cv: &ConfigCv) -> BTreeMap<String, f64> {
    cv.cases.rows.iter().map(|r| (r.case.clone(), cv.cases.case_score(r))).collect()
}

fn rows_of(data: &[VariantData]) -> Vec<ComparisonRow> {
    let base = data.first();
    let mut rows = Vec::new();
    for d in data {
        for cv in &d.cv {
            let vs =
                base.filter(|b| !std::ptr::eq(*b, d)).and_then(|b| b.cv.iter().find(|c| c.name == cv.name)).map(|b| {
                    let (bs, vs) = (case_scores(b), case_scores(cv));
                    let common: Vec<&String> = bs.keys().filter(|k| vs.contains_key(*k)).collect();
                    let a: Vec<f64> = common.iter().map(|k| bs[*k]).collect();
                    let x: Vec<f64> = common.iter().map(|k| vs[*k]).collect();
                    Difference::from(paired_difference(&a, &x, BOOTSTRAP_SEED))
                });
            rows.push(ComparisonRow {
                variant: d.r.label.clone(),
                configuration: cv.name.clone(),
                overrides: d.r.overrides.clone(),
                folds: cv.folds.clone(),
                cases: cv.cases.rows.len(),
                dice_per_class: cv.cases.classes.iter().cloned().zip(cv.cases.class_means()).collect(),
                dice_mean: cv.cases.foreground_mean(),
                vs_baseline: vs,
                train_seconds: d.train_seconds,
            });
        }
    }
    rows
}

fn overrides_text(o: &[(String, String)]) -> String {
    if o.is_empty() {
        "(defaults)".into()
    } else {
        o.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }
}

fn p_text(p: f64) -> String {
    if p.is_nan() {
        "–".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn signed(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:+.4}")
    }
}

fn table_section(rows: &[ComparisonRow], data: &[VariantData]) -> Section {
    let mut sec = Section::new("comparison", "Variants against the baseline");
    let base = data.first().map(|d| d.r.label.clone()).unwrap_or_default();
    sec.push(Block::Para(format!(
        "Cross-validation Dice of every variant. Δ is the mean over the validation cases both runs \
         predicted of (variant − baseline {base}) per-case foreground-mean Dice, with a 95% bootstrap \
         interval ({} resamples) and the two-sided Wilcoxon signed-rank p-value. Training time is the \
         sum of the epochs' wall time.",
        nnunet_eval::paired::BOOTSTRAP_RESAMPLES
    )));
    let mut classes: Vec<String> = Vec::new();
    for r in rows {
        for (k, _) in &r.dice_per_class {
            if !classes.contains(k) {
                classes.push(k.clone());
            }
        }
    }
    let names = data.first().map(|d| d.label_names.clone()).unwrap_or_default();
    let mut headers = vec!["variant".to_string(), "overrides".into(), "configuration".into(), "cases".into()];
    headers.extend(classes.iter().map(|k| match names.get(k) {
        Some(n) => format!("Dice {k} ({n})"),
        None => format!("Dice {k}"),
    }));
    headers.extend(
        ["Dice mean", "Δ mean", "Δ 95% CI", "Wilcoxon p", "better / worse", "training"].iter().map(|s| s.to_string()),
    );
    let mut t = Table::new("sweep-table", "CV Dice per variant and the difference to the baseline", headers);
    for r in rows {
        let mut row = vec![
            Cell::text(&r.variant),
            Cell::text(overrides_text(&r.overrides)),
            Cell::text(&r.configuration),
            Cell::int(r.cases as i64),
        ];
        for k in &classes {
            let v = r.dice_per_class.iter().find(|(c, _)| c == k).map_or(f64::NAN, |x| x.1);
            row.push(Cell::num(v, fmt::score));
        }
        row.push(Cell::num(r.dice_mean, fmt::score));
        match &r.vs_baseline {
            Some(d) => {
                row.push(Cell::num(d.mean, signed));
                row.push(Cell::text(format!("[{}, {}]", signed(d.ci95[0]), signed(d.ci95[1]))));
                row.push(Cell::num(d.wilcoxon_p, p_text));
                row.push(Cell::text(format!("{} / {}", d.better, d.worse)));
            }
            None => {
                let what = if r.variant == base { "baseline" } else { "–" };
                row.push(Cell::text(what));
                row.extend((0..3).map(|_| Cell::text("")));
            }
        }
        row.push(Cell::num(r.train_seconds, fmt::duration));
        t.rows.push(row);
    }
    sec.push(Block::Table(t));
    for d in data {
        if d.cv.is_empty() {
            sec.missing(format!("{}: no cross-validation metrics (train with validate: true)", d.r.label));
        }
    }
    sec
}

/// Mean over folds, epoch by epoch, of one column.
fn fold_mean(logs: &[EpochLog], pick: fn(&EpochLog) -> &Vec<f64>) -> Vec<(f64, f64)> {
    let mut by_epoch: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for l in logs {
        for (e, v) in l.epoch.iter().zip(pick(l)) {
            if v.is_finite() {
                let s = by_epoch.entry(*e as i64).or_insert((0.0, 0));
                s.0 += v;
                s.1 += 1;
            }
        }
    }
    by_epoch.into_iter().map(|(e, (s, n))| (e as f64, s / n as f64)).collect()
}

fn curves_section(data: &[VariantData]) -> Section {
    let mut sec = Section::new("curves", "Learning curves");
    let mut cfgs: Vec<String> = Vec::new();
    for d in data {
        for c in d.logs.keys() {
            if !cfgs.contains(c) {
                cfgs.push(c.clone());
            }
        }
    }
    if cfgs.is_empty() {
        sec.missing("no training logs (train/configuration=*/fold=*/log.parquet) in any variant");
        return sec;
    }
    for cfg in &cfgs {
        let mut figs = Vec::new();
        let charts: [(&str, &str, &str, fn(&EpochLog) -> &Vec<f64>, Option<(f64, f64)>); 2] = [
            (
                "dice",
                "pseudo-Dice (mean over folds)",
                "mean foreground pseudo-Dice",
                |l| &l.mean_fg_dice,
                Some((0.0, 1.0)),
            ),
            ("loss", "training loss (mean over folds)", "train loss", |l| &l.train_loss, None),
        ];
        for (file, title, y, pick, range) in charts {
            let series: Vec<Series> = data
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    let logs = d.logs.get(cfg)?;
                    Some(Series {
                        name: d.r.label.clone(),
                        points: fold_mean(logs, pick),
                        colour: colour(i),
                        dashed: i == 0,
                    })
                })
                .collect();
            let chart = LineChart {
                title: format!("{cfg}: {title}"),
                x_label: "epoch".into(),
                y_label: y.into(),
                series,
                y_range: range,
            };
            figs.push(Figure {
                file: format!("sweep-{file}-{}.svg", crate::doc::slug(cfg)),
                caption: format!("{cfg}: {title}; the baseline is dashed"),
                content: FigureContent::Svg(chart.to_svg(620, 320)),
            });
        }
        sec.push(Block::Figures(figs));
    }
    sec
}

fn shared_section(data: &[VariantData]) -> Section {
    let mut sec = Section::new("shared", "Shared units");
    let runs: Vec<&RunFolder> = data.iter().filter_map(|d| d.run.as_ref()).collect();
    if runs.len() < 2 {
        sec.missing("fewer than two variants have a run.json");
        return sec;
    }
    sec.push(Block::Para(
        "Units with the same key in every variant were built once and shared (preprocessing, \
         typically); the others were built per variant."
            .into(),
    ));
    // stage -> unit -> keys per variant
    let mut stages: Vec<String> = Vec::new();
    let mut keys: BTreeMap<(String, String), Vec<Option<String>>> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        for u in &r.info.units {
            if !stages.contains(&u.stage) {
                stages.push(u.stage.clone());
            }
            let e = keys.entry((u.stage.clone(), u.unit.clone())).or_insert_with(|| vec![None; runs.len()]);
            e[i] = u.key.clone();
        }
    }
    let mut t = Table::new(
        "sweep-shared",
        "Units per stage, and how many every variant shares",
        vec!["stage".into(), "units".into(), "shared by all".into(), "distinct builds".into()],
    );
    let (mut tot_units, mut tot_shared, mut tot_distinct) = (0usize, 0usize, 0usize);
    for st in &stages {
        let mine: Vec<&Vec<Option<String>>> = keys.iter().filter(|((s, _), _)| s == st).map(|(_, v)| v).collect();
        let shared = mine.iter().filter(|v| v.iter().all(|k| k.is_some() && *k == v[0])).count();
        let distinct: usize = mine
            .iter()
            .map(|v| {
                let mut ks: Vec<&String> = v.iter().flatten().collect();
                ks.sort();
                ks.dedup();
                ks.len()
            })
            .sum();
        tot_units += mine.len();
        tot_shared += shared;
        tot_distinct += distinct;
        t.rows.push(vec![
            Cell::text(st),
            Cell::int(mine.len() as i64),
            Cell::int(shared as i64),
            Cell::int(distinct as i64),
        ]);
    }
    t.rows.push(vec![
        Cell::text("all"),
        Cell::int(tot_units as i64),
        Cell::int(tot_shared as i64),
        Cell::int(tot_distinct as i64),
    ]);
    sec.push(Block::Table(t));
    sec
}

/// Builds the comparison document and its rows (nothing is written).
pub fn build_document(input: &SweepInput) -> (Document, Vec<ComparisonRow>) {
    let data: Vec<VariantData> = input.variants.iter().map(load).collect();
    let rows = rows_of(&data);
    let mut overview = Section::new("overview", "Overview");
    overview.push(Block::Facts(vec![
        ("variants".into(), data.len().to_string()),
        ("baseline".into(), data.first().map(|d| d.r.label.clone()).unwrap_or_default()),
    ]));
    let mut t =
        Table::new("sweep-variants", "The variants", vec!["variant".into(), "overrides".into(), "run folder".into()]);
    for d in &data {
        t.rows.push(vec![
            Cell::text(&d.r.label),
            Cell::text(overrides_text(&d.r.overrides)),
            Cell::text(d.r.run_dir.display().to_string()),
        ]);
    }
    overview.push(Block::Table(t));
    for d in &data {
        for n in &d.notes {
            overview.problem(n.clone());
        }
        for cv in &d.cv {
            for (k, m) in cv.cases.classes.iter().zip(cv.cases.class_means()) {
                if m.is_finite() && m < 0.1 {
                    overview.info(format!(
                        "{} ({}): label {k} has CV Dice {} — it is not learned at this budget",
                        d.r.label,
                        cv.name,
                        fmt::score(m)
                    ));
                }
            }
        }
    }
    let sections = vec![overview, table_section(&rows, &data), curves_section(&data), shared_section(&data)];
    let subtitle = format!("{} variants", data.len());
    (Document { title: input.title.clone(), subtitle, sections }, rows)
}

/// Writes the comparison page (`report.html`, `report.md`, `images/`) and `comparison.json`
/// into `out_dir`; returns the rows of the table.
pub fn write_comparison(input: &SweepInput, out_dir: &Path) -> Result<Vec<ComparisonRow>> {
    let (document, rows) = build_document(input);
    crate::write_document(&document, out_dir)?;
    let v = json!({
        "title": input.title,
        "baseline": input.variants.first().map(|v| v.label.clone()),
        "rows": rows,
    });
    // serde_json writes NaN (no score) as null.
    let bytes = serde_json::to_vec_pretty(&v).unwrap_or_default();
    crate::write_file(&out_dir.join("comparison.json"), &bytes)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use nnunet_io::table::{Column, Table as Parquet};

    /// Two fake runs; in the second, every fold-0 validation Dice of configuration `cfg` is
    /// lowered by 0.1 (its summary.json removed so the table is what is read).
    fn two_runs(root: &Path, cfg: &str) -> SweepInput {
        let mut variants = Vec::new();
        for (i, name) in ["base", "worse"].iter().enumerate() {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let run = fixture::build(&dir).unwrap();
            if i == 1 {
                let v = run.run_dir.join(format!("train/configuration={cfg}/fold=0/validation"));
                let p = v.join("metrics.parquet");
                let t = Parquet::read_parquet(&p).unwrap();
                let dice: Vec<f64> = t.f64("Dice").unwrap().iter().map(|d| d - 0.1).collect();
                let mut out = Parquet::new();
                for n in &t.names {
                    let col = if n == "Dice" { Column::F64(dice.clone()) } else { t.column(n).unwrap().clone() };
                    out = out.with(n, col);
                }
                // The view links into the fake cache: replace the files, not the link targets' folder.
                std::fs::remove_file(&p).unwrap();
                out.write_parquet(&p).unwrap();
                std::fs::remove_file(v.join("summary.json")).unwrap();
            }
            variants.push(VariantRef {
                label: name.to_string(),
                run_dir: run.run_dir.clone(),
                overrides: if i == 0 { vec![] } else { vec![("train.loss".into(), "ce".into())] },
            });
        }
        SweepInput { title: "Sweep t".into(), variants }
    }

    #[test]
    fn table_has_every_variant_and_the_difference_to_the_baseline() {
        let tmp = tempfile::tempdir().unwrap();
        let input = two_runs(tmp.path(), "2d");
        let out = tmp.path().join("report");
        let rows = write_comparison(&input, &out).unwrap();
        let base: Vec<&ComparisonRow> = rows.iter().filter(|r| r.variant == "base").collect();
        let worse: Vec<&ComparisonRow> = rows.iter().filter(|r| r.variant == "worse").collect();
        assert!(!base.is_empty() && base.len() == worse.len(), "{rows:?}");
        let (b2d, w2d) = (
            base.iter().find(|r| r.configuration == "2d").unwrap(),
            worse.iter().find(|r| r.configuration == "2d").unwrap(),
        );
        assert!(b2d.vs_baseline.is_none());
        let d = w2d.vs_baseline.as_ref().unwrap();
        // Fold 0 holds half of the cases; each of its cases loses 0.1 on every class.
        let fold0 = w2d.cases / 2;
        assert_eq!(d.paired_cases, w2d.cases);
        assert!((d.mean - (-0.1 * fold0 as f64 / w2d.cases as f64)).abs() < 1e-9, "{d:?}");
        assert_eq!((d.better, d.worse), (0, fold0));
        assert!(d.ci95[0] <= d.mean && d.mean <= d.ci95[1]);
        // An untouched configuration: no difference at all.
        if let Some(w3) = worse.iter().find(|r| r.configuration == "3d_fullres") {
            let d3 = w3.vs_baseline.as_ref().unwrap();
            assert_eq!(d3.mean, 0.0);
            assert_eq!(d3.wilcoxon_p, 1.0);
        }
        // The page and comparison.json carry the same rows.
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        let t = fixture::markdown_table(&md, "sweep-table").expect("sweep table in the Markdown");
        assert_eq!(t.len(), rows.len());
        assert!(md.contains("train.loss=ce"));
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        let cells = fixture::html_table(&html, "sweep-table").unwrap();
        let mean_col = 4 + w2d.dice_per_class.len();
        let row = cells.iter().find(|r| r[0].text == "worse" && r[2].text == "2d").unwrap();
        assert_eq!(row[mean_col].value, Some(w2d.dice_mean));
        assert_eq!(row[mean_col + 1].value, Some(d.mean));
        let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("comparison.json")).unwrap()).unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), rows.len());
        assert!(html.contains("Learning curves") && html.contains("<svg"));
        // The fake runs are built alike, so every key matches: everything counts as shared.
        let shared = fixture::html_table(&html, "sweep-shared").unwrap();
        let all = shared.last().unwrap();
        assert_eq!(all[0].text, "all");
        assert!(all[1].value.unwrap() > 0.0);
        assert_eq!(all[2].value, all[1].value);
        assert_eq!(all[3].value, all[1].value);
    }

    #[test]
    fn sweep_json_is_read_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(
            d.join("sweep.json"),
            r#"{"sweep":"abl","baseline":"a","variants":[{"label":"a","run":"a","overrides":[]},{"label":"b","run":"b","overrides":[{"key":"train.norm","value":"batch"}]}]}"#,
        )
        .unwrap();
        let s = SweepInput::from_sweep_dir(d).unwrap();
        assert_eq!(s.variants.len(), 2);
        assert_eq!(s.variants[1].run_dir, d.join("b"));
        assert_eq!(s.variants[1].overrides, vec![("train.norm".to_string(), "batch".to_string())]);
        std::fs::write(d.join("sweep.json"), r#"{"sweep":"x","variants":[{"label":"a","run":"../a"}]}"#).unwrap();
        assert!(SweepInput::from_sweep_dir(d).is_err());
        // A variant whose run folder is missing is reported in the page, not a failure.
        std::fs::write(d.join("sweep.json"), r#"{"sweep":"x","variants":[{"label":"a","run":"a"}]}"#).unwrap();
        let (doc, rows) = build_document(&SweepInput::from_sweep_dir(d).unwrap());
        assert!(rows.is_empty());
        let md = crate::markdown::render(&doc);
        assert!(md.contains("run.json"), "{md}");
    }
}

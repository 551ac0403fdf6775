//! Model selection (`ensemble-select`): `select/ranking.parquet` (numbers) and
//! `select/ranking.json` (members), `select/chosen.json`.

use super::Ctx;
use crate::cases::f64_column;
use crate::doc::{Block, Cell, Figure, FigureContent, Section, Table};
use crate::fmt;
use crate::run::num;
use crate::summary::{ChosenModel, CvScore};
use crate::svg::{colour, BarChart, BarGroup};
use serde_json::Value;

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect())
        .unwrap_or_default()
}

fn from_parquet(t: &nnunet_io::table::Table) -> Result<Vec<CvScore>, String> {
    let names = t.str("name").map_err(|e| e.to_string())?;
    let fg = f64_column(t, "foreground_dice").ok_or("column 'foreground_dice' missing or not numeric")?;
    let members: Option<Vec<Vec<String>>> =
        t.str("members").ok().map(|m| m.iter().map(|s| s.split('+').map(str::to_string).collect()).collect());
    let class_cols: Vec<(String, Vec<f64>)> =
        t.names.iter().filter_map(|n| Some((n.strip_prefix("dice_")?.to_string(), f64_column(t, n)?))).collect();
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, n)| CvScore {
            name: n.clone(),
            members: members.as_ref().and_then(|m| m.get(i).cloned()).unwrap_or_default(),
            foreground_dice: fg.get(i).copied().unwrap_or(f64::NAN),
            per_class: class_cols.iter().map(|(k, v)| (k.clone(), v.get(i).copied().unwrap_or(f64::NAN))).collect(),
            cases: 0,
        })
        .collect())
}

fn from_json(v: &Value) -> Result<Vec<CvScore>, String> {
    let a = v.as_array().ok_or("expected a list")?;
    Ok(a.iter()
        .map(|r| CvScore {
            name: r.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
            members: strings(r.get("members")),
            foreground_dice: num(r.get("foreground_dice")),
            per_class: r
                .get("dice")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), num(Some(v)))).collect())
                .unwrap_or_default(),
            cases: 0,
        })
        .collect())
}

pub fn build(ctx: &mut Ctx) -> Section {
    let mut sec = Section::new("selection", "Model selection");
    let dir = ctx.run.stage_dir("ensemble-select");
    if !dir.exists() {
        ctx.missing(&mut sec, "select", "the ensemble-select stage (no select/ folder)".into());
        return sec;
    }
    let ranking = read_ranking(ctx, &mut sec, &dir);
    match &ranking {
        Some(r) if !r.is_empty() => {
            sec.push(Block::Table(ranking_table(ctx, r)));
            sec.push(Block::Figures(vec![ranking_figure(r)]));
            ctx.summary.ranking = r.clone();
        }
        Some(_) => sec.info("the ranking is empty"),
        None => sec.missing("select/ranking.parquet and select/ranking.json"),
    }
    chosen(ctx, &mut sec, &dir, ranking.as_deref());
    sec
}

/// The ranking from `ranking.parquet`, with members from `ranking.json` where the table has
/// none; `ranking.json` alone when the table is missing or unreadable.
fn read_ranking(ctx: &mut Ctx, sec: &mut Section, dir: &std::path::Path) -> Option<Vec<CvScore>> {
    let pq = dir.join("ranking.parquet");
    let js = dir.join("ranking.json");
    let json_rows = match ctx.run.json(&js) {
        Ok(Some(v)) => match from_json(&v) {
            Ok(r) => Some(r),
            Err(e) => {
                ctx.problem(sec, format!("{}: {e}", ctx.run.rel(&js)));
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            ctx.problem(sec, e);
            None
        }
    };
    let mut ranking = match ctx.run.table(&pq) {
        Ok(Some(t)) => match from_parquet(&t) {
            Ok(r) => Some(r),
            Err(e) => {
                ctx.problem(sec, format!("{}: {e}", ctx.run.rel(&pq)));
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            ctx.problem(sec, e);
            None
        }
    };
    if let (Some(r), Some(j)) = (ranking.as_mut(), json_rows.as_ref()) {
        for row in r.iter_mut().filter(|row| row.members.is_empty()) {
            if let Some(m) = j.iter().find(|x| x.name == row.name) {
                row.members = m.members.clone();
            }
        }
    }
    ranking.or(json_rows)
}

fn ranking_table(ctx: &Ctx, r: &[CvScore]) -> Table {
    let mut classes: Vec<String> = Vec::new();
    for row in r {
        for (k, _) in &row.per_class {
            if !classes.contains(k) {
                classes.push(k.clone());
            }
        }
    }
    let mut headers = vec!["rank".to_string(), "model".to_string(), "members".to_string()];
    headers.push("foreground Dice".into());
    headers.extend(classes.iter().map(|k| ctx.class_header(k)));
    let mut t = Table::new(
        "selection-ranking",
        "Configurations and ensembles ranked by cross-validation foreground Dice",
        headers,
    );
    for (i, row) in r.iter().enumerate() {
        let mut cells = vec![
            Cell::int(i as i64 + 1),
            Cell::text(&row.name),
            Cell::text(row.members.join(" + ")),
            Cell::num(row.foreground_dice, fmt::score),
        ];
        for k in &classes {
            let v = row.per_class.iter().find(|(kk, _)| kk == k).map_or(f64::NAN, |x| x.1);
            cells.push(Cell::num(v, fmt::score));
        }
        t.rows.push(cells);
    }
    t
}

fn ranking_figure(r: &[CvScore]) -> Figure {
    let chart = BarChart {
        title: "Cross-validation foreground Dice".into(),
        y_label: "Dice".into(),
        categories: r.iter().map(|x| if x.members.len() > 1 { x.members.join("+") } else { x.name.clone() }).collect(),
        groups: vec![BarGroup {
            name: "foreground Dice".into(),
            colour: colour(1),
            values: r.iter().map(|x| x.foreground_dice).collect(),
        }],
        y_range: Some((0.0, 1.0)),
        value_labels: Some(fmt::score),
    };
    let w = chart.width_for(480);
    Figure {
        file: "selection_ranking.svg".into(),
        caption: "Foreground Dice of every candidate (configurations and pair ensembles)".into(),
        content: FigureContent::Svg(chart.to_svg(w, 320)),
    }
}

/// `chosen.json`: the selected model (its Dice from the ranking when the file has none).
fn chosen(ctx: &mut Ctx, sec: &mut Section, dir: &std::path::Path, ranking: Option<&[CvScore]>) {
    match ctx.run.json(&dir.join("chosen.json")) {
        Ok(Some(v)) => {
            let name = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let fg = v
                .get("foreground_dice")
                .map(|x| num(Some(x)))
                .or_else(|| ranking.and_then(|r| r.iter().find(|x| x.name == name)).map(|x| x.foreground_dice))
                .unwrap_or(f64::NAN);
            let chosen = ChosenModel {
                name,
                members: strings(v.get("members")),
                folds: strings(v.get("folds")),
                foreground_dice: fg,
            };
            sec.push(Block::Heading("Chosen model".into()));
            sec.push(Block::Facts(vec![
                ("Model".into(), chosen.name.clone()),
                ("Members".into(), chosen.members.join(" + ")),
                ("Folds".into(), chosen.folds.join(", ")),
                ("Cross-validation foreground Dice".into(), fmt::score(chosen.foreground_dice)),
            ]));
            ctx.summary.chosen = Some(chosen);
        }
        Ok(None) => sec.missing("select/chosen.json"),
        Err(e) => ctx.problem(sec, e),
    }
}

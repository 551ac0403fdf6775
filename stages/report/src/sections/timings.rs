//! Time per stage (see [`crate::timing`]).

use super::Ctx;
use crate::doc::{Block, Cell, Figure, FigureContent, Section, Table};
use crate::fmt;
use crate::svg::{colour, BarChart, BarGroup};

pub fn build(ctx: &mut Ctx) -> Section {
    let mut sec = Section::new("timings", "Timings");
    let (stages, notes) = crate::timing::stage_timings(ctx.run);
    if stages.is_empty() {
        sec.info("run.json lists no units");
        return sec;
    }
    sec.push(Block::Para(
        "Build time: the sum of the units' build durations recorded in run.json (also for units taken \
         from the cache in this run). This run: wall time spent on the units in this run."
            .into(),
    ));
    let headers =
        ["stage", "units", "built", "cached", "failed", "skipped", "build time (s)", "this run (s)", "first started"];
    let mut t = Table::new("timings", "Time per stage", headers.iter().map(|s| s.to_string()).collect());
    let (mut tb, mut tr) = (0.0, 0.0);
    for s in &stages {
        let build = if s.manifests > 0 { s.build_seconds } else { f64::NAN };
        t.rows.push(vec![
            Cell::text(&s.stage),
            Cell::int(s.units as i64),
            Cell::int(s.built as i64),
            Cell::int(s.cached as i64),
            Cell::int(s.failed as i64),
            Cell::int(s.skipped as i64),
            Cell::num(build, fmt::seconds),
            Cell::num(s.run_seconds, fmt::seconds),
            Cell::text(s.first_started.clone().unwrap_or_default()),
        ]);
        if build.is_finite() {
            tb += build;
            ctx.summary.stage_seconds.push((s.stage.clone(), build));
        }
        tr += s.run_seconds;
    }
    t.rows.push(vec![
        Cell::text("total"),
        Cell::int(stages.iter().map(|s| s.units).sum::<usize>() as i64),
        Cell::int(stages.iter().map(|s| s.built).sum::<usize>() as i64),
        Cell::int(stages.iter().map(|s| s.cached).sum::<usize>() as i64),
        Cell::int(stages.iter().map(|s| s.failed).sum::<usize>() as i64),
        Cell::int(stages.iter().map(|s| s.skipped).sum::<usize>() as i64),
        Cell::num(tb, fmt::seconds),
        Cell::num(tr, fmt::seconds),
        Cell::text(""),
    ]);
    sec.push(Block::Table(t));
    for n in notes {
        sec.info(n);
    }
    if stages.iter().any(|s| s.manifests > 0) {
        let chart = BarChart {
            title: "Build time per stage".into(),
            y_label: "seconds".into(),
            categories: stages.iter().map(|s| s.stage.clone()).collect(),
            groups: vec![BarGroup {
                name: "build time".into(),
                colour: colour(1),
                values: stages.iter().map(|s| if s.manifests > 0 { s.build_seconds } else { f64::NAN }).collect(),
            }],
            y_range: None,
            value_labels: Some(fmt::seconds),
        };
        let w = chart.width_for(480);
        sec.push(Block::Figures(vec![Figure {
            file: "timings.svg".into(),
            caption: "Build time per stage (seconds, from run.json)".into(),
            content: FigureContent::Svg(chart.to_svg(w, 300)),
        }]));
    }
    sec
}

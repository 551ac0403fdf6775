//! Plans: `plan/plans.json` (nnU-Net's nnUNetPlans.json), labels and channels from
//! `plan/dataset.json`, the folds of `plan/splits_final.json`.

use super::Ctx;
use crate::doc::{Block, Cell, Section, Table};
use crate::fmt;
use crate::summary::{PlannedConfiguration, PlansBrief};
use nnunet_prep::plans::Plans;
use serde_json::Value;

fn short_class(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

pub fn build(ctx: &mut Ctx) -> Section {
    let mut sec = Section::new("plans", "Plans");
    let dir = ctx.run.stage_dir("plan");
    if !dir.exists() {
        ctx.missing(&mut sec, "plan", "the plan stage (no plan/ folder)".into());
        return sec;
    }
    let plans_path = dir.join("plans.json");
    let plans: Option<Plans> = match ctx.run.json(&plans_path) {
        Ok(Some(v)) => match serde_json::from_value::<Plans>(v) {
            Ok(p) => Some(p),
            Err(e) => {
                ctx.problem(&mut sec, format!("{}: not an nnU-Net plans file: {e}", ctx.run.rel(&plans_path)));
                None
            }
        },
        Ok(None) => {
            ctx.missing(&mut sec, "plan", "plan/plans.json".into());
            None
        }
        Err(e) => {
            ctx.problem(&mut sec, e);
            None
        }
    };
    if let Some(p) = &plans {
        configurations(ctx, &mut sec, p, &plans_path);
    }
    labels_and_channels(ctx, &mut sec, &dir.join("dataset.json"));
    folds(ctx, &mut sec, &dir.join("splits_final.json"));
    sec
}

/// The plans' facts and one table row per configuration (also the summary's brief).
fn configurations(ctx: &mut Ctx, sec: &mut Section, p: &Plans, plans_path: &std::path::Path) {
    sec.push(Block::Facts(vec![
        ("Dataset".into(), p.dataset_name.clone()),
        ("Plans".into(), p.plans_name.clone()),
        ("Planner".into(), p.experiment_planner_used.clone()),
        ("Image reader".into(), p.image_reader_writer.clone()),
        ("Transpose forward".into(), fmt::ivector(&p.transpose_forward)),
        ("Median spacing (transposed, mm)".into(), fmt::vector(&p.original_median_spacing_after_transp)),
        ("Median shape (transposed)".into(), fmt::vector(&p.original_median_shape_after_transp)),
    ]));
    let headers = [
        "configuration",
        "patch size",
        "batch size",
        "spacing (mm)",
        "median image size",
        "normalization",
        "network",
        "stages",
        "features per stage",
        "batch Dice",
        "next stage",
    ];
    let mut t = Table::new("plans-configurations", "Configurations", headers.iter().map(|s| s.to_string()).collect());
    let mut brief =
        PlansBrief { dataset_name: p.dataset_name.clone(), plans_name: p.plans_name.clone(), ..Default::default() };
    for name in p.configurations.keys() {
        match p.configuration(name) {
            Ok(c) => {
                let a = &c.architecture.arch_kwargs;
                t.rows.push(vec![
                    Cell::text(name),
                    Cell::text(fmt::ivector(&c.patch_size)),
                    Cell::int(c.batch_size as i64),
                    Cell::text(fmt::vector(&c.spacing)),
                    Cell::text(fmt::vector(&c.median_image_size_in_voxels)),
                    Cell::text(c.normalization_schemes.join(", ")),
                    Cell::text(short_class(&c.architecture.network_class_name)),
                    Cell::int(a.n_stages as i64),
                    Cell::text(a.features_per_stage.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")),
                    Cell::text(if c.batch_dice { "yes" } else { "no" }),
                    Cell::text(c.next_stage.clone().unwrap_or_default()),
                ]);
                brief.configurations.push(PlannedConfiguration {
                    name: name.clone(),
                    patch_size: c.patch_size.clone(),
                    batch_size: c.batch_size,
                    spacing: c.spacing.clone(),
                });
            }
            Err(e) => {
                let msg = format!("{}: configuration {name}: {e}", ctx.run.rel(plans_path));
                ctx.problem(sec, msg);
            }
        }
    }
    sec.push(Block::Table(t));
    ctx.summary.plans = Some(brief);
}

/// `dataset.json` as the plan copied it: channels, training cases, labels.
fn labels_and_channels(ctx: &mut Ctx, sec: &mut Section, ds_path: &std::path::Path) {
    match ctx.run.json(ds_path) {
        Ok(Some(v)) => {
            let mut t = Table::new("plans-labels", "Labels", vec!["name".into(), "value".into()]);
            if let Some(m) = v.get("labels").and_then(Value::as_object) {
                for (name, val) in m {
                    t.rows.push(vec![Cell::text(name), Cell::text(val.to_string())]);
                }
            }
            let channels = v.get("channel_names").and_then(Value::as_object).map(|m| {
                m.iter().map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
            });
            let mut facts = vec![("Channels".to_string(), channels.unwrap_or_default())];
            if let Some(n) = v.get("numTraining").and_then(Value::as_u64) {
                facts.push(("Training cases".into(), n.to_string()));
            }
            sec.push(Block::Heading("Labels and channels".into()));
            sec.push(Block::Facts(facts));
            sec.push(Block::Table(t));
        }
        Ok(None) => sec.missing("plan/dataset.json"),
        Err(e) => ctx.problem(sec, e),
    }
}

/// `splits_final.json`: cases per fold.
fn folds(ctx: &mut Ctx, sec: &mut Section, sp: &std::path::Path) {
    match ctx.run.json(sp) {
        Ok(Some(Value::Array(folds))) => {
            let mut t = Table::new(
                "plans-splits",
                "Cross-validation folds (splits_final.json)",
                vec!["fold".into(), "training cases".into(), "validation cases".into()],
            );
            for (i, f) in folds.iter().enumerate() {
                let n = |k: &str| f.get(k).and_then(Value::as_array).map_or(0, |a| a.len()) as i64;
                t.rows.push(vec![Cell::text(i.to_string()), Cell::int(n("train")), Cell::int(n("val"))]);
            }
            sec.push(Block::Table(t));
        }
        Ok(Some(_)) => ctx.problem(sec, format!("{}: expected a list of folds", ctx.run.rel(sp))),
        Ok(None) => sec.missing("plan/splits_final.json"),
        Err(e) => ctx.problem(sec, e),
    }
}

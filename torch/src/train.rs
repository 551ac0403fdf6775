//! `train-fold`'s body (the declaration is the engine's `kinds/train.rs`): trains one
//! configuration on one cross-validation fold (§6–§8), then predicts the fold's validation cases
//! at full resolution and scores them against the original labels (§7.3).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

use engine::kind::RunCtx;
use engine::kinds::{read_json, write_json};
use nnunet_eval::summary::{CaseResult, Summary};
use nnunet_io::table::{Column, Table};
use nnunet_prep::plans::{Plans, ResolvedConfiguration};

/// Trains, validates, and leaves the fold's artifact in `ctx.out`.
///
/// Long (~85 lines): the kind's sequence (inputs, options, pretrained weights, cascade cases,
/// train, logs, validation) in one place; the work is in nnunet-net.
pub fn run(ctx: &RunCtx) -> Result<()> {
    let plan_dir = ctx.input(engine::kinds::PLAN)?;
    let plans: Plans = read_json(&plan_dir.join("plans.json"))?;
    let cfg_name = ctx.coord("configuration")?;
    let cfg = plans.configuration(&cfg_name).with_context(|| format!("configuration {cfg_name}"))?;
    let labels = engine::kinds::plan::read_labels(plan_dir)?;
    let fold = ctx.coord("fold")?;
    let (train_ids, val_ids) = fold_cases(&plan_dir.join("splits_final.json"), &fold)?;
    let store = ctx.input(engine::kinds::RESAMPLE)?.join(format!("{}.zarr", cfg.data_identifier));
    let device = crate::device::parse_device(&ctx.env.device)?;
    let mut opts = train_options(ctx, device)?;
    // A cascade stage trains on the previous stage's cross-validation predictions of every case
    // (§7.3, §9.5), one-hot encoded over the foreground labels as extra input channels.
    let prev_segs = match &cfg.previous_stage {
        Some(prev) => {
            opts.cascade_labels = labels.foreground_labels().iter().map(|&l| l as i16).collect();
            let mut ids: Vec<String> = train_ids.iter().chain(&val_ids).cloned().collect();
            ids.sort();
            ids.dedup();
            Some(previous_stage_segmentations(ctx, prev, &cfg_name, &ids)?)
        }
        None => None,
    };

    // Attempt history (resumes are visible in the artifact).
    let attempts_path = ctx.out.join("attempts.json");
    let mut attempts: Vec<serde_json::Value> =
        if attempts_path.is_file() { read_json(&attempts_path)? } else { vec![] };
    let start_epoch = nnunet_net::checkpoint::latest_epoch(&ctx.out).unwrap_or(0);
    attempts.push(json!({"start_epoch": start_epoch, "started": engine::cache::now_rfc3339(), "device": crate::device::device_name(device)}));
    write_json(&attempts_path, &attempts)?;

    let total = opts.epochs as u64;
    let log_path = ctx.out.join("log.parquet");
    let mut on_epoch = |records: &[nnunet_net::trainer::EpochRecord]| -> Result<bool> {
        if let Some(r) = records.last() {
            (ctx.progress)(
                r.epoch as u64 + 1,
                total,
                &format!(
                    "loss {:.3} val {:.3} dice {:.3} ema {:.3}",
                    r.train_loss, r.val_loss, r.mean_fg_dice, r.ema_fg_dice
                ),
            );
        }
        epoch_table(records).write_parquet(&log_path)?;
        Ok(!ctx.cancelled())
    };
    let mut cases =
        nnunet_net::trainer::FoldCases::from_store(&store, &labels, &train_ids, &val_ids, opts.case_cache_bytes)
            .with_context(|| format!("opening the preprocessed cases of fold {fold}"))?;
    if let Some(segs) = &prev_segs {
        // The cascade: each case carries the previous stage's segmentation as extra channels.
        cases.train = cascade_cases(std::mem::take(&mut cases.train), segs)?;
        cases.val = cascade_cases(std::mem::take(&mut cases.val), segs)?;
    }
    let outcome = nnunet_net::trainer::train_fold(&opts, &cfg, cases, &ctx.out, &mut on_epoch)
        .with_context(|| format!("training {cfg_name} fold {fold}"))?;
    ctx.check_cancel()?;
    write_json(&ctx.out.join("training.json"), &outcome)?;
    if let Some(p) = &opts.pretrained {
        let report = p.report.lock().map(|r| r.clone()).unwrap_or(None);
        write_json(
            &ctx.out.join("pretrained.json"),
            &json!({
                "source": p.source,
                "loaded": report.as_ref().map(|r| r.loaded),
                "fresh": report.as_ref().map(|r| r.skipped.iter().map(|(n, why)| json!({"name": n, "why": why})).collect::<Vec<_>>()),
            }),
        )?;
    }

    if ctx.param_bool("validate")? {
        validate(ctx, &plans, &cfg, &labels, &store, &val_ids, device, prev_segs.as_ref())?;
    }
    // Like nnU-Net: the resumable checkpoint goes once training has finished.
    let latest = ctx.out.join("checkpoint_latest");
    if latest.exists() {
        std::fs::remove_dir_all(&latest).ok();
    }
    Ok(())
}

/// The previous stage's segmentation of each of `ids` on this stage's preprocessed grid, from
/// the fold artifacts of `prev` this unit reads (`predicted_next_stage/CFG/CASE.zarr`, written by
/// their validation). Every case must have one: each is a validation case of exactly one fold.
fn previous_stage_segmentations(
    ctx: &RunCtx,
    prev: &str,
    cfg_name: &str,
    ids: &[String],
) -> Result<std::collections::BTreeMap<String, std::path::PathBuf>> {
    let mut found = std::collections::BTreeMap::new();
    let mut folds = 0;
    for i in ctx.inputs_of("train-fold") {
        if i.coords.get("configuration").map(engine::kind::value_str).as_deref() != Some(prev) {
            continue;
        }
        folds += 1;
        for id in ids {
            let p = nnunet_infer::export::next_stage_path(&i.dir, cfg_name, id);
            if p.is_dir() {
                found.insert(id.clone(), p);
            }
        }
    }
    let missing: Vec<&str> = ids.iter().filter(|id| !found.contains_key(*id)).map(|s| s.as_str()).collect();
    if !missing.is_empty() {
        bail!(
            "{cfg_name} trains on the cross-validation predictions of {prev}, but {} of {} case(s) have none \
             (e.g. {}; {folds} {prev} fold(s) were read): train {prev} on every fold, with validation on, \
             in the same stage (list {prev} with {cfg_name} in its configurations)",
            missing.len(),
            ids.len(),
            missing.iter().take(3).copied().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(found)
}

/// Store cases of a cascade stage: each with its previous-stage segmentation.
fn cascade_cases(
    cases: Vec<std::sync::Arc<dyn nnunet_net::sampler::PatchSource>>,
    segs: &std::collections::BTreeMap<String, std::path::PathBuf>,
) -> Result<Vec<std::sync::Arc<dyn nnunet_net::sampler::PatchSource>>> {
    cases
        .into_iter()
        .map(|c| {
            let p = segs.get(c.id()).ok_or_else(|| anyhow!("case {} has no previous-stage segmentation", c.id()))?;
            let prev = nnunet_infer::export::read_label_array(p)
                .with_context(|| format!("previous-stage segmentation {}", p.display()))?;
            let cc = nnunet_net::sampler::CascadeCase::new(c, prev)?;
            Ok(std::sync::Arc::new(cc) as std::sync::Arc<dyn nnunet_net::sampler::PatchSource>)
        })
        .collect()
}

/// Train and validation case ids of a fold (`all`: every case in both).
fn fold_cases(splits_file: &Path, fold: &str) -> Result<(Vec<String>, Vec<String>)> {
    let splits = nnunet_prep::split::read_splits(splits_file)?;
    if fold == "all" {
        let mut all: Vec<String> = splits.iter().flat_map(|s| s.val.clone()).collect();
        all.sort();
        return Ok((all.clone(), all));
    }
    let f: usize = fold.parse().map_err(|_| anyhow!("fold '{fold}' is not a number or 'all'"))?;
    let s = splits.get(f).ok_or_else(|| anyhow!("fold {f} does not exist: the split has {} folds", splits.len()))?;
    Ok((s.train.clone(), s.val.clone()))
}

fn train_options(ctx: &RunCtx, device: tch::Device) -> Result<nnunet_net::trainer::TrainOptions> {
    use nnunet_net::trainer::{LossKind, OptimizerKind, TrainOptions};
    use nnunet_net::unet::{NetOptions, Nonlin, Norm};
    let mut o = TrainOptions::default();
    o.epochs = ctx.param_i64("epochs")? as usize;
    o.iterations_per_epoch = ctx.param_i64("iterations_per_epoch")? as usize;
    o.val_iterations = ctx.param_i64("val_iterations")? as usize;
    let bs = ctx.param_i64("batch_size")? as usize;
    o.batch_size = (bs > 0).then_some(bs);
    let cap = ctx.param_i64("features_cap")? as usize;
    o.features_cap = (cap > 0).then_some(cap as i64);
    o.optimizer = match ctx.param_str("optimizer")?.as_str() {
        "adam" => OptimizerKind::AdamPlateau,
        _ => OptimizerKind::SgdNesterov,
    };
    let lr = ctx.param_f64("initial_lr")?;
    if lr > 0.0 {
        o.initial_lr = Some(lr);
    }
    o.weight_decay = ctx.param_f64("weight_decay")?;
    o.grad_clip = ctx.param_f64("grad_clip")?;
    o.loss = match ctx.param_str("loss")?.as_str() {
        "ce" => LossKind::Ce,
        "dice" => LossKind::Dice,
        _ => LossKind::DiceCe,
    };
    o.net = NetOptions {
        norm: match ctx.param_str("norm")?.as_str() {
            "batch" => Norm::Batch,
            "none" => Norm::None,
            _ => Norm::Instance,
        },
        nonlin: match ctx.param_str("nonlin")?.as_str() {
            "relu" => Nonlin::Relu,
            _ => Nonlin::LeakyRelu,
        },
        deep_supervision: ctx.param_bool("deep_supervision")?,
    };
    o.augment = ctx.param_bool("augment")?;
    o.oversample_foreground = ctx.param_f64("oversample")?;
    let w = ctx.param_i64("workers")? as usize;
    o.workers = if w == 0 { ctx.env.cpus.saturating_sub(1).max(1) } else { w };
    o.seed = ctx.param_i64("seed")? as u64;
    o.save_every = ctx.param_i64("save_every")? as usize;
    o.mixed_precision = ctx.param_bool("mixed_precision")?;
    o.device = device;
    o.torch_threads = ctx.env.cpus.max(1);
    if let Some(p) = engine::kinds::train::pretrained_path(&ctx.params) {
        let cfg = ctx.coord("configuration")?;
        let fold = ctx.coord("fold")?;
        let w = read_pretrained(&p, &cfg, &fold).with_context(|| format!("pretrained weights {}", p.display()))?;
        o.pretrained = Some(std::sync::Arc::new(nnunet_net::nnunet_checkpoint::Pretrained::new(p, w)));
    }
    Ok(o)
}

/// The weights of `pretrained`: an nnU-Net `.pth`, one of our checkpoint folders, or a bundle
/// (its configuration `cfg`, else its only one; its fold `fold`, else its first).
fn read_pretrained(path: &Path, cfg: &str, fold: &str) -> Result<nnunet_net::nnunet_checkpoint::Weights> {
    use nnunet_net::nnunet_checkpoint::{read_checkpoint, read_safetensors};
    if path.is_dir() {
        return Ok(read_safetensors(&path.join(nnunet_net::checkpoint::WEIGHTS))?);
    }
    if !path.is_file() {
        bail!("no such file or folder");
    }
    if path.extension().is_some_and(|e| e == "tar") {
        let tmp = tempfile::tempdir()?;
        let b = nnunet_infer::bundle::load_bundle(path, &tmp.path().join("bundle"))?;
        let cs = &b.manifest.configurations;
        let c =
            cs.iter().find(|c| c.name == cfg).or(if cs.len() == 1 { cs.first() } else { None }).ok_or_else(|| {
                anyhow!(
                    "the bundle has no configuration {cfg} (it has {})",
                    cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
        let f = c.folds.iter().find(|f| f.as_str() == fold).or(c.folds.first()).ok_or_else(|| anyhow!("no folds"))?;
        let dir = b.root.join(nnunet_infer::bundle::fold_path(&c.name, f));
        return Ok(read_safetensors(&dir.join(nnunet_net::checkpoint::WEIGHTS))?);
    }
    Ok(read_checkpoint(path)?.1)
}

/// Per-epoch rows for `log.parquet`.
fn epoch_table(records: &[nnunet_net::trainer::EpochRecord]) -> Table {
    let f = |g: &dyn Fn(&nnunet_net::trainer::EpochRecord) -> f64| Column::F64(records.iter().map(g).collect());
    let mut t = Table::new()
        .with("epoch", Column::I64(records.iter().map(|r| r.epoch as i64).collect()))
        .with("train_loss", f(&|r| r.train_loss))
        .with("val_loss", f(&|r| r.val_loss))
        .with("mean_fg_dice", f(&|r| r.mean_fg_dice))
        .with("ema_fg_dice", f(&|r| r.ema_fg_dice))
        .with("lr", f(&|r| r.lr))
        .with("epoch_seconds", f(&|r| r.epoch_seconds))
        .with("data_wait_seconds", f(&|r| r.data_wait_seconds));
    let n = records.first().map_or(0, |r| r.pseudo_dice.len());
    for k in 0..n {
        let key = records[0].pseudo_dice[k].0.clone();
        t = t.with(&format!("dice_{key}"), f(&|r| r.pseudo_dice.get(k).map_or(f64::NAN, |d| d.1)));
    }
    t
}

/// §7.3: predict every validation case with the final checkpoint (sliding window, Gaussian,
/// mirroring), export to the original geometry, store probabilities for ensembling, score.
/// A stage with a next stage (3d_lowres) also keeps each case's segmentation resampled to the
/// next stage's preprocessed grid; a cascade stage takes its previous stage's segmentation of
/// each case as one-hot input channels (`prev_segs`).
#[allow(clippy::too_many_arguments)]
fn validate(
    ctx: &RunCtx,
    plans: &Plans,
    cfg: &ResolvedConfiguration,
    labels: &nnunet_io::labels::Labels,
    store: &Path,
    val_ids: &[String],
    device: tch::Device,
    prev_segs: Option<&std::collections::BTreeMap<String, std::path::PathBuf>>,
) -> Result<()> {
    use nnunet_infer::export::{export_prediction, write_probabilities, write_segmentation};
    use nnunet_infer::predictor::{LabelSpec, Predictor};
    let out = ctx.out.join("validation");
    std::fs::create_dir_all(&out)?;
    let mut sw = nnunet_infer::sliding_window::SlidingWindowOptions::default();
    sw.device = device;
    let predictor = Predictor::from_checkpoints(
        &[ctx.out.join("checkpoint_final")],
        cfg,
        sw,
        &nnunet_infer::network::load_checkpoint,
    )?;
    let spec = LabelSpec::from_labels(labels);
    let classes = nnunet_eval::classes::from_labels(labels);
    let tta = ctx.param_bool("validation_tta")?;
    let mut results = Vec::new();
    let t0 = Instant::now();
    for (i, id) in val_ids.iter().enumerate() {
        ctx.check_cancel()?;
        (ctx.progress)(i as u64, val_ids.len() as u64, &format!("validating {id}"));
        let case = ctx.dataset.case(id).ok_or_else(|| anyhow!("validation case {id} is not in the dataset"))?;
        let cs =
            nnunet_prep::store::CaseStore::open(&store.join(id)).with_context(|| format!("preprocessed case {id}"))?;
        let mut data = cs.read_data()?;
        if let Some(segs) = prev_segs {
            let p = &segs[id];
            let prev = nnunet_infer::export::read_label_array(p)
                .with_context(|| format!("previous-stage segmentation {}", p.display()))?;
            if prev.shape != cs.shape() {
                bail!("{}: shape {:?}, the preprocessed case {id} is {:?}", p.display(), prev.shape, cs.shape());
            }
            for &l in &spec.foreground_labels {
                data.push(prev.map(|v| if v as i32 == l { 1.0f32 } else { 0.0 }));
            }
        }
        let logits = predictor.predict_channels(data, tta, &|_, _| {})?;
        if let Some(next) = &cfg.next_stage {
            write_next_stage(ctx, plans, cfg, next, id, cs.properties(), &logits, &spec)?;
        }
        let ex = export_prediction(&logits, cs.properties(), plans, cfg, &spec.mode, true)?;
        // Validation outputs are internal artifacts: NIfTI whatever the dataset's format, with
        // the input's geometry (converted when the input is not NIfTI).
        let header = nnunet_io::image::read_header(&case.images[0].path)?;
        let seg_path = out.join(format!("{id}.nii.gz"));
        write_segmentation(&seg_path, &ex.segmentation, &header, spec.foreground_labels.len())?;
        if let Some(p) = &ex.probabilities {
            write_probabilities(
                &out.join(format!("{id}{}", nnunet_eval::folder::PROBS_SUFFIX)),
                p,
                json!({"case": id}),
            )?;
        }
        let label = case.label.as_ref().ok_or_else(|| anyhow!("validation case {id} has no label file"))?;
        let r: CaseResult = nnunet_eval::folder::evaluate_pair(label, &seg_path, &classes, labels.ignore)?;
        results.push(r);
    }
    if results.is_empty() {
        bail!("fold has no validation cases");
    }
    let summary = Summary::from_cases(classes, results);
    summary.write_json(&out.join("summary.json"))?;
    summary.per_case_table().write_parquet(&out.join("metrics.parquet"))?;
    write_json(
        &out.join("timing.json"),
        &json!({"cases": val_ids.len(), "seconds": t0.elapsed().as_secs_f64(), "tta": tta}),
    )?;
    Ok(())
}

/// §7.3 `resample_and_save`: a validation case's logits resampled to the next stage's
/// preprocessed grid (nnU-Net passes this stage's spacing as both spacings, so only it decides
/// separate-z), as labels, into `predicted_next_stage/NEXT/CASE.zarr` of this fold.
#[allow(clippy::too_many_arguments)]
fn write_next_stage(
    ctx: &RunCtx,
    plans: &Plans,
    cfg: &ResolvedConfiguration,
    next: &str,
    id: &str,
    props: &nnunet_prep::preprocess::CaseProperties,
    logits: &nnunet_infer::export::Logits,
    spec: &nnunet_infer::predictor::LabelSpec,
) -> Result<()> {
    use nnunet_prep::preprocess::target_spacing;
    let next_cfg = plans.configuration(next).with_context(|| format!("next stage {next} of {}", cfg.name))?;
    let shape = nnunet_prep::resample::compute_new_shape(
        props.shape_after_cropping_and_before_resampling,
        props.spacing_transposed,
        target_spacing(&next_cfg, props.spacing_transposed)?,
    );
    let spacing = target_spacing(cfg, props.spacing_transposed)?;
    let seg = nnunet_infer::export::resample_logits_to_segmentation(
        logits,
        shape,
        spacing,
        spacing,
        &cfg.resampling_probabilities,
        &spec.mode,
    )?;
    let dir = nnunet_infer::export::next_stage_path(&ctx.out, next, id);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    nnunet_infer::export::write_label_array(&dir, &seg, json!({"case": id, "from": cfg.name}))?;
    Ok(())
}

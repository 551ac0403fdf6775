//! `predict`'s body (the declaration is the engine's `kinds/predict.rs`): segments a folder of
//! the dataset with the chosen configuration(s), all trained folds and the post-processing
//! decision (§9, §10).

use anyhow::{anyhow, bail, Result};
use serde_json::json;

use engine::kind::{value_str, RunCtx};
use engine::kinds::predict::input_cases;
use engine::kinds::write_json;
use nnunet_infer::model::{predict_cases, Model, ModelConfiguration, PredictOptions};

/// Segments the stage's images into `ctx.out`.
pub fn run(ctx: &RunCtx) -> Result<()> {
    let plan = ctx.input(engine::kinds::PLAN)?;
    let select = ctx.input(engine::kinds::ENSEMBLE_SELECT)?;
    let chosen: serde_json::Value = engine::kinds::read_json(&select.join("chosen.json"))?;
    let members: Vec<String> = chosen["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str().map(String::from)).collect())
        .ok_or_else(|| anyhow!("{}: no members", select.join("chosen.json").display()))?;
    let mut configurations: Vec<ModelConfiguration> = Vec::new();
    for i in ctx.inputs_of(engine::kinds::TRAIN_FOLD) {
        let cfg = i.coords.get("configuration").map(value_str).unwrap_or_default();
        let fold = i.coords.get("fold").map(value_str).unwrap_or_default();
        let dir = i.dir.join(nnunet_net::checkpoint::FINAL);
        match configurations.iter_mut().find(|c| c.name == cfg) {
            Some(c) => c.folds.push((fold, dir)),
            None => configurations.push(ModelConfiguration::new(cfg, vec![(fold, dir)])),
        }
    }
    let pp = ctx.input(engine::kinds::POSTPROCESS)?.join("postprocessing.json");
    let model =
        Model::new(plan.join("plans.json"), plan.join("dataset.json"), Some(pp), members, configurations, chosen)?;
    let images = ctx.param_str("images")?;
    let cases = input_cases(ctx.dataset, &images)?;
    if cases.is_empty() {
        bail!("predict: no images in {}/{images}", ctx.dataset.root.display());
    }
    let opts = PredictOptions {
        tta: ctx.param_bool("tta")?,
        device: crate::device::parse_device(&ctx.env.device)?,
        save_probabilities: ctx.param_bool("save_probabilities")?,
        postprocessing: true,
        memory: None,
        tile_step_size: 0.5,
        fp16_accumulation: false,
    };
    let t0 = std::time::Instant::now();
    let timings = predict_cases(&model, &cases, &ctx.out, &opts, ctx.progress, &|| ctx.cancelled())?;
    write_json(
        &ctx.out.join("prediction.json"),
        &json!({
            "model": model.describe(),
            "members": model.members,
            "cases": timings,
            "seconds": t0.elapsed().as_secs_f64(),
            "tta": opts.tta,
            "device": crate::device::device_name(opts.device),
        }),
    )
}

//! The libtorch commands: `predict`, `export`, `device`, and the model benchmarks
//! (`bench augment`, `bench step`, `bench predict`).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine::cli::{ExportArgs, PredictArgs};
use engine::commands::{print_json, resolve_run_dir};
use engine::kinds::predict::discover_cases;
use nnunet_infer::model::{predict_cases, Model, PredictOptions};
use nnunet_infer::predictor::Predictor;

fn progress_bar(len: u64, hidden: bool) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    if hidden {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed} {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// `pipeline predict -i IN -o OUT (--run RUN | --model BUNDLE)`.
///
/// Long (~100 lines): the command's sequence (model, cases, options, predict, prediction.json,
/// summary) as a user reads it in the README; each step is a call into nnunet-infer.
pub fn predict(a: PredictArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    // A bundle is extracted next to the output, verified, and removed afterwards.
    let mut extracted: Option<PathBuf> = None;
    let folds: Vec<String> = a.folds.clone();
    let model = match (a.model.as_slice(), &a.run) {
        ([first, ..], _) if nnunet_infer::nnunet_folder::is_nnunet_folder(first) => {
            let ck = nnunet_infer::nnunet_folder::checkpoint_file(&a.checkpoint)?;
            nnunet_infer::nnunet_folder::model_from_nnunet(
                &a.model,
                &ck,
                (!folds.is_empty()).then_some(folds.as_slice()),
                a.postprocessing.clone(),
            )
            .with_context(|| format!("nnU-Net model {}", first.display()))
        }
        ([bundle], _) => {
            std::fs::create_dir_all(&a.output).with_context(|| format!("cannot create {}", a.output.display()))?;
            let dir = a.output.join(format!(".model-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let loaded = nnunet_infer::bundle::load_bundle(bundle, &dir)
                .with_context(|| format!("model bundle {}", bundle.display()))?;
            extracted = Some(dir);
            Model::from_bundle(&loaded).map_err(anyhow::Error::from)
        }
        ([_, _], _) => Err(anyhow!("two --model values must both be nnU-Net model folders (an ensemble)")),
        (_, run) => crate::model::from_run(&resolve_run_dir(run.as_deref())?),
    };
    let result = (|| -> Result<serde_json::Value> {
        let mut model = model?;
        model.restrict_folds(&folds)?;
        if let Some(pp) = &a.postprocessing {
            let d = nnunet_eval::postprocess::PostprocessingDecision::read(pp)
                .with_context(|| format!("--postprocessing {}", pp.display()))?;
            model.postprocessing = Some(d);
            model.postprocessing_json = Some(pp.clone());
        }
        if !(a.step_size > 0.0 && a.step_size <= 1.0) {
            bail!("--step-size {} must be in (0, 1]", a.step_size);
        }
        let cases = discover_cases(&a.input, &model.file_ending, model.num_channels)?;
        let opts = PredictOptions {
            tta: !a.no_tta,
            device: crate::device::parse_device(&a.device)?,
            save_probabilities: a.save_probabilities,
            postprocessing: !a.no_postprocessing,
            memory: a.memory,
            tile_step_size: a.step_size,
            fp16_accumulation: a.fp16_accumulation,
        };
        if !a.json {
            eprintln!(
                "predict: {} case(s) with {} on {}",
                cases.len(),
                model.describe(),
                crate::device::device_name(opts.device)
            );
        }
        let pb = progress_bar(cases.len() as u64, a.json);
        pb.set_prefix("predict");
        let progress = |d: u64, t: u64, msg: &str| {
            pb.set_length(t);
            pb.set_position(d);
            pb.set_message(msg.to_string());
        };
        let timings = predict_cases(&model, &cases, &a.output, &opts, &progress, &|| false)?;
        pb.finish_and_clear();
        Ok(json!({
            "output": a.output,
            "cases": timings,
            "model": model.describe(),
            "seconds": t0.elapsed().as_secs_f64(),
        }))
    })();
    if let Some(d) = extracted {
        let _ = std::fs::remove_dir_all(d);
    }
    let r = result?;
    if a.json {
        return print_json(&r);
    }
    eprintln!(
        "predict: wrote {} segmentation(s) to {} in {:.1} s",
        r["cases"].as_array().map_or(0, |c| c.len()),
        a.output.display(),
        r["seconds"].as_f64().unwrap_or(0.0)
    );
    // Issue 14: NaN/inf input voxels are read as 0; say so, per case.
    for c in r["cases"].as_array().into_iter().flatten() {
        if let Some(n) = c["non_finite_voxels"].as_u64().filter(|&n| n > 0) {
            eprintln!(
                "predict: warning: case {}: {n} NaN/inf voxel(s) were read as 0",
                c["case"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// `pipeline export [RUN] -o BUNDLE.tar` (or `--format nnunet -o DIR`).
pub fn export(a: ExportArgs) -> Result<()> {
    let run = resolve_run_dir(a.run.as_deref())?;
    let model = crate::model::from_run(&run)?;
    if a.format == "nnunet" {
        let folders = crate::export_nnunet::export(&model, &a.output)
            .with_context(|| format!("exporting {} as nnU-Net model folder(s)", a.output.display()))?;
        for f in &folders {
            eprintln!("export: nnU-Net model folder {}", f.display());
        }
        eprintln!("export: {} (nnUNetv2_predict_from_modelfolder -m FOLDER reads it)", model.describe());
        return Ok(());
    }
    // The members and, for a cascade, the stages they build on.
    let mut needed: Vec<String> = model.members.clone();
    for m in &model.members {
        let mut cur = model.plans.configuration(m)?;
        while let Some(prev) = cur.previous_stage.clone() {
            if !needed.contains(&prev) {
                needed.push(prev.clone());
            }
            cur = model.plans.configuration(&prev)?;
        }
    }
    let configurations = model
        .configurations
        .iter()
        .filter(|c| needed.contains(&c.name))
        .map(|c| nnunet_infer::bundle::BundleConfiguration { name: c.name.clone(), folds: c.folds.clone() })
        .collect();
    let mut versions = BTreeMap::new();
    versions.insert("pipeline".to_string(), env!("CARGO_PKG_VERSION").to_string());
    versions.insert("tch".to_string(), "0.24.0".to_string());
    let mut info = model.info.clone();
    info["members"] = json!(model.members);
    let parts = nnunet_infer::bundle::BundleParts {
        plans_json: model.plans_json.clone(),
        dataset_json: model.dataset_json.clone(),
        configurations,
        postprocessing_json: model.postprocessing_json.clone(),
        versions,
        info,
    };
    if let Some(p) = a.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(p)?;
    }
    let m = nnunet_infer::bundle::export_bundle(&a.output, &parts)
        .with_context(|| format!("exporting {}", a.output.display()))?;
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "export: {} ({} files, {:.1} MB): {}",
        a.output.display(),
        m.files.len(),
        size as f64 / 1e6,
        model.describe()
    );
    Ok(())
}

/// The view folder of the first unit of `kind` in a run (of configuration `cfg` if given).
fn run_unit(run: &Path, kind: &str, cfg: Option<&str>) -> Result<Option<PathBuf>> {
    let run_json: serde_json::Value = engine::kinds::read_json(&run.join("run.json"))?;
    let units = run_json["units"].as_array().cloned().unwrap_or_default();
    Ok(units
        .iter()
        .filter(|u| u["kind"] == kind && u["view"].is_string())
        .find(|u| cfg.is_none_or(|c| u["coords"]["configuration"] == c))
        .map(|u| run.join(u["view"].as_str().unwrap_or_default())))
}

/// The plans of a run and the plan stage's folder.
fn run_plan(run: &Path) -> Result<(nnunet_prep::plans::Plans, PathBuf)> {
    let plan =
        run_unit(run, engine::kinds::PLAN, None)?.ok_or_else(|| anyhow!("run {} has no plan stage", run.display()))?;
    let plans: nnunet_prep::plans::Plans = engine::kinds::read_json(&plan.join("plans.json"))?;
    Ok((plans, plan))
}

/// The preprocessed store of a configuration in a run (`resample` stage output), the plans, and
/// the plan stage's folder.
fn run_store(run: &Path, cfg: &str) -> Result<(PathBuf, nnunet_prep::plans::Plans, PathBuf)> {
    let (plans, plan) = run_plan(run)?;
    let cfg_res = plans.configuration(cfg)?;
    let store = run_unit(run, engine::kinds::RESAMPLE, Some(cfg))?
        .ok_or_else(|| anyhow!("run {} has no resample output for {cfg}", run.display()))?
        .join(format!("{}.zarr", cfg_res.data_identifier));
    Ok((store, plans, plan))
}

/// `pipeline bench augment RUN`: single-threaded seconds per augmented batch.
pub fn bench_augment(run: &Path, cfg: &str, batches: usize, as_json: bool) -> Result<()> {
    let (store, plans, _) = run_store(run, cfg)?;
    let c = plans.configuration(cfg)?;
    let ids = nnunet_prep::store::open_dataset_store(&store)?;
    // As in training: cases decoded into memory on first use, within the default budget.
    let cache = nnunet_net::sampler::CaseCache::new(nnunet_net::sampler::DEFAULT_CASE_CACHE_BYTES);
    let cases = nnunet_net::sampler::open_store_cases(&store, &ids, Some(cache.clone())).map_err(|e| anyhow!("{e}"))?;
    // Steady state is what a training run sees: decode every case once before timing (reported).
    let t = std::time::Instant::now();
    for case in &cases {
        case.read_patch([0, 0, 0], [1, 1, 1]).map_err(|e| anyhow!("{e}"))?;
    }
    let decode_s = t.elapsed().as_secs_f64();
    let b = nnunet_net::bench::time_augmentation(cases, &c, None, batches, 0)?;
    let r = json!({"configuration": cfg, "batches": b.batches, "batch_size": b.batch_size, "data_shape": b.data_shape,
        "seconds_per_batch": b.seconds_per_batch, "voxels_per_second": b.voxels_per_second,
        "decode_seconds": decode_s, "decoded_bytes": cache.used_bytes()});
    if as_json {
        return print_json(&r);
    }
    println!(
        "augmentation {cfg}: batch {} of {:?}: {:.4} s/batch (1 thread), {:.1} Mvox/s; cases decoded once in {:.2} s ({} MB)",
        b.batch_size,
        b.data_shape,
        b.seconds_per_batch,
        b.voxels_per_second / 1e6,
        decode_s,
        cache.used_bytes() >> 20
    );
    Ok(())
}

/// `pipeline bench step RUN`: seconds per training step of the planned network.
pub fn bench_step(run: &Path, cfg: &str, bs: Option<usize>, steps: usize, as_json: bool) -> Result<()> {
    let (_store, plans, plan_dir) = run_store(run, cfg)?;
    let c = plans.configuration(cfg)?;
    let in_ch = c.normalization_schemes.len();
    let labels = engine::kinds::plan::read_labels(&plan_dir)?;
    let num_classes = nnunet_infer::predictor::LabelSpec::from_labels(&labels).num_outputs();
    let mut o = nnunet_net::trainer::TrainOptions::default();
    o.torch_threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    o.device = crate::device::parse_device("auto")?;
    let bs = bs.unwrap_or(c.batch_size);
    if bs == 0 {
        bail!("--batch-size must be positive");
    }
    let b = nnunet_net::bench::time_train_step(&c, in_ch, num_classes, bs, steps, &o)?;
    let r = json!({"configuration": cfg, "batch_size": b.batch_size, "parameters": b.parameters, "steps": b.steps,
        "seconds_per_step": b.seconds_per_step, "first_step_seconds": b.first_step_seconds,
        "device": crate::device::device_name(o.device), "threads": o.torch_threads});
    if as_json {
        return print_json(&r);
    }
    println!(
        "train step {cfg}: batch {}, {} parameters: {:.3} s/step on {} ({} threads)",
        b.batch_size,
        b.parameters,
        b.seconds_per_step,
        crate::device::device_name(o.device),
        o.torch_threads
    );
    Ok(())
}

/// `pipeline bench predict RUN`: seconds per raw case, without and/or with mirroring, with the
/// planned (uncapped) network and random weights; peak resident memory of the process.
///
/// Long (~120 lines): a benchmark script (set up, time each mode, print text or JSON) read top
/// to bottom; nothing in it is reused.
pub fn bench_predict(
    run: &Path,
    cfg: &str,
    images: Option<&Path>,
    n: usize,
    tta: &str,
    memory: Option<u64>,
    as_json: bool,
) -> Result<()> {
    let (plans, plan_dir) = run_plan(run)?;
    let c = plans.configuration(cfg)?;
    let run_json: serde_json::Value = engine::kinds::read_json(&run.join("run.json"))?;
    let dj: serde_json::Value = engine::kinds::read_json(&plan_dir.join("dataset.json"))?;
    let labels = engine::kinds::plan::read_labels(&plan_dir)?;
    let spec = nnunet_infer::predictor::LabelSpec::from_labels(&labels);
    let in_ch = c.normalization_schemes.len();
    let ending = dj["file_ending"].as_str().unwrap_or(".nii.gz").to_string();
    let mut cases = match images {
        Some(dir) => discover_cases(dir, &ending, in_ch)?,
        None => {
            let ds_path = run_json["dataset"].as_str().ok_or_else(|| anyhow!("run.json names no dataset"))?;
            let pipeline = run_json["pipeline"].as_str().map(PathBuf::from).unwrap_or_default();
            let base = pipeline.parent().map(Path::to_path_buf).unwrap_or_default();
            let ds = nnunet_io::dataset::open_dataset(&base.join(ds_path))?;
            if ds.test_cases.is_empty() {
                ds.cases.clone()
            } else {
                ds.test_cases.clone()
            }
        }
    };
    cases.truncate(n.max(1));
    let modes: Vec<bool> = match tta {
        "off" => vec![false],
        "on" => vec![true],
        _ => vec![false, true],
    };
    let device = crate::device::parse_device("auto")?;
    tch::set_num_threads(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i32);
    let vs = tch::nn::VarStore::new(device);
    let opts = nnunet_net::unet::NetOptions { deep_supervision: false, ..Default::default() };
    let net = nnunet_net::unet::build_network_seeded(
        &vs.root(),
        &c.architecture,
        in_ch as i64,
        spec.num_outputs() as i64,
        &opts,
        0,
    )
    .map_err(|e| anyhow!("{e}"))?;
    struct Held(tch::nn::VarStore, nnunet_net::unet::UNet);
    impl nnunet_infer::SegNetwork for Held {
        fn forward(&self, x: &tch::Tensor) -> tch::Tensor {
            let _ = &self.0;
            tch::nn::ModuleT::forward_t(&self.1, x, false)
        }
    }
    let mut sw = nnunet_infer::sliding_window::SlidingWindowOptions::default();
    sw.device = device;
    let nd = c.patch_size.len();
    let mut predictor = Predictor::new(
        vec![Box::new(Held(vs, net))],
        c.patch_size.clone(),
        in_ch,
        spec.num_outputs(),
        (0..nd).collect(),
        sw,
    )?;
    let wanted = nnunet_infer::sliding_window::recommended_tiles_per_batch(&c.patch_size);
    let batch = |case: &str, images: &nnunet_io::dataset::CaseImages| -> nnunet_infer::Result<Option<usize>> {
        let Some(budget) = memory else { return Ok(None) };
        let size = nnunet_infer::memory::case_size(images, &plans, &c, spec.num_outputs())?;
        let choice = nnunet_infer::memory::MemoryBudget(budget).choose_batch(
            case,
            &size,
            &c.architecture,
            &c.patch_size,
            wanted,
        )?;
        Ok(Some(choice.tiles_per_batch))
    };
    let tmp = tempfile::tempdir()?;
    let b = nnunet_infer::bench::bench_predict(
        &mut predictor,
        &cases,
        &plans,
        &c,
        &spec,
        tmp.path(),
        &modes,
        &batch,
        &|_, _| {},
    )?;
    let peak = nnunet_infer::memory::peak_rss_bytes();
    let parts: Vec<serde_json::Value> = b
        .per_case
        .iter()
        .map(|(id, tta, t, s)| {
            json!({"case": id, "tta": tta, "seconds": s, "preprocess_s": t.preprocess_s, "predict_s": t.predict_s,
                "export_s": t.export_s})
        })
        .collect();
    let r = json!({"configuration": cfg, "cases": b.cases, "seconds_per_case_no_mirroring": b.seconds_per_case_no_mirroring,
        "seconds_per_case_mirroring": b.seconds_per_case_mirroring, "device": crate::device::device_name(device),
        "peak_rss_bytes": peak, "memory_budget_bytes": memory, "per_case": parts});
    if as_json {
        return print_json(&r);
    }
    let f = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.3} s/case"));
    println!(
        "predict {cfg}: {} case(s): {} without mirroring, {} with; peak RSS {}",
        b.cases,
        f(b.seconds_per_case_no_mirroring),
        f(b.seconds_per_case_mirroring),
        peak.map_or("-".into(), nnunet_infer::memory::fmt_bytes)
    );
    Ok(())
}

/// `pipeline device`: the CUDA backend as this binary sees it (what a GPU machine's check runs).
pub fn device(as_json: bool) -> Result<()> {
    let backend = crate::device::load_cuda_backend();
    let v = serde_json::json!({
        "cuda_backend_loaded": backend.is_ok(),
        "cuda_backend_error": backend.err(),
        "cuda_registered": tch::utils::has_cudart(),
        "cuda_available": tch::Cuda::is_available(),
        "cuda_device_count": tch::Cuda::device_count(),
        "cudnn_available": tch::Cuda::cudnn_is_available(),
        "auto": crate::device::device_name(crate::device::parse_device("auto")?),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (k, val) in v.as_object().into_iter().flatten() {
            println!("{k}: {val}");
        }
    }
    Ok(())
}

//! Runs nnU-Net's self-configuration on a raw dataset without the engine:
//! fingerprint → plan → normalize → resample (2d and 3d_fullres by default), writing
//! `dataset_fingerprint.json`, `nnUNetPlans.json`, `dataset.json` and one case store per
//! configuration (`OUT/<data_identifier>/<case>/`, Zarr v3), like `nnUNetv2_plan_and_preprocess`.
//!
//! ```text
//! cargo run -p nnunet-prep --release --example preprocess_dataset -- RAW_DIR OUT_DIR \
//!     [--configs 2d,3d_fullres] [--seed 1234] [--seg-mode argmax|threshold] [--planner default]
//!     [--target-spacing Z,Y,X] [--plans-name NAME]
//! ```

use nnunet_io::dataset::open_dataset;
use nnunet_prep::class_locations::ClassSpec;
use nnunet_prep::fingerprint::{aggregate, CaseFingerprint};
use nnunet_prep::planner::{plan_experiment, DatasetInfo, PlannerKind, PlannerOptions};
use nnunet_prep::preprocess::{normalize_case, resample_case_with, ResampleCaseOptions};
use nnunet_prep::resample::SegResampleMode;
use nnunet_prep::store::{create_dataset_store, write_preprocessed};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let mut configs = vec!["2d".to_string(), "3d_fullres".to_string()];
    let mut seed = 1234u64;
    let mut seg_mode = SegResampleMode::default();
    let mut planner = PlannerKind::Default;
    let mut target_spacing: Option<[f64; 3]> = None;
    let mut plans_name: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let val = |i: usize| args.get(i + 1).cloned().ok_or_else(|| format!("{} needs a value", args[i]));
        match args[i].as_str() {
            "--configs" => configs = val(i)?.split(',').map(|s| s.to_string()).collect(),
            "--seed" => seed = val(i)?.parse()?,
            "--seg-mode" => {
                seg_mode = match val(i)?.as_str() {
                    "threshold" => SegResampleMode::Threshold,
                    "argmax" => SegResampleMode::ArgmaxNearest,
                    o => return Err(format!("unknown --seg-mode {o}").into()),
                }
            }
            "--planner" => planner = PlannerKind::parse(&val(i)?).ok_or("unknown --planner")?,
            "--plans-name" => plans_name = Some(val(i)?),
            "--target-spacing" => {
                let v: Vec<f64> = val(i)?.split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
                let [a, b, c] = v.as_slice() else { return Err("--target-spacing needs Z,Y,X".into()) };
                target_spacing = Some([*a, *b, *c]);
            }
            a => {
                pos.push(a.to_string());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let [raw, out] = pos.as_slice() else {
        return Err("usage: preprocess_dataset RAW_DIR OUT_DIR [--configs 2d,3d_fullres] [--seed N] [--seg-mode argmax|threshold] [--planner NAME]".into());
    };
    let (raw, out) = (PathBuf::from(raw), PathBuf::from(out));
    std::fs::create_dir_all(&out)?;
    let t0 = Instant::now();
    let ds = open_dataset(&raw)?;
    eprintln!("{}: {} training cases, channels {:?}", ds.name, ds.cases.len(), ds.channel_names);

    // 1. Fingerprint, per case in parallel.
    let fps: Vec<CaseFingerprint> = ds
        .cases
        .par_iter()
        .map(|c| -> Res<CaseFingerprint> {
            let img = c.read_images()?;
            let (lab, _) = c.read_label()?;
            Ok(CaseFingerprint::compute(&img.channels, &lab, img.spacing).map_err(|e| format!("case {}: {e}", c.id))?)
        })
        .collect::<Res<Vec<_>>>()?;
    let fp = aggregate(&fps, seed)?;
    std::fs::write(out.join("dataset_fingerprint.json"), serde_json::to_string_pretty(&fp)?)?;
    let t_fp = t0.elapsed().as_secs_f64();

    // 2. Plan.
    let info = DatasetInfo {
        name: ds.name.clone(),
        channel_names: ds.channel_names.clone(),
        num_labels_in_json: ds.labels.num_labels_in_json(),
        num_training: ds.num_training_declared,
    };
    let opts = PlannerOptions {
        configurations: configs.clone(),
        target_spacing_override: target_spacing,
        plans_name,
        ..PlannerOptions::for_planner(planner)
    };
    let plans = plan_experiment(&fp, &info, &opts)?;
    std::fs::write(out.join(format!("{}.json", plans.plans_name)), serde_json::to_string_pretty(&plans)?)?;
    std::fs::write(out.join("dataset.json"), serde_json::to_string_pretty(&ds.to_v2_dataset_json())?)?;
    let t_plan = t0.elapsed().as_secs_f64();

    // 3./4. Normalize once per case, resample per configuration.
    let labels = &ds.labels;
    let to16 = |v: Vec<i32>| v.into_iter().map(|l| l as i16).collect::<Vec<i16>>();
    let regions: Option<Vec<Vec<i16>>> =
        labels.has_regions().then(|| labels.foreground_regions().into_iter().map(to16).collect());
    let classes =
        ClassSpec::from_labels(&to16(labels.all_labels()), regions.as_deref(), labels.ignore.map(|i| i as i16));
    let rs_opts = ResampleCaseOptions { classes, seg_mode };
    let resolved: Vec<_> = plans
        .configurations
        .keys()
        .filter(|k| configs.contains(k))
        .map(|k| plans.configuration(k))
        .collect::<Result<_, _>>()?;
    for c in &resolved {
        create_dataset_store(
            &out.join(&c.data_identifier),
            serde_json::json!({"configuration": c.name, "plans_name": plans.plans_name}),
        )?;
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    ds.cases.par_iter().try_for_each(|case| -> Res<()> {
        let img = case.read_images()?;
        let (lab, _) = case.read_label()?;
        let n = normalize_case(img.channels, Some(lab), img.spacing, &plans)
            .map_err(|e| format!("case {}: {e}", case.id))?;
        for c in &resolved {
            let p = resample_case_with(&n, c, &plans, &rs_opts, seed).map_err(|e| format!("case {}: {e}", case.id))?;
            write_preprocessed(&out.join(&c.data_identifier).join(&case.id), &p, &c.patch_size)?;
        }
        let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if k.is_multiple_of(50) || k == ds.cases.len() {
            eprintln!("preprocessed {k}/{}", ds.cases.len());
        }
        Ok(())
    })?;
    let t_all = t0.elapsed().as_secs_f64();
    eprintln!(
        "fingerprint {t_fp:.2}s, plan {:.3}s, preprocess {:.2}s, total {t_all:.2}s",
        t_plan - t_fp,
        t_all - t_plan
    );
    for c in &resolved {
        eprintln!("{}: patch {:?}, batch {}, spacing {:?}", c.name, c.patch_size, c.batch_size, c.spacing);
    }
    Ok(())
}

//! `predict`: segments a folder of the dataset (`imagesTs` by default) with the chosen
//! configuration(s), all trained folds and the post-processing decision (§9, §10). The
//! declaration and input discovery live here; the libtorch body is `pipeline-torch`'s `predict.rs`.

use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::kind::{value_str, ExecEnv, Reads, Resources, RunCtx, StageKind, UnitView};
use crate::params::{ParamSpec, ParamType, STR};
use nnunet_io::dataset::{Case, Dataset, ImageRef};

pub struct Predict;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "images",
        ty: STR,
        default: "\"imagesTs\"",
        changes_output: true,
        help: "folder of images to segment, relative to the dataset root",
    },
    ParamSpec {
        name: "tta",
        ty: ParamType::Bool,
        default: "true",
        changes_output: true,
        help: "mirroring test-time augmentation",
    },
    ParamSpec {
        name: "save_probabilities",
        ty: ParamType::Bool,
        default: "false",
        changes_output: true,
        help: "also write CASE.probs.zarr",
    },
];

/// A folder named in a param, checked to stay inside the dataset folder.
pub fn dataset_subdir(ds: &Dataset, rel: &str, what: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        bail!("{what} '{rel}' must be a folder inside the dataset {}", ds.root.display());
    }
    Ok(ds.root.join(p))
}

pub fn input_cases(ds: &Dataset, images: &str) -> Result<Vec<Case>> {
    if images == "imagesTs" {
        return Ok(ds.test_cases.iter().map(|c| Case { label: None, ..c.clone() }).collect());
    }
    let dir = dataset_subdir(ds, images, "images")?;
    discover_cases(&dir, &ds.file_ending, ds.channel_names.len())
}

impl StageKind for Predict {
    fn name(&self) -> &'static str {
        super::PREDICT
    }
    fn version(&self) -> u32 {
        // 2: outputs in the input's format; NaN/inf read as 0 and counted in prediction.json
        2
    }
    fn about(&self) -> &'static str {
        "segment new images with the chosen model, all folds, post-processing (§9)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn requires(&self) -> &'static [&'static str] {
        &[super::POSTPROCESS, super::ENSEMBLE_SELECT, super::TRAIN_FOLD, super::PLAN]
    }
    fn reads(&self, kind: &str, _unit: &UnitView) -> Reads {
        match kind {
            super::PLAN => Reads::Files(vec!["plans.json".into(), "dataset.json".into()]),
            super::POSTPROCESS => Reads::Files(vec!["postprocessing.json".into()]),
            super::ENSEMBLE_SELECT => Reads::Files(vec!["chosen.json".into()]),
            _ => Reads::All,
        }
    }
    fn raw_inputs(&self, unit: &UnitView, ds: &Dataset) -> Vec<PathBuf> {
        let images = unit.params.get("images").map(value_str).unwrap_or_else(|| "imagesTs".into());
        input_cases(ds, &images).map(|cs| cs.iter().flat_map(|c| c.files()).collect()).unwrap_or_default()
    }
    fn resources(&self, _unit: &UnitView, env: &ExecEnv) -> Resources {
        Resources { cpus: env.cpus.max(1), gpu: crate::torch::may_use_gpu(&env.device) }
    }
    fn torch(&self) -> bool {
        true
    }
    fn run(&self, ctx: &RunCtx) -> Result<()> {
        crate::torch::run_unit(self.name(), ctx)
    }
}

/// Finds the cases of an input folder: nnU-Net naming (`CASE_0000.nii.gz`, one file per
/// channel) or one file per case (a 3D file for one channel, a 4D file for several). A single
/// file is one case.
pub fn discover_cases(input: &Path, file_ending: &str, num_channels: usize) -> Result<Vec<Case>> {
    // Pictures may hold several channels in one file (RGB): then a case's channel files are
    // the ones present and their channels are counted when read.
    let multi =
        nnunet_io::image::ImageFormat::from_ending(file_ending).is_some_and(nnunet_io::dataset::multi_channel_files);
    let single = |p: &Path| -> Result<Case> {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stem = name
            .strip_suffix(file_ending)
            .or_else(|| nnunet_io::image::file_ending_of(p).and_then(|e| name.get(..name.len() - e.len())));
        let stem = stem.ok_or_else(|| anyhow!("{}: not a {file_ending} file", p.display()))?;
        // A file named like channel 0 of nnU-Net's naming stands for its case.
        let id = match stem.rsplit_once('_') {
            Some((id, ch))
                if ch.len() == 4 && ch.chars().all(|c| c.is_ascii_digit()) && (num_channels == 1 || multi) =>
            {
                id
            }
            _ => stem,
        };
        let images = if num_channels == 1 || multi {
            vec![ImageRef { path: p.to_path_buf(), channel_in_file: None }]
        } else {
            (0..num_channels).map(|c| ImageRef { path: p.to_path_buf(), channel_in_file: Some(c) }).collect()
        };
        Ok(Case { id: id.to_string(), images, label: None })
    };
    if input.is_file() {
        return Ok(vec![single(input)?]);
    }
    if !input.is_dir() {
        bail!("input {} does not exist", input.display());
    }
    let files = crate::kinds::list_files(input, file_ending);
    let mut by_case: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    let mut plain = Vec::new();
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stem = &name[..name.len() - file_ending.len()];
        match stem.rsplit_once('_') {
            Some((id, ch)) if ch.len() == 4 && ch.chars().all(|c| c.is_ascii_digit()) => {
                by_case.entry(id.to_string()).or_default().insert(ch.parse().unwrap_or(0), f.clone());
            }
            _ => plain.push(f.clone()),
        }
    }
    let mut cases = Vec::new();
    for (id, chans) in by_case {
        if multi {
            let images = chans.values().map(|p| ImageRef { path: p.clone(), channel_in_file: None }).collect();
            cases.push(Case { id, images, label: None });
            continue;
        }
        let mut images = Vec::new();
        for c in 0..num_channels {
            let p = chans.get(&c).ok_or_else(|| {
                anyhow!("case {id}: channel {c} is missing ({}/{id}_{c:04}{file_ending}); the model needs {num_channels} channel(s)", input.display())
            })?;
            images.push(ImageRef { path: p.clone(), channel_in_file: None });
        }
        if let Some(extra) = chans.keys().find(|&&c| c >= num_channels) {
            bail!("case {id}: channel {extra} is present but the model takes {num_channels} channel(s)");
        }
        cases.push(Case { id, images, label: None });
    }
    for p in plain {
        cases.push(single(&p)?);
    }
    if cases.is_empty() {
        bail!("no {file_ending} images in {}", input.display());
    }
    Ok(cases)
}

//! A trained model: the plans, the dataset description, the chosen configuration(s) with their
//! fold checkpoints and the post-processing decision — assembled by the caller from a run's
//! artifacts or from an exported bundle — and the loop that segments new images with it
//! (nnU-Net's `nnUNetv2_predict` + `nnUNetv2_ensemble` + `nnUNetv2_apply_postprocessing`).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bundle::LoadedBundle;
use crate::error::{io_err, InferError, Result};
use crate::export::write_segmentation;
use crate::predictor::{CaseOptions, LabelSpec, Predictor};
use nnunet_eval::postprocess::{apply_postprocessing, PostprocessingDecision};
use nnunet_eval::segmentation::SegmentationMode;
use nnunet_io::dataset::Case;
use nnunet_io::labels::Labels;
use nnunet_prep::plans::Plans;

fn invalid(msg: impl Into<String>) -> InferError {
    InferError::Invalid(msg.into())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// One trained configuration: its fold checkpoints, `(fold, folder or .pth file)`.
#[derive(Clone, Debug)]
pub struct ModelConfiguration {
    pub name: String,
    pub folds: Vec<(String, PathBuf)>,
    /// Plans of its own (an nnU-Net model folder among others) and the configuration's name
    /// in them; `None`: the model's plans, configuration `name`.
    pub source: Option<Box<ConfigurationSource>>,
}

/// Where a member's configuration is defined when it is not the model's plans.
#[derive(Clone, Debug)]
pub struct ConfigurationSource {
    pub plans: Plans,
    pub configuration: String,
}

impl ModelConfiguration {
    /// A configuration of the model's plans.
    pub fn new(name: impl Into<String>, folds: Vec<(String, PathBuf)>) -> ModelConfiguration {
        ModelConfiguration { name: name.into(), folds, source: None }
    }
}

/// Everything needed to segment new images.
#[derive(Clone, Debug)]
pub struct Model {
    pub plans_json: PathBuf,
    pub dataset_json: PathBuf,
    pub postprocessing_json: Option<PathBuf>,
    pub plans: Plans,
    pub labels: Labels,
    pub file_ending: String,
    pub num_channels: usize,
    /// The chosen configuration(s): one, or two for an ensemble.
    pub members: Vec<String>,
    /// Every configuration available (members and, for a cascade, its previous stage).
    pub configurations: Vec<ModelConfiguration>,
    pub postprocessing: Option<PostprocessingDecision>,
    /// Free-form description (the selection result).
    pub info: Value,
}

impl Model {
    /// Reads plans, labels and the post-processing decision and checks the members exist.
    pub fn new(
        plans_json: PathBuf,
        dataset_json: PathBuf,
        postprocessing_json: Option<PathBuf>,
        members: Vec<String>,
        configurations: Vec<ModelConfiguration>,
        info: Value,
    ) -> Result<Model> {
        let plans: Plans = read_json(&plans_json)?;
        let dj: Value = read_json(&dataset_json)?;
        let labels = Labels::from_v2_json(&dj["labels"], dj.get("regions_class_order").filter(|r| !r.is_null()))
            .map_err(|e| invalid(format!("{}: {e}", dataset_json.display())))?;
        let file_ending = dj.get("file_ending").and_then(|v| v.as_str()).unwrap_or(".nii.gz").to_string();
        // The ending names every output file (`CASE{file_ending}`): only the supported image
        // endings, never a path (a hostile bundle's "/../x" would write elsewhere).
        let reader = dj.get("overwrite_image_reader_writer").and_then(|v| v.as_str());
        nnunet_io::image::check_reader(&file_ending, reader)
            .map_err(|e| invalid(format!("{}: {e}", dataset_json.display())))?;
        let num_channels = dj
            .get("channel_names")
            .or_else(|| dj.get("modality"))
            .and_then(|v| v.as_object())
            .map(|o| o.len())
            .ok_or_else(|| invalid(format!("{}: no channel_names", dataset_json.display())))?;
        let postprocessing = match &postprocessing_json {
            Some(p) => Some(PostprocessingDecision::read(p)?),
            None => None,
        };
        if members.is_empty() || members.len() > 2 {
            return Err(invalid(format!("a model has one configuration or a pair ensemble, not {}", members.len())));
        }
        let model = Model {
            plans_json,
            dataset_json,
            postprocessing_json,
            plans,
            labels,
            file_ending,
            num_channels,
            members,
            configurations,
            postprocessing,
            info,
        };
        for m in &model.members {
            let c = model
                .configurations
                .iter()
                .find(|c| &c.name == m)
                .ok_or_else(|| invalid(format!("the chosen configuration {m} has no trained folds")))?;
            if c.folds.is_empty() {
                return Err(invalid(format!("the chosen configuration {m} has no trained folds")));
            }
            model.resolve(m).map_err(|e| invalid(format!("configuration {m} of the model: {e}")))?;
        }
        Ok(model)
    }

    /// The plans and resolved configuration of a configuration of the model.
    pub fn resolve(&self, name: &str) -> Result<(&Plans, nnunet_prep::plans::ResolvedConfiguration)> {
        match self.configurations.iter().find(|c| c.name == name).and_then(|c| c.source.as_deref()) {
            Some(src) => Ok((&src.plans, src.plans.configuration(&src.configuration)?)),
            None => Ok((&self.plans, self.plans.configuration(name)?)),
        }
    }

    /// The model of an extracted bundle.
    pub fn from_bundle(b: &LoadedBundle) -> Result<Model> {
        let configurations: Vec<ModelConfiguration> = b
            .manifest
            .configurations
            .iter()
            .map(|c| ModelConfiguration {
                name: c.name.clone(),
                folds: c.folds.iter().map(|f| (f.clone(), b.root.join(crate::bundle::fold_path(&c.name, f)))).collect(),
                source: None,
            })
            .collect();
        let members: Vec<String> = b.manifest.info["members"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m.as_str().map(String::from)).collect())
            .unwrap_or_else(|| configurations.iter().map(|c| c.name.clone()).collect());
        Model::new(
            b.plans_json(),
            b.dataset_json(),
            b.postprocessing_json(),
            members,
            configurations,
            b.manifest.info.clone(),
        )
    }

    /// Keeps only the given folds (`pipeline predict --folds`).
    pub fn restrict_folds(&mut self, folds: &[String]) -> Result<()> {
        if folds.is_empty() {
            return Ok(());
        }
        for c in &mut self.configurations {
            let have: Vec<String> = c.folds.iter().map(|f| f.0.clone()).collect();
            for f in folds {
                if !have.contains(f) {
                    return Err(invalid(format!(
                        "fold {f} of {} is not in the model (it has {})",
                        c.name,
                        have.join(", ")
                    )));
                }
            }
            c.folds.retain(|(f, _)| folds.contains(f));
        }
        Ok(())
    }

    fn folds_of(&self, cfg: &str) -> Result<Vec<PathBuf>> {
        self.configurations
            .iter()
            .find(|c| c.name == cfg)
            .map(|c| c.folds.iter().map(|f| f.1.clone()).collect())
            .ok_or_else(|| invalid(format!("configuration {cfg} is not in the model")))
    }

    /// The configurations to predict, in order: a cascade's previous stage before it.
    fn prediction_order(&self) -> Result<Vec<String>> {
        let mut order: Vec<String> = Vec::new();
        for m in &self.members {
            let mut chain = vec![m.clone()];
            let mut cur = self.resolve(m)?.1;
            while let Some(prev) = cur.previous_stage.clone() {
                if chain.contains(&prev) || chain.len() > 8 {
                    return Err(invalid(format!("configuration {m}: previous_stage cycle")));
                }
                chain.push(prev.clone());
                cur = self.resolve(&prev)?.1;
            }
            for c in chain.into_iter().rev() {
                if !order.contains(&c) {
                    order.push(c);
                }
            }
        }
        Ok(order)
    }

    /// A short description for logs and reports.
    pub fn describe(&self) -> String {
        let folds: Vec<String> = self
            .configurations
            .iter()
            .filter(|c| self.members.contains(&c.name))
            .map(|c| {
                format!("{} (folds {})", c.name, c.folds.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(","))
            })
            .collect();
        let pp = match &self.postprocessing {
            Some(d) if !d.steps.is_empty() => format!("{} post-processing step(s)", d.steps.len()),
            _ => "no post-processing".into(),
        };
        format!("{}; {pp}", folds.join(" + "))
    }
}

/// Switches of [`predict_cases`].
#[derive(Clone, Debug)]
pub struct PredictOptions {
    pub tta: bool,
    pub device: tch::Device,
    pub save_probabilities: bool,
    pub postprocessing: bool,
    /// Resident-memory budget of the process in bytes (`--memory`): the sliding-window batch is
    /// chosen to fit and a case that cannot fit is refused before any work.
    pub memory: Option<u64>,
    /// Sliding-window step as a fraction of the patch (nnU-Net's `-step_size`, 0.5).
    pub tile_step_size: f64,
    /// Accumulate in f16 like nnU-Net (parity checks) instead of f32.
    pub fp16_accumulation: bool,
}

/// Seconds spent on one case, and the NaN/inf input voxels that were read as 0.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaseTiming {
    pub case: String,
    pub seconds: f64,
    pub non_finite_voxels: usize,
}

/// Segments `cases` with `model` into `out` (`CASE{file_ending}`, the input image's format and
/// geometry; with `save_probabilities` also `CASE.probs.zarr`). Cases are written atomically,
/// one by one.
///
/// Long (~140 lines): the per-case sequence (memory budget, cascade order, members, pair average,
/// post-processing, writes) reads as nnU-Net's `predict_from_files`; being reworked with the
/// predictor, so not split here.
pub fn predict_cases(
    model: &Model,
    cases: &[Case],
    out: &Path,
    opts: &PredictOptions,
    progress: &dyn Fn(u64, u64, &str),
    cancel: &dyn Fn() -> bool,
) -> Result<Vec<CaseTiming>> {
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let spec = LabelSpec::from_labels(&model.labels);
    let order = model.prediction_order()?;
    let mut predictors: BTreeMap<String, Predictor> = BTreeMap::new();
    let mut wanted_batch: BTreeMap<String, usize> = BTreeMap::new();
    for cfg_name in &order {
        let (_, cfg) = model.resolve(cfg_name)?;
        let mut sw = crate::sliding_window::SlidingWindowOptions::default();
        sw.device = opts.device;
        sw.tile_step_size = opts.tile_step_size;
        if opts.fp16_accumulation {
            // nnU-Net's arithmetic, for parity checks: its accumulators and its layout.
            sw.accumulation = crate::sliding_window::Accumulation::F16;
            nnunet_net::blocks::set_inference_channels_last(false);
        }
        let p = Predictor::from_checkpoints(&model.folds_of(cfg_name)?, &cfg, sw, &crate::network::load_checkpoint)
            .map_err(|e| invalid(format!("loading {cfg_name}: {e}")))?;
        let wanted = match p.options.tiles_per_batch {
            0 => crate::sliding_window::recommended_tiles_per_batch(&p.patch_size),
            n => n,
        };
        wanted_batch.insert(cfg_name.clone(), wanted);
        predictors.insert(cfg_name.clone(), p);
    }
    let ensemble = model.members.len() > 1;
    let mut timings = Vec::new();
    let n = cases.len() as u64;
    for (i, case) in cases.iter().enumerate() {
        if cancel() {
            return Err(invalid("cancelled"));
        }
        progress(i as u64, n, &case.id);
        let t0 = std::time::Instant::now();
        let images = case.read_images().map_err(|e| invalid(e.to_string()))?;
        if images.channels.len() != model.num_channels {
            return Err(invalid(format!(
                "case {}: {} channel(s), the model takes {}",
                case.id,
                images.channels.len(),
                model.num_channels
            )));
        }
        let header = images.header.clone();
        let non_finite = images.non_finite;
        // The last configuration consumes the images; earlier ones (a cascade's previous stage,
        // the first member of an ensemble) work on a copy.
        let mut images = Some(images);
        let mut segs: BTreeMap<String, nnunet_io::Volume<i16>> = BTreeMap::new();
        let mut probs = Vec::new();
        for (idx, cfg_name) in order.iter().enumerate() {
            let (plans, cfg) = model.resolve(cfg_name)?;
            let prev = cfg
                .previous_stage
                .as_ref()
                .map(|p| segs.get(p).ok_or_else(|| invalid(format!("{p} was not predicted"))))
                .transpose()?;
            let member = model.members.contains(cfg_name);
            let copts = CaseOptions {
                tta: opts.tta,
                save_probabilities: member && (ensemble || opts.save_probabilities),
                postprocessing: None,
            };
            let predictor = predictors.get_mut(cfg_name).ok_or_else(|| invalid(format!("{cfg_name} is not loaded")))?;
            if let Some(budget) = opts.memory {
                let images = images.as_ref().ok_or_else(|| invalid("the images were consumed"))?;
                let size = crate::memory::case_size(images, plans, &cfg, predictor.num_outputs)?;
                let choice = crate::memory::MemoryBudget(budget).choose_batch(
                    &case.id,
                    &size,
                    &cfg.architecture,
                    &cfg.patch_size,
                    wanted_batch[cfg_name],
                )?;
                predictor.options.tiles_per_batch = choice.tiles_per_batch;
            }
            let imgs = if idx + 1 == order.len() {
                images.take().ok_or_else(|| invalid("the images were consumed"))?
            } else {
                images.clone().ok_or_else(|| invalid("the images were consumed"))?
            };
            let p = predictor
                .predict_case(imgs, plans, &cfg, &spec, prev, &copts)
                .map_err(|e| invalid(format!("predicting case {} with {cfg_name}: {e}", case.id)))?;
            if member {
                if let Some(pr) = p.probabilities {
                    probs.push(pr);
                }
            }
            segs.insert(cfg_name.clone(), p.segmentation);
        }
        if segs.is_empty() {
            return Err(invalid("nothing was predicted"));
        }
        let (mut seg, probabilities) = if ensemble {
            let (a, b) = (&probs[0], &probs[1]);
            if a.shape != b.shape || a.num_channels != b.num_channels {
                return Err(invalid(format!("case {}: the ensemble members' probabilities differ in shape", case.id)));
            }
            let (avg, seg) = nnunet_eval::ensemble::ensemble_segmentation(
                &[&a.data, &b.data],
                a.num_channels,
                a.shape,
                &SegmentationMode::of_labels(&model.labels),
            )?;
            (seg, Some(crate::export::Logits::new(a.num_channels, a.shape, avg)?))
        } else {
            (segs.remove(&model.members[0]).ok_or_else(|| invalid("no segmentation"))?, probs.pop())
        };
        if opts.postprocessing {
            if let Some(pp) = &model.postprocessing {
                seg = apply_postprocessing(&seg, pp);
            }
        }
        // Atomic (temporary file + rename per file, data file before header).
        let name = format!("{}{}", case.id, model.file_ending);
        // The image writers are atomic themselves, every file of the image included (the
        // `.raw`/`.nrrd` data file of `.mhd`/`.nhdr`, a TIFF stack's sidecar), which are named
        // after the final path: no temporary name here.
        write_segmentation(&out.join(&name), &seg, &header, spec.foreground_labels.len())?;
        if opts.save_probabilities {
            if let Some(p) = &probabilities {
                let dir = out.join(format!("{}{}", case.id, nnunet_eval::folder::PROBS_SUFFIX));
                let _ = std::fs::remove_dir_all(&dir);
                crate::export::write_probabilities(&dir, p, json!({"case": case.id}))?;
            }
        }
        timings.push(CaseTiming {
            case: case.id.clone(),
            seconds: t0.elapsed().as_secs_f64(),
            non_finite_voxels: non_finite,
        });
    }
    progress(n, n, "done");
    Ok(timings)
}

//! The predictor (reference §9.1): one network per fold, fold ensembling by averaging logits,
//! preprocessing identical to training, sliding window, export to the original geometry.
//! Cascade stages (§9.5) take the previous stage's segmentation as extra one-hot channels.

use crate::error::{InferError, Result};
use crate::export::{export_prediction, export_segmentation, Exported, Logits, Probabilities};
use crate::host::HostTensor;
use crate::network::{CheckpointInfo, NetworkLoader, SegNetwork};
use crate::sliding_window::{predict_sliding_window_logits, SlidingWindowOptions};
use nnunet_eval::postprocess::{apply_postprocessing, PostprocessingDecision};
use nnunet_eval::segmentation::SegmentationMode;
use nnunet_io::dataset::CaseImages;
use nnunet_io::image::ImageHeader;
use nnunet_io::labels::Labels;
use nnunet_io::volume::numel;
use nnunet_io::Volume;
use nnunet_prep::plans::{Plans, ResolvedConfiguration};
use nnunet_prep::preprocess::{normalize_case, target_spacing, CaseProperties};
use nnunet_prep::resample::{compute_new_shape, resample_data, resample_seg, SegResampleMode};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

/// How network outputs become labels, and which labels the cascade one-hot encodes.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelSpec {
    pub mode: SegmentationMode,
    /// Foreground labels, sorted (cascade one-hot channels, uint8/uint16 output choice).
    pub foreground_labels: Vec<i32>,
}

impl LabelSpec {
    /// From a dataset's labels (`LabelManager`): regions when any label is a list of > 1 values.
    pub fn from_labels(l: &Labels) -> LabelSpec {
        let mode = if l.has_regions() {
            SegmentationMode::Regions { regions_class_order: l.regions_class_order.clone().unwrap_or_default() }
        } else {
            SegmentationMode::Labels
        };
        LabelSpec { mode, foreground_labels: l.foreground_labels() }
    }

    /// Plain labels `0..=n`.
    pub fn plain(num_foreground: usize) -> LabelSpec {
        LabelSpec { mode: SegmentationMode::Labels, foreground_labels: (1..=num_foreground as i32).collect() }
    }

    /// Network output channels this spec expects.
    pub fn num_outputs(&self) -> usize {
        match &self.mode {
            SegmentationMode::Labels => self.foreground_labels.len() + 1,
            SegmentationMode::Regions { regions_class_order } => regions_class_order.len(),
        }
    }
}

/// Per-case switches of [`Predictor::predict_raw_case`].
#[derive(Clone, Debug, Default)]
pub struct CaseOptions {
    /// Test-time mirroring.
    pub tta: bool,
    pub save_probabilities: bool,
    /// Applied to the exported segmentation.
    pub postprocessing: Option<PostprocessingDecision>,
}

/// Wall-clock seconds of the parts of one case.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CaseTimings {
    pub preprocess_s: f64,
    pub predict_s: f64,
    pub export_s: f64,
}

/// The result of [`Predictor::predict_raw_case`]: on the original voxel grid.
#[derive(Clone, Debug)]
pub struct CasePrediction {
    pub segmentation: Volume<i16>,
    pub probabilities: Option<Probabilities>,
    /// The input image's header (write outputs in its format and geometry).
    pub header: ImageHeader,
    pub properties: CaseProperties,
    pub timings: CaseTimings,
}

/// Preprocesses a raw case for inference exactly as for training (§4.1, §9.1): transpose, crop,
/// normalise, resample (data order 3); for a cascade stage the previous segmentation is cropped
/// and resampled like a label and appended one-hot over `foreground_labels`.
pub fn preprocess_for_inference(
    images: &CaseImages,
    plans: &Plans,
    config: &ResolvedConfiguration,
    prev_stage: Option<&Volume<i16>>,
    foreground_labels: &[i32],
) -> Result<(Vec<Volume<f32>>, CaseProperties)> {
    preprocess_channels(images.channels.clone(), images.spacing, plans, config, prev_stage, foreground_labels)
}

/// [`preprocess_for_inference`] on owned channels (reader axis order, spacing `[z, y, x]`):
/// the raw image is consumed, not copied.
pub fn preprocess_channels(
    channels: Vec<Volume<f32>>,
    spacing: [f64; 3],
    plans: &Plans,
    config: &ResolvedConfiguration,
    prev_stage: Option<&Volume<i16>>,
    foreground_labels: &[i32],
) -> Result<(Vec<Volume<f32>>, CaseProperties)> {
    let first = channels.first().ok_or_else(|| InferError::Invalid("case has no image channels".into()))?;
    if let Some(p) = prev_stage {
        if p.shape != first.shape {
            return Err(InferError::Invalid(format!(
                "previous stage segmentation has shape {:?}, the image {:?}",
                p.shape, first.shape
            )));
        }
    }
    let n = normalize_case(channels, prev_stage.cloned(), spacing, plans)?;
    crate::memory::trace_rss("normalized");
    let current = n.properties.spacing_transposed;
    let target = target_spacing(config, current)?;
    let new_shape = compute_new_shape(n.properties.shape_after_cropping_and_before_resampling, current, target);
    if numel(new_shape) == 0 {
        return Err(InferError::Invalid(format!("resampling to {target:?} gives the empty shape {new_shape:?}")));
    }
    let mut data = resample_data(&n.data, new_shape, current, target, &config.resampling_data)?;
    if prev_stage.is_some() {
        let seg = resample_seg(&n.seg, new_shape, current, target, &config.resampling_seg, SegResampleMode::default())?;
        for &l in foreground_labels {
            data.push(seg.map(|v| if v as i32 == l { 1.0f32 } else { 0.0 }));
        }
    }
    Ok((data, n.properties))
}

/// One network per fold plus the sliding-window settings.
pub struct Predictor {
    networks: Vec<Box<dyn SegNetwork>>,
    pub patch_size: Vec<usize>,
    pub in_channels: usize,
    pub num_outputs: usize,
    /// Axes mirrored when test-time augmentation is on.
    pub mirror_axes: Vec<usize>,
    pub options: SlidingWindowOptions,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("folds", &self.networks.len())
            .field("patch_size", &self.patch_size)
            .field("in_channels", &self.in_channels)
            .field("num_outputs", &self.num_outputs)
            .field("mirror_axes", &self.mirror_axes)
            .finish()
    }
}

impl Predictor {
    /// A predictor from networks already built (one per fold, all on `options.device`).
    pub fn new(
        networks: Vec<Box<dyn SegNetwork>>,
        patch_size: Vec<usize>,
        in_channels: usize,
        num_outputs: usize,
        mirror_axes: Vec<usize>,
        options: SlidingWindowOptions,
    ) -> Result<Predictor> {
        if networks.is_empty() {
            return Err(InferError::Invalid("a predictor needs at least one network".into()));
        }
        if !(patch_size.len() == 2 || patch_size.len() == 3) {
            return Err(InferError::Invalid(format!("patch size {patch_size:?} must have 2 or 3 entries")));
        }
        if let Some(a) = mirror_axes.iter().find(|&&a| a >= patch_size.len()) {
            return Err(InferError::Invalid(format!("mirror axis {a} out of range for patch {patch_size:?}")));
        }
        Ok(Predictor { networks, patch_size, in_channels, num_outputs, mirror_axes, options })
    }

    /// Loads one network per checkpoint folder (`model.safetensors` + `meta.json`) with
    /// `loader`, checking that the folds agree on channels and classes. Mirror axes come from
    /// `meta.json` (`inference_allowed_mirroring_axes`), all spatial axes when absent.
    pub fn from_checkpoints(
        dirs: &[PathBuf],
        config: &ResolvedConfiguration,
        options: SlidingWindowOptions,
        loader: NetworkLoader,
    ) -> Result<Predictor> {
        let first = dirs.first().ok_or_else(|| InferError::Invalid("no checkpoint folders given".into()))?;
        let meta0 = CheckpointInfo::read(first)?;
        let mut nets = Vec::with_capacity(dirs.len());
        for d in dirs {
            let m = CheckpointInfo::read(d)?;
            if m.in_channels != meta0.in_channels || m.num_classes != meta0.num_classes {
                return Err(InferError::Checkpoint {
                    path: d.clone(),
                    msg: format!(
                        "{} input channels / {} classes, {} has {} / {}",
                        m.in_channels,
                        m.num_classes,
                        first.display(),
                        meta0.in_channels,
                        meta0.num_classes
                    ),
                });
            }
            let net = loader(d, &config.architecture, options.device)
                .map_err(|msg| InferError::Checkpoint { path: d.clone(), msg })?;
            nets.push(net);
        }
        let nd = config.patch_size.len();
        let axes = meta0.inference_allowed_mirroring_axes.clone().unwrap_or_else(|| (0..nd).collect());
        Predictor::new(nets, config.patch_size.clone(), meta0.in_channels, meta0.num_classes, axes, options)
    }

    pub fn num_folds(&self) -> usize {
        self.networks.len()
    }

    /// Logits `[K, Z, Y, X]` for preprocessed channels (all the same shape), averaged over the
    /// folds; `tta` turns mirroring on.
    pub fn predict_preprocessed(&self, data: &[Volume<f32>], tta: bool) -> Result<Logits> {
        self.predict_preprocessed_with(data, tta, &|_, _| {})
    }

    /// [`Predictor::predict_preprocessed`] with a progress hook `(tiles done, tiles total)`
    /// (per fold pass over the image, all folds at once).
    pub fn predict_preprocessed_with(
        &self,
        data: &[Volume<f32>],
        tta: bool,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Logits> {
        self.predict_channels(data.to_vec(), tta, progress)
    }

    /// [`Predictor::predict_preprocessed_with`] on owned channels: they become the network
    /// input tensor without a copy (one channel) or with one concatenation (several), and are
    /// released when the sliding window ends.
    pub fn predict_channels(
        &self,
        data: Vec<Volume<f32>>,
        tta: bool,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Logits> {
        let first = data.first().ok_or_else(|| InferError::Invalid("no input channels".into()))?;
        if data.len() != self.in_channels {
            return Err(InferError::Invalid(format!(
                "the network takes {} input channels, the case has {}",
                self.in_channels,
                data.len()
            )));
        }
        if let Some(c) = data.iter().find(|c| c.shape != first.shape) {
            return Err(InferError::Invalid(format!("channel shapes differ: {:?} vs {:?}", c.shape, first.shape)));
        }
        let [z, y, x] = first.shape;
        let c = data.len();
        let mut channels = data.into_iter();
        let mut flat = channels.next().map(|v| v.data).unwrap_or_default();
        if c > 1 {
            flat.reserve_exact((c - 1) * flat.len());
            for v in channels {
                flat.extend_from_slice(&v.data);
            }
        }
        let input = HostTensor::new(flat, &[c, z, y, x])?;
        let mut opts = self.options.clone();
        opts.mirror_axes = if tta { self.mirror_axes.clone() } else { vec![] };
        let nets: Vec<&dyn SegNetwork> = self.networks.iter().map(|n| n.as_ref()).collect();
        predict_sliding_window_logits(&nets, input.tensor(), &self.patch_size, self.num_outputs, &opts, progress)
    }

    /// A raw case (images in reader axis order, as read) → segmentation (and probabilities) on
    /// the original voxel grid: preprocessing as in training, sliding window, export (§9),
    /// then the postprocessing decision if given. `prev_stage` is the previous stage's
    /// segmentation for `3d_cascade_fullres` (same grid as the images).
    pub fn predict_raw_case(
        &self,
        images: &CaseImages,
        plans: &Plans,
        config: &ResolvedConfiguration,
        spec: &LabelSpec,
        prev_stage: Option<&Volume<i16>>,
        opts: &CaseOptions,
    ) -> Result<CasePrediction> {
        self.predict_case(images.clone(), plans, config, spec, prev_stage, opts)
    }

    /// [`Predictor::predict_raw_case`] consuming the images: each image-sized array is released
    /// as soon as the next step has read it, and the segmentation is exported slab by slab
    /// ([`export_segmentation`]) unless probabilities are wanted.
    pub fn predict_case(
        &self,
        images: CaseImages,
        plans: &Plans,
        config: &ResolvedConfiguration,
        spec: &LabelSpec,
        prev_stage: Option<&Volume<i16>>,
        opts: &CaseOptions,
    ) -> Result<CasePrediction> {
        if spec.num_outputs() != self.num_outputs {
            return Err(InferError::Invalid(format!(
                "the network predicts {} channels, the labels need {}",
                self.num_outputs,
                spec.num_outputs()
            )));
        }
        if config.previous_stage.is_some() && prev_stage.is_none() {
            return Err(InferError::Invalid(format!(
                "configuration '{}' is a cascade stage and needs the previous stage's segmentation",
                config.name
            )));
        }
        let t0 = Instant::now();
        crate::memory::trace_rss("case read");
        let CaseImages { channels, spacing, header, .. } = images;
        let (data, properties) =
            preprocess_channels(channels, spacing, plans, config, prev_stage, &spec.foreground_labels)?;
        let t1 = Instant::now();
        nnunet_io::memory::release_freed_memory();
        crate::memory::trace_rss("preprocessed");
        let logits = self.predict_channels(data, opts.tta, &|_, _| {})?;
        let t2 = Instant::now();
        nnunet_io::memory::release_freed_memory();
        crate::memory::trace_rss("sliding window");
        let Exported { mut segmentation, probabilities } = if opts.save_probabilities {
            export_prediction(&logits, &properties, plans, config, &spec.mode, true)?
        } else {
            let segmentation = export_segmentation(&logits, &properties, plans, config, &spec.mode)?;
            Exported { segmentation, probabilities: None }
        };
        drop(logits);
        crate::memory::trace_rss("exported");
        if let Some(pp) = &opts.postprocessing {
            segmentation = apply_postprocessing(&segmentation, pp);
        }
        let t3 = Instant::now();
        Ok(CasePrediction {
            segmentation,
            probabilities,
            header,
            properties,
            timings: CaseTimings {
                preprocess_s: (t1 - t0).as_secs_f64(),
                predict_s: (t2 - t1).as_secs_f64(),
                export_s: (t3 - t2).as_secs_f64(),
            },
        })
    }
}

/// Checkpoint folders `root/fold_{f}` for the given folds, each checked for its files.
pub fn fold_dirs(root: &Path, folds: &[String]) -> Result<Vec<PathBuf>> {
    folds
        .iter()
        .map(|f| {
            let d = root.join(format!("fold_{f}"));
            CheckpointInfo::read(&d)?;
            Ok(d)
        })
        .collect()
}

/// The default device: the first CUDA device when available, else the CPU.
pub fn default_device() -> Device {
    Device::cuda_if_available()
}

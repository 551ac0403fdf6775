//! nnU-Net v2 experiment planning (§5, `default_experiment_planner.py`,
//! `residual_encoder_unet_planners.py`): target spacing, transpose, and the 3d_fullres /
//! 3d_lowres / 3d_cascade_fullres / 2d configurations with patch size, topology and batch size.
//!
//! Everything here is arithmetic on the fingerprint; the numbers follow nnU-Net operation by
//! operation (float patch sizes, numpy tie rules, half-to-even rounding) so that the plans
//! match nnU-Net's field by field.

mod config;
#[cfg(test)]
mod tests;

use crate::fingerprint::DatasetFingerprint;
use crate::plans::{Configuration, Plans};
use crate::resample::compute_new_shape;
use crate::stats;
use std::collections::BTreeMap;

pub use config::{normalization_scheme_for_channel, ConfigDiagnostics, ConfigurationPlanner};

/// `ANISO_THRESHOLD` (§4.3, `nnunetv2/configuration.py`).
pub const ANISO_THRESHOLD: f64 = 3.0;
/// §5.1: 3d_lowres is considered when the fullres patch covers less than this of the median image.
pub const LOWRES_CREATION_THRESHOLD: f64 = 0.25;
/// §5.1: lowres spacing step.
pub const LOWRES_SPACING_STEP: f64 = 1.03;

/// Which nnU-Net planner to reproduce (§5.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum PlannerKind {
    /// `ExperimentPlanner` (PlainConvUNet, `nnUNetPlans`).
    #[default]
    Default,
    /// `nnUNetPlannerResEncM` (`nnUNetResEncUNetMPlans`).
    ResEncM,
    /// `nnUNetPlannerResEncL` (`nnUNetResEncUNetLPlans`).
    ResEncL,
    /// `nnUNetPlannerResEncXL` (`nnUNetResEncUNetXLPlans`).
    ResEncXL,
}

impl PlannerKind {
    /// ResEnc presets use `ResidualEncoderUNet`.
    pub fn is_residual_encoder(self) -> bool {
        !matches!(self, PlannerKind::Default)
    }
    /// Default `plans_name` of the preset.
    pub fn default_plans_name(self) -> &'static str {
        match self {
            PlannerKind::Default => "nnUNetPlans",
            PlannerKind::ResEncM => "nnUNetResEncUNetMPlans",
            PlannerKind::ResEncL => "nnUNetResEncUNetLPlans",
            PlannerKind::ResEncXL => "nnUNetResEncUNetXLPlans",
        }
    }
    /// `experiment_planner_used` as nnU-Net writes it (the class name).
    pub fn class_name(self) -> &'static str {
        match self {
            PlannerKind::Default => "ExperimentPlanner",
            PlannerKind::ResEncM => "nnUNetPlannerResEncM",
            PlannerKind::ResEncL => "nnUNetPlannerResEncL",
            PlannerKind::ResEncXL => "nnUNetPlannerResEncXL",
        }
    }
    /// The preset's default `gpu_memory_target_in_gb`.
    pub fn default_gpu_memory_gb(self) -> f64 {
        match self {
            PlannerKind::Default | PlannerKind::ResEncM => 8.0,
            PlannerKind::ResEncL => 24.0,
            PlannerKind::ResEncXL => 40.0,
        }
    }
    /// `UNet_reference_val_corresp_GB`.
    pub fn reference_gb(self) -> f64 {
        self.default_gpu_memory_gb()
    }
    /// `(UNet_reference_val_3d, UNet_reference_val_2d)` (§5.1, §5.7).
    pub fn reference_values(self) -> (f64, f64) {
        match self {
            PlannerKind::Default => (560_000_000.0, 85_000_000.0),
            PlannerKind::ResEncM => (680_000_000.0, 135_000_000.0),
            PlannerKind::ResEncL => (2_100_000_000.0, 380_000_000.0),
            PlannerKind::ResEncXL => (3_600_000_000.0, 560_000_000.0),
        }
    }
    /// `max_dataset_covered`: 5% for the default planner, 1 (no cap) for the presets.
    pub fn max_dataset_covered(self) -> f64 {
        match self {
            PlannerKind::Default => 0.05,
            _ => 1.0,
        }
    }
    /// Parses `default`, `ResEncM`, `ResEncL`, `ResEncXL` (or nnU-Net's class / plans names).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" | "Default" | "ExperimentPlanner" | "nnUNetPlans" => Some(PlannerKind::Default),
            "ResEncM" | "resenc_m" | "nnUNetPlannerResEncM" => Some(PlannerKind::ResEncM),
            "ResEncL" | "resenc_l" | "nnUNetPlannerResEncL" => Some(PlannerKind::ResEncL),
            "ResEncXL" | "resenc_xl" | "nnUNetPlannerResEncXL" => Some(PlannerKind::ResEncXL),
            _ => None,
        }
    }
}

/// Planner options (nnU-Net's `nnUNetv2_plan_experiment` flags).
#[derive(Clone, Debug, PartialEq)]
pub struct PlannerOptions {
    /// `-gpu_memory_target` (GB). nnU-Net's default is 8 for the default planner and ResEncM,
    /// 24 for ResEncL, 40 for ResEncXL: use [`PlannerOptions::for_planner`] to get those.
    pub gpu_memory_gb: f64,
    /// Which planner to reproduce.
    pub planner: PlannerKind,
    /// Configurations to emit; empty = every applicable one. Asking for one that does not apply
    /// (e.g. `3d_lowres` on small images) is an error.
    pub configurations: Vec<String>,
    /// `-overwrite_target_spacing`, in the fingerprint's (reader) axis order.
    pub target_spacing_override: Option<[f64; 3]>,
    /// Fixed patch size per configuration name (transposed axis order; 2 entries for `2d`).
    /// The topology is derived from it (padded to divisibility), the shrink loop is skipped.
    pub patch_size_override: Option<BTreeMap<String, Vec<usize>>>,
    /// `-overwrite_plans_name`; `None` = the preset's name.
    pub plans_name: Option<String>,
    /// `--suppress_transpose`.
    pub suppress_transpose: bool,
    /// Written to `image_reader_writer`.
    pub image_reader_writer: String,
    /// Written to `preprocessor_name`.
    pub preprocessor_name: String,
}

impl Default for PlannerOptions {
    fn default() -> Self {
        Self {
            gpu_memory_gb: 8.0,
            planner: PlannerKind::Default,
            configurations: Vec::new(),
            target_spacing_override: None,
            patch_size_override: None,
            plans_name: None,
            suppress_transpose: false,
            image_reader_writer: "SimpleITKIO".into(),
            preprocessor_name: "DefaultPreprocessor".into(),
        }
    }
}

impl PlannerOptions {
    /// Options with the preset's nnU-Net defaults (notably its GPU memory target).
    pub fn for_planner(planner: PlannerKind) -> Self {
        Self { planner, gpu_memory_gb: planner.default_gpu_memory_gb(), ..Default::default() }
    }
    /// The effective plans name (`plans_name` or the preset's).
    pub fn plans_name(&self) -> String {
        self.plans_name.clone().unwrap_or_else(|| self.planner.default_plans_name().to_string())
    }
}

/// What the planner needs from `dataset.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetInfo {
    /// `DatasetXXX_Name`.
    pub name: String,
    /// `channel_names` values in channel order (they select the normalization, §3).
    pub channel_names: Vec<String>,
    /// `len(dataset.json["labels"])`: classes for the VRAM estimate, background and `ignore`
    /// included (§6.3).
    pub num_labels_in_json: usize,
    /// `numTraining`.
    pub num_training: usize,
}

/// Why planning failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The fingerprint lists no case.
    #[error("the fingerprint has no cases")]
    NoCases,
    /// Inconsistent or invalid fingerprint content.
    #[error("fingerprint: {0}")]
    Fingerprint(String),
    /// dataset.json and the fingerprint disagree on the channel count.
    #[error("dataset.json lists {json} channels but the fingerprint has {fingerprint}")]
    ChannelMismatch {
        /// Channels in dataset.json.
        json: usize,
        /// Channels in the fingerprint.
        fingerprint: usize,
    },
    /// A requested configuration name is not one nnU-Net knows.
    #[error("unknown configuration '{0}' (known: 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres)")]
    UnknownConfiguration(String),
    /// A requested configuration is not created for this dataset (name, reason).
    #[error("configuration '{0}' does not apply to this dataset: {1}")]
    NotApplicable(String, String),
    /// Planning one configuration failed (name, reason).
    #[error("configuration '{0}': {1}")]
    Configuration(String, String),
}

/// Configuration names.
pub const CONFIG_2D: &str = "2d";
/// See [`CONFIG_2D`].
pub const CONFIG_3D_FULLRES: &str = "3d_fullres";
/// See [`CONFIG_2D`].
pub const CONFIG_3D_LOWRES: &str = "3d_lowres";
/// See [`CONFIG_2D`].
pub const CONFIG_3D_CASCADE: &str = "3d_cascade_fullres";

/// Fullres target spacing in reader axis order (§5.2).
pub fn fullres_target_spacing(fp: &DatasetFingerprint, override_: Option<[f64; 3]>) -> [f64; 3] {
    if let Some(t) = override_ {
        return t;
    }
    let mut target = stats::percentile_axis0(&fp.spacings, 50.0);
    let sizes: Vec<[f64; 3]> = fp.shapes_after_crop.iter().map(|s| [s[0] as f64, s[1] as f64, s[2] as f64]).collect();
    let target_size = stats::percentile_axis0(&sizes, 50.0);
    let worst = argmax_first(&target);
    let others: Vec<usize> = (0..3).filter(|&i| i != worst).collect();
    let max_other_sp = others.iter().map(|&i| target[i]).fold(f64::NEG_INFINITY, f64::max);
    let min_other_size = others.iter().map(|&i| target_size[i]).fold(f64::INFINITY, f64::min);
    let aniso_spacing = target[worst] > ANISO_THRESHOLD * max_other_sp;
    let aniso_voxels = target_size[worst] * ANISO_THRESHOLD < min_other_size;
    if aniso_spacing && aniso_voxels {
        let axis: Vec<f64> = fp.spacings.iter().map(|s| s[worst]).collect();
        let mut t = stats::percentile(&axis, 10.0);
        // Do not let that axis get finer than the others.
        if t < max_other_sp {
            t = max_other_sp.max(t) + 1e-5;
        }
        target[worst] = t;
    }
    target
}

/// `np.argmax`: first index of the maximum.
pub(crate) fn argmax_first(v: &[f64]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// `(transpose_forward, transpose_backward)` (§5.3).
pub fn transpose_for_spacing(target: [f64; 3], suppress: bool) -> ([usize; 3], [usize; 3]) {
    if suppress {
        return ([0, 1, 2], [0, 1, 2]);
    }
    let m = argmax_first(&target);
    let rest: Vec<usize> = (0..3).filter(|&i| i != m).collect();
    let fwd = [m, rest[0], rest[1]];
    (fwd, nnunet_io::volume::invert_perm(fwd))
}

fn check_fingerprint(fp: &DatasetFingerprint, ds: &DatasetInfo) -> Result<(), PlanError> {
    if fp.spacings.is_empty() {
        return Err(PlanError::NoCases);
    }
    if fp.spacings.len() != fp.shapes_after_crop.len() {
        return Err(PlanError::Fingerprint(format!(
            "{} spacings but {} shapes",
            fp.spacings.len(),
            fp.shapes_after_crop.len()
        )));
    }
    if let Some(s) = fp.spacings.iter().find(|s| s.iter().any(|&v| !v.is_finite() || v <= 0.0)) {
        return Err(PlanError::Fingerprint(format!("spacing must be > 0, got {s:?}")));
    }
    if let Some(s) = fp.shapes_after_crop.iter().find(|s| s.contains(&0)) {
        return Err(PlanError::Fingerprint(format!("empty shape {s:?}")));
    }
    let n_fp = fp.num_channels();
    if n_fp != 0 && n_fp != ds.channel_names.len() {
        return Err(PlanError::ChannelMismatch { json: ds.channel_names.len(), fingerprint: n_fp });
    }
    if ds.channel_names.is_empty() {
        return Err(PlanError::Fingerprint("dataset.json has no channel_names".into()));
    }
    Ok(())
}

/// nnU-Net's `ExperimentPlanner.plan_experiment()` (§5.5).
pub fn plan_experiment(fp: &DatasetFingerprint, ds: &DatasetInfo, opts: &PlannerOptions) -> Result<Plans, PlanError> {
    Ok(plan_experiment_detailed(fp, ds, opts)?.0)
}

/// [`plan_experiment`] plus per-configuration diagnostics (estimates, uncapped batch sizes).
///
/// Long (~110 lines): follows nnU-Net's `plan_experiment` step by step (2d, 3d_fullres,
/// 3d_lowres, cascade, then the plans dict) so the two can be compared side by side.
pub fn plan_experiment_detailed(
    fp: &DatasetFingerprint,
    ds: &DatasetInfo,
    opts: &PlannerOptions,
) -> Result<(Plans, BTreeMap<String, ConfigDiagnostics>), PlanError> {
    let mut diags: BTreeMap<String, ConfigDiagnostics> = BTreeMap::new();
    check_fingerprint(fp, ds)?;
    for c in &opts.configurations {
        if ![CONFIG_2D, CONFIG_3D_FULLRES, CONFIG_3D_LOWRES, CONFIG_3D_CASCADE].contains(&c.as_str()) {
            return Err(PlanError::UnknownConfiguration(c.clone()));
        }
    }
    let planner = ConfigurationPlanner::new(fp, ds, opts);
    let target = fullres_target_spacing(fp, opts.target_spacing_override);
    let (tf, tb) = transpose_for_spacing(target, opts.suppress_transpose);
    let fullres_spacing_t: Vec<f64> = tf.iter().map(|&i| target[i]).collect();

    // Median shape after resampling to the fullres spacing (§5.3).
    let new_shapes: Vec<[f64; 3]> = fp
        .spacings
        .iter()
        .zip(&fp.shapes_after_crop)
        .map(|(sp, sh)| {
            let n = compute_new_shape(*sh, *sp, target);
            [n[0] as f64, n[1] as f64, n[2] as f64]
        })
        .collect();
    let new_median = stats::percentile_axis0(&new_shapes, 50.0);
    let new_median_t: Vec<f64> = tf.iter().map(|&i| new_median[i]).collect();
    let approx_n_voxels = new_median_t.iter().product::<f64>() * ds.num_training as f64;

    let mut configs: BTreeMap<String, Configuration> = BTreeMap::new();
    let mut lowres_reason = String::from("the dataset is 2D");
    if new_median_t[0] != 1.0 {
        let (mut fullres, d) =
            planner.plan_detailed(CONFIG_3D_FULLRES, &fullres_spacing_t, &new_median_t, approx_n_voxels)?;
        diags.insert(CONFIG_3D_FULLRES.into(), d);
        let fullres_patch = fullres.patch_size.clone().unwrap_or_default();
        let lowres = plan_lowres(&planner, &fullres_spacing_t, &new_median_t, &fullres_patch, ds)?;
        match lowres {
            Ok((mut lowres, d)) => {
                diags.insert(CONFIG_3D_LOWRES.into(), d);
                lowres.batch_dice = Some(false);
                lowres.next_stage = Some(CONFIG_3D_CASCADE.into());
                fullres.batch_dice = Some(true);
                configs.insert(CONFIG_3D_LOWRES.into(), lowres);
                configs.insert(
                    CONFIG_3D_CASCADE.into(),
                    Configuration {
                        inherits_from: Some(CONFIG_3D_FULLRES.into()),
                        previous_stage: Some(CONFIG_3D_LOWRES.into()),
                        ..Default::default()
                    },
                );
            }
            Err(reason) => {
                fullres.batch_dice = Some(false);
                lowres_reason = reason;
            }
        }
        configs.insert(CONFIG_3D_FULLRES.into(), fullres);
    }
    let (mut plan_2d, d) =
        planner.plan_detailed(CONFIG_2D, &fullres_spacing_t[1..], &new_median_t[1..], approx_n_voxels)?;
    diags.insert(CONFIG_2D.into(), d);
    plan_2d.batch_dice = Some(true);
    configs.insert(CONFIG_2D.into(), plan_2d);

    if !opts.configurations.is_empty() {
        for c in &opts.configurations {
            if !configs.contains_key(c) {
                let why = if c == CONFIG_3D_FULLRES { "the dataset is 2D".to_string() } else { lowres_reason.clone() };
                return Err(PlanError::NotApplicable(c.clone(), why));
            }
        }
        // The cascade needs both of its stages.
        let mut keep: Vec<String> = opts.configurations.clone();
        if keep.iter().any(|c| c == CONFIG_3D_CASCADE) {
            for dep in [CONFIG_3D_FULLRES, CONFIG_3D_LOWRES] {
                if !keep.iter().any(|c| c == dep) {
                    keep.push(dep.into());
                }
            }
        }
        configs.retain(|k, _| keep.contains(k));
        diags.retain(|k, _| keep.contains(k));
        if let Some(l) = configs.get_mut(CONFIG_3D_LOWRES) {
            if !configs_contains(&keep, CONFIG_3D_CASCADE) {
                l.next_stage = None;
            }
        }
    }

    let median_spacing = stats::percentile_axis0(&fp.spacings, 50.0);
    let shapes: Vec<[f64; 3]> = fp.shapes_after_crop.iter().map(|s| [s[0] as f64, s[1] as f64, s[2] as f64]).collect();
    let median_shape = stats::percentile_axis0(&shapes, 50.0);
    let plans = Plans {
        dataset_name: ds.name.clone(),
        plans_name: opts.plans_name(),
        original_median_spacing_after_transp: tf.iter().map(|&i| median_spacing[i]).collect(),
        original_median_shape_after_transp: tf.iter().map(|&i| median_shape[i].round_ties_even()).collect(),
        image_reader_writer: opts.image_reader_writer.clone(),
        transpose_forward: tf.to_vec(),
        transpose_backward: tb.to_vec(),
        configurations: configs,
        experiment_planner_used: opts.planner.class_name().into(),
        label_manager: "LabelManager".into(),
        foreground_intensity_properties_per_channel: fp.foreground_intensity_properties_per_channel.clone(),
    };
    Ok((plans, diags))
}

fn configs_contains(v: &[String], name: &str) -> bool {
    v.iter().any(|c| c == name)
}

/// The 3d_lowres search (§5.5). `Ok(Err(reason))` when no lowres configuration is created.
fn plan_lowres(
    planner: &ConfigurationPlanner,
    fullres_spacing_t: &[f64],
    new_median_t: &[f64],
    fullres_patch: &[usize],
    ds: &DatasetInfo,
) -> Result<Result<(Configuration, ConfigDiagnostics), String>, PlanError> {
    let full_voxels: f64 = new_median_t.iter().product();
    let mut median_num_voxels = full_voxels;
    let mut num_voxels_in_patch: f64 = fullres_patch.iter().map(|&p| p as f64).product();
    let mut lowres_spacing = fullres_spacing_t.to_vec();
    let mut lowres: Option<(Configuration, ConfigDiagnostics)> = None;
    let mut steps = 0usize;
    while num_voxels_in_patch / median_num_voxels < LOWRES_CREATION_THRESHOLD {
        steps += 1;
        if steps > 100_000 {
            return Err(PlanError::Configuration(
                CONFIG_3D_LOWRES.into(),
                "lowres spacing search did not converge".into(),
            ));
        }
        // Increase the spacing of the anisotropic axes first, then all (1.03 per step).
        let max_sp = lowres_spacing.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let aniso: Vec<bool> = lowres_spacing.iter().map(|&s| max_sp / s > 2.0).collect();
        if aniso.iter().any(|&a| a) {
            for (s, a) in lowres_spacing.iter_mut().zip(&aniso) {
                if *a {
                    *s *= LOWRES_SPACING_STEP;
                }
            }
        } else {
            for s in &mut lowres_spacing {
                *s *= LOWRES_SPACING_STEP;
            }
        }
        let median_lowres: Vec<f64> =
            (0..3).map(|i| fullres_spacing_t[i] / lowres_spacing[i] * new_median_t[i]).collect();
        median_num_voxels = median_lowres.iter().product();
        let rounded: Vec<f64> = median_lowres.iter().map(|v| v.round_ties_even()).collect();
        let (c, mut d) = planner.plan_detailed(
            CONFIG_3D_LOWRES,
            &lowres_spacing,
            &rounded,
            median_num_voxels * ds.num_training as f64,
        )?;
        num_voxels_in_patch = c.patch_size.as_ref().map_or(0.0, |p| p.iter().map(|&v| v as f64).product());
        d.lowres_steps = steps;
        lowres = Some((c, d));
    }
    if full_voxels / median_num_voxels < 2.0 {
        return Ok(Err(match lowres {
            None => "the 3d_fullres patch already covers at least 25% of the median image".into(),
            Some(_) => "the lowres image size is too close to 3d_fullres (less than 2x)".into(),
        }));
    }
    Ok(lowres.ok_or_else(|| "no lowres configuration was needed".to_string()))
}

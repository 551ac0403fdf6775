//! The plans: nnU-Net v2's `nnUNetPlans.json`, with nnU-Net's field names so a user can diff
//! ours against theirs. Produced by the planner, read by preprocessing, training and inference.
//!
//! Axis conventions: every per-axis vector in a configuration (`patch_size`, `spacing`,
//! `kernel_sizes`, `strides`, ...) is in the *transposed* order (`transpose_forward` applied,
//! largest target spacing first). 2D configurations have 2-element vectors (the in-plane axes).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Foreground intensity statistics of one channel (fingerprint, nnU-Net field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntensityProperties {
    pub max: f64,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub percentile_00_5: f64,
    pub percentile_99_5: f64,
    pub std: f64,
}

/// Keyword arguments of nnU-Net's `resample_data_or_seg_to_shape`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResamplingKwargs {
    pub is_seg: bool,
    pub order: u32,
    pub order_z: u32,
    pub force_separate_z: Option<bool>,
}

/// `arch_kwargs` of `PlainConvUNet` / `ResidualEncoderUNet` as nnU-Net writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchKwargs {
    pub n_stages: usize,
    pub features_per_stage: Vec<i64>,
    pub conv_op: String,
    pub kernel_sizes: Vec<Vec<i64>>,
    pub strides: Vec<Vec<i64>>,
    /// PlainConvUNet: convs per encoder stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_conv_per_stage: Option<Vec<i64>>,
    /// ResidualEncoderUNet: residual blocks per encoder stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_blocks_per_stage: Option<Vec<i64>>,
    pub n_conv_per_stage_decoder: Vec<i64>,
    pub conv_bias: bool,
    pub norm_op: String,
    pub norm_op_kwargs: serde_json::Value,
    pub dropout_op: Option<String>,
    pub dropout_op_kwargs: Option<serde_json::Value>,
    pub nonlin: String,
    pub nonlin_kwargs: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// `dynamic_network_architectures.architectures.unet.PlainConvUNet` or `...ResidualEncoderUNet`.
    pub network_class_name: String,
    pub arch_kwargs: ArchKwargs,
    #[serde(rename = "_kw_requires_import")]
    pub kw_requires_import: Vec<String>,
}

impl Architecture {
    pub fn is_residual_encoder(&self) -> bool {
        self.network_class_name.ends_with("ResidualEncoderUNet")
    }
    /// Number of spatial dimensions (2 or 3).
    pub fn ndim(&self) -> usize {
        self.arch_kwargs.kernel_sizes.first().map_or(3, |k| k.len())
    }
}

/// One configuration (`2d`, `3d_fullres`, `3d_lowres`, `3d_cascade_fullres`).
///
/// `3d_cascade_fullres` only carries `inherits_from` and `previous_stage`; use
/// [`Plans::configuration`] to get the resolved (inherited) view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Configuration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherits_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessor_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_size: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_image_size_in_voxels: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spacing: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization_schemes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_mask_for_norm: Option<Vec<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling_fn_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling_fn_seg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling_fn_data_kwargs: Option<ResamplingKwargs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling_fn_seg_kwargs: Option<ResamplingKwargs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling_fn_probabilities: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling_fn_probabilities_kwargs: Option<ResamplingKwargs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_dice: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_stage: Option<String>,
}

/// A fully resolved configuration: every field present.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedConfiguration {
    pub name: String,
    pub data_identifier: String,
    pub batch_size: usize,
    pub patch_size: Vec<usize>,
    pub median_image_size_in_voxels: Vec<f64>,
    pub spacing: Vec<f64>,
    pub normalization_schemes: Vec<String>,
    pub use_mask_for_norm: Vec<bool>,
    pub resampling_data: ResamplingKwargs,
    pub resampling_seg: ResamplingKwargs,
    pub resampling_probabilities: ResamplingKwargs,
    pub architecture: Architecture,
    pub batch_dice: bool,
    pub previous_stage: Option<String>,
    pub next_stage: Option<String>,
}

impl ResolvedConfiguration {
    pub fn is_2d(&self) -> bool {
        self.patch_size.len() == 2
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plans {
    pub dataset_name: String,
    pub plans_name: String,
    pub original_median_spacing_after_transp: Vec<f64>,
    pub original_median_shape_after_transp: Vec<f64>,
    pub image_reader_writer: String,
    pub transpose_forward: Vec<usize>,
    pub transpose_backward: Vec<usize>,
    pub configurations: BTreeMap<String, Configuration>,
    pub experiment_planner_used: String,
    pub label_manager: String,
    pub foreground_intensity_properties_per_channel: BTreeMap<String, IntensityProperties>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlansError {
    #[error("plans have no configuration '{0}' (available: {1})")]
    UnknownConfiguration(String, String),
    #[error("configuration '{0}': field '{1}' is missing after resolving inherits_from")]
    MissingField(String, &'static str),
    #[error("configuration '{0}': inherits_from chain is cyclic or too deep")]
    InheritanceCycle(String),
}

impl Plans {
    pub fn transpose_forward3(&self) -> [usize; 3] {
        [self.transpose_forward[0], self.transpose_forward[1], self.transpose_forward[2]]
    }
    pub fn transpose_backward3(&self) -> [usize; 3] {
        [self.transpose_backward[0], self.transpose_backward[1], self.transpose_backward[2]]
    }

    /// Resolves `inherits_from` (child fields override the parent's) and checks completeness.
    pub fn configuration(&self, name: &str) -> Result<ResolvedConfiguration, PlansError> {
        let mut chain = Vec::new();
        let mut cur = name.to_string();
        loop {
            let c = self.configurations.get(&cur).ok_or_else(|| {
                PlansError::UnknownConfiguration(
                    cur.clone(),
                    self.configurations.keys().cloned().collect::<Vec<_>>().join(", "),
                )
            })?;
            chain.push(c);
            match &c.inherits_from {
                Some(p) if chain.len() < 16 => cur = p.clone(),
                Some(_) => return Err(PlansError::InheritanceCycle(name.to_string())),
                None => break,
            }
        }
        // Merge from the root ancestor down to `name`.
        let mut m = Configuration::default();
        for c in chain.iter().rev() {
            macro_rules! over {
                ($($f:ident),*) => { $( if c.$f.is_some() { m.$f = c.$f.clone(); } )* };
            }
            over!(
                data_identifier,
                preprocessor_name,
                batch_size,
                patch_size,
                median_image_size_in_voxels,
                spacing,
                normalization_schemes,
                use_mask_for_norm,
                resampling_fn_data_kwargs,
                resampling_fn_seg_kwargs,
                resampling_fn_probabilities_kwargs,
                architecture,
                batch_dice
            );
        }
        // Stage links are not inherited.
        let own = chain[0];
        let missing = |f: &'static str| PlansError::MissingField(name.to_string(), f);
        Ok(ResolvedConfiguration {
            name: name.to_string(),
            data_identifier: m.data_identifier.ok_or_else(|| missing("data_identifier"))?,
            batch_size: m.batch_size.ok_or_else(|| missing("batch_size"))?,
            patch_size: m.patch_size.ok_or_else(|| missing("patch_size"))?,
            median_image_size_in_voxels: m
                .median_image_size_in_voxels
                .ok_or_else(|| missing("median_image_size_in_voxels"))?,
            spacing: m.spacing.ok_or_else(|| missing("spacing"))?,
            normalization_schemes: m.normalization_schemes.ok_or_else(|| missing("normalization_schemes"))?,
            use_mask_for_norm: m.use_mask_for_norm.ok_or_else(|| missing("use_mask_for_norm"))?,
            resampling_data: m.resampling_fn_data_kwargs.ok_or_else(|| missing("resampling_fn_data_kwargs"))?,
            resampling_seg: m.resampling_fn_seg_kwargs.ok_or_else(|| missing("resampling_fn_seg_kwargs"))?,
            resampling_probabilities: m
                .resampling_fn_probabilities_kwargs
                .ok_or_else(|| missing("resampling_fn_probabilities_kwargs"))?,
            architecture: m.architecture.ok_or_else(|| missing("architecture"))?,
            batch_dice: m.batch_dice.ok_or_else(|| missing("batch_dice"))?,
            previous_stage: own.previous_stage.clone(),
            next_stage: own.next_stage.clone(),
        })
    }
}

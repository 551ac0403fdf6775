//! `get_plans_for_configuration` (§5.4): initial patch, topology, VRAM-driven shrink loop,
//! batch size, and the configuration record with nnU-Net's exact strings.

use super::{DatasetInfo, PlanError, PlannerKind, PlannerOptions, CONFIG_2D, CONFIG_3D_FULLRES};
use crate::fingerprint::DatasetFingerprint;
use crate::plans::{ArchKwargs, Architecture, Configuration, ResamplingKwargs};
use crate::topology::{get_pool_and_conv_props, Topology};
use crate::vram::{estimate_conv_feature_map_size, EstimateArch};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;

/// §5.1 constants.
const BASE_FEATURES: i64 = 32;
const MAX_FEATURES_3D: i64 = 320;
const MAX_FEATURES_2D: i64 = 512;
const FEATUREMAP_MIN_EDGE: usize = 4;
const REF_BS_3D: f64 = 2.0;
const REF_BS_2D: f64 = 12.0;
const MIN_BATCH_SIZE: i64 = 2;
const MAX_NUMPOOL: u32 = 999_999;
/// PlainConvUNet: 2 convs per encoder and decoder stage. ResEnc: (1,3,4,6,6,6,...) blocks, 1 conv.
const PLAIN_BLOCKS_ENC: [i64; 14] = [2; 14];
const PLAIN_BLOCKS_DEC: [i64; 13] = [2; 13];
const RESENC_BLOCKS_ENC: [i64; 13] = [1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6];
const RESENC_BLOCKS_DEC: [i64; 12] = [1; 12];

/// The normalization class for a `channel_names` value (§3, `get_normalization_scheme`).
pub fn normalization_scheme_for_channel(channel_name: &str) -> &'static str {
    match channel_name.to_lowercase().as_str() {
        "ct" => "CTNormalization",
        "nonorm" => "NoNormalization",
        "zscore" => "ZScoreNormalization",
        "rescale_to_0_1" => "RescaleTo01Normalization",
        "rgb_to_0_1" => "RGBTo01Normalization",
        _ => "ZScoreNormalization",
    }
}

/// Cache key of a VRAM estimate: (patch size, strides), like nnU-Net's `_keygen`.
type EstimateKey = (Vec<usize>, Vec<Vec<i64>>);

/// Intermediate numbers of one configuration's planning (for logs and tests).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigDiagnostics {
    /// Final VRAM proxy (`compute_conv_feature_map_size`) of the chosen patch.
    pub vram_estimate: i64,
    /// Reference value scaled to the GPU memory target.
    pub reference: f64,
    /// `round(reference / estimate * ref_bs)` before the dataset cap and the minimum.
    pub uncapped_batch_size: i64,
    /// `round(approx_n_voxels * max_dataset_covered / prod(patch))`.
    pub dataset_cap_batch_size: i64,
    /// Iterations of the patch shrink loop.
    pub shrink_steps: usize,
    /// 3d_lowres only: number of 1.03 spacing steps.
    pub lowres_steps: usize,
}

/// Plans single configurations; holds the per-dataset context and the estimate cache.
pub struct ConfigurationPlanner<'a> {
    opts: &'a PlannerOptions,
    kind: PlannerKind,
    num_classes: usize,
    normalization_schemes: Vec<String>,
    use_mask_for_norm: Vec<bool>,
    cache: RefCell<HashMap<EstimateKey, i64>>,
}

impl<'a> ConfigurationPlanner<'a> {
    /// Context for one dataset and set of options.
    pub fn new(fp: &DatasetFingerprint, ds: &DatasetInfo, opts: &'a PlannerOptions) -> Self {
        let normalization_schemes: Vec<String> =
            ds.channel_names.iter().map(|c| normalization_scheme_for_channel(c).to_string()).collect();
        // §3 use_mask_for_norm rule: only when cropping removed more than 25% of the voxels,
        // and only for schemes that leave outside voxels at zero (ZScore).
        let use_mask_for_norm = normalization_schemes
            .iter()
            .map(|s| fp.median_relative_size_after_cropping < 0.75 && s == "ZScoreNormalization")
            .collect();
        Self {
            opts,
            kind: opts.planner,
            num_classes: ds.num_labels_in_json,
            normalization_schemes,
            use_mask_for_norm,
            cache: RefCell::new(HashMap::new()),
        }
    }

    fn data_identifier(&self, name: &str) -> String {
        // ResEnc presets reuse the default preprocessed 2d / 3d_fullres data (§5.7).
        if self.kind.is_residual_encoder() && (name == CONFIG_2D || name == CONFIG_3D_FULLRES) {
            format!("nnUNetPlans_{name}")
        } else {
            format!("{}_{name}", self.opts.plans_name())
        }
    }

    fn blocks(&self, n_stages: usize) -> (Vec<i64>, Vec<i64>) {
        let (enc, dec): (&[i64], &[i64]) = if self.kind.is_residual_encoder() {
            (&RESENC_BLOCKS_ENC, &RESENC_BLOCKS_DEC)
        } else {
            (&PLAIN_BLOCKS_ENC, &PLAIN_BLOCKS_DEC)
        };
        let enc = enc[..n_stages.min(enc.len())].to_vec();
        let dec = dec[..n_stages.saturating_sub(1).min(dec.len())].to_vec();
        (enc, dec)
    }

    fn features(n_stages: usize, max_features: i64) -> Vec<i64> {
        (0..n_stages).map(|i| max_features.min(BASE_FEATURES << i)).collect()
    }

    fn estimate(&self, topo: &Topology, max_features: i64) -> i64 {
        let key = (topo.patch_size.clone(), topo.strides.clone());
        if let Some(&e) = self.cache.borrow().get(&key) {
            return e;
        }
        let n = topo.n_stages();
        let (enc, dec) = self.blocks(n);
        let features = Self::features(n, max_features);
        let arch = if self.kind.is_residual_encoder() {
            EstimateArch::ResidualEncoder { n_blocks_per_stage: &enc }
        } else {
            EstimateArch::PlainConv { n_conv_per_stage: &enc }
        };
        let e =
            estimate_conv_feature_map_size(&topo.patch_size, &features, &topo.strides, &arch, &dec, self.num_classes);
        self.cache.borrow_mut().insert(key, e);
        e
    }

    fn architecture(&self, topo: &Topology, max_features: i64) -> Architecture {
        let n = topo.n_stages();
        let dim = topo.patch_size.len();
        let (enc, dec) = self.blocks(n);
        let resenc = self.kind.is_residual_encoder();
        Architecture {
            network_class_name: if resenc {
                "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet".into()
            } else {
                "dynamic_network_architectures.architectures.unet.PlainConvUNet".into()
            },
            arch_kwargs: ArchKwargs {
                n_stages: n,
                features_per_stage: Self::features(n, max_features),
                conv_op: format!("torch.nn.modules.conv.Conv{dim}d"),
                kernel_sizes: topo.kernel_sizes.clone(),
                strides: topo.strides.clone(),
                n_conv_per_stage: (!resenc).then(|| enc.clone()),
                n_blocks_per_stage: resenc.then(|| enc.clone()),
                n_conv_per_stage_decoder: dec,
                conv_bias: true,
                norm_op: format!("torch.nn.modules.instancenorm.InstanceNorm{dim}d"),
                norm_op_kwargs: json!({"eps": 1e-5, "affine": true}),
                dropout_op: None,
                dropout_op_kwargs: None,
                nonlin: "torch.nn.LeakyReLU".into(),
                nonlin_kwargs: json!({"inplace": true}),
            },
            kw_requires_import: ["conv_op", "norm_op", "dropout_op", "nonlin"].iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `get_plans_for_configuration(spacing, median_shape, data_identifier, approx_n_voxels)`.
    /// `spacing` and `median_shape` are transposed, with 2 (2d) or 3 entries.
    pub fn plan(
        &self,
        name: &str,
        spacing: &[f64],
        median_shape: &[f64],
        approximate_n_voxels_dataset: f64,
    ) -> Result<Configuration, PlanError> {
        Ok(self.plan_detailed(name, spacing, median_shape, approximate_n_voxels_dataset)?.0)
    }

    /// [`Self::plan`] plus the intermediate numbers.
    ///
    /// Long (~140 lines) on purpose: it follows nnU-Net's `get_plans_for_configuration` step by
    /// step (initial patch, topology, the VRAM-driven shrink loop, batch size) so that the two
    /// can be read side by side; the steps share a dozen intermediate values.
    pub fn plan_detailed(
        &self,
        name: &str,
        spacing: &[f64],
        median_shape: &[f64],
        approximate_n_voxels_dataset: f64,
    ) -> Result<(Configuration, ConfigDiagnostics), PlanError> {
        let dim = spacing.len();
        let err = |m: String| PlanError::Configuration(name.to_string(), m);
        if !(dim == 2 || dim == 3) || median_shape.len() < dim {
            return Err(err(format!("spacing {spacing:?} / median shape {median_shape:?}")));
        }
        if spacing.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return Err(err(format!("spacing must be > 0, got {spacing:?}")));
        }
        let max_features = if dim == 2 { MAX_FEATURES_2D } else { MAX_FEATURES_3D };
        let (ref_3d, ref_2d) = self.kind.reference_values();
        // §5.4 step 5: reference scaled by the VRAM target.
        let reference = (if dim == 2 { ref_2d } else { ref_3d }) * (self.opts.gpu_memory_gb / self.kind.reference_gb());
        let ref_bs = if dim == 2 { REF_BS_2D } else { REF_BS_3D };

        let override_patch = self.opts.patch_size_override.as_ref().and_then(|m| m.get(name));
        let mut topo;
        let mut estimate;
        let mut iterations = 0usize;
        if let Some(p) = override_patch {
            if p.len() != dim || p.contains(&0) {
                return Err(err(format!("patch size override {p:?} must have {dim} positive entries")));
            }
            let pf: Vec<f64> = p.iter().map(|&v| v as f64).collect();
            topo = get_pool_and_conv_props(spacing, &pf, FEATUREMAP_MIN_EDGE, MAX_NUMPOOL);
            estimate = self.estimate(&topo, max_features);
        } else {
            // §5.4 step 1: initial patch with the spacing's aspect ratio and the volume of 256^3
            // (2048^2 in 2D), clipped to the median shape.
            let tmp: Vec<f64> = spacing.iter().map(|&s| 1.0 / s).collect();
            let prod_tmp = tmp.iter().fold(1.0f64, |a, &b| a * b);
            let scale = if dim == 3 {
                (16_777_216.0 / prod_tmp).powf(1.0 / 3.0)
            } else {
                (4_194_304.0 / prod_tmp).powf(1.0 / 2.0)
            };
            let initial: Vec<f64> = tmp
                .iter()
                .zip(median_shape)
                .map(|(&t, &m)| {
                    let r = (t * scale).round_ties_even();
                    if m < r {
                        m
                    } else {
                        r
                    }
                })
                .collect();
            topo = get_pool_and_conv_props(spacing, &initial, FEATUREMAP_MIN_EDGE, MAX_NUMPOOL);
            estimate = self.estimate(&topo, max_features);
            // §5.4 step 6: shrink until the estimate fits.
            let too_big = |e: i64| {
                if self.kind.is_residual_encoder() {
                    e as f64 > reference
                } else {
                    e as f64 / ref_bs * 2.0 > reference
                }
            };
            while too_big(estimate) {
                iterations += 1;
                if iterations > 100_000 {
                    return Err(err("patch size shrink loop did not converge".into()));
                }
                // Axis with the largest patch/median ratio; numpy argsort()[-1] picks the last
                // of tied maxima.
                let ratios: Vec<f64> = topo.patch_size.iter().zip(median_shape).map(|(&p, &m)| p as f64 / m).collect();
                let mut axis = 0;
                for i in 1..dim {
                    if ratios[i] >= ratios[axis] {
                        axis = i;
                    }
                }
                let mut patch: Vec<i64> = topo.patch_size.iter().map(|&p| p as i64).collect();
                let mut tmp = patch.clone();
                tmp[axis] -= topo.must_be_divisible_by[axis] as i64;
                if tmp[axis] <= 0 {
                    return Err(err(format!(
                        "cannot shrink patch {:?} further along axis {axis} (estimate {estimate}, reference {reference})",
                        topo.patch_size
                    )));
                }
                let tmpf: Vec<f64> = tmp.iter().map(|&v| v as f64).collect();
                let m2 = get_pool_and_conv_props(spacing, &tmpf, FEATUREMAP_MIN_EDGE, MAX_NUMPOOL).must_be_divisible_by;
                patch[axis] -= m2[axis] as i64;
                if patch[axis] <= 0 {
                    return Err(err(format!("patch size collapsed to {patch:?}")));
                }
                let pf: Vec<f64> = patch.iter().map(|&v| v as f64).collect();
                topo = get_pool_and_conv_props(spacing, &pf, FEATUREMAP_MIN_EDGE, MAX_NUMPOOL);
                estimate = self.estimate(&topo, max_features);
            }
        }
        if estimate <= 0 {
            return Err(err(format!("VRAM estimate is {estimate} for patch {:?}", topo.patch_size)));
        }
        // §5.4 step 7: batch size, capped to max_dataset_covered of the dataset, at least 2.
        let bs = ((reference / estimate as f64) * ref_bs).round_ties_even() as i64;
        let patch_voxels = topo.patch_size.iter().fold(1.0f64, |a, &b| a * b as f64);
        let bs_cap =
            (approximate_n_voxels_dataset * self.kind.max_dataset_covered() / patch_voxels).round_ties_even() as i64;
        let batch_size = bs.min(bs_cap).max(MIN_BATCH_SIZE) as usize;

        let diag = ConfigDiagnostics {
            vram_estimate: estimate,
            reference,
            uncapped_batch_size: bs,
            dataset_cap_batch_size: bs_cap,
            shrink_steps: iterations,
            lowres_steps: 0,
        };
        let kw = |is_seg: bool, order: u32| ResamplingKwargs { is_seg, order, order_z: 0, force_separate_z: None };
        let config = Configuration {
            data_identifier: Some(self.data_identifier(name)),
            preprocessor_name: Some(self.opts.preprocessor_name.clone()),
            batch_size: Some(batch_size),
            patch_size: Some(topo.patch_size.clone()),
            median_image_size_in_voxels: Some(median_shape[..dim].to_vec()),
            spacing: Some(spacing.to_vec()),
            normalization_schemes: Some(self.normalization_schemes.clone()),
            use_mask_for_norm: Some(self.use_mask_for_norm.clone()),
            resampling_fn_data: Some("resample_data_or_seg_to_shape".into()),
            resampling_fn_seg: Some("resample_data_or_seg_to_shape".into()),
            resampling_fn_data_kwargs: Some(kw(false, 3)),
            resampling_fn_seg_kwargs: Some(kw(true, 1)),
            resampling_fn_probabilities: Some("resample_data_or_seg_to_shape".into()),
            resampling_fn_probabilities_kwargs: Some(kw(false, 1)),
            architecture: Some(self.architecture(&topo, max_features)),
            ..Default::default()
        };
        Ok((config, diag))
    }
}

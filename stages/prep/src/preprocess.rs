//! Per-case preprocessing (§4.1, `DefaultPreprocessor.run_case_npy`), split in two steps that
//! the engine caches separately:
//!
//! 1. [`normalize_case`]: cast, transpose (`transpose_forward`), crop to nonzero, normalize.
//!    Independent of the configuration (normalization schemes are the same for all of them).
//! 2. [`resample_case`]: resample to the configuration's spacing (data order 3, seg one-hot
//!    order 1, separate-z rules), sample class locations, choose the seg dtype.
//!
//! nnU-Net normalizes after computing the target shape but before resampling; the order of
//! those two does not change anything, so normalizing in step 1 is equivalent.

use crate::class_locations::{sample_class_locations, ClassLocations, ClassSpec};
use crate::crop::{crop_to_nonzero_owned, BBox};
use crate::error::{PrepError, Result};
use crate::normalize::{normalize_channel, Scheme};
use crate::plans::{Plans, ResolvedConfiguration};
use crate::resample::{compute_new_shape, resample_data, resample_seg, SegResampleMode};
use nnunet_io::volume::{numel, permute};
use nnunet_io::Volume;
use serde::{Deserialize, Serialize};

/// Case properties with nnU-Net's names (its `CASE.pkl`), plus `spacing_transposed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseProperties {
    /// Spacing as read (reader axis order, untransposed) — what nnU-Net stores as `spacing`.
    pub spacing: [f64; 3],
    /// `spacing` with `transpose_forward` applied (the axis order of every array here).
    pub spacing_transposed: [f64; 3],
    /// Transposed shape before cropping.
    pub shape_before_cropping: [usize; 3],
    /// Transposed crop box, `[lo, hi)` per axis.
    pub bbox_used_for_cropping: BBox,
    /// Transposed shape after cropping.
    pub shape_after_cropping_and_before_resampling: [usize; 3],
}

/// Output of [`normalize_case`]: transposed, cropped, normalized.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizedCase {
    /// Channels, transposed and cropped, normalized.
    pub data: Vec<Volume<f32>>,
    /// Label with −1 outside the nonzero mask (or, without a label, 0 inside / −1 outside).
    pub seg: Volume<i16>,
    /// Whether `seg` holds a real label map (training case) or only the nonzero mask.
    pub has_label: bool,
    /// nnU-Net's case properties.
    pub properties: CaseProperties,
}

/// Output of [`resample_case`].
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessedCase {
    /// Channels at the target spacing.
    pub data: Vec<Volume<f32>>,
    /// Label at the target spacing (−1 outside the nonzero mask).
    pub seg: Volume<i16>,
    /// Whether `seg` is a real label map.
    pub has_label: bool,
    /// nnU-Net's case properties (of the case before resampling).
    pub properties: CaseProperties,
    /// Spacing of the arrays (the configuration's target spacing, transposed order).
    pub target_spacing: [f64; 3],
    pub class_locations: ClassLocations,
}

impl PreprocessedCase {
    /// Spatial shape after resampling.
    pub fn shape(&self) -> [usize; 3] {
        self.seg.shape
    }
    /// nnU-Net stores the segmentation as int8, or int16 if any label > 127 (§4.1 step 8).
    pub fn seg_fits_i8(&self) -> bool {
        self.seg.data.iter().all(|&v| (-128..=127).contains(&v))
    }
}

/// Normalization schemes and `use_mask_for_norm` from the plans (3d_fullres, else the first
/// configuration that resolves).
pub fn normalization_from_plans(plans: &Plans) -> Result<(Vec<Scheme>, Vec<bool>)> {
    let mut names: Vec<&str> = vec!["3d_fullres"];
    names.extend(plans.configurations.keys().map(|s| s.as_str()));
    for n in names {
        // Only the two normalization fields are needed (a reduced plans file such as the
        // engine's `normalization.json` holds nothing else), following `inherits_from`.
        let mut cur = plans.configurations.get(n);
        let (mut schemes, mut mask) = (None, None);
        for _ in 0..16 {
            let Some(c) = cur else { break };
            schemes = schemes.or_else(|| c.normalization_schemes.clone());
            mask = mask.or_else(|| c.use_mask_for_norm.clone());
            cur = c.inherits_from.as_ref().and_then(|p| plans.configurations.get(p));
        }
        if let (Some(schemes), Some(mask)) = (schemes, mask) {
            let schemes = schemes.iter().map(|s| Scheme::from_class_name(s)).collect::<Result<Vec<_>>>()?;
            return Ok((schemes, mask));
        }
    }
    Err(PrepError::Plans("no configuration with normalization_schemes".into()))
}

/// Step 1: transpose, crop to nonzero, normalize (§4.1 steps 1–3 and 5).
///
/// `channels` / `label` are in reader axis order (z, y, x), `spacing_zyx` likewise.
pub fn normalize_case(
    channels: Vec<Volume<f32>>,
    label: Option<Volume<i16>>,
    spacing_zyx: [f64; 3],
    plans: &Plans,
) -> Result<NormalizedCase> {
    let (schemes, use_mask) = normalization_from_plans(plans)?;
    if schemes.len() != channels.len() || use_mask.len() != channels.len() {
        return Err(PrepError::Plans(format!(
            "plans have {} normalization schemes, the case has {} channels",
            schemes.len(),
            channels.len()
        )));
    }
    if plans.transpose_forward.len() != 3 {
        return Err(PrepError::Plans(format!("transpose_forward {:?}", plans.transpose_forward)));
    }
    for (i, c) in channels.iter().enumerate() {
        if c.data.iter().any(|v| v.is_nan()) {
            return Err(PrepError::NaN(format!("image channel {i}")));
        }
    }
    let tf = plans.transpose_forward3();
    // One volume at a time is transposed (none when the order is kept) and cropped (none when
    // the box is the whole image): a case is held about once, not three times.
    let keep = tf == [0, 1, 2];
    let channels: Vec<Volume<f32>> = channels.into_iter().map(|c| if keep { c } else { c.transpose(tf) }).collect();
    let has_label = label.is_some();
    let label_t = label.map(|l| if keep { l } else { l.transpose(tf) });
    let cropped = crop_to_nonzero_owned(channels, label_t)?;
    let mut data = cropped.data;
    for (c, img) in data.iter_mut().enumerate() {
        let props = plans.foreground_intensity_properties_per_channel.get(&c.to_string());
        normalize_channel(img, Some(&cropped.seg), schemes[c], use_mask[c], props)?;
    }
    Ok(NormalizedCase {
        data,
        seg: cropped.seg,
        has_label,
        properties: CaseProperties {
            spacing: spacing_zyx,
            spacing_transposed: permute(spacing_zyx, tf),
            shape_before_cropping: cropped.shape_before,
            bbox_used_for_cropping: cropped.bbox,
            shape_after_cropping_and_before_resampling: cropped.shape_after,
        },
    })
}

/// Options of [`resample_case_with`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ResampleCaseOptions {
    /// Classes to collect locations for (labels present by default; regions / ignore label
    /// datasets must pass [`ClassSpec::from_labels`]).
    pub classes: ClassSpec,
    /// Label decision rule of the seg resampling.
    pub seg_mode: SegResampleMode,
}

/// Target spacing of a configuration for a case (2d keeps the case's own slice spacing, §4.1).
pub fn target_spacing(config: &ResolvedConfiguration, spacing_transposed: [f64; 3]) -> Result<[f64; 3]> {
    match config.spacing.as_slice() {
        [a, b] => Ok([spacing_transposed[0], *a, *b]),
        [a, b, c] => Ok([*a, *b, *c]),
        other => Err(PrepError::Plans(format!("configuration '{}' has spacing {other:?}", config.name))),
    }
}

/// Step 2 with default options: see [`resample_case_with`].
pub fn resample_case(
    n: &NormalizedCase,
    config: &ResolvedConfiguration,
    plans: &Plans,
    seed: u64,
) -> Result<PreprocessedCase> {
    resample_case_with(n, config, plans, &ResampleCaseOptions::default(), seed)
}

/// Step 2: resample to the configuration's spacing and sample class locations (§4.1 steps 4,
/// 6, 7, 8).
pub fn resample_case_with(
    n: &NormalizedCase,
    config: &ResolvedConfiguration,
    _plans: &Plans,
    opts: &ResampleCaseOptions,
    seed: u64,
) -> Result<PreprocessedCase> {
    let current = n.properties.spacing_transposed;
    let target = target_spacing(config, current)?;
    let shape = n.properties.shape_after_cropping_and_before_resampling;
    let new_shape = compute_new_shape(shape, current, target);
    if numel(new_shape) == 0 {
        return Err(PrepError::Shape(format!(
            "resampling {shape:?} from spacing {current:?} to {target:?} gives an empty shape {new_shape:?}"
        )));
    }
    let data = resample_data(&n.data, new_shape, current, target, &config.resampling_data)?;
    let seg = resample_seg(&n.seg, new_shape, current, target, &config.resampling_seg, opts.seg_mode)?;
    let class_locations =
        if n.has_label { sample_class_locations(&seg, &opts.classes, seed) } else { ClassLocations::default() };
    Ok(PreprocessedCase {
        data,
        seg,
        has_label: n.has_label,
        properties: n.properties.clone(),
        target_spacing: target,
        class_locations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::DatasetFingerprint;
    use crate::planner::{plan_experiment, DatasetInfo, PlannerOptions};
    use crate::plans::IntensityProperties;

    /// Plans for volumes of `shape` (reader order) at `spacing`, with target `target`.
    fn plans(spacing: [f64; 3], shape: [usize; 3], target: [f64; 3], channels: &[&str]) -> Plans {
        let p = IntensityProperties {
            max: 10.0,
            mean: 1.0,
            median: 1.0,
            min: -10.0,
            percentile_00_5: -5.0,
            percentile_99_5: 5.0,
            std: 2.0,
        };
        let fp = DatasetFingerprint {
            spacings: vec![spacing; 4],
            shapes_after_crop: vec![shape; 4],
            foreground_intensity_properties_per_channel: (0..channels.len())
                .map(|c| (c.to_string(), p.clone()))
                .collect(),
            median_relative_size_after_cropping: 1.0,
        };
        let ds = DatasetInfo {
            name: "T".into(),
            channel_names: channels.iter().map(|s| s.to_string()).collect(),
            num_labels_in_json: 3,
            num_training: 4,
        };
        let opts = PlannerOptions { target_spacing_override: Some(target), ..Default::default() };
        plan_experiment(&fp, &ds, &opts).unwrap()
    }

    fn no_nan(c: &PreprocessedCase) {
        for d in &c.data {
            assert!(d.data.iter().all(|v| v.is_finite()));
        }
    }

    fn blob(shape: [usize; 3]) -> (Volume<f32>, Volume<i16>) {
        let mut img = Volume::filled(shape, 0.0f32);
        let mut lab = Volume::filled(shape, 0i16);
        for z in 1..shape[0].saturating_sub(1).max(1) {
            for y in 2..shape[1] - 2 {
                for x in 1..shape[2] - 1 {
                    img.set(z, y, x, (z * 7 + y * 3 + x) as f32 + 1.0);
                    if y > shape[1] / 2 {
                        lab.set(z, y, x, if x % 2 == 0 { 1 } else { 2 });
                    }
                }
            }
        }
        (img, lab)
    }

    #[test]
    fn transposes_crops_normalizes_and_resamples() {
        // Low resolution along the last reader axis: transpose_forward = [2, 0, 1].
        let shape = [12, 14, 6];
        let p = plans([0.8, 0.8, 3.0], shape, [0.8, 0.8, 3.0], &["T2"]);
        assert_eq!(p.transpose_forward, vec![2, 0, 1]);
        let (img, lab) = blob(shape);
        let n = normalize_case(vec![img], Some(lab), [0.8, 0.8, 3.0], &p).unwrap();
        assert_eq!(n.properties.spacing, [0.8, 0.8, 3.0]);
        assert_eq!(n.properties.spacing_transposed, [3.0, 0.8, 0.8]);
        assert_eq!(n.properties.shape_before_cropping, [6, 12, 14]);
        assert_eq!(n.properties.bbox_used_for_cropping, BBox([[1, 5], [1, 11], [2, 12]]));
        let mean: f64 = n.data[0].data.iter().map(|&v| v as f64).sum::<f64>() / n.data[0].len() as f64;
        assert!(mean.abs() < 1e-5);
        let cfg = p.configuration("3d_fullres").unwrap();
        let r = resample_case(&n, &cfg, &p, 3).unwrap();
        assert_eq!(r.shape(), [4, 10, 10]); // same spacing: unchanged
        assert!(r.class_locations.total() > 0);
        // 2d: keeps the slice spacing, resamples in-plane only.
        let mut cfg2 = p.configuration("2d").unwrap();
        cfg2.spacing = vec![1.6, 1.6];
        let r2 = resample_case(&n, &cfg2, &p, 3).unwrap();
        assert_eq!(r2.shape(), [4, 5, 5]);
        assert_eq!(r2.target_spacing, [3.0, 1.6, 1.6]);
        no_nan(&r2);
        for (k, locs) in &r2.class_locations.classes {
            let crate::class_locations::ClassKey::Label(l) = k else { panic!() };
            for q in locs {
                assert_eq!(r2.seg.get(q[1] as usize, q[2] as usize, q[3] as usize), *l);
            }
        }
    }

    #[test]
    fn all_zero_case_background_only_constant_and_single_slice() {
        let shape = [5, 6, 7];
        let p = plans([1.0; 3], shape, [1.0; 3], &["MRI", "CT"]);
        let mut cfg = p.configuration("3d_fullres").unwrap();
        cfg.spacing = vec![0.7, 1.3, 0.9];

        // All zero image and label.
        let z = Volume::filled(shape, 0.0f32);
        let n = normalize_case(vec![z.clone(), z.clone()], Some(Volume::filled(shape, 0)), [1.0; 3], &p).unwrap();
        assert!(n.seg.data.iter().all(|&v| v == -1));
        let r = resample_case(&n, &cfg, &p, 0).unwrap();
        no_nan(&r);
        assert!(r.seg.data.iter().all(|&v| v == -1));
        assert_eq!(r.class_locations.total(), 0);

        // Constant nonzero channel + background-only label.
        let c = Volume::filled(shape, 42.0f32);
        let n = normalize_case(vec![c.clone(), c], Some(Volume::filled(shape, 0)), [1.0; 3], &p).unwrap();
        assert!(n.data[0].data.iter().all(|&v| v == 0.0), "z-score of a constant is 0");
        // CT: clip to 5, (5 - 1) / 2 = 2.
        assert!(n.data[1].data.iter().all(|&v| v == 2.0));
        let r = resample_case(&n, &cfg, &p, 0).unwrap();
        no_nan(&r);
        assert!(r.seg.data.iter().all(|&v| v == 0));

        // No label (inference): seg is the nonzero mask, no class locations.
        let (img, _) = blob(shape);
        let n = normalize_case(vec![img.clone(), img], None, [1.0; 3], &p).unwrap();
        assert!(!n.has_label);
        let r = resample_case(&n, &cfg, &p, 0).unwrap();
        assert!(r.class_locations.classes.is_empty());

        // Single-slice volume.
        let s = [1, 8, 9];
        let p1 = plans([1.0; 3], s, [1.0; 3], &["MRI"]);
        let (img, lab) = blob(s);
        let n = normalize_case(vec![img], Some(lab), [1.0; 3], &p1).unwrap();
        let mut cfg1 = p1.configuration("2d").unwrap();
        cfg1.spacing = vec![0.5, 0.75];
        let r = resample_case(&n, &cfg1, &p1, 1).unwrap();
        assert_eq!(r.shape()[0], 1);
        no_nan(&r);
    }

    #[test]
    fn errors_instead_of_panics() {
        let p = plans([1.0; 3], [4, 4, 4], [1.0; 3], &["MRI"]);
        let v = Volume::filled([4, 4, 4], 1.0f32);
        assert!(normalize_case(vec![v.clone(), v.clone()], None, [1.0; 3], &p).is_err());
        let nan = Volume::filled([4, 4, 4], f32::NAN);
        assert!(normalize_case(vec![nan], None, [1.0; 3], &p).is_err());
        let bad_label = Volume::filled([4, 4, 5], 0i16);
        assert!(normalize_case(vec![v], Some(bad_label), [1.0; 3], &p).is_err());
    }
}

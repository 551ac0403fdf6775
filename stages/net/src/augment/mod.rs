//! The nnU-Net v2 training transform chain (§8.2), in pure Rust on f32 buffers (no tch), so it
//! runs on rayon workers.
//!
//! Every sample is handled in a 3D representation `[C, Z, Y, X]`; 2D configurations use `Z = 1`
//! (the loader's `(1, X, Y)` patches) and dummy-2D / 2D spatial augmentation is a 3D affine that
//! leaves axis 0 alone, which is exactly the per-slice 2D transform.
//!
//! Order (training, `augment = true`): spatial → noise → blur → brightness → contrast →
//! low-res → inverted gamma → gamma → mirror → mask image → (−1 → 0) → DS targets.
//! With `augment = false` (and for validation): (−1 → 0) → DS targets.
//!
//! Every random draw comes from the sample's own [`Rng`], in a fixed order: same seed, same
//! sample.

pub mod cascade;
pub mod intensity;
pub mod patch_size;
pub mod resample;
pub mod spatial;

use nnunet_io::rng::Rng;
use nnunet_prep::plans::ResolvedConfiguration;
use resample::{nearest_exact, numel, scaled_shape};
use spatial::Affine;

/// Probabilities and ranges of the chain (§8.2; nnU-Net's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentProbabilities {
    pub rotation: f64,
    pub scaling: f64,
    pub scale_range: (f64, f64),
    pub noise: f64,
    pub noise_std: (f64, f64),
    pub blur: f64,
    pub blur_per_channel: f64,
    pub blur_sigma: (f64, f64),
    pub brightness: f64,
    pub brightness_range: (f64, f64),
    pub contrast: f64,
    pub contrast_range: (f64, f64),
    pub low_res: f64,
    pub low_res_per_channel: f64,
    pub low_res_zoom: (f64, f64),
    pub inverted_gamma: f64,
    pub gamma: f64,
    pub gamma_range: (f64, f64),
    pub mirror_per_axis: f64,
}

impl Default for AugmentProbabilities {
    fn default() -> Self {
        // §8.2 table.
        AugmentProbabilities {
            rotation: 0.2,
            scaling: 0.2,
            scale_range: (0.7, 1.4),
            noise: 0.1,
            noise_std: (0.0, 0.1),
            blur: 0.2,
            blur_per_channel: 0.5,
            blur_sigma: (0.5, 1.0),
            brightness: 0.15,
            brightness_range: (0.75, 1.25),
            contrast: 0.15,
            contrast_range: (0.75, 1.25),
            low_res: 0.25,
            low_res_per_channel: 0.5,
            low_res_zoom: (0.5, 1.0),
            inverted_gamma: 0.1,
            gamma: 0.3,
            gamma_range: (0.7, 1.5),
            mirror_per_axis: 0.5,
        }
    }
}

/// Everything the chain needs to know about a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Final patch `[Z, Y, X]` (2D: `[1, Y, X]`).
    pub patch_size: [usize; 3],
    /// Enlarged crop the sampler reads (§8.1); equals `patch_size` without augmentation.
    pub initial_patch_size: [usize; 3],
    pub is_2d: bool,
    pub dummy_2d: bool,
    /// Maximum |rotation| (radians).
    pub rotation: f64,
    /// Mirrored axes of the 3D representation (2D configurations: 1, 2).
    pub mirror_axes: Vec<usize>,
    /// Deep-supervision scales in the 3D representation, highest resolution first (one entry
    /// `[1, 1, 1]` without deep supervision).
    pub ds_scales: Vec<[f64; 3]>,
    /// Channels set to 0 where the label is < 0 (`use_mask_for_norm`).
    pub mask_channels: Vec<usize>,
    pub augment: bool,
    pub p: AugmentProbabilities,
    /// Cascade stages: the foreground labels the previous stage's segmentation is one-hot
    /// encoded over, as extra input channels after the image's (empty: not a cascade).
    pub cascade_labels: Vec<i16>,
    pub cascade: cascade::CascadeAugment,
}

impl AugmentConfig {
    /// The configuration's augmentation setup (§8.1, §8.2). `ds_scales` as from
    /// [`crate::unet::deep_supervision_scales`] (config axes), or empty for one output.
    pub fn new(patch: &[usize], ds_scales: &[Vec<f64>], use_mask_for_norm: &[bool], augment: bool) -> AugmentConfig {
        let is_2d = patch.len() == 2;
        let to3 = |v: &[usize]| -> [usize; 3] {
            if v.len() == 2 {
                [1, v[0], v[1]]
            } else {
                [v[0], v[1], v[2]]
            }
        };
        let (rotation, dummy_2d) = patch_size::rotation_and_dummy_2d(patch);
        let initial = if augment { to3(&patch_size::initial_patch_size(patch)) } else { to3(patch) };
        let mut scales: Vec<[f64; 3]> =
            ds_scales.iter().map(|s| if s.len() == 2 { [1.0, s[0], s[1]] } else { [s[0], s[1], s[2]] }).collect();
        if scales.is_empty() {
            scales.push([1.0; 3]);
        }
        AugmentConfig {
            patch_size: to3(patch),
            initial_patch_size: initial,
            is_2d,
            dummy_2d,
            rotation,
            mirror_axes: if is_2d { vec![1, 2] } else { vec![0, 1, 2] },
            ds_scales: scales,
            mask_channels: use_mask_for_norm.iter().enumerate().filter(|(_, &m)| m).map(|(i, _)| i).collect(),
            augment,
            p: AugmentProbabilities::default(),
            cascade_labels: Vec::new(),
            cascade: cascade::CascadeAugment::default(),
        }
    }

    /// The configuration of a cascade stage: the previous stage's segmentation becomes one-hot
    /// channels over `labels` (§8.2 row 13).
    pub fn with_cascade(mut self, labels: Vec<i16>) -> AugmentConfig {
        self.cascade_labels = labels;
        self
    }

    /// Input channels of the network for `image_channels` image channels.
    pub fn network_channels(&self, image_channels: usize) -> usize {
        image_channels + self.cascade_labels.len()
    }

    /// From a resolved configuration; `deep_supervision` picks the DS scales of its architecture.
    pub fn from_configuration(cfg: &ResolvedConfiguration, augment: bool, deep_supervision: bool) -> AugmentConfig {
        let scales = if deep_supervision { crate::unet::deep_supervision_scales(&cfg.architecture) } else { vec![] };
        AugmentConfig::new(&cfg.patch_size, &scales, &cfg.use_mask_for_norm, augment)
    }

    /// The validation variant: same patch and targets, no augmentation.
    pub fn validation(&self) -> AugmentConfig {
        AugmentConfig { augment: false, initial_patch_size: self.patch_size, ..self.clone() }
    }

    /// Mirror axes of the configuration's own axes (what inference mirrors, §7.2 checkpoint).
    /// None without augmentation, as nnU-Net's `nnUNetTrainerNoDA` and `NoMirroring` set
    /// `inference_allowed_mirroring_axes = None`: a network that never saw a mirrored case
    /// predicts mirrored inputs badly, and averaging those passes in erases what it learned.
    pub fn inference_mirror_axes(&self) -> Vec<usize> {
        if !self.augment {
            vec![]
        } else if self.is_2d {
            vec![0, 1]
        } else {
            vec![0, 1, 2]
        }
    }

    /// Target shapes per DS scale.
    pub fn target_shapes(&self) -> Vec<[usize; 3]> {
        self.ds_scales.iter().map(|s| scaled_shape(self.patch_size, *s)).collect()
    }
}

/// A cropped sample before augmentation: `[C, Z, Y, X]` data and `[Z, Y, X]` seg.
#[derive(Clone, Debug, PartialEq)]
pub struct RawSample {
    pub data: Vec<f32>,
    pub seg: Vec<i16>,
    pub channels: usize,
    pub shape: [usize; 3],
    /// Cascade: the previous stage's segmentation of the same box (−1 outside the image).
    pub prev: Option<Vec<i16>>,
}

/// An augmented sample: `[C, patch]` data and one label map per DS scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub data: Vec<f32>,
    pub targets: Vec<Vec<i16>>,
}

/// Which transforms fired (for tests and statistics).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    pub rotation: Option<[f64; 3]>,
    pub scale: Option<f64>,
    pub noise: bool,
    pub blur: bool,
    pub brightness: bool,
    pub contrast: bool,
    pub low_res: bool,
    pub inverted_gamma: bool,
    pub gamma: bool,
    pub mirrored: [bool; 3],
}

/// Runs the chain on one sample.
pub fn augment_sample(cfg: &AugmentConfig, raw: RawSample, rng: &mut Rng) -> Sample {
    augment_sample_traced(cfg, raw, rng).0
}

/// [`augment_sample`], also returning which transforms fired.
pub fn augment_sample_traced(cfg: &AugmentConfig, raw: RawSample, rng: &mut Rng) -> (Sample, Applied) {
    let mut ap = Applied::default();
    let c = raw.channels;
    let p = cfg.patch_size;
    let affine = if cfg.augment { spatial_params(cfg, rng, &mut ap) } else { None };
    let prev = raw.prev.map(|pv| match &affine {
        Some(a) => spatial::warp(&[], &pv, 0, raw.shape, p, a).1,
        None if raw.shape == p => pv,
        None => spatial::center_crop(&[], &pv, 0, raw.shape, p).1,
    });
    let (data, seg) = match affine {
        Some(a) => spatial::warp(&raw.data, &raw.seg, c, raw.shape, p, &a),
        None if raw.shape == p => (raw.data, raw.seg),
        None => spatial::center_crop(&raw.data, &raw.seg, c, raw.shape, p),
    };
    (finish(cfg, data, seg, prev, c, rng, &mut ap), ap)
}

/// The previous stage's segmentation of a box of `source`, required for cascade samples.
fn read_prev(
    cfg: &AugmentConfig,
    source: &dyn crate::sampler::PatchSource,
    lo: [i64; 3],
    size: [usize; 3],
) -> crate::error::Result<Option<Vec<i16>>> {
    if cfg.cascade_labels.is_empty() {
        return Ok(None);
    }
    source.read_prev_stage(lo, size)?.map(Some).ok_or_else(|| crate::error::NetError::Case {
        case: source.id().to_string(),
        msg: "has no previous-stage segmentation, which a cascade stage needs".into(),
    })
}

/// The chain on the crop of `source` whose (enlarged) box starts at `lo`: draws the spatial
/// parameters first and then reads only what they need (the whole enlarged box for a warp,
/// only the final centre box otherwise). Same result as reading the box and calling
/// [`augment_sample`] with the same RNG.
pub fn augment_from_source(
    cfg: &AugmentConfig,
    source: &dyn crate::sampler::PatchSource,
    lo: [i64; 3],
    rng: &mut Rng,
) -> crate::error::Result<(Sample, Applied)> {
    let mut ap = Applied::default();
    let c = source.num_channels();
    let (s, p) = (cfg.initial_patch_size, cfg.patch_size);
    let affine = if cfg.augment { spatial_params(cfg, rng, &mut ap) } else { None };
    let (data, seg, prev) = match affine {
        Some(a) => {
            let (d, g) = source.read_patch(lo, s)?;
            let prev = read_prev(cfg, source, lo, s)?.map(|pv| spatial::warp(&[], &pv, 0, s, p, &a).1);
            let (d, g) = spatial::warp(&d, &g, c, s, p, &a);
            (d, g, prev)
        }
        None => {
            // The integer centre crop of spatial::center_crop, read directly.
            let start: [i64; 3] = std::array::from_fn(|d| lo[d] + (s[d] / 2) as i64 - (p[d] / 2) as i64);
            let (d, g) = source.read_patch(start, p)?;
            (d, g, read_prev(cfg, source, start, p)?)
        }
    };
    Ok((finish(cfg, data, seg, prev, c, rng, &mut ap), ap))
}

/// Steps 3–15 on the final-size patch.
fn finish(
    cfg: &AugmentConfig,
    mut data: Vec<f32>,
    mut seg: Vec<i16>,
    mut prev: Option<Vec<i16>>,
    c: usize,
    rng: &mut Rng,
    ap: &mut Applied,
) -> Sample {
    let p = cfg.patch_size;
    let n = numel(p);
    if cfg.augment {
        intensity_steps(cfg, &mut data, c, rng, ap);
        // Step 10: mirror.
        for &axis in &cfg.mirror_axes {
            if rng.next_f64() < cfg.p.mirror_per_axis {
                ap.mirrored[axis] = true;
                for ch in 0..c {
                    mirror(&mut data[ch * n..(ch + 1) * n], p, axis);
                }
                mirror(&mut seg, p, axis);
                if let Some(pv) = prev.as_mut() {
                    mirror(pv, p, axis);
                }
            }
        }
        // Step 11: mask image.
        for &ch in &cfg.mask_channels {
            if ch < c {
                for (v, &s) in data[ch * n..(ch + 1) * n].iter_mut().zip(&seg) {
                    if s < 0 {
                        *v = 0.0;
                    }
                }
            }
        }
    }
    // Step 12: −1 → 0.
    seg.iter_mut().for_each(|s| {
        if *s < 0 {
            *s = 0
        }
    });
    // Step 13 (cascade): the previous stage's labels as one-hot channels (−1 and 0 encode as
    // nothing), perturbed in training.
    if let Some(pv) = prev {
        let mut oh = cascade::one_hot(&pv, &cfg.cascade_labels);
        if cfg.augment {
            let in_plane = cfg.is_2d;
            cascade::augment_one_hot(&mut oh, cfg.cascade_labels.len(), p, in_plane, &cfg.cascade, rng);
        }
        data.extend_from_slice(&oh);
    }
    // Step 15: DS targets.
    let targets = cfg
        .ds_scales
        .iter()
        .map(|sc| {
            let o = scaled_shape(p, *sc);
            if o == p {
                seg.clone()
            } else {
                nearest_exact(&seg, p, o)
            }
        })
        .collect();
    Sample { data, targets }
}

/// Step 1's random draws: `Some(affine)` when rotation or scaling fires.
fn spatial_params(cfg: &AugmentConfig, rng: &mut Rng, ap: &mut Applied) -> Option<Affine> {
    let pr = &cfg.p;
    let do_rot = rng.next_f64() < pr.rotation;
    let do_scale = rng.next_f64() < pr.scaling;
    let in_plane = cfg.is_2d || cfg.dummy_2d;
    let mut angles = [0.0; 3];
    if do_rot {
        if in_plane {
            // Dummy-2D / 2D: one in-plane angle (the 2D transform's rotation of (axis1, axis2)).
            angles[0] = rng.uniform(-cfg.rotation, cfg.rotation);
        } else {
            for a in &mut angles {
                *a = rng.uniform(-cfg.rotation, cfg.rotation);
            }
        }
        ap.rotation = Some(angles);
    }
    let mut scales = [1.0; 3];
    if do_scale {
        // Synchronised across axes (p_synchronize_scaling_across_axes = 1).
        let f = rng.uniform(pr.scale_range.0, pr.scale_range.1);
        scales = if in_plane { [1.0, f, f] } else { [f; 3] };
        ap.scale = Some(f);
    }
    (do_rot || do_scale).then(|| Affine::from_angles_scales(angles, scales))
}

fn intensity_steps(cfg: &AugmentConfig, data: &mut [f32], c: usize, rng: &mut Rng, ap: &mut Applied) {
    let pr = &cfg.p;
    let p = cfg.patch_size;
    let n = numel(p);
    // Step 3: Gaussian noise, one σ for all channels.
    if rng.next_f64() < pr.noise {
        ap.noise = true;
        let sigma = rng.uniform(pr.noise_std.0, pr.noise_std.1);
        intensity::add_gaussian_noise(data, sigma, rng);
    }
    // Step 4: blur, per channel p 0.5, σ per axis.
    if rng.next_f64() < pr.blur {
        ap.blur = true;
        for ch in 0..c {
            if rng.next_f64() < pr.blur_per_channel {
                let mut sig = [None; 3];
                for (d, sg) in sig.iter_mut().enumerate() {
                    let s = rng.uniform(pr.blur_sigma.0, pr.blur_sigma.1);
                    if !(cfg.is_2d && d == 0) {
                        *sg = Some(s);
                    }
                }
                let mut v = data[ch * n..(ch + 1) * n].to_vec();
                intensity::gaussian_blur(&mut v, p, sig);
                data[ch * n..(ch + 1) * n].copy_from_slice(&v);
            }
        }
    }
    // Step 5: multiplicative brightness per channel.
    if rng.next_f64() < pr.brightness {
        ap.brightness = true;
        for ch in 0..c {
            let m = intensity::bg_contrast(rng, pr.brightness_range.0, pr.brightness_range.1);
            intensity::brightness(&mut data[ch * n..(ch + 1) * n], m);
        }
    }
    // Step 6: contrast per channel (preserve range).
    if rng.next_f64() < pr.contrast {
        ap.contrast = true;
        for ch in 0..c {
            let f = intensity::bg_contrast(rng, pr.contrast_range.0, pr.contrast_range.1);
            intensity::contrast(&mut data[ch * n..(ch + 1) * n], f);
        }
    }
    // Step 7: low resolution, per channel p 0.5, one zoom for all axes (axis 0 kept in 2D and
    // dummy-2D).
    if rng.next_f64() < pr.low_res {
        ap.low_res = true;
        for ch in 0..c {
            if rng.next_f64() < pr.low_res_per_channel {
                let z = rng.uniform(pr.low_res_zoom.0, pr.low_res_zoom.1);
                let zoom = if cfg.is_2d || cfg.dummy_2d { [1.0, z, z] } else { [z; 3] };
                let mut v = data[ch * n..(ch + 1) * n].to_vec();
                intensity::simulate_low_resolution(&mut v, p, zoom);
                data[ch * n..(ch + 1) * n].copy_from_slice(&v);
            }
        }
    }
    // Steps 8, 9: inverted gamma (p 0.1), gamma (p 0.3), retain stats, per channel.
    for (prob, inv) in [(pr.inverted_gamma, true), (pr.gamma, false)] {
        if rng.next_f64() < prob {
            if inv {
                ap.inverted_gamma = true;
            } else {
                ap.gamma = true;
            }
            for ch in 0..c {
                let g = intensity::bg_contrast(rng, pr.gamma_range.0, pr.gamma_range.1);
                intensity::gamma(&mut data[ch * n..(ch + 1) * n], g, inv);
            }
        }
    }
}

/// Flips a `[Z, Y, X]` buffer along `axis` in place.
pub fn mirror<T: Copy>(x: &mut [T], s: [usize; 3], axis: usize) {
    match axis {
        0 => {
            let pl = s[1] * s[2];
            for z in 0..s[0] / 2 {
                let (a, b) = x.split_at_mut((s[0] - 1 - z) * pl);
                a[z * pl..(z + 1) * pl].swap_with_slice(&mut b[..pl]);
            }
        }
        1 => {
            let w = s[2];
            for plane in x.chunks_exact_mut(s[1] * w) {
                for y in 0..s[1] / 2 {
                    let (a, b) = plane.split_at_mut((s[1] - 1 - y) * w);
                    a[y * w..(y + 1) * w].swap_with_slice(&mut b[..w]);
                }
            }
        }
        _ => x.chunks_exact_mut(s[2]).for_each(|r| r.reverse()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(c: usize, s: [usize; 3]) -> RawSample {
        let n = numel(s);
        RawSample {
            prev: None,
            data: (0..c * n).map(|i| ((i * 31) % 97) as f32 / 7.0).collect(),
            seg: (0..n).map(|i| [0, 1, 2, -1][(i / 5) % 4]).collect(),
            channels: c,
            shape: s,
        }
    }

    #[test]
    fn inference_mirrors_only_what_training_mirrored() {
        let on = AugmentConfig::new(&[16, 16], &[], &[false], true);
        assert_eq!(on.inference_mirror_axes(), vec![0, 1]);
        assert_eq!(AugmentConfig::new(&[8, 8, 8], &[], &[false], true).inference_mirror_axes(), vec![0, 1, 2]);
        // no augmentation: no mirroring at inference (nnU-Net's NoDA trainer)
        assert!(AugmentConfig::new(&[8, 8, 8], &[], &[false], false).inference_mirror_axes().is_empty());
        assert!(on.validation().inference_mirror_axes().is_empty());
    }

    #[test]
    fn mirror_flips_exactly() {
        let s = [2, 3, 4];
        let v: Vec<i32> = (0..24).collect();
        for axis in 0..3 {
            let mut m = v.clone();
            mirror(&mut m, s, axis);
            for z in 0..2 {
                for y in 0..3 {
                    for x in 0..4 {
                        let (sz, sy, sx) = match axis {
                            0 => (1 - z, y, x),
                            1 => (z, 2 - y, x),
                            _ => (z, y, 3 - x),
                        };
                        assert_eq!(m[(z * 3 + y) * 4 + x], v[(sz * 3 + sy) * 4 + sx]);
                    }
                }
            }
            mirror(&mut m, s, axis);
            assert_eq!(m, v);
        }
    }

    #[test]
    fn deterministic_and_labels_in_set() {
        let cfg = AugmentConfig::new(&[8, 12, 10], &[vec![1.0, 1.0, 1.0], vec![0.5, 0.5, 0.5]], &[false, true], true);
        assert_eq!(cfg.initial_patch_size, [15, 18, 14]); // peer get_patch_size
        let mut fired = Applied::default();
        for seed in 0..60 {
            let r = raw(2, cfg.initial_patch_size);
            let (a, ap) = augment_sample_traced(&cfg, r.clone(), &mut Rng::new(seed));
            let b = augment_sample(&cfg, r, &mut Rng::new(seed));
            assert_eq!(a, b);
            assert_eq!(a.data.len(), 2 * 8 * 12 * 10);
            assert_eq!(a.targets[0].len(), 960);
            assert_eq!(a.targets[1].len(), 4 * 6 * 5);
            assert!(a.targets.iter().flatten().all(|v| [0, 1, 2].contains(v)));
            assert!(a.data.iter().all(|v| v.is_finite()));
            fired.noise |= ap.noise;
            fired.blur |= ap.blur;
            fired.low_res |= ap.low_res;
            fired.gamma |= ap.gamma;
            fired.rotation = fired.rotation.or(ap.rotation);
        }
        assert!(fired.noise && fired.blur && fired.low_res && fired.gamma && fired.rotation.is_some());
    }

    #[test]
    fn augment_off_is_crop_and_label_cleanup() {
        let cfg = AugmentConfig::new(&[4, 6, 6], &[vec![1.0, 1.0, 1.0], vec![1.0, 0.5, 0.5]], &[true], false);
        assert_eq!(cfg.initial_patch_size, cfg.patch_size);
        let r = raw(1, [4, 6, 6]);
        let s = augment_sample(&cfg, r.clone(), &mut Rng::new(0));
        assert_eq!(s.data, r.data); // no masking, no intensity change
        let cleaned: Vec<i16> = r.seg.iter().map(|&v| v.max(0)).collect();
        assert_eq!(s.targets[0], cleaned);
        assert_eq!(s.targets[1], nearest_exact(&cleaned, [4, 6, 6], [4, 3, 3]));
    }

    #[test]
    fn masking_zeroes_outside_label() {
        let mut cfg = AugmentConfig::new(&[4, 6, 6], &[], &[true], true);
        cfg.p = AugmentProbabilities {
            rotation: 0.0,
            scaling: 0.0,
            noise: 0.0,
            blur: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            low_res: 0.0,
            inverted_gamma: 0.0,
            gamma: 0.0,
            mirror_per_axis: 0.0,
            ..AugmentProbabilities::default()
        };
        let r = raw(1, cfg.initial_patch_size);
        let s = augment_sample(&cfg, r.clone(), &mut Rng::new(0));
        let (cd, cs) = spatial::center_crop(&r.data, &r.seg, 1, r.shape, cfg.patch_size);
        for i in 0..cd.len() {
            assert_eq!(s.data[i], if cs[i] < 0 { 0.0 } else { cd[i] });
            assert_eq!(s.targets[0][i], cs[i].max(0));
        }
    }

    #[test]
    fn two_d_and_dummy_2d_configs() {
        let cfg = AugmentConfig::new(&[56, 40], &[vec![1.0, 1.0], vec![0.5, 0.5]], &[false], true);
        assert!(cfg.is_2d);
        assert_eq!(cfg.initial_patch_size, [1, 65, 65]);
        assert_eq!(cfg.mirror_axes, vec![1, 2]);
        assert_eq!(cfg.target_shapes(), vec![[1, 56, 40], [1, 28, 20]]);
        for seed in 0..30 {
            let s = augment_sample(&cfg, raw(1, cfg.initial_patch_size), &mut Rng::new(seed));
            assert_eq!(s.data.len(), 56 * 40);
        }
        let cfg = AugmentConfig::new(&[4, 32, 24], &[], &[false], true);
        assert!(cfg.dummy_2d);
        assert_eq!(cfg.initial_patch_size, [4, 37, 37]); // peer: [37, 37, 37], axis 0 kept
                                                         // In-plane transforms keep every slice's content within the same slice: a volume whose
                                                         // slices are constant (value = slice index) stays slice-constant under rotation/scaling.
        let s = cfg.initial_patch_size;
        let n = numel(s);
        let mut r = RawSample { data: vec![0.0; n], seg: vec![0; n], channels: 1, shape: s, prev: None };
        for z in 0..s[0] {
            for i in 0..s[1] * s[2] {
                r.data[z * s[1] * s[2] + i] = z as f32 + 1.0;
            }
        }
        let mut c2 = cfg.clone();
        c2.p = AugmentProbabilities { rotation: 1.0, scaling: 1.0, ..AugmentProbabilities::default() };
        c2.p.noise = 0.0;
        c2.p.blur = 0.0;
        c2.p.brightness = 0.0;
        c2.p.contrast = 0.0;
        c2.p.low_res = 0.0;
        c2.p.gamma = 0.0;
        c2.p.inverted_gamma = 0.0;
        c2.p.mirror_per_axis = 0.0;
        let out = augment_sample(&c2, r, &mut Rng::new(5));
        let pl = 32 * 24;
        for z in 0..4 {
            // Centre voxel of each slice is inside the rotated/scaled input.
            let v = out.data[z * pl + 16 * 24 + 12];
            assert!((v - (z as f32 + 1.0)).abs() < 1e-5, "{z}: {v}");
        }
    }

    #[test]
    fn reading_from_source_equals_crop_then_augment() {
        use crate::sampler::{MemoryCase, PatchSource};
        let cfg = AugmentConfig::new(&[8, 12, 10], &[vec![1.0; 3], vec![0.5; 3]], &[true], true);
        let s = [20usize, 22, 18];
        let r = raw(1, s);
        let case = MemoryCase::new("c", r.data.clone(), r.seg.clone(), 1, s);
        for seed in 0..40 {
            let lo = [seed as i64 % 7 - 3, 2, -1];
            let (d, g) = case.read_patch(lo, cfg.initial_patch_size).unwrap();
            let raw = RawSample { data: d, seg: g, channels: 1, shape: cfg.initial_patch_size, prev: None };
            let a = augment_sample(&cfg, raw, &mut Rng::new(seed));
            let (b, _) = augment_from_source(&cfg, &case, lo, &mut Rng::new(seed)).unwrap();
            assert_eq!(a, b, "seed {seed}");
        }
    }

    #[test]
    fn scaling_identity_at_factor_one() {
        // A warp with the identity affine on an input whose enlargement is even equals the crop.
        let s = [6, 8, 10];
        let r = raw(1, s);
        let (wd, wg) = spatial::warp(&r.data, &r.seg, 1, s, [4, 6, 8], &Affine::from_angles_scales([0.0; 3], [1.0; 3]));
        let (cd, cg) = spatial::center_crop(&r.data, &r.seg, 1, s, [4, 6, 8]);
        assert_eq!(wd, cd);
        assert_eq!(wg, cg);
    }
}

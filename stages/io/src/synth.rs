//! A synthetic nnU-Net v2 raw dataset with realistic content, for tests, demos and
//! benchmarks without real data.
//!
//! Each case is a body (CT: an elliptical cylinder of soft tissue with a fat layer, ribs
//! and a spine in air at -1000 HU; MR: a head ellipsoid with a skull, a smooth
//! multiplicative bias field, positive intensities and exactly 0 outside, so cropping to
//! the non-zero region matters) holding organ-like blobs (ellipsoids deformed by smooth
//! noise) as labels: odd labels are organs, each even label a lesion nested in the organ
//! before it, successive organs placed side by side. Every label has its own intensity
//! offset per channel (channel 1 is a different contrast), the label intensity map is
//! blurred (partial-volume edges) before smooth texture and voxel noise are added. Shapes
//! vary per case (±15 % by default), the spacing is anisotropic, and every case has a
//! rotated affine with a non-zero origin (qform and sform consistent).
//!
//! Output is deterministic for a seed: files are byte-identical between runs.

mod field;

use crate::image::{self, ImageError, ImageFormat, ImageHeader, Pixels};
use crate::nifti::{write_nifti, DataType, NiftiError, NiftiHeader};
use crate::rng::Rng;
use crate::volume::{numel, Volume};
use field::{gaussian_blur, Blob, SmoothNoise};
use rayon::prelude::*;
use serde_json::{json, Map, Value};
use std::io;
use std::path::{Path, PathBuf};

/// The imaging modality simulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modality {
    /// CT in Hounsfield units, stored as int16; channel names "CT".
    Ct,
    /// MR in arbitrary positive units, stored as float32; channel names "T2", "ADC", ...
    Mr,
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthOptions {
    /// Dataset name written to dataset.json; the part after the first `_`, lowercased,
    /// prefixes the case ids (`Dataset999_Synth` -> `synth_000`).
    pub name: String,
    /// Training cases (`imagesTr`, `labelsTr`).
    pub cases: usize,
    /// Test cases (`imagesTs`, `labelsTs`).
    pub test_cases: usize,
    pub modality: Modality,
    /// Input channels (1 or more; channel 1 and up are other contrasts).
    pub channels: usize,
    /// Foreground labels (1 to 254).
    pub labels: usize,
    /// Nominal spacing `[z, y, x]` in mm.
    pub spacing: [f64; 3],
    /// Nominal shape `[z, y, x]`.
    pub shape: [usize; 3],
    /// Relative per-case variation of each shape axis (0.15 = ±15 %).
    pub shape_jitter: f64,
    /// Relative per-case variation of each spacing axis.
    pub spacing_jitter: f64,
    /// Size of the lesions (even labels) relative to the default (radii 0.35-0.5 of their
    /// organ's): 1.5 gives radii 0.53-0.75, lesions a small network learns in minutes.
    pub lesion_scale: f64,
    pub seed: u64,
    /// File ending, i.e. the format written (any of [`crate::image::SUPPORTED_FILE_ENDINGS`]).
    /// `.png`/`.bmp` write 2D cases (each volume's slice with the most foreground; 3 channels
    /// make one RGB file); `.tif` writes stacks with the `CASE.json` spacing sidecar.
    pub file_ending: String,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            name: "Dataset999_Synth".into(),
            cases: 12,
            test_cases: 2,
            modality: Modality::Ct,
            channels: 1,
            labels: 2,
            spacing: [3.0, 0.8, 0.8],
            shape: [24, 64, 64],
            shape_jitter: 0.15,
            spacing_jitter: 0.05,
            lesion_scale: 1.0,
            seed: 0,
            file_ending: ".nii.gz".into(),
        }
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synthetic dataset options: {0}")]
    Options(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Nifti(#[from] NiftiError),
    #[error(transparent)]
    Image(#[from] ImageError),
}

type Result<T> = std::result::Result<T, SynthError>;

impl SynthOptions {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SynthError::Options(m));
        if self.channels == 0 {
            return bad("channels must be at least 1".into());
        }
        if !(1..=254).contains(&self.labels) {
            return bad(format!("labels must be 1 to 254 (uint8 label files), got {}", self.labels));
        }
        if self.shape.iter().any(|&s| !(4..=2048).contains(&s)) {
            return bad(format!("every shape axis must be 4 to 2048, got {:?}", self.shape));
        }
        if self.spacing.iter().any(|&s| !(s.is_finite() && s > 0.0)) {
            return bad(format!("spacing must be positive, got {:?}", self.spacing));
        }
        if !(0.0..0.5).contains(&self.shape_jitter) || !(0.0..0.5).contains(&self.spacing_jitter) {
            return bad("jitters must be in [0, 0.5)".into());
        }
        if !(self.lesion_scale.is_finite() && (0.2..=2.0).contains(&self.lesion_scale)) {
            return bad(format!(
                "lesion scale must be 0.2 to 2 (radii relative to the organ's), got {}",
                self.lesion_scale
            ));
        }
        if self.cases + self.test_cases > 100_000 {
            return bad("at most 100000 cases".into());
        }
        if ImageFormat::from_ending(&self.file_ending).is_none() {
            return bad(format!(
                "format \"{}\" is not supported ({})",
                self.file_ending,
                crate::image::supported_endings_text()
            ));
        }
        if self.is_2d() && self.channels > 1 && !(self.channels == 3 && self.file_ending == ".png") {
            return bad("2D pictures have 1 channel, or 3 (RGB) for .png".into());
        }
        Ok(())
    }

    /// Whether the format writes 2D pictures.
    pub fn is_2d(&self) -> bool {
        ImageFormat::from_ending(&self.file_ending) == Some(ImageFormat::Natural2D)
    }

    /// Case id prefix derived from the name.
    pub fn case_prefix(&self) -> String {
        let tail = self.name.split_once('_').map_or(self.name.as_str(), |(_, t)| t);
        let p: String =
            tail.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        if p.is_empty() {
            "case".into()
        } else {
            p
        }
    }

    /// Channel names written to dataset.json.
    pub fn channel_names(&self) -> Vec<String> {
        const MR: [&str; 4] = ["T2", "ADC", "T1", "FLAIR"];
        if self.is_2d() && self.channels == 3 {
            return ["R", "G", "B"].map(String::from).to_vec();
        }
        (0..self.channels)
            .map(|c| match self.modality {
                Modality::Ct => "CT".to_string(),
                Modality::Mr => MR.get(c).map_or_else(|| format!("MR{c}"), |s| s.to_string()),
            })
            .collect()
    }

    /// Label names: `organ_1`, `lesion_1`, `organ_2`, ... (odd labels organs, even lesions).
    pub fn label_names(&self) -> Vec<String> {
        (1..=self.labels)
            .map(|k| if k % 2 == 1 { format!("organ_{}", k.div_ceil(2)) } else { format!("lesion_{}", k / 2) })
            .collect()
    }
}

/// Writes a synthetic nnU-Net v2 raw dataset into `out` (created if needed): `dataset.json`,
/// `imagesTr/CASE_000c.nii.gz`, `labelsTr/CASE.nii.gz` (uint8) and, for test cases,
/// `imagesTs`/`labelsTs`. Files of the same names are replaced; nothing else is removed.
pub fn generate(out: &Path, o: &SynthOptions) -> Result<()> {
    o.validate()?;
    let dirs: &[&str] =
        if o.test_cases > 0 { &["imagesTr", "labelsTr", "imagesTs", "labelsTs"] } else { &["imagesTr", "labelsTr"] };
    for d in dirs {
        let p = out.join(d);
        std::fs::create_dir_all(&p).map_err(|source| SynthError::Io { path: p, source })?;
    }
    let style = Style::new(o);
    let prefix = o.case_prefix();
    (0..o.cases + o.test_cases).into_par_iter().try_for_each(|i| {
        let (images, labels) = if i < o.cases { ("imagesTr", "labelsTr") } else { ("imagesTs", "labelsTs") };
        let id = format!("{prefix}_{i:03}");
        let case = make_case(o, &style, Rng::derive(o.seed, i as u64));
        if o.file_ending == ".nii.gz" || o.file_ending == ".nii" {
            for (c, ch) in case.channels.iter().enumerate() {
                let p = out.join(images).join(format!("{id}_{c:04}{}", o.file_ending));
                match o.modality {
                    Modality::Ct => {
                        write_nifti(&p, &case.header, &ch.map(|v| v.round().clamp(-1024.0, 3071.0) as i16))?
                    }
                    Modality::Mr => write_nifti(&p, &case.header, ch)?,
                }
            }
            write_nifti(&out.join(labels).join(format!("{id}{}", o.file_ending)), &case.header, &case.label)?;
        } else {
            write_case_as(o, &out.join(images), &out.join(labels), &id, case)?;
        }
        Ok::<(), SynthError>(())
    })?;
    let json_path = out.join("dataset.json");
    let text = serde_json::to_string_pretty(&dataset_json(o)).unwrap_or_default();
    std::fs::write(&json_path, text + "\n").map_err(|source| SynthError::Io { path: json_path, source })
}

/// Writes one case in a non-NIfTI format: the geometry of its NIfTI header as ITK sees it.
/// Pictures get the slice with the most foreground (intensities quantised to 16 bits, or to
/// 8 bits for an RGB file); TIFF stacks the `CASE.json` spacing sidecar beside images and label.
fn write_case_as(o: &SynthOptions, images: &Path, labels: &Path, id: &str, case: CaseData) -> Result<()> {
    let ending = o.file_ending.as_str();
    let header = ImageHeader::of_nifti(&case.header);
    let quantise = |v: f32| -> f32 {
        match o.modality {
            Modality::Ct => (v.round() + 1024.0).clamp(0.0, 4095.0),
            Modality::Mr => v.round().clamp(0.0, 65535.0),
        }
    };
    if o.is_2d() {
        let [d, h, w] = case.label.shape;
        let plane = h * w;
        let z = (0..d)
            .max_by_key(|&z| case.label.data[z * plane..(z + 1) * plane].iter().filter(|&&l| l > 0).count())
            .unwrap_or(0);
        let r = z * plane..(z + 1) * plane;
        let mut g = image::Geometry::plain(2, [1, h, w], [1.0; 3]);
        g.direction = image::geometry::IDENTITY;
        let h2 = ImageHeader::new(ImageFormat::Natural2D, g);
        if o.channels == 3 {
            let scale =
                |v: f32| (quantise(v) / if o.modality == Modality::Ct { 16.0 } else { 4.0 }).clamp(0.0, 255.0) as u8;
            let planes: Vec<Vec<u8>> =
                case.channels.iter().map(|c| c.data[r.clone()].iter().map(|&v| scale(v)).collect()).collect();
            image::raster::write_rgb_png(&images.join(format!("{id}_0000{ending}")), h, w, &planes)?;
        } else {
            for (c, ch) in case.channels.iter().enumerate() {
                let p = images.join(format!("{id}_{c:04}{ending}"));
                if ending == ".bmp" {
                    let v: Vec<u8> =
                        ch.data[r.clone()].iter().map(|&v| (quantise(v) / 16.0).clamp(0.0, 255.0) as u8).collect();
                    image::write_image(&p, &h2, [1, h, w], Pixels::U8(&v))?;
                } else {
                    let v: Vec<u16> = ch.data[r.clone()].iter().map(|&v| quantise(v) as u16).collect();
                    image::write_image(&p, &h2, [1, h, w], Pixels::U16(&v))?;
                }
            }
        }
        let lab: Vec<u8> = case.label.data[r].to_vec();
        return Ok(image::write_image(&labels.join(format!("{id}{ending}")), &h2, [1, h, w], Pixels::U8(&lab))?);
    }
    // Tiff3DIO reads the spacing of `CASE_0000.tif` from the case's `CASE.json`.
    let tiff = image::ImageFormat::from_ending(ending) == Some(ImageFormat::Tiff);
    let case_sidecar = images.join(format!("{id}.json"));
    for (c, ch) in case.channels.iter().enumerate() {
        let p = images.join(format!("{id}_{c:04}{ending}"));
        let ct: Vec<i16>;
        let px = match o.modality {
            Modality::Ct => {
                ct = ch.data.iter().map(|v| v.round().clamp(-1024.0, 3071.0) as i16).collect();
                Pixels::I16(&ct)
            }
            Modality::Mr => Pixels::F32(&ch.data),
        };
        if tiff {
            image::raster::write_tiff_with_sidecar(&p, &header.geometry, px, Some(&case_sidecar))?
        } else {
            image::write_image(&p, &header, ch.shape, px)?
        }
    }
    Ok(image::write_image(
        &labels.join(format!("{id}{ending}")),
        &header,
        case.label.shape,
        Pixels::U8(&case.label.data),
    )?)
}

fn dataset_json(o: &SynthOptions) -> Value {
    let channels: Map<String, Value> =
        o.channel_names().into_iter().enumerate().map(|(i, n)| (i.to_string(), Value::from(n))).collect();
    let mut labels = Map::new();
    labels.insert("background".into(), Value::from(0));
    for (k, n) in o.label_names().into_iter().enumerate() {
        labels.insert(n, Value::from(k + 1));
    }
    json!({
        "name": o.name,
        "description": format!("Synthetic {} dataset generated by nnunet-io (seed {})",
            match o.modality { Modality::Ct => "CT", Modality::Mr => "MR" }, o.seed),
        "reference": "nnunet-io synth",
        "licence": "CC0-1.0",
        "tensorImageSize": "3D",
        "channel_names": channels,
        "labels": labels,
        "numTraining": o.cases,
        "numTest": o.test_cases,
        "file_ending": o.file_ending,
    })
}

/// Dataset-wide intensities, the same for every case so that the task is learnable.
struct Style {
    /// `[channel][class]`: classes are outside, tissue, bone, fat, then labels 1..=L.
    values: Vec<Vec<f64>>,
}

const OUTSIDE: usize = 0;
const TISSUE: usize = 1;
const BONE: usize = 2;
const FAT: usize = 3;
const FIRST_LABEL: usize = 4;

impl Style {
    fn new(o: &SynthOptions) -> Style {
        let mut rng = Rng::derive(o.seed, u64::MAX);
        let values = (0..o.channels)
            .map(|c| {
                let (outside, tissue, bone, fat, lo, hi) = match o.modality {
                    Modality::Ct => (-1000.0, 35.0, 700.0, -100.0, 45.0, 110.0),
                    Modality::Mr => (0.0, 300.0, 110.0, 520.0, 70.0, 170.0),
                };
                // Channel 1 and up: another contrast, tissue and fat shifted, label signs flipped.
                let shift = c as f64 * 0.15;
                let mut v = vec![outside, tissue * (1.0 + shift), bone, fat * (1.0 - shift)];
                for k in 1..=o.labels {
                    let sign = if (k + c) % 2 == 1 { 1.0 } else { -1.0 };
                    let mag = rng.uniform(lo, hi) * (1.0 + 0.3 * ((k - 1) / 2) as f64);
                    v.push(tissue + sign * mag);
                }
                v
            })
            .collect();
        Style { values }
    }
}

struct CaseData {
    channels: Vec<Volume<f32>>,
    label: Volume<u8>,
    header: NiftiHeader,
}

fn make_case(o: &SynthOptions, style: &Style, mut rng: Rng) -> CaseData {
    let shape: [usize; 3] = std::array::from_fn(|a| {
        ((o.shape[a] as f64) * rng.uniform(1.0 - o.shape_jitter, 1.0 + o.shape_jitter)).round().max(4.0) as usize
    });
    let spacing: [f64; 3] = std::array::from_fn(|a| {
        let s = o.spacing[a] * rng.uniform(1.0 - o.spacing_jitter, 1.0 + o.spacing_jitter);
        (s * 1000.0).round() / 1000.0
    });
    let extent: [f64; 3] = std::array::from_fn(|a| shape[a] as f64 * spacing[a]);
    let (body, head_like) = match o.modality {
        Modality::Ct => {
            let radii = [1e9, 0.42 * extent[1] * rng.uniform(0.9, 1.05), 0.45 * extent[2] * rng.uniform(0.9, 1.05)];
            (Blob { center: [0.0; 3], radii, amp: 0.06, noise: SmoothNoise::new(&mut rng, [2, 3, 3]) }, false)
        }
        Modality::Mr => {
            let radii = [0.40 * extent[0], 0.40 * extent[1], 0.38 * extent[2]].map(|r| r * rng.uniform(0.92, 1.05));
            (Blob { center: [0.0; 3], radii, amp: 0.05, noise: SmoothNoise::new(&mut rng, [3, 3, 3]) }, true)
        }
    };
    let organs = place_organs(o, &body, head_like, &mut rng);

    // Class map: body structure, then labels painted in order (nested lesions override).
    let n = numel(shape);
    let mut class = vec![OUTSIDE as u8; n];
    let mut label = vec![0u8; n];
    let mut idx = 0;
    for z in 0..shape[0] {
        for y in 0..shape[1] {
            for x in 0..shape[2] {
                let p = [
                    (z as f64 + 0.5) * spacing[0] - extent[0] / 2.0,
                    (y as f64 + 0.5) * spacing[1] - extent[1] / 2.0,
                    (x as f64 + 0.5) * spacing[2] - extent[2] / 2.0,
                ];
                let u = [
                    (z as f64 + 0.5) / shape[0] as f64,
                    (y as f64 + 0.5) / shape[1] as f64,
                    (x as f64 + 0.5) / shape[2] as f64,
                ];
                let r = body.deformed(p, u);
                if r < 1.0 {
                    class[idx] = body_class(r, p, &body, head_like) as u8;
                    if r < 0.84 {
                        for (k, b) in organs.iter().enumerate() {
                            if b.deformed(p, u) < 1.0 {
                                label[idx] = k as u8 + 1;
                            }
                        }
                    }
                }
                idx += 1;
            }
        }
    }
    ensure_every_label(&mut label, shape, spacing, extent, &organs);

    let header = case_header(shape, spacing, &mut rng);
    let texture = SmoothNoise::new(&mut rng, [4, 8, 8]);
    let bias = SmoothNoise::new(&mut rng, [2, 2, 2]);
    let sigma = [0.6 * spacing[1] / spacing[0], 0.7, 0.7];
    let channels = (0..o.channels)
        .map(|c| {
            let vals = &style.values[c];
            let base: Vec<f32> = class
                .iter()
                .zip(&label)
                .map(|(&cl, &l)| if l > 0 { vals[FIRST_LABEL + l as usize - 1] } else { vals[cl as usize] } as f32)
                .collect();
            let blurred = gaussian_blur(&Volume { shape, data: base }, sigma);
            finish_channel(o.modality, blurred, &class, &texture, &bias, c, &mut rng)
        })
        .collect();
    CaseData { channels, label: Volume { shape, data: label }, header }
}

/// Tissue class inside the body at normalised radius `r`.
fn body_class(r: f64, p: [f64; 3], body: &Blob, head_like: bool) -> usize {
    if head_like {
        return match r {
            r if r > 0.93 => FAT,  // scalp
            r if r > 0.86 => BONE, // skull
            _ => TISSUE,
        };
    }
    if r > 0.93 {
        return FAT;
    }
    let theta = (p[1] / body.radii[1]).atan2(p[2] / body.radii[2]);
    // Ribs: bands along z on the anterior and lateral sides.
    if r > 0.86 && theta < 0.8 && (p[0] / 6.0 + 1.2).sin() > 0.2 {
        return BONE;
    }
    // Spine: a disc at the posterior side (positive y).
    let dy = (p[1] - 0.68 * body.radii[1]) / (0.12 * body.radii[1]);
    let dx = p[2] / (0.1 * body.radii[2]);
    if dy * dy + dx * dx < 1.0 {
        return BONE;
    }
    TISSUE
}

/// Organs (odd labels) side by side inside the body; lesions (even labels) nested in the
/// organ before them.
fn place_organs(o: &SynthOptions, body: &Blob, head_like: bool, rng: &mut Rng) -> Vec<Blob> {
    let in_plane = [body.radii[1], body.radii[2]];
    let z_extent = if head_like { body.radii[0] } else { 0.5 * o.shape[0] as f64 * o.spacing[0] };
    let mut blobs: Vec<Blob> = Vec::with_capacity(o.labels);
    let mut angle = rng.uniform(0.0, std::f64::consts::TAU);
    for k in 1..=o.labels {
        let noise = SmoothNoise::new(rng, [3, 3, 3]);
        if k % 2 == 0 {
            let parent = &blobs[k - 2];
            let radii = parent.radii.map(|r| r * rng.uniform(0.35, 0.5) * o.lesion_scale);
            let center: [f64; 3] = std::array::from_fn(|a| parent.center[a] + parent.radii[a] * rng.uniform(-0.3, 0.3));
            blobs.push(Blob { center, radii, amp: 0.15, noise });
        } else {
            let radii = [
                z_extent * rng.uniform(0.35, 0.55),
                in_plane[0] * rng.uniform(0.3, 0.4),
                in_plane[1] * rng.uniform(0.3, 0.4),
            ];
            let dist = rng.uniform(0.25, 0.4);
            let center = [
                z_extent * rng.uniform(-0.15, 0.15),
                angle.sin() * dist * in_plane[0],
                angle.cos() * dist * in_plane[1],
            ];
            angle += std::f64::consts::TAU / (o.labels.div_ceil(2) as f64).max(1.0) + rng.uniform(-0.3, 0.3);
            blobs.push(Blob { center, radii, amp: 0.2, noise });
        }
    }
    blobs
}

/// Paints a small sphere at the centre of any label absent from the map (tiny shapes), so
/// every case holds every label.
fn ensure_every_label(label: &mut [u8], shape: [usize; 3], spacing: [f64; 3], extent: [f64; 3], organs: &[Blob]) {
    let mut present = vec![false; organs.len() + 1];
    label.iter().for_each(|&l| present[l as usize] = true);
    for (k, b) in organs.iter().enumerate() {
        if present[k + 1] {
            continue;
        }
        let c: [usize; 3] = std::array::from_fn(|a| {
            (((b.center[a] + extent[a] / 2.0) / spacing[a]).floor().max(0.0) as usize).min(shape[a] - 1)
        });
        for z in c[0].saturating_sub(1)..(c[0] + 2).min(shape[0]) {
            for y in c[1].saturating_sub(1)..(c[1] + 2).min(shape[1]) {
                for x in c[2].saturating_sub(1)..(c[2] + 2).min(shape[2]) {
                    label[(z * shape[1] + y) * shape[2] + x] = k as u8 + 1;
                }
            }
        }
    }
}

/// A header with a small random rotation (up to 8 degrees) and a non-zero origin.
fn case_header(shape: [usize; 3], spacing: [f64; 3], rng: &mut Rng) -> NiftiHeader {
    let mut h = NiftiHeader::new(shape, spacing, DataType::F32);
    let axis = [rng.normal(), rng.normal(), rng.normal()];
    let norm = (axis.iter().map(|a| a * a).sum::<f64>()).sqrt().max(1e-9);
    let half = rng.uniform(-8.0, 8.0).to_radians() / 2.0;
    let bcd = axis.map(|a| a / norm * half.sin());
    let origin = [rng.uniform(-150.0, 150.0), rng.uniform(-150.0, 150.0), rng.uniform(-300.0, 0.0)];
    h.set_rotation_origin(bcd, origin);
    h.set_description("nnunet-io synthetic");
    h
}

/// Adds texture and noise (CT), or bias field, Rician-like noise and the zero background (MR).
fn finish_channel(
    modality: Modality,
    mut v: Volume<f32>,
    class: &[u8],
    texture: &SmoothNoise,
    bias: &SmoothNoise,
    channel: usize,
    rng: &mut Rng,
) -> Volume<f32> {
    let [nz, ny, nx] = v.shape;
    let mut idx = 0;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let u = [(z as f64 + 0.5) / nz as f64, (y as f64 + 0.5) / ny as f64, (x as f64 + 0.5) / nx as f64];
                let val = v.data[idx] as f64;
                let t = texture.at(u);
                let out = match modality {
                    Modality::Ct => val + 8.0 * t + 12.0 * rng.normal(),
                    Modality::Mr if class[idx] as usize == OUTSIDE => 0.0,
                    Modality::Mr => {
                        let b = (0.3 * bias.at(u) + 0.05 * channel as f64).exp();
                        let s = val * (1.0 + 0.04 * t) * b;
                        let (n1, n2) = (10.0 * rng.normal(), 10.0 * rng.normal());
                        ((s + n1) * (s + n1) + n2 * n2).sqrt().max(1.0)
                    }
                };
                v.data[idx] = out as f32;
                idx += 1;
            }
        }
    }
    v
}

#[cfg(test)]
mod tests;

//! One seam for every image format an nnU-Net v2 user brings (reference §1.3): the format is
//! chosen from the file ending (dataset.json `file_ending`, `overwrite_image_reader_writer`),
//! a reader returns the voxels with an [`ImageHeader`] (ITK geometry plus what the format needs
//! to write back faithfully), and [`write_segmentation`] writes a label map in the input's
//! format and geometry.
//!
//! | format | endings | nnU-Net reader | module |
//! |---|---|---|---|
//! | NIfTI-1/2 | `.nii.gz` `.nii` | SimpleITKIO / NibabelIO | [`crate::nifti`] |
//! | MetaImage | `.mha` `.mhd`(+raw) | SimpleITKIO | [`metaimage`] (hand-written) |
//! | NRRD | `.nrrd` `.nhdr`(+data) | SimpleITKIO | [`nrrd`] (hand-written) |
//! | PNG, BMP, 2D TIFF | `.png` `.bmp` `.tif` | NaturalImage2DIO | [`raster`] (`image`, `tiff` crates) |
//! | 3D TIFF + `CASE.json` | `.tif` `.tiff` | Tiff3DIO | [`raster`] (`tiff` crate) |
//!
//! A `.tif`/`.tiff` file with one page is a 2D natural image, with several pages a 3D stack
//! (nnU-Net tries NaturalImage2DIO first, which fails on stacks, then Tiff3DIO).

pub mod geometry;
pub mod metaimage;
pub mod nrrd;
pub mod raster;
mod rawio;

pub use geometry::Geometry;

use crate::nifti::{self, DataType, LabelValues, NiftiData, NiftiError, NiftiHeader, NiftiImage};
use crate::volume::{numel, Volume};
use std::path::{Path, PathBuf};

/// Every file ending this crate reads and writes (longest first where one ends another).
pub const SUPPORTED_FILE_ENDINGS: [&str; 10] =
    [".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".png", ".bmp", ".tif", ".tiff"];

/// An image format family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// `.nii`, `.nii.gz`.
    Nifti,
    /// `.mha` (one file), `.mhd` (header + data file).
    MetaImage,
    /// `.nrrd` (one file), `.nhdr` (header + data file).
    Nrrd,
    /// `.png`, `.bmp`: 2D greyscale or RGB(A).
    Natural2D,
    /// `.tif`, `.tiff`: one page = 2D natural image, several pages = 3D stack (+ `CASE.json`).
    Tiff,
}

impl ImageFormat {
    /// The format of a file ending such as `.nii.gz` (case-insensitive).
    pub fn from_ending(ending: &str) -> Option<ImageFormat> {
        match ending.to_ascii_lowercase().as_str() {
            ".nii.gz" | ".nii" => Some(ImageFormat::Nifti),
            ".mha" | ".mhd" => Some(ImageFormat::MetaImage),
            ".nrrd" | ".nhdr" => Some(ImageFormat::Nrrd),
            ".png" | ".bmp" => Some(ImageFormat::Natural2D),
            ".tif" | ".tiff" => Some(ImageFormat::Tiff),
            _ => None,
        }
    }

    /// The format of a file, from its name.
    pub fn of_path(path: &Path) -> Option<ImageFormat> {
        file_ending_of(path).and_then(ImageFormat::from_ending)
    }
}

/// The supported ending a file name ends with (case-insensitive), e.g. `.nii.gz`.
pub fn file_ending_of(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    SUPPORTED_FILE_ENDINGS.iter().copied().find(|e| name.ends_with(e))
}

/// The supported endings, for messages: `.nii.gz, .nii, .mha, ...`.
pub fn supported_endings_text() -> String {
    SUPPORTED_FILE_ENDINGS.join(", ")
}

/// nnU-Net v2's reader/writer classes (`overwrite_image_reader_writer`) this crate stands in
/// for, with the endings each takes here.
pub const READER_WRITERS: [(&str, &[&str]); 4] = [
    ("SimpleITKIO", &[".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"]),
    ("NibabelIO", &[".nii.gz", ".nii"]),
    ("NaturalImage2DIO", &[".png", ".bmp", ".tif"]),
    ("Tiff3DIO", &[".tif", ".tiff"]),
];

/// Checks a dataset's `file_ending` and optional `overwrite_image_reader_writer` the way
/// nnU-Net picks its reader: the ending must be one this crate reads; a named reader must be
/// one this crate stands in for and must take the ending. `None` and `"None"` mean automatic.
pub fn check_reader(file_ending: &str, reader_writer: Option<&str>) -> Result<ImageFormat, String> {
    let format = ImageFormat::from_ending(file_ending).ok_or_else(|| {
        format!("file_ending \"{file_ending}\" is not supported (supported: {})", supported_endings_text())
    })?;
    let Some(name) = reader_writer.filter(|n| *n != "None") else { return Ok(format) };
    let names = || READER_WRITERS.iter().map(|r| r.0).collect::<Vec<_>>().join(", ");
    let Some((_, endings)) = READER_WRITERS.iter().find(|r| r.0 == name) else {
        let why = if name.contains("Reorient") {
            " (reorienting readers change the voxel order nnU-Net trains on; convert the images instead)"
        } else {
            ""
        };
        return Err(format!("overwrite_image_reader_writer \"{name}\" is not supported{why}; supported: {}", names()));
    };
    if !endings.iter().any(|e| e.eq_ignore_ascii_case(file_ending)) {
        return Err(format!(
            "overwrite_image_reader_writer \"{name}\" does not read \"{file_ending}\" files (it takes {})",
            endings.join(", ")
        ));
    }
    Ok(format)
}

/// A read, write or conversion failure of an image file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A NIfTI failure (it names the file).
    #[error(transparent)]
    Nifti(#[from] NiftiError),
    /// Any other format: the file and what is wrong with it.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
}

impl ImageError {
    /// The problem without the file name (for reports that name the file themselves).
    pub fn reason(&self) -> String {
        match self {
            ImageError::Nifti(e) => e.kind.to_string(),
            ImageError::Format { msg, .. } => msg.clone(),
        }
    }
}

pub(crate) fn format_err(path: &Path, msg: impl Into<String>) -> ImageError {
    ImageError::Format { path: path.to_path_buf(), msg: msg.into() }
}

/// What a reader learns about an image besides its voxels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageHeader {
    pub format: ImageFormat,
    /// Geometry as SimpleITK reports it.
    pub geometry: Geometry,
    /// Channels in the file (volumes of a 4D NIfTI, colours of an RGB(A) picture).
    pub num_channels: usize,
    /// For NIfTI: the file's header reduced to 3D, the template of outputs.
    pub nifti: Option<NiftiHeader>,
}

impl ImageHeader {
    /// A header describing `geometry` in `format` (no format-specific extras).
    pub fn new(format: ImageFormat, geometry: Geometry) -> ImageHeader {
        ImageHeader { format, geometry, num_channels: 1, nifti: None }
    }

    /// The header of a NIfTI file: ITK geometry and the header itself (reduced to 3D).
    pub fn of_nifti(h: &NiftiHeader) -> ImageHeader {
        ImageHeader {
            format: ImageFormat::Nifti,
            geometry: Geometry::from_nifti(h),
            num_channels: h.num_volumes(),
            nifti: Some(h.to_3d()),
        }
    }

    /// The grid size `[z, y, x]`.
    pub fn shape_zyx(&self) -> [usize; 3] {
        self.geometry.shape
    }

    /// Spacing `[z, y, x]` as nnU-Net uses it (2D: the pseudo spacing 999·max, reference §1.3).
    pub fn nnunet_spacing(&self) -> [f64; 3] {
        self.geometry.nnunet_spacing()
    }

    /// Spatial dimensionality (2 or 3).
    pub fn ndim(&self) -> usize {
        self.geometry.ndim
    }
}

/// An image read from disk: its header and its voxels (channel slowest, then z, y, x).
#[derive(Clone, Debug)]
pub struct LoadedImage {
    pub path: PathBuf,
    pub header: ImageHeader,
    /// The voxels in NIfTI layout (`dim[4]` = channels); scaling applied on conversion.
    pixels: NiftiImage,
}

impl LoadedImage {
    /// Wraps typed voxels (`channels` planes of `geometry.shape`, channel slowest).
    pub(crate) fn from_data(
        path: &Path,
        format: ImageFormat,
        geometry: Geometry,
        channels: usize,
        data: NiftiData,
    ) -> Result<LoadedImage, ImageError> {
        let shape = geometry.shape;
        if data.len() != numel(shape).saturating_mul(channels) {
            return Err(format_err(
                path,
                format!("holds {} values, expected {channels} channel(s) of {shape:?}", data.len()),
            ));
        }
        let mut h = NiftiHeader::new(shape, [1.0; 3], data.datatype());
        h.dim[0] = if channels > 1 { 4 } else { 3 };
        h.dim[4] = channels as i64;
        let pixels = NiftiImage { path: path.to_path_buf(), header: h, data };
        let header = ImageHeader { format, geometry, num_channels: channels, nifti: None };
        Ok(LoadedImage { path: path.to_path_buf(), header, pixels })
    }

    /// The grid size `[z, y, x]`.
    pub fn shape_zyx(&self) -> [usize; 3] {
        self.header.geometry.shape
    }

    /// Channels held by the file.
    pub fn num_channels(&self) -> usize {
        self.header.num_channels
    }

    /// The stored value type.
    pub fn datatype(&self) -> DataType {
        self.pixels.data.datatype()
    }

    /// Channel `c` as f32 (NIfTI scaling applied).
    pub fn channel_f32(&self, c: usize) -> Result<Volume<f32>, ImageError> {
        Ok(self.pixels.channel_f32(c)?)
    }

    /// Every channel as f32.
    pub fn to_f32_channels(&self) -> Result<Vec<Volume<f32>>, ImageError> {
        Ok(self.pixels.to_f32_channels()?)
    }

    /// A single-channel image as an integer label map (fails on non-integer values, NaN/inf,
    /// values outside int16, several channels).
    pub fn to_label_volume(&self) -> Result<Volume<i16>, ImageError> {
        if self.num_channels() != 1 {
            return Err(format_err(
                &self.path,
                format!("a label file must have one channel, this one has {}", self.num_channels()),
            ));
        }
        Ok(self.pixels.to_label_volume()?)
    }

    /// The label values and the NaN/inf and non-integer ones, without failing.
    pub fn label_values(&self) -> LabelValues {
        self.pixels.label_values()
    }
}

/// Reads an image in the format its file name says.
pub fn read_image(path: &Path) -> Result<LoadedImage, ImageError> {
    match ImageFormat::of_path(path) {
        Some(ImageFormat::Nifti) => {
            let img = nifti::read_nifti(path)?;
            let header = ImageHeader::of_nifti(&img.header);
            Ok(LoadedImage { path: path.to_path_buf(), header, pixels: img })
        }
        Some(ImageFormat::MetaImage) => metaimage::read(path),
        Some(ImageFormat::Nrrd) => nrrd::read(path),
        Some(ImageFormat::Natural2D) | Some(ImageFormat::Tiff) => raster::read(path),
        None => Err(format_err(path, format!("not a supported image file (supported: {})", supported_endings_text()))),
    }
}

/// Reads only what is needed for the header (the whole file for formats without a cheap
/// header: pictures and TIFF stacks).
pub fn read_header(path: &Path) -> Result<ImageHeader, ImageError> {
    match ImageFormat::of_path(path) {
        Some(ImageFormat::Nifti) => Ok(ImageHeader::of_nifti(&nifti::read_header(path)?)),
        _ => Ok(read_image(path)?.header),
    }
}

/// Voxel values to write: one channel, `[z, y, x]`.
#[derive(Clone, Copy, Debug)]
pub enum Pixels<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    F32(&'a [f32]),
}

impl Pixels<'_> {
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::U16(v) => v.len(),
            Pixels::I16(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn datatype(&self) -> DataType {
        match self {
            Pixels::U8(_) => DataType::U8,
            Pixels::U16(_) => DataType::U16,
            Pixels::I16(_) => DataType::I16,
            Pixels::F32(_) => DataType::F32,
        }
    }

    /// Little- or big-endian bytes of the values.
    pub(crate) fn to_bytes(self, big_endian: bool) -> Vec<u8> {
        macro_rules! enc {
            ($v:expr) => {
                $v.iter().flat_map(|x| if big_endian { x.to_be_bytes() } else { x.to_le_bytes() }).collect()
            };
        }
        match self {
            Pixels::U8(v) => v.to_vec(),
            Pixels::U16(v) => enc!(v),
            Pixels::I16(v) => enc!(v),
            Pixels::F32(v) => enc!(v),
        }
    }
}

/// Writes one channel `[z, y, x]` with the geometry of `header`, in the format the file name
/// says (so `header` may come from another format: the geometry is converted). NIfTI outputs
/// keep the input's NIfTI header when there is one (see [`nifti_template`]). Every format is
/// written atomically: data files first, each through a temporary file and a rename.
pub fn write_image(path: &Path, header: &ImageHeader, shape: [usize; 3], px: Pixels) -> Result<(), ImageError> {
    if px.len() != numel(shape) || shape != header.geometry.shape {
        return Err(format_err(
            path,
            format!(
                "cannot write {} values of shape {shape:?} with the geometry of a {:?} image",
                px.len(),
                header.geometry.shape
            ),
        ));
    }
    match ImageFormat::of_path(path) {
        Some(ImageFormat::Nifti) => {
            let t = nifti_template(header);
            match px {
                Pixels::U8(v) => nifti::write_nifti(path, &t, &Volume { shape, data: v.to_vec() })?,
                Pixels::U16(v) => nifti::write_nifti(path, &t, &Volume { shape, data: v.to_vec() })?,
                Pixels::I16(v) => nifti::write_nifti(path, &t, &Volume { shape, data: v.to_vec() })?,
                Pixels::F32(v) => nifti::write_nifti(path, &t, &Volume { shape, data: v.to_vec() })?,
            }
            Ok(())
        }
        Some(ImageFormat::MetaImage) => metaimage::write(path, &header.geometry, px),
        Some(ImageFormat::Nrrd) => nrrd::write(path, &header.geometry, px),
        Some(ImageFormat::Natural2D) | Some(ImageFormat::Tiff) => raster::write(path, &header.geometry, px),
        None => Err(format_err(path, format!("cannot write this file type (supported: {})", supported_endings_text()))),
    }
}

/// The NIfTI header outputs are written with: the input's own header (3D) when it was NIfTI,
/// as NIfTI-1 unless a dimension needs NIfTI-2 and without header extensions (issue 14 item 5:
/// SimpleITK, and so nnU-Net's tools, cannot read NIfTI-2; foreign extensions do not describe a
/// segmentation); otherwise a header built from the ITK geometry.
pub fn nifti_template(header: &ImageHeader) -> NiftiHeader {
    match &header.nifti {
        Some(h) => {
            let mut t = h.to_3d();
            t.extensions.clear();
            let [z, y, x] = t.shape_zyx();
            if t.version == nifti::NiftiVersion::V2 && [z, y, x].iter().all(|&d| d <= i16::MAX as usize) {
                t.version = nifti::NiftiVersion::V1;
            }
            t
        }
        None => header.geometry.to_nifti(DataType::U8),
    }
}

/// Writes a label map in the input's format and geometry: uint8, or uint16 when `wide`
/// (nnU-Net's rule: uint16 from 255 foreground labels on, reference §9.4).
pub fn write_segmentation(path: &Path, header: &ImageHeader, seg: &Volume<i16>, wide: bool) -> Result<(), ImageError> {
    if let Some(&v) = seg.data.iter().find(|&&v| v < 0) {
        return Err(format_err(path, format!("negative label {v} in a segmentation")));
    }
    if wide {
        let v: Vec<u16> = seg.data.iter().map(|&v| v as u16).collect();
        write_image(path, header, seg.shape, Pixels::U16(&v))
    } else {
        if let Some(&v) = seg.data.iter().find(|&&v| v > 255) {
            return Err(format_err(path, format!("label {v} does not fit uint8")));
        }
        let v: Vec<u8> = seg.data.iter().map(|&v| v as u8).collect();
        write_image(path, header, seg.shape, Pixels::U8(&v))
    }
}

/// Every file a written image consists of (the header and, for `.mhd`/`.nhdr`, the data file;
/// for a 3D TIFF the `CASE.json` sidecar when present).
pub fn image_files(path: &Path) -> Vec<PathBuf> {
    let mut v = vec![path.to_path_buf()];
    match file_ending_of(path) {
        Some(".mhd") => v.extend(metaimage::data_file_of(path)),
        Some(".nhdr") => v.extend(nrrd::data_file_of(path)),
        Some(".tif") | Some(".tiff") => {
            v.extend(raster::sidecars(path));
        }
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests;

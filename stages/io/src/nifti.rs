//! NIfTI-1 and NIfTI-2 reading and writing (`.nii` and `.nii.gz`), hand-written.
//!
//! - Either byte order on read (detected from `sizeof_hdr`), little-endian on write.
//! - gzip is detected from the magic bytes `1f 8b`, not from the file name.
//! - Header extensions are skipped on read (honouring `vox_offset`) and kept in
//!   [`NiftiHeader::extensions`], so a file written from that header carries them.
//! - A 3D file maps to a [`Volume`] `[z, y, x]` without reordering (x runs fastest in the
//!   file); a 4D file (MSD multi-modal, t = channel) is split into one volume per channel.
//! - Writes go to a temporary file in the target folder and are renamed into place, so a
//!   reader never sees a half-written output.
//!
//! Any byte input gives either an image or a [`NiftiError`] naming the file and the problem.

mod datatype;
mod header;
mod layout;

pub use datatype::{code_name, DataType, NiftiData, NiftiElement};
pub use header::{Affine, Endian, NiftiExtension, NiftiHeader, NiftiVersion, NIFTI1_HEADER_SIZE, NIFTI2_HEADER_SIZE};

use crate::volume::{numel, Volume};
use datatype::{with_data, Scalar};
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A NIfTI read, write or conversion failure: the file and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct NiftiError {
    /// The file concerned.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: NiftiErrorKind,
}

/// The kinds of [`NiftiError`].
#[derive(Debug, thiserror::Error)]
pub enum NiftiErrorKind {
    /// The file could not be opened, read or written.
    #[error("{0}")]
    Io(io::Error),
    /// The gzip stream is corrupt (bad deflate data, checksum or length mismatch).
    #[error("gzip stream is corrupt or truncated: {0}")]
    Gzip(io::Error),
    /// The file ends early.
    #[error("file is truncated: {0}")]
    Truncated(String),
    /// Not a (single-file) NIfTI file.
    #[error("not a NIfTI file: {0}")]
    NotNifti(String),
    /// A header field is invalid, unsupported or does not fit the format written.
    #[error("invalid NIfTI header: {0}")]
    Header(String),
    /// The voxel values cannot be converted as asked (non-integer label, out of range, ...).
    #[error("{0}")]
    Data(String),
}

type Result<T> = std::result::Result<T, NiftiError>;

fn err(path: &Path, kind: NiftiErrorKind) -> NiftiError {
    NiftiError { path: path.to_path_buf(), kind }
}

/// A NIfTI file in memory: the header and the raw typed voxel values in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct NiftiImage {
    /// The file it was read from (used in error messages).
    pub path: PathBuf,
    pub header: NiftiHeader,
    /// `header.num_voxels()` values, x fastest, then y, z, t.
    pub data: NiftiData,
}

/// Reads the header (and extensions) of a NIfTI file without reading the voxel data.
pub fn read_header(path: &Path) -> Result<NiftiHeader> {
    let (mut r, _, gz) = open_reader(path)?;
    read_header_from(&mut r, path, gz)
}

/// Reads a whole NIfTI file (`.nii` or `.nii.gz`, gzip detected from the content).
pub fn read_nifti(path: &Path) -> Result<NiftiImage> {
    let (mut r, len, gz) = open_reader(path)?;
    let header = read_header_from(&mut r, path, gz)?;
    let data = read_data(&mut r, path, &header, gz, len)?;
    Ok(NiftiImage { path: path.to_path_buf(), header, data })
}

/// Parses a NIfTI file held in memory (gzip detected from the content). `name` is used in
/// error messages only.
pub fn parse_nifti(bytes: &[u8], name: &Path) -> Result<NiftiImage> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let mut r: Box<dyn Read + '_> = if gz { Box::new(GzMembers::new(bytes)) } else { Box::new(bytes) };
    let header = read_header_from(&mut r, name, gz)?;
    let data = read_data(&mut r, name, &header, gz, bytes.len() as u64)?;
    Ok(NiftiImage { path: name.to_path_buf(), header, data })
}

/// Opens a file, wrapping it in a gzip decoder when it starts with the gzip magic.
/// Returns the reader, the file's size on disk and whether it is gzip.
fn open_reader(path: &Path) -> Result<(Box<dyn Read>, u64, bool)> {
    let file = File::open(path).map_err(|e| err(path, NiftiErrorKind::Io(e)))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut br = BufReader::with_capacity(1 << 16, file);
    let head = br.fill_buf().map_err(|e| err(path, NiftiErrorKind::Io(e)))?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let r: Box<dyn Read> = if gz { Box::new(GzMembers::new(br)) } else { Box::new(br) };
    Ok((r, len, gz))
}

/// Decompresses a gzip file member after member (pigz and bgzip write several), checking
/// each member's CRC and length. Bytes after the last member that do not start another
/// member (zero padding, junk) end the stream quietly, as zlib's `gzread` does.
struct GzMembers<R: BufRead> {
    dec: Option<GzDecoder<R>>,
}

impl<R: BufRead> GzMembers<R> {
    fn new(r: R) -> Self {
        GzMembers { dec: Some(GzDecoder::new(r)) }
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(dec) = self.dec.as_mut() else { return Ok(0) };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This member ended with a valid trailer; is another one next?
            let Some(dec) = self.dec.take() else { return Ok(0) };
            let mut inner = dec.into_inner();
            if inner.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
                self.dec = Some(GzDecoder::new(inner));
            } else {
                return Ok(0);
            }
        }
    }
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Errors from a plain file are I/O errors; errors from the gzip decoder are gzip errors.
fn read_err(path: &Path, gz: bool, e: io::Error) -> NiftiError {
    if gz && e.kind() != io::ErrorKind::PermissionDenied {
        err(path, NiftiErrorKind::Gzip(e))
    } else {
        err(path, NiftiErrorKind::Io(e))
    }
}

/// Reads the header, its extensions and any padding up to `vox_offset`. Leaves the reader
/// at the first data byte. `gz` tells whether `r` decompresses (it picks the error kind).
fn read_header_from(r: &mut dyn Read, path: &Path, gz: bool) -> Result<NiftiHeader> {
    let mut first = [0u8; 4];
    let n = read_full(r, &mut first).map_err(|e| read_err(path, gz, e))?;
    if n < 4 {
        return Err(err(path, NiftiErrorKind::Truncated(format!("{n} bytes, too short for a NIfTI header"))));
    }
    let (version, endian) =
        layout::detect(first).map_err(|p| err(path, NiftiErrorKind::NotNifti(layout::describe(&p))))?;
    let hs = version.header_size();
    let mut buf = vec![0u8; hs];
    buf[..4].copy_from_slice(&first);
    let n = read_full(r, &mut buf[4..]).map_err(|e| read_err(path, gz, e))?;
    if n < hs - 4 {
        return Err(err(path, NiftiErrorKind::Truncated(format!("header has {} of {hs} bytes", n + 4))));
    }
    let mut h = layout::parse(&buf, version, endian).map_err(|p| {
        let kind = match p {
            layout::HeaderProblem::BadMagic(_) | layout::HeaderProblem::TwoFile => {
                NiftiErrorKind::NotNifti(layout::describe(&p))
            }
            _ => NiftiErrorKind::Header(layout::describe(&p)),
        };
        err(path, kind)
    })?;
    let off = h.vox_offset;
    if !off.is_finite() || off < 0.0 || off.fract() != 0.0 || off > (1u64 << 40) as f64 {
        return Err(err(path, NiftiErrorKind::Header(format!("vox_offset {off} is not a valid byte offset"))));
    }
    let off = off as usize;
    // vox_offset 0 (or inside the header) is legal only for .hdr/.img pairs; treat the data as
    // starting right after the header, which is where every single-file writer puts it.
    let start = off.max(hs);
    // Grow with the content rather than trusting vox_offset for the allocation.
    let mut between = Vec::with_capacity((start - hs).min(1 << 20));
    (&mut *r).take((start - hs) as u64).read_to_end(&mut between).map_err(|e| read_err(path, gz, e))?;
    if between.len() < start - hs {
        return Err(err(
            path,
            NiftiErrorKind::Truncated(format!(
                "file ends at byte {} inside the extensions (vox_offset {off})",
                hs + between.len()
            )),
        ));
    }
    h.extensions = layout::parse_extensions(&between, endian);
    Ok(h)
}

/// Reads exactly the voxel bytes the header announces and decodes them.
fn read_data(r: &mut dyn Read, path: &Path, h: &NiftiHeader, gz: bool, file_len: u64) -> Result<NiftiData> {
    let count = h.num_voxels().unwrap_or(0);
    let want = count.saturating_mul(h.datatype.size());
    let start = (h.vox_offset as usize).max(h.version.header_size());
    if !gz && (start as u64).saturating_add(want as u64) > file_len {
        return Err(err(
            path,
            NiftiErrorKind::Truncated(format!(
                "data has {} of {want} bytes ({count} voxels of {})",
                file_len.saturating_sub(start as u64),
                h.datatype
            )),
        ));
    }
    // For gzip, grow with the actual content so a corrupt header cannot make us allocate
    // far more than the stream holds (deflate expands at most ~1032x).
    let cap = if gz { want.min((file_len as usize).saturating_mul(1032).saturating_add(4096)) } else { want };
    let mut bytes = Vec::with_capacity(cap);
    (&mut *r).take(want as u64).read_to_end(&mut bytes).map_err(|e| read_err(path, gz, e))?;
    if bytes.len() < want {
        return Err(err(
            path,
            NiftiErrorKind::Truncated(format!(
                "data has {} of {want} bytes ({count} voxels of {})",
                bytes.len(),
                h.datatype
            )),
        ));
    }
    if gz {
        // Read to the end of the stream so the gzip CRC and length are checked.
        io::copy(r, &mut io::sink()).map_err(|e| read_err(path, gz, e))?;
    }
    Ok(NiftiData::decode(h.datatype, bytes, h.endian == Endian::Big))
}

/// The `(slope, intercept)` to apply, or `None` when the values are used as stored.
/// As ITK (and so SimpleITK and nnU-Net) reads it: a zero or non-finite slope counts as 1 and
/// the intercept still applies; a non-finite intercept counts as 0 (nifti1_io).
pub(crate) fn scaling(h: &NiftiHeader) -> Option<(f64, f64)> {
    let s = if h.scl_slope.is_finite() && h.scl_slope.abs() > f64::EPSILON { h.scl_slope } else { 1.0 };
    let i = if h.scl_inter.is_finite() { h.scl_inter } else { 0.0 };
    if s == 1.0 && i == 0.0 {
        None
    } else {
        Some((s, i))
    }
}

fn to_f32_vec<T: Scalar>(v: &[T], scl: Option<(f64, f64)>) -> Vec<f32> {
    match scl {
        None => v.iter().map(|x| x.to_f32()).collect(),
        Some((s, i)) => v.iter().map(|x| (x.to_f64() * s + i) as f32).collect(),
    }
}

/// Formats a label value for messages (integral values without a fraction).
fn fmt_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The `[z, y, x]` position of flat index `idx` in a volume of `shape`.
pub(crate) fn position(idx: usize, shape: [usize; 3]) -> [usize; 3] {
    let nx = shape[2].max(1);
    let plane = (shape[1] * shape[2]).max(1);
    [idx / plane, (idx % plane) / nx, idx % nx]
}

fn to_label_vec<T: Scalar>(
    v: &[T],
    scl: Option<(f64, f64)>,
    shape: [usize; 3],
) -> std::result::Result<Vec<i16>, String> {
    let mut out = Vec::with_capacity(v.len());
    for (idx, &x) in v.iter().enumerate() {
        let exact = match scl {
            None => x.to_i128(),
            Some((s, i)) => (x.to_f64() * s + i).to_i128(),
        };
        let value = match exact {
            Some(e) if (i16::MIN as i128..=i16::MAX as i128).contains(&e) => e as i16,
            other => {
                let shown = match scl {
                    None => x.to_f64(),
                    Some((s, i)) => x.to_f64() * s + i,
                };
                let (text, why) = match other {
                    Some(e) => (e.to_string(), "is outside the int16 range"),
                    None => (fmt_value(shown), "is not an integer"),
                };
                let [z, y, x] = position(idx, shape);
                return Err(format!("label value {text} {why} (at z={z}, y={y}, x={x})"));
            }
        };
        out.push(value);
    }
    Ok(out)
}

/// What a label file holds; see [`NiftiImage::label_values`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelValues {
    /// Distinct integer values, sorted (values beyond i64 are clamped).
    pub values: Vec<i64>,
    /// Number of NaN/inf values.
    pub non_finite: usize,
    /// Position `[z, y, x]` (in the first volume holding one) of the first NaN/inf value.
    pub first_non_finite: Option<[usize; 3]>,
    /// Number of finite non-integer values.
    pub non_integer: usize,
    /// The first non-integer value and its position.
    pub first_non_integer: Option<(f64, [usize; 3])>,
}

fn summarise_labels<T: Scalar + PartialEq>(v: &[T], scl: Option<(f64, f64)>, shape: [usize; 3]) -> LabelValues {
    let mut out = LabelValues::default();
    let mut set = std::collections::BTreeSet::new();
    let mut last: Option<T> = None;
    let n = numel(shape).max(1);
    for (idx, &x) in v.iter().enumerate() {
        if last == Some(x) {
            continue;
        }
        last = Some(x);
        let value = match scl {
            None => x.to_f64(),
            Some((s, i)) => x.to_f64() * s + i,
        };
        let exact = match scl {
            None => x.to_i128(),
            Some(_) => value.to_i128(),
        };
        match exact {
            Some(e) => {
                set.insert(e.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
            }
            None if !value.is_finite() => {
                out.non_finite += 1;
                out.first_non_finite.get_or_insert(position(idx % n, shape));
                last = None; // count every one
            }
            None => {
                out.non_integer += 1;
                out.first_non_integer.get_or_insert((value, position(idx % n, shape)));
                last = None;
            }
        }
    }
    out.values = set.into_iter().collect();
    out
}

impl NiftiImage {
    /// The spatial shape `[z, y, x]`.
    pub fn shape_zyx(&self) -> [usize; 3] {
        self.header.shape_zyx()
    }

    /// Number of 3D volumes (channels of an MSD 4D file).
    pub fn num_volumes(&self) -> usize {
        self.header.num_volumes()
    }

    /// Converts every volume to f32, applying `scl_slope`/`scl_inter` (slope 0 or non-finite
    /// means no scaling). One volume per channel: a 3D file gives one, a 4D file `dim[4]`.
    pub fn to_f32_channels(&self) -> Result<Vec<Volume<f32>>> {
        let shape = self.shape_zyx();
        let n = numel(shape);
        if self.data.len() != n * self.num_volumes() {
            return Err(self.data_err(format!(
                "holds {} values but the header announces {} volumes of {shape:?}",
                self.data.len(),
                self.num_volumes()
            )));
        }
        let scl = scaling(&self.header);
        let all: Vec<f32> = with_data!(&self.data, v => to_f32_vec(v, scl));
        if self.num_volumes() == 1 {
            return Ok(vec![Volume { shape, data: all }]);
        }
        Ok(all.chunks_exact(n.max(1)).map(|c| Volume { shape, data: c.to_vec() }).collect())
    }

    /// Converts volume `c` only to f32 (scaling applied); see [`NiftiImage::to_f32_channels`].
    pub fn channel_f32(&self, c: usize) -> Result<Volume<f32>> {
        let shape = self.shape_zyx();
        let n = numel(shape);
        if c >= self.num_volumes() {
            return Err(self.data_err(format!("has {} volume(s), channel {c} does not exist", self.num_volumes())));
        }
        if self.data.len() != n * self.num_volumes() {
            return Err(self.data_err("holds fewer values than the header announces".to_string()));
        }
        let scl = scaling(&self.header);
        let data = with_data!(&self.data, v => to_f32_vec(&v[c * n..(c + 1) * n], scl));
        Ok(Volume { shape, data })
    }

    /// Converts a single-volume image to an integer label map. Fails, naming the value and
    /// its position, when a value is non-integer, NaN/inf or outside the int16 range, and
    /// when the file holds more than one volume.
    pub fn to_label_volume(&self) -> Result<Volume<i16>> {
        let shape = self.shape_zyx();
        if self.num_volumes() != 1 {
            return Err(self.data_err(format!("label file has {} volumes, expected 1", self.num_volumes())));
        }
        if self.data.len() != numel(shape) {
            return Err(self.data_err("holds fewer values than the header announces".to_string()));
        }
        let scl = scaling(&self.header);
        let data = with_data!(&self.data, v => to_label_vec(v, scl, shape)).map_err(|m| self.data_err(m))?;
        Ok(Volume { shape, data })
    }

    /// Summarises the values of a label file without failing: the distinct integer values
    /// (scl scaling applied), and the count and first position of NaN/inf and of non-integer
    /// values. Used by dataset verification to report every problem of a file at once.
    pub fn label_values(&self) -> LabelValues {
        let scl = scaling(&self.header);
        let shape = self.shape_zyx();
        with_data!(&self.data, v => summarise_labels(v, scl, shape))
    }

    fn data_err(&self, msg: String) -> NiftiError {
        err(&self.path, NiftiErrorKind::Data(msg))
    }
}

/// Writes a 3D volume with the geometry of `template`.
///
/// Every header field of `template` is kept (pixdim, qform, sform, their codes, quaternion,
/// srows, xyzt_units, descrip, intent, extensions, NIfTI version) except: `dim` from the
/// volume (`[z, y, x]` -> `dim = [3, x, y, z]`; 2 when the template is 2D and `z == 1`),
/// `datatype`/`bitpix` from `T`, `scl_slope = 1`, `scl_inter = 0`, `cal_min = cal_max = 0`
/// (they described the template's values) and `vox_offset`. The file is little-endian;
/// a name ending in `.gz` is gzip-compressed (fast level). NIfTI-2 is written when
/// `template.version` is [`NiftiVersion::V2`].
pub fn write_nifti<T: NiftiElement>(path: &Path, template: &NiftiHeader, vol: &Volume<T>) -> Result<()> {
    if vol.data.len() != numel(vol.shape) {
        return Err(err(
            path,
            NiftiErrorKind::Data(format!("volume of shape {:?} holds {} values", vol.shape, vol.data.len())),
        ));
    }
    let mut h = template.clone();
    let [z, y, x] = vol.shape;
    let nd = if template.ndim() <= 2 && z == 1 { 2 } else { 3 };
    h.dim = [nd, x as i64, y as i64, z as i64, 1, 1, 1, 1];
    h.datatype = T::DATATYPE;
    h.bitpix = T::DATATYPE.bitpix();
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    h.cal_min = 0.0;
    h.cal_max = 0.0;
    h.endian = Endian::Little;
    write_impl(path, &h, &|start, end, out| T::put_le(&vol.data[start..end], out), vol.data.len())
}

/// Writes an image exactly as described by its header (dims, scaling, 4D, everything),
/// with `datatype`/`bitpix` taken from the data and `vox_offset` from the extensions.
/// The data length must match the header's dims.
pub fn write_nifti_image(path: &Path, img: &NiftiImage) -> Result<()> {
    let mut h = img.header.clone();
    h.datatype = img.data.datatype();
    h.bitpix = h.datatype.bitpix();
    h.endian = Endian::Little;
    if h.num_voxels() != Some(img.data.len()) {
        return Err(err(
            path,
            NiftiErrorKind::Data(format!("header dims {:?} do not match {} values", &h.dim, img.data.len())),
        ));
    }
    write_impl(path, &h, &|start, end, out| img.data.encode_le(start, end, out), img.data.len())
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Encodes `h` and streams `count` values through `put` into a temporary file next to
/// `path`, then renames it into place.
fn write_impl(path: &Path, h: &NiftiHeader, put: &dyn Fn(usize, usize, &mut Vec<u8>), count: usize) -> Result<()> {
    let mut h = h.clone();
    h.vox_offset = h.data_offset_for_write() as f64;
    let head = layout::encode(&h).map_err(|p| err(path, NiftiErrorKind::Header(layout::describe(&p))))?;
    let name = path.file_name().ok_or_else(|| {
        err(path, NiftiErrorKind::Io(io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name")))
    })?;
    let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write_body = |w: &mut dyn Write| -> io::Result<()> {
        w.write_all(&head)?;
        const CHUNK: usize = 1 << 16;
        let mut buf = Vec::with_capacity(CHUNK * 8);
        let mut start = 0;
        while start < count {
            let end = (start + CHUNK).min(count);
            buf.clear();
            put(start, end, &mut buf);
            w.write_all(&buf)?;
            start = end;
        }
        Ok(())
    };
    let result = (|| -> io::Result<()> {
        let file = File::create(&tmp)?;
        let mut buffered = BufWriter::with_capacity(1 << 16, file);
        if gz {
            let mut enc = GzEncoder::new(buffered, Compression::fast());
            write_body(&mut enc)?;
            buffered = enc.finish()?;
        } else {
            write_body(&mut buffered)?;
        }
        buffered.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(path, NiftiErrorKind::Io(e)));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

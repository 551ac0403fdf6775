//! Shared pieces of the text-header formats (MetaImage, NRRD): element types, reading a data
//! block (raw, zlib or gzip) of an exact size with clear errors, detached data files, atomic
//! writes.

use super::{format_err, ImageError};
use crate::nifti::{DataType, NiftiData};
use flate2::bufread::{GzDecoder, ZlibDecoder};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How a data block is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Raw,
    /// zlib or gzip stream (detected from the first bytes).
    Compressed,
}

/// Where a data block starts in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    At(u64),
    /// The last `want` bytes of the file (MetaImage `HeaderSize = -1`, NRRD `byte skip: -1`).
    FromEnd,
}

/// Reads exactly `want` decoded bytes from `path` starting at `start`, decompressing when asked.
/// Fails naming the file when it is shorter, or the stream corrupt.
pub(crate) fn read_block(path: &Path, start: Start, want: usize, enc: Encoding) -> Result<Vec<u8>, ImageError> {
    let io_err = |e: io::Error| format_err(path, e.to_string());
    let mut f = File::open(path).map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    let offset = match start {
        Start::At(o) => o,
        Start::FromEnd if enc == Encoding::Raw => len
            .checked_sub(want as u64)
            .ok_or_else(|| format_err(path, format!("file is truncated: {len} bytes, the data alone needs {want}")))?,
        Start::FromEnd => {
            return Err(format_err(path, "a compressed data block cannot be located from the end of the file"))
        }
    };
    if offset > len {
        return Err(format_err(path, format!("file is truncated: data should start at byte {offset}, file has {len}")));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let mut br = BufReader::with_capacity(1 << 16, f);
    let mut out = Vec::new();
    match enc {
        Encoding::Raw => {
            if len - offset < want as u64 {
                return Err(format_err(path, format!("file is truncated: data has {} of {want} bytes", len - offset)));
            }
            out.reserve_exact(want);
            br.take(want as u64).read_to_end(&mut out).map_err(io_err)?;
        }
        Encoding::Compressed => {
            // Grow with the content (deflate expands at most ~1032x), not the header's claim.
            out.reserve(want.min(((len - offset) as usize).saturating_mul(1032).saturating_add(4096)));
            let head = br.fill_buf().map_err(io_err)?;
            let gz = head.starts_with(&[0x1f, 0x8b]);
            let r: Box<dyn Read> = if gz { Box::new(GzDecoder::new(br)) } else { Box::new(ZlibDecoder::new(br)) };
            r.take(want as u64)
                .read_to_end(&mut out)
                .map_err(|e| format_err(path, format!("compressed data is corrupt or truncated: {e}")))?;
        }
    }
    if out.len() < want {
        return Err(format_err(path, format!("file is truncated: data has {} of {want} bytes", out.len())));
    }
    Ok(out)
}

/// Decodes `count` values of `dt` from bytes of the given byte order.
pub(crate) fn decode(dt: DataType, bytes: Vec<u8>, big_endian: bool) -> NiftiData {
    NiftiData::decode(dt, bytes, big_endian)
}

/// Number of bytes of `count` values of `dt`, refusing absurd sizes before any allocation.
pub(crate) fn byte_size(path: &Path, shape: &[usize], dt: DataType) -> Result<(usize, usize), ImageError> {
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let bytes = count.and_then(|c| c.checked_mul(dt.size()));
    match (count, bytes) {
        (Some(c), Some(b)) if b <= (1usize << 40) => Ok((c, b)),
        _ => Err(format_err(path, format!("image size {shape:?} is too large"))),
    }
}

/// Resolves a detached data file named in a header: relative to the header's folder and
/// staying inside it (no absolute paths, no `..`), an existing regular file.
pub(crate) fn detached(header: &Path, name: &str, field: &str) -> Result<PathBuf, ImageError> {
    let rel = Path::new(name);
    if name.is_empty() || name.contains('\0') {
        return Err(format_err(header, format!("{field} is empty or invalid")));
    }
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format_err(
            header,
            format!("{field} \"{name}\" must be a file in the header's folder (no absolute path, no ..)"),
        ));
    }
    let dir = header.parent().unwrap_or(Path::new("."));
    let p = dir.join(rel);
    if !p.is_file() {
        return Err(format_err(header, format!("{field} \"{name}\" does not exist ({})", p.display())));
    }
    Ok(p)
}

static TMP: AtomicU64 = AtomicU64::new(0);

/// Writes a file through a temporary sibling and a rename, so a reader never sees half of it.
pub(crate) fn write_atomic(path: &Path, body: &dyn Fn(&mut dyn Write) -> io::Result<()>) -> Result<(), ImageError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.is_empty() {
        return Err(format_err(path, "output path has no file name"));
    }
    let tmp =
        path.with_file_name(format!(".{name}.tmp-{}-{}", std::process::id(), TMP.fetch_add(1, Ordering::Relaxed)));
    let result = (|| -> io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
        body(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format_err(path, format!("cannot write: {e}"))
    })
}

/// zlib-compresses bytes (fast level).
pub(crate) fn zlib(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes)?;
    e.finish()
}

/// gzip-compresses bytes (fast level).
pub(crate) fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes)?;
    e.finish()
}

/// Formats a float the shortest way that reads back exactly.
pub(crate) fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v}")
    }
}

/// Parses whitespace-separated numbers, naming the field on failure.
pub(crate) fn numbers(path: &Path, field: &str, text: &str) -> Result<Vec<f64>, ImageError> {
    text.split_whitespace()
        .map(|t| {
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format_err(path, format!("{field}: \"{t}\" is not a finite number")))
        })
        .collect()
}

/// Parses whitespace-separated sizes (positive integers).
pub(crate) fn sizes(path: &Path, field: &str, text: &str) -> Result<Vec<usize>, ImageError> {
    text.split_whitespace()
        .map(|t| {
            t.parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| format_err(path, format!("{field}: \"{t}\" is not a positive integer")))
        })
        .collect()
}

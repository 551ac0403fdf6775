//! Pictures and TIFF stacks: nnU-Net's NaturalImage2DIO (`.png`, `.bmp`, `.tif` with one page)
//! and Tiff3DIO (`.tif`/`.tiff` with several pages plus a `CASE.json` sidecar holding
//! `{"spacing": [z, y, x]}`). PNG and BMP go through the `image` crate, TIFF through `tiff`.
//!
//! As NaturalImage2DIO: a picture is `[1, height, width]` with spacing 1 (nnU-Net's pseudo
//! spacing `(999, 1, 1)`); an RGB or RGBA picture is 3 or 4 channels (skimage keeps alpha as a
//! channel, so does this reader); grey+alpha is refused as nnU-Net refuses it. As Tiff3DIO: a
//! stack is `[pages, height, width]`, single-channel; the sidecar spacing is in array order;
//! without a sidecar the spacing is 1. The sidecar of an image `CASE_0000.tif` is `CASE.json`,
//! that of a label `CASE.tif` is `CASE.json` too (both beside the file).

use super::geometry::Geometry;
use super::rawio;
use super::{format_err, ImageError, ImageFormat, LoadedImage, Pixels};
use crate::nifti::NiftiData;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

/// Reads a picture or a TIFF file.
pub fn read(path: &Path) -> Result<LoadedImage, ImageError> {
    let lower = path.to_string_lossy().to_ascii_lowercase();
    if lower.ends_with(".tif") || lower.ends_with(".tiff") {
        read_tiff(path)
    } else {
        read_picture(path)
    }
}

/// Interleaved samples (`channels` per pixel) -> planar (channel slowest).
fn planar<T: Copy>(v: Vec<T>, channels: usize) -> Vec<T> {
    if channels == 1 {
        return v;
    }
    let n = v.len() / channels;
    let mut out = Vec::with_capacity(v.len());
    for c in 0..channels {
        out.extend((0..n).map(|i| v[i * channels + c]));
    }
    out
}

fn picture_geometry(h: usize, w: usize) -> Geometry {
    Geometry::plain(2, [1, h, w], [1.0, 1.0, 1.0])
}

fn read_picture(path: &Path) -> Result<LoadedImage, ImageError> {
    use image::DynamicImage as D;
    let img = image::ImageReader::open(path)
        .map_err(|e| format_err(path, e.to_string()))?
        .with_guessed_format()
        .map_err(|e| format_err(path, e.to_string()))?
        .decode()
        .map_err(|e| format_err(path, format!("cannot decode the picture: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    // An 8-bit grey BMP is a palette image that the decoder expands to RGB; skimage (nnU-Net)
    // reads it as grey: fold R = G = B pictures back to one channel for BMP.
    let bmp = path.to_string_lossy().to_ascii_lowercase().ends_with(".bmp");
    let img = match img {
        D::ImageRgb8(b) if bmp && b.pixels().all(|p| p[0] == p[1] && p[1] == p[2]) => {
            D::ImageLuma8(image::GrayImage::from_fn(b.width(), b.height(), |x, y| image::Luma([b.get_pixel(x, y)[0]])))
        }
        other => other,
    };
    let (channels, data) = match img {
        D::ImageLuma8(b) => (1, NiftiData::U8(b.into_raw())),
        D::ImageLuma16(b) => (1, NiftiData::U16(b.into_raw())),
        D::ImageRgb8(b) => (3, NiftiData::U8(planar(b.into_raw(), 3))),
        D::ImageRgba8(b) => (4, NiftiData::U8(planar(b.into_raw(), 4))),
        D::ImageRgb16(b) => (3, NiftiData::U16(planar(b.into_raw(), 3))),
        D::ImageRgba16(b) => (4, NiftiData::U16(planar(b.into_raw(), 4))),
        D::ImageRgb32F(b) => (3, NiftiData::F32(planar(b.into_raw(), 3))),
        D::ImageRgba32F(b) => (4, NiftiData::F32(planar(b.into_raw(), 4))),
        D::ImageLumaA8(_) | D::ImageLumaA16(_) => {
            return Err(format_err(
                path,
                "grey + alpha pictures are not supported (nnU-Net takes grey, RGB or RGBA); drop the alpha channel",
            ))
        }
        other => return Err(format_err(path, format!("pixel type {:?} is not supported", other.color()))),
    };
    LoadedImage::from_data(path, ImageFormat::Natural2D, picture_geometry(h, w), channels, data)
}

/// One decoded TIFF page as NIfTI-typed data plus its samples per pixel.
fn page_data(path: &Path, r: tiff::decoder::DecodingResult) -> Result<NiftiData, ImageError> {
    use tiff::decoder::DecodingResult as R;
    Ok(match r {
        R::U8(v) => NiftiData::U8(v),
        R::U16(v) => NiftiData::U16(v),
        R::U32(v) => NiftiData::U32(v),
        R::U64(v) => NiftiData::U64(v),
        R::I8(v) => NiftiData::I8(v),
        R::I16(v) => NiftiData::I16(v),
        R::I32(v) => NiftiData::I32(v),
        R::I64(v) => NiftiData::I64(v),
        R::F16(v) => NiftiData::F32(v.into_iter().map(f32::from).collect()),
        R::F32(v) => NiftiData::F32(v),
        R::F64(v) => NiftiData::F64(v),
        #[allow(unreachable_patterns)]
        _ => return Err(format_err(path, "TIFF sample type is not supported")),
    })
}

fn tiff_err(path: &Path, e: tiff::TiffError) -> ImageError {
    format_err(path, format!("cannot decode the TIFF file: {e}"))
}

/// What must agree between the pages of a stack: size, colour type and sample format (the
/// colour type alone does not tell u16 from i16).
type PageKind = ((u32, u32), tiff::ColorType, Option<Vec<u16>>);

fn page_kind<R: std::io::Read + std::io::Seek>(
    path: &Path,
    dec: &mut tiff::decoder::Decoder<R>,
) -> Result<PageKind, ImageError> {
    let dims = dec.dimensions().map_err(|e| tiff_err(path, e))?;
    let ct = dec.colortype().map_err(|e| tiff_err(path, e))?;
    let fmt = dec.find_tag_unsigned_vec::<u16>(tiff::tags::Tag::SampleFormat).map_err(|e| tiff_err(path, e))?;
    Ok((dims, ct, fmt))
}

/// Decodes the pages after the first straight into one buffer holding the whole stack (no
/// growing and copying per page); `first` is page 0, already decoded.
fn read_stack<R: std::io::Read + std::io::Seek>(
    path: &Path,
    dec: &mut tiff::decoder::Decoder<R>,
    first: tiff::decoder::DecodingResult,
    pages: usize,
) -> Result<NiftiData, ImageError> {
    use tiff::decoder::DecodingResult as R;
    macro_rules! stack {
        ($v:expr, $variant:ident) => {{
            let plane = $v.len();
            let mut all = $v;
            all.resize(plane * pages, Default::default());
            for k in 1..pages {
                dec.next_image().map_err(|e| tiff_err(path, e))?;
                let dst = bytes_of_mut(&mut all[k * plane..(k + 1) * plane]);
                dec.read_image_bytes(dst).map_err(|e| tiff_err(path, e))?;
            }
            NiftiData::$variant(all)
        }};
    }
    Ok(match first {
        R::U8(v) => stack!(v, U8),
        R::I8(v) => stack!(v, I8),
        R::U16(v) => stack!(v, U16),
        R::I16(v) => stack!(v, I16),
        R::U32(v) => stack!(v, U32),
        R::I32(v) => stack!(v, I32),
        R::U64(v) => stack!(v, U64),
        R::I64(v) => stack!(v, I64),
        R::F32(v) => stack!(v, F32),
        R::F64(v) => stack!(v, F64),
        // Half floats are widened to f32 page by page.
        other => {
            let mut all = page_data(path, other)?;
            for _ in 1..pages {
                dec.next_image().map_err(|e| tiff_err(path, e))?;
                let page = page_data(path, dec.read_image().map_err(|e| tiff_err(path, e))?)?;
                match (&mut all, page) {
                    (NiftiData::F32(a), NiftiData::F32(b)) => a.extend(b),
                    _ => return Err(format_err(path, "pages differ in sample type")),
                }
            }
            all
        }
    })
}

/// The bytes of a slice of plain numbers (the decoder writes native-endian samples).
fn bytes_of_mut<T: crate::nifti::NiftiElement>(v: &mut [T]) -> &mut [u8] {
    let len = std::mem::size_of_val(v);
    // SAFETY: `T` is one of the plain integer/float types of NIfTI data (no padding, every bit
    // pattern valid), `u8` has alignment 1, and the byte slice borrows `v` mutably for its life.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), len) }
}

/// Reads a TIFF: the file is read whole (a stack's strips are many small reads at scattered
/// offsets), the pages' sizes and types are checked first (IFDs only), then the pixels are
/// decoded into one buffer.
fn read_tiff(path: &Path) -> Result<LoadedImage, ImageError> {
    use tiff::ColorType as C;
    let bytes = std::fs::read(path).map_err(|e| format_err(path, e.to_string()))?;
    let mut dec = tiff::decoder::Decoder::new(Cursor::new(bytes.as_slice())).map_err(|e| tiff_err(path, e))?;
    // No decoder limits: a page over the default 256 MiB would fail (or, planar, be read in
    // part); the size a file claims is checked against the file's own size below instead.
    dec = dec.with_limits(tiff::decoder::Limits::unlimited());
    let first_kind = page_kind(path, &mut dec)?;
    let mut pages = 1usize;
    while dec.more_images() {
        dec.next_image().map_err(|e| tiff_err(path, e))?;
        let k = page_kind(path, &mut dec)?;
        if k != first_kind {
            let ((w, h), ct, f) = k;
            let ((w0, h0), ct0, f0) = &first_kind;
            return Err(format_err(
                path,
                format!("page {pages} is {w}x{h} {ct:?} (format {f:?}), page 0 is {w0}x{h0} {ct0:?} (format {f0:?})"),
            ));
        }
        pages += 1;
    }
    let ((w, h), ct, _) = first_kind;
    let (w, h) = (w as usize, h as usize);
    let channels = match ct {
        C::Gray(_) => 1,
        C::RGB(_) if pages == 1 => 3,
        C::RGBA(_) if pages == 1 => 4,
        other => {
            return Err(format_err(
                path,
                format!(
                    "{other:?} TIFF with {pages} page(s) is not supported (grey stacks, or one grey/RGB/RGBA page)"
                ),
            ))
        }
    };
    // Refuse sizes the file cannot hold before allocating: deflate expands at most ~1032x.
    let sample_bytes = (ct.bit_depth() as usize).div_ceil(8).max(1) * channels;
    let claimed = [pages, h, w, sample_bytes].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let limit = (bytes.len() as u128) * 1100 + (1 << 20);
    if claimed.is_none_or(|c| c as u128 > limit) {
        return Err(format_err(
            path,
            format!("{pages} page(s) of {w}x{h} {ct:?} are more than the file's {} bytes can hold", bytes.len()),
        ));
    }
    dec.seek_to_image(0).map_err(|e| tiff_err(path, e))?;
    let first = dec.read_image().map_err(|e| tiff_err(path, e))?;
    if pages == 1 {
        let data = match page_data(path, first)? {
            NiftiData::U8(v) => NiftiData::U8(planar(v, channels)),
            NiftiData::U16(v) => NiftiData::U16(planar(v, channels)),
            NiftiData::F32(v) => NiftiData::F32(planar(v, channels)),
            other if channels == 1 => other,
            _ => return Err(format_err(path, "colour TIFF sample type is not supported")),
        };
        return LoadedImage::from_data(path, ImageFormat::Tiff, picture_geometry(h, w), channels, data);
    }
    let data = read_stack(path, &mut dec, first, pages)?;
    drop(dec);
    drop(bytes);
    let spacing_zyx = read_sidecar(path)?.unwrap_or([1.0; 3]);
    let g = Geometry::plain(3, [pages, h, w], [spacing_zyx[2], spacing_zyx[1], spacing_zyx[0]]);
    LoadedImage::from_data(path, ImageFormat::Tiff, g, 1, data)
}

/// The sidecar nnU-Net's Tiff3DIO reads for an image file `CASE_0000.tif`: `CASE.json`.
pub fn sidecar_of_image(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = strip_tif(&name)?;
    let id = crate::dataset::split_channel_suffix(stem).map(|(id, _)| id)?;
    Some(path.with_file_name(format!("{id}.json")))
}

/// The sidecar of a label file `CASE.tif` (and of a written segmentation): `CASE.json`.
pub fn sidecar_of_label(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    Some(path.with_file_name(format!("{}.json", strip_tif(&name)?)))
}

/// The existing sidecar files a stack's spacing may come from.
pub fn sidecars(path: &Path) -> Vec<PathBuf> {
    [sidecar_of_label(path), sidecar_of_image(path)].into_iter().flatten().filter(|p| p.is_file()).collect()
}

fn strip_tif(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tiff") {
        Some(&name[..name.len() - 5])
    } else if lower.ends_with(".tif") {
        Some(&name[..name.len() - 4])
    } else {
        None
    }
}

/// The spacing `[z, y, x]` of a stack from its sidecar: the file's own `STEM.json` when present
/// (labels, written segmentations), else the case's `CASE.json` (images `CASE_0000.tif`).
fn read_sidecar(path: &Path) -> Result<Option<[f64; 3]>, ImageError> {
    let candidates = [sidecar_of_label(path), sidecar_of_image(path)];
    let Some(side) = candidates.into_iter().flatten().find(|p| p.is_file()) else { return Ok(None) };
    let text = std::fs::read_to_string(&side).map_err(|e| format_err(&side, e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format_err(&side, format!("invalid JSON: {e}")))?;
    let s = v.get("spacing").and_then(|s| s.as_array()).ok_or_else(|| format_err(&side, "no \"spacing\" list"))?;
    let s: Vec<f64> = s.iter().filter_map(|x| x.as_f64()).collect();
    if s.len() != 3 || s.iter().any(|x| !x.is_finite() || *x <= 0.0) {
        return Err(format_err(&side, format!("\"spacing\" must be 3 positive numbers (z, y, x), found {s:?}")));
    }
    Ok(Some([s[0], s[1], s[2]]))
}

/// Writes a picture (`.png`: 8/16-bit grey; `.bmp`: 8-bit grey) or a TIFF (one page for a 2D
/// geometry, a stack plus the `STEM.json` sidecar for 3D; deflate-compressed).
pub fn write(path: &Path, g: &Geometry, px: Pixels) -> Result<(), ImageError> {
    let lower = path.to_string_lossy().to_ascii_lowercase();
    if lower.ends_with(".tif") || lower.ends_with(".tiff") {
        return write_tiff(path, g, px);
    }
    if g.ndim != 2 || g.shape[0] != 1 {
        return Err(format_err(path, format!("a picture holds one 2D image, not a volume of shape {:?}", g.shape)));
    }
    use image::{ExtendedColorType as E, ImageEncoder};
    let (w, h) = (g.shape[2] as u32, g.shape[1] as u32);
    let mut buf = Vec::new();
    let (bytes, ct) = match px {
        Pixels::U8(v) => (v.to_vec(), E::L8),
        Pixels::U16(v) => (v.iter().flat_map(|x| x.to_ne_bytes()).collect(), E::L16),
        other => return Err(format_err(path, format!("pictures hold 8/16-bit grey values, not {}", other.datatype()))),
    };
    let res = if lower.ends_with(".bmp") {
        if ct != E::L8 {
            return Err(format_err(path, "BMP holds 8-bit values only; use .png for 16-bit labels"));
        }
        image::codecs::bmp::BmpEncoder::new(&mut buf).write_image(&bytes, w, h, ct)
    } else {
        image::codecs::png::PngEncoder::new(&mut buf).write_image(&bytes, w, h, ct)
    };
    res.map_err(|e| format_err(path, format!("cannot encode: {e}")))?;
    rawio::write_atomic(path, &|out: &mut dyn Write| out.write_all(&buf))
}

/// Writes an 8-bit RGB PNG from three planes of `h x w` values (synthetic RGB datasets).
pub fn write_rgb_png(path: &Path, h: usize, w: usize, planes: &[Vec<u8>]) -> Result<(), ImageError> {
    use image::ImageEncoder;
    if planes.len() != 3 || planes.iter().any(|p| p.len() != h * w) {
        return Err(format_err(path, "an RGB picture needs three planes of its size"));
    }
    let rgb: Vec<u8> = (0..h * w).flat_map(|i| [planes[0][i], planes[1][i], planes[2][i]]).collect();
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(&rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| format_err(path, format!("cannot encode: {e}")))?;
    rawio::write_atomic(path, &|out: &mut dyn Write| out.write_all(&buf))
}

/// Writes a TIFF as a segmentation (nnU-Net's `Tiff3DIO.write_seg`): a 3D stack gets the
/// sidecar `STEM.json` beside it, whatever the stem looks like (a case id may itself end in
/// `_0001`).
fn write_tiff(path: &Path, g: &Geometry, px: Pixels) -> Result<(), ImageError> {
    write_tiff_with_sidecar(path, g, px, sidecar_of_label(path).as_deref())
}

/// Writes a TIFF (one page for a 2D geometry, a page stack for 3D) and, for a stack, the
/// spacing sidecar `sidecar` (`STEM.json` for a segmentation, `CASE.json` for the image
/// `CASE_0000.tif`); the sidecar is written first so a reader never finds a stack without it.
pub fn write_tiff_with_sidecar(
    path: &Path,
    g: &Geometry,
    px: Pixels,
    sidecar: Option<&Path>,
) -> Result<(), ImageError> {
    use tiff::encoder::{colortype, Compression, DeflateLevel, TiffEncoder};
    let [z, h, w] = g.shape;
    let plane = h * w;
    if px.len() != z * plane {
        return Err(format_err(path, format!("cannot write {} values as a TIFF of shape {:?}", px.len(), g.shape)));
    }
    let mut cur = Cursor::new(Vec::new());
    let e = |e: tiff::TiffError| format_err(path, format!("cannot encode: {e}"));
    {
        let mut enc = TiffEncoder::new(&mut cur).map_err(e)?.with_compression(Compression::Deflate(DeflateLevel::Fast));
        for k in 0..z {
            let r = k * plane..(k + 1) * plane;
            match px {
                Pixels::U8(v) => enc.write_image::<colortype::Gray8>(w as u32, h as u32, &v[r]),
                Pixels::U16(v) => enc.write_image::<colortype::Gray16>(w as u32, h as u32, &v[r]),
                Pixels::I16(v) => enc.write_image::<colortype::GrayI16>(w as u32, h as u32, &v[r]),
                Pixels::F32(v) => enc.write_image::<colortype::Gray32Float>(w as u32, h as u32, &v[r]),
            }
            .map_err(e)?;
        }
    }
    let bytes = cur.into_inner();
    if let (3, Some(side)) = (g.ndim, sidecar) {
        let text = serde_json::json!({ "spacing": g.nnunet_spacing() }).to_string();
        rawio::write_atomic(side, &|out: &mut dyn Write| out.write_all(text.as_bytes()))?;
    }
    rawio::write_atomic(path, &|out: &mut dyn Write| out.write_all(&bytes))
}

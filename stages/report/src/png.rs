//! A minimal PNG encoder (8-bit RGB, zlib via flate2) for report images, and slice rendering
//! with label contours (reference solid, prediction dashed).

use flate2::write::ZlibEncoder;
use flate2::Compression;
use std::io::Write;

/// Why an image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("image buffer holds {got} values, {width}×{height} needs {want}")]
    Size { width: usize, height: usize, got: usize, want: usize },
    #[error("image of {0}×{1} pixels is empty or too large for PNG")]
    Dimensions(usize, usize),
    #[error("zlib: {0}")]
    Zlib(#[from] std::io::Error),
}

fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (n, e) in t.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = t[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Encodes an RGB image (`rgb.len() == 3 * width * height`, row-major, top row first).
pub fn encode_rgb(width: usize, height: usize, rgb: &[u8]) -> Result<Vec<u8>, PngError> {
    if width == 0 || height == 0 || width > u32::MAX as usize / 4 || height > u32::MAX as usize / 4 {
        return Err(PngError::Dimensions(width, height));
    }
    if rgb.len() != width * height * 3 {
        return Err(PngError::Size { width, height, got: rgb.len(), want: width * height * 3 });
    }
    let mut raw = Vec::with_capacity((width * 3 + 1) * height);
    for row in rgb.chunks(width * 3) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, deflate, adaptive, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// Label colours (label 1, 2, ...); the SVG charts use the same ones.
pub use nnunet_chart::PALETTE;

/// The colour of label `l` (1-based; 0 and below get the first colour).
pub fn label_colour(l: i64) -> [u8; 3] {
    PALETTE[(l.max(1) - 1) as usize % PALETTE.len()]
}

/// A 2D slice and its label maps, row-major `h × w`.
pub struct Slice<'a> {
    pub h: usize,
    pub w: usize,
    pub image: &'a [f32],
    pub reference: &'a [i16],
    pub prediction: &'a [i16],
}

/// [`contour_rgb`], PNG-encoded.
pub fn slice_with_contours(s: &Slice, scale: usize) -> Result<Vec<u8>, PngError> {
    let (w, h, rgb) = contour_rgb(s, scale)?;
    encode_rgb(w, h, &rgb)
}

/// Renders a slice (grey, windowed to its 0.5–99.5 percentiles) upscaled by `scale`, with the
/// contours of the reference labels (solid) and of the predicted labels (dashed: the label's
/// colour alternating with black, visible on any background and over a solid contour).
/// Contours are traced at the output resolution, on the inside of each label's edge.
/// Returns `(width, height, rgb)`.
pub fn contour_rgb(s: &Slice, scale: usize) -> Result<(usize, usize, Vec<u8>), PngError> {
    let (h, w) = (s.h, s.w);
    for len in [s.image.len(), s.reference.len(), s.prediction.len()] {
        if len != h * w {
            return Err(PngError::Size { width: w, height: h, got: len, want: h * w });
        }
    }
    let scale = scale.max(1);
    let mut sorted: Vec<f32> = s.image.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = match sorted.len() {
        0 => (0.0, 1.0),
        n => (sorted[n / 200], sorted[((n * 199) / 200).min(n - 1)]),
    };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (oh, ow) = (h * scale, w * scale);
    let mut rgb = vec![0u8; oh * ow * 3];
    for y in 0..oh {
        for x in 0..ow {
            let v = s.image[(y / scale) * w + x / scale];
            let g = if v.is_finite() { (((v - lo) / span).clamp(0.0, 1.0) * 255.0) as u8 } else { 0 };
            let o = (y * ow + x) * 3;
            rgb[o..o + 3].copy_from_slice(&[g, g, g]);
        }
    }
    // Label at output pixel (y, x), -1 outside the image.
    let at = |lab: &[i16], y: isize, x: isize| -> i16 {
        if y < 0 || x < 0 || y >= oh as isize || x >= ow as isize {
            -1
        } else {
            lab[(y as usize / scale) * w + x as usize / scale]
        }
    };
    let thickness: isize = if scale >= 3 { 2 } else { 1 };
    for (lab, dashed) in [(s.reference, false), (s.prediction, true)] {
        for y in 0..oh as isize {
            for x in 0..ow as isize {
                let l = at(lab, y, x);
                if l <= 0 {
                    continue;
                }
                let edge = (1..=thickness).any(|d| {
                    at(lab, y - d, x) != l || at(lab, y + d, x) != l || at(lab, y, x - d) != l || at(lab, y, x + d) != l
                });
                if !edge {
                    continue;
                }
                // Dashes: a 6×6 checkerboard cuts a contour of any direction into dashes.
                let gap = dashed && (x / 6 + y / 6) % 2 == 1;
                let c = if gap { [0, 0, 0] } else { label_colour(l as i64) };
                let o = (y as usize * ow + x as usize) * 3;
                rgb[o..o + 3].copy_from_slice(&c);
            }
        }
    }
    Ok((ow, oh, rgb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_known_value() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn png_structure() {
        let png = encode_rgb(2, 1, &[255, 0, 0, 0, 255, 0]).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png.ends_with(&[0xAE, 0x42, 0x60, 0x82]));
        assert!(encode_rgb(2, 2, &[0; 3]).is_err());
        let reference = [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0];
        let img = Slice { h: 4, w: 4, image: &[0.0; 16], reference: &reference, prediction: &[0; 16] };
        let png = slice_with_contours(&img, 2).unwrap();
        assert!(png.len() > 50);
        // A 4×4 label square at scale 4: its edge is coloured, its centre keeps the grey.
        let (w, _, rgb) = contour_rgb(&img, 4).unwrap();
        let px = |y: usize, x: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
        assert_eq!(px(4, 4), label_colour(1));
        assert_eq!(px(7, 7), &[0, 0, 0]);
        assert_eq!(px(0, 0), &[0, 0, 0]);
        let bad = Slice { h: 4, w: 4, image: &[0.0; 15], reference: &reference, prediction: &[0; 16] };
        assert!(slice_with_contours(&bad, 2).is_err());
    }
}

//! NRRD (`.nrrd` one file, `.nhdr` header + data file), 3D Slicer's format.
//! Hand-written: no maintained Rust crate reads or writes NRRD.
//!
//! Read: `type` (every scalar type), `dimension` 2 or 3 (all axes spatial: vector, list and
//! colour axes are refused, nnU-Net takes one file per channel), `sizes`, `endian`, `encoding`
//! raw / gzip / ascii, `space` (LPS, RAS, LAS; converted to ITK's LPS) or `space dimension`,
//! `space directions`, `space origin`, `spacings` (without directions), `data file` next to the
//! header (path-checked), `line skip`, `byte skip` (-1 = at the end of a raw file). Write: what
//! SimpleITK writes with compression on (LPS, gzip; `.nhdr` + `.raw.gz`).

use super::geometry::Geometry;
use super::rawio::{self, Encoding, Start};
use super::{format_err, ImageError, ImageFormat, LoadedImage, Pixels};
use crate::nifti::{DataType, NiftiData};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAX_HEADER: usize = 1 << 20;

struct Header {
    fields: BTreeMap<String, String>,
    /// Byte offset of the data in the file itself (after the blank line), if there is one.
    end: Option<u64>,
}

fn parse_header(path: &Path) -> Result<Header, ImageError> {
    let f = std::fs::File::open(path).map_err(|e| format_err(path, e.to_string()))?;
    let mut buf = Vec::new();
    f.take(MAX_HEADER as u64).read_to_end(&mut buf).map_err(|e| format_err(path, e.to_string()))?;
    if !buf.starts_with(b"NRRD000") {
        return Err(format_err(path, "not a NRRD file (no NRRD000x magic)"));
    }
    let mut fields = BTreeMap::new();
    let mut pos = buf.iter().position(|&b| b == b'\n').map(|i| i + 1).unwrap_or(buf.len());
    while pos < buf.len() {
        let line_end = buf[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i + 1).unwrap_or(buf.len());
        let line = String::from_utf8_lossy(&buf[pos..line_end]).trim_end_matches(['\n', '\r']).to_string();
        pos = line_end;
        if line.is_empty() {
            return Ok(Header { fields, end: Some(pos as u64) });
        }
        if line.starts_with('#') || line.contains(":=") {
            continue; // comment or key/value pair
        }
        let Some((k, v)) = line.split_once(": ") else {
            return Err(format_err(
                path,
                format!("not a NRRD field line: \"{}\"", line.chars().take(60).collect::<String>()),
            ));
        };
        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(Header { fields, end: None })
}

fn data_type(path: &Path, t: &str) -> Result<DataType, ImageError> {
    Ok(match t {
        "signed char" | "int8" | "int8_t" => DataType::I8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => DataType::U8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => DataType::I16,
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => DataType::U16,
        "int" | "signed int" | "int32" | "int32_t" => DataType::I32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => DataType::U32,
        "longlong"
        | "long long"
        | "long long int"
        | "signed long long"
        | "signed long long int"
        | "int64"
        | "int64_t" => DataType::I64,
        "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => DataType::U64,
        "float" => DataType::F32,
        "double" => DataType::F64,
        other => return Err(format_err(path, format!("type \"{other}\" is not supported"))),
    })
}

fn type_name(dt: DataType) -> &'static str {
    match dt {
        DataType::I8 => "signed char",
        DataType::U8 => "unsigned char",
        DataType::I16 => "short",
        DataType::U16 => "unsigned short",
        DataType::I32 => "int",
        DataType::U32 => "unsigned int",
        DataType::I64 => "long long int",
        DataType::U64 => "unsigned long long int",
        DataType::F32 => "float",
        DataType::F64 => "double",
    }
}

/// `(a,b,c)` -> numbers.
fn vector(path: &Path, field: &str, text: &str) -> Result<Vec<f64>, ImageError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format_err(path, format!("{field}: \"{text}\" is not a (x,y,z) vector")))?;
    rawio::numbers(path, field, &inner.replace(',', " "))
}

/// The signs that take a NRRD space to ITK's LPS, and its dimension.
fn space(path: &Path, s: &str) -> Result<([f64; 3], usize), ImageError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "left-posterior-superior" | "lps" => ([1.0, 1.0, 1.0], 3),
        "right-anterior-superior" | "ras" => ([-1.0, -1.0, 1.0], 3),
        "left-anterior-superior" | "las" => ([1.0, -1.0, 1.0], 3),
        other => {
            return Err(format_err(
                path,
                format!("space \"{other}\" is not supported (left-posterior-superior, right-anterior-superior, left-anterior-superior)"),
            ))
        }
    })
}

fn geometry(path: &Path, h: &Header, n: usize, sizes: &[usize]) -> Result<Geometry, ImageError> {
    let f = |k: &str| h.fields.get(k).map(String::as_str);
    let (flip, sdim) = match (f("space"), f("space dimension")) {
        (Some(s), _) => space(path, s)?,
        (None, Some(d)) => ([1.0; 3], d.parse().map_err(|_| format_err(path, format!("space dimension {d}")))?),
        (None, None) => ([1.0; 3], n),
    };
    if sdim != n {
        return Err(format_err(
            path,
            format!("a {n}D image in a {sdim}D space is not supported (slices embedded in 3D space: convert to 3D)"),
        ));
    }
    let mut g =
        Geometry::plain(n, if n == 2 { [1, sizes[1], sizes[0]] } else { [sizes[2], sizes[1], sizes[0]] }, [1.0; 3]);
    if let Some(dirs) = f("space directions") {
        let parts: Vec<&str> = dirs.split_whitespace().collect();
        // Vectors may contain no spaces ("(1,0,0)"); rejoin if a vector was split.
        let joined = parts.join("");
        let vecs: Vec<String> = joined.split(')').filter(|p| !p.is_empty()).map(|p| format!("{p})")).collect();
        if vecs.len() != n || joined.contains("none") {
            return Err(format_err(path, format!("space directions \"{dirs}\": expected {n} vectors")));
        }
        for (j, v) in vecs.iter().enumerate() {
            let v = vector(path, "space directions", v)?;
            if v.len() != n {
                return Err(format_err(
                    path,
                    format!("space directions: vector {j} has {} values, expected {n}", v.len()),
                ));
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                return Err(format_err(path, format!("space directions: vector {j} is zero")));
            }
            g.spacing[j] = norm;
            for i in 0..n {
                g.direction[i][j] = flip[i] * v[i] / norm;
            }
        }
    } else if let Some(s) = f("spacings") {
        let s = rawio::numbers(path, "spacings", s)?;
        if s.len() != n || s.iter().any(|v| *v <= 0.0) {
            return Err(format_err(path, format!("spacings: expected {n} positive values")));
        }
        g.spacing[..n].copy_from_slice(&s);
    }
    if let Some(o) = f("space origin") {
        let o = vector(path, "space origin", o)?;
        if o.len() != n {
            return Err(format_err(path, format!("space origin has {} values, expected {n}", o.len())));
        }
        for i in 0..n {
            g.origin[i] = flip[i] * o[i];
        }
    }
    Ok(g)
}

/// Reads a `.nrrd` or `.nhdr` image.
///
/// Long (~90 lines): the header's fields in the order the NRRD spec lists them, each checked
/// where it is read, then the data file.
pub fn read(path: &Path) -> Result<LoadedImage, ImageError> {
    let h = parse_header(path)?;
    let f = |k: &str| h.fields.get(k).map(String::as_str);
    let need = |k: &str| f(k).ok_or_else(|| format_err(path, format!("field \"{k}\" is missing")));
    let dt = data_type(path, need("type")?)?;
    let n: usize = need("dimension")?.parse().map_err(|_| format_err(path, "dimension is not an integer"))?;
    let sizes = rawio::sizes(path, "sizes", need("sizes")?)?;
    if sizes.len() != n {
        return Err(format_err(path, format!("sizes has {} values, dimension is {n}", sizes.len())));
    }
    if let Some(kinds) = f("kinds") {
        if let Some(k) = kinds.split_whitespace().find(|k| !matches!(*k, "domain" | "space" | "???" | "none")) {
            return Err(format_err(
                path,
                format!("axis kind \"{k}\": images with several components per voxel are not supported; nnU-Net takes one file per channel"),
            ));
        }
    }
    if !(2..=3).contains(&n) {
        return Err(format_err(path, format!("dimension {n}: only 2D and 3D images are supported")));
    }
    let geometry = geometry(path, &h, n, &sizes)?;
    let encoding = need("encoding")?.to_ascii_lowercase();
    let big = match f("endian") {
        Some("big") => true,
        Some("little") | None => false,
        Some(e) => return Err(format_err(path, format!("endian \"{e}\": expected little or big"))),
    };
    if f("endian").is_none() && dt.size() > 1 && !matches!(encoding.as_str(), "ascii" | "text" | "txt") {
        return Err(format_err(path, "field \"endian\" is missing"));
    }
    let data_file = f("data file").or(f("datafile"));
    let (file, mut start) = match data_file {
        Some(d) if d.starts_with("LIST") || d.contains('%') || d.split_whitespace().count() > 1 => {
            return Err(format_err(path, format!("data file \"{d}\": lists of data files are not supported")))
        }
        Some(d) => (rawio::detached(path, d, "data file")?, 0u64),
        None => {
            (path.to_path_buf(), h.end.ok_or_else(|| format_err(path, "file is truncated: no data after the header"))?)
        }
    };
    let line_skip: usize = f("line skip").or(f("lineskip")).map(|v| v.parse().unwrap_or(usize::MAX)).unwrap_or(0);
    if line_skip > 0 {
        if line_skip == usize::MAX {
            return Err(format_err(path, "line skip is not a non-negative integer"));
        }
        let bytes = std::fs::read(&file).map_err(|e| format_err(&file, e.to_string()))?;
        let mut p = start as usize;
        for _ in 0..line_skip {
            p =
                bytes.get(p..).and_then(|b| b.iter().position(|&c| c == b'\n')).map(|i| p + i + 1).ok_or_else(
                    || format_err(&file, format!("file is truncated: fewer than {line_skip} lines to skip")),
                )?;
        }
        start = p as u64;
    }
    let byte_skip: i64 = match f("byte skip").or(f("byteskip")) {
        Some(v) => v.parse().map_err(|_| format_err(path, format!("byte skip {v} is not an integer")))?,
        None => 0,
    };
    let (count, bytes) = rawio::byte_size(path, &sizes, dt)?;
    let data = match encoding.as_str() {
        "raw" => {
            let s = if byte_skip < 0 { Start::FromEnd } else { Start::At(start + byte_skip as u64) };
            rawio::decode(dt, rawio::read_block(&file, s, bytes, Encoding::Raw)?, big)
        }
        "gzip" | "gz" => {
            // byte skip applies to the decompressed stream.
            let skip = byte_skip.max(0) as usize;
            let mut all = rawio::read_block(&file, Start::At(start), bytes + skip, Encoding::Compressed)?;
            all.drain(..skip);
            rawio::decode(dt, all, big)
        }
        "ascii" | "text" | "txt" => {
            let bytes = std::fs::read(&file).map_err(|e| format_err(&file, e.to_string()))?;
            let text = String::from_utf8_lossy(bytes.get(start as usize..).unwrap_or(&[]));
            let values: Vec<f64> = text
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
                .take(count)
                .map(|t| t.parse::<f64>().map_err(|_| format_err(&file, format!("\"{t}\" is not a number"))))
                .collect::<Result<_, _>>()?;
            if values.len() < count {
                return Err(format_err(&file, format!("file is truncated: {} of {count} values", values.len())));
            }
            NiftiData::F64(values)
        }
        other => return Err(format_err(path, format!("encoding \"{other}\" is not supported (raw, gzip, ascii)"))),
    };
    LoadedImage::from_data(path, ImageFormat::Nrrd, geometry, 1, data)
}

/// The data file an `.nhdr` header names.
pub fn data_file_of(path: &Path) -> Option<PathBuf> {
    let h = parse_header(path).ok()?;
    let name = h.fields.get("data file").or(h.fields.get("datafile"))?;
    rawio::detached(path, name, "data file").ok()
}

/// Writes `.nrrd` or `.nhdr` + `.raw.gz` (LPS, gzip, little-endian).
pub fn write(path: &Path, g: &Geometry, px: Pixels) -> Result<(), ImageError> {
    let n = g.ndim.clamp(2, 3);
    let data = rawio::gzip(&px.to_bytes(false)).map_err(|e| format_err(path, e.to_string()))?;
    let vec_text = |v: Vec<f64>| format!("({})", v.into_iter().map(rawio::num).collect::<Vec<_>>().join(","));
    let dirs: Vec<String> =
        (0..n).map(|j| vec_text((0..n).map(|i| g.direction[i][j] * g.spacing[j]).collect())).collect();
    let sizes: Vec<String> = [g.shape[2], g.shape[1], g.shape[0]][..n].iter().map(|d| d.to_string()).collect();
    let space = if n == 3 { "space: left-posterior-superior".to_string() } else { "space dimension: 2".to_string() };
    let mut text = format!(
        "NRRD0004\n# Complete NRRD file format specification at:\n# http://teem.sourceforge.net/nrrd/format.html\ntype: {}\ndimension: {n}\n{space}\nsizes: {}\nspace directions: {}\nkinds: {}\nendian: little\nencoding: gzip\nspace origin: {}\n",
        type_name(px.datatype()),
        sizes.join(" "),
        dirs.join(" "),
        vec!["domain"; n].join(" "),
        vec_text(g.origin[..n].to_vec()),
    );
    if path.to_string_lossy().to_ascii_lowercase().ends_with(".nhdr") {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let data_name = format!("{stem}.raw.gz");
        rawio::write_atomic(&path.with_file_name(&data_name), &|w: &mut dyn Write| w.write_all(&data))?;
        text += &format!("data file: {data_name}\n");
        rawio::write_atomic(path, &|w: &mut dyn Write| w.write_all(text.as_bytes()))
    } else {
        text += "\n";
        rawio::write_atomic(path, &|w: &mut dyn Write| {
            w.write_all(text.as_bytes())?;
            w.write_all(&data)
        })
    }
}

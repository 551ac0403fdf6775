//! MetaImage (`.mha` one file, `.mhd` header + data file), ITK's format and grand-challenge's.
//! Hand-written: no maintained Rust crate reads or writes MetaImage.
//!
//! Read: `NDims` 2 or 3, `DimSize`, `ElementType` (MET_CHAR .. MET_DOUBLE; MET_LONG is 4 bytes as
//! in MetaIO), `BinaryDataByteOrderMSB`/`ElementByteOrderMSB`, `CompressedData` (zlib or gzip
//! stream), `ElementSpacing` (or `ElementSize`), `Offset`/`Position`/`Origin`,
//! `TransformMatrix`/`Rotation`/`Orientation` (axis direction vectors one after the other, as
//! ITK writes them), `HeaderSize` (-1 = data at the end) and `ElementDataFile` (`LOCAL` or a file
//! next to the header). `ElementNumberOfChannels` > 1 is refused: nnU-Net takes one file per
//! channel. Write: what SimpleITK writes with compression on (zlib, `.zraw` for `.mhd`).

use super::geometry::Geometry;
use super::rawio::{self, Encoding, Start};
use super::{format_err, ImageError, ImageFormat, LoadedImage, Pixels};
use crate::nifti::DataType;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Header lines beyond this size without `ElementDataFile` mean the file is not MetaImage.
const MAX_HEADER: usize = 1 << 20;

/// A parsed header: fields (keys lower-cased) and where the text ended.
struct Header {
    fields: BTreeMap<String, String>,
    /// Byte offset just after the `ElementDataFile` line.
    end: u64,
}

fn parse_header(path: &Path) -> Result<Header, ImageError> {
    let f = std::fs::File::open(path).map_err(|e| format_err(path, e.to_string()))?;
    let mut buf = Vec::new();
    f.take(MAX_HEADER as u64).read_to_end(&mut buf).map_err(|e| format_err(path, e.to_string()))?;
    let mut fields = BTreeMap::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let line_end = buf[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i + 1).unwrap_or(buf.len());
        let line = String::from_utf8_lossy(&buf[pos..line_end]);
        pos = line_end;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format_err(path, format!("not a MetaImage header line: \"{}\"", truncate(line))));
        };
        let key = k.trim().to_ascii_lowercase();
        fields.insert(key.clone(), v.trim().to_string());
        if key == "elementdatafile" {
            return Ok(Header { fields, end: pos as u64 });
        }
    }
    Err(format_err(path, "not a MetaImage file: no ElementDataFile line in the header"))
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

fn element_type(path: &Path, t: &str) -> Result<DataType, ImageError> {
    Ok(match t {
        "MET_UCHAR" => DataType::U8,
        "MET_CHAR" => DataType::I8,
        "MET_USHORT" => DataType::U16,
        "MET_SHORT" => DataType::I16,
        "MET_UINT" | "MET_ULONG" => DataType::U32,
        "MET_INT" | "MET_LONG" => DataType::I32,
        "MET_ULONG_LONG" => DataType::U64,
        "MET_LONG_LONG" => DataType::I64,
        "MET_FLOAT" => DataType::F32,
        "MET_DOUBLE" => DataType::F64,
        other => {
            return Err(format_err(path, format!("ElementType {other} is not supported (MET_CHAR .. MET_DOUBLE)")))
        }
    })
}

fn type_name(dt: DataType) -> &'static str {
    match dt {
        DataType::U8 => "MET_UCHAR",
        DataType::I8 => "MET_CHAR",
        DataType::U16 => "MET_USHORT",
        DataType::I16 => "MET_SHORT",
        DataType::U32 => "MET_UINT",
        DataType::I32 => "MET_INT",
        DataType::U64 => "MET_ULONG_LONG",
        DataType::I64 => "MET_LONG_LONG",
        DataType::F32 => "MET_FLOAT",
        DataType::F64 => "MET_DOUBLE",
    }
}

fn boolean(path: &Path, field: &str, v: &str) -> Result<bool, ImageError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format_err(path, format!("{field} = {v}: expected True or False"))),
    }
}

/// The geometry fields of a header with `n` dimensions.
fn geometry(path: &Path, h: &Header, n: usize, dims: &[usize]) -> Result<Geometry, ImageError> {
    let get = |names: &[&'static str]| names.iter().find_map(|k| h.fields.get(*k).map(|v| (*k, v.as_str())));
    let vector = |names: &[&'static str], len: usize, default: f64| -> Result<Vec<f64>, ImageError> {
        match get(names) {
            None => Ok(vec![default; len]),
            Some((k, v)) => {
                let x = rawio::numbers(path, k, v)?;
                if x.len() < len {
                    return Err(format_err(path, format!("{k} has {} values, expected {len}", x.len())));
                }
                Ok(x[..len].to_vec())
            }
        }
    };
    let spacing = vector(&["elementspacing", "elementsize"], n, 1.0)?;
    if let Some(s) = spacing.iter().find(|s| **s <= 0.0) {
        return Err(format_err(path, format!("ElementSpacing {s} is not positive")));
    }
    let origin = vector(&["offset", "position", "origin"], n, 0.0)?;
    let identity: Vec<f64> = (0..n * n).map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 }).collect();
    let tm = match get(&["transformmatrix", "rotation", "orientation"]) {
        None => identity,
        Some(_) => vector(&["transformmatrix", "rotation", "orientation"], n * n, 0.0)?,
    };
    let mut g = Geometry::plain(n, [1, 1, 1], [1.0; 3]);
    for j in 0..n {
        g.spacing[j] = spacing[j];
        g.origin[j] = origin[j];
        for i in 0..n {
            // Column j (the direction of axis j) is stored as the j-th group of n values.
            g.direction[i][j] = tm[j * n + i];
        }
    }
    g.shape = if n == 2 { [1, dims[1], dims[0]] } else { [dims[2], dims[1], dims[0]] };
    Ok(g)
}

/// Reads a `.mha` or `.mhd` image.
pub fn read(path: &Path) -> Result<LoadedImage, ImageError> {
    let h = parse_header(path)?;
    let f = |k: &str| h.fields.get(k).map(String::as_str);
    if let Some(t) = f("objecttype") {
        if !t.eq_ignore_ascii_case("image") {
            return Err(format_err(path, format!("ObjectType = {t}: only images are supported")));
        }
    }
    let n: usize = f("ndims")
        .ok_or_else(|| format_err(path, "NDims is missing"))?
        .parse()
        .map_err(|_| format_err(path, "NDims is not an integer"))?;
    if !(2..=3).contains(&n) {
        return Err(format_err(path, format!("NDims = {n}: only 2D and 3D images are supported")));
    }
    let dims = rawio::sizes(path, "DimSize", f("dimsize").ok_or_else(|| format_err(path, "DimSize is missing"))?)?;
    if dims.len() != n {
        return Err(format_err(path, format!("DimSize has {} values, NDims is {n}", dims.len())));
    }
    if let Some(c) = f("elementnumberofchannels") {
        if c.trim() != "1" {
            return Err(format_err(
                path,
                format!("ElementNumberOfChannels = {c}: nnU-Net takes one file per channel (_0000, _0001, ...); split the channels"),
            ));
        }
    }
    if let Some(b) = f("binarydata") {
        if !boolean(path, "BinaryData", b)? {
            return Err(format_err(path, "BinaryData = False (ASCII voxels) is not supported"));
        }
    }
    let dt = element_type(path, f("elementtype").ok_or_else(|| format_err(path, "ElementType is missing"))?)?;
    let msb = match f("binarydatabyteordermsb").or(f("elementbyteordermsb")) {
        Some(v) => boolean(path, "BinaryDataByteOrderMSB", v)?,
        None => false,
    };
    let compressed = match f("compresseddata") {
        Some(v) => boolean(path, "CompressedData", v)?,
        None => false,
    };
    let geometry = geometry(path, &h, n, &dims)?;
    let (_, bytes) = rawio::byte_size(path, &dims, dt)?;
    let header_size: i64 = match f("headersize") {
        Some(v) => v.parse().map_err(|_| format_err(path, format!("HeaderSize = {v} is not an integer")))?,
        None => 0,
    };
    let data_file = f("elementdatafile").unwrap_or("LOCAL");
    let enc = if compressed { Encoding::Compressed } else { Encoding::Raw };
    let (file, start) = if data_file.eq_ignore_ascii_case("LOCAL") {
        (path.to_path_buf(), Start::At(h.end))
    } else if data_file.eq_ignore_ascii_case("LIST") || data_file.contains('%') {
        return Err(format_err(path, format!("ElementDataFile = {data_file}: slice lists are not supported")));
    } else {
        let p = rawio::detached(path, data_file, "ElementDataFile")?;
        let start = if header_size < 0 { Start::FromEnd } else { Start::At(header_size as u64) };
        (p, start)
    };
    let raw = rawio::read_block(&file, start, bytes, enc)?;
    let data = rawio::decode(dt, raw, msb);
    LoadedImage::from_data(path, ImageFormat::MetaImage, geometry, 1, data)
}

/// The data file an `.mhd` header names (`None` for `LOCAL` or an unreadable header).
pub fn data_file_of(path: &Path) -> Option<PathBuf> {
    let h = parse_header(path).ok()?;
    let name = h.fields.get("elementdatafile")?;
    if name.eq_ignore_ascii_case("LOCAL") {
        return None;
    }
    rawio::detached(path, name, "ElementDataFile").ok()
}

/// The header text ITK writes for this geometry (no trailing `ElementDataFile`).
fn header_text(g: &Geometry, dt: DataType, compressed_size: Option<usize>) -> String {
    let n = g.ndim.clamp(2, 3);
    let join = |v: Vec<f64>| v.into_iter().map(rawio::num).collect::<Vec<_>>().join(" ");
    let tm: Vec<f64> = (0..n).flat_map(|j| (0..n).map(move |i| g.direction[i][j])).collect();
    let dims: Vec<String> = [g.shape[2], g.shape[1], g.shape[0]][..n].iter().map(|d| d.to_string()).collect();
    let mut s = format!("ObjectType = Image\nNDims = {n}\nBinaryData = True\nBinaryDataByteOrderMSB = False\n");
    match compressed_size {
        Some(c) => s += &format!("CompressedData = True\nCompressedDataSize = {c}\n"),
        None => s += "CompressedData = False\n",
    }
    s += &format!(
        "TransformMatrix = {}\nOffset = {}\nCenterOfRotation = {}\nAnatomicalOrientation = {}\nElementSpacing = {}\nDimSize = {}\nElementType = {}\n",
        join(tm),
        join(g.origin[..n].to_vec()),
        join(vec![0.0; n]),
        g.anatomical_orientation(),
        join(g.spacing[..n].to_vec()),
        dims.join(" "),
        type_name(dt)
    );
    s
}

/// Writes `.mha` (one file) or `.mhd` + `.zraw`, zlib-compressed, little-endian.
pub fn write(path: &Path, g: &Geometry, px: Pixels) -> Result<(), ImageError> {
    let dt = px.datatype();
    let data = rawio::zlib(&px.to_bytes(false)).map_err(|e| format_err(path, e.to_string()))?;
    let mut text = header_text(g, dt, Some(data.len()));
    let lower = path.to_string_lossy().to_ascii_lowercase();
    if lower.ends_with(".mhd") {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let data_name = format!("{stem}.zraw");
        rawio::write_atomic(&path.with_file_name(&data_name), &|w: &mut dyn Write| w.write_all(&data))?;
        text += &format!("ElementDataFile = {data_name}\n");
        rawio::write_atomic(path, &|w: &mut dyn Write| w.write_all(text.as_bytes()))
    } else {
        text += "ElementDataFile = LOCAL\n";
        rawio::write_atomic(path, &|w: &mut dyn Write| {
            w.write_all(text.as_bytes())?;
            w.write_all(&data)
        })
    }
}

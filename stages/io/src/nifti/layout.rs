//! The byte layout of NIfTI-1 (348-byte) and NIfTI-2 (540-byte) headers: parsing in either
//! byte order, little-endian encoding, and header extensions.

use super::datatype::{code_name, DataType};
use super::header::{Endian, NiftiExtension, NiftiHeader, NiftiVersion};

/// Bytes one extension takes on disk (8-byte `esize`/`ecode` + payload, padded to 16).
pub(crate) fn ext_size(payload: usize) -> usize {
    (8 + payload).div_ceil(16) * 16
}

/// Why a header could not be parsed or encoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HeaderProblem {
    BadSize(i32),
    BadMagic([u8; 4]),
    TwoFile,
    Unsupported(i16),
    Invalid(String),
}

/// Detects version and byte order from the first 4 bytes (`sizeof_hdr`).
pub(crate) fn detect(first4: [u8; 4]) -> Result<(NiftiVersion, Endian), HeaderProblem> {
    let le = i32::from_le_bytes(first4);
    let be = i32::from_be_bytes(first4);
    match (le, be) {
        (348, _) => Ok((NiftiVersion::V1, Endian::Little)),
        (_, 348) => Ok((NiftiVersion::V1, Endian::Big)),
        (540, _) => Ok((NiftiVersion::V2, Endian::Little)),
        (_, 540) => Ok((NiftiVersion::V2, Endian::Big)),
        _ => Err(HeaderProblem::BadSize(le)),
    }
}

/// Reads fixed-offset fields from a header buffer.
struct Rd<'a> {
    b: &'a [u8],
    big: bool,
}

impl Rd<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        if let Some(s) = self.b.get(off..off + N) {
            a.copy_from_slice(s);
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        let a = self.arr(off);
        if self.big {
            i16::from_be_bytes(a)
        } else {
            i16::from_le_bytes(a)
        }
    }
    fn i32(&self, off: usize) -> i32 {
        let a = self.arr(off);
        if self.big {
            i32::from_be_bytes(a)
        } else {
            i32::from_le_bytes(a)
        }
    }
    fn i64(&self, off: usize) -> i64 {
        let a = self.arr(off);
        if self.big {
            i64::from_be_bytes(a)
        } else {
            i64::from_le_bytes(a)
        }
    }
    fn f32(&self, off: usize) -> f64 {
        let a = self.arr(off);
        (if self.big { f32::from_be_bytes(a) } else { f32::from_le_bytes(a) }) as f64
    }
    fn f64(&self, off: usize) -> f64 {
        let a = self.arr(off);
        if self.big {
            f64::from_be_bytes(a)
        } else {
            f64::from_le_bytes(a)
        }
    }
    fn u8(&self, off: usize) -> u8 {
        self.b.get(off).copied().unwrap_or(0)
    }
}

/// Parses a complete header (`buf.len() == version.header_size()`); extensions are left empty.
///
/// Long (~100 lines): one statement per header field at its offset, in the standard's order.
pub(crate) fn parse(buf: &[u8], version: NiftiVersion, endian: Endian) -> Result<NiftiHeader, HeaderProblem> {
    let r = Rd { b: buf, big: endian == Endian::Big };
    let mut h = NiftiHeader { version, endian, ..NiftiHeader::default() };
    let code;
    match version {
        NiftiVersion::V1 => {
            let magic: [u8; 4] = r.arr(344);
            check_magic(&magic, b"n+1", b"ni1")?;
            h.dim_info = r.u8(39);
            for i in 0..8 {
                h.dim[i] = r.i16(40 + 2 * i) as i64;
            }
            h.intent_p1 = r.f32(56);
            h.intent_p2 = r.f32(60);
            h.intent_p3 = r.f32(64);
            h.intent_code = r.i16(68) as i32;
            code = r.i16(70);
            h.bitpix = r.i16(72);
            h.slice_start = r.i16(74) as i64;
            for i in 0..8 {
                h.pixdim[i] = r.f32(76 + 4 * i);
            }
            h.vox_offset = r.f32(108);
            h.scl_slope = r.f32(112);
            h.scl_inter = r.f32(116);
            h.slice_end = r.i16(120) as i64;
            h.slice_code = r.u8(122) as i32;
            h.xyzt_units = r.u8(123) as i32;
            h.cal_max = r.f32(124);
            h.cal_min = r.f32(128);
            h.slice_duration = r.f32(132);
            h.toffset = r.f32(136);
            h.descrip = r.arr(148);
            h.aux_file = r.arr(228);
            h.qform_code = r.i16(252) as i32;
            h.sform_code = r.i16(254) as i32;
            h.quatern_b = r.f32(256);
            h.quatern_c = r.f32(260);
            h.quatern_d = r.f32(264);
            h.qoffset_x = r.f32(268);
            h.qoffset_y = r.f32(272);
            h.qoffset_z = r.f32(276);
            for i in 0..4 {
                h.srow_x[i] = r.f32(280 + 4 * i);
                h.srow_y[i] = r.f32(296 + 4 * i);
                h.srow_z[i] = r.f32(312 + 4 * i);
            }
            h.intent_name = r.arr(328);
        }
        NiftiVersion::V2 => {
            let magic: [u8; 4] = r.arr(4);
            check_magic(&magic, b"n+2", b"ni2")?;
            code = r.i16(12);
            h.bitpix = r.i16(14);
            for i in 0..8 {
                h.dim[i] = r.i64(16 + 8 * i);
            }
            h.intent_p1 = r.f64(80);
            h.intent_p2 = r.f64(88);
            h.intent_p3 = r.f64(96);
            for i in 0..8 {
                h.pixdim[i] = r.f64(104 + 8 * i);
            }
            let off = r.i64(168);
            h.vox_offset = off as f64;
            h.scl_slope = r.f64(176);
            h.scl_inter = r.f64(184);
            h.cal_max = r.f64(192);
            h.cal_min = r.f64(200);
            h.slice_duration = r.f64(208);
            h.toffset = r.f64(216);
            h.slice_start = r.i64(224);
            h.slice_end = r.i64(232);
            h.descrip = r.arr(240);
            h.aux_file = r.arr(320);
            h.qform_code = r.i32(344);
            h.sform_code = r.i32(348);
            h.quatern_b = r.f64(352);
            h.quatern_c = r.f64(360);
            h.quatern_d = r.f64(368);
            h.qoffset_x = r.f64(376);
            h.qoffset_y = r.f64(384);
            h.qoffset_z = r.f64(392);
            for i in 0..4 {
                h.srow_x[i] = r.f64(400 + 8 * i);
                h.srow_y[i] = r.f64(432 + 8 * i);
                h.srow_z[i] = r.f64(464 + 8 * i);
            }
            h.slice_code = r.i32(496);
            h.xyzt_units = r.i32(500);
            h.intent_code = r.i32(504);
            h.intent_name = r.arr(508);
            h.dim_info = r.u8(524);
        }
    }
    h.datatype = DataType::from_code(code).ok_or(HeaderProblem::Unsupported(code))?;
    validate_dims(&h)?;
    Ok(h)
}

fn check_magic(magic: &[u8; 4], single: &[u8; 3], pair: &[u8; 3]) -> Result<(), HeaderProblem> {
    if &magic[..3] == single && magic[3] == 0 {
        Ok(())
    } else if &magic[..3] == pair {
        Err(HeaderProblem::TwoFile)
    } else {
        Err(HeaderProblem::BadMagic(*magic))
    }
}

/// Checks `dim[0]` and every used size; sizes must be positive and their product must fit.
pub(crate) fn validate_dims(h: &NiftiHeader) -> Result<(), HeaderProblem> {
    let nd = h.dim[0];
    if !(1..=7).contains(&nd) {
        return Err(HeaderProblem::Invalid(format!("dim[0] = {nd}, expected 1 to 7 dimensions")));
    }
    for i in 1..=nd as usize {
        if h.dim[i] <= 0 {
            return Err(HeaderProblem::Invalid(format!("dim[{i}] = {} is not a positive size", h.dim[i])));
        }
    }
    let n = h.num_voxels().and_then(|n| n.checked_mul(h.datatype.size()));
    if n.is_none_or(|n| n > isize::MAX as usize) {
        return Err(HeaderProblem::Invalid(format!(
            "dimensions {:?} overflow the addressable size",
            &h.dim[1..=nd as usize]
        )));
    }
    Ok(())
}

/// Little-endian writer into a fixed header buffer.
struct Wr {
    b: Vec<u8>,
}

impl Wr {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.b[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

/// Narrows a value for a NIfTI-1 field, naming the field when it does not fit.
fn narrow<T: TryFrom<i64>>(v: i64, field: &str) -> Result<T, HeaderProblem> {
    T::try_from(v)
        .map_err(|_| HeaderProblem::Invalid(format!("{field} = {v} does not fit a NIfTI-1 header; write NIfTI-2")))
}

/// Encodes the header (little-endian) with the given `vox_offset`, followed by the 4-byte
/// extender and the extensions. The result is exactly `vox_offset` bytes long.
pub(crate) fn encode(h: &NiftiHeader) -> Result<Vec<u8>, HeaderProblem> {
    validate_dims(h)?;
    let hs = h.version.header_size();
    let vox_offset = h.data_offset_for_write();
    let mut w = Wr { b: vec![0u8; hs] };
    let code = h.datatype.code();
    let bitpix = h.datatype.bitpix();
    match h.version {
        NiftiVersion::V1 => {
            w.put(0, &348i32.to_le_bytes());
            w.put(38, b"r");
            w.put(39, &[h.dim_info]);
            for i in 0..8 {
                w.put(40 + 2 * i, &narrow::<i16>(h.dim[i], &format!("dim[{i}]"))?.to_le_bytes());
            }
            let f = |v: f64| (v as f32).to_le_bytes();
            w.put(56, &f(h.intent_p1));
            w.put(60, &f(h.intent_p2));
            w.put(64, &f(h.intent_p3));
            w.put(68, &narrow::<i16>(h.intent_code as i64, "intent_code")?.to_le_bytes());
            w.put(70, &code.to_le_bytes());
            w.put(72, &bitpix.to_le_bytes());
            w.put(74, &narrow::<i16>(h.slice_start, "slice_start")?.to_le_bytes());
            for i in 0..8 {
                w.put(76 + 4 * i, &f(h.pixdim[i]));
            }
            w.put(108, &f(vox_offset as f64));
            w.put(112, &f(h.scl_slope));
            w.put(116, &f(h.scl_inter));
            w.put(120, &narrow::<i16>(h.slice_end, "slice_end")?.to_le_bytes());
            w.put(122, &[narrow::<u8>(h.slice_code as i64, "slice_code")?]);
            w.put(123, &[narrow::<u8>(h.xyzt_units as i64, "xyzt_units")?]);
            w.put(124, &f(h.cal_max));
            w.put(128, &f(h.cal_min));
            w.put(132, &f(h.slice_duration));
            w.put(136, &f(h.toffset));
            w.put(148, &h.descrip);
            w.put(228, &h.aux_file);
            w.put(252, &narrow::<i16>(h.qform_code as i64, "qform_code")?.to_le_bytes());
            w.put(254, &narrow::<i16>(h.sform_code as i64, "sform_code")?.to_le_bytes());
            w.put(256, &f(h.quatern_b));
            w.put(260, &f(h.quatern_c));
            w.put(264, &f(h.quatern_d));
            w.put(268, &f(h.qoffset_x));
            w.put(272, &f(h.qoffset_y));
            w.put(276, &f(h.qoffset_z));
            for i in 0..4 {
                w.put(280 + 4 * i, &f(h.srow_x[i]));
                w.put(296 + 4 * i, &f(h.srow_y[i]));
                w.put(312 + 4 * i, &f(h.srow_z[i]));
            }
            w.put(328, &h.intent_name);
            w.put(344, b"n+1\0");
        }
        NiftiVersion::V2 => {
            w.put(0, &540i32.to_le_bytes());
            w.put(4, b"n+2\0\r\n\x1a\n");
            w.put(12, &code.to_le_bytes());
            w.put(14, &bitpix.to_le_bytes());
            for i in 0..8 {
                w.put(16 + 8 * i, &h.dim[i].to_le_bytes());
            }
            w.put(80, &h.intent_p1.to_le_bytes());
            w.put(88, &h.intent_p2.to_le_bytes());
            w.put(96, &h.intent_p3.to_le_bytes());
            for i in 0..8 {
                w.put(104 + 8 * i, &h.pixdim[i].to_le_bytes());
            }
            w.put(168, &(vox_offset as i64).to_le_bytes());
            w.put(176, &h.scl_slope.to_le_bytes());
            w.put(184, &h.scl_inter.to_le_bytes());
            w.put(192, &h.cal_max.to_le_bytes());
            w.put(200, &h.cal_min.to_le_bytes());
            w.put(208, &h.slice_duration.to_le_bytes());
            w.put(216, &h.toffset.to_le_bytes());
            w.put(224, &h.slice_start.to_le_bytes());
            w.put(232, &h.slice_end.to_le_bytes());
            w.put(240, &h.descrip);
            w.put(320, &h.aux_file);
            w.put(344, &h.qform_code.to_le_bytes());
            w.put(348, &h.sform_code.to_le_bytes());
            w.put(352, &h.quatern_b.to_le_bytes());
            w.put(360, &h.quatern_c.to_le_bytes());
            w.put(368, &h.quatern_d.to_le_bytes());
            w.put(376, &h.qoffset_x.to_le_bytes());
            w.put(384, &h.qoffset_y.to_le_bytes());
            w.put(392, &h.qoffset_z.to_le_bytes());
            for i in 0..4 {
                w.put(400 + 8 * i, &h.srow_x[i].to_le_bytes());
                w.put(432 + 8 * i, &h.srow_y[i].to_le_bytes());
                w.put(464 + 8 * i, &h.srow_z[i].to_le_bytes());
            }
            w.put(496, &h.slice_code.to_le_bytes());
            w.put(500, &h.xyzt_units.to_le_bytes());
            w.put(504, &h.intent_code.to_le_bytes());
            w.put(508, &h.intent_name);
            w.put(524, &[h.dim_info]);
        }
    }
    let mut out = w.b;
    // Extender: byte 0 non-zero announces extensions.
    out.extend_from_slice(&[u8::from(!h.extensions.is_empty()), 0, 0, 0]);
    for e in &h.extensions {
        let size = ext_size(e.data.len());
        let esize = i32::try_from(size)
            .map_err(|_| HeaderProblem::Invalid(format!("extension of {size} bytes is too large")))?;
        out.extend_from_slice(&esize.to_le_bytes());
        out.extend_from_slice(&e.code.to_le_bytes());
        out.extend_from_slice(&e.data);
        out.resize(out.len() + size - 8 - e.data.len(), 0);
    }
    debug_assert_eq!(out.len(), vox_offset);
    Ok(out)
}

/// Parses the extensions from the bytes between the end of the header and `vox_offset`
/// (`bytes` starts with the 4-byte extender). A malformed chain ends the list; extensions
/// are optional metadata, so they never make a file unreadable.
pub(crate) fn parse_extensions(bytes: &[u8], endian: Endian) -> Vec<NiftiExtension> {
    let mut out = Vec::new();
    if bytes.len() < 4 || bytes[0] == 0 {
        return out;
    }
    let r = Rd { b: bytes, big: endian == Endian::Big };
    let mut pos = 4usize;
    while pos + 8 <= bytes.len() {
        let esize = r.i32(pos);
        let code = r.i32(pos + 4);
        let Ok(size) = usize::try_from(esize) else { break };
        if size < 8 || pos + size > bytes.len() {
            break;
        }
        out.push(NiftiExtension { code, data: bytes[pos + 8..pos + size].to_vec() });
        pos += size;
    }
    out
}

/// Readable text for a header problem.
pub(crate) fn describe(p: &HeaderProblem) -> String {
    match p {
        HeaderProblem::BadSize(v) => format!("sizeof_hdr is {v}, expected 348 (NIfTI-1) or 540 (NIfTI-2)"),
        HeaderProblem::BadMagic(m) => {
            format!("bad magic {:?}, expected \"n+1\" or \"n+2\"", String::from_utf8_lossy(m))
        }
        HeaderProblem::TwoFile => {
            "two-file NIfTI (.hdr/.img) is not supported; convert it to a single .nii".to_string()
        }
        HeaderProblem::Unsupported(c) => format!("unsupported data type {} (NIfTI code {c})", code_name(*c)),
        HeaderProblem::Invalid(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_parse_roundtrip_v1_v2() {
        for v in [NiftiVersion::V1, NiftiVersion::V2] {
            let mut h = NiftiHeader::new([3, 4, 5], [2.5, 0.7, 0.7], DataType::I16);
            h.version = v;
            h.set_rotation_origin([0.1, -0.2, 0.05], [-100.5, 20.25, 7.0]);
            h.extensions.push(NiftiExtension { code: 6, data: b"hello".to_vec() });
            let bytes = encode(&h).unwrap();
            assert_eq!(bytes.len(), h.data_offset_for_write());
            assert_eq!(bytes.len() % 16, 0);
            let (ver, end) = detect(bytes[..4].try_into().unwrap()).unwrap();
            assert_eq!((ver, end), (v, Endian::Little));
            let mut back = parse(&bytes[..v.header_size()], ver, end).unwrap();
            back.extensions = parse_extensions(&bytes[v.header_size()..], end);
            assert_eq!(back.extensions[0].data.len(), 8); // padded to 16 with esize/ecode
            assert_eq!(&back.extensions[0].data[..5], b"hello");
            assert_eq!(back.srow_x, h.srow_x);
            assert_eq!(back.quatern_b, h.quatern_b);
            assert_eq!(back.pixdim, h.pixdim);
            assert_eq!(back.vox_offset as usize, bytes.len());
        }
    }

    #[test]
    fn v1_rejects_too_large_dims() {
        let h = NiftiHeader::new([1, 1, 40000], [1.0; 3], DataType::U8);
        assert!(matches!(encode(&h), Err(HeaderProblem::Invalid(m)) if m.contains("NIfTI-2")));
    }
}

use super::*;
use crate::rng::Rng;

fn geometry_header(version: NiftiVersion, shape: [usize; 3]) -> NiftiHeader {
    let mut h = NiftiHeader::new(shape, [2.5, 0.781_25, 0.9], DataType::F32);
    h.version = version;
    h.set_rotation_origin([0.05, -0.1, 0.2], [-120.5, 33.25, 71.0]);
    h.pixdim[0] = -1.0; // qfac
    h.xyzt_units = 10;
    h.set_description("round trip");
    h.extensions.push(NiftiExtension {
        code: 6,
        data: b"a comment of 24 bytes...".to_vec(), /* 8 + 24 = 32, no padding */
    });
    h
}

/// Every field that must survive a write from a template bit for bit.
fn assert_geometry_identical(a: &NiftiHeader, b: &NiftiHeader) {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.pixdim), bits(&b.pixdim));
    assert_eq!(
        bits(&[a.quatern_b, a.quatern_c, a.quatern_d, a.qoffset_x, a.qoffset_y, a.qoffset_z]),
        bits(&[b.quatern_b, b.quatern_c, b.quatern_d, b.qoffset_x, b.qoffset_y, b.qoffset_z])
    );
    assert_eq!(bits(&a.srow_x), bits(&b.srow_x));
    assert_eq!(bits(&a.srow_y), bits(&b.srow_y));
    assert_eq!(bits(&a.srow_z), bits(&b.srow_z));
    assert_eq!((a.qform_code, a.sform_code, a.xyzt_units), (b.qform_code, b.sform_code, b.xyzt_units));
    assert_eq!(a.descrip, b.descrip);
    assert_eq!(a.extensions, b.extensions);
    assert_eq!(a.version, b.version);
}

fn values<T: Copy>(n: usize, f: impl Fn(usize) -> T) -> Vec<T> {
    (0..n).map(f).collect()
}

fn roundtrip<T: NiftiElement + PartialEq + std::fmt::Debug>(dir: &Path, data: Vec<T>) {
    let shape = [3, 4, 5];
    for version in [NiftiVersion::V1, NiftiVersion::V2] {
        for name in ["a.nii", "a.nii.gz"] {
            let template = geometry_header(version, shape);
            let vol = Volume::from_vec(shape, data.clone()).unwrap();
            let path = dir.join(format!("{}_{:?}_{name}", T::DATATYPE, version));
            write_nifti(&path, &template, &vol).unwrap();
            let img = read_nifti(&path).unwrap();
            assert_eq!(img.header.datatype, T::DATATYPE);
            assert_eq!(img.header.bitpix, T::DATATYPE.bitpix());
            assert_eq!(img.shape_zyx(), shape);
            assert_eq!(img.data.as_slice::<T>().unwrap(), &data[..]);
            assert_eq!((img.header.scl_slope, img.header.scl_inter), (1.0, 0.0));
            assert_geometry_identical(&template, &img.header);
            assert_eq!(read_header(&path).unwrap(), img.header);
            assert_eq!(img.header.vox_offset as usize, template.data_offset_for_write());
        }
    }
}

#[test]
fn roundtrip_every_datatype_v1_v2_plain_and_gz() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 60;
    roundtrip::<u8>(d, values(n, |i| if i == 0 { u8::MAX } else { i as u8 }));
    roundtrip::<i8>(d, values(n, |i| if i == 0 { i8::MIN } else { i as i8 - 30 }));
    roundtrip::<u16>(d, values(n, |i| if i == 0 { u16::MAX } else { (i * 1000) as u16 }));
    roundtrip::<i16>(d, values(n, |i| if i == 0 { i16::MIN } else { i as i16 * -500 }));
    roundtrip::<i32>(d, values(n, |i| if i == 0 { i32::MIN } else { i as i32 * 70_000 }));
    roundtrip::<u32>(d, values(n, |i| if i == 0 { u32::MAX } else { i as u32 * 70_001 }));
    roundtrip::<i64>(d, values(n, |i| if i == 0 { i64::MIN } else { i as i64 * -(1 << 40) }));
    roundtrip::<u64>(d, values(n, |i| if i == 0 { u64::MAX } else { i as u64 * (1 << 50) }));
    roundtrip::<f32>(d, values(n, |i| if i == 0 { f32::MIN_POSITIVE } else { i as f32 * -0.3 }));
    roundtrip::<f64>(d, values(n, |i| if i == 0 { f64::MAX } else { i as f64 * 1e-300 }));
    // Nothing but the outputs is left in the folder (temporary files were renamed).
    let stray: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn gzip_is_detected_from_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("x.nii.gz");
    let h = NiftiHeader::new([2, 2, 2], [1.0; 3], DataType::U8);
    write_nifti(&gz, &h, &Volume::from_vec([2, 2, 2], (0..8).collect::<Vec<u8>>()).unwrap()).unwrap();
    let misnamed = dir.path().join("x.nii");
    std::fs::rename(&gz, &misnamed).unwrap();
    let img = read_nifti(&misnamed).unwrap();
    assert_eq!(img.data, NiftiData::U8((0..8).collect()));
    // And a plain file named .gz reads as plain.
    let plain = dir.path().join("y.nii");
    write_nifti(&plain, &h, &Volume::from_vec([2, 2, 2], vec![5u8; 8]).unwrap()).unwrap();
    let renamed = dir.path().join("y.nii.gz");
    std::fs::rename(&plain, &renamed).unwrap();
    assert_eq!(read_nifti(&renamed).unwrap().data, NiftiData::U8(vec![5; 8]));
}

#[test]
fn gzip_members_padding_and_checksum() {
    use flate2::{write::GzEncoder, Compression};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.nii.gz");
    let h = NiftiHeader::new([2, 3, 4], [1.0; 3], DataType::I16);
    let vol = Volume::from_vec([2, 3, 4], (0..24).map(|v| v as i16 - 12).collect()).unwrap();
    write_nifti(&p, &h, &vol).unwrap();
    let gz = std::fs::read(&p).unwrap();
    let raw = read_nifti(&p).unwrap();
    // Two members (as pigz/bgzip write): header in one, data in the other.
    let plain = {
        let mut d = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut d).unwrap();
        d
    };
    let member = |b: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let mut two = member(&plain[..100]);
    two.extend(member(&plain[100..]));
    assert_eq!(parse_nifti(&two, Path::new("two.nii.gz")).unwrap().data, raw.data);
    // Zero padding after the stream is ignored.
    let mut padded = gz.clone();
    padded.extend([0u8; 64]);
    assert_eq!(parse_nifti(&padded, Path::new("pad.nii.gz")).unwrap().data, raw.data);
    // A wrong CRC in the trailer is an error.
    let mut bad = gz.clone();
    let n = bad.len();
    bad[n - 8] ^= 0xff;
    let e = parse_nifti(&bad, Path::new("crc.nii.gz")).unwrap_err().to_string();
    assert!(e.contains("crc.nii.gz") && e.contains("gzip"), "{e}");
}

/// Hand-built big-endian NIfTI-1: header fields at their documented offsets, i16 data.
fn big_endian_v1(scl: (f32, f32), datatype: i16, bitpix: i16, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 352];
    b[0..4].copy_from_slice(&348i32.to_be_bytes());
    for (i, d) in [3i16, 4, 3, 2, 1, 1, 1, 1].iter().enumerate() {
        b[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_be_bytes());
    }
    b[70..72].copy_from_slice(&datatype.to_be_bytes());
    b[72..74].copy_from_slice(&bitpix.to_be_bytes());
    for (i, p) in [1f32, 0.5, 0.75, 3.0].iter().enumerate() {
        b[76 + 4 * i..80 + 4 * i].copy_from_slice(&p.to_be_bytes());
    }
    b[108..112].copy_from_slice(&352f32.to_be_bytes());
    b[112..116].copy_from_slice(&scl.0.to_be_bytes());
    b[116..120].copy_from_slice(&scl.1.to_be_bytes());
    b[252..254].copy_from_slice(&1i16.to_be_bytes()); // qform_code
    b[268..272].copy_from_slice(&(-10.5f32).to_be_bytes()); // qoffset_x
    b[344..348].copy_from_slice(b"n+1\0");
    b.extend_from_slice(data);
    b
}

#[test]
fn big_endian_v1_with_scaling() {
    let vals: Vec<i16> = (0..24).map(|i| i * 100 - 1000).collect();
    let data: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    let bytes = big_endian_v1((2.0, -1000.0), 4, 16, &data);
    let img = parse_nifti(&bytes, Path::new("be.nii")).unwrap();
    assert_eq!(img.header.endian, Endian::Big);
    assert_eq!(img.shape_zyx(), [2, 3, 4]);
    assert_eq!(img.header.spacing_zyx(), [3.0, 0.75, 0.5]);
    assert_eq!(img.header.qoffset_x, -10.5);
    assert_eq!(img.data, NiftiData::I16(vals.clone()));
    let ch = img.to_f32_channels().unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].data, vals.iter().map(|&v| v as f32 * 2.0 - 1000.0).collect::<Vec<_>>());
    // Labels see the scaled values too: -1000*2-1000 = -3000 fits int16.
    assert_eq!(img.to_label_volume().unwrap().data[0], -3000);
    // Rewritten little-endian, read back identical.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("le.nii");
    write_nifti_image(&p, &img).unwrap();
    let back = read_nifti(&p).unwrap();
    assert_eq!(back.header.endian, Endian::Little);
    assert_eq!(back.data, img.data);
    assert_eq!(back.header.scl_slope, 2.0);
}

#[test]
fn big_endian_v2_float() {
    let mut h = geometry_header(NiftiVersion::V2, [1, 2, 3]);
    h.datatype = DataType::F64;
    h.extensions.clear();
    let le = layout::encode(&h).unwrap();
    // Flip every multi-byte field of the encoded header to big-endian using the v2 layout.
    let mut be = le.clone();
    let mut flip = |off: usize, n: usize| be[off..off + n].reverse();
    flip(0, 4);
    flip(12, 2);
    flip(14, 2);
    for off in (16..240).step_by(8) {
        flip(off, 8);
    }
    flip(344, 4);
    flip(348, 4);
    for off in (352..496).step_by(8) {
        flip(off, 8);
    }
    for off in [496, 500, 504] {
        flip(off, 4);
    }
    for v in [1.5f64, -2.25, 1e300, 0.0, -0.0, 7.0] {
        be.extend_from_slice(&v.to_be_bytes());
    }
    let img = parse_nifti(&be, Path::new("be2.nii")).unwrap();
    assert_eq!(img.header.version, NiftiVersion::V2);
    assert_eq!(img.header.endian, Endian::Big);
    assert_geometry_identical(&NiftiHeader { extensions: vec![], ..h.clone() }, &img.header);
    assert_eq!(img.data, NiftiData::F64(vec![1.5, -2.25, 1e300, 0.0, -0.0, 7.0]));
}

#[test]
fn scaling_rules() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.nii");
    let mut h = NiftiHeader::new([1, 1, 3], [1.0; 3], DataType::U8);
    for (slope, inter, expect) in [
        // Issue 14 item 4: as SimpleITK reads it, a zero or non-finite slope counts as 1 and
        // the intercept still applies; a non-finite intercept counts as 0.
        (0.0, 5.0, [6.0, 7.0, 8.0]),
        (f64::NAN, 5.0, [6.0, 7.0, 8.0]),
        (2.0, f64::NAN, [2.0, 4.0, 6.0]),
        (0.5, 10.0, [10.5, 11.0, 11.5]),
        (-1.0, 0.0, [-1.0, -2.0, -3.0]),
    ] {
        h.scl_slope = slope;
        h.scl_inter = inter;
        let img = NiftiImage { path: p.clone(), header: h.clone(), data: NiftiData::U8(vec![1, 2, 3]) };
        write_nifti_image(&p, &img).unwrap();
        let back = read_nifti(&p).unwrap();
        assert_eq!(back.to_f32_channels().unwrap()[0].data, expect.to_vec(), "slope {slope} inter {inter}");
    }
}

#[test]
fn four_d_splits_into_channels() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("4d.nii.gz");
    let mut h = NiftiHeader::new([2, 3, 4], [1.0, 2.0, 3.0], DataType::F32);
    h.dim[0] = 4;
    h.dim[4] = 3;
    let data: Vec<f32> = (0..72).map(|i| i as f32).collect();
    write_nifti_image(&p, &NiftiImage { path: p.clone(), header: h, data: NiftiData::F32(data.clone()) }).unwrap();
    let img = read_nifti(&p).unwrap();
    assert_eq!(img.num_volumes(), 3);
    let ch = img.to_f32_channels().unwrap();
    assert_eq!(ch.len(), 3);
    for (c, v) in ch.iter().enumerate() {
        assert_eq!(v.shape, [2, 3, 4]);
        assert_eq!(v.data, data[c * 24..(c + 1) * 24]);
        assert_eq!(img.channel_f32(c).unwrap(), *v);
    }
    assert!(img.channel_f32(3).is_err());
    let e = img.to_label_volume().unwrap_err().to_string();
    assert!(e.contains("3 volumes") && e.contains("4d.nii.gz"), "{e}");
    assert_eq!(img.header.to_3d().dim, [3, 4, 3, 2, 1, 1, 1, 1]);
}

#[test]
fn label_conversion_errors_name_the_value() {
    let p = Path::new("lab.nii");
    let h = NiftiHeader::new([1, 2, 2], [1.0; 3], DataType::F32);
    let mk = |v: Vec<f32>| NiftiImage { path: p.to_path_buf(), header: h.clone(), data: NiftiData::F32(v) };
    assert_eq!(mk(vec![0.0, 1.0, 2.0, -1.0]).to_label_volume().unwrap().data, vec![0, 1, 2, -1]);
    let e = mk(vec![0.0, 1.5, 2.0, 0.0]).to_label_volume().unwrap_err().to_string();
    assert!(
        e.contains("1.5") && e.contains("not an integer") && e.contains("y=0, x=1") && e.contains("lab.nii"),
        "{e}"
    );
    let e = mk(vec![0.0, 0.0, f32::NAN, 0.0]).to_label_volume().unwrap_err().to_string();
    assert!(e.contains("NaN"), "{e}");
    let e = mk(vec![0.0, 0.0, 0.0, 40000.0]).to_label_volume().unwrap_err().to_string();
    assert!(e.contains("40000") && e.contains("int16"), "{e}");
    let mut hu = h.clone();
    hu.datatype = DataType::U64;
    let img = NiftiImage { path: p.to_path_buf(), header: hu, data: NiftiData::U64(vec![0, 1, u64::MAX, 0]) };
    assert!(img.to_label_volume().unwrap_err().to_string().contains("18446744073709551615"));
}

#[test]
fn two_d_template_writes_2d() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("2d.nii");
    let mut h = NiftiHeader::new([1, 5, 6], [1.0, 0.5, 0.5], DataType::U8);
    h.dim[0] = 2;
    write_nifti(&p, &h, &Volume::filled([1, 5, 6], 1u8)).unwrap();
    let img = read_nifti(&p).unwrap();
    assert_eq!(img.header.ndim(), 2);
    assert_eq!(img.shape_zyx(), [1, 5, 6]);
    assert_eq!(img.header.spacing_zyx(), [1.0, 0.5, 0.5]);
}

#[test]
fn unsupported_and_invalid_headers_are_clear_errors() {
    let data = vec![0u8; 24 * 8];
    let complex = big_endian_v1((1.0, 0.0), 32, 64, &data);
    let e = parse_nifti(&complex, Path::new("c.nii")).unwrap_err().to_string();
    assert!(e.contains("complex64") && e.contains("c.nii"), "{e}");
    let rgb = big_endian_v1((1.0, 0.0), 128, 24, &data);
    assert!(parse_nifti(&rgb, Path::new("c.nii")).unwrap_err().to_string().contains("rgb24"));

    let mut bad = big_endian_v1((1.0, 0.0), 4, 16, &data);
    bad[42..44].copy_from_slice(&0i16.to_be_bytes()); // dim[1] = 0
    let e = parse_nifti(&bad, Path::new("d.nii")).unwrap_err().to_string();
    assert!(e.contains("dim[1] = 0"), "{e}");

    let mut bad = big_endian_v1((1.0, 0.0), 4, 16, &data);
    bad[344..348].copy_from_slice(b"ni1\0");
    assert!(parse_nifti(&bad, Path::new("d.nii")).unwrap_err().to_string().contains(".hdr/.img"));
    bad[344..348].copy_from_slice(b"xyz\0");
    assert!(parse_nifti(&bad, Path::new("d.nii")).unwrap_err().to_string().contains("bad magic"));
    let e = parse_nifti(b"hello world, not nifti at all", Path::new("t.txt")).unwrap_err().to_string();
    assert!(e.contains("sizeof_hdr") && e.contains("t.txt"), "{e}");

    // NIfTI-2 with dims whose product overflows.
    let mut h = NiftiHeader::new([1, 1, 1], [1.0; 3], DataType::F64);
    h.version = NiftiVersion::V2;
    let mut b = layout::encode(&h).unwrap();
    for i in 1..=3 {
        b[16 + 8 * i..24 + 8 * i].copy_from_slice(&(1i64 << 40).to_le_bytes());
    }
    let e = parse_nifti(&b, Path::new("o.nii")).unwrap_err().to_string();
    assert!(e.contains("overflow"), "{e}");
}

#[test]
fn missing_file_and_bad_output_dir_name_the_path() {
    let e = read_nifti(Path::new("/nonexistent/x.nii.gz")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/x.nii.gz"), "{e}");
    let h = NiftiHeader::new([1, 1, 1], [1.0; 3], DataType::U8);
    let e = write_nifti(Path::new("/nonexistent/dir/y.nii.gz"), &h, &Volume::filled([1, 1, 1], 0u8)).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/dir/y.nii.gz"), "{e}");
}

#[test]
fn vox_offset_beyond_header_is_honoured() {
    // A file with padding (no extension announced) between header and data.
    let vals: Vec<i16> = (0..24).collect();
    let mut bytes = big_endian_v1((1.0, 0.0), 4, 16, &[]);
    bytes[108..112].copy_from_slice(&400f32.to_be_bytes());
    bytes.resize(400, 0xAA);
    bytes[348] = 0; // extender says: no extensions
    bytes.extend(vals.iter().flat_map(|v| v.to_be_bytes()));
    let img = parse_nifti(&bytes, Path::new("pad.nii")).unwrap();
    assert_eq!(img.data, NiftiData::I16(vals));
    assert!(img.header.extensions.is_empty());
}

/// Valid file bytes (plain and gzip) truncated at every length, and garbage, must give an
/// error (or, for bit flips, maybe an image) but never panic.
#[test]
fn truncated_and_garbage_input_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, name) in ["t.nii", "t.nii.gz"].iter().enumerate() {
        let p = dir.path().join(name);
        let mut h = geometry_header(if i == 0 { NiftiVersion::V1 } else { NiftiVersion::V2 }, [4, 5, 6]);
        h.datatype = DataType::I16;
        let vol = Volume::from_vec([4, 5, 6], (0..120).map(|v| v as i16 * 7).collect()).unwrap();
        write_nifti(&p, &h, &vol).unwrap();
        files.push(std::fs::read(&p).unwrap());
    }
    for full in &files {
        assert!(parse_nifti(full, Path::new("ok")).is_ok());
        for len in 0..full.len() {
            let r = parse_nifti(&full[..len], Path::new("cut.nii"));
            let e = r.expect_err("a truncated file must not parse");
            assert!(e.to_string().starts_with("cut.nii: "), "{e}");
        }
        // Truncated on disk too, through the file reader.
        let p = dir.path().join("cut.nii.gz");
        std::fs::write(&p, &full[..full.len() / 2]).unwrap();
        let e = read_nifti(&p).unwrap_err().to_string();
        assert!(e.contains("cut.nii.gz") && (e.contains("truncated") || e.contains("gzip")), "{e}");
        assert!(read_header(&p).is_ok() || full.len() / 2 < 600);
    }
    let mut rng = Rng::new(99);
    for round in 0..3000 {
        let base = &files[round % 2];
        let mut b = base.clone();
        match round % 3 {
            0 => {
                // random bit flips
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                // random garbage with a plausible sizeof_hdr
                let n = rng.below(1200) as usize;
                b = (0..n).map(|_| rng.next_u64() as u8).collect();
                if n >= 4 && rng.below(2) == 0 {
                    b[..4].copy_from_slice(&[348i32, 540][rng.below(2) as usize].to_le_bytes());
                }
            }
            _ => {
                // flip bytes inside the (uncompressed) header fields of the plain file
                b = files[0].clone();
                let i = rng.below(352) as usize;
                b[i] = rng.next_u64() as u8;
            }
        }
        if let Ok(img) = parse_nifti(&b, Path::new("g.nii")) {
            let _ = img.to_f32_channels();
            let _ = img.to_label_volume();
            let _ = img.header.affine();
            let _ = img.header.spacing_zyx();
        }
    }
}

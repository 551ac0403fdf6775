//! The image seam against fixtures made with SimpleITK / nnU-Net's readers
//! (`tests/fixtures/README.md`): geometry to 1e-6, data exactly, write -> read round trips.

use super::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(crate::testing::manifest_dir()).join("tests/fixtures")
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_object().unwrap().clone()
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}: {a:?} vs {b:?}");
    }
}

/// ITK's spacing/origin/direction of a geometry, trimmed to its dimensionality.
fn itk(g: &Geometry) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = g.ndim;
    let dir = (0..n).flat_map(|i| (0..n).map(move |j| g.direction[i][j])).collect();
    (g.spacing[..n].to_vec(), g.origin[..n].to_vec(), dir)
}

/// All voxels, channel-first, as f64 (the order SimpleITK / nnU-Net return them).
fn values(img: &LoadedImage) -> Vec<f64> {
    img.to_f32_channels().unwrap().iter().flat_map(|c| c.data.iter().map(|&v| v as f64)).collect()
}

fn check_against_expected(name: &str, img: &LoadedImage, e: &Value) {
    let v = values(img);
    let sum: f64 = v.iter().sum();
    close(&[sum], &[e["sum"].as_f64().unwrap()], 1e-6, &format!("{name} sum"));
    close(&v[..6], &nums(&e["first"]), 1e-6, &format!("{name} first values"));
    let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    if let Some(sp) = e.get("nnunet_spacing") {
        // nnU-Net reader: (C, Z, Y, X) and its spacing.
        assert_eq!(shape[0], img.num_channels(), "{name} channels");
        assert_eq!(&shape[1..], &img.shape_zyx(), "{name} shape");
        close(&img.header.nnunet_spacing(), &nums(sp), 1e-6, &format!("{name} spacing"));
    } else {
        let n = e["ndim"].as_u64().unwrap() as usize;
        assert_eq!(img.header.ndim(), n, "{name} ndim");
        let zyx = img.shape_zyx();
        assert_eq!(shape, zyx[3 - n..].to_vec(), "{name} shape");
        let (s, o, d) = itk(&img.header.geometry);
        close(&s, &nums(&e["spacing"]), 1e-6, &format!("{name} spacing"));
        close(&o, &nums(&e["origin"]), 1e-6, &format!("{name} origin"));
        close(&d, &nums(&e["direction"]), 1e-6, &format!("{name} direction"));
    }
}

#[test]
fn every_fixture_reads_as_simpleitk_reports_it() {
    let e = expected();
    assert!(e.len() >= 20);
    for (name, exp) in &e {
        let img = read_image(&fixtures().join(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        check_against_expected(name, &img, exp);
    }
}

#[test]
fn every_fixture_round_trips_in_its_own_format() {
    let dir = tempfile::tempdir().unwrap();
    for name in expected().keys() {
        let src = fixtures().join(name);
        let img = read_image(&src).unwrap();
        if img.num_channels() != 1 {
            continue; // RGB(A) pictures are inputs only; segmentations are single-channel
        }
        let file = Path::new(name).file_name().unwrap().to_string_lossy().to_string();
        let out = dir.path().join(file.replace(".tif", "_x.tif"));
        let v = img.to_f32_channels().unwrap().remove(0);
        match img.datatype() {
            DataType::U8 => {
                let d: Vec<u8> = v.data.iter().map(|&x| x as u8).collect();
                write_image(&out, &img.header, v.shape, Pixels::U8(&d)).unwrap()
            }
            DataType::U16 => {
                let d: Vec<u16> = v.data.iter().map(|&x| x as u16).collect();
                write_image(&out, &img.header, v.shape, Pixels::U16(&d)).unwrap()
            }
            DataType::I16 => {
                let d: Vec<i16> = v.data.iter().map(|&x| x as i16).collect();
                write_image(&out, &img.header, v.shape, Pixels::I16(&d)).unwrap()
            }
            _ => write_image(&out, &img.header, v.shape, Pixels::F32(&v.data)).unwrap(),
        }
        let back = read_image(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(values(&back), values(&img), "{name}: data changed");
        let (s0, o0, d0) = itk(&img.header.geometry);
        let (s1, o1, d1) = itk(&back.header.geometry);
        // NIfTI-1 stores geometry as float32.
        let tol = if name.ends_with(".nii") { 1e-6 } else { 1e-12 };
        close(&s1, &s0, tol, &format!("{name} spacing"));
        close(&o1, &o0, tol, &format!("{name} origin"));
        close(&d1, &d0, tol, &format!("{name} direction"));
        assert_eq!(back.header.nnunet_spacing(), img.header.nnunet_spacing(), "{name}");
    }
}

#[test]
fn segmentations_convert_between_formats_at_the_same_place() {
    let dir = tempfile::tempdir().unwrap();
    let img = read_image(&fixtures().join("ct_label.mha")).unwrap();
    let seg = img.to_label_volume().unwrap();
    for ending in [".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".tif"] {
        let out = dir.path().join(format!("case{ending}"));
        write_segmentation(&out, &img.header, &seg, false).unwrap();
        let back = read_image(&out).unwrap();
        assert_eq!(back.to_label_volume().unwrap(), seg, "{ending}");
        let g = &back.header.geometry;
        if ending != ".tif" {
            assert!(g.same_place(&img.header.geometry), "{ending}: {g:?} vs {:?}", img.header.geometry);
        } else {
            assert_eq!(back.header.nnunet_spacing(), img.header.nnunet_spacing());
        }
        // Every file of the written image exists (header, data file, sidecar).
        for f in image_files(&out) {
            assert!(f.is_file(), "{}", f.display());
        }
    }
    // uint16 labels: .bmp refuses them, .png keeps them.
    let pic = read_image(&fixtures().join("seg.png")).unwrap();
    let mut wide = pic.to_label_volume().unwrap();
    wide.data[0] = 300;
    assert!(write_segmentation(&dir.path().join("w.bmp"), &pic.header, &wide, true).is_err());
    write_segmentation(&dir.path().join("w.png"), &pic.header, &wide, true).unwrap();
    assert_eq!(read_image(&dir.path().join("w.png")).unwrap().to_label_volume().unwrap(), wide);
}

#[test]
fn nifti_segmentations_are_nifti1_without_foreign_extensions() {
    // Issue 14 item 5: a NIfTI-2 input with an extension gives a NIfTI-1 output without it.
    let dir = tempfile::tempdir().unwrap();
    let mut h = NiftiHeader::new([2, 3, 4], [2.0, 1.0, 1.0], DataType::I16);
    h.version = nifti::NiftiVersion::V2;
    h.extensions.push(nifti::NiftiExtension { code: 6, data: b"comment\0\0\0\0\0\0\0\0\0".to_vec() });
    let src = dir.path().join("in.nii.gz");
    nifti::write_nifti(&src, &h, &Volume { shape: [2, 3, 4], data: vec![5i16; 24] }).unwrap();
    let img = read_image(&src).unwrap();
    assert_eq!(img.header.nifti.as_ref().unwrap().version, nifti::NiftiVersion::V2);
    let out = dir.path().join("seg.nii.gz");
    write_segmentation(&out, &img.header, &Volume { shape: [2, 3, 4], data: vec![1i16; 24] }, false).unwrap();
    let back = nifti::read_nifti(&out).unwrap();
    assert_eq!(back.header.version, nifti::NiftiVersion::V1);
    assert!(back.header.extensions.is_empty());
    assert!(ImageHeader::of_nifti(&back.header).geometry.same_place(&img.header.geometry));
}

#[test]
fn nifti_traits_match_itk() {
    // Items 3, 4, 6 against SimpleITK's figures in expected.json (also checked above; here
    // the values that were wrong before are named).
    let g = read_image(&fixtures().join("metres.nii")).unwrap().header.geometry;
    assert_eq!(g.spacing, [2000.0, 3000.0, 4000.0]);
    assert_eq!(read_image(&fixtures().join("metres.nii")).unwrap().header.nnunet_spacing(), [4000.0, 3000.0, 2000.0]);
    let g = read_image(&fixtures().join("microns.nii")).unwrap().header.geometry;
    close(&g.spacing, &[0.002, 0.003, 0.004], 1e-9, "microns");
    let v = values(&read_image(&fixtures().join("slope0.nii")).unwrap());
    let raw = nifti::read_nifti(&fixtures().join("slope0.nii")).unwrap();
    let NiftiData::I16(stored) = &raw.data else { panic!("int16 expected") };
    assert_eq!(v[0], stored[0] as f64 + 5.0, "slope 0 counts as 1, intercept 5 applies");
    let q = read_image(&fixtures().join("sform2.nii")).unwrap().header.geometry;
    assert_eq!(q.origin, [-10.0, -20.0, 30.0], "sform_code 2: qform");
    let s = read_image(&fixtures().join("sform1.nii")).unwrap().header.geometry;
    assert_eq!(s.origin, [-1.0, -2.0, 3.0], "sform_code 1: sform");
}

#[test]
fn bad_files_are_refused_with_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let err = |p: &Path| read_image(p).unwrap_err().to_string();
    let e = err(&fixtures().join("two_channels.mha"));
    assert!(e.contains("two_channels.mha") && e.contains("one file per channel"), "{e}");
    // Truncated files of every format.
    for name in ["ct.mha", "ct_zlib.mha", "ct.nrrd", "gray.png", "gray.bmp", "gray2d.tif", "slice2d.nrrd"] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let e = err(&p);
        assert!(e.contains(name), "{name}: {e}");
    }
    // A detached data file that leaves the header's folder.
    let p = dir.path().join("escape.mhd");
    std::fs::write(&p, "NDims = 2\nDimSize = 2 2\nElementType = MET_UCHAR\nElementDataFile = ../x.raw\n").unwrap();
    assert!(err(&p).contains("header's folder"), "{}", err(&p));
    let p = dir.path().join("escape.nhdr");
    std::fs::write(&p, "NRRD0004\ntype: uchar\ndimension: 2\nsizes: 2 2\nencoding: raw\ndata file: /etc/passwd\n")
        .unwrap();
    assert!(err(&p).contains("header's folder"), "{}", err(&p));
    // Absurd sizes are refused before allocating.
    let p = dir.path().join("huge.mha");
    std::fs::write(
        &p,
        "NDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_DOUBLE\nElementDataFile = LOCAL\n",
    )
    .unwrap();
    assert!(err(&p).contains("too large") || err(&p).contains("truncated"), "{}", err(&p));
    // Not an image at all.
    let p = dir.path().join("x.nrrd");
    std::fs::write(&p, b"hello").unwrap();
    assert!(err(&p).contains("not a NRRD"), "{}", err(&p));
}

#[test]
fn reader_choice_follows_nnunet() {
    assert_eq!(check_reader(".mha", None), Ok(ImageFormat::MetaImage));
    assert_eq!(check_reader(".nii.gz", Some("NibabelIO")), Ok(ImageFormat::Nifti));
    assert_eq!(check_reader(".png", Some("None")), Ok(ImageFormat::Natural2D));
    assert_eq!(check_reader(".tif", Some("Tiff3DIO")), Ok(ImageFormat::Tiff));
    let e = check_reader(".jpg", None).unwrap_err();
    assert!(e.contains(".jpg") && e.contains(".mha"), "{e}");
    let e = check_reader(".nii.gz", Some("NibabelIOWithReorient")).unwrap_err();
    assert!(e.contains("SimpleITKIO") && e.contains("Tiff3DIO"), "{e}");
    assert!(check_reader(".png", Some("SimpleITKIO")).unwrap_err().contains(".png"));
}

#[test]
fn tiff_segmentation_sidecar_is_named_after_the_file_even_when_the_id_ends_in_digits() {
    // A case id such as `case_0001` looks like an image name `CASE_CCCC`: its prediction
    // `case_0001.tif` must get `case_0001.json` (Tiff3DIO.write_seg), never `case.json`.
    let dir = tempfile::tempdir().unwrap();
    let mut g = Geometry::plain(3, [3, 4, 5], [0.5, 0.25, 2.0]);
    g.direction = geometry::IDENTITY;
    let header = ImageHeader::new(ImageFormat::Tiff, g.clone());
    let seg = Volume { shape: [3, 4, 5], data: (0..60).map(|i| (i % 3) as i16).collect() };
    let other = dir.path().join("case.json");
    std::fs::write(&other, r#"{"spacing": [9, 9, 9]}"#).unwrap();
    let out = dir.path().join("case_0001.tif");
    write_segmentation(&out, &header, &seg, false).unwrap();
    let side: Value = serde_json::from_slice(&std::fs::read(dir.path().join("case_0001.json")).unwrap()).unwrap();
    assert_eq!(nums(&side["spacing"]), vec![2.0, 0.25, 0.5]);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), r#"{"spacing": [9, 9, 9]}"#);
    let back = read_image(&out).unwrap();
    assert_eq!(back.header.nnunet_spacing(), [2.0, 0.25, 0.5]);
    assert_eq!(back.to_label_volume().unwrap(), seg);
    // The image of a case reads the case's sidecar.
    let img = dir.path().join("img_0000.tif");
    raster::write_tiff_with_sidecar(&img, &g, Pixels::U8(&[1; 60]), Some(&dir.path().join("img.json"))).unwrap();
    assert!(!dir.path().join("img_0000.json").exists());
    assert_eq!(read_image(&img).unwrap().header.nnunet_spacing(), [2.0, 0.25, 0.5]);
}

#[test]
fn tiff_stacks_that_are_truncated_mixed_or_oversized_are_refused() {
    use tiff::encoder::{colortype, TiffEncoder};
    let dir = tempfile::tempdir().unwrap();
    let err = |p: &Path| read_image(p).unwrap_err().to_string();
    // The fixture stack, cut short: refused naming the file.
    let bytes = std::fs::read(fixtures().join("tiff3d/case_0000.tif")).unwrap();
    let p = dir.path().join("cut_0000.tif");
    std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
    assert!(err(&p).contains("cut_0000.tif"), "{}", err(&p));
    // Pages of u16 then i16: same colour type, different sample format.
    let p = dir.path().join("mixed.tif");
    {
        let mut f = std::fs::File::create(&p).unwrap();
        let mut enc = TiffEncoder::new(&mut f).unwrap();
        enc.write_image::<colortype::Gray16>(4, 3, &[1u16; 12]).unwrap();
        enc.write_image::<colortype::GrayI16>(4, 3, &[-1i16; 12]).unwrap();
    }
    assert!(err(&p).contains("page 1"), "{}", err(&p));
    // A stack that reads back exactly, page order kept.
    let p = dir.path().join("ok.tif");
    {
        let mut f = std::fs::File::create(&p).unwrap();
        let mut enc = TiffEncoder::new(&mut f).unwrap();
        for k in 0..5i16 {
            let page: Vec<i16> = (0..12).map(|i| k * 100 - i).collect();
            enc.write_image::<colortype::GrayI16>(4, 3, &page).unwrap();
        }
    }
    let img = read_image(&p).unwrap();
    assert_eq!(img.shape_zyx(), [5, 3, 4]);
    let v = values(&img);
    assert_eq!((v[0], v[11], v[12], v[59]), (0.0, -11.0, 100.0, 389.0));
    // A page whose declared size no data in the file could hold (width patched to 2^31).
    let mut bytes = std::fs::read(&p).unwrap();
    let ifd = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes(bytes[ifd..ifd + 2].try_into().unwrap()) as usize;
    for e in 0..n {
        let at = ifd + 2 + 12 * e;
        let tag = u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
        if tag == 256 || tag == 257 {
            // ImageWidth / ImageLength as LONG 2^31 (SHORT fields get 0x8000 either way).
            let typ = u16::from_le_bytes(bytes[at + 2..at + 4].try_into().unwrap());
            if typ == 4 {
                bytes[at + 8..at + 12].copy_from_slice(&(1u32 << 31).to_le_bytes());
            } else {
                bytes[at + 8..at + 10].copy_from_slice(&0x8000u16.to_le_bytes());
            }
        }
    }
    let p = dir.path().join("huge.tif");
    std::fs::write(&p, &bytes).unwrap();
    let e = err(&p);
    assert!(e.contains("huge.tif"), "{e}");
}

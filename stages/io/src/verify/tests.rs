use super::*;
use crate::dataset::open_dataset;
use crate::nifti::{read_nifti, write_nifti, write_nifti_image, DataType, NiftiData, NiftiHeader, NiftiImage};
use crate::volume::Volume;
use serde_json::json;
use std::sync::Mutex;

const HIPPOCAMPUS: &str = "/work/shared/data/Task04_Hippocampus";

fn kinds(r: &VerifyReport) -> Vec<(Option<String>, String)> {
    r.problems.iter().map(|p| (p.case.clone(), format!("{:?}", p.kind))).collect()
}

#[test]
fn hippocampus_verifies_clean() {
    let root = Path::new(HIPPOCAMPUS);
    if !root.exists() {
        return crate::testing::skip(&format!("{HIPPOCAMPUS} absent"));
    }
    let ds = open_dataset(root).unwrap();
    let calls = Mutex::new(Vec::new());
    let report = verify_dataset(&ds, &|done, total| calls.lock().unwrap().push((done, total)));
    assert!(report.is_ok(), "{report}");
    assert!(report.warnings.is_empty(), "{report}");
    assert_eq!(report.cases_checked, 260);
    let mut calls = calls.into_inner().unwrap();
    calls.sort();
    assert_eq!(calls.len(), 260);
    assert_eq!(calls.last(), Some(&(260, 260)));
}

/// A copy of 12 Hippocampus cases with five planted faults.
#[test]
fn corrupted_hippocampus_copy_reports_exactly_the_faults() {
    let src = Path::new(HIPPOCAMPUS);
    if !src.exists() {
        return crate::testing::skip(&format!("{HIPPOCAMPUS} absent"));
    }
    let full = open_dataset(src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Task04_Corrupt");
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    std::fs::create_dir_all(root.join("labelsTr")).unwrap();
    let ids: Vec<String> = full.cases.iter().take(12).map(|c| c.id.clone()).collect();
    let mut training = Vec::new();
    for id in &ids {
        for d in ["imagesTr", "labelsTr"] {
            std::fs::copy(src.join(d).join(format!("{id}.nii.gz")), root.join(d).join(format!("{id}.nii.gz"))).unwrap();
        }
        training.push(json!({"image": format!("./imagesTr/{id}.nii.gz"), "label": format!("./labelsTr/{id}.nii.gz")}));
    }
    let j = json!({"name": "Hippocampus", "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "numTraining": 12, "training": training});
    std::fs::write(root.join("dataset.json"), serde_json::to_string_pretty(&j).unwrap()).unwrap();
    let img = |id: &str| root.join(format!("imagesTr/{id}.nii.gz"));
    let lab = |id: &str| root.join(format!("labelsTr/{id}.nii.gz"));

    // 1. truncated gzip image
    let bytes = std::fs::read(img(&ids[1])).unwrap();
    std::fs::write(img(&ids[1]), &bytes[..bytes.len() / 2]).unwrap();
    // 2. label with an undeclared value 3
    let l = read_nifti(&lab(&ids[2])).unwrap();
    let mut v = l.to_label_volume().unwrap().map(|x| x as u8);
    v.data[0] = 3;
    write_nifti(&lab(&ids[2]), &l.header, &v).unwrap();
    // 3. image with a NaN voxel
    let i = read_nifti(&img(&ids[3])).unwrap();
    let mut f = i.to_f32_channels().unwrap().remove(0);
    let at = f.index(1, 2, 3);
    f.data[at] = f32::NAN;
    write_nifti(&img(&ids[3]), &i.header, &f).unwrap();
    // 4. missing label
    std::fs::remove_file(lab(&ids[4])).unwrap();
    // 5. label shape differs from the image
    let l = read_nifti(&lab(&ids[5])).unwrap();
    let v = l.to_label_volume().unwrap();
    let [z, y, x] = v.shape;
    write_nifti(&lab(&ids[5]), &l.header, &v.crop([0, 0, 0], [z - 1, y, x]).map(|x| x as u8)).unwrap();

    let ds = open_dataset(&root).unwrap();
    let report = verify_dataset(&ds, &|_, _| {});
    let got: Vec<(String, String)> = report
        .problems
        .iter()
        .map(|p| {
            let kind = match &p.kind {
                ProblemKind::Unreadable { .. } => "unreadable",
                ProblemKind::UndeclaredLabel { value: 3, .. } => "undeclared 3",
                ProblemKind::NonFinite { what: "image", count: 1, first: [1, 2, 3] } => "nan",
                ProblemKind::MissingLabelFile => "missing label",
                ProblemKind::ShapeMismatch { .. } => "shape",
                _ => "unexpected",
            };
            (p.case.clone().unwrap_or_default(), kind.to_string())
        })
        .collect();
    // Case 3's NaN image voxel is a warning now (read as 0, issue 14), not a problem.
    assert!(
        report.warnings.iter().any(|w| w.case.as_deref() == Some(ids[3].as_str())
            && matches!(w.kind, ProblemKind::NonFinite { what: "image", count: 1, first: [1, 2, 3] })),
        "{report}"
    );
    let expect: Vec<(String, String)> = [(1, "unreadable"), (2, "undeclared 3"), (4, "missing label"), (5, "shape")]
        .iter()
        .map(|(i, k)| (ids[*i].clone(), k.to_string()))
        .collect();
    assert_eq!(got, expect, "{report}");
    let undeclared = report.problems[1].to_string();
    assert_eq!(
        undeclared,
        format!("{0}: labelsTr/{0}.nii.gz: label value 3 is not declared in dataset.json (declared: 0, 1, 2)", ids[2])
    );
    assert_eq!(report.problems[0].file, Some(PathBuf::from(format!("imagesTr/{}.nii.gz", ids[1]))));
    let trunc = report.problems[0].to_string();
    assert!(trunc.contains("truncated") || trunc.contains("gzip"), "{trunc}");
    assert_eq!(report.warnings.len(), 1, "{report}");
}

fn write_img(path: &Path, shape: [usize; 3], spacing: [f64; 3], value: f32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let h = NiftiHeader::new(shape, spacing, DataType::F32);
    write_nifti(path, &h, &Volume::filled(shape, value)).unwrap();
}

fn write_lab(path: &Path, shape: [usize; 3], data: Vec<f32>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let h = NiftiHeader::new(shape, [1.0; 3], DataType::F32);
    write_nifti(path, &h, &Volume::from_vec(shape, data).unwrap()).unwrap();
}

/// Every dataset-level and per-case check on a hand-made nnU-Net v2 dataset.
#[test]
fn v2_dataset_problems_each_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset200_Faults");
    let s = [4, 5, 6];
    let n = 120;
    let ok_label = || (0..n).map(|i| (i % 3) as f32).collect::<Vec<f32>>();
    let j = json!({"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "a": 1, "b": 3},
        "numTraining": 9, "file_ending": ".nii.gz"});
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("dataset.json"), j.to_string()).unwrap();
    let it = |id: &str, c: usize| root.join(format!("imagesTr/{id}_{c:04}.nii.gz"));
    let lt = |id: &str| root.join(format!("labelsTr/{id}.nii.gz"));
    // c0: fine
    for c in 0..2 {
        write_img(&it("c0", c), s, [1.0; 3], 1.0);
    }
    write_lab(&lt("c0"), s, ok_label());
    // c1: channel 1 missing
    write_img(&it("c1", 0), s, [1.0; 3], 1.0);
    write_lab(&lt("c1"), s, ok_label());
    // c2: spacing differs between channels
    write_img(&it("c2", 0), s, [1.0; 3], 1.0);
    write_img(&it("c2", 1), s, [1.5, 1.0, 1.0], 1.0);
    write_lab(&lt("c2"), s, ok_label());
    // c3: label with NaN and a non-integer value
    for c in 0..2 {
        write_img(&it("c3", c), s, [1.0; 3], 1.0);
    }
    let mut l = ok_label();
    l[7] = f32::NAN;
    l[8] = 0.5;
    write_lab(&lt("c3"), s, l);
    // c4: 2D label for a 3D image
    for c in 0..2 {
        write_img(&it("c4", c), s, [1.0; 3], 1.0);
    }
    let mut h2 = NiftiHeader::new([1, 5, 6], [1.0; 3], DataType::U8);
    h2.dim[0] = 2;
    write_nifti(&lt("c4"), &h2, &Volume::filled([1, 5, 6], 0u8)).unwrap();
    // c5: orientation differs (warning only), label shifted origin
    for c in 0..2 {
        write_img(&it("c5", c), s, [1.0; 3], 1.0);
    }
    let mut hl = NiftiHeader::new(s, [1.0; 3], DataType::U8);
    hl.set_rotation_origin([0.0; 3], [5.0, 0.0, 0.0]);
    write_nifti(&lt("c5"), &hl, &Volume::filled(s, 1u8)).unwrap();
    // c6: 4D image where a 3D one is expected, and an infinite voxel
    let mut h4 = NiftiHeader::new(s, [1.0; 3], DataType::F32);
    h4.dim[0] = 4;
    h4.dim[4] = 2;
    let mut d4 = vec![0f32; 2 * n];
    d4[n + 1] = f32::INFINITY;
    let p = it("c6", 0);
    write_nifti_image(&p, &NiftiImage { path: p.clone(), header: h4, data: NiftiData::F32(d4) }).unwrap();
    write_img(&it("c6", 1), s, [1.0; 3], 1.0);
    write_lab(&lt("c6"), s, ok_label());
    // stray files
    write_img(&root.join("imagesTr/nosuffix.nii.gz"), s, [1.0; 3], 1.0);
    write_img(&it("c0", 2), s, [1.0; 3], 1.0);
    write_lab(&lt("orphan"), s, ok_label());

    let ds = open_dataset(&root).unwrap();
    assert_eq!(ds.cases.len(), 7);
    let report = verify_dataset(&ds, &|_, _| {});
    let text = report.to_string();
    let k = kinds(&report);
    let has = |case: Option<&str>, pat: &str| k.iter().filter(|(c, d)| c.as_deref() == case && d.contains(pat)).count();
    assert_eq!(has(None, "Labels(NotConsecutive([0, 1, 3]))"), 1, "{text}");
    assert_eq!(has(None, "NumTrainingMismatch { declared: 9, found: 7 }"), 1, "{text}");
    assert_eq!(has(None, "FileWithoutChannelSuffix"), 1, "{text}");
    assert_eq!(has(Some("c0"), "UnexpectedChannelFile { channel: 2, declared: 2 }"), 1, "{text}");
    assert_eq!(has(Some("c1"), "MissingChannelFile { channel: 1 }"), 1, "{text}");
    assert_eq!(has(Some("c2"), "SpacingMismatch"), 1, "{text}");
    assert_eq!(has(Some("c3"), "NonFinite { what: \"label\", count: 1"), 1, "{text}");
    assert_eq!(has(Some("c3"), "NonIntegerLabel { value: 0.5, count: 1"), 1, "{text}");
    assert_eq!(has(Some("c4"), "DimensionMismatch { reference: \"the image\", expected: 3, found: 2 }"), 1, "{text}");
    assert_eq!(has(Some("c6"), "VolumeCount { volumes: 2, expected: 1 }"), 1, "{text}");
    assert!(!k.iter().any(|(c, d)| c.as_deref() == Some("c6") && d.contains("NonFinite")), "{text}");
    // Labels 0..2 in files, but 2 is undeclared ("b" is 3): reported for each case holding 2.
    for c in ["c0", "c1", "c2", "c3", "c6"] {
        assert_eq!(has(Some(c), "UndeclaredLabel { value: 2"), 1, "{c}: {text}");
    }
    assert_eq!(report.problems.len(), 15, "{text}");
    let w: Vec<String> = report.warnings.iter().map(|p| p.to_string()).collect();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w.iter().any(|s| s.starts_with("c6: imagesTr/c6_0000.nii.gz: image has 1 NaN/inf voxel(s)")), "{w:?}");
    assert!(w.iter().any(|s| s.starts_with("c5: labelsTr/c5.nii.gz: origin/direction differ")), "{w:?}");
    assert!(
        w.iter().any(|s| s.starts_with("orphan: labelsTr/orphan.nii.gz: label file has no matching image")),
        "{w:?}"
    );
    assert!(
        text.contains("c2: imagesTr/c2_0001.nii.gz: spacing [1.5, 1, 1] (z, y, x) differs from channel 0 [1, 1, 1]"),
        "{text}"
    );
}

#[test]
fn mixed_2d_3d_and_outside_path_in_handmade_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset201_Mixed");
    let j = json!({"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 2, "file_ending": ".nii"});
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("dataset.json"), j.to_string()).unwrap();
    write_img(&root.join("imagesTr/a_0000.nii"), [3, 3, 3], [1.0; 3], 0.0);
    write_lab(&root.join("labelsTr/a.nii"), [3, 3, 3], vec![0.0; 27]);
    let mut h2 = NiftiHeader::new([1, 3, 3], [1.0; 3], DataType::F32);
    h2.dim[0] = 2;
    write_nifti(&root.join("imagesTr/b_0000.nii"), &h2, &Volume::filled([1, 3, 3], 0f32)).unwrap();
    write_nifti(&root.join("labelsTr/b.nii"), &h2, &Volume::filled([1, 3, 3], 0u8)).unwrap();
    let mut ds = open_dataset(&root).unwrap();
    let report = verify_dataset(&ds, &|_, _| {});
    assert_eq!(kinds(&report), vec![(None, "MixedDimensionality { two_d: 1, three_d: 1 }".to_string())]);
    // A file outside the folder is read like any other (issue 14): only its absence is a problem.
    ds.cases[0].label = Some(root.join("../elsewhere.nii"));
    let report = verify_dataset(&ds, &|_, _| {});
    assert!(kinds(&report).contains(&(Some("a".into()), "MissingLabelFile".into())), "{report}");
    write_lab(&dir.path().join("elsewhere.nii"), [3, 3, 3], vec![0.0; 27]);
    let report = verify_dataset(&ds, &|_, _| {});
    assert_eq!(kinds(&report), vec![(None, "MixedDimensionality { two_d: 1, three_d: 1 }".to_string())]);
}

#[test]
fn orientation_warning_uses_the_transform_itk_uses() {
    // Issue 14 item 6: image and label share the qform; their sforms (code 2, "aligned")
    // differ. ITK (and nnU-Net) use the qform here, so there is nothing to warn about; the
    // sform-first rule used before warned.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset202_Forms");
    let j =
        json!({"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 1, "file_ending": ".nii.gz"});
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    std::fs::create_dir_all(root.join("labelsTr")).unwrap();
    std::fs::write(root.join("dataset.json"), j.to_string()).unwrap();
    let s = [3, 3, 3];
    let mut hi = NiftiHeader::new(s, [1.0; 3], DataType::F32);
    hi.sform_code = 2;
    hi.srow_x[3] = 50.0;
    write_nifti(&root.join("imagesTr/a_0000.nii.gz"), &hi, &Volume::filled(s, 1f32)).unwrap();
    let mut hl = NiftiHeader::new(s, [1.0; 3], DataType::U8);
    hl.sform_code = 2;
    write_nifti(&root.join("labelsTr/a.nii.gz"), &hl, &Volume::filled(s, 0u8)).unwrap();
    let report = verify_dataset(&open_dataset(&root).unwrap(), &|_, _| {});
    assert!(report.is_ok() && report.warnings.is_empty(), "{report}");
    // With sform_code 1 the sform counts, and the shifted one is reported.
    hi.sform_code = 1;
    hl.sform_code = 1;
    write_nifti(&root.join("imagesTr/a_0000.nii.gz"), &hi, &Volume::filled(s, 1f32)).unwrap();
    write_nifti(&root.join("labelsTr/a.nii.gz"), &hl, &Volume::filled(s, 0u8)).unwrap();
    let report = verify_dataset(&open_dataset(&root).unwrap(), &|_, _| {});
    assert_eq!(report.warnings.len(), 1, "{report}");
}

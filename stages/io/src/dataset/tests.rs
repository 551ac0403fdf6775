use super::*;
use crate::labels::LabelDef;
use crate::nifti::{write_nifti, write_nifti_image, DataType, NiftiData, NiftiHeader, NiftiImage};
use serde_json::json;

pub(crate) const HIPPOCAMPUS: &str = "/work/shared/data/Task04_Hippocampus";

fn write_f32(path: &Path, shape: [usize; 3], spacing: [f64; 3], fill: f32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let h = NiftiHeader::new(shape, spacing, DataType::F32);
    let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| fill + i as f32).collect();
    write_nifti(path, &h, &Volume::from_vec(shape, data).unwrap()).unwrap();
}

fn write_u8(path: &Path, shape: [usize; 3], value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let h = NiftiHeader::new(shape, [1.0; 3], DataType::U8);
    write_nifti(path, &h, &Volume::filled(shape, value)).unwrap();
}

fn write_json(root: &Path, v: &Value) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("dataset.json"), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

#[test]
fn hippocampus_msd_opens() {
    let root = Path::new(HIPPOCAMPUS);
    if !root.exists() {
        return crate::testing::skip(&format!("{HIPPOCAMPUS} absent"));
    }
    let ds = open_dataset(root).unwrap();
    assert_eq!(ds.layout, Layout::Msd);
    assert_eq!(ds.name, "Task04_Hippocampus");
    assert_eq!(ds.channel_names, vec!["MRI"]);
    assert_eq!(ds.labels, Labels::plain(&["background", "Anterior", "Posterior"]));
    assert_eq!(ds.num_training_declared, 260);
    assert_eq!(ds.cases.len(), 260);
    assert!(ds.test_cases.is_empty());
    assert!(ds.cases.windows(2).all(|w| w[0].id < w[1].id));
    let c = ds.case("hippocampus_001").unwrap();
    assert_eq!(
        c.images,
        vec![ImageRef { path: ds.root.join("imagesTr/hippocampus_001.nii.gz"), channel_in_file: None }]
    );
    assert_eq!(c.files().len(), 2);
    let imgs = c.read_images().unwrap();
    assert_eq!(imgs.channels.len(), 1);
    assert_eq!(imgs.spacing, [1.0, 1.0, 1.0]);
    // SOURCE.md: hippocampus_001 is uint8 with values 2..139.
    let (lo, hi) = imgs.channels[0].data.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!((lo, hi), (2.0, 139.0));
    let (lab, h) = c.read_label().unwrap();
    assert_eq!(lab.shape, imgs.channels[0].shape);
    assert_eq!(h.nifti.as_ref().unwrap().qform_code, 1);
    let mut vals: Vec<i16> = lab.data.clone();
    vals.sort_unstable();
    vals.dedup();
    assert_eq!(vals, vec![0, 1, 2]);
    let j = ds.to_v2_dataset_json();
    assert_eq!(j["channel_names"], json!({"0": "MRI"}));
    assert_eq!(j["labels"], json!({"background": 0, "Anterior": 1, "Posterior": 2}));
    assert_eq!(j["numTraining"], json!(260));
    assert_eq!(j["file_ending"], json!(".nii.gz"));
    assert_eq!(j["licence"], json!("CC-BY-SA 4.0"));
    assert!(j.get("training").is_none() && j.get("modality").is_none());
}

#[test]
fn v2_folder_scan_with_test_set_and_hidden_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset123_Toy");
    write_json(
        &root,
        &json!({"channel_names": {"1": "ADC", "0": "T2"}, "labels": {"background": 0, "organ": 1},
                "numTraining": 2, "file_ending": ".nii.gz"}),
    );
    for id in ["b_case", "a_case"] {
        for c in 0..2 {
            write_f32(&root.join(format!("imagesTr/{id}_{c:04}.nii.gz")), [2, 3, 4], [3.0, 1.0, 1.0], c as f32);
        }
        write_u8(&root.join(format!("labelsTr/{id}.nii.gz")), [2, 3, 4], 1);
    }
    std::fs::write(root.join("imagesTr/._a_case_0000.nii.gz"), b"macos junk").unwrap();
    std::fs::write(root.join("imagesTr/notes.txt"), b"not an image").unwrap();
    write_f32(&root.join("imagesTs/t1_0000.nii.gz"), [2, 3, 4], [1.0; 3], 0.0);
    write_f32(&root.join("imagesTs/t1_0001.nii.gz"), [2, 3, 4], [1.0; 3], 0.0);
    write_f32(&root.join("imagesTs/t2_0000.nii.gz"), [2, 3, 4], [1.0; 3], 0.0);
    write_u8(&root.join("labelsTs/t1.nii.gz"), [2, 3, 4], 0);

    let ds = open_dataset(&root).unwrap();
    assert_eq!(ds.layout, Layout::NnUNetV2);
    assert_eq!(ds.name, "Dataset123_Toy");
    assert_eq!(ds.channel_names, vec!["T2", "ADC"]);
    assert_eq!(ds.cases.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["a_case", "b_case"]);
    let a = &ds.cases[0];
    assert_eq!(a.images[1].path, ds.root.join("imagesTr/a_case_0001.nii.gz"));
    assert_eq!(a.label, Some(ds.root.join("labelsTr/a_case.nii.gz")));
    let imgs = a.read_images().unwrap();
    assert_eq!(imgs.channels.len(), 2);
    assert_eq!(imgs.channels[1].data[0], 1.0);
    assert_eq!(imgs.spacing, [3.0, 1.0, 1.0]);
    assert_eq!(ds.test_cases.len(), 2);
    assert!(ds.test_cases[0].label.is_some() && ds.test_cases[1].label.is_none());
    // t2 lacks channel 1: listed anyway, reading names the file.
    let e = ds.test_cases[1].read_images().unwrap_err().to_string();
    assert!(e.contains("t2") && e.contains("t2_0001.nii.gz"), "{e}");
    let j = ds.to_v2_dataset_json();
    assert_eq!(j["channel_names"], json!({"0": "T2", "1": "ADC"}));
    assert_eq!(j["numTraining"], json!(2));
}

#[test]
fn v2_dataset_key_with_env_vars_and_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset124_Keyed");
    write_f32(&root.join("data/one_img.nii.gz"), [1, 2, 2], [1.0; 3], 0.0);
    write_u8(&root.join("data/one_seg.nii.gz"), [1, 2, 2], 0);
    std::env::set_var("NNUNET_IO_TEST_DS_DIR", root.canonicalize().unwrap().join("data"));
    let mut j = json!({"channel_names": {"0": "CT"}, "labels": {"background": 0, "x": [1, 2], "y": 2},
        "regions_class_order": [1, 2], "numTraining": 1, "file_ending": ".nii.gz",
        "dataset": {"one": {"images": ["$NNUNET_IO_TEST_DS_DIR/one_img.nii.gz"], "label": "./data/one_seg.nii.gz"}}});
    write_json(&root, &j);
    let ds = open_dataset(&root).unwrap();
    assert_eq!(ds.cases.len(), 1);
    assert_eq!(ds.cases[0].images[0].path, ds.root.join("data/one_img.nii.gz"));
    assert!(ds.labels.has_regions());
    assert_eq!(ds.labels.entries[1], ("x".to_string(), LabelDef::Region(vec![1, 2])));
    assert_eq!(ds.to_v2_dataset_json()["regions_class_order"], json!([1, 2]));

    // Issue 14: paths outside the dataset folder are accepted, as nnU-Net accepts them.
    let outside = dir.path().join("elsewhere");
    write_u8(&outside.join("one_seg.nii.gz"), [1, 2, 2], 0);
    j["dataset"]["one"]["label"] = json!("../elsewhere/one_seg.nii.gz");
    write_json(&root, &j);
    let ds = open_dataset(&root).unwrap();
    assert_eq!(
        ds.cases[0].label.as_deref(),
        Some(dir.path().canonicalize().unwrap().join("elsewhere/one_seg.nii.gz").as_path())
    );
    let abs = outside.canonicalize().unwrap().join("one_seg.nii.gz");
    j["dataset"]["one"]["label"] = json!(abs.to_str().unwrap());
    write_json(&root, &j);
    assert_eq!(open_dataset(&root).unwrap().cases[0].label.as_deref(), Some(abs.as_path()));
    assert!(crate::verify::verify_dataset(&open_dataset(&root).unwrap(), &|_, _| {}).is_ok());

    // A case id is one safe path component: refused before anything reads or writes.
    for bad in ["/abs/x", "../up", "a/b", "a\\b", ".hidden", ""] {
        let mut j2 = j.clone();
        let entry = j2["dataset"]["one"].clone();
        j2["dataset"] = json!({ bad: entry });
        write_json(&root, &j2);
        let e = open_dataset(&root).unwrap_err();
        assert!(matches!(e, DatasetError::CaseId { .. }), "{bad}: {e}");
        assert!(e.to_string().contains(&format!("\"{bad}\"")), "{e}");
    }
}

#[test]
fn non_finite_voxels_are_read_as_zero_and_counted() {
    // Issue 14 items 1-2: one Inf (or NaN) voxel used to reach the z-score statistics.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset125_Inf");
    let j = json!({"channel_names": {"0": "MR"}, "labels": {"background": 0, "x": 1}, "numTraining": 1, "file_ending": ".nii.gz"});
    write_json(&root, &j);
    let mut h = NiftiHeader::new([2, 2, 2], [1.0; 3], DataType::F32);
    h.set_rotation_origin([0.0; 3], [0.0; 3]);
    let mut v = Volume::filled([2, 2, 2], 3.0f32);
    v.data[1] = f32::INFINITY;
    v.data[5] = f32::NAN;
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    write_nifti(&root.join("imagesTr/a_0000.nii.gz"), &h, &v).unwrap();
    write_u8(&root.join("labelsTr/a.nii.gz"), [2, 2, 2], 1);
    let ds = open_dataset(&root).unwrap();
    let images = ds.cases[0].read_images().unwrap();
    assert_eq!(images.non_finite, 2);
    assert!(images.channels[0].data.iter().all(|x| x.is_finite()));
    assert_eq!(images.channels[0].data[1], 0.0);
    // verify warns (with the count) instead of refusing.
    let report = crate::verify::verify_dataset(&ds, &|_, _| {});
    assert!(report.is_ok(), "{report}");
    assert!(report.warnings.iter().any(|w| w.to_string().contains("2 NaN/inf voxel(s)")), "{report}");
}

#[test]
fn msd_4d_multimodal_splits_channels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Task01_Toy");
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    let mut h = NiftiHeader::new([2, 3, 4], [2.0, 1.0, 1.0], DataType::I16);
    h.dim[0] = 4;
    h.dim[4] = 2;
    let data: Vec<i16> = (0..48).collect();
    let p = root.join("imagesTr/brats_001.nii.gz");
    write_nifti_image(&p, &NiftiImage { path: p.clone(), header: h, data: NiftiData::I16(data) }).unwrap();
    write_u8(&root.join("labelsTr/brats_001.nii.gz"), [2, 3, 4], 1);
    write_json(
        &root,
        &json!({"name": "Toy", "modality": {"0": "FLAIR", "1": "T1w"}, "labels": {"0": "background", "1": "edema"},
            "numTraining": 1, "numTest": 1, "training": [{"image": "./imagesTr/brats_001.nii.gz", "label": "./labelsTr/brats_001.nii.gz"}],
            "test": ["./imagesTs/brats_002.nii.gz"]}),
    );
    let ds = open_dataset(&root).unwrap();
    assert_eq!(ds.layout, Layout::Msd);
    let c = &ds.cases[0];
    assert_eq!(c.images.iter().map(|r| r.channel_in_file).collect::<Vec<_>>(), [Some(0), Some(1)]);
    assert_eq!(c.files().len(), 2); // one image file + label
    let imgs = c.read_images().unwrap();
    assert_eq!(imgs.channels.len(), 2);
    assert_eq!(imgs.channels[1].data[0], 24.0);
    assert_eq!(imgs.header.ndim(), 3);
    assert_eq!(imgs.header.nifti.as_ref().unwrap().num_volumes(), 1);
    assert_eq!(ds.test_cases.len(), 1);
    assert_eq!(ds.test_cases[0].label, None);
    let j = ds.to_v2_dataset_json();
    assert_eq!(j["channel_names"], json!({"0": "FLAIR", "1": "T1w"}));
    assert_eq!(j["labels"], json!({"background": 0, "edema": 1}));
    assert_eq!(j["name"], json!("Toy"));
    assert_eq!(j["numTest"], json!(1));
    assert!(j.get("test").is_none());
}

#[test]
fn msd_outside_paths_are_accepted_and_duplicate_entries_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Task02_Bad");
    let mk = |training: Value| json!({"modality": {"0": "CT"}, "labels": {"0": "background"}, "numTraining": 1, "training": training});
    write_json(&root, &mk(json!([{"image": "../x.nii.gz", "label": "./labelsTr/x.nii.gz"}])));
    // Issue 14: a path outside the folder is accepted (nnU-Net accepts it).
    let ds = open_dataset(&root).unwrap();
    assert_eq!(ds.cases[0].images[0].path, dir.path().canonicalize().unwrap().join("x.nii.gz"));
    write_json(
        &root,
        &mk(json!([{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"},
                   {"image": "imagesTr/x.nii.gz", "label": "labelsTr/x.nii.gz"}])),
    );
    let e = open_dataset(&root).unwrap_err().to_string();
    assert!(e.contains("training[1]") && e.contains("already listed"), "{e}");
    #[cfg(unix)]
    {
        std::fs::create_dir_all(root.join("imagesTr")).unwrap();
        std::fs::write(dir.path().join("outside.nii.gz"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.nii.gz"), root.join("imagesTr/x.nii.gz")).unwrap();
        write_json(&root, &mk(json!([{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}])));
        // A symlink leading outside is accepted too; the case keeps its declared name.
        let ds = open_dataset(&root).unwrap();
        assert_eq!(ds.cases[0].id, "x");
        assert_eq!(ds.cases[0].images[0].path, ds.root.join("imagesTr/x.nii.gz"));
    }
}

#[test]
fn structural_errors_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset125_Broken");
    std::fs::create_dir_all(&root).unwrap();
    assert!(matches!(open_dataset(&root), Err(DatasetError::NoDatasetJson(_))));
    std::fs::write(root.join("dataset.json"), "{ not json").unwrap();
    assert!(open_dataset(&root).unwrap_err().to_string().contains("invalid JSON"));
    let base =
        json!({"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 0, "file_ending": ".nii.gz"});
    for (key, change, expect) in [
        ("file_ending", json!(".jpg"), ".jpg"),
        ("numTraining", json!(-1), "numTraining"),
        ("channel_names", json!({"0": "CT", "2": "MR"}), "channel indices"),
        ("labels", json!({"background": 0, "a": "b"}), "\"a\""),
    ] {
        let mut j = base.clone();
        j[key] = change;
        write_json(&root, &j);
        let e = open_dataset(&root).unwrap_err().to_string();
        assert!(e.contains(expect) && e.contains("dataset.json"), "{key}: {e}");
    }
    let mut j = base.clone();
    j.as_object_mut().unwrap().remove("numTraining");
    write_json(&root, &j);
    assert!(open_dataset(&root).unwrap_err().to_string().contains("numTraining"));
    write_json(&root, &base);
    let ds = open_dataset(&root).unwrap();
    assert!(ds.cases.is_empty() && ds.test_cases.is_empty());
}

#[test]
fn two_d_images_get_nnunet_pseudo_spacing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Dataset126_Flat");
    let mut h = NiftiHeader::new([1, 4, 5], [1.0, 0.5, 0.25], DataType::F32);
    h.dim[0] = 2;
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    write_nifti(&root.join("imagesTr/f_0000.nii"), &h, &Volume::filled([1, 4, 5], 1.0f32)).unwrap();
    write_json(
        &root,
        &json!({"channel_names": {"0": "X"}, "labels": {"background": 0}, "numTraining": 1, "file_ending": ".nii"}),
    );
    let ds = open_dataset(&root).unwrap();
    let imgs = ds.cases[0].read_images().unwrap();
    assert_eq!(imgs.channels[0].shape, [1, 4, 5]);
    assert_eq!(imgs.spacing, [999.0 * 0.5, 0.5, 0.25]);
}

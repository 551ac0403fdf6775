//! Model bundles: round trip, tampering, missing folds, path escapes, no partial extraction.

use nnunet_infer::bundle::*;
use nnunet_infer::tar::TarWriter;
use std::path::{Path, PathBuf};

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn parts(root: &Path) -> BundleParts {
    write(&root.join("plans.json"), br#"{"plans_name": "nnUNetPlans"}"#);
    write(&root.join("dataset.json"), br#"{"labels": {"background": 0, "a": 1}}"#);
    write(&root.join("pp.json"), br#"{"format_version": 1, "steps": []}"#);
    let mut folds = vec![];
    for f in 0..2 {
        let d = root.join(format!("train/fold_{f}"));
        write(&d.join("model.safetensors"), &vec![f as u8 + 7; 3000 + f * 17]);
        write(&d.join("meta.json"), br#"{"in_channels": 1, "num_classes": 2}"#);
        write(&d.join("log.txt"), b"not exported");
        folds.push((f.to_string(), d));
    }
    BundleParts {
        plans_json: root.join("plans.json"),
        dataset_json: root.join("dataset.json"),
        configurations: vec![BundleConfiguration { name: "3d_fullres".into(), folds }],
        postprocessing_json: Some(root.join("pp.json")),
        versions: [("pipeline".to_string(), "0.1.0".to_string())].into(),
        info: serde_json::json!({"chosen": "3d_fullres"}),
    }
}

fn tar_of(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    for (p, t, data) in entries {
        w.append_entry(p, data.len() as u64, *t, if *t == b'2' { "/etc" } else { "" }, &mut &data[..]).unwrap();
    }
    w.finish().unwrap()
}

fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let p = parts(tmp.path());
    let tar = tmp.path().join("model.tar");
    let m = export_bundle(&tar, &p).unwrap();
    assert_eq!(m.files.len(), 3 + 4);
    assert_eq!(read_manifest(&tar).unwrap(), m);
    let target = tmp.path().join("out/model");
    let b = load_bundle(&tar, &target).unwrap();
    assert_eq!(b.manifest, m);
    let dirs = b.fold_dirs("3d_fullres").unwrap();
    assert_eq!(std::fs::read(dirs[1].join("model.safetensors")).unwrap(), vec![8u8; 3017]);
    assert!(!dirs[0].join("log.txt").exists());
    assert_eq!(std::fs::read(b.plans_json()).unwrap(), std::fs::read(&p.plans_json).unwrap());
    assert!(b.postprocessing_json().unwrap().is_file());
    // Loading again into the now non-empty target is refused.
    assert!(load_bundle(&tar, &target).is_err());
}

#[test]
fn tampered_file_is_named_and_nothing_is_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("model.tar");
    export_bundle(&tar, &parts(tmp.path())).unwrap();
    let mut bytes = std::fs::read(&tar).unwrap();
    // Flip one byte of fold 1's weights (its data is a run of 8s).
    let pos = bytes.windows(64).position(|w| w.iter().all(|&b| b == 8)).unwrap();
    bytes[pos + 10] ^= 0xff;
    let bad = tmp.path().join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let target = tmp.path().join("x");
    let e = load_bundle(&bad, &target).unwrap_err().to_string();
    assert!(e.contains("configurations/3d_fullres/fold_1/model.safetensors"), "{e}");
    assert!(!target.exists());
    assert!(files_under(tmp.path()).iter().all(|p| !p.to_string_lossy().contains(".tmp-")), "temp folder left behind");
}

#[test]
fn missing_fold_and_unknown_version_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("model.tar");
    let m = export_bundle(&tar, &parts(tmp.path())).unwrap();
    let src = tmp.path();
    let read = |p: &str| std::fs::read(src.join(p)).unwrap();
    // Manifest declaring fold 1, archive without its files.
    let mut m2 = m.clone();
    m2.files.retain(|f| !f.path.contains("fold_1"));
    let mtext = serde_json::to_vec(&m2).unwrap();
    let (plans, ds, pp) = (read("plans.json"), read("dataset.json"), read("pp.json"));
    let (w0, j0) = (read("train/fold_0/model.safetensors"), read("train/fold_0/meta.json"));
    let entries = |man: &[u8]| -> Vec<u8> {
        let e: Vec<(&str, u8, &[u8])> = vec![
            ("manifest.json", b'0', man),
            ("plans.json", b'0', &plans),
            ("dataset.json", b'0', &ds),
            ("postprocessing.json", b'0', &pp),
            ("configurations/3d_fullres/fold_0/model.safetensors", b'0', &w0),
            ("configurations/3d_fullres/fold_0/meta.json", b'0', &j0),
        ];
        tar_of(&e)
    };
    let t = tmp.path().join("t1.tar");
    std::fs::write(&t, entries(&mtext)).unwrap();
    let e = load_bundle(&t, &tmp.path().join("o1")).unwrap_err().to_string();
    assert!(e.contains("fold 1") && e.contains("missing"), "{e}");
    assert!(!tmp.path().join("o1").exists());
    // Unknown format version.
    let mut m3 = m.clone();
    m3.format_version = 99;
    m3.files.retain(|f| !f.path.contains("fold_1"));
    m3.configurations[0].folds = vec!["0".into()];
    std::fs::write(&t, entries(&serde_json::to_vec(&m3).unwrap())).unwrap();
    let e = load_bundle(&t, &tmp.path().join("o2")).unwrap_err().to_string();
    assert!(e.contains("version 99"), "{e}");
    // The same with the right version loads.
    m3.format_version = BUNDLE_FORMAT_VERSION;
    std::fs::write(&t, entries(&serde_json::to_vec(&m3).unwrap())).unwrap();
    load_bundle(&t, &tmp.path().join("o3")).unwrap();
}

#[test]
fn escaping_paths_and_links_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (path, kind)) in
        [("../evil.txt", b'0'), ("a/../../evil.txt", b'0'), ("/tmp/evil.txt", b'0'), ("link", b'2'), ("hard", b'1')]
            .into_iter()
            .enumerate()
    {
        let t = tmp.path().join(format!("e{i}.tar"));
        std::fs::write(&t, tar_of(&[("manifest.json", b'0', b"{}"), (path, kind, b"x")])).unwrap();
        let target = tmp.path().join(format!("sub/out{i}"));
        let e = load_bundle(&t, &target).unwrap_err().to_string();
        assert!(e.contains(path) || e.contains("link"), "{path}: {e}");
        assert!(!target.exists());
    }
    assert!(!tmp.path().join("evil.txt").exists());
    assert!(files_under(&tmp.path().join("sub")).is_empty(), "nothing extracted");
    // An unlisted extra file is refused too.
    let tar = tmp.path().join("model.tar");
    let m = export_bundle(&tar, &parts(tmp.path())).unwrap();
    let mut bytes = serde_json::to_vec(&m).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = vec![("manifest.json".into(), std::mem::take(&mut bytes))];
    for f in &m.files {
        let src = match f.path.as_str() {
            "plans.json" => tmp.path().join("plans.json"),
            "dataset.json" => tmp.path().join("dataset.json"),
            "postprocessing.json" => tmp.path().join("pp.json"),
            p => {
                let rest = p.strip_prefix("configurations/3d_fullres/").unwrap();
                tmp.path().join("train").join(rest)
            }
        };
        entries.push((f.path.clone(), std::fs::read(src).unwrap()));
    }
    entries.push(("extra.bin".into(), b"?".to_vec()));
    let refs: Vec<(&str, u8, &[u8])> = entries.iter().map(|(p, d)| (p.as_str(), b'0', d.as_slice())).collect();
    let t = tmp.path().join("extra.tar");
    std::fs::write(&t, tar_of(&refs)).unwrap();
    let e = load_bundle(&t, &tmp.path().join("o")).unwrap_err().to_string();
    assert!(e.contains("extra.bin"), "{e}");
}

/// A bundle whose dataset.json names `file_ending` (and optionally a reader class), with real
/// plans (nnU-Net's, from the prep fixtures) and one trained fold.
fn bundle_with_ending(root: &Path, ending: &str, reader: Option<&str>) -> PathBuf {
    let all: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(&nnunet_io::testing::manifest_dir()).join("../prep/tests/fixtures/peer_plans.json"))
            .unwrap(),
    )
    .unwrap();
    write(&root.join("plans.json"), all["A_Default"]["plans"].to_string().as_bytes());
    let mut dj = serde_json::json!({
        "labels": {"background": 0, "a": 1},
        "channel_names": {"0": "CT"},
        "numTraining": 4,
        "file_ending": ending,
    });
    if let Some(r) = reader {
        dj["overwrite_image_reader_writer"] = r.into();
    }
    write(&root.join("dataset.json"), dj.to_string().as_bytes());
    let d = root.join("train/fold_0");
    write(&d.join("model.safetensors"), &[7u8; 100]);
    write(&d.join("meta.json"), br#"{"in_channels": 1, "num_classes": 2}"#);
    let parts = BundleParts {
        plans_json: root.join("plans.json"),
        dataset_json: root.join("dataset.json"),
        configurations: vec![BundleConfiguration { name: "3d_fullres".into(), folds: vec![("0".into(), d)] }],
        postprocessing_json: None,
        versions: [("pipeline".to_string(), "0.1.0".to_string())].into(),
        info: serde_json::json!({"members": ["3d_fullres"]}),
    };
    let tar = root.join("model.tar");
    export_bundle(&tar, &parts).unwrap();
    tar
}

#[test]
fn bundle_file_ending_is_validated_against_the_supported_formats() {
    let cases: [(&str, Option<&str>, Result<(), &str>); 10] = [
        (".nii.gz", None, Ok(())),
        (".mha", None, Ok(())),
        (".nrrd", Some("SimpleITKIO"), Ok(())),
        (".tif", Some("Tiff3DIO"), Ok(())),
        (".png", Some("None"), Ok(())),
        (".jpg", None, Err("file_ending \".jpg\" is not supported")),
        ("/../../escape.nii.gz", None, Err("is not supported (supported: .nii.gz")),
        ("", None, Err("file_ending \"\" is not supported")),
        (".nii.gz", Some("NibabelIOWithReorient"), Err("supported: SimpleITKIO, NibabelIO")),
        (".png", Some("SimpleITKIO"), Err("does not read \".png\" files")),
    ];
    for (i, (ending, reader, expect)) in cases.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let tar = bundle_with_ending(tmp.path(), ending, reader);
        let b = load_bundle(&tar, &tmp.path().join(format!("x{i}"))).unwrap();
        match (nnunet_infer::Model::from_bundle(&b), expect) {
            (Ok(m), Ok(())) => assert_eq!(m.file_ending, ending),
            (Err(e), Err(want)) => {
                let msg = e.to_string();
                assert!(msg.contains(want) && msg.contains("dataset.json"), "{ending} {reader:?}: {msg}");
            }
            (Ok(_), Err(want)) => panic!("{ending} {reader:?} was accepted, expected \"{want}\""),
            (Err(e), Ok(())) => panic!("{ending} {reader:?} was refused: {e}"),
        }
    }
}

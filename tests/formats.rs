//! End to end through the CLI, one tiny dataset per image format (issue 14): `pipeline synth
//! --format F` -> `verify` -> the whole pipeline at a tiny budget -> predictions written in the
//! input's format and geometry -> `evaluate`; NIfTI and MHA copies of the same images give the
//! same plans and preprocessed arrays; hostile case ids are refused before any write, paths
//! outside the dataset folder are accepted; NaN/inf voxels are read as 0 and counted.

mod common;

use common::{Pipe, Project};
use nnunet_io::image::read_image;
use std::path::{Path, PathBuf};

fn files(dir: &Path, ending: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(ending) && !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

fn synth(p: &Project, extra: &[&str]) {
    let _ = std::fs::remove_dir_all(p.path().join("data/ds"));
    let mut args = vec![
        "synth",
        "data/ds",
        "--cases",
        "4",
        "--test-cases",
        "2",
        "--shape",
        "8,24,24",
        "--spacing",
        "3,1,1",
        "--seed",
        "5",
    ];
    args.extend_from_slice(extra);
    let out = p.cmd(&args);
    assert!(out.status.success(), "synth {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// verify -> run (training, selection, post-processing, predict, evaluate) -> checks.
fn whole_pipeline(format: &str, extra: &[&str], configuration: &str) {
    let pipe = Pipe {
        name: "f",
        configurations: configuration,
        folds: "[0]",
        train: &[("epochs", "1"), ("iterations_per_epoch", "2")],
        downstream: true,
        ..Pipe::DEFAULT
    }
    .text();
    let p = Project::new(0, &pipe);
    let mut args = vec!["--format", format];
    args.extend_from_slice(extra);
    synth(&p, &args);
    let ending = format!(".{format}");
    let out = p.cmd(&["verify", "data/ds"]);
    assert!(out.status.success(), "verify {format}: {}", String::from_utf8_lossy(&out.stdout));
    let r = p.run(&[]);
    assert_eq!(r[0]["failed"], 0, "{format}: {}", r[0]);
    let run = p.path().join("runs/f");
    assert!(run.join("evaluate/summary.json").is_file(), "{format}: no evaluation");
    let preds = files(&run.join("predict"), &ending);
    let inputs: Vec<PathBuf> = files(&p.path().join("data/ds/labelsTs"), &ending)
        .into_iter()
        .map(|n| p.path().join("data/ds/labelsTs").join(n))
        .collect();
    assert_eq!(preds.len(), inputs.len(), "{format}: {preds:?}");
    for (pred, reference) in preds.iter().zip(&inputs) {
        let a = read_image(&run.join("predict").join(pred)).unwrap();
        let b = read_image(reference).unwrap();
        assert_eq!(a.header.format, b.header.format, "{format}");
        assert!(
            a.header.geometry.same_place(&b.header.geometry),
            "{format} {pred}: {:?} vs {:?}",
            a.header.geometry,
            b.header.geometry
        );
        assert_eq!(a.header.nnunet_spacing(), b.header.nnunet_spacing());
    }
    if matches!(format, "mha" | "nrrd") {
        simpleitk_sees_predictions_at_the_images_place(&p, &ending);
    }
    let summary = std::fs::read_to_string(run.join("evaluate/summary.json")).unwrap();
    assert!(summary.contains("foreground_mean"), "{format}: {summary}");
    // `pipeline evaluate` reads the format too.
    let out = p.cmd(&[
        "evaluate",
        "data/ds/labelsTs",
        "runs/f/predict",
        "--dataset-json",
        "data/ds/dataset.json",
        "-o",
        "ev/summary.json",
    ]);
    assert!(out.status.success(), "evaluate {format}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A Python with SimpleITK: `$PEER_PYTHON`, else the peer venv's (see ../shared/peer); `None`
/// when neither can import SimpleITK.
fn simpleitk_python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let py = std::env::var_os("PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/nnunet-peer/venv/bin/python"));
    let ok = std::process::Command::new(&py).args(["-c", "import SimpleITK"]).output().ok()?.status.success();
    ok.then_some(py)
}

/// The predictions open in SimpleITK (nnU-Net's reader, and what viewers build on) with the
/// size, spacing, origin and direction of their input images and reference labels.
fn simpleitk_sees_predictions_at_the_images_place(p: &Project, ending: &str) {
    let Some(py) = simpleitk_python() else {
        eprintln!("no Python with SimpleITK (set PEER_PYTHON): SimpleITK check of {ending} predictions skipped");
        return;
    };
    let script = Path::new(&nnunet_io::testing::manifest_dir()).join("scripts/check-sitk-geometry.py");
    let out = std::process::Command::new(py)
        .arg(script)
        .arg(p.path().join("data/ds/imagesTs"))
        .arg(p.path().join("runs/f/predict"))
        .arg(ending)
        .arg(p.path().join("data/ds/labelsTs"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "SimpleITK {ending}: {text} {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["checked"].as_array().map(|a| a.len()), Some(2), "{text}");
}

#[test]
fn mha_dataset_end_to_end() {
    whole_pipeline("mha", &[], "[3d_fullres]");
}

#[test]
fn nrrd_dataset_end_to_end() {
    whole_pipeline("nrrd", &[], "[3d_fullres]");
}

#[test]
fn rgb_png_dataset_end_to_end() {
    whole_pipeline("png", &["--channels", "3", "--modality", "MR"], "[2d]");
}

#[test]
fn tif_stack_dataset_end_to_end() {
    whole_pipeline("tif", &[], "[3d_fullres]");
}

fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = std::fs::canonicalize(e.path()).unwrap_or(e.path());
            if p.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().to_string();
                if !rel.ends_with("manifest.json") {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn nifti_and_mha_copies_give_identical_plans_and_preprocessed_arrays() {
    let pre = common::preprocess_only().replace("name: t", "name: n");
    let a = Project::new(0, &pre);
    synth(&a, &[]);
    let b = Project::new(0, &pre);
    synth(&b, &["--format", "mha"]);
    a.run(&[]);
    b.run(&[]);
    let ra = a.path().join("runs/n");
    let rb = b.path().join("runs/n");
    assert_eq!(std::fs::read(ra.join("plan/plans.json")).unwrap(), std::fs::read(rb.join("plan/plans.json")).unwrap());
    let (ta, tb) = (tree_bytes(&ra.join("resample")), tree_bytes(&rb.join("resample")));
    assert!(!ta.is_empty());
    assert_eq!(ta.len(), tb.len());
    for ((na, ba), (nb, bb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(ba == bb, "{na} differs between the NIfTI and the MHA dataset");
    }
}

#[test]
fn hostile_case_id_is_refused_before_any_write_and_outside_paths_are_accepted() {
    let p = Project::new(0, &common::preprocess_only());
    synth(&p, &[]);
    let ds = p.path().join("data/ds");
    // Move the training files outside the dataset folder and list them under the `dataset` key.
    let outside = p.path().join("elsewhere");
    std::fs::rename(ds.join("imagesTr"), outside.join("imagesTr"))
        .or_else(|_| {
            std::fs::create_dir_all(&outside)?;
            std::fs::rename(ds.join("imagesTr"), outside.join("imagesTr"))
        })
        .unwrap();
    let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(ds.join("dataset.json")).unwrap()).unwrap();
    let mut entries = serde_json::Map::new();
    for n in files(&outside.join("imagesTr"), ".nii.gz") {
        let id = n.trim_end_matches("_0000.nii.gz").to_string();
        entries.insert(
            id.clone(),
            serde_json::json!({"images": [format!("../../elsewhere/imagesTr/{n}")], "label": format!("labelsTr/{id}.nii.gz")}),
        );
    }
    j["dataset"] = serde_json::Value::Object(entries.clone());
    std::fs::write(ds.join("dataset.json"), j.to_string()).unwrap();
    let out = p.cmd(&["verify", "data/ds"]);
    assert!(out.status.success(), "outside paths: {}", String::from_utf8_lossy(&out.stdout));
    p.run(&[]);

    // A case id that is an absolute path: refused, naming the entry, nothing new written.
    let before = common::artifacts(&p.path().join("cache"));
    let first = entries.keys().next().unwrap().clone();
    let e = entries.remove(&first).unwrap();
    entries.insert("/tmp/evil".into(), e);
    j["dataset"] = serde_json::Value::Object(entries);
    std::fs::write(ds.join("dataset.json"), j.to_string()).unwrap();
    let out = p.cmd(&["run", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/tmp/evil") && err.contains("case id"), "{err}");
    assert_eq!(common::artifacts(&p.path().join("cache")), before);
    assert!(!Path::new("/tmp/evil").exists());
}

#[test]
fn nan_and_inf_voxels_are_read_as_zero_and_reported() {
    let p = Project::new(0, &common::preprocess_only());
    synth(&p, &["--modality", "MR"]);
    let ds = p.path().join("data/ds");
    let name = files(&ds.join("imagesTr"), ".nii.gz")[0].clone();
    let path = ds.join("imagesTr").join(&name);
    let img = nnunet_io::nifti::read_nifti(&path).unwrap();
    let mut v = img.to_f32_channels().unwrap().remove(0);
    v.data[3] = f32::NAN;
    v.data[4] = f32::INFINITY;
    nnunet_io::nifti::write_nifti(&path, &img.header.to_3d(), &v).unwrap();
    let out = p.cmd(&["verify", "data/ds", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 NaN/inf voxel(s)"), "{text}");
    p.run(&[]);
    let t = p.path().join("runs/t/fingerprint/cases.parquet");
    assert!(t.is_file());
    // The per-case fingerprint counts them.
    let id = name.trim_end_matches("_0000.nii.gz");
    let mut found = false;
    for e in walk(&p.path().join("cache/artifacts")) {
        if e.ends_with("case.json") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&e).unwrap()).unwrap();
            if v["non_finite_voxels"] == 2 {
                found = true;
            }
        }
    }
    assert!(found, "no case fingerprint of {id} counts 2 non-finite voxels");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

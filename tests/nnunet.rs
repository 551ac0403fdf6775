//! End to end through the CLI, issue 16: predicting with nnU-Net v2 model folders (the checked-in
//! fixture that nnU-Net itself wrote, stages/net/tests/fixtures/nnunet), ensembles of two and
//! nnU-Net's postprocessing.pkl; exporting a run as an nnU-Net model folder and predicting with it
//! again; fine-tuning (`train-fold` `pretrained`) from the exported checkpoint, with the same and
//! with another label count. No Python is needed.

mod common;

use common::{files, Pipe, Project};
use std::path::{Path, PathBuf};

fn fixture(cfg: &str) -> PathBuf {
    Path::new(&nnunet_io::testing::manifest_dir()).join("stages/net/tests/fixtures/nnunet").join(cfg)
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "stderr:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn err(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &dst.join(e.file_name()));
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn predict_with_nnunet_model_folders() {
    let p = Project::new(2, &common::pipeline());
    p.synth(2, 3);
    let model = fixture("2d");
    let m = model.to_str().unwrap();
    let out = p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "pred", "--model", m, "--device", "cpu", "--json"]);
    ok(&out);
    let preds = files(&p.path().join("pred"), ".nii.gz");
    assert_eq!(preds.len(), 3, "{preds:?}");
    // Same geometry as the input images.
    for f in &preds {
        let case = f.trim_end_matches(".nii.gz");
        let img =
            nnunet_io::nifti::read_header(&p.path().join(format!("data/ds/imagesTs/{case}_0000.nii.gz"))).unwrap();
        let seg = nnunet_io::nifti::read_header(&p.path().join("pred").join(f)).unwrap();
        assert_eq!(img.dim, seg.dim, "{f}");
        assert_eq!(img.pixdim[1..4], seg.pixdim[1..4], "{f}");
    }
    // Deterministic, and the step size is honoured (a smaller step still gives a segmentation).
    let out =
        p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "pred2", "--model", m, "--device", "cpu", "--folds", "0"]);
    ok(&out);
    for f in &preds {
        assert_eq!(
            std::fs::read(p.path().join("pred").join(f)).unwrap(),
            std::fs::read(p.path().join("pred2").join(f)).unwrap()
        );
    }
    let out =
        p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "pred3", "--model", m, "--step-size", "0.25", "--no-tta"]);
    ok(&out);
    assert_eq!(files(&p.path().join("pred3"), ".nii.gz"), preds);

    // An ensemble of two nnU-Net folders (2d plain + 3d ResEnc), with nnU-Net's postprocessing.pkl.
    let r = fixture("3d_resenc");
    let pp = fixture("postprocessing.pkl");
    let out = p.cmd(&[
        "predict",
        "-i",
        "data/ds/imagesTs",
        "-o",
        "ens",
        "--model",
        m,
        "--model",
        r.to_str().unwrap(),
        "--postprocessing",
        pp.to_str().unwrap(),
        "--save-probabilities",
        "--json",
    ]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let desc = v["model"].as_str().unwrap();
    assert!(desc.contains("3d_resenc") && desc.contains("2 post-processing step(s)"), "{desc}");
    assert_eq!(files(&p.path().join("ens"), ".nii.gz"), preds);
    assert_eq!(files(&p.path().join("ens"), ".probs.zarr").len(), 3);

    // Bad choices and bad files are refused, naming the problem.
    let e = err(&p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "x1", "--model", m, "--checkpoint", "best"]));
    assert!(e.contains("checkpoint_best.pth"), "{e}");
    let e = err(&p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "x2", "--model", m, "--folds", "3"]));
    assert!(e.contains("fold 3"), "{e}");
    let broken = p.path().join("broken");
    copy_dir(&model, &broken);
    let ck = broken.join("fold_0/checkpoint_final.pth");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..bytes.len() - 4000]).unwrap();
    let e = err(&p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "x3", "--model", "broken"]));
    assert!(e.contains("checkpoint_final.pth") && e.contains("zip"), "{e}");
    assert!(!p.path().join("x3").exists() || files(&p.path().join("x3"), ".nii.gz").is_empty());
}

#[test]
fn export_as_nnunet_folder_predict_and_finetune() {
    let text = Pipe {
        name: "m",
        configurations: "[2d]",
        folds: "[0]",
        train: &[("epochs", "2"), ("iterations_per_epoch", "3")],
        downstream: true,
        ..Pipe::DEFAULT
    }
    .text();
    let p = Project::new(6, &text);
    p.synth(6, 2);
    let r = p.run(&[]);
    assert_eq!(r[0]["failed"], 0);

    // Export, then predict from the exported folder: the run's own predictions (no post-processing
    // on either side, to compare the networks).
    ok(&p.cmd(&["export", "runs/m", "--format", "nnunet", "-o", "exported"]));
    let ex = p.path().join("exported");
    for f in ["plans.json", "dataset.json", "postprocessing.pkl", "fold_0/checkpoint_final.pth"] {
        assert!(ex.join(f).is_file(), "missing {f}");
    }
    ok(&p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "a", "--run", "runs/m", "--no-postprocessing"]));
    ok(&p.cmd(&["predict", "-i", "data/ds/imagesTs", "-o", "b", "--model", "exported", "--no-postprocessing"]));
    let preds = files(&p.path().join("a"), ".nii.gz");
    assert_eq!(preds.len(), 2);
    for f in &preds {
        let a = std::fs::read(p.path().join("a").join(f)).unwrap();
        let b = std::fs::read(p.path().join("b").join(f)).unwrap();
        assert!(a == b, "{f}: the exported model predicts differently from the run");
    }

    // Fine-tune from the exported nnU-Net checkpoint: same labels, every weight loaded.
    let ck = "exported/fold_0/checkpoint_final.pth";
    let ft = text
        .replace("name: m", "name: ft")
        .replace("      epochs: 2\n", &format!("      epochs: 2\n      pretrained: {ck}\n"));
    std::fs::write(p.path().join("ft.yaml"), &ft).unwrap();
    let r = p.run(&["-f", "ft.yaml", "--until", "train"]);
    assert_eq!(r[0]["failed"], 0);
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path().join("runs/ft/train/configuration=2d/fold=0/pretrained.json")).unwrap(),
    )
    .unwrap();
    assert!(info["loaded"].as_u64().unwrap() > 10, "{info}");
    assert_eq!(info["fresh"].as_array().unwrap().len(), 0, "{info}");
    // The weights' content is part of the key: other bytes at the same path retrain.
    let st = p.cmd(&["status", "-f", "ft.yaml", "--json"]);
    ok(&st);
    assert!(String::from_utf8_lossy(&st.stdout).contains("fresh"));
    std::fs::copy(fixture("2d").join("fold_0/checkpoint_final.pth"), p.path().join(ck)).unwrap();
    let st = p.cmd(&["status", "-f", "ft.yaml", "--why"]);
    let why = String::from_utf8_lossy(&st.stdout).to_string() + &String::from_utf8_lossy(&st.stderr);
    assert!(why.contains("checkpoint_final.pth"), "{why}");

    // Another label count: the heads start fresh, the rest is loaded.
    let q = Project::new(6, &ft.replace(ck, &p.path().join("exported/fold_0/checkpoint_final.pth").to_string_lossy()));
    q.synth_with(6, 0, &["--labels", "3"]);
    // The exported checkpoint was overwritten by the fixture above; restore a matching one.
    ok(&p.cmd(&["export", "runs/m", "--format", "nnunet", "-o", "exported"]));
    let r = q.run(&["--until", "train"]);
    assert_eq!(r[0]["failed"], 0);
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(q.path().join("runs/ft/train/configuration=2d/fold=0/pretrained.json")).unwrap(),
    )
    .unwrap();
    let fresh = info["fresh"].as_array().unwrap();
    assert!(!fresh.is_empty() && fresh.iter().all(|f| f["name"].as_str().unwrap().contains("seg_layers")), "{info}");
}

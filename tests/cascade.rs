//! The 3d_lowres + 3d_cascade_fullres pipeline end to end through the CLI, at a tiny budget:
//! images big enough for the planner to emit 3d_lowres (with a small GPU-memory target, so the
//! networks stay tiny), every lowres fold keeping its validation cases' segmentations for the
//! next stage, the cascade training on them as one-hot input channels, and prediction running
//! lowres first and feeding its segmentation to the cascade (nnU-Net §5.5, §7.3, §9.5).

mod common;

use common::{units_with, Pipe, Project};
use serde_json::Value;
use std::path::Path;

fn pipeline(train_configurations: &str) -> String {
    Pipe {
        name: "c",
        configurations: train_configurations,
        folds: "[0, 1]",
        train: &[("epochs", "1"), ("iterations_per_epoch", "2")],
        downstream: true,
        ..Pipe::DEFAULT
    }
    .text()
    // A 20 MB "GPU": patches of a few thousand voxels, so 3d_lowres applies to small images.
    .replace("      num_folds: 2\n", "      num_folds: 2\n      gpu_memory_gb: 0.02\n")
    // Choose the cascade, so that prediction goes through both stages.
    .replace(
        "  select:\n    uses: ensemble-select\n    needs: [train]\n",
        "  select:\n    uses: ensemble-select\n    needs: [train]\n    with:\n      configurations: [3d_cascade_fullres]\n",
    )
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[test]
fn lowres_and_cascade_train_and_predict_end_to_end() {
    let p = Project::new(6, &pipeline("[3d_lowres, 3d_cascade_fullres]"));
    p.synth_with(6, 2, &["--shape", "24,48,48", "--spacing", "1.0,1.0,1.0"]);
    let r = p.run(&[]);
    assert_eq!(r[0]["failed"], 0, "{r:?}");
    let run = p.path().join("runs/c");

    // Plans: the cascade pair, as nnU-Net writes it.
    let plans = json(&run.join("plan/plans.json"));
    let cfgs = &plans["configurations"];
    assert_eq!(cfgs["3d_lowres"]["next_stage"], "3d_cascade_fullres", "{cfgs}");
    assert_eq!(cfgs["3d_cascade_fullres"]["previous_stage"], "3d_lowres");
    assert_eq!(cfgs["3d_cascade_fullres"]["inherits_from"], "3d_fullres");
    // The cascade trains on 3d_fullres's data: preprocessed once, under that name.
    assert!(run.join("resample/configuration=3d_fullres").is_dir());
    assert!(run.join("resample/configuration=3d_lowres").is_dir());
    assert!(!run.join("resample/configuration=3d_cascade_fullres").exists());

    // Every case has a lowres cross-validation segmentation on the fullres grid, from its fold.
    let mut covered = Vec::new();
    for fold in 0..2 {
        let dir =
            run.join(format!("train/configuration=3d_lowres/fold={fold}/predicted_next_stage/3d_cascade_fullres"));
        let val: Vec<String> = names(&run.join(format!("train/configuration=3d_lowres/fold={fold}/validation")))
            .into_iter()
            .filter_map(|n| n.strip_suffix(".nii.gz").map(String::from))
            .collect();
        let next: Vec<String> =
            names(&dir).into_iter().filter_map(|n| n.strip_suffix(".zarr").map(String::from)).collect();
        assert_eq!(next, val, "fold {fold}: one next-stage segmentation per validation case");
        for id in &next {
            let a = nnunet_io::zarr::ZarrArray::open(&dir.join(format!("{id}.zarr"))).unwrap();
            let case = nnunet_prep::store::CaseStore::open(
                &run.join(format!("resample/configuration=3d_fullres/nnUNetPlans_3d_fullres.zarr/{id}")),
            )
            .unwrap();
            assert_eq!(a.shape, case.shape().to_vec(), "{id}: on the 3d_fullres preprocessed grid");
            let seg = a.read_all::<i16>().unwrap();
            assert!(seg.iter().all(|&v| (0..=2).contains(&v)), "{id}: labels 0..=2");
        }
        covered.extend(next);
    }
    covered.sort();
    assert_eq!(covered.len(), 6, "{covered:?}");

    // The cascade folds take the image plus one one-hot channel per foreground label (2).
    for fold in 0..2 {
        let f = run.join(format!("train/configuration=3d_cascade_fullres/fold={fold}"));
        assert_eq!(json(&f.join("checkpoint_final/meta.json"))["in_channels"], 3);
        assert!(f.join("validation/summary.json").is_file());
    }

    // Prediction of the test images runs 3d_lowres, then the cascade on its output.
    assert_eq!(json(&run.join("select/chosen.json"))["members"], serde_json::json!(["3d_cascade_fullres"]));
    let stage_preds: Vec<String> = names(&run.join("predict")).into_iter().filter(|n| n.ends_with(".nii.gz")).collect();
    assert_eq!(stage_preds.len(), 2, "{stage_preds:?}");
    assert!(run.join("evaluate/summary.json").is_file());
    let out = p.cmd(&["predict", "--run", "runs/c", "-i", "data/ds/imagesTs", "-o", "again", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for n in &stage_preds {
        let a = nnunet_io::nifti::read_nifti(&run.join("predict").join(n)).unwrap();
        let b = nnunet_io::nifti::read_nifti(&p.path().join("again").join(n)).unwrap();
        assert_eq!(
            a.channel_f32(0).unwrap().data,
            b.channel_f32(0).unwrap().data,
            "{n}: pipeline predict equals the predict stage"
        );
    }

    // Nothing is stale on a rerun.
    let again = p.run(&[]);
    assert!(units_with(&again[0], "built").is_empty(), "{again:?}");

    // Without its previous stage in the same training stage, the cascade cannot train, and says why.
    std::fs::write(p.path().join("pipeline.yaml"), pipeline("[3d_cascade_fullres]")).unwrap();
    let out = p.cmd(&["run", "-j", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3d_lowres") && err.contains("every fold"), "{err}");
}

//! End-to-end folder evaluation on NIfTI files written with `nnunet_io::nifti`.

use nnunet_eval::classes::{labels, LabelOrRegion};
use nnunet_eval::{evaluate_folder, EvalError, Summary};
use nnunet_io::nifti::{write_nifti, DataType, NiftiHeader};
use nnunet_io::Volume;
use std::path::{Path, PathBuf};

fn header(shape: [usize; 3]) -> NiftiHeader {
    let mut h = NiftiHeader::new(shape, [2.0, 0.7, 0.7], DataType::U8);
    h.set_rotation_origin([0.1, 0.0, 0.2], [10.0, -5.0, 3.0]);
    h
}

fn write(dir: &Path, name: &str, v: &Volume<u8>, h: &NiftiHeader) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    write_nifti(&p, h, v).unwrap();
    p
}

/// Independent per-voxel counting (the definition of §11).
fn naive(r: &[u8], p: &[u8], class: &[u8], ignore: Option<u8>) -> (u64, u64, u64, u64) {
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    for (&a, &b) in r.iter().zip(p) {
        if Some(a) == ignore {
            continue;
        }
        match (class.contains(&a), class.contains(&b)) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            _ => tn += 1,
        }
    }
    (tp, fp, fn_, tn)
}

#[test]
fn folder_with_ignore_regions_and_empty_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let (rd, pd) = (tmp.path().join("ref"), tmp.path().join("pred"));
    let shape = [3, 4, 5];
    let h = header(shape);
    let n = 60;
    let r1: Vec<u8> = (0..n).map(|i| [0, 1, 2, 3][(i * 7 % 11) % 4]).collect();
    let p1: Vec<u8> = (0..n).map(|i| [0, 1, 2, 2][(i * 5 % 13) % 4]).collect();
    let empty = vec![0u8; n];
    write(&rd, "a.nii.gz", &Volume::from_vec(shape, r1.clone()).unwrap(), &h);
    write(&pd, "a.nii.gz", &Volume::from_vec(shape, p1.clone()).unwrap(), &h);
    write(&rd, "b.nii.gz", &Volume::from_vec(shape, empty.clone()).unwrap(), &h);
    write(&pd, "b.nii.gz", &Volume::from_vec(shape, empty.clone()).unwrap(), &h);
    // A reference without prediction is skipped (chill).
    write(&rd, "c.nii.gz", &Volume::from_vec(shape, empty.clone()).unwrap(), &h);

    let classes = vec![LabelOrRegion::Label(1), LabelOrRegion::Label(2), LabelOrRegion::Region(vec![1, 2])];
    let s = evaluate_folder(&rd, &pd, &classes, Some(3), ".nii.gz").unwrap();
    assert_eq!(s.metric_per_case.len(), 2);
    for (k, vals) in [(0usize, vec![1u8]), (1, vec![2]), (2, vec![1, 2])] {
        let (tp, fp, fn_, tn) = naive(&r1, &p1, &vals, Some(3));
        let m = s.metric_per_case[0].metrics[k];
        assert_eq!((m.tp, m.fp, m.fn_, m.tn), (tp, fp, fn_, tn), "class {k}");
        let dice = 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64;
        assert!((m.dice - dice).abs() < 1e-15);
        // case b is empty-empty: NaN, skipped by the mean
        assert!(s.metric_per_case[1].metrics[k].dice.is_nan());
        assert!((s.mean[k].dice - dice).abs() < 1e-15);
        assert_eq!(s.mean[k].tn, (tn + n as u64) as f64 / 2.0);
    }
    let fg = (s.mean[0].dice + s.mean[1].dice + s.mean[2].dice) / 3.0;
    assert!((s.foreground_mean.dice - fg).abs() < 1e-15);

    // summary.json round trip and the Parquet table
    let sj = tmp.path().join("summary.json");
    s.write_json(&sj).unwrap();
    let back = Summary::read_json(&sj).unwrap();
    assert_eq!(back.to_json_string(), s.to_json_string());
    let pq = tmp.path().join("cases.parquet");
    s.per_case_table().write_parquet(&pq).unwrap();
    let t = nnunet_io::table::Table::read_parquet(&pq).unwrap();
    assert_eq!(t.nrows(), 6);
    assert!(t.f64("Dice").unwrap()[3].is_nan());
}

#[test]
fn missing_reference_and_geometry_mismatch_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (rd, pd) = (tmp.path().join("ref"), tmp.path().join("pred"));
    let shape = [2, 3, 4];
    let v = Volume::filled(shape, 1u8);
    write(&rd, "a.nii.gz", &v, &header(shape));
    write(&pd, "z.nii.gz", &v, &header(shape));
    let e = evaluate_folder(&rd, &pd, &labels(&[1]), None, ".nii.gz").unwrap_err();
    assert!(matches!(e, EvalError::MissingReference { .. }), "{e}");
    assert!(e.to_string().contains("z.nii.gz"));

    std::fs::remove_file(pd.join("z.nii.gz")).unwrap();
    // same shape, shifted origin
    let mut h2 = header(shape);
    h2.set_rotation_origin([0.1, 0.0, 0.2], [12.0, -5.0, 3.0]);
    write(&pd, "a.nii.gz", &v, &h2);
    let e = evaluate_folder(&rd, &pd, &labels(&[1]), None, ".nii.gz").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, EvalError::Geometry { .. }), "{msg}");
    assert!(
        msg.contains(&rd.join("a.nii.gz").display().to_string())
            && msg.contains(&pd.join("a.nii.gz").display().to_string())
    );
    // different shape
    write(&pd, "a.nii.gz", &Volume::filled([2, 3, 5], 1u8), &header([2, 3, 5]));
    let e = evaluate_folder(&rd, &pd, &labels(&[1]), None, ".nii.gz").unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");

    let empty = tmp.path().join("none");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(
        evaluate_folder(&rd, &empty, &labels(&[1]), None, ".nii.gz").unwrap_err(),
        EvalError::NoPredictions { .. }
    ));
}

/// Hippocampus labels against a deterministically perturbed copy, checked against a naive
/// count. Runs when the dataset is present (`NNUNET_HIPPOCAMPUS_LABELS` or the usual places).
#[test]
fn hippocampus_labels_vs_perturbed_copy() {
    let candidates = [
        std::env::var("NNUNET_HIPPOCAMPUS_LABELS").unwrap_or_default(),
        "/work/shared/data/Task04_Hippocampus/labelsTr".to_string(),
        format!("{}/.cache/nnunet-peer/raw/Dataset004_Hippocampus/labelsTr", std::env::var("HOME").unwrap_or_default()),
    ];
    let Some(src) = candidates.iter().map(PathBuf::from).find(|p| !p.as_os_str().is_empty() && p.is_dir()) else {
        eprintln!("Hippocampus labels not found; skipping");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (rd, pd) = (tmp.path().join("ref"), tmp.path().join("pred"));
    std::fs::create_dir_all(&rd).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".nii.gz") && !n.starts_with('.'))
        .collect();
    names.sort();
    names.truncate(24);
    let mut expected = vec![];
    for (ci, n) in names.iter().enumerate() {
        let img = nnunet_io::nifti::read_nifti(&src.join(n)).unwrap();
        let lab = img.to_label_volume().unwrap();
        let h = img.header.to_3d();
        let r: Vec<u8> = lab.data.iter().map(|&v| v as u8).collect();
        // Perturb: shift every 9th voxel's label, and blank one case's prediction entirely.
        let p: Vec<u8> = if ci == 3 {
            vec![0; r.len()]
        } else {
            r.iter()
                .enumerate()
                .map(|(i, &v)| match (v, (i * 31 + ci) % 9) {
                    (1, 0) => 2,
                    (2, 0) => 1,
                    (0, 0) if i % 5 == 0 => 1,
                    _ => v,
                })
                .collect()
        };
        write(&rd, n, &Volume::from_vec(lab.shape, r.clone()).unwrap(), &h);
        write(&pd, n, &Volume::from_vec(lab.shape, p.clone()).unwrap(), &h);
        expected.push([naive(&r, &p, &[1], None), naive(&r, &p, &[2], None)]);
    }
    let s = evaluate_folder(&rd, &pd, &labels(&[1, 2]), None, ".nii.gz").unwrap();
    assert_eq!(s.metric_per_case.len(), names.len());
    let mut dice_sum = [0.0; 2];
    for (c, e) in s.metric_per_case.iter().zip(&expected) {
        for ((m, want), sum) in c.metrics.iter().zip(e).zip(dice_sum.iter_mut()) {
            assert_eq!((m.tp, m.fp, m.fn_, m.tn), *want);
            *sum += m.dice;
        }
    }
    for (mean, sum) in s.mean.iter().zip(dice_sum) {
        assert!((mean.dice - sum / names.len() as f64).abs() < 1e-12);
    }
    assert!(s.mean[0].dice < 1.0 && s.mean[0].dice > 0.5);
}

//! Planner tests: the worked examples of §5.6 and a field-by-field comparison with the peer's
//! (real nnU-Net 2.8.1) plans for Hippocampus when those are available.

use super::*;
use crate::plans::IntensityProperties;
use serde_json::Value;

fn fingerprint(spacing: [f64; 3], shape: [usize; 3], n: usize, channels: usize) -> DatasetFingerprint {
    let p = IntensityProperties {
        max: 1.0,
        mean: 0.0,
        median: 0.0,
        min: -1.0,
        percentile_00_5: -1.0,
        percentile_99_5: 1.0,
        std: 1.0,
    };
    DatasetFingerprint {
        spacings: vec![spacing; n],
        shapes_after_crop: vec![shape; n],
        foreground_intensity_properties_per_channel: (0..channels).map(|c| (c.to_string(), p.clone())).collect(),
        median_relative_size_after_cropping: 1.0,
    }
}

fn info(name: &str, channels: &[&str], labels: usize, n: usize) -> DatasetInfo {
    DatasetInfo {
        name: name.into(),
        channel_names: channels.iter().map(|s| s.to_string()).collect(),
        num_labels_in_json: labels,
        num_training: n,
    }
}

fn arch(c: &Configuration) -> &crate::plans::ArchKwargs {
    &c.architecture.as_ref().unwrap().arch_kwargs
}

#[test]
fn example_a_hippocampus_like() {
    let fp = fingerprint([1.0, 1.0, 1.0], [36, 50, 35], 260, 1);
    let ds = info("Dataset004_Hippocampus", &["MRI"], 3, 260);
    let (plans, diag) = plan_experiment_detailed(&fp, &ds, &PlannerOptions::default()).unwrap();
    assert_eq!(plans.transpose_forward, vec![0, 1, 2]);
    let f = &plans.configurations["3d_fullres"];
    assert_eq!(f.patch_size, Some(vec![40, 56, 40]));
    assert_eq!(f.batch_size, Some(9));
    assert_eq!(arch(f).n_stages, 4);
    assert_eq!(arch(f).strides, vec![vec![1, 1, 1], vec![2, 2, 2], vec![2, 2, 2], vec![2, 2, 2]]);
    assert!(arch(f).kernel_sizes.iter().all(|k| k == &vec![3, 3, 3]));
    assert_eq!(arch(f).features_per_stage, vec![32, 64, 128, 256]);
    assert_eq!(diag["3d_fullres"].vram_estimate, 19_174_400);
    assert_eq!(diag["3d_fullres"].uncapped_batch_size, 58);
    assert_eq!(f.batch_dice, Some(false));
    assert!(!plans.configurations.contains_key("3d_lowres"));
    let d2 = &plans.configurations["2d"];
    assert_eq!(d2.patch_size, Some(vec![56, 40]));
    assert_eq!(d2.batch_size, Some(366));
    assert_eq!(diag["2d"].uncapped_batch_size, 1565);
    assert_eq!(d2.batch_dice, Some(true));
    assert_eq!(d2.data_identifier.as_deref(), Some("nnUNetPlans_2d"));
    assert_eq!(arch(d2).conv_op, "torch.nn.modules.conv.Conv2d");
    assert_eq!(arch(f).norm_op, "torch.nn.modules.instancenorm.InstanceNorm3d");
    assert_eq!(f.normalization_schemes, Some(vec!["ZScoreNormalization".to_string()]));
    assert_eq!(f.use_mask_for_norm, Some(vec![false]));
}

#[test]
fn example_b_prostate_like() {
    let fp = fingerprint([3.6, 0.625, 0.625], [20, 320, 319], 32, 2);
    let ds = info("Dataset005_Prostate", &["T2", "ADC"], 3, 32);
    let plans = plan_experiment(&fp, &ds, &PlannerOptions::default()).unwrap();
    let f = &plans.configurations["3d_fullres"];
    assert_eq!(f.patch_size, Some(vec![20, 320, 256]));
    assert_eq!(f.batch_size, Some(2));
    let a = arch(f);
    assert_eq!(a.n_stages, 7);
    assert_eq!(
        a.strides,
        vec![vec![1, 1, 1], vec![1, 2, 2], vec![1, 2, 2], vec![2, 2, 2], vec![2, 2, 2], vec![1, 2, 2], vec![1, 2, 2]]
    );
    let mut k = vec![vec![1, 3, 3]; 2];
    k.extend(vec![vec![3, 3, 3]; 5]);
    assert_eq!(a.kernel_sizes, k);
    assert_eq!(a.features_per_stage, vec![32, 64, 128, 256, 320, 320, 320]);
    let d2 = &plans.configurations["2d"];
    assert_eq!(d2.patch_size, Some(vec![320, 320]));
    assert_eq!(d2.batch_size, Some(32));
    assert_eq!(f.normalization_schemes.as_ref().unwrap().len(), 2);
}

#[test]
fn example_c_ct_like() {
    let fp = fingerprint([2.5, 0.8, 0.8], [180, 512, 512], 100, 1);
    let ds = info("Dataset999_CT", &["CT"], 14, 100);
    let (plans, diag) = plan_experiment_detailed(&fp, &ds, &PlannerOptions::default()).unwrap();
    let f = &plans.configurations["3d_fullres"];
    assert_eq!(f.patch_size, Some(vec![64, 192, 160]));
    assert_eq!(f.batch_size, Some(2));
    assert_eq!(arch(f).n_stages, 6);
    assert_eq!(f.normalization_schemes, Some(vec!["CTNormalization".to_string()]));
    let d2 = &plans.configurations["2d"];
    assert_eq!(d2.patch_size, Some(vec![512, 512]));
    assert_eq!(d2.batch_size, Some(12));
    assert_eq!(arch(d2).n_stages, 8);
    let l = &plans.configurations["3d_lowres"];
    assert_eq!(diag["3d_lowres"].lowres_steps, 24);
    // 16 in-plane-only steps, then 8 steps on every axis.
    let sp = l.spacing.as_ref().unwrap();
    let want = [2.5 * 1.03f64.powi(8), 0.8 * 1.03f64.powi(24), 0.8 * 1.03f64.powi(24)];
    for (s, w) in sp.iter().zip(want) {
        assert!((s - w).abs() < 1e-9, "{sp:?}");
    }
    assert!((sp[0] - 3.17).abs() < 0.01 && (sp[1] - 1.63).abs() < 0.01);
    assert_eq!(l.median_image_size_in_voxels, Some(vec![142.0, 252.0, 252.0]));
    assert_eq!(l.patch_size, Some(vec![96, 160, 160]));
    assert_eq!(l.batch_size, Some(2));
    assert_eq!(l.batch_dice, Some(false));
    assert_eq!(l.next_stage.as_deref(), Some("3d_cascade_fullres"));
    assert_eq!(f.batch_dice, Some(true));
    let c = &plans.configurations["3d_cascade_fullres"];
    assert_eq!(c.inherits_from.as_deref(), Some("3d_fullres"));
    assert_eq!(c.previous_stage.as_deref(), Some("3d_lowres"));
    let r = plans.configuration("3d_cascade_fullres").unwrap();
    assert_eq!(r.patch_size, vec![64, 192, 160]);
    assert_eq!(r.data_identifier, "nnUNetPlans_3d_fullres");
    assert_eq!(l.data_identifier.as_deref(), Some("nnUNetPlans_3d_lowres"));
}

#[test]
fn transpose_and_anisotropic_target_spacing() {
    // Low-resolution axis last in reader order: transposed to the front.
    let mut fp = fingerprint([0.7, 0.7, 5.0], [300, 300, 20], 10, 1);
    // 10th percentile rule: spacings along the worst axis vary.
    for (i, s) in fp.spacings.iter_mut().enumerate() {
        s[2] = 3.0 + i as f64 * 0.5;
    }
    let t = fullres_target_spacing(&fp, None);
    // median 5.25 > 3*0.7 and 20*3 < 300 → 10th percentile of [3.0..7.5] = 3.45.
    assert!((t[2] - 3.45).abs() < 1e-12, "{t:?}");
    let (tf, tb) = transpose_for_spacing(t, false);
    assert_eq!(tf, [2, 0, 1]);
    assert_eq!(tb, [1, 2, 0]);
    let ds = info("X", &["T1"], 2, 10);
    let p = plan_experiment(&fp, &ds, &PlannerOptions::default()).unwrap();
    assert_eq!(p.transpose_forward, vec![2, 0, 1]);
    let s = p.configurations["3d_fullres"].spacing.clone().unwrap();
    assert!((s[0] - 3.45).abs() < 1e-12 && s[1] == 0.7);
    // Percentile below the other axes → max(other) + 1e-5.
    let mut fp2 = fingerprint([0.7, 0.7, 5.0], [300, 300, 20], 10, 1);
    fp2.spacings[0][2] = 0.1;
    fp2.spacings[1][2] = 0.1;
    let t2 = fullres_target_spacing(&fp2, None);
    assert!((t2[2] - (0.7 + 1e-5)).abs() < 1e-12, "{t2:?}");
    // Override wins.
    assert_eq!(fullres_target_spacing(&fp, Some([1.0, 2.0, 3.0])), [1.0, 2.0, 3.0]);
}

#[test]
fn options_filter_override_and_resenc() {
    let fp = fingerprint([1.0, 1.0, 1.0], [36, 50, 35], 260, 1);
    let ds = info("D", &["MRI"], 3, 260);
    let opts = PlannerOptions { configurations: vec!["2d".into()], ..Default::default() };
    let p = plan_experiment(&fp, &ds, &opts).unwrap();
    assert_eq!(p.configurations.keys().collect::<Vec<_>>(), vec!["2d"]);
    let opts = PlannerOptions { configurations: vec!["3d_lowres".into()], ..Default::default() };
    assert!(matches!(plan_experiment(&fp, &ds, &opts), Err(PlanError::NotApplicable(..))));
    let opts = PlannerOptions { configurations: vec!["4d".into()], ..Default::default() };
    assert!(matches!(plan_experiment(&fp, &ds, &opts), Err(PlanError::UnknownConfiguration(_))));

    let mut ov = BTreeMap::new();
    ov.insert("3d_fullres".to_string(), vec![32, 48, 30]);
    let opts = PlannerOptions { patch_size_override: Some(ov), plans_name: Some("Mine".into()), ..Default::default() };
    let p = plan_experiment(&fp, &ds, &opts).unwrap();
    assert_eq!(p.configurations["3d_fullres"].patch_size, Some(vec![32, 48, 32]));
    assert_eq!(p.plans_name, "Mine");
    assert_eq!(p.configurations["2d"].data_identifier.as_deref(), Some("Mine_2d"));

    let p = plan_experiment(&fp, &ds, &PlannerOptions::for_planner(PlannerKind::ResEncL)).unwrap();
    let f = &p.configurations["3d_fullres"];
    let a = arch(f);
    assert!(f.architecture.as_ref().unwrap().is_residual_encoder());
    assert_eq!(a.n_blocks_per_stage.as_deref(), Some(&[1i64, 3, 4, 6][..]));
    assert_eq!(a.n_conv_per_stage, None);
    assert_eq!(a.n_conv_per_stage_decoder, vec![1, 1, 1]);
    // No 5% cap for the presets: the batch size is VRAM-driven.
    assert!(f.batch_size.unwrap() > 9);
    assert_eq!(f.data_identifier.as_deref(), Some("nnUNetPlans_3d_fullres"));
    assert_eq!(p.plans_name, "nnUNetResEncUNetLPlans");
    assert_eq!(p.experiment_planner_used, "nnUNetPlannerResEncL");
}

#[test]
fn use_mask_for_norm_rule() {
    let mut fp = fingerprint([1.0, 1.0, 1.0], [100, 120, 100], 20, 2);
    fp.median_relative_size_after_cropping = 0.6;
    let ds = info("BraTS-like", &["FLAIR", "CT"], 4, 20);
    let p = plan_experiment(&fp, &ds, &PlannerOptions::default()).unwrap();
    let f = &p.configurations["3d_fullres"];
    assert_eq!(f.use_mask_for_norm, Some(vec![true, false]));
    assert_eq!(f.normalization_schemes, Some(vec!["ZScoreNormalization".to_string(), "CTNormalization".to_string()]));
}

#[test]
fn two_d_dataset_gets_only_2d() {
    let fp = fingerprint([999.0, 1.0, 1.0], [1, 256, 256], 50, 3);
    let ds = info("Natural", &["R", "G", "B"], 2, 50);
    let p = plan_experiment(&fp, &ds, &PlannerOptions::default()).unwrap();
    assert_eq!(p.configurations.keys().collect::<Vec<_>>(), vec!["2d"]);
    let err = plan_experiment(&fp, &info("N", &["R"], 2, 50), &PlannerOptions::default());
    assert!(matches!(err, Err(PlanError::ChannelMismatch { .. })));
}

/// Compares two JSON values, numbers numerically (nnU-Net writes ints where we write floats).
fn json_diff(path: &str, ours: &Value, theirs: &Value, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            if (a - b).abs() > 1e-9 * a.abs().max(1.0) {
                out.push(format!("{path}: ours {a} vs peer {b}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{path}: length {} vs {}", a.len(), b.len()));
                return;
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys()) {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => json_diff(&format!("{path}.{k}"), x, y, out),
                    (x, y) => {
                        if x.is_some() != y.is_some() && !out.iter().any(|s| s.starts_with(&format!("{path}.{k}:"))) {
                            out.push(format!("{path}.{k}: present ours={} peer={}", x.is_some(), y.is_some()));
                        }
                    }
                }
            }
        }
        (a, b) => {
            if a != b {
                out.push(format!("{path}: ours {a} vs peer {b}"));
            }
        }
    }
}

#[test]
fn matches_peer_hippocampus_plans() {
    let home = std::env::var("HOME").unwrap_or_default();
    let dir = std::path::Path::new(&home).join(".cache/nnunet-peer/pre/Dataset004_Hippocampus");
    let (Ok(plans_text), Ok(fp_text), Ok(ds_text)) = (
        std::fs::read_to_string(dir.join("nnUNetPlans.json")),
        std::fs::read_to_string(dir.join("dataset_fingerprint.json")),
        std::fs::read_to_string(dir.join("dataset.json")),
    ) else {
        return nnunet_io::testing::skip(&format!(
            "peer plans for Dataset004_Hippocampus not found under {}",
            dir.display()
        ));
    };
    let peer: Value = serde_json::from_str(&plans_text).unwrap();
    let fp: DatasetFingerprint = serde_json::from_str(&fp_text).unwrap();
    let dsj: Value = serde_json::from_str(&ds_text).unwrap();
    let ds = DatasetInfo {
        name: "Dataset004_Hippocampus".into(),
        channel_names: dsj["channel_names"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        num_labels_in_json: dsj["labels"].as_object().unwrap().len(),
        num_training: dsj["numTraining"].as_u64().unwrap() as usize,
    };
    let ours = serde_json::to_value(plan_experiment(&fp, &ds, &PlannerOptions::default()).unwrap()).unwrap();
    let mut diffs = Vec::new();
    for c in ["2d", "3d_fullres"] {
        json_diff(c, &ours["configurations"][c], &peer["configurations"][c], &mut diffs);
    }
    for k in [
        "dataset_name",
        "plans_name",
        "original_median_spacing_after_transp",
        "original_median_shape_after_transp",
        "image_reader_writer",
        "transpose_forward",
        "transpose_backward",
        "experiment_planner_used",
        "label_manager",
        "foreground_intensity_properties_per_channel",
    ] {
        json_diff(k, &ours[k], &peer[k], &mut diffs);
    }
    let ours_keys: Vec<&String> = ours["configurations"].as_object().unwrap().keys().collect();
    let peer_keys: Vec<&String> = peer["configurations"].as_object().unwrap().keys().collect();
    let mut a = ours_keys.clone();
    let mut b = peer_keys.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "configuration sets differ");
    assert!(diffs.is_empty(), "differences from the peer plans:\n{}", diffs.join("\n"));
}

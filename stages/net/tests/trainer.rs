//! Fold trainer on a synthetic in-memory task: the loss decreases, checkpoints are written in
//! the inference contract's format, and a stopped run resumes exactly where it left off.

use nnunet_io::rng::Rng;
use nnunet_net::checkpoint::{self, latest_epoch, load_network};
use nnunet_net::loss::LabelMode;
use nnunet_net::sampler::{MemoryCase, PatchSource};
use nnunet_net::trainer::{train_fold, EpochRecord, FoldCases, TrainOptions};
use nnunet_prep::plans::{ArchKwargs, Architecture, ResamplingKwargs, ResolvedConfiguration};
use serde_json::json;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

fn arch(features: &[i64], nd: usize) -> Architecture {
    let n = features.len();
    let k = vec![3i64; nd];
    let strides: Vec<Vec<i64>> = (0..n).map(|s| vec![if s == 0 { 1 } else { 2 }; nd]).collect();
    Architecture {
        network_class_name: "dynamic_network_architectures.architectures.unet.PlainConvUNet".into(),
        arch_kwargs: ArchKwargs {
            n_stages: n,
            features_per_stage: features.to_vec(),
            conv_op: "torch.nn.modules.conv.Conv3d".into(),
            kernel_sizes: vec![k; n],
            strides,
            n_conv_per_stage: Some(vec![2; n]),
            n_blocks_per_stage: None,
            n_conv_per_stage_decoder: vec![2; n - 1],
            conv_bias: true,
            norm_op: "torch.nn.modules.instancenorm.InstanceNorm3d".into(),
            norm_op_kwargs: json!({"eps": 1e-5, "affine": true}),
            dropout_op: None,
            dropout_op_kwargs: None,
            nonlin: "torch.nn.LeakyReLU".into(),
            nonlin_kwargs: json!({"inplace": true}),
        },
        kw_requires_import: vec![],
    }
}

fn config(patch: &[usize], bs: usize) -> ResolvedConfiguration {
    let rk = ResamplingKwargs { is_seg: false, order: 3, order_z: 0, force_separate_z: None };
    ResolvedConfiguration {
        name: if patch.len() == 2 { "2d".into() } else { "3d_fullres".into() },
        data_identifier: "test".into(),
        batch_size: bs,
        patch_size: patch.to_vec(),
        median_image_size_in_voxels: vec![16.0; 3],
        spacing: vec![1.0; patch.len()],
        normalization_schemes: vec!["ZScoreNormalization".into()],
        use_mask_for_norm: vec![false],
        resampling_data: rk.clone(),
        resampling_seg: rk.clone(),
        resampling_probabilities: rk,
        architecture: arch(&[4, 8, 16], patch.len()),
        batch_dice: false,
        previous_stage: None,
        next_stage: None,
    }
}

/// Bright spheres (label 1) on noise.
fn cases(n: usize, seed: u64) -> Vec<Arc<dyn PatchSource>> {
    let s = [16usize, 20, 20];
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|k| {
            let c = [rng.uniform(5.0, 11.0), rng.uniform(6.0, 14.0), rng.uniform(6.0, 14.0)];
            let r = rng.uniform(3.0, 5.0);
            let mut data = Vec::with_capacity(s.iter().product());
            let mut seg = Vec::with_capacity(s.iter().product());
            for z in 0..s[0] {
                for y in 0..s[1] {
                    for x in 0..s[2] {
                        let d =
                            ((z as f64 - c[0]).powi(2) + (y as f64 - c[1]).powi(2) + (x as f64 - c[2]).powi(2)).sqrt();
                        let inside = d < r;
                        seg.push(i16::from(inside));
                        data.push(if inside { 1.0 } else { -0.5 } + 0.3 * rng.normal() as f32);
                    }
                }
            }
            Arc::new(MemoryCase::new(&format!("case_{k}"), data, seg, 1, s)) as Arc<dyn PatchSource>
        })
        .collect()
}

fn opts(epochs: usize) -> TrainOptions {
    TrainOptions {
        epochs,
        iterations_per_epoch: 8,
        val_iterations: 2,
        save_every: 1,
        workers: 1,
        torch_threads: 1,
        seed: 3,
        ..TrainOptions::default()
    }
}

fn mode() -> LabelMode {
    LabelMode::Labels { num_classes: 2, ignore: None }
}

#[test]
fn loss_decreases_and_checkpoints_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[16, 16, 16], 2);
    let mut seen = 0;
    let mut cb = |r: &[EpochRecord]| -> Result<bool, String> {
        seen = r.len();
        Ok(true)
    };
    let o = train_fold(
        &opts(4),
        &cfg,
        FoldCases { mode: mode(), names: vec!["sphere".into()], train: cases(4, 1), val: cases(2, 2) },
        dir.path(),
        &mut cb,
    )
    .unwrap();
    assert_eq!(seen, 4);
    assert!(o.finished && !o.cancelled);
    let recs: Vec<EpochRecord> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("log.json")).unwrap()).unwrap();
    assert_eq!(recs.len(), 4);
    assert!(recs[3].train_loss < recs[0].train_loss, "{:?}", recs.iter().map(|r| r.train_loss).collect::<Vec<_>>());
    assert_eq!(recs[0].pseudo_dice[0].0, "sphere");
    assert!(recs.iter().all(|r| r.lr > 0.0 && r.epoch_seconds > 0.0));
    // Poly LR.
    assert!((recs[1].lr - 1e-2 * 0.75f64.powf(0.9)).abs() < 1e-12);
    assert!(dir.path().join("progress.svg").is_file());
    for ck in [checkpoint::FINAL, checkpoint::BEST, checkpoint::LATEST] {
        assert!(dir.path().join(ck).join("model.safetensors").is_file(), "{ck}");
    }
    // The inference side loads the final checkpoint with deep supervision off.
    let (_vs, net, meta) = load_network(&dir.path().join(checkpoint::FINAL), &cfg.architecture, Device::Cpu).unwrap();
    assert_eq!((meta.in_channels, meta.num_classes, meta.epoch), (1, 2, 3));
    assert_eq!(meta.inference_allowed_mirroring_axes, Some(vec![0, 1, 2]));
    let y = tch::no_grad(|| {
        tch::nn::ModuleT::forward_t(&net, &Tensor::zeros([1, 1, 16, 16, 16], (Kind::Float, Device::Cpu)), false)
    });
    assert_eq!(y.size(), vec![1, 2, 16, 16, 16]);
    // A second call finds the run complete and does not train again.
    let o2 = train_fold(
        &opts(4),
        &cfg,
        FoldCases { mode: mode(), names: vec!["sphere".into()], train: cases(4, 1), val: cases(2, 2) },
        dir.path(),
        &mut |_: &[EpochRecord]| -> Result<bool, String> { panic!("trained again") },
    )
    .unwrap();
    assert_eq!(o2.epochs_completed, 4);
}

fn weights(dir: &std::path::Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(dir.join("model.safetensors")).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn stopped_run_resumes_with_the_same_state() {
    let cfg = config(&[16, 16, 16], 2);
    let names = vec!["sphere".to_string()];
    // A: stops after 2 of 4 epochs (the callback's "cancel").
    let a = tempfile::tempdir().unwrap();
    let mut stop = |r: &[EpochRecord]| -> Result<bool, String> { Ok(r.len() < 2) };
    let oa = train_fold(
        &opts(4),
        &cfg,
        FoldCases { mode: mode(), names: names.clone(), train: cases(4, 1), val: cases(2, 2) },
        a.path(),
        &mut stop,
    )
    .unwrap();
    assert!(oa.cancelled && !oa.finished);
    assert_eq!(latest_epoch(a.path()), Some(2));
    assert!(!a.path().join(checkpoint::FINAL).exists());
    // Momentum buffers are part of checkpoint_latest.
    let opt_state = Tensor::read_safetensors(a.path().join(checkpoint::LATEST).join("optimizer.safetensors")).unwrap();
    assert!(opt_state.len() > 10 && opt_state.iter().all(|(k, _)| k.starts_with("buf1/")));
    // B: same folder, resumes at epoch 2.
    let mut first_seen = None;
    let mut cb = |r: &[EpochRecord]| -> Result<bool, String> {
        first_seen.get_or_insert(r.last().unwrap().epoch);
        Ok(true)
    };
    let ob = train_fold(
        &opts(4),
        &cfg,
        FoldCases { mode: mode(), names: names.clone(), train: cases(4, 1), val: cases(2, 2) },
        a.path(),
        &mut cb,
    )
    .unwrap();
    assert_eq!(ob.resumed_from, Some(2));
    assert_eq!(first_seen, Some(2));
    assert!(ob.finished);
    // C: uninterrupted run; B ends with the same weights and losses.
    let c = tempfile::tempdir().unwrap();
    let oc = train_fold(
        &opts(4),
        &cfg,
        FoldCases { mode: mode(), names: names, train: cases(4, 1), val: cases(2, 2) },
        c.path(),
        &mut |_: &[EpochRecord]| -> Result<bool, String> { Ok(true) },
    )
    .unwrap();
    let la: Vec<EpochRecord> =
        serde_json::from_str(&std::fs::read_to_string(a.path().join("log.json")).unwrap()).unwrap();
    let lcc: Vec<EpochRecord> =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("log.json")).unwrap()).unwrap();
    // The first two epochs of A equal C's (same seed, same batches).
    for e in 0..2 {
        assert_eq!(la[e].train_loss, lcc[e].train_loss);
    }
    let (lb, lc) = (ob.last.unwrap(), oc.last.unwrap());
    assert!((lb.train_loss - lc.train_loss).abs() < 1e-4, "{} vs {}", lb.train_loss, lc.train_loss);
    let (wb, wc) = (weights(&a.path().join(checkpoint::FINAL)), weights(&c.path().join(checkpoint::FINAL)));
    assert_eq!(wb.len(), wc.len());
    for ((kb, tb), (kc, tc)) in wb.iter().zip(&wc) {
        assert_eq!(kb, kc);
        let d = (tb - tc).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{kb}: {d}");
    }
}

#[test]
fn two_d_configuration_trains_on_slices() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[16, 16], 4);
    let mut o = opts(1);
    o.iterations_per_epoch = 3;
    o.net.deep_supervision = false;
    // The engine's callback shape: a closure returning anyhow::Result<bool>.
    let mut on_epoch = |records: &[EpochRecord]| -> anyhow::Result<bool> {
        anyhow::ensure!(!records.is_empty(), "no records");
        Ok(true)
    };
    let out = train_fold(
        &o,
        &cfg,
        FoldCases { mode: mode(), names: vec!["sphere".into()], train: cases(3, 5), val: vec![] },
        dir.path(),
        &mut on_epoch,
    )
    .unwrap();
    assert!(out.finished);
    assert_eq!(out.initial_patch_size.len(), 2);
    let (_vs, net, meta) = load_network(&dir.path().join(checkpoint::FINAL), &cfg.architecture, Device::Cpu).unwrap();
    assert_eq!(meta.inference_allowed_mirroring_axes, Some(vec![0, 1]));
    let y = tch::no_grad(|| {
        tch::nn::ModuleT::forward_t(&net, &Tensor::zeros([2, 1, 16, 16], (Kind::Float, Device::Cpu)), false)
    });
    assert_eq!(y.size(), vec![2, 2, 16, 16]);
}

#[test]
fn adam_with_regions_and_ignore_label() {
    // Labels: 1 = sphere, 2 = its core, 3 = ignore (a slab nobody annotated).
    let raw = cases(3, 9);
    let s = [16usize, 20, 20];
    let cases: Vec<Arc<dyn PatchSource>> = raw
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let (d, mut g) = c.read_patch([0, 0, 0], s).unwrap();
            for (i, v) in g.iter_mut().enumerate() {
                let z = i / (s[1] * s[2]);
                if z < 2 {
                    *v = 3;
                } else if *v == 1 && (i % 7 == 0) {
                    *v = 2;
                }
            }
            Arc::new(MemoryCase::new(&format!("r{k}"), d, g, 1, s)) as Arc<dyn PatchSource>
        })
        .collect();
    let mode = LabelMode::Regions { regions: vec![vec![1, 2], vec![2]], ignore: Some(3) };
    let cfg = config(&[16, 16, 16], 2);
    let mut o = opts(2);
    o.optimizer = nnunet_net::trainer::OptimizerKind::AdamPlateau;
    o.iterations_per_epoch = 3;
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["whole".to_string(), "core".to_string()];
    let mut cb = |r: &[EpochRecord]| -> Result<bool, String> { Ok(r.is_empty()) };
    let out = train_fold(
        &o,
        &cfg,
        FoldCases { mode: mode.clone(), names: names.clone(), train: cases.clone(), val: vec![] },
        dir.path(),
        &mut cb,
    )
    .unwrap();
    assert!(out.cancelled);
    let rec = out.last.unwrap();
    assert_eq!(rec.pseudo_dice.len(), 2);
    assert!((rec.lr - 3e-4).abs() < 1e-15);
    assert!(rec.train_loss.is_finite() && rec.val_loss.is_finite());
    // Resume restores the Adam state (a kind mismatch would be an error).
    let out = train_fold(
        &o,
        &cfg,
        FoldCases { mode: mode.clone(), names: names.clone(), train: cases.clone(), val: vec![] },
        dir.path(),
        &mut |_: &[EpochRecord]| -> Result<bool, String> { Ok(true) },
    )
    .unwrap();
    assert_eq!(out.resumed_from, Some(1));
    assert!(out.finished);
    let mut sgd = o.clone();
    sgd.optimizer = nnunet_net::trainer::OptimizerKind::SgdNesterov;
    sgd.epochs = 3;
    let err = train_fold(
        &sgd,
        &cfg,
        FoldCases { mode: mode, names: names, train: cases, val: vec![] },
        dir.path(),
        &mut |_: &[EpochRecord]| -> Result<bool, String> { Ok(true) },
    );
    assert!(err.is_err());
}

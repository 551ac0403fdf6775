//! Tile positions and the Gaussian map against nnU-Net's own functions (fixture generated
//! by tests/fixtures/gen_sliding_window.py in the peer venv), and sliding-window prediction
//! with tiny networks.

mod common;

use common::*;
use nnunet_infer::sliding_window::*;
use nnunet_infer::SegNetwork;
use tch::{Kind, Tensor};

fn fixture() -> serde_json::Value {
    let p = std::path::PathBuf::from(nnunet_io::testing::manifest_dir()).join("tests/fixtures/sliding_window.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn tile_positions_match_nnunet() {
    let f = fixture();
    let steps = f["steps"].as_array().unwrap();
    assert!(steps.len() > 500);
    for s in steps {
        let (size, patch, step) =
            (s["size"].as_u64().unwrap() as usize, s["patch"].as_u64().unwrap() as usize, s["step"].as_f64().unwrap());
        let want: Vec<usize> =
            s["positions"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(compute_steps(size, patch, step), want, "S={size} P={patch} t={step}");
    }
}

#[test]
fn gaussian_map_matches_nnunet_bit_for_bit() {
    let f = fixture();
    for m in f["gaussian"].as_array().unwrap() {
        let patch: Vec<usize> = m["patch"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let stride = m["stride"].as_u64().unwrap() as usize;
        let want: Vec<u16> = m["bits"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u16).collect();
        let g = gaussian_importance_map(&patch, 1.0 / 8.0, 10.0);
        let got: Vec<u16> = g.iter().step_by(stride).map(|&v| f32_to_f16_bits(v)).collect();
        assert_eq!(got.len(), want.len(), "{patch:?}");
        let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(bad, 0, "{patch:?}: {bad} of {} values differ", want.len());
        let sum: f64 = g.iter().map(|&v| v as f64).sum();
        assert!((sum - m["sum"].as_f64().unwrap()).abs() < 1e-6 * sum, "{patch:?} sum");
        assert_eq!(g.iter().cloned().fold(0.0f32, f32::max), 10.0);
    }
}

fn nets(v: &[Box<dyn SegNetwork>]) -> Vec<&dyn SegNetwork> {
    v.iter().map(|n| n.as_ref()).collect()
}

#[test]
fn pointwise_network_is_reproduced_across_overlapping_tiles() {
    // 2 channels in, 3 out; image larger than the patch on every axis (several tiles).
    let net: Vec<Box<dyn SegNetwork>> =
        vec![Box::new(Pointwise::new(&[vec![1.0, -0.5], vec![0.3, 2.0], vec![-1.0, 0.25]], &[0.1, -0.2, 0.3]))];
    let x = rand_tensor(1, &[2, 11, 13, 9]);
    let whole = nets(&net)[0].forward(&x.unsqueeze(0)).squeeze_dim(0);
    for (tiles_per_batch, batch_mirrors, axes) in [(1, false, vec![]), (3, false, vec![0, 2]), (2, true, vec![0, 1, 2])]
    {
        let opts =
            SlidingWindowOptions { tiles_per_batch, batch_mirrors, mirror_axes: axes.clone(), ..Default::default() };
        let out = predict_sliding_window(&nets(&net), &x, &[6, 8, 5], 3, &opts, &|_, _| {}).unwrap();
        assert_eq!(out.size(), vec![3, 11, 13, 9]);
        let d = max_abs_diff(&out, &whole);
        assert!(d < 1e-5, "batch {tiles_per_batch} mirrors {axes:?}: {d}");
    }
    // f16 accumulation (nnU-Net's choice) stays close except where only subnormal Gaussian
    // weights reach (image corners), which fp16 quantises coarsely.
    let opts = SlidingWindowOptions { accumulation: Accumulation::F16, ..Default::default() };
    let out = predict_sliding_window(&nets(&net), &x, &[6, 8, 5], 3, &opts, &|_, _| {}).unwrap();
    let scale = whole.abs().max().double_value(&[]);
    let off = (&out - &whole).abs().gt(1e-2 * scale).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!(off < 0.05, "f16: {off} of the voxels are off by > 1%");
}

#[test]
fn image_smaller_than_patch_is_padded_and_unpadded() {
    let net = vec![random_convnet(3, 1, 2, 3)];
    let x = rand_tensor(2, &[1, 5, 6, 7]);
    let out =
        predict_sliding_window(&nets(&net), &x, &[8, 8, 8], 2, &SlidingWindowOptions::default(), &|_, _| {}).unwrap();
    assert_eq!(out.size(), vec![2, 5, 6, 7]);
    // equals the network on the zero-padded image (pad lo = diff // 2), cropped back
    let padded = x.constant_pad_nd([0i64, 1, 1, 1, 1, 2]);
    let want = net[0].forward(&padded.unsqueeze(0)).squeeze_dim(0).narrow(1, 1, 5).narrow(2, 1, 6).narrow(3, 0, 7);
    assert!(max_abs_diff(&out, &want) < 1e-5);
}

#[test]
fn mirroring_averages_all_flips() {
    let net = vec![random_convnet(5, 1, 2, 3)];
    let x = rand_tensor(4, &[1, 6, 6, 6]);
    let opts = SlidingWindowOptions { mirror_axes: vec![0, 1, 2], ..Default::default() };
    let out = predict_sliding_window(&nets(&net), &x, &[6, 6, 6], 2, &opts, &|_, _| {}).unwrap();
    let xb = x.unsqueeze(0);
    let mut sum = net[0].forward(&xb);
    for axes in mirror_combinations(&[0, 1, 2]) {
        let d: Vec<i64> = axes.iter().map(|&a| a as i64 + 2).collect();
        sum += net[0].forward(&xb.flip(d.as_slice())).flip(d.as_slice());
    }
    let want = (sum / 8.0).squeeze_dim(0);
    assert!(max_abs_diff(&out, &want) < 1e-5);
    let plain =
        predict_sliding_window(&nets(&net), &x, &[6, 6, 6], 2, &SlidingWindowOptions::default(), &|_, _| {}).unwrap();
    assert!(max_abs_diff(&out, &plain) > 1e-3, "a random conv net is not flip invariant");
}

#[test]
fn folds_are_averaged_and_2d_runs_per_slice() {
    let a: Box<dyn SegNetwork> = Box::new(Pointwise::new(&[vec![1.0], vec![-1.0]], &[0.0, 0.5]));
    let b: Box<dyn SegNetwork> = Box::new(Pointwise::new(&[vec![3.0], vec![1.0]], &[1.0, -0.5]));
    let x = rand_tensor(6, &[1, 4, 9, 7]);
    let both = vec![a, b];
    // 2D patch on a 3D image: every z slice is tiled in-plane.
    let out = predict_sliding_window(
        &nets(&both),
        &x,
        &[5, 4],
        2,
        &SlidingWindowOptions { mirror_axes: vec![0, 1], ..Default::default() },
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(out.size(), vec![2, 4, 9, 7]);
    let x2 = x.permute([1, 0, 2, 3]); // z as batch: [Z, C, Y, X]
    let want = ((both[0].forward(&x2) + both[1].forward(&x2)) / 2.0).permute([1, 0, 2, 3]);
    assert!(max_abs_diff(&out, &want) < 1e-5);
    // A 2D patch larger than the slice pads in-plane only.
    let out =
        predict_sliding_window(&nets(&both), &x, &[12, 8], 2, &SlidingWindowOptions::default(), &|_, _| {}).unwrap();
    assert!(max_abs_diff(&out, &want) < 1e-5);
    assert_eq!(out.kind(), Kind::Float);
    let _ = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
}

#[test]
fn bad_options_are_errors() {
    let net = vec![random_convnet(3, 1, 2, 3)];
    let x = rand_tensor(2, &[1, 5, 6, 7]);
    let o = SlidingWindowOptions { mirror_axes: vec![3], ..Default::default() };
    assert!(predict_sliding_window(&nets(&net), &x, &[4, 4, 4], 2, &o, &|_, _| {}).is_err());
    let o = SlidingWindowOptions { tile_step_size: 0.0, ..Default::default() };
    assert!(predict_sliding_window(&nets(&net), &x, &[4, 4, 4], 2, &o, &|_, _| {}).is_err());
    // wrong number of outputs
    assert!(
        predict_sliding_window(&nets(&net), &x, &[4, 4, 4], 3, &SlidingWindowOptions::default(), &|_, _| {}).is_err()
    );
}

/// The accumulation as written before the logits moved to host buffers: device tensors,
/// `acc += p·g`, `w += g`, `acc /= w`, un-padding by narrowing.
fn reference_sliding_window(net: &dyn SegNetwork, x: &Tensor, patch: &[usize], k: i64, axes: &[usize]) -> Tensor {
    let _g = tch::no_grad_guard();
    let s = x.size();
    let pad = Padding::to_min_shape(&[s[1] as usize, s[2] as usize, s[3] as usize], patch);
    let p: Vec<i64> = (0..3).rev().flat_map(|a| [pad.lo[a] as i64, pad.hi[a] as i64]).collect();
    let xp = x.constant_pad_nd(p.as_slice());
    let ps: Vec<usize> = xp.size()[1..].iter().map(|&v| v as usize).collect();
    let mut acc = Tensor::zeros([k, ps[0] as i64, ps[1] as i64, ps[2] as i64], (Kind::Float, tch::Device::Cpu));
    let w = Tensor::zeros([ps[0] as i64, ps[1] as i64, ps[2] as i64], (Kind::Float, tch::Device::Cpu));
    let t3 = [patch[0] as i64, patch[1] as i64, patch[2] as i64];
    let g = Tensor::from_slice(&gaussian_importance_map(patch, 1.0 / 8.0, 10.0)).view(t3);
    let combos: Vec<Vec<i64>> =
        mirror_combinations(axes).into_iter().map(|c| c.iter().map(|&a| a as i64 + 2).collect()).collect();
    let steps = compute_steps_nd(&ps, patch, 0.5);
    for &a in &steps[0] {
        for &b in &steps[1] {
            for &c in &steps[2] {
                let tile =
                    xp.narrow(1, a as i64, t3[0]).narrow(2, b as i64, t3[1]).narrow(3, c as i64, t3[2]).unsqueeze(0);
                let mut pred = net.forward(&tile);
                for d in &combos {
                    pred += net.forward(&tile.flip(d.as_slice())).flip(d.as_slice());
                }
                if !combos.is_empty() {
                    pred /= (combos.len() + 1) as f64;
                }
                let mut dst = acc.narrow(1, a as i64, t3[0]).narrow(2, b as i64, t3[1]).narrow(3, c as i64, t3[2]);
                dst += &(pred.get(0) * &g);
                let mut wd = w.narrow(0, a as i64, t3[0]).narrow(1, b as i64, t3[1]).narrow(2, c as i64, t3[2]);
                wd += &g;
            }
        }
    }
    acc /= &w;
    acc.narrow(1, pad.lo[0] as i64, s[1])
        .narrow(2, pad.lo[1] as i64, s[2])
        .narrow(3, pad.lo[2] as i64, s[3])
        .contiguous()
}

#[test]
fn host_accumulation_is_bit_identical_to_the_tensor_accumulation() {
    // The logits must not move by a bit: predictions stay those of earlier versions.
    let net = vec![random_convnet(21, 2, 3, 3)];
    for (shape, patch, axes) in [
        (vec![2i64, 11, 13, 9], vec![6usize, 8, 5], vec![]),
        (vec![2, 5, 6, 7], vec![8, 8, 8], vec![0, 2]),
        (vec![2, 9, 12, 10], vec![6, 6, 6], vec![0, 1, 2]),
    ] {
        let x = rand_tensor(7, &shape);
        let opts = SlidingWindowOptions { mirror_axes: axes.clone(), ..Default::default() };
        let got = predict_sliding_window(&nets(&net), &x, &patch, 3, &opts, &|_, _| {}).unwrap();
        let want = reference_sliding_window(net[0].as_ref(), &x, &patch, 3, &axes);
        assert!(got.equal(&want), "{shape:?} / {patch:?}: max diff {}", max_abs_diff(&got, &want));
        let l = predict_sliding_window_logits(&nets(&net), &x, &patch, 3, &opts, &|_, _| {}).unwrap();
        assert_eq!(l.shape, [shape[1] as usize, shape[2] as usize, shape[3] as usize]);
    }
}

//! Tiny networks and plans for the inference tests.
#![allow(dead_code)]

use nnunet_infer::SegNetwork;
use nnunet_prep::plans::Plans;
use tch::{nn, Device, Kind, Tensor};

/// `out[k] = Σ_c w[k][c]·x[c] + b[k]` per voxel (a 1×1(×1) convolution): translation and
/// flip equivariant, so a sliding window must reproduce a whole-image forward pass.
#[derive(Debug)]
pub struct Pointwise {
    pub w: Tensor,
    pub b: Tensor,
}

impl Pointwise {
    pub fn new(w: &[Vec<f32>], b: &[f32]) -> Pointwise {
        let k = w.len() as i64;
        let c = w[0].len() as i64;
        let flat: Vec<f32> = w.iter().flatten().copied().collect();
        Pointwise { w: Tensor::from_slice(&flat).view([k, c]), b: Tensor::from_slice(b) }
    }
}

impl nn::Module for Pointwise {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (k, c) = (self.w.size()[0], self.w.size()[1]);
        match x.dim() {
            5 => x.conv3d(&self.w.view([k, c, 1, 1, 1]), Some(&self.b), [1, 1, 1], [0, 0, 0], [1, 1, 1], 1),
            _ => x.conv2d(&self.w.view([k, c, 1, 1]), Some(&self.b), [1, 1], [0, 0], [1, 1], 1),
        }
    }
}

/// A randomly initialised 3×3(×3) two-layer conv net (seeded).
pub fn random_convnet(seed: i64, cin: i64, cout: i64, nd: usize) -> Box<dyn SegNetwork> {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = nn::ConvConfig { padding: 1, bs_init: nn::Init::Uniform { lo: -0.5, up: 0.5 }, ..Default::default() };
    let p = vs.root();
    if nd == 3 {
        Box::new(nn::seq().add(nn::conv3d(&p / "a", cin, 4, 3, cfg)).add_fn(|x| x.leaky_relu()).add(nn::conv3d(
            &p / "b",
            4,
            cout,
            3,
            cfg,
        )))
    } else {
        Box::new(nn::seq().add(nn::conv2d(&p / "a", cin, 4, 3, cfg)).add_fn(|x| x.leaky_relu()).add(nn::conv2d(
            &p / "b",
            4,
            cout,
            3,
            cfg,
        )))
    }
}

pub fn rand_tensor(seed: i64, shape: &[i64]) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// nnU-Net-style plans with a `3d_fullres` (and a `2d`) configuration.
pub fn plans(transpose_forward: [usize; 3], spacing3: [f64; 3], patch3: [usize; 3], patch2: [usize; 2]) -> Plans {
    let mut tb = [0usize; 3];
    for (i, &p) in transpose_forward.iter().enumerate() {
        tb[p] = i;
    }
    let kw = |is_seg: bool, order: u32| serde_json::json!({"is_seg": is_seg, "order": order, "order_z": 0, "force_separate_z": null});
    let arch = |nd: usize| {
        let k: Vec<usize> = vec![3; nd];
        serde_json::json!({
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 1, "features_per_stage": [4], "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": [k.clone()], "strides": [vec![1; nd]], "n_conv_per_stage": [1],
                "n_conv_per_stage_decoder": [], "conv_bias": true,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": true},
                "dropout_op": null, "dropout_op_kwargs": null, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]
        })
    };
    let cfg = |ident: &str, patch: Vec<usize>, spacing: Vec<f64>, nd: usize| {
        serde_json::json!({
            "data_identifier": ident, "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": patch, "median_image_size_in_voxels": vec![10.0; nd], "spacing": spacing,
            "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [false],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": kw(false, 3), "resampling_fn_seg_kwargs": kw(true, 1),
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": kw(false, 1),
            "architecture": arch(nd), "batch_dice": true
        })
    };
    let v = serde_json::json!({
        "dataset_name": "Dataset999_Test", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing3, "original_median_shape_after_transp": [10, 10, 10],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": transpose_forward, "transpose_backward": tb,
        "configurations": {
            "3d_fullres": cfg("nnUNetPlans_3d_fullres", patch3.to_vec(), spacing3.to_vec(), 3),
            "2d": cfg("nnUNetPlans_2d", patch2.to_vec(), spacing3[1..].to_vec(), 2),
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
        },
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {}
    });
    serde_json::from_value(v).expect("test plans")
}

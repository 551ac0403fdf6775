//! The dynamic U-Nets of nnU-Net v2 (§6): `PlainConvUNet` and `ResidualEncoderUNet`, built
//! from the plans' `arch_kwargs`, 2D or 3D, with anisotropic kernels and strides.
//!
//! - Encoder (plain, §6.1): per stage `n_conv_per_stage[s]` conv-norm-nonlin blocks, the first
//!   with stride `strides[s]` (strided convs, no pooling).
//! - Encoder (ResEnc, §6.2): a stem conv-norm-nonlin (`features[0]`, `kernel_sizes[0]`), then per
//!   stage `n_blocks_per_stage[s]` ResNet-D basic blocks.
//! - Decoder (both): per level, deep to shallow: transposed conv (kernel = stride of the level
//!   below), concat with the skip, `n_conv_per_stage_decoder` conv blocks with the skip level's
//!   kernel, a 1×1 segmentation head (with bias). Heads exist at every level (so weights load
//!   with deep supervision on or off); with deep supervision all `n_stages − 1` outputs are
//!   returned highest resolution first, otherwise only the full-resolution one.
//!
//! Variable names follow nnU-Net's module names (`encoder.stages.0.0.convs.0.conv.weight`,
//! `decoder.transpconvs.0.weight`, `decoder.seg_layers.3.bias`, ...).

use crate::blocks::{is_channels_last, BasicBlockD, BlockCfg, Conv, StackedConvs, TransposedConv};
pub use crate::blocks::{Nonlin, Norm};
use nnunet_prep::plans::{ArchKwargs, Architecture};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Ablation axes of the network (the original paper's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetOptions {
    pub norm: Norm,
    pub nonlin: Nonlin,
    pub deep_supervision: bool,
}

impl Default for NetOptions {
    /// nnU-Net v2: instance norm, LeakyReLU, deep supervision on.
    fn default() -> Self {
        NetOptions { norm: Norm::Instance, nonlin: Nonlin::LeakyRelu, deep_supervision: true }
    }
}

/// Errors in the architecture description.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("architecture: {0}")]
    Invalid(String),
}

enum Encoder {
    Plain(Vec<StackedConvs>),
    Residual { stem: StackedConvs, stages: Vec<Vec<BasicBlockD>> },
}

struct DecoderStage {
    transp: TransposedConv,
    convs: StackedConvs,
}

/// A U-Net (plain or residual encoder). `forward_t` returns the segmentation logits.
pub struct UNet {
    encoder: Encoder,
    decoder: Vec<DecoderStage>,
    seg_layers: Vec<Conv>,
    deep_supervision: bool,
    compute: Option<Kind>,
    ndim: usize,
    num_classes: i64,
}

impl std::fmt::Debug for UNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UNet")
            .field("ndim", &self.ndim)
            .field("stages", &(self.decoder.len() + 1))
            .field("num_classes", &self.num_classes)
            .field("deep_supervision", &self.deep_supervision)
            .finish()
    }
}

/// Checks the arch kwargs for consistency; returns the number of spatial dims.
pub fn validate_arch(a: &ArchKwargs) -> Result<usize, ArchError> {
    let bad = |m: String| Err(ArchError::Invalid(m));
    let n = a.n_stages;
    if n < 1 {
        return bad("n_stages must be at least 1".into());
    }
    if a.features_per_stage.len() != n || a.kernel_sizes.len() != n || a.strides.len() != n {
        return bad(format!(
            "n_stages {n} but {} features, {} kernel sizes, {} strides",
            a.features_per_stage.len(),
            a.kernel_sizes.len(),
            a.strides.len()
        ));
    }
    let nd = a.kernel_sizes[0].len();
    if !(nd == 2 || nd == 3) {
        return bad(format!("kernel sizes have {nd} axes; expected 2 or 3"));
    }
    if a.kernel_sizes.iter().chain(&a.strides).any(|v| v.len() != nd || v.iter().any(|&x| x < 1)) {
        return bad("every kernel size and stride needs one positive entry per axis".into());
    }
    if a.n_conv_per_stage_decoder.len() + 1 != n {
        return bad(format!(
            "n_conv_per_stage_decoder has {} entries, expected {}",
            a.n_conv_per_stage_decoder.len(),
            n - 1
        ));
    }
    if a.features_per_stage.iter().any(|&f| f < 1) {
        return bad("features_per_stage must be positive".into());
    }
    Ok(nd)
}

/// Builds the network of `arch` (PlainConvUNet or ResidualEncoderUNet) in `vs`.
///
/// Randomness: the weights come from libtorch's global generator; call `tch::manual_seed`
/// first for a reproducible initialisation.
///
/// Long (~95 lines) because it mirrors `dynamic_network_architectures`' constructors (encoder,
/// decoder, deep-supervision heads) in their order, so that parameter names and shapes match.
pub fn build_network(
    vs: &nn::Path,
    arch: &Architecture,
    in_channels: i64,
    num_classes: i64,
    opts: &NetOptions,
) -> Result<UNet, ArchError> {
    let a = &arch.arch_kwargs;
    let nd = validate_arch(a)?;
    let n = a.n_stages;
    let cfg = BlockCfg { norm: opts.norm, nonlin: opts.nonlin, conv_bias: a.conv_bias };
    let f = &a.features_per_stage;
    let enc = vs / "encoder";
    let encoder = if arch.is_residual_encoder() {
        let blocks = a
            .n_blocks_per_stage
            .as_ref()
            .ok_or_else(|| ArchError::Invalid("ResidualEncoderUNet needs n_blocks_per_stage".into()))?;
        if blocks.len() != n {
            return Err(ArchError::Invalid(format!("n_blocks_per_stage has {} entries, expected {n}", blocks.len())));
        }
        let ones = vec![1i64; nd];
        let stem = StackedConvs::new(&(&enc / "stem"), 1, in_channels, f[0], &a.kernel_sizes[0], &ones, &cfg);
        let mut cin = f[0];
        let mut stages = Vec::with_capacity(n);
        for s in 0..n {
            let p = &enc / "stages" / s / "blocks";
            let mut st = Vec::new();
            for b in 0..blocks[s].max(1) as usize {
                let stride = if b == 0 { a.strides[s].as_slice() } else { ones.as_slice() };
                st.push(BasicBlockD::new(&(&p / b), cin, f[s], &a.kernel_sizes[s], stride, &cfg));
                cin = f[s];
            }
            stages.push(st);
        }
        Encoder::Residual { stem, stages }
    } else {
        let convs = a.n_conv_per_stage.clone().unwrap_or_else(|| vec![2; n]);
        if convs.len() != n {
            return Err(ArchError::Invalid(format!("n_conv_per_stage has {} entries, expected {n}", convs.len())));
        }
        let mut cin = in_channels;
        let mut stages = Vec::with_capacity(n);
        for s in 0..n {
            let p = &enc / "stages" / s / 0;
            stages.push(StackedConvs::new(
                &p,
                convs[s].max(1) as usize,
                cin,
                f[s],
                &a.kernel_sizes[s],
                &a.strides[s],
                &cfg,
            ));
            cin = f[s];
        }
        Encoder::Plain(stages)
    };
    let dec = vs / "decoder";
    let mut decoder = Vec::with_capacity(n - 1);
    let mut seg_layers = Vec::with_capacity(n - 1);
    let ones = vec![1i64; nd];
    for s in 1..n {
        let below = f[n - s];
        let skip = f[n - s - 1];
        let transp =
            TransposedConv::new(&(&dec / "transpconvs" / (s - 1)), below, skip, &a.strides[n - s], a.conv_bias);
        let nconv = a.n_conv_per_stage_decoder[s - 1].max(1) as usize;
        let convs = StackedConvs::new(
            &(&dec / "stages" / (s - 1)),
            nconv,
            2 * skip,
            skip,
            &a.kernel_sizes[n - s - 1],
            &ones,
            &cfg,
        );
        decoder.push(DecoderStage { transp, convs });
        seg_layers.push(Conv::new(&(&dec / "seg_layers" / (s - 1)), skip, num_classes, &ones, &ones, true));
    }
    if n == 1 {
        // Degenerate single-stage net: a head directly on the encoder output.
        seg_layers.push(Conv::new(&(&dec / "seg_layers" / 0), f[0], num_classes, &ones, &ones, true));
    }
    Ok(UNet {
        encoder,
        decoder,
        seg_layers,
        deep_supervision: opts.deep_supervision,
        compute: None,
        ndim: nd,
        num_classes,
    })
}

static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`build_network`] with a reproducible initialisation: seeds libtorch's global generator
/// with `seed` and builds while holding a process-wide lock, so concurrent builds in other
/// threads cannot interleave their draws.
pub fn build_network_seeded(
    vs: &nn::Path,
    arch: &Architecture,
    in_channels: i64,
    num_classes: i64,
    opts: &NetOptions,
    seed: u64,
) -> Result<UNet, ArchError> {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed as i64);
    build_network(vs, arch, in_channels, num_classes, opts)
}

impl UNet {
    /// Runs the convolutions in `kind` (e.g. `Kind::BFloat16` on CUDA); `None` = f32.
    pub fn set_compute_kind(&mut self, kind: Option<Kind>) {
        self.compute = kind;
    }
    pub fn set_deep_supervision(&mut self, on: bool) {
        self.deep_supervision = on;
    }
    pub fn deep_supervision(&self) -> bool {
        self.deep_supervision
    }
    pub fn ndim(&self) -> usize {
        self.ndim
    }
    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    fn encode(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let c = self.compute;
        match &self.encoder {
            Encoder::Plain(stages) => {
                let mut skips = Vec::with_capacity(stages.len());
                let mut y = x.shallow_clone();
                for st in stages {
                    y = st.forward_owned(y, train, c);
                    skips.push(y.shallow_clone());
                }
                skips
            }
            Encoder::Residual { stem, stages } => {
                let mut y = stem.forward(x, train, c);
                let mut skips = Vec::with_capacity(stages.len());
                for st in stages {
                    for b in st {
                        y = b.forward(&y, train, c);
                    }
                    skips.push(y.shallow_clone());
                }
                skips
            }
        }
    }

    /// Logits. With deep supervision: `n_stages − 1` outputs, highest resolution first;
    /// without: one output at full resolution.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let c = self.compute;
        let skips = self.encode(x, train);
        let head = |i: usize, t: &Tensor| {
            let y = self.seg_layers[i].forward(t, c);
            if y.kind() != Kind::Float {
                y.to_kind(Kind::Float)
            } else {
                y
            }
        };
        if self.decoder.is_empty() {
            return vec![head(0, &skips[0])];
        }
        // Skips are taken out of the list as the decoder consumes them, so each full-size
        // feature map is released once read (inference memory; no effect on the values).
        let mut skips = skips;
        let mut lres = skips.pop().expect("an encoder stage");
        let mut outs = Vec::new();
        let last = self.decoder.len() - 1;
        for (s, st) in self.decoder.iter().enumerate() {
            let skip = skips.pop().expect("a skip per decoder stage");
            let cat = concat_up_skip(&st.transp, lres, skip, c);
            let y = st.convs.forward_owned(cat, train, c);
            if self.deep_supervision || s == last {
                outs.push(head(s, &y));
            }
            lres = y;
        }
        outs.reverse();
        outs
    }
}

/// `cat([transp(lres), skip], 1)`. Without gradients the concatenation buffer is allocated
/// first (in the skip's layout, see [`crate::blocks::to_channels_last`]) and filled piece by piece, releasing
/// the skip before the upsampled map exists: two inputs and the output are never alive
/// together (3 full-size maps at the peak instead of 4).
fn concat_up_skip(transp: &TransposedConv, lres: Tensor, skip: Tensor, compute: Option<Kind>) -> Tensor {
    if lres.requires_grad() || skip.requires_grad() || skip.kind() != Kind::Float {
        let up = transp.forward(&lres, compute);
        return Tensor::cat(&[up, skip], 1);
    }
    let mut size = skip.size();
    let f = size[1];
    size[1] = 2 * f;
    let cat = if is_channels_last(&skip) {
        Tensor::empty([size[0], size[2], size[3], size[4], size[1]], (Kind::Float, skip.device()))
            .permute([0, 4, 1, 2, 3])
    } else {
        Tensor::empty(size.as_slice(), (Kind::Float, skip.device()))
    };
    cat.narrow(1, f, f).copy_(&skip);
    drop(skip);
    let up = transp.forward(&lres, compute);
    drop(lres);
    cat.narrow(1, 0, f).copy_(&up);
    cat
}

/// Full-resolution logits only (what inference uses).
impl nn::ModuleT for UNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        UNet::forward_t(self, xs, train).swap_remove(0)
    }
}

/// Number of trainable parameters in a var store.
pub fn count_parameters(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// The architecture with every stage's features capped at `cap` (an experiment knob).
pub fn cap_features(arch: &Architecture, cap: Option<i64>) -> Architecture {
    let mut a = arch.clone();
    if let Some(c) = cap {
        for f in &mut a.arch_kwargs.features_per_stage {
            *f = (*f).min(c.max(1));
        }
    }
    a
}

/// Deep-supervision scales (§7.1): `1 / cumprod(strides)`, one entry per output except the
/// lowest resolution (`n_stages − 1` entries), highest resolution first.
pub fn deep_supervision_scales(arch: &Architecture) -> Vec<Vec<f64>> {
    let s = &arch.arch_kwargs.strides;
    let nd = s.first().map_or(3, |v| v.len());
    let mut cum = vec![1.0f64; nd];
    let mut out = Vec::new();
    for st in s {
        for d in 0..nd {
            cum[d] *= st[d] as f64;
        }
        out.push(cum.iter().map(|c| 1.0 / c).collect());
    }
    out.pop();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use tch::{Device, Kind};

    pub fn arch(features: &[i64], kernels: &[Vec<i64>], strides: &[Vec<i64>], residual: bool) -> Architecture {
        let n = features.len();
        let nd = kernels[0].len();
        Architecture {
            network_class_name: if residual {
                "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet".into()
            } else {
                "dynamic_network_architectures.architectures.unet.PlainConvUNet".into()
            },
            arch_kwargs: ArchKwargs {
                n_stages: n,
                features_per_stage: features.to_vec(),
                conv_op: if nd == 3 {
                    "torch.nn.modules.conv.Conv3d".into()
                } else {
                    "torch.nn.modules.conv.Conv2d".into()
                },
                kernel_sizes: kernels.to_vec(),
                strides: strides.to_vec(),
                n_conv_per_stage: (!residual).then(|| vec![2; n]),
                n_blocks_per_stage: residual.then(|| [1i64, 3, 4, 6, 6, 6, 6, 6].iter().take(n).copied().collect()),
                n_conv_per_stage_decoder: vec![if residual { 1 } else { 2 }; n - 1],
                conv_bias: true,
                norm_op: "torch.nn.modules.instancenorm.InstanceNorm3d".into(),
                norm_op_kwargs: json!({"eps": 1e-5, "affine": true}),
                dropout_op: None,
                dropout_op_kwargs: None,
                nonlin: "torch.nn.LeakyReLU".into(),
                nonlin_kwargs: json!({"inplace": true}),
            },
            kw_requires_import: vec!["conv_op".into(), "norm_op".into(), "dropout_op".into(), "nonlin".into()],
        }
    }

    pub fn hippocampus() -> Architecture {
        arch(
            &[32, 64, 128, 256],
            &vec![vec![3, 3, 3]; 4],
            &[vec![1, 1, 1], vec![2, 2, 2], vec![2, 2, 2], vec![2, 2, 2]],
            false,
        )
    }

    pub fn prostate(residual: bool) -> Architecture {
        let mut k = vec![vec![1, 3, 3], vec![1, 3, 3]];
        k.extend(std::iter::repeat_n(vec![3, 3, 3], 5));
        let s = vec![
            vec![1, 1, 1],
            vec![1, 2, 2],
            vec![1, 2, 2],
            vec![2, 2, 2],
            vec![2, 2, 2],
            vec![1, 2, 2],
            vec![1, 2, 2],
        ];
        arch(&[32, 64, 128, 256, 320, 320, 320], &k, &s, residual)
    }

    /// The decoder as written before the inference-memory work: every intermediate kept,
    /// out-of-place normalization and nonlinearity, `Tensor::cat`.
    fn reference_forward(net: &UNet, x: &Tensor) -> Tensor {
        let Encoder::Plain(stages) = &net.encoder else { panic!("plain encoder") };
        let mut skips = Vec::new();
        let mut y = x.shallow_clone();
        for st in stages {
            y = st.forward(&y, false, None);
            skips.push(y.shallow_clone());
        }
        let n = skips.len();
        let mut lres = skips[n - 1].shallow_clone();
        for (s, st) in net.decoder.iter().enumerate() {
            let up = st.transp.forward(&lres, None);
            let cat = Tensor::cat(&[up, skips[n - s - 2].shallow_clone()], 1);
            lres = st.convs.forward(&cat, false, None);
        }
        net.seg_layers[net.decoder.len() - 1].forward(&lres, None)
    }

    #[test]
    fn inference_memory_path_matches_the_reference_forward() {
        // In-place instance norm / LeakyReLU and the pre-allocated concatenation must not move
        // a single bit of the logits. 3D maps on the CPU also run channels-last
        // (blocks::to_channels_last): oneDNN then sums in another order, so the logits may
        // differ by rounding, but the argmax (the prediction) must not.
        for (a, shape) in [
            (hippocampus(), vec![2i64, 1, 16, 24, 16]),
            (hippocampus(), vec![1i64, 1, 16, 24, 16]),
            (
                arch(&[8, 16, 32], &[vec![3, 3], vec![3, 3], vec![3, 3]], &[vec![1, 1], vec![2, 2], vec![2, 2]], false),
                vec![3, 1, 20, 12],
            ),
        ] {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            let mut net = build_network(&vs.root(), &a, 1, 3, &NetOptions::default()).unwrap();
            net.set_deep_supervision(false);
            let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
            let _g = tch::no_grad_guard();
            let got = net.forward_t(&x, false).swap_remove(0);
            let want = reference_forward(&net, &x);
            if shape.len() == 4 {
                assert!(got.equal(&want), "{shape:?}: max diff {}", (&got - &want).abs().max().double_value(&[]));
            } else {
                let diff = (&got - &want).abs().max().double_value(&[]);
                let scale = want.abs().max().double_value(&[]);
                assert!(diff <= 1e-5 * scale.max(1.0), "{shape:?}: max diff {diff} (logits up to {scale})");
                assert!(got.argmax(1, false).equal(&want.argmax(1, false)), "{shape:?}: argmax differs");
                // The full-resolution maps of one tile really are channels-last.
                if shape[0] != 1 {
                    continue;
                }
                let stem = match &net.encoder {
                    Encoder::Plain(stages) => &stages[0],
                    _ => unreachable!("a plain encoder"),
                };
                assert!(crate::blocks::is_channels_last(&stem.forward_owned(x.shallow_clone(), false, None)));
            }
        }
    }

    #[test]
    fn hippocampus_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = build_network(&vs.root(), &hippocampus(), 1, 3, &NetOptions::default()).unwrap();
        // dynamic-network-architectures PlainConvUNet(1, 4, (32,64,128,256), Conv3d, 3, (1,2,2,2),
        // 2, 3, 2, conv_bias=True, InstanceNorm3d affine): 5,603,177 parameters.
        assert_eq!(count_parameters(&vs), 5_603_177);
    }

    #[test]
    fn hippocampus_forward_shapes_and_heads() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build_network(&vs.root(), &hippocampus(), 1, 3, &NetOptions::default()).unwrap();
        let x = Tensor::randn([1, 1, 16, 24, 16], (Kind::Float, Device::Cpu));
        let outs = net.forward_t(&x, true);
        let shapes: Vec<Vec<i64>> = outs.iter().map(|o| o.size()).collect();
        assert_eq!(shapes, vec![vec![1, 3, 16, 24, 16], vec![1, 3, 8, 12, 8], vec![1, 3, 4, 6, 4]]);
        // Deep supervision off: one output, identical to the first DS output (same weights).
        let mut net = net;
        net.set_deep_supervision(false);
        let single = tch::no_grad(|| net.forward_t(&x, true));
        assert_eq!(single.len(), 1);
        // (Without gradients the maps run channels-last: equal up to rounding.)
        let diff = (&single[0] - &outs[0]).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{diff}");
        // Variable names follow nnU-Net's module names.
        let names = vs.variables();
        for k in [
            "encoder.stages.0.0.convs.0.conv.weight",
            "encoder.stages.3.0.convs.1.norm.bias",
            "decoder.transpconvs.0.weight",
            "decoder.stages.2.convs.1.conv.bias",
            "decoder.seg_layers.2.weight",
        ] {
            assert!(names.contains_key(k), "{k} missing");
        }
    }

    #[test]
    fn kaiming_init_statistics() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = build_network(&vs.root(), &hippocampus(), 1, 3, &NetOptions::default()).unwrap();
        let v = vs.variables();
        // conv 128 -> 256 channels, 3x3x3: fan_in 128*27, std sqrt(2/(1+1e-4)/fan_in).
        let w = &v["encoder.stages.3.0.convs.0.conv.weight"];
        let std = w.std(true).double_value(&[]);
        let expect = (2.0 / (1.0 + 1e-4) / (128.0 * 27.0f64)).sqrt();
        assert!((std / expect - 1.0).abs() < 0.02, "{std} vs {expect}");
        // transposed conv weight [256, 128, 2,2,2]: fan_in = 128 * 8.
        let w = &v["decoder.transpconvs.0.weight"];
        let expect = (2.0 / (1.0 + 1e-4) / (128.0 * 8.0f64)).sqrt();
        let std = w.std(true).double_value(&[]);
        assert!((std / expect - 1.0).abs() < 0.02, "{std} vs {expect}");
        assert_eq!(v["encoder.stages.0.0.convs.0.conv.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(v["encoder.stages.0.0.convs.0.norm.weight"].mean(Kind::Float).double_value(&[]), 1.0);
    }

    #[test]
    fn prostate_shapes_anisotropic() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build_network(&vs.root(), &prostate(false), 2, 3, &NetOptions::default()).unwrap();
        // Patch divisible by cumprod(strides) = [4, 64, 64].
        let x = Tensor::zeros([1, 2, 4, 64, 64], (Kind::Float, Device::Cpu));
        let outs = tch::no_grad(|| net.forward_t(&x, false));
        let shapes: Vec<Vec<i64>> = outs.iter().map(|o| o.size()[2..].to_vec()).collect();
        assert_eq!(
            shapes,
            vec![vec![4, 64, 64], vec![4, 32, 32], vec![4, 16, 16], vec![2, 8, 8], vec![1, 4, 4], vec![1, 2, 2]]
        );
        assert_eq!(
            deep_supervision_scales(&prostate(false)),
            vec![
                vec![1.0, 1.0, 1.0],
                vec![1.0, 0.5, 0.5],
                vec![1.0, 0.25, 0.25],
                vec![0.5, 0.125, 0.125],
                vec![0.25, 0.0625, 0.0625],
                vec![0.25, 0.03125, 0.03125]
            ]
        );
        // kernel [1,3,3] of stage 0: weight shape.
        assert_eq!(vs.variables()["encoder.stages.0.0.convs.0.conv.weight"].size(), vec![32, 2, 1, 3, 3]);
        assert_eq!(vs.variables()["decoder.transpconvs.5.weight"].size(), vec![64, 32, 1, 2, 2]);
        // Peer (dynamic-network-architectures 0.4.4) parameter count of the same network.
        assert_eq!(count_parameters(&vs), 44_578_770);
    }

    #[test]
    fn resenc_shapes_and_zero_init() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let a = arch(&[8, 16, 32], &vec![vec![3, 3, 3]; 3], &[vec![1, 1, 1], vec![2, 2, 2], vec![1, 2, 2]], true);
        let net = build_network(&vs.root(), &a, 1, 2, &NetOptions::default()).unwrap();
        let x = Tensor::randn([2, 1, 8, 16, 16], (Kind::Float, Device::Cpu));
        let outs = net.forward_t(&x, true);
        assert_eq!(outs[0].size(), vec![2, 2, 8, 16, 16]);
        assert_eq!(outs[1].size(), vec![2, 2, 4, 8, 8]);
        // Peer: ResidualEncoderUNet(1, 3, [8,16,32], Conv3d, 3, strides, [1,3,4], 2, [1,1], True, IN).
        assert_eq!(count_parameters(&vs), 271_412);
        let v = vs.variables();
        let z = v["encoder.stages.1.blocks.0.conv2.norm.weight"].abs().sum(Kind::Float).double_value(&[]);
        assert_eq!(z, 0.0);
        assert!(v.contains_key("encoder.stages.1.blocks.0.skip.1.conv.weight"));
        assert!(v.contains_key("encoder.stem.convs.0.conv.weight"));
        assert!(!v.contains_key("encoder.stages.1.blocks.1.skip.1.conv.weight"));
        // Blocks start as identity + nonlin: the trunk contributes nothing at init.
        let loss = outs[0].sum(Kind::Float);
        loss.backward();
    }

    #[test]
    fn two_d_shapes_and_ablations() {
        for (norm, nonlin) in
            [(Norm::Batch, Nonlin::Relu), (Norm::None, Nonlin::LeakyRelu), (Norm::Instance, Nonlin::Relu)]
        {
            let vs = nn::VarStore::new(Device::Cpu);
            let a = arch(&[8, 16, 32], &vec![vec![3, 3]; 3], &[vec![1, 1], vec![2, 2], vec![2, 1]], false);
            let opts = NetOptions { norm, nonlin, deep_supervision: true };
            let net = build_network(&vs.root(), &a, 3, 4, &opts).unwrap();
            let x = Tensor::randn([2, 3, 16, 12], (Kind::Float, Device::Cpu));
            let outs = net.forward_t(&x, true);
            let shapes: Vec<Vec<i64>> = outs.iter().map(|o| o.size()).collect();
            assert_eq!(shapes, vec![vec![2, 4, 16, 12], vec![2, 4, 8, 6]]);
            if norm == Norm::Instance {
                // Peer: PlainConvUNet(3, 3, [8,16,32], Conv2d, 3, strides, 2, 4, 2, True, IN2d).
                assert_eq!(count_parameters(&vs), 28_856);
            }
            let eval = tch::no_grad(|| nn::ModuleT::forward_t(&net, &x, false));
            assert_eq!(eval.size(), vec![2, 4, 16, 12]);
        }
    }

    #[test]
    fn bf16_compute_matches_f32_and_trains_f32_weights() {
        let vs = nn::VarStore::new(Device::Cpu);
        let a = arch(&[4, 8], &vec![vec![3, 3, 3]; 2], &[vec![1, 1, 1], vec![2, 2, 2]], false);
        let mut net = build_network_seeded(&vs.root(), &a, 1, 2, &NetOptions::default(), 0).unwrap();
        let x = Tensor::randn([1, 1, 8, 8, 8], (Kind::Float, Device::Cpu));
        let y32 = tch::no_grad(|| net.forward_t(&x, true).swap_remove(0));
        net.set_compute_kind(Some(Kind::BFloat16));
        let y16 = net.forward_t(&x, true).swap_remove(0);
        assert_eq!(y16.kind(), Kind::Float);
        let rel = (&y16 - &y32).abs().max().double_value(&[]) / y32.abs().max().double_value(&[]);
        assert!(rel < 0.1, "{rel}");
        y16.sum(Kind::Float).backward();
        let w = &vs.variables()["encoder.stages.0.0.convs.0.conv.weight"];
        assert_eq!(w.kind(), Kind::Float);
        assert!(w.grad().defined() && w.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn rejects_inconsistent_arch() {
        let mut a = hippocampus();
        a.arch_kwargs.strides.pop();
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(build_network(&vs.root(), &a, 1, 3, &NetOptions::default()).is_err());
    }
}

//! Building blocks of the dynamic U-Nets (§6): conv (2D/3D, anisotropic kernels and strides),
//! normalization, nonlinearity, transposed conv, and the ResNet-D residual block.
//!
//! Every layer owns its tensors (created through an `nn::Path`, so they live in the caller's
//! `VarStore` under nnU-Net's module names) and has an explicit `forward`. A layer can run its
//! convolutions in a reduced precision (`compute: Some(Kind::BFloat16)`): inputs and weights are
//! cast for the convolution only, normalization and everything after it run in f32. This is a
//! hand-written autocast (tch cannot select autocast's bf16 dtype).

use serde::{Deserialize, Serialize};
use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// Normalization layer (ablation axis; nnU-Net: instance norm, eps 1e-5, affine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    #[default]
    Instance,
    Batch,
    None,
}

/// Nonlinearity (ablation axis; nnU-Net: LeakyReLU with slope 0.01).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Nonlin {
    #[default]
    LeakyRelu,
    Relu,
}

/// §6.1: LeakyReLU negative slope (nnU-Net's `nonlin_kwargs`, also libtorch's default).
pub const LEAKY_SLOPE: f64 = 0.01;
/// §6.1: InstanceNorm / BatchNorm epsilon.
pub const NORM_EPS: f64 = 1e-5;

/// §6.1 init: Kaiming-normal with a = 0.01, fan_in, gain sqrt(2 / (1 + a²)) (torch's
/// `kaiming_normal_(w, a=1e-2)`; for a transposed conv fan_in is `weight.size(1) × kernel`).
pub fn he_init() -> Init {
    Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanIn,
        non_linearity: NonLinearity::ExplicitGain((2.0 / (1.0 + LEAKY_SLOPE * LEAKY_SLOPE)).sqrt()),
    }
}

impl Nonlin {
    pub fn apply(&self, x: &Tensor) -> Tensor {
        match self {
            // libtorch's default negative_slope is 0.01 = nnU-Net's (§6.1).
            Nonlin::LeakyRelu => x.leaky_relu(),
            Nonlin::Relu => x.relu(),
        }
    }

    /// In place, for inference: bit-identical to [`Nonlin::apply`] without the second buffer.
    pub fn apply_(&self, x: &mut Tensor) {
        let _ = match self {
            Nonlin::LeakyRelu => x.leaky_relu_(),
            Nonlin::Relu => x.relu_(),
        };
    }
}

/// A 2D or 3D convolution with per-axis kernel, stride and padding `(k − 1) / 2`.
#[derive(Debug)]
pub struct Conv {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    stride: Vec<i64>,
    padding: Vec<i64>,
}

impl Conv {
    pub fn new(p: &nn::Path, cin: i64, cout: i64, kernel: &[i64], stride: &[i64], bias: bool) -> Conv {
        let mut dims = vec![cout, cin];
        dims.extend_from_slice(kernel);
        let weight = p.var("weight", &dims, he_init());
        let bias = bias.then(|| p.var("bias", &[cout], Init::Const(0.0)));
        Conv { weight, bias, stride: stride.to_vec(), padding: kernel.iter().map(|k| (k - 1) / 2).collect() }
    }

    pub fn forward(&self, x: &Tensor, compute: Option<Kind>) -> Tensor {
        let cast = |t: &Tensor| match compute {
            Some(k) if t.kind() != k => t.to_kind(k),
            _ => t.shallow_clone(),
        };
        let (x, w, b) = (cast(x), cast(&self.weight), self.bias.as_ref().map(cast));
        if self.stride.len() == 3 {
            x.conv3d(&w, b.as_ref(), self.stride.as_slice(), self.padding.as_slice(), [1, 1, 1], 1)
        } else {
            x.conv2d(&w, b.as_ref(), self.stride.as_slice(), self.padding.as_slice(), [1, 1], 1)
        }
    }
}

/// Transposed convolution with kernel = stride (§6.1 decoder upsampling), per axis.
#[derive(Debug)]
pub struct TransposedConv {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    stride: Vec<i64>,
}

impl TransposedConv {
    pub fn new(p: &nn::Path, cin: i64, cout: i64, stride: &[i64], bias: bool) -> TransposedConv {
        let mut dims = vec![cin, cout];
        dims.extend_from_slice(stride);
        let weight = p.var("weight", &dims, he_init());
        let bias = bias.then(|| p.var("bias", &[cout], Init::Const(0.0)));
        TransposedConv { weight, bias, stride: stride.to_vec() }
    }

    pub fn forward(&self, x: &Tensor, compute: Option<Kind>) -> Tensor {
        let cast = |t: &Tensor| match compute {
            Some(k) if t.kind() != k => t.to_kind(k),
            _ => t.shallow_clone(),
        };
        let (x, w, b) = (cast(x), cast(&self.weight), self.bias.as_ref().map(cast));
        let s = self.stride.as_slice();
        let y = if s.len() == 3 {
            x.conv_transpose3d(&w, b.as_ref(), s, [0, 0, 0], [0, 0, 0], 1, [1, 1, 1])
        } else {
            x.conv_transpose2d(&w, b.as_ref(), s, [0, 0], [0, 0], 1, [1, 1])
        };
        if compute.is_some() {
            y.to_kind(Kind::Float)
        } else {
            y
        }
    }
}

/// Instance / batch normalization with affine parameters, or nothing.
#[derive(Debug)]
pub struct NormLayer {
    kind: Norm,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    running_mean: Option<Tensor>,
    running_var: Option<Tensor>,
}

impl NormLayer {
    pub fn new(p: &nn::Path, kind: Norm, c: i64) -> NormLayer {
        match kind {
            Norm::None => NormLayer { kind, weight: None, bias: None, running_mean: None, running_var: None },
            Norm::Instance => NormLayer {
                kind,
                weight: Some(p.var("weight", &[c], Init::Const(1.0))),
                bias: Some(p.var("bias", &[c], Init::Const(0.0))),
                running_mean: None,
                running_var: None,
            },
            Norm::Batch => NormLayer {
                kind,
                weight: Some(p.var("weight", &[c], Init::Const(1.0))),
                bias: Some(p.var("bias", &[c], Init::Const(0.0))),
                running_mean: Some(p.zeros_no_train("running_mean", &[c])),
                running_var: Some(p.ones_no_train("running_var", &[c])),
            },
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if x.kind() != Kind::Float { x.to_kind(Kind::Float) } else { x.shallow_clone() };
        let cudnn = x.device().is_cuda();
        match self.kind {
            Norm::None => x,
            Norm::Instance => x.instance_norm(
                self.weight.as_ref(),
                self.bias.as_ref(),
                None::<&Tensor>,
                None::<&Tensor>,
                true,
                0.1,
                NORM_EPS,
                cudnn,
            ),
            Norm::Batch => x.batch_norm(
                self.weight.as_ref(),
                self.bias.as_ref(),
                self.running_mean.as_ref(),
                self.running_var.as_ref(),
                train,
                0.1,
                NORM_EPS,
                cudnn,
            ),
        }
    }

    /// [`NormLayer::forward`] on an owned input, normalizing in place where that is exact:
    /// instance norm of a CPU f32 tensor that needs no gradient. libtorch's `instance_norm` is
    /// `native_batch_norm` on the `(1, N·C, ...)` view with the affine parameters repeated N
    /// times; its CPU kernel writes every output element after the statistics are complete, so
    /// giving it the input as `out` yields the same bits without a second full-size buffer.
    pub fn forward_owned(&self, x: Tensor, train: bool) -> Tensor {
        let exact = self.kind == Norm::Instance
            && x.kind() == Kind::Float
            && x.device() == tch::Device::Cpu
            && !x.requires_grad();
        let size = x.size();
        let (view, w, bias) = if exact && size.len() == 5 && size[0] == 1 && is_channels_last(&x) {
            // One sample's instance norm is batch norm over the rows of its channels-last
            // memory seen as [D·H·W, C]: per-channel statistics.
            (
                x.permute([0, 2, 3, 4, 1]).view([-1, size[1]]),
                self.weight.as_ref().map(Tensor::shallow_clone),
                self.bias.as_ref().map(Tensor::shallow_clone),
            )
        } else if exact && x.is_contiguous() && size.len() >= 3 {
            let (b, c) = (size[0], size[1]);
            let mut flat = vec![1, b * c];
            flat.extend_from_slice(&size[2..]);
            let rep = |t: &Option<Tensor>| t.as_ref().map(|t| if b == 1 { t.shallow_clone() } else { t.repeat([b]) });
            (x.view(flat.as_slice()), rep(&self.weight), rep(&self.bias))
        } else {
            return self.forward(&x, train);
        };
        let stats = |_| Tensor::empty([0], (Kind::Float, tch::Device::Cpu));
        let (mean, invstd) = (stats(0), stats(1));
        let _ = view.native_batch_norm_out(
            &view,
            &mean,
            &invstd,
            w.as_ref(),
            bias.as_ref(),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.1,
            NORM_EPS,
        );
        x
    }

    /// ResEnc init: the norm after each block's second conv starts at weight 0 and bias 0 (§6.2).
    pub fn zero_(&mut self) {
        tch::no_grad(|| {
            for t in [&mut self.weight, &mut self.bias].into_iter().flatten() {
                let _ = t.zero_();
            }
        });
    }
}

/// Whether a 5-D tensor is laid out channels-last (NDHWC in memory, NCDHW in shape).
pub fn is_channels_last(x: &Tensor) -> bool {
    x.dim() == 5 && x.size()[1] > 1 && !x.is_contiguous() && x.permute([0, 2, 3, 4, 1]).is_contiguous()
}

/// The same values laid out channels-last (one copy).
///
/// Inference on the CPU keeps 3D feature maps this way: oneDNN's convolutions read and write
/// them as they are, where for NCDHW maps each convolution reorders its input and its output
/// into a blocked layout, two more full-size maps at the peak of a forward pass. Predicting a
/// 512x512x100 CT (patch 48x128x128, 32 features) then peaked at 785 instead of 1034 MB and ran
/// 10% faster (bench/RESULTS.md, big-CT predict); the logits differ by float rounding only
/// (same argmax on the demo). libtorch propagates the layout from a convolution's input to its
/// output; a 1-channel input is both layouts at once, so the first convolution's output is
/// converted (see [`ConvNormAct::forward_owned`]).
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 4, 1]).contiguous().permute([0, 4, 1, 2, 3])
}

static INFERENCE_CHANNELS_LAST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns channels-last inference (see [`to_channels_last`]) off for this process, or on again
/// (the default). NCDHW reproduces PyTorch's default arithmetic bit for bit, which parity with
/// nnU-Net's f16 accumulation needs: f16 rounding turns the last-bit differences of another
/// summation order into probability differences of 1e-3 (a Hippocampus model folder: 3.0e-3
/// channels-last, 4.5e-4 in NCDHW; the labels agreed on 100% of voxels either way).
pub fn set_inference_channels_last(on: bool) {
    INFERENCE_CHANNELS_LAST.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// 3D maps of one sample (the sliding window's batch of one 3D tile) on the CPU without
/// gradients, more than one channel. Batches keep NCDHW: instance norm would convert them back.
fn channels_last_pays(y: &Tensor) -> bool {
    INFERENCE_CHANNELS_LAST.load(std::sync::atomic::Ordering::Relaxed)
        && y.dim() == 5
        && y.size()[0] == 1
        && y.size()[1] > 1
        && y.device() == tch::Device::Cpu
        && !y.requires_grad()
        && y.kind() == Kind::Float
}

/// conv → norm → (nonlin) (§6.1 `ConvDropoutNormReLU`, `nonlin_first = False`, no dropout).
#[derive(Debug)]
pub struct ConvNormAct {
    pub conv: Conv,
    pub norm: NormLayer,
    pub act: Option<Nonlin>,
}

/// Options shared by all blocks of a network.
#[derive(Clone, Copy, Debug)]
pub struct BlockCfg {
    pub norm: Norm,
    pub nonlin: Nonlin,
    pub conv_bias: bool,
}

impl ConvNormAct {
    /// `p/conv`, `p/norm` (nnU-Net's module names).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &nn::Path,
        cin: i64,
        cout: i64,
        kernel: &[i64],
        stride: &[i64],
        bias: bool,
        cfg: &BlockCfg,
        act: bool,
    ) -> ConvNormAct {
        ConvNormAct {
            conv: Conv::new(&(p / "conv"), cin, cout, kernel, stride, bias),
            norm: NormLayer::new(&(p / "norm"), cfg.norm, cout),
            act: act.then_some(cfg.nonlin),
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool, compute: Option<Kind>) -> Tensor {
        let y = self.norm.forward(&self.conv.forward(x, compute), train);
        match self.act {
            Some(a) => a.apply(&y),
            None => y,
        }
    }

    /// [`ConvNormAct::forward`] on an owned input, for inference memory: the input is released
    /// as soon as the convolution has read it, normalization and nonlinearity run in place when
    /// no gradient is needed (same bits, one full-size buffer instead of three), and 3D maps
    /// on the CPU are kept channels-last (see [`to_channels_last`]).
    pub fn forward_owned(&self, x: Tensor, train: bool, compute: Option<Kind>) -> Tensor {
        let mut y = self.conv.forward(&x, compute);
        drop(x);
        if channels_last_pays(&y) && !is_channels_last(&y) {
            y = to_channels_last(&y);
        }
        let mut y = self.norm.forward_owned(y, train);
        match self.act {
            Some(a) if !y.requires_grad() => {
                a.apply_(&mut y);
                y
            }
            Some(a) => a.apply(&y),
            None => y,
        }
    }
}

/// `n` stacked conv-norm-nonlin blocks; the first one carries the stride (§6.1).
#[derive(Debug)]
pub struct StackedConvs {
    pub convs: Vec<ConvNormAct>,
}

impl StackedConvs {
    /// `p/convs/i/...`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(p: &nn::Path, n: usize, cin: i64, cout: i64, kernel: &[i64], stride: &[i64], cfg: &BlockCfg) -> Self {
        let ones = vec![1; stride.len()];
        let convs = (0..n)
            .map(|i| {
                let (ci, s) = if i == 0 { (cin, stride) } else { (cout, ones.as_slice()) };
                ConvNormAct::new(&(p / "convs" / i), ci, cout, kernel, s, cfg.conv_bias, cfg, true)
            })
            .collect();
        StackedConvs { convs }
    }

    pub fn forward(&self, x: &Tensor, train: bool, compute: Option<Kind>) -> Tensor {
        let mut y = x.shallow_clone();
        for c in &self.convs {
            y = c.forward(&y, train, compute);
        }
        y
    }

    /// [`StackedConvs::forward`] through [`ConvNormAct::forward_owned`].
    pub fn forward_owned(&self, x: Tensor, train: bool, compute: Option<Kind>) -> Tensor {
        let mut y = x;
        for c in &self.convs {
            y = c.forward_owned(y, train, compute);
        }
        y
    }
}

/// ResNet-D basic block (§6.2): conv1(k, stride)-norm-nonlin → conv2(k)-norm, plus a skip
/// (identity, or AvgPool(stride) and/or 1×1 conv (no bias) + norm), then nonlin.
#[derive(Debug)]
pub struct BasicBlockD {
    pub conv1: ConvNormAct,
    pub conv2: ConvNormAct,
    pool: Option<Vec<i64>>,
    pub proj: Option<ConvNormAct>,
    act: Nonlin,
}

impl BasicBlockD {
    pub fn new(p: &nn::Path, cin: i64, cout: i64, kernel: &[i64], stride: &[i64], cfg: &BlockCfg) -> BasicBlockD {
        let ones = vec![1i64; stride.len()];
        let conv1 = ConvNormAct::new(&(p / "conv1"), cin, cout, kernel, stride, cfg.conv_bias, cfg, true);
        let mut conv2 = ConvNormAct::new(&(p / "conv2"), cout, cout, kernel, &ones, cfg.conv_bias, cfg, false);
        // §6.2: init_last_bn_before_add_to_0.
        conv2.norm.zero_();
        let has_stride = stride.iter().any(|&s| s != 1);
        let pool = has_stride.then(|| stride.to_vec());
        // nnU-Net's skip is `nn.Sequential(pool?, proj?)`: the projection's index is 1 after a pool.
        let proj = (cin != cout).then(|| {
            let idx = usize::from(has_stride);
            ConvNormAct::new(&(p / "skip" / idx), cin, cout, &ones, &ones, false, cfg, false)
        });
        BasicBlockD { conv1, conv2, pool, proj, act: cfg.nonlin }
    }

    pub fn forward(&self, x: &Tensor, train: bool, compute: Option<Kind>) -> Tensor {
        let mut r = x.shallow_clone();
        if let Some(s) = &self.pool {
            r = if s.len() == 3 {
                r.avg_pool3d(s.as_slice(), s.as_slice(), [0, 0, 0], false, true, None)
            } else {
                r.avg_pool2d(s.as_slice(), s.as_slice(), [0, 0], false, true, None)
            };
        }
        if let Some(pj) = &self.proj {
            r = pj.forward(&r, train, compute);
        }
        let y = self.conv2.forward(&self.conv1.forward(x, train, compute), train, compute);
        self.act.apply(&(y + r))
    }
}

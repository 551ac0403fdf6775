//! Per-case prediction timing on a raw dataset with a randomly initialised PlainConvUNet-shaped
//! network (the stand-in until the network crate provides one), like the peer's
//! `nnunet_predict.py`: `bench_predict DATASET_DIR PLANS_JSON CONFIG N [THREADS]`.
//!
//! e.g. `bench_predict ~/.cache/nnunet-peer/raw/Dataset004_Hippocampus
//!        ~/.cache/nnunet-peer/pre/Dataset004_Hippocampus/nnUNetPlans.json 3d_fullres 10`

use nnunet_infer::bench::bench_predict;
use nnunet_infer::predictor::{LabelSpec, Predictor};
use nnunet_infer::{SegNetwork, SlidingWindowOptions};
use nnunet_prep::plans::{Plans, ResolvedConfiguration};
use std::path::PathBuf;
use tch::nn::{self, Module};
use tch::{Device, Tensor};

#[derive(Debug)]
struct Block {
    w: Tensor,
    b: Tensor,
    g: Tensor,
    beta: Tensor,
    stride: Vec<i64>,
    pad: Vec<i64>,
}

impl Block {
    fn new(p: &nn::Path, cin: i64, cout: i64, k: &[i64], stride: &[i64]) -> Block {
        let mut shape = vec![cout, cin];
        shape.extend_from_slice(k);
        let fan_in = cin * k.iter().product::<i64>();
        let bound = 1.0 / (fan_in as f64).sqrt();
        Block {
            w: p.var("w", &shape, nn::Init::Uniform { lo: -bound, up: bound }),
            b: p.var("b", &[cout], nn::Init::Const(0.0)),
            g: p.var("g", &[cout], nn::Init::Const(1.0)),
            beta: p.var("beta", &[cout], nn::Init::Const(0.0)),
            stride: stride.to_vec(),
            pad: k.iter().map(|k| k / 2).collect(),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = if self.stride.len() == 3 {
            x.conv3d(&self.w, Some(&self.b), self.stride.as_slice(), self.pad.as_slice(), [1, 1, 1], 1)
        } else {
            x.conv2d(&self.w, Some(&self.b), self.stride.as_slice(), self.pad.as_slice(), [1, 1], 1)
        };
        y.instance_norm(Some(&self.g), Some(&self.beta), None::<&Tensor>, None::<&Tensor>, true, 0.1, 1e-5, false)
            .leaky_relu()
    }
}

/// PlainConvUNet without deep supervision: per stage 2 convs (first strided), transposed-conv
/// upsampling, skip concatenation, 2 decoder convs, 1×1 head.
#[derive(Debug)]
struct UNet {
    enc: Vec<Vec<Block>>,
    up: Vec<(Tensor, Tensor, Vec<i64>)>,
    dec: Vec<Vec<Block>>,
    head: (Tensor, Tensor),
    nd: usize,
}

impl UNet {
    fn new(vs: &nn::VarStore, config: &ResolvedConfiguration, cin: i64, cout: i64) -> UNet {
        let a = &config.architecture.arch_kwargs;
        let p = vs.root();
        let nd = a.kernel_sizes[0].len();
        let mut enc = vec![];
        let mut c = cin;
        for s in 0..a.n_stages {
            let f = a.features_per_stage[s];
            let sp = &p / format!("enc{s}");
            let k = &a.kernel_sizes[s];
            enc.push(vec![
                Block::new(&(&sp / "0"), c, f, k, &a.strides[s]),
                Block::new(&(&sp / "1"), f, f, k, &vec![1; nd]),
            ]);
            c = f;
        }
        let mut up = vec![];
        let mut dec = vec![];
        for s in (0..a.n_stages - 1).rev() {
            let (fin, fout) = (a.features_per_stage[s + 1], a.features_per_stage[s]);
            let st = a.strides[s + 1].clone();
            let mut shape = vec![fin, fout];
            shape.extend_from_slice(&st);
            let sp = &p / format!("dec{s}");
            up.push((
                sp.var("up_w", &shape, nn::Init::Uniform { lo: -0.05, up: 0.05 }),
                sp.var("up_b", &[fout], nn::Init::Const(0.0)),
                st,
            ));
            let k = &a.kernel_sizes[s];
            dec.push(vec![
                Block::new(&(&sp / "0"), 2 * fout, fout, k, &vec![1; nd]),
                Block::new(&(&sp / "1"), fout, fout, k, &vec![1; nd]),
            ]);
        }
        let f0 = a.features_per_stage[0];
        let mut hs = vec![cout, f0];
        hs.extend(vec![1; nd]);
        let head = (
            p.var("head_w", &hs, nn::Init::Uniform { lo: -0.1, up: 0.1 }),
            p.var("head_b", &[cout], nn::Init::Const(0.0)),
        );
        UNet { enc, up, dec, head, nd }
    }
}

impl Module for UNet {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut skips = vec![];
        let mut h = x.shallow_clone();
        for st in &self.enc {
            for b in st {
                h = b.forward(&h);
            }
            skips.push(h.shallow_clone());
        }
        skips.pop();
        for ((w, b, st), blocks) in self.up.iter().zip(&self.dec) {
            h = if self.nd == 3 {
                h.conv_transpose3d(w, Some(b), st.as_slice(), [0, 0, 0], [0, 0, 0], 1, [1, 1, 1])
            } else {
                h.conv_transpose2d(w, Some(b), st.as_slice(), [0, 0], [0, 0], 1, [1, 1])
            };
            h = Tensor::cat(&[h, skips.pop().unwrap()], 1);
            for bl in blocks {
                h = bl.forward(&h);
            }
        }
        if self.nd == 3 {
            h.conv3d(&self.head.0, Some(&self.head.1), [1, 1, 1], [0, 0, 0], [1, 1, 1], 1)
        } else {
            h.conv2d(&self.head.0, Some(&self.head.1), [1, 1], [0, 0], [1, 1], 1)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: bench_predict DATASET_DIR PLANS_JSON CONFIG N [THREADS] [TILES_PER_BATCH (0 = auto)] [BATCH_MIRRORS 0|1]"
        );
        std::process::exit(2);
    }
    let threads: i32 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(2);
    let tiles_per_batch: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(0);
    let batch_mirrors = args.get(7).map(|s| s == "1").unwrap_or(false);
    tch::set_num_threads(threads);
    let ds = nnunet_io::dataset::open_dataset(&PathBuf::from(&args[1])).expect("dataset");
    let plans: Plans = serde_json::from_str(&std::fs::read_to_string(&args[2]).expect("plans")).expect("plans json");
    let config = plans.configuration(&args[3]).expect("configuration");
    let n: usize = args[4].parse().expect("N");
    let spec = LabelSpec::from_labels(&ds.labels);
    let device = Device::Cpu;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = UNet::new(&vs, &config, ds.num_channels() as i64, spec.num_outputs() as i64);
    let nd = config.patch_size.len();
    let opts = SlidingWindowOptions { device, tiles_per_batch, batch_mirrors, ..Default::default() };
    let nets: Vec<Box<dyn SegNetwork>> = vec![Box::new(net)];
    let mut pred =
        Predictor::new(nets, config.patch_size.clone(), ds.num_channels(), spec.num_outputs(), (0..nd).collect(), opts)
            .unwrap();
    let cases: Vec<_> = ds.cases.iter().take(n).cloned().collect();
    let out = std::env::temp_dir().join(format!("bench_predict_{}", std::process::id()));
    let r =
        bench_predict(&mut pred, &cases, &plans, &config, &spec, &out, &[false, true], &|_, _| Ok(None), &|_, _| {})
            .expect("bench");
    let _ = std::fs::remove_dir_all(&out);
    if std::env::var("BENCH_DETAIL").is_ok() {
        for (id, tta, t, s) in &r.per_case {
            println!(
                "{id} tta={tta} {s:.3} (preprocess {:.3}, predict {:.3}, export {:.3})",
                t.preprocess_s, t.predict_s, t.export_s
            );
        }
    }
    println!(
        "nnunet-rs predict {} threads={threads} tiles_per_batch={tiles_per_batch} batch_mirrors={batch_mirrors} cases={} s_per_case no_tta={:.3} tta={:.3}",
        args[3],
        r.cases,
        r.seconds_per_case_no_mirroring.unwrap_or(f64::NAN),
        r.seconds_per_case_mirroring.unwrap_or(f64::NAN)
    );
}

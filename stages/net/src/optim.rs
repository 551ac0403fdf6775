//! Hand-written optimizers on tensors, so the trainer owns (and checkpoints) their state:
//! SGD with Nesterov momentum (v2 default: momentum 0.99, weight decay 3e-5, §7.1) and Adam
//! (AMSGrad, L2 weight decay; the original paper's, §7.5). Semantics follow `torch.optim`.
//! Also the gradient-norm clip (§7.1: 12).

use crate::error::{io_err, NetError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Which optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD, momentum 0.99, Nesterov, lr 1e-2, poly schedule (nnU-Net v2).
    #[default]
    SgdNesterov,
    /// Adam (AMSGrad) lr 3e-4 with ReduceLROnPlateau (original nnU-Net).
    AdamPlateau,
}

impl OptimizerKind {
    pub fn default_lr(&self) -> f64 {
        match self {
            OptimizerKind::SgdNesterov => 1e-2,
            OptimizerKind::AdamPlateau => 3e-4,
        }
    }
}

/// Optimizer with per-parameter state keyed by variable name.
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub amsgrad: bool,
    /// Number of steps taken.
    pub step: u64,
    /// `momentum_buffer` (SGD) or `exp_avg` (Adam).
    buf1: BTreeMap<String, Tensor>,
    /// `exp_avg_sq` (Adam).
    buf2: BTreeMap<String, Tensor>,
    /// `max_exp_avg_sq` (AMSGrad).
    buf3: BTreeMap<String, Tensor>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, momentum: f64, weight_decay: f64) -> Optimizer {
        Optimizer {
            kind,
            momentum,
            weight_decay,
            betas: (0.9, 0.999),
            eps: 1e-8,
            amsgrad: true,
            step: 0,
            buf1: BTreeMap::new(),
            buf2: BTreeMap::new(),
            buf3: BTreeMap::new(),
        }
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(params: &[(String, Tensor)]) {
        for (_, p) in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update of every parameter with a gradient.
    pub fn step(&mut self, params: &[(String, Tensor)], lr: f64) {
        self.step += 1;
        tch::no_grad(|| {
            for (name, p) in params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                let d_p = if self.weight_decay != 0.0 { &g + &p * self.weight_decay } else { g.shallow_clone() };
                match self.kind {
                    OptimizerKind::SgdNesterov => {
                        let m = self.momentum;
                        let buf = match self.buf1.get_mut(name) {
                            Some(b) => {
                                let _ = b.g_mul_scalar_(m).g_add_(&d_p);
                                b.shallow_clone()
                            }
                            None => {
                                let b = d_p.detach().copy();
                                self.buf1.insert(name.clone(), b.shallow_clone());
                                b
                            }
                        };
                        // Nesterov: d_p + momentum · buf.
                        let upd = &d_p + &buf * m;
                        let _ = p.g_add_(&(upd * -lr));
                    }
                    OptimizerKind::AdamPlateau => {
                        let (b1, b2) = self.betas;
                        let m = self.buf1.entry(name.clone()).or_insert_with(|| p.zeros_like());
                        let _ = m.g_mul_scalar_(b1).g_add_(&(&d_p * (1.0 - b1)));
                        let v = self.buf2.entry(name.clone()).or_insert_with(|| p.zeros_like());
                        let _ = v.g_mul_scalar_(b2).g_add_(&(&d_p * &d_p * (1.0 - b2)));
                        let bc1 = 1.0 - b1.powi(self.step as i32);
                        let bc2 = 1.0 - b2.powi(self.step as i32);
                        let v_used = if self.amsgrad {
                            let vm = self.buf3.entry(name.clone()).or_insert_with(|| p.zeros_like());
                            let mx = vm.maximum(v);
                            vm.copy_(&mx);
                            mx
                        } else {
                            v.shallow_clone()
                        };
                        let denom = v_used.sqrt() / bc2.sqrt() + self.eps;
                        let m = &self.buf1[name];
                        let _ = p.g_add_(&(m / denom * (-lr / bc1)));
                    }
                }
            }
        });
    }

    /// Saves the state: `dir/optimizer.safetensors` (buffers) + `dir/optimizer.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (prefix, map) in [("buf1", &self.buf1), ("buf2", &self.buf2), ("buf3", &self.buf3)] {
            for (k, v) in map {
                named.push((format!("{prefix}/{k}"), v.to_device(tch::Device::Cpu)));
            }
        }
        let path = dir.join("optimizer.safetensors");
        if named.is_empty() {
            // safetensors needs at least one tensor.
            named.push(("empty".into(), Tensor::zeros([1], (Kind::Float, tch::Device::Cpu))));
        }
        Tensor::write_safetensors(&named, &path).map_err(|e| io_err(&path, e))?;
        let meta = serde_json::json!({
            "kind": self.kind, "step": self.step, "momentum": self.momentum,
            "weight_decay": self.weight_decay, "betas": [self.betas.0, self.betas.1], "eps": self.eps, "amsgrad": self.amsgrad,
        });
        let jp = dir.join("optimizer.json");
        std::fs::write(&jp, serde_json::to_string_pretty(&meta).unwrap_or_default()).map_err(|e| io_err(&jp, e))
    }

    /// Loads a state written by [`Optimizer::save`] onto `device`.
    pub fn load(&mut self, dir: &Path, device: tch::Device) -> Result<()> {
        let jp = dir.join("optimizer.json");
        let bad = |msg: String| NetError::Checkpoint { path: dir.to_path_buf(), msg };
        let text = std::fs::read_to_string(&jp).map_err(|e| io_err(&jp, e))?;
        let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("optimizer.json: {e}")))?;
        let kind: OptimizerKind =
            serde_json::from_value(meta["kind"].clone()).map_err(|e| bad(format!("optimizer.json kind: {e}")))?;
        if kind != self.kind {
            return Err(bad(format!("optimizer is {kind:?}, this run uses {:?}", self.kind)));
        }
        self.step = meta["step"].as_u64().unwrap_or(0);
        let path = dir.join("optimizer.safetensors");
        let tensors = Tensor::read_safetensors(&path).map_err(|e| io_err(&path, e))?;
        self.buf1.clear();
        self.buf2.clear();
        self.buf3.clear();
        for (k, v) in tensors {
            let Some((prefix, name)) = k.split_once('/') else { continue };
            let map = match prefix {
                "buf1" => &mut self.buf1,
                "buf2" => &mut self.buf2,
                "buf3" => &mut self.buf3,
                _ => continue,
            };
            map.insert(name.to_string(), v.to_device(device));
        }
        Ok(())
    }

    /// The momentum buffer (SGD) / first moment (Adam) of a parameter.
    pub fn first_moment(&self, name: &str) -> Option<&Tensor> {
        self.buf1.get(name)
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (torch
/// `clip_grad_norm_`, coefficient `max / (norm + 1e-6)` clamped to 1). No host sync.
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let coef = (Tensor::from(max_norm as f32).to_device(total.device()) / (total + 1e-6)).clamp_max(1.0);
        for mut g in grads {
            let _ = g.g_mul_(&coef);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn param(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).set_requires_grad(true)
    }

    #[test]
    fn sgd_nesterov_matches_torch_formula() {
        // torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01) on
        // f(p) = sum(p²): two steps from p = [1, -2].
        let p = param(&[1.0, -2.0]);
        let params = vec![("p".to_string(), p.shallow_clone())];
        let mut opt = Optimizer::new(OptimizerKind::SgdNesterov, 0.9, 0.01);
        let mut expect = [1.0f64, -2.0];
        let mut buf = [0.0f64; 2];
        for step in 0..2 {
            Optimizer::zero_grad(&params);
            (&p * &p).sum(Kind::Float).backward();
            opt.step(&params, 0.1);
            for i in 0..2 {
                let d = 2.0 * expect[i] + 0.01 * expect[i];
                buf[i] = if step == 0 { d } else { 0.9 * buf[i] + d };
                expect[i] -= 0.1 * (d + 0.9 * buf[i]);
            }
        }
        let got: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
        for i in 0..2 {
            assert!((got[i] as f64 - expect[i]).abs() < 1e-6, "{got:?} {expect:?}");
        }
    }

    #[test]
    fn adam_amsgrad_first_step_is_lr_times_sign() {
        let p = param(&[0.5, -3.0]);
        let params = vec![("p".to_string(), p.shallow_clone())];
        let mut opt = Optimizer::new(OptimizerKind::AdamPlateau, 0.0, 0.0);
        (&p * &p).sum(Kind::Float).backward();
        opt.step(&params, 0.01);
        let got: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
        assert!((got[0] - 0.49).abs() < 1e-5 && (got[1] + 2.99).abs() < 1e-5, "{got:?}");
    }

    #[test]
    fn clip_and_state_roundtrip() {
        let p = param(&[3.0, 4.0]);
        let params = vec![("w".to_string(), p.shallow_clone())];
        (&p * 1.0).sum(Kind::Float).backward(); // grad [1, 1], norm sqrt 2
        let mut g = p.grad();
        tch::no_grad(|| g.copy_(&Tensor::from_slice(&[30.0f32, 40.0])));
        clip_grad_norm(&params, 12.0);
        let got: Vec<f32> = Vec::try_from(&p.grad()).unwrap();
        assert!((got[0] - 7.2).abs() < 1e-3 && (got[1] - 9.6).abs() < 1e-3, "{got:?}");
        let mut opt = Optimizer::new(OptimizerKind::SgdNesterov, 0.99, 3e-5);
        opt.step(&params, 0.01);
        let dir = tempfile::tempdir().unwrap();
        opt.save(dir.path()).unwrap();
        let mut o2 = Optimizer::new(OptimizerKind::SgdNesterov, 0.99, 3e-5);
        o2.load(dir.path(), Device::Cpu).unwrap();
        assert_eq!(o2.step, 1);
        let a = opt.first_moment("w").unwrap();
        let b = o2.first_moment("w").unwrap();
        assert_eq!(Vec::<f32>::try_from(a).unwrap(), Vec::<f32>::try_from(b).unwrap());
        let mut adam = Optimizer::new(OptimizerKind::AdamPlateau, 0.0, 0.0);
        assert!(adam.load(dir.path(), Device::Cpu).is_err());
    }
}

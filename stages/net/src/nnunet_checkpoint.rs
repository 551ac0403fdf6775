//! nnU-Net v2 checkpoints (`fold_N/checkpoint_final.pth`, written by `nnUNetTrainer.save_checkpoint`)
//! read and written without Python: `network_weights` (the network's `state_dict`),
//! `init_args` (plans, configuration, fold, dataset.json), `trainer_name`,
//! `inference_allowed_mirroring_axes`, `current_epoch`.
//!
//! Our networks use nnU-Net's module names, so a state_dict maps onto our variables one to one
//! once its aliases are set aside: dynamic-network-architectures registers every
//! conv-norm-nonlin block's layers twice (`….conv.weight` and `….all_modules.0.weight`) and the
//! decoder keeps a reference to the encoder (`decoder.encoder.…`), so both names appear in the
//! state_dict over the same storage. [`canonical_name`] drops the aliases when reading;
//! [`state_dict_names`] adds them back when writing (`load_state_dict` is strict).

use crate::error::{NetError, Result};
use crate::unet::{build_network, NetOptions, Nonlin, Norm, UNet};
use nnunet_io::pickle::{DType, TensorRef, Value};
use nnunet_io::pth::{f32_tensor, write_pth, PthArchive, StorageData};
use nnunet_prep::plans::Architecture;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// Fields of a checkpoint besides the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct NnunetCheckpointInfo {
    pub trainer_name: String,
    /// `init_args['configuration']`.
    pub configuration: Option<String>,
    /// `init_args['fold']` as text (`0`, `all`).
    pub fold: Option<String>,
    pub inference_allowed_mirroring_axes: Option<Vec<usize>>,
    pub current_epoch: Option<i64>,
    /// Input channels (the first convolution's) and output channels (the segmentation heads').
    pub in_channels: usize,
    pub num_classes: usize,
}

/// A checkpoint's weights: canonical name → (shape, f32 values, C order).
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn ck_err(path: &Path, msg: impl Into<String>) -> NetError {
    NetError::Checkpoint { path: path.to_path_buf(), msg: msg.into() }
}

/// The name our network uses for a state_dict key; `None` for aliases and for buffers our
/// network does not keep (`num_batches_tracked`).
pub fn canonical_name(key: &str) -> Option<String> {
    let key = key.strip_prefix("module.").unwrap_or(key);
    let key = key.strip_prefix("_orig_mod.").unwrap_or(key);
    if key.starts_with("decoder.encoder.") || key.contains(".all_modules.") || key.ends_with(".num_batches_tracked") {
        return None;
    }
    Some(key.to_string())
}

/// The state_dict keys nnU-Net's network has for one of our variable names (the name itself
/// and its aliases), in nnU-Net's order.
pub fn state_dict_names(name: &str) -> Vec<String> {
    let mut base = vec![name.to_string()];
    // `….conv.X` → `….all_modules.0.X`, `….norm.X` → `….all_modules.1.X` (no dropout).
    for (part, idx) in [(".conv.", 0), (".norm.", 1)] {
        if let Some(pos) = name.rfind(part) {
            let tail = &name[pos + part.len()..];
            if !tail.contains('.') {
                base.push(format!("{}.all_modules.{idx}.{tail}", &name[..pos]));
            }
        }
    }
    let mut out = base.clone();
    if name.starts_with("encoder.") {
        out.extend(base.iter().map(|n| format!("decoder.{n}")));
    }
    out
}

fn tensors_of<'a>(v: &'a Value, path: &Path, what: &str) -> Result<Vec<(&'a str, &'a TensorRef)>> {
    let items = v.as_dict().ok_or_else(|| ck_err(path, format!("'{what}' is a {}, not a dict", v.type_name())))?;
    items
        .iter()
        .map(|(k, t)| match (k, t) {
            (Value::Str(k), Value::Tensor(t)) => Ok((k.as_str(), t)),
            (k, t) => {
                Err(ck_err(path, format!("'{what}' holds {} → {}, not name → tensor", k.type_name(), t.type_name())))
            }
        })
        .collect()
}

fn info_of(root: &Value, weights: &[(&str, &TensorRef)], path: &Path) -> Result<NnunetCheckpointInfo> {
    let init = root.get("init_args");
    let axes = match root.get("inference_allowed_mirroring_axes") {
        None | Some(Value::None) => None,
        Some(v) => Some(
            v.as_seq()
                .and_then(|s| s.iter().map(|x| x.as_i64().and_then(|i| usize::try_from(i).ok())).collect())
                .ok_or_else(|| ck_err(path, "inference_allowed_mirroring_axes is not a tuple of axes"))?,
        ),
    };
    let shape_of = |name: &str| {
        weights.iter().find(|(k, _)| canonical_name(k).as_deref() == Some(name)).map(|(_, t)| t.shape.clone())
    };
    let first = shape_of("encoder.stages.0.0.convs.0.conv.weight")
        .or_else(|| shape_of("encoder.stem.convs.0.conv.weight"))
        .ok_or_else(|| ck_err(path, "network_weights has no first encoder convolution (not a U-Net of nnU-Net's)"))?;
    let head = weights
        .iter()
        .filter(|(k, _)| k.contains("decoder.seg_layers.") && k.ends_with(".weight"))
        .map(|(_, t)| t.shape.clone())
        .next()
        .ok_or_else(|| ck_err(path, "network_weights has no segmentation head (decoder.seg_layers)"))?;
    Ok(NnunetCheckpointInfo {
        trainer_name: root.get("trainer_name").and_then(|v| v.as_str()).unwrap_or("nnUNetTrainer").to_string(),
        configuration: init.and_then(|i| i.get("configuration")).and_then(|v| v.as_str()).map(String::from),
        fold: init.and_then(|i| i.get("fold")).and_then(|v| match v {
            Value::Int(i) => Some(i.to_string()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }),
        inference_allowed_mirroring_axes: axes,
        current_epoch: root.get("current_epoch").and_then(|v| v.as_i64()),
        in_channels: first.get(1).copied().unwrap_or(0),
        num_classes: head.first().copied().unwrap_or(0),
    })
}

fn open(path: &Path) -> Result<PthArchive> {
    PthArchive::open(path).map_err(|e| ck_err(path, e.msg))
}

/// Reads the metadata of a checkpoint (no tensor data is read).
pub fn read_info(path: &Path) -> Result<NnunetCheckpointInfo> {
    let a = open(path)?;
    let w = a
        .root
        .get("network_weights")
        .ok_or_else(|| ck_err(path, "has no 'network_weights' (not an nnU-Net checkpoint)"))?;
    let tensors = tensors_of(w, path, "network_weights")?;
    info_of(&a.root, &tensors, path)
}

/// Reads a checkpoint's metadata and weights (aliases dropped, floats as f32).
pub fn read_checkpoint(path: &Path) -> Result<(NnunetCheckpointInfo, Weights)> {
    let mut a = open(path)?;
    let root = a.root.clone();
    let w = root
        .get("network_weights")
        .ok_or_else(|| ck_err(path, "has no 'network_weights' (not an nnU-Net checkpoint)"))?;
    let tensors = tensors_of(w, path, "network_weights")?;
    let info = info_of(&root, &tensors, path)?;
    let mut weights = Weights::new();
    for (k, t) in tensors {
        let Some(name) = canonical_name(k) else { continue };
        if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
            return Err(ck_err(path, format!("{k} is a {:?} tensor; weights must be floating point", t.dtype)));
        }
        let data = a.tensor_f32(t).map_err(|e| ck_err(path, e.msg))?;
        if data.iter().any(|x| !x.is_finite()) {
            return Err(ck_err(path, format!("{k} holds NaN or infinite values")));
        }
        weights.insert(name, (t.shape.clone(), data));
    }
    Ok((info, weights))
}

/// Network options (norm, nonlinearity) from the plans' `arch_kwargs`; refuses what our
/// networks do not build (dropout, other norms or activations, non-default epsilons/slopes).
pub fn net_options_of(arch: &Architecture) -> std::result::Result<NetOptions, String> {
    let a = &arch.arch_kwargs;
    let class = arch.network_class_name.rsplit('.').next().unwrap_or_default();
    if class != "PlainConvUNet" && class != "ResidualEncoderUNet" {
        return Err(format!(
            "network class {} is not supported (PlainConvUNet and ResidualEncoderUNet are)",
            arch.network_class_name
        ));
    }
    let norm = if a.norm_op.contains("InstanceNorm") {
        Norm::Instance
    } else if a.norm_op.contains("BatchNorm") {
        Norm::Batch
    } else if a.norm_op.is_empty() || a.norm_op == "None" {
        Norm::None
    } else {
        return Err(format!("norm_op {} is not supported (InstanceNorm, BatchNorm)", a.norm_op));
    };
    if norm != Norm::None {
        let eps = a.norm_op_kwargs.get("eps").and_then(|e| e.as_f64()).unwrap_or(1e-5);
        if (eps - crate::blocks::NORM_EPS).abs() > 1e-12 {
            return Err(format!("norm eps {eps} is not supported (1e-5 is)"));
        }
        if a.norm_op_kwargs.get("affine").and_then(|v| v.as_bool()) == Some(false) {
            return Err("norms without affine parameters are not supported".into());
        }
    }
    if a.dropout_op.as_deref().is_some_and(|d| !d.is_empty() && d != "None") {
        return Err(format!("dropout ({}) is not supported", a.dropout_op.as_deref().unwrap_or_default()));
    }
    let nonlin = if a.nonlin.ends_with("LeakyReLU") {
        let slope = a.nonlin_kwargs.get("negative_slope").and_then(|s| s.as_f64()).unwrap_or(0.01);
        if (slope - crate::blocks::LEAKY_SLOPE).abs() > 1e-12 {
            return Err(format!("LeakyReLU slope {slope} is not supported (0.01 is)"));
        }
        Nonlin::LeakyRelu
    } else if a.nonlin.ends_with(".ReLU") || a.nonlin == "ReLU" {
        Nonlin::Relu
    } else {
        return Err(format!("nonlin {} is not supported (LeakyReLU, ReLU)", a.nonlin));
    };
    Ok(NetOptions { norm, nonlin, deep_supervision: false })
}

/// Which variables [`load_weights`] set and which it left as they were.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    pub loaded: usize,
    /// Variables left at their initialisation (name and why).
    pub skipped: Vec<(String, String)>,
}

/// How [`load_weights`] treats differences between the network and the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Every variable and every weight must match in name and shape (inference).
    Exact,
    /// nnU-Net's `-pretrained_weights`: every variable outside the segmentation heads must be
    /// there with the same shape; heads are loaded when their shape matches (same label count)
    /// and left fresh otherwise; extra weights are ignored.
    Pretrained,
}

/// Copies `weights` into the variables of `vs` (any device).
pub fn load_weights(vs: &nn::VarStore, weights: &Weights, mode: LoadMode, path: &Path) -> Result<LoadReport> {
    let vars = vs.variables();
    let mut report = LoadReport::default();
    let mut problems = Vec::new();
    for (name, var) in &vars {
        let shape: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
        let head = name.contains("seg_layers.");
        match weights.get(name) {
            Some((s, data)) if *s == shape => {
                let t = Tensor::from_slice(data).view(var.size().as_slice()).to_kind(var.kind());
                tch::no_grad(|| {
                    let mut v = var.shallow_clone();
                    v.copy_(&t);
                });
                report.loaded += 1;
            }
            Some((s, _)) if head && mode == LoadMode::Pretrained => report
                .skipped
                .push((name.clone(), format!("shape {s:?} in the checkpoint, {shape:?} here (fresh head)"))),
            None if head && mode == LoadMode::Pretrained => {
                report.skipped.push((name.clone(), "not in the checkpoint (fresh head)".into()))
            }
            Some((s, _)) => problems.push(format!("{name}: shape {s:?} in the checkpoint, {shape:?} in the network")),
            None => problems.push(format!("{name}: missing from the checkpoint")),
        }
    }
    if mode == LoadMode::Exact {
        for k in weights.keys().filter(|k| !vars.contains_key(*k)) {
            problems.push(format!("{k}: in the checkpoint, not in the network"));
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(5);
        return Err(ck_err(
            path,
            format!(
                "the weights do not fit the network of the plans ({n} difference(s)): {}{}",
                problems.join("; "),
                if n > 5 { "; ..." } else { "" }
            ),
        ));
    }
    Ok(report)
}

/// Weights to start training from (see [`LoadMode::Pretrained`]), and what loading them did.
pub struct Pretrained {
    /// Where the weights came from (for messages and `pretrained.json`).
    pub source: PathBuf,
    pub weights: Weights,
    /// Set by [`Pretrained::apply`].
    pub report: std::sync::Mutex<Option<LoadReport>>,
}

impl std::fmt::Debug for Pretrained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pretrained").field("source", &self.source).field("tensors", &self.weights.len()).finish()
    }
}

impl Pretrained {
    pub fn new(source: PathBuf, weights: Weights) -> Pretrained {
        Pretrained { source, weights, report: std::sync::Mutex::new(None) }
    }

    /// Loads the weights into a freshly built network's variables.
    pub fn apply(&self, vs: &nn::VarStore) -> Result<LoadReport> {
        let r = load_weights(vs, &self.weights, LoadMode::Pretrained, &self.source)?;
        *self.report.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
        Ok(r)
    }
}

/// Weights of one of our checkpoint folders (`model.safetensors`), as [`Weights`].
pub fn read_safetensors(path: &Path) -> Result<Weights> {
    let tensors = Tensor::read_safetensors(path).map_err(|e| ck_err(path, e.to_string()))?;
    let mut w = Weights::new();
    for (name, t) in tensors {
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let data: Vec<f32> = Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view([-1]))
            .map_err(|e: tch::TchError| ck_err(path, e.to_string()))?;
        w.insert(name, (shape, data));
    }
    Ok(w)
}

/// Builds the network of `arch` for inference on `device` and loads an nnU-Net checkpoint into it.
pub fn load_network(
    path: &Path,
    arch: &Architecture,
    device: Device,
) -> Result<(nn::VarStore, UNet, NnunetCheckpointInfo)> {
    let (info, weights) = read_checkpoint(path)?;
    let opts = net_options_of(arch).map_err(|m| ck_err(path, m))?;
    let vs = nn::VarStore::new(device);
    let net = build_network(&vs.root(), arch, info.in_channels as i64, info.num_classes as i64, &opts)?;
    load_weights(&vs, &weights, LoadMode::Exact, path)?;
    Ok((vs, net, info))
}

/// What goes into a written checkpoint besides the weights.
#[derive(Clone, Debug)]
pub struct CheckpointExport {
    /// `init_args`: plans (JSON), configuration, fold, dataset.json (JSON).
    pub plans: serde_json::Value,
    pub configuration: String,
    pub fold: String,
    pub dataset_json: serde_json::Value,
    pub trainer_name: String,
    pub inference_allowed_mirroring_axes: Vec<usize>,
    pub current_epoch: i64,
}

/// The state_dict of `vs` under nnU-Net's names (aliases share storages), as pickle tensors.
fn state_dict(vs: &nn::VarStore, norm: Norm) -> Result<(Value, Vec<StorageData>)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    // nnU-Net's order: encoder, then decoder (stages, transpconvs, seg_layers); within a block
    // conv before norm. Sorting by a numeric-aware key is close enough (load_state_dict does
    // not care about order).
    vars.sort_by_key(|(n, _)| sort_key(n));
    let mut storages = Vec::new();
    let mut items: Vec<(String, Value)> = Vec::new();
    let mut decoder_aliases = Vec::new();
    for (i, (name, t)) in vars.iter().enumerate() {
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let flat = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
        let data: Vec<f32> = Vec::<f32>::try_from(&flat).map_err(NetError::Torch)?;
        let (s, tref) = f32_tensor(&i.to_string(), &shape, &data);
        storages.push(s);
        for alias in state_dict_names(name) {
            let entry = (alias.clone(), Value::Tensor(tref.clone()));
            if alias.starts_with("decoder.encoder.") {
                decoder_aliases.push(entry);
            } else {
                items.push(entry);
            }
        }
    }
    if norm == Norm::Batch {
        // BatchNorm's step counter (a buffer our network does not keep): 0.
        let key = storages.len().to_string();
        storages.push(StorageData { key: key.clone(), dtype: DType::I64, bytes: 0i64.to_le_bytes().to_vec() });
        let t =
            TensorRef { storage: key, dtype: DType::I64, storage_numel: 1, offset: 0, shape: vec![], stride: vec![] };
        let mut extra = Vec::new();
        for (k, _) in items.iter().chain(&decoder_aliases) {
            if let Some(p) = k.strip_suffix(".running_mean") {
                extra.push((format!("{p}.num_batches_tracked"), Value::Tensor(t.clone())));
            }
        }
        items.extend(extra.iter().filter(|(k, _)| !k.starts_with("decoder.encoder.")).cloned());
        decoder_aliases.extend(extra.into_iter().filter(|(k, _)| k.starts_with("decoder.encoder.")));
    }
    // decoder.encoder.* sits between the encoder and the decoder's own modules.
    let split = items.iter().position(|(k, _)| k.starts_with("decoder.")).unwrap_or(items.len());
    let tail = items.split_off(split);
    items.extend(decoder_aliases);
    items.extend(tail);
    let dict = Value::Dict { items: items.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(), ordered: true };
    Ok((dict, storages))
}

fn sort_key(name: &str) -> Vec<(u8, u64, String)> {
    let rank = |p: &str| match p {
        "encoder" => 0,
        "stem" => 0,
        "stages" => 1,
        "decoder" => 2,
        "transpconvs" => 2,
        "seg_layers" => 3,
        "conv" | "conv1" => 0,
        "conv2" => 1,
        "skip" => 2,
        "norm" => 1,
        _ => 1,
    };
    name.split('.')
        .map(|p| match p.parse::<u64>() {
            Ok(i) => (0, i, String::new()),
            Err(_) => (1, rank(p), p.to_string()),
        })
        .collect()
}

/// Writes our network's weights as an nnU-Net checkpoint `path` (`torch.load` reads it,
/// `nnUNetv2_predict` loads it into the network of the plans).
pub fn write_checkpoint(path: &Path, vs: &nn::VarStore, norm: Norm, ex: &CheckpointExport) -> Result<()> {
    let (weights, storages) = state_dict(vs, norm)?;
    let s = |x: &str| Value::Str(x.to_string());
    let fold = match ex.fold.parse::<i64>() {
        Ok(i) => Value::Int(i),
        Err(_) => s(&ex.fold),
    };
    let init_args = Value::dict(vec![
        (s("plans"), Value::from_json(&ex.plans)),
        (s("configuration"), s(&ex.configuration)),
        (s("fold"), fold),
        (s("dataset_json"), Value::from_json(&ex.dataset_json)),
    ]);
    let root = Value::dict(vec![
        (s("network_weights"), weights),
        (s("optimizer_state"), Value::None),
        (s("grad_scaler_state"), Value::None),
        (s("logging"), Value::dict(vec![])),
        (s("_best_ema"), Value::None),
        (s("current_epoch"), Value::Int(ex.current_epoch)),
        (s("init_args"), init_args),
        (s("trainer_name"), s(&ex.trainer_name)),
        (
            s("inference_allowed_mirroring_axes"),
            Value::Tuple(ex.inference_allowed_mirroring_axes.iter().map(|&a| Value::Int(a as i64)).collect()),
        ),
    ]);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| crate::error::io_err(parent, e))?;
    }
    write_pth(path, &root, &storages).map_err(|e| ck_err(path, e.msg))
}

/// The key set nnU-Net's state_dict has for the variables of `vs` (tests compare it with
/// checkpoints nnU-Net wrote).
pub fn expected_state_dict_keys(vs: &nn::VarStore) -> BTreeSet<String> {
    vs.variables().keys().flat_map(|n| state_dict_names(n)).collect()
}

#[cfg(test)]
mod tests;

//! What the predictor needs from a network, and reading a checkpoint folder's `meta.json`.
//!
//! A checkpoint is one of our folders (`model.safetensors` and `meta.json`: `in_channels`,
//! `num_classes`, network options, `inference_allowed_mirroring_axes`) or an nnU-Net v2
//! `checkpoint_*.pth` file (see [`is_nnunet_checkpoint`]). Building the network from it is the
//! network crate's job; [`NetworkLoader`] is the seam.

use crate::error::{InferError, Result};
use nnunet_prep::plans::Architecture;
use std::path::Path;
use tch::{Device, Tensor};

/// A segmentation network in inference mode: `[N, C_in, (Z,) Y, X]` → `[N, K, (Z,) Y, X]`
/// logits at full resolution (deep supervision off).
pub trait SegNetwork: Send {
    fn forward(&self, x: &Tensor) -> Tensor;
}

/// Every tch module works, in eval mode (`train = false`).
impl<T: tch::nn::ModuleT> SegNetwork for T {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_t(x, false)
    }
}

/// Builds the network of one checkpoint folder on a device.
pub type NetworkLoader<'a> =
    &'a dyn Fn(&Path, &Architecture, Device) -> std::result::Result<Box<dyn SegNetwork>, String>;

/// A trained network kept alive with its weights (the `VarStore` owns the tensors).
struct LoadedNetwork {
    _vs: tch::nn::VarStore,
    net: nnunet_net::unet::UNet,
}

impl SegNetwork for LoadedNetwork {
    fn forward(&self, x: &Tensor) -> Tensor {
        tch::nn::ModuleT::forward_t(&self.net, x, false)
    }
}

/// Whether `path` is an nnU-Net checkpoint file (`fold_N/checkpoint_final.pth`) rather than
/// one of our checkpoint folders.
pub fn is_nnunet_checkpoint(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "pth") && !path.is_dir()
}

/// The [`NetworkLoader`] of our checkpoint folders (`model.safetensors` + `meta.json`) and of
/// nnU-Net `.pth` checkpoints (built from the configuration's `architecture`): the network,
/// on `device`, for inference.
pub fn load_checkpoint(
    dir: &Path,
    arch: &Architecture,
    device: Device,
) -> std::result::Result<Box<dyn SegNetwork>, String> {
    if is_nnunet_checkpoint(dir) {
        let (vs, net, _info) =
            nnunet_net::nnunet_checkpoint::load_network(dir, arch, device).map_err(|e| e.to_string())?;
        return Ok(Box::new(LoadedNetwork { _vs: vs, net }));
    }
    let (vs, net, _meta) = nnunet_net::checkpoint::load_network(dir, arch, device).map_err(|e| e.to_string())?;
    Ok(Box::new(LoadedNetwork { _vs: vs, net }))
}

/// The fields of `meta.json` the predictor uses.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Axes mirrored at test time (`None`: all spatial axes of the configuration).
    pub inference_allowed_mirroring_axes: Option<Vec<usize>>,
}

pub const CHECKPOINT_WEIGHTS: &str = "model.safetensors";
pub const CHECKPOINT_META: &str = "meta.json";

impl CheckpointMeta {
    /// Reads `dir/meta.json` (or an nnU-Net `.pth`'s metadata); fails naming the folder when it
    /// or `model.safetensors` is missing.
    pub fn read(dir: &Path) -> Result<CheckpointMeta> {
        let bad = |msg: String| InferError::Checkpoint { path: dir.to_path_buf(), msg };
        if is_nnunet_checkpoint(dir) {
            let i = nnunet_net::nnunet_checkpoint::read_info(dir).map_err(|e| bad(e.to_string()))?;
            return Ok(CheckpointMeta {
                in_channels: i.in_channels,
                num_classes: i.num_classes,
                inference_allowed_mirroring_axes: i.inference_allowed_mirroring_axes,
            });
        }
        if !dir.join(CHECKPOINT_WEIGHTS).is_file() {
            return Err(bad(format!("{CHECKPOINT_WEIGHTS} is missing")));
        }
        let p = dir.join(CHECKPOINT_META);
        let text = std::fs::read_to_string(&p).map_err(|e| bad(format!("{CHECKPOINT_META}: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("{CHECKPOINT_META}: {e}")))?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
        let in_channels = get("in_channels").ok_or_else(|| bad(format!("{CHECKPOINT_META}: no \"in_channels\"")))?;
        let num_classes = get("num_classes").ok_or_else(|| bad(format!("{CHECKPOINT_META}: no \"num_classes\"")))?;
        let axes = match v.get("inference_allowed_mirroring_axes") {
            None | Some(serde_json::Value::Null) => None,
            Some(a) => Some(
                a.as_array()
                    .and_then(|l| l.iter().map(|x| x.as_u64().map(|x| x as usize)).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| bad("\"inference_allowed_mirroring_axes\" must be a list of axes".into()))?,
            ),
        };
        Ok(CheckpointMeta { in_channels, num_classes, inference_allowed_mirroring_axes: axes })
    }
}

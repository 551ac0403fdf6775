//! What the predictor needs from a network, and the loader of our checkpoint folders.
//!
//! A checkpoint is one of our folders (`model.safetensors` and `meta.json`, described by
//! `nnunet_net::checkpoint::CheckpointMeta`, re-exported here) or an nnU-Net v2
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

/// A checkpoint folder's `meta.json`: the network crate's type, the one description of it.
pub use nnunet_net::checkpoint::CheckpointMeta;
/// File names inside a checkpoint folder.
pub use nnunet_net::checkpoint::{META as CHECKPOINT_META, WEIGHTS as CHECKPOINT_WEIGHTS};

/// What the predictor needs from a checkpoint, whichever its format: read from our folder's
/// `meta.json` ([`CheckpointMeta`]) or from an nnU-Net `.pth`'s `init_args` and weights.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointInfo {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Axes mirrored at test time (`None`: all spatial axes of the configuration).
    pub inference_allowed_mirroring_axes: Option<Vec<usize>>,
}

impl CheckpointInfo {
    /// Reads our folder's `meta.json` or an nnU-Net `.pth`'s metadata; fails naming the
    /// checkpoint when it or its weights are missing or unreadable.
    pub fn read(dir: &Path) -> Result<CheckpointInfo> {
        let bad = |msg: String| InferError::Checkpoint { path: dir.to_path_buf(), msg };
        if is_nnunet_checkpoint(dir) {
            let i = nnunet_net::nnunet_checkpoint::read_info(dir).map_err(|e| bad(e.to_string()))?;
            return Ok(CheckpointInfo {
                in_channels: i.in_channels,
                num_classes: i.num_classes,
                inference_allowed_mirroring_axes: i.inference_allowed_mirroring_axes,
            });
        }
        let m = nnunet_net::checkpoint::read_meta(dir).map_err(|e| bad(e.to_string()))?;
        Ok(CheckpointInfo {
            in_channels: m.in_channels,
            num_classes: m.num_classes,
            inference_allowed_mirroring_axes: m.inference_allowed_mirroring_axes,
        })
    }
}

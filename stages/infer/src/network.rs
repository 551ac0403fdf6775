//! What the predictor needs from a network, and the loader of our checkpoint folders.
//!
//! A checkpoint folder holds `model.safetensors` and `meta.json`, described by
//! `nnunet_net::checkpoint::CheckpointMeta` (re-exported here). Building the network from it is
//! the network crate's job; [`NetworkLoader`] is the seam.

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

/// The [`NetworkLoader`] of our checkpoint folders (`model.safetensors` + `meta.json`): builds
/// the network `nnunet_net` trained, on `device`, for inference.
pub fn load_checkpoint(
    dir: &Path,
    arch: &Architecture,
    device: Device,
) -> std::result::Result<Box<dyn SegNetwork>, String> {
    let (vs, net, _meta) = nnunet_net::checkpoint::load_network(dir, arch, device).map_err(|e| e.to_string())?;
    Ok(Box::new(LoadedNetwork { _vs: vs, net }))
}

/// A checkpoint folder's `meta.json`: the network crate's type, the one description of it.
pub use nnunet_net::checkpoint::CheckpointMeta;
/// File names inside a checkpoint folder.
pub use nnunet_net::checkpoint::{META as CHECKPOINT_META, WEIGHTS as CHECKPOINT_WEIGHTS};

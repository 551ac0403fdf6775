//! Checkpoint folders (the contract with inference; `nnunet_infer` reads them through
//! [`CheckpointMeta`] and [`load_network`]): `checkpoint_X/model.safetensors` plus
//! `checkpoint_X/meta.json` ([`CheckpointMeta`]). The resumable `checkpoint_latest` also holds
//! `optimizer.safetensors`, `optimizer.json` and `state.json`.
//!
//! Writes are crash-safe: the folder is written as `checkpoint_X.tmp`, every file fsynced, the
//! old folder renamed to `checkpoint_X.old`, the new one renamed into place, then the old one
//! removed. At every instant either `checkpoint_X` or `checkpoint_X.old` is complete;
//! [`recover`] restores the `.old` one when the kill fell between the renames.

use crate::error::{io_err, NetError, Result};
use crate::unet::{build_network, cap_features, NetOptions, UNet};
use nnunet_prep::plans::Architecture;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use tch::{nn, Device};

pub const WEIGHTS: &str = "model.safetensors";
pub const META: &str = "meta.json";
pub const STATE: &str = "state.json";
pub const LATEST: &str = "checkpoint_latest";
pub const BEST: &str = "checkpoint_best";
pub const FINAL: &str = "checkpoint_final";

/// `meta.json` of a checkpoint folder: the one description of it, written by the trainer and
/// read by inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub configuration: String,
    pub in_channels: usize,
    pub num_classes: usize,
    pub net_options: NetOptions,
    /// Axes mirrored at test time (absent: all spatial axes of the configuration).
    #[serde(default)]
    pub inference_allowed_mirroring_axes: Option<Vec<usize>>,
    /// The last completed epoch (0-based).
    pub epoch: usize,
    #[serde(default)]
    pub features_cap: Option<i64>,
    /// The architecture the weights belong to (features cap applied).
    #[serde(default)]
    pub architecture: Option<Architecture>,
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn fsync(path: &Path) -> Result<()> {
    nnunet_io::fsio::fsync(path).map_err(|e| io_err(path, e))
}

/// Restores `dir` from `dir.old` after a crash between the two renames; removes a stale
/// `dir.tmp`.
pub fn recover(dir: &Path) -> Result<()> {
    let old = sibling(dir, ".old");
    let tmp = sibling(dir, ".tmp");
    if !dir.exists() && old.is_dir() {
        fs::rename(&old, dir).map_err(|e| io_err(&old, e))?;
    } else if dir.exists() && old.exists() {
        fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
    }
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    Ok(())
}

/// Writes a checkpoint folder atomically: `fill(tmp_dir)` writes the files.
pub fn write_atomic(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = sibling(dir, ".tmp");
    let old = sibling(dir, ".old");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    fill(&tmp)?;
    for e in fs::read_dir(&tmp).map_err(|e| io_err(&tmp, e))? {
        let p = e.map_err(|e| io_err(&tmp, e))?.path();
        fsync(&p)?;
    }
    fsync(&tmp)?;
    if dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
        }
        fs::rename(dir, &old).map_err(|e| io_err(dir, e))?;
    }
    fs::rename(&tmp, dir).map_err(|e| io_err(&tmp, e))?;
    if let Some(parent) = dir.parent() {
        let _ = fsync(parent);
    }
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
    }
    Ok(())
}

/// Writes weights and meta into a (temporary) folder.
pub fn write_weights(dir: &Path, vs: &nn::VarStore, meta: &CheckpointMeta) -> Result<()> {
    let w = dir.join(WEIGHTS);
    vs.save(&w).map_err(|e| io_err(&w, e))?;
    write_json(&dir.join(META), meta)
}

/// Writes pretty JSON through a temporary file and a rename (never a half-written file).
pub(crate) fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    nnunet_io::fsio::write_json(path, v).map_err(|e| io_err(path, e))
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    nnunet_io::fsio::read_json(path).map_err(|e| io_err(path, e))
}

impl CheckpointMeta {
    /// Reads `dir/meta.json`; fails naming the folder when it or `model.safetensors` is missing.
    pub fn read(dir: &Path) -> Result<CheckpointMeta> {
        read_meta(dir)
    }
}

/// Reads `dir/meta.json`.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    if !dir.join(WEIGHTS).is_file() {
        return Err(NetError::Checkpoint { path: dir.to_path_buf(), msg: format!("{WEIGHTS} is missing") });
    }
    read_json(&dir.join(META)).map_err(|e| NetError::Checkpoint { path: dir.to_path_buf(), msg: e.to_string() })
}

/// The epoch a run in `out_dir` resumes at (epochs completed per `checkpoint_latest`), if any.
pub fn latest_epoch(out_dir: &Path) -> Option<usize> {
    let dir = out_dir.join(LATEST);
    let dir = if dir.is_dir() { dir } else { sibling(&dir, ".old") };
    read_meta(&dir).ok().map(|m| m.epoch + 1)
}

/// Builds the network of a checkpoint folder for inference (deep supervision off) on `device`.
/// The architecture stored in `meta.json` (features cap applied) wins over `arch`.
pub fn load_network(dir: &Path, arch: &Architecture, device: Device) -> Result<(nn::VarStore, UNet, CheckpointMeta)> {
    let meta = read_meta(dir)?;
    let arch = match &meta.architecture {
        Some(a) => a.clone(),
        None => cap_features(arch, meta.features_cap),
    };
    let mut vs = nn::VarStore::new(device);
    let opts = NetOptions { deep_supervision: false, ..meta.net_options };
    let net = build_network(&vs.root(), &arch, meta.in_channels as i64, meta.num_classes as i64, &opts)?;
    let w = dir.join(WEIGHTS);
    vs.load(&w).map_err(|e| NetError::Checkpoint { path: dir.to_path_buf(), msg: format!("{WEIGHTS}: {e}") })?;
    Ok((vs, net, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::tests::hippocampus;
    use tch::{Kind, Tensor};

    fn meta(epoch: usize) -> CheckpointMeta {
        CheckpointMeta {
            configuration: "3d_fullres".into(),
            in_channels: 1,
            num_classes: 3,
            net_options: NetOptions::default(),
            inference_allowed_mirroring_axes: Some(vec![0, 1, 2]),
            epoch,
            features_cap: Some(16),
            architecture: None,
        }
    }

    #[test]
    fn save_load_roundtrip_and_inference_net() {
        let dir = tempfile::tempdir().unwrap();
        let arch = cap_features(&hippocampus(), Some(16));
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build_network(&vs.root(), &arch, 1, 3, &NetOptions::default()).unwrap();
        let ck = dir.path().join(FINAL);
        write_atomic(&ck, |d| write_weights(d, &vs, &meta(4))).unwrap();
        // Loading applies the stored features cap to the plans' architecture.
        let (_vs2, net2, m) = load_network(&ck, &hippocampus(), Device::Cpu).unwrap();
        assert_eq!(m.epoch, 4);
        assert!(!net2.deep_supervision());
        let x = Tensor::randn([1, 1, 8, 8, 8], (Kind::Float, Device::Cpu));
        let a = tch::no_grad(|| net.forward_t(&x, false).swap_remove(0));
        let b = tch::no_grad(|| nn::ModuleT::forward_t(&net2, &x, false));
        assert!((a - b).abs().max().double_value(&[]) < 1e-6);
        assert_eq!(CheckpointMeta::read(&ck).unwrap(), meta(4));
        // A meta.json without mirroring axes (all axes) still reads.
        let mut v: serde_json::Value = read_json(&ck.join(META)).unwrap();
        v.as_object_mut().unwrap().remove("inference_allowed_mirroring_axes");
        write_json(&ck.join(META), &v).unwrap();
        assert_eq!(CheckpointMeta::read(&ck).unwrap().inference_allowed_mirroring_axes, None);
    }

    #[test]
    fn crash_between_renames_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _ =
            build_network(&vs.root(), &cap_features(&hippocampus(), Some(8)), 1, 3, &NetOptions::default()).unwrap();
        let latest = dir.path().join(LATEST);
        write_atomic(&latest, |d| write_weights(d, &vs, &meta(1))).unwrap();
        assert_eq!(latest_epoch(dir.path()), Some(2));
        // Simulate a kill after `latest -> latest.old` and before `tmp -> latest`.
        fs::rename(&latest, sibling(&latest, ".old")).unwrap();
        fs::create_dir_all(sibling(&latest, ".tmp")).unwrap();
        fs::write(sibling(&latest, ".tmp").join(WEIGHTS), b"partial").unwrap();
        assert_eq!(latest_epoch(dir.path()), Some(2));
        recover(&latest).unwrap();
        assert!(latest.is_dir() && !sibling(&latest, ".tmp").exists() && !sibling(&latest, ".old").exists());
        assert_eq!(read_meta(&latest).unwrap().epoch, 1);
        // A failing writer leaves the previous checkpoint intact.
        let r = write_atomic(&latest, |_| Err(NetError::Invalid("disk full".into())));
        assert!(r.is_err());
        assert_eq!(read_meta(&latest).unwrap().epoch, 1);
        assert!(read_meta(&dir.path().join("nope")).is_err());
    }
}

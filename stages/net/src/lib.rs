//! nnU-Net v2 networks, losses, augmentation, patch sampling and the fold trainer (tch).
//!
//! - [`unet`] / [`blocks`]: PlainConvUNet and ResidualEncoderUNet from the plans (§6).
//! - [`loss`]: DC_and_CE, DC_and_BCE (regions), ignore label, deep supervision (§7.1).
//! - [`augment`]: the training transform chain in pure Rust on f32 buffers (§8.2).
//! - [`sampler`]: nnU-Net's patch sampling with foreground oversampling (§8.1).
//! - [`loader`]: multithreaded, deterministic batch production.
//! - [`trainer`]: the fold trainer (§7), with [`schedule`], [`optim`], [`checkpoint`], [`plot`].
//! - [`nnunet_checkpoint`]: nnU-Net v2 `.pth` checkpoints read into and written from our networks.
//! - [`split`]: the 5-fold cross-validation split (§7.4), re-exported from `nnunet_prep`.
//! - [`bench`]: timing helpers for augmentation and train steps.
pub mod augment;
pub mod bench;
pub mod blocks;
pub mod checkpoint;
pub mod error;
pub mod loader;
pub mod loss;
pub mod metrics;
pub mod nnunet_checkpoint;
pub mod optim;
pub mod plot;
pub mod sampler;
pub mod schedule;
/// Cross-validation splits live with the planning code (the plan stage writes them).
pub use nnunet_prep::split;
pub mod trainer;
pub mod unet;

pub use error::{NetError, Result};

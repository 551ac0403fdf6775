//! nnU-Net v2 inference (reference §9): sliding-window prediction with Gaussian weighting and
//! mirroring, fold ensembling, export to the original geometry, model bundles.
//!
//! - [`sliding_window`]: tile positions, padding, Gaussian importance map, TTA, accumulation.
//! - [`export`]: logits → segmentation / probabilities on the original voxel grid, writers.
//! - [`predictor`]: [`Predictor`] (one network per fold), preprocessing for inference, cascade.
//! - [`network`]: the [`SegNetwork`] seam and checkpoint `meta.json`.
//! - [`bundle`]: self-contained `.tar` model bundles with a blake3 manifest.
//! - [`model`]: a trained [`Model`] (plans, labels, chosen configuration(s), folds,
//!   post-processing) and [`predict_cases`], the loop that segments new images with it.
//! - [`nnunet_folder`]: nnU-Net v2 model folders (`.pth` checkpoints) and results folders as models.
//! - [`bench`]: per-case prediction timing.
//!
//! Domain crate: plain functions and types, no engine imports.

pub mod bench;
pub mod bundle;
pub mod error;
pub mod export;
pub mod host;
pub mod memory;
pub mod model;
pub mod network;
pub mod nnunet_folder;
pub mod predictor;
pub mod sliding_window;
pub mod tar;

pub use bundle::{export_bundle, load_bundle, BundleConfiguration, BundleManifest, BundleParts, LoadedBundle};
pub use error::{InferError, Result};
pub use export::{export_prediction, write_segmentation, Exported, Logits, Probabilities};
pub use model::{predict_cases, CaseTiming, ConfigurationSource, Model, ModelConfiguration, PredictOptions};
pub use network::{CheckpointInfo, CheckpointMeta, NetworkLoader, SegNetwork};
pub use predictor::{CaseOptions, CasePrediction, LabelSpec, Predictor};
pub use sliding_window::{
    compute_steps, gaussian_importance_map, predict_sliding_window, predict_sliding_window_logits, Accumulation,
    SlidingWindowOptions,
};

//! nnU-Net v2 evaluation (reference §10, §11): per-case metrics, `summary.json`, connected
//! components and the postprocessing search, model/ensemble selection.
//!
//! - [`metrics`]: TP/FP/FN/TN, Dice, IoU per case and label/region (ignore label excluded).
//! - [`summary`]: case-averaged means, `foreground_mean`, nnU-Net-identical `summary.json`,
//!   per-case Parquet rows.
//! - [`folder`]: [`evaluate_folder`], predictions matched to references by file name.
//! - [`components`]: 3D connected components (26-connectivity), keep-largest with ties.
//! - [`postprocess`]: `determine_postprocessing` (§10.2) and [`apply_postprocessing`].
//! - [`ensemble`]: best configuration / pair ensemble selection (§10.1), probability averaging.
//! - [`crossval`]: merging the folds' validation predictions and scoring configurations and
//!   pair ensembles on them (`find_best_configuration`).
//! - [`segmentation`]: scores -> label map (argmax or region painting).
//! - [`paired`]: paired per-case comparison of two models (bootstrap CI, Wilcoxon signed-rank).
//!
//! Domain crate: plain functions and types, no engine imports, no tch.

pub mod classes;
pub mod components;
pub mod crossval;
pub mod ensemble;
pub mod error;
pub mod folder;
pub mod metrics;
pub mod paired;
pub mod postprocess;
pub mod pyjson;
pub mod segmentation;
pub mod summary;

pub use classes::LabelOrRegion;
pub use components::{keep_largest_component, label_components, Components, Connectivity};
pub use ensemble::{average_probabilities, select_best, Candidate, Selection};
pub use error::{EvalError, Result};
pub use folder::{evaluate_folder, evaluate_folder_with};
pub use metrics::{case_metrics, Metrics};
pub use postprocess::{
    apply_postprocessing, determine_postprocessing, determine_postprocessing_folder, CasePair, PostprocessingDecision,
    PostprocessingOutcome, PostprocessingStep,
};
pub use segmentation::{scores_to_segmentation, ScoreKind, SegmentationMode};
pub use summary::{CaseResult, MeanMetrics, Summary};

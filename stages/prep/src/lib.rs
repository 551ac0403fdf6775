//! nnU-Net v2 self-configuration: fingerprint, experiment planner, normalization, resampling,
//! and the preprocessed case store.
//!
//! Every number that must match nnU-Net carries a comment naming the rule in
//! `shared/reference/nnunet-v2.md`. Domain crate: plain functions and types, no engine imports.
//!
//! Pipeline per dataset:
//! 1. [`fingerprint::CaseFingerprint::compute`] per case → [`fingerprint::aggregate`];
//! 2. [`planner::plan_experiment`] → [`plans::Plans`];
//! 3. [`preprocess::normalize_case`] per case (configuration independent);
//! 4. [`preprocess::resample_case`] per case and configuration → [`store::write_preprocessed`];
//! 5. training reads patches through [`store::CaseStore`].

pub mod class_locations;
pub mod crop;
pub mod error;
pub mod fingerprint;
pub mod normalize;
pub mod planner;
pub mod plans;
pub mod preprocess;
pub mod resample;
/// The PRNG is `nnunet_io::rng` (one for the whole pipeline).
pub use nnunet_io::rng;
pub mod split;
pub mod stats;
pub mod store;
pub mod stream;
pub mod topology;
pub mod vram;

pub use error::{PrepError, Result};
pub use fingerprint::{aggregate, CaseFingerprint, DatasetFingerprint, ValueCounts};
pub use planner::{plan_experiment, DatasetInfo, PlanError, PlannerKind, PlannerOptions};
pub use preprocess::{
    normalize_case, resample_case, resample_case_with, CaseProperties, NormalizedCase, PreprocessedCase,
    ResampleCaseOptions,
};
pub use store::{open_dataset_store, CaseStore};

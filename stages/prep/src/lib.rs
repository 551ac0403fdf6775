//! nnU-Net v2 self-configuration: fingerprint, planner, normalization, resampling.
pub mod plans;

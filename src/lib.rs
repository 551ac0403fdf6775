//! The pipeline engine: the `pipeline.yaml` model, the unit graph, content-addressed keys, the
//! artifact cache, executors, the stage-kind adapters and the CLI commands.
//!
//! libtorch is not part of this library: `pipeline-torch` (the `torch/` package) adds the
//! training and prediction adapters through [`torch::install`].
//!
//! Architecture invariant: the domain (image I/O, planning, networks, metrics) lives in the
//! `stages/` crates and knows nothing of this crate. Everything here is orchestration.

pub mod alloc;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dag;
pub mod fsutil;
pub mod key;
pub mod kind;
pub mod kinds;
pub mod memory;
pub mod outputs;
pub mod params;
pub mod progress;
pub mod runner;
pub mod scheduler;
pub mod session;
pub mod slurm;
pub mod statcache;
pub mod sweep;
#[cfg(test)]
pub(crate) mod testutil;
pub mod torch;

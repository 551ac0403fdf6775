//! Errors of the network crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A preprocessed case that cannot be read.
    #[error("case {case}: {msg}")]
    Case { case: String, msg: String },
    /// A file or folder that cannot be read or written.
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    /// A checkpoint folder that cannot be used.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error(transparent)]
    Arch(#[from] crate::unet::ArchError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// Inconsistent inputs (no cases, channel mismatch, ...).
    #[error("{0}")]
    Invalid(String),
    /// The per-epoch callback failed.
    #[error("epoch callback: {0}")]
    Callback(String),
    /// A batch-producing worker panicked or stopped.
    #[error("data loader: {0}")]
    Loader(String),
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> NetError {
    NetError::Io { path: path.to_path_buf(), msg: e.to_string() }
}

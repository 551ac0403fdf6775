//! Error type of the preprocessing crate.

use std::path::PathBuf;

/// Errors raised by cropping, fingerprinting, normalization, resampling and the case store.
#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    /// Channels / label of one case disagree in shape, or a shape is empty.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Image data contains NaN (nnU-Net rejects such cases, §1.1).
    #[error("{0} contains NaN values")]
    NaN(String),
    /// A value outside what a normalization scheme accepts (e.g. rgb_to_0_1 outside [0, 255]).
    #[error("normalization: {0}")]
    Normalization(String),
    /// The plans are missing something preprocessing needs.
    #[error("plans: {0}")]
    Plans(String),
    /// An option combination this implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A configuration could not be resolved from the plans.
    #[error(transparent)]
    PlansLookup(#[from] crate::plans::PlansError),
    /// Reading or writing a case store.
    #[error("{path}: {msg}")]
    Store {
        /// The store directory or file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The underlying Zarr store failed.
    #[error(transparent)]
    Zarr(#[from] nnunet_io::zarr::ZarrError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, PrepError>;

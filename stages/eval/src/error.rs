//! Errors of the evaluation crate. Every variant names the file(s) concerned.

use nnunet_io::nifti::NiftiError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Nifti(#[from] NiftiError),
    #[error(transparent)]
    Image(#[from] nnunet_io::image::ImageError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("prediction {prediction} has no reference segmentation: {reference} does not exist")]
    MissingReference { prediction: PathBuf, reference: PathBuf },
    #[error("geometry mismatch between reference {reference} and prediction {prediction}: {detail}")]
    Geometry { reference: PathBuf, prediction: PathBuf, detail: String },
    #[error("{dir}: no predictions ending in \"{ending}\"")]
    NoPredictions { dir: PathBuf, ending: String },
    #[error("{path}: invalid summary.json: {msg}")]
    SummaryFormat { path: PathBuf, msg: String },
    #[error("{path}: invalid postprocessing decision: {msg}")]
    DecisionFormat { path: PathBuf, msg: String },
    #[error(transparent)]
    Table(#[from] nnunet_io::table::TableError),
    /// Inputs that do not fit together (shapes, channel counts, empty class list, ...).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, EvalError>;

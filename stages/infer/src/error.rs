//! Errors of the inference crate. Every variant names the file, case or option concerned.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// Inputs that do not fit together (shapes, channel counts, options).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Prep(#[from] nnunet_prep::PrepError),
    #[error(transparent)]
    Plans(#[from] nnunet_prep::plans::PlansError),
    #[error(transparent)]
    Eval(#[from] nnunet_eval::EvalError),
    #[error(transparent)]
    Nifti(#[from] nnunet_io::nifti::NiftiError),
    #[error(transparent)]
    Image(#[from] nnunet_io::image::ImageError),
    #[error(transparent)]
    Zarr(#[from] nnunet_io::zarr::ZarrError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Net(#[from] nnunet_net::NetError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file operation of `nnunet_io::fsio` (its message names the path).
    #[error(transparent)]
    File(#[from] std::io::Error),
    /// A checkpoint folder that cannot be used.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A model bundle that cannot be written or loaded.
    #[error("bundle {path}: {msg}")]
    Bundle { path: PathBuf, msg: String },
    /// The predicted logits contain inf (fp16 overflow, §9.2 step 5).
    #[error("the predicted logits contain inf; use fp32 accumulation")]
    NonFinite,
}

pub type Result<T> = std::result::Result<T, InferError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> InferError + '_ {
    move |source| InferError::Io { path: path.to_path_buf(), source }
}

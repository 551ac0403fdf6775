//! Why a report could not be written. Missing or malformed *stage* files are not errors: the
//! report says what is missing instead. Only an unreadable `run.json` and failures to write the
//! report itself stop it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}: no run.json here; expected a run folder (runs/NAME) written by `pipeline run`")]
    NoRunJson(PathBuf),
    #[error("{path}: {msg}")]
    RunJson { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, ReportError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.to_path_buf(), source }
}

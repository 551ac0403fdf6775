//! The libtorch half of the program, seen from the engine.
//!
//! The project builds two binaries. `pipeline` is the engine and every stage that does not
//! need libtorch (fingerprint, plan, preprocessing, selection, post-processing, evaluation,
//! reports, Slurm submission). `pipeline-torch` is the same program plus the libtorch adapters
//! (training, prediction, the device and model-bench commands); it installs them here with
//! [`install`] before dispatching the same command line.
//!
//! Loading libtorch costs every process ~0.2 s of static initialisation (its operator registry)
//! and ~110 MB of resident memory before `main`, which used to be a tenth of a cold Hippocampus
//! preprocessing run and most of a cached rerun. So `pipeline` never links it: when a command,
//! or a run with a libtorch unit left to build, needs it, [`handoff`] replaces the process with
//! `pipeline-torch` (same arguments, same environment, nothing written yet).
//!
//! Architecture invariant: nothing in this crate's library imports `tch`, `nnunet-net` or
//! `nnunet-infer`, and cannot: the package's manifest does not list them. `tests/engine.rs`
//! (`engine_binary_does_not_link_libtorch_and_hands_over`) also checks the built binary.

use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::cli::Command;
use crate::kind::RunCtx;

/// What `pipeline-torch` adds to the engine.
pub trait TorchUnits: Send + Sync {
    /// Runs a unit of a libtorch kind (`train-fold`, `predict`).
    fn run(&self, kind: &str, ctx: &RunCtx) -> Result<()>;
    /// Runs a libtorch command (`device`, `predict`, `export`, `bench augment|step|predict`).
    fn command(&self, cmd: Command) -> Result<()>;
    /// Whether libtorch sees a CUDA device.
    fn cuda_available(&self) -> bool;
}

static BACKEND: OnceLock<&'static dyn TorchUnits> = OnceLock::new();

/// Installs the libtorch adapters (once, at the start of `pipeline-torch`).
pub fn install(units: &'static dyn TorchUnits) {
    let _ = BACKEND.set(units);
}

/// The libtorch adapters, when this process is `pipeline-torch`.
pub fn backend() -> Option<&'static dyn TorchUnits> {
    BACKEND.get().copied()
}

/// The file name of the libtorch binary, found next to the running one.
pub const TORCH_BINARY: &str = "pipeline-torch";

fn torch_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PIPELINE_TORCH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot locate the running binary")?;
    Ok(exe.with_file_name(TORCH_BINARY))
}

/// Replaces this process with `pipeline-torch` and the same arguments. Returns only on failure.
pub fn handoff() -> Result<std::convert::Infallible> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let bin = torch_binary()?;
    if !bin.is_file() {
        return Err(anyhow!(
            "this needs libtorch, which lives in {}; it is missing (build both binaries: `make build`)",
            bin.display()
        ));
    }
    tracing::debug!("handing over to {}", bin.display());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let err = std::process::Command::new(&bin).args(std::env::args_os().skip(1)).exec();
    Err(anyhow!("cannot start {}: {err}", bin.display()))
}

/// The libtorch adapters; in the engine binary, hands the whole process over to `pipeline-torch`.
pub fn require() -> Result<&'static dyn TorchUnits> {
    match backend() {
        Some(b) => Ok(b),
        None => match handoff()? {},
    }
}

/// Runs a unit of a libtorch kind. The engine hands over before it schedules one, so reaching
/// this without the adapters means the cache changed under a running engine.
pub fn run_unit(kind: &str, ctx: &RunCtx) -> Result<()> {
    let b = backend().ok_or_else(|| {
        anyhow!("{kind} needs libtorch, but this is the engine binary; run the pipeline again (it hands over to {TORCH_BINARY})")
    })?;
    b.run(kind, ctx)
}

/// Whether a unit on device `device` (`auto | cpu | cuda | cuda:N`) may hold a GPU, for
/// scheduling (one GPU unit at a time). Without libtorch loaded, `auto` counts as a GPU where
/// an NVIDIA driver is present.
pub fn may_use_gpu(device: &str) -> bool {
    device.starts_with("cuda")
        || (device == "auto" && backend().map_or_else(nvidia_driver_present, |b| b.cuda_available()))
}

/// Whether this machine has an NVIDIA driver (no libtorch needed to tell).
pub fn nvidia_driver_present() -> bool {
    ["/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl"].iter().any(|p| std::path::Path::new(p).exists())
}

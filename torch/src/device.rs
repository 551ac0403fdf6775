//! Device selection: `auto | cpu | cuda | cuda:N`, and loading libtorch's CUDA backend.
//!
//! `pipeline-torch` links only libtorch's CPU part. `libtorch_cuda.so` (and through it cuDNN, cuBLAS,
//! NCCL, ...) is `dlopen`ed at start-up where an NVIDIA driver exists (and by `parse_device`
//! otherwise): its static initializers register the CUDA backend with c10, exactly as if it had
//! been linked. Linked, it cost every process ~450 MB of resident memory and ~0.3 s, CPU-only
//! work included.
use anyhow::{bail, Result};
use std::sync::OnceLock;
use tch::Device;

/// Loads libtorch's CUDA backend once; `Err` carries the loader's message when it is absent
/// (a CPU-only libtorch, or its CUDA libraries missing).
pub fn load_cuda_backend() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            // Found through the binary's RUNPATH (the torch wheel's lib/, see build.rs) or LD_LIBRARY_PATH.
            let name = c"libtorch_cuda.so";
            // SAFETY: a NUL-terminated name; the handle is kept for the life of the process.
            let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if h.is_null() {
                // SAFETY: dlerror returns a NUL-terminated message or null.
                let msg = unsafe { libc::dlerror() };
                let msg = if msg.is_null() {
                    "unknown error".to_string()
                } else {
                    unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy().into_owned()
                };
                tracing::debug!("libtorch CUDA backend not loaded: {msg}");
                return Err(msg);
            }
            Ok(())
        })
        .clone()
}

/// Loads the CUDA backend at start-up when an NVIDIA driver is present, so that no libtorch
/// call can run before it: libtorch caches its CUDA hooks on first use (e.g. `manual_seed`),
/// and a backend loaded after that is never seen. CPU-only machines skip it (no driver, no GPU).
pub fn load_cuda_backend_if_driver() {
    if engine::torch::nvidia_driver_present() {
        if let Err(e) = load_cuda_backend() {
            tracing::warn!("an NVIDIA driver is present but libtorch's CUDA backend did not load: {e}");
        }
    }
}

/// Whether libtorch sees a CUDA device (loading its CUDA backend first). Without an NVIDIA
/// driver there is none, and the backend is not loaded: `dlopen`ing it costs ~230 MB of
/// resident memory for nothing (a CPU prediction's peak went from 1.45 to 1.2 GB).
pub fn cuda_available() -> bool {
    engine::torch::nvidia_driver_present() && load_cuda_backend().is_ok() && tch::Cuda::is_available()
}

/// Parses a device string; `auto` picks CUDA when libtorch finds a GPU.
pub fn parse_device(s: &str) -> Result<Device> {
    match s.trim() {
        "auto" => Ok(if cuda_available() { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => cuda(n),
            None => bail!("unknown device '{other}': expected auto, cpu, cuda or cuda:N"),
        },
    }
}

fn cuda(n: usize) -> Result<Device> {
    if let Err(e) = load_cuda_backend() {
        bail!("device cuda:{n} requested, but libtorch's CUDA backend (libtorch_cuda.so) cannot be loaded: {e}");
    }
    if !tch::Cuda::is_available() {
        bail!("device cuda:{n} requested, but libtorch finds no CUDA device (is the NVIDIA driver visible?)");
    }
    let count = tch::Cuda::device_count() as usize;
    if n >= count {
        bail!("device cuda:{n} requested, but only {count} CUDA device(s) are visible");
    }
    Ok(Device::Cuda(n))
}

/// Canonical name of a device for logs and keys.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Device strings. (Loading the CUDA backend is checked through the CLI, `pipeline device`,
    /// in a fresh process: libtorch caches its CUDA hooks on first use, so a test process whose
    /// other tests already touched libtorch cannot load it any more.)
    #[test]
    fn device_strings() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("tpu").unwrap_err().to_string().contains("unknown device"));
        assert!(parse_device("cuda:x").is_err());
        if !tch::Cuda::is_available() {
            assert!(parse_device("cuda:1").unwrap_err().to_string().contains("cuda:1"));
        }
        assert_eq!(device_name(Device::Cuda(2)), "cuda:2");
    }
}

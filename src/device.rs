//! Device selection: `auto | cpu | cuda | cuda:N`.
use anyhow::{bail, Result};
use tch::Device;

/// Parses a device string; `auto` picks CUDA when libtorch finds a GPU.
pub fn parse_device(s: &str) -> Result<Device> {
    match s.trim() {
        "auto" => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => cuda(n),
            None => bail!("unknown device '{other}': expected auto, cpu, cuda or cuda:N"),
        },
    }
}

fn cuda(n: usize) -> Result<Device> {
    if !tch::Cuda::is_available() {
        bail!("device cuda:{n} requested, but libtorch finds no CUDA device (is the driver visible, and was the binary linked against libtorch_cuda?)");
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

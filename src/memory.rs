//! The memory budget of a run (`--memory SIZE`, `memory:` in pipeline.yaml, `--set memory=SIZE`).
//!
//! Units that hold large buffers (preprocessing a case, predicting a volume) reserve the peak
//! they plan for before allocating it and release it when they finish; a reservation waits
//! while the budget is taken by units already running. So what is resident is bounded by what
//! is in flight: with large cases fewer run at once, whatever `-j` says, and a case too large
//! for the budget on its own still runs (alone), its kind streaming in smaller slabs (kinds ask
//! [`MemoryBudget::total`] to size them).
//!
//! Without a setting the budget is three quarters of the machine's memory (or of the cgroup
//! limit, e.g. a Slurm job's `--mem`).

use anyhow::{anyhow, bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Bytes of memory units may hold at once.
#[derive(Debug)]
pub struct MemoryBudget {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// A granted share of the budget; released on drop.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl Reservation<'_> {
    /// Bytes granted (the request, capped at the whole budget).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(self.bytes);
        self.budget.freed.notify_all();
    }
}

impl MemoryBudget {
    pub fn new(total: u64) -> MemoryBudget {
        MemoryBudget { total: total.max(1), used: Mutex::new(0), freed: Condvar::new() }
    }

    /// The budget of `setting` (a size such as `6G`, `512M`, `25%` of the machine), or the default.
    pub fn from_setting(setting: Option<&str>) -> Result<MemoryBudget> {
        let machine = machine_memory();
        let total = match setting {
            None => machine / 4 * 3,
            Some(s) => parse_size(s, machine)?,
        };
        Ok(MemoryBudget::new(total))
    }

    /// The whole budget, bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `bytes` (at most the whole budget), waiting while other units hold too much of
    /// it; `cancel` ends the wait with an error.
    pub fn reserve<'a>(&'a self, bytes: u64, cancel: &AtomicBool) -> Result<Reservation<'a>> {
        let bytes = bytes.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut logged = false;
        while *used > 0 && *used + bytes > self.total {
            if cancel.load(Ordering::Relaxed) {
                bail!("cancelled while waiting for memory");
            }
            if !logged {
                tracing::info!(
                    "waiting for {} of memory ({} of the {} budget in use)",
                    human(bytes),
                    human(*used),
                    human(self.total)
                );
                logged = true;
            }
            used = self.freed.wait_timeout(used, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
        }
        *used += bytes;
        Ok(Reservation { budget: self, bytes })
    }
}

/// `1.5G`, `512M`, `800K`, `1000000` (bytes; [`crate::cli::parse_size`], as `predict
/// --memory`), or `40%` (of `machine`); at least 16M.
pub fn parse_size(s: &str, machine: u64) -> Result<u64> {
    let t = s.trim();
    let bad = || anyhow!("memory size '{s}': expected e.g. 6G, 512M or 50% (of the machine's {})", human(machine));
    let bytes = if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(bad());
        }
        (machine as f64 * p / 100.0) as u64
    } else {
        crate::cli::parse_size(t).map_err(|e| anyhow!("memory size: {e}"))?
    };
    if bytes < 16 << 20 {
        bail!("memory size '{s}' is below 16M: too small to run anything");
    }
    Ok(bytes)
}

/// Bytes as `1.5G` / `300M`.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1}G", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{}M", bytes >> 20)
    }
}

/// Physical memory, or the cgroup's limit when lower (containers, Slurm jobs).
pub fn machine_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(8 << 30);
    let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .min();
    cgroup.map_or(total, |c| c.min(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sizes() {
        let g = 1u64 << 30;
        assert_eq!(parse_size("6G", 0).unwrap(), 6 * g);
        assert_eq!(parse_size("512m", 0).unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GiB", 0).unwrap(), 3 * g / 2);
        assert_eq!(parse_size("50%", 8 * g).unwrap(), 4 * g);
        assert_eq!(parse_size("100000000", 0).unwrap(), 100_000_000);
        for bad in ["", "G", "-1G", "0", "10x", "150%", "1K"] {
            assert!(parse_size(bad, 8 * g).is_err(), "{bad}");
        }
    }

    /// Two reservations that do not fit together run one after the other; one larger than the
    /// budget is capped and granted when alone.
    #[test]
    fn reservations_wait_for_memory() {
        let b = Arc::new(MemoryBudget::new(100));
        let cancel = AtomicBool::new(false);
        let r = b.reserve(70, &cancel).unwrap();
        assert_eq!(b.used(), 70);
        let peak = Arc::new(Mutex::new(0u64));
        let t = {
            let (b, peak) = (b.clone(), peak.clone());
            std::thread::spawn(move || {
                let cancel = AtomicBool::new(false);
                let r2 = b.reserve(60, &cancel).unwrap();
                *peak.lock().unwrap() = b.used();
                drop(r2);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(b.used(), 70, "the second reservation waits");
        drop(r);
        t.join().unwrap();
        assert_eq!(*peak.lock().unwrap(), 60);
        assert_eq!(b.used(), 0);
        let big = b.reserve(1000, &cancel).unwrap();
        assert_eq!(big.bytes(), 100);
        let stop = AtomicBool::new(true);
        assert!(b.reserve(1, &stop).is_err(), "cancel ends a wait");
    }
}

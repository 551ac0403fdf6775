//! `pipeline bench ...`: figures printed for `bench/run.sh`, which runs the peer beside them.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

use super::print_json;
use crate::cli::{BenchArgs, BenchWhat};

pub fn bench(a: BenchArgs) -> Result<()> {
    match a.what {
        BenchWhat::Read { dataset, json } => read(&dataset, json),
        BenchWhat::Overhead { pipeline, repeat, json } => overhead(&pipeline, repeat, json),
        // Augmentation, train step and prediction run libtorch code (`pipeline-torch`).
        other => crate::torch::require()?.command(crate::cli::Command::Bench(BenchArgs { what: other })),
    }
}

/// Reads every image and label of a dataset (any supported format); reports files/s, MB/s
/// (on disk: headers, data files and sidecars) and voxels/s, single-threaded and with all cores.
fn read(dataset: &Path, as_json: bool) -> Result<()> {
    let ds = nnunet_io::dataset::open_dataset(dataset)?;
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for c in &ds.cases {
        for p in c.images.iter().map(|r| &r.path).chain(c.label.as_ref()) {
            if !files.contains(p) {
                files.push(p.clone());
            }
        }
    }
    if files.is_empty() {
        bail!("{}: no files to read", dataset.display());
    }
    let on_disk: u64 = files
        .iter()
        .flat_map(|f| nnunet_io::image::image_files(f))
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let read_one = |f: &std::path::PathBuf| -> Result<u64> {
        let img = nnunet_io::image::read_image(f)?;
        let ch = img.to_f32_channels()?;
        Ok(ch.iter().map(|c| c.len() as u64).sum())
    };
    let t0 = Instant::now();
    let cpu0 = thread_cpu_seconds();
    let mut voxels = 0u64;
    for f in &files {
        voxels += read_one(f).with_context(|| format!("reading {}", f.display()))?;
    }
    let single = t0.elapsed().as_secs_f64();
    let single_cpu = thread_cpu_seconds() - cpu0;
    let t1 = Instant::now();
    use rayon::prelude::*;
    let _: Vec<u64> = files.par_iter().map(read_one).collect::<Result<_>>()?;
    let parallel = t1.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let r = json!({
        "format": ds.file_ending,
        "files": files.len(),
        "bytes_on_disk": on_disk,
        "voxels": voxels,
        "single_thread_s": single,
        "single_thread_files_per_s": files.len() as f64 / single,
        "single_thread_mb_per_s_on_disk": on_disk as f64 / 1e6 / single,
        "single_thread_mvoxels_per_s": voxels as f64 / 1e6 / single,
        // CPU time of the reading thread: the figure to compare on a loaded machine.
        "single_thread_cpu_s": single_cpu,
        "mb_per_cpu_s_on_disk": on_disk as f64 / 1e6 / single_cpu,
        "mvoxels_per_cpu_s": voxels as f64 / 1e6 / single_cpu,
        "threads": threads,
        "parallel_s": parallel,
        "parallel_files_per_s": files.len() as f64 / parallel,
    });
    if as_json {
        return print_json(&r);
    }
    println!(
        "{} read ({} files, {:.1} MB on disk, {:.1} M voxels decoded to f32):\n  1 thread:  {:.3} s ({:.3} s CPU)  {:.0} files/s  {:.1} MB/s  {:.1} Mvox/s\n  {threads} threads: {:.3} s  {:.0} files/s",
        ds.file_ending,
        files.len(),
        on_disk as f64 / 1e6,
        voxels as f64 / 1e6,
        single,
        single_cpu,
        files.len() as f64 / single,
        on_disk as f64 / 1e6 / single,
        voxels as f64 / 1e6 / single,
        parallel,
        files.len() as f64 / parallel
    );
    Ok(())
}

/// CPU seconds used by the calling thread so far (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `t`, which lives for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return f64::NAN;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Wall time of `pipeline run` when everything is cached (a fresh process each time, as a user
/// or CI sees it).
fn overhead(args: &crate::cli::PipelineArgs, repeat: usize, as_json: bool) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut base = vec!["run".to_string(), "--json".into(), "-f".into(), args.file.display().to_string()];
    for s in &args.set {
        base.push("--set".into());
        base.push(s.clone());
    }
    // Warm-up run: builds what is missing; not timed.
    let warm = std::process::Command::new(&exe).args(&base).output()?;
    if !warm.status.success() {
        bail!("warm-up run failed: {}", String::from_utf8_lossy(&warm.stderr));
    }
    let mut times = Vec::new();
    let mut units = 0usize;
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        let out = std::process::Command::new(&exe).args(&base).output()?;
        times.push(t0.elapsed().as_secs_f64());
        if !out.status.success() {
            bail!("run failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        if v[0]["built"].as_u64() != Some(0) {
            bail!("the pipeline is not fully cached: a timed run built {} unit(s)", v[0]["built"]);
        }
        units = v[0]["units"].as_array().map(|u| u.len()).unwrap_or(0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let r = json!({"units": units, "runs": times.len(), "median_s": median, "min_s": times[0], "max_s": times[times.len() - 1]});
    if as_json {
        return print_json(&r);
    }
    println!(
        "cached `pipeline run` ({units} units, {} runs): median {:.3} s (min {:.3}, max {:.3})",
        times.len(),
        median,
        times[0],
        times[times.len() - 1]
    );
    Ok(())
}

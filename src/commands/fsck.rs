//! `fsck`: re-verify every cached artifact against its manifest (size and blake3 of each file)
//! and evict the damaged ones, so the next run rebuilds them instead of training on bad bytes.
//!
//! A cache lookup checks only that each file is there with its recorded size (hashing the whole
//! cache on every run would cost more than most units); a flipped byte of the same size is caught
//! by the chunk checksums when the array is read, and by this command at any time.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{load_single, open_cache, print_json};
use crate::cli::FsckArgs;

pub fn fsck(a: FsckArgs) -> Result<()> {
    let spec = load_single(&a.pipeline)?;
    let (cache, _stat) = open_cache(&spec)?;
    // No run may commit or read artifacts while they are checked and evicted.
    let _lock = cache.lock_run(true)?;
    let all = cache.all_artifacts()?;
    let pb = if a.json { ProgressBar::hidden() } else { ProgressBar::new(all.len() as u64) };
    pb.set_style(
        ProgressStyle::with_template("fsck [{bar:24}] {pos}/{len} artifacts {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let bytes: u64 = all
        .iter()
        .flat_map(|(_, _, dir)| crate::fsutil::walk(&dir.join("out")).unwrap_or_default())
        .filter_map(|p| std::fs::metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    // Artifacts one after the other (their files are hashed in parallel): bounded memory and
    // file handles on caches of any size.
    let results: Vec<_> = all
        .iter()
        .map(|(kind, key, dir)| {
            let damage = cache.verify(dir);
            pb.inc(1);
            (kind, key, dir, damage)
        })
        .filter(|r| !r.3.is_empty())
        .collect();
    pb.finish_and_clear();
    let mut damaged = Vec::new();
    for (kind, key, dir, damage) in results {
        let unit = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|m| m.get("unit").and_then(|u| u.as_str()).map(str::to_string))
            .unwrap_or_default();
        let evicted = if a.dry_run {
            false
        } else {
            cache.evict(dir)?;
            true
        };
        if !a.json {
            println!("damaged: {kind}/{key} ({unit}){}", if evicted { ", evicted" } else { "" });
            for d in &damage {
                println!("  {}: {}", d.file, d.problem);
            }
        }
        damaged.push(json!({"kind": kind, "key": key, "unit": unit, "dir": dir, "files": damage, "evicted": evicted}));
    }
    if !a.dry_run {
        cache.clean_tmp()?;
    }
    if a.json {
        return print_json(&json!({"checked": all.len(), "bytes": bytes, "damaged": damaged, "dry_run": a.dry_run}));
    }
    println!(
        "checked {} artifact(s), {:.1} MB: {} damaged{}",
        all.len(),
        bytes as f64 / 1e6,
        damaged.len(),
        match (damaged.is_empty(), a.dry_run) {
            (true, _) => String::new(),
            (false, true) => " (dry run: nothing evicted; rerun without --dry-run to evict)".into(),
            (false, false) => ", evicted: the next run rebuilds them".into(),
        }
    );
    Ok(())
}

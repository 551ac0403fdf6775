//! `run`, `status`, `dag`, `show`, `gc`, `cancel` and the internal `exec-unit`.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use std::collections::BTreeMap;

use super::{load_single, load_variants, open_cache, open_session, print_json};
use crate::cli::{CancelArgs, DagArgs, ExecUnitArgs, GcArgs, RunArgs, ShowArgs, StatusArgs};
use crate::outputs;
use crate::runner::{self, RunOptions};
use crate::session::UnitState;
use crate::slurm;

pub fn run(a: RunArgs) -> Result<()> {
    let mut variants = load_variants(&a.pipeline)?;
    if let Some(m) = &a.memory {
        crate::memory::parse_size(m, crate::memory::machine_memory()).context("--memory")?;
        for v in &mut variants {
            v.memory = Some(crate::config::Located::cli(m.clone()));
            // Cluster jobs re-create the variant from its `--set`s.
            v.sets.push(format!("memory={m}"));
        }
    }
    let executor = a.executor.clone().unwrap_or_else(|| variants[0].executor.value.clone());
    match executor.as_str() {
        "local" => {}
        "slurm" => return run_slurm(&a, variants),
        other => bail!("unknown executor '{other}': expected local or slurm"),
    }
    let (cache, stat) = open_cache(&variants[0])?;
    let opts_for = |jobs: usize| RunOptions {
        jobs,
        until: a.until.clone(),
        only: a.only.clone(),
        force: a.force.clone(),
        progress: !a.json,
    };
    // The engine binary builds no libtorch unit itself: before anything is written, a run that
    // has one to build becomes a `pipeline-torch` run (same arguments).
    if crate::torch::backend().is_none() && needs_torch(&variants, &cache, &stat, a.jobs, &opts_for(1))? {
        // The raw-file hashes just computed are kept for the run that takes over.
        stat.save()?;
        match crate::torch::handoff()? {}
    }
    runner::install_signal_handlers();
    // One lock for all variants: they share the cache.
    let _lock = cache.lock_run(!a.no_wait)?;
    cache.clean_tmp()?;
    let mut reports = Vec::new();
    let mut first_err = None;
    let variants_meta = variants.clone();
    for spec in variants {
        let session = open_session(spec, &cache, &stat, a.jobs)?;
        let opts = opts_for(session.env.cpus);
        let report = runner::run_local(&session, &opts);
        stat.save()?;
        let report = report?;
        let dir = outputs::publish(&session, &report)?;
        if !a.json {
            eprintln!(
                "{}: {} built, {} cached, {} failed, {} skipped in {:.1}s -> {}",
                report.run,
                report.built,
                report.cached,
                report.failed,
                report.skipped,
                report.seconds,
                dir.display()
            );
        }
        if let Err(e) = runner::check(&report) {
            first_err.get_or_insert(e);
        }
        reports.push(report);
    }
    if let Some(p) = crate::sweep::write_manifest(&variants_meta)? {
        if !a.json {
            let dir = p.parent().unwrap_or(&p).display();
            eprintln!("sweep: {} variants in {dir}; `pipeline report {dir}` compares them", variants_meta.len());
        }
    }
    if a.json {
        print_json(&reports)?;
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether any variant would build a unit of a libtorch kind. Pipelines without such a stage
/// are answered from the file alone (no session, no hashing).
fn needs_torch(
    variants: &[crate::config::PipelineSpec],
    cache: &crate::cache::Cache,
    stat: &crate::statcache::StatCache,
    jobs: Option<usize>,
    opts: &RunOptions,
) -> Result<bool> {
    for spec in variants {
        let has_torch_stage =
            spec.stages.iter().any(|st| crate::kinds::by_name(&st.uses.value).is_some_and(|k| k.torch()));
        if has_torch_stage && runner::builds_torch_unit(&open_session(spec.clone(), cache, stat, jobs)?, opts)? {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn status(a: StatusArgs) -> Result<()> {
    let mut variants = load_variants(&a.pipeline)?;
    if variants.len() > 1 {
        return super::sweep::status(&a, variants);
    }
    let spec = variants.remove(0);
    let (cache, stat) = open_cache(&spec)?;
    let session = open_session(spec, &cache, &stat, None)?;
    let states = session.evaluate()?;
    stat.save()?;
    let dag = &session.dag;
    let mut rows = Vec::new();
    for u in dag.unit_order() {
        let unit = &dag.units[u];
        let id = unit.id.to_string();
        let prev = cache.read_ref(&session.run_name, &id);
        let (status, key, why): (&str, Option<String>, Vec<String>) = match &states[u] {
            UnitState::Fresh { key, .. } => ("fresh", Some(key.clone()), vec![]),
            UnitState::Missing { key, components } => match &prev {
                Some((old_key, old)) if old_key != key => {
                    let d = components.diff(old);
                    ("stale", Some(key.clone()), if d.is_empty() { vec!["key changed".into()] } else { d })
                }
                Some(_) => ("missing", Some(key.clone()), vec!["artifact was removed from the cache".into()]),
                None => ("missing", Some(key.clone()), vec!["never built".into()]),
            },
            UnitState::Blocked => {
                let ups: Vec<String> = unit
                    .deps
                    .iter()
                    .filter(|d| !matches!(states[d.unit], UnitState::Fresh { .. }))
                    .map(|d| dag.units[d.unit].id.to_string())
                    .collect();
                let n = ups.len();
                let mut why: Vec<String> =
                    ups.into_iter().take(3).map(|s| format!("upstream {s} is not fresh")).collect();
                if n > 3 {
                    why.push(format!("... and {} more upstream units", n - 3));
                }
                (if prev.is_some() { "stale" } else { "missing" }, None, why)
            }
        };
        rows.push(
            json!({"unit": id, "stage": unit.id.stage, "case": unit.case, "status": status, "key": key, "why": why}),
        );
    }
    if a.json {
        return print_json(&json!({"run": session.run_name, "units": rows}));
    }
    // Per stage: counts, then the non-fresh non-case units (and a few case units).
    for &si in &dag.order {
        let st = &dag.stages[si];
        let mine: Vec<&serde_json::Value> = rows.iter().filter(|r| r["stage"] == st.name.as_str()).collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &mine {
            *counts.entry(r["status"].as_str().unwrap_or("?")).or_default() += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!("{:<14} {}", st.name, summary.join(", "));
        let mut shown = 0;
        for r in &mine {
            if r["status"] == "fresh" {
                continue;
            }
            let is_case = !r["case"].is_null();
            if is_case && shown >= 3 {
                continue;
            }
            shown += 1;
            println!("  {:<8} {}", r["status"].as_str().unwrap_or(""), r["unit"].as_str().unwrap_or(""));
            if a.why {
                for w in r["why"].as_array().into_iter().flatten() {
                    println!("           - {}", w.as_str().unwrap_or(""));
                }
            }
        }
    }
    Ok(())
}

pub fn dag(a: DagArgs) -> Result<()> {
    let spec = load_single(&a.pipeline)?;
    let (cache, stat) = open_cache(&spec)?;
    let session = open_session(spec, &cache, &stat, None)?;
    if a.dot {
        print!("{}", session.dag.to_dot());
    } else {
        print!("{}", session.dag.to_text());
    }
    Ok(())
}

pub fn show(a: ShowArgs) -> Result<()> {
    let spec = load_single(&a.pipeline)?;
    let (cache, stat) = open_cache(&spec)?;
    let session = open_session(spec, &cache, &stat, None)?;
    let si = session.dag.stage_index(&a.stage)?;
    let states = session.evaluate()?;
    stat.save()?;
    let run_dir = outputs::run_dir(&session);
    let mut items = Vec::new();
    for &u in &session.dag.stages[si].units {
        let unit = &session.dag.units[u];
        let item = match &states[u] {
            UnitState::Fresh { key, manifest } => json!({
                "unit": unit.id.to_string(),
                "status": "fresh",
                "key": key,
                "artifact": session.out_dir(manifest),
                "view": if unit.case.is_none() { Some(run_dir.join(outputs::view_path(&session, u))) } else { None },
                "manifest": manifest,
            }),
            UnitState::Missing { key, .. } => json!({"unit": unit.id.to_string(), "status": "missing", "key": key}),
            UnitState::Blocked => json!({"unit": unit.id.to_string(), "status": "stale (upstream)"}),
        };
        items.push(item);
    }
    if a.json {
        return print_json(&items);
    }
    for it in &items {
        println!("{} [{}]", it["unit"].as_str().unwrap_or(""), it["status"].as_str().unwrap_or(""));
        if let Some(k) = it["key"].as_str() {
            println!("  key       {k}");
        }
        if let Some(p) = it["artifact"].as_str() {
            println!("  artifact  {p}");
        }
        if let Some(p) = it["view"].as_str() {
            println!("  view      {p}");
        }
        if let Some(m) = it.get("manifest") {
            println!(
                "  built     {} in {:.2}s",
                m["started"].as_str().unwrap_or(""),
                m["duration_s"].as_f64().unwrap_or(0.0)
            );
            if let Some(files) = m["files"].as_object() {
                for (f, e) in files.iter().take(20) {
                    println!("    {f} ({} bytes)", e["size"]);
                }
                if files.len() > 20 {
                    println!("    ... {} more files", files.len() - 20);
                }
            }
        }
    }
    Ok(())
}

pub fn gc(a: GcArgs) -> Result<()> {
    let spec = load_single(&a.pipeline)?;
    let (cache, _stat) = open_cache(&spec)?;
    let _lock = cache.lock_run(true)?;
    let live = cache.referenced_keys()?;
    let mut removed = Vec::new();
    let mut bytes = 0u64;
    for (kind, key, dir) in cache.all_artifacts()? {
        if live.contains(&key) {
            continue;
        }
        bytes += crate::fsutil::walk(&dir)?
            .iter()
            .filter_map(|p| std::fs::symlink_metadata(p).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum::<u64>();
        if !a.dry_run {
            std::fs::remove_dir_all(&dir).map_err(|e| anyhow!("cannot remove {}: {e}", dir.display()))?;
        }
        removed.push(json!({"kind": kind, "key": key}));
    }
    // Work dirs of resumable units nobody refers to.
    for e in std::fs::read_dir(cache.root.join("work"))? {
        let e = e?;
        let key = e.file_name().to_string_lossy().to_string();
        if !live.contains(&key) {
            if !a.dry_run {
                std::fs::remove_dir_all(e.path()).ok();
            }
            removed.push(json!({"kind": "work", "key": key}));
        }
    }
    if !a.dry_run {
        cache.clean_tmp()?;
    }
    if a.json {
        return print_json(&json!({"removed": removed, "bytes": bytes, "dry_run": a.dry_run}));
    }
    println!(
        "{} {} artifact(s), {:.1} MB{}",
        if a.dry_run { "would remove" } else { "removed" },
        removed.len(),
        bytes as f64 / 1e6,
        if a.dry_run { " (dry run)" } else { "" }
    );
    Ok(())
}

pub fn cancel(a: CancelArgs) -> Result<()> {
    let spec = load_single(&a.pipeline)?;
    let (cache, _stat) = open_cache(&spec)?;
    let run = spec.run_name();
    let ids = slurm::cancel(&cache.root, &run)?;
    if ids.is_empty() {
        println!("{run}: no queued or running jobs");
    } else {
        println!("{run}: cancelled {} job(s): {}", ids.len(), ids.join(" "));
    }
    Ok(())
}

fn run_slurm(a: &RunArgs, variants: Vec<crate::config::PipelineSpec>) -> Result<()> {
    if a.only.is_some() || !a.force.is_empty() {
        bail!("--only and --force are supported by the local executor only");
    }
    let exe = std::env::current_exe()?;
    let (cache, stat) = open_cache(&variants[0])?;
    for spec in &variants {
        slurm::preflight(spec, &cache.root)?;
    }
    let _lock = cache.lock_run(!a.no_wait)?;
    crate::sweep::write_manifest(&variants)?;
    let mut subs = Vec::new();
    let mut first_err = None;
    for spec in variants {
        let poll = std::time::Duration::from_secs_f64(spec.slurm.poll_seconds.unwrap_or(2.0).max(0.2));
        let t0 = std::time::Instant::now();
        let session = open_session(spec, &cache, &stat, a.jobs)?;
        let sub = slurm::submit(&session, a.until.as_deref(), &exe)?;
        stat.save()?;
        if !a.json {
            if sub.jobs.is_empty() {
                eprintln!("{}: everything is cached; nothing submitted", session.run_name);
            } else {
                eprintln!(
                    "{}: submitted {} job(s): {}",
                    session.run_name,
                    sub.jobs.len(),
                    sub.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>().join(" ")
                );
            }
        }
        if !a.detach {
            let waited = if sub.jobs.is_empty() { Ok(()) } else { slurm::wait(&sub, poll, !a.json) };
            // Publish the outputs view and run.json from what the jobs built, as a local run
            // does (also after a failure: what was built is linked).
            let report = slurm::run_report(&session, &sub, a.until.as_deref(), t0.elapsed().as_secs_f64())?;
            let dir = outputs::publish(&session, &report)?;
            if !a.json {
                eprintln!(
                    "{}: {} built, {} cached, {} failed in {:.1}s -> {}",
                    report.run,
                    report.built,
                    report.cached,
                    report.failed,
                    report.seconds,
                    dir.display()
                );
            }
            if let Err(e) = waited {
                first_err.get_or_insert(e);
            }
        }
        subs.push(sub);
    }
    if a.json {
        print_json(&subs)?;
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn exec_unit(a: ExecUnitArgs) -> Result<()> {
    // Cluster jobs get the variant's --set values one by one, so this is a single variant.
    let spec = load_single(&a.pipeline)?;
    runner::install_signal_handlers();
    let (cache, stat) = open_cache(&spec)?;
    let mut session = open_session(spec, &cache, &stat, None)?;
    if let Some(r) = &a.run {
        session.run_name = r.clone();
    }
    let u = session
        .dag
        .units
        .iter()
        .position(|x| x.id.to_string() == a.unit)
        .ok_or_else(|| anyhow!("no unit {} in this pipeline", a.unit))?;
    if session.dag.units[u].kind.torch() && crate::torch::backend().is_none() {
        match crate::torch::handoff()? {}
    }
    let states = session.evaluate()?;
    let manifests: Vec<_> = states
        .iter()
        .map(|s| match s {
            UnitState::Fresh { manifest, .. } => Some((**manifest).clone()),
            _ => None,
        })
        .collect();
    for d in &session.dag.units[u].deps {
        if manifests[d.unit].is_none() {
            bail!("{}: upstream {} is not built", a.unit, session.dag.units[d.unit].id);
        }
    }
    let progress = |pos: u64, len: u64, msg: &str| eprintln!("{pos}/{len} {msg}");
    let (m, built) = runner::execute_unit(&session, u, &manifests, false, &progress)?;
    stat.save()?;
    cache.write_ref(&session.run_name, &a.unit, &m.components, &m.key)?;
    // A cluster job ends here: its artifact is durable before the job reports success.
    cache.sync().context("syncing the cache")?;
    println!("{} {} {}", a.unit, if built { "built" } else { "cached" }, m.key);
    Ok(())
}

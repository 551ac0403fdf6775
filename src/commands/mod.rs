//! Subcommand implementations. Each takes its parsed arguments and prints for a human, or JSON
//! with `--json`.

use anyhow::{bail, Context, Result};
use std::path::Path;

use crate::cache::Cache;
use crate::cli::{Command, PipelineArgs};
use crate::config::{self, PipelineSpec};
use crate::kind::ExecEnv;
use crate::session::Session;
use crate::statcache::StatCache;

mod bench;
mod data;
mod fsck;
mod pipeline;
mod sweep;

pub fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        let _ = b.json().try_init();
    } else {
        let _ = b.without_time().try_init();
    }
}

/// The body of both binaries' `main`: heap tuning, CLI parsing, logging, `setup` (what the
/// binary adds, e.g. the libtorch adapters), dispatch; flushes the standard streams and returns
/// the exit code.
pub fn cli_main(setup: impl FnOnce()) -> i32 {
    use clap::Parser;
    use std::io::Write;
    crate::alloc::reuse_case_buffers();
    let cli = crate::cli::Cli::parse();
    init_logging(&cli.log, cli.log_json);
    setup();
    let code = match dispatch(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    code
}

pub fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Run(a) => pipeline::run(a),
        Command::Status(a) => pipeline::status(a),
        Command::Dag(a) => pipeline::dag(a),
        Command::Show(a) => pipeline::show(a),
        Command::Gc(a) => pipeline::gc(a),
        Command::Fsck(a) => fsck::fsck(a),
        Command::Cancel(a) => pipeline::cancel(a),
        Command::ExecUnit(a) => pipeline::exec_unit(a),
        // libtorch commands: `pipeline-torch` runs them (the engine binary hands over).
        c @ (Command::Device(_) | Command::Predict(_) | Command::Export(_)) => crate::torch::require()?.command(c),
        Command::Synth(a) => data::synth(a),
        Command::Verify(a) => data::verify(a),
        Command::Evaluate(a) => data::evaluate(a),
        Command::Report(a) => data::report(a),
        Command::Compare(a) => data::compare(a),
        Command::Bench(a) => bench::bench(a),
    }
}

/// Loads the pipeline file and expands `--set` into variants.
pub fn load_variants(args: &PipelineArgs) -> Result<Vec<PipelineSpec>> {
    let spec = config::load(&args.file)?;
    let sets = args.set.iter().map(|s| config::parse_set(s)).collect::<Result<Vec<_>>>()?;
    config::expand_variants(&spec, &sets, args.variant.as_deref())
}

/// Loads a pipeline file that must not sweep (status, show, ...).
pub fn load_single(args: &PipelineArgs) -> Result<PipelineSpec> {
    let mut v = load_variants(args)?;
    if v.len() != 1 {
        bail!(
            "this command takes one pipeline variant, and this pipeline has {} (`variants:` or --set a,b): \
             pick one with --variant NAME and --set KEY=VALUE",
            v.len()
        );
    }
    Ok(v.remove(0))
}

pub fn exec_env(spec: &PipelineSpec, jobs: Option<usize>) -> Result<ExecEnv> {
    let cpus = jobs.or(spec.jobs).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // Validate the device string early (cheap) without initialising CUDA for `cpu`.
    let dev = spec.device.value.clone();
    if !matches!(dev.as_str(), "auto" | "cpu" | "cuda") && !dev.starts_with("cuda:") {
        bail!(
            "{}: {}: unknown device '{dev}': expected auto, cpu, cuda or cuda:N",
            spec.file.display(),
            spec.device.at()
        );
    }
    let memory = match &spec.memory {
        None => crate::memory::MemoryBudget::from_setting(None)?,
        Some(m) => crate::memory::MemoryBudget::from_setting(Some(&m.value))
            .with_context(|| format!("{}: {}", spec.file.display(), m.at()))?,
    };
    Ok(ExecEnv { cpus, device: dev, memory: std::sync::Arc::new(memory) })
}

pub fn open_cache(spec: &PipelineSpec) -> Result<(Cache, StatCache)> {
    let cache = Cache::open(&spec.cache).with_context(|| format!("cache {}", spec.cache.display()))?;
    let stat = StatCache::load(&cache.root.join("statcache.json"));
    Ok((cache, stat))
}

pub fn open_session<'a>(
    spec: PipelineSpec,
    cache: &'a Cache,
    stat: &'a StatCache,
    jobs: Option<usize>,
) -> Result<Session<'a>> {
    let env = exec_env(&spec, jobs)?;
    Session::open(spec, cache, stat, env)
}

/// Prints JSON to stdout (pretty).
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The run folder named by `run`, or the one of ./pipeline.yaml.
pub fn resolve_run_dir(run: Option<&Path>) -> Result<std::path::PathBuf> {
    if let Some(r) = run {
        if !r.is_dir() {
            bail!("run folder {} does not exist", r.display());
        }
        return Ok(r.to_path_buf());
    }
    let spec = config::load(Path::new("pipeline.yaml")).context("no run folder given and no ./pipeline.yaml")?;
    let dir = spec.outputs.join(&spec.name);
    if !dir.is_dir() {
        bail!("run folder {} does not exist yet: run `pipeline run` first", dir.display());
    }
    Ok(dir)
}

//! `pipeline-torch`: the engine plus the libtorch adapters — `train-fold` and `predict` units,
//! and the `device`, `predict`, `export` and `bench augment|step|predict` commands.
//!
//! Same command line as `pipeline`, which hands over to this binary (`exec`, same arguments)
//! whenever libtorch is needed; everything else is the engine's (see `engine::torch`).

mod alloc;
mod commands;
mod device;
mod export_nnunet;
mod model;
mod predict;
mod train;

use anyhow::{bail, Result};
use engine::cli::{BenchWhat, Command};
use engine::kind::RunCtx;

/// Rust's allocations stay on glibc (tuned by `engine::alloc`); libtorch's go to jemalloc (see
/// the `alloc` module).
#[global_allocator]
static GLOBAL: alloc::Glibc = alloc::Glibc;

struct Torch;

impl engine::torch::TorchUnits for Torch {
    fn run(&self, kind: &str, ctx: &RunCtx) -> Result<()> {
        match kind {
            engine::kinds::TRAIN_FOLD => train::run(ctx),
            engine::kinds::PREDICT => predict::run(ctx),
            other => bail!("internal: {other} is not a libtorch kind"),
        }
    }
    fn command(&self, cmd: Command) -> Result<()> {
        match cmd {
            Command::Device(a) => commands::device(a.json),
            Command::Predict(a) => commands::predict(a),
            Command::Export(a) => commands::export(a),
            Command::Bench(b) => match b.what {
                BenchWhat::Augment { run, configuration, batches, json } => {
                    commands::bench_augment(&run, &configuration, batches, json)
                }
                BenchWhat::Predict { run, configuration, images, cases, tta, memory, json } => {
                    commands::bench_predict(&run, &configuration, images.as_deref(), cases, &tta, memory, json)
                }
                BenchWhat::Step { run, configuration, batch_size, steps, json } => {
                    commands::bench_step(&run, &configuration, batch_size, steps, json)
                }
                other => engine::commands::dispatch(Command::Bench(engine::cli::BenchArgs { what: other })),
            },
            other => engine::commands::dispatch(other),
        }
    }
    fn cuda_available(&self) -> bool {
        device::cuda_available()
    }
}

fn main() {
    let code = engine::commands::cli_main(|| {
        device::load_cuda_backend_if_driver();
        nnunet_io::memory::set_release_hook(alloc::release_freed);
        engine::torch::install(&Torch);
    });
    // Leave without running C++ global destructors: libtorch's operator-registry teardown
    // takes ~0.1 s at every exit. Everything of ours is written and closed, and the standard
    // streams are flushed.
    // SAFETY: `_exit` ends the process; no Rust state is used afterwards.
    unsafe { libc::_exit(code) }
}

//! `pipeline-torch`: the engine plus the libtorch adapters — `train-fold` and `predict` units,
//! and the `device`, `predict`, `export` and `bench augment|step|predict` commands.
//!
//! Same command line as `pipeline`, which hands over to this binary (`exec`, same arguments)
//! whenever libtorch is needed; everything else is the engine's (see `engine::torch`).

mod commands;
mod device;
mod export_nnunet;
mod model;
mod predict;
mod train;

use anyhow::{bail, Result};
use engine::cli::{BenchWhat, Command};
use engine::kind::RunCtx;

/// The process's allocator, libtorch's tensors included (jemalloc exports `malloc`, `free`,
/// `posix_memalign`, ... unprefixed, so libtorch's calls resolve to it). Training and prediction
/// allocate and free feature maps of 10-200 MB dozens of times per step. glibc either returns
/// each to the system on free (`mmap`/`munmap`: every use page-faults it in again, a quarter of
/// a big-CT prediction's time) or, told to keep them on its heap, fragments it (a 512x512x100 CT
/// peaked at 1.2 GB where the live maps need 0.8). jemalloc keeps freed pages per size class
/// ([`MALLOC_CONF`]) and [`purge_arenas`] returns them between the phases of a case.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (read at its start-up; `MALLOC_CONF` in the environment adds to them):
/// freed pages are never purged by time (a decay of 10 s, jemalloc's default, purged a big-CT
/// prediction's maps between tiles: 31 s instead of 23 s per case), and large allocations are
/// served by the ordinary arenas instead of a dedicated one that purges at once.
#[export_name = "malloc_conf"]
pub static MALLOC_CONF: &[u8; 57] = b"oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

/// Returns every arena's freed pages to the system (jemalloc's `arena.<all>.purge`).
fn purge_arenas() {
    // MALLCTL_ARENAS_ALL = 4096.
    let name = c"arena.4096.purge";
    // SAFETY: a NUL-terminated control name that takes and returns nothing.
    unsafe {
        tikv_jemalloc_sys::mallctl(name.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), 0);
    }
}

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
        nnunet_infer::memory::set_release_hook(purge_arenas);
        engine::alloc::set_release_hook(purge_arenas);
        engine::torch::install(&Torch);
    });
    // Leave without running C++ global destructors: libtorch's operator-registry teardown
    // takes ~0.1 s at every exit. Everything of ours is written and closed, and the standard
    // streams are flushed.
    // SAFETY: `_exit` ends the process; no Rust state is used afterwards.
    unsafe { libc::_exit(code) }
}

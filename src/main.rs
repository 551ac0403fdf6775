//! `pipeline`: the command-line entry point. Parsing and dispatch only; see `engine::commands`.
use clap::Parser;
use std::io::Write;

fn main() {
    engine::alloc::reuse_case_buffers();
    let cli = engine::cli::Cli::parse();
    engine::commands::init_logging(&cli.log, cli.log_json);
    engine::device::load_cuda_backend_if_driver();
    let code = match engine::commands::dispatch(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    // Leave without running C++ global destructors: libtorch's operator-registry teardown
    // took ~0.1 s at every exit, more than a cached `pipeline run` itself. Everything of ours
    // is written and closed by now; flush the standard streams and go.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process; no Rust state is used afterwards.
    unsafe { libc::_exit(code) }
}

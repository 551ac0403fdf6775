//! `pipeline`: the command-line entry point. Parsing and dispatch only; see `engine::commands`.
//! This binary does not link libtorch: commands and runs that need it hand over to
//! `pipeline-torch` (see `engine::torch`).
use clap::Parser;
use std::io::Write;

fn main() {
    engine::alloc::reuse_case_buffers();
    let cli = engine::cli::Cli::parse();
    engine::commands::init_logging(&cli.log, cli.log_json);
    let code = match engine::commands::dispatch(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

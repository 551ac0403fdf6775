//! `pipeline`: the command-line entry point. Parsing and dispatch only; see `engine::commands`.
use clap::Parser;

fn main() {
    let cli = engine::cli::Cli::parse();
    engine::commands::init_logging(&cli.log, cli.log_json);
    if let Err(e) = engine::commands::dispatch(cli.command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

//! `pipeline`: the command-line entry point. Parsing and dispatch only; see `engine::commands`.
//! This binary does not link libtorch: commands and runs that need it hand over to
//! `pipeline-torch` (see `engine::torch`).
fn main() {
    std::process::exit(engine::commands::cli_main(|| {}))
}

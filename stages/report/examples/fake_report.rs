//! Writes the test fixture's fake run and its report, to look at the page without a real run:
//! `cargo run -p nnunet-report --release --example fake_report -- OUT_DIR`
//! (the run goes to `OUT_DIR/run`, the report to `OUT_DIR/report`).

fn main() {
    let Some(out) = std::env::args().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: fake_report OUT_DIR");
        std::process::exit(2);
    };
    let run_root = out.join("run");
    if let Err(e) = std::fs::create_dir_all(&run_root) {
        eprintln!("{}: {e}", run_root.display());
        std::process::exit(1);
    }
    let run = match nnunet_report::fixture::build(&run_root) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fake run: {e}");
            std::process::exit(1);
        }
    };
    match nnunet_report::write_report(&run.run_dir, &out.join("report")) {
        Ok(s) => print!("{}", nnunet_report::text_summary(&s)),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

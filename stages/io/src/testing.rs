//! For tests that need something a machine may lack (the shared real dataset, the peer's
//! outputs, a browser, a Slurm cluster).

/// Whether this is a CI run (`CI=true` or `CI=1`, as CI services set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips a test whose input is missing: prints `SKIP: why` and returns; under CI it panics
/// instead, since CI provides every input and a skipped test there would pass unseen.
/// Use as `if !present { return skip("..."); }`.
pub fn skip(why: &str) {
    if in_ci() {
        panic!("{why}; CI=true: this test must run, not skip");
    }
    eprintln!("SKIP: {why}");
}

/// The directory of the package whose tests are running (`CARGO_MANIFEST_DIR` as `cargo test`
/// sets it for the test process), for fixture paths. Read at run time, not compiled in with
/// `env!`: a target directory shared by checkouts at different paths reuses test binaries
/// built in another checkout, whose compiled-in path may no longer exist.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is unset: run the tests through cargo")
}

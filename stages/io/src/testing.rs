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

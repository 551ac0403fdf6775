//! Link the CUDA part of libtorch explicitly and embed an rpath to the torch wheel's lib/.
//!
//! The PyPI torch wheel is a CUDA build, but `--as-needed` drops `libtorch_cuda.so` from the
//! binary's NEEDED list because no symbol is referenced directly; `tch::Cuda::is_available()`
//! would then be false on a GPU machine. `rustc-link-arg` only applies to the package that emits
//! it, so this lives in the binary crate (see ARCHITECTURE.md, "Link").
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

//! Embed an rpath to the torch wheel's lib/, so the binary finds libtorch without LD_LIBRARY_PATH.
//!
//! libtorch's CUDA part (`libtorch_cuda.so`) is deliberately *not* linked: `src/device.rs`
//! `dlopen`s it at start-up where an NVIDIA driver exists (linking it made every process load
//! cuDNN, cuBLAS, NCCL...: ~450 MB resident and ~0.3 s before `main`). The rpath lets that
//! `dlopen` find it.
//! `rustc-link-arg` only applies to the package that emits it, so this lives in the binary crate
//! (see ARCHITECTURE.md, "Link").

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}

//! glibc allocator tuning for libtorch's large, short-lived tensors.
//!
//! glibc serves every allocation above 32 MiB (its largest dynamic mmap threshold) with a fresh
//! `mmap` and returns it with `munmap` on free. A training step allocates and frees activations
//! of that size dozens of times, so every iteration page-faults them in again: on a 2-core
//! machine a 3d_fullres step at batch 4 spent more time in the kernel than computing (45 s vs
//! 16 s per 20 iterations at batch 2). Serving them from the heap and not trimming it keeps the
//! pages mapped and reused. Memory then stays at the process's peak, which for a training or
//! prediction unit is what it needs anyway.

/// Keeps large allocations on the heap (call before a training or prediction loop).
pub fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // M_MMAP_MAX = -4, M_TRIM_THRESHOLD = -1 (malloc.h); both return 1 on success.
        libc::mallopt(-4, 0);
        libc::mallopt(-1, 1 << 30);
    }
}

/// Serves allocations up to 16 MiB from the heap and keeps up to 32 MiB of freed heap mapped
/// (call once at start-up). Preprocessing allocates and frees case-sized buffers (a few hundred
/// KiB for Hippocampus-sized cases) for every unit; glibc's defaults give each a fresh `mmap`
/// that is page-faulted in and unmapped again (a fifth of the resample stage's time on small
/// cases). Larger buffers still come from `mmap`, so a CT volume's memory is returned on free:
/// with a 64 MiB threshold a 160x320x320 case's f32 image (62.5 MiB) stayed on the heaps of two
/// workers, fragmented, and the big-CT preprocessing peak was 485 MB instead of 359 MB.
pub fn reuse_case_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // M_MMAP_THRESHOLD = -3 (a fixed value also stops glibc's dynamic adjustment),
        // M_TRIM_THRESHOLD = -1 (malloc.h); both return 1 on success.
        libc::mallopt(-3, 16 << 20);
        libc::mallopt(-1, 32 << 20);
    }
}

//! Two allocators in one process: libtorch's tensors on jemalloc, Rust's buffers on glibc.
//!
//! Training and prediction allocate and free feature maps of 10-200 MB dozens of times per step.
//! glibc either returns each to the system on free (`mmap`/`munmap`: every use page-faults it in
//! again, a quarter of a big-CT prediction's time) or, told to keep them on its heap, fragments
//! it (a 512x512x100 CT peaked at 1.2 GB where the live maps need 0.8). jemalloc keeps freed
//! pages per size class and reuses them ([`MALLOC_CONF`]); [`release_freed`] hands them back
//! between the phases of a case and after each unit.
//!
//! The jemalloc library exports `malloc`, `free`, `posix_memalign`, ... unprefixed, so the
//! shared libraries' calls (libtorch's allocator, everything C++) resolve to it. Rust's own
//! allocations do not: [`Glibc`] sends them to glibc's `__libc_*` entry points, where they were
//! measured fastest (the 3d augmentation's batches took 0.031 s on jemalloc, 0.021 s on glibc;
//! perf: more time in its warp loop and in page faults). Each pointer is freed by the
//! allocator that made it: Rust frees what Rust allocated, libtorch what libtorch allocated.

use std::alloc::{GlobalAlloc, Layout};

extern "C" {
    fn __libc_malloc(size: usize) -> *mut u8;
    fn __libc_calloc(n: usize, size: usize) -> *mut u8;
    fn __libc_realloc(p: *mut u8, size: usize) -> *mut u8;
    fn __libc_memalign(align: usize, size: usize) -> *mut u8;
    fn __libc_free(p: *mut u8);
}

/// glibc's `malloc` guarantees this alignment (x86_64 and aarch64), as std's `System` assumes.
const MIN_ALIGN: usize = 16;

/// Rust's global allocator: glibc's malloc, called by its internal names (the public `malloc`
/// is jemalloc's in this binary). The same rules as std's `System` on Unix.
pub struct Glibc;

unsafe impl GlobalAlloc for Glibc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN && layout.align() <= layout.size() {
            __libc_malloc(layout.size())
        } else {
            __libc_memalign(layout.align(), layout.size())
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN && layout.align() <= layout.size() {
            __libc_calloc(layout.size(), 1)
        } else {
            let p = __libc_memalign(layout.align(), layout.size());
            if !p.is_null() {
                std::ptr::write_bytes(p, 0, layout.size());
            }
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        __libc_free(ptr)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN && layout.align() <= new_size {
            __libc_realloc(ptr, new_size)
        } else {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// jemalloc's options (read at its start-up; `MALLOC_CONF` in the environment adds to them):
/// freed pages are never purged by time (a decay of 10 s, jemalloc's default, purged a big-CT
/// prediction's maps between tiles: 31 s instead of 23 s per case); large allocations are served
/// by the ordinary arenas instead of a dedicated one that purges at once; no `sbrk`, which is
/// glibc's heap.
#[export_name = "malloc_conf"]
pub static MALLOC_CONF: &[u8; 70] = b"oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1,dss:disabled\0";

/// Hands freed memory back to the system: every jemalloc arena's pages (`arena.<all>.purge`)
/// and glibc's free heap pages (`malloc_trim`).
pub fn release_freed() {
    // MALLCTL_ARENAS_ALL = 4096.
    let name = c"arena.4096.purge";
    // SAFETY: a NUL-terminated control name that takes and returns nothing; malloc_trim only
    // releases free pages.
    unsafe {
        tikv_jemalloc_sys::mallctl(name.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), 0);
        libc::malloc_trim(0);
    }
}

//! Handing freed memory back to the system between large phases of work.
//!
//! A binary whose allocator keeps freed pages for reuse (`pipeline-torch`: libtorch's tensors on
//! jemalloc, see torch/src/alloc.rs) sets how they are returned; the engine calls
//! [`release_freed_memory`] after each unit and the predictor between the phases of a case
//! (reading + preprocessing, sliding window, export), so that one phase's peak is not kept
//! resident under the next. Without a hook it does nothing: glibc, as the engine binary tunes
//! it, returns CT-sized buffers on free.

static RELEASE_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets how [`release_freed_memory`] hands freed memory back. Only the first call counts.
pub fn set_release_hook(hook: fn()) {
    let _ = RELEASE_HOOK.set(hook);
}

/// Hands the memory freed so far back to the system (the hook of [`set_release_hook`]).
pub fn release_freed_memory() {
    if let Some(hook) = RELEASE_HOOK.get() {
        hook();
    }
}

//! Keeping an idle shim's heap small: one shim runs per pod, so every page
//! it keeps resident is paid once per pod.

/// Tunes glibc malloc for a process whose threads are idle nearly always:
/// one arena (per-thread arenas would each keep their own free pages),
/// and free memory at the top of the heap or in large blocks goes back to
/// the kernel early instead of staying resident for reuse.
pub fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called
    // before the server starts any thread of its own.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// Returns the heap's free pages to the kernel. Called after the calls
/// that allocate a lot only for their own duration (creating a task: the
/// OCI spec, the helper's request and reply), so that the idle shim keeps
/// only what it still uses.
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! Handing the heap pages that a table swap frees back to the kernel.
//!
//! A routing table is thousands of small allocations spread over the heap. Freed, they leave
//! holes that glibc keeps for reuse rather than returning, and new tables do not fit them
//! exactly: swapping a 10,000-route table every 100 ms, a proxy's resident memory grew from 24 to
//! 93 MB over 64 swaps while its live heap never passed 36 MB (heaptrack). `malloc_trim` returns
//! every whole free page, from the middle of each arena as well as its top. It runs on the thread
//! that frees replaced tables, after a compile (which frees the decoded table) or a freed table,
//! at most four times a second (see `server::graveyard`): never on a thread that serves requests.

/// Returns the heap's free pages to the kernel (glibc on Linux; elsewhere nothing to do).
#[allow(unsafe_code)] // the one call to malloc_trim; the library crate forbids unsafe code
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes glibc's arena locks itself and touches only memory that is free;
    // it has no preconditions and invalidates no allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

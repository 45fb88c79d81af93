//! Giving freed memory back to the system. A leaf module.
//!
//! Start-up and admission allocate and free a lot at once (fetched component bytes, the
//! self-test instance, the compile itself when it runs in-process — the daemon compiles in a
//! child, `sandbox::compiler`, for exactly this reason); glibc keeps freed pages in its arenas.
//! Trimming after that rare, large, short-lived work keeps the idle footprint at what the peer
//! actually holds.

/// Return freed heap pages of every malloc arena to the kernel (glibc only; elsewhere the
/// allocator's own policy applies).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

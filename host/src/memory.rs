//! Giving freed memory back to the system. A leaf module.
//!
//! Compiling a component (Cranelift, on several threads) allocates tens of MiB and frees
//! nearly all of it; glibc keeps the freed pages in its arenas, so a peer that compiled its
//! components at start would sit at twice its working size forever. Trimming after the rare,
//! large, short-lived work is what keeps the idle footprint at what the peer actually holds.

/// Return freed heap pages of every malloc arena to the kernel (glibc only; elsewhere the
/// allocator's own policy applies).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

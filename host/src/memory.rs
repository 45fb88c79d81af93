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

/// Serve every allocation of 1 MiB or more with its own mapping, returned to the kernel when
/// it is freed. glibc's default raises that threshold each time such a block is freed, up to
/// 32 MiB, so the next large buffers come from the heap and stay resident after they are
/// freed. The daemon's large buffers are short-lived: a compiled component coming back from
/// the compiler child, a prepared matcher's snapshot (tens of MiB at 10,000 rules).
pub fn map_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

//! Giving memory back after a large transient job.
//!
//! The binary chooses the allocator; the crates that run large transient
//! work (decoding a big request, a search over thousands of traces, a SQL
//! query) do not know which one it is. An allocator that keeps freed memory
//! per thread for a while, as the binary's does to spare steady ingest the
//! cost of faulting pages in again, would otherwise keep each such job's
//! peak resident on whichever thread ran it: forty hostile requests spread
//! over a dozen threads held over 1 GiB. So those jobs call
//! [`release_unused`] when they end, and the binary installs what that
//! means for its allocator with [`set_release_hook`].

use std::sync::OnceLock;

static HOOK: OnceLock<fn()> = OnceLock::new();

/// Installs what [`release_unused`] does; the first call wins.
pub fn set_release_hook(hook: fn()) {
    let _ = HOOK.set(hook);
}

/// Asks the allocator to give the memory this thread freed back to the
/// system now. Does nothing until a hook is installed.
pub fn release_unused() {
    if let Some(hook) = HOOK.get() {
        hook();
    }
}

/// Calls [`release_unused`] when `bytes`, what a job held at its peak, is
/// at least [`LARGE_JOB_BYTES`]: small jobs keep their memory for the next.
pub fn release_after(bytes: usize) {
    if bytes >= LARGE_JOB_BYTES {
        release_unused();
    }
}

/// A job holding at least this much at its peak gives it back when it ends.
pub const LARGE_JOB_BYTES: usize = 16 << 20;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn only_large_jobs_give_memory_back_through_the_installed_hook() {
        set_release_hook(count);
        release_after(LARGE_JOB_BYTES - 1);
        assert_eq!(CALLS.load(Ordering::SeqCst), 0);
        release_after(LARGE_JOB_BYTES);
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        release_unused();
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    }
}

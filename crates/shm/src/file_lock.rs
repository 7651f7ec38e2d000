//! Advisory whole-file locks: one holder at a time, released when the file is closed (or the
//! holder dies).

use std::fs::File;

/// `flock(fd, LOCK_EX | LOCK_NB)`: takes an exclusive lock on `file` without waiting.
///
/// Returns `Ok(false)` when another open file description holds it. The lock lives as long as
/// `file` (and its duplicates) stays open, and the kernel drops it if the process dies.
///
/// # References
/// - [flock(2)](https://man7.org/linux/man-pages/man2/flock.2.html)
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

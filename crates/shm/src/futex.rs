//! Futex words shared between processes.
//!
//! These wrappers use the *shared* futex operations (no `FUTEX_PRIVATE_FLAG`): the word lives in
//! a `MAP_SHARED` mapping and the waiter and the waker are different processes.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex;

/// How a [`wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Woken by [`wake`], or by a spurious wake-up: re-check the condition.
    Woken,
    /// The word no longer held `expected` when the kernel looked: nothing to wait for.
    ValueChanged,
    /// The timeout passed.
    TimedOut,
    /// A signal arrived.
    Interrupted,
}

/// `futex(word, FUTEX_WAIT, expected, timeout)`: sleeps while `*word == expected`.
///
/// The kernel compares and sleeps atomically with respect to [`wake`], which is what makes a
/// lost wake-up impossible when the waker changes the word before waking.
/// See [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html).
///
/// Errors other than the four outcomes of [`Wake`] (`EFAULT`, `EINVAL`, `ENOSYS`) mean a bad
/// address, timeout or kernel; they are returned, not taken for a wake-up.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> std::io::Result<Wake> {
    let ts = timeout.map(|t| futex::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) => Ok(Wake::Woken),
        Err(Errno::AGAIN) => Ok(Wake::ValueChanged),
        Err(Errno::TIMEDOUT) => Ok(Wake::TimedOut),
        Err(Errno::INTR) => Ok(Wake::Interrupted),
        Err(e) => Err(e.into()),
    }
}

/// `futex(word, FUTEX_WAKE, count)`: wakes up to `count` waiters; returns how many woke.
/// See [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html).
pub fn wake(word: &AtomicU32, count: u32) -> std::io::Result<usize> {
    Ok(futex::wake(word, futex::Flags::empty(), count)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[test]
    fn wait_returns_at_once_when_the_value_differs() {
        let word = AtomicU32::new(1);
        assert_eq!(
            wait(&word, 0, Some(Duration::from_secs(5))).unwrap(),
            Wake::ValueChanged
        );
    }

    #[test]
    fn wait_times_out() {
        let word = AtomicU32::new(0);
        assert_eq!(
            wait(&word, 0, Some(Duration::from_millis(1))).unwrap(),
            Wake::TimedOut
        );
    }

    #[test]
    fn wake_releases_a_waiter() {
        let word = Arc::new(AtomicU32::new(0));
        let w = word.clone();
        let t = std::thread::spawn(move || {
            while w.load(Ordering::Acquire) == 0 {
                wait(&w, 0, Some(Duration::from_secs(5))).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(10));
        word.store(1, Ordering::Release);
        wake(&word, 1).unwrap();
        t.join().unwrap();
    }
}

//! The atomics the lock-free code uses: std's normally, loom's under `RUSTFLAGS="--cfg loom"`.
//!
//! Under loom the futex calls are emulated with a mutex and a condition variable, which gives
//! the same guarantee the kernel does: the compare-and-sleep in `futex_wait` is atomic with
//! respect to `futex_wake`. A lost wake-up therefore shows up in a loom model as a deadlock.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64};

pub use std::sync::atomic::Ordering;

/// One turn of a spin-wait: a CPU hint normally; under loom a yield, so that loom explores the
/// other threads instead of spinning forever.
pub(crate) fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// A retry loop's pause after `attempt` failed tries: spin at first, then sleep briefly so a
/// stuck peer does not cost a whole core. Under loom, a yield (loom explores the others).
pub(crate) fn back_off(attempt: u32) {
    #[cfg(loom)]
    {
        let _ = attempt;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if attempt > 100 {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        std::hint::spin_loop();
    }
}

#[cfg(not(loom))]
pub(crate) mod futex {
    use super::AtomicU32;
    use std::time::Duration;

    /// Sleeps while `*word == expected`, at most `timeout`. How the wait ended does not
    /// matter: every caller re-checks its condition afterwards. An error (a bad address or
    /// timeout: impossible for a reference and a `Duration`) is a bug, and panics rather than
    /// turning into a silent busy loop.
    pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        if let Err(error) = shm::futex::wait(word, expected, timeout) {
            panic!("futex wait on a valid word failed: {error}");
        }
    }

    /// Wakes the (single) waiter on `word`. An error is a bug, as for [`wait`].
    pub(crate) fn wake(word: &AtomicU32) {
        if let Err(error) = shm::futex::wake(word, 1) {
            panic!("futex wake on a valid word failed: {error}");
        }
    }
}

#[cfg(loom)]
pub(crate) mod futex {
    use super::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};
    use std::time::Duration;

    /// The kernel's wait queue for one futex word, emulated.
    #[derive(Default)]
    pub(crate) struct Emulation {
        lock: Mutex<()>,
        queue: Condvar,
    }

    impl Emulation {
        /// Timeouts are ignored: in a model, a waiter that is never woken must deadlock so loom
        /// reports it.
        pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
            let guard = self.lock.lock().unwrap();
            if word.load(Ordering::SeqCst) == expected {
                drop(self.queue.wait(guard).unwrap());
            }
        }

        pub(crate) fn wake(&self) {
            let _guard = self.lock.lock().unwrap();
            self.queue.notify_all();
        }
    }

    loom::lazy_static! {
        /// One wait queue for every word the free functions below are used on: a wake-up
        /// wakes every waiter, and each re-checks its own word (as after a spurious wake-up).
        static ref SHARED_QUEUE: Emulation = Emulation::default();
    }

    /// [`Emulation::wait`] on the shared queue, for words that carry no emulation of their own.
    pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        SHARED_QUEUE.wait(word, expected, timeout);
    }

    /// [`Emulation::wake`] on the shared queue.
    pub(crate) fn wake(_word: &AtomicU32) {
        SHARED_QUEUE.wake();
    }
}

//! The atomics the lock-free code uses: std's normally, loom's under `RUSTFLAGS="--cfg loom"`.
//!
//! Under loom the futex calls are emulated with a mutex and a condition variable, which gives
//! the same guarantee the kernel does: the compare-and-sleep in `futex_wait` is atomic with
//! respect to `futex_wake`. A lost wake-up therefore shows up in a loom model as a deadlock.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64};

pub use std::sync::atomic::Ordering;

#[cfg(not(loom))]
pub(crate) mod futex {
    use super::AtomicU32;
    use std::time::Duration;

    /// Sleeps while `*word == expected`, at most `timeout`.
    pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        shm::futex::wait(word, expected, timeout);
    }

    /// Wakes the (single) waiter on `word`.
    pub(crate) fn wake(word: &AtomicU32) {
        shm::futex::wake(word, 1);
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
}

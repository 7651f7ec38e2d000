//! A mailbox of requests from one thread that asks to one worker thread (the market's loop and
//! its snapshot thread): the asker publishes the newest number it wants served (a command
//! number), the worker serves the newest it sees and says which one it is done with, and a stop
//! ends the worker once it has served everything asked before the stop. The asker's part is a
//! store: no lock, no system call (waking the worker is left to the caller, or to its poll).
//!
//! Three words, each with one writer:
//! - `asked`: written by the asker with release, after everything the request depends on (the
//!   journal records below the command number); read by the worker with acquire, so what it
//!   does for the request sees them.
//! - `done`: written by the worker with release, after it served; read by the asker with
//!   acquire, so a request it makes next comes after everything the worker did.
//! - `stop`: written by the asker with release, after its last `ask`; read by the worker with
//!   acquire *before* it reads `asked`, so a worker that sees the stop sees every request made
//!   before it, and serves them first.
//!
//! Numbers only grow. A request made while the worker is busy is found at its next look; the
//! asker asks only when [`Mailbox::is_idle`] (or a newer number replaces an older one, which is
//! then served as the newer: a snapshot at a later command covers the earlier).

use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// The three words (see the module doc).
#[derive(Debug, Default)]
pub struct Mailbox {
    asked: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
}

/// What the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Serve the request numbered so (the newest asked), then call [`Mailbox::done`].
    Serve(u64),
    /// Nothing asked: look again later.
    Idle,
    /// Stopped, and everything asked before the stop is served.
    Stop,
}

impl Mailbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asker: asks for `number` to be served (greater than any asked before).
    pub fn ask(&self, number: u64) {
        // Release: publishes what the asker wrote before (see the module doc).
        self.asked.store(number, Ordering::Release);
    }

    /// Asker: whether the worker is done with everything asked.
    pub fn is_idle(&self) -> bool {
        // Relaxed: the asker is the only writer of `asked`. Acquire: pairs with the worker's
        // release in `done`.
        let asked = self.asked.load(Ordering::Relaxed);
        self.done.load(Ordering::Acquire) >= asked
    }

    /// Asker: the worker is to stop once it has served what was asked before.
    pub fn stop(&self) {
        // Release: a worker that acquires the stop sees every `ask` before it.
        self.stop.store(true, Ordering::Release);
    }

    /// Worker: what to do next.
    pub fn next(&self) -> Next {
        // Acquire, both; `stop` first (see the module doc).
        let stop = self.stop.load(Ordering::Acquire);
        let asked = self.asked.load(Ordering::Acquire);
        // Relaxed: the worker is the only writer of `done`.
        if asked > self.done.load(Ordering::Relaxed) {
            Next::Serve(asked)
        } else if stop {
            Next::Stop
        } else {
            Next::Idle
        }
    }

    /// Worker: done with request `number`.
    pub fn done(&self, number: u64) {
        // Release: the asker that sees this asks next after everything the worker did.
        self.done.store(number, Ordering::Release);
    }
}

//! When the market takes snapshots, and the thread that takes them from a second copy of the
//! store.
//!
//! A thread keeps a [`Follower`]: a copy of the store that reads the journal's committed
//! records and applies them. When a snapshot is due (every `--snapshot-every` records, between
//! passes, when nothing is staged) the loop asks for the command number it has committed
//! through a [`Mailbox`] the thread polls every [`POLL`] (one store, no system call: waking a
//! sleeping thread through a channel cost ~10 µs here; the mailbox's orderings are
//! loom-checked in `bookstore-ipc`). The thread catches up to it, writes the snapshot
//! crash-safe, keeps the newest two, and deletes the journal segments the older of the two
//! covers (unless `--keep-journal`). One snapshot at a time: one that comes due while the last
//! is being taken is asked for at the next pass or housekeeping after it.
//!
//! Catching up costs the thread one engine apply per command, whatever the store holds: on two
//! CPUs under full load, about a quarter of the end-to-end throughput (measured against
//! `--snapshot-every 0`). Copying a small store costs the loop less than that: so when the
//! store holds at most [`COPY_AT_MOST`] orders the loop hands the thread a follower made from a
//! copy of its store as of the committed end (a clone, and the journal opened again), with the
//! request; the thread takes it in place of its own, has nothing to catch up, and follows on
//! from there. A larger store is caught up to as before, so the loop's pause stays bounded
//! (a copy of [`COPY_AT_MOST`] orders: see the constant).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bookstore_ipc::mailbox::{Mailbox, Next};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::journal::snapshot;
use crate::journal::Follower;

/// How often the snapshot thread looks for a request.
const POLL: Duration = Duration::from_millis(10);

/// The most orders (copies on the shelf and resting buys: a bound on listings and buys) a
/// store may hold for the loop to copy it at a snapshot instead of the thread catching up.
/// An engine's copy measured 6-10 ns a listing on this machine (58-87 µs for 10,000 over one
/// title or a thousand, 0.3 ms for 50,000, 0.7-1.0 ms for 100,000), so the loop pauses about
/// 0.1 ms at most, once per `--snapshot-every` records; catching up costs the thread
/// 170-350 ns a command, 17-35 ms of CPU per 100,000.
pub(super) const COPY_AT_MOST: u64 = 10_000;

pub(super) struct Snapshots {
    /// Take one when this many records were committed since the last (0: only on a clean stop).
    every: u64,
    /// The command number of the last snapshot asked for (or started from).
    last_at: u64,
    /// The follower's thread; `None` if it could not be started.
    taker: Option<Taker>,
}

/// The thread that follows the journal and takes the snapshots.
struct Taker {
    /// The loop asks for a snapshot at a command number whose records below are in the
    /// journal's pages (so the thread's `pread`s see them); the thread says when it is done.
    requests: Arc<Mailbox>,
    /// A follower at the command number asked for, made from a copy of the loop's store: put
    /// here before the request is, and taken by the thread when it serves the request.
    copies: Arc<Mutex<Option<Follower>>>,
    thread: JoinHandle<()>,
}

/// What the snapshot thread needs to know besides its follower.
pub(super) struct SnapshotPlan {
    pub(super) journal: PathBuf,
    pub(super) every: u64,
    /// The command number the market started at (its snapshot's, or the journal's end).
    pub(super) last_at: u64,
    /// Keep every journal segment (`--keep-journal`).
    pub(super) keep_journal: bool,
}

impl Snapshots {
    /// Starts the thread over `follower` (at the journal's committed end); without one (it
    /// could not open the journal to follow it, said as a warning by the caller) no snapshot
    /// is taken, and the journal keeps everything.
    pub(super) fn new(plan: SnapshotPlan, follower: Option<Follower>) -> Self {
        let taker = follower.and_then(|follower| {
            let requests = Arc::new(Mailbox::new());
            let copies = Arc::new(Mutex::new(None));
            let (theirs, their_copies) = (requests.clone(), copies.clone());
            let (journal, keep) = (plan.journal.clone(), plan.keep_journal);
            let spawned = std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || take_snapshots(follower, &journal, keep, &theirs, &their_copies));
            match spawned {
                Ok(thread) => Some(Taker {
                    requests,
                    copies,
                    thread,
                }),
                Err(error) => {
                    tracing::warn!(%error, "cannot start the snapshot thread; no snapshots");
                    None
                }
            }
        });
        Self {
            every: plan.every,
            last_at: plan.last_at,
            taker,
        }
    }

    /// Whether a snapshot at command `records` is due (and the last one is done).
    pub(super) fn due(&self, records: u64) -> bool {
        self.every != 0
            && records >= self.last_at + self.every
            && self
                .taker
                .as_ref()
                .is_some_and(|t| t.requests.is_idle() && !t.thread.is_finished())
    }

    /// Asks the thread for a snapshot at command `records`, which is committed; `copy`, if
    /// given, is a follower at `records` made from a copy of the store, for the thread to take
    /// the snapshot from (it catches up otherwise).
    pub(super) fn take(&mut self, records: u64, copy: Option<Follower>) {
        if let Some(taker) = &self.taker {
            self.last_at = records;
            taker.hand(records, copy);
        }
    }

    /// A clean stop: a snapshot at command `records` (everything committed; from `copy` if
    /// given, as in [`take`](Self::take)), waited for, so the next start replays nothing.
    pub(super) fn finish(&mut self, records: u64, copy: Option<Follower>) {
        if let Some(taker) = &self.taker {
            taker.hand(records, copy);
        }
        self.stop_thread();
    }

    /// Stops the thread after what it was asked, and waits for it.
    fn stop_thread(&mut self) {
        if let Some(taker) = self.taker.take() {
            // After what was asked: the thread serves that first.
            taker.requests.stop();
            taker.thread.thread().unpark();
            if taker.thread.join().is_err() {
                tracing::warn!("the snapshot thread panicked");
            }
        }
    }
}

impl Taker {
    /// Puts `copy` where the thread takes it, then asks for the snapshot at `records`. The
    /// copy is in place before the request is published (the mailbox's `ask` is a release
    /// store and its `next` an acquire load), so the thread serving the request finds it. A
    /// thread still serving an earlier request (a clean stop does not wait for it to finish)
    /// may take the copy for that one: that snapshot is then of this later committed command,
    /// as good a snapshot, and the next request finds the thread's follower there already.
    fn hand(&self, records: u64, copy: Option<Follower>) {
        if copy.is_some() {
            *lock(&self.copies) = copy;
        }
        self.requests.ask(records);
    }
}

/// A follower left in the hand-over by a thread that panicked is still a follower.
fn lock(copies: &Mutex<Option<Follower>>) -> std::sync::MutexGuard<'_, Option<Follower>> {
    copies
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Snapshots {
    /// Stops the thread after what it was asked (a market that stops on an error).
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The snapshot thread: for each command number asked, catch up, write, prune, delete the
/// covered segments. A follower that cannot read on stops the thread (said as a warning); the
/// market goes on, and its journal keeps everything.
fn take_snapshots(
    mut follower: Follower,
    journal: &Path,
    keep_journal: bool,
    requests: &Mailbox,
    copies: &Mutex<Option<Follower>>,
) {
    // The follower applies every command once more: at the lowest priority, so under full
    // load it lags (a restart then replays more) rather than taking a core from the loop and
    // its clients.
    if let Err(error) = shm::process::run_this_thread_in_the_background() {
        tracing::debug!(%error, "cannot lower the snapshot thread's priority");
    }
    loop {
        let target = match requests.next() {
            Next::Serve(target) => target,
            Next::Idle => {
                std::thread::park_timeout(POLL);
                continue;
            }
            Next::Stop => return,
        };
        // A copy handed with this request is at `target` already: it replaces ours (which
        // would have had to catch up), and the next request is followed on from it.
        if let Some(copy) = lock(copies).take() {
            follower = copy;
        }
        if let Err(error) = follower.catch_up(target) {
            tracing::warn!(%error, "cannot follow the journal; no more snapshots until a restart");
            return;
        }
        match snapshot::store(journal, &follower.snapshot(), !keep_journal) {
            Ok(stored) => {
                tracing::debug!(path = %stored.path.display(), "snapshot written");
                for path in stored.deleted_segments {
                    tracing::debug!(path = %path.display(), "journal segment deleted: covered by the snapshots");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot write a snapshot, or prune what it covers")
            }
        }
        requests.done(target);
    }
}

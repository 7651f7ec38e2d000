//! When the market takes snapshots, and the thread that takes them from a second copy of the
//! store.
//!
//! The loop never copies its state out. A thread keeps a [`Follower`]: a copy of the store
//! that reads the journal's committed records and applies them. When a snapshot is due (every
//! `--snapshot-every` records, between passes, when nothing is staged) the loop stores the
//! command number it has committed in a word the thread polls every [`POLL`], and that is the
//! loop's whole part: one store, no system call (waking a sleeping thread through a channel
//! cost ~10 µs here). The thread catches up to it, writes the snapshot crash-safe, keeps the
//! newest two, and deletes the journal segments the older of the two covers (unless
//! `--keep-journal`). One snapshot at a time: one that comes due while the last is being
//! taken is asked for at the next pass or housekeeping after it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::journal::snapshot;
use crate::journal::Follower;

/// How often the snapshot thread looks for a request.
const POLL: Duration = Duration::from_millis(10);

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
    shared: Arc<Requests>,
    thread: JoinHandle<()>,
}

/// What the loop and the snapshot thread share.
struct Requests {
    /// The command number of the newest snapshot asked for (0: none). Written by the loop with
    /// release, after the records below it are in the journal's pages; read by the thread with
    /// acquire, so the `pread`s that follow see those records.
    asked: AtomicU64,
    /// The command number of the last snapshot the thread is done with. Written by the thread
    /// (release), read by the loop (acquire) to know it may ask for the next.
    done: AtomicU64,
    /// Set by the loop (release) to end the thread once it has taken what was asked.
    stop: AtomicBool,
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
            let shared = Arc::new(Requests {
                asked: AtomicU64::new(0),
                done: AtomicU64::new(0),
                stop: AtomicBool::new(false),
            });
            let theirs = shared.clone();
            let (journal, keep) = (plan.journal.clone(), plan.keep_journal);
            let spawned = std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || take_snapshots(follower, &journal, keep, &theirs));
            match spawned {
                Ok(thread) => Some(Taker { shared, thread }),
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
            && self.taker.as_ref().is_some_and(|t| {
                // Relaxed: this thread is the only writer of `asked`. Acquire: pairs with the
                // thread's release when it is done with the last one.
                let asked = t.shared.asked.load(Ordering::Relaxed);
                t.shared.done.load(Ordering::Acquire) >= asked && !t.thread.is_finished()
            })
    }

    /// Asks the thread for a snapshot at command `records`, which is committed.
    pub(super) fn take(&mut self, records: u64) {
        if let Some(taker) = &self.taker {
            self.last_at = records;
            // Release: the records below `records` were written before (see `Requests`).
            taker.shared.asked.store(records, Ordering::Release);
        }
    }

    /// A clean stop: a snapshot at command `records` (everything committed), waited for, so
    /// the next start replays nothing.
    pub(super) fn finish(&mut self, records: u64) {
        if let Some(taker) = &self.taker {
            taker.shared.asked.store(records, Ordering::Release);
        }
        self.stop_thread();
    }

    /// Stops the thread after what it was asked, and waits for it.
    fn stop_thread(&mut self) {
        if let Some(taker) = self.taker.take() {
            // Release: pairs with the thread's acquire; it sees what was asked before.
            taker.shared.stop.store(true, Ordering::Release);
            taker.thread.thread().unpark();
            if taker.thread.join().is_err() {
                tracing::warn!("the snapshot thread panicked");
            }
        }
    }
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
fn take_snapshots(mut follower: Follower, journal: &Path, keep_journal: bool, shared: &Requests) {
    // The follower applies every command once more: at the lowest priority, so under full
    // load it lags (a restart then replays more) rather than taking a core from the loop and
    // its clients.
    if let Err(error) = shm::process::run_this_thread_in_the_background() {
        tracing::debug!(%error, "cannot lower the snapshot thread's priority");
    }
    loop {
        // Acquire, both: see `Requests`. `stop` first: a stop sees what was asked before it.
        let stop = shared.stop.load(Ordering::Acquire);
        let target = shared.asked.load(Ordering::Acquire);
        if target <= shared.done.load(Ordering::Relaxed) {
            if stop {
                return;
            }
            std::thread::park_timeout(POLL);
            continue;
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
        // Release: the loop that sees this asks for the next one after everything above.
        shared.done.store(target, Ordering::Release);
    }
}

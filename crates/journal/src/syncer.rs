//! Pipelined group commit: a thread that makes the journal durable up to an offset while the
//! market's loop goes on applying the next batch.
//!
//! The loop asks for "durable up to `end`" ([`Syncer::request`]) and carries on; the thread
//! takes the latest request, runs one `fdatasync` for everything staged up to it (later
//! requests that arrive meanwhile are covered by the next one: group commit across batches),
//! then publishes the offset it reached in [`Syncer::durable`]. The loop reads that word each
//! pass (no system call) and releases the replies of the batches below it. Nothing the thread
//! does is visible to clients: releasing replies stays the loop's job, so "nothing visible that
//! is not durable" holds by construction.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the loop asked for, under the lock.
struct Wanted {
    /// Sync up to this offset.
    offset: u64,
    /// Leave the thread after syncing what was asked.
    stop: bool,
}

struct Shared {
    wanted: Mutex<Wanted>,
    wake: Condvar,
    /// Offset up to which the file is on stable storage. Written by the thread (release, after
    /// the `fdatasync` returned), read by the loop (acquire).
    durable: AtomicU64,
    /// `fdatasync` calls made.
    syncs: AtomicU64,
    /// The first error; after it the thread stops and `durable` stays where it was.
    failure: Mutex<Option<std::io::Error>>,
}

/// The syncing thread and its handle.
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    /// The largest offset asked for so far: a request for no more is dropped without taking
    /// the lock, so a loop may ask on every pass while it waits.
    requested: u64,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread over `file` (a duplicate of the journal's descriptor), with
    /// everything up to `durable` already on stable storage; `stall` holds each `fdatasync`
    /// back (the test fault point, see [`test_stall`]).
    pub(crate) fn start(
        file: File,
        durable: u64,
        stall: Option<Duration>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            wanted: Mutex::new(Wanted {
                offset: durable,
                stop: false,
            }),
            wake: Condvar::new(),
            durable: AtomicU64::new(durable),
            syncs: AtomicU64::new(0),
            failure: Mutex::new(None),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || run(&theirs, &file, stall))?;
        Ok(Self {
            shared,
            requested: durable,
            thread: Some(thread),
        })
    }

    /// Asks for the file to be durable up to `offset`; returns at once.
    pub(crate) fn request(&mut self, offset: u64) {
        if offset <= self.requested {
            return;
        }
        self.requested = offset;
        let mut wanted = lock(&self.shared.wanted);
        if offset > wanted.offset {
            wanted.offset = offset;
            self.shared.wake.notify_one();
        }
    }

    /// Whether the thread has been asked for more than it has made durable: it is syncing
    /// (or about to).
    pub(crate) fn is_busy(&self) -> bool {
        self.durable() < self.requested
    }

    /// Offset up to which the file is known to be on stable storage.
    pub(crate) fn durable(&self) -> u64 {
        // Acquire: pairs with the thread's release store after its `fdatasync` returned.
        self.shared.durable.load(Ordering::Acquire)
    }

    pub(crate) fn syncs(&self) -> u64 {
        // Relaxed: a count for watchers; it orders nothing.
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// The error that stopped the thread, if one did.
    pub(crate) fn take_failure(&self) -> Option<std::io::Error> {
        lock(&self.shared.failure).take()
    }

    /// Syncs what was asked, then stops and joins the thread.
    pub(crate) fn stop(&mut self) {
        lock(&self.shared.wanted).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain numbers behind: still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run(shared: &Shared, file: &File, stall: Option<Duration>) {
    loop {
        let target = {
            let mut wanted = lock(&shared.wanted);
            // Relaxed loads of `durable`: this thread is its only writer.
            while wanted.offset <= shared.durable.load(Ordering::Relaxed) && !wanted.stop {
                wanted = shared
                    .wake
                    .wait(wanted)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if wanted.offset <= shared.durable.load(Ordering::Relaxed) {
                return; // stop, with nothing left to sync
            }
            wanted.offset
        };
        if let Some(stall) = stall {
            std::thread::sleep(stall);
        }
        match file.sync_data() {
            Ok(()) => {
                // Relaxed: a count for watchers.
                shared.syncs.fetch_add(1, Ordering::Relaxed);
                // Release: whoever acquires this offset acts after the sync completed.
                shared.durable.store(target, Ordering::Release);
            }
            Err(error) => {
                *lock(&shared.failure) = Some(error);
                return;
            }
        }
    }
}

/// `BOOKSTORE_TEST_SYNC_STALL_MS`: a test-only fault point that holds every `fdatasync` (the
/// syncing thread's and the loop's own) back this long, so a test can kill the market between
/// applying a batch and making it durable.
pub(crate) fn test_stall() -> Option<Duration> {
    std::env::var("BOOKSTORE_TEST_SYNC_STALL_MS")
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_durable_and_later_requests_are_grouped() {
        let path = std::env::temp_dir().join(format!("syncer-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        let mut syncer = Syncer::start(file.try_clone().unwrap(), 0, None).unwrap();
        for offset in [10, 20, 30] {
            syncer.request(offset);
        }
        let started = std::time::Instant::now();
        while syncer.durable() < 30 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "synced in time"
            );
            std::thread::yield_now();
        }
        assert!(
            (1..=3).contains(&syncer.syncs()),
            "{} syncs",
            syncer.syncs()
        );
        syncer.request(40);
        syncer.stop();
        assert_eq!(syncer.durable(), 40, "stopping syncs what was asked");
        assert!(syncer.take_failure().is_none());
        std::fs::remove_file(path).unwrap();
    }
}

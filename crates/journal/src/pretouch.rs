//! Faulting the live segment's next pages in ahead of the loop, on a thread of its own
//! (durability `none`), so that the loop's writes into the mapping take no page fault and it
//! makes no system call for them: Chronicle Queue's "pretoucher".
//!
//! The loop says where its records end ([`Pretoucher::note_end`]: a relaxed store per batch,
//! and a wake-up each time the end passed a quarter of the window) and how far ahead it wants
//! pages ready ([`Pretoucher::want_ahead`], from the rate it writes at). The thread faults the
//! pages in by chunks (`madvise(MADV_POPULATE_WRITE)` through a [`Populator`], which holds the
//! mapping's lock, so a `grow` or a roll waits for one chunk at most) until `end + ahead` is
//! ready or the mapping ends, then sleeps until woken. A roll hands it the next segment's
//! mapping ([`Pretoucher::retarget`]).
//!
//! Measured before it existed: faulting the pages in on the loop's thread at housekeeping
//! stalled a round trip for about 2 ms every 50 ms under load, and a market's first 40 ms took
//! a page fault (3–5 µs) every 26 round trips, before the first housekeeping widened the window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use shm::Populator;

/// Pages faulted in by one `madvise`: 1 MiB, about 0.1–0.4 ms here.
const CHUNK: u64 = 1 << 20;
/// The longest the thread sleeps unwoken (it is woken as the records advance).
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// The thread and the loop's handle on it.
pub(crate) struct Pretoucher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The end past which [`note_end`](Self::note_end) wakes the thread next.
    next_wake: u64,
    /// The window asked for last, in bytes past the end.
    ahead: u64,
}

struct Shared {
    target: Mutex<Target>,
    wake: Condvar,
    /// Where the loop's records end in the live segment. Relaxed both ways: it only says how
    /// far to go; what is populated where is decided under `target`'s lock.
    end: AtomicU64,
}

/// What the thread works on, under the lock.
struct Target {
    populator: Populator,
    /// Bumped by each retarget, so a chunk done in the old mapping is not counted in the new.
    generation: u64,
    /// Pages before this offset of the live segment are faulted in.
    populated: u64,
    /// Bytes past the end to have ready.
    ahead: u64,
    stop: bool,
}

/// A poisoned lock still holds consistent numbers (each is set in one assignment).
fn lock(target: &Mutex<Target>) -> MutexGuard<'_, Target> {
    target
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pretoucher {
    /// Starts the thread over the live segment's mapping (`populator`), whose pages before
    /// `populated` are already faulted in, the records ending at `end`.
    pub(crate) fn start(
        populator: Populator,
        populated: u64,
        end: u64,
        ahead: u64,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            target: Mutex::new(Target {
                populator,
                generation: 0,
                populated,
                ahead,
                stop: false,
            }),
            wake: Condvar::new(),
            end: AtomicU64::new(end),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("journal-pages".into())
            .spawn(move || run(&theirs))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            next_wake: end + ahead / 4,
            ahead,
        })
    }

    /// The records now end at `end` (called once per batch): a relaxed store, and a wake-up
    /// (a system call) only each time the end passed another quarter of the window.
    pub(crate) fn note_end(&mut self, end: u64) {
        self.shared.end.store(end, Ordering::Relaxed);
        if end >= self.next_wake {
            self.next_wake = end + self.ahead / 4;
            self.shared.wake.notify_one();
        }
    }

    /// Have `ahead` bytes past the end ready from now on (the loop's housekeeping, after it
    /// made the mapping hold them, and `grew` it for that). Takes the lock and wakes the
    /// thread only if something changed: a market that parks after every request calls this
    /// before each park.
    pub(crate) fn want_ahead(&mut self, ahead: u64, grew: bool) {
        if ahead == self.ahead && !grew {
            return;
        }
        self.ahead = ahead;
        lock(&self.shared.target).ahead = ahead;
        self.shared.wake.notify_one();
    }

    /// Work on a new live segment from now on: its mapping, the records ending at `end`
    /// (nothing after it faulted in yet).
    pub(crate) fn retarget(&mut self, populator: Populator, end: u64) {
        {
            let mut target = lock(&self.shared.target);
            target.populator = populator;
            target.generation += 1;
            target.populated = end;
        }
        self.next_wake = end;
        self.note_end(end);
    }
}

impl Drop for Pretoucher {
    fn drop(&mut self) {
        lock(&self.shared.target).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: fault pages in up to the end plus the window, a chunk at a time, without
/// holding the target's lock meanwhile (the loop's `retarget` does not wait for a chunk), then
/// sleep until woken. A failure to fault in costs only speed: the loop's writes fault instead.
fn run(shared: &Shared) {
    let mut target = lock(&shared.target);
    loop {
        if target.stop {
            return;
        }
        let end = shared.end.load(Ordering::Relaxed);
        let want = end + target.ahead;
        // Pages the records already reach were faulted in by the writes themselves.
        let from = target.populated.max(end);
        if from < want {
            let (populator, generation) = (target.populator.clone(), target.generation);
            let to = want.min(from + CHUNK);
            drop(target);
            let reached = populator.populate_for_writing(from as usize..to as usize);
            target = lock(&shared.target);
            match reached {
                // Done where the loop still writes: go on, unless the mapping ended first (it
                // grows at the loop's housekeeping, which wakes us).
                Ok(reached) if target.generation == generation => {
                    target.populated = reached as u64;
                    if reached as u64 >= to {
                        continue;
                    }
                }
                // The live segment changed meanwhile: start over in the new one.
                Ok(_) => continue,
                Err(_) => {}
            }
        }
        target = shared
            .wake
            .wait_timeout(target, IDLE_WAIT)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm::MappedFile;

    #[test]
    fn the_thread_faults_in_the_window_ahead_of_the_records_and_follows_a_retarget() {
        let dir = std::env::temp_dir().join(format!("journal-pretouch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join(name))
                .unwrap()
        };
        let mut first = MappedFile::new(open("first"), 8 << 20).unwrap();
        let mut pages = Pretoucher::start(first.populator(), 0, 0, 2 << 20).unwrap();
        let populated = |pages: &Pretoucher| lock(&pages.shared.target).populated;
        let wait_for = |pages: &Pretoucher, at_least: u64| {
            let started = std::time::Instant::now();
            while populated(pages) < at_least {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "never got there"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        wait_for(&pages, 2 << 20);
        pages.note_end(3 << 20);
        wait_for(&pages, 5 << 20);
        pages.note_end(7 << 20);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(populated(&pages), 8 << 20, "no further than the mapping");
        let mut second = MappedFile::new(open("second"), 4 << 20).unwrap();
        pages.retarget(second.populator(), 4096);
        wait_for(&pages, 4096 + (2 << 20));
        drop(first);
        second.bytes_mut()[4096] = 1;
        drop(pages);
        drop(second);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Park and wake across processes without losing a wake-up, and without a system call when
//! the sleeper is awake.
//!
//! One side (the *sleeper*: the market for its requests, a client for its events) waits for
//! work; any number of *ringers* publish work and then call [`Doorbell::notify`]. The word's
//! [`PARKED`] bit says whether the sleeper is parked. The handshake is a Dekker-style pair of
//! SeqCst fences:
//!
//! ```text
//! sleeper                                   ringer
//! fetch_or(word, PARKED)                    publish work (ring tail, release)
//! fence(SeqCst)                             fence(SeqCst)
//! if work visible: fetch_and(!PARKED)       if word has PARKED and fetch_and(!PARKED) had it:
//! else futex_wait(word, with PARKED)            futex_wake(word)
//! ```
//!
//! The fences are totally ordered, so either the ringer sees `PARKED` (and wakes, or clears it
//! so that `futex_wait` returns at once), or the sleeper's re-check sees the work. A ringer
//! that sees no `PARKED` pays one fence and one load: no system call.
//!
//! The sleeper writes the word with read-modify-writes, not plain stores. An RMW always reads
//! the latest value in the word's modification order, so the sleeper's `PARKED` cannot end up
//! ordered before a ringer's earlier clearing of it. The loom model with plain stores found a
//! lost wake-up across two rounds (ringer clears late, sleeper re-parks, ringer's next load
//! reads the cleared value); with RMWs it finds none. They cost a locked instruction on the
//! park path only, which is about to make a system call anyway.
//!
//! # A guardian: waking the sleeper when the ringer's process dies
//!
//! A client parked for its reply must also wake if the market dies, and a timeout to look
//! every so often costs a timer armed and cancelled at every park (0.2 to 0.5 µs on this
//! kind of machine, see the alarm in the market). Instead a thread of the market *guards* the
//! word: its thread id is in the word's low bits ([`GUARDIAN`]) and the word is on that
//! thread's robust-futex list (`shm::robust`). [`PARKED`] is the kernel's `FUTEX_WAITERS` bit,
//! so when the guardian dies, however it dies, the kernel sets [`GUARDIAN_DIED`] in place of
//! its id and wakes the parked sleeper; a guardian that ends normally does the same itself
//! ([`Doorbell::release_guard`]). [`Doorbell::park_guarded`] parks without a timeout while the
//! word names a guardian, with one while it names none, and not at all once the guardian died.
//!
//! A process that may write the word can still write a guardian's id into it after that
//! guardian died, and so keep a sleeper from noticing the death, as it can keep it waiting in
//! other ways (by taking its replies from its ring).

use std::time::Duration;

use crate::sync::{fence, futex, AtomicU32, Ordering};

/// Set while the sleeper is parked (or about to be). The kernel's `FUTEX_WAITERS`: it wakes
/// the sleeper at the guardian's death only if this bit is set.
pub const PARKED: u32 = shm::robust::WAITERS;
/// Set in place of the guardian's id when the guardian died (the kernel's `FUTEX_OWNER_DIED`).
pub const GUARDIAN_DIED: u32 = shm::robust::OWNER_DIED;
/// The bits that hold the guardian's thread id; zero: no guardian.
pub const GUARDIAN: u32 = shm::robust::OWNER;

/// What a word says of its guardian.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Guard {
    /// No thread guards the word: a sleeper must look for itself every so often.
    None,
    /// A thread guards it: the kernel wakes the sleeper if that thread dies.
    Alive,
    /// The thread that guarded it died (or ended).
    Died,
}

impl Guard {
    fn of(word: u32) -> Self {
        if word & GUARDIAN_DIED != 0 {
            Guard::Died
        } else if word & GUARDIAN != 0 {
            Guard::Alive
        } else {
            Guard::None
        }
    }
}

/// A futex word on its own 128 bytes (a pair of cache lines: see [`crate::record::LinePair`]),
/// since the sleeper and the ringers are different processes.
#[repr(C, align(128))]
pub struct Doorbell {
    word: AtomicU32,
    #[cfg(loom)]
    emulation: futex::Emulation,
}

impl Default for Doorbell {
    fn default() -> Self {
        Self {
            word: AtomicU32::new(0),
            #[cfg(loom)]
            emulation: Default::default(),
        }
    }
}

impl Doorbell {
    /// After publishing work: wakes the sleeper if (and only if) it is parked.
    /// Returns whether a wake-up (a system call) was sent.
    pub fn notify(&self) -> bool {
        // SeqCst fence: orders our publication of the work before the load of the word,
        // against the sleeper's setting of PARKED before its re-check (see the module docs).
        fence(Ordering::SeqCst);
        if self.word.load(Ordering::Relaxed) & PARKED == 0 {
            return false;
        }
        // Only one ringer clears the bit and pays for the system call.
        if self.word.fetch_and(!PARKED, Ordering::Relaxed) & PARKED != 0 {
            self.wake();
            return true;
        }
        false
    }

    /// Wakes the sleeper whatever the word reads: clears `PARKED` and makes the system call
    /// even if it did not read `PARKED`. For a ringer with nothing to publish but the time (the
    /// market's alarm), whose ring must also wake a sleeper whose word another process
    /// scribbled on after it went to sleep: the kernel then sleeps on, since no one wakes it,
    /// and [`notify`](Self::notify), which reads the word first, would not. A system call
    /// every time, so not for the hot path.
    pub fn wake_regardless(&self) {
        // SeqCst fence, as in `notify`: orders what the caller published (the alarm's flag)
        // before the RMW, against the sleeper's fence after announcing its park. Either the
        // sleeper's re-check sees the publication, or its `PARKED` comes first in the word's
        // order and this RMW clears it, so its `futex_wait` returns at once or is woken by the
        // call below.
        fence(Ordering::SeqCst);
        self.word.fetch_and(!PARKED, Ordering::Relaxed);
        self.wake();
    }

    /// Sleeps until rung or `timeout` passes, unless `has_work` (checked after announcing the
    /// park) already sees work. The caller re-checks for work either way.
    pub fn park(&self, has_work: impl FnOnce() -> bool, timeout: Option<Duration>) {
        let word = self.announce_park();
        self.sleep_unless(word, has_work, timeout);
    }

    /// [`park`](Self::park) for a sleeper that must also wake when its guardian dies: without
    /// a timeout of its own (only `deadline`'s) while a guardian is alive, with at most
    /// `unguarded` when there is none, and not at all once the guardian died. Tells which it
    /// was, as the word read when the park was announced: after `Guard::Died` the caller
    /// looks at the guardian's process rather than parking again.
    pub fn park_guarded(
        &self,
        has_work: impl FnOnce() -> bool,
        deadline: Option<Duration>,
        unguarded: Duration,
    ) -> Guard {
        // The word the announcing RMW returns is the one the wait compares with: if the kernel
        // marks the guardian dead after this, the word differs and the wait returns at once,
        // or the kernel's wake ends it (PARKED is set).
        let word = self.announce_park();
        let guard = Guard::of(word);
        match guard {
            Guard::Alive => self.sleep_unless(word, has_work, deadline),
            Guard::None => {
                let timeout = deadline.map_or(unguarded, |d| d.min(unguarded));
                self.sleep_unless(word, has_work, Some(timeout));
            }
            Guard::Died => self.unpark(),
        }
        guard
    }

    /// Sets `PARKED`; returns the word as it now reads. The SeqCst fence orders this write
    /// before the re-check's loads, against the ringer's fence (see the module docs); Relaxed
    /// suffices for the RMW itself.
    fn announce_park(&self) -> u32 {
        let word = self.word.fetch_or(PARKED, Ordering::Relaxed) | PARKED;
        fence(Ordering::SeqCst);
        word
    }

    /// After [`announce_park`](Self::announce_park) read `word`: sleeps unless `has_work`,
    /// then unparks.
    fn sleep_unless(&self, word: u32, has_work: impl FnOnce() -> bool, timeout: Option<Duration>) {
        if !has_work() {
            // Returns at once if a ringer already cleared PARKED (or anything else changed).
            self.wait(word, timeout);
        }
        self.unpark();
    }

    /// Woken, timed out or found work: either way the sleeper is awake now. Relaxed: the word
    /// carries no data; work is read through its own acquire loads.
    fn unpark(&self) {
        self.word.fetch_and(!PARKED, Ordering::Relaxed);
    }

    /// Names the calling thread's `id` as the word's guardian (keeping `PARKED`): from now on
    /// a guarded park waits without a timeout. The word must be on that thread's
    /// robust-futex list first, or its death would wake no one.
    pub fn guard(&self, id: u32) {
        let id = id & GUARDIAN;
        // Relaxed: the id carries no data; a sleeper reads it with the RMW that parks.
        let _ = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w & PARKED | id)
            });
    }

    /// What the kernel does for a guardian `id` that dies, done by a guardian that ends: if
    /// the word still names `id`, it says `GUARDIAN_DIED` instead, and a parked sleeper is
    /// woken. Returns whether the word named `id`.
    pub fn release_guard(&self, id: u32) -> bool {
        let id = id & GUARDIAN;
        // Relaxed, and no fence: the word's own modification order decides. Either the
        // sleeper's announcing RMW comes first (this one sees PARKED and wakes it) or this one
        // does (the sleeper reads GUARDIAN_DIED and does not wait). The guardian publishes
        // nothing for the sleeper to read: replies come through the ring's own release stores.
        let marked = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                (w & GUARDIAN == id && w & GUARDIAN_DIED == 0).then_some(w & PARKED | GUARDIAN_DIED)
            });
        match marked {
            Ok(was) => {
                if was & PARKED != 0 {
                    self.wake();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Runs `body` with the calling thread guarding `doorbells`: their words go on the
    /// thread's robust-futex list and name the thread ([`guard`](Self::guard)), so that if it
    /// dies while `body` runs the kernel marks them and wakes their sleepers; when `body`
    /// returns or unwinds, the thread marks them itself ([`release_guard`](Self::release_guard))
    /// and leaves the list. An error (the list cannot be set) comes before `body` runs.
    #[cfg(not(loom))]
    pub fn guard_while<R>(
        doorbells: &[&Doorbell],
        body: impl FnOnce() -> R,
    ) -> Result<R, shm::robust::HoldError> {
        let words: Vec<&AtomicU32> = doorbells.iter().map(|d| &d.word).collect();
        shm::robust::while_holding(&words, || {
            // On the list before the id is in a word: a death in between marks nothing, and
            // the sleepers of those words go on parking with a timeout.
            let id = shm::robust::this_thread_id();
            for d in doorbells {
                d.guard(id);
            }
            let _release = ReleaseGuards(doorbells, id);
            body()
        })
    }

    /// The thread id of the word's guardian while it lives, as the word reads now (for
    /// `inspect`). Relaxed: a report of a moment, ordered with nothing.
    pub fn guardian_thread(&self) -> Option<u32> {
        let word = self.word.load(Ordering::Relaxed);
        (Guard::of(word) == Guard::Alive).then_some(word & GUARDIAN)
    }

    /// Whether the sleeper has announced it is parked (for `inspect`). Relaxed, as above.
    pub fn is_parked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PARKED != 0
    }

    #[cfg(not(loom))]
    fn wait(&self, expected: u32, timeout: Option<Duration>) {
        futex::wait(&self.word, expected, timeout);
    }

    #[cfg(not(loom))]
    fn wake(&self) {
        futex::wake(&self.word);
    }

    #[cfg(loom)]
    fn wait(&self, expected: u32, timeout: Option<Duration>) {
        self.emulation.wait(&self.word, expected, timeout);
    }

    #[cfg(loom)]
    fn wake(&self) {
        self.emulation.wake();
    }
}

/// Marks the doorbells' guardian gone when dropped: at the end of
/// [`Doorbell::guard_while`]'s body, also when it unwinds.
#[cfg(not(loom))]
struct ReleaseGuards<'a>(&'a [&'a Doorbell], u32);

#[cfg(not(loom))]
impl Drop for ReleaseGuards<'_> {
    fn drop(&mut self) {
        for d in self.0 {
            d.release_guard(self.1);
        }
    }
}

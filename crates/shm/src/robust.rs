//! Futex words a thread holds for its waiters: when the thread dies, however it dies (a
//! `SIGKILL` included), the kernel marks each word it still holds and wakes the word's waiter.
//!
//! This is the kernel's robust-futex list, made for mutexes whose owner may die, used here
//! for waiting on a process that may die: a word *held* by a thread has that thread's id in
//! its low 30 bits ([`OWNER`]). At the thread's exit the kernel walks the list the thread
//! registered with `set_robust_list(2)`, and for each word whose owner is the exiting thread
//! sets the word to [`OWNER_DIED`] (keeping [`WAITERS`]) and, if [`WAITERS`] was set, does a
//! `FUTEX_WAKE` of one waiter. A sleeper that sets [`WAITERS`] before it waits on a held word
//! therefore needs no timeout to notice the holder's death.
//!
//! The list's nodes are in this process's private memory, never in a shared mapping: the
//! kernel follows their `next` pointers at the thread's death, and a node another process
//! could write would let it steer that walk. The kernel finds each word at the same offset
//! from its node (one `futex_offset` per list), so the nodes sit in a private *mirror* of the
//! words' address range, each at its word's place in it; only the pages that hold a node are
//! ever touched.
//!
//! `unsafe` is allowed here: `set_robust_list` and `get_robust_list` take raw pointers to
//! memory the kernel reads at the thread's death. Each block says why it holds.
//!
//! See [set_robust_list(2)](https://man7.org/linux/man-pages/man2/set_robust_list.2.html) and
//! the kernel's `Documentation/locking/robust-futex-ABI.rst`.
#![allow(unsafe_code)]

use std::sync::atomic::AtomicU32;

/// Set in a held word by its sleeper before it waits (`FUTEX_WAITERS`): the kernel wakes a
/// waiter at the holder's death only if this bit is set.
pub const WAITERS: u32 = 0x8000_0000;
/// Set by the kernel, in place of the owner's id, in a word whose owner died
/// (`FUTEX_OWNER_DIED`).
pub const OWNER_DIED: u32 = 0x4000_0000;
/// The bits of a held word that hold its owner's thread id (`FUTEX_TID_MASK`).
pub const OWNER: u32 = 0x3fff_ffff;

/// The kernel walks at most this many nodes of a list (`ROBUST_LIST_LIMIT`).
pub const MAX_WORDS: usize = 2048;

/// `struct robust_list_head` of `<linux/futex.h>`: the list's first node (its `next`), the
/// offset from a node to its futex word, and a node being added or removed (none here).
#[repr(C)]
struct Head {
    next: usize,
    futex_offset: isize,
    list_op_pending: usize,
}

/// Why words could not be held.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("{0} futex words to hold: the kernel walks at most {MAX_WORDS}")]
    TooMany(usize),
    #[error("a futex word to hold is {offset} bytes from the lowest: not a multiple of 8 (each needs an 8-byte node at the same distance)")]
    Misaligned { offset: usize },
    #[error("{call}: {source}")]
    Call {
        call: &'static str,
        source: std::io::Error,
    },
}

/// The id of the calling thread as the kernel compares it with a held word's owner bits.
pub fn this_thread_id() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32 & OWNER
}

/// `set_robust_list(head, sizeof head)`: runs `body` with `words` held by the calling thread,
/// then gives the thread back the list it had (the C library's, for its robust mutexes).
///
/// Holding only tells the kernel where the words are: `body` itself writes this thread's id
/// ([`this_thread_id`]) into the words it wants the kernel to mark at its death, and before it
/// returns marks them as the kernel would (once `body` has returned, the kernel no longer
/// walks the list). While `body` runs, the thread holds no robust mutex of the C library (its
/// list is set aside); Rust's own locks are not robust and do not use it.
///
/// The words must stay mapped while `body` runs, which their borrow ensures.
pub fn while_holding<R>(words: &[&AtomicU32], body: impl FnOnce() -> R) -> Result<R, HoldError> {
    if words.len() > MAX_WORDS {
        return Err(HoldError::TooMany(words.len()));
    }
    // Each word once (a word listed twice would make its node point at itself).
    let mut addresses: Vec<usize> = words.iter().map(|w| w.as_ptr() as usize).collect();
    addresses.sort_unstable();
    addresses.dedup();
    let (Some(&low), Some(&high)) = (addresses.first(), addresses.last()) else {
        return Ok(body());
    };
    if let Some(offset) = addresses.iter().map(|a| a - low).find(|o| o % 8 != 0) {
        return Err(HoldError::Misaligned { offset });
    }
    // The mirror: one u64 per 8 bytes of the words' range, a node at each word's place. A
    // zeroed allocation this large is fresh pages the kernel maps only where a node is written.
    let mut mirror = vec![0u64; (high - low) / 8 + 1];
    let base = mirror.as_ptr() as usize;
    let mut head = Box::new(Head {
        next: 0,
        // node + futex_offset = word, for every node: node = base + (word - low).
        futex_offset: low.wrapping_sub(base) as isize,
        list_op_pending: 0,
    });
    // The list is circular: the last node's `next` is the head itself.
    let head_at = &raw const *head as usize;
    let mut next = head_at;
    for &address in addresses.iter().rev() {
        let node = (address - low) / 8;
        mirror[node] = next as u64;
        next = base + (address - low);
    }
    head.next = next;
    let previous = current_list()?;
    // SAFETY: `head` is a valid `struct robust_list_head` whose list is circular, its nodes in
    // `mirror`, and each node's futex word (node + futex_offset) is one of `words`. Both `head`
    // and `mirror` outlive the registration: it is undone below, before they drop, and the
    // guard undoes it when `body` unwinds. The words stay mapped while borrowed.
    let set = unsafe {
        libc::syscall(
            libc::SYS_set_robust_list,
            head_at as *const Head,
            std::mem::size_of::<Head>(),
        )
    };
    if set != 0 {
        return Err(HoldError::Call {
            call: "set_robust_list",
            source: std::io::Error::last_os_error(),
        });
    }
    let restore = Restore(previous);
    let result = body();
    drop(restore);
    drop((head, mirror));
    Ok(result)
}

/// The calling thread's list before ours: its head and the length it was registered with.
#[derive(Clone, Copy)]
struct PreviousList(usize, usize);

/// `get_robust_list(0, &head, &len)`: the calling thread's registered list.
fn current_list() -> Result<PreviousList, HoldError> {
    let (mut head, mut len) = (0usize, 0usize);
    // SAFETY: pid 0 is the calling thread; the kernel writes a pointer and a length into the
    // two locals, which are valid for writes of their size.
    let got = unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &raw mut head, &raw mut len) };
    if got != 0 {
        return Err(HoldError::Call {
            call: "get_robust_list",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(PreviousList(head, len))
}

/// Gives the thread back its previous list when dropped (also when `body` unwinds).
struct Restore(PreviousList);

impl Drop for Restore {
    fn drop(&mut self) {
        let PreviousList(head, len) = self.0;
        // SAFETY: the list the kernel gave for this thread before ours (the C library's, in
        // its thread descriptor, which lives as long as the thread), registered again as it
        // was. A null head (none was registered) is accepted and disables the walk.
        let restored = unsafe { libc::syscall(libc::SYS_set_robust_list, head, len) };
        // Only EINVAL (a wrong length) can fail, and it is the kernel's own length.
        debug_assert_eq!(restored, 0, "set_robust_list back to the previous list");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;
    use std::time::Duration;

    /// Words at 128-byte steps, as the store's doorbells are (in a `Vec` here: the kernel
    /// handles private words the same way for a thread of this process).
    fn words(n: usize) -> Arc<Vec<[AtomicU32; 32]>> {
        Arc::new(
            (0..n)
                .map(|_| std::array::from_fn(|_| AtomicU32::new(0)))
                .collect(),
        )
    }

    #[test]
    fn a_thread_that_dies_holding_words_has_the_kernel_mark_them_and_wake_their_waiter() {
        let words = words(3);
        let (held, waiter_words) = (words.clone(), words.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let refs: Vec<&AtomicU32> = held.iter().map(|w| &w[0]).collect();
            while_holding(&refs, || {
                let me = this_thread_id();
                for w in &refs[..2] {
                    w.store(me, SeqCst);
                }
                ready_tx.send(me).unwrap();
                end_rx.recv().unwrap();
                // The thread dies as one killed with its process does: at once, no destructor
                // run, so its list is still registered when the kernel sees it exit.
                // SAFETY: `exit(2)` ends only this thread; what it owns is leaked, and the
                // test never joins it (its result would never be set).
                unsafe { libc::syscall(libc::SYS_exit, 0) };
            })
            .unwrap();
        });
        let me = ready_rx.recv().unwrap();
        let word = &waiter_words[1][0];
        word.store(me | WAITERS, SeqCst);
        let waiter = {
            let words = waiter_words.clone();
            std::thread::spawn(move || {
                let word = &words[1][0];
                while word.load(SeqCst) == me | WAITERS {
                    crate::futex::wait(word, me | WAITERS, Some(Duration::from_secs(30))).unwrap();
                }
                word.load(SeqCst)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        end_tx.send(()).unwrap();
        assert_eq!(
            waiter.join().unwrap(),
            OWNER_DIED | WAITERS,
            "woken, owner died"
        );
        assert_eq!(
            words[0][0].load(SeqCst),
            OWNER_DIED,
            "a held word without a waiter"
        );
        assert_eq!(
            words[2][0].load(SeqCst),
            0,
            "a word the thread did not own: untouched"
        );
        drop(holder);
    }

    #[test]
    fn a_thread_that_returns_gets_its_previous_list_back() {
        let words = words(2);
        let before = current_list().unwrap();
        let refs: Vec<&AtomicU32> = words.iter().map(|w| &w[0]).collect();
        let during = while_holding(&refs, || current_list().unwrap()).unwrap();
        assert_ne!(during.0, before.0, "ours while body runs");
        let after = current_list().unwrap();
        assert_eq!((after.0, after.1), (before.0, before.1));
    }
}

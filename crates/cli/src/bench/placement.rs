//! Where the two processes of a sleeping ping-pong run: the futex floor and the market in
//! park mode are measured with both on one CPU and with each on its own.
//!
//! Waking a process that sleeps on another CPU costs more than switching to it on the same
//! one, and on a virtual machine far more (a halted virtual CPU is woken through the
//! hypervisor): the futex floor measured 5.3 µs on one CPU and 11-13 µs on two here. Left to
//! the scheduler, the row read one or the other depending on what ran before it (right after
//! the spinning floor: one CPU; after the market's spin row: two), and the ratio of the park
//! row to it read 2.5 or 1.1 for the same market. Pinned, each ratio compares like with like:
//! on two CPUs the wake-up dominates and the market's work after its reply overlaps the
//! client's; on one CPU the market's work is all on the round trip.

use std::io;

/// Where a row's two processes run.
#[derive(Clone, Copy, Debug)]
pub(super) enum Placement {
    /// The bench's thread and its peer (or market, with all its threads) on one CPU.
    OneCpu,
    /// Each on a CPU of its own (on one, if this thread may use only one).
    TwoCpus,
}

/// This thread pinned for one row. Made before the peer is spawned, which inherits the CPU
/// this thread is on then; [`settle`](Self::settle) then moves this thread to its own. The
/// thread's CPUs are restored when dropped.
pub(super) struct Pinned {
    original: Vec<usize>,
    mine: usize,
}

impl Pinned {
    pub(super) fn for_spawn(placement: Placement) -> io::Result<Self> {
        let original = shm::process::this_thread_cpus()?;
        let (&first, &last) = original
            .first()
            .zip(original.last())
            .ok_or_else(|| io::Error::other("this thread may run on no CPU"))?;
        let (mine, peers) = match placement {
            Placement::OneCpu => (first, first),
            Placement::TwoCpus => (first, last),
        };
        shm::process::run_this_thread_on(&[peers])?;
        Ok(Self { original, mine })
    }

    /// Once the peer is spawned: this thread to its own CPU.
    pub(super) fn settle(&self) -> io::Result<()> {
        shm::process::run_this_thread_on(&[self.mine])
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // Only a CPU taken offline meanwhile could refuse this; the bench then goes on pinned.
        let _ = shm::process::run_this_thread_on(&self.original);
    }
}

//! The market's alarm: a thread that rings the market's doorbell once per housekeeping
//! interval, so that the market parks with no timeout of its own.
//!
//! A `futex_wait` with a timeout arms a high-resolution timer, and cancels it when a client's
//! ring ends the wait first: in park mode, once per request. On this machine (a virtual one,
//! where programming the timer traps to the hypervisor) that was 0.5-0.7 µs of a 7.6 µs
//! round trip with the market and its client on one CPU. Parking untimed, the market needs
//! another waker for its housekeeping (deadlines, departed clients, the view's healing,
//! snapshots, the stop flag): this thread, which sleeps on its own timer once per interval
//! however many requests come in.
//!
//! The same thread is the *guardian* of the clients' doorbells (`Doorbell::guard_while`): its
//! id is in their words and they are on its robust-futex list, so a client parks for its reply
//! without a timeout of its own, and the kernel wakes it if the market dies, even by
//! `SIGKILL`. A client used to wake every 100 ms to look, and its timed park cost the same
//! timer as the market's. Since nothing else then ends a client's sleep, each ring also
//! *sweeps*: a client whose replies wait in its ring gets a wake-up regardless, which bounds to
//! an interval the sleep of a client whose doorbell word another process scribbled on.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use bookstore_ipc::doorbell::Doorbell;

use crate::layout::ReplyRing;
use crate::shared::SharedStore;

/// A client's doorbell, which the alarm guards, and its reply ring, which it sweeps.
pub(super) type ClientDoorbell<'s> = (&'s Doorbell, &'s ReplyRing);

/// Every slot's doorbell and reply ring.
pub(super) fn client_doorbells(store: &SharedStore) -> Vec<ClientDoorbell<'_>> {
    (0..store.geometry().slot_count)
        .map(|i| (&store.slot(i).doorbell, &store.slot(i).replies))
        .collect()
}

pub(super) struct Alarm {
    /// Set at each ring, cleared by [`take`](Self::take). Relaxed: it carries no data; the
    /// doorbell's ring orders what the market reads after waking (nothing, here).
    rang: AtomicBool,
    /// Set (under its lock, with a notify) when the thread must end.
    stop: Mutex<bool>,
    stopping: Condvar,
}

impl Alarm {
    pub(super) fn new() -> Self {
        Self {
            rang: AtomicBool::new(false),
            stop: Mutex::new(false),
            stopping: Condvar::new(),
        }
    }

    /// Whether the alarm rang since the last call. A load first, so the market's passes do not
    /// write the flag's cache line between rings.
    pub(super) fn take(&self) -> bool {
        self.rang.load(Relaxed) && self.rang.swap(false, Relaxed)
    }

    /// Runs `body` while a thread rings `doorbell` every `every`, guarding and sweeping the
    /// `clients`' doorbells, and stops that thread when `body` returns (or unwinds). `body`
    /// starts once the doorbells are guarded, and is told whether the thread runs: if it could
    /// not be started, the caller must park with a timeout instead (and the clients look for
    /// the market with theirs).
    pub(super) fn ringing<R>(
        &self,
        doorbell: &Doorbell,
        clients: &[ClientDoorbell<'_>],
        every: Duration,
        body: impl FnOnce(bool) -> R,
    ) -> R {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner) = false;
        std::thread::scope(|scope| {
            let (armed, ready) = std::sync::mpsc::sync_channel(1);
            let guarded: Vec<&Doorbell> = clients.iter().map(|c| c.0).collect();
            // Tells the spawner the guard is settled, then rings until stopped.
            let arm_and_ring = move || {
                let _ = armed.send(());
                self.ring_every(doorbell, clients, every);
            };
            let started = std::thread::Builder::new()
                .name("market-alarm".into())
                .spawn_scoped(scope, move || {
                    // An error comes before the body runs: ring unguarded.
                    if let Err(error) = Doorbell::guard_while(&guarded, &arm_and_ring) {
                        let every = crate::client::LIVENESS_EVERY;
                        tracing::warn!(%error, "cannot guard the clients' doorbells; they will look for the market every {every:?}");
                        arm_and_ring();
                    }
                })
                .is_ok();
            if started {
                // Guarded (or known not to be) before any client is let in. An error: the
                // thread died before, which the scope reports when it joins.
                let _ = ready.recv();
            } else {
                tracing::warn!("cannot start the market's alarm thread; parking with a timeout");
            }
            // Stops the thread before the scope joins it, also when `body` panics.
            let _stop = StopOnDrop(self);
            body(started)
        })
    }

    fn ring_every(&self, doorbell: &Doorbell, clients: &[ClientDoorbell<'_>], every: Duration) {
        let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Sleeps the interval unless told to stop (spurious wake-ups sleep on).
            let (guard, _) = self
                .stopping
                .wait_timeout_while(stop, every, |stop| !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            stop = guard;
            if *stop {
                return;
            }
            self.rang.store(true, Relaxed);
            // Regardless of what the word reads: a client may have scribbled on it after the
            // market went to sleep, and only a wake-up ends that sleep (the timeout did, when
            // the market parked with one). A system call twenty times a second.
            doorbell.wake_regardless();
            // A client whose replies wait in its ring missed its ring, or is about to be
            // rung: a wake-up either way (a system call with no one to wake is cheap).
            for (client, replies) in clients {
                if replies.has_messages() {
                    client.wake_regardless();
                }
            }
        }
    }
}

struct StopOnDrop<'a>(&'a Alarm);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        *self.0.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.0.stopping.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_sleeper_is_woken_by_the_alarm_long_before_its_own_timeout() {
        let alarm = Alarm::new();
        let doorbell = Doorbell::default();
        let every = Duration::from_millis(20);
        // The sleeper's own timeout only turns a missing ring into a failure instead of a hang:
        // woken by it, the sleeper would have waited 30 s.
        let timeout = Duration::from_secs(30);
        let waited = alarm.ringing(&doorbell, &[], every, |started| {
            assert!(started);
            let t = Instant::now();
            // Work appears only with the ring: the flag.
            while !alarm.take() && t.elapsed() < timeout {
                doorbell.park(|| alarm.rang.load(Relaxed), Some(timeout));
            }
            t.elapsed()
        });
        assert!(
            waited < timeout / 2,
            "woken after {waited:?}: by the timeout, not the alarm"
        );
    }

    #[test]
    fn the_alarm_thread_ends_when_the_body_returns_without_waiting_out_its_interval() {
        let alarm = Alarm::new();
        let doorbell = Doorbell::default();
        let t = Instant::now();
        alarm.ringing(&doorbell, &[], Duration::from_secs(3600), |_| ());
        assert!(t.elapsed() < Duration::from_secs(60));
        assert!(!alarm.take(), "it never rang");
    }
}

//! The market's clock: one read per pass, and from it the milliseconds that stamp commands
//! (continuing from the journal's last, so time never runs back across a restart), the
//! wall-clock milliseconds watchers see, and the `Instant` the rest of the market compares.
//!
//! The reads are of the CPU's time-stamp counter scaled to nanoseconds (`quanta`, calibrated
//! once per process against the OS clock, about a millisecond, and falling back to the OS
//! clock where the counter is not invariant): about 13 ns a read on this kind of machine,
//! against 36 ns for `Instant::now` through the vDSO and its `Duration` arithmetic. A working
//! pass reads twice (its start, and its end for the service latency), which was a tenth of the
//! market's own work per request.

use std::time::{Duration, Instant};

/// The market's clock: read once per pass; in milliseconds it continues from the journal.
pub(super) struct Clock {
    /// The market's clock at start: after the journal's last entry, so time never runs back.
    base_ms: u64,
    /// Unix time at start, for the statistics watchers read.
    pub(super) wall_base_ms: u64,
    counter: quanta::Clock,
    /// The counter's reading at start, and the OS clock's.
    started_counter: quanta::Instant,
    started: Instant,
    /// The pass's clock read, as an `Instant` (the start plus the counter's elapsed time).
    pub(super) now: Instant,
    /// Nanoseconds and milliseconds from the start to `now`, worked out once per read (every
    /// request of the pass asks for the time).
    elapsed_ns: u64,
    elapsed_ms: u64,
}

impl Clock {
    /// A clock starting now, after `last_now` (the journal's last entry).
    pub(super) fn after(last_now: u64) -> Self {
        let counter = quanta::Clock::new();
        let started_counter = counter.now();
        let now = Instant::now();
        let wall_base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            base_ms: last_now + 1,
            wall_base_ms,
            counter,
            started_counter,
            started: now,
            now,
            elapsed_ns: 0,
            elapsed_ms: 0,
        }
    }

    /// Nanoseconds from the start to a reading taken now.
    fn read_ns(&self) -> u64 {
        let elapsed = self.counter.now().duration_since(self.started_counter);
        elapsed.as_secs() * 1_000_000_000 + u64::from(elapsed.subsec_nanos())
    }

    /// The pass's clock read.
    pub(super) fn tick(&mut self) {
        self.elapsed_ns = self.read_ns();
        self.elapsed_ms = self.elapsed_ns / 1_000_000;
        self.now = self.started + Duration::from_nanos(self.elapsed_ns);
    }

    /// Reads the clock again: nanoseconds since the pass's read, and the Unix milliseconds
    /// now (for the pass's service latency).
    pub(super) fn since_tick(&self) -> (u64, u64) {
        let ns = self.read_ns();
        (
            ns.saturating_sub(self.elapsed_ns),
            self.wall_base_ms + ns / 1_000_000,
        )
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.base_ms + self.elapsed_ms
    }

    /// Unix milliseconds at the pass's clock read.
    pub(super) fn wall_ms(&self) -> u64 {
        self.wall_base_ms + self.elapsed_ms
    }

    pub(super) fn wall_ms_at(&self, at: Instant) -> u64 {
        self.wall_base_ms + self.since_start_ms(at)
    }

    fn since_start_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_keeps_pace_with_the_os_clock_and_never_runs_back() {
        let mut clock = Clock::after(1000);
        let os = Instant::now();
        let mut last = clock.now_ms();
        assert!(last > 1000, "after the journal's last");
        std::thread::sleep(Duration::from_millis(30));
        clock.tick();
        let (since, wall) = clock.since_tick();
        assert!(since < 5_000_000, "a read just after the tick: {since} ns");
        assert!(wall >= clock.wall_ms());
        let ran = clock.now.duration_since(os).as_millis();
        assert!(
            (25..1000).contains(&ran),
            "{ran} ms on the counter for a 30 ms sleep"
        );
        for _ in 0..1000 {
            clock.tick();
            assert!(clock.now_ms() >= last);
            last = clock.now_ms();
        }
    }
}

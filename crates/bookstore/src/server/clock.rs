//! The market's clock: one read of the monotonic clock per pass, and from it the
//! milliseconds that stamp commands (continuing from the journal's last, so time never runs
//! back across a restart) and the wall-clock milliseconds watchers see.

use std::time::Instant;

/// The market's clock: read once per pass; in milliseconds it continues from the journal.
pub(super) struct Clock {
    /// The market's clock at start: after the journal's last entry, so time never runs back.
    base_ms: u64,
    /// Unix time at start, for the statistics watchers read.
    pub(super) wall_base_ms: u64,
    started: Instant,
    /// The pass's clock read.
    pub(super) now: Instant,
    /// Milliseconds from `started` to `now`, worked out once per read (every request of the
    /// pass asks for the time).
    elapsed_ms: u64,
}

impl Clock {
    /// A clock starting now, after `last_now` (the journal's last entry).
    pub(super) fn after(last_now: u64) -> Self {
        let now = Instant::now();
        let wall_base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            base_ms: last_now + 1,
            wall_base_ms,
            started: now,
            now,
            elapsed_ms: 0,
        }
    }

    pub(super) fn tick(&mut self) {
        self.now = Instant::now();
        self.elapsed_ms = self.since_start_ms(self.now);
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

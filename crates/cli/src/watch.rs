//! Watching a market from outside: samples of its view and statistics, taken through a
//! read-only mapping, and the figures derived from them (rates, the service latency over the
//! last second). `top` draws them; `inspect --watch` prints them a line at a time.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bookstore::layout::SlotState;
use bookstore::shared::{SlotReport, StoreReader};
use bookstore::stats::StatsSnapshot;
use bookstore::view::{Snapshot, SnapshotError};
use shm::process::ProcessHandle;

/// How far back the latency window reaches.
pub const LATENCY_WINDOW: Duration = Duration::from_secs(1);

/// Unix time in milliseconds.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One look at the store.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The store's name (`/bookstore`).
    pub name: String,
    pub at: Instant,
    pub wall_ms: u64,
    pub view: Snapshot,
    pub stats: StatsSnapshot,
    /// Slots that are not free, with their index.
    pub slots: Vec<(u32, SlotReport)>,
    pub market_pid: u32,
    pub market_running: bool,
    pub state: &'static str,
    pub capacity: u32,
}

/// Service latency over a window: requests measured, p50, p99 and the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyWindow {
    pub requests: u64,
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub max_ns: Option<u64>,
}

/// A market under watch: its reader, the market process, and the last samples.
pub struct Watch {
    reader: StoreReader,
    market: Option<ProcessHandle>,
    history: VecDeque<Sample>,
}

impl Watch {
    pub fn new(reader: StoreReader) -> Self {
        let market = ProcessHandle::open(reader.market()).ok();
        Self {
            reader,
            market,
            history: VecDeque::new(),
        }
    }

    /// Takes a sample and keeps it (with the ones of the last latency window).
    pub fn sample(&mut self) -> Result<&Sample, SnapshotError> {
        let (view, stats) = self.reader.view_and_stats()?;
        let geometry = self.reader.geometry();
        let slots = (0..geometry.slot_count)
            .map(|i| (i, self.reader.slot(i)))
            .filter(|(_, s)| s.state != SlotState::Free)
            .collect();
        let identity = self.reader.identity();
        let market_running = self.market.as_ref().is_some_and(|m| !m.has_exited());
        let sample = Sample {
            name: self.reader.segment().name().to_string(),
            at: Instant::now(),
            wall_ms: wall_ms(),
            view,
            stats,
            slots,
            market_pid: identity.pid,
            market_running,
            state: identity.state().map_or("invalid", |s| s.name()),
            capacity: geometry.capacity,
        };
        while self
            .history
            .front()
            .is_some_and(|old| sample.at.duration_since(old.at) > LATENCY_WINDOW * 2)
        {
            self.history.pop_front();
        }
        self.history.push_back(sample);
        Ok(self.history.back().expect("just pushed"))
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.history.back()
    }

    /// The service latency over about the last second: the newest histogram less the one of
    /// the oldest sample at least a second old (or the oldest kept, early on).
    pub fn latency(&self) -> Option<LatencyWindow> {
        let newest = self.history.back()?;
        let base = self
            .history
            .iter()
            .rev()
            .find(|s| newest.at.duration_since(s.at) >= LATENCY_WINDOW)
            .or(self.history.front())?;
        Some(latency_between(base, newest))
    }
}

/// What was measured between two samples of the same market.
pub fn latency_between(earlier: &Sample, later: &Sample) -> LatencyWindow {
    let window = later.stats.latency.since(&earlier.stats.latency);
    LatencyWindow {
        requests: window.total(),
        p50_ns: window.quantile(0.50),
        p99_ns: window.quantile(0.99),
        // The market's own per-second maximum is exact; the histogram's is a bucket bound.
        // Neither says anything of a window in which nothing was measured.
        max_ns: (window.total() > 0)
            .then(|| {
                later
                    .stats
                    .recent_max_ns(later.wall_ms)
                    .or(window.max_bound())
            })
            .flatten(),
    }
}

/// `1.2 µs`, `340 ns`, `12 ms`: a latency for people.
pub fn format_ns(ns: u64) -> String {
    // Two or three significant digits: enough to compare, short enough for a narrow column.
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..10_000 => format!("{:.1} µs", ns as f64 / 1e3),
        10_000..1_000_000 => format!("{} µs", ns / 1_000),
        1_000_000..10_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        10_000_000..1_000_000_000 => format!("{} ms", ns / 1_000_000),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// `12.3k`, `1.5M`: a rate or count for people.
pub fn format_count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// `4.2 KiB`, `17.0 MiB`.
pub fn format_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

/// `3d 04:05:06`, `00:01:02`: a duration in seconds for people.
pub fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// How long ago `then_ms` was at `now_ms`, for people: `0.3 s ago`, `never`.
pub fn format_ago(then_ms: u64, now_ms: u64) -> String {
    if then_ms == 0 {
        return "never".into();
    }
    let ms = now_ms.saturating_sub(then_ms);
    if ms < 60_000 {
        format!("{:.1} s ago", ms as f64 / 1e3)
    } else {
        format!("{} ago", format_uptime(ms / 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_read_latencies_counts_and_sizes_in_fitting_units() {
        assert_eq!(format_ns(340), "340 ns");
        assert_eq!(format_ns(1_240), "1.2 µs");
        assert_eq!(format_ns(262_100), "262 µs");
        assert_eq!(format_ns(3_400_000), "3.4 ms");
        assert_eq!(format_ns(12_000_000), "12 ms");
        assert_eq!(format_count(9_999), "9999");
        assert_eq!(format_count(12_345), "12.3k");
        assert_eq!(format_count(1_500_000), "1.5M");
        assert_eq!(format_bytes(4_300), "4.2 KiB");
        assert_eq!(format_uptime(3_723), "01:02:03");
        assert_eq!(format_uptime(90_061), "1d 01:01:01");
        assert_eq!(format_ago(0, 5), "never");
        assert_eq!(format_ago(1_000, 1_300), "0.3 s ago");
    }
}

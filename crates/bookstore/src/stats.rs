//! What the market measures of itself, published beside the view for watchers (`top`,
//! `inspect`): its start, its journal, the service latency of requests (picked up → reply
//! published), warnings by kind, per-second totals, and a row per attached client.
//!
//! The market keeps everything in a private [`StatsRecorder`] and copies it into the object
//! inside the view's seqlock write ([`crate::view::Publisher`]), so the hot path writes no
//! shared line for it and a reader copies view and statistics whole in one read. Every word
//! read back is taken as any value: codes are validated, sums saturate.

use serde::Serialize;

use crate::latency::Histogram;
use crate::layout::{ClientRole, RATE_SECONDS, WARNING_KINDS};
use crate::shared::Mapping;
use crate::view::{Snapshot, SnapshotError};
use bookstore_ipc::sync::Ordering::Relaxed;
use engine::ClientId;

/// What the market counts as a warning, by kind (the index of its counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A request that did not decode (answered with `Malformed`).
    MalformedRequest = 0,
    /// A listing refused because the store was full.
    StoreFull = 1,
    /// A client dropped for breaking the protocol (a corrupt ring, an invalid slot word).
    ClientQuarantined = 2,
    /// A client dropped because it stopped reading its replies.
    SlowClientDropped = 3,
    /// A slot freed because its claimant died before or while attaching.
    SlotReclaimed = 4,
    /// A claimant the market would not accept (its process could not be identified, or its
    /// client id is invalid or already attached).
    ClaimantRefused = 5,
}

impl WarningKind {
    pub const ALL: [WarningKind; 6] = [
        Self::MalformedRequest,
        Self::StoreFull,
        Self::ClientQuarantined,
        Self::SlowClientDropped,
        Self::SlotReclaimed,
        Self::ClaimantRefused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed requests",
            Self::StoreFull => "store-full refusals",
            Self::ClientQuarantined => "clients quarantined",
            Self::SlowClientDropped => "slow clients dropped",
            Self::SlotReclaimed => "slots reclaimed",
            Self::ClaimantRefused => "claimants refused",
        }
    }
}

const _: () = assert!(WarningKind::ALL.len() <= WARNING_KINDS);
/// One bit per latency bucket in `StatsRecorder::latency_unwritten`.
const _: () = assert!(crate::layout::LATENCY_BUCKETS <= 128);

/// A replicated market's durability as a word in the object (its local journal's is `none`).
pub const REPLICATED_DURABILITY: u64 = 4;

/// The journal's durability as a word in the object, and back.
pub fn durability_code(durability: crate::journal::Durability) -> u64 {
    use crate::journal::Durability::*;
    match durability {
        None => 1,
        Batch => 2,
        Always => 3,
    }
}

fn durability_name(code: u64) -> &'static str {
    match code {
        1 => "none",
        2 => "batch",
        3 => "always",
        REPLICATED_DURABILITY => "replicated",
        _ => "unknown",
    }
}

/// The journal as the market last saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalFacts {
    pub durability: u64,
    pub bytes: u64,
    pub syncs: u64,
    pub last_sync_at_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct ClientRecord {
    client: ClientId,
    role: ClientRole,
    pid: u32,
    requests: u64,
    attached_at_ms: u64,
    last_request_at_ms: u64,
}

/// The market's private statistics, published with the view.
pub struct StatsRecorder {
    started_at_ms: u64,
    latency: Histogram,
    /// One bit per latency bucket counted since the last write: a write stores only those
    /// buckets' words (in park mode the market writes once per request, and one bucket
    /// changed, not 128), or all of them when it is a full write.
    latency_unwritten: u128,
    latency_count: u64,
    latency_sum_ns: u64,
    max_second: u64,
    max_ns: u64,
    previous_max_ns: u64,
    warnings: [u64; WARNING_KINDS],
    clients: Vec<Option<ClientRecord>>,
    /// Whether the slot's row in the object was last written with a client (and so must be
    /// cleared once the slot is empty).
    rows_shown: Vec<bool>,
}

impl StatsRecorder {
    pub fn new(started_at_ms: u64, slot_count: u32) -> Self {
        Self {
            started_at_ms,
            latency: Histogram::new(),
            latency_unwritten: 0,
            latency_count: 0,
            latency_sum_ns: 0,
            max_second: started_at_ms / 1000,
            max_ns: 0,
            previous_max_ns: 0,
            warnings: [0; WARNING_KINDS],
            clients: vec![None; slot_count as usize],
            rows_shown: vec![false; slot_count as usize],
        }
    }

    /// Counts `n` requests served with latency `ns` each, at wall time `now_ms`.
    pub fn record_latency(&mut self, ns: u64, n: u64, now_ms: u64) {
        let bucket = self.latency.record_n(ns, n);
        self.latency_unwritten |= 1 << bucket;
        self.latency_count = self.latency_count.saturating_add(n);
        self.latency_sum_ns = self.latency_sum_ns.saturating_add(ns.saturating_mul(n));
        self.roll_max_window(now_ms);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Starts a new one-second window for the maximum if `now_ms` is past the current one.
    fn roll_max_window(&mut self, now_ms: u64) {
        let second = now_ms / 1000;
        if second != self.max_second {
            self.previous_max_ns = if second == self.max_second + 1 {
                self.max_ns
            } else {
                0
            };
            self.max_ns = 0;
            self.max_second = second;
        }
    }

    pub fn warn(&mut self, kind: WarningKind) {
        self.warnings[kind as usize] += 1;
    }

    pub fn client_attached(
        &mut self,
        slot: u32,
        client: ClientId,
        role: ClientRole,
        pid: u32,
        now_ms: u64,
    ) {
        self.clients[slot as usize] = Some(ClientRecord {
            client,
            role,
            pid,
            requests: 0,
            attached_at_ms: now_ms,
            last_request_at_ms: 0,
        });
    }

    pub fn client_left(&mut self, slot: u32) {
        self.clients[slot as usize] = None;
    }

    /// A request from the client in `slot`, at wall time `now_ms`.
    pub fn client_request(&mut self, slot: u32, now_ms: u64) {
        if let Some(c) = self.clients[slot as usize].as_mut() {
            c.requests += 1;
            c.last_request_at_ms = now_ms;
        }
    }

    /// Writes the statistics into the object. Called inside the view's seqlock write, which
    /// publishes these relaxed stores whole. `requests` and `trades` are the totals so far;
    /// `resting_buys` tells how many buys a client has resting. An empty slot's row is cleared
    /// if this recorder last wrote a client there, or, with `full`, if it holds anything (a
    /// buggy client may have scribbled on it); of the latency histogram, the buckets counted
    /// since the last write are written, or with `full` all of them (healing scribbles too).
    pub(crate) fn write(
        &mut self,
        map: &Mapping,
        journal: JournalFacts,
        totals: (u64, u64),
        resting_buys: impl Fn(ClientId) -> u64,
        now_ms: u64,
        full: bool,
    ) {
        self.roll_max_window(now_ms);
        let s = map.market_stats();
        s.started_at_ms.store(self.started_at_ms, Relaxed);
        s.durability.store(journal.durability, Relaxed);
        s.journal_bytes.store(journal.bytes, Relaxed);
        s.journal_syncs.store(journal.syncs, Relaxed);
        s.last_sync_at_ms.store(journal.last_sync_at_ms, Relaxed);
        s.latency_count.store(self.latency_count, Relaxed);
        s.latency_sum_ns.store(self.latency_sum_ns, Relaxed);
        s.latency_max_second.store(self.max_second, Relaxed);
        s.latency_max_ns.store(self.max_ns, Relaxed);
        s.latency_previous_max_ns
            .store(self.previous_max_ns, Relaxed);
        for (word, &count) in s.warnings.iter().zip(&self.warnings) {
            word.store(count, Relaxed);
        }
        let counts = self.latency.counts();
        if full {
            for (word, &count) in s.latency.iter().zip(counts) {
                word.store(count, Relaxed);
            }
        } else {
            let mut unwritten = self.latency_unwritten;
            while unwritten != 0 {
                let bucket = unwritten.trailing_zeros() as usize;
                s.latency[bucket].store(counts[bucket], Relaxed);
                unwritten &= unwritten - 1;
            }
        }
        self.latency_unwritten = 0;
        let second = now_ms / 1000;
        let rate = &s.rates[second as usize % RATE_SECONDS];
        rate[0].store(second, Relaxed);
        rate[1].store(totals.0, Relaxed);
        rate[2].store(totals.1, Relaxed);
        for (slot, (record, shown)) in self.clients.iter().zip(&mut self.rows_shown).enumerate() {
            let row = map.client_stats(slot as u32);
            let Some(c) = record else {
                // Most slots are empty: their rows are not even read (a cache line each) unless
                // this is a full write; one is written only if a departed client's row is still
                // there.
                if (*shown || full) && row.client_id.load(Relaxed) != 0 {
                    row.client_id.store(0, Relaxed);
                }
                *shown = false;
                continue;
            };
            *shown = true;
            row.client_id.store(c.client.short(), Relaxed);
            row.role.store(c.role.word(), Relaxed);
            row.pid.store(c.pid.into(), Relaxed);
            row.requests.store(c.requests, Relaxed);
            row.resting_buys.store(resting_buys(c.client), Relaxed);
            row.attached_at_ms.store(c.attached_at_ms, Relaxed);
            row.last_request_at_ms.store(c.last_request_at_ms, Relaxed);
        }
    }
}

/// A copy of the market's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub started_at_ms: u64,
    pub durability: &'static str,
    pub journal_bytes: u64,
    pub journal_syncs: u64,
    /// 0 if the journal was never synced.
    pub last_sync_at_ms: u64,
    pub latency_count: u64,
    pub latency_sum_ns: u64,
    pub latency_max_second: u64,
    pub latency_max_ns: u64,
    pub latency_previous_max_ns: u64,
    /// Cumulative since the market started.
    pub latency: Histogram,
    pub warnings: Vec<WarningCount>,
    /// Totals at the end of each recent second the market published in, oldest first.
    pub rates: Vec<RateSample>,
    pub clients: Vec<ClientRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WarningCount {
    pub kind: WarningKind,
    pub name: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateSample {
    pub second: u64,
    pub requests: u64,
    pub trades: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClientRow {
    pub slot: u32,
    pub client_id: u64,
    pub role: ClientRole,
    pub pid: u64,
    pub requests: u64,
    pub resting_buys: u64,
    pub attached_at_ms: u64,
    /// 0 if it has sent nothing yet.
    pub last_request_at_ms: u64,
}

impl StatsSnapshot {
    /// What the market counts of the client `client_id` in `slot`, if its row is that client's
    /// (a slot's row can lag behind the slot table by one publish).
    pub fn client(&self, slot: u32, client_id: u64) -> Option<&ClientRow> {
        self.clients
            .iter()
            .find(|c| c.slot == slot && c.client_id == client_id)
    }

    /// The largest service latency in the second that holds `now_ms` and the one before it
    /// (the market keeps the maximum per second); `None` if the market has not measured in
    /// that window.
    pub fn recent_max_ns(&self, now_ms: u64) -> Option<u64> {
        let second = now_ms / 1000;
        let max = if self.latency_max_second == second {
            self.latency_max_ns.max(self.latency_previous_max_ns)
        } else if self.latency_max_second + 1 == second {
            self.latency_max_ns
        } else {
            0
        };
        (max > 0).then_some(max)
    }

    /// Requests (or, with `trades`, trades) per second for each of the `seconds` seconds
    /// before `now_ms`'s second, oldest first, from the per-second totals.
    pub fn per_second(&self, now_ms: u64, seconds: usize, trades: bool) -> Vec<u64> {
        let end = now_ms / 1000;
        let total_at = |second: u64| -> Option<u64> {
            // The totals published last at or before `second`.
            self.rates
                .iter()
                .rev()
                .find(|r| r.second <= second)
                .map(|r| if trades { r.trades } else { r.requests })
        };
        (0..seconds as u64)
            .rev()
            .map(|back| {
                let second = end.saturating_sub(back + 1);
                match (total_at(second), total_at(second.saturating_sub(1))) {
                    (Some(now), Some(then)) => now.saturating_sub(then),
                    _ => 0,
                }
            })
            .collect()
    }
}

/// Copies the view and the statistics in one read of the view's seqlock.
pub(crate) fn snapshot_with_view(
    map: &Mapping,
) -> Result<(Snapshot, StatsSnapshot), SnapshotError> {
    map.view_header()
        .seq
        .read(crate::view::READ_ATTEMPTS, || {
            Ok((crate::view::read_unchecked(map)?, read_unchecked(map)))
        })
        .map_err(|unstable| SnapshotError::Unstable { seq: unstable.seq })?
}

/// Reads the statistics with relaxed loads; only a read the seqlock confirms is kept.
fn read_unchecked(map: &Mapping) -> StatsSnapshot {
    let s = map.market_stats();
    let load = |w: &bookstore_ipc::sync::AtomicU64| w.load(Relaxed);
    let warnings = WarningKind::ALL
        .iter()
        .map(|&kind| WarningCount {
            kind,
            name: kind.name(),
            count: load(&s.warnings[kind as usize]),
        })
        .collect();
    let latency = Histogram::from_counts(s.latency.iter().map(load).collect());
    // A rate entry counts only where its second agrees with its index (zeroed or scribbled
    // entries do not), and only the last RATE_SECONDS seconds of what the market wrote.
    let mut rates: Vec<RateSample> = s
        .rates
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let second = load(&r[0]);
            (second != 0 && second as usize % RATE_SECONDS == i).then(|| RateSample {
                second,
                requests: load(&r[1]),
                trades: load(&r[2]),
            })
        })
        .collect();
    rates.sort_by_key(|r| r.second);
    if let Some(newest) = rates.last().map(|r| r.second) {
        rates.retain(|r| r.second + RATE_SECONDS as u64 > newest);
    }
    let clients = (0..map.geometry().slot_count)
        .filter_map(|slot| {
            let row = map.client_stats(slot);
            let client_id = load(&row.client_id);
            (client_id != 0).then(|| ClientRow {
                slot,
                client_id,
                role: ClientRole::from_word(load(&row.role)),
                pid: load(&row.pid),
                requests: load(&row.requests),
                resting_buys: load(&row.resting_buys),
                attached_at_ms: load(&row.attached_at_ms),
                last_request_at_ms: load(&row.last_request_at_ms),
            })
        })
        .collect();
    StatsSnapshot {
        started_at_ms: load(&s.started_at_ms),
        durability: durability_name(load(&s.durability)),
        journal_bytes: load(&s.journal_bytes),
        journal_syncs: load(&s.journal_syncs),
        last_sync_at_ms: load(&s.last_sync_at_ms),
        latency_count: load(&s.latency_count),
        latency_sum_ns: load(&s.latency_sum_ns),
        latency_max_second: load(&s.latency_max_second),
        latency_max_ns: load(&s.latency_max_ns),
        latency_previous_max_ns: load(&s.latency_previous_max_ns),
        latency,
        warnings,
        rates,
        clients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_with_rates(rates: &[(u64, u64)]) -> StatsSnapshot {
        StatsSnapshot {
            started_at_ms: 0,
            durability: "none",
            journal_bytes: 0,
            journal_syncs: 0,
            last_sync_at_ms: 0,
            latency_count: 0,
            latency_sum_ns: 0,
            latency_max_second: 0,
            latency_max_ns: 0,
            latency_previous_max_ns: 0,
            latency: Histogram::new(),
            warnings: Vec::new(),
            rates: rates
                .iter()
                .map(|&(second, requests)| RateSample {
                    second,
                    requests,
                    trades: requests / 2,
                })
                .collect(),
            clients: Vec::new(),
        }
    }

    #[test]
    fn per_second_rates_are_differences_of_the_totals_and_idle_gaps_count_zero() {
        // Totals at the end of seconds 100, 101, 103 (102 idle: nothing published).
        let s = snapshot_with_rates(&[(100, 10), (101, 40), (103, 100)]);
        assert_eq!(s.per_second(104_500, 4, false), vec![0, 30, 0, 60]);
        assert_eq!(s.per_second(104_500, 4, true), vec![0, 15, 0, 30]);
    }

    #[test]
    fn the_recent_maximum_covers_this_second_and_the_one_before() {
        let mut s = snapshot_with_rates(&[]);
        (
            s.latency_max_second,
            s.latency_max_ns,
            s.latency_previous_max_ns,
        ) = (10, 500, 900);
        assert_eq!(s.recent_max_ns(10_200), Some(900));
        assert_eq!(s.recent_max_ns(11_200), Some(500));
        assert_eq!(s.recent_max_ns(12_200), None, "nothing measured lately");
    }

    #[test]
    fn the_recorder_keeps_the_maximum_per_second() {
        let mut r = StatsRecorder::new(10_000, 1);
        r.record_latency(700, 1, 10_100);
        r.record_latency(300, 2, 11_100);
        assert_eq!((r.max_second, r.max_ns, r.previous_max_ns), (11, 300, 700));
        r.record_latency(100, 1, 13_000);
        assert_eq!((r.max_second, r.max_ns, r.previous_max_ns), (13, 100, 0));
        assert_eq!(r.latency_count, 4);
        assert_eq!(r.latency_sum_ns, 700 + 600 + 100);
    }
}

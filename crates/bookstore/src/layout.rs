//! The shared object's bytes: what lives where, version 8.
//!
//! Every field is an atomic (any bit pattern is a valid atomic), so a buggy or hostile process
//! writing into the object can make us read wrong *values*, which we validate, but never
//! causes undefined behaviour in the market. All sizes are fixed and checked at compile time.
//!
//! | offset                    | size                  | what                                  |
//! |---------------------------|-----------------------|---------------------------------------|
//! | 0                         | 128                   | [`Header`] identity line (and pad)    |
//! | 128                       | 128                   | [`Header`] attach-epoch line          |
//! | 256                       | 128                   | [`Header`] market doorbell            |
//! | 384                       | `slots × 131 584`     | [`Slot`] table                        |
//! | `view_offset`             | 128                   | [`ViewHeader`] (seqlock + totals)     |
//! | `view_offset + 128`       | `32 × 128`            | recent trades ([`Record`], a ring)    |
//! | `... + 4096`              | `capacity × 128`      | shelf rows ([`Record`])               |
//! | `stats_offset`            | 3 264                 | [`MarketStats`] (latency, warnings)   |
//! | `stats_offset + 3264`     | `slots × 64`          | [`ClientStats`], one per slot         |
//! | `titles_offset`           | 128 + 1024 × 128      | [`TitleTable`]: count, then titles    |
//! | end, rounded up to 4 KiB  |                       |                                       |
//!
//! Version 2 added the statistics (for `top`) after the shelf. Version 3 made ring messages one
//! cache line where they fit (a stamped 64-byte cell, a second cell for long titles) and put
//! 128 bytes between lines written by different processes. Version 4 gave the reply ring 1024
//! cells. Version 5 has the client write its own 128-bit id into the slot's control block
//! (the market wrote a 64-bit counter there before), so it keeps its id across restarts.
//! Version 6 gave the request ring 1024 cells too. Version 7 added the title table (the
//! client stats' end rounded up to 128 bytes is `titles_offset`): the market appends each
//! title it is asked about, up to 1024, and requests and replies carry a title's index there
//! instead of its text.
//!
//! A slot is: control (128) · client doorbell (128) · request ring (65 664) · reply ring
//! (65 664). A ring is: the consumer's head (128) · its 1024 cells of 64 bytes (a stamp and
//! seven words).

use std::mem::{align_of, size_of};

use bookstore_ipc::doorbell::Doorbell;
use bookstore_ipc::record::LinePair;
use bookstore_ipc::ring::Ring;
use bookstore_ipc::seqlock::SeqLock;
use bookstore_ipc::sync::{AtomicU32, AtomicU64};

pub use bookstore_ipc::record::{Record, RecordWords, RECORD_WORDS};
pub use bookstore_ipc::ring::{Message, MESSAGE_WORDS};
/// The market's lifecycle, in [`Header::state`]: the IPC crate's server states.
pub use bookstore_ipc::slot::ServerState as StoreState;
pub use bookstore_ipc::slot::{SlotControl, SlotState};

/// `b"BOOKSTOR"` read as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"BOOKSTOR");
/// 8: a doorbell word holds its guardian thread's id, and `PARKED` is its top bit (was the value 1).
pub const LAYOUT_VERSION: u32 = 8;
/// Cells in each request ring: as many as the reply ring, so a client may have a reply ring's
/// worth of orders in flight without waiting for room. The market takes up to 64 requests of
/// each client per pass (fairness between clients), and a ring of 64 cells made a pipelining
/// client with more in flight loop on a full ring, notifying and yielding, on the CPU the
/// market needed: 1.01-1.09 against 1.40-1.57 M orders/s end to end, unsynced (README,
/// "Performance").
pub const REQUEST_RING_CAPACITY: usize = 1024;
/// Cells in each reply ring. With `--durability batch` a reply is written at once but shown
/// only when its journal record is on disk, so the ring holds every reply a client gets while
/// a sync runs: a seller at a million orders a second gets two replies per order, and one
/// fdatasync takes 0.3 to 0.4 ms on this kind of machine, about 800 replies. With 64 cells they
/// overflowed into the market's backlog and came out one ring per pass.
pub const REPLY_RING_CAPACITY: usize = 1024;
/// Titles the title table holds: the first this many distinct titles a market is asked about
/// (a title's id is its index, never reused while the object lives); later titles travel as
/// text, as every title did before version 7.
pub const TITLE_TABLE_ENTRIES: usize = 1024;
/// Trades kept in the published view's recent-trades ring.
pub const RECENT_TRADES: usize = 32;
pub const MAX_SLOTS: u32 = 1024;
pub use engine::MAX_CAPACITY;
const PAGE: usize = 4096;

pub type RequestRing = Ring<REQUEST_RING_CAPACITY>;
pub type ReplyRing = Ring<REPLY_RING_CAPACITY>;
/// The title table: written only by the market, one title per record (see
/// [`crate::titles`] for a record's words).
pub type TitleTable = bookstore_ipc::AppendOnly<TITLE_TABLE_ENTRIES>;

#[repr(C, align(128))]
pub struct Header {
    // Identity line: written once by the market before `state` becomes Ready (release), read
    // by clients after an acquire load of `state`.
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub state: AtomicU32,
    pub total_size: AtomicU64,
    pub capacity: AtomicU32,
    pub slot_count: AtomicU32,
    pub market_pid: AtomicU32,
    pub request_ring_capacity: AtomicU32,
    pub market_start_time: AtomicU64,
    pub slots_offset: AtomicU64,
    pub view_offset: AtomicU64,
    pub reply_ring_capacity: AtomicU32,
    // Attach-epoch line.
    /// Bumped by a client after it activates a slot, so a busy market (not parked, so not rung)
    /// still notices new clients by watching one word.
    pub attach_epoch: LinePair<AtomicU64>,
    /// Rung by clients after pushing a request or activating a slot; the market parks on it.
    pub doorbell: Doorbell,
}

impl Header {
    /// The market's identity and readiness words, with their handshake.
    pub fn identity(&self) -> bookstore_ipc::slot::MarketIdentity<'_> {
        bookstore_ipc::slot::MarketIdentity {
            state: &self.state,
            pid: &self.market_pid,
            start_time: &self.market_start_time,
        }
    }

    /// The market process as the header names it (state acquired first: see `identity`).
    pub fn market_process(&self) -> shm::process::ProcessId {
        let seen = self.identity().read();
        shm::process::ProcessId {
            pid: seen.pid,
            start_time: seen.start_time,
        }
    }
}

#[repr(C)]
pub struct Slot {
    pub control: SlotControl,
    /// The client parks here waiting for events; the market rings it.
    pub doorbell: Doorbell,
    /// Client → market.
    pub requests: RequestRing,
    /// Market → client.
    pub replies: ReplyRing,
}

#[repr(C, align(64))]
pub struct ViewHeader {
    /// Odd while the market is writing the view (see `bookstore_ipc::seqlock`).
    pub seq: SeqLock,
    pub books_listed: AtomicU64,
    pub books_sold: AtomicU64,
    pub books_on_shelf: AtomicU64,
    pub trades: AtomicU64,
    pub revenue_cents: AtomicU64,
    pub resting_buys: AtomicU64,
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub malformed: AtomicU64,
    pub shelf_rows: AtomicU64,
    /// Trades written to the recent-trades ring since the start (index = n % RECENT_TRADES).
    pub trades_recorded: AtomicU64,
    pub published_at_ms: AtomicU64,
}

/// Buckets of the service-latency histogram (see [`crate::latency`]).
pub const LATENCY_BUCKETS: usize = 128;
/// Seconds kept in the per-second totals ring: a minute and some.
pub const RATE_SECONDS: usize = 64;
/// Kinds of warning counted in [`MarketStats::warnings`] (see [`crate::stats::WarningKind`]).
pub const WARNING_KINDS: usize = 8;

/// What the market measures of itself, for watchers (`top`, `inspect`). Written only by the
/// market, inside the view's seqlock write, so a reader copies it whole like the view.
/// Times are Unix milliseconds; the latency figures are nanoseconds.
#[repr(C, align(64))]
pub struct MarketStats {
    pub started_at_ms: AtomicU64,
    /// The journal's durability (see `stats::durability_code`).
    pub durability: AtomicU64,
    pub journal_bytes: AtomicU64,
    pub journal_syncs: AtomicU64,
    /// When the journal last reached stable storage; 0 if never (or durability none).
    pub last_sync_at_ms: AtomicU64,
    /// Requests measured in `latency` since the start, and the sum of their latencies.
    pub latency_count: AtomicU64,
    pub latency_sum_ns: AtomicU64,
    /// The Unix second `latency_max_ns` is the maximum of, and the maximum of the second before.
    pub latency_max_second: AtomicU64,
    pub latency_max_ns: AtomicU64,
    pub latency_previous_max_ns: AtomicU64,
    pub _reserved: [AtomicU64; 6],
    /// Counts by kind since the start; index = `WarningKind as usize`.
    pub warnings: [AtomicU64; WARNING_KINDS],
    /// Requests by service latency since the start: cumulative, so a reader takes the
    /// difference of two copies for any window it likes.
    pub latency: [AtomicU64; LATENCY_BUCKETS],
    /// Per-second totals `[unix second, requests, trades, 0]` at index `second % RATE_SECONDS`.
    pub rates: [[AtomicU64; 4]; RATE_SECONDS],
}

/// What the market knows of the client in one slot. Written only by the market, with the view;
/// `client_id` (the first 64 bits of the client's id, `ClientId::short`) 0 means no client.
#[repr(C, align(64))]
pub struct ClientStats {
    pub client_id: AtomicU64,
    /// What the client said it is, validated (see [`ClientRole`]).
    pub role: AtomicU64,
    pub pid: AtomicU64,
    pub requests: AtomicU64,
    pub resting_buys: AtomicU64,
    pub trades: AtomicU64,
    pub attached_at_ms: AtomicU64,
    pub last_request_at_ms: AtomicU64,
}

/// What a client says it is when it claims a slot (the slot's label word). The market copies a
/// known value into [`ClientStats::role`] and shows an unknown one as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientRole {
    Other = 0,
    Seller = 1,
    Buyer = 2,
    Session = 3,
    Bench = 4,
    /// A trader of the threads lesson's processes row.
    Trader = 5,
}

impl ClientRole {
    pub fn from_word(word: u64) -> Self {
        match word {
            1 => Self::Seller,
            2 => Self::Buyer,
            3 => Self::Session,
            4 => Self::Bench,
            5 => Self::Trader,
            _ => Self::Other,
        }
    }

    pub fn word(self) -> u64 {
        self as u64
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Other => "other",
            Self::Seller => "seller",
            Self::Buyer => "buyer",
            Self::Session => "session",
            Self::Bench => "bench",
            Self::Trader => "trader",
        }
    }
}

pub const HEADER_SIZE: usize = size_of::<Header>();
pub const SLOT_SIZE: usize = size_of::<Slot>();
pub const VIEW_HEADER_SIZE: usize = size_of::<ViewHeader>();
pub const RECORD_SIZE: usize = size_of::<Record>();
pub const MARKET_STATS_SIZE: usize = size_of::<MarketStats>();
pub const CLIENT_STATS_SIZE: usize = size_of::<ClientStats>();
pub const TITLE_TABLE_SIZE: usize = size_of::<TitleTable>();

const _: () = {
    assert!(HEADER_SIZE == 384);
    assert!(size_of::<RequestRing>() == 128 + REQUEST_RING_CAPACITY * 64);
    assert!(size_of::<ReplyRing>() == 128 + REPLY_RING_CAPACITY * 64);
    assert!(
        SLOT_SIZE
            == 128 + 128 + (128 + REQUEST_RING_CAPACITY * 64) + (128 + REPLY_RING_CAPACITY * 64)
    );
    assert!(SLOT_SIZE % 128 == 0);
    assert!(VIEW_HEADER_SIZE == 128);
    assert!(RECORD_SIZE == 128);
    assert!(MARKET_STATS_SIZE == 3264);
    assert!(CLIENT_STATS_SIZE == 64);
    assert!(TITLE_TABLE_SIZE == 128 + TITLE_TABLE_ENTRIES * 128);
    assert!(align_of::<TitleTable>() <= 128);
    assert!(align_of::<Slot>() == 128 && align_of::<Header>() == 128);
    // Everything clients validate is on the identity line.
    assert!(std::mem::offset_of!(Header, reply_ring_capacity) < 128);
    assert!(std::mem::offset_of!(Header, attach_epoch) == 128);
    assert!(std::mem::offset_of!(Header, doorbell) == 256);
    assert!(std::mem::offset_of!(Slot, doorbell) == 128);
    assert!(std::mem::offset_of!(Slot, requests) == 256);
};

/// The sizes a store is made with; every offset follows from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub capacity: u32,
    pub slot_count: u32,
}

impl Geometry {
    pub fn slots_offset(&self) -> usize {
        HEADER_SIZE
    }

    pub fn view_offset(&self) -> usize {
        self.slots_offset() + self.slot_count as usize * SLOT_SIZE
    }

    pub fn recent_trades_offset(&self) -> usize {
        self.view_offset() + VIEW_HEADER_SIZE
    }

    pub fn shelf_offset(&self) -> usize {
        self.recent_trades_offset() + RECENT_TRADES * RECORD_SIZE
    }

    /// Rows the shelf can need: at most one per book, so `capacity`.
    pub fn shelf_rows(&self) -> usize {
        self.capacity as usize
    }

    pub fn stats_offset(&self) -> usize {
        self.shelf_offset() + self.shelf_rows() * RECORD_SIZE
    }

    pub fn client_stats_offset(&self) -> usize {
        self.stats_offset() + MARKET_STATS_SIZE
    }

    /// The title table: after the client stats, on a 128-byte boundary (its count's line is
    /// written by the market alone, as the stats are).
    pub fn titles_offset(&self) -> usize {
        let clients_end = self.client_stats_offset() + self.slot_count as usize * CLIENT_STATS_SIZE;
        clients_end.div_ceil(128) * 128
    }

    pub fn total_size(&self) -> usize {
        let end = self.titles_offset() + TITLE_TABLE_SIZE;
        end.div_ceil(PAGE) * PAGE
    }
}

/// A labelled byte range of the object, for dumps (`inspect --hex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub start: usize,
    pub end: usize,
    pub label: String,
}

impl Geometry {
    /// Every region of the object in order, from the layout's own types and offsets: a dump
    /// labelled with these never disagrees with the structs. With `shelf_in_use` (the view's
    /// row count), the shelf rows past it are labelled unused.
    pub fn regions(&self, shelf_in_use: Option<usize>) -> Vec<Region> {
        use std::mem::offset_of;
        let mut out = Vec::new();
        let mut push =
            |start: usize, end: usize, label: String| out.push(Region { start, end, label });
        push(
            0,
            offset_of!(Header, attach_epoch),
            "header: identity (magic, version, state, sizes, market pid)".into(),
        );
        push(
            offset_of!(Header, attach_epoch),
            offset_of!(Header, doorbell),
            "header: attach epoch".into(),
        );
        push(
            offset_of!(Header, doorbell),
            HEADER_SIZE,
            "header: market doorbell (futex word)".into(),
        );
        for i in 0..self.slot_count as usize {
            let base = self.slots_offset() + i * SLOT_SIZE;
            let parts = [
                (
                    0,
                    offset_of!(Slot, doorbell),
                    "control (state|pid, start time, client id)",
                ),
                (
                    offset_of!(Slot, doorbell),
                    offset_of!(Slot, requests),
                    "client doorbell",
                ),
                (
                    offset_of!(Slot, requests),
                    offset_of!(Slot, replies),
                    "request ring (head, cells)",
                ),
                (
                    offset_of!(Slot, replies),
                    SLOT_SIZE,
                    "reply ring (head, cells)",
                ),
            ];
            for (start, end, what) in parts {
                push(base + start, base + end, format!("slot {i}: {what}"));
            }
        }
        let view = self.view_offset();
        push(
            view,
            view + VIEW_HEADER_SIZE,
            "view: seqlock and totals".into(),
        );
        push(
            self.recent_trades_offset(),
            self.shelf_offset(),
            format!("view: recent trades ({RECENT_TRADES} records)"),
        );
        let shelf_end = self.shelf_offset() + self.shelf_rows() * RECORD_SIZE;
        match shelf_in_use.filter(|&n| n <= self.shelf_rows()) {
            Some(n) => {
                let used_end = self.shelf_offset() + n * RECORD_SIZE;
                push(
                    self.shelf_offset(),
                    used_end,
                    format!("view: shelf rows 0..{n} (in use)"),
                );
                push(
                    used_end,
                    shelf_end,
                    format!(
                        "view: shelf rows {n}..{} (unused: zero, or stale rows of an earlier shelf)",
                        self.shelf_rows()
                    ),
                );
            }
            None => push(self.shelf_offset(), shelf_end, "view: shelf rows".into()),
        }
        let stats = self.stats_offset();
        push(
            stats,
            stats + offset_of!(MarketStats, warnings),
            "stats: market (start, journal, latency count and maxima)".into(),
        );
        push(
            stats + offset_of!(MarketStats, warnings),
            stats + offset_of!(MarketStats, latency),
            "stats: warnings by kind".into(),
        );
        push(
            stats + offset_of!(MarketStats, latency),
            stats + offset_of!(MarketStats, rates),
            format!("stats: service latency histogram ({LATENCY_BUCKETS} buckets)"),
        );
        push(
            stats + offset_of!(MarketStats, rates),
            self.client_stats_offset(),
            format!("stats: per-second totals ({RATE_SECONDS} seconds)"),
        );
        let clients_end = self.client_stats_offset() + self.slot_count as usize * CLIENT_STATS_SIZE;
        push(
            self.client_stats_offset(),
            clients_end,
            format!("stats: clients ({} rows of 64)", self.slot_count),
        );
        let titles = self.titles_offset();
        if titles > clients_end {
            push(clients_end, titles, "padding to 128 bytes".into());
        }
        push(titles, titles + 128, "titles: count published".into());
        let titles_end = titles + TITLE_TABLE_SIZE;
        push(
            titles + 128,
            titles_end,
            format!(
                "titles: {TITLE_TABLE_ENTRIES} records of 128 (length, then the title's bytes)"
            ),
        );
        push(titles_end, self.total_size(), "padding to the page".into());
        out
    }
}

/// A header field that is not what a valid store has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("magic is {found:#018x}, not a bookstore object ({MAGIC:#018x})")]
    Magic { found: u64 },
    #[error("layout version is {found}; this program reads version {LAYOUT_VERSION}")]
    Version { found: u32 },
    #[error("state is {found}, not initialising (1), ready (2) or closing (3)")]
    State { found: u32 },
    #[error("{field} is {found}, outside 1..={max}")]
    OutOfRange {
        field: &'static str,
        found: u64,
        max: u64,
    },
    #[error("{field} is {found}; the layout says it must be {expected}")]
    Mismatch {
        field: &'static str,
        found: u64,
        expected: u64,
    },
}

/// Checks every header field against the layout before any offset in it is trusted, and
/// returns the geometry the rest of the object has.
pub fn validate_header(header: &Header, mapped_len: usize) -> Result<Geometry, HeaderError> {
    use bookstore_ipc::sync::{fence, Ordering::Acquire, Ordering::Relaxed};
    // The one acquire: on `state`, which the market stores (release) after the identity line.
    // A relaxed load and a fence, so that this is sound on a read-only mapping too. Every
    // other field is then read relaxed: this fence orders them.
    let state = header.state.load(Relaxed);
    fence(Acquire);
    let magic = header.magic.load(Relaxed);
    if magic != MAGIC {
        return Err(HeaderError::Magic { found: magic });
    }
    let version = header.version.load(Relaxed);
    if version != LAYOUT_VERSION {
        return Err(HeaderError::Version { found: version });
    }
    StoreState::from_raw(state).ok_or(HeaderError::State { found: state })?;
    let in_range = |field, found: u32, max: u32| {
        if found == 0 || found > max {
            Err(HeaderError::OutOfRange {
                field,
                found: found.into(),
                max: max.into(),
            })
        } else {
            Ok(found)
        }
    };
    let geometry = Geometry {
        capacity: in_range("capacity", header.capacity.load(Relaxed), MAX_CAPACITY)?,
        slot_count: in_range("slot_count", header.slot_count.load(Relaxed), MAX_SLOTS)?,
    };
    let expect = |field, found: u64, expected: usize| {
        if found == expected as u64 {
            Ok(())
        } else {
            Err(HeaderError::Mismatch {
                field,
                found,
                expected: expected as u64,
            })
        }
    };
    expect(
        "request_ring_capacity",
        header.request_ring_capacity.load(Relaxed).into(),
        REQUEST_RING_CAPACITY,
    )?;
    expect(
        "reply_ring_capacity",
        header.reply_ring_capacity.load(Relaxed).into(),
        REPLY_RING_CAPACITY,
    )?;
    expect(
        "total_size",
        header.total_size.load(Relaxed),
        geometry.total_size(),
    )?;
    expect("mapped size", mapped_len as u64, geometry.total_size())?;
    expect(
        "slots_offset",
        header.slots_offset.load(Relaxed),
        geometry.slots_offset(),
    )?;
    expect(
        "view_offset",
        header.view_offset.load(Relaxed),
        geometry.view_offset(),
    )?;
    Ok(geometry)
}

pub mod title_words;

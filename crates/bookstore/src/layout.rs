//! The shared object's bytes: what lives where, version 1.
//!
//! Every field is an atomic (any bit pattern is a valid atomic), so a buggy or hostile process
//! writing into the object can make us read wrong *values*, which we validate, but never
//! causes undefined behaviour in the market. All sizes are fixed and checked at compile time.
//!
//! | offset                    | size                  | what                                  |
//! |---------------------------|-----------------------|---------------------------------------|
//! | 0                         | 64                    | [`Header`] identity line              |
//! | 64                        | 64                    | [`Header`] counters line              |
//! | 128                       | 64                    | [`Header`] market doorbell            |
//! | 192                       | `slots × 16 768`      | [`Slot`] table                        |
//! | `view_offset`             | 128                   | [`ViewHeader`] (seqlock + totals)     |
//! | `view_offset + 128`       | `32 × 128`            | recent trades ([`Cell`], a ring)      |
//! | `... + 4096`              | `capacity × 128`      | shelf rows ([`Cell`])                 |
//! | end, rounded up to 4 KiB  |                       |                                       |
//!
//! A slot is: control line (64) · client doorbell (64) · request ring (8 320) · event ring (8 320).
//! A ring is: head line (64) · tail line (64) · 64 cells of 128 bytes.

use std::mem::{align_of, size_of};

use bookstore_ipc::doorbell::Doorbell;
use bookstore_ipc::ring::{CacheLine, Ring, MESSAGE_WORDS};
use bookstore_ipc::sync::{AtomicU32, AtomicU64};

/// `b"BOOKSTOR"` read as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"BOOKSTOR");
pub const LAYOUT_VERSION: u32 = 1;
/// Messages in each request ring and each event ring.
pub const RING_CAPACITY: usize = 64;
/// Trades kept in the published view's recent-trades ring.
pub const RECENT_TRADES: usize = 32;
pub const MAX_SLOTS: u32 = 1024;
pub use engine::MAX_CAPACITY;
const PAGE: usize = 4096;

pub type MessageRing = Ring<RING_CAPACITY>;

/// The market's lifecycle, in [`Header::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    Initialising = 1,
    Ready = 2,
    Closing = 3,
}

impl StoreState {
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Initialising),
            2 => Some(Self::Ready),
            3 => Some(Self::Closing),
            _ => None,
        }
    }
}

#[repr(C, align(64))]
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
    pub ring_capacity: AtomicU32,
    pub market_start_time: AtomicU64,
    pub slots_offset: AtomicU64,
    pub view_offset: AtomicU64,
    // Counters line.
    /// Bumped by a client after it activates a slot, so a busy market (not parked, so not rung)
    /// still notices new clients by watching one word.
    pub attach_epoch: CacheLine<AtomicU64>,
    /// Rung by clients after pushing a request or activating a slot; the market parks on it.
    pub doorbell: Doorbell,
}

pub use bookstore_ipc::slot::{slot_state, SlotControl};

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
        let (_, pid, start_time) = self.identity().read();
        shm::process::ProcessId { pid, start_time }
    }
}

#[repr(C)]
pub struct Slot {
    pub control: SlotControl,
    /// The client parks here waiting for events; the market rings it.
    pub doorbell: Doorbell,
    /// Client → market.
    pub requests: MessageRing,
    /// Market → client.
    pub events: MessageRing,
}

/// One 128-byte row of the view: a shelf row or a recent trade.
#[repr(C, align(64))]
pub struct Cell(pub [AtomicU64; MESSAGE_WORDS]);

#[repr(C, align(64))]
pub struct ViewHeader {
    /// Seqlock: odd while the market is writing the view.
    pub seq: AtomicU64,
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

pub const HEADER_SIZE: usize = size_of::<Header>();
pub const SLOT_SIZE: usize = size_of::<Slot>();
pub const VIEW_HEADER_SIZE: usize = size_of::<ViewHeader>();
pub const CELL_SIZE: usize = size_of::<Cell>();

const _: () = {
    assert!(HEADER_SIZE == 192);
    assert!(size_of::<MessageRing>() == 64 + 64 + RING_CAPACITY * 128);
    assert!(SLOT_SIZE == 64 + 64 + 2 * (128 + RING_CAPACITY * 128));
    assert!(SLOT_SIZE % 64 == 0);
    assert!(VIEW_HEADER_SIZE == 128);
    assert!(CELL_SIZE == 128);
    assert!(align_of::<Slot>() == 64 && align_of::<Header>() == 64);
    assert!(std::mem::offset_of!(Header, attach_epoch) == 64);
    assert!(std::mem::offset_of!(Header, doorbell) == 128);
    assert!(std::mem::offset_of!(Slot, requests) == 128);
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
        self.recent_trades_offset() + RECENT_TRADES * CELL_SIZE
    }

    /// Rows the shelf can need: at most one per book, so `capacity`.
    pub fn shelf_rows(&self) -> usize {
        self.capacity as usize
    }

    pub fn total_size(&self) -> usize {
        let end = self.shelf_offset() + self.shelf_rows() * CELL_SIZE;
        end.div_ceil(PAGE) * PAGE
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
    use bookstore_ipc::sync::Ordering::Acquire;
    // Acquire on `state` first: the market writes the identity line before it releases Ready.
    let state = header.state.load(Acquire);
    let magic = header.magic.load(Acquire);
    if magic != MAGIC {
        return Err(HeaderError::Magic { found: magic });
    }
    let version = header.version.load(Acquire);
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
        capacity: in_range("capacity", header.capacity.load(Acquire), MAX_CAPACITY)?,
        slot_count: in_range("slot_count", header.slot_count.load(Acquire), MAX_SLOTS)?,
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
        "ring_capacity",
        header.ring_capacity.load(Acquire).into(),
        RING_CAPACITY,
    )?;
    expect(
        "total_size",
        header.total_size.load(Acquire),
        geometry.total_size(),
    )?;
    expect("mapped size", mapped_len as u64, geometry.total_size())?;
    expect(
        "slots_offset",
        header.slots_offset.load(Acquire),
        geometry.slots_offset(),
    )?;
    expect(
        "view_offset",
        header.view_offset.load(Acquire),
        geometry.view_offset(),
    )?;
    Ok(geometry)
}

/// Titles in cells: the byte length in one word, the bytes packed little-endian into the
/// following words.
pub mod title_words {
    use bookstore_ipc::sync::{AtomicU64, Ordering::Relaxed};
    use engine::MAX_TITLE_BYTES;

    pub const WORDS: usize = MAX_TITLE_BYTES.div_ceil(8);

    pub fn pack(title: &str, out: &mut [u64]) {
        let bytes = title.as_bytes();
        for (i, w) in out[..WORDS].iter_mut().enumerate() {
            let mut chunk = [0u8; 8];
            let start = (i * 8).min(bytes.len());
            let end = (start + 8).min(bytes.len());
            chunk[..end - start].copy_from_slice(&bytes[start..end]);
            *w = u64::from_le_bytes(chunk);
        }
    }

    /// The first `len` bytes of the packed words; `None` if `len` is over the limit.
    pub fn unpack(len: u64, words: &[u64]) -> Option<Vec<u8>> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_TITLE_BYTES)?;
        let mut bytes: Vec<u8> = words[..WORDS]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        bytes.truncate(len);
        Some(bytes)
    }

    /// Relaxed loads: callers order them (seqlock or ring index).
    pub fn load(cells: &[AtomicU64]) -> [u64; 16] {
        std::array::from_fn(|i| cells.get(i).map_or(0, |c| c.load(Relaxed)))
    }
}

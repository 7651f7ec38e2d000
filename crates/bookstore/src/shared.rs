//! The store's shared object, mapped and typed: [`SharedStore`] for the market and its clients
//! (read-write), [`StoreReader`] for observers that must never write (`inspect`, a market
//! examining a name, `market --stop`).
//!
//! `unsafe` is allowed here (the crate's only module with it) to turn offsets of the mapping
//! into typed references: `Mapping::at` and the header image below. Every type so viewed is
//! made of atomics only ([`AtomicsOnly`]), which is what makes the references sound.
#![allow(unsafe_code)]

use std::mem::size_of;

use bookstore_ipc::slot::{IdentitySeen, SlotState};
use shm::process::ProcessId;
use shm::{Mode, Segment, ShmName};

use crate::layout::{
    self, ClientStats, Geometry, Header, HeaderError, MarketStats, Record, Slot, StoreState,
    TitleTable, ViewHeader, CLIENT_STATS_SIZE, HEADER_SIZE, LAYOUT_VERSION, MAGIC, RECENT_TRADES,
    RECORD_SIZE, REPLY_RING_CAPACITY, REQUEST_RING_CAPACITY, SLOT_SIZE,
};
use crate::stats::StatsSnapshot;
use crate::view::{Snapshot, SnapshotError};
use bookstore_ipc::sync::Ordering::Relaxed;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error(transparent)]
    Open(#[from] shm::OpenError),
    #[error("{name} is not a valid bookstore object: {source}")]
    Header {
        name: ShmName,
        #[source]
        source: HeaderError,
    },
    /// Another user's object that no live market of that user serves.
    #[error("{name} belongs to uid {owner}{}, not to you, and {why}: refusing to trust it", user_suffix(*.owner))]
    Untrusted {
        name: ShmName,
        owner: u32,
        why: String,
    },
}

/// ` (name)` for a uid with a name in `/etc/passwd`.
pub fn user_suffix(uid: u32) -> String {
    shm::users::user_name(uid).map_or_else(String::new, |n| format!(" ({n})"))
}

/// Types that may be viewed in the shared mapping through a shared reference.
///
/// # Safety
/// The type must consist of atomics (and padding) only: valid for every bit pattern, and
/// without interior state that a plain write by another process could make unsound. Another
/// process is outside Rust's abstract machine; whatever it writes (even with plain stores, as
/// a hostile one may) is, to us, an atomic write of some value, which validation then judges.
pub(crate) unsafe trait AtomicsOnly {}
// SAFETY: each is `#[repr(C)]` and made of `AtomicU32`, `AtomicU64` and types that are
// themselves made of them (`LinePair`, `Doorbell`, `Ring`, `Record`, `SeqLock`), plus padding;
// the sizes are pinned by the layout's compile-time assertions.
unsafe impl AtomicsOnly for Header {}
// SAFETY: as above.
unsafe impl AtomicsOnly for Slot {}
// SAFETY: as above.
unsafe impl AtomicsOnly for ViewHeader {}
// SAFETY: as above.
unsafe impl AtomicsOnly for Record {}
// SAFETY: as above (arrays of `AtomicU64`).
unsafe impl AtomicsOnly for MarketStats {}
// SAFETY: as above.
unsafe impl AtomicsOnly for ClientStats {}
// SAFETY: as above (`AppendOnly` is a `LinePair<AtomicU64>` and `Record`s).
unsafe impl<const N: usize> AtomicsOnly for bookstore_ipc::AppendOnly<N> {}

/// The mapped object and its geometry. Crate-private: the two public store types decide
/// whether anyone may write through it.
pub(crate) struct Mapping {
    segment: Segment,
    geometry: Geometry,
}

impl Mapping {
    /// Validates the header of an opened segment, then decides whether to trust it: an object
    /// of ours, or another user's that a live market of that same user serves (the mode let
    /// us open it; every byte is validated either way).
    fn trusted(segment: Segment) -> Result<Self, OpenStoreError> {
        let owner = segment
            .stat()
            .map_err(|source| shm::OpenError::Os {
                op: "fstat",
                source,
            })?
            .owner_uid;
        if owner == shm::effective_uid() {
            return Self::validated(segment);
        }
        let name = segment.name().clone();
        let untrusted = |why: String| OpenStoreError::Untrusted {
            name: name.clone(),
            owner,
            why,
        };
        let map =
            Self::validated(segment).map_err(|e| untrusted(format!("it is not valid ({e})")))?;
        let seen = map.header().identity().read();
        let market = ProcessId {
            pid: seen.pid,
            start_time: seen.start_time,
        };
        let live = shm::process::ProcessHandle::open(market).is_ok();
        if !live {
            return Err(untrusted(format!(
                "its market (pid {}) is not running",
                market.pid
            )));
        }
        if shm::users::process_uid(market.pid) != Some(owner) {
            return Err(untrusted(format!(
                "the process it names (pid {}) is not that user's",
                market.pid
            )));
        }
        Ok(map)
    }

    /// Validates the header of an opened segment before any offset in it is used.
    fn validated(segment: Segment) -> Result<Self, OpenStoreError> {
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked by `open_*`), page-aligned,
        // and `Header` is `AtomicsOnly`.
        let header = unsafe { &*segment.as_ptr().cast::<Header>() };
        let geometry = layout::validate_header(header, segment.len()).map_err(|source| {
            OpenStoreError::Header {
                name: segment.name().clone(),
                source,
            }
        })?;
        Ok(Self { segment, geometry })
    }

    /// The atomics at byte `offset` of the mapping, as a `T`.
    fn at<T: AtomicsOnly>(&self, offset: usize) -> &T {
        assert!(
            offset + size_of::<T>() <= self.segment.len(),
            "offset inside the mapping"
        );
        assert_eq!(
            offset % std::mem::align_of::<T>(),
            0,
            "offset aligned for T"
        );
        // SAFETY: in bounds and aligned (asserted above; the mapping itself is page-aligned).
        // `T: AtomicsOnly`, valid for any bit pattern; what other processes write is, to us, an
        // atomic write of some value (see `AtomicsOnly`). The reference cannot outlive the
        // mapping: it borrows `self`. On a read-only mapping only `StoreReader` holds `self`,
        // and it does relaxed loads only.
        unsafe { &*self.segment.as_ptr().add(offset).cast::<T>() }
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub(crate) fn header(&self) -> &Header {
        self.at(0)
    }

    pub(crate) fn slot(&self, index: u32) -> &Slot {
        assert!(
            index < self.geometry.slot_count,
            "slot {index} out of range"
        );
        self.at(self.geometry.slots_offset() + index as usize * SLOT_SIZE)
    }

    pub(crate) fn view_header(&self) -> &ViewHeader {
        self.at(self.geometry.view_offset())
    }

    pub(crate) fn recent_trade(&self, index: usize) -> &Record {
        self.at(self.geometry.recent_trades_offset() + (index % RECENT_TRADES) * RECORD_SIZE)
    }

    pub(crate) fn shelf_row(&self, index: usize) -> &Record {
        assert!(
            index < self.geometry.shelf_rows(),
            "shelf row {index} out of range"
        );
        self.at(self.geometry.shelf_offset() + index * RECORD_SIZE)
    }

    pub(crate) fn market_stats(&self) -> &MarketStats {
        self.at(self.geometry.stats_offset())
    }

    pub(crate) fn client_stats(&self, slot: u32) -> &ClientStats {
        assert!(
            slot < self.geometry.slot_count,
            "client stats row {slot} out of range"
        );
        self.at(self.geometry.client_stats_offset() + slot as usize * CLIENT_STATS_SIZE)
    }

    pub(crate) fn title_table(&self) -> &TitleTable {
        self.at(self.geometry.titles_offset())
    }
}

/// A store mapped read-write, its header validated (or, for the market, written): the market
/// and its clients, who take part in the protocols.
pub struct SharedStore {
    map: Mapping,
}

impl SharedStore {
    /// Creates the object (exclusively, see [`Segment::create`]) and writes its header with
    /// state `Initialising`. The market sets `Ready` once it is able to serve.
    pub fn create(
        name: &ShmName,
        geometry: Geometry,
        mode: Mode,
        market: ProcessId,
    ) -> Result<Self, shm::CreateError> {
        let segment = Segment::create(name, geometry.total_size(), mode)?;
        let store = Self {
            map: Mapping { segment, geometry },
        };
        let h = store.header();
        // Relaxed: nobody may trust these before the release store of `state` below.
        h.version.store(LAYOUT_VERSION, Relaxed);
        h.total_size.store(geometry.total_size() as u64, Relaxed);
        h.capacity.store(geometry.capacity, Relaxed);
        h.slot_count.store(geometry.slot_count, Relaxed);
        h.request_ring_capacity
            .store(REQUEST_RING_CAPACITY as u32, Relaxed);
        h.reply_ring_capacity
            .store(REPLY_RING_CAPACITY as u32, Relaxed);
        h.slots_offset
            .store(geometry.slots_offset() as u64, Relaxed);
        h.view_offset.store(geometry.view_offset() as u64, Relaxed);
        h.magic.store(MAGIC, Relaxed);
        // Publishes the whole identity line with the release store of `state`.
        h.identity()
            .publish(market.pid, market.start_time, StoreState::Initialising);
        Ok(store)
    }

    /// `shm_open` read-write an existing object, validates its header and decides whether to
    /// trust it: ours, or another user's while that user's live market serves it (the mode
    /// must let us open it).
    pub fn open(name: &ShmName) -> Result<Self, OpenStoreError> {
        let segment = Segment::open_read_write(name, shm::Owner::Anyone, HEADER_SIZE)?;
        Ok(Self {
            map: Mapping::trusted(segment)?,
        })
    }

    pub fn segment(&self) -> &Segment {
        &self.map.segment
    }

    pub fn geometry(&self) -> Geometry {
        self.map.geometry
    }

    pub fn header(&self) -> &Header {
        self.map.header()
    }

    pub fn slot_count(&self) -> u32 {
        self.map.geometry.slot_count
    }

    pub fn slot(&self, index: u32) -> &Slot {
        self.map.slot(index)
    }

    /// A consistent copy of the published view.
    pub fn view(&self) -> Result<Snapshot, SnapshotError> {
        crate::view::snapshot(&self.map)
    }

    /// The published view once the market has settled (at most `within` from now): see
    /// [`crate::view::settled_snapshot`].
    pub fn settled_view(&self, within: std::time::Duration) -> Result<Snapshot, SnapshotError> {
        crate::view::settled_snapshot(&self.map, within)
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// The title table (see [`crate::titles`]).
    pub fn title_table(&self) -> &TitleTable {
        self.map.title_table()
    }
}

/// What an observer sees of one client slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotReport {
    pub state: SlotState,
    pub pid: u32,
    /// The first 64 bits of the id the claimant gave itself (`ClientId::short`).
    pub client_id: u64,
    pub requests_queued: u32,
    pub replies_queued: u32,
    /// The client is parked on its doorbell, waiting for a reply.
    pub client_parked: bool,
}

/// A store mapped read-only, its header validated: it offers copies of what it reads, never a
/// reference through which anything could be written, and reads with relaxed loads (plus
/// acquire fences where order matters), the only atomic accesses Rust allows on read-only
/// memory.
pub struct StoreReader {
    map: Mapping,
}

impl StoreReader {
    /// `shm_open` read-only an existing object, validates its header and decides whether to
    /// trust it, as [`SharedStore::open`] does.
    pub fn open(name: &ShmName) -> Result<Self, OpenStoreError> {
        let segment = Segment::open_read_only(name, shm::Owner::Anyone, HEADER_SIZE)?;
        Ok(Self {
            map: Mapping::trusted(segment)?,
        })
    }

    /// `shm_open` read-only an existing object of ours only, and validates its header: for a
    /// market deciding about an object under a name it holds.
    pub fn open_own(name: &ShmName) -> Result<Self, OpenStoreError> {
        let owner = shm::Owner::Is(shm::effective_uid());
        let segment = Segment::open_read_only(name, owner, HEADER_SIZE)?;
        Ok(Self {
            map: Mapping::validated(segment)?,
        })
    }

    pub fn segment(&self) -> &Segment {
        &self.map.segment
    }

    pub fn geometry(&self) -> Geometry {
        self.map.geometry
    }

    /// The market's state and identity, the state acquired first (relaxed load and fence).
    pub fn identity(&self) -> IdentitySeen {
        self.map.header().identity().read()
    }

    /// The market process as the header names it.
    pub fn market(&self) -> ProcessId {
        let seen = self.identity();
        ProcessId {
            pid: seen.pid,
            start_time: seen.start_time,
        }
    }

    pub fn layout_version(&self) -> u32 {
        // Relaxed: validated already; informational.
        self.map.header().version.load(Relaxed)
    }

    /// Whether the market is parked on its doorbell (idle).
    pub fn market_parked(&self) -> bool {
        self.map.header().doorbell.is_parked()
    }

    /// The thread of the market that guards the clients' doorbells (its alarm thread: the
    /// kernel wakes a parked client when it dies), as slot 0's doorbell names it now.
    pub fn doorbell_guardian(&self) -> Option<u32> {
        self.map.slot(0).doorbell.guardian_thread()
    }

    /// One slot as it looks now (the state acquired first; the rest may be a moment stale).
    pub fn slot(&self, index: u32) -> SlotReport {
        let slot = self.map.slot(index);
        let (state, pid) = slot.control.observe();
        SlotReport {
            state,
            pid,
            client_id: engine::ClientId(slot.control.claimant_client_id()).short(),
            requests_queued: slot.requests.len_hint(),
            replies_queued: slot.replies.len_hint(),
            client_parked: slot.doorbell.is_parked(),
        }
    }

    /// A consistent copy of the published view.
    pub fn view(&self) -> Result<Snapshot, SnapshotError> {
        crate::view::snapshot(&self.map)
    }

    /// Titles the market has put in its title table, and those of them that are valid titles
    /// (the rest were scribbled on).
    pub fn title_table_counts(&self) -> (u32, u32) {
        let table = self.map.title_table();
        let published = table.published();
        let valid = (0..published)
            .filter_map(|i| table.get(i, published))
            .filter(|words| crate::titles::title_of_record(words).is_some())
            .count();
        (published, valid as u32)
    }

    /// The view and the market's statistics, copied together in one read of the seqlock: for
    /// watchers (`top`, `inspect`).
    pub fn view_and_stats(&self) -> Result<(Snapshot, StatsSnapshot), SnapshotError> {
        crate::stats::snapshot_with_view(&self.map)
    }
}

/// A header's bytes in memory aligned as the mapping is, for validating a header that is not
/// mapped (fuzzing, tests).
#[repr(C, align(128))]
struct HeaderImage([u8; HEADER_SIZE]);

/// Validates a header given as bytes (the first `HEADER_SIZE`, zero-padded if shorter) as if it
/// were mapped with `mapped_len` bytes.
pub fn validate_header_bytes(
    bytes: &[u8],
    mapped_len: usize,
) -> Result<layout::Geometry, layout::HeaderError> {
    let mut image = Box::new(HeaderImage([0; HEADER_SIZE]));
    let n = bytes.len().min(HEADER_SIZE);
    image.0[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: `HeaderImage` has `Header`'s size and (128-byte) alignment; `Header` is
    // `AtomicsOnly`, so every bit pattern is valid; the box outlives the reference, which does
    // not escape this function.
    let header = unsafe { &*std::ptr::from_ref(&*image).cast::<Header>() };
    layout::validate_header(header, mapped_len)
}

const _: () = assert!(
    std::mem::size_of::<HeaderImage>() == HEADER_SIZE
        && std::mem::align_of::<HeaderImage>() >= std::mem::align_of::<Header>()
);

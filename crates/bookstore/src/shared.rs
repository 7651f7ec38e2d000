//! The store's shared object, mapped and typed.
//!
//! `unsafe` is allowed here (the crate's only module with it) to turn offsets of the mapping
//! into typed references: `at` and the header image below. Every type so viewed is made of
//! atomics only (see `AtomicsOnly`), which is what makes the references sound.
#![allow(unsafe_code)]

use std::mem::size_of;

use shm::{Mode, Segment, ShmName};

use crate::layout::{
    self, Cell, Geometry, Header, HeaderError, Slot, ViewHeader, CELL_SIZE, HEADER_SIZE,
    LAYOUT_VERSION, MAGIC, RECENT_TRADES, RING_CAPACITY, SLOT_SIZE,
};
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
}

/// A mapped store whose header has been validated (or, for the market, written).
pub struct SharedStore {
    segment: Segment,
    geometry: Geometry,
}

impl SharedStore {
    /// Creates the object (exclusively, see [`Segment::create`]) and writes its header with
    /// state `Initialising`. The market sets `Ready` once it is able to serve.
    pub fn create(
        name: &ShmName,
        geometry: Geometry,
        mode: Mode,
    ) -> Result<Self, shm::CreateError> {
        let segment = Segment::create(name, geometry.total_size(), mode)?;
        let store = Self { segment, geometry };
        let h = store.header();
        let me = shm::process::ProcessId::current();
        // Relaxed: nobody may trust these before the release store of `state` below.
        h.version.store(LAYOUT_VERSION, Relaxed);
        h.total_size.store(geometry.total_size() as u64, Relaxed);
        h.capacity.store(geometry.capacity, Relaxed);
        h.slot_count.store(geometry.slot_count, Relaxed);
        h.ring_capacity.store(RING_CAPACITY as u32, Relaxed);
        h.slots_offset
            .store(geometry.slots_offset() as u64, Relaxed);
        h.view_offset.store(geometry.view_offset() as u64, Relaxed);
        h.magic.store(MAGIC, Relaxed);
        // Publishes the whole identity line with the release store of `state`.
        h.identity().publish(
            me.pid,
            me.start_time,
            layout::StoreState::Initialising as u32,
        );
        Ok(store)
    }

    /// Opens an existing object owned by `owner`, and validates its header.
    pub fn open(name: &ShmName, writable: bool, owner: u32) -> Result<Self, OpenStoreError> {
        let segment = Segment::open(name, writable, owner, HEADER_SIZE)?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked by `open`) and page-aligned.
        let header = unsafe { &*segment.as_ptr().cast::<Header>() };
        let geometry = layout::validate_header(header, segment.len()).map_err(|source| {
            OpenStoreError::Header {
                name: name.clone(),
                source,
            }
        })?;
        Ok(Self { segment, geometry })
    }

    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The atomics at byte `offset` of the mapping, as a `T`.
    fn at<T>(&self, offset: usize) -> &T {
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
        // Every `T` used here is made only of atomics, valid for any bit pattern, and shared
        // mutation by other processes goes through those atomics, so a shared reference is
        // sound. The reference cannot outlive the mapping: it borrows `self`.
        unsafe { &*self.segment.as_ptr().add(offset).cast::<T>() }
    }

    pub fn header(&self) -> &Header {
        self.at(0)
    }

    pub fn slot_count(&self) -> u32 {
        self.geometry.slot_count
    }

    pub fn slot(&self, index: u32) -> &Slot {
        assert!(
            index < self.geometry.slot_count,
            "slot {index} out of range"
        );
        self.at(self.geometry.slots_offset() + index as usize * SLOT_SIZE)
    }

    pub fn view_header(&self) -> &ViewHeader {
        self.at(self.geometry.view_offset())
    }

    pub fn recent_trade(&self, index: usize) -> &Cell {
        self.at(self.geometry.recent_trades_offset() + (index % RECENT_TRADES) * CELL_SIZE)
    }

    pub fn shelf_row(&self, index: usize) -> &Cell {
        assert!(
            index < self.geometry.shelf_rows(),
            "shelf row {index} out of range"
        );
        self.at(self.geometry.shelf_offset() + index * CELL_SIZE)
    }
}

/// A header's bytes in memory aligned as the mapping is, for validating a header that is not
/// mapped (fuzzing, tests).
#[repr(C, align(64))]
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
    // SAFETY: `HeaderImage` has `Header`'s size and (64-byte) alignment; `Header` is made of
    // atomics and padding only, for which every bit pattern is valid; the box outlives the
    // reference, which does not escape this function.
    let header = unsafe { &*std::ptr::from_ref(&*image).cast::<Header>() };
    layout::validate_header(header, mapped_len)
}

const _: () = assert!(
    std::mem::size_of::<HeaderImage>() == HEADER_SIZE
        && std::mem::align_of::<HeaderImage>() >= std::mem::align_of::<Header>()
);

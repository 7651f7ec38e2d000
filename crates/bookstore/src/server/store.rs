//! The store as a market makes it: one market per name, created exclusively, replaced only
//! when stale, removed on every way out.

use shm::process::{ProcessError, ProcessHandle, ProcessId};
use shm::{Mode, ShmName};

use super::name_lock::{NameLock, NameLockError};
use crate::layout::{Geometry, StoreState, MAX_CAPACITY, MAX_SLOTS};
use crate::shared::{user_suffix, OpenStoreError, SharedStore, StoreReader};

/// What store to create: its name, sizes and permissions.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    pub name: ShmName,
    pub geometry: Geometry,
    pub mode: Mode,
    /// The object's group (`--group`); `None` keeps the market's own group.
    pub group: Option<u32>,
}

/// Why the market could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    NameTaken(#[from] NameLockError),
    #[error("{name} belongs to uid {owner}{}: another user's store{}; choose another --name", user_suffix(*.owner), market_suffix(*.market))]
    OwnedByOther {
        name: ShmName,
        owner: u32,
        /// The pid of that user's live market, when the mode lets us read it.
        market: Option<u32>,
    },
    #[error("{name} exists but is not a usable bookstore object ({reason}); no market holds the name, so if no other program uses it, remove {path}")]
    Foreign {
        name: ShmName,
        reason: String,
        path: String,
    },
    #[error("capacity: {0} is outside 1..={MAX_CAPACITY}")]
    Capacity(u32),
    #[error("slots: {0} is outside 1..={MAX_SLOTS}")]
    Slots(u32),
    #[error(transparent)]
    Create(#[from] shm::CreateError),
    #[error("cannot give {name} to group {gid}: {source}")]
    Group {
        name: ShmName,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read this process's own identity: {0}")]
    Identity(#[source] ProcessError),
}

fn market_suffix(market: Option<u32>) -> String {
    market.map_or_else(String::new, |pid| format!(" (its market is pid {pid})"))
}

/// The store's geometry, if `capacity` and `slots` are in range.
pub fn checked_geometry(capacity: u32, slots: u32) -> Result<Geometry, StartError> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(StartError::Capacity(capacity));
    }
    if slots == 0 || slots > MAX_SLOTS {
        return Err(StartError::Slots(slots));
    }
    Ok(Geometry {
        capacity,
        slot_count: slots,
    })
}

/// Creates the store under a name this process holds (`lock`). An object already there is
/// stale by definition (its market would hold the lock) and is replaced if it is ours and a
/// bookstore object, or a half-created one (all zeros); another user's object is never
/// touched, nor one that is not a bookstore object.
///
/// `_held` is the proof of ownership: only the holder of the name's lock can pass one.
pub fn create_store(
    spec: &StoreSpec,
    _held: &NameLock,
    me: ProcessId,
) -> Result<SharedStore, StartError> {
    let name = &spec.name;
    match SharedStore::create(name, spec.geometry, spec.mode, me) {
        Err(shm::CreateError::AlreadyExists(_)) => {}
        other => {
            return other
                .map_err(Into::into)
                .and_then(|store| with_group(store, spec))
        }
    }
    examine_existing(name)?;
    let _ = shm::unlink(name);
    let store = SharedStore::create(name, spec.geometry, spec.mode, me)?;
    with_group(store, spec)
}

/// Gives the new object to `spec.group`, if one was asked for.
fn with_group(store: SharedStore, spec: &StoreSpec) -> Result<SharedStore, StartError> {
    if let Some(gid) = spec.group {
        store
            .segment()
            .set_group(gid)
            .map_err(|source| StartError::Group {
                name: spec.name.clone(),
                gid,
                source,
            })?;
    }
    Ok(store)
}

/// Decides about an object found under a name we hold: `Ok` if it may be replaced.
fn examine_existing(name: &ShmName) -> Result<(), StartError> {
    let foreign = |reason: String| StartError::Foreign {
        name: name.clone(),
        reason,
        path: name.dev_shm_path().display().to_string(),
    };
    match StoreReader::open_own(name) {
        Ok(existing) => {
            let market = existing.market();
            tracing::warn!(%name, pid = market.pid, "replacing a stale store (its market no longer holds the name)");
            Ok(())
        }
        Err(OpenStoreError::Open(shm::OpenError::WrongOwner { owner, .. })) => {
            // Another user's: name its market if the mode lets us see it and it is live.
            let market = StoreReader::open(name).ok().map(|store| store.market().pid);
            Err(StartError::OwnedByOther {
                name: name.clone(),
                owner,
                market,
            })
        }
        Err(e) if half_created(name) => {
            tracing::warn!(%name, reason = %e, "replacing a half-created store (all zeros)");
            Ok(())
        }
        Err(e) => Err(foreign(e.to_string())),
    }
}

/// Whether the object is what a market leaves when it dies between creating the object and
/// writing its header: nothing but zeros.
fn half_created(name: &ShmName) -> bool {
    shm::Segment::open_read_only(name, shm::Owner::Is(shm::effective_uid()), 0)
        .map(|segment| segment.snapshot_bytes().iter().all(|&b| b == 0))
        .unwrap_or(false)
}

/// Removes the object when dropped: on return, on error and on panic (unwinding).
pub struct StoreGuard<'s> {
    store: &'s SharedStore,
}

impl<'s> StoreGuard<'s> {
    pub fn new(store: &'s SharedStore) -> Self {
        Self { store }
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        // Clients that see Closing see the final view published before it.
        self.store
            .header()
            .identity()
            .set_state(StoreState::Closing);
        for i in 0..self.store.slot_count() {
            self.store.slot(i).doorbell.notify();
        }
        let _ = shm::unlink(self.store.segment().name());
    }
}

/// Why no live market holds a name.
#[derive(Debug, thiserror::Error)]
pub enum NoLiveMarket {
    #[error("no market holds {name}")]
    NotHeld { name: ShmName },
    #[error(transparent)]
    Lock(#[from] NameLockError),
    #[error("the market of {name} is not running ({source})")]
    NotRunning {
        name: ShmName,
        #[source]
        source: ProcessError,
    },
}

/// The live market holding `name` (a pidfd on it), as the name's lock file says and a pidfd
/// with its start time confirms. The object's header is never consulted: anyone the mode
/// lets in could have written it.
pub fn live_market(name: &ShmName) -> Result<ProcessHandle, NoLiveMarket> {
    let holder =
        NameLock::holder(name)?.ok_or_else(|| NoLiveMarket::NotHeld { name: name.clone() })?;
    ProcessHandle::open(holder).map_err(|source| NoLiveMarket::NotRunning {
        name: name.clone(),
        source,
    })
}

/// Whether the process that claimed a slot still lives. Its start time is written right after
/// its claim; once there, the check is exact (pidfd and start time, so a reused pid does not
/// pass). Before that (a window of a few instructions) only the pid is known.
pub(super) fn claimant_alive(pid: u32, start_time: u64) -> bool {
    if start_time == 0 {
        return shm::process::pid_exists(pid);
    }
    match ProcessHandle::open(ProcessId { pid, start_time }) {
        Ok(_) => true,
        Err(ProcessError::Gone { .. } | ProcessError::Reused { .. }) => false,
        // Cannot tell (e.g. out of file descriptors): keep the slot, look again next scan.
        Err(_) => true,
    }
}

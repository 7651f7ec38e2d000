//! The store as a market makes it: one market per name, created exclusively, replaced only
//! when stale, removed on every way out.

use shm::process::{ProcessError, ProcessHandle, ProcessId};
use shm::{Mode, ShmName};

use crate::layout::{Geometry, StoreState, MAX_CAPACITY, MAX_SLOTS};
use crate::shared::{OpenStoreError, SharedStore, StoreReader};

/// What store to create: its name, sizes and permissions.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    pub name: ShmName,
    pub geometry: Geometry,
    pub mode: Mode,
}

/// Why the market could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a market is already running on {name} (pid {pid})")]
    AlreadyRunning { name: ShmName, pid: u32 },
    #[error("{name} exists and belongs to uid {owner}; refusing to touch another user's store")]
    OwnedByOther { name: ShmName, owner: u32 },
    #[error("{name} exists but is not a usable bookstore object ({reason}); if no market uses it, remove {path}")]
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
    #[error("cannot read this process's own identity: {0}")]
    Identity(#[source] ProcessError),
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

/// Creates the store, replacing a stale one (same owner, market dead) but never adopting or
/// removing a live market's object or another user's. The existing object is examined through
/// a read-only mapping.
pub fn create_store(spec: &StoreSpec) -> Result<SharedStore, StartError> {
    let name = &spec.name;
    let me = ProcessId::current().map_err(StartError::Identity)?;
    match SharedStore::create(name, spec.geometry, spec.mode, me) {
        Err(shm::CreateError::AlreadyExists(_)) => {}
        other => return other.map_err(Into::into),
    }
    let foreign = |reason: String| StartError::Foreign {
        name: name.clone(),
        reason,
        path: name.dev_shm_path().display().to_string(),
    };
    match StoreReader::open(name, shm::effective_uid()) {
        Ok(existing) => {
            let market = existing.market();
            match ProcessHandle::open(market) {
                Ok(_) => {
                    return Err(StartError::AlreadyRunning {
                        name: name.clone(),
                        pid: market.pid,
                    })
                }
                Err(ProcessError::Gone { .. } | ProcessError::Reused { .. }) => {
                    tracing::warn!(%name, pid = market.pid, "removing a stale store whose market is gone");
                }
                Err(e) => return Err(foreign(e.to_string())),
            }
        }
        Err(OpenStoreError::Open(shm::OpenError::WrongOwner { owner, .. })) => {
            return Err(StartError::OwnedByOther {
                name: name.clone(),
                owner,
            });
        }
        Err(e) => return Err(foreign(e.to_string())),
    }
    let _ = shm::unlink(name);
    Ok(SharedStore::create(name, spec.geometry, spec.mode, me)?)
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

/// Why no live market serves a name.
#[derive(Debug, thiserror::Error)]
pub enum NoLiveMarket {
    #[error(transparent)]
    Open(#[from] OpenStoreError),
    #[error("the market of {name} is not running ({source})")]
    NotRunning {
        name: ShmName,
        #[source]
        source: ProcessError,
    },
}

/// The live market serving `name` (a pidfd on it), or why there is none. The object is mapped
/// read-only: looking never writes.
pub fn live_market(name: &ShmName) -> Result<ProcessHandle, NoLiveMarket> {
    let store = StoreReader::open(name, shm::effective_uid())?;
    ProcessHandle::open(store.market()).map_err(|source| NoLiveMarket::NotRunning {
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

//! Who owns a client slot, and the handshakes around it, as one small protocol that the client,
//! the market and the loom models all call.
//!
//! ```text
//!            client: try_claim                    client: leave
//!   FREE ─────────────────────────▶ CLAIMED ──▶ ACTIVE ─────────────▶ LEAVING
//!    ▲                          (start time, then ACTIVE)                │
//!    └──────────────── market: release (after resetting the rings) ◀─────┘
//! ```
//! The state word packs the state with the claimant's pid, so one compare-exchange both wins
//! the slot and says who won it. Only a client moves a slot out of FREE; only the market moves
//! it back.

use crate::sync::{AtomicU32, AtomicU64, Ordering::*};

/// Slot states, the low half of [`SlotControl::state`]; the high half is the claimant's pid.
pub mod slot_state {
    /// Nobody holds the slot; its rings are empty.
    pub const FREE: u32 = 0;
    /// A client won the slot and is writing its identity.
    pub const CLAIMED: u32 = 1;
    /// The client is attached; the market serves its request ring.
    pub const ACTIVE: u32 = 2;
    /// The client detached; the market will release the slot.
    pub const LEAVING: u32 = 3;

    pub fn pack(state: u32, pid: u32) -> u64 {
        (u64::from(pid) << 32) | u64::from(state)
    }

    pub fn unpack(word: u64) -> (u32, u32) {
        (word as u32, (word >> 32) as u32)
    }

    pub fn name(state: u32) -> &'static str {
        match state {
            FREE => "free",
            CLAIMED => "claimed",
            ACTIVE => "active",
            LEAVING => "leaving",
            _ => "invalid",
        }
    }
}

#[repr(C, align(64))]
pub struct SlotControl {
    /// `pack(state, pid)`. Claimed by a client with a CAS from FREE; set back to FREE only by
    /// the market, after it has reset the rings.
    pub state: AtomicU64,
    /// The claimant's start time (see `shm::process`), written before ACTIVE (release).
    pub start_time: AtomicU64,
    /// The market's id for this client, written by the market when it accepts the slot.
    pub client_id: AtomicU64,
}

impl SlotControl {
    /// A free slot, for models and tests. In shared memory a slot is zeroed bytes.
    pub fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            start_time: AtomicU64::new(0),
            client_id: AtomicU64::new(0),
        }
    }

    /// Client: takes the slot if it is free and announces itself as attached.
    pub fn try_claim(&self, pid: u32, start_time: u64) -> bool {
        // Acquire on success: pairs with the market's release store of FREE in `release`, so
        // the ring resets it did before are visible before we touch the rings.
        let won = self.state.compare_exchange(
            slot_state::pack(slot_state::FREE, 0),
            slot_state::pack(slot_state::CLAIMED, pid),
            Acquire,
            Relaxed,
        );
        if won.is_err() {
            return false;
        }
        // Relaxed: published by the release store of ACTIVE just below.
        self.start_time.store(start_time, Relaxed);
        // Release: the market's acquire load in `observe` that sees ACTIVE sees our start time.
        self.state
            .store(slot_state::pack(slot_state::ACTIVE, pid), Release);
        true
    }

    /// Client: detaches. Everything the client wrote into the slot (its last requests) happens
    /// before the market sees LEAVING.
    pub fn leave(&self, pid: u32) {
        // Release: pairs with the market's acquire load in `observe`.
        self.state
            .store(slot_state::pack(slot_state::LEAVING, pid), Release);
    }

    /// Market (and `inspect`): the slot's state and claimant pid.
    pub fn observe(&self) -> (u32, u32) {
        // Acquire: pairs with the client's release stores of ACTIVE and LEAVING, so its start
        // time and everything it pushed before leaving are visible.
        slot_state::unpack(self.state.load(Acquire))
    }

    /// Market: the claimant's start time. Valid after `observe` returned ACTIVE or LEAVING
    /// (that acquire load orders this relaxed one).
    pub fn claimant_start_time(&self) -> u64 {
        self.start_time.load(Relaxed)
    }

    /// Market: records the id it gave the slot's client (informational: `inspect` shows it).
    pub fn set_client_id(&self, client: u64) {
        // Relaxed: nobody synchronises on it; `inspect` shows what it sees.
        self.client_id.store(client, Relaxed);
    }

    /// The id the market gave the slot's client, as last seen (for `inspect`).
    pub fn client_id(&self) -> u64 {
        // Relaxed: informational; nothing read after it depends on it.
        self.client_id.load(Relaxed)
    }

    /// Market: hands the slot back. The caller has reset the slot's rings already.
    pub fn release(&self) {
        // Relaxed: published to the next claimant by the release store of FREE below.
        self.client_id.store(0, Relaxed);
        self.start_time.store(0, Relaxed);
        // Release: the ring resets and the stores above happen before a new claimant's
        // acquire compare-exchange on FREE.
        self.state
            .store(slot_state::pack(slot_state::FREE, 0), Release);
    }
}

impl Default for SlotControl {
    fn default() -> Self {
        Self::new()
    }
}

/// The market's identity and readiness, as clients see them: the pid and start time of the
/// market process (for a pidfd), published before `state` says Ready.
pub struct MarketIdentity<'a> {
    pub state: &'a AtomicU32,
    pub pid: &'a AtomicU32,
    pub start_time: &'a AtomicU64,
}

impl MarketIdentity<'_> {
    /// Market: writes its identity, then makes it visible with the release store of `state`.
    pub fn publish(&self, pid: u32, start_time: u64, state: u32) {
        // Relaxed: nobody may trust these before the release store of `state`.
        self.pid.store(pid, Relaxed);
        self.start_time.store(start_time, Relaxed);
        self.set_state(state);
    }

    /// Market: a new state (Ready, Closing). Release: everything written before (the identity,
    /// the final view before Closing) is visible to a client that acquires the new state.
    pub fn set_state(&self, state: u32) {
        self.state.store(state, Release);
    }

    /// Client: the state, then the identity it publishes: `(state, pid, start_time)`.
    pub fn read(&self) -> (u32, u32, u64) {
        // Acquire on `state` first: pairs with `set_state`'s release store.
        let state = self.state.load(Acquire);
        (state, self.pid.load(Relaxed), self.start_time.load(Relaxed))
    }
}

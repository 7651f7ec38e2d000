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

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering::*};

/// A slot's state, the low half of [`SlotControl::state`]; the high half is the claimant's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Nobody holds the slot; its rings are empty.
    Free,
    /// A client won the slot and is writing its identity.
    Claimed,
    /// The client is attached; the market serves its request ring.
    Active,
    /// The client detached; the market will release the slot.
    Leaving,
    /// A value no protocol step writes (a scribbling process): the raw low half.
    Invalid(u32),
}

impl SlotState {
    const FREE: u32 = 0;
    const CLAIMED: u32 = 1;
    const ACTIVE: u32 = 2;
    const LEAVING: u32 = 3;

    fn raw(self) -> u32 {
        match self {
            SlotState::Free => Self::FREE,
            SlotState::Claimed => Self::CLAIMED,
            SlotState::Active => Self::ACTIVE,
            SlotState::Leaving => Self::LEAVING,
            SlotState::Invalid(raw) => raw,
        }
    }

    fn from_raw(raw: u32) -> Self {
        match raw {
            Self::FREE => SlotState::Free,
            Self::CLAIMED => SlotState::Claimed,
            Self::ACTIVE => SlotState::Active,
            Self::LEAVING => SlotState::Leaving,
            other => SlotState::Invalid(other),
        }
    }

    /// The state word this state has when `pid` holds the slot: what the protocol stores, and
    /// what a test writes to plant a slot in this state.
    pub fn word(self, pid: u32) -> u64 {
        (u64::from(pid) << 32) | u64::from(self.raw())
    }

    /// The state and pid a state word holds.
    pub fn from_word(word: u64) -> (SlotState, u32) {
        (Self::from_raw(word as u32), (word >> 32) as u32)
    }

    pub fn name(self) -> &'static str {
        match self {
            SlotState::Free => "free",
            SlotState::Claimed => "claimed",
            SlotState::Active => "active",
            SlotState::Leaving => "leaving",
            SlotState::Invalid(_) => "invalid",
        }
    }
}

/// On its own 128 bytes (a pair of lines): the client writes it when it claims and leaves, the
/// market when it accepts and releases, and neither drags a neighbour's line along.
#[repr(C, align(128))]
pub struct SlotControl {
    /// [`SlotState::word`]. Claimed by a client with a CAS from FREE; set back to FREE only by
    /// the market, after it has reset the rings.
    pub state: AtomicU64,
    /// The claimant's start time (see `shm::process`), written before ACTIVE (release).
    pub start_time: AtomicU64,
    /// The claimant's own 128-bit id (low word, high word), which it keeps across market
    /// restarts; written with the start time before ACTIVE (release). Any value may be there:
    /// the market validates it.
    pub client_id: [AtomicU64; 2],
    /// What the claimant says it is (an opaque word: the API layer gives it meaning and the
    /// market validates it), written with the start time before ACTIVE (release).
    pub label: AtomicU64,
}

impl SlotControl {
    /// A free slot, for models and tests. In shared memory a slot is zeroed bytes.
    pub fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            start_time: AtomicU64::new(0),
            client_id: [AtomicU64::new(0), AtomicU64::new(0)],
            label: AtomicU64::new(0),
        }
    }

    /// Client: takes the slot if it is free and announces itself as attached, saying what it
    /// is with `label` and who it is with `client_id`.
    pub fn try_claim(&self, pid: u32, start_time: u64, label: u64, client_id: u128) -> bool {
        // Acquire on success: pairs with the market's release store of FREE in `release`, so
        // the ring resets it did before are visible before we touch the rings.
        let won = self.state.compare_exchange(
            SlotState::Free.word(0),
            SlotState::Claimed.word(pid),
            Acquire,
            Relaxed,
        );
        if won.is_err() {
            return false;
        }
        // Relaxed, all four: published by the release store of ACTIVE just below, which the
        // market's `observe` acquires before it reads them.
        self.start_time.store(start_time, Relaxed);
        self.label.store(label, Relaxed);
        self.client_id[0].store(client_id as u64, Relaxed);
        self.client_id[1].store((client_id >> 64) as u64, Relaxed);
        // Release: the market's acquire load in `observe` that sees ACTIVE sees our start time,
        // label and id.
        self.state.store(SlotState::Active.word(pid), Release);
        true
    }

    /// Client: detaches. Everything the client wrote into the slot (its last requests) happens
    /// before the market sees LEAVING.
    pub fn leave(&self, pid: u32) {
        // Release: pairs with the market's acquire load in `observe`.
        self.state.store(SlotState::Leaving.word(pid), Release);
    }

    /// Market (and `inspect`): the slot's state and claimant pid.
    ///
    /// An acquire load written as a relaxed load and `fence(Acquire)`, so that it is also
    /// sound on a read-only mapping (`inspect`), where only relaxed atomic loads are allowed.
    pub fn observe(&self) -> (SlotState, u32) {
        let word = self.state.load(Relaxed);
        // Acquire fence: pairs with the client's release stores of ACTIVE and LEAVING, so its
        // start time and everything it pushed before leaving are visible to what we read next.
        fence(Acquire);
        SlotState::from_word(word)
    }

    /// Market: the claimant's start time. Valid after `observe` returned ACTIVE or LEAVING
    /// (that acquire load orders this relaxed one).
    pub fn claimant_start_time(&self) -> u64 {
        self.start_time.load(Relaxed)
    }

    /// Market: the label the claimant gave itself. Valid after `observe` returned ACTIVE or
    /// LEAVING (ordered like the start time); any word may be there, so the caller validates.
    pub fn claimant_label(&self) -> u64 {
        self.label.load(Relaxed)
    }

    /// Market (and `inspect`): the id the claimant gave itself. Valid after `observe`
    /// returned ACTIVE or LEAVING (ordered like the start time); any value may be there.
    pub fn claimant_client_id(&self) -> u128 {
        // Relaxed, both words: ordered after the claimant's stores by `observe`'s acquire of
        // ACTIVE; a scribbler may tear them, which only makes another id to validate.
        let low = self.client_id[0].load(Relaxed);
        let high = self.client_id[1].load(Relaxed);
        u128::from(high) << 64 | u128::from(low)
    }

    /// Market: hands the slot back. The caller has reset the slot's rings already.
    pub fn release(&self) {
        // Relaxed: published to the next claimant by the release store of FREE below.
        self.client_id[0].store(0, Relaxed);
        self.client_id[1].store(0, Relaxed);
        self.start_time.store(0, Relaxed);
        self.label.store(0, Relaxed);
        // Release: the ring resets and the stores above happen before a new claimant's
        // acquire compare-exchange on FREE.
        self.state.store(SlotState::Free.word(0), Release);
    }
}

impl Default for SlotControl {
    fn default() -> Self {
        Self::new()
    }
}

/// A server's lifecycle, as its identity publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ServerState {
    /// Writing its shared object; not serving yet.
    Initialising = 1,
    /// Serving.
    Ready = 2,
    /// Shutting down: its final view is published, it serves no more requests.
    Closing = 3,
    /// A standby: it follows another server's replicated log and publishes what it applied,
    /// serving nobody until it takes over (then `Ready`).
    Standby = 4,
}

impl ServerState {
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Initialising),
            2 => Some(Self::Ready),
            3 => Some(Self::Closing),
            4 => Some(Self::Standby),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Initialising => "initialising",
            Self::Ready => "ready",
            Self::Closing => "closing",
            Self::Standby => "standby",
        }
    }
}

/// What a reader saw of a server's identity: the raw state word (a scribbled one is kept, so
/// it can be reported) and the identity it publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentitySeen {
    pub raw_state: u32,
    pub pid: u32,
    pub start_time: u64,
}

impl IdentitySeen {
    pub fn state(&self) -> Option<ServerState> {
        ServerState::from_raw(self.raw_state)
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
    pub fn publish(&self, pid: u32, start_time: u64, state: ServerState) {
        // Relaxed: nobody may trust these before the release store of `state`.
        self.pid.store(pid, Relaxed);
        self.start_time.store(start_time, Relaxed);
        self.set_state(state);
    }

    /// Market: a new state (Ready, Closing). Release: everything written before (the identity,
    /// the final view before Closing) is visible to a client that acquires the new state.
    pub fn set_state(&self, state: ServerState) {
        self.state.store(state as u32, Release);
    }

    /// Client (or observer): the state, then the identity it publishes.
    ///
    /// The acquire is a relaxed load and `fence(Acquire)`, sound on a read-only mapping too.
    pub fn read(&self) -> IdentitySeen {
        let raw_state = self.state.load(Relaxed);
        // Acquire fence: pairs with `set_state`'s release store, so the pid and start time
        // read below are at least those published with the state we saw.
        fence(Acquire);
        IdentitySeen {
            raw_state,
            pid: self.pid.load(Relaxed),
            start_time: self.start_time.load(Relaxed),
        }
    }
}

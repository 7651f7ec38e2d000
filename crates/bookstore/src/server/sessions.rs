//! The market's side of the client slots: who is attached where, their ring ends, and the
//! replies that did not fit yet. It decides nothing about the books: what it observes (a client
//! joined, is leaving, was dropped) it returns, and the loop applies it to the ledger.

use std::collections::HashMap;

use bookstore_ipc::ring::{Consumer, Message, Producer};
use bookstore_ipc::sync::Ordering::Acquire;
use engine::ClientId;
use shm::process::{ProcessHandle, ProcessId};

use super::outbox::{Outbox, Queued};
use super::store::claimant_alive;
use crate::layout::{ClientRole, SlotState, REQUEST_RING_CAPACITY};
use crate::shared::SharedStore;
use crate::stats::WarningKind;
use crate::wire::Reply;

/// Most replies queued for one client that is not reading before it is dropped.
const BACKLOG_LIMIT: usize = 1 << 16;
/// Most replies queued for all clients together (32 MiB of 128-byte messages), so many slow
/// clients cannot make the market hold `slots × BACKLOG_LIMIT` messages (8 GiB at 1,024
/// slots). The client whose reply would pass it is dropped.
const MARKET_BACKLOG_LIMIT: usize = 1 << 18;

/// What a scan of the slot table found that the loop must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotChange {
    /// A client attached (accepted just now).
    Joined {
        client: ClientId,
        pid: u32,
        slot: u32,
        /// What the client says it is (its slot's label, validated).
        role: ClientRole,
    },
    /// An attached client detached: serve what it sent, then release the slot.
    Leaving { slot: u32 },
    /// An attached client's claimant died (its slot says CLAIMED again): release the slot.
    ClaimantGone { slot: u32 },
}

/// What popping a client's next request gave.
pub(super) enum Popped {
    Request(ClientId, Message),
    /// Nothing waiting (or the slot is not served: free or quarantined).
    Nothing,
}

/// A slot handed back, and the client that held it if the ledger must still forget it.
pub(super) struct Released {
    pub(super) client: ClientId,
    /// The client was not quarantined, so `ClientGone` has not been applied for it yet.
    pub(super) needs_gone: bool,
}

struct Attached<'s> {
    client: ClientId,
    process: ProcessHandle,
    requests: Consumer<'s, REQUEST_RING_CAPACITY>,
    /// Its replies, each shown once the journal is durable past it.
    outbox: Outbox<'s>,
    /// Set when the client broke the protocol: we stop reading its slot and release it once
    /// its process is gone.
    quarantined: bool,
}

pub(super) struct Sessions<'s> {
    store: &'s SharedStore,
    slots: Vec<Option<Attached<'s>>>,
    /// Client → slot, for routing replies (a lookup per reply): foldhash, as the engine's
    /// tables; it holds at most one entry per slot.
    slot_of: HashMap<ClientId, u32, foldhash::fast::RandomState>,
    /// Slots with a client, in slot order: the loop visits only these.
    attached: Vec<u32>,
    clients_served: u64,
    seen_epoch: u64,
    /// Clients quarantined since the last `take_dropped`: the ledger must apply `ClientGone`.
    dropped: Vec<ClientId>,
    /// Replies in all backlogs together.
    backlogged: usize,
    /// Warnings since the last `take_warnings`, for the market's statistics.
    warnings: Vec<WarningKind>,
    /// The largest journal offset a reply sent so far waits for, and how far the journal
    /// was durable when replies were last shown: while the first is ahead, a reply waits
    /// for the disk.
    newest_wait: u64,
    shown_durable: u64,
}

impl<'s> Sessions<'s> {
    pub(super) fn new(store: &'s SharedStore) -> Self {
        Self {
            store,
            slots: (0..store.slot_count()).map(|_| None).collect(),
            slot_of: HashMap::default(),
            attached: Vec::new(),
            clients_served: 0,
            seen_epoch: u64::MAX,
            dropped: Vec::new(),
            backlogged: 0,
            warnings: Vec::new(),
            newest_wait: 0,
            shown_durable: 0,
        }
    }

    pub(super) fn clients_served(&self) -> u64 {
        self.clients_served
    }

    /// How many slots have a client. With [`attached_slot`](Self::attached_slot), lets the
    /// loop visit them without copying the list on every pass (serving a slot never removes
    /// one from the list: only `release` does, and the loop releases outside that visit).
    pub(super) fn attached_count(&self) -> usize {
        self.attached.len()
    }

    /// The `i`th slot with a client, in slot order.
    pub(super) fn attached_slot(&self, i: usize) -> u32 {
        self.attached[i]
    }

    /// Whether a client changed its slot since the last look (the attach epoch moved).
    pub(super) fn epoch_moved(&mut self) -> bool {
        // Acquire: pairs with the client's release bump, so the slot states it changed before
        // bumping are visible to `scan`.
        let epoch = self.store.header().attach_epoch.0.load(Acquire);
        let moved = epoch != self.seen_epoch;
        self.seen_epoch = epoch;
        moved
    }

    /// Whether the market has anything to do: for the check after announcing a park.
    pub(super) fn has_work(&self) -> bool {
        // Acquire: pairs with a client's release bump after it changed its slot.
        self.store.header().attach_epoch.0.load(Acquire) != self.seen_epoch
            || self.attached.iter().any(|&index| self.has_request(index))
    }

    /// Looks for work up to `checks` times, pausing between looks (the spin loop's hint);
    /// true as soon as there is some. Reads nothing but the lines clients write.
    pub(super) fn wait_for_work(&self, checks: u32) -> bool {
        for _ in 0..checks {
            if self.has_work() {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Looks at every slot's state word: accepts new clients, frees slots whose claimant
    /// died, reports departures. Slots with invalid words are freed, or their client dropped.
    pub(super) fn scan(&mut self) -> Vec<SlotChange> {
        let mut changes = Vec::new();
        for index in 0..self.store.slot_count() {
            let control = &self.store.slot(index).control;
            // Orders the claimant's start time and last requests before what we read next.
            let (state, pid) = control.observe();
            let attached = self.slots[index as usize].is_some();
            match state {
                SlotState::Active if !attached => changes.extend(self.accept(index, pid)),
                SlotState::Active | SlotState::Free => {}
                SlotState::Claimed => {
                    // A claimant that died before activating leaves the slot claimed: free it.
                    if !claimant_alive(pid, control.claimant_start_time()) {
                        self.warnings.push(WarningKind::SlotReclaimed);
                        if attached {
                            changes.push(SlotChange::ClaimantGone { slot: index });
                        } else {
                            self.free(index);
                        }
                    }
                }
                SlotState::Leaving => {
                    // Requests sent before detaching are still the client's word: serve them,
                    // even if the client attached and left between two scans. (If it has
                    // exited already, `accept` frees the slot: nothing was acknowledged.)
                    if !attached {
                        changes.extend(self.accept(index, pid));
                    }
                    if self.slots[index as usize].is_some() {
                        changes.push(SlotChange::Leaving { slot: index });
                    }
                }
                SlotState::Invalid(_)
                    if self.slots[index as usize]
                        .as_ref()
                        .is_some_and(|a| a.quarantined) => {}
                SlotState::Invalid(raw) => {
                    tracing::warn!(slot = index, raw, "slot has an invalid state word");
                    if attached {
                        self.quarantine(index, "its slot state is invalid");
                    } else {
                        self.warnings.push(WarningKind::SlotReclaimed);
                        self.free(index);
                    }
                }
            }
        }
        changes
    }

    fn accept(&mut self, index: u32, pid: u32) -> Option<SlotChange> {
        let slot = self.store.slot(index);
        let id = ProcessId {
            pid,
            // Ordered by `scan`'s `observe` of ACTIVE or LEAVING.
            start_time: slot.control.claimant_start_time(),
        };
        // The id the client chose (ordered like the start time). Its first 64 bits are what
        // the statistics show, so they must not be 0; two slots may not share one.
        let client = ClientId(slot.control.claimant_client_id());
        let refusal = if client.short() == 0 {
            Some("its client id's first 64 bits are 0".to_owned())
        } else {
            self.slot_of
                .get(&client)
                .map(|other| format!("its client id {client} is slot {other}'s"))
        };
        let process = match (refusal, ProcessHandle::open(id)) {
            (None, Ok(p)) => p,
            (refusal, opened) => {
                let why = refusal
                    .unwrap_or_else(|| opened.err().map(|e| e.to_string()).unwrap_or_default());
                tracing::warn!(slot = index, pid, why, "not accepting the slot's claimant");
                self.warnings.push(WarningKind::ClaimantRefused);
                self.free(index);
                return None;
            }
        };
        self.clients_served += 1;
        self.slots[index as usize] = Some(Attached {
            client,
            process,
            requests: Consumer::new(&slot.requests),
            outbox: Outbox::new(Producer::new(&slot.replies)),
            quarantined: false,
        });
        self.slot_of.insert(client, index);
        if let Err(at) = self.attached.binary_search(&index) {
            self.attached.insert(at, index);
        }
        Some(SlotChange::Joined {
            client,
            pid,
            slot: index,
            // Ordered like the start time; an unknown word is `Other`.
            role: ClientRole::from_word(slot.control.claimant_label()),
        })
    }

    /// The slot's next request, if it has a served client with one waiting.
    pub(super) fn pop_request(&mut self, index: u32) -> Popped {
        let Some(attached) = self.slots[index as usize].as_mut() else {
            return Popped::Nothing;
        };
        if attached.quarantined {
            return Popped::Nothing;
        }
        match attached.requests.try_pop() {
            Ok(Some(message)) => Popped::Request(attached.client, message),
            Ok(None) => Popped::Nothing,
            Err(e) => {
                self.quarantine(index, &e.to_string());
                Popped::Nothing
            }
        }
    }

    /// Whether the slot's client has a request waiting (a served client: not quarantined).
    pub(super) fn has_request(&self, index: u32) -> bool {
        self.slots[index as usize]
            .as_ref()
            .is_some_and(|a| !a.quarantined && a.requests.shared().has_messages())
    }

    /// Sends a reply to a client, if it is still attached here, a trade's title as
    /// `title_id` if it has one; it is shown once the journal is durable up to `durable_at`
    /// (see [`show_durable`](Self::show_durable)).
    pub(super) fn send(
        &mut self,
        client: ClientId,
        reply: Reply,
        title_id: Option<u32>,
        durable_at: u64,
    ) {
        if let Some(&index) = self.slot_of.get(&client) {
            self.send_message(index, reply.encode_with(title_id), durable_at);
        }
    }

    /// Writes a reply into the slot's reply ring (or its backlog if the ring is full), to be
    /// shown once the journal is durable up to `durable_at`.
    pub(super) fn send_to_slot(&mut self, index: u32, reply: Reply, durable_at: u64) {
        self.send_message(index, reply.encode(), durable_at);
    }

    fn send_message(&mut self, index: u32, message: crate::layout::Message, durable_at: u64) {
        let Some(attached) = self.slots[index as usize].as_mut() else {
            return;
        };
        if attached.quarantined {
            return;
        }
        self.newest_wait = self.newest_wait.max(durable_at);
        match attached.outbox.send(message, durable_at) {
            Ok(Queued::Ring) => {}
            Ok(Queued::Backlog(len)) => {
                self.backlogged += 1;
                if len > BACKLOG_LIMIT {
                    self.drop_slow(index, "it stopped reading its replies");
                } else if self.backlogged > MARKET_BACKLOG_LIMIT {
                    self.drop_slow(index, "the market's reply backlog is full");
                }
            }
            Err(e) => self.quarantine(index, &e.to_string()),
        }
    }

    /// Shows every reply the journal is durable for (up to `durable`), moving backlogged
    /// replies into rings that have room, and rings each client's doorbell once however many
    /// replies it got. Returns whether any backlogged reply moved (work was done).
    pub(super) fn show_durable(&mut self, durable: u64) -> bool {
        self.shown_durable = durable;
        let mut moved = false;
        for i in 0..self.attached.len() {
            let index = self.attached[i];
            let Some(a) = self.slots[index as usize].as_mut() else {
                continue;
            };
            if a.quarantined {
                continue;
            }
            match a.outbox.show_durable(durable) {
                Ok(shown) => {
                    self.backlogged -= shown.moved;
                    moved |= shown.moved > 0;
                    if shown.published {
                        self.store.slot(index).doorbell.notify();
                    }
                }
                Err(e) => self.quarantine(index, &e.to_string()),
            }
        }
        moved
    }

    /// Whether a reply waits for the journal to reach the disk.
    pub(super) fn has_replies_waiting_for_disk(&self) -> bool {
        self.newest_wait > self.shown_durable
    }

    /// Slots whose client process has exited.
    pub(super) fn exited(&self) -> Vec<u32> {
        self.attached
            .iter()
            .copied()
            .filter(|&index| {
                self.slots[index as usize]
                    .as_ref()
                    .is_some_and(|a| a.process.has_exited())
            })
            .collect()
    }

    /// Stops serving a client that broke the protocol; the loop applies `ClientGone` for it
    /// (see [`take_dropped`](Self::take_dropped)). The slot is released once its process is
    /// gone (it might still be writing into it).
    fn quarantine(&mut self, index: u32, why: &str) {
        self.stop_serving(index, WarningKind::ClientQuarantined, why);
    }

    /// Stops serving a client that does not read its replies, as [`quarantine`] does.
    fn drop_slow(&mut self, index: u32, why: &str) {
        self.stop_serving(index, WarningKind::SlowClientDropped, why);
    }

    fn stop_serving(&mut self, index: u32, kind: WarningKind, why: &str) {
        let Some(a) = self.slots[index as usize].as_mut() else {
            return;
        };
        if a.quarantined {
            return;
        }
        a.quarantined = true;
        self.warnings.push(kind);
        self.backlogged -= a.outbox.clear_backlog();
        let client = a.client;
        tracing::warn!(%client, slot = index, why, "dropping client");
        self.slot_of.remove(&client);
        self.dropped.push(client);
    }

    /// Warnings since the last call, for the market's statistics.
    pub(super) fn take_warnings(&mut self) -> Vec<WarningKind> {
        std::mem::take(&mut self.warnings)
    }

    /// Clients dropped since the last call, for the loop to apply `ClientGone`.
    pub(super) fn take_dropped(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.dropped)
    }

    /// Forgets the slot's client, empties its rings and frees it. Returns the client it held.
    pub(super) fn release(&mut self, index: u32) -> Option<Released> {
        let released = self.slots[index as usize].take().map(|a| {
            self.attached.retain(|&i| i != index);
            self.backlogged -= a.outbox.backlog_len();
            if !a.quarantined {
                self.slot_of.remove(&a.client);
            }
            Released {
                client: a.client,
                needs_gone: !a.quarantined,
            }
        });
        self.free(index);
        released
    }

    /// Empties the slot's rings and hands it back to the next claimant.
    fn free(&mut self, index: u32) {
        let slot = self.store.slot(index);
        slot.requests.reset();
        slot.replies.reset();
        // Publishes the ring resets above to the next claimant.
        slot.control.release();
    }
}

//! The market: the only writer of the store's state. One thread runs one loop: accept clients,
//! drain their request rings, apply each request to the engine, route the events back, publish
//! the view, and park on the doorbell when there is nothing to do.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use engine::{ClientId, Command, Engine, Event, Trade};
use shm::process::{ProcessError, ProcessHandle, ProcessId};
use shm::{Mode, ShmName};

use crate::journal::{Durability, Journal, Recovery, WriteJournalError};
use crate::layout::{slot_state, Geometry, StoreState, MAX_CAPACITY, MAX_SLOTS};
use crate::shared::{OpenStoreError, SharedStore};
use crate::view::{Counters, Publisher};
use crate::wire::{Reply, Request};
use bookstore_ipc::ring::{Consumer, Producer, RingError};
use bookstore_ipc::sync::Ordering::{Acquire, Relaxed};

/// How the market runs.
#[derive(Debug, Clone)]
pub struct MarketConfig {
    pub name: ShmName,
    pub capacity: u32,
    pub slots: u32,
    pub mode: Mode,
    /// How long to spin looking for work before parking on the futex.
    pub spin: Duration,
    /// Print one line per trade and per client arrival/departure on stdout.
    pub verbose: bool,
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
            .set_state(StoreState::Closing as u32);
        for i in 0..self.store.slot_count() {
            self.store.slot(i).doorbell.ring();
        }
        let _ = shm::unlink(self.store.segment().name());
    }
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
/// removing a live market's object or another user's.
pub fn create_store(config: &MarketConfig) -> Result<SharedStore, StartError> {
    let geometry = checked_geometry(config.capacity, config.slots)?;
    let name = &config.name;
    match SharedStore::create(name, geometry, config.mode) {
        Err(shm::CreateError::AlreadyExists(_)) => {}
        other => return other.map_err(Into::into),
    }
    let foreign = |reason: String| StartError::Foreign {
        name: name.clone(),
        reason,
        path: name.dev_shm_path().display().to_string(),
    };
    match SharedStore::open(name, false, shm::effective_uid()) {
        Ok(existing) => {
            let h = existing.header();
            let market = h.market_process();
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
    Ok(SharedStore::create(name, geometry, config.mode)?)
}

/// Whether the process that claimed a slot still lives. Its start time is written right after
/// its claim; once there, the check is exact (pidfd and start time, so a reused pid does not
/// pass). Before that (a window of a few instructions) only the pid is known.
fn claimant_alive(pid: u32, start_time: u64) -> bool {
    if start_time == 0 {
        return std::path::Path::new(&format!("/proc/{pid}")).exists();
    }
    match ProcessHandle::open(ProcessId { pid, start_time }) {
        Ok(_) => true,
        Err(ProcessError::Gone { .. } | ProcessError::Reused { .. }) => false,
        // Cannot tell (e.g. out of file descriptors): keep the slot, look again next scan.
        Err(_) => true,
    }
}

/// What the market did, for its exit line.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub requests: u64,
    pub trades: u64,
    pub books_on_shelf: u32,
    pub clients_served: u64,
}

/// Most events queued for one client that is not reading before it is dropped.
const BACKLOG_LIMIT: usize = 1 << 16;
/// Requests taken from one client before moving to the next: fairness between clients.
const BATCH_PER_CLIENT: usize = 64;
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(50);
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// The view is republished at least this often even when nothing changed, so that a view
/// scribbled on by a buggy client heals by itself.
const REPUBLISH_EVERY: Duration = Duration::from_secs(1);

struct Attached<'s> {
    client: ClientId,
    process: ProcessHandle,
    requests: Consumer<'s, { crate::layout::RING_CAPACITY }>,
    events: Producer<'s, { crate::layout::RING_CAPACITY }>,
    /// Replies that did not fit in the event ring yet, oldest first.
    backlog: VecDeque<bookstore_ipc::ring::Message>,
    /// Set when the client broke the protocol: we stop reading its slot and release it once
    /// its process is gone.
    quarantined: bool,
}

/// The market's state and loop. Borrows the store so that ring handles can borrow it too.
pub struct Market<'s> {
    store: &'s SharedStore,
    config: MarketConfig,
    engine: Engine,
    journal: Journal,
    /// Set when the journal could not be written: the loop stops without acknowledging more.
    journal_failed: Option<WriteJournalError>,
    /// The market's clock at start: after the journal's last entry, so time never runs back.
    clock_base: u64,
    slots: Vec<Option<Attached<'s>>>,
    slot_of: HashMap<ClientId, u32>,
    next_client: u64,
    clients_served: u64,
    counters: Counters,
    publisher: Publisher,
    started: Instant,
    now: Instant,
    /// Slots with a client, in slot order: the loop visits only these.
    attached: Vec<u32>,
    events: Vec<Event>,
    unpublished_trades: Vec<Trade>,
    view_dirty: bool,
    last_publish: Instant,
    last_housekeeping: Instant,
    seen_epoch: u64,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl<'s> Market<'s> {
    /// A market over `store`, carrying on from what `journal` held (`recovery`).
    pub fn new(
        store: &'s SharedStore,
        config: MarketConfig,
        journal: Journal,
        recovery: Recovery,
    ) -> Self {
        let now = Instant::now();
        Self {
            store,
            engine: recovery.engine,
            journal,
            journal_failed: None,
            clock_base: recovery.last_now + 1,
            slots: (0..store.slot_count()).map(|_| None).collect(),
            slot_of: HashMap::new(),
            next_client: recovery.next_client,
            clients_served: 0,
            counters: Counters::default(),
            publisher: Publisher::new(),
            started: now,
            now,
            attached: Vec::new(),
            events: Vec::with_capacity(256),
            unpublished_trades: Vec::new(),
            view_dirty: true,
            last_publish: now,
            last_housekeeping: now,
            seen_epoch: u64::MAX,
            out: std::io::BufWriter::new(std::io::stdout()),
            config,
        }
    }

    /// The market's clock in milliseconds, as of the current pass (one clock read per pass).
    fn now_ms(&self) -> u64 {
        self.clock_base + self.now.duration_since(self.started).as_millis() as u64
    }

    /// Reads the clock; everything in one pass sees the same time.
    fn tick(&mut self) {
        self.now = Instant::now();
    }

    /// Serves until `stop` is set (by SIGINT/SIGTERM), then publishes the final view. Stops
    /// early, acknowledging nothing more, if the journal cannot be written.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<Summary, WriteJournalError> {
        self.publish();
        // Clients see Ready (and the first view) before they claim a slot.
        self.store
            .header()
            .identity()
            .set_state(StoreState::Ready as u32);
        let mut idle_since: Option<Instant> = None;
        // Relaxed: the flag carries no data; the signal handler only asks us to stop.
        while !stop.load(Relaxed) && self.journal_failed.is_none() {
            let worked = self.poll_once();
            self.housekeeping_if_due();
            if worked {
                idle_since = None;
                continue;
            }
            let idle = *idle_since.get_or_insert(self.now);
            if self.now.duration_since(idle) < self.config.spin {
                std::hint::spin_loop();
                continue;
            }
            if self.view_dirty {
                self.publish();
            }
            let _ = self.out.flush();
            let store = self.store;
            let slots = &self.slots;
            let seen_epoch = self.seen_epoch;
            store.header().doorbell.park(
                || {
                    // Acquire: pairs with a client's release bump after it changed its slot.
                    store.header().attach_epoch.0.load(Acquire) != seen_epoch
                        || slots
                            .iter()
                            .flatten()
                            .any(|a| !a.quarantined && a.requests.ring().has_messages())
                },
                Some(HOUSEKEEPING_EVERY),
            );
            idle_since = None;
        }
        self.publish();
        let _ = self.out.flush();
        if let Some(error) = self.journal_failed.take() {
            return Err(error);
        }
        let stats = self.engine.stats();
        Ok(Summary {
            requests: self.counters.requests,
            trades: stats.trades,
            books_on_shelf: stats.books_on_shelf,
            clients_served: self.clients_served,
        })
    }

    /// Writes the batch's journal records (group commit). True if everything applied so far
    /// is in the journal, so replies and the view may show it.
    fn commit_journal(&mut self) -> bool {
        if self.journal_failed.is_some() {
            return false;
        }
        match self.journal.commit() {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "stopping: the journal cannot be written");
                self.journal_failed = Some(error);
                false
            }
        }
    }

    /// One pass over everything; true if anything was done.
    fn poll_once(&mut self) -> bool {
        self.tick();
        // Acquire: pairs with the client's release bump, so the slot states it changed before
        // bumping are visible to `scan_slots`.
        let epoch = self.store.header().attach_epoch.0.load(Acquire);
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            self.scan_slots();
        }
        let mut worked = false;
        for i in 0..self.attached.len() {
            worked |= self.drain_requests(self.attached[i]);
        }
        worked |= self.flush_backlogs();
        self.publish_replies();
        if self.view_dirty && self.now.duration_since(self.last_publish) >= PUBLISH_EVERY {
            self.publish();
        }
        worked
    }

    fn drain_requests(&mut self, index: u32) -> bool {
        let mut taken = 0;
        while taken < BATCH_PER_CLIENT {
            let Some(attached) = self.slots[index as usize].as_mut() else {
                return taken > 0;
            };
            if attached.quarantined {
                return taken > 0;
            }
            let message = match attached.requests.try_pop() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    self.quarantine(index, &e.to_string());
                    break;
                }
            };
            taken += 1;
            let client = attached.client;
            self.handle(index, client, &message);
        }
        taken > 0
    }

    fn handle(&mut self, index: u32, client: ClientId, message: &bookstore_ipc::ring::Message) {
        let request = match Request::decode(message) {
            Ok(r) => r,
            Err(error) => {
                self.counters.malformed += 1;
                tracing::warn!(client = client.0, %error, "malformed request");
                let request = Request::raw_request_id(message);
                self.send(index, Reply::Malformed { request, error });
                return;
            }
        };
        self.counters.requests += 1;
        let now = self.now_ms();
        let command = match request {
            Request::List {
                request,
                title,
                price,
                qty,
            } => Command::List {
                client,
                request,
                title,
                price,
                qty,
            },
            Request::Buy {
                request,
                target,
                max_price,
                qty,
                timeout_ms,
            } => Command::Buy {
                client,
                request,
                target,
                max_price,
                qty,
                deadline: timeout_ms.map(|t| now + u64::from(t)),
            },
            Request::Cancel { request } => Command::Cancel { client, request },
        };
        self.apply(command);
    }

    /// Applies a command to the engine and stages its journal record, if it changed anything.
    /// The engine reports every change as an event, and a refusal (`Rejected`) changes
    /// nothing, so a command with no other event is left out: an idle market (its `Expire`
    /// every 50 ms) and a seller retrying on a full store write nothing.
    fn apply(&mut self, command: Command) {
        let now = self.now_ms();
        let mut events = std::mem::take(&mut self.events);
        let mark = self.journal.staged_len();
        self.journal.stage(now, &command);
        self.engine.apply(now, command, &mut events);
        let changed = events.iter().any(|e| !matches!(e, Event::Rejected { .. }));
        if !changed {
            self.journal.unstage(mark);
        } else if self.journal.durability() == Durability::Always {
            self.commit_journal();
        }
        for event in events.drain(..) {
            self.route(&event);
        }
        self.events = events;
        self.view_dirty = true;
    }

    fn route(&mut self, event: &Event) {
        match event {
            Event::Traded(t) => {
                if self.config.verbose {
                    let _ = writeln!(
                        self.out,
                        "trade #{}: {} × {:?} at {} (seller {}, buyer {})",
                        t.trade_id,
                        t.qty,
                        t.title.as_str(),
                        t.price,
                        t.seller.0,
                        t.buyer.0
                    );
                }
                self.unpublished_trades.push(t.clone());
            }
            Event::Rejected { .. } => self.counters.rejected += 1,
            _ => {}
        }
        let (first, second) = event.recipients();
        for client in std::iter::once(first).chain(second) {
            let Some(&index) = self.slot_of.get(&client) else {
                continue;
            };
            if let Some(reply) = Reply::for_client(event, client) {
                self.send(index, reply);
            }
        }
    }

    /// Writes a reply into the client's event ring (or its backlog if the ring is full). It
    /// becomes visible at the end of the pass, with the pass's other replies to that client.
    fn send(&mut self, index: u32, reply: Reply) {
        let Some(attached) = self.slots[index as usize].as_mut() else {
            return;
        };
        if attached.quarantined {
            return;
        }
        let message = reply.encode();
        if attached.backlog.is_empty() {
            match attached.events.try_write(&message) {
                Ok(()) => return,
                Err(RingError::Full) => {}
                Err(e @ RingError::Corrupt { .. }) => {
                    return self.quarantine(index, &e.to_string())
                }
            }
        }
        attached.backlog.push_back(message);
        if attached.backlog.len() > BACKLOG_LIMIT {
            self.quarantine(index, "it stopped reading its replies");
        }
    }

    /// Moves backlogged replies into event rings that have room again.
    fn flush_backlogs(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.attached.len() {
            let index = self.attached[i];
            let Some(a) = self.slots[index as usize].as_mut() else {
                continue;
            };
            while let Some(message) = a.backlog.front() {
                match a.events.try_write(message) {
                    Ok(()) => {
                        a.backlog.pop_front();
                        moved = true;
                    }
                    Err(RingError::Full) => break,
                    Err(e) => {
                        self.quarantine(index, &e.to_string());
                        break;
                    }
                }
            }
        }
        moved
    }

    /// Makes each client's replies of this pass visible with one store, and rings its doorbell
    /// once, however many replies it got.
    fn publish_replies(&mut self) {
        if !self.commit_journal() {
            return;
        }
        for &index in &self.attached {
            if let Some(a) = self.slots[index as usize].as_mut() {
                if a.events.publish() {
                    self.store.slot(index).doorbell.ring();
                }
            }
        }
    }

    /// Looks at every slot's state word: accepts new clients, releases departed ones.
    fn scan_slots(&mut self) {
        for index in 0..self.store.slot_count() {
            let control = &self.store.slot(index).control;
            // Orders the claimant's start time and last requests before what we read next.
            let (state, pid) = control.observe();
            let attached = self.slots[index as usize].is_some();
            match state {
                slot_state::ACTIVE if !attached => self.accept(index, pid),
                slot_state::ACTIVE | slot_state::FREE => {}
                slot_state::CLAIMED => {
                    // A claimant that died before activating leaves the slot claimed: free it.
                    if !claimant_alive(pid, control.claimant_start_time()) {
                        self.release(index, "claimant exited before attaching");
                    }
                }
                slot_state::LEAVING => {
                    // Requests sent before detaching are still the client's word: serve them,
                    // even if the client attached and left between two scans. (If it has
                    // exited already, `accept` frees the slot: nothing was acknowledged.)
                    if !attached {
                        self.accept(index, pid);
                    }
                    if self.slots[index as usize].is_some() {
                        while self.drain_requests(index) {}
                        self.release(index, "detached");
                    }
                }
                _ if self.slots[index as usize]
                    .as_ref()
                    .is_some_and(|a| a.quarantined) => {}
                _ => {
                    tracing::warn!(slot = index, state, "slot has an invalid state word");
                    if attached {
                        self.quarantine(index, "its slot state is invalid");
                    } else {
                        self.release(index, "invalid state word");
                    }
                }
            }
        }
    }

    fn accept(&mut self, index: u32, pid: u32) {
        let slot = self.store.slot(index);
        let id = ProcessId {
            pid,
            // Ordered by `scan_slots`' `observe` of ACTIVE or LEAVING.
            start_time: slot.control.claimant_start_time(),
        };
        let process = match ProcessHandle::open(id) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(slot = index, pid, error = %e, "not accepting the slot's claimant");
                return self.release(index, "claimant gone");
            }
        };
        let client = ClientId(self.next_client);
        self.next_client += 1;
        self.clients_served += 1;
        slot.control.set_client_id(client.0);
        self.slots[index as usize] = Some(Attached {
            client,
            process,
            requests: Consumer::new(&slot.requests),
            events: Producer::new(&slot.events),
            backlog: VecDeque::new(),
            quarantined: false,
        });
        self.slot_of.insert(client, index);
        if let Err(at) = self.attached.binary_search(&index) {
            self.attached.insert(at, index);
        }
        if self.config.verbose {
            let _ = writeln!(
                self.out,
                "client {} attached (pid {pid}, slot {index})",
                client.0
            );
        }
    }

    /// Stops serving a client that broke the protocol. Its resting buys are cancelled now;
    /// the slot is released once its process is gone (it might still be writing into it).
    fn quarantine(&mut self, index: u32, why: &str) {
        let Some(a) = self.slots[index as usize].as_mut() else {
            return;
        };
        if a.quarantined {
            return;
        }
        a.quarantined = true;
        a.backlog.clear();
        let client = a.client;
        tracing::warn!(client = client.0, slot = index, why, "dropping client");
        self.slot_of.remove(&client);
        self.apply(Command::ClientGone { client });
    }

    /// Forgets the slot's client (applying `ClientGone`), empties its rings and frees it.
    fn release(&mut self, index: u32, why: &str) {
        if let Some(a) = self.slots[index as usize].take() {
            self.attached.retain(|&i| i != index);
            if !a.quarantined {
                self.slot_of.remove(&a.client);
                self.apply(Command::ClientGone { client: a.client });
            }
            if self.config.verbose {
                let _ = writeln!(self.out, "client {} left ({why})", a.client.0);
            }
        }
        let slot = self.store.slot(index);
        slot.requests.reset();
        slot.events.reset();
        // Publishes the ring resets above to the next claimant.
        slot.control.release();
    }

    fn housekeeping_if_due(&mut self) {
        if self.last_housekeeping.elapsed() < HOUSEKEEPING_EVERY {
            return;
        }
        self.last_housekeeping = Instant::now();
        self.apply(Command::Expire);
        for index in 0..self.slots.len() {
            let exited = self.slots[index]
                .as_ref()
                .is_some_and(|a| a.process.has_exited());
            if exited {
                self.release(index as u32, "process exited");
            }
        }
        self.scan_slots();
        self.flush_backlogs();
        self.publish_replies();
        if self.now.duration_since(self.last_publish) >= REPUBLISH_EVERY {
            self.publish();
        }
    }

    fn publish(&mut self) {
        if !self.commit_journal() {
            return;
        }
        let stats = self.engine.stats();
        let shelf = self.engine.shelf();
        let now = self.now_ms();
        self.publisher.publish(
            self.store,
            &stats,
            &self.counters,
            &shelf,
            &self.unpublished_trades,
            now,
        );
        self.unpublished_trades.clear();
        self.view_dirty = false;
        self.last_publish = self.now;
    }
}

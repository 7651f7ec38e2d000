//! Attaching to a market and talking to it: claim a slot, push requests, wait for replies.

use std::time::{Duration, Instant};

use engine::{ClientId, RequestId};
use shm::process::{ProcessHandle, ProcessId};
use shm::ShmName;

pub use crate::layout::ClientRole;
use crate::layout::{StoreState, REPLY_RING_CAPACITY, REQUEST_RING_CAPACITY};
use crate::shared::{OpenStoreError, SharedStore};
use crate::titles::ClientTitles;
use crate::wire::{BadReply, Reply, Request};
use bookstore_ipc::doorbell::Guard;
use bookstore_ipc::ring::{Consumer, Producer, RingError};
use bookstore_ipc::sync::Ordering::Release;

/// How often a waiting client checks that its market is still alive when no thread of the
/// market guards its doorbell (with a guardian, the kernel wakes it when the market dies).
pub(crate) const LIVENESS_EVERY: Duration = Duration::from_millis(100);

/// How long to spin for a reply before parking when `spinners` threads or processes (the
/// market's included) spin at once: 50 µs if each has a core of its own, which spares the
/// market a wake-up per reply, and none if not, since a spinner would take the core from the
/// one it waits for (the threads lesson and the bench's throughput peers both measured that).
pub fn spin_for(spinners: usize) -> Duration {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if spinners > cores {
        Duration::ZERO
    } else {
        Duration::from_micros(50)
    }
}

/// Why a client could not attach.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no market is running on {name} (waited {waited:.1?}); start one with `bookstore market --name {name}`")]
    NoMarket { name: ShmName, waited: Duration },
    #[error("the market of {name} (pid {pid}) has exited; start a new one with `bookstore market --name {name}`")]
    MarketGone { name: ShmName, pid: u32 },
    #[error("{name} is a standby's store (pid {pid}, waited {waited:.1?}): it serves once its market's lease lapses and it takes over; to trade now, name the market's store (and this one with --standby)")]
    StandbyOnly {
        name: ShmName,
        pid: u32,
        waited: Duration,
    },
    #[error("all {slots} client slots of {name} are taken (waited {waited:.1?}); retry later, pass a longer --wait, or start the market with more --slots")]
    SlotsFull {
        name: ShmName,
        slots: u32,
        waited: Duration,
    },
    #[error(transparent)]
    Open(#[from] OpenStoreError),
    #[error("cannot read this process's own identity: {0}")]
    Identity(#[source] shm::process::ProcessError),
    #[error("cannot draw a random client id: {0}")]
    Random(#[source] std::io::Error),
}

/// A fresh client id: 128 random bits whose first 64 are not 0 (those are what the market's
/// statistics show, where 0 means "no client").
pub fn new_client_id() -> Result<ClientId, ConnectError> {
    loop {
        let id = ClientId(shm::random::random_u128().map_err(ConnectError::Random)?);
        if id.short() != 0 {
            return Ok(id);
        }
    }
}

/// Why a request could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the market (pid {pid}) exited")]
    MarketGone { pid: u32 },
    #[error("the market (pid {pid}) is shutting down")]
    MarketClosing { pid: u32 },
    #[error("the market stopped answering (no reply in {0:.1?})")]
    NoReply(Duration),
    #[error(transparent)]
    BadReply(#[from] BadReply),
    #[error("our slot's ring is corrupt: {0}")]
    Corrupt(RingError),
}

/// Opens `name`, waiting up to `wait` for a market to create it and become ready.
pub fn open_store(name: &ShmName, wait: Duration) -> Result<SharedStore, ConnectError> {
    open_any_store(std::slice::from_ref(name), wait)
}

/// Opens the first of `names` (a market's, then its standbys') whose market is ready,
/// looking at each in turn for up to `wait`: a client whose market is gone goes on with the
/// standby that took over. Errors are the first name's.
pub fn open_any_store(names: &[ShmName], wait: Duration) -> Result<SharedStore, ConnectError> {
    let started = Instant::now();
    loop {
        let mut first_reason = None;
        for (i, name) in names.iter().enumerate() {
            match try_open(name) {
                Ok(Some(store)) => return Ok(store),
                Ok(None) => {}
                Err(Retry(Some(ConnectError::StandbyOnly { name, pid, .. }))) if i == 0 => {
                    first_reason = Some(ConnectError::StandbyOnly {
                        name,
                        pid,
                        waited: started.elapsed(),
                    })
                }
                Err(Retry(reason)) if i == 0 => first_reason = reason,
                Err(Retry(_)) => {}
                Err(Fail(e)) if i == 0 => return Err(e),
                // A standby's store that cannot be opened is not this client's problem.
                Err(Fail(_)) => {}
            }
        }
        if started.elapsed() >= wait {
            return Err(first_reason.unwrap_or(ConnectError::NoMarket {
                name: names[0].clone(),
                waited: started.elapsed(),
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Why one look at a store did not find its market ready.
enum NotReady {
    /// Worth another look (with what to say if the wait ends).
    Retry(Option<ConnectError>),
    /// Not worth another.
    Fail(ConnectError),
}
use NotReady::{Fail, Retry};

/// One look at `name`: its store if its market is ready; `None` while there is no object
/// (or a standby's, or one still being made).
fn try_open(name: &ShmName) -> Result<Option<SharedStore>, NotReady> {
    let attempt = SharedStore::open(name);
    match attempt {
        Ok(store) => {
            let h = store.header();
            // The state is acquired before the identity it publishes (`MarketIdentity`).
            let seen = h.identity().read();
            let market = ProcessId {
                pid: seen.pid,
                start_time: seen.start_time,
            };
            let state = seen.state();
            match ProcessHandle::open(market) {
                Ok(_) if state == Some(StoreState::Ready) => Ok(Some(store)),
                Ok(_) if state == Some(StoreState::Standby) => {
                    Err(Retry(Some(ConnectError::StandbyOnly {
                        name: name.clone(),
                        pid: market.pid,
                        waited: Duration::ZERO,
                    })))
                }
                Ok(_) => Ok(None),
                Err(_) => Err(Retry(Some(ConnectError::MarketGone {
                    name: name.clone(),
                    pid: market.pid,
                }))),
            }
        }
        Err(OpenStoreError::Open(shm::OpenError::NotFound(_))) => Ok(None),
        // A market mid-creation has a short or blank header for a moment (another user's
        // too: then it is untrusted until its header names its live market).
        Err(
            e @ (OpenStoreError::Header { .. }
            | OpenStoreError::Untrusted { .. }
            | OpenStoreError::Open(shm::OpenError::TooSmall { .. })),
        ) => Err(Retry(Some(ConnectError::Open(e)))),
        Err(e) => Err(Fail(e.into())),
    }
}

/// An attached client: owns one slot until dropped.
pub struct Client<'s> {
    store: &'s SharedStore,
    slot: u32,
    pid: u32,
    id: ClientId,
    market: ProcessHandle,
    requests: Producer<'s, REQUEST_RING_CAPACITY>,
    replies: Consumer<'s, REPLY_RING_CAPACITY>,
    next_request: u64,
    spin: Duration,
    /// What this client has read of the market's title table: a title it holds is sent as
    /// its id, and the ids in replies are resolved from it.
    titles: ClientTitles<'s>,
}

impl<'s> Client<'s> {
    /// Claims a free slot under a fresh id and announces it to the market as a `role` (what
    /// `top` and `inspect` show). `spin` is how long to spin for a reply before parking on
    /// the futex.
    pub fn attach(
        store: &'s SharedStore,
        role: ClientRole,
        spin: Duration,
    ) -> Result<Self, ConnectError> {
        Self::attach_as(store, role, spin, new_client_id()?)
    }

    /// [`attach`](Self::attach) under the id `id`: a client that reattaches after its
    /// market restarted keeps its id, so it can [`Request::Ask`] what became of its orders.
    pub fn attach_as(
        store: &'s SharedStore,
        role: ClientRole,
        spin: Duration,
        id: ClientId,
    ) -> Result<Self, ConnectError> {
        let h = store.header();
        let name = store.segment().name().clone();
        // The header was validated in `open_store` already.
        let market_id = h.market_process();
        let market = ProcessHandle::open(market_id).map_err(|_| ConnectError::MarketGone {
            name: name.clone(),
            pid: market_id.pid,
        })?;
        let me = ProcessId::current().map_err(ConnectError::Identity)?;
        for index in 0..store.slot_count() {
            let slot = store.slot(index);
            // Claiming synchronises with the market's release of the slot (rings reset).
            if !slot
                .control
                .try_claim(me.pid, me.start_time, role.word(), id.0)
            {
                continue;
            }
            // Release: a market that sees the new epoch also sees our ACTIVE.
            h.attach_epoch.0.fetch_add(1, Release);
            h.doorbell.notify();
            return Ok(Self {
                store,
                slot: index,
                pid: me.pid,
                id,
                market,
                requests: Producer::new(&slot.requests),
                replies: Consumer::new(&slot.replies),
                next_request: 1,
                spin,
                titles: ClientTitles::new(store.title_table()),
            });
        }
        Err(ConnectError::SlotsFull {
            name,
            slots: store.slot_count(),
            waited: Duration::ZERO,
        })
    }

    /// [`attach_as`](Self::attach_as), retrying every 20 ms for up to `wait` while every
    /// slot is taken. Still fails at once if the market is gone.
    pub fn attach_waiting(
        store: &'s SharedStore,
        role: ClientRole,
        spin: Duration,
        wait: Duration,
        id: ClientId,
    ) -> Result<Self, ConnectError> {
        let started = Instant::now();
        loop {
            match Self::attach_as(store, role, spin, id) {
                Err(ConnectError::SlotsFull { .. }) if started.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(ConnectError::SlotsFull { name, slots, .. }) => {
                    return Err(ConnectError::SlotsFull {
                        name,
                        slots,
                        waited: started.elapsed(),
                    })
                }
                other => return other,
            }
        }
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The id this client attached under.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Makes the next [`next_request_id`](Self::next_request_id) at least `next`: a client
    /// that reattached under its id numbers its new orders after those it sent before.
    pub fn continue_requests_from(&mut self, next: RequestId) {
        self.next_request = self.next_request.max(next.0);
    }

    /// The store this client is attached to (for its published view).
    pub fn store(&self) -> &'s SharedStore {
        self.store
    }

    pub fn market_pid(&self) -> u32 {
        self.market.id().pid
    }

    /// A fresh request id, unique within this client.
    pub fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    /// Pushes a request and rings the market. Waits (parked on nothing: brief sleeps) while
    /// the request ring is full, which only happens when pipelining.
    pub fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        self.push(request)?;
        self.store.header().doorbell.notify();
        Ok(())
    }

    /// Pushes without ringing: for pipelines that ring once per batch with [`Self::notify_market`].
    pub fn push(&mut self, request: &Request) -> Result<(), ClientError> {
        let message = request.encode_with(&mut self.titles);
        self.push_raw(&message)
    }

    /// Sends a message exactly as given, valid or not, and rings the market. For tests and
    /// fuzzing of the market's validation: a real client sends [`Request`]s.
    pub fn send_raw(&mut self, message: &bookstore_ipc::ring::Message) -> Result<(), ClientError> {
        self.push_raw(message)?;
        self.notify_market();
        Ok(())
    }

    fn push_raw(&mut self, message: &bookstore_ipc::ring::Message) -> Result<(), ClientError> {
        let mut waited = 0u32;
        loop {
            match self.requests.try_push(message) {
                Ok(()) => return Ok(()),
                Err(RingError::Full) => {
                    self.store.header().doorbell.notify();
                    waited += 1;
                    if waited % 1024 == 0 {
                        self.check_market()?;
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(ClientError::Corrupt(e)),
            }
        }
    }

    /// Rings the market's doorbell (after [`Self::push`]).
    pub fn notify_market(&self) {
        self.store.header().doorbell.notify();
    }

    /// A reply if one is ready.
    pub fn try_recv(&mut self) -> Result<Option<Reply>, ClientError> {
        match self.replies.try_pop() {
            Ok(Some(m)) => Ok(Some(Reply::decode_with(&m, &mut self.titles)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(ClientError::Corrupt(e)),
        }
    }

    /// Waits for the next reply until `deadline` (`None`: forever), spinning first, then parked.
    /// Returns `Ok(None)` at the deadline. Notices when the market dies: at once, woken by the
    /// kernel (the market's alarm thread guards the doorbell, see `bookstore_ipc::doorbell`),
    /// or within ~100 ms if no thread of the market guards it.
    pub fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Reply>, ClientError> {
        // The clock is read only when the ring comes up empty, and then every 64 spins: a
        // reply that is already there (the second of a pair) costs no clock read at all.
        let mut spin_until: Option<Instant> = None;
        let mut spins = 0u32;
        loop {
            if let Some(reply) = self.try_recv()? {
                return Ok(Some(reply));
            }
            spins = spins.wrapping_add(1);
            if spin_until.is_some() && spins % 64 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            let spin_until = *spin_until.get_or_insert(now + self.spin);
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            if now < spin_until {
                std::hint::spin_loop();
                continue;
            }
            // Without a timeout of our own while the market's guardian thread guards our
            // doorbell (the kernel wakes us if it dies); every LIVENESS_EVERY without one.
            let timeout = deadline.map(|d| d - now);
            let replies = self.replies.shared();
            let guard = self.store.slot(self.slot).doorbell.park_guarded(
                || replies.has_messages(),
                timeout,
                LIVENESS_EVERY,
            );
            if !replies.has_messages() {
                if guard == Guard::Died {
                    // The market is dying (or stopping): wait for its process to end rather
                    // than for a ring, which will not come.
                    let wait = timeout.map_or(LIVENESS_EVERY, |t| t.min(LIVENESS_EVERY));
                    let _ = self.market.wait_exit(wait);
                }
                self.check_market()?;
            }
        }
    }

    /// The client's doorbell and reply ring, for another thread of this process to wait on
    /// while this one waits for something else (see [`ReplyBell`]).
    pub fn reply_bell(&self) -> ReplyBell<'s> {
        ReplyBell {
            doorbell: &self.store.slot(self.slot).doorbell,
            replies: self.replies.shared(),
        }
    }

    /// Fails if the market has exited or is closing.
    pub fn check_market(&self) -> Result<(), ClientError> {
        let pid = self.market.id().pid;
        if self.market.has_exited() {
            return Err(ClientError::MarketGone { pid });
        }
        // Acquired (in `read`): pairs with the market's release of Closing (after its final view).
        if self.store.header().identity().read().state() == Some(StoreState::Closing) {
            return Err(ClientError::MarketClosing { pid });
        }
        Ok(())
    }
}

/// A client's doorbell and reply ring, borrowed from the store (not from the client): a thread
/// of the client's process waits on it for a reply, or for the market's death, on behalf of a
/// client thread that waits for something else, such as a line of stdin (`bookstore seller`
/// without a command sleeps until a line, a sale notice or its market's end instead of looking
/// twenty times a second). One thread at a time may [`wait`](Self::wait), and meanwhile the
/// client neither reads its replies nor waits for them: a doorbell has one sleeper, and the
/// ring's read position is the client's.
#[derive(Clone, Copy)]
pub struct ReplyBell<'s> {
    doorbell: &'s bookstore_ipc::doorbell::Doorbell,
    replies: &'s bookstore_ipc::ring::Ring<REPLY_RING_CAPACITY>,
}

impl ReplyBell<'_> {
    /// Sleeps until a reply is ready, `stop()` holds (a [`ring`](Self::ring) makes the sleeper
    /// look again), or the market's guardian thread dies; without a guardian (an older market),
    /// at most [`LIVENESS_EVERY`]. Returns how the doorbell was guarded when the wait began:
    /// after anything but `Guard::Alive` the caller checks on the market
    /// ([`Client::check_market`]).
    pub fn wait(&self, stop: impl FnOnce() -> bool) -> Guard {
        let replies = self.replies;
        self.doorbell
            .park_guarded(|| replies.has_messages() || stop(), None, LIVENESS_EVERY)
    }

    /// Wakes the thread in [`wait`](Self::wait), if any, so it looks at `stop` again.
    pub fn ring(&self) {
        self.doorbell.wake_regardless();
    }
}

impl Drop for Client<'_> {
    /// Detaches: marks the slot LEAVING; the market cancels our resting buys, empties the
    /// rings and frees the slot.
    fn drop(&mut self) {
        let h = self.store.header();
        let slot = self.store.slot(self.slot);
        // Everything we wrote into the slot happens before the market sees LEAVING.
        slot.control.leave(self.pid);
        // Release: a market that sees the new epoch also sees our LEAVING.
        h.attach_epoch.0.fetch_add(1, Release);
        h.doorbell.notify();
    }
}

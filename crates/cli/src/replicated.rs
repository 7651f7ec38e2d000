//! A store whose journal is a NATS JetStream stream (`bookstore-replication`): `bookstore
//! market --durability replicated` and `bookstore standby` are one life with two starts.
//!
//! A market takes the stream's lease at once (waiting out one left by a crash); a standby
//! watches for it to lapse. Both then open their journal as the stream's copy (records past
//! the stream's end, never acknowledged, are cut; a journal whose records are not the
//! stream's is set aside: the stream is the truth), publish their store in state `standby`,
//! apply what the stream holds beyond their journal, and once the lease is theirs and they have
//! applied the whole stream, fence it (an empty message expecting the last sequence they
//! applied), journal a `Restart` and serve, publishing every batch to the stream.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bookstore::journal::{self, CapacityChoice, Durability, JournalOptions, OpenJournalError};
use bookstore::server::{
    checked_geometry, Followed, Market, OutgoingBatch, Replication, StoreGuard, Upstream,
    UpstreamBatch, UpstreamEvent,
};
use bookstore_replication::{
    Batch, IfNoStream, Lease, ReplicationError, Replicator, StoredBatch, StreamConfig,
    StreamFollower,
};
use engine::ClientId;

use crate::args::{ServeArgs, StreamArgs};
use crate::exit::Exit;
use crate::log;
use crate::market_cmd::{finish, loop_config, open_journal, report_recovery, say, Start};

/// How long NATS gets to answer at start and at the takeover.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// How a replicated store starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `market --durability replicated`: takes the lease now (or refuses), with the store's
    /// capacity if the stream is new (`--capacity`, else the journal's, else this default).
    Market {
        capacity: Option<u32>,
        default_capacity: u32,
    },
    /// `standby`: takes the lease when it lapses; the stream says the capacity.
    Standby,
}

/// What a replicated store is started with.
pub struct Replicated<'a> {
    pub role: Role,
    pub program: &'static str,
    pub name: &'a shm::ShmName,
    pub serve: &'a ServeArgs,
    pub stream: &'a StreamArgs,
    /// `--fresh`: the journal set aside, the stream applied from its start.
    pub fresh: bool,
}

/// The replicated store's life: start, follow, take over, serve. `Err` is a failure it said.
pub fn run(r: Replicated<'_>) -> Result<Exit, Exit> {
    let (program, name, quiet) = (r.program, r.name, r.serve.quiet);
    if r.stream.nats.is_empty() {
        eprintln!(
            "bookstore {program}: --nats URL[,URL…] is required: the NATS servers of the stream"
        );
        return Err(Exit::Usage);
    }
    if r.role == Role::Standby && r.stream.stream.is_none() {
        eprintln!(
            "bookstore standby: --stream NAME is required: the stream of the market to follow"
        );
        return Err(Exit::Usage);
    }
    let start = Start::prepare(program, name, r.serve)?;
    let lock = start.lock_name()?;
    let failed = |e: ReplicationError| {
        eprintln!("bookstore {program}: {e}");
        Exit::Error
    };
    let mut config = stream_config(r.stream, name, 0);
    let writer = bookstore_replication::new_writer_id();
    let ttl = r.stream.lease_ttl;
    // A market holds the lease before it reads the stream: nobody else writes meanwhile.
    let lease = match r.role {
        Role::Market { .. } => Some(take_lease(program, &config, ttl, &writer)?),
        Role::Standby => None,
    };
    let tail = match r.role {
        Role::Market { .. } => {
            bookstore_replication::last_message(&config, IfNoStream::Create, CONNECT_WAIT)
                .map_err(failed)?
        }
        Role::Standby => match wait_for_stream(&config, &start, quiet)? {
            Some(tail) => Some(tail),
            None => return Ok(Exit::Ok),
        },
    };
    let stream_end = tail.as_ref().map_or(0, |t| t.first_command + t.commands);
    let capacity = match (r.role, &tail) {
        (_, Some(tail)) => CapacityChoice::Exactly(tail.capacity),
        (
            Role::Market {
                capacity: Some(c), ..
            },
            None,
        ) => CapacityChoice::Exactly(c),
        (
            Role::Market {
                default_capacity, ..
            },
            None,
        ) => CapacityChoice::JournalsOr(default_capacity),
        (Role::Standby, None) => unreachable!("a standby waits for the stream's first message"),
    };
    if let Some(tail) = &tail {
        // The stream is another process's word: checked as any value from outside.
        if let Err(e) = checked_geometry(tail.capacity, r.serve.slots) {
            eprintln!("bookstore {program}: the stream's store: {e}");
            return Err(Exit::from(&e));
        }
    }
    if let (
        Role::Market {
            capacity: Some(asked),
            ..
        },
        Some(tail),
    ) = (r.role, &tail)
    {
        if asked != tail.capacity {
            eprintln!("bookstore {program}: capacity: the stream {} holds a store of capacity {}, not {asked}; start with --capacity {}", config.stream, tail.capacity, tail.capacity);
            return Err(Exit::Usage);
        }
    }
    let (journal, recovery) = open_as_copy(&start, r.fresh, capacity, stream_end, &config)?;
    if stream_end == 0 && journal.committed_records() > 0 {
        eprintln!("bookstore {program}: the stream {} is empty and the journal {} holds {} commands: replicating an existing journal is not built; start with --fresh (the journal is kept aside), or without --durability replicated", config.stream, journal.path().display(), journal.committed_records());
        return Err(Exit::Journal);
    }
    if !quiet {
        report_recovery(program, &recovery, journal.path());
    }
    config.capacity = recovery.capacity;
    let from = journal.committed_records();
    let lease = match lease {
        Some(lease) => lease,
        None => Lease::watch(&config, ttl, &writer).map_err(failed)?,
    };
    let follower = StreamFollower::start(&config, from, CONNECT_WAIT).map_err(failed)?;
    let store = start.create_store(&lock, config.capacity)?;
    // Removes the object on every way out of this function, panics included.
    let guard = StoreGuard::new(&store);
    let mut full_told: HashMap<ClientId, Instant> = HashMap::new();
    let mut market = Market::new(&store, loop_config(r.serve), journal, recovery);
    if !quiet {
        market = market.observe(|event| say(&mut full_told, event));
        if r.role == Role::Standby {
            tracing::info!(
                target: log::TARGET,
                "standby: following stream {} on {} from command {from}; taking over when its writer's lease is free ({:?} after its last renewal, or at once when it stops cleanly)",
                config.stream,
                config.servers.join(","),
                lease.ttl(),
            );
        }
    }
    let lease_ttl = lease.ttl();
    let mut upstream = NatsUpstream {
        applied: follower.start_sequence() - 1,
        config: config.clone(),
        follower,
        lease,
        catch_up_to: None,
    };
    let replicator = loop {
        match market.follow(&start.stop, &mut upstream) {
            Ok(Followed::TakeOver) => {}
            Ok(Followed::Stopped) => {
                if !quiet {
                    let end = market.journal_end().1;
                    tracing::info!(target: log::TARGET, "{program}: stopped, having applied commands 0 to {}; {name} removed", end.saturating_sub(1));
                }
                return Ok(Exit::Ok);
            }
            Err(e) => {
                eprintln!("bookstore {program}: stopped following the stream: {e}");
                return Err(Exit::Journal);
            }
        }
        let (end, _) = market.journal_end();
        match Replicator::start(&config, end, CONNECT_WAIT, &writer, Some(upstream.applied)) {
            Ok(replicator) => break replicator,
            Err(ReplicationError::Moved { .. }) => {
                // A deposed writer appended after we caught up: apply that first.
                tracing::info!(target: log::TARGET, "{program}: the stream grew while taking it over; applying the rest first");
                upstream.catch_up_to = None;
            }
            Err(e @ (ReplicationError::Connect { .. } | ReplicationError::Stream { .. })) => {
                // NATS does not answer (a quorum lost?): the lease is ours, so follow on
                // and try again.
                tracing::warn!(%e, "{program}: cannot fence the stream yet; trying again");
                std::thread::sleep(Duration::from_millis(200));
                upstream.catch_up_to = None;
            }
            Err(e) => return Err(failed(e)),
        }
    };
    let taken = market.take_over();
    if replicator.stream_commands() != taken.handed.1 {
        eprintln!(
            "bookstore {program}: the stream holds {} commands after its fence, this store {}: refusing to serve",
            replicator.stream_commands(),
            taken.handed.1
        );
        return Err(Exit::Journal);
    }
    if !quiet {
        say_serving(program, &config, &r, taken, lease_ttl);
    }
    let NatsUpstream { lease, .. } = upstream;
    let replication = NatsReplication { replicator, lease };
    market = market.replicate_to(Box::new(replication), taken.handed);
    let summary = market.run(&start.stop);
    drop(market);
    drop(guard);
    drop(lock);
    Ok(finish(program, name, summary, quiet))
}

/// Takes the stream's lease for a market, saying why it cannot.
fn take_lease(
    program: &str,
    config: &StreamConfig,
    ttl: Duration,
    writer: &str,
) -> Result<Lease, Exit> {
    // A lease left by a market that died lapses within its TTL (`take` waits that long).
    Lease::take(config, ttl, writer).map_err(|e| {
        let (hint, exit) = match e {
            ReplicationError::LeaseHeld { .. } => (
                " (a standby that took over, or another market, writes to it: follow it with `bookstore standby` instead)",
                Exit::AlreadyRunning,
            ),
            _ => ("", Exit::Error),
        };
        eprintln!("bookstore {program}: {e}{hint}");
        exit
    })
}

/// Opens the journal as the stream's copy: records past `stream_end` cut (never
/// acknowledged); a journal whose records are not the stream's, or of another capacity, or
/// unacknowledged past its live segment, set aside (the stream is the truth) and the stream
/// applied from its start.
fn open_as_copy(
    start: &Start<'_>,
    fresh: bool,
    capacity: CapacityChoice,
    stream_end: u64,
    config: &StreamConfig,
) -> Result<(journal::Journal, journal::Recovery), Exit> {
    let program = start.program;
    // An empty stream acknowledged nothing, and cuts nothing: a journal with records is then
    // refused by the caller, not emptied here.
    let stream_end = if stream_end == 0 {
        u64::MAX
    } else {
        stream_end
    };
    let mut options = JournalOptions {
        // The stream is the durable copy; the journal makes a restart fast.
        durability: Durability::None,
        capacity,
        start: if fresh {
            journal::Start::Fresh
        } else {
            journal::Start::Follow { stream_end }
        },
        segment_bytes: start.serve.journal_segment.0,
    };
    let path = &start.journal_path;
    let why_aside = match journal::Journal::open(path, &options) {
        Err(OpenJournalError::CapacityMismatch { .. }) => {
            "is of another store (its capacity is not the stream's)".to_owned()
        }
        Err(e @ OpenJournalError::Unreplicated { .. }) => e.to_string(),
        Err(e) => {
            eprintln!("bookstore {program}: {e}");
            return Err(Exit::from(&e));
        }
        Ok(opened) => {
            let (journal, _) = &opened;
            let records = journal.committed_records();
            if records == 0 || stream_end == u64::MAX || tail_agrees(journal, config, program)? {
                return Ok(opened);
            }
            "ends in records that are not the stream's".to_owned()
        }
    };
    tracing::warn!(
        target: log::TARGET,
        "the journal {} {why_aside}: the stream is the truth, so the journal is set aside (kept as PATH.UNIXTIME.old) and the stream applied from its start",
        path.display()
    );
    options.start = journal::Start::Fresh;
    open_journal(program, path, &options)
}

/// Waits until the stream exists and holds a message (a market's fence at least, which
/// carries the store's capacity), saying once that it waits. `None` if stopped meanwhile.
fn wait_for_stream(
    config: &StreamConfig,
    start: &Start<'_>,
    quiet: bool,
) -> Result<Option<StoredBatch>, Exit> {
    let mut told = false;
    // Relaxed: the flag carries no data.
    while !start.stop.load(std::sync::atomic::Ordering::Relaxed) {
        match bookstore_replication::last_message(config, IfNoStream::Refuse, CONNECT_WAIT) {
            Ok(Some(tail)) => return Ok(Some(tail)),
            Ok(None) | Err(ReplicationError::NoStream { .. }) => {
                if !told && !quiet {
                    tracing::info!(target: log::TARGET, "standby: waiting for a market to publish to stream {}", config.stream);
                }
                told = true;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                eprintln!("bookstore standby: {e}");
                return Err(Exit::Error);
            }
        }
    }
    Ok(None)
}

/// Whether the journal's last records are the stream's: the message holding the journal's
/// last command, compared record by record, byte for byte, where both hold it (the live
/// segment's records). A market deposed with batches the stream refused ends its journal in
/// records of its own where the stream holds the new writer's (records carry the command, its
/// client's 128-bit id where it has one, and its millisecond).
fn tail_agrees(
    journal: &journal::Journal,
    config: &StreamConfig,
    program: &str,
) -> Result<bool, Exit> {
    let last = journal.committed_records() - 1;
    let message = match bookstore_replication::message_holding(config, last, CONNECT_WAIT) {
        Ok(Some(message)) => message,
        Ok(None) => return Ok(false),
        Err(e) => {
            eprintln!("bookstore {program}: {e}");
            return Err(Exit::Error);
        }
    };
    let first = journal.live_segment_first();
    let ours = journal::format::split_records(journal.committed_bytes_since(0));
    let theirs = journal::format::split_records(&message.bytes);
    let agree = (message.first_command..=last)
        .zip(&theirs)
        .filter(|(command, _)| *command >= first)
        .all(|(command, record)| ours.get((command - first) as usize) == Some(record));
    Ok(agree)
}

fn say_serving(
    program: &str,
    config: &StreamConfig,
    r: &Replicated<'_>,
    taken: bookstore::server::TakenOver,
    lease_ttl: Duration,
) {
    let held = match taken.handed.1 {
        0 => "empty".to_owned(),
        n => format!("commands 0 to {}", n - 1),
    };
    let cancelled = match taken.cancelled_buys {
        0 => String::new(),
        n => format!("; the restart cancelled {n} resting buys of the previous market's clients"),
    };
    match r.role {
        Role::Market { .. } => tracing::info!(
            target: log::TARGET,
            "{program}: replicating to stream {} on {} (it holds {held}); replies wait for its acknowledgements; this market holds its lease ({:?}){cancelled}",
            config.stream,
            config.servers.join(","),
            lease_ttl,
        ),
        Role::Standby => tracing::info!(
            target: log::TARGET,
            "{program}: took stream {} over (it holds {held}; its writer's lease was free) and fenced it; serving {} as its market{cancelled}",
            config.stream,
            r.name,
        ),
    }
}

/// The stream `args` name for the store `name` (its name without the slash by default), for
/// a store of `capacity` books.
pub fn stream_config(args: &StreamArgs, name: &shm::ShmName, capacity: u32) -> StreamConfig {
    StreamConfig {
        servers: args.nats.clone(),
        stream: args
            .stream
            .clone()
            .unwrap_or_else(|| name.file_name().to_owned()),
        replicas: args.replicas.into(),
        capacity,
    }
}

/// The replicator and the stream's lease, as the market sees them.
struct NatsReplication {
    replicator: Replicator,
    lease: Lease,
}

impl Replication for NatsReplication {
    fn publish(&mut self, batch: OutgoingBatch) {
        self.replicator.publish(Batch {
            first_command: batch.first_command,
            commands: batch.commands,
            end: batch.end,
            bytes: batch.bytes,
        });
    }

    fn acked(&self) -> u64 {
        self.replicator.acked()
    }

    fn is_behind(&self) -> bool {
        self.replicator.is_behind()
    }

    fn take_failure(&mut self) -> Option<String> {
        self.replicator
            .take_failure()
            .or_else(|| self.lease.take_failure())
            .map(|e| e.to_string())
    }
}

/// The stream and its lease, as a following market sees them.
struct NatsUpstream {
    config: StreamConfig,
    follower: StreamFollower,
    lease: Lease,
    /// The sequence of the last message applied (or skipped as holding nothing new).
    applied: u64,
    /// Once the lease is held: the stream's last sequence then, to apply before taking over.
    catch_up_to: Option<u64>,
}

impl Upstream for NatsUpstream {
    fn next(&mut self, wait: Duration) -> UpstreamEvent {
        if let Some(failure) = self.lease.take_failure() {
            return UpstreamEvent::Failed(failure.to_string());
        }
        if self.lease.is_held() && self.catch_up_to.is_none() {
            match bookstore_replication::last_message(
                &self.config,
                IfNoStream::Refuse,
                CONNECT_WAIT,
            ) {
                Ok(last) => self.catch_up_to = Some(last.map_or(0, |m| m.sequence)),
                Err(e) => {
                    tracing::warn!(%e, "cannot read where the stream ends; trying again")
                }
            }
        }
        if self.catch_up_to.is_some_and(|end| self.applied >= end) {
            return UpstreamEvent::TakeOver;
        }
        match self.follower.next(wait) {
            Some(Ok(message)) => {
                self.applied = message.sequence;
                UpstreamEvent::Batch(UpstreamBatch {
                    first_command: message.first_command,
                    commands: message.commands,
                    capacity: message.capacity,
                    bytes: message.bytes,
                })
            }
            Some(Err(e)) => UpstreamEvent::Failed(e.to_string()),
            None => UpstreamEvent::Quiet,
        }
    }
}

//! `bookstore standby`: follow a replicated market's stream into a store of its own (state
//! `standby`: `inspect` reads it, clients wait), and take over when the market's lease lapses:
//! take the lease, apply the whole stream, fence it, and serve under its own name.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bookstore::journal::{self, CapacityChoice, Durability, JournalOptions};
use bookstore::server::{
    checked_geometry, Followed, Market, StoreGuard, Upstream, UpstreamBatch, UpstreamEvent,
};
use bookstore_replication::{
    Lease, ReplicationError, Replicator, StoredBatch, StreamConfig, StreamFollower,
};
use engine::ClientId;

use crate::args::StandbyArgs;
use crate::exit::Exit;
use crate::log;
use crate::market_cmd::{finish, loop_config, open_journal, report_recovery, say, Start};
use crate::replicated::{stream_config, NatsReplication};

const PROGRAM: &str = "standby";
/// How long NATS gets to answer at start and at the takeover.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

pub fn run(args: StandbyArgs) -> Exit {
    match follow_then_serve(args) {
        Ok(exit) | Err(exit) => exit,
    }
}

/// The standby's life: follow, take over, serve. `Err` is a failure it has said.
fn follow_then_serve(args: StandbyArgs) -> Result<Exit, Exit> {
    let name = args.store.name.clone();
    if args.stream.nats.is_empty() || args.stream.stream.is_none() {
        eprintln!("bookstore standby: --nats URL[,URL…] and --stream NAME are required: the stream of the market to follow");
        return Err(Exit::Usage);
    }
    let start = Start::prepare(PROGRAM, &name, &args.serve)?;
    let lock = start.lock_name()?;
    let mut config = stream_config(&args.stream, &name, 0);
    let Some(tail) = wait_for_stream(&config, &start, args.serve.quiet)? else {
        return Ok(Exit::Ok);
    };
    config.capacity = tail.capacity;
    let stream_end = tail.first_command + tail.commands;
    if let Err(e) = checked_geometry(config.capacity, args.serve.slots) {
        eprintln!("bookstore standby: the stream's store: {e}");
        return Err(Exit::from(&e));
    }
    let mut options = JournalOptions {
        // The stream is the durable copy; the journal makes a restart fast.
        durability: Durability::None,
        capacity: CapacityChoice::Exactly(config.capacity),
        start: if args.fresh {
            journal::Start::Fresh
        } else {
            journal::Start::Follow
        },
        segment_bytes: args.serve.journal_segment.0,
    };
    let (mut journal, mut recovery) = match journal::Journal::open(&start.journal_path, &options) {
        Err(journal::OpenJournalError::CapacityMismatch { .. }) => {
            // The stream is the truth: a journal of another store is set aside.
            say_set_aside(
                &start,
                "is of another store (its capacity is not the stream's)",
            );
            options.start = journal::Start::Fresh;
            open_journal(PROGRAM, &start.journal_path, &options)?
        }
        other => other.map_err(|e| {
            eprintln!("bookstore standby: {e}");
            Exit::from(&e)
        })?,
    };
    if journal.committed_records() > stream_end {
        // Commands the stream never acknowledged (this journal was a market's that was
        // deposed, or the stream was replaced): the stream is the truth.
        say_set_aside(
            &start,
            &format!(
                "holds {} commands, the stream {stream_end}",
                journal.committed_records()
            ),
        );
        drop(journal);
        options.start = journal::Start::Fresh;
        (journal, recovery) = open_journal(PROGRAM, &start.journal_path, &options)?;
    }
    if journal.committed_records() > 0 && !tail_agrees(&journal, &config)? {
        // Its last records are not the stream's: a market's, deposed with batches the stream
        // refused (the new writer's are there instead).
        say_set_aside(&start, "ends in records that are not the stream's");
        drop(journal);
        options.start = journal::Start::Fresh;
        (journal, recovery) = open_journal(PROGRAM, &start.journal_path, &options)?;
    }
    if !args.serve.quiet {
        report_recovery(PROGRAM, &recovery, journal.path());
    }
    let from = journal.committed_records();
    let writer = bookstore_replication::new_writer_id();
    let started = Lease::watch(&config, args.stream.lease_ttl, &writer).and_then(|lease| {
        let follower = StreamFollower::start(&config, from, CONNECT_WAIT)?;
        Ok((lease, follower))
    });
    let (lease, follower) = started.map_err(|e| {
        eprintln!("bookstore standby: {e}");
        Exit::Error
    })?;
    let store = start.create_store(&lock, config.capacity)?;
    // Removes the object on every way out of this function, panics included.
    let guard = StoreGuard::new(&store);
    let mut full_told: HashMap<ClientId, Instant> = HashMap::new();
    let mut market = Market::new(&store, loop_config(&args.serve), journal, recovery);
    if !args.serve.quiet {
        market = market.observe(|event| say(&mut full_told, event));
        tracing::info!(
            target: log::TARGET,
            "standby: following stream {} on {} from command {from}; taking over when its writer's lease lapses ({:?} unrenewed)",
            config.stream,
            config.servers.join(","),
            args.stream.lease_ttl,
        );
    }
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
                if !args.serve.quiet {
                    let end = market.journal_end().1;
                    tracing::info!(target: log::TARGET, "standby: stopped, having applied commands 0 to {}; {name} removed", end.saturating_sub(1));
                }
                return Ok(Exit::Ok);
            }
            Err(e) => {
                eprintln!("bookstore standby: stopped following: {e}");
                return Err(Exit::Journal);
            }
        }
        let (end, _) = market.journal_end();
        match Replicator::start(&config, end, CONNECT_WAIT, &writer, Some(upstream.applied)) {
            Ok(replicator) => break replicator,
            Err(ReplicationError::Moved { .. }) => {
                // The deposed writer appended after we caught up: apply that first.
                tracing::info!(target: log::TARGET, "standby: the stream grew while taking over; applying the rest first");
                upstream.catch_up_to = None;
            }
            Err(e @ (ReplicationError::Connect { .. } | ReplicationError::Stream { .. })) => {
                // NATS does not answer (a quorum lost?): the lease is ours, so follow on
                // and try again.
                tracing::warn!(%e, "standby: cannot fence the stream yet; trying again");
                std::thread::sleep(Duration::from_millis(200));
                upstream.catch_up_to = None;
            }
            Err(e) => {
                eprintln!("bookstore standby: cannot take the stream over: {e}");
                return Err(Exit::Error);
            }
        }
    };
    let taken = market.take_over();
    if replicator.stream_commands() != taken.handed.1 {
        eprintln!(
            "bookstore standby: the stream holds {} commands after its fence, this store {}: refusing to serve",
            replicator.stream_commands(),
            taken.handed.1
        );
        return Err(Exit::Journal);
    }
    if !args.serve.quiet {
        tracing::info!(
            target: log::TARGET,
            "standby: took stream {} over at command {} (its writer's lease lapsed) and fenced it; serving {name} as its market{}",
            config.stream,
            taken.handed.1,
            match taken.cancelled_buys {
                0 => String::new(),
                n => format!(" (the takeover cancelled {n} resting buys of the previous market's clients)"),
            }
        );
    }
    let NatsUpstream { lease, .. } = upstream;
    let replication = NatsReplication { replicator, lease };
    market = market.replicate_to(Box::new(replication), taken.handed);
    let summary = market.run(&start.stop);
    drop(market);
    drop(guard);
    drop(lock);
    Ok(finish(PROGRAM, &name, summary, args.serve.quiet))
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
        match bookstore_replication::last_message(config, CONNECT_WAIT) {
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
fn tail_agrees(journal: &journal::Journal, config: &StreamConfig) -> Result<bool, Exit> {
    let last = journal.committed_records() - 1;
    let message = match bookstore_replication::message_holding(config, last, CONNECT_WAIT) {
        Ok(Some(message)) => message,
        Ok(None) => return Ok(false),
        Err(e) => {
            eprintln!("bookstore standby: {e}");
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

fn say_set_aside(start: &Start<'_>, why: &str) {
    tracing::warn!(
        target: log::TARGET,
        "the journal {} {why}: the stream is the truth, so the journal is set aside (kept as PATH.UNIXTIME.old) and the stream followed from its start",
        start.journal_path.display()
    );
}

/// The stream and its lease, as the standby's market sees them.
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
            match bookstore_replication::last_message(&self.config, CONNECT_WAIT) {
                Ok(last) => self.catch_up_to = Some(last.map_or(0, |m| m.sequence)),
                Err(e) => {
                    tracing::warn!(%e, "standby: cannot read where the stream ends; trying again")
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

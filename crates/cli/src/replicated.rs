//! `--durability replicated`: the market's batches published to a NATS JetStream stream
//! (`bookstore-replication`), plugged into the market as its `Replication`.

use std::time::Duration;

use bookstore::journal::Journal;
use bookstore::server::{OutgoingBatch, Replication};
use bookstore_replication::{Batch, Lease, ReplicationError, Replicator, StreamConfig};

use crate::args::StreamArgs;

/// How long the market waits for NATS at start.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// The replicator and the stream's lease, as the market sees them.
pub struct NatsReplication {
    pub replicator: Replicator,
    pub lease: Lease,
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

/// Why the market cannot replicate to the stream it was given.
#[derive(Debug, thiserror::Error)]
pub enum StartReplicationError {
    #[error("--durability replicated needs --nats URL[,URL…]")]
    NoServers,
    #[error("{0}")]
    Replication(#[from] ReplicationError),
    #[error("stream {stream} ends at command {stream_end}, the journal at command {journal_end}: they disagree, and the stream is the truth; to carry on from it, run `bookstore standby` on this name (it follows the stream, setting a journal that went past it aside, and takes over), or give a new --stream")]
    Disagree {
        stream: String,
        stream_end: u64,
        journal_end: u64,
    },
}

/// Takes the stream's lease (waiting out one left by a market that died: up to the lease's
/// TTL and a second), connects to the stream and finds where the market's first batch
/// starts: the journal's committed end if the stream has every record, or where the journal
/// was before this start's `Restart` record (which then goes first). Anything else is
/// refused. The market's fence then keeps any earlier writer out.
pub fn start(
    config: &StreamConfig,
    lease_ttl: Duration,
    journal: &Journal,
) -> Result<(NatsReplication, (u64, u64)), StartReplicationError> {
    if config.servers.is_empty() {
        return Err(StartReplicationError::NoServers);
    }
    let writer = bookstore_replication::new_writer_id();
    let lease = Lease::take(
        config,
        lease_ttl,
        &writer,
        lease_ttl + Duration::from_secs(1),
    )?;
    let now = (journal.stage_mark(), journal.committed_records());
    let opened = journal.opened_at();
    let stream_end = bookstore_replication::stream_commands(config, CONNECT_WAIT)?;
    let handed = [now, opened]
        .into_iter()
        .find(|&(_, records)| records == stream_end)
        .ok_or(StartReplicationError::Disagree {
            stream: config.stream.clone(),
            stream_end,
            journal_end: now.1,
        })?;
    // Everything up to the start point counts as acknowledged.
    let replicator = Replicator::start(config, handed.0, CONNECT_WAIT, &writer, None)?;
    // Another writer appended between the two looks: refused the same way.
    if replicator.stream_commands() != stream_end {
        return Err(StartReplicationError::Disagree {
            stream: config.stream.clone(),
            stream_end: replicator.stream_commands(),
            journal_end: now.1,
        });
    }
    Ok((NatsReplication { replicator, lease }, handed))
}

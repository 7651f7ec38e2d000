//! `--durability replicated`: the market's batches published to a NATS JetStream stream
//! (`bookstore-replication`), plugged into the market as its `Replication`.

use std::time::Duration;

use bookstore::journal::Journal;
use bookstore::server::{OutgoingBatch, Replication};
use bookstore_replication::{Batch, ReplicationError, Replicator, StreamConfig};

/// How long the market waits for NATS at start.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// The replicator, as the market sees it.
pub struct NatsReplication(Replicator);

impl Replication for NatsReplication {
    fn publish(&mut self, batch: OutgoingBatch) {
        self.0.publish(Batch {
            first_command: batch.first_command,
            commands: batch.commands,
            end: batch.end,
            bytes: batch.bytes,
        });
    }

    fn acked(&self) -> u64 {
        self.0.acked()
    }

    fn is_behind(&self) -> bool {
        self.0.is_behind()
    }

    fn take_failure(&mut self) -> Option<String> {
        self.0.take_failure().map(|e| e.to_string())
    }
}

/// Why the market cannot replicate to the stream it was given.
#[derive(Debug, thiserror::Error)]
pub enum StartReplicationError {
    #[error("--durability replicated needs --nats URL[,URL…]")]
    NoServers,
    #[error("{0}")]
    Replication(#[from] ReplicationError),
    #[error("stream {stream} ends at command {stream_end}, the journal at command {journal_end}: they disagree, and reconciling them is not built yet; give a new --stream, or start with --fresh and a new --stream")]
    Disagree {
        stream: String,
        stream_end: u64,
        journal_end: u64,
    },
}

/// Connects to the stream and finds where the market's first batch starts: the journal's
/// committed end if the stream has every record, or where the journal was before this start's
/// `Restart` record (which then goes first). Anything else is refused.
pub fn start(
    config: &StreamConfig,
    journal: &Journal,
) -> Result<(NatsReplication, (u64, u64)), StartReplicationError> {
    if config.servers.is_empty() {
        return Err(StartReplicationError::NoServers);
    }
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
    let replicator = Replicator::start(config, handed.0, CONNECT_WAIT)?;
    // Another writer appended between the two looks: refused the same way (and it would
    // have been fenced at its first publish anyway).
    if replicator.stream_commands() != stream_end {
        return Err(StartReplicationError::Disagree {
            stream: config.stream.clone(),
            stream_end: replicator.stream_commands(),
            journal_end: now.1,
        });
    }
    Ok((NatsReplication(replicator), handed))
}

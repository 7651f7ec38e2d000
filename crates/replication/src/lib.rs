//! The market's journal carried on a NATS JetStream stream, so it survives the loss of the
//! machine (`--durability replicated`).
//!
//! Each batch the market's loop ends (the records it committed to its local journal) is
//! handed to a [`Replicator`], whose thread publishes it to the stream as one message: the
//! records' bytes exactly as the journal holds them, with the command number of the first one
//! in a header. Batches that queue up while a publish is in flight go out together in the next
//! message (group commit). Every publish carries the stream's expected last sequence, so two
//! writers can never interleave: one deposed while it was away gets "wrong last sequence" and
//! stops. A message id makes a retry after a lost acknowledgement safe (JetStream drops the
//! duplicate). A batch counts as replicated once JetStream acknowledged it, that is once a
//! majority of the stream's replicas stored it; the market shows no reply before that.
//!
//! A writer's first message is its fence: an empty message naming it, published expecting the
//! last sequence it knows, after which any earlier writer's publish is refused. The stream's
//! [`Lease`] (a key with a TTL in a JetStream key-value bucket) says which writer should be
//! writing; a standby reads the stream as it grows ([`StreamFollower`]), takes the lease once
//! it lapses, and fences the stream before it writes.
//!
//! The replicator knows bytes and offsets, not commands: the market says where each batch ends
//! in its journal, and [`Replicator::acked`] says how far the stream has acknowledged.
//!
//! Architecture invariant: only this crate knows NATS; the journal and the market see a
//! thread that makes offsets durable, as the journal's own syncing thread does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};

mod follow;
mod lease;
pub mod local_cluster;
mod reading;

pub use follow::StreamFollower;
pub use lease::Lease;
use reading::{connect, jetstream_context, retrying, runtime, stream_end};
pub use reading::{last_message, message_holding, read_stream, IfNoStream, StoredBatch};

/// The header holding the command number of a message's first record.
pub const FIRST_COMMAND_HEADER: &str = "Bookstore-First-Command";
/// The header holding how many records a message carries.
pub const COMMANDS_HEADER: &str = "Bookstore-Commands";
/// The header holding the store's capacity.
pub const CAPACITY_HEADER: &str = "Bookstore-Capacity";
/// The header naming the writer (a market's [`new_writer_id`]) that published a message.
pub const WRITER_HEADER: &str = "Bookstore-Writer";

/// A name for one writer of a stream, unique to this process: `HOST/PID/RANDOM`. It is in
/// every message the writer publishes and in their message ids, so two writers' messages are
/// never taken for duplicates of each other, and the lease says who holds it.
pub fn new_writer_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = match host.trim() {
        "" => "localhost",
        host => host,
    };
    format!("{host}/{}/{:08x}", std::process::id(), fastrand::u32(..))
}

/// Where the stream is and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// NATS server URLs (any of the cluster's).
    pub servers: Vec<String>,
    /// The stream's name; its one subject is `bookstore.NAME`.
    pub stream: String,
    /// Replicas of a stream this creates (an existing stream keeps its own).
    pub replicas: usize,
    /// The store's capacity, carried in every message (a replay needs it); 0 for a reader.
    pub capacity: u32,
}

impl StreamConfig {
    pub fn subject(&self) -> String {
        format!("bookstore.{}", self.stream)
    }

    /// A [`ReplicationError::Stream`] about this stream, saying `why`.
    pub(crate) fn error(&self, why: impl Into<String>) -> ReplicationError {
        ReplicationError::Stream {
            stream: self.stream.clone(),
            why: why.into(),
        }
    }
}

/// Why replication could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("replication: cannot reach NATS at {servers}: {why}")]
    Connect { servers: String, why: String },
    #[error("replication: stream {stream}: {why}")]
    Stream { stream: String, why: String },
    #[error("replication: there is no stream {stream}")]
    NoStream { stream: String },
    #[error("replication: stream {stream} has a writer other than this market (expected last sequence {expected}: {why}); stopping, acknowledging nothing more")]
    Fenced {
        stream: String,
        expected: u64,
        why: String,
    },
    #[error("replication: stream {stream} grew past message {expected} before this writer could fence it ({why}); there is more to apply first")]
    Moved {
        stream: String,
        expected: u64,
        why: String,
    },
    #[error("replication: stream {stream} is led by {holder}; its lease lapses when its holder stops renewing it (after the lease's TTL)")]
    LeaseHeld { stream: String, holder: String },
    #[error("replication: this market lost the lease of stream {stream} to {holder}: it is deposed; stopping, acknowledging nothing more")]
    Deposed { stream: String, holder: String },
    #[error("replication: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// A batch of journal records to replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The command number of its first record.
    pub first_command: u64,
    /// Records in it.
    pub commands: u64,
    /// Where it ends in the journal (journal-wide offsets, as `Journal::durable` has them).
    pub end: u64,
    /// The records, as the journal holds them.
    pub bytes: Vec<u8>,
}

/// What the loop and the replicating thread share.
struct Shared {
    /// Journal offset up to which the stream has acknowledged. Written by the thread (release,
    /// after the acknowledgement), read by the loop (acquire) before it shows replies.
    acked: AtomicU64,
    /// The error that stopped the thread.
    failure: Mutex<Option<ReplicationError>>,
    /// Set (release) by the handle's drop: publish what is left, but give up waiting for an
    /// unanswering stream after [`GIVE_UP_AFTER`].
    stopping: std::sync::atomic::AtomicBool,
}

/// How long a stopping replicator keeps retrying a stream that does not acknowledge.
const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// The thread that publishes batches to the stream, and its handle.
pub struct Replicator {
    shared: Arc<Shared>,
    batches: Option<tokio::sync::mpsc::UnboundedSender<Batch>>,
    thread: Option<JoinHandle<()>>,
    /// The largest batch end handed over.
    handed: u64,
    /// See [`stream_commands`](Self::stream_commands).
    stream_commands: u64,
}

impl Replicator {
    /// Connects (within `timeout`), creates the stream if it does not exist (file storage,
    /// `replicas` copies), fences it and starts the thread; `acked` is the journal offset up to
    /// which everything is already replicated (the market's start).
    ///
    /// The fence is an empty message naming `writer`, published with the stream's last
    /// sequence expected to be `after` (the last message a standby applied) or, without one,
    /// the last the stream has now: from then on a writer that appended before it is refused
    /// ("wrong last sequence") at its next publish. [`ReplicationError::Moved`] if the stream
    /// grew past `after` meanwhile: there is more to apply first.
    pub fn start(
        config: &StreamConfig,
        acked: u64,
        timeout: Duration,
        writer: &str,
        after: Option<u64>,
    ) -> Result<Self, ReplicationError> {
        let runtime = runtime()?;
        let (context, last_sequence, stream_commands) = runtime.block_on(async {
            let (context, last) = connect(config, timeout, IfNoStream::Create).await?;
            let expected = after.unwrap_or(last);
            let commands = stream_end(&context, config, expected).await?;
            let fenced = fence(&context, config, writer, expected, commands, timeout).await?;
            Ok::<_, ReplicationError>((context, fenced, commands))
        })?;
        let shared = Arc::new(Shared {
            acked: AtomicU64::new(acked),
            failure: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let theirs = shared.clone();
        let (stream, subject) = (config.stream.clone(), config.subject());
        let capacity = config.capacity;
        let writer = writer.to_owned();
        let thread = std::thread::Builder::new()
            .name("replicate".into())
            .spawn(move || {
                let publisher = Publisher {
                    context,
                    stream,
                    subject,
                    capacity,
                    writer,
                    last_sequence,
                    shared: theirs,
                };
                runtime.block_on(publisher.run(receiver));
            })
            .map_err(ReplicationError::Thread)?;
        Ok(Self {
            shared,
            batches: Some(sender),
            thread: Some(thread),
            handed: acked,
            stream_commands,
        })
    }

    /// The command number after the last record the stream held when this started: where
    /// the market's first batch must start.
    pub fn stream_commands(&self) -> u64 {
        self.stream_commands
    }

    /// Hands a batch over; returns at once. Batches must come in journal order.
    pub fn publish(&mut self, batch: Batch) {
        debug_assert!(batch.end >= self.handed, "batches in journal order");
        self.handed = batch.end;
        if let Some(batches) = &self.batches {
            // A stopped thread has said why (`take_failure`); nothing more is acknowledged.
            let _ = batches.send(batch);
        }
    }

    /// Journal offset up to which the stream has acknowledged every batch.
    pub fn acked(&self) -> u64 {
        // Acquire: pairs with the thread's release after the acknowledgement arrived.
        self.shared.acked.load(Ordering::Acquire)
    }

    /// Whether batches were handed over that the stream has not acknowledged yet.
    pub fn is_behind(&self) -> bool {
        self.acked() < self.handed
    }

    /// The error that stopped the thread, once.
    pub fn take_failure(&self) -> Option<ReplicationError> {
        lock(&self.shared.failure).take()
    }
}

impl Drop for Replicator {
    /// Publishes what was handed over (while the stream answers), then stops the thread.
    fn drop(&mut self) {
        // Release: pairs with the thread's acquire in its retry loop.
        self.shared.stopping.store(true, Ordering::Release);
        drop(self.batches.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Publishes `writer`'s fence: an empty message after message `expected` (see
/// [`Replicator::start`]). Returns its sequence.
async fn fence(
    context: &jetstream::Context,
    config: &StreamConfig,
    writer: &str,
    expected: u64,
    commands: u64,
    timeout: Duration,
) -> Result<u64, ReplicationError> {
    retrying(timeout, || async {
        let message = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::new())
            .message_id(format!("{writer}:fence"))
            .expected_last_sequence(expected)
            .header(FIRST_COMMAND_HEADER, commands.to_string())
            .header(COMMANDS_HEADER, "0")
            .header(CAPACITY_HEADER, config.capacity.to_string())
            .header(WRITER_HEADER, writer);
        let ack = context
            .send_publish(config.subject(), message)
            .await
            .map_err(|e| config.error(format!("fence: {e}")))?;
        match tokio::time::timeout(ACK_WAIT, std::future::IntoFuture::into_future(ack)).await {
            Ok(Ok(ack)) => Ok(ack.sequence),
            Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(ReplicationError::Moved {
                    stream: config.stream.clone(),
                    expected,
                    why: e.to_string(),
                })
            }
            Ok(Err(e)) => Err(config.error(format!("fence: {e}"))),
            Err(_) => Err(config.error(format!("fence: no acknowledgement within {ACK_WAIT:?}"))),
        }
    })
    .await
}

/// The thread's side: publishes batches in order, one message per group.
struct Publisher {
    context: jetstream::Context,
    stream: String,
    subject: String,
    capacity: u32,
    writer: String,
    /// The stream's last sequence, as this writer left it.
    last_sequence: u64,
    shared: Arc<Shared>,
}

/// How long a start waits out a stream that is temporarily unavailable.
pub(crate) const STREAM_WAIT: Duration = Duration::from_secs(10);

/// How long a publish waits for its acknowledgement before it is sent again.
const ACK_WAIT: Duration = Duration::from_secs(2);

impl Publisher {
    async fn run(mut self, mut batches: tokio::sync::mpsc::UnboundedReceiver<Batch>) {
        while let Some(mut group) = batches.recv().await {
            // Whatever queued up meanwhile goes out in the same message.
            while let Ok(next) = batches.try_recv() {
                group.bytes.extend_from_slice(&next.bytes);
                group.commands += next.commands;
                group.end = next.end;
            }
            if let Err(error) = self.publish(group).await {
                tracing::error!(%error, "replication stopped");
                *lock(&self.shared.failure) = Some(error);
                return;
            }
        }
    }

    /// Publishes one group until the stream acknowledges it; a lost connection or a quorum
    /// lost is waited out (said once), a fence is the end.
    async fn publish(&mut self, group: Batch) -> Result<(), ReplicationError> {
        let payload = bytes::Bytes::from(group.bytes);
        // The id names the writer and the commands it carries: a retry after a lost
        // acknowledgement is the same message, which JetStream recognises and drops; another
        // writer's message for the same commands is not.
        let id = format!("{}:{}+{}", self.writer, group.first_command, group.commands);
        let mut waiting_since: Option<std::time::Instant> = None;
        loop {
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(&id)
                .expected_last_sequence(self.last_sequence)
                .header(FIRST_COMMAND_HEADER, group.first_command.to_string())
                .header(COMMANDS_HEADER, group.commands.to_string())
                .header(CAPACITY_HEADER, self.capacity.to_string())
                .header(WRITER_HEADER, self.writer.as_str());
            let sent = self
                .context
                .send_publish(self.subject.clone(), message)
                .await;
            let acked = match sent {
                Ok(future) => {
                    tokio::time::timeout(ACK_WAIT, std::future::IntoFuture::into_future(future))
                        .await
                }
                Err(error) => Ok(Err(error)),
            };
            match acked {
                Ok(Ok(ack)) => {
                    self.last_sequence = ack.sequence;
                    // Release: whoever acquires `acked` acts after the stream stored the batch.
                    self.shared.acked.store(group.end, Ordering::Release);
                    if let Some(since) = waiting_since {
                        tracing::warn!(
                            waited_ms = since.elapsed().as_millis() as u64,
                            "replication: the stream acknowledges again; replies resume"
                        );
                    }
                    return Ok(());
                }
                Ok(Err(error)) if error.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(ReplicationError::Fenced {
                        stream: self.stream.clone(),
                        expected: self.last_sequence,
                        why: error.to_string(),
                    });
                }
                other => {
                    let why = match other {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("no acknowledgement within {ACK_WAIT:?}"),
                    };
                    let since = *waiting_since.get_or_insert_with(|| {
                        tracing::warn!(%why, stream = %self.stream, "replication: the stream does not acknowledge (a quorum of its servers lost?); holding replies and retrying");
                        std::time::Instant::now()
                    });
                    if self.shared.stopping.load(Ordering::Acquire)
                        && since.elapsed() > GIVE_UP_AFTER
                    {
                        return Err(ReplicationError::Stream {
                            stream: self.stream.clone(),
                            why: format!("stopping with commands {} on unacknowledged ({why}); they are in the local journal, not in the stream", group.first_command),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

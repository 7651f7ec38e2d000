//! Following a stream as a standby does: every message from the one holding a given command
//! on, in order, as the writer publishes them (a JetStream ordered consumer, which recreates
//! itself after a lost connection and never skips or repeats a message).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

use crate::reading::{connect, first_sequence_after, runtime, stored_batch, IfNoStream};
use crate::{ReplicationError, StoredBatch, StreamConfig};

/// The thread that reads the stream, and its handle.
pub struct StreamFollower {
    /// The sequence of the first message it reads.
    start: u64,
    messages: mpsc::Receiver<Result<StoredBatch, ReplicationError>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StreamFollower {
    /// Starts reading `config`'s stream from the first message holding command `from` or a
    /// later one (the first record the reader lacks), within `timeout` to connect.
    pub fn start(
        config: &StreamConfig,
        from: u64,
        timeout: Duration,
    ) -> Result<Self, ReplicationError> {
        let runtime = runtime()?;
        let (context, start) = runtime.block_on(async {
            let (context, last) = connect(config, timeout, IfNoStream::Create).await?;
            let start = first_sequence_after(&context, config, from, last, timeout).await?;
            Ok::<_, ReplicationError>((context, start))
        })?;
        let (sender, messages) = mpsc::sync_channel(QUEUED);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("follow".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        _ = stopped => {}
                        () = follow(&context, &config, start, &sender) => {}
                    }
                });
            })
            .map_err(ReplicationError::Thread)?;
        Ok(Self {
            start,
            messages,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The sequence of the first message it reads: those before it hold nothing the reader
    /// lacks.
    pub fn start_sequence(&self) -> u64 {
        self.start
    }

    /// The next message, waiting up to `wait`; `None` if none came. After an error nothing
    /// more comes.
    pub fn next(&self, wait: Duration) -> Option<Result<StoredBatch, ReplicationError>> {
        self.messages.recv_timeout(wait).ok()
    }
}

impl Drop for StreamFollower {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends every message from sequence `start` on, until the receiver is gone or the stream
/// cannot be read.
async fn follow(
    context: &jetstream::Context,
    config: &StreamConfig,
    start: u64,
    sender: &mpsc::SyncSender<Result<StoredBatch, ReplicationError>>,
) {
    let messages = async {
        let stream = context
            .get_stream(&config.stream)
            .await
            .map_err(|e| config.error(e.to_string()))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: config.subject(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| config.error(format!("cannot follow: {e}")))?;
        consumer
            .messages()
            .await
            .map_err(|e| config.error(format!("cannot follow: {e}")))
    };
    let mut messages = match messages.await {
        Ok(messages) => messages,
        Err(e) => {
            let _ = send(sender, Err(e)).await;
            return;
        }
    };
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            // The ordered consumer recreates itself (from the next sequence) after a missed
            // heartbeat or a lost connection; the error is only news.
            Err(e) => {
                tracing::debug!(error = %e, "follow: the consumer recovers");
                continue;
            }
        };
        let sequence = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                let _ = send(
                    sender,
                    Err(config.error(format!("a message without its metadata: {e}"))),
                )
                .await;
                return;
            }
        };
        let headers = message.headers.clone().unwrap_or_default();
        let batch = stored_batch(config, sequence, &headers, &message.payload);
        let failed = batch.is_err();
        if !send(sender, batch).await || failed {
            return;
        }
    }
}

/// Messages read and not yet taken: a standby catching up on a long stream reads no further
/// ahead than this.
const QUEUED: usize = 1024;

/// Queues `item` for the reader, waiting (without blocking the runtime's thread, which keeps
/// the connection alive) while the queue is full. False once the reader is gone.
async fn send(
    sender: &mpsc::SyncSender<Result<StoredBatch, ReplicationError>>,
    mut item: Result<StoredBatch, ReplicationError>,
) -> bool {
    loop {
        match sender.try_send(item) {
            Ok(()) => return true,
            Err(mpsc::TrySendError::Full(back)) => {
                item = back;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return false,
        }
    }
}

//! Connecting to the stream and reading it: the connection, the stream's end, one message
//! with its headers checked, and the whole stream (for tools and checks).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::{
    ReplicationError, StreamConfig, CAPACITY_HEADER, COMMANDS_HEADER, FIRST_COMMAND_HEADER,
    WRITER_HEADER,
};

/// What reading a stream that does not exist does: a writer creates it, a reader refuses
/// with [`ReplicationError::NoStream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfNoStream {
    Create,
    Refuse,
}

/// Connects and finds the stream (creating it if asked); returns its last sequence.
pub(crate) async fn connect(
    config: &StreamConfig,
    timeout: Duration,
    if_missing: IfNoStream,
) -> Result<(jetstream::Context, u64), ReplicationError> {
    let context = jetstream_context(config, timeout).await?;
    let last_sequence = last_sequence(&context, config, timeout, if_missing).await?;
    Ok((context, last_sequence))
}

/// A connection to the NATS servers `config` names, within `timeout`.
pub(crate) async fn jetstream_context(
    config: &StreamConfig,
    timeout: Duration,
) -> Result<jetstream::Context, ReplicationError> {
    let servers = config.servers.join(",");
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .name("bookstore market");
    let client = tokio::time::timeout(timeout, client.connect(config.servers.as_slice()))
        .await
        .map_err(|_| ReplicationError::Connect {
            servers: servers.clone(),
            why: format!("no answer within {timeout:?}"),
        })?
        .map_err(|e| ReplicationError::Connect {
            servers: servers.clone(),
            why: e.to_string(),
        })?;
    Ok(jetstream::new(client))
}

/// The stream's last sequence (0 when it is empty); the stream is created first if missing
/// and asked to.
pub(crate) async fn last_sequence(
    context: &jetstream::Context,
    config: &StreamConfig,
    timeout: Duration,
    if_missing: IfNoStream,
) -> Result<u64, ReplicationError> {
    let wanted = stream::Config {
        name: config.stream.clone(),
        subjects: vec![config.subject()],
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    };
    retrying(timeout, || async {
        let mut stream = match if_missing {
            IfNoStream::Create => {
                tokio::time::timeout(timeout, context.get_or_create_stream(wanted.clone()))
                    .await
                    .map_err(|_| config.error(format!("no answer within {timeout:?}")))?
                    .map_err(|e| config.error(e.to_string()))?
            }
            IfNoStream::Refuse => context
                .get_stream(&config.stream)
                .await
                .map_err(|e| match e.kind() {
                    jetstream::context::GetStreamErrorKind::JetStream(js)
                        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        ReplicationError::NoStream {
                            stream: config.stream.clone(),
                        }
                    }
                    _ => config.error(e.to_string()),
                })?,
        };
        let info = stream
            .info()
            .await
            .map_err(|e| config.error(e.to_string()))?;
        Ok(info.state.last_sequence)
    })
    .await
}

/// The command number after the last record the stream holds (0 for an empty stream), from
/// its last message's headers.
pub(crate) async fn stream_end(
    context: &jetstream::Context,
    config: &StreamConfig,
    last_sequence: u64,
) -> Result<u64, ReplicationError> {
    if last_sequence == 0 {
        return Ok(0);
    }
    let last = retrying(crate::STREAM_WAIT, || {
        message_at(context, config, last_sequence)
    })
    .await?;
    Ok(last.first_command + last.commands)
}

/// Message `sequence` of the stream, its headers checked.
pub(crate) async fn message_at(
    context: &jetstream::Context,
    config: &StreamConfig,
    sequence: u64,
) -> Result<StoredBatch, ReplicationError> {
    let stream = context
        .get_stream(&config.stream)
        .await
        .map_err(|e| config.error(e.to_string()))?;
    let message = stream
        .get_raw_message(sequence)
        .await
        .map_err(|e| config.error(format!("message {sequence}: {e}")))?;
    stored_batch(config, sequence, &message.headers, &message.payload)
}

/// A message's headers checked: what it says it carries, and its bytes.
pub(crate) fn stored_batch(
    config: &StreamConfig,
    sequence: u64,
    headers: &async_nats::HeaderMap,
    payload: &[u8],
) -> Result<StoredBatch, ReplicationError> {
    let header = |name: &str| -> Result<u64, ReplicationError> {
        headers
            .get(name)
            .and_then(|v| v.as_str().parse().ok())
            .ok_or_else(|| {
                config.error(format!(
                    "message {sequence}: no valid {name} header: not a bookstore stream"
                ))
            })
    };
    Ok(StoredBatch {
        sequence,
        first_command: header(FIRST_COMMAND_HEADER)?,
        commands: header(COMMANDS_HEADER)?,
        capacity: u32::try_from(header(CAPACITY_HEADER)?)
            .map_err(|_| config.error(format!("message {sequence}: capacity out of range")))?,
        writer: headers.get(WRITER_HEADER).map(|v| v.as_str().to_owned()),
        bytes: payload.to_vec(),
    })
}

/// `attempt`, again every 200 ms while it fails with a stream error (JetStream answers 503
/// "temporarily unavailable" while a cluster elects its leaders), until `timeout`.
pub(crate) async fn retrying<T, Fut>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, ReplicationError>
where
    Fut: std::future::Future<Output = Result<T, ReplicationError>>,
{
    let started = std::time::Instant::now();
    loop {
        match attempt().await {
            Err(ReplicationError::Stream { .. }) if started.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            done => return done,
        }
    }
}

/// A runtime for one blocking call from a synchronous caller.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ReplicationError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ReplicationError::Thread)
}

/// The last message of the stream `config` names, if it has one (a stream that does not exist
/// is created or refused, as `if_missing` says): where a market or standby stands, and the
/// store's capacity.
pub fn last_message(
    config: &StreamConfig,
    if_missing: IfNoStream,
    timeout: Duration,
) -> Result<Option<StoredBatch>, ReplicationError> {
    runtime()?.block_on(async {
        let (context, last) = connect(config, timeout, if_missing).await?;
        if last == 0 {
            return Ok(None);
        }
        retrying(timeout, || message_at(&context, config, last))
            .await
            .map(Some)
    })
}

/// The message of the stream `config` names that holds command `command`, if the stream
/// holds it: for comparing a journal's last records with the stream's.
pub fn message_holding(
    config: &StreamConfig,
    command: u64,
    timeout: Duration,
) -> Result<Option<StoredBatch>, ReplicationError> {
    runtime()?.block_on(async {
        let (context, last) = connect(config, timeout, IfNoStream::Refuse).await?;
        let sequence = first_sequence_after(&context, config, command, last, timeout).await?;
        if sequence > last {
            return Ok(None);
        }
        retrying(timeout, || message_at(&context, config, sequence))
            .await
            .map(Some)
    })
}

/// One message of the stream, as [`read_stream`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub sequence: u64,
    pub first_command: u64,
    pub commands: u64,
    /// The store's capacity, as the writer said.
    pub capacity: u32,
    /// Who published it (older messages may not say).
    pub writer: Option<String>,
    pub bytes: Vec<u8>,
}

/// Every message of the stream `config` names, in order (for checks and tools: it reads them
/// one by one).
pub fn read_stream(
    config: &StreamConfig,
    timeout: Duration,
) -> Result<Vec<StoredBatch>, ReplicationError> {
    runtime()?.block_on(async {
        let (context, last) = connect(config, timeout, IfNoStream::Refuse).await?;
        let mut batches = Vec::new();
        for sequence in 1..=last {
            batches.push(retrying(timeout, || message_at(&context, config, sequence)).await?);
        }
        Ok(batches)
    })
}

/// Creates and deletes a probe stream `config` names: whether JetStream answers with as many
/// replicas as asked (for [`local_cluster`], to know a new cluster is ready).
pub(crate) fn probe(config: &StreamConfig, timeout: Duration) -> Result<(), ReplicationError> {
    runtime()?.block_on(async {
        let (context, _) = connect(config, timeout, IfNoStream::Create).await?;
        context
            .delete_stream(&config.stream)
            .await
            .map(|_| ())
            .map_err(|e| config.error(e.to_string()))
    })
}

/// The sequence of the first message holding a command from `from` on (messages after the
/// last one, `last`, if none does yet): a binary search over the messages' headers, since
/// each message holds a batch of commands.
pub(crate) async fn first_sequence_after(
    context: &jetstream::Context,
    config: &StreamConfig,
    from: u64,
    last: u64,
    timeout: Duration,
) -> Result<u64, ReplicationError> {
    let mut stream = context
        .get_stream(&config.stream)
        .await
        .map_err(|e| config.error(e.to_string()))?;
    let info = stream
        .info()
        .await
        .map_err(|e| config.error(e.to_string()))?;
    let (mut low, mut high) = (info.state.first_sequence.max(1), last + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        let message = retrying(timeout, || message_at(context, config, middle)).await?;
        if message.first_command + message.commands > from {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(low)
}

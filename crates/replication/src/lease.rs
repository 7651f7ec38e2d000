//! The stream's leader lease: one key in a JetStream key-value bucket whose entries expire
//! after the lease's TTL (`bookstore-lease-STREAM`, key `leader`, the holder's writer id as
//! its value). Its holder renews it every third of the TTL; a standby that finds it gone (its
//! holder stopped renewing: dead, stopped or cut off from the cluster's majority), or finds it
//! at one revision for a whole TTL (a holder that stopped renewing, whose key the servers have
//! not expired yet), takes it and becomes the writer.
//!
//! The lease says who should write; it cannot stop a holder that was deposed while it slept
//! from trying. The fence does that (`Replicator::start`: the new writer's first message
//! expects the stream's last sequence, so the old writer's next publish is refused), and the
//! old holder learns it lost the lease at its next renewal, when the key's revision is no
//! longer its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};

use crate::{jetstream_context, lock, runtime, ReplicationError, StreamConfig};

/// The key the holder's writer id is stored under.
const KEY: &str = "leader";

/// The lease of one stream, taken or watched for, and the thread that renews it.
pub struct Lease {
    /// The bucket's TTL (see [`ttl`](Self::ttl)).
    ttl: Duration,
    shared: Arc<LeaseShared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the handle and the renewing thread share.
struct LeaseShared {
    /// Whether this process holds the lease. Written by the thread (release, once the key is
    /// ours), read by the handle (acquire).
    held: AtomicBool,
    /// Why the lease was lost (another holder took it): the end of this holder's writing.
    failure: Mutex<Option<ReplicationError>>,
}

/// What an attempt to take the lease found.
enum Taken {
    /// Ours, at this revision.
    Yes(u64),
    /// Someone else's: who (its value), at which revision (0 if it could not be read).
    HeldBy { holder: String, revision: u64 },
}

/// A lease seen held at one revision, and since when (this process's clock): a holder renews
/// every third of the TTL, so a revision unchanged for a whole TTL is a holder that stopped.
/// Judged so, not only by the servers' expiry of the key: after a quorum came back, a CI run
/// saw a dead holder's key outlive its TTL by seconds, and a restarted market gave up.
#[derive(Default)]
struct Unrenewed {
    seen: Option<(u64, Instant)>,
}

impl Unrenewed {
    /// Notes `revision` as seen now; true if it has stayed the same for `ttl`.
    fn lapsed(&mut self, revision: u64, ttl: Duration) -> bool {
        match self.seen {
            Some((seen, since)) if seen == revision && revision != 0 => since.elapsed() >= ttl,
            _ => {
                self.seen = Some((revision, Instant::now()));
                false
            }
        }
    }
}

impl Lease {
    /// Takes the lease of `config`'s stream for `holder`, waiting for another holder's lease
    /// to lapse as long as one left by a crash takes to (a market restarted after a crash
    /// waits out its own): the lease's TTL, as the bucket has it, and a second, counted from
    /// when the lease is first seen held; a lease left at one revision for a TTL is taken
    /// over without waiting for the servers to expire it. Renews it
    /// until dropped. [`ReplicationError::LeaseHeld`] if it is still held then.
    pub fn take(
        config: &StreamConfig,
        ttl: Duration,
        holder: &str,
    ) -> Result<Self, ReplicationError> {
        let runtime = runtime()?;
        let (store, ttl, revision) = runtime.block_on(async {
            let (store, ttl) = bucket(config, ttl).await?;
            let started = Instant::now();
            let wait = ttl + Duration::from_secs(1);
            // When the lease was first seen held: its lapse is waited for from then, not from
            // `started`. A start that first waited out a bucket electing its leader again
            // (after a quorum came back) used to find that wait already spent and give up at
            // the first sight of a lease its dead holder could no longer renew (a CI run saw
            // it: the servers had not yet expired the entry).
            let mut held_since: Option<Instant> = None;
            let mut unrenewed = Unrenewed::default();
            loop {
                match try_take_or_take_over(&store, config, holder, &mut unrenewed, ttl).await {
                    Ok(Taken::Yes(revision)) => return Ok((store, ttl, revision)),
                    Ok(Taken::HeldBy { holder: other, .. }) => {
                        if held_since.get_or_insert_with(Instant::now).elapsed() >= wait {
                            return Err(ReplicationError::LeaseHeld {
                                stream: config.stream.clone(),
                                holder: other,
                            });
                        }
                        tokio::time::sleep(poll_interval(ttl)).await
                    }
                    // The bucket's servers elect a leader again after a quorum came back:
                    // "no stream found" for a while. Waited out as long as a stream is.
                    Err(_) if started.elapsed() < wait.max(crate::STREAM_WAIT) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Err(error) => return Err(error),
                }
            }
        })?;
        Self::spawn(runtime, store, config, ttl, holder, Some(revision))
    }

    /// Watches the lease of `config`'s stream and takes it for `holder` as soon as it is free
    /// (a standby); [`is_held`](Self::is_held) says when. Renews it from then on.
    pub fn watch(
        config: &StreamConfig,
        ttl: Duration,
        holder: &str,
    ) -> Result<Self, ReplicationError> {
        let runtime = runtime()?;
        let (store, ttl) = runtime.block_on(bucket(config, ttl))?;
        Self::spawn(runtime, store, config, ttl, holder, None)
    }

    fn spawn(
        runtime: tokio::runtime::Runtime,
        store: kv::Store,
        config: &StreamConfig,
        ttl: Duration,
        holder: &str,
        revision: Option<u64>,
    ) -> Result<Self, ReplicationError> {
        let shared = Arc::new(LeaseShared {
            held: AtomicBool::new(revision.is_some()),
            failure: Mutex::new(None),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let keeper = Keeper {
            store,
            config: config.clone(),
            holder: holder.to_owned(),
            ttl,
            revision,
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || runtime.block_on(keeper.run(stopped)))
            .map_err(ReplicationError::Thread)?;
        Ok(Self {
            ttl,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// How long the lease lasts unrenewed: the bucket's TTL, which the first user of the
    /// stream set.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether this process holds the lease now.
    pub fn is_held(&self) -> bool {
        // Acquire: pairs with the thread's release once the key was ours.
        self.shared.held.load(Ordering::Acquire)
    }

    /// Why the lease was lost, once (another holder took it).
    pub fn take_failure(&self) -> Option<ReplicationError> {
        lock(&self.shared.failure).take()
    }
}

impl Drop for Lease {
    /// Stops renewing and gives a held lease up (deletes the key if it is still ours), so a
    /// standby takes over at once after a clean stop.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How often a standby looks whether the lease is free.
fn poll_interval(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(20))
}

/// The thread's side: takes the lease when it is free (if it is not held yet), renews it.
struct Keeper {
    store: kv::Store,
    config: StreamConfig,
    holder: String,
    ttl: Duration,
    /// The key's revision this holder wrote last; `None` while it does not hold the lease.
    revision: Option<u64>,
    shared: Arc<LeaseShared>,
}

impl Keeper {
    async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let mut renewal_failing_since: Option<Instant> = None;
        let mut unrenewed = Unrenewed::default();
        loop {
            let interval = match self.revision {
                Some(_) => self.ttl / 3,
                None => poll_interval(self.ttl),
            };
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(interval) => {}
            }
            match self.revision {
                None => {
                    let (store, config, holder) = (&self.store, &self.config, &self.holder);
                    match try_take_or_take_over(store, config, holder, &mut unrenewed, self.ttl)
                        .await
                    {
                        Ok(Taken::Yes(revision)) => {
                            self.revision = Some(revision);
                            // Release: whoever sees `held` acts as the lease's holder.
                            self.shared.held.store(true, Ordering::Release);
                            tracing::info!(stream = %self.config.stream, "replication: the lease of stream {} was free; taken", self.config.stream);
                        }
                        Ok(Taken::HeldBy { .. }) => {}
                        Err(error) => tracing::debug!(%error, "lease: cannot look at the lease"),
                    }
                }
                Some(revision) => {
                    let renewed = self
                        .store
                        .update(KEY, self.holder.clone().into(), revision)
                        .await;
                    match renewed {
                        Ok(revision) => {
                            self.revision = Some(revision);
                            if let Some(since) = renewal_failing_since.take() {
                                tracing::warn!(
                                    failing_ms = since.elapsed().as_millis() as u64,
                                    "replication: the lease is renewed again"
                                );
                            }
                        }
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                            if !self.retake().await {
                                return;
                            }
                        }
                        Err(error) => {
                            renewal_failing_since.get_or_insert_with(|| {
                                tracing::warn!(%error, stream = %self.config.stream, "replication: cannot renew the lease (a quorum lost?); retrying. Past its TTL a standby may take over, and this market's next batch is then refused");
                                Instant::now()
                            });
                        }
                    }
                }
            }
        }
        if let Some(revision) = self.revision {
            let _ = self.store.delete_expect_revision(KEY, Some(revision)).await;
        }
    }

    /// The key is no longer at our revision: it lapsed (we renewed too late) or another
    /// holder took it. Takes it again in the first case; in the second this holder is
    /// deposed. Returns whether it still holds the lease.
    async fn retake(&mut self) -> bool {
        match try_take(&self.store, &self.config, &self.holder).await {
            Ok(Taken::Yes(revision)) => {
                tracing::warn!(stream = %self.config.stream, "replication: the lease lapsed before it was renewed, and nobody took it; taken again");
                self.revision = Some(revision);
                true
            }
            Ok(Taken::HeldBy { holder: other, .. }) => {
                self.revision = None;
                // Release, as when taken; the failure follows under its lock. A standby that
                // reads `false` before the failure is there only waits one more poll: it reads
                // the failure first each time (`NatsUpstream::next`), and a market never asks
                // `is_held`: it stops on the failure alone.
                self.shared.held.store(false, Ordering::Release);
                *lock(&self.shared.failure) = Some(ReplicationError::Deposed {
                    stream: self.config.stream.clone(),
                    holder: other,
                });
                false
            }
            // Cannot tell: try again at the next renewal.
            Err(_) => true,
        }
    }
}

/// One attempt to take the lease: creates the key, which only succeeds if it does not exist
/// (never written, expired after its TTL, or deleted by a holder that stopped cleanly).
async fn try_take(
    store: &kv::Store,
    config: &StreamConfig,
    holder: &str,
) -> Result<Taken, ReplicationError> {
    match store.create(KEY, holder.to_owned().into()).await {
        Ok(revision) => Ok(Taken::Yes(revision)),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            let held = match store.entry(KEY).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => Taken::HeldBy {
                    holder: String::from_utf8_lossy(&entry.value).into_owned(),
                    revision: entry.revision,
                },
                // Gone again since: the next attempt may take it.
                _ => Taken::HeldBy {
                    holder: "a holder that just left".to_owned(),
                    revision: 0,
                },
            };
            Ok(held)
        }
        Err(e) => Err(config.error(format!("lease: {e}"))),
    }
}

/// [`try_take`], and if the lease is held at a revision `unrenewed` has seen for a whole
/// `ttl`, takes it over: writes `holder` over it only if it is still at that revision (so a
/// holder that renewed meanwhile keeps it). What a starting market and a watching standby
/// both do at each look.
async fn try_take_or_take_over(
    store: &kv::Store,
    config: &StreamConfig,
    holder: &str,
    unrenewed: &mut Unrenewed,
    ttl: Duration,
) -> Result<Taken, ReplicationError> {
    let taken = try_take(store, config, holder).await?;
    let Taken::HeldBy { revision, .. } = &taken else {
        return Ok(taken);
    };
    if !unrenewed.lapsed(*revision, ttl) {
        return Ok(taken);
    }
    match store.update(KEY, holder.to_owned().into(), *revision).await {
        Ok(revision) => {
            tracing::info!(stream = %config.stream, "replication: the lease of stream {} was not renewed for its TTL; taken over", config.stream);
            Ok(Taken::Yes(revision))
        }
        Err(error) => {
            tracing::debug!(%error, stream = %config.stream, "lease: the unrenewed lease could not be taken");
            Ok(taken)
        }
    }
}

/// The lease's bucket for `config`'s stream, created (entries expiring after `ttl`, as many
/// replicas as the stream) if it does not exist, and the TTL it has: the first market or
/// standby to use the stream set it, and that one holds (said when it is not `ttl`).
async fn bucket(
    config: &StreamConfig,
    ttl: Duration,
) -> Result<(kv::Store, Duration), ReplicationError> {
    let store = bucket_as_created(config, ttl).await?;
    let theirs = store
        .status()
        .await
        .map(|status| status.max_age())
        .unwrap_or(ttl);
    if theirs != ttl && !theirs.is_zero() {
        tracing::warn!(stream = %config.stream, "replication: the lease of stream {} lasts {theirs:?}, as the first market or standby to use it set it, not the {ttl:?} asked for; {theirs:?} it is", config.stream);
        return Ok((store, theirs));
    }
    Ok((store, ttl))
}

async fn bucket_as_created(
    config: &StreamConfig,
    ttl: Duration,
) -> Result<kv::Store, ReplicationError> {
    let wait = Duration::from_secs(10);
    let context = jetstream_context(config, wait).await?;
    let name = format!("bookstore-lease-{}", config.stream);
    let error = |why: String| config.error(format!("lease bucket {name}: {why}"));
    crate::retrying(wait, || async {
        if let Ok(store) = context.get_key_value(&name).await {
            return Ok(store);
        }
        let created = context
            .create_key_value(kv::Config {
                bucket: name.clone(),
                history: 1,
                max_age: ttl,
                storage: jetstream::stream::StorageType::File,
                num_replicas: config.replicas,
                ..Default::default()
            })
            .await;
        match created {
            Ok(store) => Ok(store),
            // Created by another process meanwhile.
            Err(e) => context
                .get_key_value(&name)
                .await
                .map_err(|_| error(e.to_string())),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_judged_unrenewed_only_after_one_revision_stays_for_a_whole_ttl() {
        let ttl = Duration::from_millis(60);
        let mut unrenewed = Unrenewed::default();
        assert!(!unrenewed.lapsed(7, ttl), "first sight");
        std::thread::sleep(ttl / 2);
        assert!(!unrenewed.lapsed(7, ttl), "half a TTL");
        assert!(!unrenewed.lapsed(8, ttl), "renewed: seen anew");
        std::thread::sleep(ttl / 2);
        assert!(!unrenewed.lapsed(8, ttl), "half a TTL since the renewal");
        std::thread::sleep(ttl / 2 + Duration::from_millis(5));
        assert!(unrenewed.lapsed(8, ttl), "a whole TTL at one revision");
        std::thread::sleep(ttl + Duration::from_millis(5));
        assert!(
            !unrenewed.lapsed(0, ttl),
            "an unknown revision never lapses"
        );
        assert!(!unrenewed.lapsed(0, ttl));
    }
}

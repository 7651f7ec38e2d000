//! The replicator against real `nats-server` processes on loopback ports (skipped, saying so,
//! where no `nats-server` is installed: `.ci/run` installs one).

use std::time::{Duration, Instant};

use bookstore_replication::local_cluster::{server_binary, LocalCluster};
use bookstore_replication::{
    new_writer_id, read_stream, Batch, Lease, ReplicationError, Replicator, StreamConfig,
};

/// Held by each test while its cluster runs: one at a time, so a 2-core machine answers.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cluster(nodes: usize, tag: &str) -> Option<LocalCluster> {
    let Some(binary) = server_binary() else {
        eprintln!("skipped: no nats-server (set BOOKSTORE_NATS_SERVER or put it on the PATH)");
        return None;
    };
    Some(LocalCluster::start(&binary, nodes, tag))
}

fn config(cluster: &LocalCluster, stream: &str) -> StreamConfig {
    StreamConfig {
        servers: cluster.urls(),
        stream: stream.into(),
        replicas: cluster.nodes.len(),
        capacity: 100,
    }
}

fn batch(first_command: u64, commands: u64, end: u64) -> Batch {
    Batch {
        first_command,
        commands,
        end,
        bytes: format!("records {first_command}..{}", first_command + commands).into_bytes(),
    }
}

fn acked_within(replicator: &Replicator, end: u64, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if replicator.acked() >= end {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn batches_are_stored_in_order_and_read_back_whole() {
    let _one = one_at_a_time();
    let Some(cluster) = cluster(1, "order") else {
        return;
    };
    let config = config(&cluster, "order");
    let mut replicator = Replicator::start(&config, 0, WAIT, &new_writer_id(), None).unwrap();
    let batches = [batch(0, 3, 100), batch(3, 2, 180), batch(5, 4, 300)];
    for b in &batches {
        replicator.publish(b.clone());
    }
    assert!(acked_within(&replicator, 300, WAIT));
    drop(replicator);
    let stored = read_stream(&config, WAIT).unwrap();
    let all: Vec<u8> = stored.iter().flat_map(|s| s.bytes.clone()).collect();
    let sent: Vec<u8> = batches.iter().flat_map(|b| b.bytes.clone()).collect();
    assert_eq!(
        all, sent,
        "every byte, in order (batches may share a message)"
    );
    assert_eq!(stored[0].commands, 0, "the writer's fence comes first");
    assert!(
        stored
            .windows(2)
            .all(|w| w[1].first_command == w[0].first_command + w[0].commands),
        "each message starts where the one before ended"
    );
}

#[test]
fn a_writer_that_starts_fences_the_one_before_it() {
    let _one = one_at_a_time();
    let Some(cluster) = cluster(1, "fence") else {
        return;
    };
    let config = config(&cluster, "fence");
    let mut first = Replicator::start(&config, 0, WAIT, "first", None).unwrap();
    first.publish(batch(0, 1, 10));
    assert!(acked_within(&first, 10, WAIT));
    // A second writer starts: its fence goes after the first's batch...
    let mut second = Replicator::start(&config, 10, WAIT, "second", None).unwrap();
    assert_eq!(
        second.stream_commands(),
        1,
        "it starts where the stream ends"
    );
    // ...so the first cannot append any more: its expected last sequence is stale.
    first.publish(batch(1, 1, 20));
    let started = Instant::now();
    let failure = loop {
        if let Some(failure) = first.take_failure() {
            break failure;
        }
        assert!(started.elapsed() < WAIT, "the first writer was not fenced");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        matches!(failure, ReplicationError::Fenced { .. }),
        "{failure}"
    );
    assert_eq!(first.acked(), 10);
    second.publish(batch(1, 1, 20));
    assert!(acked_within(&second, 20, WAIT));
    drop((first, second));
    let writers: Vec<(Option<String>, u64)> = read_stream(&config, WAIT)
        .unwrap()
        .into_iter()
        .map(|m| (m.writer, m.commands))
        .collect();
    let by = |w: &str, n| (Some(w.to_owned()), n);
    assert_eq!(
        writers,
        [
            by("first", 0),
            by("first", 1),
            by("second", 0),
            by("second", 1)
        ],
        "each writer's fence, then its batch"
    );
}

#[test]
fn a_standby_that_missed_a_message_cannot_fence_the_stream() {
    let _one = one_at_a_time();
    let Some(cluster) = cluster(1, "moved") else {
        return;
    };
    let config = config(&cluster, "moved");
    let mut first = Replicator::start(&config, 0, WAIT, "first", None).unwrap();
    first.publish(batch(0, 1, 10));
    assert!(acked_within(&first, 10, WAIT));
    // A standby that applied message 1 (the first's fence) but not 2 (its batch).
    let refused = Replicator::start(&config, 0, WAIT, "standby", Some(1));
    assert!(
        matches!(refused, Err(ReplicationError::Moved { expected: 1, .. })),
        "refused: {:?}",
        refused.err()
    );
    // Having applied it, it can.
    let standby = Replicator::start(&config, 10, WAIT, "standby", Some(2)).unwrap();
    assert_eq!(standby.stream_commands(), 1);
}

#[test]
fn the_lease_has_one_holder_and_is_given_up_by_a_clean_stop() {
    let _one = one_at_a_time();
    let Some(cluster) = cluster(1, "lease") else {
        return;
    };
    let config = config(&cluster, "lease");
    let ttl = Duration::from_secs(2);
    let first = Lease::take(&config, ttl, "first").unwrap();
    assert!(first.is_held());
    // (It waits out the TTL and a second first: the first one renews meanwhile.)
    let second = Lease::take(&config, ttl, "second");
    match second {
        Err(ReplicationError::LeaseHeld { holder, .. }) => assert_eq!(holder, "first"),
        other => panic!("the second was not refused: {:?}", other.err()),
    }
    // Renewed past its TTL: still held.
    let standby = Lease::watch(&config, ttl, "standby").unwrap();
    std::thread::sleep(ttl + Duration::from_millis(500));
    assert!(first.is_held() && !standby.is_held());
    assert!(first.take_failure().is_none());
    // Given up: the standby takes it within a poll.
    drop(first);
    let taken = {
        let started = Instant::now();
        while !standby.is_held() && started.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(10));
        }
        standby.is_held()
    };
    assert!(taken, "the standby took the lease given up");
}

#[test]
fn with_two_nodes_of_three_down_nothing_is_acknowledged_until_one_returns() {
    let _one = one_at_a_time();
    let Some(mut cluster) = cluster(3, "quorum") else {
        return;
    };
    let config = config(&cluster, "quorum");
    let mut replicator = Replicator::start(&config, 0, WAIT, &new_writer_id(), None).unwrap();
    replicator.publish(batch(0, 1, 10));
    assert!(acked_within(&replicator, 10, WAIT));
    // One node lost: a majority stores the next batch.
    cluster.nodes[2].kill();
    replicator.publish(batch(1, 1, 20));
    assert!(
        acked_within(&replicator, 20, WAIT),
        "acknowledged with 2 of 3"
    );
    // Two lost: no majority, nothing acknowledged...
    cluster.nodes[1].kill();
    replicator.publish(batch(2, 1, 30));
    assert!(!acked_within(&replicator, 30, Duration::from_secs(3)));
    assert!(
        replicator.take_failure().is_none(),
        "it waits, it does not give up"
    );
    // ...until one comes back.
    cluster.nodes[1].restart();
    assert!(
        acked_within(&replicator, 30, Duration::from_secs(30)),
        "acknowledged again"
    );
    drop(replicator);
    let stored = read_stream(&config, WAIT).unwrap();
    let all: Vec<u8> = stored.iter().flat_map(|s| s.bytes.clone()).collect();
    let sent: Vec<u8> = [batch(0, 1, 10), batch(1, 1, 20), batch(2, 1, 30)]
        .iter()
        .flat_map(|b| b.bytes.clone())
        .collect();
    assert_eq!(all, sent, "once each, in order");
}

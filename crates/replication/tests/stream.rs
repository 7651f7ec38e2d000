//! The replicator against real `nats-server` processes on loopback ports (skipped, saying so,
//! where no `nats-server` is installed: `.ci/run` installs one).

use std::time::{Duration, Instant};

use bookstore_replication::local_cluster::{server_binary, LocalCluster};
use bookstore_replication::{read_stream, Batch, ReplicationError, Replicator, StreamConfig};

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
    let Some(cluster) = cluster(1, "order") else {
        return;
    };
    let config = config(&cluster, "order");
    let mut replicator = Replicator::start(&config, 0, WAIT).unwrap();
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
    assert_eq!(stored[0].first_command, 0);
    assert!(stored
        .windows(2)
        .all(|w| w[0].first_command < w[1].first_command));
}

#[test]
fn a_second_writer_is_fenced_by_the_expected_sequence() {
    let Some(cluster) = cluster(1, "fence") else {
        return;
    };
    let config = config(&cluster, "fence");
    let mut first = Replicator::start(&config, 0, WAIT).unwrap();
    // A second writer that saw the stream as the first did...
    let mut second = Replicator::start(&config, 0, WAIT).unwrap();
    first.publish(batch(0, 1, 10));
    assert!(acked_within(&first, 10, WAIT));
    // ...cannot append after the first one did: its expected last sequence is stale.
    second.publish(batch(0, 1, 10));
    let started = Instant::now();
    let failure = loop {
        if let Some(failure) = second.take_failure() {
            break failure;
        }
        assert!(started.elapsed() < WAIT, "the second writer was not fenced");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        matches!(failure, ReplicationError::Fenced { .. }),
        "{failure}"
    );
    assert_eq!(second.acked(), 0);
    drop((first, second));
    assert_eq!(read_stream(&config, WAIT).unwrap().len(), 1);
}

#[test]
fn with_two_nodes_of_three_down_nothing_is_acknowledged_until_one_returns() {
    let Some(mut cluster) = cluster(3, "quorum") else {
        return;
    };
    let config = config(&cluster, "quorum");
    let mut replicator = Replicator::start(&config, 0, WAIT).unwrap();
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

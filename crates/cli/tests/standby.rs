//! `bookstore standby` with real processes: a replicated market and its standby on a
//! three-node JetStream cluster on loopback ports, started and stopped by the test (skipped,
//! saying so, where no `nats-server` is installed: `.ci/run` installs one). The standby takes
//! over when the market's lease lapses; a market deposed while it slept cannot append.

mod common;

use std::time::{Duration, Instant};

use bookstore_replication::local_cluster::{server_binary, LocalCluster};
use bookstore_replication::{read_stream, StoredBatch, StreamConfig};
use common::*;
use rustix::process::Signal;

/// The lease's TTL in these tests, in seconds.
const TTL_SECS: u64 = 2;
const TTL: &str = "2";

fn cluster(tag: &str) -> Option<LocalCluster> {
    let Some(binary) = server_binary() else {
        eprintln!("skipped: no nats-server (set BOOKSTORE_NATS_SERVER or put it on the PATH)");
        return None;
    };
    Some(LocalCluster::start(&binary, 3, tag))
}

/// The files `journal` was set aside as (`PATH.UNIXTIME.old`).
fn set_aside(journal: &std::path::Path) -> Vec<std::path::PathBuf> {
    let prefix = journal.to_string_lossy().into_owned();
    std::fs::read_dir(journal.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let p = p.to_string_lossy();
            p.starts_with(&prefix) && p.ends_with(".old")
        })
        .collect()
}

/// Every message of `stream`, in order.
fn messages(cluster: &LocalCluster, stream: &str) -> Vec<StoredBatch> {
    let config = StreamConfig {
        servers: cluster.urls(),
        stream: stream.to_owned(),
        replicas: 3,
        capacity: 0,
    };
    read_stream(&config, Duration::from_secs(30)).unwrap()
}

/// The stream's messages' writers, in order, each run of one writer's messages once.
fn writers_in_turn(cluster: &LocalCluster, stream: &str) -> Vec<String> {
    let mut writers: Vec<String> = Vec::new();
    for message in messages(cluster, stream) {
        let writer = message.writer.expect("every message names its writer");
        if writers.last() != Some(&writer) {
            writers.push(writer);
        }
    }
    writers
}

#[test]
fn a_standby_serves_within_two_lease_ttls_of_its_market_killed_mid_burst_and_loses_nothing_acknowledged(
) {
    let _one = one_cluster_at_a_time();
    let Some(cluster) = cluster("takeover") else {
        return;
    };
    let urls = cluster.urls().join(",");
    let stream = [
        "--nats",
        urls.as_str(),
        "--stream",
        "takeover",
        "--lease-ttl",
        TTL,
    ];
    let mut market_args = vec!["--durability", "replicated", "--capacity", "40"];
    market_args.extend_from_slice(&stream);
    let mut market = Market::start("primary", &market_args);
    let standby = Market::start_standby("standby", &stream);

    // What the market applies, the standby applies and shows, as a standby.
    let out = market.client("seller", &["sell", "Dune", "--price", "5", "--qty", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let shown = eventually(Duration::from_secs(10), || {
        standby.inspect()["books_on_shelf"] == 2
    });
    let view = standby.inspect();
    assert!(shown, "the standby shows the market's store: {view:#}");
    assert_eq!(view["state"], "standby");
    // A client of the standby alone waits, and says why it was not served.
    let out = standby.client(
        "buyer",
        &["--wait", "0.3", "buy", "Dune", "--max-price", "5"],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is a standby's store"),
        "{}",
        stderr(&out)
    );

    // A burst of two sellers and two buyers, who may go on with the standby...
    let go_on = ["--standby", standby.name.as_str()];
    let sessions: Vec<ScriptedSession> = (0..2u64)
        .flat_map(|i| ["seller", "buyer"].map(|r| (i, r)))
        .map(|(i, role)| ScriptedSession::spawn(&market.name, role, &go_on, i * 1000, 60))
        .collect();
    // ...and the market killed in the middle of it.
    std::thread::sleep(Duration::from_millis(1500));
    market.kill();
    let killed = Instant::now();
    let served = standby.reaches_state("ready", Duration::from_secs(2 * TTL_SECS));
    println!(
        "the standby served {:?} after the market was killed (lease TTL {TTL_SECS} s)",
        killed.elapsed()
    );
    assert!(served, "the standby serves within 2 × the lease's TTL");

    let (mut listed_told, mut bought_told, mut moved) = (0, 0, 0);
    for session in sessions {
        let told = session.finish(Duration::from_secs(120));
        moved += told.log.matches("waiting up to").count();
        listed_told += told.listed;
        bought_told += told.bought;
    }
    let view = standby.assert_balanced();
    let (listed, sold) = (
        view["books_listed_total"].as_u64().unwrap(),
        view["books_sold_total"].as_u64().unwrap(),
    );
    println!("takeover: {moved} sessions waited for the standby; told listed {listed_told} (+2 before), bought {bought_told}; the standby's store listed {listed}, sold {sold}");
    assert!(moved > 0, "the market was killed while sessions traded");
    assert!(sold > 0, "books were sold: {view:#}");
    assert_eq!(listed_told + 2, listed, "listings acknowledged = applied");
    assert_eq!(bought_told, sold, "copies acknowledged bought = sold");

    // The stream had two writers, one after the other; the standby's journal holds it
    // whole, byte for byte.
    assert_eq!(writers_in_turn(&cluster, "takeover").len(), 2);
    let journal = standby.stop_keeping_journal();
    let streamed: Vec<u8> = messages(&cluster, "takeover")
        .into_iter()
        .flat_map(|m| m.bytes)
        .collect();
    let kept = std::fs::read(&journal).unwrap();
    let header = bookstore::journal::format::FILE_HEADER_LEN;
    assert_eq!(
        streamed,
        kept[header..header + streamed.len()],
        "the standby's journal is the stream"
    );
    assert!(kept[header + streamed.len()..].iter().all(|&b| b == 0));
    remove_journal_at(&journal);

    // The stream is the truth: the killed market, started again once the standby stopped
    // (giving the lease up), catches up from the stream past its own journal and serves the
    // same store.
    market.restart(&market_args);
    let again = market.assert_balanced();
    for field in ["books_listed_total", "books_sold_total", "trades_total"] {
        assert_eq!(again[field], view[field], "{field}");
    }
    market.stop();
}

#[test]
fn a_deposed_market_that_wakes_up_cannot_append() {
    let _one = one_cluster_at_a_time();
    let Some(cluster) = cluster("deposed") else {
        return;
    };
    let urls = cluster.urls().join(",");
    let stream = [
        "--nats",
        urls.as_str(),
        "--stream",
        "deposed",
        "--lease-ttl",
        TTL,
    ];
    let mut market_args = vec!["--durability", "replicated"];
    market_args.extend_from_slice(&stream);
    let mut market = Market::start("primary", &market_args);
    let standby = Market::start_standby("standby", &stream);
    let out = market.client("seller", &["sell", "Dune", "--price", "5"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The market sleeps (SIGSTOP) past its lease's TTL: the standby takes over and serves.
    market.signal(Signal::STOP);
    let served = standby.reaches_state("ready", Duration::from_secs(4 * TTL_SECS));
    assert!(served, "the standby took over from the stopped market");
    let out = standby.client("buyer", &["buy", "Dune", "--max-price", "5"]);
    assert!(stdout(&out).contains("trade #1"), "{}", stderr(&out));

    // A client of the old market sends an order while it sleeps; the market wakes up...
    let late = market.spawn_client("seller", &["--wait", "5", "sell", "Late", "--price", "1"]);
    std::thread::sleep(Duration::from_millis(300));
    market.signal(Signal::CONT);
    // ...applies it, but the stream refuses its batch (the standby's fence) and its lease
    // is gone: it acknowledges nothing and stops.
    let status = market.exits_within(Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(8),
        "the deposed market stops with exit 8"
    );
    let out = late.wait_with_output().unwrap();
    assert!(
        !stdout(&out).contains("listed"),
        "a deposed market acknowledged an order: {}",
        stdout(&out)
    );
    assert_ne!(code(&out), 0, "{}", stderr(&out));

    // The stream: the old writer's messages, then the standby's, never the old one's again;
    // the standby's store has no trace of the late order.
    assert_eq!(writers_in_turn(&cluster, "deposed").len(), 2);
    let view = standby.assert_balanced();
    assert_eq!(view["books_listed_total"], 1, "{view:#}");
    assert_eq!(view["trades_total"], 1, "{view:#}");

    // The deposed market's journal ends in its late order, which the stream refused: the
    // stream is the truth. Started as a standby, it sets that journal aside and follows the
    // stream from its start.
    let name = market.name.clone();
    let journal = market.stop_keeping_journal();
    let rejoined = Market::start_standby_named(name, &stream);
    let shown = eventually(Duration::from_secs(10), || {
        rejoined.inspect()["trades_total"] == 1
    });
    let view = rejoined.inspect();
    assert!(shown, "the old market follows the stream: {view:#}");
    assert_eq!(view["books_listed_total"], 1, "no late order: {view:#}");
    let aside = set_aside(&journal);
    assert_eq!(aside.len(), 1, "the old journal is kept aside");
    for file in aside {
        std::fs::remove_file(file).unwrap();
    }
    rejoined.stop();
    standby.stop();
}

#[test]
fn a_standby_killed_and_restarted_carries_on_from_its_own_journal_and_snapshots() {
    let _one = one_cluster_at_a_time();
    let Some(cluster) = cluster("restart") else {
        return;
    };
    let urls = cluster.urls().join(",");
    let stream = ["--nats", urls.as_str(), "--stream", "restart"];
    let mut market_args = vec!["--durability", "replicated", "--capacity", "1000"];
    market_args.extend_from_slice(&stream);
    let market = Market::start("primary", &market_args);
    let mut standby_args = vec!["--snapshot-every", "10"];
    standby_args.extend_from_slice(&stream);
    let mut standby = Market::start_standby("standby", &standby_args);
    let listed_alike = |market: &Market, standby: &Market| {
        eventually(Duration::from_secs(10), || {
            let listed = market.inspect()["books_listed_total"].clone();
            standby.inspect()["books_listed_total"] == listed
        })
    };

    ScriptedSession::spawn(&market.name, "seller", &[], 0, 30).finish(Duration::from_secs(60));
    assert!(listed_alike(&market, &standby), "the standby follows");
    let journal = journal_path(&standby.name);
    assert!(
        !snapshots_of(&journal).is_empty(),
        "the standby takes its own snapshots"
    );
    // Killed, it misses what comes next; restarted, it reads its snapshot and journal, then
    // the rest from the stream.
    standby.kill();
    ScriptedSession::spawn(&market.name, "seller", &[], 100, 20).finish(Duration::from_secs(60));
    standby.restart_as_standby(&standby_args);
    assert!(listed_alike(&market, &standby), "the standby caught up");
    assert!(
        set_aside(&journal).is_empty(),
        "its own journal agreed with the stream, and was kept"
    );
    // The standby first: a market's clean stop hands its lease over at once.
    standby.stop();
    market.stop();
}

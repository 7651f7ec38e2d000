//! `--durability replicated` with real processes: a market publishing its journal's batches to
//! a three-node JetStream cluster on loopback ports, started and stopped by the test (skipped,
//! saying so, where no `nats-server` is installed: `.ci/run` installs one).

mod common;

use std::time::Duration;

use bookstore_replication::local_cluster::{server_binary, LocalCluster};
use bookstore_replication::{read_stream, StreamConfig};
use common::*;

#[test]
fn a_replicated_market_answers_only_what_a_majority_of_the_cluster_stored() {
    let _one = one_cluster_at_a_time();
    let Some(binary) = server_binary() else {
        eprintln!("skipped: no nats-server (set BOOKSTORE_NATS_SERVER or put it on the PATH)");
        return;
    };
    let mut cluster = LocalCluster::start(&binary, 3, "market");
    let urls = cluster.urls().join(",");
    let replicated = ["--durability", "replicated", "--nats", urls.as_str()];
    let mut market = Market::start("replicated", &replicated);
    let shown = eventually(Duration::from_secs(5), || {
        market.inspect()["stats"]["durability"] == "replicated"
    });
    assert!(
        shown,
        "inspect says how it is durable: {:#}",
        market.inspect()
    );
    let out = market.client("seller", &["sell", "Dune", "--price", "5", "--qty", "3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // One node of three lost: a majority still stores every batch, the market still answers.
    cluster.nodes[2].kill();
    let out = market.client("buyer", &["buy", "Dune", "--max-price", "5"]);
    assert!(stdout(&out).contains("trade #1"), "{}", stderr(&out));

    // Two lost: no majority. The order is applied, but its reply waits...
    cluster.nodes[1].kill();
    let waiting = market.spawn_client("seller", &["--wait", "60", "sell", "Emma", "--price", "3"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        waiting_still(&waiting),
        "the seller heard back with no majority to store its listing"
    );
    // ...until a node comes back.
    cluster.nodes[1].restart();
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("listed"), "{}", stdout(&out));
    market.stop_for_restart();

    // The stream holds the journal's records exactly: the same bytes, in order, once.
    let config = StreamConfig {
        servers: cluster.urls(),
        stream: market.name[1..].to_owned(),
        replicas: 3,
        capacity: 0,
    };
    let stored = read_stream(&config, Duration::from_secs(30)).unwrap();
    let streamed: Vec<u8> = stored.iter().flat_map(|s| s.bytes.clone()).collect();
    let journal = std::fs::read(journal_path(&market.name)).unwrap();
    let header = bookstore::journal::format::FILE_HEADER_LEN;
    assert_eq!(streamed, journal[header..], "stream and journal agree");
    assert_eq!(stored[0].first_command, 0);
    // `bookstore journal` replays the stream to the store the journal replays to.
    let report = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["journal", "--json"];
        all.extend_from_slice(args);
        let out = run(&all);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let from_journal = report(&["--name", &market.name]);
    let from_stream = report(&["--nats", &urls, "--stream", &config.stream]);
    for field in [
        "records",
        "books_on_shelf",
        "trades_total",
        "next_trade_id",
        "capacity",
    ] {
        assert_eq!(from_stream[field], from_journal[field], "{field}");
    }
    // (Retried: right after a node came back, JetStream's API may time out for a while.)
    let mut out = run(&["journal", "--nats", &urls, "--stream", "no-such-stream"]);
    let refused = eventually(Duration::from_secs(30), || {
        out = run(&["journal", "--nats", &urls, "--stream", "no-such-stream"]);
        code(&out) == 8
    });
    assert!(refused, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("there is no stream no-such-stream"),
        "{}",
        stderr(&out)
    );

    // A new market finds the stream where its journal ends, and carries on.
    market.restart(&replicated);
    let out = market.client("buyer", &["buy", "Emma", "--max-price", "3"]);
    assert!(stdout(&out).contains("trade #2"), "{}", stderr(&out));
    market.stop();
}

fn waiting_still(child: &std::process::Child) -> bool {
    // A zero-timeout wait through /proc: the child is ours and not reaped until it exits.
    let status = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    !status.is_empty() && !status.contains(") Z ")
}

#[test]
fn a_market_killed_with_batches_the_stream_never_acknowledged_restarts_with_what_the_stream_holds()
{
    let _one = one_cluster_at_a_time();
    let Some(binary) = server_binary() else {
        eprintln!("skipped: no nats-server (set BOOKSTORE_NATS_SERVER or put it on the PATH)");
        return;
    };
    let mut cluster = LocalCluster::start(&binary, 3, "unacked");
    let urls = cluster.urls().join(",");
    // A short lease: the restarted market waits out the killed one's.
    let replicated = [
        "--durability",
        "replicated",
        "--nats",
        urls.as_str(),
        "--lease-ttl",
        "1",
    ];
    let mut market = Market::start("unacked", &replicated);
    let out = market.client("seller", &["sell", "Dune", "--price", "5"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // No majority: a listing is applied and journaled locally, its reply held...
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let seller = market.spawn_client("seller", &["--wait", "0", "sell", "Emma", "--price", "3"]);
    let journaled = eventually(Duration::from_secs(5), || journal_listed(&market) == 2);
    assert!(journaled, "the listing was applied locally");
    // ...and the market dies before the stream stored it.
    market.kill();
    let out = seller.wait_with_output().unwrap();
    assert!(!stdout(&out).contains("listed"), "{}", stdout(&out));
    cluster.nodes[1].restart();
    cluster.nodes[2].restart();
    // The stream's group elects a leader again (about 10 s here) before anyone can read it.
    let readable = eventually(Duration::from_secs(60), || {
        run(&["journal", "--nats", &urls, "--stream", &market.name[1..]])
            .status
            .success()
    });
    assert!(readable, "the stream recovered");

    // The stream is the truth: the restarted market holds what the stream holds. The listing
    // was never acknowledged; whether the stream has it depends on whether the one node left
    // had appended it to its log (Raft commits such an entry once a quorum is back, possibly
    // after this test first reads the stream). Once the new market fenced the stream, what is
    // before the fence is final: the market must agree with it.
    market.restart(&replicated);
    let view = market.assert_balanced();
    let report = run(&[
        "journal",
        "--json",
        "--nats",
        &urls,
        "--stream",
        &market.name[1..],
    ]);
    let stream: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let in_stream = stream["books_listed_total"].as_u64().unwrap();
    println!(
        "the unacknowledged listing is in the stream: {}",
        in_stream == 2
    );
    assert!(matches!(in_stream, 1 | 2), "{stream:#}");
    assert_eq!(view["books_listed_total"], in_stream, "{view:#}");
    let out = market.client("buyer", &["buy", "Dune", "--max-price", "5"]);
    assert!(stdout(&out).contains("trade #1"), "{}", stderr(&out));
    market.stop();
}

/// Books listed in the market's journal, as `bookstore journal` replays it (the view shows
/// only what the stream acknowledged).
fn journal_listed(market: &Market) -> u64 {
    let out = run(&["journal", "--json", "--name", &market.name]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    report["books_listed_total"].as_u64().unwrap_or(0)
}

//! The replicated rows: `--durability replicated` against a three-node JetStream cluster on
//! loopback ports the bench starts and stops (figures only; skipped, saying so, without a
//! `nats-server`).

use serde::Serialize;

use super::{market_rtt, throughput, BenchResult, Percentiles};
use bookstore_replication::local_cluster::{server_binary, LocalCluster};

#[derive(Serialize, Clone, Copy)]
pub(super) struct ReplicatedFigures {
    /// Buy-that-fills round trips, spin mode, each reply waiting for the stream's
    /// acknowledgement.
    pub rtt_ns: Percentiles,
    pub round_trips: u32,
    /// One seller and one buyer process, pipelining.
    pub orders_per_sec: f64,
}

/// Round trips (at most 2,000: each waits for a majority of three servers) and end-to-end
/// orders/s (at most 100,000 a side) with replicated durability; `None` without a server.
pub(super) fn measure(
    round_trips: u32,
    orders: u32,
    progress: &impl Fn(&str),
) -> BenchResult<Option<ReplicatedFigures>> {
    let Some(binary) = server_binary() else {
        progress("replicated durability: skipped (no nats-server; set BOOKSTORE_NATS_SERVER)");
        return Ok(None);
    };
    progress(
        "replicated durability: a 3-node JetStream cluster on loopback, round trips and orders/s",
    );
    let cluster = LocalCluster::start(&binary, 3, "bench");
    let urls = cluster.urls().join(",");
    let extra = ["--nats", urls.as_str()];
    let round_trips = round_trips.min(2_000);
    let rtt = market_rtt(round_trips, 1_000_000, "replicated", &extra, None)?;
    let orders_per_sec = throughput::orders_per_sec(orders.min(100_000), "replicated", &extra)?;
    Ok(Some(ReplicatedFigures {
        rtt_ns: Percentiles::of(&rtt),
        round_trips,
        orders_per_sec,
    }))
}

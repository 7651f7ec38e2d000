//! The end-to-end throughput rows: one seller process and one buyer process pipelining
//! orders against a real market, with its journal unsynced and fsynced once per batch.

use std::io::BufRead;
use std::process::Command;

use super::{median, peer_command, start_market, stop_market, unique_name, BenchResult};
use crate::peers;

/// Runs of each throughput row: unsynced and fsynced by turns.
const ROUNDS: u32 = 3;

/// End-to-end orders/s with the journal unsynced and fsynced once per batch, measured
/// [`ROUNDS`] times each by turns; the median of each. Taken one after the other (unsynced,
/// then fsynced), a stretch of the shared machine's noise fell on one row and not the other
/// (their ratio read 0.32 to 0.52 in runs of like builds); by turns, each fsynced run has an
/// unsynced one beside it.
pub(super) fn by_turns(orders: u32, progress: &dyn Fn(&str)) -> BenchResult<(f64, f64)> {
    let (mut unsynced, mut fsynced) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let of = format!("(round {round} of {ROUNDS})");
        progress(&format!(
            "end-to-end orders/s (one seller process, one buyer process), journal not fsynced {of}"
        ));
        unsynced.push(orders_per_sec(orders, "none", &[])?);
        progress(&format!(
            "end-to-end orders/s, journal fsynced once per batch (the default) {of}"
        ));
        fsynced.push(orders_per_sec(orders, "batch", &[])?);
    }
    Ok((median(unsynced), median(fsynced)))
}

/// One seller process and one buyer process, each pipelining `orders` orders, against a
/// market journaling with `durability` (and `extra` arguments).
pub(super) fn orders_per_sec(orders: u32, durability: &str, extra: &[&str]) -> BenchResult<f64> {
    let name = unique_name("throughput");
    let market = start_market(&name, 1_000_000, durability, extra)?;
    let result = (|| {
        let command = |kind: &str| -> BenchResult<Command> {
            let mut c = peer_command(kind)?;
            c.args(["--name", name.as_str(), "--count", &orders.to_string()]);
            Ok(c)
        };
        // Both attached, then started together.
        let mut peers =
            peers::start_together([command("seller")?, command("buyer")?], "a bench peer")?;
        let mut slowest = 0f64;
        for peer in &mut peers {
            let mut line = String::new();
            peer.output.read_line(&mut line)?;
            let secs: f64 = line
                .trim()
                .parse()
                .map_err(|_| format!("bench peer failed: {line:?}"))?;
            slowest = slowest.max(secs);
        }
        Ok(2.0 * f64::from(orders) / slowest)
    })();
    stop_market(market)?;
    result
}

//! One log style: the market's own lines and the library's warnings read alike for people, and
//! are one JSON object per line for machines (`BOOKSTORE_LOG_FORMAT=json`).

mod common;

use std::os::unix::fs::FileExt;

use bookstore::layout::{HEADER_SIZE, SLOT_SIZE};
use common::*;

/// Runs a market with `format`, trades once, scribbles an invalid state word into slot 5 (a
/// warning), stops it, and returns its stdout and stderr.
fn market_run(format: &str) -> (String, String) {
    let m = Market::start_logging(&format!("log-{format}"), &["--slots", "8"], format);
    let sold = m.client("seller", &["sell", "Dune", "--price", "9.99", "--qty", "1"]);
    assert_eq!(code(&sold), 0, "{}", stderr(&sold));
    let bought = m.client("buyer", &["buy", "Dune", "--max-price", "10"]);
    assert_eq!(code(&bought), 0, "{}", stderr(&bought));
    let object = std::fs::OpenOptions::new()
        .write(true)
        .open(dev_shm(&m.name))
        .unwrap();
    let state = (HEADER_SIZE + 5 * SLOT_SIZE) as u64;
    object.write_all_at(&9u64.to_le_bytes(), state).unwrap();
    assert!(eventually(std::time::Duration::from_secs(5), || {
        m.inspect()["stats"]["warnings"]
            .as_array()
            .is_some_and(|w| {
                w.iter()
                    .any(|w| w["kind"] == "slot_reclaimed" && w["count"] == 1)
            })
    }));
    let out = m.stop_with_output();
    (stdout(&out), stderr(&out))
}

#[test]
fn people_get_sentences_and_warnings_without_timestamps_or_module_paths() {
    let (out, err) = market_run("human");
    assert!(out.contains("market: serving"), "{out}");
    assert!(out.contains("trade #1: 1 × \"Dune\" at 9.99"), "{out}");
    assert!(out.contains("market: stopped."), "{out}");
    let warning = err
        .lines()
        .find(|l| l.contains("invalid state word"))
        .unwrap_or_else(|| panic!("no warning in {err:?}"));
    assert_eq!(
        warning,
        "market: warning: slot has an invalid state word (slot=5, raw=9)"
    );
}

#[test]
fn machines_get_one_json_object_per_line_with_the_fields() {
    let (out, err) = market_run("json");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .chain(err.lines())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["program"] == "market" && l["unix_ms"].is_u64()));
    let trade = lines
        .iter()
        .find(|l| l["event"] == "trade")
        .expect("a trade line");
    assert_eq!(trade["trade_id"], 1);
    assert_eq!(trade["title"], "Dune");
    assert_eq!(trade["price_cents"], 999);
    let warning = lines
        .iter()
        .find(|l| l["level"] == "warn")
        .expect("a warning line");
    assert_eq!(warning["message"], "slot has an invalid state word");
    assert_eq!(warning["slot"], 5);
}

#[test]
fn an_unknown_log_format_is_a_usage_error_naming_the_variable() {
    let out = bookstore(&["inspect", "--name", "/bookstore-test-no-such"])
        .env("BOOKSTORE_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("BOOKSTORE_LOG_FORMAT"),
        "{}",
        stderr(&out)
    );
}

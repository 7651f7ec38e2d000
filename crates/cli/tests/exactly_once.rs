//! Orders applied exactly once across a market's restart: a one-order client whose market is
//! SIGKILLed mid-order waits for the next market (`--wait`), reattaches under its client id,
//! asks what became of its order and finishes with the right result and exit code, and
//! nothing is listed or bought twice.
//!
//! The market is killed in two windows: after it applied and journaled the order but before
//! it answered (every `fdatasync` held back by the test-only fault point
//! `BOOKSTORE_TEST_SYNC_STALL_MS`: replies wait for the disk), and before it read the order
//! at all (the market stopped with SIGSTOP).

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use rustix::process::Signal;

/// Long enough that the kill lands inside it: the order is applied and staged at once, and
/// its reply waits for this sync.
const STALL_MS: &str = "3000";
const SETTLE: Duration = Duration::from_millis(700);

/// Waits for the one-copy `seller`: it must end well, saying `said`, with its copy listed once
/// in `market`, which is then stopped. Returns the seller's output.
fn listed_once(market: Market, seller: std::process::Child, said: &str) -> std::process::Output {
    let out = seller.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(said), "{}", stdout(&out));
    let v = market.assert_balanced();
    let counts = (
        v["books_listed_total"].as_u64(),
        v["books_on_shelf"].as_u64(),
    );
    assert_eq!(counts, (Some(1), Some(1)), "listed once: {v:#}");
    market.stop();
    out
}

#[test]
fn a_seller_whose_market_died_after_applying_its_listing_hears_it_was_listed_and_it_is_listed_once()
{
    let mut market = Market::start_with_env(
        "once-sell",
        &[],
        &[("BOOKSTORE_TEST_SYNC_STALL_MS", STALL_MS)],
    );
    let seller = market.spawn_client("seller", &["--wait", "20", "sell", "Dune", "--price", "5"]);
    std::thread::sleep(SETTLE);
    market.kill();
    market.restart(&[]);
    let out = listed_once(market, seller, "listed 1 × \"Dune\" at 5.00");
    assert!(
        stderr(&out).contains("the order in flight will be asked about"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_buyer_whose_market_died_mid_buy_counts_what_it_bought_and_buys_only_the_rest() {
    let mut market = Market::start_with_env(
        "once-buy",
        &[],
        &[("BOOKSTORE_TEST_SYNC_STALL_MS", STALL_MS)],
    );
    // Two copies on the shelf, from a session that stays attached: a client that leaves is
    // journaled, and the sync of that would hold the market's loop when the buy comes.
    let mut seller = market.spawn_client_with_stdin("seller");
    let stdin = seller.stdin.as_mut().expect("piped");
    stdin.write_all(b"sell Dune 5 2\n").unwrap();
    let listed = eventually(Duration::from_secs(10), || {
        market.inspect()["books_on_shelf"] == 2
    });
    assert!(listed, "listed: {:#}", market.inspect());
    // The buy takes both at once and rests for the third; its replies wait for the disk.
    let buyer = market.spawn_client(
        "buyer",
        &[
            "--wait",
            "20",
            "buy",
            "Dune",
            "--max-price",
            "5",
            "--qty",
            "3",
            "--timeout",
            "30",
        ],
    );
    std::thread::sleep(SETTLE);
    market.kill();
    // The restart cancels the resting rest; the buyer learns it bought 2 and buys 1 anew.
    market.restart(&[]);
    let waiting = eventually(Duration::from_secs(10), || {
        market.inspect()["resting_buys"] == 1
    });
    assert!(
        waiting,
        "the buyer rests for the one copy left: {:#}",
        market.inspect()
    );
    let out = market.client("seller", &["sell", "Dune", "--price", "4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = buyer.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("bought 2 more while the market restarted, for 10.00 in all"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("filled: 3 of 3, spent 14.00"),
        "{}",
        stdout(&out)
    );
    let v = market.assert_balanced();
    assert_eq!(
        (v["books_sold_total"].as_u64(), v["books_on_shelf"].as_u64()),
        (Some(3), Some(0)),
        "three copies sold, none twice: {v:#}"
    );
    seller.kill().unwrap();
    seller.wait().unwrap();
    market.stop();
}

#[test]
fn an_order_the_dead_market_never_read_is_sent_again_and_applied_once() {
    let mut market = Market::start("once-unread", &[]);
    let child = market.child.as_ref().expect("running");
    signal(child, Signal::STOP);
    let seller = market.spawn_client("seller", &["--wait", "20", "sell", "Emma", "--price", "3"]);
    std::thread::sleep(SETTLE);
    market.kill();
    market.restart(&[]);
    listed_once(market, seller, "listed 1 × \"Emma\" at 3.00");
}

#[test]
fn without_wait_a_client_whose_market_died_mid_order_says_the_outcome_is_unknown() {
    let mut market = Market::start_with_env(
        "once-nowait",
        &[],
        &[("BOOKSTORE_TEST_SYNC_STALL_MS", STALL_MS)],
    );
    let seller = market.spawn_client("seller", &["--wait", "0", "sell", "Dune", "--price", "5"]);
    std::thread::sleep(SETTLE);
    market.kill();
    let out = seller.wait_with_output().unwrap();
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out)
            .contains("the order's outcome is unknown (pass --wait to ask the next market)"),
        "{}",
        stderr(&out)
    );
    market.restart(&[]);
    market.stop();
}

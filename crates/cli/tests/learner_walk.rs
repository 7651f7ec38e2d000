//! What a learner sees on the way through the lab: clients that say they are waiting, a market
//! that says a seller waits for room, a session that announces sales as they happen.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_seller_with_no_market_says_at_once_that_it_waits() {
    let name = unique_name("no-market-yet");
    let started = Instant::now();
    let mut child = bookstore(&[
        "seller", "--name", &name, "--wait", "2", "sell", "Dune", "--price", "5",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut said).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "said at once");
    assert!(said.contains("waiting up to 2s for a market on"), "{said}");
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn the_market_says_when_a_seller_waits_for_room() {
    let name = unique_name("full-notice");
    let market = bookstore(&["market", "--name", &name, "--capacity", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || dev_shm(&name).exists()));
    let sell = |title: &str| {
        run(&[
            "seller",
            "--name",
            &name,
            "--wait",
            "5",
            "sell",
            title,
            "--price",
            "5",
            "--timeout",
            "0.3",
        ])
    };
    assert_eq!(code(&sell("Dune")), 0);
    assert_eq!(code(&sell("Emma")), 4, "the store stayed full");
    let out = run(&["market", "--stop", "--name", &name]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = market.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(
        text.contains("store full: seller ") && text.contains(" waiting for room"),
        "{text}"
    );
    assert_eq!(
        text.matches("store full: seller ").count(),
        1,
        "said once a second at most: {text}"
    );
    assert!(text.contains("This run: "), "{text}");
    remove_journal(&name);
    let _ = std::fs::remove_file(lock_path(&name));
}

#[test]
fn a_session_announces_a_sale_as_it_happens() {
    let market = Market::start("notice", &[]);
    let mut seller = bookstore(&["seller", "--name", &market.name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = seller.stdin.take().unwrap();
    stdin.write_all(b"sell Dune 5\n").unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        market.inspect()["books_on_shelf"] == 1
    }));
    let out = market.client("buyer", &["buy", "Dune", "--max-price", "5"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // No further command: the old session printed a sale only while waiting for the next order.
    std::thread::sleep(Duration::from_millis(400));
    drop(stdin);
    let out = seller.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sold 1 × \"Dune\" at 5.00"), "{text}");
    market.stop();
}

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
    let (seller, stdin) = a_session_that_listed_dune(&market, &[]);
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

/// A seller's stdin session (with `extra` arguments) that listed one "Dune" at 5.00 and waits
/// for its next line; its stdin, to end it.
fn a_session_that_listed_dune(
    market: &Market,
    extra: &[&str],
) -> (std::process::Child, std::process::ChildStdin) {
    let mut seller = bookstore(&[&["seller", "--name", &market.name], extra].concat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = seller.stdin.take().unwrap();
    stdin.write_all(b"sell Dune 5\n").unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        market.inspect()["books_on_shelf"] == 1
    }));
    (seller, stdin)
}

/// Voluntary context switches of every thread of process `pid` so far.
fn sleeps_of(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap());
    }
    total
}

#[test]
fn an_idle_session_sleeps_until_a_line_a_sale_or_its_markets_end() {
    let mut market = Market::start("idle-session", &[]);
    let (mut seller, stdin) = a_session_that_listed_dune(&market, &["--wait", "0"]);
    // Idle: no line, no reply. It used to look for notices every 50 ms and for its market
    // every 500 ms (~22 wake-ups a second); now nothing wakes it.
    std::thread::sleep(Duration::from_millis(200));
    let before = sleeps_of(seller.id());
    std::thread::sleep(Duration::from_secs(1));
    let woken = sleeps_of(seller.id()) - before;
    assert!(woken <= 2, "an idle session woke {woken} times in a second");
    // A sale wakes it at once, with no line typed.
    let out = market.client("buyer", &["buy", "Dune", "--max-price", "5"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The end of its market wakes it too (the kernel, through the doorbell's guardian).
    std::thread::sleep(Duration::from_millis(200));
    let killed = Instant::now();
    market.kill();
    assert!(
        eventually(Duration::from_secs(2), || seller
            .try_wait()
            .unwrap()
            .is_some()),
        "the session did not notice its market's end"
    );
    let noticed = killed.elapsed();
    assert!(
        noticed < Duration::from_secs(1),
        "noticed after {noticed:?}"
    );
    let out = seller.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sold 1 × \"Dune\" at 5.00"), "{text}");
    drop(stdin);
    let _ = std::fs::remove_file(dev_shm(&market.name));
}

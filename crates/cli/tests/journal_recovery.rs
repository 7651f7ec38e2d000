//! The journal across real market processes: restarts after SIGKILL, torn and corrupt files,
//! `--fresh`, a capacity that does not match, and a journal held by another market.

mod common;

use std::time::Duration;

use common::*;

/// The length of a journal's file header: the first record starts after it.
const HEADER: usize = bookstore::journal::format::FILE_HEADER_LEN;

fn sell(market: &Market, title: &str, price: &str, qty: &str) {
    let out = market.client("seller", &["sell", title, "--price", price, "--qty", qty]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

fn buy(market: &Market, title: &str, max_price: &str, qty: &str) -> String {
    let out = market.client(
        "buyer",
        &[
            "buy",
            title,
            "--max-price",
            max_price,
            "--qty",
            qty,
            "--timeout",
            "0",
        ],
    );
    stdout(&out)
}

#[test]
fn a_market_killed_and_restarted_keeps_its_shelf_and_trade_ids_but_not_gone_clients_buys() {
    let mut market = Market::start("restart", &["--capacity", "20"]);
    sell(&market, "Dune", "5", "4");
    sell(&market, "Emma", "7", "3");
    assert!(buy(&market, "Dune", "5", "1").contains("trade #1"));
    // A buyer whose buy rests when the market dies.
    let resting = market.spawn_client(
        "buyer",
        &[
            "--wait",
            "0",
            "buy",
            "Ulysses",
            "--max-price",
            "9",
            "--timeout",
            "60",
        ],
    );
    assert!(eventually(Duration::from_secs(2), || {
        market.inspect()["resting_buys"] == 1
    }));
    let before = market.assert_balanced();

    market.kill();
    let out = resting.wait_with_output().unwrap();
    assert_eq!(code(&out), 3, "the waiting buyer says the market exited");
    assert!(stderr(&out).contains("exited"), "{}", stderr(&out));
    market.restart(&[]);

    let after = market.assert_balanced();
    for key in [
        "books_listed_total",
        "books_sold_total",
        "books_on_shelf",
        "trades_total",
    ] {
        assert_eq!(after[key], before[key], "{key} survives the crash");
    }
    assert_eq!(
        after["resting_buys"], 0,
        "the gone buyer's buy is not revived"
    );
    assert_eq!(after["capacity"], 20, "capacity comes from the journal");
    // Trade ids carry on, and a new copy of Ulysses is not sold to the gone buyer.
    assert!(buy(&market, "Dune", "5", "1").contains("trade #2"));
    sell(&market, "Ulysses", "8", "1");
    assert_eq!(market.assert_balanced()["books_on_shelf"], 6);
    market.stop();
}

#[test]
fn a_torn_last_record_is_cut_off_and_reported() {
    let mut market = Market::start("torn", &[]);
    sell(&market, "Dune", "5", "2");
    market.kill();
    let path = journal_path(&market.name);
    let good_len = records_end(&market.name);
    assert!(
        std::fs::metadata(&path).unwrap().len() > good_len,
        "a killed market leaves its preallocated space"
    );
    // Half a record, as a crash in the middle of copying it leaves it: before the zeros.
    write_at(
        &path,
        good_len,
        &[40, 0, 0, 0, !40, 0xff, 0xff, 0xff, 1, 2, 3],
    );
    let out = bookstore(&["market", "--name", &market.name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    market.child = Some(out);
    market.wait_ready();
    assert_eq!(market.assert_balanced()["books_on_shelf"], 2);
    let child = market.child.take().unwrap();
    signal(&child, rustix::process::Signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert!(
        stdout(&out).contains(&format!("cut off a torn last record at offset {good_len}")),
        "{}",
        stdout(&out)
    );
    // The torn bytes are gone: what follows the good records now is the new market's (a
    // `Restart` if the seller had not left before the kill), and a clean stop leaves the
    // records only.
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        len,
        records_end(&market.name),
        "a clean stop leaves the records only"
    );
    let out = run(&["journal", "--name", &market.name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["torn_tail"].is_null(), "the torn tail is cut off: {v:#}");
    assert!(len >= good_len);
    assert!(!dev_shm(&market.name).exists());
}

#[test]
fn corruption_before_the_last_record_stops_the_market_naming_the_offset() {
    let mut market = Market::start("corrupt", &[]);
    sell(&market, "Dune", "5", "2");
    sell(&market, "Emma", "6", "1");
    market.kill();
    let path = journal_path(&market.name);
    let mut bytes = std::fs::read(&path).unwrap();
    // The first record starts after the file header; damage its payload.
    bytes[HEADER + 12 + 10] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let out = run(&["market", "--name", &market.name]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("record at offset {HEADER}: checksum mismatch")),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was changed");
    // The stale object is still there (the journal is checked before the store is touched).
    std::fs::remove_file(dev_shm(&market.name)).unwrap();
    // --fresh starts over and keeps the damaged journal aside.
    market.restart(&["--fresh"]);
    assert_eq!(market.assert_balanced()["books_listed_total"], 0);
    let dir = path.parent().unwrap();
    let stem = path.file_name().unwrap().to_str().unwrap().to_owned();
    let aside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(&stem) && n.ends_with(".old")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), bytes);
    std::fs::remove_file(&aside[0]).unwrap();
    market.stop();
}

#[test]
fn a_capacity_other_than_the_journals_is_refused_with_exit_2_and_changes_nothing() {
    let mut market = Market::start("capacity", &["--capacity", "10"]);
    market.kill();
    std::fs::remove_file(dev_shm(&market.name)).unwrap();
    // With a torn tail too: a refusal changes nothing, not even the tail.
    let path = journal_path(&market.name);
    write_at(&path, records_end(&market.name), &[9, 9, 9]);
    let torn = std::fs::read(&path).unwrap();
    let out = run(&["market", "--name", &market.name, "--capacity", "11"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("capacity 10, not 11"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        torn,
        "the refused start changed nothing"
    );
    market.restart(&["--capacity", "10"]);
    market.stop();
}

#[test]
fn a_journal_in_use_by_another_market_is_refused() {
    let market = Market::start("locked", &[]);
    let path = journal_path(&market.name);
    let other = unique_name("locked-other");
    let out = run(&[
        "market",
        "--name",
        &other,
        "--journal",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("in use by another market"),
        "{}",
        stderr(&out)
    );
    assert!(!dev_shm(&other).exists());
    // On its own name, the refusal names the running market.
    let out = run(&["market", "--name", &market.name]);
    assert_eq!(code(&out), 7);
    let pid = market.child.as_ref().unwrap().id();
    assert!(
        stderr(&out).contains(&format!("pid {pid}")),
        "{}",
        stderr(&out)
    );
    market.stop();
}

#[test]
fn every_durability_mode_replays_the_same_books() {
    for durability in ["none", "batch", "always"] {
        let mut market = Market::start("durability", &["--durability", durability]);
        sell(&market, "Dune", "5", "3");
        buy(&market, "Dune", "5", "2");
        market.kill();
        market.restart(&[]);
        let v = market.assert_balanced();
        assert_eq!(
            (
                v["books_listed_total"].as_u64(),
                v["books_on_shelf"].as_u64()
            ),
            (Some(3), Some(1)),
            "{durability}"
        );
        market.stop();
    }
}

#[test]
fn the_journal_command_shows_the_records_a_torn_tail_and_the_replayed_books() {
    let mut market = Market::start("journal-cmd", &[]);
    sell(&market, "Dune", "5", "3");
    assert!(buy(&market, "Dune", "5", "1").contains("trade #1"));
    market.kill();
    std::fs::remove_file(dev_shm(&market.name)).unwrap();
    let path = journal_path(&market.name);
    let good_len = records_end(&market.name);
    let size = std::fs::metadata(&path).unwrap().len();
    write_at(&path, good_len, &[1, 2, 3]);

    let out = run(&["journal", "--name", &market.name, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["lists"].as_u64(), v["buys"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (
            v["books_listed_total"].as_u64(),
            v["books_sold_total"].as_u64(),
            v["books_on_shelf"].as_u64(),
            v["next_trade_id"].as_u64()
        ),
        (Some(3), Some(1), Some(2), Some(2))
    );
    assert_eq!(v["torn_tail"]["offset"].as_u64(), Some(good_len));
    assert_eq!(v["balanced"], true);

    let out = run(&["journal", "--name", &market.name, "--records"]);
    let text = stdout(&out);
    assert!(
        text.contains("list    client ") && text.contains(" request 1: 3 × \"Dune\" at 5.00"),
        "{text}"
    );
    assert!(text.contains("buy     client "), "{text}");
    assert!(text.contains("gone    client "), "{text}");
    assert!(
        text.contains(&format!("tail: 3 torn bytes at offset {good_len}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "records end at offset {good_len}; {} bytes after them are preallocated",
            size - good_len - 3
        )),
        "{text}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "read only");

    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER + 12] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let out = run(&["journal", "--name", &market.name]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    let offset = format!("offset {HEADER}");
    assert!(stderr(&out).contains(&offset), "{}", stderr(&out));
}

#[test]
fn a_seller_waiting_for_room_carries_on_with_the_next_market_after_a_crash() {
    let mut market = Market::start("seller-waits", &["--capacity", "1"]);
    sell(&market, "Dune", "5", "1");
    let waiting = market.spawn_client(
        "seller",
        &[
            "--wait",
            "10",
            "sell",
            "Emma",
            "--price",
            "3",
            "--timeout",
            "20",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    market.kill();
    market.restart(&[]);
    assert!(buy(&market, "Dune", "5", "1").contains("trade #1"));
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("listed 1 × \"Emma\""),
        "{}",
        stdout(&out)
    );
    // The market died between two of its retries (nothing in flight), or while one was in
    // flight (then the next market is asked about it): either way it is listed once.
    let err = stderr(&out);
    assert!(
        err.contains("exited while the store was full; \"Emma\" is not listed yet")
            || err.contains("the order in flight will be asked about"),
        "{err}"
    );
    let v = market.assert_balanced();
    assert_eq!(
        (
            v["books_listed_total"].as_u64(),
            v["books_on_shelf"].as_u64()
        ),
        (Some(2), Some(1))
    );
    market.stop();
}

/// Pipelined group commit keeps "nothing visible that is not durable": with every `fdatasync`
/// held back (a test-only fault point), a listing is applied and journaled into the page cache
/// but its seller hears nothing; killed in that window, the market never acknowledged it. A
/// second seller, left to wait, is answered only after the sync.
#[test]
fn a_reply_is_never_seen_before_its_batch_is_on_disk() {
    const STALL_MS: u64 = 1500;
    let stall = STALL_MS.to_string();
    let mut market = Market::start_with_env(
        "unsynced",
        &[],
        &[("BOOKSTORE_TEST_SYNC_STALL_MS", stall.as_str())],
    );
    let started = std::time::Instant::now();
    let waited = market.spawn_client("seller", &["sell", "Emma", "--price", "3"]);
    let out = waited.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        started.elapsed() >= Duration::from_millis(STALL_MS),
        "answered after {:?}, before the sync could finish",
        started.elapsed()
    );

    // The first seller's leaving is journaled too, and its (stalled) sync holds the market's
    // loop: the view shows no client once it is done, so the next request is read at once.
    let left = eventually(Duration::from_secs(5), || {
        market.inspect()["clients"]
            .as_array()
            .is_some_and(|c| c.is_empty())
    });
    assert!(left, "the first seller left: {:#}", market.inspect());
    let mut killed =
        market.spawn_client("seller", &["--wait", "0", "sell", "Dune", "--price", "5"]);
    std::thread::sleep(Duration::from_millis(STALL_MS / 2));
    assert!(
        killed.try_wait().unwrap().is_none(),
        "the seller heard back before its batch was durable"
    );
    market.kill();
    let out = killed.wait_with_output().unwrap();
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    assert!(!stdout(&out).contains("listed"), "{}", stdout(&out));
    std::fs::remove_file(dev_shm(&market.name)).unwrap();
    market.restart(&[]);
    // The unacknowledged listing was staged in the page cache, which outlives the market, so
    // the journal holds it (applied, never acknowledged: a seller learns of it from the shelf).
    assert_eq!(market.assert_balanced()["books_on_shelf"], 2);
    market.stop();
}

/// Where the records of the store `name`'s journal end, as `bookstore journal` reads it (the
/// file goes on with the zeros a killed market preallocated).
fn records_end(name: &str) -> u64 {
    let out = run(&["journal", "--name", name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["records_end_bytes"].as_u64().expect("records_end_bytes")
}

/// How many records the store `name`'s journal holds, as `bookstore journal` reads it.
fn journal_records(name: &str) -> u64 {
    let out = run(&["journal", "--name", name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["records"].as_u64().expect("records")
}

/// Writes `bytes` at `offset` of the file, in place.
fn write_at(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, offset)
        .unwrap();
}

#[test]
fn after_a_clean_stop_a_restart_replays_nothing_from_the_snapshot_and_keeps_recent_trades() {
    let mut market = Market::start("snapclean", &["--capacity", "20"]);
    sell(&market, "Dune", "5", "4");
    assert!(buy(&market, "Dune", "5", "1").contains("trade #1"));
    let before = market.assert_balanced();
    market.stop_for_restart();
    // A listing, a buy, and each client leaving (if the market saw it before it stopped).
    let records = journal_records(&market.name);
    let out = run(&["journal", "--name", &market.name, "--verify"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let verified =
        format!("verify: every checksum holds ({records} records in 1 segment, 1 snapshot)");
    assert!(stdout(&out).contains(&verified), "{}", stdout(&out));
    let line = start_line(&mut market, &[]);
    let replayed = format!("replayed 0 commands from the snapshot at command {records}");
    assert!(line.contains(&replayed), "{line}");
    market.restart(&[]);
    let after = market.assert_balanced();
    assert_eq!(after["books_on_shelf"], before["books_on_shelf"]);
    assert_eq!(after["trades"], before["trades"]);
    assert_eq!(
        after["recent_trades"].as_array().map(Vec::len),
        Some(1),
        "{after}"
    );
    assert!(buy(&market, "Dune", "5", "1").contains("trade #2"));
    market.stop();
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_journal_with_a_warning_and_loses_nothing() {
    let mut market = Market::start("snapbad", &["--capacity", "20"]);
    sell(&market, "Dune", "5", "4");
    market.stop_for_restart();
    let journal = journal_path(&market.name);
    let snapshots = snapshots_of(&journal);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let mut bytes = std::fs::read(&snapshots[0]).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&snapshots[0], &bytes).unwrap();
    // `bookstore journal` shows it unusable, and `--verify` refuses, naming the file.
    let out = run(&["journal", "--name", &market.name]);
    assert!(
        stdout(&out).contains("NOT usable (checksum mismatch"),
        "{}",
        stdout(&out)
    );
    let out = run(&["journal", "--name", &market.name, "--verify"]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    let named = format!(
        "verify: snapshot {}: checksum mismatch",
        snapshots[0].display()
    );
    assert!(stderr(&out).contains(&named), "{}", stderr(&out));
    let out = run(&["journal", "--name", &market.name, "--upto", "0"]);
    assert!(
        stdout(&out).contains("replayed up to command 0: 0 listed = 0 sold + 0 on the shelf"),
        "{}",
        stdout(&out)
    );
    // Every record: the listing, and its seller leaving if the market saw it leave before it
    // stopped (journaled: it had receipts to forget). Counted before the start, which may add
    // a `Restart`.
    let records = journal_records(&market.name);
    let line = start_line(&mut market, &[]);
    assert!(line.contains("is not usable (checksum mismatch"), "{line}");
    assert!(
        line.contains(&format!("replayed {records} commands:")),
        "{line}"
    );
    market.restart(&[]);
    assert_eq!(market.assert_balanced()["books_on_shelf"], 4);
    market.stop();
}

/// A market killed at each step of writing a snapshot (a test-only fault point aborts it
/// there: before writing, written but not synced, synced but not renamed, renamed before the
/// directory's fsync, after it): the next start uses the last whole snapshot or the journal,
/// and loses nothing.
#[test]
fn a_market_killed_at_any_step_of_writing_a_snapshot_restarts_with_everything() {
    for step in [
        "before-write",
        "after-write",
        "after-file-sync",
        "after-rename",
        "after-dir-sync",
    ] {
        let mut market = Market::start(&format!("snapkill-{step}"), &["--capacity", "20"]);
        sell(&market, "Dune", "5", "4");
        market.stop_for_restart();
        // The crash comes while writing the snapshot of the clean stop.
        market.restart_with_env(&[], &[("BOOKSTORE_TEST_SNAPSHOT_CRASH", step)]);
        sell(&market, "Emma", "3", "2");
        let child = market.child.take().unwrap();
        signal(&child, rustix::process::Signal::TERM);
        let out = child.wait_with_output().unwrap();
        assert!(
            !out.status.success(),
            "{step}: the fault point aborts the market"
        );
        let _ = std::fs::remove_file(dev_shm(&market.name));
        market.restart(&[]);
        let v = market.assert_balanced();
        assert_eq!(v["books_on_shelf"], 6, "{step}: {v}");
        market.stop();
    }
}

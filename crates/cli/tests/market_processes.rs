//! The market, sellers and buyers as separate OS processes of the real binary, each test on
//! its own store name; every test checks the books balance and /dev/shm is clean afterwards.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

#[test]
fn seller_then_buyer_trade_at_the_listing_price_and_the_books_balance() {
    let market = Market::start("trade", &[]);
    let sell = market.client(
        "seller",
        &["sell", "Dune", "--price", "12.50", "--qty", "3"],
    );
    assert_eq!(code(&sell), 0, "{}", stderr(&sell));
    assert!(stdout(&sell).contains("listed 3 × \"Dune\" at 12.50"));
    let buy = market.client("buyer", &["buy", "Dune", "--max-price", "13", "--qty", "2"]);
    assert_eq!(code(&buy), 0, "{}", stderr(&buy));
    assert!(
        stdout(&buy).contains("at 12.50"),
        "paid the listing's price: {}",
        stdout(&buy)
    );
    let v = market.assert_balanced();
    assert_eq!(v["capacity"], 100);
    assert_eq!(v["books_on_shelf"], 1);
    assert_eq!(v["books_sold_total"], 2);
    assert_eq!(v["trades_total"], 1);
    assert_eq!(v["shelf"][0]["title"], "Dune");
    assert_eq!(v["shelf"][0]["price_cents"], 1250);
    assert_eq!(v["shelf"][0]["qty"], 1);
    assert!(
        v["clients"].as_array().unwrap().is_empty(),
        "clients detached: {v:#}"
    );
    market.stop();
}

#[test]
fn buyer_exits_4_when_nothing_matches_and_5_when_partly_filled() {
    let market = Market::start("timeouts", &[]);
    assert_eq!(
        code(&market.client("seller", &["sell", "Emma", "--price", "9.99"])),
        0
    );
    let none = market.client(
        "buyer",
        &["buy", "Emma", "--max-price", "9.98", "--timeout", "0.3"],
    );
    assert_eq!(code(&none), 4, "{}", stderr(&none));
    assert!(stderr(&none).contains("nothing at or below 9.98"));
    let partial = market.client(
        "buyer",
        &[
            "buy",
            "--any",
            "--max-price",
            "10",
            "--qty",
            "3",
            "--timeout",
            "0.3",
        ],
    );
    assert_eq!(code(&partial), 5, "{}", stderr(&partial));
    assert!(stderr(&partial).contains("1 of 3"), "{}", stderr(&partial));
    let v = market.assert_balanced();
    assert_eq!(v["resting_buys"], 0, "expired buys do not linger");
    market.stop();
}

#[test]
fn seller_waits_while_the_store_is_full_and_lists_once_a_buyer_makes_room() {
    let market = Market::start("full", &["--capacity", "2"]);
    assert_eq!(
        code(&market.client("seller", &["sell", "Dune", "--price", "5", "--qty", "2"])),
        0
    );
    let waiting = market.spawn_client(
        "seller",
        &["sell", "Emma", "--price", "6", "--timeout", "10"],
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        code(&market.client("buyer", &["buy", "Dune", "--max-price", "5"])),
        0
    );
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("store is full"),
        "said it was waiting: {}",
        stderr(&out)
    );
    let v = market.assert_balanced();
    assert_eq!(v["books_on_shelf"], 2);
    market.stop();
}

#[test]
fn seller_gives_up_with_exit_4_when_the_store_stays_full() {
    let market = Market::start("stays-full", &["--capacity", "1"]);
    assert_eq!(
        code(&market.client("seller", &["sell", "Dune", "--price", "5"])),
        0
    );
    let out = market.client(
        "seller",
        &["sell", "Emma", "--price", "5", "--timeout", "0.3"],
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let too_big = market.client("seller", &["sell", "Emma", "--price", "5", "--qty", "2"]);
    assert_eq!(code(&too_big), 6, "never fits: {}", stderr(&too_big));
    assert_eq!(market.assert_balanced()["books_listed_total"], 1);
    market.stop();
}

#[test]
fn many_sellers_and_buyers_in_parallel_keep_the_books_balanced() {
    let market = Market::start("parallel", &["--capacity", "10"]);
    let sellers: Vec<_> = (0..3)
        .map(|s| {
            let script: String = (0..40)
                .map(|i| format!("sell \"Book {}\" {}.00 1 20\n", i % 5, 5 + s))
                .collect();
            let name = market.name.clone();
            std::thread::spawn(move || {
                run_with_stdin(&["seller", "--name", &name, "--quiet"], &script)
            })
        })
        .collect();
    let buyers: Vec<_> = (0..3)
        .map(|_| {
            let script = "buy --any 20 2 20\n".repeat(20);
            let name = market.name.clone();
            std::thread::spawn(move || {
                run_with_stdin(&["buyer", "--name", &name, "--quiet"], &script)
            })
        })
        .collect();
    for t in sellers.into_iter().chain(buyers) {
        let out = t.join().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let v = market.assert_balanced();
    assert_eq!(v["books_listed_total"], 120);
    assert_eq!(v["books_sold_total"], 120);
    assert_eq!(v["books_on_shelf"], 0);
    market.stop();
}

#[test]
fn stdin_session_reports_a_bad_line_carries_on_and_exits_0_when_every_order_succeeded() {
    let market = Market::start("stdin", &[]);
    let script = "sell \"Dune\" 9.99 2\nsell \"\" 1\nsell 'The Trial' 5\nbogus\nlist\n";
    let out = run_with_stdin(&["seller", "--name", &market.name], script);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("shelf 3/100 books"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("(line skipped)"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("title: must not be empty"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("unknown command \"bogus\""));
    assert_eq!(market.assert_balanced()["books_on_shelf"], 3);
    market.stop();
}

#[test]
fn a_client_started_before_the_market_waits_for_it() {
    let name = unique_name("late-market");
    let buyer = bookstore(&[
        "buyer",
        "--name",
        &name,
        "--wait",
        "10",
        "buy",
        "Dune",
        "--max-price",
        "10",
        "--timeout",
        "10",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let market = Market::start_named(name, &[]);
    assert_eq!(
        code(&market.client("seller", &["sell", "Dune", "--price", "8"])),
        0
    );
    let out = buyer.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    market.assert_balanced();
    market.stop();
}

#[test]
fn a_client_with_no_market_exits_3_after_its_wait_with_a_clear_message() {
    let name = unique_name("no-market");
    let out = run(&[
        "buyer",
        "--name",
        &name,
        "--wait",
        "0.2",
        "buy",
        "--any",
        "--max-price",
        "1",
    ]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("no market is running"),
        "{}",
        stderr(&out)
    );
    assert!(!dev_shm(&name).exists());
}

#[test]
fn a_second_market_on_the_same_name_is_refused_with_the_first_ones_pid() {
    let market = Market::start("twice", &[]);
    let pid = market.child.as_ref().unwrap().id();
    let out = run(&["market", "--name", &market.name]);
    assert_eq!(code(&out), 7);
    assert!(
        stderr(&out).contains(&format!("already running on {} (pid {pid})", market.name)),
        "{}",
        stderr(&out)
    );
    market.assert_balanced();
    market.stop();
}

#[test]
fn market_removes_its_object_on_sigint_as_on_sigterm() {
    let mut market = Market::start("sigint", &[]);
    let mut child = market.child.take().unwrap();
    signal(&child, rustix::process::Signal::INT);
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(!dev_shm(&market.name).exists());
}

#[test]
fn an_idle_market_spins_once_then_stays_parked() {
    // Told to spin for 300 ms before parking, with nobody attached: it spins once, then parks
    // (waking every 50 ms for its housekeeping) and must not spin again after each wake.
    let market = Market::start("idle-parks", &["--spin-us", "300000"]);
    let pid = market.child.as_ref().expect("market running").id();
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 1.0,
        "an idle market with --spin-us 300000 used {used:.2} s of CPU in 2 s: it spins after every park"
    );
    market.stop();
}

#[test]
fn a_market_told_to_stop_with_its_parent_stops_cleanly_when_the_parent_is_killed() {
    // What `bookstore bench` does for its markets: a shell stands in for the bench, starts
    // the market with its own pid, and is killed with SIGKILL (no chance to stop it).
    let name = unique_name("orphan");
    let script = format!(
        "{BIN} market --name {name} --quiet --spin-us 1000000 --stop-with-parent $$ & sleep 60"
    );
    let mut shell = in_test_env(std::process::Command::new("sh"))
        .args(["-c", &script])
        .spawn()
        .expect("sh starts");
    assert!(
        eventually(Duration::from_secs(30), || dev_shm(&name).exists()),
        "the market started"
    );
    signal(&shell, rustix::process::Signal::KILL);
    shell.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !dev_shm(&name).exists()),
        "the market stopped and removed {name} once its parent was gone"
    );
    remove_journal(&name);
}

/// The CPU time a process used so far (user and system, all its threads), from
/// `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // The fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

#[test]
fn market_stop_flag_stops_the_running_market() {
    let market = Market::start("stop-flag", &[]);
    let out = run(&["market", "--name", &market.name, "--stop"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut market = market;
    assert!(market.child.take().unwrap().wait().unwrap().success());
    assert!(!dev_shm(&market.name).exists());
}

#[test]
fn a_stale_object_whose_market_was_killed_is_replaced_and_inspect_says_it_is_stale() {
    let mut first = Market::start("stale", &[]);
    let mut child = first.child.take().unwrap();
    signal(&child, rustix::process::Signal::KILL);
    child.wait().unwrap();
    assert!(
        dev_shm(&first.name).exists(),
        "SIGKILL leaves the object behind"
    );
    let out = run(&["inspect", "--name", &first.name]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("is NOT running"), "{}", stdout(&out));
    let out = run(&[
        "buyer",
        "--name",
        &first.name,
        "--wait",
        "0.2",
        "buy",
        "--any",
        "--max-price",
        "1",
    ]);
    assert_eq!(
        code(&out),
        3,
        "a client of a dead market gets a clear error: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("has exited"), "{}", stderr(&out));
    let second = Market::start_named(first.name.clone(), &[]);
    second.assert_balanced();
    second.stop();
}

#[test]
fn buyer_killed_while_waiting_has_its_resting_buy_cancelled() {
    let market = Market::start("dead-buyer", &[]);
    let mut buyer = market.spawn_client(
        "buyer",
        &["buy", "Dune", "--max-price", "10", "--timeout", "60"],
    );
    assert!(eventually(Duration::from_secs(5), || market.inspect()
        ["resting_buys"]
        == 1));
    signal(&buyer, rustix::process::Signal::KILL);
    buyer.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(1), || market.inspect()["resting_buys"]
            == 0),
        "the dead buyer's resting buy is cancelled within a second"
    );
    assert_eq!(
        code(&market.client("seller", &["sell", "Dune", "--price", "5"])),
        0
    );
    let v = market.assert_balanced();
    assert_eq!(v["books_on_shelf"], 1, "nothing was sold to the dead buyer");
    // Both the dead buyer's slot and the seller's (it detached a moment ago) are released.
    assert!(
        eventually(Duration::from_secs(1), || market.slots_in_use() == 0),
        "its slot was reclaimed: {:#}",
        market.inspect()
    );
    market.stop();
}

/// The buyer parks for its reply with no timeout of its own but its buy's (60 s): only the
/// kernel, marking the doorbell the market's alarm thread guarded, can wake it at once.
#[test]
fn a_client_whose_market_is_killed_is_woken_by_the_kernel_and_returns_within_a_second() {
    let mut market = Market::start("dead-market", &[]);
    // Without --wait: it does not wait for a next market to ask about its buy.
    let buyer = market.spawn_client(
        "buyer",
        &[
            "--wait",
            "0",
            "buy",
            "Dune",
            "--max-price",
            "10",
            "--timeout",
            "60",
        ],
    );
    assert!(eventually(Duration::from_secs(5), || market.inspect()
        ["resting_buys"]
        == 1));
    let mut child = market.child.take().unwrap();
    signal(&child, rustix::process::Signal::KILL);
    child.wait().unwrap();
    let started = std::time::Instant::now();
    let out = buyer.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("exited"), "{}", stderr(&out));
    // The buyer's doorbell (slot 0's) says its guardian died: the kernel wrote that.
    let word = word_in_object(&market.name, slot_doorbell_at(0));
    assert_eq!(
        word,
        bookstore_ipc::doorbell::GUARDIAN_DIED,
        "slot 0's doorbell word: {word:#x}"
    );
    let _ = std::fs::remove_file(dev_shm(&market.name));
}

#[test]
fn bad_command_line_values_name_the_field_and_exit_2() {
    let name = unique_name("bad-args");
    let cases: &[(&[&str], &str)] = &[
        (
            &["seller", "--name", &name, "sell", "Dune", "--price", "-1"],
            "price",
        ),
        (
            &[
                "seller", "--name", &name, "sell", "Dune", "--price", "1.234",
            ],
            "price",
        ),
        (
            &[
                "seller", "--name", &name, "sell", "Dune", "--price", "2000000",
            ],
            "price",
        ),
        (
            &[
                "seller", "--name", &name, "sell", "Dune", "--price", "1", "--qty", "0",
            ],
            "qty",
        ),
        (
            &["seller", "--name", &name, "sell", "", "--price", "1"],
            "title",
        ),
        (
            &[
                "buyer",
                "--name",
                "/a/b",
                "buy",
                "--any",
                "--max-price",
                "1",
            ],
            "name",
        ),
        (
            &[
                "buyer",
                "--name",
                "noslash",
                "buy",
                "--any",
                "--max-price",
                "1",
            ],
            "name",
        ),
        (&["market", "--name", &name, "--mode", "9999"], "mode"),
        (
            &["market", "--name", &name, "--stream", "a.b", "--nats", "x"],
            "stream",
        ),
        (
            &[
                "market",
                "--name",
                &name,
                "--lease-ttl",
                "0.1",
                "--nats",
                "x",
            ],
            "lease-ttl",
        ),
        (&["standby", "--name", &name, "--stream", "s"], "--nats"),
        (&["standby", "--name", &name, "--nats", "x"], "--stream"),
        (&["seller", "--name", &name, "--standby", "noslash"], "name"),
    ];
    for (args, field) in cases {
        let out = run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(field),
            "{args:?} names {field}: {}",
            stderr(&out)
        );
    }
    let long_title = "x".repeat(81);
    let out = run(&[
        "seller",
        "--name",
        &name,
        "sell",
        &long_title,
        "--price",
        "1",
    ]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("title: longer than 80 bytes"));
    let out = run(&["market", "--name", &name, "--capacity", "0"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("capacity"));
    assert!(!dev_shm(&name).exists());
}

#[test]
fn the_object_is_owner_only_by_default_and_0666_comes_with_a_warning() {
    let market = Market::start("mode", &[]);
    let mode = std::fs::metadata(dev_shm(&market.name))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    market.stop();

    let name = unique_name("mode-0666");
    let mut child = bookstore(&["market", "--name", &name, "--quiet", "--mode", "0666"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || dev_shm(&name).exists()));
    let mode = std::fs::metadata(dev_shm(&name))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o666);
    signal(&child, rustix::process::Signal::TERM);
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("ANY local user"), "{err}");
    assert!(!dev_shm(&name).exists());
    remove_journal(&name);
}

#[test]
fn inspect_hex_labels_the_regions_and_shows_the_magic() {
    let market = Market::start("hex", &[]);
    assert_eq!(
        code(&market.client("seller", &["sell", "Dune", "--price", "1"])),
        0
    );
    let out = run(&["inspect", "--name", &market.name, "--hex"]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.contains("# header: identity"), "{text}");
    assert!(text.contains("BOOKSTOR"));
    assert!(text.contains("# view: shelf rows"));
    assert!(text.contains("Dune"));
    market.stop();
}

#[test]
fn demo_trades_everything_checks_the_balance_and_leaves_nothing_behind() {
    let out = run(&["demo", "--books", "300"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("books sold        600"), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
}

#[test]
fn bench_prints_every_documented_figure_and_removes_what_a_killed_bench_left() {
    // A bench killed with SIGKILL in its first row leaves that row's shared object...
    let mut killed = bookstore(&["bench", "--round-trips", "100000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let left = dev_shm(&format!("/bookstore-bench-{}-floor", killed.id()));
    assert!(
        eventually(Duration::from_secs(10), || left.exists()),
        "the bench made its floor object"
    );
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(left.exists(), "SIGKILL runs no clean-up");
    // ...which the next bench removes, saying so.
    let out = run(&[
        "bench",
        "--json",
        "--round-trips",
        "300",
        "--orders",
        "3000",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!left.exists(), "{} is still there", left.display());
    assert!(
        stderr(&out).contains(&format!(
            "bench: removed {}, left by a bench that was killed",
            left.display()
        )),
        "{}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "floor_rtt_ns",
        "futex_rtt_ns",
        "futex_one_cpu_rtt_ns",
        "pipe_rtt_ns",
        "uds_rtt_ns",
        "market_spin_rtt_ns",
        "market_park_rtt_ns",
        "market_park_one_cpu_rtt_ns",
        "market_alone_ns",
    ] {
        for p in ["p50", "p99", "p999"] {
            assert!(v[key][p].as_u64().unwrap() > 0, "{key}.{p} in {v:#}");
        }
    }
    assert!(v["orders_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["orders_per_sec_fsync"].as_f64().unwrap() > 0.0);
    assert!(v["engine_ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(
        v["iceoryx2_rtt_ns"].is_null(),
        "measured only with --iceoryx2: {v:#}"
    );
}

#[test]
fn bench_refuses_a_missing_iceoryx2_peer_before_measuring_anything() {
    let out = run(&["bench", "--iceoryx2", "/nonexistent/peer"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--iceoryx2 /nonexistent/peer: no such file"),
        "{err}"
    );
    assert!(!err.contains("measuring"), "it measured first: {err}");
}

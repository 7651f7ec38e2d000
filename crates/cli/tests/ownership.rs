//! One market per name, shared across users, never fooled: the name lock decides who serves,
//! losers name the winner, `--stop` trusts only the lock, and another user's store is trusted
//! only while that user's live market serves it.

mod common;

use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RACES: usize = 50;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn spawn_market(name: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = bookstore(&["market", "--name", name, "--quiet"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("market starts")
}

/// The pid `inspect --json` names as the market, once the object is ready.
fn serving_pid(name: &str) -> Option<u64> {
    let out = run(&["inspect", "--name", name, "--json"]);
    if code(&out) != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    (v["state"] == "ready" && v["market_running"] == true)
        .then(|| v["market_pid"].as_u64())
        .flatten()
}

/// Waits for exactly one of two racing markets to exit; returns (winner, loser's output).
fn settle(mut a: Child, mut b: Child) -> (Child, std::process::Output) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (a_done, b_done) = (a.try_wait().unwrap(), b.try_wait().unwrap());
        match (a_done, b_done) {
            (Some(_), Some(_)) => panic!("both markets exited: one must serve"),
            (Some(_), None) => return (b, a.wait_with_output().unwrap()),
            (None, Some(_)) => return (a, b.wait_with_output().unwrap()),
            (None, None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            (None, None) => {
                // Both still up: fine only if one of them is merely slow to give up. Never two
                // serving: the object names one market, and only one holds the lock.
                let _ = a.kill();
                let _ = b.kill();
                panic!("neither market exited within 10 s");
            }
        }
    }
}

/// Races two markets (the first perhaps slowed by `env`) and checks the outcome: one serves,
/// the other exits 7 naming it; then stops the winner and checks nothing is left.
fn race(name: &str, env: &[(&str, &str)], head_start: Duration) {
    let first = spawn_market(name, env);
    std::thread::sleep(head_start);
    let second = spawn_market(name, &[]);
    let (mut winner, loser) = settle(first, second);
    let winner_pid = winner.id();
    let err = stderr(&loser);
    assert_eq!(code(&loser), 7, "the loser exits 7: {err}");
    assert!(
        err.contains(&format!("pid {winner_pid}")),
        "the loser names the winner (pid {winner_pid}): {err}"
    );
    assert!(
        eventually(Duration::from_secs(10), || serving_pid(name)
            == Some(u64::from(winner_pid))),
        "the winner serves {name}"
    );
    assert!(
        winner.try_wait().unwrap().is_none(),
        "the winner still serves"
    );
    signal(&winner, rustix::process::Signal::TERM);
    assert!(winner.wait().unwrap().success(), "the winner stops cleanly");
    assert!(!dev_shm(name).exists(), "nothing left in /dev/shm");
}

fn cleanup(name: &str) {
    let _ = std::fs::remove_file(dev_shm(name));
    remove_journal(name);
    let _ = std::fs::remove_file(lock_path(name));
}

#[test]
fn two_markets_started_together_on_a_fresh_name_never_both_serve() {
    for _ in 0..RACES {
        let name = unique_name("race-fresh");
        race(&name, &[], Duration::ZERO);
        cleanup(&name);
    }
}

#[test]
fn two_markets_racing_over_a_stale_object_never_both_serve() {
    let name = unique_name("race-stale");
    for _ in 0..RACES {
        // A stale object and an unlocked lock file: a market killed with SIGKILL.
        let mut dead = Market::start_named(name.clone(), &[]);
        dead.kill();
        assert!(dev_shm(&name).exists(), "the killed market left its object");
        race(&name, &[], Duration::ZERO);
        drop(dead);
    }
    cleanup(&name);
}

#[test]
fn a_market_slowed_at_each_step_of_its_start_is_never_joined_by_a_second() {
    for step in ["after-lock", "after-journal", "after-create"] {
        let pause = format!("{step}:60");
        for _ in 0..RACES {
            let name = unique_name("race-slow");
            // The slow one starts first and is overtaken while it sleeps at `step`.
            race(
                &name,
                &[("BOOKSTORE_TEST_PAUSE", &pause)],
                Duration::from_millis(15),
            );
            cleanup(&name);
        }
    }
}

#[test]
fn a_forged_header_cannot_make_stop_signal_anything() {
    // 0666: any local user may write the header. Here it names an unrelated process of ours.
    let market = Market::start("forged", &["--mode", "0666"]);
    let mut victim = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let victim_start = shm::process::start_time(victim.id()).unwrap();
    let object = std::fs::OpenOptions::new()
        .write(true)
        .open(dev_shm(&market.name))
        .unwrap();
    use bookstore::layout::Header;
    object
        .write_at(
            &victim.id().to_le_bytes(),
            std::mem::offset_of!(Header, market_pid) as u64,
        )
        .unwrap();
    object
        .write_at(
            &victim_start.to_le_bytes(),
            std::mem::offset_of!(Header, market_start_time) as u64,
        )
        .unwrap();
    let market_pid = market.child.as_ref().unwrap().id();
    let out = run(&["market", "--stop", "--name", &market.name]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("pid {market_pid}")),
        "--stop names the lock holder: {}",
        stdout(&out)
    );
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the victim was not signalled"
    );
    let _ = victim.kill();
    let _ = victim.wait();
    assert!(!dev_shm(&market.name).exists(), "the real market stopped");
    drop(market);
}

#[test]
fn stop_without_a_market_names_none_even_with_a_stale_object_pointing_at_a_live_process() {
    let mut market = Market::start("stop-stale", &[]);
    market.kill();
    // The stale header names a dead pid; make it name this (live) test process instead.
    let object = std::fs::OpenOptions::new()
        .write(true)
        .open(dev_shm(&market.name))
        .unwrap();
    let me = shm::process::ProcessId::current().unwrap();
    use bookstore::layout::Header;
    object
        .write_at(
            &me.pid.to_le_bytes(),
            std::mem::offset_of!(Header, market_pid) as u64,
        )
        .unwrap();
    object
        .write_at(
            &me.start_time.to_le_bytes(),
            std::mem::offset_of!(Header, market_start_time) as u64,
        )
        .unwrap();
    let out = run(&["market", "--stop", "--name", &market.name]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("no market holds"), "{}", stderr(&out));
    cleanup(&market.name);
}

/// A group and a user in it, created once (root only): the lab's "other user".
fn peer() -> (u32, u32) {
    let group = "bookstore-lab";
    let user = "bookstore-peer";
    if shm::users::group_id(group).is_none() {
        let ok = std::process::Command::new("groupadd")
            .args(["--system", group])
            .status();
        assert!(ok.is_ok_and(|s| s.success()) || shm::users::group_id(group).is_some());
    }
    let uid_of = |name: &str| {
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f[0] == name).then(|| f[2].parse::<u32>().unwrap())
            })
    };
    if uid_of(user).is_none() {
        let ok = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .args(["--gid", group, user])
            .status();
        assert!(ok.is_ok_and(|s| s.success()) || uid_of(user).is_some());
    }
    (uid_of(user).unwrap(), shm::users::group_id(group).unwrap())
}

/// `bookstore ARGS` run as `uid`:`gid`, with a state directory of its own. The binary is
/// copied where that user can reach it (the build directory may be private to root).
fn run_as(uid: u32, gid: u32, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir().join(format!("bookstore-peer-{}", std::process::id()));
    let home = base.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    let bin = base.join("bookstore");
    if !bin.exists() {
        std::fs::copy(BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::process::Command::new(&bin)
        .args(args)
        .env_clear()
        .env("HOME", &home)
        .env("XDG_STATE_HOME", &home)
        .env("XDG_RUNTIME_DIR", &home)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

#[test]
fn another_user_in_the_group_trades_with_0660_and_is_refused_with_0600() {
    if !is_root() {
        eprintln!("skipped: needs root to create a user and a group and run as them");
        return;
    }
    let (uid, gid) = peer();
    let shared = Market::start(
        "group-0660",
        &["--mode", "0660", "--group", "bookstore-lab"],
    );
    let sell = [
        "seller",
        "--name",
        &shared.name,
        "sell",
        "Dune",
        "--price",
        "5",
    ];
    let out = run_as(uid, gid, &sell);
    assert_eq!(code(&out), 0, "a group member sells: {}", stderr(&out));
    assert!(
        stdout(&out).contains("listed 1 × \"Dune\""),
        "{}",
        stdout(&out)
    );
    let out = run_as(uid, gid, &["inspect", "--name", &shared.name]);
    assert_eq!(code(&out), 0, "a group member inspects: {}", stderr(&out));
    assert!(
        stdout(&out).contains("0660 rw-rw---- (owner read/write, group read/write, others none)"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("group") && stdout(&out).contains("bookstore-lab"));
    assert_eq!(shared.assert_balanced()["books_on_shelf"], 1);
    // Two users, one name: names are global; the second user is told whose it is.
    let out = run_as(uid, gid, &["market", "--name", &shared.name, "--quiet"]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(stderr(&out).contains("uid 0 (root)"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("choose another --name"),
        "{}",
        stderr(&out)
    );
    shared.stop();

    let private = Market::start("group-0600", &[]);
    let out = run_as(
        uid,
        gid,
        &[
            "seller",
            "--name",
            &private.name,
            "--wait",
            "0",
            "sell",
            "Dune",
            "--price",
            "5",
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    private.stop();
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("bookstore-peer-{}", std::process::id())),
    );
}

#[test]
fn a_name_that_is_a_directory_entry_is_a_usage_error() {
    for name in ["/..", "/."] {
        let out = run(&["market", "--name", name]);
        assert_eq!(code(&out), 2, "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("name"), "{}", stderr(&out));
    }
}

#[test]
fn no_journal_is_put_under_the_current_directory() {
    let name = unique_name("no-home");
    let out = bookstore(&["market", "--name", &name])
        .env_remove("XDG_STATE_HOME")
        .env("HOME", "")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("neither XDG_STATE_HOME nor HOME is an absolute path"),
        "{}",
        stderr(&out)
    );
    assert!(!dev_shm(&name).exists());
}

#[test]
fn journal_paths_that_are_symlinks_or_not_regular_files_are_refused_untouched() {
    let dir = std::env::temp_dir().join(format!("bookstore-journal-paths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = unique_name("journal-paths");

    let dangling = dir.join("dangling");
    let target = dir.join("target");
    let _ = std::fs::remove_file(&dangling);
    std::os::unix::fs::symlink(&target, &dangling).unwrap();
    let out = run(&[
        "market",
        "--name",
        &name,
        "--journal",
        dangling.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists(), "the symlink's target was not created");

    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let link = dir.join("link");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&empty, &link).unwrap();
    let out = run(&[
        "market",
        "--name",
        &name,
        "--journal",
        link.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&empty).unwrap(),
        b"",
        "nothing written through the symlink"
    );

    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        let started = Instant::now();
        let out = run(&["journal", "--journal", path]);
        assert_eq!(code(&out), 8, "{path}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} refused at once"
        );
    }
    let out = run(&[
        "market",
        "--name",
        &name,
        "--journal",
        fifo.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));

    let missing = dir.join("missing.journal");
    let out = run(&["journal", "--journal", missing.to_str().unwrap()]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(stderr(&out).contains("no such file"), "{}", stderr(&out));

    assert!(!dev_shm(&name).exists());
    let _ = std::fs::remove_file(lock_path(&name));
    std::fs::remove_dir_all(&dir).unwrap();
}

//! Hostile and broken surroundings: objects the market did not create, objects of the wrong
//! owner, size or contents, a client scribbling random bytes over the live object, a full
//! /dev/shm, a full slot table, and absurd command-line values.

mod common;

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::process::Stdio;
use std::time::Duration;

use bookstore::layout::{Geometry, Header, HEADER_SIZE, SLOT_SIZE};
use common::*;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// An object created by hand in /dev/shm, as some other program would; removed when dropped,
/// even if the test fails.
struct Planted(std::path::PathBuf);

impl std::ops::Deref for Planted {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Planted {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn plant(name: &str, bytes: &[u8], mode: u32) -> Planted {
    let path = dev_shm(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    Planted(path)
}

/// Every way for a client or `inspect` to meet `name` must fail with `expect` in the message
/// and a documented exit code (never a panic's 101).
fn clients_refuse(name: &str, expect: &str) {
    let attempts: [&[&str]; 3] = [
        &[
            "seller", "--name", name, "--wait", "0", "sell", "Dune", "--price", "1",
        ],
        &[
            "buyer",
            "--name",
            name,
            "--wait",
            "0",
            "buy",
            "--any",
            "--max-price",
            "1",
        ],
        &["inspect", "--name", name],
    ];
    for args in attempts {
        let out = run(args);
        let err = stderr(&out);
        assert!(
            [1, 3].contains(&code(&out)),
            "{args:?} exits 1 or 3, not {}: {err}",
            code(&out)
        );
        assert!(err.contains(expect), "{args:?} says {expect:?}: {err}");
    }
}

#[test]
fn market_refuses_an_object_someone_else_created_and_leaves_it_untouched() {
    let name = unique_name("planted");
    let garbage = b"not a bookstore, just some bytes somebody put here".repeat(100);
    let path = plant(&name, &garbage, 0o666);
    let out = run(&["market", "--name", &name]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a usable bookstore object"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "contents untouched");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "mode untouched");
    clients_refuse(&name, "magic");
    drop(path);
    remove_journal(&name);
}

#[test]
fn clients_refuse_objects_too_small_or_of_a_wrong_version() {
    let name = unique_name("small");
    let path = plant(&name, b"BOOKSTOR", 0o600);
    clients_refuse(&name, "smaller than");
    drop(path);

    // A real store's bytes with the layout version changed.
    let market = Market::start("version-source", &[]);
    let mut bytes = std::fs::read(dev_shm(&market.name)).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    let name = unique_name("version");
    let path = plant(&name, &bytes, 0o600);
    clients_refuse(&name, "version");
    drop(path);
    market.stop();
}

#[test]
fn market_and_clients_refuse_an_object_owned_by_another_user() {
    if !is_root() {
        eprintln!("skipped: needs root to create an object owned by another user");
        return;
    }
    let name = unique_name("other-user");
    let path = plant(&name, &[0u8; 4096], 0o644);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let out = run(&["market", "--name", &name]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(stderr(&out).contains("uid 65534"), "{}", stderr(&out));
    assert!(path.exists(), "another user's object is never removed");
    clients_refuse(&name, "65534");
    drop(path);
    remove_journal(&name);
}

#[test]
fn a_full_dev_shm_is_a_clear_error_at_start_not_a_sigbus_later() {
    if !is_root() || !std::path::Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipped: needs root and unshare to mount a small /dev/shm");
        return;
    }
    // A private mount namespace with a 256 KiB /dev/shm, as in a container with a small limit.
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs /dev/shm && exec {BIN} market --name /tiny --quiet"
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("XDG_STATE_HOME", state_home())
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not enough room in /dev/shm"),
        "{}",
        stderr(&out)
    );
    remove_journal("/tiny");
}

/// A client overwrites the market's doorbell word while the market sleeps on it: the next
/// client's ring then sees no `PARKED` there and makes no system call, and nothing but the
/// market's alarm (which wakes it regardless of the word) ends that sleep.
#[test]
fn a_market_asleep_under_a_scribbled_doorbell_is_still_woken_and_serves() {
    let market = Market::start("doorbell", &["--capacity", "50", "--spin-us", "0"]);
    let object = object_for_writing(&market.name);
    let word_at = std::mem::offset_of!(Header, doorbell);
    let read_word = || word_in_object(&market.name, word_at);
    assert!(
        eventually(Duration::from_secs(5), || read_word()
            == bookstore_ipc::doorbell::PARKED),
        "the market parks when idle"
    );
    object
        .write_at(&7u32.to_le_bytes(), word_at as u64)
        .unwrap();
    let out = market.client(
        "seller",
        &["--wait", "5", "sell", "Dune", "--price", "5", "--qty", "1"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(market.assert_balanced()["books_on_shelf"], 1);
}

/// A client parked for its reply (a resting buy, with no timeout but the buy's own while the
/// market's alarm thread guards its doorbell) has its `PARKED` bit cleared by another writer
/// of the object: the market's ring then sees no sleeper and makes no system call. Only the
/// alarm's sweep, which wakes a client whose replies wait in its ring, ends that sleep before
/// the buy's 60 s.
#[test]
fn a_client_asleep_under_a_scribbled_doorbell_is_still_woken_for_its_reply() {
    let market = Market::start("client-bell", &["--capacity", "50", "--spin-us", "0"]);
    let buyer = market.spawn_client(
        "buyer",
        &["buy", "Dune", "--max-price", "10", "--timeout", "60"],
    );
    let object = object_for_writing(&market.name);
    // The buyer is the only client: slot 0.
    let word_at = slot_doorbell_at(0);
    let read_word = || word_in_object(&market.name, word_at);
    use bookstore_ipc::doorbell::{GUARDIAN, PARKED};
    assert!(
        eventually(Duration::from_secs(5), || {
            let word = read_word();
            word & PARKED != 0 && word & GUARDIAN != 0
        }),
        "the buyer parks on its guarded doorbell: {:#x}",
        read_word()
    );
    object
        .write_at(&(read_word() & !PARKED).to_le_bytes(), word_at as u64)
        .unwrap();
    let started = std::time::Instant::now();
    let out = market.client("seller", &["sell", "Dune", "--price", "5", "--qty", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = buyer.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the buyer got its reply {:?} after the sale: by its buy's timeout, not the sweep",
        started.elapsed()
    );
}

/// A buggy client writes random words all over the live object (slot control words, ring
/// indices and cells, the doorbells, the view). The market must keep running, keep its
/// books, and serve the next valid client; the view heals at the next publish.
#[test]
fn random_bytes_written_into_the_live_object_do_not_crash_the_market_or_change_the_books() {
    let mut market = Market::start("scribble", &["--capacity", "50", "--slots", "8"]);
    assert_eq!(
        code(&market.client("seller", &["sell", "Dune", "--price", "5", "--qty", "7"])),
        0
    );
    let before = market.assert_balanced();
    // A client that stays attached while its slot is scribbled on.
    let mut idle = market.spawn_client_with_stdin("seller");
    assert!(eventually(Duration::from_secs(2), || market.slots_in_use() > 0));

    let geometry = Geometry {
        capacity: 50,
        slot_count: 8,
    };
    let object = object_for_writing(&market.name);
    // The identity line ends where the attach-epoch line begins.
    const IDENTITY_LINE: usize = std::mem::offset_of!(Header, attach_epoch);
    let mut rng = fastrand::Rng::with_seed(0x5c41_bb1e);
    for round in 0..20_000u32 {
        let offset = match rng.u8(..10) {
            // Slot control words, doorbells and ring indices: the first 512 bytes of a slot.
            0..=5 => geometry.slots_offset() + rng.usize(..8) * SLOT_SIZE + rng.usize(..64) * 8,
            // The header's epoch and doorbell (the identity line is left alone here: garbage
            // there is the next test's).
            6 => IDENTITY_LINE + rng.usize(..(HEADER_SIZE - IDENTITY_LINE) / 8) * 8,
            // Anywhere after the identity line, view included.
            _ => IDENTITY_LINE + rng.usize(..(geometry.total_size() - IDENTITY_LINE) / 8) * 8,
        };
        let word = if rng.bool() {
            rng.u64(..)
        } else {
            rng.u64(..200)
        };
        object.write_at(&word.to_le_bytes(), offset as u64).unwrap();
        if round % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    // Not exited (a crashed, unreaped market would still have a /proc entry: a zombie).
    assert!(
        market.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "market survived"
    );
    let _ = idle.kill();
    let _ = idle.wait();

    // The next valid client is served, and the books are the old ones plus its listing.
    let out = market.client(
        "seller",
        &["--wait", "5", "sell", "Emma", "--price", "3", "--qty", "2"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let healed = eventually(Duration::from_secs(3), || {
        let out = run(&["inspect", "--name", &market.name, "--json"]);
        code(&out) == 0 && {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["books_listed_total"] == before["books_listed_total"].as_u64().unwrap() + 2
        }
    });
    assert!(
        healed,
        "view healed: {}",
        stderr(&run(&["inspect", "--name", &market.name]))
    );
    let after = market.assert_balanced();
    assert_eq!(after["books_on_shelf"], 9);
    assert_eq!(after["books_sold_total"], before["books_sold_total"]);

    // Garbage in the identity line: inspect says what is wrong, nobody panics.
    object.write_at(b"GARBAGE!", 0).unwrap();
    let out = run(&["inspect", "--name", &market.name]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("magic"), "{}", stderr(&out));
    let out = run(&["inspect", "--name", &market.name, "--hex"]);
    assert_ne!(code(&out), 101, "{}", stderr(&out));
    market.stop();
}

#[test]
fn a_full_slot_table_is_a_clear_error_or_a_wait_with_wait() {
    let market = Market::start("slots-full", &["--slots", "1"]);
    let mut holder = market.spawn_client_with_stdin("seller");
    assert!(eventually(Duration::from_secs(2), || market.slots_in_use() == 1));
    let out = market.client("seller", &["--wait", "0", "sell", "Dune", "--price", "1"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("all 1 client slots"),
        "{}",
        stderr(&out)
    );
    // With --wait, the client waits for the slot and lists once the holder leaves.
    let waiter = market.spawn_client("seller", &["--wait", "10", "sell", "Dune", "--price", "1"]);
    std::thread::sleep(Duration::from_millis(300));
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(market.assert_balanced()["books_on_shelf"], 1);
    market.stop();
}

#[test]
fn absurd_command_line_values_name_the_field_and_exit_2() {
    use std::os::unix::ffi::OsStrExt;
    let name = unique_name("absurd");
    let sell = |extra: &[&str]| {
        let mut a = vec!["seller", "--name", &name, "sell"];
        a.extend_from_slice(extra);
        run(&a)
    };
    for (out, field) in [
        (sell(&["Dune", "--price", "1", "--qty", "2000000"]), "qty"),
        (sell(&["Dune", "--price", "1", "--qty", "-3"]), "qty"),
        (sell(&["Dune", "--price", "1", "--qty", "many"]), "qty"),
        (
            sell(&["Dune", "--price", "99999999999999999999999"]),
            "price",
        ),
        (sell(&["   ", "--price", "1"]), "title"),
        (sell(&["tab\there", "--price", "1"]), "title"),
        (run(&["market", "--name", "/", "--quiet"]), "name"),
        (
            run(&["market", "--name", &format!("/{}", "n".repeat(300))]),
            "name",
        ),
        (run(&["market", "--name", &name, "--mode", "rw"]), "mode"),
        (
            run(&["market", "--name", &name, "--capacity", "-5"]),
            "capacity",
        ),
        (
            run(&["market", "--name", &name, "--capacity", "100001"]),
            "capacity",
        ),
        (run(&["market", "--name", &name, "--slots", "0"]), "slots"),
        (
            run(&["market", "--name", &name, "--durability", "maybe"]),
            "durability",
        ),
        (
            run(&[
                "buyer",
                "--name",
                &name,
                "buy",
                "--any",
                "--max-price",
                "1",
                "--timeout",
                "-1",
            ]),
            "timeout",
        ),
    ] {
        assert_eq!(code(&out), 2, "{field}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(field),
            "names {field}: {}",
            stderr(&out)
        );
    }
    // A title that is not UTF-8.
    let out = bookstore(&[])
        .arg("seller")
        .args(["--name", &name, "sell"])
        .arg(std::ffi::OsStr::from_bytes(b"D\xffne"))
        .args(["--price", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("TITLE") || stderr(&out).contains("title"),
        "{}",
        stderr(&out)
    );
    assert!(!dev_shm(&name).exists());
    assert!(
        !journal_path(&name).exists(),
        "a refused start leaves no journal behind"
    );
}

/// A slot left CLAIMED (its claimant died between claiming and attaching) is freed, also when
/// the claimant's pid now belongs to a live process: the start time tells them apart.
#[test]
fn a_slot_claimed_by_a_dead_or_reused_pid_is_freed() {
    use bookstore::layout::SlotState;
    let market = Market::start("claimed", &["--slots", "2"]);
    let geometry = Geometry {
        capacity: 100,
        slot_count: 2,
    };
    let object = object_for_writing(&market.name);
    // Slot 0: a live pid (ours) with a start time that is not ours: the pid was "reused".
    // Slot 1: a pid that does not exist, start time not written yet.
    let ours = std::process::id();
    for (slot, pid, start_time) in [(0, ours, 12_345u64), (1, 0x3fff_fff0, 0)] {
        let at = (geometry.slots_offset() + slot * SLOT_SIZE) as u64;
        object.write_at(&start_time.to_le_bytes(), at + 8).unwrap();
        object
            .write_at(&SlotState::Claimed.word(pid).to_le_bytes(), at)
            .unwrap();
    }
    let freed = eventually(Duration::from_secs(2), || market.slots_in_use() == 0);
    assert!(
        freed,
        "claimed slots freed: {:#}",
        market.inspect()["clients"]
    );
    market.stop();
}

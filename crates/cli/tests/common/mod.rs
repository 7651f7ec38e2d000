//! Helpers for tests that run the real `bookstore` binary as separate processes.
//!
//! Each test binary compiles this module and uses part of it, so an unused helper warns in
//! some binaries and not others: `dead_code` is allowed here for that reason only. The cost:
//! a helper no test uses goes unnoticed, so delete a helper with its last caller.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bookstore");

/// A store name no other test (or test run) uses: pid, counter and the test's tag.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "/bookstore-test-{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn dev_shm(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(&name[1..])
}

/// The little-endian 32-bit word at byte `at` of the store's object, as it reads now (a
/// futex word: a doorbell).
pub fn word_in_object(name: &str, at: usize) -> u32 {
    let mut word = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(dev_shm(name)).unwrap(),
        &mut word,
        at as u64,
    )
    .unwrap();
    u32::from_le_bytes(word)
}

/// Where slot `slot`'s doorbell word is in the object.
pub fn slot_doorbell_at(slot: usize) -> usize {
    bookstore::layout::HEADER_SIZE
        + slot * bookstore::layout::SLOT_SIZE
        + std::mem::offset_of!(bookstore::layout::Slot, doorbell)
}

/// The live object of store `name`, opened for writing as a process that scribbles on it
/// would (`write_at` its words).
pub fn object_for_writing(name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dev_shm(name))
        .unwrap()
}

/// `XDG_STATE_HOME` for every process a test starts: journals land in the temp directory,
/// one file per (unique) store name, never in the user's own state directory. Each market's
/// journal is removed when its test is done.
pub fn state_home() -> PathBuf {
    std::env::temp_dir().join("bookstore-test-state")
}

/// Where a market started by a test keeps the journal of store `name`.
pub fn journal_path(name: &str) -> PathBuf {
    let name = shm::ShmName::new(name).expect("a valid store name");
    bookstore::journal::path_in(&state_home(), &name)
}

/// `XDG_RUNTIME_DIR` for every process a test starts: the markets' name locks land in a
/// private (0700) directory of the tests, not the user's. A test's lock files go with it.
pub fn runtime_home() -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("bookstore-test-runtime-{}", shm::effective_uid()));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    dir
}

/// The name lock file of store `name` under the tests' runtime directory.
pub fn lock_path(name: &str) -> PathBuf {
    runtime_home()
        .join("bookstore")
        .join(format!("{}.lock", &name[1..]))
}

pub fn bookstore(args: &[&str]) -> Command {
    let mut c = in_test_env(Command::new(BIN));
    c.args(args);
    c
}

/// `command` with the tests' environment: no `BOOKSTORE_NAME`, the tests' state and runtime
/// directories (for a process that starts `bookstore` itself, such as a shell).
pub fn in_test_env(mut command: Command) -> Command {
    command
        .env_remove("BOOKSTORE_NAME")
        .env("XDG_STATE_HOME", state_home())
        .env("XDG_RUNTIME_DIR", runtime_home());
    command
}

/// The snapshot files (and leftover temporary files) beside `journal`.
pub fn snapshots_of(journal: &std::path::Path) -> Vec<PathBuf> {
    siblings(journal, ".snap.")
}

/// The sealed segments of `journal`, oldest first.
pub fn sealed_segments_of(journal: &std::path::Path) -> Vec<PathBuf> {
    let mut found = siblings(journal, ".seg.");
    found.sort();
    found
}

/// Files beside `journal` whose names are its own followed by `infix`.
fn siblings(journal: &std::path::Path, infix: &str) -> Vec<PathBuf> {
    let prefix = format!("{}{infix}", journal.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(journal.parent().unwrap())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Held by each test that starts NATS servers, so a test binary runs them one at a time: three
/// JetStream clusters of three servers at once overload a 2-core machine until its requests
/// time out.
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static CLUSTERS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CLUSTERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the journal of store `name` and everything beside it (segments, snapshots).
pub fn remove_journal(name: &str) {
    remove_journal_at(&journal_path(name));
}

/// Removes the journal at `journal` and everything beside it (segments, snapshots).
pub fn remove_journal_at(journal: &std::path::Path) {
    let _ = std::fs::remove_file(journal);
    for file in siblings(journal, ".") {
        let _ = std::fs::remove_file(file);
    }
}

pub fn run(args: &[&str]) -> Output {
    bookstore(args).output().expect("bookstore runs")
}

pub fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bookstore(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bookstore runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn signal(child: &Child, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
        .expect("signal delivered");
}

/// Polls `condition` every 10 ms for up to `limit`.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// A market process on its own store name. Dropping it stops the market with SIGTERM and
/// asserts that the object is gone from /dev/shm.
pub struct Market {
    pub name: String,
    pub child: Option<Child>,
    /// Leave the journal file behind when dropped (for a test that reads it afterwards).
    keep_journal: bool,
}

impl Market {
    pub fn start(tag: &str, extra: &[&str]) -> Self {
        Self::start_named(unique_name(tag), extra)
    }

    /// [`start`](Self::start) with environment variables set for the market (fault points).
    pub fn start_with_env(tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let name = unique_name(tag);
        let mut args = vec!["market", "--name", &name, "--quiet"];
        args.extend_from_slice(extra);
        let mut command = bookstore(&args);
        command.stdout(Stdio::null()).envs(env.iter().copied());
        Self::launch(name, command)
    }

    pub fn start_named(name: String, extra: &[&str]) -> Self {
        let mut args = vec!["market", "--name", &name, "--quiet"];
        args.extend_from_slice(extra);
        let mut command = bookstore(&args);
        command.stdout(Stdio::null());
        Self::launch(name, command)
    }

    /// Spawns `command` (a market on `name`) and waits until it is ready.
    fn launch(name: String, mut command: Command) -> Self {
        let child = command.spawn().expect("market starts");
        let market = Self {
            name,
            child: Some(child),
            keep_journal: false,
        };
        market.wait_ready();
        market
    }

    /// A market that says what it does (not `--quiet`), in log format `format`, its stdout and
    /// stderr captured: read them with [`stop_with_output`](Self::stop_with_output).
    pub fn start_logging(tag: &str, extra: &[&str], format: &str) -> Self {
        let name = unique_name(tag);
        let mut args = vec!["market", "--name", &name];
        args.extend_from_slice(extra);
        let mut command = bookstore(&args);
        command
            .env("BOOKSTORE_LOG_FORMAT", format)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Self::launch(name, command)
    }

    /// SIGTERM, and what the market printed (it must have exited successfully, its object
    /// gone).
    pub fn stop_with_output(mut self) -> Output {
        let child = self.child.take().expect("market running");
        signal(&child, rustix::process::Signal::TERM);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "market exited with {}", out.status);
        assert!(
            !dev_shm(&self.name).exists(),
            "{} left in /dev/shm",
            self.name
        );
        out
    }

    /// Waits until the object is this market's own and ready. (A stale object left by a
    /// killed market on the same name also reads "ready" until the new market replaces it.)
    pub fn wait_ready(&self) {
        // Long enough for a replicated market whose NATS cluster is still electing leaders.
        let ready = self.reaches_state("ready", Duration::from_secs(30));
        assert!(ready, "market on {} became ready", self.name);
    }

    /// Whether the object becomes this process's own, in `state`, within `limit`.
    pub fn reaches_state(&self, state: &str, limit: Duration) -> bool {
        let pid = self.child.as_ref().expect("market running").id();
        eventually(limit, || {
            let out = run(&["inspect", "--name", &self.name, "--json"]);
            if code(&out) != 0 {
                return false;
            }
            let v = self.json_of(&out);
            v["state"] == state && v["market_pid"] == pid && v["market_running"] == true
        })
    }

    /// A standby (`bookstore standby`) on a new name, once it publishes its store.
    pub fn start_standby(tag: &str, extra: &[&str]) -> Self {
        Self::start_standby_named(unique_name(tag), extra)
    }

    /// A standby on `name`, once it publishes its store.
    pub fn start_standby_named(name: String, extra: &[&str]) -> Self {
        let mut args = vec!["standby", "--name", &name, "--quiet"];
        args.extend_from_slice(extra);
        let child = bookstore(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("standby starts");
        let standby = Self {
            name,
            child: Some(child),
            keep_journal: false,
        };
        let following = standby.reaches_state("standby", Duration::from_secs(20));
        assert!(following, "standby on {} follows", standby.name);
        standby
    }

    /// Starts a standby again on the same name (and so the same journal), after `kill`.
    pub fn restart_as_standby(&mut self, extra: &[&str]) {
        assert!(self.child.is_none(), "the previous process still runs");
        let mut args = vec!["standby", "--name", &self.name, "--quiet"];
        args.extend_from_slice(extra);
        let child = bookstore(&args).stdout(Stdio::null()).spawn();
        self.child = Some(child.expect("standby starts"));
        let following = self.reaches_state("standby", Duration::from_secs(20));
        assert!(following, "standby on {} follows", self.name);
    }

    /// Sends `sig` to the market process.
    pub fn signal(&self, sig: rustix::process::Signal) {
        signal(self.child.as_ref().expect("market running"), sig);
    }

    /// Waits up to `limit` for the market to exit by itself: its status.
    pub fn exits_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut().expect("market running");
        let exited = eventually(limit, || child.try_wait().unwrap().is_some());
        exited.then(|| self.child.take().unwrap().wait().unwrap())
    }

    fn json_of(&self, out: &Output) -> serde_json::Value {
        serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
    }

    /// The store as `inspect --json` shows it once the market has settled: it publishes the
    /// view before it parks, so a parked (idle) market's view includes every reply it sent.
    /// (A client can hold its reply a moment before the view shows it.) Waits up to 2 s.
    pub fn inspect(&self) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let out = run(&["inspect", "--name", &self.name, "--json"]);
            assert_eq!(code(&out), 0, "inspect failed: {}", stderr(&out));
            let v = self.json_of(&out);
            // A standby never parks: it waits on its stream, and publishes as it applies.
            let settled =
                v["market_idle"] == true || v["market_running"] == false || v["state"] == "standby";
            if settled || std::time::Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How many slots are not free (attached, claimed or leaving), as `inspect` sees them.
    pub fn slots_in_use(&self) -> usize {
        self.inspect()["clients"]
            .as_array()
            .expect("inspect lists clients")
            .len()
    }

    /// The market's published totals balance: listed = sold + on the shelf.
    pub fn assert_balanced(&self) -> serde_json::Value {
        let v = self.inspect();
        let (listed, sold, shelf) = (
            v["books_listed_total"].as_u64().unwrap(),
            v["books_sold_total"].as_u64().unwrap(),
            v["books_on_shelf"].as_u64().unwrap(),
        );
        assert_eq!(listed, sold + shelf, "listed = sold + on shelf in {v:#}");
        assert_eq!(v["balanced"], true);
        v
    }

    pub fn client(&self, role: &str, args: &[&str]) -> Output {
        let mut all = vec![role, "--name", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    pub fn spawn_client(&self, role: &str, args: &[&str]) -> Child {
        let mut all = vec![role, "--name", &self.name];
        all.extend_from_slice(args);
        bookstore(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client starts")
    }

    /// A stdin session of `role` that stays attached until its stdin is closed.
    pub fn spawn_client_with_stdin(&self, role: &str) -> Child {
        bookstore(&[role, "--name", &self.name, "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client starts")
    }

    /// SIGKILL, as a crash: the object stays behind, stale.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL delivered");
            child.wait().unwrap();
        }
    }

    /// Starts a new market on the same name (and so the same journal), after `kill`.
    pub fn restart(&mut self, extra: &[&str]) {
        self.restart_with_env(extra, &[]);
    }

    /// [`restart`](Self::restart) with environment variables set for the market.
    pub fn restart_with_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "the previous market still runs");
        let mut args = vec!["market", "--name", &self.name, "--quiet"];
        args.extend_from_slice(extra);
        self.child = Some(
            bookstore(&args)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .spawn()
                .expect("market starts"),
        );
        self.wait_ready();
    }

    /// A clean stop (SIGTERM, checked) that keeps the journal, for a restart.
    pub fn stop_for_restart(&mut self) {
        self.stop_in_place(true);
    }

    /// SIGTERM, wait, and check the exit status and /dev/shm.
    pub fn stop(mut self) {
        self.stop_in_place(true);
    }

    /// [`stop`](Self::stop), leaving the journal for the caller (who removes it).
    pub fn stop_keeping_journal(mut self) -> PathBuf {
        self.keep_journal = true;
        self.stop_in_place(true);
        journal_path(&self.name)
    }

    fn stop_in_place(&mut self, check: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, rustix::process::Signal::TERM);
        let status = child.wait().unwrap();
        if check {
            assert!(status.success(), "market exited with {status}");
            assert!(
                !dev_shm(&self.name).exists(),
                "{} left in /dev/shm",
                self.name
            );
        }
    }
}

impl Drop for Market {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        self.stop_in_place(!panicking);
        if panicking {
            let _ = std::fs::remove_file(dev_shm(&self.name));
        }
        if !self.keep_journal {
            remove_journal(&self.name);
        }
        // A killed market leaves its (unlocked) name lock behind, by design.
        let _ = std::fs::remove_file(lock_path(&self.name));
    }
}

/// The start line of a market on `name`: started with its output captured, stopped at once.
pub fn start_line(market: &mut Market, env: &[(&str, &str)]) -> String {
    let mut command = bookstore(&["market", "--name", &market.name]);
    command
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    market.child = Some(command.spawn().unwrap());
    market.wait_ready();
    let child = market.child.take().unwrap();
    signal(&child, rustix::process::Signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    format!("{}{}", stdout(&out), stderr(&out))
}

/// One session line for `role`; `n` varies titles and prices.
pub fn order_line(role: &str, n: u64) -> String {
    let title = format!("Chaos {}", n % 5);
    match role {
        // Price 1.00–5.00; retry on a full store for up to 1 s.
        "seller" => format!("sell {title:?} {}.00 {} 1\n", 1 + n % 5, 1 + n % 3),
        // Any title or one title, up to 4.00, rest for up to 0.3 s.
        _ if n % 2 == 0 => format!("buy --any 4 {} 0.3\n", 1 + n % 4),
        _ => format!("buy {title:?} 5 {} 0.3\n", 1 + n % 2),
    }
}

/// Copies a session was told it listed or bought, from its stdout: `listed N × …`,
/// `bought N × …` and `bought N more while the market restarted…`.
pub fn copies_told(text: &str, verb: &str) -> u64 {
    text.lines()
        .filter_map(|line| {
            line.strip_prefix(verb)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// A seller or buyer session that runs a script of [`order_line`]s and exits: its stdout
/// (what it was told) and stderr go to files beside the journals.
pub struct ScriptedSession {
    child: Child,
    told: PathBuf,
    log: PathBuf,
}

/// What a finished [`ScriptedSession`] was told.
pub struct Told {
    /// Copies it was told were listed, and bought.
    pub listed: u64,
    pub bought: u64,
    /// Its stderr.
    pub log: String,
}

impl ScriptedSession {
    /// `role` on store `name` (with `--wait 20` and `extra`), running `orders` lines numbered
    /// from `first`, its stdin closed after them.
    pub fn spawn(name: &str, role: &str, extra: &[&str], first: u64, orders: u64) -> Self {
        let base = state_home().join(format!("{}-{role}-{first}", &name[1..]));
        let (told, log) = (base.with_extension("out"), base.with_extension("log"));
        std::fs::create_dir_all(state_home()).unwrap();
        let mut args = vec![role, "--name", name, "--wait", "20"];
        args.extend_from_slice(extra);
        let mut child = bookstore(&args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&told).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("client starts");
        let script: String = (first..first + orders)
            .map(|n| order_line(role, n))
            .collect();
        // Written whole, then closed: the session runs every line and exits.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        Self { child, told, log }
    }

    /// Whether it is still running its script.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Whether its stderr, so far, contains `text`.
    pub fn has_said(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(text))
    }

    /// Waits up to `within` for it to exit by itself (it must), and reads what it was told.
    pub fn finish(mut self, within: Duration) -> Told {
        let log_text = || std::fs::read_to_string(&self.log).unwrap_or_default();
        let ended = eventually(within, || self.child.try_wait().unwrap().is_some());
        if !ended {
            let _ = self.child.kill();
        }
        let status = self.child.wait().unwrap();
        assert!(
            ended && status.code().is_some(),
            "a session did not finish: {status:?}\n{}",
            log_text()
        );
        let text = std::fs::read_to_string(&self.told).unwrap();
        let told = Told {
            listed: copies_told(&text, "listed "),
            bought: copies_told(&text, "bought "),
            log: log_text(),
        };
        let _ = std::fs::remove_file(&self.told);
        let _ = std::fs::remove_file(&self.log);
        told
    }
}

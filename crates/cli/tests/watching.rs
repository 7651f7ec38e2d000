//! Watching a market the way a user does: `top` in a real terminal (tmux), read off the screen
//! with `capture-pane` and driven with `send-keys`; `inspect --watch` through a pipe.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A tmux server of the test's own (its own socket), one 80×24 window.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` (a shell line) in a new 80×24 window, or `None` if tmux is missing.
    fn start(tag: &str, command: &str) -> Option<Self> {
        let socket = format!("bookstore-test-{}-{tag}", std::process::id());
        let started = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "80", "-y", "24"])
            .arg(command)
            .status();
        match started {
            Ok(status) if status.success() => Some(Self { socket }),
            Ok(status) => panic!("tmux new-session failed: {status}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("tmux: {e}"),
        }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the screen shows every one of `texts`; panics with the screen if not.
    fn wait_for(&self, texts: &[&str]) -> String {
        let mut screen = String::new();
        let shown = eventually(Duration::from_secs(10), || {
            screen = self.screen();
            texts.iter().all(|t| screen.contains(t))
        });
        assert!(shown, "the screen never showed {texts:?}:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn top_in_a_terminal_shows_the_shelf_gauge_a_client_and_the_market_then_q_restores_the_terminal() {
    let market = Market::start("top", &["--capacity", "10"]);
    let listed = market.client("seller", &["sell", "Dune", "--price", "9.99", "--qty", "3"]);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    let command = format!(
        "env XDG_STATE_HOME={} XDG_RUNTIME_DIR={} {BIN} top --name {}; echo \"top exited $?\"; stty -a; sleep 60",
        state_home().display(),
        runtime_home().display(),
        market.name
    );
    let Some(tmux) = Tmux::start("top", &command) else {
        eprintln!("SKIPPED: tmux is not installed (.ci/run installs it)");
        return;
    };
    // A session stays attached: top shows its row.
    let mut session = market.spawn_client_with_stdin("buyer");
    let session_pid = session.id().to_string();
    let market_pid = market.child.as_ref().unwrap().id().to_string();
    let screen = tmux.wait_for(&[
        "3/10 books",
        "Dune",
        "9.99",
        &format!("market pid {market_pid}"),
        &session_pid,
        "session",
    ]);
    assert!(screen.contains("✓"), "the balance check shows:\n{screen}");
    // A trade shows up: the gauge drops and the totals move.
    let bought = market.client("buyer", &["buy", "Dune", "--max-price", "10"]);
    assert_eq!(code(&bought), 0, "{}", stderr(&bought));
    tmux.wait_for(&["2/10 books", "listed 3 = 1 sold + 2 on the shelf"]);
    // Keys: s changes the client order, p pauses.
    tmux.keys("s");
    tmux.wait_for(&["by last activity"]);
    tmux.keys("p");
    tmux.wait_for(&["PAUSED"]);
    tmux.keys("p");
    // The market exits: top says so and keeps the last picture.
    drop(session.stdin.take());
    session.wait().unwrap();
    market.stop();
    tmux.wait_for(&["market exited", "2/10 books", "Dune"]);
    tmux.keys("q");
    let after = tmux.wait_for(&["top exited 0", "icanon", "isig", "echoe"]);
    // Raw mode is off again: the line discipline echoes and edits lines.
    let modes: Vec<&str> = after.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(
            modes.contains(&mode) && !modes.contains(&format!("-{mode}").as_str()),
            "the terminal was not restored ({mode}):\n{after}"
        );
    }
}

#[test]
fn top_leaves_when_its_terminal_goes_away() {
    let market = Market::start("top-hangup", &[]);
    let command = format!(
        "env XDG_STATE_HOME={} XDG_RUNTIME_DIR={} {BIN} top --name {}",
        state_home().display(),
        runtime_home().display(),
        market.name
    );
    let Some(tmux) = Tmux::start("top-hangup", &command) else {
        eprintln!("SKIPPED: tmux is not installed (.ci/run installs it)");
        return;
    };
    tmux.wait_for(&["0/100 books"]);
    let pattern = format!("^{BIN} top --name {}$", market.name);
    let tops = || {
        let out = Command::new("pgrep")
            .args(["-f", &pattern])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(tops(), 1, "top runs");
    // The market exits first: the picture freezes, so top writes nothing more.
    market.stop();
    tmux.wait_for(&["market exited"]);
    drop(tmux);
    assert!(
        eventually(Duration::from_secs(5), || tops() == 0),
        "top is still running after its terminal went away"
    );
}

#[test]
fn top_without_a_terminal_refuses_and_points_at_inspect_watch() {
    let market = Market::start("top-pipe", &[]);
    let out = run(&["top", "--name", &market.name]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("bookstore inspect --watch"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_watch_prints_a_json_line_per_period_until_the_market_exits() {
    let market = Market::start("watch", &["--capacity", "10"]);
    let mut watch = bookstore(&[
        "inspect",
        "--name",
        &market.name,
        "--watch",
        "0.2",
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("inspect --watch starts");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["books_on_shelf"], 0);
    assert_eq!(first["capacity"], 10);
    let listed = market.client("seller", &["sell", "Dune", "--price", "9.99", "--qty", "2"]);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    let mut served = false;
    for line in lines.by_ref().take(50) {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(v["balanced"], true);
        if v["books_on_shelf"] == 2 && v["service_requests"].as_u64() > Some(0) {
            assert!(v["service_p50_ns"].as_u64().is_some_and(|ns| ns > 0), "{v}");
            assert!(v["orders_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{v}");
            served = true;
            break;
        }
    }
    assert!(served, "no line showed the listing and its service latency");
    market.stop();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let last: serde_json::Value = serde_json::from_str(rest.last().expect("a last line")).unwrap();
    assert_eq!(last["market_running"], false);
    let status = watch.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("exited"), "{err}");
}

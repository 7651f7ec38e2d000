//! The stdin sessions of `seller` and `buyer`: one command per line, sales announced as they
//! happen, and a market restart waited out.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::args::ClientArgs;
use crate::clients::{attached, connect_failed, OrderEnd};
use crate::exit::Exit;
use bookstore::client::{new_client_id, Client, ClientRole, ReplyBell};
use bookstore::trading::Progress;
use bookstore::wire::Reply;
use bookstore_ipc::doorbell::Guard;
use engine::Cents;

/// How long the watcher pauses after its market's guardian thread died before it wakes the
/// session again: the market's process may outlive that thread by a moment, and the session
/// checks on the process each time it is woken.
const DYING_MARKET_RECHECK: Duration = Duration::from_millis(20);

/// What a session needs to know of its role.
pub struct Role<'a> {
    pub name: &'a str,
    pub help: &'a str,
    /// Prints a reply that arrived between commands (a seller's sale notice).
    pub notice: &'a dyn Fn(&Reply, bool),
}

/// Reads commands line by line. A bad line is reported and skipped (it is not an order, so it
/// does not change the exit code); the session ends at EOF or `quit`, with the first failed
/// order's exit code, or 0.
///
/// If the market exits mid-session, the session waits up to `--wait` for the next market on
/// the same name (which recovers the store from its journal), reattaches under the same client
/// id and carries on. An order the market went away in the middle of is run again with its
/// progress, which asks the new market what became of it first (applied: its result; never
/// seen: sent again), so nothing is ordered twice; a command read after the market was seen
/// to be gone is simply run on the next market.
pub fn session(
    args: &ClientArgs,
    role: &Role<'_>,
    mut command: impl FnMut(&mut Client<'_>, &[String], &mut Progress) -> Result<OrderEnd, String>,
) -> Exit {
    let interactive = std::io::stdin().is_terminal();
    let (wakes, lines) = read_lines_in_background();
    let mut exit = Exit::Ok;
    let mut reconnecting = false;
    let id = match new_client_id() {
        Ok(id) => id,
        Err(e) => return connect_failed(role.name, e),
    };
    // A command not finished when the market was found gone (not sent yet, or in flight, as
    // its progress says): run it on the next market.
    let mut pending: Option<(Vec<String>, Progress)> = None;
    loop {
        let run = |client: &mut Client<'_>| {
            if interactive || (reconnecting && !args.quiet) {
                eprintln!(
                    "{} attached to the market (pid {}, slot {}). {}",
                    role.name,
                    client.market_pid(),
                    client.slot(),
                    role.help
                );
            }
            let style = Style {
                role,
                quiet: args.quiet,
                interactive,
                wait: args.wait,
            };
            // A watcher thread per attachment sleeps on this client's doorbell while the
            // session waits for a line (see `next_line`).
            let (watch, wakes) = (Watch::new(client.reply_bell()), wakes.clone());
            let end = std::thread::scope(|scope| {
                let watcher = scope.spawn(|| watch_for_replies(&watch, &wakes));
                // Stopped however the session ends (a panic too: the scope joins the watcher).
                let stopping = StopWatch(&watch);
                let end = session_lines(client, &lines, &watch, &style, &mut pending, &mut command);
                drop(stopping);
                if watcher.join().is_err() {
                    eprintln!("bookstore {}: the reply watcher panicked", role.name);
                }
                end
            });
            (end, client.market_pid())
        };
        let (end, market_pid) =
            match attached(args, role.name, ClientRole::Session, id, reconnecting, run) {
                Ok(ended) => ended,
                Err(e) => return exit.keep_first_failure(connect_failed(role.name, e)),
            };
        let gone = match end {
            SessionEnd::Done(code) => return exit.keep_first_failure(code),
            SessionEnd::MarketGone { code, in_flight } => {
                exit = exit.keep_first_failure(code);
                in_flight
            }
        };
        if args.wait.is_zero() {
            eprintln!(
                "bookstore {}: the market (pid {market_pid}) is gone",
                role.name
            );
            return exit.keep_first_failure(Exit::NoMarket);
        }
        let what = if gone {
            "the market went away mid-order (the next one will be asked what became of it)"
        } else {
            "the market stopped (no order was in flight)"
        };
        eprintln!(
            "bookstore {}: {what}; waiting up to {:.0?} for a market on {} to resume",
            role.name, args.wait, args.store.name
        );
        reconnecting = true;
    }
}

enum SessionEnd {
    /// EOF, `quit`, or a failure that ends the session, with its exit code.
    Done(Exit),
    /// The market went away; `in_flight`: an order had been sent to it and not answered.
    MarketGone { code: Exit, in_flight: bool },
}

struct Style<'a> {
    role: &'a Role<'a>,
    quiet: bool,
    interactive: bool,
    /// `--wait`: also how long a live market may take to answer (see `Progress::with_reply_grace`).
    wait: std::time::Duration,
}

/// What an idle session wakes for: a line of stdin, its end, or its doorbell.
enum Wake {
    Line(std::io::Result<String>),
    End,
    /// The watcher saw a reply (a notice, such as a sale of a seller's book) or was woken
    /// with its market's doorbell unguarded (the guard it saw: anything but `Alive` means the
    /// market may be gone).
    Bell(Guard),
}

/// Stdin's lines, read by a thread of their own so the session can announce sales while it
/// waits for the next command. Returns a sender for the reply watchers, whose wakes come the
/// same way, and the receiver; the reader sends [`Wake::End`] at EOF (the watchers' senders
/// keep the channel open).
fn read_lines_in_background() -> (Sender<Wake>, Receiver<Wake>) {
    let (tx, rx) = mpsc::channel();
    let ours = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let failed = line.is_err();
            if tx.send(Wake::Line(line)).is_err() || failed {
                return;
            }
        }
        let _ = tx.send(Wake::End);
    });
    (ours, rx)
}

/// The session's hand-over with its reply watcher: the watcher sleeps on the client's doorbell
/// only while the session waits for a line (`Watching`), so the two never both use the client.
struct Watch<'s> {
    bell: ReplyBell<'s>,
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The session is using the client (or handling a wake): the watcher keeps off it.
    Paused,
    /// The session waits for a line: the watcher sleeps on the doorbell.
    Watching,
    /// The session is done with this client: the watcher ends.
    Stopped,
}

struct WatchState {
    phase: Phase,
    /// The watcher is on the doorbell (between deciding to wait and having woken).
    on_bell: bool,
}

impl<'s> Watch<'s> {
    fn new(bell: ReplyBell<'s>) -> Self {
        Self {
            bell,
            state: Mutex::new(WatchState {
                phase: Phase::Paused,
                on_bell: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// The session starts waiting for a line: the watcher may sleep on the doorbell.
    fn start(&self) {
        let mut state = self.lock();
        if state.phase == Phase::Paused {
            state.phase = Phase::Watching;
            self.changed.notify_all();
        }
    }

    /// The session is about to use the client: gets the watcher off the doorbell (ringing it
    /// if it sleeps there) and returns once it is off.
    fn pause(&self) {
        self.leave(Phase::Paused);
    }

    /// The session is done with this client: the watcher ends.
    fn stop(&self) {
        self.leave(Phase::Stopped);
    }

    fn leave(&self, phase: Phase) {
        let mut state = self.lock();
        if state.phase != Phase::Stopped {
            state.phase = phase;
        }
        self.changed.notify_all();
        while state.on_bell {
            drop(state);
            // The phase is written first: the watcher's look at it after announcing its sleep
            // sees it, or this ring wakes the sleep (see `Doorbell::wake_regardless`).
            self.bell.ring();
            state = self.lock();
            if state.on_bell {
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(10))
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
        }
    }
}

/// Stops a [`Watch`] when dropped.
struct StopWatch<'w, 's>(&'w Watch<'s>);

impl Drop for StopWatch<'_, '_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The reply watcher of one attachment: while the session waits for a line, sleeps on the
/// client's doorbell, and when a reply is ready (or the market may be gone) pauses and tells
/// the session. Nothing wakes an idle session but a line, a reply or its market's end.
fn watch_for_replies(watch: &Watch<'_>, wakes: &Sender<Wake>) {
    loop {
        let mut state = watch.lock();
        while state.phase == Phase::Paused {
            state = watch
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.phase == Phase::Stopped {
            return;
        }
        state.on_bell = true;
        drop(state);
        let guard = watch.bell.wait(|| watch.phase() != Phase::Watching);
        let mut state = watch.lock();
        state.on_bell = false;
        watch.changed.notify_all();
        if state.phase != Phase::Watching {
            continue;
        }
        // A reply, a dead guardian, or the unguarded wait's timeout: the session's turn.
        state.phase = Phase::Paused;
        drop(state);
        if guard == Guard::Died {
            std::thread::sleep(DYING_MARKET_RECHECK);
        }
        if wakes.send(Wake::Bell(guard)).is_err() {
            return;
        }
    }
}

/// Whether the idle session saw a line, the end of stdin, or its market go.
enum Waited {
    Line(std::io::Result<String>),
    End,
    MarketGone,
}

/// Waits for the next line, announcing notices as they arrive and watching the market: asleep
/// (the watcher on the doorbell, this thread on the channel) until one of them.
fn next_line(
    client: &mut Client<'_>,
    lines: &Receiver<Wake>,
    watch: &Watch<'_>,
    style: &Style<'_>,
) -> Waited {
    loop {
        watch.start();
        let wake = lines.recv();
        watch.pause();
        match wake {
            Ok(Wake::Line(line)) => return Waited::Line(line),
            Ok(Wake::End) | Err(_) => return Waited::End,
            Ok(Wake::Bell(guard)) => {
                while let Ok(Some(reply)) = client.try_recv() {
                    (style.role.notice)(&reply, style.quiet);
                }
                if guard != Guard::Alive && client.check_market().is_err() {
                    return Waited::MarketGone;
                }
            }
        }
    }
}

fn session_lines(
    client: &mut Client<'_>,
    lines: &Receiver<Wake>,
    watch: &Watch<'_>,
    style: &Style<'_>,
    pending: &mut Option<(Vec<String>, Progress)>,
    command: &mut impl FnMut(&mut Client<'_>, &[String], &mut Progress) -> Result<OrderEnd, String>,
) -> SessionEnd {
    let role = style.role.name;
    let mut exit = Exit::Ok;
    loop {
        let (words, mut progress) = match pending.take() {
            Some(unfinished) => unfinished,
            None => {
                if style.interactive {
                    print!("{role}> ");
                    let _ = std::io::stdout().flush();
                }
                let line = match next_line(client, lines, watch, style) {
                    Waited::Line(Ok(line)) => line,
                    Waited::Line(Err(e)) => {
                        eprintln!("bookstore {role}: reading stdin: {e}");
                        return SessionEnd::Done(exit.keep_first_failure(Exit::Error));
                    }
                    Waited::End => return SessionEnd::Done(exit),
                    Waited::MarketGone => {
                        return SessionEnd::MarketGone {
                            code: exit,
                            in_flight: false,
                        }
                    }
                };
                let Some(words) = shlex::split(&line) else {
                    report(style, &format!("unbalanced quotes in {line:?}"));
                    continue;
                };
                (words, Progress::new().with_reply_grace(style.wait))
            }
        };
        match words.first().map(String::as_str) {
            None => continue,
            Some("quit" | "exit") => return SessionEnd::Done(exit),
            Some("help") => {
                println!("{}", style.role.help);
                continue;
            }
            Some("list") => {
                print_shelf(client);
                continue;
            }
            _ => {}
        }
        // A market already gone gets nothing: run this command on the next one instead.
        if client.check_market().is_err() {
            let in_flight = progress.in_flight().is_some();
            *pending = Some((words, progress));
            return SessionEnd::MarketGone {
                code: exit,
                in_flight,
            };
        }
        match command(client, &words, &mut progress) {
            Ok(OrderEnd::MarketGone) => {
                let in_flight = progress.in_flight().is_some();
                *pending = Some((words, progress));
                return SessionEnd::MarketGone {
                    code: exit,
                    in_flight,
                };
            }
            Ok(OrderEnd::Done(code)) => exit = exit.keep_first_failure(code),
            Err(message) => report(style, &message),
        }
    }
}

/// Reports a bad line and carries on.
fn report(style: &Style<'_>, message: &str) {
    eprintln!("bookstore {}: {message} (line skipped)", style.role.name);
    if !style.interactive && !style.quiet {
        eprintln!("{}", style.role.help);
    }
}

/// `list`: the shelf as the market last published it, and how full the store is.
fn print_shelf(client: &Client<'_>) {
    let store = client.store();
    match store.settled_view(Duration::from_millis(200)) {
        Ok(view) => {
            println!(
                "shelf {}/{} books",
                view.books_on_shelf,
                store.geometry().capacity
            );
            for row in &view.shelf {
                println!(
                    "  {:<40} {:>10} × {}",
                    row.title,
                    Cents(row.price_cents).to_string(),
                    row.qty
                );
            }
        }
        Err(e) => eprintln!("list: {e}"),
    }
}

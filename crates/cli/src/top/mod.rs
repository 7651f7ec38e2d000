//! `bookstore top`: a full-screen live view of a market (ratatui over crossterm), refreshed
//! four times a second from a read-only mapping: it never writes to the store and the market
//! does not know it is watched.
//!
//! Keys: `q`, Esc and Ctrl-C quit and restore the terminal; `p` pauses (the picture stays);
//! `s` changes the order of the clients. When the market exits, the last picture stays, with a
//! banner, until the user quits.

mod draw;

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::args::TopArgs;
use crate::exit::Exit;
use crate::watch::Watch;
use bookstore::shared::{OpenStoreError, StoreReader};

/// How often the picture is refreshed.
const REFRESH: Duration = Duration::from_millis(250);

/// The order of the client rows; `s` moves to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSort {
    Slot,
    Requests,
    Activity,
    Resting,
}

impl ClientSort {
    fn next(self) -> Self {
        match self {
            Self::Slot => Self::Requests,
            Self::Requests => Self::Activity,
            Self::Activity => Self::Resting,
            Self::Resting => Self::Slot,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Slot => "slot",
            Self::Requests => "requests",
            Self::Activity => "last activity",
            Self::Resting => "resting buys",
        }
    }
}

/// What the screen shows besides the samples.
pub struct Screen {
    pub watch: Watch,
    pub paused: bool,
    pub sort: ClientSort,
    /// Set once the market is seen gone: sampling stops and the last picture stays.
    pub market_exited: bool,
    /// The last sampling error (a view that kept changing), shown until a sample succeeds.
    pub problem: Option<String>,
}

pub fn run(args: TopArgs) -> Exit {
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "bookstore top: standard output is not a terminal; for a line-by-line view use `bookstore inspect --watch` (or `--json` for one snapshot)"
        );
        return Exit::Usage;
    }
    let reader = match StoreReader::open(&args.store.name) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bookstore top: {e}");
            return match e {
                OpenStoreError::Open(shm::OpenError::NotFound(_)) => Exit::NoMarket,
                _ => Exit::Error,
            };
        }
    };
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let stop = match crate::stop_signal::stop_flag(&[SIGTERM, SIGHUP, SIGINT]) {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("bookstore top: cannot install a signal handler: {e}");
            return Exit::Error;
        }
    };
    let mut screen = Screen {
        watch: Watch::new(reader),
        paused: false,
        sort: ClientSort::Requests,
        market_exited: false,
        problem: None,
    };
    // Raw mode and the alternate screen; a panic restores the terminal too (ratatui's hook).
    let mut terminal = ratatui::init();
    let outcome = serve(&mut terminal, &mut screen, &stop);
    ratatui::restore();
    match outcome {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("bookstore top: the terminal failed: {e}");
            Exit::Error
        }
    }
}

/// Reads the terminal's events on a thread of its own and hands them over. (crossterm's reader
/// spins forever on a terminal that hung up, reading its end of file; on its own thread that
/// cannot keep the main loop from noticing and leaving: the process's exit ends the thread.)
fn spawn_event_reader() -> std::sync::mpsc::Receiver<Event> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    rx
}

/// Samples, draws and reads keys until the user quits, a signal arrives or the terminal goes.
fn serve(
    terminal: &mut ratatui::DefaultTerminal,
    screen: &mut Screen,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    use std::sync::mpsc::RecvTimeoutError;
    let events = spawn_event_reader();
    let mut next_sample = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // A terminal that hung up (its window closed, tmux killed) is no terminal any more
        // (`isatty` fails with EIO); with a frozen picture nothing is written that could fail.
        if !std::io::stdout().is_terminal() {
            return Ok(());
        }
        if Instant::now() >= next_sample {
            next_sample = Instant::now() + REFRESH;
            if !screen.paused && !screen.market_exited {
                sample(screen);
            }
            terminal.draw(|frame| draw::draw(frame, screen))?;
        }
        let wait = next_sample.saturating_duration_since(Instant::now());
        let event = match events.recv_timeout(wait) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => continue,
            // The reader failed: the terminal is gone.
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        match event {
            Event::Key(key) if key.kind == KeyEventKind::Press => match key.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    return Ok(())
                }
                KeyCode::Char('p') => screen.paused = !screen.paused,
                KeyCode::Char('s') => screen.sort = screen.sort.next(),
                _ => continue,
            },
            Event::Resize(..) => {}
            _ => continue,
        }
        // Redraw at once after a key or a resize.
        terminal.draw(|frame| draw::draw(frame, screen))?;
    }
    Ok(())
}

fn sample(screen: &mut Screen) {
    match screen.watch.sample() {
        Ok(s) => {
            screen.market_exited = !s.market_running;
            screen.problem = None;
        }
        Err(e) => screen.problem = Some(e.to_string()),
    }
}

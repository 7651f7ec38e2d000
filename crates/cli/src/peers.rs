//! Helper processes of the bench and the threads lesson: reaped on every way out, and started
//! together through a starting gate (each says `ready` once set up, all are sent `go` at once).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child process that is killed and reaped on every way out, panics included.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A started peer and its stdout, past the `ready` line: what it prints after `go`.
pub struct Peer {
    pub process: Reaped,
    pub output: BufReader<ChildStdout>,
}

/// Spawns every command (stdin and stdout piped), waits until each has said `ready`, then
/// sends all of them `go`. `what` names them in the error if one fails to start.
pub fn start_together(
    commands: impl IntoIterator<Item = Command>,
    what: &str,
) -> Result<Vec<Peer>, Box<dyn std::error::Error>> {
    let mut peers = Vec::new();
    for mut command in commands {
        let mut process = Reaped(
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?,
        );
        let mut output = BufReader::new(process.0.stdout.take().expect("piped"));
        let mut line = String::new();
        output.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(format!("{what} did not start: {line:?}").into());
        }
        peers.push(Peer { process, output });
    }
    for peer in &mut peers {
        peer.process
            .0
            .stdin
            .take()
            .expect("piped")
            .write_all(b"go\n")?;
    }
    Ok(peers)
}

/// The peer's side of the gate: says `ready`, then waits for `go`.
pub fn ready_then_wait_for_go() -> std::io::Result<()> {
    println!("ready");
    std::io::stdout().flush()?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    Ok(())
}

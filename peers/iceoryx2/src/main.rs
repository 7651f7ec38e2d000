//! iceoryx2's request-response, timed the way `bookstore bench` times the market: two
//! processes, one client sending a 64-byte request and busy-polling for its 64-byte response,
//! one server busy-polling for requests and answering each at once. Every round trip is a new
//! request (`Client::send_copy`, then `PendingResponse::receive`), as an order to the market is.
//!
//! `bookstore-peer-iceoryx2 --round-trips N` spawns the server (itself, `serve NAME`), measures
//! N round trips after the same warm-up as `bookstore bench`, and prints one JSON object:
//! `{"p50": …, "p99": …, "p999": …}` in nanoseconds. `bookstore bench --iceoryx2 BIN` runs it
//! between its own rows and prints the ratio; `peers/compare` builds both and does that.
//!
//! Exit codes: 0 measured; 1 iceoryx2 failed (the message says where); 2 bad arguments.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iceoryx2::prelude::*;

/// The payload both ways: 64 bytes, one cache line, as a one-line market message.
type Payload = [u64; 8];

/// Round trips before the measured ones, as in `bookstore bench`.
const WARMUP: u32 = 2_000;

/// A request whose first word is this tells the server to leave.
const STOP: u64 = u64::MAX;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    set_log_level(LogLevel::Error);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", name] => serve(name),
        ["--round-trips", n] => match n.parse::<u32>() {
            Ok(n) if n > 0 => measure(n),
            _ => {
                return usage(&format!(
                    "--round-trips: {n:?} is not a whole number above 0"
                ))
            }
        },
        ["--help" | "-h"] => {
            println!("usage: bookstore-peer-iceoryx2 --round-trips N");
            return ExitCode::SUCCESS;
        }
        _ => return usage("expected --round-trips N"),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bookstore-peer-iceoryx2: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("bookstore-peer-iceoryx2: {problem}\nusage: bookstore-peer-iceoryx2 --round-trips N");
    ExitCode::from(2)
}

/// The service, created by whichever side comes first; one client and one server.
fn service(
    node: &Node<ipc::Service>,
    name: &str,
) -> Result<
    iceoryx2::service::port_factory::request_response::PortFactory<
        ipc::Service,
        Payload,
        (),
        Payload,
        (),
    >,
> {
    Ok(node
        .service_builder(&ServiceName::new(name)?)
        .request_response::<Payload, Payload>()
        .max_clients(1)
        .max_servers(1)
        .open_or_create()?)
}

/// The server: answers every request with its own payload, until the stop request or until its
/// parent is gone.
fn serve(name: &str) -> Result<()> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let service = service(&node, name)?;
    let server = service.server_builder().create()?;
    let parent = std::os::unix::process::parent_id();
    println!("ready");
    std::io::stdout().flush()?;
    let mut idle_polls = 0u32;
    loop {
        match server.receive()? {
            Some(request) => {
                idle_polls = 0;
                let payload = *request.payload();
                request.send_copy(payload)?;
                if payload[0] == STOP {
                    return Ok(());
                }
            }
            None => {
                idle_polls += 1;
                if idle_polls == 1 << 24 {
                    idle_polls = 0;
                    if std::os::unix::process::parent_id() != parent {
                        return Ok(());
                    }
                }
                std::hint::spin_loop();
            }
        }
    }
}

/// The server process, killed if the measurement fails before it could stop it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The client: starts the server, warms up, times `n` round trips, stops the server.
fn measure(n: u32) -> Result<()> {
    let name = format!("bookstore-bench/iceoryx2/{}", std::process::id());
    let mut server = Server(
        Command::new(std::env::current_exe()?)
            .args(["serve", &name])
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let mut ready = String::new();
    BufReader::new(server.0.stdout.take().expect("piped")).read_line(&mut ready)?;
    if ready.trim() != "ready" {
        return Err("the server process did not start".into());
    }
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let service = service(&node, &name)?;
    let client = service.client_builder().create()?;

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut payload: Payload = [0; 8];
    for i in 0..WARMUP + n {
        payload[0] = u64::from(i);
        let started = Instant::now();
        let echoed = round_trip(&client, payload)?;
        let ns = started.elapsed().as_nanos() as u64;
        if echoed != payload {
            return Err(
                format!("round trip {i}: the response is not the request's payload").into(),
            );
        }
        if i >= WARMUP {
            histogram.record(ns.max(1))?;
        }
    }
    payload[0] = STOP;
    round_trip(&client, payload)?;
    server.0.wait()?;
    println!(
        "{{\"p50\": {}, \"p99\": {}, \"p999\": {}}}",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999)
    );
    Ok(())
}

/// One request and its response, busy-polling. A request sent before the server saw this
/// client connect is not answered; it is sent again after a while (only ever in the warm-up's
/// first round trips).
fn round_trip(
    client: &iceoryx2::port::client::Client<ipc::Service, Payload, (), Payload, ()>,
    payload: Payload,
) -> Result<Payload> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = client.send_copy(payload)?;
        let resend = Instant::now() + Duration::from_millis(100);
        // The clock is read once per 1024 polls, so it does not slow the polling down.
        let mut polls = 0u32;
        loop {
            if let Some(response) = pending.receive()? {
                return Ok(*response.payload());
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(1024) && Instant::now() > resend {
                break;
            }
            std::hint::spin_loop();
        }
        if Instant::now() > give_up {
            return Err("no response from the server in 10 s".into());
        }
    }
}

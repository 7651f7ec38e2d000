//! `cargo bench -p pmap`: our pmap against procps-ng's on a process with 5,000 mappings, in
//! every format, runs alternating so both see the same machine. Prints medians and the ratio;
//! asserts nothing about time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REAL: &str = "/usr/bin/pmap";
const OURS: &str = env!("CARGO_BIN_EXE_pmap");
const RUNS: usize = 15;

const MANY_MAPPINGS: &str = r#"
import mmap, sys
keep = []
for i in range(5000):
    # Alternating protections keep neighbouring anonymous mappings from merging.
    prot = mmap.PROT_READ if i % 2 else mmap.PROT_READ | mmap.PROT_WRITE
    keep.append(mmap.mmap(-1, mmap.PAGESIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot))
print("ready", flush=True)
sys.stdin.read()
"#;

fn time_once(binary: &str, args: &[&str]) -> Duration {
    let t = Instant::now();
    let status = Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{binary} {args:?} failed");
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !std::path::Path::new(REAL).exists() {
        eprintln!("skipped: {REAL} is not installed");
        return;
    }
    let mut target = Command::new("python3")
        .args(["-c", MANY_MAPPINGS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut ready = String::new();
    BufReader::new(target.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let pid = target.id().to_string();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .count();
    println!("pmap on a process with {maps} mappings, median of {RUNS} runs each (alternating)\n");
    println!(
        "{:<10} {:>12} {:>12} {:>8}",
        "format", "procps", "ours", "ours/procps"
    );
    for flags in ["-X", "-XX", "-x", "-d", ""] {
        let mut args: Vec<&str> = flags.split_whitespace().collect();
        args.push(&pid);
        let (mut real, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            real.push(time_once(REAL, &args));
            ours.push(time_once(OURS, &args));
        }
        let (r, o) = (median(real), median(ours));
        println!(
            "{:<10} {:>10.2}ms {:>10.2}ms {:>8.2}",
            if flags.is_empty() { "(default)" } else { flags },
            r.as_secs_f64() * 1e3,
            o.as_secs_f64() * 1e3,
            o.as_secs_f64() / r.as_secs_f64()
        );
    }
    target.stdin.take().unwrap().write_all(b"").unwrap();
    let _ = target.wait();
}

//! Our pmap against procps-ng 4.0.2's, byte for byte: stdout, stderr and exit code, for the
//! same process and arguments. Skipped (with a message) where `/usr/bin/pmap` is absent or
//! another version.
//!
//! Both run with `argv[0] = "pmap"` (glibc's getopt messages use it). A live process can change
//! between the two runs, so a comparison is retried twice before it fails.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};

const REAL: &str = "/usr/bin/pmap";
const OURS: &str = env!("CARGO_BIN_EXE_pmap");

fn procps_4_0_2() -> bool {
    let ok = Command::new(REAL)
        .arg("-V")
        .output()
        .is_ok_and(|o| o.stdout == b"pmap from procps-ng 4.0.2\n");
    if !ok {
        eprintln!("skipped: {REAL} is absent or not procps-ng 4.0.2");
    }
    ok
}

fn run(binary: &str, args: &[&str], env: &[(&str, &str)], uid: Option<u32>) -> Output {
    let mut c = Command::new(binary);
    c.arg0("pmap")
        .args(args)
        .env_remove("LC_ALL")
        .env_remove("LANG")
        .env_remove("LC_CTYPE");
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(uid) = uid {
        c.uid(uid).gid(uid);
    }
    c.output().expect("runs")
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs both; `Err` with both outputs if they differ on three tries.
fn compare_as(args: &[&str], env: &[(&str, &str)], uid: Option<u32>) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..3 {
        let real = run(REAL, args, env, uid);
        let ours = run(OURS, args, env, uid);
        if real.stdout == ours.stdout
            && real.stderr == ours.stderr
            && real.status.code() == ours.status.code()
        {
            return Ok(());
        }
        last = format!(
            "pmap {args:?} {env:?}\n=== procps\n{}=== ours\n{}",
            show(&real),
            show(&ours)
        );
    }
    Err(last)
}

/// Arguments and environment of one comparison.
type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>);

fn compare_all(cases: &[Case]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(args, env)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            compare_as(&args, env, None).err()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The zoo process (tests/zoo.py). Dropping it closes its stdin, so it cleans up and exits.
struct Zoo {
    child: Child,
    facts: HashMap<String, String>,
}

impl Zoo {
    fn start() -> Option<Zoo> {
        let Ok(mut child) = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zoo.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: python3 is needed for the zoo process");
            return None;
        };
        let mut facts = HashMap::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if line == "ready" {
                break;
            }
            let (k, v) = line.split_once(' ').unwrap();
            facts.insert(k.to_owned(), v.to_owned());
        }
        Some(Zoo { child, facts })
    }

    fn pid(&self) -> &str {
        &self.facts["pid"]
    }
}

impl Drop for Zoo {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

const LOCALES: [&[(&str, &str)]; 2] = [&[("LC_ALL", "C")], &[("LC_ALL", "C.UTF-8")]];

#[test]
fn every_simple_format_names_every_kind_of_mapping_as_procps_does() {
    if !procps_4_0_2() {
        return;
    }
    let Some(zoo) = Zoo::start() else { return };
    let mut cases = Vec::new();
    for flags in [
        "",
        "-x",
        "-d",
        "-q",
        "-x -q",
        "-d -q",
        "-p",
        "-x -p",
        "-d -p",
        "-q -p",
        "--extended --show-path",
    ] {
        for env in LOCALES {
            let mut args = words(flags);
            args.push(zoo.pid().to_owned());
            cases.push((args, env.to_vec()));
        }
    }
    compare_all(&cases);
}

#[test]
fn extended_formats_match_procps_except_what_depends_on_the_observer() {
    if !procps_4_0_2() {
        return;
    }
    let Some(zoo) = Zoo::start() else { return };
    // Pss shares a page among the processes that map it (and Shared_/Private_ count them), and
    // each pmap maps libc and the locale archive differently: those columns may differ by the
    // observer's share. Everything else, names and layout included, must match word for word.
    // (The static-process test checks these columns byte for byte.)
    for flags in ["-X", "-XX", "-X -p", "-XX -p"] {
        let mut args = words(flags);
        args.push(zoo.pid().to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let real = run(REAL, &args, &[("LC_ALL", "C.UTF-8")], None);
        let ours = run(OURS, &args, &[("LC_ALL", "C.UTF-8")], None);
        assert_eq!(real.status.code(), ours.status.code());
        assert_eq!(real.stderr, ours.stderr);
        let (r, o) = (
            String::from_utf8_lossy(&real.stdout),
            String::from_utf8_lossy(&ours.stdout),
        );
        let (rl, ol): (Vec<&str>, Vec<&str>) = (r.lines().collect(), o.lines().collect());
        assert_eq!(rl.len(), ol.len(), "{flags}: line counts\n{r}\n{o}");
        // Line 0 is "PID:   command", line 1 the header, then one row per mapping, then the
        // "====" line and the totals, whose first value sits under the first detail column.
        let header: Vec<&str> = rl[1].split_whitespace().collect();
        assert_eq!(
            header,
            ol[1].split_whitespace().collect::<Vec<_>>(),
            "{flags}: header"
        );
        let first_detail = header
            .iter()
            .position(|h| *h == "Size")
            .expect("a Size column");
        // Whether a page is shared or private also counts the processes mapping it, pmap included.
        let observer = |i: usize| {
            header.get(i).is_some_and(|h| {
                h.starts_with("Pss")
                    || h.starts_with("Shared_")
                    || h.starts_with("Private_")
                    || *h == "SwapPss"
            })
        };
        let last = rl.len() - 1;
        for (n, (a, b)) in rl.iter().zip(&ol).enumerate() {
            let (aw, bw): (Vec<&str>, Vec<&str>) = (
                a.split_whitespace().collect(),
                b.split_whitespace().collect(),
            );
            assert_eq!(aw.len(), bw.len(), "{flags} line {n}:\n{a}\n{b}");
            if n == last - 1 {
                continue; // the ==== line: widths may follow a Pss total's width
            }
            let shift = if n == last { first_detail } else { 0 };
            for (i, (x, y)) in aw.iter().zip(&bw).enumerate() {
                assert!(
                    x == y || observer(i + shift),
                    "{flags} line {n}, column {i}:\n{a}\n{b}"
                );
            }
        }
    }
}

#[test]
fn extended_formats_are_byte_identical_on_a_static_process() {
    if !procps_4_0_2() {
        return;
    }
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("skipped: busybox-static is needed for a process that shares no pages with pmap");
        return;
    };
    let mut target = Command::new(busybox).args(["sleep", "60"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = target.id().to_string();
    let mut cases = Vec::new();
    for flags in ["-X", "-XX", "-X -q", "-XX -q", "-X -p", "-XX -p"] {
        let mut args = words(flags);
        args.push(pid.clone());
        cases.push((args.clone(), vec![]));
        args.push(pid.clone());
        cases.push((args, vec![]));
    }
    compare_all(&cases);
    target.kill().unwrap();
    target.wait().unwrap();
}

#[test]
fn ranges_limit_output_as_procps_does() {
    if !procps_4_0_2() {
        return;
    }
    let Some(zoo) = Zoo::start() else { return };
    let maps = procmaps::maps::read(zoo.pid()).unwrap();
    let mid = &maps[maps.len() / 2];
    let (lo, hi) = (
        format!("{:x}", mid.start),
        format!("{:x}", mid.end + 0x10000),
    );
    let mut cases = Vec::new();
    for range in [
        format!("{lo},{hi}"),
        format!(",{hi}"),
        format!("{lo},"),
        lo.clone(),
        format!("0x{lo}"),
        "0,ffffffffffffffff".into(),
    ] {
        for flags in ["", "-x", "-d", "-q"] {
            let mut args = words(flags);
            args.extend(["-A".to_owned(), range.clone(), zoo.pid().to_owned()]);
            cases.push((args, vec![]));
        }
        cases.push((
            vec![format!("--range={range}"), zoo.pid().to_owned()],
            vec![],
        ));
    }
    compare_all(&cases);
}

#[test]
fn kernel_threads_zombies_threads_missing_and_several_pids_match_procps() {
    if !procps_4_0_2() {
        return;
    }
    let Some(zoo) = Zoo::start() else { return };
    let (pid, tid, zombie) = (
        zoo.pid().to_owned(),
        zoo.facts["tid"].clone(),
        zoo.facts["zombie"].clone(),
    );
    let missing = "2147483647".to_owned();
    let mut cases = Vec::new();
    for flags in ["", "-x", "-d", "-q"] {
        for pids in [
            vec!["2".to_owned()],
            vec![zombie.clone()],
            vec![tid.clone()],
            vec![missing.clone()],
            vec![pid.clone(), missing.clone(), "2".into(), pid.clone()],
            vec![format!("/proc/{pid}")],
        ] {
            let mut args = words(flags);
            args.extend(pids);
            cases.push((args, vec![]));
        }
    }
    // -X only where no page is shared with pmap (see the observer test for the zoo itself).
    for pids in [
        vec!["2".to_owned()],
        vec![zombie.clone()],
        vec![missing.clone()],
        vec!["2".to_owned(), missing.clone(), zombie.clone()],
    ] {
        let mut args = vec!["-X".to_owned()];
        args.extend(pids);
        cases.push((args, vec![]));
    }
    compare_all(&cases);
}

#[test]
fn every_error_matches_procps() {
    if !procps_4_0_2() {
        return;
    }
    let cases: Vec<Case> = [
        "",
        "-k",
        "abc",
        "0",
        "-1",
        "1x",
        "08",
        "-x",
        "-x -d 1",
        "-X -c 1",
        "-A zz 1",
        "-A",
        "--range",
        "--quiet=1 1",
        "--read 1",
        "--nope 1",
        "-n -q",
        "-N",
        "-n 1",
        "/proc/self",
        "-r 1",
        "-- -x",
        "4294967296",
        "0x80000000",
    ]
    .iter()
    .map(|a| (words(a), vec![]))
    .collect();
    compare_all(&cases);
}

#[test]
fn unreadable_maps_match_procps() {
    if !procps_4_0_2() {
        return;
    }
    if rustix_is_root() {
        let Some(zoo) = Zoo::start() else { return };
        for flags in ["", "-x", "-X"] {
            let mut args = words(flags);
            args.push(zoo.pid().to_owned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            compare_as(&args, &[], Some(65534)).unwrap();
        }
    } else {
        // Not root: process 1 belongs to someone else already.
        compare_as(&["1"], &[], None).unwrap();
    }
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|u| u.split_whitespace().next() == Some("0"))
}

#[test]
fn rc_files_are_written_and_read_as_procps_does() {
    if !procps_4_0_2() {
        return;
    }
    let Some(zoo) = Zoo::start() else { return };
    let base = std::env::temp_dir().join(format!("pmap-rc-{}", std::process::id()));
    let home = |who: &str| {
        let h = base.join(who);
        std::fs::create_dir_all(&h).unwrap();
        h
    };
    let (real_home, our_home) = (home("real"), home("ours"));
    let with_home = |binary: &str, h: &std::path::Path, args: &[&str]| {
        run(binary, args, &[("HOME", h.to_str().unwrap())], None)
    };
    // -n writes the template; a second -n refuses to overwrite.
    for _ in 0..2 {
        let (r, o) = (
            with_home(REAL, &real_home, &["-n"]),
            with_home(OURS, &our_home, &["-n"]),
        );
        assert_eq!((show(&r), r.status.code()), (show(&o), o.status.code()));
    }
    let template = std::fs::read(real_home.join(".pmaprc")).unwrap();
    assert_eq!(template, std::fs::read(our_home.join(".pmaprc")).unwrap());
    // -c with edited rc files (including lines procps warns about).
    for rc in [
        "[Fields Display]\nRss\nPss\nMapping\n",
        "[Fields Display]\nPerm\nInode\nSize junk\n\n[Mapping]\nShowPath\n[Other]\nx\n[broken\nstray\n",
        &String::from_utf8_lossy(&template),
    ] {
        for h in [&real_home, &our_home] {
            std::fs::write(h.join(".pmaprc"), rc).unwrap();
        }
        let (r, o) = (with_home(REAL, &real_home, &["-c", zoo.pid()]), with_home(OURS, &our_home, &["-c", zoo.pid()]));
        // Columns that count the processes mapping a page depend on which pmap looks (see the
        // observer test); an rc file without them must give the same bytes.
        let observer_columns = rc.lines().any(|l| {
            let l = l.trim();
            !l.starts_with('#') && (l.starts_with("Pss") || l.starts_with("Shared_") || l.starts_with("Private_"))
        });
        let same = if observer_columns {
            let (x, y) = (String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&o.stdout));
            x.lines().count() == y.lines().count() && r.stderr == o.stderr && r.status.code() == o.status.code()
        } else {
            r.stdout == o.stdout && r.stderr == o.stderr && r.status.code() == o.status.code()
        };
        assert!(same, "rc {rc:?}\n=== procps\n{}=== ours\n{}", show(&r), show(&o));
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn every_process_on_this_machine_prints_the_same_in_the_simple_formats() {
    if !procps_4_0_2() {
        return;
    }
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert!(pids.len() > 5, "a handful of processes at least");
    let mut cases = Vec::new();
    for pid in &pids {
        for flags in ["", "-x", "-d"] {
            let mut args = words(flags);
            args.push(pid.clone());
            cases.push((args, vec![]));
        }
    }
    // A process that exits between the two runs prints differently; retries absorb that, but a
    // process that keeps changing may not settle: allow a few such, none systematic.
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(args, env)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            compare_as(&args, env, None).err()
        })
        .collect();
    assert!(
        failures.len() <= 2,
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A process whose command line holds TAB, ESC, DEL, CR, a C1 control (U+0085), valid
/// multibyte UTF-8 and invalid bytes: the first line of every format, in the C locale (where
/// procps prints `.` for a control character), C.UTF-8 and no locale at all.
#[test]
fn command_lines_with_control_characters_match_in_every_locale_and_format() {
    if !procps_4_0_2() {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let odd = [
        std::ffi::OsStr::from_bytes(b"tab\there esc\x1bdel\x7fcr\rend"),
        std::ffi::OsStr::from_bytes(b"P\xc3\xa1ramo c1\xc2\x85 bad\xffbyte cut\xe2\x82"),
    ];
    // A process that just waits, with the odd arguments on its command line.
    let mut child = Command::new("python3")
        .args(["-c", "import time; time.sleep(30)"])
        .args(odd)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = child.id().to_string();
    let locales: [&[(&str, &str)]; 3] = [&[("LC_ALL", "C")], &[("LC_ALL", "C.UTF-8")], &[]];
    // The first line (PID and command line) only: the rest of -X's figures (Pss of shared
    // libraries) move while the two pmaps themselves map those libraries.
    let first_line = |o: &Output| {
        o.stdout
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or(&[])
            .to_vec()
    };
    let mut failures = Vec::new();
    for env in locales {
        for format in [&[][..], &["-x"], &["-X"], &["-XX"], &["-d"]] {
            let mut args: Vec<&str> = format.to_vec();
            args.push(&pid);
            let (real, ours) = (run(REAL, &args, env, None), run(OURS, &args, env, None));
            if first_line(&real) != first_line(&ours) {
                failures.push(format!(
                    "pmap {args:?} {env:?}\n  procps: {:?}\n  ours:   {:?}",
                    String::from_utf8_lossy(&first_line(&real)),
                    String::from_utf8_lossy(&first_line(&ours))
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = child.kill();
    let _ = child.wait();
}

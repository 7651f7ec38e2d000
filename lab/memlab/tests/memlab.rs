//! The memory lab's programs, run as a learner runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const MEMLAB: &str = env!("CARGO_BIN_EXE_memlab");

fn memlab(args: &[&str]) -> Output {
    Command::new(MEMLAB).args(args).output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn small_blocks_land_in_the_heap_and_large_ones_in_anonymous_mappings() {
    let v = json(&memlab(&["allocate", "--to", "8M", "--json"]));
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 14, "1 KiB doubling to 8 MiB");
    for s in steps {
        let (size, region) = (s["size"].as_u64().unwrap(), s["region"].as_str().unwrap());
        if size <= 64 * 1024 {
            assert_eq!(region, "heap", "{size} bytes");
        }
        if size >= 1024 * 1024 {
            assert_eq!(region, "mmap", "{size} bytes");
            assert_eq!(s["mapping_name"], "[anonymous]");
        }
    }
    assert!(v["switch"]["first_own_mapping_block"].as_u64().unwrap() >= 128 * 1024);
}

#[test]
fn rss_grows_with_every_page_written() {
    let v = json(&memlab(&[
        "allocate", "--from", "1M", "--to", "32M", "--json",
    ]));
    let steps = v["steps"].as_array().unwrap();
    for w in steps.windows(2) {
        let grew_kib = w[1]["rss_kib"].as_u64().unwrap() - w[0]["rss_kib"].as_u64().unwrap();
        let size_kib = w[1]["size"].as_u64().unwrap() / 1024;
        assert!(
            grew_kib * 10 >= size_kib * 9,
            "RSS grew {grew_kib} KiB for a {size_kib} KiB block"
        );
    }
}

#[test]
fn access_freed_decodes_what_tcache_wrote_into_the_freed_block() {
    let e = json(&memlab(&["access-freed", "--json"]));
    let ints = |k: &str| -> Vec<i64> {
        e[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    let before = ints("before");
    assert_eq!(before, (0..20).map(|i| 2 * i).collect::<Vec<_>>());
    assert_eq!(
        ints("after_free")[4..],
        before[4..],
        "free leaves the rest of the block alone"
    );
    if e["glibc"].as_str().is_some_and(|v| v >= "2.32") {
        assert_eq!(e["key"], e["second_key"], "one tcache key per process");
        assert_ne!(e["key"], 0);
        assert_eq!(
            e["second_next_decoded"], e["address"],
            "the second freed block links to the first"
        );
        assert_eq!(
            e["reused_first"], e["second_address"],
            "last freed, first reused"
        );
        assert_eq!(e["reused_second"], e["address"]);
        assert_eq!(
            ints("after_reuse")[2..4],
            [0, 0],
            "malloc clears the key on reuse"
        );
    }
    let text = String::from_utf8(memlab(&["access-freed"]).stdout).unwrap();
    assert!(
        text.contains("tcache's `next`") && text.contains("tcache's `key`"),
        "{text}"
    );
}

#[test]
fn valgrind_reports_the_invalid_read() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("skipped: valgrind is not installed (.ci/run installs it)");
        return;
    }
    let out = Command::new("valgrind")
        .args(["--error-exitcode=99", MEMLAB, "access-freed"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "valgrind found errors:\n{err}");
    assert!(err.contains("Invalid read of size 4"), "{err}");
    assert!(err.contains("Address") && err.contains("free'd"), "{err}");
}

#[test]
fn bad_sizes_name_the_field_and_exit_2() {
    for (args, field) in [
        (&["allocate", "--to", "0"][..], "to:"),
        (&["allocate", "--from", "1Q"][..], "from:"),
        (&["allocate", "--from", "2M", "--to", "1M"][..], "to:"),
    ] {
        let out = memlab(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(field),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn pause_waits_for_enter_and_says_which_pmap_to_run() {
    let mut child = Command::new(MEMLAB)
        .args(["allocate", "--to", "4K", "--pause", "--hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    child.stdin.take().unwrap().write_all(b"\n\n\n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches(&format!("run `pmap -x {pid}`")).count(),
        4,
        "3 steps and the hold: {err}"
    );
}

#[test]
fn hold_with_stdin_at_its_end_holds_until_sigterm_and_says_so() {
    let child = Command::new(MEMLAB)
        .args(["allocate", "--to", "4K", "--hold"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("holding until SIGINT or SIGTERM"), "{err}");
    assert!(err.contains("stopped by a signal"), "{err}");
}

#[test]
fn hold_secs_holds_without_reading_stdin() {
    let started = std::time::Instant::now();
    let out = Command::new(MEMLAB)
        .args(["allocate", "--to", "4K", "--hold-secs", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

#[test]
fn a_failed_allocation_names_the_size_and_the_limit_and_exits_cleanly() {
    let Ok(out) = Command::new("prlimit")
        .args([
            "--as=400000000",
            MEMLAB,
            "allocate",
            "--to",
            "512M",
            "--force",
        ])
        .output()
    else {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean failure, not an abort: {err}"
    );
    assert!(err.contains("allocating 256 MiB failed"), "{err}");
    assert!(err.contains("address-space limit: 381.5 MiB"), "{err}");
}

#[test]
fn blocks_larger_than_the_machine_are_refused_unless_forced() {
    let out = Command::new(MEMLAB)
        .args(["allocate", "--from", "4096G", "--to", "4096G"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("more than this machine's"), "{err}");
    assert!(err.contains("--force"), "{err}");
}

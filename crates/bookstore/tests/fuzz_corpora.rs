//! Replays the fuzz corpora (`fuzz/corpus/TARGET/*`) through the same property checks the
//! fuzz targets run, so every input the fuzzer ever kept is re-checked in every test run.
//!
//! To fuzz (nightly and `cargo install cargo-fuzz`):
//! ```text
//! cd fuzz && cargo +nightly fuzz run journal_reader -- -max_total_time=300
//! ```
//! `cargo test -p bookstore --test fuzz_corpora -- --ignored` rewrites the seed inputs.

use std::path::PathBuf;

use bookstore::fuzzing;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds inputs", dir.display());
    inputs
}

fn replay(target: &str, check: fn(&[u8])) {
    let inputs = corpus(target);
    for (path, bytes) in &inputs {
        let outcome = std::panic::catch_unwind(|| check(bytes));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
    println!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn request_decoder_corpus_replays_cleanly() {
    replay("request_decoder", fuzzing::request_decoder);
}

#[test]
fn header_validator_corpus_replays_cleanly() {
    replay("header_validator", fuzzing::header_validator);
}

#[test]
fn journal_reader_corpus_replays_cleanly() {
    replay("journal_reader", fuzzing::journal_reader);
}

#[test]
fn snapshot_reader_corpus_replays_cleanly() {
    replay("snapshot_reader", fuzzing::snapshot_reader);
}

/// Writes valid seed inputs for each target: real encodings, a real header, a real journal.
#[test]
#[ignore = "writes files; run by hand to refresh the seeds"]
fn write_seed_inputs() {
    use bookstore::journal::format::{encode_record, FileHeader};
    use bookstore::wire::Request;
    use engine::{BuyTarget, ClientId, Command, Price, Qty, RequestId, Title};

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let title = Title::new("Dune").unwrap();
    let price = Price::from_cents(1250).unwrap();
    let qty = Qty::new(3).unwrap();
    let requests = [
        Request::List {
            request: RequestId(1),
            title: title.clone(),
            price,
            qty,
        },
        Request::Buy {
            request: RequestId(2),
            target: BuyTarget::Any,
            max_price: price,
            qty,
            timeout_ms: Some(500),
        },
        Request::Buy {
            request: RequestId(3),
            target: BuyTarget::Title(title.clone()),
            max_price: price,
            qty,
            timeout_ms: None,
        },
        Request::Cancel {
            request: RequestId(3),
        },
        Request::Ask {
            request: RequestId(2),
        },
    ];
    let bytes_of = |w: &bookstore::layout::Message| -> Vec<u8> {
        w.iter().flat_map(|w| w.to_le_bytes()).collect()
    };
    for (i, r) in requests.iter().enumerate() {
        write(
            "request_decoder",
            &format!("seed-{i}"),
            &bytes_of(&r.encode()),
        );
    }
    // Titles as ids of the fuzz target's title table.
    for i in [0, 2] {
        let w = requests[i].encode_with(&mut bookstore::fuzzing::FourTitles);
        write(
            "request_decoder",
            &format!("seed-{i}-title-id"),
            &bytes_of(&w),
        );
    }
    let bought = bookstore::wire::Reply::Bought {
        request: RequestId(3),
        trade_id: 9,
        title: title.clone(),
        price,
        qty: 1,
        done: true,
    };
    let w = bought.encode_with(Some(0));
    write("request_decoder", "seed-reply-title-id", &bytes_of(&w));

    let name = shm::ShmName::new(&format!("/bookstore-seed-{}", std::process::id())).unwrap();
    let geometry = bookstore::layout::Geometry {
        capacity: 100,
        slot_count: 4,
    };
    let store = bookstore::shared::SharedStore::create(
        &name,
        geometry,
        shm::Mode::OWNER_ONLY,
        shm::process::ProcessId::current().unwrap(),
    )
    .expect("create a store for its header");
    let mut header = (store.segment().len() as u64).to_le_bytes().to_vec();
    header.extend_from_slice(&store.segment().snapshot_bytes()[..bookstore::layout::HEADER_SIZE]);
    shm::unlink(&name).unwrap();
    write("header_validator", "seed-0", &header);

    let mut journal = FileHeader::new(10, 0).encode().to_vec();
    let (seller, buyer) = (ClientId(0x5e11 << 64 | 1), ClientId(0xb0b << 64 | 2));
    let commands = [
        Command::List {
            client: seller,
            request: RequestId(1),
            title: title.clone(),
            price,
            qty,
        },
        Command::Buy {
            client: buyer,
            request: RequestId(1),
            target: BuyTarget::Title(title.clone()),
            max_price: price,
            qty: Qty::new(5).unwrap(),
            deadline: Some(100),
        },
        Command::Buy {
            client: buyer,
            request: RequestId(2),
            target: BuyTarget::Any,
            max_price: price,
            qty: Qty::new(1).unwrap(),
            deadline: None,
        },
        Command::Restart,
        Command::Expire,
        Command::ClientGone { client: buyer },
    ];
    for (now, c) in commands.iter().enumerate() {
        encode_record(now as u64 * 60, c, &mut journal);
    }
    write("journal_reader", "seed-0", &journal);

    // A snapshot of the store those commands (but the last two) leave, receipts included.
    let mut engine = engine::Engine::new(10);
    let mut receipts = engine::Receipts::new();
    let mut trades = Vec::new();
    for (now, c) in commands[..3].iter().enumerate() {
        let mut events = Vec::new();
        let intent = engine::Receipts::intent(c);
        engine.apply(now as u64 * 60, c, &mut events);
        receipts.record(intent, &events);
        trades.extend(events.into_iter().filter_map(|e| match e {
            engine::Event::Traded(t) => Some(t),
            _ => None,
        }));
    }
    let snapshot = bookstore::journal::snapshot::Snapshot {
        commands: 3,
        journal_offset: 0,
        last_now: 120,
        engine: engine.state(),
        recent_trades: trades,
        receipts: receipts.state(),
    };
    write(
        "snapshot_reader",
        "seed-0",
        &bookstore::journal::snapshot::encode(&snapshot),
    );
}

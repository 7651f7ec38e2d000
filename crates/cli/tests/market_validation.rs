//! The market validates what clients send: a malformed request gets an error reply naming the
//! field, and the market keeps serving everyone else.

mod common;

use std::time::{Duration, Instant};

use bookstore::client::{open_store, Client, ClientRole};
use bookstore::wire::{Malformed, Reply, Request};
use common::*;
use engine::{Price, Qty, RequestId, Title};
use shm::ShmName;

#[test]
fn a_malformed_request_gets_an_error_reply_and_the_market_keeps_serving() {
    let market = Market::start("malformed", &[]);
    let name = ShmName::new(&market.name).unwrap();
    let store = open_store(&name, Duration::from_secs(5)).unwrap();
    let mut client = Client::attach(&store, ClientRole::Other, Duration::from_micros(50)).unwrap();
    let deadline = || Some(Instant::now() + Duration::from_secs(5));

    let mut bad = Request::List {
        request: RequestId(41),
        title: Title::new("Dune").unwrap(),
        price: Price::from_cents(100).unwrap(),
        qty: Qty::new(1).unwrap(),
    }
    .encode();
    bad[2] = 0; // price 0
    client.send_raw(&bad).unwrap();
    assert_eq!(
        client.recv(deadline()).unwrap(),
        Some(Reply::Malformed {
            request: RequestId(41),
            error: Malformed::Price(0)
        })
    );

    let mut garbage = [0xdead_beef_u64; bookstore_ipc::ring::MESSAGE_WORDS];
    garbage[1] = 42;
    client.send_raw(&garbage).unwrap();
    assert!(matches!(
        client.recv(deadline()).unwrap(),
        Some(Reply::Malformed {
            request: RequestId(42),
            ..
        })
    ));

    // Still serving, this client and others.
    assert_eq!(
        code(&market.client("seller", &["sell", "Dune", "--price", "1"])),
        0
    );
    drop(client);
    drop(store);
    let v = market.assert_balanced();
    assert_eq!(v["malformed_total"], 2);
    assert_eq!(v["books_on_shelf"], 1);
    market.stop();
}

#[test]
fn requests_sent_just_before_detaching_are_still_applied() {
    let market = Market::start("detach-drain", &[]);
    let name = ShmName::new(&market.name).unwrap();
    let store = open_store(&name, Duration::from_secs(5)).unwrap();
    for n in 0..3 {
        let mut client = Client::attach(&store, ClientRole::Other, Duration::ZERO).unwrap();
        for i in 0..10 {
            client
                .push(&Request::List {
                    request: RequestId(i),
                    title: Title::new(&format!("Book {n}")).unwrap(),
                    price: Price::from_cents(100).unwrap(),
                    qty: Qty::new(1).unwrap(),
                })
                .unwrap();
        }
        // Detach without waiting for a single reply.
        drop(client);
    }
    drop(store);
    assert!(
        eventually(Duration::from_secs(2), || market.inspect()
            ["books_on_shelf"]
            == 30),
        "all 30 listings applied: {:#}",
        market.inspect()
    );
    market.assert_balanced();
    market.stop();
}

#[test]
fn a_title_travels_as_its_table_id_once_listed_and_an_id_the_table_lacks_is_malformed() {
    use bookstore::titles::ClientTitles;
    let market = Market::start("title-ids", &[]);
    let name = ShmName::new(&market.name).unwrap();
    let store = open_store(&name, Duration::from_secs(5)).unwrap();
    let mut client = Client::attach(&store, ClientRole::Other, Duration::from_micros(50)).unwrap();
    let deadline = || Some(Instant::now() + Duration::from_secs(5));
    let list = |request, title: &str| Request::List {
        request: RequestId(request),
        title: Title::new(title).unwrap(),
        price: Price::from_cents(100).unwrap(),
        qty: Qty::new(1).unwrap(),
    };

    // The first listing of a title goes as text; the market puts the title in its table.
    let mut titles = ClientTitles::new(store.title_table());
    let first = list(1, "The Left Hand of Darkness").encode_with(&mut titles);
    assert_ne!((first[0] >> 8) & 0xff, 0, "as text: a length");
    client.send_raw(&first).unwrap();
    assert!(matches!(
        client.recv(deadline()).unwrap(),
        Some(Reply::Listed { .. })
    ));
    assert_eq!(market.inspect()["title_table_titles"], 1);

    // From then on it goes as its id: one cell, whatever its length, and the market takes it.
    let by_id = list(2, "The Left Hand of Darkness").encode_with(&mut titles);
    assert_eq!(
        ((by_id[0] >> 8) & 0xff, by_id[4]),
        (0, 0),
        "no length; id 0"
    );
    assert!(by_id[bookstore_ipc::ring::CELL_WORDS..]
        .iter()
        .all(|&w| w == 0));
    client.send_raw(&by_id).unwrap();
    assert!(matches!(
        client.recv(deadline()).unwrap(),
        Some(Reply::Listed { .. })
    ));

    // An id the table does not hold names nothing: malformed, named.
    let mut unknown = by_id;
    unknown[1] = 3;
    unknown[4] = 77;
    client.send_raw(&unknown).unwrap();
    assert_eq!(
        client.recv(deadline()).unwrap(),
        Some(Reply::Malformed {
            request: RequestId(3),
            error: Malformed::TitleId(77)
        })
    );

    // A buyer process gets the trade's title back from its id.
    let out = market.client(
        "buyer",
        &[
            "buy",
            "The Left Hand of Darkness",
            "--max-price",
            "1",
            "--qty",
            "2",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("bought 1 × \"The Left Hand of Darkness\"")
            && text.contains("filled: 2 of 2"),
        "{text}"
    );
    drop(client);
    drop(store);
    let v = market.assert_balanced();
    assert_eq!(
        (
            v["malformed_total"].as_u64(),
            v["title_table_titles"].as_u64()
        ),
        (Some(1), Some(1))
    );
    market.stop();
}

#[test]
fn a_title_table_record_scribbled_on_is_never_shown_as_a_title() {
    use std::os::unix::fs::FileExt;
    let market = Market::start("title-scribble", &["--capacity", "50", "--slots", "8"]);
    assert_eq!(
        code(&market.client("seller", &["sell", "Dune", "--price", "1", "--qty", "2"])),
        0
    );
    assert_eq!(market.inspect()["title_table_titles"], 1);
    // Record 0's first title word: "Dune" becomes "D\x01ne", a control character.
    let geometry = bookstore::layout::Geometry {
        capacity: 50,
        slot_count: 8,
    };
    let object = object_for_writing(&market.name);
    let word = u64::from_le_bytes(*b"D\x01ne\0\0\0\0");
    let at = geometry.titles_offset() + 128 + 8;
    object.write_at(&word.to_le_bytes(), at as u64).unwrap();
    let v = market.inspect();
    assert_eq!(v["title_table_invalid"], 1, "inspect counts it");
    let text = stdout(&run(&["inspect", "--name", &market.name]));
    assert!(text.contains("NOT valid titles"), "{text}");

    // A buyer of "Dune" cannot resolve the reply's id: a clear error naming the field, never
    // the scribbled bytes as a title. The market goes on serving.
    let out = market.client("buyer", &["buy", "Dune", "--max-price", "1"]);
    assert_ne!(code(&out), 0);
    assert_ne!(code(&out), 101, "{}", stderr(&out));
    assert!(stderr(&out).contains("title id"), "{}", stderr(&out));
    assert!(!stdout(&out).contains('\u{1}'));
    assert_eq!(
        code(&market.client("seller", &["sell", "Emma", "--price", "1"])),
        0
    );
    market.assert_balanced();
    market.stop();
}

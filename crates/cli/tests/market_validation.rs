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

//! The engine's rules, one example each.

use engine::*;

fn t(s: &str) -> Title {
    Title::new(s).unwrap()
}
fn p(c: u64) -> Price {
    Price::from_cents(c).unwrap()
}
fn q(n: u64) -> Qty {
    Qty::new(n).unwrap()
}
const SELLER: ClientId = ClientId(1);
const BUYER: ClientId = ClientId(2);

fn list(e: &mut Engine, req: u64, title: &str, price: u64, qty: u64) -> Vec<Event> {
    let mut out = vec![];
    let cmd = Command::List {
        client: SELLER,
        request: RequestId(req),
        title: t(title),
        price: p(price),
        qty: q(qty),
    };
    e.apply(0, &cmd, &mut out);
    e.check_invariants().unwrap();
    out
}

fn buy(
    e: &mut Engine,
    now: Millis,
    req: u64,
    target: BuyTarget,
    max: u64,
    qty: u64,
    deadline: Option<Millis>,
) -> Vec<Event> {
    let mut out = vec![];
    let cmd = Command::Buy {
        client: BUYER,
        request: RequestId(req),
        target,
        max_price: p(max),
        qty: q(qty),
        deadline,
    };
    e.apply(now, &cmd, &mut out);
    e.check_invariants().unwrap();
    out
}

fn trades(events: &[Event]) -> Vec<(u64, u32, RequestId)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Traded(t) => Some((t.price.cents(), t.qty, t.list_request)),
            _ => None,
        })
        .collect()
}

#[test]
fn buy_takes_cheapest_first_then_oldest_at_equal_price_at_the_listing_price() {
    let mut e = Engine::new(100);
    list(&mut e, 1, "Dune", 900, 1);
    list(&mut e, 2, "Dune", 800, 1);
    list(&mut e, 3, "Dune", 800, 1);
    let out = buy(&mut e, 0, 10, BuyTarget::Title(t("Dune")), 1000, 3, None);
    assert_eq!(
        trades(&out),
        vec![
            (800, 1, RequestId(2)),
            (800, 1, RequestId(3)),
            (900, 1, RequestId(1))
        ]
    );
    assert_eq!(
        out.last(),
        Some(&Event::Filled {
            client: BUYER,
            request: RequestId(10),
            qty: 3
        })
    );
}

#[test]
fn buyer_never_pays_above_its_limit_and_the_rest_rests() {
    let mut e = Engine::new(100);
    list(&mut e, 1, "Dune", 500, 1);
    list(&mut e, 2, "Dune", 1500, 1);
    let out = buy(&mut e, 0, 10, BuyTarget::Title(t("Dune")), 1000, 2, None);
    assert_eq!(trades(&out), vec![(500, 1, RequestId(1))]);
    assert_eq!(
        out.last(),
        Some(&Event::Rested {
            client: BUYER,
            request: RequestId(10),
            filled: 1,
            remaining: 1
        })
    );
    // A later listing within the limit fills the resting buy at the listing's price.
    let out = list(&mut e, 3, "Dune", 700, 2);
    assert_eq!(trades(&out), vec![(700, 1, RequestId(3))]);
    assert!(out.contains(&Event::Filled {
        client: BUYER,
        request: RequestId(10),
        qty: 2
    }));
    assert_eq!(e.stats().books_on_shelf, 2); // the 15.00 copy and one 7.00 copy
}

#[test]
fn any_buys_the_cheapest_copy_of_any_title() {
    let mut e = Engine::new(100);
    list(&mut e, 1, "Dune", 900, 1);
    list(&mut e, 2, "Emma", 300, 1);
    let out = buy(&mut e, 0, 10, BuyTarget::Any, 1000, 1, None);
    match &out[0] {
        Event::Traded(tr) => assert_eq!((tr.title.as_str(), tr.price.cents()), ("Emma", 300)),
        other => panic!("expected a trade, got {other:?}"),
    }
}

#[test]
fn a_listing_that_does_not_fit_is_rejected_whole_and_changes_nothing() {
    let mut e = Engine::new(3);
    list(&mut e, 1, "Dune", 900, 2);
    let before = e.stats();
    let out = list(&mut e, 2, "Emma", 900, 2);
    assert_eq!(
        out,
        vec![Event::Rejected {
            client: SELLER,
            request: RequestId(2),
            reason: RejectReason::StoreFull { free: 1 }
        }]
    );
    assert_eq!(e.stats(), before);
    let out = list(&mut e, 3, "Emma", 900, 4);
    assert!(matches!(
        out[0],
        Event::Rejected {
            reason: RejectReason::LargerThanStore { capacity: 3 },
            ..
        }
    ));
}

#[test]
fn a_listing_that_resting_buys_absorb_is_accepted_in_a_full_store() {
    let mut e = Engine::new(1);
    list(&mut e, 1, "Dune", 900, 1);
    buy(&mut e, 0, 10, BuyTarget::Title(t("Emma")), 1000, 2, None);
    let out = list(&mut e, 2, "Emma", 800, 2);
    assert!(matches!(
        out.last(),
        Some(Event::Listed {
            qty: 2,
            sold_at_once: 2,
            ..
        })
    ));
}

#[test]
fn resting_buys_expire_at_their_deadline_and_past_deadlines_do_not_rest() {
    let mut e = Engine::new(10);
    let out = buy(&mut e, 0, 10, BuyTarget::Any, 1000, 1, Some(50));
    assert!(matches!(out[0], Event::Rested { .. }));
    let mut out = vec![];
    e.apply(49, &Command::Expire, &mut out);
    assert!(out.is_empty());
    e.apply(50, &Command::Expire, &mut out);
    assert_eq!(
        out,
        vec![Event::Expired {
            client: BUYER,
            request: RequestId(10),
            filled: 0,
            unfilled: 1
        }]
    );
    let out = buy(&mut e, 100, 11, BuyTarget::Any, 1000, 1, Some(100));
    assert_eq!(
        out,
        vec![Event::Expired {
            client: BUYER,
            request: RequestId(11),
            filled: 0,
            unfilled: 1
        }]
    );
}

#[test]
fn a_gone_client_loses_its_resting_buys_but_its_listings_stay() {
    let mut e = Engine::new(10);
    list(&mut e, 1, "Dune", 900, 2);
    buy(&mut e, 0, 10, BuyTarget::Title(t("Emma")), 1000, 1, None);
    let mut out = vec![];
    e.apply(0, &Command::ClientGone { client: BUYER }, &mut out);
    assert_eq!(
        out,
        vec![Event::Cancelled {
            client: BUYER,
            request: RequestId(10),
            filled: 0,
            unfilled: 1
        }]
    );
    e.apply(0, &Command::ClientGone { client: SELLER }, &mut out);
    assert_eq!(e.stats().books_on_shelf, 2);
    assert_eq!(e.stats().resting_buys, 0);
}

#[test]
fn cancel_of_an_unknown_order_is_rejected_and_duplicate_request_ids_are_refused() {
    let mut e = Engine::new(10);
    let mut out = vec![];
    e.apply(
        0,
        &Command::Cancel {
            client: BUYER,
            request: RequestId(5),
        },
        &mut out,
    );
    assert!(matches!(
        out[0],
        Event::Rejected {
            reason: RejectReason::UnknownOrder,
            ..
        }
    ));
    buy(&mut e, 0, 7, BuyTarget::Any, 100, 1, None);
    let out = buy(&mut e, 0, 7, BuyTarget::Any, 100, 1, None);
    assert!(matches!(
        out[0],
        Event::Rejected {
            reason: RejectReason::DuplicateRequest,
            ..
        }
    ));
}

#[test]
fn values_out_of_range_name_their_field() {
    assert_eq!(
        Title::new("").unwrap_err().to_string(),
        "title: must not be empty"
    );
    assert!(Title::new(&"x".repeat(81))
        .unwrap_err()
        .to_string()
        .starts_with("title:"));
    assert!(Title::new("a\u{7}b").is_err());
    assert!(Title::from_bytes(&[0xff, 0xfe])
        .unwrap_err()
        .to_string()
        .contains("UTF-8"));
    assert!(Price::from_cents(0)
        .unwrap_err()
        .to_string()
        .starts_with("price:"));
    assert!(Price::from_cents(MAX_PRICE_CENTS + 1).is_err());
    assert!(Qty::new(0).unwrap_err().to_string().starts_with("qty:"));
    assert!(Qty::new(u64::from(MAX_QTY) + 1).is_err());
}

#[test]
fn a_state_that_breaks_the_engines_rules_is_refused_naming_the_order_and_field() {
    let mut e = Engine::new(10);
    list(&mut e, 1, "Dune", 500, 2);
    list(&mut e, 2, "Emma", 300, 1);
    let good = e.state();
    assert!(Engine::from_state(&good).is_ok());

    let mut s = good.clone();
    s.listings[1].seq = s.listings[0].seq;
    let err = Engine::from_state(&s).unwrap_err().to_string();
    assert!(err.starts_with("listing #1: seq:"), "{err}");

    let mut s = good.clone();
    s.listings[0].qty = 0;
    let err = Engine::from_state(&s).unwrap_err().to_string();
    assert!(err.starts_with("listing #0: qty: 0 is outside"), "{err}");

    let mut s = good.clone();
    s.stats.books_on_shelf += 1;
    let err = Engine::from_state(&s).unwrap_err().to_string();
    assert!(
        err.contains("books_on_shelf 4 but the listings hold 3"),
        "{err}"
    );

    let mut s = good.clone();
    s.capacity = 2;
    s.stats.capacity = 2;
    let err = Engine::from_state(&s).unwrap_err().to_string();
    assert!(err.contains("over capacity"), "{err}");

    let mut s = good;
    s.next_seq = 1;
    let err = Engine::from_state(&s).unwrap_err().to_string();
    assert!(err.contains("below next_seq"), "{err}");
}

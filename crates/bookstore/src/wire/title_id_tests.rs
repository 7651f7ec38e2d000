//! Titles as ids of a title table, in requests and replies.

use super::*;
use crate::layout::TitleTable;
use crate::titles::{record_of, ClientTitles};
use bookstore_ipc::Appender;

fn title(t: &str) -> Title {
    Title::new(t).unwrap()
}

/// A table holding "Dune" (id 0) and a long title (id 1), read by a client.
fn table() -> Box<TitleTable> {
    let table = TitleTable::new_boxed();
    let mut appender = Appender::new();
    appender.append(&table, &record_of(&title("Dune")));
    appender.append(&table, &record_of(&title("The Left Hand of Darkness")));
    table
}

#[test]
fn a_title_the_table_holds_travels_as_its_id_in_one_cell_and_others_as_text() {
    use bookstore_ipc::ring::CELL_WORDS;
    let table = table();
    let mut titles = ClientTitles::new(&table);
    let list = |t: &str| Request::List {
        request: RequestId(7),
        title: title(t),
        price: Price::from_cents(100).unwrap(),
        qty: Qty::new(2).unwrap(),
    };
    let long = list("The Left Hand of Darkness");
    let w = long.encode_with(&mut titles);
    assert_eq!(w[TITLE_AT], 1, "the id");
    assert_eq!((w[0] >> 8) & 0xff, 0, "no length");
    assert!(w[CELL_WORDS..].iter().all(|&x| x == 0), "one cell");
    assert_eq!(Request::decode_with(&w, &mut titles), Ok((long, Some(1))));
    let other = list("Emma");
    let w = other.encode_with(&mut titles);
    assert_eq!(Request::decode_with(&w, &mut titles), Ok((other, None)));

    let buy = Request::Buy {
        request: RequestId(8),
        target: BuyTarget::Title(title("Dune")),
        max_price: Price::from_cents(100).unwrap(),
        qty: Qty::new(1).unwrap(),
        timeout_ms: Some(5),
    };
    let w = buy.encode_with(&mut titles);
    assert_eq!(Request::decode_with(&w, &mut titles), Ok((buy, Some(0))));
    assert_eq!(
        Request::decode(&w),
        Err(Malformed::TitleId(0)),
        "without the table an id names nothing"
    );

    let sold = Reply::Sold {
        request: RequestId(7),
        trade_id: 3,
        title: title("The Left Hand of Darkness"),
        price: Price::from_cents(100).unwrap(),
        qty: 1,
    };
    let w = sold.encode_with(Some(1));
    assert!(w[CELL_WORDS..].iter().all(|&x| x == 0), "one cell");
    assert_eq!(Reply::decode_with(&w, &mut titles), Ok(sold));
}

#[test]
fn an_id_the_table_does_not_hold_or_a_title_id_with_text_is_malformed() {
    let table = table();
    let mut titles = ClientTitles::new(&table);
    let buy = Request::Buy {
        request: RequestId(8),
        target: BuyTarget::Title(title("Dune")),
        max_price: Price::from_cents(100).unwrap(),
        qty: Qty::new(1).unwrap(),
        timeout_ms: None,
    };
    let good = buy.encode_with(&mut titles);
    let mut w = good;
    w[TITLE_AT] = 2;
    assert_eq!(
        Request::decode_with(&w, &mut titles),
        Err(Malformed::TitleId(2))
    );
    w[TITLE_AT] = u64::MAX;
    assert_eq!(
        Request::decode_with(&w, &mut titles),
        Err(Malformed::TitleId(u64::MAX))
    );
    let mut w = good;
    w[TITLE_AT + 1] = 1;
    assert_eq!(
        Request::decode_with(&w, &mut titles),
        Err(Malformed::TitleLength(0)),
        "a word after the id"
    );
    let mut w = good;
    w[0] |= 4 << 8;
    assert_eq!(
        Request::decode_with(&w, &mut titles),
        Err(Malformed::TitleLength(4)),
        "a length with an id"
    );
    let mut w = good;
    w[0] |= FLAG_ANY << 16;
    assert!(matches!(
        Request::decode_with(&w, &mut titles),
        Err(Malformed::Flags(_))
    ));
    assert!(Malformed::TitleId(9).to_string().starts_with("title id:"));

    let bought = Reply::Bought {
        request: RequestId(8),
        trade_id: 1,
        title: title("Dune"),
        price: Price::from_cents(100).unwrap(),
        qty: 1,
        done: true,
    };
    let mut w = bought.encode_with(Some(0));
    w[TITLE_AT] = 5;
    assert_eq!(
        Reply::decode_with(&w, &mut titles),
        Err(BadReply {
            field: "title id (no valid title in the table under it)",
            value: 5
        })
    );
}

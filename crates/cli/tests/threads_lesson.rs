//! `bookstore threads`: every variant balances, and all four (the processes row included) end
//! with the same shelf for the same orders of one seller and one buyer.

mod common;

use common::*;
use proptest::prelude::*;

fn threads_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["threads", "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("threads --json prints JSON")
}

#[test]
fn every_variant_balances_and_sells_every_book_and_the_table_explains_them() {
    let v = threads_json(&["--orders", "300", "--capacity", "5"]);
    let variants = v["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "mutex");
    assert_eq!(names[1], "market-thread");
    assert!(names[2].starts_with("sharded"));
    assert_eq!(names[3], "processes");
    for r in variants {
        for field in ["orders_per_sec", "p50_ns", "p99_ns"] {
            assert!(r[field].as_f64().unwrap() > 0.0, "{field} of {}", r["name"]);
        }
        // CPU time comes in clock ticks (10 ms): a tiny run may measure none.
        assert!(
            r["cpu_s"].as_f64().unwrap() >= 0.0,
            "cpu_s of {}",
            r["name"]
        );
        assert_eq!(r["balanced"], true, "{}", r["name"]);
        assert_eq!(r["all_sold"], true, "{}", r["name"]);
    }
    let out = run(&["threads", "--orders", "200", "--capacity", "5"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for words in [
        "What each row shares",
        "Why the numbers differ",
        "cores",
        "futex wakes",
        "lock waits",
    ] {
        assert!(
            text.contains(words),
            "the table explains itself ({words:?}): {text}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn all_four_end_with_the_same_shelf_for_one_seller_and_one_buyer(
        titles in prop::collection::vec(0usize..8, 1..25),
        keep in prop::collection::vec(any::<bool>(), 25),
    ) {
        let sold: Vec<String> = titles
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(t, _)| t.to_string())
            .collect();
        let seller = titles.iter().map(usize::to_string).collect::<Vec<_>>().join(" ");
        let buyer = sold.join(" ");
        let capacity = (4 * titles.len()).to_string();
        let v = threads_json(&[
            "--seller-orders", &seller, "--buyer-orders", &buyer, "--capacity", &capacity,
        ]);
        let variants = v["variants"].as_array().unwrap();
        for r in variants {
            prop_assert_eq!(&r["balanced"], &serde_json::Value::Bool(true));
            prop_assert_eq!(&r["shelf"], &variants[0]["shelf"], "{} vs mutex", &r["name"]);
        }
        let on_shelf: u64 = variants[0]["shelf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[2].as_u64().unwrap())
            .sum();
        prop_assert_eq!(on_shelf as usize, titles.len() - sold.len());
    }
}

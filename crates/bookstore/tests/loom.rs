//! Model checks of the lock-free protocols. Run with:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p bookstore --test loom --release
//! ```
#![cfg(loom)]

use bookstore::doorbell::Doorbell;
use bookstore::ring::{Consumer, Message, Producer, Ring, RingError, MESSAGE_WORDS};
use loom::sync::Arc;
use loom::thread;

fn message(n: u64) -> Message {
    let mut m = [0; MESSAGE_WORDS];
    m[0] = n;
    m[MESSAGE_WORDS - 1] = n * 7;
    m
}

fn check(m: Message, n: u64) {
    assert_eq!(m[0], n, "messages arrive in order");
    assert_eq!(
        m[MESSAGE_WORDS - 1],
        n * 7,
        "a message is seen whole, never half-written"
    );
}

#[test]
fn ring_delivers_every_message_whole_and_in_order_across_wraparound() {
    loom::model(|| {
        let ring = Arc::new(Ring::<2>::new_boxed());
        let producer_ring = ring.clone();
        let producer = thread::spawn(move || {
            let mut p = Producer::new(&producer_ring);
            for n in 1..=3 {
                loop {
                    match p.try_push(&message(n)) {
                        Ok(()) => break,
                        Err(RingError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let mut c = Consumer::new(&ring);
        for n in 1..=3 {
            loop {
                match c.try_pop().unwrap() {
                    Some(m) => break check(m, n),
                    None => thread::yield_now(),
                }
            }
        }
        producer.join().unwrap();
    });
}

/// Two messages written and made visible by one publish: the consumer sees neither or both,
/// each whole.
#[test]
fn a_published_batch_is_seen_whole() {
    loom::model(|| {
        let ring = Arc::new(Ring::<2>::new_boxed());
        let producer_ring = ring.clone();
        let producer = thread::spawn(move || {
            let mut p = Producer::new(&producer_ring);
            p.try_write(&message(1)).unwrap();
            p.try_write(&message(2)).unwrap();
            assert_eq!(
                p.try_write(&message(3)),
                Err(RingError::Full),
                "written cells count as used"
            );
            assert!(p.publish());
        });
        let mut c = Consumer::new(&ring);
        let first = loop {
            match c.try_pop().unwrap() {
                Some(m) => break m,
                None => thread::yield_now(),
            }
        };
        check(first, 1);
        check(
            c.try_pop()
                .unwrap()
                .expect("the second message of the batch is there too"),
            2,
        );
        producer.join().unwrap();
    });
}

struct Lane {
    ring: Box<Ring<2>>,
}

/// The market's situation: two clients each publish a request and ring one doorbell; the
/// market parks whenever it sees nothing. A lost wake-up would leave it parked forever, which
/// loom reports as a deadlock (its futex emulation has no timeout).
#[test]
fn a_parked_sleeper_is_always_woken_by_ringers_on_other_rings() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let bell = Arc::new(Doorbell::default());
        let lanes: Arc<[Lane; 2]> = Arc::new([
            Lane {
                ring: Ring::new_boxed(),
            },
            Lane {
                ring: Ring::new_boxed(),
            },
        ]);
        let ringers: Vec<_> = (0..2)
            .map(|i| {
                let (bell, lanes) = (bell.clone(), lanes.clone());
                thread::spawn(move || {
                    Producer::new(&lanes[i].ring)
                        .try_push(&message(i as u64 + 1))
                        .unwrap();
                    bell.ring();
                })
            })
            .collect();
        let mut consumers: Vec<_> = lanes.iter().map(|l| Consumer::new(&l.ring)).collect();
        let mut received = 0;
        while received < 2 {
            let mut got = false;
            for c in &mut consumers {
                if let Some(m) = c.try_pop().unwrap() {
                    assert!(m[0] == 1 || m[0] == 2);
                    received += 1;
                    got = true;
                }
            }
            if !got {
                bell.park(|| lanes.iter().any(|l| l.ring.has_messages()), None);
            }
        }
        for r in ringers {
            r.join().unwrap();
        }
    });
}

/// A client waiting for its reply: one ringer (the market) publishing two events in two
/// rounds, the sleeper parking between them.
#[test]
fn a_sleeper_parking_between_two_rounds_misses_neither() {
    loom::model(|| {
        let bell = Arc::new(Doorbell::default());
        let ring = Arc::new(Ring::<2>::new_boxed());
        let (b, r) = (bell.clone(), ring.clone());
        let ringer = thread::spawn(move || {
            let mut p = Producer::new(&r);
            for n in 1..=2 {
                p.try_push(&message(n)).unwrap();
                b.ring();
            }
        });
        let mut c = Consumer::new(&ring);
        for n in 1..=2 {
            loop {
                if let Some(m) = c.try_pop().unwrap() {
                    check(m, n);
                    break;
                }
                bell.park(|| ring.has_messages(), None);
            }
        }
        ringer.join().unwrap();
    });
}

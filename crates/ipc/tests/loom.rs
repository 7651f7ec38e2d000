//! Model checks of the lock-free protocols. Run with:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p bookstore --test loom --release
//! ```
#![cfg(loom)]

use bookstore_ipc::append_only::{AppendOnly, Appender};
use bookstore_ipc::doorbell::Doorbell;
use bookstore_ipc::record::RECORD_WORDS;
use bookstore_ipc::ring::{
    Consumer, Message, Producer, Ring, RingError, CELL_WORDS, MESSAGE_WORDS,
};
use loom::sync::Arc;
use loom::thread;

/// Message `n`: two cells (first and last words set) when `n` is odd, one cell when even.
fn message(n: u64) -> Message {
    let mut m = [0; MESSAGE_WORDS];
    m[0] = n;
    m[last_word(n)] = n * 7;
    m
}

fn last_word(n: u64) -> usize {
    if n % 2 == 1 {
        MESSAGE_WORDS - 1
    } else {
        CELL_WORDS - 1
    }
}

fn check(m: Message, n: u64) {
    assert_eq!(m[0], n, "messages arrive in order");
    assert_eq!(
        m[last_word(n)],
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

/// Two messages (of two cells and one) written and made visible by one publish: the consumer
/// sees neither or both, each whole.
#[test]
fn a_published_batch_is_seen_whole() {
    loom::model(|| {
        let ring = Arc::new(Ring::<4>::new_boxed());
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
                    bell.notify();
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

/// The market's alarm: a ringer that publishes nothing and wakes regardless, against a sleeper
/// that parks until it sees the ring (a flag). A lost wake-up would leave the sleeper parked
/// for ever (a deadlock to loom, whose futex emulation has no timeout).
#[test]
fn a_sleeper_is_always_woken_by_a_ring_regardless() {
    use loom::sync::atomic::{AtomicBool, Ordering::Relaxed};
    loom::model(|| {
        let bell = Arc::new(Doorbell::default());
        let rang = Arc::new(AtomicBool::new(false));
        let (b, r) = (bell.clone(), rang.clone());
        let alarm = thread::spawn(move || {
            r.store(true, Relaxed);
            b.wake_regardless();
        });
        while !rang.load(Relaxed) {
            bell.park(|| rang.load(Relaxed), None);
        }
        alarm.join().unwrap();
    });
}

/// A client parked for its reply while the market's guardian thread ends (what the kernel does
/// when it dies is what `release_guard` does) and the market's loop rings once: the client,
/// parking without a timeout while the guardian lives, must see both the reply and the death.
/// A lost wake-up would leave it parked for ever (a deadlock to loom).
#[test]
fn a_guarded_sleeper_sees_its_reply_and_its_guardians_death() {
    use bookstore_ipc::doorbell::Guard;
    use std::time::Duration;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let bell = Arc::new(Doorbell::default());
        bell.guard(7);
        let ring = Arc::new(Ring::<2>::new_boxed());
        let (b, r) = (bell.clone(), ring.clone());
        let ringer = thread::spawn(move || {
            Producer::new(&r).try_push(&message(2)).unwrap();
            b.notify();
        });
        let b = bell.clone();
        let guardian = thread::spawn(move || assert!(b.release_guard(7)));
        let mut c = Consumer::new(&ring);
        let (mut reply, mut died) = (false, false);
        while !(reply && died) {
            if let Some(m) = c.try_pop().unwrap() {
                check(m, 2);
                reply = true;
                continue;
            }
            if died {
                // A guarded park after the death returns at once (the client then waits on the
                // market's process instead): let the ringer run.
                thread::yield_now();
            }
            let seen = bell.park_guarded(|| ring.has_messages(), None, Duration::from_millis(100));
            died |= seen == Guard::Died;
        }
        ringer.join().unwrap();
        guardian.join().unwrap();
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
            // One-cell messages: both fit in the two cells whether or not the first was read.
            for n in [2, 4] {
                p.try_push(&message(n)).unwrap();
                b.notify();
            }
        });
        let mut c = Consumer::new(&ring);
        for n in [2, 4] {
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

/// The slot hand-over: the market resets a departed client's rings and frees the slot while a
/// new client tries to claim it. The claimant must see the reset rings (its first request
/// lands where the market will read it), and the market must see the claimant's start time.
#[test]
fn a_freed_slot_is_claimed_with_reset_rings_and_the_claimants_identity() {
    use bookstore_ipc::slot::{SlotControl, SlotState};
    loom::model(|| {
        let control = Arc::new(SlotControl::new());
        let ring = Arc::new(Ring::<2>::new_boxed());
        // The previous client: one request served (head = tail = 1), then it left.
        {
            let mut p = Producer::new(&ring);
            p.try_push(&message(99)).unwrap();
            Consumer::new(&ring).try_pop().unwrap();
            control.try_claim(5, 50, 1, 5 << 64 | 5);
            control.leave(5);
        }
        let (c_control, c_ring) = (control.clone(), ring.clone());
        let client = thread::spawn(move || {
            while !c_control.try_claim(7, 42, 3, 7 << 64 | 7) {
                thread::yield_now();
            }
            Producer::new(&c_ring).try_push(&message(1)).unwrap();
        });
        // The market releases the LEAVING slot, then waits for the new claimant.
        assert_eq!(control.observe().0, SlotState::Leaving);
        ring.reset();
        control.release();
        loop {
            let (state, pid) = control.observe();
            if state == SlotState::Active {
                assert_eq!(pid, 7);
                assert_eq!(control.claimant_start_time(), 42, "identity before ACTIVE");
                assert_eq!(control.claimant_label(), 3, "label before ACTIVE");
                assert_eq!(
                    control.claimant_client_id(),
                    7 << 64 | 7,
                    "id before ACTIVE"
                );
                break;
            }
            thread::yield_now();
        }
        let mut consumer = Consumer::new(&ring);
        loop {
            match consumer.try_pop().unwrap() {
                Some(m) => break check(m, 1),
                None => thread::yield_now(),
            }
        }
        client.join().unwrap();
    });
}

/// A client pushes a last request and leaves at once: a market that sees LEAVING must find the
/// request in the ring (regression: requests sent just before detaching were dropped).
#[test]
fn a_request_pushed_before_leaving_is_seen_by_the_market_that_sees_leaving() {
    use bookstore_ipc::slot::{SlotControl, SlotState};
    loom::model(|| {
        let control = Arc::new(SlotControl::new());
        let ring = Arc::new(Ring::<2>::new_boxed());
        assert!(control.try_claim(7, 42, 3, 1));
        let (c_control, c_ring) = (control.clone(), ring.clone());
        let client = thread::spawn(move || {
            Producer::new(&c_ring).try_push(&message(1)).unwrap();
            c_control.leave(7);
        });
        let mut consumer = Consumer::new(&ring);
        let mut served = Vec::new();
        loop {
            let (state, _) = control.observe();
            // The market drains before it looks again, as `scan_slots` does for LEAVING.
            while let Some(m) = consumer.try_pop().unwrap() {
                served.push(m);
            }
            if state == SlotState::Leaving {
                break;
            }
            thread::yield_now();
        }
        assert_eq!(served.len(), 1, "the last request is served");
        check(served[0], 1);
        client.join().unwrap();
    });
}

/// The liveness handshake: a client that sees Ready sees the market's pid and start time (to
/// open its pidfd); a client that sees Closing also sees the final view written before it.
#[test]
fn a_client_that_sees_ready_or_closing_sees_the_identity_and_final_view_before_it() {
    use bookstore_ipc::slot::{MarketIdentity, ServerState};
    use loom::sync::atomic::{AtomicU32, AtomicU64};
    use std::sync::atomic::Ordering::Relaxed;
    const READY: ServerState = ServerState::Ready;
    const CLOSING: ServerState = ServerState::Closing;
    loom::model(|| {
        let words = Arc::new((
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU64::new(0),
            AtomicU64::new(0),
        ));
        let m = words.clone();
        let market = thread::spawn(move || {
            let identity = MarketIdentity {
                state: &m.0,
                pid: &m.1,
                start_time: &m.2,
            };
            identity.publish(7, 42, READY);
            // The final view, then Closing.
            m.3.store(1234, Relaxed);
            identity.set_state(CLOSING);
        });
        let identity = MarketIdentity {
            state: &words.0,
            pid: &words.1,
            start_time: &words.2,
        };
        let seen = identity.read();
        let (state, pid, start_time) = (seen.state(), seen.pid, seen.start_time);
        if state == Some(READY) || state == Some(CLOSING) {
            assert_eq!((pid, start_time), (7, 42));
        }
        if state == Some(CLOSING) {
            assert_eq!(words.3.load(Relaxed), 1234, "the final view is visible");
        }
        market.join().unwrap();
    });
}

/// The published view's sequence lock: a reader that gets a snapshot gets one write's data
/// whole, never half of one write and half of the next (the view's totals must balance).
#[test]
fn a_seqlock_reader_sees_each_write_whole_or_retries() {
    use bookstore_ipc::seqlock::SeqLock;
    use loom::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering::Relaxed;
    loom::model(|| {
        let shared = Arc::new((SeqLock::new(), AtomicU64::new(0), AtomicU64::new(0)));
        let w = shared.clone();
        let writer = thread::spawn(move || {
            for n in 1..=2 {
                w.0.write(|| {
                    w.1.store(n, Relaxed);
                    w.2.store(n, Relaxed);
                });
            }
        });
        let (lock, a, b) = &*shared;
        if let Ok((x, y)) = lock.read(3, || (a.load(Relaxed), b.load(Relaxed))) {
            assert_eq!(x, y, "a snapshot is one write's data, whole");
        }
        writer.join().unwrap();
        let (x, y) = lock.read(1, || (a.load(Relaxed), b.load(Relaxed))).unwrap();
        assert_eq!((x, y), (2, 2), "after the writer, the last write is seen");
    });
}

/// The bench's floor: every ping is answered, and the pinger sees each pong (no round trip is
/// lost or doubled).
#[test]
fn a_ping_pong_completes_every_round_trip() {
    use bookstore_ipc::pingpong::{respond, Pinger};
    use loom::sync::atomic::AtomicU64;
    loom::model(|| {
        let word = Arc::new(AtomicU64::new(0));
        let w = word.clone();
        let responder = thread::spawn(move || respond(&w, 2));
        let mut pinger = Pinger::new(&word);
        pinger.round_trip();
        pinger.round_trip();
        responder.join().unwrap();
        assert_eq!(word.load(std::sync::atomic::Ordering::Relaxed), 4);
    });
}

/// The bench's park floor: the futex ping-pong never loses a wake-up (a lost one deadlocks the
/// model) and completes every round trip.
#[test]
fn a_futex_ping_pong_loses_no_wake_up() {
    use bookstore_ipc::pingpong::{respond_futex, FutexPinger};
    use loom::sync::atomic::AtomicU32;
    loom::model(|| {
        let word = Arc::new(AtomicU32::new(0));
        let w = word.clone();
        let responder = thread::spawn(move || respond_futex(&w, 2));
        let mut pinger = FutexPinger::new(&word);
        pinger.round_trip();
        pinger.round_trip();
        responder.join().unwrap();
        assert_eq!(word.load(std::sync::atomic::Ordering::Relaxed), 4);
    });
}

/// The worker's loop over a mailbox: what it served, in order, each checked against `data`
/// (what the asker wrote before asking: request n is asked after `data` holds n * 10).
fn serve_until_stopped(
    mailbox: &bookstore_ipc::Mailbox,
    data: &loom::sync::atomic::AtomicU64,
) -> Vec<u64> {
    use bookstore_ipc::mailbox::Next;
    let mut served = Vec::new();
    loop {
        match mailbox.next() {
            Next::Serve(n) => {
                // Relaxed: what orders it is the mailbox's release/acquire on `asked`.
                let seen = data.load(std::sync::atomic::Ordering::Relaxed);
                assert!(
                    seen >= n * 10,
                    "request {n} served before its data ({seen})"
                );
                served.push(n);
                mailbox.done(n);
            }
            Next::Idle => thread::yield_now(),
            Next::Stop => return served,
        }
    }
}

#[test]
fn a_mailbox_request_is_served_with_what_was_written_before_it_and_a_stop_waits_for_it() {
    loom::model(|| {
        let mailbox = Arc::new(bookstore_ipc::Mailbox::new());
        let data = Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let (theirs, their_data) = (mailbox.clone(), data.clone());
        let worker = thread::spawn(move || serve_until_stopped(&theirs, &their_data));
        data.store(10, std::sync::atomic::Ordering::Relaxed);
        mailbox.ask(1);
        mailbox.stop();
        assert_eq!(worker.join().unwrap(), [1], "served once, before stopping");
    });
}

#[test]
fn a_mailbox_asker_that_asks_when_the_worker_is_idle_loses_no_request() {
    loom::model(|| {
        let mailbox = Arc::new(bookstore_ipc::Mailbox::new());
        let data = Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let (theirs, their_data) = (mailbox.clone(), data.clone());
        let worker = thread::spawn(move || serve_until_stopped(&theirs, &their_data));
        for n in 1..=2 {
            while !mailbox.is_idle() {
                thread::yield_now();
            }
            data.store(n * 10, std::sync::atomic::Ordering::Relaxed);
            mailbox.ask(n);
        }
        mailbox.stop();
        assert_eq!(
            worker.join().unwrap(),
            [1, 2],
            "each request served, in order"
        );
    });
}

#[test]
fn an_appended_record_is_read_whole_by_whoever_sees_it_published() {
    loom::model(|| {
        let table = Arc::new(AppendOnly::<2>::new_boxed());
        let writer_table = table.clone();
        let writer = thread::spawn(move || {
            let mut appender = Appender::new();
            for n in 1..=2u64 {
                let mut words = [0; RECORD_WORDS];
                words[0] = n;
                words[RECORD_WORDS - 1] = n * 7;
                assert_eq!(appender.append(&writer_table, &words), Some(n as u32 - 1));
            }
        });
        let mut seen = 0;
        while seen < 2 {
            let published = table.published();
            for index in seen..published {
                let words = table.get(index, published).expect("published");
                let n = u64::from(index) + 1;
                assert_eq!(words[0], n, "records in order");
                assert_eq!(words[RECORD_WORDS - 1], n * 7, "a record is seen whole");
            }
            seen = published;
            thread::yield_now();
        }
        writer.join().unwrap();
    });
}

//! A journal in segments: rolled by the writer, read back across them, refused when one is
//! missing, followed by a second reader, and cut down to what the oldest snapshot needs.

use std::path::{Path, PathBuf};

use bookstore_journal::segments::{self, ChainError};
use bookstore_journal::{
    snapshot, CapacityChoice, Durability, FollowerStart, Journal, JournalOptions, OpenJournalError,
    Start, MIN_SEGMENT_BYTES,
};
use engine::{BuyTarget, ClientId, Command, Engine, Price, Qty, Receipts, RequestId, Title};

const CAPACITY: u32 = 1000;

fn options() -> JournalOptions {
    JournalOptions {
        durability: Durability::Batch,
        capacity: CapacityChoice::Exactly(CAPACITY),
        start: Start::Continue,
        segment_bytes: MIN_SEGMENT_BYTES,
    }
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("segments-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Command `i` of a steady trade: a listing, then a buy that takes it.
fn command(i: u64) -> Command {
    let title = Title::new(&format!("Title {}", i % 7)).unwrap();
    if i % 2 == 0 {
        Command::List {
            client: ClientId(1),
            request: RequestId(i),
            title,
            price: Price::from_cents(100 + i % 50).unwrap(),
            qty: Qty::new(1).unwrap(),
        }
    } else {
        Command::Buy {
            client: ClientId(2),
            request: RequestId(i),
            target: BuyTarget::Title(title),
            max_price: Price::from_cents(200).unwrap(),
            qty: Qty::new(1).unwrap(),
            deadline: None,
        }
    }
}

/// Journals commands `from..to` (applying them to `engine` too), in batches of 50, making
/// room (and so rolling) between batches as the market does when it idles.
fn journal_commands(journal: &mut Journal, engine: &mut Engine, from: u64, to: u64) {
    let mut events = Vec::new();
    for i in from..to {
        journal.stage(i, &command(i));
        engine.apply(i, &command(i), &mut events);
        if i % 50 == 49 {
            journal.commit().unwrap();
            journal.prepare_ahead();
        }
    }
    journal.commit().unwrap();
}

/// A scratch directory (named for `what`) and, in it, a journal of 6000 commands in several
/// segments, closed.
fn closed_journal_of_several_segments(what: &str) -> (PathBuf, PathBuf) {
    let dir = scratch_dir(what);
    let path = dir.join("j");
    let (mut journal, _) = Journal::open(&path, &options()).unwrap();
    journal_commands(&mut journal, &mut Engine::new(CAPACITY), 0, 6000);
    (dir, path)
}

/// `engine` after the `Restart` an open journals (it cancels the resting buys).
/// A new journal at `path`, and a follower of it from its start.
fn journal_and_follower(path: &Path) -> (Journal, bookstore_journal::Follower) {
    let (journal, _) = Journal::open(path, &options()).unwrap();
    let start = FollowerStart {
        engine: Engine::new(CAPACITY),
        receipts: Receipts::new(),
        recent_trades: Vec::new(),
        last_now: 0,
    };
    let follower = journal.follower(start).unwrap().unwrap();
    (journal, follower)
}

fn restarted(mut engine: Engine) -> Engine {
    engine.apply(u64::MAX, &Command::Restart, &mut Vec::new());
    engine
}

fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_journal_rolls_into_segments_whose_chain_replays_whole_after_a_reopen() {
    let dir = scratch_dir("roll");
    let path = dir.join("j");
    let (mut journal, _) = Journal::open(&path, &options()).unwrap();
    let mut engine = Engine::new(CAPACITY);
    journal_commands(&mut journal, &mut engine, 0, 6000);
    let sealed = segments::list_sealed(&path).unwrap();
    assert!(sealed.len() >= 3, "{} sealed segments", sealed.len());
    assert_eq!(sealed[0].0, 0, "the first segment starts at command 0");
    assert!(sealed.last().unwrap().0 < journal.live_segment_first());
    // After rolls, a staged record's end is still past what is durable, and reached by it
    // once committed: a reply waiting for it is not shown early.
    journal.stage(6000, &command(6000));
    assert!(journal.stage_mark() > journal.durable());
    journal.commit().unwrap();
    assert_eq!(journal.durable(), journal.stage_mark());
    drop(journal);

    let (_, recovery) = Journal::open(&path, &options()).unwrap();
    assert_eq!(recovery.replayed, 6001);
    assert_eq!(recovery.segments_read, sealed.len() + 1);
    engine.apply(6000, &command(6000), &mut Vec::new());
    assert_eq!(recovery.engine.stats(), restarted(engine).stats());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_segment_missing_in_the_middle_is_refused_by_name_and_nothing_is_changed() {
    let (dir, path) = closed_journal_of_several_segments("missing");
    let sealed = segments::list_sealed(&path).unwrap();
    let (gone_first, gone) = sealed[1].clone();
    std::fs::remove_file(&gone).unwrap();
    let before = all_files(&dir);

    let refused = Journal::open(&path, &options()).err().expect("refused");
    match &refused {
        OpenJournalError::Chain(ChainError::Missing { path, from, to, .. }) => {
            assert_eq!(path, &gone);
            assert_eq!(*from, gone_first);
            assert_eq!(*to, sealed[2].0);
        }
        other => panic!("refused for another reason: {other}"),
    }
    let message = refused.to_string();
    assert!(message.contains(&gone.display().to_string()), "{message}");
    assert!(message.contains("no usable snapshot"), "{message}");
    assert_eq!(all_files(&dir), before, "nothing was changed");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn work_beside_the_replay_gets_the_capacity_and_comes_back_whether_the_open_succeeds_or_not() {
    let (dir, path) = closed_journal_of_several_segments("beside");
    let opener = std::thread::current().id();
    let beside = |capacity| (capacity, std::thread::current().id());

    // Opened: run on a thread of its own, with the journal's capacity.
    let (opened, made) = Journal::open_beside(&path, &options(), beside);
    let (journal, recovery) = opened.unwrap();
    assert_eq!(recovery.replayed, 6000);
    let (capacity, ran_on) = made.expect("run beside the replay");
    assert_eq!(capacity, CAPACITY);
    assert_ne!(ran_on, opener, "on a thread of its own");
    drop(journal);

    // Refused before the replay (another capacity asked for): never run.
    let other = JournalOptions {
        capacity: CapacityChoice::Exactly(CAPACITY + 1),
        ..options()
    };
    let (opened, made) = Journal::open_beside(&path, &other, beside);
    assert!(matches!(
        opened.err(),
        Some(OpenJournalError::CapacityMismatch { .. })
    ));
    assert!(made.is_none(), "no capacity to give it: not run");

    // Refused by the replay (a segment missing): run, and handed back for the caller to undo.
    let sealed = segments::list_sealed(&path).unwrap();
    std::fs::remove_file(&sealed[1].1).unwrap();
    let (opened, made) = Journal::open_beside(&path, &options(), beside);
    assert!(matches!(
        opened.err(),
        Some(OpenJournalError::Chain(ChainError::Missing { .. }))
    ));
    assert_eq!(made.map(|(capacity, _)| capacity), Some(CAPACITY));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_follower_reads_across_rolls_and_its_snapshot_replaces_the_segments_it_covers() {
    let dir = scratch_dir("follow");
    let path = dir.join("j");
    let (mut journal, mut follower) = journal_and_follower(&path);
    let mut engine = Engine::new(CAPACITY);
    journal_commands(&mut journal, &mut engine, 0, 5000);
    follower.catch_up(5000).unwrap();
    let snapshot = follower.snapshot();
    assert_eq!(snapshot.commands, 5000);
    assert_eq!(
        snapshot.engine,
        engine.state(),
        "the follower's store is the writer's"
    );
    assert_eq!(snapshot.last_now, 4999);
    let written = snapshot::write(&path, 5000, &snapshot::encode(&snapshot)).unwrap();

    // More after the snapshot; then the covered segments go.
    journal_commands(&mut journal, &mut engine, 5000, 5100);
    let sealed_before = segments::list_sealed(&path).unwrap();
    let deleted = segments::delete_covered(&path, 5000).unwrap();
    assert!(!deleted.is_empty());
    for (first, file) in &sealed_before {
        let kept = segments::list_sealed(&path).unwrap();
        let next = kept
            .iter()
            .map(|k| k.0)
            .chain([journal.live_segment_first()])
            .find(|&f| f > *first);
        if deleted.contains(file) {
            assert!(
                next.is_some_and(|n| n <= 5000),
                "{} was needed",
                file.display()
            );
        }
    }
    drop(journal);

    let (_, recovery) = Journal::open(&path, &options()).unwrap();
    assert_eq!(
        recovery.from_snapshot.as_ref().map(|s| &s.path),
        Some(&written)
    );
    assert_eq!(recovery.replayed, 100);
    assert_eq!(recovery.engine.stats(), restarted(engine).stats());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_roll_interrupted_after_the_swap_is_finished_on_open() {
    let dir = scratch_dir("interrupted");
    let path = dir.join("j");
    let (mut journal, _) = Journal::open(&path, &options()).unwrap();
    journal_commands(&mut journal, &mut Engine::new(CAPACITY), 0, 3000);
    drop(journal);
    // The state after the swap, before the rename: the last sealed segment still under
    // `PATH.next`.
    let (first, newest) = segments::list_sealed(&path).unwrap().pop().unwrap();
    let next = dir.join("j.next");
    std::fs::rename(&newest, &next).unwrap();

    let (journal, recovery) = Journal::open(&path, &options()).unwrap();
    assert_eq!(recovery.replayed, 3000);
    assert!(
        recovery
            .notes
            .iter()
            .any(|n| n.contains("finished sealing")),
        "{:?}",
        recovery.notes
    );
    assert!(!next.exists());
    assert_eq!(
        segments::list_sealed(&path).unwrap().last().unwrap().0,
        first
    );
    drop(journal);

    // A new segment that was never swapped in (header only) is removed.
    let live_first = segments::live_header(&path).unwrap().first;
    let header = bookstore_journal::format::FileHeader::new(CAPACITY, live_first + 10);
    std::fs::write(&next, header.encode()).unwrap();
    let (_, recovery) = Journal::open(&path, &options()).unwrap();
    assert!(!next.exists());
    assert!(recovery.notes.iter().any(|n| n.contains("removed")));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_stream_that_ends_before_the_live_segment_is_refused_and_nothing_changes() {
    let dir = scratch_dir("unreplicated");
    let path = dir.join("j");
    let (mut journal, _) = Journal::open(&path, &options()).unwrap();
    let mut engine = Engine::new(CAPACITY);
    journal_commands(&mut journal, &mut engine, 0, 3000);
    let live_first = journal.live_segment_first();
    assert!(live_first > 0, "rolled at least once");
    drop(journal);
    let before = all_files(&dir);
    // A replicated stream that ends before the live segment starts: the commands between are
    // in a sealed segment, which following does not cut.
    let follow = JournalOptions {
        start: Start::Follow {
            stream_end: live_first - 1,
        },
        ..options()
    };
    match Journal::open(&path, &follow) {
        Err(OpenJournalError::Unreplicated {
            stream_end,
            live_first: first,
            ..
        }) => assert_eq!((stream_end, first), (live_first - 1, live_first)),
        other => panic!("not refused: {:?}", other.err()),
    }
    assert_eq!(all_files(&dir), before, "nothing changed");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The newest snapshot is loaded while the live segment is still being read, taking any
/// command number as available; a journal that lost the records a snapshot had (a machine
/// crash under `--durability none`) must still be opened from the snapshot before it.
#[test]
fn a_snapshot_past_the_journals_end_is_passed_over_for_the_one_before_it() {
    let dir = scratch_dir("past-the-end");
    let path = dir.join("j");
    let (mut journal, mut follower) = journal_and_follower(&path);
    let mut engine = Engine::new(CAPACITY);
    let mut at_150 = None;
    for (from, to) in [(0, 100), (100, 150), (150, 200)] {
        journal_commands(&mut journal, &mut engine, from, to);
        if to == 150 {
            at_150 = Some(engine.clone());
        } else {
            follower.catch_up(to).unwrap();
            let snapshot = follower.snapshot();
            snapshot::write(&path, to, &snapshot::encode(&snapshot)).unwrap();
        }
    }
    drop(journal);
    assert!(
        segments::list_sealed(&path).unwrap().is_empty(),
        "one segment"
    );
    // The records after command 150 are lost.
    let bytes = std::fs::read(&path).unwrap();
    let cut = bookstore_journal::format::scan(&bytes).unwrap().entries[150].offset;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let (_, recovery) = Journal::open(&path, &options()).unwrap();
    assert_eq!(
        recovery.from_snapshot.as_ref().map(|s| s.commands),
        Some(100)
    );
    assert_eq!(recovery.replayed, 50);
    assert_eq!(recovery.engine.stats(), restarted(at_150.unwrap()).stats());
    assert!(
        recovery
            .skipped_snapshots
            .iter()
            .any(|(_, why)| why.contains("it is at command 200")),
        "{:?}",
        recovery.skipped_snapshots
    );
    std::fs::remove_dir_all(dir).unwrap();
}

//! The title table: titles the market was asked about, each under a small id (its index in the
//! table), so requests and replies carry four bytes instead of up to 80 (layout version 7).
//!
//! The table ([`TitleTable`], an append-only table of the IPC crate) is written by the market
//! alone: it appends a title the first time a request names it as text, while the table has
//! room, and pins it in its engine, so the id means that title (and the engine's own id for it
//! is at hand) for as long as the object lives. A client reads the table: it sends a title the
//! table holds as its id, and resolves the ids in replies, each record validated as a title
//! before it is used, and kept (a published record never changes).
//!
//! A client trusts a valid record as it trusts its rings: a process that may write the object
//! could rewrite a record into another title (clients would then send and show that title),
//! as it could write a forged reply. Validation keeps what is read a title; the object's mode
//! decides who may write.
//!
//! A record's words: `0` the title's length in bytes, `1..11` its bytes packed little-endian,
//! zero after its end; the rest zero.
//!
//! Why a client can always resolve the id in a reply: the market appends a title (its count
//! stored with release) before it writes any reply naming it, and the reply's stamp is stored
//! with release after that; the client acquires the stamp, then the count, so it sees the
//! record (happens-before is transitive). An id a client sends it read from the table, and the
//! market resolves it from its own copy.

use std::collections::HashMap;

/// Title → id maps hash with foldhash: seeded at random per process, and several times faster
/// than SipHash on short strings (a client looks one up for every order it sends).
type IdsByTitle = HashMap<Title, u32, foldhash::fast::RandomState>;

use engine::{PinnedTitle, Title};

use crate::layout::{title_words, RecordWords, TitleTable, RECORD_WORDS, TITLE_TABLE_ENTRIES};
use crate::wire::TitleIds;
use bookstore_ipc::Appender;

/// The words of `title`'s record.
pub fn record_of(title: &Title) -> RecordWords {
    let mut words = [0; RECORD_WORDS];
    words[0] = title.as_str().len() as u64;
    title_words::pack(title, &mut words[1..]);
    words
}

/// The title in a record, validated as a title is anywhere (see
/// [`title_words::unpack_title`]), and nothing in the words after it. `None` for anything else.
pub fn title_of_record(words: &RecordWords) -> Option<Title> {
    let after_title = &words[1 + title_words::WORDS..];
    if after_title.iter().any(|&w| w != 0) {
        return None;
    }
    title_words::unpack_title(words[0], &words[1..]).ok()
}

/// The market's side: the table's writer, and its own copy of every record (it never reads
/// the table back).
pub(crate) struct MarketTitles {
    appender: Appender,
    /// Id → the title and its pin in the engine.
    by_id: Vec<(Title, PinnedTitle)>,
    /// Title → id: consulted for a title that came as text (a client that knows the id sends
    /// it instead).
    by_title: IdsByTitle,
    /// The engine's pin index → id (`u32::MAX`: none), for the title of a trade.
    by_pin: Vec<u32>,
}

impl MarketTitles {
    pub(crate) fn new() -> Self {
        Self {
            appender: Appender::new(),
            by_id: Vec::with_capacity(TITLE_TABLE_ENTRIES),
            by_title: IdsByTitle::with_capacity_and_hasher(TITLE_TABLE_ENTRIES, Default::default()),
            by_pin: Vec::new(),
        }
    }

    /// The title with id `id` and its pin.
    fn get(&self, id: u32) -> Option<&(Title, PinnedTitle)> {
        self.by_id.get(id as usize)
    }

    /// The engine's pin of a request's `title`: from the table if the title came as its id
    /// (`title_id`); else the title is added to the table while it has room (see
    /// [`id_or_append`](Self::id_or_append)), so the client can send its id next time.
    pub(crate) fn pin_of(
        &mut self,
        title: Option<&Title>,
        title_id: Option<u32>,
        pin: impl FnOnce(&Title) -> PinnedTitle,
        table: &TitleTable,
    ) -> Option<PinnedTitle> {
        match title_id {
            Some(id) => self.get(id).map(|(_, pin)| *pin),
            None => self.id_or_append(title?, pin, table).map(|(_, pin)| pin),
        }
    }

    /// The id of a title that came as text: its id if the table has it; else, while the table
    /// has room, the title is appended to `table`, given the next id and pinned (`pin`: the
    /// engine's [`Engine::pin_title`]).
    fn id_or_append(
        &mut self,
        title: &Title,
        pin: impl FnOnce(&Title) -> PinnedTitle,
        table: &TitleTable,
    ) -> Option<(u32, PinnedTitle)> {
        if let Some(&id) = self.by_title.get(title.as_str()) {
            return Some((id, self.by_id[id as usize].1));
        }
        // Full for good: no record to pack for every text request from here on.
        if self.appender.len() as usize >= TITLE_TABLE_ENTRIES {
            return None;
        }
        let id = self.appender.append(table, &record_of(title))?;
        let pin = pin(title);
        self.by_id.push((title.clone(), pin));
        self.by_title.insert(title.clone(), id);
        if self.by_pin.len() <= pin.index() {
            self.by_pin.resize(pin.index() + 1, u32::MAX);
        }
        self.by_pin[pin.index()] = id;
        Some((id, pin))
    }

    /// The id of a trade's title, from its pin (`Trade::pinned`).
    pub(crate) fn id_of_pin(&self, pin: Option<PinnedTitle>) -> Option<u32> {
        let id = *self.by_pin.get(pin?.index())?;
        (id != u32::MAX).then_some(id)
    }
}

/// The market's side resolves ids from its own copy; it encodes replies with the trade's id
/// (see [`MarketTitles::id_of_pin`]), so `id_of` is only the table's lookup.
impl TitleIds for MarketTitles {
    fn id_of(&mut self, title: &Title) -> Option<u32> {
        self.by_title.get(title.as_str()).copied()
    }

    fn title_of(&mut self, id: u32) -> Option<Title> {
        self.get(id).map(|(title, _)| title.clone())
    }
}

/// A client's side: what it has read of one market's table. Dropped with the attachment (a
/// market that restarts makes a new object, and a new table).
pub struct ClientTitles<'s> {
    table: &'s TitleTable,
    /// Records read so far, validated (`None`: a record that is not a title, which no id
    /// resolves to).
    by_id: Vec<Option<Title>>,
    by_title: IdsByTitle,
}

impl<'s> ClientTitles<'s> {
    pub fn new(table: &'s TitleTable) -> Self {
        Self {
            table,
            by_id: Vec::new(),
            by_title: IdsByTitle::default(),
        }
    }

    /// Reads the records published since the last look. One acquire load when there are none.
    fn catch_up(&mut self) {
        let published = self.table.published();
        for index in self.by_id.len() as u32..published {
            let title = self
                .table
                .get(index, published)
                .and_then(|words| title_of_record(&words));
            if let Some(title) = &title {
                // The first record of a title wins: an honest market appends each once.
                self.by_title.entry(title.clone()).or_insert(index);
            }
            self.by_id.push(title);
        }
    }
}

impl TitleIds for ClientTitles<'_> {
    fn id_of(&mut self, title: &Title) -> Option<u32> {
        if let Some(&id) = self.by_title.get(title.as_str()) {
            return Some(id);
        }
        self.catch_up();
        self.by_title.get(title.as_str()).copied()
    }

    fn title_of(&mut self, id: u32) -> Option<Title> {
        if id as usize >= self.by_id.len() {
            self.catch_up();
        }
        self.by_id.get(id as usize).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Engine;

    fn title(t: &str) -> Title {
        Title::new(t).unwrap()
    }

    #[test]
    fn a_record_holds_its_title_and_any_other_word_makes_it_no_title() {
        for t in ["A", "Dune", &"x".repeat(80), "Cien años de soledad"] {
            assert_eq!(title_of_record(&record_of(&title(t))), Some(title(t)));
        }
        let good = record_of(&title("Dune"));
        let mut w = good;
        w[0] = 0;
        assert_eq!(title_of_record(&w), None, "length 0");
        w[0] = 81;
        assert_eq!(title_of_record(&w), None, "length over 80");
        let mut w = good;
        w[1] |= 1 << 40;
        assert_eq!(title_of_record(&w), None, "a byte past the end");
        let mut w = good;
        w[RECORD_WORDS - 1] = 1;
        assert_eq!(title_of_record(&w), None, "a word past the title's");
        let mut w = good;
        w[1] = u64::from_le_bytes(*b"Du\x01e\0\0\0\0");
        assert_eq!(title_of_record(&w), None, "a control character");
        let mut w = good;
        w[1] = u64::from_le_bytes(*b"Du\xffe\0\0\0\0");
        assert_eq!(title_of_record(&w), None, "not UTF-8");
    }

    #[test]
    fn the_market_appends_each_title_once_and_a_client_resolves_what_it_appended() {
        let table = TitleTable::new_boxed();
        let mut engine = Engine::new(10);
        let mut market = MarketTitles::new();
        let (dune, pin) = market
            .id_or_append(&title("Dune"), |t| engine.pin_title(t), &table)
            .unwrap();
        assert_eq!(
            market.id_or_append(&title("Dune"), |t| engine.pin_title(t), &table),
            Some((dune, pin))
        );
        let (emma, _) = market
            .id_or_append(&title("Emma"), |t| engine.pin_title(t), &table)
            .unwrap();
        assert_eq!((dune, emma), (0, 1));
        assert_eq!(market.id_of_pin(Some(pin)), Some(dune));
        assert_eq!(market.id_of_pin(None), None);

        let mut client = ClientTitles::new(&table);
        assert_eq!(client.id_of(&title("Emma")), Some(emma));
        assert_eq!(client.title_of(dune), Some(title("Dune")));
        assert_eq!(client.title_of(2), None);
        assert_eq!(client.id_of(&title("Ulysses")), None);
        let (ulysses, _) = market
            .id_or_append(&title("Ulysses"), |t| engine.pin_title(t), &table)
            .unwrap();
        assert_eq!(client.id_of(&title("Ulysses")), Some(ulysses), "caught up");
    }

    #[test]
    fn a_full_table_takes_no_more_titles_and_they_stay_text() {
        let table = TitleTable::new_boxed();
        let mut engine = Engine::new(10);
        let mut market = MarketTitles::new();
        for i in 0..TITLE_TABLE_ENTRIES {
            let t = title(&format!("t{i}"));
            assert!(market
                .id_or_append(&t, |t| engine.pin_title(t), &table)
                .is_some());
        }
        assert_eq!(
            market.id_or_append(&title("one more"), |t| engine.pin_title(t), &table),
            None
        );
        assert_eq!(market.id_of(&title("one more")), None);
    }
}

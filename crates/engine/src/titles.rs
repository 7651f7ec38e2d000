//! Interned titles: each title on the shelf or wanted by a resting buy has a small dense id,
//! so the books index their per-title sides by position instead of hashing and comparing
//! strings, and an order carries four bytes instead of a shared string.
//!
//! An id is held while orders refer to it ([`Titles::retain`], [`Titles::release`]). Titles no
//! order refers to any more stay interned, so a title that is listed and sold over and over is
//! looked up, not re-added, each time; they are swept out (their ids reused) once they outnumber
//! the titles in use and a few thousand, so the table stays bounded by the orders in the store
//! and each sweep is paid for by the interning that made it necessary.
//!
//! A pinned title ([`Titles::pin`]) is never swept: its id means that title for as long as the
//! table lives, so a caller may keep the id and hand it back with a command instead of the
//! title being looked up again (the market does, for the titles of its shared title table).

use std::collections::HashMap;

use crate::types::{PinnedTitle, Title};

/// A title's place in the table.
pub(crate) type TitleId = u32;

/// Unused titles kept before a sweep is considered.
const SWEEP_AFTER: u32 = 4096;

#[derive(Debug, Clone)]
struct Entry {
    /// `None` once swept: the id is free.
    title: Option<Title>,
    /// Orders (listings and resting buys) that refer to this title.
    orders: u32,
    /// Never swept (see [`Titles::pin`]).
    pinned: bool,
}

impl Entry {
    /// What a sweep would free, and what `Titles::unused` counts: no order refers to it, and
    /// it is not pinned.
    fn is_unused(&self) -> bool {
        self.orders == 0 && !self.pinned
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Titles {
    /// Title → id, with foldhash: seeded at random per process (so no one can choose titles
    /// that collide) and several times faster than SipHash on short strings. Only looked up,
    /// never iterated, so the seed cannot change what the engine does.
    ids: HashMap<Title, TitleId, foldhash::fast::RandomState>,
    entries: Vec<Entry>,
    free: Vec<TitleId>,
    /// Interned titles with no order, not pinned: what a sweep would free.
    unused: u32,
}

impl Titles {
    /// The id of `title`, if it is interned.
    pub(crate) fn get(&self, title: &str) -> Option<TitleId> {
        self.ids.get(title).copied()
    }

    /// The id of `title`, interning it if need be. No order holds it yet.
    pub(crate) fn intern(&mut self, title: &Title) -> TitleId {
        if let Some(&id) = self.ids.get(title.as_str()) {
            return id;
        }
        if self.unused >= SWEEP_AFTER && self.unused as usize > self.ids.len() / 2 {
            self.sweep();
        }
        let entry = Entry {
            title: Some(title.clone()),
            orders: 0,
            pinned: false,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                self.entries.push(entry);
                TitleId::try_from(self.entries.len() - 1).expect("fewer than 2^32 titles")
            }
        };
        self.ids.insert(title.clone(), id);
        self.unused += 1;
        id
    }

    /// Keeps `id` interned for as long as the table lives: a sweep leaves it, so it is never
    /// reused for another title.
    pub(crate) fn pin(&mut self, id: TitleId) {
        let entry = &mut self.entries[id as usize];
        if entry.is_unused() {
            self.unused -= 1;
        }
        entry.pinned = true;
    }

    /// Whether `id` is pinned.
    pub(crate) fn is_pinned(&self, id: TitleId) -> bool {
        self.entries[id as usize].pinned
    }

    /// The caller's `pin`, if it is pinned to `title`: what a pin is checked against before it
    /// is trusted (a pin of another table, or of another title, is `None`). A length and a
    /// short compare, where a lookup hashes the title.
    pub(crate) fn pinned_to(&self, pin: Option<PinnedTitle>, title: &str) -> Option<TitleId> {
        let id = pin?.0;
        let entry = self.entries.get(id as usize)?;
        (entry.pinned && entry.title.as_ref().is_some_and(|t| t.as_str() == title)).then_some(id)
    }

    /// The title of an interned id.
    pub(crate) fn title(&self, id: TitleId) -> &Title {
        self.entries[id as usize]
            .title
            .as_ref()
            .expect("an interned id")
    }

    /// One more order refers to `id`.
    pub(crate) fn retain(&mut self, id: TitleId) {
        let entry = &mut self.entries[id as usize];
        if entry.is_unused() {
            self.unused -= 1;
        }
        entry.orders += 1;
    }

    /// One order fewer refers to `id`.
    pub(crate) fn release(&mut self, id: TitleId) {
        let entry = &mut self.entries[id as usize];
        entry.orders -= 1;
        if entry.is_unused() {
            self.unused += 1;
        }
    }

    /// How many ids there have ever been at once (the books size their per-title sides by it).
    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Frees the id of every title no order refers to.
    fn sweep(&mut self) {
        for (id, entry) in self.entries.iter_mut().enumerate() {
            if entry.is_unused() {
                if let Some(title) = entry.title.take() {
                    self.ids.remove(title.as_str());
                    self.free.push(id as TitleId);
                }
            }
        }
        self.unused = 0;
    }

    /// Checks the table against `counted`, the orders that refer to each id: every interned
    /// title found under its own id with that many orders, no freed id referred to, and the
    /// unused count right. The error names the title (or the id, or "the unused count").
    pub(crate) fn check(&self, counted: &[u32]) -> Result<(), String> {
        let mut unused = 0;
        for (id, entry) in self.entries.iter().enumerate() {
            let expected = counted.get(id).copied().unwrap_or(0);
            match &entry.title {
                Some(title) => {
                    if self.ids.get(title.as_str()) != Some(&(id as TitleId))
                        || entry.orders != expected
                    {
                        return Err(title.to_string());
                    }
                    unused += u32::from(entry.is_unused());
                }
                None if expected != 0 || entry.orders != 0 || entry.pinned => {
                    return Err(format!("freed id {id}"));
                }
                None => {}
            }
        }
        let interned = self.entries.iter().filter(|e| e.title.is_some()).count();
        if unused != self.unused || interned != self.ids.len() {
            return Err("the unused count".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn title(t: &str) -> Title {
        Title::new(t).unwrap()
    }

    #[test]
    fn a_title_keeps_its_id_while_interned_and_unused_ids_are_reused_after_a_sweep() {
        let mut titles = Titles::default();
        let dune = titles.intern(&title("Dune"));
        titles.retain(dune);
        assert_eq!(titles.intern(&title("Dune")), dune);
        assert_eq!(titles.get("Dune"), Some(dune));
        for i in 0..SWEEP_AFTER + 10 {
            titles.intern(&title(&format!("t{i}")));
        }
        // The sweep ran: the held title survived, the unused ones were freed and reused.
        assert_eq!(titles.get("Dune"), Some(dune));
        assert!(titles.capacity() < (SWEEP_AFTER as usize) * 2);
        let mut counted = vec![0; titles.capacity()];
        counted[dune as usize] = 1;
        assert_eq!(titles.check(&counted), Ok(()));
        titles.release(dune);
        counted[dune as usize] = 0;
        assert_eq!(titles.check(&counted), Ok(()));
        assert_eq!(titles.check(&[]), Ok(()));
    }

    #[test]
    fn a_pinned_title_outlives_every_sweep_though_no_order_refers_to_it() {
        let mut titles = Titles::default();
        let dune = titles.intern(&title("Dune"));
        titles.pin(dune);
        titles.pin(dune);
        assert!(titles.is_pinned(dune));
        for i in 0..3 * SWEEP_AFTER {
            titles.intern(&title(&format!("t{i}")));
        }
        assert_eq!(titles.get("Dune"), Some(dune));
        assert_eq!(titles.title(dune).as_str(), "Dune");
        titles.retain(dune);
        titles.release(dune);
        let mut counted = vec![0; titles.capacity()];
        assert_eq!(titles.check(&counted), Ok(()));
        counted[dune as usize] = 1;
        assert_eq!(titles.check(&counted), Err("Dune".into()));
    }
}

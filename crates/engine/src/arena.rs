//! A typed arena with a free list: the engine's orders live here, addressed by a `u32` index,
//! so a steady stream of orders allocates nothing once the arena has grown to the peak number
//! of orders at once.

/// Where an order lives in its arena.
pub(crate) type Idx = u32;

/// `Idx` for "none" in the links between orders.
pub(crate) const NIL: Idx = Idx::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Arena<T> {
    slots: Vec<Option<T>>,
    free: Vec<Idx>,
    live: usize,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

// The accessors are marked `#[inline]`: they are a few instructions on every order's path, and
// without the mark the inliner left `insert` out of line after an unrelated change elsewhere in
// the crate (5 % off the engine row).
impl<T> Arena<T> {
    /// Stores `value` in a free slot (the most recently freed first, as it is warm in cache).
    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> Idx {
        self.live += 1;
        match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = Some(value);
                idx
            }
            None => {
                let idx = Idx::try_from(self.slots.len()).expect("fewer than 2^32 orders");
                assert!(idx != NIL, "fewer than 2^32 - 1 orders");
                self.slots.push(Some(value));
                idx
            }
        }
    }

    #[inline]
    pub(crate) fn remove(&mut self, idx: Idx) -> T {
        let value = self.slots[idx as usize].take().expect("a live slot");
        self.free.push(idx);
        self.live -= 1;
        value
    }

    #[inline]
    pub(crate) fn get(&self, idx: Idx) -> &T {
        self.slots[idx as usize].as_ref().expect("a live slot")
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, idx: Idx) -> &mut T {
        self.slots[idx as usize].as_mut().expect("a live slot")
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Every live value with its index, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Idx, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|v| (i as Idx, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_slot_is_reused_before_the_arena_grows() {
        let mut arena = Arena::default();
        let a = arena.insert("a");
        let b = arena.insert("b");
        assert_eq!(arena.remove(a), "a");
        assert_eq!(arena.insert("c"), a);
        assert_eq!(arena.len(), 2);
        assert_eq!(arena.iter().collect::<Vec<_>>(), vec![(a, &"c"), (b, &"b")]);
    }
}

//! One command through the ledger and back out: its replies routed to their clients at once,
//! and the bookkeeping no reply waits for (the command's receipts, the view's record of its
//! events) done after, when the pass has shown its replies or the next command comes.
//!
//! In spin mode a pass serves one request, so "after" is after the reply is visible: the
//! receipts' hash lookups and the view's copy of a trade happen while the reply crosses to
//! the client and the client makes its next request, instead of before. Under load nothing
//! changes but the order: a command's bookkeeping is done as the next command starts, its
//! events still in cache.

use engine::{Command, Event};

use super::{Market, MarketEvent};
use crate::stats::WarningKind;
use crate::wire::Reply;

impl Market<'_> {
    /// Applies a command (staging its journal record) and routes its events.
    pub(super) fn apply(&mut self, command: Command) {
        self.apply_pinned(command, None);
    }

    /// [`apply`](Self::apply), with the pin of the command's title if it has one.
    pub(super) fn apply_pinned(&mut self, command: Command, pin: Option<engine::PinnedTitle>) {
        // The last command's bookkeeping first: its events leave the buffer.
        self.settle();
        let mut events = std::mem::take(&mut self.events);
        self.ledger
            .apply(self.clock.now_ms(), command, pin, &mut events);
        // Its replies wait for everything staged so far: this command's record and the ones
        // before it, which decided it.
        let durable_at = self.ledger.staged_end();
        // A trade followed at once by its buy's `Filled` is told to the buyer as one reply: the
        // `Bought` marked done, and no `Filled`.
        for (i, event) in events.iter().enumerate() {
            let completes_buy = events.get(i + 1).is_some_and(|next| completes(event, next));
            let fill_already_told = i > 0 && completes(&events[i - 1], event);
            match event {
                Event::Traded(t) => self.tell(|| MarketEvent::Traded(t.clone())),
                Event::Rejected {
                    client,
                    reason: engine::RejectReason::StoreFull { .. },
                    ..
                } => {
                    let client = *client;
                    self.stats.warn(WarningKind::StoreFull);
                    self.tell(|| MarketEvent::StoreFull { client });
                }
                _ => {}
            }
            if fill_already_told {
                continue;
            }
            let (first, second) = event.recipients();
            // A trade's title goes as its id when the table has it.
            let title_id = match event {
                Event::Traded(t) => self.titles.id_of_pin(t.pinned),
                _ => None,
            };
            for client in std::iter::once(first).chain(second) {
                if let Some(mut reply) = Reply::for_client(event, client) {
                    if let Reply::Bought { done, .. } = &mut reply {
                        *done = completes_buy;
                    }
                    self.sessions.send(client, reply, title_id, durable_at);
                }
            }
        }
        // Kept for `settle`: exactly this command's events.
        self.events = events;
    }

    /// The last command's bookkeeping, if not done yet: the receipts the ledger left to record
    /// and the view's record of its events. Called when the pass has shown its replies, before
    /// the next command, before a receipt is read and before the view is written.
    pub(super) fn settle(&mut self) {
        self.ledger.record_receipts(&self.events);
        for event in &self.events {
            self.view.record(event);
        }
        self.events.clear();
    }
}

/// Whether `next` is the `Filled` of the buy whose trade `event` is: the trade completed it.
fn completes(event: &Event, next: &Event) -> bool {
    match (event, next) {
        (
            Event::Traded(t),
            Event::Filled {
                client, request, ..
            },
        ) => *client == t.buyer && *request == t.buy_request,
        _ => false,
    }
}

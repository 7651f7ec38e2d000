//! What became of each client's recent orders, so that a client whose market died with an
//! order in flight can ask the next market about it and hear "applied, with this result" or
//! nothing (never seen: send it again). That is what makes an order apply exactly once across
//! a restart.
//!
//! Receipts are kept beside the engine, not in it: the engine decides trades, receipts only
//! watch its events. Both are rebuilt by the same journal, so they agree after every replay,
//! and both go into a snapshot. Like the engine they do no I/O and read no clock.
//!
//! What is kept, and for how long:
//! - a receipt for each order that changed the store (a listing listed, a buy that traded,
//!   rested or expired), updated by every later event about it (trades of a resting buy, its
//!   fill, expiry or cancellation). A refused order leaves none: it changed nothing, so
//!   sending it again cannot apply it twice;
//! - the last [`RECEIPTS_PER_CLIENT`] per client, each in the place `request % 64` (a client
//!   numbers its requests in order, so the newest 64 never collide);
//! - until the client leaves (`ClientGone`: it is not coming back), or, for a client that was
//!   attached when the market went down, until the [`ORPHAN_RESTARTS`]th restart after that
//!   one (a market crashing again and again leaves a waiting client time to come back and ask).

use std::collections::HashMap;

use serde::Serialize;

use crate::types::{ClientId, Command, Event, RequestId};

/// Receipts kept per client: the newest this many orders.
pub const RECEIPTS_PER_CLIENT: usize = 64;

/// A client a restart found attached is forgotten at the restart this many after that one,
/// unless it sent an order since (or left).
pub const ORPHAN_RESTARTS: u64 = 8;

/// Whether an order listed or bought.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    List,
    Buy,
}

/// Where an order stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum OrderState {
    /// A listing on the shelf: `sold_at_once` of its copies went to resting buys at once.
    Listed { sold_at_once: u32 },
    /// A buy waiting for more copies.
    Resting,
    /// A buy with every copy bought.
    Filled,
    /// A buy whose deadline passed.
    Expired,
    /// A buy cancelled: by its client, because the client left, or by a restart.
    Cancelled,
}

impl OrderKind {
    /// Its number where it is written down (a snapshot, a reply): 1 list, 2 buy.
    pub fn code(self) -> u8 {
        match self {
            OrderKind::List => 1,
            OrderKind::Buy => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(OrderKind::List),
            2 => Some(OrderKind::Buy),
            _ => None,
        }
    }
}

impl OrderState {
    /// Its number where it is written down (1 listed, 2 resting, 3 filled, 4 expired,
    /// 5 cancelled), and the sold-at-once count a listing carries beside it (0 for a buy).
    pub fn code(self) -> (u8, u32) {
        match self {
            OrderState::Listed { sold_at_once } => (1, sold_at_once),
            OrderState::Resting => (2, 0),
            OrderState::Filled => (3, 0),
            OrderState::Expired => (4, 0),
            OrderState::Cancelled => (5, 0),
        }
    }

    /// The state an order of `kind` has under `code`, if that kind can have it (a buy is never
    /// listed, a listing only listed, and only a listing sells copies at once).
    pub fn from_code(kind: OrderKind, code: u8, sold_at_once: u32) -> Option<Self> {
        let state = match (kind, code) {
            (OrderKind::List, 1) => OrderState::Listed { sold_at_once },
            (OrderKind::Buy, 2) => OrderState::Resting,
            (OrderKind::Buy, 3) => OrderState::Filled,
            (OrderKind::Buy, 4) => OrderState::Expired,
            (OrderKind::Buy, 5) => OrderState::Cancelled,
            _ => return None,
        };
        (kind == OrderKind::List || sold_at_once == 0).then_some(state)
    }

    /// Whether nothing more will happen to the order.
    pub fn is_final(self) -> bool {
        !matches!(self, OrderState::Resting)
    }
}

/// What became of one order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct Receipt {
    pub request: RequestId,
    pub kind: OrderKind,
    /// Copies asked for.
    pub qty: u32,
    /// Copies listed (a listing) or bought so far (a buy).
    pub done: u32,
    /// What the copies bought cost, in cents (0 for a listing).
    pub spent_cents: u64,
    pub state: OrderState,
}

/// What an order says about itself, taken before the engine consumes the command.
#[derive(Clone, Copy, Debug)]
pub struct Intent {
    kind: Option<(ClientId, RequestId, OrderKind, u32)>,
    forget: Option<ClientId>,
    restart: bool,
}

impl Intent {
    /// Whether [`Receipts::record`] may change the receipts beyond what the command's events
    /// show (a `ClientGone` forgets a client, a `Restart` ages them all), and so may say the
    /// command must be journaled though the engine refused or ignored it. For any other
    /// command it returns `false`: a caller that journals by the events alone may record its
    /// receipts later, as long as it does so before the next command and before reading one.
    pub fn may_change_receipts_alone(&self) -> bool {
        self.forget.is_some() || self.restart
    }
}

/// The receipts of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ClientReceipts {
    /// `request % RECEIPTS_PER_CLIENT` → the receipt in that place, if any.
    kept: Vec<Option<Receipt>>,
    /// The restart that found this client attached, if it has sent no order since.
    orphaned_at: Option<u64>,
}

impl ClientReceipts {
    fn new() -> Self {
        Self {
            kept: vec![None; RECEIPTS_PER_CLIENT],
            orphaned_at: None,
        }
    }

    fn place(request: RequestId) -> usize {
        (request.0 % RECEIPTS_PER_CLIENT as u64) as usize
    }

    fn get_mut(&mut self, request: RequestId) -> Option<&mut Receipt> {
        self.kept[Self::place(request)]
            .as_mut()
            .filter(|r| r.request == request)
    }
}

/// The receipts of every client the market may still hear from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipts {
    clients: HashMap<ClientId, ClientReceipts, foldhash::fast::RandomState>,
    /// Restarts journaled so far.
    restarts: u64,
}

impl Receipts {
    pub fn new() -> Self {
        Self::default()
    }

    /// What `record` needs to know of `command` once the engine has it.
    pub fn intent(command: &Command) -> Intent {
        let mut intent = Intent {
            kind: None,
            forget: None,
            restart: false,
        };
        match command {
            Command::List {
                client,
                request,
                qty,
                ..
            } => intent.kind = Some((*client, *request, OrderKind::List, qty.get())),
            Command::Buy {
                client,
                request,
                qty,
                ..
            } => intent.kind = Some((*client, *request, OrderKind::Buy, qty.get())),
            Command::ClientGone { client } => intent.forget = Some(*client),
            Command::Restart => intent.restart = true,
            Command::Cancel { .. } | Command::Expire => {}
        }
        intent
    }

    /// Records what the engine did with one command: `events` are exactly the events it
    /// emitted for it. Returns whether the receipts changed in a way those events do not show
    /// (a client with receipts left; a restart), so the journal must keep the command even if
    /// the engine's state did not change.
    pub fn record(&mut self, intent: Intent, events: &[Event]) -> bool {
        if let Some((client, request, kind, qty)) = intent.kind {
            let refused = events.iter().any(|e| {
                matches!(e, Event::Rejected { client: c, request: r, .. } if *c == client && *r == request)
            });
            // A refused order changed nothing and is not journaled: it must leave no trace here
            // either, or a replay would rebuild other receipts than these.
            if !refused {
                let receipts = self
                    .clients
                    .entry(client)
                    .or_insert_with(ClientReceipts::new);
                // Heard from: it came back after the restart that orphaned it.
                receipts.orphaned_at = None;
                receipts.kept[ClientReceipts::place(request)] = Some(Receipt {
                    request,
                    kind,
                    qty,
                    done: 0,
                    spent_cents: 0,
                    state: OrderState::Resting,
                });
            }
        }
        for event in events {
            self.follow(event);
        }
        let mut receipts_only = false;
        if let Some(client) = intent.forget {
            receipts_only = self.clients.remove(&client).is_some();
        }
        if intent.restart {
            self.restarts += 1;
            let now = self.restarts;
            // Those restarts have found attached ORPHAN_RESTARTS times without hearing from
            // them are not coming back; the rest are marked from the first restart that found
            // them (a client heard from is unmarked).
            self.clients
                .retain(|_, c| c.orphaned_at.is_none_or(|at| now - at < ORPHAN_RESTARTS));
            for c in self.clients.values_mut() {
                c.orphaned_at.get_or_insert(now);
            }
            receipts_only = true;
        }
        receipts_only
    }

    /// Updates the receipt an event is about, if one is kept.
    fn follow(&mut self, event: &Event) {
        let (client, request) = match event {
            Event::Traded(t) => (t.buyer, t.buy_request),
            Event::Listed {
                client, request, ..
            }
            | Event::Rested {
                client, request, ..
            }
            | Event::Filled {
                client, request, ..
            }
            | Event::Expired {
                client, request, ..
            }
            | Event::Cancelled {
                client, request, ..
            } => (*client, *request),
            // A refused order left no receipt, and a refused cancel changed nothing.
            Event::Rejected { .. } => return,
        };
        let Some(receipt) = self
            .clients
            .get_mut(&client)
            .and_then(|c| c.get_mut(request))
        else {
            return;
        };
        match (event, receipt.kind) {
            (Event::Listed { sold_at_once, .. }, OrderKind::List) => {
                receipt.done = receipt.qty;
                receipt.state = OrderState::Listed {
                    sold_at_once: *sold_at_once,
                };
            }
            (Event::Traded(t), OrderKind::Buy) => {
                receipt.done += t.qty;
                receipt.spent_cents += t.price.cents() * u64::from(t.qty);
            }
            (Event::Rested { .. }, OrderKind::Buy) => receipt.state = OrderState::Resting,
            (Event::Filled { .. }, OrderKind::Buy) => receipt.state = OrderState::Filled,
            (Event::Expired { .. }, OrderKind::Buy) => receipt.state = OrderState::Expired,
            (Event::Cancelled { .. }, OrderKind::Buy) => receipt.state = OrderState::Cancelled,
            // An event about a listing under a buy's request id or the reverse: the client
            // reused an id; the receipt in that place is the newer order's, left alone.
            _ => {}
        }
    }

    /// The receipt of `client`'s order `request`, if one is kept.
    pub fn get(&self, client: ClientId, request: RequestId) -> Option<Receipt> {
        let c = self.clients.get(&client)?;
        c.kept[ClientReceipts::place(request)].filter(|r| r.request == request)
    }

    /// Whether receipts are kept for `client`.
    pub fn knows(&self, client: ClientId) -> bool {
        self.clients.contains_key(&client)
    }

    /// Whether no client has receipts kept.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Restarts journaled so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Everything kept, as plain data: clients in id order, each one's receipts by request.
    pub fn state(&self) -> ReceiptsState {
        let mut clients: Vec<ClientReceiptsState> = self
            .clients
            .iter()
            .map(|(&client, c)| {
                let mut receipts: Vec<Receipt> = c.kept.iter().flatten().copied().collect();
                receipts.sort_by_key(|r| r.request);
                ClientReceiptsState {
                    client,
                    orphaned_at: c.orphaned_at,
                    receipts,
                }
            })
            .collect();
        clients.sort_by_key(|c| c.client);
        ReceiptsState {
            restarts: self.restarts,
            clients,
        }
    }

    /// Receipts from their plain data, every rule checked: ids, places, and counts within
    /// what an order can reach.
    pub fn from_state(state: &ReceiptsState) -> Result<Self, ReceiptsError> {
        let mut clients = HashMap::default();
        for (i, c) in state.clients.iter().enumerate() {
            let bad = |problem: String| ReceiptsError {
                at: format!("client #{i}"),
                problem,
            };
            if c.client.0 == 0 {
                return Err(bad("client: 0 is not a client id".into()));
            }
            if c.orphaned_at.is_some_and(|r| r == 0 || r > state.restarts) {
                return Err(bad(format!(
                    "orphaned_at: restart {:?} is not one of the {} journaled",
                    c.orphaned_at, state.restarts
                )));
            }
            let mut kept = ClientReceipts::new();
            kept.orphaned_at = c.orphaned_at;
            for &r in &c.receipts {
                check_receipt(&r).map_err(|p| bad(format!("request {}: {p}", r.request.0)))?;
                let place = &mut kept.kept[ClientReceipts::place(r.request)];
                if place.is_some() {
                    return Err(bad(format!(
                        "request {}: shares its place with another receipt",
                        r.request.0
                    )));
                }
                *place = Some(r);
            }
            if clients.insert(c.client, kept).is_some() {
                return Err(bad(format!("client: {} appears twice", c.client)));
            }
        }
        Ok(Self {
            clients,
            restarts: state.restarts,
        })
    }
}

/// One receipt's own rules: what its kind and state allow.
fn check_receipt(r: &Receipt) -> Result<(), String> {
    if r.qty == 0 || r.qty > crate::MAX_QTY {
        return Err(format!("qty: {} is outside 1..={}", r.qty, crate::MAX_QTY));
    }
    if r.done > r.qty {
        return Err(format!("done: {} is more than the {} asked", r.done, r.qty));
    }
    match (r.kind, r.state) {
        (OrderKind::List, OrderState::Listed { sold_at_once }) => {
            if r.done != r.qty || sold_at_once > r.qty || r.spent_cents != 0 {
                return Err(format!(
                    "a listing's done ({}), sold_at_once ({sold_at_once}) or spent_cents ({}) do not fit its qty {}",
                    r.done, r.spent_cents, r.qty
                ));
            }
        }
        (OrderKind::List, state) => return Err(format!("state: a listing cannot be {state:?}")),
        (OrderKind::Buy, OrderState::Listed { .. }) => {
            return Err("state: a buy cannot be listed".into())
        }
        (OrderKind::Buy, OrderState::Filled) if r.done != r.qty => {
            return Err(format!("state: filled with {} of {} bought", r.done, r.qty))
        }
        (OrderKind::Buy, _) => {
            let most = u64::from(r.done) * crate::MAX_PRICE_CENTS;
            if r.spent_cents > most {
                return Err(format!(
                    "spent_cents: {} is more than {} copies can cost",
                    r.spent_cents, r.done
                ));
            }
        }
    }
    Ok(())
}

/// Receipts as plain data (a snapshot's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptsState {
    pub restarts: u64,
    pub clients: Vec<ClientReceiptsState>,
}

/// One client's receipts as plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientReceiptsState {
    pub client: ClientId,
    pub orphaned_at: Option<u64>,
    pub receipts: Vec<Receipt>,
}

/// Receipts' plain data that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receipts: {at}: {problem}")]
pub struct ReceiptsError {
    pub at: String,
    pub problem: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, Price, Qty, Title};

    fn run(engine: &mut Engine, receipts: &mut Receipts, command: Command) {
        let intent = Receipts::intent(&command);
        let mut events = Vec::new();
        engine.apply(0, &command, &mut events);
        receipts.record(intent, &events);
    }

    fn list(client: ClientId, request: u64) -> Command {
        Command::List {
            client,
            request: RequestId(request),
            title: Title::new("Dune").unwrap(),
            price: Price::from_cents(500).unwrap(),
            qty: Qty::new(1).unwrap(),
        }
    }

    #[test]
    fn an_orphaned_client_is_remembered_for_its_restarts_and_longer_once_heard_from() {
        let (mut engine, mut receipts) = (Engine::new(100), Receipts::new());
        let (quiet, back) = (ClientId(1 << 64), ClientId(2 << 64));
        run(&mut engine, &mut receipts, list(quiet, 1));
        run(&mut engine, &mut receipts, list(back, 1));
        // The restart that finds it, and ORPHAN_RESTARTS - 1 more.
        for _ in 0..ORPHAN_RESTARTS {
            run(&mut engine, &mut receipts, Command::Restart);
        }
        assert!(
            receipts.get(quiet, RequestId(1)).is_some(),
            "still waited for"
        );
        // Heard from: its mark goes, so the next restart starts its count again.
        run(&mut engine, &mut receipts, list(back, 2));
        run(&mut engine, &mut receipts, Command::Restart);
        assert!(
            !receipts.knows(quiet),
            "forgotten {ORPHAN_RESTARTS} restarts after the first"
        );
        assert!(receipts.get(back, RequestId(1)).is_some());
        run(
            &mut engine,
            &mut receipts,
            Command::ClientGone { client: back },
        );
        assert!(
            receipts.is_empty(),
            "a client that left is forgotten at once"
        );
    }
}

//! The engine against a deliberately naive reference model: every command, the two must
//! emit exactly the same events, and the engine's invariants must hold after each one.

use std::cmp::Reverse;

use engine::*;
use proptest::prelude::*;

/// The reference: flat vectors, linear scans, sorting on every step. Slow and obviously right.
struct Model {
    capacity: u32,
    seq: u64,
    trade_id: u64,
    asks: Vec<(u64, Title, Price, ClientId, RequestId, u32)>,
    bids: Vec<ModelBid>,
    listed: u64,
    sold: u64,
}

#[derive(Clone)]
struct ModelBid {
    seq: u64,
    client: ClientId,
    request: RequestId,
    target: BuyTarget,
    max: Price,
    filled: u32,
    remaining: u32,
    deadline: Option<Millis>,
}

impl ModelBid {
    fn wants(&self, title: &Title) -> bool {
        matches!(&self.target, BuyTarget::Any) || self.target == BuyTarget::Title(title.clone())
    }
}

impl Model {
    fn shelf(&self) -> u32 {
        self.asks.iter().map(|a| a.5).sum()
    }

    fn trade(
        &mut self,
        out: &mut Vec<Event>,
        title: &Title,
        price: Price,
        qty: u32,
        seller: (ClientId, RequestId),
        buyer: (ClientId, RequestId),
    ) {
        out.push(Event::Traded(Trade {
            trade_id: self.trade_id,
            title: title.clone(),
            price,
            qty,
            seller: seller.0,
            buyer: buyer.0,
            buy_request: buyer.1,
            list_request: seller.1,
            pinned: None,
        }));
        self.trade_id += 1;
        self.sold += u64::from(qty);
    }

    fn apply(&mut self, now: Millis, cmd: Command, out: &mut Vec<Event>) {
        match cmd {
            Command::List {
                client,
                request,
                title,
                price,
                qty,
            } => {
                let qty = qty.get();
                let mut order: Vec<usize> = (0..self.bids.len())
                    .filter(|&i| self.bids[i].wants(&title) && self.bids[i].max >= price)
                    .collect();
                order.sort_by_key(|&i| (Reverse(self.bids[i].max), self.bids[i].seq));
                let matchable = order
                    .iter()
                    .map(|&i| self.bids[i].remaining)
                    .sum::<u32>()
                    .min(qty);
                let to_shelf = qty - matchable;
                if to_shelf > self.capacity {
                    return out.push(Event::Rejected {
                        client,
                        request,
                        reason: RejectReason::LargerThanStore {
                            capacity: self.capacity,
                        },
                    });
                }
                let free = self.capacity - self.shelf();
                if to_shelf > free {
                    return out.push(Event::Rejected {
                        client,
                        request,
                        reason: RejectReason::StoreFull { free },
                    });
                }
                let seq = self.seq;
                self.seq += 1;
                self.listed += u64::from(qty);
                let mut remaining = qty;
                for i in order {
                    if remaining == 0 {
                        break;
                    }
                    let take = remaining.min(self.bids[i].remaining);
                    remaining -= take;
                    self.bids[i].remaining -= take;
                    self.bids[i].filled += take;
                    let b = self.bids[i].clone();
                    self.trade(
                        out,
                        &title,
                        price,
                        take,
                        (client, request),
                        (b.client, b.request),
                    );
                    if b.remaining == 0 {
                        out.push(Event::Filled {
                            client: b.client,
                            request: b.request,
                            qty: b.filled,
                        });
                    }
                }
                self.bids.retain(|b| b.remaining > 0);
                if remaining > 0 {
                    self.asks
                        .push((seq, title.clone(), price, client, request, remaining));
                }
                out.push(Event::Listed {
                    client,
                    request,
                    price,
                    qty,
                    sold_at_once: qty - remaining,
                });
            }
            Command::Buy {
                client,
                request,
                target,
                max_price,
                qty,
                deadline,
            } => {
                if self
                    .bids
                    .iter()
                    .any(|b| b.client == client && b.request == request)
                {
                    return out.push(Event::Rejected {
                        client,
                        request,
                        reason: RejectReason::DuplicateRequest,
                    });
                }
                let qty = qty.get();
                let mut order: Vec<usize> = (0..self.asks.len())
                    .filter(|&i| {
                        self.asks[i].2 <= max_price
                            && (target == BuyTarget::Any
                                || target == BuyTarget::Title(self.asks[i].1.clone()))
                    })
                    .collect();
                order.sort_by_key(|&i| (self.asks[i].2, self.asks[i].0));
                let mut filled = 0;
                for i in order {
                    if filled == qty {
                        break;
                    }
                    let take = (qty - filled).min(self.asks[i].5);
                    self.asks[i].5 -= take;
                    filled += take;
                    let a = self.asks[i].clone();
                    self.trade(out, &a.1, a.2, take, (a.3, a.4), (client, request));
                }
                self.asks.retain(|a| a.5 > 0);
                let remaining = qty - filled;
                if remaining == 0 {
                    out.push(Event::Filled {
                        client,
                        request,
                        qty,
                    });
                } else if deadline.is_some_and(|d| d <= now) {
                    out.push(Event::Expired {
                        client,
                        request,
                        filled,
                        unfilled: remaining,
                    });
                } else {
                    self.bids.push(ModelBid {
                        seq: self.seq,
                        client,
                        request,
                        target,
                        max: max_price,
                        filled,
                        remaining,
                        deadline,
                    });
                    self.seq += 1;
                    out.push(Event::Rested {
                        client,
                        request,
                        filled,
                        remaining,
                    });
                }
            }
            Command::Cancel { client, request } => match self
                .bids
                .iter()
                .position(|b| b.client == client && b.request == request)
            {
                Some(i) => {
                    let b = self.bids.remove(i);
                    out.push(Event::Cancelled {
                        client,
                        request,
                        filled: b.filled,
                        unfilled: b.remaining,
                    });
                }
                None => out.push(Event::Rejected {
                    client,
                    request,
                    reason: RejectReason::UnknownOrder,
                }),
            },
            Command::Expire => {
                let mut due: Vec<ModelBid> = self
                    .bids
                    .iter()
                    .filter(|b| b.deadline.is_some_and(|d| d <= now))
                    .cloned()
                    .collect();
                due.sort_by_key(|b| (b.deadline, b.seq));
                self.bids.retain(|b| b.deadline.is_none_or(|d| d > now));
                for b in due {
                    out.push(Event::Expired {
                        client: b.client,
                        request: b.request,
                        filled: b.filled,
                        unfilled: b.remaining,
                    });
                }
            }
            Command::ClientGone { client } => self.cancel_all_of(client, out),
            Command::Restart => {
                let mut clients: Vec<ClientId> = self.bids.iter().map(|b| b.client).collect();
                clients.sort();
                clients.dedup();
                for client in clients {
                    self.cancel_all_of(client, out);
                }
            }
        }
    }
    /// Cancels every resting buy of `client`, oldest first.
    fn cancel_all_of(&mut self, client: ClientId, out: &mut Vec<Event>) {
        let mut gone: Vec<ModelBid> = self
            .bids
            .iter()
            .filter(|b| b.client == client)
            .cloned()
            .collect();
        gone.sort_by_key(|b| b.seq);
        self.bids.retain(|b| b.client != client);
        for b in gone {
            out.push(Event::Cancelled {
                client,
                request: b.request,
                filled: b.filled,
                unfilled: b.remaining,
            });
        }
    }
}

const TITLES: [&str; 3] = ["Dune", "Emma", "Ulysses"];

fn command() -> impl Strategy<Value = (u64, Command)> {
    let client = (1u128..4).prop_map(ClientId);
    let request = (0u64..6).prop_map(RequestId);
    let title = prop::sample::select(&TITLES[..]).prop_map(|s| Title::new(s).unwrap());
    let price = (1u64..6).prop_map(|c| Price::from_cents(c * 100).unwrap());
    let qty = (1u64..5).prop_map(|n| Qty::new(n).unwrap());
    let dt = 0u64..20;
    prop_oneof![
        4 => (dt.clone(), client.clone(), request.clone(), title.clone(), price.clone(), qty.clone())
            .prop_map(|(dt, client, request, title, price, qty)| (dt, Command::List { client, request, title, price, qty })),
        4 => (dt.clone(), client.clone(), request.clone(), prop::option::of(title), price, qty, prop::option::of(0u64..60))
            .prop_map(|(dt, client, request, title, max_price, qty, ttl)| {
                let target = title.map_or(BuyTarget::Any, BuyTarget::Title);
                // The deadline is relative to the time this command runs; fixed up below.
                (dt, Command::Buy { client, request, target, max_price, qty, deadline: ttl })
            }),
        1 => (dt.clone(), client.clone(), request).prop_map(|(dt, client, request)| (dt, Command::Cancel { client, request })),
        1 => dt.clone().prop_map(|dt| (dt, Command::Expire)),
        1 => (dt.clone(), client).prop_map(|(dt, client)| (dt, Command::ClientGone { client })),
        1 => dt.prop_map(|dt| (dt, Command::Restart)),
    ]
}

/// Moves the clock on by `dt` and makes a buy's deadline (drawn relative) absolute.
fn at(now: &mut u64, dt: u64, mut cmd: Command) -> Command {
    *now += dt;
    if let Command::Buy {
        deadline: Some(d), ..
    } = &mut cmd
    {
        *d += *now;
    }
    cmd
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_reference_model_event_for_event(
        capacity in 1u32..12,
        commands in prop::collection::vec(command(), 1..80),
    ) {
        let mut engine = Engine::new(capacity);
        let mut model = Model { capacity, seq: 1, trade_id: 1, asks: vec![], bids: vec![], listed: 0, sold: 0 };
        let mut now = 0;
        let mut limits = std::collections::HashMap::new();
        for (dt, cmd) in commands {
            let cmd = at(&mut now, dt, cmd);
            let (mut got, mut want) = (vec![], vec![]);
            engine.apply(now, &cmd, &mut got);
            model.apply(now, cmd.clone(), &mut want);
            prop_assert_eq!(&got, &want, "after {:?}", cmd);
            prop_assert_eq!(engine.check_invariants(), Ok(()));
            let s = engine.stats();
            prop_assert_eq!(s.books_listed, model.listed);
            prop_assert_eq!(s.books_sold, model.sold);
            prop_assert_eq!(s.books_listed, s.books_sold + u64::from(s.books_on_shelf));
            if let Command::Buy { client, request, max_price, .. } = &cmd {
                if !matches!(got.first(), Some(Event::Rejected { .. })) {
                    limits.insert((*client, *request), *max_price);
                }
            }
            for e in &got {
                if let Event::Traded(t) = e {
                    let limit = limits[&(t.buyer, t.buy_request)];
                    prop_assert!(t.price <= limit, "trade {:?} above the buyer's limit {:?}", t, limit);
                }
            }
        }
    }

    #[test]
    fn replaying_the_same_commands_gives_the_same_events(
        commands in prop::collection::vec(command(), 1..60),
    ) {
        let run = || {
            let mut engine = Engine::new(8);
            let mut all = vec![];
            for (i, (_, cmd)) in commands.iter().enumerate() {
                engine.apply(i as u64, cmd, &mut all);
            }
            (all, engine.stats(), engine.shelf())
        };
        prop_assert_eq!(run(), run());
    }

    /// The market pins the titles of its title table and passes a pin with each command on
    /// one: the engine must behave exactly as if it had looked the title up. Two of the three
    /// titles are pinned (one only halfway through), a pin is sometimes passed with a command
    /// on another title (it must be ignored), and the trades of pinned titles carry the pin.
    #[test]
    fn commands_with_pinned_titles_give_the_events_of_commands_without(
        commands in prop::collection::vec(command(), 1..80),
        wrong_pin in any::<bool>(),
    ) {
        let (mut plain, mut pinned) = (Engine::new(8), Engine::new(8));
        let title = |t: &str| Title::new(t).unwrap();
        let dune = pinned.pin_title(&title("Dune"));
        let mut emma = None;
        let mut now = 0;
        for (i, (dt, cmd)) in commands.into_iter().enumerate() {
            let cmd = at(&mut now, dt, cmd);
            if i == 40 {
                emma = Some(pinned.pin_title(&title("Emma")));
            }
            let named = match &cmd {
                Command::List { title, .. } | Command::Buy { target: BuyTarget::Title(title), .. } => Some(title.as_str()),
                _ => None,
            };
            let pin = match named {
                Some("Dune") => Some(dune),
                Some("Emma") => emma,
                Some(_) if wrong_pin => Some(dune),
                _ => None,
            };
            let (mut want, mut got) = (vec![], vec![]);
            plain.apply(now, &cmd, &mut want);
            pinned.apply_pinned(now, &cmd, pin, &mut got);
            for event in &mut got {
                if let Event::Traded(t) = event {
                    let expected = match t.title.as_str() {
                        "Dune" => Some(dune),
                        "Emma" => emma,
                        _ => None,
                    };
                    prop_assert_eq!(t.pinned, expected, "the trade's pin");
                    t.pinned = None;
                }
            }
            prop_assert_eq!(&got, &want, "after {:?}", cmd);
            prop_assert_eq!(pinned.check_invariants(), Ok(()));
        }
        prop_assert_eq!(pinned.shelf(), plain.shelf());
        prop_assert_eq!(pinned.stats(), plain.stats());
    }

    /// The journal leaves out commands that changed nothing (no event, or only `Rejected`).
    /// An engine fed only the others must behave the same from then on, event for event.
    #[test]
    fn leaving_out_commands_that_changed_nothing_gives_an_engine_that_behaves_the_same(
        capacity in 1u32..12,
        prefix in prop::collection::vec(command(), 1..60),
        suffix in prop::collection::vec(command(), 1..30),
    ) {
        let (mut full, mut journaled) = (Engine::new(capacity), Engine::new(capacity));
        let mut now = 0;
        let mut events = vec![];
        for (dt, cmd) in prefix {
            let cmd = at(&mut now, dt, cmd);
            events.clear();
            full.apply(now, &cmd, &mut events);
            if events.iter().any(|e| !matches!(e, Event::Rejected { .. })) {
                journaled.apply(now, &cmd, &mut vec![]);
            }
        }
        prop_assert_eq!(full.stats(), journaled.stats());
        prop_assert_eq!(full.shelf(), journaled.shelf());
        prop_assert_eq!(full.next_trade_id(), journaled.next_trade_id());
        prop_assert_eq!(full.clients_with_resting_buys(), journaled.clients_with_resting_buys());
        for (dt, cmd) in suffix {
            let cmd = at(&mut now, dt, cmd);
            let (mut a, mut b) = (vec![], vec![]);
            full.apply(now, &cmd, &mut a);
            journaled.apply(now, &cmd, &mut b);
            prop_assert_eq!(a, b, "after {:?}", cmd);
        }
    }

    /// A snapshot holds the engine's state; an engine rebuilt from it (other arena slots,
    /// other title ids) must behave as the original from then on, event for event, and give
    /// back the same state.
    #[test]
    fn an_engine_rebuilt_from_its_state_behaves_as_the_original(
        capacity in 1u32..12,
        prefix in prop::collection::vec(command(), 0..80),
        suffix in prop::collection::vec(command(), 1..40),
    ) {
        let mut original = Engine::new(capacity);
        let mut now = 0;
        for (dt, cmd) in prefix {
            let cmd = at(&mut now, dt, cmd);
            original.apply(now, &cmd, &mut vec![]);
        }
        let state = original.state();
        let mut rebuilt = Engine::from_state(&state).expect("a real engine's state is valid");
        prop_assert_eq!(rebuilt.state(), state);
        for (dt, cmd) in suffix {
            let cmd = at(&mut now, dt, cmd);
            let (mut a, mut b) = (vec![], vec![]);
            original.apply(now, &cmd, &mut a);
            rebuilt.apply(now, &cmd, &mut b);
            prop_assert_eq!(a, b, "after {:?}", cmd);
        }
        prop_assert_eq!(original.state(), rebuilt.state());
    }

    /// Receipts follow the engine: after every command, a kept receipt of a resting buy names a
    /// buy the engine has resting with as many copies bought, every resting buy has one, a buy's
    /// receipt counts what its trades cost, a client that left has none, receipts rebuilt
    /// from their state are the same, and so are those a replay of the journaled commands
    /// builds.
    #[test]
    fn receipts_agree_with_the_engine_after_every_command(
        capacity in 1u32..12,
        commands in prop::collection::vec(command(), 1..80),
    ) {
        let mut engine = Engine::new(capacity);
        let mut receipts = Receipts::new();
        // What a replay rebuilds: only the commands the journal keeps (see the ledger).
        let (mut journaled, mut journaled_receipts) = (Engine::new(capacity), Receipts::new());
        let mut spent: std::collections::HashMap<(ClientId, RequestId), u64> = Default::default();
        let mut now = 0;
        for (dt, cmd) in commands {
            let cmd = at(&mut now, dt, cmd);
            let intent = Receipts::intent(&cmd);
            let mut events = vec![];
            engine.apply(now, &cmd, &mut events);
            let receipts_only = receipts.record(intent, &events);
            if receipts_only || events.iter().any(|e| !matches!(e, Event::Rejected { .. })) {
                let mut replayed = vec![];
                journaled.apply(now, &cmd, &mut replayed);
                journaled_receipts.record(Receipts::intent(&cmd), &replayed);
            }
            prop_assert_eq!(journaled_receipts.state(), receipts.state(), "replayed, after {:?}", cmd);
            if let Command::Buy { client, request, .. } = &cmd {
                if !matches!(events.first(), Some(Event::Rejected { .. })) {
                    spent.insert((*client, *request), 0);
                }
            }
            for e in &events {
                if let Event::Traded(t) = e {
                    *spent.entry((t.buyer, t.buy_request)).or_default() += t.price.cents() * u64::from(t.qty);
                }
            }
            let state = engine.state();
            for b in &state.buys {
                // A listing under the same request id replaced the buy's receipt (a real client
                // numbers its requests apart; this model reuses ids on purpose).
                let r = receipts.get(b.client, b.request);
                if r.is_some_and(|r| r.kind == OrderKind::List) {
                    continue;
                }
                prop_assert_eq!(r.map(|r| (r.kind, r.state, r.done)), Some((OrderKind::Buy, OrderState::Resting, b.filled)), "resting {:?} after {:?}", b, cmd);
            }
            for ((client, request), cents) in &spent {
                if let Some(r) = receipts.get(*client, *request).filter(|r| r.kind == OrderKind::Buy) {
                    prop_assert_eq!(r.spent_cents, *cents, "{:?} after {:?}", r, cmd);
                    if r.state == OrderState::Resting {
                        prop_assert!(state.buys.iter().any(|b| b.client == *client && b.request == *request));
                    }
                }
            }
            if let Command::ClientGone { client } = cmd {
                prop_assert!(!receipts.knows(client));
            }
            let rebuilt = Receipts::from_state(&receipts.state()).expect("real receipts are valid");
            prop_assert_eq!(rebuilt.state(), receipts.state());
        }
    }
}

//! The lesson's traders as processes: the same [`Exchange`] over a client of the real market,
//! through the shared object (a trader process runs [`super::run_seller`] or
//! [`super::run_buyer`] with it).

use std::time::{Duration, Instant};

use engine::{BuyTarget, Price, Qty, RejectReason, Title};

use super::{Attempt, Exchange};
use crate::client::{Client, ClientError};
use crate::wire::{Reply, Request};

/// How long one order may wait for its reply before the trader gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A trader's exchange through an attached client. The first failure (the market gone, no
/// reply) is kept and every later order fails at once, so the trader's loop ends quickly.
pub struct ClientExchange<'c, 's> {
    client: &'c mut Client<'s>,
    failure: Option<ClientError>,
}

impl<'c, 's> ClientExchange<'c, 's> {
    pub fn new(client: &'c mut Client<'s>) -> Self {
        Self {
            client,
            failure: None,
        }
    }

    /// The error that ended the run, if one did.
    pub fn failure(self) -> Option<ClientError> {
        self.failure
    }

    fn order(&mut self, request: Request) -> Attempt {
        if self.failure.is_some() {
            return Attempt::Done;
        }
        match self.order_or_fail(request) {
            Ok(attempt) => attempt,
            Err(error) => {
                self.failure = Some(error);
                Attempt::Done
            }
        }
    }

    fn order_or_fail(&mut self, request: Request) -> Result<Attempt, ClientError> {
        self.client.send(&request)?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            match self.client.recv(Some(deadline))? {
                Some(
                    Reply::Listed { .. } | Reply::Filled { .. } | Reply::Bought { done: true, .. },
                ) => return Ok(Attempt::Done),
                Some(Reply::Rejected {
                    reason: RejectReason::StoreFull { .. },
                    ..
                }) => return Ok(Attempt::Full),
                Some(Reply::Expired { .. }) => return Ok(Attempt::Empty),
                Some(_) => continue,
                None => return Err(ClientError::NoReply(REPLY_TIMEOUT)),
            }
        }
    }
}

impl Exchange for ClientExchange<'_, '_> {
    fn list(&mut self, title: &Title, price: Price) -> Attempt {
        let request = Request::List {
            request: self.client.next_request_id(),
            title: title.clone(),
            price,
            qty: Qty::new(1).expect("1 copy"),
        };
        self.order(request)
    }

    fn buy(&mut self, target: &BuyTarget, max_price: Price) -> Attempt {
        let request = Request::Buy {
            request: self.client.next_request_id(),
            target: target.clone(),
            max_price,
            qty: Qty::new(1).expect("1 copy"),
            timeout_ms: Some(0),
        };
        self.order(request)
    }
}

//! The per-request context the stages share: the request's facts, what the exchange holds
//! (in-flight count, concurrency slot, budget reservation), and the record that is made
//! if the client leaves before an answer is on its way.

use switchyard_core::RequestFacts;
use switchyard_state::budget::Reservation;
use switchyard_state::Outcome;
use tokio::sync::OwnedSemaphorePermit;

use crate::meter::{Record, Scan};

/// Lives for the whole exchange until an answer takes its record. Dropped earlier (hyper
/// drops the request future when the client leaves mid-upload, queued, or waiting for the
/// upstream's headers), it records the exchange as cancelled, so slow first bytes that make
/// clients give up still reach the windows.
pub(crate) struct Context {
    /// `Some` until [`Context::into_record`] consumes the context.
    record: Option<Box<Record>>,
    /// The request went to the upstream: from then on a client that gives up waited on it,
    /// which counts against the upstream.
    sent: bool,
}

impl Context {
    /// A context around the exchange's first record: minimal facts, the in-flight count.
    pub fn open(record: Record) -> Self {
        Context {
            record: Some(Box::new(record)),
            sent: false,
        }
    }

    fn record(&self) -> &Record {
        match self.record.as_deref() {
            Some(record) => record,
            None => unreachable!("a context is consumed when its record is taken"),
        }
    }

    fn record_mut(&mut self) -> &mut Record {
        match self.record.as_deref_mut() {
            Some(record) => record,
            None => unreachable!("a context is consumed when its record is taken"),
        }
    }

    pub fn facts(&self) -> &RequestFacts {
        &self.record().facts
    }

    pub fn facts_mut(&mut self) -> &mut RequestFacts {
        &mut self.record_mut().facts
    }

    /// Holds the route's concurrency slot until the exchange is recorded.
    pub fn hold_slot(&mut self, slot: Option<OwnedSemaphorePermit>) {
        self.record_mut()._slot = slot;
    }

    /// Holds the request's budget reservation; the record settles it.
    pub fn hold_reservation(&mut self, reservation: Option<Reservation>) {
        self.record_mut().reservation = reservation;
    }

    /// Whether the request holds a concurrency slot (it may have waited for it).
    pub fn has_slot(&self) -> bool {
        self.record()._slot.is_some()
    }

    /// The request is on its way to the upstream.
    pub fn sent(&mut self) {
        self.sent = true;
    }

    /// The record for the answer; nothing is recorded as cancelled any more.
    pub fn into_record(mut self) -> Box<Record> {
        match self.record.take() {
            Some(record) => record,
            None => unreachable!("a context is consumed when its record is taken"),
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        // Until it is sent, a request the client gives up on says nothing about the upstream.
        record.refused = !self.sent;
        cancelled_view(&mut record.facts);
        record.finish(Outcome::Cancelled, None, &Scan::None);
    }
}

/// A cancellation is counted under the request's labels (route, upstream, variant, model)
/// only: what the client asked for beyond them is not recorded for a request never answered.
fn cancelled_view(facts: &mut RequestFacts) {
    facts.user_key = None;
    facts.stream = false;
    facts.prompt_tokens_estimate = 0;
    facts.max_tokens = None;
    facts.unparsed = false;
}

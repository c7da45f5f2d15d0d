//! The in-process reservation ledger: the budget day's used and reserved tokens, checked and
//! changed under one short lock, the same rules the fleet's Redis scripts follow.
//!
//! A reservation is held under an id until it is settled or its time to live passes. Settling
//! replaces the reservation with the tokens actually spent, once: a second settlement of the
//! same id finds nothing held and counts nothing. A reservation swept because it expired is
//! remembered, so a late settlement of it still counts its tokens, once.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

/// One day's counts.
#[derive(Debug, Default)]
struct State {
    /// The budget day these counts belong to (its start, Unix seconds).
    day: u64,
    used: u64,
    reserved: u64,
    /// Reservation id → (tokens, expiry in Unix milliseconds).
    holds: HashMap<Box<str>, (u64, u64)>,
    /// Reservations swept by their expiry and not settled yet.
    expired: HashSet<Box<str>>,
    /// The earliest expiry among `holds`, so most calls skip the sweep.
    next_expiry: u64,
}

impl State {
    fn turn(&mut self, day: u64) {
        if self.day != day {
            *self = State {
                day,
                next_expiry: u64::MAX,
                ..State::default()
            };
        }
    }

    fn sweep(&mut self, now_ms: u64) {
        if now_ms < self.next_expiry {
            return;
        }
        let mut next = u64::MAX;
        let mut gone = Vec::new();
        for (id, &(tokens, expires)) in &self.holds {
            if expires <= now_ms {
                gone.push((id.clone(), tokens));
            } else {
                next = next.min(expires);
            }
        }
        for (id, tokens) in gone {
            self.holds.remove(&id);
            self.reserved = self.reserved.saturating_sub(tokens);
            self.expired.insert(id);
        }
        self.next_expiry = next;
    }
}

/// Used and reserved tokens of the current budget day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub used: u64,
    pub reserved: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<State>,
}

impl Ledger {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `tokens` under `id` if `counted` (used tokens counted elsewhere) + used +
    /// reserved + tokens stays within `limit`; `Err` carries the totals that refused it.
    /// Reserving an id already held changes nothing.
    pub fn reserve(
        &self,
        day: u64,
        id: &str,
        (tokens, limit, counted): (u64, u64, u64),
        (now_ms, ttl_ms): (u64, u64),
    ) -> Result<Totals, Totals> {
        let mut s = self.state();
        s.turn(day);
        s.sweep(now_ms);
        let totals = Totals {
            used: s.used,
            reserved: s.reserved,
        };
        if s.holds.contains_key(id) {
            return Ok(totals);
        }
        let committed = counted.saturating_add(s.used).saturating_add(s.reserved);
        if committed.saturating_add(tokens) > limit {
            return Err(totals);
        }
        let expires = now_ms.saturating_add(ttl_ms);
        s.holds.insert(id.into(), (tokens, expires));
        s.reserved += tokens;
        s.next_expiry = s.next_expiry.min(expires);
        Ok(Totals {
            used: s.used,
            reserved: s.reserved,
        })
    }

    /// Replaces the reservation `id` with `tokens` spent; `false` (and nothing counted) when
    /// it was settled already or belongs to a day that is over.
    pub fn settle(&self, day: u64, id: &str, tokens: u64) -> bool {
        let mut s = self.state();
        if s.day != day {
            return false;
        }
        if let Some((held, _)) = s.holds.remove(id) {
            s.reserved = s.reserved.saturating_sub(held);
        } else if !s.expired.remove(id) {
            return false;
        }
        s.used = s.used.saturating_add(tokens);
        true
    }

    /// Drops the reservation `id` without counting tokens (they are counted elsewhere);
    /// `false` when nothing was held.
    pub fn release(&self, day: u64, id: &str) -> bool {
        let mut s = self.state();
        if s.day != day {
            return false;
        }
        match s.holds.remove(id) {
            Some((held, _)) => {
                s.reserved = s.reserved.saturating_sub(held);
                true
            }
            None => s.expired.remove(id),
        }
    }

    /// Tokens spent without a reservation of this ledger's (counted as used at once).
    pub fn spend(&self, day: u64, tokens: u64) {
        let mut s = self.state();
        s.turn(day);
        s.used = s.used.saturating_add(tokens);
    }

    /// The counts of `day` after sweeping what expired by `now_ms`.
    pub fn totals(&self, day: u64, now_ms: u64) -> Totals {
        let mut s = self.state();
        if s.day != day {
            return Totals::default();
        }
        s.sweep(now_ms);
        Totals {
            used: s.used,
            reserved: s.reserved,
        }
    }
}

#[cfg(test)]
mod tests;

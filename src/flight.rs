//! One fill at a time per isolate, without sharing futures between requests.
//!
//! On workerd, a request resumed by I/O that another request started continues in that other
//! request's I/O context (its own fetches then fail), and if the request doing the work is
//! cancelled its promise never settles, wedging everyone awaiting it. So the request that wins
//! `try_start` does the work in its own context, the others poll the shared cache on their own
//! timers (`Clock::sleep`), and a guard releases the mark if the winner is dropped midway.

use std::cell::Cell;
use std::rc::Rc;

/// How often a request waiting on another request's fill looks again: small next to a round
/// trip to an identity provider.
pub const POLL_MS: u64 = 10;

#[derive(Default)]
struct Marks {
    running: Cell<Option<u64>>,
    started: Cell<u64>,
}

/// The "a fill is running" mark of one cache.
#[derive(Default, Clone)]
pub struct Flight {
    marks: Rc<Marks>,
}

/// Held by the request doing the fill; dropping it (normally or because the request was
/// cancelled) lets the next request start one.
pub struct FlightGuard {
    marks: Rc<Marks>,
    id: u64,
}

impl Flight {
    pub fn is_running(&self) -> bool {
        self.marks.running.get().is_some()
    }

    /// Marks a fill as running and returns its guard, or `None` when one already runs.
    pub fn try_start(&self) -> Option<FlightGuard> {
        if self.is_running() {
            return None;
        }
        let id = self.marks.started.get() + 1;
        self.marks.started.set(id);
        self.marks.running.set(Some(id));
        Some(FlightGuard {
            marks: self.marks.clone(),
            id,
        })
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.marks.running.get() == Some(self.id) {
            self.marks.running.set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_fill_at_a_time_and_a_dropped_one_releases_its_mark() {
        let flight = Flight::default();
        let first = flight.try_start().expect("the first caller fills");
        assert!(flight.is_running());
        assert!(flight.try_start().is_none());
        drop(first);
        assert!(!flight.is_running());
        assert!(flight.try_start().is_some(), "a waiter takes over");
    }
}

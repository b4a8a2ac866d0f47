//! One fill at a time per isolate, without sharing futures between requests.
//!
//! On workerd, a request resumed by I/O that another request started continues in that other
//! request's I/O context (its own fetches then fail), and if the request doing the work is
//! cancelled its promise never settles, wedging everyone awaiting it. So the request that
//! starts a fill does the work in its own context, the others poll the shared cache on their
//! own timers (`Clock::sleep`), and a guard releases the mark when the filler is dropped
//! midway. A filler that is never polled again is never dropped either (a cancelled request's
//! future, a `wait_until` task the runtime gave up on), so a mark older than the caller's
//! `abandon_after_ms` no longer counts as running.
//!
//! What happens after a failed fill is `crate::support::breaker`'s.

use std::cell::Cell;
use std::rc::Rc;

/// How often a request waiting on another request's fill looks again: small next to a round
/// trip to an identity provider.
pub const POLL_MS: u64 = 10;

/// `Retry-After` in whole seconds until `until_ms`: at least 1.
pub fn retry_after_secs(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

#[derive(Clone, Copy)]
struct Mark {
    id: u64,
    started_ms: u64,
}

#[derive(Default)]
struct Marks {
    running: Cell<Option<Mark>>,
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
    /// A fill started less than `abandon_after_ms` before `now` is still running.
    pub fn in_flight(&self, now: u64, abandon_after_ms: u64) -> bool {
        self.marks
            .running
            .get()
            .is_some_and(|m| now < m.started_ms.saturating_add(abandon_after_ms))
    }

    /// Marks a fill as started at `now`, superseding any earlier (abandoned) one.
    pub fn start(&self, now: u64) -> FlightGuard {
        let id = self.marks.started.get() + 1;
        self.marks.started.set(id);
        self.marks.running.set(Some(Mark {
            id,
            started_ms: now,
        }));
        FlightGuard {
            marks: self.marks.clone(),
            id,
        }
    }

    /// `start`, unless a fill is in flight.
    pub fn try_start(&self, now: u64, abandon_after_ms: u64) -> Option<FlightGuard> {
        (!self.in_flight(now, abandon_after_ms)).then(|| self.start(now))
    }
}

impl FlightGuard {
    /// The fill's number, for debugging output.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.marks.running.get().is_some_and(|m| m.id == self.id) {
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
        let first = flight.try_start(0, 1_000).expect("the first caller fills");
        assert!(flight.in_flight(0, 1_000));
        assert!(flight.try_start(0, 1_000).is_none());
        drop(first);
        assert!(!flight.in_flight(0, 1_000));
        assert!(flight.try_start(0, 1_000).is_some(), "a waiter takes over");
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        assert_eq!(retry_after_secs(1_001, 0), 2);
        assert_eq!(retry_after_secs(1_000, 0), 1);
        assert_eq!(retry_after_secs(0, 5), 1);
    }

    #[test]
    fn a_fill_never_finished_is_abandoned_after_its_time() {
        let flight = Flight::default();
        let stuck = flight.start(0);
        assert!(flight.try_start(999, 1_000).is_none());
        let next = flight.try_start(1_000, 1_000).expect("taken over");
        // The stuck filler finishing late does not clear the new mark.
        drop(stuck);
        assert!(flight.in_flight(1_001, 1_000));
        drop(next);
        assert!(!flight.in_flight(1_001, 1_000));
    }
}

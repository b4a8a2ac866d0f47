//! A dependency after a failure (the token endpoint, a key set's URL, the introspection
//! endpoint): at most one request at a time probes it, a probe at most every
//! `PROBE_SPACING_MS`, and the first good answer ends the back-off at once.
//!
//! Why probes and not a back-off that doubles: a back-off of 2, 4 … 60 s leaves the dependency
//! untried for up to a minute after it has come back, and every request in that minute is
//! refused although the dependency would answer. Here a dependency that has failed is tried
//! again by one request at a time, so the load on it is bounded, per isolate (and, for the
//! token, per coordinator), by:
//!
//! - one call in flight: a dependency that times out sees one call per timeout;
//! - one call per `PROBE_SPACING_MS` (0.5 s): a dependency that fails fast (a 500 in 1 ms)
//!   under heavy traffic sees two calls a second, not one per request.
//!
//! A request that needs the dependency while it is backing off waits for the next probe's
//! answer, at most `HOLD_MS`: when that probe succeeds it is served, when a probe that started
//! after it arrived fails (the dependency was asked since, and said no) or its hold runs out
//! (a probe that is timing out) it gets the usual answer, 503 with `Retry-After`, without
//! calling the dependency itself. So no request is refused on the strength of an answer older
//! than itself, and a request arriving just after the dependency came back is served by the
//! first probe rather than refused until a back-off runs out.
//!
//! Requests that have something to use meanwhile (a still-usable access token, a stale key set)
//! never wait, and are refused nothing: one of them probes when a background probe is due, the
//! others use what there is. Background probes are spaced 2 s after the first failure, doubling
//! with each failure in a row to a minute (`background_spacing_ms`): nobody is waiting, so the
//! dead dependency is spared. Once there is nothing left to use, the requests are the probes
//! again, every half second.
//!
//! Refused client credentials are a configuration problem, not an outage: only an operator can
//! fix them, so the next call waits `REFUSED_RETRY_MS` (a minute), and requests meanwhile are
//! answered at once.
//!
//! A waiter polls the state on its own timer and never awaits the probe's future (see
//! `crate::support::flight` for why); a probe whose request vanished releases its mark when dropped, and
//! one never dropped stops counting after the caller's `abandon_after_ms`.

use std::cell::Cell;
use std::rc::Rc;

use crate::support::flight::{retry_after_secs, Flight, FlightGuard};

/// After a failed call, the next probe starts no sooner than this.
pub const PROBE_SPACING_MS: u64 = 500;
/// The first spacing of background probes (callers with something to use meanwhile); it
/// doubles with each failure in a row up to `MAX_BACKGROUND_SPACING_MS`.
pub const FIRST_BACKGROUND_SPACING_MS: u64 = 2_000;
pub const MAX_BACKGROUND_SPACING_MS: u64 = 60_000;
/// Longest a request waits for a probe's answer while the dependency is backing off.
pub const HOLD_MS: u64 = 1_000;
/// After the dependency refused the gateway's client credentials, the next call waits this long.
pub const REFUSED_RETRY_MS: u64 = 60_000;

#[derive(Clone, Copy, Default)]
struct State {
    /// Failed calls since the last good answer; 0: not backing off.
    failures_in_a_row: u32,
    /// While backing off, no probe starts before this instant.
    next_probe_ms: u64,
    /// While backing off, no background probe starts before this instant.
    next_background_ms: u64,
    /// Calls started so far; each call's number is the count when it started.
    started: u64,
    /// The number of the latest call whose failure counts (newer than the last good answer).
    failed: u64,
    /// The number of the latest call that answered well.
    answered: u64,
}

/// One dependency's health, as seen by one isolate (or the coordinator). Cloning shares it.
#[derive(Clone, Default)]
pub struct Breaker {
    state: Rc<Cell<State>>,
    /// The probe in flight while backing off.
    probe: Flight,
}

/// A request's place in line: when it arrived and how many calls had started by then.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    arrived_ms: u64,
    /// A failure of a call numbered above this refuses the request.
    after: u64,
}

/// One call to the dependency, numbered; report how it went with `Breaker::succeeded` or
/// `Breaker::failed`. Dropped unreported (its request cancelled), it counts for nothing and
/// releases the probe mark.
pub struct Attempt {
    seq: u64,
    probe: Option<FlightGuard>,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("seq", &self.seq)
            .field("probe", &self.probe.is_some())
            .finish()
    }
}

impl Attempt {
    /// This call's number (for a cache to tell waiters which call they wait on).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether this call is a probe of a dependency that was backing off.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

/// What a request with nothing else to use does next.
#[derive(Debug)]
pub enum Turn {
    /// Call the dependency.
    Go(Attempt),
    /// Poll again after `flight::POLL_MS`.
    Wait,
    /// Do not call: answer 503 with this `Retry-After`.
    Refuse { retry_after_secs: u64 },
}

impl Breaker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the last answer was a failure: requests are then served by probes.
    pub fn is_backing_off(&self) -> bool {
        self.state.get().failures_in_a_row > 0
    }

    /// Failed calls since the last good answer.
    pub fn failures_in_a_row(&self) -> u32 {
        self.state.get().failures_in_a_row
    }

    /// A request arriving at `now`.
    pub fn ticket(&self, now: u64) -> Ticket {
        Ticket {
            arrived_ms: now,
            after: self.state.get().started,
        }
    }

    /// For a request with nothing else to use. `busy`: the number of a call this request would
    /// otherwise wait on (the cache's own fill in flight, or the same identifier's call), if
    /// any; `abandon_after_ms`: how long a probe may run before it no longer counts.
    pub fn turn(
        &self,
        ticket: &mut Ticket,
        now: u64,
        busy: Option<u64>,
        abandon_after_ms: u64,
    ) -> Turn {
        let st = self.state.get();
        if st.failures_in_a_row == 0 {
            return match busy {
                // Not backing off: wait on the call in flight, and take its failure as ours.
                Some(seq) => {
                    ticket.after = ticket.after.min(seq.saturating_sub(1));
                    Turn::Wait
                }
                None => Turn::Go(self.begin(None)),
            };
        }
        let refuse = Turn::Refuse {
            retry_after_secs: self.retry_after_secs(now),
        };
        if st.failed > ticket.after {
            // A call that this request waited on, or that started after it arrived, failed.
            return refuse;
        }
        let hold_until = ticket.arrived_ms.saturating_add(HOLD_MS);
        if busy.is_some() || self.probe.in_flight(now, abandon_after_ms) {
            return if now < hold_until { Turn::Wait } else { refuse };
        }
        if now >= st.next_probe_ms {
            return Turn::Go(self.begin(Some(self.probe.start(now))));
        }
        if st.next_probe_ms <= hold_until {
            Turn::Wait
        } else {
            refuse
        }
    }

    /// For a request that has something to use meanwhile: a call when one may be made now (not
    /// backing off, or a background probe due and none in flight), else `None`: use what there
    /// is. `busy`: a call of the cache's own is in flight.
    pub fn try_go(&self, now: u64, busy: bool, abandon_after_ms: u64) -> Option<Attempt> {
        if busy {
            return None;
        }
        if !self.is_backing_off() {
            return Some(self.begin(None));
        }
        let st = self.state.get();
        if now < st.next_background_ms || self.probe.in_flight(now, abandon_after_ms) {
            return None;
        }
        Some(self.begin(Some(self.probe.start(now))))
    }

    /// A probe now whatever the spacing, unless one is in flight: for calls with their own rate
    /// limit that the back-off must not delay (the unknown-`kid` refetch).
    pub fn probe_now(&self, now: u64, abandon_after_ms: u64) -> Option<Attempt> {
        if !self.is_backing_off() {
            return Some(self.begin(None));
        }
        if self.probe.in_flight(now, abandon_after_ms) {
            return None;
        }
        Some(self.begin(Some(self.probe.start(now))))
    }

    /// The dependency answered well: the back-off ends at once.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut st = self.state.get();
        st.failures_in_a_row = 0;
        st.next_probe_ms = 0;
        st.next_background_ms = 0;
        st.answered = st.answered.max(attempt.seq);
        self.state.set(st);
    }

    /// The dependency failed `attempt` at `now`; the next probe waits `retry_in_ms`
    /// (`PROBE_SPACING_MS`, or `REFUSED_RETRY_MS` for refused credentials). A call older than
    /// the last good answer does not start a back-off: the dependency has answered since.
    pub fn failed(&self, attempt: Attempt, now: u64, retry_in_ms: u64) {
        let mut st = self.state.get();
        if attempt.seq < st.answered {
            return;
        }
        st.failures_in_a_row = st.failures_in_a_row.saturating_add(1);
        st.next_probe_ms = now.saturating_add(retry_in_ms);
        st.next_background_ms =
            now.saturating_add(retry_in_ms.max(background_spacing_ms(st.failures_in_a_row)));
        st.failed = st.failed.max(attempt.seq);
        self.state.set(st);
    }

    /// `Retry-After` while backing off: the seconds until the next probe may start, at least 1.
    pub fn retry_after_secs(&self, now: u64) -> u64 {
        retry_after_secs(self.state.get().next_probe_ms, now)
    }

    fn begin(&self, probe: Option<FlightGuard>) -> Attempt {
        let mut st = self.state.get();
        st.started += 1;
        self.state.set(st);
        Attempt {
            seq: st.started,
            probe,
        }
    }
}

/// How long background probes wait after `failures` failures in a row.
pub fn background_spacing_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKGROUND_SPACING_MS << doublings).min(MAX_BACKGROUND_SPACING_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABANDON: u64 = 10_000;

    fn go(turn: Turn) -> Attempt {
        match turn {
            Turn::Go(a) => a,
            other => panic!("expected a call, got {other:?}"),
        }
    }

    #[test]
    fn not_backing_off_every_request_calls_or_waits_on_the_call_in_flight() {
        let b = Breaker::new();
        let mut t = b.ticket(0);
        let first = go(b.turn(&mut t, 0, None, ABANDON));
        assert!(!first.is_probe());
        let mut waiter = b.ticket(0);
        assert!(matches!(
            b.turn(&mut waiter, 0, Some(first.seq()), ABANDON),
            Turn::Wait
        ));
        // The call it waited on failed: it is answered with that failure, without a call.
        b.failed(first, 5, PROBE_SPACING_MS);
        assert!(matches!(
            b.turn(&mut waiter, 5, None, ABANDON),
            Turn::Refuse { .. }
        ));
    }

    #[test]
    fn backing_off_one_probe_at_a_time_one_per_spacing() {
        let b = Breaker::new();
        let mut t = b.ticket(0);
        b.failed(go(b.turn(&mut t, 0, None, ABANDON)), 0, PROBE_SPACING_MS);
        // Arriving during the spacing: wait for the next probe.
        let mut early = b.ticket(100);
        let mut other = b.ticket(200);
        assert!(matches!(b.turn(&mut early, 100, None, ABANDON), Turn::Wait));
        // Due: the first to look probes, every other request waits on it.
        let probe = go(b.turn(&mut early, 500, None, ABANDON));
        assert!(probe.is_probe());
        assert!(matches!(b.turn(&mut other, 501, None, ABANDON), Turn::Wait));
        assert!(b.try_go(501, false, ABANDON).is_none(), "one at a time");
        assert!(b.probe_now(501, ABANDON).is_none(), "one at a time");
        // It fails: a request that arrived before it started is refused, with Retry-After.
        b.failed(probe, 502, PROBE_SPACING_MS);
        assert!(matches!(
            b.turn(&mut other, 502, None, ABANDON),
            Turn::Refuse {
                retry_after_secs: 1
            }
        ));
        let mut later = b.ticket(600);
        assert!(
            matches!(b.turn(&mut later, 600, None, ABANDON), Turn::Wait),
            "spacing"
        );
        assert!(
            go(b.turn(&mut later, 1_002, None, ABANDON)).is_probe(),
            "due again"
        );
    }

    #[test]
    fn requests_with_something_to_use_probe_on_a_slower_schedule() {
        let b = Breaker::new();
        let mut at = 0;
        for (failures, spacing) in [(1, 2_000), (2, 4_000), (3, 8_000), (6, 60_000), (9, 60_000)] {
            while b.failures_in_a_row() < failures {
                let attempt = b.probe_now(at, ABANDON).unwrap();
                b.failed(attempt, at, PROBE_SPACING_MS);
            }
            assert!(b.try_go(at + spacing - 1, false, ABANDON).is_none());
            at += spacing;
            assert!(b.try_go(at, false, ABANDON).is_some(), "{failures}");
        }
        assert_eq!(background_spacing_ms(u32::MAX), MAX_BACKGROUND_SPACING_MS);
    }

    #[test]
    fn a_request_is_never_refused_on_an_answer_older_than_itself() {
        let b = Breaker::new();
        let mut t = b.ticket(0);
        b.failed(go(b.turn(&mut t, 0, None, ABANDON)), 0, PROBE_SPACING_MS);
        let mut first = b.ticket(0);
        let probe = go(b.turn(&mut first, 500, None, ABANDON));
        // Arrives while that probe (started before it) is in flight; the probe fails.
        let mut late = b.ticket(501);
        b.failed(probe, 502, PROBE_SPACING_MS);
        // Not refused on that answer: it waits for the next probe, and is the one to make it.
        assert!(matches!(b.turn(&mut late, 502, None, ABANDON), Turn::Wait));
        let next = go(b.turn(&mut late, 1_002, None, ABANDON));
        // The dependency is back: the back-off ends at once.
        b.succeeded(next);
        assert!(!b.is_backing_off());
        let mut after = b.ticket(1_003);
        assert!(!go(b.turn(&mut after, 1_003, None, ABANDON)).is_probe());
    }

    #[test]
    fn a_probe_that_times_out_holds_requests_at_most_hold_ms() {
        let b = Breaker::new();
        let mut t = b.ticket(0);
        b.failed(go(b.turn(&mut t, 0, None, ABANDON)), 0, PROBE_SPACING_MS);
        let _slow = b.probe_now(500, ABANDON).expect("due");
        let mut t = b.ticket(600);
        assert!(matches!(b.turn(&mut t, 1_599, None, ABANDON), Turn::Wait));
        assert!(matches!(
            b.turn(&mut t, 1_600, None, ABANDON),
            Turn::Refuse { .. }
        ));
        // A probe never finished nor dropped stops counting after its time.
        assert!(b.probe_now(500 + ABANDON, ABANDON).is_some());
    }

    #[test]
    fn refused_credentials_answer_at_once_for_a_minute() {
        let b = Breaker::new();
        let mut t = b.ticket(0);
        b.failed(go(b.turn(&mut t, 0, None, ABANDON)), 0, REFUSED_RETRY_MS);
        let mut t = b.ticket(1);
        assert!(matches!(
            b.turn(&mut t, 1, None, ABANDON),
            Turn::Refuse {
                retry_after_secs: 60
            }
        ));
        assert!(b.try_go(59_999, false, ABANDON).is_none());
        let mut t = b.ticket(59_999);
        assert!(matches!(b.turn(&mut t, 59_999, None, ABANDON), Turn::Wait));
        assert!(go(b.turn(&mut t, 60_000, None, ABANDON)).is_probe());
    }

    #[test]
    fn a_failure_older_than_a_good_answer_does_not_back_off() {
        let b = Breaker::new();
        let older = b.try_go(0, false, ABANDON).unwrap();
        let newer = b.try_go(0, false, ABANDON).unwrap();
        b.succeeded(newer);
        b.failed(older, 5_000, PROBE_SPACING_MS);
        assert!(!b.is_backing_off());
    }

    #[test]
    fn a_dropped_probe_releases_its_mark() {
        let b = Breaker::new();
        let mut t = b.ticket(0);
        b.failed(go(b.turn(&mut t, 0, None, ABANDON)), 0, PROBE_SPACING_MS);
        let probe = b.probe_now(500, ABANDON).unwrap();
        assert!(b.probe_now(500, ABANDON).is_none());
        drop(probe);
        assert!(b.is_backing_off(), "a cancelled probe is no answer");
        assert!(b.probe_now(501, ABANDON).is_some());
    }
}

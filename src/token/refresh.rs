//! When a cached token is refreshed ahead of its expiry: the refresh window before it stops
//! being usable, and the jitter that keeps isolates holding the same token out of lockstep.
//!
//! The timeline of one token, all in milliseconds since the epoch:
//!
//! ```text
//! obtained ── … ── refresh_at ── refresh_from ──── window ──── usable_until ── margin ── expires
//!                  └─ jitter ─┘
//! ```
//!
//! - `window` = 20 % of the lifetime, at least 60 s (Workers KV may take that long to show a
//!   new value in other locations, so a token refreshed by one isolate reaches the others before
//!   their copy runs out), but at most half of the usable span (a short-lived token is still
//!   used for half its life before it is refreshed).
//! - `jitter` moves the refresh earlier by up to a quarter of the window: isolates that read the
//!   same token from KV (same `obtained`) then refresh at different moments, and the first one's
//!   new token is in KV when the others look.
//! - Nothing here ever extends use past `usable_until`: past it the token is not sent at all.

use super::entry::CachedToken;

/// Share of a token's lifetime spent in the refresh window, in percent.
const WINDOW_SHARE_PERCENT: u64 = 20;
/// Shortest refresh window: how long Workers KV may take to propagate a write.
pub const MIN_WINDOW_MS: u64 = 60_000;
/// Most jitter, in percent of the window.
const MAX_JITTER_PERCENT: u64 = 25;

/// A random share in `[0, 1)`, as the numerator of a fraction over 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter(pub u32);

impl Jitter {
    /// No jitter: the refresh starts at `refresh_from`.
    pub const NONE: Self = Self(0);
    /// The most jitter there is (just under a quarter of the window earlier).
    pub const MAX: Self = Self(u32::MAX);

    /// A fresh random share. Without entropy, no jitter: jitter only spreads load, so losing it
    /// costs a few extra endpoint calls, never a request.
    pub fn random() -> Self {
        let mut bytes = [0u8; 4];
        match getrandom::getrandom(&mut bytes) {
            Ok(()) => Self(u32::from_le_bytes(bytes)),
            Err(_) => Self::NONE,
        }
    }

    /// This share of `span`, rounded down; always below `span` (or 0 when `span` is 0).
    fn of(self, span: u64) -> u64 {
        // u128: a token of absurd lifetime must not overflow.
        ((u128::from(span) * u128::from(self.0)) >> 32) as u64
    }
}

/// How long before `usable_until` the refresh window opens.
pub fn window_ms(token: &CachedToken) -> u64 {
    let lifetime = token.expires_at_ms() - token.obtained_at_ms();
    let usable_span = token.usable_until_ms() - token.obtained_at_ms();
    (lifetime / 100 * WINDOW_SHARE_PERCENT)
        .max(MIN_WINDOW_MS)
        .min(usable_span / 2)
}

/// When the refresh window opens, without jitter. A token read from KV before this moment is
/// not due for refresh by anyone.
pub fn refresh_from_ms(token: &CachedToken) -> u64 {
    token.usable_until_ms() - window_ms(token)
}

/// The most jitter for this token.
pub fn max_jitter_ms(token: &CachedToken) -> u64 {
    window_ms(token) / 100 * MAX_JITTER_PERCENT
}

/// When this isolate starts its background refresh of `token`.
pub fn refresh_at_ms(token: &CachedToken, jitter: Jitter) -> u64 {
    refresh_from_ms(token) - jitter.of(max_jitter_ms(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_a_share_below_one() {
        assert_eq!(Jitter::NONE.of(1000), 0);
        assert_eq!(Jitter::MAX.of(1000), 999);
        assert_eq!(Jitter(1 << 31).of(1000), 500);
        assert_eq!(Jitter::MAX.of(0), 0);
        assert!(Jitter::MAX.of(u64::MAX) < u64::MAX);
    }
}

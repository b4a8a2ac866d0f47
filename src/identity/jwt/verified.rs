//! The isolate's memory of tokens that passed every check, so a caller repeating its token is
//! not verified again until the token expires.
//!
//! Entries are keyed by the SHA-256 of the exact token string (two different strings never share
//! an entry, and no token text is kept), keep the token's claims (route policy and the customer
//! id read them on every use), are bounded in count and bytes, are re-checked for
//! `exp`, `nbf` and maximum age on every use, and only count for the key set generation they
//! were verified with, so a key removed from the JWKS stops vouching for its tokens.

use std::cell::RefCell;

use sha2::{Digest, Sha256};

use super::validate::check_times;
use super::{JwtSettings, VerifiedToken};
use crate::support::bounded::BoundedMap;

/// Most tokens remembered per isolate.
pub const MAX_ENTRIES: usize = 4_096;
/// Most bytes the entries may hold, counted generously (digest, fixed fields and strings).
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Count for an entry's fixed part: digest, numbers, map and queue overhead.
const ENTRY_OVERHEAD: usize = 160;
/// A token whose payload is longer than this is not remembered (it is verified in full each
/// time): the parsed claims of a few such tokens would otherwise crowd out everyone else's.
pub const MAX_CLAIMS_BYTES: usize = 4 * 1024;
/// What parsed JSON costs in memory next to its text, roughly: maps, strings, `Value`s.
const CLAIMS_FACTOR: usize = 3;

type Digest32 = [u8; 32];

/// The SHA-256 of a token's exact text: what the memory is keyed by. Computed once per request
/// and used for both the lookup and, on a miss, the insertion.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest(Digest32);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The key of `token` as checked by provider `provider` (`JWT_PROVIDERS` position; 0 is
    /// also the flat settings): the id is hashed in, so one provider's verification never
    /// answers for another. A token never holds a NUL byte, so no two pairs share an input.
    pub fn for_provider(provider: usize, token: &str) -> Self {
        if provider == 0 {
            return Self::of(token);
        }
        let mut h = Sha256::new();
        h.update(token.as_bytes());
        h.update([0u8]);
        h.update((provider as u64).to_be_bytes());
        Self(h.finalize().into())
    }
}

struct Entry {
    token: VerifiedToken,
    generation: u64,
}

pub struct VerifiedCache {
    inner: RefCell<BoundedMap<Digest32, Entry>>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self {
            inner: RefCell::new(BoundedMap::new(MAX_ENTRIES, MAX_BYTES)),
        }
    }
}

impl VerifiedCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The checked claims of the token with `digest` if it was verified with key set
    /// `generation` and its time claims still hold at `now_secs`. An entry that no longer holds
    /// is forgotten.
    pub fn get(
        &self,
        token: &TokenDigest,
        generation: u64,
        settings: &JwtSettings,
        now_secs: u64,
    ) -> Option<VerifiedToken> {
        let digest = token.0;
        let mut inner = self.inner.borrow_mut();
        let entry = inner.get(&digest)?;
        let t = &entry.token;
        if entry.generation == generation
            && check_times(t.exp, t.nbf, t.iat, settings, now_secs).is_ok()
        {
            return Some(entry.token.clone());
        }
        inner.remove(&digest);
        None
    }

    /// Remembers a token that has just passed every check, unless its payload is longer than
    /// `MAX_CLAIMS_BYTES`. Kept whole, not clipped: `iss` and `sub` feed the customer id, which
    /// must be the same on a memory hit as on a full check.
    pub fn insert(&self, token: &TokenDigest, generation: u64, verified: &VerifiedToken) {
        if verified.claims.bytes() > MAX_CLAIMS_BYTES {
            return;
        }
        let kept = verified.clone();
        let bytes = ENTRY_OVERHEAD
            + verified.claims.bytes() * CLAIMS_FACTOR
            + [&kept.kid, &kept.iss, &kept.sub]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>();
        self.inner.borrow_mut().insert(
            token.0,
            Entry {
                token: kept,
                generation,
            },
            bytes,
        );
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted for the entries, at most `MAX_BYTES`.
    pub fn bytes(&self) -> usize {
        self.inner.borrow().bytes()
    }
}

//! The isolate's memory of tokens that passed every check, so a caller repeating its token is
//! not verified again until the token expires.
//!
//! Entries are keyed by the SHA-256 of the exact token string (two different strings never share
//! an entry, and no token text is kept), are bounded in count and bytes, are re-checked for
//! `exp`, `nbf` and maximum age on every use, and only count for the key set generation they
//! were verified with, so a key removed from the JWKS stops vouching for its tokens.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use super::{JwtSettings, VerifiedToken};
use crate::log::clip;

/// Most tokens remembered per isolate.
pub const MAX_ENTRIES: usize = 4_096;
/// Most bytes the entries may hold, counted generously (digest, fixed fields and strings).
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Count for an entry's fixed part: digest, numbers, map and queue overhead.
const ENTRY_OVERHEAD: usize = 160;

type Digest32 = [u8; 32];

struct Entry {
    token: VerifiedToken,
    generation: u64,
    seq: u64,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Digest32, Entry>,
    /// Insertion order, for eviction; an element whose `seq` no longer matches the map's entry
    /// is a leftover of a removed entry.
    order: VecDeque<(Digest32, u64)>,
    seq: u64,
    bytes: usize,
}

#[derive(Default)]
pub struct VerifiedCache {
    inner: RefCell<Inner>,
}

impl VerifiedCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The checked claims of `token` if it was verified with key set `generation` and its
    /// time claims still hold at `now_secs`. An entry that no longer holds is forgotten.
    pub fn get(
        &self,
        token: &str,
        generation: u64,
        settings: &JwtSettings,
        now_secs: u64,
    ) -> Option<VerifiedToken> {
        let digest = digest(token);
        let mut inner = self.inner.borrow_mut();
        let entry = inner.map.get(&digest)?;
        if entry.generation == generation && still_valid(&entry.token, settings, now_secs) {
            return Some(entry.token.clone());
        }
        if let Some(gone) = inner.map.remove(&digest) {
            inner.bytes -= gone.bytes;
        }
        None
    }

    /// Remembers a token that has just passed every check.
    pub fn insert(&self, token: &str, generation: u64, verified: &VerifiedToken) {
        let kept = VerifiedToken {
            kid: verified.kid.as_deref().map(clip),
            iss: verified.iss.as_deref().map(clip),
            sub: verified.sub.as_deref().map(clip),
            ..verified.clone()
        };
        let bytes = ENTRY_OVERHEAD
            + [&kept.kid, &kept.iss, &kept.sub]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>();
        let digest = digest(token);
        let mut inner = self.inner.borrow_mut();
        if let Some(old) = inner.map.remove(&digest) {
            inner.bytes -= old.bytes;
        }
        while inner.map.len() >= MAX_ENTRIES || inner.bytes + bytes > MAX_BYTES {
            let Some((oldest, seq)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&oldest).is_some_and(|e| e.seq == seq) {
                if let Some(gone) = inner.map.remove(&oldest) {
                    inner.bytes -= gone.bytes;
                }
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.order.push_back((digest, seq));
        // Leftovers of replaced or expired entries must not make the queue grow without bound.
        if inner.order.len() > 2 * MAX_ENTRIES {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(d, s)| map.get(d).is_some_and(|e| e.seq == *s));
        }
        inner.bytes += bytes;
        inner.map.insert(
            digest,
            Entry {
                token: kept,
                generation,
                seq,
                bytes,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted for the entries, at most `MAX_BYTES`.
    pub fn bytes(&self) -> usize {
        self.inner.borrow().bytes
    }
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// The checks that depend on the time: the rest of a verified token cannot change.
fn still_valid(token: &VerifiedToken, settings: &JwtSettings, now: u64) -> bool {
    let leeway = settings.leeway_secs;
    let not_expired = now < token.exp.saturating_add(leeway);
    let started = token
        .nbf
        .is_none_or(|nbf| nbf <= now.saturating_add(leeway));
    let young_enough = match settings.max_age_secs {
        None => true,
        Some(max_age) => token
            .iat
            .is_some_and(|iat| now.saturating_sub(iat) <= max_age.saturating_add(leeway)),
    };
    not_expired && started && young_enough
}

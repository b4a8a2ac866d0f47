//! Which subjects have a cut-off at all: the isolate lists the KV keys under `revoked:v1:` at
//! most once per `FRESH_MS` and holds their digests, so that a subject without an entry (nearly
//! every one) passes with no KV read. A listing of the prefix, not a marker key, so that an
//! entry written by hand (`wrangler kv key put` with the contract's key) counts like one
//! written by `npm run revoke`.
//!
//! At most `MAX_PAGES` pages of `PAGE_KEYS` keys are listed; with more entries than that the
//! listing is incomplete, and a subject not in it is read from KV one by one as before (correct,
//! only not free). One list at a time per isolate: a request arriving while another lists polls
//! for its result (`crate::support::flight`). A failed list leaves the listing held so far
//! serving while it is younger than `STALE_MS`; without one the caller is told so (503).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::io::{Clock, KeyValue, Platform, StoreError};
use crate::support::flight::{Flight, POLL_MS};

/// The KV key's prefix (`npm run revoke` writes the same).
pub const KEY_PREFIX: &str = "revoked:v1:";
/// What KV said (a listing, a subject's value) is believed this long.
pub const FRESH_MS: u64 = 60_000;
/// While KV fails, what it said this long ago still serves.
pub const STALE_MS: u64 = 10 * 60_000;
/// Keys per page (the most Workers KV gives).
pub const PAGE_KEYS: usize = 1000;
/// Pages per listing: at most 10,000 digests (320 KB) held.
pub const MAX_PAGES: usize = 10;
/// A list not finished after this long no longer holds the other requests back.
const ABANDON_MS: u64 = 10_000;
/// After a failed list, a held listing serves this long before the next list is tried.
const RETRY_MS: u64 = 1_000;

/// The key names listed, as digests.
struct Listed {
    digests: HashSet<[u8; 32]>,
    /// False when there were more keys than `MAX_PAGES` pages.
    complete: bool,
    listed_ms: u64,
}

/// What the listing says of one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// A complete listing without the subject: it has no cut-off.
    Absent,
    /// The subject is listed, or the listing is incomplete: read its value.
    Read,
}

/// The listing could not be made and none younger than `STALE_MS` is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUnavailable;

/// One per isolate.
#[derive(Default)]
pub struct Listing {
    held: RefCell<Option<Rc<Listed>>>,
    flight: Flight,
    /// When the last list failed.
    failed_ms: Cell<Option<u64>>,
}

impl Listing {
    /// The subject's membership, and whether the listing it comes from is older than
    /// `FRESH_MS` (a list failed and an older one served).
    pub async fn lookup<P: Platform>(
        &self,
        digest: &[u8; 32],
        p: &P,
    ) -> Result<(Membership, bool), ListUnavailable> {
        let began = p.clock().now_ms();
        let mut waited = false;
        loop {
            let now = p.clock().now_ms();
            let held = self.held.borrow().clone();
            let age = held
                .as_ref()
                .map(|l| (now >= l.listed_ms, now.saturating_sub(l.listed_ms)));
            // A clock that went back counts as fresh only from the time it says now.
            let fresh = age.is_some_and(|(fwd, a)| fwd && a < FRESH_MS);
            let usable = age.is_some_and(|(_, a)| a < STALE_MS);
            let answer = |stale| {
                Ok((
                    held.as_deref().map_or(Membership::Read, |l| l.of(digest)),
                    stale,
                ))
            };
            if fresh {
                return answer(false);
            }
            let failed = self.failed_ms.get();
            // The list this request waited on failed: no new list for the same request.
            if waited && failed.is_some_and(|f| f >= began) {
                return if usable {
                    answer(true)
                } else {
                    Err(ListUnavailable)
                };
            }
            // Just failed: the held listing serves a moment before the next try.
            if usable && failed.is_some_and(|f| now >= f && now - f < RETRY_MS) {
                return answer(true);
            }
            let Some(_guard) = self.flight.try_start(now, ABANDON_MS) else {
                p.clock().sleep(POLL_MS).await;
                waited = true;
                continue;
            };
            match list(p.store()).await {
                Ok((digests, complete)) => {
                    let listed = Rc::new(Listed {
                        digests,
                        complete,
                        listed_ms: p.clock().now_ms(),
                    });
                    *self.held.borrow_mut() = Some(listed.clone());
                    self.failed_ms.set(None);
                    return Ok((listed.of(digest), false));
                }
                Err(_) => {
                    self.failed_ms.set(Some(p.clock().now_ms()));
                    return if usable {
                        answer(true)
                    } else {
                        Err(ListUnavailable)
                    };
                }
            }
        }
    }
}

impl Listed {
    fn of(&self, digest: &[u8; 32]) -> Membership {
        if !self.complete || self.digests.contains(digest) {
            Membership::Read
        } else {
            Membership::Absent
        }
    }
}

/// Every page of the prefix, up to `MAX_PAGES`: the digests, and whether that was all.
async fn list<S: KeyValue>(store: &S) -> Result<(HashSet<[u8; 32]>, bool), StoreError> {
    let mut digests = HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = store.list(KEY_PREFIX, cursor.as_deref(), PAGE_KEYS).await?;
        // A name that is not a digest names no subject (the per-subject `get` would not
        // find it either).
        digests.extend(page.keys.iter().filter_map(|k| digest_of(k)));
        match page.next {
            None => return Ok((digests, true)),
            next => cursor = next,
        }
    }
    Ok((digests, false))
}

fn digest_of(key: &str) -> Option<[u8; 32]> {
    let encoded = key.strip_prefix(KEY_PREFIX)?;
    URL_SAFE_NO_PAD.decode(encoded).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::revocation::cutoff::{digest, kv_key};

    #[test]
    fn key_names_decode_to_the_digest_they_were_made_of() {
        let key = kv_key("https://idp.example/", "alice");
        assert_eq!(
            digest_of(&key),
            Some(digest("https://idp.example/", "alice"))
        );
        assert_eq!(digest_of("revoked:v1:short"), None);
        assert_eq!(digest_of("other:v1:x"), None);
    }
}

//! The subject-wide cut-off: a KV entry `revoked:v1:<base64url SHA-256 of iss "\n" sub>` holding
//! a Unix time in seconds; a JWT of that subject issued (`iat`) strictly before it is refused.
//!
//! Which subjects have an entry at all comes from the isolate's listing of the prefix
//! (`super::listing`, at most one KV list per `FRESH_MS`): a subject not in it passes with no
//! KV read. A listed subject's value (or, beyond the listing's cap, any subject's) is read
//! through the isolate's memory, which remembers what KV said (an entry, or no entry) for at
//! most `FRESH_MS`. Both are at most `FRESH_MS` old, so a cut-off written with
//! `npm run revoke` (or by hand) takes effect within KV's propagation plus `FRESH_MS`, and so
//! does its removal. When KV fails, a listing and values read in the last `STALE_MS` serve (the
//! recovery rules: a remembered answer serves while its source is down); without them the
//! request is refused (503): a subject whose cut-off cannot be read is never let through
//! unchecked. The key is a digest, so neither the
//! subject nor the issuer is in KV in clear, and no token ever is.

use std::cell::RefCell;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::listing::{Listing, Membership};
pub use super::listing::{FRESH_MS, KEY_PREFIX, STALE_MS};
use crate::io::{Clock, KeyValue, Platform};
use crate::support::bounded::BoundedMap;

/// Most subjects remembered per isolate.
pub const MAX_ENTRIES: usize = 10_000;
/// Counted per entry: digest, times, map and queue overhead.
const ENTRY_BYTES: usize = 96;

/// What KV holds for a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// No entry: no token of this subject is cut off.
    None,
    /// Tokens with `iat` strictly before this Unix time (seconds) are refused.
    At(u64),
    /// An entry that is not a Unix time in seconds: every token of the subject is refused
    /// (someone meant to revoke it), and the log line says so.
    Unreadable,
}

impl Cutoff {
    /// Reads a KV value: decimal digits (surrounding whitespace allowed).
    pub fn parse(value: &str) -> Self {
        let t = value.trim();
        match t.parse::<u64>() {
            Ok(at) if t.bytes().all(|b| b.is_ascii_digit()) => Self::At(at),
            _ => Self::Unreadable,
        }
    }
}

/// Where the answer came from, for the log line's `cutoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutoffSource {
    /// Not in the isolate's listing of the entries: no value read.
    List,
    Memory,
    Kv,
    /// KV failed; a listing or an answer older than `FRESH_MS` served.
    Stale,
}

impl CutoffSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Memory => "memory",
            Self::Kv => "kv",
            Self::Stale => "stale",
        }
    }
}

/// KV failed and nothing recent was remembered for the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutoffUnavailable;

struct Entry {
    cutoff: Cutoff,
    read_ms: u64,
}

/// One per isolate.
pub struct CutoffCache {
    listing: Listing,
    entries: RefCell<BoundedMap<[u8; 32], Entry>>,
}

impl Default for CutoffCache {
    fn default() -> Self {
        Self {
            listing: Listing::default(),
            entries: RefCell::new(BoundedMap::new(MAX_ENTRIES, MAX_ENTRIES * ENTRY_BYTES)),
        }
    }
}

/// The SHA-256 of `iss "\n" sub`: the subject's key in memory and in KV.
pub fn digest(iss: &str, sub: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(iss.as_bytes());
    h.update(b"\n");
    h.update(sub.as_bytes());
    h.finalize().into()
}

/// `revoked:v1:<base64url, unpadded, of digest(iss, sub)>`.
pub fn kv_key(iss: &str, sub: &str) -> String {
    key_of(&digest(iss, sub))
}

fn key_of(digest: &[u8; 32]) -> String {
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(digest))
}

impl CutoffCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The subject's cut-off: none when the listing does not name it, else its value from
    /// memory while fresh, else from KV.
    pub async fn cutoff<P: Platform>(
        &self,
        iss: &str,
        sub: &str,
        p: &P,
    ) -> Result<(Cutoff, CutoffSource), CutoffUnavailable> {
        let digest = digest(iss, sub);
        let (membership, stale) =
            (self.listing.lookup(&digest, p).await).map_err(|_| CutoffUnavailable)?;
        if membership == Membership::Absent {
            let source = if stale {
                CutoffSource::Stale
            } else {
                CutoffSource::List
            };
            return Ok((Cutoff::None, source));
        }
        let now = p.clock().now_ms();
        let held = self
            .entries
            .borrow()
            .get(&digest)
            .map(|e| (e.cutoff, e.read_ms));
        if let Some((cutoff, read_ms)) = held {
            // A clock that went back counts as fresh only from the time it says now.
            if now >= read_ms && now - read_ms < FRESH_MS {
                return Ok((cutoff, CutoffSource::Memory));
            }
        }
        match p.store().get(&key_of(&digest)).await {
            Ok(value) => {
                let cutoff = value.as_deref().map_or(Cutoff::None, Cutoff::parse);
                let read_ms = p.clock().now_ms();
                self.entries
                    .borrow_mut()
                    .insert(digest, Entry { cutoff, read_ms }, ENTRY_BYTES);
                Ok((cutoff, CutoffSource::Kv))
            }
            Err(_) => match held {
                Some((cutoff, read_ms)) if now.saturating_sub(read_ms) < STALE_MS => {
                    Ok((cutoff, CutoffSource::Stale))
                }
                _ => Err(CutoffUnavailable),
            },
        }
    }

    /// Subjects remembered now.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_decimal_seconds_or_unreadable() {
        assert_eq!(Cutoff::parse("1700000000"), Cutoff::At(1_700_000_000));
        assert_eq!(Cutoff::parse(" 1700000000\n"), Cutoff::At(1_700_000_000));
        for bad in [
            "",
            "+1",
            "-1",
            "1.5",
            "1e9",
            "soon",
            "99999999999999999999999",
        ] {
            assert_eq!(Cutoff::parse(bad), Cutoff::Unreadable, "{bad}");
        }
    }

    #[test]
    fn the_key_is_a_digest_of_issuer_and_subject() {
        let key = kv_key("https://idp.example/", "alice");
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(key.len(), KEY_PREFIX.len() + 43);
        assert!(!key.contains("alice"));
        // The separator keeps the two apart.
        assert_ne!(kv_key("a", "bc"), kv_key("ab", "c"));
    }
}

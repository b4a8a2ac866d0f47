//! The key set published at `JWKS_URL`: fetched, bounded in time and size, cached in isolate
//! memory and in KV, refreshed by the scheduled handler, and refetched (rate-limited) when a
//! token names a key the set lacks.
//!
//! - `freshness`: how long a fetched set is fresh, from its `Cache-Control`, within bounds.
//! - `stored`: the KV key and value of a fetched set.
//! - `load`: where a set comes from (KV, then the provider), and what a fill did.
//! - `cache`: the isolate's set: one fetch at a time, stale-if-error, the unknown-`kid` refetch.
//! - `discovery`: for an issuer configured alone, its discovery document, which names the set's
//!   URL; held and refreshed like the set.

mod cache;
mod discovery;
mod freshness;
mod load;
mod stored;

pub use cache::{
    JwksCache, Keys, KeysUnavailable, KeysView, KidLookup, KID_REFETCH_INTERVAL_MS,
    UNKNOWN_KID_TTL_MS,
};
pub use discovery::{read_document, Discovery, MAX_DISCOVERY_BYTES};
pub use freshness::{fresh_secs, DEFAULT_FRESH_SECS, MAX_FRESH_SECS, MIN_FRESH_SECS};
pub use load::{JwksEvent, JwksFailure, FETCH_TIMEOUT_MS, MAX_JWKS_BYTES, MAX_STALE_MS};
pub use stored::kv_key;

//! The deployment's DPoP replay guard (`DPOP_REPLAY`, class `ReplayGuard`): what one of its
//! Durable Object instances does with an ask, and how asks are spread over instances. The
//! platform's object (`platform::replay`) only hands this its storage and clock.
//!
//! - **Sharded.** An ask goes to one of `SHARDS` objects, chosen by the proof's replay key (a
//!   digest, so evenly spread): no instance takes every request, and the same proof always
//!   reaches the same instance, which is all the check needs. A Durable Object is one instance
//!   worldwide, so a proof used in one data center is refused in every other.
//! - **One answer per proof.** The object reads, then writes, with no other I/O between: a
//!   Durable Object's input gate delivers no other ask meanwhile, so two concurrent asks with
//!   one key get one `true` and one `false`.
//! - **Kept only for the window.** Each key is stored until its proof's window ends
//!   (`until_ms`, at most `MAX_WINDOW_MS` ahead), with an index entry ordered by that time; an
//!   alarm deletes what has expired, `MAX_CLEAN` at a time, and is set again while anything is
//!   stored. Storage holds what was accepted in the last window, no more.
//!
//! The protocol is one small JSON document each way: `{"key": "<43 base64url>", "until_ms": N}`,
//! answered `{"first": true|false}`.

use serde::{Deserialize, Serialize};

use crate::io::StoreError;

/// How many objects share the keys. Each handles about 1/16 of the DPoP requests; one Durable
/// Object request per DPoP request in all.
pub const SHARDS: u8 = 16;
/// The longest a key may be kept: `DPOP_MAX_AGE_SECONDS` (at most 3600) plus a leeway (at
/// most 3600).
pub const MAX_WINDOW_MS: u64 = 2 * 3600 * 1000;
/// Expired keys deleted per alarm run (a Durable Object deletes up to 128 keys per call; the
/// storage calls are batched by the platform).
pub const MAX_CLEAN: usize = 512;
/// The longest ask read.
pub const MAX_ASK_BYTES: usize = 256;

/// One ask: record `key` until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub key: String,
    pub until_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub first: bool,
}

/// The object named for `key`'s shard: `dpop-replay-<0..15>`, from the key's first base64url
/// symbol (six bits of a SHA-256 digest: four symbols per shard, so evenly spread).
pub fn shard_name(key: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let first = key.bytes().next().unwrap_or(b'A');
    let six = ALPHABET.iter().position(|&b| b == first).unwrap_or(0) as u8;
    format!("dpop-replay-{}", six % SHARDS)
}

/// A Durable Object's storage as the guard uses it. Values are Unix milliseconds.
#[allow(async_fn_in_trait)]
pub trait GuardStorage {
    async fn get(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// Writes every pair (one storage call).
    async fn put_all(&self, entries: &[(String, u64)]) -> Result<(), StoreError>;
    async fn delete_all(&self, keys: &[String]) -> Result<(), StoreError>;
    /// Up to `limit` keys starting with `prefix`, at or after `start` and before `end`, in
    /// order.
    async fn list(&self, start: &str, end: &str, limit: usize) -> Result<Vec<String>, StoreError>;
    async fn alarm(&self) -> Result<Option<u64>, StoreError>;
    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError>;
}

/// Why an ask was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardError {
    /// Not the protocol's ask (400).
    BadAsk,
    /// The storage failed (500): the asking isolate refuses the proof.
    Storage(StoreError),
}

const KEY: &str = "k:";
const INDEX: &str = "e:";

/// The index key: expiry first, zero-padded, so that listing is in time order.
fn index_key(until_ms: u64, key: &str) -> String {
    format!("{INDEX}{until_ms:016}:{key}")
}

/// The answer to `body` at `now_ms`, as the JSON to send back.
pub async fn answer<S: GuardStorage>(
    storage: &S,
    body: &str,
    now_ms: u64,
) -> Result<String, GuardError> {
    if body.len() > MAX_ASK_BYTES {
        return Err(GuardError::BadAsk);
    }
    let ask: Ask = serde_json::from_str(body).map_err(|_| GuardError::BadAsk)?;
    let well_formed = ask.key.len() == 43
        && ask
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed || ask.until_ms > now_ms.saturating_add(MAX_WINDOW_MS) {
        return Err(GuardError::BadAsk);
    }
    let first = first_use(storage, &ask, now_ms)
        .await
        .map_err(GuardError::Storage)?;
    Ok(serde_json::to_string(&Answer { first }).unwrap_or_default())
}

async fn first_use<S: GuardStorage>(
    storage: &S,
    ask: &Ask,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let key = format!("{KEY}{}", ask.key);
    if storage
        .get(&key)
        .await?
        .is_some_and(|until| until >= now_ms)
    {
        return Ok(false);
    }
    // Already past its window: nothing to keep (the isolate refuses such a proof anyway).
    if ask.until_ms < now_ms {
        return Ok(true);
    }
    storage
        .put_all(&[
            (key, ask.until_ms),
            (index_key(ask.until_ms, &ask.key), ask.until_ms),
        ])
        .await?;
    if storage.alarm().await?.is_none() {
        storage.set_alarm(ask.until_ms.saturating_add(1)).await?;
    }
    Ok(true)
}

/// The alarm: deletes up to `MAX_CLEAN` expired keys, then sets the next alarm for the
/// earliest key still stored (at once when expired ones remain). Returns how many it deleted.
pub async fn clean<S: GuardStorage>(storage: &S, now_ms: u64) -> Result<usize, StoreError> {
    let end = index_key(now_ms, "");
    let expired = storage.list(INDEX, &end, MAX_CLEAN).await?;
    let mut doomed = Vec::with_capacity(expired.len() * 2);
    for index in &expired {
        // `e:<16 digits>:<key>`.
        if let Some(key) = index.get(INDEX.len() + 17..) {
            doomed.push(format!("{KEY}{key}"));
        }
        doomed.push(index.clone());
    }
    if !doomed.is_empty() {
        storage.delete_all(&doomed).await?;
    }
    let next = storage.list(INDEX, "e;", 1).await?;
    if let Some(first) = next.first() {
        let at = first
            .get(INDEX.len()..INDEX.len() + 16)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(now_ms);
        storage.set_alarm(at.max(now_ms).saturating_add(1)).await?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Mem {
        map: RefCell<BTreeMap<String, u64>>,
        alarm: RefCell<Option<u64>>,
    }

    impl GuardStorage for Mem {
        async fn get(&self, key: &str) -> Result<Option<u64>, StoreError> {
            Ok(self.map.borrow().get(key).copied())
        }
        async fn put_all(&self, entries: &[(String, u64)]) -> Result<(), StoreError> {
            for (k, v) in entries {
                self.map.borrow_mut().insert(k.clone(), *v);
            }
            Ok(())
        }
        async fn delete_all(&self, keys: &[String]) -> Result<(), StoreError> {
            for k in keys {
                self.map.borrow_mut().remove(k);
            }
            Ok(())
        }
        async fn list(
            &self,
            start: &str,
            end: &str,
            limit: usize,
        ) -> Result<Vec<String>, StoreError> {
            Ok(self
                .map
                .borrow()
                .range(start.to_string()..end.to_string())
                .take(limit)
                .map(|(k, _)| k.clone())
                .collect())
        }
        async fn alarm(&self) -> Result<Option<u64>, StoreError> {
            Ok(*self.alarm.borrow())
        }
        async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError> {
            *self.alarm.borrow_mut() = Some(at_ms);
            Ok(())
        }
    }

    fn ask(key: char, until_ms: u64) -> String {
        serde_json::to_string(&Ask {
            key: key.to_string().repeat(43),
            until_ms,
        })
        .unwrap()
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn one_first_use_per_key_while_its_window_lasts() {
        let s = Mem::default();
        assert_eq!(
            run(answer(&s, &ask('a', 60_000), 0)).unwrap(),
            r#"{"first":true}"#
        );
        assert_eq!(
            run(answer(&s, &ask('a', 60_000), 1_000)).unwrap(),
            r#"{"first":false}"#
        );
        assert_eq!(
            run(answer(&s, &ask('b', 60_000), 1_000)).unwrap(),
            r#"{"first":true}"#
        );
        assert_eq!(
            *s.alarm.borrow(),
            Some(60_001),
            "the first key sets the alarm"
        );
    }

    #[test]
    fn the_alarm_keeps_storage_to_the_window() {
        let s = Mem::default();
        run(answer(&s, &ask('a', 10_000), 0)).unwrap();
        run(answer(&s, &ask('b', 20_000), 0)).unwrap();
        assert_eq!(s.map.borrow().len(), 4);
        assert_eq!(run(clean(&s, 10_001)).unwrap(), 1);
        assert_eq!(s.map.borrow().len(), 2);
        assert_eq!(*s.alarm.borrow(), Some(20_001));
        assert_eq!(run(clean(&s, 20_001)).unwrap(), 1);
        assert!(s.map.borrow().is_empty());
        // An expired key is a first use again (its proof is refused as too old before).
        assert_eq!(
            run(answer(&s, &ask('a', 30_000), 25_000)).unwrap(),
            r#"{"first":true}"#
        );
    }

    #[test]
    fn asks_that_are_not_the_protocol_are_refused() {
        let s = Mem::default();
        for bad in [
            "",
            "{}",
            r#"{"key":"short","until_ms":1}"#,
            &ask('a', MAX_WINDOW_MS + 1),
            &format!(r#"{{"key":"{}","until_ms":1}}"#, "%".repeat(43)),
            &"x".repeat(MAX_ASK_BYTES + 1),
        ] {
            assert_eq!(run(answer(&s, bad, 0)), Err(GuardError::BadAsk), "{bad}");
        }
        assert!(s.map.borrow().is_empty());
    }

    #[test]
    fn shards_spread_keys_and_keep_one_key_on_one_object() {
        let mut counts = std::collections::HashMap::new();
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".chars() {
            *counts
                .entry(shard_name(&c.to_string().repeat(43)))
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), SHARDS as usize);
        assert!(counts.values().all(|&n| n == 4), "{counts:?}");
        assert_eq!(shard_name("abc"), shard_name("abd"));
    }
}

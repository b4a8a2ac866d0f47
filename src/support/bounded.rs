//! A map bounded in entries and in bytes that forgets its oldest entries first: the shape of
//! every per-isolate memory the gateway keeps of what callers sent (verified tokens,
//! introspection answers), so that no caller can make an isolate grow without limit.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

struct Slot<V> {
    value: V,
    seq: u64,
    bytes: usize,
}

/// At most `max_entries` values whose counted bytes add up to at most `max_bytes`; inserting
/// past either bound evicts in insertion order (FIFO: cheap, and an attacker cannot keep an
/// entry alive by touching it).
pub struct BoundedMap<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Insertion order, for eviction; an element whose `seq` no longer matches the map's slot
    /// is a leftover of a removed or replaced entry.
    order: VecDeque<(K, u64)>,
    seq: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<K: Hash + Eq + Copy, V> BoundedMap<K, V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|slot| &slot.value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let gone = self.map.remove(key)?;
        self.bytes -= gone.bytes;
        Some(gone.value)
    }

    /// Stores `value`, counted as `bytes`, replacing any value under `key` and evicting the
    /// oldest entries until both bounds hold.
    pub fn insert(&mut self, key: K, value: V, bytes: usize) {
        self.remove(&key);
        while self.map.len() >= self.max_entries || self.bytes + bytes > self.max_bytes {
            let Some((oldest, seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&oldest).is_some_and(|slot| slot.seq == seq) {
                self.remove(&oldest);
            }
        }
        self.seq += 1;
        let seq = self.seq;
        self.order.push_back((key, seq));
        // Leftovers of replaced or removed entries must not make the queue grow without bound.
        if self.order.len() > 2 * self.max_entries {
            let Self { map, order, .. } = self;
            order.retain(|(k, s)| map.get(k).is_some_and(|slot| slot.seq == *s));
        }
        self.bytes += bytes;
        self.map.insert(key, Slot { value, seq, bytes });
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes counted for the entries, at most `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bounds_hold_and_the_oldest_goes_first() {
        let mut m = BoundedMap::new(3, 100);
        for k in 0..5u8 {
            m.insert(k, k, 10);
        }
        assert_eq!(m.len(), 3);
        assert!(m.get(&0).is_none() && m.get(&1).is_none());
        assert_eq!(m.get(&4), Some(&4));
        m.insert(9, 9, 95);
        assert_eq!(m.len(), 1, "the byte bound evicts as many as it takes");
        assert_eq!(m.bytes(), 95);
    }

    #[test]
    fn replacing_and_removing_keep_the_count_right() {
        let mut m = BoundedMap::new(2, 1_000);
        m.insert(1u8, "a", 10);
        m.insert(1, "b", 20);
        assert_eq!((m.len(), m.bytes()), (1, 20));
        assert_eq!(m.remove(&1), Some("b"));
        assert_eq!((m.len(), m.bytes()), (0, 0));
        // Many replacements of one key: the order queue is compacted, not grown.
        for i in 0..10_000 {
            m.insert(7, "x", i % 5);
        }
        assert!(m.order.len() <= 4);
    }
}

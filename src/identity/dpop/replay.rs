//! Whether a DPoP proof's `jti` was seen before within its window (RFC 9449 §11.1).
//!
//! With the `DPOP_REPLAY` Durable Object bound (`io::ReplayGuard`), the deployment's guard is
//! asked, and a proof used in one isolate is refused in every other. Without it, this isolate
//! remembers the proofs it accepted (`ReplayMemory`), which refuses a replay only where the
//! first use was served: a replay that reaches another isolate (another data center, or the
//! same one after the isolate was replaced) passes, as long as the proof is within its window.
//! The memory is bounded; under a flood of fresh proofs it forgets the oldest first, so an
//! isolate gives no guarantee either, only a best effort.

use std::cell::RefCell;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::AcceptedProof;
use crate::io::{Platform, ReplayGuard, ReplayGuardError};
use crate::support::bounded::BoundedMap;

/// Proofs remembered per isolate: 60 s of 300 proofs a second.
const MAX_ENTRIES: usize = 20_000;
/// Key, expiry and the map's own bookkeeping, roughly.
const ENTRY_BYTES: usize = 64;

/// One per isolate: the replay keys of the proofs it accepted, each until its window ends.
pub struct ReplayMemory {
    seen: RefCell<BoundedMap<[u8; 32], u64>>,
}

impl Default for ReplayMemory {
    fn default() -> Self {
        Self {
            seen: RefCell::new(BoundedMap::new(MAX_ENTRIES, MAX_ENTRIES * ENTRY_BYTES)),
        }
    }
}

impl ReplayMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// `true` the first time `proof` is offered while its window lasts; it is then remembered
    /// until the window ends.
    pub fn first_use(&self, proof: &AcceptedProof, now_secs: u64) -> bool {
        let mut seen = self.seen.borrow_mut();
        if seen
            .get(&proof.replay_key)
            .is_some_and(|&until| until >= now_secs)
        {
            return false;
        }
        seen.insert(proof.replay_key, proof.keep_until_secs, ENTRY_BYTES);
        true
    }

    pub fn len(&self) -> usize {
        self.seen.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `Ok(true)` when `proof` is used for the first time: the deployment's guard when bound (an
/// unreachable guard is an error, never a pass), else this isolate's memory.
pub async fn first_use<P: Platform>(
    memory: &ReplayMemory,
    proof: &AcceptedProof,
    now_secs: u64,
    p: &P,
) -> Result<bool, ReplayGuardError> {
    let guard = p.replay_guard();
    if !guard.is_bound() {
        return Ok(memory.first_use(proof, now_secs));
    }
    let key = URL_SAFE_NO_PAD.encode(proof.replay_key);
    guard
        .first_use(&key, proof.keep_until_secs.saturating_mul(1000))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_until_its_window_ends() {
        let memory = ReplayMemory::new();
        let proof = AcceptedProof {
            replay_key: [7; 32],
            keep_until_secs: 1_000,
        };
        assert!(memory.first_use(&proof, 900));
        assert!(!memory.first_use(&proof, 950));
        assert!(!memory.first_use(&proof, 1_000));
        // Past its window the proof is refused as too old before it gets here; the slot is
        // reused rather than kept.
        assert!(memory.first_use(&proof, 1_001));
        assert_eq!(memory.len(), 1);
    }
}

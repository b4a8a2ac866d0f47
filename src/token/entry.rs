//! One cached access token: when it was obtained, when it expires, when it may no longer be
//! sent, and how it is written to KV.

use serde_json::{Map, Value};

use super::seal::Sealer;

/// Longest safety margin before expiry: a token is never sent in its last minute, so that it
/// cannot expire in flight or against a origin whose clock runs ahead.
const MAX_MARGIN_MS: u64 = 60_000;

/// Shortest time a KV entry may live (Workers KV refuses a shorter `expirationTtl`).
pub const KV_MIN_TTL_SECS: u64 = 60;

/// As JSON (KV values, coordinator answers): `{"t": token, "o": obtained_at_ms, "e":
/// expires_at_ms}`. Read and written by hand rather than derived: a derived `Deserialize` is one
/// more serde_json deserializer in the wasm (issue 13: bytes), and the JSON `Value` reader is
/// there anyway.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedToken {
    access_token: String,
    obtained_at_ms: u64,
    expires_at_ms: u64,
}

impl std::fmt::Debug for CachedToken {
    // The token itself never appears in debug output, so never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("obtained_at_ms", &self.obtained_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl CachedToken {
    pub fn new(access_token: String, obtained_at_ms: u64, expires_at_ms: u64) -> Self {
        Self {
            access_token,
            obtained_at_ms,
            expires_at_ms: expires_at_ms.max(obtained_at_ms),
        }
    }

    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    pub fn obtained_at_ms(&self) -> u64 {
        self.obtained_at_ms
    }

    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }

    /// The safety margin: a tenth of the lifetime, at most a minute, so that short-lived tokens
    /// are still usable for most of their life.
    pub fn margin_ms(&self) -> u64 {
        ((self.expires_at_ms - self.obtained_at_ms) / 10).min(MAX_MARGIN_MS)
    }

    /// The last moment (exclusive) at which this token may be sent.
    pub fn usable_until_ms(&self) -> u64 {
        self.expires_at_ms - self.margin_ms()
    }

    pub fn is_usable(&self, now_ms: u64) -> bool {
        now_ms < self.usable_until_ms()
    }

    /// How long KV should keep it: until it stops being usable, but never under KV's minimum
    /// (an entry that outlives its use is harmless: readers check `is_usable`).
    pub fn kv_ttl_secs(&self, now_ms: u64) -> u64 {
        (self.usable_until_ms().saturating_sub(now_ms) / 1000).max(KV_MIN_TTL_SECS)
    }

    /// `{"t":…,"o":…,"e":…}`, the members in that order.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"t":{},"o":{},"e":{}}}"#,
            Value::from(self.access_token.as_str()),
            self.obtained_at_ms,
            self.expires_at_ms
        )
    }

    /// The token of a JSON object with the three members (other members ignored), as they are,
    /// so that callers can refuse an entry whose expiry precedes its issue.
    pub fn from_json_object(object: &Map<String, Value>) -> Option<Self> {
        Some(Self {
            access_token: object.get("t")?.as_str()?.to_owned(),
            obtained_at_ms: object.get("o")?.as_u64()?,
            expires_at_ms: object.get("e")?.as_u64()?,
        })
    }

    /// The KV value: JSON, sealed when a key is configured. `aad` binds a sealed value to its
    /// KV key so that it cannot be replayed under another key.
    pub fn to_kv(&self, sealer: Option<&Sealer>, aad: &str) -> Option<String> {
        let json = self.to_json();
        match sealer {
            None => Some(json),
            Some(s) => s.seal(json.as_bytes(), aad.as_bytes()),
        }
    }

    /// Reads a KV value back. Anything that does not decode (another format, tampering, a value
    /// sealed with a rotated key, a clear value when sealing is on) is a miss, not an error.
    pub fn from_kv(value: &str, sealer: Option<&Sealer>, aad: &str) -> Option<Self> {
        let object: Map<String, Value> = match sealer {
            None => serde_json::from_slice(value.as_bytes()).ok()?,
            Some(s) => serde_json::from_slice(&s.open(value, aad.as_bytes())?).ok()?,
        };
        let token = Self::from_json_object(&object)?;
        (!token.access_token.is_empty() && token.expires_at_ms >= token.obtained_at_ms)
            .then_some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_tenth_of_the_life_capped_at_a_minute() {
        let long = CachedToken::new("a".into(), 0, 28_799_000);
        assert_eq!(long.margin_ms(), 60_000);
        assert!(long.is_usable(28_739_000 - 1));
        assert!(!long.is_usable(28_739_000));
        let short = CachedToken::new("a".into(), 0, 30_000);
        assert_eq!(short.margin_ms(), 3_000);
        assert!(short.is_usable(26_999));
        assert!(!short.is_usable(27_000));
    }

    #[test]
    fn kv_ttl_never_goes_under_the_kv_minimum() {
        let t = CachedToken::new("a".into(), 0, 30_000);
        assert_eq!(t.kv_ttl_secs(0), 60);
        let long = CachedToken::new("a".into(), 0, 3_600_000);
        assert_eq!(long.kv_ttl_secs(0), 3_540);
    }

    #[test]
    fn kv_round_trip_in_clear_and_sealed() {
        let t = CachedToken::new("tok".into(), 1, 2);
        let clear = t.to_kv(None, "k").unwrap();
        assert_eq!(CachedToken::from_kv(&clear, None, "k"), Some(t.clone()));
        let sealer = Sealer::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let sealed = t.to_kv(Some(&sealer), "k").unwrap();
        assert!(!sealed.contains("tok"));
        assert_eq!(
            CachedToken::from_kv(&sealed, Some(&sealer), "k"),
            Some(t.clone())
        );
        assert_eq!(
            CachedToken::from_kv(&sealed, Some(&sealer), "other-key"),
            None
        );
        assert_eq!(CachedToken::from_kv(&clear, Some(&sealer), "k"), None);
        assert_eq!(CachedToken::from_kv("{not json", None, "k"), None);
    }

    #[test]
    fn debug_output_hides_the_token() {
        let t = CachedToken::new("very-secret-token".into(), 1, 2);
        assert!(!format!("{t:?}").contains("very-secret-token"));
    }
}

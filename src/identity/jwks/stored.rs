//! A fetched key set as kept in KV, so that a new isolate starts from another isolate's fetch
//! instead of calling the identity provider. Key sets are public, so they are stored in clear.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The KV key of the set fetched from `url`: a digest, so nothing the URL's query might carry
/// ends up in a key listing.
pub fn kv_key(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("jwks:v1:{hex}")
}

/// A key set document and the instants that bound its use. As JSON
/// `{"fresh_until_ms":…,"jwks":…}`, written and read by hand rather than derived: one serde
/// deserializer fewer in the wasm (issue 13), the bytes those derives wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJwks {
    /// Unix milliseconds until which the set is fresh.
    pub fresh_until_ms: u64,
    /// The JWKS document as the provider sent it.
    pub jwks: String,
}

impl StoredJwks {
    pub fn to_kv(&self) -> String {
        format!(
            r#"{{"fresh_until_ms":{},"jwks":{}}}"#,
            self.fresh_until_ms,
            Value::from(self.jwks.as_str())
        )
    }

    /// `None` for anything that is not a value this version wrote: a miss, not an error.
    pub fn from_kv(value: &str) -> Option<StoredJwks> {
        let o: Map<String, Value> = serde_json::from_slice(value.as_bytes()).ok()?;
        Some(StoredJwks {
            fresh_until_ms: o.get("fresh_until_ms")?.as_u64()?,
            jwks: o.get("jwks")?.as_str()?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_garbage_is_a_miss() {
        let s = StoredJwks {
            fresh_until_ms: 5,
            jwks: r#"{"keys":[]}"#.into(),
        };
        assert_eq!(StoredJwks::from_kv(&s.to_kv()), Some(s.clone()));
        // The bytes the derived Serialize wrote, so that versions share their KV entries.
        assert_eq!(s.to_kv(), r#"{"fresh_until_ms":5,"jwks":"{\"keys\":[]}"}"#);
        assert_eq!(
            StoredJwks::from_kv(r#"{"fresh_until_ms":"5","jwks":"x"}"#),
            None
        );
        assert_eq!(
            StoredJwks::from_kv(r#"{"fresh_until_ms":5,"jwks":{}}"#),
            None
        );
        assert_eq!(StoredJwks::from_kv("gcm1.xyz"), None);
        assert_eq!(StoredJwks::from_kv("{}"), None);
    }

    #[test]
    fn the_key_hides_the_url() {
        let key = kv_key("https://idp.example/jwks?secret=abc");
        assert!(key.starts_with("jwks:v1:"));
        assert!(!key.contains("idp") && !key.contains("abc"));
        assert_eq!(key, kv_key("https://idp.example/jwks?secret=abc"));
    }
}

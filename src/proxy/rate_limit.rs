//! The rate-limit phase: which bucket a request is counted in, and the count.
//!
//! A route's `rate_limit` counts by the caller's address (`ip`), or by a value of the verified
//! identity (`sub`, `client_id`, a claim path). An identity's value is qualified by the issuer
//! that vouched for it: `alice` of one provider and `alice` of another are two people, and so
//! two buckets. A request without the value (anonymous on an `optional` or `report` route, a
//! token without the claim, a preflight) is counted under its address, never in one bucket that
//! every such request would share (where a few callers would throttle all the others).
//!
//! When even the address is missing, the request is counted in the one `no address` bucket.
//! Cloudflare's edge sets `cf-connecting-ip` on every request from the Internet (and replaces
//! a caller's copy), so only a request that did not come through the edge lacks it (a service
//! binding, a subrequest of another Worker, a local `wrangler dev`): those are counted together,
//! as one caller, so that the limit still holds; the log line says `rate_key: "no_address"`.
//!
//! Keys stay short and never hold a value in clear: an identity's bucket is a digest of the
//! issuer and value (a `sub` may be an e-mail address), an address is its canonical text.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::config::setting::ConfigError;
use crate::edge::headers::CONNECTING_IP;
use crate::error::GatewayError;
use crate::identity::claims::Claims;
use crate::io::{Fields, Platform, RateLimitError, RateLimiters};
use crate::proxy::log::RequestLog;
use crate::proxy::route::{RateKey, RateLimit, Route};

/// The bucket of requests without the key's value and without an address.
const NO_ADDRESS: &str = "ip:none";

/// Where a request is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// What the rate-limiting binding is asked to count under.
    pub key: String,
    pub by: CountedBy,
}

/// What a request was counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountedBy {
    /// The value the route's key names (an identity's, or the address for `ip`).
    Key,
    /// The caller's address, the request having no value for the key.
    Address,
    /// Nothing: neither the value nor an address (see the module's note).
    NoAddress,
}

impl CountedBy {
    /// The log line's `rate_key`: absent when counted by the key itself.
    pub fn log(self) -> Option<&'static str> {
        match self {
            Self::Key => None,
            Self::Address => Some("ip"),
            Self::NoAddress => Some("no_address"),
        }
    }
}

/// The bucket for a request: by `key`'s value in `identity` (the verified caller's claims,
/// `None` without one), else by `address` (`cf-connecting-ip`, read only when needed).
pub fn bucket(
    key: &RateKey,
    identity: Option<&Claims>,
    address: impl FnOnce() -> Option<String>,
) -> Bucket {
    let (tag, path) = match key {
        RateKey::Ip => return by_address(address(), CountedBy::Key),
        RateKey::Sub => ("sub", "sub"),
        RateKey::ClientId => ("client_id", "client_id"),
        RateKey::Claim(path) => ("claim", path.as_str()),
    };
    let value = identity.and_then(|claims| Some((claims, value_text(claims.get(path)?)?)));
    match value {
        Some((claims, value)) => {
            // Issuer, claim path and value, each preceded by its length: no choice of values
            // can move the boundaries and make two identities one bucket.
            let issuer = claims.str("iss").unwrap_or("");
            let mut digest = Sha256::new();
            for part in [path, issuer, value.as_str()] {
                digest.update(format!("{}:", part.len()));
                digest.update(part);
            }
            Bucket {
                key: format!("{tag}:{}", URL_SAFE_NO_PAD.encode(digest.finalize())),
                by: CountedBy::Key,
            }
        }
        None => by_address(address(), CountedBy::Address),
    }
}

/// An address in its canonical text (`2001:db8::1` however it was spelled); anything that is
/// not an address (never the case behind Cloudflare's edge) by its digest, so that it can
/// never collide with one.
fn by_address(address: Option<String>, by: CountedBy) -> Bucket {
    let Some(raw) = address else {
        return Bucket {
            key: NO_ADDRESS.to_string(),
            by: CountedBy::NoAddress,
        };
    };
    let key = match raw.trim().parse::<IpAddr>() {
        Ok(ip) => format!("ip:{ip}"),
        Err(_) => format!("ip:{}", URL_SAFE_NO_PAD.encode(Sha256::digest(raw))),
    };
    Bucket { key, by }
}

/// A claim as a key's value: a string as is, a number or boolean as its JSON text; anything
/// else (an object, an array, `null`) is no value.
fn value_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Some(v.to_string()),
        _ => None,
    }
}

/// A route's rate limit, split by when it is counted: an `ip` limit before authentication (so
/// floods of bad tokens are throttled), any other after it, on the verified identity.
pub struct Limits<'a> {
    by_address: Option<&'a RateLimit>,
    by_identity: Option<&'a RateLimit>,
}

impl<'a> Limits<'a> {
    pub fn of(route: &'a Route) -> Self {
        match &route.rate_limit {
            Some(limit) if limit.by_address() => Self {
                by_address: Some(limit),
                by_identity: None,
            },
            limit => Self {
                by_address: None,
                by_identity: limit.as_ref(),
            },
        }
    }

    /// The phase before authentication: an `ip` limit, if the route has one.
    pub async fn by_address<P: Platform, F: Fields>(
        &self,
        svc: &P,
        route: &Route,
        caller: &F,
        log: &mut RequestLog,
    ) -> Result<(), GatewayError> {
        match self.by_address {
            Some(limit) => count(svc, route, limit, None, caller, log).await,
            None => Ok(()),
        }
    }

    /// The phase after authentication: an identity's limit, on its claims; a request without
    /// an identity (a preflight, an `optional` route without one) is counted by its address.
    pub async fn by_identity<P: Platform, F: Fields>(
        &self,
        svc: &P,
        route: &Route,
        identity: Option<&Claims>,
        caller: &F,
        log: &mut RequestLog,
    ) -> Result<(), GatewayError> {
        match self.by_identity {
            Some(limit) => count(svc, route, limit, identity, caller, log).await,
            None => Ok(()),
        }
    }
}

/// Counts the request against `limit`: `Ok` to go on, 429 over the limit, 500 naming
/// `ROUTES` when the binding is not bound. A limiter that fails lets the request through (it
/// costs protection, not availability) and says so in the log line.
pub async fn count<P: Platform, F: Fields>(
    svc: &P,
    route: &Route,
    limit: &RateLimit,
    identity: Option<&Claims>,
    caller: &F,
    log: &mut RequestLog,
) -> Result<(), GatewayError> {
    let bucket = bucket(&limit.key, identity, || {
        caller
            .read(&[CONNECTING_IP])
            .get(CONNECTING_IP)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    log.rate_key = bucket.by.log();
    match svc.rate_limiters().allow(&limit.binding, &bucket.key).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            log.rate_limit = Some("limited");
            Err(GatewayError::RateLimited)
        }
        // Found at configuration time when the platform lists its bindings (the Worker does);
        // this is for platforms that cannot.
        Err(RateLimitError::NotBound) => Err(GatewayError::Config(
            ConfigError::new(
                "ROUTES",
                format!(
                    "route {}: rate_limit.binding {} is not a bound rate-limiting binding",
                    route.configured, limit.binding
                ),
            )
            .into(),
        )),
        Err(RateLimitError::Failed(_)) => {
            log.rate_limit = Some("error");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn claims(v: Value) -> Claims {
        let text = v.to_string();
        match v {
            Value::Object(m) => Claims::new(m, text.len()),
            _ => unreachable!(),
        }
    }

    fn key_of(key: &RateKey, c: Value) -> Bucket {
        bucket(key, Some(&claims(c)), || Some("203.0.113.1".into()))
    }

    #[test]
    fn identities_are_qualified_by_their_issuer() {
        let a = key_of(&RateKey::Sub, json!({"iss": "https://a/", "sub": "alice"}));
        let b = key_of(&RateKey::Sub, json!({"iss": "https://b/", "sub": "alice"}));
        let again = key_of(&RateKey::Sub, json!({"iss": "https://a/", "sub": "alice"}));
        assert_ne!(a.key, b.key);
        assert_eq!(a, again);
        assert_eq!(a.by, CountedBy::Key);
        assert!(
            a.key.starts_with("sub:") && !a.key.contains("alice"),
            "{}",
            a.key
        );
        // The boundary between issuer and value cannot be moved.
        let shifted = key_of(&RateKey::Sub, json!({"iss": "https://a", "sub": "/alice"}));
        assert_ne!(a.key, shifted.key);
        // Nor between claim path and value, across two routes sharing a binding.
        let org = key_of(
            &RateKey::Claim("org".into()),
            json!({"iss": "i", "org": "x"}),
        );
        let or = key_of(&RateKey::Claim("or".into()), json!({"iss": "i", "or": "x"}));
        assert_ne!(org.key, or.key);
        // No issuer at all is one more issuer, not a wildcard.
        let none = key_of(&RateKey::Sub, json!({"sub": "alice"}));
        assert_ne!(none.key, a.key);
    }

    #[test]
    fn keys_are_short_whatever_the_values() {
        let long = "x".repeat(5000);
        let b = key_of(
            &RateKey::Claim("a.b".into()),
            json!({"iss": long, "a": {"b": long}}),
        );
        assert!(b.key.len() <= 64, "{}", b.key);
    }

    #[test]
    fn without_the_value_the_address_counts_and_without_it_one_bucket() {
        for c in [
            json!({"iss": "i"}),
            json!({"iss": "i", "sub": null}),
            json!({"iss": "i", "sub": {"id": 1}}),
            json!({"iss": "i", "sub": ["a"]}),
        ] {
            let b = key_of(&RateKey::Sub, c);
            assert_eq!(
                (b.key.as_str(), b.by),
                ("ip:203.0.113.1", CountedBy::Address)
            );
        }
        let anonymous = bucket(&RateKey::ClientId, None, || Some(" 2001:DB8:0::1 ".into()));
        assert_eq!(
            (anonymous.key.as_str(), anonymous.by),
            ("ip:2001:db8::1", CountedBy::Address)
        );
        let nothing = bucket(&RateKey::Sub, None, || None);
        assert_eq!(
            (nothing.key.as_str(), nothing.by.log()),
            (NO_ADDRESS, Some("no_address"))
        );
        let ip = bucket(&RateKey::Ip, None, || Some("198.51.100.7".into()));
        assert_eq!((ip.key.as_str(), ip.by.log()), ("ip:198.51.100.7", None));
        let odd = bucket(&RateKey::Ip, None, || Some("ip:none".into()));
        assert_ne!(odd.key, NO_ADDRESS);
        assert!(!odd.key.contains("none"));
    }

    #[test]
    fn numbers_and_booleans_count_as_their_json_text() {
        let n = key_of(
            &RateKey::Claim("tier".into()),
            json!({"iss": "i", "tier": 42}),
        );
        let s = key_of(
            &RateKey::Claim("tier".into()),
            json!({"iss": "i", "tier": "42"}),
        );
        assert_eq!(n.by, CountedBy::Key);
        assert_eq!(n.key, s.key, "42 and \"42\" are one organisation's tier");
    }
}

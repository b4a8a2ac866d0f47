//! `JWT_PROVIDERS`: several identity providers, each with its own issuer, key sources
//! (`jwks_url`, inline `jwks`), audiences, algorithms and lifetime limit, parsed once per
//! isolate. A token is matched to the one provider whose `issuer` equals its `iss` — read from
//! the unverified payload only to choose the keys, trusted only once that provider's keys have
//! verified the signature — and is checked with that provider's keys alone.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::jwt::{JwtError, JwtSettings, KeySet, MAX_TOKEN_BYTES};
use crate::setting::{endpoint_url, optional, ConfigError, Lookup};

const SETTING: &str = "JWT_PROVIDERS";

/// The flat single-provider settings that `JWT_PROVIDERS` replaces; setting both would leave
/// it unclear which rules apply, so that is refused.
const REPLACED: [&str; 5] = [
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWKS_URL",
    "JWT_JWKS",
    "JWT_HMAC_SECRET",
];

/// One identity provider, checked once.
#[derive(Debug, Clone)]
pub struct Provider {
    /// `issuer`: the exact `iss` of its tokens.
    pub issuer: String,
    /// `audiences`: when non-empty, `aud` must contain one (a route's `audiences` replace it).
    pub audiences: Vec<String>,
    /// `max_lifetime_seconds`: `exp − iat` at most this (a route's own value replaces it).
    pub max_lifetime_secs: Option<u64>,
    /// Its algorithms and key sources, with the shared leeway, maximum age and cookie; no
    /// issuer or audience (those are checked per request, with the route).
    pub settings: JwtSettings,
}

/// The providers, in the order configured; a provider's position is its id (one key set cache
/// and one share of the verified-token memory each).
#[derive(Debug, Clone)]
pub struct Providers {
    list: Vec<Provider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    issuer: String,
    jwks_url: Option<String>,
    jwks: Option<Value>,
    audiences: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    max_lifetime_seconds: Option<u64>,
}

impl Providers {
    /// `None` when `JWT_PROVIDERS` is unset. `shared`: `JwtSettings::shared`.
    pub fn from_settings(
        get: Lookup<'_>,
        shared: &JwtSettings,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(json) = optional(get, SETTING) else {
            return Ok(None);
        };
        if let Some(flat) = REPLACED.into_iter().find(|n| optional(get, n).is_some()) {
            return Err(ConfigError::new(
                SETTING,
                format!("replaces {flat}: unset {flat}, or unset JWT_PROVIDERS"),
            ));
        }
        Self::parse(&json, shared).map(Some)
    }

    /// Parses the JSON array. Errors name the entry and field, never echo the document.
    pub fn parse(json: &str, shared: &JwtSettings) -> Result<Self, ConfigError> {
        let raw: Vec<RawProvider> = serde_json::from_slice(json.as_bytes()).map_err(|e| {
            ConfigError::new(
                SETTING,
                format!(
                    "is not a JSON array of providers ({{issuer, jwks_url, jwks, audiences, algorithms, max_lifetime_seconds}}) of the right types: line {} column {}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if raw.is_empty() {
            return Err(ConfigError::new(SETTING, "is an empty list"));
        }
        let mut list: Vec<Provider> = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let at = |what: &str| ConfigError::new(SETTING, format!("provider {i}: {what}"));
            if r.issuer.trim().is_empty() || r.issuer.trim() != r.issuer {
                return Err(at(
                    "issuer must be a non-empty string without surrounding spaces",
                ));
            }
            if list.iter().any(|p| p.issuer == r.issuer) {
                return Err(at("issuer is named by an earlier provider too"));
            }
            if r.jwks_url.is_none() && r.jwks.is_none() {
                return Err(at("needs a key source: jwks_url, jwks, or both"));
            }
            let jwks_url = r
                .jwks_url
                .map(|u| endpoint_url(&u).map_err(|why| at(&format!("jwks_url {why}"))))
                .transpose()?;
            let inline = match r.jwks {
                None => None,
                Some(doc @ Value::Object(_)) => Some(
                    KeySet::from_jwks_json(&doc.to_string())
                        .map_err(|e| at(&format!("jwks: {e}")))?,
                ),
                Some(_) => return Err(at("jwks must be a JWKS object ({\"keys\": [...]})")),
            };
            let audiences = match r.audiences {
                None => Vec::new(),
                Some(a) if a.is_empty() || a.iter().any(|s| s.trim().is_empty()) => {
                    return Err(at("audiences must list non-empty strings"))
                }
                Some(a) => a,
            };
            let max_lifetime_secs = match r.max_lifetime_seconds {
                None => None,
                Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => Some(n),
                Some(_) => return Err(at("max_lifetime_seconds must be from 1 to 4294967295")),
            };
            let settings =
                JwtSettings::for_provider(shared, r.algorithms.as_deref(), jwks_url, inline)
                    .map_err(|why| at(&why))?;
            list.push(Provider {
                issuer: r.issuer,
                audiences,
                max_lifetime_secs,
                settings,
            });
        }
        Ok(Self { list })
    }

    pub fn list(&self) -> &[Provider] {
        &self.list
    }

    /// The provider whose issuer is exactly `iss`, with its id.
    pub fn find(&self, iss: &str) -> Option<(usize, &Provider)> {
        self.list.iter().enumerate().find(|(_, p)| p.issuer == iss)
    }

    /// The provider a token claims to come from, by its unverified `iss`: only which keys to
    /// try. `WrongIssuer` for an `iss` no provider has.
    pub fn for_token(&self, token: &str) -> Result<(usize, &Provider), JwtError> {
        let iss = peek_issuer(token)?;
        self.find(&iss).ok_or(JwtError::WrongIssuer)
    }
}

/// The payload's `iss`, read before any verification: it picks the provider whose keys will
/// check the token, nothing more. Size first, as `validate` does.
pub fn peek_issuer(token: &str) -> Result<String, JwtError> {
    #[derive(Deserialize)]
    struct Peek {
        iss: Option<Value>,
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let payload = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)?;
    let peek: Peek = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    match peek.iss {
        None => Err(JwtError::MissingClaim("iss")),
        Some(Value::String(iss)) => Ok(iss),
        Some(_) => Err(JwtError::InvalidClaim("iss")),
    }
}

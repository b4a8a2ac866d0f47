//! `JWT_PROVIDERS`: several identity providers, each with its own issuer, key sources
//! (`jwks_url`, inline `jwks`, or neither: the issuer's discovery document), audiences,
//! algorithms, token types, leeway and lifetime limit, parsed once per isolate. A token is matched to the one provider whose `issuer` equals its `iss` — read from
//! the unverified payload only to choose the keys, trusted only once that provider's keys have
//! verified the signature — and is checked with that provider's keys alone.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::config::entries::Entry;
use crate::config::setting::{endpoint_url, optional, ConfigError, ConfigErrors, Lookup, Problems};
use crate::identity::jwt::{JwtError, JwtSettings, KeySet, TokenTypes, MAX_TOKEN_BYTES};
use crate::identity::revocation::rule::IntrospectRule;

const SETTING: &str = "JWT_PROVIDERS";
/// As `JWT_LEEWAY_SECONDS`: beyond an hour it is no longer clock skew.
const MAX_LEEWAY_SECS: u64 = 3_600;

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
    /// `introspect`: its JWTs are also asked about at an RFC 7662 endpoint.
    pub introspect: Option<IntrospectRule>,
}

/// The providers, in the order configured; a provider's position is its id (one key set cache
/// and one share of the verified-token memory each).
#[derive(Debug, Clone)]
pub struct Providers {
    list: Vec<Provider>,
}

/// A provider's fields.
const FIELDS: [&str; 9] = [
    "issuer",
    "jwks_url",
    "jwks",
    "audiences",
    "algorithms",
    "max_lifetime_seconds",
    "types",
    "leeway_seconds",
    "introspect",
];

impl Providers {
    /// `None` when `JWT_PROVIDERS` is unset. `shared`: `JwtSettings::shared`, `None` when it
    /// is broken (the caller reports why): then the providers' algorithms are not checked.
    pub fn from_settings(
        get: Lookup<'_>,
        shared: Option<&JwtSettings>,
    ) -> Result<Option<Self>, ConfigErrors> {
        let Some(json) = optional(get, SETTING) else {
            return Ok(None);
        };
        let mut p = Problems::default();
        for flat in REPLACED.into_iter().filter(|n| optional(get, n).is_some()) {
            p.push(ConfigError::new(
                SETTING,
                format!("replaces {flat}: unset {flat}, or unset JWT_PROVIDERS"),
            ));
        }
        let providers = p.take_all(Self::read(&json, shared));
        p.finish(|| Some(Some(providers?)))
    }

    /// Parses the JSON array against `shared`. Every problem of every entry, each naming the
    /// entry and field, never echoing the document.
    pub fn parse(json: &str, shared: &JwtSettings) -> Result<Self, ConfigErrors> {
        Self::read(json, Some(shared))
    }

    fn read(json: &str, shared: Option<&JwtSettings>) -> Result<Self, ConfigErrors> {
        let entries = crate::config::entries::array(SETTING, json, "providers")?;
        if entries.is_empty() {
            return Err(ConfigError::new(SETTING, "is an empty list").into());
        }
        let mut p = Problems::default();
        let mut list: Vec<Option<Provider>> = Vec::with_capacity(entries.len());
        let mut issuers: Vec<String> = Vec::new();
        for (i, map) in entries.iter().enumerate() {
            let e = Entry::new(SETTING, i, map);
            let provider = p.take_all(Provider::from_entry(&e, shared, &issuers));
            if let Some(issuer) = map.get("issuer").and_then(Value::as_str) {
                issuers.push(issuer.to_string());
            }
            list.push(provider);
        }
        p.finish(|| {
            Some(Self {
                list: list.into_iter().collect::<Option<_>>()?,
            })
        })
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

impl Provider {
    /// One entry; `earlier`: the issuers of the entries before it. `shared` is `None` when the
    /// shared settings are broken: then the algorithms are not checked.
    fn from_entry(
        e: &Entry<'_>,
        shared: Option<&JwtSettings>,
        earlier: &[String],
    ) -> Result<Self, ConfigErrors> {
        let mut p = Problems::default();
        for problem in e.unknown_fields(&FIELDS) {
            p.push(problem);
        }
        let issuer = p.take(match e.string("issuer") {
            Ok(None) => Err(e.problem("has no issuer: every provider needs one")),
            Ok(Some(iss)) if iss.trim().is_empty() || iss.trim() != iss => Err(e.field_problem(
                "issuer",
                "must be a non-empty string without surrounding spaces",
            )),
            Ok(Some(iss)) if earlier.iter().any(|i| i == iss) => {
                Err(e.field_problem("issuer", "is named by an earlier provider too"))
            }
            Ok(Some(iss)) => Ok(iss.to_string()),
            Err(problem) => Err(problem),
        });
        let jwks_url = p.take(match e.string("jwks_url") {
            Ok(Some(raw)) => endpoint_url(raw)
                .map(Some)
                .map_err(|why| e.field_problem("jwks_url", why)),
            Ok(None) => Ok(None),
            Err(problem) => Err(problem),
        });
        let inline = p.take(match e.get("jwks") {
            None => Ok(None),
            Some(doc @ Value::Object(_)) => KeySet::from_jwks_json(&doc.to_string())
                .map(Some)
                .map_err(|err| e.field_problem("jwks", err.to_string())),
            Some(_) => Err(e.field_problem("jwks", "must be a JWKS object ({\"keys\": [...]})")),
        });
        // No key source: the issuer's discovery document names the key set's URL.
        let discovers = e.get("jwks_url").is_none() && e.get("jwks").is_none();
        let discovery = match (&issuer, discovers) {
            (Some(iss), true) => p
                .take(
                    crate::support::http_url::well_known_urls(iss)
                        .map(|_| Some(iss.clone()))
                        .map_err(|why| {
                            e.field_problem("issuer", format!("{why} (or give jwks_url or jwks)"))
                        }),
                )
                .flatten(),
            _ => None,
        };
        let audiences = p.take(match e.strings("audiences", "audience strings") {
            Ok(None) => Ok(Vec::new()),
            Ok(Some(a)) if a.is_empty() || a.iter().any(|s| s.trim().is_empty()) => {
                Err(e.field_problem("audiences", "must list non-empty strings"))
            }
            Ok(Some(a)) => Ok(a),
            Err(problem) => Err(problem),
        });
        let max_lifetime_secs = p.take(match e.whole_number("max_lifetime_seconds") {
            Ok(Some(n)) if !(1..=u64::from(u32::MAX)).contains(&n) => {
                Err(e.field_problem("max_lifetime_seconds", "must be from 1 to 4294967295"))
            }
            other => other,
        });
        let algorithms = p.take(e.strings("algorithms", "algorithm names"));
        let types = p.take(match e.strings("types", "type names") {
            Ok(Some(list)) => TokenTypes::parse(list.iter().map(String::as_str))
                .map(Some)
                .map_err(|why| e.field_problem("types", why)),
            Ok(None) => Ok(None),
            Err(problem) => Err(problem),
        });
        let leeway_secs = p.take(match e.whole_number("leeway_seconds") {
            Ok(Some(n)) if n > MAX_LEEWAY_SECS => {
                Err(e.field_problem("leeway_seconds", "must be from 0 to 3600"))
            }
            other => other,
        });
        let introspect = p.take_all(IntrospectRule::from_entry(e, discovers));
        let has_source = !discovers || discovery.is_some();
        let settings = match (shared, jwks_url, inline, algorithms) {
            (Some(shared), Some(url), Some(keys), Some(algs)) if has_source => p.take(
                JwtSettings::for_provider(shared, algs.as_deref(), url, keys, discovery).map_err(
                    |(field, why)| match field {
                        Some(field) => e.field_problem(field, why),
                        None => e.problem(why),
                    },
                ),
            ),
            _ => None,
        };
        // The provider's own `types` and `leeway_seconds` replace the shared ones.
        let settings = match (settings, types, leeway_secs) {
            (Some(mut settings), Some(types), Some(leeway)) => {
                if types.is_some() {
                    settings.types = types;
                }
                if let Some(leeway) = leeway {
                    settings.leeway_secs = leeway;
                }
                Some(settings)
            }
            _ => None,
        };
        p.finish(|| {
            Some(Provider {
                issuer: issuer?,
                audiences: audiences?,
                max_lifetime_secs: max_lifetime_secs?,
                settings: settings?,
                introspect: introspect?,
            })
        })
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

//! A provider's `introspect` (`{"url": "...", "max_age_seconds": 60}`), read once from
//! `JWT_PROVIDERS`: every problem named with the provider and field, never the value.

use crate::config::entries::{unknown_fields, Entry};
use crate::config::setting::{endpoint_url, ConfigErrors, Problems};

/// `introspect.max_age_seconds` when not given.
pub const DEFAULT_MAX_AGE_SECS: u64 = 60;
/// Largest `max_age_seconds`: beyond an hour a revoked token would live on too long.
pub const MAX_MAX_AGE_SECS: u64 = 3_600;
const FIELDS: [&str; 2] = ["url", "max_age_seconds"];

/// A provider's `introspect`, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectRule {
    /// `url`; `None`: the discovery document's `introspection_endpoint`.
    pub url: Option<String>,
    /// `max_age_seconds`: an answer is remembered at most this long (and never past the
    /// token's `exp`). Defaults to 60.
    pub max_age_secs: u64,
}

impl IntrospectRule {
    /// The provider entry `e`'s `introspect`, `None` when absent. `discovers`: the provider
    /// has a discovery document (no `jwks_url` or `jwks`), which may name the endpoint.
    pub fn from_entry(e: &Entry<'_>, discovers: bool) -> Result<Option<Self>, ConfigErrors> {
        let Some(map) = e.object("introspect").map_err(ConfigErrors::from)? else {
            return Ok(None);
        };
        let mut p = Problems::default();
        for problem in unknown_fields(map, &FIELDS, |why| e.field_problem("introspect", why)) {
            p.push(problem);
        }
        let url = p.take(match map.get("url") {
            None if discovers => Ok(None),
            None => Err(e.field_problem(
                "introspect",
                "has no url, and the provider has no discovery document to name one (it gives jwks_url or jwks): give introspect.url",
            )),
            Some(serde_json::Value::String(raw)) => endpoint_url(raw)
                .map(Some)
                .map_err(|why| e.field_problem("introspect.url", why)),
            Some(_) => Err(e.field_problem("introspect.url", "must be a string")),
        });
        let max_age_secs = p.take(match map.get("max_age_seconds") {
            None => Ok(DEFAULT_MAX_AGE_SECS),
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_MAX_AGE_SECS).contains(n))
                .ok_or_else(|| {
                    e.field_problem("introspect.max_age_seconds", "must be from 1 to 3600")
                }),
        });
        p.finish(|| {
            Some(Some(Self {
                url: url?,
                max_age_secs: max_age_secs?,
            }))
        })
    }
}

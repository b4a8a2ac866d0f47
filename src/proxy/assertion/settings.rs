//! The gateway assertion's settings (`GATEWAY_ASSERTION_HEADER`, `GATEWAY_SIGNING_KEY`,
//! `GATEWAY_ISSUER`), checked once at configuration: apart from the request path's use of
//! them, so that the configuration reads them without depending on the gateway's errors.

use http::HeaderName;

use crate::config::setting::{optional, ConfigError, ConfigErrors, Lookup, Problems};
use crate::identity::jwt::KeyFamily;
use crate::identity::signing::{jws_header, SigningKeys};

const HEADER: &str = "GATEWAY_ASSERTION_HEADER";
pub(super) const KEY: &str = "GATEWAY_SIGNING_KEY";
const ISSUER: &str = "GATEWAY_ISSUER";

/// The JWT `typ` of the assertion (RFC 8725 §3.11: its own type, so it is never taken for an
/// access or ID token).
pub const TYP: &str = "gateway+jwt";

/// The assertion's settings, checked once.
#[derive(Debug, Clone)]
pub struct AssertionSettings {
    pub(super) header: HeaderName,
    pub(super) keys: SigningKeys,
    pub(super) issuer: Option<String>,
    /// The signing key's encoded JWS header, worked out once.
    pub(super) jws_header: String,
}

impl AssertionSettings {
    /// `None` when neither `GATEWAY_ASSERTION_HEADER` nor `GATEWAY_SIGNING_KEY` is set; each
    /// needs the other.
    pub fn from_settings(
        get: Lookup<'_>,
        customer_id_header: Option<&HeaderName>,
    ) -> Result<Option<Self>, ConfigErrors> {
        let header = optional(get, HEADER).filter(|h| !h.trim().is_empty());
        let key = optional(get, KEY).filter(|k| !k.trim().is_empty());
        let issuer = optional(get, ISSUER);
        let mut p = Problems::default();
        let (header, key) = match (header, key) {
            (None, None) => {
                if issuer.is_some() {
                    p.push(ConfigError::new(
                        ISSUER,
                        "is set without GATEWAY_ASSERTION_HEADER and GATEWAY_SIGNING_KEY",
                    ));
                }
                return p.finish(|| Some(None));
            }
            (Some(_), None) => {
                p.push(ConfigError::new(
                    KEY,
                    "must be set with GATEWAY_ASSERTION_HEADER: a private JWK (EC P-256 or Ed25519) with a kid",
                ));
                return p.finish(|| None);
            }
            (None, Some(_)) => {
                p.push(ConfigError::new(
                    HEADER,
                    "must be set with GATEWAY_SIGNING_KEY: the header that carries the assertion (e.g. x-gateway-assertion)",
                ));
                return p.finish(|| None);
            }
            (Some(header), Some(key)) => (header, key),
        };
        let header = p.take(header_name(&header, customer_id_header));
        let keys = p.take(SigningKeys::from_setting(
            KEY,
            &key,
            &[KeyFamily::EcP256, KeyFamily::OkpEd25519],
        ));
        let issuer = match issuer {
            None => Some(None),
            Some(raw) => p.take(issuer_url(&raw)).map(Some),
        };
        p.finish(|| {
            let keys = keys?;
            Some(Some(Self {
                header: header?,
                jws_header: jws_header(keys.signing(), Some(TYP)),
                keys,
                issuer: issuer?,
            }))
        })
    }

    /// The header that carries the assertion: callers' copies, in every spelling, are removed
    /// from every request (`headers::IdentityHeaders`).
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }
}

/// A header name that neither HTTP nor the gateway controls, nor `CUSTOMER_ID_HEADER`.
fn header_name(raw: &str, customer_id: Option<&HeaderName>) -> Result<HeaderName, ConfigError> {
    let header = HeaderName::from_bytes(raw.trim().as_bytes())
        .map_err(|_| ConfigError::new(HEADER, "is not a valid header name"))?;
    let normal = |h: &str| h.to_ascii_lowercase().replace('_', "-");
    if crate::identity::customer_id::is_reserved(header.as_str())
        || customer_id.is_some_and(|c| normal(c.as_str()) == normal(header.as_str()))
    {
        return Err(ConfigError::new(
            HEADER,
            "names a header the gateway or HTTP controls: choose another (e.g. x-gateway-assertion)",
        ));
    }
    if header
        .as_str()
        .bytes()
        .filter(|&b| b == b'-' || b == b'_')
        .count()
        > 6
    {
        return Err(ConfigError::new(
            HEADER,
            "has more than 6 '-' or '_': choose a shorter name (e.g. x-gateway-assertion)",
        ));
    }
    Ok(header)
}

/// `GATEWAY_ISSUER`: an absolute http(s) URL without query or fragment, used as written.
fn issuer_url(raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    let url = crate::support::http_url::HttpUrl::parse(raw)
        .map_err(|why| ConfigError::new(ISSUER, why))?;
    if url.has_query() || url.has_fragment() {
        return Err(ConfigError::new(
            ISSUER,
            "must not carry a query or fragment",
        ));
    }
    Ok(raw.to_string())
}

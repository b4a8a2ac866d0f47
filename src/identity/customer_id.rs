//! The customer id for the origin (`CUSTOMER_ID_HEADER`): base64url(HMAC-SHA-256 under
//! `CUSTOMER_ID_KEY` of the verified `iss`, a newline and `sub`), unpadded.
//!
//! The partner asks for a customer identifier that is unique, consistent and opaque: an HMAC of
//! the issuer and subject is the same on every request and channel (JWT or session), differs
//! between customers (and between issuers that reuse a `sub`), and tells nothing about the
//! customer without the key. A plain hash would not do: `sub` values are often guessable (an
//! email, an account number), and anyone could hash their guesses.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::header::HeaderName;
use sha2::Sha256;

use crate::config::setting::{optional, ConfigError, ConfigErrors, Lookup, Problems};
use crate::identity::claims::Claims;

const HEADER: &str = "CUSTOMER_ID_HEADER";
const KEY: &str = "CUSTOMER_ID_KEY";

/// The shortest key accepted: HMAC-SHA-256's own output size (RFC 2104 §3).
pub const MIN_KEY_BYTES: usize = 32;

/// Names no customer id header may take: the credentials, the request id, and the fields the
/// platform or HTTP itself controls. Compared with `_` read as `-`.
const RESERVED: [&str; 19] = [
    "authorization",
    "customer-auth",
    "api-key",
    "x-request-id",
    "host",
    "cookie",
    "content-length",
    "content-type",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// `CUSTOMER_ID_HEADER` and its key, read once per isolate.
pub struct CustomerIdSettings {
    header: HeaderName,
    key: Vec<u8>,
}

/// Most `-` or `_` in `CUSTOMER_ID_HEADER`: its spellings (2^k) are removed from every request.
const MAX_SEPARATORS: usize = 6;

impl std::fmt::Debug for CustomerIdSettings {
    // Hand-written so that a stray `{:?}` can never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerIdSettings")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Why a verified identity cannot be given a customer id: the origin expects one, so the
/// request is refused (401 `invalid_token`) rather than forwarded without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingIdentity {
    /// No string `sub`: there is no customer to name.
    Sub,
    /// No string `iss`: the same `sub` from two issuers would be one customer.
    Iss,
    /// An `iss` holding a newline: `iss + "\n" + sub` would no longer say where `iss` ends, and
    /// two customers could share an id (`"a\nb"`, `"c"` and `"a"`, `"b\nc"`).
    IssWithNewline,
}

impl MissingIdentity {
    pub fn description(self) -> &'static str {
        match self {
            Self::Sub => "The identity has no sub claim",
            Self::Iss => "The identity has no iss claim",
            Self::IssWithNewline => "The identity iss claim is invalid",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Sub => "no_sub_claim",
            Self::Iss => "no_iss_claim",
            Self::IssWithNewline => "invalid_iss_claim",
        }
    }
}

impl CustomerIdSettings {
    /// `None` when `CUSTOMER_ID_HEADER` is unset (then `CUSTOMER_ID_KEY` is not used).
    pub fn from_settings(get: Lookup<'_>) -> Result<Option<Self>, ConfigErrors> {
        let Some(name) = optional(get, HEADER) else {
            return Ok(None);
        };
        let mut p = Problems::default();
        let header = p.take(header_name(&name));
        let key = p.take(key(get));
        p.finish(|| {
            Some(Some(Self {
                header: header?,
                key: key?,
            }))
        })
    }

    /// The header the id goes in. Callers' copies, in every spelling with `_` for any `-` (some
    /// servers behind the gateway read `x_customer_id` as `x-customer-id`), are removed from
    /// every request (`headers::IdentityHeaders`).
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The id of the customer whose verified claims these are.
    pub fn derive(&self, claims: &Claims) -> Result<String, MissingIdentity> {
        let sub = claims.str("sub").ok_or(MissingIdentity::Sub)?;
        let iss = claims.str("iss").ok_or(MissingIdentity::Iss)?;
        if iss.contains('\n') {
            return Err(MissingIdentity::IssWithNewline);
        }
        Ok(self.derive_from(iss, sub))
    }

    /// base64url(HMAC-SHA-256(key, iss + "\n" + sub)), unpadded.
    pub fn derive_from(&self, iss: &str, sub: &str) -> String {
        // A key of any length is accepted by HMAC; ours is at least 32 bytes.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(iss.as_bytes());
        mac.update(b"\n");
        mac.update(sub.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// `CUSTOMER_ID_HEADER`: a header name, not one the gateway or HTTP controls, with at most
/// six separators.
fn header_name(name: &str) -> Result<HeaderName, ConfigError> {
    let header = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| ConfigError::new(HEADER, "is not a valid header name"))?;
    let normal = normalised(header.as_str());
    if normal.bytes().filter(|&b| b == b'-').count() > MAX_SEPARATORS {
        return Err(ConfigError::new(
            HEADER,
            "has more than 6 '-' or '_': choose a shorter name (e.g. x-customer-id)",
        ));
    }
    if RESERVED.contains(&normal.as_str()) {
        return Err(ConfigError::new(
            HEADER,
            "names a header the gateway or HTTP controls: choose another (e.g. x-customer-id)",
        ));
    }
    Ok(header)
}

/// `CUSTOMER_ID_KEY`, used byte for byte after decoding; only surrounding whitespace (a
/// newline from `wrangler secret put`) is trimmed from its base64. Unset, not base64 and too
/// short are told apart: each needs a different fix.
fn key(get: Lookup<'_>) -> Result<Vec<u8>, ConfigError> {
    const HOW: &str = "32 random bytes in base64 (openssl rand -base64 32)";
    let Some(b64) = get(KEY).filter(|k| !k.trim().is_empty()) else {
        return Err(ConfigError::new(
            KEY,
            format!("must be set with CUSTOMER_ID_HEADER: {HOW}"),
        ));
    };
    let key = STANDARD
        .decode(b64.trim())
        .map_err(|_| ConfigError::new(KEY, format!("is not base64: {HOW}")))?;
    if key.len() < MIN_KEY_BYTES {
        return Err(ConfigError::new(
            KEY,
            format!("decodes to fewer than {MIN_KEY_BYTES} bytes: {HOW}"),
        ));
    }
    Ok(key)
}

/// True for a header name the gateway or HTTP controls (credentials, `x-request-id`, `host`,
/// hop-by-hop fields, ...), in any case and with `_` read as `-`: a setting may not name one.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&normalised(name).as_str())
}

/// Lower case, `_` as `-`: how reserved names are compared with the configured one.
fn normalised(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn settings(
        header: &str,
        key: Option<&str>,
    ) -> Result<Option<CustomerIdSettings>, ConfigErrors> {
        let get = |n: &str| match n {
            HEADER => Some(header.to_string()),
            KEY => key.map(str::to_string),
            _ => None,
        };
        CustomerIdSettings::from_settings(&get)
    }

    fn claims(v: serde_json::Value) -> Claims {
        match v {
            serde_json::Value::Object(m) => Claims::new(m, 0),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_id_is_a_keyed_digest_of_iss_and_sub() {
        let s = settings("X-Customer-Id", Some(KEY_B64)).unwrap().unwrap();
        assert_eq!(s.header().as_str(), "x-customer-id");
        let a = s
            .derive(&claims(json!({"iss": "i", "sub": "alice"})))
            .unwrap();
        assert_eq!(a.len(), 43, "32 bytes, unpadded base64url");
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(a, s.derive_from("i", "alice"), "stable");
        assert_ne!(a, s.derive_from("i", "bob"));
        assert_ne!(
            a,
            s.derive_from("j", "alice"),
            "issuers do not share customers"
        );
        assert_eq!(
            s.derive(&claims(json!({"iss": "i\nx", "sub": "y"}))),
            Err(MissingIdentity::IssWithNewline),
            "would collide with iss i, sub x\\ny"
        );
        assert_ne!(
            s.derive(&claims(json!({"iss": "i", "sub": "x\ny"})))
                .unwrap(),
            s.derive_from("i", "x")
        );
        // RFC 4231-style check against an independent computation of the same MAC.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&STANDARD.decode(KEY_B64).unwrap()).unwrap();
        mac.update(b"i\nalice");
        assert_eq!(a, URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn an_identity_without_sub_or_iss_gets_no_id() {
        let s = settings("x-customer-id", Some(KEY_B64)).unwrap().unwrap();
        assert_eq!(
            s.derive(&claims(json!({"iss": "i"}))),
            Err(MissingIdentity::Sub)
        );
        assert_eq!(
            s.derive(&claims(json!({"sub": "a"}))),
            Err(MissingIdentity::Iss)
        );
        assert_eq!(
            s.derive(&claims(json!({"iss": "i", "sub": 7}))),
            Err(MissingIdentity::Sub)
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(matches!(settings("", None), Ok(None)));
        for (header, key, setting, says) in [
            ("x-customer-id", None, KEY, "must be set"),
            ("x-customer-id", Some(" "), KEY, "must be set"),
            (
                "x-customer-id",
                Some("c2hvcnQ="),
                KEY,
                "decodes to fewer than 32 bytes",
            ),
            (
                "x-customer-id",
                // 31 bytes: one short.
                Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="),
                KEY,
                "decodes to fewer than 32 bytes",
            ),
            ("x-customer-id", Some("not base64!"), KEY, "is not base64"),
            (
                "bad header",
                Some(KEY_B64),
                HEADER,
                "not a valid header name",
            ),
            ("Authorization", Some(KEY_B64), HEADER, "controls"),
            ("customer_auth", Some(KEY_B64), HEADER, "controls"),
            ("X-Request-Id", Some(KEY_B64), HEADER, "controls"),
        ] {
            let err = settings(header, key).unwrap_err();
            assert_eq!(err.settings(), [setting], "{header} {key:?}");
            assert!(err.to_string().contains(says), "{header} {key:?}: {err}");
            assert!(!err.to_string().contains(KEY_B64));
        }
        // Both wrong: both named.
        let both = settings("Authorization", Some("c2hvcnQ=")).unwrap_err();
        assert_eq!(both.settings(), [HEADER, KEY]);
    }

    #[test]
    fn a_header_with_too_many_spellings_is_refused() {
        let ids = settings("X-Customer-ID", Some(KEY_B64)).unwrap().unwrap();
        assert_eq!(ids.header().as_str(), "x-customer-id");
        let long = settings("a-b-c-d-e-f-g-h", Some(KEY_B64)).unwrap_err();
        assert_eq!(long.settings(), [HEADER]);
    }
}

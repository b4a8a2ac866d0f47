//! The whole check of one token: size, structure, alg, header, key, signature, then claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::unique_json::{self, ObjectError};
use super::{Alg, JwtError, JwtSettings, KeySet, SignatureVerifier};
use crate::identity::claims::Claims;

/// The longest token accepted. Real customer JWTs are well under 2 KiB; the limit bounds the
/// decoding and hashing an unauthenticated caller can cause.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A token whose signature and claims passed. Holds no token text (its signature), but its
/// claims may hold personal data: log the named fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub alg: Alg,
    /// The whole payload, for route policy (`scopes`) and the customer id.
    pub claims: Claims,
}

/// Checks `token` against `settings` and `keys` at `now_secs` (Unix seconds).
///
/// The order is fixed, cheapest and least trusting first, so that hostile input is refused
/// before any key is looked up or any signature is computed: size, structure (three canonical
/// base64url segments, header and claims each one JSON object without repeated names), the
/// `alg` allow-list, the rest of the header (`crit`), key selection, the signature, and only
/// then the claims' values.
///
/// `jku`, `x5u`, `jwk` and `x5c` in the header are never followed or used: keys come from the
/// configuration only. A `kid` only selects among configured keys.
pub async fn validate<V: SignatureVerifier>(
    token: &str,
    settings: &JwtSettings,
    keys: &KeySet,
    now_secs: u64,
    verifier: &V,
) -> Result<VerifiedToken, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let segments = Segments::parse(token)?;
    let header = Header::read(&segments.header)?;

    // The algorithm is decided by the allow-list before any key is looked at (RFC 8725 §3.1).
    // `none` in any spelling is not an `Alg`, so it can never pass.
    let alg = Alg::from_name(header.alg)
        .filter(|alg| settings.allows(*alg))
        .ok_or(JwtError::AlgorithmNotAllowed)?;
    if segments.header.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    // The kind of token (RFC 8725 §3.11), from the header alone: an ID token or a token of
    // another kind is refused before any key or signature work.
    if settings
        .types
        .as_ref()
        .is_some_and(|types| !types.accepts(header.typ))
    {
        return Err(JwtError::WrongType);
    }

    let kid = header.kid;
    let candidates = keys.candidates(alg, kid)?;
    let mut verified = false;
    for key in candidates {
        if verifier
            .verify(
                alg,
                key,
                segments.signing_input.as_bytes(),
                &segments.signature,
            )
            .await
        {
            verified = true;
            break;
        }
    }
    if !verified {
        return Err(JwtError::BadSignature);
    }

    // Authenticated from here on: the claims' values can be trusted and checked.
    let checked = check_claims(&segments.claims, settings, now_secs)?;
    Ok(VerifiedToken {
        kid: kid.map(str::to_string),
        alg,
        claims: Claims::new(segments.claims, segments.claims_bytes),
        ..checked
    })
}

/// A compact JWS split and decoded, its shape checked but nothing in it trusted yet.
struct Segments<'t> {
    /// The decoded header: its members are only read by `Header::read` and the `crit` check.
    header: Map<String, Value>,
    /// The token before its last `.`: what the signature covers, byte for byte.
    signing_input: &'t str,
    signature: Vec<u8>,
    /// Parsed now so that a payload that is not a JSON object is refused before any signature
    /// work; its values are only read once the signature has verified.
    claims: Map<String, Value>,
    /// The decoded payload's length.
    claims_bytes: usize,
}

impl<'t> Segments<'t> {
    /// Exactly three segments (a fourth, or a trailing `.`, is trailing data), each canonical
    /// unpadded base64url (RFC 7515 §2: no `=`, no whitespace, no stray bits in the last
    /// symbol, so one token has one spelling), header and payload each one JSON object with
    /// unique member names.
    fn parse(token: &'t str) -> Result<Segments<'t>, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header_object = json_object(&base64url(header)?)?;
        let decoded = base64url(payload)?;
        let claims = json_object(&decoded)?;
        let signature = base64url(signature)?;
        Ok(Segments {
            header: header_object,
            signing_input: &token[..header.len() + 1 + payload.len()],
            signature,
            claims,
            claims_bytes: decoded.len(),
        })
    }
}

/// The header's typed members, read as jwt-compact's `UntrustedToken` read them until issue 13
/// (its serde derive, with two `#[serde(flatten)]`s, was one more JSON pass over the header and
/// about 15 KB of wasm): `alg` a string; `kid`, `jku`, `x5u`, `typ` and `cty` absent, `null` or
/// strings, `cty` only `json` in any case; `x5t` and `x5t#S256` thumbprints as jwt-compact
/// decodes them. Anything else in those members makes the token malformed, before the
/// allow-list looks at `alg`. No member here is followed or trusted: `kid` only selects among
/// configured keys.
struct Header<'h> {
    alg: &'h str,
    kid: Option<&'h str>,
    typ: Option<&'h str>,
}

impl<'h> Header<'h> {
    fn read(header: &'h Map<String, Value>) -> Result<Header<'h>, JwtError> {
        let text = |name: &str| match header.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(JwtError::Malformed),
        };
        // Required, and `null` is no string.
        let alg = text("alg")?.ok_or(JwtError::Malformed)?;
        let kid = text("kid")?;
        let typ = text("typ")?;
        for name in ["jku", "x5u"] {
            text(name)?;
        }
        if text("cty")?.is_some_and(|cty| !cty.eq_ignore_ascii_case("json")) {
            return Err(JwtError::Malformed);
        }
        let thumbprint_ok = |name: &str, len: usize| match header.get(name) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => thumbprint(s, len),
            Some(_) => false,
        };
        if !thumbprint_ok("x5t", 20) || !thumbprint_ok("x5t#S256", 32) {
            return Err(JwtError::Malformed);
        }
        Ok(Header { alg, kid, typ })
    }
}

/// Whether jwt-compact's `Thumbprint<len>` would read `value` (its own base64 code is not
/// brought into the wasm for it): up to two `=` dropped, then, by the length it decodes to,
/// too short; exactly `len` bytes of base64url; or longer, base64url of UTF-8 text (a hex
/// thumbprint). Its base64 (base64ct) is as strict as ours: canonical, unpadded.
fn thumbprint(value: &str, len: usize) -> bool {
    let mut value = value;
    for _ in 0..2 {
        value = value.strip_suffix('=').unwrap_or(value);
    }
    match (value.len() * 3 / 4).cmp(&len) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => base64url(value).is_ok(),
        std::cmp::Ordering::Greater => {
            base64url(value).is_ok_and(|bytes| String::from_utf8(bytes).is_ok())
        }
    }
}

/// The `kid` of a token whose header parsed (`validate` got as far as the keys).
pub fn header_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let object = json_object(&base64url(header).ok()?).ok()?;
    Some(object.get("kid")?.as_str()?.to_owned())
}

/// The `base64` crate's URL-safe engine without padding, which also refuses non-zero trailing
/// bits: a segment decodes only from its one canonical spelling.
fn base64url(segment: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, JwtError> {
    unique_json::object(bytes).map_err(|e| match e {
        ObjectError::NotAnObject => JwtError::Malformed,
        ObjectError::DuplicateMember => JwtError::DuplicateMember,
    })
}

/// The registered claims (RFC 7519 §4.1) against the settings. `kid` and `alg` are left for
/// the caller to fill.
fn check_claims(
    claims: &Map<String, Value>,
    settings: &JwtSettings,
    now: u64,
) -> Result<VerifiedToken, JwtError> {
    let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    let iss = string(claims, "iss")?;
    let sub = string(claims, "sub")?;
    let aud = audiences(claims)?;

    check_times(exp, nbf, iat, settings, now)?;
    if let Some(expected) = &settings.issuer {
        match &iss {
            None => return Err(JwtError::MissingClaim("iss")),
            Some(iss) if iss != expected => return Err(JwtError::WrongIssuer),
            Some(_) => {}
        }
    }
    if !settings.audiences.is_empty() {
        let aud = aud.ok_or(JwtError::MissingClaim("aud"))?;
        if !aud
            .iter()
            .any(|a| settings.audiences.iter().any(|ours| ours == a))
        {
            return Err(JwtError::WrongAudience);
        }
    }
    Ok(VerifiedToken {
        kid: None,
        iss,
        sub,
        exp,
        nbf,
        iat,
        alg: Alg::Hs256,
        claims: Claims::default(),
    })
}

/// The checks that depend on the time (`exp`, `nbf`, `iat`, maximum age), with the leeway:
/// the only ones a token that passed once can fail later (see `verified`).
pub(super) fn check_times(
    exp: u64,
    nbf: Option<u64>,
    iat: Option<u64>,
    settings: &JwtSettings,
    now: u64,
) -> Result<(), JwtError> {
    let leeway = settings.leeway_secs;
    // RFC 7519 §4.1.4: valid only while now is before exp.
    if now >= exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(JwtError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(JwtError::IssuedInFuture);
    }
    if let Some(max_age) = settings.max_age_secs {
        let iat = iat.ok_or(JwtError::MissingClaim("iat"))?;
        if now.saturating_sub(iat) > max_age.saturating_add(leeway) {
            return Err(JwtError::TooOld);
        }
    }
    Ok(())
}

/// A NumericDate (RFC 7519 §2): a non-negative JSON number of seconds, fractions dropped.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, JwtError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let invalid = JwtError::InvalidClaim(name);
    if let Some(secs) = value.as_u64() {
        return Ok(Some(secs));
    }
    match value.as_f64() {
        // `as` saturates: an absurdly far date becomes u64::MAX, which is still far.
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(Some(secs as u64)),
        _ => Err(invalid),
    }
}

fn string(claims: &Map<String, Value>, name: &'static str) -> Result<Option<String>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::InvalidClaim(name)),
    }
}

/// RFC 7519 §4.1.3: `aud` is one string or an array of strings.
fn audiences(claims: &Map<String, Value>) -> Result<Option<Vec<&str>>, JwtError> {
    let invalid = JwtError::InvalidClaim("aud");
    match claims.get("aud") {
        None => Ok(None),
        Some(Value::String(one)) => Ok(Some(vec![one.as_str()])),
        Some(Value::Array(many)) => many
            .iter()
            .map(|a| a.as_str().ok_or(invalid))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_compact::UntrustedToken;
    use serde_json::json;

    #[test]
    fn headers_are_read_as_jwt_compacts_untrusted_token_read_them() {
        // The reading that replaced jwt-compact's, against jwt-compact itself (still here
        // natively): the same headers refused, the same `alg` and `kid` from the rest.
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let thumb = |n: usize| b64(&vec![7; n]);
        let headers = [
            json!({"alg": "HS256"}),
            json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
            json!({"typ": "JWT"}),
            json!({"alg": null}),
            json!({"alg": 256}),
            json!({"alg": ["HS256"]}),
            json!({"alg": "none"}),
            json!({"alg": ""}),
            json!({"alg": "HS256", "kid": null}),
            json!({"alg": "HS256", "kid": 7}),
            json!({"alg": "HS256", "kid": {"a": 1}}),
            json!({"alg": "HS256", "typ": 1}),
            json!({"alg": "HS256", "typ": null}),
            json!({"alg": "HS256", "jku": 1}),
            json!({"alg": "HS256", "jku": "https://x.example/"}),
            json!({"alg": "HS256", "x5u": {"u": "x"}}),
            json!({"alg": "HS256", "x5u": null}),
            json!({"alg": "HS256", "cty": "json"}),
            json!({"alg": "HS256", "cty": "JSON"}),
            json!({"alg": "HS256", "cty": "Json"}),
            json!({"alg": "HS256", "cty": "cbor"}),
            json!({"alg": "HS256", "cty": "JWT"}),
            json!({"alg": "HS256", "cty": null}),
            json!({"alg": "HS256", "cty": 1}),
            json!({"alg": "HS256", "crit": ["exp"]}),
            json!({"alg": "HS256", "crit": null}),
            json!({"alg": "HS256", "jwk": {"kty": "oct"}, "x5c": 1, "b64": false}),
            json!({"alg": "HS256", "x5t": thumb(20)}),
            json!({"alg": "HS256", "x5t": format!("{}=", thumb(20))}),
            json!({"alg": "HS256", "x5t": format!("{}==", thumb(20))}),
            json!({"alg": "HS256", "x5t": format!("{}===", thumb(20))}),
            json!({"alg": "HS256", "x5t": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"}),
            json!({"alg": "HS256", "x5t": b64(b"a94a8fe5ccb19ba61c4c0873d391e987982fbbd3")}),
            json!({"alg": "HS256", "x5t#S256": format!("{}=", thumb(32))}),
            json!({"alg": "HS256", "x5t": thumb(19)}),
            json!({"alg": "HS256", "x5t": thumb(21)}),
            json!({"alg": "HS256", "x5t": b64(b"0123456789abcdef0123456789abcdef0123456789")}),
            json!({"alg": "HS256", "x5t": b64(&[0xff; 40])}),
            json!({"alg": "HS256", "x5t": "!!!!!!!!!!!!!!!!!!!!!!!!!!!"}),
            json!({"alg": "HS256", "x5t": "AAAAAAAAAAAAAAAAAAAAAAAAAAB"}),
            json!({"alg": "HS256", "x5t": 20}),
            json!({"alg": "HS256", "x5t": null}),
            json!({"alg": "HS256", "x5t": ""}),
            json!({"alg": "HS256", "x5t#S256": thumb(32)}),
            json!({"alg": "HS256", "x5t#S256": thumb(20)}),
            json!({"alg": "HS256", "x5t#S256": thumb(33)}),
            json!({"alg": "HS256", "x5t#S256": [1, 2]}),
            json!({"alg": "RS256", "kid": "a", "x5t": thumb(20), "x5t#S256": thumb(32)}),
        ];
        let mut refused = 0;
        for header in &headers {
            let token = format!(
                "{}.{}.{}",
                b64(header.to_string().as_bytes()),
                b64(br#"{"exp":1}"#),
                b64(b"sig")
            );
            let theirs = UntrustedToken::<Map<String, Value>>::try_from(token.as_str())
                .ok()
                .map(|t| {
                    let h = t.header();
                    (
                        t.algorithm().to_owned(),
                        h.key_id.clone(),
                        h.other_fields.contains_key("crit"),
                    )
                });
            let segments = Segments::parse(&token).unwrap();
            let ours = Header::read(&segments.header).ok().map(|h| {
                (
                    h.alg.to_owned(),
                    h.kid.map(str::to_owned),
                    segments.header.contains_key("crit"),
                )
            });
            assert_eq!(ours, theirs, "{header}");
            match ours {
                Some((_, kid, _)) => assert_eq!(header_kid(&token), kid, "{header}"),
                None => refused += 1,
            }
        }
        assert!(0 < refused && refused < headers.len(), "{refused} refused");
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn numeric_dates_accept_integers_and_fractions_only() {
        let c = claims(json!({"a": 5, "b": 5.9, "c": "5", "d": -1, "e": null, "f": 1e300}));
        assert_eq!(numeric_date(&c, "a"), Ok(Some(5)));
        assert_eq!(numeric_date(&c, "b"), Ok(Some(5)));
        assert_eq!(numeric_date(&c, "c"), Err(JwtError::InvalidClaim("c")));
        assert_eq!(numeric_date(&c, "d"), Err(JwtError::InvalidClaim("d")));
        assert_eq!(numeric_date(&c, "e"), Err(JwtError::InvalidClaim("e")));
        assert_eq!(numeric_date(&c, "f"), Ok(Some(u64::MAX)));
        assert_eq!(numeric_date(&c, "zz"), Ok(None));
    }

    #[test]
    fn audiences_are_a_string_or_strings() {
        assert_eq!(audiences(&claims(json!({"aud": "a"}))), Ok(Some(vec!["a"])));
        assert_eq!(
            audiences(&claims(json!({"aud": ["a", "b"]}))),
            Ok(Some(vec!["a", "b"]))
        );
        assert_eq!(audiences(&claims(json!({}))), Ok(None));
        for bad in [
            json!({"aud": 1}),
            json!({"aud": ["a", 1]}),
            json!({"aud": {"a": 1}}),
        ] {
            assert_eq!(audiences(&claims(bad)), Err(JwtError::InvalidClaim("aud")));
        }
    }
}

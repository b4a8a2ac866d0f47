//! The whole check of one token: size, structure, alg, header, key, signature, then claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::UntrustedToken;
use serde_json::{Map, Value};

use super::unique_json::{self, ObjectError};
use super::{Alg, JwtError, JwtSettings, KeySet, SignatureVerifier};
use crate::claims::Claims;

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

/// Header members beyond those jwt-compact reads (`alg`, `cty`, `kid`, `jku`, `x5u`, ...).
type OtherHeaderFields = Map<String, Value>;

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
    // The header's typed members (a string `alg`, `kid`, `jku`, `x5u`, `typ`; a `cty` of JSON)
    // as jwt-compact reads them; `Segments::parse` has already refused what it would accept
    // too leniently (duplicates, padding, a header that is not an object).
    let parsed =
        UntrustedToken::<OtherHeaderFields>::try_from(token).map_err(|_| JwtError::Malformed)?;

    // The algorithm is decided by the allow-list before any key is looked at (RFC 8725 §3.1).
    // `none` in any spelling is not an `Alg`, so it can never pass.
    let alg = Alg::from_name(parsed.algorithm())
        .filter(|alg| settings.allows(*alg))
        .ok_or(JwtError::AlgorithmNotAllowed)?;
    if parsed.header().other_fields.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }

    let kid = parsed.header().key_id.as_deref();
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
        // The header's members are read again, typed, by jwt-compact; here only its shape.
        json_object(&base64url(header)?)?;
        let decoded = base64url(payload)?;
        let claims = json_object(&decoded)?;
        let signature = base64url(signature)?;
        Ok(Segments {
            signing_input: &token[..header.len() + 1 + payload.len()],
            signature,
            claims,
            claims_bytes: decoded.len(),
        })
    }
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
    use serde_json::json;

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

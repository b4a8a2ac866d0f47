//! DPoP (RFC 9449): the proof that the caller holds the private key a customer JWT is bound to
//! (`cnf.jkt`), checked in full, without I/O but the signature check (the platform's
//! `SignatureVerifier`, as for the JWT itself). Whether the proof's `jti` was seen before is
//! `replay`'s question, asked after this check passes; `htu` compares URLs.
//!
//! The order is the JWT's: cheapest and least trusting first. Size, three canonical base64url
//! segments, header and claims JSON objects without repeated names, `typ`, `alg` from
//! `DPOP_ALGORITHMS` (asymmetric only, so never `none` nor an HMAC keyed with something
//! public such as the thumbprint), no `crit`, a public `jwk` (no private member), its RFC 7638
//! thumbprint equal to `cnf.jkt`, the signature with that key, then the claims: `htm`, `htu`,
//! `iat` within the window, `ath`, `jti`.

pub mod guard;
pub mod htu;
pub mod replay;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::setting::{number, optional, ConfigError, ConfigErrors, Lookup, Problems};
use crate::identity::jwt::unique_json;
use crate::identity::jwt::{Alg, Key, SignatureVerifier};

/// The longest proof read. A proof carrying an RSA-4096 key is about 2.3 KB; the limit bounds
/// the decoding and hashing a caller can cause before anything is verified.
pub const MAX_PROOF_BYTES: usize = 4 * 1024;
/// The longest `jti` kept: a random identifier needs far less (RFC 9449 §4.2: 96 bits).
pub const MAX_JTI_BYTES: usize = 256;

pub const ALGORITHMS: &str = "DPOP_ALGORITHMS";
pub const MAX_AGE: &str = "DPOP_MAX_AGE_SECONDS";
/// `DPOP_ALGORITHMS` unset.
pub const DEFAULT_ALGORITHMS: [Alg; 4] = [Alg::Es256, Alg::EdDsa, Alg::Rs256, Alg::Ps256];
pub const DEFAULT_MAX_AGE_SECS: u64 = 60;

/// `DPOP_ALGORITHMS` and `DPOP_MAX_AGE_SECONDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    pub algorithms: Vec<Alg>,
    pub max_age_secs: u64,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            max_age_secs: DEFAULT_MAX_AGE_SECS,
        }
    }
}

impl DpopSettings {
    /// Both settings, every problem of the two; `HS*` is refused (RFC 9449 §4.2: a proof is
    /// signed with an asymmetric key, and an HMAC keyed with the public thumbprint proves
    /// nothing).
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, ConfigErrors> {
        let mut problems = Problems::default();
        let algorithms = match optional(get, ALGORITHMS) {
            None => DEFAULT_ALGORITHMS.to_vec(),
            Some(raw) => {
                let mut list = Vec::new();
                for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match Alg::from_name(name) {
                        Some(alg) if alg.min_hmac_secret_len().is_some() => {
                            problems.push(ConfigError::new(
                                ALGORITHMS,
                                format!("allows {alg}: DPoP proofs are signed with asymmetric keys only"),
                            ));
                        }
                        Some(alg) => list.push(alg),
                        None => problems.push(ConfigError::new(
                            ALGORITHMS,
                            "must be a comma list of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA",
                        )),
                    }
                }
                if list.is_empty() && problems.is_empty() {
                    problems.push(ConfigError::new(ALGORITHMS, "names no algorithm"));
                }
                list
            }
        };
        let max_age_secs = problems.take(number(get, MAX_AGE, DEFAULT_MAX_AGE_SECS, 1..=3600));
        problems.finish(|| {
            Some(Self {
                algorithms,
                max_age_secs: max_age_secs?,
            })
        })
    }

    pub fn allows(&self, alg: Alg) -> bool {
        self.algorithms.contains(&alg)
    }
}

/// Why a proof is refused. Every one is `invalid_dpop_proof` on the wire (RFC 9449 §7.1);
/// the variant is for the log line and the `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopError {
    /// No `DPoP` header with a token bound to a key.
    Missing,
    /// More than one `DPoP` field (RFC 9449 §4.3 check 1).
    Multiple,
    /// Longer than `MAX_PROOF_BYTES`.
    TooLarge,
    /// Not a compact JWS with JSON object header and claims, or a member of the wrong type.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    WrongType,
    /// `alg` is `none`, symmetric, unknown or not in `DPOP_ALGORITHMS`.
    AlgorithmNotAllowed,
    /// `crit` in the header.
    CriticalHeader,
    /// No `jwk`, or one that is no usable public key for `alg`.
    BadKey,
    /// The `jwk` carries private key members.
    PrivateKey,
    /// The `jwk`'s thumbprint is not the token's `cnf.jkt`.
    KeyMismatch,
    BadSignature,
    /// `htm` is not the request's method.
    WrongMethod,
    /// `htu` is not the request's URL (or the gateway does not know the URL).
    WrongUrl,
    /// No `iat`, or not a number.
    BadIssuedAt,
    /// `iat` older than `DPOP_MAX_AGE_SECONDS` plus leeway.
    TooOld,
    /// `iat` later than now plus leeway.
    IssuedInFuture,
    /// `ath` is absent or not the hash of the token the proof comes with.
    WrongTokenHash,
    /// No `jti`, or not a string of 1 to `MAX_JTI_BYTES` bytes.
    BadJti,
    /// The `jti` was used before within the window.
    Replayed,
}

impl DpopError {
    /// The `error_description`: fixed text that fits a quoted header value.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Missing => "A DPoP proof is required for this token",
            Self::Multiple => "More than one DPoP proof was sent",
            Self::TooLarge => "The DPoP proof is too large",
            Self::Malformed => "The DPoP proof is malformed",
            Self::WrongType => "The DPoP proof typ is not dpop+jwt",
            Self::AlgorithmNotAllowed => "The DPoP proof signing algorithm is not allowed",
            Self::CriticalHeader => "The DPoP proof has unsupported critical header parameters",
            Self::BadKey => "The DPoP proof carries no usable public key",
            Self::PrivateKey => "The DPoP proof key contains private key material",
            Self::KeyMismatch => "The DPoP proof key is not the key the token is bound to",
            Self::BadSignature => "The DPoP proof signature is invalid",
            Self::WrongMethod => "The DPoP proof htm is not the request method",
            Self::WrongUrl => "The DPoP proof htu is not the request URL",
            Self::BadIssuedAt => "The DPoP proof iat is missing or invalid",
            Self::TooOld => "The DPoP proof is too old",
            Self::IssuedInFuture => "The DPoP proof was issued in the future",
            Self::WrongTokenHash => "The DPoP proof ath does not match the token",
            Self::BadJti => "The DPoP proof jti is missing or invalid",
            Self::Replayed => "The DPoP proof was used before",
        }
    }

    /// For the log line's `outcome`: `dpop_` and the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "dpop_missing",
            Self::Multiple => "dpop_multiple",
            Self::TooLarge => "dpop_too_large",
            Self::Malformed => "dpop_malformed",
            Self::WrongType => "dpop_wrong_type",
            Self::AlgorithmNotAllowed => "dpop_alg_not_allowed",
            Self::CriticalHeader => "dpop_critical_header",
            Self::BadKey => "dpop_bad_key",
            Self::PrivateKey => "dpop_private_key",
            Self::KeyMismatch => "dpop_key_mismatch",
            Self::BadSignature => "dpop_bad_signature",
            Self::WrongMethod => "dpop_wrong_method",
            Self::WrongUrl => "dpop_wrong_url",
            Self::BadIssuedAt => "dpop_bad_iat",
            Self::TooOld => "dpop_too_old",
            Self::IssuedInFuture => "dpop_issued_in_future",
            Self::WrongTokenHash => "dpop_wrong_ath",
            Self::BadJti => "dpop_bad_jti",
            Self::Replayed => "dpop_replayed",
        }
    }
}

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The `DPoP` header's value.
    pub proof: &'a str,
    /// The request's method.
    pub method: &'a str,
    /// The URL the request was received at, without query; `None` when the platform did not
    /// say (then no `htu` can match).
    pub url: Option<&'a str>,
    /// The access token the proof comes with, as presented.
    pub token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
    /// The leeway of the token's provider, widening the `iat` window both ways.
    pub leeway_secs: u64,
    pub now_secs: u64,
}

/// A proof that passed every check but the replay check: its `jti` (scoped to the key, hashed)
/// and until when a replay of it could still pass the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedProof {
    pub replay_key: [u8; 32],
    pub keep_until_secs: u64,
}

/// The JWK members that make a key private (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks the proof in `req` against `settings`; see the module's order.
pub async fn check<V: SignatureVerifier>(
    req: &ProofRequest<'_>,
    settings: &DpopSettings,
    verifier: &V,
) -> Result<AcceptedProof, DpopError> {
    if req.proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::TooLarge);
    }
    let mut parts = req.proof.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed);
    };
    let header = object(h)?;
    let claims = object(c)?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| DpopError::Malformed)?;

    match header.get("typ") {
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("dpop+jwt") => {}
        Some(Value::String(_)) | None => return Err(DpopError::WrongType),
        Some(_) => return Err(DpopError::Malformed),
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::from_name(name)
            .filter(|alg| settings.allows(*alg) && alg.min_hmac_secret_len().is_none())
            .ok_or(DpopError::AlgorithmNotAllowed)?,
        _ => return Err(DpopError::Malformed),
    };
    if header.contains_key("crit") {
        return Err(DpopError::CriticalHeader);
    }
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(DpopError::BadKey);
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(DpopError::PrivateKey);
    }
    let key = Key::from_public_jwk(jwk)
        .filter(|key| key.can_verify(alg))
        .ok_or(DpopError::BadKey)?;
    if thumbprint(jwk).as_deref() != Some(req.jkt) {
        return Err(DpopError::KeyMismatch);
    }
    let signing_input = &req.proof[..h.len() + 1 + c.len()];
    if !verifier
        .verify(alg, &key, signing_input.as_bytes(), &signature)
        .await
    {
        return Err(DpopError::BadSignature);
    }

    // Signed by the key the token is bound to: the claims can be read.
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(DpopError::Malformed),
    };
    // RFC 9110 §9.1: the method is case-sensitive.
    if text("htm")? != Some(req.method) {
        return Err(DpopError::WrongMethod);
    }
    let htu = text("htu")?.and_then(htu::normalize);
    let url = req.url.and_then(htu::normalize);
    if htu.is_none() || htu != url {
        return Err(DpopError::WrongUrl);
    }
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| *f >= 0.0 && f.is_finite())
                    .map(|f| f as u64)
            })
            .ok_or(DpopError::BadIssuedAt)?,
        _ => return Err(DpopError::BadIssuedAt),
    };
    let keep_until_secs = iat
        .saturating_add(settings.max_age_secs)
        .saturating_add(req.leeway_secs);
    if keep_until_secs < req.now_secs {
        return Err(DpopError::TooOld);
    }
    if iat > req.now_secs.saturating_add(req.leeway_secs) {
        return Err(DpopError::IssuedInFuture);
    }
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(req.token.as_bytes()));
    if text("ath")? != Some(ath.as_str()) {
        return Err(DpopError::WrongTokenHash);
    }
    let jti = text("jti")?
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or(DpopError::BadJti)?;
    // A `jti` is unique per key (RFC 9449 §11.1): two clients may pick the same one.
    let mut hash = Sha256::new();
    hash.update(req.jkt.as_bytes());
    hash.update(b"\n");
    hash.update(jti.as_bytes());
    Ok(AcceptedProof {
        replay_key: hash.finalize().into(),
        keep_until_secs,
    })
}

/// A segment as a JSON object without repeated member names, from canonical base64url.
fn object(segment: &str) -> Result<Map<String, Value>, DpopError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| DpopError::Malformed)?;
    unique_json::object(&bytes).map_err(|_| DpopError::Malformed)
}

/// The RFC 7638 thumbprint of a public JWK, base64url: SHA-256 of the required members, in
/// lexicographic order, as JSON without whitespace. `None` for a key type without one here.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let kty = jwk.get("kty")?.as_str()?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&serde_json::to_string(name).ok()?);
        canonical.push(':');
        canonical.push_str(&serde_json::to_string(value).ok()?);
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn descriptions_fit_in_a_quoted_header_value() {
        use DpopError::*;
        for e in [
            Missing,
            Multiple,
            TooLarge,
            Malformed,
            WrongType,
            AlgorithmNotAllowed,
            CriticalHeader,
            BadKey,
            PrivateKey,
            KeyMismatch,
            BadSignature,
            WrongMethod,
            WrongUrl,
            BadIssuedAt,
            TooOld,
            IssuedInFuture,
            WrongTokenHash,
            BadJti,
            Replayed,
        ] {
            let d = e.description();
            assert!(d
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
            assert!(e.code().starts_with("dpop_"));
        }
    }

    #[test]
    fn settings_refuse_symmetric_and_unknown_algorithms() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let d = DpopSettings::from_settings(&get(&[])).unwrap();
        assert_eq!(d, DpopSettings::default());
        let only =
            DpopSettings::from_settings(&get(&[(ALGORITHMS, "ES256"), (MAX_AGE, "30")])).unwrap();
        assert_eq!((only.algorithms, only.max_age_secs), (vec![Alg::Es256], 30));
        for bad in ["HS256", "ES256,none", " , ", "ES256,HS512"] {
            let e = DpopSettings::from_settings(&get(Box::leak(Box::new([(ALGORITHMS, bad)]))))
                .unwrap_err();
            assert_eq!(e.iter().next().unwrap().setting, ALGORITHMS, "{bad}");
        }
        assert!(DpopSettings::from_settings(&get(&[(MAX_AGE, "0")])).is_err());
    }
}

//! Sender-constrained tokens: a customer JWT bound to something only its rightful sender has,
//! checked by the JWT mechanism on every request (a verified-token memory hit included), and
//! the route check `sender_constraint: "required"`.
//!
//! - `cnf.jkt` (RFC 9449): a DPoP proof signed with that key must come with the token
//!   (`dpop`), and the token must come as `Authorization: DPoP` or in `customer-auth`: as
//!   `Authorization: Bearer` it is a downgrade (RFC 9449 §7.2), and a cookie carries no proof
//!   of who sent it.
//! - `cnf.x5t#S256` (RFC 8705 §3): the client certificate the edge verified must have that
//!   SHA-256 thumbprint (`certFingerprintSHA256`, hex, against the base64url value).
//!
//! A token with neither is a bearer token: it passes as before, except with the `DPoP` scheme
//! (which says it is bound when it is not: RFC 9449 §7.1) and on a route whose
//! `sender_constraint` is `required`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderMap;
use serde_json::Value;

use crate::identity::claims::Claims;
use crate::identity::dpop::replay::{self, ReplayMemory};
use crate::identity::dpop::{self, DpopError, DpopSettings, ProofRequest};
use crate::identity::jwt::Presentation;
use crate::io::{Clock, Platform, ReplayGuardError, TlsClientAuth};

/// The request's `DPoP` field.
pub const DPOP: http::HeaderName = http::HeaderName::from_static("dpop");

/// What the binding checks read of the request.
#[derive(Debug, Clone, Copy)]
pub struct SenderRequest<'r> {
    pub method: &'r str,
    /// The URL the request was received at, without query (`None`: the platform did not say).
    pub url: Option<&'r str>,
    pub tls_client_auth: Option<&'r TlsClientAuth>,
}

/// Why a token's binding refused the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderError {
    /// The DPoP proof is missing or fails a check: 401 `invalid_dpop_proof`.
    Proof(DpopError),
    /// A DPoP-bound token sent as `Authorization: Bearer` or in the cookie.
    NotDpopScheme,
    /// `Authorization: DPoP` with a token that is not DPoP-bound (no `cnf.jkt`).
    NotDpopBound,
    /// `cnf.x5t#S256` and no client certificate verified by the edge.
    NoCertificate,
    /// `cnf.x5t#S256` and a certificate with another thumbprint.
    CertificateMismatch,
    /// `cnf` that is not an object, or `jkt`/`x5t#S256` that is not a string.
    InvalidConfirmation,
    /// The route requires a sender-constrained token and this one is a bearer token.
    NotConstrained,
    /// `DPOP_REPLAY` is bound and did not answer: the proof cannot be told fresh.
    ReplayGuardUnavailable,
}

impl SenderError {
    /// The `error_description`: fixed text that fits a quoted header value.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Proof(e) => e.description(),
            Self::NotDpopScheme => "A DPoP-bound token must be sent with the DPoP scheme",
            Self::NotDpopBound => "The token sent with the DPoP scheme is not DPoP-bound",
            Self::NoCertificate => {
                "The token is bound to a client certificate and none was verified"
            }
            Self::CertificateMismatch => "The token is bound to another client certificate",
            Self::InvalidConfirmation => "The token cnf claim is invalid",
            Self::NotConstrained => "This route accepts only sender-constrained tokens",
            Self::ReplayGuardUnavailable => "The DPoP replay guard is unavailable",
        }
    }

    /// For the log line's `outcome`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Proof(e) => e.code(),
            Self::NotDpopScheme => "dpop_bearer_scheme",
            Self::NotDpopBound => "dpop_not_bound",
            Self::NoCertificate => "certificate_binding_missing",
            Self::CertificateMismatch => "certificate_binding_mismatch",
            Self::InvalidConfirmation => "invalid_cnf",
            Self::NotConstrained => "not_sender_constrained",
            Self::ReplayGuardUnavailable => "dpop_replay_guard_unavailable",
        }
    }

    /// Answered with the `DPoP` challenge rather than `Bearer` (RFC 9449 §7.1).
    pub fn is_dpop(&self) -> bool {
        matches!(
            self,
            Self::Proof(_) | Self::NotDpopScheme | Self::NotDpopBound
        )
    }
}

/// The token's confirmation members, read from its verified claims.
struct Confirmation<'c> {
    jkt: Option<&'c str>,
    x5t_s256: Option<&'c str>,
}

fn confirmation(claims: &Claims) -> Result<Confirmation<'_>, SenderError> {
    let cnf = match claims.get("cnf") {
        None => {
            return Ok(Confirmation {
                jkt: None,
                x5t_s256: None,
            })
        }
        Some(Value::Object(cnf)) => cnf,
        Some(_) => return Err(SenderError::InvalidConfirmation),
    };
    let text = |name: &str| match cnf.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.as_str())),
        Some(_) => Err(SenderError::InvalidConfirmation),
    };
    Ok(Confirmation {
        jkt: text("jkt")?,
        x5t_s256: text("x5t#S256")?,
    })
}

/// Whether a verified token is sender-constrained: it has a binding the JWT mechanism checks
/// (and has checked, for it to be verified). `sender_constraint: "required"`.
pub fn is_constrained(claims: &Claims) -> bool {
    confirmation(claims).is_ok_and(|c| c.jkt.is_some() || c.x5t_s256.is_some())
}

/// The route check `sender_constraint: "required"`.
pub fn require_constrained(claims: &Claims) -> Result<(), SenderError> {
    if is_constrained(claims) {
        Ok(())
    } else {
        Err(SenderError::NotConstrained)
    }
}

/// What the JWT mechanism checks after the token verified: each binding the token has.
#[allow(clippy::too_many_arguments)]
pub async fn check_bindings<P: Platform>(
    claims: &Claims,
    token: &str,
    presented: Presentation,
    seen: &HeaderMap,
    req: &SenderRequest<'_>,
    settings: &DpopSettings,
    leeway_secs: u64,
    memory: &ReplayMemory,
    p: &P,
) -> Result<(), SenderError> {
    let cnf = confirmation(claims)?;
    if let Some(expected) = cnf.x5t_s256 {
        certificate(expected, req.tls_client_auth)?;
    }
    match (cnf.jkt, presented) {
        (None, Presentation::Dpop) => Err(SenderError::NotDpopBound),
        (None, _) => Ok(()),
        (Some(_), Presentation::Bearer | Presentation::Header | Presentation::Cookie) => {
            Err(SenderError::NotDpopScheme)
        }
        (Some(jkt), Presentation::Dpop | Presentation::CustomerAuth) => {
            proof(jkt, token, seen, req, settings, leeway_secs, memory, p).await
        }
    }
}

/// RFC 8705 §3.1: the verified certificate's SHA-256 equals `cnf.x5t#S256`.
fn certificate(expected: &str, tls: Option<&TlsClientAuth>) -> Result<(), SenderError> {
    let Some(tls) = tls.filter(|t| {
        t.cert_presented == "1" && t.cert_verified == "SUCCESS" && t.cert_revoked != "1"
    }) else {
        return Err(SenderError::NoCertificate);
    };
    let hex: String = tls
        .cert_fingerprint_sha256
        .chars()
        .filter(|c| *c != ':')
        .collect();
    // 64 hex digits, as `client_certificate` reads them: `u8::from_str_radix` alone would take
    // `+f` as 0x0f, and slicing a non-ASCII string at byte offsets would panic.
    let digest = (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten();
    match digest {
        Some(d) if URL_SAFE_NO_PAD.encode(&d) == expected => Ok(()),
        Some(_) => Err(SenderError::CertificateMismatch),
        // The edge said nothing usable of the certificate: as good as none.
        None => Err(SenderError::NoCertificate),
    }
}

/// RFC 9449 §4.3 and §7.1: exactly one `DPoP` field, a valid proof for this token, request and
/// key, never seen before within its window.
#[allow(clippy::too_many_arguments)]
async fn proof<P: Platform>(
    jkt: &str,
    token: &str,
    seen: &HeaderMap,
    req: &SenderRequest<'_>,
    settings: &DpopSettings,
    leeway_secs: u64,
    memory: &ReplayMemory,
    p: &P,
) -> Result<(), SenderError> {
    let mut fields = seen.get_all(DPOP).iter();
    let proof = match (fields.next(), fields.next()) {
        (None, _) => return Err(SenderError::Proof(DpopError::Missing)),
        (Some(_), Some(_)) => return Err(SenderError::Proof(DpopError::Multiple)),
        (Some(value), None) => value
            .to_str()
            .map_err(|_| SenderError::Proof(DpopError::Malformed))?
            .trim(),
    };
    let now_secs = p.clock().now_ms() / 1000;
    let request = ProofRequest {
        proof,
        method: req.method,
        url: req.url,
        token,
        jkt,
        leeway_secs,
        now_secs,
    };
    let accepted = dpop::check(&request, settings, p.verifier())
        .await
        .map_err(SenderError::Proof)?;
    match replay::first_use(memory, &accepted, now_secs, p).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(SenderError::Proof(DpopError::Replayed)),
        Err(ReplayGuardError::Timeout | ReplayGuardError::Unreachable(_)) => {
            Err(SenderError::ReplayGuardUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(fp: &str) -> TlsClientAuth {
        TlsClientAuth {
            cert_presented: "1".into(),
            cert_verified: "SUCCESS".into(),
            cert_revoked: "0".into(),
            cert_subject_dn_rfc2253: "CN=x".into(),
            cert_fingerprint_sha256: fp.into(),
        }
    }

    #[test]
    fn the_certificate_thumbprint_is_compared_as_bytes() {
        let hex = "3f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e";
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let x5t = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(certificate(&x5t, Some(&tls(hex))), Ok(()));
        let upper_colons = hex
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(certificate(&x5t, Some(&tls(&upper_colons))), Ok(()));
        let other = format!("00{}", &hex[2..]);
        assert_eq!(
            certificate(&x5t, Some(&tls(&other))),
            Err(SenderError::CertificateMismatch)
        );
        assert_eq!(certificate(&x5t, None), Err(SenderError::NoCertificate));
        let mut failed = tls(hex);
        failed.cert_verified = "FAILED:self signed certificate".into();
        assert_eq!(
            certificate(&x5t, Some(&failed)),
            Err(SenderError::NoCertificate)
        );
        let mut revoked = tls(hex);
        revoked.cert_revoked = "1".into();
        assert_eq!(
            certificate(&x5t, Some(&revoked)),
            Err(SenderError::NoCertificate)
        );
        // The hex itself, base64url-encoded as text, is not the thumbprint.
        assert_eq!(
            certificate(&URL_SAFE_NO_PAD.encode(hex), Some(&tls(hex))),
            Err(SenderError::CertificateMismatch)
        );
    }
}

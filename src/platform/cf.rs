//! What Cloudflare's edge says of a request: where it ran (the data center, `request.cf.colo`,
//! and the Ray ID, `cf-ray`), for the request's log line and data point; and the caller's TLS
//! client certificate (`request.cf.tlsClientAuth`), for the core's request. Values that do not
//! look like what the edge sets are left out rather than copied (off Cloudflare, a caller can
//! send `cf-ray`).

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use crate::io::TlsClientAuth;

/// The log line's `colo` and `ray`, when the edge set them.
pub fn colo_and_ray(request: &web_sys::Request) -> (Option<String>, Option<String>) {
    (colo(request), ray(request))
}

/// `request.cf`, when the platform set it.
fn cf(request: &web_sys::Request) -> Option<JsValue> {
    Reflect::get(request, &JsValue::from_str("cf"))
        .ok()
        .filter(JsValue::is_object)
}

/// `request.cf.tlsClientAuth`'s fields as strings (a missing or non-string field is empty);
/// `None` without `request.cf.tlsClientAuth`.
pub fn tls_client_auth(request: &web_sys::Request) -> Option<TlsClientAuth> {
    let auth = Reflect::get(&cf(request)?, &JsValue::from_str("tlsClientAuth"))
        .ok()
        .filter(JsValue::is_object)?;
    let field = |name: &str| {
        Reflect::get(&auth, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    Some(TlsClientAuth {
        cert_presented: field("certPresented"),
        cert_verified: field("certVerified"),
        cert_revoked: field("certRevoked"),
        cert_subject_dn_rfc2253: field("certSubjectDNRFC2253"),
        cert_fingerprint_sha256: field("certFingerprintSHA256"),
    })
}

/// `request.cf.colo`: an IATA airport code such as `AMS`.
fn colo(request: &web_sys::Request) -> Option<String> {
    let cf = cf(request)?;
    let colo = Reflect::get(&cf, &JsValue::from_str("colo"))
        .ok()?
        .as_string()?;
    is_code(&colo, 8).then_some(colo)
}

/// `cf-ray: 8f1a2b3c4d5e6f70-AMS`: the id before the data center.
fn ray(request: &web_sys::Request) -> Option<String> {
    let value = request.headers().get("cf-ray").ok()??;
    let id = value.split_once('-').map_or(value.as_str(), |(id, _)| id);
    is_code(id, 32).then(|| id.to_string())
}

fn is_code(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

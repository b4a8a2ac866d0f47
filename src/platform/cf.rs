//! Where a request ran, as Cloudflare's edge says: the data center (`request.cf.colo`) and the
//! Ray ID (`cf-ray`), for the request's log line and data point. Values that do not look like
//! what the edge sets are left out rather than copied (off Cloudflare, a caller can send
//! `cf-ray`).

use js_sys::Reflect;
use wasm_bindgen::JsValue;

/// The log line's `colo` and `ray`, when the edge set them.
pub fn colo_and_ray(request: &web_sys::Request) -> (Option<String>, Option<String>) {
    (colo(request), ray(request))
}

/// `request.cf.colo`: an IATA airport code such as `AMS`.
fn colo(request: &web_sys::Request) -> Option<String> {
    let cf = Reflect::get(request, &JsValue::from_str("cf"))
        .ok()
        .filter(JsValue::is_object)?;
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

//! workerd's own `Headers` behind the core's `Fields`: read and edited in one call into
//! JavaScript each, and the gateway's own maps turned into `Headers`.

use std::cell::RefCell;

use http::{HeaderMap, HeaderName, HeaderValue};
use wasm_bindgen::{JsCast, JsValue};

use crate::io::{Edit, Fields};

/// workerd's own `Headers`, the fields of the forwarded request and response: the caller's
/// request's fields go to the origin in a copy of the object, and the origin's response's back
/// to the caller, with only the contract's names removed or set (`crate::edge::headers`). So every
/// other field crosses as workerd holds it, never read into Rust and written back: a raw
/// Latin-1 byte in a caller's or the origin's header arrives as that byte (checked in
/// Miniflare, `tests/e2e/header-rules.test.mjs`), where a value read out as a JS string reads
/// as U+FFFD (cloudflare/workerd#6927) and would be sent on as EF BF BD.
pub struct JsFields {
    pub(super) headers: web_sys::Headers,
    /// The values read so far (`None`: absent), so that a name read twice crosses into
    /// JavaScript once (the core reads `Connection` with the caller's other fields, and again
    /// when it builds the origin's request). Emptied by every edit.
    read: RefCell<Vec<(HeaderName, Option<HeaderValue>)>>,
}

impl JsFields {
    pub(super) fn new(headers: web_sys::Headers) -> Self {
        Self {
            headers,
            read: RefCell::default(),
        }
    }
}

impl Clone for JsFields {
    /// `new Headers(headers)`: a copy that can be changed, even of the immutable fields of an
    /// incoming request or a fetched response.
    fn clone(&self) -> Self {
        let copy =
            web_sys::Headers::new_with_headers(&self.headers).or_else(|_| web_sys::Headers::new());
        // With nothing read yet: the core edits a copy right away (`apply`), which would empty
        // a copied memory of the original's values anyway.
        Self::new(copy.expect("new Headers()"))
    }
}

impl std::fmt::Debug for JsFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsFields")
    }
}

impl Fields for JsFields {
    /// One call into JavaScript for all the names not read before: workerd gives a repeated
    /// field as one value joined with ", ", decoded as UTF-8.
    fn read(&self, names: &[HeaderName]) -> HeaderMap {
        let mut known = self.read.borrow_mut();
        let missing: Vec<&HeaderName> = names
            .iter()
            .filter(|name| !known.iter().any(|(k, _)| k == *name))
            .collect();
        if !missing.is_empty() {
            let joined = missing
                .iter()
                .map(|name| name.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let Ok(values) = read_headers(&self.headers, &joined) else {
                return HeaderMap::new();
            };
            for (name, value) in missing.into_iter().zip(values.split('\n')) {
                let value = (value != ABSENT)
                    .then(|| HeaderValue::from_bytes(value.as_bytes()).ok())
                    .flatten();
                known.push((name.clone(), value));
            }
        }
        let mut out = HeaderMap::with_capacity(names.len());
        for name in names {
            if let Some((_, Some(value))) = known.iter().find(|(k, _)| k == name) {
                out.append(name.clone(), value.clone());
            }
        }
        out
    }

    /// One call into JavaScript for the whole edit. Every name is deleted, present or not:
    /// listing the names the object holds (`headers.keys()`) first, to delete only those, cost
    /// more CPU than the ~35 deletes it saves (bench/profile.mjs in plain workerd: +7 µs per
    /// request). The values the gateway sets are visible ASCII (credentials are checked to
    /// be, request ids are built so): one byte per character either way.
    fn apply(&mut self, edit: &Edit<'_>) {
        let mut set = String::new();
        for (name, value) in &edit.set {
            set.push_str(name.as_str());
            set.push('\n');
            set.push_str(&String::from_utf8_lossy(value.as_bytes()));
            set.push('\n');
        }
        self.read.borrow_mut().clear();
        let remove = edit
            .remove
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        // Only an immutable `Headers` refuses, and edits are made to copies (`clone`).
        let _ = edit_headers(&self.headers, &remove, &set);
    }

    fn from_map(map: HeaderMap) -> Self {
        Self::new(
            to_js_headers(&map).unwrap_or_else(|_| web_sys::Headers::new().expect("new Headers()")),
        )
    }
}

/// What `read_headers` gives for an absent field: a NUL, which no header value holds.
const ABSENT: &str = "\0";

// Each call from wasm into JavaScript costs a crossing and a string conversion: a few hundred
// nanoseconds, for each of the ~35 names an origin request removes. These do a whole read or
// edit in one call. Names hold neither `,` nor a line break, values no line break or NUL
// (RFC 9110 §5.5; `HeaderName` and `HeaderValue` refuse them), so the lists are unambiguous.
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function read_headers(headers, names) {
  return names.split(',').map((name) => headers.get(name) ?? '\0').join('\n');
}
export function edit_headers(headers, remove, set) {
  if (remove !== '') for (const name of remove.split(',')) headers.delete(name);
  if (set !== '') {
    const pairs = set.split('\n');
    for (let i = 0; i + 1 < pairs.length; i += 2) headers.set(pairs[i], pairs[i + 1]);
  }
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn read_headers(headers: &web_sys::Headers, names: &str) -> Result<String, JsValue>;
    #[wasm_bindgen(catch)]
    fn edit_headers(headers: &web_sys::Headers, remove: &str, set: &str) -> Result<(), JsValue>;
}

/// The gateway's own maps (token endpoint and JWKS requests, problem+json answers) as
/// `Headers`, and those endpoints' responses as maps. Values cross workerd as UTF-8, not as the
/// WebIDL `ByteString`s of the Fetch standard: workerd encodes a header string as UTF-8 on the
/// wire ("as a quirk to support Unicode", `workerd/api/headers.c++`) and decodes received
/// values as UTF-8, replacing bytes that are not UTF-8 with U+FFFD before the Worker sees them
/// (cloudflare/workerd#6927). So a value passes as its UTF-8 bytes in both directions.
pub(super) fn to_js_headers(headers: &HeaderMap) -> Result<web_sys::Headers, JsValue> {
    let out = web_sys::Headers::new()?;
    for (name, value) in headers {
        match std::str::from_utf8(value.as_bytes()) {
            Ok(text) => out.append(name.as_str(), text)?,
            // Not from workerd (whose values are UTF-8) nor the gateway (ASCII): sent as workerd
            // itself would have received it, rather than dropped.
            Err(_) => out.append(name.as_str(), &String::from_utf8_lossy(value.as_bytes()))?,
        }
    }
    Ok(out)
}

pub(super) fn from_js_headers(headers: &web_sys::Headers) -> HeaderMap {
    let mut out = HeaderMap::new();
    let Ok(Some(entries)) = js_sys::try_iter(headers) else {
        return out;
    };
    for entry in entries.flatten() {
        let pair: js_sys::Array = entry.unchecked_into();
        let (Some(name), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string()) else {
            continue;
        };
        // Only what `Headers` refuses too (NUL, CR, LF) fails here; obs-text bytes pass.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
    out
}

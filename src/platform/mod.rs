//! The only code that knows it runs in a Worker: `fetch`, Workers KV, `Date` and WebCrypto
//! (`webcrypto`) behind the core's traits, and conversions between Workers' request/response objects and the core's.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::ReadableStream;

use crate::io::{
    Body, Bounded, Clock, Edit, Fields, HttpClient, HttpError, InboundResponse, KeyValue,
    OutboundRequest, StoreError,
};
use crate::proxy::{GatewayRequest, GatewayResponse};

// The token coordinator's Durable Object and the isolate's handle on it (issue 12).
mod coordinator;
pub use coordinator::DoCoordinator;
// Routes' `rate_limit` over Workers rate-limiting bindings (issue 12).
mod rate_limit;
// The env's names and the kinds of their bindings, for the configuration check (issue 17).
mod environment;
pub use environment::{environment, text};
// The exported calls' promises, and failing the one whose poll trapped (issue 17).
mod trap;
pub use rate_limit::WorkerRateLimiters;
pub use trap::call_promise;

#[cfg(not(feature = "baseline-verify"))]
mod webcrypto;
#[cfg(not(feature = "baseline-verify"))]
pub use webcrypto::WebCryptoVerifier;
#[cfg(not(feature = "baseline-verify"))]
mod signing;

/// The wasm heap's allocator: talc rather than Rust's default dlmalloc. A Worker is one thread,
/// and every request allocates (header values, the parsed token, the log line): measured with
/// bench/profile.mjs, see Cargo.toml.
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Makes the global `queueMicrotask` a bound `Promise.resolve().then`.
///
/// wasm-bindgen's executor (`js_sys::futures`) schedules every poll of a Rust future through
/// the global `queueMicrotask`, at least twice per request. workerd's own `queueMicrotask`
/// wraps each callback for its async context and error reporting, which measured about 30 µs of
/// CPU per forwarded request more than queueing the same callback with `Promise.then`
/// (`bench/profile.mjs`). Both run the callback as a microtask, in order; nothing else in this
/// Worker calls `queueMicrotask`. Runs at start-up, before any future is polled; the entry
/// module (src/js/entry.js) then wraps it, to catch a trap where it unwinds out of a poll.
pub fn use_promise_microtasks() {
    let global = js_sys::global();
    let resolved = js_sys::Promise::resolve(&JsValue::UNDEFINED);
    let then = js_sys::Reflect::get(&resolved, &JsValue::from_str("then"))
        .ok()
        .and_then(|then| then.dyn_into::<js_sys::Function>().ok());
    if let Some(then) = then {
        let queue = then.bind0(&resolved);
        let _ = js_sys::Reflect::set(&global, &JsValue::from_str("queueMicrotask"), &queue);
    }
}

/// `Date.now()`: in Workers it advances only across I/O, which is what the caches need.
#[derive(Clone, Copy)]
pub struct WorkerClock;

impl Clock for WorkerClock {
    /// `Date.now()`, not `worker::Date::now()`, which makes a `Date` object for each reading
    /// (about 11 µs per request over the few readings a request takes; bench/profile.mjs).
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    async fn sleep(&self, ms: u64) {
        worker::Delay::from(Duration::from_millis(ms)).await;
    }
}

/// The `TOKEN_CACHE` namespace, looked up in `env` on first use, so that a request served from
/// memory never pays for it. Its `get`, `put` and `delete` are called directly rather than
/// through `worker::KvStore`, which reads six properties of the binding and sends `put`'s
/// options through serde-wasm-bindgen (with a float formatter, 14 KB of wasm, for one TTL).
/// Missing binding: the gateway then answers every request with a configuration error naming
/// `TOKEN_CACHE`, so these errors are not seen.
#[derive(Clone)]
pub struct Kv {
    env: worker::Env,
    binding: &'static str,
    store: Rc<OnceCell<Option<JsValue>>>,
}

impl Kv {
    pub fn new(env: worker::Env, binding: &'static str) -> Self {
        Self {
            env,
            binding,
            store: Rc::default(),
        }
    }

    /// The KV namespace bound as `binding`, if there is one (an object with a `get` method).
    pub fn namespace(env: &worker::Env, binding: &str) -> Option<JsValue> {
        let ns = js_sys::Reflect::get(env, &JsValue::from_str(binding)).ok()?;
        let get = js_sys::Reflect::get(&ns, &JsValue::from_str("get")).ok()?;
        get.is_function().then_some(ns)
    }

    fn store(&self) -> Result<&JsValue, StoreError> {
        self.store
            .get_or_init(|| Self::namespace(&self.env, self.binding))
            .as_ref()
            .ok_or_else(|| StoreError("no KV binding".into()))
    }

    /// `namespace[method](...args)`, awaited.
    async fn call(&self, method: &str, args: &js_sys::Array) -> Result<JsValue, StoreError> {
        let ns = self.store()?;
        let kv_error = |e: JsValue| StoreError(js_message(&e));
        let f: js_sys::Function = js_sys::Reflect::get(ns, &JsValue::from_str(method))
            .and_then(|f| f.dyn_into())
            .map_err(kv_error)?;
        let promise: js_sys::Promise = f
            .apply(ns, args)
            .and_then(|p| p.dyn_into())
            .map_err(kv_error)?;
        JsFuture::from(promise).await.map_err(kv_error)
    }
}

impl KeyValue for Kv {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let args = js_sys::Array::of2(&JsValue::from_str(key), &JsValue::from_str("text"));
        Ok(self.call("get", &args).await?.as_string())
    }

    async fn put(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), StoreError> {
        let options = js_sys::Object::new();
        // A TTL is seconds, far below 2^53: exact as a JS number.
        js_sys::Reflect::set(
            &options,
            &JsValue::from_str("expirationTtl"),
            &JsValue::from_f64(ttl_secs as f64),
        )
        .map_err(|e| StoreError(js_message(&e)))?;
        let args = js_sys::Array::of3(&JsValue::from_str(key), &JsValue::from_str(value), &options);
        self.call("put", &args).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let args = js_sys::Array::of1(&JsValue::from_str(key));
        self.call("delete", &args).await.map(|_| ())
    }
}

/// The global `fetch`, with a deadline on the response head and redirects passed back rather
/// than followed (a redirect must not carry our credentials to another host).
#[derive(Clone, Copy)]
pub struct FetchClient;

impl HttpClient for FetchClient {
    type Stream = ReadableStream;
    type Fields = JsFields;

    async fn send(
        &self,
        request: OutboundRequest<ReadableStream>,
    ) -> Result<InboundResponse<ReadableStream>, HttpError> {
        let headers = to_js_headers(&request.headers).map_err(unreachable)?;
        let (status, headers, body) = fetch(
            &request.method,
            &request.url,
            &headers,
            request.body,
            request.timeout_ms,
        )
        .await?;
        Ok(InboundResponse {
            status,
            headers: from_js_headers(&headers),
            body,
        })
    }

    async fn forward(
        &self,
        request: OutboundRequest<ReadableStream, JsFields>,
    ) -> Result<InboundResponse<ReadableStream, JsFields>, HttpError> {
        let (status, headers, body) = fetch(
            &request.method,
            &request.url,
            &request.headers.headers,
            request.body,
            request.timeout_ms,
        )
        .await?;
        Ok(InboundResponse {
            status,
            headers: JsFields::new(headers),
            body,
        })
    }

    async fn read_body(
        &self,
        body: Body<ReadableStream>,
        limit: usize,
    ) -> Result<Vec<u8>, HttpError> {
        let too_long = || HttpError::TooLarge;
        let stream = match body {
            Body::Empty => return Ok(Vec::new()),
            Body::Bytes(bytes) if bytes.len() <= limit => return Ok(bytes),
            Body::Bytes(_) => return Err(too_long()),
            Body::Stream(stream) => stream,
        };
        // Chunk by chunk, so a hostile endpoint's endless body costs at most `limit` plus one
        // chunk of memory before it is cancelled.
        let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let mut bytes = Vec::new();
        while let Some(chunk) = next_chunk(&reader).await? {
            if bytes.len() + chunk.length() as usize > limit {
                let _ = reader.cancel();
                return Err(too_long());
            }
            bytes.extend_from_slice(&chunk.to_vec());
        }
        Ok(bytes)
    }

    async fn read_up_to(
        &self,
        body: Body<ReadableStream>,
        limit: usize,
    ) -> Result<Bounded<ReadableStream>, HttpError> {
        let stream = match body {
            Body::Empty => return Ok(Bounded::Fits(Vec::new())),
            Body::Bytes(bytes) if bytes.len() <= limit => return Ok(Bounded::Fits(bytes)),
            Body::Bytes(bytes) => return Ok(Bounded::Longer(Body::Bytes(bytes))),
            Body::Stream(stream) => stream,
        };
        let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let mut chunks: Vec<Uint8Array> = Vec::new();
        let mut read = 0usize;
        while read <= limit {
            match next_chunk(&reader).await? {
                Some(chunk) => {
                    read += chunk.length() as usize;
                    chunks.push(chunk);
                }
                None => {
                    let mut bytes = Vec::with_capacity(read);
                    for chunk in &chunks {
                        bytes.extend_from_slice(&chunk.to_vec());
                    }
                    return Ok(Bounded::Fits(bytes));
                }
            }
        }
        // Longer than the limit: a new stream with what was read in front, then the rest,
        // pumped by this request as the fetch consumes it (so never more than a chunk ahead).
        let pipe = web_sys::TransformStream::new().map_err(body_error)?;
        let writer = pipe.writable().get_writer().map_err(body_error)?;
        wasm_bindgen_futures::spawn_local(async move {
            let pumped: Result<(), JsValue> = async {
                for chunk in chunks {
                    JsFuture::from(writer.write_with_chunk(&chunk)).await?;
                }
                while let Some(chunk) = next_chunk(&reader)
                    .await
                    .map_err(|e| JsValue::from_str(&format!("{e:?}")))?
                {
                    JsFuture::from(writer.write_with_chunk(&chunk)).await?;
                }
                JsFuture::from(writer.close()).await?;
                Ok(())
            }
            .await;
            if let Err(e) = pumped {
                // The caller's body broke off: the origin sees its request body fail too.
                let _ = JsFuture::from(writer.abort_with_reason(&e)).await;
            }
        });
        Ok(Bounded::Longer(Body::Stream(pipe.readable())))
    }
}

/// One `fetch`, with a deadline on the response head and redirects passed back rather than
/// followed (a redirect must not carry our credentials to another host). `headers` go as they
/// are: workerd copies the object, bytes and all.
async fn fetch(
    method: &Method,
    url: &str,
    headers: &web_sys::Headers,
    body: Body<ReadableStream>,
    timeout_ms: u64,
) -> Result<(u16, web_sys::Headers, Body<ReadableStream>), HttpError> {
    let init = web_sys::RequestInit::new();
    init.set_method(method.as_str());
    init.set_headers(headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    match body {
        Body::Empty => {}
        Body::Bytes(bytes) => init.set_body(&Uint8Array::from(&bytes[..])),
        Body::Stream(stream) => init.set_body(&stream),
    }
    // The deadline covers the response head only; the body may stream for longer.
    // `AbortSignal.timeout`: one call, and nothing to clear afterwards. An
    // `AbortController` with our own `setTimeout`, its bound `abort` and a `clearTimeout`
    // cost about 6 µs of CPU per request more (bench/profile.mjs, plain workerd), and workerd
    // drops a request's pending timers with the request.
    let delay = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    let signal = web_sys::AbortSignal::timeout_with_u32(delay);
    init.set_signal(Some(&signal));
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let fetched = JsFuture::from(global.fetch_with_str_and_init(url, &init)).await;
    let response = match fetched {
        Ok(value) => value,
        Err(_) if signal.aborted() => return Err(HttpError::Timeout),
        Err(e) => return Err(unreachable(e)),
    };
    let response: web_sys::Response = response.dyn_into().map_err(unreachable)?;
    Ok((
        response.status(),
        response.headers(),
        response.body().map_or(Body::Empty, Body::Stream),
    ))
}

/// The next chunk of a body being read, `None` at its end.
async fn next_chunk(
    reader: &web_sys::ReadableStreamDefaultReader,
) -> Result<Option<Uint8Array>, HttpError> {
    let result = JsFuture::from(reader.read()).await.map_err(body_error)?;
    let done = js_sys::Reflect::get(&result, &JsValue::from_str("done"))
        .map_err(body_error)?
        .as_bool()
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    let value = js_sys::Reflect::get(&result, &JsValue::from_str("value")).map_err(body_error)?;
    value
        .dyn_into::<Uint8Array>()
        .map(Some)
        .map_err(|_| HttpError::Body("a body chunk that is not bytes".into()))
}

pub(crate) fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

fn unreachable(e: JsValue) -> HttpError {
    HttpError::Unreachable(js_message(&e))
}

fn body_error(e: JsValue) -> HttpError {
    HttpError::Body(js_message(&e))
}

/// workerd's own `Headers`, the fields of the forwarded request and response: the caller's
/// request's fields go to the origin in a copy of the object, and the origin's response's back
/// to the caller, with only the contract's names removed or set (`crate::headers`). So every
/// other field crosses as workerd holds it, never read into Rust and written back: a raw
/// Latin-1 byte in a caller's or the origin's header arrives as that byte (checked in
/// Miniflare, `tests/e2e/header-rules.test.mjs`), where a value read out as a JS string reads
/// as U+FFFD (cloudflare/workerd#6927) and would be sent on as EF BF BD.
pub struct JsFields {
    headers: web_sys::Headers,
    /// The values read so far (`None`: absent), so that a name read twice crosses into
    /// JavaScript once (the core reads `Connection` with the caller's other fields, and again
    /// when it builds the origin's request). Emptied by every edit.
    read: RefCell<Vec<(HeaderName, Option<HeaderValue>)>>,
}

impl JsFields {
    fn new(headers: web_sys::Headers) -> Self {
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
fn to_js_headers(headers: &HeaderMap) -> Result<web_sys::Headers, JsValue> {
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

fn from_js_headers(headers: &web_sys::Headers) -> HeaderMap {
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

/// The incoming Workers request as the core's request. `None` for a method `http` cannot name.
pub fn to_gateway_request(
    raw: &web_sys::Request,
) -> Option<GatewayRequest<ReadableStream, JsFields>> {
    let method = Method::from_bytes(raw.method().as_bytes()).ok()?;
    let (path, query) = path_and_query(&raw.url())?;
    Some(GatewayRequest {
        method,
        path,
        query,
        headers: JsFields::new(raw.headers()),
        body: raw.body().map_or(Body::Empty, Body::Stream),
    })
}

/// The origin (`scheme://authority`) of the request's URL as workerd serialised it.
pub fn url_origin(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    Some(&url[..end])
}

/// Path and query of the request's URL. workerd hands over a URL it has already parsed and
/// serialised (WHATWG): `scheme://authority/path?query#fragment`, where the authority holds no
/// `/`, `?` or `#` (userinfo percent-encodes them) and an `http(s)` path is never empty. So the
/// path is what runs from the first `/` after `://` to `?` or `#`, exactly what a URL parser
/// would give, without parsing the host again. Anything else goes through `http::Uri`.
///
/// The path is handed on as it is; the route phase normalizes it (`crate::path`). What
/// workerd has already done to a raw request target (checked with raw request lines in
/// Miniflare, tests/e2e/paths.test.mjs): `\` becomes `/` and `.`, `..`, `%2e`, `.%2E`… dot
/// segments are resolved, as WHATWG parsing does for http(s); `//`, `..;`, `;x`, `%2F`, `%5c`,
/// `%61` and the hex case of escapes arrive as sent; `^` arrives as `%5E`; a raw byte that is
/// not UTF-8 arrives as `%EF%BF%BD` (U+FFFD); the fragment is dropped. So a raw backslash is
/// read here as a permissive origin reads it, and the normalizer's own refusal of `\` only
/// matters off workerd; everything else the normalizer refuses does reach it.
fn path_and_query(url: &str) -> Option<(String, Option<String>)> {
    let serialised = url
        .find("://")
        .map(|i| &url[i + 3..])
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]));
    let Some(rest) = serialised else {
        let url = url.split_once('#').map_or(url, |(before, _)| before);
        let uri: http::Uri = url.parse().ok()?;
        return Some((uri.path().to_string(), uri.query().map(str::to_string)));
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    Some(match rest.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (rest.to_string(), None),
    })
}

/// The core's response as a Workers response; a streamed origin body passes through untouched.
pub fn to_worker_response(
    resp: GatewayResponse<ReadableStream, JsFields>,
) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status);
    init.set_headers(&resp.headers.headers);
    let raw = match resp.body {
        Body::Empty => web_sys::Response::new_with_opt_str_and_init(None, &init)?,
        Body::Bytes(mut bytes) => {
            web_sys::Response::new_with_opt_u8_array_and_init(Some(&mut bytes[..]), &init)?
        }
        Body::Stream(stream) => {
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), &init)?
        }
    };
    Ok(raw)
}

//! The only code that knows it runs in a Worker: `fetch` (`fetch`), Workers KV (`kv`), `Date`
//! and WebCrypto (`webcrypto`) behind the core's traits, workerd's `Headers` as the core's
//! fields (`fields`), Workers' request and response objects as the core's (`convert`), where
//! the request ran (`cf`), and the `METRICS` dataset (`metrics`).

use std::time::Duration;

use wasm_bindgen::{JsCast, JsValue};

use crate::io::Clock;

mod convert;
// The token coordinator's Durable Object pieces and the isolate's handle on it (issue 12).
mod coordinator;
mod fetch;
mod fields;
mod kv;

pub use convert::{to_gateway_request, to_worker_response, url_origin};
pub use fetch::FetchClient;
pub use kv::Kv;

/// The KV namespace binding of cached tokens and key sets.
pub const KV_BINDING: &str = "TOKEN_CACHE";

pub use coordinator::{respond, wait_until, DoCoordinator, DoStorage};
// The DPoP replay guard's Durable Object pieces and the isolate's handle on it (issue 21).
mod replay;
pub use replay::{DoReplayGuard, GuardDoStorage};
// Routes' `rate_limit` over Workers rate-limiting bindings (issue 12).
mod rate_limit;
// Where the request ran (`request.cf.colo`, `cf-ray`), for its log line (issue 19).
mod cf;
pub use cf::colo_and_ray;
// The env's names and the kinds of their bindings, for the configuration check (issue 17).
mod environment;
pub use environment::{environment, text};
// The `METRICS` Analytics Engine dataset (issue 19).
mod metrics;
pub use metrics::WorkerMetrics;
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
/// module (src/platform/entry.js) then wraps it, to catch a trap where it unwinds out of a poll.
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

/// A JavaScript error's message, for logs.
pub(crate) fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

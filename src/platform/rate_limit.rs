//! Workers rate-limiting bindings (`[[ratelimits]]`) behind the core's `RateLimiters`.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use super::js_message;
use crate::io::{RateLimitError, RateLimiters};

/// Looks the route's binding up in `env` at each check: only requests on a route with a
/// `rate_limit` pay for it. `binding.limit({ key })` is called directly rather than through
/// `worker::RateLimiter`, whose options and outcome go through serde-wasm-bindgen (issue 13).
#[derive(Clone)]
pub struct WorkerRateLimiters {
    env: Env,
}

impl WorkerRateLimiters {
    pub fn new(env: Env) -> Self {
        Self { env }
    }
}

impl RateLimiters for WorkerRateLimiters {
    async fn allow(&self, binding: &str, key: &str) -> Result<bool, RateLimitError> {
        // Bound means an object with a `limit` method; anything else is not a rate limiter.
        let limiter = Reflect::get(&self.env, &JsValue::from_str(binding))
            .ok()
            .filter(|v| v.is_object())
            .ok_or(RateLimitError::NotBound)?;
        let limit: Function = Reflect::get(&limiter, &JsValue::from_str("limit"))
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or(RateLimitError::NotBound)?;
        let failed = |e: JsValue| RateLimitError::Failed(js_message(&e));
        let options = js_sys::Object::new();
        Reflect::set(&options, &JsValue::from_str("key"), &JsValue::from_str(key))
            .map_err(failed)?;
        let outcome = JsFuture::from(Promise::resolve(
            &limit.call1(&limiter, &options).map_err(failed)?,
        ))
        .await
        .map_err(failed)?;
        // `{ success: boolean }`; an outcome without it is a failure, as it was to decode.
        Reflect::get(&outcome, &JsValue::from_str("success"))
            .ok()
            .and_then(|v| v.as_bool())
            .ok_or_else(|| RateLimitError::Failed("an outcome without `success`".into()))
    }
}

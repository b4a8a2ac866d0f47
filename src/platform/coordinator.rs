//! The token coordinator on Workers: the isolate's handle on it through the `TOKEN_COORDINATOR`
//! binding, and the pieces its Durable Object class (`TokenCoordinator`, in the glue of
//! `lib.rs`) runs the core's coordinator (`crate::token::coordinator`) with: its storage, its
//! `waitUntil`, its answers.

use std::cell::OnceCell;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use super::js_message;
use crate::io::{Coordinator, CoordinatorError, KeyPage, KeyValue, StoreError};
use crate::token::protocol::MAX_ANSWER_BYTES;

/// The Durable Object binding; bindings are not settings, so `config.rs` does not list it.
pub const BINDING: &str = "TOKEN_COORDINATOR";
/// Every isolate asks the same object: one token per deployment.
const OBJECT_NAME: &str = "token";

// The binding, the stub, the object's state and its storage are used through their own
// JavaScript methods (`js_sys`), not workers-rs's `Stub`, `Request`, `Response`, `State` and
// `Storage`: those brought about 50 KB of gzip wasm (serde-wasm-bindgen for storage values,
// request and response conversions) for one string in and one string out (issue 13).

/// `target[method](...args)`, its result (a promise, for every method used here) awaited.
pub(super) async fn call(
    target: &JsValue,
    method: &str,
    args: &js_sys::Array,
) -> Result<JsValue, JsValue> {
    let f: Function = Reflect::get(target, &JsValue::from_str(method))?.dyn_into()?;
    JsFuture::from(Promise::resolve(&f.apply(target, args)?)).await
}

/// The isolate's handle: the binding looked up on first use (most requests never need it).
#[derive(Clone)]
pub struct DoCoordinator {
    env: Env,
    stub: Rc<OnceCell<Option<JsValue>>>,
}

impl DoCoordinator {
    pub fn new(env: Env) -> Self {
        Self {
            env,
            stub: Rc::default(),
        }
    }

    /// `env.TOKEN_COORDINATOR.get(env.TOKEN_COORDINATOR.idFromName("token"))`, if the binding
    /// is a Durable Object namespace.
    fn stub(&self) -> Option<&JsValue> {
        self.stub
            .get_or_init(|| {
                let namespace = Reflect::get(&self.env, &JsValue::from_str(BINDING)).ok()?;
                let method = |name: &str| -> Option<Function> {
                    Reflect::get(&namespace, &JsValue::from_str(name))
                        .ok()?
                        .dyn_into()
                        .ok()
                };
                let id = method("idFromName")?
                    .call1(&namespace, &JsValue::from_str(OBJECT_NAME))
                    .ok()?;
                let stub = method("get")?.call1(&namespace, &id).ok()?;
                (!stub.is_undefined() && !stub.is_null()).then_some(stub)
            })
            .as_ref()
    }
}

impl Coordinator for DoCoordinator {
    fn is_bound(&self) -> bool {
        self.stub().is_some()
    }

    async fn exchange(&self, request: &str, timeout_ms: u64) -> Result<String, CoordinatorError> {
        let unreachable = |e: JsValue| CoordinatorError::Unreachable(js_message(&e));
        let stub = self
            .stub()
            .ok_or_else(|| CoordinatorError::Unreachable("not bound".into()))?;
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_body(&JsValue::from_str(request));
        // The URL is a placeholder: an object is addressed by its stub, and nothing secret is
        // in it.
        let args = js_sys::Array::of2(&JsValue::from_str("https://token-coordinator/"), &init);
        let answered = within(timeout_ms, async {
            let resp: web_sys::Response = call(stub, "fetch", &args).await?.dyn_into()?;
            if resp.status() != 200 {
                return Err(JsValue::from_str(&format!(
                    "coordinator answered {}",
                    resp.status()
                )));
            }
            let text = JsFuture::from(resp.text()?).await?;
            text.as_string()
                .ok_or_else(|| JsValue::from_str("an answer that is not text"))
        })
        .await
        .ok_or(CoordinatorError::Timeout)?
        .map_err(unreachable)?;
        if answered.len() > MAX_ANSWER_BYTES {
            return Err(CoordinatorError::Unreachable("answer too long".into()));
        }
        Ok(answered)
    }
}

/// `fut`'s output, or `None` if `ms` pass first (the future is then dropped).
pub(super) async fn within<F: Future>(ms: u64, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut deadline = std::pin::pin!(worker::Delay::from(Duration::from_millis(ms)));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Durable Object storage (`state.storage`) as the core's store. It has no expiry of its own:
/// readers check a token's usability, and each new token overwrites the one key.
#[derive(Clone)]
pub struct DoStorage(pub JsValue);

impl DoStorage {
    async fn call(&self, method: &str, args: &js_sys::Array) -> Result<JsValue, StoreError> {
        call(&self.0, method, args)
            .await
            .map_err(|e| StoreError(js_message(&e)))
    }
}

impl KeyValue for DoStorage {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        // A value that is not a string is a miss like any other that does not decode.
        let args = js_sys::Array::of1(&JsValue::from_str(key));
        Ok(self.call("get", &args).await?.as_string())
    }

    async fn put(&self, key: &str, value: &str, _ttl_secs: u64) -> Result<(), StoreError> {
        let args = js_sys::Array::of2(&JsValue::from_str(key), &JsValue::from_str(value));
        self.call("put", &args).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let args = js_sys::Array::of1(&JsValue::from_str(key));
        self.call("delete", &args).await.map(|_| ())
    }

    /// The coordinator holds one token key and lists nothing (no revocation check runs in
    /// it): refused rather than answered wrongly.
    async fn list(&self, _: &str, _: Option<&str>, _: usize) -> Result<KeyPage, StoreError> {
        Err(StoreError("Durable Object storage is not listed".into()))
    }
}

/// `state.waitUntil(promise)`.
pub fn wait_until(state: &JsValue, task: impl Future<Output = ()> + 'static) {
    let promise = wasm_bindgen_futures::future_to_promise(async move {
        task.await;
        Ok(JsValue::UNDEFINED)
    });
    let wait_until =
        Reflect::get(state, &JsValue::from_str("waitUntil")).and_then(|f| f.dyn_into::<Function>());
    // Without `waitUntil` the task still runs; only the object's lifetime is not extended
    // for it.
    if let Ok(f) = wait_until {
        let _ = f.call1(state, &promise);
    }
}

/// A response with `body` and `status`: JSON (an answer), or without a content type (an
/// error, as `worker::Response::error` gave it).
pub fn respond(
    body: &str,
    status: u16,
    content_type: Option<&str>,
) -> Result<web_sys::Response, JsValue> {
    let headers = web_sys::Headers::new()?;
    if let Some(content_type) = content_type {
        headers.set("content-type", content_type)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers);
    let mut bytes = body.as_bytes().to_vec();
    web_sys::Response::new_with_opt_u8_array_and_init(Some(&mut bytes[..]), &init)
}

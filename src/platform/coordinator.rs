//! The token coordinator on Workers: the Durable Object class `TokenCoordinator` that runs the
//! core's coordinator (`crate::token::coordinator`) over its own storage, and the isolate's
//! handle on it through the `TOKEN_COORDINATOR` binding.

use std::cell::OnceCell;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use super::{js_message, FetchClient, Kv, WorkerClock};
use crate::identity::jwt::RustCryptoVerifier;
use crate::io::{
    Clock, Coordinator, CoordinatorError, KeyValue, NoCoordinator, NoRateLimiters, StoreError,
};
use crate::proxy::log::TaskLog;
use crate::proxy::Services;
use crate::token::coordinator::{Mirrored, TokenCoordinator as Core};
use crate::token::protocol::MAX_ANSWER_BYTES;
use crate::token::TokenConfig;

/// The Durable Object binding; bindings are not settings, so `config.rs` does not list it.
pub const BINDING: &str = "TOKEN_COORDINATOR";
/// Every isolate asks the same object: one token per deployment.
const OBJECT_NAME: &str = "token";

// The binding, the stub, the object's state and its storage are used through their own
// JavaScript methods (`js_sys`), not workers-rs's `Stub`, `Request`, `Response`, `State` and
// `Storage`: those brought about 50 KB of gzip wasm (serde-wasm-bindgen for storage values,
// request and response conversions) for one string in and one string out (issue 13).

/// `target[method](...args)`, its result (a promise, for every method used here) awaited.
async fn call(target: &JsValue, method: &str, args: &js_sys::Array) -> Result<JsValue, JsValue> {
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
async fn within<F: Future>(ms: u64, fut: F) -> Option<F::Output> {
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
struct DoStorage(JsValue);

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
}

/// The coordinator object, exported as the Durable Object class `TokenCoordinator`: workerd
/// constructs it with `(state, env)` and calls `fetch(request)`; a plain class is enough (the
/// shim wraps it like any other exported class). Its memory (the current token, the back-off)
/// lasts as long as the object stays in memory; its storage, sealed like KV, outlives that.
#[wasm_bindgen]
pub struct TokenCoordinator {
    state: JsValue,
    env: Env,
    core: Rc<Core>,
    config: OnceCell<Option<Rc<TokenConfig>>>,
}

impl TokenCoordinator {
    /// The token settings, read once per object from the Worker's own settings.
    fn config(&self) -> Option<Rc<TokenConfig>> {
        self.config
            .get_or_init(|| {
                let lookup = |name: &str| {
                    Reflect::get(&self.env, &JsValue::from_str(name))
                        .ok()
                        .and_then(|v| v.as_string())
                };
                match TokenConfig::from_settings(&lookup) {
                    Ok(cfg) => Some(Rc::new(cfg)),
                    Err(e) => {
                        worker::console_error!(
                            "{}",
                            crate::proxy::log::config_error_line(&e, Some("coordinator"))
                        );
                        None
                    }
                }
            })
            .clone()
    }
}

/// `state.waitUntil(promise)`.
fn wait_until(state: &JsValue, task: impl Future<Output = ()> + 'static) {
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
fn respond(
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

#[wasm_bindgen]
impl TokenCoordinator {
    #[wasm_bindgen(constructor)]
    pub fn new(state: JsValue, env: JsValue) -> Self {
        Self {
            state,
            env: env.unchecked_into(),
            core: Rc::new(Core::new()),
            config: OnceCell::new(),
        }
    }

    /// The answer to one ask. Its promise is `call_promise`'s, so that a trap in its poll
    /// fails this ask alone, at once (issue 17); the asking isolate then fills its own cache.
    pub fn fetch(&self, req: web_sys::Request) -> Promise {
        let config = self.config();
        let (state, env, core) = (self.state.clone(), self.env.clone(), Rc::clone(&self.core));
        super::call_promise(async move {
            answer(config, state, env, core, req)
                .await
                .map(JsValue::from)
        })
    }
}

async fn answer(
    config: Option<Rc<TokenConfig>>,
    state: JsValue,
    env: Env,
    core: Rc<Core>,
    req: web_sys::Request,
) -> Result<web_sys::Response, JsValue> {
    // An answer that is not the protocol's makes the isolate work alone, as if unbound.
    let Some(cfg) = config else {
        return respond("token settings are invalid", 500, None);
    };
    let ask = JsFuture::from(req.text()?)
        .await?
        .as_string()
        .unwrap_or_default();
    let storage = Reflect::get(&state, &JsValue::from_str("storage"))?;
    // Its own storage, mirrored to KV; no coordinator (it is the one), and no JWT is
    // checked here, so the verifier and rate limiters are never used.
    let platform = Services {
        http: FetchClient,
        store: Mirrored {
            own: DoStorage(storage),
            kv: Kv::new(env, crate::KV_BINDING),
        },
        clock: WorkerClock,
        verifier: RustCryptoVerifier,
        coordinator: NoCoordinator,
        rate_limiters: NoRateLimiters,
    };
    let answered = core.answer(&cfg, &platform, &ask).await;
    let Some(answered) = answered else {
        return respond("not an ask", 400, None);
    };
    if let Some(job) = answered.refresh {
        // After the answer: the asking isolate does not wait for the endpoint.
        wait_until(&state, async move {
            let started = WorkerClock.now_ms();
            let outcome = core.refresh(job, &cfg, &platform).await;
            let log = TaskLog {
                event: "coordinator_refresh",
                token: outcome.as_str(),
                token_source: outcome.source().map(|s| s.as_str()),
                token_error: outcome.error().map(|e| e.code()),
                config_error: outcome.error().and_then(|e| e.config_problem()),
                jwks: None,
                total_ms: WorkerClock.now_ms().saturating_sub(started),
            };
            if log.config_error.is_some() {
                worker::console_error!("{}", log.to_json());
            } else {
                worker::console_log!("{}", log.to_json());
            }
        });
    }
    respond(&answered.body, 200, Some("application/json"))
}

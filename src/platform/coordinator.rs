//! The token coordinator on Workers: the Durable Object class `TokenCoordinator` that runs the
//! core's coordinator (`crate::token::coordinator`) over its own storage, and the isolate's
//! handle on it through the `TOKEN_COORDINATOR` binding.

use std::cell::OnceCell;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State};

use super::{FetchClient, Kv, WorkerClock};
use crate::io::{
    Coordinator, CoordinatorError, KeyValue, NoCoordinator, NoRateLimiters, StoreError,
};
use crate::jwt::RustCryptoVerifier;
use crate::log::TaskLog;
use crate::proxy::Services;
use crate::token::coordinator::{Mirrored, TokenCoordinator as Core};
use crate::token::protocol::MAX_ANSWER_BYTES;
use crate::token::TokenConfig;

/// The Durable Object binding; bindings are not settings, so `config.rs` does not list it.
pub const BINDING: &str = "TOKEN_COORDINATOR";
/// Every isolate asks the same object: one token per deployment.
const OBJECT_NAME: &str = "token";

/// The isolate's handle: the binding looked up on first use (most requests never need it).
#[derive(Clone)]
pub struct DoCoordinator {
    env: Env,
    stub: Rc<OnceCell<Option<worker::Stub>>>,
}

impl DoCoordinator {
    pub fn new(env: Env) -> Self {
        Self {
            env,
            stub: Rc::default(),
        }
    }

    fn stub(&self) -> Option<&worker::Stub> {
        self.stub
            .get_or_init(|| {
                let namespace = self.env.durable_object(BINDING).ok()?;
                let id = namespace.id_from_name(OBJECT_NAME).ok()?;
                id.get_stub().ok()
            })
            .as_ref()
    }
}

impl Coordinator for DoCoordinator {
    fn is_bound(&self) -> bool {
        self.stub().is_some()
    }

    async fn exchange(&self, request: &str, timeout_ms: u64) -> Result<String, CoordinatorError> {
        let unreachable = |e: worker::Error| CoordinatorError::Unreachable(e.to_string());
        let stub = self
            .stub()
            .ok_or_else(|| CoordinatorError::Unreachable("not bound".into()))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(request)));
        // The URL is a placeholder: an object is addressed by its stub, and nothing secret is
        // in it.
        let req =
            Request::new_with_init("https://token-coordinator/", &init).map_err(unreachable)?;
        let answered = within(timeout_ms, async {
            let mut resp = stub.fetch_with_request(req).await?;
            if resp.status_code() != 200 {
                return Err(worker::Error::RustError(format!(
                    "coordinator answered {}",
                    resp.status_code()
                )));
            }
            resp.text().await
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

/// Durable Object storage as the core's store. It has no expiry of its own: readers check a
/// token's usability, and each new token overwrites the one key.
#[derive(Clone)]
struct DoStorage(Rc<worker::Storage>);

impl KeyValue for DoStorage {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        // A value that is not a string is a miss like any other that does not decode.
        self.0
            .get::<String>(key)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn put(&self, key: &str, value: &str, _ttl_secs: u64) -> Result<(), StoreError> {
        self.0
            .put(key, value)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0
            .delete(key)
            .await
            .map(|_| ())
            .map_err(|e| StoreError(e.to_string()))
    }
}

/// The coordinator object. Its memory (the current token, the back-off) lasts as long as the
/// object stays in memory; its storage, sealed like KV, outlives that.
#[durable_object(fetch)]
pub struct TokenCoordinator {
    state: State,
    env: Env,
    core: Rc<Core>,
    config: OnceCell<Option<Rc<TokenConfig>>>,
}

impl TokenCoordinator {
    /// The token settings, read once per object from the Worker's own settings.
    fn config(&self) -> Option<Rc<TokenConfig>> {
        self.config
            .get_or_init(|| {
                let lookup = |name: &str| self.env.var(name).ok().map(|v| v.to_string());
                match TokenConfig::from_settings(&lookup) {
                    Ok(cfg) => Some(Rc::new(cfg)),
                    Err(e) => {
                        worker::console_error!(
                            "{}",
                            serde_json::json!({"event": "config_error", "setting": e.setting, "problem": e.problem, "in": "coordinator"})
                        );
                        None
                    }
                }
            })
            .clone()
    }
}

impl DurableObject for TokenCoordinator {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            core: Rc::new(Core::new()),
            config: OnceCell::new(),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        // An answer that is not the protocol's makes the isolate work alone, as if unbound.
        let Some(cfg) = self.config() else {
            return Response::error("token settings are invalid", 500);
        };
        let ask = req.text().await?;
        // Its own storage, mirrored to KV; no coordinator (it is the one), and no JWT is
        // checked here, so the verifier and rate limiters are never used.
        let platform = Services {
            http: FetchClient,
            store: Mirrored {
                own: DoStorage(Rc::new(self.state.storage())),
                kv: Kv::new(self.env.clone(), crate::KV_BINDING),
            },
            clock: WorkerClock,
            verifier: RustCryptoVerifier,
            coordinator: NoCoordinator,
            rate_limiters: NoRateLimiters,
        };
        let answered = self.core.answer(&cfg, &platform, &ask).await;
        let Some(answered) = answered else {
            return Response::error("not an ask", 400);
        };
        if let Some(job) = answered.refresh {
            // After the answer: the asking isolate does not wait for the endpoint.
            let core = self.core.clone();
            self.state.wait_until(async move {
                let started = worker::Date::now().as_millis();
                let outcome = core.refresh(job, &cfg, &platform).await;
                let log = TaskLog {
                    event: "coordinator_refresh",
                    token: outcome.as_str(),
                    token_source: outcome.source().map(|s| s.as_str()),
                    token_error: outcome.error().map(|e| e.code()),
                    config_error: outcome.error().and_then(|e| e.config_problem()),
                    jwks: None,
                    total_ms: worker::Date::now().as_millis().saturating_sub(started),
                };
                if log.config_error.is_some() {
                    worker::console_error!("{}", log.to_json());
                } else {
                    worker::console_log!("{}", log.to_json());
                }
            });
        }
        let mut resp = Response::ok(answered.body)?;
        resp.headers_mut().set("content-type", "application/json")?;
        Ok(resp)
    }
}

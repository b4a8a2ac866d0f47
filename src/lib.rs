//! edge-auth-proxy: a Cloudflare Worker that validates the caller's customer JWT at the edge,
//! attaches an OAuth client-credentials access token, the JWT and an API key, and forwards the
//! request to the origin. Every setting and behaviour is described in `docs/configuration.md`.
//!
//! # Layout
//!
//! The core knows nothing of Workers; it reaches time, storage and HTTP through `io`, so
//! `cargo test` runs it natively with a fixed clock and in-memory fakes. `src/` holds these
//! wings and this file:
//!
//! - `io`: the traits the core needs from a platform (clock, KV, HTTP, signature checks and
//!   signing, the token coordinator, rate limiters), `Platform` and `Services`, the one handle
//!   bundling them that the core is passed by reference, and the request and response types.
//! - `config`: the typed `Config`, assembled once per isolate from each wing's own settings
//!   with every problem found at once (`setting` reads one setting, `registry` lists them all,
//!   `entries` reads `ROUTES` and `JWT_PROVIDERS` field by field, `suggest` says "did you
//!   mean"); `check` is `npm run check-config`, the same code run before a deploy.
//! - `proxy`: the request path. `Gateway::proxy` is the conductor: route → rate limit by
//!   address → preflight → authenticate → rate limit by identity → token → rewrite → forward
//!   (replayed once when the origin refuses the token) → respond, each phase in the file named
//!   for it, returning `Step::Continue` or `Step::Respond`, with one error exit. Also the
//!   isolate's background work (`background`), the one JSON log line per request (`log`), and
//!   the `METRICS` data points (Analytics Engine) built from the log lines (`metrics`).
//!   Before routing, the gateway's own paths (its public keys,
//!   `/.well-known/edge-auth-proxy/jwks.json`); at forwarding, the gateway-signed assertion
//!   bound to each sent request (`assertion`).
//! - `identity`: who is calling. Each route's `auth` and policy are compiled at configuration
//!   time into a `requirement::Requirement` (Envoy jwt_authn's requirement per route): the
//!   mechanism that produces an identity (`mechanism::jwt`: a customer JWT from the route's
//!   providers; `mechanism::opaque`: an identifier vouched for by introspection), what a
//!   missing identity and a failed one get (refuse, forward, report), and the checks after it
//!   (the policy, then the customer id). `Identities::authenticate` runs it and returns the
//!   verified caller or an `IdentityError`. Below it: one identifier per request
//!   (`identifiers`), token verification (`jwt`), key sets (`jwks`), providers, introspection
//!   (`opaque`), claims, policy, customer id, object-level `bind`, the partner's
//!   `client_certificate`, and tokens taken back before their `exp` (`revocation`: a
//!   provider's `introspect`, the subject-wide cut-off in KV), checked after the policy. Beside them, the gateway's own identity:
//!   its private keys (JWK), the key set it publishes and signing a JWS through the
//!   platform's `Signer` (`signing`), the same JOSE algorithms from the other side.
//! - `token`: the gateway's own credential: the client-credentials grant, the isolate's token
//!   cache (memory, KV, endpoint; one fill at a time; refresh ahead; drop after an origin 401;
//!   back-off), and the coordinator that runs the same cache once for the deployment.
//! - `edge`: HTTP at the gateway's two edges, without I/O: the canonical request path, the
//!   credential cookies, the header rules both ways, `WWW-Authenticate` challenges and which
//!   origin 401s refuse the gateway's token.
//! - `error`: the gateway's errors (identity's wrapped once), each described in one place, and
//!   their one mapping to problem+json.
//! - `support`: building blocks that know nothing of the gateway: a bounded map, one fill at
//!   a time, a dependency's back-off, the URLs settings hold.
//! - `platform` (wasm only): the `io` traits over `fetch`, KV, `Date` and WebCrypto, the Durable
//!   Object pieces (the token coordinator's, the DPoP replay guard's), the `METRICS` dataset, the
//!   request's colo and Ray ID, and the entry module (`entry.js`); with the glue below, the only
//!   code that names `worker`. It imports neither `proxy` nor this file.
//!
//! # A new identity mechanism
//!
//! A mechanism that produces an identity (a signed assertion, say) is one new file in
//! `identity/mechanism/` and one variant of `requirement::Mechanism` (with its arm in
//! `Identities::run`, and the `auth` word or route field that selects it in
//! `requirement::Requirement::compile`); its refusals are variants of `IdentityError`,
//! described once in `error::describe_identity`. A check on the request or on the verified
//! identity (a client certificate, `bind`, a sender constraint) is one new file and one
//! variant of `requirement::Check`, run in order after the mechanism. A proof bound to a JWT
//! (DPoP, `cnf.x5t#S256`) is a check of the JWT mechanism. Nothing in `proxy` changes: the
//! conductor only runs the requirement. (Before this layout, such a change touched routes,
//! proxy, identity, headers, error in five parallel matches, log and config.)
//!
//! The exported `fetch`, `scheduled`, `TokenCoordinator` and `ReplayGuard` below are glue: they
//! build the platform's adapters, run the core and hand back its answer.

pub mod config;
pub mod edge;
pub mod error;
pub mod identity;
pub mod io;
pub mod proxy;
pub mod support;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod platform;

#[cfg(target_arch = "wasm32")]
mod glue {
    use std::cell::OnceCell;
    use std::rc::Rc;

    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::JsValue;
    use worker::{event, Context, Env};

    use crate::io::Services;
    use crate::platform::{
        call_promise, to_gateway_request, to_worker_response, DoCoordinator, DoReplayGuard,
        FetchClient, Kv, WorkerClock, WorkerMetrics, WorkerRateLimiters, KV_BINDING,
    };
    use crate::proxy::log::TaskLog;
    use crate::proxy::Gateway;

    // `baseline-verify` builds check every token in full with jwt-compact's pure-Rust code:
    // the baseline that `bench/verify-cost.mjs` measures WebCrypto and the verified-token
    // memory against. Never deployed.
    #[cfg(not(feature = "baseline-verify"))]
    pub(super) type Verifier = crate::platform::WebCryptoVerifier;
    #[cfg(feature = "baseline-verify")]
    pub(super) type Verifier = crate::identity::jwt::RustCryptoVerifier;

    thread_local! {
        // One gateway per isolate: configuration is checked once and the caches live as long
        // as the isolate, shared by every request it serves.
        static GATEWAY: OnceCell<Rc<Gateway>> = const { OnceCell::new() };
    }

    fn gateway(env: &Env) -> Rc<Gateway> {
        GATEWAY.with(|cell| {
            cell.get_or_init(|| {
                // Vars and secrets are the env's strings; bindings are checked by kind, and
                // every name under the gateway's prefixes must be one of its settings.
                let lookup = |name: &str| crate::platform::text(env, name);
                let listed = crate::platform::environment(env);
                let config = crate::config::Config::from_environment(&lookup, &listed);
                let gateway = Gateway::from_config(config);
                #[cfg(feature = "baseline-verify")]
                let gateway = gateway.without_verified_memory();
                if let Some(problems) = gateway.config_error() {
                    worker::console_error!(
                        "{}",
                        crate::proxy::log::config_error_line(problems, None)
                    );
                }
                Rc::new(gateway)
            })
            .clone()
        })
    }

    #[event(start)]
    fn start() {
        console_error_panic_hook::set_once();
        crate::platform::use_promise_microtasks();
    }

    type WorkerServices = Services<
        FetchClient,
        Kv,
        WorkerClock,
        Verifier,
        DoCoordinator,
        WorkerRateLimiters,
        DoReplayGuard,
    >;

    fn services(env: &Env) -> WorkerServices {
        Services {
            http: FetchClient,
            // Looked up on first use: most requests find their token in memory and never
            // touch KV.
            store: Kv::new(env.clone(), KV_BINDING),
            clock: WorkerClock,
            verifier: Verifier::default(),
            // `TOKEN_COORDINATOR`, looked up only when a fill needs it; unbound, each isolate
            // fills its own cache.
            coordinator: DoCoordinator::new(env.clone()),
            rate_limiters: WorkerRateLimiters::new(env.clone()),
            // `DPOP_REPLAY`, looked up only when a DPoP proof is checked; unbound, each
            // isolate remembers the proofs it accepted.
            replay_guard: DoReplayGuard::new(env.clone()),
        }
    }

    /// One JSON log line; a line reporting a configuration error (refused client
    /// credentials) goes to the error stream.
    fn emit(line: String, config_error: bool) {
        if config_error {
            worker::console_error!("{line}");
        } else {
            worker::console_log!("{line}");
        }
    }

    pub(crate) fn log_task(log: &TaskLog) {
        emit(log.to_json(), log.config_error.is_some());
    }

    /// A background run's line, and its data points when `METRICS` is bound.
    fn log_and_record_task(log: &TaskLog, metrics: &WorkerMetrics) {
        log_task(log);
        crate::proxy::metrics::record_task(metrics, log);
    }

    // The raw `web_sys::Request` in and `web_sys::Response` out: `worker::Request` would read
    // `request.cf`, the URL and the method eagerly on every request, none of which the gateway
    // needs in that form. Exported by hand rather than with `#[event(fetch)]`, whose wrapper
    // reports errors through `worker::Error` and `worker::Response` (issue 13: bytes); the
    // same export, and the same answer to an error it would have caught. Its promise is
    // `call_promise`'s, so that a trap in its poll fails this request alone, at once (issue 17).
    #[wasm_bindgen(js_name = fetch)]
    pub fn fetch(
        req: web_sys::Request,
        env: Env,
        ctx: worker::worker_sys::Context,
    ) -> js_sys::Promise {
        call_promise(async move { serve(req, env, ctx).await.map(JsValue::from) })
    }

    async fn serve(
        req: web_sys::Request,
        env: Env,
        ctx: worker::worker_sys::Context,
    ) -> Result<web_sys::Response, JsValue> {
        let ctx = Context::new(ctx);
        let gateway = gateway(&env);
        let Some(request) = to_gateway_request(&req) else {
            return plain_response("Bad Request", 400);
        };
        let services = services(&env);
        let url = req.url();
        let mut served = gateway
            .serve_at(&services, request, crate::platform::url_origin(&url))
            .await;
        (served.log.colo, served.log.ray) = crate::platform::colo_and_ray(&req);
        emit(served.log.to_json(), served.log.config_error.is_some());
        let metrics = WorkerMetrics::new(&env);
        crate::proxy::metrics::record_request(&metrics, &served.log);
        if let Some(job) = served.refresh {
            // Runs in this request's context after the response: other requests never await
            // it, they keep using the current token (see src/token/cache.rs).
            ctx.wait_until(async move {
                log_and_record_task(&gateway.refresh_ahead(job, &services).await, &metrics);
            });
        }
        to_worker_response(served.response).or_else(|e| {
            worker::console_error!("{}", crate::platform::js_message(&e));
            plain_response("INTERNAL SERVER ERROR", 500)
        })
    }

    /// An answer of the glue's own, outside the contract's problem+json: the bytes of `body`
    /// without a content type, as `worker::Response::error` gave it.
    fn plain_response(body: &str, status: u16) -> Result<web_sys::Response, JsValue> {
        let init = web_sys::ResponseInit::new();
        init.set_status(status);
        let mut bytes = body.as_bytes().to_vec();
        web_sys::Response::new_with_opt_u8_array_and_init(Some(&mut bytes[..]), &init)
    }

    // By hand too: the run needs neither the event's cron nor its time, which
    // `#[event(scheduled)]` reads into a `worker::ScheduledEvent` first.
    #[wasm_bindgen(js_name = scheduled)]
    pub fn scheduled(_event: JsValue, env: Env, _ctx: JsValue) -> js_sys::Promise {
        call_promise(async move {
            let gateway = gateway(&env);
            let log = gateway.on_schedule(&services(&env)).await;
            log_and_record_task(&log, &WorkerMetrics::new(&env));
            Ok(JsValue::UNDEFINED)
        })
    }
}

// The token coordinator's Durable Object class: glue like `fetch` above, running the core's
// coordinator (`crate::token::coordinator`) over the platform's storage.
#[cfg(target_arch = "wasm32")]
mod coordinator_object {
    use std::cell::OnceCell;
    use std::rc::Rc;

    use js_sys::{Promise, Reflect};
    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use worker::Env;

    use crate::io::{Clock, NoCoordinator, NoRateLimiters, Services};
    use crate::platform::{
        call_promise, respond, wait_until, DoStorage, FetchClient, Kv, WorkerClock, KV_BINDING,
    };
    use crate::proxy::log::TaskLog;
    use crate::token::coordinator::{Mirrored, TokenCoordinator as Core};
    use crate::token::TokenConfig;

    use super::glue::{log_task, Verifier};

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
            call_promise(async move {
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
        // checked here, so the rate limiters are never used and the crypto provider only signs
        // (the client assertion of `private_key_jwt`, with the same WebCrypto as the isolates).
        let platform = Services {
            http: FetchClient,
            store: Mirrored {
                own: DoStorage(storage),
                kv: Kv::new(env, KV_BINDING),
            },
            clock: WorkerClock,
            verifier: Verifier::default(),
            coordinator: NoCoordinator,
            rate_limiters: NoRateLimiters,
            replay_guard: crate::io::NoReplayGuard,
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
                let total_ms = WorkerClock.now_ms().saturating_sub(started);
                log_task(&TaskLog::refreshed(
                    "coordinator_refresh",
                    &outcome,
                    total_ms,
                ));
            });
        }
        respond(&answered.body, 200, Some("application/json"))
    }
}

// The DPoP replay guard's Durable Object class (`DPOP_REPLAY`): glue running the core's guard
// (`crate::identity::dpop::guard`) over the object's storage and alarm.
#[cfg(target_arch = "wasm32")]
mod replay_object {
    use js_sys::{Promise, Reflect};
    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::JsValue;
    use wasm_bindgen_futures::JsFuture;

    use crate::identity::dpop::guard::{self, GuardError, MAX_ASK_BYTES};
    use crate::io::Clock;
    use crate::platform::{call_promise, respond, GuardDoStorage, WorkerClock};

    /// Exported as the Durable Object class `ReplayGuard`: workerd constructs it with
    /// `(state, env)` and calls `fetch(request)` for each ask and `alarm()` to clean.
    #[wasm_bindgen]
    pub struct ReplayGuard {
        state: JsValue,
    }

    #[wasm_bindgen]
    impl ReplayGuard {
        #[wasm_bindgen(constructor)]
        pub fn new(state: JsValue, _env: JsValue) -> Self {
            Self { state }
        }

        pub fn fetch(&self, req: web_sys::Request) -> Promise {
            let state = self.state.clone();
            call_promise(async move {
                let body = JsFuture::from(req.text()?)
                    .await?
                    .as_string()
                    .unwrap_or_default();
                if body.len() > MAX_ASK_BYTES {
                    return respond("not an ask", 400, None).map(JsValue::from);
                }
                let storage = GuardDoStorage(Reflect::get(&state, &JsValue::from_str("storage"))?);
                let answered = guard::answer(&storage, &body, WorkerClock.now_ms()).await;
                match answered {
                    Ok(json) => respond(&json, 200, Some("application/json")),
                    Err(GuardError::BadAsk) => respond("not an ask", 400, None),
                    Err(GuardError::Storage(e)) => respond(&e.0, 500, None),
                }
                .map(JsValue::from)
            })
        }

        pub fn alarm(&self) -> Promise {
            let state = self.state.clone();
            call_promise(async move {
                let storage = GuardDoStorage(Reflect::get(&state, &JsValue::from_str("storage"))?);
                guard::clean(&storage, WorkerClock.now_ms())
                    .await
                    .map_err(|e| JsValue::from_str(&e.0))?;
                Ok(JsValue::UNDEFINED)
            })
        }
    }
}

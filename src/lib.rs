//! edge-auth-proxy: a Cloudflare Worker that validates the caller's customer JWT at the edge,
//! attaches an OAuth client-credentials access token, the JWT and an API key, and forwards the
//! request to the origin. Every setting and behaviour is described in `docs/configuration.md`.
//!
//! # Layout
//!
//! The core knows nothing of Workers; it reaches time, storage and HTTP through `io`, so
//! `cargo test` runs it natively with a fixed clock and in-memory fakes.
//!
//! - `config`: the typed `Config`, assembled once per isolate from each part's settings, with
//!   every problem found at once.
//! - `setting`: reading one setting (lookup, optional or required, numbers, flags, header
//!   values, URLs), with errors that name it: what every part's settings use, so none imports
//!   `config`.
//! - `registry`: the one list of the gateway's settings and bindings, and the check of an
//!   environment's names against it (unknown names, wrong kinds of binding).
//! - `entries`: reading the JSON settings (`ROUTES`, `JWT_PROVIDERS`) field by field, with
//!   errors naming entry and field, and the rule of what an error may repeat.
//! - `suggest`: the closest known word to a misspelled one ("did you mean").
//! - `check_config` (native only): `npm run check-config`, the configuration check before a
//!   deploy, run on a wrangler file's settings, bindings and secrets.
//! - `http_url`: the absolute http(s) URLs settings hold, checked and normalised.
//! - `path`: the request path's canonical form (decoded unreserved characters, dot segments
//!   resolved, `//` merged), and the refusal of paths an origin could read another way.
//! - `cookies`: the credential cookies read from a request, names folded as origins fold
//!   them (case, percent-escapes), a second copy refused.
//! - `identifiers`: one identifier per request: every source read on every route that reads
//!   one, two different identifiers refused.
//! - `routes`: the `ROUTES` table: segment-boundary prefixes, auth mode, methods, origin.
//! - `jwt`: finding the customer JWT, keys (JWKS), signature and claim checks, and the
//!   isolate's memory of verified tokens.
//! - `jwks`: `JWKS_URL`'s key set: memory, KV, provider; refresh; unknown-`kid` refetch.
//! - `providers`: `JWT_PROVIDERS`: several issuers, each with its own keys, audiences,
//!   algorithms and lifetime limit; a token is matched to one by its `iss`.
//! - `auth`: the authenticate phase: verified-token memory, key set, full check.
//! - `claims`: a verified identity's claims (JWT payload or introspection answer): dotted
//!   paths, granted scopes.
//! - `opaque`: opaque customer identifiers (cookie sessions) vouched for by RFC 7662
//!   introspection: where they are read, the request and its answer, the isolate's cache.
//! - `policy`: a route's requirement (issuers, audiences, lifetime, scopes, claims) and its
//!   claim headers, compiled once, checked on every verified request without I/O.
//! - `identity`: the verified caller whatever vouched for them; the route's `scopes` and the
//!   customer id, decided from their claims.
//! - `customer_id`: the opaque, stable customer id sent to the origin (`CUSTOMER_ID_HEADER`).
//! - `bounded`: a map bounded in entries and bytes, oldest out first: every per-isolate memory
//!   of what callers sent.
//! - `flight`: one fill at a time per isolate, without sharing futures between requests.
//! - `breaker`: a dependency after a failure (token endpoint, key set, introspection): one
//!   probe at a time, one per half second, the first good answer ends the back-off.
//! - `token`: the client-credentials grant and the isolate's token cache (memory, KV,
//!   endpoint; one fill at a time; refresh ahead of expiry; drop after an origin 401;
//!   back-off after failures), and the token coordinator that runs the same cache once for
//!   the deployment (`TOKEN_COORDINATOR`).
//! - `replay`: which request bodies are kept so a request can be replayed after a 401.
//! - `refusal`: which origin 401s refuse the gateway's access token (`ORIGIN_TOKEN_REFUSAL`).
//! - `challenge`: `WWW-Authenticate` parsing, for the origin's `Bearer error="invalid_token"`.
//! - `signing`: the gateway's own private keys (JWK), the key set it publishes, and signing a
//!   JWS through the platform's `Signer`.
//! - `assertion`: the gateway-signed assertion bound to each forwarded request, and the
//!   gateway's own `/.well-known/edge-auth-proxy/jwks.json`.
//! - `headers`: hop-by-hop, caller-controlled and identity header rules.
//! - `rate_limit`: the rate-limit phase: the bucket a request is counted in (an identity's
//!   value qualified by its issuer, else the caller's address), and the count.
//! - `proxy`: the request path as phases with one error exit; the background refresh and the
//!   scheduled run.
//! - `error`: the gateway's errors and their one mapping to problem+json.
//! - `log`: the one JSON log line per request, and per background task.
//! - `io`: the traits the core needs from a platform, and `Platform`, the one handle that
//!   bundles them, which the core is passed by reference.
//! - `platform` (wasm only): those traits over `fetch`, KV and `Date`, and the token
//!   coordinator's Durable Object (`TokenCoordinator`); with the exported `fetch` and
//!   `scheduled` glue below, the only code that names `worker`.

pub mod assertion;
pub mod auth;
pub mod bounded;
pub mod breaker;
pub mod challenge;
#[cfg(not(target_arch = "wasm32"))]
pub mod check_config;
pub mod claims;
pub mod config;
pub mod cookies;
pub mod customer_id;
pub mod entries;
pub mod error;
pub mod flight;
pub mod headers;
pub mod http_url;
pub mod identifiers;
pub mod identity;
pub mod io;
pub mod jwks;
pub mod jwt;
pub mod log;
pub mod opaque;
pub mod path;
pub mod policy;
pub mod providers;
pub mod proxy;
pub mod rate_limit;
pub mod refusal;
pub mod registry;
pub mod replay;
pub mod routes;
pub mod setting;
pub mod signing;
pub mod suggest;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod platform;

/// The KV namespace binding of cached tokens and key sets.
#[cfg(target_arch = "wasm32")]
const KV_BINDING: &str = "TOKEN_CACHE";

#[cfg(target_arch = "wasm32")]
mod glue {
    use std::cell::OnceCell;
    use std::rc::Rc;

    use wasm_bindgen::prelude::wasm_bindgen;
    use wasm_bindgen::JsValue;
    use worker::{event, Context, Env};

    use crate::log::TaskLog;
    use crate::platform::{
        call_promise, to_gateway_request, to_worker_response, DoCoordinator, FetchClient, Kv,
        WorkerClock, WorkerRateLimiters,
    };
    use crate::proxy::{Gateway, Services};

    // `baseline-verify` builds check every token in full with jwt-compact's pure-Rust code:
    // the baseline that `bench/verify-cost.mjs` measures WebCrypto and the verified-token
    // memory against. Never deployed.
    #[cfg(not(feature = "baseline-verify"))]
    type Verifier = crate::platform::WebCryptoVerifier;
    #[cfg(feature = "baseline-verify")]
    type Verifier = crate::jwt::RustCryptoVerifier;

    use crate::KV_BINDING;

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
                    worker::console_error!("{}", crate::log::config_error_line(problems, None));
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

    type WorkerServices =
        Services<FetchClient, Kv, WorkerClock, Verifier, DoCoordinator, WorkerRateLimiters>;

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

    fn log_task(log: &TaskLog) {
        emit(log.to_json(), log.config_error.is_some());
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
        let served = gateway
            .serve_at(&services, request, crate::platform::url_origin(&url))
            .await;
        emit(served.log.to_json(), served.log.config_error.is_some());
        if let Some(job) = served.refresh {
            // Runs in this request's context after the response: other requests never await
            // it, they keep using the current token (see src/token/cache.rs).
            ctx.wait_until(async move {
                log_task(&gateway.refresh_ahead(job, &services).await);
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
            log_task(&gateway.on_schedule(&services(&env)).await);
            Ok(JsValue::UNDEFINED)
        })
    }
}

//! Origin 401s through the whole gateway: which ones refuse the gateway's access token
//! (`ORIGIN_TOKEN_REFUSAL`), what a refusal costs (one drop, one new token, one replay), and
//! that every other 401, a login's wrong password, goes back as the origin sent it and costs
//! nothing.

mod common;

use common::*;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use common::{FakeHttp, Reply};
use edge_auth_proxy::io::GatewayRequest;
use edge_auth_proxy::io::{Body, HttpError};
use edge_auth_proxy::proxy::replay::REPLAY_BODY_LIMIT;
use edge_auth_proxy::proxy::{Gateway, Served};
use edge_auth_proxy::token::REJECT_COOLDOWN_MS;
use futures::executor::block_on;
use http::{HeaderMap, Method};

const IDP: &str = "https://idp.example/";
const T0: u64 = 1_700_000_000_000;
const REFUSAL: &str = r#"Bearer realm="api", error="invalid_token", error_description="token-of-the-gateway expired""#;

fn gateway(mode: Option<&str>) -> Gateway {
    let mut vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example"),
        (
            "TOKEN_URL",
            "https://idp.example/oauth/access_token?grant_type=client_credentials",
        ),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "s3cret-value"),
        ("API_KEY", "api-key-value"),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", "an-hmac-secret-of-decent-length!"),
        ("ROUTES", r#"[{"prefix":"/","auth":"public"}]"#),
    ]
    .into_iter()
    .collect();
    if let Some(mode) = mode {
        vars.insert("ORIGIN_TOKEN_REFUSAL", mode);
    }
    let get = |n: &str| vars.get(n).map(|v| v.to_string());
    Gateway::new(&get)
}

/// The token endpoint: issues `tok-1`, `tok-2`, … (or always `tok-same`); can be down.
struct Endpoint {
    calls: Rc<Cell<u32>>,
    down: Rc<Cell<bool>>,
    same: Rc<Cell<bool>>,
}

/// What the scripted origin answers, given the bearer token it got.
type Script = Rc<RefCell<Box<dyn Fn(&str) -> Reply>>>;

struct Stack {
    svc: Svc,
    ep: Endpoint,
    origin: Script,
}

fn stack() -> Stack {
    let http = FakeHttp::default();
    let ep = Endpoint {
        calls: Rc::default(),
        down: Rc::default(),
        same: Rc::default(),
    };
    let (calls, down, same) = (ep.calls.clone(), ep.down.clone(), ep.same.clone());
    http.on(IDP, move |_| {
        calls.set(calls.get() + 1);
        if down.get() {
            return Err(HttpError::Unreachable("refused".into()));
        }
        let token = if same.get() {
            "tok-same".to_string()
        } else {
            format!("tok-{}", calls.get())
        };
        let body =
            format!(r#"{{"token_type":"Bearer","access_token":"{token}","expires_in":3600}}"#);
        Ok((200, vec![], body.into_bytes()))
    });
    let origin: Script = Rc::new(RefCell::new(Box::new(ok)));
    let script = origin.clone();
    http.on(ORIGIN, move |seen| {
        let auth = seen.headers["authorization"].to_str().unwrap();
        let bearer = auth.strip_prefix("Bearer ").unwrap().to_string();
        (script.borrow())(&bearer)
    });
    let svc = common::services_at(http, T0);
    Stack { svc, ep, origin }
}

/// 200, echoing the bearer token the origin got.
fn ok(bearer: &str) -> Reply {
    Ok((200, vec![], format!("Bearer {bearer}").into_bytes()))
}

/// A 401 with these `WWW-Authenticate` fields, the origin's own headers and body.
fn unauthorized(challenges: &[&str], body: &str) -> Reply {
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-origin-reason", "wrong-password".to_string()),
        ("cache-control", "no-store".to_string()),
    ];
    for c in challenges {
        headers.push(("www-authenticate", c.to_string()));
    }
    Ok((401, headers, body.as_bytes().to_vec()))
}

impl Stack {
    fn answer(&self, f: impl Fn(&str) -> Reply + 'static) {
        *self.origin.borrow_mut() = Box::new(f);
    }

    fn origin_calls(&self) -> usize {
        self.svc.http.calls_to(ORIGIN).len()
    }

    fn kv(&self) -> HashMap<String, (String, u64)> {
        self.svc.store.entries.borrow().clone()
    }

    fn serve(&self, gw: &Gateway, body: Vec<u8>) -> Served<Vec<u8>> {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", body.len().into());
        let req = GatewayRequest {
            method: Method::POST,
            path: "/auth/customer_authenticate".into(),
            query: None,
            headers,
            body: Body::Stream(body),
            tls_client_auth: None,
        };
        block_on(gw.serve(&self.svc, req))
    }

    /// One request answered 200, so that `tok-1` is cached in memory and KV.
    fn warm(&self, gw: &Gateway) {
        let served = self.serve(gw, b"{}".to_vec());
        assert_eq!(served.response.status, 200);
        assert_eq!(self.ep.calls.get(), 1);
        assert_eq!(self.kv().len(), 1);
        self.svc.http.seen.borrow_mut().clear();
    }
}

fn bytes(body: Body<Vec<u8>>) -> Vec<u8> {
    match body {
        Body::Empty => Vec::new(),
        Body::Bytes(b) | Body::Stream(b) => b,
    }
}

fn text(body: Body<Vec<u8>>) -> String {
    String::from_utf8(bytes(body)).unwrap()
}

fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// a 401 that is not a refusal

#[test]
fn a_logins_401_reaches_the_origin_once_costs_no_token_and_comes_back_as_sent() {
    let cases: &[&[&str]] = &[
        &[],
        &[r#"Basic realm="demo""#],
        &[r#"Bearer error="insufficient_scope", scope="profile""#],
        &[r#"Bearer realm="x""#],
        &[r#"Basic realm="a""#, r#"Bearer realm="x""#],
        &[r#"Bearer error="invalid_request""#],
    ];
    for challenges in cases {
        let s = stack();
        let gw = gateway(None);
        s.warm(&gw);
        let kv_before = s.kv();
        let body = r#"{"error":"invalid_credentials","message":"Unknown user or wrong password."}"#;
        let challenges_owned: Vec<String> = challenges.iter().map(|c| c.to_string()).collect();
        s.answer(move |_| {
            let c: Vec<&str> = challenges_owned.iter().map(String::as_str).collect();
            unauthorized(&c, body)
        });
        let served = s.serve(&gw, b"username=alice&password=nope".to_vec());
        let what = format!("{challenges:?}");

        assert_eq!(served.response.status, 401, "{what}");
        let h = &served.response.headers;
        assert_eq!(all(h, "www-authenticate"), *challenges, "{what}");
        assert_eq!(h["content-type"], "application/json", "{what}");
        assert_eq!(h["x-origin-reason"], "wrong-password", "{what}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
        assert_eq!(text(served.response.body), body, "{what}");

        assert_eq!(s.origin_calls(), 1, "{what}: sent once");
        assert_eq!(s.ep.calls.get(), 1, "{what}: no token-endpoint call");
        assert_eq!(s.kv(), kv_before, "{what}: KV keeps the token");
        let log = &served.log;
        assert_eq!(log.origin_401, Some("passed"), "{what}");
        assert_eq!(log.replayed, None, "{what}");
        assert_eq!(log.replay_skipped, None, "{what}");
        assert_ne!(log.token_refresh, Some("after_401"), "{what}");
        assert_eq!(log.config_error, None, "{what}");
        assert_eq!(log.outcome, "forwarded", "{what}");

        // The cached token is still the one in memory.
        s.answer(ok);
        let next = s.serve(&gw, Vec::new());
        assert_eq!(next.log.token_source, Some("memory"), "{what}");
        assert_eq!(text(next.response.body), "Bearer tok-1", "{what}");
    }
}

#[test]
fn a_passed_401_costs_nothing_even_with_the_token_endpoint_down() {
    let s = stack();
    let gw = gateway(None);
    s.warm(&gw);
    s.ep.down.set(true);
    s.answer(|_| unauthorized(&[], "no"));
    for _ in 0..20 {
        let served = s.serve(&gw, Vec::new());
        assert_eq!(served.response.status, 401);
        assert_eq!(text(served.response.body), "no");
    }
    assert_eq!(s.ep.calls.get(), 1);
    assert_eq!(s.origin_calls(), 20);
}

// ---------------------------------------------------------------------------------------------
// a refusal

#[test]
fn a_bearer_invalid_token_401_is_replayed_once_with_a_new_token() {
    for challenges in [
        &[REFUSAL][..],
        &[r#"Basic realm="a, b", Bearer error=invalid_token"#],
        &[r#"Basic realm="a""#, r#"bearer ERROR = "invalid_token""#],
        &[r#"Bearer realm="a \"b\"", error="invalid\_token""#],
    ] {
        let s = stack();
        let gw = gateway(None);
        s.warm(&gw);
        let owned: Vec<String> = challenges.iter().map(|c| c.to_string()).collect();
        s.answer(move |bearer| {
            if bearer == "tok-1" {
                let c: Vec<&str> = owned.iter().map(String::as_str).collect();
                unauthorized(&c, "refused")
            } else {
                ok(bearer)
            }
        });
        let served = s.serve(&gw, b"{\"a\":1}".to_vec());
        let what = format!("{challenges:?}");
        assert_eq!(served.response.status, 200, "{what}");
        assert_eq!(text(served.response.body), "Bearer tok-2", "{what}");
        let sent = s.svc.http.calls_to(ORIGIN);
        assert_eq!(sent.len(), 2, "{what}: one replay");
        assert_eq!(sent[1].body, b"{\"a\":1}", "{what}: the same body");
        assert_eq!(s.ep.calls.get(), 2, "{what}: one new token");
        let log = &served.log;
        assert_eq!(log.origin_401, Some("refusal"), "{what}");
        assert_eq!(log.replayed, Some(true), "{what}");
        assert_eq!(log.token_refresh, Some("after_401"), "{what}");
        assert_eq!(log.config_error, None, "{what}");
        // KV holds the new token, not the refused one.
        let kv = s.kv();
        assert_eq!(kv.len(), 1);
        assert!(kv.values().all(|(v, _)| v.contains("tok-2")), "{what}");
    }
}

fn assert_no_origin_challenge(served: &Served<Vec<u8>>, what: &str) {
    let h = &served.response.headers;
    assert_eq!(h["content-type"], "application/problem+json", "{what}");
    assert!(
        h.get("www-authenticate").is_none(),
        "{what}: a challenge reached the caller"
    );
    assert!(h.get("x-origin-reason").is_none(), "{what}");
}

fn problem(body: Body<Vec<u8>>) -> (serde_json::Value, String) {
    let raw = text(body);
    (serde_json::from_str(&raw).unwrap(), raw)
}

#[test]
fn a_refused_fresh_token_is_502_with_nothing_of_the_origins_challenge() {
    let s = stack();
    let gw = gateway(None);
    s.warm(&gw);
    s.answer(|_| {
        unauthorized(
            &[REFUSAL],
            r#"{"error":"invalid_token","origin":"secret-detail"}"#,
        )
    });
    let served = s.serve(&gw, b"{}".to_vec());
    assert_eq!(served.response.status, 502);
    assert_no_origin_challenge(&served, "502");
    let (json, raw) = problem(served.response.body);
    assert_eq!(
        json["type"],
        "urn:edge-auth-proxy:problem:origin-refused-credentials"
    );
    assert_eq!(json["status"], 502);
    for origin_text in [
        "invalid_token",
        "secret-detail",
        "token-of-the-gateway",
        "realm",
    ] {
        assert!(!raw.contains(origin_text), "{origin_text} in {raw}");
    }
    assert_eq!(s.origin_calls(), 2, "one replay, no more");
    assert_eq!(s.ep.calls.get(), 2);
    let log = &served.log;
    assert_eq!(log.origin_401, Some("refusal"));
    assert_eq!(log.replayed, Some(true));
    assert_eq!(log.outcome, "origin_refused_token");
    assert_eq!(log.config_error, Some("origin_refused_token"));
    assert!(log.origin_ms.is_some());
    let line = log.to_json();
    assert!(
        line.contains(r#""config_error":"origin_refused_token""#),
        "{line}"
    );
}

#[test]
fn a_replay_answered_with_a_plain_401_goes_back_as_sent() {
    // The replay's 401 says nothing about the token: it is the origin's answer to the caller.
    let s = stack();
    let gw = gateway(None);
    s.warm(&gw);
    s.answer(|bearer| match bearer {
        "tok-1" => unauthorized(&[REFUSAL], "refused"),
        _ => unauthorized(&[r#"Basic realm="login""#], "wrong password"),
    });
    let served = s.serve(&gw, b"{}".to_vec());
    assert_eq!(served.response.status, 401);
    assert_eq!(
        all(&served.response.headers, "www-authenticate"),
        [r#"Basic realm="login""#]
    );
    assert_eq!(text(served.response.body), "wrong password");
    assert_eq!(served.log.replayed, Some(true));
    assert_eq!(served.log.config_error, None);
}

#[test]
fn no_new_token_is_502() {
    // The endpoint hands out the refused token again.
    let s = stack();
    s.ep.same.set(true);
    let gw = gateway(None);
    s.warm(&gw);
    s.answer(|_| unauthorized(&[REFUSAL], "refused"));
    let served = s.serve(&gw, b"{}".to_vec());
    assert_eq!(served.response.status, 502);
    assert_no_origin_challenge(&served, "same token");
    assert_eq!(served.log.replay_skipped, Some("no_new_token"));
    assert_eq!(served.log.replayed, Some(false));
    assert_eq!(served.log.config_error, Some("origin_refused_token"));
    assert_eq!(s.origin_calls(), 1);

    // The drop cooldown keeps the token that replaced a refused one.
    let s = stack();
    let gw = gateway(None);
    s.warm(&gw);
    s.answer(|bearer| match bearer {
        "tok-1" => unauthorized(&[REFUSAL], "refused"),
        other => ok(other),
    });
    assert_eq!(s.serve(&gw, b"{}".to_vec()).response.status, 200);
    s.svc.clock.advance(REJECT_COOLDOWN_MS - 1);
    s.answer(|_| unauthorized(&[REFUSAL], "refused"));
    let served = s.serve(&gw, b"{}".to_vec());
    assert_eq!(served.response.status, 502);
    assert_eq!(served.log.replay_skipped, Some("no_new_token"));
    assert_eq!(served.log.config_error, Some("origin_refused_token"));
    assert_eq!(s.ep.calls.get(), 2, "no endpoint call inside the cooldown");
}

#[test]
fn an_unreplayable_refusal_is_503_retry_after_1_and_the_retry_carries_a_new_token() {
    let s = stack();
    let gw = gateway(None);
    s.warm(&gw);
    s.answer(|bearer| match bearer {
        "tok-1" => unauthorized(&[REFUSAL], "refused"),
        other => ok(other),
    });
    let served = s.serve(&gw, vec![b'x'; REPLAY_BODY_LIMIT + 1]);
    assert_eq!(served.response.status, 503);
    assert_eq!(served.response.headers["retry-after"], "1");
    assert_no_origin_challenge(&served, "503");
    let (json, _) = problem(served.response.body);
    assert_eq!(
        json["type"],
        "urn:edge-auth-proxy:problem:origin-refused-credentials"
    );
    assert_eq!(served.log.replay_skipped, Some("body_not_kept"));
    assert_eq!(served.log.token_refresh, Some("after_401"));
    assert_eq!(served.log.outcome, "origin_refused_token_unreplayed");
    assert_eq!(
        served.log.config_error, None,
        "one refusal is not an operator's problem"
    );
    assert_eq!(s.origin_calls(), 1);
    assert!(s.kv().is_empty(), "the refused token left KV");
    // The retry, one second later, carries a new token.
    s.svc.clock.advance(1_000);
    let retry = s.serve(&gw, vec![b'x'; REPLAY_BODY_LIMIT + 1]);
    assert_eq!(retry.response.status, 200);
    assert_eq!(text(retry.response.body), "Bearer tok-2");

    // Refused again inside the drop cooldown: the token kept is the replacement, so 502.
    s.answer(|_| unauthorized(&[REFUSAL], "refused"));
    let served = s.serve(&gw, vec![b'x'; REPLAY_BODY_LIMIT + 1]);
    assert_eq!(served.response.status, 502);
    assert_eq!(served.log.replay_skipped, Some("body_not_kept"));
    assert_eq!(served.log.config_error, Some("origin_refused_token"));
}

#[test]
fn a_refusal_with_the_token_endpoint_down_is_503_with_retry_after() {
    let s = stack();
    let gw = gateway(None);
    s.warm(&gw);
    s.ep.down.set(true);
    s.answer(|_| unauthorized(&[REFUSAL], "refused"));
    let served = s.serve(&gw, b"{}".to_vec());
    assert_eq!(served.response.status, 503);
    assert!(
        served.response.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_no_origin_challenge(&served, "endpoint down");
    assert_eq!(served.log.outcome, "token_endpoint_unreachable");
    assert_eq!(s.origin_calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// the three modes

#[test]
fn any_401_replays_every_401_and_returns_what_it_cannot_replay_as_sent() {
    let s = stack();
    let gw = gateway(Some("any_401"));
    s.warm(&gw);
    s.answer(|bearer| match bearer {
        "tok-1" => unauthorized(&[], "refused"),
        other => ok(other),
    });
    let served = s.serve(&gw, b"{}".to_vec());
    assert_eq!(served.response.status, 200);
    assert_eq!(text(served.response.body), "Bearer tok-2");
    assert_eq!(served.log.origin_401, Some("refusal"));
    assert_eq!(served.log.token_refresh, Some("after_401"));
    assert_eq!(s.origin_calls(), 2);
    assert_eq!(s.ep.calls.get(), 2);

    // A second 401, even a Bearer invalid_token one, goes back as sent.
    s.svc.clock.advance(REJECT_COOLDOWN_MS);
    s.answer(|_| unauthorized(&[REFUSAL], "still no"));
    let served = s.serve(&gw, b"{}".to_vec());
    assert_eq!(served.response.status, 401);
    assert_eq!(all(&served.response.headers, "www-authenticate"), [REFUSAL]);
    assert_eq!(text(served.response.body), "still no");
    assert_eq!(served.log.replayed, Some(true));
    assert_eq!(served.log.config_error, None);

    // An unreplayable one too.
    s.svc.clock.advance(REJECT_COOLDOWN_MS);
    let served = s.serve(&gw, vec![b'x'; REPLAY_BODY_LIMIT + 1]);
    assert_eq!(served.response.status, 401);
    assert_eq!(text(served.response.body), "still no");
    assert_eq!(served.log.replay_skipped, Some("body_not_kept"));
}

#[test]
fn off_passes_every_401_and_keeps_the_token() {
    let s = stack();
    let gw = gateway(Some("off"));
    s.warm(&gw);
    let kv_before = s.kv();
    s.answer(|_| unauthorized(&[REFUSAL], "refused"));
    let served = s.serve(&gw, b"{}".to_vec());
    assert_eq!(served.response.status, 401);
    assert_eq!(all(&served.response.headers, "www-authenticate"), [REFUSAL]);
    assert_eq!(text(served.response.body), "refused");
    assert_eq!(served.log.origin_401, Some("passed"));
    assert_eq!(served.log.replayed, None);
    assert_eq!(s.origin_calls(), 1);
    assert_eq!(s.ep.calls.get(), 1);
    assert_eq!(s.kv(), kv_before);
}

#[test]
fn an_invalid_mode_is_a_500_naming_the_setting_not_its_value() {
    for bad in ["Any_401", "always", "invalid-token", "s3cret-looking-value"] {
        let s = stack();
        let gw = gateway(Some(bad));
        let served = s.serve(&gw, b"{}".to_vec());
        assert_eq!(served.response.status, 500, "{bad}");
        let (json, raw) = problem(served.response.body);
        assert!(
            json["detail"]
                .as_str()
                .unwrap()
                .contains("ORIGIN_TOKEN_REFUSAL"),
            "{raw}"
        );
        assert!(!raw.contains(bad), "{bad} echoed: {raw}");
        assert_eq!(s.origin_calls(), 0);
        assert_eq!(s.ep.calls.get(), 0);
    }
}

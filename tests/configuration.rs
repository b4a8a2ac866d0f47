//! Configuration that cannot be wrong in silence, natively: the registry of settings equals
//! the reference's tables and what the parts read; the environment's names and bindings are
//! checked; every problem is reported at once; no value ever appears in a problem.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use edge_auth_proxy::config::registry::{self, Binding, Bound, Environment, Kind, Required};
use edge_auth_proxy::config::{Config, ConfigErrors};
use serde_json::json;

const HMAC_SECRET: &str = "planted-hmac-secret-0123456789abcdef";
const CLIENT_SECRET: &str = "planted-client-secret-Qv7";
const API_KEY: &str = "planted-api-key-Zr4";
const CUSTOMER_ID_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn base() -> BTreeMap<String, String> {
    [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", "https://idp.example/oauth/token"),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn with(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut vars = base();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    vars
}

/// The vars as text, and `bindings` besides (TOKEN_CACHE a KV namespace unless given).
fn environment(vars: &BTreeMap<String, String>, bindings: &[(&str, Bound)]) -> Environment {
    let mut env = Environment::default();
    for name in vars.keys() {
        env.add(name.clone(), Bound::Text);
    }
    if !bindings.iter().any(|(n, _)| *n == "TOKEN_CACHE") {
        env.add("TOKEN_CACHE", Bound::Binding(Binding::KvNamespace));
    }
    for (name, bound) in bindings {
        env.add(*name, *bound);
    }
    env
}

fn check(
    vars: &BTreeMap<String, String>,
    bindings: &[(&str, Bound)],
) -> Result<Config, ConfigErrors> {
    let get = |n: &str| vars.get(n).cloned();
    Config::from_environment(&get, &environment(vars, bindings))
}

fn problems(vars: &BTreeMap<String, String>, bindings: &[(&str, Bound)]) -> Vec<String> {
    let errs = check(vars, bindings).expect_err("accepted");
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for value in [
        HMAC_SECRET,
        CLIENT_SECRET,
        API_KEY,
        CUSTOMER_ID_KEY,
        "planted",
    ] {
        for t in &text {
            assert!(!t.contains(value), "{t} repeats a value");
        }
    }
    text
}

// ------------------------------------------------------------------ one registry

/// `(name, kind, required)` of every row of docs/configuration.md's setting and binding
/// tables.
fn documented() -> BTreeSet<(String, String, String)> {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let mut rows = BTreeSet::new();
    let mut in_table = false;
    for line in docs.lines() {
        if line.starts_with("| setting | kind | required |")
            || line.starts_with("| binding | kind | required |")
        {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // A row naming a family of bindings ("any name a route's ...") is not one setting.
        let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        let kind = cells[2];
        let kind = if kind == "var" || kind == "secret" {
            kind.to_string()
        } else if kind.contains("KV") {
            "KV namespace".to_string()
        } else if kind.contains("Durable Object") {
            "Durable Object namespace".to_string()
        } else if kind.contains("rate-limiting") {
            "rate limiter".to_string()
        } else if kind.contains("Analytics Engine") {
            "Analytics Engine dataset".to_string()
        } else {
            panic!("{name}: unknown kind {kind}")
        };
        rows.insert((name.to_string(), kind, cells[3].to_string()));
    }
    rows
}

#[test]
fn the_registry_is_the_reference_s_tables() {
    let registered: BTreeSet<(String, String, String)> = registry::SETTINGS
        .iter()
        .map(|s| {
            let kind = match s.kind {
                Kind::Var => "var",
                Kind::Secret => "secret",
                Kind::Binding(Binding::KvNamespace) => "KV namespace",
                Kind::Binding(Binding::DurableObjectNamespace) => "Durable Object namespace",
                Kind::Binding(Binding::RateLimiter) => "rate limiter",
                Kind::Binding(Binding::AnalyticsEngine) => "Analytics Engine dataset",
            };
            let required = match s.required {
                Required::Yes => "yes",
                Required::No => "no",
                Required::When(text) => text,
            };
            (s.name.to_string(), kind.to_string(), required.to_string())
        })
        .collect();
    let documented = documented();
    let only_code: Vec<_> = registered.difference(&documented).collect();
    let only_docs: Vec<_> = documented.difference(&registered).collect();
    assert!(
        only_code.is_empty() && only_docs.is_empty(),
        "registry and docs/configuration.md disagree:\n  only in the registry: {only_code:?}\n  only in the docs: {only_docs:?}"
    );
}

#[test]
fn every_registered_setting_is_read_and_nothing_else() {
    let read: RefCell<BTreeSet<String>> = RefCell::default();
    let every = with(&[
        ("ORIGIN_TIMEOUT_MS", "1000"),
        ("ORIGIN_TOKEN_REFUSAL", "any_401"),
        ("ALLOW_PLAINTEXT_ORIGIN", "false"),
        (
            "ROUTES",
            &json!([{"prefix": "/s", "auth": "opaque"}, {"prefix": "/"}]).to_string(),
        ),
        ("TOKEN_CLIENT_AUTH", "client_secret_basic"),
        ("TOKEN_SCOPE", "a b"),
        ("TOKEN_TIMEOUT_MS", "1000"),
        ("TOKEN_ENCRYPTION_KEY", CUSTOMER_ID_KEY),
        ("JWKS_URL", "https://login.example/jwks"),
        ("JWT_JWKS", r#"{"keys":[]}"#),
        ("JWT_ISSUER", "https://login.example/"),
        ("JWT_AUDIENCE", "a"),
        ("JWT_LEEWAY_SECONDS", "5"),
        ("JWT_MAX_AGE_SECONDS", "60"),
        ("JWT_COOKIE", "jwt"),
        ("INTROSPECTION_URL", "https://idp.example/introspect"),
        ("INTROSPECTION_TIMEOUT_MS", "1000"),
        ("SESSION_COOKIE", "sid"),
        ("CUSTOMER_ID_HEADER", "x-customer-id"),
        ("CUSTOMER_ID_KEY", CUSTOMER_ID_KEY),
    ]);
    let providers = with(&[
        ("JWT_HMAC_SECRET", ""),
        ("JWT_ALGORITHMS", "ES256"),
        (
            "JWT_PROVIDERS",
            &json!([{"issuer": "https://a/", "jwks_url": "https://a/jwks"}]).to_string(),
        ),
    ]);
    for vars in [&every, &providers] {
        let get = |n: &str| {
            read.borrow_mut().insert(n.to_string());
            vars.get(n).cloned()
        };
        let _ = Config::from_environment(&get, &environment(vars, &[]));
    }
    let text_settings: BTreeSet<String> = registry::SETTINGS
        .iter()
        .filter(|s| !matches!(s.kind, Kind::Binding(_)))
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(*read.borrow(), text_settings);
}

// ------------------------------------------------------------------ unknown names

#[test]
fn a_typo_is_an_error_with_the_closest_name_not_a_check_switched_off() {
    let vars = with(&[("JWT_AUDIENCES", "profile-api")]);
    assert_eq!(
        problems(&vars, &[]),
        ["JWT_AUDIENCES is an unknown setting; did you mean JWT_AUDIENCE?"]
    );
    // The same configuration without an environment listing (as the native tests build it)
    // cannot see names it does not read.
    let get = |n: &str| vars.get(n).cloned();
    assert!(Config::from_settings(&get).is_ok());
}

#[test]
fn every_prefix_the_gateway_owns_in_any_case_and_binding_names_the_routes_give() {
    let unknown = [
        "JWT_X",
        "TOKEN_X",
        "ORIGIN_X",
        "INTROSPECTION_X",
        "CUSTOMER_ID_X",
        "SESSION_X",
        "CLIENT_X",
        "GATEWAY_X",
        "DPOP_X",
        "METRICS_X",
        "jwt_issuer",
        "Token_Url",
    ];
    let extra: Vec<(&str, &str)> = unknown.iter().map(|n| (*n, "planted")).collect();
    let mut vars = with(&extra);
    vars.insert("OTHER_SETTING".into(), "x".into());
    vars.insert(
        "ROUTES".into(),
        json!([{"prefix": "/", "rate_limit": {"binding": "TOKEN_BUCKET", "key": "sub"}}])
            .to_string(),
    );
    let found = problems(
        &vars,
        &[("TOKEN_BUCKET", Bound::Binding(Binding::RateLimiter))],
    );
    let named: BTreeSet<&str> = found.iter().map(|p| p.split(' ').next().unwrap()).collect();
    assert_eq!(named, unknown.into_iter().collect(), "{found:#?}");
    assert!(
        found.contains(&"jwt_issuer is an unknown setting; did you mean JWT_ISSUER?".to_string())
    );
    assert!(found.contains(&"Token_Url is an unknown setting; did you mean TOKEN_URL?".to_string()));
}

#[test]
fn bindings_are_checked_by_kind() {
    let kv = Bound::Binding(Binding::KvNamespace);
    let routes = json!([
        {"prefix": "/a", "rate_limit": {"binding": "PER_CUSTOMER", "key": "sub"}},
        {"prefix": "/b", "rate_limit": {"binding": "PER_CUSTMER", "key": "sub"}},
        {"prefix": "/c", "rate_limit": {"binding": "PER_IP", "key": "ip"}}
    ])
    .to_string();
    let vars = with(&[("ROUTES", &routes)]);
    let found = problems(
        &vars,
        &[
            ("TOKEN_CACHE", Bound::Text),
            ("TOKEN_COORDINATOR", kv),
            ("PER_CUSTOMER", Bound::Binding(Binding::RateLimiter)),
            ("PER_IP", kv),
        ],
    );
    assert_eq!(
        found,
        [
            "TOKEN_CACHE must be a KV namespace binding, but a var or secret is set under that name",
            "TOKEN_COORDINATOR must be a Durable Object namespace binding, but another kind of binding is bound under that name",
            "ROUTES[1].rate_limit.binding: no rate-limiting binding named PER_CUSTMER is bound ([[ratelimits]] name = \"PER_CUSTMER\" in wrangler.toml); did you mean PER_CUSTOMER?",
            "ROUTES[2].rate_limit.binding: PER_IP is bound, but not to a rate-limiting binding",
        ]
    );
    let mut no_cache = environment(&base(), &[]);
    no_cache = {
        let mut e = Environment::default();
        for (n, b) in no_cache.names().filter(|(n, _)| *n != "TOKEN_CACHE") {
            e.add(n, b);
        }
        e
    };
    let get = |n: &str| base().get(n).cloned();
    let errs = Config::from_environment(&get, &no_cache).unwrap_err();
    assert_eq!(
        errs.to_string(),
        "TOKEN_CACHE is required but not bound: it must be a KV namespace binding"
    );
}

#[test]
fn a_setting_that_is_not_a_string_is_not_read_as_unset() {
    let mut env = environment(&base(), &[]);
    env.add("ROUTES", Bound::Json);
    env.add("JWT_ISSUER", Bound::Binding(Binding::KvNamespace));
    let vars = base();
    let get = |n: &str| vars.get(n).cloned();
    let errs = Config::from_environment(&get, &env).unwrap_err();
    assert_eq!(errs.settings(), ["ROUTES", "JWT_ISSUER"]);
}

// ------------------------------------------------------------------ every problem at once

#[test]
fn every_problem_of_every_part_at_once() {
    let vars = with(&[
        ("TOKEN_URL", "http://idp.example/token"),
        ("CLIENT_ID", ""),
        ("JWT_LEEWAY_SECONDS", "planted"),
        ("JWT_AUDIENCES", "x"),
        ("ORIGIN_TOKEN_REFUSAL", "planted"),
        ("CUSTOMER_ID_HEADER", "x-customer-id"),
        ("INTROSPECTION_URL", "http://idp.example/introspect"),
        (
            "ROUTES",
            &json!([
                {"prefix": "/a", "method": ["GET"]},
                {"prefix": "/b", "auth": "JWT"},
                {"prefix": "c", "origin": "http://o.example"}
            ])
            .to_string(),
        ),
    ]);
    assert_eq!(
        problems(&vars, &[]),
        [
            "ORIGIN_TOKEN_REFUSAL must be invalid_token, any_401 or off",
            "ROUTES[0]: unknown field \"method\"; did you mean \"methods\"?",
            "ROUTES[1].auth: \"JWT\" is not one of jwt, public, optional, report, opaque",
            "ROUTES[2].prefix: must start with '/'",
            "ROUTES[2].origin: must be an https URL (plain http only to a loopback host: localhost, 127.0.0.0/8, [::1]; or set ALLOW_PLAINTEXT_ORIGIN=true for an origin reached over a private network)",
            "TOKEN_URL must be an https URL (plain http only to a loopback host: localhost, 127.0.0.0/8, [::1])",
            "CLIENT_ID is required but not set",
            "JWT_LEEWAY_SECONDS must be a whole number from 0 to 3600",
            "CUSTOMER_ID_KEY must be set with CUSTOMER_ID_HEADER: 32 random bytes in base64 (openssl rand -base64 32)",
            "INTROSPECTION_URL must be an https URL (plain http only to a loopback host: localhost, 127.0.0.0/8, [::1])",
            "JWT_AUDIENCES is an unknown setting; did you mean JWT_AUDIENCE?",
        ]
    );
}

#[test]
fn plaintext_origins_only_by_choice_and_never_the_credential_endpoints() {
    let routes = json!([{"prefix": "/", "origin": "http://profile.internal"}]).to_string();
    let allowed = with(&[
        ("ALLOW_PLAINTEXT_ORIGIN", "true"),
        ("ORIGIN_URL", "http://origin.internal"),
        ("ROUTES", &routes),
    ]);
    assert!(check(&allowed, &[]).is_ok());
    for (name, url) in [
        ("TOKEN_URL", "http://idp.example/token"),
        ("JWKS_URL", "http://idp.example/jwks"),
        ("INTROSPECTION_URL", "http://idp.example/introspect"),
    ] {
        let mut vars = allowed.clone();
        vars.insert(name.into(), url.into());
        let found = problems(&vars, &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(&format!("{name} must be an https URL")),
            "{found:?}"
        );
    }
    let providers =
        json!([{"issuer": "https://a/", "jwks_url": "http://a.example/jwks"}]).to_string();
    let vars = with(&[
        ("ALLOW_PLAINTEXT_ORIGIN", "true"),
        ("JWT_HMAC_SECRET", ""),
        ("JWT_ALGORITHMS", "ES256"),
        ("JWT_PROVIDERS", &providers),
    ]);
    assert_eq!(
        problems(&vars, &[]),
        ["JWT_PROVIDERS[0].jwks_url: must be an https URL (plain http only to a loopback host: localhost, 127.0.0.0/8, [::1])"]
    );
    // Loopback hosts: the tests and the demo.
    let local = with(&[
        ("ORIGIN_URL", "http://127.0.0.1:8788"),
        ("TOKEN_URL", "http://localhost:8788/token"),
        ("JWKS_URL", "http://[::1]:8788/jwks"),
    ]);
    assert!(check(&local, &[]).is_ok());
}

#[test]
fn providers_name_entry_and_field() {
    let providers = json!([
        {"issuer": "https://a/", "jwks_url": "https://a/jwks", "audience": ["x"]},
        {"issuer": "http://b/", "jwks_uri": "https://b/jwks"},
        {"issuer": "https://a/", "jwks_url": "https://a/jwks", "algorithms": ["HS256"], "max_lifetime_seconds": "60"},
    ])
    .to_string();
    let vars = with(&[
        ("JWT_HMAC_SECRET", ""),
        ("JWT_ALGORITHMS", "ES256"),
        ("JWT_PROVIDERS", &providers),
    ]);
    assert_eq!(
        problems(&vars, &[]),
        [
            "JWT_PROVIDERS[0]: unknown field \"audience\"; did you mean \"audiences\"?",
            "JWT_PROVIDERS[1]: unknown field \"jwks_uri\"; did you mean \"jwks_url\"?",
            // No key source means discovery, which needs an https issuer.
            "JWT_PROVIDERS[1].issuer: must be an https URL to be discovered (http only on a loopback host) (or give jwks_url or jwks)",
            "JWT_PROVIDERS[2].issuer: is named by an earlier provider too",
            "JWT_PROVIDERS[2].max_lifetime_seconds: must be a whole number",
            "JWT_PROVIDERS[2].algorithms: allows HS256: providers take public keys only (set algorithms without HS256, HS384, HS512)",
        ]
    );
}

#[test]
fn types_leeway_discovery_and_the_jwt_header_are_checked_at_configuration_time() {
    // Each bad value, all at once, named by setting, entry and field.
    let providers = json!([
        {"issuer": "https://a/", "jwks_url": "https://a/jwks", "types": ["at jwt"], "leeway_seconds": 3601},
        {"issuer": "https://b/?tenant=1"},
        {"issuer": "https://c/", "types": [], "leeway_seconds": -1},
        {"issuer": "https://d/", "types": "at+jwt"},
    ])
    .to_string();
    let vars = with(&[
        ("JWT_HMAC_SECRET", ""),
        ("JWT_ALGORITHMS", "RS256"),
        ("JWT_PROVIDERS", &providers),
        ("JWT_TYPES", "at+jwt, a/b/c"),
        ("JWT_HEADER", "Authorization"),
    ]);
    assert_eq!(
        problems(&vars, &[]),
        [
            "JWT_TYPES must list media type names such as at+jwt or application/at+jwt",
            "JWT_PROVIDERS[0].types: must list media type names such as at+jwt or application/at+jwt",
            "JWT_PROVIDERS[0].leeway_seconds: must be from 0 to 3600",
            "JWT_PROVIDERS[1].issuer: must have no query or fragment to be discovered (or give jwks_url or jwks)",
            "JWT_PROVIDERS[2].types: must list at least one type",
            "JWT_PROVIDERS[2].leeway_seconds: must be a whole number",
            "JWT_PROVIDERS[3].types: must be an array of type names",
            "JWT_HEADER must name a header of its own (not Authorization, customer-auth, api-key, Cookie, DPoP, or a header the gateway sets or a hop-by-hop one)",
        ]
    );
    // JWT_ISSUER alone means discovery: an https issuer (or a loopback one) is enough.
    for (issuer, ok) in [
        ("https://team.cloudflareaccess.com", true),
        ("http://127.0.0.1:9000/realms/x", true),
        ("http://idp.example", false),
        ("https://idp.example/#x", false),
    ] {
        let vars = with(&[
            ("JWT_HMAC_SECRET", ""),
            ("JWT_ALGORITHMS", "RS256"),
            ("JWT_ISSUER", issuer),
            ("JWT_TYPES", "at+jwt,application/jwt"),
            ("JWT_HEADER", "Cf-Access-Jwt-Assertion"),
        ]);
        match check(&vars, &[]) {
            Ok(config) => {
                assert!(ok, "{issuer}");
                assert_eq!(config.jwt.discovery.as_deref(), Some(issuer));
                assert_eq!(config.jwt.jwks_url, None);
                assert!(config.jwt.types.as_ref().unwrap().accepts(Some("JWT")));
                assert_eq!(
                    config.identifier_cookies.jwt_header().map(|h| h.as_str()),
                    Some("cf-access-jwt-assertion")
                );
            }
            Err(e) => {
                assert!(!ok, "{issuer}: {e:?}");
                assert!(e.iter().all(|p| p.setting == "JWT_ISSUER"), "{e:?}");
            }
        }
    }
    // With an inline key set, JWT_ISSUER is only the expected `iss`: no discovery.
    let inline = with(&[("JWT_ISSUER", "http://idp.example")]);
    assert_eq!(check(&inline, &[]).unwrap().jwt.discovery, None);
    // A provider's own types and leeway replace the shared ones.
    let providers = json!([
        {"issuer": "https://a/", "jwks_url": "https://a/jwks", "types": ["at+jwt"], "leeway_seconds": 0},
        {"issuer": "https://b/"},
    ])
    .to_string();
    let vars = with(&[
        ("JWT_HMAC_SECRET", ""),
        ("JWT_ALGORITHMS", "RS256"),
        ("JWT_PROVIDERS", &providers),
        ("JWT_TYPES", "jwt"),
        ("JWT_LEEWAY_SECONDS", "30"),
    ]);
    let config = check(&vars, &[]).unwrap();
    let list = config.providers.as_ref().unwrap().list();
    assert_eq!(list[0].settings.leeway_secs, 0);
    assert!(list[0]
        .settings
        .types
        .as_ref()
        .unwrap()
        .accepts(Some("at+jwt")));
    assert!(!list[0]
        .settings
        .types
        .as_ref()
        .unwrap()
        .accepts(Some("JWT")));
    assert_eq!(list[1].settings.leeway_secs, 30);
    assert!(list[1]
        .settings
        .types
        .as_ref()
        .unwrap()
        .accepts(Some("JWT")));
    assert_eq!(list[1].settings.discovery.as_deref(), Some("https://b/"));
    assert_eq!(list[0].settings.discovery, None);
}

#[test]
fn the_jwt_header_is_no_header_the_gateway_sets() {
    let routes = json!([{"prefix": "/", "claims_to_headers": {"x-sub": "sub"}}]).to_string();
    for header in ["X-Sub", "x_sub"] {
        let vars = with(&[("JWT_HEADER", header), ("ROUTES", &routes)]);
        assert_eq!(
            problems(&vars, &[]),
            ["JWT_HEADER names a header the gateway sets (CUSTOMER_ID_HEADER, GATEWAY_ASSERTION_HEADER or a route's claims_to_headers)"],
            "{header}"
        );
    }
    let vars = with(&[
        ("JWT_HEADER", "x-customer"),
        ("CUSTOMER_ID_HEADER", "X-Customer"),
        ("CUSTOMER_ID_KEY", CUSTOMER_ID_KEY),
    ]);
    assert_eq!(problems(&vars, &[]).len(), 1);
    let vars = with(&[("JWT_HEADER", "x-other"), ("ROUTES", &routes)]);
    assert!(check(&vars, &[]).is_ok());
}

//! `npm run check-config`: the configuration check the Worker runs on its first request,
//! run before a deploy on what a wrangler file declares (its `[vars]` and bindings, read by
//! wrangler's own reader in scripts/check-config.mjs) and the secrets given to it. The same
//! `Config::from_environment`, not a second copy of the rules; what is added here is only what
//! a wrangler file can get wrong that a running Worker cannot see: a required secret not given
//! ("not set here"), and a secret written into `[vars]`.
//!
//! Native only: `tools/check-config.rs` feeds it the JSON the script writes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::config::registry::{self, Binding, Bound, Environment, Kind};
use crate::config::setting::Plaintext;
use crate::config::Config;
use crate::identity::requirement::AuthMode;
use crate::proxy::route::RouteTable;

/// What the script read: the environment's `[vars]` (any JSON: wrangler passes tables and
/// arrays as such), the secrets given, the bindings declared.
#[derive(Debug, Default, Deserialize)]
pub struct Input {
    /// The wrangler environment (`--env`), for the `wrangler secret put` hint.
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Where the secrets came from (a path), or `None` when no file was found.
    #[serde(default)]
    pub secrets_file: Option<String>,
    #[serde(default)]
    pub bindings: Vec<DeclaredBinding>,
    /// `--require-secrets`: a required secret not given is a failure, not a note.
    #[serde(default)]
    pub require_secrets: bool,
    /// Settings whose value is still a `REPLACE_WITH_…` of the template (found by the script,
    /// which sees the whole file: `[vars]`, binding ids, routes), with what to do about each.
    #[serde(default)]
    pub placeholders: Vec<Placeholder>,
}

/// A setting the template left for the user to fill in.
#[derive(Debug, Deserialize)]
pub struct Placeholder {
    pub setting: String,
    pub hint: String,
}

/// One binding the wrangler file declares.
#[derive(Debug, Deserialize)]
pub struct DeclaredBinding {
    pub name: String,
    /// `kv`, `durable_object`, `ratelimit`, `analytics_engine`, or anything else.
    pub kind: String,
}

/// The lines to print and whether the configuration passes.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<String>,
    pub ok: bool,
}

/// Checks `input` as the Worker would see it once deployed with those secrets.
pub fn run(input: &Input) -> Report {
    // A secrets file may also hold local overrides of vars (`wrangler dev` reads it so); what
    // deploys is the `[vars]` value, so that is what is checked.
    let secrets: BTreeMap<&str, &str> = input
        .secrets
        .iter()
        .filter(|(name, _)| !is_var(name))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut env = Environment::default();
    for (name, value) in &input.vars {
        if !secrets.contains_key(name.as_str()) {
            let bound = if value.is_string() {
                Bound::Text
            } else {
                Bound::Json
            };
            env.add(name.clone(), bound);
        }
    }
    for name in secrets.keys() {
        env.add(*name, Bound::Text);
    }
    for b in &input.bindings {
        env.add(b.name.clone(), binding_kind(&b.kind));
    }
    let lookup = |name: &str| {
        secrets.get(name).map(|v| v.to_string()).or_else(|| {
            input
                .vars
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    };

    // A placeholder is the one thing wrong with its setting: not also "not a URL".
    let mut problems: Vec<String> = input
        .placeholders
        .iter()
        .map(|p| {
            format!(
                "{} is still the template's placeholder: {}",
                p.setting, p.hint
            )
        })
        .collect();
    let placeholder = |name: &str| input.placeholders.iter().any(|p| p.setting == name);
    let mut not_set: Vec<&'static str> = Vec::new();
    // Values written into wrangler.toml are committed, and shown in the dashboard.
    for setting in registry::SETTINGS.iter().filter(|s| s.kind == Kind::Secret) {
        if input.vars.contains_key(setting.name) {
            problems.push(format!(
                "{0} is a secret: remove it from [vars] and set it with wrangler secret put {0}{1}",
                setting.name,
                env_flag(input)
            ));
        }
    }
    if let Err(errors) = Config::from_environment(&lookup, &env) {
        for e in errors.iter().filter(|e| !placeholder(&e.setting)) {
            match registry::find(&e.setting) {
                // Absent here, so whatever is wrong with it is that it is absent.
                Some(s) if s.kind == Kind::Secret && lookup(s.name).is_none() => {
                    if !not_set.contains(&s.name) {
                        not_set.push(s.name);
                    }
                }
                _ => problems.push(e.to_string()),
            }
        }
    }

    let mut lines = problems;
    // Set but without effect: said, and not counted as a problem.
    let notes = crate::token::TokenConfig::notes(&lookup);
    for name in &not_set {
        lines.push(format!(
            "not set here: {name} (wrangler secret put {name}{})",
            env_flag(input)
        ));
    }
    let ok = lines.len() == not_set.len() && (not_set.is_empty() || !input.require_secrets);
    lines.extend(notes);
    if ok {
        lines.push(summary(input, &env, &lookup, not_set.len()));
    }
    Report { lines, ok }
}

fn is_var(name: &str) -> bool {
    registry::find(name).is_some_and(|s| s.kind == Kind::Var)
}

fn env_flag(input: &Input) -> String {
    input
        .env
        .as_deref()
        .map(|e| format!(" --env {e}"))
        .unwrap_or_default()
}

fn binding_kind(kind: &str) -> Bound {
    match kind {
        "kv" => Bound::Binding(Binding::KvNamespace),
        "durable_object" => Bound::Binding(Binding::DurableObjectNamespace),
        "ratelimit" => Bound::Binding(Binding::RateLimiter),
        "analytics_engine" => Bound::Binding(Binding::AnalyticsEngine),
        _ => Bound::Other,
    }
}

/// `configuration ok: 2 routes (1 public, 1 jwt), …`: counts and names, never a value.
fn summary(
    input: &Input,
    env: &Environment,
    get: &dyn Fn(&str) -> Option<String>,
    not_set: usize,
) -> String {
    let set = |name: &str| get(name).is_some_and(|v| !v.trim().is_empty());
    let mut parts = Vec::new();
    let table = match get("ROUTES").filter(|r| !r.trim().is_empty()) {
        Some(json) => RouteTable::from_setting(&json, Plaintext::Allowed).unwrap_or_default(),
        None => RouteTable::default(),
    };
    let routes = table.routes();
    let mut modes: Vec<String> = Vec::new();
    for (mode, word) in [
        (AuthMode::Public, "public"),
        (AuthMode::Jwt, "jwt"),
        (AuthMode::Optional, "optional"),
        (AuthMode::Report, "report"),
        (AuthMode::Opaque, "opaque"),
    ] {
        let n = routes.iter().filter(|r| r.auth == mode).count();
        if n > 0 {
            modes.push(format!("{n} {word}"));
        }
    }
    parts.push(format!(
        "{} route{} ({}){}",
        routes.len(),
        if routes.len() == 1 { "" } else { "s" },
        modes.join(", "),
        if set("ROUTES") {
            ""
        } else {
            ", ROUTES unset: every path is jwt"
        }
    ));
    if set("JWT_PROVIDERS") {
        let n = get("JWT_PROVIDERS")
            .and_then(|j| serde_json::from_str::<Vec<Value>>(&j).ok())
            .map_or(0, |v| v.len());
        parts.push(format!(
            "{n} identity provider{}",
            if n == 1 { "" } else { "s" }
        ));
        // Said only when used: those providers' JWTs cost an introspection call per
        // `max_age_seconds`.
        let introspected = get("JWT_PROVIDERS")
            .and_then(|j| serde_json::from_str::<Vec<Value>>(&j).ok())
            .map_or(0, |v| {
                v.iter().filter(|p| p.get("introspect").is_some()).count()
            });
        if introspected > 0 {
            parts.push(format!("introspect on {introspected} of them"));
        }
    } else {
        let sources: Vec<&str> = ["JWKS_URL", "JWT_JWKS", "JWT_HMAC_SECRET"]
            .into_iter()
            .filter(|n| set(n))
            .collect();
        if sources.is_empty() {
            // JWT_ISSUER alone: its discovery document names the key set.
            parts.push("keys by discovery from JWT_ISSUER".into());
        } else {
            parts.push(format!("keys from {}", sources.join(" and ")));
        }
    }
    if set("INTROSPECTION_URL") {
        parts.push("introspection".into());
    }
    if set("CUSTOMER_ID_HEADER") {
        parts.push("customer id header".into());
    }
    let limiters = env
        .names()
        .filter(|(_, b)| *b == Bound::Binding(Binding::RateLimiter))
        .count();
    if limiters > 0 {
        parts.push(format!(
            "{limiters} rate-limiting binding{}",
            if limiters == 1 { "" } else { "s" }
        ));
    }
    parts.push(match env.get("TOKEN_COORDINATOR") {
        Some(_) => "TOKEN_COORDINATOR bound".into(),
        None => "TOKEN_COORDINATOR not bound".into(),
    });
    // Said only when bound: without it DPoP replays are refused per isolate (the reference).
    if env.get("DPOP_REPLAY").is_some() {
        parts.push("DPOP_REPLAY bound".into());
    }
    parts.push(match (&input.secrets_file, not_set) {
        (Some(file), 0) => format!("secrets from {file}"),
        (Some(file), n) => format!("secrets from {file}, {n} not set here"),
        (None, 0) => "no secrets file".into(),
        (None, n) => format!("no secrets file, {n} not set here"),
    });
    format!("configuration ok: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(vars: Value, secrets: &[(&str, &str)]) -> Input {
        Input {
            vars: serde_json::from_value(vars).unwrap(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets_file: Some(".dev.vars".into()),
            bindings: vec![DeclaredBinding {
                name: "TOKEN_CACHE".into(),
                kind: "kv".into(),
            }],
            ..Input::default()
        }
    }

    fn vars() -> Value {
        json!({
            "ORIGIN_URL": "https://origin.example.com",
            "TOKEN_URL": "https://api.example.com/oauth/token",
            "CLIENT_ID": "planted-client-id",
            "JWT_ALGORITHMS": "RS256",
            "JWKS_URL": "https://login.example.com/jwks.json",
            "ROUTES": "[{\"prefix\": \"/login\", \"auth\": \"public\"}, {\"prefix\": \"/account/\"}]",
        })
    }

    #[test]
    fn the_dpop_replay_guard_is_a_durable_object_binding() {
        let secrets = [("API_KEY", "k"), ("CLIENT_SECRET", "s")];
        let mut i = input(vars(), &secrets);
        i.bindings.push(DeclaredBinding {
            name: "DPOP_REPLAY".into(),
            kind: "durable_object".into(),
        });
        let report = run(&i);
        assert!(report.ok, "{:?}", report.lines);
        assert!(
            report.lines[0].contains("DPOP_REPLAY bound"),
            "{:?}",
            report.lines
        );
        i.bindings[1].kind = "kv".into();
        let report = run(&i);
        assert!(!report.ok);
        assert!(
            report.lines.iter().any(|l| l.contains("DPOP_REPLAY")),
            "{:?}",
            report.lines
        );
    }

    #[test]
    fn missing_secrets_are_notes_unless_required() {
        let mut i = input(vars(), &[]);
        let report = run(&i);
        assert_eq!(
            report.lines,
            [
                "not set here: API_KEY (wrangler secret put API_KEY)",
                "not set here: CLIENT_SECRET (wrangler secret put CLIENT_SECRET)",
                "configuration ok: 2 routes (1 public, 1 jwt), keys from JWKS_URL, TOKEN_COORDINATOR not bound, secrets from .dev.vars, 2 not set here",
            ]
        );
        assert!(report.ok);
        i.require_secrets = true;
        i.env = Some("staging".into());
        let report = run(&i);
        assert!(!report.ok);
        assert_eq!(
            report.lines,
            [
                "not set here: API_KEY (wrangler secret put API_KEY --env staging)",
                "not set here: CLIENT_SECRET (wrangler secret put CLIENT_SECRET --env staging)",
            ]
        );
        let all = input(
            vars(),
            &[
                ("API_KEY", "planted-key"),
                ("CLIENT_SECRET", "planted-secret"),
            ],
        );
        let report = run(&all);
        assert!(report.ok);
        assert_eq!(report.lines.len(), 1);
    }

    #[test]
    fn discovery_types_and_the_jwt_header_are_checked_before_a_deploy() {
        let secrets = [("API_KEY", "k"), ("CLIENT_SECRET", "s")];
        let mut v = vars();
        v.as_object_mut().unwrap().remove("JWKS_URL");
        v["JWT_ISSUER"] = json!("https://team.cloudflareaccess.com");
        v["JWT_TYPES"] = json!("at+jwt");
        v["JWT_HEADER"] = json!("Cf-Access-Jwt-Assertion");
        let report = run(&input(v.clone(), &secrets));
        assert!(report.ok, "{:?}", report.lines);
        assert!(
            report.lines[0].contains("keys by discovery from JWT_ISSUER"),
            "{:?}",
            report.lines
        );
        for (name, bad) in [
            ("JWT_ISSUER", "http://team.cloudflareaccess.com"),
            ("JWT_TYPES", "at jwt"),
            ("JWT_HEADER", "Authorization"),
        ] {
            let mut b = v.clone();
            b[name] = json!(bad);
            let report = run(&input(b, &secrets));
            assert!(!report.ok, "{name}");
            assert!(
                report.lines.iter().any(|l| l.starts_with(name)),
                "{name}: {:?}",
                report.lines
            );
        }
    }

    #[test]
    fn a_secret_given_but_wrong_is_a_problem_and_never_shown() {
        let i = input(
            vars(),
            &[("API_KEY", "planted key\t"), ("CLIENT_SECRET", "s")],
        );
        let report = run(&i);
        assert!(!report.ok);
        assert_eq!(report.lines.len(), 1);
        assert!(
            report.lines[0].starts_with("API_KEY must be visible ASCII"),
            "{:?}",
            report.lines
        );
        assert!(!report.lines[0].contains("planted"));
    }

    #[test]
    fn secrets_in_vars_and_var_overrides_in_the_secrets_file() {
        let mut v = vars();
        v["CLIENT_SECRET"] = json!("planted-secret");
        // A local override of a var in the secrets file is not what deploys.
        let i = input(
            v,
            &[("API_KEY", "k"), ("ORIGIN_URL", "http://planted.example")],
        );
        let report = run(&i);
        assert!(!report.ok);
        assert_eq!(
            report.lines,
            ["CLIENT_SECRET is a secret: remove it from [vars] and set it with wrangler secret put CLIENT_SECRET"]
        );
    }

    #[test]
    fn private_key_jwt_needs_the_key_not_the_secret_and_notes_a_secret_left_set() {
        let mut v = vars();
        v["TOKEN_CLIENT_AUTH"] = json!("private_key_jwt");
        let report = run(&input(v.clone(), &[("API_KEY", "planted-key")]));
        assert_eq!(
            report.lines,
            [
                "not set here: CLIENT_PRIVATE_KEY (wrangler secret put CLIENT_PRIVATE_KEY)",
                "configuration ok: 2 routes (1 public, 1 jwt), keys from JWKS_URL, TOKEN_COORDINATOR not bound, secrets from .dev.vars, 1 not set here",
            ]
        );
        let key = r#"{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#;
        let secrets = [
            ("API_KEY", "planted-key"),
            ("CLIENT_SECRET", "planted-secret"),
            ("CLIENT_PRIVATE_KEY", key),
        ];
        let report = run(&input(v.clone(), &secrets));
        assert!(report.ok, "{:?}", report.lines);
        assert_eq!(report.lines.len(), 2, "{:?}", report.lines);
        assert!(
            report.lines[0].starts_with("note: CLIENT_SECRET is set but never sent"),
            "{:?}",
            report.lines
        );
        assert!(report
            .lines
            .iter()
            .all(|l| !l.contains("planted-secret") && !l.contains("nWGxne")));
        v["TOKEN_PARAMS"] = json!("resource=https%3A%2F%2Fapi&scope=admin");
        let report = run(&input(v, &secrets));
        assert!(!report.ok);
        assert!(
            report
                .lines
                .iter()
                .any(|l| l.starts_with("TOKEN_PARAMS may not set \"scope\"")),
            "{:?}",
            report.lines
        );
    }
}

//! The gateway's settings and bindings, in one list (`SETTINGS`), and the check of an
//! environment's names against it: a name under one of the gateway's prefixes that is none of
//! its settings (a typo that would silently switch a check off), a setting bound as the wrong
//! kind of thing, a required binding missing.
//!
//! The parts read their settings by name; `Config` lets them read only names listed here (in
//! debug builds it panics otherwise), a test holds that every listed setting is read, and
//! another that the list equals the tables of docs/configuration.md. Adding a setting is one
//! line here, one row there, and its reader.

use crate::config::setting::ConfigError;

/// What a setting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `[vars]` string.
    Var,
    /// A string set with `wrangler secret put` (`.dev.vars` locally).
    Secret,
    /// A binding of this kind.
    Binding(Binding),
}

/// The kinds of binding the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `[[kv_namespaces]]`.
    KvNamespace,
    /// `[[durable_objects.bindings]]`.
    DurableObjectNamespace,
    /// `[[ratelimits]]`.
    RateLimiter,
    /// `[[analytics_engine_datasets]]`.
    AnalyticsEngine,
}

impl Binding {
    pub fn describe(self) -> &'static str {
        match self {
            Self::KvNamespace => "a KV namespace binding",
            Self::DurableObjectNamespace => "a Durable Object namespace binding",
            Self::RateLimiter => "a rate-limiting binding",
            Self::AnalyticsEngine => "an Analytics Engine dataset binding",
        }
    }
}

/// Whether a setting must be present, as docs/configuration.md's `required` column says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    Yes,
    No,
    /// Required in the case the text names (the reader checks it).
    When(&'static str),
}

/// One setting or binding of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub kind: Kind,
    pub required: Required,
}

const fn var(name: &'static str, required: Required) -> Setting {
    Setting {
        name,
        kind: Kind::Var,
        required,
    }
}

const fn secret(name: &'static str, required: Required) -> Setting {
    Setting {
        name,
        kind: Kind::Secret,
        required,
    }
}

const fn binding(name: &'static str, kind: Binding, required: Required) -> Setting {
    Setting {
        name,
        kind: Kind::Binding(kind),
        required,
    }
}

use Required::{No, When, Yes};

/// Every setting and binding the gateway reads, in the order of docs/configuration.md.
pub const SETTINGS: &[Setting] = &[
    var("ORIGIN_URL", Yes),
    var("ORIGIN_TIMEOUT_MS", No),
    secret("API_KEY", Yes),
    var("ORIGIN_TOKEN_REFUSAL", No),
    var("ALLOW_PLAINTEXT_ORIGIN", No),
    var("ROUTES", No),
    var("TOKEN_URL", Yes),
    var("CLIENT_ID", Yes),
    secret(
        "CLIENT_SECRET",
        When("unless `TOKEN_CLIENT_AUTH` is `private_key_jwt`"),
    ),
    var("TOKEN_CLIENT_AUTH", No),
    secret(
        "CLIENT_PRIVATE_KEY",
        When("with `TOKEN_CLIENT_AUTH=private_key_jwt`"),
    ),
    var("TOKEN_ASSERTION_AUDIENCE", No),
    var("TOKEN_SCOPE", No),
    var("TOKEN_PARAMS", No),
    var("TOKEN_TIMEOUT_MS", No),
    secret("TOKEN_ENCRYPTION_KEY", No),
    binding("TOKEN_CACHE", Binding::KvNamespace, Yes),
    var("JWT_ALGORITHMS", Yes),
    var("JWKS_URL", When("one key source")),
    var("JWT_JWKS", When("one key source")),
    secret("JWT_HMAC_SECRET", When("one key source")),
    var("JWT_ISSUER", No),
    var("JWT_AUDIENCE", No),
    var("JWT_LEEWAY_SECONDS", No),
    var("JWT_MAX_AGE_SECONDS", No),
    var("JWT_COOKIE", No),
    var("JWT_HEADER", No),
    var("JWT_TYPES", No),
    var("JWT_PROVIDERS", No),
    var("INTROSPECTION_URL", When("when a route is `opaque`")),
    var("INTROSPECTION_TIMEOUT_MS", No),
    var("SESSION_COOKIE", No),
    var("CUSTOMER_ID_HEADER", No),
    secret("CUSTOMER_ID_KEY", When("with `CUSTOMER_ID_HEADER`")),
    var("GATEWAY_ASSERTION_HEADER", No),
    secret(
        "GATEWAY_SIGNING_KEY",
        When("with `GATEWAY_ASSERTION_HEADER`"),
    ),
    var("GATEWAY_ISSUER", No),
    var("DPOP_ALGORITHMS", No),
    var("DPOP_MAX_AGE_SECONDS", No),
    binding("TOKEN_COORDINATOR", Binding::DurableObjectNamespace, No),
    binding("DPOP_REPLAY", Binding::DurableObjectNamespace, No),
    binding("METRICS", Binding::AnalyticsEngine, No),
];

/// Names under these prefixes belong to the gateway: one that is not a setting is a mistake.
/// Compared ignoring ASCII case (`Jwt_Audience` is a typo too).
pub const PREFIXES: [&str; 10] = [
    "JWT_",
    "TOKEN_",
    "ORIGIN_",
    "INTROSPECTION_",
    "CUSTOMER_ID_",
    "SESSION_",
    "CLIENT_",
    "GATEWAY_",
    "DPOP_",
    "METRICS_",
];

/// The setting or binding named exactly `name`.
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Whether `name` is under one of the gateway's prefixes.
pub fn is_owned(name: &str) -> bool {
    PREFIXES.iter().any(|p| {
        name.len() >= p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    })
}

/// What is bound under a name of the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A string: a var or a secret.
    Text,
    /// A var that is not a string (wrangler passes a TOML table, array, number or boolean in
    /// `[vars]` as JSON).
    Json,
    Binding(Binding),
    /// Any other binding (R2, D1, a service, ...).
    Other,
}

/// The names of an environment and what each is bound to: the Worker's `env`, or what a
/// wrangler file declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    names: Vec<(String, Bound)>,
}

impl Environment {
    pub fn add(&mut self, name: impl Into<String>, bound: Bound) {
        self.names.push((name.into(), bound));
    }

    /// What is bound under `name`, if anything.
    pub fn get(&self, name: &str) -> Option<Bound> {
        self.names.iter().find(|(n, _)| n == name).map(|&(_, b)| b)
    }

    pub fn names(&self) -> impl Iterator<Item = (&str, Bound)> {
        self.names.iter().map(|(n, b)| (n.as_str(), *b))
    }
}

/// Checks `env`'s names against the settings: names under the gateway's prefixes that are
/// none of its settings or `also_known` (the rate-limit bindings `ROUTES` names), settings
/// bound as the wrong kind, required bindings missing. Names are printed, values never.
pub fn check(env: &Environment, also_known: &[&str]) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    for (name, bound) in env.names() {
        match find(name) {
            Some(setting) => {
                if let Some(problem) = wrong_kind(setting, bound) {
                    problems.push(ConfigError::new(setting.name, problem));
                }
            }
            None if also_known.contains(&name) => {}
            None if is_owned(name) => {
                let known = SETTINGS
                    .iter()
                    .map(|s| s.name)
                    .chain(also_known.iter().copied());
                let problem = match crate::config::suggest::closest(name, known) {
                    Some(meant) => format!("is an unknown setting; did you mean {meant}?"),
                    None => "is an unknown setting: the gateway has no setting of that name (see docs/configuration.md)".to_string(),
                };
                problems.push(ConfigError::named(name.to_string(), problem));
            }
            None => {}
        }
    }
    for setting in SETTINGS {
        if let (Kind::Binding(kind), Yes, None) =
            (setting.kind, setting.required, env.get(setting.name))
        {
            problems.push(ConfigError::new(
                setting.name,
                format!("is required but not bound: it must be {}", kind.describe()),
            ));
        }
    }
    problems
}

fn wrong_kind(setting: &Setting, bound: Bound) -> Option<String> {
    match (setting.kind, bound) {
        (Kind::Var | Kind::Secret, Bound::Text) => None,
        (Kind::Var | Kind::Secret, Bound::Json) => Some(format!(
            "must be a string: in [vars] write {} = \"...\" (a TOML table, array, number or boolean reaches the Worker as JSON, not text)",
            setting.name
        )),
        (Kind::Var | Kind::Secret, _) => Some(format!(
            "must be a {}, but a binding is bound under that name",
            if setting.kind == Kind::Var { "var" } else { "secret" }
        )),
        (Kind::Binding(want), Bound::Binding(got)) if want == got => None,
        (Kind::Binding(want), Bound::Text | Bound::Json) => Some(format!(
            "must be {}, but a var or secret is set under that name",
            want.describe()
        )),
        (Kind::Binding(want), _) => Some(format!(
            "must be {}, but another kind of binding is bound under that name",
            want.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(names: &[(&str, Bound)]) -> Environment {
        let mut env = Environment::default();
        for &(n, b) in names {
            env.add(n, b);
        }
        env
    }

    const KV: Bound = Bound::Binding(Binding::KvNamespace);

    #[test]
    fn names_are_unique() {
        for (i, s) in SETTINGS.iter().enumerate() {
            assert!(
                SETTINGS[..i].iter().all(|t| t.name != s.name),
                "{} twice",
                s.name
            );
        }
    }

    #[test]
    fn an_unknown_name_under_every_prefix_is_named_with_the_closest_setting() {
        let cases = [
            ("JWT_AUDIENCES", Some("JWT_AUDIENCE")),
            ("jwt_audience", Some("JWT_AUDIENCE")),
            ("TOKEN_SCOPES", Some("TOKEN_SCOPE")),
            ("ORIGIN_TIMEOUT", Some("ORIGIN_TIMEOUT_MS")),
            ("INTROSPECTION_ULR", Some("INTROSPECTION_URL")),
            ("CUSTOMER_ID_HEADRE", Some("CUSTOMER_ID_HEADER")),
            ("SESSION_COOKIES", Some("SESSION_COOKIE")),
            ("CLIENT_SECERT", Some("CLIENT_SECRET")),
            ("GATEWAY_SIGNING", None),
            ("DPOP_ALGS", None),
            ("Metrics_Dataset", None),
            ("TOKEN_CACHES", Some("TOKEN_CACHE")),
        ];
        for (name, meant) in cases {
            let problems = check(&env(&[(name, Bound::Text), ("TOKEN_CACHE", KV)]), &[]);
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
            assert_eq!(problems[0].setting, name);
            match meant {
                Some(m) => assert_eq!(
                    problems[0].to_string(),
                    format!("{name} is an unknown setting; did you mean {m}?")
                ),
                None => assert!(
                    problems[0].problem.starts_with("is an unknown setting:"),
                    "{name}"
                ),
            }
        }
    }

    #[test]
    fn metrics_is_an_optional_analytics_engine_dataset_and_nothing_else() {
        let dataset = Bound::Binding(Binding::AnalyticsEngine);
        assert_eq!(
            check(&env(&[("TOKEN_CACHE", KV), ("METRICS", dataset)]), &[]),
            []
        );
        assert_eq!(check(&env(&[("TOKEN_CACHE", KV)]), &[]), [], "optional");
        let wrong = [
            (KV, "but another kind of binding"),
            (
                Bound::Binding(Binding::RateLimiter),
                "but another kind of binding",
            ),
            (Bound::Other, "but another kind of binding"),
            (Bound::Text, "but a var or secret"),
            (Bound::Json, "but a var or secret"),
        ];
        for (bound, why) in wrong {
            let problems = check(&env(&[("TOKEN_CACHE", KV), ("METRICS", bound)]), &[]);
            assert_eq!(problems.len(), 1, "{bound:?}");
            assert_eq!(problems[0].setting, "METRICS");
            let text = problems[0].to_string();
            assert!(
                text.starts_with("METRICS must be an Analytics Engine dataset binding, ")
                    && text.contains(why),
                "{text}"
            );
        }
    }

    #[test]
    fn other_names_and_named_bindings_are_left_alone() {
        let e = env(&[
            ("MY_APP_FLAG", Bound::Text),
            ("API_KEYS", Bound::Text),
            ("JWKS_URLS", Bound::Text),
            ("TOKEN_LIMIT", Bound::Binding(Binding::RateLimiter)),
            ("TOKEN_CACHE", KV),
        ]);
        assert_eq!(check(&e, &["TOKEN_LIMIT"]), []);
    }

    #[test]
    fn kinds_are_checked_both_ways_and_required_bindings_must_be_there() {
        let e = env(&[
            ("ROUTES", Bound::Json),
            ("JWT_ISSUER", KV),
            ("TOKEN_CACHE", Bound::Text),
            ("TOKEN_COORDINATOR", KV),
        ]);
        let problems = check(&e, &[]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{text:?}");
        assert!(text[0].starts_with("ROUTES must be a string"), "{text:?}");
        assert!(
            text[1].starts_with("JWT_ISSUER must be a var, but a binding"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("TOKEN_CACHE must be a KV namespace binding, but a var"),
            "{text:?}"
        );
        assert!(
            text[3].starts_with(
                "TOKEN_COORDINATOR must be a Durable Object namespace binding, but another"
            ),
            "{text:?}"
        );
        let missing = check(&env(&[]), &[]);
        assert_eq!(missing.len(), 1);
        assert_eq!(
            missing[0].to_string(),
            "TOKEN_CACHE is required but not bound: it must be a KV namespace binding"
        );
    }
}

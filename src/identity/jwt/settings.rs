//! The `JWT_*` and `JWKS_URL` settings, read and checked against each other once per isolate.

use crate::config::setting::{
    endpoint_url, number, optional, required, ConfigError, ConfigErrors, Lookup, Problems,
};

use super::{Alg, KeySet, TokenTypes};

/// How customer JWTs are checked. Built only by `from_settings`, which guarantees that every
/// allowed algorithm has a possible key.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `JWT_ALGORITHMS`: the only `alg` values accepted; never `none`.
    pub algorithms: Vec<Alg>,
    /// `JWKS_URL`: an http(s) URL whose key set is fetched elsewhere and passed to `validate`.
    pub jwks_url: Option<String>,
    /// `JWT_ISSUER`: when set, `iss` must equal it exactly.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: when non-empty, `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// `JWT_LEEWAY_SECONDS`: clock skew allowed on `exp`, `nbf` and `iat`. Defaults to 60.
    pub leeway_secs: u64,
    /// `JWT_MAX_AGE_SECONDS`: when set, `iat` is required and may be at most this old.
    pub max_age_secs: Option<u64>,
    /// `JWT_COOKIE`: the cookie that may carry the JWT.
    pub cookie: Option<String>,
    /// `JWT_TYPES` (or a provider's `types`): when set, the header's `typ` must be one of them.
    pub types: Option<TokenTypes>,
    /// The issuer whose discovery document names the key set's URL: `JWT_ISSUER` (or a
    /// provider's `issuer`) when no key source is configured. Then `jwks_url` is `None` and
    /// the URL is found at run time (`crate::identity::jwks::Discovery`).
    pub discovery: Option<String>,
    /// `JWT_JWKS`'s usable keys plus `JWT_HMAC_SECRET`.
    keys: KeySet,
}

const ALGORITHMS: &str = "JWT_ALGORITHMS";
const JWKS: &str = "JWT_JWKS";
const HMAC_SECRET: &str = "JWT_HMAC_SECRET";
const JWKS_URL: &str = "JWKS_URL";
const TYPES: &str = "JWT_TYPES";
const ISSUER: &str = "JWT_ISSUER";

/// Leeway beyond an hour is no longer clock skew.
const MAX_LEEWAY_SECS: u64 = 3_600;

impl JwtSettings {
    /// Reads and cross-checks the JWT settings of a single provider (no `JWT_PROVIDERS`): the
    /// shared ones and the key sources, issuer and audience. Every problem found; errors name
    /// the setting, never its value.
    pub fn from_settings(get: Lookup<'_>) -> Result<JwtSettings, ConfigErrors> {
        let mut p = Problems::default();
        let shared = p.take_all(Self::shared(get));
        let flat = p.take_all(Self::flat(get, shared));
        p.finish(|| flat)
    }

    /// The single provider's key sources, issuer and audience over `shared`
    /// (`JwtSettings::shared`; `None` when it is broken, which the caller reports: then the
    /// key sources are read but not checked against the algorithms).
    pub fn flat(get: Lookup<'_>, shared: Option<JwtSettings>) -> Result<JwtSettings, ConfigErrors> {
        let mut p = Problems::default();
        let jwks_url = p.take(
            optional(get, JWKS_URL)
                .map(|raw| endpoint_url(&raw).map_err(|why| ConfigError::new(JWKS_URL, why)))
                .transpose(),
        );
        let inline = p.take(
            optional(get, JWKS)
                .map(|json| inline_keys(&json))
                .transpose(),
        );
        // The secret is used byte for byte: trimming could silently change a key.
        let secret = get(HMAC_SECRET).filter(|s| !s.is_empty());
        let issuer = optional(get, ISSUER).map(|i| i.trim().to_string());
        // `JWT_ISSUER` alone: the key set's URL comes from the issuer's discovery document.
        let no_source =
            optional(get, JWKS_URL).is_none() && optional(get, JWKS).is_none() && secret.is_none();
        let discovery = p.take(match issuer.as_deref().filter(|_| no_source) {
            None => Ok(None),
            Some(iss) => crate::support::http_url::well_known_urls(iss)
                .map(|_| Some(iss.to_string()))
                .map_err(|why| ConfigError::new(ISSUER, why)),
        });
        if let (Some(shared), Some(jwks_url), Some(inline)) = (&shared, &jwks_url, &inline) {
            for e in check_key_sources(
                &shared.algorithms,
                jwks_url.is_some() || (no_source && issuer.is_some()),
                inline.as_ref(),
                secret.as_deref(),
            ) {
                p.push(e);
            }
        }
        let audiences = p.take(match optional(get, "JWT_AUDIENCE") {
            None => Ok(Vec::new()),
            Some(raw) => {
                let list = comma_list(&raw);
                if list.is_empty() {
                    Err(ConfigError::new(
                        "JWT_AUDIENCE",
                        "must list at least one audience",
                    ))
                } else {
                    Ok(list.into_iter().map(str::to_string).collect())
                }
            }
        });
        p.finish(|| {
            let mut keys = inline?.unwrap_or_default();
            if let Some(secret) = &secret {
                keys = keys.with_hmac_secret(secret.as_bytes());
            }
            Some(JwtSettings {
                jwks_url: jwks_url?,
                issuer,
                audiences: audiences?,
                keys,
                discovery: discovery?,
                ..shared?
            })
        })
    }

    /// The keys known at configuration time: `JWT_JWKS` and `JWT_HMAC_SECRET`. A key set
    /// fetched from `jwks_url` is merged with these (`KeySet::extend`) by whoever fetches it.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The settings every provider shares (`JWT_ALGORITHMS`, `JWT_LEEWAY_SECONDS`,
    /// `JWT_MAX_AGE_SECONDS`, `JWT_COOKIE`), without keys, issuer or audience: the base of each
    /// `JWT_PROVIDERS` entry, and what reads the token from the request.
    pub fn shared(get: Lookup<'_>) -> Result<JwtSettings, ConfigErrors> {
        let mut p = Problems::default();
        let algorithms = p.take(required(get, ALGORITHMS).and_then(|raw| parse_algorithms(&raw)));
        let max_age_secs = p.take(match optional(get, "JWT_MAX_AGE_SECONDS") {
            None => Ok(None),
            Some(_) => number(get, "JWT_MAX_AGE_SECONDS", 0, 1..=u64::from(u32::MAX)).map(Some),
        });
        let cookie = optional(get, "JWT_COOKIE").map(|c| c.trim().to_string());
        if cookie.as_deref().is_some_and(|c| !is_cookie_name(c)) {
            p.push(ConfigError::new(
                "JWT_COOKIE",
                "must be a cookie name (an HTTP token)",
            ));
        }
        let leeway_secs = p.take(number(get, "JWT_LEEWAY_SECONDS", 60, 0..=MAX_LEEWAY_SECS));
        let types = p.take(match optional(get, TYPES) {
            None => Ok(None),
            Some(raw) => TokenTypes::parse(comma_list(&raw))
                .map(Some)
                .map_err(|why| ConfigError::new(TYPES, why)),
        });
        p.finish(|| {
            Some(JwtSettings {
                algorithms: algorithms?,
                jwks_url: None,
                issuer: None,
                audiences: Vec::new(),
                leeway_secs: leeway_secs?,
                max_age_secs: max_age_secs?,
                cookie,
                types: types?,
                discovery: None,
                keys: KeySet::default(),
            })
        })
    }

    /// One provider's verification settings: `shared` with the provider's algorithms (or
    /// `JWT_ALGORITHMS`) and key sources. Asymmetric algorithms only: a shared HMAC secret
    /// cannot tell issuers apart (whoever holds it could sign for every provider). The error
    /// is the entry's field at fault (`None`: the entry) and the problem, for the caller to
    /// name `JWT_PROVIDERS` and the entry.
    ///
    /// `discovery`: the provider's issuer when it has no key source (its document names the key
    /// set's URL).
    pub fn for_provider(
        shared: &JwtSettings,
        algorithms: Option<&[String]>,
        jwks_url: Option<String>,
        inline: Option<KeySet>,
        discovery: Option<String>,
    ) -> Result<JwtSettings, (Option<&'static str>, String)> {
        let algorithms = match algorithms {
            None => shared.algorithms.clone(),
            Some(list) => {
                parse_algorithms(&list.join(",")).map_err(|e| (Some("algorithms"), e.problem))?
            }
        };
        if inline.as_ref().is_some_and(KeySet::is_empty) {
            return Err((Some("jwks"), "holds no usable signature key".into()));
        }
        for &alg in &algorithms {
            if alg.min_hmac_secret_len().is_some() {
                return Err((
                    Some("algorithms"),
                    format!("allows {alg}: providers take public keys only (set algorithms without HS256, HS384, HS512)"),
                ));
            }
            if jwks_url.is_none()
                && discovery.is_none()
                && !inline.as_ref().is_some_and(|k| k.has_family(alg.family()))
            {
                return Err((
                    None,
                    format!(
                        "has no {} for {alg} (add it to jwks, or set jwks_url)",
                        alg.family()
                    ),
                ));
            }
        }
        Ok(JwtSettings {
            algorithms,
            jwks_url,
            keys: inline.unwrap_or_default(),
            discovery,
            ..shared.clone()
        })
    }

    pub fn allows(&self, alg: Alg) -> bool {
        self.algorithms.contains(&alg)
    }
}

fn comma_list(raw: &str) -> Vec<&str> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Names are matched case-insensitively here (an operator convenience), unlike a token's
/// `alg`, which must be exact.
fn parse_algorithms(raw: &str) -> Result<Vec<Alg>, ConfigError> {
    let mut algorithms = Vec::new();
    for name in comma_list(raw) {
        if name.eq_ignore_ascii_case("none") {
            return Err(ConfigError::new(
                ALGORITHMS,
                "must not allow none: unsigned tokens are never accepted",
            ));
        }
        let alg = Alg::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                ConfigError::new(
                    ALGORITHMS,
                    "lists an unsupported algorithm; allowed are HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA",
                )
            })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(ConfigError::new(
            ALGORITHMS,
            "must list at least one algorithm",
        ));
    }
    Ok(algorithms)
}

/// `JWT_JWKS`'s usable keys: a set with none is a mistake, not an empty allow-list.
fn inline_keys(json: &str) -> Result<KeySet, ConfigError> {
    let set = KeySet::from_jwks_json(json).map_err(|e| ConfigError::new(JWKS, e.to_string()))?;
    if set.is_empty() {
        return Err(ConfigError::new(
            JWKS,
            "holds no usable signature key (RSA of 2048 to 4096 bits, EC P-256, P-384 or P-521, or Ed25519)",
        ));
    }
    Ok(set)
}

/// Every allowed algorithm must have a key that could verify it, or the operator has made a
/// mistake that would otherwise surface only as every caller's 401. Each problem once.
fn check_key_sources(
    algorithms: &[Alg],
    has_url: bool,
    inline: Option<&KeySet>,
    secret: Option<&str>,
) -> Vec<ConfigError> {
    let mut problems: Vec<ConfigError> = Vec::new();
    let mut add = |e: ConfigError| {
        if !problems.contains(&e) {
            problems.push(e);
        }
    };
    let no_source = !has_url && inline.is_none() && secret.is_none();
    for &alg in algorithms {
        match (alg.min_hmac_secret_len(), secret) {
            (Some(_), None) => add(ConfigError::new(
                HMAC_SECRET,
                "is required when JWT_ALGORITHMS allows HS256, HS384 or HS512",
            )),
            (Some(min), Some(secret)) if secret.len() < min => add(ConfigError::new(
                HMAC_SECRET,
                format!("must be at least {min} bytes for {alg} (RFC 7518 section 3.2)"),
            )),
            (Some(_), Some(_)) => {}
            (None, _) if has_url => {}
            (None, _) if no_source => add(ConfigError::new(
                JWKS,
                "is required unless JWKS_URL, JWT_HMAC_SECRET or JWT_ISSUER (discovery) is set: one key source is needed",
            )),
            (None, _) => {
                let family = alg.family();
                if !inline.is_some_and(|set| set.has_family(family)) {
                    add(ConfigError::new(
                        JWKS,
                        format!("holds no {family} for {alg}, which JWT_ALGORITHMS allows (or set JWKS_URL)"),
                    ));
                }
            }
        }
    }
    problems
}

/// RFC 6265 §4.1.1: a cookie name is an RFC 9110 token.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_lists_tolerate_spaces_case_and_repeats() {
        assert_eq!(
            parse_algorithms(" HS256 , rs256,HS256,").unwrap(),
            vec![Alg::Hs256, Alg::Rs256]
        );
        assert_eq!(parse_algorithms("eddsa").unwrap(), vec![Alg::EdDsa]);
        assert_eq!(
            parse_algorithms("es384,ES512").unwrap(),
            vec![Alg::Es384, Alg::Es512]
        );
    }

    #[test]
    fn none_and_unknown_algorithms_are_refused() {
        for bad in [
            "none",
            "HS256,None",
            "NONE",
            "ES256K",
            "HS256,RSA-OAEP",
            " , ",
        ] {
            let err = parse_algorithms(bad).unwrap_err();
            assert_eq!(err.setting, ALGORITHMS, "{bad}");
        }
    }

    #[test]
    fn cookie_names_are_tokens() {
        assert!(is_cookie_name("__Host-session"));
        assert!(!is_cookie_name("a b"));
        assert!(!is_cookie_name("a=b"));
        assert!(!is_cookie_name("a;b"));
    }
}

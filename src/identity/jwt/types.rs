//! Token types (`JWT_TYPES`, a provider's `types`): which `typ` header values are accepted, read
//! once, and the RFC 7515 §4.1.9 comparison made per token.
//!
//! Why: an ID token and an access token from the same issuer for the same audience differ only
//! in their `typ` (RFC 9068 access tokens say `at+jwt`); without this check one passes as the
//! other (RFC 8725 §3.11). RFC 7515 §4.1.9: media type names compare case-insensitively, and a
//! value without `/` means `application/` followed by it, so `at+jwt`, `AT+JWT` and
//! `application/at+jwt` are one type.

/// The accepted types, each held as its full media type in lower case (`application/at+jwt`),
/// so the per-token comparison allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTypes {
    full: Vec<String>,
}

const APPLICATION: &str = "application/";

impl TokenTypes {
    /// The configured list, checked: at least one type, each a media type name (an RFC 9110
    /// token, optionally `type/subtype`). The error says what is wrong, never the value.
    pub fn parse<'a>(list: impl IntoIterator<Item = &'a str>) -> Result<Self, &'static str> {
        let mut full: Vec<String> = Vec::new();
        for raw in list {
            let name = raw.trim();
            if name.is_empty() {
                return Err("must list non-empty type names");
            }
            let parts: Vec<&str> = name.split('/').collect();
            if parts.len() > 2 || !parts.iter().all(|p| is_token(p)) {
                return Err("must list media type names such as at+jwt or application/at+jwt");
            }
            let lower = name.to_ascii_lowercase();
            let expanded = if parts.len() == 1 {
                format!("{APPLICATION}{lower}")
            } else {
                lower
            };
            if !full.contains(&expanded) {
                full.push(expanded);
            }
        }
        if full.is_empty() {
            return Err("must list at least one type");
        }
        Ok(Self { full })
    }

    /// Whether a token whose header's `typ` is `typ` is of an accepted type: present, and
    /// equal to one of the list under RFC 7515 §4.1.9.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        let Some(typ) = typ else {
            return false;
        };
        self.full.iter().any(|accepted| same_type(accepted, typ))
    }
}

/// `accepted` (full, lower case) against a token's `typ`, case-insensitively, with
/// `application/` implied when `typ` has no `/`.
fn same_type(accepted: &str, typ: &str) -> bool {
    if typ.contains('/') {
        accepted.eq_ignore_ascii_case(typ)
    } else {
        accepted
            .strip_prefix(APPLICATION)
            .is_some_and(|subtype| subtype.eq_ignore_ascii_case(typ))
    }
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(list: &[&str]) -> TokenTypes {
        TokenTypes::parse(list.iter().copied()).unwrap()
    }

    #[test]
    fn at_jwt_matches_every_spelling_of_itself_and_nothing_else() {
        let at = types(&["at+jwt"]);
        for ok in [
            "at+jwt",
            "AT+JWT",
            "At+Jwt",
            "application/at+jwt",
            "APPLICATION/AT+JWT",
        ] {
            assert!(at.accepts(Some(ok)), "{ok}");
        }
        for bad in [
            "JWT",
            "jwt",
            "",
            "at+jwt ",
            " at+jwt",
            "text/at+jwt",
            "application/jwt",
            "application/application/at+jwt",
            "at+jwtx",
            "xat+jwt",
            "application/",
            "application",
            "id_token+jwt",
            "dpop+jwt",
        ] {
            assert!(!at.accepts(Some(bad)), "{bad:?}");
        }
        assert!(
            !at.accepts(None),
            "an untyped token is not of an accepted type"
        );
    }

    #[test]
    fn a_configured_full_media_type_matches_the_short_form() {
        let full = types(&["Application/AT+JWT", "jwt"]);
        assert!(full.accepts(Some("at+jwt")));
        assert!(full.accepts(Some("JWT")));
        assert!(full.accepts(Some("application/jwt")));
        assert!(!full.accepts(Some("secevent+jwt")));
        // A type that is not under application/ is only itself.
        let other = types(&["example/thing"]);
        assert!(other.accepts(Some("EXAMPLE/THING")));
        assert!(!other.accepts(Some("thing")));
    }

    #[test]
    fn bad_lists_are_refused() {
        for bad in [
            &[][..],
            &[""],
            &[" "],
            &["at jwt"],
            &["a/b/c"],
            &["/at+jwt"],
            &["application/"],
            &["at+jwt", "é"],
            &["at\"jwt"],
        ] {
            assert!(TokenTypes::parse(bad.iter().copied()).is_err(), "{bad:?}");
        }
        assert_eq!(
            types(&["at+jwt", "AT+JWT", "application/at+jwt"])
                .full
                .len(),
            1
        );
    }
}

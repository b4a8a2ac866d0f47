//! `bind`: object-level authorization (OWASP API1, broken object-level authorization). A
//! route binds a path segment or a request header to a claim of the verified identity, so that
//! a valid token for `alice` cannot read `/accounts/bob/profile`. Compiled once from `ROUTES`,
//! checked on every request after the route's policy, without I/O.
//!
//! What is compared, and why it cannot be read two ways:
//! - a path segment is taken from the normalized path (`edge::path`), which is exactly what the
//!   origin receives, and percent-decoded once. The normalizer has already refused `%2F`, `%5C`,
//!   `%25`, control characters and invalid UTF-8, so a decoded segment never holds a `/` and
//!   decoding again would change nothing: `/accounts/al%69ce/` is `alice`'s, and
//!   `/accounts/alice%2Fx` never gets this far (400).
//! - a header must be sent once, in one spelling: a second copy, or the same name with `_` for
//!   `-` (which CGI-style origins read as the same header), is refused; so is a value holding a
//!   comma, since Fetch joins a repeated field into one value with `, `.
//! - ids compare exactly, byte for byte (`Alice` is not `alice`); a claim that is a number
//!   compares as its decimal text (integers only: `1.0` and `1` would be the same number); an
//!   array claim matches when one of its strings or integers does. Empty values match nothing.

use http::header::HeaderName;
use serde_json::{Map, Value};

use crate::config::setting::ConfigError;
use crate::identity::claims::Claims;
use crate::io::Fields;

/// The fields of one binding.
const FIELDS: [&str; 3] = ["path_segment", "header", "claim"];
/// Most bindings a route may list.
const MAX_BINDINGS: usize = 16;
/// Highest path segment a binding may name (paths are at most 8 KiB).
const MAX_SEGMENT: u64 = 128;
/// Longest claim path a binding may name.
const MAX_CLAIM_PATH: usize = 128;

/// A route's `bind`: every binding must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bindings(Vec<Binding>);

/// One binding: where the id is read from, and the claim it must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    source: Source,
    claim: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The N-th segment (1-based) of the normalized path.
    PathSegment(usize),
    /// A request header, and its other spelling (`-` and `_` swapped).
    Header {
        name: HeaderName,
        twin: Option<HeaderName>,
    },
}

/// Why a binding did not hold. Each becomes 403 `binding-mismatch`; the code is the log
/// line's `binding` field (never the ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindRefusal {
    /// An `optional` route without an identity: there is nothing to bind to.
    NoIdentity,
    /// The path has no such segment.
    AbsentSegment,
    /// The header is not sent, or is empty.
    AbsentHeader,
    /// The header is sent twice, in both spellings, or with a comma in its value.
    RepeatedHeader,
    /// The identity has no such claim (or it is `null`).
    AbsentClaim,
    /// The id is not the claim's (nor one of its values).
    Mismatch,
}

impl BindRefusal {
    /// The log line's `binding` field.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoIdentity => "no_identity",
            Self::AbsentSegment => "absent_segment",
            Self::AbsentHeader => "absent_header",
            Self::RepeatedHeader => "repeated_header",
            Self::AbsentClaim => "absent_claim",
            Self::Mismatch => "mismatch",
        }
    }

    /// What is wrong, for the problem's `detail` (never the ids).
    pub fn description(self) -> &'static str {
        match self {
            Self::NoIdentity => "no customer identity was presented",
            Self::AbsentSegment => "the path lacks the bound segment",
            Self::AbsentHeader => "the bound header is missing or empty",
            Self::RepeatedHeader => {
                "the bound header is sent more than once (or in two spellings, or with a comma)"
            }
            Self::AbsentClaim => "the customer's identity lacks the bound claim",
            Self::Mismatch => "it is not the customer's",
        }
    }
}

impl Bindings {
    /// A route's `bind` value: one binding object or a non-empty list of them. `at(field,
    /// problem)` names `ROUTES`, the route and the field (`bind[1].header`).
    pub fn compile(
        value: &Value,
        at: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let list = match value {
            Value::Object(map) => vec![Binding::compile(map, "bind", at)?],
            Value::Array(items) if items.is_empty() => return Err(at("bind", "is empty")),
            Value::Array(items) if items.len() > MAX_BINDINGS => {
                return Err(at(
                    "bind",
                    &format!("lists more than {MAX_BINDINGS} bindings"),
                ))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let field = format!("bind[{i}]");
                    match item {
                        Value::Object(map) => Binding::compile(map, &field, at),
                        _ => Err(at(&field, "must be an object")),
                    }
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(at(
                "bind",
                "must be an object ({\"path_segment\": 2, \"claim\": \"sub\"}) or a list of them",
            )),
        };
        Ok(Self(list))
    }

    /// Every binding holds for the request whose normalized path is `path` and whose fields
    /// are `fields`, against the verified identity's `claims`.
    pub fn check<F: Fields>(
        &self,
        path: &str,
        fields: &F,
        claims: &Claims,
    ) -> Result<(), BindRefusal> {
        self.0
            .iter()
            .try_for_each(|binding| binding.check(path, fields, claims))
    }
}

impl Binding {
    fn compile(
        map: &Map<String, Value>,
        field: &str,
        at: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let at_field = |name: &str, problem: &str| at(&format!("{field}.{name}"), problem);
        if let Some(problem) =
            crate::config::entries::unknown_fields(map, &FIELDS, |p| at(field, &p))
                .into_iter()
                .next()
        {
            return Err(problem);
        }
        let source = match (map.get("path_segment"), map.get("header")) {
            (Some(_), Some(_)) => {
                return Err(at(field, "names both a path_segment and a header: one per binding"))
            }
            (None, None) => return Err(at(field, "needs a path_segment or a header")),
            (Some(n), None) => match n.as_u64() {
                Some(n @ 1..=MAX_SEGMENT) => Source::PathSegment(n as usize),
                _ => {
                    return Err(at_field(
                        "path_segment",
                        &format!("must be a whole number from 1 to {MAX_SEGMENT} (1: the path's first segment)"),
                    ))
                }
            },
            (None, Some(Value::String(name))) => header(name).ok_or_else(|| {
                at_field(
                    "header",
                    "must be a header name the gateway does not control (not a credential, \
                     host, hop-by-hop or x-request-id)",
                )
            })?,
            (None, Some(_)) => return Err(at_field("header", "must be a string")),
        };
        let claim =
            match map.get("claim") {
                None => return Err(at_field("claim", "is required")),
                Some(Value::String(c))
                    if !c.is_empty()
                        && c.len() <= MAX_CLAIM_PATH
                        && c.trim() == c
                        && !c.starts_with('.')
                        && !c.ends_with('.')
                        && !c.contains("..") =>
                {
                    c.clone()
                }
                Some(_) => return Err(at_field(
                    "claim",
                    "must be a claim name or dotted path (a non-empty string of at most 128 bytes)",
                )),
            };
        Ok(Self { source, claim })
    }

    fn check<F: Fields>(&self, path: &str, fields: &F, claims: &Claims) -> Result<(), BindRefusal> {
        // The request's side first: a request without the id is refused whoever calls.
        let decoded;
        let id: &str = match &self.source {
            Source::PathSegment(n) => {
                let raw = path
                    .split('/')
                    .nth(*n)
                    .filter(|s| !s.is_empty())
                    .ok_or(BindRefusal::AbsentSegment)?;
                if raw.contains('%') {
                    decoded = percent_decode(raw).ok_or(BindRefusal::AbsentSegment)?;
                    &decoded
                } else {
                    raw
                }
            }
            Source::Header { name, twin } => {
                let names: Vec<HeaderName> =
                    std::iter::once(name.clone()).chain(twin.clone()).collect();
                let read = fields.read(&names);
                if twin.as_ref().is_some_and(|t| read.contains_key(t)) {
                    return Err(BindRefusal::RepeatedHeader);
                }
                let mut values = read.get_all(name).iter();
                let value = values.next().ok_or(BindRefusal::AbsentHeader)?;
                if values.next().is_some() {
                    return Err(BindRefusal::RepeatedHeader);
                }
                decoded = value
                    .to_str()
                    .map_err(|_| BindRefusal::Mismatch)?
                    .to_string();
                if decoded.contains(',') {
                    return Err(BindRefusal::RepeatedHeader);
                }
                if decoded.is_empty() {
                    return Err(BindRefusal::AbsentHeader);
                }
                &decoded
            }
        };
        let claim = claims
            .get(&self.claim)
            .filter(|v| !v.is_null())
            .ok_or(BindRefusal::AbsentClaim)?;
        let holds = match claim {
            Value::Array(items) => items.iter().any(|item| is_id(item, id)),
            single => is_id(single, id),
        };
        holds.then_some(()).ok_or(BindRefusal::Mismatch)
    }
}

/// `value` (a string, or an integer as its decimal text) is exactly `id`.
fn is_id(value: &Value, id: &str) -> bool {
    match value {
        Value::String(s) => !s.is_empty() && s == id,
        Value::Number(n) => {
            let text = n
                .as_u64()
                .map(|u| u.to_string())
                .or_else(|| n.as_i64().map(|i| i.to_string()));
            text.as_deref() == Some(id)
        }
        _ => false,
    }
}

/// A header name a binding may read, and its other spelling.
fn header(name: &str) -> Option<Source> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    if crate::identity::customer_id::is_reserved(name.as_str()) {
        return None;
    }
    let swapped: String = name
        .as_str()
        .chars()
        .map(|c| match c {
            '-' => '_',
            '_' => '-',
            c => c,
        })
        .collect();
    let twin = (swapped != name.as_str())
        .then(|| HeaderName::from_bytes(swapped.as_bytes()).ok())
        .flatten();
    Some(Source::Header { name, twin })
}

/// A normalized path segment percent-decoded once; `None` for what the normalizer never lets
/// through (a malformed escape, bytes that are not UTF-8).
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use serde_json::json;

    fn compile(v: Value) -> Result<Bindings, String> {
        Bindings::compile(&v, &|field, problem| {
            ConfigError::at("ROUTES", format!("[0].{field}"), problem)
        })
        .map_err(|e| e.to_string())
    }

    fn claims(v: Value) -> Claims {
        let Value::Object(map) = v else { panic!() };
        Claims::new(map, 0)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn segments_decode_once_and_compare_exactly() {
        let b = compile(json!({"path_segment": 2, "claim": "sub"})).unwrap();
        let alice = claims(json!({"sub": "alice"}));
        let none = HeaderMap::new();
        assert_eq!(b.check("/accounts/alice/profile", &none, &alice), Ok(()));
        assert_eq!(b.check("/accounts/alice", &none, &alice), Ok(()));
        assert_eq!(
            b.check("/accounts/Alice/profile", &none, &alice),
            Err(BindRefusal::Mismatch)
        );
        assert_eq!(
            b.check("/accounts/", &none, &alice),
            Err(BindRefusal::AbsentSegment)
        );
        assert_eq!(
            b.check("/accounts", &none, &alice),
            Err(BindRefusal::AbsentSegment)
        );
        let cafe = claims(json!({"sub": "café"}));
        assert_eq!(b.check("/accounts/caf%C3%A9", &none, &cafe), Ok(()));
        // Decoded once: `%2541` would be `%41` (the normalizer refuses `%25` before this).
        let pct = claims(json!({"sub": "a b"}));
        assert_eq!(b.check("/accounts/a%20b", &none, &pct), Ok(()));
    }

    #[test]
    fn claims_as_arrays_numbers_and_nested_paths() {
        let none = HeaderMap::new();
        let b = compile(json!({"path_segment": 2, "claim": "accounts"})).unwrap();
        let c = claims(json!({"accounts": ["acme", 42, true, "beta"]}));
        assert_eq!(b.check("/a/beta", &none, &c), Ok(()));
        assert_eq!(b.check("/a/42", &none, &c), Ok(()));
        assert_eq!(b.check("/a/true", &none, &c), Err(BindRefusal::Mismatch));
        let n = claims(json!({"accounts": 1234}));
        assert_eq!(b.check("/a/1234", &none, &n), Ok(()));
        assert_eq!(b.check("/a/01234", &none, &n), Err(BindRefusal::Mismatch));
        let f = claims(json!({"accounts": 1.0}));
        assert_eq!(b.check("/a/1", &none, &f), Err(BindRefusal::Mismatch));
        let null = claims(json!({"accounts": null}));
        assert_eq!(b.check("/a/x", &none, &null), Err(BindRefusal::AbsentClaim));
        let empty = claims(json!({"accounts": ""}));
        assert_eq!(b.check("/a/x", &none, &empty), Err(BindRefusal::Mismatch));
        let nested = compile(json!({"path_segment": 1, "claim": "org.id"})).unwrap();
        assert_eq!(
            nested.check("/o7/x", &none, &claims(json!({"org": {"id": "o7"}}))),
            Ok(())
        );
    }

    #[test]
    fn headers_once_in_one_spelling() {
        let b = compile(json!({"header": "X-Account-Id", "claim": "sub"})).unwrap();
        let alice = claims(json!({"sub": "alice"}));
        let ok = headers(&[("x-account-id", "alice")]);
        assert_eq!(b.check("/", &ok, &alice), Ok(()));
        for (hs, why) in [
            (vec![], BindRefusal::AbsentHeader),
            (vec![("x-account-id", "")], BindRefusal::AbsentHeader),
            (
                vec![("x-account-id", "alice"), ("x-account-id", "alice")],
                BindRefusal::RepeatedHeader,
            ),
            (
                vec![("x-account-id", "alice"), ("x_account_id", "bob")],
                BindRefusal::RepeatedHeader,
            ),
            (
                vec![("x-account-id", "alice, bob")],
                BindRefusal::RepeatedHeader,
            ),
            (vec![("x-account-id", "ALICE")], BindRefusal::Mismatch),
        ] {
            assert_eq!(b.check("/", &headers(&hs), &alice), Err(why), "{hs:?}");
        }
    }

    #[test]
    fn every_binding_of_a_list_must_hold() {
        let b = compile(json!([
            {"path_segment": 2, "claim": "sub"},
            {"header": "x-tenant", "claim": "tenants"}
        ]))
        .unwrap();
        let c = claims(json!({"sub": "alice", "tenants": ["t1"]}));
        assert_eq!(
            b.check("/a/alice", &headers(&[("x-tenant", "t1")]), &c),
            Ok(())
        );
        assert_eq!(
            b.check("/a/alice", &headers(&[("x-tenant", "t2")]), &c),
            Err(BindRefusal::Mismatch)
        );
        assert_eq!(
            b.check("/a/bob", &headers(&[("x-tenant", "t1")]), &c),
            Err(BindRefusal::Mismatch)
        );
    }

    #[test]
    fn bad_bindings_name_the_field() {
        for (bad, field) in [
            (json!("sub"), "[0].bind"),
            (json!([]), "[0].bind"),
            (json!({"claim": "sub"}), "[0].bind"),
            (
                json!({"path_segment": 0, "claim": "sub"}),
                "[0].bind.path_segment",
            ),
            (
                json!({"path_segment": -1, "claim": "sub"}),
                "[0].bind.path_segment",
            ),
            (
                json!({"path_segment": "2", "claim": "sub"}),
                "[0].bind.path_segment",
            ),
            (
                json!({"path_segment": 1.5, "claim": "sub"}),
                "[0].bind.path_segment",
            ),
            (json!({"path_segment": 2}), "[0].bind.claim"),
            (json!({"path_segment": 2, "claim": ""}), "[0].bind.claim"),
            (json!({"path_segment": 2, "claim": 7}), "[0].bind.claim"),
            (
                json!({"header": "two words", "claim": "sub"}),
                "[0].bind.header",
            ),
            (
                json!({"header": "authorization", "claim": "sub"}),
                "[0].bind.header",
            ),
            (
                json!({"header": "customer_auth", "claim": "sub"}),
                "[0].bind.header",
            ),
            (
                json!({"header": "x-a", "path_segment": 1, "claim": "sub"}),
                "[0].bind",
            ),
            (
                json!({"path_segment": 1, "claim": "sub", "claims": "x"}),
                "[0].bind",
            ),
            (
                json!([{"path_segment": 1, "claim": "sub"}, "x"]),
                "[0].bind[1]",
            ),
            (
                json!([{"path_segment": 1, "claim": "sub"}, {"header": "", "claim": "s"}]),
                "[0].bind[1].header",
            ),
        ] {
            let err = compile(bad.clone()).unwrap_err();
            assert!(err.starts_with(&format!("ROUTES{field}:")), "{bad}: {err}");
        }
    }
}

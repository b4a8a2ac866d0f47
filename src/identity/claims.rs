//! A verified identity's claims, whoever vouched for it: a JWT's payload after validation, or an
//! introspection endpoint's answer (RFC 7662). Route policy reads them through this one model.
//!
//! Values are only read here, never trusted before: a `Claims` is built by `jwt::validate` after
//! the signature verified, or by `opaque` from an answer that said `"active": true`.

use std::rc::Rc;

use serde_json::{Map, Value};

/// The claims of one verified identity, shared (a remembered token or session hands out the
/// same map to every request that reuses it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    map: Rc<Map<String, Value>>,
    /// The size of the JSON the claims were read from: what a cache that keeps them counts.
    bytes: usize,
}

impl Claims {
    /// `bytes`: the length of the JSON text `map` was parsed from.
    pub fn new(map: Map<String, Value>, bytes: usize) -> Self {
        Self {
            map: Rc::new(map),
            bytes,
        }
    }

    pub fn map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// The length of the JSON text the claims came from.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The claim at `path`: a member name, or member names joined by `.` into nested objects
    /// (`org.id`). A member whose own name holds a dot is found by that exact name first, so
    /// `{"https://example.com/roles": ...}`-style names stay reachable.
    pub fn get(&self, path: &str) -> Option<&Value> {
        if let Some(v) = self.map.get(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let mut value = self.map.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    }

    /// A claim that is a string, or `None` (absent or of another type).
    pub fn str(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    /// The scopes granted: `scope` (a space-separated string, RFC 8693 §4.2 and RFC 7662 §2.2)
    /// and `scp` (an array of strings, or a space-separated string, as Okta and Azure AD send
    /// it). Members of another type grant nothing.
    pub fn granted_scopes(&self) -> impl Iterator<Item = &str> {
        // `scope` is a string by its RFCs; an array there is not read as one.
        let scope = match self.map.get("scope") {
            Some(Value::String(s)) => words(s),
            _ => Vec::new(),
        };
        let scp = match self.map.get("scp") {
            Some(Value::String(s)) => words(s),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .flat_map(words)
                .collect(),
            _ => Vec::new(),
        };
        scope.into_iter().chain(scp)
    }

    /// True when every one of `required` is granted, compared exactly (`profile` is not
    /// `profile:read`, nor `Profile`).
    pub fn grants_all(&self, required: &[String]) -> bool {
        let granted: Vec<&str> = self.granted_scopes().collect();
        required.iter().all(|r| granted.contains(&r.as_str()))
    }
}

fn words(s: &str) -> Vec<&str> {
    s.split_ascii_whitespace().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        let text = v.to_string();
        match v {
            Value::Object(m) => Claims::new(m, text.len()),
            _ => unreachable!(),
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dotted_paths_reach_into_nested_objects() {
        let c = claims(json!({
            "sub": "u1",
            "org": {"id": "o-7", "tier": {"name": "gold"}},
            "a.b": "dotted name",
            "list": [1, 2]
        }));
        assert_eq!(c.str("sub"), Some("u1"));
        assert_eq!(c.str("org.id"), Some("o-7"));
        assert_eq!(c.str("org.tier.name"), Some("gold"));
        assert_eq!(c.str("a.b"), Some("dotted name"));
        assert_eq!(c.get("org.missing"), None);
        assert_eq!(c.get("sub.x"), None, "a string has no members");
        assert_eq!(c.get("list.0"), None, "arrays are not indexed");
        assert_eq!(c.str("list"), None);
    }

    #[test]
    fn scopes_come_from_scope_and_scp() {
        let c = claims(json!({"scope": "openid profile:read"}));
        assert!(c.grants_all(&strings(&["profile:read", "openid"])));
        assert!(
            !c.grants_all(&strings(&["profile"])),
            "profile is not profile:read"
        );
        assert!(!c.grants_all(&strings(&["Profile:read"])), "exact case");

        let array = claims(json!({"scp": ["accounts.read", "profile"]}));
        assert!(array.grants_all(&strings(&["profile", "accounts.read"])));
        assert!(!array.grants_all(&strings(&["accounts"])));

        let string = claims(json!({"scp": "a b"}));
        assert!(string.grants_all(&strings(&["a", "b"])));

        let both = claims(json!({"scope": "a", "scp": ["b"]}));
        assert!(both.grants_all(&strings(&["a", "b"])));
        assert!(both.grants_all(&[]), "no required scope: nothing to grant");
    }

    #[test]
    fn scopes_of_the_wrong_type_grant_nothing() {
        for v in [
            json!({}),
            json!({"scope": ["a"]}),
            json!({"scope": 1}),
            json!({"scp": {"a": true}}),
            json!({"scp": [1, null]}),
            json!({"scope": ""}),
        ] {
            assert!(!claims(v.clone()).grants_all(&strings(&["a"])), "{v}");
        }
    }
}

//! Reading the JSON settings (`ROUTES`, `JWT_PROVIDERS`): an array of objects, each field read
//! on its own, so that every problem names the entry (`ROUTES[2]`), the field, and what was
//! expected or the closest known field; and the rule of what an error may repeat.
//!
//! What an error may repeat: names, never values. A field name of the document is printed
//! (quoted) when it is a short identifier, as field names are; a value only when it is a near
//! miss of one of the field's own words (`"JWT"` for `auth`, which must be one of `jwt`,
//! `public`, ...): then it is, up to a typo, something the gateway itself defines. Anything
//! else (a URL, an issuer, a claim value, a key) is described, not shown: a setting's value may
//! be a secret pasted into the wrong place. serde's messages are never passed on, since they
//! quote values and point at columns instead of fields.

use serde_json::{Map, Value};

use crate::config::setting::{ConfigError, ConfigErrors};

/// Parses `json` as an array of objects, with no member name repeated in any object (the
/// gateway would read the last, another tool the first). `what`: the entries' name, plural.
pub fn array(
    setting: &'static str,
    json: &str,
    what: &str,
) -> Result<Vec<Map<String, Value>>, ConfigErrors> {
    use crate::identity::jwt::unique_json::{value, ValueError};
    let doc = value(json.as_bytes()).map_err(|e| match e {
        ValueError::Syntax { line, column } => ConfigError::new(
            setting,
            format!("is not valid JSON: a syntax error at line {line}, column {column}"),
        ),
        ValueError::DuplicateMember => ConfigError::new(
            setting,
            "names a member twice in one object: each field may be given once",
        ),
    })?;
    let Value::Array(items) = doc else {
        return Err(ConfigError::new(
            setting,
            format!("must be a JSON array of {what}, not {}", kind(&doc)),
        )
        .into());
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(map) => entries.push(map),
            other => problems.push(ConfigError::at(
                setting,
                format!("[{i}]"),
                format!("must be an object, not {}", kind(&other)),
            )),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems.into())
    }
}

/// One entry of a JSON setting: its fields, read one at a time, each problem naming the
/// entry and the field.
pub struct Entry<'a> {
    setting: &'static str,
    index: usize,
    map: &'a Map<String, Value>,
}

impl<'a> Entry<'a> {
    pub fn new(setting: &'static str, index: usize, map: &'a Map<String, Value>) -> Self {
        Self {
            setting,
            index,
            map,
        }
    }

    /// `[2]`: where the entry is.
    pub fn place(&self) -> String {
        format!("[{}]", self.index)
    }

    /// A problem of the entry as a whole (`ROUTES[2]: ...`).
    pub fn problem(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::at(self.setting, self.place(), problem)
    }

    /// A problem of one field (`ROUTES[2].auth: ...`).
    pub fn field_problem(&self, field: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::at(self.setting, format!("[{}].{field}", self.index), problem)
    }

    /// Each field not in `known`, named with the closest known field.
    pub fn unknown_fields(&self, known: &[&str]) -> Vec<ConfigError> {
        unknown_fields(self.map, known, |p| self.problem(p))
    }

    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field)
    }

    /// A string field; `None` when absent.
    pub fn string(&self, field: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.field_problem(field, format!("must be a string, not {}", kind(other))))
            }
        }
    }

    /// An array of strings; `None` when absent. `what`: what the strings are.
    pub fn strings(&self, field: &str, what: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            )),
            Some(_) => Err(self.field_problem(field, format!("must be an array of {what}"))),
        }
    }

    /// A whole number from 0 to 2^64-1; `None` when absent.
    pub fn whole_number(&self, field: &str) -> Result<Option<u64>, ConfigError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(_) => Err(self.field_problem(field, "must be a whole number")),
        }
    }

    /// An object; `None` when absent.
    pub fn object(&self, field: &str) -> Result<Option<&'a Map<String, Value>>, ConfigError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => {
                Err(self.field_problem(field, format!("must be an object, not {}", kind(other))))
            }
        }
    }

    /// A string that must be one of `allowed` (exactly); `None` when absent. The value is
    /// repeated only when it is a near miss of one of them.
    pub fn one_of(
        &self,
        field: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, ConfigError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(v) => one_of(v, allowed)
                .map(Some)
                .map_err(|p| self.field_problem(field, p)),
        }
    }
}

/// `value` as one of `allowed`, or the problem: `"JWT" is not one of jwt, public, ...` for a
/// near miss, `must be one of jwt, public, ...` otherwise.
pub fn one_of(value: &Value, allowed: &[&'static str]) -> Result<&'static str, String> {
    let list = allowed.join(", ");
    match value {
        Value::String(s) => match allowed.iter().find(|a| *a == s) {
            Some(a) => Ok(a),
            None if crate::config::suggest::is_near_miss(s, allowed.iter().copied()) => {
                Err(format!("\"{s}\" is not one of {list}"))
            }
            None => Err(format!("must be one of {list}")),
        },
        other => Err(format!("must be one of {list}, not {}", kind(other))),
    }
}

/// Each member of `map` not in `known`, as `unknown field "x"; did you mean "y"?`, made into
/// an error by `problem`.
pub fn unknown_fields(
    map: &Map<String, Value>,
    known: &[&str],
    problem: impl Fn(String) -> ConfigError,
) -> Vec<ConfigError> {
    map.keys()
        .filter(|name| !known.contains(&name.as_str()))
        .map(|name| {
            let shown = if is_printable_name(name) {
                format!("unknown field \"{name}\"")
            } else {
                "an unknown field (its name is not shown: it is not a plain identifier)".to_string()
            };
            problem(
                match crate::config::suggest::closest(name, known.iter().copied()) {
                    Some(meant) => format!("{shown}; did you mean \"{meant}\"?"),
                    None => format!("{shown}; the fields are {}", known.join(", ")),
                },
            )
        })
        .collect()
}

/// A field name that may be printed: letters, digits, `_`, `-` and `.`, at most 64 bytes.
fn is_printable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// What kind of JSON value `v` is, for "must be X, not Y".
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn documents_that_are_not_arrays_of_objects() {
        let cases = [
            (
                "[",
                "ROUTES is not valid JSON: a syntax error at line 1, column 1",
            ),
            (
                "{\"prefix\": \"/\"}",
                "ROUTES must be a JSON array of routes, not an object",
            ),
            (
                "\"secret-ish\"",
                "ROUTES must be a JSON array of routes, not a string",
            ),
            ("[{}, 7]", "ROUTES[1]: must be an object, not a number"),
            (
                r#"[{"auth": "jwt", "auth": "public"}]"#,
                "ROUTES names a member twice in one object: each field may be given once",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(
                array("ROUTES", json, "routes").unwrap_err().to_string(),
                want,
                "{json}"
            );
        }
        assert_eq!(
            array("ROUTES", "[{}, {\"a\": 1}]", "routes").unwrap().len(),
            2
        );
    }

    #[test]
    fn unknown_fields_are_named_with_the_closest() {
        let m = map(json!({"prefix": "/", "method": ["GET"], "zzz": 1, "bad name!": 2}));
        let e = Entry::new("ROUTES", 0, &m);
        let found: Vec<String> = e
            .unknown_fields(&["prefix", "methods", "auth"])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "ROUTES[0]: an unknown field (its name is not shown: it is not a plain identifier); the fields are prefix, methods, auth",
                "ROUTES[0]: unknown field \"method\"; did you mean \"methods\"?",
                "ROUTES[0]: unknown field \"zzz\"; the fields are prefix, methods, auth",
            ]
        );
    }

    #[test]
    fn enumerated_values_are_repeated_only_when_near_misses() {
        let modes = ["jwt", "public", "optional", "report", "opaque"];
        let m = map(json!({"a": "JWT", "b": "s3cr3t-Zq9-value", "c": 5, "d": "jwt"}));
        let e = Entry::new("ROUTES", 1, &m);
        assert_eq!(
            e.one_of("a", &modes).unwrap_err().to_string(),
            "ROUTES[1].a: \"JWT\" is not one of jwt, public, optional, report, opaque"
        );
        assert_eq!(
            e.one_of("b", &modes).unwrap_err().to_string(),
            "ROUTES[1].b: must be one of jwt, public, optional, report, opaque"
        );
        assert_eq!(
            e.one_of("c", &modes).unwrap_err().to_string(),
            "ROUTES[1].c: must be one of jwt, public, optional, report, opaque, not a number"
        );
        assert_eq!(e.one_of("d", &modes), Ok(Some("jwt")));
        assert_eq!(e.one_of("none", &modes), Ok(None));
    }
}

//! JSON objects whose member names are unique at every depth, for a token's header and claims.
//!
//! RFC 7515 §4 and RFC 7519 §4 let a parser either reject duplicate names or keep the last
//! one. `serde_json` keeps the last one, and the origin's parser may keep the first: a token
//! such as `{"sub":"alice","sub":"admin"}` would then mean one thing to the gateway and another
//! to the origin. Rejecting duplicates removes that difference.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a segment is not a usable JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectError {
    /// Not JSON, not UTF-8, trailing data after the value, or a JSON value that is not an
    /// object.
    NotAnObject,
    /// An object (at any depth) names the same member twice.
    DuplicateMember,
}

/// Parses `bytes` as one JSON object with no repeated member name at any depth. Whitespace
/// around the object is allowed (RFC 8259 §2); anything else after it is not.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, ObjectError> {
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // serde_json's recursion limit (128) still applies: deep nesting is an error, not a
    // stack overflow.
    let parsed = Strict {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ObjectError::NotAnObject),
        Err(_) if duplicate.get() => Err(ObjectError::DuplicateMember),
        Err(_) => Err(ObjectError::NotAnObject),
    }
}

/// Why a document is not usable JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueError {
    /// Not JSON (or trailing data after the value): where the parser stopped.
    Syntax { line: usize, column: usize },
    /// An object (at any depth) names the same member twice.
    DuplicateMember,
}

/// Parses `bytes` as one JSON value with no repeated member name in any object at any depth
/// (configuration documents, which are read once; a syntax error says where, never what).
pub(crate) fn value(bytes: &[u8]) -> Result<Value, ValueError> {
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if duplicate.get() => Err(ValueError::DuplicateMember),
        Err(e) => Err(ValueError::Syntax {
            line: e.line(),
            column: e.column(),
        }),
    }
}

/// Builds a `serde_json::Value` like its own `Deserialize` does, but fails on a repeated
/// member name and records why in `duplicate` (serde errors carry only text).
#[derive(Clone, Copy)]
struct Strict<'a> {
    duplicate: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity, so this is always `Some`; `Null` keeps it total.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                self.duplicate.set(true);
                return Err(de::Error::custom("duplicate member name"));
            }
            let value = map.next_value_seed(self)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_like_serde_json() {
        let text = br#" {"a": 1, "b": [true, null, -2, 0.5, "x"], "c": {"d": {}}} "#;
        let ours = object(text).unwrap();
        let theirs: Map<String, Value> = serde_json::from_slice(text).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_repeated_name_at_any_depth_is_refused() {
        for text in [
            r#"{"a":1,"a":1}"#,
            r#"{"sub":"alice","sub":"admin"}"#,
            r#"{"x":{"k":1,"k":2}}"#,
            r#"{"x":[{"k":1,"k":2}]}"#,
            // The same name once escaped: still the same name.
            r#"{"alg":"none","\u0061lg":"HS256"}"#,
        ] {
            assert_eq!(
                object(text.as_bytes()),
                Err(ObjectError::DuplicateMember),
                "{text}"
            );
        }
        // Equal names in different objects are fine.
        assert!(object(br#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        for text in [
            &b""[..],
            b"null",
            b"[]",
            b"\"{}\"",
            b"7",
            b"{} {}",
            b"{}x",
            b"{\"a\":1",
            b"{\"a\":\"\xff\"}",
            b"\xef\xbb\xbf{}",
        ] {
            assert_eq!(
                object(text),
                Err(ObjectError::NotAnObject),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let deep = format!(
            "{}{}",
            "{\"a\":".repeat(200),
            "1".to_string() + &"}".repeat(200)
        );
        assert_eq!(object(deep.as_bytes()), Err(ObjectError::NotAnObject));
    }
}

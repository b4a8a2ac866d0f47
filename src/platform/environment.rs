//! The Worker's `env` as the core's `registry::Environment`: every name bound (vars, secrets
//! and bindings are all properties of `env`) and what kind of thing each is, told by its
//! shape; and a setting's text.

use js_sys::{Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use crate::config::registry::{Binding, Bound, Environment};

/// Every name of `env` with its kind. Read once per isolate, with the configuration.
pub fn environment(env: &worker::Env) -> Environment {
    let mut listed = Environment::default();
    let env: &JsValue = env.as_ref();
    for name in Object::keys(env.unchecked_ref::<Object>()).iter() {
        let Some(name) = name.as_string() else {
            continue;
        };
        let value = Reflect::get(env, &JsValue::from_str(&name)).unwrap_or(JsValue::UNDEFINED);
        listed.add(name, kind(&value));
    }
    listed
}

/// A var or secret: `None` when unset or not a string (a JSON var, a binding), which the
/// registry's check reports by kind.
pub fn text(env: &worker::Env, name: &str) -> Option<String> {
    Reflect::get(env.as_ref(), &JsValue::from_str(name))
        .ok()?
        .as_string()
}

/// What a binding is, by the methods it has: a Durable Object namespace has `idFromName`, a
/// KV namespace `getWithMetadata` (an R2 bucket has `get` and `put` too, but not that), a
/// rate limiter `limit`, an Analytics Engine dataset `writeDataPoint`.
fn kind(value: &JsValue) -> Bound {
    if value.is_string() {
        return Bound::Text;
    }
    let has = |method: &str| {
        Reflect::get(value, &JsValue::from_str(method)).is_ok_and(|f| f.is_function())
    };
    if !value.is_object() {
        // A number or boolean given in [vars].
        return Bound::Json;
    }
    if has("idFromName") {
        Bound::Binding(Binding::DurableObjectNamespace)
    } else if has("getWithMetadata") {
        Bound::Binding(Binding::KvNamespace)
    } else if has("limit") {
        Bound::Binding(Binding::RateLimiter)
    } else if has("writeDataPoint") {
        Bound::Binding(Binding::AnalyticsEngine)
    } else if js_sys::Array::is_array(value) || is_plain_object(value) {
        // A TOML table or array given in [vars].
        Bound::Json
    } else {
        Bound::Other
    }
}

/// An object whose prototype is `Object.prototype` (or none): what JSON parses to.
fn is_plain_object(value: &JsValue) -> bool {
    let proto = Object::get_prototype_of(value);
    proto.is_null() || Object::get_prototype_of(&proto).is_null()
}

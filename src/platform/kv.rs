//! Workers KV behind the core's `KeyValue`: the `TOKEN_CACHE` namespace, looked up on first use.

use std::cell::OnceCell;
use std::rc::Rc;

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::io::{KeyPage, KeyValue, StoreError};

use super::js_message;

/// The `TOKEN_CACHE` namespace, looked up in `env` on first use, so that a request served from
/// memory never pays for it. Its `get`, `put` and `delete` are called directly rather than
/// through `worker::KvStore`, which reads six properties of the binding and sends `put`'s
/// options through serde-wasm-bindgen (with a float formatter, 14 KB of wasm, for one TTL).
/// Missing binding: the gateway then answers every request with a configuration error naming
/// `TOKEN_CACHE`, so these errors are not seen.
#[derive(Clone)]
pub struct Kv {
    env: worker::Env,
    binding: &'static str,
    store: Rc<OnceCell<Option<JsValue>>>,
}

impl Kv {
    pub fn new(env: worker::Env, binding: &'static str) -> Self {
        Self {
            env,
            binding,
            store: Rc::default(),
        }
    }

    /// The KV namespace bound as `binding`, if there is one (an object with a `get` method).
    pub fn namespace(env: &worker::Env, binding: &str) -> Option<JsValue> {
        let ns = js_sys::Reflect::get(env, &JsValue::from_str(binding)).ok()?;
        let get = js_sys::Reflect::get(&ns, &JsValue::from_str("get")).ok()?;
        get.is_function().then_some(ns)
    }

    fn store(&self) -> Result<&JsValue, StoreError> {
        self.store
            .get_or_init(|| Self::namespace(&self.env, self.binding))
            .as_ref()
            .ok_or_else(|| StoreError("no KV binding".into()))
    }

    /// `namespace[method](...args)`, awaited.
    async fn call(&self, method: &str, args: &js_sys::Array) -> Result<JsValue, StoreError> {
        let ns = self.store()?;
        let kv_error = |e: JsValue| StoreError(js_message(&e));
        let f: js_sys::Function = js_sys::Reflect::get(ns, &JsValue::from_str(method))
            .and_then(|f| f.dyn_into())
            .map_err(kv_error)?;
        let promise: js_sys::Promise = f
            .apply(ns, args)
            .and_then(|p| p.dyn_into())
            .map_err(kv_error)?;
        JsFuture::from(promise).await.map_err(kv_error)
    }
}

impl KeyValue for Kv {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let args = js_sys::Array::of2(&JsValue::from_str(key), &JsValue::from_str("text"));
        Ok(self.call("get", &args).await?.as_string())
    }

    async fn put(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), StoreError> {
        let options = js_sys::Object::new();
        // A TTL is seconds, far below 2^53: exact as a JS number.
        js_sys::Reflect::set(
            &options,
            &JsValue::from_str("expirationTtl"),
            &JsValue::from_f64(ttl_secs as f64),
        )
        .map_err(|e| StoreError(js_message(&e)))?;
        let args = js_sys::Array::of3(&JsValue::from_str(key), &JsValue::from_str(value), &options);
        self.call("put", &args).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let args = js_sys::Array::of1(&JsValue::from_str(key));
        self.call("delete", &args).await.map(|_| ())
    }

    /// `namespace.list({prefix, cursor, limit})`: `{keys: [{name}], list_complete, cursor}`.
    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let js_err = |e: JsValue| StoreError(js_message(&e));
        let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &JsValue::from_str(k));
        let set = |o: &JsValue, k: &str, v: &JsValue| {
            js_sys::Reflect::set(o, &JsValue::from_str(k), v).map(|_| ())
        };
        let options = js_sys::Object::new();
        set(&options, "prefix", &JsValue::from_str(prefix)).map_err(js_err)?;
        set(&options, "limit", &JsValue::from_f64(limit as f64)).map_err(js_err)?;
        if let Some(cursor) = cursor {
            set(&options, "cursor", &JsValue::from_str(cursor)).map_err(js_err)?;
        }
        let page = self.call("list", &js_sys::Array::of1(&options)).await?;
        let keys: js_sys::Array = get(&page, "keys")
            .and_then(|k| k.dyn_into())
            .map_err(|_| StoreError("KV list without keys".into()))?;
        let keys = keys
            .iter()
            .filter_map(|k| get(&k, "name").ok()?.as_string())
            .collect();
        let complete = get(&page, "list_complete").map_err(js_err)?.is_truthy();
        let next = get(&page, "cursor").ok().and_then(|c| c.as_string());
        // A page that says it is not the last must say where the next starts.
        let next = match (complete, next) {
            (true, _) => None,
            (false, Some(c)) if !c.is_empty() => Some(c),
            (false, _) => return Err(StoreError("KV list incomplete without a cursor".into())),
        };
        Ok(KeyPage { keys, next })
    }
}

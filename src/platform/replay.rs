//! The DPoP replay guard on Workers: the isolate's handle on it through the `DPOP_REPLAY`
//! binding (one object per shard, `identity::dpop::guard::shard_name`), and the Durable Object
//! storage its class (`ReplayGuard`, in the glue of `lib.rs`) runs the core's guard with.

use std::cell::OnceCell;
use std::rc::Rc;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use super::coordinator::{call, within};
use super::js_message;
use crate::identity::dpop::guard::{shard_name, Answer, Ask, GuardStorage};
use crate::io::{ReplayGuard, ReplayGuardError, StoreError};

/// The Durable Object binding.
pub const BINDING: &str = "DPOP_REPLAY";
/// Time allowed for the guard's answer: a proof that cannot be told fresh is refused (503).
const TIMEOUT_MS: u64 = 3_000;

/// The isolate's handle: the namespace looked up on first use.
#[derive(Clone)]
pub struct DoReplayGuard {
    env: Env,
    namespace: Rc<OnceCell<Option<JsValue>>>,
}

impl DoReplayGuard {
    pub fn new(env: Env) -> Self {
        Self {
            env,
            namespace: Rc::default(),
        }
    }

    fn namespace(&self) -> Option<&JsValue> {
        self.namespace
            .get_or_init(|| {
                let ns = Reflect::get(&self.env, &JsValue::from_str(BINDING)).ok()?;
                let has = |name: &str| {
                    Reflect::get(&ns, &JsValue::from_str(name)).is_ok_and(|f| f.is_function())
                };
                (has("idFromName") && has("get")).then_some(ns)
            })
            .as_ref()
    }

    /// `ns.get(ns.idFromName(name))`.
    fn stub(&self, name: &str) -> Result<JsValue, JsValue> {
        let ns = self
            .namespace()
            .ok_or_else(|| JsValue::from_str("not bound"))?;
        let method = |m: &str| -> Result<Function, JsValue> {
            Reflect::get(ns, &JsValue::from_str(m))?.dyn_into()
        };
        let id = method("idFromName")?.call1(ns, &JsValue::from_str(name))?;
        method("get")?.call1(ns, &id)
    }
}

impl ReplayGuard for DoReplayGuard {
    fn is_bound(&self) -> bool {
        self.namespace().is_some()
    }

    async fn first_use(&self, key: &str, until_ms: u64) -> Result<bool, ReplayGuardError> {
        let unreachable = |e: JsValue| ReplayGuardError::Unreachable(js_message(&e));
        let stub = self.stub(&shard_name(key)).map_err(unreachable)?;
        let ask = serde_json::to_string(&Ask {
            key: key.to_string(),
            until_ms,
        })
        .map_err(|e| ReplayGuardError::Unreachable(e.to_string()))?;
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_body(&JsValue::from_str(&ask));
        // A placeholder URL: an object is addressed by its stub.
        let args = js_sys::Array::of2(&JsValue::from_str("https://dpop-replay/"), &init);
        let text = within(TIMEOUT_MS, async {
            let resp: web_sys::Response = call(&stub, "fetch", &args).await?.dyn_into()?;
            if resp.status() != 200 {
                return Err(JsValue::from_str(&format!(
                    "guard answered {}",
                    resp.status()
                )));
            }
            JsFuture::from(resp.text()?)
                .await?
                .as_string()
                .ok_or_else(|| JsValue::from_str("an answer that is not text"))
        })
        .await
        .ok_or(ReplayGuardError::Timeout)?
        .map_err(unreachable)?;
        let answer: Answer = serde_json::from_str(&text)
            .map_err(|_| ReplayGuardError::Unreachable("not the protocol's answer".into()))?;
        Ok(answer.first)
    }
}

/// `state.storage` as the guard's storage.
pub struct GuardDoStorage(pub JsValue);

impl GuardDoStorage {
    async fn call(&self, method: &str, args: &js_sys::Array) -> Result<JsValue, StoreError> {
        call(&self.0, method, args)
            .await
            .map_err(|e| StoreError(js_message(&e)))
    }
}

impl GuardStorage for GuardDoStorage {
    async fn get(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let args = js_sys::Array::of1(&JsValue::from_str(key));
        Ok(self.call("get", &args).await?.as_f64().map(|v| v as u64))
    }

    async fn put_all(&self, entries: &[(String, u64)]) -> Result<(), StoreError> {
        let object = Object::new();
        for (key, value) in entries {
            Reflect::set(
                &object,
                &JsValue::from_str(key),
                &JsValue::from_f64(*value as f64),
            )
            .map_err(|e| StoreError(js_message(&e)))?;
        }
        self.call("put", &js_sys::Array::of1(&object))
            .await
            .map(|_| ())
    }

    async fn delete_all(&self, keys: &[String]) -> Result<(), StoreError> {
        // `delete` takes at most 128 keys at a time.
        for chunk in keys.chunks(128) {
            let list: js_sys::Array = chunk.iter().map(|k| JsValue::from_str(k)).collect();
            self.call("delete", &js_sys::Array::of1(&list)).await?;
        }
        Ok(())
    }

    async fn list(&self, start: &str, end: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let options = Object::new();
        let set = |k: &str, v: JsValue| {
            Reflect::set(&options, &JsValue::from_str(k), &v)
                .map_err(|e| StoreError(js_message(&e)))
        };
        set("start", JsValue::from_str(start))?;
        set("end", JsValue::from_str(end))?;
        set("limit", JsValue::from_f64(limit as f64))?;
        let map: js_sys::Map = self
            .call("list", &js_sys::Array::of1(&options))
            .await?
            .dyn_into()
            .map_err(|e| StoreError(js_message(&e)))?;
        let mut keys = Vec::with_capacity(map.size() as usize);
        map.for_each(&mut |_, key| {
            if let Some(k) = key.as_string() {
                keys.push(k);
            }
        });
        Ok(keys)
    }

    async fn alarm(&self) -> Result<Option<u64>, StoreError> {
        let at = self.call("getAlarm", &js_sys::Array::new()).await?;
        Ok(at.as_f64().map(|v| v as u64))
    }

    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError> {
        let args = js_sys::Array::of1(&JsValue::from_f64(at_ms as f64));
        self.call("setAlarm", &args).await.map(|_| ())
    }
}

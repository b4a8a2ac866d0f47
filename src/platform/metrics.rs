//! The `METRICS` Workers Analytics Engine dataset behind the core's `Metrics`: each point is
//! one `writeDataPoint` call, and nothing the dataset does reaches the request.

use js_sys::{Function, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};
use worker::Env;

use crate::io::{DataPoint, Metrics};

/// The binding name (`[[analytics_engine_datasets]] binding = "METRICS"`).
pub const BINDING: &str = "METRICS";

/// The dataset, when one is bound: looked up once per request (one property read when it is
/// not), so that no point is written to a binding of the wrong kind.
pub struct WorkerMetrics {
    dataset: Option<(JsValue, Function)>,
}

impl WorkerMetrics {
    pub fn new(env: &Env) -> Self {
        let dataset = Reflect::get(env, &JsValue::from_str(BINDING))
            .ok()
            .filter(JsValue::is_object)
            .and_then(|dataset| {
                let write = Reflect::get(&dataset, &JsValue::from_str("writeDataPoint")).ok()?;
                Some((dataset, write.dyn_into::<Function>().ok()?))
            });
        Self { dataset }
    }
}

impl Metrics for WorkerMetrics {
    fn write(&self, point: &DataPoint<'_>) {
        let Some((dataset, write)) = &self.dataset else {
            return;
        };
        // The point crosses into JavaScript as one JSON text (one crossing, one parse) rather
        // than an object built a field at a time (some twenty crossings).
        let Ok(json) = serde_json::to_string(point) else {
            return;
        };
        let Ok(point) = JSON::parse(&json) else {
            return;
        };
        // `call1` catches a throw: a full or failing dataset drops this point, nothing more.
        let _ = write.call1(dataset, &point);
    }
}

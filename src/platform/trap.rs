//! Which call a wasm trap belongs to: the promises of the exported calls (`fetch`, `scheduled`,
//! the coordinator's `fetch`), and `failTrapped`, which fails the one whose poll trapped.
//!
//! A trap (a panic ends in `unreachable`, `panic = "abort"`) unwinds out of the poll of one
//! Rust task, and out of the executor's microtask that was polling it, without settling that
//! task's promise: its caller would wait forever. JavaScript cannot tell whose poll it was (one
//! microtask polls every task that is due), so each call's future marks itself while it is
//! polled, and the entry module (src/platform/entry.js), catching the trap from that microtask, calls
//! `failTrapped` to reject the marked call's promise with it: that caller alone is answered, at
//! once. The marker is left set only by a poll that never returned.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

thread_local! {
    /// The `reject` of the call whose future is being polled; `None` between polls.
    static POLLED: Cell<Option<Rc<Function>>> = const { Cell::new(None) };
}

/// The promise of an exported call: what `future_to_promise` does, with the call marked while
/// its future is polled. Per poll, one reference count up and down: no allocation.
pub fn call_promise<F>(call: F) -> Promise
where
    F: Future<Output = Result<JsValue, JsValue>> + 'static,
{
    let mut settle = None;
    let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    // The executor runs inside `new Promise`, before it returns.
    let Some((resolve, reject)) = settle else {
        return promise;
    };
    let reject = Rc::new(reject);
    wasm_bindgen_futures::spawn_local(async move {
        let mut call = pin!(call);
        let outcome = poll_fn(|cx| {
            let outer = POLLED.replace(Some(Rc::clone(&reject)));
            let polled = call.as_mut().poll(cx);
            POLLED.set(outer);
            polled
        })
        .await;
        let _ = match outcome {
            Ok(value) => resolve.call1(&JsValue::UNDEFINED, &value),
            Err(error) => reject.call1(&JsValue::UNDEFINED, &error),
        };
    });
    promise
}

/// Called by the entry module with a trap it caught from the executor: rejects, with that
/// error, the promise of the call whose poll trapped. `false` when the trap was in no call's
/// poll (a background task, a callback): then no caller is waiting on it.
#[wasm_bindgen(js_name = failTrapped)]
pub fn fail_trapped(error: JsValue) -> bool {
    match POLLED.take() {
        Some(reject) => reject.call1(&JsValue::UNDEFINED, &error).is_ok(),
        None => false,
    }
}

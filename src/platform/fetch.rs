//! The global `fetch` behind the core's `HttpClient`: a deadline on the response head,
//! redirects passed back, bodies streamed or read up to a bound.

use http::Method;
use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::ReadableStream;

use crate::io::{Body, Bounded, HttpClient, HttpError, InboundResponse, OutboundRequest};

use super::fields::{from_js_headers, to_js_headers, JsFields};
use super::js_message;

/// The global `fetch`, with a deadline on the response head and redirects passed back rather
/// than followed (a redirect must not carry our credentials to another host).
#[derive(Clone, Copy)]
pub struct FetchClient;

impl HttpClient for FetchClient {
    type Stream = ReadableStream;
    type Fields = JsFields;

    async fn send(
        &self,
        request: OutboundRequest<ReadableStream>,
    ) -> Result<InboundResponse<ReadableStream>, HttpError> {
        let headers = to_js_headers(&request.headers).map_err(unreachable)?;
        let (status, headers, body) = fetch(
            &request.method,
            &request.url,
            &headers,
            request.body,
            request.timeout_ms,
        )
        .await?;
        Ok(InboundResponse {
            status,
            headers: from_js_headers(&headers),
            body,
        })
    }

    async fn forward(
        &self,
        request: OutboundRequest<ReadableStream, JsFields>,
    ) -> Result<InboundResponse<ReadableStream, JsFields>, HttpError> {
        let (status, headers, body) = fetch(
            &request.method,
            &request.url,
            &request.headers.headers,
            request.body,
            request.timeout_ms,
        )
        .await?;
        Ok(InboundResponse {
            status,
            headers: JsFields::new(headers),
            body,
        })
    }

    async fn read_body(
        &self,
        body: Body<ReadableStream>,
        limit: usize,
    ) -> Result<Vec<u8>, HttpError> {
        let too_long = || HttpError::TooLarge;
        let stream = match body {
            Body::Empty => return Ok(Vec::new()),
            Body::Bytes(bytes) if bytes.len() <= limit => return Ok(bytes),
            Body::Bytes(_) => return Err(too_long()),
            Body::Stream(stream) => stream,
        };
        // Chunk by chunk, so a hostile endpoint's endless body costs at most `limit` plus one
        // chunk of memory before it is cancelled.
        let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let mut bytes = Vec::new();
        while let Some(chunk) = next_chunk(&reader).await? {
            if bytes.len() + chunk.length() as usize > limit {
                let _ = reader.cancel();
                return Err(too_long());
            }
            bytes.extend_from_slice(&chunk.to_vec());
        }
        Ok(bytes)
    }

    async fn read_up_to(
        &self,
        body: Body<ReadableStream>,
        limit: usize,
    ) -> Result<Bounded<ReadableStream>, HttpError> {
        let stream = match body {
            Body::Empty => return Ok(Bounded::Fits(Vec::new())),
            Body::Bytes(bytes) if bytes.len() <= limit => return Ok(Bounded::Fits(bytes)),
            Body::Bytes(bytes) => return Ok(Bounded::Longer(Body::Bytes(bytes))),
            Body::Stream(stream) => stream,
        };
        let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let mut chunks: Vec<Uint8Array> = Vec::new();
        let mut read = 0usize;
        while read <= limit {
            match next_chunk(&reader).await? {
                Some(chunk) => {
                    read += chunk.length() as usize;
                    chunks.push(chunk);
                }
                None => {
                    let mut bytes = Vec::with_capacity(read);
                    for chunk in &chunks {
                        bytes.extend_from_slice(&chunk.to_vec());
                    }
                    return Ok(Bounded::Fits(bytes));
                }
            }
        }
        // Longer than the limit: a new stream with what was read in front, then the rest,
        // pumped by this request as the fetch consumes it (so never more than a chunk ahead).
        let pipe = web_sys::TransformStream::new().map_err(body_error)?;
        let writer = pipe.writable().get_writer().map_err(body_error)?;
        wasm_bindgen_futures::spawn_local(async move {
            let pumped: Result<(), JsValue> = async {
                for chunk in chunks {
                    JsFuture::from(writer.write_with_chunk(&chunk)).await?;
                }
                while let Some(chunk) = next_chunk(&reader)
                    .await
                    .map_err(|e| JsValue::from_str(&format!("{e:?}")))?
                {
                    JsFuture::from(writer.write_with_chunk(&chunk)).await?;
                }
                JsFuture::from(writer.close()).await?;
                Ok(())
            }
            .await;
            if let Err(e) = pumped {
                // The caller's body broke off: the origin sees its request body fail too.
                let _ = JsFuture::from(writer.abort_with_reason(&e)).await;
            }
        });
        Ok(Bounded::Longer(Body::Stream(pipe.readable())))
    }
}

/// One `fetch`, with a deadline on the response head and redirects passed back rather than
/// followed (a redirect must not carry our credentials to another host). `headers` go as they
/// are: workerd copies the object, bytes and all.
async fn fetch(
    method: &Method,
    url: &str,
    headers: &web_sys::Headers,
    body: Body<ReadableStream>,
    timeout_ms: u64,
) -> Result<(u16, web_sys::Headers, Body<ReadableStream>), HttpError> {
    let init = web_sys::RequestInit::new();
    init.set_method(method.as_str());
    init.set_headers(headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    match body {
        Body::Empty => {}
        Body::Bytes(bytes) => init.set_body(&Uint8Array::from(&bytes[..])),
        Body::Stream(stream) => init.set_body(&stream),
    }
    // The deadline covers the response head only; the body may stream for longer.
    // `AbortSignal.timeout`: one call, and nothing to clear afterwards. An
    // `AbortController` with our own `setTimeout`, its bound `abort` and a `clearTimeout`
    // cost about 6 µs of CPU per request more (bench/profile.mjs, plain workerd), and workerd
    // drops a request's pending timers with the request.
    let delay = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    let signal = web_sys::AbortSignal::timeout_with_u32(delay);
    init.set_signal(Some(&signal));
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let fetched = JsFuture::from(global.fetch_with_str_and_init(url, &init)).await;
    let response = match fetched {
        Ok(value) => value,
        Err(_) if signal.aborted() => return Err(HttpError::Timeout),
        Err(e) => return Err(unreachable(e)),
    };
    let response: web_sys::Response = response.dyn_into().map_err(unreachable)?;
    Ok((
        response.status(),
        response.headers(),
        response.body().map_or(Body::Empty, Body::Stream),
    ))
}

/// The next chunk of a body being read, `None` at its end.
async fn next_chunk(
    reader: &web_sys::ReadableStreamDefaultReader,
) -> Result<Option<Uint8Array>, HttpError> {
    let result = JsFuture::from(reader.read()).await.map_err(body_error)?;
    let done = js_sys::Reflect::get(&result, &JsValue::from_str("done"))
        .map_err(body_error)?
        .as_bool()
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    let value = js_sys::Reflect::get(&result, &JsValue::from_str("value")).map_err(body_error)?;
    value
        .dyn_into::<Uint8Array>()
        .map(Some)
        .map_err(|_| HttpError::Body("a body chunk that is not bytes".into()))
}

fn unreachable(e: JsValue) -> HttpError {
    HttpError::Unreachable(js_message(&e))
}

fn body_error(e: JsValue) -> HttpError {
    HttpError::Body(js_message(&e))
}

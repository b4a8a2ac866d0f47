//! Which request bodies are kept so that a request can be replayed once after the origin
//! refuses its access token (401): no body, or a `content-length` of at most
//! `REPLAY_BODY_LIMIT`. Any other body streams through untouched and is not replayable.

use http::HeaderMap;

use crate::io::{Body, HttpClient, HttpError};

/// Largest request body kept in memory for a replay: 64 KiB. Profile and account calls are far
/// smaller; bigger bodies (uploads) keep streaming, at the price of no replay after a 401.
pub const REPLAY_BODY_LIMIT: usize = 64 * 1024;

/// The body of the request on its way to the origin.
pub enum Outgoing<S> {
    /// No body, or one kept in memory: it can be sent again.
    Kept(Body<S>),
    /// Too big, or of unknown length: sent once as it came; `None` once it has been sent.
    Once(Option<Body<S>>),
}

impl<S> Outgoing<S> {
    /// Keeps `body` when it is known to fit in `REPLAY_BODY_LIMIT`. Reading it fails only when
    /// the caller's body breaks off or is longer than its `content-length` said.
    pub async fn prepare<H>(http: &H, headers: &HeaderMap, body: Body<S>) -> Result<Self, HttpError>
    where
        H: HttpClient<Stream = S>,
    {
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        Ok(match body {
            Body::Empty => Self::Kept(Body::Empty),
            Body::Bytes(bytes) if bytes.len() <= REPLAY_BODY_LIMIT => {
                Self::Kept(Body::Bytes(bytes))
            }
            Body::Stream(stream) if declared.is_some_and(|n| n <= REPLAY_BODY_LIMIT) => {
                let bytes = http
                    .read_body(Body::Stream(stream), REPLAY_BODY_LIMIT)
                    .await?;
                Self::Kept(Body::Bytes(bytes))
            }
            other => Self::Once(Some(other)),
        })
    }

    /// The body for the next send; `None` when it was sent once and is gone.
    pub fn next_send(&mut self) -> Option<Body<S>> {
        match self {
            Self::Kept(Body::Bytes(bytes)) => Some(Body::Bytes(bytes.clone())),
            // `prepare` keeps only bytes or no body, never a stream.
            Self::Kept(_) => Some(Body::Empty),
            Self::Once(body) => body.take(),
        }
    }
}

//! Which request bodies are kept so that a request can be replayed once after the origin
//! refuses its access token (401): no body, or one of at most `REPLAY_BODY_LIMIT` bytes. A body
//! whose `content-length` says it is longer streams through untouched; one of unknown length
//! is read up to the limit and, if it goes on, streams on with that part in front. Only kept
//! bodies are replayable.

use http::HeaderMap;

use crate::io::{Body, Bounded, HttpClient, HttpError, Platform};

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
    /// Keeps `body` when it fits in `REPLAY_BODY_LIMIT`. Reading it fails only when the
    /// caller's body breaks off.
    pub async fn prepare<P>(p: &P, headers: &HeaderMap, body: Body<S>) -> Result<Self, HttpError>
    where
        P: Platform,
        P::Http: HttpClient<Stream = S>,
    {
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        if let Body::Empty = body {
            return Ok(Self::Kept(Body::Empty));
        }
        if declared.is_some_and(|n| n > REPLAY_BODY_LIMIT) {
            return Ok(Self::Once(Some(body)));
        }
        Ok(match p.http().read_up_to(body, REPLAY_BODY_LIMIT).await? {
            Bounded::Fits(bytes) => Self::Kept(Body::Bytes(bytes)),
            Bounded::Longer(body) => Self::Once(Some(body)),
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

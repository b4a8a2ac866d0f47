//! What the gateway reads from and writes to HTTP at its two edges, without I/O: the request
//! path's canonical form, the caller's cookies, the header rules both ways, the origin's
//! `WWW-Authenticate` challenges and which of its 401s refuse the gateway's token.

pub mod challenge;
pub mod cookies;
pub mod headers;
pub mod path;
pub mod refusal;

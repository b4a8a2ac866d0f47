//! The mechanisms that produce an identity from what a request presents: a customer JWT
//! (`jwt`), or an opaque identifier vouched for by introspection (`opaque`).

pub mod jwt;
pub mod opaque;

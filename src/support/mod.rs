//! Small building blocks the wings share, each knowing nothing of the gateway: a bounded map,
//! one fill at a time, a dependency's back-off, and the URLs settings hold.

pub mod bounded;
pub mod breaker;
pub mod flight;
pub mod http_url;

//! Workers rate-limiting bindings (`[[ratelimits]]`) behind the core's `RateLimiters`.

use worker::Env;

use crate::io::{RateLimitError, RateLimiters};

/// Looks the route's binding up in `env` at each check: only requests on a route with a
/// `rate_limit` pay for it.
#[derive(Clone)]
pub struct WorkerRateLimiters {
    env: Env,
}

impl WorkerRateLimiters {
    pub fn new(env: Env) -> Self {
        Self { env }
    }
}

impl RateLimiters for WorkerRateLimiters {
    async fn allow(&self, binding: &str, key: &str) -> Result<bool, RateLimitError> {
        let limiter = self
            .env
            .rate_limiter(binding)
            .map_err(|_| RateLimitError::NotBound)?;
        limiter
            .limit(key.to_string())
            .await
            .map(|outcome| outcome.success)
            .map_err(|e| RateLimitError::Failed(e.to_string()))
    }
}

//! The isolate's work outside requests: the token refresh ahead of expiry that a request
//! claims (run after its answer), and the scheduled (cron) run that pre-warms the token and
//! the key sets.

use crate::identity::jwt::JwtSettings;
use crate::io::{Clock, Platform};
use crate::proxy::log::TaskLog;
use crate::proxy::Gateway;
use crate::token::{RefreshAhead, RefreshOutcome};

/// The scheduled run refreshes `JWKS_URL`'s set when it would go stale within this: two runs
/// of the 5-minute cron in wrangler.toml, so one missed run does not leave requests to fetch.
pub const SCHEDULED_KEYS_AHEAD_MS: u64 = 10 * 60 * 1000;

impl Gateway {
    /// Runs the refresh ahead that a request claimed; requests meanwhile keep using the current
    /// token. Returns the task's log line.
    pub async fn refresh_ahead<P: Platform>(&self, job: RefreshAhead, svc: &P) -> TaskLog {
        let started = svc.clock().now_ms();
        let outcome = match &self.config {
            Ok(config) => self.tokens.refresh(job, &config.token, svc).await,
            // Unreachable in practice: a refresh is only claimed under a valid configuration.
            Err(_) => RefreshOutcome::Fresh,
        };
        TaskLog::refreshed("token_refresh", &outcome, svc.clock().now_ms() - started)
    }

    /// The scheduled (cron) run: pre-warms the access token, so that the first request after a
    /// quiet spell finds one in KV instead of waiting for the endpoint. One log line.
    pub async fn on_schedule<P: Platform>(&self, svc: &P) -> TaskLog {
        let started = svc.clock().now_ms();
        let config = match &self.config {
            Ok(config) => config,
            Err(_) => {
                return TaskLog {
                    event: "scheduled",
                    token: "not_configured",
                    ..TaskLog::default()
                }
            }
        };
        let outcome = self.tokens.prewarm(&config.token, svc).await;
        // Each key source in turn (one per provider); the line names the last that did work.
        let sources: Vec<&JwtSettings> = match &config.providers {
            None => vec![&config.jwt],
            Some(providers) => providers.list().iter().map(|p| &p.settings).collect(),
        };
        let mut jwks = None;
        for (id, settings) in sources.into_iter().enumerate() {
            let event = self
                .identities
                .jwt()
                .refresh_provider_keys(id, settings, SCHEDULED_KEYS_AHEAD_MS, svc)
                .await;
            jwks = event.or(jwks);
        }
        TaskLog {
            jwks: jwks.map(|e| e.as_str()),
            ..TaskLog::refreshed("scheduled", &outcome, svc.clock().now_ms() - started)
        }
    }
}

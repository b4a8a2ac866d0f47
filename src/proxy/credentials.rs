//! The token phase: the gateway's access token for the origin, from memory, KV, or one shared
//! call to the token endpoint (`token::TokenCache`); where it came from goes in the log line.

use crate::config::Config;
use crate::error::GatewayError;
use crate::io::{Clock, Platform};
use crate::proxy::log::RequestLog;
use crate::token::{Obtained, TokenCache};

/// The phase, timed (`token_ms`, when a token was had).
pub async fn phase<P: Platform>(
    tokens: &TokenCache,
    config: &Config,
    svc: &P,
    log: &mut RequestLog,
) -> Result<Obtained, GatewayError> {
    let started = svc.clock().now_ms();
    let obtained = token(tokens, config, svc, log).await?;
    log.token_ms = Some(svc.clock().now_ms().saturating_sub(started));
    Ok(obtained)
}

/// A token, and where it came from, in the log line; or 503. Also the replay's new token.
pub async fn token<P: Platform>(
    tokens: &TokenCache,
    config: &Config,
    svc: &P,
    log: &mut RequestLog,
) -> Result<Obtained, GatewayError> {
    match tokens.get(&config.token, svc).await {
        Ok(obtained) => {
            log.token_source = Some(obtained.source.as_str());
            log.coordinator = log.coordinator.or(obtained.coordinator);
            Ok(obtained)
        }
        Err(unavailable) => {
            log.coordinator = log.coordinator.or(unavailable.coordinator);
            if unavailable.called_endpoint {
                log.token_error = Some(unavailable.cause.code());
                log.config_error = unavailable.cause.config_problem();
            }
            Err(GatewayError::TokenUnavailable(unavailable))
        }
    }
}

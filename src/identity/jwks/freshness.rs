//! How long a fetched key set is fresh: the response's own cache lifetime, kept within bounds
//! that protect the identity provider (not too short) and key rotation (not too long).

use http::HeaderMap;

/// Without a usable `Cache-Control`, a set is fresh for this long (what `jose`'s remote key set
/// uses as its default maximum age).
pub const DEFAULT_FRESH_SECS: u64 = 600;
/// Shorter lifetimes (including `no-cache`/`no-store`) are raised to this: every request would
/// otherwise be a fetch, and KV cannot hold anything for less than 60 s anyway.
pub const MIN_FRESH_SECS: u64 = 60;
/// Longer lifetimes are cut to this, so a removed key stops being trusted within a day even if
/// the provider advertised a year.
pub const MAX_FRESH_SECS: u64 = 86_400;

/// The fresh lifetime in seconds that `headers` ask for, within the bounds. `s-maxage` (meant
/// for shared caches such as this one) wins over `max-age`; `Age` is subtracted.
pub fn fresh_secs(headers: &HeaderMap) -> u64 {
    let mut max_age = None;
    let mut s_maxage = None;
    let mut no_cache = false;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            let seconds = arg.and_then(|a| a.parse::<u64>().ok());
            match name.to_ascii_lowercase().as_str() {
                "max-age" => max_age = max_age.or(seconds),
                "s-maxage" => s_maxage = s_maxage.or(seconds),
                "no-cache" | "no-store" => no_cache = true,
                _ => {}
            }
        }
    }
    let age = headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let asked = if no_cache {
        0
    } else {
        match s_maxage.or(max_age) {
            Some(secs) => secs.saturating_sub(age),
            None => DEFAULT_FRESH_SECS,
        }
    };
    asked.clamp(MIN_FRESH_SECS, MAX_FRESH_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_response_lifetime_is_honoured_within_bounds() {
        assert_eq!(fresh_secs(&headers(&[])), DEFAULT_FRESH_SECS);
        assert_eq!(
            fresh_secs(&headers(&[("cache-control", "public, max-age=3600")])),
            3600
        );
        assert_eq!(fresh_secs(&headers(&[("cache-control", "max-age=5")])), 60);
        assert_eq!(
            fresh_secs(&headers(&[("cache-control", "max-age=99999999")])),
            86_400
        );
        assert_eq!(fresh_secs(&headers(&[("cache-control", "no-store")])), 60);
        assert_eq!(
            fresh_secs(&headers(&[("cache-control", "max-age=600, no-cache")])),
            60
        );
        assert_eq!(
            fresh_secs(&headers(&[("cache-control", "max-age=600, s-maxage=1200")])),
            1200
        );
        assert_eq!(
            fresh_secs(&headers(&[
                ("cache-control", "max-age=600"),
                ("age", "500")
            ])),
            100
        );
        assert_eq!(
            fresh_secs(&headers(&[("cache-control", "max-age=nope")])),
            DEFAULT_FRESH_SECS
        );
        assert_eq!(
            fresh_secs(&headers(&[("cache-control", "Max-Age=\"120\"")])),
            120
        );
    }
}

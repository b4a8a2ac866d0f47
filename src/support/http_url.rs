//! Absolute http(s) URLs from settings (ORIGIN_URL, TOKEN_URL, JWKS_URL, route origins), checked
//! with `http::Uri`, already a dependency, instead of the `url` crate: its IDNA and Unicode
//! normalisation tables were about a fifth of the Worker's bundle, for URLs read once per isolate.
//!
//! What `url` did that this does too: scheme and host lowercased, the scheme's default port
//! dropped, an empty path read as `/`. What it does not: non-ASCII anywhere (a host must be
//! given in its punycode `xn--` form, a path percent-encoded) and characters a URI may not hold
//! unencoded are refused instead of mapped or percent-encoded, and `.`/`..` path segments are
//! kept as written.

/// A checked absolute http(s) URL, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `http` or `https`.
    scheme: &'static str,
    /// Host (lowercased) and, unless it is the scheme's default, `:port`.
    authority: String,
    /// Never empty: at least `/`.
    path: String,
    query: Option<String>,
    fragment: Option<String>,
}

impl HttpUrl {
    /// Parses `raw` (surrounding whitespace ignored). Errors describe the shape expected, never
    /// the value: a setting's value may be a secret pasted into the wrong place.
    pub fn parse(raw: &str) -> Result<HttpUrl, &'static str> {
        let raw = raw.trim();
        if !raw.is_ascii() {
            return Err("must be ASCII: give a non-ASCII host in its punycode (xn--) form and percent-encode the path");
        }
        // `http::Uri` would drop a fragment silently; it is kept apart and checked here.
        let (raw, fragment) = match raw.split_once('#') {
            Some((before, frag)) => (before, Some(frag)),
            None => (raw, None),
        };
        if fragment.is_some_and(|f| f.bytes().any(|b| b.is_ascii_control() || b == b' ')) {
            return Err("is not an absolute URL");
        }
        let uri: http::Uri = raw.parse().map_err(|_| "is not an absolute URL")?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err("is not an absolute URL");
        };
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => ("http", 80),
            "https" => ("https", 443),
            _ => return Err("must be an http(s) URL with a host"),
        };
        if authority.as_str().contains('@') {
            // Credentials in a URL end up in logs and error messages; they belong in secrets.
            return Err("must not carry credentials");
        }
        let host = authority.host();
        if !host_is_valid(host) {
            return Err("must be an http(s) URL with a host");
        }
        // `http::Uri` accepts any text after the host's `:`; a port is 0-65535 (`host:` alone
        // means the default, as `url` reads it).
        let port_text = &authority.as_str()[host.len()..];
        let port = match port_text.strip_prefix(':') {
            None | Some("") => None,
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                Some(digits.parse::<u16>().map_err(|_| "has an invalid port")?)
            }
            Some(_) => return Err("has an invalid port"),
        };
        let mut authority = host.to_ascii_lowercase();
        if let Some(port) = port.filter(|&p| p != default_port) {
            authority.push(':');
            authority.push_str(&port.to_string());
        }
        let path = match uri.path() {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        Ok(HttpUrl {
            scheme,
            authority,
            path,
            query: uri.query().map(str::to_string),
            fragment: fragment.map(str::to_string),
        })
    }

    pub fn has_query(&self) -> bool {
        self.query.is_some()
    }

    pub fn has_fragment(&self) -> bool {
        self.fragment.is_some()
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// Whether the host is a loopback one: `localhost`, an IPv4 address in 127.0.0.0/8 written
    /// as four decimal octets, or the IPv6 loopback `[::1]`. Only these exact forms: a name that
    /// merely starts with `127.` or `localhost.` is any host's name, and the shorthand or
    /// octal IPv4 forms (`127.1`, `0x7f.0.0.1`) are left to be refused rather than guessed.
    pub fn is_loopback(&self) -> bool {
        let host = match self.authority.rfind(':') {
            // `[::1]:8080` or `[::1]`: the port follows the closing bracket.
            Some(i) if !self.authority[i..].contains(']') => &self.authority[..i],
            _ => self.authority.as_str(),
        };
        if host == "localhost" {
            return true;
        }
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return is_ipv6_loopback(v6);
        }
        // Four decimal octets, none with a leading zero (which some parsers read as octal).
        let octets: Vec<&str> = host.split('.').collect();
        octets.len() == 4
            && octets[0] == "127"
            && octets.iter().all(|o| {
                (1..=3).contains(&o.len())
                    && o.bytes().all(|b| b.is_ascii_digit())
                    && (o.len() == 1 || !o.starts_with('0'))
                    && o.parse::<u8>().is_ok()
            })
    }

    /// `scheme://authority/path`, without query or fragment.
    pub fn without_query(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path)
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        if let Some(frag) = &self.fragment {
            write!(f, "#{frag}")?;
        }
        Ok(())
    }
}

/// `::1` in any spelling of RFC 4291 §2.2 without an embedded IPv4 address (`0::1`,
/// `0:0:0:0:0:0:0:1`): seven zero groups, then 1. By hand rather than with `Ipv6Addr`'s parser,
/// which is kilobytes of wasm for a check made once per isolate.
fn is_ipv6_loopback(text: &str) -> bool {
    let groups = |part: &str| -> Option<Vec<u16>> {
        if part.is_empty() {
            return Some(Vec::new());
        }
        part.split(':')
            .map(|g| {
                ((1..=4).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| u16::from_str_radix(g, 16).ok())
                    .flatten()
            })
            .collect()
    };
    let all = match text.split_once("::") {
        Some((head, tail)) if !tail.contains("::") => match (groups(head), groups(tail)) {
            (Some(mut head), Some(tail)) if head.len() + tail.len() <= 7 => {
                head.resize(8 - tail.len(), 0);
                head.extend(tail);
                head
            }
            _ => return false,
        },
        Some(_) => return false,
        None => match groups(text) {
            Some(all) if all.len() == 8 => all,
            _ => return false,
        },
    };
    all[..7].iter().all(|&g| g == 0) && all[7] == 1
}

/// A DNS name or IPv4 address (letters, digits, `-`, `.`, `_`), or a bracketed IPv6 literal.
fn host_is_valid(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && host.bytes().any(|b| b != b'.')
}

/// Where an issuer publishes its metadata: OpenID Connect Discovery §4 (`/.well-known/
/// openid-configuration` appended to the issuer, a trailing `/` dropped first) and RFC 8414
/// §3.1 (`/.well-known/oauth-authorization-server` inserted between the host and the issuer's
/// path, a trailing `/` dropped). The issuer must be an https URL (or http on a loopback host,
/// as `endpoint_url` allows) without query or fragment: both specifications define it so.
pub fn well_known_urls(issuer: &str) -> Result<[String; 2], &'static str> {
    if issuer.trim() != issuer {
        return Err("must be a URL without surrounding spaces to be discovered");
    }
    let url = HttpUrl::parse(issuer)?;
    if !url.is_https() && !url.is_loopback() {
        return Err("must be an https URL to be discovered (http only on a loopback host)");
    }
    if url.has_query() || url.has_fragment() {
        return Err("must have no query or fragment to be discovered");
    }
    let path = url.path.trim_end_matches('/');
    let base = format!("{}://{}", url.scheme, url.authority);
    Ok([
        format!("{base}{path}/.well-known/openid-configuration"),
        format!("{base}/.well-known/oauth-authorization-server{path}"),
    ])
}

/// Whether `url`'s query (after `?`, before `#`) has a parameter named `name`, names decoded as
/// application/x-www-form-urlencoded.
pub fn has_query_param(url: &str, name: &str) -> bool {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        HttpUrl::parse(raw).unwrap().to_string()
    }

    #[test]
    fn an_issuer_has_two_well_known_locations() {
        assert_eq!(
            well_known_urls("https://team.cloudflareaccess.com").unwrap(),
            [
                "https://team.cloudflareaccess.com/.well-known/openid-configuration",
                "https://team.cloudflareaccess.com/.well-known/oauth-authorization-server",
            ]
        );
        assert_eq!(
            well_known_urls("https://idp.example/tenant/v2/").unwrap(),
            [
                "https://idp.example/tenant/v2/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/tenant/v2",
            ]
        );
        assert_eq!(
            well_known_urls("http://127.0.0.1:9000").unwrap()[0],
            "http://127.0.0.1:9000/.well-known/openid-configuration"
        );
        for bad in [
            "http://idp.example",
            "https://idp.example/?tenant=1",
            "https://idp.example/#x",
            "idp.example",
            " https://idp.example",
            "https://user@idp.example",
        ] {
            assert!(well_known_urls(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_normalised_as_the_url_crate_did() {
        assert_eq!(ok("https://o.example"), "https://o.example/");
        assert_eq!(
            ok(" HTTPS://O.Example:443/A?b=1 "),
            "https://o.example/A?b=1"
        );
        assert_eq!(ok("http://127.0.0.1:8788"), "http://127.0.0.1:8788/");
        assert_eq!(ok("http://h:80/x"), "http://h/x");
        assert_eq!(ok("https://h:80/x"), "https://h:80/x");
        assert_eq!(ok("http://h:/x"), "http://h/x");
        assert_eq!(ok("http://[::1]:9/x?"), "http://[::1]:9/x?");
        assert_eq!(ok("https://h/p?q=1#frag"), "https://h/p?q=1#frag");
        assert_eq!(
            ok("https://xn--bcher-kva.example/"),
            "https://xn--bcher-kva.example/"
        );
    }

    #[test]
    fn what_is_not_an_absolute_http_url_with_a_host_is_refused() {
        for bad in [
            "",
            "o.example",
            "/relative",
            "not a url",
            "https:foo",
            "http:///p",
            "ftp://o.example/",
            "http://a b/",
            "http://ex%41mple/",
            "http://[zz]/",
            "http://./",
            "http://h:99999/",
            "http://h:8o/",
            "https://h/p#a b",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_and_non_ascii_are_refused_with_a_reason() {
        assert_eq!(
            HttpUrl::parse("https://u:pw@k.example/"),
            Err("must not carry credentials")
        );
        assert_eq!(
            HttpUrl::parse("https://u@k.example/"),
            Err("must not carry credentials")
        );
        let err = HttpUrl::parse("https://bücher.example/").unwrap_err();
        assert!(err.contains("punycode"), "{err}");
        assert!(HttpUrl::parse("https://k.example/ä").is_err());
    }

    #[test]
    fn ipv6_loopback_in_its_spellings_only() {
        for yes in ["::1", "0::1", "0:0:0:0:0:0:0:1", "0000::0001", "::0:1"] {
            assert!(is_ipv6_loopback(yes), "{yes}");
        }
        for no in [
            "::",
            "::2",
            "1::1",
            "::1:0",
            "::+1",
            ":::1",
            "::1::",
            "0:0:0:0:0:0:0:0:1",
            "0:0:0:0:0:0:1",
            "::00001",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::g1",
            "",
        ] {
            assert!(!is_ipv6_loopback(no), "{no}");
        }
    }

    #[test]
    fn query_parameters_are_found_by_decoded_name() {
        let url = "https://i.example/t?grant_type=client_credentials&x=1";
        assert!(has_query_param(url, "grant_type"));
        assert!(has_query_param(
            "https://i.example/t?a=1&grant%5Ftype=x",
            "grant_type"
        ));
        assert!(!has_query_param(
            "https://i.example/t?grant_types=x",
            "grant_type"
        ));
        assert!(!has_query_param(
            "https://i.example/t#?grant_type=x",
            "grant_type"
        ));
        assert!(!has_query_param(
            "https://i.example/t?a=1#grant_type=x",
            "grant_type"
        ));
        assert!(!has_query_param(
            "https://i.example/grant_type",
            "grant_type"
        ));
    }
}

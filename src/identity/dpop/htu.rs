//! The `htu` comparison of RFC 9449 §4.3: the proof's URL and the URL the request was received
//! at, each normalized per RFC 3986 §6.2.2 (case, percent-encoding, dot segments) and §6.2.3
//! (the scheme's default port, an empty path as `/`), then compared as text.
//!
//! This is not the route's path normalization (`edge::path`): that one also merges empty
//! segments and refuses encoded slashes, for what the origin receives. The proof names the URL
//! the client sent, so the request side is the URL as received, before the gateway changes it:
//! a proof for `/a//b` is not a proof for `/a/b`.

/// `url` normalized, or `None` when it is no absolute `http(s)` URL without query, fragment
/// or user information (a proof's `htu` never needs them: RFC 9449 §4.2 leaves them out).
pub fn normalize(url: &str) -> Option<String> {
    if !url.is_ascii() || url.contains(['?', '#']) || url.bytes().any(|b| b <= b' ') {
        return None;
    }
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    // The port is after the last `:` outside an IPv6 literal's brackets.
    let (host, port) = match authority.rfind(':') {
        Some(at) if !authority[at..].contains(']') => (&authority[..at], &authority[at + 1..]),
        _ => (authority.as_str(), ""),
    };
    if host.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `:0443` is port 443; `:` alone is no port (RFC 3986 §6.2.3).
    let port = match port.trim_start_matches('0') {
        "" if !port.is_empty() => "0",
        trimmed => trimmed,
    };
    let authority = if port.is_empty() || port == default_port {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let path = remove_dot_segments(&percent_normalized(path)?);
    let path = if path.is_empty() { "/".into() } else { path };
    Some(format!("{scheme}://{authority}{path}"))
}

/// RFC 3986 §6.2.2.1 and §6.2.2.2: `%XX` of an unreserved character decoded, every other
/// `%XX` with upper-case hex; a `%` not followed by two hex digits is no URL.
fn percent_normalized(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let hex = |b: u8| (b as char).to_digit(16);
        let (hi, lo) = (hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?);
        let decoded = (hi * 16 + lo) as u8;
        if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
            out.push(decoded as char);
        } else {
            out.push('%');
            out.push_str(&format!("{decoded:02X}"));
        }
        i += 3;
    }
    Some(out)
}

/// RFC 3986 §5.2.4, on a path that starts with `/` (or is empty).
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out: Vec<&str> = Vec::new();
    // Each step moves one segment (with its leading `/`) to the output, or drops a dot segment.
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../").or(input.strip_prefix("./")) {
            input = rest;
        } else if input.starts_with("/./") || input == "/." {
            input = if input == "/." { "/" } else { &input[2..] };
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." { "/" } else { &input[3..] };
            out.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let from = usize::from(input.starts_with('/'));
            let end = input[from..].find('/').map_or(input.len(), |i| i + from);
            out.push(&input[..end]);
            input = &input[end..];
        }
    }
    out.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_and_scheme_based_normalization() {
        let n = |u| normalize(u);
        assert_eq!(
            n("HTTPS://API.Example.COM:443").as_deref(),
            Some("https://api.example.com/")
        );
        assert_eq!(n("http://h:80/a").as_deref(), Some("http://h/a"));
        assert_eq!(n("https://h:8443/a").as_deref(), Some("https://h:8443/a"));
        assert_eq!(n("https://h:/a").as_deref(), Some("https://h/a"));
        assert_eq!(
            n("https://h/%7euser/%2f").as_deref(),
            Some("https://h/~user/%2F")
        );
        assert_eq!(n("https://h/a/./b/../c").as_deref(), Some("https://h/a/c"));
        assert_eq!(n("https://h/a/%2E%2E/c").as_deref(), Some("https://h/c"));
        assert_eq!(n("https://h/../../a").as_deref(), Some("https://h/a"));
        assert_eq!(n("https://h/a/..").as_deref(), Some("https://h/"));
        assert_eq!(n("https://[::1]:443/x").as_deref(), Some("https://[::1]/x"));
        assert_eq!(n("https://[::1]/x").as_deref(), Some("https://[::1]/x"));
        // Empty segments are kept: RFC 3986 does not merge them.
        assert_eq!(n("https://h/a//b").as_deref(), Some("https://h/a//b"));
    }

    #[test]
    fn what_is_no_htu() {
        for bad in [
            "https://h/a?x=1",
            "https://h/a#f",
            "ftp://h/a",
            "/a",
            "https://u@h/a",
            "https:///a",
            "https://h/%zz",
            "https://h/%4",
            "https://h/a b",
            "https://h:x/a",
            "https://hé/a",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}

//! The request path's one canonical form: what routes match is exactly what the origin receives.
//!
//! Origins do not read a path the way its bytes read. nginx decodes `%2F` and then resolves dot
//! segments; Tomcat and Jetty strip `;params` before routing, so `..;` counts as `..`; IIS and
//! many frameworks treat `\` as `/`; most servers merge `//`. If the gateway matched the raw
//! string and forwarded it, `/auth/customer_authenticate/..%2F..%2Faccount%2Fgetprofile` would
//! match a public route here and be served as `/account/getprofile` there. So, as Envoy does
//! with `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action:
//! REJECT_REQUEST`, the path is brought to one form that every such reading agrees on, and
//! whatever could still be read two ways is refused.
//!
//! [`normalize`]:
//! - decodes percent-encoded unreserved characters (`A–Z a–z 0–9 - . _ ~`, RFC 3986 §2.3) and
//!   writes every other escape in upper-case hex (§6.2.2.1);
//! - resolves `.` and `..` segments (§5.2.4; `..` above the root stays at the root) and merges
//!   empty segments, keeping a trailing slash;
//! - percent-encodes the raw bytes that a URL path may not hold as they are (space, `"`, `<`,
//!   `>`, `` ` ``, `{`, `}`, `?`, `#` and non-ASCII: WHATWG's path percent-encode set), so that
//!   the URL sent on is not changed again by `fetch`;
//! - refuses, with a [`PathError`] naming the class: `%2F`, `%5C`, `%25`, `%00`, a raw `\`, a
//!   `;` in any segment (raw or `%3B`; a dot segment with parameters such as `..;x` is named as
//!   such), control characters raw or encoded, an escape that is not `%` and two hex digits,
//!   decoded bytes that are not UTF-8, and a path over [`MAX_PATH_BYTES`].
//!
//! Why each refusal, rather than a rewrite:
//! - `%2F` / `%5C`: one origin reads a separator, another a character of a segment; no form
//!   satisfies both.
//! - `%25`: double encoding (`%252F`) turns into `%2F` at an origin that decodes twice.
//! - `;`: Tomcat and Jetty drop `;params` before routing, so `/account;x/getprofile` would be
//!   served as `/account/getprofile` although it matched no `/account` route here (a catch-all
//!   `public` route would let it through). Spring Security's StrictHttpFirewall refuses `;` and
//!   `%3B` for the same reason. No origin of this gateway's known users needs path parameters
//!   (session ids in `;jsessionid=` are themselves a leak).
//! - control characters (`%01`–`%1F`, `%7F`): an origin that decodes them writes line breaks
//!   into its logs and, when it copies the path into a header, into its responses.
//! - bytes that are not UTF-8: the overlong `%C0%AE` is a `.` to decoders that do not check
//!   (the classic IIS traversal); refusing every invalid sequence closes that class.
//! - over [`MAX_PATH_BYTES`]: a bound on work and on what is forwarded; the normalizer is linear.

/// Longest request path accepted, in bytes as received (8 KiB, the request-line limit of
/// common servers and load balancers).
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a path is refused. Each names a class and never carries the path's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// `%2F`: a `/` that is not a separator here and may be one at the origin.
    EncodedSlash,
    /// `%5C`: a `\`, which some origins read as `/`.
    EncodedBackslash,
    /// `%25`: an encoded `%`, i.e. double encoding.
    EncodedPercent,
    /// `%00`, or a raw NUL byte.
    Nul,
    /// A raw `\`, which some origins read as `/`.
    Backslash,
    /// `.` or `..` followed by `;` (`..;x`, `.;`): Tomcat and Jetty read it as a dot segment.
    DotSegmentWithParameters,
    /// A `;` (raw or `%3B`) in a segment: servers that strip `;params` route differently.
    Semicolon,
    /// A `%` not followed by two hex digits.
    MalformedEscape,
    /// A control character (U+0001–U+001F, U+007F), raw or encoded.
    ControlCharacter,
    /// Percent-encoded bytes that do not decode to UTF-8 (e.g. the overlong `%C0%AE`).
    InvalidUtf8,
    /// Longer than [`MAX_PATH_BYTES`].
    TooLong,
}

impl PathError {
    /// A stable id for the log line's `path_problem`.
    pub fn code(self) -> &'static str {
        match self {
            Self::EncodedSlash => "encoded_slash",
            Self::EncodedBackslash => "encoded_backslash",
            Self::EncodedPercent => "encoded_percent",
            Self::Nul => "nul",
            Self::Backslash => "backslash",
            Self::DotSegmentWithParameters => "dot_segment_with_parameters",
            Self::Semicolon => "semicolon",
            Self::MalformedEscape => "malformed_escape",
            Self::ControlCharacter => "control_character",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::TooLong => "too_long",
        }
    }

    /// What the path contains, for "The request path contains …".
    pub fn description(self) -> &'static str {
        match self {
            Self::EncodedSlash => "an encoded slash (%2F)",
            Self::EncodedBackslash => "an encoded backslash (%5C)",
            Self::EncodedPercent => "an encoded percent sign (%25)",
            Self::Nul => "a NUL byte (%00)",
            Self::Backslash => "a backslash",
            Self::DotSegmentWithParameters => "a dot segment with parameters (such as ..;)",
            Self::Semicolon => "a semicolon (path parameters are not accepted)",
            Self::MalformedEscape => "a malformed percent escape",
            Self::ControlCharacter => "an encoded or raw control character",
            Self::InvalidUtf8 => "percent-encoded bytes that are not UTF-8",
            Self::TooLong => "more bytes than the gateway accepts",
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Raw bytes written percent-encoded: WHATWG's path percent-encode set (without the control
/// characters, which are refused) and non-ASCII. `?` and `#` cannot come from a parsed URL's
/// path; encoded they stay part of it.
fn must_encode(b: u8) -> bool {
    b >= 0x80
        || matches!(
            b,
            b' ' | b'"' | b'#' | b'<' | b'>' | b'?' | b'`' | b'{' | b'}'
        )
}

fn push_escape(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// The path's canonical form (always starting with `/`), or why it is refused. A path that
/// does not start with `/` is read as if it did. Linear in the path's length.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    // Every byte as an origin that decodes once would see it: checked for UTF-8 at the end, so
    // that a sequence split between escapes and raw bytes is judged whole.
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    // Canonical segments, written one after the other; `ends` holds where each kept one ends,
    // so that `..` pops in constant time.
    let mut out = String::with_capacity(bytes.len() + 1);
    let mut ends: Vec<usize> = Vec::new();
    let mut trailing_slash = false;

    let mut consumed = 0;
    for segment in bytes.split(|&b| b == b'/') {
        let start = out.len();
        out.push('/');
        let mut j = 0;
        while j < segment.len() {
            let b = segment[j];
            let value = if b == b'%' {
                let hi = segment.get(j + 1).copied().and_then(hex_value);
                let lo = segment.get(j + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::MalformedEscape);
                };
                j += 3;
                let v = (hi << 4) | lo;
                match v {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    b'%' => return Err(PathError::EncodedPercent),
                    _ => {}
                }
                Escaped::Yes(v)
            } else {
                j += 1;
                Escaped::No(b)
            };
            let v = value.byte();
            match v {
                0 => return Err(PathError::Nul),
                0x01..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                b'\\' => return Err(PathError::Backslash),
                b';' => {
                    // `%2E` is already `.` in `out`, so the segment so far reads `.` or `..`
                    // exactly when an origin that strips `;params` would see a dot segment.
                    return Err(match &out[start + 1..] {
                        "." | ".." => PathError::DotSegmentWithParameters,
                        _ => PathError::Semicolon,
                    });
                }
                _ => {}
            }
            decoded.push(v);
            match value {
                Escaped::Yes(v) if is_unreserved(v) => out.push(char::from(v)),
                Escaped::Yes(v) => push_escape(&mut out, v),
                Escaped::No(v) if must_encode(v) => push_escape(&mut out, v),
                Escaped::No(v) => out.push(char::from(v)),
            }
        }
        consumed += segment.len() + 1;
        let last = consumed > bytes.len();
        // The leading `/` makes an empty first segment; it is the root, not a segment.
        match &out[start + 1..] {
            "" | "." => out.truncate(start),
            ".." => {
                out.truncate(start);
                if let Some(end) = ends.pop() {
                    let begin = ends.last().copied().unwrap_or(0);
                    debug_assert_eq!(end, start);
                    out.truncate(begin);
                }
            }
            _ => {
                ends.push(out.len());
                trailing_slash = false;
                continue;
            }
        }
        // RFC 3986 §5.2.4: a path ending in `/`, `/.` or `/..` ends with `/`.
        trailing_slash = last;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// A byte of the path and whether it came percent-encoded.
#[derive(Clone, Copy)]
enum Escaped {
    Yes(u8),
    No(u8),
}

impl Escaped {
    fn byte(self) -> u8 {
        match self {
            Self::Yes(b) | Self::No(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_are_fixed_points() {
        for p in ["/", "/account/getprofile", "/a/", "/caf%C3%A9", "/a%20b"] {
            assert_eq!(normalize(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn trailing_dot_segments_leave_a_trailing_slash() {
        assert_eq!(normalize("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(normalize("/a/.").as_deref(), Ok("/a/"));
        assert_eq!(normalize("/a/..").as_deref(), Ok("/"));
        assert_eq!(normalize("/..").as_deref(), Ok("/"));
        assert_eq!(normalize("").as_deref(), Ok("/"));
    }
}

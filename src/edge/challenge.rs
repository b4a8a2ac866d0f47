//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1, §11.3), read as bytes from a response the
//! gateway did not write: several challenges per field, several fields, auth-params, token68.
//!
//! A field is a comma-separated list whose commas separate both challenges and the parameters
//! of one challenge, so each element is classified by its shape: `name = value` continues the
//! current challenge, anything else starting with a token opens a new one (`scheme`,
//! `scheme token68`, `scheme name=value`). The parser is one forward pass over the bytes: it
//! never backtracks, never panics, and skips what it cannot read up to the next comma, so that
//! hostile input costs time linear in its length and nothing else.

use std::borrow::Cow;

use http::HeaderMap;

/// One challenge: its scheme and what followed it, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// The auth-scheme, as sent; compare with `is_scheme` (schemes are case-insensitive).
    pub scheme: &'a [u8],
    /// The token68 form (`Basic dXNlcg==`), when the challenge used it instead of parameters.
    pub token68: Option<&'a [u8]>,
    /// The auth-params in order: names as sent, values with quoted-pairs undone.
    pub params: Vec<(&'a [u8], Cow<'a, [u8]>)>,
}

impl Challenge<'_> {
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme.as_bytes())
    }

    /// The value of parameter `name` (case-insensitive), if it occurs exactly once. RFC 9110
    /// §11.2 allows each name once per challenge; a repeated one is ambiguous, so it has none.
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        let mut found = self
            .params
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
        match (found.next(), found.next()) {
            (Some((_, v)), None) => Some(v),
            _ => None,
        }
    }
}

/// Every challenge of every `WWW-Authenticate` field of `headers`, in order.
pub fn all(headers: &HeaderMap) -> impl Iterator<Item = Challenge<'_>> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .flat_map(|v| parse(v.as_bytes()))
}

/// Whether `headers` carry a `Bearer` challenge with `error="invalid_token"` (RFC 6750 §3.1):
/// a resource server saying that the access token sent was refused. The error code is
/// compared exactly: RFC 6750 defines it as a fixed, case-sensitive value.
pub fn refuses_bearer_token(headers: &HeaderMap) -> bool {
    all(headers).any(|c| c.is_scheme("Bearer") && c.param("error") == Some(b"invalid_token"))
}

/// The challenges of one field value. Elements that do not parse are skipped; a parameter
/// before any scheme belongs to no challenge and is dropped.
pub fn parse(value: &[u8]) -> Vec<Challenge<'_>> {
    let mut p = Parser { s: value, i: 0 };
    let mut out: Vec<Challenge<'_>> = Vec::new();
    loop {
        p.skip_list_separators();
        if p.at_end() {
            return out;
        }
        let start = p.i;
        let word = p.token();
        if word.is_empty() {
            // Not a token where an element must start: skip the element.
            p.skip_element();
            continue;
        }
        p.skip_ows();
        if p.peek() == Some(b'=') {
            // `name = value`: a parameter of the challenge being read.
            p.i += 1;
            match p.param_value() {
                Some(v) if p.element_ends() => {
                    if let Some(c) = out.last_mut().filter(|c| c.token68.is_none()) {
                        c.params.push((word, v));
                    }
                }
                _ => p.skip_element(),
            }
            continue;
        }
        // A new challenge: `scheme`, then optionally one space-separated token68 or parameter.
        let mut challenge = Challenge {
            scheme: &value[start..start + word.len()],
            token68: None,
            params: Vec::new(),
        };
        if p.i > start + word.len() && !p.element_ends() {
            challenge = p.after_scheme(challenge);
        } else if !p.element_ends() {
            // Something glued to the scheme (`Bearer"x"`): not a challenge.
            p.skip_element();
            continue;
        }
        out.push(challenge);
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §11.2 token68 characters, before its trailing `=`s.
fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// Whitespace and empty list elements (`a, , b` is allowed by the list rule).
    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// After optional whitespace: the end of the value or of a list element.
    fn element_ends(&mut self) -> bool {
        self.skip_ows();
        matches!(self.peek(), None | Some(b','))
    }

    /// Skips to the next comma outside a quoted string (or the end): the unreadable rest of
    /// an element.
    fn skip_element(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b',' => return,
                b'"' => {
                    // An unterminated string runs to the end: so does the skip.
                    let _ = self.quoted();
                }
                _ => self.i += 1,
            }
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// A parameter value after `=`: a token or a quoted-string, after optional whitespace.
    fn param_value(&mut self) -> Option<Cow<'a, [u8]>> {
        self.skip_ows();
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let v = self.token();
        (!v.is_empty()).then_some(Cow::Borrowed(v))
    }

    /// A quoted-string starting at `"`, with quoted-pairs undone; `None` when it is
    /// unterminated or holds a control character. Always moves past what it read.
    fn quoted(&mut self) -> Option<Cow<'a, [u8]>> {
        self.i += 1; // the opening quote
        let start = self.i;
        let mut owned: Option<Vec<u8>> = None;
        let mut ok = true;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => {
                    let raw = &self.s[start..self.i - 1];
                    return ok.then(|| owned.map_or(Cow::Borrowed(raw), Cow::Owned));
                }
                b'\\' => {
                    let Some(next) = self.peek() else { break };
                    self.i += 1;
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    ok &= next == b'\t' || (next >= b' ' && next != 0x7f);
                    let buf = owned.get_or_insert_with(|| self.s[start..self.i - 2].to_vec());
                    buf.push(next);
                }
                _ => {
                    // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                    ok &= b == b'\t' || (b >= b' ' && b != 0x7f);
                    if let Some(buf) = owned.as_mut() {
                        buf.push(b);
                    }
                }
            }
        }
        None
    }

    /// What follows `scheme` and at least one space: a token68 or a first parameter. Moves to
    /// the end of the element either way.
    fn after_scheme(&mut self, mut challenge: Challenge<'a>) -> Challenge<'a> {
        let start = self.i;
        let word = self.token68_or_token();
        if word.is_empty() {
            self.skip_element();
            return challenge;
        }
        let word_end = self.i;
        self.skip_ows();
        let equals_start = self.i;
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        let (equals, equals_end) = (self.i - equals_start, self.i);
        // `abc`, `abc=`, `abc==`: a token68 (its padding glued to it) with nothing after.
        let glued = equals_start == word_end;
        if word.iter().all(|&b| is_token68(b)) && (equals == 0 || glued) && self.element_ends() {
            let end = if equals == 0 { word_end } else { equals_end };
            challenge.token68 = Some(&self.s[start..end]);
            return challenge;
        }
        // `name=value`.
        if equals == 1 && word.iter().all(|&b| is_tchar(b)) {
            match self.param_value() {
                Some(v) if self.element_ends() => challenge.params.push((word, v)),
                _ => self.skip_element(),
            }
            return challenge;
        }
        self.skip_element();
        challenge
    }

    /// A run of token or token68 characters (`/` is token68 only).
    fn token68_or_token(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(|b| is_tchar(b) || b == b'/') {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemes(v: &str) -> Vec<String> {
        parse(v.as_bytes())
            .iter()
            .map(|c| String::from_utf8_lossy(c.scheme).into_owned())
            .collect()
    }

    fn refuses(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::WWW_AUTHENTICATE, v.parse().unwrap());
        }
        refuses_bearer_token(&h)
    }

    #[test]
    fn one_bearer_challenge_with_parameters() {
        let c = &parse(br#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#)[0];
        assert!(c.is_scheme("bearer"));
        assert_eq!(c.param("realm"), Some(&b"example"[..]));
        assert_eq!(c.param("ERROR"), Some(&b"invalid_token"[..]));
        assert_eq!(
            c.param("error_description"),
            Some(&b"The access token expired"[..])
        );
        assert_eq!(c.params.len(), 3);
    }

    #[test]
    fn several_challenges_in_one_field() {
        assert_eq!(
            schemes(r#"Basic realm="a, b", Bearer error=invalid_token, Negotiate"#),
            ["Basic", "Bearer", "Negotiate"]
        );
        assert!(refuses(&[
            r#"Basic realm="a, b", Bearer error=invalid_token"#
        ]));
        // The comma inside the quoted realm does not start a challenge.
        assert!(!refuses(&[
            r#"Basic realm="a, Bearer error=invalid_token""#
        ]));
        let v = parse(br#"Basic realm="a, b", Bearer error=invalid_token"#);
        assert_eq!(v[0].param("realm"), Some(&b"a, b"[..]));
        assert_eq!(v[0].params.len(), 1, "Bearer's error is not Basic's");
    }

    #[test]
    fn several_fields() {
        assert!(refuses(&[
            "Basic realm=x",
            r#"Bearer error="invalid_token""#
        ]));
        assert!(!refuses(&["Basic realm=x", r#"Bearer realm="x""#]));
    }

    #[test]
    fn token68_and_padding() {
        let v = parse(b"Basic dXNlcjpwYXNz==, Negotiate abc=, Bearer error=invalid_token");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].token68, Some(&b"dXNlcjpwYXNz=="[..]));
        assert_eq!(v[1].token68, Some(&b"abc="[..]));
        assert!(v[2].is_scheme("Bearer"));
        assert_eq!(v[2].param("error"), Some(&b"invalid_token"[..]));
        // A parameter after a token68 is not the token68 challenge's.
        let v = parse(b"Bearer abc, error=invalid_token");
        assert_eq!(v[0].token68, Some(&b"abc"[..]));
        assert!(v[0].params.is_empty());
    }

    #[test]
    fn quoted_pairs_are_undone() {
        let v = parse(br#"Bearer realm="a \"quoted\" \\ realm", error="invalid\_token""#);
        assert_eq!(v[0].param("realm"), Some(&br#"a "quoted" \ realm"#[..]));
        assert_eq!(v[0].param("error"), Some(&b"invalid_token"[..]));
        assert!(refuses(&[r#"Bearer error="invalid\_token""#]));
        // An escaped quote does not end the string: no error parameter follows it.
        assert!(!refuses(&[r#"Bearer realm="x\", error=invalid_token""#]));
    }

    #[test]
    fn scheme_and_names_are_case_insensitive_the_error_code_is_not() {
        assert!(refuses(&["bEaReR ErRoR=invalid_token"]));
        assert!(refuses(&["BEARER error = \"invalid_token\""]));
        assert!(!refuses(&["Bearer error=INVALID_TOKEN"]));
        assert!(!refuses(&["Bearerx error=invalid_token"]));
    }

    #[test]
    fn what_is_not_a_refusal() {
        for v in [
            "",
            "Basic realm=\"demo\"",
            r#"Bearer realm="x""#,
            r#"Bearer error="insufficient_scope", scope="profile""#,
            r#"Bearer error="invalid_request""#,
            "Bearer",
            r#"Basic error="invalid_token""#,
            // A parameter before any scheme belongs to no challenge.
            "error=invalid_token",
            r#", error="invalid_token""#,
            // A repeated name is ambiguous (RFC 9110 §11.2: once per challenge).
            "Bearer error=invalid_token, error=insufficient_scope",
            // Unterminated, control characters, glued.
            r#"Bearer error="invalid_token"#,
            "Bearer error=\"invalid_token\"x",
            "Bearer\"x\" error=invalid_token",
            "Bearer error=invalid_token=",
        ] {
            assert!(!refuses(&[v]), "{v}");
        }
    }

    #[test]
    fn garbage_is_skipped_up_to_the_next_element() {
        assert!(refuses(&[r#"@@@, ="", Bearer error=invalid_token"#]));
        // An unterminated quoted string runs to the end of the field, swallowing what follows.
        assert!(!refuses(&[
            r#"Basic realm="unterminated, Bearer error=invalid_token"#
        ]));
        assert!(refuses(&[
            r#"Basic realm="unterminated"#,
            "Bearer error=invalid_token"
        ]));
        assert_eq!(schemes(",,, ,\t,"), Vec::<String>::new());
        assert_eq!(schemes("=, ==, \"\", \\"), Vec::<String>::new());
        // Bytes that are not UTF-8 are only bytes.
        let v = parse(b"Bearer realm=\"\xff\xfe\", error=invalid_token, \xc3(");
        assert_eq!(v[0].param("realm"), Some(&b"\xff\xfe"[..]));
        assert_eq!(v[0].param("error"), Some(&b"invalid_token"[..]));
        assert_eq!(v.len(), 1);
        // Control characters in a quoted string make it unreadable.
        let v = parse(b"Bearer realm=\"a\x01b\", error=invalid_token");
        assert_eq!(v[0].param("realm"), None);
        assert_eq!(v[0].param("error"), Some(&b"invalid_token"[..]));
    }

    #[test]
    fn very_long_values_are_read_in_one_pass() {
        let n = 1 << 20;
        let long = format!("Bearer realm=\"{}\", error=invalid_token", "a".repeat(n));
        assert!(parse(long.as_bytes())[0].param("error").is_some());
        let escapes = format!("Bearer realm=\"{}\", error=invalid_token", "\\\"".repeat(n));
        assert_eq!(
            parse(escapes.as_bytes())[0].param("realm").unwrap().len(),
            n
        );
        // Many elements, many unterminated strings, many separators: all linear.
        let many = "Bearer error=invalid_token, ".repeat(n / 16);
        assert_eq!(parse(many.as_bytes()).len(), n / 16);
        let quotes = "\"".repeat(n);
        assert!(parse(quotes.as_bytes()).is_empty());
        let commas = ",".repeat(n) + "Bearer error=invalid_token";
        assert_eq!(parse(commas.as_bytes()).len(), 1);
        let params = format!("Bearer {}", "a=b, ".repeat(n / 8));
        assert_eq!(parse(params.as_bytes())[0].params.len(), n / 8);
    }
}

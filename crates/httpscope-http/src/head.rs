//! Request and response heads: the request or status line, and the three header fields that
//! decide how the body is framed. Nothing else is kept.
//!
//! Why not `httparse` (which the first version used): it validates every byte of every header
//! field, which a server must do but an observer must not (it has to accept whatever the two
//! peers accepted), and that validation was over half of the parser's time. Measured on one
//! core with the `parse` bench: 2.0 M small keep-alive GETs/s with httparse; see BENCHMARKS.md
//! for this scanner. It checks what identifies a message (a known method, a target without
//! spaces or control bytes, `HTTP/1.x`, a three-digit status) and only looks for line ends and
//! the framing fields' names in between.

use httpscope_model::telemetry::ParseError;
use httpscope_model::{CompactString, HttpVersion, Method};

use crate::lines::Lines;

/// The most header fields in one head; more is [`ParseError::TooManyHeaders`].
const MAX_HEADERS: usize = 128;

/// How a message's body is delimited, as its head declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// What the parser needs from a request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    /// `None` for a syntactically valid but unknown method token.
    pub(crate) method: Option<Method>,
    pub(crate) path: CompactString,
    pub(crate) version: HttpVersion,
    pub(crate) framing: Framing,
    /// `Upgrade: h2c` was asked for.
    pub(crate) upgrade_h2c: bool,
}

/// What the parser needs from a response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) version: HttpVersion,
    /// As declared by the headers; the request method and status may override it.
    pub(crate) framing: Framing,
    /// `Upgrade: h2c` was agreed to.
    pub(crate) upgrade_h2c: bool,
}

/// `text` without a final `\r`.
#[inline]
fn strip_cr(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\r").unwrap_or(text)
}

/// `HTTP/1.0` or `HTTP/1.1` (any minor digit is taken as 1.1).
#[inline]
fn http_version(s: &[u8]) -> Option<HttpVersion> {
    match s {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'0'] => Some(HttpVersion::Http10),
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => {
            Some(HttpVersion::Http11)
        }
        _ => None,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a request head at the start of `buf`: its fields and length, or `None` if `buf`
/// holds only part of it.
#[inline(always)]
pub(crate) fn parse_request(
    buf: &[u8],
    keep_query: bool,
    max_path: usize,
) -> Result<Option<(RequestHead, usize)>, ParseError> {
    let mut lines = Lines::new(buf);
    let Some(lf) = lines.next_lf() else {
        return Ok(None);
    };
    let invalid = ParseError::InvalidRequest;
    let (method, target, version) = request_line(strip_cr(&buf[..lf])).ok_or(invalid)?;
    let target = Target::check(target, keep_query).ok_or(invalid)?;
    let Some((fields, len)) = Fields::scan(buf, &mut lines, lf + 1, invalid)? else {
        return Ok(None);
    };
    let framing = if fields.transfer_encoding {
        // A request whose last coding is not chunked has no determinable length (RFC 9112
        // §6.3); the server answers 400 and closes, so treat the body as absent.
        if fields.chunked {
            Framing::Chunked
        } else {
            Framing::Empty
        }
    } else {
        match fields.content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let head = RequestHead {
        method,
        path: target.path(keep_query, max_path),
        version,
        framing,
        upgrade_h2c: fields.upgrade_h2c,
    };
    Ok(Some((head, len)))
}

/// Splits a request line (`METHOD SP target SP HTTP/1.x`, runs of spaces allowed) into its
/// method (`None` inside for a valid but unknown token), target and version; `None` if it
/// is not one.
#[inline]
fn request_line(first: &[u8]) -> Option<(Option<Method>, &[u8], HttpVersion)> {
    // Methods are short: a plain loop beats a `memchr` call's set-up.
    let sp = first.iter().position(|&b| b == b' ')?;
    let token = &first[..sp];
    let method = Method::from_bytes(token);
    if method.is_none() && (token.is_empty() || !token.iter().all(|&b| is_tchar(b))) {
        return None;
    }
    let mut rest = &first[sp..];
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    // The version is the last 8 bytes, after at least one space; the target is what is left
    // (it may not hold spaces, which `target_path` checks).
    let (target, version) = rest.split_at_checked(rest.len().checked_sub(8)?)?;
    let version = http_version(version)?;
    let mut target = target.strip_suffix(b" ")?;
    while let [t @ .., b' '] = target {
        target = t;
    }
    if target.is_empty() {
        return None;
    }
    Some((method, target, version))
}

/// A request target checked to hold no space, control byte or DEL.
struct Target<'a> {
    bytes: &'a [u8],
    /// Where an origin-form path ends (its query or fragment starts).
    cut: usize,
    ascii: bool,
}

impl<'a> Target<'a> {
    /// Checks `bytes`, and on the way finds where an origin-form path ends: one pass.
    #[inline]
    fn check(bytes: &'a [u8], keep_query: bool) -> Option<Self> {
        let mut cut = bytes.len();
        let mut ascii = true;
        // Eight bytes at a time while none of them needs a look (SWAR: a control byte or
        // space, DEL, a non-ASCII byte, `?` or `#`); such a word, and the tail, go byte by
        // byte. Paths are mostly plain, and the byte loop was ~10 instructions a byte.
        let mut i = 0;
        while i < bytes.len() {
            if cut == bytes.len() && i + 8 <= bytes.len() {
                let w = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
                if !swar::needs_look(w) {
                    i += 8;
                    continue;
                }
            }
            let end = (i + 8).min(bytes.len());
            for (j, &b) in bytes[i..end].iter().enumerate() {
                // A target is visible ASCII or UTF-8 (servers differ on raw UTF-8; accept it).
                if b <= b' ' || b == 0x7f {
                    return None;
                }
                ascii &= b < 0x80;
                if (b == b'#' || (b == b'?' && !keep_query)) && cut == bytes.len() {
                    cut = i + j;
                }
            }
            i = end;
        }
        Some(Target { bytes, cut, ascii })
    }

    /// The path as [`request_path`] gives it, without its second pass for an ASCII
    /// origin-form target (the common case).
    #[inline]
    fn path(&self, keep_query: bool, max: usize) -> CompactString {
        if self.ascii && self.bytes.first() == Some(&b'/') {
            let path = &self.bytes[..self.cut.min(max)];
            // SAFETY: every byte of `path` was checked to be below 0x80, so it is ASCII and
            // therefore UTF-8 (`str::from_utf8` would check again, at a cost that shows in
            // the small-request benchmark).
            return CompactString::from(unsafe { std::str::from_utf8_unchecked(path) });
        }
        match std::str::from_utf8(self.bytes) {
            Ok(t) => request_path(t, keep_query, max),
            Err(_) => request_path(&String::from_utf8_lossy(self.bytes), keep_query, max),
        }
    }
}

/// Parses a response head at the start of `buf`: its fields and length, or `None` if `buf`
/// holds only part of it.
#[inline(always)]
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, ParseError> {
    let mut lines = Lines::new(buf);
    let Some(lf) = lines.next_lf() else {
        return Ok(None);
    };
    let first = strip_cr(&buf[..lf]);
    let invalid = ParseError::InvalidResponse;
    // `HTTP/1.1 200 OK`; the reason phrase may be absent, even without its space.
    let version = first.get(..8).and_then(http_version).ok_or(invalid)?;
    let mut rest = first[8..].strip_prefix(b" ").ok_or(invalid)?;
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    let code = match rest {
        [a, b, c] | [a, b, c, b' ' | b'\t', ..] => [*a, *b, *c],
        _ => return Err(invalid),
    };
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(invalid);
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(invalid);
    }
    let Some((fields, len)) = Fields::scan(buf, &mut lines, lf + 1, invalid)? else {
        return Ok(None);
    };
    let framing = if fields.transfer_encoding {
        if fields.chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match fields.content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let head = ResponseHead {
        status,
        version,
        framing,
        upgrade_h2c: fields.upgrade_h2c,
    };
    Ok(Some((head, len)))
}

/// The framing-relevant header fields of one head.
#[derive(Debug, Default, PartialEq)]
struct Fields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    upgrade_h2c: bool,
}

impl Fields {
    /// Reads the header lines from `pos` (just after the line end `lines` returned last) up
    /// to the empty line; returns the fields and the head's length, or `None` if the empty
    /// line is not in `buf` yet. A NUL byte in the head is the `invalid` error.
    #[inline]
    fn scan(
        buf: &[u8],
        lines: &mut Lines<'_>,
        pos: usize,
        invalid: ParseError,
    ) -> Result<Option<(Fields, usize)>, ParseError> {
        let mut f = Fields::default();
        let mut count = 0;
        let mut start = pos;
        while let Some(lf) = lines.next_lf() {
            let text = strip_cr(&buf[start..lf]);
            start = lf + 1;
            if text.is_empty() {
                // Peers reject NUL anywhere in a head (as browsers do); so does the parser,
                // which also keeps binary data from passing for a head while resynchronising.
                if lines.nul_before(start) {
                    return Err(invalid);
                }
                return Ok(Some((f, start)));
            }
            count += 1;
            if count > MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            // Only Content-Length, Transfer-Encoding and Upgrade matter; other lines (and
            // lines without a colon, and folded continuations) are passed over, as lenient
            // peers do.
            match text[0] | 0x20 {
                b'c' => f.content_length(text)?,
                b't' => f.transfer_encoding(text),
                b'u' => f.upgrade(text),
                _ => {}
            }
        }
        Ok(None)
    }

    // A name is followed by its colon at once (whitespace before the colon makes a different,
    // unknown name, as RFC 9112 §5.1 has servers reject it), so each name is matched together
    // with its colon, in place; the line's first letter chose which name to try.

    /// Notes a line starting with `c` or `C` if it is `Content-Length`.
    fn content_length(&mut self, text: &[u8]) -> Result<(), ParseError> {
        if CONTENT_LENGTH.matches(text) {
            // Several equal values (in one field or repeated) are allowed; different ones
            // make the framing unknowable (RFC 9112 §6.3).
            let value = trim(&text[CONTENT_LENGTH.len..]);
            if let Some(n) = parse_decimal(value) {
                // The common case, one plain number: no splitting.
                return match self.content_length {
                    Some(prev) if prev != n => Err(ParseError::InvalidContentLength),
                    _ => {
                        self.content_length = Some(n);
                        Ok(())
                    }
                };
            }
            for part in value.split(|&b| b == b',') {
                let n = parse_decimal(trim(part)).ok_or(ParseError::InvalidContentLength)?;
                match self.content_length {
                    Some(prev) if prev != n => return Err(ParseError::InvalidContentLength),
                    _ => self.content_length = Some(n),
                }
            }
        }
        Ok(())
    }

    /// Notes a line starting with `t` or `T` if it is `Transfer-Encoding`.
    fn transfer_encoding(&mut self, text: &[u8]) {
        if TRANSFER_ENCODING.matches(text) {
            self.transfer_encoding = true;
            let value = trim(&text[TRANSFER_ENCODING.len..]);
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            self.chunked = trim(last).eq_ignore_ascii_case(b"chunked");
        }
    }

    /// Notes a line starting with `u` or `U` if it is `Upgrade`.
    fn upgrade(&mut self, text: &[u8]) {
        if UPGRADE.matches(text) {
            self.upgrade_h2c |= trim(&text[UPGRADE.len..])
                .split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"h2c"));
        }
    }
}

const CONTENT_LENGTH: FieldName = FieldName::new(b"content-length:");
const TRANSFER_ENCODING: FieldName = FieldName::new(b"transfer-encoding:");
const UPGRADE: FieldName = FieldName::new(b"upgrade:");

/// A header field name with its colon, matched ignoring ASCII case 8 bytes at a time: each
/// 8-byte word of the line, with the case bit set where the name has a letter, must equal the
/// name's lower-case word. (`eq_ignore_ascii_case` lowers and compares byte by byte, which
/// was a tenth of a small response's head scan.) Setting bit 5 maps only `A-Z` onto `a-z`, and
/// is not applied to the `-` and `:` positions, so the match is exact.
struct FieldName {
    /// Length of the name with its colon (8 to 24).
    len: usize,
    /// (offset, lower-case word, case bits) for words at 0, 8, ... and one ending at `len`.
    words: [(usize, u64, u64); 3],
}

impl FieldName {
    const fn new(name: &[u8]) -> Self {
        assert!(name.len() >= 8 && name.len() <= 24);
        let last = name.len() - 8;
        let at = [0, if last < 8 { last } else { 8 }, last];
        let mut words = [(0, 0, 0); 3];
        let mut w = 0;
        while w < 3 {
            let mut word = 0u64;
            let mut case = 0u64;
            let mut i = 0;
            while i < 8 {
                let b = name[at[w] + i];
                word |= (b as u64) << (8 * i);
                if b.is_ascii_lowercase() {
                    case |= 0x20 << (8 * i);
                }
                i += 1;
            }
            words[w] = (at[w], word, case);
            w += 1;
        }
        FieldName {
            len: name.len(),
            words,
        }
    }

    #[inline]
    fn matches(&self, text: &[u8]) -> bool {
        text.len() >= self.len
            && self.words.iter().all(|&(at, word, case)| {
                let bytes: [u8; 8] = text[at..at + 8].try_into().expect("8 bytes");
                u64::from_le_bytes(bytes) | case == word
            })
    }
}

/// Word-at-a-time byte tests (the "determine if a word has a byte less than n" family of
/// bit tricks): exact for "is there any such byte in the word", which is all they answer.
mod swar {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    /// Whether some byte of `w` is below `n` (`n` <= 128).
    #[inline(always)]
    fn has_less(w: u64, n: u8) -> bool {
        w.wrapping_sub(LO * u64::from(n)) & !w & HI != 0
    }

    /// Whether some byte of `w` equals `b`.
    #[inline(always)]
    fn has_byte(w: u64, b: u8) -> bool {
        has_less(w ^ (LO * u64::from(b)), 1)
    }

    /// Whether some byte of a request target's word is a control byte or space, DEL,
    /// non-ASCII, `?` or `#`: bytes the target check must look at one by one.
    #[inline(always)]
    pub(super) fn needs_look(w: u64) -> bool {
        (w & HI != 0)
            | has_less(w, 0x21)
            | has_byte(w, 0x7f)
            | has_byte(w, b'?')
            | has_byte(w, b'#')
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// The path of a request target: origin-form as is, absolute-form without scheme and
/// authority, authority-form (CONNECT) and `*` as sent. Without `keep_query` the query and
/// fragment are cut. At most `max` bytes are kept, cut at a char boundary.
pub(crate) fn request_path(uri: &str, keep_query: bool, max: usize) -> CompactString {
    let mut path = uri;
    if let Some(rest) = strip_scheme(path) {
        // absolute-form: the path starts at the first '/' after the authority.
        let end = memchr::memchr3(b'/', b'?', b'#', rest.as_bytes()).unwrap_or(rest.len());
        path = &rest[end..];
        if !path.starts_with('/') {
            // "http://host?q" has an empty path, which means "/"; a kept query follows it,
            // without the fragment, and the whole stays within `max`.
            let query = match keep_query {
                true => &path[..memchr::memchr(b'#', path.as_bytes()).unwrap_or(path.len())],
                false => "",
            };
            let mut p = CompactString::with_capacity(1 + query.len());
            p.push('/');
            p.push_str(query);
            truncate_at_char(&mut p, max);
            return p;
        }
    }
    let cut = if keep_query {
        memchr::memchr(b'#', path.as_bytes())
    } else {
        memchr::memchr2(b'?', b'#', path.as_bytes())
    };
    if let Some(end) = cut {
        path = &path[..end];
    }
    let mut p = CompactString::from(path);
    truncate_at_char(&mut p, max);
    p
}

/// Cuts `s` to at most `max` bytes, at a char boundary.
fn truncate_at_char(s: &mut CompactString, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn strip_scheme(uri: &str) -> Option<&str> {
    let b = uri.as_bytes();
    for scheme in ["http://", "https://"] {
        if b.len() >= scheme.len() && b[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes()) {
            return Some(&uri[scheme.len()..]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let cases = [
            ("/a/b?x=1#f", false, "/a/b"),
            ("/a/b?x=1#f", true, "/a/b?x=1"),
            ("http://example.com:8080/p/q?z", false, "/p/q"),
            ("HTTPS://example.com", false, "/"),
            ("http://example.com?x", false, "/"),
            ("http://example.com?x", true, "/?x"),
            ("http://example.com?x#frag", true, "/?x"),
            ("http://example.com#frag", true, "/"),
            ("http://example.com?xxxxxxxx", true, "/?xxx"),
            ("example.com:443", false, "example.com:443"),
            ("*", false, "*"),
            ("/", false, "/"),
        ];
        for (uri, keep, want) in cases {
            let max = if want == "/?xxx" { 5 } else { 2048 };
            assert_eq!(request_path(uri, keep, max), want, "{uri}");
        }
        assert_eq!(request_path("/ééé", false, 4), "/é");
    }

    #[test]
    fn request_framing() {
        let r = parse_request(b"POST /x HTTP/1.1\r\nContent-Length: 12\r\n\r\n", false, 99)
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(
            (r.method, r.framing),
            (Some(Method::Post), Framing::Length(12))
        );
        let r = parse_request(
            b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
            99,
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(r.framing, Framing::Chunked);
        let r = parse_request(b"GET / HTTP/1.0\r\n\r\n", false, 99)
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(
            (r.version, r.framing),
            (HttpVersion::Http10, Framing::Empty)
        );
        let r = parse_request(b"BREW /pot HTTP/1.1\r\n\r\n", false, 99)
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(r.method, None);
        let r = parse_request(
            b"GET / HTTP/1.1\r\nUpgrade: websocket, h2c\r\n\r\n",
            false,
            9,
        )
        .unwrap()
        .unwrap()
        .0;
        assert!(r.upgrade_h2c);
    }

    #[test]
    fn content_length_rules() {
        let ok = parse_request(
            b"PUT / HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length:5\r\n\r\n",
            false,
            9,
        );
        assert_eq!(ok.unwrap().unwrap().0.framing, Framing::Length(5));
        let bad = parse_request(
            b"PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            false,
            9,
        );
        assert_eq!(bad.unwrap_err(), ParseError::InvalidContentLength);
        let bad = parse_request(b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", false, 9);
        assert_eq!(bad.unwrap_err(), ParseError::InvalidContentLength);
        let bad =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n");
        assert_eq!(bad.unwrap_err(), ParseError::InvalidContentLength);
    }

    #[test]
    fn response_framing() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!((r.status, r.framing), (200, Framing::Chunked));
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(r.framing, Framing::UntilClose);
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(r.framing, Framing::UntilClose);
        let r = parse_response(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!((r.status, r.framing), (404, Framing::Empty));
        assert_eq!(
            parse_response(b"HTTP/1.1 700 X\r\n\r\n").unwrap_err(),
            ParseError::InvalidResponse
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 2000 X\r\n\r\n").unwrap_err(),
            ParseError::InvalidResponse
        );
    }

    #[test]
    fn request_lines() {
        let ok = |l: &[u8]| parse_request(l, false, 99).map(|r| r.map(|(h, n)| (h.path, n)));
        assert_eq!(
            ok(b"GET  /x   HTTP/1.1\r\n\r\n"),
            Ok(Some(("/x".into(), 22)))
        );
        assert_eq!(ok(b"GET /x HTTP/1.1\n\n"), Ok(Some(("/x".into(), 17))));
        assert_eq!(ok(b"GET /x HTTP/1.1\r\nHost: a"), Ok(None));
        assert_eq!(ok(b"GET /x HTT"), Ok(None));
        for bad in [
            &b"GET /a b HTTP/1.1\r\n\r\n"[..],
            b"GET /a HTTP/1.1 x\r\n\r\n",
            b"G\0T / HTTP/1.1\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"/ HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                ok(bad),
                Err(ParseError::InvalidRequest),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Folded lines and lines without a colon are skipped; the framing fields still count.
        let r = parse_request(
            b"POST / HTTP/1.1\r\nX: a\r\n  folded\r\nnonsense\r\ncontent-LENGTH:  7 \r\n\r\n",
            false,
            9,
        );
        assert_eq!(r.unwrap().unwrap().0.framing, Framing::Length(7));
        let (r, _) = parse_request("GET /caf\u{e9} HTTP/1.1\r\n\r\n".as_bytes(), false, 99)
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "/caf\u{e9}");
    }

    #[test]
    fn field_names_match_exactly_ignoring_case() {
        for (text, name, want) in [
            (&b"Content-Length: 5"[..], &CONTENT_LENGTH, true),
            (b"content-length:5", &CONTENT_LENGTH, true),
            (b"CONTENT-LENGTH:", &CONTENT_LENGTH, true),
            (b"Content_Length: 5", &CONTENT_LENGTH, false),
            (b"Content-Length : 5", &CONTENT_LENGTH, false),
            (b"Content\rLength: 5", &CONTENT_LENGTH, false),
            (b"Content-Lengt:", &CONTENT_LENGTH, false),
            (b"Content-Type: text/html", &CONTENT_LENGTH, false),
            (b"Transfer-Encoding: chunked", &TRANSFER_ENCODING, true),
            (b"transfer-encodinG:", &TRANSFER_ENCODING, true),
            (b"Transfer-Encodingx: chunked", &TRANSFER_ENCODING, false),
            (b"Transfer\x0dEncoding: chunked", &TRANSFER_ENCODING, false),
            (b"UPGRADE:h2c", &UPGRADE, true),
            (b"Upgrade-Insecure-Requests: 1", &UPGRADE, false),
            (b"Upgrade", &UPGRADE, false),
            (b"Upgr\xc1de: h2c", &UPGRADE, false),
        ] {
            assert_eq!(
                name.matches(text),
                want,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    /// The line-by-line scan with `memchr` that the block scanner replaced, kept as its
    /// specification.
    fn reference_scan(buf: &[u8], pos: usize) -> Result<Option<(Fields, usize)>, ParseError> {
        let mut f = Fields::default();
        let mut count = 0;
        let mut start = pos;
        for lf in memchr::memchr_iter(b'\n', &buf[pos..]) {
            let end = pos + lf;
            let text = strip_cr(&buf[start..end]);
            start = end + 1;
            if text.is_empty() {
                if buf[..start].contains(&0) {
                    return Err(ParseError::InvalidRequest);
                }
                return Ok(Some((f, start)));
            }
            count += 1;
            if count > MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            match text[0] | 0x20 {
                b'c' => f.content_length(text)?,
                b't' => f.transfer_encoding(text),
                b'u' => f.upgrade(text),
                _ => {}
            }
        }
        Ok(None)
    }

    #[test]
    fn block_scan_matches_memchr() {
        let long_with_nul = [&b"X-Big: "[..], &[b'b'; 100], b"\0", &[b'b'; 70], b"\r\n"].concat();
        let pieces: [&[u8]; 19] = [
            &long_with_nul,
            b"Content-Length: 5\r\n",
            b"content-length:7\n",
            b"Content-Length: x\r\n",
            b"Transfer-Encoding: gzip, chunked\r\n",
            b"Upgrade: h2c\r\n",
            b"Host: example.com\r\n",
            b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b"\0",
            b"c",
            b"t:",
            b"U",
            b"Content-Length: 5",
            b"\r\r\n",
            b" folded\r\n",
            b"Cookie: a=b\r\n",
        ];
        let mut seed = 0x2545_f491_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize
        };
        for case in 0..20_000 {
            let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
            if case % 3 == 0 {
                // Move the fields against the block boundaries.
                buf.splice(4..4, std::iter::repeat_n(b'a', next() % 32));
            }
            let pos = buf.len();
            for _ in 0..next() % 12 {
                buf.extend_from_slice(pieces[next() % pieces.len()]);
            }
            if case % 2 == 0 {
                buf.extend_from_slice(b"\r\n");
            }
            let mut lines = Lines::new(&buf);
            assert_eq!(lines.next_lf(), Some(pos - 1));
            let got = Fields::scan(&buf, &mut lines, pos, ParseError::InvalidRequest);
            let want = reference_scan(&buf, pos);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&buf));
        }
    }

    /// `Target::check` as a plain byte loop, which the word-at-a-time version must match.
    fn reference_check(bytes: &[u8], keep_query: bool) -> Option<(usize, bool)> {
        let mut cut = bytes.len();
        let mut ascii = true;
        for (i, &b) in bytes.iter().enumerate() {
            if b <= b' ' || b == 0x7f {
                return None;
            }
            ascii &= b < 0x80;
            if (b == b'#' || (b == b'?' && !keep_query)) && cut == bytes.len() {
                cut = i;
            }
        }
        Some((cut, ascii))
    }

    #[test]
    fn target_check_matches_byte_loop() {
        // Plain path bytes, and every byte the check must look at, at every offset.
        let alphabet: &[u8] = b"/abcXYZ09-._~%=&+\x21\x7e?#? \t\0\x1f\x20\x7f\x80\xc3\xa9\xff";
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize
        };
        for case in 0..50_000 {
            let len = next() % 40;
            let plain = case % 4 != 0;
            let t: Vec<u8> = (0..len)
                .map(|_| {
                    if plain && next() % 16 != 0 {
                        alphabet[next() % 12]
                    } else {
                        alphabet[next() % alphabet.len()]
                    }
                })
                .collect();
            for keep_query in [false, true] {
                let got = Target::check(&t, keep_query).map(|t| (t.cut, t.ascii));
                assert_eq!(got, reference_check(&t, keep_query), "{t:?} {keep_query}");
            }
        }
    }

    #[test]
    fn too_many_headers() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&head, false, 9).unwrap_err(),
            ParseError::TooManyHeaders
        );
    }
}

//! Request and response heads: `httparse` does the parsing; this module picks out what
//! pairing and body framing need, and nothing else (no header is kept).

use std::mem::MaybeUninit;

use httpscope_model::telemetry::ParseError;
use httpscope_model::{HttpVersion, Method};

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
    pub(crate) path: String,
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

fn parser_config() -> httparse::ParserConfig {
    // An observer must accept whatever the peers accepted, so be as lenient as httparse
    // allows; what matters is the request line, the status and the framing headers.
    let mut cfg = httparse::ParserConfig::default();
    cfg.allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .ignore_invalid_headers_in_responses(true)
        .ignore_invalid_headers_in_requests(true);
    cfg
}

fn version(minor: Option<u8>) -> HttpVersion {
    if minor == Some(0) {
        HttpVersion::Http10
    } else {
        HttpVersion::Http11
    }
}

fn map_error(e: httparse::Error, invalid: ParseError) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        _ => invalid,
    }
}

/// Parses a request head at the start of `buf`: its fields and length, or `None` if `buf`
/// holds only part of it.
pub(crate) fn parse_request(
    buf: &[u8],
    keep_query: bool,
    max_path: usize,
) -> Result<Option<(RequestHead, usize)>, ParseError> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match parser_config().parse_request_with_uninit_headers(&mut req, buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(map_error(e, ParseError::InvalidRequest)),
    };
    let (Some(method), Some(uri)) = (req.method, req.path) else {
        return Err(ParseError::InvalidRequest);
    };
    let fields = Fields::scan(req.headers)?;
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
        method: Method::from_bytes(method.as_bytes()),
        path: request_path(uri, keep_query, max_path),
        version: version(req.version),
        framing,
        upgrade_h2c: fields.upgrade_h2c,
    };
    Ok(Some((head, len)))
}

/// Parses a response head at the start of `buf`: its fields and length, or `None` if `buf`
/// holds only part of it.
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, ParseError> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match parser_config().parse_response_with_uninit_headers(&mut resp, buf, &mut headers)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(map_error(e, ParseError::InvalidResponse)),
    };
    let status = resp.code.ok_or(ParseError::InvalidResponse)?;
    if !(100..=599).contains(&status) {
        return Err(ParseError::InvalidResponse);
    }
    let fields = Fields::scan(resp.headers)?;
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
        version: version(resp.version),
        framing,
        upgrade_h2c: fields.upgrade_h2c,
    };
    Ok(Some((head, len)))
}

/// The framing-relevant header fields of one head.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    upgrade_h2c: bool,
}

impl Fields {
    fn scan(headers: &[httparse::Header<'_>]) -> Result<Fields, ParseError> {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name.as_bytes();
            match name.len() {
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    // Several equal values (in one field or repeated) are allowed; different
                    // ones make the framing unknowable (RFC 9112 §6.3).
                    for part in h.value.split(|&b| b == b',') {
                        let n =
                            parse_decimal(trim(part)).ok_or(ParseError::InvalidContentLength)?;
                        match f.content_length {
                            Some(prev) if prev != n => {
                                return Err(ParseError::InvalidContentLength)
                            }
                            _ => f.content_length = Some(n),
                        }
                    }
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    f.transfer_encoding = true;
                    let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
                    f.chunked = trim(last).eq_ignore_ascii_case(b"chunked");
                }
                7 if name.eq_ignore_ascii_case(b"upgrade") => {
                    f.upgrade_h2c |= h
                        .value
                        .split(|&b| b == b',')
                        .any(|t| trim(t).eq_ignore_ascii_case(b"h2c"));
                }
                _ => {}
            }
        }
        Ok(f)
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
pub(crate) fn request_path(uri: &str, keep_query: bool, max: usize) -> String {
    let mut path = uri;
    if let Some(rest) = strip_scheme(path) {
        // absolute-form: the path starts at the first '/' after the authority.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        path = &rest[end..];
        if !path.starts_with('/') {
            // "http://host?q" has an empty path, which means "/".
            return if keep_query && !path.is_empty() {
                format!("/{path}")
            } else {
                "/".into()
            };
        }
    }
    if !keep_query {
        if let Some(end) = path.find(['?', '#']) {
            path = &path[..end];
        }
    } else if let Some(end) = path.find('#') {
        path = &path[..end];
    }
    if path.len() > max {
        let mut cut = max;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path = &path[..cut];
    }
    path.to_owned()
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
            ("example.com:443", false, "example.com:443"),
            ("*", false, "*"),
            ("/", false, "/"),
        ];
        for (uri, keep, want) in cases {
            assert_eq!(request_path(uri, keep, 2048), want, "{uri}");
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

//! Byte scanners that resume across chunks: where a head ends, and where a message starts.

use httpscope_model::Method;

/// Finds the end of a message head (the empty line) in a stream fed in pieces.
///
/// The state carries over between calls, so each byte is looked at once however the head is
/// split. Accepts CRLF and bare LF line ends, as deployed peers send both.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HeadEnd {
    /// 0: inside a line; 1: just after LF (at a line start); 2: after LF CR.
    state: u8,
}

impl HeadEnd {
    /// Starts looking for a new head.
    pub(crate) fn reset(&mut self) {
        self.state = 0;
    }

    /// Scans `data`; returns the index just past the head's final line end, if it is in `data`.
    #[inline]
    pub(crate) fn find(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0;
        loop {
            match self.state {
                1 => match data.get(i)? {
                    b'\n' => return Some(i + 1),
                    b'\r' => {
                        self.state = 2;
                        i += 1;
                    }
                    _ => self.state = 0,
                },
                2 => match data.get(i)? {
                    b'\n' => return Some(i + 1),
                    _ => self.state = 0,
                },
                _ => {
                    let at = memchr::memchr(b'\n', data.get(i..)?)?;
                    i += at + 1;
                    self.state = 1;
                }
            }
        }
    }
}

/// What kind of message may start at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Response,
}

/// The answer of [`message_start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// A message of this kind starts here.
    Yes(Kind),
    /// Nothing that `want` accepts starts here.
    No,
    /// The bytes so far are a prefix of a start; more are needed to decide.
    More,
}

/// The most bytes [`message_start`] looks at.
pub(crate) const START_LEN: usize = 12;

/// Whether `bytes` begin a request line (`METHOD SP x`, a known method) or a status line
/// (`HTTP/1.d SP d`), restricted to `want` when it is given.
///
/// Used to recognise HTTP at a connection's start and to resynchronise after lost bytes; the
/// known-method list keeps arbitrary data from looking like a request.
pub(crate) fn message_start(bytes: &[u8], want: Option<Kind>) -> Start {
    let mut more = false;
    if want != Some(Kind::Response) {
        match request_start(bytes) {
            Start::Yes(k) => return Start::Yes(k),
            Start::More => more = true,
            Start::No => {}
        }
    }
    if want != Some(Kind::Request) {
        match response_start(bytes) {
            Start::Yes(k) => return Start::Yes(k),
            Start::More => more = true,
            Start::No => {}
        }
    }
    if more {
        Start::More
    } else {
        Start::No
    }
}

fn request_start(bytes: &[u8]) -> Start {
    let limit = bytes.len().min(Method::MAX_LEN + 1);
    let Some(sp) = bytes[..limit].iter().position(|&b| b == b' ') else {
        // No space yet: still possible only while every byte so far is an upper-case letter
        // and some method starts with them.
        let could = bytes.len() <= Method::MAX_LEN
            && Method::ALL
                .iter()
                .any(|m| m.as_str().as_bytes().starts_with(bytes));
        return if could { Start::More } else { Start::No };
    };
    if Method::from_bytes(&bytes[..sp]).is_none() {
        return Start::No;
    }
    match bytes.get(sp + 1) {
        None => Start::More,
        Some(b' ' | b'\r' | b'\n' | b'\t') => Start::No,
        Some(_) => Start::Yes(Kind::Request),
    }
}

fn response_start(bytes: &[u8]) -> Start {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = bytes.len().min(PREFIX.len());
    if bytes[..n] != PREFIX[..n] {
        return Start::No;
    }
    let tail = &bytes[n..];
    // After the prefix: a minor version digit, a space, and a status digit.
    let checks: [fn(u8) -> bool; 3] = [
        |b| b == b'0' || b == b'1',
        |b| b == b' ',
        |b| (b'1'..=b'5').contains(&b),
    ];
    for (i, check) in checks.iter().enumerate() {
        match tail.get(i) {
            None => return Start::More,
            Some(&b) if !check(b) => return Start::No,
            Some(_) => {}
        }
    }
    if n < PREFIX.len() {
        Start::More
    } else {
        Start::Yes(Kind::Response)
    }
}

/// Whether `bytes` begin the HTTP/2 connection preface (RFC 9113 §3.4); `None` if undecided.
pub(crate) fn is_h2_preface(bytes: &[u8]) -> Option<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        Some(false)
    } else if n == PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_split(data: &[u8], at: usize) -> Option<usize> {
        let mut h = HeadEnd::default();
        match h.find(&data[..at]) {
            Some(e) => Some(e),
            None => h.find(&data[at..]).map(|e| e + at),
        }
    }

    #[test]
    fn head_end_any_split() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY"[..],
            b"GET / HTTP/1.1\nHost: a\n\nBODY",
        ] {
            let want = head.len() - 4;
            for at in 0..=head.len() {
                assert_eq!(find_split(head, at), Some(want), "split at {at}");
            }
        }
        let mut h = HeadEnd::default();
        assert_eq!(h.find(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(h.find(b"\r"), None);
        assert_eq!(h.find(b"\nX"), Some(1));
    }

    #[test]
    fn lf_cr_then_text_is_not_an_end() {
        let mut h = HeadEnd::default();
        assert_eq!(h.find(b"A\n\rB\r\n\r\n"), Some(8));
    }

    #[test]
    fn starts() {
        use Start::*;
        assert_eq!(message_start(b"GET / HTTP/1.1", None), Yes(Kind::Request));
        assert_eq!(message_start(b"GET / HTTP/1.1", Some(Kind::Response)), No);
        assert_eq!(message_start(b"HTTP/1.1 200 OK", None), Yes(Kind::Response));
        assert_eq!(
            message_start(b"HTTP/1.0 404", Some(Kind::Response)),
            Yes(Kind::Response)
        );
        assert_eq!(message_start(b"HTTP/1.1 600", None), No);
        assert_eq!(message_start(b"HTTP/2 200", None), No);
        assert_eq!(message_start(b"HTT", None), More);
        assert_eq!(message_start(b"", None), More);
        assert_eq!(message_start(b"PROP", None), More);
        assert_eq!(message_start(b"PROPFIND", None), More);
        assert_eq!(message_start(b"PROPFIND ", None), More);
        assert_eq!(message_start(b"PROPFIND /x", None), Yes(Kind::Request));
        assert_eq!(message_start(b"get / HTTP/1.1", None), No);
        assert_eq!(message_start(b"GETTER / x", None), No);
        assert_eq!(message_start(b"GET  /", None), No);
        assert_eq!(message_start(b"\x16\x03\x01\x02\x00", None), No);
        assert_eq!(message_start(b"SSH-2.0-OpenSSH", None), No);
    }

    #[test]
    fn h2_preface() {
        assert_eq!(
            is_h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Some(true)
        );
        assert_eq!(is_h2_preface(b"PRI * HT"), None);
        assert_eq!(is_h2_preface(b"PRIX"), Some(false));
    }
}

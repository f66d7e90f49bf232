//! Counting through a chunked body (RFC 9112 §7.1) without copying it.
//!
//! A chunk-size parser that needs a whole size line in one slice (like
//! `httparse::parse_chunk_size`) would force buffering a body split at any byte across
//! captured chunks. This decoder instead keeps a
//! few bytes of state and resumes anywhere: size line, extensions, data (skipped in bulk),
//! the CRLF after each chunk, and trailer fields.

/// Where the decoder is within the chunked framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size { digits: u8 },
    /// Skipping chunk extensions up to the end of the size line.
    Extension,
    /// Saw CR at the end of the size line; expecting LF.
    SizeLf,
    /// Skipping `remaining` data bytes.
    Data,
    /// Expecting the CR (or bare LF) after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Saw CR of the final empty line; expecting LF.
    EndLf,
}

/// The outcome of feeding bytes to a [`Chunked`] decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// All bytes belonged to the body; it continues.
    More,
    /// The body ended after this many bytes.
    Done(usize),
    /// The framing is broken at this offset.
    Invalid(usize),
}

/// A resumable chunked-body skipper.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunked {
    state: State,
    remaining: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { digits: 0 },
            remaining: 0,
        }
    }
}

impl Chunked {
    /// Whether the decoder is inside chunk data with at least `n` bytes left, so that `n`
    /// lost bytes can be skipped without losing the framing.
    pub(crate) fn can_skip(&self, n: u64) -> bool {
        self.state == State::Data && self.remaining >= n
    }

    /// Skips `n` lost data bytes; call only when [`Chunked::can_skip`] said yes.
    pub(crate) fn skip(&mut self, n: u64) {
        self.remaining -= n;
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
    }

    /// Consumes `data`.
    pub(crate) fn advance(&mut self, data: &[u8]) -> Progress {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Data => {
                    let take =
                        (data.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                // Jump to the CR or LF; it is handled as the size line's end below.
                State::Extension => match memchr::memchr2(b'\r', b'\n', &data[i..]) {
                    None => return Progress::More,
                    Some(at) => i += at,
                },
                State::TrailerLine => match memchr::memchr(b'\n', &data[i..]) {
                    None => return Progress::More,
                    Some(at) => {
                        i += at + 1;
                        self.state = State::TrailerStart;
                        continue;
                    }
                },
                _ => {}
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Size { digits }, _) if b.is_ascii_hexdigit() => {
                    if digits >= 16 {
                        return Progress::Invalid(i);
                    }
                    self.remaining = (self.remaining << 4) | u64::from(hex_value(b));
                    State::Size { digits: digits + 1 }
                }
                (State::Size { digits: 0 }, _) => return Progress::Invalid(i),
                (State::Size { .. } | State::Extension, b'\r') => State::SizeLf,
                (State::Size { .. } | State::Extension, b'\n') | (State::SizeLf, b'\n') => {
                    self.after_size_line()
                }
                (State::Size { .. }, b';' | b' ' | b'\t') => State::Extension,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataCr, b'\n') | (State::DataLf, b'\n') => State::Size { digits: 0 },
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart, b'\n') | (State::EndLf, b'\n') => {
                    *self = Chunked::default();
                    return Progress::Done(i);
                }
                (State::TrailerStart, _) => State::TrailerLine,
                _ => return Progress::Invalid(i),
            };
        }
        Progress::More
    }

    fn after_size_line(&mut self) -> State {
        if self.remaining == 0 {
            State::TrailerStart
        } else {
            State::Data
        }
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Progress, usize) {
        let mut d = Chunked::default();
        let mut consumed = 0;
        for c in chunks {
            match d.advance(c) {
                Progress::More => consumed += c.len(),
                other => return (other, consumed),
            }
        }
        (Progress::More, consumed)
    }

    const BODY: &[u8] = b"4;name=\"v\"\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn whole_body_with_extensions_and_trailers() {
        assert_eq!(run(&[BODY]).0, Progress::Done(BODY.len() - 4));
    }

    #[test]
    fn split_at_every_byte() {
        for at in 0..BODY.len() {
            let (first, second) = BODY.split_at(at);
            let (p, consumed) = run(&[first, second]);
            match p {
                Progress::Done(n) => assert_eq!(consumed + n, BODY.len() - 4, "split {at}"),
                other => panic!("split {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut d = Chunked::default();
        for (i, b) in BODY.iter().enumerate() {
            match d.advance(std::slice::from_ref(b)) {
                Progress::More => {}
                Progress::Done(1) => {
                    assert_eq!(i + 1, BODY.len() - 4);
                    return;
                }
                other => panic!("byte {i}: {other:?}"),
            }
        }
        panic!("never ended");
    }

    #[test]
    fn bare_lf_and_no_trailers() {
        assert_eq!(run(&[b"3\nabc\n0\n\n"]).0, Progress::Done(9));
        assert_eq!(run(&[b"0\r\n\r\n"]).0, Progress::Done(5));
    }

    #[test]
    fn broken_framing_is_reported() {
        assert!(matches!(run(&[b"zz\r\n"]).0, Progress::Invalid(_)));
        assert!(matches!(run(&[b"3\r\nabcX"]).0, Progress::Invalid(_)));
        assert!(matches!(
            run(&[b"11111111111111111\r\n"]).0,
            Progress::Invalid(_)
        ));
        assert!(matches!(run(&[b"\r\n"]).0, Progress::Invalid(_)));
    }

    #[test]
    fn large_sizes_skip_in_bulk() {
        let mut d = Chunked::default();
        assert_eq!(d.advance(b"100000\r\n"), Progress::More);
        assert!(d.can_skip(0x100000));
        d.skip(0x80000);
        let data = vec![b'x'; 0x80000];
        assert_eq!(d.advance(&data), Progress::More);
        assert_eq!(d.advance(b"\r\n0\r\n\r\n"), Progress::Done(7));
    }
}

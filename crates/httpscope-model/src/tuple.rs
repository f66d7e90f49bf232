use std::fmt;
use std::net::SocketAddr;

/// The two ends of one TCP connection, IPv4 or IPv6.
///
/// `src` and `dst` are as the source first saw them: the sender and receiver of the first
/// segment (packet capture), or the local and remote socket address (eBPF, TLS). Which end is
/// the HTTP client is decided by the parser, from who sends requests, never from port numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnTuple {
    /// The first sender (packet) or the local socket (kernel sources).
    pub src: SocketAddr,
    /// The first receiver (packet) or the remote socket (kernel sources).
    pub dst: SocketAddr,
}

impl ConnTuple {
    /// A tuple from its two ends.
    pub const fn new(src: SocketAddr, dst: SocketAddr) -> Self {
        ConnTuple { src, dst }
    }

    /// The same connection seen from the other end.
    pub const fn reversed(self) -> Self {
        ConnTuple {
            src: self.dst,
            dst: self.src,
        }
    }

    /// The tuple with its ends in a fixed order, so both directions of a connection give the
    /// same key. Returns the ordered tuple and whether it was swapped.
    pub fn canonical(self) -> (Self, bool) {
        if self.src <= self.dst {
            (self, false)
        } else {
            (self.reversed(), true)
        }
    }
}

impl Default for ConnTuple {
    fn default() -> Self {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        ConnTuple {
            src: unspecified,
            dst: unspecified,
        }
    }
}

impl fmt::Debug for ConnTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.src, self.dst)
    }
}

impl fmt::Display for ConnTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_is_direction_independent() {
        let a: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "[::1]:80".parse().unwrap();
        let t = ConnTuple::new(a, b);
        assert_eq!(t.canonical().0, t.reversed().canonical().0);
        assert_ne!(t.canonical().1, t.reversed().canonical().1);
        assert_eq!(
            format!("{}", ConnTuple::new(b, a)),
            "[::1]:80 -> 10.0.0.1:40000"
        );
    }
}

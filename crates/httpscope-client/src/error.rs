//! The one error type of the client.

use std::fmt;

/// Why a request (or one step of it) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URI is not absolute `http://` or `https://` with a host.
    #[error("invalid uri: {0}")]
    InvalidUri(&'static str),
    /// Name resolution failed or found no address.
    #[error("dns resolution failed: {0}")]
    Dns(#[source] std::io::Error),
    /// No address accepted a TCP connection (the error of the last one tried).
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// `connect_timeout` passed while connecting.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The TLS handshake failed.
    #[error("tls handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The HTTP exchange failed (I/O error, malformed response, connection closed early).
    #[error("http exchange failed: {0}")]
    Http(#[source] HttpError),
    /// The request's deadline passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The request future or the response body was dropped before the end.
    #[error("cancelled")]
    Cancelled,
    /// The client was dropped while the request waited for a connection.
    #[error("pool closed")]
    PoolClosed,
}

impl Error {
    /// A copy of a dial failure (DNS, TCP connect, TLS), for the requests that waited behind
    /// that dial; `None` for other errors. The copy keeps the kind and message of an I/O
    /// error, not its source chain.
    pub(crate) fn dial_failure_copy(&self) -> Option<Error> {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        Some(match self {
            Error::Dns(e) => Error::Dns(io(e)),
            Error::Connect(e) => Error::Connect(io(e)),
            Error::ConnectTimeout => Error::ConnectTimeout,
            Error::Tls(e) => Error::Tls(io(e)),
            _ => return None,
        })
    }

    /// A short lowercase name of the kind, for metric attributes (`error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidUri(_) => "invalid_uri",
            Error::Dns(_) => "dns",
            Error::Connect(_) => "connect",
            Error::ConnectTimeout => "connect_timeout",
            Error::Tls(_) => "tls",
            Error::Http(_) => "http",
            Error::DeadlineExceeded => "deadline_exceeded",
            Error::Cancelled => "cancelled",
            Error::PoolClosed => "pool_closed",
        }
    }
}

/// An HTTP-level failure, keeping hyper's error out of the public API.
pub struct HttpError(pub(crate) hyper::Error);

impl HttpError {
    /// The connection closed before the response was complete.
    pub fn is_incomplete_message(&self) -> bool {
        self.0.is_incomplete_message()
    }
}

impl fmt::Debug for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

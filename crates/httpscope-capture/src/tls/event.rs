//! What `bpf/tls.bpf.c` adds to the socket path's event: the TLS library in the event's first
//! padding byte, and its own per-CPU counters. Events are otherwise decoded by
//! [`crate::ebpf::event::Event`], the same validated view as the socket path's.

use std::mem::offset_of;

use crate::ebpf::event::{RawEvent, EVENT_SIZE};

/// The TLS library that produced an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Library {
    /// OpenSSL's libssl (`SSL_read`, `SSL_write` and their `_ex` variants).
    OpenSsl,
    /// GnuTLS (`gnutls_record_recv`, `gnutls_record_send`).
    GnuTls,
}

impl Library {
    /// Both libraries.
    pub const ALL: [Library; 2] = [Library::OpenSsl, Library::GnuTls];

    /// The `tls_library` tag value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Library::OpenSsl => "openssl",
            Library::GnuTls => "gnutls",
        }
    }

    /// `HS_TLS_LIB_*` in `bpf/tls.bpf.c`.
    pub const fn code(self) -> u8 {
        match self {
            Library::OpenSsl => 1,
            Library::GnuTls => 2,
        }
    }

    fn from_code(code: u8) -> Option<Library> {
        match code {
            1 => Some(Library::OpenSsl),
            2 => Some(Library::GnuTls),
            _ => None,
        }
    }

    /// Which library a file is, from its name: `libssl.so` or `libssl.so.<version>`, and the
    /// same for `libgnutls.so`. Not NSS's `libssl3.so`, not `libgnutls-openssl.so`.
    pub fn from_file_name(name: &[u8]) -> Option<Library> {
        let versioned = |stem: &[u8]| {
            name.strip_prefix(stem)
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'.')
        };
        if versioned(b"libssl.so") {
            Some(Library::OpenSsl)
        } else if versioned(b"libgnutls.so") {
            Some(Library::GnuTls)
        } else {
            None
        }
    }

    /// The functions hooked, each with its entry program (every one shares the return
    /// program `hs_ssl_ret`).
    pub const fn symbols(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Library::OpenSsl => &[
                ("SSL_write", "hs_ssl_write"),
                ("SSL_read", "hs_ssl_read"),
                ("SSL_write_ex", "hs_ssl_write_ex"),
                ("SSL_read_ex", "hs_ssl_read_ex"),
            ],
            Library::GnuTls => &[
                ("gnutls_record_send", "hs_gnutls_send"),
                ("gnutls_record_recv", "hs_gnutls_recv"),
            ],
        }
    }
}

impl std::fmt::Display for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Offset of `http_event._pad[0]`, where the TLS programs put the library.
const LIBRARY: usize = offset_of!(RawEvent, pad);
const _: () = assert!(LIBRARY == 42 && LIBRARY < EVENT_SIZE);

/// The library of a TLS event record (already validated by `Event::new_checked`, so at
/// least `EVENT_SIZE` long); `None` for a record too short or an unknown code.
pub fn library(record: &[u8]) -> Option<Library> {
    record.get(LIBRARY).copied().and_then(Library::from_code)
}

/// `NO_SOCKET_KEY`: the stream key bit of events whose TLS object has no known socket.
pub const NO_SOCKET_KEY: u64 = 1 << 63;

/// The C `struct tls_stats` (one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsRawStats {
    /// Events written to the ring buffer.
    pub events: u64,
    /// Events the ring buffer had no room for.
    pub ringbuf_lost: u64,
    /// Events of a TLS object with no known socket.
    pub no_socket: u64,
    /// User memory reads that failed.
    pub read_faults: u64,
    /// TLS calls not followed because no per-thread storage could be allocated.
    pub calls_lost: u64,
    /// Exec notices lost (ring full).
    pub execs_lost: u64,
    /// Reserved.
    pub reserved: [u64; 2],
}

const _: () = assert!(std::mem::size_of::<TlsRawStats>() == 64);

// SAFETY: plain integers, no padding, every bit pattern valid.
unsafe impl aya::Pod for TlsRawStats {}

impl TlsRawStats {
    /// Adds `other` field by field.
    pub fn add(&mut self, other: &TlsRawStats) {
        self.events += other.events;
        self.ringbuf_lost += other.ringbuf_lost;
        self.no_socket += other.no_socket;
        self.read_faults += other.read_faults;
        self.calls_lost += other.calls_lost;
        self.execs_lost += other.execs_lost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_file_names() {
        for (name, lib) in [
            (&b"libssl.so.3"[..], Some(Library::OpenSsl)),
            (b"libssl.so.1.1", Some(Library::OpenSsl)),
            (b"libssl.so", Some(Library::OpenSsl)),
            (b"libgnutls.so.30", Some(Library::GnuTls)),
            (b"libssl3.so", None),
            (b"libssl.something", None),
            (b"libgnutls-openssl.so.27", None),
            (b"libgnutls-dane.so.0", None),
            (b"libcrypto.so.3", None),
            (b"", None),
        ] {
            assert_eq!(Library::from_file_name(name), lib, "{name:?}");
        }
    }

    #[test]
    fn library_byte() {
        let mut rec = vec![0u8; EVENT_SIZE];
        assert_eq!(library(&rec), None);
        rec[42] = 1;
        assert_eq!(library(&rec), Some(Library::OpenSsl));
        rec[42] = 2;
        assert_eq!(library(&rec), Some(Library::GnuTls));
        rec[42] = 9;
        assert_eq!(library(&rec), None);
        assert_eq!(library(&rec[..10]), None);
        for l in Library::ALL {
            assert_eq!(Library::from_code(l.code()), Some(l));
        }
    }
}

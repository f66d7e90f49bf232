//! Zero-copy views over the user data of Microsoft-Windows-HttpService events.
//!
//! The pattern is smoltcp's `wire`: each event type is a view `Foo<T: AsRef<[u8]>>` whose
//! `new_checked` validates every length and offset once (fixed fields, the NUL terminators of
//! variable strings, socket address lengths and families), so that no accessor can panic or
//! read out of bounds afterwards. [`decode`] picks the view from the event id and version.
//!
//! # Where the layouts come from
//! Every layout below is the provider's instrumentation manifest (the `<template>`s that
//! `wevtutil gp Microsoft-Windows-HttpService /ge /gm` prints), as reproduced publicly in:
//! - **[M]** repnz/etw-providers-docs, `Manifests-Win10-18990/Microsoft-Windows-HttpService.xml`
//!   (the manifest XML itself: templates, field order and `inType`s);
//! - **[J]** jdu2600/Windows10EtwEvents, `manifest/Microsoft-Windows-HttpService.tsv`
//!   (an independent dump of the same manifest, one line per event id and version);
//! - **[D]** DataDog/datadog-agent, `pkg/network/protocols/http/etw_http_service.go` (byte
//!   offsets as an ETW consumer reads them on real systems, including the sockaddr layouts and
//!   the 16-bit `RemoteAddrLength` of event 1 seen on Windows Server 2022) and
//!   `etw_http_service_defs.go` (event ids, `HTTP_VERB` table);
//! - **[W]** Microsoft's docs: `HTTP_VERB` (http.h), `SOCKADDR_IN` / `SOCKADDR_IN6_LH`
//!   (ws2def.h / ws2ipdef.h; `AF_INET` = 2, `AF_INET6` = 23 on Windows), and the HTTP.sys
//!   team's "Event Tracing in HTTP.sys" posts (event XML, a typical request's event sequence,
//!   `HttpVerb` 4 = GET).
//!
//! Each view names the sources it was checked against. `win:Pointer` fields are 8 bytes: the
//! layouts are those of 64-bit Windows, the only kind that runs IIS today ([D] reads them so).
//! All integers are little-endian except socket address ports, which are in network order.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use httpscope_model::Method;

/// The provider GUID of Microsoft-Windows-HttpService.
pub const PROVIDER_GUID: &str = "dd5ef90a-6398-47a4-ad34-4dcecdef795f";

/// The keywords httpscope enables: REQUEST 0x2 | RESPONSE 0x4 | CONNECTION 0x10 | CACHE 0x20 |
/// REQUEST_QUEUE 0x100 ([M] `<keywords>`).
pub const KEYWORDS: u64 = 0x136;

/// Event ids of the events httpscope decodes ([M] `<events>`, [D] `etw_http_service_defs.go`).
pub mod event_id {
    /// HTTPRequestTraceTaskRecvReq.
    pub const RECV_REQ: u16 = 1;
    /// HTTPRequestTraceTaskParse.
    pub const PARSE: u16 = 2;
    /// HTTPRequestTraceTaskDeliver.
    pub const DELIVER: u16 = 3;
    /// HTTPRequestTraceTaskRecvResp.
    pub const RECV_RESP: u16 = 4;
    /// HTTPRequestTraceTaskFastResp.
    pub const FAST_RESP: u16 = 8;
    /// HTTPRequestTraceTaskSendComplete.
    pub const SEND_COMPLETE: u16 = 10;
    /// HTTPRequestTraceTaskCachedAndSend.
    pub const CACHED_AND_SEND: u16 = 11;
    /// HTTPRequestTraceTaskFastSend.
    pub const FAST_SEND: u16 = 12;
    /// HTTPRequestTraceTaskZeroSend.
    pub const ZERO_SEND: u16 = 13;
    /// HTTPRequestTraceTaskLastSndError.
    pub const LAST_SND_ERROR: u16 = 14;
    /// HTTPRequestTraceTaskSrvdFrmCache.
    pub const SRVD_FRM_CACHE: u16 = 16;
    /// HTTPRequestTraceTaskCachedNotModified.
    pub const CACHED_NOT_MODIFIED: u16 = 17;
    /// HTTPConnectionTraceTaskConnConnect.
    pub const CONN_CONNECT: u16 = 21;
    /// HTTPConnectionTraceTaskConnClose.
    pub const CONN_CLOSE: u16 = 23;
    /// HTTPConnectionTraceTaskConnCleanup.
    pub const CONN_CLEANUP: u16 = 24;
    /// HTTPCacheTraceTaskAddedCacheEntry.
    pub const ADDED_CACHE_ENTRY: u16 = 25;
    /// HTTPCacheTraceTaskFlushedCache.
    pub const FLUSHED_CACHE: u16 = 27;
    /// HTTPSSLTraceTaskSslConnEvent.
    pub const SSL_CONN_EVENT: u16 = 34;
    /// HTTPRequestTraceTaskRequestRejected.
    pub const REQUEST_REJECTED: u16 = 64;
}

/// Windows' `AF_INET` ([W] ws2def.h).
pub const AF_INET: u16 = 2;
/// Windows' `AF_INET6` (23, not Linux's 10; [W] ws2def.h, [D]).
pub const AF_INET6: u16 = 23;
/// `sizeof(SOCKADDR_IN)`.
pub const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(SOCKADDR_IN6)`.
pub const SOCKADDR_IN6_LEN: usize = 28;

/// Why user data could not be decoded. Counted by the correlator, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The user data is shorter than the template requires.
    Truncated,
    /// A socket address length other than 16 (`SOCKADDR_IN`) or 28 (`SOCKADDR_IN6`).
    BadAddressLength,
    /// A socket address family that is not `AF_INET` / `AF_INET6` or does not match its length.
    BadAddressFamily,
    /// A string without its NUL terminator inside the user data.
    Unterminated,
    /// A version of the event whose layout httpscope does not know.
    UnknownVersion,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Truncated => "user data truncated",
            DecodeError::BadAddressLength => "socket address length is not 16 or 28",
            DecodeError::BadAddressFamily => "socket address family is not AF_INET or AF_INET6",
            DecodeError::Unterminated => "string without terminator",
            DecodeError::UnknownVersion => "unknown event version",
        })
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

#[inline]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks that `len` bytes start at `at` inside `b`.
#[inline]
fn need(b: &[u8], at: usize, len: usize) -> Result<()> {
    match at.checked_add(len) {
        Some(end) if end <= b.len() => Ok(()),
        _ => Err(DecodeError::Truncated),
    }
}

/// A NUL-terminated UTF-16LE string (`win:UnicodeString`) starting at `at`: the byte range of
/// its code units (without the terminator) and the offset after the terminator.
fn utf16z(b: &[u8], at: usize) -> Result<(usize, usize, usize)> {
    if at > b.len() {
        return Err(DecodeError::Truncated);
    }
    let mut i = at;
    while i + 1 < b.len() {
        if b[i] == 0 && b[i + 1] == 0 {
            return Ok((at, i, i + 2));
        }
        i += 2;
    }
    Err(DecodeError::Unterminated)
}

/// A NUL-terminated 8-bit string (`win:AnsiString`) at `at`: start, end, next offset.
fn ansiz(b: &[u8], at: usize) -> Result<(usize, usize, usize)> {
    let rest = b.get(at..).ok_or(DecodeError::Truncated)?;
    match memchr::memchr(0, rest) {
        Some(n) => Ok((at, at + n, at + n + 1)),
        None => Err(DecodeError::Unterminated),
    }
}

/// Checks a `SOCKADDR_IN` / `SOCKADDR_IN6` of `len` bytes at `at` (length and family agree).
fn check_sockaddr(b: &[u8], at: usize, len: usize) -> Result<()> {
    if len != SOCKADDR_IN_LEN && len != SOCKADDR_IN6_LEN {
        return Err(DecodeError::BadAddressLength);
    }
    need(b, at, len)?;
    let family = u16_at(b, at);
    match (family, len) {
        (AF_INET, SOCKADDR_IN_LEN) | (AF_INET6, SOCKADDR_IN6_LEN) => Ok(()),
        _ => Err(DecodeError::BadAddressFamily),
    }
}

/// Reads a socket address that [`check_sockaddr`] accepted.
fn sockaddr_at(b: &[u8], at: usize) -> SocketAddr {
    // SOCKADDR_IN: family u16, port u16 (network order), addr [4], zero [8].
    // SOCKADDR_IN6: family u16, port u16 (network order), flowinfo u32, addr [16], scope u32.
    let port = u16::from_be_bytes([b[at + 2], b[at + 3]]);
    if u16_at(b, at) == AF_INET {
        let ip = Ipv4Addr::new(b[at + 4], b[at + 5], b[at + 6], b[at + 7]);
        SocketAddr::V4(SocketAddrV4::new(ip, port))
    } else {
        let flow = u32::from_be_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]);
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[at + 8..at + 24]);
        let scope = u32_at(b, at + 24);
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, flow, scope))
    }
}

/// Decodes UTF-16LE code units into `out` (unpaired surrogates become U+FFFD).
pub fn utf16_to_string(units: &[u8], out: &mut String) {
    let iter = units
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    out.extend(char::decode_utf16(iter).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)));
}

/// The path of a URL as HTTP.sys reports it (`http://host:80/a/b?q=1` -> `/a/b`): without
/// scheme and authority, query string (unless `keep_query`) or fragment; `/` when empty.
pub fn url_path(url: &str, keep_query: bool) -> &str {
    let lower_starts = |p: &str| {
        url.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    };
    let rest = if lower_starts("http://") || lower_starts("https://") {
        let after = &url[url.find("//").map_or(0, |i| i + 2)..];
        match after.find(['/', '?', '#']) {
            Some(i) if after.as_bytes()[i] == b'/' => &after[i..],
            _ => "",
        }
    } else {
        url
    };
    let cut = if keep_query {
        rest.find('#')
    } else {
        rest.find(['?', '#'])
    };
    let path = &rest[..cut.unwrap_or(rest.len())];
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Maps an `HTTP_VERB` value ([W] http.h; [D] `verb2method`, [W] blog: 4 = GET) to a method.
/// `Unparsed`, `Unknown`, `Invalid`, `TRACK` and `Maximum` map to `None`.
pub fn http_verb(v: u32) -> Option<Method> {
    Some(match v {
        3 => Method::Options,
        4 => Method::Get,
        5 => Method::Head,
        6 => Method::Post,
        7 => Method::Put,
        8 => Method::Delete,
        9 => Method::Trace,
        10 => Method::Connect,
        // 11 is TRACK, which httpscope does not report as a method.
        12 => Method::Move,
        13 => Method::Copy,
        14 => Method::Propfind,
        15 => Method::Proppatch,
        16 => Method::Mkcol,
        17 => Method::Lock,
        18 => Method::Unlock,
        19 => Method::Search,
        _ => return None,
    })
}

/// Event 21 ConnConnect: `Pointer ConnectionObj, UInt32 LocalAddrLength, Binary LocalAddr,
/// UInt32 RemoteAddrLength, Binary RemoteAddr` ([M], [J]; offsets 0/8/12/28|40 and the
/// `SOCKADDR_IN`/`SOCKADDR_IN6` contents in [D]).
#[derive(Debug, Clone, Copy)]
pub struct ConnConnect<T: AsRef<[u8]>> {
    buffer: T,
    remote_at: usize,
}

impl<T: AsRef<[u8]>> ConnConnect<T> {
    /// Validates the layout.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(b, 0, 12)?;
        let local_len = u32_at(b, 8) as usize;
        check_sockaddr(b, 12, local_len)?;
        let rl_at = 12 + local_len;
        need(b, rl_at, 4)?;
        let remote_len = u32_at(b, rl_at) as usize;
        check_sockaddr(b, rl_at + 4, remote_len)?;
        Ok(ConnConnect {
            buffer,
            remote_at: rl_at + 4,
        })
    }
    /// The kernel's connection object pointer.
    pub fn connection_obj(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 0)
    }
    /// The local (server) address.
    pub fn local(&self) -> SocketAddr {
        sockaddr_at(self.buffer.as_ref(), 12)
    }
    /// The remote (client) address.
    pub fn remote(&self) -> SocketAddr {
        sockaddr_at(self.buffer.as_ref(), self.remote_at)
    }
}

/// Events 23 ConnClose (`Pointer ConnectionObj, UInt32 Abortive`), 24 ConnCleanup and 34
/// SslConnEvent (`Pointer ConnectionObj`) ([M], [J]; [D] reads 34 as ConnCleanup's template).
#[derive(Debug, Clone, Copy)]
pub struct ConnObj<T: AsRef<[u8]>> {
    buffer: T,
    has_abortive: bool,
}

impl<T: AsRef<[u8]>> ConnObj<T> {
    /// Validates a ConnCleanup / SslConnEvent (8 bytes).
    pub fn new_checked(buffer: T) -> Result<Self> {
        need(buffer.as_ref(), 0, 8)?;
        Ok(ConnObj {
            buffer,
            has_abortive: false,
        })
    }
    /// Validates a ConnClose (12 bytes).
    pub fn new_checked_close(buffer: T) -> Result<Self> {
        need(buffer.as_ref(), 0, 12)?;
        Ok(ConnObj {
            buffer,
            has_abortive: true,
        })
    }
    /// The kernel's connection object pointer.
    pub fn connection_obj(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 0)
    }
    /// ConnClose's `Abortive` flag (false for the other two events).
    pub fn abortive(&self) -> bool {
        self.has_abortive && u32_at(self.buffer.as_ref(), 8) != 0
    }
}

/// Event 1 RecvReq: `UInt64 RequestId, UInt64 ConnectionId, UInt32 RemoteAddrLength, Binary
/// RemoteAddr` in version 0 ([M], [J]). Windows Server 2022 writes `RemoteAddrLength` as 16
/// bits (user data 34 bytes for IPv4 instead of 36, [D]'s warning); both layouts are
/// recognised from the content, as [D] suggests: the 32-bit reading is taken only when it is a
/// valid sockaddr length that ends the user data exactly. Because [D] also reports an IPv6
/// size this layout does not explain, an address in neither layout does not reject the event:
/// the ids are what correlation needs (the client address also comes with ConnConnect), so
/// [`remote`](Self::remote) is then `None`.
#[derive(Debug, Clone, Copy)]
pub struct RecvReq<T: AsRef<[u8]>> {
    buffer: T,
    addr_at: Option<usize>,
}

impl<T: AsRef<[u8]>> RecvReq<T> {
    /// Validates the layout (the two ids; the address in either width when recognisable).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(b, 0, 16)?;
        let ok_len = |l: usize| l == SOCKADDR_IN_LEN || l == SOCKADDR_IN6_LEN;
        let mut addr_at = None;
        if b.len() >= 20 {
            let l32 = u32_at(b, 16) as usize;
            if ok_len(l32) && b.len() == 20 + l32 && check_sockaddr(b, 20, l32).is_ok() {
                addr_at = Some(20);
            }
        }
        if addr_at.is_none() && b.len() >= 18 {
            let l16 = u16_at(b, 16) as usize;
            if ok_len(l16) && check_sockaddr(b, 18, l16).is_ok() {
                addr_at = Some(18);
            }
        }
        Ok(RecvReq { buffer, addr_at })
    }
    /// HTTP.sys's request id.
    pub fn request_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 0)
    }
    /// HTTP.sys's connection id.
    pub fn connection_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 8)
    }
    /// Whether the address was found in the layout with a 16-bit `RemoteAddrLength`.
    pub fn short_length_field(&self) -> bool {
        self.addr_at == Some(18)
    }
    /// The client address, when it is in a recognised layout.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.addr_at.map(|at| sockaddr_at(self.buffer.as_ref(), at))
    }
}

/// Event 2 Parse: `Pointer RequestObj, UInt32 HttpVerb, UnicodeString Url` ([M], [J]; offsets
/// 0/8/12 in [D]).
#[derive(Debug, Clone, Copy)]
pub struct Parse<T: AsRef<[u8]>> {
    buffer: T,
    url_end: usize,
}

impl<T: AsRef<[u8]>> Parse<T> {
    /// Validates the layout.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(b, 0, 12)?;
        let (_, end, _) = utf16z(b, 12)?;
        Ok(Parse {
            buffer,
            url_end: end,
        })
    }
    /// The kernel's request object pointer.
    pub fn request_obj(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 0)
    }
    /// The raw `HTTP_VERB` value.
    pub fn http_verb(&self) -> u32 {
        u32_at(self.buffer.as_ref(), 8)
    }
    /// The URL's UTF-16LE code units, without terminator.
    pub fn url_utf16(&self) -> &[u8] {
        &self.buffer.as_ref()[12..self.url_end]
    }
}

/// Event 3 Deliver: `Pointer RequestObj, UInt64 RequestId, UInt32 SiteId, UnicodeString
/// RequestQueueName, UnicodeString Url, UInt32 Status` ([M], [J]; offsets 0/8/16/20 in [D]).
#[derive(Debug, Clone, Copy)]
pub struct Deliver<T: AsRef<[u8]>> {
    buffer: T,
    queue_end: usize,
    url_at: usize,
    url_end: usize,
    status_at: usize,
}

impl<T: AsRef<[u8]>> Deliver<T> {
    /// Validates the layout.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(b, 0, 20)?;
        let (_, queue_end, url_at) = utf16z(b, 20)?;
        let (_, url_end, status_at) = utf16z(b, url_at)?;
        need(b, status_at, 4)?;
        Ok(Deliver {
            buffer,
            queue_end,
            url_at,
            url_end,
            status_at,
        })
    }
    /// HTTP.sys's request id.
    pub fn request_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 8)
    }
    /// The IIS site id.
    pub fn site_id(&self) -> u32 {
        u32_at(self.buffer.as_ref(), 16)
    }
    /// The request queue name (for IIS, the application pool), UTF-16LE.
    pub fn request_queue_utf16(&self) -> &[u8] {
        &self.buffer.as_ref()[20..self.queue_end]
    }
    /// The URL, UTF-16LE.
    pub fn url_utf16(&self) -> &[u8] {
        &self.buffer.as_ref()[self.url_at..self.url_end]
    }
    /// The delivery status.
    pub fn status(&self) -> u32 {
        u32_at(self.buffer.as_ref(), self.status_at)
    }
}

/// Events 4 RecvResp and 8 FastResp: `UInt64 RequestId, UInt64 ConnectionId, UInt16
/// StatusCode, AnsiString Verb, UInt32 HeaderLength, UInt16 EntityChunkCount, UInt32
/// CachePolicy` ([M], [J]; offsets 0/8/16/18 in [D]).
#[derive(Debug, Clone, Copy)]
pub struct Response<T: AsRef<[u8]>> {
    buffer: T,
    verb_end: usize,
    tail_at: usize,
}

impl<T: AsRef<[u8]>> Response<T> {
    /// Validates the layout.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(b, 0, 18)?;
        let (_, verb_end, tail_at) = ansiz(b, 18)?;
        need(b, tail_at, 10)?;
        Ok(Response {
            buffer,
            verb_end,
            tail_at,
        })
    }
    /// HTTP.sys's request id.
    pub fn request_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 0)
    }
    /// HTTP.sys's connection id.
    pub fn connection_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 8)
    }
    /// The response status code.
    pub fn status_code(&self) -> u16 {
        u16_at(self.buffer.as_ref(), 16)
    }
    /// The request verb as text.
    pub fn verb(&self) -> &[u8] {
        &self.buffer.as_ref()[18..self.verb_end]
    }
    /// Response header bytes.
    pub fn header_length(&self) -> u32 {
        u32_at(self.buffer.as_ref(), self.tail_at)
    }
    /// Entity chunks passed with the response.
    pub fn entity_chunk_count(&self) -> u16 {
        u16_at(self.buffer.as_ref(), self.tail_at + 4)
    }
    /// The cache policy (non-zero: HTTP.sys caches the response).
    pub fn cache_policy(&self) -> u32 {
        u32_at(self.buffer.as_ref(), self.tail_at + 6)
    }
}

/// Events 10-14 SendComplete, CachedAndSend, FastSend, ZeroSend, LastSndError: `UInt64
/// RequestId, UInt16 HttpStatus` ([M] `HTTPRequestTraceTaskSendCompleteArgs`, [J]).
#[derive(Debug, Clone, Copy)]
pub struct SendComplete<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SendComplete<T> {
    /// Validates the layout (10 bytes).
    pub fn new_checked(buffer: T) -> Result<Self> {
        need(buffer.as_ref(), 0, 10)?;
        Ok(SendComplete { buffer })
    }
    /// HTTP.sys's request id.
    pub fn request_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 0)
    }
    /// The status sent.
    pub fn http_status(&self) -> u16 {
        u16_at(self.buffer.as_ref(), 8)
    }
}

/// Events 16 SrvdFrmCache and 17 CachedNotModified: version 0 `Pointer RequestObj, UInt32
/// SiteId, UInt32 BytesSent`; version 1 adds `UInt64 RequestId, AnsiString Encoding` ([M]
/// `HTTPRequestTraceTaskSrvdFrmCacheArgs[_V1]`, [J]; [D] reads version 0's 16 bytes).
#[derive(Debug, Clone, Copy)]
pub struct ServedFromCache<T: AsRef<[u8]>> {
    buffer: T,
    v1: bool,
}

impl<T: AsRef<[u8]>> ServedFromCache<T> {
    /// Validates the layout of `version` (0 or 1).
    pub fn new_checked(buffer: T, version: u8) -> Result<Self> {
        let b = buffer.as_ref();
        need(b, 0, 16)?;
        match version {
            0 => Ok(ServedFromCache { buffer, v1: false }),
            1 => {
                need(b, 16, 8)?;
                ansiz(b, 24)?;
                Ok(ServedFromCache { buffer, v1: true })
            }
            _ => Err(DecodeError::UnknownVersion),
        }
    }
    /// The kernel's request object pointer.
    pub fn request_obj(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 0)
    }
    /// The IIS site id.
    pub fn site_id(&self) -> u32 {
        u32_at(self.buffer.as_ref(), 8)
    }
    /// Bytes sent from the cache.
    pub fn bytes_sent(&self) -> u32 {
        u32_at(self.buffer.as_ref(), 12)
    }
    /// HTTP.sys's request id (version 1 only).
    pub fn request_id(&self) -> Option<u64> {
        self.v1.then(|| u64_at(self.buffer.as_ref(), 16))
    }
}

/// Events 25 AddedCacheEntry and 27 FlushedCache: `UnicodeString Uri, UInt16 StatusCode,
/// AnsiString Verb, UInt32 HeaderLength, UInt32 ContentLength, UInt64 ExpirationTime`;
/// AddedCacheEntry version 1 adds `AnsiString Encoding` ([M]
/// `HTTPCacheTraceTaskAddedCacheEntryArgs[_V1]`, [J]; [D] reads Uri then StatusCode).
#[derive(Debug, Clone, Copy)]
pub struct CacheEntry<T: AsRef<[u8]>> {
    buffer: T,
    uri_end: usize,
    status_at: usize,
    verb_end: usize,
    tail_at: usize,
}

impl<T: AsRef<[u8]>> CacheEntry<T> {
    /// Validates the layout of `version` (0 or 1).
    pub fn new_checked(buffer: T, version: u8) -> Result<Self> {
        if version > 1 {
            return Err(DecodeError::UnknownVersion);
        }
        let b = buffer.as_ref();
        let (_, uri_end, status_at) = utf16z(b, 0)?;
        need(b, status_at, 2)?;
        let (_, verb_end, tail_at) = ansiz(b, status_at + 2)?;
        need(b, tail_at, 16)?;
        if version == 1 {
            ansiz(b, tail_at + 16)?;
        }
        Ok(CacheEntry {
            buffer,
            uri_end,
            status_at,
            verb_end,
            tail_at,
        })
    }
    /// The cached URL, UTF-16LE.
    pub fn uri_utf16(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.uri_end]
    }
    /// The cached response's status.
    pub fn status_code(&self) -> u16 {
        u16_at(self.buffer.as_ref(), self.status_at)
    }
    /// The verb the response was cached for.
    pub fn verb(&self) -> &[u8] {
        &self.buffer.as_ref()[self.status_at + 2..self.verb_end]
    }
    /// Header bytes of the cached response.
    pub fn header_length(&self) -> u32 {
        u32_at(self.buffer.as_ref(), self.tail_at)
    }
    /// Body bytes of the cached response.
    pub fn content_length(&self) -> u32 {
        u32_at(self.buffer.as_ref(), self.tail_at + 4)
    }
    /// Expiration time (FILETIME).
    pub fn expiration_time(&self) -> u64 {
        u64_at(self.buffer.as_ref(), self.tail_at + 8)
    }
}

/// Event 64 RequestRejected: `UInt64 RequestId, AnsiString Reason, UnicodeString
/// RequestQueueName` ([M] `HTTPRequestTraceTaskRequestRejectedArgs`, [J]).
#[derive(Debug, Clone, Copy)]
pub struct RequestRejected<T: AsRef<[u8]>> {
    buffer: T,
    reason_end: usize,
    queue_at: usize,
    queue_end: usize,
}

impl<T: AsRef<[u8]>> RequestRejected<T> {
    /// Validates the layout.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(b, 0, 8)?;
        let (_, reason_end, queue_at) = ansiz(b, 8)?;
        let (_, queue_end, _) = utf16z(b, queue_at)?;
        Ok(RequestRejected {
            buffer,
            reason_end,
            queue_at,
            queue_end,
        })
    }
    /// HTTP.sys's request id.
    pub fn request_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), 0)
    }
    /// Why the request was rejected (e.g. `QueueFull`, `AppOffline`).
    pub fn reason(&self) -> &[u8] {
        &self.buffer.as_ref()[8..self.reason_end]
    }
    /// The request queue (application pool), UTF-16LE.
    pub fn request_queue_utf16(&self) -> &[u8] {
        &self.buffer.as_ref()[self.queue_at..self.queue_end]
    }
}

/// Which of the five send events (10-14) it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    /// 10 SendComplete.
    SendComplete,
    /// 11 CachedAndSend.
    CachedAndSend,
    /// 12 FastSend.
    FastSend,
    /// 13 ZeroSend.
    ZeroSend,
    /// 14 LastSndError.
    LastSndError,
}

/// A decoded HttpService event: one validated view per event kind httpscope uses.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// 21.
    ConnConnect(ConnConnect<&'a [u8]>),
    /// 23.
    ConnClose(ConnObj<&'a [u8]>),
    /// 24.
    ConnCleanup(ConnObj<&'a [u8]>),
    /// 34.
    SslConnEvent(ConnObj<&'a [u8]>),
    /// 1.
    RecvReq(RecvReq<&'a [u8]>),
    /// 2.
    Parse(Parse<&'a [u8]>),
    /// 3.
    Deliver(Deliver<&'a [u8]>),
    /// 4 (`fast` false) or 8 (`fast` true).
    Response {
        /// 8 FastResp rather than 4 RecvResp.
        fast: bool,
        /// The view.
        view: Response<&'a [u8]>,
    },
    /// 10-14.
    Send {
        /// Which one.
        kind: SendKind,
        /// The view.
        view: SendComplete<&'a [u8]>,
    },
    /// 16 (`not_modified` false) or 17 (true).
    ServedFromCache {
        /// 17 CachedNotModified rather than 16 SrvdFrmCache.
        not_modified: bool,
        /// The view.
        view: ServedFromCache<&'a [u8]>,
    },
    /// 25 (`flushed` false) or 27 (true).
    CacheEntry {
        /// 27 FlushedCache rather than 25 AddedCacheEntry.
        flushed: bool,
        /// The view.
        view: CacheEntry<&'a [u8]>,
    },
    /// 64.
    RequestRejected(RequestRejected<&'a [u8]>),
    /// Any other event id of the provider (not used by the correlator).
    Other(u16),
}

/// Decodes the user data of event `id` / `version`.
pub fn decode(id: u16, version: u8, data: &[u8]) -> Result<Event<'_>> {
    use event_id::*;
    Ok(match id {
        CONN_CONNECT => Event::ConnConnect(ConnConnect::new_checked(data)?),
        CONN_CLOSE => Event::ConnClose(ConnObj::new_checked_close(data)?),
        CONN_CLEANUP => Event::ConnCleanup(ConnObj::new_checked(data)?),
        SSL_CONN_EVENT => Event::SslConnEvent(ConnObj::new_checked(data)?),
        RECV_REQ => Event::RecvReq(RecvReq::new_checked(data)?),
        PARSE => Event::Parse(Parse::new_checked(data)?),
        DELIVER => Event::Deliver(Deliver::new_checked(data)?),
        RECV_RESP | FAST_RESP => Event::Response {
            fast: id == FAST_RESP,
            view: Response::new_checked(data)?,
        },
        SEND_COMPLETE..=LAST_SND_ERROR => {
            let kind = match id {
                SEND_COMPLETE => SendKind::SendComplete,
                CACHED_AND_SEND => SendKind::CachedAndSend,
                FAST_SEND => SendKind::FastSend,
                ZERO_SEND => SendKind::ZeroSend,
                _ => SendKind::LastSndError,
            };
            Event::Send {
                kind,
                view: SendComplete::new_checked(data)?,
            }
        }
        SRVD_FRM_CACHE | CACHED_NOT_MODIFIED => Event::ServedFromCache {
            not_modified: id == CACHED_NOT_MODIFIED,
            view: ServedFromCache::new_checked(data, version)?,
        },
        ADDED_CACHE_ENTRY => Event::CacheEntry {
            flushed: false,
            view: CacheEntry::new_checked(data, version)?,
        },
        FLUSHED_CACHE => Event::CacheEntry {
            flushed: true,
            view: CacheEntry::new_checked(data, 0)?,
        },
        REQUEST_REJECTED => Event::RequestRejected(RequestRejected::new_checked(data)?),
        other => Event::Other(other),
    })
}

/// Writers for the same layouts, used to turn event XML back into user data (and by tests).
pub mod encode {
    use super::*;

    /// Appends a `SOCKADDR_IN` (16 bytes) or `SOCKADDR_IN6` (28 bytes).
    pub fn sockaddr(out: &mut Vec<u8>, addr: SocketAddr) {
        match addr {
            SocketAddr::V4(a) => {
                out.extend_from_slice(&AF_INET.to_le_bytes());
                out.extend_from_slice(&a.port().to_be_bytes());
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&[0u8; 8]);
            }
            SocketAddr::V6(a) => {
                out.extend_from_slice(&AF_INET6.to_le_bytes());
                out.extend_from_slice(&a.port().to_be_bytes());
                out.extend_from_slice(&a.flowinfo().to_be_bytes());
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.scope_id().to_le_bytes());
            }
        }
    }

    /// Appends a NUL-terminated UTF-16LE string.
    pub fn utf16z(out: &mut Vec<u8>, s: &str) {
        for u in s.encode_utf16() {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out.extend_from_slice(&[0, 0]);
    }

    /// Appends a NUL-terminated 8-bit string (bytes after an interior NUL are dropped).
    pub fn ansiz(out: &mut Vec<u8>, s: &str) {
        let b = s.as_bytes();
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        out.extend_from_slice(&b[..end]);
        out.push(0);
    }
}

/// The type of one template field, for rebuilding user data from named values (event XML).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `win:Pointer` (8 bytes).
    Pointer,
    /// `win:UInt64`.
    U64,
    /// `win:UInt32`.
    U32,
    /// `win:UInt16`.
    U16,
    /// `win:UInt32` holding the length of the `win:Binary` field that follows.
    BinaryLength,
    /// `win:Binary` (a socket address in the events httpscope reads).
    Binary,
    /// `win:UnicodeString`.
    Unicode,
    /// `win:AnsiString`.
    Ansi,
}

/// The template (field names and types, in order) of event `id` / `version`, exactly as the
/// manifest [M] lists it; `None` for events httpscope does not read.
pub fn template(id: u16, version: u8) -> Option<&'static [(&'static str, FieldType)]> {
    use event_id::*;
    use FieldType::*;
    const RECV_REQ_T: &[(&str, FieldType)] = &[
        ("RequestId", U64),
        ("ConnectionId", U64),
        ("RemoteAddrLength", BinaryLength),
        ("RemoteAddr", Binary),
    ];
    const PARSE_T: &[(&str, FieldType)] =
        &[("RequestObj", Pointer), ("HttpVerb", U32), ("Url", Unicode)];
    const DELIVER_T: &[(&str, FieldType)] = &[
        ("RequestObj", Pointer),
        ("RequestId", U64),
        ("SiteId", U32),
        ("RequestQueueName", Unicode),
        ("Url", Unicode),
        ("Status", U32),
    ];
    const RESP_T: &[(&str, FieldType)] = &[
        ("RequestId", U64),
        ("ConnectionId", U64),
        ("StatusCode", U16),
        ("Verb", Ansi),
        ("HeaderLength", U32),
        ("EntityChunkCount", U16),
        ("CachePolicy", U32),
    ];
    const SEND_T: &[(&str, FieldType)] = &[("RequestId", U64), ("HttpStatus", U16)];
    const CACHE_SEND_T: &[(&str, FieldType)] =
        &[("RequestObj", Pointer), ("SiteId", U32), ("BytesSent", U32)];
    const CACHE_SEND_V1_T: &[(&str, FieldType)] = &[
        ("RequestObj", Pointer),
        ("SiteId", U32),
        ("BytesSent", U32),
        ("RequestId", U64),
        ("Encoding", Ansi),
    ];
    const CONN_T: &[(&str, FieldType)] = &[
        ("ConnectionObj", Pointer),
        ("LocalAddrLength", BinaryLength),
        ("LocalAddr", Binary),
        ("RemoteAddrLength", BinaryLength),
        ("RemoteAddr", Binary),
    ];
    const CLOSE_T: &[(&str, FieldType)] = &[("ConnectionObj", Pointer), ("Abortive", U32)];
    const CLEANUP_T: &[(&str, FieldType)] = &[("ConnectionObj", Pointer)];
    const CACHE_T: &[(&str, FieldType)] = &[
        ("Uri", Unicode),
        ("StatusCode", U16),
        ("Verb", Ansi),
        ("HeaderLength", U32),
        ("ContentLength", U32),
        ("ExpirationTime", U64),
    ];
    const CACHE_V1_T: &[(&str, FieldType)] = &[
        ("Uri", Unicode),
        ("StatusCode", U16),
        ("Verb", Ansi),
        ("HeaderLength", U32),
        ("ContentLength", U32),
        ("ExpirationTime", U64),
        ("Encoding", Ansi),
    ];
    const REJECTED_T: &[(&str, FieldType)] = &[
        ("RequestId", U64),
        ("Reason", Ansi),
        ("RequestQueueName", Unicode),
    ];
    Some(match (id, version) {
        (RECV_REQ, _) => RECV_REQ_T,
        (PARSE, _) => PARSE_T,
        (DELIVER, _) => DELIVER_T,
        (RECV_RESP | FAST_RESP, _) => RESP_T,
        (SEND_COMPLETE..=LAST_SND_ERROR, _) => SEND_T,
        (SRVD_FRM_CACHE | CACHED_NOT_MODIFIED, 0) => CACHE_SEND_T,
        (SRVD_FRM_CACHE | CACHED_NOT_MODIFIED, 1) => CACHE_SEND_V1_T,
        (CONN_CONNECT, _) => CONN_T,
        (CONN_CLOSE, _) => CLOSE_T,
        (CONN_CLEANUP | SSL_CONN_EVENT, _) => CLEANUP_T,
        (ADDED_CACHE_ENTRY, 0) | (FLUSHED_CACHE, _) => CACHE_T,
        (ADDED_CACHE_ENTRY, 1) => CACHE_V1_T,
        (REQUEST_REJECTED, _) => REJECTED_T,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_v4() -> Vec<u8> {
        let mut b = 0xffff_fa80_0000_1000u64.to_le_bytes().to_vec();
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&[2, 0, 0, 80, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&[2, 0, 0xc3, 0x50, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn conn_connect_v4_whole_truncated_impossible() {
        let b = conn_v4();
        assert_eq!(b.len(), 48);
        let v = ConnConnect::new_checked(&b[..]).unwrap();
        assert_eq!(v.local(), "10.0.0.1:80".parse().unwrap());
        assert_eq!(v.remote(), "10.0.0.2:50000".parse().unwrap());
        assert_eq!(v.connection_obj(), 0xffff_fa80_0000_1000);
        for n in 0..b.len() {
            assert_eq!(
                ConnConnect::new_checked(&b[..n]).unwrap_err(),
                DecodeError::Truncated
            );
        }
        let mut bad = b.clone();
        bad[8] = 17;
        assert_eq!(
            ConnConnect::new_checked(&bad[..]).unwrap_err(),
            DecodeError::BadAddressLength
        );
        let mut bad = b.clone();
        bad[12] = 23; // AF_INET6 with a 16-byte address
        assert_eq!(
            ConnConnect::new_checked(&bad[..]).unwrap_err(),
            DecodeError::BadAddressFamily
        );
    }

    #[test]
    fn recv_req_both_length_widths() {
        let mut v0 = 7u64.to_le_bytes().to_vec();
        v0.extend_from_slice(&9u64.to_le_bytes());
        let mut addr = Vec::new();
        encode::sockaddr(&mut addr, "[2001:db8::5]:443".parse().unwrap());
        let mut short = v0.clone();
        v0.extend_from_slice(&28u32.to_le_bytes());
        v0.extend_from_slice(&addr);
        short.extend_from_slice(&28u16.to_le_bytes());
        short.extend_from_slice(&addr);
        let a = RecvReq::new_checked(&v0[..]).unwrap();
        let b = RecvReq::new_checked(&short[..]).unwrap();
        assert!(!a.short_length_field() && b.short_length_field());
        assert_eq!(a.remote(), b.remote());
        assert_eq!(a.remote(), Some("[2001:db8::5]:443".parse().unwrap()));
        // Ids but an address in no known layout: accepted, without address.
        let odd = RecvReq::new_checked(&v0[..44]).unwrap();
        assert_eq!((odd.request_id(), odd.remote()), (7, None));
        assert_eq!(
            RecvReq::new_checked(&v0[..15]).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!((b.request_id(), b.connection_id()), (7, 9));
        assert_eq!(v0.len(), 48);
        assert_eq!(short.len(), 46);
    }

    #[test]
    fn strings_need_terminators() {
        let mut p = 1u64.to_le_bytes().to_vec();
        p.extend_from_slice(&4u32.to_le_bytes());
        encode::utf16z(&mut p, "http://h:80/a?b");
        let v = Parse::new_checked(&p[..]).unwrap();
        let mut s = String::new();
        utf16_to_string(v.url_utf16(), &mut s);
        assert_eq!(url_path(&s, false), "/a");
        assert_eq!(http_verb(v.http_verb()), Some(Method::Get));
        assert_eq!(
            Parse::new_checked(&p[..p.len() - 1]).unwrap_err(),
            DecodeError::Unterminated
        );
        assert_eq!(
            Parse::new_checked(&p[..11]).unwrap_err(),
            DecodeError::Truncated
        );
    }

    #[test]
    fn url_paths() {
        assert_eq!(url_path("http://localhost:80/", false), "/");
        assert_eq!(url_path("https://x:443/a/b?c=1#f", false), "/a/b");
        assert_eq!(url_path("HTTPS://x:443/a/b?c=1#f", true), "/a/b?c=1");
        assert_eq!(url_path("http://host:8080", false), "/");
        assert_eq!(url_path("http://host:8080?x", false), "/");
        assert_eq!(url_path("/rel/x?y", false), "/rel/x");
        assert_eq!(url_path("", false), "/");
        // Found by the fuzzer: a multi-byte character across the scheme's length.
        assert_eq!(url_path("o\u{3000}t:80/busy", false), "o\u{3000}t:80/busy");
        assert_eq!(
            url_path("\u{3000}\u{3000}\u{3000}", false),
            "\u{3000}\u{3000}\u{3000}"
        );
        assert_eq!(url_path("http://h/\u{e9}t\u{e9}", false), "/\u{e9}t\u{e9}");
    }

    #[test]
    fn decode_never_panics_on_short_input() {
        for id in 0..70u16 {
            for v in 0..3u8 {
                for n in 0..64 {
                    let data = vec![0x41u8; n];
                    let _ = decode(id, v, &data);
                }
            }
        }
    }
}

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use compact_str::CompactString;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Comm, Method};

/// Which end of the exchange the observed process was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The process sent the request.
    Client,
    /// The process received the request.
    Server,
}

impl Side {
    /// `"client"` or `"server"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// Where a transaction was observed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Source {
    /// Socket payload captured in the Linux kernel.
    Ebpf,
    /// Plaintext captured by uprobes on a TLS library.
    Tls,
    /// Reassembled TCP streams from a live interface or a capture file.
    #[default]
    Packet,
    /// Windows HTTP.sys events (ETW provider Microsoft-Windows-HttpService).
    Etw,
    /// `httpscope-client` hooks inside a Rust program.
    Client,
}

impl Source {
    /// Every source.
    pub const ALL: &'static [Source] = &[
        Source::Ebpf,
        Source::Tls,
        Source::Packet,
        Source::Etw,
        Source::Client,
    ];

    /// The source's name as it appears in output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::Tls => "tls",
            Source::Packet => "packet",
            Source::Etw => "etw",
            Source::Client => "client",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP version of an exchange, reported as the `http_version` tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HttpVersion {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
    /// HTTP/2
    Http2,
}

impl HttpVersion {
    /// `"1.0"`, `"1.1"` or `"2"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http10 => "1.0",
            HttpVersion::Http11 => "1.1",
            HttpVersion::Http2 => "2",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "1.0" => Some(HttpVersion::Http10),
            "1.1" => Some(HttpVersion::Http11),
            "2" | "2.0" => Some(HttpVersion::Http2),
            _ => None,
        }
    }
}

/// Source-specific strings (`site_id`, `site_name`, `app_pool`, `tls_library`...). Most
/// transactions carry none, and an empty set does not allocate.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tags(Vec<(Cow<'static, str>, Box<str>)>);

impl Clone for Tags {
    /// Inline and free for the empty set, which every parser-built transaction clones from
    /// its connection (the derived clone was an out-of-line call per transaction).
    #[inline]
    fn clone(&self) -> Self {
        if self.0.is_empty() {
            Tags(Vec::new())
        } else {
            Tags(self.0.clone())
        }
    }
}

impl Tags {
    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Box<str>>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

/// One HTTP request and its response, as observed by one source.
///
/// Serialises to exactly the JSON object `DESIGN.md` specifies (one per line in
/// `--format jsonl --transactions`); see the field docs for each name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Wall-clock time of the first request byte, nanoseconds since the Unix epoch
    /// (JSON `time`, RFC 3339 with nanoseconds, UTC).
    pub time_unix_ns: i64,
    /// First request byte seen, on the source's clock (JSON `start_ns`).
    pub start_ns: u64,
    /// Last response byte seen, on the same clock (JSON `end_ns`).
    pub end_ns: u64,
    /// The method as sent; `None` when only the response was seen.
    pub method: Option<Method>,
    /// The path, without the query string unless the source was asked to keep it; empty when
    /// only the response was seen. Paths of up to 24 bytes are stored inline, without a heap
    /// allocation (measured: the path's `malloc`/`free` was ~8% of the HTTP parser's work per
    /// small request, and the free happens on the monitor's thread).
    pub path: CompactString,
    /// The final response status; `None` when no response was seen.
    pub status: Option<u16>,
    /// Request body bytes on the wire (headers not counted; chunk framing counted).
    pub request_bytes: u64,
    /// Response body bytes on the wire.
    pub response_bytes: u64,
    /// The end that sent the request.
    pub client: Option<SocketAddr>,
    /// The end that received the request.
    pub server: Option<SocketAddr>,
    /// The observed process, where the source knows it.
    pub pid: Option<u32>,
    /// The observed process's name, where the source knows it.
    pub comm: Option<Comm>,
    /// Whether the observed process was the client or the server, where the source knows it.
    pub side: Option<Side>,
    /// Where the transaction was observed.
    pub source: Source,
    /// The HTTP version, reported as `tags.http_version`.
    pub version: Option<HttpVersion>,
    /// Other source-specific strings, reported in `tags`.
    pub tags: Tags,
    /// A request without response or a response without request (JSON `incomplete`, present
    /// only when true).
    pub incomplete: bool,
}

impl Transaction {
    /// `end_ns - start_ns`, zero if the clock went backwards.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// The number of JSON fields this transaction serialises to.
    fn field_count(&self) -> usize {
        18 + usize::from(self.incomplete)
    }
}

struct TagsView<'a>(&'a Transaction);

impl Serialize for TagsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tx = self.0;
        let mut map = s.serialize_map(Some(tx.tags.0.len() + usize::from(tx.version.is_some())))?;
        if let Some(v) = tx.version {
            map.serialize_entry("http_version", v.as_str())?;
        }
        for (k, v) in tx.tags.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// RFC 3339 in UTC with all nine fractional digits, e.g. `2026-11-22T02:48:24.000000123Z`.
fn rfc3339_nanos(unix_ns: i64) -> String {
    use time::format_description::well_known::iso8601::{Config, Iso8601, TimePrecision};
    const FORMAT: u128 = Config::DEFAULT
        .set_time_precision(TimePrecision::Second {
            decimal_digits: std::num::NonZeroU8::new(9),
        })
        .encode();
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns)) {
        Ok(t) => t.format(&Iso8601::<FORMAT>).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

impl Serialize for Transaction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.field_count()))?;
        map.serialize_entry("time", &rfc3339_nanos(self.time_unix_ns))?;
        map.serialize_entry("start_ns", &self.start_ns)?;
        map.serialize_entry("end_ns", &self.end_ns)?;
        map.serialize_entry("duration_ns", &self.duration_ns())?;
        map.serialize_entry("method", &self.method)?;
        map.serialize_entry("path", self.path.as_str())?;
        map.serialize_entry("status", &self.status)?;
        map.serialize_entry("request_bytes", &self.request_bytes)?;
        map.serialize_entry("response_bytes", &self.response_bytes)?;
        map.serialize_entry("client", &self.client)?;
        map.serialize_entry("server", &self.server)?;
        map.serialize_entry("pid", &self.pid)?;
        map.serialize_entry("comm", &self.comm)?;
        map.serialize_entry("side", &self.side)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("tags", &TagsView(self))?;
        if self.incomplete {
            map.serialize_entry("incomplete", &true)?;
        }
        map.end()
    }
}

/// The JSON form, for reading transactions back (tests, replay).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    start_ns: u64,
    end_ns: u64,
    #[allow(dead_code)]
    duration_ns: u64,
    method: Option<Method>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    status: Option<u16>,
    request_bytes: u64,
    response_bytes: u64,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    pid: Option<u32>,
    comm: Option<Comm>,
    side: Option<Side>,
    source: Source,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    incomplete: bool,
}

impl<'de> Deserialize<'de> for Transaction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let time_unix_ns = parse_rfc3339(&w.time)
            .ok_or_else(|| serde::de::Error::custom("`time` is not RFC 3339"))?;
        let mut version = None;
        let mut tags = Tags::default();
        for (k, v) in w.tags {
            if k == "http_version" {
                version = HttpVersion::parse(&v);
            } else {
                tags.insert(k, v);
            }
        }
        Ok(Transaction {
            time_unix_ns,
            start_ns: w.start_ns,
            end_ns: w.end_ns,
            method: w.method,
            path: CompactString::from(w.path.as_ref()),
            status: w.status,
            request_bytes: w.request_bytes,
            response_bytes: w.response_bytes,
            client: w.client,
            server: w.server,
            pid: w.pid,
            comm: w.comm,
            side: w.side,
            source: w.source,
            version,
            tags,
            incomplete: w.incomplete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transaction {
        let mut tags = Tags::default();
        tags.insert("site_name", "Default Web Site");
        Transaction {
            time_unix_ns: 1_763_779_704_000_000_123,
            start_ns: 10,
            end_ns: 35,
            method: Some(Method::Post),
            path: "/api/v2/items".into(),
            status: Some(201),
            request_bytes: 12,
            response_bytes: 0,
            client: Some("[::1]:51000".parse().unwrap()),
            server: Some("127.0.0.1:8080".parse().unwrap()),
            pid: Some(4242),
            comm: Some(Comm::from("nginx")),
            side: Some(Side::Server),
            source: Source::Etw,
            version: Some(HttpVersion::Http11),
            tags,
            incomplete: false,
        }
    }

    #[test]
    fn json_has_exactly_the_design_fields() {
        let v: serde_json::Value = serde_json::to_value(sample()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "time",
            "start_ns",
            "end_ns",
            "duration_ns",
            "method",
            "path",
            "status",
            "request_bytes",
            "response_bytes",
            "client",
            "server",
            "pid",
            "comm",
            "side",
            "source",
            "tags",
        ];
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(v["time"], "2025-11-22T02:48:24.000000123Z");
        assert_eq!(v["duration_ns"], 25);
        assert_eq!(v["client"], "[::1]:51000");
        assert_eq!(v["server"], "127.0.0.1:8080");
        assert_eq!(v["side"], "server");
        assert_eq!(v["source"], "etw");
        assert_eq!(v["comm"], "nginx");
        assert_eq!(v["tags"]["http_version"], "1.1");
        assert_eq!(v["tags"]["site_name"], "Default Web Site");
    }

    #[test]
    fn incomplete_only_when_true() {
        let mut tx = sample();
        assert!(!serde_json::to_string(&tx).unwrap().contains("incomplete"));
        tx.incomplete = true;
        tx.status = None;
        let v: serde_json::Value = serde_json::to_value(&tx).unwrap();
        assert_eq!(v["incomplete"], true);
        assert!(v["status"].is_null());
    }

    #[test]
    fn round_trips_through_json() {
        let mut tx = sample();
        tx.incomplete = true;
        let json = serde_json::to_string(&tx).unwrap();
        let back: Transaction = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tx);
    }

    #[test]
    fn duration_never_underflows() {
        let tx = Transaction {
            start_ns: 10,
            end_ns: 5,
            ..Transaction::default()
        };
        assert_eq!(tx.duration_ns(), 0);
    }
}

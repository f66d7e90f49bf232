//! Synthetic Microsoft-Windows-HttpService event sequences for the ETW tests.
//!
//! The byte encoders here are written from the provider's manifest templates independently of
//! the crate's own `wire::encode`, so the decoder is checked against a second encoding. The
//! same events render as JSON-lines replay records and as Windows event XML.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;

use base64::Engine as _;
use httpscope_capture::etw::{Config, Correlator, EtwCounters, Guid, RawEvent};
use httpscope_model::Transaction;

/// A field value of an event template.
#[derive(Clone, Debug)]
pub enum V {
    /// `win:Pointer`.
    Ptr(u64),
    /// `win:UInt64`.
    U64(u64),
    /// `win:UInt32`.
    U32(u32),
    /// `win:UInt16`.
    U16(u16),
    /// `UInt32 <name>Length` then `Binary <name>` holding a SOCKADDR.
    Addr(SocketAddr),
    /// Like `Addr` but with the 16-bit length of Windows Server 2022's RecvReq.
    AddrShort(SocketAddr),
    /// `win:UnicodeString`.
    Wide(String),
    /// `win:AnsiString`.
    Ansi(String),
}

/// One event.
#[derive(Clone, Debug)]
pub struct Ev {
    pub id: u16,
    pub version: u8,
    pub ts: u64,
    pub activity: u128,
    pub related: Option<u128>,
    pub fields: Vec<(&'static str, V)>,
}

fn sockaddr_bytes(a: SocketAddr) -> Vec<u8> {
    let mut b = Vec::new();
    match a {
        SocketAddr::V4(a) => {
            b.extend_from_slice(&[2, 0]);
            b.extend_from_slice(&a.port().to_be_bytes());
            b.extend_from_slice(&a.ip().octets());
            b.extend_from_slice(&[0; 8]);
        }
        SocketAddr::V6(a) => {
            b.extend_from_slice(&[23, 0]);
            b.extend_from_slice(&a.port().to_be_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&a.ip().octets());
            b.extend_from_slice(&a.scope_id().to_le_bytes());
        }
    }
    b
}

impl Ev {
    /// The user data, byte for byte per the manifest template.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for (_, v) in &self.fields {
            match v {
                V::Ptr(x) | V::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
                V::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
                V::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
                V::Addr(a) => {
                    let s = sockaddr_bytes(*a);
                    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    b.extend_from_slice(&s);
                }
                V::AddrShort(a) => {
                    let s = sockaddr_bytes(*a);
                    b.extend_from_slice(&(s.len() as u16).to_le_bytes());
                    b.extend_from_slice(&s);
                }
                V::Wide(s) => {
                    for u in s.encode_utf16() {
                        b.extend_from_slice(&u.to_le_bytes());
                    }
                    b.extend_from_slice(&[0, 0]);
                }
                V::Ansi(s) => {
                    b.extend_from_slice(s.as_bytes());
                    b.push(0);
                }
            }
        }
        b
    }

    /// One JSON-lines replay record.
    pub fn json_line(&self) -> String {
        let related = match self.related {
            Some(r) => format!("\"{}\"", Guid(r)),
            None => "null".into(),
        };
        format!(
            "{{\"provider\":\"dd5ef90a-6398-47a4-ad34-4dcecdef795f\",\"event_id\":{},\"version\":{},\"timestamp\":{},\"activity_id\":\"{}\",\"related_activity_id\":{},\"user_data\":\"{}\"}}\n",
            self.id,
            self.version,
            self.ts,
            Guid(self.activity),
            related,
            base64::engine::general_purpose::STANDARD.encode(self.bytes())
        )
    }

    /// One `<Event>` as `tracerpt -of XML` writes it (pointers and binary as 0x hex).
    pub fn xml(&self, addr_as_text: bool) -> String {
        let mut s = String::new();
        s.push_str("<Event xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">\r\n <System>\r\n");
        s.push_str("  <Provider Name=\"Microsoft-Windows-HttpService\" Guid=\"{dd5ef90a-6398-47a4-ad34-4dcecdef795f}\" />\r\n");
        let _ = write!(
            s,
            "  <EventID>{}</EventID>\r\n  <Version>{}</Version>\r\n  <Level>4</Level>\r\n",
            self.id, self.version
        );
        let _ = write!(
            s,
            "  <TimeCreated SystemTime=\"{}\" />\r\n",
            filetime_text(self.ts)
        );
        match self.related {
            Some(r) => {
                let _ = write!(
                    s,
                    "  <Correlation ActivityID=\"{{{}}}\" RelatedActivityID=\"{{{}}}\" />\r\n",
                    Guid(self.activity).to_string().to_uppercase(),
                    Guid(r).to_string().to_uppercase()
                );
            }
            None => {
                let _ = write!(
                    s,
                    "  <Correlation ActivityID=\"{{{}}}\" />\r\n",
                    Guid(self.activity)
                );
            }
        }
        s.push_str("  <Execution ProcessID=\"4\" ThreadID=\"1276\" ProcessorID=\"1\" KernelTime=\"15\" UserTime=\"0\" />\r\n  <Channel>Microsoft-Windows-HttpService/Trace</Channel>\r\n  <Computer />\r\n </System>\r\n <EventData>\r\n");
        for (name, v) in &self.fields {
            let text = match v {
                V::Ptr(x) => format!("0x{x:X}"),
                V::U64(x) => {
                    if name.ends_with("Id") {
                        format!("0x{x:X}")
                    } else {
                        x.to_string()
                    }
                }
                V::U32(x) => x.to_string(),
                V::U16(x) => x.to_string(),
                V::Addr(a) | V::AddrShort(a) => {
                    let bytes = sockaddr_bytes(*a);
                    let _ = write!(
                        s,
                        "  <Data Name=\"{name}Length\">{}</Data>\r\n",
                        bytes.len()
                    );
                    if addr_as_text {
                        a.to_string()
                    } else {
                        let mut h = String::from("0x");
                        for b in bytes {
                            let _ = write!(h, "{b:02X}");
                        }
                        h
                    }
                }
                V::Wide(t) | V::Ansi(t) => xml_escape(t),
            };
            let _ = write!(s, "  <Data Name=\"{name}\">{text}</Data>\r\n");
        }
        s.push_str(" </EventData>\r\n <RenderingInfo Culture=\"en-US\">\r\n  <Level>Information </Level>\r\n </RenderingInfo>\r\n</Event>\r\n");
        s
    }

    /// The event with its user data, for the correlator.
    pub fn feed(&self, c: &mut Correlator, out: &mut Vec<Transaction>) {
        let data = self.bytes();
        c.process(
            &RawEvent {
                event_id: self.id,
                version: self.version,
                timestamp: self.ts,
                activity_id: Guid(self.activity),
                related_activity_id: self.related.map(Guid),
                user_data: &data,
            },
            out,
        );
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// FILETIME as `TimeCreated SystemTime` text (7 fractional digits, as Windows writes it).
pub fn filetime_text(ft: u64) -> String {
    let unix_ticks = ft - 116_444_736_000_000_000;
    let secs = (unix_ticks / 10_000_000) as i64;
    let frac = unix_ticks % 10_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        frac
    )
}

/// 2026-11-22T00:00:00Z as FILETIME.
pub const T0: u64 = 134_397_792_000_000_000;

/// A sequence of events with a clock that advances 1 ms per event.
pub struct Scenario {
    pub evs: Vec<Ev>,
    pub t: u64,
}

pub fn conn_id(n: u32) -> u128 {
    (0x6000_0000u128 + u128::from(n)) << 96 | 0x0001_fb00u128 << 64
}

pub fn req_id(n: u32) -> u128 {
    (0x8000_0000u128 + u128::from(n)) << 96 | 0x0002_fb00u128 << 64
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            evs: Vec::new(),
            t: T0,
        }
    }
}

impl Scenario {
    fn push(
        &mut self,
        id: u16,
        version: u8,
        activity: u128,
        related: Option<u128>,
        fields: Vec<(&'static str, V)>,
    ) {
        self.t += 10_000;
        self.evs.push(Ev {
            id,
            version,
            ts: self.t,
            activity,
            related,
            fields,
        });
    }

    pub fn connect(&mut self, conn: u128, local: &str, remote: &str) {
        self.push(
            21,
            0,
            conn,
            None,
            vec![
                (
                    "ConnectionObj",
                    V::Ptr(0xFFFF_FA80_0100_0000 | (conn as u64 & 0xffff)),
                ),
                ("LocalAddr", V::Addr(local.parse().unwrap())),
                ("RemoteAddr", V::Addr(remote.parse().unwrap())),
            ],
        );
    }

    pub fn recv(&mut self, conn: u128, req: u128, remote: &str) {
        self.push(
            1,
            0,
            conn,
            Some(req),
            vec![
                (
                    "RequestId",
                    V::U64(0xFB00_0000_8000_0000 | (req >> 96) as u64),
                ),
                (
                    "ConnectionId",
                    V::U64(0xFB00_0000_6000_0000 | (conn >> 96) as u64),
                ),
                ("RemoteAddr", V::Addr(remote.parse().unwrap())),
            ],
        );
    }

    /// RecvReq with the 16-bit RemoteAddrLength of Windows Server 2022.
    pub fn recv_short(&mut self, conn: u128, req: u128, remote: &str) {
        self.recv(conn, req, remote);
        let ev = self.evs.last_mut().unwrap();
        if let V::Addr(a) = ev.fields[2].1 {
            ev.fields[2].1 = V::AddrShort(a);
        }
    }

    pub fn parse(&mut self, req: u128, verb: u32, url: &str) {
        self.push(
            2,
            0,
            req,
            None,
            vec![
                ("RequestObj", V::Ptr(0xFFFF_FA80_01BB_5320)),
                ("HttpVerb", V::U32(verb)),
                ("Url", V::Wide(url.into())),
            ],
        );
    }

    pub fn deliver(&mut self, req: u128, site: u32, pool: &str, url: &str) {
        self.push(
            3,
            0,
            req,
            None,
            vec![
                ("RequestObj", V::Ptr(0xFFFF_FA80_01BB_5320)),
                ("RequestId", V::U64(0xFB00_0000_8000_0004)),
                ("SiteId", V::U32(site)),
                ("RequestQueueName", V::Wide(pool.into())),
                ("Url", V::Wide(url.into())),
                ("Status", V::U32(0)),
            ],
        );
    }

    /// 4 RecvResp (`fast` false) or 8 FastResp.
    pub fn response(&mut self, req: u128, fast: bool, status: u16, verb: &str, cache_policy: u32) {
        self.push(
            if fast { 8 } else { 4 },
            0,
            req,
            None,
            vec![
                ("RequestId", V::U64(0xFB00_0000_8000_0004)),
                ("ConnectionId", V::U64(0xFB00_0000_6000_0003)),
                ("StatusCode", V::U16(status)),
                ("Verb", V::Ansi(verb.into())),
                ("HeaderLength", V::U32(180)),
                ("EntityChunkCount", V::U16(1)),
                ("CachePolicy", V::U32(cache_policy)),
            ],
        );
    }

    /// 10-14.
    pub fn send(&mut self, req: u128, id: u16, status: u16) {
        self.push(
            id,
            0,
            req,
            None,
            vec![
                ("RequestId", V::U64(0xFB00_0000_8000_0004)),
                ("HttpStatus", V::U16(status)),
            ],
        );
    }

    /// 16 SrvdFrmCache or 17 CachedNotModified, version 0 or 1.
    pub fn served_from_cache(&mut self, req: u128, id: u16, version: u8, site: u32, bytes: u32) {
        let mut f = vec![
            ("RequestObj", V::Ptr(0xFFFF_FA80_01BB_5320)),
            ("SiteId", V::U32(site)),
            ("BytesSent", V::U32(bytes)),
        ];
        if version == 1 {
            f.push(("RequestId", V::U64(0xFB00_0000_8000_0004)));
            f.push(("Encoding", V::Ansi("gzip".into())));
        }
        self.push(id, version, req, None, f);
    }

    /// 25 AddedCacheEntry (version 0 or 1) or 27 FlushedCache.
    pub fn cache_entry(
        &mut self,
        id: u16,
        version: u8,
        url: &str,
        status: u16,
        content_length: u32,
    ) {
        let mut f = vec![
            ("Uri", V::Wide(url.into())),
            ("StatusCode", V::U16(status)),
            ("Verb", V::Ansi("GET".into())),
            ("HeaderLength", V::U32(200)),
            ("ContentLength", V::U32(content_length)),
            ("ExpirationTime", V::U64(0)),
        ];
        if version == 1 {
            f.push(("Encoding", V::Ansi("".into())));
        }
        self.push(id, version, 0, None, f);
    }

    pub fn rejected(&mut self, req: u128, reason: &str, pool: &str) {
        self.push(
            64,
            0,
            req,
            None,
            vec![
                ("RequestId", V::U64(0xFB00_0000_8000_0004)),
                ("Reason", V::Ansi(reason.into())),
                ("RequestQueueName", V::Wide(pool.into())),
            ],
        );
    }

    pub fn close(&mut self, conn: u128) {
        self.push(
            23,
            0,
            conn,
            None,
            vec![
                ("ConnectionObj", V::Ptr(0xFFFF_FA80_0100_0000)),
                ("Abortive", V::U32(0)),
            ],
        );
    }

    pub fn cleanup(&mut self, conn: u128) {
        self.push(
            24,
            0,
            conn,
            None,
            vec![("ConnectionObj", V::Ptr(0xFFFF_FA80_0100_0000))],
        );
    }

    pub fn tls(&mut self, conn: u128) {
        self.push(
            34,
            0,
            conn,
            None,
            vec![("ConnectionObj", V::Ptr(0xFFFF_FA80_0100_0000))],
        );
    }

    /// 1 → 2 → 3 → 8 → 12.
    pub fn flow_fast(&mut self, conn: u128, req: u128, client: &str, url: &str) {
        self.recv(conn, req, client);
        self.parse(req, 4, url);
        self.deliver(req, 1, "DefaultAppPool", url);
        self.response(req, true, 200, "GET", 0);
        self.send(req, 12, 200);
    }

    /// 1 → 2 → 3 → 4 → 10.
    pub fn flow_response(&mut self, conn: u128, req: u128, client: &str, url: &str, status: u16) {
        self.recv(conn, req, client);
        self.parse(req, 6, url);
        self.deliver(req, 2, "ApiPool", url);
        self.response(req, false, status, "POST", 0);
        self.send(req, 10, status);
    }

    /// 1 → 2 → 64 → 10.
    pub fn flow_rejected(&mut self, conn: u128, req: u128, client: &str, url: &str) {
        self.recv(conn, req, client);
        self.parse(req, 4, url);
        self.rejected(req, "QueueFull", "ApiPool");
        self.send(req, 10, 503);
    }

    /// 1 → 2 → 3 → 4 (cache policy) → 25 → 16 → 11.
    pub fn flow_cache_fill(&mut self, conn: u128, req: u128, client: &str, url: &str) {
        self.recv(conn, req, client);
        self.parse(req, 4, url);
        self.deliver(req, 1, "DefaultAppPool", url);
        self.response(req, false, 200, "GET", 1);
        self.cache_entry(25, 0, url, 200, 5120);
        self.served_from_cache(req, 16, 0, 1, 5320);
        self.send(req, 11, 200);
    }

    /// 1 → 2 → 16.
    pub fn flow_cache_hit(&mut self, conn: u128, req: u128, client: &str, url: &str) {
        self.recv(conn, req, client);
        self.parse(req, 4, url);
        self.served_from_cache(req, 16, 0, 1, 5320);
    }

    pub fn jsonl(&self) -> String {
        self.evs.iter().map(Ev::json_line).collect()
    }

    pub fn xml(&self, addr_as_text: bool) -> String {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Events>\r\n");
        for e in &self.evs {
            s.push_str(&e.xml(addr_as_text));
        }
        s.push_str("</Events>\r\n");
        s
    }
}

/// Runs events through a fresh correlator.
pub fn run(evs: &[Ev]) -> (Vec<Transaction>, EtwCounters) {
    run_with(evs, Config::default())
}

pub fn run_with(evs: &[Ev], config: Config) -> (Vec<Transaction>, EtwCounters) {
    let mut c = Correlator::new(config);
    let mut out = Vec::new();
    for e in evs {
        e.feed(&mut c, &mut out);
    }
    (out, *c.counters())
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("httpscope-etw-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A realistic applicationHost.config (IIS 10 shape).
pub const APPLICATION_HOST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<configuration>
    <configSections>
        <sectionGroup name="system.applicationHost">
            <section name="applicationPools" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
            <section name="sites" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
        </sectionGroup>
    </configSections>
    <system.applicationHost>
        <applicationPools>
            <add name="DefaultAppPool" />
            <add name="ApiPool" managedRuntimeVersion="" managedPipelineMode="Integrated" />
            <applicationPoolDefaults managedRuntimeVersion="v4.0">
                <processModel identityType="ApplicationPoolIdentity" />
            </applicationPoolDefaults>
        </applicationPools>
        <sites>
            <site name="Default Web Site" id="1">
                <application path="/">
                    <virtualDirectory path="/" physicalPath="%SystemDrive%\inetpub\wwwroot" />
                </application>
                <bindings>
                    <binding protocol="http" bindingInformation="*:80:" />
                </bindings>
            </site>
            <site name="Orders API" id="2" serverAutoStart="true">
                <application path="/" applicationPool="ApiPool">
                    <virtualDirectory path="/" physicalPath="D:\sites\orders" />
                </application>
                <bindings>
                    <binding protocol="https" bindingInformation="*:443:orders.example.com" sslFlags="1" />
                </bindings>
            </site>
            <siteDefaults>
                <logFile logFormat="W3C" directory="%SystemDrive%\inetpub\logs\LogFiles" />
            </siteDefaults>
            <applicationDefaults applicationPool="DefaultAppPool" />
            <virtualDirectoryDefaults allowSubDirConfig="true" />
        </sites>
    </system.applicationHost>
</configuration>
"#;

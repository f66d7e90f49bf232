//! IIS `applicationHost.config`: site ids to names, bindings, applications and their pools.
//!
//! HTTP.sys events carry the IIS site *id* (event 3 Deliver, 16 SrvdFrmCache); people think in
//! site *names*. Like the Datadog agent, httpscope reads the names from IIS's configuration
//! (`%windir%\System32\inetsrv\config\applicationHost.config`) and reloads it when it changes
//! ([`IisConfigFile::refresh`] compares modification time and size, at most once per interval,
//! so a live source can call it on every event).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// The default location on Windows.
pub const DEFAULT_PATH: &str = r"C:\Windows\System32\inetsrv\config\applicationHost.config";

/// One `<binding>` of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// `http`, `https`, `net.tcp`...
    pub protocol: String,
    /// `ip:port:host`, e.g. `*:80:` or `*:443:www.example.com`.
    pub information: String,
}

/// One `<application>` of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    /// The virtual path, e.g. `/` or `/api`.
    pub path: String,
    /// The application pool it runs in.
    pub app_pool: Option<String>,
}

/// One `<site>`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Site {
    /// The site id HTTP.sys reports.
    pub id: u32,
    /// The site name.
    pub name: String,
    /// Its bindings.
    pub bindings: Vec<Binding>,
    /// Its applications.
    pub applications: Vec<Application>,
}

/// What httpscope keeps of `applicationHost.config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IisConfig {
    /// Sites by id.
    pub sites: BTreeMap<u32, Site>,
    /// Names of the application pools declared in `<applicationPools>`.
    pub app_pools: Vec<String>,
}

/// The configuration file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IisConfigError {
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The XML is malformed.
    #[error("malformed applicationHost.config at byte {position}: {message}")]
    Xml {
        /// Byte offset of the error.
        position: u64,
        /// What the XML parser said.
        message: String,
    },
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

impl IisConfig {
    /// Parses the text of an `applicationHost.config`.
    pub fn parse(xml: &str) -> Result<IisConfig, IisConfigError> {
        let mut reader = Reader::from_str(xml);
        let mut cfg = IisConfig::default();
        let mut stack: Vec<Vec<u8>> = Vec::new();
        let mut site: Option<Site> = None;
        let mut site_default_pool: Option<String> = None;
        let mut sites_default_pool: Option<String> = None;
        // Applications whose pool comes from the <sites> default, resolved at the end.
        let mut pending_default: Vec<(u32, usize)> = Vec::new();
        loop {
            let ev = reader.read_event().map_err(|e| IisConfigError::Xml {
                position: reader.error_position(),
                message: e.to_string(),
            })?;
            let (start, empty) = match &ev {
                Event::Start(e) => (Some(e.clone()), false),
                Event::Empty(e) => (Some(e.clone()), true),
                Event::End(_) => {
                    if stack.last().map(|n| n.as_slice()) == Some(b"site") {
                        if let Some(s) = site.take() {
                            cfg.sites.insert(s.id, s);
                        }
                        site_default_pool = None;
                    }
                    stack.pop();
                    continue;
                }
                Event::Eof => break,
                _ => continue,
            };
            let Some(e) = start else { continue };
            let name = e.name().as_ref().to_vec();
            let parent = stack.last().map(|n| n.as_slice());
            match (parent, name.as_slice()) {
                (Some(b"applicationPools"), b"add") => {
                    if let Some(n) = attr(&e, b"name") {
                        cfg.app_pools.push(n);
                    }
                }
                (Some(b"sites"), b"site") => {
                    let id = attr(&e, b"id")
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let s = Site {
                        id,
                        name: attr(&e, b"name").unwrap_or_default(),
                        ..Site::default()
                    };
                    if empty {
                        cfg.sites.insert(s.id, s);
                    } else {
                        site = Some(s);
                    }
                }
                (Some(b"sites"), b"applicationDefaults") => {
                    sites_default_pool = attr(&e, b"applicationPool");
                }
                (Some(b"site"), b"applicationDefaults") => {
                    site_default_pool = attr(&e, b"applicationPool");
                }
                (Some(b"site"), b"application") => {
                    if let Some(s) = site.as_mut() {
                        let pool =
                            attr(&e, b"applicationPool").or_else(|| site_default_pool.clone());
                        if pool.is_none() {
                            pending_default.push((s.id, s.applications.len()));
                        }
                        s.applications.push(Application {
                            path: attr(&e, b"path").unwrap_or_else(|| "/".into()),
                            app_pool: pool,
                        });
                    }
                }
                (Some(b"bindings"), b"binding") => {
                    if let Some(s) = site.as_mut() {
                        s.bindings.push(Binding {
                            protocol: attr(&e, b"protocol").unwrap_or_default(),
                            information: attr(&e, b"bindingInformation").unwrap_or_default(),
                        });
                    }
                }
                _ => {}
            }
            if !empty {
                stack.push(name);
            }
        }
        for (id, i) in pending_default {
            if let Some(app) = cfg
                .sites
                .get_mut(&id)
                .and_then(|s| s.applications.get_mut(i))
            {
                app.app_pool = sites_default_pool.clone();
            }
        }
        Ok(cfg)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<IisConfig, IisConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| IisConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        IisConfig::parse(&text)
    }

    /// The name of site `id`.
    pub fn site_name(&self, id: u32) -> Option<&str> {
        self.sites.get(&id).map(|s| s.name.as_str())
    }

    /// The application pool serving `path` on site `id` (longest application path prefix).
    pub fn app_pool(&self, id: u32, path: &str) -> Option<&str> {
        let site = self.sites.get(&id)?;
        site.applications
            .iter()
            .filter(|a| {
                let p = a.path.trim_end_matches('/');
                path.get(..p.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(p))
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/' || p.is_empty())
            })
            .max_by_key(|a| a.path.trim_end_matches('/').len())
            .and_then(|a| a.app_pool.as_deref())
    }
}

/// An `applicationHost.config` on disk, reloaded when it changes.
#[derive(Debug)]
pub struct IisConfigFile {
    path: PathBuf,
    config: IisConfig,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
    interval: Duration,
    reloads: u64,
    errors: u64,
}

impl IisConfigFile {
    /// Loads `path`, to be checked for changes at most every `interval`.
    pub fn open(path: impl Into<PathBuf>, interval: Duration) -> Result<Self, IisConfigError> {
        let path = path.into();
        let stamp = stamp(&path);
        let config = IisConfig::load(&path)?;
        Ok(IisConfigFile {
            path,
            config,
            stamp,
            checked: Instant::now(),
            interval,
            reloads: 0,
            errors: 0,
        })
    }

    /// The configuration currently in force.
    pub fn config(&self) -> &IisConfig {
        &self.config
    }

    /// How many times the file was reloaded after a change.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// How many reloads failed (the previous configuration stays in force).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Reloads the file if its modification time or size changed since the last look and the
    /// check interval has passed. Returns whether the configuration changed.
    pub fn refresh(&mut self) -> bool {
        if self.checked.elapsed() < self.interval {
            return false;
        }
        self.force_refresh()
    }

    /// Like [`refresh`](Self::refresh) without waiting for the interval.
    pub fn force_refresh(&mut self) -> bool {
        self.checked = Instant::now();
        let now = stamp(&self.path);
        if now == self.stamp {
            return false;
        }
        match IisConfig::load(&self.path) {
            Ok(c) => {
                self.stamp = now;
                self.reloads += 1;
                let changed = c != self.config;
                self.config = c;
                changed
            }
            Err(_) => {
                // Half-written file or a transient error: keep the old config, try again later.
                self.errors += 1;
                false
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.applicationHost>
    <applicationPools>
      <add name="DefaultAppPool" />
      <add name="ApiPool" managedRuntimeVersion="" />
      <applicationPoolDefaults managedRuntimeVersion="v4.0"><processModel identityType="ApplicationPoolIdentity" /></applicationPoolDefaults>
    </applicationPools>
    <sites>
      <site name="Default Web Site" id="1">
        <application path="/">
          <virtualDirectory path="/" physicalPath="%SystemDrive%\inetpub\wwwroot" />
        </application>
        <application path="/api" applicationPool="ApiPool" />
        <bindings>
          <binding protocol="http" bindingInformation="*:80:" />
          <binding protocol="https" bindingInformation="*:443:shop.example.com" />
        </bindings>
      </site>
      <site name="Intranet &amp; Tools" id="7" serverAutoStart="true">
        <applicationDefaults applicationPool="ApiPool" />
        <application path="/" />
        <bindings><binding protocol="http" bindingInformation="10.0.0.5:8080:" /></bindings>
      </site>
      <siteDefaults><logFile directory="%SystemDrive%\inetpub\logs\LogFiles" /></siteDefaults>
      <applicationDefaults applicationPool="DefaultAppPool" />
    </sites>
  </system.applicationHost>
</configuration>"#;

    #[test]
    fn parses_sites_bindings_applications_pools() {
        let c = IisConfig::parse(CONFIG).unwrap();
        assert_eq!(c.app_pools, vec!["DefaultAppPool", "ApiPool"]);
        assert_eq!(c.site_name(1), Some("Default Web Site"));
        assert_eq!(c.site_name(7), Some("Intranet & Tools"));
        assert_eq!(c.site_name(2), None);
        let s = &c.sites[&1];
        assert_eq!(s.bindings.len(), 2);
        assert_eq!(s.bindings[1].information, "*:443:shop.example.com");
        assert_eq!(c.app_pool(1, "/index.html"), Some("DefaultAppPool"));
        assert_eq!(c.app_pool(1, "/api/orders/1"), Some("ApiPool"));
        assert_eq!(c.app_pool(1, "/API"), Some("ApiPool"));
        assert_eq!(c.app_pool(1, "/apix"), Some("DefaultAppPool"));
        assert_eq!(c.app_pool(7, "/"), Some("ApiPool"));
        // Multi-byte characters where an application path ends: no slicing inside them.
        assert_eq!(c.app_pool(1, "/a\u{e9}i"), Some("DefaultAppPool"));
        assert_eq!(c.app_pool(1, "/\u{3000}"), Some("DefaultAppPool"));
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(IisConfig::parse("<configuration><sites><site id='1'></sites>").is_err());
    }
}

//! Name resolution, pluggable: the client asks a [`Resolve`] for the addresses of a host.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

/// The future a resolver returns. Boxed: resolution happens once per dial, not per request.
pub type Resolving = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Turns a host name into addresses to connect to, tried in order.
///
/// IP literals never reach the resolver (and produce no `dns_*` events).
pub trait Resolve: Send + Sync + 'static {
    /// Resolves `host` (without brackets), pairing each address with `port`.
    fn resolve(&self, host: &str, port: u16) -> Resolving;
}

/// The system resolver (`getaddrinfo` on tokio's blocking pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Resolving {
        let target = format!("{host}:{port}");
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

/// A fixed table of names, for tests and for pinning names to addresses.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    table: HashMap<String, Vec<std::net::IpAddr>>,
}

impl StaticResolver {
    /// An empty table: every name fails to resolve.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `host` to `addrs`, tried in this order.
    pub fn with(mut self, host: &str, addrs: &[std::net::IpAddr]) -> Self {
        self.table.insert(host.to_ascii_lowercase(), addrs.to_vec());
        self
    }
}

impl Resolve for StaticResolver {
    fn resolve(&self, host: &str, port: u16) -> Resolving {
        let found = self.table.get(&host.to_ascii_lowercase()).map(|ips| {
            ips.iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect::<Vec<_>>()
        });
        Box::pin(async move {
            match found {
                Some(addrs) if !addrs.is_empty() => Ok(addrs),
                _ => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "name not in the static table",
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_table_resolves_and_fails() {
        let r = StaticResolver::new().with("Example.test", &["127.0.0.1".parse().unwrap()]);
        let addrs = r.resolve("example.TEST", 8080).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
        assert_eq!(
            r.resolve("other.test", 80).await.unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}

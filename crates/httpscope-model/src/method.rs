use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! methods {
    ($($variant:ident => $name:literal,)*) => {
        /// An HTTP request method: the registered ones (RFC 9110, WebDAV, and the few extension
        /// methods seen in the wild). A token outside this list is not a method we report: the
        /// parser treats such a line as "not HTTP" and resynchronises, which keeps random bytes
        /// from becoming requests.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Method {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Method {
            /// Every method, in declaration order.
            pub const ALL: &'static [Method] = &[$(Method::$variant,)*];

            /// The method as sent on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $(Method::$variant => $name,)* }
            }

            /// Recognises a method token exactly as sent (methods are case-sensitive).
            #[inline]
            pub fn from_bytes(token: &[u8]) -> Option<Method> {
                $(if token == $name.as_bytes() { return Some(Method::$variant); })*
                None
            }
        }
    };
}

// `from_bytes` tries the names in this order, so the common methods come first.
methods! {
    Get => "GET",
    Post => "POST",
    Put => "PUT",
    Delete => "DELETE",
    Head => "HEAD",
    Options => "OPTIONS",
    Patch => "PATCH",
    Connect => "CONNECT",
    Trace => "TRACE",
    Query => "QUERY",
    Propfind => "PROPFIND",
    Proppatch => "PROPPATCH",
    Mkcol => "MKCOL",
    Copy => "COPY",
    Move => "MOVE",
    Lock => "LOCK",
    Unlock => "UNLOCK",
    Report => "REPORT",
    Search => "SEARCH",
    Purge => "PURGE",
    Link => "LINK",
    Unlink => "UNLINK",
}

impl Method {
    /// The longest method name, in bytes. A resynchronising parser needs no more than this plus
    /// one space to recognise a request line's start.
    pub const MAX_LEN: usize = 9;

    /// Whether a retry is safe by RFC 9110 (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, QUERY...).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Options
                | Method::Trace
                | Method::Put
                | Method::Delete
                | Method::Query
                | Method::Propfind
                | Method::Search
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The token is not a method httpscope knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMethod;

impl fmt::Display for UnknownMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown http method")
    }
}

impl std::error::Error for UnknownMethod {}

impl FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::from_bytes(s.as_bytes()).ok_or(UnknownMethod)
    }
}

impl Serialize for Method {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_method() {
        for &m in Method::ALL {
            assert_eq!(Method::from_bytes(m.as_str().as_bytes()), Some(m));
            assert!(m.as_str().len() <= Method::MAX_LEN);
        }
        assert_eq!(Method::from_bytes(b"get"), None);
        assert_eq!(Method::from_bytes(b"GETX"), None);
        assert_eq!(Method::from_bytes(b""), None);
    }
}

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A process name as the kernel keeps it (`task->comm`): at most 15 bytes, stored inline so
/// that carrying it on every transaction costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    /// The longest name kept; longer input is cut, as the kernel does.
    pub const MAX_LEN: usize = 15;

    /// Builds a name from raw bytes, stopping at the first NUL and at [`Comm::MAX_LEN`] bytes.
    pub fn from_bytes(raw: &[u8]) -> Self {
        let end = raw
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw.len())
            .min(Self::MAX_LEN);
        let mut bytes = [0u8; 16];
        bytes[..end].copy_from_slice(&raw[..end]);
        Comm {
            bytes,
            len: end as u8,
        }
    }

    /// The name's bytes (not necessarily UTF-8: the kernel does not promise it).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The name as text, with invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Self {
        Comm::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

impl Serialize for Comm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string_lossy())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(Comm::from(&*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_nul_and_length() {
        assert_eq!(Comm::from_bytes(b"nginx\0garbage").as_bytes(), b"nginx");
        assert_eq!(
            Comm::from("a-very-long-process-name").as_bytes(),
            b"a-very-long-pro"
        );
        assert_eq!(Comm::from("").to_string(), "");
    }
}

//! ETW activity identifiers.

use std::fmt;
use std::str::FromStr;

/// A GUID as ETW uses it for `ActivityID` / `RelatedActivityID`, held as the 128-bit number
/// its canonical text spells (`80000002-0001-fb00-0000-000000000000` is
/// `0x80000002_0001_fb00_0000_000000000000`), so that the text form of a replay file and the
/// binary `GUID` struct of a live event give the same key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub u128);

impl Guid {
    /// The all-zero GUID (an event without activity).
    pub const NIL: Guid = Guid(0);

    /// From the fields of a Windows `GUID` struct (`Data1`, `Data2`, `Data3`, `Data4`).
    pub fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        Guid(
            (u128::from(d1) << 96)
                | (u128::from(d2) << 80)
                | (u128::from(d3) << 64)
                | u128::from(u64::from_be_bytes(d4)),
        )
    }

    /// From the 16 bytes of a Windows `GUID` in memory (`Data1..3` little-endian).
    pub fn from_le_bytes(b: [u8; 16]) -> Guid {
        let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let d2 = u16::from_le_bytes([b[4], b[5]]);
        let d3 = u16::from_le_bytes([b[6], b[7]]);
        let mut d4 = [0u8; 8];
        d4.copy_from_slice(&b[8..16]);
        Guid::from_fields(d1, d2, d3, d4)
    }

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, with or without braces, any case.
    pub fn parse(s: &str) -> Option<Guid> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(s);
        let b = s.as_bytes();
        if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return None;
        }
        let mut v: u128 = 0;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                continue;
            }
            let d = (c as char).to_digit(16)?;
            v = (v << 4) | u128::from(d);
        }
        Some(Guid(v))
    }
}

impl FromStr for Guid {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Guid::parse(s).ok_or(())
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_struct_forms_agree() {
        let g = Guid::parse("{80000002-0001-FB00-0000-000000000000}").unwrap();
        assert_eq!(g.to_string(), "80000002-0001-fb00-0000-000000000000");
        let mem = [
            0x02, 0, 0, 0x80, 0x01, 0, 0x00, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(Guid::from_le_bytes(mem), g);
        assert_eq!(Guid::parse("80000002-0001-fb00-0000-00000000000"), None);
        assert_eq!(Guid::parse("80000002x0001-fb00-0000-000000000000"), None);
        assert_eq!(Guid::parse("8000000g-0001-fb00-0000-000000000000"), None);
    }
}

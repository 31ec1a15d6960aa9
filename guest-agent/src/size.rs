//! Byte sizes with binary suffixes (`512`, `4K`, `1M`, `2G`), as fio and sysbench users write them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A size in bytes, parsed from a number with an optional binary suffix K, M, G or T
/// (powers of 1024; an optional trailing `B`/`iB` is accepted: `4KiB`, `1MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// Why a size string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    /// Nothing numeric was given.
    #[error("size {0:?} is not a number with an optional K/M/G/T suffix (write e.g. 4K, 1M, 2G)")]
    Malformed(String),
    /// The value does not fit in 64 bits.
    #[error("size {0:?} is too large")]
    Overflow(String),
}

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, suffix) = t.split_at(digits_end);
        if num.is_empty() {
            return Err(SizeError::Malformed(s.to_string()));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| SizeError::Overflow(s.to_string()))?;
        let suffix = suffix.trim().to_ascii_uppercase();
        let unit = suffix
            .strip_suffix("IB")
            .or_else(|| suffix.strip_suffix('B'))
            .unwrap_or(&suffix);
        let shift = match unit {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(SizeError::Malformed(s.to_string())),
        };
        n.checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| SizeError::Overflow(s.to_string()))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 4] = [("T", 40), ("G", 30), ("M", 20), ("K", 10)];
        for (unit, shift) in UNITS {
            let m = 1u64 << shift;
            if self.0 >= m && self.0.is_multiple_of(m) {
                return write!(f, "{}{unit}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A whole number of bytes or text with a suffix; anything else named as it is.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: a whole number of bytes or text like \"4K\", \"1M\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size {n} is negative; a size counts bytes")))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "size {n} is not a whole number of bytes; write e.g. 4096 or \"4K\""
                )))
            }
            fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<ByteSize, E> {
                t.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        for (text, bytes) in [
            ("512", 512),
            ("4K", 4096),
            ("4k", 4096),
            ("4KiB", 4096),
            ("1M", 1 << 20),
            ("1MB", 1 << 20),
            ("64M", 64 << 20),
            ("2G", 2 << 30),
            ("1T", 1 << 40),
            (" 16K ", 16384),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "K", "1.5M", "4X", "-1", "1 M B"] {
            assert!(
                matches!(text.parse::<ByteSize>(), Err(SizeError::Malformed(_))),
                "{text}"
            );
        }
        assert!(matches!(
            "99999999999999999999".parse::<ByteSize>(),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            "17179869184G".parse::<ByteSize>(),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn displays_round_trip() {
        for b in [512u64, 4096, 1 << 20, 3 << 30, 1000] {
            let s = ByteSize(b).to_string();
            assert_eq!(s.parse::<ByteSize>().unwrap().0, b, "{s}");
        }
        assert_eq!(ByteSize(1 << 20).to_string(), "1M");
    }

    #[test]
    fn deserializes_number_or_text() {
        let v: Vec<ByteSize> = serde_json::from_str(r#"[4096, "4K"]"#).unwrap();
        assert_eq!(v, vec![ByteSize(4096), ByteSize(4096)]);
    }
}

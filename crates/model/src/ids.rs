//! Fixed-size trace and span identifiers.
//!
//! Ids are kept as bytes everywhere inside chaintrace; hex appears only at the
//! edges (wire formats, the API, the terminal). In human-readable serde formats
//! (JSON) they serialize as lowercase hex, in binary formats as raw bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a byte string or hex string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id has the wrong number of bytes.
    #[error("{what} has {got} bytes, want {want}")]
    Length {
        /// `traceId` or `spanId`.
        what: &'static str,
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// All bytes are zero, which OTLP defines as invalid.
    #[error("{what} is all zeros, which is not a valid id")]
    Zero {
        /// `traceId` or `spanId`.
        what: &'static str,
    },
    /// The text is not hex.
    #[error("{what} {text:?} is not hex")]
    NotHex {
        /// `traceId` or `spanId`.
        what: &'static str,
        /// The offending text (cut to 64 characters).
        text: String,
    },
}

macro_rules! id_type {
    ($name:ident, $len:expr, $what:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Number of bytes in this id.
            pub const LEN: usize = $len;

            /// Builds an id from wire bytes, rejecting wrong lengths and the all-zero id.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| IdError::Length {
                    what: $what,
                    got: bytes.len(),
                    want: $len,
                })?;
                if arr == [0u8; $len] {
                    return Err(IdError::Zero { what: $what });
                }
                Ok(Self(arr))
            }

            /// Parses lowercase or uppercase hex of exactly the right length.
            pub fn from_hex(text: &str) -> Result<Self, IdError> {
                let bytes = hex::decode(text).map_err(|_| IdError::NotHex {
                    what: $what,
                    text: text.chars().take(64).collect(),
                })?;
                Self::from_bytes(&bytes)
            }

            /// Lowercase hex, as OTLP/JSON and the Jaeger API spell ids.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = String::deserialize(d)?;
                    Self::from_hex(&text).map_err(serde::de::Error::custom)
                } else {
                    <[u8; $len]>::deserialize(d).map(Self)
                }
            }
        }
    };
}

id_type!(
    TraceId,
    16,
    "traceId",
    "A 16-byte trace id, the same for every span of one request."
);
id_type!(
    SpanId,
    8,
    "spanId",
    "An 8-byte span id, unique within its trace."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let id = TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap();
        assert_eq!(id.to_string(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(
            SpanId::from_bytes(&[1, 2, 3, 4, 5, 6])
                .unwrap_err()
                .to_string(),
            "spanId has 6 bytes, want 8"
        );
        assert!(matches!(
            TraceId::from_bytes(&[0; 16]),
            Err(IdError::Zero { .. })
        ));
        assert!(matches!(
            SpanId::from_hex("zz00000000000000"),
            Err(IdError::NotHex { .. })
        ));
    }

    #[test]
    fn serde_is_hex_in_json_and_bytes_in_postcard() {
        let id = SpanId([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"0102030405060708\"");
        let bin = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bin.len(), 8);
        assert_eq!(postcard::from_bytes::<SpanId>(&bin).unwrap(), id);
    }
}

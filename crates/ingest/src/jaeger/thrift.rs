//! Thrift compact and binary protocol primitives: integers, strings,
//! message headers, struct fields, list/set/map headers, and skipping any
//! value of any type. Knows nothing of Jaeger's structs; `super::batch`
//! walks those.
//!
//! Every read is bounded by the bytes actually sent: a declared length or
//! element count is checked against what is left before anything is read
//! or allocated for it, and containers nest at most [`MAX_DEPTH`] deep, so
//! no input can make the reader allocate more than its own size or
//! overflow the stack.

use std::fmt;

/// The deepest a struct, list, set or map may sit inside others. Jaeger's
/// own structs need 6 (args → Batch → spans → Span → logs → Log → fields
/// → Tag); the rest is room for unknown fields of future versions.
pub const MAX_DEPTH: u32 = 64;

/// Which Thrift protocol the bytes are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThriftProtocol {
    /// TCompactProtocol: the Jaeger agent's UDP port 6831.
    Compact,
    /// TBinaryProtocol: the Jaeger agent's UDP port 6832 and the
    /// collector's `POST /api/traces` (`application/x-thrift`).
    Binary,
}

impl fmt::Display for ThriftProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ThriftProtocol::Compact => "compact",
            ThriftProtocol::Binary => "binary",
        })
    }
}

/// Thrift's value types, whatever number a protocol gives them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TType {
    Bool,
    I8,
    I16,
    I32,
    I64,
    Double,
    Binary,
    List,
    Set,
    Map,
    Struct,
    Uuid,
}

impl TType {
    /// The type numbers of TBinaryProtocol (also TType in every Thrift library).
    fn from_binary(n: u8) -> Option<TType> {
        Some(match n {
            2 => TType::Bool,
            3 => TType::I8,
            4 => TType::Double,
            6 => TType::I16,
            8 => TType::I32,
            10 => TType::I64,
            11 => TType::Binary,
            12 => TType::Struct,
            13 => TType::Map,
            14 => TType::Set,
            15 => TType::List,
            16 => TType::Uuid,
            _ => return None,
        })
    }

    /// The element type numbers of TCompactProtocol. The spec says 2 for
    /// bool, the Java library writes 1 (its "true" field type): both are read.
    fn from_compact(n: u8) -> Option<TType> {
        Some(match n {
            1 | 2 => TType::Bool,
            3 => TType::I8,
            4 => TType::I16,
            5 => TType::I32,
            6 => TType::I64,
            7 => TType::Double,
            8 => TType::Binary,
            9 => TType::List,
            10 => TType::Set,
            11 => TType::Map,
            12 => TType::Struct,
            13 => TType::Uuid,
            _ => return None,
        })
    }

    /// The fewest bytes one value of this type takes in `protocol`: a
    /// declared count times this must fit in what is left.
    fn min_bytes(self, protocol: ThriftProtocol) -> usize {
        match (protocol, self) {
            (_, TType::Bool | TType::I8 | TType::Struct) => 1,
            (_, TType::Double) => 8,
            (_, TType::Uuid) => 16,
            (ThriftProtocol::Compact, _) => 1,
            (ThriftProtocol::Binary, TType::I16) => 2,
            (ThriftProtocol::Binary, TType::I32 | TType::Binary) => 4,
            (ThriftProtocol::Binary, TType::I64) => 8,
            (ThriftProtocol::Binary, TType::List | TType::Set) => 5,
            (ThriftProtocol::Binary, TType::Map) => 6,
        }
    }
}

/// What was wrong, and where: the byte offset from the start of the
/// input, what the reader expected there, and the place in the Jaeger
/// structs (`batch.spans[3].tags[1]`) when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Jaeger Thrift ({protocol}) at byte {offset}{}: {problem}", place_suffix(.place))]
pub struct ThriftError {
    /// The protocol the bytes were read as.
    pub protocol: ThriftProtocol,
    /// Offset of the first byte that could not be read.
    pub offset: usize,
    /// Where in the Jaeger structs, outermost first; empty when unknown.
    pub place: String,
    /// What was wrong.
    pub problem: String,
    /// Whether decoding stopped at its memory budget (see
    /// [`ThriftError::is_over_budget`]).
    over_budget: bool,
}

fn place_suffix(place: &str) -> String {
    if place.is_empty() {
        String::new()
    } else {
        format!(" ({place})")
    }
}

impl ThriftError {
    /// Whether the bytes were fine so far but decoding them would take more
    /// memory than it was given: the sender should send smaller batches.
    pub fn is_over_budget(&self) -> bool {
        self.over_budget
    }

    /// Prefixes the place with `segment` (e.g. `spans[3]`) on the way out.
    #[cold]
    pub(super) fn within(mut self, segment: &str) -> Self {
        self.place = if self.place.is_empty() {
            segment.to_string()
        } else if self.place.starts_with('[') {
            format!("{segment}{}", self.place)
        } else {
            format!("{segment}.{}", self.place)
        };
        self
    }
}

pub(super) type Result<T> = std::result::Result<T, ThriftError>;

/// The unread rest of the input, in one protocol.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    protocol: ThriftProtocol,
    /// Containers entered and not left.
    depth: u32,
    /// A compact bool field's value, which its field header carries.
    field_bool: Option<bool>,
    /// Decoded memory this read may take, and what is left of it.
    budget: usize,
    left: usize,
}

impl<'a> Reader<'a> {
    /// A reader whose decoded values may take `budget` bytes (see
    /// [`Reader::charge`]).
    pub(super) fn new(bytes: &'a [u8], protocol: ThriftProtocol, budget: usize) -> Self {
        Reader {
            bytes,
            pos: 0,
            protocol,
            depth: 0,
            field_bool: None,
            budget,
            left: budget,
        }
    }

    /// Bytes charged so far.
    pub(super) fn used(&self) -> usize {
        self.budget - self.left
    }

    /// Charges `bytes` of decoded memory; past the budget, an error that
    /// [`ThriftError::is_over_budget`] recognises. Lists are charged when
    /// their header is read, strings when read: before anything is built.
    pub(super) fn charge(&mut self, bytes: usize) -> Result<()> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => {
                let mut e = self.error(format_args!(
                    "decoded, the batch would take more than {} MiB of memory; send smaller batches",
                    self.budget >> 20
                ));
                e.over_budget = true;
                Err(e)
            }
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// An error at the current offset.
    #[cold]
    pub(super) fn error(&self, problem: impl fmt::Display) -> ThriftError {
        self.error_at(self.pos, problem)
    }

    #[cold]
    fn error_at(&self, offset: usize, problem: impl fmt::Display) -> ThriftError {
        ThriftError {
            protocol: self.protocol,
            offset,
            place: String::new(),
            problem: problem.to_string(),
            over_budget: false,
        }
    }

    fn take(&mut self, len: usize, expected: &str) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(self.error(format_args!(
                "want {expected} ({len} bytes), only {} left",
                self.remaining()
            )));
        }
        let taken = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, expected: &str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, expected)?);
        Ok(out)
    }

    fn byte(&mut self, expected: &str) -> Result<u8> {
        Ok(self.array::<1>(expected)?[0])
    }

    /// An unsigned LEB128 varint of at most 10 bytes that fits 64 bits.
    fn varint(&mut self, expected: &str) -> Result<u64> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err(self.error_at(
                    start,
                    format_args!("want {expected} (a varint), the data ends inside it"),
                ));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(self.error_at(
            start,
            format_args!("want {expected}, got a varint longer than 64 bits"),
        ))
    }

    /// A compact varint that must fit 32 bits.
    fn varint32(&mut self, expected: &str) -> Result<u32> {
        let start = self.pos;
        let value = self.varint(expected)?;
        u32::try_from(value).map_err(|_| {
            self.error_at(
                start,
                format_args!("want {expected}, got a varint over 32 bits"),
            )
        })
    }

    pub(super) fn i16(&mut self, expected: &str) -> Result<i16> {
        match self.protocol {
            ThriftProtocol::Binary => Ok(i16::from_be_bytes(self.array(expected)?)),
            ThriftProtocol::Compact => {
                let start = self.pos;
                let value = self.i32(expected)?;
                i16::try_from(value).map_err(|_| {
                    self.error_at(
                        start,
                        format_args!("want {expected}, {value} is over 16 bits"),
                    )
                })
            }
        }
    }

    pub(super) fn i32(&mut self, expected: &str) -> Result<i32> {
        match self.protocol {
            ThriftProtocol::Binary => Ok(i32::from_be_bytes(self.array(expected)?)),
            ThriftProtocol::Compact => {
                let zigzag = self.varint32(expected)?;
                Ok((zigzag >> 1) as i32 ^ -((zigzag & 1) as i32))
            }
        }
    }

    pub(super) fn i64(&mut self, expected: &str) -> Result<i64> {
        match self.protocol {
            ThriftProtocol::Binary => Ok(i64::from_be_bytes(self.array(expected)?)),
            ThriftProtocol::Compact => {
                let zigzag = self.varint(expected)?;
                Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
            }
        }
    }

    /// Compact writes doubles little-endian (an early bug kept for
    /// compatibility), binary big-endian.
    pub(super) fn double(&mut self, expected: &str) -> Result<f64> {
        let bytes = self.array::<8>(expected)?;
        Ok(match self.protocol {
            ThriftProtocol::Binary => f64::from_be_bytes(bytes),
            ThriftProtocol::Compact => f64::from_le_bytes(bytes),
        })
    }

    /// A bool: in a compact struct the field header already held it; as
    /// an element it is one byte (compact: 1 is true; binary: non-zero).
    pub(super) fn bool(&mut self, expected: &str) -> Result<bool> {
        if let Some(value) = self.field_bool.take() {
            return Ok(value);
        }
        let byte = self.byte(expected)?;
        Ok(match self.protocol {
            ThriftProtocol::Binary => byte != 0,
            ThriftProtocol::Compact => byte == 1,
        })
    }

    /// A string or binary value, borrowed from the input. Its length is
    /// checked against the bytes left before anything is taken.
    pub(super) fn binary(&mut self, expected: &str) -> Result<&'a [u8]> {
        let start = self.pos;
        let len = match self.protocol {
            ThriftProtocol::Binary => i64::from(i32::from_be_bytes(self.array(expected)?)),
            ThriftProtocol::Compact => i64::from(self.varint32(expected)?),
        };
        match usize::try_from(len) {
            Ok(len) if len <= self.remaining() => self.take(len, expected),
            _ => Err(self.error_at(
                start,
                format_args!(
                    "{expected} declares {len} bytes, only {} left",
                    self.remaining()
                ),
            )),
        }
    }

    /// A string, with any byte sequence that is not UTF-8 replaced by
    /// U+FFFD: Thrift libraries do not check strings, and one odd byte in
    /// a tag should not cost the whole batch.
    pub(super) fn string(&mut self, expected: &str) -> Result<std::borrow::Cow<'a, str>> {
        let bytes = self.binary(expected)?;
        // Kept strings are copied out of the body.
        self.charge(bytes.len())?;
        Ok(String::from_utf8_lossy(bytes))
    }

    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format_args!(
                "values nest more than {MAX_DEPTH} structs, lists, sets and maps deep"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    /// Reads a message header and returns its method name and message type
    /// (1 call, 2 reply, 3 exception, 4 oneway). Binary accepts the strict
    /// header (version word first) and the old one (name first).
    pub(super) fn message_begin(&mut self) -> Result<(&'a [u8], u8)> {
        match self.protocol {
            ThriftProtocol::Compact => {
                let id = self.byte("the protocol id 0x82")?;
                if id != 0x82 {
                    return Err(self.error_at(
                        self.pos - 1,
                        format_args!("want the compact protocol id 0x82, got {id:#04x}"),
                    ));
                }
                let version_and_type = self.byte("the version and message type")?;
                if version_and_type & 0x1f != 1 {
                    return Err(self.error_at(
                        self.pos - 1,
                        format_args!(
                            "want compact protocol version 1, got {}",
                            version_and_type & 0x1f
                        ),
                    ));
                }
                self.varint32("the sequence id")?;
                let name = self.binary("the method name")?;
                Ok((name, version_and_type >> 5))
            }
            ThriftProtocol::Binary => {
                let word = i32::from_be_bytes(self.array("the message header")?);
                if word < 0 {
                    let version = (word as u32) & 0xffff_0000;
                    if version != 0x8001_0000 {
                        return Err(self.error_at(
                            0,
                            format_args!(
                                "want binary protocol version 0x80010000, got {version:#010x}"
                            ),
                        ));
                    }
                    let name = self.binary("the method name")?;
                    self.i32("the sequence id")?;
                    Ok((name, word as u8))
                } else {
                    self.pos -= 4;
                    let name = self.binary("the method name")?;
                    let kind = self.byte("the message type")?;
                    self.i32("the sequence id")?;
                    Ok((name, kind))
                }
            }
        }
    }

    /// Reads a struct, calling `field` with each field's id and type until
    /// the stop field. `field` must read or [`Reader::skip`] the value.
    pub(super) fn read_struct(
        &mut self,
        mut field: impl FnMut(&mut Self, i16, TType) -> Result<()>,
    ) -> Result<()> {
        self.enter()?;
        let mut last_id: i16 = 0;
        loop {
            let header_at = self.pos;
            let header = self.byte("a field header or stop")?;
            if header == 0 {
                break;
            }
            let (id, ty) = match self.protocol {
                ThriftProtocol::Binary => {
                    let ty = TType::from_binary(header).ok_or_else(|| {
                        self.error_at(header_at, format_args!("unknown field type {header}"))
                    })?;
                    (self.i16("a field id")?, ty)
                }
                ThriftProtocol::Compact => {
                    let ty = match header & 0x0f {
                        1 => {
                            self.field_bool = Some(true);
                            TType::Bool
                        }
                        2 => {
                            self.field_bool = Some(false);
                            TType::Bool
                        }
                        n => TType::from_compact(n).ok_or_else(|| {
                            self.error_at(header_at, format_args!("unknown field type {n}"))
                        })?,
                    };
                    let delta = header >> 4;
                    let id = if delta == 0 {
                        self.i16("a field id")?
                    } else {
                        last_id.wrapping_add(i16::from(delta))
                    };
                    last_id = id;
                    (id, ty)
                }
            };
            let result = field(self, id, ty);
            self.field_bool = None;
            result?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Reads a list or set header: the element type and a count already
    /// checked to fit in the bytes left.
    fn list_header(&mut self, expected: &str) -> Result<(TType, usize)> {
        let start = self.pos;
        let (type_number, count) = match self.protocol {
            ThriftProtocol::Binary => {
                let ty = self.byte(expected)?;
                let count = i64::from(self.i32(expected)?);
                (ty, count)
            }
            ThriftProtocol::Compact => {
                let header = self.byte(expected)?;
                let count = match header >> 4 {
                    15 => i64::from(self.varint32(expected)?),
                    short => i64::from(short),
                };
                (header & 0x0f, count)
            }
        };
        let ty = match self.protocol {
            ThriftProtocol::Binary => TType::from_binary(type_number),
            ThriftProtocol::Compact => TType::from_compact(type_number),
        }
        .ok_or_else(|| {
            self.error_at(
                start,
                format_args!("{expected}: unknown element type {type_number}"),
            )
        })?;
        let count = self.checked_count(start, expected, count, ty.min_bytes(self.protocol))?;
        Ok((ty, count))
    }

    /// `count` elements of at least `min_bytes` each, if they can fit.
    fn checked_count(
        &self,
        start: usize,
        expected: &str,
        count: i64,
        min_bytes: usize,
    ) -> Result<usize> {
        match usize::try_from(count) {
            Ok(n) if n.saturating_mul(min_bytes) <= self.remaining() => Ok(n),
            _ => Err(self.error_at(
                start,
                format_args!(
                    "{expected} declares {count} elements, more than the {} bytes left can hold",
                    self.remaining()
                ),
            )),
        }
    }

    /// Reads a list (or set), calling `element` with each element's type
    /// and index. `element` must read or [`Reader::skip`] the value. Each
    /// element is charged twice `element_bytes`, what it takes in a vector
    /// that may have doubled (0 for a list that is not kept).
    pub(super) fn read_list(
        &mut self,
        expected: &str,
        element_bytes: usize,
        mut element: impl FnMut(&mut Self, TType, usize) -> Result<()>,
    ) -> Result<()> {
        self.enter()?;
        let (ty, count) = self.list_header(expected)?;
        self.charge(count.saturating_mul(element_bytes).saturating_mul(2))?;
        for index in 0..count {
            element(self, ty, index)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Skips a map, checking its size like a list's.
    fn skip_map(&mut self) -> Result<()> {
        const EXPECTED: &str = "a map header";
        self.enter()?;
        let start = self.pos;
        let (types, count) = match self.protocol {
            ThriftProtocol::Binary => {
                let key = self.byte(EXPECTED)?;
                let value = self.byte(EXPECTED)?;
                let count = i64::from(self.i32(EXPECTED)?);
                let types = TType::from_binary(key).zip(TType::from_binary(value));
                (types, count)
            }
            ThriftProtocol::Compact => {
                let count = i64::from(self.varint32(EXPECTED)?);
                if count == 0 {
                    self.depth -= 1;
                    return Ok(());
                }
                let header = self.byte(EXPECTED)?;
                let types =
                    TType::from_compact(header >> 4).zip(TType::from_compact(header & 0x0f));
                (types, count)
            }
        };
        let (key, value) =
            types.ok_or_else(|| self.error_at(start, "a map header names an unknown type"))?;
        let pair = key.min_bytes(self.protocol) + value.min_bytes(self.protocol);
        let count = self.checked_count(start, EXPECTED, count, pair)?;
        for _ in 0..count {
            self.skip(key)?;
            self.skip(value)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Skips one value of type `ty`, containers included, within the
    /// depth cap: how unknown and mistyped fields are passed over.
    pub(super) fn skip(&mut self, ty: TType) -> Result<()> {
        const SKIPPED: &str = "a skipped value";
        match ty {
            TType::Bool => self.bool(SKIPPED).map(drop),
            TType::I8 => self.byte(SKIPPED).map(drop),
            TType::I16 => self.i16(SKIPPED).map(drop),
            TType::I32 => self.i32(SKIPPED).map(drop),
            TType::I64 => self.i64(SKIPPED).map(drop),
            TType::Double => self.double(SKIPPED).map(drop),
            TType::Binary => self.binary(SKIPPED).map(drop),
            TType::Uuid => self.take(16, SKIPPED).map(drop),
            TType::Struct => self.read_struct(|r, _, ty| r.skip(ty)),
            TType::List | TType::Set => self.read_list("a skipped list", 0, |r, ty, _| r.skip(ty)),
            TType::Map => self.skip_map(),
        }
    }
}

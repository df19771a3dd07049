//! The byte encoding of attribute values that have no typed column:
//! doubles, bools, arrays and key-value lists (`vparquet3`; older formats
//! used it for arrays and kvlists only).
//!
//! Strings and ints have columns of their own in the attribute struct; the
//! other values are stored in its `bytes` column in this encoding, tagged
//! by the attribute's `type` column. [`super::span_lists`] builds the
//! events and links encoding on it.
//!
//! Why not postcard or JSON: JSON cannot carry NaN or infinities and
//! spells bytes as number lists; postcard does not bound nesting depth while
//! decoding, and a block file is outside data when read back. This format
//! is owned by the block version, keeps every `f64` bit, bounds depth
//! ([`MAX_DEPTH`]) and never allocates more than its input could hold. It
//! does no I/O.
//!
//! Layout of a value's body, by type: nothing (empty), LEB128 length + UTF-8
//! (string), one byte 0/1 (bool), zigzag LEB128 (int), 8 bytes little-endian
//! IEEE bits (double), LEB128 length + bytes (bytes), LEB128 count + values
//! (array), LEB128 count + (LEB128 key length, key, value) pairs (kvlist).
//! Nested values are one tag byte ([`ValueType`]) followed by their body;
//! the top-level tag is the attribute's `type` column, not repeated here.

use chaintrace_model::{AnyValue, KeyValue};

use super::schema::ValueType;

/// The deepest nesting stored; ingest decoders already stop at 100 (OTLP
/// protobuf) or 128 (JSON) levels, so this is never reached by real data.
pub(crate) const MAX_DEPTH: usize = 256;

/// The value nests deeper than [`MAX_DEPTH`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooDeep;

/// Encodes `value` into `out` without its leading tag byte: the attribute's
/// `type` column carries it.
pub(crate) fn encode_body(value: &AnyValue, out: &mut Vec<u8>) -> Result<(), TooDeep> {
    encode_body_at(value, out, 1)
}

fn encode_at(value: &AnyValue, out: &mut Vec<u8>, depth: usize) -> Result<(), TooDeep> {
    out.push(ValueType::of(value) as u8);
    encode_body_at(value, out, depth)
}

fn encode_body_at(value: &AnyValue, out: &mut Vec<u8>, depth: usize) -> Result<(), TooDeep> {
    if depth > MAX_DEPTH {
        return Err(TooDeep);
    }
    match value {
        AnyValue::Empty => {}
        AnyValue::String(s) => put_bytes(out, s.as_bytes()),
        AnyValue::Bool(b) => out.push(u8::from(*b)),
        AnyValue::Int(i) => put_varint(out, ((*i << 1) ^ (*i >> 63)) as u64),
        AnyValue::Double(d) => out.extend_from_slice(&d.to_bits().to_le_bytes()),
        AnyValue::Bytes(b) => put_bytes(out, b),
        AnyValue::Array(items) => {
            put_varint(out, items.len() as u64);
            for item in items {
                encode_at(item, out, depth + 1)?;
            }
        }
        AnyValue::KvList(kvs) => {
            put_varint(out, kvs.len() as u64);
            for kv in kvs {
                put_bytes(out, kv.key.as_bytes());
                encode_at(&kv.value, out, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Encodes an attribute list as a kvlist body (count, then key, tag byte
/// and body of each), its values as deep as top-level attribute values may
/// be. On a value nested too deep, returns that attribute's key.
pub(crate) fn encode_attributes(kvs: &[KeyValue], out: &mut Vec<u8>) -> Result<(), String> {
    put_varint(out, kvs.len() as u64);
    for kv in kvs {
        put_bytes(out, kv.key.as_bytes());
        encode_at(&kv.value, out, 1).map_err(|TooDeep| kv.key.to_string())?;
    }
    Ok(())
}

/// Decodes the body of one value of type `ty` that must span all of `bytes`.
pub(crate) fn decode_body(ty: ValueType, bytes: &[u8]) -> Result<AnyValue, String> {
    let mut input = Input::new(bytes);
    let value = input.body(ty, 1)?;
    input.finish()?;
    Ok(value)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A checked reader over encoded bytes: every read names what was wrong
/// and no count can allocate more than the input could hold.
pub(crate) struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes, pos: 0 }
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), String> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(format!("nested value has {n} trailing bytes")),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// An attribute list written by [`encode_attributes`].
    pub(crate) fn attributes(&mut self) -> Result<Vec<KeyValue>, String> {
        self.kvs(1)
    }

    fn kvs(&mut self, depth: usize) -> Result<Vec<KeyValue>, String> {
        let n = self.len()?;
        let mut kvs = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.string()?.into();
            let value = self.value(depth)?;
            kvs.push(KeyValue { key, value });
        }
        Ok(kvs)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "nested value wants {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at offset {}", self.pos))
    }

    /// A length or count that cannot exceed the bytes left (each element
    /// takes at least one byte), so no allocation outgrows the input.
    pub(crate) fn len(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(format!(
                "nested value claims {n} items or bytes, only {} bytes left",
                self.remaining()
            )),
        }
    }

    pub(crate) fn string(&mut self) -> Result<String, String> {
        let n = self.len()?;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| "nested string is not UTF-8".to_string())
    }

    fn value(&mut self, depth: usize) -> Result<AnyValue, String> {
        let tag = self.byte()?;
        let ty = ValueType::from_u8(tag).ok_or_else(|| format!("unknown value tag {tag}"))?;
        self.body(ty, depth)
    }

    fn body(&mut self, ty: ValueType, depth: usize) -> Result<AnyValue, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested value deeper than {MAX_DEPTH} levels"));
        }
        Ok(match ty {
            ValueType::Empty => AnyValue::Empty,
            ValueType::String => AnyValue::String(self.string()?.into()),
            ValueType::Bool => match self.byte()? {
                0 => AnyValue::Bool(false),
                1 => AnyValue::Bool(true),
                b => return Err(format!("boolean byte {b}")),
            },
            ValueType::Int => {
                let z = self.varint()?;
                AnyValue::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            ValueType::Double => {
                let raw = self.take(8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(raw);
                AnyValue::Double(f64::from_bits(u64::from_le_bytes(b)))
            }
            ValueType::Bytes => {
                let n = self.len()?;
                AnyValue::Bytes(self.take(n)?.to_vec())
            }
            ValueType::Array => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                AnyValue::Array(items)
            }
            ValueType::KvList => AnyValue::KvList(self.kvs(depth + 1)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &AnyValue) -> AnyValue {
        let mut out = Vec::new();
        encode_body(v, &mut out).unwrap();
        decode_body(ValueType::of(v), &out).unwrap()
    }

    fn decode(bytes: &[u8]) -> Result<AnyValue, String> {
        let (&tag, body) = bytes.split_first().ok_or("empty")?;
        decode_body(ValueType::from_u8(tag).ok_or("tag")?, body)
    }

    #[test]
    fn every_variant_round_trips_bit_exactly() {
        let v = AnyValue::KvList(vec![
            KeyValue::new("", AnyValue::Empty),
            KeyValue::new("ünï", "çødé ✓"),
            KeyValue::new("b", true),
            KeyValue::new("min", i64::MIN),
            KeyValue::new("max", i64::MAX),
            KeyValue::new("neg", -1i64),
            KeyValue::new("nan", f64::from_bits(0x7ff8_0000_0000_0abc)),
            KeyValue::new("negzero", -0.0f64),
            KeyValue::new("bytes", AnyValue::Bytes(vec![0, 255, 7])),
            KeyValue::new(
                "arr",
                AnyValue::Array(vec![AnyValue::Array(vec![]), AnyValue::Int(3)]),
            ),
        ]);
        let back = round_trip(&v);
        let (AnyValue::KvList(a), AnyValue::KvList(b)) = (&v, &back) else {
            panic!("not a kvlist: {back:?}");
        };
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.key, y.key);
            match (&x.value, &y.value) {
                (AnyValue::Double(p), AnyValue::Double(q)) => assert_eq!(p.to_bits(), q.to_bits()),
                (p, q) => assert_eq!(p, q),
            }
        }
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic_or_a_huge_allocation() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[99]).is_err());
        assert!(decode(&[ValueType::Bool as u8, 2]).is_err());
        // An array claiming 2^63 items in three bytes.
        assert!(decode(&[ValueType::Array as u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(decode(&[ValueType::String as u8, 2, 0xff, 0xfe]).is_err());
        assert!(decode(&[ValueType::Empty as u8, 0]).is_err());
        assert!(decode(&[ValueType::KvList as u8, 1, 1, b'k', 42]).is_err());
        // Deep nesting is refused on both sides.
        let deep = [ValueType::Array as u8, 1].repeat(MAX_DEPTH + 5);
        assert!(decode(&deep).unwrap_err().contains("deeper"));
        let mut v = AnyValue::Empty;
        for _ in 0..MAX_DEPTH {
            v = AnyValue::Array(vec![v]);
        }
        assert_eq!(encode_body(&v, &mut Vec::new()), Err(TooDeep));
    }
}

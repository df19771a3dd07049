//! Protobuf wire format primitives, read as prost reads them: varints,
//! keys, fixed-width and length-delimited values, unknown-field skipping
//! with prost's recursion budget, and the error that names where a body
//! went wrong. Knows nothing of OTLP's messages; `super` walks those.

use std::fmt;
use std::str;

use super::RECURSION_LIMIT;

/// How often each of `tags` occurs among a message's fields, to size its
/// `Vec`s once. Only a hint: it stops quietly at anything malformed (the
/// real pass reports it) and at groups. Each counted field takes at least
/// two bytes of the body, so the count is bounded by what was sent.
pub(super) fn count_fields<const N: usize>(mut r: Reader<'_>, tags: [u32; N]) -> [usize; N] {
    // A plain loop, not `hint_fields`: this runs for every span decoded.
    let mut counts = [0; N];
    while !r.is_empty() {
        let Ok((tag, wire)) = r.key() else { break };
        if r.skip_for_hint(wire).is_none() {
            break;
        }
        if let Some(i) = tags.iter().position(|t| *t == tag) {
            counts[i] += 1;
        }
    }
    counts
}

/// How many fields the path of tags `path` reaches: `[1, 2, 2]` counts
/// field 2 of each field 2 of each field 1 (of a request: its spans). A
/// hint like [`count_fields`], with the same bounds.
pub(super) fn count_nested(r: Reader<'_>, path: &[u32]) -> usize {
    match path {
        [] => 0,
        [tag] => count_fields(r, [*tag])[0],
        [tag, rest @ ..] => hint_fields(r)
            .filter(|(t, _)| t == tag)
            .filter_map(|(_, body)| body)
            .map(|body| count_nested(Reader::new(body), rest))
            .sum(),
    }
}

/// A message's fields as tags, with the body of each length-delimited one;
/// ends quietly at anything malformed and at groups.
fn hint_fields(mut r: Reader<'_>) -> impl Iterator<Item = (u32, Option<&[u8]>)> {
    std::iter::from_fn(move || {
        if r.is_empty() {
            return None;
        }
        let (tag, wire) = r.key().ok()?;
        Some((tag, r.skip_for_hint(wire)?))
    })
}

/// The protobuf wire types, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireType {
    Varint = 0,
    SixtyFourBit = 1,
    LengthDelimited = 2,
    StartGroup = 3,
    EndGroup = 4,
    ThirtyTwoBit = 5,
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            WireType::Varint => "varint",
            WireType::SixtyFourBit => "64-bit",
            WireType::LengthDelimited => "length-delimited",
            WireType::StartGroup => "start-group",
            WireType::EndGroup => "end-group",
            WireType::ThirtyTwoBit => "32-bit",
        };
        write!(f, "{} ({name})", *self as u8)
    }
}

/// The unread rest of one message (or of the whole body). A field never
/// reads past its message's end: a length that does not fit is an error.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// A field key, checked as prost's `decode_key` checks it.
    pub(super) fn key(&mut self) -> Result<(u32, WireType), WireError> {
        let key = self.take_varint()?;
        let Ok(key) = u32::try_from(key) else {
            return Err(Problem::KeyTooLarge(key).into());
        };
        let wire = match key & 0x07 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            other => return Err(Problem::BadWireType(other).into()),
        };
        let tag = key >> 3;
        if tag == 0 {
            return Err(Problem::FieldNumberZero.into());
        }
        Ok((tag, wire))
    }

    /// A LEB128 varint of at most 10 bytes whose value fits 64 bits, as
    /// prost's `decode_varint` accepts them.
    fn take_varint(&mut self) -> Result<u64, WireError> {
        if let Some(&byte) = self.rest.first() {
            if byte < 0x80 {
                self.rest = &self.rest[1..];
                return Ok(u64::from(byte));
            }
        }
        let mut value = 0;
        for (i, &byte) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                if i == 9 && byte > 0x01 {
                    break;
                }
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(if self.rest.len() < 10 {
            Problem::Truncated
        } else {
            Problem::BadVarint
        }
        .into())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.rest.len() {
            return Err(Problem::Truncated.into());
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    /// Skips a value of type `wire` for a counting hint: the body of a
    /// length-delimited one, `Some(None)` for others, `None` at anything
    /// malformed and at groups.
    fn skip_for_hint(&mut self, wire: WireType) -> Option<Option<&'a [u8]>> {
        match wire {
            WireType::Varint => self.take_varint().ok().map(|_| None),
            WireType::SixtyFourBit => self.take(8).ok().map(|_| None),
            WireType::LengthDelimited => self.take_len_delimited().ok().map(Some),
            WireType::ThirtyTwoBit => self.take(4).ok().map(|_| None),
            WireType::StartGroup | WireType::EndGroup => None,
        }
    }

    fn take_len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.take_varint()?;
        // Checked against what is left before it is used for anything.
        match usize::try_from(len) {
            Ok(len) if len <= self.rest.len() => self.take(len),
            _ => Err(Problem::Truncated.into()),
        }
    }

    pub(super) fn varint(&mut self, wire: WireType) -> Result<u64, WireError> {
        expect(wire, WireType::Varint)?;
        self.take_varint()
    }

    pub(super) fn fixed64(&mut self, wire: WireType) -> Result<u64, WireError> {
        expect(wire, WireType::SixtyFourBit)?;
        let bytes = self.take(8)?;
        let mut le = [0; 8];
        le.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(le))
    }

    pub(super) fn fixed32(&mut self, wire: WireType) -> Result<u32, WireError> {
        expect(wire, WireType::ThirtyTwoBit)?;
        let bytes = self.take(4)?;
        let mut le = [0; 4];
        le.copy_from_slice(bytes);
        Ok(u32::from_le_bytes(le))
    }

    pub(super) fn bytes(&mut self, wire: WireType) -> Result<&'a [u8], WireError> {
        expect(wire, WireType::LengthDelimited)?;
        self.take_len_delimited()
    }

    pub(super) fn string(&mut self, wire: WireType) -> Result<&'a str, WireError> {
        let bytes = self.bytes(wire)?;
        str::from_utf8(bytes).map_err(|e| Problem::NotUtf8(e).into())
    }

    /// A message field of a message whose fields have recursion `budget`:
    /// its body and the budget of its own fields. prost refuses to enter a
    /// message when the budget is spent. Each message is charged
    /// [`MESSAGE_BYTES`] against the memory budget ([`with_memory_budget`]).
    pub(super) fn message(
        &mut self,
        wire: WireType,
        budget: u32,
    ) -> Result<(Reader<'a>, u32), WireError> {
        expect(wire, WireType::LengthDelimited)?;
        if budget == 0 {
            return Err(Problem::TooDeep.into());
        }
        charge(MESSAGE_BYTES)?;
        Ok((Reader::new(self.take_len_delimited()?), budget - 1))
    }

    /// [`Reader::message`] without the memory charge: for a first pass
    /// that checks framing and depth of messages a second pass decodes.
    pub(super) fn frame(
        &mut self,
        wire: WireType,
        budget: u32,
    ) -> Result<(Reader<'a>, u32), WireError> {
        expect(wire, WireType::LengthDelimited)?;
        if budget == 0 {
            return Err(Problem::TooDeep.into());
        }
        Ok((Reader::new(self.take_len_delimited()?), budget - 1))
    }

    /// Skips an unknown field as prost's `skip_field` does, groups
    /// included; like prost it spends recursion budget on nested groups
    /// and refuses any unknown field once the budget is spent.
    pub(super) fn skip(&mut self, tag: u32, wire: WireType, budget: u32) -> Result<(), WireError> {
        if budget == 0 {
            return Err(Problem::TooDeep.into());
        }
        match wire {
            WireType::Varint => self.take_varint().map(drop),
            WireType::SixtyFourBit => self.take(8).map(drop),
            WireType::LengthDelimited => self.take_len_delimited().map(drop),
            WireType::ThirtyTwoBit => self.take(4).map(drop),
            WireType::StartGroup => loop {
                let (inner_tag, inner_wire) = self.key()?;
                if inner_wire == WireType::EndGroup {
                    if inner_tag != tag {
                        return Err(Problem::EndGroupMismatch {
                            start: tag,
                            end: inner_tag,
                        }
                        .into());
                    }
                    return Ok(());
                }
                self.skip(inner_tag, inner_wire, budget - 1)?;
            },
            WireType::EndGroup => Err(Problem::EndGroupAlone.into()),
        }
    }
}

fn expect(got: WireType, want: WireType) -> Result<(), WireError> {
    if got == want {
        Ok(())
    } else {
        Err(Problem::WrongWireType { got, want }.into())
    }
}

/// What was wrong with the bytes.
#[derive(Debug)]
enum Problem {
    Truncated,
    BadVarint,
    KeyTooLarge(u64),
    BadWireType(u32),
    FieldNumberZero,
    WrongWireType { got: WireType, want: WireType },
    EndGroupMismatch { start: u32, end: u32 },
    EndGroupAlone,
    NotUtf8(str::Utf8Error),
    TooDeep,
    OverBudget(usize),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Truncated => f.write_str("the data ends inside this field"),
            Problem::BadVarint => f.write_str("varint longer than 10 bytes or over 64 bits"),
            Problem::KeyTooLarge(key) => write!(f, "field key {key} does not fit 32 bits"),
            Problem::BadWireType(wire) => write!(f, "wire type {wire} does not exist"),
            Problem::FieldNumberZero => f.write_str("field number 0 is not allowed"),
            Problem::WrongWireType { got, want } => {
                write!(f, "wire type {got}, want {want}")
            }
            Problem::EndGroupMismatch { start, end } => {
                write!(f, "group {start} is closed by an end-group of field {end}")
            }
            Problem::EndGroupAlone => f.write_str("end-group without a start-group"),
            Problem::NotUtf8(e) => write!(f, "string is not UTF-8: {e}"),
            Problem::OverBudget(budget) => write!(
                f,
                "the request decodes to more than {budget} bytes, the memory budget of one request"
            ),
            Problem::TooDeep => write!(
                f,
                "messages nested more than {RECURSION_LIMIT} deep (prost's recursion limit)"
            ),
        }
    }
}

/// A [`Problem`] and the path of fields to it. Boxed so that the happy
/// path's `Result`s stay one word wide; the path is built only on the way
/// out of a failed decode.
#[derive(Debug)]
pub(super) struct WireError(Box<WireErrorInner>);

#[derive(Debug)]
struct WireErrorInner {
    problem: Problem,
    /// Innermost first: (field name if known, field number, index in a
    /// repeated field).
    path: Vec<(Option<&'static str>, u32, Option<usize>)>,
    /// Index set by [`WireError::index`] for the next [`WireError::within`].
    index: Option<usize>,
}

impl From<Problem> for WireError {
    #[cold]
    fn from(problem: Problem) -> Self {
        WireError(Box::new(WireErrorInner {
            problem,
            path: Vec::new(),
            index: None,
        }))
    }
}

/// What one nested message costs decoded besides its slot in a vector
/// (charged by [`charge_push`] / [`charge_reserve`]) and the bytes of its
/// strings (which the body holds one for one): allocator overhead and
/// small parts. A kept span is [`charge`]d `size_of::<Span>()` too. An
/// empty message is 2 bytes on the wire: 16 MiB of empty attributes
/// decoded to about 470 MB before this budget.
pub(super) const MESSAGE_BYTES: usize = 16;

thread_local! {
    /// Bytes the decode running on this thread may still allocate. Decoding
    /// is synchronous and runs on one thread, so the budget needs no
    /// plumbing through every function of the decoder.
    static REMAINING: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((usize::MAX, usize::MAX)) };
}

/// Runs `decode` with at most `bytes` of decoded memory (besides string
/// bytes) charged by [`charge`]; past it, decoding stops with an error that
/// [`WireError::over_budget`] recognises. Returns what `decode` returned
/// and the bytes charged.
pub(super) fn with_memory_budget<T>(bytes: usize, decode: impl FnOnce() -> T) -> (T, usize) {
    let before = REMAINING.with(|r| r.replace((bytes, bytes)));
    let out = decode();
    let (left, _) = REMAINING.with(|r| r.replace(before));
    (out, bytes - left)
}

/// Charges the growth of `items` about to take one more element: a full
/// vector doubles, and that (not the element) is what it allocates.
pub(super) fn charge_push<T>(items: &Vec<T>) -> Result<(), WireError> {
    if items.len() == items.capacity() {
        charge(
            items
                .capacity()
                .max(4)
                .saturating_mul(std::mem::size_of::<T>()),
        )
    } else {
        Ok(())
    }
}

/// Charges a reservation of `count` elements of `T`.
pub(super) fn charge_reserve<T>(count: usize) -> Result<(), WireError> {
    charge(count.saturating_mul(std::mem::size_of::<T>()))
}

/// Charges `bytes` against this thread's decode budget.
pub(super) fn charge(bytes: usize) -> Result<(), WireError> {
    REMAINING.with(|r| {
        let (left, budget) = r.get();
        match left.checked_sub(bytes) {
            Some(left) => {
                r.set((left, budget));
                Ok(())
            }
            None => Err(Problem::OverBudget(budget).into()),
        }
    })
}

impl WireError {
    /// Whether decoding stopped at its memory budget (not a malformed body).
    pub(super) fn over_budget(&self) -> bool {
        matches!(self.0.problem, Problem::OverBudget(_))
    }

    /// Notes that the failing element was number `index` of its repeated field.
    #[cold]
    pub(super) fn index(mut self, index: usize) -> Self {
        self.0.index = Some(index);
        self
    }

    /// Notes that the error happened in field `tag`, called `name` if it
    /// is a known field.
    #[cold]
    pub(super) fn within(mut self, name: Option<&'static str>, tag: u32) -> Self {
        let index = self.0.index.take();
        self.0.path.push((name, tag, index));
        self
    }

    /// prost's error type, with the path and problem as its description,
    /// e.g. `resourceSpans[0].scopeSpans[0].spans[2].name: string is not UTF-8: …`.
    pub(super) fn into_prost(self) -> prost::DecodeError {
        let inner = self.0;
        let mut text = String::new();
        for (name, tag, index) in inner.path.iter().rev() {
            if !text.is_empty() {
                text.push('.');
            }
            match name {
                Some(name) => text.push_str(name),
                None => text.push_str(&format!("field {tag}")),
            }
            if let Some(index) = index {
                text.push_str(&format!("[{index}]"));
            }
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&inner.problem.to_string());
        // `DecodeError::new` is prost's only way to build its error with
        // our own description; it is deprecated as "meant for internal
        // use", but `DecodeError::Protobuf` carries a prost error and
        // callers (and the gRPC status text) rely on its wording.
        #[allow(deprecated)]
        prost::DecodeError::new(text)
    }
}

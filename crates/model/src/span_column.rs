//! The span fields a store can hand over as columns, without rebuilding
//! spans: the vocabulary between a columnar read (the embedded store's
//! `stream_columns`) and its readers (SQL). Each column's Arrow type is
//! fixed here, in words, so neither side needs the other's code: the store
//! converts whatever its files hold into these types.

/// One column of a columnar span read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpanColumn {
    /// `FixedSizeBinary(16)`.
    TraceId,
    /// `FixedSizeBinary(8)`.
    SpanId,
    /// `FixedSizeBinary(8)`, null for a root.
    ParentSpanId,
    /// `Utf8`: the resource's `service.name` (empty when unknown).
    Service,
    /// `Utf8`.
    Name,
    /// `UInt8`, OTLP's numbering: 0 unspecified, 1 internal, 2 server,
    /// 3 client, 4 producer, 5 consumer.
    Kind,
    /// `UInt8`, OTLP's numbering: 0 unset, 1 ok, 2 error.
    StatusCode,
    /// `Utf8`, empty when none.
    StatusMessage,
    /// `UInt64`, Unix nanoseconds.
    Start,
    /// `UInt64`, nanoseconds (end − start, 0 when the end is before the start).
    Duration,
    /// `Utf8`, null: the span's own model (`conventions::llm_model`), not
    /// an ancestor's.
    OwnModel,
    /// `Int64`, null: `conventions::tokens` input.
    InputTokens,
    /// `Int64`, null: `conventions::tokens` output.
    OutputTokens,
    /// `Utf8`, null: `conventions::error_type`.
    ErrorType,
}

//! A Thrift encoder of Jaeger's structs, for tests only: written from the
//! protocol specs apart from the decoder, so that the two check each other.

use chaintrace_model::{AnyValue, Span, SpanKind, StatusCode};

use super::ThriftProtocol;

/// A `Tag` value, by `vType`.
#[derive(Debug, Clone, PartialEq)]
pub enum JValue {
    Str(String),
    Double(f64),
    Bool(bool),
    Long(i64),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JTag {
    pub key: String,
    pub value: JValue,
}

pub fn tag(key: &str, value: JValue) -> JTag {
    JTag {
        key: key.into(),
        value,
    }
}

#[derive(Debug, Clone, Default)]
pub struct JLog {
    pub timestamp: i64,
    pub fields: Vec<JTag>,
}

#[derive(Debug, Clone, Default)]
pub struct JRef {
    pub ref_type: i32,
    pub trace_id_low: i64,
    pub trace_id_high: i64,
    pub span_id: i64,
}

#[derive(Debug, Clone, Default)]
pub struct JSpan {
    pub trace_id_low: i64,
    pub trace_id_high: i64,
    pub span_id: i64,
    pub parent_span_id: i64,
    pub operation_name: String,
    pub references: Vec<JRef>,
    pub flags: i32,
    pub start_time: i64,
    pub duration: i64,
    pub tags: Vec<JTag>,
    pub logs: Vec<JLog>,
}

#[derive(Debug, Clone, Default)]
pub struct JBatch {
    pub service_name: String,
    pub process_tags: Vec<JTag>,
    pub spans: Vec<JSpan>,
}

/// Wire type numbers: (binary, compact).
#[derive(Clone, Copy)]
pub enum Ty {
    Bool,
    I32,
    I64,
    Double,
    Binary,
    List,
    Struct,
}

impl Ty {
    fn number(self, protocol: ThriftProtocol) -> u8 {
        let (binary, compact) = match self {
            Ty::Bool => (2, 2),
            Ty::I32 => (8, 5),
            Ty::I64 => (10, 6),
            Ty::Double => (4, 7),
            Ty::Binary => (11, 8),
            Ty::List => (15, 9),
            Ty::Struct => (12, 12),
        };
        match protocol {
            ThriftProtocol::Binary => binary,
            ThriftProtocol::Compact => compact,
        }
    }
}

pub struct Writer {
    pub out: Vec<u8>,
    protocol: ThriftProtocol,
    /// The last field id of each open struct (compact writes deltas).
    last_ids: Vec<i16>,
}

impl Writer {
    pub fn new(protocol: ThriftProtocol) -> Self {
        Writer {
            out: Vec::new(),
            protocol,
            last_ids: vec![0],
        }
    }

    pub fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.out.push(n as u8 | 0x80);
            n >>= 7;
        }
        self.out.push(n as u8);
    }

    pub fn i32(&mut self, n: i32) {
        match self.protocol {
            ThriftProtocol::Binary => self.out.extend(n.to_be_bytes()),
            ThriftProtocol::Compact => self.varint(((n << 1) ^ (n >> 31)) as u32 as u64),
        }
    }

    pub fn i64(&mut self, n: i64) {
        match self.protocol {
            ThriftProtocol::Binary => self.out.extend(n.to_be_bytes()),
            ThriftProtocol::Compact => self.varint(((n << 1) ^ (n >> 63)) as u64),
        }
    }

    pub fn double(&mut self, d: f64) {
        match self.protocol {
            ThriftProtocol::Binary => self.out.extend(d.to_be_bytes()),
            ThriftProtocol::Compact => self.out.extend(d.to_le_bytes()),
        }
    }

    pub fn binary(&mut self, bytes: &[u8]) {
        match self.protocol {
            ThriftProtocol::Binary => self.out.extend((bytes.len() as i32).to_be_bytes()),
            ThriftProtocol::Compact => self.varint(bytes.len() as u64),
        }
        self.out.extend(bytes);
    }

    pub fn message(&mut self, name: &str, kind: u8) {
        match self.protocol {
            ThriftProtocol::Binary => {
                self.out
                    .extend((0x8001_0000u32 | u32::from(kind)).to_be_bytes());
                self.binary(name.as_bytes());
                self.i32(7);
            }
            ThriftProtocol::Compact => {
                self.out.extend([0x82, (kind << 5) | 1]);
                self.varint(7);
                self.binary(name.as_bytes());
            }
        }
    }

    /// A field header; a compact bool field's value goes in it.
    fn header(&mut self, id: i16, ty: Ty, compact_bool: Option<bool>) {
        let last = self.last_ids.last_mut().expect("inside a struct");
        match self.protocol {
            ThriftProtocol::Binary => {
                self.out.push(ty.number(ThriftProtocol::Binary));
                self.out.extend(id.to_be_bytes());
            }
            ThriftProtocol::Compact => {
                let number = match compact_bool {
                    Some(true) => 1,
                    Some(false) => 2,
                    None => ty.number(ThriftProtocol::Compact),
                };
                let delta = i32::from(id) - i32::from(*last);
                *last = id;
                if (1..=15).contains(&delta) {
                    self.out.push(((delta as u8) << 4) | number);
                } else {
                    self.out.push(number);
                    self.i32(i32::from(id));
                }
            }
        }
    }

    pub fn field(&mut self, id: i16, ty: Ty) {
        self.header(id, ty, None);
    }

    pub fn bool_field(&mut self, id: i16, value: bool) {
        self.header(id, Ty::Bool, Some(value));
        if self.protocol == ThriftProtocol::Binary {
            self.out.push(u8::from(value));
        }
    }

    /// Starts the value of a struct (after its field header or list header).
    pub fn struct_begin(&mut self) {
        self.last_ids.push(0);
    }

    pub fn struct_end(&mut self) {
        self.out.push(0);
        self.last_ids.pop();
    }

    pub fn list(&mut self, elem: Ty, len: usize) {
        match self.protocol {
            ThriftProtocol::Binary => {
                self.out.push(elem.number(ThriftProtocol::Binary));
                self.out.extend((len as i32).to_be_bytes());
            }
            ThriftProtocol::Compact => {
                let elem = elem.number(ThriftProtocol::Compact);
                if len < 15 {
                    self.out.push(((len as u8) << 4) | elem);
                } else {
                    self.out.push(0xf0 | elem);
                    self.varint(len as u64);
                }
            }
        }
    }

    fn tags(&mut self, id: i16, tags: &[JTag]) {
        self.field(id, Ty::List);
        self.list(Ty::Struct, tags.len());
        for t in tags {
            self.struct_begin();
            self.field(1, Ty::Binary);
            self.binary(t.key.as_bytes());
            let v_type = match &t.value {
                JValue::Str(_) => 0,
                JValue::Double(_) => 1,
                JValue::Bool(_) => 2,
                JValue::Long(_) => 3,
                JValue::Binary(_) => 4,
            };
            self.field(2, Ty::I32);
            self.i32(v_type);
            match &t.value {
                JValue::Str(s) => {
                    self.field(3, Ty::Binary);
                    self.binary(s.as_bytes());
                }
                JValue::Double(d) => {
                    self.field(4, Ty::Double);
                    self.double(*d);
                }
                JValue::Bool(b) => self.bool_field(5, *b),
                JValue::Long(n) => {
                    self.field(6, Ty::I64);
                    self.i64(*n);
                }
                JValue::Binary(b) => {
                    self.field(7, Ty::Binary);
                    self.binary(b);
                }
            }
            self.struct_end();
        }
    }

    fn span(&mut self, s: &JSpan) {
        self.struct_begin();
        for (id, n) in [
            (1, s.trace_id_low),
            (2, s.trace_id_high),
            (3, s.span_id),
            (4, s.parent_span_id),
        ] {
            self.field(id, Ty::I64);
            self.i64(n);
        }
        self.field(5, Ty::Binary);
        self.binary(s.operation_name.as_bytes());
        if !s.references.is_empty() {
            self.field(6, Ty::List);
            self.list(Ty::Struct, s.references.len());
            for r in &s.references {
                self.struct_begin();
                self.field(1, Ty::I32);
                self.i32(r.ref_type);
                for (id, n) in [(2, r.trace_id_low), (3, r.trace_id_high), (4, r.span_id)] {
                    self.field(id, Ty::I64);
                    self.i64(n);
                }
                self.struct_end();
            }
        }
        self.field(7, Ty::I32);
        self.i32(s.flags);
        self.field(8, Ty::I64);
        self.i64(s.start_time);
        self.field(9, Ty::I64);
        self.i64(s.duration);
        if !s.tags.is_empty() {
            self.tags(10, &s.tags);
        }
        if !s.logs.is_empty() {
            self.field(11, Ty::List);
            self.list(Ty::Struct, s.logs.len());
            for log in &s.logs {
                self.struct_begin();
                self.field(1, Ty::I64);
                self.i64(log.timestamp);
                self.tags(2, &log.fields);
                self.struct_end();
            }
        }
        self.struct_end();
    }

    /// A `Batch` struct's value.
    pub fn batch(&mut self, b: &JBatch) {
        self.struct_begin();
        self.field(1, Ty::Struct);
        self.struct_begin();
        self.field(1, Ty::Binary);
        self.binary(b.service_name.as_bytes());
        if !b.process_tags.is_empty() {
            self.tags(2, &b.process_tags);
        }
        self.struct_end();
        self.field(2, Ty::List);
        self.list(Ty::Struct, b.spans.len());
        for s in &b.spans {
            self.span(s);
        }
        self.struct_end();
    }
}

/// An `Agent.emitBatch` oneway message carrying `batch`.
pub fn emit_batch(batch: &JBatch, protocol: ThriftProtocol) -> Vec<u8> {
    let mut w = Writer::new(protocol);
    w.message("emitBatch", 4);
    w.struct_begin();
    w.field(1, Ty::Struct);
    w.batch(batch);
    w.struct_end();
    w.out
}

/// A bare `Batch` struct.
pub fn bare_batch(batch: &JBatch, protocol: ThriftProtocol) -> Vec<u8> {
    let mut w = Writer::new(protocol);
    w.batch(batch);
    w.out
}

fn jvalue(value: &AnyValue) -> JValue {
    match value {
        AnyValue::String(s) => JValue::Str(s.to_string()),
        AnyValue::Bool(b) => JValue::Bool(*b),
        AnyValue::Int(n) => JValue::Long(*n),
        AnyValue::Double(d) => JValue::Double(*d),
        AnyValue::Bytes(b) => JValue::Binary(b.clone()),
        other => JValue::Str(other.to_display_string()),
    }
}

fn half(bytes: &[u8]) -> i64 {
    i64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

/// Decoded spans (all of one resource) written back as a Jaeger batch, the
/// way OpenTelemetry's Jaeger exporter writes them; links are not.
pub fn from_model(spans: &[Span]) -> JBatch {
    let resource = &spans[0].resource;
    let mut batch = JBatch {
        service_name: resource.service_name().to_string(),
        process_tags: resource
            .attributes
            .iter()
            .filter(|kv| kv.key != "service.name")
            .map(|kv| tag(&kv.key, jvalue(&kv.value)))
            .collect(),
        spans: Vec::new(),
    };
    for s in spans {
        let mut tags: Vec<JTag> = s
            .attributes
            .iter()
            .map(|kv| tag(&kv.key, jvalue(&kv.value)))
            .collect();
        if s.kind != SpanKind::Unspecified {
            tags.push(tag("span.kind", JValue::Str(s.kind.as_str().into())));
        }
        if s.status.code != StatusCode::Unset {
            let code = s.status.code.as_otel_str().into();
            tags.push(tag("otel.status_code", JValue::Str(code)));
            if !s.status.message.is_empty() {
                let message = JValue::Str(s.status.message.clone());
                tags.push(tag("otel.status_description", message));
            }
        }
        if !s.scope.name.is_empty() {
            tags.push(tag(
                "otel.scope.name",
                JValue::Str(s.scope.name.to_string()),
            ));
        }
        let logs = s
            .events
            .iter()
            .map(|e| {
                let mut fields: Vec<JTag> = e
                    .attributes
                    .iter()
                    .map(|kv| tag(&kv.key, jvalue(&kv.value)))
                    .collect();
                fields.push(tag("event", JValue::Str(e.name.clone())));
                JLog {
                    timestamp: (e.time.0 / 1_000) as i64,
                    fields,
                }
            })
            .collect();
        batch.spans.push(JSpan {
            trace_id_low: half(&s.trace_id.0[8..]),
            trace_id_high: half(&s.trace_id.0[..8]),
            span_id: half(&s.span_id.0),
            parent_span_id: s.parent_span_id.map_or(0, |p| half(&p.0)),
            operation_name: s.name.to_string(),
            references: Vec::new(),
            flags: 1,
            start_time: (s.start.0 / 1_000) as i64,
            duration: (s.duration().0 / 1_000) as i64,
            tags,
            logs,
        });
    }
    batch
}

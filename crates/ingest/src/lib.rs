//! Receivers and decoders: wire data in, checked [`chaintrace_model::Span`]s out.
//!
//! This crate owns the edge of chaintrace where senders' bytes arrive. It
//! parses them (OTLP protobuf, OTLP/JSON, Jaeger Thrift and Zipkin v2), turns them once into the
//! span model — rejecting, per span, what cannot be stored (bad ids) and
//! naming where it was — and hands each batch to a [`SpanSink`]. It never
//! stores anything itself: durability and back-pressure belong to whatever
//! implements [`SpanSink`] (the store), and its answer decides what the
//! sender hears (success, "try later", or failure).
//!
//! - [`otlp::decode_request`], [`otlp::decode_protobuf`], [`otlp::decode_json`]:
//!   plain functions from OTLP to [`otlp::DecodedSpans`].
//! - [`otlp::router`]: the OTLP/HTTP receiver (`POST /v1/traces`, protobuf or
//!   JSON, optionally gzip-compressed) as an axum [`axum::Router`].
//! - [`otlp::trace_service`]: the OTLP/gRPC `TraceService/Export` receiver for
//!   a tonic server.
//! - [`otlp::Limits`]: the request size bound shared by both receivers.
//! - [`jaeger::decode_emit_batch`], [`jaeger::decode_batch`]: Jaeger Thrift
//!   (compact and binary) to the same [`otlp::DecodedSpans`].
//! - [`jaeger::serve_udp`]: the Jaeger agent's UDP ports (6831 compact,
//!   6832 binary), counting what it drops in [`jaeger::UdpStats`].
//! - [`zipkin::zipkin_router`]: Zipkin's `POST /api/v2/spans` (v2 JSON or
//!   protobuf, optionally gzip); [`zipkin::decode_json`] and
//!   [`zipkin::decode_protobuf`] to the same [`otlp::DecodedSpans`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use chaintrace_ingest::{otlp, SinkError, SpanSink};
//! use chaintrace_model::Span;
//!
//! struct Discard;
//! #[async_trait::async_trait]
//! impl SpanSink for Discard {
//!     async fn accept(&self, _spans: Vec<Span>) -> Result<(), SinkError> {
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sink: Arc<dyn SpanSink> = Arc::new(Discard);
//! // One Limits, cloned: both receivers share its decode gate.
//! let limits = otlp::Limits::default();
//!
//! let http = otlp::router(sink.clone(), limits.clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4318").await?;
//! tokio::spawn(async move { axum::serve(listener, http).await });
//!
//! tonic::transport::Server::builder()
//!     .add_service(otlp::trace_service(sink, limits))
//!     .serve("127.0.0.1:4317".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```

pub mod jaeger;
pub mod json_span;
pub mod metrics;
pub mod otlp;
mod receive;
mod sink;
pub mod zipkin;

pub use sink::{SinkError, SpanSink};

#[cfg(test)]
mod testing;

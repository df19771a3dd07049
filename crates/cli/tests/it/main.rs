//! End-to-end tests: the real `chaintrace` binary, real clients, real bytes.
//!
//! One test binary for the whole package (each file under tests/ would link
//! its own); each module is one area.

mod ask;
mod bad_input;
mod browser;
mod cli;
mod conventions;
mod durability;
mod fixtures;
mod harness;
mod hostile;
mod jaeger;
mod json_spans;
mod keys;
mod logs;
mod mcp;
mod metrics;
mod openai;
mod openapi;
mod otlp;
mod python_sdk;
mod sampling;
mod sdk;
mod sessions;
mod slow_clients;
mod store;
mod tenants;
mod tls;
mod transfer;
mod zipkin;

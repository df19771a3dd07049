//! `chaintrace import` and `chaintrace export`: traces between chaintrace,
//! Jaeger and any OTLP tool, through a running server's receivers and API.
//!
//! Import reads each file (gzip or plain), tells its format by its
//! content, and sends it where a client would: OTLP/JSON objects (one
//! document, or JSON lines as the Collector's file exporter writes) to
//! OTLP/HTTP as they are; Jaeger JSON (`/api/traces` output) converted to
//! OTLP protobuf; the founding document's JSON spans to `/api/v1/spans`.
//! Everything the server refuses is counted with its reason.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chaintrace_model::{Trace, TraceId};
use clap::{Args, ValueEnum};
use prost::Message;
use serde_json::Value;

use crate::client::ServerArg;

/// Flags of `chaintrace import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files to import: OTLP JSON (`.json`, `.jsonl`), Jaeger JSON, or JSON
    /// spans; gzip-compressed or plain.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The server's OTLP/HTTP traces endpoint.
    #[arg(
        long,
        env = "CHAINTRACE_OTLP_HTTP_URL",
        default_value = "http://127.0.0.1:4318/v1/traces"
    )]
    pub otlp_http: String,
    #[command(flatten)]
    pub server: ServerArg,
}

/// Output formats of `chaintrace export`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// OTLP/JSON, one `ExportTraceServiceRequest` per trace per line (as the
    /// Collector's file exporter writes).
    OtlpJson,
    /// Jaeger's JSON, as `/api/traces` answers (the Jaeger UI opens it).
    Jaeger,
}

/// Flags of `chaintrace export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Trace ids, 32 hex digits each.
    #[arg(required = true)]
    pub trace_ids: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "otlp-json")]
    pub format: ExportFormat,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArg,
}

/// Spans per request sent for converted formats.
const SPANS_PER_REQUEST: usize = 1_000;
/// Bytes per `/api/v1/spans` request: the server decodes at most 3 MiB of
/// JSON spans at the default memory budget.
const JSON_SPAN_REQUEST_BYTES: usize = 1 << 20;

/// What one file gave.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    rejected: u64,
    reasons: Vec<String>,
    warnings: Vec<String>,
}

impl Tally {
    fn reject(&mut self, count: u64, reason: impl Into<String>) {
        self.rejected += count;
        if self.reasons.len() < 10 {
            self.reasons.push(reason.into());
        }
    }
}

/// The input formats import tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Otlp,
    Jaeger,
    JsonSpans,
}

/// Which format a JSON value is in, by its keys.
fn format_of(value: &Value) -> Option<Format> {
    match value {
        Value::Object(map) if map.contains_key("resourceSpans") => Some(Format::Otlp),
        Value::Object(map) if map.contains_key("data") || map.contains_key("spans") => {
            Some(Format::Jaeger)
        }
        Value::Object(map) if map.contains_key("trace_id") => Some(Format::JsonSpans),
        Value::Array(items) => items.first().and_then(format_of),
        _ => None,
    }
}

/// A reader counting the (compressed) bytes read, for the progress line.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The file's JSON values one after another (one document, or JSON
/// lines), read as they are needed, gunzipped if the file is gzip.
fn values(path: &Path, read: Arc<AtomicU64>) -> Result<Box<dyn Iterator<Item = Result<Value>>>> {
    let mut file = BufReader::new(
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut magic = [0u8; 2];
    let gzip = {
        use std::io::BufRead;
        let head = file.fill_buf()?;
        head.len() >= 2 && {
            magic.copy_from_slice(&head[..2]);
            magic == [0x1f, 0x8b]
        }
    };
    let counted = Counting { inner: file, read };
    let reader: Box<dyn Read> = if gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(counted)))
    } else {
        Box::new(counted)
    };
    let name = path.display().to_string();
    Ok(Box::new(
        serde_json::Deserializer::from_reader(reader)
            .into_iter::<Value>()
            .map(move |v| v.with_context(|| format!("{name}: not JSON"))),
    ))
}

/// Shows `spans so far (percent)` on standard error while a large file
/// is read, when it is a terminal.
struct Progress {
    name: String,
    size: u64,
    read: Arc<AtomicU64>,
    shown: bool,
}

impl Progress {
    fn show(&mut self, spans: u64) {
        if self.size < (8 << 20) || !std::io::stderr().is_terminal() {
            return;
        }
        let done = self.read.load(Ordering::Relaxed).min(self.size);
        eprint!(
            "\r{}: {} spans ({}%)   ",
            self.name,
            spans,
            done * 100 / self.size.max(1)
        );
        self.shown = true;
    }

    fn done(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// `chaintrace import FILE...`.
pub async fn import(args: ImportArgs) -> Result<()> {
    let client = args.server.http()?;
    let api = args.server.base().to_string();
    let mut total = Tally::default();
    let mut failed_files = 0;
    for path in &args.files {
        let read = Arc::new(AtomicU64::new(0));
        let mut progress = Progress {
            name: path.display().to_string(),
            size: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            read: Arc::clone(&read),
            shown: false,
        };
        let result = import_file(&client, &args.otlp_http, &api, path, read, &mut progress).await;
        progress.done();
        match result {
            Ok(tally) => {
                println!(
                    "{}: imported {} spans{}",
                    path.display(),
                    tally.accepted,
                    if tally.rejected > 0 {
                        format!(", rejected {}", tally.rejected)
                    } else {
                        String::new()
                    }
                );
                for reason in &tally.reasons {
                    println!("  rejected: {}", crate::render::shown(reason));
                }
                for warning in &tally.warnings {
                    println!("  warning: {}", crate::render::shown(warning));
                }
                total.accepted += tally.accepted;
                total.rejected += tally.rejected;
            }
            Err(e) => {
                failed_files += 1;
                eprintln!("{}: {e:#}", path.display());
            }
        }
    }
    if args.files.len() > 1 {
        println!(
            "in all: imported {} spans from {} files, rejected {}",
            total.accepted,
            args.files.len() - failed_files,
            total.rejected
        );
    }
    if failed_files > 0 {
        bail!(
            "{failed_files} of {} files could not be imported",
            args.files.len()
        );
    }
    Ok(())
}

async fn import_file(
    client: &reqwest::Client,
    otlp_http: &str,
    api: &str,
    path: &Path,
    read: Arc<AtomicU64>,
    progress: &mut Progress,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut json_spans = JsonSpanBatch::default();
    for (n, value) in values(path, read)?.enumerate() {
        let value = value?;
        match format_of(&value) {
            Some(Format::Otlp) => send_otlp_json(client, otlp_http, value, &mut tally).await?,
            Some(Format::Jaeger) => {
                let body = serde_json::to_vec(&value)?;
                let decoded = chaintrace_ingest::jaeger::decode_jaeger_json(&body)
                    .map_err(anyhow::Error::msg)?;
                if decoded.rejected > 0 {
                    tally.reject(decoded.rejected, decoded.error_message());
                }
                for chunk in decoded.spans.chunks(SPANS_PER_REQUEST) {
                    let request = chaintrace_ingest::otlp::to_otlp(chunk);
                    send_otlp_protobuf(client, otlp_http, request, chunk.len() as u64, &mut tally)
                        .await?;
                    progress.show(tally.accepted);
                }
            }
            Some(Format::JsonSpans) => {
                let items = match value {
                    Value::Array(items) => items,
                    object => vec![object],
                };
                for item in items {
                    if let Some(batch) = json_spans.push(item)? {
                        send_json_spans(client, api, batch, &mut tally).await?;
                    }
                }
            }
            None => bail!(
                "value {n} is neither OTLP JSON (resourceSpans), Jaeger JSON (data) nor JSON spans (trace_id)"
            ),
        }
        progress.show(tally.accepted);
    }
    if let Some(batch) = json_spans.take() {
        send_json_spans(client, api, batch, &mut tally).await?;
    }
    Ok(tally)
}

/// JSON spans gathered into requests of at most [`JSON_SPAN_REQUEST_BYTES`].
#[derive(Default)]
struct JsonSpanBatch {
    body: Vec<u8>,
}

impl JsonSpanBatch {
    /// Adds one span; returns a full batch to send, if this one filled it.
    fn push(&mut self, item: Value) -> Result<Option<Vec<u8>>> {
        let line = serde_json::to_vec(&item)?;
        let full = (!self.body.is_empty()
            && self.body.len() + line.len() > JSON_SPAN_REQUEST_BYTES)
            .then(|| std::mem::take(&mut self.body));
        self.body.extend_from_slice(&line);
        self.body.push(b'\n');
        Ok(full)
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        (!self.body.is_empty()).then(|| std::mem::take(&mut self.body))
    }
}

/// Spans in an OTLP/JSON request.
fn otlp_span_count(value: &Value) -> u64 {
    value["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
        .map(|s| s["spans"].as_array().map_or(0, |a| a.len() as u64))
        .sum()
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(reqwest::StatusCode, Vec<u8>)> {
    // Retry what the server says to retry (503), a few times.
    let mut attempt = 0u32;
    loop {
        let response = client
            .post(url)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach {url} — is `chaintrace serve` running?"))?;
        let status = response.status();
        let bytes = response.bytes().await?.to_vec();
        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempt == 4 {
            return Ok((status, bytes));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
        attempt += 1;
    }
}

async fn send_otlp_json(
    client: &reqwest::Client,
    url: &str,
    value: Value,
    tally: &mut Tally,
) -> Result<()> {
    let spans = otlp_span_count(&value);
    let (status, body) = post(client, url, "application/json", serde_json::to_vec(&value)?).await?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        let rejected = answer["partialSuccess"]["rejectedSpans"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| answer["partialSuccess"]["rejectedSpans"].as_u64())
            .unwrap_or(0);
        tally.accepted += spans.saturating_sub(rejected);
        if rejected > 0 {
            tally.reject(
                rejected,
                answer["partialSuccess"]["errorMessage"]
                    .as_str()
                    .unwrap_or_default(),
            );
        }
        Ok(())
    } else {
        tally.reject(
            spans,
            format!(
                "{status}: {}",
                answer["message"].as_str().unwrap_or_default()
            ),
        );
        refused(status)
    }
}

async fn send_otlp_protobuf(
    client: &reqwest::Client,
    url: &str,
    request: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    spans: u64,
    tally: &mut Tally,
) -> Result<()> {
    let (status, body) = post(
        client,
        url,
        "application/x-protobuf",
        request.encode_to_vec(),
    )
    .await?;
    if status.is_success() {
        let rejected =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                &body[..],
            )
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
        tally.accepted += spans.saturating_sub(rejected);
        if rejected > 0 {
            tally.reject(rejected, "refused by the server (partial success)");
        }
        Ok(())
    } else {
        tally.reject(spans, format!("{status}"));
        refused(status)
    }
}

async fn send_json_spans(
    client: &reqwest::Client,
    api: &str,
    body: Vec<u8>,
    tally: &mut Tally,
) -> Result<()> {
    let url = format!("{api}/api/v1/spans");
    let (status, body) = post(client, &url, "application/json", body).await?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    tally.accepted += answer["accepted"].as_u64().unwrap_or(0);
    let rejected = answer["rejected"].as_u64().unwrap_or(0);
    let errors: Vec<String> = answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    if rejected > 0 {
        tally.reject(rejected, errors.join("; "));
    }
    for w in answer["warnings"].as_array().into_iter().flatten() {
        if tally.warnings.len() < 10 {
            tally
                .warnings
                .push(w.as_str().unwrap_or_default().to_string());
        }
    }
    if status.is_success() || (status == reqwest::StatusCode::BAD_REQUEST && rejected > 0) {
        Ok(())
    } else {
        refused(status).with_context(|| answer["error"].as_str().unwrap_or_default().to_string())
    }
}

/// A refusal of a whole request that the next request would meet too.
fn refused(status: reqwest::StatusCode) -> Result<()> {
    bail!("the server refused a request: {status}")
}

/// `chaintrace export TRACE_ID...`.
pub async fn export(args: ExportArgs) -> Result<()> {
    let server = &args.server;
    let mut ids = Vec::with_capacity(args.trace_ids.len());
    for text in &args.trace_ids {
        let id: TraceId = text
            .parse()
            .map_err(|e| anyhow::anyhow!("{text:?} is not a trace id: {e}"))?;
        ids.push(id);
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match args.format {
        ExportFormat::OtlpJson => {
            for id in &ids {
                let value = crate::client::get_json(
                    server,
                    &format!("/api/v1/traces/{}", id.to_hex()),
                    &[],
                )
                .await?;
                let trace: Trace = serde_json::from_value(value)
                    .with_context(|| format!("trace {id}: the server's answer is not a trace"))?;
                serde_json::to_writer(&mut out, &chaintrace_ingest::otlp::to_otlp(&trace.spans))?;
                out.write_all(b"\n")?;
            }
        }
        ExportFormat::Jaeger => {
            let query: Vec<(&str, String)> =
                ids.iter().map(|id| ("traceID", id.to_hex())).collect();
            let answer = crate::client::get_json(server, "/api/traces", &query).await?;
            let found = answer["data"].as_array().map_or(0, Vec::len);
            if found < ids.len() {
                let have: Vec<String> = answer["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["traceID"].as_str().map(str::to_string))
                    .collect();
                let missing: Vec<String> = ids
                    .iter()
                    .map(|id| id.to_hex())
                    .filter(|h| {
                        !have
                            .iter()
                            .any(|x| x.trim_start_matches('0') == h.trim_start_matches('0'))
                    })
                    .collect();
                bail!("not found: {}", missing.join(", "));
            }
            serde_json::to_writer(&mut out, &answer)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

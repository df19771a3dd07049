//! `chaintrace gen`: a load generator that sends realistic LLM-chain traces
//! to any OTLP endpoint (gRPC or HTTP/protobuf) and reports throughput as
//! one JSON line, so chaintrace and other backends can be compared.
//!
//! The pieces: `chain` lays out one trace (the RAG chain, grown into nested
//! agent steps for large traces); `template` encodes it once with markers
//! where ids and times go; `batch` copies and patches templates into export
//! requests (plain code, unit-tested); `send` ships them and classifies the
//! answers. This file only wires workers, stop conditions and reporting.
//!
//! Each of `--concurrency` workers owns a batch builder and loops build →
//! send → count, so building runs on every runtime thread and at most one
//! request per worker is in flight.

mod batch;
mod chain;
mod send;
mod template;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use chaintrace_model::{DurationNanos, UnixNanos};
use clap::{ArgGroup, Args};
use prost::bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use batch::{BatchBuilder, LoadShape, Rng, Templates};
use send::{Delivery, Exporter, RetryPolicy, Target};

/// Flags of `chaintrace gen`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["otlp_grpc", "otlp_http", "dry_run"])
))]
pub struct GenArgs {
    /// API key with the ingest scope, when the server asks for one
    /// (`chaintrace serve --keys`).
    #[arg(long, env = "CHAINTRACE_KEY", hide_env_values = true)]
    pub key: Option<String>,

    /// Send over OTLP/gRPC to this endpoint, e.g. http://127.0.0.1:4317.
    #[arg(long, value_name = "URL")]
    pub otlp_grpc: Option<String>,

    /// Send OTLP/HTTP protobuf to this URL, e.g. http://127.0.0.1:4318/v1/traces
    /// (`/v1/traces` is added when the URL has no path).
    #[arg(long, value_name = "URL")]
    pub otlp_http: Option<String>,

    /// Build and encode batches but send nothing; every batch counts as
    /// acked. Measures the generator's own ceiling.
    #[arg(long)]
    pub dry_run: bool,

    /// Stop after this many traces (default 1000 when --duration is not given).
    #[arg(long, value_name = "N")]
    pub traces: Option<u64>,

    /// Stop after this long, e.g. 30s or 2m.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<DurationNanos>,

    /// Export requests in flight at once (one per worker).
    #[arg(long, default_value_t = 4, value_name = "C",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// gRPC connections (HTTP/2, multiplexed); default min(concurrency, 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub connections: Option<u32>,

    /// Spans per export request; a trace may continue in the next request.
    #[arg(long, default_value_t = 1000, value_name = "B",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_spans: u32,

    /// Spans per trace: 7 is the RAG chain, more adds nested agent steps
    /// (e.g. 10000 for giant traces).
    #[arg(long, default_value_t = 7, value_name = "S",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub spans_per_trace: u32,

    /// Bytes of each gen_ai.prompt and gen_ai.completion attribute.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub attr_bytes: usize,

    /// Share of traces whose api_call fails with RateLimitError (0.0 to 1.0).
    #[arg(long, default_value_t = 0.05, value_name = "F")]
    pub error_rate: f64,

    /// Spread traces over this many service names.
    #[arg(long, default_value_t = 3, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub services: u32,

    /// Lay traces out within this long before now.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub time_spread: DurationNanos,

    /// Start each sender's traces in order across --time-spread, oldest
    /// first, as a live system's arrive (default: anywhere in it). With
    /// it, blocks hold neighbouring minutes, as they would in production.
    #[arg(long)]
    pub in_order: bool,

    /// Seed for ids and choices (default: from the clock, printed at start).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Retries of one request answered "retry later" before it counts as failed.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_retries: u32,
}

/// The one line printed on stdout at the end.
#[derive(Debug, Serialize)]
struct Summary {
    sent_spans: u64,
    acked_spans: u64,
    rejected_spans: u64,
    failed_requests: u64,
    retries: u64,
    seconds: f64,
    spans_per_sec: f64,
}

/// Counters shared by the workers.
#[derive(Debug, Default)]
struct Stats {
    sent_spans: AtomicU64,
    acked_spans: AtomicU64,
    rejected_spans: AtomicU64,
    failed_requests: AtomicU64,
    retries: AtomicU64,
    failure_shown: AtomicBool,
}

impl Stats {
    fn summary(&self, seconds: f64) -> Summary {
        let acked = self.acked_spans.load(Relaxed);
        Summary {
            sent_spans: self.sent_spans.load(Relaxed),
            acked_spans: acked,
            rejected_spans: self.rejected_spans.load(Relaxed),
            failed_requests: self.failed_requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            seconds: (seconds * 1000.0).round() / 1000.0,
            spans_per_sec: if seconds > 0.0 {
                (acked as f64 / seconds).round()
            } else {
                0.0
            },
        }
    }

    fn record(&self, spans: u64, delivery: Delivery) {
        match delivery {
            Delivery::Acked { rejected } => {
                let rejected = rejected.min(spans);
                self.acked_spans.fetch_add(spans - rejected, Relaxed);
                self.rejected_spans.fetch_add(rejected, Relaxed);
            }
            Delivery::Failed(why) => {
                self.failed_requests.fetch_add(1, Relaxed);
                if !self.failure_shown.swap(true, Relaxed) {
                    eprintln!("gen: a request failed (later failures are only counted): {why}");
                }
            }
            Delivery::Stopped => {
                self.failed_requests.fetch_add(1, Relaxed);
            }
        }
    }
}

const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long requests in flight may finish after a stop.
const STOP_GRACE: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the load, prints progress on stderr and the summary on stdout.
pub async fn run(args: GenArgs) -> Result<()> {
    ensure!(
        (0.0..=1.0).contains(&args.error_rate),
        "--error-rate {} is outside 0.0 to 1.0",
        args.error_rate
    );
    let target = match (&args.otlp_grpc, &args.otlp_http) {
        (Some(url), _) => Target::Grpc(url.clone()),
        (_, Some(url)) => Target::Http(with_traces_path(url)),
        _ => Target::DryRun,
    };
    let traces = match (args.traces, args.duration) {
        (None, None) => Some(1000),
        (t, _) => t,
    };
    let load = LoadShape {
        spans_per_trace: args.spans_per_trace as usize,
        batch_spans: args.batch_spans as usize,
        attr_bytes: args.attr_bytes,
        error_rate: args.error_rate,
        services: args.services as usize,
        time_spread: args.time_spread,
        in_order: args.in_order,
    };
    let templates = Arc::new(Templates::new(&load)?);
    let workers = args.concurrency as usize;
    let connections = args.connections.map_or(workers.min(4), |c| c as usize);
    let exporter = Arc::new(
        Exporter::connect(&target, connections, REQUEST_TIMEOUT, args.key.as_deref()).await?,
    );
    let seed = args.seed.unwrap_or_else(|| UnixNanos::now().0);
    let policy = RetryPolicy {
        max_retries: args.max_retries,
        first_backoff: Duration::from_millis(100),
        max_wait: Duration::from_secs(10),
    };
    eprintln!(
        "gen: {} × {} spans in batches of {}, {} workers, {} services, seed {seed}, to {}",
        traces.map_or("unbounded traces".to_string(), |n| format!("{n} traces")),
        load.spans_per_trace,
        load.batch_spans,
        workers,
        load.services,
        match &target {
            Target::Grpc(url) => format!("OTLP/gRPC {url}"),
            Target::Http(url) => format!("OTLP/HTTP {url}"),
            Target::DryRun => "nowhere (dry run)".to_string(),
        }
    );

    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut seeds = Rng::new(seed);
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for lane in 0..workers {
        // Split the budget evenly; the first `n % workers` take one more.
        let budget =
            traces.map(|n| n / workers as u64 + u64::from((lane as u64) < n % workers as u64));
        let builder = BatchBuilder::new(Arc::clone(&templates), seeds.next_u64(), budget);
        tasks.spawn(worker(
            lane,
            builder,
            Arc::clone(&exporter),
            Arc::clone(&stats),
            policy,
            stop_rx.clone(),
        ));
    }

    let deadline = args.duration.map(|d| started + Duration::from_nanos(d.0));
    let mut progress = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut last_acked = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut listening = true;
    let mut stopping = false;
    let mut grace: Option<Instant> = None;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
            },
            signal = &mut ctrl_c, if listening => {
                if signal.is_err() {
                    listening = false; // no signal handling here; run to the end
                } else if !stopping {
                    eprintln!("gen: interrupted; letting requests in flight finish (Ctrl-C again to abandon them)");
                    stopping = true;
                    stop_tx.send_replace(true);
                    grace = Some(Instant::now() + STOP_GRACE);
                    ctrl_c.set(tokio::signal::ctrl_c());
                } else {
                    grace = Some(Instant::now());
                }
            }
            () = sleep_until(deadline), if !stopping => {
                stopping = true;
                stop_tx.send_replace(true);
                grace = Some(Instant::now() + STOP_GRACE);
            }
            () = sleep_until(grace) => {
                eprintln!("gen: abandoning {} requests still in flight", tasks.len());
                tasks.abort_all();
                grace = None;
            }
            _ = progress.tick() => {
                let acked = stats.acked_spans.load(Relaxed);
                eprintln!(
                    "gen: {:>6.1}s  sent {}  acked {}  ({:.0} spans/s)  rejected {}  failed {}  retries {}",
                    started.elapsed().as_secs_f64(),
                    stats.sent_spans.load(Relaxed),
                    acked,
                    (acked - last_acked) as f64 / PROGRESS_EVERY.as_secs_f64(),
                    stats.rejected_spans.load(Relaxed),
                    stats.failed_requests.load(Relaxed),
                    stats.retries.load(Relaxed),
                );
                last_acked = acked;
            }
        }
    }
    let summary = stats.summary(started.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// One worker: build a batch, deliver it, count; until the budget is spent
/// or the run is stopped.
async fn worker(
    lane: usize,
    mut builder: BatchBuilder,
    exporter: Arc<Exporter>,
    stats: Arc<Stats>,
    policy: RetryPolicy,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let Some(batch) = builder.next_batch(UnixNanos::now()) else {
            break;
        };
        stats.sent_spans.fetch_add(batch.spans, Relaxed);
        let delivery = exporter
            .deliver(lane, Bytes::from(batch.body), &policy, &mut stop, || {
                stats.retries.fetch_add(1, Relaxed);
            })
            .await;
        stats.record(batch.spans, delivery);
        // A dry run never waits; let timers and other workers in.
        tokio::task::yield_now().await;
    }
}

/// Sleeps until `at`, forever if `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `http://host:4318` → `http://host:4318/v1/traces`; URLs with a path stay.
fn with_traces_path(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.path() == "/" => {
            format!("{}/v1/traces", url.trim_end_matches('/'))
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_url_gets_the_traces_path_only_when_it_has_none() {
        assert_eq!(
            with_traces_path("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            with_traces_path("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            with_traces_path("http://collector/otlp/v1/traces"),
            "http://collector/otlp/v1/traces"
        );
    }

    #[test]
    fn summary_counts_acked_minus_rejected() {
        let stats = Stats::default();
        stats.record(1000, Delivery::Acked { rejected: 10 });
        stats.record(1000, Delivery::Failed("HTTP 400".into()));
        stats.record(1000, Delivery::Stopped);
        let s = stats.summary(2.0);
        assert_eq!(
            (s.acked_spans, s.rejected_spans, s.failed_requests),
            (990, 10, 2)
        );
        assert_eq!(s.spans_per_sec, 495.0);
        let line = serde_json::to_string(&s).unwrap();
        assert!(
            line.starts_with(r#"{"sent_spans":0,"acked_spans":990,"#),
            "{line}"
        );
    }
}

//! `chaintrace serve`: opens the embedded store, then runs the OTLP receivers
//! and the query API until Ctrl-C or SIGTERM.
//!
//! Startup order matters for durability and honesty: the WAL is replayed
//! before any listener is bound, so once the "listening" lines are printed
//! every acknowledged span is queryable and `/api/v1/health` answers 200.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chaintrace_analysis::PriceTable;
use chaintrace_ingest::jaeger::ThriftProtocol;
use chaintrace_ingest::metrics::Protocol as IngestProtocol;
use chaintrace_ingest::otlp::Limits;
use chaintrace_ingest::SpanSink;
use chaintrace_metrics::Registry;
use chaintrace_model::{parse_bytes, DurationNanos};
use chaintrace_server::auth::{Answer, Gate, Policy, Scope};
use chaintrace_store::sampling::KeepRule;
use chaintrace_store::{EmbeddedConfig, EmbeddedStore, SamplingConfig, Store};

use clap::Args;
use tokio::net::TcpListener;

use crate::listener::{ConnectionLimits, Protocol, Tls, MIN_HEADER_BYTES};
use crate::tenants::{BuildRoutes, PerTenant, Tenant, Tenants};
use chaintrace_server::auth::DEFAULT_TENANT;

/// Flags of `chaintrace serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "CHAINTRACE_DATA_DIR", default_value = "./chaintrace-data")]
    pub data_dir: PathBuf,

    /// Address of the OTLP/gRPC receiver.
    #[arg(long, env = "CHAINTRACE_OTLP_GRPC", default_value = "127.0.0.1:4317")]
    pub otlp_grpc: SocketAddr,

    /// Address of the OTLP/HTTP receiver (`POST /v1/traces`).
    #[arg(long, env = "CHAINTRACE_OTLP_HTTP", default_value = "127.0.0.1:4318")]
    pub otlp_http: SocketAddr,

    /// Address of the query API (and, later, the web UI).
    #[arg(long, env = "CHAINTRACE_HTTP", default_value = "127.0.0.1:16686")]
    pub http: SocketAddr,

    /// UDP address of the Jaeger agent receiver for Thrift compact
    /// (`emitBatch`, what Jaeger clients send to 6831), or `off`.
    #[arg(long, env = "CHAINTRACE_JAEGER_COMPACT", default_value = "127.0.0.1:6831", value_parser = parse_listen)]
    pub jaeger_compact: Listen,

    /// UDP address of the Jaeger agent receiver for Thrift binary (6832), or `off`.
    #[arg(long, env = "CHAINTRACE_JAEGER_BINARY", default_value = "127.0.0.1:6832", value_parser = parse_listen)]
    pub jaeger_binary: Listen,

    /// Address of the Jaeger collector receiver (`POST /api/traces`,
    /// Thrift binary, what Jaeger exporters send to a collector endpoint), or `off`.
    #[arg(long, env = "CHAINTRACE_JAEGER_HTTP", default_value = "127.0.0.1:14268", value_parser = parse_listen)]
    pub jaeger_http: Listen,

    /// Address of the Zipkin receiver (`POST /api/v2/spans`, JSON or
    /// protobuf), or `off`.
    #[arg(long, env = "CHAINTRACE_ZIPKIN", default_value = "127.0.0.1:9411", value_parser = parse_listen)]
    pub zipkin: Listen,

    /// Largest accepted request, after decompression: bytes, or with a unit (`16MiB`, `512KiB`).
    #[arg(long, env = "CHAINTRACE_MAX_REQUEST_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    pub max_request_bytes: usize,

    /// Connections served at once on each listener; more wait until one closes.
    #[arg(long, env = "CHAINTRACE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Time a client has to send a request's headers (HTTP/1), and to send
    /// its first request on a new connection (`10s`, `500ms`).
    #[arg(long, env = "CHAINTRACE_HEADER_TIMEOUT", default_value = "10s")]
    pub header_timeout: String,

    /// Longest pause allowed while a request body is arriving; a body sent
    /// steadily may take as long as it needs (`30s`).
    #[arg(long, env = "CHAINTRACE_BODY_TIMEOUT", default_value = "30s")]
    pub body_timeout: String,

    /// Close a connection that has had no request in flight for this long
    /// (`60s`). HTTP/1 connections waiting for their next request are also
    /// bounded by --header-timeout.
    #[arg(long, env = "CHAINTRACE_IDLE_TIMEOUT", default_value = "60s")]
    pub idle_timeout: String,

    /// Largest request line plus headers; larger ones get 431 (`64KiB`, at least `8KiB`).
    #[arg(long, env = "CHAINTRACE_MAX_HEADER_BYTES", default_value = "64KiB", value_parser = parse_bytes)]
    pub max_header_bytes: usize,

    /// Delete stored traces older than this (`7d`, `36h`; `0` keeps everything).
    #[arg(long, env = "CHAINTRACE_RETENTION", default_value = "7d")]
    pub retention: String,

    /// Delete the oldest blocks while all blocks take more than this (`50GiB`); unset: no limit.
    #[arg(long, env = "CHAINTRACE_MAX_DISK", value_parser = parse_bytes)]
    pub max_disk: Option<usize>,

    /// Memory budget for spans not yet written to blocks; over it, a request
    /// waits up to --overload-wait for a block cut to make room, then
    /// receivers answer "try later" (HTTP 503 + Retry-After, gRPC UNAVAILABLE).
    #[arg(long, env = "CHAINTRACE_MAX_MEMORY", default_value = "384MiB", value_parser = parse_bytes)]
    pub max_memory: usize,

    /// How long a request over --max-memory waits for room before it is
    /// refused (`2s`, `500ms`; `0` refuses at once).
    #[arg(long, env = "CHAINTRACE_OVERLOAD_WAIT", default_value = "2s")]
    pub overload_wait: String,

    /// Cut recent spans into a Parquet block once they take this much memory.
    #[arg(long, env = "CHAINTRACE_BLOCK_MAX_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub block_max_bytes: usize,

    /// Cut recent spans into a Parquet block at least this often (`5m`, `30s`).
    #[arg(long, env = "CHAINTRACE_BLOCK_MAX_AGE", default_value = "5m")]
    pub block_max_age: String,

    /// Turn on tail sampling: keep every trace with an error, every trace
    /// slower than its root operation's running p99, and this share of the
    /// rest (`0.05`, or `5%`), chosen by trace-id hash so that every node
    /// agrees. Decided when recent spans are cut into a block. Off when
    /// absent: every trace is kept.
    #[arg(long, env = "CHAINTRACE_SAMPLE_RATE", value_parser = parse_rate)]
    pub sample_rate: Option<f64>,

    /// A TOML file of sampling rules; turns sampling on. Keys: `base_rate`
    /// (as --sample-rate, which wins when both are given),
    /// `decision_wait`, `[[keep]] query = '<TraceQL>'` (traces matching any
    /// are always kept) and `[services] "name" = rate` (a rate of its own
    /// for traces rooted in that service).
    #[arg(long, env = "CHAINTRACE_SAMPLING")]
    pub sampling: Option<PathBuf>,

    /// With --sample-rate: how long after its root ended a trace is decided
    /// (`10s`). A trace younger than this at a cut is kept whole.
    #[arg(long, env = "CHAINTRACE_SAMPLE_DECISION_WAIT", default_value = DEFAULT_DECISION_WAIT)]
    pub sample_decision_wait: String,

    /// A TOML file of model prices that overrides or extends the built-in table
    /// (USD per million tokens: `[models."my-model"] input = 1.0, output = 2.0, cache_read = 0.1, cache_write = 1.25`).
    #[arg(long, env = "CHAINTRACE_PRICES")]
    pub prices: Option<PathBuf>,

    /// A file of API keys (`chaintrace keys add --file FILE` makes it).
    /// With it, every receiver and the query API need a key with the right
    /// scope (the web UI signs in at /login), the Jaeger UDP receivers are
    /// off (UDP carries no key), and listening beyond loopback is allowed.
    /// The file is read again within seconds of a change.
    #[arg(long, env = "CHAINTRACE_KEYS")]
    pub keys: Option<PathBuf>,

    /// With --keys: keep the Jaeger UDP receivers on, storing what they
    /// receive as this tenant's (a datagram carries no key, so the tenant
    /// is named here, and anyone who reaches the ports sends as it).
    #[arg(long, env = "CHAINTRACE_JAEGER_UDP_TENANT")]
    pub jaeger_udp_tenant: Option<String>,

    /// A PEM certificate chain: with --tls-key, every TCP listener (OTLP
    /// gRPC and HTTP, the query API and web UI, Jaeger HTTP, Zipkin) speaks
    /// TLS only.
    #[arg(long, env = "CHAINTRACE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CHAINTRACE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Allow listening on non-loopback addresses without --keys: anyone
    /// who can reach the ports can then send and read traces.
    #[arg(long, env = "CHAINTRACE_INSECURE")]
    pub insecure: bool,
}

/// A listener's address, or `off` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

/// Reads `host:port` or `off`.
pub fn parse_listen(text: &str) -> Result<Listen, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    text.trim()
        .parse::<SocketAddr>()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("{text:?} is not an address: want host:port (127.0.0.1:6831) or off"))
}

fn duration_flag(flag: &str, text: &str) -> Result<std::time::Duration> {
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let d: DurationNanos = text.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(std::time::Duration::from_nanos(d.0))
}

/// The built-in price table, with the user's overrides merged over it.
fn load_prices(path: Option<&std::path::Path>) -> Result<PriceTable> {
    let Some(path) = path else {
        return Ok(PriceTable::builtin());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --prices {}", path.display()))?;
    PriceTable::load_overrides(&text).with_context(|| format!("--prices {}", path.display()))
}

/// --sample-decision-wait's default; a `decision_wait` in the --sampling
/// file applies when the flag is left at it.
const DEFAULT_DECISION_WAIT: &str = "10s";

/// A share of traces: `0.05` or `5%`, above 0 and at most 1.
fn parse_rate(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{text:?} is not a rate: give a share like 0.05 or 5%"))?;
    if !(value > 0.0 && value <= 1.0) {
        return Err(format!(
            "{text:?} is out of range: the rate must be above 0 and at most 1 (100%)"
        ));
    }
    Ok(value)
}

/// The `--sampling` file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplingFile {
    base_rate: Option<toml::Value>,
    decision_wait: Option<String>,
    #[serde(default)]
    keep: Vec<KeepEntry>,
    #[serde(default)]
    services: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepEntry {
    query: String,
}

/// A rate from the sampling file: a number (0.05) or a string ("5%").
fn file_rate(what: &str, v: &toml::Value) -> Result<f64> {
    let text = match v {
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::String(s) => s.clone(),
        other => bail!("{what}: {other} is not a rate: give a share like 0.05 or \"5%\""),
    };
    parse_rate(&text).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// Tail sampling from --sample-rate, --sample-decision-wait and --sampling.
fn sampling_config(args: &ServeArgs) -> Result<Option<SamplingConfig>> {
    let file: SamplingFile = match &args.sampling {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --sampling file {}", path.display()))?;
            toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("--sampling file {}: {e}", path.display()))?
        }
        None => SamplingFile::default(),
    };
    let rate = match (args.sample_rate, &file.base_rate) {
        (Some(r), _) => r,
        (None, Some(v)) => file_rate("base_rate", v)?,
        (None, None) if args.sampling.is_some() => {
            bail!("--sampling file: no base_rate, and no --sample-rate: say what share of the rest to keep")
        }
        (None, None) => return Ok(None),
    };
    let wait_text = file
        .decision_wait
        .as_deref()
        .filter(|_| args.sample_decision_wait == DEFAULT_DECISION_WAIT)
        .unwrap_or(&args.sample_decision_wait);
    let mut config = SamplingConfig::new(rate, duration_flag("--sample-decision-wait", wait_text)?);
    for (i, k) in file.keep.iter().enumerate() {
        let rule = KeepRule::parse(&k.query).map_err(|e| {
            anyhow::anyhow!("--sampling file: keep rule {} ({:?}): {e}", i + 1, k.query)
        })?;
        config.keep.push(rule);
    }
    for (service, v) in &file.services {
        config.service_rates.insert(
            service.clone(),
            file_rate(&format!("services.{service:?}"), v)?,
        );
    }
    Ok(Some(config))
}

/// The embedded store's configuration from the flags.
fn store_config(args: &ServeArgs) -> Result<EmbeddedConfig> {
    let mut config = EmbeddedConfig::new(&args.data_dir);
    let retention = duration_flag("--retention", &args.retention)?;
    config.retention = (!retention.is_zero()).then_some(retention);
    config.max_disk = args.max_disk.map(|b| b as u64);
    config.max_memory = args.max_memory as u64;
    config.overload_wait = duration_flag("--overload-wait", &args.overload_wait)?;
    config.block_max_bytes = args.block_max_bytes as u64;
    config.block_max_age = duration_flag("--block-max-age", &args.block_max_age)?;
    if config.block_max_age.is_zero() {
        bail!("--block-max-age must be greater than zero");
    }
    config.sampling = sampling_config(args)?;
    // Every block gets per-minute rollups, so analytics over hours and
    // weeks add up kilobytes instead of reading every trace.
    config.figures = Some(chaintrace_store::Figures::new(
        chaintrace_analysis::RollupFigures,
    ));
    if config.block_max_bytes >= config.max_memory {
        bail!(
            "--block-max-bytes ({}) must be below --max-memory ({}): blocks are cut from memory",
            args.block_max_bytes,
            args.max_memory
        );
    }
    Ok(config)
}

/// The per-connection limits of every listener, from the flags.
fn connection_limits(args: &ServeArgs) -> Result<ConnectionLimits> {
    let positive = |flag: &str, text: &str| -> Result<std::time::Duration> {
        let d = duration_flag(flag, text)?;
        if d.is_zero() {
            bail!("{flag} must be greater than zero");
        }
        Ok(d)
    };
    if args.max_connections == 0 {
        bail!("--max-connections must be greater than zero");
    }
    if args.max_header_bytes < MIN_HEADER_BYTES {
        bail!(
            "--max-header-bytes {} is below the smallest supported, {MIN_HEADER_BYTES} (8KiB)",
            args.max_header_bytes
        );
    }
    Ok(ConnectionLimits {
        max_connections: args.max_connections,
        header_timeout: positive("--header-timeout", &args.header_timeout)?,
        body_timeout: positive("--body-timeout", &args.body_timeout)?,
        idle_timeout: positive("--idle-timeout", &args.idle_timeout)?,
        max_header_bytes: args.max_header_bytes,
    })
}

/// Refuses to listen beyond loopback when anyone there could send and read
/// everything: without keys, unless --insecure.
fn check_exposure(args: &ServeArgs) -> Result<()> {
    if args.insecure || args.keys.is_some() {
        return Ok(());
    }
    let listeners = [
        ("--otlp-grpc", Some(args.otlp_grpc)),
        ("--otlp-http", Some(args.otlp_http)),
        ("--http", Some(args.http)),
        ("--jaeger-compact", args.jaeger_compact.0),
        ("--jaeger-binary", args.jaeger_binary.0),
        ("--jaeger-http", args.jaeger_http.0),
        ("--zipkin", args.zipkin.0),
    ];
    for (flag, addr) in listeners
        .into_iter()
        .filter_map(|(flag, addr)| addr.map(|a| (flag, a)))
    {
        if !addr.ip().is_loopback() {
            bail!(
                "{flag} {addr} is not a loopback address, and without --keys anyone who \
                 reaches it could send and read traces. Give --keys FILE (make keys with \
                 `chaintrace keys add`), or pass --insecure to listen there anyway."
            );
        }
    }
    Ok(())
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Runs the server until a shutdown signal.
pub async fn run(mut args: ServeArgs) -> Result<()> {
    check_exposure(&args)?;
    if let Some(tenant) = &args.jaeger_udp_tenant {
        if args.keys.is_none() {
            bail!("--jaeger-udp-tenant needs --keys: without keys there are no tenants");
        }
        chaintrace_server::auth::check_tenant(tenant)
            .map_err(|e| anyhow::anyhow!("--jaeger-udp-tenant: {e}"))?;
    }
    let udp_off_for_keys = args.keys.is_some()
        && args.jaeger_udp_tenant.is_none()
        && (args.jaeger_compact.0.is_some() || args.jaeger_binary.0.is_some());
    if udp_off_for_keys {
        // A UDP datagram carries no key: with keys, anyone could send.
        args.jaeger_compact = Listen(None);
        args.jaeger_binary = Listen(None);
    }
    let mut config = store_config(&args)?;
    let tenant_config = config.clone();
    let connection_limits = connection_limits(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if args.keys.is_some() && tls.is_none() {
        let public = [args.otlp_grpc, args.otlp_http, args.http]
            .into_iter()
            .chain([args.jaeger_http.0, args.zipkin.0].into_iter().flatten())
            .find(|a| !a.ip().is_loopback());
        if let Some(addr) = public {
            tracing::warn!(
                %addr,
                "listening beyond loopback with --keys but without --tls-cert: keys and \
                 session cookies cross the network in the clear unless a TLS proxy is in front"
            );
        }
    }
    // One registry for everything `/metrics` shows; each crate registers
    // its own handles.
    let registry = Registry::new();
    let auth = match &args.keys {
        Some(path) => Some(
            chaintrace_server::auth::Auth::load(path, &registry, tls.is_some())
                .map_err(|e| anyhow::anyhow!("--keys: {e}"))?,
        ),
        None => None,
    };
    if let Some(retention) = auth
        .as_ref()
        .and_then(|a| a.keys().tenant_limits(DEFAULT_TENANT).retention)
    {
        config.retention = Some(retention);
    }
    let (store, replay) = tokio::task::spawn_blocking(move || EmbeddedStore::open(config))
        .await
        .context("store open task failed")?
        .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
    chaintrace_metrics::process::register(&registry);
    store.register_metrics(&registry);
    let store: Arc<dyn Store> = Arc::new(store);
    let prices = Arc::new(load_prices(args.prices.as_deref())?);
    // Decoded requests in flight (decoding, or waiting for the store) hold
    // at most half the memory budget besides it.
    let limits = Limits::new(args.max_request_bytes, args.max_memory / 2);
    let ingest_metrics = limits.metrics();
    for (protocol, served) in [
        (IngestProtocol::OtlpGrpc, true),
        (IngestProtocol::OtlpHttp, true),
        (IngestProtocol::JsonSpans, true),
        (
            IngestProtocol::JaegerCompact,
            args.jaeger_compact.0.is_some(),
        ),
        (IngestProtocol::JaegerBinary, args.jaeger_binary.0.is_some()),
        (IngestProtocol::JaegerHttp, args.jaeger_http.0.is_some()),
        (IngestProtocol::Zipkin, args.zipkin.0.is_some()),
    ] {
        if served {
            ingest_metrics.register(&registry, protocol);
        }
    }
    // With keys, each tenant has a store of its own (src/tenants.rs);
    // those that have data are opened now, so their WAL is replayed and
    // their retention runs whether or not anyone asks.
    let tenants = match &auth {
        Some(auth) => {
            let tenants = Arc::new(Tenants::new(tenant_config, store.clone(), auth.clone()));
            for name in Tenants::on_disk(&args.data_dir)? {
                tenants.tenant(&name).await?;
            }
            Some(tenants)
        }
        None => None,
    };
    let sink: Arc<dyn SpanSink> = match (&tenants, &args.jaeger_udp_tenant) {
        (Some(tenants), Some(tenant)) => tenants.tenant(tenant).await?.sink,
        (Some(tenants), None) => tenants.tenant(DEFAULT_TENANT).await?.sink,
        (None, _) => Tenant::unlimited(store.clone()).sink,
    };

    let grpc_listener = bind("OTLP/gRPC", args.otlp_grpc).await?;
    let otlp_http_listener = bind("OTLP/HTTP", args.otlp_http).await?;
    let api_listener = bind("the query API", args.http).await?;
    let jaeger_http_listener = match args.jaeger_http.0 {
        Some(addr) => Some(bind("the Jaeger collector (HTTP)", addr).await?),
        None => None,
    };
    let zipkin_listener = match args.zipkin.0 {
        Some(addr) => Some(bind("Zipkin", addr).await?),
        None => None,
    };
    let mut jaeger_sockets = Vec::new();
    for (addr, protocol) in [
        (args.jaeger_compact.0, ThriftProtocol::Compact),
        (args.jaeger_binary.0, ThriftProtocol::Binary),
    ] {
        if let Some(addr) = addr {
            let socket = chaintrace_ingest::jaeger::bind_udp(addr).with_context(|| {
                format!("cannot listen for Jaeger Thrift {protocol} (UDP) on {addr}")
            })?;
            jaeger_sockets.push((socket, protocol));
        }
    }

    println!(
        "chaintrace {} · data in {} (replayed {} spans from {} WAL records)",
        env!("CARGO_PKG_VERSION"),
        args.data_dir.display(),
        replay.spans,
        replay.records
    );
    if let Some(auth) = &auth {
        println!(
            "API keys: {} from {} (read again when it changes); {} tenant stores open",
            auth.keys().len(),
            auth.path().display(),
            tenants.as_ref().map_or(0, |t| t.open_count())
        );
    }
    if udp_off_for_keys {
        println!("Jaeger Thrift UDP receivers are off: UDP carries no API key");
    }
    if tls.is_some() {
        println!("TLS on every TCP listener (--tls-cert)");
    }
    println!("OTLP/gRPC listening on {}", grpc_listener.local_addr()?);
    println!(
        "OTLP/HTTP listening on {scheme}://{}/v1/traces",
        otlp_http_listener.local_addr()?
    );
    // Counted per receiver, in the counters `/metrics` shows.
    let mut jaeger_tasks = Vec::new();
    for (socket, protocol) in jaeger_sockets {
        println!(
            "Jaeger Thrift {protocol} (UDP) listening on {}",
            socket.local_addr()?
        );
        let counters = limits.metrics().receiver(match protocol {
            ThriftProtocol::Compact => IngestProtocol::JaegerCompact,
            ThriftProtocol::Binary => IngestProtocol::JaegerBinary,
        });
        let stats = Arc::new(chaintrace_ingest::jaeger::UdpStats::counting_in(
            counters.clone(),
        ));
        jaeger_tasks.push(tokio::spawn(chaintrace_ingest::jaeger::serve_udp(
            socket,
            protocol,
            sink.clone(),
            stats,
        )));
    }
    if let Some(listener) = &jaeger_http_listener {
        println!(
            "Jaeger Thrift HTTP listening on {scheme}://{}/api/traces",
            listener.local_addr()?
        );
    }
    if let Some(listener) = &zipkin_listener {
        println!(
            "Zipkin listening on {scheme}://{}/api/v2/spans",
            listener.local_addr()?
        );
    }
    // Printed last: scripts wait for this line to know every listener is up.
    println!(
        "query API listening on {scheme}://{}",
        api_listener.local_addr()?
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(auth) = &auth {
        tokio::spawn(auth.clone().watch(stop_rx.clone()));
    }
    // With keys, every listener's router is wrapped in the gate: receivers
    // need the ingest scope, the query API decides per path.
    let guard = |router: axum::Router, policy: Policy, answer: Answer| match &auth {
        Some(auth) => chaintrace_server::auth::protect(
            router,
            Gate {
                auth: auth.clone(),
                policy,
                answer,
            },
        ),
        None => router,
    };
    let ingest = Policy::Every(Scope::Ingest);
    // A listener's routes over one store; with tenants, built per tenant
    // and chosen by the key each request came with.
    let per_tenant = |build: BuildRoutes| -> axum::Router {
        match &tenants {
            Some(tenants) => PerTenant::router(tenants.clone(), build),
            None => build(&Tenant::unlimited(store.clone())),
        }
    };
    let on_store = |f: fn(Arc<dyn SpanSink>, Limits) -> axum::Router| -> BuildRoutes {
        let limits = limits.clone();
        Box::new(move |tenant: &Tenant| f(tenant.sink.clone(), limits.clone()))
    };
    let grpc_routes = guard(
        per_tenant(on_store(|sink, limits| {
            tonic::service::Routes::new(chaintrace_ingest::otlp::trace_service(
                sink.clone(),
                limits.clone(),
            ))
            .add_service(chaintrace_ingest::otlp::logs_service(sink, limits))
            .prepare()
            .into_axum_router()
        })),
        ingest,
        Answer::Grpc,
    );
    let serve = |listener, app, protocol| {
        tokio::spawn(crate::listener::serve(
            listener,
            app,
            protocol,
            connection_limits,
            stop_rx.clone(),
            tls.clone(),
        ))
    };
    let mut grpc = serve(grpc_listener, grpc_routes, Protocol::Grpc);
    // The Jaeger collector shares the OTLP receivers' gates (one Limits).
    let mut jaeger_http = jaeger_http_listener.map(|listener| {
        serve(
            listener,
            guard(
                per_tenant(on_store(chaintrace_ingest::jaeger::collector_router)),
                ingest,
                Answer::Json,
            ),
            Protocol::Http,
        )
    });
    let mut zipkin = zipkin_listener.map(|listener| {
        serve(
            listener,
            guard(
                per_tenant(on_store(chaintrace_ingest::zipkin::zipkin_router)),
                ingest,
                Answer::Json,
            ),
            Protocol::Http,
        )
    });
    let mut otlp_http = serve(
        otlp_http_listener,
        guard(
            per_tenant(on_store(chaintrace_ingest::otlp::router)),
            ingest,
            Answer::With(chaintrace_ingest::otlp::refusal_response),
        ),
        Protocol::Http,
    );
    // The query API also takes the founding document's JSON spans
    // (`POST /api/v1/spans`), within the receivers' gates.
    let cpu = chaintrace_server::cpu::CpuPool::default();
    let api_build: BuildRoutes = {
        let (limits, registry) = (limits.clone(), registry.clone());
        Box::new(move |tenant: &Tenant| {
            let api = chaintrace_server::router_sharing(
                tenant.store.clone(),
                prices.clone(),
                &registry,
                cpu.clone(),
            )
            .merge(chaintrace_ingest::json_span::json_span_router(
                tenant.sink.clone(),
                limits.clone(),
            ));
            // `POST /mcp` answers from these same routes, in process.
            api.clone().merge(chaintrace_server::mcp::mcp_routes(api))
        })
    };
    let mut api_routes = per_tenant(api_build);
    if let Some(auth) = &auth {
        api_routes = api_routes.merge(chaintrace_server::auth::login_routes(auth.clone()));
    }
    let api_routes = guard(api_routes, Policy::QueryApi, Answer::Json);
    // Without keys everything listens on loopback (check_exposure): the
    // query API then answers only loopback names, so that a web page using
    // DNS rebinding cannot read the traces.
    let api_routes = if args.keys.is_none() && !args.insecure {
        chaintrace_server::loopback::loopback_only(api_routes)
    } else {
        api_routes
    };
    let mut api = serve(api_listener, api_routes, Protocol::Http);

    // Run until asked to stop, or until a listener dies (then stop the others too).
    let early_exit = tokio::select! {
        _ = shutdown_signal() => None,
        r = &mut grpc => Some(("OTLP/gRPC", r)),
        r = &mut otlp_http => Some(("OTLP/HTTP", r)),
        r = &mut api => Some(("query API", r)),
        Some(r) = async {
            match &mut jaeger_http {
                Some(task) => Some(task.await),
                None => std::future::pending().await,
            }
        } => Some(("Jaeger collector (HTTP)", r)),
        Some(r) = async {
            match &mut zipkin {
                Some(task) => Some(task.await),
                None => std::future::pending().await,
            }
        } => Some(("Zipkin", r)),
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some((what, result)) = early_exit {
        result.with_context(|| format!("{what} server task failed"))?;
        bail!("{what} server stopped unexpectedly");
    }
    // UDP receivers hold no connection to drain: stop them now.
    for task in jaeger_tasks {
        task.abort();
    }
    grpc.await.context("OTLP/gRPC server task failed")?;
    otlp_http.await.context("OTLP/HTTP server task failed")?;
    api.await.context("query API server task failed")?;
    if let Some(task) = jaeger_http {
        task.await
            .context("Jaeger collector (HTTP) server task failed")?;
    }
    if let Some(task) = zipkin {
        task.await.context("Zipkin server task failed")?;
    }
    drop(store);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_exposure, parse_listen, sampling_config, Listen, ServeArgs};

    #[test]
    fn listeners_take_an_address_or_off() {
        assert_eq!(parse_listen("off"), Ok(Listen(None)));
        assert_eq!(
            parse_listen("127.0.0.1:6831"),
            Ok(Listen(Some("127.0.0.1:6831".parse().unwrap())))
        );
        let err = parse_listen("6831").unwrap_err();
        assert!(err.contains("want host:port"), "{err}");
    }

    /// `chaintrace serve` with `flags`, as clap reads them.
    fn serve_args(flags: &[&str]) -> ServeArgs {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let argv = std::iter::once("serve").chain(flags.iter().copied());
        <Wrap as clap::Parser>::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn a_sampling_file_holds_rules_and_service_rates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sampling.toml");
        let file = path.to_str().unwrap();
        std::fs::write(
            &path,
            r#"
base_rate = "2%"
decision_wait = "30s"
[[keep]]
query = '{ span.gen_ai.request.model = "gpt-4o" }'
[[keep]]
query = '{ resource.service.name = "checkout" && duration > 2s }'
[services]
"support-bot" = 0.5
"#,
        )
        .unwrap();
        let config = sampling_config(&serve_args(&["--sampling", file]))
            .unwrap()
            .unwrap();
        assert_eq!(config.base_rate, 0.02);
        assert_eq!(config.decision_wait, std::time::Duration::from_secs(30));
        assert_eq!(config.keep.len(), 2);
        assert_eq!(
            config.keep[0].text,
            r#"{ span.gen_ai.request.model = "gpt-4o" }"#
        );
        assert_eq!(config.service_rates["support-bot"], 0.5);
        // The flags win over the file.
        let flags = [
            "--sampling",
            file,
            "--sample-rate",
            "10%",
            "--sample-decision-wait",
            "1s",
        ];
        let config = sampling_config(&serve_args(&flags)).unwrap().unwrap();
        assert_eq!(config.base_rate, 0.1);
        assert_eq!(config.decision_wait, std::time::Duration::from_secs(1));
        // No flag, no file: no sampling.
        assert!(sampling_config(&serve_args(&[])).unwrap().is_none());
    }

    #[test]
    fn a_bad_sampling_file_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sampling.toml");
        let file = path.to_str().unwrap();
        for (text, says) in [
            ("base_rate = 0.05\ncolour = 1\n", "unknown field `colour`"),
            ("decision_wait = \"1s\"\n", "no base_rate"),
            ("base_rate = 2.0\n", "base_rate: \"2\" is out of range"),
            (
                "base_rate = 0.05\n[services]\nx = \"lots\"\n",
                "services.\"x\": \"lots\" is not a rate",
            ),
            (
                "base_rate = 0.05\n[[keep]]\nquery = '{ name = }'\n",
                "keep rule 1",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = sampling_config(&serve_args(&["--sampling", file])).unwrap_err();
            assert!(format!("{err:#}").contains(says), "{text:?}: {err:#}");
        }
        let missing = dir.path().join("missing.toml");
        let err =
            sampling_config(&serve_args(&["--sampling", missing.to_str().unwrap()])).unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read --sampling file"),
            "{err:#}"
        );
    }

    #[test]
    fn beyond_loopback_needs_keys_or_insecure() {
        let public = ["--http", "0.0.0.0:16686"];
        let err = check_exposure(&serve_args(&public)).unwrap_err();
        assert!(format!("{err}").contains("--http 0.0.0.0:16686"), "{err}");
        assert!(format!("{err}").contains("--keys"), "{err}");
        let with_keys = ["--http", "0.0.0.0:16686", "--keys", "keys.toml"];
        assert!(check_exposure(&serve_args(&with_keys)).is_ok());
        let insecure = ["--http", "0.0.0.0:16686", "--insecure"];
        assert!(check_exposure(&serve_args(&insecure)).is_ok());
        assert!(check_exposure(&serve_args(&[])).is_ok());
    }
}

//! How every listener of `chaintrace serve` accepts and serves connections:
//! the connection cap, the read timeouts and the header size limit that keep
//! slow or hostile clients from holding the server's sockets and memory.
//!
//! The three listeners (OTLP/gRPC, OTLP/HTTP, query API) each hand an axum
//! [`Router`] to [`serve`]; what a request means is the router's business,
//! never this module's. `axum::serve` and tonic's server have no body read
//! timeout, no connection cap and no idle timeout for HTTP/2, hence this loop
//! over hyper-util's connection builder.
//!
//! What each limit catches:
//!
//! | client | caught by | outcome |
//! |---|---|---|
//! | sends part of a request line/headers, then nothing | hyper's HTTP/1 header read timeout ([`ConnectionLimits::header_timeout`]) | connection closed |
//! | connects and sends nothing (or half an HTTP/2 preface) | idle watchdog, [`ConnectionLimits::header_timeout`] before the first request | connection closed |
//! | stops in the middle of a body | [`TimeoutBody`], [`ConnectionLimits::body_timeout`] between chunks | body read fails: 408 from OTLP/HTTP, then close |
//! | keeps a connection open with nothing in flight | idle watchdog, [`ConnectionLimits::idle_timeout`] (HTTP/1: also the header read timeout, which runs while waiting for the next request) | graceful close |
//! | headers over [`ConnectionLimits::max_header_bytes`] | hyper (HTTP/1 read buffer) / h2 (`SETTINGS_MAX_HEADER_LIST_SIZE`) | 431 |
//! | opens more than [`ConnectionLimits::max_connections`] connections | a semaphore taken *before* `accept` | extra connections wait in the kernel's backlog until one closes |
//! | vanishes without a FIN during a long HTTP/2 request | HTTP/2 keep-alive pings | connection closed |
//! | (TLS) connects and never finishes the handshake | [`ConnectionLimits::header_timeout`] around the handshake | connection closed |
//!
//! With `--tls-cert`/`--tls-key`, every connection is a TLS one ([`Tls`]);
//! the handshake runs in the connection's own task, never in the accept loop.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tower::ServiceExt;

/// The smallest header limit hyper accepts: its HTTP/1 read buffer cannot be
/// smaller than this.
pub const MIN_HEADER_BYTES: usize = 8 << 10;

/// HTTP/2 keep-alive: a ping after this much silence from the peer...
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection is dropped when the ping is not answered within this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// After an idle connection is asked to close gracefully, it is dropped if
/// it has not closed within this.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Limits that apply to each connection of a listener, from the flags of
/// `chaintrace serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once per listener; more wait in the backlog.
    pub max_connections: usize,
    /// Time to receive a request's whole head (HTTP/1), and the idle time
    /// allowed before a connection's first request.
    pub header_timeout: Duration,
    /// Longest pause while a request body is being read.
    pub body_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head (HTTP/1: request line and headers; HTTP/2: the
    /// decoded header list); at least [`MIN_HEADER_BYTES`].
    pub max_header_bytes: usize,
}

/// Which protocols a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, and HTTP/2 with prior knowledge (detected from the preface).
    Http,
    /// HTTP/2 only, tuned for gRPC export batches.
    Grpc,
}

/// Largest HTTP/2 frame the gRPC listener accepts (the protocol's default is
/// 16 KiB): exporters send batches of hundreds of KiB, which otherwise
/// arrive as dozens of frames and window updates.
const GRPC_MAX_FRAME_BYTES: u32 = 1 << 20;
/// Flow-control windows of the gRPC listener: room for a few whole export
/// batches in flight per stream and per connection.
const GRPC_STREAM_WINDOW_BYTES: u32 = 4 << 20;
const GRPC_CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// The server's certificate and key, from `--tls-cert` and `--tls-key`.
#[derive(Clone)]
pub struct Tls {
    config: Arc<tokio_rustls::rustls::ServerConfig>,
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1).
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<Tls> {
        use anyhow::Context;
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| {
                format!("--tls-cert {}: not a PEM certificate chain", cert.display())
            })?;
        if certs.is_empty() {
            anyhow::bail!("--tls-cert {}: no certificate in the file", cert.display());
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("--tls-key {}: not a PEM private key", key.display()))?;
        // ring, not rustls's default aws-lc-rs: aws-lc-rs is a long C build
        // (cmake) on every cold CI cache. rustls 0.23.48 marks ring's provider
        // deprecated because it lacks post-quantum key exchange (X25519MLKEM768);
        // classical X25519/P-256 with TLS 1.3 and 1.2 is what OTLP exporters
        // negotiate today. Moving to aws-lc-rs is a feature switch here.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .context("TLS: no protocol version")?
            .with_no_client_auth()
            .with_single_cert(certs, private)
            .context("--tls-cert and --tls-key do not make a usable pair")?;
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    /// The acceptor of one listener: gRPC offers only HTTP/2 in ALPN.
    fn acceptor(&self, protocol: Protocol) -> tokio_rustls::TlsAcceptor {
        let mut config = (*self.config).clone();
        config.alpn_protocols = match protocol {
            Protocol::Grpc => vec![b"h2".to_vec()],
            Protocol::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// Serves `app` on `listener` until `stop` turns true, then closes every
/// connection gracefully and returns once all are closed. With `tls`, each
/// connection first completes a TLS handshake (within the header timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    protocol: Protocol,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    tls: Option<Tls>,
) {
    let acceptor = tls.map(|tls| tls.acceptor(protocol));
    let builder = Arc::new(connection_builder(protocol, &limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Each connection task holds a clone; `recv` returns None once all ended.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        // The slot is taken before `accept`: at the cap, new connections stay
        // in the kernel's backlog, unread, instead of costing a task and buffers.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed; nothing left to serve if it were
            },
            () = stopped(&mut stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let app = app.clone();
        let stop = stop.clone();
        let alive = alive_tx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(&builder, stream, app, limits, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => serve_connection(&builder, tls, app, limits, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            tracing::trace!(%peer, "connection closed");
            drop(slot);
            drop(alive);
        });
    }
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

/// Resolves once the server is asked to stop (or can no longer be told to).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn connection_builder(
    protocol: Protocol,
    limits: &ConnectionLimits,
) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if protocol == Protocol::Grpc {
        builder = builder.http2_only();
    }
    let header_bytes = limits.max_header_bytes.max(MIN_HEADER_BYTES);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper-util exposes no separate header limit; the read buffer bounds
        // the head (hyper answers 431 when a head does not fit) while bodies
        // stream through it in pieces.
        .max_buf_size(header_bytes);
    let mut h2 = builder.http2();
    h2.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    if protocol == Protocol::Grpc {
        h2.max_frame_size(GRPC_MAX_FRAME_BYTES)
            .initial_stream_window_size(GRPC_STREAM_WINDOW_BYTES)
            .initial_connection_window_size(GRPC_CONNECTION_WINDOW_BYTES);
    }
    builder
}

/// Drives one connection until it ends, it idles past its timeout, or the
/// server stops.
async fn serve_connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (in_flight, watched) = watch::channel(0usize);
    let in_flight = Arc::new(in_flight);
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let guard = InFlight::enter(Arc::clone(&in_flight));
        async move {
            let req = req.map(|body| TimeoutBody::new(body, body_timeout));
            let response = app.oneshot(req).await;
            drop(guard);
            response
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = idle_watchdog(watched, limits);
    tokio::pin!(idle);
    let closing = tokio::select! {
        result = conn.as_mut() => {
            log_end(result);
            return;
        }
        () = &mut idle => true,
        () = stopped(&mut stop) => false,
    };
    conn.as_mut().graceful_shutdown();
    if closing {
        // An idle connection has nothing worth waiting long for.
        match tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
            Ok(result) => log_end(result),
            Err(_) => tracing::debug!("idle connection did not close in time; dropped"),
        }
    } else {
        log_end(conn.await);
    }
}

fn log_end(result: Result<(), Box<dyn StdError + Send + Sync>>) {
    // Clients that time out, reset or send garbage are routine, not server faults.
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

/// Resolves once no request has been in flight for the idle timeout (the
/// header timeout before the first request).
async fn idle_watchdog(mut in_flight: watch::Receiver<usize>, limits: ConnectionLimits) {
    let mut limit = limits.header_timeout;
    loop {
        if *in_flight.borrow_and_update() > 0 {
            limit = limits.idle_timeout;
            if in_flight.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        match tokio::time::timeout(limit, in_flight.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn enter(count: Arc<watch::Sender<usize>>) -> InFlight {
        count.send_modify(|n| *n += 1);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A request body that fails when the client pauses longer than the body
/// timeout between chunks.
///
/// Only time spent waiting on the client counts: a handler that stops
/// polling for a while (say, while the store is busy) does not use up the
/// client's allowance, and a large body sent steadily never times out. The
/// failure is an [`std::io::Error`] of kind [`std::io::ErrorKind::TimedOut`],
/// which receivers can recognise without knowing this type (OTLP/HTTP
/// answers 408).
pub struct TimeoutBody<B> {
    inner: B,
    timeout: Duration,
    /// Armed while the inner body is pending; `None` between chunks.
    stall: Option<Pin<Box<Sleep>>>,
}

impl<B> TimeoutBody<B> {
    /// Wraps `inner`, allowing pauses of up to `timeout`.
    pub fn new(inner: B, timeout: Duration) -> TimeoutBody<B> {
        TimeoutBody {
            inner,
            timeout,
            stall: None,
        }
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.stall = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the request body stalled: nothing arrived for {}s",
                            timeout.as_secs_f64()
                        ),
                    ))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;

    /// A body whose chunks the test sends when it likes.
    struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunks(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Chunks {
        Chunks(rx)
    }

    #[tokio::test]
    async fn a_steady_body_never_times_out() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // Real time (tokio's paused clock needs its test-util feature, a
        // rebuild of everything for one module): gaps far below the timeout
        // keep this test free of timing luck.
        let body = TimeoutBody::new(chunks(rx), Duration::from_secs(5));
        tokio::spawn(async move {
            // Longer than the timeout in all, but never more than 1/50 of it apart.
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.send(Bytes::from_static(b"x")).await.unwrap();
            }
        });
        let collected = body.collect().await.expect("steady body");
        assert_eq!(collected.to_bytes().len(), 60);
    }

    #[tokio::test]
    async fn a_stalled_body_fails_as_timed_out() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let body = TimeoutBody::new(chunks(rx), Duration::from_millis(200));
        tx.send(Bytes::from_static(b"half")).await.unwrap();
        let err = body.collect().await.expect_err("stalled body");
        let io = err.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        drop(tx);
    }

    #[tokio::test]
    async fn time_the_handler_does_not_poll_is_not_counted() {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let mut body = TimeoutBody::new(chunks(rx), Duration::from_millis(100));
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        // The handler is busy elsewhere for longer than the timeout...
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        drop(tx);
        // ...and the body still reads to its end.
        let rest = body.collect().await.expect("not a stall");
        assert_eq!(rest.to_bytes(), Bytes::from_static(b"b"));
    }
}

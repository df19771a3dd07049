//! The Jaeger agent's UDP ports: one `emitBatch` message per datagram, in,
//! spans handed to the [`SpanSink`], out. UDP has no answer, so nothing a
//! sender does can stop the receiver: bad datagrams and refused batches
//! are counted in [`UdpStats`] (the receiver's [`ReceiverMetrics`]) and
//! logged at most once per [`LOG_INTERVAL`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::{decode_emit_batch_within, ThriftProtocol};
use crate::metrics::{ReceiverMetrics, RequestRejection, SpanRejection};
use crate::receive::span_rejection;
use crate::SpanSink;

/// The largest UDP payload; also what the Jaeger agent reads per datagram.
const MAX_DATAGRAM: usize = 65_535;

/// Decoded memory one datagram may take: real ones take well under a MiB,
/// one built of empty tags could take about 25 MiB without it.
const DATAGRAM_BUDGET: usize = 8 << 20;

/// Datagrams decoded or waiting for the sink at once. When all are busy the
/// receiver stops reading: datagrams queue in the socket's buffer and,
/// once it is full, the kernel drops them — the only back-pressure UDP has.
const IN_FLIGHT: usize = 4;

/// The socket receive buffer [`bind_udp`] asks for: room for a burst of
/// about 128 full datagrams while the decoders are busy. Linux grants at
/// most `net.core.rmem_max` (often 208 KiB) unless raised.
pub const UDP_RECEIVE_BUFFER: usize = 8 << 20;

/// At most one warning per this long, with the latest reason.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Binds a UDP socket at `addr` with a receive buffer of
/// [`UDP_RECEIVE_BUFFER`] bytes (or as much as the kernel allows), for
/// [`serve_udp`]. The default buffer holds only a few datagrams, and
/// senders burst. Must be called inside a tokio runtime.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let socket = chaintrace_ingest::jaeger::bind_udp("0.0.0.0:6831".parse().unwrap())?;
/// # Ok(())
/// # }
/// ```
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // A smaller buffer than asked is no reason not to serve.
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        tracing::warn!(%addr, error = %e, "could not enlarge the UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// What a UDP receiver has seen since it started; shared with whoever
/// reports it (logs, metrics). The counts are the receiver's
/// [`ReceiverMetrics`]: a datagram is a request.
#[derive(Debug, Default)]
pub struct UdpStats {
    metrics: ReceiverMetrics,
    log: Mutex<ProblemLog>,
}

/// A reading of [`UdpStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpCounts {
    /// Datagrams received.
    pub datagrams: u64,
    /// Spans the sink took.
    pub spans_accepted: u64,
    /// Spans rejected for bad ids (their datagrams' other spans were kept).
    pub spans_rejected: u64,
    /// Datagrams that were not an `emitBatch` message; none of their spans
    /// were kept.
    pub malformed: u64,
    /// Batches the sink refused (overloaded or failed); their spans are lost.
    pub sink_refusals: u64,
}

/// When the last warning went out and how many problems came since.
#[derive(Debug, Default)]
struct ProblemLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl UdpStats {
    /// Counters at zero.
    pub fn new() -> Self {
        UdpStats::default()
    }

    /// Counting into `metrics`, e.g. a protocol's counters from
    /// [`crate::metrics::IngestMetrics::receiver`].
    pub fn counting_in(metrics: ReceiverMetrics) -> Self {
        UdpStats {
            metrics,
            log: Mutex::default(),
        }
    }

    /// The counters now.
    pub fn counts(&self) -> UdpCounts {
        let m = &self.metrics;
        UdpCounts {
            datagrams: m.requests(),
            spans_accepted: m.spans_accepted(),
            spans_rejected: m.spans_rejected(SpanRejection::Invalid),
            malformed: m.requests_refused(RequestRejection::Malformed),
            sink_refusals: [
                RequestRejection::Overloaded,
                RequestRejection::TooLarge,
                RequestRejection::Failed,
            ]
            .into_iter()
            .map(|r| m.requests_refused(r))
            .sum(),
        }
    }

    /// Logs `reason` unless a warning went out less than [`LOG_INTERVAL`]
    /// ago; a flood of bad datagrams must not become a flood of log lines.
    fn report(&self, protocol: ThriftProtocol, reason: &dyn fmt::Display) {
        let Ok(mut log) = self.log.lock() else { return };
        log.unlogged += 1;
        let now = Instant::now();
        if log
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            protocol = %protocol,
            problems_since_last_warning = log.unlogged,
            counts = ?self.counts(),
            "Jaeger UDP receiver: {reason}"
        );
        log.last = Some(now);
        log.unlogged = 0;
    }
}

/// Receives `emitBatch` datagrams on `socket` in `protocol` and hands their
/// spans to `sink`, until the task running it is dropped. Decoding runs
/// off the async workers, at most a few datagrams at a time; while those
/// are busy the receiver waits and the socket buffer takes the rest (see
/// [`bind_udp`]).
///
/// ```no_run
/// use std::sync::Arc;
/// use chaintrace_ingest::jaeger::{bind_udp, serve_udp, ThriftProtocol, UdpStats};
/// # async fn run(sink: Arc<dyn chaintrace_ingest::SpanSink>) -> std::io::Result<()> {
/// let stats = Arc::new(UdpStats::new());
/// let socket = bind_udp("0.0.0.0:6831".parse().unwrap())?;
/// tokio::spawn(serve_udp(socket, ThriftProtocol::Compact, sink, stats.clone()));
/// # Ok(())
/// # }
/// ```
pub async fn serve_udp(
    socket: UdpSocket,
    protocol: ThriftProtocol,
    sink: Arc<dyn SpanSink>,
    stats: Arc<UdpStats>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    // One receive buffer, reused; each datagram is copied out at its size.
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        // Never closed, so this never fails.
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let datagram = match socket.recv_from(&mut buffer).await {
            Ok((len, _from)) => buffer[..len].to_vec(),
            Err(e) => {
                // ICMP errors and the like concern one sender; keep serving,
                // without spinning if the error persists.
                stats.report(protocol, &format_args!("receiving failed: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stats.metrics.request();
        stats.metrics.bytes(datagram.len());
        let (sink, stats) = (Arc::clone(&sink), Arc::clone(&stats));
        tokio::spawn(async move {
            handle(datagram, protocol, sink.as_ref(), &stats).await;
            drop(permit);
        });
    }
}

async fn handle(
    datagram: Vec<u8>,
    protocol: ThriftProtocol,
    sink: &dyn SpanSink,
    stats: &UdpStats,
) {
    let decoded = tokio::task::spawn_blocking(move || {
        decode_emit_batch_within(&datagram, protocol, DATAGRAM_BUDGET)
    })
    .await;
    let decoded = match decoded {
        Ok(Ok((decoded, _))) => decoded,
        Ok(Err(e)) => {
            stats.metrics.refused(RequestRejection::Malformed);
            stats.report(protocol, &format_args!("malformed datagram: {e}"));
            return;
        }
        Err(e) => {
            stats.metrics.refused(RequestRejection::Malformed);
            stats.report(protocol, &format_args!("decoding a datagram failed: {e}"));
            return;
        }
    };
    let count = decoded.spans.len();
    stats.metrics.decoded(count, decoded.rejected);
    if decoded.rejected > 0 || decoded.dropped_links > 0 {
        stats.report(
            protocol,
            &format_args!("spans rejected: {}", decoded.error_message()),
        );
    }
    if count == 0 {
        return;
    }
    match sink.accept(decoded.spans).await {
        Ok(()) => stats.metrics.accepted(count),
        Err(e) => {
            let reason = span_rejection(&e);
            stats.metrics.store_refused(count, reason);
            stats.metrics.refused(reason.into());
            stats.report(
                protocol,
                &format_args!("{count} spans lost, the store refused them: {e}"),
            );
        }
    }
}

//! Reading and inflating request bodies within the body gate, shared by
//! the OTLP/HTTP and OTLP/gRPC receivers (each words its own refusals).

use std::io::Read;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::codegen::{Body, StdError};

use super::{timed_out, Admitted, DecodeGate, BODY_WAIT};

/// Why a body was not read or inflated.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More bytes than allowed (sent, or once inflated).
    TooLarge,
    /// The client stalled past the listener's body timeout.
    TimedOut(String),
    /// The body could not be read (the connection failed).
    Unreadable(String),
    /// Bodies in flight filled the gate for [`BODY_WAIT`].
    GateFull,
    /// Not gzip.
    BadGzip(String),
}

/// Reads a whole body of at most `most` bytes into one buffer of
/// `capacity` to start with (a declared length: untouched capacity costs
/// no memory), growing `held` in `bodies` as bytes arrive.
pub(crate) async fn read_gated<B>(
    body: B,
    most: usize,
    capacity: usize,
    bodies: &DecodeGate,
    held: &mut Admitted,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<StdError>,
{
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::with_capacity(capacity.min(most));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e: StdError = e.into();
            if timed_out(e.as_ref()) {
                BodyError::TimedOut(e.to_string())
            } else {
                BodyError::Unreadable(e.to_string())
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if out.len() + data.len() > most {
            return Err(BodyError::TooLarge);
        }
        if !bodies
            .grow_to(held, out.len() + data.len(), BODY_WAIT)
            .await
        {
            return Err(BodyError::GateFull);
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// How much gzip is inflated by between asks for room.
const INFLATE_STEP: usize = 1 << 20;

/// Inflates gzip `compressed` onto the end of `out`, at most `limit` bytes
/// (a few KiB of gzip can inflate to gigabytes). Before each step it asks
/// `room` for room for that many inflated bytes in all.
pub(crate) fn inflate_onto(
    out: &mut Vec<u8>,
    compressed: &[u8],
    limit: usize,
    mut room: impl FnMut(usize) -> bool,
) -> Result<(), BodyError> {
    let start = out.len();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut inflater = flate2::read::MultiGzDecoder::new(compressed).take(cap);
    loop {
        let want = (out.len() - start + INFLATE_STEP).min(limit + 1);
        if !room(want) {
            return Err(BodyError::GateFull);
        }
        let step = (&mut inflater)
            .take((want - (out.len() - start)) as u64)
            .read_to_end(out)
            .map_err(|e| BodyError::BadGzip(e.to_string()))?;
        let inflated = out.len() - start;
        if inflated > limit {
            return Err(BodyError::TooLarge);
        }
        if step == 0 || inflated < want {
            return Ok(());
        }
    }
}

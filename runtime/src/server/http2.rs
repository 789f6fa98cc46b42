//! HTTP/2 with prior knowledge served in the connection's own task: the gRPC port's fast path.
//!
//! hyper's HTTP/2 server spawns a task for every stream, so a unary gRPC call crosses three tasks: the connection's
//! (frames in), the stream's (the service), the connection's again (frames out). For a call that takes a few
//! microseconds of model time, that hand-off costs as much as the model. Here one task per connection drives the
//! [`h2`] connection and polls the service's futures for its streams itself: a call is read, answered and flushed in
//! one wake-up of that task, as hyper's HTTP/1.1 server answers a request. Answers larger than the inline limit
//! ([`crate::inference::run_sized`]) still run on the blocking pool, so one connection's many calls never hold the
//! task for long.
//!
//! It keeps what the connection layer promises ([`super`]): hyper's HTTP/2 settings (1 MiB windows, 16 KiB frames,
//! 200 concurrent streams, 16 KiB header lists), keep-alive pings every `--header_read_timeout` with 20 s to answer,
//! a handshake bounded by `--header_read_timeout`, flow control on every answer, streams the client resets are
//! dropped (a `Watch` ends), and at shutdown a GOAWAY, then the calls in flight run to their end.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use h2::server::SendResponse;
use h2::{Ping, PingPong, RecvStream, SendStream};
use http_body::Body as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// A connection's failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's HTTP/2 server defaults, kept so that clients see the same settings on either path.
const WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_STREAMS: u32 = 200;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// How long a keep-alive ping may go unanswered before the connection is closed (hyper's default).
const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// Answer chunks up to this size are queued at once; larger ones wait for the client's flow-control window, so a
/// slow reader holds at most this much per stream beyond its window.
const QUEUE_AT_ONCE: usize = 16 * 1024;

/// Whether `stream`'s first bytes are the HTTP/2 preface, waiting up to `patience` for the first of them; nothing is
/// consumed. `Some(false)` when the client sent something else or only part of the preface so far (hyper then serves
/// it), `None` when it sent nothing in time or closed.
pub async fn starts_with_preface(stream: &TcpStream, patience: Duration) -> Option<bool> {
    let mut first = [0u8; PREFACE.len()];
    match tokio::time::timeout(patience, stream.peek(&mut first)).await {
        Ok(Ok(0) | Err(_)) | Err(_) => None,
        Ok(Ok(n)) => Some(n == PREFACE.len() && &first == PREFACE),
    }
}

/// Serves one HTTP/2 connection with `app` until the client closes it, it fails, or `draining` turns `true` and
/// the calls in flight are answered.
///
/// # Errors
/// The connection's own failure (a protocol error, a reset socket, a handshake or keep-alive timeout).
pub async fn serve(
    io: TcpStream,
    app: Router,
    keep_alive: Duration,
    mut draining: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    let Ok(handshake) = tokio::time::timeout(keep_alive, builder.handshake::<_, Bytes>(io)).await else {
        return Err("the HTTP/2 handshake stalled".into());
    };
    let mut conn = handshake?;
    let mut alive = KeepAlive::new(conn.ping_pong(), keep_alive);
    let mut calls = FuturesUnordered::new();
    let mut closing = false;
    let mut drain = Box::pin(async move {
        let _ = draining.wait_for(|d| *d).await;
    });
    poll_fn(|cx| {
        if !closing && drain.as_mut().poll(cx).is_ready() {
            closing = true;
            conn.graceful_shutdown();
        }
        if alive.poll_dead(cx).is_ready() {
            return Poll::Ready(Err("the client did not answer a keep-alive ping".into()));
        }
        // Accept every stream whose headers arrived, answer what can be answered now, and accept again: polling the
        // connection is also what flushes the answers just queued, in one write.
        loop {
            let mut accepted = false;
            loop {
                match conn.poll_accept(cx) {
                    Poll::Ready(Some(Ok((request, respond)))) => {
                        calls.push(answer(app.clone(), request, respond));
                        accepted = true;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break,
                }
            }
            let mut finished = false;
            while let Poll::Ready(Some(())) = calls.poll_next_unpin(cx) {
                finished = true;
            }
            if !accepted && !finished {
                return Poll::Pending;
            }
        }
    })
    .await
}

/// Keep-alive: a ping every `interval`; a pong not back within [`PONG_TIMEOUT`] means the client is gone.
struct KeepAlive {
    pings: Option<PingPong>,
    interval: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
}

impl KeepAlive {
    fn new(pings: Option<PingPong>, interval: Duration) -> Self {
        KeepAlive { pings, interval, timer: Box::pin(tokio::time::sleep(interval)), waiting: false }
    }

    /// Ready when the client failed to answer a ping in time.
    fn poll_dead(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(pings) = self.pings.as_mut() else { return Poll::Pending };
        loop {
            if self.waiting {
                match pings.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.waiting = false;
                        self.timer.as_mut().reset(tokio::time::Instant::now() + self.interval);
                        continue;
                    }
                    // The connection failed: its own poll reports why.
                    Poll::Ready(Err(_)) => {
                        self.pings = None;
                        return Poll::Pending;
                    }
                    Poll::Pending => {}
                }
                ready!(self.timer.as_mut().poll(cx));
                return Poll::Ready(());
            }
            ready!(self.timer.as_mut().poll(cx));
            if pings.send_ping(Ping::opaque()).is_err() {
                self.pings = None;
                return Poll::Pending;
            }
            self.waiting = true;
            self.timer.as_mut().reset(tokio::time::Instant::now() + PONG_TIMEOUT);
        }
    }
}

/// One stream: the request through `app`, the answer back with flow control. Errors end the stream only.
async fn answer(app: Router, request: http::Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, Body::new(Incoming { body, data_done: false }));
    let Ok(response) = app.oneshot(request).await;
    let (parts, body) = response.into_parts();
    // A body known to be empty ends the stream with the headers: gRPC's trailers-only answer (an error's status).
    let end = body.is_end_stream();
    let Ok(mut send) = respond.send_response(http::Response::from_parts(parts, ()), end) else {
        return;
    };
    if end {
        return;
    }
    let mut out = Outgoing { body, send: &mut send, pending: None };
    if poll_fn(|cx| out.poll_pipe(cx)).await.is_err() {
        send.send_reset(h2::Reason::INTERNAL_ERROR);
    }
}

/// A request body read from an h2 stream, giving its window back as it is read.
struct Incoming {
    body: RecvStream,
    data_done: bool,
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.body.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.body.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data_done && self.body.is_end_stream()
    }
}

/// An answer's body written to its h2 stream.
struct Outgoing<'a> {
    body: Body,
    send: &'a mut SendStream<Bytes>,
    /// Data waiting for the client's window.
    pending: Option<Bytes>,
}

/// The answer's body failed midway: the stream is reset.
struct BodyFailed;

impl Outgoing<'_> {
    /// Writes the whole body; `Ok` also when the client reset the stream (nothing more to send).
    fn poll_pipe(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BodyFailed>> {
        loop {
            if self.send.poll_reset(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            if let Some(mut data) = self.pending.take() {
                match self.send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(n))) => {
                        let chunk = data.split_to(n.min(data.len()));
                        if self.send.send_data(chunk, false).is_err() {
                            return Poll::Ready(Ok(()));
                        }
                        if !data.is_empty() {
                            self.send.reserve_capacity(data.len());
                            self.pending = Some(data);
                        }
                        continue;
                    }
                    Poll::Pending => {
                        self.pending = Some(data);
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Ok(())),
                }
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => {
                    let _ = self.send.send_data(Bytes::new(), true);
                    return Poll::Ready(Ok(()));
                }
                Some(Err(_)) => return Poll::Ready(Err(BodyFailed)),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) if data.len() <= QUEUE_AT_ONCE => {
                    if self.send.send_data(data, false).is_err() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Ok(data) => {
                    self.send.reserve_capacity(data.len());
                    self.pending = Some(data);
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = self.send.send_trailers(trailers);
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

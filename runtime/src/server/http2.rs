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
//! `ModelInfer`, the call that carries the traffic, skips the router and tonic's body streams when its request is
//! one uncompressed message within the size limit, the case every gRPC client sends: the driver reads the message's
//! bytes off the stream and hands them to [`DirectInfer`], which decodes them, answers through the service's own
//! method, and gives back the framed answer, written with its trailers here. Anything else (another method, a
//! `grpc-encoding`, a body framed otherwise or too large) goes to the router with the bytes already read put back, so
//! tonic answers it as it answers every call.
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
use http::HeaderMap;
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::grpc::service::DirectInfer;

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

/// Serves one HTTP/2 connection with `app` (and `direct`, when given, for the `ModelInfer` calls it takes) until the
/// client closes it, it fails, or `draining` turns `true` and the calls in flight are answered.
///
/// # Errors
/// The connection's own failure (a protocol error, a reset socket, a handshake or keep-alive timeout).
pub async fn serve(
    io: TcpStream,
    app: Router,
    direct: Option<DirectInfer>,
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
                        calls.push(answer(app.clone(), direct.clone(), request, respond));
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

/// One stream: the request through `direct` when it takes it, else through `app`; the answer back with flow control.
/// Errors end the stream only.
async fn answer(
    app: Router,
    direct: Option<DirectInfer>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (parts, mut body) = request.into_parts();
    let mut replay = None;
    if let Some(direct) = direct.filter(|_| parts.uri.path() == DirectInfer::PATH && uncompressed(&parts.headers)) {
        match read_message(&mut body, direct.limit()).await {
            Read::Message(message) => {
                let answer = direct.call(parts.headers, message).await;
                return send(answer, respond).await;
            }
            Read::Other(read) => replay = read,
            Read::Gone => return,
        }
    }
    let request = http::Request::from_parts(parts, Body::new(Incoming { replay, body, data_done: false }));
    // Boxed: the router's future is large, and most calls never make it, so the call's own future stays small.
    let Ok(response) = Box::pin(app.oneshot(request)).await;
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

/// Whether the call's messages are uncompressed: no `grpc-encoding`, or `identity` (as tonic reads it).
fn uncompressed(headers: &HeaderMap) -> bool {
    headers.get("grpc-encoding").is_none_or(|e| e == "identity")
}

/// A request body read for [`DirectInfer`].
enum Read {
    /// Exactly one uncompressed message within the limit, and no trailers: the message's bytes.
    Message(Bytes),
    /// Anything else: the bytes read so far, to give the router ahead of the rest of the stream.
    Other(Option<Bytes>),
    /// The stream failed (the client reset it): nobody to answer.
    Gone,
}

/// gRPC's message prefix: a compression flag and the message's length (4 bytes, big-endian).
const PREFIX: usize = 5;

/// Reads `body` while it can still be one uncompressed message of at most `limit` bytes, so at most that much is
/// held; it stops at the first sign it is not ([`Read::Other`]), giving its window back as it reads.
async fn read_message(body: &mut RecvStream, limit: usize) -> Read {
    // The first chunk as it came (the usual whole body), or the chunks so far joined.
    let mut read = Bytes::new();
    let mut joined: Option<bytes::BytesMut> = None;
    loop {
        match body.data().await {
            Some(Ok(chunk)) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                match joined.as_mut() {
                    None if read.is_empty() => read = chunk,
                    None => {
                        let mut all = bytes::BytesMut::from(&read[..]);
                        all.extend_from_slice(&chunk);
                        joined = Some(all);
                    }
                    Some(all) => all.extend_from_slice(&chunk),
                }
            }
            Some(Err(_)) => return Read::Gone,
            None => break,
        }
        let seen = joined.as_deref().unwrap_or(&read);
        if let Some(len) = message_len(seen)
            && (seen[0] != 0 || len > limit || seen.len() > PREFIX + len)
        {
            return Read::Other(Some(joined.map_or(read, bytes::BytesMut::freeze)));
        }
    }
    let read = joined.map_or(read, bytes::BytesMut::freeze);
    // Trailers still to come leave the stream open: the router's route reads them.
    if body.is_end_stream() && message_len(&read).is_some_and(|len| read.len() == PREFIX + len) {
        return Read::Message(read.slice(PREFIX..));
    }
    Read::Other((!read.is_empty()).then_some(read))
}

/// The length a message's prefix announces, once the prefix is all there.
fn message_len(read: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = read.get(1..PREFIX)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(prefix)).ok()
}

/// Sends [`DirectInfer`]'s answer: its headers, the framed message and `grpc-status: 0` in the trailers; or the
/// status alone, in the headers (trailers-only), as tonic answers a failed call.
async fn send(answer: Result<(HeaderMap, Bytes), tonic::Status>, mut respond: SendResponse<Bytes>) {
    let (headers, message) = match answer {
        Ok(answer) => answer,
        Err(status) => {
            let _ = respond.send_response(status.into_http::<()>(), true);
            return;
        }
    };
    let mut response = http::Response::new(());
    *response.headers_mut() = headers;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    if message.len() <= QUEUE_AT_ONCE {
        if send.send_data(message, false).is_ok() {
            let _ = send.send_trailers(trailers);
        }
        return;
    }
    let body = Body::new(http_body_util::Full::new(message).with_trailers(std::future::ready(Some(Ok(trailers)))));
    let mut out = Outgoing { body, send: &mut send, pending: None };
    // A body of bytes cannot fail: `Ok` whether or not the client still reads.
    let _ = poll_fn(|cx| out.poll_pipe(cx)).await;
}

/// A request body read from an h2 stream (after `replay`, what was read from it already), giving its window back as it
/// is read.
struct Incoming {
    replay: Option<Bytes>,
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
        if let Some(read) = self.replay.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(read))));
        }
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
        self.replay.is_none() && self.data_done && self.body.is_end_stream()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`read_message`] makes of a request body sent as `chunks` (one DATA frame each), then `trailers`, over
    /// a real HTTP/2 connection on 127.0.0.1; `end` says whether the client ends the stream.
    async fn read(chunks: &[&[u8]], trailers: bool, end: bool, limit: usize) -> Read {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (send, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(conn);
            let call = http::Request::post(DirectInfer::PATH).body(()).unwrap();
            let (_answer, mut body) = send.ready().await.unwrap().send_request(call, false).unwrap();
            for (i, chunk) in chunks.iter().enumerate() {
                let last = i + 1 == chunks.len() && !trailers && end;
                body.send_data(Bytes::copy_from_slice(chunk), last).unwrap();
            }
            if trailers {
                body.send_trailers(HeaderMap::new()).unwrap();
            } else if chunks.is_empty() && end {
                body.send_data(Bytes::new(), true).unwrap();
            }
            body
        };
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(tcp).await.unwrap();
            let (request, _respond) = conn.accept().await.unwrap().unwrap();
            tokio::spawn(async move { while conn.accept().await.is_some() {} });
            let mut body = request.into_body();
            read_message(&mut body, limit).await
        };
        // A body held open must be judged from what came: waiting for the rest would hang here.
        let both = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(client, server) });
        both.await.expect("read_message answered without waiting for the stream's end").1
    }

    fn message(len: u32, bytes: &[u8]) -> Vec<u8> {
        [&[0][..], &len.to_be_bytes(), bytes].concat()
    }

    #[tokio::test]
    async fn one_whole_message_is_taken_and_anything_else_is_given_back_as_read() {
        let whole = message(4, b"abcd");
        let taken = |r: Read| match r {
            Read::Message(m) => m,
            Read::Other(read) => panic!("not taken; read {read:?}"),
            Read::Gone => panic!("gone"),
        };
        let given_back = |r: Read| match r {
            Read::Other(read) => read.unwrap_or_default(),
            Read::Message(m) => panic!("taken: {m:?}"),
            Read::Gone => panic!("gone"),
        };
        assert_eq!(taken(read(&[&whole], false, true, 64).await), &b"abcd"[..]);
        assert_eq!(taken(read(&[&whole[..2], &whole[2..6], &whole[6..]], false, true, 64).await), &b"abcd"[..]);
        assert_eq!(taken(read(&[&message(0, b"")], false, true, 64).await), &b""[..]);
        // Trailers after the message, a second message, a compression flag, a message cut short, no message: the
        // router gets every byte.
        assert_eq!(given_back(read(&[&whole], true, true, 64).await), whole);
        let two = [whole.clone(), whole.clone()].concat();
        assert_eq!(given_back(read(&[&two], false, true, 64).await), two);
        let compressed = [&[1][..], &whole[1..]].concat();
        assert_eq!(given_back(read(&[&compressed], false, true, 64).await), compressed);
        assert_eq!(given_back(read(&[&whole[..7]], false, true, 64).await), whole[..7]);
        assert_eq!(given_back(read(&[], false, true, 64).await), b""[..]);
        // Over the limit: given back from the prefix alone, while the client still holds its stream open.
        let announced = message(1 << 20, b"ab");
        assert_eq!(given_back(read(&[&announced], false, false, 64).await), announced);
        // A message and more after it, the stream still open: given back at once, not buffered to the end.
        let more = [whole.clone(), b"more".to_vec()].concat();
        assert_eq!(given_back(read(&[&more], false, false, 64).await), more);
        assert_eq!(given_back(read(&[&message(65, &[0; 65])], false, true, 64).await), message(65, &[0; 65]));
        assert_eq!(taken(read(&[&message(64, &[7; 64])], false, true, 64).await), &[7; 64][..]);
    }
}

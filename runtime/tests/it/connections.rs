//! Hostile and slow clients over real sockets, and SIGTERM to the real binary: half-sent headers are
//! disconnected, stalled bodies get 408, connections beyond the limit wait, and shutdown never waits past its
//! deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferroserve::{AppState, ConnectionLimits, Limits, ModelStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::support::Fixture;

/// A server over the fixture's single model with `limits`; returns its address and its stop switch.
async fn start(fx: &Fixture, limits: ConnectionLimits) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(ModelStore::open(&fx.single()).unwrap(), Limits::default()).with_connections(limits);
    let store = state.store().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(ferroserve::serve_state(state, listener, async {
        let _ = stopped.await;
    }));
    store.wait_ready().await;
    (addr, stop)
}

/// Reads until the peer closes or `within` passes; returns what was read and whether the peer closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn half_sent_headers_are_disconnected() {
    let fx = Fixture::new();
    let limits = ConnectionLimits { header_read_timeout: Duration::from_millis(300), ..ConnectionLimits::default() };
    let (addr, _stop) = start(&fx, limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST /v2/models/anomaly-detector/infer HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "a half-sent request keeps its connection");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn stalled_bodies_get_408() {
    let fx = Fixture::new();
    let limits = ConnectionLimits { body_read_timeout: Duration::from_millis(300), ..ConnectionLimits::default() };
    let (addr, _stop) = start(&fx, limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /v2/models/anomaly-detector/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"inputs\"",
        )
        .await
        .unwrap();
    let (response, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("--body_read_timeout"), "{response}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let fx = Fixture::new();
    let limits = ConnectionLimits { max_connections: 2, ..ConnectionLimits::default() };
    let (addr, _stop) = start(&fx, limits).await;
    // Two connections hold both slots with half-sent requests.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /v2/health/live HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third is queued in the backlog: no answer while both are held.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let (response, _) = read_until_closed(&mut third, Duration::from_millis(500)).await;
    assert!(response.is_empty(), "answered beyond the connection limit: {response}");
    // One closes: the third is served.
    drop(held.pop());
    let (response, closed) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(closed && response.starts_with("HTTP/1.1 200"), "{response}");
}

/// SIGTERM to the real binary while a client holds a half-sent request: it exits 0 within the drain
/// deadline instead of waiting for the client.
#[tokio::test]
async fn sigterm_with_a_half_sent_request_exits_zero_within_the_deadline() {
    let fx = Fixture::new();
    let free_port = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (port, grpc_port) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferroserve"))
        .args(["--model_name", "m", "--model_dir", fx.versioned().to_str().unwrap(), "--host", "127.0.0.1"])
        .args(["--http_port", &port.to_string(), "--grpc_port", &grpc_port.to_string()])
        .args(["--shutdown_timeout", "1s", "--header_read_timeout", "60s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            s.write_all(b"GET /v2/health/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
            let (response, _) = read_until_closed(&mut s, Duration::from_secs(2)).await;
            if response.starts_with("HTTP/1.1 200") {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server never became ready");
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.id().unwrap().to_string();
    let started = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exited").unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?} to exit", started.elapsed());
    drop(half);
}

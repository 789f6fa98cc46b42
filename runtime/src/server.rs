//! The connection layer: accepting clients, bounding them, and draining them at shutdown.
//!
//! It serves both ports the same way: the REST router on `--http_port` and the gRPC router ([`crate::grpc`]; gRPC is
//! HTTP/2 with prior knowledge) on `--grpc_port`. Each accepted connection is served by hyper (HTTP/1.1, or HTTP/2
//! with prior knowledge), except that on the gRPC port a connection opening with HTTP/2's preface is served by
//! [`http2`], which answers each call in the connection's own task instead of a task per stream ([`Http2`]), with:
//! - a header-read timeout (`--header_read_timeout`): a client that sends half a request line or half its
//!   headers, or keeps an idle keep-alive connection, is disconnected after it;
//! - a body idle timeout (`--body_read_timeout`, applied by the router): a body that stalls between chunks
//!   gets 408;
//! - at most `--max_connections` connections at once: beyond it the listener stops accepting, and new
//!   clients wait in the kernel's backlog until one closes (no file-descriptor exhaustion);
//! - at shutdown (SIGTERM), the listener closes, idle connections close at once, requests in flight run to
//!   their end for up to `--shutdown_timeout`, then whatever is left is dropped and serving returns, so
//!   the process exits 0 inside Kubernetes' grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::config::ConnectionLimits;
use crate::grpc::service::DirectInfer;

pub mod http2;

/// How [`serve`] answers a connection that opens with HTTP/2's preface (prior knowledge, as gRPC clients speak).
#[derive(Debug, Clone)]
pub enum Http2 {
    /// hyper's server, a task per stream (the REST port, where HTTP/2 is rare).
    Hyper,
    /// [`http2`]: the connection's task answers its streams itself (the gRPC port), the `ModelInfer` calls it takes
    /// through [`DirectInfer`] when one is given.
    Inline(Option<DirectInfer>),
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module documentation).
///
/// # Errors
/// Never for a client's behaviour; only when the listener itself fails in a way that cannot be retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    h2: Http2,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(limits.header_read_timeout));
    let graceful = GracefulShutdown::new();
    // Tells the inline HTTP/2 connections to drain (hyper's are told by `graceful`).
    let (drain, draining) = tokio::sync::watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted: wait, go on.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        if let Http2::Inline(direct) = &h2 {
            let (app, direct, draining) = (app.clone(), direct.clone(), draining.clone());
            let (builder, watcher) = (builder.clone(), graceful.watcher());
            let keep_alive = limits.header_read_timeout;
            tokio::spawn(async move {
                let result = match http2::starts_with_preface(&stream, keep_alive).await {
                    Some(true) => http2::serve(stream, app, direct, keep_alive, draining).await,
                    Some(false) => {
                        let service = TowerToHyperService::new(app);
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                    // Nothing (or a closed socket) within --header_read_timeout.
                    None => Ok(()),
                };
                if let Err(e) = result {
                    debug!(%peer, error = %e, "connection closed with an error");
                }
                drop(permit);
            });
            continue;
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = limits.max_connections.saturating_sub(slots.available_permits());
    info!(connections = open, deadline_secs = limits.shutdown_timeout.as_secs_f64(), "draining");
    let _ = drain.send(true);
    // Every connection holds a slot until it ends: all slots back means all connections drained.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = async {
        graceful.shutdown().await;
        let _ = slots.acquire_many(all).await;
    };
    if tokio::time::timeout(limits.shutdown_timeout, drained).await.is_err() {
        let left = limits.max_connections.saturating_sub(slots.available_permits());
        warn!(connections = left, "the drain deadline passed; closing the connections still open");
    }
    Ok(())
}

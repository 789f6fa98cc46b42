//! `http-floor`: the physical floor for a v2 server on this machine. An axum handler that reads the request body
//! and answers a fixed, valid v2 inference response, with the same runtime (tokio, multi-threaded) and HTTP stack
//! (hyper) as Ferroserve, and no model: how fast HTTP alone goes, to show how close Ferroserve gets to it.
//!
//! ```text
//! http-floor --port 8099        # listens on 127.0.0.1 only
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::{get, post};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// The port on 127.0.0.1.
    #[arg(long, default_value_t = 8099)]
    port: u16,
}

const ANSWER: &str = r#"{"model_name":"floor","model_version":"1","outputs":[{"name":"predict","datatype":"INT64","shape":[1],"data":[1]}]}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = Router::new().route("/v2/health/ready", get(|| async { r#"{"ready":true}"# })).route(
        "/v2/models/{model}/infer",
        post(|_body: Bytes| async { ([(header::CONTENT_TYPE, "application/json")], ANSWER) }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

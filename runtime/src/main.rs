//! The `ferroserve` binary: parse flags, set up logging, bind REST and gRPC, serve until SIGTERM or ctrl-c.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use ferroserve::{AppState, Args, Config, example, shutdown, telemetry, validate};
use tokio::net::TcpListener;
use tracing::error;

#[tokio::main]
async fn main() -> ExitCode {
    // `ferroserve validate …` checks a running server; everything else is the server's own flags, which KServe
    // passes without a sub-command.
    if std::env::args_os().nth(1).is_some_and(|a| a == "validate") {
        let args = validate::ValidateArgs::parse_from(std::env::args_os().skip(1));
        let outcome = validate::validate(&args).await;
        // The exit code is the verdict, whether or not every line was read (`… --json | head`).
        let _ = validate::print(&outcome, args.json, &mut std::io::stdout().lock());
        if let Some(path) = &args.report
            && let Err(e) = validate::write_report(&outcome, path)
        {
            eprintln!("ferroserve validate: {e}");
            return ExitCode::from(2);
        }
        return ExitCode::from(outcome.exit_code);
    }
    let config = match Config::try_from(Args::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferroserve: {e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(config.log_format);
    let code = match run(config).await {
        Ok(()) => 0,
        Err(e) => {
            error!(error = format!("{e:#}"), "ferroserve failed");
            1
        }
    };
    // Exit now: returning would drop the runtime, which waits for the blocking pool, where a model folder may still
    // be loading (up to --load_timeout). The drain is over; nothing is left to finish.
    std::process::exit(code)
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Opened before binding, so that a missing model folder fails before the port is taken.
    let state = AppState::open(&config)?;
    let listener = TcpListener::bind((config.host.as_str(), config.http_port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.http_port))?;
    let grpc = TcpListener::bind((config.host.as_str(), config.grpc_port))
        .await
        .with_context(|| format!("cannot listen on {}:{} (--grpc_port)", config.host, config.grpc_port))?;
    let addr = listener.local_addr()?;
    let store = state.store().clone();
    tokio::spawn(async move {
        store.wait_ready().await;
        // Help for a person at a terminal; a closed stdout (`ferroserve … | head -1`) must not panic the task.
        let mut stdout = std::io::stdout().lock();
        for line in example::curl_examples(&store, addr) {
            if writeln!(stdout, "{line}").is_err() {
                break;
            }
        }
    });
    let listeners = ferroserve::Listeners { http: listener, grpc: Some(grpc) };
    ferroserve::serve_listeners(state, listeners, shutdown::signal()).await?;
    Ok(())
}

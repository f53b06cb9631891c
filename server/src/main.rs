//! `control-room`: parse flags and environment, then serve until SIGTERM or ctrl-c.

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use server::config::{Cli, Config, ProcessEnv};

/// mimalloc instead of the system's allocator: a relayed call allocates and frees many small
/// buffers across threads, where glibc's malloc spent ~15 % of the console's CPU
/// (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let command = cli.command.take();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A command's output is standard output (for scripts); its log goes to standard error.
    let writer = || if command.is_some() { BoxMakeWriter::new(std::io::stderr) } else { BoxMakeWriter::new(std::io::stdout) };
    // LOG_FORMAT=json: one JSON object per line, with the request's span (its id, route,
    // actor and task) on every event logged while serving it.
    match std::env::var("LOG_FORMAT").unwrap_or_default().trim() {
        "" | "text" => tracing_subscriber::fmt().with_writer(writer()).with_env_filter(filter).init(),
        "json" => tracing_subscriber::fmt().json().flatten_event(true).with_current_span(true).with_span_list(false).with_writer(writer()).with_env_filter(filter).init(),
        other => {
            eprintln!("control-room: LOG_FORMAT must be json or text, got {other:?}");
            return ExitCode::from(2);
        }
    }
    // The MCP bridge is a client of a running console: it reads no configuration of its own.
    if let Some(server::admin::Command::Mcp(args)) = command.clone() {
        let done = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string()).and_then(|rt| rt.block_on(server::mcp::bridge::run(args)));
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("control-room mcp: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = match Config::from_cli(cli, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("control-room: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("control-room: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        if let Some(cmd) = command {
            return match server::admin::command(&config, cmd, &mut std::io::stdin().lock(), &mut std::io::stdout()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("control-room: {e}");
                    ExitCode::from(2)
                }
            };
        }
        let listener = match tokio::net::TcpListener::bind(config.site_addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("control-room: cannot listen on {}: {e}", config.site_addr);
                return ExitCode::from(2);
            }
        };
        match server::run(listener, config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("control-room: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("ctrl-c: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}

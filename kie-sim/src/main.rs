//! `kie-sim`: run the KIE simulator on its own.

use clap::Parser;
use std::net::SocketAddr;

/// A stand-in for the KIE.ai API (see the crate docs for its behaviour and `/_sim/` control API).
#[derive(Parser)]
#[command(name = "kie-sim", version)]
struct Cli {
    #[arg(long, env = "KIE_SIM_ADDR", default_value = "127.0.0.1:8787")]
    addr: SocketAddr,
    /// An account key to create at start.
    #[arg(long, env = "KIE_SIM_KEY", default_value = "sim-key")]
    key: String,
    /// Its balance in credits.
    #[arg(long, default_value_t = 10_000.0)]
    balance: f64,
    /// Its webhook HMAC key (callbacks are signed when set).
    #[arg(long, env = "KIE_SIM_HMAC_KEY")]
    hmac_key: Option<String>,
    /// Simulated time runs this many times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// New generation requests per window per account.
    #[arg(long, default_value_t = 20)]
    rate_limit: u32,
    #[arg(long, default_value_t = 10_000)]
    rate_window_ms: u64,
    /// recordInfo requests per key per second.
    #[arg(long, default_value_t = 10)]
    record_info_per_sec: u32,
    /// Chat completions per key per minute.
    #[arg(long, default_value_t = 600)]
    chat_requests_per_min: u32,
    /// Chat tokens (prompt + completion) per key per minute.
    #[arg(long, default_value_t = 1_000_000)]
    chat_tokens_per_min: u32,
    /// Real ms between the chunks of a streamed chat answer.
    #[arg(long, default_value_t = 40)]
    chat_chunk_ms: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).init();
    let cli = Cli::parse();
    let settings = kie_sim::Settings {
        rate_limit: cli.rate_limit,
        rate_window_ms: cli.rate_window_ms,
        record_info_per_sec: cli.record_info_per_sec,
        chat_requests_per_min: cli.chat_requests_per_min,
        chat_tokens_per_min: cli.chat_tokens_per_min,
        chat_chunk_ms: cli.chat_chunk_ms,
        ..Default::default()
    };
    let sim = kie_sim::Sim::new(settings);
    sim.add_account(&cli.key, cli.balance, cli.hmac_key.as_deref());
    sim.world().clock.set_speed(cli.speed.max(1e-3));
    let listener = match tokio::net::TcpListener::bind(cli.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kie-sim: cannot listen on {}: {e}", cli.addr);
            return std::process::ExitCode::from(2);
        }
    };
    tracing::info!("kie-sim listening on http://{} (account key from --key)", cli.addr);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match sim.serve(listener, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kie-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

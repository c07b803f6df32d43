use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use cardswitch::server::{self, Config, Server};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// cardswitch: a transaction switch for stored-value and membership cards.
#[derive(Parser)]
#[command(name = "cardswitch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the switch: recover the data directory, then serve terminals over TCP.
    Serve {
        /// Data directory (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on; port 0 picks a free port (printed on stdout).
        #[arg(long)]
        listen: SocketAddr,
        /// Balance partitions (default: the number of cores).
        #[arg(long)]
        partitions: Option<usize>,
        /// Connections served at once.
        #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Close a connection that sends no complete frame for this long.
        #[arg(long, default_value_t = server::DEFAULT_IDLE_TIMEOUT_MS)]
        idle_timeout_ms: u64,
    },
    /// Run a scripted day against an embedded switch over real TCP and print what happened.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's table is the output; its switch only speaks up about problems.
    let default_level = if matches!(cli.command, Cmd::Demo) { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = match cli.command {
        Cmd::Serve { data, listen, partitions, max_connections, idle_timeout_ms } => {
            let mut config = Config::new(data, listen);
            config.partitions = partitions.unwrap_or(config.partitions);
            config.max_connections = max_connections;
            config.idle_timeout_ms = idle_timeout_ms;
            runtime.block_on(serve(config))
        }
        Cmd::Demo => runtime.block_on(cardswitch::demo::run()).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cardswitch: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    // Watched before anything is announced: a SIGTERM sent as soon as "listening on" is
    // printed must stop the switch gracefully, not kill it with the default action.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    let server = Server::start(config).await.map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.local_addr);
        let _ = out.flush();
    }
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

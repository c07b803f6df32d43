//! `miniswitch`: serves the switch in miniature (in memory, nothing durable) so that `loadgen`
//! can measure the ceiling of a machine: what the load generator and loopback TCP allow when
//! the switch itself costs almost nothing. Not a switch to run: it forgets everything on exit.
//!
//! ```text
//! miniswitch [--listen 127.0.0.1:0] [--threads N] [--admin-key-file PATH]
//! ```
//! The admin credential is the switch's (default `$CARDSWITCH_HOME/admin.key`): the load
//! generator provisions its terminals through it, on either.
//! Prints `listening on ADDR` once it accepts connections; stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cardswitch_tools::miniswitch::MiniSwitch;
use clap::Parser;

/// Most runtime threads; the point is to leave the machine's cores to the load generator.
const MAX_THREADS: usize = 256;

#[derive(Parser, Debug)]
#[command(
    name = "miniswitch",
    about = "An in-memory stand-in for the switch (nothing durable), to measure a machine's ceiling"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Runtime worker threads (default: one per core, as the switch's front end has).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    threads: Option<u16>,
    /// Admin credential file (default: $CARDSWITCH_HOME/admin.key, as the switch uses).
    #[arg(long)]
    admin_key_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let admin = match protocol::Credential::load_admin(cli.admin_key_file.as_deref()) {
        Ok(admin) => admin,
        Err(e) => {
            eprintln!("miniswitch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("miniswitch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(cli.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("miniswitch: cannot listen on {}: {e}", cli.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on {addr}"),
            Err(e) => {
                eprintln!("miniswitch: cannot read the listening address: {e}");
                return ExitCode::FAILURE;
            }
        }
        let serving = tokio::spawn(Arc::new(MiniSwitch::new(admin)).serve(listener));
        let stopped = tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(|e| e.to_string()),
            result = terminated() => result.map_err(|e| e.to_string()),
        };
        serving.abort();
        match stopped {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("miniswitch: cannot wait for a signal: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn terminated() -> std::io::Result<()> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?.recv().await;
    Ok(())
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use cardswitch::keys::{self, CredentialFile};
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
        /// Configuration file (TOML, see docs/cardswitch.toml); the flags below override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (created if missing); `server.data` of the configuration.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Address to listen on; port 0 picks a free port (printed on stdout).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Log level or filter (error, warn, info, debug, trace, or per module, as RUST_LOG):
        /// `log.level` of the configuration; RUST_LOG overrides both.
        #[arg(long)]
        log_level: Option<String>,
        /// Log lines as `text` (the default) or `json`, one object a line: `log.format`.
        #[arg(long)]
        log_format: Option<String>,
        /// Serve Prometheus metrics (`/metrics`) and `/health` over HTTP here, e.g.
        /// 127.0.0.1:9700; `server.metrics` of the configuration.
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Balance partitions (default: the number of cores).
        #[arg(long)]
        partitions: Option<usize>,
        /// Connections served at once (default: 10,000).
        #[arg(long)]
        max_connections: Option<usize>,
        /// Close a connection that sends no complete frame for this long (default: 300,000).
        #[arg(long)]
        idle_timeout_ms: Option<u64>,
        /// Master key file (64 hex digits), which wraps every stored terminal key; created with
        /// a random key if missing. Default: $CARDSWITCH_HOME/master.key (~/.cardswitch).
        #[arg(long)]
        master_key_file: Option<PathBuf>,
        /// Admin credential file (`terminal <id>` and `key <hex>`), provisioned as an admin
        /// terminal in a data directory that has none; created if missing. Default:
        /// $CARDSWITCH_HOME/admin.key.
        #[arg(long)]
        admin_key_file: Option<PathBuf>,
        /// Product catalog (TOML, see catalogs/); its version is recorded with every journal
        /// entry. Without one, only the core rules apply (catalog version 0).
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Run a scripted day against an embedded switch over real TCP and print what happened:
    /// the core rules, or with `--catalog retail` or `--catalog hotel` a day of a retail
    /// chain or a hotel under the shipped catalog.
    Demo {
        /// `retail` or `hotel`; without it, the core rules.
        #[arg(long)]
        catalog: Option<String>,
    },
    /// Print every journal entry of a stopped switch's data directory, one JSON object a line.
    Journal {
        /// Data directory of a stopped switch.
        #[arg(long)]
        data: PathBuf,
    },
    /// Settle a business date: close it at every store if still open, run its day-end
    /// housekeeping, then write totals per store, kind and method, the liability proof,
    /// finance's differences, staff self-use, company netting and a summary. Works on a
    /// running switch (through its control socket, from a consistent snapshot, without
    /// stopping its traffic) and on a stopped one. Exit status 0 balanced and in balance
    /// with finance, 3 finance differs, 4 the liability proof fails.
    Settle {
        /// Data directory of the switch, running or stopped.
        #[arg(long)]
        data: PathBuf,
        /// Business date, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// Finance's file: `date,store,method,amount` lines of money collected (yuan).
        #[arg(long)]
        finance: Option<PathBuf>,
        /// Directory for the files (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Companies and stores for the netting between companies (S6); default: the catalog
        /// the switch ran with, kept in its data directory.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Close a business day (S1) at every store, or at one, on a running switch (through
    /// its control socket) or a stopped one: from then on the stores' transactions carry the
    /// next date. Once a day is closed at every store its day-end housekeeping runs (S7).
    /// Days close by themselves at the catalog's cutover; this closes one early.
    CloseDay {
        /// Data directory of the switch, running or stopped.
        #[arg(long)]
        data: PathBuf,
        /// Close this store only; default: every store.
        #[arg(long)]
        store: Option<u32>,
        /// Close every day up to this one, YYYY-MM-DD; default: the day in progress.
        #[arg(long)]
        date: Option<String>,
    },
    /// Copy the data directory consistently to --to, which must not exist or be empty: from a
    /// running switch while it serves (a checkpoint through its control socket) or from a
    /// stopped one. The keys are not in it: keep the master key file with the backups.
    Backup {
        /// Data directory of the switch, running or stopped.
        #[arg(long)]
        data: PathBuf,
        /// Where the backup goes (created).
        #[arg(long)]
        to: PathBuf,
    },
    /// Bring a backup back as a new data directory (which must not exist or be empty), and
    /// open it once to prove it recovers. Start the switch on it with the same master key.
    Restore {
        /// The backup (`cardswitch backup --to`).
        #[arg(long)]
        from: PathBuf,
        /// The new data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Check a data directory (a running switch's through an online copy): every card's
    /// balances equal what its journal says, no transaction is journaled twice, and the last
    /// day closed at every store passes the liability proof. Exit status 4 when anything is
    /// wrong, each problem listed.
    Verify {
        /// Data directory of the switch, running or stopped.
        #[arg(long)]
        data: PathBuf,
    },
    /// The configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Administrative operations on a running switch, over the protocol as its admin terminal,
    /// each by an operator with its passcode (O1): a card's history (S9), its holder, losses,
    /// freezes, PINs, returns, corrections, operators, products, card stock and terminals.
    /// Readable output, or one JSON object with --json. Exit status 0 approved, 1 declined, 2
    /// usage, connection or protocol error.
    Admin {
        /// The switch's configuration file: where it listens (`server.listen`, a wildcard
        /// address taken as loopback) and its admin credential (`secrets.admin_key_file`).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Address of the switch, HOST:PORT; default: `server.listen` of --config.
        #[arg(long, value_name = "HOST:PORT", global = true)]
        addr: Option<String>,
        #[command(flatten)]
        admin: cardswitch_tools::pos::admin::AdminCli,
    },
    /// Operators of a stopped switch's data directory (O1). The first admin operator is made
    /// here; the others over the wire by an admin operator (`cardswitch admin set-operator`).
    Operator {
        #[command(subcommand)]
        command: OperatorCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a configuration file without starting: every key, the addresses, the limits, that
    /// the catalog loads and the key files can be read or created. Exit status 1 with every
    /// problem named by its key.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum OperatorCmd {
    /// Adds or replaces an operator, enabled. Its passcode (6 to 15 bytes) is read from the
    /// first line of standard input, so it never appears in the process list or shell history.
    Add {
        /// Data directory of a stopped switch (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// Operator id (1 or more).
        #[arg(long)]
        id: u32,
        /// cashier, front_desk, customer_service, finance, hq_finance, admin or manager.
        #[arg(long)]
        role: String,
        /// The store the operator works at; 0 (the default) for every store (head-office roles).
        #[arg(long, default_value_t = 0)]
        store: u32,
        /// Master key file (the switch's); default: $CARDSWITCH_HOME/master.key.
        #[arg(long)]
        master_key_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A client of the running switch: its own small runtime, its replies the output.
    if let Cmd::Admin { config, addr, admin } = cli.command {
        return match admin_target(config.as_deref(), addr) {
            Ok((addr, admin_key_file)) => admin.run(addr, admin_key_file),
            Err(error) => {
                eprintln!("cardswitch admin: {error}");
                ExitCode::from(2)
            }
        };
    }
    // The demo's table is the output; its switch only speaks up about problems.
    let mut level = if matches!(cli.command, Cmd::Demo { .. }) { "warn".to_string() } else { "info".to_string() };
    let mut json = false;
    if let Cmd::Serve { config, log_level, log_format, .. } = &cli.command {
        // The file's settings, if it reads; its problems are reported once logging is up.
        let file =
            config.as_deref().and_then(|path| cardswitch::config::FileConfig::load(path).ok()).unwrap_or_default();
        if let Some(chosen) = log_level.clone().or(file.log_level) {
            level = chosen;
        }
        match log_format.as_deref().or(file.log_format.as_deref()) {
            None | Some("text") => {}
            Some("json") => json = true,
            Some(other) => {
                eprintln!("cardswitch: --log-format {other}: the formats are text and json");
                return ExitCode::FAILURE;
            }
        }
    }
    // RUST_LOG, when set, wins: it is how a running service is made to say more for a while.
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => match EnvFilter::try_new(&level) {
            Ok(filter) => filter,
            Err(error) => {
                eprintln!("cardswitch: log level {level}: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    // Colours only for a person at a terminal: not in a file, a pipe or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        logs.json().with_current_span(false).init();
    } else {
        logs.init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Cmd::Settle { data, date, finance, out, catalog } = &cli.command {
        let catalog = match catalog.as_deref().map(load_catalog).transpose() {
            Ok(catalog) => catalog,
            Err(error) => {
                eprintln!("cardswitch: {error}");
                return ExitCode::FAILURE;
            }
        };
        return match cardswitch::settle::run(data, date, finance.as_deref(), catalog.as_ref(), out) {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                eprintln!("cardswitch: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match cli.command {
        Cmd::Serve {
            config,
            data,
            listen,
            metrics,
            log_level: _,
            log_format: _,
            partitions,
            max_connections,
            idle_timeout_ms,
            master_key_file,
            admin_key_file,
            catalog,
        } => {
            // Flags first, then the file, then the defaults.
            let file = match config.as_deref().map(cardswitch::config::FileConfig::load).transpose() {
                Ok(file) => file.unwrap_or_default(),
                Err(error) => {
                    eprintln!("cardswitch: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let (default_partitions, default_connections, default_idle_ms) = file.or_defaults();
            let required = |flag: &str, key: &str| format!("{flag} is required (or {key} in --config)");
            let setup = data
                .or(file.data)
                .ok_or_else(|| required("--data", "server.data"))
                .and_then(|data| {
                    Ok((data, listen.or(file.listen).ok_or_else(|| required("--listen", "server.listen"))?))
                })
                .and_then(|(data, listen)| {
                    let keys =
                        key_files(master_key_file.or(file.master_key_file), admin_key_file.or(file.admin_key_file))
                            .map_err(|e| e.to_string())?;
                    let catalog = catalog.or(file.catalog).as_deref().map(load_catalog).transpose()?;
                    Ok((data, listen, keys, catalog))
                });
            match setup {
                Ok((data, listen, keys, catalog)) => {
                    let mut config = Config::new(data, listen);
                    config.partitions = partitions.unwrap_or(default_partitions);
                    config.max_connections = max_connections.unwrap_or(default_connections);
                    config.idle_timeout_ms = idle_timeout_ms.unwrap_or(default_idle_ms);
                    config.keys = keys;
                    config.catalog = catalog.map(std::sync::Arc::new);
                    config.metrics = metrics.or(file.metrics);
                    runtime.block_on(serve(config))
                }
                Err(error) => Err(error),
            }
        }
        Cmd::Config { command: ConfigCmd::Check { file } } => match cardswitch::config::FileConfig::load(&file) {
            Ok(config) => {
                println!("{}: valid", file.display());
                if let Some(listen) = config.listen {
                    println!("  listen     {listen}");
                }
                if let Some(data) = &config.data {
                    println!("  data       {}", data.display());
                }
                if let Some(catalog) = &config.catalog {
                    println!("  catalog    {}", catalog.display());
                }
                Ok(())
            }
            Err(error) => Err(format!("{error}")),
        },
        Cmd::Demo { catalog: None } => runtime.block_on(cardswitch::demo::run()).map_err(|e| e.to_string()),
        Cmd::Demo { catalog: Some(name) } => match cardswitch::demo_day::Business::from_name(&name) {
            Some(business) => runtime.block_on(cardswitch::demo_day::run(business)).map_err(|e| e.to_string()),
            None => Err(format!("--catalog {name}: the demo catalogs are `retail` and `hotel`")),
        },
        Cmd::Journal { data } => cardswitch::journal_cmd::print_journal(&data),
        Cmd::Settle { .. } => unreachable!("settled above"),
        Cmd::Admin { .. } => unreachable!("sent above"),
        Cmd::CloseDay { data, store, date } => close_day(&data, store, date.as_deref()),
        Cmd::Backup { data, to } => cardswitch::backup::backup(&data, &to)
            .map(|to| println!("backup of {} made in {}", data.display(), to.display()))
            .map_err(|e| format!("no backup made: {e}")),
        Cmd::Restore { from, data } => cardswitch::backup::restore(&from, &data)
            .map(|cards| println!("{} restored into {}: {cards} cards", from.display(), data.display()))
            .map_err(|e| format!("not restored: {e}")),
        Cmd::Verify { data } => return verify(&data),
        Cmd::Operator { command: OperatorCmd::Add { data, id, role, store, master_key_file } } => {
            add_operator(&data, id, &role, store, master_key_file)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cardswitch: {message}");
            ExitCode::FAILURE
        }
    }
}

fn verify(data: &std::path::Path) -> ExitCode {
    match cardswitch::backup::verify(data) {
        Ok(v) => {
            println!("{}: {} cards, {} journal entries", data.display(), v.cards, v.entries);
            match v.closed_day {
                Some((day, balanced)) => println!(
                    "last day closed at every store: {} — liability proof {}",
                    cardswitch::engine::rules::date_text(day),
                    if balanced { "balanced" } else { "NOT BALANCED" }
                ),
                None => println!("no day closed at every store yet"),
            }
            for problem in &v.problems {
                println!("problem: {problem}");
            }
            if v.more_problems > 0 {
                println!("problem: {} more not listed", v.more_problems);
            }
            if v.ok() {
                println!("verified: every balance is explained by its journal");
                ExitCode::SUCCESS
            } else {
                ExitCode::from(cardswitch::backup::EXIT_PROBLEMS)
            }
        }
        Err(error) => {
            eprintln!("cardswitch: cannot verify: {error}");
            ExitCode::FAILURE
        }
    }
}

fn close_day(data: &std::path::Path, store: Option<u32>, date: Option<&str>) -> Result<(), String> {
    use cardswitch::control::ControlRequest;
    use cardswitch::engine::days::Scope;
    let through = date
        .map(|text| cardswitch::settle::parse_date(text).ok_or_else(|| format!("--date {text}: not a date YYYY-MM-DD")))
        .transpose()?;
    let scope = store.map_or(Scope::All, Scope::Store);
    let request = ControlRequest::Close { scope, through };
    match cardswitch::control::request(data, request).map_err(|e| format!("cannot reach the running switch: {e}"))? {
        Some(Ok(text)) => {
            println!("running switch: {text}");
            Ok(())
        }
        Some(Err(message)) => Err(format!("the running switch refused: {message}")),
        None => {
            let (closed, book) = cardswitch::days::close_stopped(data, scope, through).map_err(|e| e.to_string())?;
            println!("stopped switch: {}", cardswitch::days::describe(&closed, &book, scope));
            Ok(())
        }
    }
}

fn add_operator(
    data: &std::path::Path,
    id: u32,
    role: &str,
    store: u32,
    master: Option<PathBuf>,
) -> Result<(), String> {
    let role = protocol::OperatorRole::from_name(role).ok_or_else(|| {
        let names: Vec<&str> = protocol::OperatorRole::ALL.iter().map(|r| r.as_str()).collect();
        format!("--role {role} is not a role; the roles are {}", names.join(", "))
    })?;
    let master_path = match master {
        Some(path) => path,
        None => keys::default_key_dir().map_err(|e| e.to_string())?.join(keys::MASTER_KEY_FILE),
    };
    let (master, _) = keys::MasterKey::load_or_create(&master_path).map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the passcode from standard input: {e}"))?;
    let passcode = line.trim_end_matches(['\r', '\n']);
    cardswitch::operators::add_to_data_dir(data, &master, id, role, store, passcode.as_bytes())
        .map_err(|e| format!("operator {id} not added: {e}"))?;
    println!("operator {id} ({role}, store {store}) added to {}", data.display());
    Ok(())
}

/// Reads and checks the catalog file at `path`; the error names the file, the key and the
/// problem.
fn load_catalog(path: &std::path::Path) -> Result<cardswitch::engine::catalog::Catalog, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the catalog {}: {e}", path.display()))?;
    let catalog = cardswitch::engine::catalog::Catalog::from_toml_str(&path.display().to_string(), &text)
        .map_err(|e| e.to_string())?;
    tracing::info!(path = %path.display(), version = catalog.version, "catalog loaded");
    Ok(catalog)
}

/// The master key and admin credential from their files (defaults in the key directory),
/// each created with a random key when missing.
fn key_files(master: Option<PathBuf>, admin: Option<PathBuf>) -> Result<server::Keys, keys::KeyError> {
    let in_key_dir = |name: &str| keys::default_key_dir().map(|dir| dir.join(name));
    let master_path = master.map_or_else(|| in_key_dir(keys::MASTER_KEY_FILE), Ok)?;
    let admin_path = admin.map_or_else(|| in_key_dir(keys::ADMIN_KEY_FILE), Ok)?;
    let (master, created) = keys::MasterKey::load_or_create(&master_path)?;
    if created {
        tracing::info!(path = %master_path.display(), "created a master key file");
    }
    let (admin, created) = keys::Credential::load_or_create(&admin_path, keys::DEFAULT_ADMIN_TERMINAL)?;
    if created {
        tracing::info!(path = %admin_path.display(), terminal_id = admin.terminal_id, "created an admin credential file");
    }
    Ok(server::Keys { master, admin })
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
        if let Some(addr) = server.metrics_addr {
            let _ = writeln!(out, "metrics on http://{addr}/metrics");
        }
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

/// Where `cardswitch admin` finds the switch and its admin credential: `--addr`, else the
/// configuration's `server.listen` (a wildcard address is the switch on this machine), and the
/// configuration's `secrets.admin_key_file` if it names one.
fn admin_target(config: Option<&std::path::Path>, addr: Option<String>) -> Result<(String, Option<PathBuf>), String> {
    let file = config.map(cardswitch::config::FileConfig::load).transpose().map_err(|e| e.to_string())?;
    let file = file.unwrap_or_default();
    let listen = file.listen.map(|mut listen| {
        if listen.ip().is_unspecified() {
            listen.set_ip(if listen.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        listen.to_string()
    });
    match addr.or(listen) {
        Some(addr) => Ok((addr, file.admin_key_file)),
        None if config.is_some() => Err("the configuration has no server.listen: give --addr HOST:PORT".to_string()),
        None => Err("give --addr HOST:PORT, or --config FILE with the switch's server.listen".to_string()),
    }
}

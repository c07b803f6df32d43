//! The TCP front: accepts terminals, decodes frames, hands card requests to their partition
//! and writes replies back in batches. It decides nothing about cards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use bytes::BytesMut;
use futures::StreamExt;
use protocol::{
    encode_frame, encode_signed, AdminAction, Frame, Header, InboundCodec, Message, MsgType, OperatorReply,
    OperatorRole, Request, Response, ResponseCode, Sealed, SecretKind, SignOnReply, TerminalKey, TerminalReply,
    TerminalRole,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::coordinator::{Coordinator, CoordinatorError, Origin};
use crate::engine::member::MemberRules;
use crate::engine::roles;
use crate::engine::TraceKey;
use crate::engine::{check_import, validate, CardRange, Command, Pin, PinKey, Rules};
use crate::keys::{Credential, CredentialFile, KeyError, Keyring, MasterKey, StanUse, Terminal, ANY_STORE};
use crate::operators::OperatorBook;
use crate::partition::{reply_frame, Clock, Partitions, SystemClock};
use crate::store::materializer::Materializer;
use crate::store::{Store, StoreError};

/// Connections served at once; more are answered `system_busy` and closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// A connection with no complete frame for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
/// Requests one connection may have outstanding; beyond it the switch stops reading from
/// that connection until replies drain (SPEC.md, pipelining).
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1_024;
/// Replies gathered into one socket write.
pub const MAX_REPLIES_PER_WRITE: usize = 256;
/// How long shutdown waits for in-flight requests before giving up on them.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning.
const ACCEPT_BACKOFF_MS: u64 = 100;
/// How often the switch looks whether a store's cutover has passed (S1).
const CUTOVER_TICK_MS: u64 = 1_000;

/// The switch's secrets (see `keys`).
#[derive(Clone, Debug)]
pub struct Keys {
    /// Wraps every stored terminal key.
    pub master: MasterKey,
    /// Provisioned as an admin terminal in a data directory that has no admin terminal.
    pub admin: Credential,
}

impl Keys {
    /// Fresh random keys held in memory only: for tests, the demo and benchmarks, which keep
    /// the `Config` to restart on the same data directory.
    pub fn ephemeral() -> Result<Keys, KeyError> {
        Ok(Keys { master: MasterKey::random()?, admin: Credential::random(crate::keys::DEFAULT_ADMIN_TERMINAL)? })
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub partitions: usize,
    pub max_connections: usize,
    pub idle_timeout_ms: u64,
    pub keys: Keys,
    /// The product catalog in force; its version is stamped on every journal entry. None:
    /// the core rules only (version 0).
    pub catalog: Option<Arc<crate::engine::catalog::Catalog>>,
    /// Where to serve `/metrics` and `/health` (None: not served).
    pub metrics: Option<SocketAddr>,
}

impl Config {
    /// A configuration with defaults and ephemeral keys (see [`Keys::ephemeral`]).
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Config {
        Config {
            data_dir,
            listen,
            partitions: default_partitions(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            keys: Keys::ephemeral().expect("the operating system gives random bytes"),
            catalog: None,
            metrics: None,
        }
    }
}

/// One partition per core.
pub fn default_partitions() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the data directory: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("partitions must be between 1 and {max}, not {given}")]
    Partitions { given: usize, max: usize },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("recovering operations spanning partitions: {0}")]
    Coordinator(#[from] CoordinatorError),
    #[error("closing the business days due at start-up: {0}")]
    Days(#[from] crate::days::DaysError),
}

/// Most partitions a switch runs.
pub const MAX_PARTITIONS: usize = 256;

/// The switch's shared state: the partitions and what the front needs besides them.
struct Switch {
    partitions: Partitions,
    /// Stopped after the partitions, so it folds their last group commits.
    materializer: std::sync::Mutex<Materializer>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    /// Imported ranges; the lock serialises imports, which are rare administrative requests.
    ranges: tokio::sync::Mutex<Vec<CardRange>>,
    idle_timeout: Duration,
    /// Every provisioned terminal and its key.
    keyring: Keyring,
    master: MasterKey,
    /// Serialises provisioning and operator changes, rare administrative requests.
    provisioning: tokio::sync::Mutex<()>,
    /// Every operator and its passcode hash (O1).
    operators: OperatorBook,
    /// Operations spanning partitions and the member index (M1, L6).
    coordinator: Coordinator,
    /// The rules in force (the catalog: fees of replacements, L6; products, P3).
    rules: std::sync::RwLock<Rules>,
    /// Per partition, the last group commit materialized (card histories read the log after).
    materialized: crate::store::materializer::MaterializedMarks,
    /// Responses by type and code (authentication failures among them, SPEC §3.1),
    /// latencies, group commits, connections (`metrics`).
    metrics: Arc<crate::metrics::Metrics>,
    /// The business day of every store, and its closing (S1, S7).
    days: crate::days::Days,
    data_dir: PathBuf,
}

/// A running switch: its address, and a handle to stop it.
pub struct Server {
    pub local_addr: SocketAddr,
    /// Where `/metrics` and `/health` are served, when configured.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Server {
    /// Opens the store, recovers, starts the partitions and listens. Returns once connections
    /// are accepted.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        if config.partitions == 0 || config.partitions > MAX_PARTITIONS {
            return Err(ServerError::Partitions { given: config.partitions, max: MAX_PARTITIONS });
        }
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let shutdown = CancellationToken::new();
        // Bound first: `/health` says "recovering" while the store is recovered.
        let metrics_addr = match config.metrics {
            None => None,
            Some(addr) => {
                let listener = crate::metrics::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
                let bound = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
                tokio::spawn(crate::metrics::serve(listener, metrics.clone(), shutdown.clone()));
                Some(bound)
            }
        };
        let data_dir = config.data_dir.clone();
        let partitions = config.partitions;
        let keys = config.keys.clone();
        let (store, recovered, keyring, operators, overrides) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let store = Store::open(&data_dir)?;
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "store opened");
            let keyring = load_keyring(&store, &keys)?;
            let operators = OperatorBook::new(&keys.master, store.operators()?);
            if operators.is_empty() {
                tracing::warn!(
                    "no operators: administrative requests are refused until `cardswitch operator add` creates one"
                );
            }
            let recovered = store.recover(partitions)?;
            let overrides = store.product_overrides()?;
            Ok::<_, ServerError>((store, recovered, keyring, operators, overrides))
        })
        .await
        .expect("recovery does not panic")?;
        let store = Arc::new(store);
        let ranges = recovered.ranges.clone();
        tracing::info!(
            ranges = ranges.len(),
            cards = recovered.partitions.iter().map(|p| p.cards.len()).sum::<usize>(),
            max_txn_id = recovered.max_txn_id,
            replayed_log_records = recovered.replayed_records,
            "recovered"
        );
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut catalog = config.catalog.clone().unwrap_or_else(|| Arc::new(crate::engine::catalog::Catalog::core()));
        // Products administered at run time (P3), on top of the file, in the order made.
        for o in &overrides {
            match catalog.with_override(o) {
                Ok(updated) => catalog = Arc::new(updated),
                Err(problem) => {
                    tracing::warn!(product = o.product.name(), %problem, "a product override no longer applies")
                }
            }
        }
        let rules = Rules::new(catalog, PinKey::new(&config.keys.master.pin_secret()));
        // Kept with the data: a batch over the stopped directory applies the same rules.
        store.put_catalog_text(rules.catalog.source_text.as_deref())?;
        let days = crate::days::Days::open(store.clone(), clock.clone(), &rules.catalog)?;
        // Snapshots a batch was reading when the switch stopped are of no further use.
        let snapshots = config.data_dir.join(crate::control::SNAPSHOTS_DIR);
        if snapshots.exists() {
            if let Err(error) = std::fs::remove_dir_all(&snapshots) {
                tracing::warn!(path = %snapshots.display(), %error, "old snapshots not removed");
            }
        }
        // P3: approved quantities count the cards already sold.
        for product in crate::engine::Product::ALL {
            let sold = recovered
                .partitions
                .iter()
                .flat_map(|p| p.cards.values())
                .filter(|c| c.product == product as u16)
                .count();
            rules.issued.set(product as u16, sold as u64);
        }
        let materializer = Materializer::start(store.clone(), partitions, recovered.marks.clone());
        let materialized = materializer.marks();
        let coordinator = Coordinator::open(store.clone(), &config.keys.master)?;
        let switch = Arc::new(Switch {
            partitions: Partitions::start(
                recovered,
                store.clone(),
                clock.clone(),
                Some((materializer.feed(), materializer.marks())),
                rules.clone(),
                days.book(),
                metrics.clone(),
            ),
            materializer: std::sync::Mutex::new(materializer),
            coordinator,
            rules: std::sync::RwLock::new(rules.clone()),
            materialized,
            store,
            clock,
            ranges: tokio::sync::Mutex::new(ranges),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            keyring,
            master: config.keys.master.clone(),
            provisioning: tokio::sync::Mutex::new(()),
            operators,
            metrics: metrics.clone(),
            days,
            data_dir: config.data_dir.clone(),
        });
        let gauges: Arc<dyn crate::metrics::Gauges> = switch.clone();
        let gauges = Arc::downgrade(&gauges);
        // Before anything is served: operations a crash left half done are finished (M1, L6).
        let unfinished = switch.coordinator.recover(&switch.partitions).await?;
        if unfinished > 0 {
            tracing::info!(unfinished, "operations spanning partitions recovered");
        }
        // Days whose cutover passed while the switch was stopped close before anything is
        // served, and housekeeping a crash interrupted is finished (S1, S7).
        let ticking = switch.clone();
        tokio::task::spawn_blocking(move || ticking.days.tick(&ticking.partitions))
            .await
            .expect("closing days does not panic")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        metrics.ready(gauges);
        let task = tokio::spawn(run(listener, switch, config.max_connections, shutdown.clone()));
        Ok(Server { local_addr, metrics_addr, shutdown, task, metrics })
    }

    /// Responses sent per code since the start: how many requests were refused and why.
    pub fn declines(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Stops accepting, lets in-flight requests finish and be answered, stops the
    /// partitions after their last group commit, and returns when all of that is done.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// The provisioned terminals, each key unwrapped with the master key. A data directory with
/// no admin terminal gets the admin credential's terminal as one, so that the first
/// terminals can be provisioned over the wire.
fn load_keyring(store: &Store, keys: &Keys) -> Result<Keyring, ServerError> {
    let keyring = Keyring::default();
    let mut has_admin = false;
    for stored in store.terminals()? {
        let terminal = keys.master.open(&stored)?;
        has_admin |= terminal.role == TerminalRole::Admin;
        keyring.insert(terminal);
    }
    if !has_admin {
        let admin = &keys.admin;
        if keyring.get(admin.terminal_id).is_some() {
            tracing::warn!(
                terminal_id = admin.terminal_id,
                "no admin terminal, and the admin credential's terminal id is taken by a pos terminal"
            );
        } else {
            let terminal = Terminal::new(admin.terminal_id, ANY_STORE, TerminalRole::Admin, admin.key.clone(), true);
            store.put_terminal(&keys.master.seal(&terminal)?)?;
            keyring.insert(terminal);
            tracing::info!(terminal_id = admin.terminal_id, "provisioned the admin credential's terminal as admin");
        }
    }
    tracing::info!(terminals = keyring.len(), "terminal keys loaded");
    Ok(keyring)
}

async fn run(listener: TcpListener, switch: Arc<Switch>, max_connections: usize, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
    // The cutover clock and the control socket stop before the partitions do.
    let housekeeping_stop = CancellationToken::new();
    let control = {
        let data_dir = switch.data_dir.clone();
        let switch = switch.clone();
        let handler: crate::control::Handler = Arc::new(move |request| control_request(&switch, request));
        let stop = housekeeping_stop.clone();
        tokio::spawn(async move { crate::control::serve(&data_dir, handler, stop).await })
    };
    let cutovers = tokio::spawn(run_cutovers(switch.clone(), housekeeping_stop.clone()));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let switch = switch.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    let connections = &switch.metrics.connections;
                    connections.fetch_add(1, Ordering::Relaxed);
                    serve_connection(stream, switch.clone(), shutdown).await;
                    switch.metrics.connections.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Err(_) => {
                tracker.spawn(refuse_connection(stream));
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    housekeeping_stop.cancel();
    let _ = control.await;
    let _ = cutovers.await;
    // Every connection has finished (or outlived the grace period), so nothing new reaches
    // the partitions; they finish their queues, commit, and stop.
    let refused = switch.metrics.nonzero();
    if !refused.is_empty() {
        let summary: Vec<String> = refused.iter().map(|(code, n)| format!("{code} {n}")).collect();
        tracing::info!(declines = %summary.join(", "), "declines sent since the start");
    }
    tokio::task::spawn_blocking(move || {
        switch.partitions.stop();
        switch.materializer.lock().unwrap_or_else(|e| e.into_inner()).stop();
    })
    .await
    .unwrap_or(());
}

/// Closes the days whose cutover has passed (S1), once a `CUTOVER_TICK_MS`, until `stop`.
async fn run_cutovers(switch: Arc<Switch>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(CUTOVER_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ticking = switch.clone();
        match tokio::task::spawn_blocking(move || ticking.days.tick(&ticking.partitions)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "closing the business day failed"),
            Err(_) => tracing::error!("closing the business day panicked"),
        }
    }
}

impl crate::metrics::Gauges for Switch {
    fn queue_depths(&self) -> Vec<usize> {
        self.partitions.queue_depths()
    }

    fn failed_partitions(&self) -> usize {
        self.partitions.failed_count()
    }
}

/// Answers a request on the control socket (see `control`). Blocking.
fn control_request(switch: &Switch, request: crate::control::ControlRequest) -> Result<String, String> {
    use crate::control::ControlRequest;
    match request {
        ControlRequest::Close { scope, through } => {
            let closed = switch.days.close(&switch.partitions, scope, through).map_err(|e| e.to_string())?;
            Ok(crate::days::describe(&closed, &switch.days.book(), scope))
        }
        ControlRequest::Backup { to } => {
            switch.store.checkpoint(&to).map_err(|e| format!("making the backup: {e}"))?;
            tracing::info!(path = %to.display(), "backup made");
            Ok(to.display().to_string())
        }
        ControlRequest::Snapshot { date } => {
            switch
                .days
                .close(&switch.partitions, crate::engine::days::Scope::All, Some(date))
                .map_err(|e| format!("closing {}: {e}", crate::engine::rules::date_text(date)))?;
            // Absolute: the batch asking may run in another directory than the switch.
            let data_dir = std::fs::canonicalize(&switch.data_dir).unwrap_or_else(|_| switch.data_dir.clone());
            let path = crate::control::snapshot_path(&data_dir, date, switch.clock.now_ms());
            switch.store.checkpoint(&path).map_err(|e| format!("making a snapshot: {e}"))?;
            tracing::info!(date, path = %path.display(), "snapshot made for the batch");
            Ok(path.display().to_string())
        }
    }
}

async fn refuse_connection(mut stream: TcpStream) {
    let frame = reply_frame(
        &protocol::Header::default(),
        Response::Error { code: ResponseCode::SystemBusy, text: "connection limit reached".into() },
    );
    let mut buf = BytesMut::new();
    encode_frame(&frame, &mut buf);
    let _ = stream.write_all(&buf).await;
    let _ = stream.shutdown().await;
}

/// The approver a request names (R2, L10); 0 for none.
fn approver_of(request: &Request) -> u32 {
    match request {
        Request::Sale { verification, .. }
        | Request::Hold { verification, .. }
        | Request::CardAdmin { verification, .. } => verification.approver_id,
        _ => 0,
    }
}

/// What the session proved about a card request (SPEC §3.2, O1): the secrets it carried,
/// opened, and the operators it named, verified.
#[derive(Default)]
struct Verified {
    pin: Option<Pin>,
    new_pin: Option<Pin>,
    approver_id: u32,
    operator_id: u32,
}

/// Opens a sealed field; one that does not open is `invalid_field`.
fn open_secret(
    sealed: &Sealed,
    kind: SecretKind,
    header: &Header,
    key: &TerminalKey,
) -> Result<Option<Vec<u8>>, ResponseCode> {
    sealed.open(key, kind, header.terminal_id, header.stan).map_err(|_| ResponseCode::InvalidField)
}

fn open_pin(
    sealed: &Sealed,
    kind: SecretKind,
    header: &Header,
    key: &TerminalKey,
) -> Result<Option<Pin>, ResponseCode> {
    match open_secret(sealed, kind, header, key)? {
        None => Ok(None),
        Some(bytes) => Pin::new(&bytes).map(Some).ok_or(ResponseCode::InvalidField),
    }
}

/// Opens what a sale, hold or administrative request carries and checks who it names: the
/// operator of a `card_admin` by passcode, store and role (O1); an approver as a manager of
/// this store (R2, L10). Nothing is lifted or administered on a claim alone.
/// O1: the operator a request names, if its sealed passcode opens and matches, it works at
/// the session's store, and its role is `allowed` (`role_not_permitted` otherwise).
fn checked_operator(
    operators: &OperatorBook,
    header: &Header,
    operator: &protocol::OperatorAuth,
    store_id: u32,
    key: &TerminalKey,
    allowed: impl Fn(OperatorRole) -> bool,
) -> Result<crate::operators::Operator, ResponseCode> {
    let passcode = open_secret(&operator.passcode, SecretKind::OperatorPasscode, header, key)?;
    let found = operators.verify(operator.operator_id, passcode.as_deref(), store_id)?;
    if allowed(found.role) {
        Ok(found)
    } else {
        Err(ResponseCode::RoleNotPermitted)
    }
}

fn verify(
    request: &Request,
    header: &Header,
    key: &TerminalKey,
    operators: &OperatorBook,
    store_id: u32,
) -> Result<Verified, ResponseCode> {
    let (verification, admin) = match request {
        Request::Sale { verification, .. } | Request::Hold { verification, .. } => (verification, None),
        Request::CardAdmin { verification, operator, action, new_pin, .. } => {
            (verification, Some((operator, *action, new_pin)))
        }
        _ => return Ok(Verified::default()),
    };
    let mut verified =
        Verified { pin: open_pin(&verification.pin, SecretKind::Pin, header, key)?, ..Verified::default() };
    if let Some((operator, action, new_pin)) = admin {
        let action = AdminAction::from_u8(action).expect("validated");
        let found = checked_operator(operators, header, operator, store_id, key, |role| roles::may(role, action))?;
        verified.operator_id = found.operator_id;
        verified.new_pin = open_pin(new_pin, SecretKind::NewPin, header, key)?;
    }
    if verification.approver_id == 0 {
        if !verification.approver_passcode.is_none() {
            return Err(ResponseCode::InvalidField);
        }
    } else {
        let passcode = open_secret(&verification.approver_passcode, SecretKind::Passcode, header, key)?;
        verified.approver_id = operators.verify_approver(verification.approver_id, passcode.as_deref(), store_id)?;
    }
    Ok(verified)
}

fn needs_admin(request: &Request) -> bool {
    matches!(
        request,
        Request::ImportRange { .. }
            | Request::ProvisionTerminal { .. }
            | Request::SetTerminalState { .. }
            | Request::SetOperator { .. }
            | Request::SetProduct { .. }
    )
}

async fn serve_connection(stream: TcpStream, switch: Arc<Switch>, shutdown: CancellationToken) {
    let peer = stream.peer_addr().ok();
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::new(read_half, InboundCodec);
    let (replies, outbox) = mpsc::channel::<Frame>(MAX_IN_FLIGHT_PER_CONNECTION + 1);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    // A connection belongs to the first terminal that authenticates on it: from then on every
    // reply is signed with that terminal's key, and frames of other terminals are refused.
    let signing_key: Arc<OnceLock<TerminalKey>> = Arc::default();
    let mut bound: Option<Arc<Terminal>> = None;
    // The store the bound terminal signed on at.
    let mut session_store: Option<u32> = None;
    // The cashier signed on at this session (T9): its sales are journaled with it.
    let mut session_operator: u32 = 0;
    let writer =
        tokio::spawn(write_replies(write_half, outbox, in_flight.clone(), signing_key.clone(), switch.metrics.clone()));
    loop {
        // Backpressure: a reply must drain before another request is read.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = in_flight.acquire() => permit.expect("the semaphore is never closed"),
        };
        permit.forget();
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = tokio::time::timeout(switch.idle_timeout, frames.next()) => next,
        };
        let inbound = match next {
            Err(_) => {
                tracing::debug!(?peer, "idle timeout; closing");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                tracing::info!(?peer, %error, "bad frame; closing the connection");
                let (terminal_id, stan) = error.header_ids();
                let header = protocol::Header { terminal_id, stan, ..Default::default() };
                let text = error.to_string();
                let _ = replies.send(reply_frame(&header, Response::Error { code: error.code(), text })).await;
                break;
            }
            Ok(Some(Ok(inbound))) => inbound,
        };
        let header = inbound.frame.header;
        // A registration carries strings; it takes the administrative path under a stand-in
        // request with its operator and card, which are all that path looks at before it.
        let (request, register) = match inbound.frame.message {
            Message::Request(request) => (request, None),
            Message::RegisterMember(ref register) => {
                let stand_in = Request::MemberQuery { operator: register.operator, card: register.card };
                (stand_in, Some(register.clone()))
            }
            Message::Response(ref response) => {
                let text = format!("{} is a response; terminals send requests", response.msg_type());
                let error = Response::Error { code: ResponseCode::UnknownMessageType, text };
                let _ = replies.send(reply_frame(&header, error)).await;
                break;
            }
        };
        let msg_type = if register.is_some() { MsgType::RegisterMember } else { request.msg_type() };
        // Every request as received, for a while of `RUST_LOG=cardswitch=trace`: secrets are
        // sealed and print as such, member data print only which fields are given.
        tracing::trace!(
            ?peer,
            terminal_id = header.terminal_id,
            stan = header.stan,
            %msg_type,
            ?request,
            member = ?register.as_ref().map(|r| &r.member),
            "request"
        );
        let decline = |code| Some(Response::decline(msg_type, code));
        // Authentication first (SPEC §3.1, §5.1): a known terminal, its MAC, enabled.
        let known = match &bound {
            Some(terminal) if terminal.terminal_id == header.terminal_id => Some(terminal.clone()),
            _ => switch.keyring.get(header.terminal_id),
        };
        let terminal = match known {
            None => Err(ResponseCode::UnknownTerminal),
            Some(terminal) if !inbound.verify(&terminal.key) => Err(ResponseCode::BadMac),
            Some(terminal) => terminal.usable().map(|()| terminal),
        };
        let terminal = match (terminal, &bound) {
            (Ok(terminal), Some(owner)) if owner.terminal_id != terminal.terminal_id => Err(ResponseCode::NotSignedOn),
            (Ok(terminal), None) => {
                let _ = signing_key.set(terminal.key.clone());
                bound = Some(terminal.clone());
                Ok(terminal)
            }
            (other, _) => other,
        };
        let inline = match terminal {
            Err(code) => {
                tracing::debug!(?peer, terminal_id = header.terminal_id, stan = header.stan, %code, "not authenticated");
                decline(code)
            }
            // Field validation comes before the session check (precedence: code 7 before 8).
            Ok(_) if validate(&request).is_err() => decline(ResponseCode::InvalidField),
            Ok(terminal) => match request {
                Request::Echo => Some(Response::Echo { code: ResponseCode::Approved }),
                Request::SignOn { store_id } => Some(Response::SignOn(if !terminal.serves_store(store_id) {
                    SignOnReply { code: ResponseCode::WrongStore, business_date: 0 }
                } else {
                    session_store = Some(store_id);
                    // A new sign-on, perhaps at another store: the cashier signs on again.
                    session_operator = 0;
                    SignOnReply { code: ResponseCode::Approved, business_date: switch.days.book().open_date(store_id) }
                })),
                Request::OperatorSignOn { operator } => Some(match session_store {
                    None => Response::decline(msg_type, ResponseCode::NotSignedOn),
                    Some(store_id) => {
                        let counter = |role| matches!(role, OperatorRole::Cashier | OperatorRole::FrontDesk);
                        let checked =
                            switch.allowed_operator(&header, &operator, store_id, &terminal.key, msg_type, counter);
                        let (code, role) = match checked {
                            Ok(found) => {
                                session_operator = found.operator_id;
                                (ResponseCode::Approved, found.role as u8)
                            }
                            Err(code) => (code, 0),
                        };
                        let enabled = u8::from(code.is_approved());
                        Response::OperatorSignOn(OperatorReply {
                            code,
                            operator_id: operator.operator_id,
                            role,
                            enabled,
                        })
                    }
                }),
                Request::BatchTotals { business_date, totals } => match session_store {
                    None => decline(ResponseCode::NotSignedOn),
                    Some(store_id) => {
                        // Reads the journal: answered when done, off the connection's task.
                        let (switch, replies) = (switch.clone(), replies.clone());
                        tokio::spawn(async move {
                            let response = switch.batch_totals(header, store_id, business_date, totals).await;
                            let _ = replies.send(reply_frame(&header, response)).await;
                        });
                        None
                    }
                },
                _ => match session_store {
                    Some(store_id) => {
                        if needs_admin(&request) && terminal.role != TerminalRole::Admin {
                            decline(ResponseCode::NotPermitted)
                        } else if let Some(card) = request.card() {
                            let remembered = !matches!(request, Request::Balance { .. });
                            if remembered
                                && terminal.use_stan(header.stan, crate::engine::request_digest(&request))
                                    == StanUse::Reused
                            {
                                // The stan names another card's request, possibly one held by
                                // another partition, which this card's would not see (T8).
                                decline(ResponseCode::TraceReused)
                            } else {
                                match verify(&request, &header, &terminal.key, &switch.operators, store_id) {
                                    Err(code) => {
                                        tracing::warn!(
                                            terminal_id = header.terminal_id,
                                            stan = header.stan,
                                            %msg_type,
                                            %code,
                                            operator_id = request.operator().map_or(0, |o| o.operator_id),
                                            approver_id = approver_of(&request),
                                            "verification refused"
                                        );
                                        decline(code)
                                    }
                                    Ok(verified) => {
                                        let cmd = Command {
                                            header,
                                            store_id,
                                            request,
                                            pin: verified.pin,
                                            approver_id: verified.approver_id,
                                            // An administrative request's own operator,
                                            // else the session's cashier (T9).
                                            operator_id: if verified.operator_id != 0 {
                                                verified.operator_id
                                            } else {
                                                session_operator
                                            },
                                            new_pin: verified.new_pin,
                                        };
                                        switch
                                            .partitions
                                            .submit(card, cmd, replies.clone())
                                            .err()
                                            .map(|code| Response::decline(msg_type, code))
                                    }
                                }
                            }
                        } else {
                            // Administrative requests: rare, serialised, answered when done.
                            let (switch, replies, sender) = (switch.clone(), replies.clone(), terminal.clone());
                            tokio::spawn(async move {
                                let response = match (register, request) {
                                    (Some(register), _) => {
                                        switch.register_member(header, *register, store_id, &sender.key).await
                                    }
                                    (
                                        None,
                                        Request::MemberQuery { .. }
                                        | Request::ReplaceCard { .. }
                                        | Request::CardHistory { .. },
                                    ) => switch.member_desk(header, request, store_id, &sender.key).await,
                                    (None, Request::ImportRange { .. }) => switch.import_range(header, request).await,
                                    (None, Request::SetProduct { .. }) => {
                                        switch.set_product(header, request, store_id, &sender.key).await
                                    }
                                    (None, Request::SetOperator { .. }) => {
                                        switch.set_operator(header, request, store_id, &sender.key).await
                                    }
                                    (None, _) => switch.administer_terminal(header, request, &sender).await,
                                };
                                let _ = replies.send(reply_frame(&header, response)).await;
                            });
                            None
                        }
                    }
                    None => decline(ResponseCode::NotSignedOn),
                },
            },
        };
        if let Some(response) = inline {
            let _ = replies.send(reply_frame(&header, response)).await;
        }
    }
    drop(replies);
    let _ = writer.await;
}

async fn write_replies(
    mut write_half: tokio::net::tcp::OwnedWriteHalf,
    mut outbox: mpsc::Receiver<Frame>,
    in_flight: Arc<Semaphore>,
    signing_key: Arc<OnceLock<TerminalKey>>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut batch = Vec::with_capacity(MAX_REPLIES_PER_WRITE);
    loop {
        if outbox.recv_many(&mut batch, MAX_REPLIES_PER_WRITE).await == 0 {
            break;
        }
        let count = batch.len();
        let key = signing_key.get();
        for frame in batch.drain(..) {
            if let Message::Response(response) = &frame.message {
                metrics.count_response(response.msg_type(), response.code());
                tracing::debug!(
                    terminal_id = frame.header.terminal_id,
                    stan = frame.header.stan,
                    msg_type = %response.msg_type(),
                    code = %response.code(),
                    "answered"
                );
                tracing::trace!(terminal_id = frame.header.terminal_id, stan = frame.header.stan, ?response, "reply");
            }
            encode_signed(&frame, key, &mut buf);
        }
        if write_half.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
        // Only now do these requests stop counting against the connection's window.
        in_flight.add_permits(count);
    }
    let _ = write_half.shutdown().await;
}

impl Switch {
    /// Provisions a terminal or changes its state (SPEC §5.17, §5.18), durably, for the admin
    /// terminal `sender`. Re-sending the same provisioning gives the same result.
    async fn administer_terminal(
        self: &Arc<Self>,
        header: protocol::Header,
        request: Request,
        sender: &Terminal,
    ) -> Response {
        let msg_type = request.msg_type();
        let reply = |code, terminal_id, enabled: bool| Response::Terminal {
            request: msg_type,
            reply: TerminalReply { code, terminal_id, enabled: u8::from(enabled) },
        };
        let _serialised = self.provisioning.lock().await;
        let (terminal, enabled) = match request {
            Request::ProvisionTerminal { terminal_id, store_id, role, wrapped_key } => {
                let role = TerminalRole::from_u8(role).expect("validated");
                if terminal_id == sender.terminal_id {
                    // Replacing its own key over the wire could lock the last admin out.
                    return reply(ResponseCode::NotPermitted, terminal_id, false);
                }
                if role == TerminalRole::Pos && store_id == ANY_STORE {
                    return reply(ResponseCode::InvalidField, terminal_id, false);
                }
                let key = sender.key.unwrap_from_transport(&wrapped_key, header.terminal_id, header.stan, terminal_id);
                (Terminal::new(terminal_id, store_id, role, key, true), true)
            }
            Request::SetTerminalState { terminal_id, enabled } => {
                if terminal_id == sender.terminal_id {
                    return reply(ResponseCode::NotPermitted, terminal_id, true);
                }
                let Some(current) = self.keyring.get(terminal_id) else {
                    return reply(ResponseCode::UnknownTerminal, terminal_id, false);
                };
                let enabled = enabled == 1;
                let terminal = Terminal::new(terminal_id, current.store_id, current.role, current.key.clone(), enabled);
                (terminal, enabled)
            }
            _ => return Response::decline(msg_type, ResponseCode::UnknownMessageType),
        };
        let terminal_id = terminal.terminal_id;
        let sealed = match self.master.seal(&terminal) {
            Ok(sealed) => sealed,
            Err(error) => {
                tracing::error!(%error, terminal_id, "cannot seal a terminal key");
                return reply(ResponseCode::SystemError, terminal_id, false);
            }
        };
        let switch = self.clone();
        let stored = tokio::task::spawn_blocking(move || switch.store.put_terminal(&sealed))
            .await
            .expect("storing a terminal does not panic");
        if let Err(error) = stored {
            tracing::error!(%error, terminal_id, "a terminal could not be stored");
            return reply(ResponseCode::SystemError, terminal_id, false);
        }
        match request {
            Request::SetTerminalState { .. } => {
                self.keyring.set_enabled(terminal_id, enabled);
            }
            _ => {
                self.keyring.insert(terminal);
            }
        }
        tracing::info!(terminal_id, by = sender.terminal_id, %msg_type, enabled, "terminal administered");
        reply(ResponseCode::Approved, terminal_id, enabled)
    }

    /// O1: creates or changes an operator, durably, for an admin operator at this store. The
    /// same request again leaves the same operator, so a retransmission gets the same answer.
    async fn set_operator(
        self: &Arc<Self>,
        header: Header,
        request: Request,
        store_id: u32,
        key: &TerminalKey,
    ) -> Response {
        let Request::SetOperator { operator, target_id, role, store_id: target_store, enabled, new_passcode } = request
        else {
            return Response::decline(MsgType::SetOperator, ResponseCode::UnknownMessageType);
        };
        let reply = |code, role: u8, enabled: bool| {
            Response::Operator(OperatorReply { code, operator_id: target_id, role, enabled: u8::from(enabled) })
        };
        let _serialised = self.provisioning.lock().await;
        let checked = (|| {
            checked_operator(&self.operators, &header, &operator, store_id, key, roles::may_set_operators)?;
            let new_passcode = open_secret(&new_passcode, SecretKind::NewPasscode, &header, key)?;
            let role = OperatorRole::from_u8(role).expect("validated");
            self.operators
                .make(target_id, role, target_store, enabled == 1, new_passcode.as_deref())
                .map_err(|_| ResponseCode::InvalidField)
        })();
        let record = match checked {
            Ok(record) => record,
            Err(code) => {
                tracing::warn!(
                    terminal_id = header.terminal_id,
                    operator_id = operator.operator_id,
                    target_id,
                    %code,
                    "set_operator refused"
                );
                return reply(code, 0, false);
            }
        };
        let switch = self.clone();
        let stored_record = record.clone();
        let stored = tokio::task::spawn_blocking(move || switch.store.put_operator(&stored_record))
            .await
            .expect("storing an operator does not panic");
        if let Err(error) = stored {
            tracing::error!(%error, target_id, "an operator could not be stored");
            return reply(ResponseCode::SystemError, 0, false);
        }
        let (role, enabled) = (record.role, record.enabled);
        self.operators.insert(record);
        tracing::info!(target_id, by = operator.operator_id, %role, store_id = target_store, enabled, "operator set");
        reply(ResponseCode::Approved, role as u8, enabled)
    }

    /// P3: enables or disables a product, with a `special` product's discount ratio and
    /// approved quantity, for an admin operator: durably, then in every partition; the catalog
    /// version goes up by one.
    async fn set_product(
        self: &Arc<Self>,
        header: Header,
        request: Request,
        store_id: u32,
        key: &TerminalKey,
    ) -> Response {
        let Request::SetProduct { operator, product, enabled, discount_bp, approved_quantity } = request else {
            return Response::decline(MsgType::SetProduct, ResponseCode::UnknownMessageType);
        };
        let reply = |code, enabled: bool, catalog_version| {
            Response::Product(protocol::ProductReply { code, product, enabled: u8::from(enabled), catalog_version })
        };
        let allowed = roles::may_set_operators;
        if let Err(code) = self.allowed_operator(&header, &operator, store_id, key, MsgType::SetProduct, allowed) {
            return reply(code, false, 0);
        }
        let product_code = crate::engine::Product::from_code(product).expect("validated");
        let _serialised = self.provisioning.lock().await;
        let current = self.rules.read().expect("never poisoned").clone();
        let o = crate::engine::catalog::ProductOverride {
            product: product_code,
            version: current.catalog.version + 1,
            enabled: enabled == 1,
            discount_bp,
            approved_quantity,
        };
        let catalog = match current.catalog.with_override(&o) {
            Ok(catalog) => Arc::new(catalog),
            Err(crate::engine::catalog::OverrideProblem::NotInCatalog) => {
                return reply(ResponseCode::UnknownProduct, false, 0)
            }
            Err(problem) => {
                tracing::warn!(product = product_code.name(), %problem, "set_product refused");
                return reply(ResponseCode::InvalidField, false, 0);
            }
        };
        let rules = current.with_catalog(catalog);
        let switch = self.clone();
        let installed = rules.clone();
        let stored = tokio::task::spawn_blocking(move || {
            switch.store.put_product_override(&o)?;
            switch.partitions.set_rules_blocking(installed);
            Ok::<(), StoreError>(())
        })
        .await
        .expect("no panic");
        if let Err(error) = stored {
            tracing::error!(%error, "a product override could not be stored");
            return reply(ResponseCode::SystemError, false, 0);
        }
        *self.rules.write().expect("never poisoned") = rules;
        tracing::info!(
            product = product_code.name(),
            enabled = o.enabled,
            discount_bp,
            approved_quantity,
            catalog_version = o.version,
            by = operator.operator_id,
            "product administered"
        );
        reply(ResponseCode::Approved, o.enabled, o.version)
    }

    /// Why a card without a record is: `card_not_sold` (a number of an imported range, in
    /// stock) or `unknown_card` (L1).
    async fn unsold(&self, card: protocol::CardNo) -> (ResponseCode, protocol::CardState) {
        let ranges = self.ranges.lock().await;
        if ranges.iter().any(|r| r.contains(card)) {
            (ResponseCode::CardNotSold, protocol::CardState::Stock)
        } else {
            (ResponseCode::UnknownCard, protocol::CardState::Unknown)
        }
    }

    /// [`checked_operator`], with refusals logged with the operator.
    fn allowed_operator(
        &self,
        header: &Header,
        operator: &protocol::OperatorAuth,
        store_id: u32,
        key: &TerminalKey,
        msg_type: MsgType,
        allowed: impl Fn(OperatorRole) -> bool,
    ) -> Result<crate::operators::Operator, ResponseCode> {
        let checked = checked_operator(&self.operators, header, operator, store_id, key, allowed);
        if let Err(code) = checked {
            tracing::warn!(
                terminal_id = header.terminal_id,
                stan = header.stan,
                %msg_type,
                operator_id = operator.operator_id,
                %code,
                "operator refused"
            );
        }
        checked
    }

    /// M1, M2: registers the holder of a sold real-name card, for customer service.
    async fn register_member(
        self: &Arc<Self>,
        header: Header,
        register: protocol::RegisterMember,
        store_id: u32,
        key: &TerminalKey,
    ) -> Response {
        let card = register.card;
        let reply = |code, state, problem: u8, member: protocol::MemberData| Response::Member {
            request: MsgType::RegisterMember,
            reply: Box::new(protocol::MemberReply { code, card, state, problem, member }),
        };
        let unknown = protocol::CardState::Unknown;
        let allowed = roles::may_manage_members;
        let checked =
            self.allowed_operator(&header, &register.operator, store_id, key, MsgType::RegisterMember, allowed);
        if let Err(code) = checked {
            return reply(code, unknown, 0, Default::default());
        }
        if !card.is_valid() {
            return reply(ResponseCode::InvalidField, unknown, 0, Default::default());
        }
        // M2: checked whole before anything is stored; the reply names the field.
        if let Err(problem) = register.member.check() {
            return reply(ResponseCode::MemberDataInvalid, unknown, problem as u8, Default::default());
        }
        let operator_id = register.operator.operator_id;
        let origin = Origin {
            key: TraceKey { terminal_id: header.terminal_id, stan: header.stan },
            digest: crate::engine::register_digest(&register),
            msg_type: MsgType::RegisterMember,
        };
        let registered =
            self.coordinator.register(&self.partitions, origin, card, &register.member, operator_id, store_id);
        match registered.await {
            Ok(done) if done.code.is_approved() => reply(done.code, done.state, 0, register.member),
            Ok(done) => reply(done.code, done.state, 0, Default::default()),
            Err(error) => {
                tracing::error!(%error, %card, "registration failed");
                reply(ResponseCode::SystemError, unknown, 0, Default::default())
            }
        }
    }

    /// M3 queries and L6 replacements.
    async fn member_desk(
        self: &Arc<Self>,
        header: Header,
        request: Request,
        store_id: u32,
        key: &TerminalKey,
    ) -> Response {
        let unknown = protocol::CardState::Unknown;
        match request {
            Request::MemberQuery { operator, card } => {
                let reply = |code, state, member| Response::Member {
                    request: MsgType::MemberQuery,
                    reply: Box::new(protocol::MemberReply { code, card, state, problem: 0, member }),
                };
                let allowed = |role| roles::member_view(role).is_some();
                let found =
                    match self.allowed_operator(&header, &operator, store_id, key, MsgType::MemberQuery, allowed) {
                        Ok(found) => found,
                        Err(code) => return reply(code, unknown, Default::default()),
                    };
                let view = roles::member_view(found.role).expect("checked");
                let state = match self.partitions.read(card, 0).await {
                    Some(Ok((Some(c), _))) => c.state,
                    Some(Ok((None, _))) => {
                        let (code, state) = self.unsold(card).await;
                        return reply(code, state, Default::default());
                    }
                    _ => return reply(ResponseCode::SystemError, unknown, Default::default()),
                };
                match self.coordinator.shown_member(card, view) {
                    Ok(Some(member)) => {
                        tracing::info!(operator_id = found.operator_id, %card, ?view, "member data shown");
                        reply(ResponseCode::Approved, state, member)
                    }
                    Ok(None) => reply(ResponseCode::MemberNotRegistered, state, Default::default()),
                    Err(error) => {
                        tracing::error!(%error, %card, "member record unreadable");
                        reply(ResponseCode::SystemError, state, Default::default())
                    }
                }
            }
            Request::ReplaceCard { operator, old_card, new_card, flags, method } => {
                let decline = |code| Response::Card {
                    request: MsgType::ReplaceCard,
                    reply: protocol::CardReply::code_only(code),
                };
                let allowed = roles::may_manage_members;
                let found =
                    match self.allowed_operator(&header, &operator, store_id, key, MsgType::ReplaceCard, allowed) {
                        Ok(found) => found,
                        Err(code) => return decline(code),
                    };
                // L6: the holder's ID is checked at the desk.
                if flags & protocol::AdminFlags::ID_CHECKED == 0 {
                    return decline(ResponseCode::IdNotChecked);
                }
                let product = match self.partitions.read(old_card, 0).await {
                    Some(Ok((Some(c), _))) => c.product,
                    Some(Ok((None, _))) => return decline(self.unsold(old_card).await.0),
                    _ => return decline(ResponseCode::SystemError),
                };
                let fee_minor = crate::engine::Product::from_code(product)
                    .and_then(|p| {
                        self.rules.read().expect("never poisoned").catalog.product(p).map(|s| s.replacement_fee_minor)
                    })
                    .unwrap_or(0);
                if fee_minor > 0 && method == 0 {
                    return decline(ResponseCode::InvalidField);
                }
                let origin = Origin {
                    key: TraceKey { terminal_id: header.terminal_id, stan: header.stan },
                    digest: crate::engine::request_digest(&request),
                    msg_type: MsgType::ReplaceCard,
                };
                let replaced = self
                    .coordinator
                    .replace(
                        &self.partitions,
                        origin,
                        old_card,
                        new_card,
                        fee_minor,
                        method,
                        found.operator_id,
                        store_id,
                    )
                    .await;
                match replaced {
                    Ok(reply) => {
                        tracing::info!(%old_card, %new_card, operator_id = found.operator_id, code = %reply.code, "replacement");
                        Response::Card { request: MsgType::ReplaceCard, reply }
                    }
                    Err(error) => {
                        tracing::error!(%error, %old_card, %new_card, "replacement failed");
                        decline(ResponseCode::SystemError)
                    }
                }
            }
            Request::CardHistory { operator, card, after_txn_id } => {
                let decline =
                    |code| Response::History(Box::new(protocol::HistoryReply { code, card, ..Default::default() }));
                let allowed = roles::may_read_history;
                if let Err(code) =
                    self.allowed_operator(&header, &operator, store_id, key, MsgType::CardHistory, allowed)
                {
                    return decline(code);
                }
                if let Some(Ok((None, _))) = self.partitions.read(card, 0).await {
                    return decline(self.unsold(card).await.0);
                }
                let switch = self.clone();
                let read =
                    tokio::task::spawn_blocking(move || switch.history(card, after_txn_id)).await.expect("no panic");
                match read {
                    Ok(reply) => Response::History(Box::new(reply)),
                    Err(error) => {
                        tracing::error!(%error, %card, "reading a card's history failed");
                        decline(ResponseCode::SystemError)
                    }
                }
            }
            _ => Response::decline(request.msg_type(), ResponseCode::UnknownMessageType),
        }
    }

    /// The group commits not yet materialized, for a reader of the indexes. Taken before the
    /// indexes are read, marks first: a group commit materialized meanwhile is then in both,
    /// and the readers merge by txn id.
    fn log_tail(&self) -> crate::store::LogTail {
        let materialized = self.materialized.iter().map(|m| m.load(Ordering::Acquire)).collect();
        crate::store::LogTail { materialized, committed: self.partitions.committed() }
    }

    /// S2: the terminal's batch on `business_date` (0: its store's open date) as the journal
    /// has it, compared line by line with the terminal's own figures.
    async fn batch_totals(
        self: Arc<Self>,
        header: Header,
        store_id: u32,
        business_date: u32,
        theirs: protocol::BatchTotals,
    ) -> Response {
        let date = if business_date == 0 { self.days.book().open_date(store_id) } else { business_date };
        let switch = self.clone();
        let read = tokio::task::spawn_blocking(move || {
            let tail = switch.log_tail();
            switch.store.terminal_batch(header.terminal_id, date, &tail)
        })
        .await
        .expect("reading the journal does not panic");
        match read {
            Ok(ours) => {
                let in_balance = ours == theirs;
                if !in_balance {
                    tracing::info!(
                        terminal_id = header.terminal_id,
                        business_date = date,
                        "terminal batch out of balance"
                    );
                }
                Response::BatchTotals(protocol::BatchTotalsReply {
                    code: ResponseCode::Approved,
                    in_balance: u8::from(in_balance),
                    business_date: date,
                    totals: ours,
                })
            }
            Err(error) => {
                tracing::error!(%error, terminal_id = header.terminal_id, "reading a terminal's batch failed");
                Response::decline(MsgType::BatchTotals, ResponseCode::SystemError)
            }
        }
    }

    /// S9: the postings of `card` after `after_txn_id` with the buckets after each, which
    /// are summed from the card's first posting. Blocking.
    fn history(&self, card: protocol::CardNo, after_txn_id: u64) -> Result<protocol::HistoryReply, StoreError> {
        let tail = self.log_tail();
        let mut reply = protocol::HistoryReply { code: ResponseCode::Approved, card, ..Default::default() };
        let (mut cash, mut bonus, mut held) = (0i64, 0i64, 0i64);
        let mut cursor = 0;
        loop {
            let (page, more) = self.store.card_history(card, cursor, &tail)?;
            for e in &page {
                (cash, bonus, held) =
                    (cash + e.cash_delta_minor, bonus + e.bonus_delta_minor, held + e.held_delta_minor);
                cursor = e.txn_id;
                if e.txn_id <= after_txn_id {
                    continue;
                }
                if reply.entries.len() == protocol::message::MAX_HISTORY_ENTRIES {
                    reply.more = 1;
                    return Ok(reply);
                }
                reply.entries.push(protocol::HistoryEntry {
                    txn_id: e.txn_id,
                    kind: e.kind as u8,
                    business_date: e.business_date,
                    time_ms: e.time_ms,
                    store_id: e.store_id,
                    terminal_id: e.terminal_id,
                    operator_id: e.operator_id,
                    amount_minor: e.amount_minor,
                    cash_delta_minor: e.cash_delta_minor,
                    bonus_delta_minor: e.bonus_delta_minor,
                    held_delta_minor: e.held_delta_minor,
                    points_delta: e.points_delta,
                    cash_after_minor: cash,
                    bonus_after_minor: bonus,
                    held_after_minor: held,
                });
            }
            if !more {
                return Ok(reply);
            }
        }
    }

    /// L1: imports a range after checking it against the others, durably, then tells the
    /// partitions. A retransmitted import gets its original answer (T8).
    async fn import_range(self: &Arc<Self>, header: protocol::Header, request: Request) -> Response {
        let Request::ImportRange { first, last, product, store_id } = request else {
            return Response::decline(MsgType::ImportRange, ResponseCode::UnknownMessageType);
        };
        let decline = |code| Response::decline(MsgType::ImportRange, code);
        let approve = |range: &CardRange| {
            Response::ImportRange(protocol::ImportRangeReply {
                code: ResponseCode::Approved,
                card_count: range.card_count(),
            })
        };
        let range = CardRange { first, last, product, store_id, terminal_id: header.terminal_id, stan: header.stan };
        let mut ranges = self.ranges.lock().await;
        if let Some(seen) = ranges.iter().find(|r| r.terminal_id == header.terminal_id && r.stan == header.stan) {
            return if *seen == range { approve(seen) } else { decline(ResponseCode::TraceReused) };
        }
        if let Err(code) = check_import(&ranges, &range) {
            return decline(code);
        }
        let switch = self.clone();
        let persisted = tokio::task::spawn_blocking(move || {
            switch.store.put_range(&range)?;
            switch.partitions.add_range_blocking(range);
            Ok::<(), StoreError>(())
        })
        .await
        .expect("range import does not panic");
        match persisted {
            Ok(()) => {
                ranges.push(range);
                tracing::info!(first = %range.first, last = %range.last, product, store_id, "range imported");
                approve(&range)
            }
            Err(error) => {
                tracing::error!(%error, "range import could not be persisted");
                decline(ResponseCode::SystemError)
            }
        }
    }
}

//! The TCP front: accepts terminals, decodes frames, hands card requests to their partition
//! and writes replies back in batches. It decides nothing about cards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use protocol::{encode_frame, Frame, FrameCodec, Message, MsgType, Request, Response, ResponseCode, SignOnReply};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{check_import, validate, CardRange, Command};
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

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub partitions: usize,
    pub max_connections: usize,
    pub idle_timeout_ms: u64,
}

impl Config {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Config {
        Config {
            data_dir,
            listen,
            partitions: default_partitions(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
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
}

/// A running switch: its address, and a handle to stop it.
pub struct Server {
    pub local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the store, recovers, starts the partitions and listens. Returns once connections
    /// are accepted.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        if config.partitions == 0 || config.partitions > MAX_PARTITIONS {
            return Err(ServerError::Partitions { given: config.partitions, max: MAX_PARTITIONS });
        }
        let data_dir = config.data_dir.clone();
        let partitions = config.partitions;
        let (store, recovered) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let store = Store::open(&data_dir)?;
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "store opened");
            let recovered = store.recover(partitions)?;
            Ok::<_, StoreError>((store, recovered))
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
        let materializer = Materializer::start(store.clone(), partitions, recovered.marks.clone());
        let switch = Arc::new(Switch {
            partitions: Partitions::start(
                recovered,
                store.clone(),
                clock.clone(),
                Some((materializer.feed(), materializer.marks())),
            ),
            materializer: std::sync::Mutex::new(materializer),
            store,
            clock,
            ranges: tokio::sync::Mutex::new(ranges),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        });
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, switch, config.max_connections, shutdown.clone()));
        Ok(Server { local_addr, shutdown, task })
    }

    /// Stops accepting, lets in-flight requests finish and be answered, stops the
    /// partitions after their last group commit, and returns when all of that is done.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

async fn run(listener: TcpListener, switch: Arc<Switch>, max_connections: usize, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
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
                    serve_connection(stream, switch, shutdown).await;
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
    // Every connection has finished (or outlived the grace period), so nothing new reaches
    // the partitions; they finish their queues, commit, and stop.
    tokio::task::spawn_blocking(move || {
        switch.partitions.stop();
        switch.materializer.lock().unwrap_or_else(|e| e.into_inner()).stop();
    })
    .await
    .unwrap_or(());
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

async fn serve_connection(stream: TcpStream, switch: Arc<Switch>, shutdown: CancellationToken) {
    let peer = stream.peer_addr().ok();
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::new(read_half, FrameCodec);
    let (replies, outbox) = mpsc::channel::<Frame>(MAX_IN_FLIGHT_PER_CONNECTION + 1);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let writer = tokio::spawn(write_replies(write_half, outbox, in_flight.clone()));
    let mut session_store: Option<u32> = None;
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
        let frame = match next {
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
            Ok(Some(Ok(frame))) => frame,
        };
        let header = frame.header;
        let request = match frame.message {
            Message::Request(request) => request,
            Message::Response(response) => {
                let text = format!("{} is a response; terminals send requests", response.msg_type());
                let error = Response::Error { code: ResponseCode::UnknownMessageType, text };
                let _ = replies.send(reply_frame(&header, error)).await;
                break;
            }
        };
        let msg_type = request.msg_type();
        let answer = |response| reply_frame(&header, response);
        let inline = match request {
            Request::Echo => Some(Response::Echo { code: ResponseCode::Approved }),
            Request::SignOn { store_id } => Some(Response::SignOn(match validate(&request) {
                Ok(()) => {
                    session_store = Some(store_id);
                    let now_ms = switch.clock.now_ms();
                    SignOnReply { code: ResponseCode::Approved, business_date: switch.clock.business_date(now_ms) }
                }
                Err(code) => SignOnReply { code, business_date: 0 },
            })),
            // Field validation comes before the session check (precedence: code 4 before 5).
            _ if validate(&request).is_err() => Some(Response::decline(msg_type, ResponseCode::InvalidField)),
            _ => match (session_store, request.card()) {
                (None, _) => Some(Response::decline(msg_type, ResponseCode::NotSignedOn)),
                (Some(_), None) => {
                    // Range import: rare, administrative, serialised.
                    let switch = switch.clone();
                    let replies = replies.clone();
                    tokio::spawn(async move {
                        let response = switch.import_range(header, request).await;
                        let _ = replies.send(reply_frame(&header, response)).await;
                    });
                    None
                }
                (Some(store_id), Some(card)) => {
                    let cmd = Command { header, store_id, request };
                    switch
                        .partitions
                        .submit(card, cmd, replies.clone())
                        .err()
                        .map(|code| Response::decline(msg_type, code))
                }
            },
        };
        if let Some(response) = inline {
            let _ = replies.send(answer(response)).await;
        }
    }
    drop(replies);
    let _ = writer.await;
}

async fn write_replies(
    mut write_half: tokio::net::tcp::OwnedWriteHalf,
    mut outbox: mpsc::Receiver<Frame>,
    in_flight: Arc<Semaphore>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut batch = Vec::with_capacity(MAX_REPLIES_PER_WRITE);
    loop {
        if outbox.recv_many(&mut batch, MAX_REPLIES_PER_WRITE).await == 0 {
            break;
        }
        let count = batch.len();
        for frame in batch.drain(..) {
            encode_frame(&frame, &mut buf);
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

//! What an operations team watches: counters and histograms kept with atomics on the paths
//! that already do the work, served in the Prometheus text format on a separate address
//! (`serve --metrics ADDR`, `GET /metrics`), with `GET /health`: 503 `recovering` until the
//! switch listens, 503 `failed` once a partition has fail-stopped, 200 `ready` otherwise.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use protocol::{MsgType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest request the metrics endpoint reads.
pub const MAX_HTTP_REQUEST_BYTES: usize = 8 * 1024;
/// How long a scraper may take to send its request.
pub const HTTP_READ_TIMEOUT_MS: u64 = 5_000;
/// Scrapes served at once.
pub const MAX_HTTP_CONNECTIONS: usize = 16;

/// Upper bounds of the latency buckets, microseconds.
const LATENCY_BOUNDS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];
/// Upper bounds of the group-commit size buckets, commands.
const BATCH_BOUNDS: [u64; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096];

/// Most buckets a histogram has (its bounds and +Inf).
const MAX_BUCKETS: usize = 16;
const _: () = assert!(LATENCY_BOUNDS_US.len() < MAX_BUCKETS && BATCH_BOUNDS.len() < MAX_BUCKETS);

/// A cumulative histogram with fixed buckets.
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, then +Inf.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Histogram {
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum: AtomicU64::new(0) }
    }

    pub fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|b| *b < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Observes every value, tallied first so that each bucket is updated once: the
    /// partitions share these counters, and a batch holds thousands of replies.
    pub fn observe_all(&self, values: impl Iterator<Item = u64>) {
        let mut tally = [0u64; MAX_BUCKETS];
        let mut sum = 0;
        for value in values {
            tally[self.bounds.partition_point(|b| *b < value)] += 1;
            sum += value;
        }
        for (count, n) in self.counts.iter().zip(tally).filter(|(_, n)| *n > 0) {
            count.fetch_add(n, Ordering::Relaxed);
        }
        if sum > 0 {
            self.sum.fetch_add(sum, Ordering::Relaxed);
        }
    }

    /// `name` in the text format; values divided by `scale` (microseconds → seconds: 1e6).
    fn render(&self, out: &mut String, name: &str, help: &str, scale: u64) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        let shown = |v: u64| if scale == 1 { v.to_string() } else { format!("{}", v as f64 / scale as f64) };
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or("+Inf".to_string(), |b| shown(*b));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {cumulative}", shown(self.sum.load(Ordering::Relaxed)));
    }
}

/// What the metrics read from the running switch when scraped.
pub trait Gauges: Send + Sync {
    /// Commands waiting in each partition's queue.
    fn queue_depths(&self) -> Vec<usize>;
    /// Partitions stopped after a storage failure.
    fn failed_partitions(&self) -> usize;
}

const RECOVERING: u8 = 0;
const READY: u8 = 1;

pub struct Metrics {
    /// Responses sent, by response type (its index in `MsgType::ALL`) and code.
    responses: Box<[[AtomicU64; 256]]>,
    /// From the moment a card request is queued to a partition to its reply, after the
    /// group commit.
    pub request_latency_us: Histogram,
    pub batch_commands: Histogram,
    pub commit_us: Histogram,
    pub storage_failures: AtomicU64,
    pub connections: AtomicI64,
    state: AtomicU8,
    gauges: OnceLock<Weak<dyn Gauges>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            responses: (0..MsgType::ALL.len()).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
            request_latency_us: Histogram::new(&LATENCY_BOUNDS_US),
            batch_commands: Histogram::new(&BATCH_BOUNDS),
            commit_us: Histogram::new(&LATENCY_BOUNDS_US),
            storage_failures: AtomicU64::new(0),
            connections: AtomicI64::new(0),
            state: AtomicU8::new(RECOVERING),
            gauges: OnceLock::new(),
        }
    }
}

impl Metrics {
    pub fn count_response(&self, msg_type: MsgType, code: ResponseCode) {
        if let Some(i) = MsgType::ALL.iter().position(|t| *t == msg_type) {
            self.responses[i][code as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Responses sent with `code` since the switch started, of every type.
    pub fn get(&self, code: ResponseCode) -> u64 {
        self.responses.iter().map(|by_code| by_code[code as usize].load(Ordering::Relaxed)).sum()
    }

    /// Every code sent at least once that is not `approved`, with its count.
    pub fn nonzero(&self) -> Vec<(ResponseCode, u64)> {
        ResponseCode::ALL
            .iter()
            .filter(|code| !code.is_approved())
            .map(|code| (*code, self.get(*code)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The switch is serving; its gauges are read from `gauges` from now on.
    pub fn ready(&self, gauges: Weak<dyn Gauges>) {
        let _ = self.gauges.set(gauges);
        self.state.store(READY, Ordering::Release);
    }

    /// `/health`: the status and its body.
    pub fn health(&self) -> (u16, String) {
        if self.state.load(Ordering::Acquire) == RECOVERING {
            return (503, "recovering\n".into());
        }
        match self.gauges.get().and_then(Weak::upgrade).map(|g| g.failed_partitions()) {
            Some(0) => (200, "ready\n".into()),
            Some(n) => (503, format!("failed: {n} partition(s) stopped after a storage failure\n")),
            None => (503, "stopped\n".into()),
        }
    }

    /// `/metrics`, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP cardswitch_responses_total Responses sent, by response type and code.\n");
        out.push_str("# TYPE cardswitch_responses_total counter\n");
        for (i, by_code) in self.responses.iter().enumerate() {
            for code in ResponseCode::ALL {
                let n = by_code[*code as usize].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "cardswitch_responses_total{{type=\"{}\",code=\"{}\"}} {n}",
                        MsgType::ALL[i].as_str(),
                        code.as_str()
                    );
                }
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(
            &mut out,
            "cardswitch_mac_failures_total",
            "Requests refused for a bad MAC (SPEC 3.1).",
            self.get(ResponseCode::BadMac),
        );
        counter(
            &mut out,
            "cardswitch_storage_failures_total",
            "Group commits that failed (the partition stops).",
            self.storage_failures.load(Ordering::Relaxed),
        );
        self.request_latency_us.render(
            &mut out,
            "cardswitch_request_latency_seconds",
            "Card requests from queued to answered, the group commit included.",
            1_000_000,
        );
        self.batch_commands.render(&mut out, "cardswitch_group_commit_commands", "Commands in one group commit.", 1);
        self.commit_us.render(
            &mut out,
            "cardswitch_group_commit_seconds",
            "Time to make one group commit durable (the synced write).",
            1_000_000,
        );
        let _ = writeln!(
            out,
            "# HELP cardswitch_connections Terminal connections open.\n# TYPE cardswitch_connections gauge\n\
             cardswitch_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        if let Some(gauges) = self.gauges.get().and_then(Weak::upgrade) {
            out.push_str("# HELP cardswitch_partition_queue_depth Commands waiting for a partition.\n");
            out.push_str("# TYPE cardswitch_partition_queue_depth gauge\n");
            for (p, depth) in gauges.queue_depths().iter().enumerate() {
                let _ = writeln!(out, "cardswitch_partition_queue_depth{{partition=\"{p}\"}} {depth}");
            }
            let _ = writeln!(
                out,
                "# HELP cardswitch_partitions_failed Partitions stopped after a storage failure.\n\
                 # TYPE cardswitch_partitions_failed gauge\ncardswitch_partitions_failed {}",
                gauges.failed_partitions()
            );
        }
        let (status, _) = self.health();
        let _ = writeln!(
            out,
            "# HELP cardswitch_ready 1 when the switch serves, 0 while it recovers or after a failure.\n\
             # TYPE cardswitch_ready gauge\ncardswitch_ready {}",
            u8::from(status == 200)
        );
        out
    }
}

/// Serves `/metrics` and `/health` on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            answer(stream, &metrics).await;
            drop(permit);
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, metrics: &Metrics) {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_millis(HTTP_READ_TIMEOUT_MS), async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_HTTP_REQUEST_BYTES {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let line = String::from_utf8_lossy(request.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
    let (status, content_type, body) = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["GET", "/metrics", _] => (200, "text/plain; version=0.0.4", metrics.render()),
        ["GET", "/health", _] => {
            let (status, body) = metrics.health();
            (status, "text/plain", body)
        }
        ["GET", _, _] => (404, "text/plain", "not found: /metrics and /health are served\n".to_string()),
        _ => (405, "text/plain", "only GET\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Where `serve --metrics` listens, bound before recovery so that `/health` answers during it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_the_text_format_holds_every_family() {
        let m = Metrics::default();
        m.request_latency_us.observe(80);
        m.request_latency_us.observe_all([3_000, 9_000_000].into_iter());
        m.count_response(MsgType::SaleReply, ResponseCode::Approved);
        m.count_response(MsgType::SaleReply, ResponseCode::BadMac);
        let text = m.render();
        assert!(text.contains("cardswitch_request_latency_seconds_bucket{le=\"0.0001\"} 1"), "{text}");
        assert!(text.contains("cardswitch_request_latency_seconds_bucket{le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("cardswitch_request_latency_seconds_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("cardswitch_request_latency_seconds_count 3"), "{text}");
        assert!(text.contains("cardswitch_responses_total{type=\"sale_reply\",code=\"approved\"} 1"), "{text}");
        assert!(text.contains("cardswitch_mac_failures_total 1"), "{text}");
        assert_eq!(m.health().0, 503, "recovering until ready");
        assert!(text.contains("cardswitch_ready 0"));
    }
}

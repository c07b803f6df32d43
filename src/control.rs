//! The switch's local control socket: `control.sock` in the data directory, through which
//! `cardswitch close-day` and `cardswitch settle` reach a running switch (S1, S8). Whoever can
//! reach the data directory can use it, no one else: it is a Unix socket, never on the
//! network. One request line, one answer line:
//!
//! ```text
//! close all|default|store <id> <YYYYMMDD>|current   →  ok changed=<0|1> housekept=<dates>
//! snapshot <YYYYMMDD>                                →  ok <directory>
//! backup <absolute directory>                         →  ok <directory>
//! anything else, or a failure                        →  error <message>
//! ```
//!
//! `snapshot` closes the day at every store (if still open), waits for its housekeeping, and
//! answers with a consistent copy of the data directory, which the caller reads and removes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::engine::days::Scope;
use crate::engine::BusinessDate;

/// The socket's name in the data directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Snapshots for the batch are made under this directory of the data directory.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 256;
/// How long a client waits for the answer: a close waits for the day's housekeeping, which
/// at a few million postings takes minutes.
pub const ANSWER_TIMEOUT_MS: u64 = 30 * 60 * 1_000;
/// Control connections served at once; more wait for the kernel's backlog.
pub const MAX_CONTROL_CONNECTIONS: usize = 4;

/// A request on the control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlRequest {
    /// Close through a date (None: the day in progress).
    Close {
        scope: Scope,
        through: Option<BusinessDate>,
    },
    Snapshot {
        date: BusinessDate,
    },
    /// A consistent copy of the data directory made at `to` (absolute, not yet existing).
    Backup {
        to: PathBuf,
    },
}

impl ControlRequest {
    pub fn parse(line: &str) -> Result<ControlRequest, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let date = |text: &str| match text {
            "current" => Ok(None),
            _ => text
                .parse::<BusinessDate>()
                .ok()
                .filter(|d| crate::engine::rules::is_date(*d))
                .map(Some)
                .ok_or_else(|| format!("`{text}` is not a date YYYYMMDD")),
        };
        match words.as_slice() {
            ["close", "all", d] => Ok(ControlRequest::Close { scope: Scope::All, through: date(d)? }),
            ["close", "default", d] => Ok(ControlRequest::Close { scope: Scope::Default, through: date(d)? }),
            ["close", "store", id, d] => {
                let id = id.parse().map_err(|_| format!("`{id}` is not a store id"))?;
                Ok(ControlRequest::Close { scope: Scope::Store(id), through: date(d)? })
            }
            ["backup", to] if to.starts_with('/') => Ok(ControlRequest::Backup { to: PathBuf::from(to) }),
            ["backup", to] => Err(format!("`{to}` is not an absolute path")),
            ["snapshot", d] => match date(d)? {
                Some(date) => Ok(ControlRequest::Snapshot { date }),
                None => Err("a snapshot names its date".into()),
            },
            _ => Err(format!("unknown request `{}`", line.trim())),
        }
    }

    pub fn to_line(&self) -> String {
        let date = |d: Option<BusinessDate>| d.map_or("current".to_string(), |d| d.to_string());
        match self {
            ControlRequest::Close { scope: Scope::All, through } => format!("close all {}", date(*through)),
            ControlRequest::Close { scope: Scope::Default, through } => format!("close default {}", date(*through)),
            ControlRequest::Close { scope: Scope::Store(id), through } => {
                format!("close store {id} {}", date(*through))
            }
            ControlRequest::Snapshot { date } => format!("snapshot {date}"),
            ControlRequest::Backup { to } => format!("backup {}", to.display()),
        }
    }
}

/// What answers a request: `Ok(text)` for `ok <text>`, `Err(message)` for `error <message>`.
pub type Handler = Arc<dyn Fn(ControlRequest) -> Result<String, String> + Send + Sync>;

/// Serves the control socket of `data_dir` until `shutdown`; each request is handled on a
/// blocking thread (a close waits for the partitions). A socket left by a switch that was
/// killed is replaced: the data directory's lock says no other switch runs here.
pub async fn serve(data_dir: &Path, handler: Handler, shutdown: tokio_util::sync::CancellationToken) {
    let path = data_dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "no control socket: close-day and settle need a stopped switch");
            return;
        }
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let handler = handler.clone();
        tokio::spawn(async move {
            answer(stream, handler).await;
            drop(permit);
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn answer(stream: tokio::net::UnixStream, handler: Handler) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
    let reply = match reader.read_line(&mut line).await {
        Ok(_) if !line.ends_with('\n') => Err(format!("a request is one line of at most {MAX_REQUEST_BYTES} bytes")),
        Ok(_) => match ControlRequest::parse(&line) {
            Ok(request) => {
                tracing::info!(request = %request.to_line(), "control request");
                tokio::task::spawn_blocking(move || handler(request))
                    .await
                    .unwrap_or_else(|_| Err("the request failed".into()))
            }
            Err(message) => Err(message),
        },
        Err(error) => Err(error.to_string()),
    };
    let text = match reply {
        Ok(text) => format!("ok {text}\n"),
        Err(message) => format!("error {}\n", message.replace('\n', " ")),
    };
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Asks the switch running on `data_dir`. `Ok(None)`: no switch listens there (it is
/// stopped); `Ok(Some(Ok(text)))` / `Ok(Some(Err(message)))`: its answer.
pub fn request(data_dir: &Path, request: ControlRequest) -> std::io::Result<Option<Result<String, String>>> {
    let path = data_dir.join(SOCKET_NAME);
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(error) if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None)
        }
        Err(error) => return Err(error),
    };
    stream.set_read_timeout(Some(Duration::from_millis(ANSWER_TIMEOUT_MS)))?;
    stream.write_all(format!("{}\n", request.to_line()).as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let line = line.trim_end();
    Ok(Some(if let Some(text) = line.strip_prefix("ok") {
        Ok(text.trim_start().to_string())
    } else if let Some(message) = line.strip_prefix("error ") {
        Err(message.to_string())
    } else {
        Err(format!("the switch answered `{line}`"))
    }))
}

/// A new snapshot directory's path for `date`.
pub fn snapshot_path(data_dir: &Path, date: BusinessDate, now_ms: i64) -> PathBuf {
    data_dir.join(SNAPSHOTS_DIR).join(format!("{date}-{now_ms}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_back_as_written_and_bad_ones_are_named() {
        for request in [
            ControlRequest::Close { scope: Scope::All, through: None },
            ControlRequest::Close { scope: Scope::Default, through: Some(20261201) },
            ControlRequest::Close { scope: Scope::Store(21), through: Some(20261231) },
            ControlRequest::Snapshot { date: 20270101 },
            ControlRequest::Backup { to: PathBuf::from("/var/backups/cardswitch/2026-12-01") },
        ] {
            assert_eq!(ControlRequest::parse(&request.to_line()), Ok(request));
        }
        assert!(ControlRequest::parse("backup relative/dir").unwrap_err().contains("absolute"));
        assert!(ControlRequest::parse("close store x current").unwrap_err().contains("store id"));
        assert!(ControlRequest::parse("close all 20261332").unwrap_err().contains("not a date"));
        assert!(ControlRequest::parse("snapshot current").is_err());
        assert!(ControlRequest::parse("drop everything").unwrap_err().contains("unknown request"));
    }
}

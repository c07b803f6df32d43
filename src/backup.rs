//! Backup, restore and verification of a data directory.
//!
//! `backup` makes a consistent copy: through the running switch's control socket (a RocksDB
//! checkpoint of the state and then the log, as for settlement, taken while it serves), or
//! from a stopped directory directly. `restore` copies a backup into a new data directory and
//! proves it opens. `verify` checks that every card's balances are what its journal says and
//! that the last day closed at every store passes the liability proof (S5).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::control::{self, ControlRequest};
use crate::store::{Store, StoreError, LOG_DIR, STATE_DIR};

/// Problems `verify` lists before it only counts the rest.
pub const MAX_PROBLEMS_LISTED: usize = 100;
/// Exit status of `verify` when the data directory has problems.
pub const EXIT_PROBLEMS: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the data directory: {0}")]
    Store(#[from] StoreError),
    #[error("the running switch refused: {0}")]
    Switch(String),
    #[error("{0}")]
    Stopped(#[from] crate::days::StoppedError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

/// A directory that does not exist or is empty; made absolute.
fn fresh_target(dir: &Path) -> Result<PathBuf, BackupError> {
    let absolute =
        if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir().map_err(io(dir))?.join(dir) };
    if absolute.exists() && std::fs::read_dir(&absolute).map_err(io(&absolute))?.next().is_some() {
        return Err(BackupError::Usage(format!("{} exists and is not empty", absolute.display())));
    }
    if absolute.exists() {
        std::fs::remove_dir(&absolute).map_err(io(&absolute))?;
    }
    Ok(absolute)
}

fn is_data_dir(dir: &Path) -> bool {
    dir.join(LOG_DIR).is_dir() && dir.join(STATE_DIR).is_dir()
}

/// Copies the data directory `data` to `to` (which must not exist or be empty), online
/// through the running switch or from the stopped directory; returns where it is.
pub fn backup(data: &Path, to: &Path) -> Result<PathBuf, BackupError> {
    if !is_data_dir(data) {
        return Err(BackupError::Usage(format!("{} is not a data directory of the switch", data.display())));
    }
    let to = fresh_target(to)?;
    let request = ControlRequest::Backup { to: to.clone() };
    match control::request(data, request).map_err(io(&data.join(control::SOCKET_NAME)))? {
        Some(Ok(_)) => Ok(to),
        Some(Err(message)) => Err(BackupError::Switch(message)),
        None => {
            Store::open(data)?.checkpoint(&to)?;
            Ok(to)
        }
    }
}

/// Copies the backup `from` into the new data directory `data` and opens it once (recovery
/// replays what the backup's log holds beyond its state); returns the cards it holds.
pub fn restore(from: &Path, data: &Path) -> Result<usize, BackupError> {
    if !is_data_dir(from) {
        return Err(BackupError::Usage(format!(
            "{} is not a backup (it has no {LOG_DIR}/ and {STATE_DIR}/)",
            from.display()
        )));
    }
    let data = fresh_target(data)?;
    copy_tree(from, &data)?;
    let store = Store::open(&data)?;
    let recovered = store.recover(1)?;
    Ok(recovered.partitions.iter().map(|p| p.cards.len()).sum())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io(&target))?;
        }
    }
    // Durable before it is reported restored.
    std::fs::File::open(to).and_then(|d| d.sync_all()).map_err(io(to))
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    pub cards: usize,
    pub entries: u64,
    /// The last day closed at every store, and whether its liability proof holds.
    pub closed_day: Option<(crate::engine::BusinessDate, bool)>,
    pub problems: Vec<String>,
    /// Problems past [`MAX_PROBLEMS_LISTED`], counted only.
    pub more_problems: usize,
}

impl Verification {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS_LISTED {
            self.problems.push(text);
        } else {
            self.more_problems += 1;
        }
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the data directory `data` (a running switch's through a backup into its snapshots
/// directory, removed after): every card's cash, bonus and held value equal the sums of its
/// journal's changes, no transaction id is journaled twice, and the last day closed at every
/// store passes the liability proof.
pub fn verify(data: &Path) -> Result<Verification, BackupError> {
    if !is_data_dir(data) {
        return Err(BackupError::Usage(format!("{} is not a data directory of the switch", data.display())));
    }
    let copy = std::fs::canonicalize(data)
        .map_err(io(data))?
        .join(control::SNAPSHOTS_DIR)
        .join(format!("verify-{}", std::process::id()));
    match control::request(data, ControlRequest::Backup { to: copy.clone() }).map_err(io(data))? {
        Some(Ok(_)) => {
            let result = verify_stopped(&copy);
            let _ = std::fs::remove_dir_all(&copy);
            result
        }
        Some(Err(message)) => Err(BackupError::Switch(message)),
        None => verify_stopped(data),
    }
}

fn verify_stopped(data: &Path) -> Result<Verification, BackupError> {
    let store = Store::open(data)?;
    let recovered = store.recover(1)?;
    let mut v = Verification::default();
    let cards: HashMap<protocol::CardNo, crate::engine::Card> =
        recovered.partitions.iter().flat_map(|p| p.cards.iter().map(|(n, c)| (*n, *c))).collect();
    v.cards = cards.len();
    let mut sums: HashMap<protocol::CardNo, (i64, i64, i64)> = HashMap::new();
    let mut seen_txns = std::collections::HashSet::new();
    let mut entries = Vec::new();
    for entry in store.journal() {
        let entry = entry?;
        v.entries += 1;
        if !seen_txns.insert(entry.txn_id) {
            v.problem(format!("transaction {} is journaled twice", entry.txn_id));
        }
        let sum = sums.entry(entry.card).or_default();
        *sum = (sum.0 + entry.cash_delta_minor, sum.1 + entry.bonus_delta_minor, sum.2 + entry.held_delta_minor);
        entries.push(entry);
    }
    let mut numbers: Vec<protocol::CardNo> = cards.keys().chain(sums.keys()).copied().collect();
    numbers.sort_unstable_by_key(|c| c.0);
    numbers.dedup();
    for card in numbers {
        let held = cards.get(&card).map_or((0, 0, 0), |c| (c.cash_minor, c.bonus_minor, c.held_minor));
        let journal = sums.get(&card).copied().unwrap_or_default();
        if held != journal {
            v.problem(format!(
                "card {card}: cash {} bonus {} held {}, its journal says cash {} bonus {} held {}",
                fmt(held.0),
                fmt(held.1),
                fmt(held.2),
                fmt(journal.0),
                fmt(journal.1),
                fmt(journal.2)
            ));
        }
    }
    let book = store.day_book()?;
    if let Some(day) = book.map(|b| b.closed_everywhere_through()).filter(|d| *d > 0) {
        let catalog = crate::days::stored_catalog(&store)?;
        let totals =
            cards.values().fold((0, 0, 0), |a, c| (a.0 + c.cash_minor, a.1 + c.bonus_minor, a.2 + c.held_minor));
        let settlement = crate::settle::settle_entries(entries, day, totals, |s| catalog.company_of(s));
        let balanced = settlement.liability.balanced();
        if !balanced {
            v.problem(format!("the liability proof of {} does not balance", crate::engine::rules::date_text(day)));
        }
        v.closed_day = Some((day, balanced));
    }
    Ok(v)
}

fn fmt(minor: i64) -> String {
    protocol::types::format_minor(minor)
}

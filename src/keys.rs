//! Terminal keys (SPEC §3.1, §5.17): the switch holds each provisioned terminal's key in
//! memory to check MACs, and stores it only wrapped under the master key, never in clear.
//!
//! Two secrets live outside the data directory, in key files readable by their owner only:
//! the **master key**, which wraps every stored terminal key, and the **admin credential**
//! (a terminal id and its key), which the switch provisions as an `admin` terminal in a data
//! directory that has none, so that the first terminals can be provisioned over the wire.
//! Both default to files in `$CARDSWITCH_HOME` (default `~/.cardswitch`) and are created,
//! with fresh random keys, when missing.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hmac::{Hmac, Mac};
use protocol::auth::KEY_BYTES;
use protocol::{ResponseCode, TerminalKey, TerminalRole};
use sha2::Sha256;

pub use protocol::auth::{ADMIN_KEY_FILE, CARDSWITCH_HOME_ENV};
/// File name of the master key in the key directory.
pub const MASTER_KEY_FILE: &str = "master.key";
/// Terminal id of the admin credential the switch creates when there is none.
pub const DEFAULT_ADMIN_TERMINAL: u32 = 1;
/// A terminal provisioned for this store may sign on at any store (the bootstrap admin).
pub const ANY_STORE: u32 = 0;
/// Bytes of the random nonce that makes every stored wrapping of a key different.
const NONCE_BYTES: usize = 16;
/// Bytes of the check value that tells a wrong master key from a right one.
const CHECK_BYTES: usize = 16;
/// Version byte of a stored terminal record.
const RECORD_VERSION: u8 = 1;
/// Bytes of a stored terminal record.
pub const STORED_TERMINAL_BYTES: usize = 1 + 4 + 1 + 1 + NONCE_BYTES + KEY_BYTES + CHECK_BYTES;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is not valid: {problem}")]
    Format { path: PathBuf, problem: String },
    #[error("the operating system gave no random bytes: {0}")]
    Random(String),
    #[error("the master key does not open the key of terminal {terminal_id}: it is not the master key this data directory was written with")]
    WrongMasterKey { terminal_id: u32 },
    #[error("stored record of terminal {terminal_id} is corrupt: {problem}")]
    Corrupt { terminal_id: u32, problem: String },
    #[error("no key directory: set {CARDSWITCH_HOME_ENV} or HOME, or name the key files")]
    NoHome,
}

/// 32 random bytes from the operating system.
pub fn random_key_bytes() -> Result<[u8; KEY_BYTES], KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

/// The directory of the default key files: `$CARDSWITCH_HOME`, else `$HOME/.cardswitch`.
pub fn default_key_dir() -> Result<PathBuf, KeyError> {
    protocol::auth::default_key_dir().ok_or(KeyError::NoHome)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Writes `text` to a new file at `path` readable and writable by its owner only; fails if
/// the file exists (another process may have just created it: the caller reads it then).
fn create_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Reads the key file at `path`, or creates it with `create()`'s text when it does not exist.
/// Returns the text and whether it was created.
fn read_or_create(path: &Path, create: impl FnOnce() -> Result<String, KeyError>) -> Result<(String, bool), KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((text, false)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(KeyError::Read { path: path.to_path_buf(), source: e })
        }
        Err(_) => {}
    }
    let text = create()?;
    match create_private_file(path, &text) {
        Ok(()) => Ok((text, true)),
        // Created meanwhile by another process: its key wins.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path)
            .map(|text| (text, false))
            .map_err(|source| KeyError::Read { path: path.to_path_buf(), source }),
        Err(source) => Err(KeyError::Write { path: path.to_path_buf(), source }),
    }
}

/// The key that wraps every stored terminal key. Never printed.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_BYTES]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> MasterKey {
        MasterKey(bytes)
    }

    pub fn random() -> Result<MasterKey, KeyError> {
        random_key_bytes().map(MasterKey)
    }

    /// Reads the master key file at `path` (64 hex digits), creating it with a random key if
    /// it does not exist. True in the second field when it was created.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool), KeyError> {
        let (text, created) =
            read_or_create(path, || Ok(format!("{}\n", TerminalKey::from_bytes(random_key_bytes()?).to_hex())))?;
        let key =
            TerminalKey::from_hex(&text).map_err(|problem| KeyError::Format { path: path.to_path_buf(), problem })?;
        Ok((MasterKey(*key.expose()), created))
    }

    /// The deployment's PIN key (`engine::PinKey`): derived, so it needs no file of its own
    /// and changes only with the master key, which already refuses to start on a mismatch.
    pub fn pin_secret(&self) -> [u8; KEY_BYTES] {
        hmac(&self.0, &[b"cardswitch pin hash v1"])
    }

    /// The key that seals member records and keys the member ID index (M1, M3).
    pub fn member_secret(&self) -> [u8; KEY_BYTES] {
        hmac(&self.0, &[b"cardswitch member data v1"])
    }

    /// The key of operators' passcode hashes (O1), derived like the PIN key.
    pub fn operator_secret(&self) -> [u8; KEY_BYTES] {
        hmac(&self.0, &[b"cardswitch operator passcode v1"])
    }

    fn pad(&self, terminal_id: u32, nonce: &[u8; NONCE_BYTES]) -> [u8; KEY_BYTES] {
        hmac(&self.0, &[b"cardswitch key at rest v1", &terminal_id.to_be_bytes(), nonce])
    }

    fn check(&self, terminal: &Terminal) -> [u8; CHECK_BYTES] {
        let full = hmac(
            &self.0,
            &[
                b"cardswitch key check v1",
                &terminal.terminal_id.to_be_bytes(),
                &terminal.store_id.to_be_bytes(),
                &[terminal.role as u8],
                terminal.key.expose(),
            ],
        );
        full[..CHECK_BYTES].try_into().expect("16 of 32 bytes")
    }

    /// The stored form of `terminal`: its key XORed with a pad derived from this master key,
    /// the terminal id and a fresh random nonce, plus a check value over everything.
    pub fn seal(&self, terminal: &Terminal) -> Result<StoredTerminal, KeyError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
        let pad = self.pad(terminal.terminal_id, &nonce);
        let wrapped = std::array::from_fn(|i| terminal.key.expose()[i] ^ pad[i]);
        Ok(StoredTerminal {
            terminal_id: terminal.terminal_id,
            store_id: terminal.store_id,
            role: terminal.role as u8,
            enabled: terminal.enabled(),
            nonce,
            wrapped,
            check: self.check(terminal),
        })
    }

    /// The terminal a stored record describes; fails when this is not the master key that
    /// sealed it.
    pub fn open(&self, stored: &StoredTerminal) -> Result<Terminal, KeyError> {
        let role = TerminalRole::from_u8(stored.role).ok_or_else(|| KeyError::Corrupt {
            terminal_id: stored.terminal_id,
            problem: format!("role {} is unknown", stored.role),
        })?;
        let pad = self.pad(stored.terminal_id, &stored.nonce);
        let key = TerminalKey::from_bytes(std::array::from_fn(|i| stored.wrapped[i] ^ pad[i]));
        let terminal = Terminal::new(stored.terminal_id, stored.store_id, role, key, stored.enabled);
        // Not a secret comparison: a wrong master key is refused either way.
        if self.check(&terminal) != stored.check {
            return Err(KeyError::WrongMasterKey { terminal_id: stored.terminal_id });
        }
        Ok(terminal)
    }
}

/// The admin credential: a terminal id and its key (file format in `protocol::auth`).
pub use protocol::auth::Credential;

/// Creates and reads credential files.
pub trait CredentialFile: Sized {
    fn random(terminal_id: u32) -> Result<Self, KeyError>;
    /// Reads the credential file at `path`, or creates it for terminal `terminal_id` with a
    /// random key. True in the second field when it was created.
    fn load_or_create(path: &Path, terminal_id: u32) -> Result<(Self, bool), KeyError>;
    /// Writes the credential to a new file at `path`, owner-only; fails if it exists.
    fn write_new(&self, path: &Path) -> Result<(), KeyError>;
}

impl CredentialFile for Credential {
    fn random(terminal_id: u32) -> Result<Credential, KeyError> {
        Ok(Credential { terminal_id, key: TerminalKey::from_bytes(random_key_bytes()?) })
    }

    fn load_or_create(path: &Path, terminal_id: u32) -> Result<(Credential, bool), KeyError> {
        let (text, created) = read_or_create(path, || Ok(Credential::random(terminal_id)?.to_text()))?;
        let credential =
            Credential::parse(&text).map_err(|problem| KeyError::Format { path: path.to_path_buf(), problem })?;
        Ok((credential, created))
    }

    fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        create_private_file(path, &self.to_text())
            .map_err(|source| KeyError::Write { path: path.to_path_buf(), source })
    }
}

/// Trace numbers a terminal's recent remembered requests used, kept per terminal (not per
/// card partition) because a reused stan may name a card of another partition than the one
/// that remembers it (T8). Older ones are found on disk by the card's partition.
pub const RECENT_STANS_PER_TERMINAL: usize = 4_096;

/// What a terminal's recent trace numbers say about a new request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanUse {
    /// Not among the recent ones (new, or old enough for the partition to look up).
    Unseen,
    /// Used by a request with the same content: a retransmission.
    Same,
    /// Used by a request with other content (T8: `trace_reused`).
    Reused,
}

/// The last [`RECENT_STANS_PER_TERMINAL`] stans of one terminal with their requests' digests.
#[derive(Debug, Default)]
struct RecentStans {
    digests: HashMap<u32, u64>,
    order: VecDeque<u32>,
}

/// A provisioned terminal as the switch holds it.
#[derive(Debug)]
pub struct Terminal {
    pub terminal_id: u32,
    /// The store it signs on at, or [`ANY_STORE`].
    pub store_id: u32,
    pub role: TerminalRole,
    pub key: TerminalKey,
    enabled: AtomicBool,
    /// Set when a newer provisioning replaced this one: connections holding it stop.
    superseded: AtomicBool,
    recent_stans: Mutex<RecentStans>,
}

impl Terminal {
    pub fn new(terminal_id: u32, store_id: u32, role: TerminalRole, key: TerminalKey, enabled: bool) -> Terminal {
        Terminal {
            terminal_id,
            store_id,
            role,
            key,
            enabled: AtomicBool::new(enabled),
            superseded: AtomicBool::new(false),
            recent_stans: Mutex::default(),
        }
    }

    /// Records that `stan` carries a request with content `digest`, unless it already carried
    /// another one, and says which.
    pub fn use_stan(&self, stan: u32, digest: u64) -> StanUse {
        let mut recent = self.recent_stans.lock().unwrap_or_else(|e| e.into_inner());
        match recent.digests.get(&stan) {
            Some(seen) if *seen == digest => StanUse::Same,
            Some(_) => StanUse::Reused,
            None => {
                if recent.order.len() >= RECENT_STANS_PER_TERMINAL {
                    if let Some(oldest) = recent.order.pop_front() {
                        recent.digests.remove(&oldest);
                    }
                }
                recent.digests.insert(stan, digest);
                recent.order.push_back(stan);
                StanUse::Unseen
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Whether this terminal may be answered now: `terminal_disabled` when disabled,
    /// `unknown_terminal` when a newer provisioning replaced it.
    pub fn usable(&self) -> Result<(), ResponseCode> {
        if self.superseded.load(Ordering::Acquire) {
            Err(ResponseCode::UnknownTerminal)
        } else if !self.enabled() {
            Err(ResponseCode::TerminalDisabled)
        } else {
            Ok(())
        }
    }

    /// May this terminal sign on at `store_id`?
    pub fn serves_store(&self, store_id: u32) -> bool {
        self.store_id == ANY_STORE || self.store_id == store_id
    }
}

/// A terminal record as stored (column family `terminal_keys`): the key wrapped, never clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTerminal {
    pub terminal_id: u32,
    pub store_id: u32,
    pub role: u8,
    pub enabled: bool,
    nonce: [u8; NONCE_BYTES],
    wrapped: [u8; KEY_BYTES],
    check: [u8; CHECK_BYTES],
}

impl StoredTerminal {
    /// Record bytes (the key is the terminal id, u32 big-endian):
    /// version, store, role, enabled, nonce, wrapped key, check.
    pub fn encode(&self) -> [u8; STORED_TERMINAL_BYTES] {
        let mut out = [0u8; STORED_TERMINAL_BYTES];
        out[0] = RECORD_VERSION;
        out[1..5].copy_from_slice(&self.store_id.to_be_bytes());
        out[5] = self.role;
        out[6] = u8::from(self.enabled);
        let mut at = 7;
        for part in [&self.nonce[..], &self.wrapped[..], &self.check[..]] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out
    }

    pub fn decode(terminal_id: u32, bytes: &[u8]) -> Result<StoredTerminal, KeyError> {
        let corrupt = |problem: String| KeyError::Corrupt { terminal_id, problem };
        if bytes.len() != STORED_TERMINAL_BYTES {
            return Err(corrupt(format!("{} bytes, expected {STORED_TERMINAL_BYTES}", bytes.len())));
        }
        if bytes[0] != RECORD_VERSION {
            return Err(corrupt(format!("record version {} is unknown", bytes[0])));
        }
        if bytes[6] > 1 {
            return Err(corrupt(format!("enabled flag {} is neither 0 nor 1", bytes[6])));
        }
        let take = |at: usize, n: usize| &bytes[at..at + n];
        Ok(StoredTerminal {
            terminal_id,
            store_id: u32::from_be_bytes(take(1, 4).try_into().expect("4 bytes")),
            role: bytes[5],
            enabled: bytes[6] == 1,
            nonce: take(7, NONCE_BYTES).try_into().expect("nonce bytes"),
            wrapped: take(7 + NONCE_BYTES, KEY_BYTES).try_into().expect("key bytes"),
            check: take(7 + NONCE_BYTES + KEY_BYTES, CHECK_BYTES).try_into().expect("check bytes"),
        })
    }
}

/// Every provisioned terminal, shared by all connections. Reads are one map lookup under a
/// read lock, taken once per frame before sign-on and never after (a connection keeps the
/// `Arc` of its terminal).
#[derive(Default)]
pub struct Keyring {
    terminals: RwLock<HashMap<u32, Arc<Terminal>>>,
}

impl Keyring {
    pub fn get(&self, terminal_id: u32) -> Option<Arc<Terminal>> {
        self.terminals.read().unwrap_or_else(|e| e.into_inner()).get(&terminal_id).cloned()
    }

    /// Adds or replaces a terminal; a replaced one stops serving its connections.
    pub fn insert(&self, terminal: Terminal) -> Arc<Terminal> {
        let terminal = Arc::new(terminal);
        let previous =
            self.terminals.write().unwrap_or_else(|e| e.into_inner()).insert(terminal.terminal_id, terminal.clone());
        if let Some(previous) = previous {
            previous.superseded.store(true, Ordering::Release);
        }
        terminal
    }

    /// Enables or disables a terminal, in memory (the caller has stored it first).
    pub fn set_enabled(&self, terminal_id: u32, enabled: bool) -> Option<Arc<Terminal>> {
        let terminal = self.get(terminal_id)?;
        terminal.enabled.store(enabled, Ordering::Release);
        Some(terminal)
    }

    pub fn len(&self) -> usize {
        self.terminals.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal(seed: u8) -> Terminal {
        Terminal::new(1001, 21, TerminalRole::Pos, TerminalKey::from_bytes([seed; KEY_BYTES]), true)
    }

    #[test]
    fn stored_keys_are_wrapped_and_open_only_with_their_master_key() {
        let master = MasterKey::from_bytes([7; KEY_BYTES]);
        let stored = master.seal(&terminal(9)).unwrap();
        let bytes = stored.encode();
        // The key's bytes appear nowhere in the record.
        assert!(!bytes.windows(KEY_BYTES).any(|w| w == [9; KEY_BYTES]));
        let back = StoredTerminal::decode(1001, &bytes).unwrap();
        assert_eq!(back, stored);
        let opened = master.open(&back).unwrap();
        assert_eq!(
            (opened.terminal_id, opened.store_id, opened.role, opened.enabled()),
            (1001, 21, TerminalRole::Pos, true)
        );
        assert_eq!(opened.key, TerminalKey::from_bytes([9; KEY_BYTES]));
        let wrong = MasterKey::from_bytes([8; KEY_BYTES]);
        assert!(matches!(wrong.open(&back), Err(KeyError::WrongMasterKey { terminal_id: 1001 })));
        // Two seals of the same key differ (fresh nonce).
        assert_ne!(master.seal(&terminal(9)).unwrap().encode(), bytes);
    }

    #[test]
    fn corrupt_records_are_named() {
        let master = MasterKey::from_bytes([7; KEY_BYTES]);
        let mut bytes = master.seal(&terminal(9)).unwrap().encode();
        assert!(StoredTerminal::decode(5, &bytes[..10]).is_err());
        bytes[0] = 9;
        assert!(matches!(StoredTerminal::decode(5, &bytes), Err(KeyError::Corrupt { terminal_id: 5, .. })));
    }

    #[test]
    fn key_files_are_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(ADMIN_KEY_FILE);
        let (created, was_created) = Credential::load_or_create(&path, 1).unwrap();
        assert!(was_created);
        let (again, was_created) = Credential::load_or_create(&path, 1).unwrap();
        assert!(!was_created);
        assert_eq!((again.terminal_id, again.key), (created.terminal_id, created.key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let master_path = dir.path().join(MASTER_KEY_FILE);
        let (m1, c1) = MasterKey::load_or_create(&master_path).unwrap();
        let (m2, c2) = MasterKey::load_or_create(&master_path).unwrap();
        assert!(c1 && !c2);
        assert_eq!(m1.0, m2.0);
        std::fs::write(dir.path().join("bad.key"), "terminal x\n").unwrap();
        assert!(matches!(Credential::load_or_create(&dir.path().join("bad.key"), 1), Err(KeyError::Format { .. })));
    }

    #[test]
    fn a_terminal_remembers_its_recent_stans_with_their_content() {
        let t = terminal(1);
        assert_eq!(t.use_stan(7, 100), StanUse::Unseen);
        assert_eq!(t.use_stan(7, 100), StanUse::Same);
        assert_eq!(t.use_stan(7, 101), StanUse::Reused);
        // The window is bounded: the oldest stan leaves it (the partitions' records and the
        // disk still know it).
        for stan in 8..8 + RECENT_STANS_PER_TERMINAL as u32 {
            assert_eq!(t.use_stan(stan, 0), StanUse::Unseen);
        }
        assert_eq!(t.use_stan(7, 101), StanUse::Unseen);
    }
}

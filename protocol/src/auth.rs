//! Terminal authentication (SPEC §3.1): every frame ends with a MAC, HMAC-SHA256 under the
//! terminal's secret key over every byte before it (length prefix, header, body), truncated
//! to [`MAC_BYTES`]. A key also protects the keys it carries (`provision_terminal`, §5.17).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a terminal's secret key.
pub const KEY_BYTES: usize = 32;
/// Bytes of the MAC that ends every frame: the leftmost half of HMAC-SHA256.
pub const MAC_BYTES: usize = 16;

/// The MAC of a frame sent by a party without a key (an unprovisioned terminal, or the switch
/// answering one): all zero. A receiver with a key accepts it only on the frames SPEC §3.1
/// lists.
pub const ZERO_MAC: [u8; MAC_BYTES] = [0; MAC_BYTES];

/// Context string of the pad that protects a key carried in `provision_terminal`.
const KEY_TRANSPORT_CONTEXT: &[u8] = b"cardswitch key transport v1";

type HmacSha256 = Hmac<Sha256>;

/// A terminal's secret key. Never printed: `Debug` shows only that it is a key.
///
/// Holds the HMAC state with the key already absorbed (its inner and outer padded blocks), so
/// a MAC costs two SHA-256 compressions of the message and the finalisation, not two more for
/// the key: every frame is signed or checked with one.
#[derive(Clone)]
pub struct TerminalKey {
    bytes: [u8; KEY_BYTES],
    prepared: HmacSha256,
}

impl PartialEq for TerminalKey {
    fn eq(&self, other: &TerminalKey) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for TerminalKey {}

impl std::fmt::Debug for TerminalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TerminalKey(..)")
    }
}

impl TerminalKey {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> TerminalKey {
        let prepared = <HmacSha256 as Mac>::new_from_slice(&bytes).expect("HMAC takes keys of any length");
        TerminalKey { bytes, prepared }
    }

    /// The key's bytes; for MACs and for wrapping it, never for display.
    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }

    /// Parses 64 hexadecimal digits (surrounding whitespace allowed), as key files hold them.
    pub fn from_hex(text: &str) -> Result<TerminalKey, String> {
        let text = text.trim();
        if text.len() != 2 * KEY_BYTES || !text.is_ascii() {
            return Err(format!("a key is {} hexadecimal digits", 2 * KEY_BYTES));
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("a key is {} hexadecimal digits", 2 * KEY_BYTES))?;
        }
        Ok(TerminalKey::from_bytes(bytes))
    }

    /// The 64 hexadecimal digits of the key, for writing it to a key file the first time.
    pub fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hmac(&self) -> HmacSha256 {
        self.prepared.clone()
    }

    /// The MAC of `signed` (every byte of a frame before its MAC).
    pub fn mac(&self, signed: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = self.hmac();
        mac.update(signed);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// True when `tag` is the MAC of `signed`; compares in constant time.
    pub fn verify(&self, signed: &[u8], tag: &[u8; MAC_BYTES]) -> bool {
        let mut mac = self.hmac();
        mac.update(signed);
        mac.verify_truncated_left(tag).is_ok()
    }

    /// The pad that hides a key carried in a `provision_terminal` request (SPEC §5.17):
    /// HMAC-SHA256 under the sending terminal's key of a context string, the sender's
    /// terminal id and trace number and the provisioned terminal's id. Unique per request,
    /// since a terminal never reuses a trace number for a different request.
    fn transport_pad(&self, sender_terminal_id: u32, stan: u32, provisioned_terminal_id: u32) -> [u8; KEY_BYTES] {
        let mut mac = self.hmac();
        mac.update(KEY_TRANSPORT_CONTEXT);
        mac.update(&sender_terminal_id.to_be_bytes());
        mac.update(&stan.to_be_bytes());
        mac.update(&provisioned_terminal_id.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// `key` as carried in a `provision_terminal` request sent by the holder of `self`.
    pub fn wrap_for_transport(
        &self,
        key: &TerminalKey,
        sender_terminal_id: u32,
        stan: u32,
        provisioned_terminal_id: u32,
    ) -> [u8; KEY_BYTES] {
        let pad = self.transport_pad(sender_terminal_id, stan, provisioned_terminal_id);
        std::array::from_fn(|i| key.bytes[i] ^ pad[i])
    }

    /// The key carried in a `provision_terminal` request, given the sender's key (`self`).
    pub fn unwrap_from_transport(
        &self,
        wrapped: &[u8; KEY_BYTES],
        sender_terminal_id: u32,
        stan: u32,
        provisioned_terminal_id: u32,
    ) -> TerminalKey {
        let pad = self.transport_pad(sender_terminal_id, stan, provisioned_terminal_id);
        TerminalKey::from_bytes(std::array::from_fn(|i| wrapped[i] ^ pad[i]))
    }
}

/// Environment variable naming the directory of the default key files.
pub const CARDSWITCH_HOME_ENV: &str = "CARDSWITCH_HOME";
/// File name of the admin credential in that directory.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// The directory of the default key files: `$CARDSWITCH_HOME`, else `$HOME/.cardswitch`.
pub fn default_key_dir() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os(CARDSWITCH_HOME_ENV).filter(|d| !d.is_empty()) {
        return Some(dir.into());
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(std::path::PathBuf::from(home).join(".cardswitch"))
}

/// A terminal id and its key, as a credential file holds them: `terminal <id>` and
/// `key <64 hex digits>` on two lines (blank lines and `#` comments allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub terminal_id: u32,
    pub key: TerminalKey,
}

impl Credential {
    pub fn to_text(&self) -> String {
        format!("terminal {}\nkey {}\n", self.terminal_id, self.key.to_hex())
    }

    pub fn parse(text: &str) -> Result<Credential, String> {
        let expected = "expected lines `terminal <id>` and `key <64 hex digits>`";
        let (mut terminal_id, mut key) = (None, None);
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            match line.split_once(char::is_whitespace) {
                Some(("terminal", id)) => {
                    terminal_id =
                        Some(id.trim().parse::<u32>().map_err(|_| "the terminal id is not a number".to_string())?)
                }
                Some(("key", hex)) => key = Some(TerminalKey::from_hex(hex)?),
                _ => return Err(expected.to_string()),
            }
        }
        match (terminal_id, key) {
            (Some(terminal_id), Some(key)) => Ok(Credential { terminal_id, key }),
            _ => Err(expected.to_string()),
        }
    }

    /// Reads a credential file.
    pub fn load(path: &std::path::Path) -> Result<Credential, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Credential::parse(&text).map_err(|problem| format!("{} is not a credential file: {problem}", path.display()))
    }

    /// The admin credential at `path`, or in the default key directory.
    pub fn load_admin(path: Option<&std::path::Path>) -> Result<Credential, String> {
        match path {
            Some(path) => Credential::load(path),
            None => {
                let dir = default_key_dir()
                    .ok_or_else(|| format!("no key directory: set {CARDSWITCH_HOME_ENV} or HOME, or name the file"))?;
                Credential::load(&dir.join(ADMIN_KEY_FILE))
            }
        }
    }

    /// A key for terminal `terminal_id` derived from this credential's key: how the load
    /// tools give each of their many terminals its own key without storing any.
    pub fn derive_terminal_key(&self, terminal_id: u32) -> TerminalKey {
        let mut mac = self.key.hmac();
        mac.update(b"cardswitch derived terminal key v1");
        mac.update(&terminal_id.to_be_bytes());
        TerminalKey::from_bytes(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> TerminalKey {
        TerminalKey::from_bytes(std::array::from_fn(|i| seed.wrapping_add(i as u8)))
    }

    /// RFC 4231 test case 2 ("Jefe"), truncated: the MAC is standard HMAC-SHA256.
    #[test]
    fn mac_is_truncated_hmac_sha256() {
        let mut jefe = [0u8; KEY_BYTES];
        jefe[..4].copy_from_slice(b"Jefe");
        // HMAC pads short keys with zeros to the block size, so a 32-byte key ending in zeros
        // is the same key as "Jefe".
        let tag = TerminalKey::from_bytes(jefe).mac(b"what do ya want for nothing?");
        let expected = [0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7];
        assert_eq!(tag, expected);
    }

    #[test]
    fn verify_accepts_only_the_right_tag_and_key() {
        let k = key(1);
        let tag = k.mac(b"frame bytes");
        assert!(k.verify(b"frame bytes", &tag));
        assert!(!k.verify(b"frame byteZ", &tag));
        assert!(!key(2).verify(b"frame bytes", &tag));
        let mut flipped = tag;
        flipped[15] ^= 1;
        assert!(!k.verify(b"frame bytes", &flipped));
        assert!(!k.verify(b"frame bytes", &ZERO_MAC));
    }

    #[test]
    fn transport_wrapping_round_trips_and_depends_on_every_input() {
        let (admin, new) = (key(10), key(200));
        let wrapped = admin.wrap_for_transport(&new, 1, 77, 1001);
        assert_ne!(&wrapped, new.expose());
        assert_eq!(admin.unwrap_from_transport(&wrapped, 1, 77, 1001), new);
        assert_ne!(admin.unwrap_from_transport(&wrapped, 1, 78, 1001), new);
        assert_ne!(admin.unwrap_from_transport(&wrapped, 2, 77, 1001), new);
        assert_ne!(admin.unwrap_from_transport(&wrapped, 1, 77, 1002), new);
        assert_ne!(key(11).unwrap_from_transport(&wrapped, 1, 77, 1001), new);
    }

    #[test]
    fn keys_parse_from_hex_and_never_print() {
        let k = key(0);
        assert_eq!(TerminalKey::from_hex(&format!(" {}\n", k.to_hex())), Ok(k.clone()));
        assert!(TerminalKey::from_hex("abc").is_err());
        assert!(TerminalKey::from_hex(&"zz".repeat(KEY_BYTES)).is_err());
        assert_eq!(format!("{k:?}"), "TerminalKey(..)");
    }

    #[test]
    fn credentials_round_trip_and_derive_distinct_keys() {
        let admin = Credential { terminal_id: 1, key: key(3) };
        assert_eq!(Credential::parse(&format!("# admin\n{}", admin.to_text())), Ok(admin.clone()));
        assert!(Credential::parse("terminal 1\n").is_err());
        assert!(Credential::parse("terminal one\nkey 00\n").is_err());
        assert_ne!(admin.derive_terminal_key(1001), admin.derive_terminal_key(1002));
        assert_eq!(admin.derive_terminal_key(1001), admin.derive_terminal_key(1001));
    }
}

/// Bytes of a sealed secret (a PIN or an operator's passcode) in a request body.
pub const SEALED_BYTES: usize = 16;
/// Longest secret a sealed field carries, in bytes (one byte of the block holds the length).
pub const MAX_SECRET_BYTES: usize = SEALED_BYTES - 1;

/// Context string of the pad that hides a sealed secret.
const SEAL_CONTEXT: &[u8] = b"cardswitch sealed secret v1";

/// What a sealed secret is, so the same request's PIN pad and passcode pad differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SecretKind {
    /// The card holder's PIN (T2).
    Pin = 1,
    /// The passcode of the operator a request names (O1, R2 overrides).
    Passcode = 2,
    /// A new PIN the holder chooses (L3, `card_admin` change_pin and unlock_pin).
    NewPin = 3,
    /// A new passcode for the operator a `set_operator` request names.
    NewPasscode = 4,
    /// The passcode of the operator carrying out an administrative request (O1); a kind of
    /// its own, so it never shares a pad with an approver's passcode in the same request.
    OperatorPasscode = 5,
}

/// A secret as it travels (SPEC §3.2): never in clear. The block `length ‖ secret ‖ zero
/// padding` XORed with a pad that is HMAC-SHA256, under the sending terminal's key, of a
/// context string, the secret's kind, the terminal id and the trace number. All zero means
/// "no secret entered". A retransmission repeats the same bytes; a new request has a new
/// trace number and so a new pad.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sealed(pub [u8; SEALED_BYTES]);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_none() { "Sealed(none)" } else { "Sealed(..)" })
    }
}

/// Why a sealed field could not be opened: its plaintext is not a length and padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a sealed secret does not open to a length, the secret and zero padding")]
pub struct SealError;

impl Sealed {
    pub const NONE: Sealed = Sealed([0; SEALED_BYTES]);

    pub fn is_none(&self) -> bool {
        *self == Sealed::NONE
    }

    fn pad(key: &TerminalKey, kind: SecretKind, terminal_id: u32, stan: u32) -> [u8; SEALED_BYTES] {
        let mut mac = key.hmac();
        mac.update(SEAL_CONTEXT);
        mac.update(&[kind as u8]);
        mac.update(&terminal_id.to_be_bytes());
        mac.update(&stan.to_be_bytes());
        let full = mac.finalize().into_bytes();
        std::array::from_fn(|i| full[i])
    }

    /// Seals `secret` (1..=15 bytes) for the request `terminal_id`/`stan` signed with `key`.
    pub fn seal(
        key: &TerminalKey,
        kind: SecretKind,
        terminal_id: u32,
        stan: u32,
        secret: &str,
    ) -> Result<Sealed, SealError> {
        let bytes = secret.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_SECRET_BYTES {
            return Err(SealError);
        }
        let mut block = [0u8; SEALED_BYTES];
        block[0] = bytes.len() as u8;
        block[1..=bytes.len()].copy_from_slice(bytes);
        let pad = Sealed::pad(key, kind, terminal_id, stan);
        Ok(Sealed(std::array::from_fn(|i| block[i] ^ pad[i])))
    }

    /// The secret, `None` when none was entered.
    pub fn open(
        &self,
        key: &TerminalKey,
        kind: SecretKind,
        terminal_id: u32,
        stan: u32,
    ) -> Result<Option<Vec<u8>>, SealError> {
        if self.is_none() {
            return Ok(None);
        }
        let pad = Sealed::pad(key, kind, terminal_id, stan);
        let block: [u8; SEALED_BYTES] = std::array::from_fn(|i| self.0[i] ^ pad[i]);
        let len = usize::from(block[0]);
        if len == 0 || len > MAX_SECRET_BYTES || block[len + 1..].iter().any(|b| *b != 0) {
            return Err(SealError);
        }
        Ok(Some(block[1..=len].to_vec()))
    }
}

#[cfg(test)]
mod sealed_tests {
    use super::*;

    fn key() -> TerminalKey {
        TerminalKey::from_bytes(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_request_and_kind() {
        let sealed = Sealed::seal(&key(), SecretKind::Pin, 7, 42, "123456").unwrap();
        assert!(!sealed.0.windows(6).any(|w| w == b"123456"), "the secret never travels in clear");
        assert_eq!(sealed.open(&key(), SecretKind::Pin, 7, 42), Ok(Some(b"123456".to_vec())));
        // Another trace number, terminal or kind gives another pad: the block does not open.
        assert!(sealed.open(&key(), SecretKind::Pin, 7, 43) != Ok(Some(b"123456".to_vec())));
        assert!(sealed.open(&key(), SecretKind::Passcode, 7, 42) != Ok(Some(b"123456".to_vec())));
        assert_eq!(Sealed::NONE.open(&key(), SecretKind::Pin, 7, 42), Ok(None));
    }

    #[test]
    fn secrets_of_bad_length_are_refused() {
        assert_eq!(Sealed::seal(&key(), SecretKind::Pin, 1, 1, ""), Err(SealError));
        assert_eq!(Sealed::seal(&key(), SecretKind::Pin, 1, 1, "0123456789abcdef"), Err(SealError));
        assert!(Sealed::seal(&key(), SecretKind::Passcode, 1, 1, "0123456789abcde").is_ok());
    }
}

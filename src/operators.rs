//! Operators (O1): the staff who carry out administrative operations, each with a role, a store
//! (0: every store) and a passcode. The switch holds them in memory and in the `operators`
//! column family. A passcode is kept only as HMAC-SHA256 under a key derived from the master
//! key, so a copy of the data directory alone says nothing about passcodes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use engine::roles;
use hmac::{Hmac, Mac};
use protocol::{OperatorRole, ResponseCode};
use sha2::Sha256;

use crate::keys::MasterKey;
use crate::store::{Store, StoreError};

/// Shortest and longest passcode, in bytes (the longest is what a sealed field carries).
pub const MIN_PASSCODE_BYTES: usize = 6;
pub const MAX_PASSCODE_BYTES: usize = protocol::auth::MAX_SECRET_BYTES;
/// Bytes of a stored operator record: version, role, store, enabled, passcode hash.
pub const OPERATOR_RECORD_BYTES: usize = 1 + 1 + 4 + 1 + 32;
const RECORD_VERSION: u8 = 1;
/// A store id that lets an operator work at every store (head-office roles).
pub const EVERY_STORE: u32 = 0;

/// One operator as the switch keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub operator_id: u32,
    pub role: OperatorRole,
    pub store_id: u32,
    pub enabled: bool,
    passcode_hash: [u8; 32],
}

impl Operator {
    pub fn encode(&self) -> [u8; OPERATOR_RECORD_BYTES] {
        let mut out = [0u8; OPERATOR_RECORD_BYTES];
        out[0] = RECORD_VERSION;
        out[1] = self.role as u8;
        out[2..6].copy_from_slice(&self.store_id.to_be_bytes());
        out[6] = u8::from(self.enabled);
        out[7..].copy_from_slice(&self.passcode_hash);
        out
    }

    pub fn decode(operator_id: u32, bytes: &[u8]) -> Result<Operator, String> {
        if bytes.len() != OPERATOR_RECORD_BYTES || bytes[0] != RECORD_VERSION {
            return Err(format!(
                "operator {operator_id}: a record of {} bytes, format {:?}",
                bytes.len(),
                bytes.first()
            ));
        }
        let role =
            OperatorRole::from_u8(bytes[1]).ok_or_else(|| format!("operator {operator_id}: role {}", bytes[1]))?;
        Ok(Operator {
            operator_id,
            role,
            store_id: u32::from_be_bytes(bytes[2..6].try_into().expect("4 bytes")),
            enabled: bytes[6] == 1,
            passcode_hash: bytes[7..].try_into().expect("32 bytes"),
        })
    }

    /// May this operator work at `store_id`?
    pub fn serves_store(&self, store_id: u32) -> bool {
        self.store_id == EVERY_STORE || self.store_id == store_id
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("operator ids start at 1")]
    ZeroId,
    #[error("a passcode has {MIN_PASSCODE_BYTES} to {MAX_PASSCODE_BYTES} bytes, not {0}")]
    PasscodeLength(usize),
    #[error("a {0} works at one store: give --store")]
    NeedsStore(OperatorRole),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every operator, and the key of their passcode hashes.
pub struct OperatorBook {
    key: [u8; 32],
    operators: RwLock<HashMap<u32, Operator>>,
}

impl OperatorBook {
    pub fn new(master: &MasterKey, operators: impl IntoIterator<Item = Operator>) -> OperatorBook {
        let operators = operators.into_iter().map(|o| (o.operator_id, o)).collect();
        OperatorBook { key: master.operator_secret(), operators: RwLock::new(operators) }
    }

    fn hash(&self, operator_id: u32, passcode: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(&operator_id.to_be_bytes());
        mac.update(passcode);
        mac.finalize().into_bytes().into()
    }

    /// An operator record for `operator_id` with `passcode` (checked for length), or, without
    /// one, the passcode `current` has.
    pub fn make(
        &self,
        operator_id: u32,
        role: OperatorRole,
        store_id: u32,
        enabled: bool,
        passcode: Option<&[u8]>,
    ) -> Result<Operator, OperatorError> {
        if operator_id == 0 {
            return Err(OperatorError::ZeroId);
        }
        // Counter staff belong to their store (O1: "at own store").
        if store_id == EVERY_STORE && matches!(role, OperatorRole::Cashier | OperatorRole::FrontDesk) {
            return Err(OperatorError::NeedsStore(role));
        }
        let passcode_hash = match passcode {
            Some(p) if !(MIN_PASSCODE_BYTES..=MAX_PASSCODE_BYTES).contains(&p.len()) => {
                return Err(OperatorError::PasscodeLength(p.len()))
            }
            Some(p) => self.hash(operator_id, p),
            None => self.get(operator_id).map(|o| o.passcode_hash).ok_or(OperatorError::PasscodeLength(0))?,
        };
        Ok(Operator { operator_id, role, store_id, enabled, passcode_hash })
    }

    pub fn get(&self, operator_id: u32) -> Option<Operator> {
        self.operators.read().expect("never poisoned").get(&operator_id).cloned()
    }

    pub fn insert(&self, operator: Operator) {
        self.operators.write().expect("never poisoned").insert(operator.operator_id, operator);
    }

    pub fn len(&self) -> usize {
        self.operators.read().expect("never poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// O1: the operator `operator_id`, if it exists, is enabled and `passcode` is its own
    /// (`operator_refused` otherwise: the answer does not say which), and it works at
    /// `store_id` (`role_not_permitted` otherwise).
    pub fn verify(&self, operator_id: u32, passcode: Option<&[u8]>, store_id: u32) -> Result<Operator, ResponseCode> {
        let operator = self.get(operator_id).filter(|o| o.enabled).ok_or(ResponseCode::OperatorRefused)?;
        let given = self.hash(operator_id, passcode.ok_or(ResponseCode::OperatorRefused)?);
        // Constant time: the comparison says nothing about how much of the hash matched.
        let differs = given.iter().zip(operator.passcode_hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differs != 0 {
            return Err(ResponseCode::OperatorRefused);
        }
        if !operator.serves_store(store_id) {
            return Err(ResponseCode::RoleNotPermitted);
        }
        Ok(operator)
    }

    /// An approver of an override or a card return (R2, L10): a manager at this store.
    pub fn verify_approver(
        &self,
        operator_id: u32,
        passcode: Option<&[u8]>,
        store_id: u32,
    ) -> Result<u32, ResponseCode> {
        match self.verify(operator_id, passcode, store_id) {
            Ok(operator) if roles::may_approve(operator.role) => Ok(operator_id),
            _ => Err(ResponseCode::OverrideRefused),
        }
    }
}

/// Adds or replaces an operator in a stopped switch's data directory: how the first admin
/// operator is created (`cardswitch operator add`); later ones are created over the wire by an
/// admin operator (`set_operator`).
pub fn add_to_data_dir(
    data_dir: &Path,
    master: &MasterKey,
    operator_id: u32,
    role: OperatorRole,
    store_id: u32,
    passcode: &[u8],
) -> Result<(), OperatorError> {
    let store = Store::open(data_dir)?;
    let book = OperatorBook::new(master, []);
    let operator = book.make(operator_id, role, store_id, true, Some(passcode))?;
    store.put_operator(&operator)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> OperatorBook {
        OperatorBook::new(&MasterKey::from_bytes([5; 32]), [])
    }

    #[test]
    fn o1_an_operator_is_verified_by_passcode_enabled_state_and_store() {
        let book = book();
        book.insert(book.make(31, OperatorRole::Cashier, 100, true, Some(b"c4shier")).unwrap());
        assert_eq!(book.verify(31, Some(b"c4shier"), 100).map(|o| o.role), Ok(OperatorRole::Cashier));
        assert_eq!(book.verify(31, Some(b"c4shieR"), 100), Err(ResponseCode::OperatorRefused));
        assert_eq!(book.verify(31, None, 100), Err(ResponseCode::OperatorRefused));
        assert_eq!(book.verify(32, Some(b"c4shier"), 100), Err(ResponseCode::OperatorRefused));
        assert_eq!(book.verify(31, Some(b"c4shier"), 201), Err(ResponseCode::RoleNotPermitted), "own store only");
        book.insert(book.make(31, OperatorRole::Cashier, 100, false, None).unwrap());
        assert_eq!(book.verify(31, Some(b"c4shier"), 100), Err(ResponseCode::OperatorRefused), "disabled");
        // Only a manager approves.
        book.insert(book.make(7, OperatorRole::Manager, EVERY_STORE, true, Some(b"m4nager")).unwrap());
        assert_eq!(book.verify_approver(7, Some(b"m4nager"), 201), Ok(7));
        book.insert(book.make(8, OperatorRole::Finance, EVERY_STORE, true, Some(b"f1nance")).unwrap());
        assert_eq!(book.verify_approver(8, Some(b"f1nance"), 201), Err(ResponseCode::OverrideRefused));
    }

    #[test]
    fn passcodes_are_stored_as_keyed_hashes_only() {
        let book = book();
        let operator = book.make(31, OperatorRole::Cashier, 100, true, Some(b"c4shier")).unwrap();
        let record = operator.encode();
        assert!(!record.windows(7).any(|w| w == b"c4shier"));
        assert_eq!(Operator::decode(31, &record), Ok(operator.clone()));
        // Another deployment's master key gives another hash.
        let other = OperatorBook::new(&MasterKey::from_bytes([6; 32]), []);
        assert_ne!(other.make(31, OperatorRole::Cashier, 100, true, Some(b"c4shier")).unwrap(), operator);
        assert!(matches!(
            book.make(31, OperatorRole::Cashier, 100, true, Some(b"12345")),
            Err(OperatorError::PasscodeLength(5))
        ));
        assert!(matches!(
            book.make(31, OperatorRole::Cashier, 0, true, Some(b"123456")),
            Err(OperatorError::NeedsStore(_))
        ));
        assert!(Operator::decode(31, &record[1..]).is_err());
    }
}

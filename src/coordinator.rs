//! Operations spanning partitions: a member's registration (M1: one ID, one live member card)
//! and a card's replacement (L6: value moves from the old card to the new one). Each is made
//! atomic with respect to a crash by an intent and idempotent steps:
//!
//! 1. the operation gets an id and its **intent** is written durably (column family
//!    `intents`, synced) before anything changes;
//! 2. each **step** goes to the partition of the card it changes, under a trace key of its own
//!    (terminal [`COORDINATOR_TERMINAL_ID`], stan `4·id + step`), and is applied in that
//!    partition's group commit with its trace record: sent again, it gets its first answer and
//!    changes nothing more (T8);
//! 3. the end — the member index and records, and the intent's removal — is one synced write.
//!
//! At start-up, before the switch listens, every intent left by a crash is driven forward from
//! its first step: the steps already applied answer as they did, the others are applied, and
//! a replacement whose new card refuses the value gives it back to the old card. So killed
//! between any two steps, the switch recovers to the operation done or not done, never half.
//! Value is never on both cards: the old card gives it up (and closes) before the new one is
//! credited; between the two it is in the transfer-out's transaction record, which the next
//! step reads.

use std::collections::HashMap;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use protocol::{CardNo, CardReply, CardState, Header, LocalTime, MemberData, MsgType, ResponseCode};
use sha2::Sha256;

use crate::engine::member::MemberRules;
use crate::engine::roles::MemberView;
use crate::engine::{Command, Moved, Step, Trace, TraceKey};
use crate::keys::MasterKey;
use crate::partition::Partitions;
use crate::store::{Store, StoreError};

/// The terminal id the coordinator's steps are remembered under; never provisioned.
pub const COORDINATOR_TERMINAL_ID: u32 = u32::MAX;
/// Steps per operation: its stans are `4·id .. 4·id + 3`.
const STEPS_PER_OPERATION: u64 = 4;
/// Most operations (stans are u32): about a billion.
pub const MAX_OPERATIONS: u64 = u32::MAX as u64 / STEPS_PER_OPERATION;
/// Environment variable naming a point where the coordinator stops for good (it logs
/// "coordinator paused at POINT" and waits to be killed): how the crash tests kill the real
/// process exactly between two steps. Points: `register.after_intent`, `register.after_attach`,
/// `replace.after_intent`, `replace.after_out`, `replace.after_in`.
pub const PAUSE_ENV: &str = "CARDSWITCH_PAUSE_AT";

const INTENT_VERSION: u8 = 1;
const INTENT_REGISTER: u8 = 1;
const INTENT_REPLACE: u8 = 2;
const MEMBER_VERSION: u8 = 1;
const NONCE_BYTES: usize = 16;
const TAG_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("intent {0} is corrupt")]
    CorruptIntent(u64),
    #[error("the member record of card {0} does not open with this master key")]
    MemberSeal(CardNo),
    #[error("a partition stopped while operation {0} was recovered")]
    PartitionGone(u64),
    #[error("{0} operations were made: the ids are used up")]
    OutOfIds(u64),
}

/// The request that started an operation: its answer is kept under its terminal and trace
/// number, so the same request again gets it (T8), also after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub key: TraceKey,
    /// Digest of the request's content: the same trace number with other content is
    /// `trace_reused`.
    pub digest: u64,
    pub msg_type: MsgType,
}

/// An operation in flight, as its intent records it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Intent {
    origin: Origin,
    operator_id: u32,
    store_id: u32,
    op: Operation,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operation {
    Register {
        card: CardNo,
        id_key: [u8; 16],
        member: Vec<u8>,
    },
    Replace {
        old: CardNo,
        new: CardNo,
        fee_minor: i64,
        method: u8,
        /// The old card's state before the transfer out: what a transfer back restores.
        old_state: CardState,
    },
}

impl Intent {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![INTENT_VERSION];
        out.push(match self.op {
            Operation::Register { .. } => INTENT_REGISTER,
            Operation::Replace { .. } => INTENT_REPLACE,
        });
        out.extend_from_slice(&self.origin.key.terminal_id.to_be_bytes());
        out.extend_from_slice(&self.origin.key.stan.to_be_bytes());
        out.extend_from_slice(&self.origin.digest.to_be_bytes());
        out.push(self.origin.msg_type as u8);
        out.extend_from_slice(&self.operator_id.to_be_bytes());
        out.extend_from_slice(&self.store_id.to_be_bytes());
        match &self.op {
            Operation::Register { card, id_key, member } => {
                out.extend_from_slice(&card.0.to_be_bytes());
                out.extend_from_slice(id_key);
                out.extend_from_slice(member);
            }
            Operation::Replace { old, new, fee_minor, method, old_state } => {
                out.extend_from_slice(&old.0.to_be_bytes());
                out.extend_from_slice(&new.0.to_be_bytes());
                out.extend_from_slice(&fee_minor.to_be_bytes());
                out.push(*method);
                out.push(*old_state as u8);
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Intent> {
        let u64_at = |at: usize| bytes.get(at..at + 8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
        if bytes.first() != Some(&INTENT_VERSION) {
            return None;
        }
        let origin = Origin {
            key: TraceKey { terminal_id: u32_at(2)?, stan: u32_at(6)? },
            digest: u64_at(10)?,
            msg_type: MsgType::from_u8(*bytes.get(18)?)?,
        };
        let (operator_id, store_id) = (u32_at(19)?, u32_at(23)?);
        const BODY: usize = 27;
        let op = match *bytes.get(1)? {
            INTENT_REGISTER => Operation::Register {
                card: CardNo(u64_at(BODY)?),
                id_key: bytes.get(BODY + 8..BODY + 24)?.try_into().ok()?,
                member: bytes.get(BODY + 24..)?.to_vec(),
            },
            INTENT_REPLACE if bytes.len() == BODY + 26 => Operation::Replace {
                old: CardNo(u64_at(BODY)?),
                new: CardNo(u64_at(BODY + 8)?),
                fee_minor: u64_at(BODY + 16)? as i64,
                method: bytes[BODY + 24],
                old_state: CardState::from_u8(bytes[BODY + 25])?,
            },
            _ => return None,
        };
        Some(Intent { origin, operator_id, store_id, op })
    }
}

/// Serialises the operations spanning partitions and keeps the member index (M1).
pub struct Coordinator {
    store: Arc<Store>,
    key: [u8; 32],
    /// Everything the lock guards: the index and the next operation id.
    state: tokio::sync::Mutex<State>,
    pause_at: Option<String>,
}

struct State {
    /// Keyed hash of an ID (type and number) → the card registered to it.
    index: HashMap<[u8; 16], CardNo>,
    last_op: u64,
}

impl Coordinator {
    pub fn open(store: Arc<Store>, master: &MasterKey) -> Result<Coordinator, CoordinatorError> {
        let index = store.member_ids()?.into_iter().collect();
        let last_op = store.last_operation()?;
        Ok(Coordinator {
            store,
            key: master.member_secret(),
            state: tokio::sync::Mutex::new(State { index, last_op }),
            pause_at: std::env::var(PAUSE_ENV).ok().filter(|p| !p.is_empty()),
        })
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The index key of a member's ID: a keyed hash, so the index names no ID number.
    pub fn id_key(&self, member: &MemberData) -> [u8; 16] {
        let full = self.mac(&[b"id", member.id_key_text().as_bytes()]);
        full[..16].try_into().expect("16 of 32 bytes")
    }

    /// A member record sealed for storage (M3: no ID number or phone in clear on disk):
    /// version, random nonce, the encoded member XORed with an HMAC-SHA256 key stream, and a
    /// tag over nonce and ciphertext.
    fn seal_member(&self, member: &MemberData) -> Result<Vec<u8>, CoordinatorError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Injected(format!("no random bytes: {e}")))?;
        let mut body = encode_member(member);
        self.apply_stream(&nonce, &mut body);
        let tag = self.mac(&[b"tag", &nonce, &body]);
        let mut out = vec![MEMBER_VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag[..TAG_BYTES]);
        Ok(out)
    }

    fn open_member(&self, card: CardNo, sealed: &[u8]) -> Result<MemberData, CoordinatorError> {
        let bad = || CoordinatorError::MemberSeal(card);
        if sealed.len() < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] != MEMBER_VERSION {
            return Err(bad());
        }
        let nonce: [u8; NONCE_BYTES] = sealed[1..1 + NONCE_BYTES].try_into().expect("nonce");
        let (body, tag) = sealed[1 + NONCE_BYTES..].split_at(sealed.len() - 1 - NONCE_BYTES - TAG_BYTES);
        let expected = self.mac(&[b"tag", &nonce, body]);
        if expected[..TAG_BYTES] != *tag {
            return Err(bad());
        }
        let mut body = body.to_vec();
        self.apply_stream(&nonce, &mut body);
        decode_member(&body).ok_or_else(bad)
    }

    fn apply_stream(&self, nonce: &[u8; NONCE_BYTES], bytes: &mut [u8]) {
        for (block, chunk) in bytes.chunks_mut(32).enumerate() {
            let pad = self.mac(&[b"stream", nonce, &(block as u32).to_be_bytes()]);
            chunk.iter_mut().zip(pad).for_each(|(b, p)| *b ^= p);
        }
    }

    /// The registered holder of `card`, if any.
    pub fn member(&self, card: CardNo) -> Result<Option<MemberData>, CoordinatorError> {
        self.store.member(card)?.map(|sealed| self.open_member(card, &sealed)).transpose()
    }

    async fn pause(&self, point: &str) {
        if self.pause_at.as_deref() == Some(point) {
            eprintln!("coordinator paused at {point}");
            tracing::warn!(point, "coordinator paused ({PAUSE_ENV})");
            std::future::pending::<()>().await;
        }
    }

    fn next_op(state: &mut State) -> Result<u64, CoordinatorError> {
        if state.last_op >= MAX_OPERATIONS {
            return Err(CoordinatorError::OutOfIds(state.last_op));
        }
        state.last_op += 1;
        Ok(state.last_op)
    }

    /// M1: registers `member` as the holder of `card` for `operator_id` (customer service,
    /// checked by the caller). The data was checked whole (M2) by the caller.
    pub async fn register(
        &self,
        partitions: &Partitions,
        origin: Origin,
        card: CardNo,
        member: &MemberData,
        operator_id: u32,
        store_id: u32,
    ) -> Result<CardReply, CoordinatorError> {
        let id_key = self.id_key(member);
        let mut state = self.state.lock().await;
        if let Some(answer) = self.answered(origin)? {
            return Ok(answer);
        }
        if let Some(held) = state.index.get(&id_key).copied() {
            // The same registration again (a retransmission): the same answer.
            if held == card && self.member(card)?.as_ref() == Some(member) {
                return Ok(read_card(partitions, card).await);
            }
            // M1: one live member card per ID; a closed one no longer counts.
            let live = read_card(partitions, held).await;
            if live.state != CardState::Closed && live.code != ResponseCode::UnknownCard {
                return Ok(CardReply::code_only(ResponseCode::IdAlreadyRegistered));
            }
        }
        let op = Self::next_op(&mut state)?;
        let register = Operation::Register { card, id_key, member: self.seal_member(member)? };
        let intent = Intent { origin, operator_id, store_id, op: register };
        self.put_intent(op, &intent).await?;
        self.pause("register.after_intent").await;
        self.drive(partitions, &mut state, op, intent).await
    }

    /// L6: replaces `old` by `new` for its registered holder, charging the product's
    /// replacement fee by `method`.
    #[allow(clippy::too_many_arguments)]
    pub async fn replace(
        &self,
        partitions: &Partitions,
        origin: Origin,
        old: CardNo,
        new: CardNo,
        fee_minor: i64,
        method: u8,
        operator_id: u32,
        store_id: u32,
    ) -> Result<CardReply, CoordinatorError> {
        let mut state = self.state.lock().await;
        if let Some(answer) = self.answered(origin)? {
            return Ok(answer);
        }
        let current = read_card(partitions, old).await;
        if !current.code.is_approved() {
            return Ok(current);
        }
        if self.store.member(old)?.is_none() {
            return Ok(CardReply { state: current.state, ..CardReply::code_only(ResponseCode::ReplacementRefused) });
        }
        let op = Self::next_op(&mut state)?;
        let replace = Operation::Replace { old, new, fee_minor, method, old_state: current.state };
        let intent = Intent { origin, operator_id, store_id, op: replace };
        self.put_intent(op, &intent).await?;
        self.pause("replace.after_intent").await;
        self.drive(partitions, &mut state, op, intent).await
    }

    /// T8: the answer of a finished operation started by the same request, if there is one.
    fn answered(&self, origin: Origin) -> Result<Option<CardReply>, CoordinatorError> {
        Ok(match self.store.op_reply(origin.key)? {
            Some(Trace::Answered { digest, reply, .. }) if digest == origin.digest => Some(reply),
            Some(_) => Some(CardReply::code_only(ResponseCode::TraceReused)),
            None => None,
        })
    }

    async fn put_intent(&self, op: u64, intent: &Intent) -> Result<(), CoordinatorError> {
        let (store, bytes) = (self.store.clone(), intent.encode());
        tokio::task::spawn_blocking(move || store.put_intent(op, &bytes)).await.expect("no panic")?;
        Ok(())
    }

    /// Drives every operation a crash left unfinished to its end (start-up, before the
    /// switch listens). Returns how many there were.
    pub async fn recover(&self, partitions: &Partitions) -> Result<usize, CoordinatorError> {
        let mut state = self.state.lock().await;
        let intents = self.store.intents()?;
        for (op, bytes) in &intents {
            let intent = Intent::decode(bytes).ok_or(CoordinatorError::CorruptIntent(*op))?;
            let reply = self.drive(partitions, &mut state, *op, intent).await?;
            tracing::info!(op, code = %reply.code, "unfinished operation driven to its end");
        }
        Ok(intents.len())
    }

    /// Runs operation `op`'s steps from the first; those already applied answer as before.
    async fn drive(
        &self,
        partitions: &Partitions,
        state: &mut State,
        op: u64,
        intent: Intent,
    ) -> Result<CardReply, CoordinatorError> {
        let step =
            |n: u64| TraceKey { terminal_id: COORDINATOR_TERMINAL_ID, stan: (op * STEPS_PER_OPERATION + n) as u32 };
        let gone = || CoordinatorError::PartitionGone(op);
        let Intent { origin, operator_id, store_id, op: operation } = intent;
        let answer = |card, reply| {
            (origin.key, Trace::Answered { digest: origin.digest, msg_type: origin.msg_type, card, reply })
        };
        match operation {
            Operation::Register { card, id_key, member } => {
                let data = self.open_member(card, &member)?;
                let attach = Step::AttachMember { birthday_mmdd: data.birthday_mmdd() };
                let cmd = step_command(step(0), operator_id, store_id);
                let reply = partitions.step(step(0), card, cmd, attach).await.ok_or_else(gone)?;
                if reply.code == ResponseCode::SystemError {
                    // The partition stopped: the intent stays for the next start.
                    return Ok(reply);
                }
                self.pause("register.after_attach").await;
                let approved = reply.code.is_approved();
                let sealed = approved.then_some((card, member));
                self.finish(op, answer(card, reply), approved.then_some((id_key, card)), sealed).await?;
                if approved {
                    state.index.insert(id_key, card);
                }
                Ok(reply)
            }
            Operation::Replace { old, new, fee_minor, method, old_state } => {
                let cmd = |n| step_command(step(n), operator_id, store_id);
                let out =
                    partitions.step(step(0), old, cmd(0), Step::TransferOut { to: new }).await.ok_or_else(gone)?;
                if out.code == ResponseCode::SystemError {
                    return Ok(out);
                }
                if !out.code.is_approved() {
                    self.finish(op, answer(old, out), None, None).await?;
                    return Ok(out);
                }
                self.pause("replace.after_out").await;
                let (Some(old_card), Some(transfer)) = partitions
                    .read(old, out.txn_id)
                    .await
                    .ok_or(CoordinatorError::PartitionGone(op))?
                    .map_err(|()| StoreError::Injected("reading the transfer failed".into()))?
                else {
                    return Err(CoordinatorError::CorruptIntent(op));
                };
                let moved = Moved {
                    transfer_txn_id: out.txn_id,
                    cash_minor: -transfer.cash_delta_minor,
                    bonus_minor: -transfer.bonus_delta_minor,
                    points: -transfer.points_delta,
                    spend_minor: -transfer.spend_delta_minor,
                    old: old_card,
                };
                let transfer_in = Step::TransferIn { from: old, moved, fee_minor, method };
                let reply = partitions.step(step(1), new, cmd(1), transfer_in).await.ok_or_else(gone)?;
                if reply.code == ResponseCode::SystemError {
                    return Ok(reply);
                }
                self.pause("replace.after_in").await;
                if !reply.code.is_approved() {
                    // The new card refused: the old card gets its value and state back.
                    let back = Step::TransferBack { transfer_txn_id: out.txn_id, state: old_state };
                    let given_back = partitions.step(step(2), old, cmd(2), back).await.ok_or_else(gone)?;
                    if given_back.code == ResponseCode::SystemError {
                        return Ok(given_back);
                    }
                    self.finish(op, answer(new, reply), None, None).await?;
                    return Ok(reply);
                }
                // The holder's registration moves to the new card.
                let member = self.member(old)?;
                let id_key = member.as_ref().map(|m| self.id_key(m));
                let sealed = member.as_ref().map(|m| self.seal_member(m)).transpose()?;
                self.finish(op, answer(new, reply), id_key.map(|k| (k, new)), sealed.map(|s| (new, s))).await?;
                if let Some(id_key) = id_key {
                    state.index.insert(id_key, new);
                }
                Ok(reply)
            }
        }
    }

    async fn finish(
        &self,
        op: u64,
        answer: (TraceKey, Trace),
        member_id: Option<([u8; 16], CardNo)>,
        member: Option<(CardNo, Vec<u8>)>,
    ) -> Result<(), CoordinatorError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let member = member.as_ref().map(|(card, record)| (*card, &record[..]));
            store.finish_operation(op, (answer.0, &answer.1), member_id, member)
        })
        .await
        .expect("no panic")?;
        Ok(())
    }

    /// M3: the holder of `card` as `view` may see it.
    pub fn shown_member(&self, card: CardNo, view: MemberView) -> Result<Option<MemberData>, CoordinatorError> {
        Ok(self.member(card)?.map(|m| if view == MemberView::Full { m } else { m.masked() }))
    }
}

/// The card's state and balances, as a balance inquiry gives them (`unknown_card` when its
/// partition has no record of it).
async fn read_card(partitions: &Partitions, card: CardNo) -> CardReply {
    match partitions.read(card, 0).await {
        Some(Ok((Some(found), _))) => found.reply(ResponseCode::Approved, 0, 0),
        Some(Ok((None, _))) => CardReply::code_only(ResponseCode::UnknownCard),
        _ => CardReply::code_only(ResponseCode::SystemError),
    }
}

/// The command a step is journaled as: the coordinator's terminal and the step's stan, the
/// operator and store of the request that started the operation.
fn step_command(key: TraceKey, operator_id: u32, store_id: u32) -> Command {
    let header = Header { flags: 0, terminal_id: key.terminal_id, stan: key.stan, local_time: LocalTime(0) };
    Command { operator_id, ..Command::new(header, store_id, protocol::Request::Echo) }
}

fn encode_member(member: &MemberData) -> Vec<u8> {
    let mut out = vec![member.id_type];
    out.extend_from_slice(&member.birth_date.to_be_bytes());
    for text in [&member.name, &member.id_number, &member.phone, &member.address, &member.email] {
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn decode_member(bytes: &[u8]) -> Option<MemberData> {
    let id_type = *bytes.first()?;
    let birth_date = u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?);
    let mut at = 5;
    let mut text = || {
        let len = usize::from(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
        let s = std::str::from_utf8(bytes.get(at + 2..at + 2 + len)?).ok()?.to_string();
        at += 2 + len;
        Some(s)
    };
    let member = MemberData {
        id_type,
        birth_date,
        name: text()?,
        id_number: text()?,
        phone: text()?,
        address: text()?,
        email: text()?,
    };
    (at == bytes.len()).then_some(member)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> MemberData {
        MemberData {
            id_type: 1,
            birth_date: 0,
            name: "张三".into(),
            id_number: "11010519900307101X".into(),
            phone: "13800138000".into(),
            address: "北京市西城区".into(),
            email: String::new(),
        }
    }

    #[test]
    fn m3_member_records_are_sealed_and_intents_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let coordinator = Coordinator::open(store.clone(), &MasterKey::from_bytes([3; 32])).unwrap();
        let sealed = coordinator.seal_member(&member()).unwrap();
        for clear in ["11010519900307101X", "13800138000", "101X"] {
            assert!(!sealed.windows(clear.len()).any(|w| w == clear.as_bytes()), "no {clear} in clear");
        }
        assert_eq!(coordinator.open_member(CardNo(1), &sealed).unwrap(), member());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(coordinator.open_member(CardNo(1), &tampered).is_err());
        let other = Coordinator::open(store, &MasterKey::from_bytes([4; 32])).unwrap();
        assert!(other.open_member(CardNo(1), &sealed).is_err(), "another master key");
        // The index key is the same for the same ID in any letter case, and names no digits.
        let lower = MemberData { id_number: "11010519900307101x".into(), ..member() };
        assert_eq!(coordinator.id_key(&lower), coordinator.id_key(&member()));

        let origin = Origin { key: TraceKey { terminal_id: 7, stan: 9 }, digest: 77, msg_type: MsgType::ReplaceCard };
        let intents = [
            Operation::Register { card: CardNo(62), id_key: [7; 16], member: sealed },
            Operation::Replace {
                old: CardNo(62),
                new: CardNo(63),
                fee_minor: 1_800,
                method: 1,
                old_state: CardState::Lost,
            },
        ]
        .map(|op| Intent { origin, operator_id: 41, store_id: 21, op });
        for intent in intents {
            assert_eq!(Intent::decode(&intent.encode()), Some(intent.clone()));
            assert_eq!(Intent::decode(&intent.encode()[..10]), None);
        }
    }
}

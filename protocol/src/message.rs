//! Frames, headers and the body of every message type, with their byte layouts.
//!
//! Enumerated fields (category, payment method, sale flags) stay raw `u8` here: the decoder only
//! checks structure, so a request with an out-of-range value still decodes and gets an
//! `invalid_field` reply matched to its trace number instead of closing the connection.

use bytes::{BufMut, BytesMut};

pub use crate::auth::Sealed;
use crate::auth::SEALED_BYTES;
pub use crate::types::MsgType;
use crate::types::{CardNo, CardState, LocalTime, ResponseCode};
use crate::MAX_ERROR_TEXT_BYTES;

/// Header flag bit 0: the terminal is sending this request again (T8). Advisory only: the
/// switch recognises retransmissions by terminal and trace number whether or not it is set.
pub const FLAG_RETRANSMIT: u16 = 1 << 0;
/// Flag bits this version defines; a frame with any other bit set is malformed.
pub const KNOWN_FLAGS: u16 = FLAG_RETRANSMIT;

/// The fixed header after the length prefix (its `msg_type` comes from the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    pub flags: u16,
    pub terminal_id: u32,
    /// System trace audit number: unique per terminal for each new request.
    pub stan: u32,
    pub local_time: LocalTime,
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub message: Message,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    /// `register_member`: a request with strings, kept apart so that [`Request`] stays a
    /// fixed-size `Copy` value on the hot path.
    RegisterMember(Box<RegisterMember>),
    Response(Response),
}

impl Message {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Request(r) => r.msg_type(),
            Message::RegisterMember(_) => MsgType::RegisterMember,
            Message::Response(r) => r.msg_type(),
        }
    }
}

/// What a debit or hold carries to prove it may proceed: the holder's PIN (T2) and, to lift a
/// restriction, a manager's override (R2). Both sealed (SPEC §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Verification {
    pub pin: Sealed,
    /// Operator approving an override; 0: no override.
    pub approver_id: u32,
    pub approver_passcode: Sealed,
}

impl Verification {
    pub const NONE: Verification = Verification { pin: Sealed::NONE, approver_id: 0, approver_passcode: Sealed::NONE };

    /// A PIN only.
    pub fn pin(pin: Sealed) -> Verification {
        Verification { pin, ..Verification::NONE }
    }
}

/// Who carries out an administrative operation (O1): an operator and its passcode, sealed
/// (SPEC §3.2, kind `operator_passcode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct OperatorAuth {
    pub operator_id: u32,
    pub passcode: Sealed,
}

impl OperatorAuth {
    /// Operator `operator_id` with `passcode` sealed for the request `terminal_id`/`stan`
    /// signed with `key` (SPEC §3.2, kind `operator_passcode`).
    pub fn seal(
        key: &crate::TerminalKey,
        terminal_id: u32,
        stan: u32,
        operator_id: u32,
        passcode: &str,
    ) -> Result<OperatorAuth, crate::auth::SealError> {
        let passcode = Sealed::seal(key, crate::SecretKind::OperatorPasscode, terminal_id, stan, passcode)?;
        Ok(OperatorAuth { operator_id, passcode })
    }
}

/// Longest strings of a member's registration, in bytes of UTF-8 (SPEC §5.21).
pub const MAX_MEMBER_NAME_BYTES: usize = 64;
pub const MAX_MEMBER_ID_NUMBER_BYTES: usize = 20;
pub const MAX_MEMBER_PHONE_BYTES: usize = 20;
pub const MAX_MEMBER_ADDRESS_BYTES: usize = 128;
pub const MAX_MEMBER_EMAIL_BYTES: usize = 64;

/// A member's registration data (M1) as it travels: in a `register_member` request, and in
/// the replies that show a member (masked outside customer service, M3). Its `Debug` shows
/// which fields are filled in, never what they say, so that it stays out of logs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MemberData {
    pub id_type: u8,
    /// YYYYMMDD; 0 none.
    pub birth_date: u32,
    pub name: String,
    pub id_number: String,
    pub phone: String,
    pub address: String,
    pub email: String,
}

impl std::fmt::Debug for MemberData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filled = |text: &str| if text.is_empty() { "none" } else { "given" };
        f.debug_struct("MemberData")
            .field("id_type", &self.id_type)
            .field("birth_date", &format_args!("{}", if self.birth_date == 0 { "none" } else { "given" }))
            .field("name", &format_args!("{}", filled(&self.name)))
            .field("id_number", &format_args!("{}", filled(&self.id_number)))
            .field("phone", &format_args!("{}", filled(&self.phone)))
            .field("address", &format_args!("{}", filled(&self.address)))
            .field("email", &format_args!("{}", filled(&self.email)))
            .finish()
    }
}

/// `register_member` (SPEC §5.21): the holder of a sold real-name card is registered (M1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterMember {
    pub operator: OperatorAuth,
    pub card: CardNo,
    pub member: MemberData,
}

/// Reply to `register_member` and `member_query`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MemberReply {
    pub code: ResponseCode,
    pub card: CardNo,
    pub state: CardState,
    /// A `member_data_invalid` decline: the field at fault (SPEC §6.12); 0 otherwise.
    pub problem: u8,
    /// The member as the operator's role may see it (empty when declined).
    pub member: MemberData,
}

/// Most postings one `card_history_reply` carries (SPEC §5.24).
pub const MAX_HISTORY_ENTRIES: usize = 100;

/// One posting of a card's history (S9): what the journal says of it, and the card's buckets
/// after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HistoryEntry {
    pub txn_id: u64,
    /// A [`crate::PostingKind`].
    pub kind: u8,
    pub business_date: u32,
    /// Switch time, ms since the Unix epoch.
    pub time_ms: i64,
    pub store_id: u32,
    pub terminal_id: u32,
    pub operator_id: u32,
    pub amount_minor: i64,
    pub cash_delta_minor: i64,
    pub bonus_delta_minor: i64,
    pub held_delta_minor: i64,
    pub points_delta: i64,
    pub cash_after_minor: i64,
    pub bonus_after_minor: i64,
    pub held_after_minor: i64,
}

/// Reply to `card_history`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HistoryReply {
    pub code: ResponseCode,
    pub card: CardNo,
    /// 1 when postings after the last one listed exist: ask again from its `txn_id`.
    pub more: u8,
    pub entries: Vec<HistoryEntry>,
}

/// The posting kinds a terminal's batch counts (S2): its card requests that post, in the
/// order of the lines of `batch_totals` and its reply (SPEC §5.27).
pub const BATCH_KINDS: [crate::PostingKind; 8] = [
    crate::PostingKind::SellCard,
    crate::PostingKind::Load,
    crate::PostingKind::Sale,
    crate::PostingKind::Hold,
    crate::PostingKind::Capture,
    crate::PostingKind::Refund,
    crate::PostingKind::Void,
    crate::PostingKind::Reversal,
];

/// A terminal's batch (S2): per kind of [`BATCH_KINDS`], how many postings and their amounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchTotals {
    pub counts: [u32; BATCH_KINDS.len()],
    pub amounts_minor: [i64; BATCH_KINDS.len()],
}

impl BatchTotals {
    /// Counts one posting of `kind` (one not in [`BATCH_KINDS`] is not counted).
    pub fn add(&mut self, kind: crate::PostingKind, amount_minor: i64) {
        if let Some(i) = BATCH_KINDS.iter().position(|k| *k == kind) {
            self.counts[i] += 1;
            self.amounts_minor[i] += amount_minor;
        }
    }
}

/// Reply to `batch_totals`: whether the terminal's figures are the switch's, and the switch's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchTotalsReply {
    pub code: ResponseCode,
    /// 1 when every line of the request equals the switch's; 0 otherwise (and when declined).
    pub in_balance: u8,
    /// The business date the figures are of; 0 when declined.
    pub business_date: u32,
    /// The switch's figures for the terminal's postings of that date; zero when declined.
    pub totals: BatchTotals,
}

/// Requests a terminal sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Opens a session for the terminal at a store; required before anything but echo.
    SignOn {
        store_id: u32,
    },
    Echo,
    /// The cashier (or front desk) who works this session's sales (SPEC §5.26): its
    /// postings are journaled with the operator, and a staff member's purchase rung up by
    /// themselves is flagged (T9). After `sign_on`; `cashier` and `front_desk` operators of
    /// the session's store.
    OperatorSignOn {
        operator: OperatorAuth,
    },
    /// The terminal's own counts and amounts of its postings of a business date (S2; SPEC
    /// §5.27), which the switch compares with its own. `business_date` 0: the session's
    /// store's current one.
    BatchTotals {
        business_date: u32,
        totals: BatchTotals,
    },
    Balance {
        card: CardNo,
    },
    /// Debit (T1) of a gross amount; the switch applies discounts (T3).
    Sale {
        card: CardNo,
        amount_minor: i64,
        category: u8,
        flags: u8,
        verification: Verification,
    },
    /// Credit paid by `method` (V6).
    Load {
        card: CardNo,
        amount_minor: i64,
        method: u8,
    },
    /// Authorization reserving value (T4).
    Hold {
        card: CardNo,
        amount_minor: i64,
        category: u8,
        verification: Verification,
    },
    /// Completion of a hold for a final amount (T4).
    Capture {
        card: CardNo,
        hold_txn_id: u64,
        amount_minor: i64,
    },
    /// Cancels a same-day sale, load or hold (T6, T4).
    Void {
        card: CardNo,
        original_txn_id: u64,
    },
    /// Returns value against an original sale or capture (T5).
    Refund {
        card: CardNo,
        original_txn_id: u64,
        amount_minor: i64,
    },
    /// Undoes this terminal's request with `original_stan` (T7).
    Reversal {
        card: CardNo,
        original_stan: u32,
        amount_minor: i64,
    },
    /// Imports the card numbers `first..=last` for a product and store (L1).
    ImportRange {
        first: CardNo,
        last: CardNo,
        product: u16,
        store_id: u32,
    },
    /// Sells an imported card, with an opening load paid by `method` (L2).
    SellCard {
        card: CardNo,
        amount_minor: i64,
        method: u8,
    },
    /// Provisions terminal `terminal_id` (new, or with a new key, store and role) with the key
    /// `wrapped_key` hides (SPEC §5.17); enabled. Admin terminals only.
    ProvisionTerminal {
        terminal_id: u32,
        store_id: u32,
        role: u8,
        wrapped_key: [u8; crate::auth::KEY_BYTES],
    },
    /// Enables (`enabled` 1) or disables (0) a provisioned terminal (SPEC §5.18). Admin
    /// terminals only.
    SetTerminalState {
        terminal_id: u32,
        enabled: u8,
    },
    /// Creates or changes operator `target_id` (O1, SPEC §5.19): role, store (0: every
    /// store), enabled, and a new passcode (none: keep the current one). `admin` operators
    /// only.
    SetOperator {
        operator: OperatorAuth,
        target_id: u32,
        role: u8,
        store_id: u32,
        enabled: u8,
        new_passcode: Sealed,
    },
    /// Enables or disables `product` in the catalog in force (SPEC §5.25), with, for
    /// `special`, its approved discount ratio and quantity (P3). `admin` operators on `admin`
    /// terminals only; the catalog's version goes up by one.
    SetProduct {
        operator: OperatorAuth,
        product: u16,
        enabled: u8,
        /// Fixed discount in basis points (`special` only; 1250 = 12.5%); 0 otherwise.
        discount_bp: u16,
        /// Most cards of the product ever sold; 0: no cap (`special` needs one to be enabled).
        approved_quantity: u32,
    },
    /// An administrative operation on one card (SPEC §5.20): `action` is an
    /// [`crate::AdminAction`], `flags` [`crate::AdminFlags`].
    CardAdmin {
        operator: OperatorAuth,
        card: CardNo,
        action: u8,
        flags: u8,
        /// Minor units (adjust: signed; load_reversal: the amount reversed), or points
        /// (redeem_points); 0 for the other actions.
        value: i64,
        /// load_reversal: the load it reverses.
        original_txn_id: u64,
        /// adjust, load_reversal: the ticket (fault ticket, correction document) number.
        ticket: u64,
        /// change_pin: the current PIN; return_card: the approving manager.
        verification: Verification,
        /// change_pin, unlock_pin: the PIN the holder chose.
        new_pin: Sealed,
    },
    /// The registered holder of `card` (SPEC §5.22): in full for customer service, masked
    /// for the other roles that may ask (M3).
    MemberQuery {
        operator: OperatorAuth,
        card: CardNo,
    },
    /// The postings of `card` after `after_txn_id` (0: from the first), oldest first, with the
    /// balances after each (S9, SPEC §5.24).
    CardHistory {
        operator: OperatorAuth,
        card: CardNo,
        after_txn_id: u64,
    },
    /// Replaces `old_card` by `new_card` for its registered holder (L6, SPEC §5.23): the old
    /// card closes and its value, points, tier and validity move to the new one; a
    /// replacement fee, if the product has one, is paid by `method`.
    ReplaceCard {
        operator: OperatorAuth,
        old_card: CardNo,
        new_card: CardNo,
        /// [`crate::AdminFlags`]: `id_checked` is required.
        flags: u8,
        method: u8,
    },
}

impl Request {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::SignOn { .. } => MsgType::SignOn,
            Request::Echo => MsgType::Echo,
            Request::OperatorSignOn { .. } => MsgType::OperatorSignOn,
            Request::Balance { .. } => MsgType::Balance,
            Request::Sale { .. } => MsgType::Sale,
            Request::Load { .. } => MsgType::Load,
            Request::Hold { .. } => MsgType::Hold,
            Request::Capture { .. } => MsgType::Capture,
            Request::Void { .. } => MsgType::Void,
            Request::Refund { .. } => MsgType::Refund,
            Request::Reversal { .. } => MsgType::Reversal,
            Request::ImportRange { .. } => MsgType::ImportRange,
            Request::SellCard { .. } => MsgType::SellCard,
            Request::ProvisionTerminal { .. } => MsgType::ProvisionTerminal,
            Request::SetTerminalState { .. } => MsgType::SetTerminalState,
            Request::SetOperator { .. } => MsgType::SetOperator,
            Request::SetProduct { .. } => MsgType::SetProduct,
            Request::CardAdmin { .. } => MsgType::CardAdmin,
            Request::MemberQuery { .. } => MsgType::MemberQuery,
            Request::ReplaceCard { .. } => MsgType::ReplaceCard,
            Request::CardHistory { .. } => MsgType::CardHistory,
            Request::BatchTotals { .. } => MsgType::BatchTotals,
        }
    }

    /// The amount the request names, if it names one (a reversal: its original's).
    pub fn amount_minor(&self) -> Option<i64> {
        match *self {
            Request::Sale { amount_minor, .. }
            | Request::Load { amount_minor, .. }
            | Request::Hold { amount_minor, .. }
            | Request::Capture { amount_minor, .. }
            | Request::Refund { amount_minor, .. }
            | Request::Reversal { amount_minor, .. }
            | Request::SellCard { amount_minor, .. } => Some(amount_minor),
            _ => None,
        }
    }

    /// The operator an administrative request names (O1).
    pub fn operator(&self) -> Option<OperatorAuth> {
        match *self {
            Request::SetOperator { operator, .. }
            | Request::OperatorSignOn { operator }
            | Request::SetProduct { operator, .. }
            | Request::CardAdmin { operator, .. }
            | Request::MemberQuery { operator, .. }
            | Request::ReplaceCard { operator, .. }
            | Request::CardHistory { operator, .. } => Some(operator),
            _ => None,
        }
    }

    /// The card the request acts on, which decides the partition that owns it.
    pub fn card(&self) -> Option<CardNo> {
        match *self {
            Request::Balance { card }
            | Request::Sale { card, .. }
            | Request::Load { card, .. }
            | Request::Hold { card, .. }
            | Request::Capture { card, .. }
            | Request::Void { card, .. }
            | Request::Refund { card, .. }
            | Request::Reversal { card, .. }
            | Request::SellCard { card, .. }
            | Request::CardAdmin { card, .. } => Some(card),
            Request::SignOn { .. }
            | Request::Echo
            | Request::OperatorSignOn { .. }
            | Request::ImportRange { .. }
            | Request::ProvisionTerminal { .. }
            | Request::SetTerminalState { .. }
            | Request::SetOperator { .. }
            | Request::SetProduct { .. }
            | Request::MemberQuery { .. }
            | Request::ReplaceCard { .. }
            | Request::CardHistory { .. }
            | Request::BatchTotals { .. } => None,
        }
    }
}

/// Reply to every request that acts on one card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CardReply {
    pub code: ResponseCode,
    pub state: CardState,
    /// Reference number of the posting (0 when nothing was posted); captures, voids and
    /// refunds name their original by it.
    pub txn_id: u64,
    /// Amount the posting moved (a capture's final amount, a refund's amount, ...).
    pub amount_minor: i64,
    /// Balances after the request.
    pub cash_minor: i64,
    pub bonus_minor: i64,
    pub held_minor: i64,
    /// A sale or capture: the amount before discounts (T3); otherwise equal to `amount_minor`.
    pub gross_minor: i64,
    /// Discount granted (T3): `gross_minor - amount_minor`.
    pub discount_minor: i64,
    /// Points this request earned (K2), negative when it took points back (T5).
    pub points_earned: i64,
    /// Points on the card after the request.
    pub points_balance: i64,
    /// The card's member tier after the request (K1): 0 none, n the catalog's n-th tier.
    pub tier: u8,
    /// Bit set of the `NOTICE_*` bits, e.g. [`CardReply::NOTICE_PIN_MUST_CHANGE`] (SPEC §6.8).
    pub notices: u8,
    /// A `wrong_pin` decline: wrong PINs left before the card locks (L4).
    pub pin_attempts_left: u8,
    /// A limit decline (`limit_exceeded`, `load_below_minimum`, `load_above_maximum`,
    /// `balance_limit_exceeded`): the limit, minor units; 0 otherwise.
    pub limit_minor: i64,
}

impl Default for ResponseCode {
    fn default() -> Self {
        ResponseCode::Approved
    }
}

impl Default for CardState {
    fn default() -> Self {
        CardState::Unknown
    }
}

impl CardReply {
    /// Notice bit: the card still has its initial PIN; the cashier asks the holder to change
    /// it (L3).
    pub const NOTICE_PIN_MUST_CHANGE: u8 = 1 << 0;
    /// Notice bit: the card was listed as dormant (L8) and will be frozen when the notice
    /// period ends unless it is used.
    pub const NOTICE_DORMANT: u8 = 1 << 1;
    /// Notice bit: a gift card spent to zero, to be returned for recycling (L9).
    pub const NOTICE_RECYCLE: u8 = 1 << 2;
    pub const KNOWN_NOTICES: u8 = Self::NOTICE_PIN_MUST_CHANGE | Self::NOTICE_DORMANT | Self::NOTICE_RECYCLE;

    /// A reply carrying only a code (declines before the card was looked at).
    pub fn code_only(code: ResponseCode) -> CardReply {
        CardReply { code, ..CardReply::default() }
    }

    /// Cash + bonus - holds: what a debit may take (T1).
    pub fn available_minor(&self) -> i64 {
        self.cash_minor + self.bonus_minor - self.held_minor
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignOnReply {
    pub code: ResponseCode,
    /// The business date the switch stamps on this terminal's postings, as YYYYMMDD.
    pub business_date: u32,
}

/// Reply to `provision_terminal` and `set_terminal_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalReply {
    pub code: ResponseCode,
    /// The terminal the request named.
    pub terminal_id: u32,
    /// 1 when the terminal is enabled after the request, 0 otherwise (also when declined).
    pub enabled: u8,
}

/// Reply to `set_product`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ProductReply {
    pub code: ResponseCode,
    pub product: u16,
    /// 1 when the product is enabled after the request.
    pub enabled: u8,
    /// The catalog version in force after the request (0 when declined).
    pub catalog_version: u32,
}

/// Reply to `set_operator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperatorReply {
    pub code: ResponseCode,
    /// The operator the request named.
    pub operator_id: u32,
    /// Its role after the request (0 when declined).
    pub role: u8,
    /// 1 when it is enabled after the request, 0 otherwise (also when declined).
    pub enabled: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportRangeReply {
    pub code: ResponseCode,
    /// Card numbers in the range (0 when declined).
    pub card_count: u64,
}

/// Responses the switch sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    SignOn(SignOnReply),
    Echo {
        code: ResponseCode,
    },
    /// Reply to the card request of type `request` (balance, sale, load, hold, capture, void,
    /// refund, reversal, sell card).
    Card {
        request: MsgType,
        reply: CardReply,
    },
    ImportRange(ImportRangeReply),
    /// Reply to `provision_terminal` (`request` says which) or `set_terminal_state`.
    Terminal {
        request: MsgType,
        reply: TerminalReply,
    },
    Operator(OperatorReply),
    History(Box<HistoryReply>),
    Product(ProductReply),
    /// Reply to `operator_sign_on`.
    OperatorSignOn(OperatorReply),
    BatchTotals(BatchTotalsReply),
    /// Reply to `register_member` or `member_query` (`request` says which).
    Member {
        request: MsgType,
        reply: Box<MemberReply>,
    },
    /// A frame the switch could not process; the connection closes after it.
    Error {
        code: ResponseCode,
        text: String,
    },
}

impl Response {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Response::SignOn(_) => MsgType::SignOnReply,
            Response::Echo { .. } => MsgType::EchoReply,
            Response::Card { request, .. } => request.reply_type().unwrap_or(MsgType::Error),
            Response::ImportRange(_) => MsgType::ImportRangeReply,
            Response::Terminal { request, .. } => request.reply_type().unwrap_or(MsgType::Error),
            Response::Operator(_) => MsgType::SetOperatorReply,
            Response::History(_) => MsgType::CardHistoryReply,
            Response::Product(_) => MsgType::SetProductReply,
            Response::OperatorSignOn(_) => MsgType::OperatorSignOnReply,
            Response::BatchTotals(_) => MsgType::BatchTotalsReply,
            Response::Member { request, .. } => request.reply_type().unwrap_or(MsgType::Error),
            Response::Error { .. } => MsgType::Error,
        }
    }

    pub fn code(&self) -> ResponseCode {
        match self {
            Response::SignOn(r) => r.code,
            Response::Echo { code } | Response::Error { code, .. } => *code,
            Response::Card { reply, .. } => reply.code,
            Response::ImportRange(r) => r.code,
            Response::Terminal { reply, .. } => reply.code,
            Response::Operator(r) => r.code,
            Response::Member { reply, .. } => reply.code,
            Response::History(reply) => reply.code,
            Response::Product(reply) => reply.code,
            Response::OperatorSignOn(reply) => reply.code,
            Response::BatchTotals(reply) => reply.code,
        }
    }

    /// The decline reply of the right shape for `request` with `code`.
    pub fn decline(request: MsgType, code: ResponseCode) -> Response {
        match request {
            MsgType::SignOn => Response::SignOn(SignOnReply { code, business_date: 0 }),
            MsgType::Echo => Response::Echo { code },
            MsgType::ImportRange => Response::ImportRange(ImportRangeReply { code, card_count: 0 }),
            MsgType::ProvisionTerminal | MsgType::SetTerminalState => {
                Response::Terminal { request, reply: TerminalReply { code, terminal_id: 0, enabled: 0 } }
            }
            MsgType::SetOperator => Response::Operator(OperatorReply { code, operator_id: 0, role: 0, enabled: 0 }),
            MsgType::SetProduct => Response::Product(ProductReply { code, ..ProductReply::default() }),
            MsgType::OperatorSignOn => {
                Response::OperatorSignOn(OperatorReply { code, operator_id: 0, role: 0, enabled: 0 })
            }
            MsgType::BatchTotals => Response::BatchTotals(BatchTotalsReply { code, ..BatchTotalsReply::default() }),
            MsgType::CardHistory => Response::History(Box::new(HistoryReply { code, ..HistoryReply::default() })),
            MsgType::RegisterMember | MsgType::MemberQuery => {
                Response::Member { request, reply: Box::new(MemberReply { code, ..MemberReply::default() }) }
            }
            MsgType::Balance
            | MsgType::Sale
            | MsgType::Load
            | MsgType::Hold
            | MsgType::Capture
            | MsgType::Void
            | MsgType::Refund
            | MsgType::Reversal
            | MsgType::SellCard
            | MsgType::CardAdmin
            | MsgType::ReplaceCard => Response::Card { request, reply: CardReply::code_only(code) },
            _ => Response::Error { code, text: format!("{request} is not a request") },
        }
    }
}

/// Why a frame's body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("protocol version {0} is not supported (this switch speaks version {v})", v = crate::PROTOCOL_VERSION)]
    UnsupportedVersion(u8),
    #[error("message type 0x{0:02x} is unknown")]
    UnknownType(u8),
    #[error("message type {0} is a response; a terminal may only send requests")]
    NotARequest(MsgType),
    #[error("flag bits 0x{0:04x} are reserved and must be zero")]
    ReservedFlags(u16),
    #[error("body ends early: {field} needs {needed} more bytes")]
    Truncated { field: &'static str, needed: usize },
    #[error("{0} bytes after the end of the body")]
    TrailingBytes(usize),
    #[error("string {field} is {len} bytes, more than the maximum {max}")]
    StringTooLong { field: &'static str, len: usize, max: usize },
    #[error("string {field} is not valid UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("response code {0} is unknown")]
    UnknownCode(u8),
    #[error("card state {0} is unknown")]
    UnknownState(u8),
    #[error("{count} history entries, more than the maximum {max}")]
    TooManyEntries { count: usize, max: usize },
}

impl BodyError {
    /// The response code an `Error` reply carries for this problem.
    pub fn code(&self) -> ResponseCode {
        match self {
            BodyError::UnsupportedVersion(_) => ResponseCode::UnsupportedVersion,
            BodyError::UnknownType(_) | BodyError::NotARequest(_) => ResponseCode::UnknownMessageType,
            _ => ResponseCode::Malformed,
        }
    }
}

/// Reads fixed-width big-endian fields from a body, refusing to read past its end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(crate) fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BodyError> {
        if self.bytes.len() < N {
            return Err(BodyError::Truncated { field, needed: N - self.bytes.len() });
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        Ok(head.try_into().expect("split_at gave N bytes"))
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, BodyError> {
        Ok(self.take::<1>(field)?[0])
    }
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, BodyError> {
        Ok(u16::from_be_bytes(self.take(field)?))
    }
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, BodyError> {
        Ok(u32::from_be_bytes(self.take(field)?))
    }
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, BodyError> {
        Ok(u64::from_be_bytes(self.take(field)?))
    }
    fn i64(&mut self, field: &'static str) -> Result<i64, BodyError> {
        Ok(i64::from_be_bytes(self.take(field)?))
    }
    fn card(&mut self) -> Result<CardNo, BodyError> {
        Ok(CardNo(self.u64("card")?))
    }
    fn verification(&mut self) -> Result<Verification, BodyError> {
        Ok(Verification {
            pin: self.sealed("pin")?,
            approver_id: self.u32("approver_id")?,
            approver_passcode: self.sealed("approver_passcode")?,
        })
    }

    fn sealed(&mut self, field: &'static str) -> Result<Sealed, BodyError> {
        Ok(Sealed(self.take::<SEALED_BYTES>(field)?))
    }
    fn operator(&mut self) -> Result<OperatorAuth, BodyError> {
        Ok(OperatorAuth { operator_id: self.u32("operator_id")?, passcode: self.sealed("passcode")? })
    }

    /// The eight lines of a batch (SPEC §5.27): `count`, `amount_minor` each.
    fn batch_totals(&mut self) -> Result<BatchTotals, BodyError> {
        let mut totals = BatchTotals::default();
        for i in 0..BATCH_KINDS.len() {
            totals.counts[i] = self.u32("count")?;
            totals.amounts_minor[i] = self.i64("amount_minor")?;
        }
        Ok(totals)
    }

    /// Member data: `id_type`, `birth_date`, then the five strings (SPEC §5.21).
    fn member(&mut self) -> Result<MemberData, BodyError> {
        Ok(MemberData {
            id_type: self.u8("id_type")?,
            birth_date: self.u32("birth_date")?,
            name: self.string("name", MAX_MEMBER_NAME_BYTES)?,
            id_number: self.string("id_number", MAX_MEMBER_ID_NUMBER_BYTES)?,
            phone: self.string("phone", MAX_MEMBER_PHONE_BYTES)?,
            address: self.string("address", MAX_MEMBER_ADDRESS_BYTES)?,
            email: self.string("email", MAX_MEMBER_EMAIL_BYTES)?,
        })
    }

    fn code(&mut self) -> Result<ResponseCode, BodyError> {
        let raw = self.u8("code")?;
        ResponseCode::from_u8(raw).ok_or(BodyError::UnknownCode(raw))
    }
    fn string(&mut self, field: &'static str, max: usize) -> Result<String, BodyError> {
        let len = self.u16(field)? as usize;
        if len > max {
            return Err(BodyError::StringTooLong { field, len, max });
        }
        if self.bytes.len() < len {
            return Err(BodyError::Truncated { field, needed: len - self.bytes.len() });
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(head).map(str::to_owned).map_err(|_| BodyError::BadUtf8 { field })
    }
    pub(crate) fn finish(self) -> Result<(), BodyError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(BodyError::TrailingBytes(self.bytes.len()))
        }
    }
}

/// Decodes the body of a message of type `msg_type`.
pub(crate) fn decode_body(msg_type: MsgType, r: &mut Reader<'_>) -> Result<Message, BodyError> {
    use MsgType as T;
    let request = |req| Ok(Message::Request(req));
    match msg_type {
        T::SignOn => request(Request::SignOn { store_id: r.u32("store_id")? }),
        T::Echo => request(Request::Echo),
        T::Balance => request(Request::Balance { card: r.card()? }),
        T::Sale => request(Request::Sale {
            card: r.card()?,
            amount_minor: r.i64("amount_minor")?,
            category: r.u8("category")?,
            flags: r.u8("flags")?,
            verification: r.verification()?,
        }),
        T::Load => {
            request(Request::Load { card: r.card()?, amount_minor: r.i64("amount_minor")?, method: r.u8("method")? })
        }
        T::Hold => request(Request::Hold {
            card: r.card()?,
            amount_minor: r.i64("amount_minor")?,
            category: r.u8("category")?,
            verification: r.verification()?,
        }),
        T::Capture => request(Request::Capture {
            card: r.card()?,
            hold_txn_id: r.u64("hold_txn_id")?,
            amount_minor: r.i64("amount_minor")?,
        }),
        T::Void => request(Request::Void { card: r.card()?, original_txn_id: r.u64("original_txn_id")? }),
        T::Refund => request(Request::Refund {
            card: r.card()?,
            original_txn_id: r.u64("original_txn_id")?,
            amount_minor: r.i64("amount_minor")?,
        }),
        T::Reversal => request(Request::Reversal {
            card: r.card()?,
            original_stan: r.u32("original_stan")?,
            amount_minor: r.i64("amount_minor")?,
        }),
        T::ImportRange => request(Request::ImportRange {
            first: CardNo(r.u64("first")?),
            last: CardNo(r.u64("last")?),
            product: r.u16("product")?,
            store_id: r.u32("store_id")?,
        }),
        T::SellCard => request(Request::SellCard {
            card: r.card()?,
            amount_minor: r.i64("amount_minor")?,
            method: r.u8("method")?,
        }),
        T::ProvisionTerminal => request(Request::ProvisionTerminal {
            terminal_id: r.u32("terminal_id")?,
            store_id: r.u32("store_id")?,
            role: r.u8("role")?,
            wrapped_key: r.take("wrapped_key")?,
        }),
        T::SetTerminalState => {
            request(Request::SetTerminalState { terminal_id: r.u32("terminal_id")?, enabled: r.u8("enabled")? })
        }
        T::SetOperator => request(Request::SetOperator {
            operator: r.operator()?,
            target_id: r.u32("target_id")?,
            role: r.u8("role")?,
            store_id: r.u32("store_id")?,
            enabled: r.u8("enabled")?,
            new_passcode: r.sealed("new_passcode")?,
        }),
        T::CardAdmin => request(Request::CardAdmin {
            operator: r.operator()?,
            card: r.card()?,
            action: r.u8("action")?,
            flags: r.u8("flags")?,
            value: r.i64("value")?,
            original_txn_id: r.u64("original_txn_id")?,
            ticket: r.u64("ticket")?,
            verification: r.verification()?,
            new_pin: r.sealed("new_pin")?,
        }),
        T::RegisterMember => Ok(Message::RegisterMember(Box::new(RegisterMember {
            operator: r.operator()?,
            card: r.card()?,
            member: r.member()?,
        }))),
        T::MemberQuery => request(Request::MemberQuery { operator: r.operator()?, card: r.card()? }),
        T::SetProduct => request(Request::SetProduct {
            operator: r.operator()?,
            product: r.u16("product")?,
            enabled: r.u8("enabled")?,
            discount_bp: r.u16("discount_bp")?,
            approved_quantity: r.u32("approved_quantity")?,
        }),
        T::OperatorSignOn => request(Request::OperatorSignOn { operator: r.operator()? }),
        T::BatchTotals => {
            let business_date = r.u32("business_date")?;
            request(Request::BatchTotals { business_date, totals: r.batch_totals()? })
        }
        T::BatchTotalsReply => {
            let (code, in_balance, business_date) = (r.code()?, r.u8("in_balance")?, r.u32("business_date")?);
            let totals = r.batch_totals()?;
            Ok(Message::Response(Response::BatchTotals(BatchTotalsReply { code, in_balance, business_date, totals })))
        }
        T::OperatorSignOnReply => Ok(Message::Response(Response::OperatorSignOn(OperatorReply {
            code: r.code()?,
            operator_id: r.u32("operator_id")?,
            role: r.u8("role")?,
            enabled: r.u8("enabled")?,
        }))),
        T::SetProductReply => Ok(Message::Response(Response::Product(ProductReply {
            code: r.code()?,
            product: r.u16("product")?,
            enabled: r.u8("enabled")?,
            catalog_version: r.u32("catalog_version")?,
        }))),
        T::CardHistory => request(Request::CardHistory {
            operator: r.operator()?,
            card: r.card()?,
            after_txn_id: r.u64("after_txn_id")?,
        }),
        T::CardHistoryReply => {
            let (code, card, more) = (r.code()?, r.card()?, r.u8("more")?);
            let count = usize::from(r.u8("count")?);
            if count > MAX_HISTORY_ENTRIES {
                return Err(BodyError::TooManyEntries { count, max: MAX_HISTORY_ENTRIES });
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(HistoryEntry {
                    txn_id: r.u64("txn_id")?,
                    kind: r.u8("kind")?,
                    business_date: r.u32("business_date")?,
                    time_ms: r.i64("time_ms")?,
                    store_id: r.u32("store_id")?,
                    terminal_id: r.u32("terminal_id")?,
                    operator_id: r.u32("operator_id")?,
                    amount_minor: r.i64("amount_minor")?,
                    cash_delta_minor: r.i64("cash_delta_minor")?,
                    bonus_delta_minor: r.i64("bonus_delta_minor")?,
                    held_delta_minor: r.i64("held_delta_minor")?,
                    points_delta: r.i64("points_delta")?,
                    cash_after_minor: r.i64("cash_after_minor")?,
                    bonus_after_minor: r.i64("bonus_after_minor")?,
                    held_after_minor: r.i64("held_after_minor")?,
                });
            }
            Ok(Message::Response(Response::History(Box::new(HistoryReply { code, card, more, entries }))))
        }
        T::ReplaceCard => request(Request::ReplaceCard {
            operator: r.operator()?,
            old_card: CardNo(r.u64("old_card")?),
            new_card: CardNo(r.u64("new_card")?),
            flags: r.u8("flags")?,
            method: r.u8("method")?,
        }),
        T::RegisterMemberReply | T::MemberQueryReply => {
            let code = r.code()?;
            let card = r.card()?;
            let raw_state = r.u8("state")?;
            let state = CardState::from_u8(raw_state).ok_or(BodyError::UnknownState(raw_state))?;
            let problem = r.u8("problem")?;
            let member = r.member()?;
            let request = MsgType::from_u8(msg_type as u8 & !MsgType::RESPONSE_BIT)
                .expect("every member reply type has a request type");
            Ok(Message::Response(Response::Member {
                request,
                reply: Box::new(MemberReply { code, card, state, problem, member }),
            }))
        }
        T::SetOperatorReply => Ok(Message::Response(Response::Operator(OperatorReply {
            code: r.code()?,
            operator_id: r.u32("operator_id")?,
            role: r.u8("role")?,
            enabled: r.u8("enabled")?,
        }))),
        T::SignOnReply => Ok(Message::Response(Response::SignOn(SignOnReply {
            code: r.code()?,
            business_date: r.u32("business_date")?,
        }))),
        T::EchoReply => Ok(Message::Response(Response::Echo { code: r.code()? })),
        T::ImportRangeReply => Ok(Message::Response(Response::ImportRange(ImportRangeReply {
            code: r.code()?,
            card_count: r.u64("card_count")?,
        }))),
        T::ProvisionTerminalReply | T::SetTerminalStateReply => {
            let reply =
                TerminalReply { code: r.code()?, terminal_id: r.u32("terminal_id")?, enabled: r.u8("enabled")? };
            let request = MsgType::from_u8(msg_type as u8 & !MsgType::RESPONSE_BIT)
                .expect("every terminal reply type has a request type");
            Ok(Message::Response(Response::Terminal { request, reply }))
        }
        T::Error => {
            Ok(Message::Response(Response::Error { code: r.code()?, text: r.string("text", MAX_ERROR_TEXT_BYTES)? }))
        }
        T::BalanceReply
        | T::SaleReply
        | T::LoadReply
        | T::HoldReply
        | T::CaptureReply
        | T::VoidReply
        | T::RefundReply
        | T::ReversalReply
        | T::SellCardReply
        | T::CardAdminReply
        | T::ReplaceCardReply => {
            let code = r.code()?;
            let raw_state = r.u8("state")?;
            let state = CardState::from_u8(raw_state).ok_or(BodyError::UnknownState(raw_state))?;
            let reply = CardReply {
                code,
                state,
                txn_id: r.u64("txn_id")?,
                amount_minor: r.i64("amount_minor")?,
                cash_minor: r.i64("cash_minor")?,
                bonus_minor: r.i64("bonus_minor")?,
                held_minor: r.i64("held_minor")?,
                gross_minor: r.i64("gross_minor")?,
                discount_minor: r.i64("discount_minor")?,
                points_earned: r.i64("points_earned")?,
                points_balance: r.i64("points_balance")?,
                tier: r.u8("tier")?,
                notices: r.u8("notices")?,
                pin_attempts_left: r.u8("pin_attempts_left")?,
                limit_minor: r.i64("limit_minor")?,
            };
            let request = MsgType::from_u8(msg_type as u8 & !MsgType::RESPONSE_BIT)
                .expect("every card reply type has a request type");
            Ok(Message::Response(Response::Card { request, reply }))
        }
    }
}

fn put_verification(out: &mut BytesMut, verification: &Verification) {
    out.put_slice(&verification.pin.0);
    out.put_u32(verification.approver_id);
    out.put_slice(&verification.approver_passcode.0);
}

fn put_operator(out: &mut BytesMut, operator: &OperatorAuth) {
    out.put_u32(operator.operator_id);
    out.put_slice(&operator.passcode.0);
}

fn put_batch_totals(out: &mut BytesMut, totals: &BatchTotals) {
    for (count, amount_minor) in totals.counts.iter().zip(&totals.amounts_minor) {
        out.put_u32(*count);
        out.put_i64(*amount_minor);
    }
}

/// A string as a `u16` count and its bytes, cut to `max` bytes at a character boundary so the
/// frame stays decodable.
fn put_string(out: &mut BytesMut, text: &str, max: usize) {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&text.as_bytes()[..end]);
}

fn put_member(out: &mut BytesMut, member: &MemberData) {
    out.put_u8(member.id_type);
    out.put_u32(member.birth_date);
    put_string(out, &member.name, MAX_MEMBER_NAME_BYTES);
    put_string(out, &member.id_number, MAX_MEMBER_ID_NUMBER_BYTES);
    put_string(out, &member.phone, MAX_MEMBER_PHONE_BYTES);
    put_string(out, &member.address, MAX_MEMBER_ADDRESS_BYTES);
    put_string(out, &member.email, MAX_MEMBER_EMAIL_BYTES);
}

/// Appends the body of `message` to `out`.
pub(crate) fn encode_body(message: &Message, out: &mut BytesMut) {
    match message {
        Message::RegisterMember(register) => {
            put_operator(out, &register.operator);
            out.put_u64(register.card.0);
            put_member(out, &register.member);
        }
        Message::Request(req) => match *req {
            Request::SignOn { store_id } => out.put_u32(store_id),
            Request::Echo => {}
            Request::Balance { card } => out.put_u64(card.0),
            Request::Sale { card, amount_minor, category, flags, verification } => {
                out.put_u64(card.0);
                out.put_i64(amount_minor);
                out.put_u8(category);
                out.put_u8(flags);
                put_verification(out, &verification);
            }
            Request::Load { card, amount_minor, method } | Request::SellCard { card, amount_minor, method } => {
                out.put_u64(card.0);
                out.put_i64(amount_minor);
                out.put_u8(method);
            }
            Request::Hold { card, amount_minor, category, verification } => {
                out.put_u64(card.0);
                out.put_i64(amount_minor);
                out.put_u8(category);
                put_verification(out, &verification);
            }
            Request::Capture { card, hold_txn_id: txn_id, amount_minor }
            | Request::Refund { card, original_txn_id: txn_id, amount_minor } => {
                out.put_u64(card.0);
                out.put_u64(txn_id);
                out.put_i64(amount_minor);
            }
            Request::Void { card, original_txn_id } => {
                out.put_u64(card.0);
                out.put_u64(original_txn_id);
            }
            Request::Reversal { card, original_stan, amount_minor } => {
                out.put_u64(card.0);
                out.put_u32(original_stan);
                out.put_i64(amount_minor);
            }
            Request::ImportRange { first, last, product, store_id } => {
                out.put_u64(first.0);
                out.put_u64(last.0);
                out.put_u16(product);
                out.put_u32(store_id);
            }
            Request::ProvisionTerminal { terminal_id, store_id, role, wrapped_key } => {
                out.put_u32(terminal_id);
                out.put_u32(store_id);
                out.put_u8(role);
                out.put_slice(&wrapped_key);
            }
            Request::SetTerminalState { terminal_id, enabled } => {
                out.put_u32(terminal_id);
                out.put_u8(enabled);
            }
            Request::SetOperator { operator, target_id, role, store_id, enabled, new_passcode } => {
                put_operator(out, &operator);
                out.put_u32(target_id);
                out.put_u8(role);
                out.put_u32(store_id);
                out.put_u8(enabled);
                out.put_slice(&new_passcode.0);
            }
            Request::CardAdmin {
                operator,
                card,
                action,
                flags,
                value,
                original_txn_id,
                ticket,
                verification,
                new_pin,
            } => {
                put_operator(out, &operator);
                out.put_u64(card.0);
                out.put_u8(action);
                out.put_u8(flags);
                out.put_i64(value);
                out.put_u64(original_txn_id);
                out.put_u64(ticket);
                put_verification(out, &verification);
                out.put_slice(&new_pin.0);
            }
            Request::MemberQuery { operator, card } => {
                put_operator(out, &operator);
                out.put_u64(card.0);
            }
            Request::OperatorSignOn { operator } => put_operator(out, &operator),
            Request::BatchTotals { business_date, totals } => {
                out.put_u32(business_date);
                put_batch_totals(out, &totals);
            }
            Request::SetProduct { operator, product, enabled, discount_bp, approved_quantity } => {
                put_operator(out, &operator);
                out.put_u16(product);
                out.put_u8(enabled);
                out.put_u16(discount_bp);
                out.put_u32(approved_quantity);
            }
            Request::CardHistory { operator, card, after_txn_id } => {
                put_operator(out, &operator);
                out.put_u64(card.0);
                out.put_u64(after_txn_id);
            }
            Request::ReplaceCard { operator, old_card, new_card, flags, method } => {
                put_operator(out, &operator);
                out.put_u64(old_card.0);
                out.put_u64(new_card.0);
                out.put_u8(flags);
                out.put_u8(method);
            }
        },
        Message::Response(resp) => match resp {
            Response::SignOn(r) => {
                out.put_u8(r.code as u8);
                out.put_u32(r.business_date);
            }
            Response::Echo { code } => out.put_u8(*code as u8),
            Response::Card { reply, .. } => {
                out.put_u8(reply.code as u8);
                out.put_u8(reply.state as u8);
                out.put_u64(reply.txn_id);
                out.put_i64(reply.amount_minor);
                out.put_i64(reply.cash_minor);
                out.put_i64(reply.bonus_minor);
                out.put_i64(reply.held_minor);
                out.put_i64(reply.gross_minor);
                out.put_i64(reply.discount_minor);
                out.put_i64(reply.points_earned);
                out.put_i64(reply.points_balance);
                out.put_u8(reply.tier);
                out.put_u8(reply.notices);
                out.put_u8(reply.pin_attempts_left);
                out.put_i64(reply.limit_minor);
            }
            Response::ImportRange(r) => {
                out.put_u8(r.code as u8);
                out.put_u64(r.card_count);
            }
            Response::Terminal { reply, .. } => {
                out.put_u8(reply.code as u8);
                out.put_u32(reply.terminal_id);
                out.put_u8(reply.enabled);
            }
            Response::Operator(reply) | Response::OperatorSignOn(reply) => {
                out.put_u8(reply.code as u8);
                out.put_u32(reply.operator_id);
                out.put_u8(reply.role);
                out.put_u8(reply.enabled);
            }
            Response::BatchTotals(reply) => {
                out.put_u8(reply.code as u8);
                out.put_u8(reply.in_balance);
                out.put_u32(reply.business_date);
                put_batch_totals(out, &reply.totals);
            }
            Response::Product(reply) => {
                out.put_u8(reply.code as u8);
                out.put_u16(reply.product);
                out.put_u8(reply.enabled);
                out.put_u32(reply.catalog_version);
            }
            Response::History(reply) => {
                out.put_u8(reply.code as u8);
                out.put_u64(reply.card.0);
                out.put_u8(reply.more);
                let entries = &reply.entries[..reply.entries.len().min(MAX_HISTORY_ENTRIES)];
                out.put_u8(entries.len() as u8);
                for e in entries {
                    out.put_u64(e.txn_id);
                    out.put_u8(e.kind);
                    out.put_u32(e.business_date);
                    out.put_i64(e.time_ms);
                    out.put_u32(e.store_id);
                    out.put_u32(e.terminal_id);
                    out.put_u32(e.operator_id);
                    out.put_i64(e.amount_minor);
                    out.put_i64(e.cash_delta_minor);
                    out.put_i64(e.bonus_delta_minor);
                    out.put_i64(e.held_delta_minor);
                    out.put_i64(e.points_delta);
                    out.put_i64(e.cash_after_minor);
                    out.put_i64(e.bonus_after_minor);
                    out.put_i64(e.held_after_minor);
                }
            }
            Response::Member { reply, .. } => {
                out.put_u8(reply.code as u8);
                out.put_u64(reply.card.0);
                out.put_u8(reply.state as u8);
                out.put_u8(reply.problem);
                put_member(out, &reply.member);
            }
            Response::Error { code, text } => {
                out.put_u8(*code as u8);
                put_string(out, text, MAX_ERROR_TEXT_BYTES);
            }
        },
    }
}

//! The engine's data: cards, ranges, transactions, trace records and journal entries.
//!
//! The model covers the card rules as a whole (cash and bonus buckets, holds, states, business
//! dates, operators) even where a rule is not enforced yet, so later rules add behaviour, not
//! new storage formats.

use protocol::{CardNo, CardReply, CardState, MsgType, Request};

/// Business date as YYYYMMDD (S1).
pub type BusinessDate = u32;

/// Products of the catalog (P1–P8). Codes are what `ImportRange` carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Product {
    Member = 1,
    Gift = 2,
    Special = 3,
    Cash = 4,
    Comp = 5,
    Offset = 6,
    Room = 7,
    VipStored = 8,
}

impl Product {
    pub const ALL: [Product; 8] = [
        Product::Member,
        Product::Gift,
        Product::Special,
        Product::Cash,
        Product::Comp,
        Product::Offset,
        Product::Room,
        Product::VipStored,
    ];

    pub fn from_code(code: u16) -> Option<Product> {
        Product::ALL.iter().copied().find(|p| *p as u16 == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Product::Member => "member",
            Product::Gift => "gift",
            Product::Special => "special",
            Product::Cash => "cash",
            Product::Comp => "comp",
            Product::Offset => "offset",
            Product::Room => "room",
            Product::VipStored => "vip_stored",
        }
    }
}

/// An imported range of card numbers (L1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardRange {
    pub first: CardNo,
    pub last: CardNo,
    pub product: u16,
    pub store_id: u32,
    /// Who imported it, so a retransmitted import gets its original answer (T8).
    pub terminal_id: u32,
    pub stan: u32,
}

impl CardRange {
    pub fn contains(&self, card: CardNo) -> bool {
        self.first <= card && card <= self.last && card.digits() == self.first.digits()
    }

    pub fn card_count(&self) -> u64 {
        self.last.0 - self.first.0 + 1
    }

    pub fn overlaps(&self, other: &CardRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Every sold card of a partition. foldhash: several times cheaper than SipHash for a u64
/// key, and seeded per process, so card numbers cannot be chosen to collide in advance.
pub type CardMap = std::collections::HashMap<CardNo, Card, foldhash::fast::RandomState>;

/// A sold card. Cards in an imported range without a record are `stock`: importing ten million
/// numbers costs one range record, not ten million card records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Card {
    pub state: CardState,
    pub product: u16,
    /// The store the card's range was assigned to (L1).
    pub store_id: u32,
    /// Paid-for value, minor units.
    pub cash_minor: i64,
    /// Promotional value, minor units (V3); spent first by default (T1).
    pub bonus_minor: i64,
    /// Value reserved by open holds (T4); part of cash + bonus, not spendable.
    pub held_minor: i64,
    /// Business date of the first load: validity counts from it (L7); 0 before any load.
    pub first_load_date: BusinessDate,
    /// Business date of the last posting: dormancy counts from it (L8).
    pub last_activity_date: BusinessDate,
    /// Last day the card expires on (L7): set at the first load, never extended; 0: no expiry.
    pub expiry_date: BusinessDate,
    /// Business date of the last debit: points lapse a year after it (K5).
    pub last_spend_date: BusinessDate,
    /// Keyed hash of the PIN ([`crate::PinKey`]); 0 before a PIN is set. Never the PIN.
    pub pin_hash: u32,
    /// Wrong PINs in a row (L4); reset by a right one.
    pub pin_failures: u8,
    /// Bit set of [`CardFlags`].
    pub flags: u8,
    /// The holder's birthday as MMDD for the birthday discount (K3); 0 unknown.
    pub birthday_mmdd: u16,
    /// Points earned and not yet redeemed or lapsed (K2, K4, K5).
    pub points: i64,
    /// Cumulative net spend, minor units: the member tier (K1) follows it.
    pub spend_minor: i64,
    /// When the dormancy notice was given (L8); the card freezes when the notice period
    /// has passed since. 0: no notice.
    pub notice_date: BusinessDate,
    /// A staff card's holder, as an operator id (T9); 0 none.
    pub staff_operator_id: u32,
}

/// Bits of [`Card::flags`].
pub struct CardFlags;

impl CardFlags {
    /// Still on the product's initial PIN: every reply says so until it is changed (L3).
    pub const PIN_MUST_CHANGE: u8 = 1 << 0;
    /// A staff member's card: loads earn no bonus (V4), self-use is flagged (T9).
    pub const STAFF: u8 = 1 << 1;
    /// Listed for dormancy notice (L8); cleared by the next posting.
    pub const DORMANT_NOTICE: u8 = 1 << 2;
    /// A gift card spent to zero, waiting to be returned and closed (L9).
    pub const RECYCLE: u8 = 1 << 3;
    /// A real-name card whose holder is registered (M1).
    pub const MEMBER: u8 = 1 << 4;
    pub const KNOWN: u8 = Self::PIN_MUST_CHANGE | Self::STAFF | Self::DORMANT_NOTICE | Self::RECYCLE | Self::MEMBER;
}

impl Card {
    pub fn available_minor(&self) -> i64 {
        self.cash_minor + self.bonus_minor - self.held_minor
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// A card just sold, before any posting.
    pub fn new(product: u16, store_id: u32, state: CardState) -> Card {
        Card {
            state,
            product,
            store_id,
            cash_minor: 0,
            bonus_minor: 0,
            held_minor: 0,
            first_load_date: 0,
            last_activity_date: 0,
            expiry_date: 0,
            last_spend_date: 0,
            pin_hash: 0,
            pin_failures: 0,
            flags: 0,
            birthday_mmdd: 0,
            points: 0,
            spend_minor: 0,
            notice_date: 0,
            staff_operator_id: 0,
        }
    }

    /// The reply fields that describe the card itself; the caller adds what the request did.
    pub fn reply(&self, code: protocol::ResponseCode, txn_id: u64, amount_minor: i64) -> CardReply {
        let mut notices = 0;
        if self.has(CardFlags::PIN_MUST_CHANGE) {
            notices |= CardReply::NOTICE_PIN_MUST_CHANGE;
        }
        if self.has(CardFlags::DORMANT_NOTICE) {
            notices |= CardReply::NOTICE_DORMANT;
        }
        if self.has(CardFlags::RECYCLE) {
            notices |= CardReply::NOTICE_RECYCLE;
        }
        CardReply {
            code,
            state: self.state,
            txn_id,
            amount_minor,
            cash_minor: self.cash_minor,
            bonus_minor: self.bonus_minor,
            held_minor: self.held_minor,
            gross_minor: amount_minor,
            points_balance: self.points,
            notices,
            ..CardReply::default()
        }
    }
}

/// Declares a `u8` enumeration stored in records, with its decoding and its names, from one
/// list.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vmeta])* $variant = $value,)+ }

        impl $name {
            pub fn from_u8(value: u8) -> Option<$name> {
                match value { $($value => Some($name::$variant),)+ _ => None }
            }

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }
    };
}

/// What a journal entry or transaction record is: the wire's posting kinds (card history
/// replies carry them, SPEC §6.13).
pub use protocol::PostingKind as TxnKind;

stored_enum! {
    /// Where a referenceable transaction stands.
    TxnStatus {
        /// Posted and still in force (a hold: still reserving).
        Posted = 1 => "posted",
        /// A hold that was captured.
        Captured = 2 => "captured",
        /// Undone by a void (T6) or released (T4).
        Voided = 3 => "voided",
        /// Undone by a reversal (T7).
        Reversed = 4 => "reversed",
    }
}

/// A posting that later requests can name (capture, void, refund, reversal): what it moved,
/// so it can be undone exactly, and how far it has been refunded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Txn {
    pub kind: TxnKind,
    pub status: TxnStatus,
    pub card: CardNo,
    pub business_date: BusinessDate,
    pub terminal_id: u32,
    pub stan: u32,
    pub amount_minor: i64,
    /// Signed change of the card's cash and bonus buckets and of its held value.
    pub cash_delta_minor: i64,
    pub bonus_delta_minor: i64,
    pub held_delta_minor: i64,
    /// A capture: the hold it completed.
    pub ref_txn_id: u64,
    /// A sale or capture: refunds so far, in all and from bonus (T5).
    pub refunded_minor: i64,
    pub refunded_bonus_minor: i64,
    /// Points the posting earned (K2; negative: took back), and of a sale the points its
    /// refunds took back so far (T5).
    pub points_delta: i64,
    pub refunded_points: i64,
    /// Change of the card's cumulative net spend (K1).
    pub spend_delta_minor: i64,
    /// A sale or hold: its category (T10), which a capture inherits.
    pub category: u8,
    /// A load: the amount invoiced against it so far (V6; invoices are issued at load, never
    /// at spending).
    pub invoiced_minor: i64,
}

/// What the switch remembers of a terminal's trace number (T7, T8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trace {
    /// The request was answered with `reply`; a retransmission with the same digest gets it
    /// again. `txn_id` names the posting (0 when declined).
    Answered { digest: u64, msg_type: MsgType, card: CardNo, reply: CardReply },
    /// A reversal arrived before its original (T7): the original is declined when it comes.
    ReversedUnseen { card: CardNo, amount_minor: i64 },
}

impl Trace {
    pub fn card(&self) -> CardNo {
        match self {
            Trace::Answered { card, .. } | Trace::ReversedUnseen { card, .. } => *card,
        }
    }
}

/// Terminal and trace number: the identity of a request (T8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceKey {
    pub terminal_id: u32,
    pub stan: u32,
}

/// One append-only posting (S9). Every change of a card's balances has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    pub txn_id: u64,
    pub kind: TxnKind,
    pub card: CardNo,
    pub product: u16,
    pub business_date: BusinessDate,
    /// Switch time of acceptance, ms since the Unix epoch.
    pub time_ms: i64,
    /// The terminal's own clock (YYYYMMDDhhmmss).
    pub local_time: u64,
    pub terminal_id: u32,
    pub store_id: u32,
    pub stan: u32,
    /// Operator of an administrative posting; 0 for a terminal's own request.
    pub operator_id: u32,
    pub amount_minor: i64,
    pub cash_delta_minor: i64,
    pub bonus_delta_minor: i64,
    pub held_delta_minor: i64,
    /// The original a capture, refund, void or reversal acts on; 0 otherwise.
    pub ref_txn_id: u64,
    /// Payment method of a load (V6); 0 otherwise.
    pub method: u8,
    /// Category and flags of a sale or hold (T10); 0 otherwise.
    pub category: u8,
    pub sale_flags: u8,
    /// A sale or capture: the amount before discounts (T3); otherwise the amount.
    pub gross_minor: i64,
    /// Points earned (K2) or taken back (T5, K5) by the posting.
    pub points_delta: i64,
    /// Version of the product catalog in force when it was posted, so that a later change of
    /// the rules never reinterprets history; 0: the core rules, before any catalog.
    pub catalog_version: u32,
    /// The document an administrative posting was made against (a fault ticket, V5; a
    /// correction's ticket); 0 none.
    pub ticket: u64,
    /// The manager who approved it (an override, R2; a card return, L10); 0 none.
    pub approver_id: u32,
}

/// A 64-bit digest of a request's content (type and body, not header): what "the same
/// request" means for retransmission (T8). FNV-1a over the fields; stable across versions of
/// this program because it is stored.
pub fn request_digest(request: &Request) -> u64 {
    let mut h = Fnv::new();
    h.u8(request.msg_type() as u8);
    match *request {
        Request::SignOn { store_id } => h.u64(store_id.into()),
        Request::Echo => {}
        Request::OperatorSignOn { operator } => h.operator(&operator),
        Request::BatchTotals { business_date, totals } => {
            h.u64(business_date.into());
            for (count, amount_minor) in totals.counts.iter().zip(&totals.amounts_minor) {
                h.u64((*count).into());
                h.u64(*amount_minor as u64);
            }
        }
        Request::Balance { card } => h.u64(card.0),
        Request::Sale { card, amount_minor, category, flags, verification } => {
            h.u64(card.0);
            h.u64(amount_minor as u64);
            h.u8(category);
            h.u8(flags);
            h.verification(&verification);
        }
        Request::Load { card, amount_minor, method } | Request::SellCard { card, amount_minor, method } => {
            h.u64(card.0);
            h.u64(amount_minor as u64);
            h.u8(method);
        }
        Request::Hold { card, amount_minor, category, verification } => {
            h.u64(card.0);
            h.u64(amount_minor as u64);
            h.u8(category);
            h.verification(&verification);
        }
        Request::Capture { card, hold_txn_id: id, amount_minor }
        | Request::Refund { card, original_txn_id: id, amount_minor } => {
            h.u64(card.0);
            h.u64(id);
            h.u64(amount_minor as u64);
        }
        Request::Void { card, original_txn_id } => {
            h.u64(card.0);
            h.u64(original_txn_id);
        }
        Request::Reversal { card, original_stan, amount_minor } => {
            h.u64(card.0);
            h.u64(original_stan.into());
            h.u64(amount_minor as u64);
        }
        Request::ImportRange { first, last, product, store_id } => {
            h.u64(first.0);
            h.u64(last.0);
            h.u64(product.into());
            h.u64(store_id.into());
        }
        Request::ProvisionTerminal { terminal_id, store_id, role, wrapped_key } => {
            h.u64(terminal_id.into());
            h.u64(store_id.into());
            h.u8(role);
            h.bytes(&wrapped_key);
        }
        Request::SetTerminalState { terminal_id, enabled } => {
            h.u64(terminal_id.into());
            h.u8(enabled);
        }
        Request::SetOperator { operator, target_id, role, store_id, enabled, new_passcode } => {
            h.operator(&operator);
            h.u64(target_id.into());
            h.u8(role);
            h.u64(store_id.into());
            h.u8(enabled);
            h.bytes(&new_passcode.0);
        }
        Request::CardAdmin { operator, card, action, flags, value, original_txn_id, ticket, verification, new_pin } => {
            h.operator(&operator);
            h.u64(card.0);
            h.u8(action);
            h.u8(flags);
            h.u64(value as u64);
            h.u64(original_txn_id);
            h.u64(ticket);
            h.verification(&verification);
            h.bytes(&new_pin.0);
        }
        Request::MemberQuery { operator, card } => {
            h.operator(&operator);
            h.u64(card.0);
        }
        Request::SetProduct { operator, product, enabled, discount_bp, approved_quantity } => {
            h.operator(&operator);
            h.u64(product.into());
            h.u8(enabled);
            h.u64(discount_bp.into());
            h.u64(approved_quantity.into());
        }
        Request::CardHistory { operator, card, after_txn_id } => {
            h.operator(&operator);
            h.u64(card.0);
            h.u64(after_txn_id);
        }
        Request::ReplaceCard { operator, old_card, new_card, flags, method } => {
            h.operator(&operator);
            h.u64(old_card.0);
            h.u64(new_card.0);
            h.u8(flags);
            h.u8(method);
        }
    }
    h.0
}

/// [`request_digest`] of a `register_member` request (T8), whose strings keep it out of
/// [`Request`].
pub fn register_digest(register: &protocol::RegisterMember) -> u64 {
    let mut h = Fnv::new();
    h.u8(protocol::MsgType::RegisterMember as u8);
    h.operator(&register.operator);
    h.u64(register.card.0);
    let m = &register.member;
    h.u8(m.id_type);
    h.u64(m.birth_date.into());
    for text in [&m.name, &m.id_number, &m.phone, &m.address, &m.email] {
        h.u64(text.len() as u64);
        h.bytes(text.as_bytes());
    }
    h.0
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn u64(&mut self, v: u64) {
        v.to_be_bytes().into_iter().for_each(|b| self.u8(b));
    }
    fn bytes(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|b| self.u8(*b));
    }
    fn verification(&mut self, v: &protocol::Verification) {
        // A request without PIN or override digests as before these fields existed.
        if *v != protocol::Verification::NONE {
            self.bytes(&v.pin.0);
            self.u64(v.approver_id.into());
            self.bytes(&v.approver_passcode.0);
        }
    }
    fn operator(&mut self, operator: &protocol::OperatorAuth) {
        self.u64(operator.operator_id.into());
        self.bytes(&operator.passcode.0);
    }
}

/// The cards of `card`'s partition among `partitions`: a multiplicative hash, so consecutive
/// card numbers (one range) spread evenly.
pub fn partition_of(card: CardNo, partitions: usize) -> usize {
    let mixed = card.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((mixed >> 32) % partitions as u64) as usize
}

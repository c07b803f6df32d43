//! Field types shared by the messages: card numbers, codes and enumerations.

use std::fmt;

/// A card number: 8 to 19 decimal digits, first digit not zero, carried as the unsigned
/// integer those digits spell (so it is fixed width on the wire and a hash key in memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CardNo(pub u64);

impl CardNo {
    pub const MIN_DIGITS: u32 = 8;
    pub const MAX_DIGITS: u32 = 19;

    /// Number of decimal digits.
    pub fn digits(self) -> u32 {
        self.0.checked_ilog10().map_or(1, |d| d + 1)
    }

    /// True when the number has an allowed length (8..=19 digits).
    pub fn is_valid(self) -> bool {
        (Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&self.digits())
    }

    /// Parses the decimal form; refuses anything but 8..=19 digits with a non-zero first digit.
    pub fn parse(text: &str) -> Option<CardNo> {
        let len = text.len() as u32;
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&len)
            || !text.bytes().all(|b| b.is_ascii_digit())
            || text.starts_with('0')
        {
            return None;
        }
        text.parse().ok().map(CardNo)
    }
}

impl fmt::Display for CardNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Terminal local time as the decimal number YYYYMMDDhhmmss (e.g. 20261122093005).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LocalTime(pub u64);

impl LocalTime {
    /// True when the number spells a plausible calendar date and time of day.
    pub fn is_valid(self) -> bool {
        let v = self.0;
        let (sec, min, hour) = (v % 100, (v / 100) % 100, (v / 10_000) % 100);
        let (day, month, year) = ((v / 1_000_000) % 100, (v / 100_000_000) % 100, v / 10_000_000_000);
        (2000..=2999).contains(&year)
            && (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour < 24
            && min < 60
            && sec < 60
    }
}

impl LocalTime {
    /// The wall-clock time `unix_ms` at `utc_offset_minutes` east of UTC.
    pub fn from_unix_ms(unix_ms: i64, utc_offset_minutes: i32) -> LocalTime {
        let secs = unix_ms.div_euclid(1000) + i64::from(utc_offset_minutes) * 60;
        let (days, sec_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u64);
        let date = u64::from(date_from_days(days));
        LocalTime(date * 1_000_000 + (sec_of_day / 3600) * 10_000 + (sec_of_day / 60 % 60) * 100 + sec_of_day % 60)
    }

    /// The date part, YYYYMMDD.
    pub fn date(self) -> u32 {
        (self.0 / 1_000_000) as u32
    }
}

/// The calendar date, as YYYYMMDD, of `days` since 1970-01-01 (proleptic Gregorian; the
/// civil-from-days algorithm).
pub fn date_from_days(days: i64) -> u32 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 10_000 + month * 100 + day) as u32
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            v / 10_000_000_000,
            (v / 100_000_000) % 100,
            (v / 1_000_000) % 100,
            (v / 10_000) % 100,
            (v / 100) % 100,
            v % 100
        )
    }
}

/// Declares a `u8` wire enumeration with its names, so the decoder, the spec tables and the
/// readable vector form all come from one list.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name { $($(#[$vmeta])* $variant = $value,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn from_u8(value: u8) -> Option<Self> {
                match value { $($value => Some($name::$variant),)+ _ => None }
            }

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn from_name(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Message type (header byte 1). A response's type is its request's type with bit 7 set.
    MsgType {
        SignOn = 0x01 => "sign_on",
        Echo = 0x02 => "echo",
        OperatorSignOn = 0x03 => "operator_sign_on",
        BatchTotals = 0x04 => "batch_totals",
        Balance = 0x10 => "balance",
        Sale = 0x11 => "sale",
        Load = 0x12 => "load",
        Hold = 0x13 => "hold",
        Capture = 0x14 => "capture",
        Void = 0x15 => "void",
        Refund = 0x16 => "refund",
        Reversal = 0x17 => "reversal",
        ImportRange = 0x20 => "import_range",
        SellCard = 0x21 => "sell_card",
        ProvisionTerminal = 0x22 => "provision_terminal",
        SetTerminalState = 0x23 => "set_terminal_state",
        SetOperator = 0x24 => "set_operator",
        SetProduct = 0x25 => "set_product",
        CardAdmin = 0x30 => "card_admin",
        RegisterMember = 0x31 => "register_member",
        MemberQuery = 0x32 => "member_query",
        ReplaceCard = 0x33 => "replace_card",
        CardHistory = 0x34 => "card_history",
        SignOnReply = 0x81 => "sign_on_reply",
        EchoReply = 0x82 => "echo_reply",
        OperatorSignOnReply = 0x83 => "operator_sign_on_reply",
        BatchTotalsReply = 0x84 => "batch_totals_reply",
        BalanceReply = 0x90 => "balance_reply",
        SaleReply = 0x91 => "sale_reply",
        LoadReply = 0x92 => "load_reply",
        HoldReply = 0x93 => "hold_reply",
        CaptureReply = 0x94 => "capture_reply",
        VoidReply = 0x95 => "void_reply",
        RefundReply = 0x96 => "refund_reply",
        ReversalReply = 0x97 => "reversal_reply",
        ImportRangeReply = 0xA0 => "import_range_reply",
        SellCardReply = 0xA1 => "sell_card_reply",
        ProvisionTerminalReply = 0xA2 => "provision_terminal_reply",
        SetTerminalStateReply = 0xA3 => "set_terminal_state_reply",
        SetOperatorReply = 0xA4 => "set_operator_reply",
        SetProductReply = 0xA5 => "set_product_reply",
        CardAdminReply = 0xB0 => "card_admin_reply",
        RegisterMemberReply = 0xB1 => "register_member_reply",
        MemberQueryReply = 0xB2 => "member_query_reply",
        ReplaceCardReply = 0xB3 => "replace_card_reply",
        CardHistoryReply = 0xB4 => "card_history_reply",
        Error = 0xFF => "error",
    }
}

impl MsgType {
    pub const RESPONSE_BIT: u8 = 0x80;

    pub fn is_response(self) -> bool {
        self as u8 & Self::RESPONSE_BIT != 0
    }

    /// The response type that answers this request type (`None` for responses).
    pub fn reply_type(self) -> Option<MsgType> {
        if self.is_response() {
            None
        } else {
            MsgType::from_u8(self as u8 | Self::RESPONSE_BIT)
        }
    }
}

wire_enum! {
    /// Outcome of a request. Declines are ordinary values; the numeric order below is the
    /// precedence: when a request fails several checks, the switch answers the lowest code
    /// among them, so the same bad request always gets the same answer.
    ResponseCode {
        /// The request was carried out (and, for a posting, is durable).
        Approved = 0 => "approved",
        /// The frame could not be decoded (bad length, truncated body, trailing bytes, ...).
        Malformed = 1 => "malformed",
        /// Header byte 0 names a protocol version the switch does not speak.
        UnsupportedVersion = 2 => "unsupported_version",
        /// Header byte 1 is not a request type.
        UnknownMessageType = 3 => "unknown_message_type",
        /// The header names a terminal the switch has no key for (§3.1).
        UnknownTerminal = 4 => "unknown_terminal",
        /// The frame's MAC is not the one the terminal's key gives (§3.1).
        BadMac = 5 => "bad_mac",
        /// The terminal is provisioned but disabled (§5.18).
        TerminalDisabled = 6 => "terminal_disabled",
        /// A field is out of its allowed range (amount, card number, enumeration, flags).
        InvalidField = 7 => "invalid_field",
        /// The connection has not signed on as this terminal; every request but sign-on
        /// needs it.
        NotSignedOn = 8 => "not_signed_on",
        /// The terminal's role does not allow this request (administrative requests need the
        /// `admin` role, §5.17).
        NotPermitted = 9 => "not_permitted",
        /// The switch cannot take the request now (queue full, shutting down); nothing was
        /// posted, the same request may be sent again.
        SystemBusy = 10 => "system_busy",
        /// The card's partition stopped after a storage failure; nothing was posted.
        SystemError = 11 => "system_error",
        /// The trace number was used before by this terminal for a different request.
        TraceReused = 12 => "trace_reused",
        /// This trace number was reversed before its original arrived (T7).
        OriginalReversed = 13 => "original_reversed",
        /// The operator a request names is unknown or disabled, or its passcode does not
        /// match (O1).
        OperatorRefused = 14 => "operator_refused",
        /// The operator's role, or its store, does not allow this operation (O1).
        RoleNotPermitted = 15 => "role_not_permitted",
        /// The card number is in no imported range (L1).
        UnknownCard = 16 => "unknown_card",
        /// The card's range belongs to another store (L1), or a sign-on names a store other
        /// than the terminal's.
        WrongStore = 17 => "wrong_store",
        /// The card was imported but never sold (L2).
        CardNotSold = 18 => "card_not_sold",
        /// The card was already sold.
        CardAlreadySold = 19 => "card_already_sold",
        /// The card is sold but waits for finance to confirm its funds (L2).
        CardPendingFunds = 20 => "card_pending_funds",
        /// The card was reported lost (L5).
        CardLost = 21 => "card_lost",
        /// The card is frozen (L8 dormancy or an operator).
        CardFrozen = 22 => "card_frozen",
        /// The card is locked after too many wrong PINs (L4).
        CardPinLocked = 23 => "card_pin_locked",
        /// The card's validity ended (L7).
        CardExpired = 24 => "card_expired",
        /// The card is closed (returned, replaced, recycled).
        CardClosed = 25 => "card_closed",
        /// The card's product is not sold or not enabled in the catalog in force (P3: a
        /// `special` card before an admin enables it).
        ProductDisabled = 26 => "product_disabled",
        /// The product requires a PIN (T2) and none was entered.
        PinRequired = 27 => "pin_required",
        /// The PIN is wrong (T2); the reply says how many attempts are left before the card
        /// locks (L4).
        WrongPin = 28 => "wrong_pin",
        /// The operation needs the holder's ID checked at the desk (L4 unlock, L8 unfreeze),
        /// and the request does not say it was.
        IdNotChecked = 29 => "id_not_checked",
        /// The card's state does not allow this administrative operation (e.g. unfreezing a
        /// card that is not frozen, confirming funds of a card that is not waiting for them).
        StateNotEligible = 30 => "state_not_eligible",
        /// A real-name card (M1) whose holder is not registered yet: no load, debit or hold.
        MemberNotRegistered = 31 => "member_not_registered",
        /// The referenced original transaction does not exist on this card.
        OriginalNotFound = 32 => "original_not_found",
        /// The referenced original is of a kind this request cannot act on, or belongs to a
        /// closed business day (T6).
        OriginalNotEligible = 33 => "original_not_eligible",
        /// The original was already voided, reversed or captured.
        OriginalAlreadySettled = 34 => "original_already_settled",
        /// The request's card or amount does not match the original it names.
        OriginalMismatch = 35 => "original_mismatch",
        /// Refunds would exceed the original amount (T5).
        RefundExceedsOriginal = 36 => "refund_exceeds_original",
        /// The card's product may not pay for the sale's category (R1, P5, P6).
        CategoryNotAllowed = 40 => "category_not_allowed",
        /// A per-transaction or per-day limit of the product and category would be exceeded
        /// (R2, R3); the reply's `limit_minor` names the limit.
        LimitExceeded = 41 => "limit_exceeded",
        /// The product takes no holds (T4).
        HoldsNotAllowed = 42 => "holds_not_allowed",
        /// The product's cards are loaded once, when sold.
        NotReloadable = 43 => "not_reloadable",
        /// A manager override was given but its operator, passcode or role does not allow it
        /// (R2, O1).
        OverrideRefused = 44 => "override_refused",
        /// The operation needs a manager's approval and the request carries none (L10).
        ApprovalRequired = 45 => "approval_required",
        /// The card has an open hold (L10: no return while a deposit is held).
        OpenHold = 46 => "open_hold",
        /// The card is not a gift card spent to zero (L9).
        NotRecyclable = 47 => "not_recyclable",
        /// Available value (cash + bonus - holds) is less than the amount (T1).
        InsufficientValue = 48 => "insufficient_value",
        /// The load would take the balance over the largest balance a card may hold.
        BalanceLimitExceeded = 49 => "balance_limit_exceeded",
        /// The load is below the product's smallest single load (V2); `limit_minor` names it.
        LoadBelowMinimum = 50 => "load_below_minimum",
        /// The load is above the product's largest single load (V2); `limit_minor` names it.
        LoadAboveMaximum = 51 => "load_above_maximum",
        /// The product's approved quantity of cards is sold out (P3).
        QuantityExhausted = 54 => "quantity_exhausted",
        /// An invoice would exceed the load it is issued against, or names no load (V6).
        InvoiceExceedsLoad = 55 => "invoice_exceeds_load",
        /// The card has fewer points than the redemption asks for (K4).
        InsufficientPoints = 52 => "insufficient_points",
        /// The card's product earns no points (K4: nothing to redeem).
        PointsNotAllowed = 53 => "points_not_allowed",
        /// The range overlaps an imported range (L1).
        RangeOverlaps = 64 => "range_overlaps",
        /// The product code is not in the catalog.
        UnknownProduct = 65 => "unknown_product",
        /// A registration field is missing or malformed (M2); the reply names it.
        MemberDataInvalid = 66 => "member_data_invalid",
        /// The ID already holds a live member card (M1).
        IdAlreadyRegistered = 67 => "id_already_registered",
        /// The card already has a registered holder, or its product is anonymous (M1, P2).
        MemberNotAllowed = 68 => "member_not_allowed",
        /// A replacement's new card is not a card in stock of the old card's product, or the
        /// products may not exchange value (L6, P2).
        ReplacementRefused = 69 => "replacement_refused",
    }
}

impl ResponseCode {
    pub fn is_approved(self) -> bool {
        self == ResponseCode::Approved
    }
}

wire_enum! {
    /// Life-cycle state of a card (section L of the card rules).
    CardState {
        /// No such card (only in replies about unknown cards).
        Unknown = 0 => "unknown",
        /// Imported, not sold.
        Stock = 1 => "stock",
        /// Sold, paid by cheque or transfer, funds not yet confirmed (L2).
        PendingFunds = 2 => "pending_funds",
        Active = 3 => "active",
        Frozen = 4 => "frozen",
        Lost = 5 => "lost",
        PinLocked = 6 => "pin_locked",
        Expired = 7 => "expired",
        Closed = 8 => "closed",
    }
}

wire_enum! {
    /// Sale category (T10); restrictions and points depend on it.
    Category {
        Retail = 1 => "retail",
        Dining = 2 => "dining",
        Room = 3 => "room",
        Spa = 4 => "spa",
        Tobacco = 5 => "tobacco",
        Luxury = 6 => "luxury",
        SmallAppliance = 7 => "small_appliance",
        LargeAppliance = 8 => "large_appliance",
        Other = 9 => "other",
    }
}

wire_enum! {
    /// How the customer paid for a load (V6).
    PaymentMethod {
        Cash = 1 => "cash",
        BankCard = 2 => "bank_card",
        Wechat = 3 => "wechat",
        Alipay = 4 => "alipay",
        Cheque = 5 => "cheque",
        Transfer = 6 => "transfer",
    }
}

wire_enum! {
    /// What a terminal may do (§5.17): a `pos` terminal serves cards; an `admin` terminal may
    /// also import ranges and provision, enable and disable terminals.
    TerminalRole {
        Pos = 1 => "pos",
        Admin = 2 => "admin",
    }
}

wire_enum! {
    /// What a posting is: the kind of a journal entry (S9), as card history replies name it
    /// (SPEC §6.13) and the journal stores it.
    PostingKind {
        SellCard = 1 => "sell_card",
        Load = 2 => "load",
        Sale = 3 => "sale",
        Hold = 4 => "hold",
        Capture = 5 => "capture",
        Refund = 6 => "refund",
        /// A void (T6) or a hold's release; its deltas undo the original named by `ref_txn_id`.
        Void = 7 => "void",
        /// A reversal (T7); its deltas undo the original named by `ref_txn_id`.
        Reversal = 8 => "reversal",
        // Administrative postings (`card_admin`), each naming its operator. The lifecycle
        // changes move no value; their entries keep the card's history (S9).
        /// L5.
        LossReport = 9 => "loss_report",
        Freeze = 10 => "freeze",
        Unfreeze = 11 => "unfreeze",
        PinUnlock = 12 => "pin_unlock",
        PinChange = 13 => "pin_change",
        FundsConfirmed = 14 => "funds_confirmed",
        /// L10: the cash value paid back (`amount_minor`, after tax) and everything removed.
        CardReturn = 15 => "card_return",
        /// L9: a gift card spent to zero, returned and closed.
        Recycle = 16 => "recycle",
        /// A signed correction of one bucket, with its ticket.
        Adjustment = 17 => "adjustment",
        /// V5: part or all of the load `ref_txn_id` taken back, its bonus in proportion.
        LoadReversal = 18 => "load_reversal",
        /// K4: points exchanged for bonus value or a gift.
        Redemption = 19 => "redemption",
        // Day-end housekeeping (S7), journaled with operator 0 and terminal 0; none counts as
        // the holder's activity (L8).
        /// T4: an uncaptured hold past its time, released (`ref_txn_id` the hold).
        HoldExpired = 20 => "hold_expired",
        /// L7: the card's validity ended; what it held is forfeited.
        Forfeit = 21 => "forfeit",
        /// L8: listed for dormancy notice.
        DormancyNotice = 22 => "dormancy_notice",
        /// L8: frozen at the end of the notice period.
        DormancyFreeze = 23 => "dormancy_freeze",
        /// K5: the card's points lapsed.
        PointsLapse = 24 => "points_lapse",
        // Steps of operations spanning partitions, each journaled on its own card with the
        // operation's id as `ticket`.
        /// M1: the card's holder registered.
        MemberRegistered = 25 => "member_registered",
        /// L6: the old card closed, its value, points and spend moved out.
        TransferOut = 26 => "transfer_out",
        /// L6: the new card sold to the same holder with the old card's value (`ref_txn_id`:
        /// the transfer out).
        TransferIn = 27 => "transfer_in",
        /// A fee collected at the desk (`method`), moving no card value (L6 replacement fee).
        Fee = 28 => "fee",
        /// L6: a transfer out given back because the new card refused the value.
        TransferBack = 29 => "transfer_back",
        /// V4, T9: the card became (or stopped being) a staff member's.
        StaffCard = 30 => "staff_card",
        /// V6: an invoice issued against a load (`ref_txn_id`), moving no value.
        InvoiceIssued = 31 => "invoice_issued",
    }
}

impl PostingKind {
    /// The posting's name, as the journal's readable forms print it.
    pub fn name(self) -> &'static str {
        self.as_str()
    }

    /// Postings of the day-end housekeeping (S7), not of the holder.
    pub fn is_housekeeping(self) -> bool {
        matches!(
            self,
            PostingKind::HoldExpired
                | PostingKind::Forfeit
                | PostingKind::DormancyNotice
                | PostingKind::DormancyFreeze
                | PostingKind::PointsLapse
        )
    }
}

wire_enum! {
    /// The documents a member card is issued against (M1, SPEC §6.12).
    IdType {
        /// 居民身份证: 18 characters, the last a check character (GB 11643).
        IdCard = 1 => "id_card",
        Passport = 2 => "passport",
        /// 军人身份证件.
        MilitaryId = 3 => "military_id",
    }
}

wire_enum! {
    /// An operator's role (O1): what the administrative operations it names may do.
    OperatorRole {
        Cashier = 1 => "cashier",
        FrontDesk = 2 => "front_desk",
        CustomerService = 3 => "customer_service",
        Finance = 4 => "finance",
        HqFinance = 5 => "hq_finance",
        Admin = 6 => "admin",
        /// Approves overrides of restrictions (R2) and card returns (L10).
        Manager = 7 => "manager",
    }
}

wire_enum! {
    /// The operation a `card_admin` request carries out on its card (SPEC §5.20).
    AdminAction {
        /// L5: the card is reported lost.
        ReportLoss = 1 => "report_loss",
        /// The card is frozen by an operator.
        Freeze = 2 => "freeze",
        /// L8: a frozen card is active again; needs the holder's ID.
        Unfreeze = 3 => "unfreeze",
        /// L4: a PIN-locked card is active again; needs the holder's ID.
        UnlockPin = 4 => "unlock_pin",
        /// L3: the holder sets a new PIN, proving the old one.
        ChangePin = 5 => "change_pin",
        /// L2: finance confirms the funds of a card sold by cheque or transfer.
        ConfirmFunds = 6 => "confirm_funds",
        /// L10: the card is returned and its cash value paid back.
        ReturnCard = 7 => "return_card",
        /// L9: a gift card spent to zero is returned by the store and closed.
        RecycleGift = 8 => "recycle_gift",
        /// A signed correction of the cash or bonus bucket, with a ticket number.
        Adjust = 9 => "adjust",
        /// V5: a load is reversed by head-office finance against a fault ticket.
        LoadReversal = 10 => "load_reversal",
        /// K4: points redeemed as bonus value, or for a gift.
        RedeemPoints = 11 => "redeem_points",
        /// V4, T9: the card is a staff member's, `value` the staff member's operator id (0:
        /// no longer a staff card).
        SetStaff = 12 => "set_staff",
        /// V6: an invoice of `value` was issued against the load `original_txn_id`.
        RecordInvoice = 13 => "record_invoice",
    }
}

/// Flags of a `card_admin` request (SPEC §5.20).
pub struct AdminFlags;

impl AdminFlags {
    /// The holder's ID was checked at the desk (L4, L8).
    pub const ID_CHECKED: u8 = 1 << 0;
    /// A card return brings back the invoice issued at load, so no tax is withheld (L10).
    pub const INVOICE_RETURNED: u8 = 1 << 1;
    /// An adjustment corrects the bonus bucket instead of the cash bucket.
    pub const BONUS_BUCKET: u8 = 1 << 2;
    /// A redemption is exchanged for a gift instead of credited as bonus value (K4).
    pub const FOR_GIFT: u8 = 1 << 3;
    pub const KNOWN: u8 = Self::ID_CHECKED | Self::INVOICE_RETURNED | Self::BONUS_BUCKET | Self::FOR_GIFT;

    /// The names of the set bits of `flags`, joined with `+`, or `none`.
    pub fn names(flags: u8) -> String {
        flag_names(
            flags,
            &[
                (Self::ID_CHECKED, "id_checked"),
                (Self::INVOICE_RETURNED, "invoice_returned"),
                (Self::BONUS_BUCKET, "bonus_bucket"),
                (Self::FOR_GIFT, "for_gift"),
            ],
        )
    }
}

impl PaymentMethod {
    /// Funds paid this way are not available until finance confirms them (L2).
    pub fn needs_confirmation(self) -> bool {
        matches!(self, PaymentMethod::Cheque | PaymentMethod::Transfer)
    }
}

/// Flags of a sale (T10): bit 0 promotion, bit 1 group purchase, bit 2 special price.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SaleFlags(pub u8);

impl SaleFlags {
    pub const PROMOTION: u8 = 1 << 0;
    pub const GROUP_PURCHASE: u8 = 1 << 1;
    pub const SPECIAL_PRICE: u8 = 1 << 2;
    pub const KNOWN: u8 = Self::PROMOTION | Self::GROUP_PURCHASE | Self::SPECIAL_PRICE;

    pub fn is_valid(self) -> bool {
        self.0 & !Self::KNOWN == 0
    }

    /// The names of the set bits, joined with `+`, or `none`.
    pub fn names(self) -> String {
        flag_names(
            self.0,
            &[
                (Self::PROMOTION, "promotion"),
                (Self::GROUP_PURCHASE, "group_purchase"),
                (Self::SPECIAL_PRICE, "special_price"),
            ],
        )
    }
}

/// The names of the bits of `flags` that `names` lists, joined with `+`, or `none`.
fn flag_names(flags: u8, names: &[(u8, &str)]) -> String {
    let set: Vec<&str> = names.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name).collect();
    if set.is_empty() {
        "none".to_string()
    } else {
        set.join("+")
    }
}

/// Formats minor units as yuan with two decimals, e.g. `-1234` as `-12.34`.
pub fn format_minor(amount_minor: i64) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses yuan written with at most two decimals (`12`, `12.3`, `12.34`) into minor units,
/// exactly (no floating point). Refuses signs, more decimals and overflow.
pub fn parse_minor(text: &str) -> Option<i64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty()
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac_minor: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(frac_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_have_8_to_19_digits() {
        assert_eq!(CardNo::parse("62000001"), Some(CardNo(62000001)));
        assert_eq!(CardNo::parse("6200000"), None);
        assert_eq!(CardNo::parse("06200000"), None);
        assert_eq!(CardNo::parse("9999999999999999999"), Some(CardNo(9_999_999_999_999_999_999)));
        assert_eq!(CardNo::parse("12345678901234567890"), None);
        assert!(CardNo(10_000_000).is_valid());
        assert!(!CardNo(9_999_999).is_valid());
        assert!(!CardNo(u64::MAX).is_valid());
    }

    #[test]
    fn local_time_checks_calendar_fields() {
        assert!(LocalTime(20261122093005).is_valid());
        assert!(!LocalTime(20261322093005).is_valid());
        assert!(!LocalTime(0).is_valid());
        assert_eq!(LocalTime(20261122093005).to_string(), "2026-11-22T09:30:05");
        // 2026-11-22T01:30:05Z seen from UTC+8.
        assert_eq!(LocalTime::from_unix_ms(1_795_311_005_000, 480), LocalTime(20261122093005));
        assert_eq!(date_from_days(0), 19700101);
        assert_eq!(date_from_days(-1), 19691231);
        assert_eq!(date_from_days(11_016), 20000229);
    }

    #[test]
    fn yuan_text_round_trips_through_minor_units() {
        assert_eq!(parse_minor("12.34"), Some(1234));
        assert_eq!(parse_minor("12.3"), Some(1230));
        assert_eq!(parse_minor("12"), Some(1200));
        assert_eq!(parse_minor("-1"), None);
        assert_eq!(parse_minor("1.234"), None);
        assert_eq!(parse_minor("99999999999999999999"), None);
        assert_eq!(format_minor(-1234), "-12.34");
        assert_eq!(format_minor(5), "0.05");
    }

    #[test]
    fn enumerations_round_trip_by_value_and_name() {
        for code in ResponseCode::ALL {
            assert_eq!(ResponseCode::from_u8(*code as u8), Some(*code));
            assert_eq!(ResponseCode::from_name(code.as_str()), Some(*code));
        }
        assert_eq!(Category::from_u8(0), None);
        assert_eq!(PaymentMethod::from_name("wechat"), Some(PaymentMethod::Wechat));
    }
}

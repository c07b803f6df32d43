//! Golden frames: `vectors/NAME.hex` is the whole frame (length prefix included) as hex and
//! `vectors/NAME.txt` its readable form. Frames are signed with the test key of SPEC.md §14
//! (bytes 0x00, 0x01, ..., 0x1f), except the ones the switch sends unsigned (§3.1). Each vector is built here in code; the test checks
//! that encoding it gives the bytes of `NAME.hex`, that decoding those bytes gives it back, and
//! that `describe` renders it as `NAME.txt`.
//!
//! `UPDATE_VECTORS=1 cargo test -p cardswitch-protocol --test vectors` rewrites the files from
//! the code below (review the diff: a changed byte is a protocol change, see SPEC.md §12).

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use bytes::BytesMut;
use protocol::codec::{encode_signed, InboundCodec};
use protocol::describe::{annotated_hex, describe_signed};
use protocol::message::FLAG_RETRANSMIT;
use protocol::{
    decode_frame, AdminAction, AdminFlags, BatchTotals, BatchTotalsReply, CardNo, CardReply, CardState, Category,
    Frame, FrameCodec, Header, HistoryEntry, HistoryReply, ImportRangeReply, LocalTime, MemberData, MemberReply,
    Message, MsgType, OperatorAuth, OperatorReply, OperatorRole, PaymentMethod, PostingKind, ProductReply,
    RegisterMember, Request, Response, ResponseCode, SaleFlags, Sealed, SecretKind, SignOnReply, TerminalKey,
    TerminalReply, TerminalRole, Verification, LENGTH_PREFIX_BYTES,
};
use tokio_util::codec::Decoder;

const TERMINAL: u32 = 1001;
const STORE: u32 = 21;
/// The card most vectors act on, and one of a freshly imported range sold over the counter.
const CARD: CardNo = CardNo(6200880000000017);
const NEW_CARD: CardNo = CardNo(6200880000010018);
/// A member card (silver tier, 1200 points, 1000.00 yuan cash) that still has its initial PIN.
const MEMBER_CARD: CardNo = CardNo(6200880000000025);
/// The PIN and the manager's passcode the `sale_with_pin` vector seals (SPEC.md §3.2, §14).
const PIN: &str = "123456";
const APPROVER_ID: u32 = 7;
const APPROVER_PASSCODE: &str = "m4nager";
/// The header of the `sale_with_pin` vector, whose stan and terminal its secrets are sealed for.
const PIN_SALE_STAN: u32 = 143;
const PIN_SALE_TIME: u64 = 20261122100300;
/// The operators of the administrative vectors (O1, SPEC.md §5.19, §5.20): (id, passcode).
const ADMIN_OPERATOR: (u32, &str) = (1, "4dmin-pass");
const CASHIER: (u32, &str) = (31, "c4shier31");
const SERVICE: (u32, &str) = (41, "s3rvice41");
const FINANCE: (u32, &str) = (51, "f1nance51");
/// The PIN the holder of `MEMBER_CARD` chooses in `card_admin_change_pin` (L3).
const NEW_PIN: &str = "135790";
/// The stans of the administrative vectors, whose secrets are sealed for them.
const SET_OPERATOR_STAN: u32 = 146;
const REPORT_LOSS_STAN: u32 = 147;
const CHANGE_PIN_STAN: u32 = 148;
const RETURN_CARD_STAN: u32 = 149;
/// The member vectors (M1-M3, L6, S9): a new member card registered for its holder, shown
/// masked to a cashier; `MEMBER_CARD` replaced by a card in stock; the new card's history.
const REGISTERED_CARD: CardNo = CardNo(6200880000000033);
const REPLACEMENT_CARD: CardNo = CardNo(6200880000000058);
const REGISTER_INVALID_STAN: u32 = 151;
const REGISTER_STAN: u32 = 152;
const MEMBER_QUERY_STAN: u32 = 153;
const REPLACE_STAN: u32 = 154;
const HISTORY_STAN: u32 = 155;
/// The replacement's postings: the transfer out of the old card, the transfer in and the fee.
const TRANSFER_IN_TXN: u64 = 418_312;
const FEE_TXN: u64 = 418_313;
/// Switch time of the replacement's postings: 2026-11-22T10:14:00+08:00, ms since the epoch.
const REPLACE_TIME_MS: i64 = 1_795_313_640_000;
/// The terminal id the switch journals the steps of operations spanning partitions under
/// (SPEC.md §5.23).
const SWITCH_TERMINAL: u32 = u32::MAX;
/// The product administration, staff and invoice vectors (P3, V4, V6, T9, SPEC.md §5.20,
/// §5.25, §5.26): `special` enabled at a 30.00% discount for 500 cards, making catalog version 2
/// of `catalogs/retail.toml` (version 1); a member card made cashier 31's own staff card, and the
/// invoice of its opening load recorded; then cashier 31 signs on to ring up sales.
const SET_PRODUCT_STAN: u32 = 156;
const SET_STAFF_STAN: u32 = 157;
const RECORD_INVOICE_STAN: u32 = 158;
const OPERATOR_SIGN_ON_STAN: u32 = 159;
const BATCH_TOTALS_STAN: u32 = 160;

/// The batch of the vectors' terminal on 2026-11-22 (S2): one card sold for 500.00, two sales
/// of 123.45 and 50.00, one refund of 20.00, by the terminal's count; the switch's count has
/// a second refund of 10.00.
fn batch(refunds: u32, refunded_minor: i64) -> BatchTotals {
    let mut totals = BatchTotals::default();
    totals.add(PostingKind::SellCard, 50_000);
    totals.add(PostingKind::Sale, 12_345);
    totals.add(PostingKind::Sale, 5_000);
    totals.counts[5] = refunds;
    totals.amounts_minor[5] = refunded_minor;
    totals
}
const SPECIAL_PRODUCT: u16 = 3;
const SPECIAL_DISCOUNT_BP: u16 = 3_000;
const SPECIAL_QUANTITY: u32 = 500;
const CATALOG_VERSION_AFTER: u32 = 2;
/// Cashier 31's own member card, sold with 1000.00 yuan opening value in cash (txn 418314).
const STAFF_CARD: CardNo = CardNo(6200880000000041);
const STAFF_CARD_SALE_TXN: u64 = 418_314;
const STAFF_CARD_OPENING_MINOR: i64 = 100_000;

/// The key of terminal `TERMINAL` in every vector (SPEC.md §14).
fn test_key() -> TerminalKey {
    TerminalKey::from_bytes(std::array::from_fn(|i| i as u8))
}

/// The key a provisioning vector hands to terminal 1002 (SPEC.md §14).
fn provisioned_key() -> TerminalKey {
    TerminalKey::from_bytes(std::array::from_fn(|i| 0xa0 + i as u8))
}

/// The key a vector's frame is signed with: none for the frames the switch sends unsigned.
fn signing_key(frame: &Frame) -> Option<TerminalKey> {
    match &frame.message {
        Message::Response(Response::Error { .. }) => None,
        Message::Response(r)
            if matches!(
                r.code(),
                ResponseCode::UnknownTerminal | ResponseCode::BadMac | ResponseCode::TerminalDisabled
            ) =>
        {
            None
        }
        _ => Some(test_key()),
    }
}

struct Vector {
    name: &'static str,
    about: &'static str,
    frame: Frame,
}

fn header(stan: u32, local_time: u64) -> Header {
    Header { flags: 0, terminal_id: TERMINAL, stan, local_time: LocalTime(local_time) }
}

fn request(name: &'static str, about: &'static str, header: Header, req: Request) -> Vector {
    Vector { name, about, frame: Frame { header, message: Message::Request(req) } }
}

fn response(name: &'static str, about: &'static str, header: Header, resp: Response) -> Vector {
    Vector { name, about, frame: Frame { header, message: Message::Response(resp) } }
}

fn card_reply(request: MsgType, reply: CardReply) -> Response {
    Response::Card { request, reply }
}

/// Approved card reply: state active, the posting's reference, its amount (no discount, so gross
/// and net are equal) and the balances after; a card of a product without points or tiers.
fn approved(txn_id: u64, amount_minor: i64, cash_minor: i64, bonus_minor: i64, held_minor: i64) -> CardReply {
    CardReply {
        code: ResponseCode::Approved,
        state: CardState::Active,
        txn_id,
        amount_minor,
        cash_minor,
        bonus_minor,
        held_minor,
        gross_minor: amount_minor,
        ..CardReply::default()
    }
}

/// The verification of the `sale_with_pin` vector: the PIN and operator 7's passcode, each
/// sealed under the test key for terminal 1001 and stan 143.
fn pin_and_override() -> Verification {
    let seal = |kind, secret| Sealed::seal(&test_key(), kind, TERMINAL, PIN_SALE_STAN, secret).unwrap();
    Verification {
        pin: seal(SecretKind::Pin, PIN),
        approver_id: APPROVER_ID,
        approver_passcode: seal(SecretKind::Passcode, APPROVER_PASSCODE),
    }
}

/// `secret` sealed as `kind` under the test key for terminal 1001 and `stan` (SPEC.md §3.2).
fn sealed(kind: SecretKind, stan: u32, secret: &str) -> Sealed {
    Sealed::seal(&test_key(), kind, TERMINAL, stan, secret).unwrap()
}

/// Operator `operator` with its passcode sealed for terminal 1001 and `stan` (kind
/// `operator_passcode`).
fn operator(stan: u32, (operator_id, passcode): (u32, &str)) -> OperatorAuth {
    OperatorAuth::seal(&test_key(), TERMINAL, stan, operator_id, passcode).unwrap()
}

/// A `card_admin` request by `by` on `card` carrying out `action` with `flags`, the holder's
/// PIN and a manager's approval in `verification`, and `new_pin`; no value, original or ticket.
fn card_admin(
    stan: u32,
    by: (u32, &str),
    card: CardNo,
    action: AdminAction,
    flags: u8,
    verification: Verification,
    new_pin: Sealed,
) -> Request {
    Request::CardAdmin {
        operator: operator(stan, by),
        card,
        action: action as u8,
        flags,
        value: 0,
        original_txn_id: 0,
        ticket: 0,
        verification,
        new_pin,
    }
}

/// A `card_admin` request by `by` on `card` carrying out `action` with `value` and
/// `original_txn_id`: no flags, PIN, approval, new PIN or ticket.
fn card_admin_valued(
    stan: u32,
    by: (u32, &str),
    card: CardNo,
    action: AdminAction,
    value: i64,
    original_txn_id: u64,
) -> Request {
    match card_admin(stan, by, card, action, 0, Verification::NONE, Sealed::NONE) {
        Request::CardAdmin { operator, card, action, flags, ticket, verification, new_pin, .. } => {
            Request::CardAdmin { operator, card, action, flags, value, original_txn_id, ticket, verification, new_pin }
        }
        other => other,
    }
}

/// A reply about `MEMBER_CARD` after the sale of `sale_with_pin`: silver (tier 2), 1290 points,
/// 910.00 cash, and the initial PIN still to be changed (L3).
fn member_card(code: ResponseCode) -> CardReply {
    CardReply {
        code,
        state: CardState::Active,
        cash_minor: 91_000,
        points_balance: 1_290,
        tier: 2,
        notices: CardReply::NOTICE_PIN_MUST_CHANGE,
        ..CardReply::default()
    }
}

/// The registration of the member vectors: a mainland ID card whose check character and
/// encoded birth date (1990-03-07) are valid, with every optional field given.
fn member() -> MemberData {
    MemberData {
        id_type: 1,
        birth_date: 19900307,
        name: "张三".to_string(),
        id_number: "11010519900307101X".to_string(),
        phone: "13800138000".to_string(),
        address: "北京市西城区".to_string(),
        email: "zhang@example.cn".to_string(),
    }
}

/// A registration sent as its own message (SPEC.md §5.21).
fn register(name: &'static str, about: &'static str, header: Header, register: RegisterMember) -> Vector {
    Vector { name, about, frame: Frame { header, message: Message::RegisterMember(Box::new(register)) } }
}

fn member_reply(request: MsgType, reply: MemberReply) -> Response {
    Response::Member { request, reply: Box::new(reply) }
}

/// The vectors tell one terminal's morning at store 21. Card 6200880000000017, of a product
/// without PIN, points or discounts, starts with 500.00 yuan cash and 30.00 yuan bonus; every
/// reply shows its balances after the request. Then a member card pays with its PIN and gets
/// its tier's discount (SPEC.md §5.6), and two declines show `pin_attempts_left` and
/// `limit_minor` (§5.4).
fn vectors() -> Vec<Vector> {
    use MsgType as T;
    let sale = Request::Sale {
        card: CARD,
        amount_minor: 12_345,
        category: Category::Dining as u8,
        flags: SaleFlags::PROMOTION,
        verification: Verification::NONE,
    };
    vec![
        request("sign_on", "sign-on at store 21", header(120, 20261122092950), Request::SignOn { store_id: STORE }),
        response(
            "sign_on_reply",
            "sign-on approved; business date 2026-11-22",
            header(120, 20261122092950),
            Response::SignOn(SignOnReply { code: ResponseCode::Approved, business_date: 20261122 }),
        ),
        request("echo", "echo (keep-alive)", header(121, 20261122092955), Request::Echo),
        response(
            "echo_reply",
            "echo answered",
            header(121, 20261122092955),
            Response::Echo { code: ResponseCode::Approved },
        ),
        request("balance", "balance inquiry", header(122, 20261122093000), Request::Balance { card: CARD }),
        response(
            "balance_reply",
            "balance: 500.00 cash + 30.00 bonus; an inquiry posts nothing, so txn_id 0",
            header(122, 20261122093000),
            card_reply(T::Balance, approved(0, 0, 50_000, 3_000, 0)),
        ),
        response(
            "balance_reply_unknown_card",
            "balance of a number in no imported range: declined unknown_card, state unknown, zeros",
            header(122, 20261122093000),
            card_reply(
                T::Balance,
                CardReply { code: ResponseCode::UnknownCard, state: CardState::Unknown, ..CardReply::default() },
            ),
        ),
        request("sale", "sale of 123.45 yuan, dining, promotion (T1)", header(123, 20261122093005), sale),
        request(
            "sale_retransmit",
            "the same sale sent again 30 s later with the RETRANSMIT flag (T8): same stan, same body",
            Header { flags: FLAG_RETRANSMIT, ..header(123, 20261122093035) },
            sale,
        ),
        response(
            "sale_reply",
            "sale approved: the 30.00 bonus is spent first, then 93.45 cash",
            header(123, 20261122093005),
            card_reply(T::Sale, approved(418_301, 12_345, 40_655, 0, 0)),
        ),
        response(
            "sale_reply_insufficient_value",
            "a sale of 5000.00 yuan declined insufficient_value: txn_id 0, amount 0, balances unchanged",
            header(124, 20261122093110),
            card_reply(T::Sale, CardReply { code: ResponseCode::InsufficientValue, ..approved(0, 0, 40_655, 0, 0) }),
        ),
        request(
            "load",
            "load of 200.00 yuan paid by wechat (V1 whole yuan, V6)",
            header(125, 20261122093200),
            Request::Load { card: CARD, amount_minor: 20_000, method: PaymentMethod::Wechat as u8 },
        ),
        response(
            "load_reply",
            "load approved",
            header(125, 20261122093200),
            card_reply(T::Load, approved(418_302, 20_000, 60_655, 0, 0)),
        ),
        request(
            "hold",
            "hold of 300.00 yuan for a room (T4)",
            header(126, 20261122093300),
            Request::Hold {
                card: CARD,
                amount_minor: 30_000,
                category: Category::Room as u8,
                verification: Verification::NONE,
            },
        ),
        response(
            "hold_reply",
            "hold approved: 300.00 held",
            header(126, 20261122093300),
            card_reply(T::Hold, approved(418_303, 30_000, 60_655, 0, 30_000)),
        ),
        request(
            "capture",
            "capture of hold 418303 for a final 288.00 yuan (T4)",
            header(127, 20261122093400),
            Request::Capture { card: CARD, hold_txn_id: 418_303, amount_minor: 28_800 },
        ),
        response(
            "capture_reply",
            "capture approved: 288.00 debited, the hold released",
            header(127, 20261122093400),
            card_reply(T::Capture, approved(418_304, 28_800, 31_855, 0, 0)),
        ),
        request(
            "void",
            "void of the same-day load 418302 (T6)",
            header(128, 20261122093500),
            Request::Void { card: CARD, original_txn_id: 418_302 },
        ),
        response(
            "void_reply",
            "void approved: the load's 200.00 cash removed",
            header(128, 20261122093500),
            card_reply(T::Void, approved(418_305, 20_000, 11_855, 0, 0)),
        ),
        request(
            "refund",
            "refund of 20.00 yuan against sale 418301 (T5)",
            header(129, 20261122093600),
            Request::Refund { card: CARD, original_txn_id: 418_301, amount_minor: 2_000 },
        ),
        response(
            "refund_reply",
            "refund approved: round_half_up(2000 * 3000 / 12345) = 4.86 back to bonus, 15.14 to cash",
            header(129, 20261122093600),
            card_reply(T::Refund, approved(418_306, 2_000, 13_369, 486, 0)),
        ),
        request(
            "reversal",
            "reversal of this terminal's stan 129 (the refund), card and amount as the original (T7)",
            header(130, 20261122093700),
            Request::Reversal { card: CARD, original_stan: 129, amount_minor: 2_000 },
        ),
        response(
            "reversal_reply",
            "reversal approved: the refund's value taken back from both buckets",
            header(130, 20261122093700),
            card_reply(T::Reversal, approved(418_307, 2_000, 11_855, 0, 0)),
        ),
        request(
            "import_range",
            "import of 10,000 gift cards 6200880000010000..=6200880000019999 for store 21 (L1)",
            header(131, 20261122094000),
            Request::ImportRange {
                first: CardNo(6200880000010000),
                last: CardNo(6200880000019999),
                product: 2,
                store_id: STORE,
            },
        ),
        response(
            "import_range_reply",
            "import approved",
            header(131, 20261122094000),
            Response::ImportRange(ImportRangeReply { code: ResponseCode::Approved, card_count: 10_000 }),
        ),
        request(
            "sell_card",
            "sale of imported card 6200880000010018 with 500.00 yuan opening value paid in cash (L2)",
            header(132, 20261122094100),
            Request::SellCard { card: NEW_CARD, amount_minor: 50_000, method: PaymentMethod::Cash as u8 },
        ),
        response(
            "sell_card_reply",
            "card sold and active (paid in cash, so no pending_funds)",
            header(132, 20261122094100),
            card_reply(T::SellCard, approved(418_308, 50_000, 50_000, 0, 0)),
        ),
        response(
            "error",
            "Error frame for a sale whose body was cut short; the header ids are echoed, local_time 0",
            header(133, 0),
            Response::Error {
                code: ResponseCode::Malformed,
                text: "body ends early: amount_minor needs 3 more bytes".to_string(),
            },
        ),
        request(
            "provision_terminal",
            "an admin terminal provisions terminal 1002 (pos, store 21) with the key 0xa0..0xbf, wrapped under its own key",
            header(140, 20261122100000),
            Request::ProvisionTerminal {
                terminal_id: 1002,
                store_id: STORE,
                role: TerminalRole::Pos as u8,
                wrapped_key: test_key().wrap_for_transport(&provisioned_key(), TERMINAL, 140, 1002),
            },
        ),
        response(
            "provision_terminal_reply",
            "terminal 1002 provisioned and enabled",
            header(140, 20261122100000),
            Response::Terminal {
                request: MsgType::ProvisionTerminal,
                reply: TerminalReply { code: ResponseCode::Approved, terminal_id: 1002, enabled: 1 },
            },
        ),
        request(
            "set_terminal_state",
            "an admin terminal disables terminal 1002",
            header(141, 20261122100100),
            Request::SetTerminalState { terminal_id: 1002, enabled: 0 },
        ),
        response(
            "set_terminal_state_reply",
            "terminal 1002 is disabled",
            header(141, 20261122100100),
            Response::Terminal {
                request: MsgType::SetTerminalState,
                reply: TerminalReply { code: ResponseCode::Approved, terminal_id: 1002, enabled: 0 },
            },
        ),
        response(
            "sale_reply_bad_mac",
            "a sale whose MAC is wrong is declined bad_mac, unsigned, nothing posted",
            header(142, 20261122100200),
            card_reply(MsgType::Sale, CardReply::code_only(ResponseCode::BadMac)),
        ),
        response(
            "error_frame_too_large",
            "Error frame for a length prefix over the maximum: no header was read, so all ids are 0",
            Header::default(),
            Response::Error {
                code: ResponseCode::Malformed,
                text: "declared frame length 65536 exceeds the maximum of 16384 bytes".to_string(),
            },
        ),
        request(
            "sale_with_pin",
            "sale of 100.00 yuan (gross), retail, on member card 6200880000000025 with the holder's PIN 123456 (T2) \
             and a manager override by operator 7, passcode m4nager (R2), both sealed for terminal 1001, stan 143",
            header(PIN_SALE_STAN, PIN_SALE_TIME),
            Request::Sale {
                card: MEMBER_CARD,
                amount_minor: 10_000,
                category: Category::Retail as u8,
                flags: 0,
                verification: pin_and_override(),
            },
        ),
        response(
            "sale_reply_discounted",
            "the sale with PIN approved: gross 100.00 less the silver tier's 10% member discount (T3, K1), 90.00 \
             debited; 90 points earned (K2), 1290 in all; the card still has its initial PIN (L3)",
            header(PIN_SALE_STAN, PIN_SALE_TIME),
            card_reply(
                T::Sale,
                CardReply {
                    txn_id: 418_309,
                    amount_minor: 9_000,
                    gross_minor: 10_000,
                    discount_minor: 1_000,
                    points_earned: 90,
                    ..member_card(ResponseCode::Approved)
                },
            ),
        ),
        response(
            "sale_reply_wrong_pin",
            "a sale on the member card with a wrong PIN, the second in a row: declined wrong_pin, 3 attempts \
             left before the card locks (T2, L4)",
            header(144, 20261122100400),
            card_reply(T::Sale, CardReply { pin_attempts_left: 3, ..member_card(ResponseCode::WrongPin) }),
        ),
        response(
            "sale_reply_limit_exceeded",
            "a spa sale of 150.00 yuan on a complimentary card without a manager override: declined \
             limit_exceeded, the limit 100.00 (R2, R3)",
            header(145, 20261122100500),
            card_reply(
                T::Sale,
                CardReply {
                    code: ResponseCode::LimitExceeded,
                    state: CardState::Active,
                    cash_minor: 200_000,
                    limit_minor: 10_000,
                    ..CardReply::default()
                },
            ),
        ),
        request(
            "set_operator",
            "admin operator 1 (passcode 4dmin-pass) creates operator 31, a cashier of store 21, enabled, with the \
             passcode c4shier31 (O1); both passcodes sealed for terminal 1001, stan 146",
            header(SET_OPERATOR_STAN, 20261122100600),
            Request::SetOperator {
                operator: operator(SET_OPERATOR_STAN, ADMIN_OPERATOR),
                target_id: CASHIER.0,
                role: OperatorRole::Cashier as u8,
                store_id: STORE,
                enabled: 1,
                new_passcode: sealed(SecretKind::NewPasscode, SET_OPERATOR_STAN, CASHIER.1),
            },
        ),
        response(
            "set_operator_reply",
            "operator 31 set: a cashier, enabled",
            header(SET_OPERATOR_STAN, 20261122100600),
            Response::Operator(OperatorReply {
                code: ResponseCode::Approved,
                operator_id: CASHIER.0,
                role: OperatorRole::Cashier as u8,
                enabled: 1,
            }),
        ),
        request(
            "card_admin_report_loss",
            "customer service operator 41 (passcode s3rvice41) reports card 6200880000000017 lost (L5)",
            header(REPORT_LOSS_STAN, 20261122100700),
            card_admin(REPORT_LOSS_STAN, SERVICE, CARD, AdminAction::ReportLoss, 0, Verification::NONE, Sealed::NONE),
        ),
        response(
            "card_admin_reply",
            "the loss report approved: the card is lost, its balances unchanged; the report is posted (txn_id) \
             and moves no value",
            header(REPORT_LOSS_STAN, 20261122100700),
            card_reply(
                T::CardAdmin,
                CardReply { state: CardState::Lost, ..approved(418_310, 0, 11_855, 0, 0) },
            ),
        ),
        request(
            "card_admin_change_pin",
            "cashier 31 (passcode c4shier31) changes the PIN of member card 6200880000000025: the holder enters \
             the current PIN 123456 and chooses 135790 (L3); the passcode, the PIN and the new PIN sealed for \
             terminal 1001, stan 148",
            header(CHANGE_PIN_STAN, 20261122100800),
            card_admin(
                CHANGE_PIN_STAN,
                CASHIER,
                MEMBER_CARD,
                AdminAction::ChangePin,
                0,
                Verification::pin(sealed(SecretKind::Pin, CHANGE_PIN_STAN, PIN)),
                sealed(SecretKind::NewPin, CHANGE_PIN_STAN, NEW_PIN),
            ),
        ),
        request(
            "card_admin_return_card",
            "finance operator 51 (passcode f1nance51) takes back gift card 6200880000010018 with its load's \
             invoice, approved by manager 7 (passcode m4nager) (L10); both passcodes sealed for terminal 1001, \
             stan 149",
            header(RETURN_CARD_STAN, 20261122100900),
            card_admin(
                RETURN_CARD_STAN,
                FINANCE,
                NEW_CARD,
                AdminAction::ReturnCard,
                AdminFlags::INVOICE_RETURNED,
                Verification {
                    approver_id: APPROVER_ID,
                    approver_passcode: sealed(SecretKind::Passcode, RETURN_CARD_STAN, APPROVER_PASSCODE),
                    ..Verification::NONE
                },
                Sealed::NONE,
            ),
        ),
        response(
            "card_admin_reply_role_not_permitted",
            "cashier 31 tries to report card 6200880000000017 lost: declined role_not_permitted before the card \
             is looked at, so the reply carries the code only (O1)",
            header(150, 20261122101000),
            card_reply(T::CardAdmin, CardReply::code_only(ResponseCode::RoleNotPermitted)),
        ),
        response(
            "register_member_reply_invalid",
            "customer service 41 registers the holder of member card 6200880000000033 with an ID card number \
             whose check character is wrong (110105199003071011): declined member_data_invalid, problem 3 \
             (id_number), before the card is looked at; nothing stored (M2)",
            header(REGISTER_INVALID_STAN, 20261122101100),
            member_reply(
                T::RegisterMember,
                MemberReply {
                    code: ResponseCode::MemberDataInvalid,
                    card: REGISTERED_CARD,
                    problem: 3,
                    ..MemberReply::default()
                },
            ),
        ),
        register(
            "register_member",
            "customer service 41 (passcode s3rvice41, sealed for terminal 1001, stan 152) registers 张三, ID card \
             11010519900307101X, born 1990-03-07, as the holder of member card 6200880000000033 (M1)",
            header(REGISTER_STAN, 20261122101200),
            RegisterMember { operator: operator(REGISTER_STAN, SERVICE), card: REGISTERED_CARD, member: member() },
        ),
        response(
            "register_member_reply",
            "the registration approved: the card is active and usable, the member as registered",
            header(REGISTER_STAN, 20261122101200),
            member_reply(
                T::RegisterMember,
                MemberReply {
                    code: ResponseCode::Approved,
                    card: REGISTERED_CARD,
                    state: CardState::Active,
                    problem: 0,
                    member: member(),
                },
            ),
        ),
        request(
            "member_query",
            "cashier 31 (passcode c4shier31, sealed for stan 153) asks who holds card 6200880000000033 (M3)",
            header(MEMBER_QUERY_STAN, 20261122101300),
            Request::MemberQuery { operator: operator(MEMBER_QUERY_STAN, CASHIER), card: REGISTERED_CARD },
        ),
        response(
            "member_query_reply_masked",
            "the member as a cashier sees it: ID number and phone masked to their last four characters, address \
             and e-mail withheld, no birth date (M3)",
            header(MEMBER_QUERY_STAN, 20261122101300),
            member_reply(
                T::MemberQuery,
                MemberReply {
                    code: ResponseCode::Approved,
                    card: REGISTERED_CARD,
                    state: CardState::Active,
                    problem: 0,
                    member: MemberData {
                        id_number: "**************101X".to_string(),
                        phone: "*******8000".to_string(),
                        address: "***".to_string(),
                        email: "***".to_string(),
                        birth_date: 0,
                        ..member()
                    },
                },
            ),
        ),
        request(
            "replace_card",
            "customer service 41 (passcode sealed for stan 154), the holder's ID checked, replaces member card \
             6200880000000025 by 6200880000000058 from stock; the 18.00 replacement fee paid in cash (L6)",
            header(REPLACE_STAN, 20261122101400),
            Request::ReplaceCard {
                operator: operator(REPLACE_STAN, SERVICE),
                old_card: MEMBER_CARD,
                new_card: REPLACEMENT_CARD,
                flags: AdminFlags::ID_CHECKED,
                method: PaymentMethod::Cash as u8,
            },
        ),
        response(
            "replace_card_reply",
            "the replacement approved, describing the new card: the old card's 910.00 cash, 1290 points and \
             silver tier moved to it (txn_id: the transfer in); it starts with the product's initial PIN",
            header(REPLACE_STAN, 20261122101400),
            card_reply(
                T::ReplaceCard,
                CardReply {
                    txn_id: TRANSFER_IN_TXN,
                    amount_minor: 91_000,
                    gross_minor: 91_000,
                    points_earned: 1_290,
                    ..member_card(ResponseCode::Approved)
                },
            ),
        ),
        request(
            "card_history",
            "cashier 31 (passcode sealed for stan 155) lists the postings of the new card 6200880000000058 from \
             the first (S9)",
            header(HISTORY_STAN, 20261122101500),
            Request::CardHistory { operator: operator(HISTORY_STAN, CASHIER), card: REPLACEMENT_CARD, after_txn_id: 0 },
        ),
        response(
            "card_history_reply",
            "the new card's two postings, oldest first: the transfer in of the old card's value and points, \
             journaled by the switch's own terminal for operator 41, and the fee, which moves no card value",
            header(HISTORY_STAN, 20261122101500),
            Response::History(Box::new(HistoryReply {
                code: ResponseCode::Approved,
                card: REPLACEMENT_CARD,
                more: 0,
                entries: vec![
                    HistoryEntry {
                        txn_id: TRANSFER_IN_TXN,
                        kind: PostingKind::TransferIn as u8,
                        business_date: 20261122,
                        time_ms: REPLACE_TIME_MS,
                        store_id: STORE,
                        terminal_id: SWITCH_TERMINAL,
                        operator_id: SERVICE.0,
                        amount_minor: 91_000,
                        cash_delta_minor: 91_000,
                        points_delta: 1_290,
                        cash_after_minor: 91_000,
                        ..HistoryEntry::default()
                    },
                    HistoryEntry {
                        txn_id: FEE_TXN,
                        kind: PostingKind::Fee as u8,
                        business_date: 20261122,
                        time_ms: REPLACE_TIME_MS,
                        store_id: STORE,
                        terminal_id: SWITCH_TERMINAL,
                        operator_id: SERVICE.0,
                        amount_minor: 1_800,
                        cash_after_minor: 91_000,
                        ..HistoryEntry::default()
                    },
                ],
            })),
        ),
        request(
            "set_product",
            "admin operator 1 (passcode 4dmin-pass, sealed for terminal 1001, stan 156) enables the special \
             product (3) with its approved discount ratio, 30.00% (3000 basis points), and approved quantity, \
             500 cards (P3)",
            header(SET_PRODUCT_STAN, 20261122101600),
            Request::SetProduct {
                operator: operator(SET_PRODUCT_STAN, ADMIN_OPERATOR),
                product: SPECIAL_PRODUCT,
                enabled: 1,
                discount_bp: SPECIAL_DISCOUNT_BP,
                approved_quantity: SPECIAL_QUANTITY,
            },
        ),
        response(
            "set_product_reply",
            "the product approved: special is enabled, and the catalog version in force is now 2, one above the \
             catalog file's; postings from now on are journaled under it",
            header(SET_PRODUCT_STAN, 20261122101600),
            Response::Product(ProductReply {
                code: ResponseCode::Approved,
                product: SPECIAL_PRODUCT,
                enabled: 1,
                catalog_version: CATALOG_VERSION_AFTER,
            }),
        ),
        request(
            "card_admin_set_staff",
            "admin operator 1 (passcode sealed for stan 157) makes member card 6200880000000041 the staff card of \
             operator 31: value 31 (V4: its loads earn no bonus; T9)",
            header(SET_STAFF_STAN, 20261122101700),
            card_admin_valued(SET_STAFF_STAN, ADMIN_OPERATOR, STAFF_CARD, AdminAction::SetStaff, i64::from(CASHIER.0), 0),
        ),
        request(
            "card_admin_record_invoice",
            "finance operator 51 (passcode sealed for stan 158) records the invoice of 1000.00 yuan issued for \
             the opening load of card 6200880000000041, its card sale 418314 (V6)",
            header(RECORD_INVOICE_STAN, 20261122101800),
            card_admin_valued(
                RECORD_INVOICE_STAN,
                FINANCE,
                STAFF_CARD,
                AdminAction::RecordInvoice,
                STAFF_CARD_OPENING_MINOR,
                STAFF_CARD_SALE_TXN,
            ),
        ),
        request(
            "operator_sign_on",
            "cashier 31 (passcode c4shier31, sealed for terminal 1001, stan 159) signs on to the terminal's \
             session at store 21: its sales are journaled with it from now on (T9)",
            header(OPERATOR_SIGN_ON_STAN, 20261122101900),
            Request::OperatorSignOn { operator: operator(OPERATOR_SIGN_ON_STAN, CASHIER) },
        ),
        response(
            "operator_sign_on_reply",
            "cashier 31 signed on to the session: role cashier, enabled 1 (signed on)",
            header(OPERATOR_SIGN_ON_STAN, 20261122101900),
            Response::OperatorSignOn(OperatorReply {
                code: ResponseCode::Approved,
                operator_id: CASHIER.0,
                role: OperatorRole::Cashier as u8,
                enabled: 1,
            }),
        ),
        request(
            "batch_totals",
            "terminal 1001 sends its batch of 2026-11-22 (S2): sell_card 1 for 500.00, sale 2 for 173.45, \
             refund 1 for 20.00, every other line 0",
            header(BATCH_TOTALS_STAN, 20261122235900),
            Request::BatchTotals { business_date: 20261122, totals: batch(1, 2_000) },
        ),
        response(
            "batch_totals_reply",
            "out of balance (in_balance 0): the switch's figures for the terminal on 2026-11-22 have refund 2 \
             for 30.00",
            header(BATCH_TOTALS_STAN, 20261122235900),
            Response::BatchTotals(BatchTotalsReply {
                code: ResponseCode::Approved,
                in_balance: 0,
                business_date: 20261122,
                totals: batch(2, 3_000),
            }),
        ),
    ]
}

fn vectors_dir() -> PathBuf {
    // Read at run time, not baked in at compile time: a test binary built in one checkout
    // may be reused (shared target directory) when testing another.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(manifest_dir).join("vectors")
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut wire = BytesMut::new();
    encode_signed(frame, signing_key(frame).as_ref(), &mut wire);
    wire.to_vec()
}

/// The bytes of a `.hex` file: `#` comment lines and all whitespace ignored.
fn parse_hex(name: &str, text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.bytes().filter(|b| !b.is_ascii_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "{name}.hex: odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16).unwrap_or_else(|_| panic!("{name}.hex: {pair:?} is not hex"))
        })
        .collect()
}

fn hex_file(vector: &Vector) -> String {
    format!(
        "# {}: {}\n# Layout: SPEC.md. Written by `UPDATE_VECTORS=1 cargo test -p cardswitch-protocol --test vectors`.\n{}",
        vector.name,
        vector.about,
        annotated_hex(&vector.frame, signing_key(&vector.frame).as_ref())
    )
}

fn updating() -> bool {
    std::env::var_os("UPDATE_VECTORS").is_some_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn vector_names_are_unique() {
    let mut names = BTreeSet::new();
    for v in vectors() {
        assert!(names.insert(v.name), "duplicate vector {}", v.name);
    }
}

#[test]
fn every_message_type_has_a_vector() {
    let covered: BTreeSet<MsgType> = vectors().iter().map(|v| v.frame.message.msg_type()).collect();
    let missing: Vec<_> = MsgType::ALL.iter().filter(|t| !covered.contains(t)).collect();
    assert!(missing.is_empty(), "message types without a vector: {missing:?}");
}

#[test]
fn vectors_match_their_files() {
    let dir = vectors_dir();
    if updating() {
        fs::create_dir_all(&dir).unwrap();
        for v in vectors() {
            fs::write(dir.join(format!("{}.hex", v.name)), hex_file(&v)).unwrap();
            fs::write(dir.join(format!("{}.txt", v.name)), describe_signed(&v.frame, signing_key(&v.frame).as_ref()))
                .unwrap();
        }
    }
    for v in vectors() {
        let read = |ext: &str| {
            let path = dir.join(format!("{}.{ext}", v.name));
            fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_VECTORS=1 to write it)", path.display()))
        };
        let wire = parse_hex(v.name, &read("hex"));

        // Encoding the frame built in code gives the file's bytes.
        assert_eq!(encode(&v.frame), wire, "{}: encoded frame differs from {}.hex", v.name, v.name);

        // Decoding the file's bytes gives the frame back, with the pure decoder and the codec.
        assert_eq!(
            decode_frame(&wire[LENGTH_PREFIX_BYTES..]).unwrap_or_else(|e| panic!("{}: {e}", v.name)),
            v.frame,
            "{}: decoded frame differs",
            v.name
        );
        // A terminal holding the key accepts it (checking its MAC); the switch's decoder
        // verifies it under the key, unless the frame is one sent unsigned.
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(FrameCodec::with_key(test_key()).decode(&mut buf).unwrap().as_ref(), Some(&v.frame), "{}", v.name);
        assert!(buf.is_empty(), "{}: codec left bytes behind", v.name);
        let inbound = InboundCodec.decode(&mut BytesMut::from(&wire[..])).unwrap().unwrap();
        assert_eq!(inbound.verify(&test_key()), signing_key(&v.frame).is_some(), "{}: MAC", v.name);

        // The readable form matches.
        let text = describe_signed(&v.frame, signing_key(&v.frame).as_ref());
        assert_eq!(text, read("txt"), "{}: readable form differs from {}.txt", v.name, v.name);
    }
}

/// The secrets of `sale_with_pin` open, from the bytes of its file, with the test key for the
/// header's terminal and stan, and only so (SPEC.md §3.2).
#[test]
fn the_sealed_pin_of_the_pin_vector_opens_with_the_test_key() {
    let wire = vector_wire("sale_with_pin");
    assert!(!wire.windows(PIN.len()).any(|w| w == PIN.as_bytes()), "the PIN is not on the wire in clear");
    assert!(!wire.windows(APPROVER_PASSCODE.len()).any(|w| w == APPROVER_PASSCODE.as_bytes()));
    let frame = decode_frame(&wire[LENGTH_PREFIX_BYTES..]).unwrap();
    let Message::Request(Request::Sale { verification, .. }) = frame.message else { panic!("{frame:?}") };
    let (terminal, stan) = (frame.header.terminal_id, frame.header.stan);
    assert_eq!((terminal, stan), (TERMINAL, PIN_SALE_STAN));
    let open = |sealed: Sealed, kind, terminal, stan| sealed.open(&test_key(), kind, terminal, stan);
    assert_eq!(open(verification.pin, SecretKind::Pin, terminal, stan), Ok(Some(PIN.as_bytes().to_vec())));
    assert_eq!(verification.approver_id, APPROVER_ID);
    assert_eq!(
        open(verification.approver_passcode, SecretKind::Passcode, terminal, stan),
        Ok(Some(APPROVER_PASSCODE.as_bytes().to_vec()))
    );
    // Bound to its kind, terminal and stan: anywhere else the block does not open to the PIN.
    let pin = Ok(Some(PIN.as_bytes().to_vec()));
    assert_ne!(open(verification.pin, SecretKind::Passcode, terminal, stan), pin);
    assert_ne!(open(verification.pin, SecretKind::Pin, terminal + 1, stan), pin);
    assert_ne!(open(verification.pin, SecretKind::Pin, terminal, stan + 1), pin);
    assert_ne!(verification.pin.open(&provisioned_key(), SecretKind::Pin, terminal, stan), pin);
    // The retransmission of a request carries the same bytes: sealing again gives them.
    assert_eq!(verification, pin_and_override());
    // A vector without a PIN carries all-zero sealed fields, which open to nothing.
    let plain = vectors().into_iter().find(|v| v.name == "sale").unwrap();
    let Message::Request(Request::Sale { verification, .. }) = plain.frame.message else { unreachable!() };
    assert_eq!(verification, Verification::NONE);
    assert_eq!(open(verification.pin, SecretKind::Pin, TERMINAL, 123), Ok(None));
}

/// The bytes of vector `name`: from its file, or, while the files are being rewritten, from
/// the code.
fn vector_wire(name: &str) -> Vec<u8> {
    if updating() {
        encode(&vectors().into_iter().find(|v| v.name == name).expect("the vector").frame)
    } else {
        parse_hex(name, &fs::read_to_string(vectors_dir().join(format!("{name}.hex"))).unwrap())
    }
}

/// The secrets of the administrative vectors open, from the bytes of their files, with the test
/// key for the header's terminal and stan and each field's own kind, and only so (SPEC.md
/// §3.2, §5.19, §5.20); none is on the wire in clear.
#[test]
fn the_sealed_secrets_of_the_operator_vectors_open_with_their_kinds() {
    let kinds = [
        SecretKind::Pin,
        SecretKind::Passcode,
        SecretKind::NewPin,
        SecretKind::NewPasscode,
        SecretKind::OperatorPasscode,
    ];
    // Each sealed field opens to its secret as its own kind, and as no other kind.
    let check = |name: &str, field: &str, sealed: Sealed, kind: SecretKind, secret: &str, header: &Header| {
        let open = |kind| sealed.open(&test_key(), kind, header.terminal_id, header.stan);
        let expected = Ok(Some(secret.as_bytes().to_vec()));
        assert_eq!(open(kind), expected, "{name}: {field}");
        for other in kinds.iter().filter(|k| **k != kind) {
            assert_ne!(open(*other), expected, "{name}: {field} opens as {other:?}");
        }
        assert_ne!(sealed.open(&test_key(), kind, header.terminal_id, header.stan + 1), expected, "{name}: {field}");
    };
    let decoded = |name: &str, secrets: &[&str]| {
        let wire = vector_wire(name);
        for secret in secrets {
            assert!(!wire.windows(secret.len()).any(|w| w == secret.as_bytes()), "{name}: {secret} in clear");
        }
        decode_frame(&wire[LENGTH_PREFIX_BYTES..]).unwrap()
    };

    let frame = decoded("set_operator", &[ADMIN_OPERATOR.1, CASHIER.1]);
    let Message::Request(Request::SetOperator { operator, target_id, new_passcode, .. }) = frame.message else {
        panic!("{frame:?}")
    };
    assert_eq!((frame.header.stan, operator.operator_id, target_id), (SET_OPERATOR_STAN, ADMIN_OPERATOR.0, CASHIER.0));
    let h = &frame.header;
    check("set_operator", "passcode", operator.passcode, SecretKind::OperatorPasscode, ADMIN_OPERATOR.1, h);
    check("set_operator", "new_passcode", new_passcode, SecretKind::NewPasscode, CASHIER.1, h);

    let frame = decoded("card_admin_change_pin", &[CASHIER.1, PIN, NEW_PIN]);
    let Message::Request(Request::CardAdmin { operator, verification, new_pin, .. }) = frame.message else {
        panic!("{frame:?}")
    };
    assert_eq!((frame.header.stan, operator.operator_id), (CHANGE_PIN_STAN, CASHIER.0));
    let h = &frame.header;
    check("card_admin_change_pin", "passcode", operator.passcode, SecretKind::OperatorPasscode, CASHIER.1, h);
    check("card_admin_change_pin", "pin", verification.pin, SecretKind::Pin, PIN, h);
    check("card_admin_change_pin", "new_pin", new_pin, SecretKind::NewPin, NEW_PIN, h);
    assert_eq!((verification.approver_id, verification.approver_passcode), (0, Sealed::NONE));

    let frame = decoded("card_admin_return_card", &[FINANCE.1, APPROVER_PASSCODE]);
    let Message::Request(Request::CardAdmin { operator, verification, new_pin, .. }) = frame.message else {
        panic!("{frame:?}")
    };
    assert_eq!((frame.header.stan, verification.approver_id), (RETURN_CARD_STAN, APPROVER_ID));
    let h = &frame.header;
    check("card_admin_return_card", "passcode", operator.passcode, SecretKind::OperatorPasscode, FINANCE.1, h);
    check(
        "card_admin_return_card",
        "approver_passcode",
        verification.approver_passcode,
        SecretKind::Passcode,
        APPROVER_PASSCODE,
        h,
    );
    assert_eq!((verification.pin, new_pin), (Sealed::NONE, Sealed::NONE));

    let frame = decoded("card_admin_report_loss", &[SERVICE.1]);
    let Message::Request(Request::CardAdmin { operator, .. }) = frame.message else { panic!("{frame:?}") };
    check(
        "card_admin_report_loss",
        "passcode",
        operator.passcode,
        SecretKind::OperatorPasscode,
        SERVICE.1,
        &frame.header,
    );

    // The member requests (SPEC.md §5.21-§5.24) seal their operator's passcode as kind 5 too.
    let frame = decoded("register_member", &[SERVICE.1]);
    let Message::RegisterMember(register) = frame.message else { panic!("{frame:?}") };
    assert_eq!((frame.header.stan, register.operator.operator_id), (REGISTER_STAN, SERVICE.0));
    check(
        "register_member",
        "passcode",
        register.operator.passcode,
        SecretKind::OperatorPasscode,
        SERVICE.1,
        &frame.header,
    );
    for (name, stan, (operator_id, passcode)) in [
        ("member_query", MEMBER_QUERY_STAN, CASHIER),
        ("replace_card", REPLACE_STAN, SERVICE),
        ("card_history", HISTORY_STAN, CASHIER),
    ] {
        let frame = decoded(name, &[passcode]);
        let Message::Request(request) = frame.message else { panic!("{frame:?}") };
        let operator = request.operator().unwrap_or_else(|| panic!("{name} names its operator"));
        assert_eq!((frame.header.stan, operator.operator_id), (stan, operator_id), "{name}");
        check(name, "passcode", operator.passcode, SecretKind::OperatorPasscode, passcode, &frame.header);
    }

    // So do the product administration, the staff and invoice actions and the operator
    // sign-on (SPEC.md §5.20, §5.25, §5.26).
    for (name, stan, (operator_id, passcode)) in [
        ("set_product", SET_PRODUCT_STAN, ADMIN_OPERATOR),
        ("card_admin_set_staff", SET_STAFF_STAN, ADMIN_OPERATOR),
        ("card_admin_record_invoice", RECORD_INVOICE_STAN, FINANCE),
        ("operator_sign_on", OPERATOR_SIGN_ON_STAN, CASHIER),
    ] {
        let frame = decoded(name, &[passcode]);
        let Message::Request(request) = frame.message else { panic!("{frame:?}") };
        let operator = request.operator().unwrap_or_else(|| panic!("{name} names its operator"));
        assert_eq!((frame.header.stan, operator.operator_id), (stan, operator_id), "{name}");
        check(name, "passcode", operator.passcode, SecretKind::OperatorPasscode, passcode, &frame.header);
        if let Request::CardAdmin { verification, new_pin, .. } = request {
            assert_eq!((verification, new_pin), (Verification::NONE, Sealed::NONE), "{name}");
        }
    }
}

/// The fields of the product administration and of the two new admin actions sit where
/// SPEC.md §5.20 and §5.25 put them: `set_product`'s discount in basis points and its quantity
/// after the product code; a staff card's operator id and an invoice's amount in `value`, the
/// invoice's load in `original_txn_id`.
#[test]
fn the_product_and_staff_vectors_carry_their_values_where_the_spec_puts_them() {
    let body = |name: &str| {
        let wire = vector_wire(name);
        wire[LENGTH_PREFIX_BYTES + protocol::HEADER_BYTES..wire.len() - protocol::MAC_BYTES].to_vec()
    };
    let set_product = body("set_product");
    assert_eq!(set_product.len(), 29);
    // operator_id 4, passcode 16, then product, enabled, discount_bp, approved_quantity.
    assert_eq!(&set_product[20..], &[0, 3, 1, 0x0b, 0xb8, 0, 0, 0x01, 0xf4]);
    assert_eq!(body("set_product_reply"), [0, 0, 3, 1, 0, 0, 0, 2]);
    assert_eq!(body("operator_sign_on").len(), 20);
    assert_eq!(body("operator_sign_on_reply"), [0, 0, 0, 0, 31, 1, 1]);
    // batch_totals: business_date, then count (u32) and amount_minor (i64) of each of the
    // eight kinds; the reply puts code and in_balance first.
    let batch = body("batch_totals");
    assert_eq!(batch.len(), 4 + 8 * 12);
    assert_eq!(u32::from_be_bytes(batch[0..4].try_into().unwrap()), 20261122);
    let line = |bytes: &[u8], i: usize| {
        let at = 4 + 12 * i;
        (
            u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()),
            i64::from_be_bytes(bytes[at + 4..at + 12].try_into().unwrap()),
        )
    };
    assert_eq!((line(&batch, 0), line(&batch, 2), line(&batch, 5)), ((1, 50_000), (2, 17_345), (1, 2_000)));
    let reply = body("batch_totals_reply");
    assert_eq!((reply.len(), reply[0], reply[1]), (2 + 4 + 8 * 12, 0, 0));
    assert_eq!(line(&reply[2..], 5), (2, 3_000));
    // card_admin: operator 20, card 8, action at 28, flags, value at 30, original at 38.
    let staff = body("card_admin_set_staff");
    assert_eq!((staff[28], i64::from_be_bytes(staff[30..38].try_into().unwrap())), (12, 31));
    let invoice = body("card_admin_record_invoice");
    assert_eq!(invoice[28], AdminAction::RecordInvoice as u8);
    assert_eq!(i64::from_be_bytes(invoice[30..38].try_into().unwrap()), STAFF_CARD_OPENING_MINOR);
    assert_eq!(u64::from_be_bytes(invoice[38..46].try_into().unwrap()), STAFF_CARD_SALE_TXN);
}

/// The strings of a registration travel as a `u16` byte count and UTF-8 (SPEC.md §1, §5.21):
/// the vector's name is the six bytes of 张三 after the count 6, and its body is as long as
/// its fixed fields and its strings.
#[test]
fn the_registration_strings_are_counted_in_bytes_of_utf8() {
    let wire = vector_wire("register_member");
    let body = &wire[LENGTH_PREFIX_BYTES + protocol::HEADER_BYTES..wire.len() - protocol::MAC_BYTES];
    // operator_id, passcode, card, id_type, birth_date: 33 bytes, then the name's count.
    assert_eq!(&body[33..35], &[0, 6]);
    assert_eq!(std::str::from_utf8(&body[35..41]), Ok("张三"));
    let m = member();
    let strings = [&m.name, &m.id_number, &m.phone, &m.address, &m.email];
    assert_eq!(body.len(), 33 + strings.iter().map(|s| 2 + s.len()).sum::<usize>());
    // The reply of a declined registration carries its 26 fixed bytes and five empty strings.
    let invalid = vector_wire("register_member_reply_invalid");
    assert_eq!(invalid.len(), LENGTH_PREFIX_BYTES + protocol::HEADER_BYTES + 26 + protocol::MAC_BYTES);
}

#[test]
fn no_stray_vector_files() {
    if updating() {
        return; // the files may be being rewritten right now
    }
    let names: BTreeSet<String> = vectors().iter().map(|v| v.name.to_string()).collect();
    for entry in fs::read_dir(vectors_dir()).expect("protocol/vectors exists") {
        let path = entry.unwrap().path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let ext = path.extension().and_then(|s| s.to_str()).unwrap_or_default();
        assert!(names.contains(&stem) && (ext == "hex" || ext == "txt"), "{} belongs to no vector", path.display());
    }
}

#[test]
fn truncated_vectors_never_panic_and_never_decode() {
    for v in vectors() {
        let wire = encode(&v.frame);
        for len in 0..wire.len() {
            let cut = &wire[..len];
            // The codec waits for the rest: the length prefix promises more than is there.
            let mut buf = BytesMut::from(cut);
            assert!(
                matches!(FrameCodec::default().decode(&mut buf), Ok(None)),
                "{}: codec on {len} of {} bytes",
                v.name,
                wire.len()
            );
            // The pure decoder, given a cut frame as if it were whole, refuses it.
            if len >= LENGTH_PREFIX_BYTES {
                assert!(decode_frame(&cut[LENGTH_PREFIX_BYTES..]).is_err(), "{}: decoded {len} bytes", v.name);
            }
            // The cut frame with its length prefix corrected to match is refused too.
            if len > LENGTH_PREFIX_BYTES {
                let mut fixed = cut.to_vec();
                let declared = (len - LENGTH_PREFIX_BYTES) as u32;
                fixed[..LENGTH_PREFIX_BYTES].copy_from_slice(&declared.to_be_bytes());
                let mut buf = BytesMut::from(&fixed[..]);
                assert!(FrameCodec::default().decode(&mut buf).is_err(), "{}: codec decoded {len} bytes", v.name);
            }
        }
    }
}

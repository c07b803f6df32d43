//! Readable renderings of a frame: one `field = value` line per header and body field
//! ([`describe`]), and the frame's bytes as hex grouped by field with comments
//! ([`annotated_hex`]). The golden vectors in `vectors/` are written in these two forms; tools
//! use them to log traffic.
//!
//! Field names are those of SPEC.md §3 and §5. Enumerations are shown as their number followed
//! by their name in parentheses, amounts as minor units followed by yuan, so a line can be
//! checked against the spec by eye.

use std::fmt::Write;

use bytes::BytesMut;

use crate::auth::{TerminalKey, MAC_BYTES};
use crate::codec::encode_signed;
use crate::message::{
    CardReply, Frame, MemberData, Message, MsgType, OperatorAuth, Request, Response, Verification, FLAG_RETRANSMIT,
    KNOWN_FLAGS, MAX_MEMBER_ADDRESS_BYTES, MAX_MEMBER_EMAIL_BYTES, MAX_MEMBER_ID_NUMBER_BYTES, MAX_MEMBER_NAME_BYTES,
    MAX_MEMBER_PHONE_BYTES,
};
use crate::types::{
    format_minor, AdminAction, AdminFlags, CardNo, CardState, Category, LocalTime, OperatorRole, PaymentMethod,
    ResponseCode, SaleFlags, TerminalRole,
};
use crate::{HEADER_BYTES, LENGTH_PREFIX_BYTES, PROTOCOL_VERSION};

/// Names of the catalog's product codes carried by an import range (SPEC.md §5.13, §6.6).
pub fn product_name(product: u16) -> Option<&'static str> {
    Some(match product {
        1 => "member",
        2 => "gift",
        3 => "special",
        4 => "cash",
        5 => "comp",
        6 => "offset",
        7 => "room",
        8 => "vip_stored",
        _ => return None,
    })
}

/// A field's value as it appears after `=` in [`describe`].
enum Value {
    Int(u64),
    Signed(i64),
    Card(CardNo),
    Amount(i64),
    Time(LocalTime),
    Date(u32),
    Enum(u8, Option<&'static str>),
    MsgType(MsgType),
    Product(u16),
    HeaderFlags(u16),
    SaleFlags(u8),
    AdminFlags(u8),
    Notices(u8),
    Text(String),
    Bytes(Vec<u8>),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Signed(v) => write!(f, "{v}"),
            Value::Card(card) if card.is_valid() => write!(f, "{card}"),
            Value::Card(card) => write!(f, "{card} (invalid: {} digits)", card.digits()),
            Value::Amount(minor) => write!(f, "{minor} ({} yuan)", format_minor(*minor)),
            Value::Time(LocalTime(0)) => write!(f, "0 (none)"),
            Value::Time(t) if t.is_valid() => write!(f, "{} ({t})", t.0),
            Value::Time(t) => write!(f, "{} (invalid)", t.0),
            Value::Date(0) => write!(f, "0 (none)"),
            Value::Date(d) => {
                write!(f, "{d} ({:04}-{:02}-{:02})", d / 10_000, d / 100 % 100, d % 100)
            }
            Value::Enum(raw, name) => write!(f, "{raw} ({})", name.unwrap_or("unknown")),
            Value::MsgType(t) => write!(f, "0x{:02x} ({t})", *t as u8),
            Value::Product(p) => write!(f, "{p} ({})", product_name(*p).unwrap_or("unknown")),
            Value::HeaderFlags(flags) => {
                let mut names = Vec::new();
                if flags & FLAG_RETRANSMIT != 0 {
                    names.push("retransmit".to_string());
                }
                if flags & !KNOWN_FLAGS != 0 {
                    names.push(format!("reserved 0x{:04x}", flags & !KNOWN_FLAGS));
                }
                let names = if names.is_empty() { "none".to_string() } else { names.join("+") };
                write!(f, "0x{flags:04x} ({names})")
            }
            Value::SaleFlags(flags) => {
                let sale = SaleFlags(*flags);
                let known = SaleFlags(flags & SaleFlags::KNOWN);
                let mut names = if known.0 == 0 && sale.is_valid() {
                    "none".to_string()
                } else if known.0 == 0 {
                    String::new()
                } else {
                    known.names()
                };
                if !sale.is_valid() {
                    if !names.is_empty() {
                        names.push('+');
                    }
                    write!(names, "reserved 0x{:02x}", flags & !SaleFlags::KNOWN)?;
                }
                write!(f, "0x{flags:02x} ({names})")
            }
            Value::AdminFlags(flags) => {
                let known = flags & AdminFlags::KNOWN;
                let mut names = if known == 0 && *flags != 0 { String::new() } else { AdminFlags::names(known) };
                if flags & !AdminFlags::KNOWN != 0 {
                    if !names.is_empty() {
                        names.push('+');
                    }
                    write!(names, "reserved 0x{:02x}", flags & !AdminFlags::KNOWN)?;
                }
                write!(f, "0x{flags:02x} ({names})")
            }
            Value::Notices(notices) => {
                let mut names: Vec<String> = [
                    (CardReply::NOTICE_PIN_MUST_CHANGE, "pin_must_change"),
                    (CardReply::NOTICE_DORMANT, "dormant"),
                    (CardReply::NOTICE_RECYCLE, "recycle"),
                ]
                .iter()
                .filter(|(bit, _)| notices & bit != 0)
                .map(|(_, name)| name.to_string())
                .collect();
                if notices & !CardReply::KNOWN_NOTICES != 0 {
                    names.push(format!("reserved 0x{:02x}", notices & !CardReply::KNOWN_NOTICES));
                }
                let names = if names.is_empty() { "none".to_string() } else { names.join("+") };
                write!(f, "0x{notices:02x} ({names})")
            }
            Value::Text(text) => write!(f, "{text:?}"),
            Value::Bytes(bytes) => f.write_str(&hex(bytes)),
        }
    }
}

fn code(code: ResponseCode) -> Value {
    Value::Enum(code as u8, Some(code.as_str()))
}

fn category(raw: u8) -> Value {
    Value::Enum(raw, Category::from_u8(raw).map(Category::as_str))
}

fn method(raw: u8) -> Value {
    Value::Enum(raw, PaymentMethod::from_u8(raw).map(PaymentMethod::as_str))
}

fn operator_role(raw: u8) -> Value {
    Value::Enum(raw, OperatorRole::from_u8(raw).map(OperatorRole::as_str))
}

fn state(state: CardState) -> Value {
    Value::Enum(state as u8, Some(state.as_str()))
}

fn verification_fields(v: &Verification) -> Vec<(&'static str, Value, usize)> {
    vec![
        ("pin", Value::Bytes(v.pin.0.to_vec()), v.pin.0.len()),
        ("approver_id", Value::Int(v.approver_id.into()), 4),
        ("approver_passcode", Value::Bytes(v.approver_passcode.0.to_vec()), v.approver_passcode.0.len()),
    ]
}

fn operator_fields(operator: &OperatorAuth) -> Vec<(&'static str, Value, usize)> {
    vec![
        ("operator_id", Value::Int(operator.operator_id.into()), 4),
        ("passcode", Value::Bytes(operator.passcode.0.to_vec()), operator.passcode.0.len()),
    ]
}

/// The `value` of a `card_admin` request: an amount for the actions that move value by it
/// (SPEC §5.20), otherwise a plain number (points for `redeem_points`, 0 for the rest).
fn admin_value(action: u8, value: i64) -> Value {
    match AdminAction::from_u8(action) {
        Some(AdminAction::Adjust | AdminAction::LoadReversal | AdminAction::RecordInvoice) => Value::Amount(value),
        _ => Value::Signed(value),
    }
}

/// The fields of member data: ID type, birth date and the five strings with their lengths.
fn member_fields(member: &MemberData) -> Vec<(&'static str, Value, usize)> {
    let string = |name_len: &'static str, name: &'static str, text: &str, max: usize| {
        let mut end = text.len().min(max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        [(name_len, Value::Int(end as u64), 2), (name, Value::Text(text[..end].to_string()), end)]
    };
    let mut fields = vec![
        ("id_type", Value::Enum(member.id_type, id_type_name(member.id_type)), 1),
        ("birth_date", Value::Date(member.birth_date), 4),
    ];
    fields.extend(string("name_length", "name", &member.name, MAX_MEMBER_NAME_BYTES));
    fields.extend(string("id_number_length", "id_number", &member.id_number, MAX_MEMBER_ID_NUMBER_BYTES));
    fields.extend(string("phone_length", "phone", &member.phone, MAX_MEMBER_PHONE_BYTES));
    fields.extend(string("address_length", "address", &member.address, MAX_MEMBER_ADDRESS_BYTES));
    fields.extend(string("email_length", "email", &member.email, MAX_MEMBER_EMAIL_BYTES));
    fields
}

/// The names of a batch's lines (SPEC §5.27), `count` and `amount_minor` of each kind of
/// [`crate::message::BATCH_KINDS`] in order.
const BATCH_FIELD_NAMES: [(&str, &str); crate::message::BATCH_KINDS.len()] = [
    ("sell_card_count", "sell_card_amount_minor"),
    ("load_count", "load_amount_minor"),
    ("sale_count", "sale_amount_minor"),
    ("hold_count", "hold_amount_minor"),
    ("capture_count", "capture_amount_minor"),
    ("refund_count", "refund_amount_minor"),
    ("void_count", "void_amount_minor"),
    ("reversal_count", "reversal_amount_minor"),
];

fn batch_fields(totals: &crate::BatchTotals) -> Vec<(&'static str, Value, usize)> {
    let mut fields = Vec::new();
    for (i, (count, amount)) in BATCH_FIELD_NAMES.iter().enumerate() {
        fields.push((*count, Value::Int(totals.counts[i].into()), 4));
        fields.push((*amount, Value::Amount(totals.amounts_minor[i]), 8));
    }
    fields
}

/// Names of the ID types of a member registration (SPEC §6.12).
pub fn id_type_name(id_type: u8) -> Option<&'static str> {
    crate::types::IdType::from_u8(id_type).map(crate::types::IdType::as_str)
}

/// The body fields of `message` in wire order, each with its value and its size in bytes.
fn body_fields(message: &Message) -> Vec<(&'static str, Value, usize)> {
    use Value::*;
    match message {
        Message::RegisterMember(register) => {
            let mut fields = operator_fields(&register.operator);
            fields.push(("card", Card(register.card), 8));
            fields.extend(member_fields(&register.member));
            fields
        }
        Message::Request(req) => match *req {
            Request::MemberQuery { operator, card } => {
                let mut fields = operator_fields(&operator);
                fields.push(("card", Card(card), 8));
                fields
            }
            Request::OperatorSignOn { operator } => operator_fields(&operator),
            Request::BatchTotals { business_date, totals } => {
                let mut fields = vec![("business_date", Date(business_date), 4)];
                fields.extend(batch_fields(&totals));
                fields
            }
            Request::SetProduct { operator, product, enabled, discount_bp, approved_quantity } => {
                let mut fields = operator_fields(&operator);
                fields.extend([
                    ("product", Product(product), 2),
                    ("enabled", Int(enabled.into()), 1),
                    ("discount_bp", Int(discount_bp.into()), 2),
                    ("approved_quantity", Int(approved_quantity.into()), 4),
                ]);
                fields
            }
            Request::CardHistory { operator, card, after_txn_id } => {
                let mut fields = operator_fields(&operator);
                fields.extend([("card", Card(card), 8), ("after_txn_id", Int(after_txn_id), 8)]);
                fields
            }
            Request::ReplaceCard { operator, old_card, new_card, flags, method: m } => {
                let mut fields = operator_fields(&operator);
                fields.extend([
                    ("old_card", Card(old_card), 8),
                    ("new_card", Card(new_card), 8),
                    ("flags", AdminFlags(flags), 1),
                    ("method", method(m), 1),
                ]);
                fields
            }
            Request::SignOn { store_id } => vec![("store_id", Int(store_id.into()), 4)],
            Request::Echo => vec![],
            Request::Balance { card } => vec![("card", Card(card), 8)],
            Request::Sale { card, amount_minor, category: cat, flags, verification: v } => {
                let mut fields = vec![
                    ("card", Card(card), 8),
                    ("amount_minor", Amount(amount_minor), 8),
                    ("category", category(cat), 1),
                    ("sale_flags", SaleFlags(flags), 1),
                ];
                fields.extend(verification_fields(&v));
                fields
            }
            Request::Load { card, amount_minor, method: m } => {
                vec![("card", Card(card), 8), ("amount_minor", Amount(amount_minor), 8), ("method", method(m), 1)]
            }
            Request::Hold { card, amount_minor, category: cat, verification: v } => {
                let mut fields = vec![
                    ("card", Card(card), 8),
                    ("amount_minor", Amount(amount_minor), 8),
                    ("category", category(cat), 1),
                ];
                fields.extend(verification_fields(&v));
                fields
            }
            Request::Capture { card, hold_txn_id, amount_minor } => vec![
                ("card", Card(card), 8),
                ("hold_txn_id", Int(hold_txn_id), 8),
                ("amount_minor", Amount(amount_minor), 8),
            ],
            Request::Void { card, original_txn_id } => {
                vec![("card", Card(card), 8), ("original_txn_id", Int(original_txn_id), 8)]
            }
            Request::Refund { card, original_txn_id, amount_minor } => vec![
                ("card", Card(card), 8),
                ("original_txn_id", Int(original_txn_id), 8),
                ("amount_minor", Amount(amount_minor), 8),
            ],
            Request::Reversal { card, original_stan, amount_minor } => vec![
                ("card", Card(card), 8),
                ("original_stan", Int(original_stan.into()), 4),
                ("amount_minor", Amount(amount_minor), 8),
            ],
            Request::ImportRange { first, last, product, store_id } => vec![
                ("first", Card(first), 8),
                ("last", Card(last), 8),
                ("product", Product(product), 2),
                ("store_id", Int(store_id.into()), 4),
            ],
            Request::SellCard { card, amount_minor, method: m } => {
                vec![("card", Card(card), 8), ("amount_minor", Amount(amount_minor), 8), ("method", method(m), 1)]
            }
            Request::ProvisionTerminal { terminal_id, store_id, role, wrapped_key } => vec![
                ("terminal_id", Int(terminal_id.into()), 4),
                ("store_id", Int(store_id.into()), 4),
                ("role", Enum(role, TerminalRole::from_u8(role).map(TerminalRole::as_str)), 1),
                ("wrapped_key", Value::Bytes(wrapped_key.to_vec()), wrapped_key.len()),
            ],
            Request::SetTerminalState { terminal_id, enabled } => {
                vec![("terminal_id", Int(terminal_id.into()), 4), ("enabled", Int(enabled.into()), 1)]
            }
            Request::SetOperator { operator, target_id, role, store_id, enabled, new_passcode } => {
                let mut fields = operator_fields(&operator);
                fields.extend([
                    ("target_id", Int(target_id.into()), 4),
                    ("role", operator_role(role), 1),
                    ("store_id", Int(store_id.into()), 4),
                    ("enabled", Int(enabled.into()), 1),
                    ("new_passcode", Value::Bytes(new_passcode.0.to_vec()), new_passcode.0.len()),
                ]);
                fields
            }
            Request::CardAdmin {
                operator,
                card,
                action,
                flags,
                value,
                original_txn_id,
                ticket,
                verification: v,
                new_pin,
            } => {
                let mut fields = operator_fields(&operator);
                fields.extend([
                    ("card", Card(card), 8),
                    ("action", Enum(action, AdminAction::from_u8(action).map(AdminAction::as_str)), 1),
                    ("admin_flags", AdminFlags(flags), 1),
                    ("value", admin_value(action, value), 8),
                    ("original_txn_id", Int(original_txn_id), 8),
                    ("ticket", Int(ticket), 8),
                ]);
                fields.extend(verification_fields(&v));
                fields.push(("new_pin", Value::Bytes(new_pin.0.to_vec()), new_pin.0.len()));
                fields
            }
        },
        Message::Response(resp) => match resp {
            Response::BatchTotals(reply) => {
                let mut fields = vec![
                    ("code", code(reply.code), 1),
                    ("in_balance", Int(reply.in_balance.into()), 1),
                    ("business_date", Date(reply.business_date), 4),
                ];
                fields.extend(batch_fields(&reply.totals));
                fields
            }
            Response::Product(reply) => vec![
                ("code", code(reply.code), 1),
                ("product", Product(reply.product), 2),
                ("enabled", Int(reply.enabled.into()), 1),
                ("catalog_version", Int(reply.catalog_version.into()), 4),
            ],
            Response::History(reply) => {
                let shown = &reply.entries[..reply.entries.len().min(crate::message::MAX_HISTORY_ENTRIES)];
                let mut fields = vec![
                    ("code", code(reply.code), 1),
                    ("card", Card(reply.card), 8),
                    ("more", Int(reply.more.into()), 1),
                    ("count", Int(shown.len() as u64), 1),
                ];
                for e in shown {
                    fields.extend([
                        ("txn_id", Int(e.txn_id), 8),
                        ("kind", Enum(e.kind, crate::types::PostingKind::from_u8(e.kind).map(|k| k.as_str())), 1),
                        ("business_date", Date(e.business_date), 4),
                        ("time_ms", Signed(e.time_ms), 8),
                        ("store_id", Int(e.store_id.into()), 4),
                        ("terminal_id", Int(e.terminal_id.into()), 4),
                        ("operator_id", Int(e.operator_id.into()), 4),
                        ("amount_minor", Amount(e.amount_minor), 8),
                        ("cash_delta_minor", Amount(e.cash_delta_minor), 8),
                        ("bonus_delta_minor", Amount(e.bonus_delta_minor), 8),
                        ("held_delta_minor", Amount(e.held_delta_minor), 8),
                        ("points_delta", Signed(e.points_delta), 8),
                        ("cash_after_minor", Amount(e.cash_after_minor), 8),
                        ("bonus_after_minor", Amount(e.bonus_after_minor), 8),
                        ("held_after_minor", Amount(e.held_after_minor), 8),
                    ]);
                }
                fields
            }
            Response::Member { reply, .. } => {
                let mut fields = vec![
                    ("code", code(reply.code), 1),
                    ("card", Card(reply.card), 8),
                    ("state", state(reply.state), 1),
                    ("problem", Int(reply.problem.into()), 1),
                ];
                fields.extend(member_fields(&reply.member));
                fields
            }
            Response::SignOn(r) => {
                vec![("code", code(r.code), 1), ("business_date", Date(r.business_date), 4)]
            }
            Response::Echo { code: c } => vec![("code", code(*c), 1)],
            Response::Card { reply, .. } => vec![
                ("code", code(reply.code), 1),
                ("state", state(reply.state), 1),
                ("txn_id", Int(reply.txn_id), 8),
                ("amount_minor", Amount(reply.amount_minor), 8),
                ("cash_minor", Amount(reply.cash_minor), 8),
                ("bonus_minor", Amount(reply.bonus_minor), 8),
                ("held_minor", Amount(reply.held_minor), 8),
                ("gross_minor", Amount(reply.gross_minor), 8),
                ("discount_minor", Amount(reply.discount_minor), 8),
                ("points_earned", Signed(reply.points_earned), 8),
                ("points_balance", Signed(reply.points_balance), 8),
                ("tier", Int(reply.tier.into()), 1),
                ("notices", Notices(reply.notices), 1),
                ("pin_attempts_left", Int(reply.pin_attempts_left.into()), 1),
                ("limit_minor", Amount(reply.limit_minor), 8),
            ],
            Response::ImportRange(r) => {
                vec![("code", code(r.code), 1), ("card_count", Int(r.card_count), 8)]
            }
            Response::Terminal { reply, .. } => vec![
                ("code", code(reply.code), 1),
                ("terminal_id", Int(reply.terminal_id.into()), 4),
                ("enabled", Int(reply.enabled.into()), 1),
            ],
            Response::Operator(reply) | Response::OperatorSignOn(reply) => vec![
                ("code", code(reply.code), 1),
                ("operator_id", Int(reply.operator_id.into()), 4),
                ("role", operator_role(reply.role), 1),
                ("enabled", Int(reply.enabled.into()), 1),
            ],
            Response::Error { code: c, text } => {
                // What the encoder sends: the text cut to its maximum at a character boundary.
                let mut end = text.len().min(crate::MAX_ERROR_TEXT_BYTES);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                vec![
                    ("code", code(*c), 1),
                    ("text_length", Int(end as u64), 2),
                    ("text", Text(text[..end].to_string()), end),
                ]
            }
        },
    }
}

fn header_fields(frame: &Frame) -> Vec<(&'static str, Value, usize)> {
    vec![
        ("version", Value::Int(PROTOCOL_VERSION.into()), 1),
        ("msg_type", Value::MsgType(frame.message.msg_type()), 1),
        ("flags", Value::HeaderFlags(frame.header.flags), 2),
        ("terminal_id", Value::Int(frame.header.terminal_id.into()), 4),
        ("stan", Value::Int(frame.header.stan.into()), 4),
        ("local_time", Value::Time(frame.header.local_time), 8),
    ]
}

fn encoded(frame: &Frame, key: Option<&TerminalKey>) -> BytesMut {
    let mut wire = BytesMut::new();
    encode_signed(frame, key, &mut wire);
    wire
}

/// The frame as `field = value` lines: the length prefix, the six header fields, the body
/// fields in wire order, then the MAC under `key` (all zero without one). Message types are
/// shown in hex (`0x11 (sale)`), flags in hex with the names of the set bits, enumerations as
/// `number (name)`, amounts as `minor (yuan yuan)`, local times and dates also in calendar
/// form, text as a quoted, escaped string and byte strings as hex.
pub fn describe_signed(frame: &Frame, key: Option<&TerminalKey>) -> String {
    let wire = encoded(frame, key);
    let length = wire.len() - LENGTH_PREFIX_BYTES;
    let mut out = format!("length = {length}\n");
    for (name, value, _) in header_fields(frame).into_iter().chain(body_fields(&frame.message)) {
        let _ = writeln!(out, "{name} = {value}");
    }
    let _ = writeln!(out, "mac = {}", hex(&wire[wire.len() - MAC_BYTES..]));
    out
}

/// [`describe_signed`] without a key: for logging frames, where the MAC does not matter.
pub fn describe(frame: &Frame) -> String {
    describe_signed(frame, None)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `# title: field names` and then `bytes` as hex, one space-separated group per field
/// (groups longer than 32 bytes wrapped onto lines of 32 bytes).
fn hex_section(out: &mut String, title: &str, fields: &[(&'static str, Value, usize)], bytes: &[u8]) {
    if bytes.is_empty() {
        let _ = writeln!(out, "# {title}: empty");
        return;
    }
    let names: Vec<&str> = fields.iter().map(|(name, _, _)| *name).collect();
    let _ = writeln!(out, "# {title}: {}", names.join(" "));
    if fields.iter().map(|(_, _, size)| size).sum::<usize>() != bytes.len() {
        // Cannot happen for frames this crate encodes; plain hex keeps the bytes right anyway.
        let _ = writeln!(out, "{}", hex(bytes));
        return;
    }
    let mut line = Vec::new();
    let mut at = 0;
    for (_, _, size) in fields {
        let group = &bytes[at..at + size];
        at += size;
        if group.len() <= 32 {
            if !group.is_empty() {
                line.push(hex(group));
            }
            continue;
        }
        for chunk in group.chunks(32) {
            if !line.is_empty() {
                let _ = writeln!(out, "{}", line.join(" "));
                line.clear();
            }
            line.push(hex(chunk));
        }
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{}", line.join(" "));
    }
}

/// The encoded frame, length prefix included, as lowercase hex with its MAC under `key` (all
/// zero without one): one line for the length prefix, one for the header, one for the body
/// and one for the MAC, fields separated by spaces, each line preceded by a `#` comment naming
/// its fields. Byte strings longer than 32 bytes are wrapped at 32 bytes a line.
pub fn annotated_hex(frame: &Frame, key: Option<&TerminalKey>) -> String {
    let wire = encoded(frame, key);
    let (prefix, rest) = wire.split_at(LENGTH_PREFIX_BYTES);
    let (rest, mac) = rest.split_at(rest.len() - MAC_BYTES);
    let (header, body) = rest.split_at(HEADER_BYTES);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# length prefix: {} bytes follow ({HEADER_BYTES} header + {} body + {MAC_BYTES} MAC)",
        rest.len() + MAC_BYTES,
        body.len()
    );
    let _ = writeln!(out, "{}", hex(prefix));
    hex_section(&mut out, "header", &header_fields(frame), header);
    hex_section(&mut out, "body", &body_fields(&frame.message), body);
    let _ = writeln!(out, "# mac");
    let _ = writeln!(out, "{}", hex(mac));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Header;

    fn sale(category: u8, flags: u8) -> Frame {
        Frame {
            header: Header {
                flags: FLAG_RETRANSMIT | 0x8000,
                terminal_id: 1001,
                stan: 123,
                local_time: LocalTime(20261122093005),
            },
            message: Message::Request(Request::Sale {
                card: CardNo(6200880000000017),
                amount_minor: 12_345,
                category,
                flags,
                verification: Verification::NONE,
            }),
        }
    }

    #[test]
    fn unknown_values_are_named_as_such() {
        let text = describe(&sale(42, 0x09));
        assert!(text.contains("flags = 0x8001 (retransmit+reserved 0x8000)\n"), "{text}");
        assert!(text.contains("category = 42 (unknown)\n"), "{text}");
        assert!(text.contains("sale_flags = 0x09 (promotion+reserved 0x08)\n"), "{text}");
        assert!(describe(&sale(1, 0x08)).contains("sale_flags = 0x08 (reserved 0x08)\n"));
        assert!(describe(&sale(1, 0)).contains("sale_flags = 0x00 (none)\n"));
    }

    #[test]
    fn notices_are_named_and_reserved_bits_shown() {
        let reply = |notices| Frame {
            header: Header::default(),
            message: Message::Response(Response::Card {
                request: MsgType::Sale,
                reply: CardReply { notices, ..CardReply::default() },
            }),
        };
        assert!(describe(&reply(0)).contains("notices = 0x00 (none)\n"));
        assert!(describe(&reply(0x05)).contains("notices = 0x05 (pin_must_change+recycle)\n"));
        assert!(describe(&reply(0x0a)).contains("notices = 0x0a (dormant+reserved 0x08)\n"));
    }

    #[test]
    fn admin_flags_and_values_are_named_by_action() {
        let admin = |action: u8, flags: u8, value: i64| Frame {
            header: Header::default(),
            message: Message::Request(Request::CardAdmin {
                operator: OperatorAuth::default(),
                card: CardNo(6200880000000017),
                action,
                flags,
                value,
                original_txn_id: 0,
                ticket: 0,
                verification: Verification::NONE,
                new_pin: crate::Sealed::NONE,
            }),
        };
        let text = describe(&admin(AdminAction::Adjust as u8, AdminFlags::BONUS_BUCKET, -2_500));
        assert!(text.contains("action = 9 (adjust)\nadmin_flags = 0x04 (bonus_bucket)\n"), "{text}");
        assert!(text.contains("value = -2500 (-25.00 yuan)\n"), "{text}");
        // The header's flags and the body's admin flags are told apart.
        assert_eq!(text.matches("\nflags = ").count(), 1, "{text}");
        let text = describe(&admin(AdminAction::RedeemPoints as u8, AdminFlags::FOR_GIFT | 0x40, 250));
        assert!(text.contains("admin_flags = 0x48 (for_gift+reserved 0x40)\nvalue = 250\n"), "{text}");
        let text = describe(&admin(99, 0x10, 0));
        assert!(text.contains("action = 99 (unknown)\nadmin_flags = 0x10 (reserved 0x10)\nvalue = 0\n"), "{text}");
    }

    #[test]
    fn hex_groups_cover_the_whole_frame() {
        let frame = sale(2, 1);
        let digits: String = annotated_hex(&frame, None)
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        let wire = encoded(&frame, None);
        assert_eq!(digits, hex(&wire));
    }
}

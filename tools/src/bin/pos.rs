//! `pos`: a terminal simulator for trying the switch by hand. Sends one message (after a
//! sign-on where one is needed) and prints the response readably or as one JSON object.
//!
//! Exit status: 0 approved, 1 declined, 2 usage, connection or protocol error.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cardswitch_tools::{
    describe_io_error, format_date, json_string, parse_amount, parse_card, parse_category, parse_method, parse_product,
    parse_stan, product_name, sign_on_stan_from_clock, stan_from_clock, unix_ms_now, MAX_OPERATION_STAN,
};
use clap::{Parser, Subcommand};
use protocol::auth::MAX_SECRET_BYTES;
use protocol::client::{Client, ClientError, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_UTC_OFFSET_MINUTES};
use protocol::message::FLAG_RETRANSMIT;
use protocol::types::format_minor;
use protocol::{
    CardNo, CardReply, Category, Credential, ImportRangeReply, PaymentMethod, Request, Response, ResponseCode,
    SaleFlags, Sealed, SecretKind, SignOnReply, TerminalKey, TerminalRole, Verification, MAX_RANGE_CARDS,
};

const EXIT_APPROVED: u8 = 0;
const EXIT_DECLINED: u8 = 1;
const EXIT_ERROR: u8 = 2;

/// Sends one message to a cardswitch as a terminal and prints the response.
#[derive(Debug, Parser)]
#[command(
    name = "pos",
    version,
    after_help = "Amounts are yuan with at most two decimals (12.34). Every operation but \
                  sign-on and echo is sent after a sign-on at --store. The trace number (stan) \
                  used is always printed; to retransmit a request, run the same command again \
                  with --stan N --retransmit.\n\nA sale or hold on a card whose product asks for \
                  a PIN takes --pin; a manager lifts a restriction (a category or a limit) with \
                  --approver OPERATOR_ID --approver-passcode-file FILE. Both travel sealed under \
                  the terminal's key and the trace number, never in clear; to retransmit such a \
                  request, repeat the whole command, PIN and approver included, with --stan N \
                  --retransmit; to try another PIN after wrong_pin, send a new request (a new \
                  --stan, or none).\n\nExit status: 0 approved, 1 declined (a wrong PIN or a limit \
                  too), 2 usage, connection or protocol error."
)]
struct Cli {
    /// Address of the switch, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    addr: String,
    /// Terminal id sent in every header.
    #[arg(long, value_name = "ID", global = true, help_heading = "Global options")]
    terminal: Option<u32>,
    /// Credential file (`terminal <id>` and `key <hex>`) of the terminal to act as.
    #[arg(long, value_name = "PATH", global = true, help_heading = "Global options")]
    key_file: Option<PathBuf>,
    /// Admin credential file (default: $CARDSWITCH_HOME/admin.key, as the switch uses).
    #[arg(long, value_name = "PATH", global = true, help_heading = "Global options")]
    admin_key_file: Option<PathBuf>,
    /// Store the terminal signs on at.
    #[arg(long, value_name = "ID", default_value_t = 1)]
    store: u32,
    /// Trace number of the operation (1..=2147483647); default: milliseconds since local
    /// midnight + 1.
    #[arg(long, value_name = "N", value_parser = parse_stan, global = true,
        help_heading = "Global options")]
    stan: Option<u32>,
    /// Mark the operation as a retransmission (header flag); use with the original --stan.
    #[arg(long, global = true, help_heading = "Global options")]
    retransmit: bool,
    /// Print one JSON object instead of the readable block.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    #[command(subcommand)]
    op: Op,
}

#[derive(Debug, Subcommand)]
enum Op {
    /// Sign on at --store (just this message).
    SignOn,
    /// Echo test (just this message; needs no sign-on).
    Echo,
    /// Ask a card's balances.
    Balance {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
    },
    /// Debit a card.
    Sale {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
        /// Yuan, e.g. 12.34.
        #[arg(value_parser = parse_amount)]
        amount: i64,
        /// retail, dining, room, spa, tobacco, luxury, small_appliance, large_appliance, other.
        #[arg(long, default_value = "retail", value_parser = parse_category)]
        category: Category,
        /// Sale flag: promotion.
        #[arg(long)]
        promotion: bool,
        /// Sale flag: group purchase.
        #[arg(long)]
        group_purchase: bool,
        /// Sale flag: special price.
        #[arg(long)]
        special_price: bool,
        #[command(flatten)]
        checks: Checks,
    },
    /// Credit a card, paid by --method.
    Load {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
        /// Yuan, e.g. 100.
        #[arg(value_parser = parse_amount)]
        amount: i64,
        /// cash, bank_card, wechat, alipay, cheque or transfer.
        #[arg(long, value_parser = parse_method)]
        method: PaymentMethod,
    },
    /// Reserve value on a card (authorization).
    Hold {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
        /// Yuan, e.g. 500.
        #[arg(value_parser = parse_amount)]
        amount: i64,
        /// Sale category the hold is for (see sale --help).
        #[arg(long, default_value = "room", value_parser = parse_category)]
        category: Category,
        #[command(flatten)]
        checks: Checks,
    },
    /// Complete a hold for a final amount.
    Capture {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
        /// Txn id the hold was approved with.
        hold_txn_id: u64,
        /// Final amount in yuan.
        #[arg(value_parser = parse_amount)]
        amount: i64,
    },
    /// Cancel a same-day sale, load or hold.
    Void {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
        /// Txn id of the original.
        txn_id: u64,
    },
    /// Return value against a sale or capture.
    Refund {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
        /// Txn id of the original sale or capture.
        txn_id: u64,
        /// Yuan to return.
        #[arg(value_parser = parse_amount)]
        amount: i64,
    },
    /// Undo this terminal's request with ORIGINAL_STAN.
    Reversal {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
        /// Trace number the original request was sent with.
        original_stan: u32,
        /// Amount of the original in yuan.
        #[arg(value_parser = parse_amount)]
        amount: i64,
    },
    /// Import the card numbers FIRST..=LAST for a product and store.
    ImportRange {
        /// First card number of the range.
        #[arg(value_parser = parse_card)]
        first: CardNo,
        /// Last card number of the range (inclusive).
        #[arg(value_parser = parse_card)]
        last: CardNo,
        /// member, gift, special, cash, comp, offset, room, vip_stored, or a code 1..=8.
        #[arg(long, value_parser = parse_product)]
        product: u16,
        /// Store the range belongs to.
        #[arg(long = "store", value_name = "ID")]
        range_store: u32,
    },
    /// Sell an imported card with an opening load.
    SellCard {
        /// Card number, 8 to 19 digits.
        #[arg(value_parser = parse_card)]
        card: CardNo,
        /// Opening load in yuan.
        #[arg(value_parser = parse_amount, default_value = "0")]
        amount: i64,
        /// How the opening load is paid; required when AMOUNT is not 0 (default then: cash).
        #[arg(long, value_parser = parse_method)]
        method: Option<PaymentMethod>,
    },
    /// Provision terminal TERMINAL_ID (admin terminals only) with a key derived from the admin
    /// credential, so that `pos --terminal TERMINAL_ID` can act as it; --out also writes the
    /// key to a credential file for a real terminal.
    Provision {
        /// Terminal to provision.
        terminal_id: u32,
        /// Store the terminal signs on at.
        #[arg(long, value_name = "ID")]
        at_store: u32,
        /// pos or admin.
        #[arg(long, default_value = "pos", value_parser = parse_role)]
        role: TerminalRole,
        /// Write the terminal's credential (terminal id and key) to this new file, owner-only.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Enable or disable terminal TERMINAL_ID (admin terminals only).
    TerminalState {
        /// Terminal to enable or disable.
        terminal_id: u32,
        /// enabled or disabled.
        #[arg(value_parser = ["enabled", "disabled"])]
        state: String,
    },
}

/// What a sale or hold carries to prove it may proceed: the holder's PIN and a manager's
/// override. Sealed in `run`, once the terminal and the trace number are known.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
struct Checks {
    /// The card holder's PIN, 4 to 12 digits (products that ask for one).
    #[arg(long, value_name = "PIN", value_parser = parse_pin, help_heading = "Verification")]
    pin: Option<Pin>,
    /// Operator id of the manager approving an override of a restriction (category or limit);
    /// needs --approver-passcode-file.
    #[arg(long, value_name = "OPERATOR_ID", value_parser = parse_operator,
        requires = "approver_passcode_file", help_heading = "Verification")]
    approver: Option<u32>,
    /// File holding the approver's passcode (surrounding whitespace ignored); needs --approver.
    #[arg(long, value_name = "FILE", requires = "approver", help_heading = "Verification")]
    approver_passcode_file: Option<PathBuf>,
}

/// A PIN as typed: 4 to 12 ASCII digits. Never printed: `Debug` shows only that it is one.
#[derive(Clone, PartialEq, Eq)]
struct Pin(String);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(..)")
    }
}

/// Shortest and longest PIN, in digits (L3).
const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=12;

/// A PIN: 4 to 12 digits, nothing else.
fn parse_pin(text: &str) -> Result<Pin, String> {
    if PIN_DIGITS.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Pin(text.to_string()))
    } else {
        Err(format!("a PIN is {} to {} digits (0-9), nothing else", PIN_DIGITS.start(), PIN_DIGITS.end()))
    }
}

/// An approving operator's id: a number other than 0 (0 on the wire means "no override").
fn parse_operator(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(id) if id != 0 => Ok(id),
        _ => Err(format!("invalid operator id '{text}' (expected 1..={})", u32::MAX)),
    }
}

/// A passcode as a passcode file holds it: surrounding whitespace dropped, then one line of
/// 1 to 15 bytes. The error does not repeat the file's content.
fn parse_passcode(text: &str) -> Result<String, String> {
    let passcode = text.trim();
    if passcode.is_empty() || passcode.len() > MAX_SECRET_BYTES || passcode.chars().any(char::is_control) {
        return Err(format!("a passcode is one line of 1 to {MAX_SECRET_BYTES} bytes"));
    }
    Ok(passcode.to_string())
}

impl Checks {
    /// The approver's passcode, read from its file, when an approver is named.
    fn passcode(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.approver_passcode_file else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the approver's passcode file {}: {e}", path.display()))?;
        parse_passcode(&text).map(Some).map_err(|problem| format!("{}: {problem}", path.display()))
    }

    /// The verification of the request `terminal_id`/`stan` signed with `key`: the PIN and the
    /// approver's `passcode` sealed for that request alone.
    fn seal(
        &self,
        key: &TerminalKey,
        terminal_id: u32,
        stan: u32,
        passcode: Option<&str>,
    ) -> Result<Verification, String> {
        let seal = |kind, secret: &str| {
            Sealed::seal(key, kind, terminal_id, stan, secret).map_err(|e| format!("cannot seal the {kind:?}: {e}"))
        };
        let mut verification = Verification::NONE;
        if let Some(Pin(pin)) = &self.pin {
            verification.pin = seal(SecretKind::Pin, pin)?;
        }
        match (self.approver, passcode) {
            (Some(approver_id), Some(passcode)) => {
                verification.approver_id = approver_id;
                verification.approver_passcode = seal(SecretKind::Passcode, passcode)?;
            }
            (None, None) => {}
            _ => return Err("--approver and --approver-passcode-file go together".to_string()),
        }
        Ok(verification)
    }
}

fn parse_role(text: &str) -> Result<TerminalRole, String> {
    TerminalRole::from_name(text.trim()).ok_or_else(|| format!("unknown role '{text}' (expected pos or admin)"))
}

impl Op {
    /// The name the user typed, used in the output.
    fn name(&self) -> &'static str {
        match self {
            Op::SignOn => "sign-on",
            Op::Echo => "echo",
            Op::Balance { .. } => "balance",
            Op::Sale { .. } => "sale",
            Op::Load { .. } => "load",
            Op::Hold { .. } => "hold",
            Op::Capture { .. } => "capture",
            Op::Void { .. } => "void",
            Op::Refund { .. } => "refund",
            Op::Reversal { .. } => "reversal",
            Op::ImportRange { .. } => "import-range",
            Op::SellCard { .. } => "sell-card",
            Op::Provision { .. } => "provision",
            Op::TerminalState { .. } => "terminal-state",
        }
    }

    /// The PIN and override of a sale or hold.
    fn checks(&self) -> Option<&Checks> {
        match self {
            Op::Sale { checks, .. } | Op::Hold { checks, .. } => Some(checks),
            _ => None,
        }
    }

    /// The request to send; errors are usage errors found before connecting. A sale or hold
    /// goes without PIN or override here: they are sealed in `run`, once the stan is known.
    fn request(&self, store_id: u32) -> Result<Request, String> {
        Ok(match *self {
            Op::SignOn => Request::SignOn { store_id },
            Op::Echo => Request::Echo,
            Op::Balance { card } => Request::Balance { card },
            Op::Sale { card, amount, category, promotion, group_purchase, special_price, .. } => {
                let mut flags = 0;
                for (set, bit) in [
                    (promotion, SaleFlags::PROMOTION),
                    (group_purchase, SaleFlags::GROUP_PURCHASE),
                    (special_price, SaleFlags::SPECIAL_PRICE),
                ] {
                    if set {
                        flags |= bit;
                    }
                }
                Request::Sale {
                    card,
                    amount_minor: amount,
                    category: category as u8,
                    flags,
                    verification: Verification::NONE,
                }
            }
            Op::Load { card, amount, method } => Request::Load { card, amount_minor: amount, method: method as u8 },
            Op::Hold { card, amount, category, .. } => {
                Request::Hold { card, amount_minor: amount, category: category as u8, verification: Verification::NONE }
            }
            Op::Capture { card, hold_txn_id, amount } => Request::Capture { card, hold_txn_id, amount_minor: amount },
            Op::Void { card, txn_id } => Request::Void { card, original_txn_id: txn_id },
            Op::Refund { card, txn_id, amount } => {
                Request::Refund { card, original_txn_id: txn_id, amount_minor: amount }
            }
            Op::Reversal { card, original_stan, amount } => {
                Request::Reversal { card, original_stan, amount_minor: amount }
            }
            Op::ImportRange { first, last, product, range_store } => {
                if first > last {
                    return Err(format!("import-range: FIRST {first} is after LAST {last}"));
                }
                if last.0 - first.0 >= MAX_RANGE_CARDS {
                    return Err(format!("import-range: {first}..={last} holds more than {MAX_RANGE_CARDS} cards"));
                }
                Request::ImportRange { first, last, product, store_id: range_store }
            }
            Op::SellCard { card, amount, method } => {
                let method = match method {
                    Some(method) => method,
                    None if amount == 0 => PaymentMethod::Cash,
                    None => return Err("sell-card: --method is required when the opening load is not 0".to_string()),
                };
                Request::SellCard { card, amount_minor: amount, method: method as u8 }
            }
            // The key is wrapped in `run`, once the stan is known.
            Op::Provision { terminal_id, at_store, role, .. } => {
                Request::ProvisionTerminal { terminal_id, store_id: at_store, role: role as u8, wrapped_key: [0; 32] }
            }
            Op::TerminalState { terminal_id, ref state } => {
                Request::SetTerminalState { terminal_id, enabled: u8::from(state == "enabled") }
            }
        })
    }
}

/// What was sent, for the output.
struct Sent<'a> {
    op: &'a str,
    terminal: u32,
    stan: u32,
    retransmit: bool,
}

/// One line of the readable block and/or members of the JSON object.
struct Field {
    label: Option<&'static str>,
    text: String,
    json: Vec<(&'static str, String)>,
}

fn field(label: &'static str, text: impl Into<String>, key: &'static str, json: String) -> Field {
    Field { label: Some(label), text: text.into(), json: vec![(key, json)] }
}

fn money(label: &'static str, key: &'static str, minor: i64) -> Field {
    field(label, format_minor(minor), key, minor.to_string())
}

fn code_field(code: protocol::ResponseCode) -> Field {
    field("code", code.as_str(), "code", json_string(code.as_str()))
}

/// A line of the readable block only.
fn line(label: &'static str, text: impl Into<String>) -> Field {
    Field { label: Some(label), text: text.into(), json: vec![] }
}

/// `f` in the JSON object always, in the readable block only when it matters.
fn shown_if(matters: bool, mut f: Field) -> Field {
    if !matters {
        f.label = None;
    }
    f
}

/// The notice bits a reply may carry: bit, name in the JSON object, what the cashier reads.
const NOTICES: [(u8, &str, &str); 3] = [
    (CardReply::NOTICE_PIN_MUST_CHANGE, "pin_must_change", "PIN must be changed: ask the holder to change it"),
    (CardReply::NOTICE_DORMANT, "dormant", "dormant: the card will be frozen if it stays unused"),
    (CardReply::NOTICE_RECYCLE, "recycle", "return for recycling: the card is spent, take it back"),
];

/// One `notice` line per notice bit set, and the list of their names for the JSON object.
fn notice_fields(notices: u8) -> Vec<Field> {
    let (mut fields, mut names) = (Vec::new(), Vec::new());
    for mask in (0..8).map(|bit| 1u8 << bit).filter(|mask| notices & mask != 0) {
        match NOTICES.iter().find(|(bit, ..)| *bit == mask) {
            Some((_, name, text)) => {
                fields.push(line("notice", *text));
                names.push(json_string(name));
            }
            None => {
                let name = format!("0x{mask:02x}");
                fields.push(line("notice", format!("{name} (unknown to this pos)")));
                names.push(json_string(&name));
            }
        }
    }
    fields.push(Field { label: None, text: String::new(), json: vec![("notices", format!("[{}]", names.join(",")))] });
    fields
}

/// Why a decline happened, where the reply says more than its code: the PIN attempts left,
/// the limit the request ran into (the switch sets them with exactly these codes).
fn decline_fields(reply: &CardReply) -> Vec<Field> {
    let limit = |which: &str| line("limit", format!("{}  ({which})", format_minor(reply.limit_minor)));
    match reply.code {
        ResponseCode::WrongPin => vec![line(
            "pin",
            match reply.pin_attempts_left {
                0 => "wrong, 0 attempts left: the card is locked".to_string(),
                1 => "wrong, 1 attempt left".to_string(),
                n => format!("wrong, {n} attempts left"),
            },
        )],
        ResponseCode::PinRequired => vec![line("pin", "required: ask the holder for it (--pin)")],
        ResponseCode::LimitExceeded => vec![limit("per transaction or per day")],
        ResponseCode::LoadBelowMinimum => vec![limit("smallest load")],
        ResponseCode::LoadAboveMaximum => vec![limit("largest load")],
        ResponseCode::BalanceLimitExceeded => vec![limit("largest balance")],
        _ => vec![],
    }
}

fn card_fields(card: CardNo, reply: &CardReply) -> Vec<Field> {
    let txn = if reply.txn_id == 0 { "none".to_string() } else { reply.txn_id.to_string() };
    let discounted = reply.discount_minor != 0 || reply.gross_minor != reply.amount_minor;
    let mut amount = money("amount", "amount_minor", reply.amount_minor);
    if discounted {
        amount.text.push_str("  (net)");
    }
    let points = match reply.points_earned {
        0 => format!("balance {}", reply.points_balance),
        earned if earned > 0 => format!("+{earned} earned, balance {}", reply.points_balance),
        taken => format!("{taken} taken back, balance {}", reply.points_balance),
    };
    let mut fields = vec![code_field(reply.code)];
    fields.extend(decline_fields(reply));
    fields.extend([
        Field {
            label: Some("card"),
            text: format!("{card}  ({})", reply.state),
            json: vec![("card", json_string(&card.to_string())), ("state", json_string(reply.state.as_str()))],
        },
        field("txn id", txn, "txn_id", reply.txn_id.to_string()),
        shown_if(discounted, money("gross", "gross_minor", reply.gross_minor)),
        shown_if(discounted, money("discount", "discount_minor", reply.discount_minor)),
        amount,
        money("cash", "cash_minor", reply.cash_minor),
        money("bonus", "bonus_minor", reply.bonus_minor),
        money("held", "held_minor", reply.held_minor),
        money("available", "available_minor", reply.available_minor()),
        shown_if(
            reply.points_earned != 0 || reply.points_balance != 0,
            Field {
                label: Some("points"),
                text: points,
                json: vec![
                    ("points_earned", reply.points_earned.to_string()),
                    ("points_balance", reply.points_balance.to_string()),
                ],
            },
        ),
        shown_if(reply.tier != 0, field("tier", reply.tier.to_string(), "tier", reply.tier.to_string())),
    ]);
    fields.extend(notice_fields(reply.notices));
    fields.push(Field {
        label: None,
        text: String::new(),
        json: vec![
            ("pin_attempts_left", reply.pin_attempts_left.to_string()),
            ("limit_minor", reply.limit_minor.to_string()),
        ],
    });
    fields
}

fn sign_on_fields(store_id: u32, reply: &SignOnReply) -> Vec<Field> {
    let date = if reply.business_date == 0 { "none".to_string() } else { format_date(reply.business_date) };
    vec![
        code_field(reply.code),
        field("store", store_id.to_string(), "store", store_id.to_string()),
        field("date", date, "business_date", reply.business_date.to_string()),
    ]
}

fn import_range_fields(request: &Request, reply: &ImportRangeReply) -> Vec<Field> {
    let mut fields = vec![code_field(reply.code)];
    if let Request::ImportRange { first, last, product, store_id } = *request {
        let product_text = match product_name(product) {
            Some(name) => format!("{name} ({product})"),
            None => product.to_string(),
        };
        fields.push(Field {
            label: Some("range"),
            text: format!("{first} .. {last}"),
            json: vec![("first", json_string(&first.to_string())), ("last", json_string(&last.to_string()))],
        });
        fields.push(field("product", product_text, "product", product.to_string()));
        fields.push(field("store", store_id.to_string(), "store", store_id.to_string()));
    }
    fields.push(field("cards", reply.card_count.to_string(), "card_count", reply.card_count.to_string()));
    fields
}

fn render_text(sent: &Sent<'_>, fields: &[Field]) -> String {
    let mut out = format!("{}  terminal {}  stan {}", sent.op, sent.terminal, sent.stan);
    if sent.retransmit {
        out.push_str("  (retransmit)");
    }
    out.push('\n');
    for f in fields {
        if let Some(label) = f.label {
            let _ = writeln!(out, "  {label:<11}{}", f.text);
        }
    }
    out
}

fn render_json(sent: &Sent<'_>, fields: &[Field]) -> String {
    let mut members = vec![
        ("op", json_string(sent.op)),
        ("terminal", sent.terminal.to_string()),
        ("stan", sent.stan.to_string()),
        ("retransmit", sent.retransmit.to_string()),
    ];
    members.extend(fields.iter().flat_map(|f| f.json.iter().cloned()));
    let body: Vec<String> = members.iter().map(|(k, v)| format!("{}:{v}", json_string(k))).collect();
    format!("{{{}}}\n", body.join(","))
}

/// The fields of `response` when it is the right shape for `request`.
fn response_fields(request: &Request, response: &Response) -> Option<Vec<Field>> {
    match (request, response) {
        (Request::SignOn { store_id }, Response::SignOn(reply)) => Some(sign_on_fields(*store_id, reply)),
        (Request::Echo, Response::Echo { code }) => Some(vec![code_field(*code)]),
        (Request::ImportRange { .. }, Response::ImportRange(reply)) => Some(import_range_fields(request, reply)),
        (Request::ProvisionTerminal { .. } | Request::SetTerminalState { .. }, Response::Terminal { reply, .. }) => {
            Some(vec![
                code_field(reply.code),
                field("terminal", reply.terminal_id.to_string(), "terminal_id", reply.terminal_id.to_string()),
                field(
                    "state",
                    if reply.enabled == 1 { "enabled" } else { "disabled" },
                    "enabled",
                    (reply.enabled == 1).to_string(),
                ),
            ])
        }
        (_, Response::Card { request: answered, reply }) if *answered == request.msg_type() => {
            Some(card_fields(request.card()?, reply))
        }
        _ => None,
    }
}

/// Why the run failed (exit 2).
struct Failure(String);

fn call_failure(addr: &str, what: &str, stan: u32, posting: bool, error: ClientError) -> Failure {
    let hint = if posting {
        format!("; its outcome is unknown: send it again with --stan {stan} --retransmit, or reverse it")
    } else {
        String::new()
    };
    Failure(match error {
        ClientError::Connect(e) => format!("cannot connect to {addr}: {}", describe_io_error(&e)),
        ClientError::Timeout(ms) => {
            format!("no answer from {addr} to {what} (stan {stan}) within {} s{hint}", ms / 1000)
        }
        ClientError::Closed => {
            format!("{addr} closed the connection without answering {what} (stan {stan}){hint}")
        }
        ClientError::Protocol(protocol::ProtocolError::Io(e)) => {
            format!("connection to {addr} failed during {what} (stan {stan}): {}{hint}", describe_io_error(&e))
        }
        other => format!("protocol error from {addr} during {what} (stan {stan}): {other}{hint}"),
    })
}

/// Sends `request` with `stan` and `flags` and waits for its response.
async fn exchange(
    client: &mut Client,
    addr: &str,
    what: &str,
    stan: u32,
    flags: u16,
    request: Request,
) -> Result<Response, Failure> {
    let posting = !matches!(request, Request::SignOn { .. } | Request::Echo | Request::Balance { .. });
    client.send(stan, flags, request).await.map_err(|e| call_failure(addr, what, stan, posting, e))?;
    let response = client.receive(stan).await.map_err(|e| call_failure(addr, what, stan, posting, e))?;
    if let Response::Error { code, text } = &response {
        return Err(Failure(format!("the switch at {addr} refused the {what} frame (stan {stan}): {code}: {text}")));
    }
    Ok(response)
}

fn print_report(cli: &Cli, sent: &Sent<'_>, fields: &[Field]) {
    if cli.json {
        print!("{}", render_json(sent, fields));
    } else {
        print!("{}", render_text(sent, fields));
    }
}

/// The terminal to act as and its credential: the one of --key-file; else the admin
/// credential itself, or (with --terminal) the key derived from it for that terminal, as
/// `provision` gives it.
fn credential(cli: &Cli) -> Result<Credential, Failure> {
    if let Some(path) = &cli.key_file {
        let credential = Credential::load(path).map_err(Failure)?;
        if cli.terminal.is_some_and(|t| t != credential.terminal_id) {
            return Err(Failure(format!(
                "--terminal {} does not match terminal {} of {}",
                cli.terminal.unwrap_or_default(),
                credential.terminal_id,
                path.display()
            )));
        }
        return Ok(credential);
    }
    let admin = Credential::load_admin(cli.admin_key_file.as_deref()).map_err(Failure)?;
    Ok(match cli.terminal {
        Some(terminal_id) if terminal_id != admin.terminal_id => {
            Credential { terminal_id, key: admin.derive_terminal_key(terminal_id) }
        }
        _ => admin,
    })
}

/// Writes `credential` to a new owner-only file at `path`.
fn write_credential(path: &std::path::Path, credential: &Credential) -> Result<(), Failure> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(credential.to_text().as_bytes()))
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

async fn run(cli: &Cli) -> Result<u8, Failure> {
    let mut request = cli.op.request(cli.store).map_err(Failure)?;
    let now_ms = unix_ms_now();
    let stan = cli.stan.unwrap_or_else(|| stan_from_clock(now_ms, DEFAULT_UTC_OFFSET_MINUTES));
    debug_assert!((1..=MAX_OPERATION_STAN).contains(&stan));
    let flags = if cli.retransmit { FLAG_RETRANSMIT } else { 0 };
    let addr = cli.addr.as_str();
    let me = credential(cli)?;
    let terminal = me.terminal_id;
    if let Request::ProvisionTerminal { terminal_id, ref mut wrapped_key, .. } = request {
        let provisioned = Credential { terminal_id, key: me.derive_terminal_key(terminal_id) };
        *wrapped_key = me.key.wrap_for_transport(&provisioned.key, terminal, stan, terminal_id);
        if let Op::Provision { out: Some(path), .. } = &cli.op {
            write_credential(path, &provisioned)?;
        }
    }
    if let Some(checks) = cli.op.checks() {
        let passcode = checks.passcode().map_err(Failure)?;
        let sealed = checks.seal(&me.key, terminal, stan, passcode.as_deref()).map_err(Failure)?;
        if let Request::Sale { ref mut verification, .. } | Request::Hold { ref mut verification, .. } = request {
            *verification = sealed;
        }
    }

    let connect_timeout = Duration::from_millis(DEFAULT_CALL_TIMEOUT_MS);
    let mut client =
        match tokio::time::timeout(connect_timeout, Client::connect_with_key(addr, terminal, me.key.clone())).await {
            Err(_) => {
                return Err(Failure(format!(
                    "cannot connect to {addr}: no answer within {} s",
                    DEFAULT_CALL_TIMEOUT_MS / 1000
                )))
            }
            Ok(result) => result.map_err(|e| call_failure(addr, "connect", 0, false, e))?,
        };
    client.set_call_timeout_ms(DEFAULT_CALL_TIMEOUT_MS);

    if !matches!(request, Request::SignOn { .. } | Request::Echo) {
        let sign_on_stan = sign_on_stan_from_clock(now_ms);
        let sign_on = Request::SignOn { store_id: cli.store };
        let response = exchange(&mut client, addr, "sign-on", sign_on_stan, 0, sign_on).await?;
        let Some(fields) = response_fields(&sign_on, &response) else {
            return Err(Failure(format!(
                "the switch at {addr} answered sign-on (stan {sign_on_stan}) with {}",
                response.msg_type()
            )));
        };
        if !response.code().is_approved() {
            let sent = Sent { op: "sign-on", terminal, stan: sign_on_stan, retransmit: false };
            print_report(cli, &sent, &fields);
            eprintln!(
                "pos: sign-on at store {} declined ({}); {} (stan {stan}) not sent",
                cli.store,
                response.code(),
                cli.op.name()
            );
            return Ok(EXIT_DECLINED);
        }
    }

    let what = cli.op.name();
    let response = exchange(&mut client, addr, what, stan, flags, request).await?;
    let Some(fields) = response_fields(&request, &response) else {
        return Err(Failure(format!(
            "the switch at {addr} answered {what} (stan {stan}) with {}",
            response.msg_type()
        )));
    };
    let sent = Sent { op: what, terminal, stan, retransmit: cli.retransmit };
    print_report(cli, &sent, &fields);
    Ok(if response.code().is_approved() { EXIT_APPROVED } else { EXIT_DECLINED })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pos: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(status) => ExitCode::from(status),
        Err(Failure(message)) => {
            eprintln!("pos: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use protocol::MsgType;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pos").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sale_parses_amount_exactly_and_sets_flags() {
        let cli = parse(&[
            "--addr",
            "x:1",
            "--stan",
            "7",
            "sale",
            "6200880000000017",
            "12.34",
            "--promotion",
            "--special-price",
        ])
        .unwrap();
        assert_eq!((cli.terminal, cli.store, cli.stan), (None, 1, Some(7)));
        assert_eq!(
            cli.op.request(cli.store),
            Ok(Request::Sale {
                card: CardNo(6_200_880_000_000_017),
                amount_minor: 1234,
                category: Category::Retail as u8,
                flags: SaleFlags::PROMOTION | SaleFlags::SPECIAL_PRICE,
                verification: Verification::NONE,
            })
        );
    }

    #[test]
    fn defaults_and_global_options() {
        let cli = parse(&["--addr", "x:1", "hold", "62008800", "500", "--json", "--stan", "9"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.stan, Some(9));
        assert_eq!(
            cli.op.request(1),
            Ok(Request::Hold {
                card: CardNo(62_008_800),
                amount_minor: 50_000,
                category: Category::Room as u8,
                verification: Verification::NONE,
            })
        );
        let cli = parse(&["--addr", "x:1", "--store", "3", "sign-on"]).unwrap();
        assert_eq!(cli.op.request(cli.store), Ok(Request::SignOn { store_id: 3 }));
    }

    #[test]
    fn import_range_has_its_own_store_and_product_names() {
        let cli = parse(&[
            "--addr",
            "x:1",
            "--store",
            "1",
            "import-range",
            "62008800",
            "62008899",
            "--product",
            "vip_stored",
            "--store",
            "5",
        ])
        .unwrap();
        assert_eq!(
            cli.op.request(cli.store),
            Ok(Request::ImportRange { first: CardNo(62_008_800), last: CardNo(62_008_899), product: 8, store_id: 5 })
        );
        let backwards =
            parse(&["--addr", "x:1", "import-range", "62008899", "62008800", "--product", "2", "--store", "5"])
                .unwrap();
        assert!(backwards.op.request(1).is_err());
    }

    #[test]
    fn sell_card_needs_a_method_only_for_money() {
        let cli = parse(&["--addr", "x:1", "sell-card", "62008800"]).unwrap();
        assert_eq!(
            cli.op.request(1),
            Ok(Request::SellCard { card: CardNo(62_008_800), amount_minor: 0, method: PaymentMethod::Cash as u8 })
        );
        let cli = parse(&["--addr", "x:1", "sell-card", "62008800", "100"]).unwrap();
        assert!(cli.op.request(1).is_err());
        let cli = parse(&["--addr", "x:1", "sell-card", "62008800", "100", "--method", "cheque"]).unwrap();
        assert_eq!(
            cli.op.request(1),
            Ok(Request::SellCard {
                card: CardNo(62_008_800),
                amount_minor: 10_000,
                method: PaymentMethod::Cheque as u8
            })
        );
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for args in [
            &["--addr", "x:1", "balance", "123"][..],
            &["--addr", "x:1", "sale", "6200880000000017", "12.345"],
            &["--addr", "x:1", "sale", "6200880000000017", "-1"],
            &["--addr", "x:1", "sale", "6200880000000017", "1", "--category", "food"],
            &["--addr", "x:1", "load", "6200880000000017", "1"],
            &["--addr", "x:1", "load", "6200880000000017", "1", "--method", "gold"],
            &["--addr", "x:1", "--stan", "0", "echo"],
            &["--addr", "x:1", "--stan", "2147483648", "echo"],
            &["--addr", "x:1", "import-range", "62008800", "62008899", "--product", "9", "--store", "1"],
            &["balance", "6200880000000017"],
        ] {
            let error = parse(args).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn output_block_and_json() {
        let reply = CardReply {
            code: protocol::ResponseCode::Approved,
            state: protocol::CardState::Active,
            txn_id: 1024,
            amount_minor: 1234,
            cash_minor: 8766,
            bonus_minor: 0,
            held_minor: 0,
            gross_minor: 1234,
            ..CardReply::default()
        };
        let request = sale_request(1234);
        let response = Response::Card { request: MsgType::Sale, reply };
        let fields = response_fields(&request, &response).unwrap();
        let sent = Sent { op: "sale", terminal: 1001, stan: 45_213_007, retransmit: false };
        assert_eq!(
            render_text(&sent, &fields),
            "sale  terminal 1001  stan 45213007\n\
             \x20 code       approved\n\
             \x20 card       6200880000000017  (active)\n\
             \x20 txn id     1024\n\
             \x20 amount     12.34\n\
             \x20 cash       87.66\n\
             \x20 bonus      0.00\n\
             \x20 held       0.00\n\
             \x20 available  87.66\n"
        );
        assert_eq!(
            render_json(&sent, &fields),
            "{\"op\":\"sale\",\"terminal\":1001,\"stan\":45213007,\"retransmit\":false,\
             \"code\":\"approved\",\"card\":\"6200880000000017\",\"state\":\"active\",\
             \"txn_id\":1024,\"gross_minor\":1234,\"discount_minor\":0,\"amount_minor\":1234,\
             \"cash_minor\":8766,\"bonus_minor\":0,\"held_minor\":0,\"available_minor\":8766,\
             \"points_earned\":0,\"points_balance\":0,\"tier\":0,\"notices\":[],\"pin_attempts_left\":0,\
             \"limit_minor\":0}\n"
        );
        // A reply of the wrong type is not accepted as the answer.
        let wrong = Response::Card { request: MsgType::Load, reply };
        assert!(response_fields(&request, &wrong).is_none());
        let sign_on = Response::SignOn(SignOnReply { code: protocol::ResponseCode::Approved, business_date: 20261122 });
        let fields = response_fields(&Request::SignOn { store_id: 1 }, &sign_on).unwrap();
        assert!(render_text(&sent, &fields).contains("  date       2026-11-22\n"));
        assert!(render_json(&sent, &fields).contains("\"business_date\":20261122"));
    }

    fn sale_request(amount_minor: i64) -> Request {
        Request::Sale {
            card: CardNo(6_200_880_000_000_017),
            amount_minor,
            category: Category::Retail as u8,
            flags: 0,
            verification: Verification::NONE,
        }
    }

    fn test_key() -> TerminalKey {
        TerminalKey::from_bytes(std::array::from_fn(|i| i as u8 ^ 0x5a))
    }

    fn text_of(request: &Request, reply: CardReply) -> String {
        let response = Response::Card { request: request.msg_type(), reply };
        let fields = response_fields(request, &response).unwrap();
        render_text(&Sent { op: request.msg_type().as_str(), terminal: 1001, stan: 7, retransmit: false }, &fields)
    }

    fn json_of(request: &Request, reply: CardReply) -> String {
        let response = Response::Card { request: request.msg_type(), reply };
        let fields = response_fields(request, &response).unwrap();
        render_json(&Sent { op: request.msg_type().as_str(), terminal: 1001, stan: 7, retransmit: false }, &fields)
    }

    #[test]
    fn pin_is_4_to_12_digits_and_sealed_for_the_stan() {
        let args = |pin: &str| {
            ["--addr", "x:1", "--stan", "7", "sale", "6200880000000017", "10", "--pin"]
                .into_iter()
                .map(str::to_string)
                .chain([pin.to_string()])
                .collect::<Vec<_>>()
        };
        for good in ["1234", "000000", "123456789012"] {
            let cli = Cli::try_parse_from(std::iter::once("pos".to_string()).chain(args(good))).unwrap();
            assert_eq!(cli.op.checks().unwrap().pin, Some(Pin(good.to_string())));
        }
        for bad in ["123", "1234567890123", "12a4", " 1234", "12 34", "１２３４", ""] {
            let error = Cli::try_parse_from(std::iter::once("pos".to_string()).chain(args(bad))).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
            let message = error.to_string();
            assert!(message.contains("a PIN is 4 to 12 digits"), "{message}");
        }
        // Not on the operations that take none; the PIN never shows in a debug print.
        assert!(parse(&["--addr", "x:1", "load", "62008800", "1", "--method", "cash", "--pin", "1234"]).is_err());
        let cli = parse(&["--addr", "x:1", "hold", "62008800", "5", "--pin", "987654"]).unwrap();
        assert!(!format!("{cli:?}").contains("987654"));

        // Sealed for terminal and stan: the switch opens it with the same key, terminal and stan.
        let checks = cli.op.checks().unwrap();
        let key = test_key();
        let v = checks.seal(&key, 1001, 42, None).unwrap();
        assert_eq!(v.pin.open(&key, SecretKind::Pin, 1001, 42), Ok(Some(b"987654".to_vec())));
        assert_ne!(v.pin.open(&key, SecretKind::Pin, 1001, 43), Ok(Some(b"987654".to_vec())));
        assert_eq!((v.approver_id, v.approver_passcode), (0, Sealed::NONE));
        // The same command again (a retransmission) seals the same bytes.
        assert_eq!(checks.seal(&key, 1001, 42, None).unwrap(), v);
        // No PIN: nothing sealed.
        let cli = parse(&["--addr", "x:1", "sale", "62008800", "5"]).unwrap();
        assert_eq!(cli.op.checks().unwrap().seal(&key, 1001, 42, None), Ok(Verification::NONE));
    }

    #[test]
    fn approver_needs_its_passcode_file_and_seals_the_passcode() {
        let base = ["--addr", "x:1", "sale", "62008800", "5"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        for alone in [
            &["--approver", "77"][..],
            &["--approver-passcode-file", "p"],
            &["--approver", "0", "--approver-passcode-file", "p"],
        ] {
            assert_eq!(with(alone).unwrap_err().exit_code(), 2, "{alone:?}");
        }
        let dir = std::env::temp_dir().join(format!("pos-passcode-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("passcode");
        std::fs::write(&file, "  s3cret-42\n").unwrap();
        let cli =
            with(&["--pin", "1234", "--approver", "77", "--approver-passcode-file", file.to_str().unwrap()]).unwrap();
        let checks = cli.op.checks().unwrap();
        let passcode = checks.passcode().unwrap();
        assert_eq!(passcode.as_deref(), Some("s3cret-42"));
        let key = test_key();
        let v = checks.seal(&key, 1001, 9, passcode.as_deref()).unwrap();
        assert_eq!(v.approver_id, 77);
        assert_eq!(v.approver_passcode.open(&key, SecretKind::Passcode, 1001, 9), Ok(Some(b"s3cret-42".to_vec())));
        assert_eq!(v.pin.open(&key, SecretKind::Pin, 1001, 9), Ok(Some(b"1234".to_vec())));

        for bad in ["", "  \n", "0123456789abcdef", "two\nlines"] {
            std::fs::write(&file, bad).unwrap();
            let problem = checks.passcode().unwrap_err();
            assert!(problem.contains("a passcode is one line of 1 to 15 bytes"), "{problem}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = with(&["--approver", "77", "--approver-passcode-file", "/nonexistent/pos/passcode"]).unwrap();
        assert!(missing.op.checks().unwrap().passcode().unwrap_err().contains("cannot read"));
    }

    #[test]
    fn discounts_points_tier_and_notices_are_shown_when_they_matter() {
        let reply = CardReply {
            code: ResponseCode::Approved,
            state: protocol::CardState::Active,
            txn_id: 2048,
            amount_minor: 12_850,
            cash_minor: 37_150,
            gross_minor: 15_000,
            discount_minor: 2_150,
            points_earned: 128,
            points_balance: 1_340,
            tier: 2,
            notices: CardReply::NOTICE_PIN_MUST_CHANGE | CardReply::NOTICE_DORMANT | CardReply::NOTICE_RECYCLE,
            ..CardReply::default()
        };
        assert_eq!(
            text_of(&sale_request(15_000), reply),
            "sale  terminal 1001  stan 7\n\
             \x20 code       approved\n\
             \x20 card       6200880000000017  (active)\n\
             \x20 txn id     2048\n\
             \x20 gross      150.00\n\
             \x20 discount   21.50\n\
             \x20 amount     128.50  (net)\n\
             \x20 cash       371.50\n\
             \x20 bonus      0.00\n\
             \x20 held       0.00\n\
             \x20 available  371.50\n\
             \x20 points     +128 earned, balance 1340\n\
             \x20 tier       2\n\
             \x20 notice     PIN must be changed: ask the holder to change it\n\
             \x20 notice     dormant: the card will be frozen if it stays unused\n\
             \x20 notice     return for recycling: the card is spent, take it back\n"
        );
        let json = json_of(&sale_request(15_000), reply);
        for member in [
            "\"gross_minor\":15000,\"discount_minor\":2150,\"amount_minor\":12850,",
            "\"points_earned\":128,\"points_balance\":1340,\"tier\":2,",
            "\"notices\":[\"pin_must_change\",\"dormant\",\"recycle\"],",
        ] {
            assert!(json.contains(member), "{member} in {json}");
        }
        // A refund takes points back; an unknown notice bit is still shown.
        let refund = Request::Refund { card: CardNo(6_200_880_000_000_017), original_txn_id: 2048, amount_minor: 500 };
        let reply = CardReply {
            amount_minor: 500,
            gross_minor: 500,
            discount_minor: 0,
            points_earned: -5,
            points_balance: 1_335,
            notices: 0x10,
            ..reply
        };
        let text = text_of(&refund, reply);
        assert!(text.contains("  points     -5 taken back, balance 1335\n"), "{text}");
        assert!(text.contains("  notice     0x10 (unknown to this pos)\n"), "{text}");
        assert!(!text.contains("gross") && !text.contains("(net)"), "{text}");
        assert!(json_of(&refund, reply).contains("\"notices\":[\"0x10\"]"));
    }

    #[test]
    fn wrong_pin_and_limit_declines_say_why() {
        let declined = |code, pin_attempts_left, limit_minor| CardReply {
            code,
            state: protocol::CardState::Active,
            cash_minor: 50_000,
            pin_attempts_left,
            limit_minor,
            ..CardReply::default()
        };
        let sale = sale_request(1_000);
        let text = text_of(&sale, declined(ResponseCode::WrongPin, 2, 0));
        assert!(
            text.starts_with(
                "sale  terminal 1001  stan 7\n  code       wrong_pin\n  pin        wrong, 2 attempts left\n"
            ),
            "{text}"
        );
        assert!(text.contains("  amount     0.00\n  cash       500.00\n"), "{text}");
        assert!(!text.contains("points") && !text.contains("tier") && !text.contains("notice"), "{text}");
        assert!(json_of(&sale, declined(ResponseCode::WrongPin, 2, 0)).contains("\"pin_attempts_left\":2,"));
        let text = text_of(&sale, declined(ResponseCode::WrongPin, 1, 0));
        assert!(text.contains("  pin        wrong, 1 attempt left\n"), "{text}");
        assert!(text_of(&sale, declined(ResponseCode::WrongPin, 0, 0))
            .contains("  pin        wrong, 0 attempts left: the card is locked\n"));
        assert!(text_of(&sale, declined(ResponseCode::PinRequired, 0, 0)).contains("  pin        required"));

        let limit = declined(ResponseCode::LimitExceeded, 0, 500_000);
        let text = text_of(&sale, limit);
        assert!(
            text.contains("  code       limit_exceeded\n  limit      5000.00  (per transaction or per day)\n"),
            "{text}"
        );
        assert!(json_of(&sale, limit).contains("\"limit_minor\":500000}"));
        let load = Request::Load { card: CardNo(6_200_880_000_000_017), amount_minor: 50, method: 1 };
        for (code, which) in [
            (ResponseCode::LoadBelowMinimum, "100.00  (smallest load)"),
            (ResponseCode::LoadAboveMaximum, "100.00  (largest load)"),
            (ResponseCode::BalanceLimitExceeded, "100.00  (largest balance)"),
        ] {
            let text = text_of(&load, declined(code, 0, 10_000));
            assert!(text.contains(&format!("  limit      {which}\n")), "{text}");
        }
        // Other declines carry no such line.
        let text = text_of(&sale, declined(ResponseCode::InsufficientValue, 0, 0));
        assert!(!text.contains("  pin ") && !text.contains("  limit "), "{text}");
    }
}

//! `pos`: a terminal simulator for trying the switch by hand. Sends one message (after a
//! sign-on where one is needed) and prints the response readably or as one JSON object.
//! The binary is `src/bin/pos.rs`; `cardswitch admin` runs its administrative operations
//! through [`admin`].
//!
//! Exit status: 0 approved, 1 declined, 2 usage, connection or protocol error, 3 batch totals
//! out of balance.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{
    describe_io_error, format_date, json_string, parse_amount, parse_card, parse_category, parse_method, parse_product,
    parse_stan, product_name, sign_on_stan_from_clock, stan_from_clock, unix_ms_now, MAX_OPERATION_STAN,
    SIGN_ON_STAN_BIT,
};
use clap::{Parser, Subcommand};
use protocol::auth::MAX_SECRET_BYTES;
use protocol::client::{Client, ClientError, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_UTC_OFFSET_MINUTES};
use protocol::describe::id_type_name;
use protocol::message::{
    BATCH_KINDS, FLAG_RETRANSMIT, MAX_MEMBER_ADDRESS_BYTES, MAX_MEMBER_EMAIL_BYTES, MAX_MEMBER_ID_NUMBER_BYTES,
    MAX_MEMBER_NAME_BYTES, MAX_MEMBER_PHONE_BYTES,
};
use protocol::types::{format_minor, parse_minor};
use protocol::{
    AdminAction, AdminFlags, BatchTotals, BatchTotalsReply, CardNo, CardReply, Category, Credential, HistoryEntry,
    HistoryReply, ImportRangeReply, LocalTime, MemberData, MemberReply, Message, MsgType, OperatorAuth, OperatorReply,
    OperatorRole, PaymentMethod, PostingKind, ProductReply, RegisterMember, Request, Response, ResponseCode, SaleFlags,
    Sealed, SecretKind, SignOnReply, TerminalKey, TerminalRole, Verification, MAX_AMOUNT_MINOR, MAX_RANGE_CARDS,
};

const EXIT_APPROVED: u8 = 0;
const EXIT_DECLINED: u8 = 1;
const EXIT_ERROR: u8 = 2;
/// `batch-totals` approved, but the switch's figures are not the terminal's: apart from a
/// decline, so that a script tells a batch to look into from one the switch refused.
const EXIT_OUT_OF_BALANCE: u8 = 3;

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
                  --stan, or none).\n\nAn operation on a card by an operator (admin ACTION CARD), \
                  setting an operator (set-operator ID, admin terminals only) and the member \
                  requests (register-member, member, replace-card, history) name the operator \
                  carrying them out with --operator OPERATOR_ID --passcode-file FILE; the \
                  operator's role and store decide what it may do (customer service registers \
                  members and replaces their cards, and sees them in full; the counter and \
                  finance see them masked). Passcodes, the PIN and the new \
                  PIN (--new-pin) travel sealed like a sale's PIN. A manager approves a card return \
                  with --approver and --approver-passcode-file, as for a sale. Enabling or \
                  disabling a product (set-product PRODUCT, admin terminals only) is an admin \
                  operator's too.\n\nA cashier rings up a sale with --cashier OPERATOR_ID \
                  --cashier-passcode-file FILE: pos signs the cashier on to the session \
                  (operator_sign_on) after the sign-on and before the operation, so that the \
                  switch journals the sale with the cashier and flags a purchase on the \
                  cashier's own staff card. The session ends when pos exits: operator-sign-on \
                  alone only checks that the cashier may sign on.\n\nbatch-totals sends the terminal's \
                  own counts and amounts of the day's postings per kind (--sale COUNT:YUAN, ...) \
                  for the switch to compare with its own: see batch-totals --help.\n\nExit \
                  status: 0 approved (batch-totals: in balance), 1 declined (a wrong PIN or a limit \
                  too), 2 usage, connection or protocol error, 3 batch-totals out of balance."
)]
pub struct Cli {
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
    /// Cashier (or front desk) operator to sign on to the session after the sign-on and
    /// before the operation (operator_sign_on), so that a sale is rung up by it; needs
    /// --cashier-passcode-file.
    #[arg(long, value_name = "OPERATOR_ID", value_parser = parse_operator, global = true,
        requires = "cashier_passcode_file", help_heading = "Global options")]
    cashier: Option<u32>,
    /// File holding the cashier's passcode (surrounding whitespace ignored); needs --cashier.
    #[arg(long, value_name = "FILE", global = true, requires = "cashier", help_heading = "Global options")]
    cashier_passcode_file: Option<PathBuf>,
    #[command(subcommand)]
    op: Op,
    /// The name errors are printed under: `pos`, or `cardswitch admin`.
    #[arg(skip = "pos")]
    program: &'static str,
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
    ImportRange(ImportRangeArgs),
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
    Provision(ProvisionArgs),
    /// Enable or disable terminal TERMINAL_ID (admin terminals only).
    TerminalState(TerminalStateArgs),
    /// Carry out ACTION on a card as an operator (card_admin): report a loss, freeze, unfreeze,
    /// unlock, change the PIN, confirm funds, take the card back, recycle a gift card, correct
    /// a balance, reverse a load, redeem points, make it a staff member's card, record an
    /// invoice issued for a load.
    Admin(AdminArgs),
    /// Create or change operator ID: its role, store, state and passcode (admin terminals
    /// only, by an admin operator).
    SetOperator(SetOperatorArgs),
    /// Enable or disable PRODUCT, with a special product's approved discount and quantity
    /// (admin terminals only, by an admin operator); the catalog version goes up by one.
    SetProduct(SetProductArgs),
    /// Sign a cashier (or front desk) operator on to the session (operator_sign_on). The
    /// session ends when pos exits, so this only checks the operator; to ring up a sale as a
    /// cashier, give the operation --cashier and --cashier-passcode-file.
    OperatorSignOn {
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Register the holder of a sold real-name card (customer service only): name, ID and
    /// phone required, address, e-mail and birth date optional.
    RegisterMember(RegisterArgs),
    /// Show the registered holder of a card: in full to customer service, masked (ID number
    /// and phone to their last four characters) to the counter and finance.
    Member(MemberArgs),
    /// Replace the registered member card OLD by NEW, a card in stock of the same product
    /// (customer service only): OLD closes, its value, points, tier and validity move to NEW.
    ReplaceCard(ReplaceArgs),
    /// List a card's postings, oldest first, with the balances after each (up to 100 at a
    /// time; --all asks until there are no more).
    History(HistoryArgs),
    /// Compare this terminal's batch of a business date with the switch's: its own counts and
    /// amounts of postings per kind (--sale COUNT:YUAN, ...); the switch answers in balance or
    /// out of balance, with its figures (exit status 3 when out of balance).
    BatchTotals(BatchArgs),
}

/// `import-range FIRST LAST`: the range, its product and its store.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ImportRangeArgs {
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
}

/// `provision TERMINAL_ID`: the terminal, its store and role, and where its credential goes.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ProvisionArgs {
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
}

/// `terminal-state TERMINAL_ID enabled|disabled`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct TerminalStateArgs {
    /// Terminal to enable or disable.
    terminal_id: u32,
    /// enabled or disabled.
    #[arg(value_parser = ["enabled", "disabled"])]
    state: String,
}

/// `member CARD`: the card and the operator asking.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct MemberArgs {
    /// Card number, 8 to 19 digits.
    #[arg(value_parser = parse_card)]
    card: CardNo,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// `register-member CARD`: the holder's data, checked by the switch as a whole (M2).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct RegisterArgs {
    /// Card number, 8 to 19 digits: a sold card of a real-name product.
    #[arg(value_parser = parse_card)]
    card: CardNo,
    /// The holder's name as on the ID (at most 64 bytes of UTF-8).
    #[arg(long, value_parser = member_text("--name", MAX_MEMBER_NAME_BYTES, true))]
    name: String,
    /// id_card (居民身份证), passport or military_id.
    #[arg(long, value_parser = parse_id_type)]
    id_type: u8,
    /// The ID's number (at most 20 bytes); an id_card's is 18 characters, the last its check
    /// character.
    #[arg(long, value_parser = member_text("--id-number", MAX_MEMBER_ID_NUMBER_BYTES, true))]
    id_number: String,
    /// Phone number: 6 to 20 digits, optionally after a leading +.
    #[arg(long, value_parser = member_text("--phone", MAX_MEMBER_PHONE_BYTES, true))]
    phone: String,
    /// Postal address (at most 128 bytes of UTF-8).
    #[arg(long, value_parser = member_text("--address", MAX_MEMBER_ADDRESS_BYTES, false))]
    address: Option<String>,
    /// E-mail address (at most 64 bytes).
    #[arg(long, value_parser = member_text("--email", MAX_MEMBER_EMAIL_BYTES, false))]
    email: Option<String>,
    /// Birth date, YYYY-MM-DD; for an id_card, the one its number encodes.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    birth_date: Option<u32>,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// `replace-card OLD NEW`: what a `replace_card` request carries besides the operator's
/// passcode, which is sealed in `run`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ReplaceArgs {
    /// The registered member card to replace (lost, damaged, ...).
    #[arg(value_parser = parse_card)]
    old: CardNo,
    /// The card in stock, of the same product, that takes its place.
    #[arg(value_parser = parse_card)]
    new: CardNo,
    /// The holder's ID was checked at the desk (required).
    #[arg(long, required = true)]
    id_checked: bool,
    /// How the replacement fee is paid, when the product charges one: cash, bank_card,
    /// wechat, alipay, cheque or transfer.
    #[arg(long, value_parser = parse_method)]
    method: Option<PaymentMethod>,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// `history CARD`: which postings to ask for.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
struct HistoryArgs {
    /// Card number, 8 to 19 digits.
    #[arg(value_parser = parse_card)]
    card: CardNo,
    /// List the postings after this txn id (0: from the first).
    #[arg(long, value_name = "TXN", default_value_t = 0)]
    after: u64,
    /// Ask again from the last posting listed until there are no more (each page a new
    /// request, with the next trace number).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// `batch-totals`: the terminal's own figures per kind of posting (S2), in the order of
/// [`BATCH_KINDS`] (see [`BatchArgs::totals`]), and the business date they are of.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
#[command(after_help = "Each line is COUNT:YUAN: how many postings of that kind this terminal \
                  made on the business date and the sum of their amounts, as their replies gave \
                  them (a sale's after its discounts, a card sale's or load's the amount loaded, a \
                  hold's the amount held, a capture's the final amount); e.g. --sale 2:173.45 \
                  --refund 1:20.00 --sell-card 1:500.00. Lines not given are 0:0.00. The switch \
                  compares all eight lines with its own figures for this terminal and that date; \
                  every line that differs is marked.\n\nExit status: 0 in balance, 1 declined, 2 \
                  usage, connection or protocol error (a malformed line or date is refused before \
                  anything is sent), 3 out of balance.")]
struct BatchArgs {
    /// Cards sold with their opening loads.
    #[arg(long, value_name = "COUNT:YUAN", value_parser = parse_batch_line, allow_hyphen_values = true,
        help_heading = "Lines")]
    sell_card: Option<BatchLine>,
    /// Loads.
    #[arg(long, value_name = "COUNT:YUAN", value_parser = parse_batch_line, allow_hyphen_values = true,
        help_heading = "Lines")]
    load: Option<BatchLine>,
    /// Sales, at their amounts after discounts.
    #[arg(long, value_name = "COUNT:YUAN", value_parser = parse_batch_line, allow_hyphen_values = true,
        help_heading = "Lines")]
    sale: Option<BatchLine>,
    /// Holds, at the amounts held.
    #[arg(long, value_name = "COUNT:YUAN", value_parser = parse_batch_line, allow_hyphen_values = true,
        help_heading = "Lines")]
    hold: Option<BatchLine>,
    /// Captures, at their final amounts.
    #[arg(long, value_name = "COUNT:YUAN", value_parser = parse_batch_line, allow_hyphen_values = true,
        help_heading = "Lines")]
    capture: Option<BatchLine>,
    /// Refunds.
    #[arg(long, value_name = "COUNT:YUAN", value_parser = parse_batch_line, allow_hyphen_values = true,
        help_heading = "Lines")]
    refund: Option<BatchLine>,
    /// Voids (and releases of holds).
    #[arg(long, value_name = "COUNT:YUAN", value_parser = parse_batch_line, allow_hyphen_values = true,
        help_heading = "Lines")]
    void: Option<BatchLine>,
    /// Reversals.
    #[arg(long, value_name = "COUNT:YUAN", value_parser = parse_batch_line, allow_hyphen_values = true,
        help_heading = "Lines")]
    reversal: Option<BatchLine>,
    /// The business date the figures are of (default: the current one of --store).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    date: Option<u32>,
}

/// One line of a batch as the cashier counted it: postings of one kind and their amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BatchLine {
    count: u32,
    amount_minor: i64,
}

/// `COUNT:YUAN`: a number of postings and the sum of their amounts in yuan with at most two
/// decimals, neither negative (the switch declines a negative amount); postings of no count
/// have no amount.
fn parse_batch_line(text: &str) -> Result<BatchLine, String> {
    let expected = "expected COUNT:YUAN, a number of postings and their amount in yuan with at most two decimals, \
                    e.g. 2:173.45";
    let Some((count, amount)) = text.trim().split_once(':') else {
        return Err(format!("invalid batch line '{text}' ({expected})"));
    };
    let (count, amount) = (count.trim(), amount.trim());
    if count.starts_with('-') || amount.starts_with('-') {
        return Err(format!("invalid batch line '{text}': counts and amounts are never negative"));
    }
    let count = match count.parse::<u32>() {
        Ok(n) if count.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(format!("invalid count '{count}' in batch line '{text}' (expected 0..={})", u32::MAX)),
    };
    let amount_minor = parse_amount(amount).map_err(|problem| format!("batch line '{text}': {problem}"))?;
    if count == 0 && amount_minor != 0 {
        return Err(format!(
            "invalid batch line '{text}': 0 postings cannot amount to {} (COUNT comes first)",
            format_minor(amount_minor)
        ));
    }
    Ok(BatchLine { count, amount_minor })
}

impl BatchArgs {
    /// The lines given, in the order of [`BATCH_KINDS`]; those not given 0.
    fn totals(&self) -> BatchTotals {
        let lines =
            [self.sell_card, self.load, self.sale, self.hold, self.capture, self.refund, self.void, self.reversal];
        let mut totals = BatchTotals::default();
        for (i, line) in lines.into_iter().enumerate() {
            let line = line.unwrap_or_default();
            (totals.counts[i], totals.amounts_minor[i]) = (line.count, line.amount_minor);
        }
        totals
    }
}

/// The operator carrying out an administrative request and its passcode, sealed in `run`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct OperatorArgs {
    /// Operator carrying out the request.
    #[arg(long = "operator", value_name = "OPERATOR_ID", value_parser = parse_operator, help_heading = "Operator")]
    operator_id: u32,
    /// File holding that operator's passcode (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE", help_heading = "Operator")]
    passcode_file: PathBuf,
}

/// `admin ACTION CARD`: what a `card_admin` request carries besides its secrets, which are
/// sealed in `run`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
struct AdminArgs {
    /// report_loss, freeze, unfreeze, unlock_pin, change_pin, confirm_funds, return_card,
    /// recycle_gift, adjust, load_reversal, redeem_points, set_staff or record_invoice.
    #[arg(value_parser = parse_action)]
    action: AdminAction,
    #[command(flatten)]
    args: CardActionArgs,
}

/// The card of an `admin ACTION CARD` (or `cardswitch admin ACTION CARD`) and what the
/// action takes: the operator, the options of the actions that take them, the checks.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct CardActionArgs {
    /// Card number, 8 to 19 digits.
    #[arg(value_parser = parse_card)]
    card: CardNo,
    #[command(flatten)]
    operator: OperatorArgs,
    /// The holder's ID was checked at the desk (unfreeze, unlock_pin).
    #[arg(long, help_heading = "Options of the actions")]
    id_checked: bool,
    /// The load's invoice is returned, so no tax is withheld (return_card).
    #[arg(long, help_heading = "Options of the actions")]
    invoice_returned: bool,
    /// Correct the bonus bucket instead of cash (adjust).
    #[arg(long, help_heading = "Options of the actions")]
    bonus: bool,
    /// Exchange the points for a gift instead of bonus value (redeem_points).
    #[arg(long, help_heading = "Options of the actions")]
    for_gift: bool,
    /// Yuan: the correction (adjust; a leading - takes value off, e.g. --amount -12.50), the
    /// amount to reverse (load_reversal) or the amount invoiced (record_invoice).
    #[arg(long, value_name = "YUAN", value_parser = parse_signed_amount, allow_hyphen_values = true, help_heading = "Options of the actions")]
    amount: Option<i64>,
    /// Points to redeem (redeem_points).
    #[arg(long, value_name = "N", value_parser = parse_points, help_heading = "Options of the actions")]
    points: Option<i64>,
    /// Txn id of the load or card sale to reverse (load_reversal) or that the invoice is
    /// issued for (record_invoice).
    #[arg(long, value_name = "TXN", value_parser = parse_id, help_heading = "Options of the actions")]
    original: Option<u64>,
    /// Operator id of the staff member whose card it is; 0: no longer a staff card
    /// (set_staff).
    #[arg(long, value_name = "ID", value_parser = parse_staff_operator, help_heading = "Options of the actions")]
    staff_operator: Option<u32>,
    /// Number of the ticket or document the operation is made against (required for adjust and
    /// load_reversal).
    #[arg(long, value_name = "N", value_parser = parse_id, help_heading = "Options of the actions")]
    ticket: Option<u64>,
    #[command(flatten)]
    checks: Checks,
    /// The PIN the holder chooses, 4 to 12 digits (change_pin; optional for unlock_pin).
    #[arg(long, value_name = "PIN", value_parser = parse_pin, help_heading = "Verification")]
    new_pin: Option<Pin>,
}

/// `set-operator ID`: the operator to set, and who sets it.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
#[command(group(clap::ArgGroup::new("state").required(true).args(["enabled", "disabled"])))]
pub struct SetOperatorArgs {
    /// The operator to create or change.
    #[arg(value_name = "ID", value_parser = parse_operator)]
    target_id: u32,
    /// cashier, front_desk, customer_service, finance, hq_finance, admin or manager.
    #[arg(long, value_parser = parse_operator_role)]
    role: OperatorRole,
    /// Store the operator works at; 0: every store (not for cashier and front_desk).
    #[arg(long, value_name = "ID")]
    operator_store: u32,
    /// The operator may act.
    #[arg(long)]
    enabled: bool,
    /// The operator is refused from now on.
    #[arg(long)]
    disabled: bool,
    /// File holding the operator's new passcode, 6 to 15 bytes (surrounding whitespace
    /// ignored); required for a new operator; without it the passcode stays as it is.
    #[arg(long, value_name = "FILE")]
    new_passcode_file: Option<PathBuf>,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// `set-product PRODUCT`: the product's state, and a special product's approved discount and
/// quantity (P3).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
#[command(group(clap::ArgGroup::new("state").required(true).args(["enabled", "disabled"])))]
pub struct SetProductArgs {
    /// member, gift, special, cash, comp, offset, room, vip_stored, or a code 1..=8.
    #[arg(value_parser = parse_product)]
    product: u16,
    /// Its cards are sold and used.
    #[arg(long)]
    enabled: bool,
    /// Its cards are neither sold nor used from now on.
    #[arg(long)]
    disabled: bool,
    /// The approved discount ratio of a special product, percent with at most two decimals
    /// (30, 12.5, 12.50%); required to enable special.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    discount: Option<u16>,
    /// The most cards of the product ever sold (approved quantity); required to enable
    /// special; without it, no cap.
    #[arg(long, value_name = "N", value_parser = parse_quantity)]
    quantity: Option<u32>,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// The code of the `special` product (P3), the only one with a fixed discount.
const SPECIAL_PRODUCT: u16 = 3;

/// A discount ratio in percent with at most two decimals and an optional `%`, as basis points
/// (`30` is 3000, `12.5` is 1250): more than 0 and less than 100 percent.
fn parse_percent(text: &str) -> Result<u16, String> {
    let digits = text.trim();
    let digits = digits.strip_suffix('%').unwrap_or(digits).trim_end();
    match parse_minor(digits) {
        Some(bp) if (1..10_000).contains(&bp) => Ok(bp as u16),
        _ => Err(format!(
            "invalid discount '{text}' (expected a percentage above 0 and below 100 with at most two decimals, \
             e.g. 30 or 12.5)"
        )),
    }
}

/// An approved quantity of cards: 1 to the largest a `set_product` carries.
fn parse_quantity(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("a quantity of 0 cards could never be sold: leave --quantity out for no cap".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid quantity '{text}' (expected a number of cards, 1..={})", u32::MAX)),
    }
}

/// A discount in basis points as percent: 3000 as `30.00%`.
fn percent_text(bp: u16) -> String {
    format!("{}%", format_minor(i64::from(bp)))
}

/// The operator id a staff card belongs to: any number, 0 meaning no longer a staff card.
fn parse_staff_operator(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .map_err(|_| format!("invalid operator id '{text}' (expected 0..={}; 0: no longer a staff card)", u32::MAX))
}

/// What a sale, hold or card operation carries to prove it may proceed: the holder's PIN and
/// a manager's override or approval. Sealed in `run`, once the terminal and the trace number
/// are known.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct Checks {
    /// The card holder's PIN, 4 to 12 digits: for a sale or hold on a product that asks for one;
    /// for admin change_pin, the current PIN.
    #[arg(long, value_name = "PIN", value_parser = parse_pin, help_heading = "Verification")]
    pin: Option<Pin>,
    /// Operator id of the manager approving an override of a restriction (a category or a
    /// limit) of a sale or hold, or an admin operation (a card return); needs
    /// --approver-passcode-file.
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

/// Shortest passcode the switch gives an operator (SPEC §5.19).
const MIN_NEW_PASSCODE_BYTES: usize = 6;

/// The passcode in the passcode file at `path`, of `whose` (for the error).
fn read_passcode(path: &std::path::Path, whose: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {whose} passcode file {}: {e}", path.display()))?;
    parse_passcode(&text).map_err(|problem| format!("{}: {problem}", path.display()))
}

impl Checks {
    /// The approver's passcode, read from its file, when an approver is named.
    fn passcode(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.approver_passcode_file else { return Ok(None) };
        read_passcode(path, "approver's").map(Some)
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

/// Lower case, with `-` read as `_`, so `Report-Loss` finds `report_loss`.
fn normalise_name(text: &str) -> String {
    text.trim().to_ascii_lowercase().replace('-', "_")
}

/// The names of `names`, joined for a message: `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// An operator's role by name (`cashier`, `front_desk`, ...).
fn parse_operator_role(text: &str) -> Result<OperatorRole, String> {
    OperatorRole::from_name(&normalise_name(text)).ok_or_else(|| {
        let names: Vec<&str> = OperatorRole::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown operator role '{text}' (expected {})", one_of(&names))
    })
}

/// An administrative action by name (`report_loss`, `freeze`, ...).
fn parse_action(text: &str) -> Result<AdminAction, String> {
    AdminAction::from_name(&normalise_name(text)).ok_or_else(|| {
        let names: Vec<&str> = AdminAction::ALL.iter().map(|a| a.as_str()).collect();
        format!("unknown action '{text}' (expected {})", one_of(&names))
    })
}

/// Yuan with at most two decimals and an optional leading `-`, as minor units.
fn parse_signed_amount(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let minor = parse_amount(digits).map_err(|_| {
        format!(
            "invalid amount '{text}' (expected yuan with at most two decimals and an optional leading -, e.g. -12.34)"
        )
    })?;
    Ok(if negative { -minor } else { minor })
}

/// A number of points: 1 to the largest value a message may carry.
fn parse_points(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(points) if (1..=MAX_AMOUNT_MINOR).contains(&points) => Ok(points),
        _ => Err(format!("invalid number of points '{text}' (expected 1..={MAX_AMOUNT_MINOR})")),
    }
}

/// A txn id or ticket number: a number other than 0 (0 on the wire means "none").
fn parse_id(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(id) if id != 0 => Ok(id),
        _ => Err(format!("invalid number '{text}' (expected 1..={})", u64::MAX)),
    }
}

/// The parser of a member's string option `option`: at most `max` bytes of UTF-8 (what the
/// wire carries, SPEC §5.21), and not empty when `required`. Whether the text is a valid name,
/// ID number, phone, address or e-mail is the switch's to say (M2).
fn member_text(
    option: &'static str,
    max: usize,
    required: bool,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        if required && text.trim().is_empty() {
            Err(format!("{option} must not be empty"))
        } else if text.len() > max {
            Err(format!("{option} is {} bytes, more than the {max} a registration may carry", text.len()))
        } else {
            Ok(text.to_string())
        }
    }
}

/// An ID type by name: `id_card`, `passport` or `military_id` (dashes read as `_`).
fn parse_id_type(text: &str) -> Result<u8, String> {
    let name = normalise_name(text);
    (1..=u8::MAX).find(|t| id_type_name(*t) == Some(name.as_str())).ok_or_else(|| {
        let names: Vec<&str> = (1..=u8::MAX).map_while(id_type_name).collect();
        format!("unknown ID type '{text}' (expected {})", one_of(&names))
    })
}

/// A calendar date written `YYYY-MM-DD`, as the number YYYYMMDD.
fn parse_date(text: &str) -> Result<u32, String> {
    crate::parse_date(text.trim())
        .ok_or_else(|| format!("invalid date '{text}' (expected YYYY-MM-DD, e.g. 1990-03-07)"))
}

impl OperatorArgs {
    /// The operator's passcode, read from its file.
    fn passcode(&self) -> Result<String, String> {
        read_passcode(&self.passcode_file, "operator's")
    }

    /// The operator with its passcode sealed for the request `terminal_id`/`stan` signed with
    /// `key` (SPEC §3.2, kind `operator_passcode`).
    fn seal(&self, key: &TerminalKey, terminal_id: u32, stan: u32) -> Result<OperatorAuth, String> {
        let passcode = self.passcode()?;
        OperatorAuth::seal(key, terminal_id, stan, self.operator_id, &passcode)
            .map_err(|e| format!("cannot seal the operator's passcode: {e}"))
    }
}

impl AdminArgs {
    /// The `card_admin` request, its secrets still unsealed; refuses what the action does not
    /// take and asks for what it needs (SPEC §5.20), before anything is sent.
    fn request(&self) -> Result<Request, String> {
        use AdminAction as A;
        let action = self.action;
        let args = &self.args;
        let what = format!("admin {action}");
        let only = |option: &str, actions: &[A]| {
            let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
            format!("{what}: {option} is for {} only", one_of(&names))
        };
        let mut flags = 0;
        for (set, bit, option, actions) in [
            (args.id_checked, AdminFlags::ID_CHECKED, "--id-checked", &[A::Unfreeze, A::UnlockPin][..]),
            (args.invoice_returned, AdminFlags::INVOICE_RETURNED, "--invoice-returned", &[A::ReturnCard]),
            (args.bonus, AdminFlags::BONUS_BUCKET, "--bonus", &[A::Adjust]),
            (args.for_gift, AdminFlags::FOR_GIFT, "--for-gift", &[A::RedeemPoints]),
        ] {
            if set {
                if !actions.contains(&action) {
                    return Err(only(option, actions));
                }
                flags |= bit;
            }
        }
        let value = match (action, args.amount) {
            (A::Adjust, Some(0)) => return Err(format!("{what}: --amount must not be 0")),
            (A::Adjust, Some(amount)) => amount,
            (A::Adjust, None) => {
                return Err(format!("{what}: --amount YUAN is required (a leading - takes value off)"))
            }
            (A::LoadReversal | A::RecordInvoice, Some(amount)) if amount > 0 => amount,
            (A::LoadReversal | A::RecordInvoice, Some(_)) => {
                return Err(format!("{what}: --amount must be more than 0"))
            }
            (A::LoadReversal, None) => {
                return Err(format!("{what}: --amount YUAN (the amount to reverse) is required"))
            }
            (A::RecordInvoice, None) => return Err(format!("{what}: --amount YUAN (the amount invoiced) is required")),
            (_, Some(_)) => return Err(only("--amount", &[A::Adjust, A::LoadReversal, A::RecordInvoice])),
            (A::RedeemPoints, None) => args.points.ok_or_else(|| format!("{what}: --points N is required"))?,
            (A::SetStaff, None) => args.staff_operator.map(i64::from).ok_or_else(|| {
                format!("{what}: --staff-operator ID (the staff member's operator id; 0: none) is required")
            })?,
            (_, None) => 0,
        };
        if args.points.is_some() && action != A::RedeemPoints {
            return Err(only("--points", &[A::RedeemPoints]));
        }
        if args.staff_operator.is_some() && action != A::SetStaff {
            return Err(only("--staff-operator", &[A::SetStaff]));
        }
        let original_txn_id = match (action, args.original) {
            (A::LoadReversal | A::RecordInvoice, Some(txn)) => txn,
            (A::LoadReversal, None) => return Err(format!("{what}: --original TXN (the load) is required")),
            (A::RecordInvoice, None) => {
                return Err(format!("{what}: --original TXN (the load or card sale invoiced) is required"))
            }
            (_, Some(_)) => return Err(only("--original", &[A::LoadReversal, A::RecordInvoice])),
            (_, None) => 0,
        };
        let ticket = match (action, args.ticket) {
            (A::Adjust | A::LoadReversal, None) => return Err(format!("{what}: --ticket N is required")),
            (_, ticket) => ticket.unwrap_or(0),
        };
        match (action, &args.checks.pin) {
            (A::ChangePin, None) => return Err(format!("{what}: --pin (the current PIN) is required")),
            (A::ChangePin, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(only("--pin", &[A::ChangePin])),
        }
        match (action, &args.new_pin) {
            (A::ChangePin, None) => return Err(format!("{what}: --new-pin is required")),
            (A::ChangePin | A::UnlockPin, _) | (_, None) => {}
            (_, Some(_)) => return Err(only("--new-pin", &[A::ChangePin, A::UnlockPin])),
        }
        Ok(Request::CardAdmin {
            operator: OperatorAuth { operator_id: args.operator.operator_id, passcode: Sealed::NONE },
            card: args.card,
            action: action as u8,
            flags,
            value,
            original_txn_id,
            ticket,
            verification: Verification::NONE,
            new_pin: Sealed::NONE,
        })
    }
}

impl RegisterArgs {
    /// The `register_member` message, the operator's passcode still unsealed.
    fn register(&self) -> RegisterMember {
        RegisterMember {
            operator: OperatorAuth { operator_id: self.operator.operator_id, passcode: Sealed::NONE },
            card: self.card,
            member: MemberData {
                id_type: self.id_type,
                birth_date: self.birth_date.unwrap_or(0),
                name: self.name.clone(),
                id_number: self.id_number.clone(),
                phone: self.phone.clone(),
                address: self.address.clone().unwrap_or_default(),
                email: self.email.clone().unwrap_or_default(),
            },
        }
    }
}

impl SetOperatorArgs {
    /// The `set_operator` request, its passcodes still unsealed.
    fn request(&self) -> Result<Request, String> {
        if self.operator_store == 0 && matches!(self.role, OperatorRole::Cashier | OperatorRole::FrontDesk) {
            return Err(format!("set-operator: a {} works at one store: give --operator-store ID, not 0", self.role));
        }
        Ok(Request::SetOperator {
            operator: OperatorAuth { operator_id: self.operator.operator_id, passcode: Sealed::NONE },
            target_id: self.target_id,
            role: self.role as u8,
            store_id: self.operator_store,
            enabled: u8::from(self.enabled),
            new_passcode: Sealed::NONE,
        })
    }

    /// The new passcode, read from its file, when one is given: 6 to 15 bytes.
    fn new_passcode(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.new_passcode_file else { return Ok(None) };
        let passcode = read_passcode(path, "new")?;
        if passcode.len() < MIN_NEW_PASSCODE_BYTES {
            return Err(format!(
                "{}: an operator's passcode has {MIN_NEW_PASSCODE_BYTES} to {MAX_SECRET_BYTES} bytes",
                path.display()
            ));
        }
        Ok(Some(passcode))
    }
}

impl SetProductArgs {
    /// The `set_product` request, the operator's passcode still unsealed; refuses what the
    /// switch would (SPEC §5.25): a discount on a product other than special, special enabled
    /// without its discount ratio and quantity.
    fn request(&self) -> Result<Request, String> {
        let name = product_name(self.product).unwrap_or("?");
        if self.discount.is_some() && self.product != SPECIAL_PRODUCT {
            return Err(format!(
                "set-product {name}: --discount is for special only (the only product with a fixed discount)"
            ));
        }
        if self.enabled && self.product == SPECIAL_PRODUCT && (self.discount.is_none() || self.quantity.is_none()) {
            return Err(
                "set-product special --enabled: --discount PERCENT and --quantity N are both required (P3: the \
                 approved discount ratio and quantity)"
                    .to_string(),
            );
        }
        Ok(Request::SetProduct {
            operator: OperatorAuth { operator_id: self.operator.operator_id, passcode: Sealed::NONE },
            product: self.product,
            enabled: u8::from(self.enabled),
            discount_bp: self.discount.unwrap_or(0),
            approved_quantity: self.quantity.unwrap_or(0),
        })
    }
}

/// Seals the secrets `op` carries into `request`, for the request `terminal_id`/`stan` signed
/// with `key`: the PIN and the approver's passcode of a sale, hold or card operation, the
/// operator's passcode, the new PIN and the new passcode. Reads the passcode files.
fn seal_secrets(op: &Op, request: &mut Request, key: &TerminalKey, terminal_id: u32, stan: u32) -> Result<(), String> {
    let seal = |kind, secret: &str| {
        Sealed::seal(key, kind, terminal_id, stan, secret).map_err(|e| format!("cannot seal the {kind:?}: {e}"))
    };
    if let Some(checks) = op.checks() {
        let passcode = checks.passcode()?;
        let sealed = checks.seal(key, terminal_id, stan, passcode.as_deref())?;
        if let Request::Sale { verification, .. }
        | Request::Hold { verification, .. }
        | Request::CardAdmin { verification, .. } = request
        {
            *verification = sealed;
        }
    }
    if let Some(args) = op.operator() {
        let sealed = args.seal(key, terminal_id, stan)?;
        if let Request::SetOperator { operator, .. }
        | Request::SetProduct { operator, .. }
        | Request::OperatorSignOn { operator }
        | Request::CardAdmin { operator, .. }
        | Request::MemberQuery { operator, .. }
        | Request::ReplaceCard { operator, .. }
        | Request::CardHistory { operator, .. } = request
        {
            *operator = sealed;
        }
    }
    match (op, request) {
        (Op::Admin(AdminArgs { args, .. }), Request::CardAdmin { new_pin, .. }) => {
            if let Some(Pin(pin)) = &args.new_pin {
                *new_pin = seal(SecretKind::NewPin, pin)?;
            }
        }
        (Op::SetOperator(args), Request::SetOperator { new_passcode, .. }) => {
            if let Some(passcode) = args.new_passcode()? {
                *new_passcode = seal(SecretKind::NewPasscode, &passcode)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// [`seal_secrets`] for any message `op` sends: a registration carries only its operator's
/// passcode.
fn seal_message(op: &Op, message: &mut Message, key: &TerminalKey, terminal_id: u32, stan: u32) -> Result<(), String> {
    match message {
        Message::Request(request) => seal_secrets(op, request, key, terminal_id, stan),
        Message::RegisterMember(register) => {
            let args = op.operator().ok_or("register-member names its operator")?;
            register.operator = args.seal(key, terminal_id, stan)?;
            Ok(())
        }
        Message::Response(_) => Err("a terminal sends no responses".to_string()),
    }
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
            Op::ImportRange(_) => "import-range",
            Op::SellCard { .. } => "sell-card",
            Op::Provision(_) => "provision",
            Op::TerminalState(_) => "terminal-state",
            Op::Admin(_) => "admin",
            Op::SetOperator(_) => "set-operator",
            Op::SetProduct(_) => "set-product",
            Op::OperatorSignOn { .. } => "operator-sign-on",
            Op::RegisterMember(_) => "register-member",
            Op::Member(_) => "member",
            Op::ReplaceCard(_) => "replace-card",
            Op::History(_) => "history",
            Op::BatchTotals(_) => "batch-totals",
        }
    }

    /// The PIN and override (or approval) of a sale, hold or card operation.
    fn checks(&self) -> Option<&Checks> {
        match self {
            Op::Sale { checks, .. }
            | Op::Hold { checks, .. }
            | Op::Admin(AdminArgs { args: CardActionArgs { checks, .. }, .. }) => Some(checks),
            _ => None,
        }
    }

    /// The operator carrying out an administrative request.
    fn operator(&self) -> Option<&OperatorArgs> {
        match self {
            Op::Admin(AdminArgs { args: CardActionArgs { operator, .. }, .. })
            | Op::SetOperator(SetOperatorArgs { operator, .. })
            | Op::SetProduct(SetProductArgs { operator, .. })
            | Op::OperatorSignOn { operator }
            | Op::RegisterMember(RegisterArgs { operator, .. })
            | Op::Member(MemberArgs { operator, .. })
            | Op::ReplaceCard(ReplaceArgs { operator, .. })
            | Op::History(HistoryArgs { operator, .. }) => Some(operator),
            _ => None,
        }
    }

    /// The request to send; errors are usage errors found before connecting. A sale, hold or
    /// operator request goes without its secrets here: they are sealed in `run`, once the stan
    /// is known.
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
            Op::ImportRange(ImportRangeArgs { first, last, product, range_store }) => {
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
            Op::Provision(ProvisionArgs { terminal_id, at_store, role, .. }) => {
                Request::ProvisionTerminal { terminal_id, store_id: at_store, role: role as u8, wrapped_key: [0; 32] }
            }
            Op::TerminalState(TerminalStateArgs { terminal_id, ref state }) => {
                Request::SetTerminalState { terminal_id, enabled: u8::from(state == "enabled") }
            }
            Op::Admin(ref args) => args.request()?,
            Op::SetOperator(ref args) => args.request()?,
            Op::SetProduct(ref args) => args.request()?,
            Op::OperatorSignOn { ref operator } => Request::OperatorSignOn {
                operator: OperatorAuth { operator_id: operator.operator_id, passcode: Sealed::NONE },
            },
            Op::Member(MemberArgs { card, ref operator }) => Request::MemberQuery {
                operator: OperatorAuth { operator_id: operator.operator_id, ..Default::default() },
                card,
            },
            Op::ReplaceCard(ref args) => {
                if args.old == args.new {
                    return Err(format!("replace-card: OLD and NEW are the same card {}", args.old));
                }
                Request::ReplaceCard {
                    operator: OperatorAuth { operator_id: args.operator.operator_id, ..Default::default() },
                    old_card: args.old,
                    new_card: args.new,
                    flags: if args.id_checked { AdminFlags::ID_CHECKED } else { 0 },
                    method: args.method.map_or(0, |m| m as u8),
                }
            }
            Op::History(ref args) => Request::CardHistory {
                operator: OperatorAuth { operator_id: args.operator.operator_id, ..Default::default() },
                card: args.card,
                after_txn_id: args.after,
            },
            Op::BatchTotals(ref args) => {
                Request::BatchTotals { business_date: args.date.unwrap_or(0), totals: args.totals() }
            }
            Op::RegisterMember(_) => return Err("register-member sends a registration, see Op::message".to_string()),
        })
    }

    /// The message to send: the request, or for `register-member` the registration, which
    /// carries strings and so is a message of its own (SPEC §5.21).
    fn message(&self, store_id: u32) -> Result<Message, String> {
        match self {
            Op::RegisterMember(args) => Ok(Message::RegisterMember(Box::new(args.register()))),
            _ => self.request(store_id).map(Message::Request),
        }
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

/// The id of the operator carrying out a request, with why it was refused when it was (O1).
fn operator_text(operator_id: u32, code: ResponseCode) -> String {
    match code {
        ResponseCode::OperatorRefused => format!("{operator_id}  (refused: unknown or disabled, or not its passcode)"),
        ResponseCode::RoleNotPermitted => {
            format!("{operator_id}  (not permitted: its role or store does not allow this)")
        }
        _ => operator_id.to_string(),
    }
}

/// Why a decline happened, where the reply says more than its code: the PIN attempts left,
/// the limit the request ran into (the switch sets them with exactly these codes), and what
/// an operator or a card operation lacked.
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
        // A load reversal names what is left of the load (V5); a refund does not.
        ResponseCode::RefundExceedsOriginal if reply.limit_minor != 0 => vec![limit("left to reverse")],
        // V6: what the load has left to invoice; nothing, or the original is no load.
        ResponseCode::InvoiceExceedsLoad if reply.limit_minor != 0 => vec![limit("left to invoice")],
        ResponseCode::InvoiceExceedsLoad => {
            vec![line("refused", "nothing left to invoice against it, or it is not a load or card sale of this card")]
        }
        ResponseCode::QuantityExhausted => {
            vec![line("quantity", "sold out: the product's approved quantity of cards has been sold")]
        }
        ResponseCode::IdNotChecked => vec![line("id", "not checked: check the holder's ID, then --id-checked")],
        ResponseCode::ApprovalRequired => vec![line("approval", "required: a manager's (--approver)")],
        _ => vec![],
    }
}

/// The lines a card operation adds to its card reply: the action, the operator and the
/// approver, each with why it was refused when it was; the staff member a staff card is
/// linked to, and the invoice recorded and its load.
fn admin_fields(request: &Request, code: ResponseCode) -> Vec<Field> {
    let Request::CardAdmin { operator, action, verification, value, original_txn_id, .. } = *request else {
        return vec![];
    };
    let name = AdminAction::from_u8(action).map_or_else(|| action.to_string(), |a| a.as_str().to_string());
    let approver_id = verification.approver_id;
    let approver = if code == ResponseCode::OverrideRefused {
        format!("{approver_id}  (refused: not a manager of this store, or not its passcode)")
    } else {
        approver_id.to_string()
    };
    let mut fields = vec![
        field("action", name.clone(), "action", json_string(&name)),
        field("operator", operator_text(operator.operator_id, code), "operator_id", operator.operator_id.to_string()),
        shown_if(approver_id != 0, field("approver", approver, "approver_id", approver_id.to_string())),
    ];
    match AdminAction::from_u8(action) {
        Some(AdminAction::SetStaff) => {
            let staff =
                if value == 0 { "none: no longer a staff card".to_string() } else { format!("operator {value}") };
            fields.push(field("staff", staff, "staff_operator_id", value.to_string()));
        }
        Some(AdminAction::RecordInvoice) => {
            fields.push(money("invoice", "invoice_minor", value));
            fields.push(field("load", original_txn_id.to_string(), "original_txn_id", original_txn_id.to_string()));
        }
        _ => {}
    }
    fields
}

/// The lines a replacement adds to its card reply, which describes the new card: the
/// operator, the old card, the fee's method, and what was wrong when it was refused.
fn replace_fields(request: &Request, code: ResponseCode) -> Vec<Field> {
    let Request::ReplaceCard { operator, old_card, method, .. } = *request else { return vec![] };
    let method_name = PaymentMethod::from_u8(method).map(PaymentMethod::as_str);
    let mut fields = vec![
        field("operator", operator_text(operator.operator_id, code), "operator_id", operator.operator_id.to_string()),
        field("old card", old_card.to_string(), "old_card", json_string(&old_card.to_string())),
        shown_if(
            method != 0,
            field(
                "fee paid",
                method_name.unwrap_or("none"),
                "method",
                method_name.map_or("null".to_string(), json_string),
            ),
        ),
    ];
    let why = match code {
        ResponseCode::InvalidField if method == 0 => "none given: a product with a replacement fee needs --method",
        ResponseCode::ReplacementRefused => {
            "the old card is not a registered member card, or the new one is not in stock of the same product"
        }
        ResponseCode::OpenHold => "the old card has an open hold: capture or void it first",
        _ => return fields,
    };
    fields.push(line(if code == ResponseCode::InvalidField { "method" } else { "refused" }, why));
    fields
}

fn card_fields(request: &Request, card: CardNo, reply: &CardReply) -> Vec<Field> {
    let action = match *request {
        Request::CardAdmin { action, .. } => AdminAction::from_u8(action),
        _ => None,
    };
    let returned = action == Some(AdminAction::ReturnCard);
    let txn = if reply.txn_id == 0 { "none".to_string() } else { reply.txn_id.to_string() };
    let discounted = reply.discount_minor != 0 || reply.gross_minor != reply.amount_minor;
    // A card return pays back the cash value less the tax withheld (L10).
    let (gross_label, discount_label, net_note) =
        if returned { ("cash value", "tax", "  (paid out)") } else { ("gross", "discount", "  (net)") };
    let mut amount = money("amount", "amount_minor", reply.amount_minor);
    if discounted || (returned && reply.code.is_approved()) {
        amount.text.push_str(net_note);
    }
    let taken_back = match action {
        Some(AdminAction::RedeemPoints) => "redeemed",
        Some(AdminAction::ReturnCard) => "forfeited",
        _ => "taken back",
    };
    let points = match reply.points_earned {
        0 => format!("balance {}", reply.points_balance),
        earned if earned > 0 => format!("+{earned} earned, balance {}", reply.points_balance),
        taken => format!("{taken} {taken_back}, balance {}", reply.points_balance),
    };
    let mut fields = vec![code_field(reply.code)];
    fields.extend(decline_fields(reply));
    fields.extend(admin_fields(request, reply.code));
    fields.extend(replace_fields(request, reply.code));
    // A declined replacement's reply may be about either card (SPEC §5.23): its state is shown
    // apart from the new card's number.
    let declined_replacement = matches!(request, Request::ReplaceCard { .. }) && !reply.code.is_approved();
    let card_json = vec![("card", json_string(&card.to_string())), ("state", json_string(reply.state.as_str()))];
    fields.extend([
        if declined_replacement {
            Field { label: Some("new card"), text: card.to_string(), json: card_json }
        } else {
            Field { label: Some("card"), text: format!("{card}  ({})", reply.state), json: card_json }
        },
        shown_if(declined_replacement, line("state", format!("{}  (of the card the reply is about)", reply.state))),
        field("txn id", txn, "txn_id", reply.txn_id.to_string()),
        shown_if(discounted, money(gross_label, "gross_minor", reply.gross_minor)),
        shown_if(discounted, money(discount_label, "discount_minor", reply.discount_minor)),
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

/// The reply to `set_operator`: who set it, and the operator it set as it is now.
fn operator_fields(request: &Request, reply: &OperatorReply) -> Vec<Field> {
    let (role_text, role_json) = match (reply.role, OperatorRole::from_u8(reply.role)) {
        (_, Some(role)) => (role.as_str().to_string(), json_string(role.as_str())),
        (0, None) => ("none".to_string(), "null".to_string()),
        (raw, None) => (format!("{raw} (unknown to this pos)"), raw.to_string()),
    };
    let by = request.operator().map_or(0, |o| o.operator_id);
    let mut fields = vec![code_field(reply.code)];
    fields.extend([
        field("by", operator_text(by, reply.code), "by_operator_id", by.to_string()),
        field("operator", reply.operator_id.to_string(), "operator_id", reply.operator_id.to_string()),
        field("role", role_text, "role", role_json),
        field(
            "state",
            if reply.enabled == 1 { "enabled" } else { "disabled" },
            "enabled",
            (reply.enabled == 1).to_string(),
        ),
    ]);
    fields
}

/// The reply to `set_product`: who set it, the product as it is now, what it was set to and
/// the catalog version in force; or what was wrong.
fn product_fields(request: &Request, reply: &ProductReply) -> Vec<Field> {
    let Request::SetProduct { operator, product, discount_bp, approved_quantity, .. } = *request else {
        return vec![code_field(reply.code)];
    };
    let product_text = match product_name(product) {
        Some(name) => format!("{name} ({product})"),
        None => product.to_string(),
    };
    let approved = reply.code.is_approved();
    let quantity = if approved_quantity == 0 { "no cap".to_string() } else { format!("{approved_quantity} cards") };
    let mut fields = vec![
        code_field(reply.code),
        field(
            "by",
            operator_text(operator.operator_id, reply.code),
            "by_operator_id",
            operator.operator_id.to_string(),
        ),
        field("product", product_text, "product", product.to_string()),
        // A decline carries 0 whatever the product's state: it is not shown as the state.
        shown_if(
            approved,
            field(
                "state",
                if reply.enabled == 1 { "enabled" } else { "disabled" },
                "enabled",
                (reply.enabled == 1).to_string(),
            ),
        ),
        shown_if(
            approved && (product == SPECIAL_PRODUCT || discount_bp != 0),
            field(
                "discount",
                if discount_bp == 0 { "none".to_string() } else { percent_text(discount_bp) },
                "discount_bp",
                discount_bp.to_string(),
            ),
        ),
        shown_if(approved, field("quantity", quantity, "approved_quantity", approved_quantity.to_string())),
        shown_if(
            approved,
            field(
                "catalog",
                format!("version {}", reply.catalog_version),
                "catalog_version",
                reply.catalog_version.to_string(),
            ),
        ),
    ];
    let why = match reply.code {
        ResponseCode::NotPermitted => "set-product is for admin terminals only",
        ResponseCode::UnknownProduct => "the switch's catalog does not list this product",
        ResponseCode::InvalidField => {
            "only special has a discount, and enabling special needs its discount and quantity; or the \
             passcode does not open"
        }
        _ => return fields,
    };
    fields.push(line("refused", why));
    fields
}

/// The reply to `operator_sign_on`: the operator, its role and whether it is signed on.
fn operator_sign_on_fields(request: &Request, reply: &OperatorReply) -> Vec<Field> {
    let operator_id = request.operator().map_or(reply.operator_id, |o| o.operator_id);
    let (role_text, role_json) = match (reply.role, OperatorRole::from_u8(reply.role)) {
        (_, Some(role)) => (role.as_str().to_string(), json_string(role.as_str())),
        (0, None) => ("none".to_string(), "null".to_string()),
        (raw, None) => (format!("{raw} (unknown to this pos)"), raw.to_string()),
    };
    let operator = match reply.code {
        ResponseCode::RoleNotPermitted => {
            format!("{operator_id}  (not permitted: not a cashier or front desk of this store)")
        }
        code => operator_text(operator_id, code),
    };
    vec![
        code_field(reply.code),
        field("operator", operator, "operator_id", operator_id.to_string()),
        field("role", role_text, "role", role_json),
        field(
            "state",
            if reply.enabled == 1 { "signed on" } else { "not signed on" },
            "signed_on",
            (reply.enabled == 1).to_string(),
        ),
    ]
}

/// What the switch says is wrong with a registration (`problem` of `member_data_invalid`,
/// SPEC §6.12): the field, and what it must be.
fn member_problem(problem: u8) -> (&'static str, &'static str) {
    match problem {
        1 => ("name", "required, at most 64 bytes, no control characters"),
        2 => ("id_type", "id_card, passport or military_id"),
        3 => (
            "id_number",
            "an id_card's is 18 characters, the last its check character, encoding a valid birth date; \
             a passport's or military ID's 5 to 20 letters and digits",
        ),
        4 => ("phone", "6 to 20 digits, optionally after a leading +"),
        5 => ("address", "at most 128 bytes, no control characters"),
        6 => ("email", "empty, or name@host.domain in at most 64 bytes, no spaces"),
        7 => ("birth_date", "a calendar date; for an id_card, the one its number encodes"),
        _ => ("unknown", "a field this pos does not know"),
    }
}

/// The reply to `register_member` or `member_query`: the card and its holder, as the
/// operator's role may see it (M3), or why the registration was refused.
fn member_fields(operator_id: u32, reply: &MemberReply) -> Vec<Field> {
    let member = &reply.member;
    let mut fields = vec![code_field(reply.code)];
    if reply.code == ResponseCode::MemberDataInvalid || reply.problem != 0 {
        let (name, rule) = member_problem(reply.problem);
        fields.push(Field {
            label: Some("problem"),
            text: format!("{name}: {rule}"),
            json: vec![("problem", reply.problem.to_string()), ("problem_field", json_string(name))],
        });
    } else {
        fields.push(Field {
            label: None,
            text: String::new(),
            json: vec![("problem", "0".to_string()), ("problem_field", "null".to_string())],
        });
    }
    let (id_type_text, id_type_json) = match (member.id_type, id_type_name(member.id_type)) {
        (_, Some(name)) => (name.to_string(), json_string(name)),
        (0, None) => ("none".to_string(), "null".to_string()),
        (raw, None) => (format!("{raw} (unknown to this pos)"), raw.to_string()),
    };
    let shown = member.id_type != 0 || !member.name.is_empty();
    let birth = if member.birth_date == 0 { "none".to_string() } else { format_date(member.birth_date) };
    fields.extend([
        field("operator", operator_text(operator_id, reply.code), "operator_id", operator_id.to_string()),
        Field {
            label: Some("card"),
            text: format!("{}  ({})", reply.card, reply.state),
            json: vec![("card", json_string(&reply.card.to_string())), ("state", json_string(reply.state.as_str()))],
        },
        shown_if(shown, field("name", member.name.clone(), "name", json_string(&member.name))),
        shown_if(
            shown,
            Field {
                label: Some("id"),
                text: format!("{id_type_text}  {}", member.id_number),
                json: vec![("id_type", id_type_json), ("id_number", json_string(&member.id_number))],
            },
        ),
        shown_if(member.birth_date != 0, field("birth date", birth, "birth_date", member.birth_date.to_string())),
        shown_if(shown, field("phone", member.phone.clone(), "phone", json_string(&member.phone))),
        shown_if(
            !member.address.is_empty(),
            field("address", member.address.clone(), "address", json_string(&member.address)),
        ),
        shown_if(!member.email.is_empty(), field("email", member.email.clone(), "email", json_string(&member.email))),
    ]);
    fields
}

/// The hour, minute and second of `time_ms` (ms since the Unix epoch) on the terminals' clock.
fn time_of_day(time_ms: i64) -> String {
    let t = LocalTime::from_unix_ms(time_ms, DEFAULT_UTC_OFFSET_MINUTES).0;
    format!("{:02}:{:02}:{:02}", t / 10_000 % 100, t / 100 % 100, t % 100)
}

/// A posting's kind by name, or its number when this pos does not know it.
fn kind_name(kind: u8) -> String {
    PostingKind::from_u8(kind).map_or_else(|| format!("kind {kind}"), |k| k.as_str().to_string())
}

/// `rows` as lines of columns separated by two spaces, each as wide as its widest cell;
/// the columns in `right` aligned right (numbers), the others left.
fn table(rows: &[Vec<String>], right: &[bool]) -> Vec<String> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> =
                row.iter()
                    .enumerate()
                    .map(|(c, cell)| {
                        if right[c] {
                            format!("{cell:>w$}", w = widths[c])
                        } else {
                            format!("{cell:<w$}", w = widths[c])
                        }
                    })
                    .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// A change of a balance with its sign: `+500.00`, `-5.00`, `0.00`.
fn signed_minor(minor: i64) -> String {
    if minor > 0 {
        format!("+{}", format_minor(minor))
    } else {
        format_minor(minor)
    }
}

/// One history entry as a JSON object.
fn history_entry_json(e: &HistoryEntry) -> String {
    let kind = PostingKind::from_u8(e.kind).map_or_else(|| e.kind.to_string(), |k| json_string(k.as_str()));
    let members = [
        ("txn_id", e.txn_id.to_string()),
        ("kind", kind),
        ("business_date", e.business_date.to_string()),
        ("time_ms", e.time_ms.to_string()),
        ("store_id", e.store_id.to_string()),
        ("terminal_id", e.terminal_id.to_string()),
        ("operator_id", e.operator_id.to_string()),
        ("amount_minor", e.amount_minor.to_string()),
        ("cash_delta_minor", e.cash_delta_minor.to_string()),
        ("bonus_delta_minor", e.bonus_delta_minor.to_string()),
        ("held_delta_minor", e.held_delta_minor.to_string()),
        ("points_delta", e.points_delta.to_string()),
        ("cash_after_minor", e.cash_after_minor.to_string()),
        ("bonus_after_minor", e.bonus_after_minor.to_string()),
        ("held_after_minor", e.held_after_minor.to_string()),
    ];
    let body: Vec<String> = members.iter().map(|(k, v)| format!("{}:{v}", json_string(k))).collect();
    format!("{{{}}}", body.join(","))
}

/// The reply to `card_history` (all its pages, with `--all`): a table of the postings, oldest
/// first, with the balances after each.
/// `stans` are the trace numbers of the pages asked, the first one's first.
fn history_fields(operator_id: u32, reply: &HistoryReply, stans: &[u32]) -> Vec<Field> {
    let pages = match stans {
        [first, .., last] => format!("{}  (stans {first} to {last})", stans.len()),
        _ => stans.len().to_string(),
    };
    let mut fields = vec![
        code_field(reply.code),
        field("operator", operator_text(operator_id, reply.code), "operator_id", operator_id.to_string()),
        field("card", reply.card.to_string(), "card", json_string(&reply.card.to_string())),
        shown_if(stans.len() > 1, field("pages", pages, "pages", stans.len().max(1).to_string())),
        shown_if(
            reply.code.is_approved() || !reply.entries.is_empty(),
            field("postings", reply.entries.len().to_string(), "count", reply.entries.len().to_string()),
        ),
    ];
    if !reply.entries.is_empty() {
        let mut rows = vec![[
            "txn",
            "date",
            "time",
            "kind",
            "store",
            "terminal",
            "operator",
            "amount",
            "cash change",
            "bonus change",
            "cash after",
            "bonus after",
            "held after",
        ]
        .map(str::to_string)
        .to_vec()];
        rows.extend(reply.entries.iter().map(|e| {
            vec![
                e.txn_id.to_string(),
                format_date(e.business_date),
                time_of_day(e.time_ms),
                kind_name(e.kind),
                e.store_id.to_string(),
                e.terminal_id.to_string(),
                e.operator_id.to_string(),
                format_minor(e.amount_minor),
                signed_minor(e.cash_delta_minor),
                signed_minor(e.bonus_delta_minor),
                format_minor(e.cash_after_minor),
                format_minor(e.bonus_after_minor),
                format_minor(e.held_after_minor),
            ]
        }));
        let right = [true, false, false, false, true, true, true, true, true, true, true, true, true];
        fields.extend(table(&rows, &right).into_iter().map(|text| Field { label: Some(""), text, json: vec![] }));
    }
    let last = reply.entries.last().map_or(0, |e| e.txn_id);
    fields.push(shown_if(
        reply.more != 0,
        field("more", format!("yes: ask again with --after {last}"), "more", (reply.more != 0).to_string()),
    ));
    let entries: Vec<String> = reply.entries.iter().map(history_entry_json).collect();
    fields.push(Field {
        label: None,
        text: String::new(),
        json: vec![("entries", format!("[{}]", entries.join(",")))],
    });
    fields
}

/// The marker of a batch line whose figures are not the switch's.
const DIFFERS: &str = "<- differs";

/// The reply to `batch_totals`: the switch's verdict, the business date, and the eight lines
/// with the terminal's figures next to the switch's, each line that differs marked. A decline
/// carries no figures of the switch's (all zero): its lines are not compared.
fn batch_fields(request: &Request, reply: &BatchTotalsReply) -> Vec<Field> {
    let Request::BatchTotals { business_date: asked, totals: ours } = *request else {
        return vec![code_field(reply.code)];
    };
    let theirs = reply.totals;
    let approved = reply.code.is_approved();
    let differs: Vec<bool> = (0..BATCH_KINDS.len())
        .map(|i| approved && (ours.counts[i], ours.amounts_minor[i]) != (theirs.counts[i], theirs.amounts_minor[i]))
        .collect();
    let in_balance = approved && reply.in_balance == 1;
    let verdict = match differs.iter().filter(|d| **d).count() {
        _ if in_balance => "in balance".to_string(),
        0 => "out of balance".to_string(),
        1 => "out of balance: 1 line differs".to_string(),
        n => format!("out of balance: {n} lines differ"),
    };
    let date = match (approved, asked) {
        (true, 0) => format!("{}  (the store's current business date)", format_date(reply.business_date)),
        (true, _) => format_date(reply.business_date),
        (false, 0) => "the store's current business date".to_string(),
        (false, _) => format_date(asked),
    };
    let mut fields = vec![
        code_field(reply.code),
        Field { label: approved.then_some("batch"), text: verdict, json: vec![("in_balance", in_balance.to_string())] },
        Field {
            label: Some("date"),
            text: date,
            json: vec![
                ("business_date", reply.business_date.to_string()),
                ("requested_business_date", asked.to_string()),
            ],
        },
    ];
    let why = match reply.code {
        ResponseCode::InvalidField => Some("the date is not a calendar date, or a line is negative"),
        ResponseCode::NotSignedOn => Some("no session: the sign-on did not hold"),
        _ => None,
    };
    if let Some(why) = why {
        fields.push(line("refused", why));
    }
    if approved {
        let mut rows = vec![["kind", "terminal count", "terminal amount", "switch count", "switch amount", ""]
            .map(str::to_string)
            .to_vec()];
        rows.extend(BATCH_KINDS.iter().enumerate().map(|(i, kind)| {
            vec![
                kind.as_str().to_string(),
                ours.counts[i].to_string(),
                format_minor(ours.amounts_minor[i]),
                theirs.counts[i].to_string(),
                format_minor(theirs.amounts_minor[i]),
                if differs[i] { DIFFERS.to_string() } else { String::new() },
            ]
        }));
        let right = [false, true, true, true, true, false];
        fields.extend(table(&rows, &right).into_iter().map(|text| Field { label: Some(""), text, json: vec![] }));
    }
    let lines: Vec<String> = BATCH_KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            format!(
                "{{\"kind\":{},\"count\":{},\"amount_minor\":{},\"switch_count\":{},\"switch_amount_minor\":{},\
                 \"differs\":{}}}",
                json_string(kind.as_str()),
                ours.counts[i],
                ours.amounts_minor[i],
                theirs.counts[i],
                theirs.amounts_minor[i],
                differs[i]
            )
        })
        .collect();
    fields.push(Field { label: None, text: String::new(), json: vec![("lines", format!("[{}]", lines.join(",")))] });
    fields
}

fn render_text(sent: &Sent<'_>, fields: &[Field]) -> String {
    let mut out = format!("{}  terminal {}  stan {}", sent.op, sent.terminal, sent.stan);
    if sent.retransmit {
        out.push_str("  (retransmit)");
    }
    out.push('\n');
    for f in fields {
        match f.label {
            // A line of its own, e.g. of a table.
            Some("") => {
                let _ = writeln!(out, "  {}", f.text);
            }
            Some(label) => {
                let _ = writeln!(out, "  {label:<11}{}", f.text);
            }
            None => {}
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
        (Request::SetOperator { .. }, Response::Operator(reply)) => Some(operator_fields(request, reply)),
        (Request::SetProduct { .. }, Response::Product(reply)) => Some(product_fields(request, reply)),
        (Request::OperatorSignOn { .. }, Response::OperatorSignOn(reply)) => {
            Some(operator_sign_on_fields(request, reply))
        }
        (Request::MemberQuery { operator, .. }, Response::Member { request: MsgType::MemberQuery, reply }) => {
            Some(member_fields(operator.operator_id, reply))
        }
        (Request::CardHistory { operator, .. }, Response::History(reply)) => {
            Some(history_fields(operator.operator_id, reply, &[]))
        }
        (Request::BatchTotals { .. }, Response::BatchTotals(reply)) => Some(batch_fields(request, reply)),
        (Request::ReplaceCard { new_card, .. }, Response::Card { request: MsgType::ReplaceCard, reply }) => {
            Some(card_fields(request, *new_card, reply))
        }
        (_, Response::Card { request: answered, reply }) if *answered == request.msg_type() => {
            Some(card_fields(request, request.card()?, reply))
        }
        _ => None,
    }
}

/// The fields of `response` when it is the right shape for `message`.
fn message_fields(message: &Message, response: &Response) -> Option<Vec<Field>> {
    match (message, response) {
        (Message::Request(request), _) => response_fields(request, response),
        (Message::RegisterMember(register), Response::Member { request: MsgType::RegisterMember, reply }) => {
            Some(member_fields(register.operator.operator_id, reply))
        }
        _ => None,
    }
}

/// Why the run failed (exit 2).
struct Failure(String);

/// What to do about `request` sent with `stan` when its answer did not come: nothing for the
/// requests that change nothing; send it again; for the postings a reversal undoes (T7),
/// reverse it instead.
fn unknown_outcome_hint(request: &Request, stan: u32) -> String {
    match request {
        // The session ends with the connection: nothing to undo or redo.
        Request::SignOn { .. }
        | Request::Echo
        | Request::OperatorSignOn { .. }
        | Request::Balance { .. }
        | Request::MemberQuery { .. }
        | Request::CardHistory { .. }
        | Request::BatchTotals { .. } => String::new(),
        // Not remembered (SPEC §5.25): sent again, it is carried out again.
        Request::SetProduct { .. } => {
            "; its outcome is unknown: send it again (it sets the product again, under a new catalog version)"
                .to_string()
        }
        Request::Sale { .. }
        | Request::Load { .. }
        | Request::Hold { .. }
        | Request::Capture { .. }
        | Request::Refund { .. }
        | Request::SellCard { .. } => {
            format!("; its outcome is unknown: send it again with --stan {stan} --retransmit, or reverse it")
        }
        _ => format!("; its outcome is unknown: send it again with --stan {stan} --retransmit"),
    }
}

fn call_failure(addr: &str, what: &str, stan: u32, hint: &str, error: ClientError) -> Failure {
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
    exchange_message(client, addr, what, stan, flags, Message::Request(request)).await
}

/// [`exchange`] for any message a terminal sends: a request or a registration.
async fn exchange_message(
    client: &mut Client,
    addr: &str,
    what: &str,
    stan: u32,
    flags: u16,
    message: Message,
) -> Result<Response, Failure> {
    let hint = match &message {
        Message::Request(request) => unknown_outcome_hint(request, stan),
        _ => format!("; its outcome is unknown: send it again with --stan {stan} --retransmit"),
    };
    let failed = |e| call_failure(addr, what, stan, &hint, e);
    let response = match message {
        Message::Request(request) => {
            client.send(stan, flags, request).await.map_err(failed)?;
            client.receive(stan).await.map_err(failed)?
        }
        Message::RegisterMember(register) => client.register_member(stan, flags, *register).await.map_err(failed)?,
        Message::Response(response) => {
            return Err(Failure(format!("{what}: a terminal does not send {}", response.msg_type())))
        }
    };
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

/// `history --all`: while the switch says there are more postings, asks for those after the
/// last one listed, each page a new request with the next trace number after `stan`, and
/// gathers the pages into one reply. Returns it with the trace numbers of the pages asked
/// after the first. A page declined ends it, with that page's code.
async fn follow_history(
    client: &mut Client,
    cli: &Cli,
    key: &TerminalKey,
    mut stan: u32,
    flags: u16,
    mut all: HistoryReply,
) -> Result<(HistoryReply, Vec<u32>), Failure> {
    let addr = cli.addr.as_str();
    let mut stans = Vec::new();
    while all.code.is_approved() && all.more != 0 {
        let Some(after) = all.entries.last().map(|e| e.txn_id) else {
            return Err(Failure(format!("the switch at {addr} said more postings follow but listed none")));
        };
        stan = stan.checked_add(1).filter(|next| *next <= MAX_OPERATION_STAN).ok_or_else(|| {
            Failure(format!(
                "history --all: no trace number after {stan} for the next page (at most {MAX_OPERATION_STAN})"
            ))
        })?;
        let mut request = cli.op.request(cli.store).map_err(Failure)?;
        if let Request::CardHistory { after_txn_id, .. } = &mut request {
            *after_txn_id = after;
        }
        seal_secrets(&cli.op, &mut request, key, client.terminal_id(), stan).map_err(Failure)?;
        let response = exchange(client, addr, "history", stan, flags, request).await?;
        let Response::History(page) = response else {
            return Err(Failure(format!(
                "the switch at {addr} answered history (stan {stan}) with {}",
                response.msg_type()
            )));
        };
        stans.push(stan);
        if page.entries.first().is_some_and(|e| e.txn_id <= after) {
            return Err(Failure(format!("the switch at {addr} listed postings up to {after} again (stan {stan})")));
        }
        all.code = page.code;
        all.more = page.more;
        all.entries.extend(page.entries);
    }
    Ok((all, stans))
}

/// The cashier to sign on to the session before the operation (`--cashier`), if one is given;
/// refused for the operations that send only their own message.
fn cashier(cli: &Cli) -> Result<Option<OperatorArgs>, String> {
    let (operator_id, passcode_file) = match (cli.cashier, &cli.cashier_passcode_file) {
        (Some(id), Some(path)) => (id, path.clone()),
        (None, None) => return Ok(None),
        _ => return Err("--cashier and --cashier-passcode-file go together".to_string()),
    };
    match cli.op {
        Op::SignOn | Op::Echo => Err(format!(
            "{}: --cashier signs a cashier on after the sign-on, before an operation; {} sends only its own \
             message",
            cli.op.name(),
            cli.op.name()
        )),
        Op::OperatorSignOn { .. } => {
            Err("operator-sign-on: name the operator with --operator and --passcode-file, not --cashier".to_string())
        }
        _ => Ok(Some(OperatorArgs { operator_id, passcode_file })),
    }
}

/// The trace number of the cashier's sign-on sent right after the sign-on with `sign_on_stan`:
/// the next one in the upper half, which the operations typed by hand never use.
fn cashier_sign_on_stan(sign_on_stan: u32) -> u32 {
    SIGN_ON_STAN_BIT | (sign_on_stan.wrapping_add(1) & !SIGN_ON_STAN_BIT)
}

/// The line an operation's report gets when a cashier was signed on before it.
fn cashier_field(operator_id: u32, stan: u32) -> Field {
    Field {
        label: Some("cashier"),
        text: format!("{operator_id}  (signed on, stan {stan})"),
        json: vec![("cashier_id", operator_id.to_string()), ("cashier_stan", stan.to_string())],
    }
}

async fn run(cli: &Cli) -> Result<u8, Failure> {
    let cashier = cashier(cli).map_err(Failure)?;
    let mut message = cli.op.message(cli.store).map_err(Failure)?;
    let now_ms = unix_ms_now();
    let stan = cli.stan.unwrap_or_else(|| stan_from_clock(now_ms, DEFAULT_UTC_OFFSET_MINUTES));
    debug_assert!((1..=MAX_OPERATION_STAN).contains(&stan));
    let flags = if cli.retransmit { FLAG_RETRANSMIT } else { 0 };
    let addr = cli.addr.as_str();
    let me = credential(cli)?;
    let terminal = me.terminal_id;
    if let Message::Request(Request::ProvisionTerminal { terminal_id, ref mut wrapped_key, .. }) = message {
        let provisioned = Credential { terminal_id, key: me.derive_terminal_key(terminal_id) };
        *wrapped_key = me.key.wrap_for_transport(&provisioned.key, terminal, stan, terminal_id);
        if let Op::Provision(ProvisionArgs { out: Some(path), .. }) = &cli.op {
            write_credential(path, &provisioned)?;
        }
    }
    seal_message(&cli.op, &mut message, &me.key, terminal, stan).map_err(Failure)?;
    let sign_on_stan = sign_on_stan_from_clock(now_ms);
    // T9: the cashier who rings the operation up, signed on right after the sign-on.
    let cashier_sign_on = match &cashier {
        Some(args) => {
            let cashier_stan = cashier_sign_on_stan(sign_on_stan);
            let passcode = read_passcode(&args.passcode_file, "cashier's").map_err(Failure)?;
            let operator = OperatorAuth::seal(&me.key, terminal, cashier_stan, args.operator_id, &passcode)
                .map_err(|e| Failure(format!("cannot seal the cashier's passcode: {e}")))?;
            Some((cashier_stan, Request::OperatorSignOn { operator }))
        }
        None => None,
    };

    let connect_timeout = Duration::from_millis(DEFAULT_CALL_TIMEOUT_MS);
    let mut client =
        match tokio::time::timeout(connect_timeout, Client::connect_with_key(addr, terminal, me.key.clone())).await {
            Err(_) => {
                return Err(Failure(format!(
                    "cannot connect to {addr}: no answer within {} s",
                    DEFAULT_CALL_TIMEOUT_MS / 1000
                )))
            }
            Ok(result) => result.map_err(|e| call_failure(addr, "connect", 0, "", e))?,
        };
    client.set_call_timeout_ms(DEFAULT_CALL_TIMEOUT_MS);

    if !matches!(message, Message::Request(Request::SignOn { .. } | Request::Echo)) {
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
                "{}: sign-on at store {} declined ({}); {} (stan {stan}) not sent",
                cli.program,
                cli.store,
                response.code(),
                cli.op.name()
            );
            return Ok(EXIT_DECLINED);
        }
    }
    let mut signed_on_cashier = None;
    if let Some((cashier_stan, request)) = cashier_sign_on {
        let response = exchange(&mut client, addr, "operator-sign-on", cashier_stan, 0, request).await?;
        let Some(fields) = response_fields(&request, &response) else {
            return Err(Failure(format!(
                "the switch at {addr} answered operator-sign-on (stan {cashier_stan}) with {}",
                response.msg_type()
            )));
        };
        let cashier_id = request.operator().map_or(0, |o| o.operator_id);
        if !response.code().is_approved() {
            let sent = Sent { op: "operator-sign-on", terminal, stan: cashier_stan, retransmit: false };
            print_report(cli, &sent, &fields);
            eprintln!(
                "{}: sign-on of cashier {cashier_id} declined ({}); {} (stan {stan}) not sent",
                cli.program,
                response.code(),
                cli.op.name()
            );
            return Ok(EXIT_DECLINED);
        }
        signed_on_cashier = Some(cashier_field(cashier_id, cashier_stan));
    }

    let what = cli.op.name();
    let mut response = exchange_message(&mut client, addr, what, stan, flags, message.clone()).await?;
    let mut stans = vec![stan];
    if let (Op::History(HistoryArgs { all: true, .. }), Response::History(first)) = (&cli.op, &response) {
        let (all, more) = follow_history(&mut client, cli, &me.key, stan, flags, (**first).clone()).await?;
        stans.extend(more);
        response = Response::History(Box::new(all));
    }
    let fields = match (&message, &response) {
        (Message::Request(Request::CardHistory { operator, .. }), Response::History(reply)) => {
            Some(history_fields(operator.operator_id, reply, &stans))
        }
        _ => message_fields(&message, &response),
    };
    let Some(mut fields) = fields else {
        return Err(Failure(format!(
            "the switch at {addr} answered {what} (stan {stan}) with {}",
            response.msg_type()
        )));
    };
    if let Some(cashier) = signed_on_cashier {
        fields.insert(1.min(fields.len()), cashier);
    }
    let sent = Sent { op: what, terminal, stan, retransmit: cli.retransmit };
    print_report(cli, &sent, &fields);
    Ok(exit_status(&response))
}

/// The exit status of an operation answered with `response`: approved or declined, and a batch
/// out of balance apart from both.
fn exit_status(response: &Response) -> u8 {
    match response {
        _ if !response.code().is_approved() => EXIT_DECLINED,
        Response::BatchTotals(reply) if reply.in_balance != 1 => EXIT_OUT_OF_BALANCE,
        _ => EXIT_APPROVED,
    }
}

/// `pos`: parses the command line and runs it.
pub fn main() -> ExitCode {
    run_cli(&Cli::parse())
}

/// Sends what `cli` asks for and prints the answer; the exit status as documented in [`Cli`].
pub fn run_cli(cli: &Cli) -> ExitCode {
    let program = cli.program;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{program}: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(status) => ExitCode::from(status),
        Err(Failure(message)) => {
            eprintln!("{program}: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

pub mod admin;

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

    /// A directory of its own for a test's passcode files, with `files` written in it.
    struct Files(PathBuf);

    impl Files {
        fn new(test: &str, files: &[(&str, &str)]) -> Files {
            let dir = std::env::temp_dir().join(format!("pos-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in files {
                std::fs::write(dir.join(name), text).unwrap();
            }
            Files(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_string()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const CARD: &str = "6200880000000017";

    /// `pos --addr x:1 --stan 7 admin ACTION CARD --operator 41 --passcode-file p EXTRA...`.
    fn admin(action: &str, extra: &[&str]) -> Result<Cli, clap::Error> {
        let base = ["--addr", "x:1", "--stan", "7", "admin", action, CARD, "--operator", "41", "--passcode-file", "p"];
        parse(&[&base[..], extra].concat())
    }

    fn admin_request(action: &str, extra: &[&str]) -> Result<Request, String> {
        admin(action, extra).unwrap_or_else(|e| panic!("{action} {extra:?}: {e}")).op.request(1)
    }

    /// The fields of a `card_admin` request that vary by action: action, flags, value,
    /// original, ticket.
    fn admin_fields_of(request: Request) -> (u8, u8, i64, u64, u64) {
        let Request::CardAdmin { operator, card, action, flags, value, original_txn_id, ticket, .. } = request else {
            panic!("{request:?}")
        };
        assert_eq!((operator.operator_id, card), (41, CardNo(6_200_880_000_000_017)));
        (action, flags, value, original_txn_id, ticket)
    }

    #[test]
    fn admin_builds_each_actions_request() {
        use AdminAction as A;
        let fields = |action: &str, extra: &[&str]| admin_fields_of(admin_request(action, extra).unwrap());
        assert_eq!(fields("report_loss", &[]), (A::ReportLoss as u8, 0, 0, 0, 0));
        // Names are forgiving about case and dashes.
        assert_eq!(fields("Report-Loss", &[]), (A::ReportLoss as u8, 0, 0, 0, 0));
        assert_eq!(fields("unfreeze", &["--id-checked"]), (A::Unfreeze as u8, AdminFlags::ID_CHECKED, 0, 0, 0));
        assert_eq!(
            fields("return_card", &["--invoice-returned", "--ticket", "88"]),
            (A::ReturnCard as u8, AdminFlags::INVOICE_RETURNED, 0, 0, 88)
        );
        // A correction may take value off: a leading minus, separate or joined.
        assert_eq!(
            fields("adjust", &["--amount", "-12.50", "--ticket", "2026112201", "--bonus"]),
            (A::Adjust as u8, AdminFlags::BONUS_BUCKET, -1_250, 0, 2_026_112_201)
        );
        assert_eq!(fields("adjust", &["--amount=-0.05", "--ticket", "1"]), (A::Adjust as u8, 0, -5, 0, 1));
        assert_eq!(fields("adjust", &["--amount", "3", "--ticket", "1"]), (A::Adjust as u8, 0, 300, 0, 1));
        assert_eq!(
            fields("load_reversal", &["--amount", "1000", "--original", "418302", "--ticket", "9"]),
            (A::LoadReversal as u8, 0, 100_000, 418_302, 9)
        );
        assert_eq!(
            fields("redeem_points", &["--points", "250", "--for-gift"]),
            (A::RedeemPoints as u8, AdminFlags::FOR_GIFT, 250, 0, 0)
        );
        assert_eq!(fields("change_pin", &["--pin", "123456", "--new-pin", "135790"]).0, A::ChangePin as u8);
        assert_eq!(fields("unlock_pin", &["--id-checked"]).0, A::UnlockPin as u8);
        assert_eq!(fields("unlock_pin", &["--id-checked", "--new-pin", "2468"]).0, A::UnlockPin as u8);
        for action in ["freeze", "confirm_funds", "recycle_gift"] {
            assert_eq!(fields(action, &[]).2, 0, "{action}");
        }
        // Every action has its name.
        for action in A::ALL {
            assert_eq!(parse_action(action.as_str()), Ok(*action));
        }
        let cli = admin("freeze", &[]).unwrap();
        assert_eq!(cli.op.name(), "admin");
        assert_eq!(cli.op.operator().map(|o| o.operator_id), Some(41));
    }

    #[test]
    fn admin_refuses_what_its_action_does_not_take() {
        for (action, extra, problem) in [
            (
                "report_loss",
                &["--id-checked"][..],
                "admin report_loss: --id-checked is for unfreeze or unlock_pin only",
            ),
            (
                "adjust",
                &["--invoice-returned", "--amount", "1", "--ticket", "1"],
                "--invoice-returned is for return_card only",
            ),
            ("freeze", &["--bonus"], "--bonus is for adjust only"),
            ("adjust", &["--for-gift", "--amount", "1", "--ticket", "1"], "--for-gift is for redeem_points only"),
            ("adjust", &["--ticket", "1"], "admin adjust: --amount YUAN is required"),
            ("adjust", &["--amount", "0", "--ticket", "1"], "admin adjust: --amount must not be 0"),
            ("adjust", &["--amount", "1"], "admin adjust: --ticket N is required"),
            ("load_reversal", &["--amount", "-1", "--original", "5", "--ticket", "1"], "--amount must be more than 0"),
            (
                "load_reversal",
                &["--original", "5", "--ticket", "1"],
                "--amount YUAN (the amount to reverse) is required",
            ),
            ("load_reversal", &["--amount", "1", "--ticket", "1"], "--original TXN (the load) is required"),
            ("load_reversal", &["--amount", "1", "--original", "5"], "--ticket N is required"),
            ("freeze", &["--amount", "1"], "--amount is for adjust, load_reversal or record_invoice only"),
            ("redeem_points", &["--amount", "1"], "--amount is for adjust, load_reversal or record_invoice only"),
            ("redeem_points", &[], "admin redeem_points: --points N is required"),
            ("adjust", &["--points", "5", "--amount", "1", "--ticket", "1"], "--points is for redeem_points only"),
            ("freeze", &["--original", "5"], "--original is for load_reversal or record_invoice only"),
            ("change_pin", &["--new-pin", "1234"], "admin change_pin: --pin (the current PIN) is required"),
            ("change_pin", &["--pin", "1234"], "admin change_pin: --new-pin is required"),
            ("unlock_pin", &["--pin", "1234"], "--pin is for change_pin only"),
            ("freeze", &["--new-pin", "1234"], "--new-pin is for change_pin or unlock_pin only"),
        ] {
            let error = admin_request(action, extra).unwrap_err();
            assert!(error.contains(problem), "{action} {extra:?}: {error}");
        }
        // What clap refuses exits with status 2, with a message saying what is wrong.
        for (args, problem) in [
            (
                &["--addr", "x:1", "admin", "lose", CARD, "--operator", "41", "--passcode-file", "p"][..],
                "unknown action 'lose'",
            ),
            (
                &["--addr", "x:1", "admin", "freeze", "123", "--operator", "41", "--passcode-file", "p"],
                "invalid card number",
            ),
            (&["--addr", "x:1", "admin", "freeze", CARD, "--passcode-file", "p"], "--operator"),
            (&["--addr", "x:1", "admin", "freeze", CARD, "--operator", "41"], "--passcode-file"),
            (
                &["--addr", "x:1", "admin", "freeze", CARD, "--operator", "0", "--passcode-file", "p"],
                "invalid operator id",
            ),
        ] {
            let error = parse(args).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains(problem), "{args:?}: {error}");
        }
        for (extra, problem) in [
            (&["--amount", "1.234"][..], "invalid amount '1.234'"),
            (&["--amount", "--5"], "invalid amount '--5'"),
            (&["--amount", "-"], "invalid amount '-'"),
            (&["--points", "0"], "invalid number of points '0'"),
            (&["--points", "-5"], "unexpected argument '-5'"),
            (&["--ticket", "0"], "invalid number '0'"),
            (&["--original", "x"], "invalid number 'x'"),
            (&["--new-pin", "12"], "a PIN is 4 to 12 digits"),
            (&["--approver", "7"], "--approver-passcode-file"),
        ] {
            let error = admin("adjust", extra).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{extra:?}");
            assert!(error.to_string().contains(problem), "{extra:?}: {error}");
        }
    }

    #[test]
    fn admin_seals_the_operator_the_pins_and_the_approver_for_the_stan() {
        let files = Files::new("admin-seal", &[("operator", "c4shier31\n"), ("manager", " m4nager \n")]);
        let args = [
            "--pin",
            "123456",
            "--new-pin",
            "135790",
            "--approver",
            "7",
            "--approver-passcode-file",
            &files.path("manager"),
        ];
        let base = ["--addr", "x:1", "admin", "change_pin", CARD, "--operator", "31", "--passcode-file"];
        let cli = parse(&[&base[..], &[files.path("operator").as_str()], &args[..]].concat()).unwrap();
        assert!(!format!("{cli:?}").contains("135790"), "the new PIN never shows in a debug print");
        let key = test_key();
        let sealed = |stan| {
            let mut request = cli.op.request(1).unwrap();
            seal_secrets(&cli.op, &mut request, &key, 1001, stan).unwrap();
            request
        };
        let request = sealed(42);
        let Request::CardAdmin { operator, verification, new_pin, .. } = request else { panic!("{request:?}") };
        let open = |field: Sealed, kind| field.open(&key, kind, 1001, 42);
        assert_eq!(operator.operator_id, 31);
        assert_eq!(open(operator.passcode, SecretKind::OperatorPasscode), Ok(Some(b"c4shier31".to_vec())));
        assert_eq!(open(verification.pin, SecretKind::Pin), Ok(Some(b"123456".to_vec())));
        assert_eq!(open(new_pin, SecretKind::NewPin), Ok(Some(b"135790".to_vec())));
        assert_eq!(verification.approver_id, 7);
        assert_eq!(open(verification.approver_passcode, SecretKind::Passcode), Ok(Some(b"m4nager".to_vec())));
        // Each secret opens only as its own kind and for its own stan.
        assert_ne!(open(operator.passcode, SecretKind::Passcode), Ok(Some(b"c4shier31".to_vec())));
        assert_ne!(open(new_pin, SecretKind::Pin), Ok(Some(b"135790".to_vec())));
        assert_ne!(
            operator.passcode.open(&key, SecretKind::OperatorPasscode, 1001, 43),
            Ok(Some(b"c4shier31".to_vec()))
        );
        // The same command again (a retransmission) seals the same bytes; another stan others.
        assert_eq!(sealed(42), request);
        assert_ne!(sealed(43), request);

        // Without the optional secrets, their fields stay all zero.
        let base = ["--addr", "x:1", "admin", "report_loss", CARD, "--operator", "41", "--passcode-file"];
        let cli = parse(&[&base[..], &[files.path("operator").as_str()]].concat()).unwrap();
        let mut request = cli.op.request(1).unwrap();
        seal_secrets(&cli.op, &mut request, &key, 1001, 9).unwrap();
        let Request::CardAdmin { operator, verification, new_pin, .. } = request else { panic!("{request:?}") };
        assert!(!operator.passcode.is_none());
        assert_eq!((verification, new_pin), (Verification::NONE, Sealed::NONE));

        // A passcode file that cannot be read, or holds no passcode, stops the request.
        let missing = admin("freeze", &[]).unwrap();
        let mut request = missing.op.request(1).unwrap();
        let problem = seal_secrets(&missing.op, &mut request, &key, 1001, 9).unwrap_err();
        assert!(problem.contains("cannot read the operator's passcode file p"), "{problem}");
        std::fs::write(files.0.join("operator"), "\n").unwrap();
        let problem = seal_secrets(&cli.op, &mut request, &key, 1001, 9).unwrap_err();
        assert!(problem.contains("a passcode is one line of 1 to 15 bytes"), "{problem}");
    }

    /// `pos --addr x:1 set-operator 31 --operator 1 --passcode-file FILE EXTRA...`.
    fn set_operator(files: &Files, extra: &[&str]) -> Result<Cli, clap::Error> {
        let admin = files.path("admin");
        let base = ["--addr", "x:1", "set-operator", "31", "--operator", "1", "--passcode-file", admin.as_str()];
        parse(&[&base[..], extra].concat())
    }

    #[test]
    fn set_operator_builds_its_request_and_seals_both_passcodes() {
        let files =
            Files::new("set-operator", &[("admin", "4dmin-pass\n"), ("new", "c4shier31\n"), ("short", "12345")]);
        let new = files.path("new");
        let cli = set_operator(
            &files,
            &["--role", "cashier", "--operator-store", "21", "--enabled", "--new-passcode-file", new.as_str()],
        )
        .unwrap();
        assert_eq!(cli.op.name(), "set-operator");
        let mut request = cli.op.request(1).unwrap();
        let key = test_key();
        seal_secrets(&cli.op, &mut request, &key, 1001, 146).unwrap();
        let Request::SetOperator { operator, target_id, role, store_id, enabled, new_passcode } = request else {
            panic!("{request:?}")
        };
        assert_eq!(
            (operator.operator_id, target_id, role, store_id, enabled),
            (1, 31, OperatorRole::Cashier as u8, 21, 1)
        );
        let open = |field: Sealed, kind| field.open(&key, kind, 1001, 146);
        assert_eq!(open(operator.passcode, SecretKind::OperatorPasscode), Ok(Some(b"4dmin-pass".to_vec())));
        assert_eq!(open(new_passcode, SecretKind::NewPasscode), Ok(Some(b"c4shier31".to_vec())));
        assert_ne!(open(new_passcode, SecretKind::OperatorPasscode), Ok(Some(b"c4shier31".to_vec())));

        // Disabling an operator, keeping its passcode: the new passcode stays all zero.
        let cli = set_operator(&files, &["--role", "Hq-Finance", "--operator-store", "0", "--disabled"]).unwrap();
        let mut request = cli.op.request(1).unwrap();
        seal_secrets(&cli.op, &mut request, &key, 1001, 147).unwrap();
        let Request::SetOperator { role, store_id, enabled, new_passcode, .. } = request else { panic!() };
        assert_eq!((role, store_id, enabled, new_passcode), (OperatorRole::HqFinance as u8, 0, 0, Sealed::NONE));

        // A counter role belongs to one store; a new passcode has 6 to 15 bytes.
        let cli = set_operator(&files, &["--role", "front_desk", "--operator-store", "0", "--enabled"]).unwrap();
        assert!(cli.op.request(1).unwrap_err().contains("a front_desk works at one store"));
        let short = files.path("short");
        let cli = set_operator(
            &files,
            &["--role", "finance", "--operator-store", "0", "--enabled", "--new-passcode-file", short.as_str()],
        )
        .unwrap();
        let mut request = cli.op.request(1).unwrap();
        let problem = seal_secrets(&cli.op, &mut request, &key, 1001, 148).unwrap_err();
        assert!(problem.contains("an operator's passcode has 6 to 15 bytes"), "{problem}");

        for (extra, problem) in [
            (&["--role", "cashier", "--operator-store", "21"][..], "--enabled"),
            (&["--role", "cashier", "--operator-store", "21", "--enabled", "--disabled"], "cannot be used with"),
            (&["--role", "boss", "--operator-store", "21", "--enabled"], "unknown operator role 'boss'"),
            (&["--operator-store", "21", "--enabled"], "--role"),
            (&["--role", "cashier", "--enabled"], "--operator-store"),
        ] {
            let error = set_operator(&files, extra).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{extra:?}");
            assert!(error.to_string().contains(problem), "{extra:?}: {error}");
        }
        let zero = parse(&["--addr", "x:1", "set-operator", "0", "--operator", "1", "--passcode-file", "p"]);
        assert_eq!(zero.map(|_| ()).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn operator_replies_show_role_and_state() {
        let request = Request::SetOperator {
            operator: OperatorAuth { operator_id: 1, passcode: Sealed::NONE },
            target_id: 31,
            role: OperatorRole::Cashier as u8,
            store_id: 21,
            enabled: 1,
            new_passcode: Sealed::NONE,
        };
        let sent = Sent { op: "set-operator", terminal: 1001, stan: 146, retransmit: false };
        let reply = |code, role, enabled| {
            let response = Response::Operator(OperatorReply { code, operator_id: 31, role, enabled });
            response_fields(&request, &response).unwrap()
        };
        let approved = reply(ResponseCode::Approved, OperatorRole::Cashier as u8, 1);
        assert_eq!(
            render_text(&sent, &approved),
            "set-operator  terminal 1001  stan 146\n\
             \x20 code       approved\n\
             \x20 by         1\n\
             \x20 operator   31\n\
             \x20 role       cashier\n\
             \x20 state      enabled\n"
        );
        assert_eq!(
            render_json(&sent, &approved),
            "{\"op\":\"set-operator\",\"terminal\":1001,\"stan\":146,\"retransmit\":false,\
             \"code\":\"approved\",\"by_operator_id\":1,\"operator_id\":31,\"role\":\"cashier\",\"enabled\":true}\n"
        );
        let refused = reply(ResponseCode::OperatorRefused, 0, 0);
        let text = render_text(&sent, &refused);
        assert!(
            text.contains(
                "  code       operator_refused\n  by         1  (refused: unknown or disabled, or not its passcode)\n  \
                 operator   31\n"
            ),
            "{text}"
        );
        assert!(text.contains("  role       none\n  state      disabled\n"), "{text}");
        assert!(render_json(&sent, &refused).contains("\"role\":null,\"enabled\":false}"));
        let text = render_text(&sent, &reply(ResponseCode::RoleNotPermitted, 0, 0));
        assert!(text.contains("  by         1  (not permitted: its role or store does not allow this)\n"), "{text}");
        // A reply of another shape is not taken as the answer.
        let wrong = Response::Terminal {
            request: MsgType::SetTerminalState,
            reply: protocol::TerminalReply { code: ResponseCode::Approved, terminal_id: 31, enabled: 1 },
        };
        assert!(response_fields(&request, &wrong).is_none());
    }

    fn card_admin_request(action: AdminAction, approver_id: u32) -> Request {
        Request::CardAdmin {
            operator: OperatorAuth { operator_id: 51, passcode: Sealed::NONE },
            card: CardNo(6_200_880_000_000_017),
            action: action as u8,
            flags: 0,
            value: 0,
            original_txn_id: 0,
            ticket: 0,
            verification: Verification { approver_id, ..Verification::NONE },
            new_pin: Sealed::NONE,
        }
    }

    #[test]
    fn card_operation_replies_name_the_action_the_operator_and_what_moved() {
        let lost = CardReply {
            code: ResponseCode::Approved,
            state: protocol::CardState::Lost,
            txn_id: 418_310,
            cash_minor: 11_855,
            ..CardReply::default()
        };
        let loss = card_admin_request(AdminAction::ReportLoss, 0);
        assert_eq!(
            text_of(&loss, lost),
            "card_admin  terminal 1001  stan 7\n\
             \x20 code       approved\n\
             \x20 action     report_loss\n\
             \x20 operator   51\n\
             \x20 card       6200880000000017  (lost)\n\
             \x20 txn id     418310\n\
             \x20 amount     0.00\n\
             \x20 cash       118.55\n\
             \x20 bonus      0.00\n\
             \x20 held       0.00\n\
             \x20 available  118.55\n"
        );
        let json = json_of(&loss, lost);
        assert!(
            json.contains(
                "\"code\":\"approved\",\"action\":\"report_loss\",\"operator_id\":51,\"approver_id\":0,\"card\":"
            ),
            "{json}"
        );
        assert!(json.contains("\"state\":\"lost\",\"txn_id\":418310,"), "{json}");

        // A return pays back the cash value less the tax; bonus and points are forfeited.
        let returned = CardReply {
            code: ResponseCode::Approved,
            state: protocol::CardState::Closed,
            txn_id: 418_311,
            amount_minor: 80_840,
            gross_minor: 86_000,
            discount_minor: 5_160,
            points_earned: -1_290,
            ..CardReply::default()
        };
        let text = text_of(&card_admin_request(AdminAction::ReturnCard, 7), returned);
        assert!(text.contains("  action     return_card\n  operator   51\n  approver   7\n"), "{text}");
        assert!(text.contains("  cash value 860.00\n  tax        51.60\n  amount     808.40  (paid out)\n"), "{text}");
        assert!(text.contains("  points     -1290 forfeited, balance 0\n"), "{text}");
        assert!(json_of(&card_admin_request(AdminAction::ReturnCard, 7), returned)
            .contains("\"approver_id\":7,\"card\":\"6200880000000017\",\"state\":\"closed\""));
        // With the invoice back nothing is withheld, and the amount is still what was paid out.
        let whole = CardReply { amount_minor: 86_000, discount_minor: 0, ..returned };
        let text = text_of(&card_admin_request(AdminAction::ReturnCard, 7), whole);
        assert!(text.contains("  amount     860.00  (paid out)\n") && !text.contains("tax"), "{text}");

        let redeemed = CardReply {
            code: ResponseCode::Approved,
            state: protocol::CardState::Active,
            amount_minor: 1_000,
            gross_minor: 1_000,
            bonus_minor: 1_000,
            points_earned: -1_000,
            points_balance: 250,
            ..CardReply::default()
        };
        let text = text_of(&card_admin_request(AdminAction::RedeemPoints, 0), redeemed);
        assert!(text.contains("  points     -1000 redeemed, balance 250\n"), "{text}");

        // Declines say what was missing.
        let declined = |code, limit_minor| CardReply { code, limit_minor, ..CardReply::default() };
        let text = text_of(&card_admin_request(AdminAction::ReturnCard, 7), declined(ResponseCode::OverrideRefused, 0));
        assert!(
            text.contains("  approver   7  (refused: not a manager of this store, or not its passcode)\n"),
            "{text}"
        );
        for (action, code, limit_minor, says) in [
            (
                AdminAction::ReportLoss,
                ResponseCode::RoleNotPermitted,
                0,
                "  action     report_loss\n  operator   51  (not permitted: ",
            ),
            (
                AdminAction::ReportLoss,
                ResponseCode::OperatorRefused,
                0,
                "  action     report_loss\n  operator   51  (refused: ",
            ),
            (AdminAction::ReturnCard, ResponseCode::ApprovalRequired, 0, "  approval   required: a manager's"),
            (AdminAction::Unfreeze, ResponseCode::IdNotChecked, 0, "  id         not checked: "),
            (
                AdminAction::LoadReversal,
                ResponseCode::RefundExceedsOriginal,
                20_000,
                "  limit      200.00  (left to reverse)",
            ),
        ] {
            let text = text_of(&card_admin_request(action, 0), declined(code, limit_minor));
            assert!(text.contains(&format!("  code       {code}\n{says}")), "{text}");
        }
    }

    #[test]
    fn the_hint_after_a_lost_answer_fits_the_request() {
        let sale = sale_request(100);
        assert!(unknown_outcome_hint(&sale, 7).ends_with("--stan 7 --retransmit, or reverse it"));
        let admin = card_admin_request(AdminAction::Freeze, 0);
        assert_eq!(
            unknown_outcome_hint(&admin, 7),
            "; its outcome is unknown: send it again with --stan 7 --retransmit"
        );
        assert_eq!(unknown_outcome_hint(&Request::Balance { card: CardNo(62_008_800) }, 7), "");
        // A query or a history changes nothing; a replacement is sent again, not reversed.
        let operator = OperatorAuth::default();
        let card = CardNo(62_008_800);
        assert_eq!(unknown_outcome_hint(&Request::MemberQuery { operator, card }, 7), "");
        assert_eq!(unknown_outcome_hint(&Request::CardHistory { operator, card, after_txn_id: 0 }, 7), "");
        let replace =
            Request::ReplaceCard { operator, old_card: card, new_card: CardNo(62_008_801), flags: 1, method: 1 };
        assert_eq!(
            unknown_outcome_hint(&replace, 7),
            "; its outcome is unknown: send it again with --stan 7 --retransmit"
        );
    }

    /// `pos --addr x:1 --stan 152 register-member CARD --operator 41 --passcode-file FILE` and the
    /// required data, then `extra`.
    fn register_member(files: &Files, extra: &[&str]) -> Result<Cli, clap::Error> {
        let passcode = files.path("service");
        let base = [
            "--addr",
            "x:1",
            "--stan",
            "152",
            "register-member",
            "6200880000000033",
            "--operator",
            "41",
            "--passcode-file",
            passcode.as_str(),
        ];
        parse(&[&base[..], extra].concat())
    }

    const REQUIRED: [&str; 8] =
        ["--name", "张三", "--id-type", "id_card", "--id-number", "11010519900307101X", "--phone", "13800138000"];

    #[test]
    fn register_member_builds_its_message_and_seals_the_operator() {
        let files = Files::new("register", &[("service", "s3rvice41\n")]);
        let cli = register_member(
            &files,
            &[
                &REQUIRED[..],
                &["--address", "北京市西城区", "--email", "zhang@example.cn", "--birth-date", "1990-03-07"],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(cli.op.name(), "register-member");
        let mut message = cli.op.message(1).unwrap();
        let key = test_key();
        seal_message(&cli.op, &mut message, &key, 1001, 152).unwrap();
        let Message::RegisterMember(register) = message else { panic!("{message:?}") };
        assert_eq!(register.card, CardNo(6_200_880_000_000_033));
        assert_eq!(
            register.member,
            MemberData {
                id_type: 1,
                birth_date: 19900307,
                name: "张三".to_string(),
                id_number: "11010519900307101X".to_string(),
                phone: "13800138000".to_string(),
                address: "北京市西城区".to_string(),
                email: "zhang@example.cn".to_string(),
            }
        );
        let operator = register.operator;
        assert_eq!(operator.operator_id, 41);
        assert_eq!(
            operator.passcode.open(&key, SecretKind::OperatorPasscode, 1001, 152),
            Ok(Some(b"s3rvice41".to_vec()))
        );
        assert_ne!(
            operator.passcode.open(&key, SecretKind::OperatorPasscode, 1001, 153),
            Ok(Some(b"s3rvice41".to_vec()))
        );

        // The optional data stay empty, the birth date 0; the ID type is named forgivingly.
        let cli = register_member(
            &files,
            &["--name", "Li Si", "--id-type", "Military-ID", "--id-number", "E1234567", "--phone", "+8613900139000"],
        )
        .unwrap();
        let Ok(Message::RegisterMember(register)) = cli.op.message(1) else { panic!() };
        let member = register.member;
        assert_eq!(
            (member.id_type, member.birth_date, member.address, member.email),
            (3, 0, String::new(), String::new())
        );
        // Whether the data make a valid registration is the switch's to say (M2): a wrong check
        // character is sent as typed.
        let cli = register_member(&files, &["--name", "x", "--id-type", "1", "--id-number", "1", "--phone", "1"]);
        assert!(cli
            .unwrap_err()
            .to_string()
            .contains("unknown ID type '1' (expected id_card, passport or military_id)"));
        let typo = [&REQUIRED[..5], &["110105199003071011", "--phone", "13800138000"]].concat();
        let Ok(Message::RegisterMember(register)) = register_member(&files, &typo).unwrap().op.message(1) else {
            panic!()
        };
        assert_eq!(register.member.id_number, "110105199003071011");
    }

    #[test]
    fn register_member_refuses_what_the_wire_cannot_carry() {
        let files = Files::new("register-usage", &[("service", "s3rvice41\n")]);
        let long_name = "名".repeat(22); // 66 bytes of UTF-8
        let long_address = "a".repeat(129);
        for (extra, problem) in [
            (vec!["--name", "张三", "--id-type", "id_card", "--id-number", "1"], "--phone"),
            (vec!["--id-type", "id_card", "--id-number", "1", "--phone", "1"], "--name"),
            (
                vec!["--name", " ", "--id-type", "passport", "--id-number", "E1", "--phone", "1"],
                "--name must not be empty",
            ),
            (
                vec!["--name", long_name.as_str(), "--id-type", "passport", "--id-number", "E1", "--phone", "1"],
                "--name is 66 bytes, more than the 64 a registration may carry",
            ),
            (
                vec!["--name", "x", "--id-type", "passport", "--id-number", "E123456789012345678901", "--phone", "1"],
                "--id-number is 22 bytes, more than the 20",
            ),
            (
                vec![
                    "--name",
                    "x",
                    "--id-type",
                    "passport",
                    "--id-number",
                    "E1",
                    "--phone",
                    "1",
                    "--address",
                    &long_address,
                ],
                "--address is 129 bytes, more than the 128",
            ),
            (vec!["--name", "x", "--id-type", "card", "--id-number", "E1", "--phone", "1"], "unknown ID type 'card'"),
            (
                vec![
                    "--name",
                    "x",
                    "--id-type",
                    "passport",
                    "--id-number",
                    "E1",
                    "--phone",
                    "1",
                    "--birth-date",
                    "19900307",
                ],
                "invalid date '19900307' (expected YYYY-MM-DD",
            ),
            (
                vec![
                    "--name",
                    "x",
                    "--id-type",
                    "passport",
                    "--id-number",
                    "E1",
                    "--phone",
                    "1",
                    "--birth-date",
                    "1990-02-29",
                ],
                "invalid date '1990-02-29'",
            ),
        ] {
            let error = register_member(&files, &extra).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{extra:?}");
            assert!(error.to_string().contains(problem), "{extra:?}: {error}");
        }
        assert_eq!(parse_date("2000-02-29"), Ok(20000229));
        assert_eq!(parse_date("1990-03-07"), Ok(19900307));
        for bad in ["1900-02-29", "1990-13-01", "1990-04-31", "1990-3-7", "0000-01-01", "1990-03-07-01", ""] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_id_type("passport"), Ok(2));
    }

    #[test]
    fn member_replace_and_history_build_their_requests() {
        let files = Files::new("member-requests", &[("service", "s3rvice41\n")]);
        let passcode = files.path("service");
        let with_operator = |args: &[&str]| {
            let tail = ["--operator", "41", "--passcode-file", passcode.as_str()];
            parse(&[&["--addr", "x:1"][..], args, &tail[..]].concat())
        };
        let key = test_key();
        let sealed = |cli: &Cli| {
            let mut request = cli.op.request(1).unwrap();
            seal_secrets(&cli.op, &mut request, &key, 1001, 9).unwrap();
            let operator = request.operator().unwrap();
            assert_eq!(operator.operator_id, 41);
            assert_eq!(
                operator.passcode.open(&key, SecretKind::OperatorPasscode, 1001, 9),
                Ok(Some(b"s3rvice41".to_vec()))
            );
            request
        };
        let cli = with_operator(&["member", CARD]).unwrap();
        assert_eq!(cli.op.name(), "member");
        assert!(matches!(sealed(&cli), Request::MemberQuery { card: CardNo(6_200_880_000_000_017), .. }));

        let cli =
            with_operator(&["replace-card", CARD, "6200880000000058", "--id-checked", "--method", "wechat"]).unwrap();
        let Request::ReplaceCard { old_card, new_card, flags, method, .. } = sealed(&cli) else { panic!() };
        assert_eq!(
            (old_card, new_card, flags, method),
            (
                CardNo(6_200_880_000_000_017),
                CardNo(6_200_880_000_000_058),
                AdminFlags::ID_CHECKED,
                PaymentMethod::Wechat as u8
            )
        );
        // Without --method: none (0), for a product without a replacement fee.
        let cli = with_operator(&["replace-card", CARD, "6200880000000058", "--id-checked"]).unwrap();
        assert!(matches!(cli.op.request(1), Ok(Request::ReplaceCard { method: 0, .. })));
        let same = with_operator(&["replace-card", CARD, CARD, "--id-checked"]).unwrap();
        assert_eq!(same.op.request(1), Err("replace-card: OLD and NEW are the same card 6200880000000017".to_string()));

        let cli = with_operator(&["history", CARD]).unwrap();
        assert!(matches!(sealed(&cli), Request::CardHistory { after_txn_id: 0, .. }));
        let cli = with_operator(&["history", CARD, "--after", "418312", "--all"]).unwrap();
        assert!(matches!(&cli.op, Op::History(HistoryArgs { all: true, .. })));
        assert!(matches!(sealed(&cli), Request::CardHistory { after_txn_id: 418_312, .. }));

        for (args, problem) in [
            (&["replace-card", CARD, "6200880000000058"][..], "--id-checked"),
            (&["replace-card", CARD, "6200880000000058", "--id-checked", "--method", "gold"], "gold"),
            (&["replace-card", CARD, "--id-checked"], "<NEW>"),
            (&["member", "123"], "invalid card number"),
            (&["history", CARD, "--after", "x"], "--after"),
            (&["history", CARD, "--after", "-1"], "unexpected argument"),
        ] {
            let error = with_operator(args).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains(problem), "{args:?}: {error}");
        }
        let error = parse(&["--addr", "x:1", "member", CARD]).map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("--operator"), "{error}");
    }

    fn member_text_of(op: &str, operator_id: u32, reply: &MemberReply) -> String {
        render_text(&Sent { op, terminal: 1001, stan: 153, retransmit: false }, &member_fields(operator_id, reply))
    }

    fn member_json_of(op: &str, operator_id: u32, reply: &MemberReply) -> String {
        render_json(&Sent { op, terminal: 1001, stan: 153, retransmit: false }, &member_fields(operator_id, reply))
    }

    #[test]
    fn member_replies_show_the_member_or_the_problem() {
        let full = MemberData {
            id_type: 1,
            birth_date: 19900307,
            name: "张三".to_string(),
            id_number: "11010519900307101X".to_string(),
            phone: "13800138000".to_string(),
            address: "北京市西城区".to_string(),
            email: "zhang@example.cn".to_string(),
        };
        let approved = |member: MemberData| MemberReply {
            code: ResponseCode::Approved,
            card: CardNo(6_200_880_000_000_033),
            state: protocol::CardState::Active,
            problem: 0,
            member,
        };
        assert_eq!(
            member_text_of("member", 41, &approved(full.clone())),
            "member  terminal 1001  stan 153\n\
             \x20 code       approved\n\
             \x20 operator   41\n\
             \x20 card       6200880000000033  (active)\n\
             \x20 name       张三\n\
             \x20 id         id_card  11010519900307101X\n\
             \x20 birth date 1990-03-07\n\
             \x20 phone      13800138000\n\
             \x20 address    北京市西城区\n\
             \x20 email      zhang@example.cn\n"
        );
        // Masked for the counter (M3): no birth date line.
        let masked = MemberData {
            id_number: "**************101X".to_string(),
            phone: "*******8000".to_string(),
            address: "***".to_string(),
            email: "***".to_string(),
            birth_date: 0,
            ..full.clone()
        };
        let text = member_text_of("member", 31, &approved(masked.clone()));
        assert!(text.contains("  id         id_card  **************101X\n  phone      *******8000\n"), "{text}");
        assert!(!text.contains("birth date"), "{text}");
        assert_eq!(
            member_json_of("member", 31, &approved(masked)),
            "{\"op\":\"member\",\"terminal\":1001,\"stan\":153,\"retransmit\":false,\"code\":\"approved\",\
             \"problem\":0,\"problem_field\":null,\"operator_id\":31,\"card\":\"6200880000000033\",\
             \"state\":\"active\",\"name\":\"张三\",\"id_type\":\"id_card\",\"id_number\":\"**************101X\",\
             \"birth_date\":0,\"phone\":\"*******8000\",\"address\":\"***\",\"email\":\"***\"}\n"
        );

        // A registration refused names the field and its rule; no member lines.
        let invalid = MemberReply {
            code: ResponseCode::MemberDataInvalid,
            card: CardNo(6_200_880_000_000_033),
            problem: 3,
            ..MemberReply::default()
        };
        let text = member_text_of("register-member", 41, &invalid);
        assert!(
            text.starts_with(
                "register-member  terminal 1001  stan 153\n  code       member_data_invalid\n  problem    id_number: an id_card's"
            ),
            "{text}"
        );
        assert!(text.ends_with("  operator   41\n  card       6200880000000033  (unknown)\n"), "{text}");
        let json = member_json_of("register-member", 41, &invalid);
        assert!(json.contains("\"problem\":3,\"problem_field\":\"id_number\","), "{json}");
        assert!(json.contains("\"id_type\":null,\"id_number\":\"\",\"birth_date\":0,"), "{json}");
        for problem in 1..=7 {
            assert_ne!(member_problem(problem).0, "unknown", "{problem}");
        }
        let refused = MemberReply { code: ResponseCode::RoleNotPermitted, ..MemberReply::default() };
        assert!(member_text_of("member", 1, &refused).contains("  operator   1  (not permitted: "));

        // The reply must be the registration's: a query's reply is not taken for it.
        let register = Message::RegisterMember(Box::new(RegisterMember {
            operator: OperatorAuth { operator_id: 41, passcode: Sealed::NONE },
            card: CardNo(6_200_880_000_000_033),
            member: full,
        }));
        let reply = |request| Response::Member { request, reply: Box::new(invalid.clone()) };
        assert!(message_fields(&register, &reply(MsgType::RegisterMember)).is_some());
        assert!(message_fields(&register, &reply(MsgType::MemberQuery)).is_none());
    }

    #[test]
    fn replacement_replies_name_the_old_card_and_describe_the_new_one() {
        let replace = |method| Request::ReplaceCard {
            operator: OperatorAuth { operator_id: 41, passcode: Sealed::NONE },
            old_card: CardNo(6_200_880_000_000_025),
            new_card: CardNo(6_200_880_000_000_058),
            flags: AdminFlags::ID_CHECKED,
            method,
        };
        let reply = CardReply {
            code: ResponseCode::Approved,
            state: protocol::CardState::Active,
            txn_id: 418_312,
            amount_minor: 91_000,
            gross_minor: 91_000,
            cash_minor: 91_000,
            points_earned: 1_290,
            points_balance: 1_290,
            tier: 2,
            notices: CardReply::NOTICE_PIN_MUST_CHANGE,
            ..CardReply::default()
        };
        assert_eq!(
            text_of(&replace(PaymentMethod::Cash as u8), reply),
            "replace_card  terminal 1001  stan 7\n\
             \x20 code       approved\n\
             \x20 operator   41\n\
             \x20 old card   6200880000000025\n\
             \x20 fee paid   cash\n\
             \x20 card       6200880000000058  (active)\n\
             \x20 txn id     418312\n\
             \x20 amount     910.00\n\
             \x20 cash       910.00\n\
             \x20 bonus      0.00\n\
             \x20 held       0.00\n\
             \x20 available  910.00\n\
             \x20 points     +1290 earned, balance 1290\n\
             \x20 tier       2\n\
             \x20 notice     PIN must be changed: ask the holder to change it\n"
        );
        let json = json_of(&replace(PaymentMethod::Cash as u8), reply);
        assert!(
            json.contains("\"code\":\"approved\",\"operator_id\":41,\"old_card\":\"6200880000000025\",\"method\":\"cash\",\"card\":\"6200880000000058\",\"state\":\"active\",\"txn_id\":418312,"),
            "{json}"
        );
        // Declines say what was missing.
        let declined = |code| CardReply { code, ..CardReply::default() };
        let text = text_of(&replace(0), declined(ResponseCode::InvalidField));
        assert!(text.contains("  method     none given: a product with a replacement fee needs --method\n"), "{text}");
        assert!(!text.contains("fee paid"), "{text}");
        assert!(json_of(&replace(0), declined(ResponseCode::InvalidField)).contains("\"method\":null,"));
        let text = text_of(&replace(1), declined(ResponseCode::ReplacementRefused));
        assert!(text.contains("  refused    the old card is not a registered member card"), "{text}");
        assert!(
            text.contains("  new card   6200880000000058\n  state      unknown  (of the card the reply is about)\n"),
            "{text}"
        );
        let text = text_of(&replace(1), declined(ResponseCode::OpenHold));
        assert!(text.contains("  refused    the old card has an open hold"), "{text}");
        let text = text_of(&replace(1), declined(ResponseCode::IdNotChecked));
        assert!(text.contains("  id         not checked: "), "{text}");
    }

    #[test]
    fn history_replies_are_a_table_of_postings() {
        let request = Request::CardHistory {
            operator: OperatorAuth { operator_id: 31, passcode: Sealed::NONE },
            card: CardNo(6_200_880_000_000_058),
            after_txn_id: 0,
        };
        let entry = |txn_id, kind: PostingKind, amount_minor, cash_delta_minor| HistoryEntry {
            txn_id,
            kind: kind as u8,
            business_date: 20261122,
            // 2026-11-22T10:14:00+08:00.
            time_ms: 1_795_313_640_000,
            store_id: 21,
            terminal_id: u32::MAX,
            operator_id: 41,
            amount_minor,
            cash_delta_minor,
            cash_after_minor: 91_000,
            ..HistoryEntry::default()
        };
        let reply = HistoryReply {
            code: ResponseCode::Approved,
            card: CardNo(6_200_880_000_000_058),
            more: 1,
            entries: vec![
                entry(418_312, PostingKind::TransferIn, 91_000, 91_000),
                HistoryEntry { kind: 99, ..entry(418_313, PostingKind::Fee, 1_800, 0) },
            ],
        };
        let response = Response::History(Box::new(reply.clone()));
        let fields = response_fields(&request, &response).unwrap();
        let sent = Sent { op: "history", terminal: 1001, stan: 155, retransmit: false };
        assert_eq!(
            render_text(&sent, &fields),
            "history  terminal 1001  stan 155\n\
             \x20 code       approved\n\
             \x20 operator   31\n\
             \x20 card       6200880000000058\n\
             \x20 postings   2\n\
             \x20    txn  date        time      kind         store    terminal  operator  amount  cash change  bonus change  cash after  bonus after  held after\n\
             \x20 418312  2026-11-22  10:14:00  transfer_in     21  4294967295        41  910.00      +910.00          0.00      910.00         0.00        0.00\n\
             \x20 418313  2026-11-22  10:14:00  kind 99         21  4294967295        41   18.00         0.00          0.00      910.00         0.00        0.00\n\
             \x20 more       yes: ask again with --after 418313\n"
        );
        let json = render_json(&sent, &fields);
        assert!(json.contains("\"code\":\"approved\",\"operator_id\":31,\"card\":\"6200880000000058\",\"pages\":1,\"count\":2,\"more\":true,\"entries\":[{\"txn_id\":418312,\"kind\":\"transfer_in\",\"business_date\":20261122,\"time_ms\":1795313640000,\"store_id\":21,\"terminal_id\":4294967295,\"operator_id\":41,\"amount_minor\":91000,\"cash_delta_minor\":91000,"), "{json}");
        assert!(json.contains("{\"txn_id\":418313,\"kind\":99,"), "{json}");
        // Pages asked with --all are counted, with their trace numbers.
        let text = render_text(&sent, &history_fields(31, &HistoryReply { more: 0, ..reply }, &[155, 156, 157]));
        assert!(text.contains("  pages      3  (stans 155 to 157)\n  postings   2\n"), "{text}");
        assert!(!text.contains("more"), "{text}");
        // A decline lists nothing.
        let declined = Response::History(Box::new(HistoryReply {
            code: ResponseCode::UnknownCard,
            card: CardNo(6_200_880_000_000_058),
            ..HistoryReply::default()
        }));
        let text = render_text(&sent, &response_fields(&request, &declined).unwrap());
        assert_eq!(text, "history  terminal 1001  stan 155\n  code       unknown_card\n  operator   31\n  card       6200880000000058\n");
        // Only a history answers a history.
        assert!(response_fields(&request, &Response::Echo { code: ResponseCode::Approved }).is_none());
    }

    #[test]
    fn admin_set_staff_and_record_invoice_build_their_requests() {
        use AdminAction as A;
        let fields = |action: &str, extra: &[&str]| admin_fields_of(admin_request(action, extra).unwrap());
        // V4, T9: the staff member's operator id travels in `value`; 0 unlinks the card.
        assert_eq!(fields("set_staff", &["--staff-operator", "31"]), (A::SetStaff as u8, 0, 31, 0, 0));
        assert_eq!(fields("set-staff", &["--staff-operator", "0"]), (A::SetStaff as u8, 0, 0, 0, 0));
        assert_eq!(fields("set_staff", &["--staff-operator", "4294967295"]).2, i64::from(u32::MAX), "any operator id");
        // V6: the invoiced amount in `value`, the load or card sale in `original_txn_id`.
        assert_eq!(
            fields("record_invoice", &["--original", "418314", "--amount", "1000"]),
            (A::RecordInvoice as u8, 0, 100_000, 418_314, 0)
        );
        assert_eq!(
            fields("record_invoice", &["--original", "418314", "--amount", "0.01", "--ticket", "77"]),
            (A::RecordInvoice as u8, 0, 1, 418_314, 77)
        );
        for (action, extra, problem) in [
            (
                "set_staff",
                &[][..],
                "admin set_staff: --staff-operator ID (the staff member's operator id; 0: none) is required",
            ),
            ("freeze", &["--staff-operator", "31"], "admin freeze: --staff-operator is for set_staff only"),
            (
                "record_invoice",
                &["--staff-operator", "31", "--original", "5", "--amount", "1"],
                "--staff-operator is for set_staff only",
            ),
            (
                "set_staff",
                &["--staff-operator", "31", "--amount", "1"],
                "--amount is for adjust, load_reversal or record_invoice only",
            ),
            (
                "record_invoice",
                &["--amount", "1"],
                "admin record_invoice: --original TXN (the load or card sale invoiced) is required",
            ),
            (
                "record_invoice",
                &["--original", "5"],
                "admin record_invoice: --amount YUAN (the amount invoiced) is required",
            ),
            (
                "record_invoice",
                &["--original", "5", "--amount", "0"],
                "admin record_invoice: --amount must be more than 0",
            ),
            (
                "record_invoice",
                &["--original", "5", "--amount", "-3"],
                "admin record_invoice: --amount must be more than 0",
            ),
        ] {
            let error = admin_request(action, extra).unwrap_err();
            assert!(error.contains(problem), "{action} {extra:?}: {error}");
        }
        for (extra, problem) in [
            (&["--staff-operator", "-1"][..], "unexpected argument '-1'"),
            (
                &["--staff-operator", "x"],
                "invalid operator id 'x' (expected 0..=4294967295; 0: no longer a staff card)",
            ),
            (&["--staff-operator", "4294967296"], "invalid operator id '4294967296'"),
        ] {
            let error = admin("set_staff", extra).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{extra:?}");
            assert!(error.to_string().contains(problem), "{extra:?}: {error}");
        }
    }

    #[test]
    fn staff_and_invoice_replies_say_what_was_set_and_why_an_invoice_was_refused() {
        // `card_admin_request` with `value` and `original_txn_id`.
        let valued = |action, value, original| match card_admin_request(action, 0) {
            Request::CardAdmin { operator, card, action, flags, ticket, verification, new_pin, .. } => {
                Request::CardAdmin {
                    operator,
                    card,
                    action,
                    flags,
                    value,
                    original_txn_id: original,
                    ticket,
                    verification,
                    new_pin,
                }
            }
            other => other,
        };
        let staff = valued(AdminAction::SetStaff, 31, 0);
        let reply = CardReply {
            code: ResponseCode::Approved,
            state: protocol::CardState::Active,
            txn_id: 418_320,
            cash_minor: 100_000,
            ..CardReply::default()
        };
        let text = text_of(&staff, reply);
        assert!(text.contains("  action     set_staff\n  operator   51\n  staff      operator 31\n"), "{text}");
        assert!(json_of(&staff, reply).contains("\"staff_operator_id\":31,"));
        let unlinked = valued(AdminAction::SetStaff, 0, 0);
        assert!(text_of(&unlinked, reply).contains("  staff      none: no longer a staff card\n"));

        let invoice = valued(AdminAction::RecordInvoice, 100_000, 418_314);
        let recorded = CardReply { amount_minor: 100_000, gross_minor: 100_000, ..reply };
        let text = text_of(&invoice, recorded);
        assert!(text.contains("  invoice    1000.00\n  load       418314\n"), "{text}");
        assert!(text.contains("  amount     1000.00\n  cash       1000.00\n"), "{text}");
        let json = json_of(&invoice, recorded);
        assert!(json.contains("\"invoice_minor\":100000,\"original_txn_id\":418314,"), "{json}");
        // Declined: what is left of the load to invoice, or that the original is no load.
        let declined = |limit_minor| CardReply { code: ResponseCode::InvoiceExceedsLoad, limit_minor, ..reply };
        let text = text_of(&invoice, declined(40_000));
        assert!(text.contains("  code       invoice_exceeds_load\n  limit      400.00  (left to invoice)\n"), "{text}");
        let text = text_of(&invoice, declined(0));
        assert!(text.contains("  refused    nothing left to invoice against it, or it is not a load"), "{text}");
        // A card sale beyond the product's approved quantity (P3).
        let sell = Request::SellCard { card: CardNo(6_200_880_000_000_041), amount_minor: 0, method: 1 };
        let sold_out = CardReply {
            code: ResponseCode::QuantityExhausted,
            state: protocol::CardState::Stock,
            ..CardReply::default()
        };
        let text = text_of(&sell, sold_out);
        assert!(text.contains("  code       quantity_exhausted\n  quantity   sold out: "), "{text}");
    }

    /// `pos --addr x:1 set-product EXTRA... --operator 1 --passcode-file FILE`.
    fn set_product(files: &Files, extra: &[&str]) -> Result<Cli, clap::Error> {
        let admin = files.path("admin");
        let tail = ["--operator", "1", "--passcode-file", admin.as_str()];
        parse(&[&["--addr", "x:1", "set-product"][..], extra, &tail[..]].concat())
    }

    #[test]
    fn set_product_builds_its_request_and_seals_the_operator() {
        let files = Files::new("set-product", &[("admin", "4dmin-pass\n")]);
        let cli = set_product(&files, &["special", "--enabled", "--discount", "30", "--quantity", "500"]).unwrap();
        assert_eq!(cli.op.name(), "set-product");
        let mut request = cli.op.request(1).unwrap();
        let key = test_key();
        seal_secrets(&cli.op, &mut request, &key, 1001, 156).unwrap();
        let Request::SetProduct { operator, product, enabled, discount_bp, approved_quantity } = request else {
            panic!("{request:?}")
        };
        assert_eq!((product, enabled, discount_bp, approved_quantity), (3, 1, 3_000, 500));
        assert_eq!(operator.operator_id, 1);
        assert_eq!(
            operator.passcode.open(&key, SecretKind::OperatorPasscode, 1001, 156),
            Ok(Some(b"4dmin-pass".to_vec()))
        );
        // Percent with up to two decimals, a % sign allowed; products by name or code.
        for (discount, bp) in [("12.5", 1_250), ("12.50%", 1_250), ("0.01", 1), ("99.99", 9_999), ("7 %", 700)] {
            let cli = set_product(&files, &["3", "--enabled", "--discount", discount, "--quantity", "1"]).unwrap();
            assert!(
                matches!(cli.op.request(1), Ok(Request::SetProduct { discount_bp, .. }) if discount_bp == bp),
                "{discount}"
            );
        }
        // Disabling, or a product without a discount: no discount, and no cap without --quantity.
        let cli = set_product(&files, &["special", "--disabled"]).unwrap();
        assert!(matches!(
            cli.op.request(1),
            Ok(Request::SetProduct { product: 3, enabled: 0, discount_bp: 0, approved_quantity: 0, .. })
        ));
        let cli = set_product(&files, &["Gift", "--enabled", "--quantity", "10000"]).unwrap();
        assert!(matches!(
            cli.op.request(1),
            Ok(Request::SetProduct { product: 2, enabled: 1, discount_bp: 0, approved_quantity: 10_000, .. })
        ));
        // What the switch would refuse is refused before anything is sent.
        for (extra, problem) in [
            (&["gift", "--enabled", "--discount", "10"][..], "set-product gift: --discount is for special only"),
            (&["special", "--enabled", "--quantity", "500"], "--discount PERCENT and --quantity N are both required"),
            (&["special", "--enabled", "--discount", "30"], "--discount PERCENT and --quantity N are both required"),
        ] {
            let cli = set_product(&files, extra).unwrap();
            let error = cli.op.request(1).unwrap_err();
            assert!(error.contains(problem), "{extra:?}: {error}");
        }
        for (extra, problem) in [
            (&["special", "--discount", "30", "--quantity", "5"][..], "--enabled"),
            (&["special", "--enabled", "--disabled"], "cannot be used with"),
            (&["food", "--enabled"], "unknown product 'food'"),
            (&["9", "--enabled"], "unknown product '9'"),
            (&["special", "--enabled", "--discount", "100", "--quantity", "5"], "invalid discount '100'"),
            (&["special", "--enabled", "--discount", "0", "--quantity", "5"], "invalid discount '0'"),
            (&["special", "--enabled", "--discount", "12.345", "--quantity", "5"], "invalid discount '12.345'"),
            (&["special", "--enabled", "--discount", "-5", "--quantity", "5"], "unexpected argument '-5'"),
            (
                &["special", "--enabled", "--discount", "30", "--quantity", "0"],
                "a quantity of 0 cards could never be sold",
            ),
            (
                &["special", "--enabled", "--discount", "30", "--quantity", "4294967296"],
                "invalid quantity '4294967296'",
            ),
        ] {
            let error = set_product(&files, extra).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{extra:?}");
            assert!(error.to_string().contains(problem), "{extra:?}: {error}");
        }
        let error = parse(&["--addr", "x:1", "set-product", "special", "--disabled"]).map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("--operator"), "{error}");
    }

    #[test]
    fn set_product_replies_show_the_product_and_the_catalog_version() {
        let request = Request::SetProduct {
            operator: OperatorAuth { operator_id: 1, passcode: Sealed::NONE },
            product: 3,
            enabled: 1,
            discount_bp: 3_000,
            approved_quantity: 500,
        };
        let sent = Sent { op: "set-product", terminal: 1001, stan: 156, retransmit: false };
        let reply = |code, enabled, catalog_version| {
            let response = Response::Product(ProductReply { code, product: 3, enabled, catalog_version });
            response_fields(&request, &response).unwrap()
        };
        let approved = reply(ResponseCode::Approved, 1, 2);
        assert_eq!(
            render_text(&sent, &approved),
            "set-product  terminal 1001  stan 156\n\
             \x20 code       approved\n\
             \x20 by         1\n\
             \x20 product    special (3)\n\
             \x20 state      enabled\n\
             \x20 discount   30.00%\n\
             \x20 quantity   500 cards\n\
             \x20 catalog    version 2\n"
        );
        assert_eq!(
            render_json(&sent, &approved),
            "{\"op\":\"set-product\",\"terminal\":1001,\"stan\":156,\"retransmit\":false,\"code\":\"approved\",\
             \"by_operator_id\":1,\"product\":3,\"enabled\":true,\"discount_bp\":3000,\"approved_quantity\":500,\
             \"catalog_version\":2}\n"
        );
        // Declines say why, and show nothing as set.
        let text = render_text(&sent, &reply(ResponseCode::UnknownProduct, 0, 0));
        assert!(
            text.contains("  product    special (3)\n  refused    the switch's catalog does not list this product\n"),
            "{text}"
        );
        assert!(!text.contains("catalog    version") && !text.contains("discount"), "{text}");
        assert!(!text.contains("state"), "a decline says nothing of the product's state: {text}");
        let text = render_text(&sent, &reply(ResponseCode::RoleNotPermitted, 0, 0));
        assert!(text.contains("  by         1  (not permitted: "), "{text}");
        let text = render_text(&sent, &reply(ResponseCode::NotPermitted, 0, 0));
        assert!(text.contains("  refused    set-product is for admin terminals only\n"), "{text}");
        // A product without a discount shows none; no cap is said so.
        let gift = Request::SetProduct {
            operator: OperatorAuth { operator_id: 1, passcode: Sealed::NONE },
            product: 2,
            enabled: 1,
            discount_bp: 0,
            approved_quantity: 0,
        };
        let response = Response::Product(ProductReply {
            code: ResponseCode::Approved,
            product: 2,
            enabled: 1,
            catalog_version: 3,
        });
        let text = render_text(&sent, &response_fields(&gift, &response).unwrap());
        assert!(text.contains("  product    gift (2)\n  state      enabled\n  quantity   no cap\n"), "{text}");
        // Only a product reply answers a set_product.
        let wrong =
            Response::Operator(OperatorReply { code: ResponseCode::Approved, operator_id: 1, role: 6, enabled: 1 });
        assert!(response_fields(&request, &wrong).is_none());
        assert!(unknown_outcome_hint(&request, 156).contains("a new catalog version"));
    }

    #[test]
    fn operator_sign_on_and_the_cashier_option() {
        let files = Files::new("cashier", &[("cashier", "c4shier31\n")]);
        let passcode = files.path("cashier");
        let cli =
            parse(&["--addr", "x:1", "operator-sign-on", "--operator", "31", "--passcode-file", passcode.as_str()])
                .unwrap();
        assert_eq!(cli.op.name(), "operator-sign-on");
        let mut request = cli.op.request(1).unwrap();
        let key = test_key();
        seal_secrets(&cli.op, &mut request, &key, 1001, 159).unwrap();
        let Request::OperatorSignOn { operator } = request else { panic!("{request:?}") };
        assert_eq!(operator.operator_id, 31);
        assert_eq!(
            operator.passcode.open(&key, SecretKind::OperatorPasscode, 1001, 159),
            Ok(Some(b"c4shier31".to_vec()))
        );
        assert_eq!(cashier(&cli), Ok(None));
        assert_eq!(unknown_outcome_hint(&request, 159), "");

        // --cashier is global: before or after the operation, with its passcode file.
        for args in [
            &["--addr", "x:1", "--cashier", "31", "--cashier-passcode-file", passcode.as_str(), "sale", CARD, "10"][..],
            &["--addr", "x:1", "sale", CARD, "10", "--cashier", "31", "--cashier-passcode-file", passcode.as_str()],
        ] {
            let cli = parse(args).unwrap();
            let args = cashier(&cli).unwrap().expect("a cashier");
            assert_eq!(args.operator_id, 31);
            let sealed = args.seal(&key, 1001, cashier_sign_on_stan(0x8000_0007)).unwrap();
            assert_eq!(
                sealed.passcode.open(&key, SecretKind::OperatorPasscode, 1001, 0x8000_0008),
                Ok(Some(b"c4shier31".to_vec()))
            );
        }
        // The cashier's trace number follows the sign-on's, in the upper half (never an
        // operation's).
        assert_eq!(cashier_sign_on_stan(0x8000_0007), 0x8000_0008);
        assert_eq!(cashier_sign_on_stan(u32::MAX), SIGN_ON_STAN_BIT);
        for stan in [0x8000_0000, 0x9234_5678, u32::MAX] {
            assert!(cashier_sign_on_stan(stan) > MAX_OPERATION_STAN, "{stan}");
        }
        // Refused where it cannot apply, or without its passcode file.
        for (args, problem) in [
            (&["sign-on"][..], "sign-on: --cashier signs a cashier on after the sign-on"),
            (&["echo"], "echo: --cashier signs a cashier on"),
            (&["operator-sign-on", "--operator", "31", "--passcode-file", "p"], "name the operator with --operator"),
        ] {
            let tail = ["--cashier", "31", "--cashier-passcode-file", passcode.as_str()];
            let cli = parse(&[&["--addr", "x:1"][..], args, &tail[..]].concat()).unwrap();
            let error = cashier(&cli).unwrap_err();
            assert!(error.contains(problem), "{args:?}: {error}");
        }
        for (args, problem) in [
            (&["--cashier", "31", "sale", CARD, "1"][..], "--cashier-passcode-file"),
            (&["--cashier-passcode-file", "p", "sale", CARD, "1"], "--cashier"),
            (&["--cashier", "0", "--cashier-passcode-file", "p", "sale", CARD, "1"], "invalid operator id '0'"),
            (&["operator-sign-on", "--passcode-file", "p"], "--operator"),
        ] {
            let error = parse(&[&["--addr", "x:1"][..], args].concat()).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains(problem), "{args:?}: {error}");
        }
    }

    #[test]
    fn operator_sign_on_replies_and_the_cashier_line() {
        let request = Request::OperatorSignOn { operator: OperatorAuth { operator_id: 31, passcode: Sealed::NONE } };
        let sent = Sent { op: "operator-sign-on", terminal: 1001, stan: 159, retransmit: false };
        let reply = |code, role, enabled| {
            let response = Response::OperatorSignOn(OperatorReply { code, operator_id: 31, role, enabled });
            response_fields(&request, &response).unwrap()
        };
        let approved = reply(ResponseCode::Approved, OperatorRole::Cashier as u8, 1);
        assert_eq!(
            render_text(&sent, &approved),
            "operator-sign-on  terminal 1001  stan 159\n\
             \x20 code       approved\n\
             \x20 operator   31\n\
             \x20 role       cashier\n\
             \x20 state      signed on\n"
        );
        assert_eq!(
            render_json(&sent, &approved),
            "{\"op\":\"operator-sign-on\",\"terminal\":1001,\"stan\":159,\"retransmit\":false,\"code\":\"approved\",\
             \"operator_id\":31,\"role\":\"cashier\",\"signed_on\":true}\n"
        );
        let text = render_text(&sent, &reply(ResponseCode::RoleNotPermitted, 0, 0));
        assert!(
            text.contains("  operator   31  (not permitted: not a cashier or front desk of this store)\n"),
            "{text}"
        );
        assert!(text.contains("  role       none\n  state      not signed on\n"), "{text}");
        let text = render_text(&sent, &reply(ResponseCode::OperatorRefused, 0, 0));
        assert!(text.contains("  operator   31  (refused: "), "{text}");
        // The operator's id is the request's, also when the decline carries 0 (steps 1-3).
        let declined = Response::OperatorSignOn(OperatorReply {
            code: ResponseCode::NotSignedOn,
            operator_id: 0,
            role: 0,
            enabled: 0,
        });
        assert!(render_text(&sent, &response_fields(&request, &declined).unwrap()).contains("  operator   31\n"));
        // A set_operator reply does not answer it, nor the other way round.
        let wrong =
            Response::Operator(OperatorReply { code: ResponseCode::Approved, operator_id: 31, role: 1, enabled: 1 });
        assert!(response_fields(&request, &wrong).is_none());

        // An operation rung up by a cashier names it after its code.
        let mut fields = response_fields(
            &sale_request(1_000),
            &Response::Card { request: MsgType::Sale, reply: CardReply::default() },
        )
        .unwrap();
        fields.insert(1, cashier_field(31, 0x8000_0008));
        let sent = Sent { op: "sale", terminal: 1001, stan: 7, retransmit: false };
        let text = render_text(&sent, &fields);
        assert!(
            text.starts_with(
                "sale  terminal 1001  stan 7\n  code       approved\n  cashier    31  (signed on, stan 2147483656)\n"
            ),
            "{text}"
        );
        assert!(render_json(&sent, &fields)
            .contains("\"code\":\"approved\",\"cashier_id\":31,\"cashier_stan\":2147483656,"));
    }

    /// `pos --addr x:1 batch-totals EXTRA...`.
    fn batch_totals(extra: &[&str]) -> Result<Cli, clap::Error> {
        parse(&[&["--addr", "x:1", "batch-totals"][..], extra].concat())
    }

    /// The batch of protocol/vectors/batch_totals.txt: a card sold for 500.00, two sales for
    /// 173.45 and a refund of 20.00.
    fn vector_batch() -> BatchTotals {
        BatchTotals { counts: [1, 0, 2, 0, 0, 1, 0, 0], amounts_minor: [50_000, 0, 17_345, 0, 0, 2_000, 0, 0] }
    }

    #[test]
    fn batch_totals_builds_its_request_from_the_lines_given() {
        let cli = batch_totals(&[
            "--sale",
            "2:173.45",
            "--refund",
            "1:20.00",
            "--sell-card",
            "1:500",
            "--date",
            "2026-11-22",
        ])
        .unwrap();
        assert_eq!(cli.op.name(), "batch-totals");
        let request = cli.op.request(cli.store).unwrap();
        assert_eq!(request, Request::BatchTotals { business_date: 20_261_122, totals: vector_batch() });
        assert_eq!(request.msg_type(), MsgType::BatchTotals);
        // Nothing is posted or remembered: there is nothing to retransmit or reverse.
        assert_eq!(unknown_outcome_hint(&request, 160), "");
        // Without --date, the store's current business date (0); lines not given are 0.
        let cli = batch_totals(&["--load", "0:0"]).unwrap();
        assert_eq!(cli.op.request(1), Ok(Request::BatchTotals { business_date: 0, totals: BatchTotals::default() }));
        // Each option is the line of its kind, in the order of the wire (BATCH_KINDS).
        for (i, kind) in BATCH_KINDS.iter().enumerate() {
            let option = format!("--{}", kind.as_str().replace('_', "-"));
            let Ok(Request::BatchTotals { totals, .. }) = batch_totals(&[&option, " 3 : 0.07 "]).unwrap().op.request(1)
            else {
                panic!("{option}")
            };
            let mut expected = BatchTotals::default();
            (expected.counts[i], expected.amounts_minor[i]) = (3, 7);
            assert_eq!(totals, expected, "{option}");
        }
    }

    #[test]
    fn batch_totals_refuses_malformed_lines_and_dates_before_sending() {
        for (extra, problem) in [
            (&["--sale", "2"][..], "invalid batch line '2' (expected COUNT:YUAN"),
            (&["--sale", ""], "invalid batch line ''"),
            (&["--sale", "2:"], "batch line '2:': invalid amount ''"),
            (&["--sale", "2:1.234"], "batch line '2:1.234': invalid amount '1.234'"),
            (&["--sale", "2:1,50"], "invalid amount '1,50'"),
            (&["--sale", "-2:10"], "invalid batch line '-2:10': counts and amounts are never negative"),
            (&["--refund", "2:-10"], "invalid batch line '2:-10': counts and amounts are never negative"),
            (&["--sale", "x:10"], "invalid count 'x' in batch line 'x:10'"),
            (&["--sale", "+2:10"], "invalid count '+2'"),
            (&["--sale", "4294967296:10"], "invalid count '4294967296'"),
            (&["--sale", "0:10"], "0 postings cannot amount to 10.00"),
            (&["--sale", "1:10000000000.01"], "exceeds the largest amount"),
            (&["--sale", "1:1", "--sale", "2:2"], "cannot be used multiple times"),
            (&["--date", "20261122"], "invalid date '20261122' (expected YYYY-MM-DD"),
            (&["--date", "2026-02-29"], "invalid date '2026-02-29'"),
            (&["--date", "0000-01-01"], "invalid date"),
            (&["--cash", "1:1"], "unexpected argument '--cash'"),
        ] {
            let error = batch_totals(extra).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{extra:?}");
            assert!(error.to_string().contains(problem), "{extra:?}: {error}");
        }
        assert_eq!(parse_batch_line("0:0"), Ok(BatchLine { count: 0, amount_minor: 0 }));
        // A zero-value card sale is a posting of 0.00.
        assert_eq!(parse_batch_line("4:0"), Ok(BatchLine { count: 4, amount_minor: 0 }));
        // The exit status out of balance is in the help, apart from the decline's.
        let help = Cli::command().find_subcommand_mut("batch-totals").unwrap().render_long_help().to_string();
        assert!(help.contains("Exit status: 0 in balance, 1 declined, 2"), "{help}");
        assert!(help.contains("3 out of balance"), "{help}");
        assert!(help.contains("--sale <COUNT:YUAN>"), "{help}");
    }

    fn batch_sent() -> Sent<'static> {
        Sent { op: "batch-totals", terminal: 1001, stan: 160, retransmit: false }
    }

    #[test]
    fn batch_totals_replies_mark_the_lines_that_differ() {
        let request = Request::BatchTotals { business_date: 20_261_122, totals: vector_batch() };
        // protocol/vectors/batch_totals_reply.txt: the switch has a second refund, of 10.00.
        let mut theirs = vector_batch();
        (theirs.counts[5], theirs.amounts_minor[5]) = (2, 3_000);
        let out = Response::BatchTotals(BatchTotalsReply {
            code: ResponseCode::Approved,
            in_balance: 0,
            business_date: 20_261_122,
            totals: theirs,
        });
        let fields = response_fields(&request, &out).unwrap();
        assert_eq!(
            render_text(&batch_sent(), &fields),
            "batch-totals  terminal 1001  stan 160\n\
             \x20 code       approved\n\
             \x20 batch      out of balance: 1 line differs\n\
             \x20 date       2026-11-22\n\
             \x20 kind       terminal count  terminal amount  switch count  switch amount\n\
             \x20 sell_card               1           500.00             1         500.00\n\
             \x20 load                    0             0.00             0           0.00\n\
             \x20 sale                    2           173.45             2         173.45\n\
             \x20 hold                    0             0.00             0           0.00\n\
             \x20 capture                 0             0.00             0           0.00\n\
             \x20 refund                  1            20.00             2          30.00  <- differs\n\
             \x20 void                    0             0.00             0           0.00\n\
             \x20 reversal                0             0.00             0           0.00\n"
        );
        let json = render_json(&batch_sent(), &fields);
        assert!(
            json.starts_with(
                "{\"op\":\"batch-totals\",\"terminal\":1001,\"stan\":160,\"retransmit\":false,\"code\":\"approved\",\
                 \"in_balance\":false,\"business_date\":20261122,\"requested_business_date\":20261122,\"lines\":[\
                 {\"kind\":\"sell_card\",\"count\":1,\"amount_minor\":50000,\"switch_count\":1,\
                 \"switch_amount_minor\":50000,\"differs\":false},"
            ),
            "{json}"
        );
        assert!(
            json.contains(
                "{\"kind\":\"refund\",\"count\":1,\"amount_minor\":2000,\"switch_count\":2,\
                 \"switch_amount_minor\":3000,\"differs\":true},"
            ),
            "{json}"
        );
        assert!(json.ends_with("\"switch_amount_minor\":0,\"differs\":false}]}\n"), "{json}");
        assert_eq!(json.matches("\"kind\":").count(), BATCH_KINDS.len());
        assert_eq!(exit_status(&out), EXIT_OUT_OF_BALANCE);

        // In balance, for the store's current date (asked as 0): no marks, exit status 0.
        let today = Request::BatchTotals { business_date: 0, totals: vector_batch() };
        let balanced = Response::BatchTotals(BatchTotalsReply {
            code: ResponseCode::Approved,
            in_balance: 1,
            business_date: 20_261_122,
            totals: vector_batch(),
        });
        let fields = response_fields(&today, &balanced).unwrap();
        let text = render_text(&batch_sent(), &fields);
        assert!(
            text.contains(
                "  batch      in balance\n  date       2026-11-22  (the store's current business date)\n  kind  "
            ),
            "{text}"
        );
        assert!(!text.contains(DIFFERS), "{text}");
        let json = render_json(&batch_sent(), &fields);
        assert!(json.contains("\"in_balance\":true,\"business_date\":20261122,\"requested_business_date\":0,"));
        assert!(!json.contains("\"differs\":true"), "{json}");
        assert_eq!(exit_status(&balanced), EXIT_APPROVED);

        // Several lines off, among them one the terminal has none of.
        let mut theirs = vector_batch();
        (theirs.counts[1], theirs.amounts_minor[1], theirs.amounts_minor[2]) = (1, 10_000, 17_300);
        let off = Response::BatchTotals(BatchTotalsReply {
            code: ResponseCode::Approved,
            in_balance: 0,
            business_date: 20_261_122,
            totals: theirs,
        });
        let text = render_text(&batch_sent(), &response_fields(&request, &off).unwrap());
        assert!(text.contains("  batch      out of balance: 2 lines differ\n"), "{text}");
        assert!(
            text.contains("  load                    0             0.00             1         100.00  <- differs\n")
        );
        assert!(
            text.contains("  sale                    2           173.45             2         173.00  <- differs\n")
        );

        // A decline compares nothing: no verdict, no table, the date asked; exit status 1.
        let declined = Response::decline(MsgType::BatchTotals, ResponseCode::InvalidField);
        let fields = response_fields(&request, &declined).unwrap();
        assert_eq!(
            render_text(&batch_sent(), &fields),
            "batch-totals  terminal 1001  stan 160\n\
             \x20 code       invalid_field\n\
             \x20 date       2026-11-22\n\
             \x20 refused    the date is not a calendar date, or a line is negative\n"
        );
        let json = render_json(&batch_sent(), &fields);
        assert!(
            json.contains(
                "\"code\":\"invalid_field\",\"in_balance\":false,\"business_date\":0,\"requested_business_date\":20261122,"
            ),
            "{json}"
        );
        assert!(!json.contains("\"differs\":true"), "{json}");
        assert_eq!(exit_status(&declined), EXIT_DECLINED);
        let text = render_text(&batch_sent(), &response_fields(&today, &declined).unwrap());
        assert!(text.contains("  date       the store's current business date\n"), "{text}");
        // Only a batch reply answers a batch.
        let wrong = Response::Card { request: MsgType::Balance, reply: CardReply::default() };
        assert!(response_fields(&request, &wrong).is_none());
        assert_eq!(exit_status(&wrong), EXIT_APPROVED);
    }
}

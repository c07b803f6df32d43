//! `loadgen`: a load generator for the switch. Optionally sets up a range of funded cards, then
//! drives N concurrent terminal connections for a fixed time, each keeping up to W requests
//! outstanding: closed loop (the next request as soon as the window allows) or open loop at a
//! fixed total rate (`--rate`, latency counted from each request's intended send time). The
//! requests are a mix (`--mix`) of sales, loads, holds, captures of the terminal's own holds
//! and balance inquiries, on cards chosen uniformly or by a Zipf law (`--skew`). It measures
//! throughput and latency (optionally written as `.hgrm` text and an SVG plot) and checks
//! through the protocol that every card's value and holds moved by exactly the approved
//! postings, and optionally (`--batch-totals`) that the switch counts every load terminal's
//! postings as the terminal does. With `--finance-out` it adds the money its approved loads and
//! card sales collected, per payment method (`--methods`), to a finance file that `cardswitch
//! settle --finance` reconciles against the switch's own figures (S4).
//!
//! Progress and the readable summary go to stderr; stdout gets one JSON line at the end.
//! Exit status: 0 all good, 1 errors or a failed verification (or setup), or a finance file
//! not written, 2 usage or the switch cannot be reached.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardswitch_tools::latency::{group_digits, latency_svg, percentile_distribution, TICKS_PER_HALF_DISTANCE};
use cardswitch_tools::mix::{parse_mix, Kind, Mix};
use cardswitch_tools::rng::XorShift;
use cardswitch_tools::schedule::{parse_rate, Schedule};
use cardswitch_tools::zipf::{parse_skew, Skew, Zipf};
use cardswitch_tools::{
    describe_io_error, format_date, parse_card, run_terminal_block, sign_on_stan_from_clock, unix_ms_now,
    until_next_second, RUN_BLOCK_TERMINALS,
};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use protocol::client::local_time_now;
use protocol::message::{Frame, Header, Message, BATCH_KINDS};
use protocol::types::format_minor;
use protocol::{
    BatchTotals, BatchTotalsReply, CardNo, Category, Credential, FrameCodec, MsgType, PaymentMethod, PostingKind,
    Request, Response, ResponseCode, TerminalKey, TerminalRole, Verification, MAX_RANGE_CARDS,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};

const EXIT_FAILED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 2;
const EXIT_USAGE: u8 = 2;

/// Opening value of every card the setup sells: 10,000.00 yuan.
const OPENING_MINOR: i64 = 1_000_000;
/// Product of the imported range (`member`).
/// Pipelined connections used to sell cards and to read balances.
const SETUP_CONNECTIONS: usize = 4;
/// Within a run's block of terminal ids (see [`Terminals`]) the setup and verification
/// connections are the first [`SETUP_CONNECTIONS`], the load terminals the ones after them.
const LOAD_TERMINAL_OFFSET: u32 = SETUP_CONNECTIONS as u32;
/// Most load terminals a run can have: the rest of its block, 99,996.
const MAX_TERMINALS: u32 = RUN_BLOCK_TERMINALS - LOAD_TERMINAL_OFFSET;
/// Requests outstanding on each setup connection.
const SETUP_WINDOW: u32 = 256;
/// How often setup requests answered `system_busy` (or not answered) are sent again.
const SETUP_PASSES: u32 = 10;
/// Every terminal's first trace number. Each counts up from it and stops at `u32::MAX` rather
/// than wrap (see [`Terminals`]).
const FIRST_STAN: u32 = 1;
/// Most requests written before one flush.
const BATCH_MAX: usize = 64;
/// How long the load terminals wait for outstanding responses after they stop sending.
const DRAIN: Duration = Duration::from_secs(5);
/// Open loop: how long after the end a terminal still waits for the pacer to release its last
/// requests due before the end (it releases them a little after their due time).
const PACER_GRACE: Duration = Duration::from_secs(1);
/// How long the setup connections wait for outstanding responses after the last request.
const SETUP_DRAIN: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SIGN_ON_TIMEOUT: Duration = Duration::from_secs(10);
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a terminal waits for the answer to its batch: the switch adds up the terminal's
/// postings of the day for it, which takes longer than a posting.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Most terminals whose batch problems are printed.
const BATCH_PROBLEMS_SHOWN: usize = 5;
/// Most cards whose balances the verification reads (spread evenly over the range).
const VERIFY_SAMPLE: u64 = 100_000;
/// Latencies a terminal collects before it adds them to the shared histogram.
const LATENCY_BUFFER: usize = 1024;
/// Largest latency the histogram tells apart (one hour, in microseconds).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Smallest and largest sale amount, fen.
const SALE_MIN_MINOR: u64 = 1;
const SALE_MAX_MINOR: u64 = 100;
/// Smallest and largest load, whole yuan (the protocol takes loads in whole yuan only).
const LOAD_MIN_YUAN: u64 = 1;
const LOAD_MAX_YUAN: u64 = 100;
/// Smallest and largest hold, fen.
const HOLD_MIN_MINOR: u64 = 1;
const HOLD_MAX_MINOR: u64 = 500;
/// Approved holds each terminal remembers for captures; older ones stay open.
const OPEN_HOLDS_PER_TERMINAL: usize = 32;

/// Drives the switch with concurrent terminals sending a mix of card requests; prints
/// throughput, latency percentiles and whether the card balances match the approved postings.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    after_help = "Request types of --mix: sale (1-100 fen, retail), load (1-100 yuan, paid by one of \
                  --methods), hold \
                  (1-500 fen, room), capture (of one of the terminal's own open holds, for its \
                  amount or up to a tenth less; a sale when it has none) and balance.\n\n\
                  Terminal ids and trace numbers: the switch remembers every request by \
                  (terminal id, stan) for ever and declines a reused one with other content \
                  (trace_reused), so every run owns a block of 100,000 terminal ids chosen by \
                  the second it starts: B = 100000 * (1 + (Unix seconds mod 42948)), ids B to \
                  B+99999 (all within 100000..4294899999). The setup and verification \
                  connections are B..B+3 and the load terminals B+4 on (so --terminals is at \
                  most 99996). Every terminal counts its stans up from 1 and never wraps (one \
                  that has used all 4294967295 stops sending). Runs started in different \
                  seconds less than 42948 s (11.9 hours) apart use disjoint blocks, so they never \
                  reuse each other's (terminal, stan) whatever their rates and card counts; a \
                  run never ends within the second it started, so the next run gets another \
                  block. Runs started in the same second (in parallel), an exact multiple of \
                  42948 s apart, or after the clock was set back share a block. The ids are \
                  printed at the start.\n\n--batch-totals: at the end, after the balances are \
                  verified, every load terminal signs on again and sends one batch_totals (S2) \
                  with its approved postings of the run by kind (counts, and amounts as the \
                  replies gave them) for the business date its first sign-on gave. The JSON line \
                  then also has batches_in_balance, batches_out_of_balance, batches_declined, \
                  batches_skipped (terminals with a request that got no answer, or an answer of \
                  another type, cannot know their batch and send none) and batches_failed (the \
                  terminal could not sign on again, or its batch got no answer); the run is not \
                  verified when a batch is out of balance, declined or failed. The switch counts \
                  every posting of the terminal on that date, so a run sharing its block of \
                  terminal ids with an earlier run of the same business date is out of \
                  balance.\n\n--finance-out FILE: at the end, after the verification (and the \
                  batches), the money the run collected (S4: the amounts of its approved loads and, \
                  with --setup, card sales, by payment method; a load's bonus is not money \
                  collected) is added to FILE for --store and the business date the sign-ons gave: \
                  to the line of the same date, store and method, or on a new line. A missing (or \
                  empty) FILE is created with the header date,store,method,amount; FILE is replaced \
                  atomically. Runs at several stores one after the other build one file for the \
                  day, which `cardswitch settle --date D --finance FILE` reconciles; the switch \
                  counts every posting of the store and day, so every run there that day should add \
                  to the file, and runs must not add to the same file at the same time. FILE is not \
                  written, and the exit status is 1, when the money is unknown: a load or card sale \
                  got no answer (or one of another type), or the business date changed during the \
                  run. The JSON line then also has collected_minor: the fen added, or null when \
                  nothing was.\n\nExit status: 0 no errors and \
                  verified, 1 errors, failed verification, failed setup or finance file not \
                  written, 2 usage error or \
                  the switch cannot be reached."
)]
struct Cli {
    /// Address of the switch, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    addr: String,
    /// Concurrent terminal connections (at most 99,996).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    terminals: u32,
    /// Requests each terminal keeps outstanding (1: send, wait, send, as a real POS).
    #[arg(long, value_name = "W", value_parser = clap::value_parser!(u32).range(1..=1024))]
    window: u32,
    /// Seconds of load (after the setup).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration_s: u64,
    /// Cards used: first-card .. first-card + C - 1.
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    cards: u64,
    /// First import the range and sell every card with 10,000.00 through the protocol, paid
    /// by one of --methods.
    #[arg(long)]
    setup: bool,
    /// Open loop: R requests per second in total, spread evenly over the terminals, latency
    /// counted from each request's intended send time. Without it: closed loop.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Weights of the request types, e.g. sale=70,load=10,hold=10,capture=5,balance=5.
    #[arg(long, value_name = "TYPE=WEIGHT,...", default_value = "sale=100", value_parser = parse_mix)]
    mix: Mix,
    /// How cards are chosen: uniform, or zipf:S (Zipf law with exponent S over the cards, the
    /// first card most popular).
    #[arg(long, value_name = "zipf:S", default_value = "uniform", value_parser = parse_skew)]
    skew: Skew,
    /// Write the latency percentile distribution here (HdrHistogram text, microseconds).
    #[arg(long, value_name = "FILE")]
    hgrm: Option<PathBuf>,
    /// Draw latency by percentile here, as an SVG image.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Seed of the card, type, amount and phase choices.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// First card number of the range.
    #[arg(long, value_name = "NUMBER", default_value = "6200880000000000", value_parser = parse_card)]
    first_card: CardNo,
    /// Product of the imported range, by catalog name (member, gift, cash, comp, ...) or code:
    /// with a catalog on the switch, the product whose rules the run measures. It must need
    /// no PIN or registration (`cash` of catalogs/hotel.toml does not).
    #[arg(long, value_name = "NAME", default_value = "member", value_parser = cardswitch_tools::parse_product)]
    product: u16,
    /// Store the terminals sign on at (and the range belongs to).
    #[arg(long, value_name = "ID", default_value_t = 21, value_parser = clap::value_parser!(u32).range(1..))]
    store: u32,
    /// Admin credential file through which the run provisions its terminals, each with a key
    /// derived from the admin key (default: $CARDSWITCH_HOME/admin.key, as the switch uses).
    #[arg(long, value_name = "PATH")]
    admin_key_file: Option<PathBuf>,
    /// At the end, every load terminal sends its batch (batch_totals: its approved postings by
    /// kind) and the switch says whether it is in balance.
    #[arg(long)]
    batch_totals: bool,
    /// Payment methods of the loads and card sales, each request's drawn from the list by the
    /// seeded generator: cash, bank_card, wechat, alipay, cheque, transfer. (A card sold by
    /// cheque or transfer stays inactive until finance confirms the funds, L2.)
    #[arg(long, value_name = "METHOD,...", default_value = "cash", value_parser = parse_methods)]
    methods: Methods,
    /// At the end, add the money the run collected, per payment method, to this finance file
    /// (S4), for `cardswitch settle --finance`.
    #[arg(long, value_name = "FILE")]
    finance_out: Option<PathBuf>,
}

impl Cli {
    /// Checks what clap cannot: the terminals fit the run's block of terminal ids and the card
    /// range stays within one digit count.
    fn check(&self) -> Result<(), String> {
        if self.terminals > MAX_TERMINALS {
            return Err(format!(
                "--terminals {}: a run has at most {MAX_TERMINALS} terminals (it owns a block of \
                 {RUN_BLOCK_TERMINALS} terminal ids, {SETUP_CONNECTIONS} of them for setup and verification)",
                self.terminals
            ));
        }
        let last = self.first_card.0.checked_add(self.cards - 1).map(CardNo);
        match last {
            Some(last) if last.is_valid() && last.digits() == self.first_card.digits() => Ok(()),
            _ => Err(format!(
                "--first-card {} with --cards {}: the range must stay within {} digits",
                self.first_card,
                self.cards,
                self.first_card.digits()
            )),
        }
    }

    fn card(&self, index: u64) -> CardNo {
        CardNo(self.first_card.0 + index)
    }

    /// The pacing in words: `open loop at 1,000/s` or `closed loop`.
    fn pacing(&self) -> String {
        match self.rate {
            Some(rate) if rate.fract() == 0.0 => format!("open loop at {}/s", group_digits(rate as u64)),
            Some(rate) => format!("open loop at {rate}/s"),
            None => "closed loop".to_string(),
        }
    }
}

/// Why the run stopped early.
enum Failure {
    /// The switch cannot be reached (exit 2).
    Unreachable(String),
    /// An option that cannot be used, found after parsing (exit 2).
    Usage(String),
    /// Anything else (exit 1).
    Failed(String),
}

/// The terminal ids of one run: the block of [`RUN_BLOCK_TERMINALS`] ids from `base`, which
/// [`run_terminal_block`] derives from the second the run starts.
///
/// No run reuses a `(terminal, stan)` of an earlier one (the switch would decline it
/// `trace_reused`): the setup and verification connection `j` is `base + j`, load terminal `i`
/// is `base + SETUP_CONNECTIONS + i`, so every terminal id of the run is in its block and used
/// by one sender at a time; each counts its stans up from [`FIRST_STAN`] and stops at
/// `u32::MAX` instead of wrapping; and runs started in different seconds less than
/// [`cardswitch_tools::RUN_BLOCKS`] seconds apart own disjoint blocks. A run also never ends
/// within the second it started (see `main`), so a run started after it ends never gets its
/// block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Terminals {
    base: u32,
}

impl Terminals {
    /// The id of setup and verification connection `j` (`< SETUP_CONNECTIONS`).
    fn setup(self, j: usize) -> u32 {
        assert!(j < SETUP_CONNECTIONS, "setup connection {j}");
        self.base + j as u32
    }

    /// The id of load terminal `i` (`< MAX_TERMINALS`).
    fn load(self, i: u32) -> u32 {
        assert!(i < MAX_TERMINALS, "load terminal {i}");
        self.base + LOAD_TERMINAL_OFFSET + i
    }

    /// The ids in words, for the start of the run.
    fn describe(self, load_terminals: u32) -> String {
        format!(
            "terminal ids {}..={} (block {}..={}; setup and verification {}..={}, load {}..={}), \
             stans from {FIRST_STAN}",
            self.base,
            self.load(load_terminals - 1),
            self.base,
            self.base + (RUN_BLOCK_TERMINALS - 1),
            self.setup(0),
            self.setup(SETUP_CONNECTIONS - 1),
            self.load(0),
            self.load(load_terminals - 1)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Small pure parts

/// What a load terminal remembers about one request until its response: its type, the card
/// (index in the range) and the amount; for a capture also the amount of the hold it closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LoadTag {
    kind: Kind,
    /// A capture sent as a sale because the terminal had no open hold.
    instead_of_capture: bool,
    card: u32,
    amount: u32,
    hold_amount: u32,
    /// How a load is paid; `None` for the other requests.
    method: Option<PaymentMethod>,
}

/// One of a terminal's approved holds not yet captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OpenHold {
    card: u32,
    txn_id: u64,
    amount: u32,
}

/// A terminal's open holds, oldest first, shared by its writer (captures) and reader (holds).
type OpenHolds = Arc<Mutex<VecDeque<OpenHold>>>;

/// Remembers an approved hold for a later capture; the oldest is forgotten (it stays open)
/// when the queue is full.
fn remember_hold(holds: &mut VecDeque<OpenHold>, hold: OpenHold) {
    if holds.len() >= OPEN_HOLDS_PER_TERMINAL {
        holds.pop_front();
    }
    holds.push_back(hold);
}

/// The generator streams of the setup's card sales: card index `i` is sold with the method
/// drawn from stream `CARD_SALE_STREAMS + i`, far above the load terminals' streams `0..N`, so
/// that a card's method depends on the seed and the card only, not on which connection or pass
/// sells it.
const CARD_SALE_STREAMS: u64 = 1 << 40;

/// The payment methods loads and card sales are paid with (`--methods`), in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Methods(Vec<PaymentMethod>);

impl Default for Methods {
    /// Cash only, as before the option existed.
    fn default() -> Methods {
        Methods(vec![PaymentMethod::Cash])
    }
}

impl Methods {
    /// One of the methods, drawn from `rng`. A single method takes no draw, so that a run with
    /// one method sends for a seed the very requests it sent before `--methods` existed.
    #[inline]
    fn pick(&self, rng: &mut XorShift) -> PaymentMethod {
        match self.0[..] {
            [only] => only,
            _ => self.0[rng.below(self.0.len() as u64) as usize],
        }
    }

    /// The method the setup sells card index `index` with, for `seed`.
    fn for_card_sale(&self, seed: u64, index: u64) -> PaymentMethod {
        self.pick(&mut XorShift::new(seed, CARD_SALE_STREAMS + index))
    }

    /// Whether a card sold with some of the methods waits for finance to confirm its funds.
    fn some_need_confirmation(&self) -> bool {
        self.0.iter().any(|method| method.needs_confirmation())
    }
}

/// `cash,wechat`: as `--methods` takes them.
impl std::fmt::Display for Methods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|method| method.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// Parses `METHOD[,METHOD...]` with payment method names (`cash`, `bank_card`, `wechat`,
/// `alipay`, `cheque`, `transfer`); refuses unknown, empty and repeated ones.
fn parse_methods(text: &str) -> Result<Methods, String> {
    let mut methods = Vec::new();
    for entry in text.split(',') {
        if entry.trim().is_empty() {
            return Err(format!("empty entry in '{text}' (expected METHOD,..., e.g. cash,wechat)"));
        }
        let method = cardswitch_tools::parse_method(entry)?;
        if methods.contains(&method) {
            return Err(format!("payment method '{method}' appears twice in '{text}'"));
        }
        methods.push(method);
    }
    Ok(Methods(methods))
}

/// How a terminal picks cards.
#[derive(Clone, Debug)]
enum CardChoice {
    Uniform(u64),
    Zipf(Zipf),
}

impl CardChoice {
    fn new(cards: u64, skew: Skew) -> Result<CardChoice, String> {
        match skew {
            Skew::Uniform => Ok(CardChoice::Uniform(cards)),
            Skew::Zipf(exponent) => Zipf::new(cards, exponent).map(CardChoice::Zipf),
        }
    }

    /// A card index in `0..cards`.
    #[inline]
    fn pick(&self, rng: &mut XorShift) -> u64 {
        match self {
            CardChoice::Uniform(cards) => rng.below(*cards),
            CardChoice::Zipf(zipf) => zipf.sample(rng) - 1,
        }
    }
}

/// The request stream of one load terminal.
struct LoadGenerator {
    rng: XorShift,
    mix: Mix,
    cards: CardChoice,
    first_card: u64,
    /// The terminal's open holds, when the mix has captures.
    holds: Option<OpenHolds>,
    methods: Methods,
}

impl LoadGenerator {
    #[inline]
    fn next_request(&mut self) -> (Request, LoadTag) {
        let kind = self.mix.pick(self.rng.below(self.mix.total()));
        let card = self.cards.pick(&mut self.rng);
        let card_no = CardNo(self.first_card + card);
        let tag = |kind, amount: u64| LoadTag {
            kind,
            instead_of_capture: false,
            card: card as u32,
            amount: amount as u32,
            hold_amount: 0,
            method: None,
        };
        match kind {
            Kind::Sale => self.sale(card, false),
            Kind::Load => {
                let amount = self.rng.in_range(LOAD_MIN_YUAN, LOAD_MAX_YUAN) * 100;
                let method = self.methods.pick(&mut self.rng);
                let request = Request::Load { card: card_no, amount_minor: amount as i64, method: method as u8 };
                (request, LoadTag { method: Some(method), ..tag(Kind::Load, amount) })
            }
            Kind::Hold => {
                let amount = self.rng.in_range(HOLD_MIN_MINOR, HOLD_MAX_MINOR);
                let request = Request::Hold {
                    card: card_no,
                    amount_minor: amount as i64,
                    category: Category::Room as u8,
                    verification: Verification::NONE,
                };
                (request, tag(Kind::Hold, amount))
            }
            Kind::Capture => {
                let open = self.holds.as_ref().and_then(|holds| holds.lock().expect("not poisoned").pop_front());
                let Some(hold) = open else { return self.sale(card, true) };
                // The held amount or up to a tenth less (never below 1 fen).
                let amount = u64::from(hold.amount) - self.rng.below(u64::from(hold.amount) / 10 + 1);
                let request = Request::Capture {
                    card: CardNo(self.first_card + u64::from(hold.card)),
                    hold_txn_id: hold.txn_id,
                    amount_minor: amount as i64,
                };
                let tag = LoadTag {
                    kind: Kind::Capture,
                    instead_of_capture: false,
                    card: hold.card,
                    amount: amount as u32,
                    hold_amount: hold.amount,
                    method: None,
                };
                (request, tag)
            }
            Kind::Balance => (Request::Balance { card: card_no }, tag(Kind::Balance, 0)),
        }
    }

    fn sale(&mut self, card: u64, instead_of_capture: bool) -> (Request, LoadTag) {
        let amount = self.rng.in_range(SALE_MIN_MINOR, SALE_MAX_MINOR);
        let request = Request::Sale {
            card: CardNo(self.first_card + card),
            amount_minor: amount as i64,
            category: Category::Retail as u8,
            flags: 0,
            verification: Verification::NONE,
        };
        (
            request,
            LoadTag {
                kind: Kind::Sale,
                instead_of_capture,
                card: card as u32,
                amount: amount as u32,
                hold_amount: 0,
                method: None,
            },
        )
    }
}

/// The cards whose balances are checked: all of them when there are at most `max`, else `max`
/// spread evenly over the range. Slot `j` is card index `floor(j * cards / size)`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    cards: u64,
    size: u64,
}

impl Sample {
    fn new(cards: u64, max: u64) -> Sample {
        Sample { cards, size: cards.min(max) }
    }

    fn card_index(&self, slot: u64) -> u64 {
        (u128::from(slot) * u128::from(self.cards) / u128::from(self.size)) as u64
    }

    /// The slot of card index `index` when that card is in the sample.
    #[inline]
    fn slot_of(&self, index: u64) -> Option<u64> {
        if self.size == self.cards {
            return (index < self.cards).then_some(index);
        }
        // The smallest slot whose card index is >= index; the sample is strictly increasing.
        let slot = match index.checked_mul(self.size) {
            Some(product) => product.div_ceil(self.cards),
            None => (u128::from(index) * u128::from(self.size)).div_ceil(u128::from(self.cards)) as u64,
        };
        (slot < self.size && self.card_index(slot) == index).then_some(slot)
    }
}

/// What the last stdout line reports.
#[derive(Clone, Debug, PartialEq)]
struct Summary {
    tps: f64,
    approved: u64,
    declined: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// With `--batch-totals`: what became of the load terminals' batches.
    batches: Option<BatchCounts>,
    /// With `--finance-out`: what became of the finance file.
    finance: Option<FinanceOutcome>,
    verified: bool,
}

impl Summary {
    /// One JSON object, no newline. The batch members only with `--batch-totals` and
    /// `collected_minor` only with `--finance-out` (null when the file was not written), so
    /// that the line of a run without them stays as it was.
    fn json(&self) -> String {
        let tps = if self.tps.is_finite() { self.tps } else { 0.0 };
        let batches = match self.batches {
            Some(b) => format!(
                ",\"batches_in_balance\":{},\"batches_out_of_balance\":{},\"batches_declined\":{},\
                 \"batches_skipped\":{},\"batches_failed\":{}",
                b.in_balance, b.out_of_balance, b.declined, b.skipped, b.failed
            ),
            None => String::new(),
        };
        let collected = match &self.finance {
            Some(FinanceOutcome::Added(minor)) => format!(",\"collected_minor\":{minor}"),
            Some(FinanceOutcome::NotWritten(_)) => ",\"collected_minor\":null".to_string(),
            None => String::new(),
        };
        format!(
            "{{\"tps\":{tps:.1},\"approved\":{},\"declined\":{},\"errors\":{},\"p50_us\":{},\"p99_us\":{},\
             \"p999_us\":{},\"max_us\":{}{batches}{collected},\"verified\":{}}}",
            self.approved,
            self.declined,
            self.errors,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.verified
        )
    }
}

/// What became of the load terminals' batches (`--batch-totals`), one per terminal that signed
/// on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BatchCounts {
    in_balance: u64,
    out_of_balance: u64,
    declined: u64,
    /// Not sent: the terminal cannot know its batch (see [`TerminalBatch::unknowable`]).
    skipped: u64,
    /// Sent (or about to be) and not answered.
    failed: u64,
}

impl BatchCounts {
    /// Every batch sent was answered in balance; a skipped one proves nothing either way.
    fn verified(&self) -> bool {
        self.out_of_balance == 0 && self.declined == 0 && self.failed == 0
    }
}

/// Responses per second over `seconds` (0 when nothing was measured).
fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Responses of one request type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct KindStats {
    approved: u64,
    declined: u64,
    /// Sent and never answered.
    lost: u64,
}

// ---------------------------------------------------------------------------------------------
// Connections

struct Conn {
    terminal_id: u32,
    /// The business date the sign-on reply gave.
    business_date: u32,
    reader: FramedRead<OwnedReadHalf, FrameCodec>,
    writer: FramedWrite<OwnedWriteHalf, FrameCodec>,
}

enum OpenError {
    Connect(String),
    SignOn(String),
}

impl OpenError {
    fn into_failure(self, addr: &str) -> Failure {
        match self {
            OpenError::Connect(text) => Failure::Unreachable(format!("cannot connect to {addr}: {text}")),
            OpenError::SignOn(text) => Failure::Failed(format!("sign-on at {addr} failed: {text}")),
        }
    }

    fn text(&self) -> &str {
        match self {
            OpenError::Connect(text) | OpenError::SignOn(text) => text,
        }
    }
}

fn request_frame(terminal_id: u32, stan: u32, request: Request) -> Frame {
    Frame {
        header: Header { flags: 0, terminal_id, stan, local_time: local_time_now() },
        message: Message::Request(request),
    }
}

/// The key of `terminal_id`: the admin's own, or the one derived for it from the admin's.
fn terminal_key(admin: &Credential, terminal_id: u32) -> TerminalKey {
    if terminal_id == admin.terminal_id {
        admin.key.clone()
    } else {
        admin.derive_terminal_key(terminal_id)
    }
}

/// Connects, splits the stream and signs on at `store` as `terminal_id`, whose key comes from
/// `admin` (see [`terminal_key`]).
async fn open(addr: SocketAddr, terminal_id: u32, store: u32, admin: &Credential) -> Result<Conn, OpenError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(OpenError::Connect(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        Ok(Err(e)) => return Err(OpenError::Connect(describe_io_error(&e))),
        Ok(Ok(stream)) => stream,
    };
    stream.set_nodelay(true).map_err(|e| OpenError::Connect(describe_io_error(&e)))?;
    let (read, write) = stream.into_split();
    let codec = FrameCodec::with_key(terminal_key(admin, terminal_id));
    let mut conn = Conn {
        terminal_id,
        business_date: 0,
        reader: FramedRead::new(read, codec.clone()),
        writer: FramedWrite::new(write, codec),
    };
    let stan = sign_on_stan_from_clock(unix_ms_now());
    match call(&mut conn, stan, Request::SignOn { store_id: store }, SIGN_ON_TIMEOUT).await {
        Ok(Response::SignOn(reply)) if reply.code.is_approved() => {
            conn.business_date = reply.business_date;
            Ok(conn)
        }
        Ok(Response::SignOn(reply)) => {
            Err(OpenError::SignOn(format!("terminal {terminal_id} at store {store}: declined {}", reply.code)))
        }
        Ok(other) => Err(OpenError::SignOn(format!("terminal {terminal_id}: answered with {}", other.msg_type()))),
        Err(text) => Err(OpenError::SignOn(format!("terminal {terminal_id}: {text}"))),
    }
}

/// Sends one request and waits for its response (skipping frames for other trace numbers).
async fn call(conn: &mut Conn, stan: u32, request: Request, wait: Duration) -> Result<Response, String> {
    conn.writer.send(request_frame(conn.terminal_id, stan, request)).await.map_err(|e| e.to_string())?;
    let until = Instant::now() + wait;
    loop {
        match timeout_at(until, conn.reader.next()).await {
            Err(_) => return Err(format!("no answer to stan {stan} within {} s", wait.as_secs())),
            Ok(None) => return Err("the switch closed the connection".to_string()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(Frame { message: Message::Response(Response::Error { code, text }), .. }))) => {
                return Err(format!("the switch refused the frame: {code}: {text}"))
            }
            Ok(Some(Ok(Frame { header, message: Message::Response(response) }))) if header.stan == stan => {
                return Ok(response)
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pipelined engine: a writer task that keeps up to W requests outstanding (sending each as
// soon as the window allows, or at its scheduled time) and a reader that matches responses by
// stan.

/// Hashes a stan by Fibonacci multiplication (cheap, and spreads consecutive numbers).
#[derive(Default)]
struct StanHasher(u64);

impl Hasher for StanHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type StanMap<V> = HashMap<u32, V, BuildHasherDefault<StanHasher>>;

struct Pending<T> {
    /// When the request was meant to be sent: its send time in closed loop, its scheduled time
    /// in open loop. Latency counts from here.
    intended: Instant,
    /// When it was written.
    sent: Instant,
    tag: T,
}

struct Shared<T> {
    inflight: Mutex<StanMap<Pending<T>>>,
    window: Semaphore,
    writer_done: AtomicBool,
    done: Notify,
    /// Trace numbers the writer used (requests recorded as outstanding).
    issued: AtomicU64,
    /// Open loop: requests due before the deadline that were never sent (the terminal was
    /// behind its schedule at the end).
    unsent: AtomicU64,
    /// The writer stopped because it had used every stan up to `u32::MAX`.
    out_of_stans: AtomicBool,
}

/// How a pipeline paces its requests.
#[derive(Clone)]
struct Pacing {
    window: u32,
    first_stan: u32,
    /// No request is sent from then on.
    deadline: Option<Instant>,
    /// How long to wait for the outstanding responses after the last request.
    drain: Duration,
    /// Open loop: when each request is due. Closed loop: `None`.
    open_loop: Option<OpenLoop>,
}

/// One terminal's open-loop schedule and the gate the [`Pacer`] opens as requests come due.
#[derive(Clone)]
struct OpenLoop {
    start: Instant,
    schedule: Schedule,
    /// One permit per request that has come due.
    gate: Arc<Semaphore>,
}

/// Opens the open-loop terminals' gates at their requests' due times, from a thread of its
/// own. Tokio's timer counts in milliseconds (a sleep ends up to 2 ms late), which would count
/// as latency of every request; this thread sleeps with the operating system's precision (tens
/// of microseconds) and gives a terminal one permit per request that has come due.
struct Pacer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pacer {
    /// Paces `terminals` from `start` until `until` after it: no request due at or after
    /// `until` is released.
    fn spawn(start: Instant, until: Duration, terminals: Vec<(Schedule, Arc<Semaphore>)>) -> std::io::Result<Pacer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let start = start.into_std();
        let thread = std::thread::Builder::new().name("loadgen-pacer".to_string()).spawn(move || {
            // Released requests per terminal, and the terminals by their next due time.
            let mut released = vec![0u64; terminals.len()];
            let mut next: BinaryHeap<Reverse<(Duration, usize)>> = terminals
                .iter()
                .enumerate()
                .filter(|(_, (schedule, _))| schedule.due(0) < until)
                .map(|(i, (schedule, _))| Reverse((schedule.due(0), i)))
                .collect();
            while !stopped.load(Ordering::Relaxed) {
                let Some(&Reverse((due, _))) = next.peek() else { break };
                let elapsed = start.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                    continue;
                }
                let now = start.elapsed();
                while let Some(&Reverse((due, i))) = next.peek() {
                    if due > now {
                        break;
                    }
                    next.pop();
                    let (schedule, gate) = &terminals[i];
                    // Every request due by now (and before the end) goes at once.
                    let due_now = schedule.due_before((now + Duration::from_nanos(1)).min(until));
                    gate.add_permits((due_now - released[i]) as usize);
                    released[i] = due_now;
                    let following = schedule.due(due_now);
                    if following < until {
                        next.push(Reverse((following, i)));
                    }
                }
            }
        })?;
        Ok(Pacer { stop, thread: Some(thread) })
    }
}

impl Drop for Pacer {
    /// Stops the thread; it notices when its current sleep ends (at the latest at the end of
    /// the run) and is not waited for.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take();
    }
}

/// What a pipeline does with each matched response: `latency` counts from the intended send
/// time, `service` from the actual one.
trait Replies<T>: Send + 'static {
    fn reply(&mut self, tag: T, latency: Duration, service: Duration, response: &Response);
}

/// How one pipelined connection ended.
struct Outcome<R, T> {
    replies: R,
    /// Trace numbers used, i.e. the next stan is `first + issued`.
    issued: u64,
    /// Open loop: requests due before the deadline that were never sent.
    unsent: u64,
    /// The writer stopped early: it had used every stan up to `u32::MAX`.
    out_of_stans: bool,
    /// Responses whose stan was not outstanding (answered twice, or never asked) or whose
    /// terminal id was not ours.
    unmatched: u64,
    /// Error frames received (the switch closes the connection after one).
    error_frames: u64,
    first_error_frame: Option<String>,
    /// Tags of the requests that got no response.
    lost: Vec<T>,
    /// Why the connection ended early, if it did.
    failure: Option<String>,
    last_reply: Option<Instant>,
}

/// Sends what `generate` yields (request and tag) until it yields `None`, the deadline
/// passes or the stans run out (from `first_stan` up to `u32::MAX`, never wrapping), with at
/// most `window` outstanding, and hands every response to `replies`; then waits up to `drain`
/// for the outstanding ones.
async fn pipeline<G, R, T>(conn: Conn, pacing: Pacing, generate: G, replies: R) -> Outcome<R, T>
where
    G: FnMut() -> Option<(Request, T)> + Send + 'static,
    R: Replies<T>,
    T: Copy + Send + 'static,
{
    let Conn { terminal_id, mut reader, writer, .. } = conn;
    let gate = pacing.open_loop.as_ref().map(|open_loop| Arc::clone(&open_loop.gate));
    let mut inflight = StanMap::default();
    inflight.reserve(pacing.window as usize);
    let shared = Arc::new(Shared {
        inflight: Mutex::new(inflight),
        window: Semaphore::new(pacing.window as usize),
        writer_done: AtomicBool::new(false),
        done: Notify::new(),
        issued: AtomicU64::new(0),
        unsent: AtomicU64::new(0),
        out_of_stans: AtomicBool::new(false),
    });
    let drain = pacing.drain;
    let mut writer_task = tokio::spawn(write_loop(writer, terminal_id, pacing, Arc::clone(&shared), generate));

    let mut outcome = Outcome {
        replies,
        issued: 0,
        unsent: 0,
        out_of_stans: false,
        unmatched: 0,
        error_frames: 0,
        first_error_frame: None,
        lost: Vec::new(),
        failure: None,
        last_reply: None,
    };
    let mut drain_until: Option<Instant> = None;
    // Created once: it registers with the Notify on its first poll, not once per response.
    let writer_finished = shared.done.notified();
    tokio::pin!(writer_finished);
    loop {
        if shared.writer_done.load(Ordering::Acquire) && shared.inflight.lock().expect("not poisoned").is_empty() {
            break;
        }
        let item = match drain_until {
            None => tokio::select! {
                biased;
                item = reader.next() => item,
                _ = &mut writer_finished => {
                    drain_until = Some(Instant::now() + drain);
                    continue;
                }
            },
            Some(until) => match timeout_at(until, reader.next()).await {
                Ok(item) => item,
                Err(_) => break,
            },
        };
        let frame = match item {
            None => {
                let finished = shared.writer_done.load(Ordering::Acquire)
                    && shared.inflight.lock().expect("not poisoned").is_empty();
                if !finished {
                    outcome.failure = Some("the switch closed the connection".to_string());
                }
                break;
            }
            Some(Err(e)) => {
                outcome.failure = Some(e.to_string());
                break;
            }
            Some(Ok(frame)) => frame,
        };
        let now = Instant::now();
        let response = match frame.message {
            Message::Response(response) => response,
            request => {
                outcome.failure = Some(format!("the switch sent a request frame ({})", request.msg_type()));
                break;
            }
        };
        if let Response::Error { code, text } = &response {
            outcome.error_frames += 1;
            if outcome.first_error_frame.is_none() {
                outcome.first_error_frame = Some(format!("{code}: {text}"));
            }
            shared.inflight.lock().expect("not poisoned").remove(&frame.header.stan);
            continue;
        }
        let pending = if frame.header.terminal_id == terminal_id {
            shared.inflight.lock().expect("not poisoned").remove(&frame.header.stan)
        } else {
            None
        };
        let Some(pending) = pending else {
            outcome.unmatched += 1;
            continue;
        };
        shared.window.add_permits(1);
        outcome.last_reply = Some(now);
        outcome.replies.reply(
            pending.tag,
            now.saturating_duration_since(pending.intended),
            now.saturating_duration_since(pending.sent),
            &response,
        );
    }

    // Stop the writer (it may wait for a window slot or its next send time, or be stuck
    // writing to a dead peer).
    shared.window.close();
    if let Some(gate) = gate {
        gate.close();
    }
    // The write half is handed back and dropped (which shuts it down) only now, so the switch
    // never sees the end of the stream while responses are still coming.
    let writer_error = match tokio::time::timeout(Duration::from_secs(2), &mut writer_task).await {
        Ok(Ok((_writer, error))) => error,
        Ok(Err(join_error)) => Some(format!("writer failed: {join_error}")),
        Err(_) => {
            writer_task.abort();
            let _ = writer_task.await;
            None
        }
    };
    if outcome.failure.is_none() {
        outcome.failure = writer_error;
    }
    outcome.issued = shared.issued.load(Ordering::Acquire);
    outcome.unsent = shared.unsent.load(Ordering::Acquire);
    outcome.out_of_stans = shared.out_of_stans.load(Ordering::Acquire);
    outcome.lost = shared.inflight.lock().expect("not poisoned").drain().map(|(_, p)| p.tag).collect();
    outcome
}

/// The writer half of [`pipeline`]; returns the write half and the write error, if any.
///
/// Closed loop: sends whenever the window has room, as many as it has room for (up to
/// [`BATCH_MAX`]) in one write. Open loop: request `k` is due at `start + schedule.due(k)`
/// and may go once the [`Pacer`] has let it through the gate; the writer sends every request
/// already due that the window has room for in one write. A request that finds the window
/// full waits for room and keeps its due time as its intended send time, so the wait counts
/// in its latency.
async fn write_loop<G, T>(
    mut writer: FramedWrite<OwnedWriteHalf, FrameCodec>,
    terminal_id: u32,
    pacing: Pacing,
    shared: Arc<Shared<T>>,
    mut generate: G,
) -> (FramedWrite<OwnedWriteHalf, FrameCodec>, Option<String>)
where
    G: FnMut() -> Option<(Request, T)>,
{
    let Pacing { deadline, open_loop, .. } = pacing;
    // Counted in u64 so that the last stan, u32::MAX, can be used and nothing wraps.
    let mut stan = u64::from(pacing.first_stan);
    let mut out_of_stans = false;
    let mut batch: Vec<(u32, Request)> = Vec::with_capacity(BATCH_MAX);
    // Open loop: the index of the next scheduled request, and how many are due in the run.
    let mut next = 0u64;
    let due_in_run = match (&open_loop, deadline) {
        (Some(open_loop), Some(until)) => {
            Some(open_loop.schedule.due_before(until.saturating_duration_since(open_loop.start)))
        }
        _ => None,
    };
    let error = 'run: loop {
        if let Some(open_loop) = &open_loop {
            if due_in_run.is_some_and(|due_in_run| next >= due_in_run) {
                break None;
            }
            // Every request due before the end is sent, even when the pacer lets it through
            // just after the end.
            let due = match deadline {
                Some(until) => {
                    timeout_at(until + PACER_GRACE, open_loop.gate.acquire()).await.ok().and_then(Result::ok)
                }
                None => open_loop.gate.acquire().await.ok(),
            };
            let Some(due) = due else { break None };
            due.forget();
        }
        // Past the end, only a window with room right away (a terminal still waiting for room
        // at the end is behind its schedule, and its remaining requests are not sent).
        let permit = match deadline {
            Some(until) => timeout_at(until, shared.window.acquire()).await.ok().and_then(Result::ok),
            None => shared.window.acquire().await.ok(),
        };
        let Some(permit) = permit else { break None };
        permit.forget();
        let now = Instant::now();
        if open_loop.is_none() && deadline.is_some_and(|until| now >= until) {
            break None;
        }
        let mut slots = 1;
        while slots < BATCH_MAX {
            let Ok(permit) = shared.window.try_acquire() else { break };
            // Open loop: only requests already due go along.
            if let Some(open_loop) = &open_loop {
                let Ok(due) = open_loop.gate.try_acquire() else {
                    drop(permit);
                    break;
                };
                due.forget();
            }
            permit.forget();
            slots += 1;
        }
        let mut exhausted = false;
        {
            let mut inflight = shared.inflight.lock().expect("not poisoned");
            for _ in 0..slots {
                // A wrapped stan would be one this terminal has used already.
                let Ok(this_stan) = u32::try_from(stan) else {
                    (out_of_stans, exhausted) = (true, true);
                    break;
                };
                let Some((request, tag)) = generate() else {
                    exhausted = true;
                    break;
                };
                let intended =
                    open_loop.as_ref().map_or(now, |open_loop| open_loop.start + open_loop.schedule.due(next));
                next += 1;
                // Recorded before it is written: the response may be read before feed returns.
                inflight.insert(this_stan, Pending { intended, sent: now, tag });
                batch.push((this_stan, request));
                stan += 1;
            }
        }
        shared.issued.fetch_add(batch.len() as u64, Ordering::Release);
        let written = !batch.is_empty();
        let local_time = local_time_now();
        for (stan, request) in batch.drain(..) {
            let frame = Frame {
                header: Header { flags: 0, terminal_id, stan, local_time },
                message: Message::Request(request),
            };
            if let Err(e) = writer.feed(frame).await {
                break 'run Some(e.to_string());
            }
        }
        if written {
            if let Err(e) = SinkExt::<Frame>::flush(&mut writer).await {
                break Some(e.to_string());
            }
        }
        if exhausted {
            break None;
        }
    };
    if let Some(due_in_run) = due_in_run {
        shared.unsent.store(due_in_run.saturating_sub(next), Ordering::Release);
    }
    shared.out_of_stans.store(out_of_stans, Ordering::Release);
    shared.writer_done.store(true, Ordering::Release);
    shared.done.notify_one();
    (writer, error)
}

// ---------------------------------------------------------------------------------------------
// Setup and verification: card requests over a few pipelined connections.

/// What a balance shows: value (`cash + bonus`) and the value reserved by open holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Balance {
    value_minor: i64,
    held_minor: i64,
}

/// The answer to one card request: its code, the amount it moved and the card's balances
/// after it.
#[derive(Clone, Copy, Debug)]
struct CardAnswer {
    code: ResponseCode,
    amount_minor: i64,
    balance: Balance,
    /// An earlier attempt at the request was sent and got no answer (it may have been carried
    /// out).
    unanswered_before: bool,
}

struct CardReplies {
    request: MsgType,
    answers: Vec<(u64, CardAnswer)>,
    wrong_type: u64,
}

impl Replies<u64> for CardReplies {
    fn reply(&mut self, tag: u64, _latency: Duration, _service: Duration, response: &Response) {
        match response {
            Response::Card { request, reply } if *request == self.request => self.answers.push((
                tag,
                CardAnswer {
                    code: reply.code,
                    amount_minor: reply.amount_minor,
                    balance: Balance {
                        value_minor: reply.cash_minor + reply.bonus_minor,
                        held_minor: reply.held_minor,
                    },
                    unanswered_before: false,
                },
            )),
            _ => self.wrong_type += 1,
        }
    }
}

/// The setup and verification connections: addresses, store, terminal ids and each
/// terminal's next stan (above `u32::MAX` once it has used them all).
///
/// They cannot run out: connection 0 sends at most 100 imports, and in each of at most
/// [`SETUP_PASSES`] passes each connection sends at most a quarter of the cards (at most
/// 250,000,000) or of the [`VERIFY_SAMPLE`] balances: about 2.5 billion in all, fewer than
/// 2^32. A pass that would need more stans than are left fails instead of reusing one.
struct Admin {
    addr: SocketAddr,
    addr_text: String,
    store: u32,
    terminals: Terminals,
    next_stans: Vec<u64>,
    credential: Credential,
    /// The business dates the connections' sign-ons gave.
    business_dates: BTreeSet<u32>,
}

impl Admin {
    fn new(addr: SocketAddr, addr_text: &str, store: u32, terminals: Terminals, credential: Credential) -> Admin {
        Admin {
            addr,
            addr_text: addr_text.to_string(),
            store,
            terminals,
            next_stans: vec![u64::from(FIRST_STAN); SETUP_CONNECTIONS],
            credential,
            business_dates: BTreeSet::new(),
        }
    }

    /// The next stan of connection `j`, unless it has used them all.
    fn take_stan(&mut self, j: usize) -> Result<u32, Failure> {
        let stan = self.first_stan(j, 1)?;
        self.next_stans[j] += 1;
        Ok(stan)
    }

    /// The next stan of connection `j` when `count` more are left from it up to `u32::MAX`.
    fn first_stan(&self, j: usize, count: u64) -> Result<u32, Failure> {
        let next = self.next_stans[j];
        if next + count.max(1) - 1 > u64::from(u32::MAX) {
            return Err(Failure::Failed(format!(
                "terminal {} has too few trace numbers left for {count} more requests",
                self.terminals.setup(j)
            )));
        }
        Ok(next as u32)
    }

    /// Sends `make(card)` for every card in `cards` over up to [`SETUP_CONNECTIONS`] pipelined
    /// connections; requests answered `system_busy`, or not at all, are sent again (new stan)
    /// in later passes. Returns the answers in the order of `cards`.
    async fn card_requests<M>(&mut self, what: &str, cards: &[CardNo], make: M) -> Result<Vec<CardAnswer>, Failure>
    where
        M: Fn(CardNo) -> Request + Clone + Send + 'static,
    {
        let Some(&first_card) = cards.first() else { return Ok(Vec::new()) };
        let request_type = make(first_card).msg_type();
        let mut answers: Vec<Option<CardAnswer>> = vec![None; cards.len()];
        // Requests sent in some pass without an answer: they may have been carried out.
        let mut unanswered: HashSet<u64> = HashSet::new();
        let mut todo: Vec<u64> = (0..cards.len() as u64).collect();
        for pass in 0..SETUP_PASSES {
            if todo.is_empty() {
                break;
            }
            if pass > 0 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(pass))).await;
            }
            let connections = SETUP_CONNECTIONS.min(todo.len());
            let todo_shared: Arc<Vec<u64>> = Arc::new(std::mem::take(&mut todo));
            let cards_shared: Arc<Vec<CardNo>> = Arc::new(todo_shared.iter().map(|&i| cards[i as usize]).collect());
            let mut tasks = Vec::with_capacity(connections);
            let mut counts = Vec::with_capacity(connections);
            for j in 0..connections {
                // Connection j sends the requests at positions j, j + connections, ...
                let count = (todo_shared.len() - j).div_ceil(connections) as u64;
                let first_stan = self.first_stan(j, count)?;
                counts.push(count);
                let (addr, store) = (self.addr, self.store);
                let (todo_shared, cards_shared) = (Arc::clone(&todo_shared), Arc::clone(&cards_shared));
                let terminal_id = self.terminals.setup(j);
                let credential = self.credential.clone();
                let make = make.clone();
                tasks.push(tokio::spawn(async move {
                    let conn = open(addr, terminal_id, store, &credential).await?;
                    let business_date = conn.business_date;
                    let mut position = j;
                    let generate = move || {
                        let at = position;
                        position += connections;
                        (at < todo_shared.len()).then(|| (make(cards_shared[at]), todo_shared[at]))
                    };
                    let replies = CardReplies { request: request_type, answers: Vec::new(), wrong_type: 0 };
                    Ok::<_, OpenError>((
                        business_date,
                        pipeline(
                            conn,
                            Pacing {
                                window: SETUP_WINDOW,
                                first_stan,
                                deadline: None,
                                drain: SETUP_DRAIN,
                                open_loop: None,
                            },
                            generate,
                            replies,
                        )
                        .await,
                    ))
                }));
            }
            let mut progress = 0usize;
            let mut problems = Vec::new();
            let mut unreachable = None;
            for (j, task) in tasks.into_iter().enumerate() {
                let terminal_id = self.terminals.setup(j);
                let outcome = match task.await {
                    Ok(Ok((business_date, outcome))) => {
                        self.business_dates.insert(business_date);
                        outcome
                    }
                    Ok(Err(e)) => {
                        if let OpenError::Connect(text) = &e {
                            unreachable = Some(text.clone());
                        }
                        problems.push(e.text().to_string());
                        continue;
                    }
                    Err(e) => {
                        // It may have used any of its stans: none of them is used again; and
                        // sent any of its requests.
                        self.next_stans[j] += counts[j];
                        unanswered.extend(todo_shared.iter().skip(j).step_by(connections));
                        problems.push(format!("terminal {terminal_id}: task failed: {e}"));
                        continue;
                    }
                };
                self.next_stans[j] += outcome.issued;
                unanswered.extend(outcome.lost.iter().copied());
                if let Some(failure) = &outcome.failure {
                    problems.push(format!("terminal {terminal_id}: {failure}"));
                }
                if let Some(text) = &outcome.first_error_frame {
                    problems.push(format!("terminal {terminal_id}: error frame {text}"));
                }
                if outcome.unmatched > 0 || outcome.replies.wrong_type > 0 {
                    return Err(Failure::Failed(format!(
                        "{what}: the switch sent {} responses for stans not outstanding and {} of the wrong type",
                        outcome.unmatched, outcome.replies.wrong_type
                    )));
                }
                for (index, answer) in outcome.replies.answers {
                    if answer.code != ResponseCode::SystemBusy {
                        answers[index as usize] = Some(answer);
                        progress += 1;
                    }
                }
            }
            if progress == 0 && problems.len() == connections {
                if let Some(text) = unreachable {
                    return Err(Failure::Unreachable(format!("cannot connect to {}: {text}", self.addr_text)));
                }
            }
            for problem in problems.iter().take(3) {
                eprintln!("loadgen: {what}: {problem}");
            }
            // What was busy, lost, or on a connection that never opened goes again.
            todo = todo_shared.iter().copied().filter(|&index| answers[index as usize].is_none()).collect();
            if progress == 0 && pass + 1 >= 3 {
                return Err(Failure::Failed(format!("{what}: no progress in pass {}, giving up", pass + 1)));
            }
        }
        if !todo.is_empty() {
            return Err(Failure::Failed(format!(
                "{what}: {} of {} requests got no final answer after {SETUP_PASSES} passes",
                todo.len(),
                cards.len()
            )));
        }
        let answers = answers.into_iter().enumerate().map(|(index, answer)| CardAnswer {
            unanswered_before: unanswered.contains(&(index as u64)),
            ..answer.expect("every request was answered")
        });
        Ok(answers.collect())
    }
}

/// The setup's sale of a card of the range from `first_card`: the opening value, paid by the
/// method [`Methods::for_card_sale`] gives the card for `seed`.
fn sell_request(
    methods: Methods,
    seed: u64,
    first_card: CardNo,
) -> impl Fn(CardNo) -> Request + Clone + Send + 'static {
    move |card| {
        let method = methods.for_card_sale(seed, card.0 - first_card.0);
        Request::SellCard { card, amount_minor: OPENING_MINOR, method: method as u8 }
    }
}

/// Requests in flight while provisioning.
const PROVISION_WINDOW: usize = 256;

/// Provisions the run's terminals through the admin credential: the setup and verification
/// terminals as `admin` (they import the range), the load terminals as `pos`, all at the run's
/// store, each with its key derived from the admin key, so the run stores no key.
async fn provision(cli: &Cli, addr: SocketAddr, admin: &Credential, terminals: Terminals) -> Result<(), Failure> {
    let started = Instant::now();
    let mut conn = open(addr, admin.terminal_id, cli.store, admin).await.map_err(|e| e.into_failure(&cli.addr))?;
    let all: Vec<(u32, TerminalRole)> = (0..SETUP_CONNECTIONS)
        .map(|j| (terminals.setup(j), TerminalRole::Admin))
        .chain((0..cli.terminals).map(|i| (terminals.load(i), TerminalRole::Pos)))
        .collect();
    // Above the sign-on's stan, which came from the clock too: unique within the run.
    let first_stan = sign_on_stan_from_clock(unix_ms_now()).wrapping_add(1);
    let failed = |text: String| Failure::Failed(format!("provisioning the run's terminals: {text}"));
    for (chunk_index, chunk) in all.chunks(PROVISION_WINDOW).enumerate() {
        let mut waiting = std::collections::HashSet::new();
        for (i, (terminal_id, role)) in chunk.iter().enumerate() {
            let stan = first_stan.wrapping_add((chunk_index * PROVISION_WINDOW + i) as u32);
            let key = terminal_key(admin, *terminal_id);
            let wrapped_key = admin.key.wrap_for_transport(&key, admin.terminal_id, stan, *terminal_id);
            let request = Request::ProvisionTerminal {
                terminal_id: *terminal_id,
                store_id: cli.store,
                role: *role as u8,
                wrapped_key,
            };
            conn.writer
                .feed(request_frame(admin.terminal_id, stan, request))
                .await
                .map_err(|e| failed(e.to_string()))?;
            waiting.insert(stan);
        }
        SinkExt::<Frame>::flush(&mut conn.writer).await.map_err(|e| failed(e.to_string()))?;
        let until = Instant::now() + IMPORT_TIMEOUT;
        while !waiting.is_empty() {
            match timeout_at(until, conn.reader.next()).await {
                Err(_) => {
                    return Err(failed(format!(
                        "{} answers missing after {} s",
                        waiting.len(),
                        IMPORT_TIMEOUT.as_secs()
                    )))
                }
                Ok(None) => return Err(failed("the switch closed the connection".to_string())),
                Ok(Some(Err(e))) => return Err(failed(e.to_string())),
                Ok(Some(Ok(Frame { header, message: Message::Response(Response::Terminal { reply, .. }) }))) => {
                    if !reply.code.is_approved() {
                        return Err(failed(format!("terminal {} declined: {}", reply.terminal_id, reply.code)));
                    }
                    waiting.remove(&header.stan);
                }
                Ok(Some(Ok(Frame { message: Message::Response(other), .. }))) => {
                    return Err(failed(format!("answered with {} ({})", other.msg_type(), other.code())))
                }
                Ok(Some(Ok(_))) => return Err(failed("the switch sent a request".to_string())),
            }
        }
    }
    eprintln!("loadgen: provisioned {} terminals ({:.1} s)", all.len(), started.elapsed().as_secs_f64());
    Ok(())
}

fn balance_request(card: CardNo) -> Request {
    Request::Balance { card }
}

/// Imports the range and sells every card. Returns whether every card was sold fresh (so its
/// balance is exactly the opening value), and the money the sales collected.
async fn setup(cli: &Cli, admin: &mut Admin) -> Result<(bool, Collected), Failure> {
    let started = Instant::now();
    let mut conn = open(admin.addr, admin.terminals.setup(0), admin.store, &admin.credential)
        .await
        .map_err(|e| e.into_failure(&cli.addr))?;
    admin.business_dates.insert(conn.business_date);
    let mut imported = 0u64;
    let mut already = 0u64;
    let mut first = 0u64;
    while first < cli.cards {
        let last = (first + MAX_RANGE_CARDS - 1).min(cli.cards - 1);
        let request = Request::ImportRange {
            first: cli.card(first),
            last: cli.card(last),
            product: cli.product,
            store_id: cli.store,
        };
        let stan = admin.take_stan(0)?;
        let what = format!("import of {}..={}", cli.card(first), cli.card(last));
        match call(&mut conn, stan, request, IMPORT_TIMEOUT).await {
            Ok(Response::ImportRange(reply)) if reply.code.is_approved() => imported += reply.card_count,
            Ok(Response::ImportRange(reply)) if reply.code == ResponseCode::RangeOverlaps => {
                already += last - first + 1
            }
            Ok(Response::ImportRange(reply)) => {
                return Err(Failure::Failed(format!("{what} declined: {}", reply.code)))
            }
            Ok(other) => return Err(Failure::Failed(format!("{what} answered with {}", other.msg_type()))),
            Err(text) => return Err(Failure::Failed(format!("{what}: {text}"))),
        }
        first = last + 1;
    }
    drop(conn);
    eprintln!(
        "loadgen: setup: imported {imported} cards, {already} already there ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let selling = Instant::now();
    let cards: Vec<CardNo> = (0..cli.cards).map(|i| cli.card(i)).collect();
    let sell = sell_request(cli.methods.clone(), cli.seed, cli.first_card);
    let answers = admin.card_requests("sell-card", &cards, sell).await?;
    let mut sold = 0u64;
    let mut already_sold = 0u64;
    let mut other: HashMap<ResponseCode, u64> = HashMap::new();
    for answer in &answers {
        match answer.code {
            ResponseCode::Approved => sold += 1,
            ResponseCode::CardAlreadySold => already_sold += 1,
            code => *other.entry(code).or_default() += 1,
        }
    }
    let seconds = selling.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: setup: sold {sold} cards, {already_sold} already sold ({seconds:.1} s, {:.0}/s)",
        rate(cards.len() as u64, seconds)
    );
    if !other.is_empty() {
        let mut list: Vec<String> = other.iter().map(|(code, n)| format!("{n} {code}")).collect();
        list.sort();
        return Err(Failure::Failed(format!("setup: sell-card declined: {}", list.join(", "))));
    }
    let collected = account_card_sales(&answers, |index| cli.methods.for_card_sale(cli.seed, index));
    Ok((already_sold == 0, collected))
}

/// Reads the balances of the sampled cards; the response code where a balance was declined.
async fn read_balances(
    cli: &Cli,
    admin: &mut Admin,
    sample: Sample,
) -> Result<Vec<Result<Balance, ResponseCode>>, Failure> {
    let cards: Vec<CardNo> = (0..sample.size).map(|slot| cli.card(sample.card_index(slot))).collect();
    let answers = admin.card_requests("balance", &cards, balance_request).await?;
    Ok(answers.into_iter().map(|a| if a.code.is_approved() { Ok(a.balance) } else { Err(a.code) }).collect())
}

// ---------------------------------------------------------------------------------------------
// The load run

/// Live counters of one terminal, read by the progress printer.
#[repr(align(64))]
#[derive(Default)]
struct Live {
    approved: AtomicU64,
    declined: AtomicU64,
    errors: AtomicU64,
}

/// What the approved postings did to each sampled card.
struct Ledger {
    sample: Sample,
    /// Loads - sales - captures (final amounts), fen: the change of `cash + bonus`.
    value: Vec<AtomicI64>,
    /// Holds - the amounts of the holds captures closed, fen: the change of `held`.
    held: Vec<AtomicI64>,
    /// Approved postings.
    postings: Vec<AtomicU32>,
}

impl Ledger {
    fn new(sample: Sample) -> Ledger {
        let size = sample.size as usize;
        Ledger {
            sample,
            value: (0..size).map(|_| AtomicI64::new(0)).collect(),
            held: (0..size).map(|_| AtomicI64::new(0)).collect(),
            postings: (0..size).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Books an approved posting on card index `card` (if it is in the sample).
    #[inline]
    fn post(&self, card: u64, value: i64, held: i64) {
        if let Some(slot) = self.sample.slot_of(card) {
            let slot = slot as usize;
            if value != 0 {
                self.value[slot].fetch_add(value, Ordering::Relaxed);
            }
            if held != 0 {
                self.held[slot].fetch_add(held, Ordering::Relaxed);
            }
            self.postings[slot].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How far a card's balances may be from the expected ones because of requests that were
/// sent and never answered (each may or may not have been posted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Unknown {
    value_down: i64,
    value_up: i64,
    held_down: i64,
    held_up: i64,
}

impl Unknown {
    fn add(&mut self, tag: &LoadTag) {
        let amount = i64::from(tag.amount);
        match tag.kind {
            Kind::Sale => self.value_down += amount,
            Kind::Load => self.value_up += amount,
            Kind::Hold => self.held_up += amount,
            Kind::Capture => {
                self.value_down += amount;
                self.held_down += i64::from(tag.hold_amount);
            }
            Kind::Balance => {}
        }
    }
}

struct LoadReplies {
    live: Arc<Live>,
    ledger: Arc<Ledger>,
    /// The terminal's open holds, when the mix has captures.
    holds: Option<OpenHolds>,
    histogram: Arc<Mutex<Histogram<u64>>>,
    /// Open loop: service times (from the actual send), next to the latencies.
    service_histogram: Option<Arc<Mutex<Histogram<u64>>>>,
    latencies: Vec<u64>,
    services: Vec<u64>,
    declines: Box<[u64; 256]>,
    kinds: [KindStats; 5],
    captures_as_sales: u64,
    wrong_type: u64,
    wrong_amount: u64,
    /// The terminal's approved postings by kind, each with the amount its reply gave: what the
    /// switch should count as its batch (S2). Only matched replies reach here, one per stan, so
    /// a posting answered twice is counted once.
    batch: BatchTotals,
    /// The money the terminal's approved loads collected, at their replies' amounts.
    collected: Collected,
}

impl LoadReplies {
    fn flush_latencies(&mut self) {
        {
            let mut histogram = self.histogram.lock().expect("not poisoned");
            for &us in &self.latencies {
                histogram.saturating_record(us);
            }
        }
        self.latencies.clear();
        if let Some(service) = &self.service_histogram {
            let mut histogram = service.lock().expect("not poisoned");
            for &us in &self.services {
                histogram.saturating_record(us);
            }
        }
        self.services.clear();
    }
}

impl Replies<LoadTag> for LoadReplies {
    fn reply(&mut self, tag: LoadTag, latency: Duration, service: Duration, response: &Response) {
        let reply = match response {
            Response::Card { request, reply } if *request == tag.kind.msg_type() => reply,
            _ => {
                self.wrong_type += 1;
                self.live.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(kind) = posting_kind(tag.kind) {
                    self.collected.unknown_outcome(kind);
                }
                return;
            }
        };
        self.latencies.push(latency.as_micros() as u64);
        if self.service_histogram.is_some() {
            self.services.push(service.as_micros() as u64);
        }
        if self.latencies.len() >= LATENCY_BUFFER {
            self.flush_latencies();
        }
        if tag.instead_of_capture {
            self.captures_as_sales += 1;
        }
        let stats = &mut self.kinds[tag.kind as usize];
        if !reply.code.is_approved() {
            stats.declined += 1;
            self.live.declined.fetch_add(1, Ordering::Relaxed);
            self.declines[reply.code as usize] += 1;
            return;
        }
        stats.approved += 1;
        self.live.approved.fetch_add(1, Ordering::Relaxed);
        if let Some(kind) = posting_kind(tag.kind) {
            // The reply's amount, not the one asked: the switch journals what it posted (a
            // sale's net amount under a catalog's discounts).
            self.batch.add(kind, reply.amount_minor);
            self.collected.post(kind, tag.method, reply.amount_minor);
        }
        let card = u64::from(tag.card);
        let amount = i64::from(tag.amount);
        // Every posting reports the amount it moved; a balance inquiry moves nothing.
        if reply.amount_minor != amount {
            self.wrong_amount += 1;
        }
        match tag.kind {
            Kind::Sale => self.ledger.post(card, -amount, 0),
            Kind::Load => self.ledger.post(card, amount, 0),
            Kind::Hold => {
                self.ledger.post(card, 0, amount);
                if let Some(holds) = &self.holds {
                    let hold = OpenHold { card: tag.card, txn_id: reply.txn_id, amount: tag.amount };
                    remember_hold(&mut holds.lock().expect("not poisoned"), hold);
                }
            }
            Kind::Capture => self.ledger.post(card, -amount, -i64::from(tag.hold_amount)),
            Kind::Balance => {}
        }
    }
}

/// The posting an approved request of `kind` makes, by which the switch counts it in the
/// terminal's batch (S2); a balance inquiry makes none. A capture sent as a sale is a sale.
fn posting_kind(kind: Kind) -> Option<PostingKind> {
    match kind {
        Kind::Sale => Some(PostingKind::Sale),
        Kind::Load => Some(PostingKind::Load),
        Kind::Hold => Some(PostingKind::Hold),
        Kind::Capture => Some(PostingKind::Capture),
        Kind::Balance => None,
    }
}

/// What one load terminal knows of its batch at the end of the run (S2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TerminalBatch {
    terminal_id: u32,
    /// The business date its sign-on reply gave.
    business_date: u32,
    /// Its approved postings by kind, with the amounts their replies gave.
    totals: BatchTotals,
    /// The stan after the last one it used; `None` when it used them all.
    next_stan: Option<u32>,
    /// Whether some of its requests may or may not have posted: sent and never answered,
    /// answered with a response of another type, or lost with its task. The switch's figures
    /// would then say nothing about loadgen's.
    unknowable: bool,
}

impl TerminalBatch {
    /// The batch of load terminal `terminal_id`, signed on for `business_date`, from how its
    /// pipeline ended.
    fn of(terminal_id: u32, business_date: u32, outcome: &Outcome<LoadReplies, LoadTag>) -> TerminalBatch {
        TerminalBatch {
            terminal_id,
            business_date,
            totals: outcome.replies.batch,
            next_stan: u32::try_from(u64::from(FIRST_STAN) + outcome.issued).ok(),
            unknowable: !outcome.lost.is_empty() || outcome.replies.wrong_type > 0,
        }
    }

    /// The batch of a terminal whose task failed: nothing is known of its requests.
    fn lost(terminal_id: u32, business_date: u32) -> TerminalBatch {
        TerminalBatch { terminal_id, business_date, totals: BatchTotals::default(), next_stan: None, unknowable: true }
    }
}

/// Totals of the load run.
struct RunResult {
    approved: u64,
    declined: u64,
    errors: u64,
    declines: Box<[u64; 256]>,
    kinds: [KindStats; 5],
    captures_as_sales: u64,
    unmatched: u64,
    wrong_amount: u64,
    /// Per sampled card, the postings with unknown outcome.
    unknown: Vec<Unknown>,
    /// Open loop: requests due in the run that were never sent.
    unsent: u64,
    measured_s: f64,
    histogram: Histogram<u64>,
    /// Open loop: latency from the actual send.
    service_histogram: Option<Histogram<u64>>,
    /// One per load terminal that signed on.
    batches: Vec<TerminalBatch>,
    /// The money the approved loads collected.
    collected: Collected,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The histogram behind `shared` once every terminal let go of it.
fn take_histogram(shared: Arc<Mutex<Histogram<u64>>>) -> Histogram<u64> {
    Arc::try_unwrap(shared)
        .map(|m| m.into_inner().expect("not poisoned"))
        .unwrap_or_else(|shared| shared.lock().expect("not poisoned").clone())
}

async fn run_load(
    cli: &Cli,
    addr: SocketAddr,
    terminals: Terminals,
    cards: CardChoice,
    ledger: Arc<Ledger>,
    credential: &Credential,
) -> Result<RunResult, Failure> {
    // Connect and sign on every terminal first, so they all start together.
    let mut opening = Vec::with_capacity(cli.terminals as usize);
    for i in 0..cli.terminals {
        let (store, credential) = (cli.store, credential.clone());
        opening.push(tokio::spawn(async move { open(addr, terminals.load(i), store, &credential).await }));
    }
    let mut conns = Vec::with_capacity(opening.len());
    let mut open_errors = Vec::new();
    let mut unreachable = None;
    for (i, task) in opening.into_iter().enumerate() {
        match task.await {
            Ok(Ok(conn)) => conns.push((i as u64, conn)),
            Ok(Err(e)) => {
                if matches!(e, OpenError::Connect(_)) && unreachable.is_none() {
                    unreachable = Some(e.text().to_string());
                }
                open_errors.push(e.text().to_string());
            }
            Err(e) => open_errors.push(format!("task failed: {e}")),
        }
    }
    if conns.is_empty() {
        return Err(match unreachable {
            Some(text) => Failure::Unreachable(format!("cannot connect to {}: {text}", cli.addr)),
            None => Failure::Failed(format!("no terminal could sign on: {}", open_errors[0])),
        });
    }
    if !open_errors.is_empty() {
        eprintln!("loadgen: {} terminals could not start, e.g. {}", open_errors.len(), open_errors[0]);
    }

    let histogram = Arc::new(Mutex::new(new_histogram()));
    let service_histogram = cli.rate.map(|_| Arc::new(Mutex::new(new_histogram())));
    let track_holds = cli.mix.weight(Kind::Capture) > 0;
    let start = Instant::now();
    let run_time = Duration::from_secs(cli.duration_s);
    let deadline = start + run_time;
    let mut lives = Vec::with_capacity(conns.len());
    let mut sessions = Vec::with_capacity(conns.len());
    let mut tasks = Vec::with_capacity(conns.len());
    let mut paced = Vec::with_capacity(if cli.rate.is_some() { conns.len() } else { 0 });
    for (i, conn) in conns {
        let live = Arc::new(Live::default());
        lives.push(Arc::clone(&live));
        sessions.push((conn.terminal_id, conn.business_date));
        let mut rng = XorShift::new(cli.seed, i);
        // Each terminal starts at a random point of its first interval, so they interleave.
        let open_loop = cli.rate.map(|rate| OpenLoop {
            start,
            schedule: Schedule::new(cli.terminals, rate, rng.next_f64()),
            gate: Arc::new(Semaphore::new(0)),
        });
        if let Some(open_loop) = &open_loop {
            paced.push((open_loop.schedule, Arc::clone(&open_loop.gate)));
        }
        let holds: Option<OpenHolds> = track_holds.then(|| Arc::new(Mutex::new(VecDeque::new())));
        let mut generator = LoadGenerator {
            rng,
            mix: cli.mix,
            cards: cards.clone(),
            first_card: cli.first_card.0,
            holds: holds.clone(),
            methods: cli.methods.clone(),
        };
        let generate = move || Some(generator.next_request());
        let replies = LoadReplies {
            live,
            ledger: Arc::clone(&ledger),
            holds,
            histogram: Arc::clone(&histogram),
            service_histogram: service_histogram.clone(),
            latencies: Vec::with_capacity(LATENCY_BUFFER),
            services: Vec::with_capacity(if cli.rate.is_some() { LATENCY_BUFFER } else { 0 }),
            declines: Box::new([0; 256]),
            kinds: [KindStats::default(); 5],
            captures_as_sales: 0,
            wrong_type: 0,
            wrong_amount: 0,
            batch: BatchTotals::default(),
            collected: Collected::default(),
        };
        let pacing =
            Pacing { window: cli.window, first_stan: FIRST_STAN, deadline: Some(deadline), drain: DRAIN, open_loop };
        tasks.push(tokio::spawn(pipeline(conn, pacing, generate, replies)));
    }
    let _pacer = if paced.is_empty() {
        None
    } else {
        let pacer = Pacer::spawn(start, run_time, paced)
            .map_err(|e| Failure::Failed(format!("cannot start the pacing thread: {}", describe_io_error(&e))))?;
        Some(pacer)
    };

    let progress = tokio::spawn(print_progress(start, lives.clone()));

    let mut result = RunResult {
        approved: 0,
        declined: 0,
        errors: open_errors.len() as u64,
        declines: Box::new([0; 256]),
        kinds: [KindStats::default(); 5],
        captures_as_sales: 0,
        unmatched: 0,
        wrong_amount: 0,
        unknown: vec![Unknown::default(); ledger.sample.size as usize],
        unsent: 0,
        measured_s: 0.0,
        histogram: new_histogram(),
        service_histogram: None,
        batches: Vec::with_capacity(tasks.len()),
        collected: Collected::default(),
    };
    let mut last_reply: Option<Instant> = None;
    let mut failures = Vec::new();
    let (mut lost, mut lost_terminals) = (0u64, 0u64);
    let mut out_of_stans = 0u64;
    for ((task, live), (terminal_id, business_date)) in tasks.into_iter().zip(&lives).zip(sessions) {
        let mut outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                failures.push(format!("terminal task failed: {e}"));
                result.errors += 1;
                result.batches.push(TerminalBatch::lost(terminal_id, business_date));
                // Whatever it sent, and the replies it had, are lost with it.
                if cli.mix.weight(Kind::Load) > 0 {
                    result.collected.unknown_outcome(PostingKind::Load);
                }
                continue;
            }
        };
        result.batches.push(TerminalBatch::of(terminal_id, business_date, &outcome));
        outcome.replies.flush_latencies();
        result.approved += live.approved.load(Ordering::Relaxed);
        result.declined += live.declined.load(Ordering::Relaxed);
        result.errors += outcome.replies.wrong_type
            + outcome.error_frames
            + outcome.lost.len() as u64
            + u64::from(outcome.failure.is_some());
        for (total, n) in result.declines.iter_mut().zip(outcome.replies.declines.iter()) {
            *total += n;
        }
        for (total, stats) in result.kinds.iter_mut().zip(&outcome.replies.kinds) {
            total.approved += stats.approved;
            total.declined += stats.declined;
        }
        result.captures_as_sales += outcome.replies.captures_as_sales;
        result.unmatched += outcome.unmatched;
        result.wrong_amount += outcome.replies.wrong_amount;
        result.unsent += outcome.unsent;
        out_of_stans += u64::from(outcome.out_of_stans);
        result.collected.add(&outcome.replies.collected);
        for tag in &outcome.lost {
            result.kinds[tag.kind as usize].lost += 1;
            if let Some(kind) = posting_kind(tag.kind) {
                result.collected.unknown_outcome(kind);
            }
            if let Some(slot) = ledger.sample.slot_of(u64::from(tag.card)) {
                result.unknown[slot as usize].add(tag);
            }
        }
        if let Some(failure) = outcome.failure {
            failures.push(failure);
        }
        if let Some(text) = outcome.first_error_frame {
            failures.push(format!("error frame {text}"));
        }
        if !outcome.lost.is_empty() {
            lost_terminals += 1;
            lost += outcome.lost.len() as u64;
        }
        last_reply = last_reply.max(outcome.last_reply);
    }
    progress.abort();
    if out_of_stans > 0 {
        eprintln!("loadgen: {out_of_stans} terminals used every stan up to {} and stopped sending early", u32::MAX);
    }
    if lost > 0 {
        eprintln!(
            "loadgen: {lost} requests on {lost_terminals} terminals got no response within {} s",
            DRAIN.as_secs()
        );
    }
    if !failures.is_empty() {
        eprintln!("loadgen: {} terminal connections failed, e.g.:", failures.len());
        for failure in failures.iter().take(5) {
            eprintln!("loadgen:   {failure}");
        }
    }
    // The run lasts its duration, or longer when responses kept coming after it.
    let last_reply_s = last_reply.map_or(0.0, |at| at.saturating_duration_since(start).as_secs_f64());
    result.measured_s = last_reply_s.max(cli.duration_s as f64);
    result.histogram = take_histogram(histogram);
    result.service_histogram = service_histogram.map(take_histogram);
    Ok(result)
}

/// Prints elapsed time, throughput over the last second and totals, every second.
async fn print_progress(start: Instant, lives: Vec<Arc<Live>>) {
    let mut ticks = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let (mut last_at, mut last_done) = (start, 0u64);
    loop {
        ticks.tick().await;
        let (mut approved, mut declined, mut errors) = (0, 0, 0);
        for live in &lives {
            approved += live.approved.load(Ordering::Relaxed);
            declined += live.declined.load(Ordering::Relaxed);
            errors += live.errors.load(Ordering::Relaxed);
        }
        let now = Instant::now();
        let done = approved + declined;
        let tps = rate(done - last_done, (now - last_at).as_secs_f64());
        eprintln!(
            "loadgen: {:>6.1} s {:>10.0} tps  approved {approved}  declined {declined}  errors {errors}",
            (now - start).as_secs_f64(),
            tps
        );
        (last_at, last_done) = (now, done);
    }
}

// ---------------------------------------------------------------------------------------------

/// Compares the balances after the run with the balances before plus the approved postings:
/// `cash + bonus` moved by loads - sales - captures, `held` by holds - the holds captures
/// closed; requests without an answer widen the window by their amounts. Returns the number
/// of cards that do not match.
fn check_balances(
    cli: &Cli,
    ledger: &Ledger,
    start: &[Result<Balance, ResponseCode>],
    end: &[Result<Balance, ResponseCode>],
    unknown: &[Unknown],
) -> u64 {
    let sample = ledger.sample;
    let mut mismatches = 0u64;
    for slot in 0..sample.size as usize {
        let value = ledger.value[slot].load(Ordering::Relaxed);
        let held = ledger.held[slot].load(Ordering::Relaxed);
        let postings = ledger.postings[slot].load(Ordering::Relaxed);
        let slack = unknown[slot];
        let card = cli.card(sample.card_index(slot as u64));
        let problem = match (start[slot], end[slot]) {
            (Ok(before), Ok(after)) => {
                let mut problems = Vec::new();
                let expected = before.value_minor + value;
                if after.value_minor > expected + slack.value_up || after.value_minor < expected - slack.value_down {
                    problems.push(format!(
                        "cash + bonus {}, expected {expected} ({} {value:+} approved, -{}/+{} unknown)",
                        after.value_minor, before.value_minor, slack.value_down, slack.value_up
                    ));
                }
                let expected = before.held_minor + held;
                if after.held_minor > expected + slack.held_up || after.held_minor < expected - slack.held_down {
                    problems.push(format!(
                        "held {}, expected {expected} ({} {held:+} by approved holds and captures, -{}/+{} unknown)",
                        after.held_minor, before.held_minor, slack.held_down, slack.held_up
                    ));
                }
                (!problems.is_empty()).then(|| problems.join("; "))
            }
            (Err(before), Err(after)) if before == after && postings == 0 => None,
            (before, after) => {
                Some(format!("balance before {before:?}, after {after:?}, {postings} approved postings"))
            }
        };
        if let Some(problem) = problem {
            mismatches += 1;
            if mismatches <= 10 {
                eprintln!("loadgen: verify: card {card}: {problem}");
            }
        }
    }
    mismatches
}

// ---------------------------------------------------------------------------------------------
// The money collected (S4): loadgen's own account of it, and the finance file it goes into.

/// Whether an approved posting of `kind` is money collected as `cardswitch settle` counts it
/// (src/settle.rs, `collected`; S4, V6): the cash value of loads and card sales (a load's bonus
/// is value given, not money taken), less the voids and reversals of those, plus fees. loadgen
/// sends no voids, reversals or requests that charge a fee, so of its postings only loads and
/// card sales count, each for the amount its reply reports: what the switch journals as the
/// posting's cash value.
fn collects_money(kind: PostingKind) -> bool {
    match kind {
        PostingKind::Load | PostingKind::SellCard => true,
        // Value spent or reserved on a card: no money changes hands at the desk.
        PostingKind::Sale | PostingKind::Hold | PostingKind::Capture => false,
        other => unreachable!("loadgen makes no {other:?} postings: count them as settle does first"),
    }
}

/// The money a run collected per payment method, fen, by its approved postings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Collected {
    by_method: BTreeMap<PaymentMethod, i64>,
    /// Loads and card sales whose outcome loadgen does not know (sent and not answered, or
    /// answered with a reply of another type): each may have collected money or not.
    unknown: u64,
}

impl Collected {
    /// Books the approved posting `kind`, paid by `method`, whose reply reported `amount_minor`.
    fn post(&mut self, kind: PostingKind, method: Option<PaymentMethod>, amount_minor: i64) {
        if collects_money(kind) {
            let method = method.expect("loads and card sales name their payment method");
            *self.by_method.entry(method).or_default() += amount_minor;
        }
    }

    /// Books a request making a posting of `kind` whose outcome is unknown.
    fn unknown_outcome(&mut self, kind: PostingKind) {
        if collects_money(kind) {
            self.unknown += 1;
        }
    }

    fn add(&mut self, other: &Collected) {
        for (&method, &minor) in &other.by_method {
            *self.by_method.entry(method).or_default() += minor;
        }
        self.unknown += other.unknown;
    }

    fn total_minor(&self) -> i64 {
        self.by_method.values().sum()
    }

    /// `cash 2500.00, wechat 120.00`.
    fn describe(&self) -> String {
        let parts: Vec<String> =
            self.by_method.iter().map(|(method, minor)| format!("{method} {}", format_minor(*minor))).collect();
        if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// The money the setup's card sales collected, `method_of(i)` being the method card index `i`
/// was sold with: every approved sale's amount. A card answered `card_already_sold` after an
/// earlier attempt to sell it got no answer may have been sold by that attempt, in this run,
/// so its money is unknown; otherwise an earlier run sold it.
fn account_card_sales(answers: &[CardAnswer], method_of: impl Fn(u64) -> PaymentMethod) -> Collected {
    let mut collected = Collected::default();
    for (index, answer) in answers.iter().enumerate() {
        match answer.code {
            ResponseCode::Approved => {
                collected.post(PostingKind::SellCard, Some(method_of(index as u64)), answer.amount_minor)
            }
            ResponseCode::CardAlreadySold if answer.unanswered_before => {
                collected.unknown_outcome(PostingKind::SellCard)
            }
            _ => {}
        }
    }
    collected
}

/// The first line of a finance file.
const FINANCE_HEADER: &str = "date,store,method,amount";
/// Most lines, the header included, `cardswitch settle` reads in a finance file (its
/// `MAX_FINANCE_LINES`).
const MAX_FINANCE_LINES: usize = 1_000_000;

/// One line of a finance file: the money collected at a store on a business date by one
/// payment method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FinanceLine {
    /// YYYYMMDD.
    date: u32,
    store: u32,
    method: PaymentMethod,
    amount_minor: i64,
}

impl FinanceLine {
    /// `2026-12-01,21,cash,2500.00`.
    fn text(&self) -> String {
        format!("{},{},{},{}", format_date(self.date), self.store, self.method, format_minor(self.amount_minor))
    }
}

/// The lines of a finance file's text, refusing whatever `cardswitch settle --finance` refuses
/// (src/settle.rs `read_finance`): the header `date,store,method,amount`, then lines of four
/// fields (blank lines skipped), amounts in yuan with at most two decimals, perhaps negative.
/// Lines of every date are kept, and a store and method listed twice stay two lines (settle
/// adds them up).
fn parse_finance(text: &str) -> Result<Vec<FinanceLine>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == FINANCE_HEADER => {}
        _ => return Err(format!("line 1: the first line must be `{FINANCE_HEADER}`")),
    }
    let mut parsed = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        let bad = |problem: String| format!("line {number}: {problem}");
        if number > MAX_FINANCE_LINES {
            return Err(bad(format!("more than {MAX_FINANCE_LINES} lines")));
        }
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [date, store, method, amount] = fields[..] else {
            return Err(bad(format!("{} fields, expected 4: {FINANCE_HEADER}", fields.len())));
        };
        let date =
            cardswitch_tools::parse_date(date).ok_or_else(|| bad(format!("`{date}` is not a date YYYY-MM-DD")))?;
        let store: u32 = store.parse().map_err(|_| bad(format!("`{store}` is not a store id")))?;
        let method = PaymentMethod::from_name(method)
            .ok_or_else(|| bad(format!("`{method}` is not a payment method (cash, bank_card, wechat, …)")))?;
        let (negative, digits) = match amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, amount),
        };
        let minor = protocol::types::parse_minor(digits)
            .ok_or_else(|| bad(format!("`{amount}` is not an amount in yuan with at most two decimals")))?;
        parsed.push(FinanceLine { date, store, method, amount_minor: if negative { -minor } else { minor } });
    }
    Ok(parsed)
}

/// The text of a finance file of `lines`, in their order.
fn render_finance(lines: &[FinanceLine]) -> String {
    let mut text = format!("{FINANCE_HEADER}\n");
    for line in lines {
        text.push_str(&line.text());
        text.push('\n');
    }
    text
}

/// Adds `collected` at `store` on `date` to `lines`: each method's amount to the first line of
/// that date, store and method, else on a new line at the end (methods in protocol order).
/// Methods that collected nothing add no line.
fn merge_finance(lines: &mut Vec<FinanceLine>, date: u32, store: u32, collected: &Collected) -> Result<(), String> {
    for (&method, &minor) in collected.by_method.iter().filter(|(_, minor)| **minor != 0) {
        match lines.iter_mut().find(|line| (line.date, line.store, line.method) == (date, store, method)) {
            Some(line) => {
                line.amount_minor = line
                    .amount_minor
                    .checked_add(minor)
                    .ok_or_else(|| format!("{} plus {} does not fit in an amount", line.text(), format_minor(minor)))?;
            }
            None => lines.push(FinanceLine { date, store, method, amount_minor: minor }),
        }
    }
    if lines.len() + 1 > MAX_FINANCE_LINES {
        return Err(format!("it would have more than the {MAX_FINANCE_LINES} lines settle reads"));
    }
    Ok(())
}

/// The lines of the finance file at `path`: none when there is no such file, or it is empty
/// (as `mktemp` leaves it).
fn read_finance_file(path: &Path) -> Result<Vec<FinanceLine>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {}", path.display(), describe_io_error(&e))),
    };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let not_finance =
        |problem: String| format!("{} is not a finance file ({FINANCE_HEADER}): {problem}", path.display());
    let text = String::from_utf8(bytes).map_err(|_| not_finance("it is not UTF-8 text".to_string()))?;
    parse_finance(&text).map_err(not_finance)
}

/// The directory `path` is in.
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Checks before the run that `--finance-out` can take the run's money: an existing file is a
/// finance file, a new one has a directory to go in.
fn check_finance_out(path: &Path) -> Result<(), String> {
    read_finance_file(path)?;
    let directory = directory_of(path);
    if !path.exists() && !directory.is_dir() {
        return Err(format!("cannot write {}: there is no directory {}", path.display(), directory.display()));
    }
    Ok(())
}

/// Replaces the file at `path` with `bytes` through a temporary file in the same directory,
/// synced, then renamed over it: a reader, or a crash at any moment, sees the old file or the
/// new one, never a part. The file keeps its permissions.
fn replace_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let directory = directory_of(path);
    let name = path.file_name().ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let temporary =
        directory.join(format!(".{}.{}-{}.partial", name.to_string_lossy(), std::process::id(), unix_ms_now()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary)?;
        if let Ok(existing) = std::fs::metadata(path) {
            file.set_permissions(existing.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
        return written;
    }
    // The rename is made durable too; a file system that cannot sync a directory has still
    // replaced the file, so that is no failure to report.
    if let Ok(directory) = std::fs::File::open(directory) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// Adds `collected` at `store` on `date` to the finance file at `path` (created when missing),
/// leaving the file untouched when it is not a finance file or the new one cannot be written.
fn add_to_finance_file(path: &Path, date: u32, store: u32, collected: &Collected) -> Result<(), String> {
    let mut lines = read_finance_file(path)?;
    merge_finance(&mut lines, date, store, collected).map_err(|problem| format!("{}: {problem}", path.display()))?;
    replace_atomically(path, render_finance(&lines).as_bytes())
        .map_err(|e| format!("cannot write {}: {}", path.display(), describe_io_error(&e)))
}

/// What became of `--finance-out`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FinanceOutcome {
    /// The run's money, this many fen in all, was added to the file.
    Added(i64),
    /// The file was not written, for this reason.
    NotWritten(String),
}

/// Adds the run's money, `collected` at `store` on the business date of every sign-on in
/// `dates`, to the finance file at `path`, unless that money or its day cannot be known; says
/// on stderr what it did.
fn write_finance(path: &Path, store: u32, dates: &BTreeSet<u32>, collected: &Collected) -> FinanceOutcome {
    let not_written = |why: String| {
        eprintln!("loadgen: finance: {why}: {} not written", path.display());
        FinanceOutcome::NotWritten(why)
    };
    if collected.unknown > 0 {
        return not_written(format!(
            "the outcome of {} loads or card sales is unknown (no answer, an answer of another type, or a \
             terminal that failed), so is the money collected",
            collected.unknown
        ));
    }
    // A posting belongs to the day open when it is accepted (S1): the days of the first and
    // the last sign-on (the verification's, after the load) bound every posting's day.
    let date = match (dates.first(), dates.last()) {
        (Some(&first), Some(&last)) if first == last => first,
        (Some(&first), Some(&last)) => {
            return not_written(format!(
                "the business date at store {store} changed during the run ({} to {}), so the day of each \
                 posting is unknown",
                format_date(first),
                format_date(last)
            ))
        }
        _ => return not_written("no sign-on gave a business date".to_string()),
    };
    if cardswitch_tools::parse_date(&format_date(date)).is_none() {
        return not_written(format!("the switch gave the business date {date}, which is not a calendar date"));
    }
    match add_to_finance_file(path, date, store, collected) {
        Ok(()) => {
            eprintln!(
                "loadgen: finance: {} collected at store {store} on {} ({}) added to {}",
                format_minor(collected.total_minor()),
                format_date(date),
                collected.describe(),
                path.display()
            );
            FinanceOutcome::Added(collected.total_minor())
        }
        Err(why) => not_written(why),
    }
}

// ---------------------------------------------------------------------------------------------
// Batch totals (S2): the switch's count of each load terminal's postings against loadgen's.

/// What became of one terminal's batch.
#[derive(Clone, Debug, PartialEq, Eq)]
enum BatchOutcome {
    InBalance,
    /// The switch's answer: its figures, or its verdict, differ from the terminal's.
    OutOfBalance(BatchTotalsReply),
    Declined(ResponseCode),
    /// Not sent: the terminal cannot know its batch, or has no trace number left for it.
    Skipped,
    /// No answer, or not a batch reply.
    Failed(String),
}

/// The switch's `response` to the batch `ours` asked for `business_date`, judged: in balance
/// only when the switch says so for the date asked and its figures are indeed ours.
fn judge_batch(ours: &BatchTotals, business_date: u32, response: &Response) -> BatchOutcome {
    match response {
        Response::BatchTotals(reply) if !reply.code.is_approved() => BatchOutcome::Declined(reply.code),
        Response::BatchTotals(reply)
            if reply.in_balance == 1
                && reply.totals == *ours
                && (business_date == 0 || reply.business_date == business_date) =>
        {
            BatchOutcome::InBalance
        }
        Response::BatchTotals(reply) => BatchOutcome::OutOfBalance(*reply),
        other => BatchOutcome::Failed(format!("answered with {}", other.msg_type())),
    }
}

/// The lines on which `ours` and the switch's `theirs` differ, e.g. `sale 12 for 3.45 here, 13
/// for 3.50 at the switch`, joined by `; `.
fn batch_differences(ours: &BatchTotals, theirs: &BatchTotals) -> String {
    let lines: Vec<String> = BATCH_KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| (ours.counts[*i], ours.amounts_minor[*i]) != (theirs.counts[*i], theirs.amounts_minor[*i]))
        .map(|(i, kind)| {
            format!(
                "{kind} {} for {} here, {} for {} at the switch",
                ours.counts[i],
                format_minor(ours.amounts_minor[i]),
                theirs.counts[i],
                format_minor(theirs.amounts_minor[i])
            )
        })
        .collect();
    lines.join("; ")
}

/// Signs `batch`'s terminal on again (its session ended with the load) and sends its batch
/// with the stan after its last, unless it cannot know it.
async fn send_batch(addr: SocketAddr, store: u32, credential: &Credential, batch: TerminalBatch) -> BatchOutcome {
    let Some(stan) = batch.next_stan.filter(|_| !batch.unknowable) else { return BatchOutcome::Skipped };
    let mut conn = match open(addr, batch.terminal_id, store, credential).await {
        Ok(conn) => conn,
        Err(e) => return BatchOutcome::Failed(format!("signing on again: {}", e.text())),
    };
    let request = Request::BatchTotals { business_date: batch.business_date, totals: batch.totals };
    match call(&mut conn, stan, request, BATCH_TIMEOUT).await {
        Ok(response) => judge_batch(&batch.totals, batch.business_date, &response),
        Err(text) => BatchOutcome::Failed(text),
    }
}

/// Sends every load terminal's batch, one request per terminal, all terminals at once as in
/// the load run; counts the outcomes and prints the problems of the first few.
async fn send_batches(cli: &Cli, addr: SocketAddr, credential: &Credential, batches: &[TerminalBatch]) -> BatchCounts {
    let started = Instant::now();
    let tasks: Vec<_> = batches
        .iter()
        .map(|&batch| {
            let (store, credential) = (cli.store, credential.clone());
            (batch, tokio::spawn(async move { send_batch(addr, store, &credential, batch).await }))
        })
        .collect();
    let mut counts = BatchCounts::default();
    let mut problems = Vec::new();
    for (batch, task) in tasks {
        let outcome = task.await.unwrap_or_else(|e| BatchOutcome::Failed(format!("task failed: {e}")));
        let date = batch.business_date;
        let problem = match outcome {
            BatchOutcome::InBalance => {
                counts.in_balance += 1;
                None
            }
            BatchOutcome::OutOfBalance(reply) => {
                counts.out_of_balance += 1;
                let differences = batch_differences(&batch.totals, &reply.totals);
                Some(if date != 0 && reply.business_date != date {
                    format!("answered for business date {}", format_date(reply.business_date))
                } else if differences.is_empty() {
                    "out of balance, says the switch, yet every line is as here".to_string()
                } else if reply.in_balance == 1 {
                    format!("in balance, says the switch, yet {differences}")
                } else {
                    format!("out of balance: {differences}")
                })
            }
            BatchOutcome::Declined(code) => {
                counts.declined += 1;
                Some(format!("declined {code}"))
            }
            BatchOutcome::Skipped => {
                counts.skipped += 1;
                None
            }
            BatchOutcome::Failed(text) => {
                counts.failed += 1;
                Some(text)
            }
        };
        if let Some(problem) = problem {
            problems.push(format!("terminal {}, business date {}: {problem}", batch.terminal_id, format_date(date)));
        }
    }
    for problem in problems.iter().take(BATCH_PROBLEMS_SHOWN) {
        eprintln!("loadgen: batch: {problem}");
    }
    if problems.len() > BATCH_PROBLEMS_SHOWN {
        eprintln!("loadgen: batch: {} more terminals with problems", problems.len() - BATCH_PROBLEMS_SHOWN);
    }
    eprintln!(
        "loadgen: batch totals of {} terminals: {} in balance, {} out of balance, {} declined, {} skipped (requests \
         of unknown outcome), {} failed ({:.1} s): {}",
        batches.len(),
        counts.in_balance,
        counts.out_of_balance,
        counts.declined,
        counts.skipped,
        counts.failed,
        started.elapsed().as_secs_f64(),
        if counts.verified() { "verified" } else { "NOT verified" }
    );
    counts
}

fn percentile(histogram: &Histogram<u64>, quantile: f64) -> u64 {
    if histogram.is_empty() {
        0
    } else {
        histogram.value_at_quantile(quantile)
    }
}

/// p50, p99, p99.9 and max.
fn headline(histogram: &Histogram<u64>) -> (u64, u64, u64, u64) {
    (
        percentile(histogram, 0.5),
        percentile(histogram, 0.99),
        percentile(histogram, 0.999),
        if histogram.is_empty() { 0 } else { histogram.max() },
    )
}

/// The report files, created before the run so a bad path fails at once.
struct Outputs {
    hgrm: Option<(PathBuf, std::fs::File)>,
    plot: Option<(PathBuf, std::fs::File)>,
}

impl Outputs {
    fn create(cli: &Cli) -> Result<Outputs, Failure> {
        let create = |path: &Option<PathBuf>| -> Result<Option<(PathBuf, std::fs::File)>, Failure> {
            match path {
                None => Ok(None),
                Some(path) => match std::fs::File::create(path) {
                    Ok(file) => Ok(Some((path.clone(), file))),
                    Err(e) => {
                        Err(Failure::Usage(format!("cannot write {}: {}", path.display(), describe_io_error(&e))))
                    }
                },
            }
        };
        Ok(Outputs { hgrm: create(&cli.hgrm)?, plot: create(&cli.plot)? })
    }

    /// Writes the reports; false when one could not be written (said on stderr).
    fn write(self, cli: &Cli, result: &RunResult, tps: f64) -> bool {
        use std::io::Write as _;
        let mut ok = true;
        let mut write = |target: Option<(PathBuf, std::fs::File)>, what: &str, text: &dyn Fn() -> String| {
            if let Some((path, mut file)) = target {
                match file.write_all(text().as_bytes()).and_then(|()| file.sync_all()) {
                    Ok(()) => eprintln!("loadgen: {what} written to {}", path.display()),
                    Err(e) => {
                        eprintln!("loadgen: cannot write {}: {}", path.display(), describe_io_error(&e));
                        ok = false;
                    }
                }
            }
        };
        let histogram = &result.histogram;
        write(self.hgrm, "latency distribution", &|| percentile_distribution(histogram, TICKS_PER_HALF_DISTANCE, 1.0));
        write(self.plot, "latency plot", &|| {
            let (title, subtitles) = plot_titles(cli, result, tps);
            latency_svg(histogram, &title, &subtitles)
        });
        ok
    }
}

/// The plot's title (the run's shape) and the lines under it (its other parameters and
/// results).
fn plot_titles(cli: &Cli, result: &RunResult, tps: f64) -> (String, Vec<String>) {
    let title = format!(
        "loadgen latency: {} terminals × window {}, {}, {} s",
        group_digits(u64::from(cli.terminals)),
        cli.window,
        cli.pacing(),
        cli.duration_s
    );
    let parameters = format!(
        "{} cards ({}), mix {}, seed {}, switch {}",
        group_digits(cli.cards),
        cli.skew,
        cli.mix,
        cli.seed,
        cli.addr
    );
    let measured = format!(
        "{} responses, {} tps; latency measured from the {} send time",
        group_digits(result.approved + result.declined),
        group_digits(tps.round() as u64),
        if cli.rate.is_some() { "intended" } else { "actual" }
    );
    (title, vec![parameters, measured])
}

/// What a run found: the summary line and the details behind it (which the tests read).
#[derive(Clone, Debug)]
#[cfg_attr(not(test), allow(dead_code))]
struct Report {
    summary: Summary,
    kinds: [KindStats; 5],
    captures_as_sales: u64,
    /// Open loop: p50, p99, p99.9 and max of the time from the actual send.
    service: Option<(u64, u64, u64, u64)>,
    unsent: u64,
    /// A report file could not be written.
    output_failed: bool,
    /// The money the run collected: the setup's card sales and the approved loads.
    collected: Collected,
}

/// Runs with the terminal ids `terminals`: setup (if asked), balances before, load, balances
/// after.
async fn run_detailed(cli: &Cli, terminals: Terminals) -> Result<Report, Failure> {
    let cards = CardChoice::new(cli.cards, cli.skew).map_err(Failure::Usage)?;
    let outputs = Outputs::create(cli)?;
    if let Some(path) = &cli.finance_out {
        check_finance_out(path).map_err(Failure::Usage)?;
    }
    let addr = match tokio::net::lookup_host(cli.addr.as_str()).await {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| Failure::Unreachable(format!("cannot connect to {}: no address found", cli.addr)))?,
        Err(e) => {
            return Err(Failure::Unreachable(format!("cannot connect to {}: {}", cli.addr, describe_io_error(&e))))
        }
    };
    eprintln!(
        "loadgen: {} terminals, window {}, {}, {} s, {} cards from {} at store {} ({}), mix {}, methods {}, seed {}",
        cli.terminals,
        cli.window,
        cli.pacing(),
        cli.duration_s,
        cli.cards,
        cli.first_card,
        cli.store,
        cli.skew,
        cli.mix,
        cli.methods,
        cli.seed
    );
    eprintln!("loadgen: {}", terminals.describe(cli.terminals));
    if cli.mix.weight(Kind::Capture) > 0 && cli.mix.weight(Kind::Hold) == 0 {
        eprintln!("loadgen: the mix has captures but no holds: every capture is sent as a sale");
    }
    if cli.setup && cli.methods.some_need_confirmation() {
        eprintln!(
            "loadgen: cards sold by cheque or transfer stay inactive until finance confirms the funds (L2): \
             the switch declines their loads, sales and holds"
        );
    }

    let credential = Credential::load_admin(cli.admin_key_file.as_deref())
        .map_err(|e| Failure::Usage(format!("the admin credential: {e}")))?;
    provision(cli, addr, &credential, terminals).await?;
    let mut admin = Admin::new(addr, &cli.addr, cli.store, terminals, credential.clone());
    let (fresh, mut collected) = if cli.setup { setup(cli, &mut admin).await? } else { (false, Collected::default()) };
    let sample = Sample::new(cli.cards, VERIFY_SAMPLE);
    // Read even after a fresh setup: under a catalog the opening load may have earned a bonus
    // (V3), so the opening value is what the switch says, not the amount loaded.
    let start_balances = {
        let reading = Instant::now();
        let balances = read_balances(cli, &mut admin, sample).await?;
        eprintln!(
            "loadgen: read the balances of {} cards before the run ({:.1} s)",
            sample.size,
            reading.elapsed().as_secs_f64()
        );
        balances
    };

    let ledger = Arc::new(Ledger::new(sample));
    let result = run_load(cli, addr, terminals, cards, Arc::clone(&ledger), &credential).await?;

    let responses = result.approved + result.declined;
    let tps = rate(responses, result.measured_s);
    eprintln!(
        "loadgen: run: {responses} responses in {:.2} s: {tps:.0} tps; approved {}, declined {}, errors {}",
        result.measured_s, result.approved, result.declined, result.errors
    );
    let mut by_kind = Vec::new();
    for kind in Kind::ALL {
        let stats = result.kinds[kind as usize];
        if stats == KindStats::default() && cli.mix.weight(kind) == 0 {
            continue;
        }
        let mut text = format!("{} {} approved, {} declined", kind.name(), stats.approved, stats.declined);
        if stats.lost > 0 {
            text.push_str(&format!(", {} unanswered", stats.lost));
        }
        by_kind.push(text);
    }
    eprintln!("loadgen: by type: {}", by_kind.join("; "));
    if result.captures_as_sales > 0 {
        eprintln!("loadgen: {} captures were sent as sales (the terminal had no open hold)", result.captures_as_sales);
    }
    if result.declined > 0 {
        let mut by_code: Vec<String> = Vec::new();
        for (code, &n) in result.declines.iter().enumerate() {
            if n > 0 {
                let name = ResponseCode::from_u8(code as u8).map_or("unknown", ResponseCode::as_str);
                by_code.push(format!("{name} {n}"));
            }
        }
        eprintln!("loadgen: declined by code: {}", by_code.join(", "));
    }
    let summary_latency = headline(&result.histogram);
    eprintln!(
        "loadgen: latency us{}: p50 {} p99 {} p99.9 {} max {}",
        if cli.rate.is_some() { " (from the intended send time)" } else { "" },
        summary_latency.0,
        summary_latency.1,
        summary_latency.2,
        summary_latency.3
    );
    let service = result.service_histogram.as_ref().map(headline);
    if let Some((p50, p99, p999, max)) = service {
        eprintln!("loadgen: service time us (from the actual send): p50 {p50} p99 {p99} p99.9 {p999} max {max}");
    }
    if result.unsent > 0 {
        eprintln!(
            "loadgen: {} requests due before the end were never sent (the terminals fell behind the schedule)",
            result.unsent
        );
    }
    let output_failed = !outputs.write(cli, &result, tps);

    let verifying = Instant::now();
    let end_balances = read_balances(cli, &mut admin, sample).await?;
    let mismatches = check_balances(cli, &ledger, &start_balances, &end_balances, &result.unknown);
    if result.unmatched > 0 {
        eprintln!("loadgen: verify: {} responses for stans not outstanding (answered twice?)", result.unmatched);
    }
    if result.wrong_amount > 0 {
        eprintln!("loadgen: verify: {} approved requests reported another amount", result.wrong_amount);
    }
    let balances_verified = mismatches == 0 && result.unmatched == 0 && result.wrong_amount == 0;
    eprintln!(
        "loadgen: verify: {} cards checked{}, {mismatches} mismatches ({:.1} s): {}",
        sample.size,
        if fresh { " against the balances after the setup" } else { " against the balances before the run" },
        verifying.elapsed().as_secs_f64(),
        if balances_verified { "verified" } else { "NOT verified" }
    );
    let batches =
        if cli.batch_totals { Some(send_batches(cli, addr, &credential, &result.batches).await) } else { None };
    let verified = balances_verified && batches.is_none_or(|counts| counts.verified());
    collected.add(&result.collected);
    let finance = cli.finance_out.as_deref().map(|path| {
        let mut dates = admin.business_dates.clone();
        dates.extend(result.batches.iter().map(|batch| batch.business_date));
        write_finance(path, cli.store, &dates, &collected)
    });

    Ok(Report {
        summary: Summary {
            tps,
            approved: result.approved,
            declined: result.declined,
            errors: result.errors,
            p50_us: summary_latency.0,
            p99_us: summary_latency.1,
            p999_us: summary_latency.2,
            max_us: summary_latency.3,
            batches,
            finance,
            verified,
        },
        kinds: result.kinds,
        captures_as_sales: result.captures_as_sales,
        service,
        unsent: result.unsent,
        output_failed,
        collected,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(text) = cli.check() {
        eprintln!("loadgen: {text}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    // The run's block of terminal ids comes from the second it starts (see `Terminals`).
    let started_ms = unix_ms_now();
    let terminals = Terminals { base: run_terminal_block(started_ms) };
    let outcome = runtime.block_on(run_detailed(&cli, terminals));
    // Tasks stuck on a dead connection must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    // Never end within the start second: a run started after this one ends then gets another
    // block. (A usage error is found before anything is sent.)
    if !matches!(outcome, Err(Failure::Usage(_))) {
        std::thread::sleep(until_next_second(started_ms, unix_ms_now()));
    }
    match outcome {
        Ok(report) => {
            println!("{}", report.summary.json());
            let finance_failed = matches!(report.summary.finance, Some(FinanceOutcome::NotWritten(_)));
            if report.summary.errors > 0 || !report.summary.verified || report.output_failed || finance_failed {
                ExitCode::from(EXIT_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(Failure::Unreachable(text)) => {
            eprintln!("loadgen: {text}");
            if let Some(path) = &cli.finance_out {
                eprintln!("loadgen: finance: {} not written", path.display());
            }
            ExitCode::from(EXIT_UNREACHABLE)
        }
        Err(Failure::Usage(text)) => {
            eprintln!("loadgen: {text}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Failed(text)) => {
            eprintln!("loadgen: {text}");
            if let Some(path) = &cli.finance_out {
                eprintln!("loadgen: finance: {} not written", path.display());
            }
            ExitCode::from(EXIT_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardswitch_tools::miniswitch::{Faults, MiniSwitch};
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_and_defaults() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--addr",
            "127.0.0.1:7000",
            "--terminals",
            "50",
            "--window",
            "1",
            "--duration-s",
            "5",
            "--cards",
            "10000",
            "--setup",
        ])
        .unwrap();
        assert_eq!((cli.terminals, cli.window, cli.duration_s, cli.cards), (50, 1, 5, 10_000));
        assert!(cli.setup);
        assert_eq!((cli.seed, cli.first_card, cli.store), (1, CardNo(6_200_880_000_000_000), 21));
        assert!(cli.check().is_ok());
        assert!(!cli.batch_totals);
        assert_eq!((cli.methods.clone(), cli.finance_out.as_deref()), (Methods::default(), None));
        assert_eq!(cli.card(9_999), CardNo(6_200_880_000_009_999));
        assert_eq!((cli.rate, cli.mix, cli.skew), (None, Mix::default(), Skew::Uniform));
        assert_eq!((cli.hgrm.as_deref(), cli.plot.as_deref()), (None, None));
        assert_eq!(cli.pacing(), "closed loop");
        let cli = Cli::try_parse_from([
            "loadgen",
            "--addr",
            "127.0.0.1:7000",
            "--terminals",
            "50",
            "--window",
            "8",
            "--duration-s",
            "10",
            "--cards",
            "1000000",
            "--setup",
            "--rate",
            "100000",
            "--mix",
            "sale=70,load=10,hold=10,capture=5,balance=5",
            "--skew",
            "zipf:1.1",
            "--hgrm",
            "out.hgrm",
            "--plot",
            "out.svg",
            "--seed",
            "7",
            "--batch-totals",
            "--methods",
            "cash,WeChat,bank-card,alipay",
            "--finance-out",
            "day.csv",
        ])
        .unwrap();
        assert!(cli.batch_totals);
        assert_eq!(cli.methods.to_string(), "cash,wechat,bank_card,alipay");
        assert_eq!(cli.finance_out, Some(PathBuf::from("day.csv")));
        assert_eq!(cli.rate, Some(100_000.0));
        assert_eq!(cli.pacing(), "open loop at 100,000/s");
        assert_eq!(cli.mix.to_string(), "sale=70,load=10,hold=10,capture=5,balance=5");
        assert_eq!(cli.skew, Skew::Zipf(1.1));
        assert_eq!(cli.hgrm, Some(PathBuf::from("out.hgrm")));
        assert_eq!(cli.plot, Some(PathBuf::from("out.svg")));
        assert_eq!(cli.seed, 7);
        // Bad values of the new options are usage errors (exit status 2) that say what is wrong.
        for (bad, says) in [
            (&["--mix", "sale=70,refund=30"][..], "unknown request type 'refund'"),
            (&["--mix", "sale=x"], "bad weight 'x'"),
            (&["--mix", "sale=0,load=0"], "every weight"),
            (&["--skew", "zipf:0"], "out of range"),
            (&["--skew", "zipf:abc"], "not a number"),
            (&["--skew", "pareto:1"], "unknown skew"),
            (&["--rate", "0"], "invalid rate"),
            (&["--rate", "fast"], "invalid rate"),
            (&["--methods", "cash,bitcoin"], "unknown payment method 'bitcoin'"),
            (&["--methods", "cash,,wechat"], "empty entry"),
            (&["--methods", "wechat,cash,wechat"], "'wechat' appears twice"),
        ] {
            let mut args = vec!["loadgen", "--addr", "x:1", "--terminals", "1", "--window", "1"];
            args.extend(["--duration-s", "1", "--cards", "1"]);
            args.extend_from_slice(bad);
            let error = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
            assert!(error.to_string().contains(says), "{bad:?}: {error}");
        }
        for bad in [
            &["--window", "0"][..],
            &["--window", "1025"],
            &["--terminals", "0"],
            &["--first-card", "1234567"],
            &["--store", "0"],
        ] {
            let mut args = vec!["loadgen", "--addr", "x:1", "--terminals", "1", "--window", "1"];
            args.extend(["--duration-s", "1", "--cards", "1"]);
            args.extend_from_slice(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        // A range that would grow a digit is refused.
        let cli = Cli::try_parse_from([
            "loadgen",
            "--addr",
            "x:1",
            "--terminals",
            "1",
            "--window",
            "1",
            "--duration-s",
            "1",
            "--cards",
            "11",
            "--first-card",
            "99999990",
        ])
        .unwrap();
        assert!(cli.check().is_err());
    }

    #[test]
    fn prng_stays_in_range_reaches_every_value_and_repeats_per_seed() {
        let mut rng = XorShift::new(1, 0);
        let mut seen = [false; 100];
        for _ in 0..100_000 {
            let amount = rng.in_range(SALE_MIN_MINOR, SALE_MAX_MINOR);
            assert!((1..=100).contains(&amount));
            seen[amount as usize - 1] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let mut one = XorShift::new(1, 0);
        for _ in 0..10_000 {
            assert_eq!(one.below(1), 0);
            assert!(one.below(7) < 7);
        }
        // Same seed and stream: the same sequence; another stream or seed: another one.
        let first_eight = |seed, stream| {
            let mut r = XorShift::new(seed, stream);
            (0..8).map(|_| r.next_u64()).collect::<Vec<u64>>()
        };
        let (a, b, c, d) = (first_eight(1, 3), first_eight(1, 3), first_eight(1, 4), first_eight(2, 3));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        // Seed 0 is fine too (the state is never all zero).
        let mut zero = XorShift::new(0, u64::MAX);
        assert_ne!(zero.next_u64(), zero.next_u64());
        // Roughly uniform over cards: each of 10 buckets gets 10% +- 1%.
        let mut rng = XorShift::new(7, 0);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[rng.below(10) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (9_000..=11_000).contains(&n)), "{buckets:?}");
    }

    fn generator(mix: &str, holds: Option<OpenHolds>) -> LoadGenerator {
        LoadGenerator {
            rng: XorShift::new(1, 0),
            mix: parse_mix(mix).unwrap(),
            cards: CardChoice::new(1_000, Skew::Uniform).unwrap(),
            first_card: 62_008_800,
            holds,
            methods: Methods::default(),
        }
    }

    #[test]
    fn requests_carry_what_their_tags_say() {
        let mut all = generator("sale=1,load=1,hold=1,balance=1", None);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let (request, tag) = all.next_request();
            seen[tag.kind as usize] += 1;
            assert_eq!(request.msg_type(), tag.kind.msg_type());
            assert_eq!(request.card(), Some(CardNo(62_008_800 + u64::from(tag.card))));
            assert!(tag.card < 1_000 && !tag.instead_of_capture);
            match request {
                Request::Sale { amount_minor, category, flags, .. } => {
                    assert!((1..=100).contains(&amount_minor) && amount_minor == i64::from(tag.amount));
                    assert_eq!((category, flags), (Category::Retail as u8, 0));
                }
                Request::Load { amount_minor, method, .. } => {
                    assert!((100..=10_000).contains(&amount_minor) && amount_minor % 100 == 0);
                    assert_eq!(amount_minor, i64::from(tag.amount));
                    assert_eq!(method, PaymentMethod::Cash as u8);
                }
                Request::Hold { amount_minor, category, .. } => {
                    assert!((1..=500).contains(&amount_minor) && amount_minor == i64::from(tag.amount));
                    assert_eq!(category, Category::Room as u8);
                }
                Request::Balance { .. } => assert_eq!(tag.amount, 0),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen[..3].iter().chain(&seen[4..]).all(|&n| (2_300..2_700).contains(&n)), "{seen:?}");
        assert_eq!(seen[Kind::Capture as usize], 0);
    }

    #[test]
    fn captures_take_the_terminals_own_open_holds() {
        let holds: OpenHolds = Arc::new(Mutex::new(VecDeque::new()));
        let mut captures = generator("capture=1", Some(Arc::clone(&holds)));
        // No open hold: a sale instead.
        let (request, tag) = captures.next_request();
        assert!(matches!(request, Request::Sale { .. }) && tag.kind == Kind::Sale && tag.instead_of_capture);
        {
            let mut open = holds.lock().unwrap();
            remember_hold(&mut open, OpenHold { card: 7, txn_id: 70, amount: 500 });
            remember_hold(&mut open, OpenHold { card: 8, txn_id: 80, amount: 1 });
        }
        // Oldest first, for the held amount or up to a tenth less, on the hold's card.
        let (request, tag) = captures.next_request();
        let Request::Capture { card, hold_txn_id, amount_minor } = request else { panic!("{request:?}") };
        assert_eq!((card, hold_txn_id), (CardNo(62_008_807), 70));
        assert!((450..=500).contains(&amount_minor), "{amount_minor}");
        let expected = LoadTag {
            kind: Kind::Capture,
            instead_of_capture: false,
            card: 7,
            amount: amount_minor as u32,
            hold_amount: 500,
            method: None,
        };
        assert_eq!(tag, expected);
        let (request, tag) = captures.next_request();
        assert_eq!(request, Request::Capture { card: CardNo(62_008_808), hold_txn_id: 80, amount_minor: 1 });
        assert_eq!((tag.amount, tag.hold_amount), (1, 1));
        assert!(holds.lock().unwrap().is_empty());
        // A full queue forgets its oldest hold.
        let mut open = VecDeque::new();
        for txn_id in 0..OPEN_HOLDS_PER_TERMINAL as u64 + 3 {
            remember_hold(&mut open, OpenHold { card: 1, txn_id, amount: 1 });
        }
        assert_eq!(open.len(), OPEN_HOLDS_PER_TERMINAL);
        assert_eq!(open.front().unwrap().txn_id, 3);
    }

    #[test]
    fn unanswered_requests_widen_the_expected_balances() {
        let mut unknown = Unknown::default();
        let tag = |kind, amount, hold_amount| LoadTag {
            kind,
            instead_of_capture: false,
            card: 0,
            amount,
            hold_amount,
            method: (kind == Kind::Load).then_some(PaymentMethod::Cash),
        };
        unknown.add(&tag(Kind::Sale, 30, 0));
        unknown.add(&tag(Kind::Load, 500, 0));
        unknown.add(&tag(Kind::Hold, 40, 0));
        unknown.add(&tag(Kind::Capture, 90, 100));
        unknown.add(&tag(Kind::Balance, 0, 0));
        assert_eq!(unknown, Unknown { value_down: 120, value_up: 500, held_down: 100, held_up: 40 });
    }

    #[test]
    fn sample_is_every_card_or_an_even_spread() {
        let all = Sample::new(1_000, VERIFY_SAMPLE);
        assert_eq!(all.size, 1_000);
        assert_eq!((all.card_index(0), all.card_index(999)), (0, 999));
        assert_eq!(all.slot_of(999), Some(999));
        assert_eq!(all.slot_of(1_000), None);

        let spread = Sample::new(250_001, 100_000);
        assert_eq!(spread.size, 100_000);
        assert_eq!(spread.card_index(0), 0);
        assert!(spread.card_index(99_999) < 250_001);
        let mut members = 0;
        for index in 0..250_001 {
            if let Some(slot) = spread.slot_of(index) {
                assert_eq!(spread.card_index(slot), index);
                members += 1;
            }
        }
        assert_eq!(members, 100_000);
        for slot in [0, 1, 2, 49_999, 99_999] {
            assert_eq!(spread.slot_of(spread.card_index(slot)), Some(slot));
        }
        let huge = Sample::new(1_000_000_000, 100_000);
        assert_eq!(huge.card_index(1), 10_000);
        assert_eq!(huge.slot_of(10_000), Some(1));
        assert_eq!(huge.slot_of(10_001), None);
    }

    #[test]
    fn summary_is_one_json_line() {
        let summary = Summary {
            tps: 51_234.567,
            approved: 256_000,
            declined: 173,
            errors: 0,
            p50_us: 412,
            p99_us: 1_903,
            p999_us: 4_511,
            max_us: 12_007,
            batches: None,
            finance: None,
            verified: true,
        };
        assert_eq!(
            summary.json(),
            "{\"tps\":51234.6,\"approved\":256000,\"declined\":173,\"errors\":0,\"p50_us\":412,\
             \"p99_us\":1903,\"p999_us\":4511,\"max_us\":12007,\"verified\":true}"
        );
        let nothing = Summary { tps: f64::NAN, verified: false, ..summary.clone() };
        assert!(nothing.json().starts_with("{\"tps\":0.0,"));
        assert!(nothing.json().ends_with(",\"verified\":false}"));
        // With --batch-totals, the batches before the verdict.
        let batches = BatchCounts { in_balance: 46, out_of_balance: 1, declined: 0, skipped: 3, failed: 0 };
        let with_batches = Summary { batches: Some(batches), verified: false, ..summary.clone() };
        assert!(
            with_batches.json().ends_with(
                ",\"max_us\":12007,\"batches_in_balance\":46,\"batches_out_of_balance\":1,\"batches_declined\":0,\
                 \"batches_skipped\":3,\"batches_failed\":0,\"verified\":false}"
            ),
            "{}",
            with_batches.json()
        );
        // With --finance-out, the money added, or null when the file was not written.
        let added = Summary { finance: Some(FinanceOutcome::Added(301_234)), ..summary.clone() };
        assert!(added.json().ends_with(",\"max_us\":12007,\"collected_minor\":301234,\"verified\":true}"));
        let both = Summary { finance: Some(FinanceOutcome::Added(0)), ..with_batches.clone() };
        assert!(both.json().ends_with(",\"batches_failed\":0,\"collected_minor\":0,\"verified\":false}"));
        let not_written = Summary { finance: Some(FinanceOutcome::NotWritten("lost".into())), ..summary.clone() };
        assert!(not_written.json().ends_with(",\"collected_minor\":null,\"verified\":true}"));
        assert_eq!(rate(10, 0.0), 0.0);
        assert_eq!(rate(10, 2.0), 5.0);
    }

    /// The terminal ids `main` would give a run started now.
    fn now() -> Terminals {
        Terminals { base: run_terminal_block(unix_ms_now()) }
    }

    /// The terminal ids of a run started `seconds` after `unix_ms`.
    fn later(unix_ms: i64, seconds: i64) -> Terminals {
        Terminals { base: run_terminal_block(unix_ms + seconds * 1000) }
    }

    async fn run(cli: &Cli) -> Result<Summary, Failure> {
        run_detailed(cli, now()).await.map(|report| report.summary)
    }

    /// 4 terminals for 1 s on 300 cards from 62008800, window 8, unless `extra` names others.
    /// The admin credential of every miniature switch in these tests.
    fn test_admin() -> Credential {
        Credential { terminal_id: 1, key: TerminalKey::from_bytes([0x5a; 32]) }
    }

    /// A credential file holding [`test_admin`], written once for the whole test run.
    fn test_admin_file() -> &'static str {
        static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        PATH.get_or_init(|| {
            let path = std::env::temp_dir().join(format!("loadgen-test-admin-{}.key", std::process::id()));
            std::fs::write(&path, test_admin().to_text()).unwrap();
            path.to_str().unwrap().to_string()
        })
    }

    /// A miniature switch with `faults`, serving on loopback; its address.
    async fn mini(faults: Faults) -> String {
        MiniSwitch::with_faults(test_admin(), faults).start().await.unwrap()
    }

    fn cli(addr: &str, extra: &[&str]) -> Cli {
        let mut args = vec![
            "loadgen",
            "--addr",
            addr,
            "--duration-s",
            "1",
            "--cards",
            "300",
            "--admin-key-file",
            test_admin_file(),
        ];
        if !extra.contains(&"--terminals") {
            args.extend_from_slice(&["--terminals", "4"]);
        }
        if !extra.contains(&"--window") {
            args.extend_from_slice(&["--window", "8"]);
        }
        if !extra.contains(&"--first-card") {
            args.extend_from_slice(&["--first-card", "62008800"]);
        }
        args.extend_from_slice(extra);
        Cli::try_parse_from(args).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_set_up_sell_and_verify_against_a_switch() {
        let addr = mini(Faults::default()).await;
        let t0 = unix_ms_now();
        let first = run_detailed(&cli(&addr, &["--setup"]), later(t0, 0)).await.ok().unwrap().summary;
        assert!(first.approved > 100, "{first:?}");
        assert_eq!((first.declined, first.errors), (0, 0), "{first:?}");
        assert!(first.verified, "{first:?}");
        assert!(first.p50_us <= first.p99_us && first.p99_us <= first.max_us && first.max_us > 0);
        assert!(first.tps > 0.0);
        // Again with --setup: the range and the cards are there; balances are read first.
        let extra = ["--setup", "--seed", "2", "--window", "1"];
        let again = run_detailed(&cli(&addr, &extra), later(t0, 1)).await.ok().unwrap().summary;
        assert!(again.verified && again.errors == 0 && again.approved > 0, "{again:?}");
        // Without setup, on cards of which some do not exist: declined, still verified.
        let partly = run_detailed(&cli(&addr, &["--first-card", "62008900"]), later(t0, 2)).await.ok().unwrap().summary;
        assert!(partly.verified && partly.errors == 0 && partly.declined > 0, "{partly:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_given_twice_fail_the_verification() {
        let addr = mini(Faults { repeat_every: Some(97), ..Faults::default() }).await;
        let summary = run(&cli(&addr, &["--setup"])).await.ok().unwrap();
        assert!(!summary.verified, "{summary:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_a_second_apart_reuse_no_trace_numbers() {
        // Many requests per terminal and second: under the old per-second stan offsets the
        // second run reused the first one's stans.
        let addr = mini(Faults::default()).await;
        let t0 = unix_ms_now();
        let extra = ["--setup", "--terminals", "1", "--window", "64", "--mix", FULL_MIX];
        let first = run_detailed(&cli(&addr, &extra), later(t0, 0)).await.ok().unwrap().summary;
        assert!(first.verified && first.errors == 0 && first.approved > 1_000, "{first:?}");
        let extra = ["--terminals", "1", "--window", "64", "--mix", FULL_MIX, "--seed", "2"];
        let next = run_detailed(&cli(&addr, &extra), later(t0, 1)).await.ok().unwrap();
        assert!(next.summary.verified && next.summary.errors == 0, "{next:?}");
        assert_eq!(next.summary.declined, 0, "{next:?}");
        // The mock declines a reused (terminal, stan): a run in the block of the setup run has
        // its balance inquiries and postings declined `trace_reused` and fails, as it should.
        let same = run_detailed(&cli(&addr, &extra), later(t0, 0)).await.ok().unwrap().summary;
        assert!(!same.verified && same.declined > 0, "{same:?}");
    }

    #[test]
    fn terminal_ids_stay_in_the_block_and_apart() {
        for base in [run_terminal_block(0), run_terminal_block(-1), now().base] {
            let terminals = Terminals { base };
            let mut ids: Vec<u32> = (0..SETUP_CONNECTIONS).map(|j| terminals.setup(j)).collect();
            ids.extend((0..MAX_TERMINALS).map(|i| terminals.load(i)));
            assert_eq!(ids.len() as u32, RUN_BLOCK_TERMINALS);
            assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "distinct, in order");
            assert_eq!((ids[0], ids[ids.len() - 1]), (base, base + RUN_BLOCK_TERMINALS - 1));
            assert!(base >= RUN_BLOCK_TERMINALS);
        }
        let text = Terminals { base: 1_234_500_000 }.describe(8);
        assert!(text.contains("1234500000..=1234500011"), "{text}");
        assert!(text.contains("setup and verification 1234500000..=1234500003"), "{text}");
        assert!(text.contains("load 1234500004..=1234500011"), "{text}");
        assert!(text.contains("stans from 1"), "{text}");
        // More terminals than the block holds is a usage error.
        let args = |n: &str| {
            let mut args = vec!["loadgen", "--addr", "x:1", "--window", "1", "--duration-s", "1"];
            args.extend(["--cards", "1", "--terminals"]);
            Cli::try_parse_from([args, vec![n]].concat()).unwrap()
        };
        assert!(args("99996").check().is_ok());
        let error = args("99997").check().unwrap_err();
        assert!(error.contains("at most 99996 terminals"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn terminals_stop_at_the_last_stan_instead_of_wrapping() {
        let addr: SocketAddr = mini(Faults::default()).await.parse().unwrap();
        let conn = open(addr, test_admin().terminal_id, 21, &test_admin()).await.ok().unwrap();
        let drain = Duration::from_secs(5);
        let pacing = Pacing { window: 8, first_stan: u32::MAX - 2, deadline: None, drain, open_loop: None };
        let generate = || Some((balance_request(CardNo(62_008_800)), 0u64));
        let replies = CardReplies { request: MsgType::Balance, answers: Vec::new(), wrong_type: 0 };
        let outcome = pipeline(conn, pacing, generate, replies).await;
        assert!(outcome.out_of_stans);
        assert_eq!((outcome.issued, outcome.replies.answers.len()), (3, 3));
        assert!(outcome.failure.is_none() && outcome.lost.is_empty() && outcome.unmatched == 0);
        // The setup and verification connections refuse a pass they have too few stans for.
        let mut admin = Admin::new(addr, "x", 21, Terminals { base: 100_000 }, test_admin());
        admin.next_stans[1] = u64::from(u32::MAX) - 1;
        assert!(matches!(admin.first_stan(1, 2), Ok(stan) if stan == u32::MAX - 1));
        assert!(matches!(admin.first_stan(1, 3), Err(Failure::Failed(text)) if text.contains("terminal 100001")));
        admin.next_stans[0] = u64::from(u32::MAX);
        assert!(matches!(admin.take_stan(0), Ok(u32::MAX)));
        assert!(admin.take_stan(0).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_answers_are_errors_but_balances_still_add_up() {
        let addr = mini(Faults { drop_every: Some(501), ..Faults::default() }).await;
        let summary = run(&cli(&addr, &["--setup"])).await.ok().unwrap();
        assert!(summary.errors > 0, "{summary:?}");
        assert!(summary.verified, "{summary:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_switch_is_reported_as_such() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        match run(&cli(&addr, &["--setup"])).await {
            Err(Failure::Unreachable(text)) => assert!(text.starts_with("cannot connect to"), "{text}"),
            _ => panic!("expected an unreachable switch"),
        }
        match run(&cli(&addr, &[])).await {
            Err(Failure::Unreachable(text)) => assert!(text.starts_with("cannot connect to"), "{text}"),
            _ => panic!("expected an unreachable switch"),
        }
    }

    const FULL_MIX: &str = "sale=50,load=20,hold=15,capture=10,balance=5";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_request_type_is_verified_against_the_balances() {
        let addr = mini(Faults::default()).await;
        let t0 = unix_ms_now();
        let first = run_detailed(&cli(&addr, &["--setup", "--mix", FULL_MIX, "--skew", "zipf:1.1"]), later(t0, 0))
            .await
            .ok()
            .unwrap();
        assert!(first.summary.verified && first.summary.errors == 0, "{first:?}");
        for kind in Kind::ALL {
            assert!(first.kinds[kind as usize].approved > 20, "{kind:?}: {first:?}");
        }
        let requests: u64 = first.kinds.iter().map(|k| k.approved + k.declined).sum();
        assert_eq!(requests, first.summary.approved + first.summary.declined);
        // Again on the same cards without setup: the open holds of the first run are read first.
        let extra = ["--mix", FULL_MIX, "--seed", "3", "--window", "2"];
        let again = run_detailed(&cli(&addr, &extra), later(t0, 1)).await.ok().unwrap();
        assert!(again.summary.verified && again.summary.errors == 0, "{again:?}");
        // Captures without holds are sales.
        let no_holds =
            run_detailed(&cli(&addr, &["--mix", "capture=1", "--seed", "4"]), later(t0, 2)).await.ok().unwrap();
        assert!(no_holds.summary.verified, "{no_holds:?}");
        assert_eq!(no_holds.captures_as_sales, no_holds.kinds[Kind::Sale as usize].approved);
        assert_eq!(no_holds.kinds[Kind::Capture as usize], KindStats::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holds_a_capture_leaves_reserved_fail_the_verification() {
        let addr = mini(Faults { captures_keep_holds: true, ..Faults::default() }).await;
        let summary = run(&cli(&addr, &["--setup", "--mix", "hold=1,capture=1"])).await.ok().unwrap();
        assert!(!summary.verified && summary.errors == 0, "{summary:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_that_credit_nothing_fail_the_verification() {
        let addr = mini(Faults { loads_credit_nothing: true, ..Faults::default() }).await;
        let summary = run(&cli(&addr, &["--setup", "--mix", "sale=1,load=1"])).await.ok().unwrap();
        assert!(!summary.verified && summary.errors == 0, "{summary:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unanswered_postings_of_every_type_still_add_up() {
        let addr = mini(Faults { drop_every: Some(211), ..Faults::default() }).await;
        let report = run_detailed(&cli(&addr, &["--setup", "--mix", FULL_MIX]), now()).await.ok().unwrap();
        assert!(report.summary.errors > 0 && report.summary.verified, "{report:?}");
        let lost: u64 = report.kinds.iter().map(|k| k.lost).sum();
        assert_eq!(lost, report.summary.errors);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_sends_at_the_rate_asked() {
        let addr = mini(Faults::default()).await;
        // 4 terminals sharing 400/s for 1 s: each is due every 10 ms, 100 times in the run.
        let report =
            run_detailed(&cli(&addr, &["--setup", "--rate", "400", "--mix", FULL_MIX]), now()).await.ok().unwrap();
        assert!(report.summary.verified && report.summary.errors == 0, "{report:?}");
        assert_eq!(report.summary.approved + report.summary.declined, 400, "{report:?}");
        assert_eq!(report.unsent, 0, "{report:?}");
        assert!(report.service.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_latency_counts_the_wait_behind_a_slow_switch() {
        // The switch answers one request per 20 ms per connection (50/s); one terminal is asked
        // for 200/s. Its requests fall ever further behind their schedule: latency from the
        // intended send time grows to most of a second, while each one's service time (from its
        // actual send, behind at most the 4 of the window) stays near 80 ms.
        let addr = MiniSwitch::with_faults(
            test_admin(),
            Faults { delay: Some(Duration::from_millis(20)), ..Faults::default() },
        )
        .start()
        .await
        .unwrap();
        let extra = ["--setup", "--terminals", "1", "--window", "4", "--rate", "200"];
        let report = run_detailed(&cli(&addr, &extra), now()).await.ok().unwrap();
        let (service_p50, ..) = report.service.unwrap();
        assert!(report.summary.verified && report.summary.errors == 0, "{report:?}");
        assert!(report.summary.p50_us > 200_000, "{report:?}");
        assert!(report.summary.max_us > 500_000, "{report:?}");
        assert!(service_p50 < 150_000, "{report:?}");
        // Fewer than a third of the 200 requests due could be sent.
        assert!(report.unsent > 100, "{report:?}");
        assert_eq!(report.summary.approved + report.unsent, 200, "{report:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pacer_releases_each_request_once_it_is_due() {
        let start = Instant::now();
        let until = Duration::from_millis(300);
        // 2 terminals sharing 100/s: every 20 ms each, the second 10 ms after the first.
        let schedules = [Schedule::new(2, 100.0, 0.0), Schedule::new(2, 100.0, 0.5)];
        let gates = [Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0))];
        let pacer =
            Pacer::spawn(start, until, schedules.iter().zip(&gates).map(|(s, g)| (*s, Arc::clone(g))).collect())
                .unwrap();
        let due = schedules[0].due_before(until);
        assert_eq!(due, 15);
        let mut lags = Vec::new();
        for k in 0..due {
            gates[0].acquire().await.unwrap().forget();
            let now = Instant::now();
            let due = start + schedules[0].due(k);
            assert!(now >= due, "request {k} released {:?} early", due - now);
            lags.push(now - due);
        }
        tokio::time::sleep_until(start + until + Duration::from_millis(100)).await;
        // Nothing due at or after the end; all of the second terminal's requests.
        assert_eq!(gates[0].available_permits(), 0);
        assert_eq!(gates[1].available_permits() as u64, schedules[1].due_before(until));
        lags.sort();
        // Far finer than the runtime's millisecond timer.
        assert!(lags[lags.len() / 2] < Duration::from_millis(1), "{lags:?}");
        drop(pacer);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_write_the_distribution_and_the_plot() {
        let addr = mini(Faults::default()).await;
        let dir = std::env::temp_dir().join(format!("loadgen-test-{}-{}", std::process::id(), unix_ms_now()));
        std::fs::create_dir_all(&dir).unwrap();
        let (hgrm, plot) = (dir.join("run.hgrm"), dir.join("run.svg"));
        let extra = ["--setup", "--hgrm", hgrm.to_str().unwrap(), "--plot", plot.to_str().unwrap()];
        let report = run_detailed(&cli(&addr, &extra), now()).await.ok().unwrap();
        assert!(report.summary.verified && !report.output_failed, "{report:?}");
        let text = std::fs::read_to_string(&hgrm).unwrap();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{text}");
        let total = report.summary.approved + report.summary.declined;
        assert!(text.contains(&format!("Total count    = {total:>12}]")), "{text}");
        let svg = std::fs::read_to_string(&plot).unwrap();
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("4 terminals × window 8, closed loop, 1 s"), "{svg}");
        std::fs::remove_dir_all(&dir).unwrap();
        // A file that cannot be created is a usage error, before anything is sent.
        let missing = dir.join("missing").join("run.hgrm");
        match run(&cli(&addr, &["--hgrm", missing.to_str().unwrap()])).await {
            Err(Failure::Usage(text)) => assert!(text.starts_with("cannot write"), "{text}"),
            _ => panic!("expected a usage error"),
        }
    }

    /// The replies of one load terminal, with nothing shared but what they need.
    fn load_replies() -> LoadReplies {
        LoadReplies {
            live: Arc::new(Live::default()),
            ledger: Arc::new(Ledger::new(Sample::new(10, 10))),
            holds: None,
            histogram: Arc::new(Mutex::new(new_histogram())),
            service_histogram: None,
            latencies: Vec::new(),
            services: Vec::new(),
            declines: Box::new([0; 256]),
            kinds: [KindStats::default(); 5],
            captures_as_sales: 0,
            wrong_type: 0,
            wrong_amount: 0,
            batch: BatchTotals::default(),
            collected: Collected::default(),
        }
    }

    /// A reply to `kind` with `code`, moving `amount_minor`.
    fn card_response(kind: Kind, code: ResponseCode, amount_minor: i64) -> Response {
        Response::Card {
            request: kind.msg_type(),
            reply: protocol::CardReply { code, txn_id: 9, amount_minor, ..protocol::CardReply::default() },
        }
    }

    /// The index of `kind`'s line in a batch.
    fn line(kind: PostingKind) -> usize {
        BATCH_KINDS.iter().position(|k| *k == kind).unwrap()
    }

    #[test]
    fn the_batch_counts_approved_postings_at_their_replies_amounts() {
        let mut replies = load_replies();
        let tag = |kind, amount| LoadTag {
            kind,
            instead_of_capture: false,
            card: 1,
            amount,
            hold_amount: 0,
            method: (kind == Kind::Load).then_some(PaymentMethod::Cash),
        };
        let ms = Duration::from_millis(1);
        let mut reply = |tag: LoadTag, response: Response| replies.reply(tag, ms, ms, &response);
        // Under a catalog's discount a sale posts less than asked: the reply's amount counts.
        reply(tag(Kind::Sale, 100), card_response(Kind::Sale, ResponseCode::Approved, 85));
        reply(tag(Kind::Load, 500), card_response(Kind::Load, ResponseCode::Approved, 500));
        reply(tag(Kind::Load, 700), card_response(Kind::Load, ResponseCode::LoadAboveMaximum, 0));
        reply(tag(Kind::Hold, 40), card_response(Kind::Hold, ResponseCode::Approved, 40));
        reply(tag(Kind::Capture, 36), card_response(Kind::Capture, ResponseCode::Approved, 36));
        reply(tag(Kind::Balance, 0), card_response(Kind::Balance, ResponseCode::Approved, 0));
        // A capture sent as a sale is a sale.
        let as_sale = LoadTag { instead_of_capture: true, ..tag(Kind::Sale, 7) };
        reply(as_sale, card_response(Kind::Sale, ResponseCode::Approved, 7));
        let mut expected = BatchTotals::default();
        (expected.counts[line(PostingKind::Sale)], expected.amounts_minor[line(PostingKind::Sale)]) = (2, 92);
        (expected.counts[line(PostingKind::Load)], expected.amounts_minor[line(PostingKind::Load)]) = (1, 500);
        (expected.counts[line(PostingKind::Hold)], expected.amounts_minor[line(PostingKind::Hold)]) = (1, 40);
        (expected.counts[line(PostingKind::Capture)], expected.amounts_minor[line(PostingKind::Capture)]) = (1, 36);
        assert_eq!(replies.batch, expected);
        assert_eq!((replies.kinds[Kind::Balance as usize].approved, replies.wrong_amount), (1, 1));
        for kind in Kind::ALL {
            assert_eq!(posting_kind(kind).is_none(), kind == Kind::Balance, "{kind:?}");
        }

        // All answered: the batch is known, and goes with the stan after the last one used.
        let outcome = |replies, issued, lost: Vec<LoadTag>| Outcome {
            replies,
            issued,
            unsent: 0,
            out_of_stans: false,
            unmatched: 0,
            error_frames: 0,
            first_error_frame: None,
            lost,
            failure: None,
            last_reply: None,
        };
        let known = TerminalBatch::of(100_004, 20_261_122, &outcome(replies, 7, Vec::new()));
        assert_eq!(
            known,
            TerminalBatch {
                terminal_id: 100_004,
                business_date: 20_261_122,
                totals: expected,
                next_stan: Some(8),
                unknowable: false
            }
        );
        // A request without an answer, or an answer of another type, may or may not have posted.
        let lost = TerminalBatch::of(100_004, 20_261_122, &outcome(load_replies(), 7, vec![tag(Kind::Sale, 5)]));
        assert!(lost.unknowable, "{lost:?}");
        let mut wrong = load_replies();
        wrong.reply(tag(Kind::Sale, 5), ms, ms, &card_response(Kind::Load, ResponseCode::Approved, 5));
        assert_eq!((wrong.wrong_type, wrong.batch), (1, BatchTotals::default()));
        assert!(TerminalBatch::of(100_004, 20_261_122, &outcome(wrong, 1, Vec::new())).unknowable);
        // A terminal that used every stan has none left for its batch.
        let spent = TerminalBatch::of(100_004, 20_261_122, &outcome(load_replies(), u64::from(u32::MAX), Vec::new()));
        assert_eq!(spent.next_stan, None);
        assert!(TerminalBatch::lost(100_005, 20_261_122).unknowable);
    }

    #[test]
    fn batches_are_judged_by_the_switchs_figures_and_date() {
        let mut ours = BatchTotals::default();
        ours.add(PostingKind::Sale, 150);
        ours.add(PostingKind::Sale, 25);
        ours.add(PostingKind::Load, 10_000);
        let answer = |code, in_balance, business_date, totals| {
            Response::BatchTotals(BatchTotalsReply { code, in_balance, business_date, totals })
        };
        let approved =
            |in_balance, business_date, totals| answer(ResponseCode::Approved, in_balance, business_date, totals);
        assert_eq!(judge_batch(&ours, 20_261_122, &approved(1, 20_261_122, ours)), BatchOutcome::InBalance);
        assert_eq!(judge_batch(&ours, 0, &approved(1, 20_261_122, ours)), BatchOutcome::InBalance);
        let mut theirs = ours;
        theirs.add(PostingKind::Sale, 5);
        theirs.add(PostingKind::Hold, 40);
        let off =
            BatchTotalsReply { code: ResponseCode::Approved, in_balance: 0, business_date: 20_261_122, totals: theirs };
        assert_eq!(judge_batch(&ours, 20_261_122, &Response::BatchTotals(off)), BatchOutcome::OutOfBalance(off));
        assert_eq!(
            batch_differences(&ours, &theirs),
            "sale 2 for 1.75 here, 3 for 1.80 at the switch; hold 0 for 0.00 here, 1 for 0.40 at the switch"
        );
        assert_eq!(batch_differences(&ours, &ours), "");
        // The switch contradicting itself, or answering for another date, is not in balance.
        for contradiction in
            [approved(1, 20_261_122, theirs), approved(0, 20_261_122, ours), approved(1, 20_261_123, ours)]
        {
            assert!(
                matches!(judge_batch(&ours, 20_261_122, &contradiction), BatchOutcome::OutOfBalance(_)),
                "{contradiction:?}"
            );
        }
        let declined = answer(ResponseCode::NotSignedOn, 0, 0, BatchTotals::default());
        assert_eq!(judge_batch(&ours, 20_261_122, &declined), BatchOutcome::Declined(ResponseCode::NotSignedOn));
        let wrong = card_response(Kind::Balance, ResponseCode::Approved, 0);
        assert_eq!(judge_batch(&ours, 20_261_122, &wrong), BatchOutcome::Failed("answered with balance_reply".into()));
        let counts = BatchCounts { in_balance: 3, skipped: 2, ..BatchCounts::default() };
        assert!(counts.verified());
        for bad in [
            BatchCounts { out_of_balance: 1, ..counts },
            BatchCounts { declined: 1, ..counts },
            BatchCounts { failed: 1, ..counts },
        ] {
            assert!(!bad.verified(), "{bad:?}");
        }
    }

    /// The business date the miniature switch gives every sign-on.
    const MINI_BUSINESS_DATE: u32 = 20_261_122;

    /// Faults of a [`BatchSwitch`], on the postings of the load terminals; all off by default.
    #[derive(Clone, Copy, Debug, Default)]
    struct BatchFaults {
        /// Every n-th posting is carried out but not answered.
        drop_every: Option<u64>,
        /// Every n-th posting is answered twice.
        repeat_every: Option<u64>,
        /// Every n-th posting is carried out but answered `system_busy`.
        decline_every: Option<u64>,
    }

    /// A miniature switch that also keeps every terminal's batch and answers `batch_totals`,
    /// which the library's [`MiniSwitch`] declines: everything else is its answer.
    struct BatchSwitch {
        mini: MiniSwitch,
        admin: Credential,
        faults: BatchFaults,
        postings: AtomicU64,
        /// Per terminal, its approved postings as the switch journals them.
        batches: Mutex<HashMap<u32, BatchTotals>>,
        batch_requests: AtomicU64,
        /// The store each terminal signed on at.
        stores: Mutex<HashMap<u32, u32>>,
        /// The money its loads and card sales collected, by (store, payment method): what
        /// settle counts as collected.
        collected: Mutex<BTreeMap<(u32, PaymentMethod), i64>>,
    }

    impl BatchSwitch {
        fn new(faults: BatchFaults) -> Arc<BatchSwitch> {
            Arc::new(BatchSwitch {
                mini: MiniSwitch::new(test_admin()),
                admin: test_admin(),
                faults,
                postings: AtomicU64::new(0),
                batches: Mutex::default(),
                batch_requests: AtomicU64::new(0),
                stores: Mutex::default(),
                collected: Mutex::default(),
            })
        }

        /// The responses to one request: none, one or two.
        fn answer(&self, header: Header, request: Request) -> Vec<Response> {
            match request {
                // Every terminal's key is the one derived from the admin's, as loadgen
                // provisions them.
                Request::ProvisionTerminal { terminal_id, .. } => {
                    let reply = protocol::TerminalReply { code: ResponseCode::Approved, terminal_id, enabled: 1 };
                    return vec![Response::Terminal { request: MsgType::ProvisionTerminal, reply }];
                }
                Request::BatchTotals { business_date, totals } => {
                    self.batch_requests.fetch_add(1, Ordering::Relaxed);
                    if business_date != 0 && business_date != MINI_BUSINESS_DATE {
                        return vec![Response::decline(MsgType::BatchTotals, ResponseCode::InvalidField)];
                    }
                    let theirs = self.batches.lock().unwrap().get(&header.terminal_id).copied().unwrap_or_default();
                    return vec![Response::BatchTotals(BatchTotalsReply {
                        code: ResponseCode::Approved,
                        in_balance: u8::from(totals == theirs),
                        business_date: MINI_BUSINESS_DATE,
                        totals: theirs,
                    })];
                }
                Request::SignOn { store_id } => {
                    self.stores.lock().unwrap().insert(header.terminal_id, store_id);
                }
                _ => {}
            }
            let paid_by = match request {
                Request::Load { method, .. } | Request::SellCard { method, .. } => PaymentMethod::from_u8(method),
                _ => None,
            };
            let response = self.mini.handle(header, request);
            let Response::Card { request: msg_type, reply } = &response else { return vec![response] };
            let kind = match msg_type {
                MsgType::SellCard => PostingKind::SellCard,
                MsgType::Sale => PostingKind::Sale,
                MsgType::Load => PostingKind::Load,
                MsgType::Hold => PostingKind::Hold,
                MsgType::Capture => PostingKind::Capture,
                _ => return vec![response],
            };
            if !reply.code.is_approved() {
                return vec![response];
            }
            self.batches.lock().unwrap().entry(header.terminal_id).or_default().add(kind, reply.amount_minor);
            if let Some(method) = paid_by {
                let store = self.stores.lock().unwrap()[&header.terminal_id];
                *self.collected.lock().unwrap().entry((store, method)).or_default() += reply.amount_minor;
            }
            if kind == PostingKind::SellCard {
                return vec![response];
            }
            let n = self.postings.fetch_add(1, Ordering::Relaxed) + 1;
            let every = |k: Option<u64>| k.is_some_and(|k| n.is_multiple_of(k));
            if every(self.faults.drop_every) {
                vec![]
            } else if every(self.faults.repeat_every) {
                vec![response.clone(), response]
            } else if every(self.faults.decline_every) {
                vec![Response::decline(*msg_type, ResponseCode::SystemBusy)]
            } else {
                vec![response]
            }
        }

        /// Answers one connection, each reply signed with the key of the terminal it is for.
        async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream) {
            let mut framed = tokio_util::codec::Framed::new(stream, FrameCodec::default());
            while let Some(Ok(frame)) = framed.next().await {
                let Message::Request(request) = frame.message else { return };
                framed.codec_mut().set_key(terminal_key(&self.admin, frame.header.terminal_id));
                let header = Header { flags: 0, ..frame.header };
                for response in self.answer(frame.header, request) {
                    if framed.send(Frame { header, message: Message::Response(response) }).await.is_err() {
                        return;
                    }
                }
            }
        }

        /// Serves on loopback in the background; its address.
        async fn start(self: &Arc<Self>) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let switch = Arc::clone(self);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(Arc::clone(&switch).connection(stream));
                }
            });
            addr
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_terminals_batch_is_in_balance_when_the_switch_counts_what_it_saw() {
        let switch = BatchSwitch::new(BatchFaults::default());
        let addr = switch.start().await;
        let report =
            run_detailed(&cli(&addr, &["--setup", "--mix", FULL_MIX, "--batch-totals"]), now()).await.ok().unwrap();
        let summary = &report.summary;
        assert!(summary.verified && summary.errors == 0, "{report:?}");
        assert_eq!(summary.batches, Some(BatchCounts { in_balance: 4, ..BatchCounts::default() }), "{report:?}");
        assert_eq!(switch.batch_requests.load(Ordering::Relaxed), 4);
        assert!(summary.json().contains(",\"batches_in_balance\":4,\"batches_out_of_balance\":0,"));
        // Without the option, no batch is sent and the summary line is as it was.
        let before = switch.batch_requests.load(Ordering::Relaxed);
        let plain = run_detailed(&cli(&addr, &["--mix", FULL_MIX, "--seed", "2"]), later(unix_ms_now(), 1))
            .await
            .ok()
            .unwrap()
            .summary;
        assert!(plain.verified && plain.batches.is_none() && !plain.json().contains("batches"), "{plain:?}");
        assert_eq!(switch.batch_requests.load(Ordering::Relaxed), before);

        // A posting answered twice is one posting: the batches still balance (the repeated
        // answers fail the run's verification on their own).
        let switch = BatchSwitch::new(BatchFaults { repeat_every: Some(97), ..BatchFaults::default() });
        let addr = switch.start().await;
        let summary = run(&cli(&addr, &["--setup", "--mix", FULL_MIX, "--batch-totals"])).await.ok().unwrap();
        assert!(!summary.verified, "{summary:?}");
        assert_eq!(summary.batches, Some(BatchCounts { in_balance: 4, ..BatchCounts::default() }), "{summary:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_the_switch_counts_otherwise_fail_the_run() {
        // Postings carried out but answered as declined: the switch counts what loadgen did not.
        let switch = BatchSwitch::new(BatchFaults { decline_every: Some(101), ..BatchFaults::default() });
        let addr = switch.start().await;
        let summary = run(&cli(&addr, &["--setup", "--mix", FULL_MIX, "--batch-totals"])).await.ok().unwrap();
        let batches = summary.batches.unwrap();
        assert!(!summary.verified && batches.out_of_balance > 0, "{summary:?}");
        assert_eq!(batches.in_balance + batches.out_of_balance, 4, "{summary:?}");
        // A switch that declines every batch (the library's miniature one knows none).
        let addr = mini(Faults::default()).await;
        let summary = run(&cli(&addr, &["--setup", "--batch-totals"])).await.ok().unwrap();
        assert!(!summary.verified && summary.errors == 0, "{summary:?}");
        assert_eq!(summary.batches, Some(BatchCounts { declined: 4, ..BatchCounts::default() }), "{summary:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn terminals_with_unanswered_postings_send_no_batch() {
        let switch = BatchSwitch::new(BatchFaults { drop_every: Some(211), ..BatchFaults::default() });
        let addr = switch.start().await;
        let summary = run(&cli(&addr, &["--setup", "--mix", FULL_MIX, "--batch-totals"])).await.ok().unwrap();
        let batches = summary.batches.unwrap();
        assert!(summary.errors > 0 && batches.skipped > 0, "{summary:?}");
        assert_eq!(batches.in_balance + batches.skipped, 4, "{summary:?}");
        assert_eq!(switch.batch_requests.load(Ordering::Relaxed), batches.in_balance);
        // What could not be known is not held against the run: its balances still add up.
        assert!(summary.verified, "{summary:?}");
    }

    #[test]
    fn methods_are_drawn_per_request_by_the_seed_and_spread_over_the_list() {
        let four = parse_methods("cash,wechat,bank_card,alipay").unwrap();
        assert_eq!(four.to_string(), "cash,wechat,bank_card,alipay");
        assert_eq!(parse_methods(" Cash ").unwrap(), Methods::default());
        for (bad, says) in [
            ("", "empty entry"),
            ("cash,", "empty entry"),
            ("barter", "unknown payment method 'barter' (expected one of cash, bank_card"),
            ("cash,cash", "'cash' appears twice"),
        ] {
            let error = parse_methods(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        // Loads: each method a quarter of the time, the same ones again for the same seed.
        let loads = |methods: &Methods, seed| {
            let mut generator =
                LoadGenerator { rng: XorShift::new(seed, 0), methods: methods.clone(), ..generator("load=1", None) };
            (0..10_000)
                .map(|_| {
                    let (request, tag) = generator.next_request();
                    let Request::Load { method, amount_minor, .. } = request else { panic!("{request:?}") };
                    assert_eq!(Some(method), tag.method.map(|m| m as u8));
                    (PaymentMethod::from_u8(method).unwrap(), amount_minor)
                })
                .collect::<Vec<_>>()
        };
        let drawn = loads(&four, 1);
        assert_eq!(drawn, loads(&four, 1));
        assert_ne!(drawn, loads(&four, 2));
        for method in &four.0 {
            let n = drawn.iter().filter(|(m, _)| m == method).count();
            assert!((2_300..=2_700).contains(&n), "{method}: {n}");
        }
        // One method takes no draw: the requests are those loadgen sent before --methods, by
        // the same steps of the generator.
        let mut generator = generator("sale=1,load=1", None);
        let mut rng = XorShift::new(1, 0);
        for _ in 0..1_000 {
            let kind = generator.mix.pick(rng.below(2));
            let card = CardNo(62_008_800 + rng.below(1_000));
            let expected = match kind {
                Kind::Load => Request::Load {
                    card,
                    amount_minor: rng.in_range(LOAD_MIN_YUAN, LOAD_MAX_YUAN) as i64 * 100,
                    method: PaymentMethod::Cash as u8,
                },
                _ => Request::Sale {
                    card,
                    amount_minor: rng.in_range(SALE_MIN_MINOR, SALE_MAX_MINOR) as i64,
                    category: Category::Retail as u8,
                    flags: 0,
                    verification: Verification::NONE,
                },
            };
            assert_eq!(generator.next_request().0, expected);
        }
        // Card sales: a method per card, from the seed and the card alone.
        let sell = sell_request(four.clone(), 7, CardNo(62_008_800));
        let mut per_method = BTreeMap::new();
        for index in 0..10_000 {
            let Request::SellCard { method, amount_minor, .. } = sell(CardNo(62_008_800 + index)) else { panic!() };
            assert_eq!(amount_minor, OPENING_MINOR);
            assert_eq!(method, four.for_card_sale(7, index) as u8);
            *per_method.entry(method).or_insert(0) += 1;
        }
        assert_eq!(per_method.len(), 4);
        assert!(per_method.values().all(|n| (2_300..=2_700).contains(n)), "{per_method:?}");
        assert!((0..100).any(|index| four.for_card_sale(7, index) != four.for_card_sale(8, index)));
        assert!((0..100).all(|index| Methods::default().for_card_sale(7, index) == PaymentMethod::Cash));
        assert!(!four.some_need_confirmation());
        assert!(parse_methods("cash,cheque").unwrap().some_need_confirmation());
    }

    #[test]
    fn the_account_counts_what_settle_counts_as_money_collected() {
        let mut replies = load_replies();
        let ms = Duration::from_millis(1);
        let tag =
            |kind, amount, method| LoadTag { kind, instead_of_capture: false, card: 1, amount, hold_amount: 0, method };
        let (cash, wechat) = (Some(PaymentMethod::Cash), Some(PaymentMethod::Wechat));
        // A load's reply reports the cash paid; the bonus it earned (in the balances) was given,
        // not collected.
        let mut with_bonus = card_response(Kind::Load, ResponseCode::Approved, 50_000);
        if let Response::Card { reply, .. } = &mut with_bonus {
            (reply.cash_minor, reply.bonus_minor) = (50_000, 2_500);
        }
        replies.reply(tag(Kind::Load, 50_000, cash), ms, ms, &with_bonus);
        replies.reply(tag(Kind::Load, 700, wechat), ms, ms, &card_response(Kind::Load, ResponseCode::Approved, 700));
        replies.reply(tag(Kind::Load, 900, wechat), ms, ms, &card_response(Kind::Load, ResponseCode::CardLost, 0));
        // Spending and holds collect nothing.
        replies.reply(tag(Kind::Sale, 85, None), ms, ms, &card_response(Kind::Sale, ResponseCode::Approved, 85));
        replies.reply(tag(Kind::Hold, 40, None), ms, ms, &card_response(Kind::Hold, ResponseCode::Approved, 40));
        replies.reply(tag(Kind::Capture, 36, None), ms, ms, &card_response(Kind::Capture, ResponseCode::Approved, 36));
        replies.reply(tag(Kind::Balance, 0, None), ms, ms, &card_response(Kind::Balance, ResponseCode::Approved, 0));
        let by_method = BTreeMap::from([(PaymentMethod::Cash, 50_000), (PaymentMethod::Wechat, 700)]);
        assert_eq!(replies.collected, Collected { by_method: by_method.clone(), unknown: 0 });
        // A load answered with another type may or may not have posted; a sale so answered
        // collected nothing either way.
        replies.reply(tag(Kind::Sale, 5, None), ms, ms, &card_response(Kind::Load, ResponseCode::Approved, 5));
        assert_eq!(replies.collected.unknown, 0);
        replies.reply(tag(Kind::Load, 100, cash), ms, ms, &card_response(Kind::Sale, ResponseCode::Approved, 100));
        assert_eq!(replies.collected, Collected { by_method, unknown: 1 });
        assert_eq!(replies.collected.total_minor(), 50_700);
        assert_eq!(replies.collected.describe(), "cash 500.00, wechat 7.00");
        // Of the postings loadgen makes, loads and card sales only.
        let made: Vec<PostingKind> = Kind::ALL.into_iter().filter_map(posting_kind).collect();
        for kind in made.into_iter().chain([PostingKind::SellCard]) {
            assert_eq!(collects_money(kind), matches!(kind, PostingKind::Load | PostingKind::SellCard), "{kind}");
        }

        // The setup's card sales: approved ones by their card's method; a card already sold
        // after an unanswered attempt may be this run's sale.
        let answer = |code, amount_minor, unanswered_before| CardAnswer {
            code,
            amount_minor,
            balance: Balance { value_minor: amount_minor, held_minor: 0 },
            unanswered_before,
        };
        let answers = [
            answer(ResponseCode::Approved, OPENING_MINOR, false),
            answer(ResponseCode::Approved, OPENING_MINOR, true),
            answer(ResponseCode::CardAlreadySold, 0, false),
            answer(ResponseCode::Approved, 0, false),
        ];
        let method_of = |index| if index == 1 { PaymentMethod::Alipay } else { PaymentMethod::Cash };
        let sales = account_card_sales(&answers, method_of);
        let expected = BTreeMap::from([(PaymentMethod::Cash, OPENING_MINOR), (PaymentMethod::Alipay, OPENING_MINOR)]);
        assert_eq!(sales, Collected { by_method: expected, unknown: 0 });
        let lost = [answer(ResponseCode::CardAlreadySold, 0, true)];
        assert_eq!(account_card_sales(&lost, method_of).unknown, 1);
        let mut all = sales.clone();
        all.add(&replies.collected);
        assert_eq!((all.total_minor(), all.unknown), (2 * OPENING_MINOR + 50_700, 1));
    }

    /// A fresh directory for one test's files.
    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loadgen-{name}-{}-{}", std::process::id(), unix_ms_now()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// What settle reads from a finance file for `date`: the amounts by (store, method), every
    /// line of the same store and method added up.
    fn settle_reads(path: &Path, date: u32) -> BTreeMap<(u32, PaymentMethod), i64> {
        let mut totals = BTreeMap::new();
        for line in parse_finance(&std::fs::read_to_string(path).unwrap()).unwrap() {
            if line.date == date {
                *totals.entry((line.store, line.method)).or_insert(0) += line.amount_minor;
            }
        }
        totals
    }

    #[test]
    fn finance_files_are_created_or_added_to_by_date_store_and_method() {
        let dir = test_dir("finance");
        let collected = Collected {
            by_method: BTreeMap::from([
                (PaymentMethod::Cash, 100_000),
                (PaymentMethod::BankCard, 0),
                (PaymentMethod::Wechat, 1_000),
                (PaymentMethod::Alipay, 350),
            ]),
            unknown: 0,
        };
        // A new file, and an empty one (as mktemp leaves it): the header, then a line per
        // method that collected something.
        let new = dir.join("new.csv");
        let empty = dir.join("empty.csv");
        std::fs::write(&empty, "").unwrap();
        for path in [&new, &empty] {
            check_finance_out(path).unwrap();
            add_to_finance_file(path, 20_261_122, 21, &collected).unwrap();
            assert_eq!(
                std::fs::read_to_string(path).unwrap(),
                "date,store,method,amount\n2026-11-22,21,cash,1000.00\n2026-11-22,21,wechat,10.00\n\
                 2026-11-22,21,alipay,3.50\n"
            );
        }
        // An existing file: other dates and stores stay, the first line of the same date,
        // store and method takes the amount, the others are appended.
        let day = dir.join("day.csv");
        std::fs::write(
            &day,
            "date,store,method,amount\r\n2026-11-21,21,cash,100.00\r\n2026-11-22,22,cash,5\r\n\
             \x20 2026-11-22 , 21 , wechat , 18 \r\n\r\n2026-11-22,21,wechat,2.00\r\n2026-11-22,21,alipay,-3.50\r\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&day, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        check_finance_out(&day).unwrap();
        add_to_finance_file(&day, 20_261_122, 21, &collected).unwrap();
        assert_eq!(
            std::fs::read_to_string(&day).unwrap(),
            "date,store,method,amount\n2026-11-21,21,cash,100.00\n2026-11-22,22,cash,5.00\n\
             2026-11-22,21,wechat,28.00\n2026-11-22,21,wechat,2.00\n2026-11-22,21,alipay,0.00\n\
             2026-11-22,21,cash,1000.00\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&day).unwrap().permissions().mode() & 0o777, 0o640);
        }
        let read = settle_reads(&day, 20_261_122);
        assert_eq!(read[&(21, PaymentMethod::Wechat)], 3_000);
        assert_eq!(read[&(21, PaymentMethod::Cash)], 100_000);
        assert_eq!(read[&(22, PaymentMethod::Cash)], 500);
        assert_eq!(settle_reads(&day, 20_261_121), BTreeMap::from([((21, PaymentMethod::Cash), 10_000)]));
        // A second store's run adds its own lines.
        let store_22 = Collected { by_method: BTreeMap::from([(PaymentMethod::Cash, 250)]), unknown: 0 };
        add_to_finance_file(&day, 20_261_122, 22, &store_22).unwrap();
        assert_eq!(settle_reads(&day, 20_261_122)[&(22, PaymentMethod::Cash)], 750);
        // Nothing collected: the file is as it was (a new one gets the header).
        let before = std::fs::read(&day).unwrap();
        add_to_finance_file(&day, 20_261_122, 23, &Collected::default()).unwrap();
        assert_eq!(std::fs::read(&day).unwrap(), before);
        // No temporary file is left behind.
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["day.csv", "empty.csv", "new.csv"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_finance_file_is_refused_and_left_as_it_was() {
        let dir = test_dir("not-finance");
        let file = dir.join("finance.csv");
        let collected = Collected { by_method: BTreeMap::from([(PaymentMethod::Cash, 100)]), unknown: 0 };
        let header = "date,store,method,amount\n";
        for (text, says) in [
            ("store,date\n2026-11-22,21\n".to_string(), "line 1: the first line must be `date,store,method,amount`"),
            ("\n".to_string(), "line 1: the first line"),
            (format!("{header}2026-11-22,21,wechat\n"), "line 2: 3 fields, expected 4"),
            (format!("{header}2026-11-22,21,cash,1,x\n"), "line 2: 5 fields"),
            (format!("{header}2026-11-22,21,cash,1\n2026-13-01,21,cash,1\n"), "line 3: `2026-13-01` is not a date"),
            (format!("{header}1899-12-31,21,cash,1\n"), "is not a date"),
            (format!("{header}2026-02-29,21,cash,1\n"), "is not a date"),
            (format!("{header}2026-11-22,x,cash,1\n"), "`x` is not a store id"),
            (format!("{header}2026-11-22,21,barter,1\n"), "`barter` is not a payment method"),
            // settle reads method names as written, in lower case.
            (format!("{header}2026-11-22,21,Cash,1\n"), "`Cash` is not a payment method"),
            (format!("{header}2026-11-22,21,cash,1.234\n"), "`1.234` is not an amount"),
            (format!("{header}2026-11-22,21,cash,+1\n"), "`+1` is not an amount"),
        ] {
            std::fs::write(&file, &text).unwrap();
            for error in [
                check_finance_out(&file).unwrap_err(),
                add_to_finance_file(&file, 20_261_122, 21, &collected).unwrap_err(),
            ] {
                assert!(
                    error.contains("finance.csv is not a finance file") && error.contains(says),
                    "{text:?}: {error}"
                );
            }
            assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "left as it was");
        }
        std::fs::write(&file, b"date,store,method,amount\n\xff\xfe\n").unwrap();
        assert!(check_finance_out(&file).unwrap_err().contains("not UTF-8"));
        // Not a file at all, or nowhere to put one.
        assert!(check_finance_out(&dir).unwrap_err().starts_with("cannot read"));
        let nowhere = dir.join("missing").join("finance.csv");
        assert!(check_finance_out(&nowhere).unwrap_err().contains("there is no directory"));
        assert!(add_to_finance_file(&nowhere, 20_261_122, 21, &collected).unwrap_err().starts_with("cannot write"));
        // An amount that would not fit is refused, the file unchanged.
        let full = format!("{header}2026-11-22,21,cash,{}\n", format_minor(i64::MAX - 50));
        std::fs::write(&file, &full).unwrap();
        assert!(add_to_finance_file(&file, 20_261_122, 21, &collected).unwrap_err().contains("does not fit"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), full);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_is_not_written_when_the_money_or_its_day_is_unknown() {
        let dir = test_dir("unknowable");
        let file = dir.join("finance.csv");
        let known = Collected { by_method: BTreeMap::from([(PaymentMethod::Cash, 100)]), unknown: 0 };
        let day = BTreeSet::from([MINI_BUSINESS_DATE]);
        let lost = Collected { unknown: 2, ..known.clone() };
        let FinanceOutcome::NotWritten(why) = write_finance(&file, 21, &day, &lost) else { panic!() };
        assert!(why.starts_with("the outcome of 2 loads or card sales is unknown"), "{why}");
        let two_days = BTreeSet::from([MINI_BUSINESS_DATE, MINI_BUSINESS_DATE + 1]);
        let FinanceOutcome::NotWritten(why) = write_finance(&file, 21, &two_days, &known) else { panic!() };
        assert!(why.contains("changed during the run (2026-11-22 to 2026-11-23)"), "{why}");
        let FinanceOutcome::NotWritten(why) = write_finance(&file, 21, &BTreeSet::from([0]), &known) else { panic!() };
        assert!(why.contains("not a calendar date"), "{why}");
        assert!(!file.exists());
        assert_eq!(write_finance(&file, 21, &day, &known), FinanceOutcome::Added(100));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "date,store,method,amount\n2026-11-22,21,cash,1.00\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_two_stores_build_the_finance_file_the_switch_agrees_with() {
        let switch = BatchSwitch::new(BatchFaults::default());
        let addr = switch.start().await;
        let dir = test_dir("finance-runs");
        let file = dir.join("finance.csv");
        let path = file.to_str().unwrap();
        let t0 = unix_ms_now();
        let methods = ["--methods", "cash,wechat,bank_card,alipay", "--finance-out", path];
        let first = run_detailed(&cli(&addr, &[&["--setup", "--mix", FULL_MIX][..], &methods].concat()), later(t0, 0))
            .await
            .ok()
            .unwrap();
        assert!(first.summary.verified && first.summary.errors == 0, "{first:?}");
        let Some(FinanceOutcome::Added(minor)) = first.summary.finance else { panic!("{first:?}") };
        assert_eq!(minor, first.collected.total_minor());
        assert!(minor > 300 * OPENING_MINOR, "the setup's sales and the loads: {first:?}");
        assert!(first.summary.json().contains(&format!(",\"collected_minor\":{minor},\"verified\":true}}")));
        let collected = switch.collected.lock().unwrap().clone();
        assert_eq!(settle_reads(&file, MINI_BUSINESS_DATE), collected);
        assert_eq!(collected.len(), 4, "every method at store 21: {collected:?}");
        // Another store's run, loads only, by Alipay: its line joins the file.
        let extra = ["--store", "22", "--mix", "load=1", "--methods", "alipay", "--seed", "2", "--finance-out", path];
        let second = run_detailed(&cli(&addr, &extra), later(t0, 1)).await.ok().unwrap();
        assert!(second.summary.verified && second.summary.errors == 0, "{second:?}");
        let collected = switch.collected.lock().unwrap().clone();
        assert_eq!(settle_reads(&file, MINI_BUSINESS_DATE), collected);
        assert!(collected[&(22, PaymentMethod::Alipay)] > 0 && collected.len() == 5, "{collected:?}");
        let lines = std::fs::read_to_string(&file).unwrap();
        assert_eq!(lines.lines().count(), 6, "{lines}");

        // A file that is not a finance file stops the run before anything is sent.
        let notes = dir.join("notes.txt");
        std::fs::write(&notes, "shopping list\n").unwrap();
        let extra = ["--finance-out", notes.to_str().unwrap()];
        match run_detailed(&cli(&addr, &extra), later(t0, 2)).await {
            Err(Failure::Usage(text)) => assert!(text.contains("notes.txt is not a finance file"), "{text}"),
            _ => panic!("expected a usage error"),
        }
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "shopping list\n");

        // Loads without an answer: the money is unknown, and the file stays as it was.
        let switch = BatchSwitch::new(BatchFaults { drop_every: Some(97), ..BatchFaults::default() });
        let addr = switch.start().await;
        let extra = ["--setup", "--mix", "sale=1,load=1", "--finance-out", path];
        let lost = run_detailed(&cli(&addr, &extra), later(t0, 3)).await.ok().unwrap();
        assert!(lost.collected.unknown > 0, "{lost:?}");
        assert!(matches!(lost.summary.finance, Some(FinanceOutcome::NotWritten(_))), "{lost:?}");
        assert!(lost.summary.json().contains(",\"collected_minor\":null,"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), lines);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stan_hasher_spreads_consecutive_stans() {
        let mut map: StanMap<u32> = StanMap::default();
        for stan in 1_000..2_024 {
            map.insert(stan, stan);
        }
        assert_eq!(map.len(), 1_024);
        assert_eq!(map.get(&1_500), Some(&1_500));
    }
}

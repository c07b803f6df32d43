//! `chaos`: crash-tests the switch. It starts the real `cardswitch serve` on a fresh data
//! directory, sets up cards through the protocol, drives load from several terminals and
//! SIGKILLs the switch at moments the seed chooses (while requests are outstanding and group
//! commits are in flight, or during start-up), restarts it on the same directory, and repeats.
//! After each restart the terminals do what real ones do with a request that got no answer:
//! send it again (same stan and content, RETRANSMIT flag) or reverse it (T8, T7), as the seed
//! chooses. At the end it stops the switch, reads its journal (`cardswitch journal`) and checks
//! that nothing acknowledged was lost or doubled, that nothing unacknowledged was half applied,
//! and that every balance adds up (see `cardswitch_tools::chaos::verify`).
//!
//! The seed comes first on stderr, progress after it; the last stdout line is one JSON object:
//! `{"seed":…,"kills":…,"acked":…,"lost":0,"duplicated":0,"mismatches":0}`.
//! Exit status: 0 all good, 1 something was lost, doubled or did not match, 2 usage or an
//! operational error (the switch would not start, a connection failed when it must not...).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cardswitch_tools::chaos::journal::{parse_journal_line, JournalRecord};
use cardswitch_tools::chaos::plan::{self, Action, KillPoint, Resolution};
use cardswitch_tools::chaos::verify::{verify, Outcome, Report, Sent};
use cardswitch_tools::latency::group_digits;
use cardswitch_tools::rng::XorShift;
use cardswitch_tools::SIGN_ON_STAN_BIT;
use clap::Parser;
use protocol::client::Client;
use protocol::message::FLAG_RETRANSMIT;
use protocol::{
    CardNo, CardReply, Category, Credential, PaymentMethod, Request, Response, ResponseCode, TerminalKey, TerminalRole,
    Verification,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::time::{sleep, sleep_until, timeout, Instant};

const EXIT_FAILED: u8 = 1;
const EXIT_ERROR: u8 = 2;

/// The store every terminal signs on at and the range belongs to.
const STORE_ID: u32 = 21;
const FIRST_CARD: u64 = 6_200_880_000_000_000;
/// Product of the imported range (`member`).
const PRODUCT_MEMBER: u16 = 1;
/// Opening value of every card: 10,000.00 yuan, far more than the load takes out.
const OPENING_MINOR: i64 = 1_000_000;

/// Every run has a data directory of its own, so terminal ids need not differ between runs.
/// The setup terminal is the admin of the run's admin credential, which the switch creates.
const VERIFY_TERMINAL: u32 = 2;
const FIRST_LOAD_TERMINAL: u32 = 1_001;
/// Requests the setup and verification connections keep outstanding.
const ADMIN_WINDOW: usize = 64;
/// Approved holds a terminal remembers for captures; older ones stay open.
const MAX_OPEN_HOLDS: usize = 32;

const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SIGN_ON_TIMEOUT_MS: u64 = 10_000;
/// Longest wait for the next response while requests are outstanding on a live switch.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a killed switch to be reaped.
const KILLED_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the switch to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const IMPORT_TIMEOUT: Duration = Duration::from_secs(60);
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(600);
/// A round whose kill trigger (a response count) is not reached within this is killed anyway.
const ROUND_LOAD_LIMIT: Duration = Duration::from_secs(20);
/// Longest wait for the terminals to notice the kill and hand their state back.
const TERMINAL_JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Rounds without kills at the end until every request has a final answer (a round may leave
/// some when the switch answers `system_busy`).
const SETTLE_PASSES: u32 = 10;
/// The whole run may take this long, plus [`RUN_LIMIT_PER_KILL`] for every kill.
const RUN_LIMIT_BASE: Duration = Duration::from_secs(600);
const RUN_LIMIT_PER_KILL: Duration = Duration::from_secs(20);

/// Crash-tests the switch: load, SIGKILL at seeded moments, restart, retransmit or reverse
/// what got no answer, and check the journal and the balances at the end.
#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    version,
    after_help = "The switch runs on a new data directory under the temporary directory \
                  ($TMPDIR), listening on 127.0.0.1 on a free port; its stderr goes to \
                  server.log next to the data directory. Both are removed after a clean run \
                  and kept (and named) otherwise.\n\nThe seed decides the moment of each kill \
                  (0-200 ms after the start, during start-up and recovery; 0-300 ms after the \
                  switch listens; or after 1-2000 responses), each terminal's window (1-4) and requests, and whether an \
                  unanswered request is retransmitted or reversed; timing decides the rest, so \
                  two runs with one seed make the same choices but not the same history.\n\n\
                  Exit status: 0 nothing lost, doubled or mismatched; 1 something was; 2 usage \
                  or an operational error."
)]
struct Cli {
    /// SIGKILLs of the switch before the final check.
    #[arg(long, value_name = "K", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    kills: u32,
    /// Seed of every choice; default: taken from the clock (and printed).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Load terminals, each on its own connection.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    terminals: u32,
    /// Cards imported and sold (10,000.00 each) at the start, and used by the load.
    #[arg(long, value_name = "C", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    cards: u64,
    /// The switch binary; default: `cardswitch` next to this program.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
}

/// Why a run stopped before its verdict (exit 2).
#[derive(Debug)]
struct OperationalError(String);

impl<T: Into<String>> From<T> for OperationalError {
    fn from(text: T) -> Self {
        OperationalError(text.into())
    }
}

type Result<T> = std::result::Result<T, OperationalError>;

fn card(index: u64) -> CardNo {
    CardNo(FIRST_CARD + index)
}

// ---------------------------------------------------------------------------------------------
// Sessions: the one place that knows how a terminal connects and signs on.

/// Connects terminal `terminal_id` to the switch with its key (every frame carries a MAC, SPEC
/// §3.1) and signs it on at [`STORE_ID`]. The rest only sends requests and reads responses on
/// the client it returns.
async fn open_session(
    addr: SocketAddr,
    terminal_id: u32,
    key: &TerminalKey,
    sign_on_stan: u32,
) -> std::result::Result<Client, String> {
    let connecting = Client::connect_with_key(addr, terminal_id, key.clone());
    let mut client = match timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => return Err(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(client)) => client,
    };
    client.set_call_timeout_ms(SIGN_ON_TIMEOUT_MS);
    let reply = client.sign_on(sign_on_stan, STORE_ID).await.map_err(|e| format!("sign-on: {e}"))?;
    if !reply.code.is_approved() {
        return Err(format!("sign-on declined: {}", reply.code));
    }
    Ok(client)
}

// ---------------------------------------------------------------------------------------------
// The switch process

/// Where a run keeps its files.
struct Paths {
    bin: PathBuf,
    work: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// The switch's key files, created by its first start: next to the data, never in the
    /// default key directory of whoever runs this.
    master_key: PathBuf,
    admin_key: PathBuf,
}

impl Paths {
    fn create(bin: PathBuf, seed: u64) -> Result<Paths> {
        let work = std::env::temp_dir().join(format!("cardswitch-chaos-{seed}-{}", std::process::id()));
        std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let data = work.join("data");
        let log = work.join("server.log");
        let (master_key, admin_key) = (work.join("master.key"), work.join("admin.key"));
        Ok(Paths { bin, work, data, log, master_key, admin_key })
    }
}

/// A running `cardswitch serve`.
struct Switch {
    child: Child,
    /// Counted from 1 over the run, for the log and messages.
    start: u32,
    log: PathBuf,
}

/// The last `lines` lines of the switch's log, for messages about its death.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Switch {
    /// Starts `cardswitch serve` on the data directory; its stderr is appended to the log.
    fn spawn(paths: &Paths, start: u32) -> Result<Switch> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.log)
            .map_err(|e| format!("cannot open {}: {e}", paths.log.display()))?;
        let _ = writeln!(log, "--- chaos: start {start} ---");
        let child = Command::new(&paths.bin)
            .arg("serve")
            .arg("--data")
            .arg(&paths.data)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--master-key-file")
            .arg(&paths.master_key)
            .arg("--admin-key-file")
            .arg(&paths.admin_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Whatever ends this run early (an error, the run's time limit, Ctrl-C) leaves no
            // switch behind.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", paths.bin.display()))?;
        Ok(Switch { child, start, log: paths.log.clone() })
    }

    /// Waits for `listening on ADDR` (at most [`SERVER_START_TIMEOUT`]).
    async fn listening(&mut self) -> Result<SocketAddr> {
        let stdout = self.child.stdout.take().ok_or("the switch's stdout is gone")?;
        let mut lines = BufReader::new(stdout).lines();
        let start = self.start;
        let found = timeout(SERVER_START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.map_err(|e| format!("reading the switch's stdout: {e}"))? {
                if let Some(addr) = line.trim().strip_prefix("listening on ") {
                    return addr.parse::<SocketAddr>().map_err(|e| format!("unexpected address {addr:?}: {e}"));
                }
            }
            Err("the switch closed its stdout before listening".to_string())
        })
        .await;
        let addr = match found {
            Ok(Ok(addr)) => addr,
            Ok(Err(text)) => {
                let status = match timeout(Duration::from_secs(5), self.child.wait()).await {
                    Ok(Ok(status)) => status.to_string(),
                    _ => "still running".to_string(),
                };
                return Err(format!(
                    "start {start}: {text} ({status}); the end of {}:\n{}",
                    self.log.display(),
                    log_tail(&self.log, 20)
                )
                .into());
            }
            Err(_) => {
                return Err(
                    format!("start {start}: no 'listening on' within {} s", SERVER_START_TIMEOUT.as_secs()).into()
                )
            }
        };
        // Nothing else is expected on stdout; whatever comes is read so the switch never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(addr)
    }

    /// Fails when the switch exited on its own (a crash, or a recovery that refused the data
    /// directory): that is never what a kill did.
    fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "start {} exited on its own ({status}); the end of {}:\n{}",
                self.start,
                self.log.display(),
                log_tail(&self.log, 20)
            )
            .into()),
            Err(e) => Err(format!("start {}: cannot tell whether it runs: {e}", self.start).into()),
        }
    }

    /// SIGKILL, then waits until the process is gone.
    async fn kill(mut self) -> Result<()> {
        self.kill_and_reap().await
    }

    async fn kill_and_reap(&mut self) -> Result<()> {
        self.check_alive()?;
        self.child.start_kill().map_err(|e| format!("SIGKILL of start {}: {e}", self.start))?;
        match timeout(KILLED_EXIT_TIMEOUT, self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("waiting for start {} after SIGKILL: {e}", self.start).into()),
            Err(_) => {
                Err(format!("start {} still there {} s after SIGKILL", self.start, KILLED_EXIT_TIMEOUT.as_secs())
                    .into())
            }
        }
    }

    /// SIGKILL before anything was read from the switch; true when it had printed
    /// `listening on` by then (the kill came after recovery, not during it).
    async fn kill_during_start(mut self) -> Result<bool> {
        self.kill_and_reap().await?;
        let mut printed = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            // The process is gone: this reads what the pipe holds, then the end.
            let _ = timeout(Duration::from_secs(1), stdout.read_to_string(&mut printed)).await;
        }
        Ok(printed.contains("listening on "))
    }

    /// SIGTERM, then waits for exit status 0 (at most [`STOP_TIMEOUT`]).
    async fn stop(mut self) -> Result<()> {
        self.check_alive()?;
        let pid = self.child.id().ok_or("the switch exited before SIGTERM")?;
        // SAFETY: kill(2) on our own child, which has not been reaped (we hold it), so the pid
        // is still its own.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
            return Err(format!("SIGTERM: {}", std::io::Error::last_os_error()).into());
        }
        match timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("start {}: exit {status} after SIGTERM (expected 0)", self.start).into()),
            Ok(Err(e)) => Err(format!("waiting for start {} after SIGTERM: {e}", self.start).into()),
            Err(_) => {
                Err(format!("start {} did not exit within {} s of SIGTERM", self.start, STOP_TIMEOUT.as_secs()).into())
            }
        }
    }
}

/// Runs `cardswitch journal --data DIR` on the stopped switch's data and reads every entry.
async fn read_journal(paths: &Paths) -> Result<Vec<JournalRecord>> {
    let mut child = Command::new(&paths.bin)
        .arg("journal")
        .arg("--data")
        .arg(&paths.data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {} journal: {e}", paths.bin.display()))?;
    let stdout = child.stdout.take().ok_or("the journal's stdout is gone")?;
    let mut stderr = child.stderr.take().ok_or("the journal's stderr is gone")?;
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let read = timeout(JOURNAL_TIMEOUT, async {
        let mut records = Vec::new();
        let mut lines = BufReader::with_capacity(1 << 16, stdout).lines();
        while let Some(line) = lines.next_line().await.map_err(|e| format!("reading the journal: {e}"))? {
            let record =
                parse_journal_line(&line).map_err(|e| format!("journal line {}: {e}: {line}", records.len() + 1))?;
            records.push(record);
        }
        let status = child.wait().await.map_err(|e| format!("waiting for the journal command: {e}"))?;
        Ok::<_, String>((records, status))
    })
    .await;
    let (records, status) = match read {
        Err(_) => return Err(format!("the journal took more than {} s", JOURNAL_TIMEOUT.as_secs()).into()),
        Ok(result) => result?,
    };
    if !status.success() {
        let text = errors.await.unwrap_or_default();
        return Err(format!("cardswitch journal: exit {status}: {}", text.trim()).into());
    }
    Ok(records)
}

// ---------------------------------------------------------------------------------------------
// Terminals

/// An approved hold a terminal may capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OpenHold {
    card: CardNo,
    txn_id: u64,
    amount_minor: i64,
}

/// A remembered request a terminal sent, and where it stands.
#[derive(Clone, Copy, Debug)]
struct Record {
    request: Request,
    /// A capture: the hold it closes (back to the open holds when the capture did not happen).
    hold: Option<OpenHold>,
    outcome: Outcome,
    /// Times it was retransmitted or reversed.
    attempts: u32,
    /// Its reversal was declined (it was seen, then), so only a retransmission tells what
    /// happened to it.
    must_retransmit: bool,
}

/// What a terminal is for.
enum Role {
    /// Imports and sells the cards; retransmits whatever is left without an answer.
    Admin,
    /// Reads the balances at the end.
    Verifier,
    /// Sends the load, from its own random stream.
    Load(XorShift),
}

/// New work queued for a terminal (the load terminals make theirs up as they go).
#[derive(Clone, Copy, Debug)]
enum Work {
    Post { request: Request, hold: Option<OpenHold> },
    Balance(CardNo),
}

/// What a response is for.
#[derive(Clone, Copy, Debug)]
enum Purpose {
    /// A remembered request (new, retransmitted, or a reversal).
    Post,
    Balance(CardNo),
    /// A retransmission of a request answered earlier: the answer must be the same.
    Probe(CardReply),
}

struct Outgoing {
    stan: u32,
    request: Request,
    flags: u16,
    purpose: Purpose,
    /// 2: sent twice back to back, both copies must get the same answer.
    copies: u32,
}

struct InFlight {
    request: Request,
    purpose: Purpose,
    copies: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    sent: u64,
    approved: u64,
    declined: u64,
    busy: u64,
    retransmitted: u64,
    reversed: u64,
    probes: u64,
    copies: u64,
}

struct Terminal {
    id: u32,
    key: TerminalKey,
    role: Role,
    window: usize,
    next_stan: u32,
    sign_ons: u32,
    cards: u64,
    records: HashMap<u32, Record>,
    /// Stans of remembered requests without a final answer.
    pending: BTreeSet<u32>,
    /// Stans with a final answer, for probes.
    answered: Vec<u32>,
    open_holds: VecDeque<OpenHold>,
    queue: VecDeque<Work>,
    /// The verifier's balance answers.
    balances: Vec<(CardNo, CardReply)>,
    counts: Counts,
    /// Mismatches seen while running (answers that differ, unexpected codes).
    mismatches: Vec<String>,
}

impl Terminal {
    fn new(id: u32, key: TerminalKey, role: Role, window: usize, cards: u64) -> Terminal {
        Terminal {
            id,
            key,
            role,
            window,
            // Terminals count trace numbers up from 1 (SPEC §3).
            next_stan: 1,
            sign_ons: 0,
            cards,
            records: HashMap::new(),
            pending: BTreeSet::new(),
            answered: Vec::new(),
            open_holds: VecDeque::new(),
            queue: VecDeque::new(),
            balances: Vec::new(),
            counts: Counts::default(),
            mismatches: Vec::new(),
        }
    }

    fn take_stan(&mut self) -> u32 {
        let stan = self.next_stan;
        assert!(stan < SIGN_ON_STAN_BIT, "terminal {} ran out of trace numbers", self.id);
        self.next_stan += 1;
        stan
    }

    /// Sign-ons take their trace numbers from the upper half, apart from the requests'.
    fn sign_on_stan(&mut self) -> u32 {
        self.sign_ons += 1;
        SIGN_ON_STAN_BIT | (self.sign_ons & !SIGN_ON_STAN_BIT)
    }

    fn mismatch(&mut self, text: String) {
        self.mismatches.push(format!("terminal {}: {text}", self.id));
    }

    /// What to send first after (re)connecting: every request without a final answer,
    /// retransmitted or reversed as the seed says (a reversal is only ever retransmitted).
    fn resolutions(&mut self, seed: u64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for stan in self.pending.iter().copied().collect::<Vec<_>>() {
            let record = self.records[&stan];
            let choice = match (&self.role, record.request) {
                (_, Request::Reversal { .. }) => Resolution::Retransmit,
                (Role::Load(_), _) if !record.must_retransmit => plan::resolution(seed, self.id, stan, record.attempts),
                _ => Resolution::Retransmit,
            };
            self.records.get_mut(&stan).expect("pending requests are recorded").attempts += 1;
            match choice {
                Resolution::Retransmit => {
                    self.counts.retransmitted += 1;
                    out.push(Outgoing {
                        stan,
                        request: record.request,
                        flags: FLAG_RETRANSMIT,
                        purpose: Purpose::Post,
                        copies: 1,
                    });
                }
                Resolution::Reverse => {
                    let card = record.request.card().expect("postings name a card");
                    let reversal =
                        Request::Reversal { card, original_stan: stan, amount_minor: amount_of(&record.request) };
                    let reversal_stan = self.take_stan();
                    self.records.insert(
                        reversal_stan,
                        Record {
                            request: reversal,
                            hold: None,
                            outcome: Outcome::Unresolved,
                            attempts: 0,
                            must_retransmit: false,
                        },
                    );
                    self.records.get_mut(&stan).expect("recorded").outcome = Outcome::ReversedBy(reversal_stan);
                    self.pending.remove(&stan);
                    self.pending.insert(reversal_stan);
                    self.counts.reversed += 1;
                    out.push(Outgoing {
                        stan: reversal_stan,
                        request: reversal,
                        flags: 0,
                        purpose: Purpose::Post,
                        copies: 1,
                    });
                }
            }
        }
        out
    }

    /// Retransmissions of a few requests answered before, whose answers must not change.
    fn probes(&mut self, taken: &HashSet<u32>) -> Vec<Outgoing> {
        let Role::Load(rng) = &mut self.role else { return Vec::new() };
        let count = plan::probe_count(rng);
        let mut out = Vec::new();
        for _ in 0..count {
            if self.answered.is_empty() {
                break;
            }
            let stan = self.answered[rng.below(self.answered.len() as u64) as usize];
            let record = &self.records[&stan];
            let Outcome::Answered(reply) = record.outcome else { continue };
            let remembered = is_remembered(reply.code);
            if remembered && !taken.contains(&stan) && out.iter().all(|o: &Outgoing| o.stan != stan) {
                out.push(Outgoing {
                    stan,
                    request: record.request,
                    flags: FLAG_RETRANSMIT,
                    purpose: Purpose::Probe(reply),
                    copies: 1,
                });
            }
        }
        self.counts.probes += out.len() as u64;
        out
    }

    /// The next new request: queued work first; a load terminal then makes up its own.
    fn next_new(&mut self, make_up: bool) -> Option<Outgoing> {
        let work = match self.queue.pop_front() {
            Some(work) => work,
            None if make_up => self.make_up()?,
            None => return None,
        };
        let stan = self.take_stan();
        self.counts.sent += 1;
        Some(match work {
            Work::Balance(card) => Outgoing {
                stan,
                request: Request::Balance { card },
                flags: 0,
                purpose: Purpose::Balance(card),
                copies: 1,
            },
            Work::Post { request, hold } => {
                self.records.insert(
                    stan,
                    Record { request, hold, outcome: Outcome::Unresolved, attempts: 0, must_retransmit: false },
                );
                self.pending.insert(stan);
                let copies = match &mut self.role {
                    Role::Load(rng) => 1 + u32::from(plan::send_twice(rng)),
                    _ => 1,
                };
                if copies > 1 {
                    self.counts.copies += 1;
                }
                Outgoing { stan, request, flags: 0, purpose: Purpose::Post, copies }
            }
        })
    }

    /// A load terminal's next request.
    fn make_up(&mut self) -> Option<Work> {
        let Role::Load(rng) = &mut self.role else { return None };
        let sale = |index: u64, amount_minor: i64| Work::Post {
            request: Request::Sale {
                card: card(index),
                amount_minor,
                category: Category::Retail as u8,
                flags: 0,
                verification: Verification::NONE,
            },
            hold: None,
        };
        Some(match plan::next_action(rng, self.cards) {
            Action::Sale { card_index, amount_minor } => sale(card_index, amount_minor),
            Action::Load { card_index, amount_minor } => Work::Post {
                request: Request::Load { card: card(card_index), amount_minor, method: PaymentMethod::Cash as u8 },
                hold: None,
            },
            Action::Hold { card_index, amount_minor } => Work::Post {
                request: Request::Hold {
                    card: card(card_index),
                    amount_minor,
                    category: Category::Room as u8,
                    verification: Verification::NONE,
                },
                hold: None,
            },
            Action::Capture { card_index, amount_minor, discount_draw } => match self.open_holds.pop_front() {
                Some(hold) => Work::Post {
                    request: Request::Capture {
                        card: hold.card,
                        hold_txn_id: hold.txn_id,
                        amount_minor: plan::capture_amount(hold.amount_minor, discount_draw),
                    },
                    hold: Some(hold),
                },
                None => sale(card_index, amount_minor),
            },
            Action::Balance { card_index } => Work::Balance(card(card_index)),
        })
    }

    fn remember_hold(&mut self, hold: OpenHold) {
        if self.open_holds.len() >= MAX_OPEN_HOLDS {
            self.open_holds.pop_front();
        }
        self.open_holds.push_back(hold);
    }

    /// Records the final answer to the remembered request `stan`, and what follows from it.
    fn settle(&mut self, stan: u32, reply: CardReply) {
        let record = self.records.get_mut(&stan).expect("answered requests are recorded");
        record.outcome = Outcome::Answered(reply);
        let Record { request, hold, .. } = *record;
        self.pending.remove(&stan);
        self.answered.push(stan);
        let approved = reply.code.is_approved();
        if approved {
            self.counts.approved += 1;
        } else {
            self.counts.declined += 1;
        }
        use ResponseCode as C;
        let expected = match request {
            Request::Sale { .. } | Request::Hold { .. } | Request::Reversal { .. } => {
                matches!(reply.code, C::Approved | C::InsufficientValue)
            }
            Request::Load { .. } => matches!(reply.code, C::Approved | C::BalanceLimitExceeded),
            _ => approved,
        };
        if !expected {
            self.mismatch(format!("stan {stan}: {} answered {} ({reply:?})", request.msg_type(), reply.code));
        }
        match request {
            Request::Hold { card, amount_minor, .. } if approved => {
                self.remember_hold(OpenHold { card, txn_id: reply.txn_id, amount_minor })
            }
            // A capture that did not happen leaves its hold open.
            Request::Capture { .. } if !approved => {
                if let Some(hold) = hold {
                    self.remember_hold(hold);
                }
            }
            Request::Reversal { original_stan, .. } => {
                let original = self.records.get_mut(&original_stan).expect("reversals name recorded requests");
                if approved {
                    // Undone or never done: a capture's hold is open either way.
                    if let (Request::Capture { .. }, Some(hold)) = (original.request, original.hold) {
                        self.remember_hold(hold);
                    }
                } else {
                    // Declined (e.g. a load whose value is spent): the original was seen, and
                    // only asking for it again tells what it got.
                    original.outcome = Outcome::Unresolved;
                    original.must_retransmit = true;
                    self.pending.insert(original_stan);
                }
            }
            _ => {}
        }
    }
}

/// Whether the switch keeps a reply with `code` for retransmissions (SPEC §6.1): the codes
/// that say nothing happened are not, so retransmitting such a request is a new attempt.
fn is_remembered(code: ResponseCode) -> bool {
    !matches!(
        code,
        ResponseCode::UnknownTerminal
            | ResponseCode::BadMac
            | ResponseCode::TerminalDisabled
            | ResponseCode::InvalidField
            | ResponseCode::NotSignedOn
            | ResponseCode::NotPermitted
            | ResponseCode::SystemBusy
            | ResponseCode::SystemError
            | ResponseCode::TraceReused
    )
}

/// The amount a reversal of `request` repeats (a reversal is never reversed: 0).
fn amount_of(request: &Request) -> i64 {
    match request {
        Request::Reversal { .. } => 0,
        other => other.amount_minor().unwrap_or(0),
    }
}

/// What the terminals of one round share.
struct Round {
    addr: SocketAddr,
    seed: u64,
    /// Load rounds make up requests until the kill; settling rounds only finish what is open.
    load: bool,
    responses: AtomicU64,
    /// The response count at which the round's kill is due (`u64::MAX`: not by count).
    kill_at_responses: u64,
    /// Told when the kill is due by count, or when every terminal has stopped.
    kill_due: Notify,
    terminals: usize,
    ended: AtomicUsize,
}

/// How a terminal's round ended.
#[derive(Debug)]
enum RoundEnd {
    /// Nothing left to send or wait for (settling rounds).
    Finished,
    NotConnected(String),
    ConnectionLost(String),
    /// A live switch left a request unanswered for [`RESPONSE_TIMEOUT`].
    NoResponse,
}

impl std::fmt::Display for RoundEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundEnd::Finished => write!(f, "finished"),
            RoundEnd::NotConnected(text) => write!(f, "could not connect and sign on: {text}"),
            RoundEnd::ConnectionLost(text) => write!(f, "lost its connection: {text}"),
            RoundEnd::NoResponse => write!(f, "got no response within {} s", RESPONSE_TIMEOUT.as_secs()),
        }
    }
}

/// One round of one terminal: connect, sign on, settle what is open, probe, then send (new
/// requests too in a load round) until there is nothing left or the connection dies.
async fn run_round(mut t: Terminal, round: Arc<Round>) -> (Terminal, RoundEnd) {
    let end = round_inner(&mut t, &round).await;
    if round.ended.fetch_add(1, Ordering::AcqRel) + 1 == round.terminals {
        round.kill_due.notify_one();
    }
    (t, end)
}

async fn round_inner(t: &mut Terminal, round: &Round) -> RoundEnd {
    let sign_on_stan = t.sign_on_stan();
    let mut client = match open_session(round.addr, t.id, &t.key, sign_on_stan).await {
        Ok(client) => client,
        Err(text) => return RoundEnd::NotConnected(text),
    };
    let mut outgoing: VecDeque<Outgoing> = t.resolutions(round.seed).into();
    let taken: HashSet<u32> = outgoing.iter().map(|o| o.stan).collect();
    outgoing.extend(t.probes(&taken));
    let mut inflight: HashMap<u32, InFlight> = HashMap::new();
    let mut outstanding = 0usize;
    loop {
        while outstanding < t.window {
            let Some(next) = outgoing.pop_front().or_else(|| t.next_new(round.load)) else { break };
            for copy in 0..next.copies {
                let flags = if copy > 0 { next.flags | FLAG_RETRANSMIT } else { next.flags };
                if let Err(e) = client.send(next.stan, flags, next.request).await {
                    return RoundEnd::ConnectionLost(format!("send: {e}"));
                }
            }
            outstanding += next.copies as usize;
            inflight.insert(next.stan, InFlight { request: next.request, purpose: next.purpose, copies: next.copies });
        }
        if outstanding == 0 {
            return RoundEnd::Finished;
        }
        let (header, response) = match timeout(RESPONSE_TIMEOUT, client.next_response()).await {
            Err(_) => return RoundEnd::NoResponse,
            Ok(Err(e)) => return RoundEnd::ConnectionLost(e.to_string()),
            Ok(Ok(received)) => received,
        };
        if round.responses.fetch_add(1, Ordering::AcqRel) + 1 == round.kill_at_responses {
            round.kill_due.notify_one();
        }
        let reply = match response {
            Response::Card { request, reply } => {
                let expected = inflight.get(&header.stan).map(|f| f.request.msg_type());
                if Some(request) != expected {
                    t.mismatch(format!("stan {}: a {request} reply, expected {expected:?}", header.stan));
                    continue;
                }
                reply
            }
            Response::Error { code, text } => {
                t.mismatch(format!("stan {}: error frame {code}: {text}", header.stan));
                return RoundEnd::ConnectionLost(format!("error frame {code}: {text}"));
            }
            other => {
                t.mismatch(format!("stan {}: unexpected {:?}", header.stan, other.msg_type()));
                continue;
            }
        };
        if header.terminal_id != t.id {
            t.mismatch(format!("a reply for terminal {} (stan {})", header.terminal_id, header.stan));
            continue;
        }
        let stan = header.stan;
        let flight = inflight.get_mut(&stan).expect("checked above");
        flight.copies -= 1;
        outstanding -= 1;
        let purpose = flight.purpose;
        if flight.copies == 0 {
            inflight.remove(&stan);
        }
        let busy = matches!(reply.code, ResponseCode::SystemBusy | ResponseCode::SystemError);
        if busy {
            t.counts.busy += 1;
        }
        match purpose {
            Purpose::Balance(card) => match (&t.role, busy) {
                (Role::Verifier, true) => t.queue.push_back(Work::Balance(card)),
                (Role::Verifier, false) => t.balances.push((card, reply)),
                _ => {}
            },
            Purpose::Probe(_) if busy => {}
            Purpose::Probe(original) => {
                if reply != original {
                    t.mismatch(format!(
                        "stan {stan}: retransmitted after a restart, answered {reply:?}; originally {original:?}"
                    ));
                }
            }
            // Nothing was done: it stays open and is sent again later.
            Purpose::Post if busy => {}
            Purpose::Post => match t.records[&stan].outcome {
                Outcome::Unresolved => t.settle(stan, reply),
                Outcome::Answered(first) if first != reply => {
                    t.mismatch(format!("stan {stan}: two copies answered {first:?} and {reply:?}"))
                }
                Outcome::Answered(_) => {}
                Outcome::ReversedBy(reversal) => {
                    t.mismatch(format!("stan {stan}: answered {reply:?} after it was reversed by stan {reversal}"))
                }
            },
        }
    }
}

/// Runs one round of every terminal against the switch at `addr`; `kill` (given for load
/// rounds) decides when the round ends. Returns the terminals and how each round ended.
async fn run_terminals(
    terminals: Vec<Terminal>,
    round: Arc<Round>,
    kill: Option<(KillPoint, Instant, Switch)>,
) -> Result<(Vec<Terminal>, Vec<RoundEnd>, Option<KillReport>)> {
    let tasks: Vec<_> = terminals.into_iter().map(|t| tokio::spawn(run_round(t, Arc::clone(&round)))).collect();
    let mut kill_report = None;
    if let Some((point, listening_at, switch)) = kill {
        let reached = match point {
            KillPoint::AfterDelay { delay_ms } => {
                sleep_until(listening_at + Duration::from_millis(delay_ms)).await;
                true
            }
            KillPoint::AfterResponses { .. } => timeout(ROUND_LOAD_LIMIT, round.kill_due.notified()).await.is_ok(),
            KillPoint::DuringStart { .. } => unreachable!("no terminals run in a round killed during start-up"),
        };
        let responses = round.responses.load(Ordering::Acquire);
        let load_ms = listening_at.elapsed().as_millis() as u64;
        switch.kill().await?;
        kill_report = Some(KillReport { responses, load_ms, reached });
    }
    let mut back = Vec::with_capacity(tasks.len());
    let mut ends = Vec::with_capacity(tasks.len());
    for task in tasks {
        match timeout(TERMINAL_JOIN_TIMEOUT, task).await {
            Ok(Ok((t, end))) => {
                back.push(t);
                ends.push(end);
            }
            Ok(Err(e)) => return Err(format!("a terminal task failed: {e}").into()),
            Err(_) => {
                return Err(format!("a terminal did not stop within {} s", TERMINAL_JOIN_TIMEOUT.as_secs()).into())
            }
        }
    }
    Ok((back, ends, kill_report))
}

/// What happened around one kill.
struct KillReport {
    responses: u64,
    load_ms: u64,
    /// The kill trigger was reached (false: a response count not reached in time).
    reached: bool,
}

// ---------------------------------------------------------------------------------------------
// The run

struct Run {
    seed: u64,
    cards: u64,
    paths: Paths,
    starts: u32,
    admin: Option<Terminal>,
    load: Vec<Terminal>,
    verifier: Option<Terminal>,
}

impl Run {
    fn start_switch(&mut self) -> Result<Switch> {
        self.starts += 1;
        Switch::spawn(&self.paths, self.starts)
    }

    fn round(&self, addr: SocketAddr, load: bool, kill_at_responses: u64, terminals: usize) -> Arc<Round> {
        Arc::new(Round {
            addr,
            seed: self.seed,
            load,
            responses: AtomicU64::new(0),
            kill_at_responses,
            kill_due: Notify::new(),
            terminals,
            ended: AtomicUsize::new(0),
        })
    }

    /// Rounds without kills until every terminal in `terminals` has a final answer to
    /// everything (and its queue is empty).
    async fn settle(&self, addr: SocketAddr, mut terminals: Vec<Terminal>, what: &str) -> Result<Vec<Terminal>> {
        for pass in 1..=SETTLE_PASSES {
            let round = self.round(addr, false, u64::MAX, terminals.len());
            let (back, ends, _) = run_terminals(terminals, round, None).await?;
            terminals = back;
            for (t, end) in terminals.iter().zip(&ends) {
                if !matches!(end, RoundEnd::Finished) {
                    return Err(format!("{what}: terminal {} {end}", t.id).into());
                }
            }
            let open: usize = terminals.iter().map(|t| t.pending.len() + t.queue.len()).sum();
            if open == 0 {
                return Ok(terminals);
            }
            eprintln!("chaos: {what}: {open} requests still open after pass {pass} (system_busy); again");
            sleep(Duration::from_millis(200 * u64::from(pass))).await;
        }
        Err(format!("{what}: requests still open after {SETTLE_PASSES} passes").into())
    }

    /// Provisions the load and verification terminals, imports the range and sells every
    /// card, through the protocol, as the admin terminal.
    async fn setup(&mut self, addr: SocketAddr) -> Result<()> {
        let mut admin = self.admin.take().expect("the admin terminal is there");
        let sign_on_stan = admin.sign_on_stan();
        let mut client =
            open_session(addr, admin.id, &admin.key, sign_on_stan).await.map_err(|e| format!("setup: {e}"))?;
        let others: Vec<(u32, TerminalKey)> =
            self.load.iter().chain(&self.verifier).map(|t| (t.id, t.key.clone())).collect();
        for (terminal_id, key) in others {
            let stan = admin.take_stan();
            let reply = client
                .provision(stan, terminal_id, STORE_ID, TerminalRole::Pos, &key)
                .await
                .map_err(|e| format!("setup: provisioning terminal {terminal_id}: {e}"))?;
            if !reply.code.is_approved() {
                return Err(format!("setup: provisioning terminal {terminal_id}: {}", reply.code).into());
            }
        }
        let import = Request::ImportRange {
            first: card(0),
            last: card(self.cards - 1),
            product: PRODUCT_MEMBER,
            store_id: STORE_ID,
        };
        client.set_call_timeout_ms(IMPORT_TIMEOUT.as_millis() as u64);
        let stan = admin.take_stan();
        match client.call(stan, import).await.map_err(|e| format!("setup: import: {e}"))? {
            Response::ImportRange(reply) if reply.code.is_approved() && reply.card_count == self.cards => {}
            other => return Err(format!("setup: import of {} cards answered {other:?}", self.cards).into()),
        }
        drop(client);
        admin.queue.extend((0..self.cards).map(|i| Work::Post {
            request: Request::SellCard {
                card: card(i),
                amount_minor: OPENING_MINOR,
                method: PaymentMethod::Cash as u8,
            },
            hold: None,
        }));
        let admin = self.settle(addr, vec![admin], "setup").await?.pop().expect("one terminal");
        let unsold: Vec<String> = admin
            .records
            .iter()
            .filter_map(|(stan, r)| match r.outcome {
                Outcome::Answered(reply) if reply.code.is_approved() => None,
                other => Some(format!("stan {stan}: {other:?}")),
            })
            .take(3)
            .collect();
        if !unsold.is_empty() {
            return Err(format!("setup: sell-card not approved: {}", unsold.join("; ")).into());
        }
        if !admin.mismatches.is_empty() {
            return Err(format!("setup: {}", admin.mismatches.join("; ")).into());
        }
        self.admin = Some(admin);
        Ok(())
    }

    /// One kill: start the switch, run the load terminals (or not, when the kill comes during
    /// start-up), SIGKILL it at `point`. Returns a line for the progress report.
    async fn kill_round(&mut self, point: KillPoint) -> Result<String> {
        let mut switch = self.start_switch()?;
        if let KillPoint::DuringStart { delay_ms } = point {
            sleep(Duration::from_millis(delay_ms)).await;
            let listening = switch.kill_during_start().await?;
            let when = if listening { "it was listening already" } else { "before it was listening" };
            return Ok(format!("during start-up, {delay_ms} ms after the start ({when})"));
        }
        let spawned_at = Instant::now();
        let addr = switch.listening().await?;
        let listening_at = Instant::now();
        let start_ms = listening_at.duration_since(spawned_at).as_millis();
        let kill_at = match point {
            KillPoint::AfterResponses { responses } => responses,
            _ => u64::MAX,
        };
        let round = self.round(addr, true, kill_at, self.load.len());
        let terminals = std::mem::take(&mut self.load);
        let (back, ends, report) =
            run_terminals(terminals, Arc::clone(&round), Some((point, listening_at, switch))).await?;
        self.load = back;
        let report = report.expect("a load round ends with a kill");
        let not_connected = ends.iter().filter(|e| matches!(e, RoundEnd::NotConnected(_))).count();
        // The kill closes every connection at once; a terminal left waiting that long before
        // it was killed had a request the running switch never answered.
        for (t, end) in self.load.iter_mut().zip(&ends) {
            if matches!(end, RoundEnd::NoResponse) {
                t.mismatch(format!("no response within {} s while the switch ran", RESPONSE_TIMEOUT.as_secs()));
            }
        }
        let open: usize = self.load.iter().map(|t| t.pending.len()).sum();
        let trigger = match point {
            KillPoint::AfterDelay { delay_ms } => format!("{delay_ms} ms after listening"),
            KillPoint::AfterResponses { responses } if report.reached => format!("at response {responses}"),
            KillPoint::AfterResponses { responses } => {
                format!("after {} s without reaching response {responses}", ROUND_LOAD_LIMIT.as_secs())
            }
            KillPoint::DuringStart { .. } => unreachable!("handled above"),
        };
        let mut line = format!(
            "{trigger} ({} responses in {} ms; listening {start_ms} ms after the start); {open} requests left \
             without an answer",
            report.responses, report.load_ms
        );
        if not_connected > 0 {
            line.push_str(&format!("; {not_connected} terminals had not signed on yet"));
        }
        Ok(line)
    }

    /// The last start: settle everything, probe, read every balance, stop with SIGTERM.
    async fn finish(&mut self) -> Result<Vec<(CardNo, Option<CardReply>)>> {
        let mut switch = self.start_switch()?;
        let addr = switch.listening().await?;
        let terminals = std::mem::take(&mut self.load);
        self.load = self.settle(addr, terminals, "settling").await?;
        let mut verifier = self.verifier.take().expect("the verification terminal is there");
        verifier.queue.extend((0..self.cards).map(|i| Work::Balance(card(i))));
        let mut verifier = self.settle(addr, vec![verifier], "balances").await?.pop().expect("one terminal");
        switch.stop().await?;
        let mut by_card: HashMap<CardNo, CardReply> = verifier.balances.drain(..).collect();
        if !verifier.mismatches.is_empty() {
            return Err(format!("balances: {}", verifier.mismatches.join("; ")).into());
        }
        Ok((0..self.cards).map(|i| (card(i), by_card.remove(&card(i)))).collect())
    }

    /// Every remembered request of every terminal, with its outcome.
    fn sent(&self) -> Vec<Sent> {
        self.admin
            .iter()
            .chain(&self.load)
            .flat_map(|t| {
                t.records.iter().map(|(&stan, r)| Sent {
                    terminal_id: t.id,
                    stan,
                    request: r.request,
                    hold_amount_minor: r.hold.map_or(0, |h| h.amount_minor),
                    outcome: r.outcome,
                })
            })
            .collect()
    }

    fn counts(&self) -> Counts {
        let mut total = Counts::default();
        for t in &self.load {
            let c = t.counts;
            total.sent += c.sent;
            total.approved += c.approved;
            total.declined += c.declined;
            total.busy += c.busy;
            total.retransmitted += c.retransmitted;
            total.reversed += c.reversed;
            total.probes += c.probes;
            total.copies += c.copies;
        }
        total
    }
}

/// The whole run: setup, `plan.len()` kills, the final check.
async fn run(cli: &Cli, seed: u64, bin: PathBuf, paths_out: &mut Option<PathBuf>) -> Result<(Report, u32)> {
    let paths = Paths::create(bin, seed)?;
    *paths_out = Some(paths.work.clone());
    eprintln!("chaos: switch {}, files in {}", paths.bin.display(), paths.work.display());
    let started = Instant::now();
    let mut run = Run { seed, cards: cli.cards, paths, starts: 0, admin: None, load: Vec::new(), verifier: None };
    let mut switch = run.start_switch()?;
    let addr = switch.listening().await?;
    // The switch's first start created the admin credential, which provisions the others.
    let admin = Credential::load(&run.paths.admin_key)?;
    let ids = FIRST_LOAD_TERMINAL..FIRST_LOAD_TERMINAL + cli.terminals;
    if admin.terminal_id == VERIFY_TERMINAL || ids.contains(&admin.terminal_id) {
        return Err(format!("the admin credential names terminal {}, which the run uses", admin.terminal_id).into());
    }
    // Keys derived from the admin's, as the other tools do: nothing to store.
    let key_of = |terminal_id: u32| admin.derive_terminal_key(terminal_id);
    run.load = (0..cli.terminals)
        .map(|i| {
            let id = FIRST_LOAD_TERMINAL + i;
            let role = Role::Load(plan::terminal_rng(seed, i));
            Terminal::new(id, key_of(id), role, plan::load_window(seed, i), cli.cards)
        })
        .collect();
    run.verifier =
        Some(Terminal::new(VERIFY_TERMINAL, key_of(VERIFY_TERMINAL), Role::Verifier, ADMIN_WINDOW, cli.cards));
    run.admin = Some(Terminal::new(admin.terminal_id, admin.key.clone(), Role::Admin, ADMIN_WINDOW, cli.cards));
    run.setup(addr).await?;
    // A clean stop first: the first kill then also covers a restart after a graceful exit.
    switch.stop().await?;
    eprintln!(
        "chaos: setup: {} terminals provisioned, {} cards imported and sold ({:.1} s)",
        cli.terminals + 1,
        cli.cards,
        started.elapsed().as_secs_f64()
    );

    let kill_plan = plan::kill_plan(seed, cli.kills);
    let mut kills = 0u32;
    for (i, point) in kill_plan.iter().enumerate() {
        let line = run.kill_round(*point).await?;
        kills += 1;
        eprintln!("chaos: kill {}/{} at {:.1} s: {line}", i + 1, kill_plan.len(), started.elapsed().as_secs_f64());
    }

    let balances = run.finish().await?;
    let journal = read_journal(&run.paths).await?;
    let sent = run.sent();
    let mut report = verify(&sent, &journal, &balances);
    for t in run.admin.iter().chain(&run.load) {
        for text in &t.mismatches {
            report.mismatch(text.clone());
        }
    }
    let c = run.counts();
    eprintln!(
        "chaos: {} starts; load terminals sent {} new requests ({} approved, {} declined, {} system_busy), \
         {} retransmissions and {} reversals after kills, {} retransmissions of answered requests, {} sent twice; \
         journal: {} entries",
        run.starts,
        group_digits(c.sent),
        group_digits(c.approved),
        group_digits(c.declined),
        group_digits(c.busy),
        group_digits(c.retransmitted),
        group_digits(c.reversed),
        group_digits(c.probes),
        group_digits(c.copies),
        group_digits(journal.len() as u64)
    );
    Ok((report, kills))
}

fn seed_from_clock() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Printed and typed back by people: keep it short.
    (nanos as u64 ^ (u64::from(std::process::id()) << 20)) % 1_000_000_000
}

fn default_bin() -> std::result::Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program's own path: {e}"))?;
    Ok(exe.with_file_name("cardswitch"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let seed = cli.seed.unwrap_or_else(seed_from_clock);
    eprintln!("chaos: seed {seed}");
    let bin = match cli.bin.clone().map_or_else(default_bin, Ok) {
        Ok(bin) if bin.is_file() => bin,
        Ok(bin) => {
            eprintln!("chaos: the switch binary {} does not exist (build it, or pass --bin)", bin.display());
            return ExitCode::from(EXIT_ERROR);
        }
        Err(text) => {
            eprintln!("chaos: {text}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chaos: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let limit = RUN_LIMIT_BASE + RUN_LIMIT_PER_KILL * cli.kills;
    let started = std::time::Instant::now();
    let mut work = None;
    let result = runtime.block_on(async {
        tokio::select! {
            result = timeout(limit, run(&cli, seed, bin.clone(), &mut work)) => match result {
                Ok(result) => result,
                Err(_) => Err(OperationalError(format!("the run took more than {} s", limit.as_secs()))),
            },
            _ = tokio::signal::ctrl_c() => Err(OperationalError("interrupted".to_string())),
        }
    });
    // Dropping the runtime drops any switch still running, which kills it (kill_on_drop).
    drop(runtime);
    let seconds = started.elapsed().as_secs_f64();
    let repeat = format!(
        "{} --kills {} --seed {seed} --terminals {} --cards {} --bin {}",
        std::env::args().next().unwrap_or_else(|| "chaos".to_string()),
        cli.kills,
        cli.terminals,
        cli.cards,
        bin.display()
    );
    let keep_files = |work: &Option<PathBuf>| {
        if let Some(work) = work {
            eprintln!("chaos: data directory and server.log kept in {}", work.display());
        }
    };
    match result {
        Err(OperationalError(text)) => {
            eprintln!("chaos: error (seed {seed}, after {seconds:.1} s): {text}");
            keep_files(&work);
            eprintln!("chaos: to repeat: {repeat}");
            ExitCode::from(EXIT_ERROR)
        }
        Ok((report, kills)) => {
            for problem in &report.problems {
                eprintln!("chaos: {problem}");
            }
            let hidden =
                (report.lost + report.duplicated + report.mismatches).saturating_sub(report.problems.len() as u64);
            if hidden > 0 {
                eprintln!("chaos: ... and {hidden} more problems");
            }
            eprintln!(
                "chaos: {} kills, {} acknowledged postings, {} lost, {} duplicated, {} mismatches in {seconds:.1} s",
                kills,
                group_digits(report.acked),
                report.lost,
                report.duplicated,
                report.mismatches
            );
            println!("{}", report.json(seed, kills));
            if report.is_clean() {
                if let Some(work) = &work {
                    let _ = std::fs::remove_dir_all(work);
                }
                ExitCode::SUCCESS
            } else {
                keep_files(&work);
                eprintln!("chaos: to repeat: {repeat}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chaos").chain(args.iter().copied()))
    }

    #[test]
    fn options_have_defaults_and_bounds() {
        let cli = parse(&[]).unwrap();
        assert_eq!((cli.kills, cli.seed, cli.terminals, cli.cards, cli.bin), (10, None, 8, 1_000, None));
        let cli = parse(&["--kills", "200", "--seed", "12345", "--terminals", "4", "--cards", "50", "--bin", "/x/cs"])
            .unwrap();
        assert_eq!(cli.kills, 200);
        assert_eq!(cli.seed, Some(12_345));
        assert_eq!(cli.terminals, 4);
        assert_eq!(cli.cards, 50);
        assert_eq!(cli.bin, Some(PathBuf::from("/x/cs")));
        assert_eq!(parse(&["--kills", "0"]).unwrap().kills, 0);
        assert_eq!(parse(&["--seed", "18446744073709551615"]).unwrap().seed, Some(u64::MAX));
        for bad in [
            &["--terminals", "0"][..],
            &["--terminals", "1001"],
            &["--cards", "0"],
            &["--cards", "1000001"],
            &["--kills", "-1"],
            &["--seed", "x"],
            &["--unknown"],
            &["--kills"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_range_of_cards_stays_within_its_digits() {
        assert_eq!(card(0), CardNo(FIRST_CARD));
        assert!(card(0).is_valid() && card(999_999).is_valid());
        assert_eq!(card(999_999).digits(), card(0).digits());
    }

    #[test]
    fn stans_count_up_and_sign_ons_stay_apart() {
        let mut t = Terminal::new(7, test_key(), Role::Admin, 1, 10);
        assert_eq!((t.take_stan(), t.take_stan()), (1, 2));
        let sign_on = t.sign_on_stan();
        assert!(sign_on & SIGN_ON_STAN_BIT != 0);
        assert_ne!(sign_on, t.sign_on_stan());
    }

    fn test_key() -> TerminalKey {
        TerminalKey::from_bytes([0x5a; 32])
    }

    #[test]
    fn only_replies_that_say_something_happened_are_remembered() {
        for code in [ResponseCode::Approved, ResponseCode::InsufficientValue, ResponseCode::OriginalReversed] {
            assert!(is_remembered(code), "{code}");
        }
        for code in
            [ResponseCode::BadMac, ResponseCode::NotSignedOn, ResponseCode::SystemBusy, ResponseCode::TraceReused]
        {
            assert!(!is_remembered(code), "{code}");
        }
    }

    fn load_terminal() -> Terminal {
        Terminal::new(1_001, test_key(), Role::Load(plan::terminal_rng(1, 0)), 2, 10)
    }

    fn approved(txn_id: u64) -> CardReply {
        CardReply { txn_id, amount_minor: 1, ..CardReply::default() }
    }

    #[test]
    fn unanswered_requests_are_retransmitted_or_reversed_and_reversals_only_retransmitted() {
        let mut t = load_terminal();
        for _ in 0..200 {
            t.queue.push_back(Work::Post {
                request: Request::Sale {
                    card: card(1),
                    amount_minor: 5,
                    category: 1,
                    flags: 0,
                    verification: Verification::NONE,
                },
                hold: None,
            });
            t.next_new(false).unwrap();
        }
        let first = t.resolutions(3);
        assert_eq!(first.len(), 200);
        let reversals: Vec<&Outgoing> =
            first.iter().filter(|o| matches!(o.request, Request::Reversal { .. })).collect();
        let retransmissions = first.iter().filter(|o| o.flags == FLAG_RETRANSMIT).count();
        assert_eq!(reversals.len() + retransmissions, 200);
        assert!(reversals.len() > 50 && retransmissions > 50);
        for r in &reversals {
            let Request::Reversal { original_stan, amount_minor, card: c } = r.request else { unreachable!() };
            assert_eq!((amount_minor, c), (5, card(1)));
            assert_eq!(t.records[&original_stan].outcome, Outcome::ReversedBy(r.stan));
            assert!(r.stan > 200 && !t.pending.contains(&original_stan));
        }
        // Nothing answered: the next round sends the reversals again as they were, never a
        // new reversal of a reversal.
        let second = t.resolutions(3);
        assert_eq!(second.len(), 200);
        for r in reversals {
            assert!(second.iter().any(|o| o.stan == r.stan && o.request == r.request && o.flags == FLAG_RETRANSMIT));
        }
        let reversed_first: HashSet<u32> = first
            .iter()
            .filter_map(|o| match o.request {
                Request::Reversal { original_stan, .. } => Some(original_stan),
                _ => None,
            })
            .collect();
        for o in &second {
            if let Request::Reversal { original_stan, .. } = o.request {
                assert!(original_stan <= 200, "a reversal of reversal stan {original_stan}");
                assert!(!reversed_first.contains(&original_stan) || o.flags == FLAG_RETRANSMIT, "reversed twice");
            }
        }
    }

    #[test]
    fn a_declined_reversal_sends_the_original_again() {
        let mut t = load_terminal();
        let load = Request::Load { card: card(2), amount_minor: 500, method: 1 };
        t.queue.push_back(Work::Post { request: load, hold: None });
        t.next_new(false).unwrap();
        // Force a reversal whatever the seed says.
        let reversal_stan = (0..u64::MAX)
            .find_map(|seed| {
                let out = t.resolutions(seed);
                out.first().and_then(|o| matches!(o.request, Request::Reversal { .. }).then_some(o.stan))
            })
            .unwrap();
        let declined = CardReply { code: ResponseCode::InsufficientValue, ..CardReply::default() };
        t.settle(reversal_stan, declined);
        assert!(t.pending.contains(&1) && t.records[&1].must_retransmit);
        for seed in 0..20 {
            let out = t.resolutions(seed);
            assert!(out.iter().all(|o| o.stan == 1 && o.request == load && o.flags == FLAG_RETRANSMIT));
        }
        t.settle(1, approved(77));
        assert!(t.pending.is_empty());
        assert!(t.mismatches.is_empty(), "{:?}", t.mismatches);
    }

    #[test]
    fn holds_open_for_captures_and_come_back_when_a_capture_did_not_happen() {
        let mut t = load_terminal();
        let hold = Request::Hold { card: card(3), amount_minor: 1_000, category: 3, verification: Verification::NONE };
        t.queue.push_back(Work::Post { request: hold, hold: None });
        t.next_new(false).unwrap();
        t.settle(1, approved(50));
        let open = OpenHold { card: card(3), txn_id: 50, amount_minor: 1_000 };
        assert_eq!(t.open_holds, [open]);
        // A capture takes it; its reversal (approved) opens it again.
        let capture = Request::Capture { card: card(3), hold_txn_id: 50, amount_minor: 950 };
        t.open_holds.clear();
        t.queue.push_back(Work::Post { request: capture, hold: Some(open) });
        t.next_new(false).unwrap();
        let reversal = Request::Reversal { card: card(3), original_stan: 2, amount_minor: 950 };
        t.records.insert(
            3,
            Record { request: reversal, hold: None, outcome: Outcome::Unresolved, attempts: 0, must_retransmit: false },
        );
        t.records.get_mut(&2).unwrap().outcome = Outcome::ReversedBy(3);
        t.settle(3, approved(0));
        assert_eq!(t.open_holds, [open]);
        assert!(t.mismatches.is_empty(), "{:?}", t.mismatches);
    }

    #[test]
    fn unexpected_codes_are_mismatches() {
        let mut t = load_terminal();
        let capture = Request::Capture { card: card(3), hold_txn_id: 50, amount_minor: 950 };
        t.queue.push_back(Work::Post { request: capture, hold: None });
        t.next_new(false).unwrap();
        t.settle(1, CardReply { code: ResponseCode::OriginalNotFound, ..CardReply::default() });
        assert_eq!(t.mismatches.len(), 1);
    }
}

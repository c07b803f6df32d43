//! Crash and recovery with the real binary: SIGKILL during traffic, restart, and check that
//! every acknowledged change is there exactly once and retransmissions get original replies.

use protocol::Verification;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use protocol::client::Client;
use protocol::{CardNo, CardReply, Category, PaymentMethod, Request, Response, ResponseCode as C};

const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;
const CARDS: u64 = 40;
const OPENING_MINOR: i64 = 1_000_000;
const TERMINALS: u32 = 8;

mod support;
use support::{admin, connect, key_of};

/// Starts the real binary on `data` (see `support::start_binary`).
fn start(data: &Path) -> (Child, SocketAddr) {
    support::start_binary(env!("CARGO_BIN_EXE_cardswitch"), data, None)
}

fn card(n: u64) -> CardNo {
    CardNo(FIRST + n)
}

fn card_reply(response: Response) -> CardReply {
    match response {
        Response::Card { reply, .. } => reply,
        other => panic!("expected a card reply, got {other:?}"),
    }
}

/// One terminal's sales: each request by stan, and the reply if one arrived before the kill.
struct TerminalLog {
    terminal: u32,
    sent: Vec<(u32, Request)>,
    answered: HashMap<u32, CardReply>,
}

/// Sends sales one at a time (window 1, like a real POS) until the connection dies.
async fn drive(addr: SocketAddr, terminal: u32) -> TerminalLog {
    let mut log = TerminalLog { terminal, sent: Vec::new(), answered: HashMap::new() };
    let mut client = connect(addr, terminal, STORE).await;
    client.set_call_timeout_ms(5_000);
    if client.sign_on(1, STORE).await.is_err() {
        return log;
    }
    for i in 0..100_000u32 {
        let stan = 1_000 + i;
        let amount_minor = 100 + i64::from((terminal * 7 + i) % 50);
        let request = Request::Sale {
            card: card(u64::from(terminal * 13 + i * 7) % CARDS),
            amount_minor,
            category: Category::Retail as u8,
            flags: 0,
            verification: Verification::NONE,
        };
        log.sent.push((stan, request));
        match client.call(stan, request).await {
            Ok(response) => {
                log.answered.insert(stan, card_reply(response));
            }
            Err(_) => break,
        }
    }
    log
}

#[test]
fn sigkill_during_traffic_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut server, addr) = start(dir.path());

    runtime.block_on(async {
        let mut admin = connect(addr, 1, STORE).await;
        admin.sign_on(1, STORE).await.unwrap();
        let import = Request::ImportRange { first: card(0), last: card(999), product: 1, store_id: STORE };
        assert_eq!(admin.call(2, import).await.unwrap().code(), C::Approved);
        for n in 0..CARDS {
            let sell =
                Request::SellCard { card: card(n), amount_minor: OPENING_MINOR, method: PaymentMethod::Cash as u8 };
            assert_eq!(admin.call(10 + n as u32, sell).await.unwrap().code(), C::Approved);
        }
    });

    // Traffic from several terminals; the server dies under it.
    let drivers: Vec<_> = (0..TERMINALS).map(|t| runtime.spawn(drive(addr, 100 + t))).collect();
    std::thread::sleep(Duration::from_millis(1_500));
    server.kill().expect("SIGKILL");
    server.wait().unwrap();
    let logs: Vec<TerminalLog> = drivers.into_iter().map(|d| runtime.block_on(d).unwrap()).collect();
    let acked: usize = logs.iter().map(|l| l.answered.len()).sum();
    let in_flight = logs.iter().filter(|l| l.sent.len() > l.answered.len()).count();
    eprintln!("killed with {acked} sales acknowledged and {in_flight} in flight");
    assert!(acked > 100, "traffic was flowing when the server died ({acked} acknowledged)");
    assert!(logs.iter().any(|l| l.sent.len() > l.answered.len()), "some request was in flight at the kill");

    let (mut server, addr) = start(dir.path());
    let (expected_cash, approved_sales) = runtime.block_on(async {
        let mut spent: HashMap<CardNo, i64> = HashMap::new();
        let mut approved = 0usize;
        for log in &logs {
            // The terminals' keys survived the kill: no provisioning again.
            let mut client =
                Client::connect_with_key(addr, log.terminal, key_of(&admin(), log.terminal)).await.unwrap();
            assert_eq!(client.sign_on(2, STORE).await.unwrap().code, C::Approved);
            for (stan, request) in &log.sent {
                // Every request is sent again: acknowledged ones must get their original
                // reply; the one in flight at the kill gets whatever it got, exactly once.
                let again = card_reply(client.call(*stan, *request).await.unwrap());
                if let Some(original) = log.answered.get(stan) {
                    assert_eq!(&again, original, "terminal {} stan {stan}", log.terminal);
                }
                if again.code == C::Approved {
                    approved += 1;
                    if let Request::Sale { card, amount_minor, .. } = request {
                        *spent.entry(*card).or_default() += amount_minor;
                    }
                }
            }
        }
        (spent, approved)
    });
    runtime.block_on(async {
        let mut client = connect(addr, 1, STORE).await;
        client.sign_on(3, STORE).await.unwrap();
        for n in 0..CARDS {
            let balance = card_reply(client.call(100 + n as u32, Request::Balance { card: card(n) }).await.unwrap());
            let spent = expected_cash.get(&card(n)).copied().unwrap_or(0);
            assert_eq!(balance.cash_minor, OPENING_MINOR - spent, "card {n}");
        }
    });
    server.kill().unwrap();
    server.wait().unwrap();

    // The journal holds each approved sale exactly once.
    let store = cardswitch::store::Store::open(dir.path()).unwrap();
    let sales = store.journal().map(|e| e.unwrap()).filter(|e| e.kind == cardswitch::engine::TxnKind::Sale).count();
    assert_eq!(sales, approved_sales, "one journal entry per approved sale");
    let spent_total: i64 = store
        .journal()
        .map(|e| e.unwrap())
        .filter(|e| e.kind == cardswitch::engine::TxnKind::Sale)
        .map(|e| e.amount_minor)
        .sum();
    assert_eq!(spent_total, expected_cash.values().sum::<i64>());
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut c = connect(addr, 1, STORE).await;
        assert_eq!(c.call(1, Request::Echo).await.unwrap().code(), C::Approved);
    });
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    assert_eq!(unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let output = server.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
}

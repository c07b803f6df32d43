//! Storage faults with the real binary. A disk that fills up (every file the switch writes is
//! limited in size with `RLIMIT_FSIZE`, so its writes fail with `EFBIG` once the log reaches
//! it) must make the switch fail-stop: it answers `system_error`, never acknowledges a change it
//! could not make durable, and after a restart with room again every acknowledged change is
//! there exactly once. Injected commit failures (write or fsync) are covered in process by
//! `partition::tests`.

use protocol::Verification;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{CardNo, Category, PaymentMethod, Request, Response, ResponseCode as C};

mod support;
use support::{admin, connect, key_of, start_binary};

const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;
const CARDS: u64 = 20;
const OPENING_MINOR: i64 = 1_000_000_000;
/// The largest file the switch may write before its disk counts as full.
const MAX_FILE_BYTES: u64 = 2 << 20;
/// Sales sent before giving up on filling the disk.
const MAX_SALES: u32 = 200_000;

fn card(n: u64) -> CardNo {
    CardNo(FIRST + n)
}

#[test]
fn a_full_disk_stops_the_switch_without_losing_an_acknowledged_sale() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A free port for /health and /metrics (taken back from the kernel just before).
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let metrics_arg = metrics.to_string();
    let (mut server, addr) = support::start_binary_with(
        env!("CARGO_BIN_EXE_cardswitch"),
        &data,
        Some(MAX_FILE_BYTES),
        &["--metrics", &metrics_arg],
        &[],
    );
    assert_eq!(support::http_get(metrics, "/health"), (200, "ready\n".to_string()));

    // Sales until the switch refuses them for want of disk; every approval is recorded.
    let (spent, refused) = runtime.block_on(async {
        let mut client = connect(addr, admin().terminal_id, STORE).await;
        assert_eq!(client.sign_on(1, STORE).await.unwrap().code, C::Approved);
        let import = Request::ImportRange { first: card(0), last: card(999), product: 1, store_id: STORE };
        assert_eq!(client.call(2, import).await.unwrap().code(), C::Approved);
        for n in 0..CARDS {
            let sell =
                Request::SellCard { card: card(n), amount_minor: OPENING_MINOR, method: PaymentMethod::Cash as u8 };
            assert_eq!(client.call(10 + n as u32, sell).await.unwrap().code(), C::Approved);
        }
        let mut spent: HashMap<CardNo, i64> = HashMap::new();
        let mut refused = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..MAX_SALES {
            let n = u64::from(i) % CARDS;
            let sale = Request::Sale {
                card: card(n),
                amount_minor: 100,
                category: Category::Retail as u8,
                flags: 0,
                verification: Verification::NONE,
            };
            match client.call(1_000 + i, sale).await {
                Ok(Response::Card { reply, .. }) if reply.code == C::Approved => {
                    *spent.entry(card(n)).or_default() += 100;
                }
                Ok(response) => {
                    *refused.entry(response.code()).or_insert(0u32) += 1;
                    if refused.values().sum::<u32>() >= 20 {
                        break;
                    }
                }
                Err(error) => panic!("the switch should answer, not fail: {error}"),
            }
            assert!(Instant::now() < deadline, "the disk never filled");
        }
        (spent, refused)
    });
    assert!(refused.contains_key(&C::SystemError), "no system_error after filling the disk: {refused:?}");
    assert!(refused.keys().all(|c| *c == C::SystemError), "{refused:?}");
    let log = std::fs::read_to_string(data.join("keys").join("switch.log")).unwrap();
    assert!(log.contains("storage failure"), "the log names the failure:\n{log}");
    // Operations see it: /health fails, the failure is counted.
    let (status, body) = support::http_get(metrics, "/health");
    assert!(status == 503 && body.starts_with("failed:"), "{status} {body}");
    let (_, text) = support::http_get(metrics, "/metrics");
    assert!(text.lines().any(|l| l.starts_with("cardswitch_storage_failures_total ") && !l.ends_with(" 0")), "{text}");
    server.kill().unwrap();
    server.wait().unwrap();

    // Room again: every acknowledged sale is there once, nothing refused is.
    let (mut server, addr) = start_binary(env!("CARGO_BIN_EXE_cardswitch"), &data, None);
    runtime.block_on(async {
        let mut client = Client::connect_with_key(addr, admin().terminal_id, key_of(&admin(), 1)).await.unwrap();
        assert_eq!(client.sign_on(1, STORE).await.unwrap().code, C::Approved);
        for n in 0..CARDS {
            let balance = match client.call(500_000 + n as u32, Request::Balance { card: card(n) }).await.unwrap() {
                Response::Card { reply, .. } => reply.cash_minor,
                other => panic!("{other:?}"),
            };
            let expected = OPENING_MINOR - spent.get(&card(n)).copied().unwrap_or(0);
            assert_eq!(balance, expected, "card {n}");
        }
    });
    server.kill().unwrap();
    server.wait().unwrap();
    let store = cardswitch::store::Store::open(&data).unwrap();
    let sales = store.journal().map(Result::unwrap).filter(|e| e.kind == cardswitch::engine::TxnKind::Sale).count();
    let approved: i64 = spent.values().sum::<i64>() / 100;
    assert_eq!(sales as i64, approved, "one journal entry per acknowledged sale");
}

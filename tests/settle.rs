//! `cardswitch settle` as finance runs it: the real binary over the data directory of a day
//! driven over TCP. In balance with a matching finance file (exit 0), every deliberate
//! difference listed (exit 3), and a rerun gives the same bytes (S8).

use std::path::Path;
use std::process::Command;

use cardswitch::server::Server;
use protocol::{CardNo, Category, PaymentMethod, Request, ResponseCode as C, Verification};

mod support;
use support::desk::Desk;
use support::sale;
use support::{admin, config, connect};

const FIRST: u64 = 6200880000000000;

fn settle(data: &Path, date: &str, finance: Option<&Path>, out: &Path) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardswitch"));
    command.args(["settle", "--data"]).arg(data).args(["--date", date, "--out"]).arg(out);
    if let Some(finance) = finance {
        command.arg("--finance").arg(finance);
    }
    let output = command.output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into())
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into(), std::fs::read(&p).unwrap())).collect()
}

/// Drives a day at two stores over TCP (10 cards sold, 500.00 each, half in cash and half by
/// WeChat, and a 123.45 sale on each) and stops the switch; returns the business date.
async fn two_store_day(data: &Path) -> u32 {
    let server = Server::start(config(data)).await.unwrap();
    let mut date = 0;
    for (store, terminal) in [(21u32, 11u32), (22, 12)] {
        let mut desk = Desk::open(connect(server.local_addr, terminal, store).await, terminal, store).await;
        let first = CardNo(FIRST + u64::from(store) * 1_000);
        let import = Request::ImportRange { first, last: CardNo(first.0 + 99), product: 1, store_id: store };
        assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
        for n in 0..10u64 {
            let card = CardNo(first.0 + n);
            let method = if n % 2 == 0 { PaymentMethod::Cash } else { PaymentMethod::Wechat } as u8;
            let sell = Request::SellCard { card, amount_minor: 50_000, method };
            assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
            assert_eq!(desk.card(|_, _, _| sale(card, 12_345)).await.code, C::Approved);
        }
        date = desk.client.sign_on(9_999, store).await.unwrap().business_date;
    }
    server.shutdown().await;
    date
}

fn date_text(date: u32) -> String {
    format!("{:04}-{:02}-{:02}", date / 10_000, date / 100 % 100, date % 100)
}

#[tokio::test]
async fn s3_s4_s5_s8_a_day_of_two_stores_settles_in_balance_and_finance_differences_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let date = two_store_day(&data).await;
    let day = date_text(date);

    // Finance collected 5 × 500.00 in cash and 5 × 500.00 by WeChat at each store.
    let finance = dir.path().join("finance.csv");
    let lines = |cash_22: &str| {
        format!(
            "date,store,method,amount\n{day},21,cash,2500.00\n{day},21,wechat,2500.00\n{day},22,cash,{cash_22}\n{day},22,wechat,2500.00\n"
        )
    };
    std::fs::write(&finance, lines("2500.00")).unwrap();
    let out = dir.path().join("out");
    let (code, stderr) = settle(&data, &day, Some(&finance), &out);
    assert_eq!(code, 0, "{stderr}");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"balanced\":true") && summary.contains("\"in_balance\":true"), "{summary}");
    assert!(summary.contains("\"transactions\":40"), "{summary}");
    assert!(summary.contains("\"cash_closing_minor\":753100"), "20 × (500.00 − 123.45): {summary}");
    let stores = std::fs::read_to_string(out.join("stores.csv")).unwrap();
    assert!(stores.contains("21,sale,none,10,1234.50,-1234.50,0.00"), "{stores}");
    let first_run = files(&out);
    let (code, _) = settle(&data, &day, Some(&finance), &out);
    assert_eq!((code, files(&out)), (0, first_run.clone()), "S8: a rerun gives the same bytes");
    // What a run killed while writing leaves behind (a file cut short, a temporary one) is
    // replaced by the next run.
    let stores_csv = &first_run.iter().find(|(n, _)| n == "stores.csv").unwrap().1;
    std::fs::write(out.join("stores.csv"), &stores_csv[..20]).unwrap();
    std::fs::write(out.join("summary.partial"), b"{\"date\":").unwrap();
    std::fs::remove_file(out.join("summary.json")).unwrap();
    let (code, _) = settle(&data, &day, Some(&finance), &out);
    std::fs::remove_file(out.join("summary.partial")).ok();
    assert_eq!((code, files(&out)), (0, first_run), "the rerun gives the same files");

    // A deliberate difference: finance counted 2,450.00 in cash at store 22.
    std::fs::write(&finance, lines("2450.00")).unwrap();
    let (code, _) = settle(&data, &day, Some(&finance), &out);
    assert_eq!(code, 3, "finance differs");
    let differences = std::fs::read_to_string(out.join("differences.csv")).unwrap();
    assert_eq!(differences, "store,method,finance,switch,difference\n22,cash,2450.00,2500.00,-50.00\n");

    // Bad input: a clear message and a non-zero exit, nothing written in its place.
    let (code, stderr) = settle(&data, "2026-02-30", None, &dir.path().join("none"));
    assert!(code != 0 && stderr.contains("--date 2026-02-30"), "{stderr}");
    let _ = admin();
}

/// Copies a stopped switch's data directory.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// S1, S7, S8: a settlement killed with SIGKILL at any moment (while it closes the day and
/// runs its housekeeping in the data directory, while it reads, while it writes) and then
/// run again gives exactly the files of a run that was never interrupted.
#[tokio::test]
async fn s8_a_settlement_killed_at_any_moment_and_run_again_gives_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    let day = date_text(two_store_day(&pristine).await);
    let reference_data = dir.path().join("reference");
    copy_dir(&pristine, &reference_data);
    let reference_out = dir.path().join("reference-out");
    let (code, stderr) = settle(&reference_data, &day, None, &reference_out);
    assert_eq!(code, 0, "{stderr}");
    let reference = files(&reference_out);
    let mut killed_running = 0;
    for (attempt, delay_ms) in [0u64, 3, 6, 10, 15, 20, 30, 45, 60, 90].into_iter().enumerate() {
        let data = dir.path().join(format!("data-{attempt}"));
        copy_dir(&pristine, &data);
        let out = dir.path().join(format!("out-{attempt}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
            .args(["settle", "--data"])
            .arg(&data)
            .args(["--date", &day, "--out"])
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (code, stderr) = settle(&data, &day, None, &out);
        assert_eq!(code, 0, "after a kill at {delay_ms} ms: {stderr}");
        let mut again = files(&out);
        // A temporary file of the killed run, if any, is not one of the outputs.
        again.retain(|(name, _)| !name.ends_with(".partial"));
        assert_eq!(again, reference, "after a kill at {delay_ms} ms");
    }
    assert!(killed_running >= 3, "only {killed_running} kills hit a running settlement");
}

/// S1, S5, S8: settling while terminals keep selling: the running switch closes the day at
/// every store, its housekeeping runs, and the batch reads a consistent snapshot while the
/// sales go on into the next day. Nothing is counted twice or missed: settling the same
/// day again after the switch stopped gives the same files, and the liability balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_s5_s8_settling_a_running_switch_under_traffic_balances_and_matches_the_stopped_day() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const CASHIERS: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(config(&data)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let approved = Arc::new(AtomicU64::new(0));
    let mut date = 0;
    let mut cashiers = Vec::new();
    for n in 0..CASHIERS {
        let (store, terminal) = (21 + n % 2, 40 + n);
        let mut desk = Desk::open(connect(server.local_addr, terminal, store).await, terminal, store).await;
        date = desk.client.sign_on(1, store).await.unwrap().business_date;
        let first = CardNo(FIRST + u64::from(n) * 1_000);
        let import = Request::ImportRange { first, last: CardNo(first.0 + 49), product: 1, store_id: store };
        assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
        let (stop, approved) = (stop.clone(), approved.clone());
        cashiers.push(tokio::spawn(async move {
            for k in 0..50u64 {
                let sell = Request::SellCard { card: CardNo(first.0 + k), amount_minor: 1_000_000, method: 1 };
                assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
            }
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let reply = desk.card(|_, _, _| sale(CardNo(first.0 + k % 50), 100 + (k % 7) as i64)).await;
                assert_eq!(reply.code, C::Approved);
                approved.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        }));
    }
    // Let the day fill up, then settle it while the sales go on.
    while approved.load(Ordering::Relaxed) < 2_000 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let day = date_text(date);
    let live_out = dir.path().join("live");
    let (code, stderr) = {
        let (data, day, out) = (data.clone(), day.clone(), live_out.clone());
        tokio::task::spawn_blocking(move || settle(&data, &day, None, &out)).await.unwrap()
    };
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("the switch is running"), "{stderr}");
    let at_settlement = approved.load(Ordering::Relaxed);
    // And the sales go on after it, into the next day.
    while approved.load(Ordering::Relaxed) < at_settlement + 1_000 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for cashier in cashiers {
        cashier.await.unwrap();
    }
    server.shutdown().await;
    let summary = std::fs::read_to_string(live_out.join("summary.json")).unwrap();
    assert!(summary.contains("\"balanced\":true"), "{summary}");
    let stopped_out = dir.path().join("stopped");
    let (code, stderr) = settle(&data, &day, None, &stopped_out);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(files(&live_out), files(&stopped_out), "the day read live is the day read stopped");
    // Every approved sale is in the journal, on the closed day or the next.
    let store = cardswitch::store::Store::open(&data).unwrap();
    let (mut on_day, mut after) = (0u64, 0u64);
    for entry in store.journal() {
        let entry = entry.unwrap();
        if entry.kind == cardswitch::engine::TxnKind::Sale {
            if entry.business_date == date {
                on_day += 1;
            } else {
                assert!(entry.business_date > date);
                after += 1;
            }
        }
    }
    assert_eq!(on_day + after, approved.load(Ordering::Relaxed));
    assert!(after >= 1_000 && on_day >= 2_000, "{on_day} on the day, {after} after it");
    assert!(summary.contains(&format!("\"transactions\":{}", on_day + 200)), "{summary}");
}

/// S2: a terminal sends its own counts and amounts for its batch; the switch answers in or out
/// of balance with its figures, read from the journal: a retransmitted sale counted once, a
/// declined one not at all, the figures the same after a restart and, once the day closed,
/// under that day's date while the session's current day starts empty.
#[tokio::test]
async fn s2_a_terminals_batch_is_in_balance_with_the_journal_or_shows_the_switchs_figures() {
    use protocol::{BatchTotals, PostingKind};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(config(&data)).await.unwrap();
    let (store, terminal) = (21u32, 11u32);
    let mut desk = Desk::open(connect(server.local_addr, terminal, store).await, terminal, store).await;
    let date = desk.client.sign_on(desk.stan + 1, store).await.unwrap().business_date;
    desk.stan += 1;
    let first = CardNo(FIRST);
    let import = Request::ImportRange { first, last: CardNo(first.0 + 9), product: 1, store_id: store };
    assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
    let mut mine = BatchTotals::default();
    for n in 0..3u64 {
        let sell = Request::SellCard { card: CardNo(first.0 + n), amount_minor: 10_000, method: 1 };
        assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
        mine.add(PostingKind::SellCard, 10_000);
    }
    let sold = desk.card(|_, _, _| sale(first, 2_550)).await;
    mine.add(PostingKind::Sale, sold.amount_minor);
    // Sent again under the same stan: the remembered reply, one posting.
    let again = desk.client.call(desk.stan, sale(first, 2_550)).await.unwrap();
    assert_eq!(again.code(), C::Approved);
    // Declined (more than the card holds): no posting.
    assert_eq!(desk.card(|_, _, _| sale(first, 1_000_000)).await.code, C::InsufficientValue);
    let refund = Request::Refund { card: first, original_txn_id: sold.txn_id, amount_minor: 550 };
    assert_eq!(desk.card(|_, _, _| refund).await.code, C::Approved);
    mine.add(PostingKind::Refund, 550);
    let batch = |business_date, totals| Request::BatchTotals { business_date, totals };
    let reply = ask(&mut desk, batch(0, mine)).await;
    assert_eq!((reply.code, reply.in_balance, reply.business_date, reply.totals), (C::Approved, 1, date, mine));
    // The cashier miscounted the refunds: out of balance, with the switch's figures.
    let mut miscounted = mine;
    miscounted.counts[5] = 2;
    let reply = ask(&mut desk, batch(date, miscounted)).await;
    assert_eq!((reply.in_balance, reply.totals), (0, mine));
    // Bad input: a date that is none.
    let reply = ask(&mut desk, batch(20261131, mine)).await;
    assert_eq!(reply.code, C::InvalidField);
    drop(desk);
    server.shutdown().await;

    // After a restart (everything materialized) and a close of the day.
    let server = Server::start(config(&data)).await.unwrap();
    let mut desk = Desk::open(connect(server.local_addr, terminal, store).await, terminal, store).await;
    desk.stan += 100;
    let reply = ask(&mut desk, batch(date, mine)).await;
    assert_eq!(reply.in_balance, 1, "{reply:?}");
    let (code, stderr) = {
        let (data, day, out) = (data.clone(), date_text(date), dir.path().join("out"));
        tokio::task::spawn_blocking(move || settle(&data, &day, None, &out)).await.unwrap()
    };
    assert_eq!(code, 0, "{stderr}");
    let reply = ask(&mut desk, batch(0, BatchTotals::default())).await;
    assert_eq!((reply.in_balance, reply.business_date > date), (1, true), "the new day starts empty: {reply:?}");
    let reply = ask(&mut desk, batch(date, mine)).await;
    assert_eq!(reply.in_balance, 1, "the closed day keeps its figures");
    drop(desk);
    server.shutdown().await;
}

/// Sends `request` (a `batch_totals`) and returns its reply.
async fn ask(desk: &mut Desk, request: Request) -> protocol::BatchTotalsReply {
    match desk.call(|_, _, _| request).await {
        protocol::Response::BatchTotals(reply) => reply,
        other => panic!("{other:?}"),
    }
}

/// S7, S5: the batch runs the day-end housekeeping as journaled postings of the day it closes:
/// a deposit hold older than the catalog's expiry (here one day) is released by the close,
/// shows in the day's settlement, and leaves no hold outstanding; the liability balances.
#[tokio::test]
async fn s7_the_batch_releases_an_expired_hold_as_a_posting_of_the_day() {
    let catalog = r#"
version = 1
categories = ["room", "retail"]

[settings]
hold_expiry_days = 1

[products.cash]
real_name = false
pin_required = false
points = false
member_discount = false
load_min = "1.00"
load_max = "50000.00"
balance_max = "100000.00"
reloadable = true
refundable = false
transferable = true
holds = true
"#;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = config(&data);
    config.catalog =
        Some(std::sync::Arc::new(cardswitch::engine::catalog::Catalog::from_toml_str("test", catalog).unwrap()));
    let server = Server::start(config).await.unwrap();
    let (store, terminal) = (21u32, 11u32);
    let mut desk = Desk::open(connect(server.local_addr, terminal, store).await, terminal, store).await;
    let stan = desk.next();
    let date = desk.client.sign_on(stan, store).await.unwrap().business_date;
    let card = CardNo(FIRST);
    let import = Request::ImportRange { first: card, last: CardNo(FIRST + 9), product: 4, store_id: store };
    assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
    let sell = Request::SellCard { card, amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
    let hold =
        Request::Hold { card, amount_minor: 40_000, category: Category::Room as u8, verification: Verification::NONE };
    assert_eq!(desk.card(|_, _, _| hold).await.held_minor, 40_000);
    drop(desk);
    server.shutdown().await;

    let out = dir.path().join("out");
    let (code, stderr) = settle(&data, &date_text(date), None, &out);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("housekeeping of") && stderr.contains("1 postings"), "{stderr}");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"balanced\":true") && summary.contains("\"holds_minor\":0"), "{summary}");
    assert!(summary.contains("\"housekeeping_postings\":1") && summary.contains("\"transactions\":3"), "{summary}");
    let stores = std::fs::read_to_string(out.join("stores.csv")).unwrap();
    assert!(stores.contains("21,hold_expired,none,1,400.00,0.00,0.00"), "{stores}");
    // Settled again: the housekeeping is not repeated, the files are the same.
    let first = files(&out);
    let (code, stderr) = settle(&data, &date_text(date), None, &out);
    assert_eq!((code, files(&out)), (0, first), "{stderr}");
    assert!(!stderr.contains("housekeeping of"), "{stderr}");
}

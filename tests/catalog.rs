//! The catalog in force is recorded with every journal entry; a bad catalog file stops the
//! switch from starting, with an error naming the file, the key and the problem.

use std::process::Command;
use std::sync::Arc;

use cardswitch::engine::catalog::Catalog;
use cardswitch::server::Server;
use protocol::{CardNo, Category, PaymentMethod, Request, ResponseCode as C};

mod support;
use support::{admin, config, connect};

const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;

#[tokio::test]
async fn every_journal_entry_records_the_catalog_version_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let retail = include_str!("../catalogs/retail.toml");
    let catalog = Catalog::from_toml_str("catalogs/retail.toml", retail).unwrap();
    let version = catalog.version;
    let mut config = config(dir.path());
    config.catalog = Some(Arc::new(catalog));
    let server = Server::start(config).await.unwrap();
    let mut client = connect(server.local_addr, admin().terminal_id, STORE).await;
    assert_eq!(client.sign_on(1, STORE).await.unwrap().code, C::Approved);
    let card = CardNo(FIRST);
    let import = Request::ImportRange { first: card, last: CardNo(FIRST + 9), product: 1, store_id: STORE };
    assert_eq!(client.call(2, import).await.unwrap().code(), C::Approved);
    let sell = Request::SellCard { card, amount_minor: 10_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(client.call(3, sell).await.unwrap().code(), C::Approved);
    let sale = Request::Sale { card, amount_minor: 1_000, category: Category::Retail as u8, flags: 0 };
    assert_eq!(client.call(4, sale).await.unwrap().code(), C::Approved);
    server.shutdown().await;

    let store = cardswitch::store::Store::open(dir.path()).unwrap();
    let versions: Vec<u32> = store.journal().map(|e| e.unwrap().catalog_version).collect();
    assert_eq!(versions, vec![version, version]);
    drop(store);

    // Without a catalog: the core rules, version 0.
    let server = Server::start(support::config(dir.path())).await.unwrap();
    let mut client = connect(server.local_addr, admin().terminal_id, STORE).await;
    assert_eq!(client.sign_on(1, STORE).await.unwrap().code, C::Approved);
    let sale = Request::Sale { card, amount_minor: 1_000, category: Category::Retail as u8, flags: 0 };
    assert_eq!(client.call(5, sale).await.unwrap().code(), C::Approved);
    server.shutdown().await;
    let store = cardswitch::store::Store::open(dir.path()).unwrap();
    let versions: Vec<u32> = store.journal().map(|e| e.unwrap().catalog_version).collect();
    assert_eq!(versions, vec![version, version, 0]);
}

#[test]
fn a_bad_catalog_stops_the_switch_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let broken = include_str!("../catalogs/retail.toml").replace("load_min = \"100.00\"", "load_min = \"100.005\"");
    std::fs::write(&bad, broken).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["serve", "--data"])
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--catalog"])
        .arg(&bad)
        .env("CARDSWITCH_HOME", dir.path().join("keys"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("load_min"), "{stderr}");
    assert!(output.stdout.is_empty(), "it never listened");
}

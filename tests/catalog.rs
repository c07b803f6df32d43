//! The catalog in force is recorded with every journal entry; a bad catalog file stops the
//! switch from starting, with an error naming the file, the key and the problem.

use protocol::Verification;
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
    // A gift card (product 2): no PIN to enter.
    let import = Request::ImportRange { first: card, last: CardNo(FIRST + 9), product: 2, store_id: STORE };
    assert_eq!(client.call(2, import).await.unwrap().code(), C::Approved);
    let sell = Request::SellCard { card, amount_minor: 10_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(client.call(3, sell).await.unwrap().code(), C::Approved);
    let sale = Request::Sale {
        card,
        amount_minor: 1_000,
        category: Category::Retail as u8,
        flags: 0,
        verification: Verification::NONE,
    };
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
    let sale = Request::Sale {
        card,
        amount_minor: 1_000,
        category: Category::Retail as u8,
        flags: 0,
        verification: Verification::NONE,
    };
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

/// T2, L3, L4 over TCP: the PIN travels sealed under the terminal's key, the switch checks it
/// against the keyed hash it keeps, and the count of wrong PINs survives a restart.
#[tokio::test]
async fn t2_l4_pins_travel_sealed_and_wrong_ones_count_across_a_restart() {
    use protocol::{Sealed, SecretKind};
    let dir = tempfile::tempdir().unwrap();
    let retail = include_str!("../catalogs/retail.toml");
    let start = || async {
        let mut config = config(dir.path());
        config.catalog = Some(Arc::new(Catalog::from_toml_str("retail.toml", retail).unwrap()));
        Server::start(config).await.unwrap()
    };
    let terminal = admin().terminal_id;
    let key = support::key_of(&admin(), terminal);
    let card = CardNo(FIRST);
    let sale = |stan: u32, pin: Option<&str>, approver_id: u32| {
        let pin = pin.map_or(Sealed::NONE, |p| Sealed::seal(&key, SecretKind::Pin, terminal, stan, p).unwrap());
        let verification = Verification { pin, approver_id, ..Verification::NONE };
        Request::Sale { card, amount_minor: 1_000, category: Category::Retail as u8, flags: 0, verification }
    };
    let card_reply = |response: protocol::Response| match response {
        protocol::Response::Card { reply, .. } => reply,
        other => panic!("not a card reply: {other:?}"),
    };

    let master = support::keys().master;
    cardswitch::operators::add_to_data_dir(dir.path(), &master, 1, protocol::OperatorRole::Admin, 0, b"4dmin-pass")
        .unwrap();
    let server = start().await;
    let mut client = connect(server.local_addr, terminal, STORE).await;
    assert_eq!(client.sign_on(1, STORE).await.unwrap().code, C::Approved);
    let import = Request::ImportRange { first: card, last: CardNo(FIRST + 9), product: 1, store_id: STORE };
    assert_eq!(client.call(2, import).await.unwrap().code(), C::Approved);
    let sell = Request::SellCard { card, amount_minor: 10_000, method: PaymentMethod::Cash as u8 };
    let sold = card_reply(client.call(3, sell).await.unwrap());
    assert_ne!(sold.notices & protocol::CardReply::NOTICE_PIN_MUST_CHANGE, 0, "L3");
    // M1: the member card's holder registers at the desk before the card is used.
    let mut desk = support::desk::Desk::open(connect(server.local_addr, 5, STORE).await, 5, STORE).await;
    let service =
        desk.set_operator((1, "4dmin-pass"), 41, protocol::OperatorRole::CustomerService, 0, Some("s3rvice41"));
    assert_eq!(service.await.code(), C::Approved);
    let holder = protocol::MemberData {
        id_type: 1,
        birth_date: 0,
        name: "张三".into(),
        id_number: "11010519900307101X".into(),
        phone: "13800138000".into(),
        address: String::new(),
        email: String::new(),
    };
    assert_eq!(desk.register((41, "s3rvice41"), card, &holder).await.code, C::Approved);
    assert_eq!(client.call(4, sale(4, None, 0)).await.unwrap().code(), C::PinRequired);
    let right = card_reply(client.call(5, sale(5, Some("000000"), 0)).await.unwrap());
    assert_eq!((right.code, right.discount_minor, right.amount_minor), (C::Approved, 50, 950), "T3: bronze 5%");
    assert_ne!(right.notices & protocol::CardReply::NOTICE_PIN_MUST_CHANGE, 0, "L3: the debit says so");
    let wrong = card_reply(client.call(6, sale(6, Some("123456"), 0)).await.unwrap());
    assert_eq!((wrong.code, wrong.pin_attempts_left), (C::WrongPin, 4));
    // A PIN sealed for another trace number does not open: refused as a bad field.
    assert_eq!(client.call(7, sale(8, Some("000000"), 0)).await.unwrap().code(), C::InvalidField);
    // No override is taken on a claim alone (O1).
    assert_eq!(client.call(9, sale(9, Some("000000"), 7)).await.unwrap().code(), C::OverrideRefused);
    server.shutdown().await;

    let server = start().await;
    let mut client = connect(server.local_addr, terminal, STORE).await;
    assert_eq!(client.sign_on(10, STORE).await.unwrap().code, C::Approved);
    let wrong = card_reply(client.call(11, sale(11, Some("654321"), 0)).await.unwrap());
    assert_eq!((wrong.code, wrong.pin_attempts_left), (C::WrongPin, 3), "the count survived the restart");
    assert_eq!(client.call(12, sale(12, Some("000000"), 0)).await.unwrap().code(), C::Approved);
    server.shutdown().await;
}

//! `cardswitch backup`, `restore` and `verify` as operations runs them: the real binary backs
//! up a switch while cashiers keep selling, the backup is restored into a new data directory,
//! both verify, and the restored switch answers as the original did when the backup was taken.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cardswitch::server::Server;
use protocol::{CardNo, Request, ResponseCode as C};

mod support;
use support::config;
use support::connect;
use support::desk::Desk;
use support::sale;

const FIRST: u64 = 6200880000000000;

async fn run(args: Vec<String>) -> (i32, String) {
    let (code, out, err) = support::run_cardswitch(args).await;
    (code, out + &err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_traffic_restores_verifies_and_answers_as_the_original_did() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(config(&data)).await.unwrap();
    // The traffic: two cashiers selling without pause.
    let stop = Arc::new(AtomicBool::new(false));
    let approved = Arc::new(AtomicU64::new(0));
    let mut cashiers = Vec::new();
    for n in 0..2u32 {
        let (store, terminal) = (21, 40 + n);
        let mut desk = Desk::open(connect(server.local_addr, terminal, store).await, terminal, store).await;
        let first = CardNo(FIRST + 1_000 * u64::from(n + 1));
        let import = Request::ImportRange { first, last: CardNo(first.0 + 19), product: 1, store_id: store };
        assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
        let (stop, approved) = (stop.clone(), approved.clone());
        cashiers.push(tokio::spawn(async move {
            for k in 0..20 {
                let sell = Request::SellCard { card: CardNo(first.0 + k), amount_minor: 1_000_000, method: 1 };
                assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
            }
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                assert!(desk.card(|_, _, _| sale(CardNo(first.0 + k % 20), 100)).await.code.is_approved());
                approved.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        }));
    }
    // A front desk whose requests before the backup are remembered by it.
    let mut front = Desk::open(connect(server.local_addr, 60, 21).await, 60, 21).await;
    let card = CardNo(FIRST);
    let import = Request::ImportRange { first: card, last: CardNo(FIRST + 9), product: 1, store_id: 21 };
    assert_eq!(front.call(|_, _, _| import).await.code(), C::Approved);
    let sell = Request::SellCard { card, amount_minor: 50_000, method: 1 };
    assert_eq!(front.card(|_, _, _| sell).await.code, C::Approved);
    let before = front.card(|_, _, _| sale(card, 12_345)).await;
    let before_stan = front.stan;
    while approved.load(Ordering::Relaxed) < 1_000 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let backup = dir.path().join("backup");
    let (code, text) = run(vec![
        "backup".into(),
        "--data".into(),
        data.display().to_string(),
        "--to".into(),
        backup.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{text}");
    // After the backup: not in it.
    assert_eq!(front.card(|_, _, _| sale(card, 1_000)).await.cash_minor, 50_000 - 12_345 - 1_000);
    let at_backup = approved.load(Ordering::Relaxed);
    while approved.load(Ordering::Relaxed) < at_backup + 500 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for cashier in cashiers {
        cashier.await.unwrap();
    }
    drop(front);
    server.shutdown().await;

    // Restore into a new directory; both verify.
    let restored = dir.path().join("restored");
    let (code, text) = run(vec![
        "restore".into(),
        "--from".into(),
        backup.display().to_string(),
        "--data".into(),
        restored.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{text}");
    for checked in [&data, &restored] {
        let (code, text) = run(vec!["verify".into(), "--data".into(), checked.display().to_string()]).await;
        assert_eq!(code, 0, "{}: {text}", checked.display());
        assert!(text.contains("verified: every balance is explained by its journal"), "{text}");
    }
    // Restoring over a directory in use is refused.
    let (code, text) = run(vec![
        "restore".into(),
        "--from".into(),
        backup.display().to_string(),
        "--data".into(),
        data.display().to_string(),
    ])
    .await;
    assert!(code != 0 && text.contains("is not empty"), "{text}");

    // The restored journal is the original's up to the backup, entry for entry.
    let original: std::collections::HashMap<u64, cardswitch::engine::JournalEntry> = {
        let store = cardswitch::store::Store::open(&data).unwrap();
        store.journal().map(|e| e.unwrap()).map(|e| (e.txn_id, e)).collect()
    };
    let copy: Vec<cardswitch::engine::JournalEntry> = {
        let store = cardswitch::store::Store::open(&restored).unwrap();
        store.journal().map(|e| e.unwrap()).collect()
    };
    assert!(copy.len() < original.len(), "the original went on after the backup");
    assert!(copy.iter().all(|e| original.get(&e.txn_id) == Some(e)), "a prefix of the original's journal");

    // The restored switch answers as the original did at the backup: the sale made before it
    // is remembered (T8), the one after it is not there.
    let server = Server::start(config(&restored)).await.unwrap();
    let mut front = Desk::open(connect(server.local_addr, 60, 21).await, 60, 21).await;
    let again = front.client.call(before_stan, sale(card, 12_345)).await.unwrap();
    assert_eq!(again, protocol::Response::Card { request: protocol::MsgType::Sale, reply: before });
    assert_eq!(front.card(|_, _, _| Request::Balance { card }).await.cash_minor, 50_000 - 12_345);
    drop(front);
    server.shutdown().await;

    // A balance the journal does not explain is found and named.
    {
        use cardswitch::store::CommitLog;
        let store = cardswitch::store::Store::open(&restored).unwrap();
        let mut stray = *copy.last().unwrap();
        stray.txn_id = u64::MAX / 2;
        stray.cash_delta_minor = 1;
        let fx = cardswitch::engine::Effects { journal: vec![stray], ..Default::default() };
        let mut bytes = Vec::new();
        cardswitch::store::records::encode_batch(&fx, &mut bytes);
        store.commit(u64::MAX / 2, &bytes).unwrap();
    }
    let (code, text) = run(vec!["verify".into(), "--data".into(), restored.display().to_string()]).await;
    assert_eq!(code, 4, "{text}");
    assert!(text.contains(&format!("problem: card {}", copy.last().unwrap().card)), "{text}");
}

//! Terminal authentication over real TCP (SPEC §3.1, §5.17, §5.18): every frame's MAC is
//! checked before anything is posted; unknown, forged, disabled and unauthorised terminals are
//! declined and counted; keys are stored only wrapped under the master key.

use bytes::BytesMut;
use cardswitch::keys::MasterKey;
use cardswitch::server::{Server, ServerError};
use protocol::client::Client;
use protocol::Verification;
use protocol::{
    encode_signed, CardNo, Category, Frame, Header, LocalTime, Message, PaymentMethod, Request, Response,
    ResponseCode as C, TerminalKey, TerminalRole,
};

mod support;
use support::config;
use support::{admin, connect, key_of, provision_as};

const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;
const POS: u32 = 1001;

fn card(n: u64) -> CardNo {
    CardNo(FIRST + n)
}

fn sale(n: u64, amount_minor: i64) -> Request {
    Request::Sale {
        card: card(n),
        amount_minor,
        category: Category::Retail as u8,
        flags: 0,
        verification: Verification::NONE,
    }
}

/// A request frame for `terminal_id`, signed with `key` (or unsigned).
fn frame_bytes(terminal_id: u32, stan: u32, request: Request, key: Option<&TerminalKey>) -> Vec<u8> {
    let frame = Frame {
        header: Header { flags: 0, terminal_id, stan, local_time: LocalTime(20261122100000) },
        message: Message::Request(request),
    };
    let mut wire = BytesMut::new();
    encode_signed(&frame, key, &mut wire);
    wire.to_vec()
}

/// Imports 100 cards and sells the first with 1,000.00, as the admin terminal.
async fn stock(addr: std::net::SocketAddr) -> Client {
    let mut admin = connect(addr, admin().terminal_id, STORE).await;
    assert_eq!(admin.sign_on(1, STORE).await.unwrap().code, C::Approved);
    let import = Request::ImportRange { first: card(0), last: card(99), product: 1, store_id: STORE };
    assert_eq!(admin.call(2, import).await.unwrap().code(), C::Approved);
    let sell = Request::SellCard { card: card(0), amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(admin.call(3, sell).await.unwrap().code(), C::Approved);
    admin
}

async fn cash_of(client: &mut Client, stan: u32, n: u64) -> i64 {
    match client.call(stan, Request::Balance { card: card(n) }).await.unwrap() {
        Response::Card { reply, .. } => reply.cash_minor,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn only_provisioned_terminals_with_the_right_key_may_post() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.local_addr;
    let mut admin_client = stock(addr).await;
    provision_as(addr, &support::admin(), POS, STORE, TerminalRole::Pos).await;

    // Unknown terminal: declined before anything else, unsigned.
    let mut stranger = Client::connect(addr, 4242).await.unwrap();
    assert_eq!(stranger.call(1, Request::Echo).await.unwrap().code(), C::UnknownTerminal);
    assert_eq!(stranger.sign_on(2, STORE).await.unwrap().code, C::UnknownTerminal);

    // The right terminal id with the wrong key: bad_mac, and its sale posts nothing.
    let wrong_key = admin_key_for(4242);
    let mut forger = Client::connect_with_key(addr, POS, wrong_key).await.unwrap();
    assert_eq!(forger.sign_on(1, STORE).await.unwrap().code, C::BadMac);
    assert_eq!(forger.call(2, sale(0, 50_000)).await.unwrap().code(), C::BadMac);
    assert_eq!(cash_of(&mut admin_client, 10, 0).await, 100_000);

    // The real terminal: signs on at its store only, posts, may not import.
    let mut pos = Client::connect_with_key(addr, POS, key_of(&support::admin(), POS)).await.unwrap();
    assert_eq!(pos.sign_on(1, STORE + 1).await.unwrap().code, C::WrongStore);
    assert_eq!(pos.sign_on(2, STORE).await.unwrap().code, C::Approved);
    assert_eq!(pos.call(3, sale(0, 1_000)).await.unwrap().code(), C::Approved);
    let import = Request::ImportRange { first: card(100), last: card(199), product: 1, store_id: STORE };
    assert_eq!(pos.call(4, import).await.unwrap().code(), C::NotPermitted);
    let key = TerminalKey::from_bytes([9; 32]);
    assert_eq!(pos.provision(5, 3003, STORE, TerminalRole::Pos, &key).await.unwrap().code, C::NotPermitted);

    // A frame whose MAC does not match its bytes (one amount byte changed after signing) is
    // declined and posts nothing; the connection goes on.
    let mut bent = frame_bytes(POS, 6, sale(0, 1_000), Some(&key_of(&support::admin(), POS)));
    bent[24 + 8 + 7] ^= 0x01;
    pos.send_raw(&bent).await.unwrap();
    assert_eq!(pos.receive(6).await.unwrap().code(), C::BadMac);
    // Another terminal's frame on this connection, however well signed, is refused.
    let admin_frame = frame_bytes(admin().terminal_id, 7, sale(0, 1_000), Some(&admin().key));
    pos.send_raw(&admin_frame).await.unwrap();
    assert_eq!(pos.receive(7).await.unwrap().code(), C::NotSignedOn);
    assert_eq!(cash_of(&mut pos, 8, 0).await, 99_000);

    // Disabled: declined until enabled again.
    assert_eq!(admin_client.set_terminal_state(20, POS, false).await.unwrap().code, C::Approved);
    assert_eq!(pos.call(9, sale(0, 1_000)).await.unwrap().code(), C::TerminalDisabled);
    assert_eq!(admin_client.set_terminal_state(21, POS, true).await.unwrap().code, C::Approved);
    assert_eq!(pos.call(10, sale(0, 1_000)).await.unwrap().code(), C::Approved);
    assert_eq!(admin_client.set_terminal_state(22, admin().terminal_id, false).await.unwrap().code, C::NotPermitted);
    assert_eq!(admin_client.set_terminal_state(23, 777, false).await.unwrap().code, C::UnknownTerminal);

    // Re-provisioning replaces the key: the old connection is cut off, the new key works.
    let new_key = TerminalKey::from_bytes([7; 32]);
    let reply = admin_client.provision(24, POS, STORE, TerminalRole::Pos, &new_key).await.unwrap();
    assert_eq!((reply.code, reply.enabled), (C::Approved, 1));
    assert_eq!(pos.call(11, sale(0, 1_000)).await.unwrap().code(), C::UnknownTerminal);
    let mut renewed = Client::connect_with_key(addr, POS, new_key).await.unwrap();
    assert_eq!(renewed.sign_on(1, STORE).await.unwrap().code, C::Approved);
    assert_eq!(cash_of(&mut renewed, 2, 0).await, 98_000);

    let declines = server.declines();
    assert!(declines.get(C::UnknownTerminal) >= 3, "{:?}", declines.nonzero());
    assert!(declines.get(C::BadMac) >= 3, "{:?}", declines.nonzero());
    assert!(declines.get(C::TerminalDisabled) >= 1 && declines.get(C::NotPermitted) >= 3);
    server.shutdown().await;
}

/// A key nobody provisioned for terminal `POS`.
fn admin_key_for(terminal_id: u32) -> TerminalKey {
    support::admin().derive_terminal_key(terminal_id)
}

#[tokio::test]
async fn keys_are_stored_wrapped_and_only_the_master_key_opens_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let pos_key = TerminalKey::from_bytes([0x3c; 32]);
    let mut admin = connect(server.local_addr, admin().terminal_id, STORE).await;
    admin.sign_on(1, STORE).await.unwrap();
    assert_eq!(admin.provision(2, POS, STORE, TerminalRole::Pos, &pos_key).await.unwrap().code, C::Approved);
    server.shutdown().await;

    // Neither key appears in clear in any file of the data directory.
    let mut files = vec![dir.path().to_path_buf()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for key in [&pos_key, &support::admin().key] {
            assert!(!bytes.windows(32).any(|w| w == key.expose()), "{} holds a key in clear", path.display());
        }
        scanned += 1;
    }
    assert!(scanned > 5);

    // The same master key: the terminal works without being provisioned again.
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut pos = Client::connect_with_key(server.local_addr, POS, pos_key).await.unwrap();
    assert_eq!(pos.sign_on(1, STORE).await.unwrap().code, C::Approved);
    server.shutdown().await;

    // Another master key: the switch refuses to start rather than serve with keys it cannot read.
    let mut wrong = config(dir.path());
    wrong.keys.master = MasterKey::from_bytes([0x99; 32]);
    match Server::start(wrong).await {
        Err(error @ ServerError::Keys(_)) => assert!(error.to_string().contains("master key"), "{error}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started with the wrong master key"),
    }
}

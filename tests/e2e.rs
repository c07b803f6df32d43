//! End to end over real TCP on port 0, with a real RocksDB in a temporary directory.

use protocol::Verification;
use std::time::Duration;

use cardswitch::server::Server;
use protocol::client::Client;
use protocol::{CardNo, CardReply, CardState, Category, PaymentMethod, Request, Response, ResponseCode as C};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::config;
use support::connect;
use support::sale;

const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;

fn card(n: u64) -> CardNo {
    CardNo(FIRST + n)
}

fn reply(response: Response) -> CardReply {
    match response {
        Response::Card { reply, .. } => reply,
        other => panic!("expected a card reply, got {other:?}"),
    }
}

/// Signs on, imports a range of 1,000 cards and sells `sold` of them with 1,000.00 each.
async fn setup(server: &Server, terminal: u32, sold: u64) -> Client {
    let mut client = connect(server.local_addr, terminal, STORE).await;
    assert_eq!(client.sign_on(1, STORE).await.unwrap().code, C::Approved);
    let import = Request::ImportRange { first: card(0), last: card(999), product: 1, store_id: STORE };
    assert_eq!(client.call(2, import).await.unwrap().code(), C::Approved);
    for n in 0..sold {
        let sell = Request::SellCard { card: card(n), amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
        assert_eq!(client.call(10 + n as u32, sell).await.unwrap().code(), C::Approved);
    }
    client
}

#[tokio::test]
async fn a_day_over_tcp_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut c = setup(&server, 1001, 2).await;
    let s = reply(c.call(100, sale(card(0), 12_850)).await.unwrap());
    assert_eq!((s.code, s.cash_minor), (C::Approved, 87_150));
    let hold = reply(
        c.call(
            101,
            Request::Hold {
                card: card(1),
                amount_minor: 60_000,
                category: Category::Room as u8,
                verification: Verification::NONE,
            },
        )
        .await
        .unwrap(),
    );
    let cap = reply(
        c.call(102, Request::Capture { card: card(1), hold_txn_id: hold.txn_id, amount_minor: 45_800 }).await.unwrap(),
    );
    assert_eq!((cap.code, cap.cash_minor, cap.held_minor), (C::Approved, 54_200, 0));
    let rev = reply(
        c.call(103, Request::Reversal { card: card(0), original_stan: 100, amount_minor: 12_850 }).await.unwrap(),
    );
    assert_eq!((rev.code, rev.cash_minor), (C::Approved, 100_000));
    drop(c);
    server.shutdown().await;

    // Same data directory, different partition count: everything is where it was.
    let mut config = config(dir.path());
    config.partitions = 3;
    let server = Server::start(config).await.unwrap();
    let mut c = connect(server.local_addr, 1001, STORE).await;
    c.sign_on(200, STORE).await.unwrap();
    // T8 after a restart: the original replies, nothing posted twice.
    assert_eq!(reply(c.call(100, sale(card(0), 12_850)).await.unwrap()), s);
    let cap_again =
        c.call(102, Request::Capture { card: card(1), hold_txn_id: hold.txn_id, amount_minor: 45_800 }).await.unwrap();
    assert_eq!(reply(cap_again), cap);
    let b0 = reply(c.call(201, Request::Balance { card: card(0) }).await.unwrap());
    let b1 = reply(c.call(202, Request::Balance { card: card(1) }).await.unwrap());
    assert_eq!((b0.cash_minor, b1.cash_minor, b1.held_minor), (100_000, 54_200, 0));
    // New postings get ids above every stored one.
    let next = reply(c.call(203, sale(card(0), 100)).await.unwrap());
    assert!(next.txn_id > cap.txn_id);
    server.shutdown().await;
}

#[tokio::test]
async fn sign_on_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut c = connect(server.local_addr, 7, STORE).await;
    assert_eq!(c.call(1, Request::Echo).await.unwrap().code(), C::Approved);
    assert_eq!(c.call(2, Request::Balance { card: card(0) }).await.unwrap().code(), C::NotSignedOn);
    assert_eq!(c.sign_on(3, 0).await.unwrap().code, C::InvalidField);
    let on = c.sign_on(4, STORE).await.unwrap();
    assert_eq!(on.code, C::Approved);
    assert!(on.business_date > 20_260_000);
    assert_eq!(c.call(5, Request::Balance { card: card(0) }).await.unwrap().code(), C::UnknownCard);
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_by_trace_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut c = setup(&server, 1001, 20).await;
    let count = 400u32;
    for i in 0..count {
        c.send(1_000 + i, 0, sale(card(u64::from(i) % 20), 100)).await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..count {
        let (header, response) = c.next_response().await.unwrap();
        assert_eq!(response.code(), C::Approved);
        assert!(seen.insert(header.stan), "stan {} answered twice", header.stan);
    }
    assert_eq!(seen.len(), count as usize);
    for n in 0..20 {
        let b = reply(c.call(5_000 + n as u32, Request::Balance { card: card(n) }).await.unwrap());
        assert_eq!(b.cash_minor, 100_000 - 20 * 100, "card {n}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut good = setup(&server, 1001, 1).await;

    // A length prefix over the maximum: an error reply, then the connection closes.
    let mut bad = Client::connect(server.local_addr, 9).await.unwrap();
    bad.send_raw(&[0x7f, 0xff, 0xff, 0xff]).await.unwrap();
    let (_, response) = bad.next_response().await.unwrap();
    assert!(matches!(response, Response::Error { code: C::Malformed, .. }), "{response:?}");
    assert!(bad.next_response().await.is_err(), "closed after the error");

    // An unknown message type keeps the header's ids in the error.
    let mut raw = tokio::net::TcpStream::connect(server.local_addr).await.unwrap();
    let mut frame = vec![0, 0, 0, 36, protocol::PROTOCOL_VERSION, 0x55, 0, 0];
    frame.extend_from_slice(&9u32.to_be_bytes());
    frame.extend_from_slice(&77u32.to_be_bytes());
    frame.extend_from_slice(&20261122093005u64.to_be_bytes());
    frame.extend_from_slice(&[0; protocol::MAC_BYTES]);
    raw.write_all(&frame).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await.unwrap().unwrap();
    let decoded = protocol::decode_frame(&answer[4..]).unwrap();
    assert_eq!((decoded.header.terminal_id, decoded.header.stan), (9, 77));
    assert!(matches!(
        decoded.message,
        protocol::Message::Response(Response::Error { code: C::UnknownMessageType, .. })
    ));

    // The good connection never noticed.
    assert_eq!(reply(good.call(50, sale(card(0), 100)).await.unwrap()).code, C::Approved);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_and_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.max_connections = 2;
    config.idle_timeout_ms = 300;
    let server = Server::start(config).await.unwrap();
    // Every connection is the admin terminal's: provisioning others would take a connection.
    let mut a = connect(server.local_addr, 1, STORE).await;
    let mut b = connect(server.local_addr, 1, STORE).await;
    assert_eq!(a.call(1, Request::Echo).await.unwrap().code(), C::Approved);
    assert_eq!(b.call(1, Request::Echo).await.unwrap().code(), C::Approved);
    let mut c = Client::connect(server.local_addr, 3).await.unwrap();
    let (_, refused) = c.next_response().await.unwrap();
    assert_eq!(refused.code(), C::SystemBusy);
    // Idle connections are closed, which frees their places.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(a.next_response().await.is_err());
    let mut d = connect(server.local_addr, 1, STORE).await;
    assert_eq!(d.call(1, Request::Echo).await.unwrap().code(), C::Approved);
    server.shutdown().await;
}

#[tokio::test]
async fn card_sale_is_per_store_and_pending_for_cheques() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut hq = setup(&server, 1001, 0).await;
    let mut other = connect(server.local_addr, 2002, STORE + 1).await;
    other.sign_on(1, STORE + 1).await.unwrap();
    let sell = |method: PaymentMethod| Request::SellCard { card: card(5), amount_minor: 20_000, method: method as u8 };
    assert_eq!(other.call(2, sell(PaymentMethod::Cash)).await.unwrap().code(), C::WrongStore);
    let pending = reply(hq.call(3, sell(PaymentMethod::Cheque)).await.unwrap());
    assert_eq!((pending.code, pending.state), (C::Approved, CardState::PendingFunds));
    assert_eq!(hq.call(4, sale(card(5), 100)).await.unwrap().code(), C::CardPendingFunds);
    server.shutdown().await;
}

/// T8: a stan reused for a request on a card of another partition is refused, although that
/// partition has never seen the stan; the original's retransmission still gets its reply.
#[tokio::test]
async fn a_stan_reused_across_partitions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut c = setup(&server, 1001, 20).await;
    let partition = |n: u64| cardswitch::engine::partition_of(card(n), 2);
    let other = (1..20).find(|&n| partition(n) != partition(0)).expect("20 cards span both partitions");
    let first = reply(c.call(700, sale(card(0), 1_000)).await.unwrap());
    assert_eq!(first.code, C::Approved);
    assert_eq!(c.call(700, sale(card(other), 1_000)).await.unwrap().code(), C::TraceReused);
    assert_eq!(reply(c.call(700, sale(card(0), 1_000)).await.unwrap()), first, "a retransmission");
    let untouched = reply(c.call(701, Request::Balance { card: card(other) }).await.unwrap());
    assert_eq!(untouched.cash_minor, 100_000);
    assert!(server.declines().get(C::TraceReused) >= 1);
    server.shutdown().await;
}

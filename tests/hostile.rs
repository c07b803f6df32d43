//! Hostile input over real TCP: each kind gets a clear decline or error frame, or a closed
//! connection; the switch keeps serving everyone else and posts nothing.

use protocol::Verification;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use cardswitch::server::Server;
use protocol::client::Client;
use protocol::{
    encode_signed, CardNo, Category, Frame, Header, LocalTime, Message, PaymentMethod, Request, Response,
    ResponseCode as C,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::config;
use support::{admin, connect};

const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;
const OPENING_MINOR: i64 = 100_000;
/// How long a test waits for the switch to answer or close.
const WAIT: Duration = Duration::from_secs(5);

fn card(n: u64) -> CardNo {
    CardNo(FIRST + n)
}

/// The admin terminal, signed on, with 10 cards sold at 1,000.00 each.
async fn stocked(addr: SocketAddr) -> Client {
    let mut client = connect(addr, admin().terminal_id, STORE).await;
    assert_eq!(client.sign_on(1, STORE).await.unwrap().code, C::Approved);
    let import = Request::ImportRange { first: card(0), last: card(99), product: 1, store_id: STORE };
    assert_eq!(client.call(2, import).await.unwrap().code(), C::Approved);
    for n in 0..10 {
        let sell = Request::SellCard { card: card(n), amount_minor: OPENING_MINOR, method: PaymentMethod::Cash as u8 };
        assert_eq!(client.call(10 + n as u32, sell).await.unwrap().code(), C::Approved);
    }
    client
}

/// Every sold card still holds exactly its opening value, and the good connection still works.
async fn nothing_posted(good: &mut Client, stan: &mut u32) {
    for n in 0..10 {
        *stan += 1;
        match good.call(*stan, Request::Balance { card: card(n) }).await.unwrap() {
            Response::Card { reply, .. } => assert_eq!(reply.cash_minor, OPENING_MINOR, "card {n}"),
            other => panic!("{other:?}"),
        }
    }
}

/// Writes `bytes` on a fresh connection and returns what the switch sent before closing it
/// (or after `WAIT`, whichever comes first).
async fn send_and_collect(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.is_ok();
    (answer, closed)
}

/// The response in an answer's first frame.
fn first_response(answer: &[u8]) -> (Header, Response) {
    let length = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    let frame = protocol::decode_frame(&answer[4..4 + length]).unwrap();
    match frame.message {
        Message::Response(response) => (frame.header, response),
        other => panic!("{other:?}"),
    }
}

/// A well-formed echo reply, as if a terminal were the switch.
fn response_frame() -> Vec<u8> {
    let frame = Frame {
        header: Header { flags: 0, terminal_id: admin().terminal_id, stan: 5, local_time: LocalTime(0) },
        message: Message::Response(Response::Echo { code: C::Approved }),
    };
    let mut wire = BytesMut::new();
    encode_signed(&frame, Some(&admin().key), &mut wire);
    wire.to_vec()
}

fn signed(terminal_id: u32, stan: u32, request: Request) -> Vec<u8> {
    let frame = Frame {
        header: Header { flags: 0, terminal_id, stan, local_time: LocalTime(20261122100000) },
        message: Message::Request(request),
    };
    let mut wire = BytesMut::new();
    encode_signed(&frame, Some(&admin().key), &mut wire);
    wire.to_vec()
}

#[tokio::test]
async fn malformed_frames_get_an_error_frame_and_a_closed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.local_addr;
    let mut good = stocked(addr).await;
    let mut stan = 1_000;

    let sale = Request::Sale {
        card: card(0),
        amount_minor: 500,
        category: Category::Retail as u8,
        flags: 0,
        verification: Verification::NONE,
    };
    let valid = signed(admin().terminal_id, 77, sale);
    let cases: Vec<(&str, Vec<u8>, C)> = vec![
        // A length over the maximum (also what a "negative" i32 length reads as).
        ("oversized length", vec![0xff, 0xff, 0xff, 0xff], C::Malformed),
        ("length just over the maximum", (16_385u32).to_be_bytes().to_vec(), C::Malformed),
        ("length below header and MAC", [&35u32.to_be_bytes()[..], &[0; 35]].concat(), C::Malformed),
        ("zero length", vec![0, 0, 0, 0], C::Malformed),
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), C::Malformed),
        // A well-framed request with its body cut short by one byte (length corrected).
        (
            "truncated body",
            {
                let mut cut = valid.clone();
                cut.remove(24 + 17);
                let length = (cut.len() - 4) as u32;
                cut[..4].copy_from_slice(&length.to_be_bytes());
                cut
            },
            C::Malformed,
        ),
        (
            "unknown message type",
            {
                let mut t = valid.clone();
                t[5] = 0x55;
                t
            },
            C::UnknownMessageType,
        ),
        ("a response sent by a terminal", response_frame(), C::UnknownMessageType),
        (
            "unsupported version",
            {
                let mut t = valid.clone();
                t[4] = 9;
                t
            },
            C::UnsupportedVersion,
        ),
        (
            "reserved flag bits",
            {
                let mut t = valid.clone();
                t[6] = 0x80;
                t
            },
            C::Malformed,
        ),
    ];
    for (what, bytes, code) in cases {
        let (answer, closed) = send_and_collect(addr, &bytes).await;
        assert!(closed, "{what}: the connection stays open");
        let (_, response) = first_response(&answer);
        assert!(matches!(response, Response::Error { code: c, .. } if c == code), "{what}: {response:?}");
    }
    // A frame that arrives in pieces is fine; one that stops half way is closed at the idle
    // timeout, not waited for forever (the default here is 300 s, see the next test).
    nothing_posted(&mut good, &mut stan).await;
    server.shutdown().await;
}

#[tokio::test]
async fn out_of_range_fields_are_declined_and_post_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut c = stocked(server.local_addr).await;
    let mut stan = 100;
    let retail = Category::Retail as u8;
    let cases: Vec<(&str, Request, C)> = vec![
        (
            "zero amount",
            Request::Sale {
                card: card(0),
                amount_minor: 0,
                category: retail,
                flags: 0,
                verification: Verification::NONE,
            },
            C::InvalidField,
        ),
        (
            "negative amount",
            Request::Sale {
                card: card(0),
                amount_minor: -500,
                category: retail,
                flags: 0,
                verification: Verification::NONE,
            },
            C::InvalidField,
        ),
        (
            "amount over the maximum",
            Request::Sale {
                card: card(0),
                amount_minor: protocol::MAX_AMOUNT_MINOR + 1,
                category: retail,
                flags: 0,
                verification: Verification::NONE,
            },
            C::InvalidField,
        ),
        ("i64::MAX amount", Request::Load { card: card(0), amount_minor: i64::MAX, method: 1 }, C::InvalidField),
        (
            "i64::MIN amount",
            Request::Hold { card: card(0), amount_minor: i64::MIN, category: retail, verification: Verification::NONE },
            C::InvalidField,
        ),
        ("load not in whole yuan", Request::Load { card: card(0), amount_minor: 150, method: 1 }, C::InvalidField),
        (
            "unknown category",
            Request::Sale { card: card(0), amount_minor: 100, category: 0, flags: 0, verification: Verification::NONE },
            C::InvalidField,
        ),
        (
            "reserved sale flags",
            Request::Sale {
                card: card(0),
                amount_minor: 100,
                category: retail,
                flags: 0x80,
                verification: Verification::NONE,
            },
            C::InvalidField,
        ),
        ("unknown payment method", Request::Load { card: card(0), amount_minor: 100, method: 99 }, C::InvalidField),
        ("card number too short", Request::Balance { card: CardNo(1234) }, C::InvalidField),
        ("card number too long", Request::Balance { card: CardNo(u64::MAX) }, C::InvalidField),
        (
            "unknown card",
            Request::Sale {
                card: CardNo(9_900_000_000_000_001),
                amount_minor: 100,
                category: retail,
                flags: 0,
                verification: Verification::NONE,
            },
            C::UnknownCard,
        ),
        (
            "card never sold",
            Request::Sale {
                card: card(50),
                amount_minor: 100,
                category: retail,
                flags: 0,
                verification: Verification::NONE,
            },
            C::CardNotSold,
        ),
        (
            "more than the balance",
            Request::Sale {
                card: card(0),
                amount_minor: OPENING_MINOR + 1,
                category: retail,
                flags: 0,
                verification: Verification::NONE,
            },
            C::InsufficientValue,
        ),
        (
            "capture of no hold",
            Request::Capture { card: card(0), hold_txn_id: 999_999, amount_minor: 100 },
            C::OriginalNotFound,
        ),
        (
            "range reversed",
            Request::ImportRange { first: card(500), last: card(400), product: 1, store_id: STORE },
            C::InvalidField,
        ),
        ("sign-on at store 0", Request::SignOn { store_id: 0 }, C::InvalidField),
    ];
    for (what, request, code) in cases {
        stan += 1;
        let got = c.call(stan, request).await.unwrap().code();
        assert_eq!(got, code, "{what}");
    }
    // Version 1 requests carry no strings; the only string, an error frame's text, is cut to
    // 255 bytes by the sender and refused when longer by the receiver (codec tests).
    nothing_posted(&mut c, &mut stan).await;
    server.shutdown().await;
}

#[tokio::test]
async fn stalled_frames_are_cut_off_and_floods_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.max_connections = 4;
    config.idle_timeout_ms = 500;
    let server = Server::start(config).await.unwrap();
    let addr = server.local_addr;
    let good = stocked(addr).await;
    let mut stan = 1_000;

    // Half a frame, then silence: closed at the idle timeout, without an answer, while a good
    // connection keeps being served.
    let keep_busy = tokio::spawn(async move {
        let mut good = good;
        for stan in 500..515 {
            assert_eq!(good.call(stan, Request::Echo).await.unwrap().code(), C::Approved);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        good
    });
    let sale = Request::Sale {
        card: card(0),
        amount_minor: 500,
        category: Category::Retail as u8,
        flags: 0,
        verification: Verification::NONE,
    };
    let whole = signed(admin().terminal_id, 90, sale);
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&whole[..whole.len() / 2]).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stalled.read_to_end(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(0))), "closed without an answer: {read:?} {answer:?}");
    let mut good = keep_busy.await.unwrap();

    // A flood of connections over the limit: each extra one gets `system_busy` and is closed;
    // the ones already served go on.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..20 {
        let (answer, closed) = send_and_collect(addr, &[]).await;
        assert!(closed);
        let (_, response) = first_response(&answer);
        assert!(matches!(response, Response::Error { code: C::SystemBusy, .. }), "{response:?}");
    }
    stan += 1;
    assert_eq!(good.call(stan, Request::Echo).await.unwrap().code(), C::Approved);
    drop(held);

    // The good connection, kept busy, was never cut off; nothing was posted.
    nothing_posted(&mut good, &mut stan).await;
    server.shutdown().await;
}

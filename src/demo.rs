//! `cardswitch demo`: a short scripted day against an embedded switch, over real TCP, printed
//! as a table a person can follow.

use protocol::client::{Client, ClientError};
use protocol::types::format_minor;
use protocol::Verification;
use protocol::{CardNo, CardReply, Category, PaymentMethod, Request, Response, ResponseCode};

use crate::server::{Config, Server, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create a temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("step {step}: expected {expected}, got {got}")]
    Unexpected { step: usize, expected: ResponseCode, got: ResponseCode },
}

const TERMINAL: u32 = 1001;
const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;
const ALICE: CardNo = CardNo(FIRST + 17);
const BOB: CardNo = CardNo(FIRST + 25);

struct Script {
    client: Client,
    stan: u32,
    step: usize,
}

impl Script {
    /// Sends `request` with a new trace number (or `stan`), checks the code, prints a row.
    async fn row(
        &mut self,
        what: &str,
        stan: Option<u32>,
        request: Request,
        expected: ResponseCode,
    ) -> Result<CardReply, DemoError> {
        let stan = stan.unwrap_or_else(|| {
            self.stan += 1;
            self.stan
        });
        self.step += 1;
        let response = self.client.call(stan, request).await?;
        let code = response.code();
        let reply = match response {
            Response::Card { reply, .. } => reply,
            other => CardReply::code_only(other.code()),
        };
        let card = request.card().map_or_else(|| "-".to_string(), |c| format!("…{:04}", c.0 % 10_000));
        let money = |minor: i64| format_minor(minor);
        let txn = if reply.txn_id == 0 { "-".to_string() } else { reply.txn_id.to_string() };
        println!(
            "{:>2}  {:<44} {:>6}  {:<6} {:<22} {:>6} {:>10} {:>10} {:>10}",
            self.step,
            what,
            stan,
            card,
            code.as_str(),
            txn,
            money(reply.cash_minor),
            money(reply.bonus_minor),
            money(reply.held_minor),
        );
        if code != expected {
            return Err(DemoError::Unexpected { step: self.step, expected, got: code });
        }
        Ok(reply)
    }
}

/// Runs the demo day; the switch and its data live in a temporary directory.
pub async fn run() -> Result<(), DemoError> {
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    let config = Config::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().expect("literal address"));
    let admin = config.keys.admin.clone();
    let server = Server::start(config).await?;
    println!("cardswitch demo: switch on {} (data in {})", server.local_addr, dir.path().display());
    // The admin terminal provisions the demo's terminal (an admin of the store: it imports a
    // range too), with a key of its own.
    let key = admin.derive_terminal_key(TERMINAL);
    let mut provisioner = Client::connect_with_key(server.local_addr, admin.terminal_id, admin.key.clone()).await?;
    provisioner.sign_on(1, STORE).await?;
    let provisioned = provisioner.provision(2, TERMINAL, STORE, protocol::TerminalRole::Admin, &key).await?;
    println!("terminal {TERMINAL} provisioned by admin terminal {}: {}", admin.terminal_id, provisioned.code);
    let mut client = Client::connect_with_key(server.local_addr, TERMINAL, key).await?;
    let sign_on = client.sign_on(1, STORE).await?;
    println!(
        "terminal {TERMINAL} signed on at store {STORE}: {} (business date {})\n",
        sign_on.code, sign_on.business_date
    );
    println!(
        "{:>2}  {:<44} {:>6}  {:<6} {:<22} {:>6} {:>10} {:>10} {:>10}",
        "#", "step", "stan", "card", "response", "txn", "cash", "bonus", "held"
    );
    let mut s = Script { client, stan: 100, step: 0 };
    let cash = PaymentMethod::Cash as u8;
    use ResponseCode::*;

    let import = Request::ImportRange { first: CardNo(FIRST), last: CardNo(FIRST + 999), product: 1, store_id: STORE };
    s.row("import range …0000–…0999 (member cards)", None, import, Approved).await?;
    s.row(
        "sell card with 500.00 in cash",
        None,
        Request::SellCard { card: ALICE, amount_minor: 50_000, method: cash },
        Approved,
    )
    .await?;
    s.row(
        "sell card, no opening value",
        None,
        Request::SellCard { card: BOB, amount_minor: 0, method: cash },
        Approved,
    )
    .await?;
    let wechat = PaymentMethod::Wechat as u8;
    s.row(
        "load 2,000.00 paid by WeChat",
        None,
        Request::Load { card: BOB, amount_minor: 200_000, method: wechat },
        Approved,
    )
    .await?;
    let retail = Category::Retail as u8;
    let sale = Request::Sale {
        card: ALICE,
        amount_minor: 12_850,
        category: retail,
        flags: 0,
        verification: Verification::NONE,
    };
    let sale_stan = s.stan + 1;
    let first = s.row("sale 128.50 (retail)", None, sale, Approved).await?;
    let again = s.row("  same sale retransmitted (same stan)", Some(sale_stan), sale, Approved).await?;
    assert_eq!(first, again, "T8: a retransmission gets the original reply");
    let big = Request::Sale {
        card: ALICE,
        amount_minor: 100_000,
        category: retail,
        flags: 0,
        verification: Verification::NONE,
    };
    s.row("sale 1,000.00: declined, not enough value", None, big, InsufficientValue).await?;
    let room = Category::Room as u8;
    let hold = s
        .row(
            "hold 600.00 deposit at check-in",
            None,
            Request::Hold { card: BOB, amount_minor: 60_000, category: room, verification: Verification::NONE },
            Approved,
        )
        .await?;
    s.row(
        "sale 1,500.00 while the deposit is held",
        None,
        Request::Sale { card: BOB, amount_minor: 150_000, category: room, flags: 0, verification: Verification::NONE },
        InsufficientValue,
    )
    .await?;
    s.row(
        "capture 458.00 at check-out (rest released)",
        None,
        Request::Capture { card: BOB, hold_txn_id: hold.txn_id, amount_minor: 45_800 },
        Approved,
    )
    .await?;
    let dining = Category::Dining as u8;
    let lost_stan = s.stan + 1;
    s.row(
        "sale 36.00 (dining), reply lost on the way",
        None,
        Request::Sale {
            card: ALICE,
            amount_minor: 3_600,
            category: dining,
            flags: 0,
            verification: Verification::NONE,
        },
        Approved,
    )
    .await?;
    s.row(
        "  terminal reverses it by its stan",
        None,
        Request::Reversal { card: ALICE, original_stan: lost_stan, amount_minor: 3_600 },
        Approved,
    )
    .await?;
    s.row(
        "refund 28.50 of the 128.50 sale",
        None,
        Request::Refund { card: ALICE, original_txn_id: first.txn_id, amount_minor: 2_850 },
        Approved,
    )
    .await?;
    let early_stan = s.stan + 2;
    s.row(
        "reversal arrives before its original",
        None,
        Request::Reversal { card: ALICE, original_stan: early_stan, amount_minor: 5_000 },
        Approved,
    )
    .await?;
    s.row(
        "  the late original is declined",
        Some(early_stan),
        Request::Sale {
            card: ALICE,
            amount_minor: 5_000,
            category: retail,
            flags: 0,
            verification: Verification::NONE,
        },
        OriginalReversed,
    )
    .await?;
    s.stan = early_stan;
    s.row(
        "sale on an unsold card",
        None,
        Request::Sale {
            card: CardNo(FIRST + 33),
            amount_minor: 100,
            category: retail,
            flags: 0,
            verification: Verification::NONE,
        },
        CardNotSold,
    )
    .await?;
    s.row("balance", None, Request::Balance { card: ALICE }, Approved).await?;
    s.row("balance", None, Request::Balance { card: BOB }, Approved).await?;
    println!("\nEvery approved row above was durable (synced to RocksDB's WAL) before its reply was sent.");
    drop(s);
    server.shutdown().await;
    Ok(())
}

//! Operators and administrative card operations over real TCP (O1): every administrative
//! request names an operator whose passcode, store and role allow it; the operator is
//! journaled; approvals come from managers only.

use std::sync::Arc;

use cardswitch::engine::catalog::Catalog;
use cardswitch::engine::TxnKind;
use cardswitch::server::Server;
use protocol::client::Client;
use protocol::{
    AdminAction, AdminFlags, CardNo, CardState, OperatorRole, PaymentMethod, Request, ResponseCode as C, TerminalRole,
};

mod support;
use support::desk::Desk;
use support::{admin, config, connect, key_of, provision_as};

const STORE: u32 = 21;
const OTHER_STORE: u32 = 22;
const FIRST: u64 = 6200880000000000;
const ADMIN_OPERATOR: u32 = 1;
const POS_TERMINAL: u32 = 2001;
const TICKET: u64 = 2026_1122_0007;

/// (id, role, store, passcode) of the operators the admin creates over the wire.
const STAFF: [(u32, OperatorRole, u32, &str); 5] = [
    (31, OperatorRole::Cashier, STORE, "c4shier31"),
    (41, OperatorRole::CustomerService, 0, "s3rvice41"),
    (51, OperatorRole::Finance, 0, "f1nance51"),
    (61, OperatorRole::HqFinance, 0, "hqf1n61"),
    (7, OperatorRole::Manager, STORE, "m4nager7"),
];

async fn start(dir: &std::path::Path) -> Server {
    let mut config = config(dir);
    let retail = include_str!("../catalogs/retail.toml");
    config.catalog = Some(Arc::new(Catalog::from_toml_str("retail.toml", retail).unwrap()));
    Server::start(config).await.unwrap()
}

/// The first admin operator, made offline in the stopped data directory.
fn bootstrap(dir: &std::path::Path) {
    let master = support::keys().master;
    cardswitch::operators::add_to_data_dir(dir, &master, ADMIN_OPERATOR, OperatorRole::Admin, 0, b"4dmin-pass")
        .unwrap();
}

#[tokio::test]
async fn o1_operators_are_created_by_admins_and_act_only_within_their_role_and_store() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path());
    let server = start(dir.path()).await;
    let addr = server.local_addr;
    let mut office = Desk::open(connect(addr, admin().terminal_id, STORE).await, admin().terminal_id, STORE).await;
    for (id, role, store, passcode) in STAFF {
        let reply = office.set_operator((ADMIN_OPERATOR, "4dmin-pass"), id, role, store, Some(passcode)).await;
        assert_eq!(reply.code(), C::Approved, "operator {id}");
    }
    // Only an admin operator sets operators; a new one needs a passcode of 6 bytes or more.
    let by_cashier = office.set_operator((31, "c4shier31"), 99, OperatorRole::Admin, 0, Some("s3cret99")).await;
    assert_eq!(by_cashier.code(), C::RoleNotPermitted);
    let short = office.set_operator((ADMIN_OPERATOR, "4dmin-pass"), 98, OperatorRole::Finance, 0, Some("12345")).await;
    assert_eq!(short.code(), C::InvalidField);
    let wrong = office.set_operator((ADMIN_OPERATOR, "not-it"), 97, OperatorRole::Finance, 0, Some("123456")).await;
    assert_eq!(wrong.code(), C::OperatorRefused);

    // A card of store 21, sold at a pos terminal there.
    let card = CardNo(FIRST);
    let import = Request::ImportRange { first: card, last: CardNo(FIRST + 99), product: 1, store_id: STORE };
    assert_eq!(office.call(|_, _, _| import).await.code(), C::Approved);
    provision_as(addr, &admin(), POS_TERMINAL, STORE, TerminalRole::Pos).await;
    let pos = Client::connect_with_key(addr, POS_TERMINAL, key_of(&admin(), POS_TERMINAL)).await.unwrap();
    let mut pos = Desk::open(pos, POS_TERMINAL, STORE).await;
    let sell = Request::SellCard { card, amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(pos.card(|_, _, _| sell).await.code, C::Approved);

    // A pos terminal cannot set operators at all.
    let from_pos = pos.set_operator((ADMIN_OPERATOR, "4dmin-pass"), 96, OperatorRole::Finance, 0, Some("123456")).await;
    assert_eq!(from_pos.code(), C::NotPermitted);
    // A cashier may not report a loss; an unknown operator or a wrong passcode is refused.
    assert_eq!(pos.admin(31, "c4shier31", card, AdminAction::ReportLoss).await.code, C::RoleNotPermitted);
    assert_eq!(pos.admin(33, "c4shier31", card, AdminAction::ReportLoss).await.code, C::OperatorRefused);
    assert_eq!(pos.admin(41, "wrong-one", card, AdminAction::ReportLoss).await.code, C::OperatorRefused);
    // Customer service may, at any store (L5).
    let lost = pos.admin(41, "s3rvice41", card, AdminAction::ReportLoss).await;
    assert_eq!((lost.code, lost.state), (C::Approved, CardState::Lost));

    // A cashier works at its own store only.
    provision_as(addr, &admin(), POS_TERMINAL + 1, OTHER_STORE, TerminalRole::Pos).await;
    let other = Client::connect_with_key(addr, POS_TERMINAL + 1, key_of(&admin(), POS_TERMINAL + 1)).await.unwrap();
    let mut other = Desk::open(other, POS_TERMINAL + 1, OTHER_STORE).await;
    let gift = CardNo(FIRST + 1);
    assert_eq!(other.admin(31, "c4shier31", gift, AdminAction::RecycleGift).await.code, C::RoleNotPermitted);

    // L10 over the wire: a return needs a manager's approval; finance does it.
    let second = CardNo(FIRST + 2);
    let sell = Request::SellCard { card: second, amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(pos.card(|_, _, _| sell).await.code, C::Approved);
    let unapproved = pos.admin(51, "f1nance51", second, AdminAction::ReturnCard).await;
    assert_eq!(unapproved.code, C::ApprovalRequired);
    let flags = AdminFlags::INVOICE_RETURNED;
    let by_cashier =
        pos.admin_with(51, "f1nance51", second, AdminAction::ReturnCard, flags, 0, 0, Some((31, "c4shier31")));
    assert_eq!(by_cashier.await.code, C::OverrideRefused, "only a manager approves");
    let returned = pos.admin_with(51, "f1nance51", second, AdminAction::ReturnCard, flags, 0, 0, Some((7, "m4nager7")));
    let returned = returned.await;
    assert_eq!((returned.code, returned.state, returned.amount_minor), (C::Approved, CardState::Closed, 100_000));
    // An adjustment by finance, against a ticket.
    let third = CardNo(FIRST + 3);
    let sell = Request::SellCard { card: third, amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(pos.card(|_, _, _| sell).await.code, C::Approved);
    let adjusted = pos.admin_with(51, "f1nance51", third, AdminAction::Adjust, 0, -1_000, TICKET, None).await;
    assert_eq!((adjusted.code, adjusted.cash_minor), (C::Approved, 99_000));
    server.shutdown().await;

    // The journal names who did what; operators survive a restart.
    let store = cardswitch::store::Store::open(dir.path()).unwrap();
    let entries: Vec<_> = store.journal().map(|e| e.unwrap()).collect();
    let find = |kind: TxnKind| *entries.iter().find(|e| e.kind == kind).unwrap();
    assert_eq!(find(TxnKind::LossReport).operator_id, 41);
    let ret = find(TxnKind::CardReturn);
    assert_eq!((ret.operator_id, ret.approver_id), (51, 7));
    let adj = find(TxnKind::Adjustment);
    assert_eq!((adj.operator_id, adj.ticket, adj.cash_delta_minor), (51, TICKET, -1_000));
    assert_eq!(store.operators().unwrap().len(), 1 + STAFF.len());
    drop(store);
    let server = start(dir.path()).await;
    let pos = Client::connect_with_key(server.local_addr, POS_TERMINAL, key_of(&admin(), POS_TERMINAL)).await.unwrap();
    let mut pos = Desk::open(pos, POS_TERMINAL, STORE).await;
    pos.stan = 1_000;
    let unfrozen = pos.admin(41, "s3rvice41", card, AdminAction::Unfreeze).await;
    assert_eq!(unfrozen.code, C::StateNotEligible, "operator 41 is still known; the card is lost, not frozen");
    server.shutdown().await;
}

#[test]
fn o1_the_first_operator_is_added_offline_with_a_passcode_from_standard_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let key_dir = dir.path().join("keys");
    let add = |role: &str, passcode: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cardswitch"))
            .args(["operator", "add", "--data"])
            .arg(dir.path().join("data"))
            .args(["--id", "1", "--role", role])
            .env("CARDSWITCH_HOME", &key_dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{passcode}").unwrap();
        child.wait_with_output().unwrap()
    };
    let bad_role = add("boss", "4dmin-pass");
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("not a role"));
    let short = add("admin", "1234");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("passcode"));
    let ok = add("admin", "4dmin-pass");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let store = cardswitch::store::Store::open(&dir.path().join("data")).unwrap();
    let operators = store.operators().unwrap();
    assert_eq!(operators.len(), 1);
    assert_eq!((operators[0].operator_id, operators[0].role), (1, OperatorRole::Admin));
}

/// P3 over the wire: a `special` product is sold only once an admin enables it with its
/// discount ratio and approved quantity; the catalog version goes up, journal entries name
/// the version they were posted under, and the change survives a restart.
#[tokio::test]
async fn p3_an_admin_enables_special_cards_with_a_discount_and_a_quantity() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path());
    let server = start(dir.path()).await;
    let mut office =
        Desk::open(connect(server.local_addr, admin().terminal_id, STORE).await, admin().terminal_id, STORE).await;
    assert_eq!(
        office
            .set_operator((ADMIN_OPERATOR, "4dmin-pass"), 51, OperatorRole::Finance, 0, Some("f1nance51"))
            .await
            .code(),
        C::Approved
    );
    let special = CardNo(FIRST + 500);
    let import = Request::ImportRange { first: special, last: CardNo(FIRST + 599), product: 3, store_id: STORE };
    assert_eq!(office.call(|_, _, _| import).await.code(), C::Approved);
    let sell = |card: CardNo| Request::SellCard { card, amount_minor: 0, method: PaymentMethod::Cash as u8 };
    assert_eq!(office.card(|_, _, _| sell(special)).await.code, C::ProductDisabled);
    let set = |by: (u32, &'static str), discount_bp: u16, approved_quantity: u32| {
        move |key: &protocol::TerminalKey, terminal_id: u32, stan: u32| Request::SetProduct {
            operator: protocol::OperatorAuth::seal(key, terminal_id, stan, by.0, by.1).unwrap(),
            product: 3,
            enabled: 1,
            discount_bp,
            approved_quantity,
        }
    };
    assert_eq!(office.call(set((51, "f1nance51"), 3000, 1)).await.code(), C::RoleNotPermitted);
    assert_eq!(
        office.call(set((ADMIN_OPERATOR, "4dmin-pass"), 3000, 0)).await.code(),
        C::InvalidField,
        "a quantity is needed"
    );
    match office.call(set((ADMIN_OPERATOR, "4dmin-pass"), 3000, 1)).await {
        protocol::Response::Product(reply) => {
            assert_eq!((reply.code, reply.enabled, reply.catalog_version), (C::Approved, 1, 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(office.card(|_, _, _| sell(special)).await.code, C::Approved);
    assert_eq!(office.card(|_, _, _| sell(CardNo(special.0 + 1))).await.code, C::QuantityExhausted);
    server.shutdown().await;

    let store = cardswitch::store::Store::open(dir.path()).unwrap();
    let versions: Vec<(TxnKind, u32)> =
        store.journal().map(|e| e.unwrap()).map(|e| (e.kind, e.catalog_version)).collect();
    assert_eq!(versions.last(), Some(&(TxnKind::SellCard, 2)), "posted under the new version");
    drop(store);
    let server = start(dir.path()).await;
    let mut office =
        Desk::open(connect(server.local_addr, admin().terminal_id, STORE).await, admin().terminal_id, STORE).await;
    office.stan = 5_000;
    let again = office.card(|_, _, _| sell(CardNo(special.0 + 2))).await;
    assert_eq!(again.code, C::QuantityExhausted, "the quantity counts the cards sold before the restart");
    server.shutdown().await;
}

/// T9 over the wire: the cashier signs on to the session; a purchase on their own staff card
/// rung up by themselves is journaled with them and flagged; customer service cannot sign on
/// to a till.
#[tokio::test]
async fn t9_a_cashier_signed_on_to_the_session_is_journaled_and_self_use_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path());
    let server = start(dir.path()).await;
    let mut office =
        Desk::open(connect(server.local_addr, admin().terminal_id, STORE).await, admin().terminal_id, STORE).await;
    for (id, role, store, passcode) in STAFF {
        assert_eq!(
            office.set_operator((ADMIN_OPERATOR, "4dmin-pass"), id, role, store, Some(passcode)).await.code(),
            C::Approved
        );
    }
    // A gift card, which needs no PIN or registration, made the cashier's staff card.
    let card = CardNo(FIRST + 900);
    let import = Request::ImportRange { first: card, last: CardNo(FIRST + 999), product: 2, store_id: STORE };
    assert_eq!(office.call(|_, _, _| import).await.code(), C::Approved);
    let sell = Request::SellCard { card, amount_minor: 50_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(office.card(|_, _, _| sell).await.code, C::Approved);
    let staff = office.admin_with(ADMIN_OPERATOR, "4dmin-pass", card, AdminAction::SetStaff, 0, 31, 0, None).await;
    assert_eq!(staff.code, C::Approved);
    let sign_on = |who: (u32, &'static str)| {
        move |key: &protocol::TerminalKey, terminal_id: u32, stan: u32| Request::OperatorSignOn {
            operator: protocol::OperatorAuth::seal(key, terminal_id, stan, who.0, who.1).unwrap(),
        }
    };
    assert_eq!(office.call(sign_on((41, "s3rvice41"))).await.code(), C::RoleNotPermitted);
    assert_eq!(office.call(sign_on((31, "wrong-pass"))).await.code(), C::OperatorRefused);
    assert_eq!(office.call(sign_on((31, "c4shier31"))).await.code(), C::Approved);
    let sale = Request::Sale {
        card,
        amount_minor: 1_200,
        category: protocol::Category::Retail as u8,
        flags: 0,
        verification: protocol::Verification::NONE,
    };
    assert_eq!(office.card(|_, _, _| sale).await.code, C::Approved);
    let load = Request::Load { card, amount_minor: 10_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(office.card(|_, _, _| load).await.code, C::NotReloadable, "gift cards are loaded once");
    // A new sign-on ends the cashier's session.
    let stan = office.next();
    assert_eq!(office.client.sign_on(stan, STORE).await.unwrap().code, C::Approved);
    assert_eq!(office.card(|_, _, _| sale).await.code, C::Approved);
    server.shutdown().await;
    let store = cardswitch::store::Store::open(dir.path()).unwrap();
    let sales: Vec<_> = store.journal().map(|e| e.unwrap()).filter(|e| e.kind == TxnKind::Sale).collect();
    assert_eq!((sales[0].operator_id, sales[1].operator_id), (31, 0));
    assert_ne!(sales[0].sale_flags & cardswitch::engine::JOURNAL_SELF_USE, 0, "T9: flagged for settlement");
    assert_eq!(sales[1].sale_flags & cardswitch::engine::JOURNAL_SELF_USE, 0);
}

//! Members over real TCP: registration against a valid ID, one live member card per ID (M1),
//! registrations checked whole (M2), member data masked outside customer service (M3), and
//! a lost card replaced by a new one carrying its value (L6).

use std::sync::Arc;

use cardswitch::engine::catalog::Catalog;
use cardswitch::engine::TxnKind;
use cardswitch::server::Server;
use protocol::{
    AdminAction, AdminFlags, CardNo, CardState, MemberData, OperatorRole, PaymentMethod, Request, ResponseCode as C,
};

mod support;
use support::desk::Desk;
use support::{admin, config, connect};

const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;
const ADMIN: (u32, &str) = (1, "4dmin-pass");
const SERVICE: (u32, &str) = (41, "s3rvice41");
const CASHIER: (u32, &str) = (31, "c4shier31");

pub fn member() -> MemberData {
    MemberData {
        id_type: 1,
        birth_date: 0,
        name: "张三".into(),
        // A mainland ID card number with a valid check character, born 1990-03-07.
        id_number: "11010519900307101X".into(),
        phone: "13800138000".into(),
        address: "北京市西城区".into(),
        email: "zhang@example.cn".into(),
    }
}

async fn start(dir: &std::path::Path) -> Server {
    let master = support::keys().master;
    cardswitch::operators::add_to_data_dir(dir, &master, ADMIN.0, OperatorRole::Admin, 0, ADMIN.1.as_bytes()).unwrap();
    let mut config = config(dir);
    let retail = include_str!("../catalogs/retail.toml");
    config.catalog = Some(Arc::new(Catalog::from_toml_str("retail.toml", retail).unwrap()));
    Server::start(config).await.unwrap()
}

/// A desk at store 21 with customer service and a cashier, and ten member cards imported.
async fn desk(server: &Server) -> Desk {
    let mut desk =
        Desk::open(connect(server.local_addr, admin().terminal_id, STORE).await, admin().terminal_id, STORE).await;
    for (id, role, store, passcode) in
        [(SERVICE.0, OperatorRole::CustomerService, 0, SERVICE.1), (CASHIER.0, OperatorRole::Cashier, STORE, CASHIER.1)]
    {
        assert_eq!(desk.set_operator(ADMIN, id, role, store, Some(passcode)).await.code(), C::Approved);
    }
    let import = Request::ImportRange { first: CardNo(FIRST), last: CardNo(FIRST + 9), product: 1, store_id: STORE };
    assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
    desk
}

async fn sell(desk: &mut Desk, card: CardNo, amount_minor: i64) {
    let sell = Request::SellCard { card, amount_minor, method: PaymentMethod::Cash as u8 };
    assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
}

#[tokio::test]
async fn m1_m2_m3_l6_members_register_once_are_shown_by_role_and_keep_their_value_on_a_new_card() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut desk = desk(&server).await;
    let (a, b, c) = (CardNo(FIRST), CardNo(FIRST + 1), CardNo(FIRST + 2));
    sell(&mut desk, a, 100_000).await;
    sell(&mut desk, b, 0).await;
    // M1: a real-name card is used only once registered.
    let load = Request::Load { card: a, amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(desk.card(|_, _, _| load).await.code, C::MemberNotRegistered);

    // O1: only customer service registers. M2: a bad ID number is refused, naming the field.
    assert_eq!(desk.register(CASHIER, a, &member()).await.code, C::RoleNotPermitted);
    let bad = MemberData { id_number: "110105199003071011".into(), ..member() };
    let refused = desk.register(SERVICE, a, &bad).await;
    assert_eq!((refused.code, refused.problem), (C::MemberDataInvalid, 3));
    let no_phone = desk.register(SERVICE, a, &MemberData { phone: String::new(), ..member() }).await;
    assert_eq!((no_phone.code, no_phone.problem), (C::MemberDataInvalid, 4));
    let registered = desk.register(SERVICE, a, &member()).await;
    assert_eq!((registered.code, registered.state), (C::Approved, CardState::Active));
    assert_eq!(desk.card(|_, _, _| load).await.code, C::Approved);
    // M1: the same ID (in any letter case) holds one live member card.
    let same_id = MemberData { id_number: "11010519900307101x".into(), ..member() };
    assert_eq!(desk.register(SERVICE, b, &same_id).await.code, C::IdAlreadyRegistered);

    // M3: in full for customer service, masked for the cashier, refused to the admin.
    let full = desk.query(SERVICE, a).await;
    assert_eq!((full.code, full.member.clone()), (C::Approved, member()));
    let masked = desk.query(CASHIER, a).await;
    assert_eq!((masked.member.id_number.as_str(), masked.member.phone.as_str()), ("**************101X", "*******8000"));
    assert_eq!(masked.member.name, "张三");
    assert!(masked.member.address.starts_with('*') && masked.member.birth_date == 0);
    assert_eq!(desk.query(ADMIN, a).await.code, C::RoleNotPermitted);
    assert_eq!(desk.query(SERVICE, b).await.code, C::MemberNotRegistered);

    // L6: the card is lost; the holder gets card c with its value, paying the 18.00 fee.
    let lost = desk.admin(SERVICE.0, SERVICE.1, a, AdminAction::ReportLoss).await;
    assert_eq!(lost.state, CardState::Lost);
    let before = desk.card(|_, _, _| Request::Balance { card: a }).await;
    assert_eq!(desk.replace(SERVICE, a, c, 0, PaymentMethod::Cash as u8).await.code, C::IdNotChecked);
    assert_eq!(desk.replace(CASHIER, a, c, AdminFlags::ID_CHECKED, 1).await.code, C::RoleNotPermitted);
    assert_eq!(
        desk.replace(SERVICE, a, c, AdminFlags::ID_CHECKED, 0).await.code,
        C::InvalidField,
        "the fee needs a method"
    );
    // Into a card that is already sold: refused, and the old card is as it was.
    let into_sold = desk.replace(SERVICE, a, b, AdminFlags::ID_CHECKED, PaymentMethod::Cash as u8).await;
    assert_eq!(into_sold.code, C::ReplacementRefused);
    let after_refusal = desk.card(|_, _, _| Request::Balance { card: a }).await;
    assert_eq!(
        (after_refusal.state, after_refusal.cash_minor, after_refusal.bonus_minor),
        (CardState::Lost, before.cash_minor, before.bonus_minor)
    );
    let replaced = desk.replace(SERVICE, a, c, AdminFlags::ID_CHECKED, PaymentMethod::Cash as u8).await;
    assert_eq!(
        (replaced.code, replaced.state, replaced.cash_minor, replaced.bonus_minor),
        (C::Approved, CardState::Active, before.cash_minor, before.bonus_minor)
    );
    let old = desk.card(|_, _, _| Request::Balance { card: a }).await;
    assert_eq!((old.state, old.cash_minor, old.bonus_minor), (CardState::Closed, 0, 0));
    assert_eq!(desk.query(SERVICE, c).await.member, member(), "the registration moved with the value");
    // The new card is the ID's live card now: still one per ID.
    assert_eq!(desk.register(SERVICE, b, &member()).await.code, C::IdAlreadyRegistered);
    server.shutdown().await;

    // The journal: value out of a, into c, the fee, each with the operator; a and c explained.
    let store = cardswitch::store::Store::open(dir.path()).unwrap();
    let entries: Vec<_> = store.journal().map(|e| e.unwrap()).collect();
    let kinds: Vec<TxnKind> = entries.iter().filter(|e| e.card == a || e.card == c).map(|e| e.kind).collect();
    for kind in
        [TxnKind::MemberRegistered, TxnKind::TransferOut, TxnKind::TransferBack, TxnKind::TransferIn, TxnKind::Fee]
    {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
    let fee = entries.iter().find(|e| e.kind == TxnKind::Fee).unwrap();
    assert_eq!((fee.amount_minor, fee.operator_id, fee.card), (1_800, SERVICE.0, c));
    for card in [a, c] {
        let sum: i64 =
            entries.iter().filter(|e| e.card == card).map(|e| e.cash_delta_minor + e.bonus_delta_minor).sum();
        let expected = if card == a { 0 } else { before.cash_minor + before.bonus_minor };
        assert_eq!(sum, expected, "{card}");
    }
}

/// S9: every posting of a card, oldest first, with store, terminal, operator, amounts and the
/// balances after each; the newest (not yet materialized) included; in pages of 100.
#[tokio::test]
async fn s9_a_cards_history_lists_every_posting_with_balances_after_it_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let master = support::keys().master;
    cardswitch::operators::add_to_data_dir(dir.path(), &master, ADMIN.0, OperatorRole::Admin, 0, ADMIN.1.as_bytes())
        .unwrap();
    // The core rules: no registration needed, so the test is about the history alone.
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut desk = desk(&server).await;
    let card = CardNo(FIRST + 5);
    sell(&mut desk, card, 1_000_000).await;
    let sale = |amount_minor| Request::Sale {
        card,
        amount_minor,
        category: protocol::Category::Retail as u8,
        flags: 0,
        verification: protocol::Verification::NONE,
    };
    for n in 0..120 {
        assert_eq!(desk.card(|_, _, _| sale(100 + n)).await.code, C::Approved);
    }
    let adjusted = desk.admin_with(41, "s3rvice41", card, AdminAction::Freeze, 0, 0, 0, None).await;
    assert_eq!(adjusted.code, C::Approved);
    assert_eq!(desk.history(ADMIN, card, 0).await.code, C::RoleNotPermitted, "O1: not the admin's business");
    let first = desk.history(CASHIER, card, 0).await;
    assert_eq!((first.code, first.more, first.entries.len()), (C::Approved, 1, 100));
    let rest = desk.history(CASHIER, card, first.entries.last().unwrap().txn_id).await;
    assert_eq!((rest.more, rest.entries.len()), (0, 22));
    let all: Vec<_> = first.entries.iter().chain(&rest.entries).collect();
    assert_eq!(all[0].kind, TxnKind::SellCard as u8);
    assert_eq!((all[0].cash_after_minor, all[0].store_id, all[0].terminal_id), (1_000_000, STORE, admin().terminal_id));
    let last = all.last().unwrap();
    assert_eq!((last.kind, last.operator_id), (TxnKind::Freeze as u8, 41), "the newest posting is listed");
    let spent: i64 = (0..120).map(|n| 100 + n).sum();
    assert_eq!(last.cash_after_minor, 1_000_000 - spent);
    assert!(all
        .windows(2)
        .all(|w| w[0].txn_id < w[1].txn_id && w[1].cash_after_minor == w[0].cash_after_minor + w[1].cash_delta_minor));
    assert_eq!(desk.history(CASHIER, CardNo(FIRST + 7), 0).await.code, C::CardNotSold, "in stock");
    assert_eq!(desk.history(CASHIER, CardNo(FIRST + 50_000), 0).await.code, C::UnknownCard, "in no range");
    server.shutdown().await;
}

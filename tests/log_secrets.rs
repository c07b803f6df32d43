//! The logs never carry a PIN, a passcode, a key or a member's ID number, phone or name, at
//! any level: the real binary, logging at `trace`, is sent PINs (right, wrong, changed), a
//! member's registration and query, and operators' passcodes (right and wrong), and its log
//! is searched for every one of them.

use std::path::Path;

use protocol::{
    AdminAction, CardNo, Category, MemberData, OperatorAuth, OperatorRole, PaymentMethod, Request, ResponseCode as C,
    Sealed, SecretKind, Verification,
};

mod support;
use support::desk::Desk;
use support::{admin, connect};

const STORE: u32 = 21;
const CARD: CardNo = CardNo(6200880000000000);
const ADMIN: (u32, &str) = (1, "4dmin-pass");
const SERVICE: (u32, &str) = (41, "s3rv1ce-41");
/// The retail catalog's first PIN (L3).
const INITIAL_PIN: &str = "000000";
/// PINs long enough that no timestamp or counter in a log holds them by chance.
const NEW_PIN: &str = "739104628153";
const WRONG_PIN: &str = "604918372615";
const WRONG_PASSCODE: &str = "n0t-the-code";

fn member() -> MemberData {
    MemberData {
        id_type: 1,
        birth_date: 0,
        name: "张三丰".into(),
        // A mainland ID card number with a valid check character, born 1990-03-07.
        id_number: "11010519900307101X".into(),
        phone: "13912345678".into(),
        address: "北京市西城区".into(),
        email: "zhang.sanfeng@example.cn".into(),
    }
}

fn sale_with_pin(pin: &'static str) -> impl FnOnce(&protocol::TerminalKey, u32, u32) -> Request {
    move |key, terminal_id, stan| Request::Sale {
        card: CARD,
        amount_minor: 1_000,
        category: Category::Retail as u8,
        flags: 0,
        verification: Verification::pin(Sealed::seal(key, SecretKind::Pin, terminal_id, stan, pin).unwrap()),
    }
}

fn bootstrap(data: &Path) {
    let master = support::keys().master;
    for (id, role, passcode) in
        [(ADMIN.0, OperatorRole::Admin, ADMIN.1), (SERVICE.0, OperatorRole::CustomerService, SERVICE.1)]
    {
        cardswitch::operators::add_to_data_dir(data, &master, id, role, 0, passcode.as_bytes()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_passcode_key_or_member_data_reaches_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    bootstrap(&data);
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/catalogs/retail.toml");
    let (mut child, addr) = support::start_binary_with(
        env!("CARGO_BIN_EXE_cardswitch"),
        &data,
        None,
        &["--catalog", catalog],
        &[("RUST_LOG", "trace")],
    );

    let mut desk = Desk::open(connect(addr, admin().terminal_id, STORE).await, admin().terminal_id, STORE).await;
    let import = Request::ImportRange { first: CARD, last: CardNo(CARD.0 + 9), product: 1, store_id: STORE };
    assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
    let sell = Request::SellCard { card: CARD, amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
    assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
    // M1: the holder registered; shown in full to customer service (M3).
    assert_eq!(desk.register(SERVICE, CARD, &member()).await.code, C::Approved);
    assert_eq!(desk.query(SERVICE, CARD).await.member.id_number, member().id_number);
    // L3: the first PIN changed; T2: sales with the right and a wrong PIN.
    let change_pin = desk
        .card(|key, terminal_id, stan| Request::CardAdmin {
            operator: OperatorAuth::seal(key, terminal_id, stan, SERVICE.0, SERVICE.1).unwrap(),
            card: CARD,
            action: AdminAction::ChangePin as u8,
            flags: 0,
            value: 0,
            original_txn_id: 0,
            ticket: 0,
            verification: Verification::pin(
                Sealed::seal(key, SecretKind::Pin, terminal_id, stan, INITIAL_PIN).unwrap(),
            ),
            new_pin: Sealed::seal(key, SecretKind::NewPin, terminal_id, stan, NEW_PIN).unwrap(),
        })
        .await;
    assert_eq!(change_pin.code, C::Approved);
    assert_eq!(desk.card(sale_with_pin(NEW_PIN)).await.code, C::Approved);
    assert_eq!(desk.card(sale_with_pin(WRONG_PIN)).await.code, C::WrongPin);
    // O1: an operator with a wrong passcode is refused.
    assert_eq!(desk.query((SERVICE.0, WRONG_PASSCODE), CARD).await.code, C::OperatorRefused);
    child.kill().unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(data.join("keys/switch.log")).unwrap();
    // The log did say everything else about these requests: each one and its reply.
    for said in ["msg_type=register_member ", "msg_type=card_admin ", "code=wrong_pin", "code=operator_refused"] {
        assert!(log.lines().any(|line| line.contains(said)), "no {said} in\n{log}");
    }
    assert!(log.lines().filter(|line| line.contains("TRACE") && line.contains(" request ")).count() >= 9, "{log}");
    let member = member();
    let secrets = [
        ("the first PIN", INITIAL_PIN.to_string()),
        ("the new PIN", NEW_PIN.to_string()),
        ("a wrong PIN", WRONG_PIN.to_string()),
        ("an operator's passcode", SERVICE.1.to_string()),
        ("the admin's passcode", ADMIN.1.to_string()),
        ("a wrong passcode", WRONG_PASSCODE.to_string()),
        ("the ID number", member.id_number.clone()),
        ("the ID number's digits", member.id_number[..17].to_string()),
        ("the phone", member.phone.clone()),
        ("the name", member.name.clone()),
        ("the address", member.address.clone()),
        ("the e-mail", member.email.clone()),
        ("the admin terminal's key", admin().key.to_hex()),
        ("the master key", protocol::TerminalKey::from_bytes([0x11; 32]).to_hex()),
        ("a terminal's key", support::key_of(&admin(), desk.terminal_id).to_hex()),
    ];
    for (what, secret) in secrets {
        // The first PIN is six zeros: look for it as a value, not inside longer numbers.
        let found = if secret == INITIAL_PIN {
            log.split(|c: char| !c.is_ascii_digit()).any(|number| number == secret)
        } else {
            log.contains(&secret)
        };
        assert!(!found, "{what} ({secret}) is in the log");
    }
}

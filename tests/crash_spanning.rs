//! Operations spanning partitions (M1 registration, L6 replacement) are atomic across a crash:
//! the real binary is stopped for good between two steps (`CARDSWITCH_PAUSE_AT`), killed with
//! SIGKILL there, and restarted. The restarted switch has the operation done exactly once:
//! value neither lost nor duplicated, the member registered once.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use cardswitch::engine::TxnKind;
use protocol::{
    AdminAction, AdminFlags, CardNo, CardState, MemberData, OperatorRole, PaymentMethod, Request, ResponseCode as C,
};

mod support;
use support::desk::Desk;
use support::{admin, connect};

const STORE: u32 = 21;
const FIRST: u64 = 6200880000000000;
const ADMIN: (u32, &str) = (1, "4dmin-pass");
const SERVICE: (u32, &str) = (41, "s3rvice41");

fn member() -> MemberData {
    MemberData {
        id_type: 1,
        birth_date: 0,
        name: "李四".into(),
        id_number: "11010519900307101X".into(),
        phone: "13900139000".into(),
        address: String::new(),
        email: String::new(),
    }
}

fn start(data: &Path, pause_at: Option<&str>) -> (Child, std::net::SocketAddr) {
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/catalogs/retail.toml");
    let envs: Vec<(&str, &str)> = pause_at.map(|p| (cardswitch::coordinator::PAUSE_ENV, p)).into_iter().collect();
    support::start_binary_with(env!("CARGO_BIN_EXE_cardswitch"), data, None, &["--catalog", catalog], &envs)
}

async fn open_desk(addr: std::net::SocketAddr) -> Desk {
    Desk::open(connect(addr, admin().terminal_id, STORE).await, admin().terminal_id, STORE).await
}

/// Waits until the switch's log says it paused at `point`.
async fn paused_at(data: &Path, point: &str) {
    let log = data.join("keys").join("switch.log");
    let line = format!("coordinator paused at {point}");
    for _ in 0..400 {
        if std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&line)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the switch never paused at {point}");
}

/// Runs `operation` on the desk until the switch pauses at `point`, then SIGKILLs it.
async fn kill_during(child: &mut Child, data: &Path, point: &str, operation: impl std::future::Future) {
    tokio::select! {
        _ = operation => panic!("the operation was answered; the switch should have paused at {point}"),
        _ = paused_at(data, point) => {}
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn journal(data: &Path) -> Vec<cardswitch::engine::JournalEntry> {
    let store = cardswitch::store::Store::open(data).unwrap();
    store.journal().map(|e| e.unwrap()).collect()
}

fn stop(mut child: Child) {
    // SIGTERM: a graceful stop, so the store can be opened afterwards.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1_l6_killed_between_any_two_steps_the_operation_happens_exactly_once() {
    let points = [
        "register.after_intent",
        "register.after_attach",
        "replace.after_intent",
        "replace.after_out",
        "replace.after_in",
    ];
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let master = support::keys().master;
        cardswitch::operators::add_to_data_dir(data, &master, ADMIN.0, OperatorRole::Admin, 0, ADMIN.1.as_bytes())
            .unwrap();
        let (mut child, addr) = start(data, Some(point));
        let mut desk = open_desk(addr).await;
        let reply = desk.set_operator(ADMIN, SERVICE.0, OperatorRole::CustomerService, 0, Some(SERVICE.1)).await;
        assert_eq!(reply.code(), C::Approved);
        let (a, c) = (CardNo(FIRST), CardNo(FIRST + 2));
        let import = Request::ImportRange { first: a, last: CardNo(FIRST + 9), product: 1, store_id: STORE };
        assert_eq!(desk.call(|_, _, _| import).await.code(), C::Approved);
        let sell = Request::SellCard { card: a, amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
        let sold = desk.card(|_, _, _| sell).await;
        let value_minor = sold.cash_minor + sold.bonus_minor;
        let registering = point.starts_with("register");
        if !registering {
            assert_eq!(desk.register(SERVICE, a, &member()).await.code, C::Approved);
            assert_eq!(desk.admin(SERVICE.0, SERVICE.1, a, AdminAction::ReportLoss).await.code, C::Approved);
        }
        // The stan the interrupted request goes out with.
        let interrupted_stan = desk.stan + 1;
        if registering {
            kill_during(&mut child, data, point, desk.register(SERVICE, a, &member())).await;
        } else {
            let replace = desk.replace(SERVICE, a, c, AdminFlags::ID_CHECKED, PaymentMethod::Cash as u8);
            kill_during(&mut child, data, point, replace).await;
        }

        // Restarted without the pause: recovery finishes the operation before listening.
        let (child, addr) = start(data, None);
        let mut desk = open_desk(addr).await;
        // T8: the terminal, which got no answer, sends the same request again and gets the
        // operation's answer; nothing is done twice.
        desk.stan = interrupted_stan - 1;
        if registering {
            let again = desk.register(SERVICE, a, &member()).await;
            assert_eq!((again.code, again.state), (C::Approved, CardState::Active), "{point}: retransmitted");
        } else {
            let again = desk.replace(SERVICE, a, c, AdminFlags::ID_CHECKED, PaymentMethod::Cash as u8).await;
            assert_eq!((again.code, again.cash_minor + again.bonus_minor), (C::Approved, value_minor), "{point}");
        }
        desk.stan = 10_000;
        let balance = |card| Request::Balance { card };
        let live_card = if point.starts_with("register") { a } else { c };
        let live = desk.card(|_, _, _| balance(live_card)).await;
        assert_eq!((live.state, live.cash_minor + live.bonus_minor), (CardState::Active, value_minor), "{point}");
        assert_eq!(desk.query(SERVICE, live_card).await.member, member(), "{point}: registered");
        if live_card == c {
            let old = desk.card(|_, _, _| balance(a)).await;
            assert_eq!((old.state, old.cash_minor, old.bonus_minor), (CardState::Closed, 0, 0), "{point}");
        }
        let load = Request::Load { card: live_card, amount_minor: 10_000, method: PaymentMethod::Cash as u8 };
        assert_eq!(desk.card(|_, _, _| load).await.code, C::Approved, "{point}: the card works");
        stop(child);

        let entries = journal(data);
        let count = |kind: TxnKind| entries.iter().filter(|e| e.kind == kind).count();
        assert_eq!(count(TxnKind::MemberRegistered), 1, "{point}: registered once");
        if live_card == c {
            assert_eq!(
                (count(TxnKind::TransferOut), count(TxnKind::TransferIn), count(TxnKind::Fee)),
                (1, 1, 1),
                "{point}"
            );
        }
        // Neither lost nor duplicated: the journal explains every card, and the cards hold
        // what was loaded.
        let total: i64 = entries.iter().map(|e| e.cash_delta_minor + e.bonus_delta_minor).sum();
        assert_eq!(total, value_minor + 10_000, "{point}");
    }
}

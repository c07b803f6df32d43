//! `cardswitch admin` as customer service, finance and an administrator run it: the real
//! binary speaks the protocol to a running switch as its admin terminal, each operation by an
//! operator with its passcode (O1), and `admin history` lists every posting of a card with its
//! business date, store, terminal, operator, amounts and balances after (S9).

use std::path::{Path, PathBuf};

use cardswitch::server::Server;
use protocol::{CardNo, OperatorRole, Request, ResponseCode as C};

mod support;
use support::desk::Desk;
use support::sale;
use support::{config, connect};

const STORE: u32 = 21;
const CARD: u64 = 6200880000000000;
/// A card with more postings than one history page holds (100).
const BUSY_CARD: u64 = CARD + 1;
const BUSY_SALES: usize = 150;
const CASHIER_TERMINAL: u32 = 40;

/// The switch's address and admin credential, and the operators' passcode files.
struct Office {
    addr: String,
    admin_key: PathBuf,
    dir: PathBuf,
}

impl Office {
    fn passcode_file(&self, operator_id: u32, passcode: &str) -> String {
        let path = self.dir.join(format!("operator-{operator_id}.pass"));
        std::fs::write(&path, format!("{passcode}\n")).unwrap();
        path.display().to_string()
    }

    /// `cardswitch admin --addr … --admin-key-file … --store STORE` and `args`.
    async fn admin(&self, args: &[&str]) -> (i32, String, String) {
        let mut all: Vec<String> =
            ["admin", "--addr", &self.addr, "--store", &STORE.to_string()].iter().map(|s| s.to_string()).collect();
        all.extend(["--admin-key-file".to_string(), self.admin_key.display().to_string()]);
        all.extend(args.iter().map(|s| s.to_string()));
        support::run_cardswitch(all).await
    }

    /// [`Office::admin`] by `operator` (with its passcode file), expecting `status`.
    async fn by(&self, operator: (u32, &str), args: &[&str], status: i32) -> String {
        let passcode = self.passcode_file(operator.0, operator.1);
        let operator_id = operator.0.to_string();
        let mut all = args.to_vec();
        all.extend(["--operator", &operator_id, "--passcode-file", &passcode]);
        let (code, out, err) = self.admin(&all).await;
        assert_eq!(code, status, "admin {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        out
    }
}

const ADMIN: (u32, &str) = (1, "4dmin-pass");
const SERVICE: (u32, &str) = (41, "s3rvice41");
const FINANCE: (u32, &str) = (51, "f1nance51");

/// A switch in `dir/data` with its first admin operator, and the admin credential's file.
async fn open(dir: &Path) -> (Server, Office) {
    let data = dir.join("data");
    let master = support::keys().master;
    cardswitch::operators::add_to_data_dir(&data, &master, ADMIN.0, OperatorRole::Admin, 0, ADMIN.1.as_bytes())
        .unwrap();
    let server = Server::start(config(&data)).await.unwrap();
    let admin_key = dir.join("admin.key");
    std::fs::write(&admin_key, support::admin().to_text()).unwrap();
    let office = Office { addr: server.local_addr.to_string(), admin_key, dir: dir.to_path_buf() };
    (server, office)
}

/// The first row of `history`'s table of a posting of `kind`, split into its columns.
fn row(history: &str, kind: &str) -> Vec<String> {
    let line = history
        .lines()
        .find(|line| line.split_whitespace().nth(3) == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} row in\n{history}"));
    line.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_o1_the_admin_command_carries_out_card_operations_and_lists_every_posting_of_a_card() {
    let dir = tempfile::tempdir().unwrap();
    let (server, office) = open(dir.path()).await;

    // The administrator creates customer service and finance, and imports the stock.
    for (operator, role) in [(SERVICE, "customer_service"), (FINANCE, "finance")] {
        let new_passcode = office.passcode_file(operator.0, operator.1);
        let id = operator.0.to_string();
        let out = office
            .by(
                ADMIN,
                &["set-operator", &id, "--role", role, "--operator-store", "0", "--enabled", "--new-passcode-file"]
                    .into_iter()
                    .chain([new_passcode.as_str()])
                    .collect::<Vec<_>>(),
                0,
            )
            .await;
        assert!(out.contains("approved"), "{out}");
    }
    let (first, last) = (CARD.to_string(), (CARD + 9).to_string());
    let (code, out, err) =
        office.admin(&["import-range", &first, &last, "--product", "member", "--store", &STORE.to_string()]).await;
    assert_eq!(code, 0, "{out}{err}");

    // A cashier sells two cards and uses them.
    let mut desk = Desk::open(connect(server.local_addr, CASHIER_TERMINAL, STORE).await, CASHIER_TERMINAL, STORE).await;
    let card = CardNo(CARD);
    for (sold, amount_minor) in [(card, 50_000), (CardNo(BUSY_CARD), 10_000)] {
        let sell = Request::SellCard { card: sold, amount_minor, method: 1 };
        assert_eq!(desk.card(|_, _, _| sell).await.code, C::Approved);
    }
    assert_eq!(desk.card(|_, _, _| sale(card, 12_345)).await.code, C::Approved);
    for _ in 0..BUSY_SALES {
        assert_eq!(desk.card(|_, _, _| sale(CardNo(BUSY_CARD), 1)).await.code, C::Approved);
    }

    // Customer service freezes the card: the counter is refused, until it is unfrozen with
    // the holder's ID checked (L8); without it, a decline and exit status 1.
    office.by(SERVICE, &["freeze", &first], 0).await;
    assert_eq!(desk.card(|_, _, _| sale(card, 100)).await.code, C::CardFrozen);
    let declined = office.by(SERVICE, &["unfreeze", &first], 1).await;
    assert!(declined.contains("id_not_checked"), "{declined}");
    office.by(SERVICE, &["unfreeze", &first, "--id-checked"], 0).await;
    // Finance corrects the balance against a ticket; customer service may not (O1).
    let refused = office.by(SERVICE, &["adjust", &first, "--amount", "-5.00", "--ticket", "77"], 1).await;
    assert!(refused.contains("role_not_permitted"), "{refused}");
    office.by(FINANCE, &["adjust", &first, "--amount", "-5.00", "--ticket", "77"], 0).await;
    assert_eq!(desk.card(|_, _, _| sale(card, 1_000)).await.code, C::Approved);

    // The history, readable: every posting with its date, store, terminal, operator, amount and
    // the balances after it.
    let history = office.by(SERVICE, &["history", &first], 0).await;
    assert!(history.contains("txn  date"), "{history}");
    for column in ["date", "time", "kind", "store", "terminal", "operator", "amount", "cash after", "held after"] {
        assert!(history.contains(column), "no {column} column in\n{history}");
    }
    // Columns: txn, date, time, kind, store, terminal, operator, amount, cash change, bonus
    // change, cash after, bonus after, held after.
    let sold = row(&history, "sell_card");
    let today = sold[1].clone();
    assert!(today.len() == 10 && today.starts_with("20"), "a business date: {history}");
    let expect = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    let store = STORE.to_string();
    let cashier = CASHIER_TERMINAL.to_string();
    let admin_terminal = support::admin().terminal_id.to_string();
    assert_eq!(sold[4..], expect(&[&store, &cashier, "0", "500.00", "+500.00", "0.00", "500.00", "0.00", "0.00"])[..]);
    assert_eq!(
        row(&history, "freeze")[4..],
        expect(&[&store, &admin_terminal, "41", "0.00", "0.00", "0.00", "376.55", "0.00", "0.00"])[..]
    );
    // 500.00 - 123.45 - 5.00.
    assert_eq!(
        row(&history, "adjustment")[4..],
        expect(&[&store, &admin_terminal, "51", "5.00", "-5.00", "0.00", "371.55", "0.00", "0.00"])[..]
    );
    let rows: Vec<&str> = history.lines().filter(|line| line.contains(&today)).collect();
    assert_eq!(rows.len(), 6, "sell_card, sale, freeze, unfreeze, adjustment and sale: {history}");
    // As JSON, for scripts: the same postings, in minor units, oldest first.
    let json = office.by(SERVICE, &["--json", "history", &first], 0).await;
    let reply: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let entries = reply["entries"].as_array().unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"sell_card"));
    assert!(kinds.contains(&"adjustment"), "{kinds:?}");
    let last = entries.last().unwrap();
    assert_eq!((last["kind"].as_str(), last["cash_after_minor"].as_i64()), (Some("sale"), Some(36_155)));
    assert_eq!(last["store_id"].as_u64(), Some(u64::from(STORE)));
    assert!(entries.windows(2).all(|w| w[0]["txn_id"].as_u64() < w[1]["txn_id"].as_u64()));
    let date: u64 = today.replace('-', "").parse().unwrap();
    assert!(entries.iter().all(|e| e["business_date"].as_u64() == Some(date)), "{json}");

    // Every posting, page after page: the card sale and its 150 sales.
    let busy = BUSY_CARD.to_string();
    let json = office.by(FINANCE, &["--json", "history", &busy], 0).await;
    let reply: serde_json::Value = serde_json::from_str(&json).unwrap();
    let entries = reply["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1 + BUSY_SALES, "{json}");
    assert_eq!(reply["pages"].as_u64(), Some(2));
    assert_eq!(entries.last().unwrap()["cash_after_minor"].as_i64(), Some(10_000 - BUSY_SALES as i64));
    let one_page = office.by(FINANCE, &["--json", "history", &busy, "--one-page"], 0).await;
    let reply: serde_json::Value = serde_json::from_str(&one_page).unwrap();
    assert_eq!((reply["entries"].as_array().unwrap().len(), reply["more"].as_bool()), (100, Some(true)));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_a_wrong_passcode_get_clear_errors_and_the_configuration_names_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let (server, office) = open(dir.path()).await;
    let admin_key = office.admin_key.clone();
    let card = CARD.to_string();

    // A wrong passcode: the switch's decline, exit status 1.
    let out = office
        .by(
            (ADMIN.0, "wr0ng-pass"),
            &["set-operator", "9", "--role", "admin", "--operator-store", "0", "--disabled"],
            1,
        )
        .await;
    assert!(out.contains("operator_refused"), "{out}");
    // Refused before anything is sent, exit status 2, with what is wrong.
    for (args, problem) in [
        (vec!["admin", "history", &card, "--operator", "1", "--passcode-file", "x"], "--store"),
        (vec!["admin", "--store", "21", "history", "123", "--operator", "1", "--passcode-file", "x"], "123"),
        (vec!["admin", "--store", "21", "adjust", &card, "--operator", "1", "--passcode-file", "x"], "--amount"),
        (
            vec!["admin", "--store", "21", "history", &card, "--operator", "1", "--passcode-file", "/nonexistent"],
            "/nonexistent",
        ),
    ] {
        let mut args: Vec<String> = args.into_iter().map(str::to_string).collect();
        args.extend([
            "--addr".to_string(),
            office.addr.clone(),
            "--admin-key-file".into(),
            admin_key.display().to_string(),
        ]);
        let (code, out, err) = support::run_cardswitch(args.clone()).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(problem), "{args:?}: {err}");
    }
    // No switch there: a connection error, exit status 2.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let passcode = office.passcode_file(ADMIN.0, ADMIN.1);
    let args =
        ["admin", "--addr", &closed.to_string(), "--admin-key-file", &admin_key.display().to_string(), "--store", "21"];
    let history = ["history", card.as_str(), "--operator", "1", "--passcode-file", passcode.as_str()];
    let (code, _, err) = support::run_cardswitch(args.iter().chain(&history).map(|s| s.to_string()).collect()).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    // Neither --addr nor --config.
    let (code, _, err) =
        support::run_cardswitch(["admin", "--store", "21"].iter().chain(&history).map(|s| s.to_string()).collect())
            .await;
    assert_eq!((code, err.contains("--addr")), (2, true), "{err}");

    // The switch's own configuration file: a wildcard listen address is this machine, and
    // the admin credential is the one it names (relative to the file).
    let port = server.local_addr.port();
    let config_file = dir.path().join("cardswitch.toml");
    std::fs::write(
        &config_file,
        format!("[server]\nlisten = \"0.0.0.0:{port}\"\n\n[secrets]\nadmin_key_file = \"admin.key\"\n"),
    )
    .unwrap();
    let new_passcode = office.passcode_file(9, "f1nance9");
    let args = [
        "admin",
        "--config",
        &config_file.display().to_string(),
        "--store",
        "21",
        "--json",
        "set-operator",
        "9",
        "--role",
        "finance",
        "--operator-store",
        "0",
        "--disabled",
        "--new-passcode-file",
        &new_passcode,
        "--operator",
        "1",
        "--passcode-file",
        &passcode,
    ];
    let (code, out, err) = support::run_cardswitch(args.iter().map(|s| s.to_string()).collect()).await;
    assert_eq!(code, 0, "{out}{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["code"].as_str(), Some("approved"), "{out}");
    server.shutdown().await;
}

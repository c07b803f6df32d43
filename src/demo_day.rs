//! `cardswitch demo --catalog retail|hotel`: a business day of a retail chain or a hotel,
//! under the shipped catalog, against an embedded switch over real TCP, told step by step
//! the way a cashier or a front desk would see it, and closed with the day's journal.

use std::collections::BTreeMap;
use std::sync::Arc;

use protocol::client::{Client, ClientError};
use protocol::types::format_minor;
use protocol::{
    AdminAction, AdminFlags, CardNo, CardReply, Category, MemberData, OperatorAuth, OperatorRole, PaymentMethod,
    Request, Response, ResponseCode, SaleFlags, Sealed, SecretKind, TerminalKey, TerminalRole, Verification,
};

use crate::engine::catalog::Catalog;
use crate::server::{Config, Server, ServerError};

/// Which business the day is run for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Business {
    Retail,
    Hotel,
}

impl Business {
    pub fn from_name(name: &str) -> Option<Business> {
        match name {
            "retail" => Some(Business::Retail),
            "hotel" => Some(Business::Hotel),
            _ => None,
        }
    }

    fn catalog_text(self) -> &'static str {
        match self {
            Business::Retail => include_str!("../catalogs/retail.toml"),
            Business::Hotel => include_str!("../catalogs/hotel.toml"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoDayError {
    #[error("cannot create a temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error("the shipped catalog does not load: {0}")]
    Catalog(String),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("setting up: {0}")]
    Setup(String),
    #[error("step {step} ({what}): expected {expected}, got {got}")]
    Unexpected { step: usize, what: String, expected: ResponseCode, got: ResponseCode },
}

const ADMIN_OPERATOR: (u32, &str) = (1, "admin-0001");
const DESK_TERMINAL: u32 = 3001;

/// A terminal of the day: numbers its requests and seals secrets for them.
struct Terminal {
    client: Client,
    terminal_id: u32,
    key: TerminalKey,
    stan: u32,
}

impl Terminal {
    fn next(&mut self) -> u32 {
        self.stan += 1;
        self.stan
    }

    async fn send(&mut self, build: impl FnOnce(&TerminalKey, u32, u32) -> Request) -> Result<Response, ClientError> {
        let stan = self.next();
        let request = build(&self.key, self.terminal_id, stan);
        self.client.call(stan, request).await
    }
}

fn operator(key: &TerminalKey, terminal_id: u32, stan: u32, who: (u32, &str)) -> OperatorAuth {
    OperatorAuth::seal(key, terminal_id, stan, who.0, who.1).expect("demo passcodes fit a sealed field")
}

fn pin(key: &TerminalKey, terminal_id: u32, stan: u32, kind: SecretKind, pin: &str) -> Sealed {
    Sealed::seal(key, kind, terminal_id, stan, pin).expect("demo PINs fit a sealed field")
}

/// The day's narrator: numbers the steps, prints what happened, checks the expected code.
struct Day {
    step: usize,
    catalog: Arc<Catalog>,
    /// The store's business date, as the sign-on told it (S1).
    business_date: u32,
}

impl Day {
    fn tier_name(&self, tier: u8) -> Option<&str> {
        (tier > 0).then(|| self.catalog.member_tiers.get(usize::from(tier) - 1).map(|t| t.name.as_str())).flatten()
    }

    /// Prints one step and its outcome; fails the demo when the code is not `expected`.
    fn tell(&mut self, what: &str, response: &Response, expected: ResponseCode) -> Result<CardReply, DemoDayError> {
        self.step += 1;
        let code = response.code();
        let reply = match response {
            Response::Card { reply, .. } => *reply,
            _ => CardReply::code_only(code),
        };
        println!("{:>2}. {what}", self.step);
        println!("    → {}", self.outcome(response, &reply));
        if code != expected {
            return Err(DemoDayError::Unexpected { step: self.step, what: what.to_string(), expected, got: code });
        }
        Ok(reply)
    }

    fn outcome(&self, response: &Response, r: &CardReply) -> String {
        let money = format_minor;
        let mut parts = vec![r.code.as_str().to_string()];
        match response {
            Response::Member { reply, .. } if reply.code.is_approved() => {
                let m = &reply.member;
                parts.push(format!("{} · ID {} · phone {}", m.name, m.id_number, m.phone));
                return parts.join("  ");
            }
            Response::Member { reply, .. } if reply.problem != 0 => {
                parts.push(format!("field {} is wrong", reply.problem));
                return parts.join("  ");
            }
            Response::History(history) => {
                for e in &history.entries {
                    let kind = protocol::PostingKind::from_u8(e.kind).map_or("?", |k| k.as_str());
                    parts.push(format!(
                        "\n       txn {:>3} {:<18} {:>10}  cash {:>10}  bonus {:>8}  held {:>8}",
                        e.txn_id,
                        kind,
                        money(e.amount_minor),
                        money(e.cash_after_minor),
                        money(e.bonus_after_minor),
                        money(e.held_after_minor)
                    ));
                }
                return parts.concat();
            }
            _ => {}
        }
        if !matches!(response, Response::Card { .. }) {
            return parts.join("  ");
        }
        if r.discount_minor != 0 {
            parts.push(format!(
                "gross {} − discount {} = net {}",
                money(r.gross_minor),
                money(r.discount_minor),
                money(r.amount_minor)
            ));
        } else if r.code.is_approved() && r.amount_minor != 0 {
            parts.push(format!("amount {}", money(r.amount_minor)));
        }
        if r.points_earned != 0 {
            parts.push(format!("points {:+} → {}", r.points_earned, r.points_balance));
        }
        if let Some(tier) = self.tier_name(r.tier) {
            parts.push(format!("tier {tier}"));
        }
        parts.push(format!(
            "cash {} bonus {} held {} ({})",
            money(r.cash_minor),
            money(r.bonus_minor),
            money(r.held_minor),
            r.state
        ));
        if r.limit_minor != 0 {
            parts.push(format!("limit {}", money(r.limit_minor)));
        }
        if r.code == ResponseCode::WrongPin {
            parts.push(format!("{} attempts left", r.pin_attempts_left));
        }
        if r.notices & CardReply::NOTICE_PIN_MUST_CHANGE != 0 {
            parts.push("remind the holder to change the PIN".into());
        }
        if r.notices & CardReply::NOTICE_RECYCLE != 0 {
            parts.push("spent to zero: collect the card for recycling".into());
        }
        parts.join("  ")
    }
}

fn sale(card: CardNo, amount_minor: i64, category: Category, flags: u8, verification: Verification) -> Request {
    Request::Sale { card, amount_minor, category: category as u8, flags, verification }
}

/// Runs the day for `business` and prints it.
pub async fn run(business: Business) -> Result<(), DemoDayError> {
    let dir = tempfile::tempdir().map_err(DemoDayError::TempDir)?;
    let catalog = Arc::new(
        Catalog::from_toml_str(&format!("catalogs/{business:?}.toml").to_lowercase(), business.catalog_text())
            .map_err(|e| DemoDayError::Catalog(e.to_string()))?,
    );
    let mut config = Config::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().expect("literal address"));
    config.catalog = Some(catalog.clone());
    // The first admin operator, made before the switch starts, as `cardswitch operator add`.
    crate::operators::add_to_data_dir(
        dir.path(),
        &config.keys.master,
        ADMIN_OPERATOR.0,
        OperatorRole::Admin,
        0,
        ADMIN_OPERATOR.1.as_bytes(),
    )
    .map_err(|e| DemoDayError::Setup(e.to_string()))?;
    let admin = config.keys.admin.clone();
    let server = Server::start(config).await?;
    let store_id = match business {
        Business::Retail => 201,
        Business::Hotel => 10,
    };
    let company = catalog
        .companies
        .iter()
        .find(|c| c.stores.iter().any(|s| s.id == store_id))
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let store_name = catalog
        .companies
        .iter()
        .flat_map(|c| &c.stores)
        .find(|s| s.id == store_id)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    println!(
        "cardswitch demo, {business:?} catalog version {}: {company}, store {store_id} {store_name}; switch on {}\n",
        catalog.version, server.local_addr
    );
    // The admin terminal provisions the store's terminal (an admin of the store, so it also
    // imports the store's card ranges and sets up the staff).
    let key = admin.derive_terminal_key(DESK_TERMINAL);
    let mut provisioner = Client::connect_with_key(server.local_addr, admin.terminal_id, admin.key.clone()).await?;
    provisioner.sign_on(1, store_id).await?;
    provisioner.provision(2, DESK_TERMINAL, store_id, TerminalRole::Admin, &key).await?;
    let mut client = Client::connect_with_key(server.local_addr, DESK_TERMINAL, key.clone()).await?;
    let signed_on = client.sign_on(100, store_id).await?;
    println!("terminal {DESK_TERMINAL} signed on, business date {}\n", signed_on.business_date);
    let mut t = Terminal { client, terminal_id: DESK_TERMINAL, key, stan: 100 };
    let mut day = Day { step: 0, catalog: catalog.clone(), business_date: signed_on.business_date };
    let result = match business {
        Business::Retail => retail_day(&mut t, &mut day, store_id).await,
        Business::Hotel => hotel_day(&mut t, &mut day, store_id).await,
    };
    drop(t);
    server.shutdown().await;
    result?;
    print_journal(dir.path())
}

/// The staff of the day, created over the wire by the admin operator.
async fn staff(
    t: &mut Terminal,
    day: &mut Day,
    staff: &[(u32, OperatorRole, u32, &str, &str)],
) -> Result<(), DemoDayError> {
    for (id, role, store, passcode, who) in staff {
        let response = t
            .send(|key, tid, stan| Request::SetOperator {
                operator: operator(key, tid, stan, ADMIN_OPERATOR),
                target_id: *id,
                role: *role as u8,
                store_id: *store,
                enabled: 1,
                new_passcode: pin(key, tid, stan, SecretKind::NewPasscode, passcode),
            })
            .await?;
        day.tell(&format!("admin creates operator {id}: {who} ({role})"), &response, ResponseCode::Approved)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn admin_request(
    key: &TerminalKey,
    tid: u32,
    stan: u32,
    who: (u32, &str),
    card: CardNo,
    action: AdminAction,
    flags: u8,
    value: i64,
) -> Request {
    Request::CardAdmin {
        operator: operator(key, tid, stan, who),
        card,
        action: action as u8,
        flags,
        value,
        original_txn_id: 0,
        ticket: 0,
        verification: Verification::NONE,
        new_pin: Sealed::NONE,
    }
}

async fn register(
    t: &mut Terminal,
    day: &mut Day,
    who: (u32, &str),
    card: CardNo,
    member: &MemberData,
    what: &str,
    expected: ResponseCode,
) -> Result<(), DemoDayError> {
    let stan = t.next();
    let register =
        protocol::RegisterMember { operator: operator(&t.key, t.terminal_id, stan, who), card, member: member.clone() };
    let response = t.client.register_member(stan, 0, register).await?;
    day.tell(what, &response, expected)?;
    Ok(())
}

async fn retail_day(t: &mut Terminal, day: &mut Day, store: u32) -> Result<(), DemoDayError> {
    use ResponseCode::*;
    const CASHIER: (u32, &str) = (2011, "cashier-2011");
    const SERVICE: (u32, &str) = (9001, "service-9001");
    const FINANCE: (u32, &str) = (9101, "finance-9101");
    staff(
        t,
        day,
        &[
            (CASHIER.0, OperatorRole::Cashier, store, CASHIER.1, "王芳, cashier"),
            (SERVICE.0, OperatorRole::CustomerService, 0, SERVICE.1, "李娜, customer service"),
            (FINANCE.0, OperatorRole::Finance, 0, FINANCE.1, "赵强, finance"),
        ],
    )
    .await?;
    let member_first = CardNo(6200_1000_0000_0000);
    let gift_first = CardNo(6200_2000_0000_0000);
    for (first, product, what) in [(member_first, 1, "member"), (gift_first, 2, "gift")] {
        let import = Request::ImportRange { first, last: CardNo(first.0 + 9_999), product, store_id: store };
        let response = t.send(|_, _, _| import).await?;
        day.tell(&format!("import 10,000 {what} card numbers for the store (L1)"), &response, Approved)?;
    }
    let card = CardNo(member_first.0 + 1);
    let cash = PaymentMethod::Cash as u8;
    let r = t.send(|_, _, _| Request::SellCard { card, amount_minor: 10_000, method: cash }).await?;
    day.tell(&format!("sell member card {card} with 100.00 cash (L2, L3)"), &r, Approved)?;
    let wechat = PaymentMethod::Wechat as u8;
    let r = t.send(|_, _, _| Request::Load { card, amount_minor: 300_000, method: wechat }).await?;
    day.tell("load 3,000.00 by WeChat before registration: refused (M1)", &r, MemberNotRegistered)?;
    let zhang = MemberData {
        id_type: 1,
        birth_date: 0,
        name: "张伟".into(),
        id_number: "11010519900307101X".into(),
        phone: "13800138000".into(),
        address: "北京市西城区金融大街1号".into(),
        email: String::new(),
    };
    let typo = MemberData { id_number: "110105199003071011".into(), ..zhang.clone() };
    register(
        t,
        day,
        SERVICE,
        card,
        &typo,
        "register the holder with a mistyped ID: refused, nothing stored (M2)",
        MemberDataInvalid,
    )
    .await?;
    register(t, day, SERVICE, card, &zhang, "register the holder 张伟 against his ID card (M1)", Approved).await?;
    let r = t.send(|_, _, _| Request::Load { card, amount_minor: 300_000, method: wechat }).await?;
    day.tell("load 3,000.00 by WeChat: 5% bonus under the rule in force (V3)", &r, Approved)?;
    let with_pin = |key: &TerminalKey, tid, stan, p: &str| Verification::pin(pin(key, tid, stan, SecretKind::Pin, p));
    let r =
        t.send(|key, tid, stan| sale(card, 20_000, Category::Retail, 0, with_pin(key, tid, stan, "123456"))).await?;
    day.tell("sale 200.00 clothing with a wrong PIN (T2, L4)", &r, WrongPin)?;
    let r =
        t.send(|key, tid, stan| sale(card, 20_000, Category::Retail, 0, with_pin(key, tid, stan, "000000"))).await?;
    day.tell("sale 200.00 clothing with the initial PIN: bronze 5% off, 1 point per yuan (T3, K1, K2)", &r, Approved)?;
    let r = t
        .send(|key, tid, stan| Request::CardAdmin {
            operator: operator(key, tid, stan, CASHIER),
            card,
            action: AdminAction::ChangePin as u8,
            flags: 0,
            value: 0,
            original_txn_id: 0,
            ticket: 0,
            verification: with_pin(key, tid, stan, "000000"),
            new_pin: pin(key, tid, stan, SecretKind::NewPin, "246810"),
        })
        .await?;
    day.tell("the holder changes the PIN at the counter (L3)", &r, Approved)?;
    let appliance = t
        .send(|key, tid, stan| sale(card, 100_000, Category::SmallAppliance, 0, with_pin(key, tid, stan, "246810")))
        .await?;
    let appliance = day.tell("sale 1,000.00 small appliance: 1 point per 5.00 (K2)", &appliance, Approved)?;
    let r = t
        .send(|key, tid, stan| {
            sale(card, 5_000, Category::Retail, SaleFlags::PROMOTION, with_pin(key, tid, stan, "246810"))
        })
        .await?;
    day.tell("sale 50.00 already on promotion: no member discount, no points (T3, K2)", &r, Approved)?;
    let refund = Request::Refund { card, original_txn_id: appliance.txn_id, amount_minor: 47_500 };
    let r = t.send(|_, _, _| refund).await?;
    day.tell("the kettle comes back: refund 475.00 of the 950.00 paid, points back in proportion (T5)", &r, Approved)?;
    let r = t
        .send(|key, tid, stan| admin_request(key, tid, stan, CASHIER, card, AdminAction::RedeemPoints, 0, 100))
        .await?;
    day.tell("redeem 100 points for 1.00 of bonus value (K4)", &r, Approved)?;
    let r = t.send(|key, tid, stan| Request::MemberQuery { operator: operator(key, tid, stan, CASHIER), card }).await?;
    day.tell("the cashier looks the member up: ID and phone masked (M3)", &r, Approved)?;
    let r = t.send(|key, tid, stan| Request::MemberQuery { operator: operator(key, tid, stan, SERVICE), card }).await?;
    day.tell("customer service looks the member up: in full (M3)", &r, Approved)?;

    let gift = CardNo(gift_first.0 + 1);
    let r = t
        .send(|_, _, _| Request::SellCard { card: gift, amount_minor: 50_000, method: PaymentMethod::Alipay as u8 })
        .await?;
    day.tell(&format!("sell gift card {gift} for 500.00 by Alipay (P2, L7: valid three years)"), &r, Approved)?;
    let r = t.send(|_, _, _| sale(gift, 50_000, Category::Dining, 0, Verification::NONE)).await?;
    day.tell("dinner for 500.00 on the gift card: no points, no discount (P2)", &r, Approved)?;
    let r =
        t.send(|key, tid, stan| admin_request(key, tid, stan, CASHIER, gift, AdminAction::RecycleGift, 0, 0)).await?;
    day.tell("the store takes the empty gift card back (L9)", &r, Approved)?;
    let r = t
        .send(|key, tid, stan| Request::CardHistory {
            operator: operator(key, tid, stan, FINANCE),
            card,
            after_txn_id: 0,
        })
        .await?;
    day.tell("finance lists the member card's postings (S9)", &r, Approved)?;
    Ok(())
}

async fn hotel_day(t: &mut Terminal, day: &mut Day, store: u32) -> Result<(), DemoDayError> {
    use ResponseCode::*;
    const DESK: (u32, &str) = (1001, "frontdesk-1001");
    const SERVICE: (u32, &str) = (1002, "service-1002");
    const MANAGER: (u32, &str) = (1009, "manager-1009");
    staff(
        t,
        day,
        &[
            (DESK.0, OperatorRole::FrontDesk, store, DESK.1, "陈静, front desk"),
            (SERVICE.0, OperatorRole::CustomerService, 0, SERVICE.1, "刘洋, guest services"),
            (MANAGER.0, OperatorRole::Manager, store, MANAGER.1, "孙磊, duty manager"),
        ],
    )
    .await?;
    let ranges = [
        (CardNo(6200_8000_0000_0000), 8, "VIP stored-value"),
        (CardNo(6200_4000_0000_0000), 4, "cash"),
        (CardNo(6200_5000_0000_0000), 5, "complimentary"),
        (CardNo(6200_7000_0000_0000), 7, "room-only"),
    ];
    for (first, product, what) in ranges {
        let import = Request::ImportRange { first, last: CardNo(first.0 + 999), product, store_id: store };
        let response = t.send(|_, _, _| import).await?;
        day.tell(&format!("import 1,000 {what} card numbers (L1)"), &response, Approved)?;
    }
    let vip = CardNo(ranges[0].0 .0 + 1);
    let transfer = PaymentMethod::Transfer as u8;
    let r = t.send(|_, _, _| Request::SellCard { card: vip, amount_minor: 1_000_000, method: transfer }).await?;
    day.tell("sell a VIP card with 10,000.00: below the 20,000.00 minimum (V2, P8)", &r, LoadBelowMinimum)?;
    let r = t.send(|_, _, _| Request::SellCard { card: vip, amount_minor: 2_000_000, method: transfer }).await?;
    day.tell(&format!("sell VIP card {vip} with 20,000.00 by bank transfer: waits for the funds (L2)"), &r, Approved)?;
    // Born on this day (in 1984, a leap year, so any day is a date): the birthday discount
    // applies today (K3).
    let today = day.business_date;
    let guest = MemberData {
        id_type: 2,
        birth_date: 1984_0000 + today % 10_000,
        name: "王明".into(),
        id_number: "E12345678".into(),
        phone: "13912345678".into(),
        address: String::new(),
        email: "wang.ming@example.cn".into(),
    };
    register(t, day, SERVICE, vip, &guest, "register the guest 王明 against his passport (M1, P8)", Approved).await?;
    let with_pin = |key: &TerminalKey, tid, stan, p: &str| Verification::pin(pin(key, tid, stan, SecretKind::Pin, p));
    let r = t
        .send(|key, tid, stan| Request::Hold {
            card: vip,
            amount_minor: 100_000,
            category: Category::Room as u8,
            verification: with_pin(key, tid, stan, "000000"),
        })
        .await?;
    day.tell("check-in deposit of 1,000.00 before finance confirmed the transfer", &r, CardPendingFunds)?;
    let finance = (1003, "finance-1003");
    staff(t, day, &[(finance.0, OperatorRole::Finance, 0, finance.1, "周敏, finance")]).await?;
    let r =
        t.send(|key, tid, stan| admin_request(key, tid, stan, finance, vip, AdminAction::ConfirmFunds, 0, 0)).await?;
    day.tell("finance confirms the transfer arrived (L2)", &r, Approved)?;
    let hold = t
        .send(|key, tid, stan| Request::Hold {
            card: vip,
            amount_minor: 100_000,
            category: Category::Room as u8,
            verification: with_pin(key, tid, stan, "000000"),
        })
        .await?;
    let hold = day.tell("check-in: 1,000.00 deposit held on the VIP card (T4)", &hold, Approved)?;
    let r = t.send(|key, tid, stan| sale(vip, 38_000, Category::Dining, 0, with_pin(key, tid, stan, "000000"))).await?;
    day.tell("dinner 380.00 at the Chinese restaurant: birthday discount 12% beats bronze (K3)", &r, Approved)?;
    let r = t.send(|_, _, _| Request::Capture { card: vip, hold_txn_id: hold.txn_id, amount_minor: 86_000 }).await?;
    day.tell("check-out: two nights 860.00 captured, the rest of the deposit released (T4, T3)", &r, Approved)?;
    let r = t.send(|key, tid, stan| admin_request(key, tid, stan, SERVICE, vip, AdminAction::ReportLoss, 0, 0)).await?;
    day.tell("the guest calls: card lost; blocked at once (L5)", &r, Approved)?;
    let new_vip = CardNo(vip.0 + 1);
    let r = t
        .send(|key, tid, stan| Request::ReplaceCard {
            operator: operator(key, tid, stan, SERVICE),
            old_card: vip,
            new_card: new_vip,
            flags: AdminFlags::ID_CHECKED,
            method: PaymentMethod::Cash as u8,
        })
        .await?;
    day.tell(
        &format!("replacement card {new_vip}: value, points, tier and validity move; 18.00 fee (L6)"),
        &r,
        Approved,
    )?;

    let cash_card = CardNo(ranges[1].0 .0 + 1);
    let r = t
        .send(|_, _, _| Request::SellCard { card: cash_card, amount_minor: 500_000, method: PaymentMethod::Cash as u8 })
        .await?;
    day.tell("sell a cash card for 5,000.00: 10% bonus (P4, V3)", &r, Approved)?;
    let comp = CardNo(ranges[2].0 .0 + 1);
    let r = t
        .send(|_, _, _| Request::SellCard { card: comp, amount_minor: 100_000, method: PaymentMethod::Cash as u8 })
        .await?;
    day.tell("issue a complimentary card with 1,000.00 (P5)", &r, Approved)?;
    let r = t.send(|_, _, _| sale(comp, 28_800, Category::Spa, 0, Verification::NONE)).await?;
    day.tell("spa 288.00 on the complimentary card: over the 100.00 limit (R2)", &r, LimitExceeded)?;
    let r = t
        .send(|key, tid, stan| {
            let verification = Verification {
                approver_id: MANAGER.0,
                approver_passcode: pin(key, tid, stan, SecretKind::Passcode, MANAGER.1),
                ..Verification::NONE
            };
            sale(comp, 28_800, Category::Spa, 0, verification)
        })
        .await?;
    day.tell("the duty manager overrides the limit (R2, O1)", &r, Approved)?;
    let room = CardNo(ranges[3].0 .0 + 1);
    let r = t
        .send(|_, _, _| Request::SellCard { card: room, amount_minor: 60_000, method: PaymentMethod::BankCard as u8 })
        .await?;
    day.tell("sell a room-only card for 600.00 (P7)", &r, Approved)?;
    let r = t.send(|_, _, _| sale(room, 12_000, Category::Dining, 0, Verification::NONE)).await?;
    day.tell("the room card at the restaurant: refused (R1)", &r, CategoryNotAllowed)?;
    let r = t.send(|_, _, _| sale(room, 48_800, Category::Room, 0, Verification::NONE)).await?;
    day.tell("the room card pays a night (R1)", &r, Approved)?;
    let r = t
        .send(|key, tid, stan| Request::CardHistory {
            operator: operator(key, tid, stan, DESK),
            card: new_vip,
            after_txn_id: 0,
        })
        .await?;
    day.tell("the front desk lists the new VIP card's postings (S9)", &r, Approved)?;
    Ok(())
}

/// The day's journal, from the data directory of the stopped switch: postings and amounts by
/// kind.
fn print_journal(dir: &std::path::Path) -> Result<(), DemoDayError> {
    let store = crate::store::Store::open(dir).map_err(|e| DemoDayError::Setup(e.to_string()))?;
    let mut by_kind: BTreeMap<&'static str, (u64, i64, i64)> = BTreeMap::new();
    let (mut cash, mut bonus) = (0i64, 0i64);
    for entry in store.journal() {
        let entry = entry.map_err(|e| DemoDayError::Setup(e.to_string()))?;
        let row = by_kind.entry(entry.kind.as_str()).or_default();
        row.0 += 1;
        row.1 += entry.cash_delta_minor;
        row.2 += entry.bonus_delta_minor;
        cash += entry.cash_delta_minor;
        bonus += entry.bonus_delta_minor;
    }
    println!("\nThe day's journal (every posting durable before its reply):");
    println!("  {:<18} {:>5} {:>14} {:>12}", "kind", "count", "cash change", "bonus change");
    for (kind, (count, cash, bonus)) in &by_kind {
        println!("  {kind:<18} {count:>5} {:>14} {:>12}", format_minor(*cash), format_minor(*bonus));
    }
    println!("  {:<18} {:>5} {:>14} {:>12}", "outstanding", "", format_minor(cash), format_minor(bonus));
    Ok(())
}

//! `cardswitch settle`: the day-end batch of a business date over a stopped switch's data
//! directory (S3–S5, S8, T9). The computation (`settle_entries`) is pure: it reads journal
//! entries and the cards' balances and writes nothing, so every figure can be checked in
//! memory; `run` reads the store and writes the files.
//!
//! Outputs in `--out`: `stores.csv` (totals per store, kind and payment method, S3),
//! `liability.csv` (the proof, S5), `differences.csv` (against finance, S4), `self_use.csv`
//! (T9), `summary.json`. Rows are in a fixed order and amounts are integers of fen, so a
//! second run over the same day gives the same bytes (S8).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use protocol::types::{format_minor, parse_minor};
use protocol::{PaymentMethod, PostingKind};

use crate::engine::rules::date_text;
use crate::engine::{BusinessDate, JournalEntry, JOURNAL_SELF_USE};

/// Exit status when finance's figures differ from the switch's (the report is written).
pub const EXIT_FINANCE_DIFFERS: u8 = 3;
/// Exit status when the liability proof fails: a defect, never an accepted outcome.
pub const EXIT_LIABILITY_FAILS: u8 = 4;
/// Most lines a finance file may have.
pub const MAX_FINANCE_LINES: usize = 1_000_000;
/// Most lots of value by company one card keeps for netting (S6); beyond it the oldest is
/// added to the next one, whose company then owns both.
pub const MAX_VALUE_LOTS: usize = 32;

/// S6: a card's value by the company that collected the cash for it, oldest first.
#[derive(Clone, Debug, Default)]
struct ValueLots(std::collections::VecDeque<(u32, i64)>);

impl ValueLots {
    fn add(&mut self, company: u32, minor: i64) {
        if minor <= 0 {
            return;
        }
        match self.0.back_mut() {
            Some((c, v)) if *c == company => *v += minor,
            _ => self.0.push_back((company, minor)),
        }
        if self.0.len() > MAX_VALUE_LOTS {
            let (_, oldest) = self.0.pop_front().expect("over the maximum");
            self.0.front_mut().expect("more than one").1 += oldest;
        }
    }

    /// Takes `minor` of value, the lots of `first` company first when given (a load undone
    /// takes back its own company's value), then the oldest; returns what came from where.
    fn take(&mut self, minor: i64, first: Option<u32>) -> Vec<(u32, i64)> {
        let mut taken = Vec::new();
        let mut left = minor;
        if let Some(company) = first {
            for lot in self.0.iter_mut().rev().filter(|(c, _)| *c == company) {
                let part = left.min(lot.1);
                lot.1 -= part;
                left -= part;
                if part > 0 {
                    taken.push((company, part));
                }
            }
        }
        for lot in self.0.iter_mut() {
            let part = left.min(lot.1);
            lot.1 -= part;
            left -= part;
            if part > 0 {
                taken.push((lot.0, part));
            }
        }
        self.0.retain(|(_, v)| *v > 0);
        taken
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("--date {0}: not a date YYYY-MM-DD")]
    Date(String),
    #[error("cannot open the data directory: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot read the finance file {path}: {source}")]
    FinanceRead { path: String, source: std::io::Error },
    #[error("finance file {path}, line {line}: {problem}")]
    Finance { path: String, line: usize, problem: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("closing the day: {0}")]
    Close(#[from] crate::days::StoppedError),
    #[error("the running switch refused: {0}")]
    Switch(String),
    #[error("cannot reach the running switch through {path}: {source}")]
    Control { path: String, source: std::io::Error },
}

/// Count and sums of the postings of one kind (and payment method) at one store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub count: u64,
    pub amount_minor: i64,
    pub cash_delta_minor: i64,
    pub bonus_delta_minor: i64,
}

impl Totals {
    fn add(&mut self, e: &JournalEntry) {
        self.count += 1;
        self.amount_minor += e.amount_minor;
        self.cash_delta_minor += e.cash_delta_minor;
        self.bonus_delta_minor += e.bonus_delta_minor;
    }
}

/// S5, separately for cash and bonus value: opening + the day's movements = closing, and the
/// journal's sums equal the cards' balances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liability {
    pub cash_opening_minor: i64,
    pub bonus_opening_minor: i64,
    /// The day's movements by kind: (cash, bonus).
    pub movements: BTreeMap<&'static str, (i64, i64)>,
    pub cash_closing_minor: i64,
    pub bonus_closing_minor: i64,
    /// Value held by holds still open at the close.
    pub holds_minor: i64,
    /// What the cards held at the close (cash, bonus, held): their balances as read, less
    /// every posting of a later day. Settling while later days are posted, or again long
    /// after, gives the same figure.
    pub cards_at_close_minor: (i64, i64, i64),
}

impl Liability {
    /// Opening plus movements is closing, and the closing (and the holds) are what the cards
    /// held at the close: the journal explains every card balance.
    pub fn balanced(&self) -> bool {
        let moved = |pick: fn(&(i64, i64)) -> i64| self.movements.values().map(pick).sum::<i64>();
        let rolls = self.cash_opening_minor + moved(|m| m.0) == self.cash_closing_minor
            && self.bonus_opening_minor + moved(|m| m.1) == self.bonus_closing_minor;
        let (cash, bonus, held) = self.cards_at_close_minor;
        rolls && (self.cash_closing_minor, self.bonus_closing_minor, self.holds_minor) == (cash, bonus, held)
    }
}

/// One difference between finance's figures and the switch's (S4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub store_id: u32,
    pub method: u8,
    pub finance_minor: i64,
    pub switch_minor: i64,
}

/// The day's settlement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settlement {
    pub date: BusinessDate,
    /// (store, kind, payment method) → totals (S3).
    pub stores: BTreeMap<(u32, &'static str, u8), Totals>,
    pub liability: Liability,
    /// Money collected per (store, payment method): loads and card sales, less their voids,
    /// reversals and load reversals, plus fees (S4, V6).
    pub collected: BTreeMap<(u32, u8), i64>,
    /// T9: staff members' purchases on their own cards, rung up by themselves.
    pub self_use: Vec<JournalEntry>,
    pub transactions: u64,
    /// S6: the day's payables between companies, netted per pair: (payer, payee) → amount.
    pub netting: BTreeMap<(u32, u32), i64>,
    /// S8: when the day ends a month, the month's sales per store: count and net amount
    /// (sales and captures, less refunds, voids and reversals of them).
    pub monthly: Option<BTreeMap<u32, (u64, i64)>>,
    /// The day's postings made by its day-end housekeeping (S7).
    pub housekeeping_postings: u64,
}

/// Settles `date` from every journal entry of the data directory, in the order they were
/// posted, and the cards' balances (cash, bonus, held). `company_of` names the company of a
/// store (S6; 0 for a store no company lists).
pub fn settle_entries(
    entries: impl IntoIterator<Item = JournalEntry>,
    date: BusinessDate,
    cards: (i64, i64, i64),
    company_of: impl Fn(u32) -> u32,
) -> Settlement {
    let mut s = Settlement { date, ..Settlement::default() };
    let l = &mut s.liability;
    // Every posting of a later day, taken off the cards' balances as read.
    let (mut cash_later, mut bonus_later, mut held_later) = (0i64, 0i64, 0i64);
    let mut held_to_date = 0i64;
    // The payment method of every load, so that undoing one is counted against its method.
    let mut load_method: BTreeMap<u64, u8> = BTreeMap::new();
    // S6: every card's value by collecting company, and what a transfer out carried (L6).
    let mut lots: std::collections::HashMap<protocol::CardNo, ValueLots> = Default::default();
    let mut in_transfer: BTreeMap<u64, ValueLots> = BTreeMap::new();
    let mut dues: BTreeMap<(u32, u32), i64> = BTreeMap::new();
    let month_ends = crate::engine::rules::add_days(date, 1) / 100 != date / 100;
    let mut monthly: BTreeMap<u32, (u64, i64)> = BTreeMap::new();
    // Debits by id, so that their refunds and undoings count against the month's sales.
    let mut debits: std::collections::HashSet<u64> = Default::default();
    for e in entries {
        if month_ends && e.business_date / 100 == date / 100 && e.business_date <= date {
            match e.kind {
                PostingKind::Sale | PostingKind::Capture => {
                    debits.insert(e.txn_id);
                    let row = monthly.entry(e.store_id).or_default();
                    row.0 += 1;
                    row.1 += e.amount_minor;
                }
                PostingKind::Refund | PostingKind::Void | PostingKind::Reversal if debits.contains(&e.ref_txn_id) => {
                    monthly.entry(e.store_id).or_default().1 -= e.amount_minor;
                }
                _ => {}
            }
        }
        let company = company_of(e.store_id);
        let value = e.cash_delta_minor + e.bonus_delta_minor;
        let card_lots = lots.entry(e.card).or_default();
        match e.kind {
            PostingKind::TransferOut => {
                in_transfer.insert(e.txn_id, std::mem::take(card_lots));
            }
            PostingKind::TransferIn => {
                let moved = in_transfer.remove(&e.ref_txn_id).unwrap_or_default();
                for (c, v) in moved.0 {
                    card_lots.add(c, v);
                }
            }
            PostingKind::TransferBack => {
                for (c, v) in in_transfer.remove(&e.ref_txn_id).unwrap_or_default().0 {
                    card_lots.add(c, v);
                }
            }
            _ if value > 0 => card_lots.add(company, value),
            _ if value < 0 => {
                let undoes_load =
                    matches!(e.kind, PostingKind::Void | PostingKind::Reversal | PostingKind::LoadReversal)
                        && load_method.contains_key(&e.ref_txn_id);
                let taken = card_lots.take(-value, undoes_load.then_some(company));
                // Value spent at another company's store: the company holding its cash owes
                // the one that sold the goods.
                if e.business_date == date && matches!(e.kind, PostingKind::Sale | PostingKind::Capture) {
                    for (holder, part) in taken.into_iter().filter(|(holder, _)| *holder != company) {
                        *dues.entry((holder, company)).or_default() += part;
                    }
                }
            }
            _ => {}
        }
        if e.business_date > date {
            cash_later += e.cash_delta_minor;
            bonus_later += e.bonus_delta_minor;
            held_later += e.held_delta_minor;
        }
        if matches!(e.kind, PostingKind::Load | PostingKind::SellCard) {
            load_method.insert(e.txn_id, e.method);
        }
        if e.business_date < date {
            l.cash_opening_minor += e.cash_delta_minor;
            l.bonus_opening_minor += e.bonus_delta_minor;
        }
        if e.business_date <= date {
            held_to_date += e.held_delta_minor;
        }
        if e.business_date != date {
            continue;
        }
        s.transactions += 1;
        if e.kind.is_housekeeping() {
            s.housekeeping_postings += 1;
        }
        s.stores.entry((e.store_id, e.kind.as_str(), e.method)).or_default().add(&e);
        let movement = l.movements.entry(e.kind.as_str()).or_default();
        movement.0 += e.cash_delta_minor;
        movement.1 += e.bonus_delta_minor;
        let collected = match e.kind {
            PostingKind::Load | PostingKind::SellCard => Some((e.method, e.cash_delta_minor)),
            PostingKind::Fee => Some((e.method, e.amount_minor)),
            PostingKind::Void | PostingKind::Reversal | PostingKind::LoadReversal => {
                load_method.get(&e.ref_txn_id).map(|method| (*method, e.cash_delta_minor))
            }
            _ => None,
        };
        if let Some((method, minor)) = collected {
            *s.collected.entry((e.store_id, method)).or_default() += minor;
        }
        if e.sale_flags & JOURNAL_SELF_USE != 0 {
            s.self_use.push(e);
        }
    }
    l.cash_closing_minor = l.cash_opening_minor + l.movements.values().map(|m| m.0).sum::<i64>();
    l.bonus_closing_minor = l.bonus_opening_minor + l.movements.values().map(|m| m.1).sum::<i64>();
    l.holds_minor = held_to_date;
    l.cards_at_close_minor = (cards.0 - cash_later, cards.1 - bonus_later, cards.2 - held_later);
    s.self_use.sort_by_key(|e| e.txn_id);
    s.monthly = month_ends.then_some(monthly);
    // One payable per pair of companies: what each owes the other, netted.
    for (&(payer, payee), &minor) in &dues {
        if payer < payee {
            let back = dues.get(&(payee, payer)).copied().unwrap_or(0);
            if minor > back {
                s.netting.insert((payer, payee), minor - back);
            } else if back > minor {
                s.netting.insert((payee, payer), back - minor);
            }
        } else if !dues.contains_key(&(payee, payer)) {
            s.netting.insert((payer, payee), minor);
        }
    }
    s
}

/// Reads a finance file (S4): a header line `date,store,method,amount`, then one line per
/// store and payment method with the money collected that day, in yuan (`1234.56`). Lines of
/// other dates are ignored; a store and method listed twice add up.
pub fn read_finance(path: &Path, date: BusinessDate) -> Result<BTreeMap<(u32, u8), i64>, SettleError> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| SettleError::FinanceRead { path: shown.clone(), source })?;
    let bad = |line: usize, problem: String| SettleError::Finance { path: shown.clone(), line, problem };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == "date,store,method,amount" => {}
        _ => return Err(bad(1, "the first line must be `date,store,method,amount`".into())),
    }
    let mut out = BTreeMap::new();
    for (index, line) in lines {
        let number = index + 1;
        if number > MAX_FINANCE_LINES {
            return Err(bad(number, format!("more than {MAX_FINANCE_LINES} lines")));
        }
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [day, store, method, amount] = fields[..] else {
            return Err(bad(number, format!("{} fields, expected 4: date,store,method,amount", fields.len())));
        };
        let day = parse_date(day).ok_or_else(|| bad(number, format!("`{day}` is not a date YYYY-MM-DD")))?;
        let store: u32 = store.parse().map_err(|_| bad(number, format!("`{store}` is not a store id")))?;
        let method = PaymentMethod::from_name(method)
            .ok_or_else(|| bad(number, format!("`{method}` is not a payment method (cash, bank_card, wechat, …)")))?;
        let (negative, digits) = match amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, amount),
        };
        let minor = parse_minor(digits)
            .ok_or_else(|| bad(number, format!("`{amount}` is not an amount in yuan with at most two decimals")))?;
        if day == date {
            *out.entry((store, method as u8)).or_default() += if negative { -minor } else { minor };
        }
    }
    Ok(out)
}

/// Every store and method where finance and the switch disagree, in order (S4: nothing is
/// adjusted, every difference is listed).
pub fn differences(switch: &BTreeMap<(u32, u8), i64>, finance: &BTreeMap<(u32, u8), i64>) -> Vec<Difference> {
    let keys: std::collections::BTreeSet<&(u32, u8)> = switch.keys().chain(finance.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (s, f) = (switch.get(key).copied().unwrap_or(0), finance.get(key).copied().unwrap_or(0));
            (s != f).then_some(Difference { store_id: key.0, method: key.1, finance_minor: f, switch_minor: s })
        })
        .collect()
}

/// YYYY-MM-DD → YYYYMMDD, for calendar dates only.
pub fn parse_date(text: &str) -> Option<BusinessDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let date: BusinessDate = digits.parse().ok().filter(|_| digits.len() == 8)?;
    crate::engine::rules::is_date(date).then_some(date)
}

fn method_name(method: u8) -> &'static str {
    PaymentMethod::from_u8(method).map_or("none", PaymentMethod::as_str)
}

/// Value loaded and spent per store (loads and card sales; sales and captures net of their
/// refunds and undoings are not split out: spending is the debits of the day).
fn loaded_and_spent(s: &Settlement) -> BTreeMap<u32, (i64, i64)> {
    let mut per_store: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
    for ((store, kind, _), t) in &s.stores {
        let row = per_store.entry(*store).or_default();
        match *kind {
            "load" | "sell_card" => row.0 += t.cash_delta_minor + t.bonus_delta_minor,
            "sale" | "capture" => row.1 -= t.cash_delta_minor + t.bonus_delta_minor,
            _ => {}
        }
    }
    per_store
}

/// A page a finance clerk reads: the proof, the differences, and per store the value loaded
/// against the value spent, with a bar chart of the two.
/// Names of stores and companies for the report (from the catalog; a number where none is).
#[derive(Clone, Debug, Default)]
pub struct Names {
    stores: BTreeMap<u32, String>,
    companies: BTreeMap<u32, String>,
}

impl Names {
    pub fn of(catalog: &crate::engine::catalog::Catalog) -> Names {
        let mut names = Names::default();
        for company in &catalog.companies {
            names.companies.insert(company.id, company.name.clone());
            for store in &company.stores {
                names.stores.insert(store.id, store.name.clone());
            }
        }
        names
    }

    fn store(&self, id: u32) -> String {
        match self.stores.get(&id) {
            Some(name) => format!("{id} {}", escape(name)),
            None => id.to_string(),
        }
    }

    fn company(&self, id: u32) -> String {
        match self.companies.get(&id) {
            Some(name) => format!("{id} {}", escape(name)),
            None if id == 0 => "0 (no company)".to_string(),
            None => id.to_string(),
        }
    }
}

/// Text made safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn report_html(s: &Settlement, diffs: &[Difference], names: &Names) -> String {
    let l = &s.liability;
    let per_store = loaded_and_spent(s);
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Settlement {date}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:4px 10px;text-align:right}}th{{background:#eee}}</style></head><body>\n\
         <h1>Settlement of {date}</h1>\n<p>{n} postings. Liability proof: <b>{proof}</b>. Finance: <b>{fin}</b>.</p>\n",
        date = date_text(s.date),
        n = s.transactions,
        proof = if l.balanced() { "balanced" } else { "NOT BALANCED" },
        fin = match diffs.len() {
            0 => "in balance".to_string(),
            1 => "1 difference".to_string(),
            n => format!("{n} differences"),
        },
    );
    let _ = write!(
        html,
        "<h2>Outstanding value</h2>\n<table><tr><th></th><th>cash</th><th>bonus</th></tr>\n\
         <tr><th>opening</th><td>{}</td><td>{}</td></tr>\n",
        format_minor(l.cash_opening_minor),
        format_minor(l.bonus_opening_minor)
    );
    for (kind, (cash, bonus)) in &l.movements {
        let _ =
            writeln!(html, "<tr><th>{kind}</th><td>{}</td><td>{}</td></tr>", format_minor(*cash), format_minor(*bonus));
    }
    let _ = write!(
        html,
        "<tr><th>closing</th><td>{}</td><td>{}</td></tr>\n<tr><th>cards at the close</th><td>{}</td><td>{}</td></tr>\n</table>\n\
         <p>Holds outstanding: {}.</p>\n",
        format_minor(l.cash_closing_minor),
        format_minor(l.bonus_closing_minor),
        format_minor(l.cards_at_close_minor.0),
        format_minor(l.cards_at_close_minor.1),
        format_minor(l.holds_minor)
    );
    if !diffs.is_empty() {
        html.push_str(
            "<h2>Differences with finance</h2>\n<p>Money collected per store and payment method, as finance \
             counted it and as the switch posted it; nothing has been adjusted.</p>\n<table><tr><th>store</th>\
             <th>method</th><th>finance</th><th>switch</th><th>difference</th></tr>\n",
        );
        for d in diffs {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                names.store(d.store_id),
                method_name(d.method),
                format_minor(d.finance_minor),
                format_minor(d.switch_minor),
                format_minor(d.finance_minor - d.switch_minor)
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("<h2>Between companies</h2>\n");
    if s.netting.is_empty() {
        html.push_str("<p>No value was spent at a store of another company than the one that collected it.</p>\n");
    } else {
        html.push_str("<table><tr><th>owes</th><th>to</th><th>amount</th></tr>\n");
        for ((payer, payee), minor) in &s.netting {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                names.company(*payer),
                names.company(*payee),
                format_minor(*minor)
            );
        }
        html.push_str("</table>\n");
    }
    // The chart: two bars per store, scaled to the largest figure.
    let largest = per_store.values().flat_map(|(a, b)| [*a, *b]).max().unwrap_or(0).max(1);
    let (bar_width, gap, height) = (28, 24, 200);
    let width = per_store.len() as i64 * (2 * bar_width + gap) + gap;
    let _ = write!(
        html,
        "<h2>Value loaded and spent per store</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\">\n",
        height + 40
    );
    for (i, (store, (loaded, spent))) in per_store.iter().enumerate() {
        let x = gap + i as i64 * (2 * bar_width + gap);
        for (j, (value, colour)) in [(*loaded, "#4a7"), (*spent, "#c64")].into_iter().enumerate() {
            let h = value.max(0) * height / largest;
            let _ = writeln!(
                html,
                "<rect x=\"{}\" y=\"{}\" width=\"{bar_width}\" height=\"{h}\" fill=\"{colour}\"><title>{}</title></rect>",
                x + j as i64 * bar_width,
                height - h,
                format_minor(value)
            );
        }
        let _ = writeln!(html, "<text x=\"{x}\" y=\"{}\" font-size=\"12\">{store}</text>", height + 16);
    }
    let _ = write!(
        html,
        "<text x=\"{gap}\" y=\"{}\" font-size=\"12\" fill=\"#4a7\">loaded</text>\n\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#c64\">spent</text>\n</svg>\n",
        height + 34,
        gap + 60,
        height + 34
    );
    html.push_str("<table><tr><th>store</th><th>loaded</th><th>spent</th></tr>\n");
    for (store, (loaded, spent)) in &per_store {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            names.store(*store),
            format_minor(*loaded),
            format_minor(*spent)
        );
    }
    html.push_str(
        "</table>\n<h2>Per store</h2>\n<table><tr><th>store</th><th>posting</th><th>method</th>\
                   <th>count</th><th>amount</th><th>cash</th><th>bonus</th></tr>\n",
    );
    for ((store, kind, method), t) in &s.stores {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            names.store(*store),
            method_name(*method),
            t.count,
            format_minor(t.amount_minor),
            format_minor(t.cash_delta_minor),
            format_minor(t.bonus_delta_minor)
        );
    }
    html.push_str("</table>\n");
    let _ = writeln!(
        html,
        "<p>Staff purchases on their own cards, rung up by themselves (T9): {} (listed in self_use.csv). \
         Day-end housekeeping postings: {}.</p>",
        s.self_use.len(),
        s.housekeeping_postings
    );
    if let Some(monthly) = &s.monthly {
        html.push_str("<h2>The month's sales</h2>\n<table><tr><th>store</th><th>sales</th><th>amount</th></tr>\n");
        for (store, (count, minor)) in monthly {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{count}</td><td>{}</td></tr>",
                names.store(*store),
                format_minor(*minor)
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    html
}

/// The files of the day, by name, in the order they are written.
pub fn render(s: &Settlement, diffs: &[Difference], names: &Names) -> Vec<(&'static str, String)> {
    let mut stores = String::from("store,kind,method,count,amount,cash_delta,bonus_delta\n");
    for ((store, kind, method), t) in &s.stores {
        let _ = writeln!(
            stores,
            "{store},{kind},{},{},{},{},{}",
            method_name(*method),
            t.count,
            format_minor(t.amount_minor),
            format_minor(t.cash_delta_minor),
            format_minor(t.bonus_delta_minor)
        );
    }
    let l = &s.liability;
    let mut liability = String::from("line,cash,bonus\n");
    let _ =
        writeln!(liability, "opening,{},{}", format_minor(l.cash_opening_minor), format_minor(l.bonus_opening_minor));
    for (kind, (cash, bonus)) in &l.movements {
        let _ = writeln!(liability, "{kind},{},{}", format_minor(*cash), format_minor(*bonus));
    }
    let _ =
        writeln!(liability, "closing,{},{}", format_minor(l.cash_closing_minor), format_minor(l.bonus_closing_minor));
    let (cards_cash, cards_bonus, cards_held) = l.cards_at_close_minor;
    let _ = writeln!(liability, "cards_at_close,{},{}", format_minor(cards_cash), format_minor(cards_bonus));
    let _ = writeln!(liability, "cards_held_at_close,{},", format_minor(cards_held));
    let _ = writeln!(liability, "holds_outstanding,{},", format_minor(l.holds_minor));
    let _ = writeln!(liability, "balanced,{},", l.balanced());
    let mut differences = String::from("store,method,finance,switch,difference\n");
    for d in diffs {
        let _ = writeln!(
            differences,
            "{},{},{},{},{}",
            d.store_id,
            method_name(d.method),
            format_minor(d.finance_minor),
            format_minor(d.switch_minor),
            format_minor(d.finance_minor - d.switch_minor)
        );
    }
    let mut self_use = String::from("txn_id,store,terminal,operator,card,amount\n");
    for e in &s.self_use {
        let _ = writeln!(
            self_use,
            "{},{},{},{},{},{}",
            e.txn_id,
            e.store_id,
            e.terminal_id,
            e.operator_id,
            e.card,
            format_minor(e.amount_minor)
        );
    }
    let mut netting = String::from("payer_company,payee_company,amount\n");
    for ((payer, payee), minor) in &s.netting {
        let _ = writeln!(netting, "{payer},{payee},{}", format_minor(*minor));
    }
    let summary = format!(
        "{{\"date\":\"{}\",\"liability\":{{\"balanced\":{},\"cash_opening_minor\":{},\"cash_closing_minor\":{},\
         \"bonus_opening_minor\":{},\"bonus_closing_minor\":{},\"holds_minor\":{}}},\
         \"reconciliation\":{{\"in_balance\":{},\"differences\":{}}},\"transactions\":{},\
         \"housekeeping_postings\":{}}}\n",
        date_text(s.date),
        l.balanced(),
        l.cash_opening_minor,
        l.cash_closing_minor,
        l.bonus_opening_minor,
        l.bonus_closing_minor,
        l.holds_minor,
        diffs.is_empty(),
        diffs.len(),
        s.transactions,
        s.housekeeping_postings
    );
    let mut files = vec![
        ("stores.csv", stores),
        ("liability.csv", liability),
        ("differences.csv", differences),
        ("self_use.csv", self_use),
        ("netting.csv", netting),
        ("report.html", report_html(s, diffs, names)),
        ("summary.json", summary),
    ];
    if let Some(monthly) = &s.monthly {
        let mut text = String::from("month,store,sales,amount\n");
        for (store, (count, minor)) in monthly {
            let _ = writeln!(text, "{},{store},{count},{}", &date_text(s.date)[..7], format_minor(*minor));
        }
        files.push(("monthly.csv", text));
    }
    files
}

/// Journal entries between two progress lines of a long run.
pub const PROGRESS_EVERY: usize = 1_000_000;

/// Writes `bytes` to `path` through a temporary file renamed over it, synced first: killed at
/// any moment, a run leaves each file either as it was or complete, never cut short, and the
/// next run writes it again.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SettleError> {
    use std::io::Write;
    let failed = |source| SettleError::Write { path: path.display().to_string(), source };
    let temporary = path.with_extension("partial");
    let mut file = std::fs::File::create(&temporary).map_err(failed)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)
}

/// Settles `date` over the data directory `data` and writes the files to `out`; returns the
/// exit status (0, or [`EXIT_FINANCE_DIFFERS`], or [`EXIT_LIABILITY_FAILS`]).
///
/// The day is closed at every store first if it is still open (S1), and its day-end
/// housekeeping run (S7). With a switch running on `data`, it does both and hands over a
/// consistent snapshot, which is read and removed; its traffic goes on meanwhile, stamped
/// with the next day. A stopped directory is closed and housekept here. Companies (S6) come
/// from `catalog`, else from the catalog the switch ran with.
pub fn run(
    data: &Path,
    date: &str,
    finance: Option<&Path>,
    catalog: Option<&crate::engine::catalog::Catalog>,
    out: &Path,
) -> Result<u8, SettleError> {
    let day = parse_date(date).ok_or_else(|| SettleError::Date(date.to_string()))?;
    // Finance's file is checked before anything is closed or written.
    let finance = finance.map(|path| read_finance(path, day)).transpose()?;
    let snapshot = crate::control::ControlRequest::Snapshot { date: day };
    let control_path = || data.join(crate::control::SOCKET_NAME).display().to_string();
    match crate::control::request(data, snapshot) {
        Ok(Some(Ok(path))) => {
            eprintln!("settle: the switch is running; {} closed at every store, reading its snapshot", date_text(day));
            let path = std::path::PathBuf::from(path);
            let result = settle_dir(&path, day, finance.as_ref(), catalog, out);
            if let Err(error) = std::fs::remove_dir_all(&path) {
                eprintln!("settle: the snapshot {} was not removed: {error}", path.display());
            }
            result
        }
        Ok(Some(Err(message))) => Err(SettleError::Switch(message)),
        Ok(None) => {
            let (closed, _) = crate::days::close_stopped(data, crate::engine::days::Scope::All, Some(day))?;
            if closed.changed {
                eprintln!("settle: {} closed at every store", date_text(day));
            }
            for (housekept, h) in &closed.housekept {
                eprintln!("settle: housekeeping of {}: {} postings", date_text(*housekept), h.postings());
            }
            settle_dir(data, day, finance.as_ref(), catalog, out)
        }
        Err(source) => Err(SettleError::Control { path: control_path(), source }),
    }
}

/// Settles the closed `day` of the data directory (or snapshot) `data` into `out`.
fn settle_dir(
    data: &Path,
    day: BusinessDate,
    finance: Option<&BTreeMap<(u32, u8), i64>>,
    catalog: Option<&crate::engine::catalog::Catalog>,
    out: &Path,
) -> Result<u8, SettleError> {
    let store = crate::store::Store::open(data)?;
    let stored;
    let catalog = match catalog {
        Some(catalog) => catalog,
        None => {
            stored = crate::days::stored_catalog(&store)?;
            &stored
        }
    };
    let recovered = store.recover(1)?;
    let cards = recovered
        .partitions
        .iter()
        .flat_map(|p| p.cards.values())
        .fold((0, 0, 0), |acc, c| (acc.0 + c.cash_minor, acc.1 + c.bonus_minor, acc.2 + c.held_minor));
    // Long runs show progress: a line every PROGRESS_EVERY entries read.
    let mut entries: Vec<JournalEntry> = Vec::new();
    let reading = std::time::Instant::now();
    for entry in store.journal() {
        entries.push(entry?);
        if entries.len() % PROGRESS_EVERY == 0 {
            eprintln!("settle: {} journal entries read ({:.1} s)", entries.len(), reading.elapsed().as_secs_f64());
        }
    }
    let settlement = settle_entries(entries, day, cards, |store| catalog.company_of(store));
    let diffs = match finance {
        Some(finance) => differences(&settlement.collected, finance),
        None => Vec::new(),
    };
    std::fs::create_dir_all(out).map_err(|source| SettleError::Write { path: out.display().to_string(), source })?;
    for (name, text) in render(&settlement, &diffs, &Names::of(catalog)) {
        write_atomically(&out.join(name), text.as_bytes())?;
    }
    eprintln!(
        "settled {}: {} postings, liability {}, {} differences with finance",
        date_text(day),
        settlement.transactions,
        if settlement.liability.balanced() { "balanced" } else { "NOT BALANCED" },
        diffs.len()
    );
    Ok(if !settlement.liability.balanced() {
        EXIT_LIABILITY_FAILS
    } else if !diffs.is_empty() {
        EXIT_FINANCE_DIFFERS
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::CardNo;

    fn entry(
        txn_id: u64,
        kind: PostingKind,
        date: BusinessDate,
        store: u32,
        cash: i64,
        bonus: i64,
        method: u8,
    ) -> JournalEntry {
        JournalEntry {
            txn_id,
            kind,
            card: CardNo(62_0000_0000 + txn_id % 3),
            product: 1,
            business_date: date,
            time_ms: 0,
            local_time: 0,
            terminal_id: 7,
            store_id: store,
            stan: txn_id as u32,
            operator_id: 0,
            amount_minor: (cash + bonus).abs(),
            cash_delta_minor: cash,
            bonus_delta_minor: bonus,
            held_delta_minor: 0,
            ref_txn_id: 0,
            method,
            category: 0,
            sale_flags: 0,
            gross_minor: (cash + bonus).abs(),
            points_delta: 0,
            catalog_version: 1,
            ticket: 0,
            approver_id: 0,
        }
    }

    /// A generated two-day, two-store day with known totals: the second day settles to them
    /// exactly, and its liability proof balances against the cards.
    #[test]
    fn s3_s5_a_day_with_known_totals_settles_to_them() {
        let (d1, d2) = (20261130, 20261201);
        let cash = PaymentMethod::Cash as u8;
        let wechat = PaymentMethod::Wechat as u8;
        let mut entries = vec![entry(1, PostingKind::SellCard, d1, 21, 100_000, 5_000, cash)];
        let mut txn = 1;
        for n in 0..50 {
            txn += 1;
            entries.push(entry(txn, PostingKind::Load, d2, 21 + n % 2, 10_000, 500, wechat));
            txn += 1;
            entries.push(entry(txn, PostingKind::Sale, d2, 21, -3_000, -200, 0));
        }
        let mut void = entry(txn + 1, PostingKind::Void, d2, 22, -10_000, -500, 0);
        void.ref_txn_id = 4; // the load of txn 4 (store 22), by WeChat
        entries.push(void);
        let cards = (100_000 + 50 * 7_000 - 10_000, 5_000 + 50 * 300 - 500, 0);
        let s = settle_entries(entries, d2, cards, |_| 1);
        assert_eq!(s.transactions, 101);
        assert_eq!(s.stores[&(21, "load", wechat)].count, 25);
        assert_eq!(s.stores[&(21, "sale", 0)].cash_delta_minor, -150_000);
        assert_eq!(s.collected[&(21, wechat)], 250_000);
        assert_eq!(s.collected[&(22, wechat)], 240_000, "the voided load is not collected");
        let l = &s.liability;
        assert_eq!((l.cash_opening_minor, l.bonus_opening_minor), (100_000, 5_000));
        assert_eq!((l.cash_closing_minor, l.bonus_closing_minor), (cards.0, cards.1));
        assert!(l.balanced());
        // A card balance the journal does not explain fails the proof.
        let broken = settle_entries(s_entries_again(), d2, (cards.0 + 1, cards.1, 0), |_| 1);
        assert!(!broken.liability.balanced());
    }

    fn s_entries_again() -> Vec<JournalEntry> {
        vec![entry(1, PostingKind::SellCard, 20261201, 21, 100_000, 0, PaymentMethod::Cash as u8)]
    }

    #[test]
    fn s4_finance_differences_are_listed_exactly_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("finance.csv");
        std::fs::write(
            &file,
            "date,store,method,amount\n2026-12-01,21,wechat,2500.00\n2026-12-01,22,wechat,2300.00\n\
             2026-12-01,22,cash,18.00\n2026-11-30,21,cash,999.00\n",
        )
        .unwrap();
        let finance = read_finance(&file, 20261201).unwrap();
        let wechat = PaymentMethod::Wechat as u8;
        let switch: BTreeMap<(u32, u8), i64> = [((21, wechat), 250_000), ((22, wechat), 240_000)].into();
        let diffs = differences(&switch, &finance);
        assert_eq!(
            diffs,
            vec![
                Difference { store_id: 22, method: PaymentMethod::Cash as u8, finance_minor: 1_800, switch_minor: 0 },
                Difference { store_id: 22, method: wechat, finance_minor: 230_000, switch_minor: 240_000 },
            ]
        );
        for (text, needle) in [
            ("store,date\n", "the first line"),
            ("date,store,method,amount\n2026-12-01,21,wechat\n", "line 2: 3 fields"),
            ("date,store,method,amount\n2026-13-01,21,wechat,1\n", "not a date"),
            ("date,store,method,amount\n2026-12-01,21,barter,1\n", "not a payment method"),
            ("date,store,method,amount\n2026-12-01,21,cash,1.234\n", "not an amount"),
        ] {
            std::fs::write(&file, text).unwrap();
            let error = read_finance(&file, 20261201).unwrap_err().to_string();
            assert!(error.contains(needle) && error.contains("finance.csv"), "{error}");
        }
    }

    /// S6: value is owed by the company that collected its cash, spent first in, first out;
    /// the day's dues are netted into one payable per pair of companies.
    #[test]
    fn s6_spending_another_companys_value_is_netted_per_pair() {
        let day = 20261201;
        let company_of = |store: u32| store / 10; // stores 21, 22 → company 2; 31 → company 3
        let cash = PaymentMethod::Cash as u8;
        let mut a = entry(1, PostingKind::Load, 20261130, 21, 100_000, 0, cash);
        a.card = CardNo(62_0000_0001);
        let mut a2 = entry(2, PostingKind::Load, day, 31, 50_000, 0, cash);
        a2.card = a.card;
        // 1,200.00 spent at company 3: the first 1,000.00 is company 2's value, 200.00 its own.
        let mut spend = entry(3, PostingKind::Sale, day, 31, -120_000, 0, 0);
        spend.card = a.card;
        let mut b = entry(4, PostingKind::Load, day, 31, 30_000, 0, cash);
        b.card = CardNo(62_0000_0002);
        let mut spend_b = entry(5, PostingKind::Sale, day, 22, -40_000, 0, 0);
        spend_b.card = CardNo(62_0000_0002);
        let mut load_b = entry(6, PostingKind::Load, 20261130, 22, 20_000, 0, cash);
        load_b.card = b.card;
        // b: 200.00 of company 2 (older), then 300.00 of company 3; 400.00 spent at company 2.
        let entries = vec![a, load_b, a2, spend, b, spend_b];
        let s = settle_entries(entries, day, (40_000, 0, 0), company_of);
        // Company 2 owes 3 1,000.00; 3 owes 2 200.00 (b's value of company 3 spent at 2).
        assert_eq!(s.netting, BTreeMap::from([((2, 3), 80_000)]));
        let rendered = render(&s, &[], &Names::default());
        let netting = &rendered.iter().find(|(name, _)| *name == "netting.csv").unwrap().1;
        assert_eq!(netting, "payer_company,payee_company,amount\n2,3,800.00\n");
    }

    /// The report a finance clerk reads names the stores and companies of the catalog
    /// (escaped), lists what one company owes another, and the differences with finance.
    #[test]
    fn s6_s4_the_report_names_stores_and_companies_and_shows_the_payable() {
        let mut catalog = crate::engine::catalog::Catalog::core();
        catalog.companies = vec![
            crate::engine::catalog::Company {
                id: 2,
                name: "东区分公司".into(),
                head_office: false,
                stores: vec![crate::engine::catalog::Store {
                    id: 21,
                    name: "东区<一>店".into(),
                    day_cutover_minutes: None,
                }],
            },
            crate::engine::catalog::Company {
                id: 3, name: "西区分公司".into(), head_office: false, stores: vec![]
            },
        ];
        let cash = PaymentMethod::Cash as u8;
        let s = settle_entries(
            vec![entry(1, PostingKind::Load, 20261201, 21, 10_000, 0, cash)],
            20261201,
            (10_000, 0, 0),
            |_| 2,
        );
        let mut s = s;
        s.netting.insert((2, 3), 80_000);
        let diff = Difference { store_id: 21, method: cash, finance_minor: 9_950, switch_minor: 10_000 };
        let files = render(&s, &[diff], &Names::of(&catalog));
        let report = &files.iter().find(|(name, _)| *name == "report.html").unwrap().1;
        assert!(report.contains("<td>2 东区分公司</td><td>3 西区分公司</td><td>800.00</td>"), "{report}");
        assert!(report.contains("21 东区&lt;一&gt;店"), "escaped store name: {report}");
        assert!(report.contains("<td>99.50</td><td>100.00</td><td>-0.50</td>"), "{report}");
        assert!(report.contains("Finance: <b>1 difference</b>"), "{report}");
    }

    /// S8: the day that ends a month also gives the month's sales per store, net of their
    /// refunds; other days do not.
    #[test]
    fn s8_the_last_day_of_a_month_adds_the_months_sales() {
        let entries = || {
            let mut refund = entry(4, PostingKind::Refund, 20261130, 21, 500, 0, 0);
            refund.ref_txn_id = 2;
            vec![
                entry(1, PostingKind::Sale, 20261031, 21, -9_999, 0, 0),
                entry(2, PostingKind::Sale, 20261102, 21, -2_000, 0, 0),
                entry(3, PostingKind::Sale, 20261130, 22, -3_000, 0, 0),
                refund,
            ]
        };
        let month_end = settle_entries(entries(), 20261130, (0, 0, 0), |_| 1);
        assert_eq!(month_end.monthly, Some(BTreeMap::from([(21, (1, 1_500)), (22, (1, 3_000))])));
        let files = render(&month_end, &[], &Names::default());
        let monthly = &files.iter().find(|(name, _)| *name == "monthly.csv").unwrap().1;
        assert_eq!(monthly, "month,store,sales,amount\n2026-11,21,1,15.00\n2026-11,22,1,30.00\n");
        let mid_month = settle_entries(entries(), 20261129, (0, 0, 0), |_| 1);
        assert!(mid_month.monthly.is_none());
        assert!(!render(&mid_month, &[], &Names::default()).iter().any(|(name, _)| *name == "monthly.csv"));
    }

    #[test]
    fn s8_the_same_day_renders_the_same_bytes() {
        let entries = || {
            (1..40)
                .map(|n| entry(n, PostingKind::Load, 20261201, 21 + (n % 3) as u32, 10_000, 0, (n % 4 + 1) as u8))
                .collect::<Vec<_>>()
        };
        let a = render(&settle_entries(entries(), 20261201, (390_000, 0, 0), |_| 1), &[], &Names::default());
        let mut shuffled = entries();
        shuffled.reverse();
        let b = render(&settle_entries(shuffled, 20261201, (390_000, 0, 0), |_| 1), &[], &Names::default());
        assert_eq!(a, b, "the order postings are read in does not matter");
        assert!(a.iter().any(|(name, text)| *name == "summary.json" && text.contains("\"balanced\":true")));
    }
}

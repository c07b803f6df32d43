//! The checks at the end of a chaos run: what the terminals were told (every remembered request
//! they sent, with its final outcome) against the journal the switch wrote and the balances it
//! reports.
//!
//! * Every acknowledged posting (an approved answer with a txn id, received before or after a
//!   kill) is in the journal exactly once, under its terminal and stan, with the answer's txn
//!   id, card, amount and deltas, and with the answer's balances as the card's balances right
//!   after it. A retransmission answered with a re-run instead of the original reply shows up
//!   there: its balances are not those after the entry.
//! * Nothing else is in the journal: an entry belongs to an acknowledged request, or to one the
//!   kill left unanswered that was then settled consistently (retransmitted and answered; or
//!   reversed, in which case the entry exists exactly when the reversal says it undid one).
//! * Every card's balances through the protocol equal the sums of its journal deltas (its
//!   opening value is its sell-card entry), and equal what the answers imply.

use std::collections::HashMap;

use protocol::{CardNo, CardReply, Request};

use super::journal::{EntryKind, JournalRecord};

/// Problems kept with their text; all are counted.
pub const MAX_PROBLEM_TEXTS: usize = 100;

/// One remembered request a terminal sent, and what it finally knows about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub terminal_id: u32,
    pub stan: u32,
    pub request: Request,
    /// A capture: the amount of the hold it closes (held value goes down by that much).
    pub hold_amount_minor: i64,
    pub outcome: Outcome,
}

/// What a terminal knows about a request at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A final answer, to the request or to a retransmission of it.
    Answered(CardReply),
    /// No answer; the reversal with this stan (same terminal) settled it.
    ReversedBy(u32),
    /// No final answer at all.
    Unresolved,
}

/// What the journal must hold for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Approved with a txn id: exactly one entry, matching the reply.
    Posted(CardReply),
    /// Declined, never seen, or reversed before it was seen: no entry.
    NotPosted,
    /// Unanswered, then undone by an approved reversal: exactly one entry, which the
    /// reversal's entry names.
    PostedThenReversed,
    /// Left unresolved or settled inconsistently: a mismatch in itself.
    Unknown(&'static str),
}

/// The counts of the result line, and the first problems in words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Acknowledged postings: approved answers with a txn id.
    pub acked: u64,
    /// Acknowledged postings missing from the journal.
    pub lost: u64,
    /// Journal entries beyond the first for one request, or for one txn id.
    pub duplicated: u64,
    /// Everything else that does not add up.
    pub mismatches: u64,
    pub problems: Vec<String>,
}

impl Report {
    fn note(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEM_TEXTS {
            self.problems.push(text);
        }
    }

    fn lose(&mut self, text: String) {
        self.lost += 1;
        self.note(format!("lost: {text}"));
    }

    fn duplicate(&mut self, text: String) {
        self.duplicated += 1;
        self.note(format!("duplicated: {text}"));
    }

    /// Counts a mismatch found here or while the terminals ran (a retransmission answered
    /// differently, an unexpected code).
    pub fn mismatch(&mut self, text: String) {
        self.mismatches += 1;
        self.note(format!("mismatch: {text}"));
    }

    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.mismatches == 0
    }

    /// The result line: one JSON object, no newline.
    pub fn json(&self, seed: u64, kills: u32) -> String {
        format!(
            "{{\"seed\":{seed},\"kills\":{kills},\"acked\":{},\"lost\":{},\"duplicated\":{},\"mismatches\":{}}}",
            self.acked, self.lost, self.duplicated, self.mismatches
        )
    }
}

/// The journal kind a request's posting has.
fn entry_kind(request: &Request) -> Option<EntryKind> {
    Some(match request {
        Request::Sale { .. } => EntryKind::Sale,
        Request::Load { .. } => EntryKind::Load,
        Request::Hold { .. } => EntryKind::Hold,
        Request::Capture { .. } => EntryKind::Capture,
        Request::Void { .. } => EntryKind::Void,
        Request::Refund { .. } => EntryKind::Refund,
        Request::Reversal { .. } => EntryKind::Reversal,
        Request::SellCard { .. } => EntryKind::SellCard,
        // Sign-on, echo, balance, range import and whatever else posts nothing.
        _ => return None,
    })
}

/// The amount a request names (a reversal: its original's).
fn request_amount(request: &Request) -> i64 {
    request.amount_minor().unwrap_or(0)
}

/// What a posting of `sent` does to its card: (value, held), value being cash + bonus.
fn effect(sent: &Sent) -> (i64, i64) {
    let amount = request_amount(&sent.request);
    match sent.request {
        Request::Sale { .. } => (-amount, 0),
        Request::Load { .. } | Request::SellCard { .. } => (amount, 0),
        Request::Hold { .. } => (0, amount),
        Request::Capture { .. } => (-amount, -sent.hold_amount_minor),
        _ => (0, 0),
    }
}

/// Who sent what: "terminal T stan S (sale of 12.34 on card C)".
fn describe(sent: &Sent) -> String {
    let card = sent.request.card().map_or(0, |c| c.0);
    format!(
        "terminal {} stan {} ({} of {} fen on card {card})",
        sent.terminal_id,
        sent.stan,
        sent.request.msg_type(),
        request_amount(&sent.request)
    )
}

/// Balances of a card after each entry, and in all, from the journal in its order.
struct Ledger {
    /// Per entry: the card's (cash, bonus, held) right after it.
    after: Vec<(i64, i64, i64)>,
    /// Per card: the sums of its deltas.
    totals: HashMap<u64, (i64, i64, i64)>,
}

impl Ledger {
    fn new(journal: &[JournalRecord]) -> Ledger {
        let mut totals: HashMap<u64, (i64, i64, i64)> = HashMap::new();
        let after = journal
            .iter()
            .map(|e| {
                let t = totals.entry(e.card).or_default();
                t.0 += e.cash_delta_minor;
                t.1 += e.bonus_delta_minor;
                t.2 += e.held_delta_minor;
                *t
            })
            .collect();
        Ledger { after, totals }
    }
}

/// Checks `sent` (every remembered request of every terminal, with its outcome) against the
/// journal and the balances of `balances` (each card with its balance reply, `None` when none
/// could be had).
pub fn verify(sent: &[Sent], journal: &[JournalRecord], balances: &[(CardNo, Option<CardReply>)]) -> Report {
    let mut report = Report::default();
    let ledger = Ledger::new(journal);

    let mut by_trace: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
    let mut by_txn: HashMap<u64, usize> = HashMap::new();
    for (index, entry) in journal.iter().enumerate() {
        by_trace.entry((entry.terminal_id, entry.stan)).or_default().push(index);
        if let Some(first) = by_txn.insert(entry.txn_id, index) {
            by_txn.insert(entry.txn_id, first);
            report.duplicate(format!("txn id {} is in the journal twice (entries {first} and {index})", entry.txn_id));
        }
    }
    let mut by_request: HashMap<(u32, u32), usize> = HashMap::new();
    for (index, s) in sent.iter().enumerate() {
        if by_request.insert((s.terminal_id, s.stan), index).is_some() {
            report.mismatch(format!("terminal {} used stan {} for two requests", s.terminal_id, s.stan));
        }
    }
    let find = |terminal_id: u32, stan: u32| by_request.get(&(terminal_id, stan)).map(|&i| &sent[i]);

    let fates: Vec<Fate> = sent
        .iter()
        .map(|s| match s.outcome {
            Outcome::Answered(reply) if reply.code.is_approved() && reply.txn_id != 0 => Fate::Posted(reply),
            Outcome::Answered(reply) if reply.code.is_approved() => match s.request {
                // A reversal that changed nothing: its original was declined or never seen.
                Request::Reversal { .. } => Fate::NotPosted,
                _ => Fate::Unknown("approved without a txn id"),
            },
            Outcome::Answered(_) => Fate::NotPosted,
            Outcome::ReversedBy(reversal_stan) => match find(s.terminal_id, reversal_stan).map(|r| r.outcome) {
                Some(Outcome::Answered(reply)) if reply.code.is_approved() && reply.txn_id != 0 => {
                    Fate::PostedThenReversed
                }
                Some(Outcome::Answered(reply)) if reply.code.is_approved() => Fate::NotPosted,
                Some(Outcome::Answered(_)) => Fate::Unknown("its reversal was declined and it was never settled"),
                Some(_) => Fate::Unknown("its reversal was never answered"),
                None => Fate::Unknown("its reversal was never sent"),
            },
            Outcome::Unresolved => Fate::Unknown("it was never answered, retransmitted or reversed"),
        })
        .collect();

    // Expected balances from the answers alone: (value, held) per card.
    let mut implied: HashMap<u64, (i64, i64)> = HashMap::new();
    let mut book = |card: Option<CardNo>, (value, held): (i64, i64)| {
        let t = implied.entry(card.map_or(0, |c| c.0)).or_default();
        t.0 += value;
        t.1 += held;
    };

    for (s, fate) in sent.iter().zip(&fates) {
        let entries = by_trace.get(&(s.terminal_id, s.stan)).map_or(&[][..], Vec::as_slice);
        for extra in entries.iter().skip(1) {
            report.duplicate(format!("{} has another journal entry (txn {})", describe(s), journal[*extra].txn_id));
        }
        let entry = entries.first().map(|&i| (i, &journal[i]));
        match *fate {
            Fate::Posted(reply) => {
                report.acked += 1;
                let Some((index, entry)) = entry else {
                    report.lose(format!(
                        "{} was approved as txn {} but is not in the journal",
                        describe(s),
                        reply.txn_id
                    ));
                    continue;
                };
                check_entry(&mut report, s, entry, &find, &by_trace, journal);
                if entry.txn_id != reply.txn_id {
                    report.mismatch(format!(
                        "{} was answered txn {}, the journal has txn {}",
                        describe(s),
                        reply.txn_id,
                        entry.txn_id
                    ));
                }
                if entry.amount_minor != reply.amount_minor {
                    report.mismatch(format!(
                        "{} was answered amount {}, the journal has {}",
                        describe(s),
                        reply.amount_minor,
                        entry.amount_minor
                    ));
                }
                let answered = (reply.cash_minor, reply.bonus_minor, reply.held_minor);
                if ledger.after[index] != answered {
                    report.mismatch(format!(
                        "{} was answered balances (cash, bonus, held) {answered:?}, the journal gives {:?} after its entry",
                        describe(s),
                        ledger.after[index]
                    ));
                }
                match s.request {
                    Request::Reversal { original_stan, .. } => {
                        if let Some(original) = find(s.terminal_id, original_stan) {
                            let (value, held) = effect(original);
                            book(s.request.card(), (-value, -held));
                        }
                    }
                    _ => book(s.request.card(), effect(s)),
                }
            }
            Fate::NotPosted => {
                if let Some((_, entry)) = entry {
                    report.mismatch(format!(
                        "{} is in the journal as txn {}, although its outcome says nothing was posted",
                        describe(s),
                        entry.txn_id
                    ));
                }
            }
            Fate::PostedThenReversed => match entry {
                None => report
                    .mismatch(format!("{} was reversed with a posting, but is not in the journal itself", describe(s))),
                Some((_, entry)) => {
                    check_entry(&mut report, s, entry, &find, &by_trace, journal);
                    book(s.request.card(), effect(s));
                }
            },
            Fate::Unknown(why) => report.mismatch(format!("{}: {why}", describe(s))),
        }
    }

    for entry in journal {
        if !by_request.contains_key(&(entry.terminal_id, entry.stan)) {
            report.mismatch(format!(
                "journal entry txn {} ({:?} on card {}) names terminal {} stan {}, which sent no such request",
                entry.txn_id, entry.kind, entry.card, entry.terminal_id, entry.stan
            ));
        }
    }

    for (card, reply) in balances {
        let totals = ledger.totals.get(&card.0).copied().unwrap_or_default();
        let (value, held) = implied.get(&card.0).copied().unwrap_or_default();
        let Some(reply) = reply.filter(|r| r.code.is_approved()) else {
            report.mismatch(format!("card {card}: no balance through the protocol ({reply:?})"));
            continue;
        };
        let reported = (reply.cash_minor, reply.bonus_minor, reply.held_minor);
        if reported != totals {
            report.mismatch(format!(
                "card {card}: balances (cash, bonus, held) {reported:?}, the sums of its journal deltas {totals:?}"
            ));
        }
        if (reply.cash_minor + reply.bonus_minor, reply.held_minor) != (value, held) {
            report.mismatch(format!(
                "card {card}: value and held {:?}, the answers imply {:?}",
                (reply.cash_minor + reply.bonus_minor, reply.held_minor),
                (value, held)
            ));
        }
    }
    report
}

/// Checks the journal entry of `s` against the request: kind, card, amount and deltas; for a
/// capture the hold it names; for a reversal the original it undoes.
fn check_entry<'a>(
    report: &mut Report,
    s: &Sent,
    entry: &JournalRecord,
    find: &impl Fn(u32, u32) -> Option<&'a Sent>,
    by_trace: &HashMap<(u32, u32), Vec<usize>>,
    journal: &[JournalRecord],
) {
    let who = describe(s);
    let amount = request_amount(&s.request);
    if Some(entry.kind) != entry_kind(&s.request) {
        report.mismatch(format!("{who}: the journal entry txn {} is a {:?}", entry.txn_id, entry.kind));
        return;
    }
    if Some(entry.card) != s.request.card().map(|c| c.0) || entry.amount_minor != amount {
        report.mismatch(format!(
            "{who}: the journal entry txn {} is on card {} for {}",
            entry.txn_id, entry.card, entry.amount_minor
        ));
    }
    let value = entry.cash_delta_minor + entry.bonus_delta_minor;
    let deltas_fit = match s.request {
        Request::Sale { .. } => value == -amount && entry.held_delta_minor == 0,
        Request::Load { .. } | Request::SellCard { .. } => {
            entry.cash_delta_minor == amount && entry.bonus_delta_minor == 0 && entry.held_delta_minor == 0
        }
        Request::Hold { .. } => value == 0 && entry.held_delta_minor == amount,
        Request::Capture { hold_txn_id, .. } => {
            if entry.ref_txn_id != hold_txn_id {
                report.mismatch(format!("{who}: captured hold txn {}, not {hold_txn_id}", entry.ref_txn_id));
            }
            value == -amount && entry.held_delta_minor == -s.hold_amount_minor
        }
        Request::Reversal { original_stan, .. } => {
            let original = by_trace.get(&(s.terminal_id, original_stan)).and_then(|e| e.first()).map(|&i| &journal[i]);
            match (original, find(s.terminal_id, original_stan)) {
                (Some(original), Some(_)) => {
                    if entry.ref_txn_id != original.txn_id {
                        report.mismatch(format!(
                            "{who}: reverses txn {}, but the original (stan {original_stan}) is txn {}",
                            entry.ref_txn_id, original.txn_id
                        ));
                    }
                    entry.cash_delta_minor == -original.cash_delta_minor
                        && entry.bonus_delta_minor == -original.bonus_delta_minor
                        && entry.held_delta_minor == -original.held_delta_minor
                }
                _ => {
                    report.mismatch(format!("{who}: undid stan {original_stan}, which is not in the journal"));
                    true
                }
            }
        }
        _ => true,
    };
    if !deltas_fit {
        report.mismatch(format!(
            "{who}: the journal entry txn {} moved cash {}, bonus {}, held {}",
            entry.txn_id, entry.cash_delta_minor, entry.bonus_delta_minor, entry.held_delta_minor
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CardState, Category, PaymentMethod, ResponseCode, Verification};

    const TERMINAL: u32 = 1_001;
    const ADMIN: u32 = 1;
    const CARD: CardNo = CardNo(6_200_880_000_000_000);
    const OPENING: i64 = 1_000_000;

    fn approved(txn_id: u64, amount_minor: i64, cash_minor: i64, held_minor: i64) -> CardReply {
        CardReply {
            code: ResponseCode::Approved,
            state: CardState::Active,
            txn_id,
            amount_minor,
            cash_minor,
            bonus_minor: 0,
            held_minor,
            gross_minor: amount_minor,
            ..CardReply::default()
        }
    }

    fn entry(
        txn_id: u64,
        kind: EntryKind,
        terminal_id: u32,
        stan: u32,
        amount: i64,
        cash: i64,
        held: i64,
    ) -> JournalRecord {
        JournalRecord {
            txn_id,
            kind,
            card: CARD.0,
            amount_minor: amount,
            cash_delta_minor: cash,
            bonus_delta_minor: 0,
            held_delta_minor: held,
            terminal_id,
            stan,
            business_date: 20261122,
            ref_txn_id: 0,
        }
    }

    fn sent(terminal_id: u32, stan: u32, request: Request, outcome: Outcome) -> Sent {
        Sent { terminal_id, stan, request, hold_amount_minor: 0, outcome }
    }

    fn sale(amount_minor: i64) -> Request {
        Request::Sale {
            card: CARD,
            amount_minor,
            category: Category::Retail as u8,
            flags: 0,
            verification: Verification::NONE,
        }
    }

    /// A consistent history: the card sold, a sale answered, a load the kill left unanswered
    /// and then reversed (it had been posted), a hold answered and captured after a
    /// retransmission, a sale never seen and reversed, a declined sale.
    /// What [`verify`] takes: the requests, the journal and the balances.
    type History = (Vec<Sent>, Vec<JournalRecord>, Vec<(CardNo, Option<CardReply>)>);

    fn history() -> History {
        let sell = Request::SellCard { card: CARD, amount_minor: OPENING, method: PaymentMethod::Cash as u8 };
        let load = Request::Load { card: CARD, amount_minor: 5_000, method: PaymentMethod::Cash as u8 };
        let hold = Request::Hold {
            card: CARD,
            amount_minor: 800,
            category: Category::Room as u8,
            verification: Verification::NONE,
        };
        let capture = Request::Capture { card: CARD, hold_txn_id: 14, amount_minor: 750 };
        let mut declined = approved(0, 0, 0, 0);
        declined.code = ResponseCode::InsufficientValue;
        let sent = vec![
            sent(ADMIN, 2, sell, Outcome::Answered(approved(10, OPENING, OPENING, 0))),
            sent(TERMINAL, 1, sale(300), Outcome::Answered(approved(11, 300, OPENING - 300, 0))),
            sent(TERMINAL, 2, load, Outcome::ReversedBy(6)),
            sent(TERMINAL, 3, hold, Outcome::Answered(approved(14, 800, OPENING - 300, 800))),
            Sent {
                hold_amount_minor: 800,
                ..sent(TERMINAL, 4, capture, Outcome::Answered(approved(15, 750, OPENING - 1_050, 0)))
            },
            sent(TERMINAL, 5, sale(99), Outcome::ReversedBy(7)),
            sent(
                TERMINAL,
                6,
                Request::Reversal { card: CARD, original_stan: 2, amount_minor: 5_000 },
                Outcome::Answered(approved(13, 5_000, OPENING - 300, 0)),
            ),
            sent(
                TERMINAL,
                7,
                Request::Reversal { card: CARD, original_stan: 5, amount_minor: 99 },
                Outcome::Answered(approved(0, 0, OPENING - 1_050, 0)),
            ),
            sent(TERMINAL, 8, sale(OPENING * 2), Outcome::Answered(declined)),
        ];
        let journal = vec![
            entry(10, EntryKind::SellCard, ADMIN, 2, OPENING, OPENING, 0),
            entry(11, EntryKind::Sale, TERMINAL, 1, 300, -300, 0),
            entry(12, EntryKind::Load, TERMINAL, 2, 5_000, 5_000, 0),
            JournalRecord { ref_txn_id: 12, ..entry(13, EntryKind::Reversal, TERMINAL, 6, 5_000, -5_000, 0) },
            entry(14, EntryKind::Hold, TERMINAL, 3, 800, 0, 800),
            JournalRecord { ref_txn_id: 14, ..entry(15, EntryKind::Capture, TERMINAL, 4, 750, -750, -800) },
        ];
        let balances = vec![(CARD, Some(approved(0, 0, OPENING - 1_050, 0)))];
        (sent, journal, balances)
    }

    #[test]
    fn a_consistent_history_passes() {
        let (sent, journal, balances) = history();
        let report = verify(&sent, &journal, &balances);
        assert_eq!(report.problems, Vec::<String>::new());
        assert!(report.is_clean());
        // The sell-card, the sale, the hold, the capture and the reversal that undid the load.
        assert_eq!(report.acked, 5);
        assert_eq!(
            report.json(12_345, 3),
            "{\"seed\":12345,\"kills\":3,\"acked\":5,\"lost\":0,\"duplicated\":0,\"mismatches\":0}"
        );
    }

    #[test]
    fn an_acknowledged_posting_missing_from_the_journal_is_lost() {
        let (sent, mut journal, balances) = history();
        journal.remove(1); // the answered sale
        let report = verify(&sent, &journal, &balances);
        assert_eq!(report.lost, 1, "{:?}", report.problems);
        assert_eq!(report.duplicated, 0);
        // The card's balance no longer adds up either.
        assert!(report.mismatches >= 1);
        assert!(report.problems.iter().any(|p| p.starts_with("lost: terminal 1001 stan 1")), "{:?}", report.problems);
    }

    #[test]
    fn a_posting_twice_is_duplicated() {
        let (sent, mut journal, balances) = history();
        journal.insert(2, entry(16, EntryKind::Sale, TERMINAL, 1, 300, -300, 0));
        let report = verify(&sent, &journal, &balances);
        assert_eq!(report.duplicated, 1, "{:?}", report.problems);
        assert_eq!(report.lost, 0);
        // Same txn id twice is a duplicate too.
        let (sent, mut journal, balances) = history();
        journal.push(entry(11, EntryKind::Sale, TERMINAL, 9, 1, -1, 0));
        let report = verify(&sent, &journal, &balances);
        assert!(report.duplicated >= 1, "{:?}", report.problems);
    }

    #[test]
    fn a_posting_nobody_acknowledged_or_settled_is_a_mismatch() {
        // The sale that was reversed before it was seen got posted after all.
        let (sent, mut journal, balances) = history();
        journal.push(entry(16, EntryKind::Sale, TERMINAL, 5, 99, -99, 0));
        let report = verify(&sent, &journal, &balances);
        assert!(report.mismatches >= 1);
        assert!(report.problems.iter().any(|p| p.contains("stan 5") && p.contains("nothing was posted")));
        // A declined request with an entry.
        let (sent, mut journal, balances) = history();
        journal.push(entry(16, EntryKind::Sale, TERMINAL, 8, OPENING * 2, -OPENING * 2, 0));
        assert!(verify(&sent, &journal, &balances).mismatches >= 1);
        // An entry for a stan nobody sent.
        let (sent, mut journal, balances) = history();
        journal.push(entry(16, EntryKind::Load, TERMINAL, 99, 100, 100, 0));
        let report = verify(&sent, &journal, &balances);
        assert!(report.problems.iter().any(|p| p.contains("sent no such request")), "{:?}", report.problems);
    }

    #[test]
    fn a_reversal_that_undid_something_missing_is_a_mismatch() {
        let (sent, mut journal, balances) = history();
        journal.remove(2); // the load the reversal undid
        let report = verify(&sent, &journal, &balances);
        assert_eq!(report.lost, 0);
        assert!(report.mismatches >= 2, "{:?}", report.problems);
        // A reversal naming the wrong original.
        let (sent, mut journal, balances) = history();
        journal[3].ref_txn_id = 11;
        let report = verify(&sent, &journal, &balances);
        assert!(report.problems.iter().any(|p| p.contains("reverses txn 11")), "{:?}", report.problems);
    }

    #[test]
    fn an_answer_that_is_not_the_original_reply_is_a_mismatch() {
        // A retransmission re-run instead of answered from memory: its balances are those of a
        // later moment than right after its entry.
        let (mut sent, journal, balances) = history();
        sent[1].outcome = Outcome::Answered(approved(11, 300, OPENING - 1_050, 0));
        let report = verify(&sent, &journal, &balances);
        assert_eq!((report.lost, report.duplicated), (0, 0));
        assert!(report.problems.iter().any(|p| p.contains("answered balances")), "{:?}", report.problems);
        // Another txn id than the journal's.
        let (mut sent, journal, balances) = history();
        sent[1].outcome = Outcome::Answered(approved(12, 300, OPENING - 300, 0));
        assert!(verify(&sent, &journal, &balances).mismatches >= 1);
    }

    #[test]
    fn balances_must_match_the_journal_and_the_answers() {
        let (sent, journal, mut balances) = history();
        balances[0].1 = Some(approved(0, 0, OPENING - 1_000, 0));
        let report = verify(&sent, &journal, &balances);
        assert_eq!(report.mismatches, 2, "{:?}", report.problems);
        let (sent, journal, mut balances) = history();
        balances[0].1 = None;
        assert_eq!(verify(&sent, &journal, &balances).mismatches, 1);
        // A wrong entry amount on both sides (journal and balances agree, the answers do not).
        let (sent, mut journal, mut balances) = history();
        journal[1].cash_delta_minor = -301;
        balances[0].1 = Some(approved(0, 0, OPENING - 1_051, 0));
        let report = verify(&sent, &journal, &balances);
        assert!(report.problems.iter().any(|p| p.contains("the answers imply")), "{:?}", report.problems);
    }

    #[test]
    fn unresolved_requests_and_wrong_entries_are_mismatches() {
        let (mut sent, journal, balances) = history();
        sent[8].outcome = Outcome::Unresolved;
        let report = verify(&sent, &journal, &balances);
        assert_eq!(report.mismatches, 1);
        assert!(report.problems[0].contains("never answered"));
        // The capture names another hold in the journal.
        let (sent, mut journal, balances) = history();
        journal[5].ref_txn_id = 99;
        assert!(verify(&sent, &journal, &balances).problems.iter().any(|p| p.contains("captured hold txn 99")));
        // The hold journaled as a sale.
        let (sent, mut journal, balances) = history();
        journal[4].kind = EntryKind::Sale;
        assert!(verify(&sent, &journal, &balances).mismatches >= 1);
    }

    #[test]
    fn problems_are_counted_beyond_the_texts_kept() {
        let (mut sent, journal, balances) = history();
        for stan in 100..100 + MAX_PROBLEM_TEXTS as u32 + 50 {
            sent.push(super::tests::sent(TERMINAL, stan, sale(1), Outcome::Unresolved));
        }
        let report = verify(&sent, &journal, &balances);
        assert_eq!(report.mismatches, MAX_PROBLEM_TEXTS as u64 + 50);
        assert_eq!(report.problems.len(), MAX_PROBLEM_TEXTS);
    }
}

//! Closing business days on a running switch (S1) and the day-end housekeeping that follows
//! (S7). The book of open dates (`engine::days::DayBook`) is written to disk before any
//! partition uses it; then every partition takes it between two group commits and answers
//! once what it accepted under the old book is durable. When all have answered, nothing more
//! can post to the closed day. A day closed at every store then has its housekeeping run in
//! the partitions, and the book records that too.
//!
//! A crash anywhere in between is safe: at start-up the book on disk decides the dates, and
//! housekeeping recorded as not yet done runs again (it is idempotent).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::engine::catalog::Catalog;
use crate::engine::days::{CloseProblem, DayBook, Scope};
use crate::engine::rules::date_text;
use crate::engine::{BusinessDate, Housekeeping};
use crate::engine::{PinKey, Rules};
use crate::partition::{Clock, Partitions, SystemClock};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaysError {
    #[error("{0}")]
    Close(#[from] CloseProblem),
    #[error("recording the day book: {0}")]
    Store(#[from] StoreError),
    #[error(
        "a partition stopped (a storage failure, or the switch is shutting down) before the close was complete; \
         the close is recorded and completes at the next start"
    )]
    PartitionFailed,
}

/// What one close did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closed {
    /// False when the days were closed already.
    pub changed: bool,
    /// Each day whose housekeeping ran, with what it did.
    pub housekept: Vec<(BusinessDate, Housekeeping)>,
}

pub struct Days {
    /// The book in force; replaced whole, under `closing`.
    book: Mutex<Arc<DayBook>>,
    /// One close at a time.
    closing: Mutex<()>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    default_cutover_minutes: u32,
    own_cutover: BTreeMap<u32, u32>,
}

impl Days {
    /// The book on disk, or a new one open on the day the clock says has begun, written
    /// before it is used.
    pub fn open(store: Arc<Store>, clock: Arc<dyn Clock>, catalog: &Catalog) -> Result<Days, StoreError> {
        let default_cutover_minutes = catalog.settings.day_cutover_minutes;
        let book = match store.day_book()? {
            Some(book) => book,
            None => {
                let book = DayBook::starting(clock.begun_date(clock.now_ms(), default_cutover_minutes));
                store.put_day_book(&book)?;
                book
            }
        };
        Ok(Days {
            book: Mutex::new(Arc::new(book)),
            closing: Mutex::new(()),
            store,
            clock,
            default_cutover_minutes,
            own_cutover: catalog.own_cutovers(),
        })
    }

    pub fn book(&self) -> Arc<DayBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The newest date begun by the clock in `scope` (for every store: the earliest of their
    /// cutovers' dates, so that no store's day is closed before it began).
    pub fn begun(&self, scope: Scope) -> BusinessDate {
        let now_ms = self.clock.now_ms();
        let at = |cutover: u32| self.clock.begun_date(now_ms, cutover);
        match scope {
            Scope::Store(store) => at(self.own_cutover.get(&store).copied().unwrap_or(self.default_cutover_minutes)),
            Scope::Default => at(self.default_cutover_minutes),
            Scope::All => {
                self.own_cutover.values().map(|c| at(*c)).chain([at(self.default_cutover_minutes)]).min().expect("one")
            }
        }
    }

    /// Closes every day through `through` in `scope` (None: the day in progress), then runs
    /// the housekeeping of every day now closed everywhere. Blocking.
    pub fn close(
        &self,
        partitions: &Partitions,
        scope: Scope,
        through: Option<BusinessDate>,
    ) -> Result<Closed, DaysError> {
        let _one_at_a_time = self.closing.lock().unwrap_or_else(|e| e.into_inner());
        let begun = self.begun(scope);
        let mut book = (*self.book()).clone();
        let own: BTreeSet<u32> = self.own_cutover.keys().copied().collect();
        let changed = book.close(scope, through.unwrap_or(begun), begun, &own)?;
        if changed {
            self.store.put_day_book(&book)?;
            let book = Arc::new(book);
            *self.book.lock().unwrap_or_else(|e| e.into_inner()) = book.clone();
            if !partitions.set_days_blocking(book) {
                return Err(DaysError::PartitionFailed);
            }
            tracing::info!(?scope, through = through.unwrap_or(begun), "business day closed");
        }
        let housekept = self.housekeep_locked(partitions)?;
        Ok(Closed { changed, housekept })
    }

    /// The closes the clock makes due (each store's cutover), then any housekeeping left.
    /// Blocking; what the scheduler and the start-up run.
    pub fn tick(&self, partitions: &Partitions) -> Result<Vec<Closed>, DaysError> {
        let local = self.clock.local_time(self.clock.now_ms());
        let minutes = (local.0 / 10_000 % 100 * 60 + local.0 / 100 % 100) as u32;
        let due = self.book().closes_due(local.date(), minutes, self.default_cutover_minutes, &self.own_cutover);
        let mut closed = Vec::new();
        for (scope, through) in due {
            closed.push(self.close(partitions, scope, Some(through))?);
        }
        if closed.is_empty() && !self.book().housekeeping_due().is_empty() {
            let _one_at_a_time = self.closing.lock().unwrap_or_else(|e| e.into_inner());
            closed.push(Closed { changed: false, housekept: self.housekeep_locked(partitions)? });
        }
        Ok(closed)
    }

    /// Runs the housekeeping of every day closed everywhere and not yet housekept, oldest
    /// first, recording each when done. The caller holds `closing`.
    fn housekeep_locked(&self, partitions: &Partitions) -> Result<Vec<(BusinessDate, Housekeeping)>, DaysError> {
        let mut done = Vec::new();
        for day in self.book().housekeeping_due() {
            let h = partitions.housekeep_blocking(day).ok_or(DaysError::PartitionFailed)?;
            let mut book = (*self.book()).clone();
            book.housekept(day);
            self.store.put_day_book(&book)?;
            *self.book.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(book);
            done.push((day, h));
        }
        Ok(done)
    }
}

/// What a close did, for people: whether anything closed, the store's (or the default)
/// open date now, how far every store is closed, the days housekept.
pub fn describe(closed: &Closed, book: &DayBook, scope: Scope) -> String {
    let open = match scope {
        Scope::Store(store) => format!("store {store} is on {}", date_text(book.open_date(store))),
        _ => format!("the stores are on {}", date_text(book.default_open)),
    };
    let housekept: Vec<String> =
        closed.housekept.iter().map(|(day, h)| format!("{} ({} postings)", date_text(*day), h.postings())).collect();
    format!(
        "{}; {open}; closed at every store through {}; housekeeping run for {}",
        if closed.changed { "closed" } else { "already closed" },
        date_text(book.closed_everywhere_through()),
        if housekept.is_empty() { "no day".to_string() } else { housekept.join(", ") }
    )
}

/// Why days could not be closed over a stopped switch's data directory.
#[derive(Debug, thiserror::Error)]
pub enum StoppedError {
    #[error("cannot open the data directory: {0}")]
    Store(#[from] StoreError),
    #[error("the catalog kept in the data directory does not load: {0}")]
    Catalog(String),
    #[error("{0}")]
    Random(String),
    #[error("{0}")]
    Days(#[from] DaysError),
}

/// The catalog the switch last ran with (file and run-time product changes, P3), as kept in
/// its data directory; the core rules when it ran without one.
pub fn stored_catalog(store: &Store) -> Result<Catalog, StoppedError> {
    let mut catalog = match store.catalog_text()? {
        Some(text) => Catalog::from_toml_str("the data directory's catalog", &text)
            .map_err(|e| StoppedError::Catalog(e.to_string()))?,
        None => Catalog::core(),
    };
    for o in store.product_overrides()? {
        if let Ok(updated) = catalog.with_override(&o) {
            catalog = updated;
        }
    }
    Ok(catalog)
}

/// Closes days over a stopped switch's data directory (S1) and runs the housekeeping of the
/// days closed everywhere (S7): the same close as a running switch's, with partitions
/// started on the directory for it and stopped after. Nothing to do: nothing is started.
pub fn close_stopped(
    data: &Path,
    scope: Scope,
    through: Option<BusinessDate>,
) -> Result<(Closed, Arc<DayBook>), StoppedError> {
    let store = Arc::new(Store::open(data)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let catalog = stored_catalog(&store)?;
    let days = Days::open(store.clone(), clock.clone(), &catalog)?;
    let book = days.book();
    let target = through.unwrap_or_else(|| days.begun(scope));
    let open = match scope {
        Scope::Store(store) => book.open_date(store) <= target,
        _ => !book.closed_everywhere(target),
    };
    if !open && book.housekeeping_due().is_empty() {
        return Ok((Closed::default(), book));
    }
    let recovered = store.recover(1)?;
    // The batch never checks a PIN; a random key only completes the rules.
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| StoppedError::Random(format!("no random bytes: {e}")))?;
    let pin_key = PinKey::new(&secret);
    let rules = Rules::new(Arc::new(catalog), pin_key);
    let partitions = Partitions::start(recovered, store.clone(), clock, None, rules, days.book(), Default::default());
    let closed = days.close(&partitions, scope, Some(target));
    partitions.stop();
    Ok((closed?, days.book()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use protocol::{CardNo, Category, Header, LocalTime, Message, PaymentMethod, Request, Response, Verification};

    use super::*;
    use crate::engine::{CardRange, Command, TxnKind};

    const FIRST: u64 = 6200880000000000;
    /// 2026-12-01 10:00 in China Standard Time.
    const MORNING_MS: i64 = 1_796_090_400_000;
    const HOUR_MS: i64 = 3_600_000;

    struct TestClock(AtomicI64);
    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn hotel() -> Catalog {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/catalogs/hotel.toml")).unwrap();
        Catalog::from_toml_str("hotel.toml", &text).unwrap()
    }

    fn sale(partitions: &Partitions, stan: u32, store_id: u32, request: Request) -> protocol::CardReply {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let header = Header { flags: 0, terminal_id: 7, stan, local_time: LocalTime(20261201100000) };
        partitions.submit(request.card().unwrap(), Command::new(header, store_id, request), tx).unwrap();
        match rx.blocking_recv().unwrap().message {
            Message::Response(Response::Card { reply, .. }) => reply,
            other => panic!("{other:?}"),
        }
    }

    /// S1, S7: the night audit closes the hotel's day at 04:00 the next morning, not at
    /// midnight; a store may close alone by hand; the day's housekeeping runs once every
    /// store has closed it, stamped with that day; a restart keeps the closed day closed.
    #[test]
    fn s1_s7_the_night_audit_closes_the_day_and_a_restart_keeps_it_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let range = CardRange {
            first: CardNo(FIRST),
            last: CardNo(FIRST + 9),
            product: 1,
            store_id: 21,
            terminal_id: 1,
            stan: 1,
        };
        store.put_range(&range).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(MORNING_MS)));
        let catalog = hotel();
        let days = Days::open(store.clone(), clock.clone(), &catalog).unwrap();
        let day = 20261201;
        assert_eq!(days.book().open_date(21), day);
        let start = |days: &Days| {
            Partitions::start(
                store.recover(1).unwrap(),
                store.clone(),
                clock.clone(),
                None,
                Rules::core(),
                days.book(),
                Default::default(),
            )
        };
        let partitions = start(&days);
        let card = CardNo(FIRST + 1);
        let sell = Request::SellCard { card, amount_minor: 100_000, method: PaymentMethod::Cash as u8 };
        assert!(sale(&partitions, 1, 21, sell).code.is_approved());
        let buy = |amount_minor| Request::Sale {
            card,
            amount_minor,
            category: Category::Retail as u8,
            flags: 0,
            verification: Verification::NONE,
        };
        // 23:00 and 03:00: still the same business day at a 04:00 night audit.
        clock.0.store(MORNING_MS + 13 * HOUR_MS, Ordering::SeqCst);
        assert!(days.tick(&partitions).unwrap().is_empty());
        assert!(sale(&partitions, 2, 21, buy(100)).code.is_approved());
        clock.0.store(MORNING_MS + 17 * HOUR_MS, Ordering::SeqCst);
        assert!(days.tick(&partitions).unwrap().is_empty());
        assert!(sale(&partitions, 3, 22, buy(200)).code.is_approved());
        // Store 21 closes its night audit by hand at 03:00; store 22 stays open.
        let closed = days.close(&partitions, Scope::Store(21), None).unwrap();
        assert!(closed.changed && closed.housekept.is_empty(), "housekeeping waits for every store");
        assert!(sale(&partitions, 4, 21, buy(300)).code.is_approved());
        assert!(sale(&partitions, 5, 22, buy(400)).code.is_approved());
        // 04:00: the cutover closes the rest, and the day's housekeeping runs.
        clock.0.store(MORNING_MS + 18 * HOUR_MS, Ordering::SeqCst);
        let ticked = days.tick(&partitions).unwrap();
        assert_eq!(ticked.len(), 1);
        assert_eq!(ticked[0].housekept.len(), 1);
        assert_eq!(ticked[0].housekept[0].0, day);
        assert!(days.book().closed_everywhere(day));
        assert!(sale(&partitions, 6, 22, buy(500)).code.is_approved());
        // A day not begun cannot be closed.
        assert!(matches!(
            days.close(&partitions, Scope::All, Some(day + 2)),
            Err(DaysError::Close(CloseProblem::NotBegun(_)))
        ));
        partitions.stop();
        drop(partitions);
        // The restart reads the book from disk: the day stays closed.
        let days = Days::open(store.clone(), clock.clone(), &catalog).unwrap();
        assert_eq!(days.book().open_date(22), day + 1);
        let partitions = start(&days);
        assert!(sale(&partitions, 7, 22, buy(600)).code.is_approved());
        partitions.stop();
        let dated: Vec<(TxnKind, u32, i64, BusinessDate)> = store
            .journal()
            .map(Result::unwrap)
            .map(|e| (e.kind, e.store_id, e.amount_minor, e.business_date))
            .collect();
        assert_eq!(
            dated,
            vec![
                (TxnKind::SellCard, 21, 100_000, day),
                (TxnKind::Sale, 21, 100, day),
                (TxnKind::Sale, 22, 200, day),
                (TxnKind::Sale, 21, 300, day + 1),
                (TxnKind::Sale, 22, 400, day),
                (TxnKind::Sale, 22, 500, day + 1),
                (TxnKind::Sale, 22, 600, day + 1),
            ]
        );
    }
}

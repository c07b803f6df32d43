//! The business day of every store (S1): which date a store's postings are stamped with, and
//! how a day closes. Pure: the clock is passed in as a local time, and the switch persists
//! the book before any partition uses it.
//!
//! A store's *open date* is the date its transactions are stamped with at acceptance. Closing
//! a day moves a store's open date past it; from then on nothing a terminal sends posts to
//! it. When a date is closed at every store, its day-end housekeeping (S7) runs, stamped with
//! that date, and the book records it as housekept: then the day's books are complete.

use std::collections::{BTreeMap, BTreeSet};

use crate::rules::{add_days, date_text, days_from_date};
use crate::BusinessDate;

/// Most stores with a day of their own in the book (those closed apart from the rest, or
/// with a cutover of their own); the rest follow the default.
pub const MAX_STORES: usize = 65_536;
/// Most days one close may cover (a switch stopped over a long holiday closes them all at
/// start-up, each with its housekeeping).
pub const MAX_DAYS_PER_CLOSE: i64 = 400;

/// Which stores a close applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every store, whatever its cutover.
    All,
    /// The stores that follow the deployment's cutover (every store without one of its own).
    Default,
    /// One store (its own cutover, or a store closing its day by hand).
    Store(u32),
}

/// Why a close cannot be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseProblem {
    #[error("business day {} has not begun", date_text(*.0))]
    NotBegun(BusinessDate),
    #[error("closing would cover more than {MAX_DAYS_PER_CLOSE} days")]
    TooManyDays,
    #[error("more than {MAX_STORES} stores keep days of their own")]
    TooManyStores,
}

/// The business day of every store, and how far housekeeping has run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayBook {
    /// The open date of every store not listed in `stores`.
    pub default_open: BusinessDate,
    /// Stores whose open date differs from the default's or that keep a cutover of their own.
    pub stores: BTreeMap<u32, BusinessDate>,
    /// The last date whose day-end housekeeping is done (0: none yet).
    pub housekept_through: BusinessDate,
}

impl DayBook {
    /// A book whose every store is open on `date` and whose housekeeping is done up to the
    /// day before (a new data directory, or one written before the book existed).
    pub fn starting(date: BusinessDate) -> DayBook {
        DayBook { default_open: date, stores: BTreeMap::new(), housekept_through: add_days(date, -1) }
    }

    /// The date postings accepted now at `store` are stamped with (S1).
    pub fn open_date(&self, store: u32) -> BusinessDate {
        self.stores.get(&store).copied().unwrap_or(self.default_open)
    }

    /// The newest date closed at every store: 0 when none is.
    pub fn closed_everywhere_through(&self) -> BusinessDate {
        let earliest_open = self.stores.values().copied().chain([self.default_open]).min().unwrap_or(0);
        add_days(earliest_open, -1)
    }

    /// Is `date` closed at every store?
    pub fn closed_everywhere(&self, date: BusinessDate) -> bool {
        date <= self.closed_everywhere_through()
    }

    /// The dates closed at every store whose housekeeping has not run, oldest first.
    pub fn housekeeping_due(&self) -> Vec<BusinessDate> {
        let through = self.closed_everywhere_through();
        let mut dates = Vec::new();
        let mut date = add_days(self.housekept_through, 1);
        while date <= through && dates.len() < MAX_DAYS_PER_CLOSE as usize {
            dates.push(date);
            date = add_days(date, 1);
        }
        dates
    }

    /// Records that the housekeeping of `date` is done.
    pub fn housekept(&mut self, date: BusinessDate) {
        self.housekept_through = self.housekept_through.max(date);
    }

    /// Closes every day up to and including `through` in `scope`. `begun` is the newest
    /// date that has begun (by the clock, at the stores concerned): a day not yet begun
    /// cannot close. `own_cutover` lists the stores with a cutover of their own, which a
    /// `Default` close leaves alone. Returns whether anything changed; a day already closed
    /// is no problem (closing is idempotent).
    pub fn close(
        &mut self,
        scope: Scope,
        through: BusinessDate,
        begun: BusinessDate,
        own_cutover: &BTreeSet<u32>,
    ) -> Result<bool, CloseProblem> {
        if through > begun {
            return Err(CloseProblem::NotBegun(through));
        }
        let next = add_days(through, 1);
        let earliest = match scope {
            Scope::Store(store) => self.open_date(store),
            _ => self.stores.values().copied().chain([self.default_open]).min().unwrap_or(next),
        };
        if days_from_date(next) - days_from_date(earliest) > MAX_DAYS_PER_CLOSE {
            return Err(CloseProblem::TooManyDays);
        }
        let before = self.clone();
        match scope {
            Scope::All => {
                self.default_open = self.default_open.max(next);
                for open in self.stores.values_mut() {
                    *open = (*open).max(next);
                }
            }
            Scope::Default => {
                self.default_open = self.default_open.max(next);
                for (store, open) in self.stores.iter_mut() {
                    if !own_cutover.contains(store) {
                        *open = (*open).max(next);
                    }
                }
            }
            Scope::Store(store) => {
                if !self.stores.contains_key(&store) && self.stores.len() >= MAX_STORES {
                    return Err(CloseProblem::TooManyStores);
                }
                let open = self.open_date(store).max(next);
                self.stores.insert(store, open);
            }
        }
        // A store back in step with the default and without a cutover of its own needs no
        // entry of its own.
        let default_open = self.default_open;
        self.stores.retain(|store, open| *open != default_open || own_cutover.contains(store));
        Ok(*self != before)
    }

    /// The closes due at local time `local_minutes` of local date `local_date` (minutes after
    /// midnight): the deployment's cutover for the default stores, and each store's own.
    /// A store's day `d` closes when its cutover on the day after `d` has passed.
    pub fn closes_due(
        &self,
        local_date: BusinessDate,
        local_minutes: u32,
        default_cutover_minutes: u32,
        own_cutover: &BTreeMap<u32, u32>,
    ) -> Vec<(Scope, BusinessDate)> {
        let begun = |cutover_minutes| Self::begun_at(local_date, local_minutes, cutover_minutes);
        let mut due = Vec::new();
        let default_begun = begun(default_cutover_minutes);
        let lagging_default = self.default_open < default_begun
            || self.stores.iter().any(|(store, open)| !own_cutover.contains_key(store) && *open < default_begun);
        if lagging_default {
            due.push((Scope::Default, add_days(default_begun, -1)));
        }
        for (&store, &cutover_minutes) in own_cutover {
            let store_begun = begun(cutover_minutes);
            if self.open_date(store) < store_begun {
                due.push((Scope::Store(store), add_days(store_begun, -1)));
            }
        }
        due
    }

    /// The business date that has begun at local time `local_minutes` of `local_date` for a
    /// cutover at `cutover_minutes`.
    pub fn begun_at(local_date: BusinessDate, local_minutes: u32, cutover_minutes: u32) -> BusinessDate {
        if local_minutes >= cutover_minutes {
            local_date
        } else {
            add_days(local_date, -1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: BusinessDate = 20261201;
    const NIGHT_AUDIT_MINUTES: u32 = 4 * 60;

    fn none() -> BTreeSet<u32> {
        BTreeSet::new()
    }

    /// S1: after a close, the store's postings carry the next date, and the closed date can
    /// no longer be the open one anywhere it was closed.
    #[test]
    fn s1_a_closed_day_takes_no_more_postings() {
        let mut book = DayBook::starting(D);
        assert_eq!(book.open_date(21), D);
        assert!(book.close(Scope::All, D, D, &none()).unwrap());
        assert_eq!((book.open_date(21), book.open_date(99)), (D + 1, D + 1));
        assert!(book.closed_everywhere(D));
        // Closing again changes nothing.
        assert!(!book.close(Scope::All, D, D, &none()).unwrap());
        // A day not begun cannot close.
        assert_eq!(book.close(Scope::All, D + 1, D, &none()), Err(CloseProblem::NotBegun(D + 1)));
    }

    /// S1: one store closes its day on its own; the day is closed everywhere only when the
    /// rest close too, and only then is its housekeeping due (S7).
    #[test]
    fn s1_s7_a_store_closes_alone_and_housekeeping_waits_for_every_store() {
        let mut book = DayBook::starting(D);
        assert_eq!(book.housekeeping_due(), Vec::<BusinessDate>::new());
        book.close(Scope::Store(21), D, D, &none()).unwrap();
        assert_eq!((book.open_date(21), book.open_date(22)), (D + 1, D));
        assert!(!book.closed_everywhere(D));
        assert!(book.housekeeping_due().is_empty());
        book.close(Scope::Default, D, D, &none()).unwrap();
        assert!(book.closed_everywhere(D));
        assert_eq!(book.housekeeping_due(), vec![D]);
        // Back in step: no entry of its own is kept.
        assert!(book.stores.is_empty());
        book.housekept(D);
        assert!(book.housekeeping_due().is_empty());
    }

    /// S1: the night audit closes a hotel's day at 04:00 the next morning; a store with its
    /// own cutover closes on its own schedule; days missed while stopped all close.
    #[test]
    fn s1_cutover_hours_decide_which_closes_are_due() {
        let book = DayBook::starting(D);
        let own = BTreeMap::from([(30, 0)]);
        // 02:00 on the next calendar day: the midnight store's day is over, the night
        // audit's is not.
        assert_eq!(book.closes_due(D + 1, 120, NIGHT_AUDIT_MINUTES, &own), vec![(Scope::Store(30), D)]);
        // 04:00: both.
        assert_eq!(
            book.closes_due(D + 1, NIGHT_AUDIT_MINUTES, NIGHT_AUDIT_MINUTES, &own),
            vec![(Scope::Default, D), (Scope::Store(30), D)]
        );
        // Three days later: everything up to the day before closes in one go.
        let due = book.closes_due(D + 4, 600, NIGHT_AUDIT_MINUTES, &BTreeMap::new());
        assert_eq!(due, vec![(Scope::Default, D + 3)]);
        let mut later = book.clone();
        later.close(Scope::Default, D + 3, D + 4, &none()).unwrap();
        assert_eq!(later.housekeeping_due(), vec![D, D + 1, D + 2, D + 3]);
    }

    /// S1: a day closed early by hand (before the cutover) is not closed again, and the
    /// next day cannot be closed before it begins.
    #[test]
    fn s1_a_day_closed_early_stays_closed_and_the_next_waits() {
        let mut book = DayBook::starting(D);
        book.close(Scope::All, D, D, &none()).unwrap();
        assert!(book.closes_due(D, 22 * 60, 0, &BTreeMap::new()).is_empty());
        assert!(book.closes_due(D + 1, 60, 0, &BTreeMap::new()).is_empty());
        assert_eq!(book.close(Scope::All, D + 1, D, &none()), Err(CloseProblem::NotBegun(D + 1)));
    }

    #[test]
    fn s1_month_and_year_ends_roll_over() {
        let mut book = DayBook::starting(20261231);
        book.close(Scope::All, 20261231, 20270101, &none()).unwrap();
        assert_eq!(book.open_date(1), 20270101);
        assert_eq!(DayBook::begun_at(20270101, 100, NIGHT_AUDIT_MINUTES), 20261231);
    }
}

//! Administrative operations on one card (`card_admin`, SPEC §5.20): lifecycle changes
//! (L2–L5, L8–L10), corrections, load reversals (V5) and point redemptions (K4).
//!
//! The session verified the operator's passcode, store and role before the command reached
//! the engine (O1); the engine checks the card and journals every change with the operator,
//! including the changes that move no value, so the card's history shows them (S9).

use protocol::{AdminAction, AdminFlags, CardNo, CardState, Request, ResponseCode, Sealed};

use crate::catalog::ProductSettings;
use crate::rules::apply_rate;
use crate::{
    div_round_half_up, CardFlags, Command, Context, Effects, Engine, Outcome, Posting, Product, TxnKind, TxnStatus,
    MAX_BALANCE_MINOR,
};

/// Range checks of a `card_admin` request's fields for its action (`invalid_field` otherwise):
/// each action carries exactly what it uses.
pub(crate) fn fields_valid(
    action: AdminAction,
    value: i64,
    original_txn_id: u64,
    ticket: u64,
    new_pin: &Sealed,
) -> bool {
    let max = protocol::MAX_AMOUNT_MINOR;
    let value_ok = match action {
        AdminAction::Adjust => value != 0 && (-max..=max).contains(&value),
        AdminAction::LoadReversal | AdminAction::RedeemPoints => (1..=max).contains(&value),
        AdminAction::SetStaff => (0..=i64::from(u32::MAX)).contains(&value),
        AdminAction::RecordInvoice => (1..=max).contains(&value),
        _ => value == 0,
    };
    let names_original = matches!(action, AdminAction::LoadReversal | AdminAction::RecordInvoice);
    let original_ok = names_original == (original_txn_id != 0);
    // A correction and a load reversal are made against a document (V5: the fault ticket).
    let ticket_ok = !matches!(action, AdminAction::Adjust | AdminAction::LoadReversal) || ticket != 0;
    let new_pin_ok = match action {
        AdminAction::ChangePin => !new_pin.is_none(),
        AdminAction::UnlockPin => true,
        _ => new_pin.is_none(),
    };
    value_ok && original_ok && ticket_ok && new_pin_ok
}

impl Engine {
    pub(crate) fn administer(&mut self, ctx: Context, cmd: &Command, card_no: CardNo, fx: &mut Effects) -> Outcome {
        let Request::CardAdmin { action, flags, value, original_txn_id, ticket, .. } = cmd.request else {
            unreachable!("administer is called for card_admin requests");
        };
        let action = AdminAction::from_u8(action).expect("validated");
        let id_checked = flags & AdminFlags::ID_CHECKED != 0;
        let card = self.sold_card(card_no)?;
        if card.state == CardState::Closed {
            return Err(self.decline(card_no, ResponseCode::CardClosed));
        }
        let catalog = self.rules.catalog.clone();
        let state_change = |engine: &mut Engine, from: &[CardState], to: CardState, kind: TxnKind, fx: &mut Effects| {
            if !from.contains(&card.state) {
                return Err(engine.decline(card_no, ResponseCode::StateNotEligible));
            }
            engine.cards.get_mut(&card_no).expect("sold").state = to;
            Ok(engine.post(ctx, cmd, card_no, engine.admin_posting(cmd, kind, ticket), fx))
        };
        use CardState as S;
        match action {
            // L5: takes effect at once; from then on no debit, hold or load is approved.
            AdminAction::ReportLoss => state_change(
                self,
                &[S::Active, S::Frozen, S::PinLocked, S::PendingFunds, S::Expired],
                S::Lost,
                TxnKind::LossReport,
                fx,
            ),
            AdminAction::Freeze => state_change(self, &[S::Active, S::PinLocked], S::Frozen, TxnKind::Freeze, fx),
            // L8: unfreezing needs the holder's ID; the dormancy notice ends with it.
            AdminAction::Unfreeze => {
                if card.state != S::Frozen {
                    return Err(self.decline(card_no, ResponseCode::StateNotEligible));
                }
                if !id_checked {
                    return Err(self.decline(card_no, ResponseCode::IdNotChecked));
                }
                // Posting clears the dormancy notice (L8).
                state_change(self, &[S::Frozen], S::Active, TxnKind::Unfreeze, fx)
            }
            // L4: unlocking needs the holder's ID at the desk; the holder may choose a new PIN.
            AdminAction::UnlockPin => {
                if card.state != S::PinLocked {
                    return Err(self.decline(card_no, ResponseCode::StateNotEligible));
                }
                if !id_checked {
                    return Err(self.decline(card_no, ResponseCode::IdNotChecked));
                }
                self.set_pin(card_no, cmd.new_pin);
                self.cards.get_mut(&card_no).expect("sold").pin_failures = 0;
                state_change(self, &[S::PinLocked], S::Active, TxnKind::PinUnlock, fx)
            }
            // L3: the holder proves the current PIN (a wrong one counts towards the lockout,
            // L4) and chooses a new one; the card stops asking for a change.
            AdminAction::ChangePin => {
                let card = self.active_card(ctx, card_no)?;
                let settings = self.settings(card_no, &card, &catalog)?;
                self.verify_pin(cmd, card_no, settings, fx)?;
                self.set_pin(card_no, cmd.new_pin);
                Ok(self.post(ctx, cmd, card_no, self.admin_posting(cmd, TxnKind::PinChange, ticket), fx))
            }
            // L2: a card sold by cheque or transfer becomes usable when finance confirms.
            AdminAction::ConfirmFunds => state_change(self, &[S::PendingFunds], S::Active, TxnKind::FundsConfirmed, fx),
            AdminAction::ReturnCard => self.return_card(ctx, cmd, card_no, flags, ticket, fx),
            // L9: a gift card spent to zero closes when the store hands it back.
            AdminAction::RecycleGift => {
                let spent = card.has(CardFlags::RECYCLE) && card.cash_minor + card.bonus_minor + card.held_minor == 0;
                if Product::from_code(card.product) != Some(Product::Gift) || !spent {
                    return Err(self.decline(card_no, ResponseCode::NotRecyclable));
                }
                self.cards.get_mut(&card_no).expect("sold").state = S::Closed;
                Ok(self.post(ctx, cmd, card_no, self.admin_posting(cmd, TxnKind::Recycle, ticket), fx))
            }
            AdminAction::Adjust => {
                let bonus_bucket = flags & AdminFlags::BONUS_BUCKET != 0;
                let (cash, bonus) = if bonus_bucket { (0, value) } else { (value, 0) };
                // A correction never makes a bucket negative, takes held value or passes the
                // largest balance a card may hold.
                let total_after = card.cash_minor + card.bonus_minor + value;
                if card.cash_minor + cash < 0 || card.bonus_minor + bonus < 0 || card.available_minor() + value < 0 {
                    return Err(self.decline(card_no, ResponseCode::InsufficientValue));
                }
                if total_after > MAX_BALANCE_MINOR {
                    let mut reply = self.decline(card_no, ResponseCode::BalanceLimitExceeded);
                    reply.limit_minor = MAX_BALANCE_MINOR;
                    return Err(reply);
                }
                let posting = Posting {
                    amount_minor: value.abs(),
                    gross_minor: value.abs(),
                    cash,
                    bonus,
                    ..self.admin_posting(cmd, TxnKind::Adjustment, ticket)
                };
                Ok(self.post_new(ctx, cmd, card_no, posting, fx))
            }
            AdminAction::LoadReversal => self.reverse_load(ctx, cmd, card_no, original_txn_id, value, ticket, fx),
            // V4, T9: the card is the staff member `value`'s (0: no longer a staff card).
            AdminAction::SetStaff => {
                let stored = self.cards.get_mut(&card_no).expect("sold");
                stored.staff_operator_id = value as u32;
                if value == 0 {
                    stored.flags &= !CardFlags::STAFF;
                } else {
                    stored.flags |= CardFlags::STAFF;
                }
                Ok(self.post(ctx, cmd, card_no, self.admin_posting(cmd, TxnKind::StaffCard, ticket), fx))
            }
            // V6: invoices are issued at load, never at spending, and never for more than
            // the load.
            AdminAction::RecordInvoice => {
                let load = self.original(card_no, original_txn_id)?;
                if !matches!(load.kind, TxnKind::Load | TxnKind::SellCard) || load.cash_delta_minor <= 0 {
                    return Err(self.decline(card_no, ResponseCode::InvoiceExceedsLoad));
                }
                // A load voided or reversed brought no money in.
                if load.status != TxnStatus::Posted {
                    return Err(self.decline(card_no, ResponseCode::OriginalAlreadySettled));
                }
                if load.invoiced_minor + value > load.cash_delta_minor {
                    let mut reply = self.decline(card_no, ResponseCode::InvoiceExceedsLoad);
                    reply.limit_minor = load.cash_delta_minor - load.invoiced_minor;
                    return Err(reply);
                }
                self.put_txn(
                    ctx,
                    original_txn_id,
                    crate::Txn { invoiced_minor: load.invoiced_minor + value, ..load },
                    fx,
                );
                let posting = Posting {
                    amount_minor: value,
                    gross_minor: value,
                    ref_txn_id: original_txn_id,
                    ..self.admin_posting(cmd, TxnKind::InvoiceIssued, ticket)
                };
                Ok(self.post(ctx, cmd, card_no, posting, fx))
            }
            AdminAction::RedeemPoints => {
                let card = self.active_card(ctx, card_no)?;
                let settings = self.settings(card_no, &card, &catalog)?;
                self.redeem(ctx, cmd, card_no, settings, value, flags & AdminFlags::FOR_GIFT != 0, ticket, fx)
            }
        }
    }

    /// A posting of `kind` by the command's operator that moves no value (the caller adds
    /// what it moves).
    fn admin_posting(&self, cmd: &Command, kind: TxnKind, ticket: u64) -> Posting {
        Posting { kind, operator_id: cmd.operator_id, approver_id: cmd.approver_id, ticket, ..Posting::default() }
    }

    /// Sets the card's PIN to `pin` if one was given; a PIN the holder chose need not be
    /// changed (L3).
    fn set_pin(&mut self, card_no: CardNo, pin: Option<crate::Pin>) {
        if let Some(pin) = pin {
            let hash = self.pin_hash(card_no, &pin);
            let card = self.cards.get_mut(&card_no).expect("sold");
            card.pin_hash = hash;
            card.flags &= !CardFlags::PIN_MUST_CHANGE;
        }
    }

    /// L10: refused by default and allowed with a manager's approval (or for a product whose
    /// cards are refundable); never while frozen or holding a deposit. The cash value is paid
    /// back less tax when the load's invoice is not returned; bonus value and points are
    /// forfeited; the card closes.
    fn return_card(
        &mut self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        flags: u8,
        ticket: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let card = self.cards[&card_no];
        let code = match card.state {
            CardState::Frozen => Some(ResponseCode::CardFrozen),
            CardState::Active | CardState::PinLocked | CardState::Lost | CardState::Expired => None,
            _ => Some(ResponseCode::StateNotEligible),
        };
        if let Some(code) = code {
            return Err(self.decline(card_no, code));
        }
        if card.held_minor != 0 {
            return Err(self.decline(card_no, ResponseCode::OpenHold));
        }
        let catalog = self.rules.catalog.clone();
        let refundable = self.settings(card_no, &card, &catalog).is_ok_and(|s| s.refundable);
        if !refundable && cmd.approver_id == 0 {
            return Err(self.decline(card_no, ResponseCode::ApprovalRequired));
        }
        let tax_minor = if flags & AdminFlags::INVOICE_RETURNED != 0 {
            0
        } else {
            apply_rate(card.cash_minor, catalog.settings.return_tax_rate)
        };
        let posting = Posting {
            amount_minor: card.cash_minor - tax_minor,
            gross_minor: card.cash_minor,
            cash: -card.cash_minor,
            bonus: -card.bonus_minor,
            points: -card.points.max(0),
            ..self.admin_posting(cmd, TxnKind::CardReturn, ticket)
        };
        self.cards.get_mut(&card_no).expect("sold").state = CardState::Closed;
        Ok(self.post_new(ctx, cmd, card_no, posting, fx))
    }

    /// V5: takes back `amount_minor` of the load `load_id` (all of it or part), with the
    /// load's bonus in proportion, computed on the cumulative amount reversed so that reversing
    /// everything removes exactly the bonus given. Refused when the card no longer holds it.
    #[allow(clippy::too_many_arguments)]
    fn reverse_load(
        &mut self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        load_id: u64,
        amount_minor: i64,
        ticket: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let card = self.cards[&card_no];
        let load = self.original(card_no, load_id)?;
        if !matches!(load.kind, TxnKind::Load | TxnKind::SellCard) || load.cash_delta_minor <= 0 {
            return Err(self.decline(card_no, ResponseCode::OriginalNotEligible));
        }
        if load.status != TxnStatus::Posted {
            return Err(self.decline(card_no, ResponseCode::OriginalAlreadySettled));
        }
        let reversed_minor = load.refunded_minor + amount_minor;
        if reversed_minor > load.cash_delta_minor {
            let mut reply = self.decline(card_no, ResponseCode::RefundExceedsOriginal);
            reply.limit_minor = load.cash_delta_minor - load.refunded_minor;
            return Err(reply);
        }
        let bonus_cumulative = div_round_half_up(
            i128::from(reversed_minor) * i128::from(load.bonus_delta_minor),
            i128::from(load.cash_delta_minor),
        );
        let bonus = bonus_cumulative - load.refunded_bonus_minor;
        if card.cash_minor < amount_minor || card.bonus_minor < bonus || card.available_minor() < amount_minor + bonus {
            return Err(self.decline(card_no, ResponseCode::InsufficientValue));
        }
        let posting = Posting {
            amount_minor,
            gross_minor: amount_minor,
            cash: -amount_minor,
            bonus: -bonus,
            ref_txn_id: load_id,
            ..self.admin_posting(cmd, TxnKind::LoadReversal, ticket)
        };
        let updated = crate::Txn { refunded_minor: reversed_minor, refunded_bonus_minor: bonus_cumulative, ..load };
        self.put_txn(ctx, load_id, updated, fx);
        Ok(self.post_new(ctx, cmd, card_no, posting, fx))
    }

    /// K4: `points` redeemed at the catalog's rate (100 points = 1.00 by default, rounded
    /// down to the fen) as bonus value, or exchanged for a gift (no value credited).
    #[allow(clippy::too_many_arguments)]
    fn redeem(
        &mut self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        settings: &ProductSettings,
        points: i64,
        for_gift: bool,
        ticket: u64,
        fx: &mut Effects,
    ) -> Outcome {
        let card = self.cards[&card_no];
        if !settings.points {
            return Err(self.decline(card_no, ResponseCode::PointsNotAllowed));
        }
        if card.points < points {
            return Err(self.decline(card_no, ResponseCode::InsufficientPoints));
        }
        let per_yuan = i64::from(self.rules.catalog.points.redeem_points_per_yuan.max(1));
        let value_minor = if for_gift { 0 } else { points * 100 / per_yuan };
        let max = settings.balance_max_minor.min(MAX_BALANCE_MINOR);
        if card.cash_minor + card.bonus_minor + value_minor > max {
            let mut reply = self.decline(card_no, ResponseCode::BalanceLimitExceeded);
            reply.limit_minor = max;
            return Err(reply);
        }
        let posting = Posting {
            amount_minor: value_minor,
            gross_minor: value_minor,
            bonus: value_minor,
            points: -points,
            ..self.admin_posting(cmd, TxnKind::Redemption, ticket)
        };
        Ok(self.post_new(ctx, cmd, card_no, posting, fx))
    }
}

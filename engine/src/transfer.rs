//! Steps of the operations that span partitions: a member's registration (M1) and a card's
//! replacement (L6). The switch's coordinator sends each step to the partition of the card
//! it changes, under a trace key of its own per operation and step, so a step sent again
//! after a crash gets its first answer and changes nothing more (T8). How the steps make
//! the whole operation atomic is in docs/design.md ("Operations spanning partitions").

use protocol::{CardNo, CardReply, CardState, MsgType, ResponseCode};

use crate::{Card, CardFlags, Command, Context, Effects, Engine, Pin, Posting, Product, Trace, TraceKey, TxnKind};

/// One step of an operation spanning partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// M1: the card's holder is registered: a sold card of a real-name product without one.
    AttachMember { birthday_mmdd: u16 },
    /// L6: the old card closes and gives up its cash, bonus, points and spend; refused while
    /// it holds a deposit. The reply's `txn_id` names the transfer, whose record says what
    /// moved.
    TransferOut { to: CardNo },
    /// L6: the new card, in stock in a range of the old card's product, is sold to the same
    /// holder with what the old one gave up and its validity; a fee paid at the desk is
    /// journaled with it.
    TransferIn { from: CardNo, moved: Moved, fee_minor: i64, method: u8 },
    /// L6: a transfer out given back, when the new card refused it: the old card as it was.
    TransferBack { transfer_txn_id: u64, state: CardState },
}

/// What a replacement moves from the old card to the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    pub transfer_txn_id: u64,
    pub cash_minor: i64,
    pub bonus_minor: i64,
    pub points: i64,
    pub spend_minor: i64,
    /// The old card's record after the transfer out: product, validity, birthday, flags.
    pub old: Card,
}

impl Step {
    fn digest(&self) -> u64 {
        // Only equality matters: a step is sent again with the same content.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let text = format!("{self:?}");
        for b in text.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}

impl Engine {
    /// Applies `step` to `card_no` once: the same key and step again get the first reply.
    pub fn apply_step(
        &mut self,
        ctx: Context,
        key: TraceKey,
        card_no: CardNo,
        cmd: &Command,
        step: Step,
        fx: &mut Effects,
    ) -> CardReply {
        let digest = step.digest();
        match self.traces.get(&key) {
            Some(Trace::Answered { digest: seen, reply, .. }) if *seen == digest => return *reply,
            Some(_) => return self.decline(card_no, ResponseCode::TraceReused),
            None => {}
        }
        let reply = self.step(ctx, cmd, card_no, step, fx).unwrap_or_else(|declined| declined);
        let trace = Trace::Answered { digest, msg_type: MsgType::CardAdmin, card: card_no, reply };
        self.put_trace(ctx, key, trace, fx);
        reply
    }

    fn step(&mut self, ctx: Context, cmd: &Command, card_no: CardNo, step: Step, fx: &mut Effects) -> crate::Outcome {
        let catalog = self.rules.catalog.clone();
        match step {
            Step::AttachMember { birthday_mmdd } => {
                let card = self.live_card(card_no)?;
                let real_name = self.settings(card_no, &card, &catalog).is_ok_and(|s| s.real_name);
                if !real_name || card.has(CardFlags::MEMBER) {
                    return Err(self.decline(card_no, ResponseCode::MemberNotAllowed));
                }
                let stored = self.cards.get_mut(&card_no).expect("live");
                stored.flags |= CardFlags::MEMBER;
                stored.birthday_mmdd = birthday_mmdd;
                let posting = Posting { kind: TxnKind::MemberRegistered, ..self.step_posting(cmd) };
                Ok(self.post(ctx, cmd, card_no, posting, fx))
            }
            Step::TransferOut { .. } => {
                let card = self.live_card(card_no)?;
                // Anonymous cards have no holder to prove (P2); a member card only moves to
                // its registered holder.
                if Product::from_code(card.product) == Some(Product::Gift) || !card.has(CardFlags::MEMBER) {
                    return Err(self.decline(card_no, ResponseCode::ReplacementRefused));
                }
                if card.held_minor != 0 {
                    return Err(self.decline(card_no, ResponseCode::OpenHold));
                }
                self.cards.get_mut(&card_no).expect("live").state = CardState::Closed;
                let posting = Posting {
                    kind: TxnKind::TransferOut,
                    amount_minor: card.cash_minor + card.bonus_minor,
                    gross_minor: card.cash_minor + card.bonus_minor,
                    cash: -card.cash_minor,
                    bonus: -card.bonus_minor,
                    points: -card.points,
                    spend: -card.spend_minor,
                    ..self.step_posting(cmd)
                };
                Ok(self.post_new(ctx, cmd, card_no, posting, fx))
            }
            Step::TransferIn { from, moved, fee_minor, method } => {
                let refused = |engine: &Engine| Err(engine.decline(card_no, ResponseCode::ReplacementRefused));
                let Some(range) = self.range_of(card_no).copied() else { return refused(self) };
                if self.cards.contains_key(&card_no) || range.product != moved.old.product || from == card_no {
                    return refused(self);
                }
                let settings = self.settings(card_no, &moved.old, &catalog)?;
                let mut card = Card::new(range.product, range.store_id, CardState::Active);
                // L6: the same holder, the old card's validity and tier; the PIN starts again
                // from the product's initial one (L3: a PIN hash is bound to its card number).
                card.flags = CardFlags::MEMBER | (moved.old.flags & CardFlags::STAFF);
                card.staff_operator_id = moved.old.staff_operator_id;
                card.birthday_mmdd = moved.old.birthday_mmdd;
                card.first_load_date = moved.old.first_load_date;
                card.expiry_date = moved.old.expiry_date;
                if let Some(pin) = settings.initial_pin.as_deref().and_then(|p| Pin::new(p.as_bytes())) {
                    card.pin_hash = self.pin_hash(card_no, &pin);
                    card.flags |= CardFlags::PIN_MUST_CHANGE;
                }
                // P3: the new card is a card issued, and takes a place like a sale.
                if !self.rules.issued.take(range.product, settings.approved_quantity.unwrap_or(u64::MAX)) {
                    return Err(self.decline(card_no, ResponseCode::QuantityExhausted));
                }
                self.cards.insert(card_no, card);
                let posting = Posting {
                    kind: TxnKind::TransferIn,
                    amount_minor: moved.cash_minor + moved.bonus_minor,
                    gross_minor: moved.cash_minor + moved.bonus_minor,
                    cash: moved.cash_minor,
                    bonus: moved.bonus_minor,
                    points: moved.points,
                    spend: moved.spend_minor,
                    ref_txn_id: moved.transfer_txn_id,
                    ..self.step_posting(cmd)
                };
                let reply = self.post(ctx, cmd, card_no, posting, fx);
                if fee_minor > 0 {
                    let fee = Posting {
                        kind: TxnKind::Fee,
                        amount_minor: fee_minor,
                        gross_minor: fee_minor,
                        method,
                        ref_txn_id: moved.transfer_txn_id,
                        ..self.step_posting(cmd)
                    };
                    self.post(ctx, cmd, card_no, fee, fx);
                }
                Ok(reply)
            }
            Step::TransferBack { transfer_txn_id, state } => {
                let card = self.sold_card(card_no)?;
                let Some(transfer) = self.txns.get(&transfer_txn_id).copied() else {
                    return Err(self.decline(card_no, ResponseCode::OriginalNotFound));
                };
                if transfer.kind != TxnKind::TransferOut || transfer.card != card_no || card.state != CardState::Closed
                {
                    return Err(self.decline(card_no, ResponseCode::OriginalNotEligible));
                }
                self.cards.get_mut(&card_no).expect("sold").state = state;
                let posting = Posting {
                    kind: TxnKind::TransferBack,
                    amount_minor: transfer.amount_minor,
                    gross_minor: transfer.amount_minor,
                    cash: -transfer.cash_delta_minor,
                    bonus: -transfer.bonus_delta_minor,
                    points: -transfer.points_delta,
                    spend: -transfer.spend_delta_minor,
                    ref_txn_id: transfer_txn_id,
                    ..self.step_posting(cmd)
                };
                self.set_status(ctx, transfer_txn_id, crate::TxnStatus::Reversed, fx);
                Ok(self.post(ctx, cmd, card_no, posting, fx))
            }
        }
    }

    /// A step's posting: by the operation's operator, against its id (the ticket).
    fn step_posting(&self, cmd: &Command) -> Posting {
        Posting { operator_id: cmd.operator_id, ticket: u64::from(cmd.header.stan), ..Posting::default() }
    }
}

//! A switch in miniature: the protocol answered from one in-memory map, nothing durable.
//!
//! Two uses. The load generator's tests run against it, with its fault knobs (dropped,
//! repeated, late or wrong answers) showing that `loadgen` notices each kind of fault. And the
//! `miniswitch` binary serves it on a real socket so that `loadgen` can measure the ceiling of
//! the machine: the rate that the load generator and loopback TCP allow when the switch does
//! almost nothing (no partitions, no group commit, no fsync). The real switch cannot go faster
//! than that on the same machine.
//!
//! It knows sign-on, range import, card sale, sale, load, hold, capture and balance; a reused
//! (terminal, stan) is declined `trace_reused`; anything else is declined `invalid_field`. It
//! authenticates as the switch does (SPEC §3.1): it knows the admin credential, takes the
//! terminals the admin provisions, checks every frame's MAC and signs every reply, so that the
//! ceiling it shows includes the MAC's cost. It has no catalog: the PIN and override of a sale
//! or hold are not looked at, and its replies carry no discount, points, tier, notice or limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::{FutureExt, SinkExt, StreamExt};
use protocol::{
    CardReply, CardState, Credential, Frame, FrameCodec, Header, ImportRangeReply, Inbound, InboundCodec, Message,
    MsgType, ProtocolError, Request, Response, ResponseCode, SignOnReply, TerminalKey, TerminalReply,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

/// Most frames answered before the replies are flushed, so one busy connection cannot hold
/// its replies back indefinitely.
const MAX_REPLIES_PER_FLUSH: usize = 256;
/// Most cards one range import may create here (all of them are held in memory).
pub const MAX_MINI_CARDS: u64 = 20_000_000;
/// The business date every sign-on is told.
const BUSINESS_DATE: u32 = 20_261_122;

#[derive(Default)]
struct Card {
    sold: bool,
    cash_minor: i64,
    held_minor: i64,
}

#[derive(Default)]
struct State {
    /// Every request but sign-ons and balances by terminal and stan; a balance is checked
    /// against them but not remembered. One map per terminal: a single map of every request
    /// would stall all terminals for a second each time it grows past a few million.
    traces: HashMap<u32, HashMap<u32, Request>>,
    cards: HashMap<u64, Card>,
    /// Hold txn id -> (card, amount, still open).
    holds: HashMap<u64, (u64, i64, bool)>,
    last_txn: u64,
}

/// Faults the miniature switch can be told to make; all off by default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Every n-th posting (sale, load, hold, capture) is carried out but not answered.
    pub drop_every: Option<u64>,
    /// Every n-th posting is answered twice.
    pub repeat_every: Option<u64>,
    /// Captures leave their hold's amount reserved.
    pub captures_keep_holds: bool,
    /// Loads are approved but credit nothing.
    pub loads_credit_nothing: bool,
    /// Each response is sent this late (one request at a time per connection).
    pub delay: Option<Duration>,
}

/// The switch in miniature.
pub struct MiniSwitch {
    state: Mutex<State>,
    faults: Faults,
    postings: AtomicU64,
    admin: Credential,
    /// Keys of the terminals the admin provisioned.
    keys: Mutex<HashMap<u32, TerminalKey>>,
}

/// Reads frames with what their MACs cover; writes frames signed with the connection's key.
struct MiniCodec {
    outbound: FrameCodec,
}

impl Decoder for MiniCodec {
    type Item = Inbound;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        InboundCodec.decode(src)
    }
}

impl Encoder<Frame> for MiniCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.outbound.encode(frame, dst)
    }
}

fn card_reply(request: MsgType, code: ResponseCode, txn_id: u64, amount_minor: i64, card: Option<&Card>) -> Response {
    let (state, cash_minor, held_minor) = match card {
        Some(card) if card.sold => (CardState::Active, card.cash_minor, card.held_minor),
        Some(_) => (CardState::Stock, 0, 0),
        None => (CardState::Unknown, 0, 0),
    };
    // No catalog here: no discounts, points, tiers, notices, PINs or limits. The gross amount
    // is the amount moved, as the switch reports it for a request without a discount.
    let reply = CardReply {
        code,
        state,
        txn_id,
        amount_minor,
        cash_minor,
        bonus_minor: 0,
        held_minor,
        gross_minor: amount_minor,
        discount_minor: 0,
        points_earned: 0,
        points_balance: 0,
        tier: 0,
        notices: 0,
        pin_attempts_left: 0,
        limit_minor: 0,
    };
    Response::Card { request, reply }
}

impl MiniSwitch {
    /// A miniature switch whose admin terminal is `admin`.
    pub fn new(admin: Credential) -> MiniSwitch {
        MiniSwitch::with_faults(admin, Faults::default())
    }

    /// A miniature switch that makes `faults`.
    pub fn with_faults(admin: Credential, faults: Faults) -> MiniSwitch {
        let keys = HashMap::from([(admin.terminal_id, admin.key.clone())]);
        MiniSwitch { state: Mutex::default(), faults, postings: AtomicU64::new(0), admin, keys: Mutex::new(keys) }
    }

    /// The answer to a frame: authentication first, as the switch does it.
    fn answer(&self, inbound: &Inbound, request: Request) -> Response {
        let header = inbound.frame.header;
        let key = self.keys.lock().expect("not poisoned").get(&header.terminal_id).cloned();
        match key {
            None => return Response::decline(request.msg_type(), ResponseCode::UnknownTerminal),
            Some(key) if !inbound.verify(&key) => return Response::decline(request.msg_type(), ResponseCode::BadMac),
            Some(_) => {}
        }
        if let Request::ProvisionTerminal { terminal_id, wrapped_key, .. } = request {
            if header.terminal_id != self.admin.terminal_id {
                return Response::decline(request.msg_type(), ResponseCode::NotPermitted);
            }
            let key = self.admin.key.unwrap_from_transport(&wrapped_key, header.terminal_id, header.stan, terminal_id);
            self.keys.lock().expect("not poisoned").insert(terminal_id, key);
            let reply = TerminalReply { code: ResponseCode::Approved, terminal_id, enabled: 1 };
            return Response::Terminal { request: request.msg_type(), reply };
        }
        self.handle(header, request)
    }

    /// The answer to one request.
    pub fn handle(&self, header: Header, request: Request) -> Response {
        let mut state = self.state.lock().expect("not poisoned");
        let State { traces, cards, holds, last_txn } = &mut *state;
        if !matches!(request, Request::SignOn { .. }) {
            let terminal = traces.entry(header.terminal_id).or_default();
            // Stricter than the switch: loadgen never retransmits, so even a request equal to
            // the remembered one is a reuse.
            match terminal.get(&header.stan) {
                Some(_) => return Response::decline(request.msg_type(), ResponseCode::TraceReused),
                None if matches!(request, Request::Balance { .. }) => {}
                None => {
                    terminal.insert(header.stan, request);
                }
            }
        }
        match request {
            Request::SignOn { .. } => {
                return Response::SignOn(SignOnReply { code: ResponseCode::Approved, business_date: BUSINESS_DATE })
            }
            Request::ImportRange { first, last, .. } => {
                let count = last.0.saturating_sub(first.0).saturating_add(1);
                let code = if last.0 < first.0 || count > MAX_MINI_CARDS.saturating_sub(cards.len() as u64) {
                    ResponseCode::InvalidField
                } else if (first.0..=last.0).any(|c| cards.contains_key(&c)) {
                    ResponseCode::RangeOverlaps
                } else {
                    cards.extend((first.0..=last.0).map(|c| (c, Card::default())));
                    ResponseCode::Approved
                };
                let card_count = if code.is_approved() { count } else { 0 };
                return Response::ImportRange(ImportRangeReply { code, card_count });
            }
            Request::Load { amount_minor, .. } if amount_minor % 100 != 0 => {
                return Response::decline(MsgType::Load, ResponseCode::InvalidField)
            }
            _ => {}
        }
        let msg_type = request.msg_type();
        let Some(number) = request.card() else {
            return Response::decline(msg_type, ResponseCode::InvalidField);
        };
        let Some(card) = cards.get_mut(&number.0) else {
            return card_reply(msg_type, ResponseCode::UnknownCard, 0, 0, None);
        };
        if let Request::SellCard { amount_minor, .. } = request {
            if card.sold {
                return card_reply(msg_type, ResponseCode::CardAlreadySold, 0, 0, Some(card));
            }
            (card.sold, card.cash_minor) = (true, amount_minor);
            *last_txn += 1;
            return card_reply(msg_type, ResponseCode::Approved, *last_txn, amount_minor, Some(card));
        }
        if !card.sold {
            return card_reply(msg_type, ResponseCode::CardNotSold, 0, 0, Some(card));
        }
        let available = card.cash_minor - card.held_minor;
        let outcome = match request {
            Request::Balance { .. } => return card_reply(msg_type, ResponseCode::Approved, 0, 0, Some(card)),
            Request::Sale { amount_minor, .. } | Request::Hold { amount_minor, .. } if available < amount_minor => {
                Err(ResponseCode::InsufficientValue)
            }
            Request::Sale { amount_minor, .. } => {
                card.cash_minor -= amount_minor;
                Ok(amount_minor)
            }
            Request::Hold { amount_minor, .. } => {
                card.held_minor += amount_minor;
                holds.insert(*last_txn + 1, (number.0, amount_minor, true));
                Ok(amount_minor)
            }
            Request::Load { amount_minor, .. } => {
                if !self.faults.loads_credit_nothing {
                    card.cash_minor += amount_minor;
                }
                Ok(amount_minor)
            }
            Request::Capture { hold_txn_id, amount_minor, .. } => match holds.get_mut(&hold_txn_id) {
                None => Err(ResponseCode::OriginalNotFound),
                Some((hold_card, _, _)) if *hold_card != number.0 => Err(ResponseCode::OriginalMismatch),
                Some((_, _, false)) => Err(ResponseCode::OriginalAlreadySettled),
                Some((_, held, _)) if available + *held < amount_minor => Err(ResponseCode::InsufficientValue),
                Some((_, held, open)) => {
                    *open = false;
                    if !self.faults.captures_keep_holds {
                        card.held_minor -= *held;
                    }
                    card.cash_minor -= amount_minor;
                    Ok(amount_minor)
                }
            },
            _ => Err(ResponseCode::InvalidField),
        };
        match outcome {
            Ok(amount) => {
                *last_txn += 1;
                card_reply(msg_type, ResponseCode::Approved, *last_txn, amount, Some(card))
            }
            Err(code) => card_reply(msg_type, code, 0, 0, Some(card)),
        }
    }

    /// How many copies of the answer to `request` go out (the drop and repeat knobs).
    fn copies(&self, request: &Request) -> usize {
        if !matches!(
            request,
            Request::Sale { .. } | Request::Load { .. } | Request::Hold { .. } | Request::Capture { .. }
        ) {
            return 1;
        }
        let n = self.postings.fetch_add(1, Ordering::Relaxed) + 1;
        if self.faults.drop_every.is_some_and(|k| n.is_multiple_of(k)) {
            0
        } else if self.faults.repeat_every.is_some_and(|k| n.is_multiple_of(k)) {
            2
        } else {
            1
        }
    }

    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(Arc::clone(&self).connection(stream));
        }
    }

    /// Binds a port on loopback, serves it in the background and returns its address.
    pub async fn start(self) -> std::io::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(Arc::new(self).serve(listener));
        Ok(addr)
    }

    /// Answers one connection's requests in order. Replies to requests that arrived together
    /// go out in one write, as the real switch's writer does.
    async fn connection(self: Arc<Self>, stream: TcpStream) {
        if stream.set_nodelay(true).is_err() {
            return;
        }
        let mut framed = tokio_util::codec::Framed::new(stream, MiniCodec { outbound: FrameCodec::default() });
        let mut signed_on = false;
        while let Some(Ok(mut inbound)) = framed.next().await {
            let mut answered = 0;
            loop {
                let frame = &inbound.frame;
                let Message::Request(request) = frame.message else { return };
                let response = self.answer(&inbound, request);
                if !signed_on && matches!(response, Response::SignOn(ref r) if r.code.is_approved()) {
                    // Replies are signed from the sign-on on, with the terminal's key.
                    let key = self.keys.lock().expect("not poisoned").get(&frame.header.terminal_id).cloned();
                    if let Some(key) = key {
                        framed.codec_mut().outbound.set_key(key);
                        signed_on = true;
                    }
                }
                if let Some(delay) = self.faults.delay {
                    tokio::time::sleep(delay).await;
                }
                let header = Header { flags: 0, ..frame.header };
                for _ in 0..self.copies(&request) {
                    let reply = Frame { header, message: Message::Response(response.clone()) };
                    if framed.feed(reply).await.is_err() {
                        return;
                    }
                }
                answered += 1;
                if answered >= MAX_REPLIES_PER_FLUSH {
                    break;
                }
                // Another request already here goes into the same write.
                match framed.next().now_or_never() {
                    Some(Some(Ok(next))) => inbound = next,
                    Some(_) => {
                        let _ = SinkExt::<Frame>::flush(&mut framed).await;
                        return;
                    }
                    None => break,
                }
            }
            if SinkExt::<Frame>::flush(&mut framed).await.is_err() {
                return;
            }
        }
    }
}

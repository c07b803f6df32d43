//! Length-prefixed framing and tokio-util's `Decoder`/`Encoder` for [`Frame`].
//!
//! Layout of every frame (SPEC.md §2):
//! ```text
//! u32 length            bytes that follow (header + body + MAC), at most MAX_FRAME_BYTES
//! u8  version           PROTOCOL_VERSION
//! u8  msg_type
//! u16 flags
//! u32 terminal_id
//! u32 stan
//! u64 local_time        YYYYMMDDhhmmss
//! ... body              per message type
//! [16] mac              HMAC-SHA256 of every byte before it, truncated (§3.1)
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::auth::{TerminalKey, MAC_BYTES, ZERO_MAC};
use crate::message::{decode_body, encode_body, BodyError, Frame, Header, Message, Reader, Response, KNOWN_FLAGS};
use crate::types::{LocalTime, MsgType, ResponseCode};
use crate::{HEADER_BYTES, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, PROTOCOL_VERSION};

/// Fewest bytes a length prefix may declare: a header and a MAC.
pub const MIN_FRAME_BYTES: usize = HEADER_BYTES + MAC_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("declared frame length {declared} exceeds the maximum of {MAX_FRAME_BYTES} bytes")]
    TooLarge { declared: usize },
    #[error(
        "declared frame length {declared} is shorter than the {HEADER_BYTES}-byte header and the {MAC_BYTES}-byte MAC"
    )]
    TooShort { declared: usize },
    #[error("the MAC of the frame for terminal {terminal_id} trace {stan} is wrong")]
    BadMac { terminal_id: u32, stan: u32 },
    #[error("bad frame from terminal {terminal_id} trace {stan}: {problem}")]
    Body { terminal_id: u32, stan: u32, problem: BodyError },
}

impl ProtocolError {
    /// The code an `Error` reply to this problem carries.
    pub fn code(&self) -> ResponseCode {
        match self {
            ProtocolError::Body { problem, .. } => problem.code(),
            ProtocolError::BadMac { .. } => ResponseCode::BadMac,
            _ => ResponseCode::Malformed,
        }
    }

    /// Terminal id and trace number of the offending frame, when its header was readable.
    pub fn header_ids(&self) -> (u32, u32) {
        match self {
            ProtocolError::Body { terminal_id, stan, .. } | ProtocolError::BadMac { terminal_id, stan } => {
                (*terminal_id, *stan)
            }
            _ => (0, 0),
        }
    }
}

/// Decodes one frame from `bytes`: header, body and MAC, without the length prefix. The MAC is
/// not checked here: that needs the terminal's key (see [`Inbound::verify`] and
/// [`FrameCodec::with_key`]). Pure: never panics and never allocates more than the strings
/// the body declares (each bounded).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, ProtocolError> {
    if bytes.len() < MIN_FRAME_BYTES {
        return Err(ProtocolError::TooShort { declared: bytes.len() });
    }
    let mut r = Reader::new(&bytes[..bytes.len() - MAC_BYTES]);
    let header_err = |problem| ProtocolError::Body { terminal_id: 0, stan: 0, problem };
    let version = r.u8("version").map_err(header_err)?;
    let raw_type = r.u8("msg_type").map_err(header_err)?;
    let flags = r.u16("flags").map_err(header_err)?;
    let terminal_id = r.u32("terminal_id").map_err(header_err)?;
    let stan = r.u32("stan").map_err(header_err)?;
    let local_time = LocalTime(r.u64("local_time").map_err(header_err)?);
    let header = Header { flags, terminal_id, stan, local_time };
    let body_err = |problem| ProtocolError::Body { terminal_id, stan, problem };
    if version != PROTOCOL_VERSION {
        return Err(body_err(BodyError::UnsupportedVersion(version)));
    }
    let msg_type = MsgType::from_u8(raw_type).ok_or(body_err(BodyError::UnknownType(raw_type)))?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(body_err(BodyError::ReservedFlags(flags & !KNOWN_FLAGS)));
    }
    let message = decode_body(msg_type, &mut r).map_err(body_err)?;
    r.finish().map_err(body_err)?;
    Ok(Frame { header, message })
}

/// Appends `frame`, length prefix included, to `out`, with an all-zero MAC: the frame of a
/// sender without a key (SPEC §3.1).
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    encode_signed(frame, None, out);
}

/// Appends `frame`, length prefix included, to `out`, with its MAC under `key` (all zero
/// without a key).
pub fn encode_signed(frame: &Frame, key: Option<&TerminalKey>, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0); // patched below, once the body's length is known
    out.put_u8(PROTOCOL_VERSION);
    out.put_u8(frame.message.msg_type() as u8);
    out.put_u16(frame.header.flags);
    out.put_u32(frame.header.terminal_id);
    out.put_u32(frame.header.stan);
    out.put_u64(frame.header.local_time.0);
    encode_body(&frame.message, out);
    let len = out.len() - start - LENGTH_PREFIX_BYTES + MAC_BYTES;
    debug_assert!(len <= MAX_FRAME_BYTES, "every message this crate encodes fits a frame");
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    let mac = key.map_or(ZERO_MAC, |key| key.mac(&out[start..]));
    out.put_slice(&mac);
}

/// Splits the next complete frame (length prefix included) off `src`: `Ok(None)` until it has
/// fully arrived. A declared length out of bounds is refused before anything is reserved for
/// it, so a hostile prefix never makes the receiver allocate.
fn next_frame_bytes(src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
    if src.len() < LENGTH_PREFIX_BYTES {
        return Ok(None);
    }
    let declared = u32::from_be_bytes(src[..LENGTH_PREFIX_BYTES].try_into().expect("4 bytes")) as usize;
    if declared > MAX_FRAME_BYTES {
        return Err(ProtocolError::TooLarge { declared });
    }
    if declared < MIN_FRAME_BYTES {
        return Err(ProtocolError::TooShort { declared });
    }
    let total = LENGTH_PREFIX_BYTES + declared;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    Ok(Some(src.split_to(total)))
}

/// A frame as received, with the bytes its MAC covers, for a receiver that learns which key
/// to check it with only from the frame's header (the switch).
#[derive(Clone, Debug)]
pub struct Inbound {
    pub frame: Frame,
    /// The whole frame: length prefix, header, body and MAC.
    raw: Bytes,
}

impl Inbound {
    /// The MAC the frame carries.
    pub fn mac(&self) -> [u8; MAC_BYTES] {
        self.raw[self.raw.len() - MAC_BYTES..].try_into().expect("a frame ends with its MAC")
    }

    /// True when the frame's MAC is the one `key` gives; constant time.
    pub fn verify(&self, key: &TerminalKey) -> bool {
        let (signed, _) = self.raw.split_at(self.raw.len() - MAC_BYTES);
        key.verify(signed, &self.mac())
    }
}

/// The switch's decoder: frames with the bytes to check their MACs against (see [`Inbound`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct InboundCodec;

impl Decoder for InboundCodec {
    type Item = Inbound;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        let Some(raw) = next_frame_bytes(src)? else { return Ok(None) };
        let frame = decode_frame(&raw[LENGTH_PREFIX_BYTES..])?;
        Ok(Some(Inbound { frame, raw: raw.freeze() }))
    }
}

/// True for the responses the switch sends without a MAC when it cannot sign them: the
/// declines of a terminal it has no (valid) key for, and error frames (SPEC §3.1).
fn may_be_unsigned(frame: &Frame) -> bool {
    match &frame.message {
        Message::Response(Response::Error { .. }) => true,
        Message::Response(response) => matches!(
            response.code(),
            ResponseCode::UnknownTerminal | ResponseCode::BadMac | ResponseCode::TerminalDisabled
        ),
        Message::Request(_) | Message::RegisterMember(_) => false,
    }
}

/// The codec of terminals: signs what it sends with the terminal's key and checks the MAC of
/// what it receives. Without a key (the default) it sends all-zero MACs and checks nothing:
/// for tests of what the switch does with unauthenticated frames.
#[derive(Clone, Debug, Default)]
pub struct FrameCodec {
    key: Option<TerminalKey>,
}

impl FrameCodec {
    pub fn with_key(key: TerminalKey) -> FrameCodec {
        FrameCodec { key: Some(key) }
    }

    /// Signs from now on with `key` (the switch, once a terminal has signed on).
    pub fn set_key(&mut self, key: TerminalKey) {
        self.key = Some(key);
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(raw) = next_frame_bytes(src)? else { return Ok(None) };
        let frame = decode_frame(&raw[LENGTH_PREFIX_BYTES..])?;
        if let Some(key) = &self.key {
            let (signed, mac) = raw.split_at(raw.len() - MAC_BYTES);
            let mac: [u8; MAC_BYTES] = mac.try_into().expect("a frame ends with its MAC");
            if !key.verify(signed, &mac) && !(mac == ZERO_MAC && may_be_unsigned(&frame)) {
                return Err(ProtocolError::BadMac { terminal_id: frame.header.terminal_id, stan: frame.header.stan });
            }
        }
        Ok(Some(frame))
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_signed(frame, self.key.as_ref(), dst);
        Ok(())
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_signed(&frame, self.key.as_ref(), dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Sealed, SecretKind};
    use crate::message::{CardReply, Message, Request, Verification};
    use crate::types::{CardNo, CardState};

    fn sale_frame() -> Frame {
        Frame {
            header: Header { flags: 0, terminal_id: 7, stan: 42, local_time: LocalTime(20261122093005) },
            message: Message::Request(Request::Sale {
                card: CardNo(6200000000000001),
                amount_minor: 12_345,
                category: 1,
                flags: 0,
                verification: Verification::NONE,
            }),
        }
    }

    #[test]
    fn a_sale_and_a_hold_with_a_sealed_pin_and_an_override_round_trip() {
        let header = Header { flags: 0, terminal_id: 7, stan: 43, local_time: LocalTime(20261122093005) };
        let verification = Verification {
            pin: Sealed::seal(&key(1), SecretKind::Pin, 7, 43, "123456").unwrap(),
            approver_id: 9,
            approver_passcode: Sealed::seal(&key(1), SecretKind::Passcode, 7, 43, "m4nager").unwrap(),
        };
        let card = CardNo(6200000000000001);
        let sale = Request::Sale { card, amount_minor: 10_000, category: 1, flags: 0, verification };
        let hold = Request::Hold { card, amount_minor: 30_000, category: 3, verification };
        // SPEC §5.6, §5.8: pin, approver_id and approver_passcode follow sale_flags (body
        // offset 18) and category (17).
        for (request, body_bytes, at) in [(sale, 54, 18), (hold, 53, 17)] {
            let frame = Frame { header, message: Message::Request(request) };
            let mut wire = BytesMut::new();
            encode_signed(&frame, Some(&key(1)), &mut wire);
            assert_eq!(wire.len(), LENGTH_PREFIX_BYTES + HEADER_BYTES + body_bytes + MAC_BYTES);
            let body = &wire[LENGTH_PREFIX_BYTES + HEADER_BYTES..wire.len() - MAC_BYTES];
            assert_eq!(body[at..at + 16], verification.pin.0);
            assert_eq!(body[at + 16..at + 20], 9u32.to_be_bytes());
            assert_eq!(body[at + 20..], verification.approver_passcode.0);
            assert!(!wire.windows(6).any(|w| w == b"123456") && !wire.windows(7).any(|w| w == b"m4nager"));

            let inbound = InboundCodec.decode(&mut wire.clone()).unwrap().unwrap();
            assert_eq!(inbound.frame, frame);
            assert!(inbound.verify(&key(1)));
            assert_eq!(FrameCodec::with_key(key(1)).decode(&mut wire.clone()).unwrap(), Some(frame.clone()));
            assert_eq!(decode_frame(&wire[LENGTH_PREFIX_BYTES..]).unwrap(), frame);

            let Message::Request(Request::Sale { verification: got, .. } | Request::Hold { verification: got, .. }) =
                inbound.frame.message
            else {
                panic!("{:?}", inbound.frame)
            };
            let (terminal_id, stan) = (inbound.frame.header.terminal_id, inbound.frame.header.stan);
            assert_eq!(got.pin.open(&key(1), SecretKind::Pin, terminal_id, stan), Ok(Some(b"123456".to_vec())));
            assert_eq!(
                got.approver_passcode.open(&key(1), SecretKind::Passcode, terminal_id, stan),
                Ok(Some(b"m4nager".to_vec()))
            );
            // Under another key the blocks do not open to the secrets.
            assert_ne!(got.pin.open(&key(2), SecretKind::Pin, terminal_id, stan), Ok(Some(b"123456".to_vec())));
        }
    }

    #[test]
    fn a_card_reply_with_every_field_set_round_trips() {
        let reply = CardReply {
            code: ResponseCode::WrongPin,
            state: CardState::Active,
            txn_id: 1,
            amount_minor: 2,
            cash_minor: 3,
            bonus_minor: 4,
            held_minor: 5,
            gross_minor: 6,
            discount_minor: 7,
            points_earned: -8,
            points_balance: 9,
            tier: 10,
            notices: CardReply::KNOWN_NOTICES,
            pin_attempts_left: 11,
            limit_minor: 12,
        };
        let frame = Frame {
            header: Header { flags: 0, terminal_id: 7, stan: 43, local_time: LocalTime(20261122093005) },
            message: Message::Response(Response::Card { request: MsgType::Sale, reply }),
        };
        let mut wire = BytesMut::new();
        encode_signed(&frame, Some(&key(1)), &mut wire);
        // SPEC §5.4: 85 body bytes, limit_minor last.
        assert_eq!(wire.len(), LENGTH_PREFIX_BYTES + HEADER_BYTES + 85 + MAC_BYTES);
        assert_eq!(wire[wire.len() - MAC_BYTES - 8..wire.len() - MAC_BYTES], 12i64.to_be_bytes());
        assert_eq!(FrameCodec::with_key(key(1)).decode(&mut wire).unwrap(), Some(frame));
    }

    #[test]
    fn frames_split_anywhere_reassemble() {
        let mut wire = BytesMut::new();
        encode_frame(&sale_frame(), &mut wire);
        encode_frame(&sale_frame(), &mut wire);
        for cut in 0..wire.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, vec![sale_frame(), sale_frame()], "cut at {cut}");
        }
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let cap = buf.capacity();
        assert!(matches!(FrameCodec::default().decode(&mut buf), Err(ProtocolError::TooLarge { .. })));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn trailing_and_truncated_bodies_are_malformed() {
        let mut wire = BytesMut::new();
        encode_frame(&sale_frame(), &mut wire);
        let body = &wire[LENGTH_PREFIX_BYTES..wire.len() - MAC_BYTES];
        let mac = &wire[wire.len() - MAC_BYTES..];
        let err = decode_frame(&[&body[..body.len() - 1], mac].concat()).unwrap_err();
        assert_eq!(err.code(), ResponseCode::Malformed);
        assert_eq!(err.header_ids(), (7, 42));
        let longer = [body, &[0], mac].concat();
        assert!(matches!(decode_frame(&longer), Err(ProtocolError::Body { problem: BodyError::TrailingBytes(1), .. })));
    }

    #[test]
    fn unknown_type_version_and_flags_are_named() {
        let mut wire = BytesMut::new();
        encode_frame(&sale_frame(), &mut wire);
        let mut body = wire[LENGTH_PREFIX_BYTES..].to_vec();
        body[1] = 0x55;
        assert_eq!(decode_frame(&body).unwrap_err().code(), ResponseCode::UnknownMessageType);
        body[1] = MsgType::Sale as u8;
        body[0] = 9;
        assert_eq!(decode_frame(&body).unwrap_err().code(), ResponseCode::UnsupportedVersion);
        body[0] = PROTOCOL_VERSION;
        body[3] = 0x80;
        assert_eq!(decode_frame(&body).unwrap_err().code(), ResponseCode::Malformed);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic sweep of pseudo-random inputs; the fuzz target covers far more.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_frame(&bytes);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = FrameCodec::default().decode(&mut buf) {}
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = InboundCodec.decode(&mut buf) {}
        }
    }

    fn key(seed: u8) -> TerminalKey {
        TerminalKey::from_bytes([seed; crate::auth::KEY_BYTES])
    }

    #[test]
    fn signed_frames_verify_under_their_key_only() {
        let mut wire = BytesMut::new();
        encode_signed(&sale_frame(), Some(&key(1)), &mut wire);
        let inbound = InboundCodec.decode(&mut wire.clone()).unwrap().unwrap();
        assert_eq!(inbound.frame, sale_frame());
        assert!(inbound.verify(&key(1)));
        assert!(!inbound.verify(&key(2)));
        // Any changed byte, in the header, the body or the MAC, breaks it.
        for i in LENGTH_PREFIX_BYTES..wire.len() {
            let mut bent = wire.clone();
            bent[i] ^= 0x01;
            if let Ok(Some(inbound)) = InboundCodec.decode(&mut bent) {
                assert!(!inbound.verify(&key(1)), "byte {i}");
            }
        }
        let mut unsigned = BytesMut::new();
        encode_frame(&sale_frame(), &mut unsigned);
        assert!(!InboundCodec.decode(&mut unsigned).unwrap().unwrap().verify(&key(1)));
    }

    #[test]
    fn a_keyed_codec_refuses_forged_replies_but_takes_unsigned_auth_declines() {
        let reply = |code| Frame {
            header: Header { flags: 0, terminal_id: 7, stan: 42, local_time: LocalTime(20261122093005) },
            message: Message::Response(Response::Echo { code }),
        };
        let decode = |frame: &Frame, signer: Option<&TerminalKey>| {
            let mut wire = BytesMut::new();
            encode_signed(frame, signer, &mut wire);
            FrameCodec::with_key(key(1)).decode(&mut wire)
        };
        assert!(decode(&reply(ResponseCode::Approved), Some(&key(1))).unwrap().is_some());
        assert!(matches!(decode(&reply(ResponseCode::Approved), Some(&key(2))), Err(ProtocolError::BadMac { .. })));
        assert!(matches!(decode(&reply(ResponseCode::Approved), None), Err(ProtocolError::BadMac { .. })));
        assert!(decode(&reply(ResponseCode::BadMac), None).unwrap().is_some());
        assert!(decode(&reply(ResponseCode::UnknownTerminal), None).unwrap().is_some());
    }
}

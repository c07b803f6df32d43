//! Length-prefixed framing and tokio-util's `Decoder`/`Encoder` for [`Frame`].
//!
//! Layout of every frame (SPEC.md §2):
//! ```text
//! u32 length            bytes that follow (header + body), at most MAX_FRAME_BYTES
//! u8  version           PROTOCOL_VERSION
//! u8  msg_type
//! u16 flags
//! u32 terminal_id
//! u32 stan
//! u64 local_time        YYYYMMDDhhmmss
//! ... body              per message type
//! ```

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::message::{decode_body, encode_body, BodyError, Frame, Header, Reader, KNOWN_FLAGS};
use crate::types::{LocalTime, MsgType, ResponseCode};
use crate::{HEADER_BYTES, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, PROTOCOL_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("declared frame length {declared} exceeds the maximum of {MAX_FRAME_BYTES} bytes")]
    TooLarge { declared: usize },
    #[error("declared frame length {declared} is shorter than the {HEADER_BYTES}-byte header")]
    TooShort { declared: usize },
    #[error("bad frame from terminal {terminal_id} trace {stan}: {problem}")]
    Body { terminal_id: u32, stan: u32, problem: BodyError },
}

impl ProtocolError {
    /// The code an `Error` reply to this problem carries.
    pub fn code(&self) -> ResponseCode {
        match self {
            ProtocolError::Body { problem, .. } => problem.code(),
            _ => ResponseCode::Malformed,
        }
    }

    /// Terminal id and trace number of the offending frame, when its header was readable.
    pub fn header_ids(&self) -> (u32, u32) {
        match self {
            ProtocolError::Body { terminal_id, stan, .. } => (*terminal_id, *stan),
            _ => (0, 0),
        }
    }
}

/// Decodes one frame from `bytes`: header and body, without the length prefix. Pure: never
/// panics and never allocates more than the strings the body declares (each bounded).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, ProtocolError> {
    if bytes.len() < HEADER_BYTES {
        return Err(ProtocolError::TooShort { declared: bytes.len() });
    }
    let mut r = Reader::new(bytes);
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

/// Appends `frame`, length prefix included, to `out`.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0); // patched below, once the body's length is known
    out.put_u8(PROTOCOL_VERSION);
    out.put_u8(frame.message.msg_type() as u8);
    out.put_u16(frame.header.flags);
    out.put_u32(frame.header.terminal_id);
    out.put_u32(frame.header.stan);
    out.put_u64(frame.header.local_time.0);
    encode_body(&frame.message, out);
    let len = out.len() - start - LENGTH_PREFIX_BYTES;
    debug_assert!(len <= MAX_FRAME_BYTES, "every message this crate encodes fits a frame");
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
}

/// The codec both the switch and every client use.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if src.len() < LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        let declared = u32::from_be_bytes(src[..LENGTH_PREFIX_BYTES].try_into().expect("4 bytes")) as usize;
        // Checked before reserving: a hostile prefix never makes us allocate.
        if declared > MAX_FRAME_BYTES {
            return Err(ProtocolError::TooLarge { declared });
        }
        if declared < HEADER_BYTES {
            return Err(ProtocolError::TooShort { declared });
        }
        let total = LENGTH_PREFIX_BYTES + declared;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let frame = decode_frame(&src[LENGTH_PREFIX_BYTES..total]);
        src.advance(total);
        frame.map(Some)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_frame(frame, dst);
        Ok(())
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_frame(&frame, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, Request};
    use crate::types::CardNo;

    fn sale_frame() -> Frame {
        Frame {
            header: Header { flags: 0, terminal_id: 7, stan: 42, local_time: LocalTime(20261122093005) },
            message: Message::Request(Request::Sale {
                card: CardNo(6200000000000001),
                amount_minor: 12_345,
                category: 1,
                flags: 0,
            }),
        }
    }

    #[test]
    fn frames_split_anywhere_reassemble() {
        let mut wire = BytesMut::new();
        encode_frame(&sale_frame(), &mut wire);
        encode_frame(&sale_frame(), &mut wire);
        for cut in 0..wire.len() {
            let mut codec = FrameCodec;
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
        assert!(matches!(FrameCodec.decode(&mut buf), Err(ProtocolError::TooLarge { .. })));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn trailing_and_truncated_bodies_are_malformed() {
        let mut wire = BytesMut::new();
        encode_frame(&sale_frame(), &mut wire);
        let body = &wire[LENGTH_PREFIX_BYTES..];
        let err = decode_frame(&body[..body.len() - 1]).unwrap_err();
        assert_eq!(err.code(), ResponseCode::Malformed);
        assert_eq!(err.header_ids(), (7, 42));
        let mut longer = body.to_vec();
        longer.push(0);
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
            while let Ok(Some(_)) = FrameCodec.decode(&mut buf) {}
        }
    }
}

//! Feeds arbitrary bytes to the frame decoders and checks what they make of them.
//!
//! Shared by the `frame_decoder` fuzz target (`fuzz/`) and `tests/fuzz_inputs.rs`: each
//! includes this file with `#[path]`, so the checks are compiled into both and the protocol
//! crate carries no code only tests use.
//!
//! What is checked, for any input:
//! - `decode_frame` (on the input, and on the input less a 4-byte length prefix) and the three
//!   stream decoders (`FrameCodec` without and with a key, `InboundCodec`) never panic;
//! - a frame that decodes re-encodes to the bytes it was decoded from (all but its MAC, which
//!   is not part of a `Frame`), decodes again to itself, can be described, and once signed
//!   verifies under its key and no other;
//! - a stream decoder gives the same frames and the same error whether the bytes arrive all at
//!   once, one at a time or in arbitrary chunks; it takes exactly the bytes of each frame off
//!   its buffer, and a declared length never makes it reserve more than one largest frame.

#![allow(dead_code)]

use bytes::BytesMut;
use protocol::auth::KEY_BYTES;
use protocol::describe::describe;
use protocol::{
    decode_frame, encode_frame, encode_signed, Frame, FrameCodec, InboundCodec, TerminalKey, LENGTH_PREFIX_BYTES,
    MAC_BYTES, MAX_FRAME_BYTES,
};
use tokio_util::codec::Decoder;

/// Counts of what an input reached, so tests can see that inputs decode, not only fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames decoded (by `decode_frame` and by the stream decoders, whole-buffer pass).
    pub frames: usize,
    /// Inputs whose stream ended in an error.
    pub errors: usize,
}

/// The key the keyed decoder checks MACs with, and a different one.
fn key() -> TerminalKey {
    TerminalKey::from_bytes(std::array::from_fn(|i| 0x5a ^ i as u8))
}

fn other_key() -> TerminalKey {
    TerminalKey::from_bytes([0xa5; KEY_BYTES])
}

/// Runs every check on `data`; `Err` says which one failed.
pub fn check_bytes(data: &[u8]) -> Result<Stats, String> {
    let mut stats = Stats::default();
    for body in [data, data.get(LENGTH_PREFIX_BYTES..).unwrap_or(&[])] {
        if let Ok(frame) = decode_frame(body) {
            stats.frames += 1;
            let mut raw = BytesMut::new();
            raw.extend_from_slice(&(body.len() as u32).to_be_bytes());
            raw.extend_from_slice(body);
            check_frame(&frame, &raw).map_err(|e| format!("decode_frame: {e}"))?;
        }
    }
    let decoders: [(&str, MakeDecoder); 3] = [
        ("FrameCodec", || Decoded::Plain(FrameCodec::default())),
        ("FrameCodec with a key", || Decoded::Plain(FrameCodec::with_key(key()))),
        ("InboundCodec", || Decoded::Inbound(InboundCodec)),
    ];
    for (name, make) in decoders {
        let whole = decode_stream(make(), data, &[data.len().max(1)]).map_err(|e| format!("{name}, whole: {e}"))?;
        let bytewise = decode_stream(make(), data, &[1]).map_err(|e| format!("{name}, byte by byte: {e}"))?;
        let chunked = decode_stream(make(), data, &chunk_sizes(data)).map_err(|e| format!("{name}, chunked: {e}"))?;
        for (how, other) in [("byte by byte", &bytewise), ("in chunks", &chunked)] {
            if *other != whole {
                return Err(format!("{name}: {how} gives {other:?}, all at once {whole:?}"));
            }
        }
        stats.frames += whole.frames.len();
        stats.errors += usize::from(whole.error.is_some());
    }
    Ok(stats)
}

/// Checks a frame decoded from `raw` (length prefix, header, body, MAC).
fn check_frame(frame: &Frame, raw: &[u8]) -> Result<(), String> {
    let mut again = BytesMut::new();
    encode_frame(frame, &mut again);
    let unsigned = |b: &[u8]| b.len().checked_sub(MAC_BYTES).map(|end| b[..end].to_vec());
    if again.len() != raw.len() || unsigned(&again) != unsigned(raw) {
        return Err(format!("{frame:?} re-encodes to {:02x?}, decoded from {raw:02x?}", &again[..]));
    }
    match decode_frame(&again[LENGTH_PREFIX_BYTES..]) {
        Ok(decoded) if decoded == *frame => {}
        other => return Err(format!("{frame:?} re-encoded decodes to {other:?}")),
    }
    let _ = describe(frame);
    let mut signed = BytesMut::new();
    encode_signed(frame, Some(&key()), &mut signed);
    let inbound = InboundCodec.decode(&mut signed.clone()).map_err(|e| format!("signed {frame:?}: {e}"))?;
    let inbound = inbound.ok_or_else(|| format!("signed {frame:?} is incomplete"))?;
    if inbound.frame != *frame || !inbound.verify(&key()) || inbound.verify(&other_key()) {
        return Err(format!("signed {frame:?} does not verify under its key alone"));
    }
    Ok(())
}

/// Makes a fresh stream decoder, one per pass over the input.
type MakeDecoder = fn() -> Decoded;

/// A decoded frame, with the MAC it carried when the decoder hands that over.
type Received = (Frame, Option<[u8; MAC_BYTES]>);

/// A stream decoder under test.
enum Decoded {
    Plain(FrameCodec),
    /// The switch's decoder, which hands the MAC over with the frame.
    Inbound(InboundCodec),
}

impl Decoded {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Received>, String> {
        match self {
            Decoded::Plain(codec) => codec.decode(buf).map(|f| f.map(|f| (f, None))).map_err(|e| e.to_string()),
            Decoded::Inbound(codec) => {
                codec.decode(buf).map(|f| f.map(|i| (i.frame.clone(), Some(i.mac())))).map_err(|e| e.to_string())
            }
        }
    }
}

/// What a stream decoder made of a byte stream: frames, each with where it lay in the stream,
/// then the error that stopped it, if any (a connection closes on the first error).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<(Frame, usize, usize)>,
    error: Option<String>,
}

/// Feeds `data` to `decoder` in chunks of the sizes `sizes` gives (cycled), decoding all it can
/// after each chunk, as a connection's reader does.
fn decode_stream(mut decoder: Decoded, data: &[u8], sizes: &[usize]) -> Result<Outcome, String> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut taken = 0;
    let mut frames = Vec::new();
    let mut chunk = sizes.iter().copied().cycle();
    loop {
        let end = (fed + chunk.next().unwrap_or(1).max(1)).min(data.len());
        buf.extend_from_slice(&data[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some((frame, mac))) => {
                    let used = before - buf.len();
                    let raw = &data[taken..taken + used];
                    check_frame(&frame, raw).map_err(|e| format!("frame at {taken}: {e}"))?;
                    if mac.is_some_and(|mac| raw[raw.len() - MAC_BYTES..] != mac) {
                        return Err(format!("frame at {taken}: the MAC handed over is not the frame's"));
                    }
                    frames.push((frame, taken, taken + used));
                    taken += used;
                }
                Ok(None) if buf.len() != before => return Err("an incomplete frame changed the buffer".into()),
                Ok(None) => break,
                Err(error) => return Ok(Outcome { frames, error: Some(error) }),
            }
        }
        // A declared length is checked before anything is reserved for it: the buffer never
        // needs more than what arrived or one largest frame (Vec-style growth may double it).
        let bound = 2 * (fed - taken).max(LENGTH_PREFIX_BYTES + MAX_FRAME_BYTES) + 64;
        if buf.capacity() > bound {
            return Err(format!("the buffer grew to {} bytes for {} unread", buf.capacity(), fed - taken));
        }
        if fed >= data.len() {
            break;
        }
    }
    Ok(Outcome { frames, error: None })
}

/// Chunk sizes from 1 to 64 drawn from a generator seeded with the input's hash: arbitrary,
/// yet the same for the same input.
fn chunk_sizes(data: &[u8]) -> Vec<usize> {
    let mut state =
        data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    (0..16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 64) as usize + 1
        })
        .collect()
}

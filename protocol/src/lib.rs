//! The cardswitch wire format: framing, header, messages and their codec.
//!
//! `SPEC.md` next to this crate is normative; this code implements it. Every integer on the
//! wire is big-endian and fixed width; amounts are signed 64-bit integers of minor units (fen).

pub mod auth;
pub mod codec;
pub mod describe;
pub mod message;
pub mod types;

#[cfg(feature = "client")]
pub mod client;

pub use auth::{Credential, Sealed, SecretKind, TerminalKey, MAC_BYTES};
pub use codec::{decode_frame, encode_frame, encode_signed, FrameCodec, Inbound, InboundCodec, ProtocolError};
pub use message::{
    BatchTotals, BatchTotalsReply, CardReply, Frame, Header, HistoryEntry, HistoryReply, ImportRangeReply, MemberData,
    MemberReply, Message, MsgType, OperatorAuth, OperatorReply, ProductReply, RegisterMember, Request, Response,
    SignOnReply, TerminalReply, Verification,
};
pub use types::{
    AdminAction, AdminFlags, CardNo, CardState, Category, IdType, LocalTime, OperatorRole, PaymentMethod, PostingKind,
    ResponseCode, SaleFlags, TerminalRole,
};

/// The protocol version this crate speaks (header byte 0).
pub const PROTOCOL_VERSION: u8 = 2;
/// Bytes of the length prefix in front of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Bytes of the fixed header that starts every frame after the length prefix.
pub const HEADER_BYTES: usize = 20;
/// Largest value the length prefix may declare (header + body). Anything larger is refused
/// before a single byte of it is buffered.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Longest error text carried by an `Error` response, in bytes of UTF-8.
pub const MAX_ERROR_TEXT_BYTES: usize = 255;
/// Largest amount any single message may carry: 10,000,000,000.00 yuan in fen. Keeps every sum
/// of a day's amounts far from i64 overflow.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;
/// Most card numbers one range import may create.
pub const MAX_RANGE_CARDS: u64 = 10_000_000;

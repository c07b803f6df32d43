//! cardswitch: a transaction switch for stored-value and membership cards.
//!
//! `engine` decides (pure, deterministic), `partition` applies and persists in group commits,
//! `store` is RocksDB, `server` moves frames. See `docs/design.md`.

pub mod backup;
pub mod config;
pub mod control;
pub mod coordinator;
pub mod days;
pub mod demo;
pub mod demo_day;
pub mod journal_cmd;
pub mod keys;
pub mod metrics;
pub mod operators;
pub mod partition;
pub mod server;
pub mod settle;
pub mod store;

/// The card rules live in their own crate, which has no IO at all (no RocksDB, no sockets, no
/// clock), so that fuzzing and property tests build them alone.
pub use engine;

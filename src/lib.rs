//! cardswitch: a transaction switch for stored-value and membership cards.
//!
//! `engine` decides (pure, deterministic), `partition` applies and persists in group commits,
//! `store` is RocksDB, `server` moves frames. See `docs/design.md`.

pub mod demo;
pub mod engine;
pub mod partition;
pub mod server;
pub mod store;

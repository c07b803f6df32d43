//! The pure parts of `chaos`, the crash tester: what the seed decides ([`plan`]: when each
//! SIGKILL comes, how a terminal resolves a request left without an answer, which request it
//! sends next), reading the journal the switch prints ([`journal`]), and checking what the
//! terminals were told against the journal and the balances ([`verify`]).
//!
//! The binary (`src/bin/chaos.rs`) does the process control and the network; everything here
//! is deterministic and tested on synthetic inputs.

pub mod journal;
pub mod plan;
pub mod verify;

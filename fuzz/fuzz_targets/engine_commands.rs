//! Arbitrary bytes read as an opening state and a sequence of card commands, applied to the
//! engine with every invariant checked after every command, then replayed from scratch and
//! with eviction and restarts; the checks are in `engine/tests/support/engine_check.rs`,
//! shared with the engine's tests.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../engine/tests/support/engine_check.rs"]
mod engine_check;

fuzz_target!(|data: &[u8]| {
    let (opening, ops) = engine_check::input_from_bytes(data);
    if let Err(problem) = engine_check::check_ops(&opening, &ops) {
        panic!("{problem}");
    }
});

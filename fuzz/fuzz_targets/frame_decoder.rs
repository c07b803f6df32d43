//! Arbitrary bytes into `decode_frame` and the stream decoders; the checks are in
//! `protocol/tests/support/frame_check.rs`, shared with the protocol's tests.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../protocol/tests/support/frame_check.rs"]
mod frame_check;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = frame_check::check_bytes(data) {
        panic!("{problem}");
    }
});

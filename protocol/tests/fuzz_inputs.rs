//! The `frame_decoder` fuzz target's checks (`support/frame_check.rs`) over fixed inputs, so
//! every test run exercises them without cargo-fuzz: every golden frame in `vectors/`, alone,
//! concatenated, cut short and with bytes changed, and byte strings from a seeded generator.

#[path = "support/frame_check.rs"]
mod frame_check;

use std::fs;
use std::path::PathBuf;

use frame_check::check_bytes;

/// The bytes of every `vectors/*.hex` file (`#` comment lines and whitespace ignored).
fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let mut found: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "hex"))
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let digits: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with('#'))
                .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
                .collect();
            let bytes = (0..digits.len() / 2).map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).unwrap());
            (path.file_stem().unwrap().to_string_lossy().into_owned(), bytes.collect())
        })
        .collect();
    found.sort();
    found
}

#[test]
fn golden_frames_whole_cut_and_bent() {
    let vectors = vectors();
    assert!(vectors.len() > 20, "vectors/ holds the golden frames");
    let mut frames = 0;
    for (name, wire) in &vectors {
        let stats = check_bytes(wire).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Each decodes whole: once by decode_frame (after the prefix), once per stream decoder
        // but the keyed one, which refuses the unsigned frames.
        assert!(stats.frames >= 3, "{name}: {stats:?}");
        frames += stats.frames;
        for cut in 0..wire.len() {
            check_bytes(&wire[..cut]).unwrap_or_else(|e| panic!("{name} cut at {cut}: {e}"));
        }
        for at in 0..wire.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bent = wire.clone();
                bent[at] ^= flip;
                check_bytes(&bent).unwrap_or_else(|e| panic!("{name} byte {at} ^ {flip:#x}: {e}"));
            }
        }
    }
    let all: Vec<u8> = vectors.iter().flat_map(|(_, wire)| wire.iter().copied()).collect();
    let stats = check_bytes(&all).unwrap();
    // All of them through the unkeyed decoders; the keyed one stops at the first frame not
    // signed with its key.
    assert!(stats.frames >= 2 * vectors.len(), "{stats:?} for {} frames in one stream", vectors.len());
    assert!(frames > 0);
}

#[test]
fn hostile_prefixes_and_seeded_bytes() {
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 4],
        vec![0, 0, 0x40, 0x01],
        vec![0, 0, 0x40, 0x00],
        vec![0, 0, 0, 0],
        vec![0, 0, 0, 35],
        [&[0, 0, 0, 36][..], &[1; 36][..]].concat(),
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for len in [1, 7, 20, 36, 37, 60, 200, 1_000, 5_000] {
        for _ in 0..8 {
            inputs.push(
                (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect(),
            );
        }
    }
    for input in &inputs {
        check_bytes(input).unwrap_or_else(|e| panic!("{:02x?}: {e}", &input[..input.len().min(64)]));
    }
}

//! Segment file decoding. The input is split into a vectors file and an ids file; their
//! checksums are fixed up first, so the fuzzer reaches the header and body parsers behind them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quiver_storage::segment::decode_segment_bytes;
use quiver_storage::types::SegmentId;

fn seal(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() >= 8 {
        let n = f.len() - 8;
        let crc = crc32(&f[..n]);
        f[n..n + 4].copy_from_slice(&crc.to_le_bytes());
        f[n + 4..].copy_from_slice(b"QEND");
    }
    f
}

fn crc32(b: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), the same as crc32fast computes.
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let dim = (data[0] % 16) as usize + 1;
    let split = (data[1] as usize * 4).min(data.len() - 2);
    let (v, i) = data[2..].split_at(split);
    let _ = decode_segment_bytes(&seal(v.to_vec()), &seal(i.to_vec()), SegmentId(1), dim);
});

//! WAL record decoding: never panics on any bytes, and what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quiver_storage::wal::WalOp;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = WalOp::decode(data) {
        assert_eq!(op.encode(), data, "a decoded record re-encodes differently");
    }
});

//! The request-smuggling watch (proxy/src/http/framing.rs) on hostile client bytes: it never
//! panics, never buffers past its bound, and its verdict does not depend on how the bytes were
//! split into reads (a client controls the splits).
#![no_main]
use ferry_proxy::http::ambiguous_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let whole = ambiguous_request([bytes]);
    // Pieces of 1..=16 bytes, sized by the seed.
    let size = usize::from(seed % 16) + 1;
    assert_eq!(
        ambiguous_request(bytes.chunks(size)),
        whole,
        "pieces of {size}"
    );
    let cut = usize::from(seed).min(bytes.len());
    let (a, b) = bytes.split_at(cut);
    assert_eq!(ambiguous_request([a, b]), whole, "split at {cut}");
});

//! The direct HTTP/1.1 client's chunked decoder (proxy/src/cluster/h1/chunked.rs) on hostile
//! upstream bytes: it never panics, and what it makes of a body (the data, the trailers, where
//! the body ends, whether it is refused) does not depend on how the bytes were split into reads
//! (the network decides the splits).
#![no_main]
use bytes::BytesMut;
use ferry_proxy::cluster::{ChunkedDecoder, Decoded};
use libfuzzer_sys::fuzz_target;

/// What the decoder made of a body.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It ended: its data, its trailers, and how many bytes it took (the rest, the next
    /// response's, stays in the buffer).
    Ended {
        data: Vec<u8>,
        trailers: Option<Vec<(String, Vec<u8>)>>,
        length: usize,
    },
    /// The bytes ran out first: the data so far.
    Unfinished {
        data: Vec<u8>,
    },
    Refused,
}

/// Feeds `pieces` to one decoder in turn, as reads would, until the body ends or is refused.
fn decode<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut data = Vec::new();
    let mut trailers = None;
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Decoded::Data(d))) => {
                    assert!(!d.is_empty(), "an empty data frame");
                    data.extend_from_slice(&d);
                }
                Ok(Some(end @ (Decoded::Trailers(_) | Decoded::End))) => {
                    if let Decoded::Trailers(t) = end {
                        trailers = Some(
                            t.iter()
                                .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                                .collect(),
                        );
                    }
                    // Once ended, it stays ended and takes nothing more.
                    let left = buf.len();
                    assert!(matches!(decoder.decode(&mut buf), Ok(Some(Decoded::End))));
                    assert_eq!(buf.len(), left, "bytes taken after the end");
                    return Outcome::Ended {
                        data,
                        trailers,
                        length: fed - buf.len(),
                    };
                }
                Ok(None) => break,
                Err(_) => return Outcome::Refused,
            }
        }
    }
    Outcome::Unfinished { data }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let whole = decode([bytes]);
    // Pieces of 1..=16 bytes, sized by the seed, and one cut anywhere.
    let size = usize::from(seed % 16) + 1;
    assert_eq!(decode(bytes.chunks(size)), whole, "pieces of {size}");
    let cut = usize::from(seed).min(bytes.len());
    let (a, b) = bytes.split_at(cut);
    assert_eq!(decode([a, b]), whole, "split at {cut}");
});

//! Where a parsed HTTP/1.1 head's fields lie in its buffer. httparse's views borrow the buffer,
//! which the parsers then split off and freeze, so they keep offsets and slice the frozen head
//! afterwards: the downstream server's request heads (`h1_server/request.rs`) and the upstream
//! client's response heads (`cluster/h1/head.rs`).
use std::ops::Range;

use smallvec::SmallVec;

/// A part of a head, as offsets into it.
#[derive(Clone, Copy, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Where `part`, a slice of `base`, lies in it.
    pub fn of(base: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize - base.as_ptr() as usize) as u32;
        Span {
            start,
            end: start + part.len() as u32,
        }
    }

    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Each field's name and value. On the stack for as many fields as either parser takes, and
/// only the slots used are written: zeroing fixed arrays of 100–128 slots cost a 1.6–2 KB
/// `memset` per message, with its cache misses (cachegrind).
pub type FieldSpans = SmallVec<[(Span, Span); 128]>;

/// The spans of `fields`, parsed from `base`, to extend a caller's [`FieldSpans`] with (returned
/// whole, the 2 KB vector was copied twice more per message).
pub fn field_spans<'a>(
    base: &'a [u8],
    fields: &'a [httparse::Header<'_>],
) -> impl Iterator<Item = (Span, Span)> + 'a {
    fields
        .iter()
        .map(move |f| (Span::of(base, f.name.as_bytes()), Span::of(base, f.value)))
}

//! An incremental decoder of chunked transfer coding (RFC 9112 §7.1) for the direct upstream
//! client. It is as strict as hyper's: CRLF line ends, at most 16 hex digits of size, chunk
//! extensions up to 16 KiB per body, and trailers up to 16 KiB and 100 fields. Data comes out as
//! views of the read buffer, without a copy.
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Hex digits accepted in a chunk size (a u64).
const MAX_SIZE_DIGITS: usize = 16;
/// Chunk-extension bytes accepted over a whole body (hyper's limit).
const MAX_EXTENSION_BYTES: usize = 16 * 1024;
/// The longest chunk-size line taken (without its LF): the digits, CR, and extensions. A longer
/// one is refused whether its LF has come yet or not, so that the verdict does not depend on how
/// the bytes were split into reads (found while writing the `http1_chunked` fuzz target's
/// check: a size followed by 20,000 spaces was taken whole and refused in pieces).
const MAX_SIZE_LINE: usize = MAX_SIZE_DIGITS + 2 + MAX_EXTENSION_BYTES;
/// The trailer section's limits (hyper's).
const MAX_TRAILER_BYTES: usize = 16 * 1024;
const MAX_TRAILER_FIELDS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    SizeLine,
    #[error("chunk size over {MAX_SIZE_DIGITS} hex digits")]
    SizeTooLong,
    #[error("chunk extensions over {MAX_EXTENSION_BYTES} bytes")]
    ExtensionsTooLong,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("trailers over {MAX_TRAILER_BYTES} bytes or {MAX_TRAILER_FIELDS} fields")]
    TrailersTooLarge,
    #[error("malformed trailers")]
    Trailers,
}

/// What one call of [`ChunkedDecoder::decode`] found.
#[derive(Debug)]
pub enum Decoded {
    Data(Bytes),
    /// The trailer section; the body is complete.
    Trailers(HeaderMap),
    /// The body is complete (after the last chunk, or after its trailers).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, with this many data bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section (maybe empty) and its CRLF.
    Trailers,
    End,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    extension_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size,
            extension_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Decodes what `buf` holds, taking what it consumes off the front. `Ok(None)`: more bytes
    /// are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let line_end = buf.iter().take(MAX_SIZE_LINE + 1).position(|&b| b == b'\n');
                    let Some(line_end) = line_end else {
                        if buf.len() > MAX_SIZE_LINE {
                            return Err(ChunkError::ExtensionsTooLong);
                        }
                        return Ok(None);
                    };
                    let size = self.size_line(&buf[..line_end])?;
                    buf.advance(line_end + 1);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(Decoded::Data(buf.split_to(n).freeze())));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(ChunkError::DataEnd);
                        }
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::DataEnd);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => return self.trailers(buf),
                State::End => return Ok(Some(Decoded::End)),
            }
        }
    }

    /// Parses `size [ws] [; extensions] CR` (the line without its LF).
    fn size_line(&mut self, line: &[u8]) -> Result<u64, ChunkError> {
        let Some((&b'\r', line)) = line.split_last() else {
            return Err(ChunkError::SizeLine);
        };
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(ChunkError::SizeLine);
        }
        if digits > MAX_SIZE_DIGITS {
            return Err(ChunkError::SizeTooLong);
        }
        let mut size: u64 = 0;
        for &b in &line[..digits] {
            // Cannot overflow: at most 16 hex digits.
            size = (size << 4) | u64::from(hex_value(b));
        }
        let rest = &line[digits..];
        let rest = &rest[rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count()..];
        match rest.first() {
            None => Ok(size),
            Some(b';') => {
                // Extensions are ignored, but bounded, and may not hide a bare CR.
                if rest.contains(&b'\r') {
                    return Err(ChunkError::SizeLine);
                }
                self.extension_bytes += rest.len();
                if self.extension_bytes > MAX_EXTENSION_BYTES {
                    return Err(ChunkError::ExtensionsTooLong);
                }
                Ok(size)
            }
            Some(_) => Err(ChunkError::SizeLine),
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ChunkError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        if &buf[..2] == b"\r\n" {
            buf.advance(2);
            self.state = State::End;
            return Ok(Some(Decoded::End));
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > MAX_TRAILER_BYTES {
                return Err(ChunkError::TrailersTooLarge);
            }
            return Ok(None);
        };
        let len = end + 4;
        if len > MAX_TRAILER_BYTES {
            return Err(ChunkError::TrailersTooLarge);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let parsed = match httparse::parse_headers(&buf[..len], &mut fields) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            Err(httparse::Error::TooManyHeaders) => return Err(ChunkError::TrailersTooLarge),
            _ => return Err(ChunkError::Trailers),
        };
        let mut trailers = HeaderMap::with_capacity(parsed.len());
        for f in parsed.iter() {
            let name =
                HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| ChunkError::Trailers)?;
            let value = HeaderValue::from_bytes(f.value).map_err(|_| ChunkError::Trailers)?;
            trailers.append(name, value);
        }
        buf.advance(len);
        self.state = State::End;
        Ok(Some(Decoded::Trailers(trailers)))
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at `at`, collecting the data and trailers, or the first error; the
    /// count is of the bytes left after the body.
    fn run(input: &[u8], at: usize) -> Result<(Vec<u8>, Option<HeaderMap>, usize), ChunkError> {
        let mut d = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&input[..at]);
        let mut rest = &input[at..];
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match d.decode(&mut buf)? {
                Some(Decoded::Data(b)) => data.extend_from_slice(&b),
                Some(Decoded::Trailers(t)) => trailers = Some(t),
                Some(Decoded::End) => return Ok((data, trailers, buf.len() + rest.len())),
                None if rest.is_empty() => panic!("decoder wants more than the whole input"),
                None => {
                    buf.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
    }

    #[test]
    fn every_split_point_decodes_the_same() {
        let input =
            b"5\r\nhello\r\n6;ext=1 \r\n world\r\n0\r\nGrpc-Status: 0\r\nX-T: y\r\n\r\nNEXT";
        for at in 0..input.len() {
            let (data, trailers, left) = run(input, at).unwrap();
            assert_eq!(data, b"hello world", "split at {at}");
            let t = trailers.unwrap();
            assert_eq!(t["grpc-status"], "0");
            assert_eq!(t["x-t"], "y");
            assert_eq!(left, 4, "what follows the body stays in the buffer");
        }
    }

    #[test]
    fn a_body_without_trailers_ends_at_the_empty_line() {
        let (data, trailers, left) = run(b"A \t\r\n0123456789\r\n0\r\n\r\n", 3).unwrap();
        assert_eq!(data, b"0123456789");
        assert!(trailers.is_none());
        assert_eq!(left, 0);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for input in [
            &b"x\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(
                run(input, input.len()).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES + 1));
        long_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(matches!(
            run(&long_ext, long_ext.len()),
            Err(ChunkError::ExtensionsTooLong)
        ));
        // No line end in sight: refused once the limit is passed, not buffered forever.
        let mut d = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&vec![b'1'; 1][..]);
        buf.extend_from_slice(&[b';'; MAX_EXTENSION_BYTES + 32]);
        assert!(d.decode(&mut buf).is_err());

        let mut trailers = b"0\r\n".to_vec();
        for i in 0..=MAX_TRAILER_FIELDS {
            trailers.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        trailers.extend_from_slice(b"\r\n");
        assert!(matches!(
            run(&trailers, trailers.len()),
            Err(ChunkError::TrailersTooLarge)
        ));
    }

    #[test]
    fn a_size_line_is_bounded_whether_its_end_has_come_or_not() {
        // Whitespace after the size is allowed, but not without bound: past the line limit the
        // body is refused, fed whole or a byte at a time.
        let mut input = b"1".to_vec();
        input.extend(std::iter::repeat_n(b' ', MAX_SIZE_LINE));
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(run(&input, input.len()).is_err(), "taken whole");
        assert!(run(&input, 1).is_err(), "taken in two reads");
        // At the limit, it is taken either way.
        let mut input = b"1".to_vec();
        input.extend(std::iter::repeat_n(b' ', MAX_SIZE_LINE - 2));
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(run(&input, input.len()).unwrap().0, b"x");
        assert_eq!(run(&input, 1).unwrap().0, b"x");
    }

    #[test]
    fn sixteen_hex_digits_are_the_limit() {
        let mut d = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
        match d.decode(&mut buf).unwrap() {
            Some(Decoded::Data(b)) => assert_eq!(&b[..], b"ab"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.state, State::Data(u64::MAX - 2));
    }
}

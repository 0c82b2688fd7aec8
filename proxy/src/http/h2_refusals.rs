//! Counting the HTTP/2 streams the proxy refuses. The HTTP/2 layer (h2) answers a stream opened
//! past `maxConcurrentStreams` with RST_STREAM REFUSED_STREAM on its own and reports it nowhere,
//! so the frames the proxy writes to an HTTP/2 client are scanned for it: a 9-byte header per
//! frame, payloads skipped, four bytes read only for RST_STREAM.
use prometheus::IntCounter;

const RST_STREAM: u8 = 0x3;
const REFUSED_STREAM: u32 = 0x7;

/// Where the scan is in the stream of frames the proxy writes.
#[derive(Debug)]
enum Scan {
    /// Collecting a frame header.
    Header { buf: [u8; 9], have: usize },
    /// Skipping the rest of a frame's payload.
    Skip(usize),
    /// Collecting an RST_STREAM error code.
    ResetCode { buf: [u8; 4], have: usize },
}

impl Scan {
    /// At the start of the next frame.
    fn next_frame() -> Scan {
        Scan::Header {
            buf: [0; 9],
            have: 0,
        }
    }
}

#[derive(Debug)]
pub struct RefusedStreams {
    scan: Scan,
    refused: IntCounter,
}

impl RefusedStreams {
    pub fn new(refused: IntCounter) -> RefusedStreams {
        RefusedStreams {
            scan: Scan::next_frame(),
            refused,
        }
    }

    /// Follows `bytes`, the next bytes written to the client.
    pub fn written(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.scan {
                Scan::Skip(left) => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.scan = Scan::next_frame();
                    }
                }
                Scan::Header { buf, have } => {
                    let n = (9 - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 9 {
                        let len = usize::from(buf[0]) << 16
                            | usize::from(buf[1]) << 8
                            | usize::from(buf[2]);
                        self.scan = if buf[3] == RST_STREAM && len == 4 {
                            Scan::ResetCode {
                                buf: [0; 4],
                                have: 0,
                            }
                        } else if len == 0 {
                            Scan::next_frame()
                        } else {
                            Scan::Skip(len)
                        };
                    }
                }
                Scan::ResetCode { buf, have } => {
                    let n = (4 - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 4 {
                        if u32::from_be_bytes(*buf) == REFUSED_STREAM {
                            self.refused.inc();
                        }
                        self.scan = Scan::next_frame();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, 0]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn refused_stream_resets_are_counted_however_the_writes_are_split() {
        let mut bytes = frame(0x4, 0, &[0, 3, 0, 0, 0, 2]); // SETTINGS
        bytes.extend(frame(0x1, 1, b"\x88")); // HEADERS
        bytes.extend(frame(RST_STREAM, 5, &REFUSED_STREAM.to_be_bytes()));
        bytes.extend(frame(0x0, 1, &[0; 300])); // DATA
        bytes.extend(frame(RST_STREAM, 7, &0x8u32.to_be_bytes())); // CANCEL: not counted
        bytes.extend(frame(RST_STREAM, 9, &REFUSED_STREAM.to_be_bytes()));
        for size in [1, 2, 5, 9, 13, bytes.len()] {
            let counter = IntCounter::new("refused", "test").expect("counter");
            let mut scan = RefusedStreams::new(counter.clone());
            for piece in bytes.chunks(size) {
                scan.written(piece);
            }
            assert_eq!(counter.get(), 2, "writes of {size} bytes");
        }
    }
}

//! The `Date` response field (RFC 9110 §6.6.1), which a server must send and hyper's server adds:
//! formatted once per second per worker thread, not once per response.
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// "Sun, 06 Nov 1994 08:49:37 GMT".
const DATE_LEN: usize = 29;

struct Cached {
    second: u64,
    text: [u8; DATE_LEN],
}

thread_local! {
    static CACHED: RefCell<Cached> = const {
        RefCell::new(Cached { second: u64::MAX, text: [0; DATE_LEN] })
    };
}

/// Appends `date: <now>\r\n`.
pub fn append(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == DATE_LEN {
                cached.text.copy_from_slice(text.as_bytes());
                cached.second = second;
            }
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&cached.text);
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_an_imf_fixdate() {
        let mut out = Vec::new();
        super::append(&mut out);
        let line = std::str::from_utf8(&out).unwrap();
        let value = line
            .strip_prefix("date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        assert!(httpdate::parse_http_date(value).is_ok(), "{line:?}");
        assert!(value.ends_with(" GMT"));
    }
}

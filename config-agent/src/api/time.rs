//! Timestamps as the App Mesh API and the AWS CLI write them: epoch seconds on the wire,
//! ISO 8601 (`2026-11-22T02:31:06.123Z`) in resource files, and SigV4's `20261122T023106Z`.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_api::civil_time::{CivilTime, days_from_civil};

/// Seconds since the epoch, with milliseconds.
pub fn epoch_secs(t: SystemTime) -> f64 {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    // Millisecond precision, as App Mesh's metadata has.
    (ms as f64) / 1000.0
}

pub fn from_epoch_secs(secs: f64) -> Option<SystemTime> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs))
}

fn civil(t: SystemTime) -> CivilTime {
    CivilTime::from_unix(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// `2026-11-22T02:31:06.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.nanos / 1_000_000
    )
}

/// SigV4's `X-Amz-Date` form, `20261122T023106Z`.
pub fn amz_date(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn from_fields(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<SystemTime> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Parses `20261122T023106Z`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let f = |a: usize, z: usize| s.get(a..z).and_then(num);
    from_fields(
        f(0, 4)?,
        f(4, 6)?,
        f(6, 8)?,
        f(9, 11)?,
        f(11, 13)?,
        f(13, 15)?,
    )
}

/// Parses ISO 8601 as the AWS CLI prints it: `2026-11-22T02:31:06.123000+00:00`, `…Z`, with or
/// without fractions, with any `±HH:MM` offset.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let date = s.get(0..10)?;
    let mut it = date.split('-');
    let (y, mo, d) = (num(it.next()?)?, num(it.next()?)?, num(it.next()?)?);
    let rest = s.get(10..)?;
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let (h, mi, sec) = (
        num(rest.get(0..2)?)?,
        num(rest.get(3..5)?)?,
        num(rest.get(6..8)?)?,
    );
    let mut tail = rest.get(8..)?;
    let mut frac = 0.0;
    if let Some(f) = tail.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        frac = format!("0.{}", f.get(..n)?).parse().ok()?;
        tail = f.get(n..)?;
    }
    let offset = match tail {
        "" | "Z" | "z" => 0,
        t => {
            let sign = match t.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let t = t.get(1..)?.replace(':', "");
            sign * (num(t.get(0..2)?)? * 3600 + num(t.get(2..4)?)? * 60)
        }
    };
    let base = from_fields(y, mo, d, h, mi, sec)?;
    let base = if offset >= 0 {
        base.checked_sub(Duration::from_secs(offset.unsigned_abs()))?
    } else {
        base.checked_add(Duration::from_secs(offset.unsigned_abs()))?
    };
    base.checked_add(Duration::from_secs_f64(frac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_833_066_123);
        assert_eq!(iso8601(t), "2026-11-28T02:31:06.123Z");
        assert_eq!(parse_iso8601(&iso8601(t)), Some(t));
        assert_eq!(amz_date(t), "20261128T023106Z");
        assert_eq!(
            parse_amz_date("20261128T023106Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_833_066))
        );
        assert_eq!(
            parse_iso8601("2026-11-28T04:31:06.123000+02:00"),
            Some(t),
            "AWS CLI form with an offset"
        );
        assert_eq!(parse_iso8601("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_amz_date("2026-11-27"), None);
    }
}

//! UTC calendar dates from Unix time and back (Howard Hinnant's `civil_from_days` and
//! `days_from_civil`, proleptic Gregorian). Shared by the proxy's access-log times and the
//! agent's API timestamps; std has no calendar and one pair of functions does not justify a crate.
use std::time::Duration;

/// A UTC calendar time at or after 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: u64,
    pub month: u64,
    pub day: u64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    pub nanos: u32,
}

impl CivilTime {
    pub fn from_unix(since_epoch: Duration) -> CivilTime {
        let secs = since_epoch.as_secs();
        let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
        // civil_from_days for days >= 0, with eras of 400 years from 0000-03-01.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        CivilTime {
            year,
            month,
            day,
            hour: secs_of_day / 3_600,
            minute: secs_of_day % 3_600 / 60,
            second: secs_of_day % 60,
            nanos: since_epoch.subsec_nanos(),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (negative before it).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_both_ways() {
        for (secs, (y, mo, d, h, mi, s)) in [
            (0, (1970, 1, 1, 0, 0, 0)),
            (951_868_799, (2000, 2, 29, 23, 59, 59)),
            (1_795_314_666, (2026, 11, 22, 2, 31, 6)),
        ] {
            let t = CivilTime::from_unix(Duration::from_secs(secs));
            assert_eq!(
                (t.year, t.month, t.day, t.hour, t.minute, t.second),
                (y, mo, d, h, mi, s)
            );
            let days = days_from_civil(y as i64, mo as i64, d as i64);
            assert_eq!(days * 86_400 + (h * 3600 + mi * 60 + s) as i64, secs as i64);
        }
    }
}

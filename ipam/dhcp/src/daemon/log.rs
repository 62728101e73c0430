//! The daemon's log: one line per event on stderr (the journal under
//! systemd), prefixed with the UTC time as the reference's Go log prints it.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn line(msg: std::fmt::Arguments) {
    let text = format!("{} {msg}\n", timestamp(SystemTime::now()));
    // A closed stderr must not stop the daemon.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `2024/05/01 12:34:56` (UTC).
fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}/{month:02}/{day:02} {:02}:{:02}:{:02}", rest / 3600, rest / 60 % 60, rest % 60)
}

/// `log!("…", args)`: one timestamped line on stderr.
macro_rules! log {
    ($($arg:tt)*) => { $crate::daemon::log::line(format_args!($($arg)*)) };
}
pub(crate) use log;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970/01/01 00:00:00");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000/02/29 00:00:00");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(1_714_566_896)), "2024/05/01 12:34:56");
    }
}

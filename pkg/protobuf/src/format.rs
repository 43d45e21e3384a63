//! JSON renderings Kubernetes uses for its time types: `metav1.Time`
//! (RFC 3339, seconds), `metav1.MicroTime` (RFC 3339, microseconds) and
//! `metav1.Duration` (Go's `time.Duration.String()`).

use chrono::{DateTime, Datelike, SecondsFormat};
use serde_json::Value;

use crate::error::{Error, Result};

/// Seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z) since the epoch.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Renders a Time (`micros == false`) or MicroTime in UTC; the zero time is `null`.
pub(crate) fn timestamp(seconds: i64, nanos: i64, micros: bool) -> Result<Value> {
    let out_of_range = || Error::TimeOutOfRange { seconds, nanos };
    let secs = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or_else(out_of_range)?;
    let subsec = u32::try_from(nanos.rem_euclid(1_000_000_000)).map_err(|_| out_of_range())?;
    if secs == GO_ZERO_TIME && subsec == 0 {
        return Ok(Value::Null);
    }
    let t = DateTime::from_timestamp(secs, subsec)
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(out_of_range)?;
    let format = if micros {
        SecondsFormat::Micros
    } else {
        SecondsFormat::Secs
    };
    Ok(Value::String(t.to_rfc3339_opts(format, true)))
}

/// Go's `time.Duration(nanos).String()`, e.g. `1h0m0s`, `1.5s`, `300ms`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (unit, prec) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let (whole, frac) = split_frac(u, prec);
        return format!("{sign}{whole}{frac}{unit}");
    }
    let (secs, frac) = split_frac(u, 9);
    let mut out = format!("{}{frac}s", secs % 60);
    let minutes = secs / 60;
    if minutes > 0 {
        out = format!("{}m{out}", minutes % 60);
        let hours = minutes / 60;
        if hours > 0 {
            out = format!("{hours}h{out}");
        }
    }
    format!("{sign}{out}")
}

/// Splits `v` into `v / 10^prec` and its fraction as `.ddd` without
/// trailing zeros (empty when zero).
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    let scale = 10u64.pow(prec);
    let frac = v % scale;
    if frac == 0 {
        return (v / scale, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (v / scale, format!(".{}", digits.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times() {
        assert_eq!(
            timestamp(1_136_214_245, 999_999_999, false).unwrap(),
            json!("2006-01-02T15:04:05Z")
        );
        assert_eq!(
            timestamp(1_136_214_245, 123_456_789, true).unwrap(),
            json!("2006-01-02T15:04:05.123456Z")
        );
        assert_eq!(
            timestamp(0, 0, true).unwrap(),
            json!("1970-01-01T00:00:00.000000Z")
        );
        assert_eq!(timestamp(GO_ZERO_TIME, 0, false).unwrap(), Value::Null);
        assert!(matches!(
            timestamp(i64::MAX, 0, false),
            Err(Error::TimeOutOfRange { .. })
        ));
        assert!(timestamp(300_000_000_000, 0, false).is_err(), "year > 9999");
    }

    #[test]
    fn durations() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (4_000_000_000_000 + 1, "1h6m40.000000001s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }
}

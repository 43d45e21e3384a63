//! Int-or-percent values (maxSurge, maxUnavailable, minAvailable, ...)
//! scaled against a total, as upstream's
//! `intstr.GetScaledValueFromIntOrPercent`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{Error, Result};

/// `int` as it is, or `percent%` of `total` rounded up or down. A string
/// that is not a whole percentage is an error (as upstream; validation
/// rejects such values before they reach a controller).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "invalid value for IntOrString: invalid value {s:?}"
                    ))
                })?;
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            Ok(i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn ints_and_percents() {
        assert_eq!(scaled_value(&IntOrString::Int(2), 10, true).unwrap(), 2);
        assert_eq!(scaled_value(&pct("25%"), 10, true).unwrap(), 3);
        assert_eq!(scaled_value(&pct("25%"), 10, false).unwrap(), 2);
        assert_eq!(scaled_value(&pct("0%"), 10, true).unwrap(), 0);
        assert_eq!(scaled_value(&pct("100%"), 7, false).unwrap(), 7);
        // Floor and ceiling of negatives, as Go's math.Floor/Ceil.
        assert_eq!(scaled_value(&pct("-5%"), 10, false).unwrap(), -1);
        assert_eq!(scaled_value(&pct("-5%"), 10, true).unwrap(), 0);
    }

    #[test]
    fn non_percent_strings_are_errors() {
        assert!(scaled_value(&pct("x%"), 3, true).is_err());
        assert!(scaled_value(&pct("3"), 3, true).is_err());
        assert!(scaled_value(&pct(""), 3, true).is_err());
    }
}

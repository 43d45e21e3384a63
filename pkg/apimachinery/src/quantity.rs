//! Resource quantities with exact arithmetic (quota sums, LimitRange
//! comparisons, QoS, scheduling, the node agent's cgroup limits and
//! downward API): parsed into nano-units with their format kept, printed in
//! canonical form as apimachinery's `Quantity.String()` does. This is the
//! only quantity parser in rkube.
//!
//! A quantity is a signed decimal number followed by an optional suffix: a
//! binary SI suffix (`Ki` … `Ei`, powers of 1024), a decimal SI suffix (`n`,
//! `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`,
//! `E-2`). Values below one nano-unit round up (away from zero), as
//! upstream's parser does.

use std::cmp::Ordering;
use std::fmt;

/// How a quantity prints: binary (Ki, Mi...), decimal (k, M, m...) or
/// decimal exponent (1e3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Powers of 1024.
    BinarySi,
    /// Powers of 1000 (and m, u, n).
    DecimalSi,
    /// `<n>e<exp>`.
    DecimalExponent,
}

/// Why a string is not a valid quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is empty or has no digits.
    #[error("quantity {0:?} has no number")]
    NoNumber(String),
    /// The suffix is not one Kubernetes knows.
    #[error("quantity {0:?} has an unknown suffix")]
    BadSuffix(String),
    /// The value does not fit in 128 bits of nano-units.
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// A quantity in nano-units (value × 10⁹).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    /// The value in units of 10⁻⁹.
    pub nanos: i128,
    /// Print format.
    pub format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, o: &Self) -> bool {
        self.nanos == o.nanos
    }
}
impl Eq for Quantity {}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Quantity {
    fn cmp(&self, o: &Self) -> Ordering {
        self.nanos.cmp(&o.nanos)
    }
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Zero (decimal).
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSi,
    };

    /// An integer count (e.g. `pods=1`).
    pub fn count(n: i64) -> Self {
        Quantity {
            nanos: i128::from(n) * NANO,
            format: Format::DecimalSi,
        }
    }

    /// Parses "500m", "1Gi", "2e3", "0.5"; None when malformed.
    pub fn parse(s: &str) -> Option<Self> {
        Self::try_parse(s).ok()
    }

    /// Parses "500m", "1Gi", "2e3", "0.5", saying what is wrong when it
    /// cannot.
    pub fn try_parse(s: &str) -> Result<Self, QuantityError> {
        let no_number = || QuantityError::NoNumber(s.to_string());
        let too_large = || QuantityError::TooLarge(s.to_string());
        let text = s.trim();
        let (neg, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        // The number: digits, optionally one '.', more digits.
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(split);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(no_number());
        }
        // Mantissa as an integer and its decimal scale.
        let mut mant: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mant = mant
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or_else(too_large)?;
        }
        let (format, exp10, exp2) =
            suffix_exponents(suffix).ok_or_else(|| QuantityError::BadSuffix(s.to_string()))?;
        // nanos = mant × 2^exp2 × 10^(exp10 − frac_len + 9), rounded up.
        let v = mant.checked_mul(1 << exp2).ok_or_else(too_large)?;
        let e = i64::from(exp10) - frac.len() as i64 + 9;
        let pow10 = |e: i64| u32::try_from(e).ok().and_then(|e| 10i128.checked_pow(e));
        let v = if v == 0 {
            0
        } else if e >= 0 {
            v.checked_mul(pow10(e).ok_or_else(too_large)?)
                .ok_or_else(too_large)?
        } else {
            match pow10(-e) {
                Some(d) => ceil_div(v, d),
                // A divisor beyond 10^38: a tiny fraction of a nano-unit.
                None => 1,
            }
        };
        Ok(Quantity {
            nanos: if neg { -v } else { v },
            format,
        })
    }

    /// Parses a JSON value (string or number).
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::String(s) => Self::parse(s),
            serde_json::Value::Number(n) => Self::parse(&n.to_string()),
            _ => None,
        }
    }

    /// The value rounded up to an integer (`Quantity.Value()`).
    pub fn value(&self) -> i128 {
        ceil_div(self.nanos, NANO)
    }

    /// The value in milli-units rounded up (`Quantity.MilliValue()`).
    pub fn milli_value(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// True when zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// `self / divisor` in milli-units, rounded up: the downward API's rule
    /// for cpu (a divisor below 1m counts as 1m).
    pub fn milli_ratio(&self, divisor: &Quantity) -> i128 {
        ceil_div(self.milli_value(), divisor.milli_value().max(1))
    }

    /// `self / divisor` in whole units, rounded up: the downward API's rule
    /// for memory and storage (a divisor below 1 counts as 1).
    pub fn value_ratio(&self, divisor: &Quantity) -> i128 {
        ceil_div(self.value(), divisor.value().max(1))
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_parse(s)
    }
}

/// The format and the decimal and binary exponents a suffix stands for.
fn suffix_exponents(suffix: &str) -> Option<(Format, i32, u32)> {
    let dec = |e| (Format::DecimalSi, e, 0);
    let bin = |e| (Format::BinarySi, 0, e);
    Some(match suffix {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        e if e.starts_with(['e', 'E']) => (Format::DecimalExponent, e[1..].parse().ok()?, 0),
        _ => return None,
    })
}

/// The sum, in the left operand's format.
impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, o: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(o.nanos),
            format: self.format,
        }
    }
}

/// The difference, in the left operand's format.
impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, o: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_sub(o.nanos),
            format: self.format,
        }
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 {
        q + 1
    } else {
        q
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        if n == 0 {
            return f.write_str("0");
        }
        let sign = if n < 0 { "-" } else { "" };
        let a = n.unsigned_abs();
        if self.format == Format::BinarySi
            && a >= 1024 * NANO as u128
            && a.is_multiple_of(NANO as u128)
        {
            let mut v = a / NANO as u128;
            let mut i = 0;
            while i < 6 && v.is_multiple_of(1024) {
                v /= 1024;
                i += 1;
            }
            let suf = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
            return write!(f, "{sign}{v}{suf}");
        }
        // Decimal: the largest exponent (multiple of 3, from -9) that keeps
        // the mantissa an integer.
        let mut v = a;
        let mut exp: i32 = -9;
        while v.is_multiple_of(1000) && exp < 18 {
            v /= 1000;
            exp += 3;
        }
        if self.format == Format::DecimalExponent {
            return if exp == 0 {
                write!(f, "{sign}{v}")
            } else {
                write!(f, "{sign}{v}e{exp}")
            };
        }
        let suf = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        write!(f, "{sign}{v}{suf}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn parse_and_print() {
        for (i, o) in [
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1", "1"),
            ("1000m", "1"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("1e3", "1e3"),
            ("100M", "100M"),
            ("512", "512"),
            ("0", "0"),
            ("1.5Gi", "1536Mi"),
        ] {
            assert_eq!(q(i).to_string(), o, "{i}");
        }
        assert!(Quantity::parse("abc").is_none());
        assert!(Quantity::parse("1x").is_none());
        assert!(Quantity::parse("").is_none());
    }

    #[test]
    fn arithmetic() {
        assert_eq!((q("1Gi") + q("512Mi")).to_string(), "1536Mi");
        assert_eq!((q("100m") + q("1")).to_string(), "1100m");
        assert!(q("50m") < q("0.1"));
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1m").milli_value(), 1);
        assert_eq!(q("2").milli_value(), 2000);
    }

    fn milli(s: &str) -> i128 {
        Quantity::try_parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .milli_value()
    }

    #[test]
    fn nano_units() {
        assert_eq!(q("1").nanos, 1_000_000_000);
        assert_eq!(q("500m").nanos, 500_000_000);
        assert_eq!(q("1.5").nanos, 1_500_000_000);
        assert_eq!(q("128Mi").nanos, 128 * 1024 * 1024 * 1_000_000_000);
        assert_eq!(q("1e3").nanos, 1000 * 1_000_000_000);
        assert_eq!(q("1k").nanos, 1000 * 1_000_000_000);
        assert_eq!(q("500m").nanos, NANO / 2);
        assert_eq!(q("1Gi").value(), 1_073_741_824);
        assert_eq!(q("2e3").value(), 2000);
        assert!(Quantity::parse("1Q").is_none());
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(milli("100m"), 100);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("0.5"), 500);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("2."), 2000);
        assert_eq!(milli("1.25"), 1250);
        assert_eq!(milli("250000u"), 250);
        assert_eq!(milli("1n"), 1, "sub-milli values round up");
        assert_eq!(milli("0"), 0);
        assert_eq!(milli("+3"), 3000);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(q("128Mi").value(), 128 * 1024 * 1024);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E3").value(), 1000);
        assert_eq!(q("1.5Gi").value(), 3 * 512 * 1024 * 1024);
        assert_eq!(q("2k").value(), 2000);
        assert_eq!(q("1Ki").milli_value(), 1_024_000);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("1Ei").value(), 1 << 60);
        assert_eq!(q("12e-1").milli_value(), 1200);
        assert_eq!(q("1e+2").value(), 100);
    }

    #[test]
    fn value_rounds_up() {
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q("1001m").value(), 2);
        assert_eq!(q("-100m").value(), 0);
        assert_eq!(q("-1.5").milli_value(), -1500);
    }

    #[test]
    fn rejects_garbage() {
        use QuantityError::*;
        let err = |s: &str| Quantity::try_parse(s).unwrap_err();
        assert!(matches!(err(""), NoNumber(_)));
        assert!(matches!(err("Mi"), NoNumber(_)));
        assert!(matches!(err("."), NoNumber(_)));
        assert!(matches!(err("1.2.3"), NoNumber(_)));
        assert!(matches!(err("abc"), NoNumber(_)));
        assert!(matches!(err("1KB"), BadSuffix(_)));
        assert!(matches!(err("1ki"), BadSuffix(_)));
        assert!(matches!(err("1e"), BadSuffix(_)));
        assert!(matches!(err("1 Mi"), BadSuffix(_)));
        assert!(matches!(
            err("99999999999999999999999999999999999999999"),
            TooLarge(_)
        ));
        assert!(matches!(err("1e100"), TooLarge(_)));
    }

    #[test]
    fn tiny_exponent_rounds_to_one_nano() {
        assert_eq!(q("1e-100").nanos, 1);
        assert_eq!(milli("1e-100"), 1);
        assert_eq!(milli("0e-100"), 0);
        assert_eq!(q("0e100").nanos, 0);
        assert_eq!(q("25e-100").nanos, 1);
    }

    #[test]
    fn from_str() {
        assert_eq!("250m".parse::<Quantity>().unwrap().milli_value(), 250);
        assert!("x".parse::<Quantity>().is_err());
    }

    #[test]
    fn downward_api_ratios() {
        assert_eq!(q("1500m").milli_ratio(&q("1m")), 1500);
        assert_eq!(q("1500m").milli_ratio(&q("1")), 2);
        assert_eq!(q("1").milli_ratio(&q("1n")), 1000, "divisor below 1m is 1m");
        assert_eq!(q("1Gi").value_ratio(&q("1Mi")), 1024);
        assert_eq!(q("1Gi").value_ratio(&q("1G")), 2);
        assert_eq!(q("1Gi").value_ratio(&q("1m")), 1_073_741_824);
    }
}

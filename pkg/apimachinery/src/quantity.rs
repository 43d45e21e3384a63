//! Resource quantities with exact arithmetic (quota sums, LimitRange
//! comparisons, QoS): parsed into nano-units with their format kept,
//! printed in canonical form as apimachinery's `Quantity.String()` does.

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
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(split);
        let (neg, digits) = match num.as_bytes().first() {
            Some(b'-') => (true, &num[1..]),
            Some(b'+') => (false, &num[1..]),
            _ => (false, num),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Mantissa as an integer and its decimal scale.
        let mut mant: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mant = mant.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let mut exp10: i32 = -(frac.len() as i32);
        let (format, mul): (Format, i128) = match suffix {
            "" => (Format::DecimalSi, 1),
            "n" => {
                exp10 -= 9;
                (Format::DecimalSi, 1)
            }
            "u" => {
                exp10 -= 6;
                (Format::DecimalSi, 1)
            }
            "m" => {
                exp10 -= 3;
                (Format::DecimalSi, 1)
            }
            "k" => {
                exp10 += 3;
                (Format::DecimalSi, 1)
            }
            "M" => {
                exp10 += 6;
                (Format::DecimalSi, 1)
            }
            "G" => {
                exp10 += 9;
                (Format::DecimalSi, 1)
            }
            "T" => {
                exp10 += 12;
                (Format::DecimalSi, 1)
            }
            "P" => {
                exp10 += 15;
                (Format::DecimalSi, 1)
            }
            "E" => {
                exp10 += 18;
                (Format::DecimalSi, 1)
            }
            "Ki" => (Format::BinarySi, 1 << 10),
            "Mi" => (Format::BinarySi, 1 << 20),
            "Gi" => (Format::BinarySi, 1 << 30),
            "Ti" => (Format::BinarySi, 1 << 40),
            "Pi" => (Format::BinarySi, 1 << 50),
            "Ei" => (Format::BinarySi, 1 << 60),
            e if e.starts_with(['e', 'E']) => {
                exp10 += e[1..].parse::<i32>().ok()?;
                (Format::DecimalExponent, 1)
            }
            _ => return None,
        };
        // nanos = mant * mul * 10^(exp10 + 9), rounded up like upstream.
        let mut v = mant.checked_mul(mul)?;
        let e = exp10 + 9;
        if e >= 0 {
            v = v.checked_mul(10i128.checked_pow(e as u32)?)?;
        } else {
            let d = 10i128.checked_pow((-e) as u32).unwrap_or(i128::MAX);
            v = (v + d - 1) / d;
        }
        Some(Quantity {
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
}

//! Kubernetes resource quantities (`100m`, `1.5Gi`, `1e3`, `2k`) parsed exactly.
//!
//! A quantity is a signed decimal number followed by an optional suffix: a
//! binary SI suffix (`Ki` … `Ei`, powers of 1024), a decimal SI suffix (`n`,
//! `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`,
//! `E-2`). The scheduler compares everything in thousandths of a unit
//! ("milli-units"), rounding up as `MilliValue()` does upstream, so `100m`
//! CPU is 100 and `1Ki` of memory is 1 024 000.

use std::fmt;

/// Why a string is not a valid quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is empty or has no digits.
    #[error("quantity {0:?} has no number")]
    NoNumber(String),
    /// The suffix is not one Kubernetes knows.
    #[error("quantity {0:?} has an unknown suffix")]
    BadSuffix(String),
    /// The value does not fit in 128 bits of milli-units.
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// A parsed quantity, held as milli-units (value × 1000, rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity {
    milli: i128,
}

impl Quantity {
    /// A quantity of `milli` thousandths of a unit.
    pub fn from_milli(milli: i128) -> Self {
        Self { milli }
    }

    /// The value in thousandths of a unit (rounded up).
    pub fn milli_value(&self) -> i128 {
        self.milli
    }

    /// The value in whole units, rounded up (`Value()` upstream).
    pub fn value(&self) -> i128 {
        ceil_div(self.milli, 1000)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli % 1000 == 0 {
            write!(f, "{}", self.milli / 1000)
        } else {
            write!(f, "{}m", self.milli)
        }
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses a quantity string.
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    let text = s.trim();
    let err_num = || QuantityError::NoNumber(s.to_string());
    let err_big = || QuantityError::TooLarge(s.to_string());
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // The number: digits, optionally one '.', more digits.
    let num_len = rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_len);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(err_num());
    }
    let mut mantissa: i128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        let d = i128::from(c.to_digit(10).ok_or_else(err_num)?);
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(d))
            .ok_or_else(err_big)?;
    }
    let (exp10, exp2) =
        suffix_exponents(suffix).ok_or_else(|| QuantityError::BadSuffix(s.to_string()))?;
    // milli = mantissa × 10^(exp10 − frac_len + 3) × 2^exp2, rounded up.
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| err_big())?;
    let exp = exp10 - frac_len + 3;
    let signed = if negative { -mantissa } else { mantissa };
    let scaled = signed
        .checked_mul(pow(2, exp2).ok_or_else(err_big)?)
        .ok_or_else(err_big)?;
    let milli = if exp >= 0 {
        scaled
            .checked_mul(pow(10, exp as u32).ok_or_else(err_big)?)
            .ok_or_else(err_big)?
    } else {
        match pow(10, exp.unsigned_abs()) {
            Some(div) => ceil_div(scaled, div),
            // Divisor beyond 10^38: the value is a tiny fraction.
            None => i128::from(scaled > 0),
        }
    };
    Ok(Quantity { milli })
}

/// Decimal and binary exponents a suffix stands for.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    let v = match suffix {
        "" => (0, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (exp.parse::<i32>().ok().filter(|e| e.abs() <= 1000)?, 0)
        }
    };
    Some(v)
}

fn pow(base: i128, exp: u32) -> Option<i128> {
    base.checked_pow(exp)
}

/// Integer division rounding towards positive infinity.
fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 {
        q
    } else {
        q + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(s: &str) -> i128 {
        parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .milli_value()
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
        assert_eq!(parse("128Mi").unwrap().value(), 128 * 1024 * 1024);
        assert_eq!(parse("1G").unwrap().value(), 1_000_000_000);
        assert_eq!(parse("1e3").unwrap().value(), 1000);
        assert_eq!(parse("1E3").unwrap().value(), 1000);
        assert_eq!(parse("1.5Gi").unwrap().value(), 3 * 512 * 1024 * 1024);
        assert_eq!(parse("2k").unwrap().value(), 2000);
        assert_eq!(parse("1Ki").unwrap().milli_value(), 1_024_000);
        assert_eq!(parse("1E").unwrap().value(), 1_000_000_000_000_000_000);
        assert_eq!(parse("1Ei").unwrap().value(), 1 << 60);
        assert_eq!(parse("12e-1").unwrap().milli_value(), 1200);
        assert_eq!(parse("1e+2").unwrap().value(), 100);
    }

    #[test]
    fn value_rounds_up() {
        assert_eq!(parse("100m").unwrap().value(), 1);
        assert_eq!(parse("1001m").unwrap().value(), 2);
        assert_eq!(parse("-100m").unwrap().value(), 0);
        assert_eq!(parse("-1.5").unwrap().milli_value(), -1500);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse(""), Err(QuantityError::NoNumber(_))));
        assert!(matches!(parse("Mi"), Err(QuantityError::NoNumber(_))));
        assert!(matches!(parse("."), Err(QuantityError::NoNumber(_))));
        assert!(matches!(parse("1.2.3"), Err(QuantityError::NoNumber(_))));
        assert!(matches!(parse("1KB"), Err(QuantityError::BadSuffix(_))));
        assert!(matches!(parse("1ki"), Err(QuantityError::BadSuffix(_))));
        assert!(matches!(parse("1e"), Err(QuantityError::BadSuffix(_))));
        assert!(matches!(parse("1 Mi"), Err(QuantityError::BadSuffix(_))));
        assert!(matches!(
            parse("99999999999999999999999999999999999999999"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(parse("1e100"), Err(QuantityError::TooLarge(_))));
    }

    #[test]
    fn tiny_exponent_rounds_to_one_milli() {
        assert_eq!(milli("1e-100"), 1);
        assert_eq!(milli("0e-100"), 0);
    }

    #[test]
    fn display_and_from_str() {
        assert_eq!(Quantity::from_milli(1500).to_string(), "1500m");
        assert_eq!(Quantity::from_milli(2000).to_string(), "2");
        assert_eq!(
            "250m".parse::<Quantity>().unwrap(),
            Quantity::from_milli(250)
        );
    }
}

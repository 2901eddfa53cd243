//! Kubernetes resource quantities compared by value. The API server stores a quantity in its
//! canonical form (`cpu: 0.5` comes back as `500m`, `1000m` as `1`), so a desired object
//! written by hand and the live object it became only match when quantities are read as
//! numbers rather than strings.

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text does not follow the quantity grammar (`<number><suffix>`).
    #[error("{0:?} is not a Kubernetes quantity")]
    Malformed(String),
    /// The value does not fit the comparison's range (beyond 10^29 in nano units).
    #[error("{0:?} is too large to compare")]
    TooLarge(String),
}

/// Nano-units per unit: the finest precision Kubernetes keeps.
const NANO: i128 = 1_000_000_000;

/// The suffix's multiplier as (base, exponent): `Ki` is 1024^1, `m` is 10^-3.
fn suffix_scale(suffix: &str) -> Option<(i128, i32)> {
    Some(match suffix {
        "" => (10, 0),
        "n" => (10, -9),
        "u" => (10, -6),
        "m" => (10, -3),
        "k" => (10, 3),
        "M" => (10, 6),
        "G" => (10, 9),
        "T" => (10, 12),
        "P" => (10, 15),
        "E" => (10, 18),
        "Ki" => (1024, 1),
        "Mi" => (1024, 2),
        "Gi" => (1024, 3),
        "Ti" => (1024, 4),
        "Pi" => (1024, 5),
        "Ei" => (1024, 6),
        exponent => {
            let digits = exponent
                .strip_prefix('e')
                .or_else(|| exponent.strip_prefix('E'))?;
            (10, digits.parse::<i32>().ok()?)
        }
    })
}

/// The quantity's value in nano-units (rounded toward zero below a nano-unit, as the API
/// server rounds).
pub fn nano_units(text: &str) -> Result<i128, QuantityError> {
    let malformed = || QuantityError::Malformed(text.to_owned());
    let too_large = || QuantityError::TooLarge(text.to_owned());
    let trimmed = text.trim();
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(malformed());
    }
    let (base, exponent) = suffix_scale(suffix).ok_or_else(malformed)?;
    // value = digits × 10^-len(fraction) × base^exponent × 10^9
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    let mut numerator = mantissa.checked_mul(NANO).ok_or_else(too_large)?;
    let mut denominator: i128 = 10i128
        .checked_pow(u32::try_from(fraction.len()).map_err(|_| too_large())?)
        .ok_or_else(too_large)?;
    let power = base
        .checked_pow(exponent.unsigned_abs())
        .ok_or_else(too_large)?;
    if exponent >= 0 {
        numerator = numerator.checked_mul(power).ok_or_else(too_large)?;
    } else {
        denominator = denominator.checked_mul(power).ok_or_else(too_large)?;
    }
    let value = numerator / denominator;
    Ok(if negative { -value } else { value })
}

/// Whether two quantity strings denote the same amount; `None` when either is not a
/// quantity (the caller then compares them as text).
pub fn same_amount(left: &str, right: &str) -> Option<bool> {
    Some(nano_units(left).ok()? == nano_units(right).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardening_the_forms_the_api_server_normalizes_to_are_the_same_amount() {
        for (written, stored) in [
            ("0.5", "500m"),
            ("1000m", "1"),
            ("0.1", "100m"),
            ("1Gi", "1073741824"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("1e3", "1k"),
            ("1E3", "1k"),
            ("129e6", "129M"),
            ("+2", "2"),
            ("0.000000001", "1n"),
            ("64Mi", "67108864"),
        ] {
            assert_eq!(
                same_amount(written, stored),
                Some(true),
                "{written} = {stored}"
            );
        }
    }

    #[test]
    fn different_amounts_and_non_quantities_are_told_apart() {
        assert_eq!(same_amount("1Gi", "1G"), Some(false));
        assert_eq!(same_amount("500m", "0.6"), Some(false));
        assert_eq!(same_amount("-1", "1"), Some(false));
        assert_eq!(same_amount("brook:1", "brook:1"), None);
        assert_eq!(same_amount("1Xi", "1"), None);
        for bad in ["", ".", "1.2.3", "Gi", "1 Gi", "1e", "--1"] {
            assert!(nano_units(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            nano_units("99999999999999999999999999999999999999Ei"),
            Err(QuantityError::TooLarge(
                "99999999999999999999999999999999999999Ei".to_owned()
            ))
        );
    }

    #[test]
    fn values_are_exact_in_nano_units() {
        assert_eq!(nano_units("1"), Ok(1_000_000_000));
        assert_eq!(nano_units("250m"), Ok(250_000_000));
        assert_eq!(nano_units("1Ki"), Ok(1024 * 1_000_000_000));
        assert_eq!(nano_units("1.5"), Ok(1_500_000_000));
        assert_eq!(nano_units("-2m"), Ok(-2_000_000));
    }
}

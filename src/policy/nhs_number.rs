//! The NHS number: ten digits whose last is a modulus-11 check digit.
//!
//! Source: NHS Data Dictionary, "NHS Number" (check digit algorithm). The range 999 000 0000 to
//! 999 999 9999 passes the check and is never issued, so tests use it.

use std::fmt;
use std::str::FromStr;

/// A valid NHS number, by construction. Its `Debug` shows only that it is one, because an NHS
/// number is patient data and must not reach logs through a stray `{:?}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber([u8; 10]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number is exactly ten digits")]
    Length,
    #[error("an NHS number holds digits only")]
    NotDigits,
    #[error("the NHS number's check digit does not match")]
    CheckDigit,
}

impl NhsNumber {
    /// Parses ten ASCII digits. Spaces are not accepted here: payloads carry the bare number.
    pub fn parse(s: &str) -> Result<Self, NhsNumberError> {
        let bytes = s.as_bytes();
        if bytes.len() != 10 {
            return Err(NhsNumberError::Length);
        }
        let mut digits = [0u8; 10];
        for (slot, b) in digits.iter_mut().zip(bytes) {
            if !b.is_ascii_digit() {
                return Err(NhsNumberError::NotDigits);
            }
            *slot = b - b'0';
        }
        if check_digit(&digits[..9]) != Some(digits[9]) {
            return Err(NhsNumberError::CheckDigit);
        }
        Ok(Self(digits))
    }

    /// The ten digits, for keyed hashing. Deliberately not `Display`.
    pub fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

/// The check digit for nine leading digits, or `None` where the algorithm gives 10 (such
/// numbers are never issued).
fn check_digit(first_nine: &[u8]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10u32).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => u8::try_from(c).ok(),
    }
}

/// The JSON Schema format check registered as `nhs-number`.
pub fn is_valid(s: &str) -> bool {
    NhsNumber::parse(s).is_ok()
}

impl FromStr for NhsNumber {
    type Err = NhsNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_worked_example() {
        // 943 476 5919: sum 299, remainder 2, check digit 9.
        assert!(NhsNumber::parse("9434765919").is_ok());
    }

    #[test]
    fn accepts_test_range_numbers() {
        for n in ["9990000018", "9999999999"] {
            assert!(NhsNumber::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_wrong_check_digit() {
        assert_eq!(NhsNumber::parse("9434765918"), Err(NhsNumberError::CheckDigit));
        assert_eq!(NhsNumber::parse("9990000017"), Err(NhsNumberError::CheckDigit));
    }

    #[test]
    fn rejects_numbers_whose_check_would_be_ten() {
        // 123 456 789x: weighted sum 210, remainder 1, check digit would be 10.
        for last in 0..=9 {
            let n = format!("123456789{last}");
            assert_eq!(NhsNumber::parse(&n), Err(NhsNumberError::CheckDigit), "{n}");
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(NhsNumber::parse("943 476 5919"), Err(NhsNumberError::Length));
        assert_eq!(NhsNumber::parse("943476591"), Err(NhsNumberError::Length));
        assert_eq!(NhsNumber::parse("94347659a9"), Err(NhsNumberError::NotDigits));
        assert_eq!(NhsNumber::parse("９４３４７６５９１９"), Err(NhsNumberError::Length));
    }

    #[test]
    fn debug_never_shows_the_number() {
        let n = NhsNumber::parse("9434765919").unwrap();
        assert!(!format!("{n:?}").contains("9434765919"));
    }
}

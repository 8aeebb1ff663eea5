//! Money: integer minor units with an ISO 4217 currency. Never floating point.
//!
//! Why ISO 4217 from a maintained list (`iso_currency`): the code must be a real currency
//! (`ZZZ` is not), and each currency has its own minor-unit exponent: USD 12345 minor units
//! are USD 123.45, JPY 12345 are JPY 12345, KWD 12345 are KWD 12.345. Every amount prints
//! with its own currency's exponent.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, RejectionCode};

/// An ISO 4217 currency code (`USD`, `EUR`, `JPY`) that has minor units.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[A-Z]{3}$", "enum" = Currency::codes()))]
pub struct Currency(String);

impl Currency {
    /// Every code a [`Currency`] accepts (ISO 4217 currencies with minor units), in
    /// alphabetical order: the schemas' `enum`, so that a schema-checked `XAU` (gold, no
    /// minor unit) or `XXX` is refused as the server refuses it.
    pub fn codes() -> Vec<String> {
        let letters = || (b'A'..=b'Z').map(char::from);
        letters()
            .flat_map(|a| letters().flat_map(move |b| letters().map(move |c| [a, b, c])))
            .map(|code| code.iter().collect::<String>())
            .filter(|code| Currency::try_from(code.clone()).is_ok())
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point of one minor unit (2 for USD, 0 for JPY, 3 for KWD).
    pub fn exponent(&self) -> u32 {
        iso_currency::Currency::from_code(&self.0)
            .and_then(|c| c.exponent())
            .map_or(2, u32::from)
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        match iso_currency::Currency::from_code(&code).map(|c| c.exponent()) {
            Some(Some(_)) => Ok(Currency(code)),
            Some(None) => Err(format!(
                "`{code}` has no minor units (a metal or a fund, not money a deal is priced in); use a currency such as USD"
            )),
            None => Err(format!(
                "`{code}` is not an ISO 4217 currency code; use one such as USD, EUR or JPY"
            )),
        }
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most a money input may be, in minor units: 10^15 (ten trillion of a two-decimal
/// currency, a quadrillion yen).
///
/// Why a ceiling: one amount and what is computed from it (a commission, a deal's
/// reversals) is an `i64`; inputs of up to `i64::MAX` wrapped sums (six wins of
/// `i64::MAX` gave a negative balance). The views now sum in `i128` (a balance, the
/// program's won revenue), exact for any number of inputs; the ceiling keeps each input
/// and each deal's own arithmetic far from the `i64` edge, and no deal comes near it.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

/// An exact amount: `amount_minor` of the currency's minor unit (cents for USD, yen for JPY).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: &str) -> Result<Money, String> {
        Ok(Money {
            amount_minor,
            currency: Currency::try_from(currency.to_string())?,
        })
    }

    /// The one rule every money input follows: more than zero and at most
    /// [`MAX_AMOUNT_MINOR`] (the currency is an ISO 4217 code with minor units by
    /// construction). `field` names it in the refusal.
    pub fn require_positive(&self, field: &str) -> Result<(), DomainError> {
        if self.amount_minor > MAX_AMOUNT_MINOR {
            return Err(DomainError::new(
                RejectionCode::InvalidField,
                format!(
                    "`{field}` must be at most {} (10^15 minor units), not {}; amounts are in minor units (cents for USD)",
                    format_minor(MAX_AMOUNT_MINOR, self.currency.exponent()),
                    format_minor(self.amount_minor, self.currency.exponent())
                ),
            )
            .with_details(serde_json::json!({ "field": field, "max_amount_minor": MAX_AMOUNT_MINOR })));
        }
        if self.amount_minor > 0 {
            Ok(())
        } else {
            Err(DomainError::new(
                RejectionCode::InvalidField,
                format!(
                    "`{field}` must be a positive amount, not {}",
                    format_minor(self.amount_minor, self.currency.exponent())
                ),
            )
            .with_details(serde_json::json!({ "field": field })))
        }
    }
}

/// `1234567` minor units as `12,345.67` (or `1,234,567` with exponent 0): thousands
/// grouped, exactly the currency's number of decimals.
pub fn format_minor(amount_minor: impl Into<i128>, exponent: u32) -> String {
    let amount_minor: i128 = amount_minor.into();
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let scale = 10u128.pow(exponent);
    let (units, fraction) = (abs / scale, abs % scale);
    let digits = units.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(d);
    }
    if exponent == 0 {
        format!("{sign}{grouped}")
    } else {
        format!(
            "{sign}{grouped}.{fraction:0width$}",
            width = exponent as usize
        )
    }
}

/// An amount (one `i64` input or an `i128` sum of them) with its currency:
/// `12,345.67 USD`, as [`Money`] prints.
pub fn format_amount(amount_minor: impl Into<i128>, currency: &Currency) -> String {
    format!(
        "{} {currency}",
        format_minor(amount_minor, currency.exponent())
    )
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_amount(self.amount_minor, &self.currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_amount_prints_with_its_own_currencys_exponent() {
        let m = |minor, code: &str| Money::new(minor, code).map(|m| m.to_string());
        assert_eq!(m(1_975_308_600, "JPY"), Ok("1,975,308,600 JPY".into()));
        assert_eq!(m(19_753_086, "USD"), Ok("197,530.86 USD".into()));
        assert_eq!(m(12_345, "KWD"), Ok("12.345 KWD".into()));
        assert_eq!(m(-5, "EUR"), Ok("-0.05 EUR".into()));
        assert_eq!(m(0, "USD"), Ok("0.00 USD".into()));
    }

    #[test]
    fn unknown_codes_and_non_money_are_refused() {
        for code in ["ZZZ", "usd", "US", "USDX", "", "XAU"] {
            assert!(Money::new(1, code).is_err(), "{code}");
        }
        assert!(Money::new(1, "CHF").is_ok());
    }
}

//! Money as integer minor units plus an ISO 4217 currency; parsed exactly, never through floats.

use crate::json::Json;

use crate::error::{FieldError, Rule};

pub const DEFAULT_CURRENCY: &str = "GBP";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

/// Digits after the decimal point for a currency (ISO 4217 minor unit).
pub fn minor_unit_exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

pub fn parse_currency(field: &str, raw: &str) -> Result<String, FieldError> {
    if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(raw.to_owned())
    } else {
        Err(FieldError::new(field, Rule::Format, format!("`{field}` must be an ISO 4217 code like GBP")))
    }
}

/// Parses a decimal amount in major units (`"1234.56"`, `1234.56`) into minor units, exactly.
pub fn parse_major_units(field: &str, decimal: &str, currency: &str) -> Result<i64, FieldError> {
    let exponent = minor_unit_exponent(currency);
    let bad = |message: String| FieldError::new(field, Rule::Format, message);
    let (negative, digits) = match decimal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, decimal),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("`{field}` must be a decimal amount like 1234.56")));
    }
    let significant = fraction.trim_end_matches('0');
    if significant.len() as u32 > exponent {
        return Err(bad(format!("`{field}` has more than {exponent} decimal places for {currency}")));
    }
    let scale = 10_i64.pow(exponent);
    let padded = format!("{significant:0<width$}", width = exponent as usize);
    let out_of_range = || FieldError::new(field, Rule::Range, format!("`{field}` is too large"));
    let whole: i64 = whole.parse().map_err(|_| out_of_range())?;
    let fraction: i64 = if padded.is_empty() { 0 } else { padded.parse().map_err(|_| out_of_range())? };
    let minor = whole.checked_mul(scale).and_then(|w| w.checked_add(fraction)).ok_or_else(out_of_range)?;
    Ok(if negative { -minor } else { minor })
}

/// Accepts the canonical `{"amount_minor": 123456, "currency": "GBP"}` (or camelCase), a JSON
/// number in major units, or a decimal string. `currency` applies to the latter two.
pub fn parse_money(field: &str, value: &Json<'_>, currency: &str) -> Result<Money, FieldError> {
    match value {
        Json::Object(map) => {
            let minor_field = format!("{field}.amount_minor");
            let minor = map
                .get("amount_minor")
                .or_else(|| map.get("amountMinor"))
                .ok_or_else(|| FieldError::required(&minor_field))?
                .as_i64()
                .ok_or_else(|| FieldError::wrong_type(&minor_field, "an integer"))?;
            let currency_field = format!("{field}.currency");
            let currency = match map.get("currency") {
                None => currency.to_owned(),
                Some(Json::String(c)) => parse_currency(&currency_field, c)?,
                Some(_) => return Err(FieldError::wrong_type(&currency_field, "a string")),
            };
            Ok(Money { amount_minor: minor, currency })
        }
        Json::Number(n) => Ok(Money {
            amount_minor: parse_major_units(field, &n.to_string(), currency)?,
            currency: currency.to_owned(),
        }),
        Json::String(s) => {
            Ok(Money { amount_minor: parse_major_units(field, s, currency)?, currency: currency.to_owned() })
        }
        _ => Err(FieldError::wrong_type(field, "an amount (number, decimal string or {amount_minor, currency})")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn major_units_convert_exactly() {
        let cases = [("1234.56", 123456), ("0.1", 10), ("12", 1200), ("-3.5", -350), ("246.910", 24691)];
        for (input, expected) in cases {
            assert_eq!(parse_major_units("total", input, "GBP"), Ok(expected), "{input}");
        }
        assert_eq!(parse_major_units("total", "1500", "JPY"), Ok(1500));
        assert_eq!(parse_major_units("total", "1.234", "KWD"), Ok(1234));
    }

    #[test]
    fn too_many_decimals_or_garbage_are_refused_with_the_field() {
        for input in ["1.234", "abc", "1e5", "", "1.2.3"] {
            let err = parse_major_units("payload.total", input, "GBP").unwrap_err();
            assert_eq!(err.field, "payload.total", "{input}");
        }
        assert_eq!(parse_major_units("t", "99999999999999999999", "GBP").unwrap_err().rule, Rule::Range);
    }

    #[test]
    fn json_forms_agree() {
        let from_number = parse_money("total", &Json::from(&json!(1234.56)), "GBP").unwrap();
        let from_string = parse_money("total", &Json::from(&json!("1234.56")), "GBP").unwrap();
        let canonical =
            parse_money("total", &Json::from(&json!({"amount_minor": 123456, "currency": "GBP"})), "EUR").unwrap();
        assert_eq!(from_number, from_string);
        assert_eq!(from_number, canonical);
        assert_eq!(parse_money("t", &Json::from(&json!({"amountMinor": 5})), "EUR").unwrap().currency, "EUR");
        assert_eq!(parse_money("t", &Json::from(&json!(true)), "GBP").unwrap_err().rule, Rule::Type);
    }
}

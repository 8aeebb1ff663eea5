//! Business days, for SLAs counted in them (a conflict's resolution plan: 5 business days).

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};

/// `from` plus `days` business days (Monday to Friday; public holidays are not modelled).
pub fn add_business_days(from: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    let mut at = from;
    let mut left = days;
    while left > 0 {
        at += Duration::days(1);
        if !matches!(at.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    at
}

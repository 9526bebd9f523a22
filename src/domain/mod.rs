//! Checked types that cross module boundaries: after parsing there is no bare
//! `String` for an invoice number, an email address, an amount or a category.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Error for a value that does not fit its checked type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("invalid amount {0:?}: expected digits with an optional '.' or ',' and at most two decimals")]
    Amount(String),
    #[error("invalid email address {0:?}")]
    Email(String),
    #[error("invalid invoice number {0:?}: it must contain at least one digit")]
    InvoiceNumber(String),
    #[error("unknown {kind} {value:?}: expected one of {expected}")]
    Unknown { kind: &'static str, value: String, expected: &'static str },
}

/// An amount of money in integer cents (never `f64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Money(pub i64);

impl Money {
    pub fn cents(self) -> i64 {
        self.0
    }
    /// Parses `1234.5`, `1234,50`, `1 234,50`, `-12.00`, `1.234,56` (French
    /// thousands dot when followed by a comma decimal part).
    pub fn parse(s: &str) -> Result<Money, DomainError> {
        let err = || DomainError::Amount(s.to_string());
        let t: String = s.trim().chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}').collect();
        if t.is_empty() {
            return Err(err());
        }
        let (neg, t) = match t.strip_prefix('-') {
            Some(r) => (true, r.to_string()),
            None => (false, t),
        };
        // The decimal separator is the last '.' or ',' followed by 1-2 digits.
        let (int_part, frac_part) = match t.rfind(['.', ',']) {
            Some(i) if (1..=2).contains(&(t.len() - i - 1)) => (&t[..i], &t[i + 1..]),
            Some(i) if t.len() - i - 1 == 0 => return Err(err()),
            _ => (t.as_str(), ""),
        };
        let int_digits: String = int_part.chars().filter(|c| *c != '.' && *c != ',').collect();
        if int_digits.is_empty() || !int_digits.chars().all(|c| c.is_ascii_digit()) || !frac_part.chars().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        let units: i64 = int_digits.parse().map_err(|_| err())?;
        let frac: i64 = match frac_part.len() {
            0 => 0,
            1 => frac_part.parse::<i64>().map_err(|_| err())? * 10,
            _ => frac_part.parse().map_err(|_| err())?,
        };
        let v = units.checked_mul(100).and_then(|u| u.checked_add(frac)).ok_or_else(err)?;
        Ok(Money(if neg { -v } else { v }))
    }
}

impl fmt::Display for Money {
    /// `1234.50` (plain, dot decimal; see `fr()` for French display).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:02}", self.0.abs() / 100, self.0.abs() % 100)
    }
}

impl Money {
    /// French display: `1 234,50` with a narrow no-break space for thousands.
    pub fn fr(&self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let units = (self.0.abs() / 100).to_string();
        let mut grouped = String::new();
        for (i, c) in units.chars().enumerate() {
            if i > 0 && (units.len() - i) % 3 == 0 {
                grouped.push('\u{202f}');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped},{:02}", self.0.abs() % 100)
    }
    /// English display: `1,234.50`.
    pub fn en(&self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let units = (self.0.abs() / 100).to_string();
        let mut grouped = String::new();
        for (i, c) in units.chars().enumerate() {
            if i > 0 && (units.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped}.{:02}", self.0.abs() % 100)
    }
}

/// An invoice number exactly as the ledger spells it (`FA-2026-00123`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InvoiceNumber(String);

impl InvoiceNumber {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let t = s.trim();
        if t.is_empty() || !t.chars().any(|c| c.is_ascii_digit()) || t.len() > 64 {
            return Err(DomainError::InvoiceNumber(s.to_string()));
        }
        Ok(InvoiceNumber(t.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for InvoiceNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvoiceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lowercased email address with one `@` and a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let t = s.trim().trim_matches(|c| c == '<' || c == '>').to_lowercase();
        let err = || DomainError::Email(s.to_string());
        let (local, domain) = t.split_once('@').ok_or_else(err)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') || t.chars().any(|c| c.is_whitespace()) {
            return Err(err());
        }
        Ok(EmailAddress(t))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                match s.trim() {
                    $($text => Ok($name::$variant),)+
                    other => Err(DomainError::Unknown {
                        kind: $kind,
                        value: other.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

string_enum!(
    /// What a client message is about: five dispute motives, five non-disputes.
    Category, "category", {
    Price => "price",
    Quantity => "quantity",
    NonConformity => "non_conformity",
    AdminError => "admin_error",
    ProjectDelay => "project_delay",
    PromiseToPay => "promise_to_pay",
    PaymentNotice => "payment_notice",
    InvoiceRequest => "invoice_request",
    OutOfOffice => "out_of_office",
    Other => "other",
});

impl Category {
    /// The five dispute motives open a dispute case and pause reminders.
    pub fn is_dispute(self) -> bool {
        matches!(self, Category::Price | Category::Quantity | Category::NonConformity | Category::AdminError | Category::ProjectDelay)
    }
}

string_enum!(
    /// A user's role in the company.
    Role, "role", {
    Accountant => "accountant",
    Sales => "sales",
    Technical => "technical",
    Manager => "manager",
});

string_enum!(
    /// The standard case statuses (DESIGN.md).
    Status, "status", {
    Open => "open",
    InAnalysis => "in_analysis",
    WaitingClient => "waiting_client",
    AdjustmentApproved => "adjustment_approved",
    Refused => "refused",
    Resolved => "resolved",
});

impl Status {
    pub fn is_closed(self) -> bool {
        matches!(self, Status::Resolved)
    }
}

string_enum!(
    /// The language a client writes in and is answered in.
    Language, "language", {
    Fr => "fr",
    En => "en",
});

// Written out: string_enum! takes no attribute on a variant, so #[default] cannot be put.
#[allow(clippy::derivable_impls)]
impl Default for Language {
    fn default() -> Self {
        Language::Fr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_french_and_english_forms() {
        for (s, c) in [("1234.5", 123450), ("1234,50", 123450), ("1 234,50", 123450), ("1.234,56", 123456), ("1,234.56", 123456), ("-12.00", -1200), ("40", 4000), ("0.07", 7)] {
            assert_eq!(Money::parse(s), Ok(Money(c)), "{s}");
        }
        for s in ["", "abc", "12.", "1.2.3x", "--1"] {
            assert!(Money::parse(s).is_err(), "{s}");
        }
        assert_eq!(Money(123456).fr(), "1\u{202f}234,56");
        assert_eq!(Money(-5).to_string(), "-0.05");
        assert_eq!(Money(123456789).en(), "1,234,567.89");
    }

    #[test]
    fn email_is_lowercased_and_checked() {
        assert_eq!(EmailAddress::parse(" <A.B@Example.FR> ").unwrap().as_str(), "a.b@example.fr");
        assert_eq!(EmailAddress::parse("a@x.fr").unwrap().domain(), "x.fr");
        assert!(EmailAddress::parse("nope").is_err());
        assert!(EmailAddress::parse("a@@b").is_err());
    }

    #[test]
    fn enums_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), *c);
        }
        assert!("bogus".parse::<Role>().is_err());
        assert!(Category::Price.is_dispute() && !Category::Other.is_dispute());
    }
}

//! late_payment: the penalties and fixed indemnity of French late-payment law
//! (Code de commerce L441-10, D441-5), computed by the code, never by the LLM.
//!
//! penalties = Σ over each late day d (due date excluded, `as_of` included)
//!             of amount_due × rate(d) / 365
//! rate(d)   = contract rate of the client, or the ECB main refinancing rate
//!             in force on 1 January (d in January-June) or 1 July (d in
//!             July-December) + `points_over_ecb`.
//! Computed exactly in integer arithmetic (rates in hundredths of a percent)
//! and rounded half-up to the cent once, at the end.

use crate::domain::Money;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct EcbRate {
    pub from: NaiveDate,
    pub rate: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClientTerms {
    pub id: String,
    pub contract_rate: Option<f64>,
    #[serde(default)]
    pub consumer: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LatePayment {
    pub points_over_ecb: f64,
    pub fixed_indemnity_eur: f64,
    pub ecb_rates: Vec<EcbRate>,
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientTerms>,
}

/// The amounts due for one late invoice, with how they were found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LateCharges {
    pub days_late: i64,
    pub penalties: Money,
    pub indemnity: Money,
    /// One line per rate period, e.g. "31 days at 12.15 %".
    pub periods: Vec<String>,
}

fn bp(rate: f64) -> i128 {
    (rate * 100.0).round() as i128
}

impl LatePayment {
    /// The ECB rate in force on `day` (the last change on or before it).
    pub fn ecb_rate_on(&self, day: NaiveDate) -> Option<f64> {
        self.ecb_rates.iter().filter(|r| r.from <= day).max_by_key(|r| r.from).map(|r| r.rate)
    }

    fn terms(&self, client: &str) -> Option<&ClientTerms> {
        self.clients.iter().find(|c| c.id == client)
    }

    /// The yearly penalty rate, in hundredths of a percent, for a late day.
    fn rate_bp(&self, client: &str, day: NaiveDate) -> i128 {
        if let Some(r) = self.terms(client).and_then(|t| t.contract_rate) {
            return bp(r);
        }
        let reference = NaiveDate::from_ymd_opt(day.year(), if day.month() <= 6 { 1 } else { 7 }, 1).expect("1 Jan / 1 Jul");
        bp(self.ecb_rate_on(reference).unwrap_or(0.0) + self.points_over_ecb)
    }

    /// Penalties and indemnity on `due` (amount still unpaid) for an invoice
    /// due on `due_date`, as of `as_of`. Nothing when not late.
    pub fn charges(&self, client: &str, due: Money, due_date: NaiveDate, as_of: NaiveDate) -> LateCharges {
        let days_late = (as_of - due_date).num_days();
        if days_late <= 0 || due.cents() <= 0 {
            return LateCharges { days_late: days_late.max(0), penalties: Money(0), indemnity: Money(0), periods: vec![] };
        }
        // Sum of amount × rate × days over periods of constant rate, in
        // cents × basis points × days; divided once at the end.
        let mut total: i128 = 0;
        let mut periods = Vec::new();
        let mut day = due_date.succ_opt().expect("date in range");
        while day <= as_of {
            let rate = self.rate_bp(client, day);
            let mut end = day;
            while let Some(next) = end.succ_opt() {
                if next > as_of || self.rate_bp(client, next) != rate {
                    break;
                }
                end = next;
            }
            let n = (end - day).num_days() + 1;
            total += due.cents() as i128 * rate * n as i128;
            periods.push(format!("{n} days at {}.{:02} %", rate / 100, rate % 100));
            day = end.succ_opt().expect("date in range");
        }
        let denom: i128 = 365 * 10_000;
        let penalties = ((total * 2 + denom) / (2 * denom)) as i64;
        let consumer = self.terms(client).map(|t| t.consumer).unwrap_or(false);
        let indemnity = if consumer { 0 } else { (self.fixed_indemnity_eur * 100.0).round() as i64 };
        LateCharges { days_late, penalties: Money(penalties), indemnity: Money(indemnity), periods }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_half_year_rate_is_the_one_in_force_on_1_january_or_1_july() {
        let lp = Policy::embedded().late_payment;
        // In force on 2023-07-01: 4.00 (changed on 2023-06-21), not the 4.25 of August.
        assert_eq!(lp.ecb_rate_on(d("2023-07-01")), Some(4.00));
        assert_eq!(lp.rate_bp("X", d("2023-09-30")), 1400);
        assert_eq!(lp.rate_bp("X", d("2024-03-01")), 1450);
        assert_eq!(lp.rate_bp("X", d("2025-02-10")), 1315);
        assert_eq!(lp.rate_bp("X", d("2026-03-02")), 1215);
    }

    #[test]
    fn hand_worked_examples() {
        let lp = Policy::embedded().late_payment;
        // 10,000.00 EUR due 2026-01-31, paid 2026-03-02: 30 days at 12.15 %:
        // 10,000 × 0.1215 × 30 / 365 = 99.8630… → 99.86 EUR.
        let c = lp.charges("X", Money(1_000_000), d("2026-01-31"), d("2026-03-02"));
        assert_eq!((c.days_late, c.penalties, c.indemnity), (30, Money(9_986), Money(4_000)));
        assert_eq!(c.periods, vec!["30 days at 12.15 %"]);
        // 1,000.00 EUR due 2025-06-20, as of 2025-07-10: 10 days of June at
        // 13.15 % (3.6027) + 10 days of July at 12.15 % (3.3288) = 6.9315 → 6.93.
        let c = lp.charges("X", Money(100_000), d("2025-06-20"), d("2025-07-10"));
        assert_eq!(c.penalties, Money(693));
        assert_eq!(c.periods, vec!["10 days at 13.15 %", "10 days at 12.15 %"]);
        // 2,500.00 EUR one day late in H2 2023 (14.00 %): 2500 × 0.14 / 365 = 0.9589 → 0.96.
        assert_eq!(lp.charges("X", Money(250_000), d("2023-08-01"), d("2023-08-02")).penalties, Money(96));
        // Not late, or nothing due: nothing.
        let c = lp.charges("X", Money(100_000), d("2026-03-02"), d("2026-03-02"));
        assert_eq!((c.penalties, c.indemnity), (Money(0), Money(0)));
    }

    #[test]
    fn contract_rate_and_consumers() {
        let mut lp = Policy::embedded().late_payment;
        lp.clients.push(ClientTerms { id: "C9".into(), contract_rate: Some(9.0), consumer: false });
        lp.clients.push(ClientTerms { id: "P1".into(), contract_rate: None, consumer: true });
        // 3,650.00 EUR at 9 % for 10 days: 3650 × 0.09 × 10 / 365 = 9.00 exactly.
        let c = lp.charges("C9", Money(365_000), d("2026-01-10"), d("2026-01-20"));
        assert_eq!((c.penalties, c.indemnity), (Money(900), Money(4_000)));
        assert_eq!(lp.charges("P1", Money(365_000), d("2026-01-10"), d("2026-01-20")).indemnity, Money(0));
    }
}

//! bench: benchmark commands that print numbers (speed and memory targets
//! are measured here, never by timed tests). `bench remind` times the daily
//! reminder pass on a synthetic company in a fresh temporary SQLite database.

use crate::app;
use crate::config::Config;
use crate::domain::{EmailAddress, InvoiceNumber, Language, Money, Role};
use crate::ledger::{ClientRecord, InvoiceRecord, InvoiceStatus, UserRecord};
use anyhow::{Context, Result};
use chrono::{Duration, NaiveDate};
use serde::Serialize;
use std::time::Instant;

/// What `bench remind` measured.
#[derive(Debug, Clone, Serialize)]
pub struct RemindBench {
    pub invoices: usize,
    pub clients: usize,
    pub date: String,
    pub import_seconds: f64,
    /// The first run of the day: every level due, drafts and tasks written.
    pub first_run_seconds: f64,
    pub drafts: usize,
    pub tasks: usize,
    pub skipped: usize,
    /// The same day again: nothing new to write.
    pub same_day_seconds: f64,
    /// The next day: the steady state, a few levels due.
    pub next_day_seconds: f64,
    pub next_day_drafts: usize,
    /// Peak resident memory of the process (VmHWM), when the OS reports it.
    pub peak_rss_mib: Option<f64>,
}

/// A small deterministic generator (no dependency, same company every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The synthetic ledger: `invoices` open invoices over `clients` clients,
/// due from 45 days before `day` to 5 days after it.
pub fn company(invoices: usize, clients: usize, day: NaiveDate) -> (Vec<UserRecord>, Vec<ClientRecord>, Vec<InvoiceRecord>) {
    let user = |id: &str, role| UserRecord { id: id.into(), name: format!("Bench {id}"), email: EmailAddress::parse(&format!("{}@bench.test", id.to_lowercase())).expect("valid"), role };
    let users = vec![user("A1", Role::Accountant), user("S1", Role::Sales), user("T1", Role::Technical), user("M1", Role::Manager)];
    let clients: Vec<ClientRecord> = (0..clients.max(1))
        .map(|i| ClientRecord {
            line: i as u64 + 2,
            id: format!("K{i:05}"),
            name: format!("Client {i}"),
            email_domains: vec![format!("client{i}.test")],
            account_owner: Some("S1".into()),
            strategic: i % 20 == 0,
            language: if i % 5 == 0 { Language::En } else { Language::Fr },
        })
        .collect();
    let mut rng = Lcg(42);
    let invoices = (0..invoices)
        .map(|i| {
            let due = day + Duration::days(rng.next(51) as i64 - 45);
            InvoiceRecord {
                line: i as u64 + 2,
                number: InvoiceNumber::parse(&format!("BX-{:07}", i + 1)).expect("valid"),
                client_id: clients[rng.next(clients.len() as u64) as usize].id.clone(),
                issue_date: due - Duration::days(30),
                due_date: due,
                amount: Money(10_000 + rng.next(2_000_000) as i64),
                currency: "EUR".into(),
                status: InvoiceStatus::Open,
                po_number: None,
                project: None,
            }
        })
        .collect();
    (users, clients, invoices)
}

/// Peak resident set size in MiB (Linux `/proc/self/status`).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the reminder pass on a synthetic company of `invoices` open invoices.
pub async fn remind(base: &Config, invoices: usize, clients: usize, day: NaiveDate) -> Result<RemindBench> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let mut cfg = base.clone();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database_url = None;
    let (store, policy) = app::open(&cfg).await?;
    let (users, cl, inv) = company(invoices, clients, day);
    let t = Instant::now();
    store.import_users(&users).await?;
    store.import_clients("bench-clients", &cl).await?;
    store.import_invoices("bench-invoices", &inv).await?;
    let import_seconds = t.elapsed().as_secs_f64();
    let timed = |day| {
        let (cfg, store, policy) = (&cfg, &store, &policy);
        async move {
            let t = Instant::now();
            let r = app::remind(cfg, store, policy, day).await?;
            anyhow::Ok((t.elapsed().as_secs_f64(), r))
        }
    };
    let (first_run_seconds, first) = timed(day).await?;
    let (same_day_seconds, again) = timed(day).await?;
    anyhow::ensure!(again.drafts.is_empty() && again.tasks.is_empty(), "a second run the same day wrote {} drafts", again.drafts.len());
    let (next_day_seconds, next) = timed(day + Duration::days(1)).await?;
    Ok(RemindBench {
        invoices,
        clients: cl.len(),
        date: day.to_string(),
        import_seconds,
        first_run_seconds,
        drafts: first.drafts.len(),
        tasks: first.tasks.len(),
        skipped: first.skipped,
        same_day_seconds,
        next_day_seconds,
        next_day_drafts: next.drafts.len(),
        peak_rss_mib: peak_rss_mib(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_company_is_the_same_every_run_and_spread_around_the_day() {
        let day: NaiveDate = "2026-06-15".parse().unwrap();
        let (_, c, a) = company(500, 20, day);
        let (_, _, b) = company(500, 20, day);
        assert_eq!(a, b);
        assert_eq!(c.len(), 20);
        assert!(a.iter().all(|i| i.due_date >= day - Duration::days(45) && i.due_date <= day + Duration::days(5)));
        assert!(a.iter().any(|i| i.due_date < day) && a.iter().any(|i| i.due_date > day));
    }
}

//! The workflow as the accountant lives it: `remind` every day for 90 days on
//! a whole company (the demo always, the shared dev corpus when present),
//! with disputes and promises pausing reminders, payments arriving mid-way,
//! a case resolved by a person, and the checks made against an oracle that
//! is computed here from the ledger, not taken from the code under test.

use super::{root, shared, Desk};
use chrono::{Duration, NaiveDate};
use dispute_desk::app;
use dispute_desk::domain::{Money, Role, Status};
use dispute_desk::flow::workflow::{self, MoveRequest, WorkflowError};
use dispute_desk::store::audit::{self, Verdict};
use dispute_desk::store::Store;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One row of `invoice_reminders`.
#[derive(Debug, Clone)]
struct Done {
    invoice: String,
    level: String,
    run_date: NaiveDate,
    outcome: String,
    draft_id: Option<i64>,
}

async fn reminders_done(store: &Store) -> Vec<Done> {
    sqlx::query("SELECT invoice_number, level, run_date, outcome, draft_id FROM invoice_reminders ORDER BY run_date, invoice_number")
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| Done {
            invoice: r.get("invoice_number"),
            level: r.get("level"),
            run_date: r.get::<String, _>("run_date").parse().unwrap(),
            outcome: r.get("outcome"),
            draft_id: r.get("draft_id"),
        })
        .collect()
}

/// Invoices that had any reminder block, and those still blocked on `day`.
async fn blocked(store: &Store, day: NaiveDate) -> (BTreeSet<String>, BTreeSet<String>) {
    let ever = sqlx::query("SELECT DISTINCT invoice_number FROM reminder_blocks").fetch_all(&store.pool).await.unwrap().iter().map(|r| r.get::<String, _>(0)).collect();
    let now = store.active_blocks(day).await.unwrap().into_iter().map(|b| b.invoice_number).collect();
    (ever, now)
}

/// The due dates of the unpaid invoices, read from the corpus's own CSV.
fn unpaid_due_dates(corpus: &Path) -> BTreeMap<String, (String, NaiveDate)> {
    let mut r = csv::Reader::from_path(corpus.join("invoices.csv")).unwrap();
    r.records()
        .map(|x| x.unwrap())
        .filter(|x| &x[6] != "paid")
        .map(|x| (x[0].to_string(), (x[1].to_string(), x[3].parse().unwrap())))
        .collect()
}

/// The level days of the default schedule (policies/reminders.toml).
const LEVELS: [(&str, i64); 5] = [("pre_due", -3), ("first", 3), ("second", 10), ("call", 20), ("manual", 30)];

async fn ninety_days(desk: &Desk, corpus: &Path, start: NaiveDate, days: i64) {
    let (store, policy) = app::open(&desk.cfg).await.unwrap();
    app::import_corpus(&store, corpus).await.unwrap();
    let mut p = app::pipeline(&desk.cfg, store.clone(), policy.clone()).await.unwrap();
    app::ingest_path(&mut p, corpus, false).await.unwrap();
    let unpaid = unpaid_due_dates(corpus);
    let (blocked_at_start, _) = blocked(&store, start).await;
    let disputes: Vec<_> = store.cases(None, None).await.unwrap().into_iter().filter(|c| c.kind == "dispute").collect();
    assert!(!disputes.is_empty(), "{}: the corpus has disputes", corpus.display());

    let resolve_on = start + Duration::days(20);
    let pay_on = start + Duration::days(40);
    let mut resolved_case = None;
    let mut paid_invoice = None;
    let mut drafts_per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    for i in 0..days {
        let day = start + Duration::days(i);
        if day == resolve_on {
            // A person settles one dispute: its invoices' reminders resume.
            let case = &disputes[0];
            let users = store.users().await.unwrap();
            let by_role = |r: Role| users.iter().find(|u| u.role == r).unwrap().clone();
            let (manager, accountant) = (by_role(Role::Manager), by_role(Role::Accountant));
            let ask = |to, role, reason, amount| MoveRequest { to, role, reason, amount };
            let before = store.case(case.id).await.unwrap();
            let history_before = store.status_history(case.id).await.unwrap().len();
            assert_eq!(before.status, "open");
            // Refused moves change nothing: a role the policy does not allow,
            // a transition that does not exist, a refusal with no reason.
            let e = workflow::move_case(&store, &policy, case.id, &accountant, &ask(Status::Resolved, Role::Accountant, Some("x"), None), day).await;
            assert!(matches!(e, Err(WorkflowError::Role { .. })), "{e:?}");
            let e = workflow::move_case(&store, &policy, case.id, &manager, &ask(Status::AdjustmentApproved, Role::Manager, Some("x"), Some(Money(100))), day).await;
            assert!(matches!(e, Err(WorkflowError::NotAllowed { .. })), "{e:?}");
            assert_eq!(store.status_history(case.id).await.unwrap().len(), history_before, "a refused move leaves no history");
            assert_eq!(store.case(case.id).await.unwrap().status, "open");
            workflow::move_case(&store, &policy, case.id, &manager, &ask(Status::InAnalysis, Role::Manager, None, None), day).await.unwrap();
            let e = workflow::move_case(&store, &policy, case.id, &manager, &ask(Status::Refused, Role::Manager, None, None), day).await;
            assert!(matches!(e, Err(WorkflowError::Missing { .. })), "a refusal needs a reason: {e:?}");
            let m = workflow::move_case(&store, &policy, case.id, &manager, &ask(Status::AdjustmentApproved, Role::Manager, Some("goodwill credit agreed by phone"), Some(Money(12_000))), day).await.unwrap();
            assert!(m.task_id.is_some(), "an adjustment makes a credit-note task");
            let m = workflow::move_case(&store, &policy, case.id, &accountant, &ask(Status::Resolved, Role::Accountant, Some("credit note issued"), None), day).await.unwrap();
            assert!(!m.lifted_blocks.is_empty(), "resolving lifts the dispute's reminder blocks");
            resolved_case = Some(case.clone());
        }
        if day == pay_on {
            // Pay in full the invoice of the newest pending reminder draft.
            let pending: Vec<i64> = store.drafts(Some("pending"), None).await.unwrap().into_iter().filter(|d| d.kind == "reminder").map(|d| d.id).collect();
            let row = reminders_done(&store).await.into_iter().rev().find(|r| r.draft_id.map(|d| pending.contains(&d)).unwrap_or(false));
            if let Some(row) = row {
                let due = store.due_invoices(day + Duration::days(400)).await.unwrap().into_iter().find(|d| d.number == row.invoice).unwrap();
                let dir = tempfile::tempdir().unwrap();
                let f = dir.path().join("payments.csv");
                std::fs::write(&f, format!("invoice_number,date,amount\n{},{},{}\n", row.invoice, day, Money(due.due_cents))).unwrap();
                let rep = app::import_payments(&store, &f).await.unwrap();
                assert_eq!(rep.paid, vec![row.invoice.clone()]);
                assert!(rep.cancelled_drafts.contains(&row.draft_id.unwrap()), "{rep:?}");
                assert_eq!(store.draft(row.draft_id.unwrap()).await.unwrap().status, "cancelled");
                // The same file again records nothing.
                assert_eq!(app::import_payments(&store, &f).await.unwrap().already_imported, 1);
                paid_invoice = Some((row.invoice, day));
            }
        }
        let before = reminders_done(&store).await.len();
        let r = app::remind(&desk.cfg, &store, &policy, day).await.unwrap();
        *drafts_per_day.entry(day).or_default() += r.drafts.len();
        // Twice the same day: nothing new.
        let again = app::remind(&desk.cfg, &store, &policy, day).await.unwrap();
        assert!(again.drafts.is_empty() && again.tasks.is_empty(), "{day}: a second run made {:?} {:?}", again.drafts, again.tasks);
        let after = reminders_done(&store).await;
        assert!(after.len() >= before + r.drafts.len(), "{day}: each draft records its levels");

        // Reminders on the day are grouped: one draft per client.
        let mut clients_today: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for d in after.iter().filter(|d| d.run_date == day && d.outcome == "draft") {
            clients_today.entry(unpaid[&d.invoice].0.clone()).or_default().insert(d.draft_id.unwrap());
        }
        assert!(clients_today.values().all(|s| s.len() == 1), "{day}: more than one draft for a client: {clients_today:?}");
        assert_eq!(clients_today.len(), r.drafts.len(), "{day}");
        let (_, blocked_now) = blocked(&store, day).await;
        for d in after.iter().filter(|d| d.run_date == day && d.outcome != "skipped") {
            assert!(!blocked_now.contains(&d.invoice), "{day}: {} reminded while blocked", d.invoice);
        }
    }

    let done = reminders_done(&store).await;
    // Each (invoice, level) once: the primary key; and every level after the
    // first day falls exactly on its day, never late.
    for d in done.iter().filter(|d| d.run_date > start && d.outcome != "skipped") {
        let due = unpaid[&d.invoice].1;
        let want = LEVELS.iter().find(|l| l.0 == d.level).unwrap().1;
        let late_by = (d.run_date - due).num_days() - want;
        // A block lifted later (resolved dispute, expired promise) resumes
        // at the current level: late, but only for invoices once blocked.
        let once_blocked = blocked_at_start.contains(&d.invoice) || resolved_case.as_ref().is_some_and(|c| c.invoices.contains(&d.invoice));
        assert!(late_by == 0 || (late_by > 0 && once_blocked), "{d:?}: {late_by} days late");
    }
    // The oracle: every unpaid invoice never blocked gets its `second`
    // reminder on exactly due + 10 when that day is inside the window.
    let end = start + Duration::days(days - 1);
    let mut expected = 0;
    for (n, (_, due)) in &unpaid {
        let second = *due + Duration::days(10);
        if blocked_at_start.contains(n) || second <= start || second > end || paid_invoice.as_ref().map(|p| &p.0 == n && p.1 <= second).unwrap_or(false) {
            continue;
        }
        expected += 1;
        assert!(done.iter().any(|d| &d.invoice == n && d.level == "second" && d.run_date == second && d.outcome == "draft"), "{n} (due {due}): no second reminder on {second}: {:?}", done.iter().filter(|d| &d.invoice == n).collect::<Vec<_>>());
    }
    // An invoice blocked by an open dispute throughout is never reminded.
    for c in store.cases(None, None).await.unwrap().iter().filter(|c| c.kind == "dispute" && !matches!(c.status.as_str(), "resolved" | "refused")) {
        for n in &c.invoices {
            assert!(!done.iter().any(|d| &d.invoice == n && d.outcome != "skipped" && d.run_date >= start), "{n} of open dispute case {} was reminded", c.id);
        }
    }
    // Service levels: every case still open is long past its deadline after
    // 90 days, so each has exactly one escalation task for a manager, and the
    // escalated cases are listed first.
    let tasks = store.tasks(None, None, None).await.unwrap();
    let managers: BTreeSet<String> = store.users().await.unwrap().into_iter().filter(|u| u.role == Role::Manager).map(|u| u.id).collect();
    let cases = store.cases(None, None).await.unwrap();
    for c in cases.iter().filter(|c| c.deadline.is_some() && !matches!(c.status.as_str(), "resolved" | "refused")) {
        let esc: Vec<_> = tasks.iter().filter(|t| t.case_id == Some(c.id) && t.kind == "escalation").collect();
        assert_eq!(esc.len(), 1, "case {} ({}, deadline {:?}): {} escalation tasks", c.id, c.status, c.deadline, esc.len());
        assert!(esc[0].owner_id.as_ref().is_some_and(|o| managers.contains(o)), "escalation of case {} goes to a manager", c.id);
        assert!(c.escalated);
    }
    let escalated = cases.iter().filter(|c| c.escalated).count();
    assert!(escalated > 0, "the window escalated open cases");
    let first_plain = cases.iter().position(|c| !c.escalated).unwrap_or(cases.len());
    assert!(cases[first_plain..].iter().all(|c| !c.escalated), "escalated cases are listed first");
    if let Some((n, day)) = &paid_invoice {
        assert!(!done.iter().any(|d| &d.invoice == n && d.run_date > *day), "paid {n} reminded after payment");
    }
    // Nothing left the building: reminders wait for a person.
    let sent: i64 = sqlx::query("SELECT COUNT(*) FROM outbox").fetch_one(&store.pool).await.unwrap().get(0);
    assert_eq!(sent, 0, "no outbox row without an approval");
    assert!(matches!(audit::verify(&store).await.unwrap(), Verdict::Intact { .. }));
    let total: usize = drafts_per_day.values().sum();
    println!("{}: {days} days from {start}: {total} reminder drafts ({} on the first day), {} second reminders on the day, {} levels recorded, {escalated} cases escalated", corpus.display(), drafts_per_day[&start], expected, done.len());
    assert!(expected > 0 && total > 0, "the window exercised the schedule");
}

#[tokio::test]
async fn ninety_days_of_reminders_on_the_demo_company() {
    ninety_days(&Desk::sqlite().await, &root().join("demo"), "2026-06-12".parse().unwrap(), 90).await;
}

#[tokio::test]
async fn ninety_days_of_reminders_on_the_demo_company_on_postgres() {
    ninety_days(&Desk::postgres().await, &root().join("demo"), "2026-06-12".parse().unwrap(), 90).await;
}

#[tokio::test]
async fn ninety_days_of_reminders_on_the_shared_dev_company() {
    let Some(shared) = shared() else {
        println!("skipped: ../shared not found (the dev company's 90 days run where it is present)");
        return;
    };
    ninety_days(&Desk::sqlite().await, &shared.join("corpus/dev"), "2026-04-25".parse().unwrap(), 90).await;
}

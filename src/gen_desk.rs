//! gen_desk: fills a database with a synthetic company at the web desk's
//! scale (by default 100,000 cases over 1,000,000 invoices and 5,000
//! clients, three years of history) for `bench web`. Rows are written
//! straight into the tables, bypassing the flow (which would take hours at
//! this size), but in the shape the flow leaves them: every case has its
//! invoices, its opening message, its status history and an audit event in
//! the hash chain; open cases have a call brief, some a pending reply and an
//! open task; most old invoices are paid. About a fifth of the cases are
//! open (a heavy desk: the list and the dashboard read the open ones).
//!
//! Deterministic: the same arguments and day give the same rows. The SQL is
//! built from generated values only (numbers and fixed words), never from
//! input, so multi-row VALUES literals are safe and far faster than a bound
//! statement per row.

use crate::domain::{Category, Role, Status};
use crate::store::audit::{self, Actor, Event};
use crate::store::{Backend, Store, StoreError};
use chrono::{Duration, NaiveDate};

#[derive(Debug, thiserror::Error)]
pub enum GenDeskError {
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("the database already holds {0} cases: give an empty database")]
    NotEmpty(i64),
    #[error("cannot hash the demo password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for GenDeskError {
    fn from(e: sqlx::Error) -> Self {
        GenDeskError::Store(StoreError::from(e))
    }
}

/// The sizes to generate.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct DeskSpec {
    pub cases: usize,
    pub invoices: usize,
    pub clients: usize,
}

/// What was written, and the logins to use.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeskGenerated {
    pub cases: usize,
    pub open_cases: usize,
    pub invoices: usize,
    pub unpaid_invoices: usize,
    pub clients: usize,
    pub users: usize,
    pub pending_drafts: usize,
    pub manager_email: String,
    pub password: String,
    pub seconds: f64,
}

/// The password of every generated user (a benchmark database, not a real one).
pub const PASSWORD: &str = "bench-desk-2026";

/// Rows per INSERT statement.
const CHUNK: usize = 500;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// The generated staff: (id, role, name). Sales reps own price and quantity
/// disputes, technical leads non-conformities and delays, accountants the
/// rest.
fn staff() -> Vec<(String, Role, String)> {
    let mut v = vec![("M01".to_string(), Role::Manager, "Manager 01".to_string())];
    for i in 1..=3 {
        v.push((format!("A{i:02}"), Role::Accountant, format!("Accountant {i:02}")));
    }
    for i in 1..=20 {
        v.push((format!("S{i:02}"), Role::Sales, format!("Sales {i:02}")));
    }
    for i in 1..=8 {
        v.push((format!("T{i:02}"), Role::Technical, format!("Technical {i:02}")));
    }
    v
}

fn owner_of(category: Category, client: usize) -> String {
    match category {
        Category::Price | Category::Quantity => format!("S{:02}", client % 20 + 1),
        Category::NonConformity | Category::ProjectDelay => format!("T{:02}", client % 8 + 1),
        _ => format!("A{:02}", client % 3 + 1),
    }
}

async fn exec(tx: &mut crate::store::Tx, sql: String) -> Result<(), GenDeskError> {
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **tx).await?;
    Ok(())
}

/// Appends `rows` (each already a "(…)" tuple) to `table` in chunks.
async fn insert_rows(tx: &mut crate::store::Tx, table: &str, cols: &str, rows: &mut Vec<String>, force: bool) -> Result<(), GenDeskError> {
    if rows.is_empty() || (!force && rows.len() < CHUNK) {
        return Ok(());
    }
    let sql = format!("INSERT INTO {table} ({cols}) VALUES {}", rows.join(","));
    rows.clear();
    exec(tx, sql).await
}

fn iso(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Writes the company into `store`, which must hold no cases yet. `today`
/// anchors the history (three years up to it); `now` is its epoch second.
pub async fn generate(store: &Store, spec: DeskSpec, today: NaiveDate) -> Result<DeskGenerated, GenDeskError> {
    let started = std::time::Instant::now();
    for (what, n) in [("cases", spec.cases), ("invoices", spec.invoices), ("clients", spec.clients)] {
        if n == 0 {
            return Err(GenDeskError::Zero(what));
        }
    }
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases").fetch_one(&store.pool).await?;
    if existing > 0 {
        return Err(GenDeskError::NotEmpty(existing));
    }
    let now = today.and_hms_opt(12, 0, 0).expect("noon").and_utc().timestamp();
    let day = 86_400_i64;
    let history_days = 3 * 365_i64;
    let mut rng = Lcg(0x5eed_0006);
    let hash = tokio::task::spawn_blocking(|| crate::web::auth::hash_password(PASSWORD)).await.map_err(|e| GenDeskError::Hash(e.to_string()))?.map_err(|e| GenDeskError::Hash(e.to_string()))?;

    let mut tx = store.begin().await?;
    // People.
    let staff = staff();
    let mut rows = vec![];
    for (id, role, name) in &staff {
        rows.push(format!("('{id}', '{name}', '{}@bench-desk.test', '{}', '{hash}', {now})", id.to_lowercase(), role.as_str()));
    }
    insert_rows(&mut tx, "users", "id, name, email, role, password_hash, created_at", &mut rows, true).await?;
    // Clients.
    for c in 0..spec.clients {
        rows.push(format!("('C{c:06}', 'Client {c:06}', 'client{c}.bench-desk.test', 'S{:02}', {}, '{}', {now})", c % 20 + 1, (c % 25 == 0) as i64, if c % 6 == 0 { "en" } else { "fr" }));
        insert_rows(&mut tx, "clients", "id, name, email_domains, account_owner, strategic, language, created_at", &mut rows, false).await?;
    }
    insert_rows(&mut tx, "clients", "id, name, email_domains, account_owner, strategic, language, created_at", &mut rows, true).await?;

    // Invoices: invoice i belongs to client i % clients, issued over three
    // years; the old ones are almost all paid.
    let inv_cols = "number, client_id, issue_date, due_date, amount_cents, currency, status, updated_at, paid_cents, paid_date";
    let mut amounts = Vec::with_capacity(spec.invoices);
    let mut unpaid = 0;
    for i in 0..spec.invoices {
        let age = rng.next(history_days as u64) as i64;
        let issue = today - Duration::days(age);
        let due = issue + Duration::days([30, 45, 60][rng.next(3) as usize]);
        let amount = 20_000 + rng.next(2_000_000) as i64;
        amounts.push(amount);
        let late = (today - due).num_days();
        let roll = rng.next(100);
        let (status, paid, paid_date) = match (late, roll) {
            (..=0, 0..=84) | (1..=120, 70..=93) | (121.., 99) => ("open", 0, None),
            (1..=120, 94..) => ("partially_paid", amount / 2, Some(due)),
            _ => ("paid", amount, Some(due + Duration::days(rng.next(40) as i64 - 10))),
        };
        if status != "paid" {
            unpaid += 1;
        }
        rows.push(format!(
            "('FB-{i:07}', 'C{:06}', '{}', '{}', {amount}, 'EUR', '{status}', {now}, {paid}, {})",
            i % spec.clients,
            iso(issue),
            iso(due),
            paid_date.map(|d| format!("'{}'", iso(d))).unwrap_or_else(|| "NULL".into())
        ));
        insert_rows(&mut tx, "invoices", inv_cols, &mut rows, false).await?;
    }
    insert_rows(&mut tx, "invoices", inv_cols, &mut rows, true).await?;

    // Cases, with their invoices, opening message, history, drafts, tasks.
    let case_cols = "id, kind, client_id, category, status, owner_id, priority, priority_reason, amount_cents, disputed_cents, language, opened_at, updated_at, closed_at, deadline, first_at";
    let (mut ci, mut msgs, mut hist, mut drafts, mut tasks) = (vec![], vec![], vec![], vec![], vec![]);
    let open_statuses = [Status::Open, Status::InAnalysis, Status::WaitingClient, Status::AdjustmentApproved, Status::Refused];
    let (mut open_cases, mut pending) = (0, 0);
    let mut events: Vec<(i64, String)> = Vec::with_capacity(spec.cases);
    for k in 0..spec.cases {
        let id = k as i64 + 1;
        let inv = rng.next(spec.invoices as u64) as usize;
        let client = inv % spec.clients;
        let dispute = rng.next(4) != 0;
        let category = if dispute { Category::ALL[rng.next(5) as usize] } else { [Category::PromiseToPay, Category::PaymentNotice, Category::InvoiceRequest][rng.next(3) as usize] };
        let opened = now - rng.next((history_days * day) as u64) as i64;
        let wrote = opened - rng.next(3 * 3600) as i64;
        let age_days = (now - opened) / day;
        let status = if (age_days > 90 && rng.next(100) < 82) || (age_days <= 90 && rng.next(100) < 30) { Status::Resolved } else { open_statuses[rng.next(5) as usize] };
        let closed = (status == Status::Resolved).then(|| (opened + day + rng.next((45 * day) as u64) as i64).min(now));
        let owner = owner_of(category, client);
        let priority = rng.next(100) as i64;
        let amount = amounts[inv];
        let disputed = if dispute { format!("{}", amount / (2 + rng.next(5) as i64)) } else { "NULL".into() };
        let deadline = if status == Status::Resolved { "NULL".to_string() } else { format!("'{}'", iso(today + Duration::days(rng.next(20) as i64 - 5))) };
        let lang = if client % 6 == 0 { "en" } else { "fr" };
        if status != Status::Resolved {
            open_cases += 1;
        }
        rows.push(format!(
            "({id}, '{}', 'C{client:06}', '{}', '{}', '{owner}', {priority}, 'generated', {amount}, {disputed}, '{lang}', {opened}, {}, {}, {deadline}, {wrote})",
            if dispute { "dispute" } else { "request" },
            category.as_str(),
            status.as_str(),
            closed.unwrap_or(opened),
            closed.map(|c| c.to_string()).unwrap_or_else(|| "NULL".into())
        ));
        ci.push(format!("({id}, 'FB-{inv:07}')"));
        msgs.push(format!(
            "('in', '<case-{id}@client{client}.bench-desk.test>', 'gen-desk-{id}', 'gen-desk', {opened}, 'processed', 'Facture FB-{inv:07}', 'compta@client{client}.bench-desk.test', {wrote}, 'C{client:06}', 'invoice_number', 0.95, '{}', {id}, 'case', '{owner}', {opened})",
            category.as_str()
        ));
        hist.push(format!("({id}, NULL, 'open', 'policy:routing', 'case opened', {opened})"));
        if let Some(c) = closed {
            hist.push(format!("({id}, 'open', 'resolved', '{owner}', 'generated', {c})"));
        } else {
            drafts.push(format!("({id}, 'brief', '{lang}', NULL, 'Appel client C{client:06}', 'Brief of case {id}: invoice FB-{inv:07}, {} disputed.', 'pending', 'brief-v1', {opened})", category.as_str()));
            if k % 6 == 0 {
                pending += 1;
                drafts.push(format!("({id}, 'reply', '{lang}', 'compta@client{client}.bench-desk.test', 'Re: Facture FB-{inv:07}', 'Bonjour, nous avons bien reçu votre message au sujet de la facture FB-{inv:07}.', 'pending', 'reply-v1', {})", opened + 60));
            }
            if k % 4 == 0 {
                tasks.push(format!("({id}, 'call_client', '{owner}', 'open', 'Call about FB-{inv:07}', {opened})"));
            }
        }
        events.push((id, format!("C{client:06}")));
        // The rows that point at cases go in after their cases.
        let last = k + 1 == spec.cases;
        if rows.len() >= CHUNK || last {
            insert_rows(&mut tx, "cases", case_cols, &mut rows, true).await?;
            insert_rows(&mut tx, "case_invoices", "case_id, invoice_number", &mut ci, true).await?;
            insert_rows(&mut tx, "messages", "direction, message_id, content_hash, source, received_at, state, subject, from_addr, date_at, client_id, link_method, link_confidence, category, case_id, disposition, owner_id, processed_at", &mut msgs, true).await?;
            insert_rows(&mut tx, "case_status_history", "case_id, from_status, to_status, actor, reason, at", &mut hist, true).await?;
            insert_rows(&mut tx, "drafts", "case_id, kind, language, to_addr, subject, body, status, template, created_at", &mut drafts, true).await?;
            insert_rows(&mut tx, "tasks", "case_id, kind, owner_id, status, note, created_at", &mut tasks, true).await?;
        }
    }
    // Their raw bytes (a short message each), built from the rows.
    exec(
        &mut tx,
        match store.backend {
            Backend::Postgres => "INSERT INTO message_raw (message_id, raw) SELECT id, convert_to('Subject: ' || subject || E'\\r\\nMessage-ID: ' || message_id || E'\\r\\n\\r\\nGenerated message.\\r\\n', 'UTF8') FROM messages WHERE source = 'gen-desk'",
            Backend::Sqlite => "INSERT INTO message_raw (message_id, raw) SELECT id, CAST('Subject: ' || subject || char(13, 10) || 'Message-ID: ' || message_id || char(13, 10, 13, 10) || 'Generated message.' || char(13, 10) AS BLOB) FROM messages WHERE source = 'gen-desk'",
        }
        .into(),
    )
    .await?;
    // Explicit ids do not move a PostgreSQL sequence.
    if store.backend == Backend::Postgres {
        exec(&mut tx, "SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT MAX(id) FROM cases))".into()).await?;
    }
    // The audit trail: one chained event per generated case.
    for (id, client) in &events {
        audit::append(
            &mut tx,
            store.backend,
            Event { actor: &Actor::Policy("gen-desk".into()), case_id: Some(*id), entity: "case", entity_id: id.to_string(), action: "generated", detail: serde_json::json!({"client": client}) },
        )
        .await?;
    }
    tx.commit().await?;
    // Planner statistics for the new sizes.
    sqlx::query("ANALYZE").execute(&store.pool).await?;
    tracing::info!(cases = spec.cases, invoices = spec.invoices, clients = spec.clients, "desk generated");
    Ok(DeskGenerated {
        cases: spec.cases,
        open_cases,
        invoices: spec.invoices,
        unpaid_invoices: unpaid,
        clients: spec.clients,
        users: staff.len(),
        pending_drafts: pending,
        manager_email: "m01@bench-desk.test".into(),
        password: PASSWORD.into(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_the_routing_of_the_demo_policy() {
        assert!(owner_of(Category::Price, 3).starts_with('S'));
        assert!(owner_of(Category::NonConformity, 3).starts_with('T'));
        assert!(owner_of(Category::AdminError, 3).starts_with('A'));
        assert_eq!(staff().iter().filter(|s| s.1 == Role::Manager).count(), 1);
    }

    #[tokio::test]
    async fn a_small_desk_has_the_counts_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("d.db").display())).await.unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let g = generate(&store, DeskSpec { cases: 1_200, invoices: 3_000, clients: 50 }, today).await.unwrap();
        let count = |sql: &'static str| {
            let pool = store.pool.clone();
            async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
        };
        assert_eq!(count("SELECT COUNT(*) FROM cases").await, 1_200);
        assert_eq!(count("SELECT COUNT(*) FROM invoices").await, 3_000);
        assert_eq!(count("SELECT COUNT(*) FROM clients").await, 50);
        assert_eq!(count("SELECT COUNT(*) FROM case_invoices").await, 1_200);
        assert_eq!(count("SELECT COUNT(*) FROM cases WHERE status <> 'resolved'").await, g.open_cases as i64);
        assert_eq!(count("SELECT COUNT(*) FROM drafts WHERE status = 'pending' AND kind <> 'brief'").await, g.pending_drafts as i64);
        assert_eq!(count("SELECT COUNT(*) FROM invoices WHERE status <> 'paid'").await, g.unpaid_invoices as i64);
        assert!(g.open_cases > 0 && g.open_cases < 1_200 && g.pending_drafts > 0);
        // Every case's invoice belongs to the case's client.
        assert_eq!(count("SELECT COUNT(*) FROM cases c JOIN case_invoices ci ON ci.case_id = c.id JOIN invoices i ON i.number = ci.invoice_number WHERE i.client_id <> c.client_id").await, 0);
        assert_eq!(crate::store::audit::verify(&store).await.unwrap(), crate::store::audit::Verdict::Intact { rows: 1_200 });
        assert!(matches!(generate(&store, DeskSpec { cases: 1, invoices: 1, clients: 1 }, today).await, Err(GenDeskError::NotEmpty(1_200))));
    }
}

//! store::cases: cases, their invoices and status history, tasks and drafts.
//! Every function that changes a case takes the caller's transaction; the
//! caller appends the audit event in the same transaction.

use super::{now, Result, Store, StoreError, Tx};
use crate::domain::{InvoiceNumber, Status};
use crate::flow::decide::{CaseKind, OpenCase, Staff};
use sqlx::Row;

#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseRow {
    pub id: i64,
    pub kind: String,
    pub client_id: String,
    pub client_name: String,
    pub category: String,
    pub status: String,
    pub owner_id: Option<String>,
    pub priority: i64,
    pub priority_reason: String,
    pub amount_cents: i64,
    pub disputed_cents: Option<i64>,
    pub language: String,
    pub opened_at: i64,
    pub updated_at: i64,
    /// Service-level deadline of the current status, if it has one.
    pub deadline: Option<String>,
    /// Past its deadline and escalated: listed first.
    pub escalated: bool,
    pub invoices: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskRow {
    pub id: i64,
    pub case_id: Option<i64>,
    pub invoice_number: Option<String>,
    pub message_id: Option<i64>,
    pub kind: String,
    pub owner_id: Option<String>,
    pub status: String,
    pub note: String,
    pub due_date: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DraftRow {
    pub id: i64,
    pub case_id: Option<i64>,
    pub message_id: Option<i64>,
    pub kind: String,
    pub language: String,
    pub to_addr: Option<String>,
    pub subject: String,
    pub body: String,
    pub status: String,
    pub template: String,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusChange {
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub reason: Option<String>,
    pub at: i64,
}

/// A new case to insert.
#[derive(Debug, Clone)]
pub struct NewCase<'a> {
    pub kind: CaseKind,
    pub client_id: &'a str,
    pub category: &'a str,
    pub status: Status,
    pub owner_id: Option<&'a str>,
    pub priority: i64,
    pub priority_reason: &'a str,
    pub amount_cents: i64,
    pub disputed_cents: Option<i64>,
    pub language: &'a str,
    /// The SLA deadline of the opening status.
    pub deadline: Option<chrono::NaiveDate>,
    /// When the client wrote the message that opens it (`first_at` is the
    /// earlier of this and now).
    pub client_wrote_at: Option<i64>,
}

/// A new task to insert.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    pub case_id: Option<i64>,
    pub invoice_number: Option<&'a str>,
    pub message_id: Option<i64>,
    pub kind: &'a str,
    pub owner_id: Option<&'a str>,
    pub note: &'a str,
    pub due_date: Option<String>,
}

/// A new draft to insert (status pending).
#[derive(Debug, Clone)]
pub struct NewDraft<'a> {
    pub case_id: Option<i64>,
    pub message_id: Option<i64>,
    pub kind: &'a str,
    pub language: &'a str,
    pub to_addr: Option<&'a str>,
    pub subject: &'a str,
    pub body: &'a str,
    pub template: &'a str,
}

fn case_from_row(r: &sqlx::any::AnyRow) -> Result<CaseRow> {
    Ok(CaseRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        client_id: r.try_get("client_id")?,
        client_name: r.try_get("client_name")?,
        category: r.try_get("category")?,
        status: r.try_get("status")?,
        owner_id: r.try_get("owner_id")?,
        priority: r.try_get("priority")?,
        priority_reason: r.try_get("priority_reason")?,
        amount_cents: r.try_get("amount_cents")?,
        disputed_cents: r.try_get("disputed_cents")?,
        language: r.try_get("language")?,
        opened_at: r.try_get("opened_at")?,
        updated_at: r.try_get("updated_at")?,
        deadline: r.try_get("deadline")?,
        escalated: r.try_get::<Option<i64>, _>("escalated_at")?.is_some() && r.try_get::<String, _>("status")? != "resolved",
        invoices: vec![],
    })
}

pub(crate) fn draft_from_row(r: &sqlx::any::AnyRow) -> Result<DraftRow> {
    Ok(DraftRow {
        id: r.try_get("id")?,
        case_id: r.try_get("case_id")?,
        message_id: r.try_get("message_id")?,
        kind: r.try_get("kind")?,
        language: r.try_get("language")?,
        to_addr: r.try_get("to_addr")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        status: r.try_get("status")?,
        template: r.try_get("template")?,
        created_at: r.try_get("created_at")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get("decided_at")?,
        reason: r.try_get("reason")?,
    })
}

const DRAFT_COLS: &str = "id, case_id, message_id, kind, language, to_addr, subject, body, status, template, created_at, decided_by, decided_at, reason";

const CASE_SELECT: &str = "SELECT c.id, c.kind, c.client_id, cl.name AS client_name, c.category, c.status, c.owner_id, c.priority, c.priority_reason, \
     c.amount_cents, c.disputed_cents, c.language, c.opened_at, c.updated_at, c.deadline, c.escalated_at FROM cases c JOIN clients cl ON cl.id = c.client_id";

impl Store {
    /// Users with their current load (open cases and open tasks they hold).
    pub async fn staff(&self) -> Result<Vec<Staff>> {
        let rows = sqlx::query(
            "SELECT u.id, u.role, \
             (SELECT COUNT(*) FROM cases c WHERE c.owner_id = u.id AND c.status <> 'resolved') + \
             (SELECT COUNT(*) FROM tasks t WHERE t.owner_id = u.id AND t.status = 'open') AS load \
             FROM users u ORDER BY u.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                Ok(Staff { id: r.try_get("id")?, role: role.parse().map_err(|e: crate::domain::DomainError| StoreError::Invalid(e.to_string()))?, load: r.try_get("load")? })
            })
            .collect()
    }

    /// The client's cases that are not resolved, newest first.
    /// On the given connection: the flow reads them inside its transaction,
    /// so that a batch sees the cases its earlier messages opened.
    pub async fn open_cases_of(c: &mut sqlx::AnyConnection, client_id: &str) -> Result<Vec<OpenCase>> {
        // The cases and their invoices in one query, walking from the
        // client's cases (index on client_id) into case_invoices by its key:
        // a join from case_invoices made PostgreSQL scan that table.
        let rows = sqlx::query(
            "SELECT c.id, c.kind, c.status, c.owner_id, c.priority, c.priority_reason, ci.invoice_number FROM cases c LEFT JOIN case_invoices ci ON ci.case_id = c.id \
             WHERE c.client_id = $1 AND c.status <> 'resolved' ORDER BY c.id DESC, ci.invoice_number",
        )
        .bind(client_id)
        .fetch_all(&mut *c)
        .await?;
        let mut out: Vec<OpenCase> = Vec::new();
        for r in rows {
            let id: i64 = r.try_get("id")?;
            if out.last().map(|o| o.id) != Some(id) {
                let kind: String = r.try_get("kind")?;
                let status: String = r.try_get("status")?;
                out.push(OpenCase {
                    id,
                    kind: if kind == "dispute" { CaseKind::Dispute } else { CaseKind::Request },
                    status: status.parse().map_err(|e: crate::domain::DomainError| StoreError::Invalid(e.to_string()))?,
                    owner_id: r.try_get("owner_id")?,
                    invoices: Vec::new(),
                    priority: r.try_get("priority")?,
                    priority_reason: r.try_get("priority_reason")?,
                });
            }
            if let Some(n) = r.try_get::<Option<String>, _>("invoice_number")?.and_then(|n| InvoiceNumber::parse(&n).ok()) {
                if let Some(last) = out.last_mut() {
                    last.invoices.push(n);
                }
            }
        }
        Ok(out)
    }

    pub async fn case_invoices(&self, case_id: i64) -> Result<Vec<String>> {
        let mut c = self.pool.acquire().await?;
        Self::case_invoices_in(&mut c, case_id).await
    }

    async fn case_invoices_in(c: &mut sqlx::AnyConnection, case_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query("SELECT invoice_number FROM case_invoices WHERE case_id = $1 ORDER BY invoice_number")
            .bind(case_id)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?)
    }

    pub async fn insert_case(&self, tx: &mut Tx, c: &NewCase<'_>, invoices: &[InvoiceNumber], actor: &str) -> Result<i64> {
        let t = now();
        let id: i64 = sqlx::query(
            "INSERT INTO cases (kind, client_id, category, status, owner_id, priority, priority_reason, amount_cents, disputed_cents, language, opened_at, updated_at, first_at, deadline) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13) RETURNING id",
        )
        .bind(c.kind.as_str())
        .bind(c.client_id)
        .bind(c.category)
        .bind(c.status.as_str())
        .bind(c.owner_id)
        .bind(c.priority)
        .bind(c.priority_reason)
        .bind(c.amount_cents)
        .bind(c.disputed_cents)
        .bind(c.language)
        .bind(t)
        .bind(c.client_wrote_at.map_or(t, |at| at.min(t)))
        .bind(c.deadline.map(|d| d.to_string()))
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        self.add_case_invoices(tx, id, invoices).await?;
        sqlx::query("INSERT INTO case_status_history (case_id, from_status, to_status, actor, reason, at) VALUES ($1, NULL, $2, $3, 'case opened', $4)")
            .bind(id)
            .bind(c.status.as_str())
            .bind(actor)
            .bind(t)
            .execute(&mut **tx)
            .await?;
        Ok(id)
    }

    /// Adds `invoices` to case `case_id` in one statement (one already on
    /// the case is kept).
    pub async fn add_case_invoices(&self, tx: &mut Tx, case_id: i64, invoices: &[InvoiceNumber]) -> Result<()> {
        super::insert_invoice_links(tx, "case_invoices", "case_id", case_id, invoices).await
    }

    /// Moves a case from `from` to `to` (refused if it is no longer in `from`).
    pub async fn set_case_status(&self, tx: &mut Tx, case_id: i64, from: Status, to: Status, actor: &str, reason: Option<&str>) -> Result<()> {
        let t = now();
        let closed = if to.is_closed() { Some(t) } else { None };
        let done = sqlx::query("UPDATE cases SET status = $1, updated_at = $2, closed_at = $3 WHERE id = $4 AND status = $5")
            .bind(to.as_str())
            .bind(t)
            .bind(closed)
            .bind(case_id)
            .bind(from.as_str())
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("case {case_id} is no longer {from}")));
        }
        sqlx::query("INSERT INTO case_status_history (case_id, from_status, to_status, actor, reason, at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(case_id)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(actor)
            .bind(reason)
            .bind(t)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// A message was attached to the case: `updated_at` is now, and
    /// `first_at` the earliest date the client wrote (`wrote_at`, when known).
    pub async fn touch_case(&self, tx: &mut Tx, case_id: i64, wrote_at: Option<i64>) -> Result<()> {
        match wrote_at {
            Some(at) => sqlx::query("UPDATE cases SET updated_at = $1, first_at = CASE WHEN first_at IS NULL OR $3 < first_at THEN $3 ELSE first_at END WHERE id = $2").bind(now()).bind(case_id).bind(at),
            None => sqlx::query("UPDATE cases SET updated_at = $1 WHERE id = $2").bind(now()).bind(case_id),
        }
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn insert_task(&self, tx: &mut Tx, t: &NewTask<'_>) -> Result<i64> {
        Ok(sqlx::query(
            "INSERT INTO tasks (case_id, invoice_number, message_id, kind, owner_id, status, note, due_date, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8) RETURNING id",
        )
        .bind(t.case_id)
        .bind(t.invoice_number)
        .bind(t.message_id)
        .bind(t.kind)
        .bind(t.owner_id)
        .bind(t.note)
        .bind(t.due_date.clone())
        .bind(now())
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?)
    }

    pub async fn insert_draft(&self, tx: &mut Tx, d: &NewDraft<'_>) -> Result<i64> {
        Ok(self.insert_drafts(tx, std::slice::from_ref(d)).await?[0])
    }

    /// [`Store::insert_draft`] for several drafts in one statement (a
    /// message's reply and brief): their ids, in the order of `ds`. The rows
    /// come back with their kind, which tells them apart; drafts that share a
    /// kind are inserted one by one, as nothing else would tell their ids.
    pub async fn insert_drafts(&self, tx: &mut Tx, ds: &[NewDraft<'_>]) -> Result<Vec<i64>> {
        let distinct = ds.iter().enumerate().all(|(i, d)| ds[..i].iter().all(|e| e.kind != d.kind));
        if distinct {
            return Self::insert_distinct_drafts(tx, ds).await;
        }
        let mut ids = Vec::with_capacity(ds.len());
        for d in ds {
            ids.extend(Self::insert_distinct_drafts(tx, std::slice::from_ref(d)).await?);
        }
        Ok(ids)
    }

    async fn insert_distinct_drafts(tx: &mut Tx, ds: &[NewDraft<'_>]) -> Result<Vec<i64>> {
        if ds.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "INSERT INTO drafts (case_id, message_id, kind, language, to_addr, subject, body, template, created_at, status) VALUES {} RETURNING id, kind",
            super::values(ds.len(), 9, "'pending'")
        );
        let at = now();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for d in ds {
            q = q.bind(d.case_id).bind(d.message_id).bind(d.kind).bind(d.language).bind(d.to_addr).bind(d.subject).bind(d.body).bind(d.template).bind(at);
        }
        let mut by_kind: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for r in q.fetch_all(&mut **tx).await? {
            by_kind.insert(r.try_get(1)?, r.try_get(0)?);
        }
        ds.iter().map(|d| by_kind.get(d.kind).copied().ok_or_else(|| StoreError::Invalid(format!("no id came back for the {} draft", d.kind)))).collect()
    }

    /// Records a promise to pay on invoices.
    pub async fn record_promise(&self, tx: &mut Tx, invoices: &[InvoiceNumber], date: Option<&str>) -> Result<()> {
        for n in invoices {
            sqlx::query("UPDATE invoices SET promised_date = COALESCE($1, promised_date), updated_at = $2 WHERE number = $3")
                .bind(date)
                .bind(now())
                .bind(n.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Records that the client says it paid these invoices.
    pub async fn record_payment_notice(&self, tx: &mut Tx, invoices: &[InvoiceNumber]) -> Result<()> {
        for n in invoices {
            sqlx::query("UPDATE invoices SET payment_noticed_at = $1, updated_at = $1 WHERE number = $2").bind(now()).bind(n.as_str()).execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub async fn cases(&self, status: Option<&str>, owner: Option<&str>) -> Result<Vec<CaseRow>> {
        let (w, vals) = super::where_eq(&[("c.status", status.map(super::Val::from)), ("c.owner_id", owner.map(super::Val::from))]);
        let sql = format!("{CASE_SELECT}{w} ORDER BY CASE WHEN c.escalated_at IS NOT NULL AND c.status <> 'resolved' THEN 0 ELSE 1 END, c.priority DESC, c.id");
        let rows = super::bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &vals).fetch_all(&self.pool).await?;
        let mut out = rows.iter().map(case_from_row).collect::<Result<Vec<_>>>()?;
        self.attach_invoices(&mut out).await?;
        Ok(out)
    }

    /// The open cases of `owner`, escalated first, then by priority.
    pub async fn open_cases_of_owner(&self, owner: &str) -> Result<Vec<CaseRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CASE_SELECT} WHERE c.owner_id = $1 AND c.status <> 'resolved' ORDER BY CASE WHEN c.escalated_at IS NOT NULL THEN 0 ELSE 1 END, c.priority DESC, c.id"
        )))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows.iter().map(case_from_row).collect::<Result<Vec<_>>>()?;
        self.attach_invoices(&mut out).await?;
        Ok(out)
    }

    /// Fills `invoices` of every case, a query per 500 cases.
    async fn attach_invoices(&self, cases: &mut [CaseRow]) -> Result<()> {
        for chunk in cases.chunks_mut(500) {
            let list = chunk.iter().map(|c| c.id.to_string()).collect::<Vec<_>>().join(",");
            let mut by_id: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
            for r in sqlx::query(sqlx::AssertSqlSafe(format!("SELECT case_id, invoice_number FROM case_invoices WHERE case_id IN ({list}) ORDER BY invoice_number"))).fetch_all(&self.pool).await? {
                by_id.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
            }
            for c in chunk.iter_mut() {
                c.invoices = by_id.remove(&c.id).unwrap_or_default();
            }
        }
        Ok(())
    }

    /// The latest call brief of each of these cases, a query per 500 cases.
    pub async fn latest_briefs(&self, case_ids: &[i64]) -> Result<std::collections::HashMap<i64, String>> {
        let mut out = std::collections::HashMap::new();
        for chunk in case_ids.chunks(500) {
            let list = chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            for r in sqlx::query(sqlx::AssertSqlSafe(format!("SELECT case_id, body FROM drafts WHERE kind = 'brief' AND case_id IN ({list}) ORDER BY id"))).fetch_all(&self.pool).await? {
                out.insert(r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?);
            }
        }
        Ok(out)
    }

    /// The open tasks of each of these cases ("kind: note"), oldest first.
    pub async fn open_task_notes(&self, case_ids: &[i64]) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        let mut out: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        for chunk in case_ids.chunks(500) {
            let list = chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            for r in sqlx::query(sqlx::AssertSqlSafe(format!("SELECT case_id, kind, note FROM tasks WHERE status = 'open' AND case_id IN ({list}) ORDER BY id"))).fetch_all(&self.pool).await? {
                out.entry(r.try_get(0)?).or_default().push(format!("{}: {}", r.try_get::<String, _>(1)?, r.try_get::<String, _>(2)?));
            }
        }
        Ok(out)
    }

    /// The cases with these ids, in the order given (ids that do not exist
    /// are left out), with their invoices: two queries for a whole page.
    pub async fn cases_by_ids(&self, ids: &[i64]) -> Result<Vec<CaseRow>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let mut by_id: std::collections::HashMap<i64, CaseRow> = std::collections::HashMap::with_capacity(ids.len());
        for r in sqlx::query(sqlx::AssertSqlSafe(format!("{CASE_SELECT} WHERE c.id IN ({list})"))).fetch_all(&self.pool).await? {
            let c = case_from_row(&r)?;
            by_id.insert(c.id, c);
        }
        let mut out: Vec<CaseRow> = ids.iter().filter_map(|i| by_id.remove(i)).collect();
        self.attach_invoices(&mut out).await?;
        Ok(out)
    }

    pub async fn case(&self, id: i64) -> Result<CaseRow> {
        let mut c = self.pool.acquire().await?;
        Self::case_in(&mut c, id).await
    }

    /// [`Store::case`] on a given connection (the flow's transaction).
    pub async fn case_in(conn: &mut sqlx::AnyConnection, id: i64) -> Result<CaseRow> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("{CASE_SELECT} WHERE c.id = $1")))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("case {id}")))?;
        let mut c = case_from_row(&r)?;
        c.invoices = Self::case_invoices_in(conn, id).await?;
        Ok(c)
    }

    pub async fn status_history(&self, case_id: i64) -> Result<Vec<StatusChange>> {
        let rows = sqlx::query("SELECT from_status, to_status, actor, reason, at FROM case_status_history WHERE case_id = $1 ORDER BY id").bind(case_id).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(StatusChange { from_status: r.try_get("from_status")?, to_status: r.try_get("to_status")?, actor: r.try_get("actor")?, reason: r.try_get("reason")?, at: r.try_get("at")? }))
            .collect()
    }

    pub async fn tasks(&self, case_id: Option<i64>, owner: Option<&str>, status: Option<&str>) -> Result<Vec<TaskRow>> {
        let (w, vals) = super::where_eq(&[("case_id", case_id.map(super::Val::from)), ("owner_id", owner.map(super::Val::from)), ("status", status.map(super::Val::from))]);
        let sql = format!("SELECT id, case_id, invoice_number, message_id, kind, owner_id, status, note, due_date, created_at FROM tasks{w} ORDER BY id");
        let rows = super::bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &vals).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(TaskRow {
                    id: r.try_get("id")?,
                    case_id: r.try_get("case_id")?,
                    invoice_number: r.try_get("invoice_number")?,
                    message_id: r.try_get("message_id")?,
                    kind: r.try_get("kind")?,
                    owner_id: r.try_get("owner_id")?,
                    status: r.try_get("status")?,
                    note: r.try_get("note")?,
                    due_date: r.try_get("due_date")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn drafts(&self, status: Option<&str>, case_id: Option<i64>) -> Result<Vec<DraftRow>> {
        let (w, vals) = super::where_eq(&[("status", status.map(super::Val::from)), ("case_id", case_id.map(super::Val::from))]);
        let sql = format!("SELECT {DRAFT_COLS} FROM drafts{w} ORDER BY id");
        let rows = super::bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &vals).fetch_all(&self.pool).await?;
        rows.iter().map(draft_from_row).collect()
    }

    /// How many drafts to clients wait for approval.
    pub async fn pending_drafts_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM drafts WHERE status = 'pending' AND kind <> 'brief'").fetch_one(&self.pool).await?)
    }

    /// One page of the approval queue: pending drafts to clients, oldest first.
    pub async fn pending_drafts_page(&self, limit: i64, offset: i64) -> Result<Vec<DraftRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DRAFT_COLS} FROM drafts WHERE status = 'pending' AND kind <> 'brief' ORDER BY id LIMIT $1 OFFSET $2"))).bind(limit).bind(offset).fetch_all(&self.pool).await?;
        rows.iter().map(draft_from_row).collect()
    }

    pub async fn draft(&self, id: i64) -> Result<DraftRow> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DRAFT_COLS} FROM drafts WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("draft {id}")))?;
        draft_from_row(&r)
    }
}

//! store::workflow: service-level deadlines and escalations, reassignment,
//! reminder blocks and the reminder ledger, payments. Every function that
//! changes a case or an invoice takes the caller's transaction; the caller
//! appends the audit event in the same transaction.

use super::{now, Result, Store, StoreError, Tx};
use crate::domain::InvoiceNumber;
use chrono::NaiveDate;
use sqlx::Row;

/// An unpaid invoice the reminder schedule looks at.
#[derive(Debug, Clone)]
pub struct DueRow {
    pub number: String,
    pub client_id: String,
    pub due_date: NaiveDate,
    pub issue_date: String,
    pub due_cents: i64,
    pub currency: String,
}

/// An active reminder block.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BlockRow {
    pub id: i64,
    pub invoice_number: String,
    pub reason: String,
    pub case_id: Option<i64>,
    pub from_date: String,
    pub until_date: Option<String>,
}

/// A case past its service-level deadline, not yet escalated.
#[derive(Debug, Clone)]
pub struct LateCase {
    pub id: i64,
    pub status: String,
    pub owner_id: Option<String>,
    pub deadline: String,
}

/// An open case as the priority refresh needs it.
#[derive(Debug, Clone)]
pub struct CaseForPriority {
    pub id: i64,
    pub kind: String,
    pub category: String,
    pub client_id: String,
    pub strategic: bool,
    pub amount_cents: i64,
    pub opened_at: i64,
    pub priority: i64,
    pub oldest_due: Option<String>,
}

fn date(s: &str) -> Result<NaiveDate> {
    s.parse().map_err(|e| StoreError::Invalid(format!("bad date {s:?} in the database: {e}")))
}

impl Store {
    pub async fn set_deadline(&self, tx: &mut Tx, case_id: i64, deadline: Option<NaiveDate>) -> Result<()> {
        sqlx::query("UPDATE cases SET deadline = $1, escalated_at = NULL WHERE id = $2")
            .bind(deadline.map(|d| d.to_string()))
            .bind(case_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Records the outcome of a move (adjusted amount, reason).
    pub async fn set_case_outcome(&self, tx: &mut Tx, case_id: i64, adjusted_cents: Option<i64>, reason: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE cases SET adjusted_cents = COALESCE($1, adjusted_cents), reason = COALESCE($2, reason) WHERE id = $3")
            .bind(adjusted_cents)
            .bind(reason)
            .bind(case_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn set_owner(&self, tx: &mut Tx, case_id: i64, owner: &str) -> Result<()> {
        sqlx::query("UPDATE cases SET owner_id = $1, updated_at = $2 WHERE id = $3").bind(owner).bind(now()).bind(case_id).execute(&mut **tx).await?;
        Ok(())
    }

    /// Open cases whose deadline is before `today` and that were not escalated.
    pub async fn late_cases(&self, today: NaiveDate) -> Result<Vec<LateCase>> {
        let rows = sqlx::query(
            "SELECT id, status, owner_id, deadline FROM cases WHERE status <> 'resolved' AND deadline IS NOT NULL AND deadline < $1 AND escalated_at IS NULL ORDER BY id",
        )
        .bind(today.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(LateCase { id: r.try_get("id")?, status: r.try_get("status")?, owner_id: r.try_get("owner_id")?, deadline: r.try_get("deadline")? }))
            .collect()
    }

    pub async fn mark_escalated(&self, tx: &mut Tx, case_id: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE cases SET escalated_at = $1 WHERE id = $2 AND escalated_at IS NULL").bind(now()).bind(case_id).execute(&mut **tx).await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn cases_for_priority(&self) -> Result<Vec<CaseForPriority>> {
        let rows = sqlx::query(
            "SELECT c.id, c.kind, c.category, c.client_id, cl.strategic, c.amount_cents, c.opened_at, c.priority, \
             (SELECT MIN(i.due_date) FROM case_invoices ci JOIN invoices i ON i.number = ci.invoice_number WHERE ci.case_id = c.id) AS oldest_due \
             FROM cases c JOIN clients cl ON cl.id = c.client_id WHERE c.status <> 'resolved' ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CaseForPriority {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    category: r.try_get("category")?,
                    client_id: r.try_get("client_id")?,
                    strategic: r.try_get::<i64, _>("strategic")? != 0,
                    amount_cents: r.try_get("amount_cents")?,
                    opened_at: r.try_get("opened_at")?,
                    priority: r.try_get("priority")?,
                    oldest_due: r.try_get("oldest_due")?,
                })
            })
            .collect()
    }

    pub async fn set_priority(&self, tx: &mut Tx, case_id: i64, priority: i64, reason: &str) -> Result<()> {
        sqlx::query("UPDATE cases SET priority = $1, priority_reason = $2 WHERE id = $3").bind(priority).bind(reason).bind(case_id).execute(&mut **tx).await?;
        Ok(())
    }

    // ------------------------------------------------------------ reminders

    /// Unpaid invoices due on or before `until`.
    pub async fn due_invoices(&self, until: NaiveDate) -> Result<Vec<DueRow>> {
        let rows = sqlx::query(
            "SELECT number, client_id, due_date, issue_date, amount_cents - paid_cents AS due_cents, currency FROM invoices \
             WHERE status <> 'paid' AND amount_cents > paid_cents AND due_date <= $1 ORDER BY client_id, due_date, number",
        )
        .bind(until.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueRow {
                    number: r.try_get("number")?,
                    client_id: r.try_get("client_id")?,
                    due_date: date(&r.try_get::<String, _>("due_date")?)?,
                    issue_date: r.try_get("issue_date")?,
                    due_cents: r.try_get("due_cents")?,
                    currency: r.try_get("currency")?,
                })
            })
            .collect()
    }

    /// (invoice, level) pairs already handled.
    pub async fn reminder_levels_done(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT invoice_number, level FROM invoice_reminders").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Records a level as handled; false when it already was (a concurrent run).
    #[allow(clippy::too_many_arguments)] // one per column of invoice_reminders
    pub async fn record_reminder(&self, tx: &mut Tx, invoice: &str, level: &str, run_date: NaiveDate, outcome: &str, draft_id: Option<i64>, task_id: Option<i64>) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO invoice_reminders (invoice_number, level, run_date, outcome, draft_id, task_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(invoice)
        .bind(level)
        .bind(run_date.to_string())
        .bind(outcome)
        .bind(draft_id)
        .bind(task_id)
        .bind(now())
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Blocks in force on `day`.
    pub async fn active_blocks(&self, day: NaiveDate) -> Result<Vec<BlockRow>> {
        let rows = sqlx::query(
            "SELECT id, invoice_number, reason, case_id, from_date, until_date FROM reminder_blocks \
             WHERE lifted_at IS NULL AND from_date <= $1 AND (until_date IS NULL OR until_date >= $1) ORDER BY id",
        )
        .bind(day.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(block_from_row).collect()
    }

    pub async fn blocks_of(&self, invoice: &str) -> Result<Vec<BlockRow>> {
        let rows = sqlx::query("SELECT id, invoice_number, reason, case_id, from_date, until_date FROM reminder_blocks WHERE invoice_number = $1 ORDER BY id")
            .bind(invoice)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(block_from_row).collect()
    }

    /// Pauses reminders on each of `invoices` from `from` (until `until`, or
    /// until lifted), in one statement: the new block ids, one per distinct
    /// invoice, in the order of their first mention.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_blocks(&self, tx: &mut Tx, invoices: &[InvoiceNumber], reason: &str, case_id: Option<i64>, message_id: Option<i64>, from: NaiveDate, until: Option<NaiveDate>) -> Result<Vec<(InvoiceNumber, i64)>> {
        let mut distinct: Vec<&InvoiceNumber> = Vec::with_capacity(invoices.len());
        for n in invoices {
            if !distinct.contains(&n) {
                distinct.push(n);
            }
        }
        let (from, until, at) = (from.to_string(), until.map(|d| d.to_string()), now());
        // The invoice tells the rows apart: it is distinct within the statement.
        let mut ids: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for part in distinct.chunks(super::MAX_ROWS) {
            let sql = format!(
                "INSERT INTO reminder_blocks (invoice_number, reason, case_id, message_id, from_date, until_date, created_at) VALUES {} RETURNING id, invoice_number",
                super::values(part.len(), 7, "")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in part {
                q = q.bind(n.as_str()).bind(reason).bind(case_id).bind(message_id).bind(from.clone()).bind(until.clone()).bind(at);
            }
            for r in q.fetch_all(&mut **tx).await? {
                ids.insert(r.try_get(1)?, r.try_get(0)?);
            }
        }
        distinct
            .into_iter()
            .map(|n| ids.get(n.as_str()).map(|id| (n.clone(), *id)).ok_or_else(|| StoreError::Invalid(format!("no id came back for the block on {n}"))))
            .collect()
    }

    /// Lifts the blocks a case set; returns their ids.
    pub async fn lift_case_blocks(&self, tx: &mut Tx, case_id: i64, why: &str) -> Result<Vec<i64>> {
        let ids: Vec<i64> = sqlx::query("SELECT id FROM reminder_blocks WHERE case_id = $1 AND lifted_at IS NULL ORDER BY id")
            .bind(case_id)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        sqlx::query("UPDATE reminder_blocks SET lifted_at = $1, lift_reason = $2 WHERE case_id = $3 AND lifted_at IS NULL").bind(now()).bind(why).bind(case_id).execute(&mut **tx).await?;
        Ok(ids)
    }

    /// The address a client's reminders go to: its most recent known contact.
    pub async fn client_contact(&self, client_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT email FROM contacts WHERE client_id = $1 ORDER BY created_at DESC, email LIMIT 1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    // ------------------------------------------------------------- payments

    /// Records a payment once; returns the invoice's new paid total and
    /// amount, or None when that payment was already imported.
    pub async fn add_payment(&self, tx: &mut Tx, invoice: &str, paid_on: NaiveDate, cents: i64, source: &str) -> Result<Option<(i64, i64)>> {
        let amount: i64 = sqlx::query("SELECT amount_cents FROM invoices WHERE number = $1")
            .bind(invoice)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("invoice {invoice}")))?
            .try_get(0)?;
        let done = sqlx::query("INSERT INTO payments (invoice_number, paid_on, amount_cents, source, imported_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(invoice)
            .bind(paid_on.to_string())
            .bind(cents)
            .bind(source)
            .bind(now())
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let paid: i64 = sqlx::query("SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM payments WHERE invoice_number = $1").bind(invoice).fetch_one(&mut **tx).await?.try_get(0)?;
        let status = if paid >= amount { "paid" } else { "partially_paid" };
        sqlx::query("UPDATE invoices SET paid_cents = $1, paid_date = $2, status = $3, updated_at = $4 WHERE number = $5")
            .bind(paid)
            .bind(paid_on.to_string())
            .bind(status)
            .bind(now())
            .bind(invoice)
            .execute(&mut **tx)
            .await?;
        Ok(Some((paid, amount)))
    }

    /// Pending reminder drafts that name `invoice`.
    pub async fn pending_reminder_drafts_of(&self, tx: &mut Tx, invoice: &str) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT DISTINCT r.draft_id FROM invoice_reminders r JOIN drafts d ON d.id = r.draft_id WHERE r.invoice_number = $1 AND d.status = 'pending' ORDER BY r.draft_id",
        )
        .bind(invoice)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Cancels a pending draft; the other invoices it named become due for
    /// their level again (so the next run drafts them without the paid one).
    pub async fn cancel_reminder_draft(&self, tx: &mut Tx, draft_id: i64, paid_invoice: &str, reason: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE drafts SET status = 'cancelled', decided_at = $1, reason = $2 WHERE id = $3 AND status = 'pending'")
            .bind(now())
            .bind(reason)
            .bind(draft_id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM invoice_reminders WHERE draft_id = $1 AND invoice_number <> $2").bind(draft_id).bind(paid_invoice).execute(&mut **tx).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Open cases all of whose invoices are paid.
    pub async fn settled_open_cases(&self, tx: &mut Tx, invoice: &str) -> Result<Vec<(i64, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT c.id, c.owner_id FROM cases c JOIN case_invoices ci ON ci.case_id = c.id WHERE ci.invoice_number = $1 AND c.status <> 'resolved' \
             AND NOT EXISTS (SELECT 1 FROM case_invoices x JOIN invoices i ON i.number = x.invoice_number WHERE x.case_id = c.id AND i.status <> 'paid') ORDER BY c.id",
        )
        .bind(invoice)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }
}

fn block_from_row(r: &sqlx::any::AnyRow) -> Result<BlockRow> {
    Ok(BlockRow {
        id: r.try_get("id")?,
        invoice_number: r.try_get("invoice_number")?,
        reason: r.try_get("reason")?,
        case_id: r.try_get("case_id")?,
        from_date: r.try_get("from_date")?,
        until_date: r.try_get("until_date")?,
    })
}

//! store::outbox: one row per approved draft, claimed by the sender, never
//! sent twice. A row found in `sending` after a restart is set to `uncertain`
//! (it may have reached the server): a person checks the Sent folder and
//! requeues it with `outbox retry`, so a crash never produces a second copy.

use super::{now, Backend, Result, Store, StoreError, Tx};
use sqlx::Row;

#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub draft_id: i64,
    pub message_id: String,
    pub from_addr: String,
    pub to_addrs: String,
    #[serde(skip)]
    pub raw: Vec<u8>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    /// The instance sending it (see `store::cluster`).
    pub claimed_by: Option<String>,
}

fn row(r: &sqlx::any::AnyRow) -> Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.try_get("id")?,
        draft_id: r.try_get("draft_id")?,
        message_id: r.try_get("message_id")?,
        from_addr: r.try_get("from_addr")?,
        to_addrs: r.try_get("to_addrs")?,
        raw: r.try_get("raw")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        sent_at: r.try_get("sent_at")?,
        claimed_by: r.try_get("claimed_by")?,
    })
}

const COLS: &str = "id, draft_id, message_id, from_addr, to_addrs, raw, status, attempts, next_attempt_at, last_error, sent_at, claimed_by";

impl Store {
    /// Queues the exact bytes of an approved draft (approval's transaction).
    pub async fn insert_outbox(&self, tx: &mut Tx, draft_id: i64, message_id: &str, from: &str, to: &str, raw: &[u8]) -> Result<i64> {
        let t = now();
        let r = sqlx::query(
            "INSERT INTO outbox (draft_id, message_id, from_addr, to_addrs, raw, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(draft_id)
        .bind(message_id)
        .bind(from)
        .bind(to)
        .bind(raw.to_vec())
        .bind(t)
        .fetch_optional(&mut **tx)
        .await?;
        match r {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(StoreError::Conflict(format!("draft {draft_id} is already in the outbox"))),
        }
    }

    /// Claims the next row due for sending (marks it `sending`, by
    /// `claimer`: the instance id under `serve` and the one-shot `send`, None
    /// for `flow::outbox::send_due` called without an instance). On PostgreSQL the row is picked `FOR UPDATE SKIP LOCKED`, so
    /// instances claiming at the same moment each get a different row and
    /// never wait for one another; the `status = 'queued'` guard keeps a row
    /// from being claimed twice on either backend.
    pub async fn claim_outbox(&self, claimer: Option<&str>) -> Result<Option<OutboxRow>> {
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE outbox SET status = 'sending', attempts = attempts + 1, claimed_by = $2 WHERE id = \
             (SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 ORDER BY id LIMIT 1{lock}) \
             AND status = 'queued' RETURNING {COLS}"
        );
        let mut tx = self.begin().await?;
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now()).bind(claimer).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        r.as_ref().map(row).transpose()
    }

    pub async fn outbox_retry_later(&self, id: i64, error: &str, next_at: i64) -> Result<()> {
        sqlx::query("UPDATE outbox SET status = 'queued', last_error = $2, next_attempt_at = $3 WHERE id = $1 AND status = 'sending'")
            .bind(id)
            .bind(error)
            .bind(next_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_failed(&self, id: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET status = 'failed', last_error = $2 WHERE id = $1 AND status = 'sending'").bind(id).bind(error).execute(&self.pool).await?;
        Ok(())
    }

    /// Marks a row sent (in the caller's transaction, with the Sent copy).
    pub async fn outbox_sent(&self, tx: &mut Tx, id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE outbox SET status = 'sent', sent_at = $2, last_error = NULL WHERE id = $1 AND status = 'sending'")
            .bind(id)
            .bind(now())
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("outbox row {id} was not being sent")));
        }
        Ok(())
    }

    /// After a restart: rows left in `sending` may or may not have reached
    /// the server. They become `uncertain` and wait for a person.
    pub async fn outbox_recover(&self) -> Result<u64> {
        Ok(sqlx::query("UPDATE outbox SET status = 'uncertain', last_error = 'interrupted while sending: check the Sent folder, then requeue with outbox retry' WHERE status = 'sending'")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Rows left in `sending` (by a process that stopped mid-send).
    pub async fn outbox_sending(&self) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM outbox WHERE status = 'sending' ORDER BY id"))).fetch_all(&self.pool).await?;
        rows.iter().map(row).collect()
    }

    /// One row left in `sending` becomes `uncertain`, with the reason.
    pub async fn outbox_uncertain(&self, id: i64, reason: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET status = 'uncertain', last_error = $2 WHERE id = $1 AND status = 'sending'").bind(id).bind(reason).execute(&self.pool).await?;
        Ok(())
    }

    /// A person requeues a failed or uncertain row.
    pub async fn outbox_requeue(&self, id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE outbox SET status = 'queued', next_attempt_at = $2 WHERE id = $1 AND status IN ('failed', 'uncertain')")
            .bind(id)
            .bind(now())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("outbox row {id} is not failed or uncertain")));
        }
        Ok(())
    }

    pub async fn outbox(&self) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM outbox ORDER BY id"))).fetch_all(&self.pool).await?;
        rows.iter().map(row).collect()
    }
}

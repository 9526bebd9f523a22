//! store::mailboxes: the health of each watched mailbox (state, last
//! successful sync, last error), beside its checkpoint and the lease of the
//! instance watching it, for `status`.

use super::{now, Result, Store};
use sqlx::Row;

/// One mailbox as `dispute-desk status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MailboxHealth {
    pub mailbox: String,
    pub state: String,
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub attempt: i64,
    pub updated_at: i64,
    pub uidvalidity: Option<i64>,
    pub last_uid: Option<i64>,
    /// The instance holding the mailbox's lease (several instances), if any.
    pub holder: Option<String>,
    /// When that lease expires (epoch ms, database clock; 0: released).
    pub lease_expires_at: Option<i64>,
}

impl Store {
    /// Records a state change; `synced` also stamps the last successful sync
    /// and clears the attempt counter.
    pub async fn set_mailbox_state(&self, mailbox: &str, state: &str, synced: bool) -> Result<()> {
        let t = now();
        let sql = if synced {
            "INSERT INTO mailbox_health (mailbox, state, last_sync_at, attempt, updated_at) VALUES ($1, $2, $3, 0, $3) \
             ON CONFLICT (mailbox) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, last_sync_at = excluded.last_sync_at, attempt = 0"
        } else {
            "INSERT INTO mailbox_health (mailbox, state, attempt, updated_at) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (mailbox) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
        };
        sqlx::query(sql).bind(mailbox).bind(state).bind(t).execute(&self.pool).await?;
        Ok(())
    }

    /// Records a failed connection or sync (the error text names no secret).
    pub async fn set_mailbox_error(&self, mailbox: &str, error: &str, attempt: i64) -> Result<()> {
        let t = now();
        sqlx::query(
            "INSERT INTO mailbox_health (mailbox, state, last_error, last_error_at, attempt, updated_at) VALUES ($1, 'reconnecting', $2, $3, $4, $3) \
             ON CONFLICT (mailbox) DO UPDATE SET state = 'reconnecting', last_error = excluded.last_error, last_error_at = excluded.last_error_at, \
             attempt = excluded.attempt, updated_at = excluded.updated_at",
        )
        .bind(mailbox)
        .bind(error)
        .bind(t)
        .bind(attempt)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every mailbox with a health row or a checkpoint.
    pub async fn mailbox_health(&self) -> Result<Vec<MailboxHealth>> {
        let rows = sqlx::query(
            "SELECT h.mailbox, h.state, h.last_sync_at, h.last_error, h.last_error_at, h.attempt, h.updated_at, c.uidvalidity, c.last_uid, l.holder, l.expires_at \
             FROM mailbox_health h LEFT JOIN mailbox_checkpoints c ON c.mailbox = h.mailbox LEFT JOIN leases l ON l.name = 'mailbox:' || h.mailbox ORDER BY h.mailbox",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MailboxHealth {
                    mailbox: r.try_get("mailbox")?,
                    state: r.try_get("state")?,
                    last_sync_at: r.try_get("last_sync_at")?,
                    last_error: r.try_get("last_error")?,
                    last_error_at: r.try_get("last_error_at")?,
                    attempt: r.try_get("attempt")?,
                    updated_at: r.try_get("updated_at")?,
                    uidvalidity: r.try_get("uidvalidity")?,
                    last_uid: r.try_get("last_uid")?,
                    holder: r.try_get("holder")?,
                    lease_expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }
}

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
    /// and clears the attempt counter. `by`: the instance writing it, when it
    /// watches under the mailbox's lease; its write is dropped while another
    /// instance holds that lease, so a watcher that lost the lease and is
    /// stopping cannot overwrite the new holder's state (see `by_guard`).
    pub async fn set_mailbox_state(&self, mailbox: &str, state: &str, synced: bool, by: Option<&str>) -> Result<()> {
        let t = now();
        let sql = if synced {
            "INSERT INTO mailbox_health (mailbox, state, last_sync_at, attempt, updated_at) VALUES ($1, $2, $3, 0, $3) \
             ON CONFLICT (mailbox) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, last_sync_at = excluded.last_sync_at, attempt = 0"
        } else {
            "INSERT INTO mailbox_health (mailbox, state, attempt, updated_at) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (mailbox) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
        };
        let sql = format!("{sql}{}", self.by_guard(4));
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(mailbox).bind(state).bind(t).bind(by.unwrap_or("")).execute(&self.pool).await?;
        Ok(())
    }

    /// Records a failed connection or sync (the error text names no secret);
    /// `by` as for `set_mailbox_state`.
    pub async fn set_mailbox_error(&self, mailbox: &str, error: &str, attempt: i64, by: Option<&str>) -> Result<()> {
        let t = now();
        let sql = format!(
            "INSERT INTO mailbox_health (mailbox, state, last_error, last_error_at, attempt, updated_at) VALUES ($1, 'reconnecting', $2, $3, $4, $3) \
             ON CONFLICT (mailbox) DO UPDATE SET state = 'reconnecting', last_error = excluded.last_error, last_error_at = excluded.last_error_at, \
             attempt = excluded.attempt, updated_at = excluded.updated_at{}",
            self.by_guard(5)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(mailbox).bind(error).bind(t).bind(attempt).bind(by.unwrap_or("")).execute(&self.pool).await?;
        Ok(())
    }

    /// The `WHERE` of a health upsert written by instance `$pos` (empty: no
    /// instance, always written): the existing row is updated unless the
    /// mailbox's lease is held, unexpired, by another instance.
    fn by_guard(&self, pos: usize) -> String {
        format!(
            " WHERE ${pos} = '' OR NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = 'mailbox:' || mailbox_health.mailbox AND l.holder <> ${pos} AND l.expires_at > {})",
            self.now_ms_sql()
        )
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

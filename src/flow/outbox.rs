//! outbox: the send worker. Claims queued rows, sends their exact stored
//! bytes through a [`SendMail`], and marks them sent together with a copy in
//! the message store (so client replies thread to it). Transient failures are
//! retried with exponential backoff; a row is never sent twice (see
//! `store::outbox` for what happens after a crash mid-send).

use crate::flow::ingest::content_hash;
use crate::mail::smtp::SendMail;
use crate::store::messages::NewRaw;
use crate::store::outbox::OutboxRow;
use crate::store::{now, Result, Store};
use crate::domain::EmailAddress;

/// What one pass of the worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SendReport {
    pub sent: u32,
    pub retried: u32,
    pub failed: u32,
}

/// Seconds to wait before attempt `n + 1` (30 s, 1 min, 2 min… capped at 1 h).
pub fn backoff(attempts: i64) -> i64 {
    (30i64 << (attempts.clamp(1, 12) - 1)).min(3600)
}

/// Sends every row that is due, once. `max_attempts` bounds transient retries.
pub async fn send_due(store: &Store, sender: &dyn SendMail, max_attempts: i64) -> Result<SendReport> {
    send_due_as(store, sender, max_attempts, None).await
}

/// [`send_due`] by a serve instance: each row it claims records `claimer`,
/// so that the row can be recovered if this instance dies mid-send.
pub async fn send_due_as(store: &Store, sender: &dyn SendMail, max_attempts: i64, claimer: Option<&str>) -> Result<SendReport> {
    let mut report = SendReport::default();
    while let Some(row) = store.claim_outbox(claimer).await? {
        let span = tracing::info_span!("outbox", row = row.id, draft = row.draft_id);
        let _g = span.enter();
        let from = EmailAddress::parse(&row.from_addr).map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
        let to: Vec<EmailAddress> = row.to_addrs.split(',').filter_map(|a| EmailAddress::parse(a).ok()).collect();
        match sender.send(&from, &to, &row.raw).await {
            Ok(()) => {
                record_sent(store, &row).await?;
                tracing::info!("sent");
                report.sent += 1;
            }
            Err(e) if e.is_transient() && row.attempts < max_attempts => {
                let next = now() + backoff(row.attempts);
                tracing::warn!(error = %e, attempt = row.attempts, "send failed; will retry");
                store.outbox_retry_later(row.id, &e.to_string(), next).await?;
                report.retried += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt = row.attempts, "send failed for good");
                store.outbox_failed(row.id, &e.to_string()).await?;
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// Marks a row sent and keeps the copy as an outbound message (so client
/// replies thread to it), with its audit event, in one transaction. Used after
/// the SMTP server accepted the message, and after a restart when the copy
/// was found in the Sent folder.
pub async fn record_sent(store: &Store, row: &OutboxRow) -> Result<()> {
    let draft = store.draft(row.draft_id).await?;
    let case_client: Option<String> = match draft.case_id {
        Some(c) => Some(store.case(c).await?.client_id),
        None => None,
    };
    let mut tx = store.begin().await?;
    store.outbox_sent(&mut tx, row.id).await?;
    let copy = NewRaw { direction: "out", source: "outbox".into(), mailbox: None, uidvalidity: None, uid: None, message_id: Some(row.message_id.clone()), content_hash: content_hash(&row.raw), raw: &row.raw };
    if let Some(mid) = store.insert_raw(&mut tx, &copy).await? {
        sqlx::query("UPDATE messages SET state = 'processed', disposition = 'sent', case_id = $2, client_id = $3, subject = $4, from_addr = $5, date_at = $6, processed_at = $6 WHERE id = $1")
            .bind(mid)
            .bind(draft.case_id)
            .bind(case_client)
            .bind(&draft.subject)
            .bind(&row.from_addr)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        if let Some(c) = draft.case_id {
            store.link_message_invoices(&mut tx, mid, &store.case_invoices(c).await?).await?;
        }
    }
    crate::store::audit::append(
        &mut tx,
        store.backend,
        crate::store::audit::Event {
            actor: &crate::store::audit::Actor::Agent,
            case_id: draft.case_id,
            entity: "outbox",
            entity_id: row.id.to_string(),
            action: "sent",
            detail: serde_json::json!({"draft": row.draft_id, "message_id": row.message_id, "attempt": row.attempts}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(super::backoff(1), 30);
        assert_eq!(super::backoff(2), 60);
        assert_eq!(super::backoff(3), 120);
        assert_eq!(super::backoff(50), 3600);
    }
}

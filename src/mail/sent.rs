//! sent: the company's Sent folder as the outbox sees it. [`SentCopy`] wraps
//! a [`SendMail`]: once the SMTP server accepted a message, the exact bytes
//! are appended to `\Sent` (with `\Seen`) so the company's own mail client
//! shows what the agent sent. [`recover_sending`] resolves, at start-up, rows
//! a previous process left in `sending`: found in Sent by Message-ID → sent;
//! not found (or Sent unreachable) → `uncertain`, never resent automatically.

use crate::domain::EmailAddress;
use crate::flow::outbox::record_sent;
use crate::mail::imap::SentFolder;
use crate::mail::smtp::{SendMail, SmtpError};
use crate::store::{Result, Store};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Sends with `inner`, then keeps a copy in the Sent folder.
pub struct SentCopy<S> {
    pub inner: S,
    pub sent: Option<Arc<dyn SentFolder>>,
}

impl<S: SendMail> SendMail for SentCopy<S> {
    fn send<'a>(&'a self, envelope_from: &'a EmailAddress, to: &'a [EmailAddress], raw: &'a [u8]) -> Pin<Box<dyn Future<Output = Result<(), SmtpError>> + Send + 'a>> {
        Box::pin(async move {
            self.inner.send(envelope_from, to, raw).await?;
            if let Some(sent) = &self.sent {
                // The server took the message: whatever happens to the copy,
                // this send succeeded and must be recorded as such (a failure
                // here must never lead to a second SMTP attempt).
                if let Err(e) = sent.append_sent(raw).await {
                    tracing::warn!(error = %e, "message sent but its copy could not be appended to the sent folder");
                }
            }
            Ok(())
        })
    }
}

/// What start-up recovery did with rows left in `sending`.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recovered {
    /// Found in Sent: marked sent, not sent again.
    pub sent: u32,
    /// Not found, or Sent could not be searched: wait for a person.
    pub uncertain: u32,
}

/// Resolves rows left in `sending` by a stopped process. Call it before the
/// outbox worker starts, never while one runs (several instances: see
/// [`recover_rows`] with `Store::take_orphaned_sending`).
pub async fn recover_sending(store: &Store, sent: Option<&dyn SentFolder>) -> Result<Recovered> {
    recover_rows(store, sent, store.outbox_sending().await?).await
}

/// Resolves the given rows left in `sending` (found in Sent → sent, else
/// `uncertain`).
pub async fn recover_rows(store: &Store, sent: Option<&dyn SentFolder>, rows: Vec<crate::store::outbox::OutboxRow>) -> Result<Recovered> {
    let mut r = Recovered::default();
    for row in rows {
        let span = tracing::info_span!("outbox_recover", row = row.id, draft = row.draft_id);
        let _g = span.enter();
        let found = match sent {
            Some(s) => s.sent_contains(&row.message_id).await.map_err(|e| e.to_string()),
            None => Err("no sent folder configured".to_string()),
        };
        match found {
            Ok(true) => {
                record_sent(store, &row).await?;
                tracing::info!("interrupted send found in the sent folder; marked sent");
                r.sent += 1;
            }
            Ok(false) => {
                store.outbox_uncertain(row.id, "interrupted while sending and not in the sent folder: it may or may not have reached the server; check, then requeue with outbox retry").await?;
                tracing::warn!("interrupted send not in the sent folder; left uncertain for a person");
                r.uncertain += 1;
            }
            Err(e) => {
                store.outbox_uncertain(row.id, &format!("interrupted while sending; the sent folder could not be searched ({e}): check, then requeue with outbox retry")).await?;
                tracing::warn!(error = %e, "interrupted send could not be checked; left uncertain for a person");
                r.uncertain += 1;
            }
        }
    }
    Ok(r)
}

//! store::messages: raw messages stored once, mailbox checkpoints, thread
//! lookups and the processing state of each message.

use super::{now, Result, Store, Tx};
use crate::domain::InvoiceNumber;
use crate::flow::link::ThreadHit;
use sqlx::Row;
use std::collections::HashMap;

macro_rules! msg_cols {
    () => {
        "id, direction, message_id, state, subject, from_addr, date_at, client_id, link_method, link_confidence, category, classification, disposition, owner_id, case_id, last_error, parsed"
    };
}

/// A message to store, as ingest hands it over.
#[derive(Debug, Clone)]
pub struct NewRaw<'a> {
    /// `in` (client mail) or `out` (mail we sent).
    pub direction: &'a str,
    /// Where it came from: `file:PATH`, `imap:MAILBOX`, `outbox`.
    pub source: String,
    pub mailbox: Option<&'a str>,
    pub uidvalidity: Option<i64>,
    pub uid: Option<i64>,
    pub message_id: Option<String>,
    pub content_hash: String,
    pub raw: &'a [u8],
}

/// A stored message waiting for the flow.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: i64,
    pub direction: String,
    pub raw: Vec<u8>,
    pub attempts: i64,
    /// The client a person linked this message to by hand (it goes through
    /// the flow again with that link instead of the automatic one).
    pub hand_linked_client: Option<String>,
}

fn accepted_from_row(r: &sqlx::any::AnyRow) -> Result<Accepted> {
    let manual = r.try_get::<Option<String>, _>("link_method")?.as_deref() == Some("manual");
    Ok(Accepted {
        id: r.try_get("id")?,
        direction: r.try_get("direction")?,
        raw: r.try_get("raw")?,
        attempts: r.try_get("attempts")?,
        hand_linked_client: if manual { r.try_get("client_id")? } else { None },
    })
}

/// A summary row for lists.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageRow {
    pub id: i64,
    pub direction: String,
    pub message_id: Option<String>,
    pub state: String,
    pub subject: Option<String>,
    pub from_addr: Option<String>,
    pub date_at: Option<i64>,
    pub client_id: Option<String>,
    pub link_method: Option<String>,
    pub link_confidence: Option<f64>,
    pub category: Option<String>,
    pub classification: Option<String>,
    pub disposition: Option<String>,
    pub owner_id: Option<String>,
    pub case_id: Option<i64>,
    pub last_error: Option<String>,
    pub invoices: Vec<String>,
    pub parsed: Option<String>,
}

impl Store {
    /// Stores a raw message unless the same one (Message-ID, content hash or
    /// mailbox UID) is already stored. Returns the new id, or None for a
    /// duplicate. Runs inside the caller's transaction so that a mailbox
    /// checkpoint can be written with it.
    pub async fn insert_raw(&self, tx: &mut Tx, m: &NewRaw<'_>) -> Result<Option<i64>> {
        Ok(self.insert_raws(tx, std::slice::from_ref(m)).await?.pop().flatten())
    }

    /// [`Store::insert_raw`] for several messages in two statements (the
    /// rows, then their bytes): one answer per message, in order, None for a
    /// duplicate (of a stored message or of an earlier one in `ms`). The ids
    /// follow the order of `ms`, as the flow processes them by id.
    pub async fn insert_raws(&self, tx: &mut Tx, ms: &[NewRaw<'_>]) -> Result<Vec<Option<i64>>> {
        if ms.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "INSERT INTO messages (direction, message_id, content_hash, source, mailbox, uidvalidity, uid, received_at, state) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING id, content_hash",
            super::values(ms.len(), 8, "'accepted'")
        );
        let at = now();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for m in ms {
            q = q.bind(m.direction).bind(m.message_id.clone()).bind(m.content_hash.clone()).bind(m.source.clone()).bind(m.mailbox).bind(m.uidvalidity).bind(m.uid).bind(at);
        }
        // The content hash is unique: it tells which message each new row is.
        let mut ids: HashMap<String, i64> = HashMap::new();
        for r in q.fetch_all(&mut **tx).await? {
            ids.insert(r.try_get(1)?, r.try_get(0)?);
        }
        let out: Vec<Option<i64>> = ms.iter().map(|m| ids.remove(&m.content_hash)).collect();
        let new: Vec<(i64, &[u8])> = out.iter().zip(ms).filter_map(|(id, m)| id.map(|id| (id, m.raw))).collect();
        if !new.is_empty() {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO message_raw (message_id, raw) VALUES {}", super::values(new.len(), 2, ""))));
            for (id, raw) in new {
                q = q.bind(id).bind(raw.to_vec());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(out)
    }

    /// Links message `id` to `invoices` in one statement (a link already
    /// there is kept).
    pub async fn link_message_invoices<S: AsRef<str>>(&self, tx: &mut Tx, id: i64, invoices: &[S]) -> Result<()> {
        super::insert_invoice_links(tx, "message_invoices", "message_id", id, invoices).await
    }

    /// Records the last UID fully ingested for a mailbox (same transaction as
    /// the message).
    pub async fn set_checkpoint(&self, tx: &mut Tx, mailbox: &str, uidvalidity: i64, last_uid: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO mailbox_checkpoints (mailbox, uidvalidity, last_uid, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, updated_at = excluded.updated_at",
        )
        .bind(mailbox)
        .bind(uidvalidity)
        .bind(last_uid)
        .bind(now())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn checkpoint(&self, mailbox: &str) -> Result<Option<(i64, i64)>> {
        let r = sqlx::query("SELECT uidvalidity, last_uid FROM mailbox_checkpoints WHERE mailbox = $1").bind(mailbox).fetch_optional(&self.pool).await?;
        Ok(match r {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    /// Messages stored but not yet through the flow, oldest first.
    pub async fn accepted(&self, limit: i64) -> Result<Vec<Accepted>> {
        // Ids start at 1 on both engines.
        self.accepted_after(0, limit).await
    }

    /// Like [`Store::accepted`], for the messages after message `after` (the
    /// next batch, fetched while the current one is processed).
    pub async fn accepted_after(&self, after: i64, limit: i64) -> Result<Vec<Accepted>> {
        let rows = sqlx::query("SELECT m.id, m.direction, r.raw, m.attempts, m.link_method, m.client_id FROM messages m JOIN message_raw r ON r.message_id = m.id WHERE m.state = 'accepted' AND m.id > $1 ORDER BY m.id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(accepted_from_row).collect()
    }

    /// Which of `ids` still wait to be processed (inside the caller's
    /// transaction).
    pub async fn waiting_among(c: &mut sqlx::AnyConnection, ids: &[i64]) -> Result<std::collections::HashSet<i64>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT id FROM messages WHERE state = 'accepted' AND id IN ({})", marks.join(", "));
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(&mut *c).await?.into_iter().collect())
    }

    /// Message `id` if it waits to be processed.
    pub async fn accepted_one(&self, id: i64) -> Result<Option<Accepted>> {
        let r = sqlx::query("SELECT m.id, m.direction, r.raw, m.attempts, m.link_method, m.client_id FROM messages m JOIN message_raw r ON r.message_id = m.id WHERE m.state = 'accepted' AND m.id = $1").bind(id).fetch_optional(&self.pool).await?;
        r.as_ref().map(accepted_from_row).transpose()
    }

    /// The invoices a person named when linking message `id` by hand (those
    /// of `client_id` among the message's invoices).
    pub async fn hand_linked_invoices(c: &mut sqlx::AnyConnection, id: i64, client_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT mi.invoice_number FROM message_invoices mi JOIN invoices i ON i.number = mi.invoice_number WHERE mi.message_id = $1 AND i.client_id = $2 ORDER BY mi.invoice_number")
            .bind(id)
            .bind(client_id)
            .fetch_all(&mut *c)
            .await?)
    }

    /// Records a failed processing attempt; after `max_attempts` the message
    /// is set aside as `failed` (kept, visible, retried by hand).
    pub async fn processing_failed(&self, id: i64, error: &str, max_attempts: i64) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET attempts = attempts + 1, last_error = $2, \
             state = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE state END WHERE id = $1 AND state = 'accepted'",
        )
        .bind(id)
        .bind(error)
        .bind(max_attempts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stored messages that the given Message-IDs point at, with their client,
    /// invoices and case.
    pub async fn thread_hits(c: &mut sqlx::AnyConnection, ids: &[String]) -> Result<Vec<(ThreadHit, Option<i64>)>> {
        let mut out = Vec::new();
        for mid in ids.iter().rev().take(20) {
            // The message and its invoices in one query (one row per invoice).
            let rows = sqlx::query("SELECT m.client_id, m.case_id, mi.invoice_number FROM messages m LEFT JOIN message_invoices mi ON mi.message_id = m.id WHERE m.message_id = $1 ORDER BY mi.invoice_number")
                .bind(mid)
                .fetch_all(&mut *c)
                .await?;
            let Some(first) = rows.first() else { continue };
            let invoices = rows.iter().filter_map(|r| r.try_get::<Option<String>, _>("invoice_number").ok().flatten().and_then(|n| InvoiceNumber::parse(&n).ok())).collect();
            out.push((ThreadHit { message_id: mid.clone(), client_id: first.try_get("client_id")?, invoices }, first.try_get("case_id")?));
        }
        Ok(out)
    }

    pub async fn message(&self, id: i64) -> Result<MessageRow> {
        let r = sqlx::query(concat!("SELECT ", msg_cols!(), " FROM messages WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?.ok_or_else(|| super::StoreError::NotFound(format!("message {id}")))?;
        self.message_row(&r).await
    }

    async fn message_row(&self, r: &sqlx::any::AnyRow) -> Result<MessageRow> {
        let id: i64 = r.try_get("id")?;
        let invoices = sqlx::query("SELECT invoice_number FROM message_invoices WHERE message_id = $1 ORDER BY invoice_number")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        row_with(r, invoices)
    }

    /// Messages filtered by disposition (`unlinked`, `ignored`…) or state.
    pub async fn messages_where(&self, disposition: Option<&str>, state: Option<&str>, case_id: Option<i64>) -> Result<Vec<MessageRow>> {
        let (w, vals) = super::where_eq(&[("disposition", disposition.map(super::Val::from)), ("state", state.map(super::Val::from)), ("case_id", case_id.map(super::Val::from))]);
        let sql = format!(concat!("SELECT ", msg_cols!(), " FROM messages{} ORDER BY id"), w);
        let rows = super::bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &vals).fetch_all(&self.pool).await?;
        // The invoices of all these messages in one query, not one per row.
        let (w, vals) = super::where_eq(&[("m.disposition", disposition.map(super::Val::from)), ("m.state", state.map(super::Val::from)), ("m.case_id", case_id.map(super::Val::from))]);
        let sql = format!("SELECT mi.message_id, mi.invoice_number FROM message_invoices mi JOIN messages m ON m.id = mi.message_id{w} ORDER BY mi.invoice_number");
        let links = super::bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &vals).fetch_all(&self.pool).await?;
        let mut invoices: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        for l in &links {
            invoices.entry(l.try_get("message_id")?).or_default().push(l.try_get("invoice_number")?);
        }
        rows.iter().map(|r| row_with(r, invoices.remove(&r.try_get::<i64, _>("id")?).unwrap_or_default())).collect()
    }

    /// Date, direction and subject of the message with this Message-ID: a
    /// line of a call brief's history.
    pub async fn history_line_of(c: &mut sqlx::AnyConnection, mid: &str) -> Result<Option<(Option<i64>, String, Option<String>)>> {
        let r = sqlx::query("SELECT date_at, direction, subject FROM messages WHERE message_id = $1").bind(mid).fetch_optional(&mut *c).await?;
        r.map(|r| Ok((r.try_get("date_at")?, r.try_get("direction")?, r.try_get("subject")?))).transpose()
    }

    /// The last `limit` messages of a case (date, direction, subject), oldest
    /// first: what a call brief shows. Bounded and light, so that a case with
    /// a long thread costs the same per new message as a short one.
    pub async fn case_history(c: &mut sqlx::AnyConnection, case_id: i64, limit: i64) -> Result<Vec<(Option<i64>, String, Option<String>)>> {
        let rows = sqlx::query("SELECT date_at, direction, subject FROM messages WHERE case_id = $1 ORDER BY id DESC LIMIT $2").bind(case_id).bind(limit).fetch_all(&mut *c).await?;
        let mut out = rows.iter().map(|r| Ok((r.try_get("date_at")?, r.try_get("direction")?, r.try_get("subject")?))).collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// The source path (for files) of a message, to match corpus labels.
    pub async fn message_source(&self, id: i64) -> Result<String> {
        let r = sqlx::query("SELECT source FROM messages WHERE id = $1").bind(id).fetch_one(&self.pool).await?;
        Ok(r.try_get(0)?)
    }
}


impl Store {
    /// A stored message by its Message-ID header.
    pub async fn messages_by_message_id(&self, mid: &str) -> Result<Option<MessageRow>> {
        let r = sqlx::query(concat!("SELECT ", msg_cols!(), " FROM messages WHERE message_id = $1")).bind(mid).fetch_optional(&self.pool).await?;
        match r {
            Some(r) => Ok(Some(self.message_row(&r).await?)),
            None => Ok(None),
        }
    }
}

impl Store {
    /// A person links an unlinked message to a client (and optionally one of
    /// its invoices) by hand: the message leaves the unlinked queue
    /// (disposition `linked_by_hand`, method `manual`), with an audit event.
    /// The invoice must belong to the client.
    pub async fn link_by_hand(&self, message_id: i64, client_id: &str, invoice: Option<&InvoiceNumber>, user_id: &str) -> Result<()> {
        let m = self.message(message_id).await?;
        if m.disposition.as_deref() != Some("unlinked") {
            return Err(super::StoreError::Conflict(format!("message {message_id} is not waiting to be linked (it is {})", m.disposition.as_deref().unwrap_or("not processed"))));
        }
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM clients WHERE id = $1").bind(client_id).fetch_optional(&self.pool).await?;
        if known.is_none() {
            return Err(super::StoreError::NotFound(format!("client {client_id}")));
        }
        if let Some(n) = invoice {
            let owner: Option<String> = sqlx::query_scalar("SELECT client_id FROM invoices WHERE number = $1").bind(n.as_str()).fetch_optional(&self.pool).await?;
            match owner {
                None => return Err(super::StoreError::NotFound(format!("invoice {n}"))),
                Some(o) if o != client_id => return Err(super::StoreError::Invalid(format!("invoice {n} belongs to another client than {client_id}"))),
                _ => {}
            }
        }
        let mut tx = self.begin().await?;
        // Back to `accepted` with the person's link: the flow runs again on
        // it (classify, decide, draft) with that link, once, and the
        // audit event below says who linked it.
        sqlx::query("UPDATE messages SET client_id = $2, link_method = 'manual', link_confidence = 1.0, disposition = 'linked_by_hand', owner_id = $3, state = 'accepted', attempts = 0, last_error = NULL WHERE id = $1 AND disposition = 'unlinked'")
            .bind(message_id)
            .bind(client_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if let Some(n) = invoice {
            self.link_message_invoices(&mut tx, message_id, std::slice::from_ref(n)).await?;
        }
        super::audit::append(
            &mut tx,
            self.backend,
            super::audit::Event {
                actor: &super::audit::Actor::User(user_id.to_string()),
                case_id: None,
                entity: "message",
                entity_id: message_id.to_string(),
                action: "linked_by_hand",
                detail: serde_json::json!({"client": client_id, "invoice": invoice.map(|n| n.to_string())}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A message row from its columns and its invoices.
fn row_with(r: &sqlx::any::AnyRow, invoices: Vec<String>) -> Result<MessageRow> {
    Ok(MessageRow {
        id: r.try_get("id")?,
        direction: r.try_get("direction")?,
        message_id: r.try_get("message_id")?,
        state: r.try_get("state")?,
        subject: r.try_get("subject")?,
        from_addr: r.try_get("from_addr")?,
        date_at: r.try_get("date_at")?,
        client_id: r.try_get("client_id")?,
        link_method: r.try_get("link_method")?,
        link_confidence: r.try_get("link_confidence")?,
        category: r.try_get("category")?,
        classification: r.try_get("classification")?,
        disposition: r.try_get("disposition")?,
        owner_id: r.try_get("owner_id")?,
        case_id: r.try_get("case_id")?,
        last_error: r.try_get("last_error")?,
        invoices,
        parsed: r.try_get("parsed")?,
    })
}

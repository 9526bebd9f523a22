//! webhooks: signed JSON events to the company's systems (case opened,
//! status changed, assigned, draft pending, draft approved, message sent,
//! reminder due), derived from the append-only audit trail.
//!
//! Design: every case change is already an audit event written in the same
//! transaction as the change (invariant 4), and audit ids grow in commit
//! order (one appender at a time). So the worker keeps, per endpoint, a
//! cursor on the audit trail: one pass turns the events after the cursor
//! into rows of `webhook_deliveries` and moves the cursor, in one
//! transaction (nothing lost, nothing doubled across a crash), then POSTs the
//! due rows. A failed POST is retried with exponential backoff; a row that
//! reaches the attempt limit is `failed`, kept, and can be requeued. Each
//! event has a stable id (`evt_<audit id>`): delivery is at least once and
//! the receiver deduplicates by id. Every attempt is logged
//! (`webhook_attempts`).
//!
//! Signature: `X-DisputeDesk-Signature: v1=HEX(HMAC-SHA256(secret,
//! "{timestamp}.{body}"))` with `X-DisputeDesk-Timestamp` (epoch seconds) and
//! `X-DisputeDesk-Event-Id`.

use crate::store::{now, Store, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::Row;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the https client: {0}")]
    Client(String),
}

impl From<sqlx::Error> for WebhookError {
    fn from(e: sqlx::Error) -> Self {
        WebhookError::Store(StoreError::Db(e))
    }
}

/// Every event type an endpoint can ask for.
pub const EVENT_TYPES: [&str; 7] = ["case_opened", "status_changed", "assigned", "draft_pending", "draft_approved", "message_sent", "reminder_due"];

/// `[[webhook]]` in the configuration file.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// The HMAC key shared with the receiver. Never logged or printed.
    pub secret: String,
    /// Event types to send; empty means all.
    #[serde(default)]
    pub events: Vec<String>,
    /// A stable name for the delivery log (default: the URL).
    #[serde(default)]
    pub name: Option<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig").field("url", &self.url).field("secret", &"***").field("events", &self.events).field("name", &self.name).finish()
    }
}

impl WebhookConfig {
    pub fn key(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }
    fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event_type)
    }
    /// Unknown event names in the configuration, to refuse at start.
    pub fn unknown_events(&self) -> Vec<String> {
        self.events.iter().filter(|e| !EVENT_TYPES.contains(&e.as_str())).cloned().collect()
    }
}

/// Retry and batch settings of the worker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// First retry after this; doubles each attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts before a row is `failed` (kept; `webhooks retry` requeues).
    pub max_attempts: i64,
    pub timeout: Duration,
    pub batch: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { base_backoff: Duration::from_secs(10), max_backoff: Duration::from_secs(3600), max_attempts: 20, timeout: Duration::from_secs(10), batch: 500 }
    }
}

/// Which webhook event an audit event is, if any.
pub fn event_type(entity: &str, action: &str, detail: &Value) -> Option<&'static str> {
    Some(match (entity, action) {
        ("case", "opened") => "case_opened",
        ("case", "status_changed") => "status_changed",
        ("case", "reassigned") => "assigned",
        ("draft", "created") => "draft_pending",
        ("draft", "approved") | ("draft", "pre_approved") => "draft_approved",
        ("outbox", "sent") => "message_sent",
        ("draft", "reminder_drafted") => "reminder_due",
        // Reminder levels that are a task for a person (a call, a formal notice).
        ("task", "created") if detail.get("level").is_some() => "reminder_due",
        _ => return None,
    })
}

/// `v1=HEX(HMAC-SHA256(secret, "{timestamp}.{body}"))`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header as a receiver would (constant time).
pub fn verify(secret: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hexsig) = header.strip_prefix("v1=") else { return false };
    let Ok(sig) = hex::decode(hexsig) else { return false };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// What one pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PassReport {
    pub enqueued: usize,
    pub delivered: usize,
    pub retried: usize,
    pub gave_up: usize,
}

type HttpClient = hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, http_body_util::Full<bytes::Bytes>>;

/// The HTTP(S) client: hyper with rustls on ring and the webpki roots.
pub fn client() -> Result<HttpClient, WebhookError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
}

/// Turns audit events after each endpoint's cursor into deliveries.
pub async fn enqueue(store: &Store, endpoints: &[WebhookConfig], batch: i64) -> Result<usize, WebhookError> {
    let mut n = 0;
    for ep in endpoints {
        loop {
            let mut tx = store.begin().await?;
            let cursor: i64 = sqlx::query("SELECT last_audit_id FROM webhook_cursors WHERE endpoint = $1").bind(ep.key()).fetch_optional(&mut *tx).await?.map(|r| r.try_get::<i64, _>(0)).transpose()?.unwrap_or(0);
            let rows = sqlx::query("SELECT id, at, actor, case_id, entity, entity_id, action, detail FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2").bind(cursor).bind(batch).fetch_all(&mut *tx).await?;
            let Some(last) = rows.last().map(|r| r.try_get::<i64, _>("id")).transpose()? else { break };
            let t = now();
            for r in &rows {
                let id: i64 = r.try_get("id")?;
                let entity: String = r.try_get("entity")?;
                let action: String = r.try_get("action")?;
                let detail: Value = serde_json::from_str(&r.try_get::<String, _>("detail")?).unwrap_or(Value::Null);
                let Some(ty) = event_type(&entity, &action, &detail) else { continue };
                if !ep.wants(ty) {
                    continue;
                }
                let event_id = format!("evt_{id}");
                let payload = json!({
                    "id": event_id,
                    "type": ty,
                    "created_at": r.try_get::<i64, _>("at")?,
                    "case_id": r.try_get::<Option<i64>, _>("case_id")?,
                    "data": {"entity": entity, "entity_id": r.try_get::<String, _>("entity_id")?, "action": action, "actor": r.try_get::<String, _>("actor")?, "detail": detail},
                });
                let done = sqlx::query(
                    "INSERT INTO webhook_deliveries (endpoint, event_id, event_type, audit_id, payload, status, attempts, next_attempt_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) ON CONFLICT (endpoint, event_id) DO NOTHING",
                )
                .bind(ep.key())
                .bind(&event_id)
                .bind(ty)
                .bind(id)
                .bind(payload.to_string())
                .bind(t)
                .execute(&mut *tx)
                .await?;
                n += done.rows_affected() as usize;
            }
            sqlx::query("INSERT INTO webhook_cursors (endpoint, last_audit_id, updated_at) VALUES ($1, $2, $3) ON CONFLICT (endpoint) DO UPDATE SET last_audit_id = excluded.last_audit_id, updated_at = excluded.updated_at")
                .bind(ep.key())
                .bind(last)
                .bind(t)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            if (rows.len() as i64) < batch {
                break;
            }
        }
    }
    Ok(n)
}

enum Sent {
    Ok(u16),
    Status(u16),
    Failed(String),
}

async fn post(client: &HttpClient, ep: &WebhookConfig, event_id: &str, event_type: &str, body: &str, timeout: Duration) -> Sent {
    let ts = now();
    let req = hyper::Request::post(&ep.url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("dispute-desk/", env!("CARGO_PKG_VERSION")))
        .header("x-disputedesk-event-id", event_id)
        .header("x-disputedesk-event-type", event_type)
        .header("x-disputedesk-timestamp", ts.to_string())
        .header("x-disputedesk-signature", sign(&ep.secret, ts, body.as_bytes()))
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Sent::Failed(format!("invalid request: {e}")),
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Sent::Failed(format!("no answer within {} s", timeout.as_secs())),
        Ok(Err(e)) => Sent::Failed(format!("cannot connect: {e}")),
        Ok(Ok(resp)) => {
            let code = resp.status().as_u16();
            // Read (and drop) the body so the connection can be reused.
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            if (200..300).contains(&code) {
                Sent::Ok(code)
            } else {
                Sent::Status(code)
            }
        }
    }
}

fn backoff(s: &Settings, attempts: i64) -> i64 {
    let base = s.base_backoff.as_secs() as i64;
    let max = s.max_backoff.as_secs() as i64;
    base.saturating_mul(1i64 << (attempts - 1).clamp(0, 20)).min(max)
}

/// POSTs the due deliveries of each endpoint, oldest first. When an
/// endpoint cannot be reached, the rest of its queue waits for the next pass.
#[tracing::instrument(skip_all)]
pub async fn deliver_due(store: &Store, client: &HttpClient, endpoints: &[WebhookConfig], s: &Settings) -> Result<PassReport, WebhookError> {
    let mut rep = PassReport::default();
    let pg = store.backend == crate::store::Backend::Postgres;
    for ep in endpoints {
        // On PostgreSQL each delivery is claimed `FOR UPDATE SKIP LOCKED` in a
        // transaction held through its POST and its outcome: instances
        // delivering at once never post the same row (an instance that dies
        // mid-POST releases the row with its connection, and the row is
        // posted again: at least once, same event id). SQLite has one writer
        // process and reads the due rows without a lock.
        let mut seen = 0;
        let mut after = 0i64;
        while seen < s.batch {
            seen += 1;
            let mut claim = if pg { Some(store.pool.begin().await?) } else { None };
            let sql = format!(
                "SELECT id, event_id, event_type, payload, attempts FROM webhook_deliveries WHERE endpoint = $1 AND status = 'pending' AND next_attempt_at <= $2 AND id > $3 ORDER BY id LIMIT 1{}",
                if pg { " FOR UPDATE SKIP LOCKED" } else { "" }
            );
            let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ep.key()).bind(now()).bind(after);
            let row = match claim.as_mut() {
                Some(tx) => q.fetch_optional(&mut **tx).await?,
                None => q.fetch_optional(&store.pool).await?,
            };
            let Some(r) = row else { break };
            let id: i64 = r.try_get("id")?;
            after = id;
            let event_id: String = r.try_get("event_id")?;
            let ty: String = r.try_get("event_type")?;
            let body: String = r.try_get("payload")?;
            let attempts: i64 = r.try_get::<i64, _>("attempts")? + 1;
            let t0 = std::time::Instant::now();
            let sent = post(client, ep, &event_id, &ty, &body, s.timeout).await;
            let millis = t0.elapsed().as_millis() as i64;
            let (code, err) = match &sent {
                Sent::Ok(c) => (Some(*c as i64), None),
                Sent::Status(c) => (Some(*c as i64), Some(format!("http status {c}"))),
                Sent::Failed(e) => (None, Some(e.clone())),
            };
            let mut tx = match claim {
                Some(tx) => tx,
                None => store.begin().await?,
            };
            sqlx::query("INSERT INTO webhook_attempts (delivery_id, at, http_status, error, millis) VALUES ($1, $2, $3, $4, $5)").bind(id).bind(now()).bind(code).bind(err.clone()).bind(millis).execute(&mut *tx).await?;
            let unreachable = matches!(sent, Sent::Failed(_));
            match sent {
                Sent::Ok(_) => {
                    sqlx::query("UPDATE webhook_deliveries SET status = 'delivered', attempts = $2, delivered_at = $3, last_error = NULL WHERE id = $1").bind(id).bind(attempts).bind(now()).execute(&mut *tx).await?;
                    rep.delivered += 1;
                }
                _ if attempts >= s.max_attempts => {
                    sqlx::query("UPDATE webhook_deliveries SET status = 'failed', attempts = $2, last_error = $3 WHERE id = $1").bind(id).bind(attempts).bind(err.clone()).execute(&mut *tx).await?;
                    rep.gave_up += 1;
                    tracing::warn!(endpoint = ep.key(), event = %event_id, error = err.as_deref().unwrap_or(""), "webhook delivery gave up");
                }
                _ => {
                    sqlx::query("UPDATE webhook_deliveries SET attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $1").bind(id).bind(attempts).bind(err.clone()).bind(now() + backoff(s, attempts)).execute(&mut *tx).await?;
                    rep.retried += 1;
                }
            }
            tx.commit().await?;
            if unreachable {
                tracing::info!(endpoint = ep.key(), error = err.as_deref().unwrap_or(""), "webhook endpoint unreachable; its queue waits");
                break;
            }
        }
    }
    Ok(rep)
}

/// One pass: enqueue new events, deliver what is due.
pub async fn deliver_once(store: &Store, client: &HttpClient, endpoints: &[WebhookConfig], s: &Settings) -> Result<PassReport, WebhookError> {
    let enqueued = enqueue(store, endpoints, s.batch).await?;
    let mut rep = deliver_due(store, client, endpoints, s).await?;
    rep.enqueued = enqueued;
    Ok(rep)
}

/// The worker loop for `serve`: a pass every `every` until `shutdown`.
/// Errors are logged and the loop goes on (the queue is in the database).
pub async fn run(store: Store, endpoints: Vec<WebhookConfig>, s: Settings, every: Duration, shutdown: impl std::future::Future<Output = ()>) -> Result<(), WebhookError> {
    let client = client()?;
    tokio::pin!(shutdown);
    loop {
        if let Err(e) = deliver_once(&store, &client, &endpoints, &s).await {
            tracing::error!(error = %e, "webhook pass failed");
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// A row of the delivery log.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub endpoint: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// The delivery log, newest first, optionally for one endpoint.
pub async fn deliveries(store: &Store, endpoint: Option<&str>, limit: i64) -> Result<Vec<Delivery>, WebhookError> {
    let rows = sqlx::query("SELECT id, endpoint, event_id, event_type, status, attempts, last_error, created_at, delivered_at FROM webhook_deliveries WHERE ($1 IS NULL OR endpoint = $1) ORDER BY id DESC LIMIT $2")
        .bind(endpoint)
        .bind(limit)
        .fetch_all(&store.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                endpoint: r.try_get("endpoint")?,
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("event_type")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("created_at")?,
                delivered_at: r.try_get("delivered_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Puts a failed delivery back in the queue.
pub async fn retry(store: &Store, id: i64) -> Result<(), WebhookError> {
    let done = sqlx::query("UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2 WHERE id = $1 AND status = 'failed'").bind(id).bind(now()).execute(&store.pool).await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("failed webhook delivery {id}")).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip() {
        let sig = sign("s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        assert!(verify("s3cret", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify("s3cret", 1_700_000_001, b"{\"a\":1}", &sig));
        assert!(!verify("other", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify("s3cret", 1_700_000_000, b"{\"a\":2}", &sig));
    }

    #[test]
    fn audit_events_to_webhook_events() {
        let none = Value::Null;
        assert_eq!(event_type("case", "opened", &none), Some("case_opened"));
        assert_eq!(event_type("case", "reassigned", &none), Some("assigned"));
        assert_eq!(event_type("outbox", "sent", &none), Some("message_sent"));
        assert_eq!(event_type("task", "created", &json!({"kind": "call", "level": 3})), Some("reminder_due"));
        assert_eq!(event_type("task", "created", &json!({"kind": "check_payment"})), None);
        assert_eq!(event_type("case", "priority_changed", &none), None);
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let s = Settings { base_backoff: Duration::from_secs(10), max_backoff: Duration::from_secs(60), ..Default::default() };
        assert_eq!((1..=5).map(|a| backoff(&s, a)).collect::<Vec<_>>(), vec![10, 20, 40, 60, 60]);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let w = WebhookConfig { url: "http://x".into(), secret: "s3cret".into(), events: vec![], name: None };
        assert!(!format!("{w:?}").contains("s3cret"));
    }
}

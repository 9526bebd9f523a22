//! audit: the append-only, hash-chained trail of every case change. Each row's
//! hash covers its content and the previous row's hash, so an altered, removed
//! or inserted row breaks the chain from that point on (`audit verify`).

use super::{Backend, Result, Tx};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// Who made a change: a person, the agent itself, or a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    Agent,
    Policy(String),
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Actor::User(u) => format!("user:{u}"),
            Actor::Agent => "agent".into(),
            Actor::Policy(p) => format!("policy:{p}"),
        }
    }
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub actor: &'a Actor,
    pub case_id: Option<i64>,
    pub entity: &'a str,
    pub entity_id: String,
    pub action: &'a str,
    /// JSON: what changed and why (ids and values, never message bodies).
    pub detail: serde_json::Value,
}

/// The PostgreSQL advisory lock that serialises appends to the chain (and,
/// taken earlier, the flow's case writes: see `Store::lock_case_writes`).
pub const CHAIN_LOCK: i64 = 727274;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

// One argument per hashed column, in the order they are hashed.
#[allow(clippy::too_many_arguments)]
fn hash_row(prev: &str, at: i64, actor: &str, case_id: Option<i64>, entity: &str, entity_id: &str, action: &str, detail: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &at.to_string(), actor, &case_id.map(|c| c.to_string()).unwrap_or_default(), entity, entity_id, action, detail] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(h.finalize())
}

/// Appends an event inside the caller's transaction.
pub async fn append(tx: &mut Tx, backend: Backend, ev: Event<'_>) -> Result<()> {
    Chain::new(backend).append(tx, ev).await
}

/// The chain's head within one transaction: the first append takes the
/// chain's lock and reads the last hash, the next ones reuse the hash they
/// wrote (nobody else can append until this transaction ends: SQLite's write
/// lock, PostgreSQL's advisory lock). Every append of the transaction must go
/// through the same `Chain`.
///
/// A [`Chain::buffered`] chain keeps the rows it hashed and writes them with
/// [`Chain::flush`] as multi-row inserts (the flow appends several events per
/// message and a batch of messages per transaction; one statement instead of
/// one per event). Its owner must flush before committing; a buffered chain
/// dropped with rows not flushed says so in the log (the transaction is then
/// being abandoned, or the events would be lost).
#[derive(Debug)]
pub struct Chain {
    backend: Backend,
    head: Option<String>,
    buffered: bool,
    pending: Vec<PendingRow>,
}

#[derive(Debug)]
struct PendingRow {
    at: i64,
    actor: String,
    case_id: Option<i64>,
    entity: String,
    entity_id: String,
    action: String,
    detail: String,
    prev: String,
    hash: String,
}

/// Rows per INSERT when flushing (9 values each, well under both engines' bind limits).
const FLUSH_ROWS: usize = 100;

impl Chain {
    pub fn new(backend: Backend) -> Chain {
        Chain { backend, head: None, buffered: false, pending: Vec::new() }
    }

    /// A chain whose rows wait in memory until [`Chain::flush`].
    pub fn buffered(backend: Backend) -> Chain {
        Chain { backend, head: None, buffered: true, pending: Vec::new() }
    }

    pub async fn append(&mut self, tx: &mut Tx, ev: Event<'_>) -> Result<()> {
        let prev = match self.head.take() {
            Some(h) => h,
            None => {
                if self.backend == Backend::Postgres {
                    // One appender at a time across instances: the chain must not fork.
                    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHAIN_LOCK).execute(&mut **tx).await?;
                }
                sqlx::query("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await?
                    .map(|r| r.try_get::<String, _>(0))
                    .transpose()?
                    .unwrap_or_else(|| GENESIS.to_string())
            }
        };
        let at = super::now();
        let actor = ev.actor.label();
        let detail = ev.detail.to_string();
        let hash = hash_row(&prev, at, &actor, ev.case_id, ev.entity, &ev.entity_id, ev.action, &detail);
        self.head = Some(hash.clone());
        let row = PendingRow { at, actor, case_id: ev.case_id, entity: ev.entity.to_string(), entity_id: ev.entity_id, action: ev.action.to_string(), detail, prev, hash };
        self.pending.push(row);
        if !self.buffered {
            self.flush(tx).await?;
        }
        Ok(())
    }

    /// Writes the rows appended since the last flush, in order.
    pub async fn flush(&mut self, tx: &mut Tx) -> Result<()> {
        for chunk in self.pending.chunks(FLUSH_ROWS) {
            let mut sql = String::from("INSERT INTO audit_events (at, actor, case_id, entity, entity_id, action, detail, prev_hash, hash) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                match self.backend {
                    // Anonymous parameters: sqlx looks each named one up by
                    // name, which costs in proportion to their number.
                    Backend::Sqlite => sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    Backend::Postgres => {
                        let b = i * 9;
                        sql.push_str(&format!("(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9));
                    }
                }
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q.bind(r.at).bind(&r.actor).bind(r.case_id).bind(&r.entity).bind(&r.entity_id).bind(&r.action).bind(&r.detail).bind(&r.prev).bind(&r.hash);
            }
            q.execute(&mut **tx).await?;
        }
        self.pending.clear();
        Ok(())
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            tracing::debug!(events = self.pending.len(), "audit events not flushed: their transaction is abandoned");
        }
    }
}

/// An audit row as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub case_id: Option<i64>,
    pub entity: String,
    pub entity_id: String,
    pub action: String,
    pub detail: String,
}

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact { rows: u64 },
    /// The first row whose stored hashes do not match (altered, or the row
    /// before it was removed or altered).
    Broken { row_id: i64, reason: String },
}

/// Walks the whole chain in id order.
pub async fn verify(store: &super::Store) -> Result<Verdict> {
    let rows = sqlx::query("SELECT id, at, actor, case_id, entity, entity_id, action, detail, prev_hash, hash FROM audit_events ORDER BY id")
        .fetch_all(&store.pool)
        .await?;
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let stored_prev: String = r.try_get("prev_hash")?;
        let stored_hash: String = r.try_get("hash")?;
        if stored_prev != prev {
            return Ok(Verdict::Broken { row_id: id, reason: "previous hash does not match: a row before it was removed, inserted or altered".into() });
        }
        let h = hash_row(
            &prev,
            r.try_get("at")?,
            &r.try_get::<String, _>("actor")?,
            r.try_get("case_id")?,
            &r.try_get::<String, _>("entity")?,
            &r.try_get::<String, _>("entity_id")?,
            &r.try_get::<String, _>("action")?,
            &r.try_get::<String, _>("detail")?,
        );
        if h != stored_hash {
            return Ok(Verdict::Broken { row_id: id, reason: "content does not match its hash: the row was altered".into() });
        }
        prev = stored_hash;
        n += 1;
    }
    Ok(Verdict::Intact { rows: n })
}

/// Events of one case, oldest first.
pub async fn for_case(store: &super::Store, case_id: i64) -> Result<Vec<AuditRow>> {
    let rows = sqlx::query("SELECT id, at, actor, case_id, entity, entity_id, action, detail FROM audit_events WHERE case_id = $1 ORDER BY id")
        .bind(case_id)
        .fetch_all(&store.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                case_id: r.try_get("case_id")?,
                entity: r.try_get("entity")?,
                entity_id: r.try_get("entity_id")?,
                action: r.try_get("action")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect()
}

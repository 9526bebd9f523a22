//! store::cluster: what several serve instances on one database agree on,
//! in portable SQL: instance rows with a heartbeat, named leases with an
//! expiry (one holder at a time), and once-per-day job runs. Every time here
//! is epoch milliseconds from the database's clock ([`Store::db_now_ms`]),
//! never the instance's own, so clock skew between hosts cannot hand one
//! lease to two holders.

use super::{Backend, Result, Store, Tx};
use sqlx::Row;

/// One instance as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
    /// No heartbeat within the lease time, or stopped.
    pub alive: bool,
}

/// One lease as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub acquired_at: i64,
    pub renewed_at: i64,
    pub expires_at: i64,
    pub takeovers: i64,
    /// Milliseconds left (negative: expired or released).
    pub remaining_ms: i64,
}

/// What a claim of a day's job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayClaim {
    /// This instance runs it (`attempt` 1, or more after a dead claimer).
    Mine { attempt: i64 },
    /// Already done, or being run by a live instance.
    Taken { by: String, finished: bool },
}

impl Store {
    /// The SQL expression of the database's clock in epoch milliseconds.
    pub fn now_ms_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The database's clock, epoch milliseconds.
    pub async fn db_now_ms(&self) -> Result<i64> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {}", self.now_ms_sql()))).fetch_one(&self.pool).await?;
        Ok(r.try_get(0)?)
    }

    /// Registers a starting instance.
    pub async fn register_instance(&self, id: &str, host: &str, pid: i64) -> Result<()> {
        let now = self.now_ms_sql();
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, {now}, {now})")))
            .bind(id)
            .bind(host)
            .bind(pid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn heartbeat(&self, id: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE instances SET heartbeat_at = {} WHERE id = $1", self.now_ms_sql()))).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// A graceful stop: the instance's claims may be recovered at once.
    pub async fn instance_stopped(&self, id: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE instances SET stopped_at = {} WHERE id = $1", self.now_ms_sql()))).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Instances seen within the last day, newest first; `ttl_ms` decides
    /// which count as alive.
    pub async fn instances(&self, ttl_ms: i64) -> Result<Vec<InstanceRow>> {
        let now = self.db_now_ms().await?;
        let rows = sqlx::query("SELECT id, host, pid, started_at, heartbeat_at, stopped_at FROM instances WHERE heartbeat_at > $1 ORDER BY started_at DESC")
            .bind(now - 86_400_000)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let heartbeat_at: i64 = r.try_get("heartbeat_at")?;
                let stopped_at: Option<i64> = r.try_get("stopped_at")?;
                Ok(InstanceRow { id: r.try_get("id")?, host: r.try_get("host")?, pid: r.try_get("pid")?, started_at: r.try_get("started_at")?, heartbeat_at, stopped_at, alive: stopped_at.is_none() && heartbeat_at + ttl_ms >= now })
            })
            .collect()
    }

    /// The SQL condition "instance `col` is dead or stopped" (`$ttl` bound
    /// at position `ttl_pos`).
    fn dead_sql(&self, col: &str, ttl_pos: usize) -> String {
        format!("NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = {col} AND i.stopped_at IS NULL AND i.heartbeat_at + ${ttl_pos} >= {})", self.now_ms_sql())
    }

    /// Takes the lease `name` for `holder` for `ttl_ms` if nobody holds it
    /// (never held, released, or expired). True when `holder` now holds it.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = self.now_ms_sql();
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO leases (name, holder, acquired_at, renewed_at, expires_at, takeovers) VALUES ($1, $2, {now}, {now}, {now} + $3, 0) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at, \
             expires_at = excluded.expires_at, takeovers = leases.takeovers + 1 \
             WHERE leases.expires_at < excluded.acquired_at RETURNING holder"
        )))
        .bind(name)
        .bind(holder)
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| r.try_get::<String, _>(0)).transpose()?.as_deref() == Some(holder))
    }

    /// Extends the lease while `holder` still holds it. False: it was lost
    /// (taken over after it expired, or released), and the holder must stop.
    pub async fn renew_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = self.now_ms_sql();
        let done = sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE leases SET renewed_at = {now}, expires_at = {now} + $3 WHERE name = $1 AND holder = $2 AND expires_at > 0")))
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up at once (graceful stop): the next instance need
    /// not wait for the expiry.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2").bind(name).bind(holder).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn leases(&self) -> Result<Vec<LeaseRow>> {
        let now = self.db_now_ms().await?;
        let rows = sqlx::query("SELECT name, holder, acquired_at, renewed_at, expires_at, takeovers FROM leases ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let expires_at: i64 = r.try_get("expires_at")?;
                Ok(LeaseRow { name: r.try_get("name")?, holder: r.try_get("holder")?, acquired_at: r.try_get("acquired_at")?, renewed_at: r.try_get("renewed_at")?, expires_at, takeovers: r.try_get("takeovers")?, remaining_ms: if expires_at == 0 { -1 } else { expires_at - now } })
            })
            .collect()
    }

    /// Claims the run of `job` for `day`: the first instance to insert the
    /// row runs it; a run left unfinished by a dead instance is claimed again.
    pub async fn claim_day(&self, job: &str, day: &str, instance: &str, ttl_ms: i64) -> Result<DayClaim> {
        let now = self.now_ms_sql();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO job_runs (job, day, instance, started_at) VALUES ($1, $2, $3, {now}) ON CONFLICT (job, day) DO NOTHING")))
            .bind(job)
            .bind(day)
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(DayClaim::Mine { attempt: 1 });
        }
        let retaken = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE job_runs SET instance = $3, started_at = {now}, attempts = attempts + 1 WHERE job = $1 AND day = $2 AND finished_at IS NULL AND instance <> $3 AND {} RETURNING attempts",
            self.dead_sql("job_runs.instance", 4)
        )))
        .bind(job)
        .bind(day)
        .bind(instance)
        .bind(ttl_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = retaken {
            let attempt: i64 = r.try_get(0)?;
            tx.commit().await?;
            return Ok(DayClaim::Mine { attempt });
        }
        let r = sqlx::query("SELECT instance, finished_at FROM job_runs WHERE job = $1 AND day = $2").bind(job).bind(day).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(DayClaim::Taken { by: r.try_get("instance")?, finished: r.try_get::<Option<i64>, _>("finished_at")?.is_some() })
    }

    /// Records that the claimed run of `job` for `day` is done.
    pub async fn finish_day(&self, job: &str, day: &str, instance: &str, result: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE job_runs SET finished_at = {}, result = $4 WHERE job = $1 AND day = $2 AND instance = $3", self.now_ms_sql())))
            .bind(job)
            .bind(day)
            .bind(instance)
            .bind(result)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Outbox rows an instance left in `sending` when it died or stopped:
    /// each is taken over by `me` (one UPDATE per row, so two instances
    /// never recover the same row) and returned for the Sent-folder check.
    /// Rows without a claimer (left by a version before the one-shot `send`
    /// registered as an instance) are taken only when `with_unclaimed` (at
    /// start-up, as before several instances existed).
    pub async fn take_orphaned_sending(&self, me: &str, ttl_ms: i64, with_unclaimed: bool) -> Result<Vec<super::outbox::OutboxRow>> {
        let mut out = Vec::new();
        for row in self.outbox_sending().await? {
            let claimable = match &row.claimed_by {
                Some(c) if c == me => false,
                Some(_) => true,
                None => with_unclaimed,
            };
            if !claimable {
                continue;
            }
            let done = match &row.claimed_by {
                Some(dead) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE outbox SET claimed_by = $2 WHERE id = $1 AND status = 'sending' AND claimed_by = $3 AND {}", self.dead_sql("$3", 4))))
                        .bind(row.id)
                        .bind(me)
                        .bind(dead)
                        .bind(ttl_ms)
                        .execute(&self.pool)
                        .await?
                }
                None => sqlx::query("UPDATE outbox SET claimed_by = $2 WHERE id = $1 AND status = 'sending' AND claimed_by IS NULL").bind(row.id).bind(me).execute(&self.pool).await?,
            };
            if done.rows_affected() == 1 {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// On PostgreSQL, waits for the lock that serialises every transaction
    /// which changes cases (the audit chain's lock, taken early): a flow
    /// transaction that reads open cases after it sees every case another
    /// instance committed, so two instances never open the same case twice.
    /// SQLite's `BEGIN IMMEDIATE` already is that lock.
    pub async fn lock_case_writes(&self, tx: &mut Tx) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(super::audit::CHAIN_LOCK).execute(&mut **tx).await?;
        }
        Ok(())
    }
}

//! cluster: several `serve` instances on one database. Each instance
//! registers a row and heartbeats; each mailbox is watched only by the
//! instance that holds its lease (`mailbox:NAME`), and another takes it over
//! within `takeover_secs` when the holder dies; the daily reminder pass runs
//! once per day whichever instance gets there first. The SQL lives in
//! `store::cluster`; this module holds the loops `serve` spawns.
//!
//! Timing, from the one setting `takeover_secs` (T): a lease lasts 3T/4 from
//! its last renewal, the holder renews it every T/4, and a standby tries to
//! take it every T/4. A holder killed right after a renewal leaves a lease
//! that expires 3T/4 later, and some standby's next try comes within T/4 of
//! that: the mailbox is watched again within T. A graceful stop releases the
//! lease at once. A holder that cannot renew (lease lost, database gone)
//! stops watching at once; if two holders ever overlap for a moment, the
//! ingest keys (mailbox+UIDVALIDITY+UID, Message-ID, content hash) still
//! store each message once.

use crate::config::Config;
use crate::flow::pipeline::Pipeline;
use crate::mail::imap::{Connect, MailboxConfig};
use crate::mail::watch;
use crate::policy::Policy;
use crate::serve::Shutdown;
use crate::store::cluster::DayClaim;
use crate::store::{Store, StoreError};
use chrono::NaiveTime;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::Instrument;

/// Errors of the cluster loops.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid remind_at {0:?}: expected HH:MM (local time) or \"off\"")]
    RemindAt(String),
    #[error("takeover_secs must be at least 1")]
    Takeover,
    #[error("store failed")]
    Store(#[from] StoreError),
}

/// `[cluster]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Seconds within which another instance takes over a mailbox whose
    /// holder died (SIGKILL, crash, lost host).
    pub takeover_secs: u64,
    /// Local time at which `serve` runs the daily reminder pass (`HH:MM`),
    /// or `off`. A service started later in the day runs it at start.
    pub remind_at: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { takeover_secs: 30, remind_at: "07:00".into() }
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.takeover_secs == 0 {
            return Err(ClusterError::Takeover);
        }
        self.remind_time().map(|_| ())
    }

    /// None when the daily pass is off.
    pub fn remind_time(&self) -> Result<Option<NaiveTime>, ClusterError> {
        if self.remind_at.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        NaiveTime::parse_from_str(&self.remind_at, "%H:%M").map(Some).map_err(|_| ClusterError::RemindAt(self.remind_at.clone()))
    }

    pub fn timing(&self) -> Timing {
        Timing::from_takeover(Duration::from_secs(self.takeover_secs.max(1)))
    }
}

/// Lease length and renewal period derived from the takeover bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease or a heartbeat stays valid.
    pub ttl: Duration,
    /// Renewal, heartbeat and standby period.
    pub tick: Duration,
}

impl Timing {
    pub fn from_takeover(t: Duration) -> Timing {
        Timing { ttl: t * 3 / 4, tick: t / 4 }
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }
}

/// This process as the other instances see it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub timing: Timing,
    store: Store,
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "unknown".into())
}

impl Instance {
    /// Registers a new instance row (a fresh id per start).
    pub async fn register(store: &Store, timing: Timing) -> Result<Instance, ClusterError> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let host = hostname();
        store.register_instance(&id, &host, std::process::id() as i64).await?;
        tracing::info!(instance = %id, %host, pid = std::process::id(), takeover_ms = (timing.ttl + timing.tick).as_millis() as u64, "instance registered");
        Ok(Instance { id, timing, store: store.clone() })
    }

    /// Heartbeats every tick until shutdown.
    pub async fn heartbeat(self, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.timing.tick) => {}
                _ = shutdown.recv() => return,
            }
            if let Err(e) = self.store.heartbeat(&self.id).await {
                tracing::warn!(instance = %self.id, error = %e, "heartbeat failed");
            }
        }
    }

    /// Marks the instance stopped (its claims may be recovered at once).
    pub async fn stopped(&self) {
        if let Err(e) = self.store.instance_stopped(&self.id).await {
            tracing::warn!(instance = %self.id, error = %e, "cannot record the stop");
        }
    }
}

/// Why a holder stopped watching.
enum Ended {
    Shutdown,
    Lost,
    Failed(StoreError),
}

/// Holds the lease of one mailbox and runs its watcher while it holds it;
/// stands by (trying every tick) while another instance holds it.
pub async fn hold_mailbox<C: Connect + Clone + 'static>(inst: Instance, cfg: MailboxConfig, connector: C, store: Store, pipeline: Arc<Mutex<Pipeline>>, mut shutdown: Shutdown)
where
    C::Session: Send,
{
    let lease = format!("mailbox:{}", cfg.name);
    let span = tracing::info_span!("lease", lease = %lease, instance = %inst.id);
    async move {
        let (ttl, tick) = (inst.timing.ttl_ms(), inst.timing.tick);
        let mut standby_logged = false;
        while !shutdown.is_shutdown() {
            match store.acquire_lease(&lease, &inst.id, ttl).await {
                Ok(true) => {
                    standby_logged = false;
                    tracing::info!("lease acquired: watching the mailbox");
                    // Whatever a previous holder stored but did not process.
                    watch::run_flow(&pipeline).await;
                    let (stop, child) = Shutdown::channel();
                    let watcher = tokio::spawn(watch::watch(cfg.clone(), connector.clone(), store.clone(), pipeline.clone(), Some(inst.id.clone()), child));
                    let ended = loop {
                        tokio::select! {
                            _ = tokio::time::sleep(tick) => {}
                            _ = shutdown.recv() => break Ended::Shutdown,
                        }
                        match store.renew_lease(&lease, &inst.id, ttl).await {
                            Ok(true) => {}
                            Ok(false) => break Ended::Lost,
                            Err(e) => break Ended::Failed(e),
                        }
                    };
                    let _ = stop.send(true);
                    let _ = watcher.await;
                    match ended {
                        Ended::Shutdown => {
                            if let Err(e) = store.release_lease(&lease, &inst.id).await {
                                tracing::warn!(error = %e, "cannot release the lease; it expires by itself");
                            } else {
                                tracing::info!("lease released");
                            }
                            return;
                        }
                        Ended::Lost => tracing::warn!("lease lost to another instance: stopped watching"),
                        Ended::Failed(e) => {
                            tracing::warn!(error = %e, "cannot renew the lease: stopped watching");
                            let _ = store.release_lease(&lease, &inst.id).await;
                        }
                    }
                }
                Ok(false) => {
                    if !standby_logged {
                        tracing::info!("mailbox held by another instance: standing by");
                        standby_logged = true;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot try the lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.recv() => break,
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs the reminder pass once a day at `at` (local time), claimed in
/// `job_runs` so that one instance runs it per day; re-claimed if the
/// instance that claimed it died before finishing.
pub async fn daily_remind(inst: Instance, at: NaiveTime, cfg: Config, store: Store, policy: Policy, mut shutdown: Shutdown) {
    let span = tracing::info_span!("daily", job = "remind", instance = %inst.id);
    async move {
        let every = inst.timing.tick.clamp(Duration::from_millis(200), Duration::from_secs(30));
        let mut done: Option<chrono::NaiveDate> = None;
        loop {
            let now = chrono::Local::now();
            let day = now.date_naive();
            if now.time() >= at && done != Some(day) {
                match store.claim_day("remind", &day.to_string(), &inst.id, inst.timing.ttl_ms()).await {
                    Ok(DayClaim::Mine { attempt }) => {
                        tracing::info!(%day, attempt, "daily reminder run claimed");
                        let result = match crate::app::remind(&cfg, &store, &policy, day).await {
                            Ok(r) => {
                                tracing::info!(%day, drafts = r.drafts.len(), tasks = r.tasks.len(), escalated = r.sla.escalated.len(), "daily reminder run done");
                                format!("{} drafts, {} tasks, {} escalated", r.drafts.len(), r.tasks.len(), r.sla.escalated.len())
                            }
                            Err(e) => {
                                tracing::error!(%day, error = %format!("{e:#}"), "daily reminder run failed");
                                format!("failed: {e:#}")
                            }
                        };
                        match store.finish_day("remind", &day.to_string(), &inst.id, &result).await {
                            Ok(()) => done = Some(day),
                            Err(e) => tracing::warn!(error = %e, "cannot record the end of the daily run"),
                        }
                    }
                    Ok(DayClaim::Taken { by, finished }) => {
                        if finished {
                            tracing::debug!(%day, by = %by, "daily reminder run already done");
                            done = Some(day);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim the daily reminder run"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.recv() => return,
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_holder_is_replaced_within_the_takeover_bound() {
        let t = Timing::from_takeover(Duration::from_secs(30));
        assert_eq!(t.ttl, Duration::from_millis(22_500));
        assert_eq!(t.tick, Duration::from_millis(7_500));
        // Killed just after a renewal: expiry after ttl, a standby's next try within tick.
        assert!(t.ttl + t.tick <= Duration::from_secs(30));
        // The holder renews several times within one lease.
        assert!(t.tick * 2 < t.ttl);
    }

    #[test]
    fn remind_at_is_a_local_time_or_off() {
        let mut c = ClusterConfig::default();
        assert_eq!(c.remind_time().unwrap(), NaiveTime::from_hms_opt(7, 0, 0));
        c.remind_at = "off".into();
        assert_eq!(c.remind_time().unwrap(), None);
        c.remind_at = "7h".into();
        assert!(matches!(c.validate(), Err(ClusterError::RemindAt(_))));
        c.remind_at = "23:30".into();
        c.takeover_secs = 0;
        assert!(matches!(c.validate(), Err(ClusterError::Takeover)));
    }

    async fn sqlite() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("c.db").display())).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_until_it_expires_or_is_released() {
        let (_d, store) = sqlite().await;
        assert!(store.acquire_lease("mailbox:m", "a", 60_000).await.unwrap());
        assert!(!store.acquire_lease("mailbox:m", "b", 60_000).await.unwrap(), "held: b stands by");
        assert!(store.renew_lease("mailbox:m", "a", 60_000).await.unwrap());
        assert!(!store.renew_lease("mailbox:m", "b", 60_000).await.unwrap(), "only the holder renews");
        store.release_lease("mailbox:m", "a").await.unwrap();
        assert!(!store.renew_lease("mailbox:m", "a", 60_000).await.unwrap(), "a released lease is not renewed");
        assert!(store.acquire_lease("mailbox:m", "b", 1).await.unwrap(), "released: b takes it at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(store.acquire_lease("mailbox:m", "c", 60_000).await.unwrap(), "expired: c takes it over");
        assert!(!store.renew_lease("mailbox:m", "b", 60_000).await.unwrap(), "b lost it");
        let l = store.leases().await.unwrap();
        assert_eq!((l[0].holder.as_str(), l[0].takeovers), ("c", 2));
    }

    #[tokio::test]
    async fn a_watcher_that_lost_the_lease_cannot_overwrite_the_new_holders_mailbox_state() {
        let (_d, store) = sqlite().await;
        let state = |store: Store| async move { store.mailbox_health().await.unwrap()[0].state.clone() };
        assert!(store.acquire_lease("mailbox:m", "a", 1).await.unwrap());
        store.set_mailbox_state("m", "idle", true, Some("a")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(store.acquire_lease("mailbox:m", "b", 60_000).await.unwrap(), "a's lease expired: b takes it over");
        store.set_mailbox_state("m", "syncing", false, Some("b")).await.unwrap();
        // a notices at its next tick and stops its watcher, which writes on its way out.
        store.set_mailbox_state("m", "stopped", false, Some("a")).await.unwrap();
        store.set_mailbox_error("m", "connection reset", 1, Some("a")).await.unwrap();
        assert_eq!(state(store.clone()).await, "syncing", "b's state stands");
        store.set_mailbox_state("m", "idle", true, Some("b")).await.unwrap();
        assert_eq!(state(store.clone()).await, "idle", "the holder's own writes go through");
        store.release_lease("mailbox:m", "b").await.unwrap();
        store.set_mailbox_state("m", "stopped", false, Some("a")).await.unwrap();
        assert_eq!(state(store.clone()).await, "stopped", "nobody holds it: any instance may write");
        store.set_mailbox_state("m", "connecting", false, None).await.unwrap();
        assert_eq!(state(store).await, "connecting", "a write by no instance is always taken");
    }

    #[tokio::test]
    async fn a_day_is_claimed_once_and_again_only_after_its_claimer_died() {
        let (_d, store) = sqlite().await;
        store.register_instance("a", "h", 1).await.unwrap();
        store.register_instance("b", "h", 2).await.unwrap();
        assert_eq!(store.claim_day("remind", "2026-12-01", "a", 60_000).await.unwrap(), DayClaim::Mine { attempt: 1 });
        assert_eq!(store.claim_day("remind", "2026-12-01", "b", 60_000).await.unwrap(), DayClaim::Taken { by: "a".into(), finished: false }, "a is alive and running it");
        store.instance_stopped("a").await.unwrap();
        assert_eq!(store.claim_day("remind", "2026-12-01", "b", 60_000).await.unwrap(), DayClaim::Mine { attempt: 2 }, "a stopped before finishing: b runs it");
        store.finish_day("remind", "2026-12-01", "b", "ok").await.unwrap();
        store.register_instance("c", "h", 3).await.unwrap();
        assert_eq!(store.claim_day("remind", "2026-12-01", "c", 60_000).await.unwrap(), DayClaim::Taken { by: "b".into(), finished: true });
        assert_eq!(store.claim_day("remind", "2026-12-02", "c", 60_000).await.unwrap(), DayClaim::Mine { attempt: 1 }, "the next day is a new run");
    }

    async fn queued_row(store: &Store, n: i64) -> i64 {
        let mut tx = store.begin().await.unwrap();
        let d = crate::store::cases::NewDraft { case_id: None, message_id: None, kind: "reply", language: "fr", to_addr: Some("c@client.example"), subject: "s", body: "b", template: "t" };
        let did = store.insert_draft(&mut tx, &d).await.unwrap();
        let id = store.insert_outbox(&mut tx, did, &format!("m{n}@desk.example"), "desk@desk.example", "c@client.example", b"x").await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    #[tokio::test]
    async fn a_send_cut_short_by_a_dead_instance_is_recovered_once_by_a_live_one() {
        let (_d, store) = sqlite().await;
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            store.register_instance(id, "h", i as i64).await.unwrap();
        }
        let row = queued_row(&store, 1).await;
        let claimed = store.claim_outbox(Some("a")).await.unwrap().unwrap();
        assert_eq!((claimed.id, claimed.claimed_by.as_deref()), (row, Some("a")));
        assert!(store.claim_outbox(Some("b")).await.unwrap().is_none(), "a row is claimed once");
        assert!(store.take_orphaned_sending("b", 60_000, false).await.unwrap().is_empty(), "a is alive: its send is its own");
        store.instance_stopped("a").await.unwrap();
        let (tb, tc) = (store.take_orphaned_sending("b", 60_000, false).await.unwrap(), store.take_orphaned_sending("c", 60_000, false).await.unwrap());
        assert_eq!((tb.len(), tc.len()), (1, 0), "one live instance takes the row over");
        let r = crate::mail::sent::recover_rows(&store, None, tb).await.unwrap();
        assert_eq!(r.uncertain, 1, "no Sent folder to look in: uncertain, never resent");
        assert_eq!(store.outbox().await.unwrap()[0].status, "uncertain");

        // The one-shot `send` claims without an instance: only a start-up takes it.
        queued_row(&store, 2).await;
        store.claim_outbox(None).await.unwrap().unwrap();
        assert!(store.take_orphaned_sending("b", 60_000, false).await.unwrap().is_empty());
        assert_eq!(store.take_orphaned_sending("c", 60_000, true).await.unwrap().len(), 1);
    }
}

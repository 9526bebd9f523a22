//! watch: keeps one mailbox in step with the store. Reads the checkpoint
//! (UIDVALIDITY + last UID), fetches what is newer, hands each message to
//! ingest (which moves the checkpoint in the message's own transaction), runs
//! the flow, then waits with IDLE or polls; reconnects with exponential
//! backoff and jitter; records its health for `dispute-desk status`.
//!
//! A UIDVALIDITY change re-scans the whole folder: ingest's Message-ID and
//! content-hash keys make that safe (nothing is stored twice).

use crate::flow::ingest::{self, Ingested, Origin};
use crate::flow::pipeline::Pipeline;
use crate::mail::imap::{AfterIngest, Connect, ImapError, MailboxConfig, MailboxSession, Wake};
use crate::serve::Shutdown;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::Instrument;

/// Why a session ended; the watcher reconnects after any of them.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Imap(#[from] ImapError),
    #[error("store failed while watching")]
    Store(#[from] StoreError),
}

/// Messages fetched per `UID FETCH` (bounds memory on a large backlog).
const BATCH: usize = 50;

/// Delay before reconnect attempt `attempt` (1-based): 1 s, 2 s, 4 s… up to
/// `max`, then a random point in its upper half so that several watchers do
/// not hammer a server that comes back in step.
pub fn reconnect_delay(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempt.clamp(1, 20).saturating_sub(1)).min(max);
    let half = base / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}

/// What one sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub stored: usize,
    pub duplicates: usize,
}

/// Watches one mailbox until `shutdown`. Never returns an error: every
/// failure is logged, recorded in the health row and retried. `holder`: the
/// instance watching under the mailbox's lease (`cluster::hold_mailbox`);
/// its health writes stop counting once another instance holds the lease.
pub async fn watch<C: Connect>(cfg: MailboxConfig, connector: C, store: Store, pipeline: Arc<Mutex<Pipeline>>, holder: Option<String>, mut shutdown: Shutdown) {
    let by = holder.as_deref();
    let span = tracing::info_span!("mailbox", mailbox = %cfg.name);
    async move {
        let mut attempt: u32 = 0;
        while !shutdown.is_shutdown() {
            let _ = store.set_mailbox_state(&cfg.name, "connecting", false, by).await;
            match session(&cfg, &connector, &store, &pipeline, by, &mut shutdown, &mut attempt).await {
                Ok(()) => break,
                Err(e) => {
                    attempt += 1;
                    let delay = reconnect_delay(attempt, Duration::from_secs(cfg.reconnect_max_secs.max(1)));
                    let text = error_chain(&e);
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %text, "mailbox session failed; reconnecting");
                    let _ = store.set_mailbox_error(&cfg.name, &text, attempt as i64, by).await;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.recv() => break,
                    }
                }
            }
        }
        let _ = store.set_mailbox_state(&cfg.name, "stopped", false, by).await;
        tracing::info!("watcher stopped");
    }
    .instrument(span)
    .await
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // async-imap's messages already include their source's text.
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// One connection: select, sync, wait, sync... until shutdown (Ok) or an error.
async fn session<C: Connect>(cfg: &MailboxConfig, connector: &C, store: &Store, pipeline: &Mutex<Pipeline>, by: Option<&str>, shutdown: &mut Shutdown, attempt: &mut u32) -> Result<(), WatchError> {
    let (mut s, has_idle) = connector.connect().await?;
    let result = async {
        let folder = s.select(&cfg.folder).await?;
        let idle = cfg.idle && has_idle;
        let waiting = if idle { "idle" } else { "polling" };
        tracing::info!(uidvalidity = folder.uidvalidity, exists = folder.exists, idle, "folder selected");
        loop {
            store.set_mailbox_state(&cfg.name, "syncing", false, by).await?;
            let n = sync(cfg, &mut s, folder.uidvalidity, store, pipeline, shutdown).await?;
            if n.stored + n.duplicates > 0 {
                tracing::info!(stored = n.stored, duplicates = n.duplicates, "synced");
            }
            store.set_mailbox_state(&cfg.name, waiting, true, by).await?;
            *attempt = 0;
            if shutdown.is_shutdown() {
                return Ok(());
            }
            match s.wait(idle, Duration::from_secs(cfg.poll_secs.max(1)), Duration::from_secs(cfg.idle_reissue_secs.max(1)), shutdown).await? {
                Wake::Shutdown => return Ok(()),
                Wake::Changed | Wake::Reissue => {}
            }
        }
    }
    .await;
    s.logout().await;
    result
}

/// Fetches everything after the checkpoint, oldest first, and ingests it.
/// Stops after the message in hand when shutdown is requested.
pub async fn sync<S: MailboxSession>(cfg: &MailboxConfig, s: &mut S, uidvalidity: u32, store: &Store, pipeline: &Mutex<Pipeline>, shutdown: &Shutdown) -> Result<Synced, WatchError> {
    let after = match store.checkpoint(&cfg.name).await? {
        Some((v, last)) if v == uidvalidity as i64 => last.max(0) as u32,
        Some((v, _)) => {
            tracing::warn!(old = v, new = uidvalidity, "uidvalidity changed; rescanning the folder (duplicates are skipped)");
            0
        }
        None => 0,
    };
    let uids = s.uids_after(after).await?;
    let mut done = Synced::default();
    for chunk in uids.chunks(BATCH) {
        for m in s.fetch(chunk).await? {
            let span = tracing::info_span!("imap_message", uid = m.uid);
            let r = ingest::ingest(store, &m.raw, "in", Origin::Imap { mailbox: &cfg.name, uidvalidity: uidvalidity as i64, uid: m.uid as i64 }).instrument(span.clone()).await?;
            match r {
                Ingested::New(_) => done.stored += 1,
                Ingested::Duplicate => done.duplicates += 1,
            }
            // Only now is the message safe in the store.
            if cfg.after_ingest != AfterIngest::Leave {
                if let Err(e) = s.after_ingest(m.uid, cfg.after_ingest, &cfg.keyword, cfg.move_to.as_deref().unwrap_or("")).instrument(span).await {
                    tracing::warn!(uid = m.uid, error = %e, "after-ingest action failed (the message is stored)");
                    return Err(e.into());
                }
            }
            if shutdown.is_shutdown() {
                break;
            }
        }
        run_flow(pipeline).await;
        if shutdown.is_shutdown() {
            break;
        }
    }
    Ok(done)
}

/// Runs the flow on whatever is accepted. A failure here is the flow's own
/// business (the message stays accepted, then `failed`): the mailbox goes on.
pub async fn run_flow(pipeline: &Mutex<Pipeline>) {
    let mut p = pipeline.lock().await;
    if let Err(e) = p.run_pending().await {
        tracing::error!(error = %e, "flow run failed; accepted messages wait for the next run");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_is_capped_and_jittered() {
        let max = Duration::from_secs(60);
        for _ in 0..50 {
            let d1 = reconnect_delay(1, max);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1), "{d1:?}");
            let d3 = reconnect_delay(3, max);
            assert!(d3 >= Duration::from_secs(2) && d3 <= Duration::from_secs(4), "{d3:?}");
            let d30 = reconnect_delay(30, max);
            assert!(d30 >= Duration::from_secs(30) && d30 <= max, "{d30:?}");
        }
    }

    use crate::mail::imap::{Fetched, Folder};
    use crate::serve::Shutdown;

    /// A folder in memory; stopping the service after a given UID's
    /// after-ingest action stands for a SIGTERM arriving mid-batch.
    struct Fake {
        uidvalidity: u32,
        msgs: Vec<(u32, Vec<u8>)>,
        stop_after: Option<(u32, tokio::sync::watch::Sender<bool>)>,
    }

    impl MailboxSession for Fake {
        async fn select(&mut self, _: &str) -> Result<Folder, ImapError> {
            Ok(Folder { uidvalidity: self.uidvalidity, exists: self.msgs.len() as u32 })
        }
        async fn uids_after(&mut self, after: u32) -> Result<Vec<u32>, ImapError> {
            Ok(self.msgs.iter().map(|m| m.0).filter(|u| *u > after).collect())
        }
        async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Fetched>, ImapError> {
            Ok(self.msgs.iter().filter(|m| uids.contains(&m.0)).map(|m| Fetched { uid: m.0, raw: m.1.clone() }).collect())
        }
        async fn after_ingest(&mut self, uid: u32, _: AfterIngest, _: &str, _: &str) -> Result<(), ImapError> {
            if let Some((u, tx)) = &self.stop_after {
                if *u == uid {
                    let _ = tx.send(true);
                }
            }
            Ok(())
        }
        async fn wait(&mut self, _: bool, _: Duration, _: Duration, _: &mut Shutdown) -> Result<Wake, ImapError> {
            Ok(Wake::Shutdown)
        }
        async fn logout(&mut self) {}
    }

    fn mail(i: u32) -> Vec<u8> {
        format!("From: a@client.example\r\nSubject: n{i}\r\nMessage-ID: <m{i}@client.example>\r\n\r\nbonjour {i}\r\n").into_bytes()
    }

    #[tokio::test]
    async fn shutdown_mid_batch_keeps_the_checkpoint_on_the_last_stored_message_and_a_new_uidvalidity_rescans() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
        let (store, policy) = crate::app::open(&cfg).await.unwrap();
        let pipeline = Mutex::new(crate::app::pipeline(&cfg, store.clone(), policy).await.unwrap());
        let mb = MailboxConfig { name: "m".into(), after_ingest: AfterIngest::Keyword, ..MailboxConfig::default() };

        let (tx, shutdown) = Shutdown::channel();
        let mut s = Fake { uidvalidity: 7, msgs: (1..=5).map(|i| (i, mail(i))).collect(), stop_after: Some((2, tx)) };
        let n = sync(&mb, &mut s, 7, &store, &pipeline, &shutdown).await.unwrap();
        assert_eq!(n, Synced { stored: 2, duplicates: 0 }, "the message in hand is finished, the rest waits");
        assert_eq!(store.checkpoint("m").await.unwrap(), Some((7, 2)));
        assert!(store.messages_where(None, Some("accepted"), None).await.unwrap().is_empty(), "what was stored went through the flow");

        let (_tx, shutdown) = Shutdown::channel();
        s.stop_after = None;
        let n = sync(&mb, &mut s, 7, &store, &pipeline, &shutdown).await.unwrap();
        assert_eq!(n, Synced { stored: 3, duplicates: 0 }, "the next start goes on from the checkpoint");
        assert_eq!(store.checkpoint("m").await.unwrap(), Some((7, 5)));

        // Same messages under new UIDs and a new UIDVALIDITY, plus one.
        let mut s = Fake { uidvalidity: 9, msgs: (1..=6).map(|i| (i + 100, mail(i))).collect(), stop_after: None };
        let n = sync(&mb, &mut s, 9, &store, &pipeline, &shutdown).await.unwrap();
        assert_eq!(n, Synced { stored: 1, duplicates: 5 });
        assert_eq!(store.checkpoint("m").await.unwrap(), Some((9, 106)));
        assert_eq!(store.messages_where(None, None, None).await.unwrap().len(), 6);
    }
}

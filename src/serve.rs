//! serve: the long-running service. Runs one watcher per configured mailbox,
//! the outbox worker, the web desk and the JSON API on one listener
//! (`[web] listen`), and the webhook worker when endpoints are configured,
//! until the shutdown signal given as an argument
//! fires (SIGINT/SIGTERM from `main`, a channel in tests); then every task
//! stops at a safe point: IDLE is ended, the message in hand is finished,
//! checkpoints are left where the last stored message put them.
//!
//! Several instances may serve one database (see `cluster`): each mailbox is
//! watched by the holder of its lease, the outbox rows and the daily
//! reminder run are claimed, the web desk and the API answer everywhere.

use crate::app;
use crate::cluster::{self, Instance};
use crate::config::Config;
use crate::flow::outbox::send_due_as;
use crate::mail::imap::{ImapConnector, ImapSent, SentFolder};
use crate::mail::sent::{recover_rows, SentCopy};
use crate::mail::smtp::SmtpSender;
use crate::mail::watch;
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch as wch, Mutex};

/// A task's view of the shutdown signal (cheap to clone, one per task).
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: wch::Receiver<bool>,
}

impl Shutdown {
    /// A signal and the handle that fires it.
    pub fn channel() -> (wch::Sender<bool>, Shutdown) {
        let (tx, rx) = wch::channel(false);
        (tx, Shutdown { rx })
    }

    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is requested (or the sender is gone).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}

/// The one-shot `send`: one pass over the due outbox rows, run as a
/// registered instance (heartbeating meanwhile, marked stopped at the end), so
/// the rows it claims carry its id. A `serve` starting during the pass leaves
/// them alone (their claimer is alive); if the pass dies mid-send, a live
/// instance recovers its row through the Sent-folder check once its heartbeat
/// is stale, as for any instance.
pub async fn send_once(store: &crate::store::Store, sender: &dyn crate::mail::smtp::SendMail, cfg: &Config) -> Result<crate::flow::outbox::SendReport> {
    let inst = Instance::register(store, cfg.cluster.timing()).await?;
    let (tx, shutdown) = Shutdown::channel();
    let beat = tokio::spawn(inst.clone().heartbeat(shutdown));
    let r = send_due_as(store, sender, cfg.send_max_attempts, Some(&inst.id)).await;
    let _ = tx.send(true);
    let _ = beat.await;
    inst.stopped().await;
    Ok(r?)
}

/// Runs the watchers and the outbox worker until `signal` resolves.
pub async fn run(cfg: Config, signal: impl Future<Output = ()>) -> Result<()> {
    cfg.validate_mailboxes()?;
    cfg.cluster.validate()?;
    let (store, policy) = app::open(&cfg).await?;
    let inst = Instance::register(&store, cfg.cluster.timing()).await?;
    let ttl = inst.timing.ttl_ms();
    // Heartbeats from the start: a slow start-up must not look like a death
    // to the other instances (they would take over this one's claims).
    let (tx, shutdown) = Shutdown::channel();
    let mut tasks = vec![tokio::spawn(inst.clone().heartbeat(shutdown.clone()))];
    let pipeline = Arc::new(Mutex::new(app::pipeline(&cfg, store.clone(), policy.clone()).await?));
    // Whatever a previous run stored but did not process.
    watch::run_flow(&pipeline).await;

    let sent: Option<Arc<dyn SentFolder>> = cfg.sent_mailbox().map(|m| Arc::new(ImapSent { cfg: m.clone() }) as Arc<dyn SentFolder>);
    // Rows left in `sending` by the one-shot `send` or by an instance that
    // is gone; rows of live instances are theirs.
    let orphans = store.take_orphaned_sending(&inst.id, ttl, true).await.context("claiming interrupted sends")?;
    let rec = recover_rows(&store, sent.as_deref(), orphans).await.context("recovering interrupted sends")?;
    if rec.sent + rec.uncertain > 0 {
        tracing::warn!(sent = rec.sent, uncertain = rec.uncertain, "outbox rows interrupted mid-send resolved");
    }

    for m in &cfg.mailbox {
        tasks.push(tokio::spawn(cluster::hold_mailbox(inst.clone(), m.clone(), ImapConnector { cfg: m.clone() }, store.clone(), pipeline.clone(), shutdown.clone())));
    }
    if let Some(at) = cfg.cluster.remind_time()? {
        tasks.push(tokio::spawn(cluster::daily_remind(inst.clone(), at, cfg.clone(), store.clone(), policy.clone(), shutdown.clone())));
    }
    let sender = SentCopy { inner: SmtpSender::new(&cfg.smtp).context("configuring SMTP")?, sent: sent.clone() };
    let worker = {
        let store = store.clone();
        let mut shutdown = shutdown.clone();
        let every = Duration::from_secs(cfg.outbox_poll_secs.max(1));
        let max = cfg.send_max_attempts;
        let me = inst.id.clone();
        tokio::spawn(async move {
            loop {
                // Another instance died mid-send: its rows are resolved from
                // the Sent folder by whoever claims them first.
                match store.take_orphaned_sending(&me, ttl, false).await {
                    Ok(rows) if !rows.is_empty() => match recover_rows(&store, sent.as_deref(), rows).await {
                        Ok(r) => tracing::warn!(sent = r.sent, uncertain = r.uncertain, "outbox rows of a stopped instance resolved"),
                        Err(e) => tracing::error!(error = %e, "cannot resolve the outbox rows of a stopped instance"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot look for interrupted sends"),
                }
                match send_due_as(&store, &sender, max, Some(&me)).await {
                    Ok(r) if r.sent + r.retried + r.failed > 0 => tracing::info!(sent = r.sent, retried = r.retried, failed = r.failed, "outbox pass"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "outbox pass failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.recv() => break,
                }
            }
        })
    };
    tasks.push(worker);

    // The web desk and the JSON API share one listener. A port that cannot
    // be bound stops serve with a clear error rather than running headless.
    let listener = tokio::net::TcpListener::bind(&cfg.web.listen).await.with_context(|| format!("cannot listen on {} for the web desk and the API (set [web] listen)", cfg.web.listen))?;
    let addr = listener.local_addr()?;
    let web = crate::web::WebState::new(store.clone(), policy.clone(), cfg.clone()).context("loading the web templates")?;
    let api = crate::api::ApiState { store: store.clone(), policy: Arc::new(policy), cfg: Arc::new(cfg.clone()) };
    let http = crate::web::router(web).merge(crate::api::router(api));
    {
        let mut shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, http.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(async move { shutdown.recv().await });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "web desk and API stopped");
            }
        }));
    }
    if !cfg.webhooks.is_empty() {
        let (store, endpoints, mut shutdown) = (store.clone(), cfg.webhooks.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::webhooks::run(store, endpoints, crate::webhooks::Settings::default(), Duration::from_secs(10), async move { shutdown.recv().await }).await {
                tracing::error!(error = %e, "webhook worker stopped");
            }
        }));
    }
    tracing::info!(instance = %inst.id, mailboxes = cfg.mailbox.len(), webhooks = cfg.webhooks.len(), %addr, "serving: web desk and API on http://{addr}");
    signal.await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    inst.stopped().await;
    store.pool.close().await;
    Ok(())
}

/// SIGINT or SIGTERM.
pub async fn signals() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! The live-mailbox benchmark (a command, not a timed test):
//! `cargo bench --bench mailbox` (add `--profile dev` to skip the release
//! build). Starts a throwaway Dovecot (tests/support/dovecot.rs) and `serve` on
//! a fresh SQLite database with the tests' mini company, then reports:
//! Dovecot's own IDLE notify delay (APPEND → EXISTS seen by a bare client),
//! APPEND → message processed with its case and drafts (median, p95), and the
//! messages per second ingested and processed from a backlog.
//! `BENCH_SAMPLES` (default 40) and `BENCH_BACKLOG` (default 2000) size it.

#[path = "../tests/support/dovecot.rs"]
mod dovecot;

use dispute_desk::app;
use dispute_desk::config::Config;
use dispute_desk::mail::imap::{self, MailboxConfig};
use dispute_desk::mail::smtp::TlsMode;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn mail(tag: &str) -> Vec<u8> {
    format!(
        "From: Paul Garnier <p.garnier@transports-garnier.fr>\r\nTo: julie.morel@sud-levage.fr\r\nSubject: Facture SL 26 101 - tarif horaire ({tag})\r\n\
         Date: Tue, 03 Mar 2026 10:12:00 +0100\r\nMessage-ID: <{tag}@transports-garnier.fr>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Nous contestons le taux horaire de la facture SL-26-101 : le devis prévoyait 68 € HT et non 82 €.\r\n"
    )
    .into_bytes()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let samples = env_n("BENCH_SAMPLES", 40);
    let backlog = env_n("BENCH_BACKLOG", 2000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dv = dovecot::Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::in_checkout(dir.path(), &root);
    cfg.mailbox = vec![MailboxConfig {
        name: "bench".into(),
        host: "127.0.0.1".into(),
        port: Some(dv.imap_port),
        tls: TlsMode::None,
        username: dovecot::USER.into(),
        password: Some(dovecot::PASSWORD.into()),
        ..MailboxConfig::default()
    }];
    let (store, _) = app::open(&cfg).await.unwrap();
    app::import_corpus(&store, &root.join("tests/fixtures/mini")).await.unwrap();
    let mut c = imap::connect(&cfg.mailbox[0]).await.unwrap();

    // 1. Dovecot alone: APPEND → EXISTS on a second, idling connection.
    let mut notify = Vec::new();
    {
        let mut w = imap::connect(&cfg.mailbox[0]).await.unwrap();
        w.select("Notify").await.ok();
        c.create("Notify").await.unwrap();
        w.select("Notify").await.unwrap();
        let mut idle = w.idle();
        for i in 0..samples.min(10) {
            idle.init().await.unwrap();
            let (fut, _stop) = idle.wait_with_timeout(Duration::from_secs(10));
            let t0 = Instant::now();
            let (r, _) = tokio::join!(fut, c.append("Notify", None, None, mail(&format!("n{i}"))));
            r.unwrap();
            notify.push(t0.elapsed());
            w = idle.done().await.unwrap();
            idle = w.idle();
        }
    }

    // 2. serve: APPEND → processed (case and drafts in the same transaction).
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(dispute_desk::serve::run(cfg.clone(), async move {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store.mailbox_health().await.unwrap().iter().any(|h| h.state == "idle") {
        assert!(Instant::now() < deadline, "serve did not reach idle");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut lat = Vec::new();
    for i in 0..samples {
        let tag = format!("lat{i}");
        let t0 = Instant::now();
        c.append("INBOX", None, None, mail(&tag)).await.unwrap();
        let mid = format!("{tag}@transports-garnier.fr");
        loop {
            if let Some(m) = store.messages_by_message_id(&mid).await.unwrap() {
                if m.state == "processed" {
                    break;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "message {tag} not processed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(t0.elapsed());
        // Let the watcher go back to IDLE, as between two real client mails.
        while !store.mailbox_health().await.unwrap().iter().any(|h| h.state == "idle") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let _ = tx.send(());
    serve.await.unwrap().unwrap();

    // 3. Backlog: appended while serve is down, then drained.
    let t_app = Instant::now();
    for i in 0..backlog {
        c.append("INBOX", None, None, mail(&format!("b{i}"))).await.unwrap();
    }
    let app_secs = t_app.elapsed().as_secs_f64();
    let before = store.messages_where(None, None, None).await.unwrap().len();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let t0 = Instant::now();
    let serve = tokio::spawn(dispute_desk::serve::run(cfg.clone(), async move {
        let _ = rx.await;
    }));
    let mut stored_at = None;
    loop {
        if stored_at.is_none() && store.messages_where(None, None, None).await.unwrap().len() >= before + backlog {
            stored_at = Some(t0.elapsed().as_secs_f64());
        }
        let done = store.messages_where(None, Some("processed"), None).await.unwrap().len();
        if done >= before + backlog {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(1800), "backlog not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = t0.elapsed().as_secs_f64();
    let _ = tx.send(());
    serve.await.unwrap().unwrap();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("dispute-desk mailbox benchmark (Dovecot on loopback, SQLite, {} build)", if cfg!(debug_assertions) { "debug" } else { "release" });
    println!("  Dovecot IDLE notify delay (APPEND → EXISTS), {} samples: median {:.0} ms, p95 {:.0} ms", notify.len(), ms(pct(&mut notify, 0.5)), ms(pct(&mut notify, 0.95)));
    println!("  APPEND → processed with case and drafts, {} samples: median {:.0} ms, p95 {:.0} ms", lat.len(), ms(pct(&mut lat, 0.5)), ms(pct(&mut lat, 0.95)));
    let stored = stored_at.unwrap_or(drain);
    println!("  backlog of {backlog}: appended in {app_secs:.1} s; all stored after {stored:.1} s, all processed after {drain:.1} s = {:.0} messages/s", backlog as f64 / drain);
    println!("  (every message continues the same client's case: the flow reloads the case history per message, so this is the worst case)");
}

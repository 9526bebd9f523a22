//! The live mailbox against a real Dovecot started by the test (see
//! support/dovecot.rs) and the in-process SMTP server: `serve` ingests what
//! arrives during IDLE exactly once (also in a burst of 200) and leaves it
//! unseen, resumes from its checkpoint after a restart (also after SIGKILL of
//! the real binary mid-burst), re-scans after a UIDVALIDITY change without
//! duplicates, reconnects after the server restarts, re-issues IDLE, flags or
//! moves after ingest, retries a down SMTP server and sends once, keeps a copy
//! of what it sends in Sent and resolves an interrupted send from it; TLS,
//! STARTTLS and XOAUTH2 logins work (Dovecot's xoauth2 mechanism checks the
//! bearer token against its passdb, which holds the test token). Every wait
//! polls with a deadline.

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/smtp_server.rs"]
mod smtp_server;

use dispute_desk::app;
use dispute_desk::config::Config;
use dispute_desk::domain::EmailAddress;
use dispute_desk::flow::approve;
use dispute_desk::mail::imap::{self, AfterIngest, ImapError, ImapSent, MailboxConfig, SentFolder};
use dispute_desk::mail::smtp::{SendMail, SmtpSender, TlsMode};
use dispute_desk::store::Store;
use dovecot::Dovecot;
use futures_util::TryStreamExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mailbox(dv: &Dovecot, name: &str, folder: &str) -> MailboxConfig {
    MailboxConfig {
        name: name.into(),
        host: "127.0.0.1".into(),
        port: Some(dv.imap_port),
        tls: TlsMode::None,
        username: dovecot::USER.into(),
        password: Some(dovecot::PASSWORD.into()),
        folder: folder.into(),
        poll_secs: 1,
        reconnect_max_secs: 2,
        timeout_secs: 10,
        ..MailboxConfig::default()
    }
}

/// A desk (own SQLite database, the mini company imported) and its Dovecot.
struct Desk {
    cfg: Config,
    store: Store,
    dv: Dovecot,
    _dir: tempfile::TempDir,
}

impl Desk {
    async fn new(folder: &str) -> Desk {
        let dv = Dovecot::start();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::in_checkout(dir.path(), &root());
        // Each serve in the tests gets its own free port for the web desk.
        cfg.web.listen = "127.0.0.1:0".into();
        cfg.company.name = "Sud Levage SARL".into();
        cfg.company.from_address = "julie.morel@sud-levage.fr".into();
        cfg.outbox_poll_secs = 1;
        cfg.mailbox = vec![mailbox(&dv, "compta", folder)];
        let (store, _) = app::open(&cfg).await.unwrap();
        app::import_corpus(&store, &root().join("tests/fixtures/mini")).await.unwrap();
        Desk { cfg, store, dv, _dir: dir }
    }

    /// A client session of the test user, to deliver and inspect mail.
    async fn client(&self) -> imap::Session {
        imap::connect(&self.cfg.mailbox[0]).await.unwrap_or_else(|e| panic!("test client cannot log in: {e}\n{}", self.dv.log()))
    }

    fn serve(&self) -> Serving {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let cfg = self.cfg.clone();
        let handle = tokio::spawn(dispute_desk::serve::run(cfg, async move {
            let _ = rx.await;
        }));
        Serving { tx, handle }
    }

    async fn imap_rows(&self) -> Vec<(i64, i64, String)> {
        use sqlx::Row;
        sqlx::query("SELECT uidvalidity, uid, message_id FROM messages WHERE source = 'imap:compta' ORDER BY id")
            .fetch_all(&self.store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    async fn state(&self) -> Option<String> {
        self.store.mailbox_health().await.unwrap().into_iter().find(|h| h.mailbox == "compta").map(|h| h.state)
    }

    async fn wait_state(&self, want: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let h = self.store.mailbox_health().await.unwrap();
            if h.iter().any(|h| h.mailbox == "compta" && h.state == want) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out after {secs} s waiting for mailbox state {want}: {h:?}\ndovecot log:\n{}", self.dv.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_count(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.imap_rows().await.len();
            if got >= n {
                assert_eq!(got, n, "more messages than were delivered");
                return;
            }
            assert!(Instant::now() < deadline, "only {got} of {n} messages ingested within {secs} s (state {:?})\n{}", self.state().await, self.dv.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Serving {
    tx: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Serving {
    async fn stop(self) {
        let _ = self.tx.send(());
        tokio::time::timeout(Duration::from_secs(20), self.handle).await.expect("serve stops within 20 s after the signal").unwrap().unwrap();
    }
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client's dispute about invoice SL-26-101, unique by `tag`.
fn dispute(tag: &str) -> Vec<u8> {
    format!(
        "From: Paul Garnier <p.garnier@transports-garnier.fr>\r\nTo: julie.morel@sud-levage.fr\r\nSubject: Facture SL 26 101 - tarif horaire ({tag})\r\n\
         Date: Tue, 03 Mar 2026 10:12:00 +0100\r\nMessage-ID: <{tag}@transports-garnier.fr>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Bonjour,\r\n\r\nNous contestons le taux horaire appliqué sur votre facture SL-26-101 : le devis\r\nsigné prévoyait 68 € HT de l'heure et non 82 €. Merci de nous faire parvenir un\r\navoir pour la différence.\r\n\r\nCordialement,\r\nPaul Garnier\r\n"
    )
    .into_bytes()
}

async fn append(s: &mut imap::Session, folder: &str, raw: &[u8]) {
    s.append(folder, None, None, raw).await.unwrap();
}

async fn flags(s: &mut imap::Session, folder: &str) -> Vec<Vec<String>> {
    s.examine(folder).await.unwrap();
    let f: Vec<_> = s.uid_fetch("1:*", "FLAGS").await.unwrap().try_collect().await.unwrap();
    f.iter().map(|m| m.flags().map(|f| format!("{f:?}")).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_arriving_during_idle_is_ingested_once_with_its_case_and_drafts_and_stays_unseen() {
    let desk = Desk::new("INBOX").await;
    let serving = desk.serve();
    desk.wait_state("idle", 15).await;

    let mut c = desk.client().await;
    let t0 = Instant::now();
    append(&mut c, "INBOX", &dispute("idle-1")).await;
    let store = desk.store.clone();
    wait_for("the message processed into a case with drafts", 10, || {
        let store = store.clone();
        async move {
            match store.messages_by_message_id("idle-1@transports-garnier.fr").await.unwrap() {
                Some(m) if m.state == "processed" => match m.case_id {
                    Some(c) => !store.drafts(None, Some(c)).await.unwrap().is_empty(),
                    None => false,
                },
                _ => false,
            }
        }
    })
    .await;
    eprintln!("measured: APPEND to case and drafts stored during IDLE: {} ms (includes Dovecot's ~0.5 s IDLE notify delay)", t0.elapsed().as_millis());
    let m = desk.store.messages_by_message_id("idle-1@transports-garnier.fr").await.unwrap().unwrap();
    assert_eq!(m.category.as_deref(), Some("price"));
    assert_eq!(desk.imap_rows().await.len(), 1);

    // A burst: each message exactly once.
    let t1 = Instant::now();
    for i in 0..200 {
        append(&mut c, "INBOX", &dispute(&format!("burst-{i}"))).await;
    }
    desk.wait_count(201, 60).await;
    eprintln!("measured: 200 appended messages ingested and processed in {} ms", t1.elapsed().as_millis());
    serving.stop().await;

    let rows = desk.imap_rows().await;
    let uids: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(uids.len(), 201, "one row per uid");
    assert_eq!(uids.iter().copied().collect::<Vec<_>>(), (1..=201).collect::<Vec<_>>());
    let cp = desk.store.checkpoint("compta").await.unwrap().unwrap();
    assert_eq!(cp.1, 201, "the checkpoint is the last uid stored");
    let pending = desk.store.messages_where(None, Some("accepted"), None).await.unwrap();
    assert!(pending.is_empty(), "every message went through the flow");

    // BODY.PEEK[]: the mailbox still shows everything unread.
    let f = flags(&mut c, "INBOX").await;
    assert_eq!(f.len(), 201);
    assert!(f.iter().all(|m| !m.iter().any(|x| x.contains("Seen"))), "a fetched message was marked seen: {f:?}");
    assert_eq!(desk.state().await.as_deref(), Some("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_arriving_while_the_watcher_is_down_is_picked_up_from_the_checkpoint_once() {
    let mut desk = Desk::new("INBOX").await;
    desk.cfg.mailbox[0].idle = false; // the polling path
    let mut c = desk.client().await;
    for i in 0..3 {
        append(&mut c, "INBOX", &dispute(&format!("before-{i}"))).await;
    }
    let serving = desk.serve();
    desk.wait_count(3, 20).await;
    desk.wait_state("polling", 10).await;
    serving.stop().await;
    for i in 0..5 {
        append(&mut c, "INBOX", &dispute(&format!("down-{i}"))).await;
    }
    assert_eq!(desk.imap_rows().await.len(), 3);
    let serving = desk.serve();
    desk.wait_count(8, 20).await;
    desk.wait_state("polling", 10).await;
    serving.stop().await;
    let rows = desk.imap_rows().await;
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>(), "each uid once, in order");
    assert_eq!(desk.store.checkpoint("compta").await.unwrap().unwrap().1, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_rescans_the_folder_without_duplicates() {
    let desk = Desk::new("Factures").await;
    let mut c = desk.client().await;
    c.create("Factures").await.unwrap();
    for i in 0..3 {
        append(&mut c, "Factures", &dispute(&format!("uv-{i}"))).await;
    }
    let serving = desk.serve();
    desk.wait_count(3, 20).await;
    serving.stop().await;
    let (old_validity, _) = desk.store.checkpoint("compta").await.unwrap().unwrap();

    // The folder is deleted and recreated with the same messages and one new.
    c.delete("Factures").await.unwrap();
    c.create("Factures").await.unwrap();
    for i in 0..4 {
        append(&mut c, "Factures", &dispute(&format!("uv-{i}"))).await;
    }
    let uv = c.select("Factures").await.unwrap().uid_validity.unwrap() as i64;
    assert_ne!(uv, old_validity, "dovecot gave the recreated folder a new uidvalidity");
    let serving = desk.serve();
    let store = desk.store.clone();
    wait_for("the checkpoint on the new uidvalidity", 20, || {
        let store = store.clone();
        async move { store.checkpoint("compta").await.unwrap() == Some((uv, 4)) }
    })
    .await;
    serving.stop().await;
    let rows = desk.imap_rows().await;
    assert_eq!(rows.len(), 4, "three known messages skipped, one new stored: {rows:?}");
    assert_eq!(rows[3], (uv, 4, "uv-3@transports-garnier.fr".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dovecot_restart_mid_idle_is_survived_with_nothing_lost_or_repeated() {
    let mut desk = Desk::new("INBOX").await;
    let serving = desk.serve();
    desk.wait_state("idle", 15).await;
    let mut c = desk.client().await;
    append(&mut c, "INBOX", &dispute("rs-0")).await;
    desk.wait_count(1, 10).await;

    // The server goes away under the IDLE.
    drop(c);
    desk.dv.stop();
    desk.wait_state("reconnecting", 15).await;
    let h = desk.store.mailbox_health().await.unwrap().into_iter().find(|h| h.mailbox == "compta").unwrap();
    assert!(h.attempt >= 1 && h.last_error.is_some(), "{h:?}");
    eprintln!("health while down: attempt {} last error {:?}", h.attempt, h.last_error);

    // Mail keeps arriving while the server is down (the MTA drops it in the maildir).
    desk.dv.deliver_to_maildir("rs-down", &dispute("rs-down"));
    let t0 = Instant::now();
    desk.dv.start_again();
    let mut c = desk.client().await;
    for i in 1..4 {
        append(&mut c, "INBOX", &dispute(&format!("rs-{i}"))).await;
    }
    desk.wait_count(5, 30).await;
    eprintln!("measured: server back to the 4 new messages ingested: {} ms", t0.elapsed().as_millis());
    desk.wait_state("idle", 10).await;
    let h = desk.store.mailbox_health().await.unwrap().into_iter().find(|h| h.mailbox == "compta").unwrap();
    assert_eq!(h.attempt, 0, "a successful sync resets the attempts");
    assert!(h.last_sync_at.is_some());
    serving.stop().await;
    let rows = desk.imap_rows().await;
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(rows.iter().any(|r| r.2 == "rs-down@transports-garnier.fr"), "the message delivered while the server was down is there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_ingest_adds_the_keyword_or_moves_the_message_once_stored() {
    let mut desk = Desk::new("INBOX").await;
    desk.cfg.mailbox[0].after_ingest = AfterIngest::Keyword;
    let mut c = desk.client().await;
    append(&mut c, "INBOX", &dispute("kw-0")).await;
    let serving = desk.serve();
    desk.wait_count(1, 20).await;
    desk.wait_state("idle", 10).await;
    serving.stop().await;
    let f = flags(&mut c, "INBOX").await;
    assert!(f[0].iter().any(|x| x.contains("$DisputeDesk")), "{f:?}");
    assert!(!f[0].iter().any(|x| x.contains("Seen")), "{f:?}");

    desk.cfg.mailbox[0].after_ingest = AfterIngest::Move;
    desk.cfg.mailbox[0].move_to = Some("Traite".into());
    c.create("Traite").await.unwrap();
    append(&mut c, "INBOX", &dispute("mv-0")).await;
    let serving = desk.serve();
    desk.wait_count(2, 20).await;
    desk.wait_state("idle", 10).await;
    serving.stop().await;
    assert_eq!(flags(&mut c, "INBOX").await.len(), 1, "the new message left INBOX");
    assert_eq!(flags(&mut c, "Traite").await.len(), 1, "and is in Traite");
}

/// Approves the pending reply to Transports Garnier (as the accountant).
async fn approve_reply(desk: &Desk, to: &str) -> i64 {
    let policy = dispute_desk::policy::Policy::load(desk.cfg.policies_dir.as_deref()).unwrap();
    let from = EmailAddress::parse(&desk.cfg.company.from_address).unwrap();
    let d = desk.store.drafts(Some("pending"), None).await.unwrap().into_iter().find(|d| d.kind == "reply" && d.to_addr.as_deref() == Some(to)).unwrap_or_else(|| panic!("no pending reply to {to}"));
    let acc = desk.store.user("A1").await.unwrap();
    approve::approve(&desk.store, &policy, &from, "Sud Levage", d.id, &acc).await.unwrap().outbox_id.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_mail_is_kept_in_sent_and_an_interrupted_send_is_resolved_from_it() {
    let mut desk = Desk::new("INBOX").await;
    let smtp = smtp_server::spawn_smtp(mailin::response::OK);
    desk.cfg.smtp = smtp.config.clone();
    // The mini company's mail (files) gives several replies to approve.
    let (store, policy) = app::open(&desk.cfg).await.unwrap();
    let mut p = app::pipeline(&desk.cfg, store, policy).await.unwrap();
    app::ingest_path(&mut p, &root().join("tests/fixtures/mini"), false).await.unwrap();
    let mut c = desk.client().await;
    append(&mut c, "INBOX", &dispute("sent-1")).await;
    let serving = desk.serve();
    desk.wait_count(1, 20).await;
    desk.wait_state("idle", 10).await;

    // Approved while serve runs: sent once, kept in Sent, seen.
    let first = approve_reply(&desk, "p.garnier@transports-garnier.fr").await;
    let store = desk.store.clone();
    wait_for("the approved reply sent", 20, || {
        let store = store.clone();
        async move { store.outbox().await.unwrap().iter().any(|r| r.id == first && r.status == "sent") }
    })
    .await;
    serving.stop().await;
    assert_eq!(smtp.received().len(), 1);
    let row = desk.store.outbox().await.unwrap().into_iter().find(|r| r.id == first).unwrap();
    c.examine("Sent").await.unwrap();
    let got: Vec<_> = c.uid_fetch("1:*", "(FLAGS BODY.PEEK[])").await.unwrap().try_collect().await.unwrap();
    assert_eq!(got.len(), 1, "one copy in Sent");
    assert_eq!(got[0].body().unwrap(), row.raw.as_slice(), "Sent holds the exact bytes sent");
    assert!(got[0].flags().any(|f| format!("{f:?}").contains("Seen")));
    let received = smtp.received();
    let parsed = mail_parser::MessageParser::default().parse(&received[0].data).unwrap();
    assert!(parsed.in_reply_to().as_text().is_some(), "threaded to the client's message");

    // Two more approvals; a "crash" leaves both in `sending`: one had reached
    // the SMTP server and Sent, the other had not.
    let drafts = desk.store.drafts(Some("pending"), None).await.unwrap();
    let policy = dispute_desk::policy::Policy::load(desk.cfg.policies_dir.as_deref()).unwrap();
    let from = EmailAddress::parse(&desk.cfg.company.from_address).unwrap();
    let acc = desk.store.user("A1").await.unwrap();
    let replies: Vec<_> = drafts.iter().filter(|d| d.kind == "reply").take(2).collect();
    assert_eq!(replies.len(), 2, "the mini company has two more replies pending: {drafts:?}");
    let mut ids = vec![];
    for d in &replies {
        ids.push(approve::approve(&desk.store, &policy, &from, "Sud Levage", d.id, &acc).await.unwrap().outbox_id.unwrap());
    }
    let reached = desk.store.claim_outbox(None).await.unwrap().unwrap();
    let lost = desk.store.claim_outbox(None).await.unwrap().unwrap();
    let sender = SmtpSender::new(&smtp.config).unwrap();
    let to: Vec<EmailAddress> = reached.to_addrs.split(',').map(|a| EmailAddress::parse(a).unwrap()).collect();
    sender.send(&from, &to, &reached.raw).await.unwrap();
    ImapSent { cfg: desk.cfg.mailbox[0].clone() }.append_sent(&reached.raw).await.unwrap();
    assert_eq!(smtp.received().len(), 2);

    let serving = desk.serve();
    desk.wait_state("idle", 15).await;
    let rows = desk.store.outbox().await.unwrap();
    let st = |id: i64| rows.iter().find(|r| r.id == id).unwrap().status.clone();
    assert_eq!(st(reached.id), "sent", "found in Sent: marked sent");
    assert_eq!(st(lost.id), "uncertain", "not in Sent: waits for a person");
    serving.stop().await;
    assert_eq!(smtp.received().len(), 2, "nothing was sent again");
    let copies = desk.store.messages_where(Some("sent"), None, None).await.unwrap();
    assert!(copies.iter().any(|m| m.message_id.as_deref() == Some(reached.message_id.as_str())), "the recovered send keeps its outbound copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_starttls_and_xoauth2_logins_work_and_a_bad_token_is_refused() {
    let dv = Dovecot::start();
    let base = mailbox(&dv, "t", "INBOX");

    let tls = MailboxConfig { tls: TlsMode::Tls, port: Some(dv.imaps_port), ca_file: Some(dv.cert()), ..base.clone() };
    let mut s = imap::connect(&tls).await.unwrap_or_else(|e| panic!("implicit tls: {e:?}\n{}", dv.log()));
    s.select("INBOX").await.unwrap();
    s.logout().await.unwrap();

    let untrusted = MailboxConfig { ca_file: None, ..tls.clone() };
    assert!(matches!(imap::connect(&untrusted).await, Err(ImapError::Tls { .. })), "a certificate nobody vouches for is refused");

    let starttls = MailboxConfig { tls: TlsMode::Starttls, ca_file: Some(dv.cert()), ..base.clone() };
    let mut s = imap::connect(&starttls).await.unwrap_or_else(|e| panic!("starttls: {e:?}"));
    s.select("INBOX").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{}\n", dovecot::OAUTH_TOKEN)).unwrap();
    let oauth = MailboxConfig { username: dovecot::OAUTH_USER.into(), password: None, oauth2_token_file: Some(token.clone()), ..tls.clone() };
    let mut s = imap::connect(&oauth).await.unwrap_or_else(|e| panic!("xoauth2 from file: {e:?}\n{}", dv.log()));
    s.select("INBOX").await.unwrap();
    let cmd = MailboxConfig { oauth2_token_file: None, oauth2_token_command: Some(format!("printf %s {}", dovecot::OAUTH_TOKEN)), ..oauth.clone() };
    imap::connect(&cmd).await.unwrap_or_else(|e| panic!("xoauth2 from command: {e:?}"));

    std::fs::write(&token, "ya29.wrong").unwrap();
    let t0 = Instant::now();
    assert!(matches!(imap::connect(&oauth).await, Err(ImapError::Auth { .. })));
    assert!(t0.elapsed() < Duration::from_secs(9), "a refused token fails promptly");
}

/// The real binary, `serve` with a configuration file; its log goes to `log`.
fn spawn_serve(cfg: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_dispute-desk"))
        .arg("--config")
        .arg(cfg)
        .arg("serve")
        .env("DISPUTE_DESK_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_killed_mid_burst_and_restarted_ingests_every_message_once() {
    let desk = Desk::new("INBOX").await;
    let conf = desk.cfg.data_dir.join("dispute-desk.toml");
    std::fs::write(&conf, toml::to_string(&desk.cfg).unwrap()).unwrap();
    let log = desk.cfg.data_dir.join("serve.log");
    let mut c = desk.client().await;
    for i in 0..120 {
        append(&mut c, "INBOX", &dispute(&format!("kill-{i}"))).await;
    }
    let mut child = spawn_serve(&conf, &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while desk.imap_rows().await.len() < 15 {
        assert!(Instant::now() < deadline, "serve ingested nothing: {}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-burst
    child.wait().unwrap();
    let at_kill = desk.imap_rows().await.len();
    eprintln!("killed with {at_kill} of 120 stored");
    assert!(at_kill < 120, "the kill came too late to test anything");

    let mut child = spawn_serve(&conf, &log);
    for i in 120..150 {
        append(&mut c, "INBOX", &dispute(&format!("kill-{i}"))).await;
    }
    desk.wait_count(150, 60).await;
    desk.wait_state("idle", 10).await;
    // SIGTERM: a graceful stop.
    std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}\n{}", std::fs::read_to_string(&log).unwrap_or_default());

    let uids: Vec<i64> = desk.imap_rows().await.iter().map(|r| r.1).collect();
    assert_eq!(uids, (1..=150).collect::<Vec<_>>(), "every message once, none lost");
    assert!(desk.store.messages_where(None, Some("accepted"), None).await.unwrap().is_empty(), "what the kill left unprocessed was processed at restart");
    assert_eq!(desk.state().await.as_deref(), Some("stopped"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispute-desk")).arg("--config").arg(&conf).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("compta") && text.contains("stopped") && text.contains("/150"), "status prints the mailbox: {text}");
    assert!(!text.contains(dovecot::PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_is_down_is_retried_and_the_reply_goes_out_once_when_it_is_back() {
    let mut desk = Desk::new("INBOX").await;
    let port = smtp_server::closed_port();
    desk.cfg.smtp = dispute_desk::mail::smtp::SmtpConfig { port, timeout_secs: 3, ..Default::default() };
    let (store, policy) = app::open(&desk.cfg).await.unwrap();
    let mut p = app::pipeline(&desk.cfg, store, policy).await.unwrap();
    app::ingest_path(&mut p, &root().join("tests/fixtures/mini"), false).await.unwrap();
    let serving = desk.serve();
    desk.wait_state("idle", 15).await;
    let id = approve_reply(&desk, "p.garnier@transports-garnier.fr").await;
    let store = desk.store.clone();
    wait_for("a failed attempt queued for a retry", 20, || {
        let store = store.clone();
        async move { store.outbox().await.unwrap().iter().any(|r| r.id == id && r.status == "queued" && r.attempts == 1 && r.last_error.is_some()) }
    })
    .await;

    let smtp = smtp_server::spawn_smtp_on(port, mailin::response::OK);
    // The retry is due in 30 s; bring it forward rather than wait.
    sqlx::query("UPDATE outbox SET next_attempt_at = 0").execute(&desk.store.pool).await.unwrap();
    wait_for("the retried reply sent", 20, || {
        let store = store.clone();
        async move { store.outbox().await.unwrap().iter().any(|r| r.id == id && r.status == "sent") }
    })
    .await;
    serving.stop().await;
    assert_eq!(smtp.received().len(), 1, "sent once");
    let mut c = desk.client().await;
    assert_eq!(flags(&mut c, "Sent").await.len(), 1, "one copy in Sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_is_reissued_on_schedule_and_mail_still_arrives() {
    let mut desk = Desk::new("INBOX").await;
    desk.cfg.mailbox[0].idle_reissue_secs = 1;
    let serving = desk.serve();
    desk.wait_state("idle", 15).await;
    let first = desk.store.mailbox_health().await.unwrap()[0].last_sync_at.unwrap();
    let store = desk.store.clone();
    wait_for("two IDLE re-issues (each followed by a sync)", 10, || {
        let store = store.clone();
        async move { store.mailbox_health().await.unwrap()[0].last_sync_at.unwrap() >= first + 2 }
    })
    .await;
    let mut c = desk.client().await;
    append(&mut c, "INBOX", &dispute("reissue-1")).await;
    desk.wait_count(1, 10).await;
    serving.stop().await;
}

#[tokio::test]
async fn mailbox_health_rows_work_on_postgres() {
    let admin = std::env::var("DISPUTE_DESK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = Store::create_postgres_database(&admin, "dd_test").await.unwrap_or_else(|e| panic!("PostgreSQL must run for the tests ({admin}): {e}"));
    let store = Store::open(&url).await.unwrap();
    store.set_mailbox_state("m", "connecting", false, None).await.unwrap();
    store.set_mailbox_error("m", "cannot connect to x:993", 3, None).await.unwrap();
    let h = &store.mailbox_health().await.unwrap()[0];
    assert_eq!((h.state.as_str(), h.attempt, h.last_sync_at), ("reconnecting", 3, None));
    store.set_mailbox_state("m", "idle", true, None).await.unwrap();
    let h = &store.mailbox_health().await.unwrap()[0];
    assert_eq!((h.state.as_str(), h.attempt), ("idle", 0));
    assert!(h.last_sync_at.is_some() && h.last_error.is_some(), "the last error stays visible after recovery: {h:?}");
    // A watcher that lost the lease to another instance cannot overwrite its state.
    assert!(store.acquire_lease("mailbox:m", "b", 60_000).await.unwrap());
    store.set_mailbox_state("m", "stopped", false, Some("a")).await.unwrap();
    store.set_mailbox_error("m", "connection reset", 4, Some("a")).await.unwrap();
    assert_eq!(store.mailbox_health().await.unwrap()[0].state, "idle");
    store.set_mailbox_state("m", "syncing", false, Some("b")).await.unwrap();
    assert_eq!(store.mailbox_health().await.unwrap()[0].state, "syncing");
}

/// One HTTP/1.1 GET on loopback: (status line, body).
async fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_also_serves_the_web_desk_and_the_api_and_stops_them_on_the_signal() {
    let mut desk = Desk::new("INBOX").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    desk.cfg.web.listen = format!("127.0.0.1:{port}");
    let serving = desk.serve();
    let mut health = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while health.is_none() && Instant::now() < deadline {
        health = http_get(port, "/healthz").await;
        if health.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, _) = health.expect("serve answers /healthz on [web] listen");
    assert!(status.contains("200"), "{status}");
    let (status, body) = http_get(port, "/login").await.unwrap();
    assert!(status.contains("200") && body.contains("<form"), "{status}");
    let (status, body) = http_get(port, "/api/v1/openapi.json").await.unwrap();
    assert!(status.contains("200") && body.contains("/api/v1/cases"), "{status}");
    let (status, _) = http_get(port, "/api/v1/cases").await.unwrap();
    assert!(status.contains("401"), "the API wants a key: {status}");
    serving.stop().await;
    assert!(http_get(port, "/healthz").await.is_none(), "the listener is closed after shutdown");
}

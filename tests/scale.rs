//! Several instances, one database (issue 7): three `serve` processes of the
//! real binary on one fresh PostgreSQL database and one Dovecot mailbox. A
//! burst of 1,000 messages arrives; the instance watching the mailbox is
//! killed with SIGKILL mid-burst and another takes the mailbox over within
//! the takeover time; later the next holder is stopped with SIGTERM while
//! approved replies wait to be sent. Drafts are approved through the store
//! (`flow::approve`, as the web desk and the API do) while the processes
//! run. At the end: every message stored and processed exactly once, no
//! case opened twice, every approved draft received exactly once by the SMTP
//! test server, the day's reminder run done by exactly one instance, and
//! `audit verify` passes. Skipped (with a printed line) without
//! DISPUTE_DESK_TEST_PG. Every wait polls with a deadline.

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/smtp_server.rs"]
mod smtp_server;

use dispute_desk::app;
use dispute_desk::config::Config;
use dispute_desk::domain::EmailAddress;
use dispute_desk::flow::approve;
use dispute_desk::mail::imap::{self, MailboxConfig};
use dispute_desk::mail::smtp::TlsMode;
use dispute_desk::store::Store;
use dovecot::Dovecot;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: usize = 1000;
/// Short, so that the test is quick: the lease lasts 2.25 s, renewed every
/// 0.75 s (shorter, and a loaded 2-core machine delays renewals enough to
/// hand the mailbox over between live instances: correct, but noisy).
const TAKEOVER_SECS: u64 = 3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A desk on the database `url`, with the repository's policies and prompts.
fn config(dir: &Path, url: String) -> Config {
    Config { database_url: Some(url), ..Config::in_checkout(dir, &root()) }
}

/// Three kinds of dispute, over the mini company's two clients and three
/// open invoices, so that the burst continues three cases.
fn mail(i: usize) -> Vec<u8> {
    let tag = format!("burst-{i}");
    let (from, to, subject, body) = match i % 3 {
        0 => ("Paul Garnier <p.garnier@transports-garnier.fr>", "julie.morel@sud-levage.fr", "Facture SL 26 101 - tarif horaire", "Nous contestons le taux horaire appliqué sur votre facture SL-26-0101 : le devis\r\nsigné prévoyait 68 € HT de l'heure et non 82 €. Merci de nous faire parvenir un\r\navoir pour la différence."),
        1 => ("Paul Garnier <p.garnier@transports-garnier.fr>", "julie.morel@sud-levage.fr", "Facture SL-26-0102 - quantités", "Nous contestons la facture SL-26-0102 : 12 heures facturées, 8 heures réalisées\r\nselon nos bons d'intervention. Merci de nous faire parvenir un avoir."),
        _ => ("Tom Hale <t.hale@harbourcranes.co.uk>", "julie.morel@sud-levage.fr", "Invoice SL-26-0140 - hourly rate", "We dispute the hourly rate on invoice SL-26-0140: the signed quote said\r\nEUR 68 per hour, not EUR 82. Please send us a credit note for the difference."),
    };
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject} ({tag})\r\nDate: Tue, 03 Mar 2026 10:12:00 +0100\r\nMessage-ID: <{tag}@scale.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBonjour,\r\n\r\n{body}\r\n\r\nCordialement\r\n"
    )
    .into_bytes()
}

/// One serve process and the file its log goes to.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    fn spawn(conf: &Path, log: PathBuf) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_dispute-desk"))
            .arg("--config")
            .arg(conf)
            .arg("serve")
            .env("DISPUTE_DESK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap().success());
    }

    /// Waits for the exit; SIGTERM must be a clean stop.
    async fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "serve did not stop within {secs} s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Desk {
    store: Store,
    cfg: Config,
}

impl Desk {
    async fn count(&self, sql: &str) -> i64 {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&self.store.pool).await.unwrap().get::<i64, _>(0)
    }

    async fn stored(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM messages WHERE source = 'imap:compta'").await
    }

    /// The lease holder of the mailbox, if the lease is live: (instance, pid).
    async fn holder(&self) -> Option<(String, i64)> {
        let now = self.store.db_now_ms().await.unwrap();
        sqlx::query("SELECT l.holder, i.pid FROM leases l JOIN instances i ON i.id = l.holder WHERE l.name = 'mailbox:compta' AND l.expires_at > $1")
            .bind(now)
            .fetch_optional(&self.store.pool)
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
    }

    async fn wait_until<F, Fut>(&self, what: &str, secs: u64, logs: &[&Serve], mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond().await {
            if Instant::now() > deadline {
                let logs: Vec<String> = logs.iter().map(|s| s.log().lines().rev().take(15).collect::<Vec<_>>().join("\n")).collect();
                panic!("{what}: not within {secs} s (stored {}); last log lines:\n{}", self.stored().await, logs.join("\n----\n"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Approves up to `n` pending replies (one per case at most, oldest
    /// first) as the accountant; returns the outbox ids.
    async fn approve(&self, n: usize) -> Vec<i64> {
        let policy = dispute_desk::policy::Policy::load(self.cfg.policies_dir.as_deref()).unwrap();
        let from = EmailAddress::parse(&self.cfg.company.from_address).unwrap();
        let acc = self.store.user("A1").await.unwrap();
        let mut out = Vec::new();
        for d in self.store.drafts(Some("pending"), None).await.unwrap().into_iter().filter(|d| d.kind == "reply" && d.to_addr.is_some()) {
            if out.len() == n {
                break;
            }
            match approve::approve(&self.store, &policy, &from, "Sud Levage", d.id, &acc).await {
                Ok(a) => out.extend(a.outbox_id),
                Err(e) => panic!("approving draft {}: {e}", d.id),
            }
        }
        assert_eq!(out.len(), n, "enough pending replies to approve");
        out
    }

    /// Nothing queued or being sent.
    async fn outbox_idle(&self) -> bool {
        self.count("SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'sending')").await == 0
    }
}

/// A plain HTTP/1.0 GET on loopback: the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_ingest_each_message_once_and_send_each_approved_draft_once() {
    let Ok(admin) = std::env::var("DISPUTE_DESK_TEST_PG") else {
        println!("skipped: DISPUTE_DESK_TEST_PG is not set; the several-instances test needs a PostgreSQL server (postgres://USER@HOST:PORT/DB)");
        return;
    };
    let t_start = Instant::now();
    let url = Store::create_postgres_database(&admin, "scale").await.unwrap();
    let dv = Dovecot::start();
    let smtp = smtp_server::spawn_smtp(mailin::response::OK);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), url);
    cfg.web.listen = "127.0.0.1:0".into();
    cfg.company.name = "Sud Levage SARL".into();
    cfg.company.from_address = "julie.morel@sud-levage.fr".into();
    cfg.outbox_poll_secs = 1;
    cfg.smtp = smtp.config.clone();
    cfg.cluster.takeover_secs = TAKEOVER_SECS;
    // Past already: every instance tries today's run as soon as it starts.
    cfg.cluster.remind_at = "00:00".into();
    cfg.mailbox = vec![MailboxConfig {
        name: "compta".into(),
        host: "127.0.0.1".into(),
        port: Some(dv.imap_port),
        tls: TlsMode::None,
        username: dovecot::USER.into(),
        password: Some(dovecot::PASSWORD.into()),
        folder: "INBOX".into(),
        poll_secs: 1,
        reconnect_max_secs: 2,
        timeout_secs: 10,
        ..MailboxConfig::default()
    }];
    let (store, _) = app::open(&cfg).await.unwrap();
    app::import_corpus(&store, &root().join("tests/fixtures/mini")).await.unwrap();
    let desk = Desk { store, cfg: cfg.clone() };
    let conf = dir.path().join("dispute-desk.toml");
    std::fs::write(&conf, toml::to_string(&cfg).unwrap()).unwrap();

    let mut serves: Vec<Serve> = (0..3).map(|i| Serve::spawn(&conf, dir.path().join(format!("serve-{i}.log")))).collect();
    let pids: Vec<i64> = serves.iter().map(|s| s.child.id() as i64).collect();
    {
        let all: Vec<&Serve> = serves.iter().collect();
        desk.wait_until("three instances registered and one holding the mailbox", 30, &all, || async {
            desk.count("SELECT COUNT(*) FROM instances WHERE stopped_at IS NULL").await == 3 && desk.holder().await.is_some()
        })
        .await;
    }
    let (first, first_pid) = desk.holder().await.unwrap();
    eprintln!("instances up after {:.1} s; instance {first} (pid {first_pid}) watches the mailbox", t_start.elapsed().as_secs_f64());

    // A first part of the mail, processed, and replies approved and sent
    // while every instance runs.
    let mut client = imap::connect(&cfg.mailbox[0]).await.unwrap_or_else(|e| panic!("test client cannot log in: {e}\n{}", dv.log()));
    for i in 0..100 {
        client.append("INBOX", None, None, &mail(i)).await.unwrap();
    }
    {
        let all: Vec<&Serve> = serves.iter().collect();
        desk.wait_until("the first 100 messages processed", 60, &all, || async {
            desk.stored().await == 100 && desk.count("SELECT COUNT(*) FROM messages WHERE state = 'accepted'").await == 0
        })
        .await;
    }
    let mut approved = desk.approve(10).await;
    {
        let all: Vec<&Serve> = serves.iter().collect();
        desk.wait_until("the first approved replies sent", 30, &all, || desk.outbox_idle()).await;
    }

    // The burst: the rest of the mail, appended as fast as Dovecot takes it.
    let burst_cfg = cfg.mailbox[0].clone();
    let burst = tokio::spawn(async move {
        let t0 = Instant::now();
        for i in 100..MESSAGES {
            client.append("INBOX", None, None, &mail(i)).await.unwrap();
        }
        let _ = client.logout().await;
        drop(burst_cfg);
        t0.elapsed()
    });

    // SIGKILL the holder mid-burst (with nothing being sent: a send cut by
    // SIGKILL is the documented `uncertain` case, not what this test is for).
    {
        let all: Vec<&Serve> = serves.iter().collect();
        desk.wait_until("300 messages stored", 60, &all, || async { desk.stored().await >= 300 }).await;
    }
    let killed = pids.iter().position(|p| *p == first_pid).expect("the holder is one of our processes");
    serves[killed].signal("KILL");
    let t_kill = Instant::now();
    let at_kill = desk.stored().await;
    let _ = serves[killed].wait_exit(10).await;
    {
        let all: Vec<&Serve> = serves.iter().collect();
        desk.wait_until("another instance takes the mailbox over", TAKEOVER_SECS + 10, &all, || async { desk.holder().await.is_some_and(|(h, _)| h != first) }).await;
    }
    let takeover = t_kill.elapsed();
    let (second, second_pid) = desk.holder().await.unwrap();
    eprintln!("SIGKILL of {first} with {at_kill} of {MESSAGES} stored; {second} took the mailbox over after {:.2} s", takeover.as_secs_f64());
    assert!(at_kill < MESSAGES as i64, "the kill came too late to test anything");
    assert!(takeover < Duration::from_secs(TAKEOVER_SECS) + Duration::from_secs(2), "takeover within the configured {TAKEOVER_SECS} s (plus scheduling slack): {takeover:?}");

    // Replies approved while the burst goes on, then SIGTERM of the new
    // holder while some of them may still wait to be sent.
    approved.extend(desk.approve(10).await);
    {
        let all: Vec<&Serve> = serves.iter().collect();
        desk.wait_until("600 messages stored", 90, &all, || async { desk.stored().await >= 600 }).await;
    }
    approved.extend(desk.approve(10).await);
    // The holder now (normally the one that took over after the kill).
    let (second, second_pid) = desk.holder().await.unwrap_or((second, second_pid));
    let stopped = pids.iter().position(|p| *p == second_pid).expect("the holder is one of our processes");
    assert_ne!(stopped, killed);
    serves[stopped].signal("TERM");
    let t_term = Instant::now();
    let st = serves[stopped].wait_exit(30).await;
    assert!(st.success(), "SIGTERM is a clean stop: {st}\n{}", serves[stopped].log());
    // It released the lease, unless a delayed renewal had already handed it on.
    let log = serves[stopped].log();
    assert!(log.contains("lease released") || log.contains("lease lost"), "a graceful stop releases the mailbox:\n{log}");
    let last = 3 - killed - stopped;
    {
        let all: Vec<&Serve> = serves.iter().collect();
        desk.wait_until("the last instance takes the mailbox over", TAKEOVER_SECS + 10, &all, || async { desk.holder().await.is_some_and(|(_, p)| p == pids[last]) }).await;
    }
    eprintln!("SIGTERM of {second}: stopped and released after {:.2} s, the last instance took over", t_term.elapsed().as_secs_f64());

    let appended = burst.await.unwrap();
    eprintln!("burst of {} messages appended in {:.1} s", MESSAGES - 100, appended.as_secs_f64());
    {
        let all: Vec<&Serve> = vec![&serves[last]];
        desk.wait_until("every message stored and processed", 120, &all, || async {
            desk.stored().await == MESSAGES as i64 && desk.count("SELECT COUNT(*) FROM messages WHERE state = 'accepted'").await == 0
        })
        .await;
    }
    let t_all = t_start.elapsed();
    approved.extend(desk.approve(10).await);
    {
        let all: Vec<&Serve> = vec![&serves[last]];
        desk.wait_until("every approved reply sent", 30, &all, || desk.outbox_idle()).await;
    }

    // Every message once, processed once.
    let uids: Vec<i64> = sqlx::query("SELECT uid FROM messages WHERE source = 'imap:compta' ORDER BY uid").fetch_all(&desk.store.pool).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(uids, (1..=MESSAGES as i64).collect::<Vec<_>>(), "every UID stored once, none lost");
    assert_eq!(desk.count("SELECT COUNT(DISTINCT message_id) FROM messages WHERE source = 'imap:compta'").await, MESSAGES as i64);
    assert_eq!(desk.count("SELECT COUNT(*) FROM messages WHERE source = 'imap:compta' AND state = 'processed'").await, MESSAGES as i64, "every message processed (none failed)");
    let twice = desk.count("SELECT COUNT(*) FROM (SELECT entity_id FROM audit_events WHERE entity = 'message' AND action = 'processed' GROUP BY entity_id HAVING COUNT(*) > 1) t").await;
    assert_eq!(twice, 0, "no message processed twice");
    let processed = desk.count("SELECT COUNT(*) FROM audit_events a JOIN messages m ON a.entity = 'message' AND a.action = 'processed' AND a.entity_id = CAST(m.id AS TEXT) WHERE m.source = 'imap:compta'").await;
    assert_eq!(processed, MESSAGES as i64);

    // No case opened twice: an invoice belongs to at most one case of a kind.
    let dup: Vec<(String, String, i64)> = sqlx::query("SELECT ci.invoice_number, c.kind, COUNT(*) FROM case_invoices ci JOIN cases c ON c.id = ci.case_id GROUP BY ci.invoice_number, c.kind HAVING COUNT(*) > 1")
        .fetch_all(&desk.store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(dup.is_empty(), "cases opened twice for one invoice: {dup:?}");
    let cases = desk.count("SELECT COUNT(*) FROM cases").await;
    let burst_cases = desk.count("SELECT COUNT(DISTINCT case_id) FROM messages WHERE source = 'imap:compta'").await;
    assert_eq!(burst_cases, 3, "the burst continues one case per invoice ({cases} cases in all)");

    // Every approved draft sent exactly once.
    let rows: Vec<(i64, String, String)> = sqlx::query("SELECT id, message_id, status FROM outbox ORDER BY id").fetch_all(&desk.store.pool).await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let approved: BTreeSet<i64> = approved.into_iter().collect();
    assert_eq!(approved.len(), 40);
    let received = smtp.received();
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for r in &received {
        let text = String::from_utf8_lossy(&r.data);
        let mid = text.lines().find_map(|l| l.strip_prefix("Message-ID: ").or_else(|| l.strip_prefix("Message-Id: "))).map(|m| m.trim().trim_matches(['<', '>']).to_string()).unwrap_or_default();
        *times.entry(mid).or_default() += 1;
    }
    for (id, mid, status) in &rows {
        assert_eq!(status, "sent", "outbox row {id} is sent");
        assert_eq!(times.get(mid.trim_matches(['<', '>'])).copied(), Some(1), "outbox row {id} ({mid}) reached the SMTP server exactly once");
    }
    assert!(rows.iter().all(|r| approved.contains(&r.0)) && rows.len() == approved.len(), "the outbox holds exactly the approved drafts");
    assert_eq!(received.len(), approved.len(), "the SMTP server received each approved draft once, nothing else");

    // Today's reminder run: claimed and done by exactly one instance.
    let today = chrono::Local::now().date_naive().to_string();
    let runs: Vec<(String, Option<i64>)> = sqlx::query("SELECT instance, finished_at FROM job_runs WHERE job = 'remind' AND day = $1").bind(&today).fetch_all(&desk.store.pool).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].1.is_some(), "the run finished");
    let claims: usize = serves.iter().map(|s| s.log().matches("daily reminder run claimed").count()).sum();
    assert_eq!(claims, 1, "one instance ran the day's reminders");

    // status shows the holder and the instances.
    let out = Command::new(env!("CARGO_BIN_EXE_dispute-desk")).arg("--config").arg(&conf).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last_id = desk.holder().await.unwrap().0;
    assert!(out.status.success() && text.contains(&format!("watched by instance {last_id}")), "status names the holder: {text}");
    assert!(text.contains(&format!("instance {first}")) && text.contains("dead"), "status shows the killed instance as dead: {text}");

    // /metrics of the last instance: one alive, the mailbox held, taken over
    // at least twice (SIGKILL, SIGTERM).
    let log = serves[last].log();
    let addr = log.split("http://").nth(1).and_then(|t| t.split_whitespace().next()).map(|a| a.trim_end_matches(['"', '/']).to_string()).expect("serve logs its address");
    let metrics = http_get(&addr, "/metrics");
    assert!(metrics.contains("dispute_desk_instances_alive 1\n"), "{metrics}");
    assert!(metrics.contains("dispute_desk_lease_held{lease=\"mailbox:compta\"} 1\n"), "{metrics}");
    let takeovers: i64 = metrics.lines().find_map(|l| l.strip_prefix("dispute_desk_lease_takeovers_total{lease=\"mailbox:compta\"} ")).and_then(|v| v.trim().parse().ok()).expect("takeovers metric");
    assert!(takeovers >= 2, "{metrics}");

    serves[last].signal("TERM");
    assert!(serves[last].wait_exit(30).await.success());

    let out = Command::new(env!("CARGO_BIN_EXE_dispute-desk")).arg("--config").arg(&conf).args(["audit", "verify"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("intact"), "audit verify: {text}{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "{MESSAGES} messages through three instances (one killed, one stopped) in {:.1} s; {} replies sent once each; {cases} cases; whole test {:.1} s",
        t_all.as_secs_f64(),
        received.len(),
        t_start.elapsed().as_secs_f64()
    );
}

/// The race the flow's early lock closes: two instances each process, at the
/// same moment, a different first message about the same invoice. Both
/// would read "no open case" and open one each; with the lock the second
/// waits for the first's commit and continues its case. Twenty rounds, each
/// after the previous round's case was resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_processing_mail_about_one_invoice_at_once_open_one_case() {
    let Ok(admin) = std::env::var("DISPUTE_DESK_TEST_PG") else {
        println!("skipped: DISPUTE_DESK_TEST_PG is not set; the concurrent-flow test needs a PostgreSQL server");
        return;
    };
    let url = Store::create_postgres_database(&admin, "scale_race").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), url);
    let (store, policy) = app::open(&cfg).await.unwrap();
    app::import_corpus(&store, &root().join("tests/fixtures/mini")).await.unwrap();
    // Two instances: two pools, two pipelines.
    let mut a = app::pipeline(&cfg, store.clone(), policy.clone()).await.unwrap();
    let (store_b, policy_b) = app::open(&cfg).await.unwrap();
    let mut b = app::pipeline(&cfg, store_b, policy_b).await.unwrap();
    for round in 0..20 {
        for k in 0..2 {
            let raw = mail(3 * (2 * round + k)); // both about SL-26-0101
            dispute_desk::flow::ingest::ingest(&store, &raw, "in", dispute_desk::flow::ingest::Origin::File(&format!("r{round}-{k}.eml"))).await.unwrap();
        }
        let mut acc = store.accepted(10).await.unwrap();
        assert_eq!(acc.len(), 2);
        let (m2, m1) = (acc.pop().unwrap(), acc.pop().unwrap());
        let (ra, rb) = tokio::join!(a.process(m1), b.process(m2));
        let (oa, ob) = (ra.unwrap().expect("a processed its message"), rb.unwrap().expect("b processed its message"));
        assert_eq!(oa.case_id, ob.case_id, "round {round}: both messages in one case");
        let open = sqlx::query("SELECT COUNT(*) FROM cases WHERE status <> 'resolved'").fetch_one(&store.pool).await.unwrap().get::<i64, _>(0);
        assert_eq!(open, 1, "round {round}: one open case");
        sqlx::query("UPDATE cases SET status = 'resolved'").execute(&store.pool).await.unwrap();
    }
    assert_eq!(sqlx::query("SELECT COUNT(*) FROM cases").fetch_one(&store.pool).await.unwrap().get::<i64, _>(0), 20);
}

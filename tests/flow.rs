//! The whole flow as a user runs it, against real databases (SQLite and the
//! test machine's PostgreSQL) and a real SMTP server in the process: import,
//! ingest, cases, the approval gate, sending, the audit chain, eval, and the
//! shared MIME and corpus sets when `../shared` is present.

#[path = "support/smtp_server.rs"]
mod smtp_server;
#[path = "flow/workflow.rs"]
mod workflow;

use dispute_desk::config::Config;
use dispute_desk::domain::EmailAddress;
use dispute_desk::flow::approve::{self, ApproveError};
use dispute_desk::mail::smtp::SmtpSender;
use dispute_desk::store::audit::{self, Verdict};
use dispute_desk::store::Store;
use dispute_desk::{app, eval};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mini() -> PathBuf {
    root().join("tests/fixtures/mini")
}

fn shared() -> Option<PathBuf> {
    let p = root().join("../shared");
    p.is_dir().then_some(p)
}

/// The test `body` on SQLite, and the same on PostgreSQL.
macro_rules! on_both {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $body(&Desk::sqlite().await).await;
        }

        #[tokio::test]
        async fn $postgres() {
            $body(&Desk::postgres().await).await;
        }
    };
}

/// A test desk: its own data folder and database.
struct Desk {
    cfg: Config,
    _dir: tempfile::TempDir,
}

impl Desk {
    async fn sqlite() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::in_checkout(dir.path(), &root());
        cfg.company.name = "Sud Levage SARL".into();
        cfg.company.from_address = "julie.morel@sud-levage.fr".into();
        Desk { cfg, _dir: dir }
    }

    /// A fresh database on the test PostgreSQL server
    /// (`DISPUTE_DESK_TEST_PG`, default postgres://postgres@127.0.0.1:5432/postgres).
    async fn postgres() -> Desk {
        let admin = std::env::var("DISPUTE_DESK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let url = Store::create_postgres_database(&admin, "dd_test").await.unwrap_or_else(|e| panic!("PostgreSQL must run for the tests ({admin}): {e}"));
        let mut d = Desk::sqlite().await;
        d.cfg.database_url = Some(url);
        d
    }

    async fn open(&self) -> Store {
        app::open(&self.cfg).await.unwrap().0
    }

    /// Imports the mini company and ingests its mail.
    async fn load_mini(&self) -> (Store, app::IngestReport) {
        let (store, policy) = app::open(&self.cfg).await.unwrap();
        app::import_corpus(&store, &mini()).await.unwrap();
        let mut p = app::pipeline(&self.cfg, store.clone(), policy).await.unwrap();
        let r = app::ingest_path(&mut p, &mini(), false).await.unwrap();
        (store, r)
    }
}

#[tokio::test]
async fn import_refuses_a_bad_row_and_keeps_nothing_from_that_file() {
    let desk = Desk::sqlite().await;
    let store = desk.open().await;
    let dir = tempfile::tempdir().unwrap();
    app::import_file(&store, "users", &mini().join("users.csv")).await.unwrap();
    app::import_file(&store, "clients", &mini().join("clients.csv")).await.unwrap();
    let bad = dir.path().join("invoices.csv");
    std::fs::write(
        &bad,
        "number,client_id,issue_date,due_date,amount,currency,status,po_number,project\n\
         X-1,K1,2026-01-01,2026-02-01,10.00,EUR,open,,\n\
         X-2,K1,2026-01-01,2026-02-01,10.00,EUR,lost,,\n",
    )
    .unwrap();
    let e = app::import_file(&store, "invoices", &bad).await.unwrap_err().to_string();
    assert!(e.contains("invoices.csv:3:7 (status): unknown status \"lost\""), "{e}");
    let unknown_client = dir.path().join("inv2.csv");
    std::fs::write(&unknown_client, "number,client_id,issue_date,due_date,amount,currency,status,po_number,project\nX-3,NOPE,2026-01-01,2026-02-01,1,EUR,open,,\n").unwrap();
    let e = app::import_file(&store, "invoices", &unknown_client).await.unwrap_err().to_string();
    assert!(e.contains("inv2.csv:2:2 (client_id): unknown client \"NOPE\""), "{e}");
    assert_eq!(store.directory().await.unwrap().invoices.len(), 0, "nothing from a refused file is imported");

    // Importing the same good file twice changes nothing.
    for _ in 0..2 {
        assert_eq!(app::import_file(&store, "invoices", &mini().join("invoices.csv")).await.unwrap(), 4);
    }
    assert_eq!(store.directory().await.unwrap().invoices.len(), 4);
    assert_eq!(store.users().await.unwrap().len(), 4);
}

async fn check_mini_flow(desk: &Desk) {
    let (store, r) = desk.load_mini().await;
    assert_eq!((r.files, r.stored, r.duplicates), (5, 5, 0));
    let find = |file: &str| {
        let store = store.clone();
        let file = file.to_string();
        async move {
            for m in store.messages_where(None, None, None).await.unwrap() {
                if store.message_source(m.id).await.unwrap().ends_with(&file) {
                    return m;
                }
            }
            panic!("{file} not stored")
        }
    };
    // 0001: price dispute, number written "SL-26-101" → case for the account owner.
    let m1 = find("0001.eml").await;
    assert_eq!(m1.invoices, vec!["SL-26-0101"]);
    assert_eq!(m1.category.as_deref(), Some("price"));
    assert_eq!(m1.owner_id.as_deref(), Some("S1"));
    let case1 = store.case(m1.case_id.expect("a dispute opens a case")).await.unwrap();
    assert_eq!((case1.status.as_str(), case1.kind.as_str()), ("open", "dispute"));
    assert!(case1.priority > 0 && case1.priority_reason.contains("strategic client"), "{}", case1.priority_reason);
    let drafts = store.drafts(Some("pending"), Some(case1.id)).await.unwrap();
    assert_eq!(drafts.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>(), vec!["reply", "brief"]);
    assert!(drafts[0].body.contains("SL-26-0101") && drafts[0].body.contains("4\u{202f}320,00"), "{}", drafts[0].body);
    assert_eq!(drafts[0].to_addr.as_deref(), Some("p.garnier@transports-garnier.fr"));
    // 0002: promise in reply to our reminder → recorded, check task, no case.
    let m2 = find("0002.eml").await;
    assert_eq!(m2.category.as_deref(), Some("promise_to_pay"));
    assert_eq!(m2.invoices, vec!["SL-26-0102"]);
    assert_eq!(m2.case_id, None);
    let tasks = store.tasks(None, Some("A1"), Some("open")).await.unwrap();
    assert!(tasks.iter().any(|t| t.kind == "check_promise" && t.due_date.as_deref() == Some("2026-03-15")), "{tasks:?}");
    // 0003: English non-conformity → technical lead, English drafts.
    let m3 = find("0003.eml").await;
    assert_eq!((m3.category.as_deref(), m3.owner_id.as_deref()), (Some("non_conformity"), Some("T1")));
    let d3 = store.drafts(Some("pending"), m3.case_id).await.unwrap();
    assert!(d3[0].body.starts_with("Dear Sarah Connolly"), "{}", d3[0].body);
    // 0004: a newsletter opens nothing.
    let m4 = find("0004.eml").await;
    assert_eq!((m4.disposition.as_deref(), m4.case_id, m4.owner_id.clone()), (Some("ignored"), None, None));
    assert_eq!(store.cases(None, None).await.unwrap().len(), 2);

    // The same folder again: stored once, processed once.
    let (store2, policy) = app::open(&desk.cfg).await.unwrap();
    let mut p = app::pipeline(&desk.cfg, store2, policy).await.unwrap();
    let again = app::ingest_path(&mut p, &mini(), false).await.unwrap();
    assert_eq!((again.stored, again.duplicates, again.outcomes.len()), (0, 5, 0));
    assert_eq!(store.cases(None, None).await.unwrap().len(), 2);
    assert_eq!(audit::verify(&store).await.unwrap(), Verdict::Intact { rows: audit_rows(&store).await });
}

/// One bad message among good ones: the batch it is in fails, its messages
/// are processed again one at a time, the good ones go through once and the
/// bad one is recorded as failed with nothing of it stored. A trigger makes
/// the database refuse that message's row, as a full disk or a constraint
/// would.
async fn a_bad_message_does_not_stop_its_batch(desk: &Desk) {
    let (store, policy) = app::open(&desk.cfg).await.unwrap();
    app::import_corpus(&store, &mini()).await.unwrap();
    let refuse = match store.backend {
        dispute_desk::store::Backend::Sqlite => vec![
            "CREATE TRIGGER refuse_boom BEFORE UPDATE OF state ON messages WHEN NEW.subject LIKE '%BOOM%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END".to_string(),
        ],
        dispute_desk::store::Backend::Postgres => vec![
            "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$ BEGIN IF NEW.subject LIKE '%BOOM%' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql".to_string(),
            "CREATE TRIGGER refuse_boom BEFORE UPDATE ON messages FOR EACH ROW EXECUTE FUNCTION refuse_boom()".to_string(),
        ],
    };
    for q in refuse {
        sqlx::query(sqlx::AssertSqlSafe(q)).execute(&store.pool).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    for f in ["0001.eml", "0002.eml", "0003.eml", "0004.eml"] {
        std::fs::copy(mini().join("inbound").join(f), dir.path().join(f)).unwrap();
    }
    let boom = std::fs::read_to_string(mini().join("inbound/0001.eml")).unwrap().replace("Message-ID: <g1@transports-garnier.fr>", "Message-ID: <boom@transports-garnier.fr>").replace("Subject: Facture SL 26 101", "Subject: BOOM Facture SL 26 101");
    std::fs::write(dir.path().join("0000-boom.eml"), boom).unwrap();
    let mut p = app::pipeline(&desk.cfg, store.clone(), policy).await.unwrap();
    let r = app::ingest_path(&mut p, dir.path(), false).await.unwrap();
    assert_eq!((r.stored, r.outcomes.len()), (5, 4), "the four good messages are processed once");
    let failed = store.messages_where(None, Some("failed"), None).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].invoices.is_empty() && failed[0].case_id.is_none(), "nothing of the bad message is kept: {:?}", failed[0]);
    let (attempts, error): (i64, String) = sqlx::query_as("SELECT attempts, last_error FROM messages WHERE id = $1").bind(failed[0].id).fetch_one(&store.pool).await.unwrap();
    assert_eq!(attempts, p.max_attempts);
    assert!(error.contains("refused by the test"), "{error}");
    assert_eq!(store.messages_where(None, Some("processed"), None).await.unwrap().len(), 4);
    assert_eq!(store.cases(None, None).await.unwrap().len(), 2, "the same two cases as without the bad message");
    assert_eq!(audit::verify(&store).await.unwrap(), Verdict::Intact { rows: audit_rows(&store).await });
}

on_both!(a_bad_message_does_not_stop_its_batch_on_sqlite, a_bad_message_does_not_stop_its_batch_on_postgres, a_bad_message_does_not_stop_its_batch);

/// Several batches of generated mail (HTML, attachments, quoted history):
/// each message processed once, the cases of a client continued across
/// batches, and the audit chain intact although each batch writes its events
/// in multi-row inserts.
async fn batches_of_generated_mail(desk: &Desk) {
    let dir = tempfile::tempdir().unwrap();
    dispute_desk::gen::generate(dir.path(), 12, 150, 300).unwrap();
    let (store, policy) = app::open(&desk.cfg).await.unwrap();
    app::import_corpus(&store, dir.path()).await.unwrap();
    let mut p = app::pipeline(&desk.cfg, store.clone(), policy).await.unwrap();
    app::ingest_path(&mut p, &dir.path().join("outbound"), true).await.unwrap();
    let r = app::ingest_path(&mut p, &dir.path().join("inbound"), false).await.unwrap();
    assert_eq!((r.stored, r.outcomes.len(), r.processed), (300, 300, 300));
    assert!(store.messages_where(None, Some("accepted"), None).await.unwrap().is_empty());
    let ids: std::collections::HashSet<i64> = r.outcomes.iter().map(|o| o.message).collect();
    assert_eq!(ids.len(), 300, "each message once");
    // A client's later messages continue its open cases: fewer cases than disputes.
    let cases = store.cases(None, None).await.unwrap();
    let disputes = r.outcomes.iter().filter(|o| o.case_id.is_some()).count();
    assert!(!cases.is_empty() && cases.len() < disputes, "{} cases for {disputes} messages on cases", cases.len());
    let rows = audit_rows(&store).await;
    assert!(rows > 600, "{rows} audit rows: several multi-row inserts");
    assert_eq!(audit::verify(&store).await.unwrap(), Verdict::Intact { rows });
}

on_both!(batches_of_generated_mail_on_sqlite, batches_of_generated_mail_on_postgres, batches_of_generated_mail);

/// The rules, as a desk with a model runs them: not local, so the pipeline
/// takes its one-message-at-a-time path, with no look-ahead.
struct OneAtATime(dispute_desk::llm::rules::RulesClassifier);

impl dispute_desk::flow::classify::Classifier for OneAtATime {
    fn classify<'a>(&'a self, input: dispute_desk::flow::classify::ClassifyInput<'a>) -> std::pin::Pin<Box<dyn std::future::Future<Output = dispute_desk::flow::classify::Classification> + Send + 'a>> {
        Box::pin(async move { self.0.classify(&input) })
    }
}

/// The batches with their look-ahead (`flow::ahead`: the next batch parsed
/// and classified on another thread, against the ledger as the run began and
/// without thread history) reach exactly what one message at a time reaches.
/// The generated company spans several batches; one more message, a reply to
/// our first reminder from an address nobody knows and naming no invoice, is
/// linked to its client only through the thread: its guess must be redone.
async fn the_look_ahead_changes_no_outcome(desk: &Desk, other: &Desk) {
    let dir = tempfile::tempdir().unwrap();
    dispute_desk::gen::generate(dir.path(), 12, 150, 300).unwrap();
    let reply = "From: Marc Dupuis <marc.dupuis.compta@gmail.com>\r\nTo: compta@synthese-services.fr\r\nSubject: Re: votre relance\r\n\
                 Date: Tue, 02 Jun 2026 10:00:00 +0200\r\nMessage-ID: <late-reply@gmail.com>\r\nIn-Reply-To: <rem-0@synthese-services.fr>\r\n\
                 References: <rem-0@synthese-services.fr>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
                 Bonjour,\r\nle prix unitaire facture ne correspond pas au devis signe : merci de nous envoyer un avoir.\r\nMarc\r\n";
    std::fs::write(dir.path().join("inbound/zzzz-late-reply.eml"), reply).unwrap();
    let mut results = Vec::new();
    for (d, one_at_a_time) in [(desk, false), (other, true)] {
        let (store, policy) = app::open(&d.cfg).await.unwrap();
        app::import_corpus(&store, dir.path()).await.unwrap();
        let mut p = app::pipeline(&d.cfg, store.clone(), policy).await.unwrap();
        if one_at_a_time {
            let rules = std::fs::read_to_string(root().join("policies/classifier.toml")).unwrap();
            p.classifier = std::sync::Arc::new(OneAtATime(dispute_desk::llm::rules::RulesClassifier::from_toml(&rules).unwrap()));
        }
        let r = app::ingest_path(&mut p, dir.path(), false).await.unwrap();
        let files = std::fs::read_dir(dir.path().join("outbound")).unwrap().count() + std::fs::read_dir(dir.path().join("inbound")).unwrap().count();
        assert_eq!((r.stored, r.outcomes.len()), (files, files), "our reminders and the client messages, each once");
        let kept = p.guesses.kept.load(std::sync::atomic::Ordering::Relaxed);
        let again = p.guesses.again.load(std::sync::atomic::Ordering::Relaxed);
        if one_at_a_time {
            assert_eq!((kept, again), (0, 0), "no look-ahead one message at a time");
        } else {
            assert!(kept >= 290, "{kept} guesses kept");
            assert!(again >= 1, "the thread-only reply is classified again");
        }
        let late = r.outcomes.last().unwrap();
        assert!(late.case_id.is_some() && late.category.as_deref() == Some("price"), "the reply reached its client's case: {late:?}");
        assert_eq!(audit::verify(&store).await.unwrap(), Verdict::Intact { rows: audit_rows(&store).await });
        let drafts: Vec<(i64, String, String)> = sqlx::query_as("SELECT id, kind, body FROM drafts ORDER BY id").fetch_all(&store.pool).await.unwrap();
        results.push((serde_json::to_string(&r.outcomes).unwrap(), drafts));
    }
    assert!(results[0].0 == results[1].0, "the same outcomes, message by message");
    assert!(results[0].1 == results[1].1, "the same drafts");
}

#[tokio::test]
async fn the_look_ahead_changes_no_outcome_on_sqlite() {
    the_look_ahead_changes_no_outcome(&Desk::sqlite().await, &Desk::sqlite().await).await;
}

#[tokio::test]
async fn the_look_ahead_changes_no_outcome_on_postgres() {
    the_look_ahead_changes_no_outcome(&Desk::postgres().await, &Desk::postgres().await).await;
}

/// Files are stored a chunk per transaction in two statements: within one
/// chunk, a copy of a file and another file with the same Message-ID are
/// duplicates as they are across runs; ids follow the files' order.
async fn a_chunk_of_files_is_stored_once_in_order(desk: &Desk) {
    let (store, policy) = app::open(&desk.cfg).await.unwrap();
    app::import_corpus(&store, &mini()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = std::fs::read_to_string(mini().join("inbound/0001.eml")).unwrap();
    std::fs::write(dir.path().join("a.eml"), &first).unwrap();
    std::fs::write(dir.path().join("b-copy-of-a.eml"), &first).unwrap();
    std::fs::write(dir.path().join("c-same-message-id.eml"), first.replace("Bonjour,", "Bonjour à tous,")).unwrap();
    std::fs::copy(mini().join("inbound/0002.eml"), dir.path().join("d.eml")).unwrap();
    let mut p = app::pipeline(&desk.cfg, store.clone(), policy).await.unwrap();
    let r = app::ingest_path(&mut p, dir.path(), false).await.unwrap();
    assert_eq!((r.files, r.stored, r.duplicates, r.processed), (4, 2, 2, 2));
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, source FROM messages ORDER BY id").fetch_all(&store.pool).await.unwrap();
    let sources: Vec<&str> = rows.iter().map(|(_, s)| s.rsplit('/').next().unwrap()).collect();
    assert_eq!(sources, vec!["a.eml", "d.eml"], "stored in the files' order: {rows:?}");
    let raw: Vec<u8> = sqlx::query_scalar("SELECT raw FROM message_raw WHERE message_id = $1").bind(rows[0].0).fetch_one(&store.pool).await.unwrap();
    assert_eq!(raw, first.as_bytes(), "the exact bytes");
    let again = app::ingest_path(&mut p, dir.path(), false).await.unwrap();
    assert_eq!((again.stored, again.duplicates, again.processed), (0, 4, 0), "nothing twice");
}

on_both!(a_chunk_of_files_is_stored_once_in_order_on_sqlite, a_chunk_of_files_is_stored_once_in_order_on_postgres, a_chunk_of_files_is_stored_once_in_order);

/// The flow's multi-row writes give each row back to the right caller: a
/// message's drafts by kind (one by one when kinds repeat), reminder blocks
/// by invoice (one per distinct invoice), invoice lookups in the asked
/// order without the unknown ones, links that tolerate repeats.
async fn multi_row_writes_keep_each_row_apart(desk: &Desk) {
    use dispute_desk::domain::InvoiceNumber;
    use dispute_desk::store::cases::NewDraft;
    let store = desk.open().await;
    app::import_corpus(&store, &mini()).await.unwrap();
    let d = |kind, subject| NewDraft { case_id: None, message_id: None, kind, language: "fr", to_addr: None, subject, body: "corps", template: "t" };
    let mut tx = store.begin().await.unwrap();
    let pair = store.insert_drafts(&mut tx, &[d("brief", "b1"), d("reply", "r1")]).await.unwrap();
    let twice = store.insert_drafts(&mut tx, &[d("reply", "r2"), d("brief", "b2"), d("reply", "r3")]).await.unwrap();
    let inv = |s: &str| InvoiceNumber::parse(s).unwrap();
    let blocks = store.add_blocks(&mut tx, &[inv("SL-26-0102"), inv("SL-26-0101"), inv("SL-26-0102")], "dispute", None, None, chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(), None).await.unwrap();
    let found = Store::invoices_by_number_in(&mut tx, &[inv("SL-26-0140"), inv("XX-404"), inv("SL-26-0101")]).await.unwrap();
    tx.commit().await.unwrap();
    for (ids, subjects) in [(pair, vec!["b1", "r1"]), (twice, vec!["r2", "b2", "r3"])] {
        let mut got = vec![];
        for id in &ids {
            let s: String = sqlx::query_scalar("SELECT subject FROM drafts WHERE id = $1").bind(*id).fetch_one(&store.pool).await.unwrap();
            got.push(s);
        }
        assert_eq!(got, subjects, "ids {ids:?}");
    }
    assert_eq!(blocks.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["SL-26-0102", "SL-26-0101"], "one block per distinct invoice, in order");
    for (n, id) in &blocks {
        let on: String = sqlx::query_scalar("SELECT invoice_number FROM reminder_blocks WHERE id = $1").bind(*id).fetch_one(&store.pool).await.unwrap();
        assert_eq!(on, n.as_str());
    }
    assert_eq!(found.iter().map(|i| i.number.as_str()).collect::<Vec<_>>(), vec!["SL-26-0140", "SL-26-0101"]);
}

on_both!(multi_row_writes_keep_each_row_apart_on_sqlite, multi_row_writes_keep_each_row_apart_on_postgres, multi_row_writes_keep_each_row_apart);

async fn audit_rows(store: &Store) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&store.pool).await.unwrap();
    assert!(n > 0);
    n as u64
}

on_both!(mini_company_flow_on_sqlite, mini_company_flow_on_postgres, check_mini_flow);

async fn approval_gate_and_smtp(desk: &Desk) {
    let (store, _) = desk.load_mini().await;
    let policy = dispute_desk::policy::Policy::load(desk.cfg.policies_dir.as_deref()).unwrap();
    let from = EmailAddress::parse(&desk.cfg.company.from_address).unwrap();
    let reply = store.drafts(Some("pending"), None).await.unwrap().into_iter().find(|d| d.kind == "reply" && d.to_addr.as_deref() == Some("p.garnier@transports-garnier.fr")).unwrap();
    assert!(store.outbox().await.unwrap().is_empty(), "nothing is queued before an approval");

    // A sales rep may not approve; nothing is queued.
    let sales = store.user("S1").await.unwrap();
    let e = approve::approve(&store, &policy, &from, "Sud Levage", reply.id, &sales).await.unwrap_err();
    assert!(matches!(e, ApproveError::NotAllowed { .. }), "{e}");
    assert!(store.outbox().await.unwrap().is_empty());

    // An accountant edits then approves: exactly one outbox row.
    let acc = store.user("julie.morel@sud-levage.fr").await.unwrap();
    let edited = format!("{}\nPS : nous vérifions le devis signé.\n", reply.body);
    approve::edit(&store, &policy, reply.id, &acc, &edited).await.unwrap();
    let a = approve::approve(&store, &policy, &from, "Sud Levage", reply.id, &acc).await.unwrap();
    assert!(a.outbox_id.is_some());
    let again = approve::approve(&store, &policy, &from, "Sud Levage", reply.id, &acc).await.unwrap_err();
    assert!(matches!(again, ApproveError::AlreadyDecided { .. }), "{again}");
    assert_eq!(store.outbox().await.unwrap().len(), 1);
    assert!(matches!(approve::reject(&store, &policy, reply.id + 1, &acc, "  ").await, Err(ApproveError::NoReason)));

    // SMTP down: the row waits for a retry, nothing is lost.
    let down = dispute_desk::mail::smtp::SmtpConfig { port: smtp_server::closed_port(), timeout_secs: 2, ..Default::default() };
    let r = dispute_desk::flow::outbox::send_due(&store, &SmtpSender::new(&down).unwrap(), 5).await.unwrap();
    assert_eq!((r.sent, r.retried), (0, 1));
    let row = &store.outbox().await.unwrap()[0];
    assert_eq!(row.status, "queued");
    assert!(row.last_error.is_some());
    sqlx::query("UPDATE outbox SET next_attempt_at = 0").execute(&store.pool).await.unwrap();

    // SMTP up: sent once, with threading headers, then never again.
    let smtp = smtp_server::spawn_smtp(mailin::response::OK);
    let sender = SmtpSender::new(&smtp.config).unwrap();
    // The one-shot `send` runs as an instance: the row carries its id, and the
    // instance is recorded stopped once the pass is over.
    let r = dispute_desk::serve::send_once(&store, &sender, &desk.cfg).await.unwrap();
    assert_eq!(r.sent, 1);
    let claimer = store.outbox().await.unwrap()[0].claimed_by.clone().expect("the sent row names its claimer");
    let inst = store.instances(30_000).await.unwrap().into_iter().find(|i| i.id == claimer).expect("the claimer is a registered instance");
    assert!(inst.stopped_at.is_some() && !inst.alive, "{inst:?}");
    let r = dispute_desk::flow::outbox::send_due(&store, &sender, 5).await.unwrap();
    assert_eq!(r.sent, 0);
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, vec!["p.garnier@transports-garnier.fr".to_string()]);
    let stored_raw = store.outbox().await.unwrap()[0].raw.clone();
    assert_eq!(got[0].data.strip_suffix(b"\r\n").unwrap_or(&got[0].data), stored_raw.as_slice(), "the server got exactly the stored bytes");
    let parsed = mail_parser::MessageParser::default().parse(&got[0].data).unwrap();
    assert_eq!(parsed.in_reply_to().as_text(), Some("g1@transports-garnier.fr"));
    assert!(parsed.subject().unwrap().starts_with("Re: Facture SL 26 101"));
    let body = parsed.body_text(0).unwrap();
    assert!(body.contains("SL-26-0101") && body.contains("nous vérifions le devis signé"), "{body}");
    assert_eq!(store.outbox().await.unwrap()[0].status, "sent");

    // The client's answer threads to what we sent and lands on the same case.
    let case_id = reply.case_id.unwrap();
    let answer = format!(
        "From: Paul Garnier <p.garnier@transports-garnier.fr>\r\nTo: julie.morel@sud-levage.fr\r\nSubject: Re: votre réponse\r\nDate: Thu, 05 Mar 2026 09:00:00 +0100\r\nMessage-ID: <g9@transports-garnier.fr>\r\nIn-Reply-To: <{}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMerci, nous attendons votre avoir.\r\n",
        store.outbox().await.unwrap()[0].message_id
    );
    let f = desk.cfg.data_dir.join("answer.eml");
    std::fs::write(&f, answer).unwrap();
    let (s2, policy2) = app::open(&desk.cfg).await.unwrap();
    let mut p = app::pipeline(&desk.cfg, s2, policy2).await.unwrap();
    let r = app::ingest_path(&mut p, &f, false).await.unwrap();
    assert_eq!(r.outcomes[0].case_id, Some(case_id));
    assert_eq!(r.outcomes[0].invoices, vec!["SL-26-0101".to_string()]);
    assert!(matches!(audit::verify(&store).await.unwrap(), Verdict::Intact { .. }));
}

on_both!(approval_gate_then_one_smtp_delivery_on_sqlite, approval_gate_then_one_smtp_delivery_on_postgres, approval_gate_and_smtp);

#[tokio::test]
async fn audit_verify_names_the_altered_row() {
    let desk = Desk::sqlite().await;
    let (store, _) = desk.load_mini().await;
    let n = audit_rows(&store).await;
    assert_eq!(audit::verify(&store).await.unwrap(), Verdict::Intact { rows: n });
    sqlx::query("UPDATE audit_events SET detail = '{\"owner\":\"M1\"}' WHERE id = 3").execute(&store.pool).await.unwrap();
    match audit::verify(&store).await.unwrap() {
        Verdict::Broken { row_id, reason } => assert!(row_id == 3 && reason.contains("altered"), "{row_id} {reason}"),
        v => panic!("tampering not caught: {v:?}"),
    }
}

#[tokio::test]
async fn eval_on_the_project_corpora() {
    // Our own corpora, each a different company. demo/ and holdout/* were
    // held out at first and then used to tune the rules (first contact:
    // demo 0.748, imprimerie 0.781, logiciel 0.812, transport 0.752; see the
    // issue notes). Floors sit just under what is measured today, so a
    // regression fails; the product target on unseen mail is 0.80.
    let holdout = root().join("tests/fixtures/holdout");
    // fresh/ holds two companies written with implicit motives on purpose:
    // first contact 0.668 and 0.555; round 4 of general families was then
    // written from their misses (0.824 and 0.771), so they are tuned on now
    // and blind/ (below) carries the honest estimate for unseen mail.
    let fresh = root().join("tests/fixtures/fresh");
    // blind/ holds companies written by someone who never saw the rules.
    // paysagiste and informatique, after round 4: first contact 0.757 and
    // 0.852; their link misses (short forms, glued letters, amounts, an
    // injected line) were fixed in link.rs as general rules (links were
    // 0.952/0.930 and 0.976/0.930), and round 5 (stop 19) was written from
    // their category misses (0.823 and 0.940 now). electricite and location,
    // written at stop 19 while round 5 was written: first contact 0.835 and
    // 0.767, 0.835 and 0.764 with round 5; their link misses (a range, a
    // tail of the number before, "numéro" after the invoice's sentence, an
    // injected note) were fixed in link.rs (links 0.978/0.957 and
    // 0.976/0.930 at first contact), and round 6 was written from their
    // category misses (0.927 and 0.862 now). emballage and formation were
    // written meanwhile and first run after rounds 5 and 6: 0.788 and 0.731
    // with the rules before both, 0.822 and 0.744 with them; their category
    // misses were not read (links 0.978/0.978 and 0.955/0.977 at first
    // contact, then fixed in link.rs); round 7 was then written from their
    // category misses. plomberie and grossiste were written meanwhile and
    // first run after rounds 5-7: 0.716 and 0.768 with the rules before,
    // 0.746 and 0.784 now (round 7 changed neither); links 0.936/1.000 and
    // 0.978/0.917 at first contact. Stop 20: ingenierie, communication and
    // securite, written blind, first run with rounds 1-7: 0.767, 0.797 and
    // 0.825 (links 1.000/0.978, 0.976/0.816, 1.000/1.000; their link misses,
    // a year written in two or four digits, letters and digits all glued,
    // two-digit short forms beside the invoice's total, a list after a
    // colon, were fixed in link.rs). Round 8 was written from the category
    // misses of ingenierie and communication (0.944 and 0.960 now); securite
    // was not read: 0.862 with round 8, and round 8 also moved the unread
    // plomberie 0.746 -> 0.761 and grossiste 0.784 -> 0.804. conseil and
    // menuiserie, written meanwhile and first run after round 8: 0.680 and
    // 0.865 (0.688 and 0.852 with rounds 1-7; links 1.000/0.978 and
    // 0.957/0.936, then fixed in link.rs); round 9 was written from
    // conseil's category misses (0.960 now) and changed none of the unread.
    // Stop 21: interim, fromagerie, laboratoire, evenementiel and garage,
    // written blind, first run with rounds 1-9: 0.840, 0.817, 0.572, 0.735
    // and 0.682 (links 0.978/0.863, 1.000/0.978, 0.980/1.000, 1.000/0.917,
    // 1.000/1.000; the misses of all but fromagerie fixed in link.rs).
    // Round 10 was written from the category misses of laboratoire, garage
    // and evenementiel (0.956, 0.946, 0.905 now); interim and fromagerie were
    // not read: 0.840 and 0.833 with it, and it moved the unread grossiste
    // 0.804 -> 0.831, plomberie 0.761 -> 0.780, securite 0.862 -> 0.880.
    // terrassement, traduction, demenagement, voyages and architecte, written
    // blind meanwhile, first run with rounds 1-10: 0.862, 0.809, 0.828, 0.714
    // and 0.722 (0.841, 0.779, 0.828, 0.714, 0.702 with rounds 1-9); their
    // link misses fixed in link.rs. Round 11 was written from the category
    // misses of voyages, architecte and traduction (0.878, 0.920, 0.978 now);
    // the unread terrassement 0.862, demenagement 0.848, interim 0.840,
    // fromagerie 0.848, grossiste 0.852, plomberie 0.780, securite 0.895,
    // menuiserie 0.878. Then "retard" alone weighs 1.5 instead of 2.5 (the
    // client's own late payment as often as our late work) and quotation
    // marks no longer split a phrase: fromagerie 0.866, grossiste 0.871,
    // plomberie 0.805, menuiserie 0.896, transport 0.949, ingenierie 0.964.
    // signaletique, ascenseurs, agricole and expertcomptable, written blind
    // meanwhile, first run with all of that: 0.803, 0.830, 0.898 and 0.673
    // (0.801, 0.812, 0.864, 0.639 with rounds 1-9), links 1.000/1.000 on all
    // four. Round 12 was written from expertcomptable's category misses
    // (0.940 now); the three others were not read: 0.821, 0.844, 0.898.
    // piscines, telecom, veterinaire and autocars, written blind last and
    // first run with rounds 1-12: 0.857, 0.804, 0.806, 0.771 (0.836, 0.785,
    // 0.779, 0.735 with rounds 1-9); not read for their categories.
    let blind = root().join("tests/fixtures/blind");
    for (dir, min_f1) in [
        (mini(), 0.99),
        (root().join("demo"), 0.90),
        (holdout.join("imprimerie"), 0.98),
        (holdout.join("logiciel"), 0.93),
        (holdout.join("transport"), 0.94),
        (fresh.join("traiteur"), 0.89),
        (fresh.join("proprete"), 0.83),
        (blind.join("paysagiste"), 0.89),
        (blind.join("informatique"), 0.93),
        (blind.join("electricite"), 0.94),
        (blind.join("location"), 0.87),
        (blind.join("emballage"), 0.90),
        (blind.join("formation"), 0.85),
        (blind.join("plomberie"), 0.80),
        (blind.join("grossiste"), 0.87),
        (blind.join("ingenierie"), 0.96),
        (blind.join("communication"), 0.95),
        (blind.join("securite"), 0.89),
        (blind.join("conseil"), 0.95),
        (blind.join("menuiserie"), 0.89),
        (blind.join("interim"), 0.83),
        (blind.join("fromagerie"), 0.86),
        (blind.join("laboratoire"), 0.95),
        (blind.join("evenementiel"), 0.93),
        (blind.join("garage"), 0.94),
        (blind.join("terrassement"), 0.86),
        (blind.join("traduction"), 0.97),
        (blind.join("demenagement"), 0.84),
        (blind.join("voyages"), 0.87),
        (blind.join("architecte"), 0.91),
        (blind.join("signaletique"), 0.82),
        (blind.join("ascenseurs"), 0.84),
        (blind.join("agricole"), 0.89),
        (blind.join("expertcomptable"), 0.93),
        (blind.join("piscines"), 0.85),
        (blind.join("telecom"), 0.80),
        (blind.join("veterinaire"), 0.80),
        (blind.join("autocars"), 0.77),
    ] {
        let r = eval::run(&dir, &Desk::sqlite().await.cfg).await.unwrap();
        println!("{}", eval::render(&r));
        assert!(r.messages > 0);
        assert!(r.category_macro_f1 >= min_f1, "{}: macro-F1 {}", dir.display(), r.category_macro_f1);
        // The product's link targets (precision 0.98, recall 0.97) on every
        // corpus. plomberie 0024 and grossiste 0029 were under them until our
        // own message's set-aside invoices ("ayant déjà été réglé", "n'est
        // pas concernée") stopped passing to the replies (`link::link_ours`).
        let min_precision = 0.98;
        assert!(r.link_precision >= min_precision && r.link_recall >= 0.97, "{}: link {} {}", dir.display(), r.link_precision, r.link_recall);
        assert_eq!(r.non_business_cases, 0, "{}: a case was opened for non-business mail", dir.display());
    }
}

#[tokio::test]
async fn shared_dev_corpus_eval_meets_the_measured_floor() {
    let Some(shared) = shared() else {
        println!("skipped: ../shared not found (the dev corpus eval runs where it is present)");
        return;
    };
    let r = eval::run(&shared.join("corpus/dev"), &Desk::sqlite().await.cfg).await.unwrap();
    println!("{}", eval::render(&r));
    assert_eq!(r.messages, 63);
    assert!(r.link_precision >= 0.98, "link precision {}", r.link_precision);
    assert!(r.link_recall >= 0.97, "link recall {}", r.link_recall);
    // Floors just under what the rules reach today (0.970 / 0.984, see the
    // issue note); the product target on unseen mail is 0.80.
    assert!(r.category_macro_f1 >= 0.93, "macro-F1 {}", r.category_macro_f1);
    assert!(r.owner_accuracy >= 0.95, "owner accuracy {}", r.owner_accuracy);
}

#[tokio::test]
async fn every_shared_mime_message_is_ingested_without_error() {
    let Some(shared) = shared() else {
        println!("skipped: ../shared not found (the MIME set runs where it is present)");
        return;
    };
    let desk = Desk::sqlite().await;
    let (store, _) = desk.load_mini().await;
    let (s, policy) = app::open(&desk.cfg).await.unwrap();
    let mut p = app::pipeline(&desk.cfg, s, policy).await.unwrap();
    let r = app::ingest_path(&mut p, &shared.join("mime"), false).await.unwrap();
    println!("mime set: {} files, {} stored, {} duplicates, {} processed in {:.2} s", r.files, r.stored, r.duplicates, r.outcomes.len(), r.seconds);
    assert!(r.files >= 100);
    assert_eq!(r.stored + r.duplicates, r.files);
    assert_eq!(r.outcomes.iter().filter(|o| o.direction == "in").count(), r.stored, "every stored message went through the flow");
    assert!(store.messages_where(None, Some("failed"), None).await.unwrap().is_empty());
    assert!(store.messages_where(None, Some("accepted"), None).await.unwrap().is_empty());
}


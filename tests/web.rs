//! The web desk as people use it: the router in process (tower `oneshot`) on
//! a copy of the demo company's database, one session per role; and one run
//! in a real headless Chromium (driven through chromedriver) against the
//! desk served on 127.0.0.1:0.

#[path = "support/smtp_server.rs"]
mod smtp_server;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dispute_desk::config::Config;
use dispute_desk::store::Store;
use dispute_desk::web::{self, WebState};
use dispute_desk::app;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::path::PathBuf;
use tower::ServiceExt;

const PW: &str = dispute_desk::web::auth::DEMO_PASSWORD;
const ACCOUNTANT: &str = "valerie.perrin@alpes-froid.fr";
const SALES: &str = "julien.rochas@alpes-froid.fr"; // U3, owns case 1
const OTHER_SALES: &str = "emilie.carron@alpes-froid.fr"; // U4
const TECHNICAL: &str = "baptiste.jacquier@alpes-froid.fr"; // U5
const MANAGER: &str = "olivier.berthet@alpes-froid.fr";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::in_checkout(dir, &root());
    cfg.company.name = "Alpes Froid & Climatisation SAS".into();
    cfg.company.from_address = "comptabilite@alpes-froid.fr".into();
    cfg
}

/// The demo company imported and ingested once, with the demo passwords; each
/// test works on its own copy of the file.
fn template_db() -> &'static PathBuf {
    static DB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DB.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap().keep();
                let cfg = config(&dir);
                let (store, policy) = app::open(&cfg).await.unwrap();
                app::import_corpus(&store, &root().join("demo")).await.unwrap();
                for u in store.users().await.unwrap() {
                    web::auth::set_password(&store, &u.id, PW).await.unwrap();
                }
                let mut p = app::pipeline(&cfg, store.clone(), policy).await.unwrap();
                app::ingest_path(&mut p, &root().join("demo"), false).await.unwrap();
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&store.pool).await.unwrap();
                store.pool.close().await;
                dir.join("dispute-desk.db")
            })
        })
        .join()
        .unwrap()
    })
}

/// One desk: its own database (a copy of the demo) and the router.
struct App {
    store: Store,
    state: WebState,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> App {
    spawn_app_with(|_| {}).await
}

async fn spawn_app_with(tune: impl FnOnce(&mut Config)) -> App {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(template_db(), dir.path().join("dispute-desk.db")).unwrap();
    let mut cfg = config(dir.path());
    tune(&mut cfg);
    let (store, policy) = app::open(&cfg).await.unwrap();
    let state = WebState::new(store.clone(), policy, cfg).unwrap();
    App { store, state, _dir: dir }
}

/// A browser in process: keeps cookies, follows nothing.
struct Client {
    app: axum::Router,
    cookies: HashMap<String, String>,
}

struct Resp {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl App {
    fn client(&self) -> Client {
        Client { app: web::router(self.state.clone()), cookies: HashMap::new() }
    }

    /// A client signed in as `email`.
    async fn login(&self, email: &str) -> Client {
        let mut c = self.client();
        let r = c.login(email, PW).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "login of {email}: {}", r.body);
        c
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&self.store.pool).await.unwrap()
    }

    async fn text(&self, sql: &str) -> String {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&self.store.pool).await.unwrap()
    }

    /// The oldest pending reply.
    async fn first_reply(&self) -> i64 {
        self.scalar("SELECT MIN(id) FROM drafts WHERE status = 'pending' AND kind = 'reply'").await
    }
}

fn csrf_of(body: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([^"]+)""#).unwrap();
    re.captures(body).map(|c| c[1].to_string()).unwrap_or_default()
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

impl Client {
    async fn send(&mut self, req: Request<Body>) -> Resp {
        let mut req = req;
        if !self.cookies.is_empty() {
            let c = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            req.headers_mut().insert(header::COOKIE, c.parse().unwrap());
        }
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let location = res.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_string());
        let set_cookies: Vec<String> = res.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
        for sc in &set_cookies {
            let kv = sc.split(';').next().unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() || sc.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        Resp { status, location, set_cookies, body }
    }

    async fn get(&mut self, path: &str) -> Resp {
        self.send(Request::get(path).body(Body::empty()).unwrap()).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        let body = form.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&");
        self.send(Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from(body)).unwrap()).await
    }

    /// The CSRF token of this session, read off a page.
    async fn csrf(&mut self) -> String {
        let r = self.get("/my").await;
        let t = csrf_of(&r.body);
        assert!(!t.is_empty(), "no csrf token on /my");
        t
    }

    async fn login(&mut self, email: &str, password: &str) -> Resp {
        let page = self.get("/login").await;
        let t = csrf_of(&page.body);
        self.post("/login", &[("email", email), ("password", password), ("csrf", &t)]).await
    }
}

#[tokio::test]
async fn login_sets_safe_cookies_and_logout_ends_the_session() {
    let app = spawn_app().await;
    let mut c = app.client();
    assert_eq!(c.get("/approvals").await.location.as_deref(), Some("/login"));
    let r = c.login(ACCOUNTANT, PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/approvals"));
    let sc = r.set_cookies.iter().find(|s| s.starts_with("dd_session=")).expect("session cookie");
    assert!(sc.contains("HttpOnly") && sc.contains("SameSite=Lax") && !sc.contains("Secure"), "{sc}");
    // Only the token's hash is stored.
    let token = c.cookies["dd_session"].clone();
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM web_sessions WHERE token_hash = '{token}'")).await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM web_sessions").await, 1);
    assert_eq!(c.get("/approvals").await.status, StatusCode::OK);
    // Logout is a form too: without the token it is refused.
    assert_eq!(c.post("/logout", &[("csrf", "nope")]).await.status, StatusCode::FORBIDDEN);
    let t = c.csrf().await;
    assert_eq!(c.post("/logout", &[("csrf", &t)]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM web_sessions").await, 0);
    // The old cookie no longer opens anything.
    c.cookies.insert("dd_session".into(), token);
    assert_eq!(c.get("/approvals").await.location.as_deref(), Some("/login"));

    let secure = spawn_app_with(|c| c.web.secure_cookies = true).await;
    let r = secure.client().login(MANAGER, PW).await;
    assert!(r.set_cookies.iter().any(|s| s.starts_with("dd_session=") && s.contains("; Secure")));
    assert_eq!(r.location.as_deref(), Some("/dashboard"));
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let app = spawn_app().await;
    let mut c = app.login(SALES).await;
    sqlx::query("UPDATE web_sessions SET expires_at = 1").execute(&app.store.pool).await.unwrap();
    assert_eq!(c.get("/my").await.location.as_deref(), Some("/login"));
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_rate_limited() {
    let app = spawn_app().await;
    let mut c = app.client();
    // The login form itself carries a CSRF token (cookie + field).
    assert_eq!(c.post("/login", &[("email", ACCOUNTANT), ("password", PW), ("csrf", "forged")]).await.status, StatusCode::FORBIDDEN);
    let r = c.login("nobody@alpes-froid.fr", PW).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for _ in 0..5 {
        let r = c.login(ACCOUNTANT, "wrong password!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("Adresse ou mot de passe incorrect"));
    }
    // Now even the right password waits.
    let r = c.login(ACCOUNTANT, PW).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("Trop d"), "{}", r.body);
    assert!(!c.cookies.contains_key("dd_session"));
    // Another account from the same place is not locked.
    assert_eq!(c.login(MANAGER, PW).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_form_refuses_a_missing_or_foreign_csrf_token() {
    let app = spawn_app().await;
    let mut acc = app.login(ACCOUNTANT).await;
    let mut mgr = app.login(MANAGER).await;
    let foreign = mgr.csrf().await; // a real token, of another session
    let d = app.first_reply().await.to_string();
    for bad in ["", "x", foreign.as_str()] {
        for (path, form) in [
            (format!("/approvals/{d}/approve"), vec![("csrf", bad)]),
            (format!("/approvals/{d}/edit"), vec![("csrf", bad), ("body", "changed")]),
            (format!("/approvals/{d}/reject"), vec![("csrf", bad), ("reason", "no")]),
            ("/cases/4/move".to_string(), vec![("csrf", bad), ("to", "in_analysis")]),
            ("/messages/1/link".to_string(), vec![("csrf", bad), ("client", "C01")]),
        ] {
            let r = acc.post(&path, &form).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with {bad:?}");
        }
    }
    let t = acc.csrf().await;
    assert_eq!(mgr.post("/cases/1/assign", &[("csrf", &t), ("owner", "U4")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.text(&format!("SELECT status FROM drafts WHERE id = {d}")).await, "pending");
    assert_eq!(app.text("SELECT status FROM cases WHERE id = 4").await, "open");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 0);
}

#[tokio::test]
async fn sales_and_technical_see_only_their_own_cases() {
    let app = spawn_app().await;
    let mut sales = app.login(SALES).await;
    let mine = sales.get("/my").await;
    assert_eq!(mine.status, StatusCode::OK);
    assert!(mine.body.contains("href=\"/cases/1\""), "case 1 is Julien's");
    assert!(!mine.body.contains("href=\"/cases/19\""), "case 19 is Émilie's");
    assert_eq!(sales.get("/cases/1").await.status, StatusCode::OK);
    // Another rep's case, by URL guessing: 404, like a case that does not exist.
    assert_eq!(sales.get("/cases/19").await.status, StatusCode::NOT_FOUND);
    assert_eq!(sales.get("/cases/6").await.status, StatusCode::NOT_FOUND);
    assert_eq!(sales.get("/cases/99999").await.status, StatusCode::NOT_FOUND);
    let t = sales.csrf().await;
    assert_eq!(sales.post("/cases/19/move", &[("csrf", &t), ("to", "in_analysis")]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.text("SELECT status FROM cases WHERE id = 19").await, "open");
    // Pages of other roles.
    for p in ["/approvals", "/cases", "/dashboard", "/messages/unlinked"] {
        assert_eq!(sales.get(p).await.status, StatusCode::FORBIDDEN, "{p}");
    }
    let d = app.first_reply().await;
    assert_eq!(sales.post(&format!("/approvals/{d}/approve"), &[("csrf", &t)]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(sales.post(&format!("/approvals/{d}/reject"), &[("csrf", &t), ("reason", "x")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(sales.post("/cases/1/assign", &[("csrf", &t), ("owner", "U4")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(sales.post("/messages/1/link", &[("csrf", &t), ("client", "C01")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 0);

    let mut other = app.login(OTHER_SALES).await;
    assert_eq!(other.get("/cases/19").await.status, StatusCode::OK);
    assert_eq!(other.get("/cases/1").await.status, StatusCode::NOT_FOUND);

    let mut tech = app.login(TECHNICAL).await;
    assert_eq!(tech.get("/cases/6").await.status, StatusCode::OK);
    assert_eq!(tech.get("/cases/1").await.status, StatusCode::NOT_FOUND);
    assert_eq!(tech.get("/approvals").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn accountants_see_every_case_but_may_not_reassign_or_open_the_dashboard() {
    let app = spawn_app().await;
    let mut acc = app.login(ACCOUNTANT).await;
    for p in ["/approvals", "/cases", "/cases/1", "/cases/19", "/messages/unlinked"] {
        assert_eq!(acc.get(p).await.status, StatusCode::OK, "{p}");
    }
    assert_eq!(acc.get("/dashboard").await.status, StatusCode::FORBIDDEN);
    let t = acc.csrf().await;
    assert_eq!(acc.post("/cases/1/assign", &[("csrf", &t), ("owner", "U4")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.text("SELECT owner_id FROM cases WHERE id = 1").await, "U3");
}

#[tokio::test]
async fn managers_see_everything_and_reassign_with_an_audit_event() {
    let app = spawn_app().await;
    let mut m = app.login(MANAGER).await;
    for p in ["/approvals", "/cases", "/cases/1", "/dashboard", "/messages/unlinked", "/my"] {
        assert_eq!(m.get(p).await.status, StatusCode::OK, "{p}");
    }
    let t = m.csrf().await;
    let r = m.post("/cases/1/assign", &[("csrf", &t), ("owner", "U4"), ("reason", "Julien en congé")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(app.text("SELECT owner_id FROM cases WHERE id = 1").await, "U4");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_events WHERE case_id = 1 AND action = 'reassigned' AND actor = 'user:U7'").await, 1);
    // The case moved with its owner.
    let mut emilie = app.login(OTHER_SALES).await;
    assert_eq!(emilie.get("/cases/1").await.status, StatusCode::OK);
    let mut julien = app.login(SALES).await;
    assert_eq!(julien.get("/cases/1").await.status, StatusCode::NOT_FOUND);
    // An unknown owner is a clear 400.
    assert_eq!(m.post("/cases/1/assign", &[("csrf", &t), ("owner", "U404")]).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_approval_queue_shows_what_a_person_needs_oldest_first() {
    let app = spawn_app().await;
    let mut acc = app.login(ACCOUNTANT).await;
    let r = acc.get("/approvals").await;
    assert_eq!(r.status, StatusCode::OK);
    let b = &r.body;
    for needle in ["Brouillons en attente", "Message du client", "Nouveau texte", "Historique cité", "Factures", "Échéance", "confiance", "appel", "Approuver et envoyer", "Rejeter"] {
        assert!(b.contains(needle), "approval queue lacks {needle:?}");
    }
    // Oldest first: the draft ids appear in increasing order.
    let re = regex::Regex::new(r#"id="draft-(\d+)""#).unwrap();
    let ids: Vec<i64> = re.captures_iter(b).map(|c| c[1].parse().unwrap()).collect();
    assert!(ids.len() >= 10 && ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(!b.contains("Fiche d'appel — dossier 1 —</h2>"), "briefs are shown beside, not queued");
    // English on request.
    let en = acc.get("/approvals?lang=en").await;
    assert!(en.body.contains("Drafts waiting for approval") && en.body.contains("Approve and send"));
}

#[tokio::test]
async fn approving_queues_exactly_one_message_and_a_second_approval_is_refused() {
    let app = spawn_app().await;
    let mut tab1 = app.login(ACCOUNTANT).await;
    let mut tab2 = app.login("karim.haddad@alpes-froid.fr").await;
    let d = app.first_reply().await;
    let t1 = tab1.csrf().await;
    let t2 = tab2.csrf().await;
    let r = tab1.post(&format!("/approvals/{d}/approve"), &[("csrf", &t1)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(tab1.get(r.location.as_deref().unwrap()).await.body.contains("Brouillon approuvé"));
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM outbox WHERE draft_id = {d}")).await, 1);
    // The other tab still shows the old form: the gate refuses, plainly.
    let again = tab2.post(&format!("/approvals/{d}/approve"), &[("csrf", &t2)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("déjà été traité"), "{}", again.body);
    let again = tab1.post(&format!("/approvals/{d}/approve"), &[("csrf", &t1)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 1);
    assert_eq!(app.text(&format!("SELECT decided_by FROM drafts WHERE id = {d}")).await, "U1");
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM audit_events WHERE entity = 'draft' AND entity_id = '{d}' AND action = 'approved'")).await, 1);
    // Nor can it be rejected or edited afterwards.
    assert_eq!(tab2.post(&format!("/approvals/{d}/reject"), &[("csrf", &t2), ("reason", "trop tard")]).await.status, StatusCode::CONFLICT);
    assert_eq!(tab2.post(&format!("/approvals/{d}/edit"), &[("csrf", &t2), ("body", "autre")]).await.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn edit_in_place_then_approve_sends_the_edited_text_and_reject_needs_a_reason() {
    let app = spawn_app().await;
    let mut acc = app.login(ACCOUNTANT).await;
    let t = acc.csrf().await;
    let d = app.first_reply().await;
    let body = "Bonjour,\n\nNous avons bien reçu votre message et revenons vers vous sous 48 heures.\n\nCordialement,";
    let r = acc.post(&format!("/approvals/{d}/edit"), &[("csrf", &t), ("body", body)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(app.text(&format!("SELECT body FROM drafts WHERE id = {d}")).await, body);
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM draft_edits WHERE draft_id = {d} AND user_id = 'U1'")).await, 1);
    // Approving with a changed textarea saves the edit first, then approves.
    let body2 = format!("{body}\nValérie");
    assert_eq!(acc.post(&format!("/approvals/{d}/approve"), &[("csrf", &t), ("body", &body2)]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(app.text(&format!("SELECT body FROM drafts WHERE id = {d}")).await, body2);
    assert_eq!(app.text(&format!("SELECT status FROM drafts WHERE id = {d}")).await, "approved");
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM draft_edits WHERE draft_id = {d}")).await, 2);
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM outbox WHERE draft_id = {d}")).await, 1);

    let d2 = app.first_reply().await;
    assert_eq!(acc.post(&format!("/approvals/{d2}/reject"), &[("csrf", &t), ("reason", "  ")]).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(acc.post(&format!("/approvals/{d2}/edit"), &[("csrf", &t), ("body", " ")]).await.status, StatusCode::BAD_REQUEST);
    let r = acc.post(&format!("/approvals/{d2}/reject"), &[("csrf", &t), ("reason", "montant erroné")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(app.text(&format!("SELECT status FROM drafts WHERE id = {d2}")).await, "rejected");
    assert_eq!(app.text(&format!("SELECT reason FROM drafts WHERE id = {d2}")).await, "montant erroné");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 1);
}

#[tokio::test]
async fn a_sales_rep_records_outcomes_through_the_workflow_rules() {
    let app = spawn_app().await;
    let mut s = app.login(SALES).await;
    let t = s.csrf().await;
    let page = s.get("/cases/1").await.body;
    assert!(page.contains("Enregistrer la décision") && page.contains("Fil des messages") && page.contains("Journal d"));
    assert!(!page.contains("/cases/1/assign"), "no reassign form for a sales rep");
    // open → waiting_client → in_analysis → adjustment_approved (needs amount and reason)
    assert_eq!(s.post("/cases/1/move", &[("csrf", &t), ("to", "waiting_client")]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(app.text("SELECT status FROM cases WHERE id = 1").await, "waiting_client");
    assert_eq!(s.post("/cases/1/move", &[("csrf", &t), ("to", "in_analysis")]).await.status, StatusCode::SEE_OTHER);
    let r = s.post("/cases/1/move", &[("csrf", &t), ("to", "adjustment_approved"), ("reason", "geste commercial")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "an adjustment needs its amount");
    assert_eq!(s.post("/cases/1/move", &[("csrf", &t), ("to", "adjustment_approved"), ("amount", "abc"), ("reason", "x")]).await.status, StatusCode::BAD_REQUEST);
    let r = s.post("/cases/1/move", &[("csrf", &t), ("to", "adjustment_approved"), ("amount", "250,00"), ("reason", "geste commercial")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(app.text("SELECT status FROM cases WHERE id = 1").await, "adjustment_approved");
    assert_eq!(app.scalar("SELECT adjusted_cents FROM cases WHERE id = 1").await, 25_000);
    // Closing an adjustment is the accountant's move, not the rep's.
    assert_eq!(s.post("/cases/1/move", &[("csrf", &t), ("to", "resolved")]).await.status, StatusCode::FORBIDDEN);
    // Refused needs a reason (case 2 is Julien's too).
    assert_eq!(s.post("/cases/2/move", &[("csrf", &t), ("to", "in_analysis")]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(s.post("/cases/2/move", &[("csrf", &t), ("to", "refused")]).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.post("/cases/2/move", &[("csrf", &t), ("to", "refused"), ("reason", "tarif contractuel")]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_events WHERE case_id = 2 AND action = 'status_changed' AND actor = 'user:U3'").await, 2);
    let shown = s.get("/cases/2?done=moved").await.body;
    assert!(shown.contains("tarif contractuel") && shown.contains("Statut du dossier modifié"));
}

#[tokio::test]
async fn open_cases_filter_sort_and_paginate() {
    let app = spawn_app().await;
    let mut m = app.login(MANAGER).await;
    let all = m.get("/cases").await.body;
    let n_open = app.scalar("SELECT COUNT(*) FROM cases WHERE status <> 'resolved'").await;
    assert!(all.contains(&format!("({n_open})")));
    let price = m.get("/cases?category=price&sort=amount").await.body;
    let n_price = app.scalar("SELECT COUNT(*) FROM cases WHERE status <> 'resolved' AND category = 'price'").await;
    assert!(price.contains(&format!("({n_price})")) && !price.contains("<td>quantity</td>"));
    let own = m.get("/cases?owner=U3").await.body;
    assert!(own.contains("href=\"/cases/1\"") && !own.contains("href=\"/cases/19\""));
    let big = m.get("/cases?min_amount=1000000").await.body;
    assert!(big.contains("Aucun dossier"));
    let client = m.get("/cases?client=hyper%20savoie").await.body;
    assert!(client.contains("Hyper Savoie"));
    assert_eq!(m.get("/cases?min_age=0&max_amount=99999999&status=all&sort=age&page=1").await.status, StatusCode::OK);
    assert_eq!(m.get("/cases?status=bogus").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(m.get("/cases?min_amount=lots").await.status, StatusCode::BAD_REQUEST);
    // Page 2 of 50 per page exists once there are more cases.
    let two = m.get("/cases?page=2").await;
    assert_eq!(two.status, StatusCode::OK);
}

#[tokio::test]
async fn a_message_linked_by_hand_goes_through_the_flow_again_with_that_link() {
    let app = spawn_app().await;
    // A dispute from an address nobody knows, naming no invoice: the flow
    // cannot link it, so it waits in the unlinked queue.
    let inbox = tempfile::tempdir().unwrap();
    std::fs::write(
        inbox.path().join("unknown.eml"),
        "From: Marc Dupont <marc.dupont.achats@gmail.com>\r\nTo: comptabilite@alpes-froid.fr\r\nSubject: Erreur sur votre facture\r\n\
         Message-ID: <hand-link-1@gmail.com>\r\nDate: Mon, 02 Nov 2026 09:12:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Bonjour,\r\n\r\nLe prix unitaire factur\u{e9} ne correspond pas au tarif convenu dans notre devis. Merci de nous envoyer un avoir pour la diff\u{e9}rence.\r\n\r\nCordialement,\r\nMarc Dupont\r\n",
    )
    .unwrap();
    let mut p = app::pipeline(&app.state.cfg, app.store.clone(), (*app.state.policy).clone()).await.unwrap();
    app::ingest_path(&mut p, inbox.path(), false).await.unwrap();
    let mid = app.scalar("SELECT id FROM messages WHERE message_id = 'hand-link-1@gmail.com'").await;
    assert_eq!(app.text(&format!("SELECT disposition FROM messages WHERE id = {mid}")).await, "unlinked");
    let cases_before = app.scalar("SELECT COUNT(*) FROM cases").await;

    let (client, invoice, owner): (String, String, String) = sqlx::query_as("SELECT i.client_id, i.number, c.account_owner FROM invoices i JOIN clients c ON c.id = i.client_id WHERE i.status <> 'paid' AND c.account_owner IS NOT NULL ORDER BY i.number LIMIT 1").fetch_one(&app.store.pool).await.unwrap();
    let other: String = app.text(&format!("SELECT id FROM clients WHERE id <> '{client}' ORDER BY id LIMIT 1")).await;
    let mut acc = app.login(ACCOUNTANT).await;
    let page = acc.get("/messages/unlinked").await.body;
    assert!(page.contains(&format!("id=\"message-{mid}\"")));
    let t = csrf_of(&page);
    // An invoice of another client is refused, and changes nothing.
    let r = acc.post(&format!("/messages/{mid}/link"), &[("csrf", &t), ("client", &other), ("invoice", &invoice)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(app.text(&format!("SELECT disposition FROM messages WHERE id = {mid}")).await, "unlinked");
    let r = acc.post(&format!("/messages/{mid}/link"), &[("csrf", &t), ("client", &client), ("invoice", &invoice)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // The flow ran again with the person's link: a price dispute on that
    // invoice, routed to the client's account owner, with a pending reply.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM cases").await, cases_before + 1);
    let case_id = app.scalar(&format!("SELECT case_id FROM messages WHERE id = {mid}")).await;
    assert_eq!(r.location.as_deref(), Some(format!("/cases/{case_id}?done=linked").as_str()));
    assert_eq!(app.text(&format!("SELECT disposition FROM messages WHERE id = {mid}")).await, "case");
    assert_eq!(app.text(&format!("SELECT state FROM messages WHERE id = {mid}")).await, "processed");
    assert_eq!(app.text(&format!("SELECT link_method FROM messages WHERE id = {mid}")).await, "manual");
    assert_eq!(app.text(&format!("SELECT client_id FROM messages WHERE id = {mid}")).await, client);
    assert_eq!(app.text(&format!("SELECT kind || '/' || category || '/' || client_id FROM cases WHERE id = {case_id}")).await, format!("dispute/price/{client}"));
    assert_eq!(app.text(&format!("SELECT owner_id FROM cases WHERE id = {case_id}")).await, owner);
    assert_eq!(app.text(&format!("SELECT invoice_number FROM case_invoices WHERE case_id = {case_id}")).await, invoice);
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM drafts WHERE message_id = {mid} AND kind = 'reply' AND status = 'pending'")).await, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 0, "nothing leaves without an approval");
    // Who linked it, then what the flow did, in the audit trail.
    let linked = app.scalar(&format!("SELECT id FROM audit_events WHERE entity = 'message' AND entity_id = '{mid}' AND action = 'linked_by_hand' AND actor = 'user:U1'")).await;
    let opened = app.scalar(&format!("SELECT id FROM audit_events WHERE case_id = {case_id} AND action = 'opened'")).await;
    assert!(linked < opened);
    assert!(acc.get(&format!("/cases/{case_id}?done=linked")).await.body.contains(&invoice));
    // Twice is a conflict, not a second link nor a second pass.
    assert_eq!(acc.post(&format!("/messages/{mid}/link"), &[("csrf", &t), ("client", &client)]).await.status, StatusCode::CONFLICT);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM cases").await, cases_before + 1);
    assert!(!acc.get("/messages/unlinked").await.body.contains(&format!("id=\"message-{mid}\"")));
}

#[tokio::test]
async fn dashboard_health_and_metrics() {
    let app = spawn_app().await;
    let mut m = app.login(MANAGER).await;
    let d = m.get("/dashboard").await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(d.body.matches("<svg").count() >= 6, "charts are SVG pictures");
    for needle in ["Litiges ouverts", "Délai de résolution", "Impayés échus par ancienneté", "DSO", "Brouillons en attente", "0-30", "31-60", "61-90", "90+", "Motifs récurrents"] {
        assert!(d.body.contains(needle), "dashboard lacks {needle:?}");
    }
    let n = app.scalar("SELECT COUNT(*) FROM cases WHERE kind = 'dispute' AND status <> 'resolved'").await;
    assert!(d.body.contains(&format!("id=\"kpi-open\">{n}</b>")));
    let mut anon = app.client();
    let h = anon.get("/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (StatusCode::OK, "ok\n"));
    let met = anon.get("/metrics").await.body;
    let pending = app.scalar("SELECT COUNT(*) FROM drafts WHERE status = 'pending' AND kind = 'reply'").await;
    assert!(met.contains(&format!("dispute_desk_drafts_pending{{kind=\"reply\"}} {pending}")), "{met}");
    for name in ["dispute_desk_messages_ingested_total{direction=\"in\"}", "dispute_desk_sends_total 0", "dispute_desk_errors_total{stage=\"send\"} 0"] {
        assert!(met.contains(name), "{name} in {met}");
    }
    // The language switch sets a cookie and the pages follow it.
    let r = m.get("/lang/en").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(m.get("/dashboard").await.body.contains("Open disputes"));
}

#[tokio::test]
async fn metrics_count_llm_calls_by_outcome_and_their_tokens() {
    use dispute_desk::store::llm_calls::{CallRow, Outcome};
    let app = spawn_app().await;
    let met = app.client().get("/metrics").await.body;
    // The demo ran on the rules: no call yet, and the families are declared.
    for name in ["# TYPE dispute_desk_llm_calls_total counter", "# TYPE dispute_desk_llm_input_tokens_total counter", "# TYPE dispute_desk_llm_output_tokens_total counter"] {
        assert!(met.contains(name), "{name} in {met}");
    }
    assert!(!met.contains("dispute_desk_llm_calls_total{"), "{met}");
    let rows = [("classify", Outcome::Ok, 410, 52), ("classify", Outcome::Ok, 390, 48), ("classify", Outcome::Invalid, 400, 60), ("classify", Outcome::Fallback, 0, 0), ("draft", Outcome::Error, 0, 0), ("draft", Outcome::Ok, 300, 120)];
    for (task, outcome, input_tokens, output_tokens) in rows {
        app.store.record_llm_call(&CallRow { task, model: "m", prompt: "p.v1", input_tokens, output_tokens, latency_ms: 5, outcome }).await.unwrap();
    }
    let met = app.client().get("/metrics").await.body;
    for line in [
        "dispute_desk_llm_calls_total{task=\"classify\",outcome=\"ok\"} 2",
        "dispute_desk_llm_calls_total{task=\"classify\",outcome=\"invalid\"} 1",
        "dispute_desk_llm_calls_total{task=\"classify\",outcome=\"fallback\"} 1",
        "dispute_desk_llm_calls_total{task=\"draft\",outcome=\"error\"} 1",
        "dispute_desk_llm_calls_total{task=\"draft\",outcome=\"ok\"} 1",
        "dispute_desk_llm_input_tokens_total{task=\"classify\"} 1200",
        "dispute_desk_llm_output_tokens_total{task=\"classify\"} 160",
        "dispute_desk_llm_input_tokens_total{task=\"draft\"} 300",
        "dispute_desk_llm_output_tokens_total{task=\"draft\"} 120",
    ] {
        assert!(met.lines().any(|l| l == line), "{line} in {met}");
    }
}

#[tokio::test]
async fn user_add_and_passwd_make_logins_and_a_new_password_ends_sessions() {
    let app = spawn_app().await;
    let email = dispute_desk::domain::EmailAddress::parse("nadia.roux@alpes-froid.fr").unwrap();
    let role = dispute_desk::domain::Role::Sales;
    assert!(matches!(web::auth::add_user(&app.store, None, &email, "Nadia Roux", role, "short").await, Err(web::Error::BadRequest(_))));
    let u = web::auth::add_user(&app.store, None, &email, "Nadia Roux", role, "un mot de passe long").await.unwrap();
    assert_eq!(u.id, "U-nadia.roux");
    assert!(app.text("SELECT password_hash FROM users WHERE id = 'U-nadia.roux'").await.starts_with("$argon2id$"));
    assert!(matches!(web::auth::add_user(&app.store, Some("U99"), &email, "Nadia", role, "un mot de passe long").await, Err(web::Error::Conflict(_))));
    let mut c = app.client();
    assert_eq!(c.login("nadia.roux@alpes-froid.fr", "un mot de passe long").await.location.as_deref(), Some("/my"));
    assert!(c.get("/my").await.body.contains("Aucun dossier"));
    web::auth::set_password(&app.store, "nadia.roux@alpes-froid.fr", "un autre mot de passe").await.unwrap();
    assert_eq!(c.get("/my").await.location.as_deref(), Some("/login"), "the old session ended");
    assert_eq!(c.login("nadia.roux@alpes-froid.fr", "un mot de passe long").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.login("nadia.roux@alpes-froid.fr", "un autre mot de passe").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_desk_runs_on_postgresql_too() {
    let admin = std::env::var("DISPUTE_DESK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = Store::create_postgres_database(&admin, "dd_web").await.unwrap_or_else(|e| panic!("PostgreSQL must run for the tests ({admin}): {e}"));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.database_url = Some(url);
    let (store, policy) = app::open(&cfg).await.unwrap();
    app::import_corpus(&store, &root().join("demo")).await.unwrap();
    web::auth::set_password(&store, MANAGER, PW).await.unwrap();
    let mut p = app::pipeline(&cfg, store.clone(), policy.clone()).await.unwrap();
    app::ingest_path(&mut p, &root().join("demo"), false).await.unwrap();
    let app = App { state: WebState::new(store.clone(), policy, cfg).unwrap(), store, _dir: dir };
    let mut m = app.login(MANAGER).await;
    for path in ["/approvals", "/cases?client=savoie&min_amount=10&sort=amount", "/cases/1", "/my", "/messages/unlinked", "/healthz", "/metrics"] {
        let r = m.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }
    let d = m.get("/dashboard").await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    assert!(d.body.matches("<svg").count() >= 6);
    let draft = app.first_reply().await;
    let t = m.csrf().await;
    assert_eq!(m.post(&format!("/approvals/{draft}/approve"), &[("csrf", &t)]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(m.post(&format!("/approvals/{draft}/approve"), &[("csrf", &t)]).await.status, StatusCode::CONFLICT);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 1);
    let mut c = app.client();
    for _ in 0..5 {
        assert_eq!(c.login(MANAGER, "wrong password!").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(c.login(MANAGER, PW).await.status, StatusCode::TOO_MANY_REQUESTS);
}

// ---------------------------------------------------------------------------
// The real browser: Debian's chromium driven by chromedriver over WebDriver
// (plain HTTP on loopback).

fn http(port: u16, method: &str, path: &str, body: Option<&serde_json::Value>) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let b = body.map(|b| b.to_string()).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len()).unwrap();
    // Read the head, then exactly Content-Length bytes (chromedriver may
    // keep the connection open), or to the end for chunked answers.
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let body = loop {
        let n = s.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..i]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()));
            match len {
                Some(len) => {
                    while out.len() < i + 4 + len {
                        let n = s.read(&mut buf).unwrap();
                        assert!(n > 0, "chromedriver closed early");
                        out.extend_from_slice(&buf[..n]);
                    }
                    break String::from_utf8_lossy(&out[i + 4..i + 4 + len]).to_string();
                }
                None => {
                    s.read_to_end(&mut out).unwrap();
                    break dechunk(&String::from_utf8_lossy(&out[i + 4..]));
                }
            }
        }
        assert!(n > 0, "chromedriver closed before answering");
    };
    let head = "";
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("chromedriver answered {head}{body}: {e}"))
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !b"=\r\n".contains(c)).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| val(*c) as u32).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        out.push((n >> 16) as u8);
        if v.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if v.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

struct Driver {
    port: u16,
    session: String,
    child: std::process::Child,
}

impl Driver {
    fn start() -> Driver {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(std::path::Path::new(bin).exists(), "{bin} is missing: the browser test needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/test.sh does it)");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("/usr/bin/chromedriver").arg(format!("--port={port}")).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("start chromedriver");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "chromedriver did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap().keep();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1800",
            format!("--user-data-dir={}", profile.display())
        ]}}}});
        let v = http(port, "POST", "/session", Some(&caps));
        let session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_string();
        Driver { port, session, child }
    }

    fn cmd(&self, method: &str, what: &str, body: serde_json::Value) -> serde_json::Value {
        let v = http(self.port, method, &format!("/session/{}{what}", self.session), if method == "GET" { None } else { Some(&body) });
        assert!(v["value"].get("error").is_none(), "{what}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", serde_json::json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", serde_json::json!({"using": "css selector", "value": css}));
        v["element-6066-11e4-a52e-4f735466cecf"].as_str().unwrap().to_string()
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/value"), serde_json::json!({"text": text}));
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), serde_json::json!({}));
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", serde_json::json!({})).as_str().unwrap().to_string()
    }

    /// The page source once it contains `text` (the browser may still be
    /// following a redirect); the last source after 15 s.
    fn source_with(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let s = self.source();
            if s.contains(text) || std::time::Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn screenshot(&self, path: &str) {
        let b64 = self.cmd("GET", "/screenshot", serde_json::json!({}));
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let (port, path) = (self.port, format!("/session/{}", self.session));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| http(port, "DELETE", &path, None)));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_approval_reaches_smtp_the_manager_sees_the_dashboard_and_a_rep_is_refused_another_case() {
    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::serve(listener, app.state.clone(), async {
        let _ = stopped.await;
    }));
    let first = app.first_reply().await;
    let subject = app.text(&format!("SELECT subject FROM drafts WHERE id = {first}")).await;
    let out = std::env::var("DISPUTE_DESK_SCREENSHOTS").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let (page, after) = tokio::task::spawn_blocking(move || {
        let d = Driver::start();
        d.go(&format!("{base}/login"));
        d.type_in("#email", ACCOUNTANT);
        d.type_in("#password", PW);
        d.click("#login-submit");
        let page = d.source_with("Brouillons en attente");
        d.screenshot(&format!("{out}/dispute-desk-approvals.png"));
        // Approve the oldest draft with its button.
        d.click(&format!("#draft-{first} button.primary"));
        let after = d.source_with("Brouillon approuvé");
        d.screenshot(&format!("{out}/dispute-desk-approved.png"));
        // Sign out, then the manager's dashboard.
        d.click("header.top form button");
        d.source_with("login-submit");
        d.type_in("#email", MANAGER);
        d.type_in("#password", PW);
        d.click("#login-submit");
        let dash = d.source_with("kpi-open");
        assert!(dash.contains("Tableau de bord") && dash.matches("<svg").count() >= 6, "the dashboard with its charts");
        d.screenshot(&format!("{out}/dispute-desk-dashboard.png"));
        // A sales rep guessing another rep's case URL gets nothing of it.
        d.click("header.top form button");
        d.source_with("login-submit");
        d.type_in("#email", SALES);
        d.type_in("#password", PW);
        d.click("#login-submit");
        assert!(d.source_with("Mes dossiers").contains("/cases/1\""), "Julien sees his case 1");
        d.go(&format!("{base}/cases/19"));
        let refused = d.source_with("404");
        assert!(refused.contains("<h1>404</h1>") && !refused.contains("Émilie"), "case 19 is Émilie's");
        d.screenshot(&format!("{out}/dispute-desk-sales-refused.png"));
        (page, after)
    })
    .await
    .unwrap();
    assert!(page.contains("Brouillons en attente"), "the queue after signing in");
    assert!(page.contains("Valérie Perrin"));
    assert!(page.contains(&subject.replace('&', "&amp;")) || page.contains(&subject), "the oldest draft's subject {subject:?}");
    assert!(page.contains("Nouveau texte") && page.contains("Approuver et envoyer"));
    assert!(after.contains("Brouillon approuvé"), "the approval is confirmed");
    assert!(!after.contains(&format!("id=\"draft-{first}\"")));
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM outbox WHERE draft_id = {first}")).await, 1);
    // The send worker delivers what the browser approved to the SMTP test
    // server, once.
    let to = app.text(&format!("SELECT to_addr FROM drafts WHERE id = {first}")).await;
    let smtp = smtp_server::spawn_smtp(mailin::response::OK);
    let sender = dispute_desk::mail::smtp::SmtpSender::new(&smtp.config).unwrap();
    assert_eq!(dispute_desk::flow::outbox::send_due(&app.store, &sender, 5).await.unwrap().sent, 1);
    assert_eq!(dispute_desk::flow::outbox::send_due(&app.store, &sender, 5).await.unwrap().sent, 0);
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, vec![to]);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The dashboard's figures are aggregated by SQL along indexes; here they are
/// recounted the slow way, from every row, on a generated desk.
#[tokio::test]
async fn dashboard_figures_agree_with_a_recount_of_every_row() {
    use chrono::NaiveDate;
    use dispute_desk::web::dashboard::{bucket, figures, median, month_starts, MOTIVE_MONTHS};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (store, policy) = app::open(&cfg).await.unwrap();
    let today = chrono::Local::now().date_naive();
    dispute_desk::gen_desk::generate(&store, dispute_desk::gen_desk::DeskSpec { cases: 3_000, invoices: 20_000, clients: 120 }, today).await.unwrap();
    let state = WebState::new(store.clone(), policy, cfg).unwrap();
    let f = figures(&state, today).await.unwrap();
    let now = dispute_desk::store::now();

    type CaseRow = (String, String, String, Option<String>, Option<i64>, i64, i64, Option<i64>, i64);
    let cases: Vec<CaseRow> = sqlx::query_as("SELECT c.kind, c.status, c.category, u.name, c.disputed_cents, c.amount_cents, c.opened_at, c.closed_at, c.first_at FROM cases c LEFT JOIN users u ON u.id = c.owner_id").fetch_all(&store.pool).await.unwrap();
    let open: Vec<&CaseRow> = cases.iter().filter(|c| c.0 == "dispute" && c.1 != "resolved").collect();
    assert!(open.len() > 100, "the generated desk has open disputes");
    assert_eq!(f.open_disputes, open.len() as i64);
    assert_eq!(f.open_disputed_cents, open.iter().map(|c| c.4.unwrap_or(c.5)).sum::<i64>());
    let mut by_cat: HashMap<String, (i64, i64)> = HashMap::new();
    let mut by_owner: HashMap<String, (i64, i64)> = HashMap::new();
    for c in &open {
        let e = by_cat.entry(c.2.clone()).or_default();
        e.0 += 1;
        e.1 += c.4.unwrap_or(c.5);
        let e = by_owner.entry(c.3.clone().unwrap_or_else(|| "-".into())).or_default();
        e.0 += 1;
        e.1 += c.4.unwrap_or(c.5);
    }
    assert_eq!(f.by_category.iter().map(|(c, n, a)| (c.clone(), (*n, *a))).collect::<HashMap<_, _>>(), by_cat);
    assert_eq!(f.by_owner.iter().map(|(o, n, a)| (o.clone(), (*n, *a))).collect::<HashMap<_, _>>(), by_owner);
    assert!(f.by_category.windows(2).all(|w| w[0].2 >= w[1].2), "largest amount first");

    let mut spans: Vec<f64> = cases.iter().filter_map(|c| c.7.map(|closed| (closed - c.6) as f64 / 86_400.0)).collect();
    assert_eq!(f.resolved, spans.len());
    let mean = spans.iter().sum::<f64>() / spans.len() as f64;
    assert!((f.resolve_mean_days.unwrap() - mean).abs() < 1e-6, "{:?} vs {mean}", f.resolve_mean_days);
    assert_eq!(f.resolve_median_days, median(&mut spans));

    let months = month_starts(today, MOTIVE_MONTHS);
    let mut motives: HashMap<(String, String), i64> = HashMap::new();
    for c in cases.iter().filter(|c| c.0 == "dispute") {
        if let Some(m) = months.iter().rev().find(|m| c.8 >= m.0) {
            *motives.entry((m.1.clone(), c.2.clone())).or_default() += 1;
        }
    }
    assert!(!motives.is_empty());
    assert_eq!(f.motives.iter().map(|(m, c, n)| ((m.clone(), c.clone()), *n)).collect::<HashMap<_, _>>(), motives);

    let invoices: Vec<(String, String, i64, i64, String)> = sqlx::query_as("SELECT due_date, issue_date, amount_cents, paid_cents, status FROM invoices").fetch_all(&store.pool).await.unwrap();
    let mut overdue = [0i64; 4];
    let (mut receivable, mut sales) = (0i64, 0i64);
    for (due, issue, amount, paid, status) in &invoices {
        let issue = NaiveDate::parse_from_str(issue, "%Y-%m-%d").unwrap();
        if issue >= today - chrono::Duration::days(90) && issue <= today {
            sales += amount;
        }
        if status == "paid" || amount <= paid {
            continue;
        }
        receivable += amount - paid;
        let due = NaiveDate::parse_from_str(due, "%Y-%m-%d").unwrap();
        if due < today {
            overdue[bucket((today - due).num_days())] += amount - paid;
        }
    }
    assert!(overdue.iter().all(|o| *o > 0), "every bucket has invoices: {overdue:?}");
    assert_eq!(f.overdue, overdue);
    assert!((f.dso_days.unwrap() - receivable as f64 / sales as f64 * 90.0).abs() < 1e-9);

    let drafts: Vec<(i64,)> = sqlx::query_as("SELECT created_at FROM drafts WHERE status = 'pending' AND kind <> 'brief'").fetch_all(&store.pool).await.unwrap();
    assert_eq!(f.drafts_waiting, drafts.len() as i64);
    assert_eq!(f.draft_ages.iter().sum::<i64>(), drafts.len() as i64);
    assert_eq!(f.oldest_draft_days, drafts.iter().map(|d| (now - d.0) / 86_400).max());
}

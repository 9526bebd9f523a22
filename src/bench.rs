//! bench: benchmark commands that print numbers (speed and memory targets
//! are measured here, never by timed tests). `bench remind` times the daily
//! reminder pass on a synthetic company in a fresh temporary SQLite database;
//! `bench ingest` times the whole flow on generated (or given) mail beside the
//! floor of mail-parser alone on the same bytes.

use crate::app;
use crate::config::Config;
use crate::domain::{EmailAddress, InvoiceNumber, Language, Money, Role};
use crate::ledger::{ClientRecord, InvoiceRecord, InvoiceStatus, UserRecord};
use anyhow::{Context, Result};
use chrono::{Duration, NaiveDate};
use serde::Serialize;
use std::time::Instant;

/// What `bench remind` measured.
#[derive(Debug, Clone, Serialize)]
pub struct RemindBench {
    pub invoices: usize,
    pub clients: usize,
    pub date: String,
    pub import_seconds: f64,
    /// The first run of the day: every level due, drafts and tasks written.
    pub first_run_seconds: f64,
    pub drafts: usize,
    pub tasks: usize,
    pub skipped: usize,
    /// The same day again: nothing new to write.
    pub same_day_seconds: f64,
    /// The next day: the steady state, a few levels due.
    pub next_day_seconds: f64,
    pub next_day_drafts: usize,
    /// Peak resident memory of the process (VmHWM), when the OS reports it.
    pub peak_rss_mib: Option<f64>,
}

/// A small deterministic generator (no dependency, same company every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The synthetic ledger: `invoices` open invoices over `clients` clients,
/// due from 45 days before `day` to 5 days after it.
pub fn company(invoices: usize, clients: usize, day: NaiveDate) -> (Vec<UserRecord>, Vec<ClientRecord>, Vec<InvoiceRecord>) {
    let user = |id: &str, role| UserRecord { id: id.into(), name: format!("Bench {id}"), email: EmailAddress::parse(&format!("{}@bench.test", id.to_lowercase())).expect("valid"), role };
    let users = vec![user("A1", Role::Accountant), user("S1", Role::Sales), user("T1", Role::Technical), user("M1", Role::Manager)];
    let clients: Vec<ClientRecord> = (0..clients.max(1))
        .map(|i| ClientRecord {
            line: i as u64 + 2,
            id: format!("K{i:05}"),
            name: format!("Client {i}"),
            email_domains: vec![format!("client{i}.test")],
            account_owner: Some("S1".into()),
            strategic: i % 20 == 0,
            language: if i % 5 == 0 { Language::En } else { Language::Fr },
        })
        .collect();
    let mut rng = Lcg(42);
    let invoices = (0..invoices)
        .map(|i| {
            let due = day + Duration::days(rng.next(51) as i64 - 45);
            InvoiceRecord {
                line: i as u64 + 2,
                number: InvoiceNumber::parse(&format!("BX-{:07}", i + 1)).expect("valid"),
                client_id: clients[rng.next(clients.len() as u64) as usize].id.clone(),
                issue_date: due - Duration::days(30),
                due_date: due,
                amount: Money(10_000 + rng.next(2_000_000) as i64),
                currency: "EUR".into(),
                status: InvoiceStatus::Open,
                po_number: None,
                project: None,
            }
        })
        .collect();
    (users, clients, invoices)
}

/// Peak resident set size in MiB (Linux `/proc/self/status`).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the reminder pass on a synthetic company of `invoices` open invoices.
pub async fn remind(base: &Config, invoices: usize, clients: usize, day: NaiveDate) -> Result<RemindBench> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let mut cfg = base.clone();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database_url = None;
    let (store, policy) = app::open(&cfg).await?;
    let (users, cl, inv) = company(invoices, clients, day);
    let t = Instant::now();
    store.import_users(&users).await?;
    store.import_clients("bench-clients", &cl).await?;
    store.import_invoices("bench-invoices", &inv).await?;
    let import_seconds = t.elapsed().as_secs_f64();
    let timed = |day| {
        let (cfg, store, policy) = (&cfg, &store, &policy);
        async move {
            let t = Instant::now();
            let r = app::remind(cfg, store, policy, day).await?;
            anyhow::Ok((t.elapsed().as_secs_f64(), r))
        }
    };
    let (first_run_seconds, first) = timed(day).await?;
    let (same_day_seconds, again) = timed(day).await?;
    anyhow::ensure!(again.drafts.is_empty() && again.tasks.is_empty(), "a second run the same day wrote {} drafts", again.drafts.len());
    let (next_day_seconds, next) = timed(day + Duration::days(1)).await?;
    Ok(RemindBench {
        invoices,
        clients: cl.len(),
        date: day.to_string(),
        import_seconds,
        first_run_seconds,
        drafts: first.drafts.len(),
        tasks: first.tasks.len(),
        skipped: first.skipped,
        same_day_seconds,
        next_day_seconds,
        next_day_drafts: next.drafts.len(),
        peak_rss_mib: peak_rss_mib(),
    })
}

/// What `bench ingest` measured.
#[derive(Debug, Clone, Serialize)]
pub struct IngestBench {
    pub backend: String,
    pub messages: usize,
    pub bytes: u64,
    /// mail-parser alone, reading and parsing every inbound file.
    pub parse_only_seconds: f64,
    pub parse_only_per_second: f64,
    /// ingest → parse → link → classify (rules) → decide → draft → store.
    pub end_to_end_seconds: f64,
    pub end_to_end_per_second: f64,
    /// end to end ÷ parse only (the cost of our own stages).
    pub ratio: f64,
    /// Of the whole flow: storing the raw messages (ingest), then the flow proper.
    pub store_raw_seconds: f64,
    pub flow_seconds: f64,
    /// The flow's pure stages timed alone on the same inbound messages
    /// (parse, link, classify); the rest of the flow is decide, draft and
    /// the database.
    pub stages: crate::flow::pipeline::StageSeconds,
    /// Classifications made ahead on the other thread (`flow::ahead`): kept,
    /// and made again because the link in order found other facts.
    pub guesses_kept: u64,
    pub guesses_again: u64,
    pub cases: usize,
    pub drafts: usize,
    pub peak_rss_mib: Option<f64>,
    /// The one CPU the flow ran on (see `cpu`); None: every CPU.
    pub one_cpu: Option<usize>,
    /// The CPU the look-ahead thread ran on (`flow::ahead`), when the flow
    /// was kept on one.
    pub ahead_cpu: Option<usize>,
}

/// Runs the flow on `messages` generated messages (or on the corpus at `corpus`).
pub async fn ingest(base: &Config, messages: usize, corpus: Option<&std::path::Path>, postgres: Option<&str>) -> Result<IngestBench> {
    let gen_dir = tempfile::tempdir().context("creating a temporary folder")?;
    let dir = match corpus {
        Some(c) => c.to_path_buf(),
        None => {
            crate::gen::generate(gen_dir.path(), (messages / 40).max(20), (messages / 2).max(100), messages)?;
            gen_dir.path().to_path_buf()
        }
    };
    // The floor: mail-parser alone on the same bytes, one file at a time.
    // Only the parsing is timed, not reading the file (whether the OS still
    // has it cached changed the floor up to eightfold between runs).
    let files = crate::mail::maildir::list(&dir.join("inbound"), false)?;
    let (mut bytes, mut parse_only_seconds) = (0u64, 0f64);
    for f in &files {
        let raw = std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
        bytes += raw.len() as u64;
        let t = Instant::now();
        std::hint::black_box(mail_parser::MessageParser::default().parse(&raw));
        parse_only_seconds += t.elapsed().as_secs_f64();
    }

    let data = tempfile::tempdir().context("creating a temporary folder")?;
    let mut cfg = base.clone();
    cfg.data_dir = data.path().to_path_buf();
    cfg.database_url = None;
    let mut dropped = None;
    if let Some(admin) = postgres {
        let url = crate::store::Store::create_postgres_database(admin, "dd_bench").await.with_context(|| format!("creating a database on {admin}"))?;
        let name = url.rsplit('/').next().unwrap_or_default().to_string();
        cfg.database_url = Some(url);
        dropped = Some((admin.to_string(), name));
    }
    let (store, policy) = app::open(&cfg).await?;
    app::import_corpus(&store, &dir).await?;
    let mut p = app::pipeline(&cfg, store.clone(), policy).await?;
    let t = Instant::now();
    if dir.join("outbound").is_dir() {
        app::ingest_path(&mut p, &dir.join("outbound"), true).await?;
    }
    let out = t.elapsed().as_secs_f64();
    // The outcomes are counted, not kept (as `ingest` prints and drops them).
    let r = app::ingest_path_each(&mut p, &dir.join("inbound"), false, |_| ()).await?;
    let end_to_end_seconds = t.elapsed().as_secs_f64();
    let (store_raw_seconds, flow_seconds) = (r.store_seconds, end_to_end_seconds - out - r.store_seconds);
    // The flow's peak, read before the stages are timed alone below: those
    // run the classifier on this thread, which builds its own regex caches
    // beside the look-ahead thread's (regex keeps one cache per thread).
    let peak_rss = peak_rss_mib();
    let mut stages = crate::flow::pipeline::StageSeconds::default();
    for f in &files {
        let raw = std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
        p.time_stages(&raw, &mut stages).await;
    }
    let count = |table: &'static str| {
        let pool = store.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(&pool).await }
    };
    let cases = count("cases").await? as usize;
    let drafts = count("drafts").await? as usize;
    store.pool.close().await;
    if let Some((admin, name)) = dropped {
        let pool = sqlx::AnyPool::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&pool).await?;
    }
    let n = r.files;
    Ok(IngestBench {
        backend: if postgres.is_some() { "postgres".into() } else { "sqlite".into() },
        messages: n,
        bytes,
        parse_only_seconds,
        parse_only_per_second: n as f64 / parse_only_seconds.max(1e-9),
        end_to_end_seconds,
        end_to_end_per_second: n as f64 / end_to_end_seconds.max(1e-9),
        ratio: end_to_end_seconds / parse_only_seconds.max(1e-9),
        store_raw_seconds,
        flow_seconds,
        stages,
        guesses_kept: p.guesses.kept.load(std::sync::atomic::Ordering::Relaxed),
        guesses_again: p.guesses.again.load(std::sync::atomic::Ordering::Relaxed),
        cases,
        drafts,
        peak_rss_mib: peak_rss,
        one_cpu: crate::cpu::single(),
        ahead_cpu: crate::cpu::single().and(crate::cpu::spare()),
    })
}

/// Latency of one page under `bench web`, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct PageTiming {
    pub path: String,
    pub role: String,
    pub requests: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub bytes: usize,
}

/// What `bench web` measured.
#[derive(Debug, Clone, Serialize)]
pub struct WebBench {
    pub database: String,
    pub cases: i64,
    pub open_cases: i64,
    pub invoices: i64,
    /// Seconds spent generating the data (None: an existing database was used).
    pub generate_seconds: Option<f64>,
    pub database_mib: Option<f64>,
    pub pages: Vec<PageTiming>,
    pub peak_rss_mib: Option<f64>,
}

/// The value at quantile `q` (0..=1) of sorted `v`, nearest rank.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Serves the web desk on a loopback port with the same router as `serve`
/// and times `requests` sequential GETs of each page over HTTP, signed in as
/// the generated manager, accountant and sales rep. The database at `db` is
/// generated first (`gen_desk`) when it holds no cases.
pub async fn web(base: &Config, db: &std::path::Path, spec: crate::gen_desk::DeskSpec, requests: usize) -> Result<WebBench> {
    use http_body_util::BodyExt;
    let mut cfg = base.clone();
    cfg.database_url = Some(format!("sqlite://{}", db.display()));
    let (store, policy) = app::open(&cfg).await?;
    let cases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases").fetch_one(&store.pool).await?;
    let generate_seconds = if cases == 0 {
        let day = chrono::Local::now().date_naive();
        eprintln!("bench web: generating {} cases, {} invoices, {} clients into {} (once; later runs reuse it)", spec.cases, spec.invoices, spec.clients, db.display());
        Some(crate::gen_desk::generate(&store, spec, day).await?.seconds)
    } else {
        None
    };
    let count = |sql: &'static str| {
        let pool = store.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await }
    };
    let (cases, open_cases, invoices) = (count("SELECT COUNT(*) FROM cases").await?, count("SELECT COUNT(*) FROM cases WHERE status <> 'resolved'").await?, count("SELECT COUNT(*) FROM invoices").await?);
    let user_of = |role: &'static str| {
        let pool = store.pool.clone();
        async move { sqlx::query_scalar::<_, String>("SELECT id FROM users WHERE role = $1 ORDER BY id LIMIT 1").bind(role).fetch_optional(&pool).await }
    };
    let mut tokens = vec![];
    for role in ["manager", "accountant", "sales"] {
        let id = user_of(role).await?.with_context(|| format!("the database has no {role} to sign in as"))?;
        tokens.push((role, crate::web::session::create(&store, &id, 8).await?));
    }

    let web = crate::web::WebState::new(store.clone(), policy, cfg.clone()).context("loading the web templates")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::web::serve(listener, web, async move {
        let _ = stopped.await;
    }));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<http_body_util::Empty<bytes::Bytes>>();
    let pages: &[(&str, &str)] = &[
        ("manager", "/cases"),
        ("manager", "/cases?sort=amount"),
        ("manager", "/cases?category=price&sort=age"),
        ("manager", "/cases?status=in_analysis&min_amount=5000"),
        ("manager", "/cases?page=40"),
        ("manager", "/cases?client=client%20000123"),
        ("manager", "/dashboard"),
        ("accountant", "/approvals"),
        ("sales", "/my"),
    ];
    let mut out = vec![];
    for (role, path) in pages {
        let token = &tokens.iter().find(|t| t.0 == *role).expect("signed in").1;
        let mut times = Vec::with_capacity(requests);
        let mut bytes = 0;
        for i in 0..requests + 3 {
            let req = hyper::Request::get(format!("http://{addr}{path}")).header("cookie", format!("{}={token}", crate::web::session::COOKIE)).body(http_body_util::Empty::new())?;
            let t = Instant::now();
            let resp = client.request(req).await.with_context(|| format!("GET {path}"))?;
            let status = resp.status();
            let body = resp.into_body().collect().await.with_context(|| format!("reading {path}"))?.to_bytes();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(status == hyper::StatusCode::OK, "GET {path} as {role} answered {status}");
            bytes = body.len();
            // The first three warm the caches and are not counted.
            if i >= 3 {
                times.push(ms);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        out.push(PageTiming { path: path.to_string(), role: role.to_string(), requests, median_ms: quantile(&times, 0.5), p95_ms: quantile(&times, 0.95), max_ms: times.last().copied().unwrap_or(0.0), bytes });
    }
    let _ = stop.send(());
    let _ = server.await;
    store.pool.close().await;
    Ok(WebBench {
        database: db.display().to_string(),
        cases,
        open_cases,
        invoices,
        generate_seconds,
        database_mib: std::fs::metadata(db).ok().map(|m| m.len() as f64 / 1_048_576.0),
        pages: out,
        peak_rss_mib: peak_rss_mib(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(|i| i as f64).collect();
        assert_eq!(quantile(&v, 0.5), 10.0);
        assert_eq!(quantile(&v, 0.95), 19.0);
        assert_eq!(quantile(&v, 1.0), 20.0);
        assert_eq!(quantile(&[7.0], 0.95), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_synthetic_company_is_the_same_every_run_and_spread_around_the_day() {
        let day: NaiveDate = "2026-06-15".parse().unwrap();
        let (_, c, a) = company(500, 20, day);
        let (_, _, b) = company(500, 20, day);
        assert_eq!(a, b);
        assert_eq!(c.len(), 20);
        assert!(a.iter().all(|i| i.due_date >= day - Duration::days(45) && i.due_date <= day + Duration::days(5)));
        assert!(a.iter().any(|i| i.due_date < day) && a.iter().any(|i| i.due_date > day));
    }
}

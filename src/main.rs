//! The `dispute-desk` command line: demo, import, ingest, drafts (the
//! approval gate), send, cases (list, show, move, assign), tasks, remind,
//! messages, outbox, audit, eval, gen, bench, serve, status, web, user,
//! api, apikey and webhooks.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dispute_desk::config::Config;
use dispute_desk::domain::EmailAddress;
use dispute_desk::flow::approve;
use dispute_desk::llm::openai::LlmClient;
use dispute_desk::mail::smtp::SmtpSender;
use dispute_desk::store::audit::{self, Verdict};
use dispute_desk::{app, eval};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "dispute-desk", version, about = "Turns client mail about invoices into routed dispute cases and drafts that wait for a person's approval")]
struct Cli {
    /// Configuration file (TOML). Default: $DISPUTE_DESK_CONFIG, then ./dispute-desk.toml if present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data folder for the default SQLite database (overrides the configuration).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of text where a command supports it.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Import the bundled demo company into a fresh data folder, ingest its mail and show what needs a person.
    Demo {
        /// Folder of the demo company (corpus format).
        #[arg(long, default_value = "demo")]
        company: PathBuf,
    },
    /// Import a corpus folder (users.csv, clients.csv, invoices.csv), or one file: `import users|clients|invoices|payments FILE`,
    /// or e-invoices: `import einvoice FILE|DIR` (Factur-X/ZUGFeRD PDF, CII or UBL XML).
    Import {
        /// A corpus folder, or users|clients|invoices|payments|einvoice.
        what: String,
        /// The CSV file when WHAT is a kind; a file or a folder for einvoice.
        file: Option<PathBuf>,
        /// einvoice: create a client for a buyer that matches none (default: refuse that file).
        #[arg(long)]
        create_clients: bool,
    },
    /// Ingest one .eml file or a folder of them (outbound/ folders count as our sent mail) and run the flow.
    Ingest {
        path: PathBuf,
        /// Mark every message as sent by us (threads replies to it).
        #[arg(long)]
        sent: bool,
    },
    /// Drafts waiting for a person: list, show, approve, reject, edit.
    Drafts {
        #[command(subcommand)]
        cmd: DraftsCmd,
    },
    /// Send the approved messages in the outbox through SMTP.
    Send,
    /// Cases: list and show.
    Cases {
        #[command(subcommand)]
        cmd: CasesCmd,
    },
    /// Tasks for people: call a client, check a payment, issue a credit note, escalations...
    Tasks {
        /// User id or email.
        #[arg(long)]
        owner: Option<String>,
        /// open | done | all
        #[arg(long, default_value = "open")]
        status: String,
    },
    /// The daily pass as of a date: reminder drafts and tasks (dunning), SLA escalations, priority refresh.
    /// Safe to run several times a day: what was done for a date is not done again.
    Remind {
        /// The day to run for (YYYY-MM-DD). Default: today.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
    /// Messages: list by queue (unlinked, ignored, failed).
    Messages {
        /// unlinked | ignored | failed | all
        #[arg(default_value = "unlinked")]
        queue: String,
    },
    /// The outbox: list, or requeue a failed/uncertain row after checking the Sent folder.
    Outbox {
        #[command(subcommand)]
        cmd: Option<OutboxCmd>,
    },
    /// Check the audit trail's hash chain.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Measure the flow on a labelled corpus (fresh temporary database).
    Eval {
        corpus: PathBuf,
        /// Classify with the configured model ([llm] provider = "openai"); default: the rules.
        #[arg(long)]
        llm: bool,
    },
    /// The model: check the configured server, or sum the recorded calls.
    Llm {
        #[command(subcommand)]
        cmd: LlmCmd,
    },
    /// Write a synthetic company in the corpus format (users, clients, invoices, outbound, inbound, labels).
    Gen {
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value_t = 2_000)]
        invoices: usize,
        #[arg(long, default_value_t = 2_000)]
        messages: usize,
        out_dir: PathBuf,
    },
    /// Serve the web desk (login, approvals, cases, dashboard, /healthz, /metrics).
    Web {
        /// Address to listen on (default: web.listen, 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// People who sign in to the web desk: add one, or set a password.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Benchmarks that print numbers (fresh temporary database each).
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// Watch the configured mailboxes and send the approved outbox, until SIGINT/SIGTERM.
    Serve,
    /// Health of each watched mailbox: state, last successful sync, last error, checkpoint.
    Status,
    /// Serve the JSON API (/api/v1, OpenAPI at /api/v1/openapi.json) alone.
    Api {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
    },
    /// API keys: create (prints the key once), list, revoke.
    Apikey {
        #[command(subcommand)]
        cmd: ApikeyCmd,
    },
    /// Webhooks: deliver (one pass), log, retry a failed delivery.
    Webhooks {
        #[command(subcommand)]
        cmd: WebhooksCmd,
    },
}

#[derive(Subcommand)]
enum ApikeyCmd {
    Create {
        /// The user the key acts as (id or email); their role limits it.
        #[arg(long)]
        user: String,
        /// read | write
        #[arg(long)]
        scope: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    List,
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum WebhooksCmd {
    /// One pass: queue new events, POST what is due.
    Deliver,
    /// The delivery log, newest first.
    Log {
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a failed delivery back in the queue.
    Retry { id: i64 },
}

#[derive(Subcommand)]
enum LlmCmd {
    /// Send one tiny request: model, latency, whether structured outputs (json_schema) work.
    Check,
    /// Calls, tokens, latency and cost by day and task (prices from [llm.prices]).
    Usage,
}

#[derive(Subcommand)]
enum DraftsCmd {
    List {
        /// pending | approved | rejected | all
        #[arg(long, default_value = "pending")]
        status: String,
    },
    Show { id: i64 },
    Approve {
        id: i64,
        #[arg(long = "as", value_name = "USER")]
        user: String,
    },
    Reject {
        id: i64,
        #[arg(long = "as", value_name = "USER")]
        user: String,
        #[arg(long)]
        reason: String,
    },
    Edit {
        id: i64,
        /// File with the new text of the draft.
        #[arg(long)]
        file: PathBuf,
        #[arg(long = "as", value_name = "USER")]
        user: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user. The password is read from --password-file, else from
    /// the first line of standard input; it is never printed.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// accountant | sales | technical | manager
        #[arg(long)]
        role: String,
        /// User id (default: U- and the email's local part).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Set a user's password (ends their sessions); read as for `add`.
    Passwd {
        /// User id or email.
        user: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// The password from a file or standard input (first line, newline dropped).
fn read_password(file: Option<&Path>) -> Result<String> {
    let text = match file {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
            line
        }
    };
    let p = text.lines().next().unwrap_or("").to_string();
    if p.is_empty() {
        bail!("no password given (use --password-file FILE or give it on standard input)");
    }
    Ok(p)
}

#[derive(Subcommand)]
enum BenchCmd {
    /// The whole flow on generated mail (or CORPUS), beside mail-parser alone on the same bytes.
    Ingest {
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// A corpus folder to use instead of generated mail.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Run on a fresh database of this PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/postgres) instead of SQLite.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Latency of the web desk's pages (open-case list, dashboard, approvals, my cases) over HTTP on a large SQLite database, generated once into DB.
    Web {
        /// The SQLite file to use; generated when it holds no cases, reused otherwise.
        #[arg(long, default_value = "target/bench-desk.db")]
        db: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        cases: usize,
        #[arg(long, default_value_t = 1_000_000)]
        invoices: usize,
        /// Default: one client per 20 cases.
        #[arg(long)]
        clients: Option<usize>,
        /// Timed requests per page (after 3 warm-up ones).
        #[arg(long, default_value_t = 100)]
        requests: usize,
    },
    /// The daily reminder pass on a synthetic company of open invoices.
    Remind {
        #[arg(long, default_value_t = 10_000)]
        invoices: usize,
        #[arg(long, default_value_t = 800)]
        clients: usize,
        /// The day to run for (YYYY-MM-DD). Default: today.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
}

#[derive(Subcommand)]
enum CasesCmd {
    List {
        #[arg(long)]
        status: Option<String>,
        /// User id or email.
        #[arg(long)]
        owner: Option<String>,
    },
    Show { id: i64 },
    /// Move a case to another status (policies/statuses.toml says who may, and what it needs).
    Move {
        id: i64,
        /// open | in_analysis | waiting_client | adjustment_approved | refused | resolved
        status: String,
        #[arg(long = "as", value_name = "USER")]
        user: String,
        #[arg(long)]
        reason: Option<String>,
        /// The agreed amount of an adjustment, e.g. 1250.00
        #[arg(long)]
        amount: Option<String>,
        /// The day of the move, for the deadline (YYYY-MM-DD). Default: today.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
    /// Give a case to another person (managers only).
    Assign {
        id: i64,
        /// The new owner (user id or email).
        owner: String,
        #[arg(long = "as", value_name = "USER")]
        user: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum OutboxCmd {
    List,
    Retry { id: i64 },
}

#[derive(Subcommand)]
enum AuditCmd {
    Verify,
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn when(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "-".into())
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DISPUTE_DESK_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let fail = |e: anyhow::Error| -> ! {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    };
    let mut cfg = Config::load(cli.config.as_deref()).unwrap_or_else(|e| fail(e.into()));
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
        cfg.database_url = None;
    }
    // Before the runtime exists, so that every thread inherits it (see `cpu`).
    if dispute_desk::cpu::wanted(cfg.one_cpu, is_batch_flow(&cli.cmd), flow_on_sqlite_rules(&cli.cmd, &cfg)) {
        match dispute_desk::cpu::pin_current_thread() {
            Ok(cpu) => tracing::info!(cpu, "the flow's threads are kept on one CPU (one_cpu = false turns this off)"),
            Err(e) => tracing::warn!(error = %e, "running on every CPU"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| fail(anyhow::anyhow!("cannot start the runtime: {e}")));
    if let Err(e) = rt.block_on(run(cli, cfg)) {
        fail(e);
    }
}

/// The flow's batch commands: they run the pipeline over many messages at once.
fn is_batch_flow(cmd: &Cmd) -> bool {
    matches!(cmd, Cmd::Demo { .. } | Cmd::Ingest { .. } | Cmd::Eval { .. } | Cmd::Bench { cmd: BenchCmd::Ingest { .. } })
}

/// Whether the command's flow runs on SQLite with the local rules.
fn flow_on_sqlite_rules(cmd: &Cmd, cfg: &Config) -> bool {
    match cmd {
        // Both on a fresh temporary SQLite database.
        Cmd::Eval { llm, .. } => !llm,
        Cmd::Bench { cmd: BenchCmd::Ingest { postgres, .. } } => postgres.is_none() && !cfg.llm.enabled(),
        _ => dispute_desk::store::Backend::of_url(&cfg.database_url()) == dispute_desk::store::Backend::Sqlite && !cfg.llm.enabled(),
    }
}

async fn run(cli: Cli, mut cfg: Config) -> Result<()> {
    match cli.cmd {
        Cmd::Demo { company } => demo(cfg, &company, cli.json).await,
        Cmd::Gen { clients, invoices, messages, out_dir } => {
            let g = dispute_desk::gen::generate(&out_dir, clients, invoices, messages)?;
            if cli.json {
                return print_json(&g);
            }
            println!("wrote {}: {} clients, {} invoices, {} outbound and {} inbound messages ({:.1} MB)", out_dir.display(), g.clients, g.invoices, g.outbound, g.inbound, g.bytes as f64 / 1e6);
            Ok(())
        }
        Cmd::Bench { cmd: BenchCmd::Ingest { messages, corpus, postgres } } => {
            let b = dispute_desk::bench::ingest(&cfg, messages, corpus.as_deref(), postgres.as_deref()).await?;
            if cli.json {
                return print_json(&b);
            }
            let cpus = match (b.one_cpu, b.ahead_cpu) {
                (Some(c), Some(a)) => format!("flow on cpu {c}, look-ahead on cpu {a}"),
                (Some(c), None) => format!("on cpu {c} only"),
                _ => "on every CPU".into(),
            };
            println!("bench ingest ({}, {cpus}): {} messages, {:.1} MB", b.backend, b.messages, b.bytes as f64 / 1e6);
            println!("  mail-parser alone   {:>8.3} s   {:>8.0} msg/s", b.parse_only_seconds, b.parse_only_per_second);
            println!("  whole flow          {:>8.3} s   {:>8.0} msg/s   ({} cases, {} drafts)", b.end_to_end_seconds, b.end_to_end_per_second, b.cases, b.drafts);
            println!("  ratio               {:>8.1}x the parse-only floor", b.ratio);
            let per = |s: f64| s * 1e6 / b.messages.max(1) as f64;
            println!("  where the time goes (µs per message):");
            println!("    store raw (ingest)  {:>8.0}", per(b.store_raw_seconds));
            println!("    flow                {:>8.0}", per(b.flow_seconds));
            println!("    its pure stages timed alone on one thread: parse {:.0}, link {:.0}, classify {:.0}", per(b.stages.parse), per(b.stages.link), per(b.stages.classify));
            println!("  classified ahead    {} kept, {} classified again (the link in order found other facts)", b.guesses_kept, b.guesses_again);
            println!("  peak RSS            {}", b.peak_rss_mib.map(|m| format!("{m:.1} MiB")).unwrap_or_else(|| "-".into()));
            Ok(())
        }
        Cmd::Web { listen } => {
            let (store, policy) = app::open(&cfg).await?;
            let addr = listen.unwrap_or_else(|| cfg.web.listen.clone());
            let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let state = dispute_desk::web::WebState::new(store, policy, cfg).context("loading the web templates")?;
            eprintln!("dispute-desk web: listening on http://{}", listener.local_addr()?);
            dispute_desk::web::serve(listener, state, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving the web desk")
        }
        Cmd::User { cmd } => {
            let (store, _) = app::open(&cfg).await?;
            match cmd {
                UserCmd::Add { email, name, role, id, password_file } => {
                    let email = EmailAddress::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
                    let role: dispute_desk::domain::Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
                    let pw = read_password(password_file.as_deref())?;
                    let u = dispute_desk::web::auth::add_user(&store, id.as_deref(), &email, &name, role, &pw).await?;
                    println!("user {} added: {} <{}> ({})", u.id, u.name, u.email, u.role);
                }
                UserCmd::Passwd { user, password_file } => {
                    let pw = read_password(password_file.as_deref())?;
                    let u = dispute_desk::web::auth::set_password(&store, &user, &pw).await?;
                    println!("password of {} <{}> changed; their sessions were ended", u.id, u.email);
                }
            }
            Ok(())
        }
        Cmd::Bench { cmd: BenchCmd::Web { db, cases, invoices, clients, requests } } => {
            if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let spec = dispute_desk::gen_desk::DeskSpec { cases, invoices, clients: clients.unwrap_or((cases / 20).max(1)) };
            let b = dispute_desk::bench::web(&cfg, &db, spec, requests.max(1)).await?;
            if cli.json {
                return print_json(&b);
            }
            println!("bench web: {} cases ({} open), {} invoices in {}{}", b.cases, b.open_cases, b.invoices, b.database, b.database_mib.map(|m| format!(" ({m:.0} MiB)")).unwrap_or_default());
            if let Some(s) = b.generate_seconds {
                println!("  generated in        {s:>8.1} s");
            }
            println!("  {:<44} {:>10} {:>10} {:>10} {:>9}", "page (role)", "median ms", "p95 ms", "max ms", "bytes");
            for p in &b.pages {
                println!("  {:<44} {:>10.1} {:>10.1} {:>10.1} {:>9}", format!("{} ({})", p.path, p.role), p.median_ms, p.p95_ms, p.max_ms, p.bytes);
            }
            println!("  peak RSS            {}", b.peak_rss_mib.map(|m| format!("{m:.1} MiB")).unwrap_or_else(|| "-".into()));
            Ok(())
        }
        Cmd::Bench { cmd: BenchCmd::Remind { invoices, clients, date } } => {
            let day = date.unwrap_or_else(|| chrono::Local::now().date_naive());
            let b = dispute_desk::bench::remind(&cfg, invoices, clients, day).await?;
            if cli.json {
                return print_json(&b);
            }
            println!("bench remind: {} open invoices, {} clients, as of {}", b.invoices, b.clients, b.date);
            println!("  import              {:>8.3} s", b.import_seconds);
            println!("  first run           {:>8.3} s   {} drafts, {} tasks, {} levels skipped (catch-up)", b.first_run_seconds, b.drafts, b.tasks, b.skipped);
            println!("  same day again      {:>8.3} s   nothing new (checked)", b.same_day_seconds);
            println!("  next day            {:>8.3} s   {} drafts", b.next_day_seconds, b.next_day_drafts);
            println!("  peak RSS            {}", b.peak_rss_mib.map(|m| format!("{m:.1} MiB")).unwrap_or_else(|| "-".into()));
            Ok(())
        }
        Cmd::Eval { corpus, llm } => {
            if llm && !cfg.llm.enabled() {
                bail!("eval --llm needs [llm] provider = \"openai\" (or DISPUTE_DESK_LLM_PROVIDER=openai) and a base_url and model");
            }
            if !llm {
                cfg.llm.provider = "rules".into();
            }
            // Eval measures classification; the drafts are not scored.
            cfg.llm.draft = false;
            if !corpus.join("labels.csv").exists() {
                bail!("{} has no labels.csv: eval needs a labelled corpus (see corpus FORMAT.md)", corpus.display());
            }
            let r = eval::run(&corpus, &cfg).await?;
            if cli.json {
                print_json(&r)
            } else {
                print!("{}", eval::render(&r));
                Ok(())
            }
        }
        Cmd::Import { what, file, create_clients } => {
            let (store, _) = app::open(&cfg).await?;
            match file {
                Some(f) if what == "einvoice" => {
                    let r = app::import_einvoices(&store, &f, create_clients).await?;
                    if cli.json {
                        return print_json(&r);
                    }
                    for i in &r.imported {
                        println!("{}: {} {} for client {} (matched by {}), due {} {}", i.file, i.kind, i.number, i.client_id, i.matched_by, i.amount_due.map(|m| m.to_string()).unwrap_or_else(|| "-".into()), i.currency);
                    }
                    for (f, why) in &r.no_structured_data {
                        println!("{f}: no structured data ({why}): nothing imported");
                    }
                    for (f, why) in &r.refused {
                        println!("{f}: refused: {why}");
                    }
                    println!("{} files: {} e-invoices imported, {} without structured data, {} refused ({:.3} s)", r.files, r.imported.len(), r.no_structured_data.len(), r.refused.len(), r.seconds);
                    if !r.refused.is_empty() {
                        bail!("{} file(s) refused", r.refused.len());
                    }
                }
                Some(f) if what == "payments" => {
                    let r = app::import_payments(&store, &f).await?;
                    if cli.json {
                        return print_json(&r);
                    }
                    println!(
                        "recorded {} payments ({} already imported): {} invoices paid, {} partly paid; {} reminder drafts cancelled; resolving proposed for cases {:?}",
                        r.recorded,
                        r.already_imported,
                        r.paid.len(),
                        r.partly_paid.len(),
                        r.cancelled_drafts.len(),
                        r.resolve_proposed
                    );
                }
                Some(f) => {
                    let n = app::import_file(&store, &what, &f).await?;
                    println!("imported {n} {what} from {}", f.display());
                }
                None => {
                    let n = app::import_corpus(&store, Path::new(&what)).await?;
                    println!("imported {} users, {} clients, {} invoices", n.users, n.clients, n.invoices);
                }
            }
            Ok(())
        }
        Cmd::Tasks { owner, status } => {
            let (store, _) = app::open(&cfg).await?;
            let owner = match owner {
                Some(o) => Some(store.user(&o).await?.id),
                None => None,
            };
            let status = (status != "all").then_some(status);
            let rows = store.tasks(None, owner.as_deref(), status.as_deref()).await?;
            if cli.json {
                return print_json(&rows);
            }
            for t in rows {
                let first = t.note.lines().next().unwrap_or("");
                println!("{:>5} {:<16} {:<5} owner {:<6} due {:<10} case {:<5} {}", t.id, t.kind, t.status, t.owner_id.as_deref().unwrap_or("-"), t.due_date.as_deref().unwrap_or("-"), t.case_id.map(|c| c.to_string()).unwrap_or("-".into()), first);
            }
            Ok(())
        }
        Cmd::Remind { date } => {
            let (store, policy) = app::open(&cfg).await?;
            let day = date.unwrap_or_else(|| chrono::Local::now().date_naive());
            let r = app::remind(&cfg, &store, &policy, day).await?;
            if cli.json {
                return print_json(&r);
            }
            println!(
                "{}: {} unpaid invoices looked at; {} reminder drafts (pending approval{}), {} tasks, {} levels skipped, {} invoices paused; {} cases escalated, {} re-prioritised ({:.2} s)",
                r.date,
                r.invoices_considered,
                r.drafts.len(),
                if r.pre_approved.is_empty() { String::new() } else { format!(", {} pre-approved", r.pre_approved.len()) },
                r.tasks.len(),
                r.skipped,
                r.blocked,
                r.sla.escalated.len(),
                r.sla.reprioritised,
                r.seconds
            );
            Ok(())
        }
        Cmd::Ingest { path, sent } => {
            let (store, policy) = app::open(&cfg).await?;
            let mut p = app::pipeline(&cfg, store, policy).await?;
            if cli.json {
                return print_json(&app::ingest_path(&mut p, &path, sent).await?);
            }
            // A line per message as its batch commits, then the totals: the
            // outcomes are not kept, so a folder of any size fits in memory.
            let r = app::ingest_path_each(&mut p, &path, sent, |o| {
                println!(
                    "  message {:>5} {:<3} {:<15} {:<9} case {:<5} owner {:<6} invoices {}",
                    o.message,
                    o.direction,
                    o.category.as_deref().unwrap_or("-"),
                    o.disposition,
                    o.case_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    o.owner_id.as_deref().unwrap_or("-"),
                    if o.invoices.is_empty() { "-".into() } else { o.invoices.join(",") }
                )
            })
            .await?;
            println!("{} files: {} stored, {} already known; {} processed in {:.2} s", r.files, r.stored, r.duplicates, r.processed, r.seconds);
            let failed = p.store.messages_where(None, Some("failed"), None).await?;
            if !failed.is_empty() {
                println!("{} message(s) could not be processed: see `dispute-desk messages failed`", failed.len());
            }
            Ok(())
        }
        Cmd::Drafts { cmd } => drafts(&cfg, cmd, cli.json).await,
        Cmd::Send => {
            let (store, _) = app::open(&cfg).await?;
            let sender = SmtpSender::new(&cfg.smtp).context("configuring SMTP")?;
            let r = dispute_desk::serve::send_once(&store, &sender, &cfg).await?;
            println!("sent {}, to retry {}, failed {}", r.sent, r.retried, r.failed);
            Ok(())
        }
        Cmd::Cases { cmd } => cases(&cfg, cmd, cli.json).await,
        Cmd::Serve => dispute_desk::serve::run(cfg, dispute_desk::serve::signals()).await,
        Cmd::Status => {
            let (store, _) = app::open(&cfg).await?;
            let rows = store.mailbox_health().await?;
            if cli.json {
                return print_json(&rows);
            }
            let timing = cfg.cluster.timing();
            let now_ms = store.db_now_ms().await?;
            let instances = store.instances(timing.ttl_ms()).await?;
            if rows.is_empty() {
                println!("no mailbox has been watched yet (configure [[mailbox]] and run `dispute-desk serve`)");
            }
            for h in rows {
                println!(
                    "{:<16} {:<12} last sync {}  checkpoint {}  attempt {}{}",
                    h.mailbox,
                    h.state,
                    when(h.last_sync_at),
                    match (h.uidvalidity, h.last_uid) {
                        (Some(v), Some(u)) => format!("{v}/{u}"),
                        _ => "-".into(),
                    },
                    h.attempt,
                    h.last_error.map(|e| format!("\n{:<16} last error at {}: {e}", "", when(h.last_error_at))).unwrap_or_default()
                );
                match (&h.holder, h.lease_expires_at) {
                    (Some(holder), Some(exp)) if exp > now_ms => println!("{:<16} watched by instance {holder} (lease expires in {:.1} s)", "", (exp - now_ms) as f64 / 1000.0),
                    (Some(holder), Some(_)) => println!("{:<16} lease free (last held by instance {holder}); an instance takes it within {} s", "", cfg.cluster.takeover_secs),
                    _ => {}
                }
            }
            for i in instances.iter().filter(|i| i.alive || i.stopped_at.is_none()) {
                println!(
                    "instance {} on {} pid {}: {}, started {}",
                    i.id,
                    i.host,
                    i.pid,
                    if i.alive { format!("alive (heartbeat {:.1} s ago)", (now_ms - i.heartbeat_at) as f64 / 1000.0) } else { format!("dead (no heartbeat for {:.0} s)", (now_ms - i.heartbeat_at) as f64 / 1000.0) },
                    when(Some(i.started_at / 1000))
                );
            }
            Ok(())
        }
        Cmd::Llm { cmd } => llm(&cfg, cmd, cli.json).await,
        Cmd::Messages { queue } => {
            let (store, _) = app::open(&cfg).await?;
            let rows = match queue.as_str() {
                "unlinked" | "ignored" => store.messages_where(Some(&queue), None, None).await?,
                "failed" => store.messages_where(None, Some("failed"), None).await?,
                "all" => store.messages_where(None, None, None).await?,
                other => bail!("unknown queue {other:?}: expected unlinked, ignored, failed or all"),
            };
            if cli.json {
                return print_json(&rows);
            }
            for m in rows {
                println!(
                    "{:>5} {} {:<3} {:<10} {:<15} from {:<35} {}{}",
                    m.id,
                    when(m.date_at),
                    m.direction,
                    m.disposition.as_deref().unwrap_or(&m.state),
                    m.category.as_deref().unwrap_or("-"),
                    m.from_addr.as_deref().unwrap_or("-"),
                    m.subject.as_deref().unwrap_or(""),
                    m.last_error.map(|e| format!("  [error: {e}]")).unwrap_or_default()
                );
            }
            Ok(())
        }
        Cmd::Outbox { cmd } => {
            let (store, _) = app::open(&cfg).await?;
            match cmd {
                Some(OutboxCmd::Retry { id }) => {
                    store.outbox_requeue(id).await?;
                    println!("outbox row {id} queued again");
                }
                Some(OutboxCmd::List) | None => {
                    let rows = store.outbox().await?;
                    if cli.json {
                        return print_json(&rows);
                    }
                    for r in rows {
                        println!("{:>4} draft {:<5} {:<9} attempts {} to {} {}", r.id, r.draft_id, r.status, r.attempts, r.to_addrs, r.last_error.unwrap_or_default());
                    }
                }
            }
            Ok(())
        }
        Cmd::Api { listen } => {
            let (store, policy) = app::open(&cfg).await?;
            let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!("dispute-desk api on http://{}/api/v1 (openapi: /api/v1/openapi.json)", listener.local_addr()?);
            let state = dispute_desk::api::ApiState { store, policy: std::sync::Arc::new(policy), cfg: std::sync::Arc::new(cfg) };
            dispute_desk::api::serve(listener, state, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(())
        }
        Cmd::Apikey { cmd } => {
            let (store, _) = app::open(&cfg).await?;
            match cmd {
                ApikeyCmd::Create { user, scope, name } => {
                    let scope = dispute_desk::store::apikeys::Scope::parse(&scope).with_context(|| format!("unknown scope {scope:?}: expected read or write"))?;
                    let k = store.create_api_key(&user, scope, &name).await?;
                    println!("api key {} for {} ({}): {}", k.key.id, k.key.user_id, scope.as_str(), k.secret);
                    println!("keep it now: it is stored hashed and cannot be shown again");
                }
                ApikeyCmd::List => {
                    let keys = store.api_keys().await?;
                    if cli.json {
                        return print_json(&keys);
                    }
                    for k in keys {
                        println!("{:>4} ddk_{}_… {:<6} {:<5} {:<20} created {} last used {}{}", k.id, k.prefix, k.user_id, k.scope.as_str(), k.name, when(Some(k.created_at)), when(k.last_used_at), k.revoked_at.map(|r| format!(" REVOKED {}", when(Some(r)))).unwrap_or_default());
                    }
                }
                ApikeyCmd::Revoke { id } => {
                    store.revoke_api_key(id).await?;
                    println!("api key {id} revoked");
                }
            }
            Ok(())
        }
        Cmd::Webhooks { cmd } => {
            let (store, _) = app::open(&cfg).await?;
            use dispute_desk::webhooks;
            for w in &cfg.webhooks {
                let bad = w.unknown_events();
                if !bad.is_empty() {
                    bail!("webhook {}: unknown events {:?} (known: {})", w.key(), bad, webhooks::EVENT_TYPES.join(", "));
                }
            }
            match cmd {
                WebhooksCmd::Deliver => {
                    let client = webhooks::client()?;
                    let r = webhooks::deliver_once(&store, &client, &cfg.webhooks, &webhooks::Settings::default()).await?;
                    println!("{} events queued, {} delivered, {} to retry, {} given up", r.enqueued, r.delivered, r.retried, r.gave_up);
                }
                WebhooksCmd::Log { endpoint, limit } => {
                    let rows = webhooks::deliveries(&store, endpoint.as_deref(), limit).await?;
                    if cli.json {
                        return print_json(&rows);
                    }
                    for d in rows {
                        println!("{:>5} {:<30} {:<10} {:<15} {:<9} attempts {} {}", d.id, d.endpoint, d.event_id, d.event_type, d.status, d.attempts, d.last_error.unwrap_or_default());
                    }
                }
                WebhooksCmd::Retry { id } => {
                    webhooks::retry(&store, id).await?;
                    println!("webhook delivery {id} queued again");
                }
            }
            Ok(())
        }
        Cmd::Audit { cmd: AuditCmd::Verify } => {
            let (store, _) = app::open(&cfg).await?;
            match audit::verify(&store).await? {
                Verdict::Intact { rows } => {
                    println!("audit trail intact: {rows} events");
                    Ok(())
                }
                Verdict::Broken { row_id, reason } => bail!("audit trail broken at event {row_id}: {reason}"),
            }
        }
    }
}

async fn llm(cfg: &Config, cmd: LlmCmd, json: bool) -> Result<()> {
    match cmd {
        LlmCmd::Check => {
            if !cfg.llm.enabled() {
                bail!("no model configured: set [llm] provider = \"openai\", base_url and model (or DISPUTE_DESK_LLM_PROVIDER, _BASE_URL, _MODEL)");
            }
            let (store, _) = app::open(cfg).await?;
            let client = LlmClient::new(cfg.llm.clone(), Some(store)).context("configuring the llm client")?;
            let r = client.check().await.with_context(|| format!("llm check against {}", cfg.llm.base_url))?;
            if json {
                return print_json(&r);
            }
            println!("server     {}", r.base_url);
            println!("model      {}", r.model);
            println!("latency    {} ms ({} input + {} output tokens)", r.latency_ms, r.input_tokens, r.output_tokens);
            match &r.schema_error {
                None => println!("json_schema structured outputs: yes"),
                Some(e) => println!("json_schema structured outputs: no ({e}); set [llm] structured = \"json_object\""),
            }
            Ok(())
        }
        LlmCmd::Usage => {
            let (store, _) = app::open(cfg).await?;
            let lines = store.llm_usage().await?;
            let cost = |l: &dispute_desk::store::llm_calls::UsageLine| {
                cfg.llm.prices.get(&l.model).map(|p| (l.input_tokens as f64 * p.input_per_m + l.output_tokens as f64 * p.output_per_m) / 1_000_000.0)
            };
            if json {
                let rows: Vec<_> = lines.iter().map(|l| serde_json::json!({"usage": l, "cost": cost(l)})).collect();
                return print_json(&rows);
            }
            if lines.is_empty() {
                println!("no llm calls recorded");
                return Ok(());
            }
            println!("{:<10} {:<9} {:<28} {:>6} {:>5} {:>7} {:>6} {:>9} {:>10} {:>11} {:>8} {:>10}", "day", "task", "model", "calls", "ok", "invalid", "errors", "fallbacks", "in tokens", "out tokens", "avg ms", "cost");
            let (mut tin, mut tout, mut tcost, mut priced) = (0, 0, 0.0, false);
            for l in &lines {
                let c = cost(l);
                tin += l.input_tokens;
                tout += l.output_tokens;
                if let Some(c) = c {
                    tcost += c;
                    priced = true;
                }
                let avg = if l.calls > 0 { l.latency_ms_total / l.calls } else { 0 };
                println!(
                    "{:<10} {:<9} {:<28} {:>6} {:>5} {:>7} {:>6} {:>9} {:>10} {:>11} {:>8} {:>10}",
                    l.day, l.task, l.model, l.calls, l.ok, l.invalid, l.errors, l.fallbacks, l.input_tokens, l.output_tokens, avg,
                    c.map(|c| format!("{c:.4}")).unwrap_or_else(|| "-".into())
                );
            }
            println!("total: {tin} input tokens, {tout} output tokens{}", if priced { format!(", cost {tcost:.4}") } else { String::new() });
            Ok(())
        }
    }
}

async fn drafts(cfg: &Config, cmd: DraftsCmd, json: bool) -> Result<()> {
    let (store, policy) = app::open(cfg).await?;
    let from = EmailAddress::parse(&cfg.company.from_address).context("company.from_address in the configuration")?;
    match cmd {
        DraftsCmd::List { status } => {
            let st = (status != "all").then_some(status.as_str());
            let rows = store.drafts(st, None).await?;
            if json {
                return print_json(&rows);
            }
            for d in rows {
                println!("{:>5} {:<8} {:<8} case {:<5} {} to {:<35} {}", d.id, d.kind, d.status, d.case_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into()), when(Some(d.created_at)), d.to_addr.as_deref().unwrap_or("(internal)"), d.subject);
            }
        }
        DraftsCmd::Show { id } => {
            let d = store.draft(id).await?;
            if json {
                return print_json(&d);
            }
            println!("draft {} ({}, {}, template {}, language {})", d.id, d.kind, d.status, d.template, d.language);
            println!("To: {}\nSubject: {}\n\n{}", d.to_addr.as_deref().unwrap_or("(internal)"), d.subject, d.body);
            if let Some(by) = d.decided_by {
                println!("\n-- {} by {} at {}{}", d.status, by, when(d.decided_at), d.reason.map(|r| format!(": {r}")).unwrap_or_default());
            }
        }
        DraftsCmd::Approve { id, user } => {
            let u = store.user(&user).await?;
            let a = approve::approve(&store, &policy, &from, &cfg.company.name, id, &u).await?;
            match a.outbox_id {
                Some(o) => println!("draft {id} approved by {}: queued for sending (outbox {o}); run `dispute-desk send`", u.id),
                None => println!("draft {id} approved by {} (internal, nothing to send)", u.id),
            }
        }
        DraftsCmd::Reject { id, user, reason } => {
            let u = store.user(&user).await?;
            approve::reject(&store, &policy, id, &u, &reason).await?;
            println!("draft {id} rejected by {}", u.id);
        }
        DraftsCmd::Edit { id, file, user } => {
            let u = store.user(&user).await?;
            let body = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            approve::edit(&store, &policy, id, &u, &body).await?;
            println!("draft {id} edited by {} (previous text kept)", u.id);
        }
    }
    Ok(())
}

async fn cases(cfg: &Config, cmd: CasesCmd, json: bool) -> Result<()> {
    let (store, policy) = app::open(cfg).await?;
    match cmd {
        CasesCmd::Move { id, status, user, reason, amount, date } => {
            let user = store.user(&user).await?;
            let to: dispute_desk::domain::Status = status.parse()?;
            let amount = amount.map(|a| dispute_desk::domain::Money::parse(&a)).transpose()?;
            let day = date.unwrap_or_else(|| chrono::Local::now().date_naive());
            let req = dispute_desk::flow::workflow::MoveRequest { to, role: user.role, reason: reason.as_deref(), amount };
            let m = dispute_desk::flow::workflow::move_case(&store, &policy, id, &user, &req, day).await?;
            if json {
                return print_json(&m);
            }
            println!("case {id}: {} -> {}{}", m.from, m.to, m.deadline.map(|d| format!(", deadline {d}")).unwrap_or_default());
            if let Some(t) = m.task_id {
                println!("task {t} created for an accountant: issue the credit note or corrected invoice");
            }
            if !m.lifted_blocks.is_empty() {
                println!("reminders resume on this case's invoices ({} blocks lifted)", m.lifted_blocks.len());
            }
        }
        CasesCmd::Assign { id, owner, user, reason } => {
            let manager = store.user(&user).await?;
            let new_owner = store.user(&owner).await?;
            dispute_desk::flow::workflow::reassign(&store, id, &manager, &new_owner, reason.as_deref()).await?;
            println!("case {id} now owned by {} ({})", new_owner.id, new_owner.role);
        }
        CasesCmd::List { status, owner } => {
            let owner = match owner {
                Some(o) => Some(store.user(&o).await?.id),
                None => None,
            };
            let rows = store.cases(status.as_deref(), owner.as_deref()).await?;
            if json {
                return print_json(&rows);
            }
            for c in rows {
                println!(
                    "{:>5}{} {:<8} {:<14} {:<15} prio {:>3} owner {:<5} {:<32} {} EUR {}",
                    c.id,
                    if c.escalated { "!" } else { " " },
                    c.kind,
                    c.status,
                    c.category,
                    c.priority,
                    c.owner_id.as_deref().unwrap_or("-"),
                    c.client_name,
                    dispute_desk::domain::Money(c.amount_cents),
                    c.invoices.join(",")
                );
            }
        }
        CasesCmd::Show { id } => {
            let c = store.case(id).await?;
            let msgs = store.messages_where(None, None, Some(id)).await?;
            let history = store.status_history(id).await?;
            let tasks = store.tasks(Some(id), None, None).await?;
            let drafts = store.drafts(None, Some(id)).await?;
            let events = audit::for_case(&store, id).await?;
            if json {
                return print_json(&serde_json::json!({"case": c, "messages": msgs, "status_history": history, "tasks": tasks, "drafts": drafts, "audit": events}));
            }
            println!("case {} — {} ({}) — {} — {}", c.id, c.client_name, c.client_id, c.kind, c.status);
            println!("category {}; owner {}; priority {} ({})", c.category, c.owner_id.as_deref().unwrap_or("-"), c.priority, c.priority_reason);
            if let Some(d) = &c.deadline {
                println!("deadline {d}{}", if c.escalated { " — PAST, escalated to a manager" } else { "" });
            }
            for i in &c.invoices {
                for b in store.blocks_of(i).await? {
                    println!("reminders on {i} paused: {} from {}{}", b.reason, b.from_date, b.until_date.map(|u| format!(" until {u}")).unwrap_or_default());
                }
            }
            println!("at stake {} EUR{}", dispute_desk::domain::Money(c.amount_cents), c.disputed_cents.map(|d| format!(", disputed {} EUR", dispute_desk::domain::Money(d))).unwrap_or_default());
            println!("invoices: {}", c.invoices.join(", "));
            println!("\nmessages:");
            for m in &msgs {
                println!("  {} {} {} {} — {}", m.id, when(m.date_at), m.direction, m.from_addr.as_deref().unwrap_or("-"), m.subject.as_deref().unwrap_or(""));
                if let Some(cls) = m.classification.as_deref().and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok()) {
                    println!("     classified {} ({}, confidence {}) because {}", cls["category"], cls["source"], cls["confidence"], cls["reasons"]);
                }
                println!("     linked by {} ({:.2})", m.link_method.as_deref().unwrap_or("-"), m.link_confidence.unwrap_or(0.0));
            }
            println!("\nstatus history:");
            for h in &history {
                println!("  {} {} -> {} by {}{}", when(Some(h.at)), h.from_status.as_deref().unwrap_or("(new)"), h.to_status, h.actor, h.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default());
            }
            println!("\ntasks:");
            for t in &tasks {
                println!("  {} {} {} owner {} {}", t.id, t.kind, t.status, t.owner_id.as_deref().unwrap_or("-"), t.note);
            }
            println!("\ndrafts:");
            for d in &drafts {
                println!("  {} {} {} {}", d.id, d.kind, d.status, d.subject);
            }
            println!("\naudit events:");
            for e in &events {
                println!("  {} {} {} {} {} {}", e.id, when(Some(e.at)), e.actor, e.entity, e.action, e.detail);
            }
        }
    }
    Ok(())
}

async fn demo(mut cfg: Config, company: &Path, json: bool) -> Result<()> {
    if !company.join("users.csv").exists() {
        bail!("demo company not found at {} (run from the repository root, or pass --company DIR)", company.display());
    }
    if cfg.database_url.is_none() && cfg.data_dir == Path::new("data") {
        cfg.data_dir = PathBuf::from("data/demo");
    }
    // A fresh demo each time: the demo's own SQLite database only.
    if cfg.database_url.is_none() {
        let db = cfg.data_dir.join("dispute-desk.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    } else {
        bail!("demo runs on its own SQLite database: unset database_url / DISPUTE_DESK_DATABASE_URL");
    }
    // The demo is offline whatever the configuration says: rules and templates.
    cfg.llm.provider = "rules".into();
    cfg.company.name = "Alpes Froid & Climatisation SAS".into();
    cfg.company.from_address = "comptabilite@alpes-froid.fr".into();
    cfg.company.signer = "Le service comptabilité".into();
    let (store, policy) = app::open(&cfg).await?;
    let n = app::import_corpus(&store, company).await?;
    // Demo only: every demo user signs in to the web desk with DEMO_PASSWORD.
    for u in store.users().await? {
        dispute_desk::web::auth::set_password(&store, &u.id, dispute_desk::web::auth::DEMO_PASSWORD).await?;
    }
    let mut p = app::pipeline(&cfg, store.clone(), policy).await?;
    let r = app::ingest_path(&mut p, company, false).await?;
    let cases = store.cases(None, None).await?;
    let drafts = store.drafts(Some("pending"), None).await?;
    let unlinked = store.messages_where(Some("unlinked"), None, None).await?;
    let ignored = store.messages_where(Some("ignored"), None, None).await?;
    if json {
        return print_json(&serde_json::json!({"imported": n, "ingest": {"files": r.files, "stored": r.stored, "seconds": r.seconds}, "cases": cases, "pending_drafts": drafts.len(), "unlinked": unlinked.len(), "ignored": ignored.len()}));
    }
    println!("dispute-desk demo — {}", cfg.company.name);
    println!("database: {}", cfg.database_url());
    println!("imported {} users, {} clients, {} invoices; ingested {} messages in {:.2} s\n", n.users, n.clients, n.invoices, r.files, r.seconds);
    let mut by: std::collections::BTreeMap<(String, String), (usize, i64)> = Default::default();
    for c in &cases {
        let e = by.entry((c.status.clone(), c.owner_id.clone().unwrap_or_else(|| "-".into()))).or_default();
        e.0 += 1;
        e.1 += c.amount_cents;
    }
    println!("OPEN CASES by status and owner");
    let users = store.users().await?;
    for ((status, owner), (count, cents)) in &by {
        let name = users.iter().find(|u| &u.id == owner).map(|u| format!("{} ({})", u.name, u.role)).unwrap_or_else(|| owner.clone());
        println!("  {status:<14} {name:<36} {count:>3} case(s), {} EUR at stake", dispute_desk::domain::Money(*cents));
    }
    println!("\nTOP CASES by priority");
    for c in cases.iter().take(8) {
        println!("  #{:<4} prio {:>3} {:<15} {:<34} {}", c.id, c.priority, c.category, c.client_name, c.invoices.join(", "));
    }
    println!("\nDRAFTS WAITING FOR APPROVAL: {}", drafts.len());
    for d in drafts.iter().take(10) {
        println!("  draft {:<4} {:<6} case {:<5} {}", d.id, d.kind, d.case_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into()), d.subject);
    }
    if drafts.len() > 10 {
        println!("  … and {} more: dispute-desk --data-dir {} drafts list", drafts.len() - 10, cfg.data_dir.display());
    }
    println!("\nUNLINKED MESSAGES (need a person): {}", unlinked.len());
    for m in &unlinked {
        println!("  message {:<4} from {} — {}", m.id, m.from_addr.as_deref().unwrap_or("-"), m.subject.as_deref().unwrap_or(""));
    }
    println!("\nNon-business mail set aside (no case): {}", ignored.len());
    println!("\nWEB DESK: dispute-desk --data-dir {} web   then open http://127.0.0.1:8080", cfg.data_dir.display());
    println!("  demo logins (password for all: {}):", dispute_desk::web::auth::DEMO_PASSWORD);
    for u in &users {
        println!("  {:<36} {}", u.email, u.role);
    }
    println!("\nNext: dispute-desk --data-dir {0} drafts show ID; drafts approve ID --as EMAIL; cases show ID", cfg.data_dir.display());
    Ok(())
}

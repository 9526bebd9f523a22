//! The `dispute-desk` command line: demo, import, ingest, drafts (the
//! approval gate), send, cases, messages, outbox, audit and eval.

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
    /// Import a corpus folder (users.csv, clients.csv, invoices.csv), or one file: `import users|clients|invoices FILE`.
    Import {
        /// A corpus folder, or users|clients|invoices.
        what: String,
        /// The CSV file when WHAT is a kind.
        file: Option<PathBuf>,
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
enum CasesCmd {
    List {
        #[arg(long)]
        status: Option<String>,
        /// User id or email.
        #[arg(long)]
        owner: Option<String>,
    },
    Show { id: i64 },
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

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DISPUTE_DESK_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
        cfg.database_url = None;
    }
    match cli.cmd {
        Cmd::Demo { company } => demo(cfg, &company, cli.json).await,
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
        Cmd::Import { what, file } => {
            let (store, _) = app::open(&cfg).await?;
            match file {
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
        Cmd::Ingest { path, sent } => {
            let (store, policy) = app::open(&cfg).await?;
            let mut p = app::pipeline(&cfg, store, policy).await?;
            let r = app::ingest_path(&mut p, &path, sent).await?;
            if cli.json {
                return print_json(&r);
            }
            println!("{} files: {} stored, {} already known; {} processed in {:.2} s", r.files, r.stored, r.duplicates, r.outcomes.len(), r.seconds);
            for o in &r.outcomes {
                println!(
                    "  message {:>5} {:<3} {:<15} {:<9} case {:<5} owner {:<6} invoices {}",
                    o.message,
                    o.direction,
                    o.category.as_deref().unwrap_or("-"),
                    o.disposition,
                    o.case_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    o.owner_id.as_deref().unwrap_or("-"),
                    if o.invoices.is_empty() { "-".into() } else { o.invoices.join(",") }
                );
            }
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
            let r = dispute_desk::flow::outbox::send_due(&store, &sender, cfg.send_max_attempts).await?;
            println!("sent {}, to retry {}, failed {}", r.sent, r.retried, r.failed);
            Ok(())
        }
        Cmd::Cases { cmd } => cases(&cfg, cmd, cli.json).await,
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
    let (store, _) = app::open(cfg).await?;
    match cmd {
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
                    "{:>5} {:<8} {:<14} {:<15} prio {:>3} owner {:<5} {:<32} {} EUR {}",
                    c.id,
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
    println!("\nNext: dispute-desk --data-dir {0} drafts show ID; drafts approve ID --as EMAIL; cases show ID", cfg.data_dir.display());
    Ok(())
}

//! app: the operations a user runs (import, ingest, send, demo), shared by the
//! CLI and the tests, wiring configuration, store, policies, classifier and
//! templates together.

use crate::config::Config;
use crate::flow::draft::Drafter;
use crate::flow::ingest::{self, Ingested};
use crate::flow::pipeline::{Outcome, Pipeline};
use crate::ledger;
use crate::flow::classify::Classifier;
use crate::llm::classify::LlmClassifier;
use crate::llm::draft::LlmDrafter;
use crate::llm::openai::LlmClient;
use crate::llm::rules::RulesClassifier;
use crate::mail::maildir;
use crate::policy::Policy;
use crate::store::Store;
use anyhow::{Context, Result};
use std::path::Path;

/// Opens the configured database (migrating it) and loads the policies.
pub async fn open(cfg: &Config) -> Result<(Store, Policy)> {
    let store = Store::open(&cfg.database_url()).await.context("opening the database")?;
    let policy = Policy::load(cfg.policies_dir.as_deref()).context("loading policies")?;
    Ok((store, policy))
}

/// The flow: the offline rules classifier and the templates by default; with
/// `[llm] provider = "openai"`, the model classifies (rules as the fallback)
/// and, with `[llm] draft = true`, rewrites the template drafts.
pub async fn pipeline(cfg: &Config, store: Store, policy: Policy) -> Result<Pipeline> {
    let rules = RulesClassifier::from_toml(&policy.classifier_toml).context("compiling policies/classifier.toml")?;
    let drafter = Drafter::load(cfg.prompts_dir.as_deref()).context("loading prompts")?;
    if !cfg.llm.enabled() {
        return Ok(Pipeline::new(store, policy, Box::new(rules), drafter, cfg.company.clone()).await?);
    }
    let client = std::sync::Arc::new(LlmClient::new(cfg.llm.clone(), Some(store.clone())).context("configuring the llm client")?);
    let classifier: Box<dyn Classifier> = Box::new(LlmClassifier::new(client.clone(), rules, cfg.prompts_dir.as_deref(), &cfg.company.name).context("loading prompts/classify.v2.tera")?);
    let mut p = Pipeline::new(store, policy, classifier, drafter, cfg.company.clone()).await?;
    if cfg.llm.draft {
        p.llm_drafter = Some(LlmDrafter::new(client, cfg.prompts_dir.as_deref()).context("loading prompts/draft.v1.tera")?);
    }
    Ok(p)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Imported {
    pub users: usize,
    pub clients: usize,
    pub invoices: usize,
}

/// Imports one CSV file of the given kind (`users`, `clients`, `invoices`).
pub async fn import_file(store: &Store, kind: &str, path: &Path) -> Result<usize> {
    let text = read(path)?;
    let name = path.display().to_string();
    Ok(match kind {
        "users" => store.import_users(&ledger::read_users(&name, &text)?).await?,
        "clients" => store.import_clients(&name, &ledger::read_clients(&name, &text)?).await?,
        "invoices" => store.import_invoices(&name, &ledger::read_invoices(&name, &text)?).await?,
        other => anyhow::bail!("unknown import kind {other:?}: expected users, clients, invoices or payments"),
    })
}

/// Imports a corpus folder's users.csv, clients.csv and invoices.csv.
pub async fn import_corpus(store: &Store, dir: &Path) -> Result<Imported> {
    let mut n = Imported::default();
    for (kind, slot) in [("users", &mut n.users), ("clients", &mut n.clients), ("invoices", &mut n.invoices)] {
        let p = dir.join(format!("{kind}.csv"));
        if !p.exists() {
            anyhow::bail!("{} not found (a corpus folder holds users.csv, clients.csv and invoices.csv)", p.display());
        }
        *slot = import_file(store, kind, &p).await?;
    }
    Ok(n)
}

/// What an ingest run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IngestReport {
    pub files: usize,
    pub stored: usize,
    pub duplicates: usize,
    /// Messages processed by this run.
    pub processed: usize,
    /// Their outcomes (empty from [`ingest_path_each`], which hands them on).
    pub outcomes: Vec<Outcome>,
    pub seconds: f64,
    /// Of `seconds`, the time spent storing the raw files (the rest is the flow).
    pub store_seconds: f64,
}

/// Stores every `.eml` under `path` once, then runs the flow on what is new.
pub async fn ingest_path(p: &mut Pipeline, path: &Path, sent: bool) -> Result<IngestReport> {
    let mut outcomes = Vec::new();
    let mut rep = ingest_path_each(p, path, sent, |o| outcomes.push(o)).await?;
    rep.outcomes = outcomes;
    Ok(rep)
}

/// [`ingest_path`], handing each outcome to `each` as its batch commits
/// (the report's `outcomes` stay empty): for a folder of any size.
pub async fn ingest_path_each(p: &mut Pipeline, path: &Path, sent: bool, each: impl FnMut(Outcome) + Send) -> Result<IngestReport> {
    let t0 = std::time::Instant::now();
    let files = maildir::list(path, sent)?;
    let mut rep = IngestReport { files: files.len(), ..Default::default() };
    // Files are stored a chunk per transaction, in two statements (its rows,
    // then their bytes); a file that cannot be read stops the run before its
    // chunk is written, and running again skips what is already stored.
    for chunk in files.chunks(crate::flow::pipeline::BATCH as usize) {
        let mut read = Vec::with_capacity(chunk.len());
        for f in chunk {
            let raw = std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
            read.push((raw, if f.sent_by_us { "out" } else { "in" }, f.path.display().to_string()));
        }
        let items: Vec<(&[u8], &str, &str)> = read.iter().map(|(raw, d, p)| (raw.as_slice(), *d, p.as_str())).collect();
        let mut tx = p.store.begin().await?;
        for r in ingest::ingest_files_in(&p.store, &mut tx, &items).await? {
            match r {
                Ingested::New(_) => rep.stored += 1,
                Ingested::Duplicate => rep.duplicates += 1,
            }
        }
        tx.commit().await?;
    }
    rep.store_seconds = t0.elapsed().as_secs_f64();
    rep.processed = p.run_pending_each(each).await?;
    rep.seconds = t0.elapsed().as_secs_f64();
    Ok(rep)
}

/// Imports a payments file (`invoice_number,date,amount`): one transaction.
pub async fn import_payments(store: &Store, path: &Path) -> Result<crate::flow::payments::PaymentsReport> {
    let text = read(path)?;
    let name = path.display().to_string();
    let rows = ledger::read_payments(&name, &text)?;
    Ok(crate::flow::payments::import(store, &name, &rows).await?)
}

/// The daily pass (reminders, SLA escalations, priorities) as of `day`.
pub async fn remind(cfg: &Config, store: &Store, policy: &Policy, day: chrono::NaiveDate) -> Result<crate::flow::remind::RemindReport> {
    let writer = crate::flow::remind::ReminderWriter::load(cfg.prompts_dir.as_deref()).context("loading reminder prompts")?;
    Ok(crate::flow::remind::run(store, policy, &writer, &cfg.company, day).await?)
}

/// What `import einvoice` did, file by file.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct EInvoiceReport {
    pub files: usize,
    pub imported: Vec<EInvoiceImported>,
    /// Files without structured data (a plain PDF): not an error.
    pub no_structured_data: Vec<(String, String)>,
    /// Files refused (bad XML, unknown buyer): nothing imported from them.
    pub refused: Vec<(String, String)>,
    pub seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EInvoiceImported {
    pub file: String,
    pub number: String,
    pub kind: &'static str,
    pub client_id: String,
    pub matched_by: String,
    pub amount_due: Option<crate::domain::Money>,
    pub currency: String,
}

/// Reads one e-invoice file, or every `.xml` and `.pdf` under a folder
/// (sorted), into the ledger. Each file stands alone: one refused file does
/// not stop the others.
pub async fn import_einvoices(store: &Store, path: &Path, create_clients: bool) -> Result<EInvoiceReport> {
    use crate::einvoice::{read, Reading};
    use crate::store::einvoices::UnknownBuyer;
    let t0 = std::time::Instant::now();
    let mut files = vec![];
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().and_then(|x| x.to_str()).map(|x| matches!(x.to_ascii_lowercase().as_str(), "xml" | "pdf")).unwrap_or(false) {
                    files.push(p);
                }
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut rep = EInvoiceReport { files: files.len(), ..Default::default() };
    let unknown = if create_clients { UnknownBuyer::Create } else { UnknownBuyer::Refuse };
    for f in &files {
        let shown = f.display().to_string();
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {shown}"))?;
        match read(&bytes) {
            Ok(Reading::Invoice(inv)) => match store.import_einvoice(&inv, unknown, 30).await {
                Ok(m) => rep.imported.push(EInvoiceImported {
                    file: shown,
                    number: inv.number.to_string(),
                    kind: inv.kind.as_str(),
                    client_id: m.client_id,
                    matched_by: m.by,
                    amount_due: inv.amount_due.or(inv.grand_total),
                    currency: inv.currency.clone(),
                }),
                Err(e) => rep.refused.push((shown, e.to_string())),
            },
            Ok(Reading::NoStructuredData(why)) => rep.no_structured_data.push((shown, why)),
            Err(e) => rep.refused.push((shown, e.to_string())),
        }
    }
    rep.seconds = t0.elapsed().as_secs_f64();
    Ok(rep)
}

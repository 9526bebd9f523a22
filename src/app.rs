//! app: the operations a user runs (import, ingest, send, demo), shared by the
//! CLI and the tests, wiring configuration, store, policies, classifier and
//! templates together.

use crate::config::Config;
use crate::flow::draft::Drafter;
use crate::flow::ingest::{self, Ingested, Origin};
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
    let classifier: Box<dyn Classifier> = Box::new(LlmClassifier::new(client.clone(), rules, cfg.prompts_dir.as_deref(), &cfg.company.name).context("loading prompts/classify.v1.tera")?);
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
        other => anyhow::bail!("unknown import kind {other:?}: expected users, clients or invoices"),
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
    pub outcomes: Vec<Outcome>,
    pub seconds: f64,
}

/// Stores every `.eml` under `path` once, then runs the flow on what is new.
pub async fn ingest_path(p: &mut Pipeline, path: &Path, sent: bool) -> Result<IngestReport> {
    let t0 = std::time::Instant::now();
    let files = maildir::list(path, sent)?;
    let mut rep = IngestReport { files: files.len(), ..Default::default() };
    for f in &files {
        let raw = std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
        let shown = f.path.display().to_string();
        match ingest::ingest(&p.store, &raw, if f.sent_by_us { "out" } else { "in" }, Origin::File(&shown)).await? {
            Ingested::New(_) => rep.stored += 1,
            Ingested::Duplicate => rep.duplicates += 1,
        }
    }
    rep.outcomes = p.run_pending().await?;
    rep.seconds = t0.elapsed().as_secs_f64();
    Ok(rep)
}

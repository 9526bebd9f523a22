//! eval: measures the flow on any labelled corpus (`../shared/corpus/FORMAT.md`):
//! imports it into a fresh temporary database, ingests `outbound/` then
//! `inbound/` in order, and compares with `labels.csv`: link precision and
//! recall over invoice numbers, exact-set accuracy, category accuracy and
//! macro-F1, owner-role accuracy, a confusion matrix and every miss.

use crate::config::Config;
use crate::domain::Category;
use crate::flow::classify::Classification;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub file: String,
    pub what: String,
    pub expected: String,
    pub got: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassScore {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub corpus: String,
    pub messages: usize,
    pub link_precision: f64,
    pub link_recall: f64,
    pub link_exact: f64,
    pub category_accuracy: f64,
    pub category_macro_f1: f64,
    pub owner_accuracy: f64,
    /// Messages labelled non-business (`other` with no owner): newsletters,
    /// lists, spam, personal mail.
    pub non_business: usize,
    /// How many of those opened a case (the product's target is none).
    pub non_business_cases: usize,
    pub per_category: BTreeMap<String, ClassScore>,
    /// expected -> predicted -> count
    pub confusion: BTreeMap<String, BTreeMap<String, u32>>,
    pub misses: Vec<Miss>,
    pub ingest_seconds: f64,
    pub messages_per_second: f64,
    /// With `--llm`: how the model did (None with the rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmStats>,
}

/// The model's share of the work and its cost in tokens and time.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LlmStats {
    pub model: String,
    /// Inbound messages classified by the model's answer.
    pub by_model: usize,
    /// Of those, the labelled ones whose category the model got right.
    pub by_model_correct: usize,
    /// Inbound messages where the model was called but the rules decided
    /// (invalid twice, error, low confidence).
    pub fallbacks: usize,
    /// Inbound messages that never reached the model (auto-replies, bounces, lists).
    pub skipped: usize,
    /// Classification calls (including the retries) and their outcomes.
    pub calls: usize,
    pub invalid_calls: usize,
    pub error_calls: usize,
    /// Tokens (input + output) per message that reached the model, retries
    /// included; latency likewise (first request to last answer).
    pub tokens_median: i64,
    pub tokens_p95: i64,
    pub latency_ms_median: i64,
    pub latency_ms_p95: i64,
}

fn pct(v: &mut [i64], p: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Label {
    file: String,
    invoices: BTreeSet<String>,
    category: String,
    owner_role: String,
}

fn read_labels(path: &Path) -> Result<Vec<Label>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}:{}", path.display(), i + 2))?;
        let get = |k: usize| rec.get(k).unwrap_or("").trim().to_string();
        let category = get(2);
        category.parse::<Category>().map_err(|e| anyhow::anyhow!("{}:{}:3: {e}", path.display(), i + 2))?;
        out.push(Label { file: get(0), invoices: get(1).split(';').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(), category, owner_role: get(3) });
    }
    Ok(out)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Runs the corpus through a fresh SQLite database in a temporary folder.
pub async fn run(corpus: &Path, base: &Config) -> Result<Report> {
    let labels = read_labels(&corpus.join("labels.csv"))?;
    let tmp = tempfile::tempdir()?;
    let mut cfg = base.clone();
    cfg.data_dir = tmp.path().to_path_buf();
    cfg.database_url = None;
    let (store, policy) = crate::app::open(&cfg).await?;
    crate::app::import_corpus(&store, corpus).await?;
    let mut p = crate::app::pipeline(&cfg, store.clone(), policy).await?;
    let t0 = std::time::Instant::now();
    let mut ingested = 0usize;
    for sub in ["outbound", "inbound"] {
        let d = corpus.join(sub);
        if d.is_dir() {
            let r = crate::app::ingest_path(&mut p, &d, sub == "outbound").await?;
            ingested += r.files;
        }
    }
    let secs = t0.elapsed().as_secs_f64();

    // Map inbound files to what the flow made of them.
    let roles: HashMap<String, String> = store.users().await?.into_iter().map(|u| (u.id, u.role.to_string())).collect();
    let rows = store.messages_where(None, None, None).await?;
    let mut by_file = HashMap::new();
    for m in rows.into_iter().filter(|m| m.direction == "in") {
        let src = store.message_source(m.id).await?;
        if let Some(name) = Path::new(src.trim_start_matches("file:")).file_name() {
            by_file.insert(name.to_string_lossy().to_string(), m);
        }
    }

    let (mut tp, mut npred, mut ngold, mut exact, mut cat_ok, mut owner_ok) = (0, 0, 0, 0, 0, 0);
    let mut confusion: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    let mut misses = Vec::new();
    let (mut non_business, mut non_business_cases) = (0, 0);
    for l in &labels {
        let m = by_file.get(&l.file);
        if l.category == "other" && l.owner_role.is_empty() {
            non_business += 1;
            if let Some(cid) = m.and_then(|m| m.case_id) {
                non_business_cases += 1;
                misses.push(Miss { file: l.file.clone(), what: "case".into(), expected: "no case (non-business)".into(), got: format!("case {cid}"), why: String::new() });
            }
        }
        let pred_inv: BTreeSet<String> = m.map(|m| m.invoices.iter().cloned().collect()).unwrap_or_default();
        let pred_cat = m.and_then(|m| m.category.clone()).unwrap_or_else(|| "(none)".into());
        let pred_owner = m.and_then(|m| m.owner_id.as_ref()).and_then(|o| roles.get(o)).cloned().unwrap_or_default();
        let why = match m {
            None => "message not found (not ingested, or a duplicate of another file)".to_string(),
            Some(m) => {
                let cls: Option<serde_json::Value> = m.classification.as_deref().and_then(|c| serde_json::from_str(c).ok());
                let rules = cls.as_ref().and_then(|c| c.get("reasons")).map(|r| r.to_string()).unwrap_or_default();
                format!("link {} ({:.2}) {}; rules {}; disposition {}", m.link_method.as_deref().unwrap_or("-"), m.link_confidence.unwrap_or(0.0), m.state, rules, m.disposition.as_deref().unwrap_or("-"))
            }
        };
        let hit = pred_inv.intersection(&l.invoices).count();
        tp += hit;
        npred += pred_inv.len();
        ngold += l.invoices.len();
        if pred_inv == l.invoices {
            exact += 1;
        } else {
            misses.push(Miss { file: l.file.clone(), what: "invoices".into(), expected: join(&l.invoices), got: join(&pred_inv), why: why.clone() });
        }
        *confusion.entry(l.category.clone()).or_default().entry(pred_cat.clone()).or_default() += 1;
        if pred_cat == l.category {
            cat_ok += 1;
        } else {
            misses.push(Miss { file: l.file.clone(), what: "category".into(), expected: l.category.clone(), got: pred_cat.clone(), why: why.clone() });
        }
        if pred_owner == l.owner_role {
            owner_ok += 1;
        } else {
            misses.push(Miss { file: l.file.clone(), what: "owner_role".into(), expected: l.owner_role.clone(), got: pred_owner, why });
        }
    }

    let llm_stats = if cfg.llm.enabled() {
        let mut st = LlmStats { model: cfg.llm.model_for(crate::llm::openai::Task::Classify).to_string(), ..Default::default() };
        let (mut tokens, mut lat) = (Vec::new(), Vec::new());
        for m in by_file.values() {
            let c: Option<Classification> = m.classification.as_deref().and_then(|c| serde_json::from_str(c).ok());
            let src = c.as_ref().map(|c| c.source.as_str()).unwrap_or_default();
            if src.starts_with("llm:") {
                st.by_model += 1;
            } else if src == "rules:llm-fallback" {
                st.fallbacks += 1;
            } else {
                st.skipped += 1;
            }
            // Per message that reached the model, retries included.
            if let Some(u) = c.as_ref().and_then(|c| c.model_usage).filter(|u| u.calls > 0) {
                tokens.push(u.input_tokens + u.output_tokens);
                lat.push(u.latency_ms);
            }
        }
        // How often the model's own answers (not the rules') were right.
        for l in &labels {
            let Some(m) = by_file.get(&l.file) else { continue };
            if m.classification.as_deref().and_then(|c| serde_json::from_str::<Classification>(c).ok()).is_some_and(|c| c.source.starts_with("llm:")) && m.category.as_deref() == Some(l.category.as_str()) {
                st.by_model_correct += 1;
            }
        }
        let calls: Vec<_> = store.llm_calls().await?.into_iter().filter(|c| c.task == "classify" && c.outcome != "fallback").collect();
        st.calls = calls.len();
        st.invalid_calls = calls.iter().filter(|c| c.outcome == "invalid").count();
        st.error_calls = calls.iter().filter(|c| c.outcome == "error").count();
        (st.tokens_median, st.tokens_p95) = (pct(&mut tokens, 0.5), pct(&mut tokens, 0.95));
        (st.latency_ms_median, st.latency_ms_p95) = (pct(&mut lat, 0.5), pct(&mut lat, 0.95));
        Some(st)
    } else {
        None
    };

    // Macro-F1 over the categories that occur in the labels or predictions.
    let mut classes: BTreeSet<String> = confusion.keys().cloned().collect();
    for row in confusion.values() {
        classes.extend(row.keys().filter(|k| k.as_str() != "(none)").cloned());
    }
    let mut per_category = BTreeMap::new();
    let mut f1_sum = 0.0;
    for c in &classes {
        let tp_c = confusion.get(c).and_then(|r| r.get(c)).copied().unwrap_or(0) as f64;
        let support: u32 = confusion.get(c).map(|r| r.values().sum()).unwrap_or(0);
        let predicted: u32 = confusion.values().map(|r| r.get(c).copied().unwrap_or(0)).sum();
        let precision = if predicted == 0 { 0.0 } else { tp_c / predicted as f64 };
        let recall = if support == 0 { 0.0 } else { tp_c / support as f64 };
        let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        f1_sum += f1;
        per_category.insert(c.clone(), ClassScore { precision, recall, f1, support });
    }
    let n = labels.len();
    Ok(Report {
        corpus: corpus.display().to_string(),
        messages: n,
        link_precision: ratio(tp, npred),
        link_recall: ratio(tp, ngold),
        link_exact: ratio(exact, n),
        category_accuracy: ratio(cat_ok, n),
        category_macro_f1: if classes.is_empty() { 0.0 } else { f1_sum / classes.len() as f64 },
        owner_accuracy: ratio(owner_ok, n),
        non_business,
        non_business_cases,
        per_category,
        confusion,
        misses,
        ingest_seconds: secs,
        messages_per_second: if secs > 0.0 { ingested as f64 / secs } else { 0.0 },
        llm: llm_stats,
    })
}

fn join(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "(none)".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(";")
    }
}

/// The human-readable report.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "corpus {}: {} labelled messages, ingested in {:.2} s ({:.0} msg/s)", r.corpus, r.messages, r.ingest_seconds, r.messages_per_second);
    let _ = writeln!(s, "link precision     {:.3}", r.link_precision);
    let _ = writeln!(s, "link recall        {:.3}", r.link_recall);
    let _ = writeln!(s, "link exact set     {:.3}", r.link_exact);
    let _ = writeln!(s, "category accuracy  {:.3}", r.category_accuracy);
    let _ = writeln!(s, "category macro-F1  {:.3}", r.category_macro_f1);
    let _ = writeln!(s, "owner accuracy     {:.3}", r.owner_accuracy);
    let _ = writeln!(s, "non-business mail  {} messages, {} opened a case", r.non_business, r.non_business_cases);
    if let Some(l) = &r.llm {
        let n = (l.by_model + l.fallbacks + l.skipped).max(1) as f64;
        let _ = writeln!(s, "model {}: classified {} ({:.0} %), rules fallback {} ({:.0} %), skipped the model {} ({:.0} %)", l.model, l.by_model, 100.0 * l.by_model as f64 / n, l.fallbacks, 100.0 * l.fallbacks as f64 / n, l.skipped, 100.0 * l.skipped as f64 / n);
        let _ = writeln!(s, "  the model's own answers: {} of {} right ({:.3})", l.by_model_correct, l.by_model, l.by_model_correct as f64 / l.by_model.max(1) as f64);
        let _ = writeln!(s, "  {} calls ({} invalid, {} errors); per message sent to the model: tokens median {} p95 {}, latency median {} ms p95 {} ms", l.calls, l.invalid_calls, l.error_calls, l.tokens_median, l.tokens_p95, l.latency_ms_median, l.latency_ms_p95);
    }
    let _ = writeln!(s, "\nper category (precision recall f1 support):");
    for (c, v) in &r.per_category {
        let _ = writeln!(s, "  {c:<16} {:.2} {:.2} {:.2} {}", v.precision, v.recall, v.f1, v.support);
    }
    let cols: BTreeSet<&String> = r.confusion.values().flat_map(|row| row.keys()).collect();
    let _ = writeln!(s, "\nconfusion (rows expected, columns predicted):");
    let _ = write!(s, "{:<16}", "");
    for c in &cols {
        let _ = write!(s, " {:>6}", &c[..c.len().min(6)]);
    }
    let _ = writeln!(s);
    for (e, row) in &r.confusion {
        let _ = write!(s, "{e:<16}");
        for c in &cols {
            let _ = write!(s, " {:>6}", row.get(*c).copied().unwrap_or(0));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "\nmisses ({}):", r.misses.len());
    for m in &r.misses {
        let _ = writeln!(s, "  {} {}: expected {} got {} — {}", m.file, m.what, m.expected, m.got, m.why);
    }
    s
}

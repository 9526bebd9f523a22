//! llm::draft: the reply and the call brief written by the model from the
//! case's facts only (`DraftFacts`, through `prompts/draft.v1.tera`; the
//! client's text is never in this prompt), and the grounding check that
//! refuses a draft naming an invoice number or an amount that is not in the
//! facts. A refused draft is regenerated once; then the template draft stays
//! and is flagged. Drafts stay pending: only a person's approval sends.

use crate::domain::{Language, Money};
use crate::flow::draft::{DraftFacts, DraftText, Drafter};
use crate::flow::link::normalise_number;
use crate::llm::openai::{ChatRequest, LlmClient, Task};
use crate::llm::prompt::{Prompt, PromptError};
use crate::store::llm_calls::Outcome;
use regex::Regex;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, LazyLock};

/// The prompt's name and version, recorded as the draft's template.
pub const PROMPT: &str = "draft.v1";
const EMBEDDED: &str = include_str!("../../prompts/draft.v1.tera");

#[derive(Debug, thiserror::Error)]
pub enum LlmDraftError {
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error("model call failed: {0}")]
    Call(String),
    #[error("draft refused twice: {0}")]
    Ungrounded(String),
    #[error("draft cut at max_tokens ({0}): not a whole text")]
    Truncated(u32),
}

/// Which draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reply,
    Brief,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Reply => "reply",
            Kind::Brief => "brief",
        }
    }
}

// An invoice-like reference: capital letters, then digits, e.g. F2026-0412,
// FA-2026-00123, INV 7781 (capitals only, so that "de 480" is not one).
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[A-Z]{1,6}[-/ ]?\d{2,}(?:[-/ .]\d{2,})*\b").unwrap());
// An amount with a currency before or after it.
static AMOUNT_AFTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)(\d{1,3}(?:[ \u{a0}\u{202f}.,]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)\s?(?:€|eur\b|euros?\b)").unwrap());
static AMOUNT_BEFORE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)(?:€|\beur\b)\s?(\d{1,3}(?:[ \u{a0}\u{202f}.,]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)").unwrap());
// Words that look like references but are not invoice numbers.
const NOT_REFERENCES: &[&str] = &["eur", "ht", "ttc", "tva", "vat", "dossier", "case", "cas", "n", "no", "num", "page", "tel", "tél", "fax", "art", "article", "jour", "jours", "days", "day", "h", "min"];

/// What a draft may name: the case's invoice numbers (and PO/project
/// references) and amounts (each invoice, their total, the disputed amount).
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    pub references: BTreeSet<String>,
    pub amounts: BTreeSet<i64>,
}

impl Allowed {
    pub fn from_facts(f: &DraftFacts) -> Allowed {
        let mut a = Allowed::default();
        let mut total = 0;
        for (i, _) in &f.invoices {
            a.references.insert(normalise_number(i.number.as_str()));
            for r in [&i.po_number, &i.project].into_iter().flatten() {
                a.references.insert(normalise_number(r));
            }
            a.amounts.insert(i.amount.cents());
            total += i.amount.cents();
        }
        a.amounts.insert(total);
        if let Some(d) = f.disputed_amount {
            a.amounts.insert(d.cents());
        }
        a
    }
}

/// Pure: what in `text` is not grounded in the facts (empty: the draft may stay).
pub fn ungrounded(text: &str, allowed: &Allowed) -> Vec<String> {
    let mut out = Vec::new();
    for m in REFERENCE.find_iter(text) {
        let s = m.as_str();
        let word: String = s.chars().take_while(|c| c.is_alphabetic()).collect::<String>().to_lowercase();
        if NOT_REFERENCES.contains(&word.as_str()) {
            continue;
        }
        let key = normalise_number(s);
        let known = allowed.references.iter().any(|r| r == &key || key.ends_with(&format!("|{r}")) || r.ends_with(&format!("|{key}")));
        if !known && !out.contains(&format!("invoice {s}")) {
            out.push(format!("invoice {s}"));
        }
    }
    for re in [&*AMOUNT_AFTER, &*AMOUNT_BEFORE] {
        for c in re.captures_iter(text) {
            let s = c[1].trim();
            // "1 234,50" and "1,234.50" both parse; a bare thousands group ("1.234") too.
            let cents = Money::parse(s).ok().map(|m| m.cents());
            let alt = Money::parse(&s.replace([',', '.'], "")).ok().map(|m| m.cents());
            let ok = cents.is_some_and(|c| allowed.amounts.contains(&c)) || alt.is_some_and(|c| allowed.amounts.contains(&c));
            if !ok && !out.contains(&format!("amount {s}")) {
                out.push(format!("amount {s}"));
            }
        }
    }
    out
}

/// Writes drafts with the model.
pub struct LlmDrafter {
    client: Arc<LlmClient>,
    prompt: Prompt,
}

impl LlmDrafter {
    pub fn new(client: Arc<LlmClient>, prompts_dir: Option<&Path>) -> Result<LlmDrafter, LlmDraftError> {
        Ok(LlmDrafter { client, prompt: Prompt::load(prompts_dir, PROMPT, EMBEDDED)? })
    }

    fn prompt(&self, drafter: &Drafter, kind: Kind, f: &DraftFacts, reference: &DraftText) -> Result<(String, String), LlmDraftError> {
        let mut c = drafter.context(f);
        c.insert("kind", kind.as_str());
        c.insert("language", f.language.as_str());
        // The reply template holds facts only; the brief's lists earlier
        // subjects (client text), so it is not given to the model.
        c.insert("reference", if kind == Kind::Reply { reference.body.as_str() } else { "" });
        Ok(self.prompt.render(&c)?)
    }

    /// A grounded draft from the model, or why the template draft stays.
    pub async fn write(&self, drafter: &Drafter, kind: Kind, f: &DraftFacts, template: &DraftText) -> Result<DraftText, LlmDraftError> {
        let (system, user) = self.prompt(drafter, kind, f, template)?;
        let allowed = Allowed::from_facts(f);
        let model = self.client.cfg.model_for(Task::Draft).to_string();
        let mut req = ChatRequest { task: Task::Draft, prompt: PROMPT, system, user: user.clone(), schema: None };
        let mut last = String::new();
        for attempt in 0..2 {
            if attempt == 1 {
                req.user = format!("{user}\n\nYour previous text was refused because it named {last}, which is not in the facts. Write it again using only the facts.");
            }
            let r = match self.client.chat_as(&req, None).await {
                Ok(r) => r,
                Err(e) => {
                    self.client.record_raw(Task::Draft, PROMPT, &model, 0, 0, 0, Outcome::Fallback).await;
                    return Err(LlmDraftError::Call(e.to_string()));
                }
            };
            if r.truncated {
                // A text cut at the bound is no reply; at temperature 0 the
                // same prompt would loop the same way, so no second try.
                self.client.record(&req, &r.model, r.input_tokens, r.output_tokens, r.latency_ms, Outcome::Invalid).await;
                self.client.record_raw(Task::Draft, PROMPT, &model, 0, 0, 0, Outcome::Fallback).await;
                tracing::warn!(kind = kind.as_str(), "llm draft refused: cut at max_tokens");
                return Err(LlmDraftError::Truncated(self.client.cfg.max_tokens));
            }
            let body = r.text.trim().to_string();
            let bad = ungrounded(&body, &allowed);
            let bad = if body.len() < 20 { vec!["an empty text".to_string()] } else { bad };
            if bad.is_empty() {
                self.client.record(&req, &r.model, r.input_tokens, r.output_tokens, r.latency_ms, Outcome::Ok).await;
                return Ok(DraftText { subject: template.subject.clone(), body, template: format!("{PROMPT}.{}.{}", kind.as_str(), lang(f.language)) });
            }
            self.client.record(&req, &r.model, r.input_tokens, r.output_tokens, r.latency_ms, Outcome::Invalid).await;
            last = bad.join(", ");
            tracing::warn!(attempt, kind = kind.as_str(), "llm draft refused: not grounded in the facts");
        }
        self.client.record_raw(Task::Draft, PROMPT, &model, 0, 0, 0, Outcome::Fallback).await;
        Err(LlmDraftError::Ungrounded(last))
    }
}

fn lang(l: Language) -> &'static str {
    l.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Allowed {
        Allowed { references: ["F2026-0412", "PO-5531"].iter().map(|s| normalise_number(s)).collect(), amounts: [123450, 48000].into_iter().collect() }
    }

    #[test]
    fn a_draft_with_only_the_facts_passes() {
        let t = "Bonjour, nous avons bien reçu votre message sur la facture F2026-0412 (1\u{202f}234,50 EUR) et votre commande PO-5531. \
                 Le montant contesté de 480,00 € est en cours d'examen (dossier n° 12, 30 jours). Invoice F 2026 412 — EUR 1,234.50.";
        assert_eq!(ungrounded(t, &allowed()), Vec::<String>::new());
    }

    #[test]
    fn an_invented_invoice_or_amount_is_refused() {
        let t = "Nous vous accordons un avoir de 250,00 € sur la facture F2026-0999, soit 1 000 EUR.";
        let bad = ungrounded(t, &allowed());
        assert!(bad.contains(&"invoice F2026-0999".to_string()), "{bad:?}");
        assert!(bad.contains(&"amount 250,00".to_string()), "{bad:?}");
        assert!(bad.contains(&"amount 1 000".to_string()), "{bad:?}");
    }
}

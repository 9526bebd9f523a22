//! llm::classify: the LLM classifier behind [`Classifier`]: one call per
//! inbound message, the client's mail inside nonce delimiters marked as
//! untrusted data, the answer asked for as a JSON schema (or JSON mode) and
//! validated strictly here. An invalid answer is retried once with the
//! validation error; then, or on a transport error or a low confidence, the
//! rules classifier decides and `source` / `reasons` say so. The model only
//! fills the classification's fields: statuses, owners and sending stay with
//! the policies and the approval gate.

use crate::domain::{Category, Language, Money};
use crate::flow::classify::{Ask, Classification, Classifier, ClassifyInput, Facts, ModelUsage};
use crate::llm::openai::{ChatRequest, LlmClient, Task};
use crate::llm::prompt::{Prompt, PromptError};
use crate::llm::rules::RulesClassifier;
use crate::store::llm_calls::Outcome;
use chrono::NaiveDate;
use serde::Deserialize;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

/// The prompt's name and version, recorded with every result and call.
pub const PROMPT: &str = "classify.v2";
const EMBEDDED: &str = include_str!("../../prompts/classify.v2.tera");
/// The mail given to the model is cut here (characters).
const MAX_BODY: usize = 4000;

/// Why an answer was refused (also sent back to the model for its retry).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Invalid {
    #[error("not a json object matching the schema: {0}")]
    Json(String),
    #[error("confidence {0} is not between 0 and 1")]
    Confidence(f32),
    #[error("disputed_amount {0:?} is not an amount like 480.00")]
    Amount(String),
    #[error("promised_date {0:?} is not a date YYYY-MM-DD")]
    Date(String),
    #[error("tone {0:?} is not neutral, firm or angry")]
    Tone(String),
    #[error("justification is empty")]
    Justification,
    #[error("answer cut at max_tokens ({0}): answer with a shorter object")]
    Truncated(u32),
}

impl Invalid {
    /// What was wrong, without the values of the answer: the model may echo
    /// the client's words, and logs never carry message text.
    pub fn kind(&self) -> &'static str {
        match self {
            Invalid::Json(_) => "not a json object matching the schema",
            Invalid::Confidence(_) => "confidence out of range",
            Invalid::Amount(_) => "disputed_amount not an amount",
            Invalid::Date(_) => "promised_date not a date",
            Invalid::Tone(_) => "tone not neutral, firm or angry",
            Invalid::Justification => "justification empty",
            Invalid::Truncated(_) => "cut at max_tokens",
        }
    }
}

/// The answer as the schema describes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    category: Category,
    confidence: f32,
    justification: String,
    disputed_amount: Option<serde_json::Value>,
    #[serde(default)]
    disputed_lines: Vec<String>,
    promised_date: Option<String>,
    #[serde(default)]
    asks: Vec<Ask>,
    language: Language,
    tone: Option<String>,
}

/// The JSON schema of an answer (strict-mode compatible).
pub fn schema() -> serde_json::Value {
    let cats: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["category", "confidence", "justification", "disputed_amount", "disputed_lines", "promised_date", "asks", "language", "tone"],
        "properties": {
            "category": {"type": "string", "enum": cats},
            "confidence": {"type": "number"},
            "justification": {"type": "string"},
            "disputed_amount": {"type": ["number", "null"]},
            "disputed_lines": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "promised_date": {"type": ["string", "null"]},
            "asks": {"type": "array", "items": {"type": "string", "enum": ASKS}, "maxItems": 3},
            "language": {"type": "string", "enum": ["fr", "en"]},
            "tone": {"type": "string", "enum": ["neutral", "firm", "angry"]}
        }
    })
}

const ASKS: &[&str] = &["credit_note", "corrected_invoice", "invoice_copy", "statement", "delivery", "intervention", "explanation", "payment_details"];

/// Pure: an answer's text → a classification, or why it is invalid.
pub fn validate(text: &str, model: &str) -> Result<Classification, Invalid> {
    // Some servers wrap JSON in a Markdown fence even in JSON mode.
    let t = text.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    let a: Answer = serde_json::from_str(t).map_err(|e| Invalid::Json(e.to_string()))?;
    if !(0.0..=1.0).contains(&a.confidence) || !a.confidence.is_finite() {
        return Err(Invalid::Confidence(a.confidence));
    }
    let justification = a.justification.trim();
    if justification.is_empty() {
        return Err(Invalid::Justification);
    }
    let disputed_amount = match a.disputed_amount {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(Money::parse(s.trim().trim_end_matches('€').trim_end_matches("EUR").trim()).map_err(|_| Invalid::Amount(s.clone()))?),
        Some(serde_json::Value::Number(n)) => Some(Money::parse(&n.to_string()).map_err(|_| Invalid::Amount(n.to_string()))?),
        Some(other) => return Err(Invalid::Amount(other.to_string())),
    };
    if disputed_amount.is_some_and(|m| m.cents() < 0) {
        return Err(Invalid::Amount(format!("{disputed_amount:?}")));
    }
    let promised_date = match a.promised_date.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| Invalid::Date(s.to_string()))?),
    };
    let tone = match a.tone.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t @ ("neutral" | "firm" | "angry")) => Some(t.to_string()),
        Some(t) => return Err(Invalid::Tone(t.to_string())),
    };
    let mut asks = a.asks;
    asks.dedup();
    Ok(Classification {
        category: a.category,
        confidence: a.confidence,
        reasons: vec![format!("justification: {}", one_line(justification))],
        facts: Facts { disputed_amount, promised_date, language: a.language, asks, tone, disputed_lines: a.disputed_lines.into_iter().map(|l| one_line(&l)).filter(|l| !l.is_empty()).take(5).collect() },
        source: format!("llm:{model}"),
        model_usage: None,
    })
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.chars().take(300).collect()
}

/// The LLM classifier, with the rules as its fallback.
pub struct LlmClassifier {
    client: Arc<LlmClient>,
    rules: RulesClassifier,
    prompt: Prompt,
    company: String,
}

impl LlmClassifier {
    /// `prompts_dir/classify.v2.tera` when present, else the embedded prompt.
    pub fn new(client: Arc<LlmClient>, rules: RulesClassifier, prompts_dir: Option<&Path>, company: &str) -> Result<LlmClassifier, PromptError> {
        Ok(LlmClassifier { client, rules, prompt: Prompt::load(prompts_dir, PROMPT, EMBEDDED)?, company: company.to_string() })
    }

    /// The system and user messages for one message.
    pub fn prompt(&self, input: &ClassifyInput<'_>) -> Result<(String, String), PromptError> {
        let m = input.message;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        // The client cannot close the delimiters: it does not know the nonce,
        // and any delimiter-looking text in its mail is defused.
        let defuse = |s: &str| s.replace("<<<", "‹‹‹").replace(">>>", "›››").replace("=== USER ===", "= USER =");
        let mut body: String = m.new_text.chars().take(MAX_BODY).collect();
        if body.trim().is_empty() {
            body = m.quoted.chars().take(MAX_BODY / 2).collect();
        }
        let mut c = tera::Context::new();
        c.insert("company", &self.company);
        c.insert("reference_date", &input.reference_date.to_string());
        c.insert("nonce", &nonce);
        c.insert("subject", &defuse(&m.subject));
        c.insert("from", &m.from.as_ref().map(|f| f.to_string()).unwrap_or_else(|| "?".into()));
        c.insert("attachments", &m.attachments.iter().filter_map(|a| a.name.as_deref()).map(defuse).collect::<Vec<_>>());
        c.insert("body", &defuse(&body));
        c.insert("categories", &Category::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>());
        c.insert("asks", ASKS);
        self.prompt.render(&c)
    }

    /// Messages the rules classify with certainty never reach the model.
    fn cheap_path(input: &ClassifyInput<'_>) -> Option<&'static str> {
        let a = &input.message.auto;
        if a.bounce {
            Some("bounce")
        } else if a.auto_submitted || a.autoreply_header {
            Some("auto-reply header")
        } else if a.mailing_list || a.precedence_bulk {
            Some("bulk or list mail")
        } else {
            None
        }
    }

    fn fallback(&self, input: &ClassifyInput<'_>, why: String, used: Option<ModelUsage>) -> Classification {
        let mut c = self.rules.classify(input);
        c.source = "rules:llm-fallback".into();
        c.reasons.insert(0, format!("llm fallback ({PROMPT}): {why}"));
        c.model_usage = used;
        c
    }

    async fn run(&self, input: ClassifyInput<'_>) -> Classification {
        if let Some(why) = Self::cheap_path(&input) {
            let mut c = self.rules.classify(&input);
            c.reasons.insert(0, format!("llm skipped: {why}"));
            return c;
        }
        let (system, user) = match self.prompt(&input) {
            Ok(p) => p,
            Err(e) => return self.fallback(&input, e.to_string(), None),
        };
        let model = self.client.cfg.model_for(Task::Classify).to_string();
        let mut req = ChatRequest { task: Task::Classify, prompt: PROMPT, system, user: user.clone(), schema: Some(("classification", schema())) };
        let mut last_error = String::new();
        let t0 = std::time::Instant::now();
        let mut used = ModelUsage::default();
        for attempt in 0..2 {
            if attempt == 1 {
                // One retry, told what was wrong (the error names fields, not the mail).
                req.user = format!("{user}\n\nYour previous answer was refused: {last_error}. Answer again with one JSON object that matches the schema exactly.");
            }
            used.calls += 1;
            let reply = self.client.chat(&req).await;
            used.latency_ms = t0.elapsed().as_millis() as i64;
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    self.client.record_raw(Task::Classify, PROMPT, &model, 0, 0, 0, Outcome::Fallback).await;
                    return self.fallback(&input, format!("model call failed: {e}"), Some(used));
                }
            };
            used.input_tokens += reply.input_tokens;
            used.output_tokens += reply.output_tokens;
            let checked = match validate(&reply.text, &reply.model) {
                Err(Invalid::Json(_)) if reply.truncated => Err(Invalid::Truncated(self.client.cfg.classify_max_tokens)),
                other => other,
            };
            match checked {
                Ok(mut c) => {
                    self.client.record(&req, &reply.model, reply.input_tokens, reply.output_tokens, reply.latency_ms, Outcome::Ok).await;
                    if c.confidence < self.client.cfg.min_confidence {
                        self.client.record_raw(Task::Classify, PROMPT, &model, 0, 0, 0, Outcome::Fallback).await;
                        return self.fallback(&input, format!("low confidence {:.2} for {} (below {:.2})", c.confidence, c.category, self.client.cfg.min_confidence), Some(used));
                    }
                    let quoted = quotes_found(&c.reasons[0], input.message);
                    c.reasons.push(format!("prompt: {PROMPT}"));
                    c.reasons.push(if quoted { "quote found in the message".into() } else { "quote not found in the message".into() });
                    if attempt == 1 {
                        c.reasons.push(format!("valid on retry after: {last_error}"));
                    }
                    c.model_usage = Some(used);
                    return c;
                }
                Err(e) => {
                    tracing::warn!(attempt, why = e.kind(), "llm classification refused");
                    self.client.record(&req, &reply.model, reply.input_tokens, reply.output_tokens, reply.latency_ms, Outcome::Invalid).await;
                    last_error = e.to_string();
                }
            }
        }
        self.client.record_raw(Task::Classify, PROMPT, &model, 0, 0, 0, Outcome::Fallback).await;
        self.fallback(&input, format!("invalid answer twice: {last_error}"), Some(used))
    }
}

/// True when some double-quoted part of the justification is in the mail.
fn quotes_found(justification: &str, m: &crate::flow::parse::Message) -> bool {
    let hay = format!("{} {}", m.subject, m.new_text).to_lowercase();
    let hay: String = hay.split_whitespace().collect::<Vec<_>>().join(" ");
    justification
        .split(['"', '“', '”', '«', '»'])
        .skip(1)
        .step_by(2)
        .map(|q| q.trim().to_lowercase().split_whitespace().collect::<Vec<_>>().join(" "))
        .any(|q| q.len() >= 4 && hay.contains(&q))
}

impl Classifier for LlmClassifier {
    fn classify<'a>(&'a self, input: ClassifyInput<'a>) -> Pin<Box<dyn Future<Output = Classification> + Send + 'a>> {
        Box::pin(self.run(input))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_logged_reason_carries_no_value_of_the_answer() {
        for e in [Invalid::Tone("ignorez les instructions".into()), Invalid::Json("expected value at 'Le prix'".into()), Invalid::Date("le 30".into())] {
            assert!(!e.kind().contains("instructions") && !e.kind().contains("prix") && !e.kind().contains("30"), "{}", e.kind());
            assert!(e.to_string().len() > e.kind().len(), "the model still gets the detail for its retry");
        }
    }
    use super::*;

    const GOOD: &str = r#"{"category":"price","confidence":0.8,"justification":"The client writes \"le tarif appliqué est faux\".","disputed_amount":"480,00","disputed_lines":["ligne 2"],"promised_date":null,"asks":["credit_note"],"language":"fr","tone":"firm"}"#;

    #[test]
    fn a_valid_answer_becomes_a_classification() {
        let c = validate(GOOD, "m").unwrap();
        assert_eq!(c.category, Category::Price);
        assert_eq!(c.facts.disputed_amount, Some(Money(48000)));
        assert_eq!(c.facts.asks, vec![Ask::CreditNote]);
        assert_eq!(c.facts.disputed_lines, vec!["ligne 2".to_string()]);
        assert_eq!(c.source, "llm:m");
        assert!(validate(&format!("```json\n{GOOD}\n```"), "m").is_ok());
        // The schema asks for a number; a string is still read (JSON mode).
        let n = validate(&GOOD.replace("\"480,00\"", "480.5"), "m").unwrap();
        assert_eq!(n.facts.disputed_amount, Some(Money(48050)));
    }

    #[test]
    fn invalid_answers_are_refused_with_a_reason() {
        let cases = [
            ("not json", "not a json object"),
            (r#"{"category":"approve_and_send"}"#, "not a json object"),
            (&GOOD.replace("0.8", "7"), "confidence 7"),
            (&GOOD.replace("\"480,00\"", "\"beaucoup\""), "disputed_amount"),
            (&GOOD.replace("\"promised_date\":null", "\"promised_date\":\"demain\""), "promised_date"),
            (&GOOD.replace("\"firm\"", "\"furious\""), "tone"),
            (&GOOD.replace("\"tone\":\"firm\"", "\"tone\":\"firm\",\"status\":\"resolved\""), "unknown field"),
        ];
        for (text, want) in cases {
            let e = validate(text, "m").unwrap_err().to_string();
            assert!(e.contains(want), "{text} → {e}");
        }
    }

    #[test]
    fn the_schema_lists_the_ten_categories_and_every_required_field() {
        let s = schema();
        assert_eq!(s["properties"]["category"]["enum"].as_array().unwrap().len(), 10);
        assert_eq!(s["required"].as_array().unwrap().len(), s["properties"].as_object().unwrap().len());
    }
}

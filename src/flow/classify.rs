//! classify: the category of a message and the facts a person needs, behind the
//! [`Classifier`] trait. The rules classifier (`llm::rules`) is the offline
//! default and the fallback; the LLM classifier implements the same trait.

use crate::domain::{Category, Language, Money};
use crate::flow::parse::Message;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// What the sender asks for, when it can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    CreditNote,
    CorrectedInvoice,
    InvoiceCopy,
    Statement,
    Delivery,
    Intervention,
    Explanation,
    PaymentDetails,
}

/// Facts extracted from the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Facts {
    /// The amount the client disputes, when stated.
    pub disputed_amount: Option<Money>,
    /// The date the client promises to pay (or says it paid), when stated.
    pub promised_date: Option<NaiveDate>,
    pub language: Language,
    pub asks: Vec<Ask>,
    /// `neutral`, `firm` or `angry`, when it can be told.
    pub tone: Option<String>,
    /// The invoice lines the client names as disputed (LLM classifier only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disputed_lines: Vec<String>,
}

/// A classification with its reasons (which rules fired).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub category: Category,
    /// 0.0 to 1.0.
    pub confidence: f32,
    /// Rule ids or a justification, for the person who checks.
    pub reasons: Vec<String>,
    pub facts: Facts,
    /// `rules`, or `llm:<model>`.
    pub source: String,
    /// What asking the model cost for this message (None: it was not asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_usage: Option<ModelUsage>,
}

/// The model calls made for one message: how many (a retry is a second
/// one), their tokens, and the wall time from the first request to the last
/// answer or failure (retries and backoff included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    pub calls: u32,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
}

/// What a classifier reads. `reference_date` is the message's date, used for
/// relative dates ("fin de semaine", "next Friday").
#[derive(Debug, Clone, Copy)]
pub struct ClassifyInput<'a> {
    pub message: &'a Message,
    pub reference_date: NaiveDate,
    /// True when the link stage found at least one of our invoices.
    pub has_invoice: bool,
    /// True when the sender belongs to a known client.
    pub known_client: bool,
}

/// A classifier: the rules (offline default) or an LLM. Never fails: an LLM
/// classifier falls back to the rules itself and says so in `source`.
pub trait Classifier: Send + Sync {
    fn classify<'a>(&'a self, input: ClassifyInput<'a>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Classification> + Send + 'a>>;

    /// True when classifying is quick local work (the rules): the pipeline
    /// may then classify inside its write transaction and process several
    /// messages per transaction. A remote model must never be called while
    /// the database's write lock is held, so the default is false.
    fn is_local(&self) -> bool {
        false
    }

    /// The classification computed now, on the calling thread, when that is
    /// pure local work (the rules): the same as `classify` on the same input.
    /// None for a classifier that must call out (a model).
    fn classify_now(&self, _input: &ClassifyInput<'_>) -> Option<Classification> {
        None
    }
}

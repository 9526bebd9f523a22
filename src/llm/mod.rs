//! llm: classifiers behind [`crate::flow::classify::Classifier`] and the
//! model's drafting. `rules` is the deterministic offline default and the
//! fallback; `openai` is the client for any OpenAI-compatible server;
//! `classify` and `draft` use it, with their prompts loaded by `prompt`.

pub mod classify;
pub mod draft;
pub mod openai;
pub mod prompt;
pub mod rules;

use crate::flow::classify::{Classification, Classifier, ClassifyInput};
use std::future::Future;
use std::pin::Pin;

impl Classifier for rules::RulesClassifier {
    fn classify<'a>(&'a self, input: ClassifyInput<'a>) -> Pin<Box<dyn Future<Output = Classification> + Send + 'a>> {
        Box::pin(async move { rules::RulesClassifier::classify(self, &input) })
    }

    fn is_local(&self) -> bool {
        true
    }

    fn classify_now(&self, input: &ClassifyInput<'_>) -> Option<Classification> {
        Some(rules::RulesClassifier::classify(self, input))
    }
}

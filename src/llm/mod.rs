//! llm: classifiers behind [`crate::flow::classify::Classifier`]. `rules` is
//! the deterministic offline default and the fallback.

pub mod rules;

use crate::flow::classify::{Classification, Classifier, ClassifyInput};
use std::future::Future;
use std::pin::Pin;

impl Classifier for rules::RulesClassifier {
    fn classify<'a>(&'a self, input: ClassifyInput<'a>) -> Pin<Box<dyn Future<Output = Classification> + Send + 'a>> {
        Box::pin(async move { rules::RulesClassifier::classify(self, &input) })
    }
}

//! openai: the one place that talks to an LLM, through async-openai against
//! any OpenAI-compatible base URL (OpenAI, Mistral, Azure, Ollama, vLLM,
//! llama.cpp's llama-server). It owns the `[llm]` settings, the timeout, the
//! retries with backoff, the concurrency limit and the accounting of every
//! call (`llm_calls`). It never logs prompts, message bodies or the API key:
//! only the model, tokens, latency and outcome.

use crate::store::llm_calls::{CallRow, Outcome};
use crate::store::Store;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage, CreateChatCompletionRequest, FinishReason, ResponseFormat,
    ResponseFormatJsonSchema,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("cannot read api_key_file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("llm request timed out after {0} s")]
    Timeout(u64),
    #[error("llm request failed: {0}")]
    Api(String),
    #[error("llm answer has no content")]
    Empty,
}

/// Which job a call does; each may use its own model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Classify,
    Draft,
    Check,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classify => "classify",
            Task::Draft => "draft",
            Task::Check => "check",
        }
    }
}

/// How the answer's shape is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Structured {
    /// `response_format: json_schema` (structured outputs), validated again here.
    #[default]
    JsonSchema,
    /// `response_format: json_object` (JSON mode) plus strict validation here.
    JsonObject,
}

/// Price of a model per million tokens, for `llm usage`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_m: f64,
    pub output_per_m: f64,
}

/// The `[llm]` section. `provider = "rules"` (the default) never calls a model.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// `rules` (offline, default) or `openai` (any OpenAI-compatible server).
    pub provider: String,
    /// e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` (Ollama).
    pub base_url: String,
    pub model: String,
    /// Model for classification, when not `model`.
    pub classify_model: Option<String>,
    /// Model for drafting, when not `model`.
    pub draft_model: Option<String>,
    /// File holding the API key (first line). `DISPUTE_DESK_LLM_API_KEY` wins.
    pub api_key_file: Option<PathBuf>,
    /// From `DISPUTE_DESK_LLM_API_KEY` only; never written to a file or a log.
    #[serde(skip)]
    pub api_key: Option<String>,
    pub timeout_secs: u64,
    /// Extra attempts after a transport error or a 5xx/429 answer.
    pub retries: u32,
    /// First backoff; doubled at each retry.
    pub backoff_ms: u64,
    /// Requests in flight at once (a semaphore).
    pub max_concurrent: usize,
    pub structured: Structured,
    /// Write the reply and the call brief with the model (else templates only).
    pub draft: bool,
    /// Below this confidence the rules decide (and the case says so).
    pub min_confidence: f32,
    /// Bound on a draft's answer, in tokens; a draft cut there is refused.
    pub max_tokens: u32,
    /// Bound on a classification's answer. A valid one takes 60 to 190
    /// tokens (SmolLM2 spends one a digit and pretty-prints); a model that
    /// rambles inside a string is cut here (its answer is then invalid and
    /// the rules decide) instead of running for minutes.
    pub classify_max_tokens: u32,
    pub temperature: f32,
    /// Model name → price per million tokens.
    pub prices: BTreeMap<String, Price>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            provider: "rules".into(),
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            classify_model: None,
            draft_model: None,
            api_key_file: None,
            api_key: None,
            timeout_secs: 60,
            retries: 2,
            backoff_ms: 500,
            max_concurrent: 2,
            structured: Structured::JsonSchema,
            draft: true,
            min_confidence: 0.3,
            max_tokens: 300,
            classify_max_tokens: 200,
            temperature: 0.0,
            prices: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for LlmConfig {
    /// Written by hand so that the API key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("classify_model", &self.classify_model)
            .field("draft_model", &self.draft_model)
            .field("api_key_file", &self.api_key_file)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("timeout_secs", &self.timeout_secs)
            .field("retries", &self.retries)
            .field("max_concurrent", &self.max_concurrent)
            .field("structured", &self.structured)
            .field("draft", &self.draft)
            .finish_non_exhaustive()
    }
}

impl LlmConfig {
    pub fn enabled(&self) -> bool {
        self.provider == "openai"
    }

    pub fn model_for(&self, task: Task) -> &str {
        match task {
            Task::Classify => self.classify_model.as_deref().unwrap_or(&self.model),
            Task::Draft => self.draft_model.as_deref().unwrap_or(&self.model),
            Task::Check => &self.model,
        }
    }

    pub fn max_tokens_for(&self, task: Task) -> u32 {
        match task {
            Task::Classify => self.classify_max_tokens,
            Task::Draft => self.max_tokens,
            // "OK" or {"ok": true}.
            Task::Check => 16,
        }
    }

    fn key(&self) -> Result<String, LlmError> {
        if let Some(k) = &self.api_key {
            return Ok(k.clone());
        }
        match &self.api_key_file {
            Some(p) => std::fs::read_to_string(p)
                .map(|s| s.lines().next().unwrap_or("").trim().to_string())
                .map_err(|source| LlmError::KeyFile { path: p.display().to_string(), source }),
            // Local servers take any key; async-openai sends a bearer anyway.
            None => Ok("none".into()),
        }
    }
}

/// One chat call: a system and a user message, an optional JSON schema.
pub struct ChatRequest<'a> {
    pub task: Task,
    /// Prompt name and version, e.g. `classify.v2`.
    pub prompt: &'a str,
    pub system: String,
    pub user: String,
    /// Name and JSON schema of the expected answer; None: free text.
    pub schema: Option<(&'a str, serde_json::Value)>,
}

/// What the model answered, with the numbers accounting needs.
#[derive(Debug, Clone)]
pub struct ChatReply {
    pub text: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
    /// The answer stopped at the max_tokens bound (`finish_reason: length`).
    pub truncated: bool,
}

/// The client: shared by the classifier and the drafter.
pub struct LlmClient {
    pub cfg: LlmConfig,
    client: async_openai::Client<OpenAIConfig>,
    slots: Arc<Semaphore>,
    store: Option<Store>,
}

/// Installs the ring rustls provider for the process (reqwest is built
/// without a provider so that aws-lc-rs is never compiled in beside ring).
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl LlmClient {
    /// `store`: where each call is recorded (None: not recorded).
    pub fn new(cfg: LlmConfig, store: Option<Store>) -> Result<LlmClient, LlmError> {
        install_ring();
        let oc = OpenAIConfig::new().with_api_base(cfg.base_url.trim_end_matches('/')).with_api_key(cfg.key()?);
        let client = async_openai::Client::with_config(oc);
        let slots = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        Ok(LlmClient { cfg, client, slots, store })
    }

    fn request(&self, req: &ChatRequest<'_>, structured: Option<Structured>) -> CreateChatCompletionRequest {
        let response_format = match (&req.schema, structured) {
            (Some((name, schema)), Some(Structured::JsonSchema)) => Some(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema { description: None, name: name.to_string(), schema: schema.clone(), strict: Some(true) },
            }),
            (Some(_), Some(Structured::JsonObject)) => Some(ResponseFormat::JsonObject),
            _ => None,
        };
        CreateChatCompletionRequest {
            model: self.cfg.model_for(req.task).to_string(),
            messages: vec![
                ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage::from(req.system.as_str())),
                ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(req.user.as_str())),
            ],
            response_format,
            max_completion_tokens: Some(self.cfg.max_tokens_for(req.task)),
            temperature: Some(self.cfg.temperature),
            ..Default::default()
        }
    }

    /// Sends one chat request with the configured response format, retrying
    /// transport errors and 429/5xx answers with backoff. A failure is
    /// recorded as an `error` call; the caller records `ok` / `invalid`.
    pub async fn chat(&self, req: &ChatRequest<'_>) -> Result<ChatReply, LlmError> {
        self.chat_as(req, Some(self.cfg.structured)).await
    }

    pub async fn chat_as(&self, req: &ChatRequest<'_>, structured: Option<Structured>) -> Result<ChatReply, LlmError> {
        let body = self.request(req, structured);
        let model = body.model.clone();
        let _slot = self.slots.acquire().await.map_err(|e| LlmError::Api(e.to_string()))?;
        let mut backoff = Duration::from_millis(self.cfg.backoff_ms);
        let mut attempt = 0;
        loop {
            let t0 = Instant::now();
            let res = tokio::time::timeout(Duration::from_secs(self.cfg.timeout_secs), self.client.chat().create(body.clone())).await;
            let latency_ms = t0.elapsed().as_millis() as i64;
            let err = match res {
                Ok(Ok(r)) => {
                    let (input_tokens, output_tokens) = r.usage.as_ref().map(|u| (u.prompt_tokens as i64, u.completion_tokens as i64)).unwrap_or((0, 0));
                    let choice = r.choices.into_iter().next();
                    let truncated = choice.as_ref().is_some_and(|c| c.finish_reason == Some(FinishReason::Length));
                    let text = choice.and_then(|c| c.message.content).unwrap_or_default();
                    tracing::info!(task = req.task.as_str(), prompt = req.prompt, model = %model, input_tokens, output_tokens, latency_ms, truncated, "llm call");
                    if text.trim().is_empty() {
                        self.record(req, &model, input_tokens, output_tokens, latency_ms, Outcome::Error).await;
                        return Err(LlmError::Empty);
                    }
                    return Ok(ChatReply { text, model: model.clone(), input_tokens, output_tokens, latency_ms, truncated });
                }
                Ok(Err(e)) => {
                    let transient = match &e {
                        // No answer at all (refused, reset, a pooled connection
                        // the server closed when it stopped), or 429/5xx.
                        async_openai::error::OpenAIError::Reqwest(re) => re.is_connect() || re.is_timeout() || re.is_request() || re.status().is_some_and(|s| s.as_u16() == 429 || s.is_server_error()),
                        async_openai::error::OpenAIError::ApiError(a) => a.status_code.as_u16() == 429 || a.status_code.is_server_error(),
                        _ => false,
                    };
                    (LlmError::Api(e.to_string()), transient)
                }
                Err(_) => (LlmError::Timeout(self.cfg.timeout_secs), true),
            };
            tracing::warn!(task = req.task.as_str(), model = %model, latency_ms, attempt, error = %err.0, "llm call failed");
            self.record(req, &model, 0, 0, latency_ms, Outcome::Error).await;
            if !err.1 || attempt >= self.cfg.retries {
                return Err(err.0);
            }
            attempt += 1;
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    /// Records one call (or a fallback) in `llm_calls`; a database error is
    /// logged, never fatal: accounting must not stop the flow.
    pub async fn record(&self, req: &ChatRequest<'_>, model: &str, input_tokens: i64, output_tokens: i64, latency_ms: i64, outcome: Outcome) {
        self.record_raw(req.task, req.prompt, model, input_tokens, output_tokens, latency_ms, outcome).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_raw(&self, task: Task, prompt: &str, model: &str, input_tokens: i64, output_tokens: i64, latency_ms: i64, outcome: Outcome) {
        if let Some(store) = &self.store {
            let row = CallRow { task: task.as_str(), model, prompt, input_tokens, output_tokens, latency_ms, outcome };
            if let Err(e) = store.record_llm_call(&row).await {
                tracing::warn!(error = %e, "cannot record llm call");
            }
        }
    }

    /// `llm check`: one tiny request, then one with a JSON schema.
    pub async fn check(&self) -> Result<CheckReport, LlmError> {
        let schema = serde_json::json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false});
        let plain = ChatRequest { task: Task::Check, prompt: "check", system: "Answer in one word.".into(), user: "Say OK.".into(), schema: None };
        let r = self.chat_as(&plain, None).await?;
        self.record(&plain, &r.model, r.input_tokens, r.output_tokens, r.latency_ms, Outcome::Ok).await;
        let structured = ChatRequest {
            task: Task::Check,
            prompt: "check",
            system: "Answer with a JSON object only.".into(),
            user: "Return {\"ok\": true}.".into(),
            schema: Some(("check", schema)),
        };
        let (json_schema, schema_error) = match self.chat_as(&structured, Some(Structured::JsonSchema)).await {
            Ok(s) => {
                let ok = serde_json::from_str::<serde_json::Value>(s.text.trim()).ok().is_some_and(|v| v.get("ok").is_some_and(|b| b.is_boolean()));
                self.record(&structured, &s.model, s.input_tokens, s.output_tokens, s.latency_ms, if ok { Outcome::Ok } else { Outcome::Invalid }).await;
                (ok, (!ok).then(|| "answer does not match the schema".to_string()))
            }
            Err(e) => (false, Some(e.to_string())),
        };
        Ok(CheckReport {
            base_url: self.cfg.base_url.clone(),
            model: r.model,
            latency_ms: r.latency_ms,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            json_schema,
            schema_error,
        })
    }
}

/// What `llm check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub base_url: String,
    pub model: String,
    pub latency_ms: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// True when a `json_schema` request came back as JSON matching it.
    pub json_schema: bool,
    pub schema_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key_and_tasks_pick_their_model() {
        let cfg = LlmConfig { api_key: Some("sk-secret-123".into()), classify_model: Some("small".into()), model: "big".into(), ..Default::default() };
        assert!(!format!("{cfg:?}").contains("sk-secret-123"));
        assert!(!serde_json::to_string(&cfg).unwrap().contains("sk-secret-123"));
        assert_eq!(cfg.model_for(Task::Classify), "small");
        assert_eq!(cfg.model_for(Task::Draft), "big");
        assert!(!cfg.enabled());
    }
}

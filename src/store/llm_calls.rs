//! store::llm_calls: one row per LLM call (and per fallback to the rules):
//! task, model, prompt name and version, tokens, latency, outcome. Numbers
//! only, never prompts or message text. `usage` sums them by day and task.

use super::{now, Result, Store};
use sqlx::Row;
use std::collections::BTreeMap;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Invalid,
    Error,
    Fallback,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
            Outcome::Fallback => "fallback",
        }
    }
}

/// A call to record.
#[derive(Debug, Clone)]
pub struct CallRow<'a> {
    pub task: &'a str,
    pub model: &'a str,
    pub prompt: &'a str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
    pub outcome: Outcome,
}

/// A recorded call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LlmCall {
    pub id: i64,
    pub task: String,
    pub model: String,
    pub prompt: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
    pub outcome: String,
    pub created_at: i64,
}

/// The sums for one day, task and model.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct UsageLine {
    pub day: String,
    pub task: String,
    pub model: String,
    pub calls: i64,
    pub ok: i64,
    pub invalid: i64,
    pub errors: i64,
    pub fallbacks: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms_total: i64,
}

impl Store {
    pub async fn record_llm_call(&self, c: &CallRow<'_>) -> Result<()> {
        sqlx::query("INSERT INTO llm_calls (task, model, prompt, input_tokens, output_tokens, latency_ms, outcome, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(c.task)
            .bind(c.model)
            .bind(c.prompt)
            .bind(c.input_tokens)
            .bind(c.output_tokens)
            .bind(c.latency_ms)
            .bind(c.outcome.as_str())
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every recorded call, oldest first.
    pub async fn llm_calls(&self) -> Result<Vec<LlmCall>> {
        let rows = sqlx::query("SELECT id, task, model, prompt, input_tokens, output_tokens, latency_ms, outcome, created_at FROM llm_calls ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(LlmCall {
                    id: r.try_get("id")?,
                    task: r.try_get("task")?,
                    model: r.try_get("model")?,
                    prompt: r.try_get("prompt")?,
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    latency_ms: r.try_get("latency_ms")?,
                    outcome: r.try_get("outcome")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Sums by UTC day, task and model (fallback rows count apart from calls).
    pub async fn llm_usage(&self) -> Result<Vec<UsageLine>> {
        Ok(usage(&self.llm_calls().await?))
    }
}

/// Pure: the sums behind `llm usage`.
pub fn usage(calls: &[LlmCall]) -> Vec<UsageLine> {
    let mut by: BTreeMap<(String, String, String), UsageLine> = BTreeMap::new();
    for c in calls {
        let day = chrono::DateTime::from_timestamp(c.created_at, 0).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "?".into());
        let l = by.entry((day.clone(), c.task.clone(), c.model.clone())).or_insert_with(|| UsageLine { day, task: c.task.clone(), model: c.model.clone(), ..Default::default() });
        match c.outcome.as_str() {
            "fallback" => l.fallbacks += 1,
            o => {
                l.calls += 1;
                match o {
                    "ok" => l.ok += 1,
                    "invalid" => l.invalid += 1,
                    _ => l.errors += 1,
                }
            }
        }
        l.input_tokens += c.input_tokens;
        l.output_tokens += c.output_tokens;
        l.latency_ms_total += c.latency_ms;
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(task: &str, outcome: &str, at: i64, tokens: (i64, i64)) -> LlmCall {
        LlmCall { id: 0, task: task.into(), model: "m".into(), prompt: "p.v1".into(), input_tokens: tokens.0, output_tokens: tokens.1, latency_ms: 10, outcome: outcome.into(), created_at: at }
    }

    #[test]
    fn usage_sums_by_day_and_task_and_counts_fallbacks_apart() {
        let day1 = 1_780_000_000; // 2026-05-28
        let calls = [call("classify", "ok", day1, (100, 20)), call("classify", "invalid", day1 + 5, (90, 30)), call("classify", "fallback", day1 + 6, (0, 0)), call("draft", "ok", day1, (300, 200)), call("classify", "ok", day1 + 86_400, (50, 5))];
        let u = usage(&calls);
        assert_eq!(u.len(), 3);
        assert_eq!((u[0].task.as_str(), u[0].calls, u[0].ok, u[0].invalid, u[0].fallbacks, u[0].input_tokens, u[0].output_tokens), ("classify", 2, 1, 1, 1, 190, 50));
        assert_eq!((u[1].task.as_str(), u[1].input_tokens), ("draft", 300));
        assert_ne!(u[2].day, u[0].day);
    }
}

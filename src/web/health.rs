//! web::health: `/healthz` (the database answers), `/metrics` in the
//! Prometheus text format (counts read from the database, so every instance
//! on one PostgreSQL reports the same, instances and leases included), and
//! the desk's one stylesheet.

use super::WebState;
use crate::store::StoreError;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub fn router() -> Router<WebState> {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).route("/static/desk.css", get(css))
}

async fn healthz(State(state): State<WebState>) -> Response {
    match sqlx::query_scalar::<_, i64>("SELECT CAST(1 AS BIGINT)").fetch_one(&state.store.pool).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

/// The metrics text, LLM calls and tokens included (from `llm_calls`).
pub async fn render_metrics(state: &WebState) -> Result<String, StoreError> {
    let pool = &state.store.pool;
    let one = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await };
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, i64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in lines {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let dirs = sqlx::query_as::<_, (String, i64)>("SELECT direction, COUNT(*) FROM messages GROUP BY direction").fetch_all(pool).await?;
    metric("dispute_desk_messages_ingested_total", "counter", "Messages stored by ingest, by direction.", dirs.into_iter().map(|(d, n)| (format!("{{direction=\"{d}\"}}"), n)).collect());
    metric("dispute_desk_messages_unlinked", "gauge", "Messages waiting for a person to link them.", vec![(String::new(), one("SELECT COUNT(*) FROM messages WHERE disposition = 'unlinked'").await?)]);
    let pending = sqlx::query_as::<_, (String, i64)>("SELECT kind, COUNT(*) FROM drafts WHERE status = 'pending' GROUP BY kind").fetch_all(pool).await?;
    metric("dispute_desk_drafts_pending", "gauge", "Drafts waiting for approval, by kind.", pending.into_iter().map(|(k, n)| (format!("{{kind=\"{k}\"}}"), n)).collect());
    let outbox = sqlx::query_as::<_, (String, i64)>("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetch_all(pool).await?;
    metric("dispute_desk_outbox", "gauge", "Outbox rows by status (sent = messages sent).", outbox.into_iter().map(|(s, n)| (format!("{{status=\"{s}\"}}"), n)).collect());
    metric("dispute_desk_sends_total", "counter", "Messages sent to clients.", vec![(String::new(), one("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").await?)]);
    metric(
        "dispute_desk_errors_total",
        "counter",
        "Failures kept in the database: messages that failed processing, sends that failed or are uncertain.",
        vec![
            ("{stage=\"process\"}".into(), one("SELECT COUNT(*) FROM messages WHERE state = 'failed'").await?),
            ("{stage=\"send\"}".into(), one("SELECT COUNT(*) FROM outbox WHERE status IN ('failed', 'uncertain')").await?),
        ],
    );
    metric("dispute_desk_cases_open", "gauge", "Cases not resolved.", vec![(String::new(), one("SELECT COUNT(*) FROM cases WHERE status <> 'resolved'").await?)]);
    // Several instances (see cluster.rs): who is alive, and each lease.
    let now = state.store.db_now_ms().await?;
    let ttl = state.cfg.cluster.timing().ttl_ms();
    let alive = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM instances WHERE stopped_at IS NULL AND heartbeat_at + $1 >= $2").bind(ttl).bind(now).fetch_one(pool).await?;
    metric("dispute_desk_instances_alive", "gauge", "Serve instances with a recent heartbeat.", vec![(String::new(), alive)]);
    let leases = sqlx::query_as::<_, (String, i64, i64)>("SELECT name, expires_at, takeovers FROM leases ORDER BY name").fetch_all(pool).await?;
    metric("dispute_desk_lease_held", "gauge", "1 while an instance holds the lease (a mailbox is watched).", leases.iter().map(|(n, e, _)| (format!("{{lease=\"{n}\"}}"), i64::from(*e > now))).collect());
    metric("dispute_desk_lease_takeovers_total", "counter", "Times a lease passed to another instance after it expired or was released.", leases.iter().map(|(n, _, t)| (format!("{{lease=\"{n}\"}}"), *t)).collect());
    // One query over llm_calls: calls by task and outcome (fallback rows are
    // the rules or templates deciding, not calls), and their tokens.
    let llm = sqlx::query_as::<_, (String, String, i64, i64, i64)>(
        "SELECT task, outcome, COUNT(*), CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) FROM llm_calls GROUP BY task, outcome ORDER BY task, outcome",
    )
    .fetch_all(pool)
    .await?;
    let labels = |task: &str, outcome: &str| format!("{{task=\"{task}\",outcome=\"{outcome}\"}}");
    metric("dispute_desk_llm_calls_total", "counter", "Model calls by task and outcome (ok, invalid, error; fallback = the rules or the templates decided).", llm.iter().map(|(t, o, n, _, _)| (labels(t, o), *n)).collect());
    let by_task = |pick: fn(&(String, String, i64, i64, i64)) -> i64| {
        let mut sums: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        for row in &llm {
            *sums.entry(row.0.as_str()).or_default() += pick(row);
        }
        sums.into_iter().map(|(t, n)| (format!("{{task=\"{t}\"}}"), n)).collect::<Vec<_>>()
    };
    metric("dispute_desk_llm_input_tokens_total", "counter", "Input (prompt) tokens the model's server counted, by task.", by_task(|r| r.3));
    metric("dispute_desk_llm_output_tokens_total", "counter", "Output (completion) tokens the model's server counted, by task.", by_task(|r| r.4));
    Ok(out)
}

async fn metrics(State(state): State<WebState>) -> Response {
    match render_metrics(&state).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    }
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], include_str!("templates/desk.css")).into_response()
}

//! api: the JSON API under `/api/v1` for the company's invoicing software,
//! ERP or CRM. Authenticated by API keys (`Authorization: Bearer ddk_…`,
//! see [`crate::store::apikeys`]); a key has a scope (read | write) and acts
//! as its user, whose role limits it exactly as in the web and the CLI:
//! moves go through [`crate::flow::workflow`], approvals through
//! [`crate::flow::approve`] (the only way anything reaches a client). The
//! OpenAPI document (`/api/v1/openapi.json`) is generated from the handlers
//! by utoipa, from the same declarations that build the router.

mod handlers;

use crate::config::Config;
use crate::policy::Policy;
use crate::store::apikeys::{ApiKey, Scope};
use crate::store::ledger::User;
use crate::store::{Store, StoreError};
use axum::extract::FromRequestParts;
use axum::http::{request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler needs.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub cfg: Arc<Config>,
}

/// Errors of the API, each with its HTTP status; a 5xx is logged and its
/// detail not returned.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid api key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(w) => ApiError::NotFound(format!("{w} not found")),
            StoreError::Conflict(w) => ApiError::Conflict(w),
            StoreError::Invalid(w) => ApiError::Invalid(w),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// The error body: `{"error": "…"}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "api request failed");
        }
        let mut r = (status, Json(ErrorBody { error: self.to_string() })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The caller: a valid key and its user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
    pub user: User,
}

impl Caller {
    /// Writing needs a write key.
    pub fn writes(&self) -> Result<(), ApiError> {
        match self.key.scope {
            Scope::Write => Ok(()),
            Scope::Read => Err(ApiError::Forbidden(format!("api key {} is read-only", self.key.id))),
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(presented) = header.strip_prefix("Bearer ").map(str::trim) else { return Err(ApiError::Unauthorized) };
        let key = state.store.verify_api_key(presented).await?.ok_or(ApiError::Unauthorized)?;
        let user = state.store.user(&key.user_id).await.map_err(|_| ApiError::Unauthorized)?;
        tracing::Span::current().record("key", key.id);
        Ok(Caller { key, user })
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme("api_key", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("ddk_PREFIX_SECRET").build()));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dispute-desk API", version = "1", description = "Ledger upserts, cases, messages, drafts, tasks and audit events. Authorization: Bearer API key (read or write scope), acting as the key's user."),
    modifiers(&BearerAuth),
    security(("api_key" = []))
)]
struct ApiDoc;

/// The routes and the OpenAPI document, from the same declarations.
pub fn routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    use handlers::*;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(upsert_clients))
        .routes(routes!(upsert_contacts))
        .routes(routes!(upsert_invoices))
        .routes(routes!(record_payments))
        .routes(routes!(list_cases))
        .routes(routes!(get_case))
        .routes(routes!(move_case))
        .routes(routes!(list_messages))
        .routes(routes!(get_message))
        .routes(routes!(list_drafts))
        .routes(routes!(get_draft))
        .routes(routes!(approve_draft))
        .routes(routes!(reject_draft))
        .routes(routes!(list_tasks))
        .routes(routes!(list_audit))
        .split_for_parts()
}

/// The OpenAPI document alone.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// `/api/v1/...` with its state; mount it into any axum app.
pub fn router(state: ApiState) -> Router {
    let (r, doc) = routes();
    let doc = Arc::new(doc);
    r.route("/api/v1/openapi.json", axum::routing::get(move || async move { Json(doc.as_ref().clone()) }))
        .layer(axum::middleware::from_fn(trace))
        .with_state(state)
}

/// One span per request with method, path and status; never headers or
/// bodies (keys and client data).
async fn trace(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let span = tracing::info_span!("api", method = %req.method(), path = %req.uri().path(), key = tracing::field::Empty);
    let t0 = std::time::Instant::now();
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.in_scope(|| tracing::info!(status = resp.status().as_u16(), ms = t0.elapsed().as_millis() as u64, "api request"));
    resp
}

/// Serves the API alone on `listener` until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

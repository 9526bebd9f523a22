//! web: the desk people use in a browser (axum + Tera, server-rendered, no
//! JavaScript): login, the approval queue, my cases, open cases, the
//! unlinked-message queue, the dashboard, health and metrics. Every page
//! module owns its `router()`; roles are checked here, on the server, and
//! every decision goes through the same gates as the CLI (`flow::approve`,
//! `flow::workflow`) — the web never writes an outbox row itself.

pub mod approvals;
pub mod auth;
pub mod cases;
pub mod dashboard;
pub mod health;
pub mod i18n;
pub mod session;

use crate::config::Config;
use crate::domain::Role;
use crate::flow::approve::ApproveError;
use crate::flow::workflow::WorkflowError;
use crate::policy::Policy;
use crate::store::{Store, StoreError};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Router;
use std::sync::Arc;

pub use i18n::Lang;
pub use session::Session;

/// What every handler shares.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub cfg: Arc<Config>,
    tera: Arc<tera::Tera>,
}

impl WebState {
    pub fn new(store: Store, policy: Policy, cfg: Config) -> Result<WebState, Error> {
        Ok(WebState { store, policy: Arc::new(policy), cfg: Arc::new(cfg), tera: Arc::new(templates()?) })
    }

    /// Renders `name` with the page's values plus the session's user, CSRF
    /// token and string table.
    pub(crate) fn render(&self, name: &str, s: &Session, mut ctx: tera::Context) -> Result<Response, Error> {
        ctx.insert("me", &s.user);
        ctx.insert("role", s.user.role.as_str());
        ctx.insert("csrf", &s.csrf);
        self.render_anon(name, s.lang, ctx)
    }

    pub(crate) fn render_anon(&self, name: &str, lang: Lang, mut ctx: tera::Context) -> Result<Response, Error> {
        if !ctx.contains_key("me") {
            ctx.insert("me", &false);
            ctx.insert("role", "");
            ctx.insert("csrf", "");
        }
        let page = match name {
            "approvals.html" => "approvals",
            "my_cases.html" => "my",
            "cases.html" | "case.html" => "cases",
            "unlinked.html" => "unlinked",
            "dashboard.html" => "dashboard",
            _ => "",
        };
        ctx.insert("nav", page);
        ctx.insert("t", &i18n::table(lang));
        ctx.insert("lang", lang.as_str());
        ctx.insert("company", &self.cfg.company.name);
        let html = self.tera.render(name, &ctx)?;
        Ok(Html(html).into_response())
    }
}

/// The whole desk: every page group's router, with the shared state.
pub fn router(state: WebState) -> Router {
    Router::new()
        .merge(auth::router())
        .merge(approvals::router())
        .merge(cases::router())
        .merge(dashboard::router())
        .merge(health::router())
        .with_state(state)
}

/// Serves the desk on `listener` until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, state: WebState, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(shutdown).await
}

fn templates() -> Result<tera::Tera, Error> {
    let mut t = tera::Tera::default();
    t.add_raw_templates(vec![
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("approvals.html", include_str!("templates/approvals.html")),
        ("my_cases.html", include_str!("templates/my_cases.html")),
        ("cases.html", include_str!("templates/cases.html")),
        ("case.html", include_str!("templates/case.html")),
        ("unlinked.html", include_str!("templates/unlinked.html")),
        ("dashboard.html", include_str!("templates/dashboard.html")),
    ])?;
    Ok(t)
}

/// The one error of the web desk. Refusals and bad input become clear 4xx
/// pages; anything else is logged and shown as a bare 500 with no detail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sign in first")]
    Unauthenticated,
    #[error("your role may not open this page")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("the form has expired or did not come from this desk: reload the page and try again")]
    Csrf,
    #[error("too many failed logins: try again in {0} minutes")]
    RateLimited(i64),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Approve(#[from] ApproveError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error("cannot render page: {0}")]
    Render(#[from] tera::Error),
    #[error("cannot hash password: {0}")]
    Hash(String),
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Unauthenticated => StatusCode::UNAUTHORIZED,
            Error::Forbidden => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Csrf => StatusCode::FORBIDDEN,
            Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Store(e) | Error::Approve(ApproveError::Store(e)) | Error::Workflow(WorkflowError::Store(e)) => store_status(e),
            Error::Approve(ApproveError::NotAllowed { .. }) | Error::Workflow(WorkflowError::Role { .. } | WorkflowError::NotManager { .. }) => StatusCode::FORBIDDEN,
            Error::Approve(ApproveError::AlreadyDecided { .. }) => StatusCode::CONFLICT,
            Error::Approve(ApproveError::Render(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Approve(_) | Error::Workflow(_) => StatusCode::BAD_REQUEST,
            Error::Render(_) | Error::Hash(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        StoreError::Db(sqlx::Error::Database(d)) if d.is_unique_violation() => StatusCode::CONFLICT,
        StoreError::Db(sqlx::Error::Database(d)) if d.is_foreign_key_violation() || d.is_check_violation() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if matches!(self, Error::Unauthenticated) {
            return Redirect::to("/login").into_response();
        }
        let status = self.status();
        let text = if status.is_server_error() {
            // The detail goes to the log only (never bodies or tokens: the
            // errors carry ids and reasons).
            tracing::error!(error = %self, "web request failed");
            "erreur interne / internal error".to_string()
        } else {
            match &self {
                Error::Store(StoreError::Db(_)) => "cette valeur est refusée (déjà prise ou inconnue) / this value is refused (taken or unknown)".to_string(),
                e => e.to_string(),
            }
        };
        let body = format!(
            "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"><title>{code}</title><link rel=\"stylesheet\" href=\"/static/desk.css\"></head>\
             <body><main class=\"error\"><h1>{code}</h1><p class=\"flash error\">{msg}</p><p><a href=\"javascript:history.back()\">←</a> · <a href=\"/\">dispute-desk</a></p></main></body></html>",
            code = status.as_u16(),
            msg = escape(&text)
        );
        (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
    }
}

/// HTML-escapes text for the few pages built without Tera.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Roles that see the approval queue and every case.
pub(crate) fn sees_all_cases(role: Role) -> bool {
    matches!(role, Role::Accountant | Role::Manager)
}

/// `12 345,67 €` or `12,345.67 EUR` for cents.
pub(crate) fn money(lang: Lang, cents: i64) -> String {
    let m = crate::domain::Money(cents);
    match lang {
        Lang::Fr => format!("{} €", m.fr()),
        Lang::En => format!("€{}", m.en()),
    }
}

/// A date-time for people, in UTC.
pub(crate) fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

/// The age of something, in days, from an epoch time.
pub(crate) fn age_days(t: i64) -> i64 {
    (crate::store::now() - t).max(0) / 86_400
}

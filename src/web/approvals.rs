//! web::approvals: the approval queue (accountants and managers, as
//! `policies/routing.toml` [approval] says): pending drafts oldest first, each
//! beside the client's message, its invoices, classification and call brief;
//! edit, approve and send, or reject — through `flow::approve` only.

use super::{money, when, Error, Session, WebState};
use crate::domain::{EmailAddress, InvoiceNumber};
use crate::flow::approve::{self, ApproveError};
use crate::flow::classify::Classification;
use crate::flow::parse::Message;
use crate::store::cases::DraftRow;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<WebState> {
    Router::new()
        .route("/approvals", get(queue))
        .route("/approvals/{id}/edit", post(edit))
        .route("/approvals/{id}/approve", post(approve_draft))
        .route("/approvals/{id}/reject", post(reject))
}

/// Drafts shown per page.
const PER_PAGE: usize = 20;

fn may_approve(state: &WebState, s: &Session) -> Result<(), Error> {
    if state.policy.may_approve(s.user.role) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

#[derive(Serialize)]
struct InvoiceView {
    number: String,
    amount: String,
    due_date: String,
    status: String,
}

#[derive(Serialize)]
struct ClassView {
    category: String,
    confidence: String,
    reasons: Vec<String>,
    disputed: Option<String>,
    tone: Option<String>,
}

#[derive(Serialize)]
struct Card {
    draft: DraftRow,
    created: String,
    age_days: i64,
    client_name: Option<String>,
    from: Option<String>,
    message_subject: Option<String>,
    new_text: Option<String>,
    quoted: Option<String>,
    invoices: Vec<InvoiceView>,
    class: Option<ClassView>,
    brief: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    done: Option<String>,
}

/// Everything a person needs beside one draft.
async fn card(state: &WebState, s: &Session, d: DraftRow) -> Result<Card, Error> {
    let store = &state.store;
    let mut c = Card { created: when(d.created_at), age_days: super::age_days(d.created_at), client_name: None, from: None, message_subject: None, new_text: None, quoted: None, invoices: vec![], class: None, brief: None, draft: d };
    let mut numbers: Vec<String> = vec![];
    if let Some(case_id) = c.draft.case_id {
        let case = store.case(case_id).await?;
        c.client_name = Some(case.client_name.clone());
        numbers = case.invoices.clone();
        c.brief = store.drafts(None, Some(case_id)).await?.into_iter().rfind(|b| b.kind == "brief").map(|b| b.body);
    }
    if let Some(mid) = c.draft.message_id {
        let m = store.message(mid).await?;
        c.from = m.from_addr.clone();
        c.message_subject = m.subject.clone();
        if let Some(p) = m.parsed.as_deref().and_then(|p| serde_json::from_str::<Message>(p).ok()) {
            c.new_text = Some(p.new_text);
            c.quoted = Some(p.quoted).filter(|q| !q.trim().is_empty());
        }
        if let Some(cls) = m.classification.as_deref().and_then(|j| serde_json::from_str::<Classification>(j).ok()) {
            c.class = Some(ClassView {
                category: cls.category.to_string(),
                confidence: format!("{:.0} %", cls.confidence * 100.0),
                reasons: cls.reasons,
                disputed: cls.facts.disputed_amount.map(|a| money(s.lang, a.cents())),
                tone: cls.facts.tone,
            });
        }
        if numbers.is_empty() {
            numbers = m.invoices.clone();
        }
    }
    if numbers.is_empty() && c.draft.kind == "reminder" {
        // A reminder names its invoices in the reminder log.
        numbers = sqlx::query_scalar("SELECT invoice_number FROM invoice_reminders WHERE draft_id = $1").bind(c.draft.id).fetch_all(&store.pool).await.map_err(crate::store::StoreError::from)?;
    }
    let parsed: Vec<InvoiceNumber> = numbers.iter().filter_map(|n| InvoiceNumber::parse(n).ok()).collect();
    let invoices = store.invoices_by_number(&parsed).await?;
    if c.client_name.is_none() {
        if let Some(inv) = invoices.first() {
            c.client_name = sqlx::query_scalar("SELECT name FROM clients WHERE id = $1").bind(&inv.client_id).fetch_optional(&store.pool).await.map_err(crate::store::StoreError::from)?;
        }
    }
    for i in invoices {
        c.invoices.push(InvoiceView { number: i.number.to_string(), amount: money(s.lang, i.amount.cents()), due_date: i.due_date, status: i.status });
    }
    Ok(c)
}

#[tracing::instrument(skip_all, fields(user = %s.user.id))]
async fn queue(State(state): State<WebState>, s: Session, Query(q): Query<QueueQuery>) -> Result<Response, Error> {
    may_approve(&state, &s)?;
    let total = state.store.pending_drafts_count().await? as usize;
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let pending = state.store.pending_drafts_page(PER_PAGE as i64, ((page - 1) * PER_PAGE) as i64).await?;
    let mut cards = vec![];
    for d in pending {
        cards.push(card(&state, &s, d).await?);
    }
    let mut ctx = tera::Context::new();
    ctx.insert("cards", &cards);
    ctx.insert("total", &total);
    ctx.insert("page", &page);
    ctx.insert("pages", &pages);
    ctx.insert("flash", &q.done.as_deref().map(|k| super::i18n::word(s.lang, match k {
        "approved" => "approved_ok",
        "rejected" => "rejected_ok",
        _ => "edited_ok",
    })));
    state.render("approvals.html", &s, ctx)
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    body: String,
}

#[derive(Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    csrf: String,
    /// The text as shown; when it differs from the stored draft the edit is
    /// saved first, through the gate, then approved.
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
pub struct RejectForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// Turns the gate's "already decided" into a page that says so plainly.
fn decided(s: &Session, e: ApproveError) -> Error {
    match e {
        ApproveError::AlreadyDecided { .. } => Error::Conflict(super::i18n::word(s.lang, "already_decided").to_string()),
        e => e.into(),
    }
}

#[tracing::instrument(skip_all, fields(user = %s.user.id, draft = id))]
async fn edit(State(state): State<WebState>, s: Session, Path(id): Path<i64>, Form(f): Form<EditForm>) -> Result<Response, Error> {
    s.check_csrf(&f.csrf)?;
    may_approve(&state, &s)?;
    let body = f.body.replace("\r\n", "\n");
    approve::edit(&state.store, &state.policy, id, &s.user, &body).await.map_err(|e| decided(&s, e))?;
    Ok(Redirect::to(&format!("/approvals?done=edited#draft-{id}")).into_response())
}

#[tracing::instrument(skip_all, fields(user = %s.user.id, draft = id))]
async fn approve_draft(State(state): State<WebState>, s: Session, Path(id): Path<i64>, Form(f): Form<ApproveForm>) -> Result<Response, Error> {
    s.check_csrf(&f.csrf)?;
    may_approve(&state, &s)?;
    if let Some(body) = f.body.map(|b| b.replace("\r\n", "\n")) {
        let current = state.store.draft(id).await?;
        if current.status == "pending" && body.trim_end() != current.body.trim_end() {
            approve::edit(&state.store, &state.policy, id, &s.user, &body).await.map_err(|e| decided(&s, e))?;
        }
    }
    let from = EmailAddress::parse(&state.cfg.company.from_address).map_err(|e| Error::BadRequest(format!("the company's from address is invalid: {e}")))?;
    approve::approve(&state.store, &state.policy, &from, &state.cfg.company.name, id, &s.user).await.map_err(|e| decided(&s, e))?;
    Ok(Redirect::to("/approvals?done=approved").into_response())
}

#[tracing::instrument(skip_all, fields(user = %s.user.id, draft = id))]
async fn reject(State(state): State<WebState>, s: Session, Path(id): Path<i64>, Form(f): Form<RejectForm>) -> Result<Response, Error> {
    s.check_csrf(&f.csrf)?;
    may_approve(&state, &s)?;
    approve::reject(&state.store, &state.policy, id, &s.user, &f.reason).await.map_err(|e| decided(&s, e))?;
    Ok(Redirect::to("/approvals?done=rejected").into_response())
}

//! api::handlers: one function per route, each with its OpenAPI description.

use super::{ApiError, ApiState, Caller, ErrorBody};
use crate::domain::{EmailAddress, InvoiceNumber, Language, Money, Role, Status};
use crate::flow::{approve, workflow};
use crate::ledger::{ClientRecord, InvoiceRecord, InvoiceStatus, PaymentRecord};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

/// Ledger data comes from the company's accounting: accountants and
/// managers may write it through the API, other roles may not.
fn ledger_writer(c: &Caller) -> Result<(), ApiError> {
    c.writes()?;
    match c.user.role {
        Role::Accountant | Role::Manager => Ok(()),
        r => Err(ApiError::Forbidden(format!("user {} ({r}) may not write ledger data: accountant or manager only", c.user.id))),
    }
}

fn invalid(at: &str, i: usize, e: impl std::fmt::Display) -> ApiError {
    ApiError::Invalid(format!("{at}[{i}]: {e}"))
}

/// A page of a list, oldest first; pass `next_cursor` as `after` for the next.
#[derive(Serialize, ToSchema)]
pub struct Page {
    pub items: Vec<Value>,
    pub next_cursor: Option<i64>,
}

/// Cursor pagination: ids strictly after `after`, at most `limit` (default 50, max 500).
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

impl PageParams {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(50).clamp(1, 500) as usize
    }
}

/// Pages serialisable rows that carry an `id`, by id.
fn page<T: Serialize>(rows: Vec<T>, p: &PageParams) -> Result<Json<Page>, ApiError> {
    let mut items: Vec<Value> = rows.into_iter().map(|r| serde_json::to_value(r).map_err(|e| ApiError::Internal(e.to_string()))).collect::<Result<_, _>>()?;
    items.sort_by_key(|v| v["id"].as_i64().unwrap_or(0));
    let after = p.after.unwrap_or(i64::MIN);
    let mut items: Vec<Value> = items.into_iter().filter(|v| v["id"].as_i64().unwrap_or(0) > after).collect();
    let limit = p.limit();
    let next = (items.len() > limit).then(|| items[limit - 1]["id"].as_i64().unwrap_or(0));
    items.truncate(limit);
    Ok(Json(Page { items, next_cursor: next }))
}

/// How many rows a batch created or updated.
#[derive(Serialize, ToSchema)]
pub struct Upserted {
    pub upserted: usize,
}

// ---- ledger upserts ----

#[derive(Deserialize, ToSchema)]
pub struct ClientIn {
    /// The natural key.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub email_domains: Vec<String>,
    pub account_owner: Option<String>,
    #[serde(default)]
    pub strategic: bool,
    /// fr | en
    pub language: Option<String>,
    /// Identifiers that match e-invoice buyers to this client.
    pub siret: Option<String>,
    pub siren: Option<String>,
    pub vat: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct Batch<T> {
    pub items: Vec<T>,
}

/// Upsert clients by id (one transaction; a bad item refuses the batch).
#[utoipa::path(post, path = "/api/v1/clients", request_body = Batch<ClientIn>, responses((status = 200, body = Upserted), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), tag = "ledger")]
pub async fn upsert_clients(State(s): State<ApiState>, c: Caller, Json(b): Json<Batch<ClientIn>>) -> Result<Json<Upserted>, ApiError> {
    ledger_writer(&c)?;
    let mut recs = vec![];
    for (i, x) in b.items.iter().enumerate() {
        if x.id.trim().is_empty() || x.name.trim().is_empty() {
            return Err(invalid("items", i, "id and name are required"));
        }
        let language: Language = match &x.language {
            Some(l) => l.parse().map_err(|e| invalid("items", i, e))?,
            None => Language::default(),
        };
        recs.push(ClientRecord { line: i as u64, id: x.id.trim().into(), name: x.name.trim().into(), email_domains: x.email_domains.iter().map(|d| d.trim().to_lowercase()).collect(), account_owner: x.account_owner.clone(), strategic: x.strategic, language });
    }
    let n = s.store.import_clients("items", &recs).await?;
    let mut tx = s.store.begin().await?;
    for x in &b.items {
        let party = crate::einvoice::Party { siret: x.siret.clone(), siren: x.siren.clone().or_else(|| x.siret.as_ref().map(|s| s.chars().take(9).collect())), vat: x.vat.clone(), ..Default::default() };
        s.store.add_client_identifiers(&mut tx, x.id.trim(), &crate::store::einvoices::identifiers(&party)).await?;
    }
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    Ok(Json(Upserted { upserted: n }))
}

#[derive(Deserialize, ToSchema)]
pub struct ContactIn {
    /// The natural key.
    pub email: String,
    pub client_id: String,
}

/// Upsert contacts (an address that identifies a client) by email.
#[utoipa::path(post, path = "/api/v1/contacts", request_body = Batch<ContactIn>, responses((status = 200, body = Upserted), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), tag = "ledger")]
pub async fn upsert_contacts(State(s): State<ApiState>, c: Caller, Json(b): Json<Batch<ContactIn>>) -> Result<Json<Upserted>, ApiError> {
    ledger_writer(&c)?;
    let clients: std::collections::HashSet<String> = s.store.clients().await?.into_iter().map(|c| c.id).collect();
    let mut checked = vec![];
    for (i, x) in b.items.iter().enumerate() {
        let e = EmailAddress::parse(&x.email).map_err(|e| invalid("items", i, e))?;
        if !clients.contains(&x.client_id) {
            return Err(invalid("items", i, format!("unknown client {:?}", x.client_id)));
        }
        checked.push((e, x.client_id.clone()));
    }
    let mut tx = s.store.begin().await?;
    for (e, cid) in &checked {
        sqlx::query("INSERT INTO contacts (email, client_id, source, created_at) VALUES ($1, $2, 'api', $3) ON CONFLICT (email) DO UPDATE SET client_id = excluded.client_id")
            .bind(e.as_str())
            .bind(cid)
            .bind(crate::store::now())
            .execute(&mut *tx)
            .await
            .map_err(crate::store::StoreError::from)?;
    }
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    Ok(Json(Upserted { upserted: checked.len() }))
}

#[derive(Deserialize, ToSchema)]
pub struct InvoiceIn {
    /// The natural key.
    pub number: String,
    pub client_id: String,
    #[schema(value_type = String, format = Date)]
    pub issue_date: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub due_date: NaiveDate,
    /// Amount to collect, in cents.
    pub amount_cents: i64,
    pub currency: Option<String>,
    /// open | paid | partially_paid
    pub status: Option<String>,
    pub po_number: Option<String>,
    pub project: Option<String>,
}

/// Upsert invoices by number (one transaction; an unknown client refuses the batch).
#[utoipa::path(post, path = "/api/v1/invoices", request_body = Batch<InvoiceIn>, responses((status = 200, body = Upserted), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), tag = "ledger")]
pub async fn upsert_invoices(State(s): State<ApiState>, c: Caller, Json(b): Json<Batch<InvoiceIn>>) -> Result<Json<Upserted>, ApiError> {
    ledger_writer(&c)?;
    let mut recs = vec![];
    for (i, x) in b.items.iter().enumerate() {
        let status = match x.status.as_deref().unwrap_or("open") {
            "open" => InvoiceStatus::Open,
            "paid" => InvoiceStatus::Paid,
            "partially_paid" => InvoiceStatus::PartiallyPaid,
            other => return Err(invalid("items", i, format!("unknown status {other:?}: expected open, paid or partially_paid"))),
        };
        if x.amount_cents <= 0 {
            return Err(invalid("items", i, "amount_cents must be positive"));
        }
        recs.push(InvoiceRecord {
            line: i as u64,
            number: InvoiceNumber::parse(&x.number).map_err(|e| invalid("items", i, e))?,
            client_id: x.client_id.clone(),
            issue_date: x.issue_date,
            due_date: x.due_date,
            amount: Money(x.amount_cents),
            currency: x.currency.clone().unwrap_or_else(|| "EUR".into()),
            status,
            po_number: x.po_number.clone(),
            project: x.project.clone(),
        });
    }
    Ok(Json(Upserted { upserted: s.store.import_invoices("items", &recs).await? }))
}

#[derive(Deserialize, ToSchema)]
pub struct PaymentIn {
    pub invoice_number: String,
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    pub amount_cents: i64,
}

/// Record payments; the same (invoice, date, amount) twice is recorded once.
#[utoipa::path(post, path = "/api/v1/payments", request_body = Batch<PaymentIn>, responses((status = 200, description = "what the payments did (paid invoices, cancelled reminder drafts, resolutions proposed)"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), tag = "ledger")]
pub async fn record_payments(State(s): State<ApiState>, c: Caller, Json(b): Json<Batch<PaymentIn>>) -> Result<Json<Value>, ApiError> {
    ledger_writer(&c)?;
    let mut recs = vec![];
    for (i, x) in b.items.iter().enumerate() {
        if x.amount_cents <= 0 {
            return Err(invalid("items", i, "amount_cents must be positive"));
        }
        recs.push(PaymentRecord { line: i as u64, invoice_number: InvoiceNumber::parse(&x.invoice_number).map_err(|e| invalid("items", i, e))?, date: x.date, amount: Money(x.amount_cents) });
    }
    let r = crate::flow::payments::import(&s.store, "api", &recs).await?;
    Ok(Json(serde_json::to_value(r).map_err(|e| ApiError::Internal(e.to_string()))?))
}

// ---- cases ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaseFilter {
    pub status: Option<String>,
    pub owner: Option<String>,
    pub client: Option<String>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// List cases (filters: status, owner, client), by id.
#[utoipa::path(get, path = "/api/v1/cases", params(CaseFilter), responses((status = 200, body = Page), (status = 401, body = ErrorBody)), tag = "cases")]
pub async fn list_cases(State(s): State<ApiState>, _c: Caller, Query(f): Query<CaseFilter>) -> Result<Json<Page>, ApiError> {
    let rows: Vec<_> = s.store.cases(f.status.as_deref(), f.owner.as_deref()).await?.into_iter().filter(|c| f.client.as_ref().map(|x| &c.client_id == x).unwrap_or(true)).collect();
    page(rows, &PageParams { after: f.after, limit: f.limit })
}

/// A case with its status history.
#[utoipa::path(get, path = "/api/v1/cases/{id}", params(("id" = i64, Path)), responses((status = 200, description = "the case and its status history"), (status = 404, body = ErrorBody)), tag = "cases")]
pub async fn get_case(State(s): State<ApiState>, _c: Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let c = s.store.case(id).await?;
    let history = s.store.status_history(id).await?;
    Ok(Json(json!({"case": c, "status_history": history})))
}

#[derive(Deserialize, ToSchema)]
pub struct MoveIn {
    /// open | in_analysis | waiting_client | adjustment_approved | refused | resolved
    pub status: String,
    pub reason: Option<String>,
    /// The agreed amount of an adjustment, in cents.
    pub amount_cents: Option<i64>,
}

/// Move a case to another status, as the key's user (policies/statuses.toml).
#[utoipa::path(post, path = "/api/v1/cases/{id}/move", params(("id" = i64, Path)), request_body = MoveIn, responses((status = 200, description = "the move"), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), tag = "cases")]
pub async fn move_case(State(s): State<ApiState>, c: Caller, Path(id): Path<i64>, Json(m): Json<MoveIn>) -> Result<Json<Value>, ApiError> {
    c.writes()?;
    let to: Status = m.status.parse().map_err(|e: crate::domain::DomainError| ApiError::Invalid(e.to_string()))?;
    let req = workflow::MoveRequest { to, role: c.user.role, reason: m.reason.as_deref(), amount: m.amount_cents.map(Money) };
    let today = chrono::Local::now().date_naive();
    match workflow::move_case(&s.store, &s.policy, id, &c.user, &req, today).await {
        Ok(moved) => Ok(Json(serde_json::to_value(moved).map_err(|e| ApiError::Internal(e.to_string()))?)),
        Err(e) => Err(match e {
            workflow::WorkflowError::Role { .. } | workflow::WorkflowError::NotManager { .. } => ApiError::Forbidden(e.to_string()),
            workflow::WorkflowError::NotAllowed { .. } => ApiError::Conflict(e.to_string()),
            workflow::WorkflowError::Missing { .. } | workflow::WorkflowError::BadAmount(_) => ApiError::Invalid(e.to_string()),
            workflow::WorkflowError::Store(e) => e.into(),
        }),
    }
}

// ---- messages ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageFilter {
    pub case: Option<i64>,
    /// case | task | note | unlinked | ignored | sent
    pub disposition: Option<String>,
    /// accepted | processed | failed
    pub state: Option<String>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// Message metadata for the API: never the raw bytes; the parsed text only on the single read.
fn message_json(m: crate::store::messages::MessageRow, with_parsed: bool) -> Value {
    let mut v = serde_json::to_value(&m).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        if with_parsed {
            if let Some(p) = m.parsed.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()) {
                o.insert("parsed".into(), p);
            }
        } else {
            o.remove("parsed");
        }
        if let Some(c) = m.classification.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()) {
            o.insert("classification".into(), c);
        }
    }
    v
}

/// List messages (filters: case, disposition, state), by id.
#[utoipa::path(get, path = "/api/v1/messages", params(MessageFilter), responses((status = 200, body = Page), (status = 401, body = ErrorBody)), tag = "messages")]
pub async fn list_messages(State(s): State<ApiState>, _c: Caller, Query(f): Query<MessageFilter>) -> Result<Json<Page>, ApiError> {
    let rows: Vec<Value> = s.store.messages_where(f.disposition.as_deref(), f.state.as_deref(), f.case).await?.into_iter().map(|m| message_json(m, false)).collect();
    page(rows, &PageParams { after: f.after, limit: f.limit })
}

/// One message, with its parsed form (headers, text, attachments).
#[utoipa::path(get, path = "/api/v1/messages/{id}", params(("id" = i64, Path)), responses((status = 200, description = "the message"), (status = 404, body = ErrorBody)), tag = "messages")]
pub async fn get_message(State(s): State<ApiState>, _c: Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    Ok(Json(message_json(s.store.message(id).await?, true)))
}

// ---- drafts ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DraftFilter {
    /// pending | approved | rejected | cancelled
    pub status: Option<String>,
    pub case: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// List drafts (filters: status, case), by id.
#[utoipa::path(get, path = "/api/v1/drafts", params(DraftFilter), responses((status = 200, body = Page), (status = 401, body = ErrorBody)), tag = "drafts")]
pub async fn list_drafts(State(s): State<ApiState>, _c: Caller, Query(f): Query<DraftFilter>) -> Result<Json<Page>, ApiError> {
    page(s.store.drafts(f.status.as_deref(), f.case).await?, &PageParams { after: f.after, limit: f.limit })
}

/// One draft.
#[utoipa::path(get, path = "/api/v1/drafts/{id}", params(("id" = i64, Path)), responses((status = 200, description = "the draft"), (status = 404, body = ErrorBody)), tag = "drafts")]
pub async fn get_draft(State(s): State<ApiState>, _c: Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(s.store.draft(id).await?).map_err(|e| ApiError::Internal(e.to_string()))?))
}

fn approve_error(e: approve::ApproveError) -> ApiError {
    use approve::ApproveError as E;
    match e {
        E::NotAllowed { .. } => ApiError::Forbidden(e.to_string()),
        E::AlreadyDecided { .. } => ApiError::Conflict(e.to_string()),
        E::NoRecipient { .. } | E::NoReason | E::EmptyEdit => ApiError::Invalid(e.to_string()),
        E::Store(e) => e.into(),
        e => ApiError::Internal(e.to_string()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApprovedOut {
    pub draft_id: i64,
    /// The outbox row queued for sending (replies and reminders).
    pub outbox_id: Option<i64>,
}

/// Approve a pending draft as the key's user, through the approval gate.
#[utoipa::path(post, path = "/api/v1/drafts/{id}/approve", params(("id" = i64, Path)), responses((status = 200, body = ApprovedOut), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), tag = "drafts")]
pub async fn approve_draft(State(s): State<ApiState>, c: Caller, Path(id): Path<i64>) -> Result<Json<ApprovedOut>, ApiError> {
    c.writes()?;
    let from = EmailAddress::parse(&s.cfg.company.from_address).map_err(|e| ApiError::Internal(format!("company.from_address: {e}")))?;
    let a = approve::approve(&s.store, &s.policy, &from, &s.cfg.company.name, id, &c.user).await.map_err(approve_error)?;
    Ok(Json(ApprovedOut { draft_id: a.draft_id, outbox_id: a.outbox_id }))
}

#[derive(Deserialize, ToSchema)]
pub struct RejectIn {
    pub reason: String,
}

/// Reject a pending draft with a reason, as the key's user.
#[utoipa::path(post, path = "/api/v1/drafts/{id}/reject", params(("id" = i64, Path)), request_body = RejectIn, responses((status = 200, description = "rejected"), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), tag = "drafts")]
pub async fn reject_draft(State(s): State<ApiState>, c: Caller, Path(id): Path<i64>, Json(r): Json<RejectIn>) -> Result<Json<Value>, ApiError> {
    c.writes()?;
    approve::reject(&s.store, &s.policy, id, &c.user, &r.reason).await.map_err(approve_error)?;
    Ok(Json(json!({"draft_id": id, "status": "rejected"})))
}

// ---- tasks and audit ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskFilter {
    /// open | done
    pub status: Option<String>,
    pub owner: Option<String>,
    pub case: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// List tasks (filters: status, owner, case), by id.
#[utoipa::path(get, path = "/api/v1/tasks", params(TaskFilter), responses((status = 200, body = Page), (status = 401, body = ErrorBody)), tag = "tasks")]
pub async fn list_tasks(State(s): State<ApiState>, _c: Caller, Query(f): Query<TaskFilter>) -> Result<Json<Page>, ApiError> {
    page(s.store.tasks(f.case, f.owner.as_deref(), f.status.as_deref()).await?, &PageParams { after: f.after, limit: f.limit })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    pub case: Option<i64>,
    /// case | draft | task | invoice | outbox | message | api_key ...
    pub entity: Option<String>,
    pub action: Option<String>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// List audit events (filters: case, entity, action), by id, straight from
/// the database (the trail can be long).
#[utoipa::path(get, path = "/api/v1/audit", params(AuditFilter), responses((status = 200, body = Page), (status = 401, body = ErrorBody)), tag = "audit")]
pub async fn list_audit(State(s): State<ApiState>, _c: Caller, Query(f): Query<AuditFilter>) -> Result<Json<Page>, ApiError> {
    let limit = PageParams { after: None, limit: f.limit }.limit();
    let rows = sqlx::query(
        "SELECT id, at, actor, case_id, entity, entity_id, action, detail, hash FROM audit_events \
         WHERE id > $1 AND ($2 IS NULL OR case_id = $2) AND ($3 IS NULL OR entity = $3) AND ($4 IS NULL OR action = $4) ORDER BY id LIMIT $5",
    )
    .bind(f.after.unwrap_or(0))
    .bind(f.case)
    .bind(f.entity.as_deref())
    .bind(f.action.as_deref())
    .bind(limit as i64 + 1)
    .fetch_all(&s.store.pool)
    .await
    .map_err(crate::store::StoreError::from)?;
    let mut items = vec![];
    for r in &rows {
        let detail: String = r.try_get("detail").map_err(crate::store::StoreError::from)?;
        items.push(json!({
            "id": r.try_get::<i64, _>("id").map_err(crate::store::StoreError::from)?,
            "at": r.try_get::<i64, _>("at").map_err(crate::store::StoreError::from)?,
            "actor": r.try_get::<String, _>("actor").map_err(crate::store::StoreError::from)?,
            "case_id": r.try_get::<Option<i64>, _>("case_id").map_err(crate::store::StoreError::from)?,
            "entity": r.try_get::<String, _>("entity").map_err(crate::store::StoreError::from)?,
            "entity_id": r.try_get::<String, _>("entity_id").map_err(crate::store::StoreError::from)?,
            "action": r.try_get::<String, _>("action").map_err(crate::store::StoreError::from)?,
            "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::String(detail)),
            "hash": r.try_get::<String, _>("hash").map_err(crate::store::StoreError::from)?,
        }));
    }
    let next = (items.len() > limit).then(|| items[limit - 1]["id"].as_i64().unwrap_or(0));
    items.truncate(limit);
    Ok(Json(Page { items, next_cursor: next }))
}

//! web::cases: "my cases" (the cases routed to me, by priority), the open-case
//! list (accountants and managers: filters, sorting, pages), the case page
//! (thread, brief, tasks, history, audit), recording an outcome through
//! `flow::workflow::move_case`, reassigning (managers), and the
//! unlinked-message queue with linking by hand.
//!
//! A sales rep or technical lead who asks for a case that is not theirs gets
//! 404, the same answer as for a case that does not exist.

use super::{age_days, money, sees_all_cases, when, Error, Session, WebState};
use crate::domain::{InvoiceNumber, Money, Role, Status};
use crate::flow::parse::Message;
use crate::flow::workflow::{self, MoveRequest};
use crate::store::cases::CaseRow;
use crate::store::{now, StoreError, Val};
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sqlx::Row;

pub fn router() -> Router<WebState> {
    Router::new()
        .route("/my", get(my_cases))
        .route("/cases", get(list))
        .route("/cases/{id}", get(show))
        .route("/cases/{id}/move", post(move_case))
        .route("/cases/{id}/assign", post(assign))
        .route("/messages/unlinked", get(unlinked))
        .route("/messages/{id}/link", post(link))
}

/// Cases shown per page of the list.
pub const PER_PAGE: i64 = 50;

/// The case, if this person may see it; 404 otherwise (no hint that it
/// exists).
async fn visible(state: &WebState, s: &Session, id: i64) -> Result<CaseRow, Error> {
    let c = match state.store.case(id).await {
        Ok(c) => c,
        Err(StoreError::NotFound(_)) => return Err(Error::NotFound),
        Err(e) => return Err(e.into()),
    };
    if sees_all_cases(s.user.role) || c.owner_id.as_deref() == Some(s.user.id.as_str()) {
        Ok(c)
    } else {
        tracing::warn!(user = %s.user.id, case = id, "case of another person refused");
        Err(Error::NotFound)
    }
}

#[derive(Serialize)]
struct CaseLine {
    id: i64,
    client: String,
    category: String,
    status: String,
    owner: String,
    priority: i64,
    priority_reason: String,
    amount: String,
    age_days: i64,
    deadline: Option<String>,
    escalated: bool,
    invoices: String,
    brief: Option<String>,
    tasks: Vec<String>,
}

fn line(c: &CaseRow, s: &Session, names: &std::collections::HashMap<String, String>) -> CaseLine {
    CaseLine {
        id: c.id,
        client: c.client_name.clone(),
        category: c.category.clone(),
        status: c.status.clone(),
        owner: c.owner_id.as_ref().map(|o| names.get(o).cloned().unwrap_or_else(|| o.clone())).unwrap_or_else(|| "-".into()),
        priority: c.priority,
        priority_reason: c.priority_reason.clone(),
        amount: money(s.lang, c.amount_cents),
        age_days: age_days(c.opened_at),
        deadline: c.deadline.clone(),
        escalated: c.escalated,
        invoices: c.invoices.join(", "),
        brief: None,
        tasks: vec![],
    }
}

async fn names(state: &WebState) -> Result<std::collections::HashMap<String, String>, Error> {
    Ok(state.store.users().await?.into_iter().map(|u| (u.id, u.name)).collect())
}

#[tracing::instrument(skip_all, fields(user = %s.user.id))]
async fn my_cases(State(state): State<WebState>, s: Session) -> Result<Response, Error> {
    let names = names(&state).await?;
    // Already ordered: escalated first, then by priority. Briefs and tasks
    // come in one query each for all the cases.
    let cases = state.store.open_cases_of_owner(&s.user.id).await?;
    let ids: Vec<i64> = cases.iter().map(|c| c.id).collect();
    let (mut briefs, mut tasks) = (state.store.latest_briefs(&ids).await?, state.store.open_task_notes(&ids).await?);
    let mut lines = Vec::with_capacity(cases.len());
    for c in &cases {
        let mut l = line(c, &s, &names);
        l.brief = briefs.remove(&c.id);
        l.tasks = tasks.remove(&c.id).unwrap_or_default();
        lines.push(l);
    }
    let mut ctx = tera::Context::new();
    ctx.insert("cases", &lines);
    state.render("my_cases.html", &s, ctx)
}

/// The list's filters, as the form sends them (empty fields are "any").
#[derive(Deserialize, Serialize, Default, Debug, Clone)]
pub struct Filters {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub client: String,
    #[serde(default)]
    pub min_age: String,
    #[serde(default)]
    pub min_amount: String,
    #[serde(default)]
    pub max_amount: String,
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub page: Option<i64>,
}

fn cents(field: &str, v: &str) -> Result<Option<i64>, Error> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    Money::parse(v.trim()).map(|m| Some(m.cents())).map_err(|_| Error::BadRequest(format!("{field}: expected an amount such as 1250,00, got {v:?}")))
}

/// The WHERE clause and its values for `f` (only whitelisted columns, values
/// always bound).
fn where_clause(f: &Filters, client_ids: Option<&[String]>) -> Result<(String, Vec<Val<'static>>), Error> {
    let mut w = vec![];
    let mut b = vec![];
    let p = |w: &mut Vec<String>, sql: &str, v: Val<'static>, b: &mut Vec<Val<'static>>| {
        b.push(v);
        w.push(sql.replace('?', &format!("${}", b.len())));
    };
    match f.status.as_str() {
        "" | "open" => w.push("c.status <> 'resolved'".into()),
        "all" => {}
        s => {
            let st: Status = s.parse().map_err(|_| Error::BadRequest(format!("unknown status {s:?}")))?;
            p(&mut w, "c.status = ?", Val::from(st.as_str().to_string()), &mut b);
        }
    }
    if !f.category.is_empty() {
        p(&mut w, "c.category = ?", Val::from(f.category.clone()), &mut b);
    }
    match f.owner.as_str() {
        "" => {}
        "none" => w.push("c.owner_id IS NULL".into()),
        o => p(&mut w, "c.owner_id = ?", Val::from(o.to_string()), &mut b),
    }
    match client_ids {
        // The matching clients, found first: the cases of each come along
        // the (client_id, status) index.
        Some([]) => w.push("1 = 0".into()),
        Some(ids) => {
            let first = b.len() + 1;
            b.extend(ids.iter().map(|i| Val::from(i.clone())));
            w.push(format!("c.client_id IN ({})", (first..=b.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")));
        }
        None if !f.client.trim().is_empty() => {
            b.push(Val::from(client_pattern(&f.client)));
            b.push(Val::from(f.client.trim().to_string()));
            w.push(format!("(LOWER(cl.name) LIKE ${} OR c.client_id = ${})", b.len() - 1, b.len()));
        }
        None => {}
    }
    if !f.min_age.trim().is_empty() {
        let d: i64 = f.min_age.trim().parse().map_err(|_| Error::BadRequest(format!("min_age: expected a number of days, got {:?}", f.min_age)))?;
        p(&mut w, "c.opened_at <= ?", Val::I(now() - d * 86_400), &mut b);
    }
    if let Some(c) = cents("min_amount", &f.min_amount)? {
        p(&mut w, "c.amount_cents >= ?", Val::I(c), &mut b);
    }
    if let Some(c) = cents("max_amount", &f.max_amount)? {
        p(&mut w, "c.amount_cents <= ?", Val::I(c), &mut b);
    }
    Ok((if w.is_empty() { String::new() } else { format!(" WHERE {}", w.join(" AND ")) }, b))
}

/// The LIKE pattern of a client filter (lowercase substring).
fn client_pattern(q: &str) -> String {
    format!("%{}%", q.trim().to_lowercase())
}

fn order_by(sort: &str) -> &'static str {
    match sort {
        "amount" => "c.amount_cents DESC, c.id",
        "age" => "c.opened_at ASC, c.id",
        "updated" => "c.updated_at DESC, c.id",
        "client" => "cl.name ASC, c.id",
        "status" => "c.status ASC, c.priority DESC, c.id",
        _ => "c.priority DESC, c.id",
    }
}

/// One page of cases matching `f`, and how many match in all: a count, a
/// page of ids walked along the sort's index (migrations/*/0007_desk.sql),
/// then the page's rows and invoices in two queries. The clients table is
/// joined only when the filter or the sort needs it.
pub async fn search(state: &WebState, f: &Filters) -> Result<(Vec<CaseRow>, i64), Error> {
    // A client filter matches names (substring) or an id; up to this many
    // matching clients go into an IN list, more fall back to a join.
    const MAX_CLIENTS: i64 = 500;
    let client_ids: Option<Vec<String>> = if f.client.trim().is_empty() {
        None
    } else {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM clients WHERE LOWER(name) LIKE $1 OR id = $2 ORDER BY id LIMIT $3")
            .bind(client_pattern(&f.client))
            .bind(f.client.trim())
            .bind(MAX_CLIENTS + 1)
            .fetch_all(&state.store.pool)
            .await
            .map_err(StoreError::from)?;
        (ids.len() as i64 <= MAX_CLIENTS).then_some(ids)
    };
    let (wh, binds) = where_clause(f, client_ids.as_deref())?;
    let bind_all = |sql: String| crate::store::bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds);
    let needs_client = !f.client.trim().is_empty() && client_ids.is_none();
    let join = |needed: bool| if needed { " JOIN clients cl ON cl.id = c.client_id" } else { "" };
    let total: i64 = bind_all(format!("SELECT COUNT(*) FROM cases c{}{wh}", join(needs_client))).fetch_one(&state.store.pool).await.map_err(StoreError::from)?.try_get(0).map_err(StoreError::from)?;
    let page = f.page.unwrap_or(1).max(1);
    let sql = format!("SELECT c.id FROM cases c{}{wh} ORDER BY {} LIMIT {PER_PAGE} OFFSET {}", join(needs_client || f.sort == "client"), order_by(&f.sort), (page - 1) * PER_PAGE);
    let mut ids = vec![];
    for r in bind_all(sql).fetch_all(&state.store.pool).await.map_err(StoreError::from)? {
        ids.push(r.try_get::<i64, _>(0).map_err(StoreError::from)?);
    }
    Ok((state.store.cases_by_ids(&ids).await?, total))
}

#[tracing::instrument(skip_all, fields(user = %s.user.id))]
async fn list(State(state): State<WebState>, s: Session, Query(f): Query<Filters>) -> Result<Response, Error> {
    if !sees_all_cases(s.user.role) {
        return Err(Error::Forbidden);
    }
    let (rows, total) = search(&state, &f).await?;
    let names = names(&state).await?;
    let lines: Vec<CaseLine> = rows.iter().map(|c| line(c, &s, &names)).collect();
    let page = f.page.unwrap_or(1).max(1);
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let mut keep = f.clone();
    keep.page = None;
    let qs = serde_urlencoded_lite(&keep);
    let mut ctx = tera::Context::new();
    ctx.insert("cases", &lines);
    ctx.insert("f", &f);
    ctx.insert("total", &total);
    ctx.insert("page", &page);
    ctx.insert("pages", &pages);
    ctx.insert("qs", &qs);
    ctx.insert("sorts", &["priority", "amount", "age", "updated", "client", "status"]);
    ctx.insert("statuses", &Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    ctx.insert("categories", &crate::domain::Category::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>());
    let mut users: Vec<(String, String)> = names.into_iter().collect();
    users.sort();
    ctx.insert("users", &users);
    state.render("cases.html", &s, ctx)
}

/// The filters as a query string, for the page links.
fn serde_urlencoded_lite(f: &Filters) -> String {
    let enc = |v: &str| v.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    [("status", &f.status), ("category", &f.category), ("owner", &f.owner), ("client", &f.client), ("min_age", &f.min_age), ("min_amount", &f.min_amount), ("max_amount", &f.max_amount), ("sort", &f.sort)]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Serialize)]
struct ThreadItem {
    id: i64,
    direction: String,
    from: String,
    date: String,
    subject: String,
    new_text: String,
    quoted: String,
    category: String,
}

#[derive(Deserialize, Default)]
pub struct ShowQuery {
    #[serde(default)]
    done: Option<String>,
}

#[tracing::instrument(skip_all, fields(user = %s.user.id, case = id))]
async fn show(State(state): State<WebState>, s: Session, Path(id): Path<i64>, Query(q): Query<ShowQuery>) -> Result<Response, Error> {
    let c = visible(&state, &s, id).await?;
    let store = &state.store;
    let names = names(&state).await?;
    let numbers: Vec<InvoiceNumber> = c.invoices.iter().filter_map(|n| InvoiceNumber::parse(n).ok()).collect();
    let invoices: Vec<serde_json::Value> = store
        .invoices_by_number(&numbers)
        .await?
        .into_iter()
        .map(|i| serde_json::json!({"number": i.number.to_string(), "amount": money(s.lang, i.amount.cents()), "due_date": i.due_date, "status": i.status}))
        .collect();
    let mut thread = vec![];
    for m in store.messages_where(None, None, Some(id)).await? {
        let p = m.parsed.as_deref().and_then(|p| serde_json::from_str::<Message>(p).ok());
        thread.push(ThreadItem {
            id: m.id,
            direction: m.direction,
            from: m.from_addr.unwrap_or_default(),
            date: m.date_at.map(when).unwrap_or_default(),
            subject: m.subject.unwrap_or_default(),
            new_text: p.as_ref().map(|p| p.new_text.clone()).unwrap_or_default(),
            quoted: p.map(|p| p.quoted).unwrap_or_default(),
            category: m.category.unwrap_or_default(),
        });
    }
    let drafts = store.drafts(None, Some(id)).await?;
    let brief = drafts.iter().rfind(|d| d.kind == "brief").map(|d| d.body.clone());
    let tasks = store.tasks(Some(id), None, None).await?;
    let history: Vec<serde_json::Value> = store
        .status_history(id)
        .await?
        .into_iter()
        .map(|h| serde_json::json!({"at": when(h.at), "from": h.from_status, "to": h.to_status, "actor": h.actor, "reason": h.reason}))
        .collect();
    let audit: Vec<serde_json::Value> = crate::store::audit::for_case(store, id)
        .await?
        .into_iter()
        .map(|a| serde_json::json!({"at": when(a.at), "actor": a.actor, "entity": format!("{} {}", a.entity, a.entity_id), "action": a.action, "detail": a.detail}))
        .collect();
    // The moves this person may make from here (the workflow checks again).
    let from: Option<Status> = c.status.parse().ok();
    let moves: Vec<&str> = state.policy.statuses.transitions.iter().filter(|t| Some(t.from) == from && t.roles.contains(&s.user.role)).map(|t| t.to.as_str()).collect();
    let mut ctx = tera::Context::new();
    let mut l = line(&c, &s, &names);
    l.brief = brief;
    ctx.insert("c", &l);
    ctx.insert("disputed", &c.disputed_cents.map(|d| money(s.lang, d)));
    ctx.insert("opened", &when(c.opened_at));
    ctx.insert("invoices", &invoices);
    ctx.insert("thread", &thread);
    ctx.insert("drafts", &drafts);
    ctx.insert("tasks", &tasks);
    ctx.insert("history", &history);
    ctx.insert("audit", &audit);
    ctx.insert("moves", &moves);
    ctx.insert("may_assign", &(s.user.role == Role::Manager));
    let mut users: Vec<(String, String)> = names.into_iter().collect();
    users.sort();
    ctx.insert("users", &users);
    ctx.insert("flash", &q.done.as_deref().map(|k| super::i18n::word(s.lang, match k {
        "assigned" => "assigned_ok",
        "linked" => "linked_ok",
        _ => "moved_ok",
    })));
    state.render("case.html", &s, ctx)
}

#[derive(Deserialize)]
pub struct MoveForm {
    #[serde(default)]
    csrf: String,
    to: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    amount: String,
}

#[tracing::instrument(skip_all, fields(user = %s.user.id, case = id))]
async fn move_case(State(state): State<WebState>, s: Session, Path(id): Path<i64>, Form(f): Form<MoveForm>) -> Result<Response, Error> {
    s.check_csrf(&f.csrf)?;
    visible(&state, &s, id).await?;
    let to: Status = f.to.parse().map_err(|_| Error::BadRequest(format!("unknown status {:?}", f.to)))?;
    let amount = cents("amount", &f.amount)?.map(Money);
    let reason = Some(f.reason.trim()).filter(|r| !r.is_empty());
    let req = MoveRequest { to, role: s.user.role, reason, amount };
    workflow::move_case(&state.store, &state.policy, id, &s.user, &req, chrono::Local::now().date_naive()).await?;
    Ok(Redirect::to(&format!("/cases/{id}?done=moved")).into_response())
}

#[derive(Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    csrf: String,
    owner: String,
    #[serde(default)]
    reason: String,
}

#[tracing::instrument(skip_all, fields(user = %s.user.id, case = id))]
async fn assign(State(state): State<WebState>, s: Session, Path(id): Path<i64>, Form(f): Form<AssignForm>) -> Result<Response, Error> {
    s.check_csrf(&f.csrf)?;
    s.require(&[Role::Manager])?;
    visible(&state, &s, id).await?;
    let new_owner = state.store.user(&f.owner).await.map_err(|_| Error::BadRequest(format!("unknown user {:?}", f.owner)))?;
    workflow::reassign(&state.store, id, &s.user, &new_owner, Some(f.reason.trim()).filter(|r| !r.is_empty())).await?;
    Ok(Redirect::to(&format!("/cases/{id}?done=assigned")).into_response())
}

#[derive(Deserialize, Default)]
pub struct UnlinkedQuery {
    #[serde(default)]
    done: Option<String>,
}

#[tracing::instrument(skip_all, fields(user = %s.user.id))]
async fn unlinked(State(state): State<WebState>, s: Session, Query(q): Query<UnlinkedQuery>) -> Result<Response, Error> {
    s.require(&[Role::Manager, Role::Accountant])?;
    let mut items = vec![];
    for m in state.store.messages_where(Some("unlinked"), None, None).await? {
        let p = m.parsed.as_deref().and_then(|p| serde_json::from_str::<Message>(p).ok());
        items.push(serde_json::json!({
            "id": m.id, "from": m.from_addr, "subject": m.subject, "date": m.date_at.map(when),
            "new_text": p.as_ref().map(|p| p.new_text.clone()), "category": m.category,
        }));
    }
    let mut clients: Vec<(String, String)> = state.store.clients().await?.into_iter().map(|c| (c.id, c.name)).collect();
    clients.sort_by(|a, b| a.1.cmp(&b.1));
    let mut ctx = tera::Context::new();
    ctx.insert("messages", &items);
    ctx.insert("clients", &clients);
    ctx.insert("flash", &q.done.as_deref().map(|_| super::i18n::word(s.lang, "linked_ok")));
    state.render("unlinked.html", &s, ctx)
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    csrf: String,
    client: String,
    #[serde(default)]
    invoice: String,
}

#[tracing::instrument(skip_all, fields(user = %s.user.id, message = id))]
async fn link(State(state): State<WebState>, s: Session, Path(id): Path<i64>, Form(f): Form<LinkForm>) -> Result<Response, Error> {
    s.check_csrf(&f.csrf)?;
    s.require(&[Role::Manager, Role::Accountant])?;
    let inv = match f.invoice.trim() {
        "" => None,
        n => Some(InvoiceNumber::parse(n).map_err(|e| Error::BadRequest(format!("invoice: {e}")))?),
    };
    state.store.link_by_hand(id, f.client.trim(), inv.as_ref(), &s.user.id).await?;
    tracing::info!("message linked by hand; running it through the flow again");
    // The message is `accepted` again with the person's link. Run it now so
    // that its case and drafts appear at once; if that fails it stays
    // accepted, and the next pass of `serve` (or `process`) picks it up.
    let mut case = None;
    match crate::app::pipeline(&state.cfg, state.store.clone(), (*state.policy).clone()).await {
        Ok(mut p) => match state.store.accepted_one(id).await? {
            Some(acc) => match p.process(acc).await {
                Ok(o) => case = o.and_then(|o| o.case_id),
                Err(e) => {
                    tracing::warn!(error = %e, "processing the hand-linked message failed; it stays accepted for a retry");
                    state.store.processing_failed(id, &e.to_string(), p.max_attempts).await?;
                }
            },
            None => tracing::info!("already processed by another worker"),
        },
        Err(e) => tracing::warn!(error = %e, "cannot build the flow; the hand-linked message stays accepted for the next pass"),
    }
    Ok(Redirect::to(&match case {
        Some(c) => format!("/cases/{c}?done=linked"),
        None => "/messages/unlinked?done=linked".into(),
    })
    .into_response())
}

//! workflow: the moves people make on a case (`cases move`, `cases assign`)
//! and the daily service-level pass (escalations, priority refresh). Whether
//! a move is allowed is pure ([`check_move`], from `policies/statuses.toml`);
//! applying it is one transaction with its audit events.

use crate::domain::{Money, Role, Status};
use crate::policy::{Policy, PriorityFacts};
use crate::store::audit::{self, Actor, Event};
use crate::store::ledger::User;
use crate::store::{cases::NewTask, Store, StoreError};
use chrono::NaiveDate;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("case {id} is {from}: moving it to {to} is not an allowed transition (allowed from {from}: {allowed})")]
    NotAllowed { id: i64, from: Status, to: Status, allowed: String },
    #[error("a {role} may not move a case from {from} to {to} (allowed: {roles})")]
    Role { role: Role, from: Status, to: Status, roles: String },
    #[error("moving a case to {to} needs {what}")]
    Missing { to: Status, what: &'static str },
    #[error("only a manager may reassign a case; {user} is {role}")]
    NotManager { user: String, role: Role },
    #[error("amount must be positive, got {0}")]
    BadAmount(Money),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a person asks for.
#[derive(Debug, Clone)]
pub struct MoveRequest<'a> {
    pub to: Status,
    pub role: Role,
    pub reason: Option<&'a str>,
    pub amount: Option<Money>,
}

/// Whether the move is allowed, and if not why (pure).
pub fn check_move(policy: &Policy, id: i64, from: Status, req: &MoveRequest<'_>) -> Result<(), WorkflowError> {
    let Some(t) = policy.transition(from, req.to) else {
        let allowed: Vec<&str> = policy.statuses.transitions.iter().filter(|t| t.from == from).map(|t| t.to.as_str()).collect();
        return Err(WorkflowError::NotAllowed { id, from, to: req.to, allowed: if allowed.is_empty() { "none".into() } else { allowed.join(", ") } });
    };
    if !t.roles.contains(&req.role) {
        let roles: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
        return Err(WorkflowError::Role { role: req.role, from, to: req.to, roles: roles.join(", ") });
    }
    for need in &t.requires {
        match need.as_str() {
            "reason" if req.reason.map(str::trim).unwrap_or("").is_empty() => return Err(WorkflowError::Missing { to: req.to, what: "--reason" }),
            "amount" => match req.amount {
                None => return Err(WorkflowError::Missing { to: req.to, what: "--amount (the agreed amount)" }),
                Some(m) if m.cents() <= 0 => return Err(WorkflowError::BadAmount(m)),
                _ => {}
            },
            _ => {}
        }
    }
    Ok(())
}

/// What a move did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Moved {
    pub case_id: i64,
    pub from: Status,
    pub to: Status,
    pub deadline: Option<NaiveDate>,
    pub task_id: Option<i64>,
    pub lifted_blocks: Vec<i64>,
}

/// Moves case `id` as `user` on `today`. Refused moves change nothing.
#[tracing::instrument(skip_all, fields(case = id, user = %user.id, to = %req.to))]
pub async fn move_case(store: &Store, policy: &Policy, id: i64, user: &User, req: &MoveRequest<'_>, today: NaiveDate) -> Result<Moved, WorkflowError> {
    let case = store.case(id).await?;
    let from: Status = case.status.parse().map_err(|e: crate::domain::DomainError| StoreError::Invalid(e.to_string()))?;
    check_move(policy, id, from, req)?;
    let actor = Actor::User(user.id.clone());
    let mut tx = store.begin().await?;
    store.set_case_status(&mut tx, id, from, req.to, &actor.label(), req.reason).await?;
    let deadline = policy.sla_deadline(req.to, today);
    store.set_deadline(&mut tx, id, deadline).await?;
    store.set_case_outcome(&mut tx, id, req.amount.map(|m| m.cents()), req.reason).await?;
    audit::append(
        &mut tx,
        store.backend,
        Event {
            actor: &actor,
            case_id: Some(id),
            entity: "case",
            entity_id: id.to_string(),
            action: "status_changed",
            detail: json!({"from": from.as_str(), "to": req.to.as_str(), "reason": req.reason, "amount_cents": req.amount.map(|m| m.cents()), "role": user.role.as_str(), "deadline": deadline.map(|d| d.to_string())}),
        },
    )
    .await?;
    let mut task_id = None;
    if req.to == Status::AdjustmentApproved {
        // The accountant issues the credit note or corrected invoice.
        let staff = store.staff().await?;
        let owner = crate::flow::decide::assign(policy, Role::Accountant, None, &staff).map(|(id, _)| id);
        let note = format!(
            "issue the credit note or corrected invoice for case {id} ({}): agreed amount {} — {}",
            case.invoices.join(", "),
            req.amount.unwrap_or_default(),
            req.reason.unwrap_or("")
        );
        let tid = store
            .insert_task(&mut tx, &NewTask { case_id: Some(id), invoice_number: case.invoices.first().map(|s| s.as_str()), message_id: None, kind: "issue_credit_note", owner_id: owner.as_deref(), note: &note, due_date: deadline.map(|d| d.to_string()) })
            .await?;
        audit::append(&mut tx, store.backend, Event { actor: &Actor::Policy("statuses".into()), case_id: Some(id), entity: "task", entity_id: tid.to_string(), action: "created", detail: json!({"kind": "issue_credit_note", "owner": owner}) }).await?;
        task_id = Some(tid);
    }
    let mut lifted = vec![];
    if req.to.is_closed() {
        lifted = store.lift_case_blocks(&mut tx, id, "case resolved").await?;
        for b in &lifted {
            audit::append(&mut tx, store.backend, Event { actor: &actor, case_id: Some(id), entity: "reminder_block", entity_id: b.to_string(), action: "lifted", detail: json!({"why": "case resolved"}) }).await?;
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(from = %from, "case moved");
    Ok(Moved { case_id: id, from, to: req.to, deadline, task_id, lifted_blocks: lifted })
}

/// Gives case `id` to `new_owner`; only a manager may.
#[tracing::instrument(skip_all, fields(case = id, user = %manager.id))]
pub async fn reassign(store: &Store, id: i64, manager: &User, new_owner: &User, reason: Option<&str>) -> Result<(), WorkflowError> {
    if manager.role != Role::Manager {
        return Err(WorkflowError::NotManager { user: manager.id.clone(), role: manager.role });
    }
    let case = store.case(id).await?;
    let mut tx = store.begin().await?;
    store.set_owner(&mut tx, id, &new_owner.id).await?;
    audit::append(
        &mut tx,
        store.backend,
        Event { actor: &Actor::User(manager.id.clone()), case_id: Some(id), entity: "case", entity_id: id.to_string(), action: "reassigned", detail: json!({"from": case.owner_id, "to": new_owner.id, "reason": reason}) },
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// What the daily service-level pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SlaReport {
    pub escalated: Vec<i64>,
    pub reprioritised: usize,
}

/// Escalates cases past their deadline (one task for a manager each, once
/// per status) and refreshes priorities (age and days past due move daily).
pub async fn daily_sla(store: &Store, policy: &Policy, today: NaiveDate) -> Result<SlaReport, WorkflowError> {
    let mut rep = SlaReport::default();
    let staff = store.staff().await?;
    let sla = Actor::Policy("sla".into());
    for late in store.late_cases(today).await? {
        let mut tx = store.begin().await?;
        if !store.mark_escalated(&mut tx, late.id).await? {
            continue;
        }
        let manager = crate::flow::decide::assign(policy, Role::Manager, None, &staff).map(|(id, _)| id);
        let note = format!("case {} has been {} past its deadline of {} (owner {})", late.id, late.status, late.deadline, late.owner_id.as_deref().unwrap_or("none"));
        let tid = store
            .insert_task(&mut tx, &NewTask { case_id: Some(late.id), invoice_number: None, message_id: None, kind: "escalation", owner_id: manager.as_deref(), note: &note, due_date: Some(today.to_string()) })
            .await?;
        audit::append(&mut tx, store.backend, Event { actor: &sla, case_id: Some(late.id), entity: "case", entity_id: late.id.to_string(), action: "escalated", detail: json!({"status": late.status, "deadline": late.deadline, "task": tid, "manager": manager}) }).await?;
        tx.commit().await.map_err(StoreError::from)?;
        rep.escalated.push(late.id);
    }
    let day_start = today.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp();
    for c in store.cases_for_priority().await? {
        let days_past_due = c.oldest_due.as_deref().and_then(|d| d.parse::<NaiveDate>().ok()).map(|d| (today - d).num_days()).unwrap_or(0);
        let category = c.category.parse().ok();
        let (score, why) = policy.priority_of(&PriorityFacts {
            at_stake: Money(c.amount_cents),
            days_past_due,
            strategic: c.strategic,
            dispute: c.kind == "dispute",
            category,
            client_id: Some(&c.client_id),
            age_days: ((day_start - c.opened_at) / 86_400).max(0),
        });
        if score != c.priority {
            let mut tx = store.begin().await?;
            store.set_priority(&mut tx, c.id, score, &why).await?;
            audit::append(&mut tx, store.backend, Event { actor: &Actor::Policy("priority".into()), case_id: Some(c.id), entity: "case", entity_id: c.id.to_string(), action: "priority_changed", detail: json!({"from": c.priority, "to": score, "why": why}) }).await?;
            tx.commit().await.map_err(StoreError::from)?;
            rep.reprioritised += 1;
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_table() {
        let p = Policy::embedded();
        use Role::*;
        use Status::*;
        let m = |to, role, reason: Option<&'static str>, amount: Option<i64>| MoveRequest { to, role, reason, amount: amount.map(Money) };
        // (from, request, ok?, error text)
        let cases: Vec<(Status, MoveRequest, Option<&str>)> = vec![
            (Open, m(InAnalysis, Sales, None, None), None),
            (InAnalysis, m(WaitingClient, Technical, None, None), None),
            (WaitingClient, m(InAnalysis, Accountant, None, None), None),
            (InAnalysis, m(AdjustmentApproved, Sales, Some("remise accordée"), Some(12_000)), None),
            (InAnalysis, m(AdjustmentApproved, Sales, Some("remise"), None), Some("needs --amount")),
            (InAnalysis, m(AdjustmentApproved, Sales, Some("remise"), Some(0)), Some("amount must be positive")),
            (InAnalysis, m(AdjustmentApproved, Accountant, Some("x"), Some(100)), Some("a accountant may not")),
            (InAnalysis, m(Refused, Technical, None, None), Some("needs --reason")),
            (InAnalysis, m(Refused, Technical, Some("  "), None), Some("needs --reason")),
            (InAnalysis, m(Refused, Technical, Some("travaux conformes au PV"), None), None),
            (AdjustmentApproved, m(Resolved, Accountant, None, None), None),
            (AdjustmentApproved, m(Resolved, Sales, None, None), Some("may not")),
            (Open, m(Refused, Manager, Some("x"), None), Some("not an allowed transition (allowed from open: in_analysis")),
            (Resolved, m(Open, Manager, None, None), Some("allowed from resolved: none")),
            (Open, m(Resolved, Manager, Some("doublon"), None), None),
            (Open, m(Resolved, Accountant, Some("doublon"), None), Some("may not")),
        ];
        for (from, req, want) in cases {
            let got = check_move(&p, 7, from, &req);
            match (want, got) {
                (None, Ok(())) => {}
                (Some(text), Err(e)) => assert!(e.to_string().contains(text), "{from} -> {}: {e}", req.to),
                (want, got) => panic!("{from} -> {} as {}: want {want:?}, got {got:?}", req.to, req.role),
            }
        }
    }
}

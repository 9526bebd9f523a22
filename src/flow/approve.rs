//! approve: the approval gate. A person allowed by policy approves, edits or
//! rejects a pending draft; every decision is recorded (who, when, what
//! changed) with an audit event. Approving a reply writes exactly one outbox
//! row in the same transaction — the only way anything reaches a client
//! (invariant 1).

use crate::domain::EmailAddress;
use crate::mail::smtp::{self, OutgoingMail};
use crate::policy::Policy;
use crate::store::audit::{self, Actor, Event};
use crate::store::ledger::User;
use crate::store::{Store, StoreError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("user {user} ({role}) may not approve, edit or reject drafts: allowed roles are {allowed}")]
    NotAllowed { user: String, role: String, allowed: String },
    #[error("draft {id} is already {status}")]
    AlreadyDecided { id: i64, status: String },
    #[error("draft {id} has no recipient address")]
    NoRecipient { id: i64 },
    #[error("a rejection needs a reason")]
    NoReason,
    #[error("the edited text is empty")]
    EmptyEdit,
    #[error("cannot build the outgoing message: {0}")]
    Render(#[from] smtp::SmtpError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ApproveError {
    fn from(e: sqlx::Error) -> Self {
        ApproveError::Store(StoreError::Db(e))
    }
}

/// What an approval produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub draft_id: i64,
    /// The outbox row, for drafts that go to a client (replies, reminders).
    pub outbox_id: Option<i64>,
}

fn check_role(policy: &Policy, user: &User) -> Result<(), ApproveError> {
    if policy.may_approve(user.role) {
        Ok(())
    } else {
        Err(ApproveError::NotAllowed {
            user: user.id.clone(),
            role: user.role.to_string(),
            allowed: policy.routing.approval.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

/// Moves a pending draft to `status`; fails if it is no longer pending (a
/// second tab, a second approver, a second run).
async fn decide_draft(tx: &mut crate::store::Tx, id: i64, status: &str, user: &str, reason: Option<&str>) -> Result<(), ApproveError> {
    let done = sqlx::query("UPDATE drafts SET status = $2, decided_by = $3, decided_at = $4, reason = $5 WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .bind(status)
        .bind(user)
        .bind(crate::store::now())
        .bind(reason)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        let current: Option<String> = sqlx::query_scalar("SELECT status FROM drafts WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
        return match current {
            Some(status) => Err(ApproveError::AlreadyDecided { id, status }),
            None => Err(StoreError::NotFound(format!("draft {id}")).into()),
        };
    }
    Ok(())
}

/// Approves a draft as `user`. A reply or reminder is queued for sending.
#[tracing::instrument(skip_all, fields(draft = draft_id, user = %user.id))]
pub async fn approve(store: &Store, policy: &Policy, from: &EmailAddress, from_name: &str, draft_id: i64, user: &User) -> Result<Approved, ApproveError> {
    check_role(policy, user)?;
    let draft = store.draft(draft_id).await?;
    let mut tx = store.begin().await?;
    decide_draft(&mut tx, draft_id, "approved", &user.id, None).await?;
    let actor = Actor::User(user.id.clone());
    let mut outbox_id = None;
    if draft.kind != "brief" {
        let to = draft.to_addr.as_deref().and_then(|a| EmailAddress::parse(a).ok()).ok_or(ApproveError::NoRecipient { id: draft_id })?;
        // Thread to the client's message.
        let (in_reply_to, mut references) = match draft.message_id {
            Some(m) => {
                let row = store.message(m).await?;
                let refs: Vec<String> = row
                    .parsed
                    .as_deref()
                    .and_then(|p| serde_json::from_str::<crate::flow::parse::Message>(p).ok())
                    .map(|p| p.references)
                    .unwrap_or_default();
                (row.message_id.clone(), refs)
            }
            None => (None, vec![]),
        };
        if let Some(id) = &in_reply_to {
            references.push(id.clone());
        }
        let mail = OutgoingMail {
            from: from.clone(),
            from_name: Some(from_name.to_string()),
            to: vec![to.clone()],
            cc: vec![],
            subject: draft.subject.clone(),
            body_text: draft.body.clone(),
            message_id: smtp::new_message_id(from.domain()),
            in_reply_to,
            references,
            date: chrono::Utc::now(),
        };
        let raw = smtp::render(&mail)?;
        let oid = store.insert_outbox(&mut tx, draft_id, &mail.message_id, from.as_str(), to.as_str(), &raw).await?;
        outbox_id = Some(oid);
    }
    audit::append(
        &mut tx,
        store.backend,
        Event { actor: &actor, case_id: draft.case_id, entity: "draft", entity_id: draft_id.to_string(), action: "approved", detail: json!({"kind": draft.kind, "outbox": outbox_id, "role": user.role.as_str()}) },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(outbox = outbox_id, "draft approved");
    Ok(Approved { draft_id, outbox_id })
}

/// Rejects a draft with a reason.
pub async fn reject(store: &Store, policy: &Policy, draft_id: i64, user: &User, reason: &str) -> Result<(), ApproveError> {
    check_role(policy, user)?;
    if reason.trim().is_empty() {
        return Err(ApproveError::NoReason);
    }
    let draft = store.draft(draft_id).await?;
    let mut tx = store.begin().await?;
    decide_draft(&mut tx, draft_id, "rejected", &user.id, Some(reason.trim())).await?;
    audit::append(
        &mut tx,
        store.backend,
        Event { actor: &Actor::User(user.id.clone()), case_id: draft.case_id, entity: "draft", entity_id: draft_id.to_string(), action: "rejected", detail: json!({"reason": reason.trim()}) },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces a pending draft's text; the before and after are kept.
pub async fn edit(store: &Store, policy: &Policy, draft_id: i64, user: &User, body: &str) -> Result<(), ApproveError> {
    check_role(policy, user)?;
    if body.trim().is_empty() {
        return Err(ApproveError::EmptyEdit);
    }
    let draft = store.draft(draft_id).await?;
    if draft.status != "pending" {
        return Err(ApproveError::AlreadyDecided { id: draft_id, status: draft.status });
    }
    let mut tx = store.begin().await?;
    let done = sqlx::query("UPDATE drafts SET body = $2 WHERE id = $1 AND status = 'pending' AND body = $3").bind(draft_id).bind(body).bind(&draft.body).execute(&mut *tx).await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!("draft {draft_id} changed meanwhile: reload it")).into());
    }
    sqlx::query("INSERT INTO draft_edits (draft_id, user_id, at, before_body, after_body) VALUES ($1, $2, $3, $4, $5)")
        .bind(draft_id)
        .bind(&user.id)
        .bind(crate::store::now())
        .bind(&draft.body)
        .bind(body)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        store.backend,
        Event { actor: &Actor::User(user.id.clone()), case_id: draft.case_id, entity: "draft", entity_id: draft_id.to_string(), action: "edited", detail: json!({"before_chars": draft.body.chars().count(), "after_chars": body.chars().count()}) },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

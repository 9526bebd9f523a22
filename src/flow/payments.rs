//! payments: `import payments FILE.csv` marks invoices paid or partly paid,
//! cancels the pending reminder drafts of paid invoices, and proposes (a task
//! for the owner, never an automatic move) resolving cases whose invoices
//! are all settled. The whole file is one transaction: a bad row refuses it.

use crate::ledger::PaymentRecord;
use crate::store::audit::{self, Actor, Event};
use crate::store::cases::NewTask;
use crate::store::{Store, StoreError};
use serde_json::json;

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PaymentsReport {
    pub recorded: usize,
    pub already_imported: usize,
    pub paid: Vec<String>,
    pub partly_paid: Vec<String>,
    pub cancelled_drafts: Vec<i64>,
    pub resolve_proposed: Vec<i64>,
}

pub async fn import(store: &Store, file: &str, rows: &[PaymentRecord]) -> Result<PaymentsReport, StoreError> {
    let mut rep = PaymentsReport::default();
    let actor = Actor::Policy("payments".into());
    let mut tx = store.begin().await?;
    for p in rows {
        let n = p.invoice_number.as_str();
        let Some((paid, amount)) = store
            .add_payment(&mut tx, n, p.date, p.amount.cents(), file)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(what) => StoreError::Invalid(format!("{file}:{}:invoice_number: {what}", p.line)),
                e => e,
            })?
        else {
            rep.already_imported += 1;
            continue;
        };
        rep.recorded += 1;
        let settled = paid >= amount;
        audit::append(&mut tx, store.backend, Event { actor: &actor, case_id: None, entity: "invoice", entity_id: n.to_string(), action: "payment_recorded", detail: json!({"date": p.date.to_string(), "amount_cents": p.amount.cents(), "paid_cents": paid, "invoice_cents": amount, "file": file, "line": p.line}) }).await?;
        if !settled {
            rep.partly_paid.push(n.to_string());
            continue;
        }
        rep.paid.push(n.to_string());
        for did in store.pending_reminder_drafts_of(&mut tx, n).await? {
            if store.cancel_reminder_draft(&mut tx, did, n, &format!("invoice {n} paid")).await? {
                audit::append(&mut tx, store.backend, Event { actor: &actor, case_id: None, entity: "draft", entity_id: did.to_string(), action: "cancelled", detail: json!({"why": "invoice paid", "invoice": n}) }).await?;
                rep.cancelled_drafts.push(did);
            }
        }
        for (cid, owner) in store.settled_open_cases(&mut tx, n).await? {
            if rep.resolve_proposed.contains(&cid) {
                continue;
            }
            let note = format!("every invoice of case {cid} is now paid: resolve the case if nothing else is open");
            let tid = store.insert_task(&mut tx, &NewTask { case_id: Some(cid), invoice_number: Some(n), message_id: None, kind: "propose_resolve", owner_id: owner.as_deref(), note: &note, due_date: None }).await?;
            audit::append(&mut tx, store.backend, Event { actor: &actor, case_id: Some(cid), entity: "task", entity_id: tid.to_string(), action: "created", detail: json!({"kind": "propose_resolve", "invoice": n}) }).await?;
            rep.resolve_proposed.push(cid);
        }
    }
    tx.commit().await?;
    Ok(rep)
}

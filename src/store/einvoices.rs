//! store::einvoices: puts checked e-invoices into the ledger and keeps the
//! identifiers (SIRET, SIREN, VAT) that match an e-invoice's buyer to a
//! client.

use super::{now, Result, Store, StoreError, Tx};
use crate::einvoice::{DocKind, EInvoice, Party};
use sqlx::Row;

/// How the buyer of an e-invoice was matched to a client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuyerMatch {
    pub client_id: String,
    /// `siret`, `siren`, `vat`, `name` or `created`.
    pub by: String,
}

/// What to do when no client matches the buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownBuyer {
    Refuse,
    Create,
}

/// Lowercased, accents kept, runs of spaces and punctuation folded: `SARL
/// Ma Jolie-Boutique` and `sarl ma jolie boutique` compare equal.
pub fn name_key(name: &str) -> String {
    name.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The identifiers of a party, strongest first.
pub fn identifiers(p: &Party) -> Vec<(&'static str, String)> {
    let mut v = vec![];
    if let Some(s) = &p.siret {
        v.push(("siret", s.clone()));
    }
    if let Some(s) = &p.siren {
        v.push(("siren", s.clone()));
    }
    if let Some(s) = &p.vat {
        v.push(("vat", s.to_uppercase()));
    }
    v
}

impl Store {
    /// Records identifiers of a client (an existing identifier of another
    /// client is left alone: the first owner keeps it).
    pub async fn add_client_identifiers(&self, tx: &mut Tx, client_id: &str, ids: &[(&str, String)]) -> Result<()> {
        for (scheme, value) in ids {
            sqlx::query("INSERT INTO client_identifiers (scheme, value, client_id) VALUES ($1, $2, $3) ON CONFLICT (scheme, value) DO NOTHING")
                .bind(*scheme)
                .bind(value)
                .bind(client_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The client an e-invoice's buyer is: by SIRET, then SIREN, then VAT
    /// number, then by exactly the same name (folded) when one client only
    /// has it. None when nothing matches.
    pub async fn match_buyer(&self, buyer: &Party) -> Result<Option<BuyerMatch>> {
        for (scheme, value) in identifiers(buyer) {
            let hit: Option<String> = sqlx::query_scalar("SELECT client_id FROM client_identifiers WHERE scheme = $1 AND value = $2")
                .bind(scheme)
                .bind(&value)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(c) = hit {
                return Ok(Some(BuyerMatch { client_id: c, by: scheme.to_string() }));
            }
        }
        if let Some(name) = &buyer.name {
            let key = name_key(name);
            let same: Vec<String> = self.clients().await?.into_iter().filter(|c| name_key(&c.name) == key).map(|c| c.id).collect();
            if same.len() == 1 {
                return Ok(Some(BuyerMatch { client_id: same[0].clone(), by: "name".into() }));
            }
        }
        Ok(None)
    }

    /// Upserts one e-invoice into the ledger (by number), matching or
    /// creating its client; returns the match. The amount the ledger chases
    /// is the amount due (BT-115), else the grand total; a missing due date
    /// is the issue date plus `default_term_days`. A credit note is kept as
    /// `doc_type = credit_note` with status `paid`: nothing to collect, so
    /// the reminder schedule never picks it.
    pub async fn import_einvoice(&self, inv: &EInvoice, unknown: UnknownBuyer, default_term_days: i64) -> Result<BuyerMatch> {
        let m = match self.match_buyer(&inv.buyer).await? {
            Some(m) => m,
            None if unknown == UnknownBuyer::Create => {
                let name = inv.buyer.name.clone().unwrap_or_else(|| "(buyer without a name)".into());
                let id = match identifiers(&inv.buyer).first() {
                    Some((scheme, v)) => format!("{scheme}-{v}").to_lowercase(),
                    None => format!("einv-{}", name_key(&name).replace(' ', "-")),
                };
                let mut tx = self.begin().await?;
                sqlx::query("INSERT INTO clients (id, name, email_domains, account_owner, strategic, language, created_at) VALUES ($1, $2, '', NULL, 0, 'fr', $3) ON CONFLICT (id) DO NOTHING")
                    .bind(&id)
                    .bind(&name)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                BuyerMatch { client_id: id, by: "created".into() }
            }
            None => {
                let ids: Vec<String> = identifiers(&inv.buyer).into_iter().map(|(s, v)| format!("{s} {v}")).collect();
                // Conflict displays the message as is ("… not found" would
                // read oddly after the hint).
                return Err(StoreError::Conflict(format!(
                    "no client for buyer {:?}{} of e-invoice {}: add the client (with its siret or vat) first, or import with --create-clients",
                    inv.buyer.name.as_deref().unwrap_or("(no name)"),
                    if ids.is_empty() { String::new() } else { format!(" ({})", ids.join(", ")) },
                    inv.number
                )));
            }
        };
        let due = inv.due_date.unwrap_or(inv.issue_date + chrono::Duration::days(default_term_days));
        let amount = inv.amount_due.or(inv.grand_total).or(inv.tax_exclusive).unwrap_or_default();
        let (doc_type, status) = match inv.kind {
            DocKind::Invoice => ("invoice", "open"),
            DocKind::CreditNote => ("credit_note", "paid"),
        };
        let mut tx = self.begin().await?;
        // An invoice already paid (payments import) stays paid.
        let current: Option<String> = sqlx::query("SELECT status FROM invoices WHERE number = $1").bind(inv.number.as_str()).fetch_optional(&mut *tx).await?.map(|r| r.try_get::<String, _>(0)).transpose()?;
        let status = current.filter(|s| s != "open").unwrap_or_else(|| status.to_string());
        sqlx::query(
            "INSERT INTO invoices (number, client_id, issue_date, due_date, amount_cents, currency, status, po_number, project, updated_at, \
             doc_type, buyer_reference, tax_exclusive_cents, tax_cents, grand_total_cents, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12, $13, $14, 'einvoice') \
             ON CONFLICT (number) DO UPDATE SET client_id = excluded.client_id, issue_date = excluded.issue_date, due_date = excluded.due_date, \
             amount_cents = excluded.amount_cents, currency = excluded.currency, status = excluded.status, po_number = excluded.po_number, \
             updated_at = excluded.updated_at, doc_type = excluded.doc_type, buyer_reference = excluded.buyer_reference, \
             tax_exclusive_cents = excluded.tax_exclusive_cents, tax_cents = excluded.tax_cents, grand_total_cents = excluded.grand_total_cents, source = excluded.source",
        )
        .bind(inv.number.as_str())
        .bind(&m.client_id)
        .bind(inv.issue_date.to_string())
        .bind(due.to_string())
        .bind(amount.cents())
        .bind(&inv.currency)
        .bind(&status)
        .bind(inv.order_reference.clone())
        .bind(now())
        .bind(doc_type)
        .bind(inv.buyer_reference.clone())
        .bind(inv.tax_exclusive.map(|m| m.cents()))
        .bind(inv.tax.map(|m| m.cents()))
        .bind(inv.grand_total.map(|m| m.cents()))
        .execute(&mut *tx)
        .await?;
        self.add_client_identifiers(&mut tx, &m.client_id, &identifiers(&inv.buyer)).await?;
        tx.commit().await?;
        Ok(m)
    }
}

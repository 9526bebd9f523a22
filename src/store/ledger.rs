//! store::ledger: users, clients, contacts and invoices; the link directory.

use super::{now, Result, Store, StoreError};
use crate::domain::{EmailAddress, InvoiceNumber, Language, Money, Role};
use crate::flow::link::{ClientRef, Directory, InvoiceRef};
use crate::ledger::{ClientRecord, InvoiceRecord, UserRecord};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// A user as the rest of the flow sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
}

/// A client with what decide and draft need.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub account_owner: Option<String>,
    pub strategic: bool,
    pub language: Language,
}

/// An invoice with what decide and draft need.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Invoice {
    pub number: InvoiceNumber,
    pub client_id: String,
    pub issue_date: String,
    pub due_date: String,
    pub amount: Money,
    pub currency: String,
    pub status: String,
    pub po_number: Option<String>,
    pub project: Option<String>,
    pub promised_date: Option<String>,
}

fn bad(file: &str, line: u64, col: &str, reason: String) -> StoreError {
    StoreError::Invalid(format!("{file}:{line}:{col}: {reason}"))
}

impl Store {
    /// Upserts users by id, in one transaction.
    pub async fn import_users(&self, users: &[UserRecord]) -> Result<usize> {
        let mut tx = self.begin().await?;
        for u in users {
            sqlx::query(
                "INSERT INTO users (id, name, email, role, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, role = excluded.role",
            )
            .bind(&u.id)
            .bind(&u.name)
            .bind(u.email.as_str())
            .bind(u.role.as_str())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(users.len())
    }

    /// Upserts clients by id, in one transaction; an unknown account owner
    /// refuses the whole file.
    pub async fn import_clients(&self, file: &str, clients: &[ClientRecord]) -> Result<usize> {
        let users: HashSet<String> = self.users().await?.into_iter().map(|u| u.id).collect();
        for c in clients {
            if let Some(o) = &c.account_owner {
                if !users.contains(o) {
                    return Err(bad(file, c.line, "4 (account_owner)", format!("unknown user {o:?}: import users first")));
                }
            }
        }
        let mut tx = self.begin().await?;
        for c in clients {
            sqlx::query(
                "INSERT INTO clients (id, name, email_domains, account_owner, strategic, language, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, email_domains = excluded.email_domains, \
                 account_owner = excluded.account_owner, strategic = excluded.strategic, language = excluded.language",
            )
            .bind(&c.id)
            .bind(&c.name)
            .bind(c.email_domains.join(";"))
            .bind(c.account_owner.clone())
            .bind(c.strategic as i64)
            .bind(c.language.as_str())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(clients.len())
    }

    /// Upserts invoices by number, in one transaction; an unknown client
    /// refuses the whole file. A promise already recorded is kept.
    pub async fn import_invoices(&self, file: &str, invoices: &[InvoiceRecord]) -> Result<usize> {
        let clients: HashSet<String> = self.clients().await?.into_iter().map(|c| c.id).collect();
        for i in invoices {
            if !clients.contains(&i.client_id) {
                return Err(bad(file, i.line, "2 (client_id)", format!("unknown client {:?}: import clients first", i.client_id)));
            }
        }
        let mut tx = self.begin().await?;
        for i in invoices {
            sqlx::query(
                "INSERT INTO invoices (number, client_id, issue_date, due_date, amount_cents, currency, status, po_number, project, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (number) DO UPDATE SET client_id = excluded.client_id, issue_date = excluded.issue_date, \
                 due_date = excluded.due_date, amount_cents = excluded.amount_cents, currency = excluded.currency, \
                 status = excluded.status, po_number = excluded.po_number, project = excluded.project, updated_at = excluded.updated_at",
            )
            .bind(i.number.as_str())
            .bind(&i.client_id)
            .bind(i.issue_date.to_string())
            .bind(i.due_date.to_string())
            .bind(i.amount.cents())
            .bind(&i.currency)
            .bind(i.status.as_str())
            .bind(i.po_number.clone())
            .bind(i.project.clone())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(invoices.len())
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT id, name, email, role FROM users ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                Ok(User {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    email: r.try_get("email")?,
                    role: role.parse().map_err(|e: crate::domain::DomainError| StoreError::Invalid(e.to_string()))?,
                })
            })
            .collect()
    }

    pub async fn user(&self, id_or_email: &str) -> Result<User> {
        let key = id_or_email.trim().to_lowercase();
        self.users()
            .await?
            .into_iter()
            .find(|u| u.id.to_lowercase() == key || u.email.to_lowercase() == key)
            .ok_or_else(|| StoreError::NotFound(format!("user {id_or_email:?}")))
    }

    pub async fn clients(&self) -> Result<Vec<Client>> {
        let rows = sqlx::query("SELECT id, name, account_owner, strategic, language FROM clients ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let lang: String = r.try_get("language")?;
                Ok(Client {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    account_owner: r.try_get("account_owner")?,
                    strategic: r.try_get::<i64, _>("strategic")? != 0,
                    language: lang.parse().unwrap_or_default(),
                })
            })
            .collect()
    }

    pub async fn invoices_by_number(&self, numbers: &[InvoiceNumber]) -> Result<Vec<Invoice>> {
        let mut c = self.pool.acquire().await?;
        Self::invoices_by_number_in(&mut c, numbers).await
    }

    /// [`Store::invoices_by_number`] on a given connection (the flow's
    /// transaction), in one query: the invoices in the order of `numbers`,
    /// those not in the ledger left out.
    pub async fn invoices_by_number_in(c: &mut sqlx::AnyConnection, numbers: &[InvoiceNumber]) -> Result<Vec<Invoice>> {
        if numbers.is_empty() {
            return Ok(vec![]);
        }
        let mut found: std::collections::HashMap<String, Invoice> = std::collections::HashMap::new();
        for part in numbers.chunks(super::MAX_ROWS) {
            let marks: Vec<String> = (1..=part.len()).map(|k| format!("${k}")).collect();
            let sql = format!(
                "SELECT number, client_id, issue_date, due_date, amount_cents, currency, status, po_number, project, promised_date FROM invoices WHERE number IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in part {
                q = q.bind(n.as_str());
            }
            for r in q.fetch_all(&mut *c).await? {
                let i = invoice_from_row(&r)?;
                found.insert(i.number.as_str().to_string(), i);
            }
        }
        Ok(numbers.iter().filter_map(|n| found.get(n.as_str()).cloned()).collect())
    }

    /// Open (unpaid) invoices of a client, oldest due first.
    pub async fn open_invoices_of(&self, client_id: &str) -> Result<Vec<Invoice>> {
        let rows = sqlx::query(
            "SELECT number, client_id, issue_date, due_date, amount_cents, currency, status, po_number, project, promised_date FROM invoices \
             WHERE client_id = $1 AND status <> 'paid' ORDER BY due_date, number",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invoice_from_row).collect()
    }

    /// Everything the link stage needs, in memory.
    pub async fn directory(&self) -> Result<Directory> {
        let clients = sqlx::query("SELECT id, name, email_domains FROM clients ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let domains: String = r.try_get("email_domains")?;
                Ok(ClientRef {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    domains: domains.split(';').map(|d| d.trim().to_lowercase()).filter(|d| !d.is_empty()).collect(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let invoices = sqlx::query("SELECT number, client_id, po_number, project, amount_cents FROM invoices ORDER BY number")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let n: String = r.try_get("number")?;
                Ok(InvoiceRef {
                    number: InvoiceNumber::parse(&n).map_err(|e| StoreError::Invalid(e.to_string()))?,
                    client_id: r.try_get("client_id")?,
                    po_number: r.try_get("po_number")?,
                    project: r.try_get("project")?,
                    amount: Money(r.try_get("amount_cents")?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut contacts = HashMap::new();
        for r in sqlx::query("SELECT email, client_id FROM contacts").fetch_all(&self.pool).await? {
            let e: String = r.try_get("email")?;
            if let Ok(e) = EmailAddress::parse(&e) {
                contacts.insert(e, r.try_get::<String, _>("client_id")?);
            }
        }
        Ok(Directory::new(clients, invoices, contacts))
    }

    /// Remembers an address as a contact of a client (first source wins).
    pub async fn add_contact(&self, tx: &mut super::Tx, email: &EmailAddress, client_id: &str, source: &str) -> Result<()> {
        sqlx::query("INSERT INTO contacts (email, client_id, source, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING")
            .bind(email.as_str())
            .bind(client_id)
            .bind(source)
            .bind(now())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

pub(crate) fn invoice_from_row(r: &sqlx::any::AnyRow) -> Result<Invoice> {
    let n: String = r.try_get("number")?;
    Ok(Invoice {
        number: InvoiceNumber::parse(&n).map_err(|e| StoreError::Invalid(e.to_string()))?,
        client_id: r.try_get("client_id")?,
        issue_date: r.try_get("issue_date")?,
        due_date: r.try_get("due_date")?,
        amount: Money(r.try_get("amount_cents")?),
        currency: r.try_get("currency")?,
        status: r.try_get("status")?,
        po_number: r.try_get("po_number")?,
        project: r.try_get("project")?,
        promised_date: r.try_get("promised_date")?,
    })
}

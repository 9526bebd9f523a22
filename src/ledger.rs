//! ledger: reads the company's people, clients and invoices from CSV files in
//! the corpus format (`../shared/corpus/FORMAT.md`) into checked records. Pure:
//! it takes the file's text and name; a bad row is refused with its file,
//! line, column and reason, and then nothing from that file is imported.

use crate::domain::{DomainError, EmailAddress, InvoiceNumber, Language, Money, Role};
use chrono::NaiveDate;
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LedgerError {
    #[error("{file}:{line}:{column}: {reason}")]
    Row { file: String, line: u64, column: String, reason: String },
    #[error("{file}: missing column {column:?} (expected header: {expected})")]
    Header { file: String, column: String, expected: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub email: EmailAddress,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientRecord {
    /// Line in the file, for errors found later (unknown account owner).
    pub line: u64,
    pub id: String,
    pub name: String,
    pub email_domains: Vec<String>,
    pub account_owner: Option<String>,
    pub strategic: bool,
    pub language: Language,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvoiceRecord {
    /// Line in the file, for errors found later (unknown client).
    pub line: u64,
    pub number: InvoiceNumber,
    pub client_id: String,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub amount: Money,
    pub currency: String,
    pub status: InvoiceStatus,
    pub po_number: Option<String>,
    pub project: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Open,
    Paid,
    PartiallyPaid,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::PartiallyPaid => "partially_paid",
        }
    }
}

/// A CSV reader over text that hands out fields by column name with
/// positions for error messages.
struct Table<'a> {
    file: &'a str,
    headers: Vec<String>,
    reader: csv::Reader<&'a [u8]>,
}

struct Row<'t> {
    file: &'t str,
    headers: &'t [String],
    rec: csv::StringRecord,
    line: u64,
}

impl<'t> Row<'t> {
    fn idx(&self, col: &str) -> usize {
        self.headers.iter().position(|h| h == col).unwrap_or(usize::MAX)
    }
    fn err(&self, col: &str, reason: impl Into<String>) -> LedgerError {
        let i = self.idx(col);
        LedgerError::Row { file: self.file.to_string(), line: self.line, column: format!("{} ({col})", i.wrapping_add(1)), reason: reason.into() }
    }
    fn get(&self, col: &str) -> &str {
        self.rec.get(self.idx(col)).map(str::trim).unwrap_or("")
    }
    fn required(&self, col: &str) -> Result<&str, LedgerError> {
        let v = self.get(col);
        if v.is_empty() {
            Err(self.err(col, "value is required"))
        } else {
            Ok(v)
        }
    }
    fn optional(&self, col: &str) -> Option<String> {
        let v = self.get(col);
        (!v.is_empty()).then(|| v.to_string())
    }
    fn checked<T>(&self, col: &str, f: impl FnOnce(&str) -> Result<T, DomainError>) -> Result<T, LedgerError> {
        let v = self.required(col)?;
        f(v).map_err(|e| self.err(col, e.to_string()))
    }
    fn date(&self, col: &str) -> Result<NaiveDate, LedgerError> {
        let v = self.required(col)?;
        NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| self.err(col, format!("invalid date {v:?}: expected YYYY-MM-DD")))
    }
}

impl<'a> Table<'a> {
    fn new(file: &'a str, text: &'a str, expected: &[&str]) -> Result<Self, LedgerError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| LedgerError::File { file: file.to_string(), reason: format!("cannot read header: {e}") })?
            .iter()
            .map(|h| h.trim().to_lowercase())
            .collect();
        for col in expected {
            if !headers.iter().any(|h| h == col) {
                return Err(LedgerError::Header { file: file.to_string(), column: col.to_string(), expected: expected.join(",") });
            }
        }
        Ok(Table { file, headers, reader })
    }

    fn rows<T>(mut self, mut f: impl FnMut(&Row<'_>) -> Result<T, LedgerError>) -> Result<Vec<T>, LedgerError> {
        let mut out = Vec::new();
        let mut rec = csv::StringRecord::new();
        loop {
            match self.reader.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {
                    let line = rec.position().map(|p| p.line()).unwrap_or(0);
                    if rec.iter().all(|f| f.trim().is_empty()) {
                        continue;
                    }
                    let row = Row { file: self.file, headers: &self.headers, rec: rec.clone(), line };
                    out.push(f(&row)?);
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    let reason = match e.kind() {
                        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!("expected {expected_len} fields, found {len}"),
                        _ => e.to_string(),
                    };
                    return Err(LedgerError::Row { file: self.file.to_string(), line, column: "-".into(), reason });
                }
            }
        }
        Ok(out)
    }
}

fn no_duplicates<T>(file: &str, items: &[T], key: impl Fn(&T) -> String, col: &str) -> Result<(), LedgerError> {
    let mut seen = std::collections::HashSet::new();
    for (i, it) in items.iter().enumerate() {
        if !seen.insert(key(it)) {
            return Err(LedgerError::Row { file: file.to_string(), line: i as u64 + 2, column: col.to_string(), reason: format!("duplicate {col} {:?}", key(it)) });
        }
    }
    Ok(())
}

pub fn read_users(file: &str, text: &str) -> Result<Vec<UserRecord>, LedgerError> {
    let users = Table::new(file, text, &["id", "name", "email", "role"])?.rows(|r| {
        Ok(UserRecord {
            id: r.required("id")?.to_string(),
            name: r.required("name")?.to_string(),
            email: r.checked("email", EmailAddress::parse)?,
            role: r.checked("role", str::parse)?,
        })
    })?;
    no_duplicates(file, &users, |u| u.id.clone(), "id")?;
    Ok(users)
}

pub fn read_clients(file: &str, text: &str) -> Result<Vec<ClientRecord>, LedgerError> {
    let clients = Table::new(file, text, &["id", "name", "email_domains", "account_owner", "strategic", "language"])?.rows(|r| {
        let strategic = match r.get("strategic").to_lowercase().as_str() {
            "true" | "1" | "yes" | "oui" => true,
            "false" | "0" | "no" | "non" | "" => false,
            other => return Err(r.err("strategic", format!("invalid boolean {other:?}: expected true or false"))),
        };
        let mut domains = Vec::new();
        for d in r.get("email_domains").split(';').map(|d| d.trim().to_lowercase()).filter(|d| !d.is_empty()) {
            if !d.contains('.') || d.contains('@') || d.contains(' ') {
                return Err(r.err("email_domains", format!("invalid domain {d:?}")));
            }
            domains.push(d);
        }
        let language = match r.get("language") {
            "" => Language::Fr,
            v => v.parse().map_err(|e: DomainError| r.err("language", e.to_string()))?,
        };
        Ok(ClientRecord {
            line: r.line,
            id: r.required("id")?.to_string(),
            name: r.required("name")?.to_string(),
            email_domains: domains,
            account_owner: r.optional("account_owner"),
            strategic,
            language,
        })
    })?;
    no_duplicates(file, &clients, |c| c.id.clone(), "id")?;
    Ok(clients)
}

pub fn read_invoices(file: &str, text: &str) -> Result<Vec<InvoiceRecord>, LedgerError> {
    let invoices = Table::new(file, text, &["number", "client_id", "issue_date", "due_date", "amount", "currency", "status", "po_number", "project"])?.rows(|r| {
        let status = match r.required("status")? {
            "open" => InvoiceStatus::Open,
            "paid" => InvoiceStatus::Paid,
            "partially_paid" => InvoiceStatus::PartiallyPaid,
            other => return Err(r.err("status", format!("unknown status {other:?}: expected open, paid or partially_paid"))),
        };
        let currency = r.required("currency")?.to_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(r.err("currency", format!("invalid currency {currency:?}: expected a 3-letter ISO code")));
        }
        let issue_date = r.date("issue_date")?;
        let due_date = r.date("due_date")?;
        if due_date < issue_date {
            return Err(r.err("due_date", "due date is before issue date"));
        }
        Ok(InvoiceRecord {
            line: r.line,
            number: r.checked("number", InvoiceNumber::parse)?,
            client_id: r.required("client_id")?.to_string(),
            issue_date,
            due_date,
            amount: r.checked("amount", Money::parse)?,
            currency,
            status,
            po_number: r.optional("po_number"),
            project: r.optional("project"),
        })
    })?;
    no_duplicates(file, &invoices, |i| i.number.to_string(), "number")?;
    Ok(invoices)
}

/// One row of a payments file (`invoice_number,date,amount`).
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRecord {
    pub line: u64,
    pub invoice_number: InvoiceNumber,
    pub date: NaiveDate,
    pub amount: Money,
}

/// Reads a payments file: `invoice_number,date,amount` (ISO date, `.`
/// decimal point). A zero or negative amount is refused.
pub fn read_payments(file: &str, text: &str) -> Result<Vec<PaymentRecord>, LedgerError> {
    Table::new(file, text, &["invoice_number", "date", "amount"])?.rows(|r| {
        let amount = r.checked("amount", Money::parse)?;
        if amount.cents() <= 0 {
            return Err(r.err("amount", format!("a payment must be positive, got {amount}")));
        }
        Ok(PaymentRecord { line: r.line, invoice_number: r.checked("invoice_number", InvoiceNumber::parse)?, date: r.date("date")?, amount })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_payments_and_refuses_bad_rows_with_their_place() {
        let p = read_payments("pay.csv", "invoice_number,date,amount\nFA-1,2026-03-02,1200.50\n").unwrap();
        assert_eq!((p[0].invoice_number.as_str(), p[0].amount), ("FA-1", Money(120_050)));
        let e = read_payments("pay.csv", "invoice_number,date,amount\nFA-1,2026-03-02,12\nFA-2,02/03/2026,5\n").unwrap_err().to_string();
        assert!(e.starts_with("pay.csv:3:") && e.contains("date"), "{e}");
        let e = read_payments("pay.csv", "invoice_number,date,amount\nFA-1,2026-03-02,-4\n").unwrap_err().to_string();
        assert!(e.contains("pay.csv:2:") && e.contains("positive"), "{e}");
    }

    #[test]
    fn reads_valid_users() {
        let u = read_users("users.csv", "id,name,email,role\nU1,Ann,ann@x.fr,accountant\n\nU2,Bob,BOB@x.fr,sales\n").unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].email.as_str(), "bob@x.fr");
        assert_eq!(u[1].role, Role::Sales);
    }

    #[test]
    fn bad_rows_name_file_line_and_column() {
        let e = read_users("users.csv", "id,name,email,role\nU1,Ann,ann@x.fr,accountant\nU2,Bob,bob@x.fr,boss\n").unwrap_err();
        assert_eq!(e.to_string(), "users.csv:3:4 (role): unknown role \"boss\": expected one of accountant sales technical manager ");
        let e = read_invoices(
            "inv.csv",
            "number,client_id,issue_date,due_date,amount,currency,status,po_number,project\nF1,C1,2026-01-01,2026-02-01,12x,EUR,open,,\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("inv.csv:2:5 (amount): invalid amount"), "{e}");
        let e = read_invoices(
            "inv.csv",
            "number,client_id,issue_date,due_date,amount,currency,status,po_number,project\nF1,C1,2026-13-01,2026-02-01,12,EUR,open,,\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("inv.csv:2:3 (issue_date): invalid date"), "{e}");
        let e = read_clients("c.csv", "id,name,email_domains,account_owner,strategic,language\nC1,A,a.fr,U1,maybe,fr\n").unwrap_err();
        assert!(e.to_string().contains("c.csv:2:5 (strategic)"), "{e}");
        let e = read_clients("c.csv", "id,name\nC1,A\n").unwrap_err();
        assert!(matches!(e, LedgerError::Header { .. }));
        let e = read_users("users.csv", "id,name,email,role\nU1,Ann,ann@x.fr\n").unwrap_err();
        assert!(e.to_string().contains("expected 4 fields, found 3"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = read_users("users.csv", "id,name,email,role\nU1,A,a@x.fr,sales\nU1,B,b@x.fr,sales\n").unwrap_err();
        assert!(e.to_string().contains("duplicate id"), "{e}");
    }

    #[test]
    fn reads_clients_and_invoices() {
        let c = read_clients("c.csv", "id,name,email_domains,account_owner,strategic,language\nC1,A,a.fr; B.COM ,U1,true,en\nC2,B,,,false,\n").unwrap();
        assert_eq!(c[0].email_domains, vec!["a.fr", "b.com"]);
        assert!(c[0].strategic && c[0].language == Language::En && c[1].language == Language::Fr);
        let i = read_invoices(
            "i.csv",
            "number,client_id,issue_date,due_date,amount,currency,status,po_number,project\nFA-1,C1,2026-01-01,2026-02-01,1234.56,eur,partially_paid,PO1,\n",
        )
        .unwrap();
        assert_eq!(i[0].amount, Money(123456));
        assert_eq!(i[0].currency, "EUR");
        assert_eq!(i[0].project, None);
    }
}

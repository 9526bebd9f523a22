//! draft: writes the reply to the client and the internal call brief from the
//! Tera templates in `prompts/`, in the client's language. The context holds
//! only case facts (invoices, amounts, dates, owner, history): the client's
//! free text never reaches a template, so it cannot inject content.

use crate::domain::{Category, Language, Money};
use crate::flow::classify::Ask;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    #[error("cannot read prompt {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("invalid template {name}: {reason}")]
    Template { name: String, reason: String },
}

const EMBEDDED: &[(&str, &str)] = &[
    ("reply.v1.fr", include_str!("../../prompts/reply.v1.fr.tera")),
    ("reply.v1.en", include_str!("../../prompts/reply.v1.en.tera")),
    ("brief.v1.fr", include_str!("../../prompts/brief.v1.fr.tera")),
    ("brief.v1.en", include_str!("../../prompts/brief.v1.en.tera")),
];

/// An invoice line as templates show it (amounts already formatted).
#[derive(Debug, Clone, Serialize)]
pub struct InvoiceLine {
    pub number: String,
    pub issue_date: String,
    pub due_date: String,
    pub amount: String,
    pub currency: String,
    pub status: String,
    pub days_past_due: i64,
}

/// One earlier message of the case.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryLine {
    pub date: String,
    pub direction: String,
    pub subject: String,
}

/// The facts a draft may use, and nothing else.
#[derive(Debug, Clone)]
pub struct DraftFacts {
    pub language: Language,
    pub company: String,
    pub signer: String,
    pub client_name: String,
    pub strategic: bool,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub category: Category,
    pub case_id: Option<i64>,
    pub owner_name: Option<String>,
    pub priority: i64,
    pub priority_reason: String,
    pub invoices: Vec<(crate::store::ledger::Invoice, i64)>,
    pub disputed_amount: Option<Money>,
    pub promised_date: Option<chrono::NaiveDate>,
    pub asks: Vec<Ask>,
    pub reasons: Vec<String>,
    pub source: String,
    pub confidence: f32,
    pub history: Vec<HistoryLine>,
}

/// A rendered draft and the template (name and version) that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftText {
    pub subject: String,
    pub body: String,
    pub template: String,
}

/// Renders drafts from the prompts folder (or the embedded defaults).
pub struct Drafter {
    tera: tera::Tera,
}

fn fmt_date(d: &str, lang: Language) -> String {
    match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
        Ok(dt) if lang == Language::Fr => dt.format("%d/%m/%Y").to_string(),
        Ok(dt) => dt.format("%d %b %Y").to_string(),
        Err(_) => d.to_string(),
    }
}

fn money(m: Money, lang: Language) -> String {
    if lang == Language::Fr {
        m.fr()
    } else {
        m.en()
    }
}

fn motive(cat: Category, lang: Language) -> (&'static str, &'static str, &'static str) {
    // (phrase after "au sujet"/"concerning", label, what is disputed)
    use Category::*;
    match (lang, cat) {
        (Language::Fr, Price) => ("du prix facturé", "prix", "le prix ou le tarif appliqué"),
        (Language::Fr, Quantity) => ("des quantités facturées", "quantité", "les quantités ou heures facturées"),
        (Language::Fr, NonConformity) => ("de la conformité de la prestation", "non-conformité", "la conformité ou la qualité de la prestation livrée"),
        (Language::Fr, AdminError) => ("d'une erreur administrative sur la facture", "erreur administrative", "une mention ou référence administrative de la facture"),
        (Language::Fr, ProjectDelay) => ("du calendrier du projet", "retard de projet", "l'avancement ou les délais du projet facturé"),
        (Language::Fr, _) => ("de votre demande", "autre", "rien : pas de litige"),
        (Language::En, Price) => ("the price invoiced", "price", "the price or rate applied"),
        (Language::En, Quantity) => ("the quantities invoiced", "quantity", "the quantities or hours invoiced"),
        (Language::En, NonConformity) => ("the conformity of the work delivered", "non-conformity", "the conformity or quality of the work delivered"),
        (Language::En, AdminError) => ("an administrative error on the invoice", "administrative error", "an administrative detail or reference on the invoice"),
        (Language::En, ProjectDelay) => ("the project schedule", "project delay", "the progress or schedule of the invoiced project"),
        (Language::En, _) => ("your request", "other", "nothing: no dispute"),
    }
}

fn next_step(cat: Category, lang: Language) -> &'static str {
    use Category::*;
    match (lang, cat) {
        (Language::Fr, Price) => "vérifier le tarif contractuel ou le devis, puis appeler l'acheteur pour proposer un avoir ou confirmer le prix",
        (Language::Fr, Quantity) => "rapprocher la facture du bon de livraison ou d'intervention signé, puis appeler le client",
        (Language::Fr, NonConformity) => "faire le point avec le technicien, proposer une intervention corrective et une date",
        (Language::Fr, AdminError) => "corriger la mention demandée et préparer une facture rectificative",
        (Language::Fr, ProjectDelay) => "vérifier le planning et le PV de réception, puis appeler le chef de projet du client",
        (Language::Fr, _) => "répondre au client",
        (Language::En, Price) => "check the contract rate or quote, then call the buyer to offer a credit note or confirm the price",
        (Language::En, Quantity) => "match the invoice with the signed delivery or service note, then call the client",
        (Language::En, NonConformity) => "review with the technician, offer a corrective visit and a date",
        (Language::En, AdminError) => "fix the requested detail and prepare a corrected invoice",
        (Language::En, ProjectDelay) => "check the schedule and acceptance report, then call the client's project lead",
        (Language::En, _) => "answer the client",
    }
}

fn ask_label(a: Ask, lang: Language) -> &'static str {
    match (lang, a) {
        (Language::Fr, Ask::CreditNote) => "un avoir",
        (Language::Fr, Ask::CorrectedInvoice) => "une facture rectificative",
        (Language::Fr, Ask::InvoiceCopy) => "une copie de facture",
        (Language::Fr, Ask::Statement) => "un relevé de compte",
        (Language::Fr, Ask::Delivery) => "une livraison",
        (Language::Fr, Ask::Intervention) => "une intervention",
        (Language::Fr, Ask::Explanation) => "des explications",
        (Language::Fr, Ask::PaymentDetails) => "des coordonnées bancaires",
        (Language::En, Ask::CreditNote) => "a credit note",
        (Language::En, Ask::CorrectedInvoice) => "a corrected invoice",
        (Language::En, Ask::InvoiceCopy) => "an invoice copy",
        (Language::En, Ask::Statement) => "a statement of account",
        (Language::En, Ask::Delivery) => "a delivery",
        (Language::En, Ask::Intervention) => "an intervention",
        (Language::En, Ask::Explanation) => "an explanation",
        (Language::En, Ask::PaymentDetails) => "bank details",
    }
}

impl Drafter {
    /// Loads `reply.v1.fr.tera`-style files from `dir` when present there,
    /// else the embedded defaults.
    pub fn load(dir: Option<&Path>) -> Result<Drafter, DraftError> {
        let mut tera = tera::Tera::default();
        for (name, text) in EMBEDDED {
            let text = match dir.map(|d| d.join(format!("{name}.tera"))) {
                Some(p) if p.exists() => std::fs::read_to_string(&p).map_err(|source| DraftError::Read { file: p.display().to_string(), source })?,
                _ => text.to_string(),
            };
            tera.add_raw_template(name, &text).map_err(|e| DraftError::Template { name: name.to_string(), reason: format!("{e:?}") })?;
        }
        Ok(Drafter { tera })
    }

    /// The template context: case facts only (shared with the LLM drafting prompt).
    pub fn context(&self, f: &DraftFacts) -> tera::Context {
        let lang = f.language;
        let (motive_phrase, motive_label, motive_detail) = motive(f.category, lang);
        let mut c = tera::Context::new();
        c.insert("company", &f.company);
        c.insert("signer", &f.signer);
        c.insert("client_name", &f.client_name);
        c.insert("strategic", &f.strategic);
        c.insert("contact_name", &f.contact_name);
        c.insert("contact_email", &f.contact_email);
        c.insert("category", f.category.as_str());
        c.insert("is_dispute", &f.category.is_dispute());
        c.insert("motive", motive_phrase);
        c.insert("motive_label", motive_label);
        c.insert("motive_detail", motive_detail);
        c.insert("case_id", &f.case_id);
        c.insert("owner_name", &f.owner_name);
        c.insert("priority", &f.priority);
        c.insert("priority_reason", &f.priority_reason);
        let lines: Vec<InvoiceLine> = f
            .invoices
            .iter()
            .map(|(i, late)| InvoiceLine {
                number: i.number.to_string(),
                issue_date: fmt_date(&i.issue_date, lang),
                due_date: fmt_date(&i.due_date, lang),
                amount: money(i.amount, lang),
                currency: i.currency.clone(),
                status: i.status.clone(),
                days_past_due: *late,
            })
            .collect();
        c.insert("invoices", &lines);
        c.insert("disputed_amount", &f.disputed_amount.map(|m| money(m, lang)));
        c.insert("promised_date", &f.promised_date.map(|d| fmt_date(&d.to_string(), lang)));
        c.insert("asks", &f.asks.iter().map(|a| ask_label(*a, lang)).collect::<Vec<_>>());
        c.insert("reasons", &f.reasons);
        c.insert("source", &f.source);
        c.insert("confidence", &format!("{:.2}", f.confidence));
        c.insert("history", &f.history);
        c.insert("next_step", next_step(f.category, lang));
        c
    }

    fn render(&self, name: &str, f: &DraftFacts) -> Result<String, DraftError> {
        // Templates open with a comment line: no leading blank line in a draft.
        self.tera.render(name, &self.context(f)).map(|s| s.trim_start().to_string()).map_err(|e| {
            let mut reason = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                reason.push_str(": ");
                reason.push_str(&s.to_string());
                src = s.source();
            }
            DraftError::Template { name: name.to_string(), reason }
        })
    }

    /// The reply to the client. `subject` is the client's subject.
    pub fn reply(&self, f: &DraftFacts, subject: &str) -> Result<DraftText, DraftError> {
        let name = format!("reply.v1.{}", f.language);
        Ok(DraftText { subject: crate::mail::smtp::reply_subject(subject), body: self.render(&name, f)?, template: name })
    }

    /// The internal call brief for the owner.
    pub fn brief(&self, f: &DraftFacts) -> Result<DraftText, DraftError> {
        let name = format!("brief.v1.{}", f.language);
        let subject = match (f.language, f.case_id) {
            (Language::Fr, Some(id)) => format!("Fiche d'appel — dossier {id} — {}", f.client_name),
            (Language::En, Some(id)) => format!("Call brief — case {id} — {}", f.client_name),
            (Language::Fr, None) => format!("Fiche d'appel — {}", f.client_name),
            (Language::En, None) => format!("Call brief — {}", f.client_name),
        };
        Ok(DraftText { subject, body: self.render(&name, f)?, template: name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InvoiceNumber;
    use crate::store::ledger::Invoice;

    fn facts(lang: Language, cat: Category) -> DraftFacts {
        DraftFacts {
            language: lang,
            company: "Alpes Froid".into(),
            signer: "Service comptabilité".into(),
            client_name: "Hôtel du Lac".into(),
            strategic: true,
            contact_name: Some("Mme Durand".into()),
            contact_email: Some("durand@hotel-lac.fr".into()),
            category: cat,
            case_id: Some(12),
            owner_name: Some("Paul Martin".into()),
            priority: 40,
            priority_reason: "amount 1234.50 (+0)".into(),
            invoices: vec![(
                Invoice {
                    number: InvoiceNumber::parse("F2026-0412").unwrap(),
                    client_id: "C1".into(),
                    issue_date: "2026-03-02".into(),
                    due_date: "2026-04-01".into(),
                    amount: Money(123450),
                    currency: "EUR".into(),
                    status: "open".into(),
                    po_number: None,
                    project: None,
                    promised_date: None,
                },
                5,
            )],
            disputed_amount: Some(Money(48000)),
            promised_date: None,
            asks: vec![Ask::CreditNote],
            reasons: vec!["price.fr.tarif".into()],
            source: "rules".into(),
            confidence: 0.8,
            history: vec![],
        }
    }

    #[test]
    fn french_dispute_reply_names_invoice_amount_motive_and_case() {
        let d = Drafter::load(None).unwrap();
        let r = d.reply(&facts(Language::Fr, Category::Price), "Facture F2026-0412").unwrap();
        assert_eq!(r.subject, "Re: Facture F2026-0412");
        assert_eq!(r.template, "reply.v1.fr");
        for want in ["Bonjour Mme Durand", "F2026-0412 du 02/03/2026 (1\u{202f}234,50 EUR)", "au sujet du prix facturé", "480,00 EUR", "dossier n° 12", "Paul Martin"] {
            assert!(r.body.contains(want), "missing {want:?} in:\n{}", r.body);
        }
    }

    #[test]
    fn english_reply_and_brief_are_in_english() {
        let d = Drafter::load(None).unwrap();
        let r = d.reply(&facts(Language::En, Category::Quantity), "Invoice F2026-0412").unwrap();
        assert!(r.body.contains("Dear Mme Durand") && r.body.contains("the quantities invoiced") && r.body.contains("1,234.50 EUR"), "{}", r.body);
        let b = d.brief(&facts(Language::En, Category::Quantity)).unwrap();
        assert!(b.body.contains("CALL BRIEF") && b.body.contains("5 days past due") && b.body.contains("a credit note"), "{}", b.body);
        assert_eq!(b.template, "brief.v1.en");
    }

    #[test]
    fn promise_reply_uses_the_promised_date() {
        let d = Drafter::load(None).unwrap();
        let mut f = facts(Language::Fr, Category::PromiseToPay);
        f.promised_date = chrono::NaiveDate::from_ymd_opt(2026, 4, 15);
        let r = d.reply(&f, "Re: Relance").unwrap();
        assert_eq!(r.subject, "Re: Relance");
        assert!(r.body.contains("pour le 15/04/2026"), "{}", r.body);
    }
}

//! gen: writes a synthetic company in the corpus format of FORMAT.md
//! (users, clients, invoices, outbound reminders, inbound client mail and
//! labels) with realistic sizes and MIME shapes: plain text, HTML
//! alternatives, PDF attachments named after the invoice, quoted history,
//! CRLF and LF. Deterministic (same arguments, same files), streamed to disk
//! one message at a time so that a benchmark of 20,000 messages needs no
//! more memory than one of 2,000. The text is templated, so it measures
//! speed, not classification quality.

use chrono::{Duration, NaiveDate};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// What `gen` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    pub clients: usize,
    pub invoices: usize,
    pub outbound: usize,
    pub inbound: usize,
    pub bytes: u64,
}

/// A small deterministic generator (no dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }
}

/// (category, owner role, French text, English text); `{inv}` and `{amount}` are filled in.
const TEMPLATES: &[(&str, &str, &str, &str)] = &[
    ("price", "sales", "Bonjour,\n\nSur la facture {inv}, le prix unitaire appliqué ne correspond pas au tarif convenu dans notre contrat. Merci de nous adresser un avoir pour la différence.\n\nCordialement,", "Hello,\n\nOn invoice {inv} the unit price is higher than the rate agreed in our contract. Please send us a credit note for the difference.\n\nBest regards,"),
    ("quantity", "sales", "Bonjour,\n\nLa facture {inv} compte 12 palettes alors que nous n'en avons reçu que 10 (voir bon de livraison). Merci de corriger la quantité.\n\nCordialement,", "Hi,\n\nInvoice {inv} bills 12 pallets but we only received 10 according to the delivery note. Please correct the quantity.\n\nThanks,"),
    ("non_conformity", "technical", "Bonjour,\n\nLe matériel livré avec la facture {inv} est défectueux : il ne fonctionne pas depuis l'installation. Nous suspendons le paiement jusqu'à la réparation.\n\nCordialement,", "Hello,\n\nThe equipment billed on invoice {inv} is faulty and has not worked since it was installed. We are holding payment until it is repaired.\n\nRegards,"),
    ("admin_error", "accountant", "Bonjour,\n\nLa facture {inv} ne mentionne pas notre numéro de bon de commande et l'adresse de facturation est erronée. Merci de la refaire avec la bonne adresse.\n\nCordialement,", "Hello,\n\nInvoice {inv} is missing our purchase order number and the billing address is wrong. Please reissue it to the correct entity.\n\nRegards,"),
    ("project_delay", "technical", "Bonjour,\n\nLes travaux facturés sur {inv} ne sont toujours pas terminés : le chantier a trois semaines de retard. Nous réglerons à la réception des travaux.\n\nCordialement,", "Hello,\n\nThe works billed on {inv} are still not finished: the project is three weeks behind schedule. We will pay after acceptance.\n\nRegards,"),
    ("promise_to_pay", "accountant", "Bonjour,\n\nLa facture {inv} sera réglée par virement le 15 du mois prochain, avec notre prochaine campagne de paiement.\n\nCordialement,", "Hi,\n\nInvoice {inv} will be paid on our next payment run on the 15th of next month.\n\nKind regards,"),
    ("payment_notice", "accountant", "Bonjour,\n\nNous avons effectué ce jour le virement de {amount} EUR en règlement de la facture {inv}.\n\nCordialement,", "Hello,\n\nWe have paid invoice {inv} today by bank transfer ({amount} EUR). Please find our remittance advice attached.\n\nRegards,"),
    ("invoice_request", "accountant", "Bonjour,\n\nPourriez-vous nous renvoyer une copie de la facture {inv} ? Nous ne la retrouvons pas dans notre système.\n\nMerci,", "Hello,\n\nCould you please send us a copy of invoice {inv}? We cannot find it in our system.\n\nThanks,"),
    ("out_of_office", "", "Bonjour,\n\nJe suis absent du bureau jusqu'au 3 du mois prochain, avec un accès limité à mes messages. En cas d'urgence, contactez la comptabilité.\n\nRéponse automatique", "Hello,\n\nI am out of the office until the 3rd of next month with limited access to email. For urgent matters please contact accounts.\n\nAutomatic reply"),
];

const NEWSLETTER: &str = "Découvrez nos nouveautés du mois : webinaires, livres blancs et offres partenaires.\n\nPour vous désabonner, cliquez ici.";

fn write(path: &Path, bytes: &[u8]) -> Result<u64, GenError> {
    let mut f = std::fs::File::create(path).map_err(|source| GenError::Write { path: path.display().to_string(), source })?;
    f.write_all(bytes).map_err(|source| GenError::Write { path: path.display().to_string(), source })?;
    Ok(bytes.len() as u64)
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 4);
    for (i, c) in data.chunks(3).enumerate() {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            out.push(if k <= c.len() { A[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

fn html_of(text: &str) -> String {
    let mut h = String::from("<html><body>");
    for p in text.split("\n\n") {
        let _ = write!(h, "<p>{}</p>", p.replace('&', "&amp;").replace('<', "&lt;").replace('\n', "<br>"));
    }
    h.push_str("</body></html>");
    h
}

/// Writes the company into `out` (created if needed).
pub fn generate(out: &Path, clients: usize, invoices: usize, messages: usize) -> Result<Generated, GenError> {
    if clients == 0 {
        return Err(GenError::Zero("--clients"));
    }
    if invoices == 0 {
        return Err(GenError::Zero("--invoices"));
    }
    for d in ["inbound", "outbound"] {
        std::fs::create_dir_all(out.join(d)).map_err(|source| GenError::Write { path: out.join(d).display().to_string(), source })?;
    }
    let mut rng = Lcg(7);
    let mut bytes = 0;
    bytes += write(
        &out.join("users.csv"),
        b"id,name,email,role\nA1,Anne Martin,anne.martin@synthese-services.fr,accountant\nS1,Samuel Roche,samuel.roche@synthese-services.fr,sales\nS2,Sonia Petit,sonia.petit@synthese-services.fr,sales\nT1,Thierry Blanc,thierry.blanc@synthese-services.fr,technical\nM1,Maud Leroy,maud.leroy@synthese-services.fr,manager\n",
    )?;
    let mut c = String::from("id,name,email_domains,account_owner,strategic,language\n");
    for i in 0..clients {
        let _ = writeln!(c, "K{i:05},Client {i} SAS,client{i}.example,S{},{},{}", 1 + i % 2, i % 25 == 0, if i % 4 == 0 { "en" } else { "fr" });
    }
    bytes += write(&out.join("clients.csv"), c.as_bytes())?;
    let base: NaiveDate = NaiveDate::from_ymd_opt(2026, 1, 5).expect("valid date");
    let mut inv = String::from("number,client_id,issue_date,due_date,amount,currency,status,po_number,project\n");
    let mut ledger = Vec::with_capacity(invoices);
    for i in 0..invoices {
        let client = rng.next(clients);
        let issue = base + Duration::days(rng.next(150) as i64);
        let cents = 20_000 + rng.next(1_500_000) as i64;
        let number = format!("SY-2026-{:06}", i + 1);
        let _ = writeln!(inv, "{number},K{client:05},{issue},{},{}.{:02},EUR,open,PO{:07},", issue + Duration::days(30), cents / 100, cents % 100, rng.next(9_999_999));
        ledger.push((number, client, cents));
    }
    bytes += write(&out.join("invoices.csv"), inv.as_bytes())?;

    // Our reminders: every tenth invoice, so some client mail threads to them.
    let mut outbound = 0;
    for (k, (number, client, cents)) in ledger.iter().enumerate().filter(|(k, _)| k % 10 == 0).take(messages.div_ceil(4)) {
        let body = format!("Bonjour,\r\n\r\nSauf erreur de notre part, la facture {number} de {}.{:02} EUR reste impayée. Merci de procéder à son règlement.\r\n\r\nLe service comptabilité\r\n", cents / 100, cents % 100);
        let mail = format!(
            "From: Comptabilite <compta@synthese-services.fr>\r\nTo: <compta@client{client}.example>\r\nSubject: Relance facture {number}\r\nDate: Mon, 1 Jun 2026 09:00:00 +0200\r\nMessage-ID: <rem-{k}@synthese-services.fr>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}"
        );
        bytes += write(&out.join(format!("outbound/r{k:06}.eml")), mail.as_bytes())?;
        outbound += 1;
    }

    let mut labels = String::from("file,invoices,category,owner_role\n");
    for m in 0..messages {
        let file = format!("{:06}.eml", m + 1);
        let (number, client, cents) = &ledger[rng.next(ledger.len())];
        let en = client % 4 == 0;
        let date = format!("Tue, {} Jun 2026 {:02}:{:02}:00 +0200", 2 + m % 27, 8 + m % 10, m % 60);
        let shape = rng.next(10);
        let (category, owner, text, from, invoices) = if shape == 9 {
            ("other", "", NEWSLETTER.to_string(), "Lettre pro <news@newsletter-b2b.example>".to_string(), String::new())
        } else {
            let (cat, owner, fr, en_t) = TEMPLATES[rng.next(TEMPLATES.len())];
            let t = if en { en_t } else { fr };
            let t = t.replace("{inv}", number).replace("{amount}", &format!("{}.{:02}", cents / 100, cents % 100));
            (cat, owner, t, format!("Compta Client {client} <compta@client{client}.example>"), number.clone())
        };
        let signed = format!("{text}\nCompta Client {client}\nSIRET 123 456 789 00012\n");
        let subject = if category == "other" { "Votre lettre d'information".to_string() } else if en { format!("Invoice {number}") } else { format!("Facture {number}") };
        let mut h = format!("From: {from}\r\nTo: Comptabilite <compta@synthese-services.fr>\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <m{m}-{}@client{client}.example>\r\nMIME-Version: 1.0\r\n", rng.next(1_000_000));
        if category == "out_of_office" {
            h.push_str("Auto-Submitted: auto-replied\r\n");
        }
        if category == "other" {
            h.push_str("List-Id: <news.newsletter-b2b.example>\r\nList-Unsubscribe: <mailto:unsub@newsletter-b2b.example>\r\nPrecedence: bulk\r\n");
        }
        let body = match shape {
            // multipart/alternative with HTML
            0..=2 => format!(
                "{h}Content-Type: multipart/alternative; boundary=\"alt{m}\"\r\n\r\n--alt{m}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n--alt{m}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{}\r\n--alt{m}--\r\n",
                signed.replace('\n', "\r\n"),
                html_of(&signed)
            ),
            // a PDF attachment named after the invoice
            3..=4 => {
                let pdf = format!("%PDF-1.4\n% synthetic invoice {number}\n{}\n%%EOF\n", "0".repeat(2_000 + rng.next(20_000)));
                format!(
                    "{h}Content-Type: multipart/mixed; boundary=\"mix{m}\"\r\n\r\n--mix{m}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n--mix{m}\r\nContent-Type: application/pdf; name=\"{number}.pdf\"\r\nContent-Disposition: attachment; filename=\"{number}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--mix{m}--\r\n",
                    signed.replace('\n', "\r\n"),
                    b64(pdf.as_bytes())
                )
            }
            // a reply quoting our reminder (LF line endings)
            5..=6 => format!(
                "{}Content-Type: text/plain; charset=utf-8\n\n{signed}\nLe 1 juin 2026 à 09:00, Comptabilite <compta@synthese-services.fr> a écrit :\n> Bonjour,\n> Sauf erreur de notre part, la facture {number} reste impayée.\n> Le service comptabilité\n",
                h.replace("\r\n", "\n")
            ),
            _ => format!("{h}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}", signed.replace('\n', "\r\n")),
        };
        bytes += write(&out.join("inbound").join(&file), body.as_bytes())?;
        let _ = writeln!(labels, "{file},{invoices},{category},{owner}");
    }
    bytes += write(&out.join("labels.csv"), labels.as_bytes())?;
    bytes += write(&out.join("README.md"), format!("# Synthetic company (dispute-desk gen)\n\n{clients} clients, {invoices} invoices, {outbound} outbound and {messages} inbound messages. Templated text: for speed benchmarks, not for classification quality.\n").as_bytes())?;
    Ok(Generated { clients, invoices, outbound, inbound: messages, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_arguments_same_files_and_every_message_parses_with_a_label() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ga = generate(a.path(), 20, 100, 60).unwrap();
        generate(b.path(), 20, 100, 60).unwrap();
        for f in ["invoices.csv", "labels.csv", "inbound/000042.eml"] {
            assert_eq!(std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap(), "{f}");
        }
        assert_eq!((ga.inbound, ga.invoices), (60, 100));
        let labels = std::fs::read_to_string(a.path().join("labels.csv")).unwrap();
        assert_eq!(labels.lines().count(), 61);
        let mut shapes = std::collections::BTreeSet::new();
        for i in 1..=60 {
            let raw = std::fs::read(a.path().join(format!("inbound/{i:06}.eml"))).unwrap();
            let m = crate::flow::parse::parse(&raw);
            assert!(!m.new_text.trim().is_empty(), "message {i} has text");
            shapes.insert((m.attachments.len(), !m.quoted.is_empty()));
        }
        assert!(shapes.len() >= 3, "several MIME shapes: {shapes:?}");
        assert!(matches!(generate(a.path(), 0, 1, 1), Err(GenError::Zero(_))));
    }
}

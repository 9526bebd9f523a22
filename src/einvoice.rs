//! einvoice: reads structured e-invoices (EN 16931) into a checked record:
//! UN/CEFACT CII (`CrossIndustryInvoice`), UBL (`Invoice`, `CreditNote`) and
//! Factur-X / ZUGFeRD PDFs (the CII XML embedded in the PDF). Pure: it takes
//! bytes and returns values; bad input is an error value, never a panic, and
//! a PDF without embedded XML is an answer ([`Reading::NoStructuredData`]).

use crate::domain::{InvoiceNumber, Money};
use chrono::NaiveDate;
use roxmltree::{Document, Node};
use serde::{Deserialize, Serialize};

/// Why a document could not be read as an e-invoice.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EInvoiceError {
    #[error("not well-formed xml: {0}")]
    Xml(String),
    #[error("unknown xml document <{0}>: expected a cii CrossIndustryInvoice or a ubl Invoice or CreditNote")]
    UnknownRoot(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("invalid {field} {value:?}")]
    Invalid { field: &'static str, value: String },
    #[error("cannot read pdf: {0}")]
    Pdf(String),
}

/// Which syntax the invoice was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Syntax {
    Cii,
    Ubl,
}

/// Invoice or credit note (EN 16931 BT-3, or the UBL root element).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Invoice,
    CreditNote,
}

impl DocKind {
    /// UNTDID 1001 codes of credit notes; anything else is an invoice
    /// (380 commercial, 384 corrected, 389 self-billed, 386 prepayment...).
    fn from_code(code: &str) -> DocKind {
        match code.trim() {
            "381" | "261" | "262" | "296" | "308" | "396" | "420" | "458" | "532" => DocKind::CreditNote,
            _ => DocKind::Invoice,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Invoice => "invoice",
            DocKind::CreditNote => "credit_note",
        }
    }
}

/// A seller or a buyer, with the identifiers French invoicing uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Party {
    pub name: Option<String>,
    /// 14 digits (scheme 0009, or 14 digits under scheme 0002).
    pub siret: Option<String>,
    /// 9 digits (scheme 0002, or the first 9 of the SIRET).
    pub siren: Option<String>,
    /// Intra-community VAT number (`FR…`).
    pub vat: Option<String>,
    /// Every other identifier, as `scheme:value` (`0088:5790000435975`).
    pub other_ids: Vec<String>,
}

impl Party {
    fn add_id(&mut self, scheme: Option<&str>, value: &str) {
        let v: String = value.split_whitespace().collect();
        if v.is_empty() {
            return;
        }
        let digits = v.chars().all(|c| c.is_ascii_digit());
        match scheme.map(str::trim) {
            Some("0009") if digits && v.len() == 14 => self.set_siret(&v),
            Some("0002") if digits && v.len() == 14 => self.set_siret(&v),
            Some("0002") if digits && v.len() == 9 => {
                self.siren.get_or_insert(v);
            }
            Some("VA") | Some("VAT") => {
                self.vat.get_or_insert(v);
            }
            Some(s) => {
                let id = format!("{s}:{v}");
                if !self.other_ids.contains(&id) {
                    self.other_ids.push(id);
                }
            }
            None => {
                if !self.other_ids.contains(&v) {
                    self.other_ids.push(v);
                }
            }
        }
    }
    fn set_siret(&mut self, v: &str) {
        self.siret.get_or_insert_with(|| v.to_string());
        self.siren.get_or_insert_with(|| v[..9].to_string());
    }
}

/// A checked e-invoice: what the ledger and the link stage need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EInvoice {
    pub syntax: Syntax,
    pub number: InvoiceNumber,
    pub kind: DocKind,
    /// BT-3 as written (`380`, `381`...).
    pub type_code: Option<String>,
    pub issue_date: NaiveDate,
    pub due_date: Option<NaiveDate>,
    pub currency: String,
    /// BT-109 (sum of lines, minus allowances, plus charges).
    pub tax_exclusive: Option<Money>,
    /// BT-110, in the invoice currency.
    pub tax: Option<Money>,
    /// BT-112 (tax included).
    pub grand_total: Option<Money>,
    /// BT-115 (what remains to pay after prepayments).
    pub amount_due: Option<Money>,
    pub seller: Party,
    pub buyer: Party,
    /// BT-10.
    pub buyer_reference: Option<String>,
    /// BT-13, the buyer's purchase order.
    pub order_reference: Option<String>,
    /// BT-25: the invoices a credit note or a corrected invoice refers to.
    #[serde(default)]
    pub preceding_invoices: Vec<String>,
    /// Things noticed but not fatal (amount rounded, unknown date format).
    pub warnings: Vec<String>,
}

/// What reading a file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    Invoice(Box<EInvoice>),
    /// A PDF (or other file) that carries no e-invoice XML: not an error,
    /// just nothing structured to read.
    NoStructuredData(String),
}

/// Reads a file's bytes: a PDF (looks for the embedded Factur-X/ZUGFeRD XML)
/// or an XML document (CII or UBL).
pub fn read(bytes: &[u8]) -> Result<Reading, EInvoiceError> {
    if is_pdf(bytes) {
        return match embedded_xml(bytes)? {
            Some(xml) => Ok(Reading::Invoice(Box::new(read_xml(&xml)?))),
            None => Ok(Reading::NoStructuredData("pdf without an embedded factur-x, zugferd or xrechnung xml".into())),
        };
    }
    if looks_like_xml(bytes) {
        return Ok(Reading::Invoice(Box::new(read_xml(bytes)?)));
    }
    Ok(Reading::NoStructuredData("neither a pdf nor an xml document".into()))
}

/// True for `%PDF` (allowing leading junk in the first kilobyte, as readers do).
pub fn is_pdf(bytes: &[u8]) -> bool {
    bytes.len() >= 5 && bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-")
}

fn looks_like_xml(bytes: &[u8]) -> bool {
    let b = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'<')
}

/// Decodes XML bytes: UTF-8 (with or without BOM), else ISO-8859-1.
fn decode(bytes: &[u8]) -> String {
    let b = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b.iter().map(|&c| c as char).collect(),
    }
}

/// Reads a CII or UBL XML document.
pub fn read_xml(bytes: &[u8]) -> Result<EInvoice, EInvoiceError> {
    let text = decode(bytes);
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = Document::parse_with_options(&text, opts).map_err(|e| EInvoiceError::Xml(e.to_string()))?;
    let root = doc.root_element();
    match root.tag_name().name() {
        "CrossIndustryInvoice" => cii(root),
        "Invoice" => ubl(root, false),
        "CreditNote" => ubl(root, true),
        other => Err(EInvoiceError::UnknownRoot(other.to_string())),
    }
}

// ---- tree helpers (by local name: prefixes differ between producers) ----

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> + use<'a, 'i> {
    n.children().filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// Follows a path of local names from `n`.
fn at<'a, 'i>(n: Node<'a, 'i>, path: &[&str]) -> Option<Node<'a, 'i>> {
    path.iter().try_fold(n, |n, p| child(n, p))
}

fn text_of(n: Node<'_, '_>) -> Option<String> {
    let t: String = n.text().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
    (!t.is_empty()).then_some(t)
}

fn text_at(n: Node<'_, '_>, path: &[&str]) -> Option<String> {
    at(n, path).and_then(text_of)
}

/// An XML decimal (`1234.5`, `-0.75`) as cents; more than two decimals are
/// rounded half away from zero, with a warning.
fn money(field: &'static str, s: &str, warnings: &mut Vec<String>) -> Result<Money, EInvoiceError> {
    let bad = || EInvoiceError::Invalid { field, value: s.to_string() };
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) || int.len() > 15 {
        return Err(bad());
    }
    let units: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
    let mut cents = units * 100;
    let f2: String = frac.chars().chain("00".chars()).take(2).collect();
    cents += f2.parse::<i64>().map_err(|_| bad())?;
    if frac.len() > 2 {
        if frac.as_bytes()[2] >= b'5' {
            cents += 1;
        }
        if frac[2..].bytes().any(|c| c != b'0') {
            warnings.push(format!("{field} {s} rounded to cents"));
        }
    }
    Ok(Money(if neg { -cents } else { cents }))
}

fn opt_money(field: &'static str, n: Option<Node<'_, '_>>, warnings: &mut Vec<String>) -> Result<Option<Money>, EInvoiceError> {
    match n.and_then(text_of) {
        Some(t) => money(field, &t, warnings).map(Some),
        None => Ok(None),
    }
}

/// CII dates: format 102 `YYYYMMDD` (also tolerates `YYYY-MM-DD`).
fn cii_date(field: &'static str, n: Node<'_, '_>) -> Result<NaiveDate, EInvoiceError> {
    let s = child(n, "DateTimeString").and_then(text_of).or_else(|| text_of(n)).ok_or(EInvoiceError::Missing(field))?;
    date(field, &s)
}

fn date(field: &'static str, s: &str) -> Result<NaiveDate, EInvoiceError> {
    let t = s.trim();
    NaiveDate::parse_from_str(t, "%Y%m%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y-%m-%d"))
        .or_else(|_| NaiveDate::parse_from_str(t.get(..10).unwrap_or(t), "%Y-%m-%d"))
        .map_err(|_| EInvoiceError::Invalid { field, value: s.to_string() })
}

fn number(s: Option<String>) -> Result<InvoiceNumber, EInvoiceError> {
    let s = s.ok_or(EInvoiceError::Missing("invoice number"))?;
    InvoiceNumber::parse(&s).map_err(|_| EInvoiceError::Invalid { field: "invoice number", value: s })
}

/// The amount among several (`TaxTotalAmount` may be given in the invoice
/// and in the accounting currency) that is in `currency`.
fn in_currency<'a, 'i>(mut nodes: impl Iterator<Item = Node<'a, 'i>>, currency: &str) -> Option<Node<'a, 'i>> {
    let all: Vec<Node> = nodes.by_ref().collect();
    all.iter().copied().find(|n| n.attribute("currencyID") == Some(currency)).or_else(|| all.iter().copied().find(|n| n.attribute("currencyID").is_none())).or_else(|| all.first().copied())
}

// ---- CII ----

fn cii_party(p: Node<'_, '_>) -> Party {
    let mut party = Party { name: text_at(p, &["Name"]), ..Default::default() };
    for id in children(p, "ID").chain(children(p, "GlobalID")) {
        if let Some(v) = text_of(id) {
            party.add_id(id.attribute("schemeID"), &v);
        }
    }
    if let Some(lo) = child(p, "SpecifiedLegalOrganization") {
        if let Some(id) = child(lo, "ID") {
            if let Some(v) = text_of(id) {
                party.add_id(id.attribute("schemeID"), &v);
            }
        }
        if party.name.is_none() {
            party.name = text_at(lo, &["TradingBusinessName"]);
        }
    }
    for tr in children(p, "SpecifiedTaxRegistration") {
        if let Some(id) = child(tr, "ID") {
            if let Some(v) = text_of(id) {
                party.add_id(Some(id.attribute("schemeID").unwrap_or("VA")), &v);
            }
        }
    }
    party
}

fn cii(root: Node<'_, '_>) -> Result<EInvoice, EInvoiceError> {
    let mut warnings = vec![];
    let doc = child(root, "ExchangedDocument").ok_or(EInvoiceError::Missing("ExchangedDocument"))?;
    let number = number(text_at(doc, &["ID"]))?;
    let type_code = text_at(doc, &["TypeCode"]);
    let issue_date = cii_date("issue date", at(doc, &["IssueDateTime"]).ok_or(EInvoiceError::Missing("issue date"))?)?;
    let tx = child(root, "SupplyChainTradeTransaction").ok_or(EInvoiceError::Missing("SupplyChainTradeTransaction"))?;
    let agreement = child(tx, "ApplicableHeaderTradeAgreement").ok_or(EInvoiceError::Missing("ApplicableHeaderTradeAgreement"))?;
    let settlement = child(tx, "ApplicableHeaderTradeSettlement").ok_or(EInvoiceError::Missing("ApplicableHeaderTradeSettlement"))?;
    let seller = child(agreement, "SellerTradeParty").map(cii_party).unwrap_or_default();
    let buyer = child(agreement, "BuyerTradeParty").map(cii_party).unwrap_or_default();
    let currency = text_at(settlement, &["InvoiceCurrencyCode"]).ok_or(EInvoiceError::Missing("invoice currency"))?;
    let due_date = match children(settlement, "SpecifiedTradePaymentTerms").find_map(|t| child(t, "DueDateDateTime")) {
        Some(d) => Some(cii_date("due date", d)?),
        None => None,
    };
    let sum = child(settlement, "SpecifiedTradeSettlementHeaderMonetarySummation").ok_or(EInvoiceError::Missing("monetary summation"))?;
    let tax_exclusive = opt_money("tax basis total", child(sum, "TaxBasisTotalAmount"), &mut warnings)?;
    let tax = opt_money("tax total", in_currency(children(sum, "TaxTotalAmount"), &currency), &mut warnings)?;
    let grand_total = opt_money("grand total", child(sum, "GrandTotalAmount"), &mut warnings)?;
    let amount_due = opt_money("amount due", child(sum, "DuePayableAmount"), &mut warnings)?;
    Ok(EInvoice {
        syntax: Syntax::Cii,
        kind: type_code.as_deref().map(DocKind::from_code).unwrap_or(DocKind::Invoice),
        number,
        type_code,
        issue_date,
        due_date,
        currency,
        tax_exclusive,
        tax,
        grand_total,
        amount_due,
        seller,
        buyer,
        buyer_reference: text_at(agreement, &["BuyerReference"]),
        order_reference: text_at(agreement, &["BuyerOrderReferencedDocument", "IssuerAssignedID"]),
        preceding_invoices: children(settlement, "InvoiceReferencedDocument").filter_map(|d| text_at(d, &["IssuerAssignedID"])).collect(),
        warnings,
    })
}

// ---- UBL ----

fn ubl_party(p: Node<'_, '_>) -> Party {
    let mut party = Party {
        name: text_at(p, &["PartyLegalEntity", "RegistrationName"]).or_else(|| text_at(p, &["PartyName", "Name"])),
        ..Default::default()
    };
    for pi in children(p, "PartyIdentification") {
        if let Some(id) = child(pi, "ID") {
            if let Some(v) = text_of(id) {
                party.add_id(id.attribute("schemeID"), &v);
            }
        }
    }
    for le in children(p, "PartyLegalEntity") {
        if let Some(id) = child(le, "CompanyID") {
            if let Some(v) = text_of(id) {
                party.add_id(id.attribute("schemeID"), &v);
            }
        }
    }
    for ts in children(p, "PartyTaxScheme") {
        let scheme = text_at(ts, &["TaxScheme", "ID"]).unwrap_or_else(|| "VAT".into());
        if let Some(v) = text_at(ts, &["CompanyID"]) {
            party.add_id(Some(if scheme == "VAT" { "VA" } else { scheme.as_str() }), &v);
        }
    }
    party
}

fn ubl(root: Node<'_, '_>, credit_note_root: bool) -> Result<EInvoice, EInvoiceError> {
    let mut warnings = vec![];
    let number = number(text_at(root, &["ID"]))?;
    let type_code = text_at(root, &[if credit_note_root { "CreditNoteTypeCode" } else { "InvoiceTypeCode" }]);
    let kind = if credit_note_root { DocKind::CreditNote } else { type_code.as_deref().map(DocKind::from_code).unwrap_or(DocKind::Invoice) };
    let issue_date = date("issue date", &text_at(root, &["IssueDate"]).ok_or(EInvoiceError::Missing("issue date"))?)?;
    let due_text = text_at(root, &["DueDate"]).or_else(|| children(root, "PaymentMeans").find_map(|m| text_at(m, &["PaymentDueDate"])));
    let due_date = due_text.map(|d| date("due date", &d)).transpose()?;
    let currency = text_at(root, &["DocumentCurrencyCode"]).ok_or(EInvoiceError::Missing("document currency"))?;
    let total = child(root, "LegalMonetaryTotal").ok_or(EInvoiceError::Missing("LegalMonetaryTotal"))?;
    let tax_exclusive = opt_money("tax exclusive amount", child(total, "TaxExclusiveAmount"), &mut warnings)?;
    let grand_total = opt_money("tax inclusive amount", child(total, "TaxInclusiveAmount"), &mut warnings)?;
    let amount_due = opt_money("payable amount", child(total, "PayableAmount"), &mut warnings)?;
    let tax = opt_money("tax amount", in_currency(children(root, "TaxTotal").filter_map(|t| child(t, "TaxAmount")), &currency), &mut warnings)?;
    let party = |role: &str| at(root, &[role, "Party"]).map(ubl_party).unwrap_or_default();
    Ok(EInvoice {
        syntax: Syntax::Ubl,
        number,
        kind,
        type_code,
        issue_date,
        due_date,
        currency,
        tax_exclusive,
        tax,
        grand_total,
        amount_due,
        seller: party("AccountingSupplierParty"),
        buyer: party("AccountingCustomerParty"),
        buyer_reference: text_at(root, &["BuyerReference"]),
        order_reference: text_at(root, &["OrderReference", "ID"]),
        preceding_invoices: children(root, "BillingReference").filter_map(|b| text_at(b, &["InvoiceDocumentReference", "ID"])).collect(),
        warnings,
    })
}

// ---- Factur-X / ZUGFeRD PDF ----

/// Names of the embedded invoice XML, by standard and version.
const EMBEDDED_NAMES: [&str; 4] = ["factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml", "order-x.xml"];

/// The embedded e-invoice XML of a PDF, if any: the file specification named
/// as Factur-X/ZUGFeRD says (`factur-x.xml`, `zugferd-invoice.xml`,
/// `ZUGFeRD-invoice.xml`, `xrechnung.xml`), else any embedded XML file whose
/// root is a CII or UBL invoice. The stream is decoded (FlateDecode...).
pub fn embedded_xml(pdf: &[u8]) -> Result<Option<Vec<u8>>, EInvoiceError> {
    // lopdf is a large parser of hostile input: a panic in it must not take
    // the process down (the import of a folder goes on with the next file).
    let owned = pdf.to_vec();
    match std::panic::catch_unwind(move || embedded_xml_inner(&owned)) {
        Ok(r) => r,
        Err(_) => Err(EInvoiceError::Pdf("the pdf parser failed on this file".into())),
    }
}

fn embedded_xml_inner(pdf: &[u8]) -> Result<Option<Vec<u8>>, EInvoiceError> {
    use lopdf::{Document as Pdf, Object};
    let doc = Pdf::load_mem(pdf).map_err(|e| EInvoiceError::Pdf(e.to_string()))?;
    let name_of = |o: Option<&Object>| -> Option<String> {
        match o? {
            Object::String(b, _) => Some(pdf_text(b)),
            _ => None,
        }
    };
    // (name, stream bytes) of every embedded file.
    let mut files: Vec<(String, Vec<u8>)> = vec![];
    for obj in doc.objects.values() {
        let Ok(dict) = obj.as_dict() else { continue };
        let Ok(ef) = dict.get(b"EF").and_then(|e| doc.dereference(e)).and_then(|(_, e)| e.as_dict()) else { continue };
        let name = name_of(dict.get(b"UF").ok()).or_else(|| name_of(dict.get(b"F").ok())).unwrap_or_default();
        let Some(stream_ref) = ef.get(b"F").ok().or_else(|| ef.get(b"UF").ok()) else { continue };
        let Ok((_, Object::Stream(stream))) = doc.dereference(stream_ref) else { continue };
        let content = if stream.dict.get(b"Filter").is_ok() {
            match stream.decompressed_content() {
                Ok(c) => c,
                Err(_) => continue,
            }
        } else {
            stream.content.clone()
        };
        files.push((name, content));
    }
    let lower = |s: &str| s.to_ascii_lowercase();
    if let Some((_, c)) = files.iter().find(|(n, _)| EMBEDDED_NAMES.contains(&lower(n).as_str())) {
        return Ok(Some(c.clone()));
    }
    Ok(files.into_iter().find(|(_, c)| looks_like_xml(c) && read_xml(c).is_ok()).map(|(_, c)| c))
}

/// A PDF text string: UTF-16BE with a BOM, else PDFDocEncoding (Latin-1 is
/// close enough for file names).
fn pdf_text(b: &[u8]) -> String {
    if let Some(rest) = b.strip_prefix(&[0xfe, 0xff]) {
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        return String::from_utf16_lossy(&units);
    }
    b.iter().map(|&c| c as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_to_cents() {
        let mut w = vec![];
        for (s, c) in [("1234.5", 123450), ("-0.75", -75), ("12", 1200), ("0.005", 1), ("10.994", 1099), (".5", 50), ("+3.10", 310)] {
            assert_eq!(money("x", s, &mut w).unwrap(), Money(c), "{s}");
        }
        for s in ["", "1,5", "abc", "1.2.3", "-", "9999999999999999"] {
            assert!(money("x", s, &mut w).is_err(), "{s}");
        }
    }

    #[test]
    fn party_identifiers() {
        let mut p = Party::default();
        p.add_id(Some("0009"), "123 456 789 00012");
        p.add_id(Some("VA"), "FR12123456789");
        p.add_id(Some("0088"), "5790000435975");
        assert_eq!(p.siret.as_deref(), Some("12345678900012"));
        assert_eq!(p.siren.as_deref(), Some("123456789"));
        assert_eq!(p.vat.as_deref(), Some("FR12123456789"));
        assert_eq!(p.other_ids, vec!["0088:5790000435975".to_string()]);
    }

    #[test]
    fn bad_input_is_an_answer_not_a_panic() {
        assert!(matches!(read(b""), Ok(Reading::NoStructuredData(_))));
        assert!(matches!(read(b"hello"), Ok(Reading::NoStructuredData(_))));
        assert!(matches!(read(b"<a><b>"), Err(EInvoiceError::Xml(_))));
        assert!(matches!(read(b"<html/>"), Err(EInvoiceError::UnknownRoot(_))));
        assert!(read(b"%PDF-1.4\n garbage").is_err());
        assert!(matches!(read(b"<Invoice xmlns='urn:oasis:names:specification:ubl:schema:xsd:Invoice-2'/>"), Err(EInvoiceError::Missing(_))));
    }
}

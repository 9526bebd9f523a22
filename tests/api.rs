//! Issue 8 as the company's systems see it: e-invoices read from files and
//! from client mail, the JSON API with its keys and scopes, and signed
//! webhooks delivered to a real HTTP receiver in the test, across an outage.
//! Runs on SQLite, and on the test machine's PostgreSQL where noted.

use chrono::NaiveDate;
use dispute_desk::config::Config;
use dispute_desk::domain::Money;
use dispute_desk::einvoice::{self, DocKind, EInvoice, Reading};
use dispute_desk::store::Store;
use dispute_desk::app;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/einvoice").join(name)
}

fn shared_einvoices() -> Option<PathBuf> {
    let p = root().join("../shared/einvoices");
    p.is_dir().then_some(p)
}

const INV: DocKind = DocKind::Invoice;
const CN: DocKind = DocKind::CreditNote;

type Expect = (&'static str, &'static str, DocKind, &'static str, Option<&'static str>, &'static str, Option<i64>, Option<i64>, Option<i64>, Option<i64>, &'static str, &'static str, Option<&'static str>, Option<&'static str>);

// (file, number, kind, issue, due, currency, tax exclusive, tax, grand total,
//  amount due, seller, buyer, buyer reference, order reference), read by hand
// from the XML of each document (ExchangedDocument, HeaderTradeAgreement,
// HeaderTradeSettlement).
const CII: &[Expect] = &[
    ("cii/cii_examples_CII-BR-CO-10-RoundingIssue.xml", "0", INV, "2021-03-26", Some("2021-03-26"), "EUR", Some(0), Some(0), Some(0), Some(0), "Seller GmbH", "BuyerName", Some("XXX-XXXXX-XX"), None),
    ("cii/cii_examples_CII_business_example_01.xml", "TOSL108", INV, "2013-06-30", Some("2013-07-20"), "NOK", Some(143650), Some(36528), Some(180178), Some(80178), "Salescompany ltd.", "The Buyercompany", None, Some("123")),
    ("cii/cii_examples_CII_business_example_02.xml", "INV000013", INV, "2013-08-25", Some("2013-05-10"), "EUR", Some(1000), Some(190), Some(1190), Some(1190), "xxxx", "Buyercompany ltd", None, None),
    ("cii/cii_examples_CII_business_example_Z.xml", "2016166", INV, "2015-01-09", Some("2015-01-09"), "EUR", Some(1169387), Some(0), Some(1169387), Some(1169387), "XXX AG", "XXX AG", None, None),
    ("cii/cii_examples_CII_example1.xml", "12115118", INV, "2015-01-09", Some("2015-01-09"), "EUR", Some(22960), Some(2073), Some(25033), Some(25033), "De Koksmaat", "ODIN 59", None, None),
    ("cii/cii_examples_CII_example2.xml", "TOSL108", INV, "2013-06-30", Some("2013-07-20"), "NOK", Some(143650), Some(36528), Some(180178), Some(80178), "Salescompany ltd.", "The Buyercompany", None, Some("123")),
    ("cii/cii_examples_CII_example3.xml", "TOSL108", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(90000), Some(22500), Some(112500), Some(112500), "SubscriptionSeller", "Buyercompany ltd", None, None),
    ("cii/cii_examples_CII_example4.xml", "TOSL110", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(400000), Some(67500), Some(467500), Some(467500), "SellerCompany", "Buyercompany ltd", None, Some("123")),
    // Tax total given twice (DKK and EUR): the invoice currency's is kept.
    ("cii/cii_examples_CII_example5.xml", "TOSL110", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(400000), Some(67500), Some(467500), Some(233750), "SellerCompany", "Buyercompany ltd", Some("qwerty"), Some("PO4711")),
    ("cii/cii_examples_CII_example6.xml", "TOSL110", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(400000), Some(67500), Some(467500), Some(467500), "SellerCompany", "Buyercompany ltd", None, None),
    // No due date, no tax total.
    ("cii/cii_examples_CII_example7.xml", "INVOICE_test_7", INV, "2013-05-13", None, "SEK", Some(320000), None, Some(320000), Some(320000), "The Sellercompany Incorporated", "THe Buyercompany", None, Some("Order_9988_x")),
    ("cii/cii_examples_CII_example8.xml", "1100512149", INV, "2014-11-10", Some("2014-11-24"), "EUR", Some(90891), Some(19087), Some(109978), Some(109978), "Enexis B.V.", "Klant", None, None),
    ("cii/cii_examples_CII_example9.xml", "20150483", INV, "2015-04-01", Some("2015-04-15"), "EUR", Some(14700), Some(3087), Some(17787), Some(17787), "Bluem BV", "Provide Verzekeringen", None, None),
    ("cii/cii_examples_XRechnung-O.xml", "150377292", INV, "2021-01-14", Some("2021-01-01"), "EUR", Some(38554460), None, Some(38554460), Some(38554460), "XX", "XX", Some("XX"), None),
    ("cii/cii_examples_huf_example_cii.xml", "21/001003559/996", INV, "2021-10-05", Some("2021-11-01"), "HUF", Some(6918000), Some(1867900), Some(8785900), Some(8785900), "DKV Euro Service GmbH + Co. KG", "HIL Heeresinstandsetzungslogistik GmbH", Some("992-80013-14"), None),
];

// Read by hand from each UBL document (root, AccountingSupplierParty /
// AccountingCustomerParty, TaxTotal, LegalMonetaryTotal).
const UBL: &[Expect] = &[
    ("ubl/ubl_examples_BIS3_Invoice_negativ.XML", "12345", INV, "2019-01-25", Some("2019-02-24"), "DKK", Some(-62574354), Some(-15643589), Some(-78217943), Some(-78217943), "Company A", "Company B", Some("n/a"), Some("n/a")),
    ("ubl/ubl_examples_BIS3_Invoice_positive.XML", "12345", INV, "2019-01-25", Some("2019-02-24"), "DKK", Some(62574354), Some(15643589), Some(78217943), Some(78217943), "Company A", "Company B", Some("n/a"), Some("n/a")),
    ("ubl/ubl_examples_guide-example1.xml", "12115118", INV, "2015-01-09", Some("2015-01-09"), "EUR", Some(22960), Some(2073), Some(25033), Some(25033), "De Koksmaat", "ODIN 59", None, None),
    ("ubl/ubl_examples_guide-example2.xml", "TOSL108", INV, "2013-06-30", Some("2013-07-20"), "NOK", Some(143650), Some(36528), Some(180178), Some(80178), "Salescompany ltd.", "The Buyercompany", None, Some("123")),
    ("ubl/ubl_examples_guide-example3.xml", "TOSL108", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(90000), Some(22500), Some(112500), Some(112500), "SubscriptionSeller", "Buyercompany ltd", None, None),
    ("ubl/ubl_examples_issue116.xml", "2018210", INV, "2018-02-08", Some("2018-03-07"), "SEK", Some(70000), Some(13000), Some(83000), Some(83000), "SÄLJARNAMNET", "Project services AB", Some("Buyer reference"), None),
    ("ubl/ubl_examples_sample-discount-price.xml", "test decimal 1", INV, "2018-02-05", Some("2018-02-28"), "EUR", Some(1212), Some(303), Some(1515), Some(1515), "HEP SPLIT", "HEP-OPERATOR DISTRIBUCIJSKOG SUSTAVA D.O.O. ZA DISTRIBUCIJU I OPSKRBU ELEKTRICNE ENERGIJE", None, None),
    // A CreditNote root, no due date.
    ("ubl/ubl_examples_ubl-tc434-creditnote1.xml", "018304 / 28865", CN, "2019-09-23", None, "EUR", Some(10011), Some(0), Some(10011), Some(10011), "My Supplier Company", "My Customer Company", Some("018304 / 28865"), None),
    ("ubl/ubl_examples_ubl-tc434-example1.xml", "12115118", INV, "2015-01-09", Some("2015-01-09"), "EUR", Some(22960), Some(2073), Some(25033), Some(25033), "De Koksmaat", "ODIN 59", None, None),
    // Tax total in EUR and SEK: the document currency's is kept.
    ("ubl/ubl_examples_ubl-tc434-example10.xml", "12115118", INV, "2015-01-09", Some("2015-01-09"), "EUR", Some(22960), Some(2073), Some(25033), Some(25033), "De Koksmaat", "ODIN 59", None, None),
    ("ubl/ubl_examples_ubl-tc434-example2.xml", "TOSL108", INV, "2013-06-30", Some("2013-07-20"), "NOK", Some(143650), Some(36528), Some(180178), Some(80178), "Salescompany ltd.", "The Buyercompany", None, Some("123")),
    ("ubl/ubl_examples_ubl-tc434-example3.xml", "TOSL108", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(170000), Some(30500), Some(200500), Some(200500), "SubscriptionSeller", "Buyercompany ltd", None, None),
    ("ubl/ubl_examples_ubl-tc434-example4.xml", "TOSL110", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(400000), Some(67500), Some(467500), Some(467500), "SellerCompany", "Buyercompany ltd", None, Some("123")),
    ("ubl/ubl_examples_ubl-tc434-example5.xml", "TOSL110", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(400000), Some(67500), Some(467500), Some(233750), "SellerCompany", "Buyercompany ltd", Some("qwerty"), Some("PO4711")),
    ("ubl/ubl_examples_ubl-tc434-example6.xml", "TOSL110", INV, "2013-04-10", Some("2013-05-10"), "DKK", Some(400000), Some(67500), Some(467500), Some(467500), "SellerCompany", "Buyercompany ltd", None, None),
    ("ubl/ubl_examples_ubl-tc434-example7.xml", "INVOICE_test_7", INV, "2013-03-11", None, "SEK", Some(320000), Some(0), Some(320000), Some(320000), "The Sellercompany Incorporated", "THe Buyercompany", None, Some("Order_9988_x")),
    ("ubl/ubl_examples_ubl-tc434-example8.xml", "1100512149", INV, "2014-11-10", Some("2014-11-24"), "EUR", Some(90891), Some(19087), Some(109978), Some(109978), "Enexis B.V.", "Klant", None, None),
    ("ubl/ubl_examples_ubl-tc434-example9.xml", "20150483", INV, "2015-04-01", Some("2015-04-14"), "EUR", Some(14700), Some(3087), Some(17787), Some(17787), "Bluem BV", "Provide Verzekeringen", None, None),
];

// Read by hand from the CII XML embedded in each PDF (decompressed with a
// throwaway zlib script, not with dispute-desk).
const FACTURX: &[Expect] = &[
    ("factur-x/Avoir_FR_type381_BASIC.pdf", "AV-2017-0005", CN, "2017-11-16", Some("2017-11-16"), "EUR", Some(21848), Some(1499), Some(23347), Some(23347), "Au bon moulin", "Ma jolie boutique", None, Some("PO445")),
    ("factur-x/Facture_DOM_BASICWL.pdf", "FA-2017-0009", INV, "2017-11-05", Some("2017-12-05"), "EUR", Some(53075), Some(0), Some(53075), Some(38375), "Au bon moulin", "Hôtel Saint Denis", None, Some("BC543")),
    // MINIMUM profile: no payment terms, so no due date.
    ("factur-x/Facture_DOM_MINIMUM.pdf", "FA-2017-0009", INV, "2017-11-05", None, "EUR", Some(53075), Some(0), Some(53075), Some(38375), "Au bon moulin", "Hôtel Saint Denis", None, Some("BC543")),
    ("factur-x/Facture_FR_BASICWL.pdf", "FA-2017-0010", INV, "2017-11-13", Some("2017-12-13"), "EUR", Some(62490), Some(4625), Some(67115), Some(47015), "Au bon moulin", "Ma jolie boutique", None, Some("PO445")),
    ("factur-x/Facture_FR_MINIMUM.pdf", "FA-2017-0010", INV, "2017-11-13", None, "EUR", Some(62490), Some(4625), Some(67115), Some(47015), "Au bon moulin", "Ma jolie boutique", None, Some("PO445")),
    ("factur-x/Facture_UE_BASICWL.pdf", "FA-2017-0008", INV, "2017-11-03", Some("2017-12-03"), "EUR", Some(207676), Some(0), Some(207676), Some(145376), "Au bon moulin", "Me gusta olive", None, Some("COMPRA0832")),
    ("factur-x/Facture_UE_MINIMUM.pdf", "FA-2017-0008", INV, "2017-11-03", None, "EUR", Some(207676), Some(0), Some(207676), Some(145376), "Au bon moulin", "Me gusta olive", None, Some("COMPRA0832")),
];

// Buyer identifiers (SIRET, SIREN, VAT) read by hand, for the French ones.
/// (file, SIRET, SIREN, VAT).
type Ids = (&'static str, Option<&'static str>, Option<&'static str>, Option<&'static str>);
const FACTURX_BUYER_IDS: &[Ids] = &[
    ("factur-x/Avoir_FR_type381_BASIC.pdf", Some("78787878400035"), Some("787878784"), Some("FR19787878784")),
    ("factur-x/Facture_DOM_BASICWL.pdf", Some("34343434600010"), Some("343434346"), Some("FR90343434346")),
    ("factur-x/Facture_UE_BASICWL.pdf", None, None, Some("ESA12345674")),
];

fn read_ok(bytes: &[u8], what: &str) -> EInvoice {
    match einvoice::read(bytes) {
        Ok(Reading::Invoice(i)) => *i,
        other => panic!("{what}: expected an e-invoice, got {other:?}"),
    }
}

fn check(e: &Expect, inv: &EInvoice) {
    let (file, number, kind, issue, due, currency, excl, tax, grand, amount_due, seller, buyer, buyer_ref, order) = *e;
    let d = |s: &str| s.parse::<NaiveDate>().unwrap();
    assert_eq!(inv.number.as_str(), number, "{file}: number");
    assert_eq!(inv.kind, kind, "{file}: kind");
    assert_eq!(inv.issue_date, d(issue), "{file}: issue date");
    assert_eq!(inv.due_date, due.map(d), "{file}: due date");
    assert_eq!(inv.currency, currency, "{file}: currency");
    assert_eq!(inv.tax_exclusive, excl.map(Money), "{file}: tax exclusive");
    assert_eq!(inv.tax, tax.map(Money), "{file}: tax");
    assert_eq!(inv.grand_total, grand.map(Money), "{file}: grand total");
    assert_eq!(inv.amount_due, amount_due.map(Money), "{file}: amount due");
    assert_eq!(inv.seller.name.as_deref(), Some(seller), "{file}: seller");
    assert_eq!(inv.buyer.name.as_deref(), Some(buyer), "{file}: buyer");
    assert_eq!(inv.buyer_reference.as_deref(), buyer_ref, "{file}: buyer reference");
    assert_eq!(inv.order_reference.as_deref(), order, "{file}: order reference");
}

#[test]
fn every_shared_einvoice_reads_as_written_by_hand() {
    let Some(dir) = shared_einvoices() else {
        println!("skipped: ../shared/einvoices is not here");
        return;
    };
    let t0 = std::time::Instant::now();
    let mut seen = 0;
    for e in CII.iter().chain(UBL).chain(FACTURX) {
        let bytes = std::fs::read(dir.join(e.0)).unwrap();
        check(e, &read_ok(&bytes, e.0));
        seen += 1;
    }
    let elapsed = t0.elapsed();
    // Every structured file in the folder has its row above.
    let mut on_disk = 0;
    for sub in ["cii", "ubl", "factur-x"] {
        on_disk += std::fs::read_dir(dir.join(sub)).unwrap().count();
    }
    assert_eq!(seen, on_disk, "a file under ../shared/einvoices has no hand-written expectation");
    for (file, siret, siren, vat) in FACTURX_BUYER_IDS {
        let inv = read_ok(&std::fs::read(dir.join(file)).unwrap(), file);
        assert_eq!((inv.buyer.siret.as_deref(), inv.buyer.siren.as_deref(), inv.buyer.vat.as_deref()), (*siret, *siren, *vat), "{file}");
        assert_eq!(inv.seller.siret.as_deref(), Some("99999999800010"), "{file}");
        assert_eq!(inv.seller.vat.as_deref(), Some("FR11999999998"), "{file}");
    }
    // Identifiers with spaces are kept without them; GLNs keep their scheme.
    let r = read_ok(&std::fs::read(dir.join("cii/cii_examples_CII-BR-CO-10-RoundingIssue.xml")).unwrap(), "rounding");
    assert_eq!(r.seller.vat.as_deref(), Some("DE123456789"));
    let r = read_ok(&std::fs::read(dir.join("cii/cii_examples_CII_example3.xml")).unwrap(), "example3");
    assert_eq!(r.buyer.other_ids, vec!["0088:5790000435975".to_string()]);
    println!("read {seen} e-invoices from ../shared/einvoices in {:.1} ms ({:.2} ms each)", elapsed.as_secs_f64() * 1e3, elapsed.as_secs_f64() * 1e3 / seen as f64);
}

#[test]
fn an_ordinary_pdf_has_no_structured_data() {
    if let Some(dir) = shared_einvoices() {
        let bytes = std::fs::read(dir.join("unstructured/RE-E-974-Hetzner_2016-01-19_R0005532486.pdf")).unwrap();
        assert!(matches!(einvoice::read(&bytes), Ok(Reading::NoStructuredData(_))), "hetzner pdf");
    } else {
        println!("skipped: ../shared/einvoices is not here (own plain pdf still checked)");
    }
    match einvoice::read(&plain_pdf()) {
        Ok(Reading::NoStructuredData(why)) => assert!(why.contains("pdf without"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// A one-page PDF with no attachment, made with lopdf.
fn plain_pdf() -> Vec<u8> {
    use lopdf::{dictionary, Document, Object};
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let page = doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()] });
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = vec![];
    doc.save_to(&mut out).unwrap();
    out
}

/// A Factur-X-shaped PDF: `xml` embedded as `name`, FlateDecode, listed in
/// the catalog's /Names /EmbeddedFiles and /AF, as Factur-X 1.0 says.
pub fn facturx_pdf(xml: &[u8], name: &str) -> Vec<u8> {
    use lopdf::{dictionary, Document, Object, Stream, StringFormat};
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let page = doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()] });
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 }));
    let mut stream = Stream::new(dictionary! { "Type" => "EmbeddedFile", "Subtype" => "text/xml" }, xml.to_vec());
    stream.compress().unwrap();
    assert!(stream.dict.get(b"Filter").is_ok(), "the fixture must be compressed");
    let file = doc.add_object(stream);
    let spec = doc.add_object(dictionary! {
        "Type" => "Filespec",
        "F" => Object::String(name.as_bytes().to_vec(), StringFormat::Literal),
        "UF" => Object::String(name.as_bytes().to_vec(), StringFormat::Literal),
        "AFRelationship" => "Data",
        "EF" => dictionary! { "F" => file },
    });
    let names = dictionary! { "EmbeddedFiles" => dictionary! { "Names" => vec![Object::String(name.as_bytes().to_vec(), StringFormat::Literal), spec.into()] } };
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id, "Names" => names, "AF" => vec![spec.into()] });
    doc.trailer.set("Root", catalog);
    let mut out = vec![];
    doc.save_to(&mut out).unwrap();
    out
}

#[test]
fn own_fixtures_read_as_written() {
    let cii = std::fs::read(fixture("facture-cii.xml")).unwrap();
    let e: Expect = ("facture-cii.xml", "FA-2026-00123", INV, "2026-01-15", Some("2026-02-14"), "EUR", Some(125000), Some(25000), Some(150000), Some(100000), "Alpes Froid & Climatisation SAS", "Boulangerie Dupont SARL", Some("SERV-ACHATS-42"), Some("BC-7781"));
    let inv = read_ok(&cii, "cii");
    check(&e, &inv);
    assert_eq!((inv.buyer.siret.as_deref(), inv.buyer.siren.as_deref(), inv.buyer.vat.as_deref()), (Some("44455566600027"), Some("444555666"), Some("FR12444555666")));
    assert_eq!(inv.seller.siret.as_deref(), Some("11122233300015"));
    // The same XML inside a Factur-X PDF, under each name the standards use.
    for name in ["factur-x.xml", "ZUGFeRD-invoice.xml", "zugferd-invoice.xml", "xrechnung.xml"] {
        check(&e, &read_ok(&facturx_pdf(&cii, name), name));
    }
    // An embedded XML under another name is still found when it is an invoice.
    check(&e, &read_ok(&facturx_pdf(&cii, "invoice.xml"), "other name"));
    let cn = read_ok(&std::fs::read(fixture("avoir-ubl.xml")).unwrap(), "ubl credit note");
    check(&("avoir-ubl.xml", "AV-2026-0007", CN, "2026-02-03", Some("2026-03-05"), "EUR", Some(12000), Some(2400), Some(14400), Some(14400), "Alpes Froid & Climatisation SAS", "Boulangerie Dupont SARL", Some("SERV-ACHATS-42"), Some("BC-7781")), &cn);
    assert_eq!((cn.buyer.siret.as_deref(), cn.buyer.vat.as_deref()), (Some("44455566600027"), Some("FR12444555666")));
    assert_eq!(cn.seller.siren.as_deref(), Some("111222333"));
    let u = read_ok(&std::fs::read(fixture("facture-ubl.xml")).unwrap(), "ubl");
    check(&("facture-ubl.xml", "FA-2026-00130", INV, "2026-02-10", None, "EUR", Some(33333), Some(6667), Some(40000), Some(40000), "Alpes Froid", "Hôtel du Lac", None, None), &u);
}

#[test]
fn bad_einvoices_are_answers_not_panics() {
    let cii = std::fs::read(fixture("facture-cii.xml")).unwrap();
    let text = String::from_utf8(cii.clone()).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (text.replace("20260115", "2026-13-45").into_bytes(), "invalid issue date"),
        (text.replace("<ram:ID>FA-2026-00123</ram:ID>", "").into_bytes(), "missing invoice number"),
        (text.replace("1500.00", "1 500,00").into_bytes(), "invalid grand total"),
        (text.replace("</rsm:CrossIndustryInvoice>", "").into_bytes(), "not well-formed xml"),
        (cii[..cii.len() / 2].to_vec(), "not well-formed xml"),
    ];
    for (bytes, want) in cases {
        let e = einvoice::read(&bytes).unwrap_err().to_string();
        assert!(e.contains(want), "want {want:?}, got {e}");
    }
    // Truncated and scrambled PDFs: an error or no data, never a panic.
    let pdf = facturx_pdf(&cii, "factur-x.xml");
    for cut in [10, pdf.len() / 3, pdf.len() / 2, pdf.len() - 40] {
        let _ = einvoice::read(&pdf[..cut]);
    }
    let mut scrambled = pdf.clone();
    for i in (200..scrambled.len()).step_by(97) {
        scrambled[i] ^= 0x5a;
    }
    let _ = einvoice::read(&scrambled);
}

/// A test desk: its own data folder and database.
pub struct Desk {
    pub cfg: Config,
    _dir: tempfile::TempDir,
}

impl Desk {
    pub async fn sqlite() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::in_checkout(dir.path(), &root());
        cfg.company.name = "Sud Levage SARL".into();
        cfg.company.from_address = "julie.morel@sud-levage.fr".into();
        Desk { cfg, _dir: dir }
    }

    pub async fn postgres() -> Desk {
        let admin = std::env::var("DISPUTE_DESK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let url = Store::create_postgres_database(&admin, "dd_test").await.unwrap_or_else(|e| panic!("PostgreSQL must run for the tests ({admin}): {e}"));
        let mut d = Desk::sqlite().await;
        d.cfg.database_url = Some(url);
        d
    }

    pub async fn open(&self) -> Store {
        app::open(&self.cfg).await.unwrap().0
    }
}

fn mini() -> PathBuf {
    root().join("tests/fixtures/mini")
}

async fn check_import_einvoice(desk: &Desk) {
    let store = desk.open().await;
    app::import_corpus(&store, &mini()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("facture-cii.xml"), dir.path().join("a-facture.xml")).unwrap();
    std::fs::write(dir.path().join("b-facturx.pdf"), facturx_pdf(&std::fs::read(fixture("facture-cii.xml")).unwrap(), "factur-x.xml")).unwrap();
    std::fs::copy(fixture("avoir-ubl.xml"), dir.path().join("c-avoir.xml")).unwrap();
    std::fs::write(dir.path().join("d-plain.pdf"), plain_pdf()).unwrap();
    // The buyer is unknown: refused with a clear message, nothing imported.
    let r = app::import_einvoices(&store, dir.path(), false).await.unwrap();
    assert_eq!((r.files, r.imported.len(), r.no_structured_data.len(), r.refused.len()), (4, 0, 1, 3));
    assert!(r.refused[0].1.contains("no client for buyer \"Boulangerie Dupont SARL\" (siret 44455566600027, siren 444555666, vat FR12444555666)"), "{}", r.refused[0].1);
    assert!(r.refused[0].1.contains("--create-clients"), "{}", r.refused[0].1);
    // Matched by name to an existing client, the SIRET is learned...
    sqlx::query("UPDATE clients SET name = 'BOULANGERIE  Dupont sarl' WHERE id = 'K1'").execute(&store.pool).await.unwrap();
    let r = app::import_einvoices(&store, &dir.path().join("a-facture.xml"), false).await.unwrap();
    assert_eq!(r.imported.len(), 1, "{r:?}");
    assert_eq!((r.imported[0].client_id.as_str(), r.imported[0].matched_by.as_str()), ("K1", "name"));
    // ...so the next ones match by SIRET even after a rename; twice is idempotent.
    sqlx::query("UPDATE clients SET name = 'Dupont' WHERE id = 'K1'").execute(&store.pool).await.unwrap();
    for _ in 0..2 {
        let r = app::import_einvoices(&store, dir.path(), false).await.unwrap();
        assert_eq!((r.imported.len(), r.no_structured_data.len(), r.refused.len()), (3, 1, 0), "{r:?}");
        assert!(r.imported.iter().all(|i| i.client_id == "K1" && i.matched_by == "siret"), "{r:?}");
    }
    let inv = store.invoices_by_number(&[dispute_desk::domain::InvoiceNumber::parse("FA-2026-00123").unwrap()]).await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!((inv[0].client_id.as_str(), inv[0].due_date.as_str(), inv[0].amount, inv[0].po_number.as_deref(), inv[0].status.as_str()), ("K1", "2026-02-14", Money(100000), Some("BC-7781"), "open"));
    let cn = store.invoices_by_number(&[dispute_desk::domain::InvoiceNumber::parse("AV-2026-0007").unwrap()]).await.unwrap();
    assert_eq!(cn[0].status, "paid", "a credit note is never chased");
    // An unknown buyer with --create-clients: a client keyed by its identifier.
    let r = app::import_einvoices(&store, &fixture("facture-ubl.xml"), true).await.unwrap();
    assert_eq!((r.imported[0].client_id.as_str(), r.imported[0].matched_by.as_str()), ("einv-hôtel-du-lac", "created"));
    let u = store.invoices_by_number(&[dispute_desk::domain::InvoiceNumber::parse("FA-2026-00130").unwrap()]).await.unwrap();
    assert_eq!(u[0].due_date, "2026-03-12", "no due date: issue date + 30 days");
}

#[tokio::test]
async fn import_einvoice_fills_the_ledger_sqlite() {
    check_import_einvoice(&Desk::sqlite().await).await;
}

#[tokio::test]
async fn import_einvoice_fills_the_ledger_postgres() {
    check_import_einvoice(&Desk::postgres().await).await;
}

// ---------------------------------------------------------------- the API

use dispute_desk::api::{self, ApiState};
use dispute_desk::store::apikeys::Scope;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;

type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>;

/// The application as the company's systems see it: the mini company
/// imported and its mail ingested, the API on 127.0.0.1:0.
struct App {
    base: String,
    store: Store,
    desk: Desk,
    http: Client,
}

async fn spawn_app(desk: Desk) -> App {
    let (store, policy) = app::open(&desk.cfg).await.unwrap();
    app::import_corpus(&store, &mini()).await.unwrap();
    let mut p = app::pipeline(&desk.cfg, store.clone(), policy.clone()).await.unwrap();
    app::ingest_path(&mut p, &mini(), false).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = ApiState { store: store.clone(), policy: Arc::new(policy), cfg: Arc::new(desk.cfg.clone()) };
    tokio::spawn(api::serve(listener, state, std::future::pending()));
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    App { base, store, desk, http }
}

impl App {
    async fn key(&self, user: &str, scope: Scope) -> String {
        self.store.create_api_key(user, scope, "test").await.unwrap().secret
    }

    async fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = hyper::Request::builder().method(method).uri(format!("{}{path}", self.base)).header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = self.http.request(req.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// Every route the API serves; the OpenAPI document must list exactly these.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/clients"),
    ("post", "/api/v1/contacts"),
    ("post", "/api/v1/invoices"),
    ("post", "/api/v1/payments"),
    ("get", "/api/v1/cases"),
    ("get", "/api/v1/cases/{id}"),
    ("post", "/api/v1/cases/{id}/move"),
    ("get", "/api/v1/messages"),
    ("get", "/api/v1/messages/{id}"),
    ("get", "/api/v1/drafts"),
    ("get", "/api/v1/drafts/{id}"),
    ("post", "/api/v1/drafts/{id}/approve"),
    ("post", "/api/v1/drafts/{id}/reject"),
    ("get", "/api/v1/tasks"),
    ("get", "/api/v1/audit"),
];

#[tokio::test]
async fn openapi_document_lists_every_route_and_every_route_is_served() {
    let a = spawn_app(Desk::sqlite().await).await;
    let (st, doc) = a.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(st, 200);
    let mut listed = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                listed.push((m.to_string(), path.clone()));
            }
        }
    }
    listed.sort();
    let mut want: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    // Each documented route is served (a request without a key is refused
    // by authentication, not unknown: 401, never 404 or 405).
    for (m, p) in ROUTES {
        let (st, body) = a.call(&m.to_uppercase(), &p.replace("{id}", "1"), None, Some(json!({}))).await;
        assert_eq!(st, 401, "{m} {p}: {body}");
        assert_eq!(body["error"], "missing or invalid api key");
    }
}

#[tokio::test]
async fn keys_scopes_and_roles() {
    let a = spawn_app(Desk::sqlite().await).await;
    let read = a.key("A1", Scope::Read).await;
    let acc = a.key("A1", Scope::Write).await;
    let sales = a.key("S1", Scope::Write).await;
    let revoked = a.store.create_api_key("M1", Scope::Write, "old").await.unwrap();
    a.store.revoke_api_key(revoked.key.id).await.unwrap();

    // No key, a wrong key, a revoked key: 401.
    assert_eq!(a.call("GET", "/api/v1/cases", None, None).await.0, 401);
    assert_eq!(a.call("GET", "/api/v1/cases", Some("ddk_nope_nope"), None).await.0, 401);
    let forged = format!("{}x", &acc[..acc.len() - 1]);
    assert_eq!(a.call("GET", "/api/v1/cases", Some(&forged), None).await.0, 401);
    assert_eq!(a.call("GET", "/api/v1/cases", Some(&revoked.secret), None).await.0, 401);
    // Keys are stored hashed: the secret is nowhere in the database.
    let secret_part = acc.rsplit('_').next().unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_keys").fetch_all(&a.store.pool).await.unwrap();
    assert!(stored.iter().all(|h| !h.contains(secret_part)) && stored.len() == 4);

    // A read key reads everything and writes nothing.
    let (st, cases) = a.call("GET", "/api/v1/cases", Some(&read), None).await;
    assert_eq!(st, 200);
    let case_id = cases["items"][0]["id"].as_i64().unwrap();
    for path in [format!("/api/v1/cases/{case_id}"), "/api/v1/messages".into(), "/api/v1/drafts".into(), "/api/v1/tasks".into(), "/api/v1/audit".into(), "/api/v1/messages/1".into()] {
        assert_eq!(a.call("GET", &path, Some(&read), None).await.0, 200, "{path}");
    }
    let drafts = a.call("GET", "/api/v1/drafts?status=pending", Some(&read), None).await.1;
    let reply = drafts["items"].as_array().unwrap().iter().find(|d| d["kind"] == "reply").unwrap()["id"].as_i64().unwrap();
    assert_eq!(a.call("GET", &format!("/api/v1/drafts/{reply}"), Some(&read), None).await.0, 200);
    for (path, body) in [
        ("/api/v1/clients", json!({"items": []})),
        ("/api/v1/contacts", json!({"items": []})),
        ("/api/v1/invoices", json!({"items": []})),
        ("/api/v1/payments", json!({"items": []})),
        (&*format!("/api/v1/cases/{case_id}/move"), json!({"status": "in_analysis"})),
        (&*format!("/api/v1/drafts/{reply}/approve"), json!({})),
        (&*format!("/api/v1/drafts/{reply}/reject"), json!({"reason": "x"})),
    ] {
        let (st, b) = a.call("POST", path, Some(&read), Some(body)).await;
        assert_eq!(st, 403, "{path}: {b}");
        assert!(b["error"].as_str().unwrap().contains("read-only"), "{b}");
    }

    // A sales rep's write key may not approve (policy: accountant, manager),
    // nor write ledger data; the draft stays pending.
    let (st, b) = a.call("POST", &format!("/api/v1/drafts/{reply}/approve"), Some(&sales), None).await;
    assert_eq!(st, 403, "{b}");
    assert!(b["error"].as_str().unwrap().contains("may not approve"), "{b}");
    assert_eq!(a.call("POST", "/api/v1/clients", Some(&sales), Some(json!({"items": []}))).await.0, 403);
    assert_eq!(a.store.draft(reply).await.unwrap().status, "pending");
    // The accountant's key approves through the gate: one outbox row, audited as A1.
    let (st, b) = a.call("POST", &format!("/api/v1/drafts/{reply}/approve"), Some(&acc), None).await;
    assert_eq!(st, 200, "{b}");
    assert!(b["outbox_id"].as_i64().is_some());
    assert_eq!(a.call("POST", &format!("/api/v1/drafts/{reply}/approve"), Some(&acc), None).await.0, 409);
    let ev = a.call("GET", "/api/v1/audit?entity=draft&action=approved", Some(&read), None).await.1;
    assert_eq!(ev["items"][0]["actor"], "user:A1");
    let outbox: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(&a.store.pool).await.unwrap();
    assert_eq!(outbox, 1);

    // Moves follow the workflow rules with the key's user's role.
    let (st, b) = a.call("POST", &format!("/api/v1/cases/{case_id}/move"), Some(&sales), Some(json!({"status": "refused", "reason": "x"}))).await;
    assert_eq!(st, 409, "open -> refused is not a transition: {b}");
    let (st, b) = a.call("POST", &format!("/api/v1/cases/{case_id}/move"), Some(&sales), Some(json!({"status": "in_analysis"}))).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["to"], "in_analysis");
    let (st, b) = a.call("POST", &format!("/api/v1/cases/{case_id}/move"), Some(&acc), Some(json!({"status": "adjustment_approved", "reason": "remise", "amount_cents": 10000}))).await;
    assert_eq!(st, 403, "an accountant may not agree an adjustment: {b}");
    let (st, _) = a.call("POST", &format!("/api/v1/cases/{case_id}/move"), Some(&sales), Some(json!({"status": "adjustment_approved", "reason": "remise"}))).await;
    assert_eq!(st, 422, "an adjustment needs its amount");
    let hist = a.call("GET", &format!("/api/v1/cases/{case_id}"), Some(&read), None).await.1;
    assert_eq!(hist["case"]["status"], "in_analysis");
    // Rejecting needs a reason.
    let brief = drafts["items"].as_array().unwrap().iter().find(|d| d["status"] == "pending" && d["id"] != reply).unwrap()["id"].as_i64().unwrap();
    assert_eq!(a.call("POST", &format!("/api/v1/drafts/{brief}/reject"), Some(&acc), Some(json!({"reason": " "}))).await.0, 422);
    assert_eq!(a.call("POST", &format!("/api/v1/drafts/{brief}/reject"), Some(&acc), Some(json!({"reason": "déjà traité par téléphone"}))).await.0, 200);
    drop(a.desk);
}

#[tokio::test]
async fn ledger_upserts_are_idempotent_batches() {
    let a = spawn_app(Desk::sqlite().await).await;
    let acc = a.key("A1", Scope::Write).await;
    let clients = json!({"items": [
        {"id": "K9", "name": "Boulangerie Dupont SARL", "email_domains": ["dupont-pain.fr"], "account_owner": "S1", "siret": "44455566600027", "vat": "FR12444555666"},
        {"id": "K1", "name": "Transports Garnier SARL", "email_domains": ["transports-garnier.fr"], "account_owner": "S1", "strategic": true}
    ]});
    for _ in 0..2 {
        let (st, b) = a.call("POST", "/api/v1/clients", Some(&acc), Some(clients.clone())).await;
        assert_eq!((st, b["upserted"].as_i64()), (200, Some(2)), "{b}");
    }
    assert_eq!(a.store.clients().await.unwrap().len(), 3);
    // A bad item refuses the batch, naming it.
    let (st, b) = a.call("POST", "/api/v1/clients", Some(&acc), Some(json!({"items": [{"id": "K8", "name": "x", "account_owner": "NOBODY"}]}))).await;
    assert_eq!(st, 422, "{b}");
    assert!(b["error"].as_str().unwrap().contains("unknown user \"NOBODY\""), "{b}");
    let inv = json!({"items": [{"number": "FA-2026-00123", "client_id": "K9", "issue_date": "2026-01-15", "due_date": "2026-02-14", "amount_cents": 100000, "po_number": "BC-7781"}]});
    for _ in 0..2 {
        assert_eq!(a.call("POST", "/api/v1/invoices", Some(&acc), Some(inv.clone())).await.1["upserted"], 1);
    }
    let (st, b) = a.call("POST", "/api/v1/invoices", Some(&acc), Some(json!({"items": [{"number": "X-1", "client_id": "NOPE", "issue_date": "2026-01-15", "due_date": "2026-02-14", "amount_cents": 1}]}))).await;
    assert_eq!(st, 422, "{b}");
    let contacts = json!({"items": [{"email": "Compta@Dupont-Pain.fr", "client_id": "K9"}]});
    for _ in 0..2 {
        assert_eq!(a.call("POST", "/api/v1/contacts", Some(&acc), Some(contacts.clone())).await.1["upserted"], 1);
    }
    assert_eq!(a.call("POST", "/api/v1/contacts", Some(&acc), Some(json!({"items": [{"email": "not-an-address", "client_id": "K9"}]}))).await.0, 422);
    let pay = json!({"items": [{"invoice_number": "FA-2026-00123", "date": "2026-02-10", "amount_cents": 100000}]});
    let (st, b) = a.call("POST", "/api/v1/payments", Some(&acc), Some(pay.clone())).await;
    assert_eq!((st, b["recorded"].as_i64()), (200, Some(1)), "{b}");
    let b = a.call("POST", "/api/v1/payments", Some(&acc), Some(pay)).await.1;
    assert_eq!((b["recorded"].as_i64(), b["already_imported"].as_i64()), (Some(0), Some(1)), "{b}");
    // The identifiers given through the API match e-invoice buyers.
    let r = app::import_einvoices(&a.store, &fixture("avoir-ubl.xml"), false).await.unwrap();
    assert_eq!((r.imported[0].client_id.as_str(), r.imported[0].matched_by.as_str()), ("K9", "siret"));
}

#[tokio::test]
async fn lists_page_with_cursors_and_filters() {
    let a = spawn_app(Desk::sqlite().await).await;
    let read = a.key("M1", Scope::Read).await;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&a.store.pool).await.unwrap();
    assert!(total > 5);
    let (mut seen, mut after, mut pages) = (vec![], 0i64, 0);
    loop {
        let b = a.call("GET", &format!("/api/v1/audit?limit=3&after={after}"), Some(&read), None).await.1;
        let items = b["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|e| e["id"].as_i64().unwrap()));
        pages += 1;
        match b["next_cursor"].as_i64() {
            Some(c) => after = c,
            None => break,
        }
    }
    assert_eq!(seen.len() as i64, total, "every event once");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert!(pages >= 2);
    // The same over cases and messages, and a filter.
    let all = a.call("GET", "/api/v1/messages?limit=500", Some(&read), None).await.1["items"].as_array().unwrap().len();
    let (mut n, mut after) = (0, 0);
    loop {
        let b = a.call("GET", &format!("/api/v1/messages?limit=2&after={after}"), Some(&read), None).await.1;
        n += b["items"].as_array().unwrap().len();
        assert!(b["items"].as_array().unwrap().iter().all(|m| m.get("parsed").is_none()), "lists carry no message text");
        match b["next_cursor"].as_i64() {
            Some(c) => after = c,
            None => break,
        }
    }
    assert_eq!(n, all);
    let open = a.call("GET", "/api/v1/cases?status=open", Some(&read), None).await.1;
    assert!(open["items"].as_array().unwrap().iter().all(|c| c["status"] == "open"));
    let k2 = a.call("GET", "/api/v1/cases?client=K2", Some(&read), None).await.1;
    assert!(k2["items"].as_array().unwrap().iter().all(|c| c["client_id"] == "K2"));
    // Latency of a read over a real socket.
    let t0 = std::time::Instant::now();
    for _ in 0..50 {
        assert_eq!(a.call("GET", "/api/v1/cases", Some(&read), None).await.0, 200);
    }
    println!("GET /api/v1/cases: {:.2} ms per request (50 requests, SQLite)", t0.elapsed().as_secs_f64() * 1e3 / 50.0);
}

#[tokio::test]
async fn api_on_postgres() {
    let a = spawn_app(Desk::postgres().await).await;
    let read = a.key("A1", Scope::Read).await;
    let acc = a.key("A1", Scope::Write).await;
    let drafts = a.call("GET", "/api/v1/drafts?status=pending", Some(&read), None).await.1;
    let reply = drafts["items"].as_array().unwrap().iter().find(|d| d["kind"] == "reply").unwrap()["id"].as_i64().unwrap();
    assert_eq!(a.call("POST", &format!("/api/v1/drafts/{reply}/approve"), Some(&read), None).await.0, 403);
    assert_eq!(a.call("POST", &format!("/api/v1/drafts/{reply}/approve"), Some(&acc), None).await.0, 200);
    let b = a.call("GET", "/api/v1/audit?limit=2", Some(&read), None).await.1;
    assert!(b["next_cursor"].as_i64().is_some());
}

// ---------------------------------------------------------------- webhooks

use dispute_desk::webhooks::{self, WebhookConfig};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Default)]
struct Received {
    /// event id -> how many times it arrived.
    ids: HashMap<String, usize>,
    types: BTreeSet<String>,
    bad_signatures: usize,
}

const SECRET: &str = "whsec-test-1234";

/// A receiver as the company would write one: checks the signature over
/// `timestamp.body`, deduplicates by event id.
async fn receiver(listener: tokio::net::TcpListener, got: Arc<Mutex<Received>>) {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
            let got = got.clone();
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let ts: i64 = h("x-disputedesk-timestamp").parse().unwrap_or(0);
                let mut g = got.lock().unwrap();
                if !webhooks::verify(SECRET, ts, &body, &h("x-disputedesk-signature")) {
                    g.bad_signatures += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["id"], h("x-disputedesk-event-id"));
                *g.ids.entry(h("x-disputedesk-event-id")).or_default() += 1;
                g.types.insert(v["type"].as_str().unwrap().to_string());
                StatusCode::NO_CONTENT
            }
        }),
    );
    axum::serve(listener, app).await.unwrap();
}

/// An SMTP relay stand-in that accepts every message.
struct AcceptAll;

impl dispute_desk::mail::smtp::SendMail for AcceptAll {
    fn send<'a>(
        &'a self,
        _from: &'a dispute_desk::domain::EmailAddress,
        _to: &'a [dispute_desk::domain::EmailAddress],
        _raw: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), dispute_desk::mail::smtp::SmtpError>> + Send + 'a>> {
        Box::pin(async { Ok(()) })
    }
}

async fn check_webhooks_across_an_outage(desk: Desk) {
    // The receiver's address is reserved, then the receiver is down. On a
    // loopback address of its own (127.0.0.x), so that no other test's
    // listener on 127.0.0.1 can take the freed port meanwhile.
    let ip = format!("127.0.0.{}", 2 + uuid::Uuid::new_v4().as_bytes()[0] % 250);
    let probe = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let endpoints = vec![
        WebhookConfig { url: format!("http://{addr}/hook"), secret: SECRET.into(), events: vec![], name: Some("erp".into()) },
        // A second endpoint that only wants status changes.
        WebhookConfig { url: format!("http://{addr}/hook"), secret: SECRET.into(), events: vec!["status_changed".into()], name: Some("crm".into()) },
    ];
    let settings = webhooks::Settings { base_backoff: std::time::Duration::ZERO, max_backoff: std::time::Duration::ZERO, max_attempts: 100, timeout: std::time::Duration::from_secs(5), batch: 500 };
    let a = spawn_app(desk).await;
    let (store, policy) = (a.store.clone(), dispute_desk::policy::Policy::load(a.desk.cfg.policies_dir.as_deref()).unwrap());
    let client = webhooks::client().unwrap();
    // Changes while the receiver is down: a move, a reassignment, an
    // approval, the reminder pass.
    let case_id = store.cases(Some("open"), None).await.unwrap()[0].id;
    let s1 = store.user("S1").await.unwrap();
    let m1 = store.user("M1").await.unwrap();
    let a1 = store.user("A1").await.unwrap();
    let req = dispute_desk::flow::workflow::MoveRequest { to: dispute_desk::domain::Status::InAnalysis, role: s1.role, reason: None, amount: None };
    dispute_desk::flow::workflow::move_case(&store, &policy, case_id, &s1, &req, "2026-03-01".parse().unwrap()).await.unwrap();
    dispute_desk::flow::workflow::reassign(&store, case_id, &m1, &s1, Some("back from leave")).await.unwrap();
    let reply = store.drafts(Some("pending"), None).await.unwrap().into_iter().find(|d| d.kind == "reply").unwrap();
    let from = dispute_desk::domain::EmailAddress::parse("julie.morel@sud-levage.fr").unwrap();
    dispute_desk::flow::approve::approve(&store, &policy, &from, "Sud Levage", reply.id, &a1).await.unwrap();
    app::remind(&a.desk.cfg, &store, &policy, "2026-04-20".parse().unwrap()).await.unwrap();
    // The approved reply goes out (a relay that accepts everything): message_sent.
    let sent = dispute_desk::flow::outbox::send_due(&store, &AcceptAll, 3).await.unwrap();
    assert_eq!(sent.sent, 1);

    let mut failures = 0;
    for _ in 0..3 {
        let r = webhooks::deliver_once(&store, &client, &endpoints, &settings).await.unwrap();
        assert_eq!(r.delivered, 0);
        failures += r.retried;
    }
    assert!(failures >= 3, "each pass tried and failed");
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'").fetch_one(&store.pool).await.unwrap();
    assert!(queued > 5, "{queued}");
    let log: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_attempts WHERE http_status IS NULL AND error LIKE 'cannot connect%'").fetch_one(&store.pool).await.unwrap();
    assert!(log >= 3, "the delivery log keeps every failed attempt");

    // A restart: a new process opens the same database; the queue is there.
    drop(store);
    let store = a.desk.open().await;
    let got = Arc::new(Mutex::new(Received::default()));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(receiver(listener, got.clone()));
    let t0 = std::time::Instant::now();
    let mut passes = 0;
    loop {
        webhooks::deliver_once(&store, &client, &endpoints, &settings).await.unwrap();
        passes += 1;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'").fetch_one(&store.pool).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(t0.elapsed().as_secs() < 30 && passes < 50, "{left} deliveries still pending");
    }
    let elapsed = t0.elapsed();
    let expected: BTreeSet<String> = sqlx::query_scalar::<_, String>("SELECT event_id FROM webhook_deliveries WHERE endpoint = 'erp'").fetch_all(&store.pool).await.unwrap().into_iter().collect();
    {
        let g = got.lock().unwrap();
        assert_eq!(g.bad_signatures, 0);
        let arrived: BTreeSet<String> = g.ids.keys().cloned().collect();
        assert_eq!(arrived, expected, "every event arrived after the outage");
        for t in ["case_opened", "draft_pending", "status_changed", "assigned", "draft_approved", "message_sent", "reminder_due"] {
            assert!(g.types.contains(t), "{t} missing from {:?}", g.types);
        }
    }
    // The crm endpoint got only the status change (same id: the receiver deduplicates).
    let crm: Vec<String> = sqlx::query_scalar("SELECT event_type FROM webhook_deliveries WHERE endpoint = 'crm'").fetch_all(&store.pool).await.unwrap();
    assert!(!crm.is_empty() && crm.iter().all(|t| t == "status_changed"), "{crm:?}");
    println!("webhooks: {} events delivered {:.0} ms after the receiver came back ({passes} passes)", expected.len(), elapsed.as_secs_f64() * 1e3);
    // New events after delivery: only they go out, once.
    let before = got.lock().unwrap().ids.values().sum::<usize>();
    let r = webhooks::deliver_once(&store, &client, &endpoints, &settings).await.unwrap();
    assert_eq!((r.enqueued, r.delivered), (0, 0));
    assert_eq!(got.lock().unwrap().ids.values().sum::<usize>(), before);
}

#[tokio::test]
async fn webhooks_arrive_after_the_receiver_was_down_sqlite() {
    check_webhooks_across_an_outage(Desk::sqlite().await).await;
}

#[tokio::test]
async fn webhooks_arrive_after_the_receiver_was_down_postgres() {
    check_webhooks_across_an_outage(Desk::postgres().await).await;
}

// ------------------------------------------------ e-invoices in client mail

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A client's mail with one attachment and no invoice number anywhere else.
fn mail_with(from: &str, id: &str, file: &str, ctype: &str, bytes: &[u8]) -> String {
    format!(
        "From: {from}\r\nTo: julie.morel@sud-levage.fr\r\nSubject: Votre document\r\nMessage-ID: <{id}@client.example>\r\nDate: Mon, 02 Mar 2026 09:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Bonjour,\r\nle montant ne correspond pas au devis signé, merci de corriger.\r\nCordialement\r\n\r\n\
         --b1\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename=\"{file}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        base64(bytes)
    )
}

#[tokio::test]
async fn einvoice_attachments_link_mail_to_invoices() {
    let desk = Desk::sqlite().await;
    let (store, policy) = app::open(&desk.cfg).await.unwrap();
    app::import_corpus(&store, &mini()).await.unwrap();
    let cii = String::from_utf8(std::fs::read(fixture("facture-cii.xml")).unwrap()).unwrap();
    let ours = |n: &str| cii.replace("FA-2026-00123", n).into_bytes();
    let dir = tempfile::tempdir().unwrap();
    // 1. Our own Factur-X sent back by the client (file name says nothing).
    std::fs::write(dir.path().join("1.eml"), mail_with("p.garnier@transports-garnier.fr", "m1", "scan.pdf", "application/pdf", &facturx_pdf(&ours("SL-26-0102"), "factur-x.xml"))).unwrap();
    // 2. A credit-note request: the client's UBL credit note refers to our invoice.
    let cn = String::from_utf8(std::fs::read(fixture("avoir-ubl.xml")).unwrap()).unwrap().replace(
        "<cac:OrderReference><cbc:ID>BC-7781</cbc:ID></cac:OrderReference>",
        "<cac:BillingReference><cac:InvoiceDocumentReference><cbc:ID>SL-26-0101</cbc:ID></cac:InvoiceDocumentReference></cac:BillingReference>",
    );
    std::fs::write(dir.path().join("2.eml"), mail_with("p.garnier@transports-garnier.fr", "m2", "avoir.xml", "application/xml", cn.as_bytes())).unwrap();
    // 3. Another client's invoice in the attachment: not trusted.
    std::fs::write(dir.path().join("3.eml"), mail_with("ap@harbourcranes.co.uk", "m3", "invoice.xml", "text/xml", &ours("SL-26-0101"))).unwrap();
    // 4. Only the PO number of the e-invoice is known: linked by PO.
    std::fs::write(dir.path().join("4.eml"), mail_with("p.garnier@transports-garnier.fr", "m4", "commande.xml", "application/xml", &ours("ZZ-999"))).unwrap();
    let mut p = app::pipeline(&desk.cfg, store.clone(), policy).await.unwrap();
    app::ingest_path(&mut p, dir.path(), false).await.unwrap();
    let msgs = store.messages_where(None, None, None).await.unwrap();
    let by = |id: &str| msgs.iter().find(|m| m.message_id.as_deref().is_some_and(|x| x.contains(id))).unwrap_or_else(|| panic!("{id} not stored"));
    let m1 = by("m1");
    assert_eq!((m1.invoices.clone(), m1.link_method.as_deref()), (vec!["SL-26-0102".to_string()], Some("invoice_number")), "{:?}", m1);
    let m2 = by("m2");
    assert_eq!((m2.invoices.clone(), m2.link_method.as_deref()), (vec!["SL-26-0101".to_string()], Some("invoice_number")));
    let m3 = by("m3");
    assert!(!m3.invoices.contains(&"SL-26-0101".to_string()), "another client's number must not link: {:?}", m3.invoices);
    assert_eq!(m3.client_id.as_deref(), Some("K2"));
    let m4 = by("m4");
    assert_eq!((m4.invoices.clone(), m4.link_method.as_deref()), (vec!["SL-26-0101".to_string()], Some("po_number")));
    // The parsed message keeps what the attachment said.
    let parsed: Value = serde_json::from_str(m1.parsed.as_deref().unwrap()).unwrap();
    assert_eq!(parsed["attachments"][0]["einvoice"]["number"], "SL-26-0102");
}

//! smtp: builds the exact bytes of an outbound message and sends them with lettre.
//!
//! Rendering is pure and separate from sending: the outbox stores the rendered
//! bytes before the first attempt, and every retry transmits those same bytes, so
//! a message keeps one Message-ID however often it is tried.

use crate::domain::EmailAddress;
use lettre::message::header::{self, ContentType};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// Why a message could not be rendered or sent. `Transient` failures are worth
/// retrying with the same bytes; every other variant needs a person.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// Connection refused or reset, timeout, a 4xx reply, a garbled reply.
    #[error("temporary smtp failure, the message can be retried")]
    Transient(#[source] lettre::transport::smtp::Error),
    /// A 5xx reply, a TLS failure, or a request lettre refuses to make.
    #[error("smtp server or client refused the message for good")]
    Permanent(#[source] lettre::transport::smtp::Error),
    #[error("invalid email address {address:?}")]
    InvalidAddress {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("invalid message id {0:?}: expected left@right without spaces or angle brackets")]
    InvalidMessageId(String),
    /// No final reply within `timeout_secs`. The server may still have taken
    /// the message; a retry then delivers a duplicate with the same Message-ID.
    #[error("smtp exchange timed out after {secs} s")]
    Timeout { secs: u64 },
    #[error("cannot build the message or its envelope")]
    Build(#[source] lettre::error::Error),
    #[error("cannot set up tls for smtp host {host:?}")]
    Tls {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

impl SmtpError {
    /// True when sending the same bytes again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SmtpError::Transient(_) | SmtpError::Timeout { .. })
    }

    /// The SMTP reply code, when the server answered with an error.
    pub fn smtp_code(&self) -> Option<u16> {
        match self {
            SmtpError::Transient(e) | SmtpError::Permanent(e) => e.status().map(|c| {
                // `Code` displays as its three digits.
                c.to_string().parse().unwrap_or(0)
            }),
            _ => None,
        }
    }

    fn from_transport(e: lettre::transport::smtp::Error) -> Self {
        // lettre has no public "is connection error"; everything that is not a
        // 5xx, a client-side refusal or TLS is a network or server hiccup.
        if e.is_permanent() || e.is_client() || e.is_tls() {
            SmtpError::Permanent(e)
        } else {
            SmtpError::Transient(e)
        }
    }
}

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plaintext: only for a relay on the same machine or a test server.
    #[default]
    None,
    /// Plaintext then STARTTLS, required (no silent fallback to plaintext).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// Where and how to reach the SMTP relay.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "127.0.0.1".to_string(),
            port: 25,
            tls: TlsMode::None,
            username: None,
            password: None,
            timeout_secs: 30,
        }
    }
}

impl fmt::Debug for SmtpConfig {
    /// Written by hand so that the password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// One outbound message, before rendering. Ids are given without `<>`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMail {
    pub from: EmailAddress,
    pub from_name: Option<String>,
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    pub subject: String,
    pub body_text: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub date: chrono::DateTime<chrono::Utc>,
}

/// The exact RFC 5322 bytes of `mail`: a single text/plain UTF-8 part, with
/// the subject and display name RFC 2047-encoded when they are not ASCII.
///
/// Pure: the same `mail` always gives the same bytes. `message_id` must be a
/// valid id; an `in_reply_to` or `references` id that is not (they come from
/// client mail) is left out rather than blocking the reply, since threading is
/// best effort.
pub fn render(mail: &OutgoingMail) -> Result<Vec<u8>, SmtpError> {
    let message_id = clean_msg_id(&mail.message_id)
        .ok_or_else(|| SmtpError::InvalidMessageId(mail.message_id.clone()))?;

    let from_name = mail
        .from_name
        .as_deref()
        .map(one_line)
        .filter(|n| !n.is_empty());
    let mut builder = Message::builder()
        .message_id(Some(format!("<{message_id}>")))
        .date(SystemTime::from(mail.date))
        .from(Mailbox::new(from_name, to_address(&mail.from)?));
    for to in &mail.to {
        builder = builder.to(Mailbox::new(None, to_address(to)?));
    }
    for cc in &mail.cc {
        builder = builder.cc(Mailbox::new(None, to_address(cc)?));
    }
    builder = builder.subject(one_line(&mail.subject));
    if let Some(id) = mail.in_reply_to.as_deref().and_then(clean_msg_id) {
        builder = builder.in_reply_to(format!("<{id}>"));
    }
    let references: Vec<String> = mail
        .references
        .iter()
        .filter_map(|r| clean_msg_id(r))
        .map(|id| format!("<{id}>"))
        .collect();
    if !references.is_empty() {
        builder = builder.references(references.join(" "));
    }
    // A body on the message itself, not a SinglePart: lettre appends an extra
    // CRLF after a part's body, which would change the text the client reads.
    let message = builder
        .header(header::MIME_VERSION_1_0)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body_text.clone())
        .map_err(SmtpError::Build)?;
    Ok(message.formatted())
}

/// The subject of a reply: `Re: X`, unless X already carries a reply or
/// forward prefix in one of the usual languages (`Re:`, `RE :`, `AW:`, `TR:`,
/// `Fwd:`...). Whitespace is trimmed and folded; an empty subject becomes
/// `Re: (sans objet)`.
pub fn reply_subject(original: &str) -> String {
    let subject = one_line(original);
    if subject.is_empty() {
        return "Re: (sans objet)".to_string();
    }
    if has_reply_prefix(&subject) {
        subject
    } else {
        format!("Re: {subject}")
    }
}

/// A new globally unique Message-ID (without `<>`): `dd.<uuid>@domain`.
pub fn new_message_id(domain: &str) -> String {
    let domain = domain.trim().trim_start_matches('@');
    let domain = if domain.is_empty() || domain.contains('@') || !domain.chars().all(is_msg_id_char)
    {
        "localhost"
    } else {
        domain
    };
    format!("dd.{}@{}", uuid::Uuid::new_v4().simple(), domain)
}

/// Sends bytes that were rendered (and stored) beforehand.
pub trait SendMail: Send + Sync {
    fn send<'a>(
        &'a self,
        envelope_from: &'a EmailAddress,
        to: &'a [EmailAddress],
        raw: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<(), SmtpError>> + Send + 'a>>;
}

/// Sends through an SMTP relay with lettre, one connection per message.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Deadline for a whole exchange: lettre's async transport only bounds the
    /// TCP connect, and a server that stops answering would hang the worker.
    deadline: Duration,
}

impl SmtpSender {
    pub fn new(cfg: &SmtpConfig) -> Result<Self, SmtpError> {
        let deadline = Duration::from_secs(cfg.timeout_secs.max(1));
        let tls_params = || {
            TlsParameters::new(cfg.host.clone()).map_err(|source| SmtpError::Tls {
                host: cfg.host.clone(),
                source,
            })
        };
        let tls = match cfg.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(tls_params()?),
            TlsMode::Tls => Tls::Wrapper(tls_params()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(deadline));
        if let Some(user) = &cfg.username {
            let password = cfg.password.clone().unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(SmtpSender {
            transport: builder.build(),
            deadline,
        })
    }
}

impl SendMail for SmtpSender {
    #[tracing::instrument(
        skip_all,
        fields(message_id = header_message_id(raw).unwrap_or("unknown"), recipients = to.len())
    )]
    fn send<'a>(
        &'a self,
        envelope_from: &'a EmailAddress,
        to: &'a [EmailAddress],
        raw: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<(), SmtpError>> + Send + 'a>> {
        Box::pin(async move {
            let from = to_address(envelope_from)?;
            let rcpts = to.iter().map(to_address).collect::<Result<Vec<_>, _>>()?;
            let envelope =
                lettre::address::Envelope::new(Some(from), rcpts).map_err(SmtpError::Build)?;
            let sent =
                tokio::time::timeout(self.deadline, self.transport.send_raw(&envelope, raw)).await;
            let Ok(sent) = sent else {
                let err = SmtpError::Timeout {
                    secs: self.deadline.as_secs(),
                };
                tracing::warn!(transient = true, "smtp send timed out");
                return Err(err);
            };
            match sent {
                Ok(response) => {
                    tracing::info!(code = %response.code(), "message accepted by smtp relay");
                    Ok(())
                }
                Err(e) => {
                    let err = SmtpError::from_transport(e);
                    tracing::warn!(transient = err.is_transient(), code = ?err.smtp_code(), "smtp send failed");
                    Err(err)
                }
            }
        })
    }
}

fn to_address(addr: &EmailAddress) -> Result<Address, SmtpError> {
    addr.as_str()
        .parse::<Address>()
        .map_err(|source| SmtpError::InvalidAddress {
            address: addr.as_str().to_string(),
            source,
        })
}

/// `id` without its `<>` and surrounding spaces, if it looks like a msg-id
/// (`left@right`, printable ASCII, no spaces or brackets: nothing that could
/// break out of its header).
fn clean_msg_id(id: &str) -> Option<&str> {
    let id = id.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id);
    let (left, right) = id.split_once('@')?;
    let ok =
        !left.is_empty() && !right.is_empty() && id.len() <= 900 && id.chars().all(is_msg_id_char);
    ok.then_some(id)
}

fn is_msg_id_char(c: char) -> bool {
    c.is_ascii_graphic()
        && !matches!(
            c,
            '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']'
        )
}

/// Control characters (CR, LF, tabs from folding) become spaces, runs of
/// spaces become one, ends are trimmed: a header value stays on its header.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reply and forward prefixes: English, French (`TR`), German (`AW`, `WG`),
/// Nordic (`SV`, `VS`), Dutch (`Antw`), Italian (`Rif`), Spanish/Portuguese
/// (`RV`, `ENC`).
const REPLY_PREFIXES: &[&str] = &[
    "re", "aw", "sv", "vs", "antw", "rif", "fwd", "fw", "tr", "wg", "rv", "enc",
];

/// `Re:`, `RE :`, `Re[2]:`, `AW:`, `Fwd:`... at the start, case-insensitive.
pub fn has_reply_prefix(subject: &str) -> bool {
    let subject = subject.trim_start();
    let word_len = subject
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(subject.len());
    let (word, rest) = subject.split_at(word_len);
    if !REPLY_PREFIXES.iter().any(|p| p.eq_ignore_ascii_case(word)) {
        return false;
    }
    // Optional counter such as `[2]` or `(2)`.
    let rest = match rest.strip_prefix(['[', '(']) {
        Some(r) => r
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start_matches([']', ')']),
        None => rest,
    };
    // French typography puts a (no-break) space before the colon.
    let rest = rest.trim_start_matches([' ', '\u{a0}', '\u{202f}']);
    rest.starts_with(':') || rest.starts_with('\u{ff1a}')
}

/// The Message-ID of rendered bytes, for the log span (header section only).
fn header_message_id(raw: &[u8]) -> Option<&str> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    raw[..end].split(|&b| b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("message-id")
            .then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    const FRENCH_BODY: &str = "Bonjour Madame Lefèvre,\n\nNous avons bien reçu votre réclamation concernant la facture FA-2026-00123.\nÀ la suite de notre vérification, l'écart de 150,00 € est justifié : un avoir vous sera adressé.\n.point en début de ligne\n\nBien cordialement,\nLe service comptabilité — Société Œuvre & Fils\n";

    fn sample() -> OutgoingMail {
        OutgoingMail {
            from: addr("compta@fournisseur.fr"),
            from_name: Some("Service comptabilité".to_string()),
            to: vec![addr("m.lefevre@client.fr")],
            cc: vec![addr("commercial@fournisseur.fr")],
            subject: reply_subject("Contestation facture FA-2026-00123 : écart de prix"),
            body_text: FRENCH_BODY.to_string(),
            message_id: "dd.0123456789abcdef@fournisseur.fr".to_string(),
            in_reply_to: Some("CAB1234@mail.client.fr".to_string()),
            references: vec![
                "first.1@mail.client.fr".to_string(),
                "<CAB1234@mail.client.fr>".to_string(),
            ],
            date: chrono::Utc.with_ymd_and_hms(2026, 3, 14, 9, 30, 0).unwrap(),
        }
    }

    fn header_lines(raw: &[u8]) -> String {
        let text = String::from_utf8(raw.to_vec()).expect("rendered bytes are ascii");
        text.split("\r\n\r\n").next().unwrap().to_string()
    }

    #[test]
    fn render_writes_threading_headers_with_angle_brackets() {
        let raw = render(&sample()).unwrap();
        let headers = header_lines(&raw);
        assert!(
            headers.contains("Message-ID: <dd.0123456789abcdef@fournisseur.fr>\r\n"),
            "{headers}"
        );
        assert!(
            headers.contains("In-Reply-To: <CAB1234@mail.client.fr>\r\n"),
            "{headers}"
        );
        assert!(
            headers.contains("References: <first.1@mail.client.fr> <CAB1234@mail.client.fr>\r\n"),
            "{headers}"
        );
        assert!(
            headers.contains("Date: Sat, 14 Mar 2026 09:30:00 +0000\r\n"),
            "{headers}"
        );
        assert!(
            headers.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{headers}"
        );
        assert!(headers.contains("MIME-Version: 1.0\r\n"), "{headers}");
    }

    #[test]
    fn render_is_ascii_with_encoded_subject_and_name() {
        let raw = render(&sample()).unwrap();
        assert!(raw.is_ascii(), "8-bit bytes would need 8BITMIME");
        let headers = header_lines(&raw);
        // lettre encodes word by word, folding the line as needed.
        assert!(
            headers.contains("Subject: Re: Contestation facture FA-2026-00123 : =?utf-8?b?"),
            "{headers}"
        );
        assert!(headers.contains("From: =?utf-8?b?"), "{headers}");
    }

    #[test]
    fn render_round_trips_through_a_parser() {
        let mail = sample();
        let raw = render(&mail).unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .expect("parsable");
        assert_eq!(
            parsed.subject(),
            Some("Re: Contestation facture FA-2026-00123 : écart de prix")
        );
        assert_eq!(
            parsed.message_id(),
            Some("dd.0123456789abcdef@fournisseur.fr")
        );
        assert_eq!(
            parsed.in_reply_to().as_text(),
            Some("CAB1234@mail.client.fr")
        );
        let refs: Vec<&str> = parsed
            .references()
            .as_text_list()
            .unwrap()
            .iter()
            .map(|r| r.as_ref())
            .collect();
        assert_eq!(refs, ["first.1@mail.client.fr", "CAB1234@mail.client.fr"]);
        let from = parsed.from().and_then(|a| a.first()).unwrap();
        assert_eq!(from.name(), Some("Service comptabilité"));
        assert_eq!(from.address(), Some("compta@fournisseur.fr"));
        assert_eq!(
            parsed
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("m.lefevre@client.fr")
        );
        assert_eq!(
            parsed
                .cc()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("commercial@fournisseur.fr")
        );
        // lettre writes CRLF line endings; the text is otherwise unchanged.
        let body = parsed.body_text(0).unwrap().replace("\r\n", "\n");
        assert_eq!(body, FRENCH_BODY);
    }

    #[test]
    fn render_is_deterministic() {
        assert_eq!(render(&sample()).unwrap(), render(&sample()).unwrap());
    }

    #[test]
    fn render_without_thread_has_no_threading_headers() {
        let mail = OutgoingMail {
            in_reply_to: None,
            references: vec![],
            cc: vec![],
            ..sample()
        };
        let headers = header_lines(&render(&mail).unwrap());
        assert!(!headers.contains("In-Reply-To"), "{headers}");
        assert!(!headers.contains("References"), "{headers}");
        assert!(!headers.contains("Cc:"), "{headers}");
    }

    #[test]
    fn render_drops_client_ids_that_would_break_the_header() {
        let mail = OutgoingMail {
            in_reply_to: Some("x@y\r\nBcc: victim@evil.example".to_string()),
            references: vec![
                "no-at-sign".to_string(),
                "ok@client.fr".to_string(),
                "a b@c".to_string(),
            ],
            subject: "Objet\r\nBcc: victim@evil.example".to_string(),
            ..sample()
        };
        let headers = header_lines(&render(&mail).unwrap());
        assert!(!headers.contains("In-Reply-To"), "{headers}");
        assert!(
            headers.contains("References: <ok@client.fr>\r\n"),
            "{headers}"
        );
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
        assert!(
            headers.contains("Subject: Objet Bcc: victim@evil.example\r\n"),
            "{headers}"
        );
    }

    #[test]
    fn render_refuses_an_invalid_own_message_id() {
        for bad in ["", "no-at", "a b@c", "<x@y>\r\nBcc: z@w"] {
            let mail = OutgoingMail {
                message_id: bad.to_string(),
                ..sample()
            };
            let err = render(&mail).unwrap_err();
            assert!(
                matches!(err, SmtpError::InvalidMessageId(_)),
                "{bad:?}: {err:?}"
            );
            assert!(!err.is_transient());
        }
        let mail = OutgoingMail {
            message_id: "<dd.1@x.fr>".to_string(),
            ..sample()
        };
        assert!(header_lines(&render(&mail).unwrap()).contains("Message-ID: <dd.1@x.fr>\r\n"));
    }

    #[test]
    fn reply_subject_table() {
        let cases = [
            ("Facture FA-1", "Re: Facture FA-1"),
            ("  Facture FA-1  ", "Re: Facture FA-1"),
            ("Re: Facture FA-1", "Re: Facture FA-1"),
            ("RE: Facture FA-1", "RE: Facture FA-1"),
            ("re:Facture", "re:Facture"),
            ("RE : Facture FA-1", "RE : Facture FA-1"),
            ("Re\u{a0}: Facture", "Re : Facture"),
            ("Re[2]: Facture", "Re[2]: Facture"),
            ("AW: Rechnung", "AW: Rechnung"),
            ("TR: Facture", "TR: Facture"),
            ("Fwd: Facture", "Fwd: Facture"),
            ("FW: Facture", "FW: Facture"),
            ("Réclamation", "Re: Réclamation"),
            ("Retard de paiement", "Re: Retard de paiement"),
            ("Relance : facture", "Re: Relance : facture"),
            ("Trop perçu", "Re: Trop perçu"),
            ("Facture\r\n FA-1", "Re: Facture FA-1"),
            ("", "Re: (sans objet)"),
            ("   ", "Re: (sans objet)"),
        ];
        for (original, expected) in cases {
            assert_eq!(reply_subject(original), expected, "{original:?}");
        }
    }

    #[test]
    fn message_ids_are_unique_and_well_formed() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| new_message_id("fournisseur.fr"))
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(5) {
            assert!(
                id.starts_with("dd.") && id.ends_with("@fournisseur.fr"),
                "{id}"
            );
            assert_eq!(clean_msg_id(id), Some(id.as_str()));
        }
        assert!(new_message_id("").ends_with("@localhost"));
        assert!(new_message_id("bad domain").ends_with("@localhost"));
    }

    #[test]
    fn config_debug_masks_the_password() {
        let cfg = SmtpConfig {
            username: Some("compta".to_string()),
            password: Some("s3cret-P@ss".to_string()),
            ..SmtpConfig::default()
        };
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("***") && shown.contains("compta"), "{shown}");
    }

    #[test]
    fn config_defaults_and_lowercase_tls() {
        let cfg = SmtpConfig::default();
        assert_eq!(
            (cfg.host.as_str(), cfg.port, cfg.tls, cfg.timeout_secs),
            ("127.0.0.1", 25, TlsMode::None, 30)
        );
        use serde::de::IntoDeserializer;
        let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            "starttls".into_deserializer();
        assert_eq!(TlsMode::deserialize(de).unwrap(), TlsMode::Starttls);
    }

    #[test]
    fn header_message_id_reads_the_rendered_bytes() {
        let raw = render(&sample()).unwrap();
        assert_eq!(
            header_message_id(&raw),
            Some("<dd.0123456789abcdef@fournisseur.fr>")
        );
        assert_eq!(
            header_message_id(b"Subject: x\r\n\r\nMessage-ID: <no@body>"),
            None
        );
    }

    #[test]
    fn address_lettre_rejects_is_a_permanent_error() {
        // EmailAddress is lenient; lettre checks the grammar before anything is sent.
        for bad in ["jean,dupont@client.fr", "jean@exa(mple).fr"] {
            let err = to_address(&addr(bad)).unwrap_err();
            assert!(!err.is_transient(), "{bad}");
            assert!(
                err.to_string().starts_with("invalid email address"),
                "{err}"
            );
            let mail = OutgoingMail {
                to: vec![addr(bad)],
                ..sample()
            };
            assert!(
                matches!(render(&mail), Err(SmtpError::InvalidAddress { .. })),
                "{bad}"
            );
        }
    }
}

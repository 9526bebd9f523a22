//! parse: raw RFC 5322 bytes to a [`Message`]. Never fails and never panics: a
//! malformed message becomes a message with warnings.
//!
//! What it does, in order:
//! - MIME through `mail-parser` (inside `catch_unwind` as a last resort); when the
//!   bytes are not MIME at all, the raw text is used as the body;
//! - headers: ids without angle brackets, addresses lowercased and checked,
//!   decoded subject, date in UTC, language, and the [`AutoSignals`] that tell an
//!   automatic or bulk message from a person's;
//! - the best text body: `text/plain` when there is one, else the HTML converted
//!   to text here (block elements become line breaks, `<head>`/`<style>`/`<script>`
//!   are dropped, `<blockquote>` lines get a `> ` prefix so quoted history stays
//!   recognisable); CRLF becomes LF, trailing blanks go, blank lines collapse to one;
//! - the split of that text into `new_text`, `quoted` and `signature`, written
//!   from how mail clients lay out replies (Outlook, Gmail, Thunderbird, Apple
//!   Mail, Roundcube, Lotus), in French, English and a few other languages:
//!   - quoted history starts at an Outlook header block (`De : / Envoyé : / À : /
//!     Objet :`, `From: / Sent: / To: / Subject:`, optionally after a line of
//!     underscores), at a separator (`-----Original Message-----`, `-----Message
//!     d'origine-----`, `---------- Forwarded message ---------`, `-------- Message
//!     transféré --------`, `Begin forwarded message:`), or at an attribution
//!     (`Le … a écrit :`, `On … wrote:`, wrapped over up to three lines). After a
//!     header block or a separator everything is history. After an attribution
//!     followed by `> ` lines only those lines are history, so an answer written
//!     below or between quotes (bottom posting, inline replies) stays new text;
//!   - `> ` lines are always history;
//!   - the signature starts at a `-- ` line, at a mobile footer (`Envoyé de mon
//!     iPhone`), after a closing formula on its own line (`Cordialement,`, `Best
//!     regards`, `Merci,` optionally followed by a first name), or at a legal
//!     disclaimer (`Ce message et ses pièces jointes sont confidentiels…`), or,
//!     with no sign-off, at a short closing block that starts with the sender's
//!     own name (`Didier Chapuis`, `J. Vasseur`). **The
//!     closing formula itself stays in `new_text`** (it is part of what the sender
//!     wrote and carries tone); only the lines after it go to `signature`. The
//!     rules are conservative: a formula is only a sign-off when what follows
//!     looks like a signature (a name, a title, contact or legal lines), never
//!     prose, so `Merci de nous adresser un avoir` stays in `new_text`.
//!     Markers (`-- `, `Envoyé de mon iPhone`) go to `signature` with what follows.
//! - attachments: every part that is not a body, with a file name or a non-text
//!   type (attached `message/rfc822` included, named after its subject when it has
//!   no file name); unnamed inline images are skipped.

use crate::domain::EmailAddress;
use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

/// One attachment: enough to link (file name, e-invoice references) and to
/// show (type, size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Attachment {
    pub name: Option<String>,
    pub content_type: String,
    pub size: usize,
    /// What the attachment says when it is an e-invoice (Factur-X PDF, CII
    /// or UBL XML): link evidence, read by [`crate::einvoice`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub einvoice: Option<AttachedInvoice>,
}

/// The references an e-invoice attachment carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AttachedInvoice {
    pub number: String,
    /// invoice | credit_note
    pub kind: String,
    /// Invoices a credit note or corrected invoice refers to (BT-25).
    #[serde(default)]
    pub preceding: Vec<String>,
    pub buyer_reference: Option<String>,
    pub order_reference: Option<String>,
    pub buyer_siret: Option<String>,
    pub buyer_vat: Option<String>,
}

/// Reads an attachment that may be an e-invoice (XML or PDF, under 20 MB).
fn attached_invoice(name: Option<&str>, content_type: &str, bytes: &[u8]) -> Option<AttachedInvoice> {
    let n = name.unwrap_or("").to_ascii_lowercase();
    let maybe = content_type.contains("xml") || content_type.contains("pdf") || n.ends_with(".xml") || n.ends_with(".pdf");
    if !maybe || bytes.len() > 20 << 20 {
        return None;
    }
    match crate::einvoice::read(bytes) {
        Ok(crate::einvoice::Reading::Invoice(e)) => Some(AttachedInvoice {
            number: e.number.to_string(),
            kind: e.kind.as_str().into(),
            preceding: e.preceding_invoices.clone(),
            buyer_reference: e.buyer_reference.clone(),
            order_reference: e.order_reference.clone(),
            buyer_siret: e.buyer.siret.clone(),
            buyer_vat: e.buyer.vat.clone(),
        }),
        _ => None,
    }
}

/// Header signals that tell an automatic or bulk message from a person's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AutoSignals {
    /// `Auto-Submitted` other than `no` (RFC 3834).
    pub auto_submitted: bool,
    /// `X-Autoreply`, `X-Autorespond`, `X-Auto-Response-Suppress` or similar.
    pub autoreply_header: bool,
    /// `Precedence: bulk|list|junk|auto_reply`.
    pub precedence_bulk: bool,
    /// `List-Id`, `List-Unsubscribe` or `List-Post` present.
    pub mailing_list: bool,
    /// Sender looks like a bounce (`MAILER-DAEMON`, empty Return-Path, multipart/report).
    pub bounce: bool,
}

/// A parsed message: headers, the new text written by the sender, the quoted
/// history and signature split off, attachments, and warnings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Message {
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To ids without angle brackets.
    pub in_reply_to: Vec<String>,
    /// References ids without angle brackets, oldest first.
    pub references: Vec<String>,
    pub from: Option<EmailAddress>,
    pub from_name: Option<String>,
    pub reply_to: Option<EmailAddress>,
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    /// Decoded subject, empty when absent.
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    /// The text the sender wrote in this message (best text body, HTML
    /// converted to text), without quoted history and signature. A closing
    /// formula (`Cordialement,`) stays here; the lines after it do not.
    pub new_text: String,
    /// Quoted earlier messages (`> ` lines, `Le … a écrit :`, `De : … Envoyé :`
    /// Outlook headers and what follows, forwarded blocks).
    pub quoted: String,
    /// The signature block and legal disclaimer, if one was recognised.
    pub signature: String,
    pub attachments: Vec<Attachment>,
    pub auto: AutoSignals,
    /// `Content-Language` / `Accept-Language` first tag, if present.
    pub content_language: Option<String>,
    /// What could not be read, in lowercase sentences (never the body).
    pub warnings: Vec<String>,
}

/// Parses raw bytes. Always returns a message; problems go to `warnings`.
pub fn parse(raw: &[u8]) -> Message {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Message { warnings: vec!["empty message".into()], ..Default::default() };
    }
    // mail-parser is meant never to panic but does on some malformed nesting
    // (shared/mime/malformed/023.eml); this is the last line of defence so that
    // one hostile message cannot stop the pipeline. Its header-only pass usually
    // survives, so the headers are kept and the raw body is used as text.
    match catch_unwind(AssertUnwindSafe(|| parse_mime(raw))) {
        Ok(message) => message,
        Err(_) => {
            let mut message = catch_unwind(AssertUnwindSafe(|| headers_and_raw_body(raw)))
                .or_else(|_| catch_unwind(AssertUnwindSafe(|| from_raw_text(raw))))
                .unwrap_or_default();
            message.warnings.insert(0, "parser panicked".into());
            message
        }
    }
}

fn parse_mime(raw: &[u8]) -> Message {
    let parsed = MessageParser::default().parse(raw);
    let mime = match parsed {
        Some(m) if !m.parts.is_empty() => m,
        _ => {
            let mut message = from_raw_text(raw);
            message.warnings.insert(0, "message could not be parsed as mime; raw text used".into());
            return message;
        }
    };
    let mut w: Vec<String> = Vec::new();
    let mut out = read_headers(&mime, &mut w);

    // Body: text/plain parts first; HTML only when there is no usable text.
    let mut texts: Vec<String> = Vec::new();
    let mut decode_problem = false;
    for part in mime.text_bodies() {
        decode_problem |= part.is_encoding_problem;
        match &part.body {
            PartType::Text(t) => texts.push(t.to_string()),
            PartType::Html(h) => texts.push(html_to_text(h)),
            _ => {}
        }
    }
    if texts.iter().all(|t| t.trim().is_empty()) {
        // A text part left unclosed by a cut message lands among mail-parser's
        // attachments: an unnamed text part that is not marked as an attachment
        // is still the body.
        let stray: Vec<String> = mime
            .attachments()
            .filter(|p| p.attachment_name().is_none())
            .filter(|p| !p.content_disposition().is_some_and(|d| d.is_attachment()))
            .filter_map(|p| match &p.body {
                PartType::Text(t) => Some(t.to_string()),
                PartType::Html(h) => Some(html_to_text(h)),
                _ => None,
            })
            .collect();
        if stray.iter().any(|t| !t.trim().is_empty()) {
            texts = stray;
        }
    }
    if texts.iter().all(|t| t.trim().is_empty()) {
        // Some senders put an empty text/plain beside the real HTML.
        let html: Vec<String> = mime
            .html_bodies()
            .filter_map(|p| match &p.body {
                PartType::Html(h) => Some(html_to_text(h)),
                PartType::Text(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        if html.iter().any(|t| !t.trim().is_empty()) {
            texts = html;
        }
    }
    if decode_problem {
        w.push("a text part could not be decoded cleanly".into());
    }
    let body = normalise(&texts.join("\n\n"));
    if body.is_empty() {
        w.push("no text body".into());
    }
    let split = split_body(&body, out.from_name.as_deref());
    out.new_text = split.new_text;
    out.quoted = split.quoted;
    out.signature = split.signature;

    // Attachments: every part mail-parser did not take as a body.
    for part in mime.attachments() {
        let content_type = part
            .content_type()
            .map(|ct| match &ct.c_subtype {
                Some(sub) => format!("{}/{}", ct.c_type, sub),
                None => ct.c_type.to_string(),
            })
            .unwrap_or_else(|| "text/plain".into())
            .to_ascii_lowercase();
        let mut name = part.attachment_name().map(clean_header_text).filter(|n| !n.is_empty());
        let (content_type, size) = match &part.body {
            PartType::Multipart(_) => continue,
            PartType::Message(inner) => {
                if name.is_none() {
                    name = inner.subject().map(clean_header_text).filter(|s| !s.is_empty());
                }
                let ct = if content_type.starts_with("message/") { content_type } else { "message/rfc822".into() };
                (ct, part.len())
            }
            _ => (content_type, part.len()),
        };
        let is_text = content_type.starts_with("text/");
        let inline = part.content_disposition().is_some_and(|d| d.c_type.eq_ignore_ascii_case("inline"))
            || (part.content_id().is_some() && part.content_disposition().is_none());
        if name.is_none() && (is_text || (inline && content_type.starts_with("image/"))) {
            continue;
        }
        let einvoice = match &part.body {
            PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Text(_) => attached_invoice(name.as_deref(), &content_type, part.contents()),
            _ => None,
        };
        out.attachments.push(Attachment { name, content_type, size, einvoice });
    }

    out.warnings = w;
    out
}

/// Everything that comes from the top-level header block.
fn read_headers(mime: &mail_parser::Message<'_>, w: &mut Vec<String>) -> Message {
    let mut out = Message {
        message_id: mime.message_id().map(clean_id).filter(|s| !s.is_empty()),
        ..Default::default()
    };
    if out.message_id.is_none() {
        w.push(if has_header(mime, "message-id") { "unparseable message-id" } else { "no message-id header" }.into());
    }
    out.in_reply_to = ids(mime.in_reply_to());
    out.references = ids(mime.references());

    // Addresses.
    match mime.from() {
        Some(a) => {
            let list = collect_addresses([a], "from", w);
            if let Some((addr, name)) = list.into_iter().next() {
                out.from = Some(addr);
                out.from_name = name;
            }
        }
        None => w.push(if has_header(mime, "from") { "unparseable from address" } else { "no from header" }.into()),
    }
    if let Some(a) = mime.reply_to() {
        out.reply_to = collect_addresses([a], "reply-to", w).into_iter().next().map(|(a, _)| a);
    }
    out.to = collect_addresses(mime.all_to(), "to", w).into_iter().map(|(a, _)| a).collect();
    out.cc = collect_addresses(mime.all_cc(), "cc", w).into_iter().map(|(a, _)| a).collect();

    out.subject = mime.subject().map(clean_header_text).unwrap_or_default();

    // Date in UTC; mail-parser keeps the zone, its timestamp is UTC seconds.
    if let Some(d) = mime.date().filter(|d| d.is_valid()) {
        out.date = DateTime::from_timestamp(d.to_timestamp(), 0);
    }
    if out.date.is_none() {
        w.push(if has_header(mime, "date") { "unparseable date" } else { "no date header" }.into());
    }

    out.content_language = content_language(mime);
    out.auto = auto_signals(mime, out.from.as_ref());

    out
}

/// After a parser panic: headers from the header-only pass, the rest as text.
fn headers_and_raw_body(raw: &[u8]) -> Message {
    let mut w = vec!["message body could not be parsed as mime; raw text used".to_string()];
    let mut out = match MessageParser::default().parse_headers(raw) {
        Some(mime) if !mime.parts.is_empty() => read_headers(&mime, &mut w),
        _ => return from_raw_text(raw),
    };
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let body = normalise(text.split_once("\n\n").map(|(_, b)| b).unwrap_or(""));
    if body.is_empty() {
        w.push("no text body".into());
    }
    let split = split_body(&body, out.from_name.as_deref());
    out.new_text = split.new_text;
    out.quoted = split.quoted;
    out.signature = split.signature;
    out.warnings = w;
    out
}

/// Used when the bytes are not MIME at all: keep whatever text there is.
fn from_raw_text(raw: &[u8]) -> Message {
    let text = String::from_utf8_lossy(raw);
    let text = text.replace("\r\n", "\n");
    // If it looks like a header block followed by a body, keep the body only.
    static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"^[!-9;-~]+:"));
    let body = match text.split_once("\n\n") {
        Some((head, body)) if head.lines().next().is_some_and(|l| HEADER_LINE.is_match(l)) => body.to_string(),
        _ => text,
    };
    let body = normalise(&body);
    let split = split_body(&body, None);
    let mut warnings = vec!["no message-id header".to_string(), "no from header".into(), "no date header".into()];
    if body.is_empty() {
        warnings.push("no text body".into());
    }
    Message { new_text: split.new_text, quoted: split.quoted, signature: split.signature, warnings, ..Default::default() }
}

fn re(pattern: &str) -> Regex {
    // Patterns are literals in this file; a typo is a programming error caught by the tests.
    Regex::new(pattern).expect("valid built-in regex")
}

fn has_header(mime: &mail_parser::Message<'_>, name: &str) -> bool {
    mime.headers_raw().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

fn header_values<'a>(mime: &'a mail_parser::Message<'_>, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    mime.headers_raw().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

fn clean_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').trim().to_string()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let raw: Vec<&str> = match value {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    raw.into_iter().map(clean_id).filter(|s| !s.is_empty()).collect()
}

/// Decoded header text on one line, without control characters.
fn clean_header_text(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Addresses from address headers (lists and groups), checked; the display name
/// goes along. Anything that is not an address is skipped with a warning.
fn collect_addresses<'a, 'x: 'a>(
    values: impl IntoIterator<Item = &'a Address<'x>>,
    field: &str,
    w: &mut Vec<String>,
) -> Vec<(EmailAddress, Option<String>)> {
    let mut out = Vec::new();
    for value in values {
        for addr in value.iter() {
            let name = addr
                .name()
                .map(|n| clean_header_text(n).trim_matches(|c| c == '"' || c == '\'').trim().to_string())
                .filter(|n| !n.is_empty());
            match addr.address() {
                Some(a) if !a.trim().is_empty() => match EmailAddress::parse(a) {
                    Ok(email) => out.push((email, name)),
                    Err(_) => w.push(format!("unparseable address in {field}")),
                },
                _ if name.is_some() => w.push(format!("unparseable address in {field}")),
                _ => {}
            }
        }
    }
    out
}

fn content_language(mime: &mail_parser::Message<'_>) -> Option<String> {
    let tag_ok = |t: &str| !t.is_empty() && t.len() <= 35 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let first_of = |v: &HeaderValue<'_>| -> Option<String> {
        match v {
            HeaderValue::Text(t) => Some(t.to_string()),
            HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
            _ => None,
        }
    };
    let from_content = first_of(mime.root_part().content_language())
        .or_else(|| mime.text_bodies().next().and_then(|p| first_of(p.content_language())))
        .and_then(|t| t.split(',').next().map(|s| s.trim().to_string()))
        .filter(|t| tag_ok(t));
    from_content.or_else(|| {
        header_values(mime, "accept-language")
            .next()
            .and_then(|v| v.split(',').next())
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
            .filter(|t| tag_ok(t))
    })
}

fn auto_signals(mime: &mail_parser::Message<'_>, from: Option<&EmailAddress>) -> AutoSignals {
    let mut s = AutoSignals::default();
    for (name, value) in mime.headers_raw() {
        let name = name.to_ascii_lowercase();
        let value = value.trim().to_ascii_lowercase();
        match name.as_str() {
            "auto-submitted" => {
                let kind = value.split(';').next().unwrap_or("").trim();
                if !kind.is_empty() && kind != "no" {
                    s.auto_submitted = true;
                }
            }
            "x-autoreply" | "x-autorespond" | "x-auto-response-suppress" | "x-autogenerated" | "x-autoreply-from"
            | "x-mail-autoreply" | "x-auto-reply" => s.autoreply_header = true,
            "precedence" => {
                if matches!(value.as_str(), "bulk" | "list" | "junk" | "auto_reply" | "auto-reply") {
                    s.precedence_bulk = true;
                }
            }
            "list-id" | "list-unsubscribe" | "list-post" => s.mailing_list = true,
            // An empty reverse path is what bounces are sent from (RFC 5321).
            "return-path" if value.replace(char::is_whitespace, "") == "<>" => s.bounce = true,
            _ => {}
        }
    }
    if let Some(from) = from {
        let local = from.as_str().split('@').next().unwrap_or("");
        if local == "mailer-daemon" || local == "postmaster" {
            s.bounce = true;
        }
    }
    if mime.root_part().content_type().is_some_and(|ct| {
        ct.c_type.eq_ignore_ascii_case("multipart") && ct.c_subtype.as_deref().is_some_and(|st| st.eq_ignore_ascii_case("report"))
    }) {
        s.bounce = true;
    }
    s
}

// ---------------------------------------------------------------------------
// Text normalisation and HTML to text

/// CRLF and CR to LF, invisible characters out, trailing blanks trimmed, at most
/// one blank line in a row, no blank lines at either end.
fn normalise(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line: String = line
            .chars()
            .filter(|c| !matches!(c, '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{feff}' | '\u{ad}') && (!c.is_control() || *c == '\t'))
            .collect();
        let line = line.trim_end();
        if line.is_empty() && lines.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        lines.push(line.to_string());
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// HTML to readable text. Written here rather than using mail-parser's
/// converter because that one ignores `<div>` line breaks (Gmail, Outlook web
/// write every line as a `<div>`) and `<blockquote>`, which the splitter needs.
fn html_to_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = HtmlText::default();
    // Elements whose closing tag is known to be absent from some point on: no
    // need to search again (keeps hostile input linear).
    let mut unclosed: Vec<String> = Vec::new();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            i = match html[i + 4..].find("-->") {
                Some(end) => i + 4 + end + 3,
                None => html.len(),
            };
            continue;
        }
        if rest.starts_with('<') {
            let Some(end) = rest.find('>') else {
                // No tag can close any more: the rest is text.
                out.text(&decode_entities(rest));
                break;
            };
            let tag = &rest[1..end];
            i += end + 1;
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
                .collect::<String>()
                .to_ascii_lowercase();
            let self_closing = tag.ends_with('/');
            if !closing && !self_closing && matches!(name.as_str(), "head" | "style" | "script" | "title" | "template" | "xml") {
                // Skip the element's content; without a closing tag, up to the next tag.
                let close = if unclosed.contains(&name) { None } else { lower[i..].find(&format!("</{name}")) };
                if close.is_none() && !unclosed.contains(&name) {
                    unclosed.push(name.clone());
                }
                i = match close {
                    Some(close) => {
                        let after = i + close;
                        html[after..].find('>').map_or(html.len(), |gt| after + gt + 1)
                    }
                    None => html[i..].find('<').map_or(html.len(), |lt| i + lt),
                };
                continue;
            }
            out.tag(&name, closing);
            continue;
        }
        // Text run up to the next tag (at least one character to make progress).
        let first = rest.chars().next().map_or(1, char::len_utf8);
        let next = rest[first..].find('<').map_or(rest.len(), |p| p + first);
        out.text(&decode_entities(&rest[..next]));
        i += next;
    }
    out.buf
}

#[derive(Default)]
struct HtmlText {
    buf: String,
    quote_depth: usize,
    pre_depth: usize,
    line_has_content: bool,
    pending_space: bool,
}

impl HtmlText {
    fn newline(&mut self) {
        self.buf.push('\n');
        self.line_has_content = false;
        self.pending_space = false;
    }
    fn block_break(&mut self) {
        if self.line_has_content {
            self.newline();
        }
    }
    fn push_content(&mut self, c: char) {
        if !self.line_has_content {
            for _ in 0..self.quote_depth {
                self.buf.push_str("> ");
            }
        } else if self.pending_space {
            self.buf.push(' ');
        }
        self.pending_space = false;
        self.line_has_content = true;
        self.buf.push(c);
    }
    fn text(&mut self, text: &str) {
        for c in text.chars() {
            if self.pre_depth > 0 {
                if c == '\n' {
                    self.newline();
                } else {
                    self.push_content(c);
                }
            } else if c.is_ascii_whitespace() {
                self.pending_space = self.line_has_content;
            } else if c == '\u{a0}' {
                // &nbsp; is content: a paragraph of one &nbsp; is Outlook's blank line.
                self.push_content(' ');
            } else {
                self.push_content(c);
            }
        }
    }
    fn tag(&mut self, name: &str, closing: bool) {
        match name {
            "br" => self.newline(),
            "blockquote" => {
                self.block_break();
                if closing {
                    self.quote_depth = self.quote_depth.saturating_sub(1);
                } else {
                    self.quote_depth += 1;
                }
            }
            "pre" => {
                self.block_break();
                if closing {
                    self.pre_depth = self.pre_depth.saturating_sub(1);
                } else {
                    self.pre_depth += 1;
                }
            }
            "hr" => {
                // Outlook web puts an <hr> before the reply header block.
                self.block_break();
                for c in "________________________________".chars() {
                    self.push_content(c);
                }
                self.newline();
            }
            "li" if !closing => {
                self.block_break();
                self.push_content('-');
                self.pending_space = true;
            }
            // Cells of one row stay on one line, tab-separated.
            "td" | "th" if !closing && self.line_has_content => {
                self.buf.push('\t');
                self.pending_space = false;
            }
            "p" | "div" | "li" | "tr" | "table" | "ul" | "ol" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "section"
            | "article" | "header" | "footer" | "address" | "dd" | "dt" | "dl" | "center" | "form" | "fieldset"
            | "body" | "html" | "caption" => self.block_break(),
            _ => {}
        }
    }
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let semi = rest.char_indices().take(12).find(|(_, c)| *c == ';').map(|(i, _)| i);
        let decoded = semi.and_then(|end| {
            let entity = &rest[1..end];
            let code = if let Some(num) = entity.strip_prefix('#') {
                match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse::<u32>().ok(),
                }
                .map(|c| match c {
                    // Windows-1252 code points written as numeric references.
                    0x80 => 0x20ac,
                    0x92 => 0x2019,
                    0x96 => 0x2013,
                    0x97 => 0x2014,
                    _ => c,
                })
                .and_then(char::from_u32)
            } else {
                named_entity(entity)
            };
            code.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "nbsp" => '\u{a0}',
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "euro" => '€',
        "pound" => '£',
        "cent" => '¢',
        "yen" => '¥',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "deg" => '°',
        "ordm" => 'º',
        "ordf" => 'ª',
        "sect" => '§',
        "para" => '¶',
        "middot" => '·',
        "bull" => '•',
        "times" => '×',
        "divide" => '÷',
        "plusmn" => '±',
        "frac12" => '½',
        "frac14" => '¼',
        "frac34" => '¾',
        "sup2" => '²',
        "micro" => 'µ',
        "shy" => '\u{ad}',
        "ensp" | "emsp" | "thinsp" => ' ',
        "zwnj" => '\u{200c}',
        "zwj" => '\u{200d}',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "laquo" => '«',
        "raquo" => '»',
        "lsaquo" => '‹',
        "rsaquo" => '›',
        "iexcl" => '¡',
        "iquest" => '¿',
        "szlig" => 'ß',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "atilde" => 'ã',
        "auml" => 'ä',
        "aring" => 'å',
        "aelig" => 'æ',
        "ccedil" => 'ç',
        "egrave" => 'è',
        "eacute" => 'é',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "igrave" => 'ì',
        "iacute" => 'í',
        "icirc" => 'î',
        "iuml" => 'ï',
        "ntilde" => 'ñ',
        "ograve" => 'ò',
        "oacute" => 'ó',
        "ocirc" => 'ô',
        "otilde" => 'õ',
        "ouml" => 'ö',
        "oslash" => 'ø',
        "oelig" => 'œ',
        "ugrave" => 'ù',
        "uacute" => 'ú',
        "ucirc" => 'û',
        "uuml" => 'ü',
        "yacute" => 'ý',
        "yuml" => 'ÿ',
        "Agrave" => 'À',
        "Aacute" => 'Á',
        "Acirc" => 'Â',
        "Atilde" => 'Ã',
        "Auml" => 'Ä',
        "Aring" => 'Å',
        "AElig" => 'Æ',
        "Ccedil" => 'Ç',
        "Egrave" => 'È',
        "Eacute" => 'É',
        "Ecirc" => 'Ê',
        "Euml" => 'Ë',
        "Igrave" => 'Ì',
        "Iacute" => 'Í',
        "Icirc" => 'Î',
        "Iuml" => 'Ï',
        "Ntilde" => 'Ñ',
        "Ograve" => 'Ò',
        "Oacute" => 'Ó',
        "Ocirc" => 'Ô',
        "Otilde" => 'Õ',
        "Ouml" => 'Ö',
        "Oslash" => 'Ø',
        "OElig" => 'Œ',
        "Ugrave" => 'Ù',
        "Uacute" => 'Ú',
        "Ucirc" => 'Û',
        "Uuml" => 'Ü',
        "Yacute" => 'Ý',
        "Yuml" => 'Ÿ',
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Splitting the body into new text, quoted history and signature

struct Split {
    new_text: String,
    quoted: String,
    signature: String,
}

/// A line as the rules see it: no-break spaces as spaces, trimmed.
fn plain(line: &str) -> String {
    line.replace(['\u{a0}', '\u{202f}'], " ").trim().to_string()
}

fn is_quote_line(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn split_body(body: &str, sender: Option<&str>) -> Split {
    let lines: Vec<&str> = body.split('\n').collect();
    let n = lines.len();
    let mut quoted = vec![false; n];

    // 1. History: `>` lines anywhere, and everything from a hard cut on.
    let mut cut = n;
    let mut i = 0;
    while i < n {
        let line = lines[i];
        if is_blank(line) {
            i += 1;
            continue;
        }
        if is_quote_line(line) {
            quoted[i] = true;
            i += 1;
            continue;
        }
        if let Some(start) = history_start(&lines, i, &quoted) {
            cut = start;
            break;
        }
        if let Some(len) = attribution_len(&lines, i) {
            let next = (i + len..n).find(|&j| !is_blank(lines[j]));
            match next {
                // Attribution over `>` lines: only those are history; text after
                // them is a bottom-posted or inline answer.
                Some(j) if is_quote_line(lines[j]) => {
                    quoted[i..i + len].iter_mut().for_each(|q| *q = true);
                    i = j;
                    continue;
                }
                _ => {
                    cut = i;
                    break;
                }
            }
        }
        i += 1;
    }
    quoted[cut..].iter_mut().for_each(|q| *q = true);
    // Blank lines between two history lines belong to the history (the
    // nearest text line on each side, found in one pass each way).
    let blank: Vec<bool> = lines.iter().map(|l| is_blank(l)).collect();
    let mut before = vec![false; n];
    let mut last = false;
    for j in 0..n {
        before[j] = last;
        if !blank[j] {
            last = quoted[j];
        }
    }
    let mut next = false;
    for j in (0..n).rev() {
        if blank[j] {
            if !quoted[j] {
                quoted[j] = before[j] && next;
            }
        } else {
            next = quoted[j];
        }
    }

    let history: Vec<&str> = (0..n).filter(|&j| quoted[j]).map(|j| lines[j]).collect();
    let own: Vec<&str> = (0..n).filter(|&j| !quoted[j]).map(|j| lines[j]).collect();
    let own = normalise(&own.join("\n"));
    let own_lines: Vec<&str> = own.split('\n').collect();

    // 2. Signature at the end of what the sender wrote.
    let sig = signature_start(&own_lines, sender).unwrap_or(own_lines.len());
    Split {
        new_text: normalise(&own_lines[..sig].join("\n")),
        quoted: normalise(&history.join("\n")),
        signature: normalise(&own_lines[sig..].join("\n")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderKey {
    From,
    Sent,
    To,
    Subject,
    Cc,
}

/// The key of a reply-header line (`De :`, `*From:*`, `Envoyé :`…), any language
/// Outlook, Gmail, Apple Mail or Lotus writes it in.
fn header_key(line: &str) -> Option<HeaderKey> {
    static KEY: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?i)^[*\s]*(from|de|von|da|van|od|sent|envoy[ée]|date|gesendet|datum|inviato|enviado|verzonden|to|[àa]|an|para|per|aan|subject|objet|betreff|asunto|oggetto|onderwerp|assunto|cc|copie [àa])\s*\*?\s*:")
    });
    let p = plain(line);
    let caps = KEY.captures(&p)?;
    let key = caps.get(1)?.as_str().to_lowercase();
    Some(match key.as_str() {
        "from" | "de" | "von" | "da" | "van" | "od" => HeaderKey::From,
        "sent" | "envoyé" | "envoye" | "date" | "gesendet" | "datum" | "inviato" | "enviado" | "verzonden" => HeaderKey::Sent,
        "subject" | "objet" | "betreff" | "asunto" | "oggetto" | "onderwerp" | "assunto" => HeaderKey::Subject,
        "cc" | "copie à" | "copie a" => HeaderKey::Cc,
        _ => HeaderKey::To,
    })
}

/// A reply or forward header block starts at `i`: a From line followed, without
/// a blank line, by at least two of Sent/Date, To, Subject, Cc.
fn header_block_at(lines: &[&str], i: usize) -> bool {
    if header_key(lines[i]) != Some(HeaderKey::From) {
        return false;
    }
    let mut seen: Vec<HeaderKey> = Vec::new();
    for line in lines.iter().skip(i + 1).take(8) {
        if is_blank(line) {
            break;
        }
        if let Some(k) = header_key(line) {
            if k != HeaderKey::From && !seen.contains(&k) {
                seen.push(k);
            }
        }
    }
    seen.len() >= 2
}

/// Separator lines that open quoted or forwarded history.
fn is_separator(line: &str) -> bool {
    static SEP: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?ix)^(?:
            [-=_*\s]{2,}\s*(?:original\s+message|message\s+d['’]origine|message\s+original|forwarded\s+message|
                mail\s+original|original\s+mail|courriel\s+original|e-?mail\s+d['’]origine|
                message\s+transf[ée]r[ée]|mensaje\s+original|messaggio\s+originale|urspr[üu]ngliche\s+nachricht|
                weitergeleitete\s+nachricht|oorspronkelijk\s+bericht|doorgestuurd\s+bericht|reply\s+message|
                mensagem\s+original|mensagem\s+encaminhada)\s*:?\s*[-=_*\s]*
          | (?:begin\s+forwarded\s+message|d[ée]but\s+du\s+message\s+r[ée]exp[ée]di[ée]|message\s+transf[ée]r[ée]|
                forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht)\s*:
        )$")
    });
    SEP.is_match(&plain(line))
}

fn is_underscore_line(line: &str) -> bool {
    let p = plain(line);
    p.len() >= 10 && p.chars().all(|c| c == '_' || c == '-' || c == '=') && p.contains('_')
}

/// Where history starts if a separator or header block is at line `i`.
fn history_start(lines: &[&str], i: usize, quoted: &[bool]) -> Option<usize> {
    if is_separator(lines[i]) {
        return Some(i);
    }
    if header_block_at(lines, i) {
        // Outlook web puts a line of underscores just above the block.
        let prev = (0..i).rev().find(|&k| !is_blank(lines[k]));
        return Some(match prev {
            Some(k) if is_underscore_line(lines[k]) && !quoted[k] => k,
            _ => i,
        });
    }
    None
}

/// An attribution line (`On … wrote:`, `Le … a écrit :`) at `i`, possibly
/// wrapped over up to three lines; returns how many lines it spans.
fn attribution_len(lines: &[&str], i: usize) -> Option<usize> {
    static END: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?i)(?:wrote|writes|a\s+[ée]crit|schrieb|escribi[óo]|ha\s+scritto|scrisse|schreef|skrev|napisa[łl]|escreveu|kirjoitti)\s*:$")
    });
    static START: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^(?:on|le|am|el|il|op|em|den|dne|w)\s"));
    for k in 1..=3 {
        if i + k > lines.len() {
            break;
        }
        let span = &lines[i..i + k];
        if span.iter().skip(1).any(|l| is_blank(l) || is_quote_line(l)) {
            break;
        }
        // END needs the (trimmed) span to end with a colon: most lines do
        // not, and they are spared the join and the search.
        if !span[k - 1].trim_end_matches(|c: char| c == '-' || c == '*' || c.is_whitespace()).ends_with(':') {
            continue;
        }
        let joined = span.iter().map(|l| plain(l)).collect::<Vec<_>>().join(" ");
        // Lotus Notes frames it in dashes: `-----John Doe/ACME wrote: -----`.
        let s = joined.trim_matches(|c: char| c == '-' || c == '*' || c.is_whitespace());
        if s.chars().count() > 400 {
            break;
        }
        if END.is_match(s) {
            let starts = START.is_match(s);
            let ok = if k == 1 {
                starts || s.contains('@') || s.chars().count() <= 80
            } else {
                starts && s.chars().any(|c| c.is_ascii_digit())
            };
            if ok {
                return Some(k);
            }
        }
    }
    None
}

// Signature rules ------------------------------------------------------------

/// Closing formulas after which, when what follows looks like a signature, the
/// signature starts. Strong ones close a letter almost always; weak ones
/// ("merci", "thanks") also open sentences, so they need a name or contact
/// line after them.
const STRONG_CLOSINGS: &[&str] = &[
    "cordialement", "bien cordialement", "très cordialement", "tres cordialement", "bien à vous", "bien a vous",
    "cdlt", "cdt", "bàv", "salutations", "sincères salutations", "sinceres salutations", "meilleures salutations",
    "salutations distinguées", "salutations distinguees", "bien sincèrement", "sincèrement", "respectueusement",
    "amicalement", "bonne journée", "bonne journee", "bonne fin de journée", "bonne fin de journee", "bonne soirée",
    "bonne soiree", "bon week-end", "bon weekend", "bonne semaine", "belle journée", "belle journee", "à bientôt",
    "a bientot", "au plaisir", "best regards", "kind regards", "warm regards", "warmest regards", "regards",
    "best", "best wishes", "thanks and regards", "thanks & regards", "thanks and best regards", "sincerely",
    "yours sincerely", "sincerely yours", "yours faithfully", "yours truly", "cheers", "all the best",
    "with best regards", "with kind regards", "many thanks and best regards", "br", "rgds",
    "mit freundlichen grüßen", "mit freundlichen grüssen", "freundliche grüße", "freundliche grüsse",
    "viele grüße", "viele grüsse", "beste grüße", "beste grüsse", "gruß", "grüße", "saludos", "atentamente",
    "un saludo", "saludos cordiales", "cordiali saluti", "distinti saluti", "saluti", "met vriendelijke groet",
    "met vriendelijke groeten", "atenciosamente", "cumprimentos",
];
const WEAK_CLOSINGS: &[&str] = &[
    "merci", "merci beaucoup", "merci d'avance", "merci par avance", "merci encore", "merci à vous",
    "merci a vous", "d'avance merci", "par avance merci", "encore merci", "merci bien", "thanks", "thank you",
    "thanks in advance", "thank you in advance", "thanks again", "thank you again", "many thanks", "thx",
    "thanks a lot", "thank you very much", "danke", "vielen dank", "gracias", "grazie",
];
/// Longer closing sentences recognised by their opening words.
const CLOSING_PREFIXES: &[&str] = &[
    "en vous remerciant", "veuillez agréer", "veuillez agreer", "je vous prie d'agréer", "je vous prie d’agréer",
    "nous vous prions d'agréer", "nous vous prions d’agréer", "je vous prie de recevoir", "recevez, madame",
    "recevez, monsieur", "dans l'attente de votre", "dans l’attente de votre", "merci d'avance pour",
    "merci par avance pour", "merci pour votre compréhension", "merci de votre compréhension",
    "thanking you", "looking forward to hearing", "i look forward to hearing", "we look forward to hearing",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    Strong,
    Weak,
}

fn closing_regex(list: &[&str]) -> Regex {
    let alts: Vec<String> = list.iter().map(|s| regex::escape(s)).collect();
    // The formula, optionally followed by a first name or two (`Merci, Paul`).
    re(&format!(
        r"^(?i:{})(?:\s*[,.!]?\s*\p{{Lu}}[\p{{L}}'’.-]*(?:\s+\p{{Lu}}[\p{{L}}'’.-]*){{0,2}})?\s*[,.!:;)]*$",
        alts.join("|")
    ))
}

fn closing_kind(line: &str) -> Option<Closing> {
    static STRONG: LazyLock<Regex> = LazyLock::new(|| closing_regex(STRONG_CLOSINGS));
    static WEAK: LazyLock<Regex> = LazyLock::new(|| closing_regex(WEAK_CLOSINGS));
    let p = plain(line);
    let p = p.trim_start_matches(['-', '*', '_']).trim();
    if p.is_empty() || p.chars().count() > 160 {
        return None;
    }
    if STRONG.is_match(p) {
        return Some(Closing::Strong);
    }
    if WEAK.is_match(p) {
        return Some(Closing::Weak);
    }
    let lower = p.to_lowercase();
    if p.chars().count() <= 120 && CLOSING_PREFIXES.iter().any(|pre| lower.starts_with(pre)) {
        // A sentence like "Dans l'attente de votre retour, …" ends the letter.
        return Some(Closing::Strong);
    }
    None
}

/// Mobile and webmail footers that end what the sender wrote.
fn is_mobile_footer(line: &str) -> bool {
    static FOOTER: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?i)^(?:envoy[ée] (?:de|depuis|à partir de|a partir de) (?:mon|my|l'application|mail|outlook|yahoo|samsung)|sent from (?:my|mail|outlook|yahoo|samsung)|sent via|get outlook for|t[ée]l[ée]charger outlook pour|obtenir outlook pour|von meinem|enviado desde|inviato da)\b")
    });
    let p = plain(line);
    p.chars().count() <= 100 && FOOTER.is_match(&p)
}

/// First line of a legal disclaimer or an environment footer.
fn is_disclaimer(line: &str) -> bool {
    static DISCLAIMER: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?ix)^(?:p\s+)?[^\p{L}\p{N}]*(?:
            ce\s+(?:message|courriel|mail|e-?mail)\b.{0,60}\b(?:confidenti|pi[èe]ces?\s+jointes|destin[ée])
          | ce\s+message\s+et\s+(?:toutes\s+)?(?:ses|les)\s+pi[èe]ces
          | (?:le\s+)?pr[ée]sent\s+(?:message|courriel|e-?mail)\b
          | les\s+informations\s+contenues\s+dans
          | (?:avertissement|disclaimer|confidentialit[ée]|clause\s+de\s+confidentialit[ée]|important\s+notice|legal\s+notice|mentions\s+l[ée]gales)\b
          | confidential(?:ity)?\s+(?:notice|note|statement|warning)\b
          | (?:this|the)\s+(?:e-?mail|message|communication|transmission)\b.{0,80}\b(?:confidential|intended\s+(?:only|solely|for)|privileged)
          | the\s+information\s+(?:contained\s+)?in\s+this
          | if\s+you\s+(?:are\s+not\s+the\s+intended|have\s+received\s+this)
          | si\s+vous\s+(?:n['’][êe]tes\s+pas\s+(?:le\s+)?destinataire|avez\s+re[çc]u\s+ce)
          | (?:merci\s+de\s+)?pensez?\s+[àa]\s+l['’]environnement
          | (?:respectez|pr[ée]servez|prot[ée]geons)\s+l['’]environnement
          | avant\s+d['’]imprimer
          | afin\s+de\s+contribuer\s+au\s+respect\s+de\s+l['’]environnement
          | n['’]imprimez\s+ce
          | please\s+consider\s+the\s+environment
          | think\s+before\s+(?:you\s+)?print
          | save\s+(?:a\s+tree|paper)
          | diese\s+e-?mail\s+enth[äa]lt\s+vertrauliche
        )")
    });
    DISCLAIMER.is_match(&plain(line))
}

/// Contact or company-legal lines: phone, e-mail, web, registration numbers.
fn is_contact_line(line: &str) -> bool {
    static CONTACT: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?ix)
            (?:\+\d{1,3}[\s.]?)?(?:\(0\)\s?)?\d{1,4}(?:[\s.-]\d{2,4}){2,5}
          | [\w.+-]+@[\w-]+\.[\w.-]+
          | (?:https?://|www\.)
          | \b(?:capital|rcs|siret|siren|tva|vat|ape|naf|iban|bic|swift|registered\s+office|company\s+number|registered\s+in)\b
          | ^(?:t[ée]l|tel|phone|mobile|mob|fax|portable|gsm|direct|standard|e-?mail|web|site|adresse|address)\b
        ")
    });
    CONTACT.is_match(&plain(line))
}

/// A line of running prose: a signature has none.
fn is_prose(line: &str) -> bool {
    let p = plain(line);
    let lower = p.to_lowercase();
    let words = p.split_whitespace().count();
    let shaped = lower.starts_with("ps") || lower.starts_with("p.s") || lower.starts_with("p.-s") || (words >= 8 && p.ends_with(['.', '?', '!', ':'])) || words >= 15 || (words >= 3 && p.ends_with('?'));
    // The contact pattern is the costly test: only for lines shaped like prose.
    shaped && !is_contact_line(&p)
}

/// A name-like line: one to five words, capitalised, no digits (`J. Dupont`,
/// `Jean-Marc de La Tour`).
fn is_name_line(line: &str) -> bool {
    let p = plain(line);
    let words: Vec<&str> = p.split_whitespace().collect();
    if words.is_empty() || words.len() > 5 || p.chars().any(|c| c.is_ascii_digit()) {
        return false;
    }
    let particles = ["de", "du", "des", "la", "le", "van", "von", "der", "den", "di", "da", "d'", "et", "&", "-", "–"];
    words.iter().all(|w| particles.contains(&w.to_lowercase().as_str()) || w.chars().next().is_some_and(|c| c.is_uppercase()))
}

/// Does the block after a closing formula read like a signature?
fn looks_like_signature(block: &[&str], kind: Closing) -> bool {
    let content: Vec<&str> = block.iter().copied().filter(|l| !is_blank(l)).collect();
    let Some(first) = content.first() else {
        return true;
    };
    if content.len() > 15 || content.iter().any(|l| is_prose(l)) {
        return false;
    }
    match kind {
        Closing::Strong => true,
        Closing::Weak => is_name_line(first) || content.iter().any(|l| is_contact_line(l)),
    }
}

/// Index in `lines` (the sender's own text) where the signature starts.
fn signature_start(lines: &[&str], sender: Option<&str>) -> Option<usize> {
    let n = lines.len();
    // Hard markers: the `-- ` delimiter, a mobile footer, a disclaimer.
    let dash = lines.iter().position(|l| l.trim() == "--");
    let footer = lines.iter().position(|l| is_mobile_footer(l));
    let disclaimer = lines.iter().position(|l| is_disclaimer(l)).map(|d| {
        // Company and contact lines just above the disclaimer go with it.
        let mut start = d;
        let mut k = d;
        if k > 0 && is_blank(lines[k - 1]) {
            k -= 1;
        }
        while k > 0 && !is_blank(lines[k - 1]) && is_contact_line(lines[k - 1]) {
            k -= 1;
            start = k;
        }
        start
    });
    let hard = [dash, footer, disclaimer].into_iter().flatten().min();
    let limit = hard.unwrap_or(n);
    // A closing formula before the hard marker: the signature starts after it.
    // The first formula whose following lines read like a signature wins.
    let soft = (0..limit).find_map(|j| {
        let kind = closing_kind(lines[j])?;
        let block = &lines[j + 1..limit];
        let has_content = block.iter().any(|l| !is_blank(l));
        (looks_like_signature(block, kind) && (has_content || hard.is_some())).then_some(j + 1)
    });
    if soft.is_some() {
        return soft;
    }
    // No sign-off: a closing block that starts with the sender's own name
    // (`Didier Chapuis`, `J. Vasseur`, `Christophe`) followed by a few short lines.
    let by_name = sender.and_then(|s| sender_name_line(&lines[..limit], s));
    [by_name, hard].into_iter().flatten().min()
}

/// The last line before `lines.len()` that is the sender's name on its own,
/// with only a few non-prose lines after it and some text before it.
fn sender_name_line(lines: &[&str], sender: &str) -> Option<usize> {
    let tokens: Vec<String> = sender
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| t.chars().count() >= 3)
        .map(|t| t.to_lowercase())
        .collect();
    if tokens.is_empty() {
        return None;
    }
    let n = lines.len();
    let first_text = lines.iter().position(|l| !is_blank(l))?;
    let mut after = 0;
    for i in (first_text + 1..n).rev() {
        let line = lines[i];
        if is_blank(line) {
            continue;
        }
        let words: Vec<String> = line.split(|c: char| !c.is_alphanumeric()).map(|w| w.to_lowercase()).collect();
        if is_name_line(line) && words.iter().any(|w| tokens.contains(w)) {
            return Some(i);
        }
        after += 1;
        if after > 6 || is_prose(line) {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn shared_dir() -> Option<PathBuf> {
        [concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"), "/work/shared"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir())
    }

    fn eml(headers: &str, body: &str) -> Vec<u8> {
        format!("{}\r\n\r\n{}", headers.trim().replace('\n', "\r\n"), body.replace('\n', "\r\n")).into_bytes()
    }

    const PLAIN_HEADERS: &str = "From: Sophie Garnier <Compta@Metallerie-Bourgeois.fr>
To: Maintenix <compta@maintenix.fr>, \"Dubois, Claire\" <c.dubois@maintenix.fr>
Cc: direction@maintenix.fr
Subject: =?utf-8?q?Re=3A_Facture_FA-2026-00012_=E2=80=93_=C3=A9ch=C3=A9ance?=
Date: Mon, 02 Mar 2026 08:47:48 +0100
Message-ID: <abc.123@metallerie-bourgeois.fr>
In-Reply-To: <out-1@maintenix.fr>
References: <out-0@maintenix.fr> <out-1@maintenix.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8";

    fn plain_msg(body: &str) -> Message {
        parse(&eml(PLAIN_HEADERS, body))
    }

    #[test]
    fn plain_text_headers_and_body() {
        let m = plain_msg("Bonjour,\n\nLe règlement sera fait le 31/03.   \n\n\n\n\nBonne réception\n");
        assert_eq!(m.message_id.as_deref(), Some("abc.123@metallerie-bourgeois.fr"));
        assert_eq!(m.in_reply_to, vec!["out-1@maintenix.fr"]);
        assert_eq!(m.references, vec!["out-0@maintenix.fr", "out-1@maintenix.fr"]);
        assert_eq!(m.from.as_ref().map(|a| a.as_str()), Some("compta@metallerie-bourgeois.fr"));
        assert_eq!(m.from_name.as_deref(), Some("Sophie Garnier"));
        assert_eq!(m.to.iter().map(|a| a.as_str()).collect::<Vec<_>>(), ["compta@maintenix.fr", "c.dubois@maintenix.fr"]);
        assert_eq!(m.cc.iter().map(|a| a.as_str()).collect::<Vec<_>>(), ["direction@maintenix.fr"]);
        assert_eq!(m.subject, "Re: Facture FA-2026-00012 – échéance");
        assert_eq!(m.date.map(|d| d.to_rfc3339()), Some("2026-03-02T07:47:48+00:00".into()));
        assert_eq!(m.new_text, "Bonjour,\n\nLe règlement sera fait le 31/03.\n\nBonne réception");
        assert!(m.quoted.is_empty() && m.signature.is_empty());
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        assert_eq!(m.auto, AutoSignals::default());
    }

    #[test]
    fn html_only_outlook_drops_style_and_head() {
        let html = "<html><head><meta charset=utf-8><title>t</title><style><!--\np.MsoNormal {margin:0cm; font-family:\"Calibri\"}\n@font-face {font-family:Calibri;}\n--></style></head>\n<body><div class=WordSection1><p class=MsoNormal>Bonjour,<o:p></o:p></p>\n<p class=MsoNormal>&nbsp;<o:p></o:p></p>\n<p class=MsoNormal>Le montant de 1&nbsp;200,00&nbsp;&euro; ne correspond pas &agrave; la commande.<o:p></o:p></p>\n<p class=MsoNormal>Cordialement,</p><p class=MsoNormal>Jean Dupont<br>Acheteur</p></div></body></html>";
        let m = parse(&eml(&PLAIN_HEADERS.replace("text/plain; charset=utf-8", "text/html; charset=utf-8"), html));
        assert!(!m.new_text.contains("MsoNormal") && !m.new_text.contains("font") && !m.new_text.contains('<'), "{}", m.new_text);
        assert_eq!(m.new_text, "Bonjour,\n\nLe montant de 1 200,00 € ne correspond pas à la commande.\nCordialement,");
        assert_eq!(m.signature, "Jean Dupont\nAcheteur");
    }

    #[test]
    fn multipart_alternative_prefers_plain_text() {
        let body = "--b\nContent-Type: text/plain; charset=utf-8\n\nTexte brut FA-2026-00001\n--b\nContent-Type: text/html; charset=utf-8\n\n<p>HTML version</p>\n--b--\n";
        let m = parse(&eml(&PLAIN_HEADERS.replace("text/plain; charset=utf-8", "multipart/alternative; boundary=b"), body));
        assert_eq!(m.new_text, "Texte brut FA-2026-00001");
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn empty_plain_part_falls_back_to_html() {
        let body = "--b\nContent-Type: text/plain; charset=utf-8\n\n\n--b\nContent-Type: text/html; charset=utf-8\n\n<div>Bonjour</div><div>Le montant est faux.</div>\n--b--\n";
        let m = parse(&eml(&PLAIN_HEADERS.replace("text/plain; charset=utf-8", "multipart/alternative; boundary=b"), body));
        assert_eq!(m.new_text, "Bonjour\nLe montant est faux.");
    }

    /// Each case: body, expected new_text, a piece expected in quoted, a piece
    /// expected in signature ("" = must be empty).
    #[test]
    fn splitting_table() {
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            (
                "french gmail reply, attribution wrapped",
                "Bonjour,\n\nLa facture est réglée.\n\nCordialement,\nSophie\n\nLe mer. 18 févr. 2026 à 11:02, Maintenix SAS - Comptabilité <\ncompta@maintenix.fr> a écrit :\n> Bonjour,\n> Facture FA-2026-00099 impayée.\n",
                "Bonjour,\n\nLa facture est réglée.\n\nCordialement,",
                "FA-2026-00099",
                "Sophie",
            ),
            (
                "french apple mail, one line, no quote marks",
                "Merci de nous adresser un avoir de 120 €.\n\nLe 12 mars 2026 à 10:15, Claire Dubois <c.dubois@maintenix.fr> a écrit :\n\nBonjour, facture FA-2026-00077.",
                "Merci de nous adresser un avoir de 120 €.",
                "FA-2026-00077",
                "",
            ),
            (
                "english gmail reply",
                "Hi,\n\nPayment will follow on Friday.\n\nOn Mon, Mar 2, 2026 at 10:15 AM Claire Dubois <c.dubois@maintenix.fr> wrote:\n> Invoice FA-2026-00050 is overdue.\n",
                "Hi,\n\nPayment will follow on Friday.",
                "FA-2026-00050",
                "",
            ),
            (
                "english attribution wrapped over two lines",
                "Agreed.\n\nOn Mon, Mar 2, 2026 at 10:15 AM Accounts Receivable Maintenix SAS\n<compta@maintenix.fr> wrote:\n\n> Invoice FA-2026-00051\n",
                "Agreed.",
                "FA-2026-00051",
                "",
            ),
            (
                "outlook french header block",
                "Bonjour,\n\nNous contestons le prix.\n\nDe : Maintenix SAS <compta@maintenix.fr>\nEnvoyé : lundi 23 février 2026 10:15\nÀ : Jean <j@client.fr>\nObjet : Facture FA-2026-00023\n\nBonjour, voici la facture.",
                "Bonjour,\n\nNous contestons le prix.",
                "Objet : Facture FA-2026-00023",
                "",
            ),
            (
                "outlook english block after underscores",
                "Please see below.\n\n________________________________\nFrom: Maintenix <compta@maintenix.fr>\nSent: Monday, 23 February 2026 10:15\nTo: Erik <erik@nordic.se>\nSubject: Payment reminder FA-2026-00003\n\nDear Erik,",
                "Please see below.",
                "________________________________\nFrom: Maintenix",
                "",
            ),
            (
                "original message separator",
                "Voir ci-dessous.\n\n-----Message d'origine-----\nDe: compta@maintenix.fr\nFacture FA-2026-00010",
                "Voir ci-dessous.",
                "-----Message d'origine-----",
                "",
            ),
            (
                "gmail forward",
                "Pour info, voir la réclamation de notre client.\n\n---------- Forwarded message ---------\nFrom: Client <x@y.fr>\nDate: Mon, 2 Mar 2026\nSubject: Facture FA-2026-00031\n\nTexte transféré",
                "Pour info, voir la réclamation de notre client.",
                "Texte transféré",
                "",
            ),
            (
                "thunderbird french forward",
                "Je transfère.\n\n-------- Message transféré --------\nSujet : Facture FA-2026-00032\nDate : Mon, 2 Mar 2026",
                "Je transfère.",
                "FA-2026-00032",
                "",
            ),
            (
                "dash-dash signature",
                "Bonjour,\nle paiement part demain.\n-- \nKarine Olivier\n04 65 71 40 66",
                "Bonjour,\nle paiement part demain.",
                "",
                "--\nKarine Olivier\n04 65 71 40 66",
            ),
            (
                "disclaimer without sign-off",
                "Nous attendons l'avoir.\n\nCe message et ses pièces jointes sont confidentiels et destinés exclusivement à leurs destinataires.",
                "Nous attendons l'avoir.",
                "",
                "Ce message et ses pièces jointes sont confidentiels",
            ),
            (
                "english disclaimer after regards",
                "We dispute the quantity.\n\nKind regards,\nDaniel Pryce\nHartmann Components Ltd\n\nThis e-mail and any attachments are confidential and intended solely for the addressee.",
                "We dispute the quantity.\n\nKind regards,",
                "",
                "This e-mail and any attachments are confidential",
            ),
            (
                "merci as a request is not a sign-off",
                "Bonjour,\n\nMerci de nous adresser un avoir\npour les 8 heures en trop.\nFacture FA-2026-00006\n",
                "Bonjour,\n\nMerci de nous adresser un avoir\npour les 8 heures en trop.\nFacture FA-2026-00006",
                "",
                "",
            ),
            (
                "weak closing followed by content is not a sign-off",
                "Bonjour,\nMerci\nFacture FA-2026-00012 jointe",
                "Bonjour,\nMerci\nFacture FA-2026-00012 jointe",
                "",
                "",
            ),
            (
                "thanks with name",
                "Could you resend FA-2026-00020?\n\nThanks,\nSiobhan\nFinance Manager",
                "Could you resend FA-2026-00020?\n\nThanks,",
                "",
                "Siobhan\nFinance Manager",
            ),
            (
                "mobile footer before outlook block",
                "Ok pour moi.\n\nEnvoyé de mon iPhone\n\nDe : Maintenix <compta@maintenix.fr>\nDate : 2 mars 2026\nÀ : moi@client.fr\nObjet : FA-2026-00040",
                "Ok pour moi.",
                "FA-2026-00040",
                "Envoyé de mon iPhone",
            ),
            (
                "inline answers between quotes stay new",
                "On Mon, Mar 2, 2026 at 10:15 AM Claire <c@maintenix.fr> wrote:\n> Can you confirm the quantity?\nNo, we received 8 units, not 10.\n> And the price?\nThe price is fine.\n",
                "No, we received 8 units, not 10.\nThe price is fine.",
                "> Can you confirm the quantity?",
                "",
            ),
            (
                "lotus notes attribution",
                "Réglé ce jour.\n\n-----Jean Dupont/ACME wrote: -----\nFacture FA-2026-00088",
                "Réglé ce jour.",
                "FA-2026-00088",
                "",
            ),
            (
                "sender's name closes the message without a sign-off",
                "Merci de rappeler au 06 39 98 55 10.\n\nSophie Garnier\nMétallerie Bourgeois\n04 65 71 35 90",
                "Merci de rappeler au 06 39 98 55 10.",
                "",
                "Sophie Garnier\nMétallerie Bourgeois",
            ),
            (
                "zimbra original mail separator",
                "Je vous la renvoie.\n\n----- Mail original -----\nDe: \"Maintenix\" <compta@maintenix.fr>\nÀ: moi@client.fr\nEnvoyé: Lundi 2 Mars 2026\nObjet: FA-2026-00070",
                "Je vous la renvoie.",
                "----- Mail original -----",
                "",
            ),
            (
                "prose after a closing word keeps everything",
                "Merci.\n\nNous avons reçu la facture mais le montant ne correspond pas du tout au devis signé en janvier.\n\nCordialement\nPaul Martin",
                "Merci.\n\nNous avons reçu la facture mais le montant ne correspond pas du tout au devis signé en janvier.\n\nCordialement",
                "",
                "Paul Martin",
            ),
        ];
        for (name, body, new_text, in_quoted, in_sig) in cases {
            let m = plain_msg(body);
            assert_eq!(&m.new_text, new_text, "case {name}: new_text");
            if in_quoted.is_empty() {
                assert!(m.quoted.is_empty(), "case {name}: quoted should be empty, got {:?}", m.quoted);
            } else {
                assert!(m.quoted.contains(in_quoted), "case {name}: quoted {:?}", m.quoted);
            }
            if in_sig.is_empty() {
                assert!(m.signature.is_empty(), "case {name}: signature should be empty, got {:?}", m.signature);
            } else {
                assert!(m.signature.contains(in_sig), "case {name}: signature {:?}", m.signature);
            }
        }
    }

    #[test]
    fn html_edge_cases_do_not_panic() {
        assert_eq!(html_to_text("<p>Écart de 12 €</p><p>Ça va</p>"), "Écart de 12 €\nÇa va\n");
        assert_eq!(normalise(&html_to_text("a < b et é<<<")), "a < b et é<<<");
        assert_eq!(normalise(&html_to_text("<style>p{} <p>x</p>")), "x");
        assert_eq!(normalise(&html_to_text("<table><tr><td>FA-1</td><td>12,00 &euro;</td></tr></table>")), "FA-1\t12,00 €");
        // Pseudo-random HTML-ish soup with multibyte characters.
        let pieces = ["<", ">", "</", "<!--", "-->", "&", ";", "&#x", "é", "€", "<style>", "</style", "<blockquote>", "</blockquote>", "<br>", "\n", "> ", "De : ", "Envoyé : ", "À : ", "Objet : ", "a écrit :", "--", "Cordialement,", "&nbsp;", "x"];
        let mut seed = 12345u64;
        for _ in 0..300 {
            let mut s = String::new();
            for _ in 0..60 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                s.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let text = normalise(&html_to_text(&s));
            let _ = split_body(&text, Some("Jean Dupont"));
            let _ = split_body(&s, None);
        }
    }

    #[test]
    fn html_blockquote_becomes_quoted() {
        let html = "<div>Le paiement est parti.</div><div><br></div><div class=gmail_quote><div>On Mon, Mar 2, 2026 at 10:15 AM Claire &lt;c@maintenix.fr&gt; wrote:<br></div><blockquote><div>Invoice FA-2026-00050 is overdue.</div></blockquote></div>";
        let m = parse(&eml(&PLAIN_HEADERS.replace("text/plain; charset=utf-8", "text/html; charset=utf-8"), html));
        assert_eq!(m.new_text, "Le paiement est parti.");
        assert!(m.quoted.contains("> Invoice FA-2026-00050"), "{}", m.quoted);

        // Outlook on the web: <hr> then a divRplyFwdMsg header block, no blockquote.
        let html = "<div>Nous contestons la quantité.</div><div>Cordialement,</div><div>Jean Martin</div><hr style=\"display:inline-block;width:98%\"><div id=\"divRplyFwdMsg\"><b>De :</b> Maintenix &lt;compta@maintenix.fr&gt;<br><b>Envoyé :</b> lundi 2 mars 2026 10:15<br><b>À :</b> Jean Martin<br><b>Objet :</b> Facture FA-2026-00061</div><div>Bonjour, voici la facture.</div>";
        let m = parse(&eml(&PLAIN_HEADERS.replace("text/plain; charset=utf-8", "text/html; charset=utf-8"), html));
        assert_eq!(m.new_text, "Nous contestons la quantité.\nCordialement,");
        assert_eq!(m.signature, "Jean Martin");
        assert!(m.quoted.starts_with("________________________________\nDe : Maintenix"), "{}", m.quoted);
        assert!(m.quoted.contains("FA-2026-00061"));
    }

    #[test]
    fn attachments_with_rfc2231_names_and_nested_message() {
        let body = "--b\nContent-Type: text/plain; charset=utf-8\n\nCi-joint.\n\
--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename*=utf-8''Facture%20FA-2026-00012%20%C3%A9t%C3%A9.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n\
--b\nContent-Type: image/png\nContent-Disposition: inline\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n\
--b\nContent-Type: message/rfc822\n\nFrom: a@b.fr\nSubject: Ancienne facture\n\nTexte\n\
--b--\n";
        let m = parse(&eml(&PLAIN_HEADERS.replace("text/plain; charset=utf-8", "multipart/mixed; boundary=b"), body));
        assert_eq!(m.new_text, "Ci-joint.");
        assert_eq!(m.attachments.len(), 2, "{:?}", m.attachments);
        assert_eq!(m.attachments[0].name.as_deref(), Some("Facture FA-2026-00012 été.pdf"));
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert_eq!(m.attachments[0].size, 9);
        assert_eq!(m.attachments[1].name.as_deref(), Some("Ancienne facture"));
        assert_eq!(m.attachments[1].content_type, "message/rfc822");
    }

    #[test]
    fn missing_headers_become_warnings() {
        let m = parse(b"Subject: hello\r\n\r\nBody text\r\n");
        assert_eq!(m.subject, "hello");
        assert_eq!(m.new_text, "Body text");
        assert!(m.message_id.is_none());
        for w in ["no message-id header", "no from header", "no date header"] {
            assert!(m.warnings.iter().any(|x| x == w), "missing {w:?} in {:?}", m.warnings);
        }
        let m = parse(b"From: a@b.fr\r\nDate: not a date at all\r\nMessage-ID: <x@y>\r\n\r\nHi");
        assert!(m.warnings.iter().any(|w| w == "unparseable date"), "{:?}", m.warnings);
        assert!(m.warnings.iter().all(|w| w == &w.to_lowercase()));
    }

    #[test]
    fn bad_addresses_are_skipped_with_a_warning() {
        let m = parse(b"From: Jean <jean@client.fr>\r\nTo: Team: a@b.fr, c@d.fr;, not-an-address, <broken@>\r\n\r\nHi");
        assert_eq!(m.to.iter().map(|a| a.as_str()).collect::<Vec<_>>(), ["a@b.fr", "c@d.fr"]);
        assert!(m.warnings.iter().any(|w| w == "unparseable address in to"), "{:?}", m.warnings);
    }

    #[test]
    fn garbage_and_empty_input_do_not_fail() {
        let m = parse(b"");
        assert_eq!(m.warnings, vec!["empty message"]);
        let garbage: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let m = parse(&garbage);
        assert!(!m.warnings.is_empty());
        let m = parse(b"\xff\xfe\x00\x01:::\r\n\r\n\x00\x00");
        assert!(!m.warnings.is_empty());
        let m = parse(b"From: a@b.fr\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\ntruncated");
        assert_eq!(m.new_text, "truncated");
    }

    #[test]
    fn auto_reply_headers() {
        let m = parse(&eml(
            "From: Emilie <e.caron@client.fr>\nSubject: Absence\nAuto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\nPrecedence: auto_reply\nContent-Language: fr-FR",
            "Je suis absente.",
        ));
        assert!(m.auto.auto_submitted && m.auto.autoreply_header && m.auto.precedence_bulk);
        assert!(!m.auto.mailing_list && !m.auto.bounce);
        assert_eq!(m.content_language.as_deref(), Some("fr-FR"));
        let m = parse(&eml("From: a@b.fr\nAuto-Submitted: no\nAccept-Language: en-GB, en-US", "Hi"));
        assert!(!m.auto.auto_submitted);
        assert_eq!(m.content_language.as_deref(), Some("en-GB"));
    }

    #[test]
    fn list_and_bounce_headers() {
        let m = parse(&eml("From: news@x.fr\nList-Id: <news.x.fr>\nList-Unsubscribe: <mailto:u@x.fr>\nPrecedence: bulk", "News"));
        assert!(m.auto.mailing_list && m.auto.precedence_bulk);
        let m = parse(&eml("From: MAILER-DAEMON@mx.client.fr\nReturn-Path: <>", "Delivery failed"));
        assert!(m.auto.bounce);
        let m = parse(&eml("From: x@y.fr\nContent-Type: multipart/report; report-type=delivery-status; boundary=r", "--r\nContent-Type: text/plain\n\nUndeliverable\n--r--\n"));
        assert!(m.auto.bounce);
    }

    fn eml_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                eml_files(&p, out);
            } else if p.extension().is_some_and(|e| e == "eml") {
                out.push(p);
            }
        }
    }

    fn parse_all(files: &[PathBuf]) -> usize {
        let mut with_warnings = 0;
        for f in files {
            let raw = std::fs::read(f).unwrap_or_default();
            let m = catch_unwind(|| parse(&raw)).unwrap_or_else(|_| panic!("parse panicked on {}", f.display()));
            assert!(m.warnings.iter().all(|w| w.chars().all(|c| !c.is_uppercase())), "{}: {:?}", f.display(), m.warnings);
            assert!(!m.subject.contains('\n'));
            assert!(serde_json::to_string(&m).is_ok());
            if !m.warnings.is_empty() {
                with_warnings += 1;
            }
        }
        with_warnings
    }

    #[test]
    fn every_shared_mime_file_parses() {
        let Some(shared) = shared_dir() else {
            println!("skipped: ../shared not found");
            return;
        };
        let mut files = Vec::new();
        eml_files(&shared.join("mime"), &mut files);
        assert!(!files.is_empty());
        let with_warnings = parse_all(&files);
        println!("{} mime files, {} with warnings", files.len(), with_warnings);
    }

    #[test]
    fn every_corpus_message_parses() {
        let Some(shared) = shared_dir() else {
            println!("skipped: ../shared not found");
            return;
        };
        let mut files = Vec::new();
        eml_files(&shared.join("corpus/dev/inbound"), &mut files);
        eml_files(&shared.join("corpus/dev/outbound"), &mut files);
        assert!(!files.is_empty());
        parse_all(&files);
        for f in &files {
            let m = parse(&std::fs::read(f).unwrap_or_default());
            assert!(m.from.is_some() && m.message_id.is_some(), "{}: {:?}", f.display(), m.warnings);
            // History never leaks: no quoted line and no reply header in the new text.
            assert!(!m.new_text.lines().any(|l| l.starts_with('>')), "{}: {}", f.display(), m.new_text);
            assert!(!m.new_text.contains("a écrit :") && !m.new_text.contains(" wrote:"), "{}: {}", f.display(), m.new_text);
        }
    }
}

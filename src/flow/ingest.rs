//! ingest: takes raw bytes from a mail source and stores them once,
//! deduplicated by Message-ID, by content hash, and by mailbox+UIDVALIDITY+UID,
//! with the mailbox checkpoint in the same transaction. Nothing downstream can
//! lose a message that ingest accepted (invariant 2).

use crate::store::messages::NewRaw;
use crate::store::{Result, Store, Tx};
use sha2::{Digest, Sha256};

/// Where a message comes from.
#[derive(Debug, Clone)]
pub enum Origin<'a> {
    /// A file (an `.eml` in a folder).
    File(&'a str),
    /// An IMAP mailbox, with its UIDVALIDITY and the message UID.
    Imap { mailbox: &'a str, uidvalidity: i64, uid: i64 },
    /// Our own sent copy.
    Outbox,
}

/// What ingest did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    New(i64),
    Duplicate,
}

/// The Message-ID header value without angle brackets, read from the header
/// block only (no full parse needed to deduplicate).
pub fn header_message_id(raw: &[u8]) -> Option<String> {
    let end = find_header_end(raw);
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut value: Option<String> = None;
    for line in head.split('\n') {
        let line = line.trim_end_matches('\r');
        if let Some(v) = value.as_mut() {
            if line.starts_with(' ') || line.starts_with('\t') {
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((name, rest)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("message-id") {
                value = Some(rest.trim().to_string());
            }
        }
    }
    let v = value?;
    let v = v.trim().trim_start_matches('<');
    let v = v.split('>').next().unwrap_or("").trim();
    (!v.is_empty() && !v.contains(char::is_whitespace)).then(|| v.to_string())
}

fn find_header_end(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len())
        .min(256 * 1024)
}

pub fn content_hash(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// Stores one message (`direction` is `in` or `out`) in its own transaction.
pub async fn ingest(store: &Store, raw: &[u8], direction: &str, origin: Origin<'_>) -> Result<Ingested> {
    let mut tx = store.begin().await?;
    let r = ingest_in(store, &mut tx, raw, direction, origin).await?;
    tx.commit().await?;
    Ok(r)
}

/// Stores several files in the caller's transaction, in two statements
/// (`Store::insert_raws`): `(bytes, direction, path)` each, one answer each,
/// in order; they are accepted once that transaction commits. For files
/// only: a mailbox's messages go through [`ingest_in`] one by one, each with
/// its checkpoint.
pub async fn ingest_files_in(store: &Store, tx: &mut Tx, files: &[(&[u8], &str, &str)]) -> Result<Vec<Ingested>> {
    let new: Vec<NewRaw<'_>> = files
        .iter()
        .map(|&(raw, direction, path)| NewRaw { direction, source: format!("file:{path}"), mailbox: None, uidvalidity: None, uid: None, message_id: header_message_id(raw), content_hash: content_hash(raw), raw })
        .collect();
    let ids = store.insert_raws(tx, &new).await?;
    Ok(ids
        .into_iter()
        .map(|id| match id {
            Some(id) => Ingested::New(id),
            None => Ingested::Duplicate,
        })
        .collect())
}

/// Stores one message inside the caller's transaction: it is accepted once
/// that transaction commits.
#[tracing::instrument(skip_all, fields(direction, msg = tracing::field::Empty))]
pub async fn ingest_in(store: &Store, tx: &mut Tx, raw: &[u8], direction: &str, origin: Origin<'_>) -> Result<Ingested> {
    let (source, mailbox, uidvalidity, uid) = match &origin {
        Origin::File(p) => (format!("file:{p}"), None, None, None),
        Origin::Imap { mailbox, uidvalidity, uid } => (format!("imap:{mailbox}"), Some(*mailbox), Some(*uidvalidity), Some(*uid)),
        Origin::Outbox => ("outbox".to_string(), None, None, None),
    };
    let new = NewRaw { direction, source, mailbox, uidvalidity, uid, message_id: header_message_id(raw), content_hash: content_hash(raw), raw };
    let id = store.insert_raw(tx, &new).await?;
    if let Origin::Imap { mailbox, uidvalidity, uid } = origin {
        // The checkpoint moves even for a duplicate: that UID is done.
        store.set_checkpoint(tx, mailbox, uidvalidity, uid).await?;
    }
    match id {
        Some(id) => {
            tracing::Span::current().record("msg", id);
            tracing::debug!("stored");
            Ok(Ingested::New(id))
        }
        None => {
            tracing::debug!(message_id = new.message_id.as_deref().unwrap_or("-"), "duplicate skipped");
            Ok(Ingested::Duplicate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_message_id_from_headers_only() {
        assert_eq!(header_message_id(b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <c@d>").as_deref(), Some("a@b"));
        assert_eq!(header_message_id(b"Message-Id:\n  <folded@x>\nTo: y\n\nbody").as_deref(), Some("folded@x"));
        assert_eq!(header_message_id(b"Subject: none\n\nMessage-ID: <c@d>"), None);
        assert_eq!(header_message_id(b"Message-ID: <>\n\n"), None);
        assert_eq!(header_message_id(b""), None);
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(content_hash(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

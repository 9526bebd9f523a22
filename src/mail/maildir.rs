//! maildir: reads `.eml` files from a file or a folder tree, in path order.
//! A corpus folder (with `inbound/` and `outbound/`) yields its outbound mail
//! first, marked as sent by us, so that inbound replies can thread to it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0} has no .eml file")]
    Empty(String),
}

/// One file to ingest and whether we sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmlFile {
    pub path: PathBuf,
    pub sent_by_us: bool,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), MaildirError> {
    let rd = std::fs::read_dir(dir).map_err(|source| MaildirError::Read { path: dir.display().to_string(), source })?;
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml")) {
            out.push(p);
        }
    }
    Ok(())
}

/// Lists the `.eml` files under `path` (or `path` itself). `sent` marks every
/// file as sent by us; otherwise files under a folder named `outbound` are.
pub fn list(path: &Path, sent: bool) -> Result<Vec<EmlFile>, MaildirError> {
    let mut files = Vec::new();
    if path.is_dir() {
        walk(path, &mut files)?;
        if files.is_empty() {
            return Err(MaildirError::Empty(path.display().to_string()));
        }
    } else {
        std::fs::metadata(path).map_err(|source| MaildirError::Read { path: path.display().to_string(), source })?;
        files.push(path.to_path_buf());
    }
    let mut out: Vec<EmlFile> = files
        .into_iter()
        .map(|p| {
            let outbound = p.strip_prefix(path).ok().is_some_and(|rel| rel.components().any(|c| c.as_os_str() == "outbound"));
            EmlFile { sent_by_us: sent || outbound, path: p }
        })
        .collect();
    // Our own mail first (stable within each group).
    out.sort_by_key(|f| !f.sent_by_us);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_first_then_inbound_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("inbound")).unwrap();
        std::fs::create_dir_all(d.path().join("outbound")).unwrap();
        for f in ["inbound/0002.eml", "inbound/0001.eml", "outbound/a.eml", "inbound/notes.txt"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let l = list(d.path(), false).unwrap();
        let names: Vec<String> = l.iter().map(|f| f.path.strip_prefix(d.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["outbound/a.eml", "inbound/0001.eml", "inbound/0002.eml"]);
        assert!(l[0].sent_by_us && !l[1].sent_by_us);
        assert!(matches!(list(&d.path().join("nope"), false), Err(MaildirError::Read { .. })));
    }
}

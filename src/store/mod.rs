//! store: the database behind every stage, through sqlx's `Any` driver so the
//! same portable SQL runs on SQLite (embedded default) and PostgreSQL.
//!
//! Conventions: times are UTC epoch seconds, dates ISO text, money cents.
//! Every write that changes a case goes through a [`Tx`] that also appends an
//! audit event (see [`audit`]).

pub mod audit;
pub mod apikeys;
pub mod cases;
pub mod cluster;
pub mod einvoices;
pub mod ledger;
pub mod mailboxes;
pub mod llm_calls;
pub mod messages;
pub mod outbox;
pub mod workflow;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool};
use std::path::Path;
use std::time::Duration;

/// Errors of the store, with the source kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot run migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The engine a database URL names: `postgres…` is PostgreSQL, anything
    /// else is handed to SQLite.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// A transaction on either backend.
pub type Tx = sqlx::Transaction<'static, Any>;

/// The database handle shared by every stage.
#[derive(Clone, Debug)]
pub struct Store {
    pub pool: AnyPool,
    pub backend: Backend,
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Creates a new, empty database named `{prefix}_{random}` on the
    /// PostgreSQL server of `admin` (a `postgres://…/DB` URL it can connect
    /// to) and returns the new database's URL: for tests and benchmarks that
    /// each need their own database.
    pub async fn create_postgres_database(admin: &str, prefix: &str) -> Result<String> {
        sqlx::any::install_default_drivers();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).ok_or_else(|| StoreError::Invalid(format!("{admin}: a postgres:// URL with a database name")))?;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::AnyPool::connect(admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await?;
        pool.close().await;
        Ok(format!("{base}/{name}"))
    }

    /// Opens (creating a SQLite file if needed) and migrates.
    /// `sqlite://PATH` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url);
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                if let Some(path) = url.strip_prefix("sqlite://") {
                    if let Some(parent) = Path::new(path.split('?').next().unwrap_or(path)).parent() {
                        if !parent.as_os_str().is_empty() {
                            let _ = std::fs::create_dir_all(parent);
                        }
                    }
                }
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(30));
        let opts = if backend == Backend::Sqlite {
            // WAL lets readers go on while one writer writes; foreign keys are on
            // by default in sqlx's SQLite driver; wait for the write lock
            // instead of failing at once.
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys=ON").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout=30000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous=NORMAL").execute(&mut *conn).await?;
                    // 16 MiB of page cache per connection (SQLite's default is
                    // 2 MiB): the indexes the flow walks for every message stay
                    // in memory as the database grows, instead of being read
                    // again from the OS for each statement.
                    sqlx::query("PRAGMA cache_size=-16384").execute(&mut *conn).await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts.connect(&url).await.map_err(|source| StoreError::Open { url: redact(&url), source })?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATOR.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATOR.run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`) so that read-then-write sequences (the audit chain)
    /// never race; PostgreSQL serialises the audit chain with an advisory lock.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

/// Hides a password in a database URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A value to bind: text (borrowed, or owned when built from input) or a number.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    S(std::borrow::Cow<'a, str>),
    I(i64),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Self {
        Val::S(std::borrow::Cow::Borrowed(s))
    }
}

impl From<String> for Val<'_> {
    fn from(s: String) -> Self {
        Val::S(std::borrow::Cow::Owned(s))
    }
}

impl From<i64> for Val<'_> {
    fn from(i: i64) -> Self {
        Val::I(i)
    }
}

/// " WHERE a = $1 AND b = $2" over the filters that are set (`None` is "any"),
/// with the values to bind in order. A `($1 IS NULL OR a = $1)` term instead
/// makes SQLite scan the whole table; this keeps each filter on its index.
/// Column names come from the code, never from input.
pub(crate) fn where_eq<'a>(filters: &[(&'static str, Option<Val<'a>>)]) -> (String, Vec<Val<'a>>) {
    let mut terms = vec![];
    let mut vals = vec![];
    for (col, v) in filters {
        if let Some(v) = v {
            vals.push(v.clone());
            terms.push(format!("{col} = ${}", vals.len()));
        }
    }
    (if terms.is_empty() { String::new() } else { format!(" WHERE {}", terms.join(" AND ")) }, vals)
}

/// `q` with `vals` bound in order.
pub(crate) fn bind_all<'q>(mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>, vals: &'q [Val<'_>]) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for v in vals {
        q = match v {
            Val::S(s) => q.bind(s.as_ref()),
            Val::I(i) => q.bind(*i),
        };
    }
    q
}

/// The most rows one multi-row statement carries: at 9 columns that is
/// 9,000 bound values, under SQLite's 32,766 and PostgreSQL's 65,535.
pub(crate) const MAX_ROWS: usize = 1000;

/// The VALUES list of a multi-row insert: `rows` groups of `cols`
/// placeholders numbered in order, each group ending with the constant SQL
/// `tail` when it is not empty. `values(2, 2, "'x'")` is
/// "($1, $2, 'x'), ($3, $4, 'x')". The binds go row by row, column by column.
pub(crate) fn values(rows: usize, cols: usize, tail: &str) -> String {
    (0..rows)
        .map(|r| {
            let mut g: Vec<String> = (1..=cols).map(|k| format!("${}", r * cols + k)).collect();
            if !tail.is_empty() {
                g.push(tail.to_string());
            }
            format!("({})", g.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Links row `id` to `invoices` in a two-column link table (`table`, whose
/// first column is `id_col`, the second `invoice_number`), at most
/// [`MAX_ROWS`] a statement; a link already there is kept. Table and
/// column names come from the code, never from input.
pub(crate) async fn insert_invoice_links<S: AsRef<str>>(tx: &mut Tx, table: &'static str, id_col: &'static str, id: i64, invoices: &[S]) -> Result<()> {
    for part in invoices.chunks(MAX_ROWS) {
        let sql = format!("INSERT INTO {table} ({id_col}, invoice_number) VALUES {} ON CONFLICT DO NOTHING", values(part.len(), 2, ""));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for n in part {
            q = q.bind(id).bind(n.as_ref().to_string());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Current time as epoch seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}


#[cfg(test)]
mod tests {
    #[test]
    fn where_eq_keeps_only_set_filters() {
        use super::{where_eq, Val};
        let (w, v) = where_eq(&[("a", None), ("b", Some(Val::from("x"))), ("c", Some(Val::I(3)))]);
        assert_eq!(w, " WHERE b = $1 AND c = $2");
        assert_eq!(v.len(), 2);
        assert_eq!(where_eq(&[("a", None)]).0, "");
    }

    #[test]
    fn values_numbers_placeholders_row_by_row() {
        assert_eq!(super::values(2, 2, "'x'"), "($1, $2, 'x'), ($3, $4, 'x')");
        assert_eq!(super::values(3, 1, ""), "($1), ($2), ($3)");
        assert_eq!(super::values(0, 4, ""), "");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}

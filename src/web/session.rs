//! web::session: logins kept in the database (`web_sessions`, migration
//! 0005_web), the cookie that names them, the per-session CSRF token every
//! form carries back, and the failed-login limit (`web_login_failures`).
//!
//! The cookie holds a random 256-bit token; the database keeps only its
//! SHA-256. Cookies are HttpOnly, SameSite=Lax, and Secure when
//! `web.secure_cookies` is set.

use super::{Error, Lang, WebState};
use crate::domain::Role;
use crate::store::ledger::User;
use crate::store::{now, Store, StoreError};
use axum::http::{request::Parts, HeaderMap};
use sha2::{Digest, Sha256};
use sqlx::Row;

pub const COOKIE: &str = "dd_session";

/// The signed-in person of a request.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub lang: Lang,
}

impl Session {
    /// Refuses a form whose token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), Error> {
        if same(token.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            tracing::warn!(user = %self.user.id, "csrf token refused");
            Err(Error::Csrf)
        }
    }

    /// Refuses unless the user has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Error> {
        if roles.contains(&self.user.role) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

/// Constant-time comparison of two tokens.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && !b.is_empty() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random token (two UUIDv4 from the OS generator: 244 random bits).
pub fn token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The value of cookie `name`, if the request has it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value with the desk's flags.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}", if secure { "; Secure" } else { "" })
}

/// Opens a session for `user_id`: returns the cookie token.
pub async fn create(store: &Store, user_id: &str, hours: i64) -> Result<String, StoreError> {
    let t = token();
    let at = now();
    sqlx::query("INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, last_seen, expires_at) VALUES ($1, $2, $3, $4, $4, $5)")
        .bind(digest(&t))
        .bind(user_id)
        .bind(token())
        .bind(at)
        .bind(at + hours * 3600)
        .execute(&store.pool)
        .await?;
    // Expired sessions of anyone are cleared as new ones open.
    sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1").bind(at).execute(&store.pool).await?;
    Ok(t)
}

/// Ends the session named by `token`.
pub async fn delete(store: &Store, token: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1").bind(digest(token)).execute(&store.pool).await?;
    Ok(())
}

/// Ends every session of a user (after a password change).
pub async fn delete_all_of(store: &Store, user_id: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM web_sessions WHERE user_id = $1").bind(user_id).execute(&store.pool).await?.rows_affected())
}

/// The live session of `token`, with its user.
pub async fn find(store: &Store, token: &str) -> Result<Option<(User, String)>, StoreError> {
    let at = now();
    let row = sqlx::query(
        "SELECT u.id, u.name, u.email, u.role, s.csrf, s.last_seen FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(digest(token))
    .bind(at)
    .fetch_optional(&store.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let role: String = r.try_get("role")?;
    let user = User { id: r.try_get("id")?, name: r.try_get("name")?, email: r.try_get("email")?, role: role.parse().map_err(|e: crate::domain::DomainError| StoreError::Invalid(e.to_string()))? };
    let last: i64 = r.try_get("last_seen")?;
    if at - last > 60 {
        sqlx::query("UPDATE web_sessions SET last_seen = $2 WHERE token_hash = $1").bind(digest(token)).bind(at).execute(&store.pool).await?;
    }
    Ok(Some((user, r.try_get("csrf")?)))
}

impl axum::extract::FromRequestParts<WebState> for Session {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Session, Error> {
        let lang = Lang::from_parts(parts);
        let Some(t) = cookie(&parts.headers, COOKIE) else { return Err(Error::Unauthenticated) };
        match find(&state.store, &t).await? {
            Some((user, csrf)) => {
                tracing::Span::current().record("user", user.id.as_str());
                Ok(Session { user, csrf, lang })
            }
            None => Err(Error::Unauthenticated),
        }
    }
}

/// The client's address as the listener saw it (`unknown` in process).
pub fn client_ip(parts: &Parts) -> String {
    parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// Minutes to wait when `email` from `ip` has failed too often in the
/// window, or None. Counted per (email, ip) and per email from anywhere
/// (three times the limit), so that neither guessing one account from many
/// addresses nor many accounts from one address goes unchecked for long.
pub async fn locked_for(store: &Store, email: &str, ip: &str, max: i64, window_min: i64) -> Result<Option<i64>, StoreError> {
    let since = now() - window_min * 60;
    let pair: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM web_login_failures WHERE email = $1 AND ip = $2 AND at > $3").bind(email).bind(ip).bind(since).fetch_one(&store.pool).await?;
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM web_login_failures WHERE email = $1 AND at > $2").bind(email).bind(since).fetch_one(&store.pool).await?;
    Ok((pair >= max || all >= max * 3).then_some(window_min))
}

/// Records a failed login; prunes failures older than a day.
pub async fn record_failure(store: &Store, email: &str, ip: &str) -> Result<(), StoreError> {
    let at = now();
    sqlx::query("INSERT INTO web_login_failures (email, ip, at) VALUES ($1, $2, $3)").bind(email).bind(ip).bind(at).execute(&store.pool).await?;
    sqlx::query("DELETE FROM web_login_failures WHERE at < $1").bind(at - 86_400).execute(&store.pool).await?;
    Ok(())
}

/// Forgets the failures of `email` from `ip` after a good login.
pub async fn clear_failures(store: &Store, email: &str, ip: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM web_login_failures WHERE email = $1 AND ip = $2").bind(email).bind(ip).execute(&store.pool).await?;
    Ok(())
}

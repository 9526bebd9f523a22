//! store::apikeys: API keys for the JSON API. A key is `ddk_PREFIX_SECRET`;
//! the prefix finds the row, and only `sha256(salt || secret)` is stored
//! (the secret is random, 244 bits, so a fast salted hash is enough; the
//! salt keeps equal secrets apart). The full key is shown once, at creation.

use super::{now, Result, Store, StoreError};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// What a key may do: read, or read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
    pub fn parse(s: &str) -> Option<Scope> {
        match s.trim() {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// A key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub prefix: String,
    pub user_id: String,
    pub scope: Scope,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A key just created: the only time the full key exists.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: ApiKey,
    pub secret: String,
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn hash(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Compares two hex hashes without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn key_from_row(r: &sqlx::any::AnyRow) -> Result<ApiKey> {
    let scope: String = r.try_get("scope")?;
    Ok(ApiKey {
        id: r.try_get("id")?,
        prefix: r.try_get("prefix")?,
        user_id: r.try_get("user_id")?,
        scope: Scope::parse(&scope).ok_or_else(|| StoreError::Invalid(format!("api key scope {scope:?}")))?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

const COLS: &str = "id, prefix, user_id, scope, name, created_at, last_used_at, revoked_at";

impl Store {
    /// Creates a key for `user_id` (who must exist).
    pub async fn create_api_key(&self, user_id: &str, scope: Scope, name: &str) -> Result<NewKey> {
        let user = self.user(user_id).await?;
        let prefix = random_hex()[..12].to_string();
        let secret = format!("{}{}", random_hex(), random_hex());
        let salt = random_hex();
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO api_keys (prefix, salt, hash, user_id, scope, name, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&prefix)
            .bind(&salt)
            .bind(hash(&salt, &secret))
            .bind(&user.id)
            .bind(scope.as_str())
            .bind(name)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM api_keys WHERE prefix = $1"))).bind(&prefix).fetch_one(&mut *tx).await?;
        let key = key_from_row(&r)?;
        super::audit::append(
            &mut tx,
            self.backend,
            super::audit::Event { actor: &super::audit::Actor::Agent, case_id: None, entity: "api_key", entity_id: key.id.to_string(), action: "created", detail: serde_json::json!({"user": user.id, "scope": scope.as_str(), "name": name}) },
        )
        .await?;
        tx.commit().await?;
        Ok(NewKey { secret: format!("ddk_{prefix}_{secret}"), key })
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM api_keys ORDER BY id"))).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a key (kept, marked); revoking twice is a no-op.
    pub async fn revoke_api_key(&self, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL").bind(id).bind(now()).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM api_keys WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("api key {id}")));
            }
        } else {
            super::audit::append(&mut tx, self.backend, super::audit::Event { actor: &super::audit::Actor::Agent, case_id: None, entity: "api_key", entity_id: id.to_string(), action: "revoked", detail: serde_json::json!({}) }).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The key a presented `ddk_PREFIX_SECRET` is, if it is valid and not
    /// revoked. Records when it was last used.
    pub async fn verify_api_key(&self, presented: &str) -> Result<Option<ApiKey>> {
        let Some((prefix, secret)) = presented.strip_prefix("ddk_").and_then(|r| r.split_once('_')) else { return Ok(None) };
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS}, salt, hash FROM api_keys WHERE prefix = $1"))).bind(prefix).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let salt: String = r.try_get("salt")?;
        let stored: String = r.try_get("hash")?;
        let key = key_from_row(&r)?;
        if !same(&hash(&salt, secret), &stored) || key.revoked_at.is_some() {
            return Ok(None);
        }
        // Once a minute is enough for "last used"; no write lock per request.
        let t = now();
        if key.last_used_at.map(|u| t - u >= 60).unwrap_or(true) {
            let _ = sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1").bind(key.id).bind(t).execute(&self.pool).await;
        }
        Ok(Some(key))
    }
}

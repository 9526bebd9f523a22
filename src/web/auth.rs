//! web::auth: passwords (argon2id hashes in `users.password_hash`), the login
//! and logout pages, the language switch, and the landing page of each role.
//! `user add` / `user passwd` in the CLI use [`add_user`] and [`set_password`].

use super::session::{self, Session};
use super::{Error, Lang, WebState};
use crate::domain::{EmailAddress, Role};
use crate::store::ledger::User;
use crate::store::{now, Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

const LOGIN_CSRF: &str = "dd_login_csrf";
/// Passwords shorter than this are refused.
pub const MIN_PASSWORD: usize = 10;
/// The password of every user of `dispute-desk demo` (demo data only).
pub const DEMO_PASSWORD: &str = "demo-desk-2026";

pub fn router() -> Router<WebState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(set_lang))
}

/// An argon2id hash (PHC string) of `password`, with a random salt.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| Error::Hash(e.to_string()))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| Error::Hash(e.to_string()))?.to_string())
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
}

fn check_strength(password: &str) -> Result<(), Error> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(Error::BadRequest(format!("a password needs at least {MIN_PASSWORD} characters")));
    }
    Ok(())
}

/// Creates a user who can sign in. The id is `U-` and the email's local part
/// unless given.
pub async fn add_user(store: &Store, id: Option<&str>, email: &EmailAddress, name: &str, role: Role, password: &str) -> Result<User, Error> {
    check_strength(password)?;
    if name.trim().is_empty() {
        return Err(Error::BadRequest("a user needs a name".into()));
    }
    let hash = tokio::task::spawn_blocking({
        let p = password.to_string();
        move || hash_password(&p)
    })
    .await
    .map_err(|e| Error::Hash(e.to_string()))??;
    let id = id.map(str::to_string).unwrap_or_else(|| format!("U-{}", email.as_str().split('@').next().unwrap_or("user")));
    sqlx::query("INSERT INTO users (id, name, email, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&id)
        .bind(name.trim())
        .bind(email.as_str())
        .bind(role.as_str())
        .bind(hash)
        .bind(now())
        .execute(&store.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict(format!("a user with id {id} or email {email} already exists")),
            _ => Error::Store(StoreError::Db(e)),
        })?;
    Ok(store.user(&id).await?)
}

/// Sets the password of the user with this id or email, and ends their
/// sessions.
pub async fn set_password(store: &Store, id_or_email: &str, password: &str) -> Result<User, Error> {
    check_strength(password)?;
    let user = store.user(id_or_email).await?;
    let p = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&p)).await.map_err(|e| Error::Hash(e.to_string()))??;
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1").bind(&user.id).bind(hash).execute(&store.pool).await.map_err(StoreError::from)?;
    session::delete_all_of(store, &user.id).await?;
    Ok(user)
}

/// Where each role starts.
fn landing(role: Role) -> &'static str {
    match role {
        Role::Accountant => "/approvals",
        Role::Manager => "/dashboard",
        Role::Sales | Role::Technical => "/my",
    }
}

async fn home(s: Session) -> Redirect {
    Redirect::to(landing(s.user.role))
}

fn login_form(state: &WebState, lang: Lang, status: StatusCode, error: Option<String>) -> Result<Response, Error> {
    let t = session::token();
    let mut ctx = tera::Context::new();
    ctx.insert("login_csrf", &t);
    ctx.insert("error", &error);
    let page = state.render_anon("login.html", lang, ctx)?;
    Ok((status, [(header::SET_COOKIE, session::set_cookie(LOGIN_CSRF, &t, 3600, state.cfg.web.secure_cookies))], page).into_response())
}

async fn login_page(State(state): State<WebState>, lang: Lang) -> Result<Response, Error> {
    login_form(&state, lang, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// A hash to verify against when the email is unknown, so that both answers
/// take as long.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

#[tracing::instrument(skip_all, fields(user = tracing::field::Empty))]
async fn login(State(state): State<WebState>, req: axum::http::request::Parts, Form(f): Form<LoginForm>) -> Result<Response, Error> {
    let lang = Lang::from_parts(&req);
    let expected = session::cookie(&req.headers, LOGIN_CSRF).unwrap_or_default();
    if !session::same(f.csrf.as_bytes(), expected.as_bytes()) {
        return Err(Error::Csrf);
    }
    let email = f.email.trim().to_lowercase();
    let ip = session::client_ip(&req);
    let w = &state.cfg.web;
    if let Some(minutes) = session::locked_for(&state.store, &email, &ip, w.login_max_failures, w.login_window_minutes).await? {
        tracing::warn!("login refused: too many failures");
        let msg = match lang {
            Lang::Fr => format!("Trop d'échecs de connexion : réessayez dans {minutes} minutes."),
            Lang::En => format!("Too many failed logins: try again in {minutes} minutes."),
        };
        return login_form(&state, lang, StatusCode::TOO_MANY_REQUESTS, Some(msg));
    }
    let row: Option<(String, Option<String>)> = sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1").bind(&email).fetch_optional(&state.store.pool).await.map_err(StoreError::from)?;
    let (id, hash) = match &row {
        Some((id, Some(h))) => (Some(id.clone()), h.clone()),
        _ => (None, dummy_hash().to_string()),
    };
    let pw = f.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash)).await.unwrap_or(false);
    match (ok, id) {
        (true, Some(id)) => {
            tracing::Span::current().record("user", id.as_str());
            session::clear_failures(&state.store, &email, &ip).await?;
            let t = session::create(&state.store, &id, w.session_hours).await?;
            let user = state.store.user(&id).await?;
            tracing::info!("signed in");
            let mut h = HeaderMap::new();
            h.append(header::SET_COOKIE, session::set_cookie(session::COOKIE, &t, w.session_hours * 3600, w.secure_cookies).parse().expect("cookie header"));
            h.append(header::SET_COOKIE, session::set_cookie(LOGIN_CSRF, "", 0, w.secure_cookies).parse().expect("cookie header"));
            Ok((StatusCode::SEE_OTHER, h, [(header::LOCATION, landing(user.role))]).into_response())
        }
        _ => {
            session::record_failure(&state.store, &email, &ip).await?;
            tracing::info!("login failed");
            login_form(&state, lang, StatusCode::UNAUTHORIZED, Some(super::i18n::word(lang, "bad_login").to_string()))
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(state): State<WebState>, s: Session, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Result<Response, Error> {
    s.check_csrf(&f.csrf)?;
    if let Some(t) = session::cookie(&headers, session::COOKIE) {
        session::delete(&state.store, &t).await?;
    }
    tracing::info!(user = %s.user.id, "signed out");
    Ok((StatusCode::SEE_OTHER, [(header::SET_COOKIE, session::set_cookie(session::COOKIE, "", 0, state.cfg.web.secure_cookies)), (header::LOCATION, "/login".to_string())]).into_response())
}

async fn set_lang(State(state): State<WebState>, Path(code): Path<String>, headers: HeaderMap) -> Response {
    let lang = Lang::parse(&code).unwrap_or(Lang::Fr);
    // Back to the page the switch was on, when it is one of ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").map(|i| &r[i + 3..]).and_then(|r| r.find('/').map(|j| r[j..].to_string())))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    (StatusCode::SEE_OTHER, [(header::SET_COOKIE, format!("lang={}; Path=/; Max-Age=31536000; SameSite=Lax{}", lang.as_str(), if state.cfg.web.secure_cookies { "; Secure" } else { "" })), (header::LOCATION, back)]).into_response()
}

-- The web desk (src/web): login sessions and failed logins. Portable SQL
-- shared with the other dialect's 0005_web.sql except id columns.

-- One row per signed-in browser. The cookie holds a random token; only its
-- SHA-256 is stored, so a copy of the database cannot be replayed as a login.
-- csrf is the per-session token every form carries back; expires_at is an
-- absolute end (epoch seconds), last_seen is refreshed as the user works.
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);

-- Failed logins, for the rate limit (per email and per client address over a
-- window). Old rows are pruned as new failures arrive.
CREATE TABLE web_login_failures (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL,
    ip TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX web_login_failures_email ON web_login_failures(email, ip, at);
